/* pp-scale: drives cloud-api-adaptor the way the kata shim does, for many
 * pods at once, and measures what tests/bench/scale/run.sh prints.
 *
 *   pp-scale up      -socket HV -list FILE [-conc N]   CreateVM + StartVM per pod
 *   pp-scale create  -socket HV -list FILE [-conc N]   CreateVM only
 *   pp-scale start   -socket HV -list FILE [-conc N]   StartVM only (a burst: -conc 0)
 *   pp-scale stop    -socket HV -list FILE [-conc N]   StopVM
 *   pp-scale cycle   -socket HV -list FILE             CreateVM, StartVM, StopVM,
 *                                                     one pod after another
 *   pp-scale version -socket HV [-count N]             Version, p50/p99
 *   pp-scale load    -list SOCKS [-conc 64] [-warmup MS] [-duration MS] [-pid PID]
 *   pp-scale serving -list SOCKS [-hv HV] -since NS [-timeout MS]
 *   pp-scale rest    -pid PID [-ms MS]
 *   pp-scale tunnel  -netns PATH -remote IP [-index I] [-count N]
 *   pp-scale watch   -dir VMS                          until stdin closes
 *
 * A pod list has one pod a line: "<sandbox id> <pod name> <netns path>"
 * (the path may be "-" for none). A socket list has one agent socket path a
 * line. Every hypervisor call is made on a connection of its own, as the
 * shim makes them (StartVM with the shim's 600 s deadline); agent calls go
 * over one connection per pod, kept open, as the shim keeps one.
 *
 * Results go to stdout as `key value` lines (or `POD <id> <ms>` for each
 * StartVM), for the script to read; failures are said on stderr and make
 * the exit status 1. */

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "health.pb-c.h"
#include "hypervisor.pb-c.h"
#include "net/net.h"
#include "ttrpc/ttrpc.h"

#define HV               "hypervisor.Hypervisor"
#define START_TIMEOUT_NS (600LL * 1000000000LL) /* the shim's remote_hypervisor_timeout */
#define CALL_TIMEOUT_NS  (60LL * 1000000000LL)
#define AGENT_TIMEOUT_NS (10LL * 1000000000LL)

typedef struct opts_s {
    const char *socket, *list, *hv, *netns, *remote, *dir;
    int conc, count, pid, index;
    long warmup_ms, duration_ms, timeout_ms, ms;
    int64_t since_ns;
} opts_t;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v and gives the q-quantile (nearest rank). */
static double quantile(double *v, size_t n, double q)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_double);
    size_t k = (size_t)(q * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    return v[(k > n ? n : k) - 1];
}

/* Descriptors: the shim-like clients here hold one per pod. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ---- lists ------------------------------------------------------------- */

typedef struct pod_s {
    char id[128];
    char name[64];
    char netns[256];
    double start_ms; /* StartVM as the caller saw it */
    int done;
} pod_t;

static int read_lines(const char *path, char ***out, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "pp-scale: open `%s`: %s\n", path, strerror(errno));
        return -1;
    }
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '\0')
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 256;
            char **nv = realloc(v, cap * sizeof(*v));
            if (nv == NULL)
                abort();
            v = nv;
        }
        v[cnt] = strdup(line);
        if (v[cnt] == NULL)
            abort();
        cnt++;
    }
    fclose(f);
    *out = v;
    *n = cnt;
    return 0;
}

static void free_lines(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int read_pods(const char *path, pod_t **out, size_t *n)
{
    char **lines;
    size_t cnt;
    if (read_lines(path, &lines, &cnt) < 0)
        return -1;
    pod_t *p = calloc(cnt ? cnt : 1, sizeof(*p));
    if (p == NULL)
        abort();
    for (size_t i = 0; i < cnt; i++) {
        char netns[256] = "-";
        if (sscanf(lines[i], "%127s %63s %255s", p[i].id, p[i].name, netns) < 2) {
            fprintf(stderr, "pp-scale: `%s` line %zu: expected `<id> <pod> [<netns>]`\n", path,
                    i + 1);
            free_lines(lines, cnt);
            free(p);
            return -1;
        }
        snprintf(p[i].netns, sizeof(p[i].netns), "%s", strcmp(netns, "-") == 0 ? "" : netns);
    }
    free_lines(lines, cnt);
    *out = p;
    *n = cnt;
    return 0;
}

/* ---- one call on a connection of its own --------------------------------- */

typedef void (*once_cb)(int code, const char *msg, const uint8_t *payload, size_t len, double ms,
                        void *data);

typedef struct once_s {
    pp_ttrpc_client_t *c;
    const char *service, *method;
    uint8_t *payload;
    size_t len;
    int64_t timeout_ns;
    double t0;
    once_cb cb;
    void *data;
} once_t;

static void once_finish(once_t *o, int code, const char *msg, const uint8_t *payload, size_t len)
{
    o->cb(code, msg, payload, len, now_ms() - o->t0, o->data);
    pp_ttrpc_client_close(o->c, NULL, NULL);
    free(o->payload);
    free(o);
}

static void once_answered(pp_ttrpc_result_t *res, void *data)
{
    once_t *o = data;
    char msg[512];
    snprintf(msg, sizeof(msg), "%.*s", (int)res->message.n,
             res->message.p != NULL ? res->message.p : "");
    once_finish(o, res->code, msg, res->payload, res->payload_len);
}

static void once_connected(pp_ttrpc_client_t *c, int status, void *data)
{
    (void)c;
    once_t *o = data;
    if (status == 0) {
        pp_ttrpc_call_opts_t co = {.service = o->service,
                                   .method = o->method,
                                   .payload = o->payload,
                                   .payload_len = o->len,
                                   .timeout_nano = o->timeout_ns};
        status = pp_ttrpc_client_call(o->c, &co, once_answered, o);
        if (status == 0)
            return;
    }
    once_finish(o, status, uv_strerror(status), NULL, 0);
}

/* Takes `payload` (malloc'd). Fails synchronously or calls back once. */
static int call_once(uv_loop_t *loop, const char *sock, const char *service, const char *method,
                     uint8_t *payload, size_t len, int64_t timeout_ns, once_cb cb, void *data)
{
    once_t *o = calloc(1, sizeof(*o));
    if (o == NULL) {
        free(payload);
        return -ENOMEM;
    }
    *o = (once_t){.service = service,
                  .method = method,
                  .payload = payload,
                  .len = len,
                  .timeout_ns = timeout_ns,
                  .t0 = now_ms(),
                  .cb = cb,
                  .data = data};
    int r = pp_ttrpc_client_new(loop, &o->c);
    if (r == 0) {
        r = pp_ttrpc_client_connect_unix(o->c, sock, once_connected, o);
        if (r < 0)
            pp_ttrpc_client_close(o->c, NULL, NULL);
    }
    if (r < 0) {
        free(payload);
        free(o);
    }
    return r;
}

static uint8_t *pack_id(const char *id, size_t *len)
{
    /* StartVMRequest and StopVMRequest are both {id = 1}. */
    Hypervisor__StartVMRequest req = HYPERVISOR__START_VMREQUEST__INIT;
    req.id = (char *)id;
    *len = hypervisor__start_vmrequest__get_packed_size(&req);
    uint8_t *buf = malloc(*len + 1);
    if (buf != NULL)
        hypervisor__start_vmrequest__pack(&req, buf);
    return buf;
}

static uint8_t *pack_create(const pod_t *p, size_t *len)
{
    Hypervisor__CreateVMRequest req = HYPERVISOR__CREATE_VMREQUEST__INIT;
    Hypervisor__CreateVMRequest__AnnotationsEntry e[2], *ep[2] = {&e[0], &e[1]};
    hypervisor__create_vmrequest__annotations_entry__init(&e[0]);
    hypervisor__create_vmrequest__annotations_entry__init(&e[1]);
    e[0].key = "io.kubernetes.cri.sandbox-name";
    e[0].value = (char *)p->name;
    e[1].key = "io.kubernetes.cri.sandbox-namespace";
    e[1].value = "scale";
    req.id = (char *)p->id;
    req.networknamespacepath = (char *)p->netns;
    req.n_annotations = 2;
    req.annotations = ep;
    *len = hypervisor__create_vmrequest__get_packed_size(&req);
    uint8_t *buf = malloc(*len + 1);
    if (buf != NULL)
        hypervisor__create_vmrequest__pack(&req, buf);
    return buf;
}

/* ---- lifecycles: up, create, start, stop ---------------------------------- */

enum step { STEP_CREATE, STEP_START, STEP_STOP };

typedef struct run_s {
    uv_loop_t *loop;
    const char *hv;
    pod_t *pods;
    size_t n, next, in_flight, done, failed;
    size_t conc;
    enum step first, last;
} run_t;

typedef struct job_s {
    run_t *run;
    pod_t *pod;
    enum step step;
} job_t;

static void job_next(job_t *j);

static const char *step_method(enum step s)
{
    return s == STEP_CREATE ? "CreateVM" : s == STEP_START ? "StartVM" : "StopVM";
}

static void run_fill(run_t *r);

static void job_end(job_t *j, int ok)
{
    run_t *r = j->run;
    r->in_flight--;
    r->done++;
    if (!ok)
        r->failed++;
    free(j);
    run_fill(r);
}

static void job_answered(int code, const char *msg, const uint8_t *payload, size_t len, double ms,
                         void *data)
{
    (void)payload;
    (void)len;
    job_t *j = data;
    if (code != 0) {
        fprintf(stderr, "pp-scale: %s `%s`: %s%s%s\n", step_method(j->step), j->pod->id,
                code < 0 ? "" : pp_grpc_code_name(code), code < 0 ? "" : ": ", msg);
        job_end(j, 0);
        return;
    }
    if (j->step == STEP_START) {
        j->pod->start_ms = ms;
        j->pod->done = 1;
    }
    if (j->step == j->run->last) {
        job_end(j, 1);
        return;
    }
    j->step++;
    job_next(j);
}

static void job_next(job_t *j)
{
    run_t *r = j->run;
    size_t len = 0;
    uint8_t *buf = j->step == STEP_CREATE ? pack_create(j->pod, &len) : pack_id(j->pod->id, &len);
    int rc = buf == NULL ? -ENOMEM
                         : call_once(r->loop, r->hv, HV, step_method(j->step), buf, len,
                                     j->step == STEP_START ? START_TIMEOUT_NS : CALL_TIMEOUT_NS,
                                     job_answered, j);
    if (rc < 0) {
        fprintf(stderr, "pp-scale: %s `%s`: %s\n", step_method(j->step), j->pod->id,
                uv_strerror(rc));
        job_end(j, 0);
    }
}

static void run_fill(run_t *r)
{
    while (r->next < r->n && (r->conc == 0 || r->in_flight < r->conc)) {
        job_t *j = calloc(1, sizeof(*j));
        if (j == NULL)
            abort();
        *j = (job_t){.run = r, .pod = &r->pods[r->next++], .step = r->first};
        r->in_flight++;
        job_next(j);
    }
}

static int cmd_lifecycle(const opts_t *o, enum step first, enum step last)
{
    if (o->socket == NULL || o->list == NULL) {
        fprintf(stderr, "pp-scale: -socket and -list are required\n");
        return 2;
    }
    run_t r = {
        .hv = o->socket, .conc = o->conc < 0 ? 8 : (size_t)o->conc, .first = first, .last = last};
    if (read_pods(o->list, &r.pods, &r.n) < 0)
        return 2;
    uv_loop_t loop;
    uv_loop_init(&loop);
    r.loop = &loop;
    double t0 = now_ms();
    run_fill(&r);
    uv_run(&loop, UV_RUN_DEFAULT);
    double wall = now_ms() - t0;
    uv_loop_close(&loop);
    double *lat = calloc(r.n + 1, sizeof(double));
    size_t nl = 0;
    for (size_t i = 0; i < r.n; i++)
        if (r.pods[i].done) {
            printf("POD %s %.3f\n", r.pods[i].id, r.pods[i].start_ms);
            lat[nl++] = r.pods[i].start_ms;
        }
    printf("calls %zu\nfailed %zu\nwall_ms %.1f\n", r.n, r.failed, wall);
    if (nl > 0)
        printf("startvm_p50_ms %.3f\nstartvm_p99_ms %.3f\n", quantile(lat, nl, 0.5),
               quantile(lat, nl, 0.99));
    free(lat);
    free(r.pods);
    return r.failed ? 1 : 0;
}

/* ---- Version on a connection of its own, one after another ----------------- */

typedef struct seq_s {
    uv_loop_t *loop;
    const char *sock;
    int left, failed;
    double *lat;
    size_t n;
} seq_t;

static void seq_next(seq_t *s);

static void version_answered(int code, const char *msg, const uint8_t *payload, size_t len,
                             double ms, void *data)
{
    (void)payload;
    (void)len;
    seq_t *s = data;
    if (code != 0) {
        fprintf(stderr, "pp-scale: Version: %s\n", msg);
        s->failed++;
    } else {
        s->lat[s->n++] = ms;
    }
    seq_next(s);
}

static void seq_next(seq_t *s)
{
    if (s->left-- <= 0)
        return;
    Hypervisor__VersionRequest req = HYPERVISOR__VERSION_REQUEST__INIT;
    req.version = "0.0.1";
    size_t len = hypervisor__version_request__get_packed_size(&req);
    uint8_t *buf = malloc(len + 1);
    if (buf == NULL)
        abort();
    hypervisor__version_request__pack(&req, buf);
    if (call_once(s->loop, s->sock, HV, "Version", buf, len, CALL_TIMEOUT_NS, version_answered, s) <
        0)
        s->failed++;
}

static int cmd_version(const opts_t *o)
{
    if (o->socket == NULL) {
        fprintf(stderr, "pp-scale: -socket is required\n");
        return 2;
    }
    int count = o->count > 0 ? o->count : 200;
    uv_loop_t loop;
    uv_loop_init(&loop);
    seq_t s = {.loop = &loop, .sock = o->socket, .left = count};
    s.lat = calloc((size_t)count, sizeof(double));
    seq_next(&s);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    printf("calls %d\nfailed %d\n", count, s.failed);
    if (s.n > 0)
        printf("version_p50_ms %.3f\nversion_p99_ms %.3f\n", quantile(s.lat, s.n, 0.5),
               quantile(s.lat, s.n, 0.99));
    free(s.lat);
    return s.failed ? 1 : 0;
}

/* ---- /proc of the daemon ----------------------------------------------------- */

static long count_fds(int pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    long n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static long status_kib(int pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* CPU time (ns, from schedstat) and context switches of every thread. */
static int task_totals(int pid, uint64_t *cpu_ns, uint64_t *switches, int *threads)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (d == NULL)
        return -errno;
    *cpu_ns = *switches = 0;
    *threads = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char p[300], line[256];
        snprintf(p, sizeof(p), "/proc/%d/task/%s/schedstat", pid, de->d_name);
        FILE *f = fopen(p, "r");
        if (f != NULL) {
            unsigned long long run = 0;
            if (fscanf(f, "%llu", &run) == 1)
                *cpu_ns += run;
            fclose(f);
        }
        snprintf(p, sizeof(p), "/proc/%d/task/%s/status", pid, de->d_name);
        f = fopen(p, "r");
        if (f != NULL) {
            while (fgets(line, sizeof(line), f) != NULL)
                if (strncmp(line, "voluntary_ctxt_switches:", 24) == 0 ||
                    strncmp(line, "nonvoluntary_ctxt_switches:", 27) == 0)
                    *switches += strtoull(strchr(line, ':') + 1, NULL, 10);
            fclose(f);
        }
        (*threads)++;
    }
    closedir(d);
    return 0;
}

static int cmd_rest(const opts_t *o)
{
    if (o->pid <= 0) {
        fprintf(stderr, "pp-scale: -pid is required\n");
        return 2;
    }
    long ms = o->ms > 0 ? o->ms : 10000;
    uint64_t c0, s0, c1, s1;
    int t0, t1;
    if (task_totals(o->pid, &c0, &s0, &t0) < 0)
        return 1;
    double w0 = now_ms();
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    if (task_totals(o->pid, &c1, &s1, &t1) < 0)
        return 1;
    double wall = now_ms() - w0;
    printf("rest_ms %.0f\nrest_cpu_pct %.4f\nrest_wakeups_per_s %.2f\nthreads %d\n", wall,
           (double)(c1 - c0) / 1e6 / wall * 100.0, (double)(s1 - s0) / (wall / 1000.0), t1);
    printf("rss_kib %ld\nfds %ld\n", status_kib(o->pid, "VmRSS"), count_fds(o->pid));
    return 0;
}

/* ---- agent calls over one connection per pod --------------------------------- */

typedef struct agent_s agent_t;

typedef struct conn_s {
    agent_t *a;
    const char *sock;
    pp_ttrpc_client_t *c;
    int up;
} conn_t;

struct agent_s {
    uv_loop_t *loop;
    conn_t *conns;
    size_t n, connected, checked, conn_failed;
    size_t rr;      /* next pod, round robin */
    int phase;      /* 0 connecting, 1 first call each, 2 load, 3 done */
    double t_start; /* of the measured window */
    double t_end;
    double warm_end;
    double *lat;
    size_t nlat, cap;
    uint64_t calls, failures, bad;
    int streams_left;
    uv_timer_t timer;
};

/* grpc.Health/Check's request: an empty CheckRequest, which encodes to no
 * bytes. */
static const uint8_t check_req[1];
#define check_len ((size_t)0)

static int check_serving(const pp_ttrpc_result_t *res)
{
    if (res->code != 0)
        return 0;
    Grpc__HealthCheckResponse *resp =
        grpc__health_check_response__unpack(NULL, res->payload_len, res->payload);
    if (resp == NULL)
        return 0;
    int ok = resp->status == GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    grpc__health_check_response__free_unpacked(resp, NULL);
    return ok;
}

typedef struct stream_s {
    agent_t *a;
    double t0;
} stream_t;

static void stream_issue(stream_t *s);

static void stream_answered(pp_ttrpc_result_t *res, void *data)
{
    stream_t *s = data;
    agent_t *a = s->a;
    double t = now_ms();
    a->calls++;
    if (res->code != 0) {
        if (a->failures++ < 5)
            fprintf(stderr, "pp-scale: agent call: %s: %.*s\n", pp_grpc_code_name(res->code),
                    (int)res->message.n, res->message.p != NULL ? res->message.p : "");
    } else if (!check_serving(res)) {
        a->bad++;
    } else if (s->t0 >= a->warm_end && t <= a->t_end) {
        if (a->nlat == a->cap) {
            a->cap = a->cap ? a->cap * 2 : 65536;
            double *nl = realloc(a->lat, a->cap * sizeof(double));
            if (nl == NULL)
                abort();
            a->lat = nl;
        }
        a->lat[a->nlat++] = t - s->t0;
    }
    if (t >= a->t_end) {
        free(s);
        if (--a->streams_left == 0)
            uv_stop(a->loop);
        return;
    }
    stream_issue(s);
}

static void stream_issue(stream_t *s)
{
    agent_t *a = s->a;
    for (size_t tries = 0; tries < a->n; tries++) {
        conn_t *c = &a->conns[a->rr++ % a->n];
        if (!c->up)
            continue;
        s->t0 = now_ms();
        pp_ttrpc_call_opts_t co = {.service = "grpc.Health",
                                   .method = "Check",
                                   .payload = check_req,
                                   .payload_len = check_len,
                                   .timeout_nano = AGENT_TIMEOUT_NS};
        if (pp_ttrpc_client_call(c->c, &co, stream_answered, s) == 0)
            return;
        c->up = 0;
    }
    fprintf(stderr, "pp-scale: no pod connection is left\n");
    a->failures++;
    free(s);
    if (--a->streams_left == 0)
        uv_stop(a->loop);
}

static void first_answered(pp_ttrpc_result_t *res, void *data)
{
    conn_t *c = data;
    agent_t *a = c->a;
    if (!check_serving(res)) {
        fprintf(stderr, "pp-scale: `%s`: first agent call: %s: %.*s\n", c->sock,
                pp_grpc_code_name(res->code), (int)res->message.n,
                res->message.p != NULL ? res->message.p : "");
        c->up = 0;
        a->conn_failed++;
    }
    if (++a->checked == a->n)
        uv_stop(a->loop);
}

static void agent_connected(pp_ttrpc_client_t *cl, int status, void *data)
{
    (void)cl;
    conn_t *c = data;
    agent_t *a = c->a;
    if (status == 0) {
        pp_ttrpc_call_opts_t co = {.service = "grpc.Health",
                                   .method = "Check",
                                   .payload = check_req,
                                   .payload_len = check_len,
                                   .timeout_nano = AGENT_TIMEOUT_NS};
        status = pp_ttrpc_client_call(c->c, &co, first_answered, c);
        if (status == 0) {
            c->up = 1;
            return;
        }
    }
    fprintf(stderr, "pp-scale: connect `%s`: %s\n", c->sock, uv_strerror(status));
    a->conn_failed++;
    if (++a->checked == a->n)
        uv_stop(a->loop);
}

/* The daemon's CPU time at the start and the end of the measured window. */
typedef struct cpu_mark_s {
    int pid;
    uint64_t cpu_ns[2];
    int marks;
} cpu_mark_t;

static void cpu_mark_cb(uv_timer_t *t)
{
    cpu_mark_t *m = t->data;
    uint64_t sw;
    int threads;
    if (m->marks < 2 && task_totals(m->pid, &m->cpu_ns[m->marks], &sw, &threads) == 0)
        m->marks++;
}

static int cmd_load(const opts_t *o)
{
    if (o->list == NULL) {
        fprintf(stderr, "pp-scale: -list is required\n");
        return 2;
    }
    raise_nofile();
    char **socks;
    size_t n;
    if (read_lines(o->list, &socks, &n) < 0 || n == 0)
        return 2;
    uv_loop_t loop;
    uv_loop_init(&loop);
    agent_t a = {.loop = &loop, .n = n};
    a.conns = calloc(n, sizeof(conn_t));
    /* One connection per pod, each with one call, as each pod's shim. */
    for (size_t i = 0; i < n; i++) {
        conn_t *c = &a.conns[i];
        *c = (conn_t){.a = &a, .sock = socks[i]};
        int r = pp_ttrpc_client_new(&loop, &c->c);
        if (r == 0)
            r = pp_ttrpc_client_connect_unix(c->c, socks[i], agent_connected, c);
        if (r < 0) {
            fprintf(stderr, "pp-scale: connect `%s`: %s\n", socks[i], uv_strerror(r));
            a.conn_failed++;
            a.checked++;
        }
    }
    if (a.checked < n)
        uv_run(&loop, UV_RUN_DEFAULT);
    printf("pods %zu\npods_failed %zu\n", n, a.conn_failed);
    fflush(stdout);
    if (o->pid > 0) {
        /* What the daemon holds with a shim connection to every pod. */
        struct timespec ts = {.tv_sec = 1};
        nanosleep(&ts, NULL);
        printf("held_fds %ld\nheld_rss_kib %ld\n", count_fds(o->pid), status_kib(o->pid, "VmRSS"));
    }
    int conc = o->conc > 0 ? o->conc : 64;
    long warm = o->warmup_ms >= 0 ? o->warmup_ms : 1000;
    long dur = o->duration_ms > 0 ? o->duration_ms : 5000;
    a.t_start = now_ms();
    a.warm_end = a.t_start + (double)warm;
    a.t_end = a.warm_end + (double)dur;
    a.streams_left = conc;
    cpu_mark_t mark = {.pid = o->pid};
    uv_timer_t mark_timer;
    uv_timer_init(&loop, &mark_timer);
    mark_timer.data = &mark;
    uv_update_time(&loop);
    if (o->pid > 0)
        uv_timer_start(&mark_timer, cpu_mark_cb, (uint64_t)warm, (uint64_t)dur);
    for (int i = 0; i < conc; i++) {
        stream_t *s = calloc(1, sizeof(*s));
        s->a = &a;
        stream_issue(s);
    }
    if (a.streams_left > 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    double measured = (a.t_end - a.warm_end) / 1000.0;
    printf("streams %d\nagent_calls %zu\nagent_calls_per_s %.0f\nagent_failures %" PRIu64
           "\nagent_not_serving %" PRIu64 "\n",
           conc, a.nlat, (double)a.nlat / measured, a.failures, a.bad);
    if (a.nlat > 0)
        printf("agent_p50_ms %.3f\nagent_p99_ms %.3f\n", quantile(a.lat, a.nlat, 0.5),
               quantile(a.lat, a.nlat, 0.99));
    uv_timer_stop(&mark_timer);
    uv_close((uv_handle_t *)&mark_timer, NULL);
    /* The daemon's CPU per call over the measured window (its threads'
     * run time, from schedstat). */
    if (mark.marks == 2 && a.nlat > 0)
        printf("daemon_cpu_us_per_call %.1f\n",
               (double)(mark.cpu_ns[1] - mark.cpu_ns[0]) / 1e3 / (double)a.nlat);
    for (size_t i = 0; i < n; i++)
        if (a.conns[i].c != NULL)
            pp_ttrpc_client_close(a.conns[i].c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(a.lat);
    free(a.conns);
    free_lines(socks, n);
    return a.conn_failed || a.failures || a.bad ? 1 : 0;
}

/* ---- after a restart: every agent socket serving again ------------------------ */

typedef struct wait_s {
    uv_loop_t *loop;
    char **socks;
    size_t n, next, in_flight, ok;
    unsigned char *state; /* 0 waiting, 1 in flight, 2 serving */
    uv_timer_t retry;
    double deadline;
    int expired;
    int hv_ok;
    const char *hv;
} wait_t;

static void wait_fill(wait_t *w);

typedef struct probe_s {
    wait_t *w;
    size_t i;
} probe_t;

static void probe_answered(int code, const char *msg, const uint8_t *payload, size_t len, double ms,
                           void *data)
{
    (void)msg;
    (void)ms;
    probe_t *p = data;
    wait_t *w = p->w;
    size_t i = p->i;
    free(p);
    w->in_flight--;
    int ok = 0;
    if (code == 0) {
        Grpc__HealthCheckResponse *resp = grpc__health_check_response__unpack(NULL, len, payload);
        ok = resp != NULL && resp->status == GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
        if (resp != NULL)
            grpc__health_check_response__free_unpacked(resp, NULL);
    }
    w->state[i] = ok ? 2 : 0;
    w->ok += ok;
    if (w->ok == w->n) {
        uv_timer_stop(&w->retry);
        uv_stop(w->loop);
        return;
    }
    wait_fill(w);
}

static void wait_fill(wait_t *w)
{
    if (now_ms() > w->deadline) {
        w->expired = 1;
        uv_stop(w->loop);
        return;
    }
    /* One pass over the pods not yet serving, 64 probes at a time; the
     * timer starts the next pass. */
    while (w->in_flight < 64 && w->next < w->n) {
        size_t i = w->next++;
        if (w->state[i] != 0)
            continue;
        w->state[i] = 1;
        uint8_t *buf = malloc(1);
        probe_t *p = malloc(sizeof(*p));
        if (buf == NULL || p == NULL)
            abort();
        *p = (probe_t){.w = w, .i = i};
        w->in_flight++;
        if (call_once(w->loop, w->socks[i], "grpc.Health", "Check", buf, check_len,
                      AGENT_TIMEOUT_NS, probe_answered, p) < 0) {
            free(p);
            w->in_flight--;
            w->state[i] = 0;
        }
    }
}

static void wait_tick(uv_timer_t *t)
{
    wait_t *w = t->data;
    if (w->next >= w->n && w->in_flight == 0)
        w->next = 0;
    wait_fill(w);
}

static void hv_answered(int code, const char *msg, const uint8_t *payload, size_t len, double ms,
                        void *data)
{
    (void)msg;
    (void)payload;
    (void)len;
    (void)ms;
    wait_t *w = data;
    w->hv_ok = code == 0;
    uv_stop(w->loop);
}

static int cmd_serving(const opts_t *o)
{
    if (o->list == NULL && o->hv == NULL) {
        fprintf(stderr, "pp-scale: -list or -hv is required\n");
        return 2;
    }
    raise_nofile();
    int64_t since = o->since_ns > 0 ? o->since_ns : wall_ns();
    double t0 = now_ms() - (double)(wall_ns() - since) / 1e6;
    uv_loop_t loop;
    uv_loop_init(&loop);
    wait_t w = {.loop = &loop};
    w.deadline = now_ms() + (double)(o->timeout_ms > 0 ? o->timeout_ms : 120000);
    int rc = 0;
    if (o->hv != NULL) {
        /* The hypervisor socket first: Version answers once recovery is done. */
        while (!w.hv_ok && now_ms() < w.deadline) {
            Hypervisor__VersionRequest vr = HYPERVISOR__VERSION_REQUEST__INIT;
            vr.version = "0.0.1";
            size_t len = hypervisor__version_request__get_packed_size(&vr);
            uint8_t *buf = malloc(len + 1);
            hypervisor__version_request__pack(&vr, buf);
            if (call_once(&loop, o->hv, HV, "Version", buf, len, CALL_TIMEOUT_NS, hv_answered,
                          &w) == 0)
                uv_run(&loop, UV_RUN_DEFAULT);
            if (!w.hv_ok) {
                struct timespec ts = {.tv_nsec = 5000000};
                nanosleep(&ts, NULL);
            }
        }
        if (!w.hv_ok) {
            fprintf(stderr, "pp-scale: the hypervisor socket did not answer Version\n");
            rc = 1;
        } else {
            printf("hv_serving_ms %.1f\n", now_ms() - t0);
        }
    }
    if (rc == 0 && o->list != NULL) {
        if (read_lines(o->list, &w.socks, &w.n) < 0)
            return 2;
        w.state = calloc(w.n + 1, 1);
        uv_timer_init(&loop, &w.retry);
        w.retry.data = &w;
        if (w.n > 0) {
            uv_timer_start(&w.retry, wait_tick, 10, 10);
            wait_fill(&w);
            uv_run(&loop, UV_RUN_DEFAULT);
        }
        uv_timer_stop(&w.retry);
        uv_close((uv_handle_t *)&w.retry, NULL);
        if (w.ok < w.n) {
            fprintf(stderr, "pp-scale: %zu of %zu agent sockets serve after %ld ms\n", w.ok, w.n,
                    o->timeout_ms > 0 ? o->timeout_ms : 120000);
            rc = 1;
        } else {
            printf("pods_serving_ms %.1f\n", now_ms() - t0);
        }
        printf("pods_serving %zu\n", w.ok);
    }
    /* Let the probes in flight finish or close. */
    while (uv_run(&loop, UV_RUN_NOWAIT) != 0 && w.in_flight > 0)
        ;
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(w.state);
    if (w.socks != NULL)
        free_lines(w.socks, w.n);
    return rc;
}

/* ---- tunnel setup + teardown, in this namespace ------------------------------ */

static int cmd_tunnel(const opts_t *o)
{
    if (o->netns == NULL || o->remote == NULL) {
        fprintf(stderr, "pp-scale: -netns and -remote are required\n");
        return 2;
    }
    struct in_addr remote;
    if (inet_pton(AF_INET, o->remote, &remote) != 1) {
        fprintf(stderr, "pp-scale: `%s` is not an IPv4 address\n", o->remote);
        return 2;
    }
    pp_node_net_t n;
    pp_node_net_init(&n);
    pp_podnet_t cfg;
    pp_error_t err = {0};
    uint32_t index = o->index >= 0 ? (uint32_t)o->index : 900000;
    if (pp_node_inspect(&n, o->netns, index, &cfg, &err) < 0) {
        fprintf(stderr, "pp-scale: inspect: %s\n", err.message);
        pp_node_net_fini(&n);
        return 1;
    }
    int count = o->count > 0 ? o->count : 200;
    double *v = calloc((size_t)count, sizeof(double));
    int rc = 0;
    /* One untimed round: the first setup probes the tc classifier and opens
     * the nftables socket, which a running daemon has long done. */
    for (int i = -1; i < count && rc == 0; i++) {
        double t0 = now_ms();
        rc = pp_node_tunnel_setup(&n, o->netns, &cfg, remote, &err);
        if (rc == 0)
            rc = pp_node_tunnel_teardown(&n, o->netns, &cfg, &err);
        double t1 = now_ms();
        if (i >= 0)
            v[i] = t1 - t0;
        /* The device's deletion runs on: wait for it outside the timing. */
        pp_node_net_drain(&n, 10000);
    }
    if (rc < 0)
        fprintf(stderr, "pp-scale: tunnel: %s\n", err.message);
    else
        printf("tunnel_p50_ms %.3f\ntunnel_p99_ms %.3f\n", quantile(v, (size_t)count, 0.5),
               quantile(v, (size_t)count, 0.99));
    free(v);
    pp_node_net_fini(&n);
    return rc < 0 ? 1 : 0;
}

/* ---- the local provider's creates in progress, seen from outside ---------------- */

/* A VM dir is a create in progress from its making until its tag.json says
 * ready (providers/local/local.h). Ready ones are remembered by inode, so
 * each look reads only the tags of the others. */
typedef struct seen_s {
    ino_t *ino;
    size_t n, cap;
} seen_t;

static int seen_has(const seen_t *s, ino_t ino)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->ino[i] == ino)
            return 1;
    return 0;
}

static int tag_ready(int dirfd, const char *name)
{
    char path[PATH_MAX], buf[4096];
    snprintf(path, sizeof(path), "%s/tag.json", name);
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t k = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (k <= 0)
        return 0;
    buf[k] = '\0';
    const char *p = strstr(buf, "\"ready\"");
    if (p == NULL)
        return 0;
    p += 7;
    while (*p == ' ' || *p == ':')
        p++;
    return *p == 't';
}

static int cmd_watch(const opts_t *o)
{
    if (o->dir == NULL) {
        fprintf(stderr, "pp-scale: -dir is required\n");
        return 2;
    }
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    seen_t ready = {0};
    size_t max = 0, looks = 0;
    for (;;) {
        char c;
        ssize_t k = read(0, &c, 1);
        if (k == 0 || (k < 0 && errno != EAGAIN))
            break;
        int dfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            DIR *d = fdopendir(dfd);
            size_t busy = 0;
            struct dirent *de;
            while (d != NULL && (de = readdir(d)) != NULL) {
                if (de->d_name[0] == '.' || seen_has(&ready, de->d_ino))
                    continue;
                if (tag_ready(dfd, de->d_name)) {
                    if (ready.n == ready.cap) {
                        ready.cap = ready.cap ? ready.cap * 2 : 1024;
                        ready.ino = realloc(ready.ino, ready.cap * sizeof(ino_t));
                    }
                    ready.ino[ready.n++] = de->d_ino;
                } else {
                    busy++;
                }
            }
            if (d != NULL)
                closedir(d);
            else
                close(dfd);
            if (busy > max)
                max = busy;
            looks++;
        }
        struct timespec ts = {.tv_nsec = 2000000};
        nanosleep(&ts, NULL);
    }
    printf("creates_in_progress_max %zu\nlooks %zu\n", max, looks);
    free(ready.ino);
    return 0;
}

/* ---- main ------------------------------------------------------------------ */

static int parse_opts(int argc, char **argv, opts_t *o)
{
    *o = (opts_t){.conc = -1, .warmup_ms = -1, .index = -1};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            fprintf(stderr, "pp-scale: `%s` needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "-socket") == 0)
            o->socket = v;
        else if (strcmp(a, "-list") == 0)
            o->list = v;
        else if (strcmp(a, "-hv") == 0)
            o->hv = v;
        else if (strcmp(a, "-netns") == 0)
            o->netns = v;
        else if (strcmp(a, "-remote") == 0)
            o->remote = v;
        else if (strcmp(a, "-dir") == 0)
            o->dir = v;
        else if (strcmp(a, "-conc") == 0)
            o->conc = (int)strtol(v, NULL, 10);
        else if (strcmp(a, "-count") == 0)
            o->count = (int)strtol(v, NULL, 10);
        else if (strcmp(a, "-pid") == 0)
            o->pid = (int)strtol(v, NULL, 10);
        else if (strcmp(a, "-index") == 0)
            o->index = (int)strtol(v, NULL, 10);
        else if (strcmp(a, "-warmup") == 0)
            o->warmup_ms = strtol(v, NULL, 10);
        else if (strcmp(a, "-duration") == 0)
            o->duration_ms = strtol(v, NULL, 10);
        else if (strcmp(a, "-timeout") == 0)
            o->timeout_ms = strtol(v, NULL, 10);
        else if (strcmp(a, "-ms") == 0)
            o->ms = strtol(v, NULL, 10);
        else if (strcmp(a, "-since") == 0)
            o->since_ns = strtoll(v, NULL, 10);
        else {
            fprintf(stderr, "pp-scale: unknown option `%s`\n", a);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: pp-scale up|create|start|stop|cycle|version|load|serving|rest|tunnel|"
                "watch [options]\n");
        return 2;
    }
    opts_t o;
    if (parse_opts(argc - 2, argv + 2, &o) < 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *cmd = argv[1];
    if (strcmp(cmd, "up") == 0)
        return cmd_lifecycle(&o, STEP_CREATE, STEP_START);
    if (strcmp(cmd, "create") == 0)
        return cmd_lifecycle(&o, STEP_CREATE, STEP_CREATE);
    if (strcmp(cmd, "start") == 0)
        return cmd_lifecycle(&o, STEP_START, STEP_START);
    if (strcmp(cmd, "stop") == 0)
        return cmd_lifecycle(&o, STEP_STOP, STEP_STOP);
    if (strcmp(cmd, "cycle") == 0) {
        o.conc = 1;
        return cmd_lifecycle(&o, STEP_CREATE, STEP_STOP);
    }
    if (strcmp(cmd, "version") == 0)
        return cmd_version(&o);
    if (strcmp(cmd, "load") == 0)
        return cmd_load(&o);
    if (strcmp(cmd, "serving") == 0)
        return cmd_serving(&o);
    if (strcmp(cmd, "rest") == 0)
        return cmd_rest(&o);
    if (strcmp(cmd, "tunnel") == 0)
        return cmd_tunnel(&o);
    if (strcmp(cmd, "watch") == 0)
        return cmd_watch(&o);
    fprintf(stderr, "pp-scale: unknown command `%s`\n", cmd);
    return 2;
}
