/* One settings reader for every program and provider (settings.h). */
#include "util/settings.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/cleanup.h"
#include "util/log.h"

static const char *const kind_names[] = {
    [PP_SETTING_STRING] = "string",     [PP_SETTING_LIST] = "list",
    [PP_SETTING_INT] = "int",           [PP_SETTING_BOOL] = "bool",
    [PP_SETTING_DURATION] = "duration", [PP_SETTING_ENUM] = "enum",
    [PP_SETTING_NUMBER] = "number",     [PP_SETTING_NOOP] = "string",
    [PP_SETTING_WARN] = "string",       [PP_SETTING_REFUSE] = "string",
};

static const char *const support_names[] = {
    [PP_SETTING_NOOP] = "noop",
    [PP_SETTING_WARN] = "warn",
    [PP_SETTING_REFUSE] = "refuse",
};

int pp_parse_bool(const char *s, int *out)
{
    /* Go's strconv.ParseBool, case-sensitive as there, then words in any case. */
    static const struct {
        const char *word;
        int value;
    } exact[] = {{"1", 1}, {"t", 1}, {"T", 1}, {"TRUE", 1},  {"true", 1},  {"True", 1},
                 {"0", 0}, {"f", 0}, {"F", 0}, {"FALSE", 0}, {"false", 0}, {"False", 0}},
      folded[] = {{"true", 1}, {"false", 0}, {"yes", 1}, {"no", 0}, {"on", 1}, {"off", 0}};
    if (s == NULL)
        return -EINVAL;
    for (size_t i = 0; i < PP_ARRAY_SIZE(exact); i++)
        if (strcmp(s, exact[i].word) == 0)
            return *out = exact[i].value, 0;
    for (size_t i = 0; i < PP_ARRAY_SIZE(folded); i++)
        if (strcasecmp(s, folded[i].word) == 0)
            return *out = folded[i].value, 0;
    return -EINVAL;
}

/* Units in nanoseconds; longest first so that "ms" is not read as "m". */
static const struct {
    const char *name;
    double ns;
} duration_units[] = {
    {"ns", 1},   {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
    {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},        {"h", 3600e9},
};

int pp_parse_duration_ms(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0')
        return -EINVAL;
    /* A bare whole number is seconds (the daemons' timeouts always took it). */
    if (s[strspn(s, "0123456789")] == '\0') {
        if (strlen(s) > 12)
            return -EINVAL;
        *out = strtoull(s, NULL, 10) * 1000;
        return 0;
    }
    if (strcmp(s, "0") == 0)
        return *out = 0, 0;
    const char *p = s;
    if (*p == '+')
        p++;
    double total_ns = 0;
    while (*p != '\0') {
        /* A number: digits with at most one point, at least one digit. */
        const char *start = p;
        size_t digits = strspn(p, "0123456789");
        p += digits;
        if (*p == '.') {
            p++;
            size_t frac = strspn(p, "0123456789");
            p += frac;
            digits += frac;
        }
        if (digits == 0)
            return -EINVAL;
        char num[64];
        if ((size_t)(p - start) >= sizeof(num))
            return -EINVAL;
        memcpy(num, start, (size_t)(p - start));
        num[p - start] = '\0';
        double v = strtod(num, NULL);
        size_t best = PP_ARRAY_SIZE(duration_units), best_len = 0;
        for (size_t i = 0; i < PP_ARRAY_SIZE(duration_units); i++) {
            size_t n = strlen(duration_units[i].name);
            if (n > best_len && strncmp(p, duration_units[i].name, n) == 0) {
                best = i;
                best_len = n;
            }
        }
        if (best_len == 0)
            return -EINVAL;
        total_ns += v * duration_units[best].ns;
        p += best_len;
        if (!(total_ns < 9.2e18))
            return -EINVAL;
    }
    *out = (uint64_t)(total_ns / 1e6);
    return 0;
}

int pp_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int pp_list_next(const char **cursor, const char **item, size_t *len)
{
    const char *p = *cursor;
    while (*p != '\0') {
        size_t l = strcspn(p, ",");
        const char *s = p, *e = p + l;
        p += l;
        if (*p == ',')
            p++;
        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (e > s) {
            *cursor = p;
            *item = s;
            *len = (size_t)(e - s);
            return 1;
        }
    }
    *cursor = p;
    return 0;
}

size_t pp_list_count(const char *s)
{
    const char *item;
    size_t len, n = 0;
    while (pp_list_next(&s, &item, &len))
        n++;
    return n;
}

/* "environment variable `X`" or "flag `-x`", for messages. */
static const char *source_name(const pp_setting_t *s, int from_flag, char *buf, size_t size)
{
    if (from_flag)
        snprintf(buf, size, "flag `-%s`", s->flag);
    else if (s->env != NULL)
        snprintf(buf, size, "environment variable `%s`", s->env);
    else
        snprintf(buf, size, "default of `-%s`", s->flag);
    return buf;
}

static int in_words(const pp_setting_t *s, const char *v)
{
    int b;
    if ((s->flags & PP_SETTING_AS_BOOL) && pp_parse_bool(v, &b) == 0)
        v = b ? "true" : "false";
    for (size_t i = 0; s->words != NULL && s->words[i] != NULL; i++)
        if (strcasecmp(v, s->words[i]) == 0)
            return 1;
    return 0;
}

static void words_text(const pp_setting_t *s, char *buf, size_t size)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; s->words != NULL && s->words[i] != NULL && off < size; i++) {
        int n = snprintf(buf + off, size - off, "%s`%s`",
                         i == 0                    ? ""
                         : s->words[i + 1] == NULL ? " or "
                                                   : ", ",
                         s->words[i]);
        if (n < 0)
            break;
        off += (size_t)n;
    }
}

static int check_chars(const pp_setting_t *s, const char *src, const char *item, size_t len,
                       pp_error_t *err)
{
    if (s->chars == NULL)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (item[i] != '\0' && strchr(s->chars, item[i]) != NULL)
            continue;
        if (s->flags & PP_SETTING_SECRET)
            return pp_error_set(err, -EINVAL, "%s: has characters outside `%s`", src, s->chars);
        return pp_error_set(err, -EINVAL, "%s: `%.*s` has characters outside `%s`", src, (int)len,
                            item, s->chars);
    }
    return 0;
}

/* Parses `v` into the field of `s` in cfg. */
static int apply(const pp_setting_t *s, void *cfg, const char *v, int from_flag, pp_error_t *err)
{
    char src[128], words[256];
    char *field = (char *)cfg + s->offset;
    const char *shown = s->flags & PP_SETTING_SECRET ? "(secret)" : v;
    source_name(s, from_flag, src, sizeof(src));
    switch (s->kind) {
    case PP_SETTING_STRING:
    case PP_SETTING_LIST: {
        size_t len = strlen(v);
        if (len >= s->size)
            return pp_error_set(err, -EINVAL, "%s: longer than %zu bytes", src, s->size - 1);
        if (s->kind == PP_SETTING_STRING) {
            int r = check_chars(s, src, v, len, err);
            if (r < 0)
                return r;
        } else {
            const char *cur = v, *item;
            size_t ilen, n = 0;
            while (pp_list_next(&cur, &item, &ilen)) {
                int r = check_chars(s, src, item, ilen, err);
                if (r < 0)
                    return r;
                n++;
            }
            if (s->max > 0 && n > (size_t)s->max)
                return pp_error_set(err, -EINVAL, "%s: more than %lld items", src,
                                    (long long)s->max);
        }
        memcpy(field, v, len + 1);
        return 0;
    }
    case PP_SETTING_INT: {
        int64_t n;
        if (pp_parse_int(v, s->min, s->max, &n) < 0)
            return pp_error_set(err, -EINVAL, "%s: `%s` is not a whole number from %lld to %lld",
                                src, shown, (long long)s->min, (long long)s->max);
        if (s->size == sizeof(int64_t))
            memcpy(field, &n, sizeof(n));
        else {
            int i = (int)n;
            memcpy(field, &i, sizeof(i));
        }
        return 0;
    }
    case PP_SETTING_BOOL: {
        int b;
        if (pp_parse_bool(v, &b) < 0)
            return pp_error_set(err, -EINVAL, "%s: `%s` is not true or false", src, shown);
        memcpy(field, &b, sizeof(b));
        return 0;
    }
    case PP_SETTING_DURATION: {
        uint64_t ms;
        if (pp_parse_duration_ms(v, &ms) < 0)
            return pp_error_set(err, -EINVAL,
                                "%s: `%s` is not a duration (like 90s, 500ms, 5m, 1h30m)", src,
                                shown);
        if ((int64_t)ms < s->min || (s->max > 0 && (int64_t)ms > s->max))
            return pp_error_set(err, -EINVAL, "%s: `%s` is not from %lldms to %lldms", src, shown,
                                (long long)s->min, (long long)s->max);
        memcpy(field, &ms, sizeof(ms));
        return 0;
    }
    case PP_SETTING_ENUM:
        for (int i = 0; s->words != NULL && s->words[i] != NULL; i++) {
            if (strcasecmp(v, s->words[i]) == 0) {
                memcpy(field, &i, sizeof(i));
                return 0;
            }
        }
        words_text(s, words, sizeof(words));
        return pp_error_set(err, -EINVAL, "%s: `%s` is not %s", src, shown, words);
    case PP_SETTING_NUMBER: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (errno != 0 || end == v || *end != '\0' || !isfinite(d) || d < (double)s->min ||
            d > (double)s->max)
            return pp_error_set(err, -EINVAL, "%s: `%s` is not a number from %lld to %lld", src,
                                shown, (long long)s->min, (long long)s->max);
        memcpy(field, &d, sizeof(d));
        return 0;
    }
    case PP_SETTING_NOOP:
        return 0;
    case PP_SETTING_WARN:
        /* Logged once by pp_settings_load(), for the value that wins. */
        return 0;
    case PP_SETTING_REFUSE:
        if (in_words(s, v))
            return 0;
        words_text(s, words, sizeof(words));
        return pp_error_set(err, -ENOTSUP, "%s: `%s` is not supported: %s (supported: %s)", src,
                            shown, s->help, words[0] ? words : "none");
    }
    return pp_error_set(err, -EINVAL, "%s: unknown kind of setting", src);
}

static int has_field(const pp_setting_t *s)
{
    return s->kind < PP_SETTING_NOOP;
}

/* Whether `a` (after its dashes) names flag `f`: `f` or `f=...`. */
static const char *flag_value(const char *a, const char *f)
{
    size_t n = strlen(f);
    if (strncmp(a, f, n) != 0)
        return NULL;
    if (a[n] == '\0')
        return a + n;
    if (a[n] == '=')
        return a + n + 1;
    return NULL;
}

static const pp_setting_t *find_flag(const pp_settings_table_t *t, const char *a,
                                     const char **value)
{
    for (size_t i = 0; i < t->n; i++) {
        const pp_setting_t *s = &t->items[i];
        const char *v;
        if (s->flag != NULL && (v = flag_value(a, s->flag)) != NULL) {
            *value = *v == '\0' && v[-1] != '=' ? NULL : v;
            return s;
        }
    }
    return NULL;
}

static int is_help(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "-help") == 0 || strcmp(a, "--help") == 0 ||
           strcmp(a, "--h") == 0;
}

/* The flag name in argv word `a` (past its dashes), or NULL for a non-flag. */
static const char *flag_name(const char *a)
{
    if (a[0] != '-' || a[1] == '\0')
        return NULL;
    a += a[1] == '-' ? 2 : 1;
    return *a != '\0' && *a != '-' && *a != '=' ? a : NULL;
}

int pp_settings_load(const pp_settings_table_t *t, void *cfg, int argc, char **argv, unsigned opts,
                     pp_error_t *err)
{
    int r, lenient = (opts & PP_SETTINGS_LENIENT) != 0;
    /* Per setting: 0 unset, 1 from the environment, 2 from a flag; and the
     * value that won, for the one warning a WARN setting gets. */
    unsigned char *set = calloc(t->n ? t->n : 1, 1);
    const char **value = calloc(t->n ? t->n : 1, sizeof(*value));
    if (set == NULL || value == NULL) {
        free(set);
        free(value);
        return pp_error_set(err, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < t->n; i++) {
        const pp_setting_t *s = &t->items[i];
        if (has_field(s) && !(opts & PP_SETTINGS_NO_ZERO))
            memset((char *)cfg + s->offset, 0, s->size);
        if (has_field(s) && s->def != NULL && (r = apply(s, cfg, s->def, s->env == NULL, err)) < 0)
            goto out;
        const char *v = s->env != NULL && !(opts & PP_SETTINGS_NO_ENV) ? getenv(s->env) : NULL;
        if (v != NULL && v[0] != '\0') {
            if ((r = apply(s, cfg, v, 0, err)) < 0)
                goto out;
            set[i] = 1;
            value[i] = v;
        }
    }
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            r = PP_SETTINGS_HELP;
            goto out;
        }
        const char *a = flag_name(argv[i]);
        if (a == NULL) {
            if (lenient)
                continue;
            r = pp_error_set(err, -EINVAL, "unexpected argument `%s`", argv[i]);
            goto out;
        }
        const char *v = NULL;
        const pp_setting_t *s = find_flag(t, a, &v);
        if (s == NULL) {
            if (!lenient) {
                r = pp_error_set(err, -EINVAL, "unknown flag `%s` (-h lists them)", argv[i]);
                goto out;
            }
            /* Another table's flag: its value, if separate, is the next word
             * that is not a flag. */
            if (strchr(a, '=') == NULL && i + 1 < argc && flag_name(argv[i + 1]) == NULL)
                i++;
            continue;
        }
        int b;
        if (v == NULL) {
            if (s->kind == PP_SETTING_BOOL || (s->flags & PP_SETTING_AS_BOOL))
                v = i + 1 < argc && pp_parse_bool(argv[i + 1], &b) == 0 ? argv[++i] : "true";
            else if (i + 1 < argc)
                v = argv[++i];
            else {
                r = pp_error_set(err, -EINVAL, "flag `-%s` needs a value", s->flag);
                goto out;
            }
        }
        if ((r = apply(s, cfg, v, 1, err)) < 0)
            goto out;
        set[s - t->items] = 2;
        value[s - t->items] = v;
    }
    for (size_t i = 0; i < t->n; i++) {
        const pp_setting_t *s = &t->items[i];
        if ((s->flags & PP_SETTING_REQUIRED) && !set[i] && (s->def == NULL || s->def[0] == '\0')) {
            char src[128];
            r = pp_error_set(err, -EINVAL, "%s is required: %s",
                             source_name(s, s->env == NULL, src, sizeof(src)), s->help);
            goto out;
        }
    }
    for (size_t i = 0; i < t->n && !(opts & PP_SETTINGS_QUIET); i++) {
        const pp_setting_t *s = &t->items[i];
        if (s->kind != PP_SETTING_WARN || value[i] == NULL || in_words(s, value[i]))
            continue;
        char src[128];
        pp_log(PP_LOG_WARN, t->title, "%s is set to `%s`, which has no effect here: %s",
               source_name(s, set[i] == 2, src, sizeof(src)),
               s->flags & PP_SETTING_SECRET ? "(secret)" : value[i], s->help);
    }
    r = 0;
out:
    free(set);
    free(value);
    return r;
}

int pp_settings_check_flags(const pp_settings_table_t *const *tables, size_t n, int argc,
                            char **argv, pp_error_t *err)
{
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i]))
            continue;
        const char *a = flag_name(argv[i]);
        if (a == NULL)
            return pp_error_set(err, -EINVAL, "unexpected argument `%s`", argv[i]);
        const pp_setting_t *s = NULL;
        const char *v = NULL;
        for (size_t t = 0; t < n && s == NULL; t++)
            s = find_flag(tables[t], a, &v);
        if (s == NULL)
            return pp_error_set(err, -EINVAL, "unknown flag `%s` (-h lists them)", argv[i]);
        int b;
        if (v != NULL)
            continue;
        if (s->kind == PP_SETTING_BOOL || (s->flags & PP_SETTING_AS_BOOL)) {
            if (i + 1 < argc && pp_parse_bool(argv[i + 1], &b) == 0)
                i++;
        } else if (i + 1 < argc) {
            i++;
        }
    }
    return 0;
}

static const char *kind_value_name(const pp_setting_t *s)
{
    return s->kind == PP_SETTING_BOOL ? "" : " value";
}

void pp_settings_usage(FILE *out, const pp_settings_table_t *t)
{
    fprintf(out, "%s settings (flag, environment variable):\n", t->title);
    for (size_t i = 0; i < t->n; i++) {
        const pp_setting_t *s = &t->items[i];
        if (s->flags & PP_SETTING_HIDDEN)
            continue;
        char name[96];
        if (s->flag != NULL)
            snprintf(name, sizeof(name), "-%s%s", s->flag, kind_value_name(s));
        else
            snprintf(name, sizeof(name), "(no flag)");
        fprintf(out, "  %-32s %s\n        %s", name, s->env != NULL ? s->env : "(no variable)",
                s->help);
        if (s->kind >= PP_SETTING_NOOP)
            fprintf(out, " [%s]", support_names[s->kind]);
        else if (s->def != NULL && s->def[0] != '\0' && !(s->flags & PP_SETTING_SECRET))
            fprintf(out, " (default %s)", s->def);
        fputc('\n', out);
    }
}

void pp_settings_list(FILE *out, const pp_settings_table_t *t)
{
    for (size_t i = 0; i < t->n; i++) {
        const pp_setting_t *s = &t->items[i];
        const char *def =
            s->def != NULL && s->def[0] != '\0' && !(s->flags & PP_SETTING_SECRET) ? s->def : "-";
        fprintf(out, "%s\t%s\t%s\t%s\t%s\n", s->env != NULL ? s->env : "-",
                s->flag != NULL ? s->flag : "-", kind_names[s->kind],
                s->kind >= PP_SETTING_NOOP ? support_names[s->kind] : "supported", def);
    }
}

const pp_setting_t *pp_settings_find_env(const pp_settings_table_t *t, const char *env)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->items[i].env != NULL && strcmp(t->items[i].env, env) == 0)
            return &t->items[i];
    return NULL;
}
