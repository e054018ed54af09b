/* Blocking ttrpc calls on a private loop (sync_client.h). */
#include "ttrpc/sync_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wait_s {
    int done;
    int status;
    pp_ttrpc_sync_result_t *out;
} wait_t;

static void connected(pp_ttrpc_client_t *c, int status, void *data)
{
    (void)c;
    wait_t *w = data;
    w->status = status;
    w->done = 1;
}

static void answered(pp_ttrpc_result_t *res, void *data)
{
    wait_t *w = data;
    pp_ttrpc_sync_result_t *out = w->out;
    w->done = 1;
    out->payload = malloc(res->payload_len + 1);
    if (out->payload == NULL) {
        w->status = -ENOMEM;
        return;
    }
    if (res->payload_len)
        memcpy(out->payload, res->payload, res->payload_len);
    out->payload[res->payload_len] = 0;
    out->len = res->payload_len;
    out->code = res->code;
    snprintf(out->message, sizeof(out->message), "%.*s", (int)res->message.n,
             res->message.p != NULL ? res->message.p : "");
}

/* Connects to `sock`, or to `addr` over TCP when `sock` is NULL, calls and
 * waits; 0 when an answer came (in `out`), else a negative errno. */
static int call_on(uv_loop_t *loop, const char *sock, const struct sockaddr *addr,
                   const char *service, const char *method, const void *payload, size_t len,
                   uint64_t timeout_ms, pp_ttrpc_sync_result_t *out)
{
    pp_ttrpc_client_t *c;
    int r = pp_ttrpc_client_new(loop, &c);
    if (r < 0)
        return r;
    wait_t w = {0, 0, out};
    r = sock != NULL ? pp_ttrpc_client_connect_unix(c, sock, connected, &w)
                     : pp_ttrpc_client_connect_tcp(c, addr, connected, &w);
    while (r == 0 && !w.done)
        uv_run(loop, UV_RUN_ONCE);
    if (r == 0)
        r = w.status;
    if (r == 0) {
        pp_ttrpc_call_opts_t o = {service, method, payload, len, (int64_t)timeout_ms * 1000000,
                                  NULL,    0};
        w.done = 0;
        r = pp_ttrpc_client_call(c, &o, answered, &w);
        while (r == 0 && !w.done)
            uv_run(loop, UV_RUN_ONCE);
        if (r == 0)
            r = w.status;
    }
    pp_ttrpc_client_close(c, NULL, NULL);
    return r;
}

static int sync_call(const char *sock, const struct sockaddr *addr, const char *service,
                     const char *method, const void *payload, size_t len, uint64_t timeout_ms,
                     pp_ttrpc_sync_result_t *out)
{
    memset(out, 0, sizeof(*out));
    uv_loop_t loop;
    int r = uv_loop_init(&loop);
    if (r == 0) {
        r = call_on(&loop, sock, addr, service, method, payload, len, timeout_ms, out);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    if (r < 0) {
        pp_ttrpc_sync_result_free(out);
        out->code = r;
        snprintf(out->message, sizeof(out->message), "%s", uv_strerror(r));
    }
    return out->code;
}

int pp_ttrpc_sync_call(const char *sock, const char *service, const char *method,
                       const void *payload, size_t len, uint64_t timeout_ms,
                       pp_ttrpc_sync_result_t *out)
{
    return sync_call(sock, NULL, service, method, payload, len, timeout_ms, out);
}

int pp_ttrpc_sync_call_tcp(const struct sockaddr *addr, const char *service, const char *method,
                           const void *payload, size_t len, uint64_t timeout_ms,
                           pp_ttrpc_sync_result_t *out)
{
    return sync_call(NULL, addr, service, method, payload, len, timeout_ms, out);
}

void pp_ttrpc_sync_result_free(pp_ttrpc_sync_result_t *r)
{
    free(r->payload);
    r->payload = NULL;
    r->len = 0;
}
