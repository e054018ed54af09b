/* c_server: the interop test service (peer.h) on our ttrpc server.
 *
 *     c_server SOCKET
 *
 * Serves until SIGTERM or SIGINT, then closes the server and exits 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/loop.h"
#include "peer.h"
#include "ttrpc/ttrpc.h"
#include "util/cleanup.h"

typedef struct server_ctx_s {
    uv_loop_t *loop;
    pp_ttrpc_server_t *srv;
    uv_signal_t sigterm;
    uv_signal_t sigint;
} server_ctx_t;

static void echo_cb(pp_ttrpc_call_t *call, void *data)
{
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    (void)data;
    pp_ttrpc_call_reply(call, req->payload, req->payload_len);
}

/* ---- Sleep ------------------------------------------------------------- */

typedef struct sleeper_s {
    uv_timer_t timer;
    pp_ttrpc_call_t *call; /* NULL once answered */
} sleeper_t;

static void sleeper_free_cb(uv_handle_t *h)
{
    free(container_of((uv_timer_t *)h, sleeper_t, timer));
}

static void sleeper_done_cb(uv_timer_t *t)
{
    sleeper_t *s = container_of(t, sleeper_t, timer);
    pp_ttrpc_call_t *call = PP_STEAL(s->call);
    uv_close((uv_handle_t *)&s->timer, sleeper_free_cb);
    pp_ttrpc_call_reply(call, "slept", 5);
}

/* The deadline passed or the caller went away: stop sleeping and answer
 * (the server drops an answer nobody can receive). */
static void sleeper_cancel_cb(pp_ttrpc_call_t *call, void *data)
{
    sleeper_t *s = data;
    s->call = NULL;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, sleeper_free_cb);
    pp_ttrpc_call_fail(call, PP_GRPC_DEADLINE_EXCEEDED, "context deadline exceeded");
}

static void sleep_cb(pp_ttrpc_call_t *call, void *data)
{
    server_ctx_t *ctx = data;
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    uint64_t ms;
    if (peer_parse_size(req->payload, req->payload_len, &ms) < 0) {
        pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT, "bad duration");
        return;
    }
    sleeper_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    s->call = call;
    uv_timer_init(ctx->loop, &s->timer);
    uv_timer_start(&s->timer, sleeper_done_cb, ms, 0);
    pp_ttrpc_call_on_cancel(call, sleeper_cancel_cb, s);
}

/* ---- Fail, Metadata, Big, Deadline -------------------------------------- */

static void fail_cb(pp_ttrpc_call_t *call, void *data)
{
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    const uint8_t *colon = memchr(req->payload, ':', req->payload_len);
    uint64_t code;
    (void)data;
    if (colon == NULL || peer_parse_size(req->payload, (size_t)(colon - req->payload), &code) < 0) {
        pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT, "bad status");
        return;
    }
    size_t mlen = req->payload_len - (size_t)(colon + 1 - req->payload);
    pp_ttrpc_call_fail(call, (int)code, "%.*s", (int)mlen, (const char *)colon + 1);
}

static int kv_key_cmp(const pp_ttrpc_kv_t *a, const pp_ttrpc_kv_t *b)
{
    size_t n = a->key.n < b->key.n ? a->key.n : b->key.n;
    int c = n ? memcmp(a->key.p, b->key.p, n) : 0;
    if (c != 0)
        return c;
    return a->key.n < b->key.n ? -1 : a->key.n > b->key.n;
}

static void metadata_cb(pp_ttrpc_call_t *call, void *data)
{
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    size_t n = req->metadata_count;
    (void)data;
    cleanup_free const pp_ttrpc_kv_t **order = calloc(n ? n : 1, sizeof(*order));
    size_t total = 0;
    if (order == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    /* Insertion sort by key: stable, so values keep their order. */
    for (size_t i = 0; i < n; i++) {
        const pp_ttrpc_kv_t *kv = &req->metadata[i];
        size_t j = i;
        for (; j > 0 && kv_key_cmp(order[j - 1], kv) > 0; j--)
            order[j] = order[j - 1];
        order[j] = kv;
        total += kv->key.n + kv->value.n + 2;
    }
    cleanup_free char *out = malloc(total + 1);
    if (out == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    size_t len = 0;
    /* An empty key or value is a NULL view: copy only what is there. */
    for (size_t i = 0; i < n; i++) {
        if (order[i]->key.n)
            memcpy(out + len, order[i]->key.p, order[i]->key.n);
        len += order[i]->key.n;
        out[len++] = '=';
        if (order[i]->value.n)
            memcpy(out + len, order[i]->value.p, order[i]->value.n);
        len += order[i]->value.n;
        out[len++] = '\n';
    }
    pp_ttrpc_call_reply(call, out, len);
}

static void big_cb(pp_ttrpc_call_t *call, void *data)
{
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    uint64_t n;
    (void)data;
    if (peer_parse_size(req->payload, req->payload_len, &n) < 0 || n > (64u << 20)) {
        pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT, "bad size");
        return;
    }
    cleanup_free uint8_t *p = malloc(n ? n : 1);
    if (p == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        p[i] = peer_pattern_byte(i);
    pp_ttrpc_call_reply(call, p, n);
}

static void deadline_cb(pp_ttrpc_call_t *call, void *data)
{
    server_ctx_t *ctx = data;
    uint64_t dl = pp_ttrpc_call_deadline(call);
    char buf[32];
    int n;
    if (dl == 0) {
        n = snprintf(buf, sizeof(buf), "none");
    } else {
        uv_update_time(ctx->loop);
        uint64_t now = uv_now(ctx->loop);
        n = snprintf(buf, sizeof(buf), "%lld", (long long)dl - (long long)now);
    }
    pp_ttrpc_call_reply(call, buf, (size_t)n);
}

/* ---- main -------------------------------------------------------------- */

static void server_closed_cb(pp_ttrpc_server_t *srv, void *data)
{
    (void)srv;
    (void)data;
}

static void signal_cb(uv_signal_t *h, int signum)
{
    server_ctx_t *ctx = h->data;
    (void)signum;
    uv_close((uv_handle_t *)&ctx->sigterm, NULL);
    uv_close((uv_handle_t *)&ctx->sigint, NULL);
    pp_ttrpc_server_close(ctx->srv, 0, server_closed_cb, ctx);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *method;
        pp_ttrpc_handler_cb cb;
    } methods[] = {
        {"Echo", echo_cb},         {"Sleep", sleep_cb}, {"Fail", fail_cb},
        {"Metadata", metadata_cb}, {"Big", big_cb},     {"Deadline", deadline_cb},
    };
    server_ctx_t ctx = {.loop = uv_default_loop()};
    pp_error_t err = {0};

    unsigned busy_poll_us;
    if (argc != 2 || pp_loop_busy_poll_parse(getenv("BUSY_POLL_US"), &busy_poll_us) < 0) {
        fprintf(stderr, "usage: [BUSY_POLL_US=microseconds] c_server SOCKET\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int r = pp_ttrpc_server_new(ctx.loop, &ctx.srv);
    for (size_t i = 0; r == 0 && i < PP_ARRAY_SIZE(methods); i++)
        r = pp_ttrpc_server_register(ctx.srv, PEER_SERVICE, methods[i].method, methods[i].cb, &ctx);
    if (r < 0) {
        fprintf(stderr, "c server: set up: %s\n", strerror(-r));
        return 1;
    }
    r = pp_ttrpc_server_listen_unix(ctx.srv, argv[1], &err);
    if (r < 0) {
        fprintf(stderr, "c server: %s\n", err.message);
        return 1;
    }
    uv_signal_init(ctx.loop, &ctx.sigterm);
    uv_signal_init(ctx.loop, &ctx.sigint);
    ctx.sigterm.data = ctx.sigint.data = &ctx;
    uv_signal_start(&ctx.sigterm, signal_cb, SIGTERM);
    uv_signal_start(&ctx.sigint, signal_cb, SIGINT);
    printf("c server: listening on %s\n", argv[1]);
    fflush(stdout);
    pp_loop_run(ctx.loop, busy_poll_us);
    uv_loop_close(ctx.loop);
    return 0;
}
