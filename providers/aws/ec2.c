/* Calls to EC2 (signed), STS and IMDS over the provider's HTTP client, and
 * the translation of their answers into status, message and gRPC code. */
#include "providers/aws/aws.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/aws/sigv4.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/log.h"

#define IMDS_TIMEOUT_MS   5000
#define IMDS_TOKEN_TTL_S  "21600"
#define CONTENT_TYPE_FORM "Content-Type: application/x-www-form-urlencoded; charset=utf-8"

enum call_kind { CALL_EC2, CALL_STS, CALL_IMDS };

struct pp__aws_call_s {
    pp__aws_state_t *st;
    enum call_kind kind;
    char action[256]; /* the action, or the IMDS path */
    pp__aws_query_t q;
    char path[256];
    char token[256];
    pp__aws_call_cb cb;
    void *data;
    pp_token_waiter_t w;
    int auth_retried;
};

static void call_free(pp__aws_call_t *c)
{
    pp__aws_query_free(&c->q);
    free(c);
}

static const char *service_name(enum call_kind k)
{
    static const char *const names[] = {"ec2", "sts", "imds"};
    return names[k];
}

static void done(pp__aws_call_t *c, int status, const char *body, size_t len, const char *code,
                 const pp_error_t *err)
{
    pp__aws_call_cb cb = c->cb;
    void *data = c->data;
    call_free(c);
    cb(status, body, len, code ? code : "", err, data);
}

static int sign_ec2(pp_http_req_t *req, void *arg, pp_error_t *err)
{
    pp__aws_call_t *c = arg;
    pp__aws_state_t *st = c->st;
    const pp__aws_creds_t *cr = &st->creds;
    if (cr->access_key == NULL || cr->secret_key == NULL)
        return pp_error_set(err, -EACCES, "no credentials");
    pp_sigv4_header_t hdrs[] = {
        {"host", st->cfg.ec2.host},
        {"content-type", "application/x-www-form-urlencoded; charset=utf-8"},
    };
    pp_sigv4_input_t in = {
        .method = "POST",
        .path = st->cfg.ec2.path,
        .headers = hdrs,
        .nheaders = PP_ARRAY_SIZE(hdrs),
        .body = c->q.buf.data,
        .body_len = c->q.buf.len,
        .region = st->cfg.region,
        .service = "ec2",
        .when = time(NULL),
        .access_key = cr->access_key,
        .secret_key = cr->secret_key,
        .session_token = cr->session_token,
    };
    pp_sigv4_output_t out;
    int r = pp_sigv4_sign(&in, &out, err);
    if (r < 0)
        return r;
    r = pp_http_req_add_header(req, "X-Amz-Date", out.amz_date);
    if (r == 0 && cr->session_token != NULL && cr->session_token[0] != '\0')
        r = pp_http_req_add_header(req, "X-Amz-Security-Token", cr->session_token);
    if (r == 0)
        r = pp_http_req_add_header(req, "Authorization", out.authorization);
    pp_sigv4_output_free(&out);
    return r < 0 ? pp_error_set(err, r, "out of memory") : 0;
}

static int send_call(pp__aws_call_t *c);

static void send_or_fail(pp__aws_call_t *c)
{
    int r = send_call(c);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "%s `%s`: %s", service_name(c->kind), c->action, uv_strerror(r));
        done(c, r, NULL, 0, "", &e);
    }
}

static void creds_ready(int status, const pp_error_t *err, void *data)
{
    pp__aws_call_t *c = data;
    if (status < 0) {
        pp_error_t e = *err;
        pp_error_wrap(&e, "%s `%s`: credentials", service_name(c->kind), c->action);
        done(c, status, NULL, 0, "", &e);
        return;
    }
    send_or_fail(c);
}

/* Starts (or restarts) the call: credentials first for EC2. Fails
 * synchronously without calling back. */
static int start(pp__aws_call_t *c)
{
    if (c->kind == CALL_EC2) {
        c->w.cb = creds_ready;
        c->w.data = c;
        int r = pp__aws_creds_ensure(c->st, &c->w);
        if (r < 0)
            return r;
        if (r == 0)
            return 0; /* creds_ready goes on */
    }
    return send_call(c);
}

/* Turns a failed answer into an error with the AWS code in it. */
static void on_answer(int status, const pp_http_response_t *resp, const pp_error_t *herr,
                      void *data)
{
    pp__aws_call_t *c = data;
    const char *svc = service_name(c->kind);
    pp_error_t e = {0};
    if (status < 0) {
        e = *herr;
        if (status == -ETIMEDOUT)
            e.status = PP_GRPC_DEADLINE_EXCEEDED;
        else if (status != -ECANCELED)
            e.status = PP_GRPC_UNAVAILABLE;
        pp_error_wrap(&e, "%s `%s`", svc, c->action);
        done(c, status, NULL, 0, "", &e);
        return;
    }
    if (resp->status >= 200 && resp->status < 300) {
        done(c, 0, resp->body, resp->body_len, "", NULL);
        return;
    }
    pp__aws_error_info_t ei;
    memset(&ei, 0, sizeof(ei));
    if (c->kind != CALL_IMDS)
        pp__aws_parse_error(resp->body, resp->body_len, &ei);
    pp__aws_error_class_t cls;
    pp__aws_error_classify(ei.code[0] ? ei.code : NULL, resp->status, &cls);
    /* Credentials that expired early: fetch new ones and go again, once. */
    if (c->kind == CALL_EC2 && !c->auth_retried && c->st->creds.mode != PP_AWS_CREDS_STATIC &&
        (strcmp(ei.code, "ExpiredToken") == 0 || strcmp(ei.code, "RequestExpired") == 0)) {
        c->auth_retried = 1;
        pp__aws_creds_invalidate(c->st);
        int r = start(c);
        if (r == 0)
            return;
        pp_error_set(&e, r, "%s `%s`: credentials: %s", svc, c->action, uv_strerror(r));
        done(c, r, NULL, 0, ei.code, &e);
        return;
    }
    if (ei.code[0] != '\0')
        pp_error_set_status(&e, cls.grpc, cls.err, "%s `%s`: %s: %s%s%s%s", svc, c->action, ei.code,
                            ei.message, ei.request_id[0] ? " (request `" : "", ei.request_id,
                            ei.request_id[0] ? "`)" : "");
    else
        pp_error_set_status(&e, cls.grpc, cls.err, "%s `%s`: HTTP %ld", svc, c->action,
                            resp->status);
    done(c, cls.err, NULL, 0, ei.code, &e);
}

static int send_call(pp__aws_call_t *c)
{
    pp__aws_state_t *st = c->st;
    char host[320], url[1024], ttl[64], tok[300];
    const char *hdrs[4] = {NULL};
    pp_http_request_t r = {.method = "POST"};
    switch (c->kind) {
    case CALL_EC2:
    case CALL_STS: {
        const pp__aws_endpoint_t *ep = c->kind == CALL_EC2 ? &st->cfg.ec2 : &st->cfg.sts;
        snprintf(host, sizeof(host), "Host: %s", ep->host);
        hdrs[0] = CONTENT_TYPE_FORM;
        hdrs[1] = host;
        r.url = ep->url;
        r.body = c->q.buf.data;
        r.body_len = c->q.buf.len;
        if (c->kind == CALL_EC2) {
            r.sign = sign_ec2;
            r.sign_arg = c;
        }
        break;
    }
    case CALL_IMDS: {
        const pp__aws_endpoint_t *ep = &st->cfg.imds;
        size_t bl = strlen(ep->url);
        snprintf(url, sizeof(url), "%.*s%s", (int)(bl > 0 && ep->url[bl - 1] == '/' ? bl - 1 : bl),
                 ep->url, c->path);
        r.url = url;
        r.timeout_ms = IMDS_TIMEOUT_MS;
        r.flags = PP_HTTP_NO_PROXY; /* as the SDKs do: the metadata service is local */
        if (c->token[0] == '\0') {
            r.method = "PUT";
            snprintf(ttl, sizeof(ttl), "X-aws-ec2-metadata-token-ttl-seconds: %s",
                     IMDS_TOKEN_TTL_S);
            hdrs[0] = ttl;
        } else {
            r.method = "GET";
            snprintf(tok, sizeof(tok), "X-aws-ec2-metadata-token: %s", c->token);
            hdrs[0] = tok;
        }
        break;
    }
    }
    r.headers = hdrs;
    r.operation = c->kind == CALL_IMDS ? "IMDS" : c->action;
    return pp_http_send(st->http, &r, on_answer, c, NULL);
}

static int new_call(pp__aws_state_t *st, enum call_kind kind, const char *action,
                    pp__aws_query_t *q, pp__aws_call_cb cb, void *data, pp__aws_call_t **out)
{
    int r = q != NULL ? pp__aws_query_finish(q) : 0;
    if (r < 0) {
        pp__aws_query_free(q);
        return r;
    }
    pp__aws_call_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        if (q != NULL)
            pp__aws_query_free(q);
        return -ENOMEM;
    }
    c->st = st;
    c->kind = kind;
    snprintf(c->action, sizeof(c->action), "%s", action);
    if (q != NULL) {
        c->q = *q;
        memset(q, 0, sizeof(*q));
    } else {
        pp_buf_init(&c->q.buf, 0);
    }
    c->cb = cb;
    c->data = data;
    *out = c;
    return 0;
}

int pp__aws_ec2_call(pp__aws_state_t *st, pp__aws_query_t *q, const char *action,
                     pp__aws_call_cb cb, void *data)
{
    pp__aws_call_t *c;
    int r = new_call(st, CALL_EC2, action, q, cb, data, &c);
    if (r < 0)
        return r;
    r = start(c);
    if (r < 0)
        call_free(c);
    return r;
}

int pp__aws_sts_call(pp__aws_state_t *st, pp__aws_query_t *q, const char *action,
                     pp__aws_call_cb cb, void *data)
{
    pp__aws_call_t *c;
    int r = new_call(st, CALL_STS, action, q, cb, data, &c);
    if (r == 0 && (r = send_call(c)) < 0)
        call_free(c);
    return r;
}

int pp__aws_imds_call(pp__aws_state_t *st, const char *path, const char *token, pp__aws_call_cb cb,
                      void *data)
{
    pp__aws_call_t *c;
    if (path == NULL || strlen(path) >= sizeof(c->path) ||
        (token != NULL && strlen(token) >= sizeof(c->token)))
        return -EINVAL;
    int r = new_call(st, CALL_IMDS, path, NULL, cb, data, &c);
    if (r < 0)
        return r;
    snprintf(c->path, sizeof(c->path), "%s", path);
    snprintf(c->token, sizeof(c->token), "%s", token ? token : "");
    if ((r = send_call(c)) < 0)
        call_free(c);
    return r;
}
