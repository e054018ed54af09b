/* TLS in front of a ttrpc server (the acceptor), and dialing a TLS server
 * for a ttrpc client. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls_int.h"
#include "util/cleanup.h"
#include "util/log.h"

/* ---- acceptor ---------------------------------------------------------- */

typedef struct pending_s {
    pp_tls_acceptor_t *a;
    uv_stream_t *stream;
    pp_tls_handshake_t *hs;
    struct pending_s *prev, *next;
    char peer[64];
} pending_t;

struct pp_tls_acceptor_s {
    pp_ttrpc_server_t *srv;
    pp_tls_ctx_t *ctx;
    pending_t *pending, *pending_tail; /* oldest first */
    size_t npending;
    pp_tls_acceptor_stats_t stats;
    pp_log_limit_t refuse_log;
    pp_tls_accept_event_cb event_cb;
    void *event_data;
    int freeing;
};

static void addr_string(const struct sockaddr *sa, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        uv_ip4_name(in, ip, sizeof(ip));
        snprintf(out, n, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(in6, ip, sizeof(ip));
        snprintf(out, n, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, n, "unknown");
    }
}

static void peer_string(uv_stream_t *s, char *out, size_t n)
{
    if (s->type != UV_TCP) {
        snprintf(out, n, "unix socket");
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername((uv_tcp_t *)s, (struct sockaddr *)&ss, &len) < 0) {
        snprintf(out, n, "unknown");
        return;
    }
    addr_string((struct sockaddr *)&ss, out, n);
}

static void event(pp_tls_acceptor_t *a, int status, const char *peer, const char *msg)
{
    if (a->event_cb != NULL && !a->freeing)
        a->event_cb(a, status, peer, msg, a->event_data);
}

static void accepted_cb(pp_tls_handshake_t *hs, int status, pp_stream_filter_t *filter,
                        const char *err_msg, void *data)
{
    pending_t *p = data;
    pp_tls_acceptor_t *a = p->a;
    if (p->prev)
        p->prev->next = p->next;
    else
        a->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        a->pending_tail = p->prev;
    a->npending--;

    if (status == 0) {
        PP_DEBUG("tls", "accepted %s: %s %s, client `%s`", p->peer, pp_tls_handshake_version(hs),
                 pp_tls_handshake_cipher(hs), pp_tls_handshake_peer_cn(hs));
        int r = pp_ttrpc_server_serve_filtered(a->srv, p->stream, filter);
        event(a, r, p->peer, r < 0 ? "the server is closing" : NULL);
    } else {
        if (status != UV_ECANCELED) {
            a->stats.failed++;
            uint64_t quiet;
            if (pp_log_limit(&a->refuse_log, uv_now(p->stream->loop), 10000, &quiet))
                PP_WARN("tls", "refused connection from %s: %s (%llu more not logged)", p->peer,
                        err_msg, (unsigned long long)quiet);
        }
        uv_close((uv_handle_t *)p->stream, (uv_close_cb)free);
        event(a, status, p->peer, err_msg);
    }
    free(p);
}

/* Handshakes in progress are capped: a new connection at the cap ends the
 * oldest handshake, so that connections opened and left silent cannot keep
 * out one that completes its handshake in a few milliseconds, and hold no
 * more than PP_TLS_MAX_PENDING descriptors and TLS states. */
static void make_room(pp_tls_acceptor_t *a, uv_loop_t *loop)
{
    if (a->npending < PP_TLS_MAX_PENDING || a->pending == NULL)
        return;
    pending_t *oldest = a->pending;
    a->stats.evicted++;
    uint64_t quiet;
    if (pp_log_limit(&a->refuse_log, uv_now(loop), 10000, &quiet))
        PP_WARN("tls",
                "%zu TLS handshakes in progress: ending the oldest, from %s (%llu more not "
                "logged)",
                a->npending, oldest->peer, (unsigned long long)quiet);
    pp_tls_handshake_cancel(oldest->hs); /* unlinks it */
}

static void accept_hook(pp_ttrpc_server_t *srv, uv_stream_t *stream, void *data)
{
    pp_tls_acceptor_t *a = data;
    (void)srv;
    make_room(a, stream->loop);
    pending_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        uv_close((uv_handle_t *)stream, (uv_close_cb)free);
        return;
    }
    p->a = a;
    p->stream = stream;
    peer_string(stream, p->peer, sizeof(p->peer));
    int r = pp_tls_handshake(a->ctx, stream, NULL, accepted_cb, p, &p->hs);
    if (r < 0) {
        a->stats.failed++;
        uint64_t quiet;
        if (pp_log_limit(&a->refuse_log, uv_now(stream->loop), 10000, &quiet))
            PP_WARN("tls",
                    "refused connection from %s: cannot start the TLS handshake: %s (%llu more "
                    "not logged)",
                    p->peer, uv_strerror(r), (unsigned long long)quiet);
        uv_close((uv_handle_t *)stream, (uv_close_cb)free);
        event(a, r, p->peer, "cannot start the TLS handshake");
        free(p);
        return;
    }
    p->prev = a->pending_tail;
    if (a->pending_tail)
        a->pending_tail->next = p;
    else
        a->pending = p;
    a->pending_tail = p;
    a->npending++;
}

/* Once the acceptor is gone nothing may reach ttrpc unencrypted. */
static void refuse_hook(pp_ttrpc_server_t *srv, uv_stream_t *stream, void *data)
{
    (void)srv;
    (void)data;
    uv_close((uv_handle_t *)stream, (uv_close_cb)free);
}

int pp_tls_acceptor_new(pp_ttrpc_server_t *srv, pp_tls_ctx_t *ctx, pp_tls_acceptor_t **out,
                        pp_error_t *err)
{
    if (srv == NULL || ctx == NULL || out == NULL)
        return pp_error_set(err, -EINVAL, "TLS acceptor: bad arguments");
    if (ctx->role != PP_TLS_SERVER)
        return pp_error_set(err, -EINVAL, "TLS acceptor: the context is not a server's");
    pp_tls_acceptor_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return pp_error_set(err, -ENOMEM, "TLS acceptor: out of memory");
    a->srv = srv;
    a->ctx = pp__tls_ctx_ref(ctx);
    pp_ttrpc_server_set_accept_hook(srv, accept_hook, a);
    *out = a;
    return 0;
}

void pp_tls_acceptor_on_event(pp_tls_acceptor_t *a, pp_tls_accept_event_cb cb, void *data)
{
    a->event_cb = cb;
    a->event_data = data;
}

size_t pp_tls_acceptor_pending(const pp_tls_acceptor_t *a)
{
    return a->npending;
}

const pp_tls_acceptor_stats_t *pp_tls_acceptor_stats(const pp_tls_acceptor_t *a)
{
    return &a->stats;
}

void pp_tls_acceptor_free(pp_tls_acceptor_t *a)
{
    if (a == NULL)
        return;
    a->freeing = 1;
    pp_ttrpc_server_set_accept_hook(a->srv, refuse_hook, NULL);
    while (a->pending != NULL)
        pp_tls_handshake_cancel(a->pending->hs); /* unlinks it */
    pp_tls_ctx_free(a->ctx);
    free(a);
}

/* ---- dial -------------------------------------------------------------- */

struct pp_tls_dial_s {
    int refs; /* owner (until the callback), timer, connect request */
    pp_tls_ctx_t *ctx;
    uv_tcp_t *tcp; /* NULL once handed over or closed */
    uv_connect_t creq;
    uv_timer_t timer;
    pp_tls_handshake_t *hs;
    char *server_name;
    pp_tls_dial_cb cb;
    void *data;
    int done;
    char addr[64];
    char err[512];
};

static void dial_unref(pp_tls_dial_t *d)
{
    if (--d->refs > 0)
        return;
    pp_tls_ctx_free(d->ctx);
    free(d->server_name);
    free(d);
}

static void dial_timer_close_cb(uv_handle_t *h)
{
    dial_unref(container_of((uv_timer_t *)h, pp_tls_dial_t, timer));
}

static void dial_finish(pp_tls_dial_t *d, int status, pp_stream_filter_t *filter)
{
    if (d->done)
        return;
    d->done = 1;
    uv_close((uv_handle_t *)&d->timer, dial_timer_close_cb);
    uv_stream_t *stream = NULL;
    if (status == 0) {
        stream = (uv_stream_t *)d->tcp;
    } else {
        /* Also cancels a connect in progress. */
        uv_close((uv_handle_t *)d->tcp, (uv_close_cb)free);
    }
    d->tcp = NULL;
    d->cb(d, status, stream, filter, status < 0 ? d->err : NULL, d->data);
    dial_unref(d);
}

static void dial_hs_cb(pp_tls_handshake_t *hs, int status, pp_stream_filter_t *filter,
                       const char *err_msg, void *data)
{
    pp_tls_dial_t *d = data;
    d->hs = NULL;
    if (status == 0) {
        PP_DEBUG("tls", "connected to %s: %s %s, server `%s`", d->addr,
                 pp_tls_handshake_version(hs), pp_tls_handshake_cipher(hs),
                 pp_tls_handshake_peer_cn(hs));
    } else {
        snprintf(d->err, sizeof(d->err), "TLS handshake with %s: %s", d->addr, err_msg);
    }
    dial_finish(d, status, filter);
}

static void dial_connect_cb(uv_connect_t *req, int status)
{
    pp_tls_dial_t *d = container_of(req, pp_tls_dial_t, creq);
    if (d->done) {
        dial_unref(d);
        return;
    }
    if (status < 0) {
        snprintf(d->err, sizeof(d->err), "connect to %s: %s", d->addr, uv_strerror(status));
        dial_finish(d, status, NULL);
        dial_unref(d);
        return;
    }
    uv_timer_stop(&d->timer);
    int r = pp_tls_handshake(d->ctx, (uv_stream_t *)d->tcp, d->server_name, dial_hs_cb, d, &d->hs);
    if (r < 0) {
        snprintf(d->err, sizeof(d->err), "TLS handshake with %s: cannot start: %s", d->addr,
                 uv_strerror(r));
        dial_finish(d, r, NULL);
    }
    dial_unref(d);
}

static void dial_timeout_cb(uv_timer_t *t)
{
    pp_tls_dial_t *d = container_of(t, pp_tls_dial_t, timer);
    snprintf(d->err, sizeof(d->err), "connect to %s timed out after %u ms", d->addr,
             d->ctx->timeout_ms);
    dial_finish(d, UV_ETIMEDOUT, NULL);
}

int pp_tls_dial(uv_loop_t *loop, pp_tls_ctx_t *ctx, const struct sockaddr *addr,
                const char *server_name, pp_tls_dial_cb cb, void *data, pp_tls_dial_t **out)
{
    if (loop == NULL || ctx == NULL || addr == NULL || cb == NULL)
        return -EINVAL;
    if (ctx->role != PP_TLS_CLIENT)
        return -EINVAL;
    pp_tls_dial_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    d->tcp = malloc(sizeof(*d->tcp));
    if (server_name != NULL)
        d->server_name = strdup(server_name);
    if (d->tcp == NULL || (server_name != NULL && d->server_name == NULL)) {
        free(d->tcp);
        free(d->server_name);
        free(d);
        return -ENOMEM;
    }
    d->ctx = pp__tls_ctx_ref(ctx);
    d->cb = cb;
    d->data = data;
    d->refs = 1;
    addr_string(addr, d->addr, sizeof(d->addr));
    int r = uv_tcp_init(loop, d->tcp);
    if (r < 0) {
        free(d->tcp);
        pp_tls_ctx_free(d->ctx);
        free(d->server_name);
        free(d);
        return r;
    }
    uv_tcp_nodelay(d->tcp, 1);
    r = uv_tcp_connect(&d->creq, d->tcp, addr, dial_connect_cb);
    if (r < 0) {
        uv_close((uv_handle_t *)d->tcp, (uv_close_cb)free);
        pp_tls_ctx_free(d->ctx);
        free(d->server_name);
        free(d);
        return r;
    }
    d->refs++; /* the connect request's */
    uv_timer_init(loop, &d->timer);
    d->refs++; /* the timer's */
    uv_timer_start(&d->timer, dial_timeout_cb, ctx->timeout_ms, 0);
    if (out != NULL)
        *out = d;
    return 0;
}

void pp_tls_dial_cancel(pp_tls_dial_t *d)
{
    if (d == NULL || d->done)
        return;
    if (d->hs != NULL) {
        pp_tls_handshake_cancel(d->hs); /* calls dial_hs_cb */
        return;
    }
    snprintf(d->err, sizeof(d->err), "connect to %s: cancelled", d->addr);
    dial_finish(d, UV_ECANCELED, NULL);
}
