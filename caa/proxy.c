#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.pb-c.h"
#include "ttrpc/link.h"
#include "ttrpc/ttrpc.h"
#include "util/log.h"

#define BACKOFF_MIN_MS   100
#define BACKOFF_MAX_MS   2000
#define PROBE_TIMEOUT_NS (5 * 1000000000LL)

struct caa_proxy_s {
    uv_loop_t *loop;
    char path[108];
    pp_ttrpc_server_t *srv;
    pp_ttrpc_link_t *link; /* to the forwarder */
    caa_proxy_ready_cb ready_cb;
    void *ready_data;
    caa_proxy_close_cb close_cb;
    void *close_data;
    int pending_closes;
    pp_series_t *m_calls, *m_failures; /* may be NULL */
    pp_ttrpc_server_opts_t limits;     /* for the server; zero: the library's */
    char name[128];                    /* limits.name points here */
    unsigned closing : 1;
};

/* The link answered a call itself (the agent's answers, errors included,
 * pass through as frames and are not counted here). */
static void forward_failed(pp_ttrpc_link_t *l, int code, void *data)
{
    caa_proxy_t *p = data;
    (void)l;
    (void)code;
    pp_series_inc(p->m_failures);
}

int caa_proxy_new(uv_loop_t *loop, const char *socket_path, const struct sockaddr *forwarder,
                  const caa_tls_t *tls, const char *server_name, uint64_t silence_ms,
                  caa_proxy_t **out)
{
    if (strlen(socket_path) >= sizeof(((caa_proxy_t *)0)->path))
        return -ENAMETOOLONG;
    caa_proxy_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->loop = loop;
    snprintf(p->path, sizeof(p->path), "%s", socket_path);
    char addr[64] = "", name[128];
    if (forwarder->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)forwarder;
        uv_ip6_name(a6, addr, sizeof(addr));
        snprintf(name, sizeof(name), "forwarder at `[%s]:%u`", addr, ntohs(a6->sin6_port));
    } else {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)forwarder;
        uv_ip4_name(a4, addr, sizeof(addr));
        snprintf(name, sizeof(name), "forwarder at `%s:%u`", addr, ntohs(a4->sin_port));
    }
    /* After start, a call that finds the link down makes one attempt: the
     * shim retries what it wants retried. */
    pp_ttrpc_link_opts_t o = {
        .name = name,
        .component = "proxy",
        .backoff_min_ms = BACKOFF_MIN_MS,
        .backoff_max_ms = BACKOFF_MAX_MS,
        .redial_window_ms = 0,
        /* A call without a timeout (WaitProcess) may rightly wait for
         * ever; a pod VM that stopped answering must not hold it so. */
        .silence_timeout_ms = silence_ms,
    };
    /* The TLS module's own dial, through the daemon's table. */
    int r = tls != NULL ? caa_tls_link_new(tls, loop, &o, forwarder, server_name, &p->link)
                        : pp_ttrpc_link_new_tcp(loop, &o, forwarder, &p->link);
    if (r < 0) {
        free(p);
        return r;
    }
    pp_ttrpc_link_on_forward_failure(p->link, forward_failed, p);
    *out = p;
    return 0;
}

void caa_proxy_count(caa_proxy_t *p, pp_series_t *calls, pp_series_t *failures)
{
    p->m_calls = calls;
    p->m_failures = failures;
}

uint64_t caa_proxy_connected_ms(const caa_proxy_t *p)
{
    return pp_ttrpc_link_first_connect_ms(p->link);
}

/* Every call from the shim lands here. */
static void proxy_call(pp_ttrpc_call_t *call, void *data)
{
    caa_proxy_t *p = data;
    pp_series_inc(p->m_calls);
    size_t len;
    uint8_t *frame = pp_ttrpc_call_steal_frame(call, &len);
    pp_ttrpc_link_forward(p->link, call, frame, len);
}

void caa_proxy_set_limits(caa_proxy_t *p, const pp_ttrpc_server_opts_t *o)
{
    p->limits = *o;
    snprintf(p->name, sizeof(p->name), "%s", o->name ? o->name : p->path);
    p->limits.name = p->name;
}

static int serve(caa_proxy_t *p, pp_error_t *err)
{
    int r = pp_ttrpc_server_new(p->loop, &p->srv);
    if (r == 0)
        r = pp_ttrpc_server_set_opts(p->srv, &p->limits);
    if (r < 0)
        return pp_error_set(err, r, "out of memory");
    pp_ttrpc_server_set_fallback(p->srv, proxy_call, p);
    return pp_ttrpc_server_listen_unix(p->srv, p->path, err);
}

static void link_ready(pp_ttrpc_link_t *l, int status, const pp_error_t *lerr, void *data)
{
    caa_proxy_t *p = data;
    (void)l;
    pp_error_t err = {0};
    if (status < 0)
        pp_error_set(&err, status, "forwarder did not answer: %s", lerr->message);
    else
        status = serve(p, &err);
    caa_proxy_ready_cb cb = p->ready_cb;
    p->ready_cb = NULL;
    if (cb)
        cb(p, status, status < 0 ? &err : NULL, p->ready_data);
}

int caa_proxy_start(caa_proxy_t *p, uint64_t deadline_ms, caa_proxy_ready_cb cb, void *data)
{
    /* During start the agent behind the forwarder must answer too. */
    Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
    uint8_t buf[16];
    size_t n = grpc__check_request__pack(&req, buf);
    pp_ttrpc_link_probe_t probe = {"grpc.Health", "Check", buf, n, PROBE_TIMEOUT_NS};
    p->ready_cb = cb;
    p->ready_data = data;
    int r = pp_ttrpc_link_wait(p->link, deadline_ms, &probe, link_ready, p);
    if (r < 0)
        p->ready_cb = NULL;
    return r;
}

int caa_proxy_adopt(caa_proxy_t *p, pp_error_t *err)
{
    return serve(p, err);
}

static void part_closed(caa_proxy_t *p)
{
    if (--p->pending_closes > 0)
        return;
    caa_proxy_close_cb cb = p->close_cb;
    void *d = p->close_data;
    free(p);
    if (cb)
        cb(NULL, d);
}

static void link_closed_cb(pp_ttrpc_link_t *l, void *data)
{
    (void)l;
    part_closed(data);
}

static void srv_closed_cb(pp_ttrpc_server_t *s, void *data)
{
    (void)s;
    part_closed(data);
}

void caa_proxy_close(caa_proxy_t *p, caa_proxy_close_cb cb, void *data)
{
    if (p->closing)
        return;
    p->closing = 1;
    p->close_cb = cb;
    p->close_data = data;
    p->pending_closes = 1; /* held until the end of this function */
    /* The link first: a pending start learns -ECANCELED, and waiting calls
     * are answered while the server still can. */
    p->pending_closes++;
    pp_ttrpc_link_close(p->link, link_closed_cb, p);
    if (p->srv != NULL) {
        p->pending_closes++;
        pp_ttrpc_server_close(p->srv, 0, srv_closed_cb, p);
        p->srv = NULL;
    }
    part_closed(p);
}
