#include "forwarder.h"
#include "tls/tls.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "interceptor.h"
#include "ttrpc/link.h"
#include "ttrpc/ttrpc.h"
#include "util/cleanup.h"
#include "util/log.h"

#define COMPONENT "forwarder"

struct apf_forwarder_s {
    uv_loop_t *loop;
    char *listen;
    char *netns_path;
    char *agent_socket;
    uint64_t agent_wait_ms;
    pp_ttrpc_server_t *srv;
    pp_tls_ctx_t *tls;           /* NULL: plaintext */
    pp_tls_acceptor_t *acceptor; /* runs handshakes before ttrpc */
    pp_ttrpc_link_t *agent;      /* to the kata agent */
    uv_timer_t grace;
    apf_forwarder_ready_cb ready_cb;
    void *ready_data;
    apf_forwarder_close_cb close_cb;
    void *close_data;
    size_t pending; /* server, agent link and timer still closing */
    unsigned closing : 1;
    unsigned agent_closing : 1;
};

static void maybe_finish(apf_forwarder_t *f);

/* ---- forwarding --------------------------------------------------------- */

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
    } else if (intercept_frame(f, call, kind, &frame, &len, &err) < 0) {
        PP_WARN(COMPONENT, "%s", err.message);
        pp_ttrpc_call_fail(call, pp_error_grpc_status(&err), "%s", err.message);
        return;
    }

    pp_ttrpc_link_forward(f->agent, call, frame, len);
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
    f->agent_wait_ms = cfg->agent_wait_ms;
    int r = f->listen && f->netns_path && f->agent_socket ? 0 : -ENOMEM;
    if (r == 0)
        r = pp_ttrpc_server_new(loop, &f->srv);
    if (r == 0) {
        char name[PATH_MAX + 32];
        snprintf(name, sizeof(name), "kata agent at `%s`", cfg->agent_socket);
        /* The agent starts after the forwarder and may restart: every dial,
         * also one a call starts, keeps trying for the whole wait window. */
        pp_ttrpc_link_opts_t o = {
            .name = name,
            .component = "agent",
            .backoff_min_ms = APF_AGENT_BACKOFF_MIN_MS,
            .backoff_max_ms = APF_AGENT_BACKOFF_MAX_MS,
            .redial_window_ms = cfg->agent_wait_ms,
            .max_queued = APF_AGENT_MAX_QUEUED,
        };
        r = pp_ttrpc_link_new_unix(loop, &o, cfg->agent_socket, &f->agent);
    }
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
            pp_ttrpc_link_close(f->agent, NULL, NULL);
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

static void on_agent_ready(pp_ttrpc_link_t *l, int status, const pp_error_t *lerr, void *data)
{
    apf_forwarder_t *f = data;
    pp_error_t err = {0};
    (void)l;
    if (status < 0 && status != -ECANCELED) {
        pp_error_set(&err, status, "kata agent socket `%s` did not accept connections in time: %s",
                     f->agent_socket, lerr->message);
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
    PP_INFO(COMPONENT, "waiting up to %llu ms for kata agent at `%s`",
            (unsigned long long)f->agent_wait_ms, f->agent_socket);
    uv_update_time(f->loop);
    int r =
        pp_ttrpc_link_wait(f->agent, uv_now(f->loop) + f->agent_wait_ms, NULL, on_agent_ready, f);
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

static void on_agent_closed(pp_ttrpc_link_t *l, void *data)
{
    apf_forwarder_t *f = data;
    (void)l;
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
    pp_ttrpc_link_close(f->agent, on_agent_closed, f);
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
