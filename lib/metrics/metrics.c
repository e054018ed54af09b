/* Metrics registry and Prometheus text exposition (metrics.h). */
#include "metrics/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "util/cleanup.h"

enum family_type { T_COUNTER, T_GAUGE, T_HISTOGRAM };

static const char *const type_names[] = {"counter", "gauge", "histogram"};

struct pp_series_s {
    pp_series_t *next;
    pp_metric_t *family;
    char *values[PP_METRICS_MAX_LABELS]; /* in one block, values[0] owns it */
    double value;                        /* counter, gauge; histogram: sum */
    uint64_t count;                      /* histogram */
    uint64_t buckets[];                  /* histogram: per bound, not cumulative */
};

struct pp_metric_s {
    pp_metric_t *next;
    pp_metrics_t *registry;
    enum family_type type;
    char *name, *help;
    char *labels[PP_METRICS_MAX_LABELS]; /* in one block with name and help */
    size_t nlabels;
    double bounds[PP_METRICS_MAX_BUCKETS];
    char le[PP_METRICS_MAX_BUCKETS][32]; /* the bounds as written */
    size_t nbounds;
    pp_series_t *series, *series_tail;
    size_t nseries;
    uint64_t dropped; /* values for series past the cap */
};

typedef struct collector_s {
    struct collector_s *next;
    pp_metrics_collect_cb cb;
    void *data;
} collector_t;

struct pp_metrics_s {
    pp_metric_t *families, *tail;
    collector_t *collectors, *collectors_tail;
};

const double pp_metrics_seconds_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                             2.5,   5,    10,    30,   60,  120,  300, 600};
const size_t pp_metrics_seconds_nbuckets = PP_ARRAY_SIZE(pp_metrics_seconds_buckets);

pp_metrics_t *pp_metrics_new(void)
{
    return calloc(1, sizeof(pp_metrics_t));
}

void pp_metrics_free(pp_metrics_t *m)
{
    if (m == NULL)
        return;
    for (pp_metric_t *f = m->families, *fn; f != NULL; f = fn) {
        fn = f->next;
        for (pp_series_t *s = f->series, *sn; s != NULL; s = sn) {
            sn = s->next;
            free(s->values[0]);
            free(s);
        }
        free(f->name);
        free(f);
    }
    for (collector_t *c = m->collectors, *cn; c != NULL; c = cn) {
        cn = c->next;
        free(c);
    }
    free(m);
}

/* Numbers as Prometheus' own clients write them: whole numbers without a
 * fraction or exponent, others in the shortest text that reads back as
 * the same double ("0.1", not "0.10000000000000001"). It matters for `le`,
 * a label that queries compare as text. */
static void fmt_number(char out[32], double v)
{
    if (isnan(v)) {
        snprintf(out, 32, "NaN");
    } else if (isinf(v)) {
        snprintf(out, 32, "%s", v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 9.007199254740992e15) {
        snprintf(out, 32, "%lld", (long long)v);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(out, 32, "%.*g", prec, v);
            if (strtod(out, NULL) == v)
                break;
        }
    }
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metrics; no ':' in label names. */
static int valid_name(const char *s, size_t n, int colon)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colon && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

/* Splits "a,b,c" into `out`; returns the count or -1. */
static int split_labels(char *list, char **out)
{
    int n = 0;
    if (list == NULL || *list == '\0')
        return 0;
    for (char *p = list;;) {
        char *comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        while (*p == ' ')
            p++;
        size_t len = strlen(p);
        while (len > 0 && p[len - 1] == ' ')
            p[--len] = '\0';
        if (n == PP_METRICS_MAX_LABELS || !valid_name(p, len, 0) || strcmp(p, "le") == 0 ||
            strncmp(p, "__", 2) == 0)
            return -1;
        for (int i = 0; i < n; i++)
            if (strcmp(out[i], p) == 0)
                return -1;
        out[n++] = p;
        if (comma == NULL)
            return n;
        p = comma + 1;
    }
}

static int same_shape(const pp_metric_t *f, enum family_type type, char **labels, size_t n,
                      const double *bounds, size_t nbounds)
{
    if (f->type != type || f->nlabels != n || (type == T_HISTOGRAM && f->nbounds != nbounds))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(f->labels[i], labels[i]) != 0)
            return 0;
    for (size_t i = 0; type == T_HISTOGRAM && i < nbounds; i++)
        if (f->bounds[i] != bounds[i])
            return 0;
    return 1;
}

static pp_metric_t *family(pp_metrics_t *m, enum family_type type, const char *name,
                           const char *help, const char *labels, const double *bounds,
                           size_t nbounds)
{
    if (m == NULL || name == NULL || !valid_name(name, strlen(name), 1))
        return NULL;
    if (help == NULL)
        help = "";
    size_t nl = strlen(name) + 1, hl = strlen(help) + 1, ll = labels ? strlen(labels) + 1 : 1;
    cleanup_free char *block = malloc(nl + hl + ll);
    if (block == NULL)
        return NULL;
    memcpy(block, name, nl);
    memcpy(block + nl, help, hl);
    memcpy(block + nl + hl, labels ? labels : "", ll);
    char *names[PP_METRICS_MAX_LABELS];
    int n = split_labels(block + nl + hl, names);
    if (n < 0 || nbounds > PP_METRICS_MAX_BUCKETS)
        return NULL;
    for (size_t i = 1; i < nbounds; i++)
        if (!(bounds[i] > bounds[i - 1]))
            return NULL;
    for (pp_metric_t *f = m->families; f != NULL; f = f->next)
        if (strcmp(f->name, name) == 0)
            return same_shape(f, type, names, (size_t)n, bounds, nbounds) ? f : NULL;
    pp_metric_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->registry = m;
    f->type = type;
    f->nlabels = (size_t)n;
    memcpy(f->labels, names, sizeof(names[0]) * (size_t)n);
    f->nbounds = nbounds;
    for (size_t i = 0; i < nbounds; i++) {
        f->bounds[i] = bounds[i];
        fmt_number(f->le[i], bounds[i]);
    }
    f->name = PP_STEAL(block);
    f->help = f->name + nl;
    if (m->tail != NULL)
        m->tail->next = f;
    else
        m->families = f;
    m->tail = f;
    return f;
}

pp_metric_t *pp_metrics_counter(pp_metrics_t *m, const char *name, const char *help,
                                const char *labels)
{
    return family(m, T_COUNTER, name, help, labels, NULL, 0);
}

pp_metric_t *pp_metrics_gauge(pp_metrics_t *m, const char *name, const char *help,
                              const char *labels)
{
    return family(m, T_GAUGE, name, help, labels, NULL, 0);
}

pp_metric_t *pp_metrics_histogram(pp_metrics_t *m, const char *name, const char *help,
                                  const char *labels, const double *bounds, size_t nbounds)
{
    return family(m, T_HISTOGRAM, name, help, labels, bounds, nbounds);
}

pp_series_t *pp_metric_with(pp_metric_t *f, const char *const *values)
{
    if (f == NULL)
        return NULL;
    for (pp_series_t *s = f->series; s != NULL; s = s->next) {
        size_t i = 0;
        while (i < f->nlabels && strcmp(s->values[i], values[i] ? values[i] : "") == 0)
            i++;
        if (i == f->nlabels)
            return s;
    }
    if (f->nseries >= PP_METRICS_MAX_SERIES) {
        f->dropped++;
        return NULL;
    }
    size_t len = 1;
    for (size_t i = 0; i < f->nlabels; i++)
        len += strlen(values[i] ? values[i] : "") + 1;
    size_t nb = f->type == T_HISTOGRAM ? f->nbounds + 1 : 0;
    pp_series_t *s = calloc(1, sizeof(*s) + nb * sizeof(s->buckets[0]));
    char *block = malloc(len);
    if (s == NULL || block == NULL) {
        free(s);
        free(block);
        return NULL;
    }
    char *p = block;
    *p = '\0';
    s->values[0] = block;
    for (size_t i = 0; i < f->nlabels; i++) {
        const char *v = values[i] ? values[i] : "";
        size_t vl = strlen(v) + 1;
        memcpy(p, v, vl);
        s->values[i] = p;
        p += vl;
    }
    s->family = f;
    if (f->series_tail != NULL)
        f->series_tail->next = s;
    else
        f->series = s;
    f->series_tail = s;
    f->nseries++;
    return s;
}

pp_series_t *pp_metric_series(pp_metric_t *f)
{
    static const char *const none[1] = {NULL};
    return f != NULL && f->nlabels == 0 ? pp_metric_with(f, none) : NULL;
}

void pp_series_add(pp_series_t *s, double v)
{
    if (s == NULL || s->family->type == T_HISTOGRAM || isnan(v))
        return;
    if (s->family->type == T_COUNTER && !(v >= 0))
        return;
    s->value += v;
}

void pp_series_inc(pp_series_t *s)
{
    pp_series_add(s, 1);
}

void pp_series_set(pp_series_t *s, double v)
{
    if (s == NULL || s->family->type == T_HISTOGRAM)
        return;
    /* A counter read from elsewhere (CPU time) only moves up. */
    if (s->family->type == T_GAUGE || v >= s->value)
        s->value = v;
}

void pp_series_observe(pp_series_t *s, double v)
{
    if (s == NULL || s->family->type != T_HISTOGRAM || isnan(v))
        return;
    const pp_metric_t *f = s->family;
    size_t i = 0;
    while (i < f->nbounds && v > f->bounds[i])
        i++;
    s->buckets[i]++;
    s->count++;
    s->value += v;
}

double pp_series_value(const pp_series_t *s)
{
    if (s == NULL)
        return 0;
    return s->family->type == T_HISTOGRAM ? (double)s->count : s->value;
}

int pp_metrics_add_collector(pp_metrics_t *m, pp_metrics_collect_cb cb, void *data)
{
    if (m == NULL)
        return 0;
    collector_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->cb = cb;
    c->data = data;
    if (m->collectors_tail != NULL)
        m->collectors_tail->next = c;
    else
        m->collectors = c;
    m->collectors_tail = c;
    return 0;
}

/* ---- exposition -------------------------------------------------------- */

static int put_value(pp_buf_t *out, double v)
{
    char text[32];
    fmt_number(text, v);
    return pp_buf_append(out, text, strlen(text));
}

/* Help text escapes backslash and newline; label values also the quote. */
static int put_escaped(pp_buf_t *out, const char *s, int quote)
{
    const char *run = s;
    int r = 0;
    for (; *s != '\0' && r == 0; s++) {
        const char *esc = *s == '\\'           ? "\\\\"
                          : *s == '\n'         ? "\\n"
                          : quote && *s == '"' ? "\\\""
                                               : NULL;
        if (esc == NULL)
            continue;
        if ((r = pp_buf_append(out, run, (size_t)(s - run))) == 0)
            r = pp_buf_append(out, esc, 2);
        run = s + 1;
    }
    return r != 0 ? r : pp_buf_append(out, run, (size_t)(s - run));
}

/* name{a="x",b="y"[,le="0.5"]} */
static int put_series_name(pp_buf_t *out, const pp_metric_t *f, const char *suffix,
                           const pp_series_t *s, const char *le)
{
    int r = pp_buf_printf(out, "%s%s", f->name, suffix);
    if (r != 0 || (f->nlabels == 0 && le == NULL))
        return r;
    r = pp_buf_append_byte(out, '{');
    for (size_t i = 0; r == 0 && i < f->nlabels; i++) {
        r = pp_buf_printf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
        if (r == 0)
            r = put_escaped(out, s->values[i], 1);
        if (r == 0)
            r = pp_buf_append_byte(out, '"');
    }
    if (r == 0 && le != NULL)
        r = pp_buf_printf(out, "%sle=\"%s\"", f->nlabels ? "," : "", le);
    return r != 0 ? r : pp_buf_append_byte(out, '}');
}

static int put_line(pp_buf_t *out, const pp_metric_t *f, const char *suffix, const pp_series_t *s,
                    const char *le, double v)
{
    int r = put_series_name(out, f, suffix, s, le);
    if (r == 0)
        r = pp_buf_append_byte(out, ' ');
    if (r == 0)
        r = put_value(out, v);
    return r != 0 ? r : pp_buf_append_byte(out, '\n');
}

static int put_histogram(pp_buf_t *out, const pp_metric_t *f, const pp_series_t *s)
{
    uint64_t cum = 0;
    int r = 0;
    for (size_t i = 0; r == 0 && i <= f->nbounds; i++) {
        cum += s->buckets[i];
        r = put_line(out, f, "_bucket", s, i < f->nbounds ? f->le[i] : "+Inf", (double)cum);
    }
    if (r == 0)
        r = put_line(out, f, "_sum", s, NULL, s->value);
    return r != 0 ? r : put_line(out, f, "_count", s, NULL, (double)s->count);
}

int pp_metrics_render(pp_metrics_t *m, pp_buf_t *out)
{
    if (m == NULL)
        return 0;
    for (collector_t *c = m->collectors; c != NULL; c = c->next)
        c->cb(m, c->data);
    int r = 0;
    for (const pp_metric_t *f = m->families; r == 0 && f != NULL; f = f->next) {
        r = pp_buf_printf(out, "# HELP %s ", f->name);
        if (r == 0)
            r = put_escaped(out, f->help, 0);
        if (r == 0)
            r = pp_buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
        for (const pp_series_t *s = f->series; r == 0 && s != NULL; s = s->next)
            r = f->type == T_HISTOGRAM ? put_histogram(out, f, s)
                                       : put_line(out, f, "", s, NULL, s->value);
    }
    return r;
}

/* ---- process gauges ---------------------------------------------------- */

static double count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return NAN;
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* Resident pages, CPU ticks and the start time (in ticks after boot) from
 * /proc/self/stat, whose second field (the command) may hold spaces. */
static int read_stat(double *rss_bytes, double *cpu_s, double *start_s)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "re");
    if (f == NULL)
        return -errno;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -EINVAL;
    unsigned long utime = 0, stime = 0, rss = 0;
    unsigned long long start = 0;
    /* Fields from the third on: state ppid pgrp session tty tpgid flags
     * minflt cminflt majflt cmajflt utime stime cutime cstime priority nice
     * threads itrealvalue starttime vsize rss. */
    if (sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d "
               "%llu %*u %lu",
               &utime, &stime, &start, &rss) != 4)
        return -EINVAL;
    double tick = (double)sysconf(_SC_CLK_TCK);
    *rss_bytes = (double)rss * (double)sysconf(_SC_PAGESIZE);
    *cpu_s = (double)(utime + stime) / tick;
    struct timespec now, up;
    clock_gettime(CLOCK_REALTIME, &now);
    clock_gettime(CLOCK_BOOTTIME, &up);
    double boot = (double)now.tv_sec - (double)up.tv_sec;
    *start_s = boot + (double)start / tick;
    return 0;
}

void pp_metrics_process_cb(pp_metrics_t *m, void *data)
{
    (void)data;
    double rss = NAN, cpu = NAN, start = NAN;
    (void)read_stat(&rss, &cpu, &start);
    struct rlimit rl;
    double max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (double)rl.rlim_cur : NAN;
    pp_series_set(pp_metric_series(pp_metrics_gauge(m, "process_resident_memory_bytes",
                                                    "Resident memory size in bytes.", NULL)),
                  rss);
    pp_series_set(pp_metric_series(pp_metrics_gauge(m, "process_open_fds",
                                                    "Number of open file descriptors.", NULL)),
                  count_fds());
    pp_series_set(pp_metric_series(pp_metrics_gauge(
                      m, "process_max_fds", "Maximum number of open file descriptors.", NULL)),
                  max_fds);
    pp_series_set(pp_metric_series(pp_metrics_counter(m, "process_cpu_seconds_total",
                                                      "Total user and system CPU time spent in "
                                                      "seconds.",
                                                      NULL)),
                  cpu);
    pp_series_set(pp_metric_series(pp_metrics_gauge(m, "process_start_time_seconds",
                                                    "Start time of the process since unix epoch "
                                                    "in seconds.",
                                                    NULL)),
                  start);
}
