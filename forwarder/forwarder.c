#include "forwarder.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agent_link.h"
#include "interceptor.h"
#include "ttrpc/ttrpc.h"
#include "util/cleanup.h"
#include "util/log.h"

#define COMPONENT "forwarder"

struct apf_forwarder_s {
    uv_loop_t *loop;
    char *listen;
    char *netns_path;
    char *agent_socket;
    pp_ttrpc_server_t *srv;
    pp_tls_ctx_t *tls;           /* NULL: plaintext */
    pp_tls_acceptor_t *acceptor; /* runs handshakes before ttrpc */
    apf_agent_t *agent;
    uv_timer_t grace;
    apf_forwarder_ready_cb ready_cb;
    void *ready_data;
    apf_forwarder_close_cb close_cb;
    void *close_data;
    size_t pending; /* server, agent link and timer still closing */
    unsigned closing : 1;
    unsigned agent_closing : 1;
};

/* One call on its way to the agent. */
typedef struct fwd_call_s {
    apf_forwarder_t *f;
    pp_ttrpc_call_t *call;
    apf_agent_req_t *areq;
} fwd_call_t;

static void maybe_finish(apf_forwarder_t *f);

/* ---- forwarding --------------------------------------------------------- */

static void on_result(pp_ttrpc_result_t *res, void *data)
{
    fwd_call_t *fc = data;
    pp_ttrpc_call_t *call = fc->call;
    free(fc);
    if (res->frame != NULL) {
        size_t len = res->frame_len;
        pp_ttrpc_call_reply_frame(call, PP_STEAL(res->frame), len);
        return;
    }
    /* Answered here, not by the agent: the connection dropped, the agent is
     * unreachable, or the deadline passed. */
    if (res->code != PP_GRPC_CANCELLED)
        PP_WARN(COMPONENT, "call failed: %s: %.*s", pp_grpc_code_name(res->code),
                (int)res->message.n, res->message.p);
    pp_ttrpc_call_fail(call, res->code, "%.*s", (int)res->message.n, res->message.p);
}

/* The caller is gone or its deadline passed. A call still waiting for the
 * agent connection is dropped; one already sent finishes with the agent's
 * answer or its own timeout. Answering from here is left to on_result. */
static void on_cancel(pp_ttrpc_call_t *call, void *data)
{
    fwd_call_t *fc = data;
    uint64_t deadline = pp_ttrpc_call_deadline(call);
    int code = deadline != 0 && uv_now(fc->f->loop) >= deadline ? PP_GRPC_DEADLINE_EXCEEDED
                                                                : PP_GRPC_CANCELLED;
    apf_agent_cancel(fc->areq, code);
}

/* Rewrites an intercepted request into a new frame. */
static int intercept_frame(apf_forwarder_t *f, pp_ttrpc_call_t *call, enum apf_intercept_kind kind,
                           uint8_t **frame, size_t *len, pp_error_t *err)
{
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    apf_intercept_stats_t st;
    pp_buf_t out;
    int r = apf_intercept(kind, req->payload, req->payload_len, f->netns_path, &out, &st);
    if (r < 0) {
        int status = r == -EMSGSIZE ? PP_GRPC_RESOURCE_EXHAUSTED
                     : r == -ENOMEM ? PP_GRPC_RESOURCE_EXHAUSTED
                                    : PP_GRPC_INVALID_ARGUMENT;
        return pp_error_set_status(err, status, r, "intercept `%.*s`: %s", (int)req->method.n,
                                   req->method.p,
                                   r == -EBADMSG ? "malformed request payload" : strerror(-r));
    }
    pp_ttrpc_request_t copy = *req;
    copy.payload = out.data;
    copy.payload_len = out.len;
    r = pp_ttrpc_request_frame(&copy, frame, len);
    pp_buf_free(&out);
    if (r < 0)
        return pp_error_set_status(err, PP_GRPC_RESOURCE_EXHAUSTED, r,
                                   "intercept `%.*s`: rewritten request: %s", (int)req->method.n,
                                   req->method.p, strerror(-r));
    if (kind == APF_INTERCEPT_CREATE_CONTAINER)
        PP_INFO(COMPONENT,
                "CreateContainer: network namespace `%s` (%u replaced, %u appended, %u created)",
                f->netns_path, st.replaced, st.appended, st.created);
    else
        PP_INFO(COMPONENT, "CreateSandbox: removed %u dns entries", st.dns_removed);
    return 0;
}

static void on_call(pp_ttrpc_call_t *call, void *data)
{
    apf_forwarder_t *f = data;
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    int64_t timeout_nano = req->timeout_nano;
    enum apf_intercept_kind kind =
        apf_intercept_lookup(req->service.p, req->service.n, req->method.p, req->method.n);
    uint8_t *frame;
    size_t len;
    pp_error_t err = {0};

    if (pp_log_enabled(PP_LOG_DEBUG))
        PP_DEBUG(COMPONENT, "call %.*s/%.*s (%zu bytes, timeout %lld ns)", (int)req->service.n,
                 req->service.p, (int)req->method.n, req->method.p, req->payload_len,
                 (long long)timeout_nano);
    if (kind == APF_INTERCEPT_NONE) {
        frame = pp_ttrpc_call_steal_frame(call, &len);
        if (frame == NULL) {
            pp_ttrpc_call_fail(call, PP_GRPC_INTERNAL, "request frame unavailable");
            return;
        }
    } else if (intercept_frame(f, call, kind, &frame, &len, &err) < 0) {
        PP_WARN(COMPONENT, "%s", err.message);
        pp_ttrpc_call_fail(call, pp_error_grpc_status(&err), "%s", err.message);
        return;
    }

    fwd_call_t *fc = calloc(1, sizeof(*fc));
    if (fc == NULL) {
        free(frame);
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    fc->f = f;
    fc->call = call;
    int r = apf_agent_forward(f->agent, frame, len, timeout_nano, on_result, fc, &fc->areq);
    if (r < 0) {
        free(fc);
        int code = r == -ENOBUFS || r == -ENOMEM ? PP_GRPC_RESOURCE_EXHAUSTED
                   : r == -EMSGSIZE              ? PP_GRPC_RESOURCE_EXHAUSTED
                                                 : PP_GRPC_UNAVAILABLE;
        PP_WARN(COMPONENT, "forward to kata agent: %s", strerror(-r));
        pp_ttrpc_call_fail(call, code, "forward to kata agent: %s", strerror(-r));
        return;
    }
    pp_ttrpc_call_on_cancel(call, on_cancel, fc);
}

/* ---- start -------------------------------------------------------------- */

int apf_forwarder_new(uv_loop_t *loop, const apf_config_t *cfg, apf_forwarder_t **out)
{
    /* Plaintext only when asked for (main.c says why before it gets here). */
    if (!cfg->disable_tls && !cfg->has_tls_material)
        return -EPERM;
    apf_forwarder_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    f->loop = loop;
    f->listen = strdup(cfg->listen);
    f->netns_path = strdup(cfg->netns_path);
    f->agent_socket = strdup(cfg->agent_socket);
    int r = f->listen && f->netns_path && f->agent_socket ? 0 : -ENOMEM;
    if (r == 0)
        r = pp_ttrpc_server_new(loop, &f->srv);
    if (r == 0)
        r = apf_agent_new(loop, cfg->agent_socket, cfg->agent_wait_ms, &f->agent);
    if (r < 0) {
        /* Nothing is running yet: the server owns no handle until it
         * listens, and the agent link is the last thing made. */
        if (f->srv != NULL)
            pp_ttrpc_server_close(f->srv, 0, NULL, NULL);
        free(f->listen);
        free(f->netns_path);
        free(f->agent_socket);
        free(f);
        return r;
    }
    pp_ttrpc_server_set_fallback(f->srv, on_call, f);
    if (!cfg->disable_tls) {
        pp_error_t err = {0};
        pp_tls_config_t tc = {
            .cert_pem = cfg->tls_server_cert,
            .key_pem = cfg->tls_server_key,
            .ca_pem = cfg->tls_client_ca,
            .min_version = cfg->tls_min_version,
            .cipher_suites = cfg->tls_cipher_suites,
            /* Without a client CA nobody could be verified: refuse to run
             * rather than serve every client. */
            .no_client_auth = 0,
        };
        r = pp_tls_ctx_new(PP_TLS_SERVER, &tc, &f->tls, &err);
        if (r == 0)
            r = pp_tls_acceptor_new(f->srv, f->tls, &f->acceptor, &err);
        if (r < 0) {
            PP_ERR(COMPONENT, "tls: %s", err.message);
            if (f->tls)
                pp_tls_ctx_free(f->tls);
            pp_ttrpc_server_close(f->srv, 0, NULL, NULL);
            apf_agent_close(f->agent, NULL, NULL);
            free(f->listen);
            free(f->netns_path);
            free(f->agent_socket);
            free(f);
            return r;
        }
    }
    uv_timer_init(loop, &f->grace);
    f->grace.data = f;
    *out = f;
    return 0;
}

static void fire_ready(apf_forwarder_t *f, int status, const pp_error_t *err)
{
    apf_forwarder_ready_cb cb = f->ready_cb;
    f->ready_cb = NULL;
    if (cb)
        cb(f, status, err, f->ready_data);
}

static void on_agent_ready(apf_agent_t *a, int status, void *data)
{
    apf_forwarder_t *f = data;
    pp_error_t err = {0};
    (void)a;
    if (status < 0 && status != -ECANCELED) {
        pp_error_set(&err, status, "kata agent socket `%s` did not accept connections in time",
                     f->agent_socket);
        fire_ready(f, status, &err);
        return;
    }
    if (status < 0 || f->closing) {
        pp_error_set(&err, -ECANCELED, "closed before serving");
        fire_ready(f, -ECANCELED, &err);
        return;
    }
    int r = pp_ttrpc_server_listen_tcp(f->srv, f->listen, &err);
    if (r < 0) {
        fire_ready(f, r, &err);
        return;
    }
    PP_INFO(COMPONENT, "serving the kata agent API on %s", f->listen);
    fire_ready(f, 0, NULL);
}

int apf_forwarder_start(apf_forwarder_t *f, apf_forwarder_ready_cb cb, void *data)
{
    if (f->closing)
        return -ESHUTDOWN;
    f->ready_cb = cb;
    f->ready_data = data;
    int r = apf_agent_wait(f->agent, on_agent_ready, f);
    if (r < 0)
        f->ready_cb = NULL;
    return r;
}

/* ---- close -------------------------------------------------------------- */

static void maybe_finish(apf_forwarder_t *f)
{
    if (!f->closing || f->pending > 0)
        return;
    if (f->tls != NULL)
        pp_tls_ctx_free(f->tls);
    if (f->close_cb)
        f->close_cb(f, f->close_data);
    free(f->listen);
    free(f->netns_path);
    free(f->agent_socket);
    free(f);
}

static void on_agent_closed(apf_agent_t *a, void *data)
{
    apf_forwarder_t *f = data;
    (void)a;
    f->agent = NULL;
    f->pending--;
    maybe_finish(f);
}

static void close_agent(apf_forwarder_t *f)
{
    if (f->agent_closing)
        return;
    f->agent_closing = 1;
    f->pending++;
    apf_agent_close(f->agent, on_agent_closed, f);
}

static void on_grace_closed(uv_handle_t *h)
{
    apf_forwarder_t *f = h->data;
    f->pending--;
    maybe_finish(f);
}

static void on_server_closed(pp_ttrpc_server_t *srv, void *data)
{
    apf_forwarder_t *f = data;
    (void)srv;
    f->srv = NULL;
    uv_close((uv_handle_t *)&f->grace, on_grace_closed);
    close_agent(f);
    f->pending--;
    maybe_finish(f);
}

static void on_grace(uv_timer_t *t)
{
    apf_forwarder_t *f = t->data;
    PP_WARN(COMPONENT, "calls still in flight at shutdown; cancelling them");
    close_agent(f);
}

void apf_forwarder_close(apf_forwarder_t *f, uint64_t grace_ms, apf_forwarder_close_cb cb,
                         void *data)
{
    if (f->closing) {
        if (grace_ms == 0)
            close_agent(f);
        return;
    }
    f->closing = 1;
    f->close_cb = cb;
    f->close_data = data;
    f->pending++; /* held until the end of this function */
    /* Closing the agent link first would fail calls that could still
     * finish; the server is closed first and the link after it. */
    if (grace_ms == 0)
        close_agent(f);
    else
        uv_timer_start(&f->grace, on_grace, grace_ms, 0);
    /* One for the server, one for the grace timer it closes. */
    f->pending += 2;
    /* Handshakes in progress belong to the acceptor: it goes first. */
    if (f->acceptor != NULL) {
        pp_tls_acceptor_free(f->acceptor);
        f->acceptor = NULL;
    }
    pp_ttrpc_server_close(f->srv, 1, on_server_closed, f);
    f->pending--;
    maybe_finish(f);
}
