/* Bearer-token calls (bearer.h). */
#include "providers/http/bearer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/grpc_codes.h"

typedef struct call_s {
    const pp_bearer_t *b;
    char method[8];
    char *url;
    char *body;
    char what[96];
    uint64_t attempt_timeout_ms;
    pp_bearer_cb cb;
    void *data;
    pp_token_waiter_t w;
    int auth_retried;
} call_t;

static void call_free(call_t *c)
{
    free(c->url);
    free(c->body);
    free(c);
}

static void done(call_t *c, int status, long http, const char *body, size_t len, const char *code,
                 const pp_error_t *err)
{
    pp_bearer_cb cb = c->cb;
    void *data = c->data;
    call_free(c);
    cb(status, http, body, len, code ? code : "", err, data);
}

static int add_token(pp_http_req_t *req, void *arg, pp_error_t *err)
{
    call_t *c = arg;
    const char *t = *c->b->token;
    if (t == NULL)
        return pp_error_set(err, -EACCES, "no access token");
    size_t n = strlen(t) + sizeof("Bearer ");
    char *v = malloc(n);
    if (v == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    snprintf(v, n, "Bearer %s", t);
    int r = pp_http_req_add_header(req, "Authorization", v);
    explicit_bzero(v, n);
    free(v);
    return r < 0 ? pp_error_set(err, r, "out of memory") : 0;
}

static int start(call_t *c);

static void on_answer(int status, const pp_http_response_t *resp, const pp_error_t *herr,
                      void *data)
{
    call_t *c = data;
    pp_error_t e = {0};
    if (status < 0) {
        e = *herr;
        if (status == -ETIMEDOUT)
            e.status = PP_GRPC_DEADLINE_EXCEEDED;
        else if (status != -ECANCELED)
            e.status = PP_GRPC_UNAVAILABLE;
        pp_error_wrap(&e, "%s", c->what);
        done(c, status, 0, NULL, 0, "", &e);
        return;
    }
    if (resp->status >= 200 && resp->status < 300) {
        done(c, 0, resp->status, resp->body, resp->body_len, "", NULL);
        return;
    }
    char code[96] = "", msg[384] = "";
    c->b->error_info(resp, code, sizeof(code), msg, sizeof(msg));
    /* A token revoked or expired early: a new one, and once more. */
    if (resp->status == 401 && !c->auth_retried) {
        c->auth_retried = 1;
        pp_token_cache_invalidate(c->b->tok);
        int r = start(c);
        if (r == 0)
            return;
        pp_error_set(&e, r, "%s: access token: %s", c->what, uv_strerror(r));
        done(c, r, resp->status, NULL, 0, code, &e);
        return;
    }
    pp_http_error_class_t cls;
    c->b->classify(code, resp->status, &cls);
    pp_error_set_status(&e, cls.grpc, cls.err, "%s: HTTP %ld%s%s%s%s", c->what, resp->status,
                        code[0] ? ": " : "", code, msg[0] ? ": " : "", msg);
    done(c, cls.err, resp->status, NULL, 0, code, &e);
}

static int send_call(call_t *c)
{
    static const char *const json_hdrs[] = {"Content-Type: application/json",
                                            "Accept: application/json", NULL};
    static const char *const accept_hdrs[] = {"Accept: application/json", NULL};
    pp_http_request_t r = {
        .method = c->method,
        .operation = c->what,
        .url = c->url,
        .headers = c->body ? json_hdrs : accept_hdrs,
        .body = c->body,
        .body_len = c->body ? strlen(c->body) : 0,
        .attempt_timeout_ms = c->attempt_timeout_ms,
        .sign = add_token,
        .sign_arg = c,
    };
    return pp_http_send(c->b->http, &r, on_answer, c, NULL);
}

static void token_ready(int status, const pp_error_t *err, void *data)
{
    call_t *c = data;
    if (status < 0) {
        pp_error_t e = *err;
        pp_error_wrap(&e, "%s", c->what);
        done(c, status, 0, NULL, 0, "", &e);
        return;
    }
    int r = send_call(c);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "%s: %s", c->what, uv_strerror(r));
        done(c, r, 0, NULL, 0, "", &e);
    }
}

/* The token, then the request. Fails synchronously without calling back. */
static int start(call_t *c)
{
    c->w.cb = token_ready;
    c->w.data = c;
    int r = pp_token_cache_ensure(c->b->tok, &c->w);
    if (r < 0)
        return r;
    if (r == 0)
        return 0;
    return send_call(c);
}

int pp_bearer_call(const pp_bearer_t *b, const pp_bearer_request_t *r, pp_bearer_cb cb, void *data)
{
    call_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->b = b;
    snprintf(c->method, sizeof(c->method), "%s", r->method);
    snprintf(c->what, sizeof(c->what), "%s", r->what);
    c->url = strdup(r->url);
    c->body = r->body ? strdup(r->body) : NULL;
    c->attempt_timeout_ms = r->attempt_timeout_ms;
    c->cb = cb;
    c->data = data;
    if (c->url == NULL || (r->body != NULL && c->body == NULL)) {
        call_free(c);
        return -ENOMEM;
    }
    int rc = start(c);
    if (rc < 0)
        call_free(c);
    return rc;
}
