#include "proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health.pb-c.h"
#include "ttrpc/ttrpc.h"
#include "util/log.h"

#define BACKOFF_MIN_MS   100
#define BACKOFF_MAX_MS   2000
#define PROBE_TIMEOUT_NS (5 * 1000000000LL)

typedef struct waiter_s {
    struct waiter_s *next;
    pp_ttrpc_call_t *call;
} waiter_t;

struct caa_proxy_s {
    uv_loop_t *loop;
    char path[108];
    struct sockaddr_storage fwd;
    const caa_tls_t *tls;
    char server_name[64];
    pp_tls_dial_t *dialing; /* a TLS dial in progress */
    pp_ttrpc_server_t *srv;
    pp_ttrpc_client_t *up; /* the forwarder connection, or NULL */
    int up_state;          /* 0 none, 1 dialling, 2 connected */
    waiter_t *waiters;     /* calls waiting for the dial */
    uv_timer_t timer;      /* dial backoff during start */
    uint64_t deadline;
    unsigned backoff;
    int attempts;
    caa_proxy_ready_cb ready_cb;
    void *ready_data;
    caa_proxy_close_cb close_cb;
    void *close_data;
    int pending_closes;
    pp_series_t *m_calls, *m_failures; /* may be NULL */
    uint64_t connected_ms;
    unsigned starting : 1;
    unsigned serving : 1;
    unsigned closing : 1;
    char last_error[256];
};

static void dial(caa_proxy_t *p);

int caa_proxy_new(uv_loop_t *loop, const char *socket_path, const struct sockaddr *forwarder,
                  const caa_tls_t *tls, const char *server_name, caa_proxy_t **out)
{
    if (strlen(socket_path) >= sizeof(((caa_proxy_t *)0)->path))
        return -ENAMETOOLONG;
    caa_proxy_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->loop = loop;
    p->tls = tls;
    snprintf(p->server_name, sizeof(p->server_name), "%s", server_name ? server_name : "");
    snprintf(p->path, sizeof(p->path), "%s", socket_path);
    memcpy(&p->fwd, forwarder,
           forwarder->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                            : sizeof(struct sockaddr_in));
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    *out = p;
    return 0;
}

/* ---- forwarding -------------------------------------------------------- */

/* The proxy's own failures: the agent's answers, errors included, pass
 * through as frames and are not counted here. */
static void failed(caa_proxy_t *p)
{
    pp_series_inc(p->m_failures);
}

/* A call on its way: the shim's call, and the series its failure counts in
 * (the proxy may be gone by the time a closing link fails it). */
typedef struct fwd_s {
    pp_ttrpc_call_t *call;
    pp_series_t *failures;
} fwd_t;

static void forwarded_cb(pp_ttrpc_result_t *res, void *data)
{
    fwd_t *f = data;
    pp_ttrpc_call_t *call = f->call;
    if (res->frame != NULL) {
        uint8_t *frame = res->frame;
        res->frame = NULL;
        pp_ttrpc_call_reply_frame(call, frame, res->frame_len);
    } else {
        pp_series_inc(f->failures);
        pp_ttrpc_call_fail(call, res->code, "%.*s", (int)res->message.n, res->message.p);
    }
    free(f);
}

static void forward(caa_proxy_t *p, pp_ttrpc_call_t *call)
{
    fwd_t *f = malloc(sizeof(*f));
    if (f == NULL) {
        failed(p);
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    f->call = call;
    f->failures = p->m_failures;
    int64_t timeout = pp_ttrpc_call_request(call)->timeout_nano;
    size_t len;
    uint8_t *frame = pp_ttrpc_call_steal_frame(call, &len);
    int r = pp_ttrpc_client_call_frame(p->up, frame, len, timeout, forwarded_cb, f);
    if (r < 0) {
        free(f);
        failed(p);
        pp_ttrpc_call_fail(call, PP_GRPC_UNAVAILABLE, "forward to the pod VM: %s", uv_strerror(r));
    }
}

static void fail_waiters(caa_proxy_t *p, int code, const char *msg)
{
    waiter_t *w = p->waiters;
    p->waiters = NULL;
    while (w != NULL) {
        waiter_t *next = w->next;
        failed(p);
        pp_ttrpc_call_fail(w->call, code, "%s", msg);
        free(w);
        w = next;
    }
}

static void flush_waiters(caa_proxy_t *p)
{
    waiter_t *w = p->waiters;
    p->waiters = NULL;
    while (w != NULL) {
        waiter_t *next = w->next;
        forward(p, w->call);
        free(w);
        w = next;
    }
}

static void up_closed_cb(pp_ttrpc_client_t *c, void *data)
{
    caa_proxy_t *p = data;
    (void)c;
    p->pending_closes--;
    if (p->closing && p->pending_closes == 0) {
        caa_proxy_close_cb cb = p->close_cb;
        void *d = p->close_data;
        free(p);
        if (cb)
            cb(NULL, d);
    }
}

static void drop_up(caa_proxy_t *p)
{
    if (p->up == NULL)
        return;
    pp_ttrpc_client_t *c = p->up;
    p->up = NULL;
    p->up_state = 0;
    p->pending_closes++;
    pp_ttrpc_client_close(c, up_closed_cb, p);
}

static void up_disconnected(pp_ttrpc_client_t *c, void *data)
{
    caa_proxy_t *p = data;
    (void)c;
    PP_WARN("proxy", "`%s`: forwarder connection lost; the next call dials again", p->path);
    /* Calls in flight already completed with UNAVAILABLE. */
    drop_up(p);
}

static void start_done(caa_proxy_t *p, int status, const char *msg)
{
    p->starting = 0;
    uv_timer_stop(&p->timer);
    pp_error_t err = {0};
    if (status < 0)
        pp_error_set(&err, status, "%s", msg);
    if (status == 0) {
        pp_error_t lerr = {0};
        status = pp_ttrpc_server_listen_unix(p->srv, p->path, &lerr);
        if (status < 0)
            err = lerr;
        else
            p->serving = 1;
    }
    caa_proxy_ready_cb cb = p->ready_cb;
    p->ready_cb = NULL;
    if (cb)
        cb(p, status, status < 0 ? &err : NULL, p->ready_data);
}

static void retry_timer_cb(uv_timer_t *t)
{
    dial(t->data);
}

static void schedule_retry(caa_proxy_t *p)
{
    uint64_t now = uv_now(p->loop);
    if (now >= p->deadline) {
        char msg[400];
        snprintf(msg, sizeof(msg), "forwarder did not answer after %d attempts: %s", p->attempts,
                 p->last_error);
        start_done(p, -ETIMEDOUT, msg);
        return;
    }
    uint64_t wait = p->backoff;
    if (now + wait > p->deadline)
        wait = p->deadline - now;
    p->backoff = p->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff * 2;
    uv_timer_start(&p->timer, retry_timer_cb, wait, 0);
}

static void probe_cb(pp_ttrpc_result_t *res, void *data)
{
    caa_proxy_t *p = data;
    if (p->closing)
        return;
    if (res->code != 0) {
        snprintf(p->last_error, sizeof(p->last_error), "agent health check: %s: %.*s",
                 pp_grpc_code_name(res->code), (int)res->message.n, res->message.p);
        drop_up(p);
        if (p->starting)
            schedule_retry(p);
        else
            fail_waiters(p, PP_GRPC_UNAVAILABLE, p->last_error);
        return;
    }
    p->up_state = 2;
    if (p->starting)
        start_done(p, 0, NULL);
    flush_waiters(p);
}

static void connected_cb(pp_ttrpc_client_t *c, int status, void *data)
{
    caa_proxy_t *p = data;
    if (p->closing || c != p->up)
        return;
    if (status < 0) {
        if (strncmp(p->last_error, "tls: ", 5) != 0)
            snprintf(p->last_error, sizeof(p->last_error), "connect: %s", uv_strerror(status));
        drop_up(p);
        if (p->starting)
            schedule_retry(p);
        else
            fail_waiters(p, PP_GRPC_UNAVAILABLE, p->last_error);
        return;
    }
    if (!p->starting) {
        p->up_state = 2;
        flush_waiters(p);
        return;
    }
    if (p->connected_ms == 0)
        p->connected_ms = uv_now(p->loop);
    /* During start, the agent behind the forwarder must answer too. */
    Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
    uint8_t buf[16];
    size_t n = grpc__check_request__pack(&req, buf);
    pp_ttrpc_call_opts_t o = {"grpc.Health", "Check", buf, n, PROBE_TIMEOUT_NS, NULL, 0};
    int r = pp_ttrpc_client_call(c, &o, probe_cb, p);
    if (r < 0) {
        snprintf(p->last_error, sizeof(p->last_error), "health check: %s", uv_strerror(r));
        drop_up(p);
        schedule_retry(p);
    }
}

static void tls_dialed(pp_tls_dial_t *dl, int status, uv_stream_t *stream,
                       pp_stream_filter_t *filter, const char *err_msg, void *data)
{
    caa_proxy_t *p = data;
    (void)dl;
    p->dialing = NULL;
    if (status == UV_ECANCELED)
        return; /* closing */
    if (status < 0) {
        snprintf(p->last_error, sizeof(p->last_error), "tls: %s",
                 err_msg ? err_msg : uv_strerror(status));
        connected_cb(p->up, status, p);
        return;
    }
    int r = pp_ttrpc_client_open_filtered(p->up, stream, filter);
    connected_cb(p->up, r, p);
}

static void dial(caa_proxy_t *p)
{
    if (p->up != NULL || p->closing)
        return;
    p->attempts++;
    p->last_error[0] = '\0';
    int r = pp_ttrpc_client_new(p->loop, &p->up);
    if (r == 0) {
        pp_ttrpc_client_on_disconnect(p->up, up_disconnected, p);
        if (p->tls != NULL)
            r = caa_tls_dial(p->tls, p->loop, (struct sockaddr *)&p->fwd, p->server_name,
                             tls_dialed, p, &p->dialing);
        else
            r = pp_ttrpc_client_connect_tcp(p->up, (struct sockaddr *)&p->fwd, connected_cb, p);
        if (r < 0) {
            pp_ttrpc_client_close(p->up, NULL, NULL);
            p->up = NULL;
        }
    }
    if (r < 0) {
        snprintf(p->last_error, sizeof(p->last_error), "dial: %s", uv_strerror(r));
        if (p->starting)
            schedule_retry(p);
        else
            fail_waiters(p, PP_GRPC_UNAVAILABLE, p->last_error);
        return;
    }
    p->up_state = 1;
}

/* Every call from the shim lands here. */
static void proxy_call(pp_ttrpc_call_t *call, void *data)
{
    caa_proxy_t *p = data;
    pp_series_inc(p->m_calls);
    if (p->up_state == 2) {
        forward(p, call);
        return;
    }
    waiter_t *w = malloc(sizeof(*w));
    if (w == NULL) {
        failed(p);
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    w->call = call;
    w->next = p->waiters;
    p->waiters = w;
    if (p->up == NULL)
        dial(p);
}

int caa_proxy_start(caa_proxy_t *p, uint64_t deadline_ms, caa_proxy_ready_cb cb, void *data)
{
    int r = pp_ttrpc_server_new(p->loop, &p->srv);
    if (r < 0)
        return r;
    pp_ttrpc_server_set_fallback(p->srv, proxy_call, p);
    p->deadline = deadline_ms;
    p->backoff = BACKOFF_MIN_MS;
    p->starting = 1;
    p->ready_cb = cb;
    p->ready_data = data;
    dial(p);
    return 0;
}

int caa_proxy_adopt(caa_proxy_t *p, pp_error_t *err)
{
    int r = pp_ttrpc_server_new(p->loop, &p->srv);
    if (r < 0)
        return pp_error_set(err, r, "out of memory");
    pp_ttrpc_server_set_fallback(p->srv, proxy_call, p);
    r = pp_ttrpc_server_listen_unix(p->srv, p->path, err);
    if (r == 0)
        p->serving = 1;
    return r;
}

static void timer_closed_cb(uv_handle_t *h)
{
    caa_proxy_t *p = h->data;
    up_closed_cb(NULL, p);
}

static void srv_closed_cb(pp_ttrpc_server_t *s, void *data)
{
    (void)s;
    up_closed_cb(NULL, data);
}

void caa_proxy_close(caa_proxy_t *p, caa_proxy_close_cb cb, void *data)
{
    if (p->closing)
        return;
    p->closing = 1;
    p->close_cb = cb;
    p->close_data = data;
    p->pending_closes++; /* held until the end of this function */
    if (p->starting) {
        p->starting = 0;
        caa_proxy_ready_cb rcb = p->ready_cb;
        p->ready_cb = NULL;
        pp_error_t err;
        pp_error_set(&err, -ECANCELED, "cancelled");
        if (rcb)
            rcb(p, -ECANCELED, &err, p->ready_data);
    }
    fail_waiters(p, PP_GRPC_UNAVAILABLE, "pod is stopping");
    if (p->dialing != NULL)
        caa_tls_dial_cancel(p->tls, p->dialing); /* calls back with UV_ECANCELED */
    drop_up(p);
    if (p->srv != NULL) {
        p->pending_closes++;
        pp_ttrpc_server_close(p->srv, 0, srv_closed_cb, p);
        p->srv = NULL;
    }
    p->pending_closes++;
    uv_close((uv_handle_t *)&p->timer, timer_closed_cb);
    up_closed_cb(NULL, p);
}

void caa_proxy_count(caa_proxy_t *p, pp_series_t *calls, pp_series_t *failures)
{
    p->m_calls = calls;
    p->m_failures = failures;
}

uint64_t caa_proxy_connected_ms(const caa_proxy_t *p)
{
    return p->connected_ms;
}
