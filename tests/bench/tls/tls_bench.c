/* TLS benchmark, in one run:
 *
 *   pods:  per pod, what the adaptor does before it can talk to a new pod
 *          VM: issue the VM's server certificate, build the server context
 *          from it, and a full mutual-TLS handshake over a fresh loopback
 *          TCP connection (both ends on one loop, so one core's worth of
 *          work). p50/p99 of each part and of the whole.
 *   echo:  ttrpc Echo over loopback TCP, plaintext and TLS, server on its
 *          own thread and loop: MB/s with 1 MiB payloads (4 in flight) and
 *          calls/s with 64-byte payloads (64 in flight), and TLS/plaintext.
 *
 * Usage: tls_bench [pods N] [warmup_ms] [duration_ms] */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls/ca.h"
#include "tls/tls.h"
#include "ttrpc/ttrpc.h"

#define SERVICE "pp.bench.Echo"

static void die(const char *what, const char *why)
{
    fprintf(stderr, "tls bench: %s: %s\n", what, why);
    exit(1);
}

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[i] / 1000.0; /* microseconds */
}

typedef struct creds_s {
    pp_ca_t *ca;
    const char *client_cert, *client_key;
    char dir[64];
} creds_t;

static void creds_init(creds_t *c)
{
    snprintf(c->dir, sizeof(c->dir), "/tmp/pp-bench-tls.XXXXXX");
    if (mkdtemp(c->dir) == NULL)
        die("mkdtemp", strerror(errno));
    pp_error_t err = {0};
    pp_ca_opts_t o = {.dir = c->dir};
    if (pp_ca_load_or_create(&o, &c->ca, &err) < 0 ||
        pp_ca_client_identity(c->ca, NULL, &c->client_cert, &c->client_key, &err) < 0)
        die("CA", err.message);
}

static pp_tls_ctx_t *client_ctx(creds_t *c)
{
    pp_tls_config_t cfg = {
        .cert_pem = c->client_cert, .key_pem = c->client_key, .ca_pem = pp_ca_cert_pem(c->ca)};
    pp_tls_ctx_t *ctx;
    pp_error_t err = {0};
    if (pp_tls_ctx_new(PP_TLS_CLIENT, &cfg, &ctx, &err) < 0)
        die("client context", err.message);
    return ctx;
}

static pp_tls_ctx_t *server_ctx(creds_t *c, const char *cert, const char *key)
{
    pp_tls_config_t cfg = {.cert_pem = cert, .key_pem = key, .ca_pem = pp_ca_cert_pem(c->ca)};
    pp_tls_ctx_t *ctx;
    pp_error_t err = {0};
    if (pp_tls_ctx_new(PP_TLS_SERVER, &cfg, &ctx, &err) < 0)
        die("server context", err.message);
    return ctx;
}

/* ---- pods: issue + context + handshake --------------------------------- */

typedef struct pods_s {
    uv_loop_t loop;
    uv_tcp_t listener;
    pp_tls_ctx_t *sctx; /* the current pod's */
    int server_done, client_done;
    int server_status, client_status;
    char client_msg[512];
    uv_stream_t *client_stream, *server_stream;
    pp_stream_filter_t *client_filter, *server_filter;
} pods_t;

static void srv_hs_cb(pp_tls_handshake_t *hs, int status, pp_stream_filter_t *f, const char *msg,
                      void *data)
{
    pods_t *b = data;
    (void)hs;
    (void)msg;
    b->server_status = status;
    b->server_filter = f;
    b->server_done = 1;
}

static void on_conn(uv_stream_t *l, int status)
{
    pods_t *b = l->data;
    if (status < 0)
        die("accept", uv_strerror(status));
    uv_tcp_t *t = malloc(sizeof(*t));
    uv_tcp_init(&b->loop, t);
    if (uv_accept(l, (uv_stream_t *)t) < 0)
        die("accept", "failed");
    uv_tcp_nodelay(t, 1);
    b->server_stream = (uv_stream_t *)t;
    int r = pp_tls_handshake(b->sctx, (uv_stream_t *)t, NULL, srv_hs_cb, b, NULL);
    if (r < 0)
        die("server handshake", uv_strerror(r));
}

static void cli_dial_cb(pp_tls_dial_t *d, int status, uv_stream_t *s, pp_stream_filter_t *f,
                        const char *msg, void *data)
{
    pods_t *b = data;
    (void)d;
    b->client_status = status;
    b->client_stream = s;
    b->client_filter = f;
    if (msg != NULL)
        snprintf(b->client_msg, sizeof(b->client_msg), "%s", msg);
    b->client_done = 1;
}

static void run_pods(creds_t *c, int n)
{
    pods_t b;
    memset(&b, 0, sizeof(b));
    uv_loop_init(&b.loop);
    uv_tcp_init(&b.loop, &b.listener);
    b.listener.data = &b;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    if (uv_tcp_bind(&b.listener, (struct sockaddr *)&sa, 0) < 0 ||
        uv_listen((uv_stream_t *)&b.listener, 128, on_conn) < 0)
        die("listen", "failed");
    int len = sizeof(sa);
    uv_tcp_getsockname(&b.listener, (struct sockaddr *)&sa, &len);
    pp_tls_ctx_t *cctx = client_ctx(c);

    uint64_t *issue = calloc((size_t)n, sizeof(uint64_t));
    uint64_t *ctxt = calloc((size_t)n, sizeof(uint64_t));
    uint64_t *hs = calloc((size_t)n, sizeof(uint64_t));
    uint64_t *total = calloc((size_t)n, sizeof(uint64_t));
    for (int i = -5; i < n; i++) { /* 5 warm-up rounds */
        char name[64];
        snprintf(name, sizeof(name), "podvm-bench-%08x", (unsigned)(i + 5));
        uint64_t t0 = now_ns();
        char *cert, *key;
        pp_error_t err = {0};
        if (pp_ca_issue_server(c->ca, name, NULL, 0, &cert, &key, &err) < 0)
            die("issue", err.message);
        uint64_t t1 = now_ns();
        b.sctx = server_ctx(c, cert, key);
        uint64_t t2 = now_ns();
        b.server_done = b.client_done = 0;
        if (pp_tls_dial(&b.loop, cctx, (struct sockaddr *)&sa, name, cli_dial_cb, &b, NULL) < 0)
            die("dial", "failed");
        while (!b.server_done || !b.client_done)
            uv_run(&b.loop, UV_RUN_ONCE);
        uint64_t t3 = now_ns();
        if (b.client_status != 0 || b.server_status != 0)
            die("handshake", b.client_msg);
        if (i >= 0) {
            issue[i] = t1 - t0;
            ctxt[i] = t2 - t1;
            hs[i] = t3 - t2;
            total[i] = t3 - t0;
        }
        b.client_filter->destroy(b.client_filter);
        b.server_filter->destroy(b.server_filter);
        uv_close((uv_handle_t *)b.client_stream, (uv_close_cb)free);
        uv_close((uv_handle_t *)b.server_stream, (uv_close_cb)free);
        pp_tls_ctx_free(b.sctx);
        free(cert);
        pp_ca_secret_free(key);
    }
    printf("per pod: issue an ECDSA P-256 server certificate, build its server context, then a\n"
           "mutual-TLS handshake on a new loopback TCP connection (both ends on one loop);\n"
           "%d pods, microseconds\n",
           n);
    printf("  %-34s %10s %10s\n", "", "p50", "p99");
    printf("  %-34s %10.0f %10.0f\n", "issue certificate + key", pct(issue, (size_t)n, 0.5),
           pct(issue, (size_t)n, 0.99));
    printf("  %-34s %10.0f %10.0f\n", "server context from PEM", pct(ctxt, (size_t)n, 0.5),
           pct(ctxt, (size_t)n, 0.99));
    printf("  %-34s %10.0f %10.0f\n", "connect + TLS 1.3 handshake", pct(hs, (size_t)n, 0.5),
           pct(hs, (size_t)n, 0.99));
    printf("  %-34s %10.0f %10.0f\n", "total per pod", pct(total, (size_t)n, 0.5),
           pct(total, (size_t)n, 0.99));
    printf("RESULT pods=%d issue_p50_us=%.0f hs_p50_us=%.0f total_p50_us=%.0f total_p99_us=%.0f\n",
           n, pct(issue, (size_t)n, 0.5), pct(hs, (size_t)n, 0.5), pct(total, (size_t)n, 0.5),
           pct(total, (size_t)n, 0.99));
    free(issue);
    free(ctxt);
    free(hs);
    free(total);
    pp_tls_ctx_free(cctx);
    uv_close((uv_handle_t *)&b.listener, NULL);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
}

/* ---- echo throughput --------------------------------------------------- */

typedef struct server_thread_s {
    uv_loop_t loop;
    uv_async_t stop;
    pp_ttrpc_server_t *plain, *tls;
    pp_tls_acceptor_t *acc;
    pp_tls_ctx_t *ctx;
    int plain_port, tls_port;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ready;
} server_thread_t;

static void h_echo(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    const pp_ttrpc_request_t *r = pp_ttrpc_call_request(call);
    pp_ttrpc_call_reply(call, r->payload, r->payload_len);
}

static int listen_any(pp_ttrpc_server_t *srv)
{
    /* ttrpc has no way to report the port it got, so probe for one. */
    for (int i = 0; i < 50; i++) {
        uv_loop_t l;
        uv_loop_init(&l);
        uv_tcp_t t;
        uv_tcp_init(&l, &t);
        struct sockaddr_in sa;
        uv_ip4_addr("127.0.0.1", 0, &sa);
        uv_tcp_bind(&t, (struct sockaddr *)&sa, 0);
        int len = sizeof(sa);
        uv_tcp_getsockname(&t, (struct sockaddr *)&sa, &len);
        uv_close((uv_handle_t *)&t, NULL);
        uv_run(&l, UV_RUN_DEFAULT);
        uv_loop_close(&l);
        int port = ntohs(sa.sin_port);
        char hp[32];
        snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
        pp_error_t err = {0};
        if (pp_ttrpc_server_listen_tcp(srv, hp, &err) == 0)
            return port;
    }
    die("listen", "no free port");
    return -1;
}

static void stop_cb(uv_async_t *a)
{
    server_thread_t *st = a->data;
    pp_tls_acceptor_free(st->acc);
    pp_ttrpc_server_close(st->plain, 0, NULL, NULL);
    pp_ttrpc_server_close(st->tls, 0, NULL, NULL);
    uv_close((uv_handle_t *)a, NULL);
}

static void *server_main(void *arg)
{
    server_thread_t *st = arg;
    uv_loop_init(&st->loop);
    uv_async_init(&st->loop, &st->stop, stop_cb);
    st->stop.data = st;
    pp_error_t err = {0};
    if (pp_ttrpc_server_new(&st->loop, &st->plain) < 0 ||
        pp_ttrpc_server_new(&st->loop, &st->tls) < 0 ||
        pp_ttrpc_server_register(st->plain, SERVICE, "Echo", h_echo, NULL) < 0 ||
        pp_ttrpc_server_register(st->tls, SERVICE, "Echo", h_echo, NULL) < 0 ||
        pp_tls_acceptor_new(st->tls, st->ctx, &st->acc, &err) < 0)
        die("server", err.message);
    st->plain_port = listen_any(st->plain);
    st->tls_port = listen_any(st->tls);
    pthread_mutex_lock(&st->mu);
    st->ready = 1;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    uv_run(&st->loop, UV_RUN_DEFAULT);
    uv_loop_close(&st->loop);
    return NULL;
}

typedef struct load_s {
    uv_loop_t *loop;
    pp_ttrpc_client_t *cli;
    uint8_t *payload;
    size_t size;
    int conc;
    uint64_t start_measure, end; /* uv_hrtime */
    uint64_t calls, bytes;
    int in_flight;
    int failed;
    int connected;
} load_t;

static void issue_call(load_t *l);

static void load_cb(pp_ttrpc_result_t *res, void *data)
{
    load_t *l = data;
    l->in_flight--;
    if (res->code != 0 || res->payload_len != l->size) {
        fprintf(stderr, "tls bench: call failed: %d %.*s\n", res->code, (int)res->message.n,
                res->message.p);
        l->failed = 1;
        return;
    }
    uint64_t t = now_ns();
    if (t >= l->start_measure && t < l->end) {
        l->calls++;
        l->bytes += l->size;
    }
    if (t < l->end)
        issue_call(l);
}

static void issue_call(load_t *l)
{
    pp_ttrpc_call_opts_t o = {
        .service = SERVICE, .method = "Echo", .payload = l->payload, .payload_len = l->size};
    if (pp_ttrpc_client_call(l->cli, &o, load_cb, l) < 0) {
        l->failed = 1;
        return;
    }
    l->in_flight++;
}

static void plain_connected(pp_ttrpc_client_t *c, int status, void *data)
{
    (void)c;
    ((load_t *)data)->connected = status == 0 ? 1 : status;
}

static void tls_connected(pp_tls_dial_t *d, int status, uv_stream_t *s, pp_stream_filter_t *f,
                          const char *msg, void *data)
{
    load_t *l = data;
    (void)d;
    if (status < 0)
        die("TLS dial", msg);
    if (pp_ttrpc_client_open_filtered(l->cli, s, f) < 0)
        die("open", "failed");
    l->connected = 1;
}

static void closed_cb(pp_ttrpc_client_t *c, void *data)
{
    (void)c;
    *(int *)data = 1;
}

/* One measured row: returns calls/s and sets *mbs. */
static double measure(uv_loop_t *loop, pp_tls_ctx_t *cctx, int port, size_t size, int conc,
                      uint64_t warmup_ms, uint64_t duration_ms, double *mbs)
{
    load_t l;
    memset(&l, 0, sizeof(l));
    l.loop = loop;
    l.size = size;
    l.conc = conc;
    l.payload = malloc(size);
    for (size_t i = 0; i < size; i++)
        l.payload[i] = (uint8_t)(i * 7);
    pp_ttrpc_client_new(loop, &l.cli);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    if (cctx == NULL)
        pp_ttrpc_client_connect_tcp(l.cli, (struct sockaddr *)&sa, plain_connected, &l);
    else if (pp_tls_dial(loop, cctx, (struct sockaddr *)&sa, "podvm-bench-echo", tls_connected, &l,
                         NULL) < 0)
        die("dial", "failed");
    while (!l.connected)
        uv_run(loop, UV_RUN_ONCE);
    if (l.connected != 1)
        die("connect", uv_strerror(l.connected));
    uint64_t t0 = now_ns();
    l.start_measure = t0 + warmup_ms * 1000000;
    l.end = l.start_measure + duration_ms * 1000000;
    for (int i = 0; i < conc; i++)
        issue_call(&l);
    while (l.in_flight > 0 && !l.failed)
        uv_run(loop, UV_RUN_ONCE);
    if (l.failed)
        die("echo", "a call failed");
    int closed = 0;
    pp_ttrpc_client_close(l.cli, closed_cb, &closed);
    while (!closed)
        uv_run(loop, UV_RUN_ONCE);
    free(l.payload);
    double secs = (double)duration_ms / 1000.0;
    *mbs = (double)l.bytes / secs / 1e6;
    return (double)l.calls / secs;
}

#define ROUNDS 3

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v)
{
    qsort(v, ROUNDS, sizeof(*v), cmp_double);
    return v[ROUNDS / 2];
}

static void run_echo(creds_t *c, uint64_t warmup_ms, uint64_t duration_ms)
{
    char *cert, *key;
    pp_error_t err = {0};
    if (pp_ca_issue_server(c->ca, "podvm-bench-echo", NULL, 0, &cert, &key, &err) < 0)
        die("issue", err.message);
    server_thread_t st;
    memset(&st, 0, sizeof(st));
    st.ctx = server_ctx(c, cert, key);
    pthread_mutex_init(&st.mu, NULL);
    pthread_cond_init(&st.cv, NULL);
    pthread_t th;
    pthread_create(&th, NULL, server_main, &st);
    pthread_mutex_lock(&st.mu);
    while (!st.ready)
        pthread_cond_wait(&st.cv, &st.mu);
    pthread_mutex_unlock(&st.mu);

    uv_loop_t loop;
    uv_loop_init(&loop);
    pp_tls_ctx_t *cctx = client_ctx(c);
    struct {
        const char *label;
        size_t size;
        int conc;
    } rows[] = {{"1 MiB payload, 4 in flight", 1 << 20, 4}, {"64 B payload, 64 in flight", 64, 64}};
    printf("\nttrpc Echo over loopback TCP, server on its own thread; per row %d rounds each of "
           "plaintext and TLS,\ntaking turns, each a %llu ms warm-up and %llu ms measured; "
           "medians shown.\nMB/s counts request payload bytes answered (each also travels "
           "back).\n",
           ROUNDS, (unsigned long long)warmup_ms, (unsigned long long)duration_ms);
    printf("  %-28s %-10s %12s %10s\n", "", "", "calls/s", "MB/s");
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        /* Plaintext and TLS take turns, and each reports its median round,
         * so that a busy machine skews both alike. */
        double cp[ROUNDS], ct[ROUNDS], mp[ROUNDS], mt[ROUNDS];
        for (int k = 0; k < ROUNDS; k++) {
            cp[k] = measure(&loop, NULL, st.plain_port, rows[i].size, rows[i].conc, warmup_ms,
                            duration_ms, &mp[k]);
            ct[k] = measure(&loop, cctx, st.tls_port, rows[i].size, rows[i].conc, warmup_ms,
                            duration_ms, &mt[k]);
        }
        double cps_plain = median(cp), cps_tls = median(ct);
        double mb_plain = median(mp), mb_tls = median(mt);
        printf("  %-28s %-10s %12.0f %10.1f\n", rows[i].label, "plaintext", cps_plain, mb_plain);
        printf("  %-28s %-10s %12.0f %10.1f\n", "", "TLS 1.3", cps_tls, mb_tls);
        printf("  %-28s %-10s %12.2f %10.2f\n", "", "TLS/plain", cps_tls / cps_plain,
               mb_tls / mb_plain);
        printf("RESULT size=%zu conc=%d plain_cps=%.0f tls_cps=%.0f plain_mbs=%.1f tls_mbs=%.1f "
               "ratio=%.3f\n",
               rows[i].size, rows[i].conc, cps_plain, cps_tls, mb_plain, mb_tls,
               cps_tls / cps_plain);
    }
    pp_tls_ctx_free(cctx);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    uv_async_send(&st.stop);
    pthread_join(th, NULL);
    pp_tls_ctx_free(st.ctx);
    free(cert);
    pp_ca_secret_free(key);
}

int main(int argc, char **argv)
{
    int pods = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 200;
    uint64_t warmup = argc > 2 ? strtoull(argv[2], NULL, 10) : 300;
    uint64_t duration = argc > 3 ? strtoull(argv[3], NULL, 10) : 1500;
    if (pods < 1)
        pods = 1;
    creds_t c;
    creds_init(&c);
    run_pods(&c, pods);
    run_echo(&c, warmup, duration);
    pp_ca_free(c.ca);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "tls bench: could not remove %s\n", c.dir);
    return 0;
}
