/* The bearer token for Resource Manager, in the Azure SDKs' order: a
 * client secret; workload identity (the federated token file, read again
 * at every refresh, since AKS rotates it); the managed identity through the
 * instance metadata service. The timing is providers/http/token.h's cache:
 * renewed five minutes before it expires (halfway for shorter lifetimes),
 * one fetch at a time, with every caller that needs it waiting on it.
 * Never logged. */
#include "providers/azure/azure.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "util/buf.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/log.h"

#define COMP           "azure"
#define ASSERTION_MAX  16384
#define ASSERTION_TYPE "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

static void drop_token(pp__azure_creds_t *c)
{
    if (c->token != NULL) {
        explicit_bzero(c->token, strlen(c->token));
        free(c->token);
        c->token = NULL;
    }
}

void pp__azure_creds_clear(pp__azure_creds_t *c)
{
    drop_token(c);
    c->expires = 0;
    pp_token_cache_invalidate(&c->cache);
}

void pp__azure_creds_invalidate(pp__azure_state_t *st)
{
    pp_token_cache_invalidate(&st->creds.cache);
}

/* Wakes every waiter with the fetch's result. */
static void finish(pp__azure_state_t *st, int status, const pp_error_t *err)
{
    pp_token_cache_done(&st->creds.cache, status, status == 0 ? st->creds.expires : 0, err);
}

static const char *source(const pp__azure_state_t *st)
{
    static const char *const names[] = {"client secret", "workload identity", "managed identity"};
    return names[st->d.cred_mode];
}

static void on_token(int status, const pp_http_response_t *resp, const pp_error_t *herr, void *data)
{
    pp__azure_state_t *st = data;
    pp_error_t e = {0};
    if (status < 0) {
        e = *herr;
        e.status = PP_GRPC_UNAVAILABLE;
        pp_error_wrap(&e, "azure credentials (%s)", source(st));
        finish(st, status, &e);
        return;
    }
    if (resp->status != 200) {
        pp__azure_error_info_t ei;
        pp__azure_parse_error(resp->body, resp->body_len, &ei);
        pp_http_error_class_t cls;
        pp__azure_error_classify(ei.code[0] ? ei.code : NULL, resp->status, &cls);
        /* Azure AD's refusals say who was refused; they hold no secret. */
        pp_error_set_status(&e, cls.grpc, cls.err, "azure credentials (%s): HTTP %ld%s%s%s%s",
                            source(st), resp->status, ei.code[0] ? ": " : "", ei.code,
                            ei.message[0] ? ": " : "", ei.message);
        finish(st, cls.err, &e);
        return;
    }
    pp__azure_token_t t;
    int r = pp__azure_parse_token(resp->body, resp->body_len, &t);
    if (r < 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, r,
                            "azure credentials (%s): the token answer cannot be read", source(st));
        finish(st, r, &e);
        return;
    }
    pp__azure_creds_t *c = &st->creds;
    drop_token(c);
    c->token = t.access_token;
    t.access_token = NULL;
    c->expires = time(NULL) + (time_t)t.expires_in;
    PP_DEBUG(COMP, "token from the %s, valid %lld s", source(st), (long long)t.expires_in);
    finish(st, 0, NULL);
}

/* Appends "&key=value" (value percent-encoded) to `b`. */
static int form_add(pp_buf_t *b, const char *key, const char *value)
{
    char *enc = curl_easy_escape(NULL, value, 0);
    if (enc == NULL)
        return -ENOMEM;
    int r = pp_buf_append(b, b->len ? "&" : "", b->len ? 1 : 0);
    if (r == 0)
        r = pp_buf_append(b, key, strlen(key));
    if (r == 0)
        r = pp_buf_append(b, "=", 1);
    if (r == 0)
        r = pp_buf_append(b, enc, strlen(enc));
    explicit_bzero(enc, strlen(enc));
    curl_free(enc);
    return r;
}

/* Sends the token request: with the client secret, with `assertion`
 * (workload identity), or to IMDS. */
static int start_refresh(pp__azure_state_t *st, const char *assertion, pp_error_t *err)
{
    const pp__azure_config_t *c = &st->cfg;
    char url[1024];
    pp_http_request_t r = {0};
    const char *form_hdrs[] = {"Content-Type: application/x-www-form-urlencoded",
                               "Accept: application/json", NULL};
    const char *imds_hdrs[] = {"Metadata: true", "Accept: application/json", NULL};
    pp_buf_t body;
    pp_buf_init_secret(&body, 0);
    int rc = 0;
    if (st->d.cred_mode == PP_AZURE_CREDS_MANAGED) {
        char *res = curl_easy_escape(NULL, PP_AZURE_RESOURCE, 0);
        char *cid = c->client_id[0] ? curl_easy_escape(NULL, c->client_id, 0) : NULL;
        if (res == NULL || (c->client_id[0] && cid == NULL)) {
            curl_free(res);
            curl_free(cid);
            return pp_error_set(err, -ENOMEM, "out of memory");
        }
        snprintf(url, sizeof(url),
                 "%s/metadata/identity/oauth2/token?api-version=" PP_AZURE_IMDS_API
                 "&resource=%s%s%s",
                 st->d.imds, res, cid ? "&client_id=" : "", cid ? cid : "");
        curl_free(res);
        curl_free(cid);
        r.method = "GET";
        r.operation = "IMDS";
        r.headers = imds_hdrs;
        r.flags = PP_HTTP_NO_PROXY;
    } else {
        snprintf(url, sizeof(url), "%s/%s/oauth2/v2.0/token", st->d.authority, c->tenant_id);
        rc = form_add(&body, "grant_type", "client_credentials");
        if (rc == 0)
            rc = form_add(&body, "client_id", c->client_id);
        if (rc == 0)
            rc = form_add(&body, "scope", PP_AZURE_SCOPE);
        if (rc == 0 && st->d.cred_mode == PP_AZURE_CREDS_SECRET) {
            rc = form_add(&body, "client_secret", c->client_secret);
        } else if (rc == 0) {
            rc = form_add(&body, "client_assertion_type", ASSERTION_TYPE);
            if (rc == 0)
                rc = form_add(&body, "client_assertion", assertion);
        }
        r.method = "POST";
        r.operation = "Token";
        r.headers = form_hdrs;
        r.body = body.data;
        r.body_len = body.len;
    }
    r.url = url;
    if (rc == 0)
        rc = pp_http_send(st->http, &r, on_token, st, NULL);
    pp_buf_free(&body);
    if (rc < 0)
        return pp_error_set(err, rc, "azure credentials (%s): %s", source(st), uv_strerror(rc));
    return 0;
}

/* Workload identity: the projected token, read afresh for each fetch,
 * since the kubelet rotates it. */
static void on_assertion(int status, char *assertion, void *data)
{
    pp__azure_state_t *st = data;
    pp_error_t e = {0};
    if (status < 0) {
        /* -EACCES whatever the cause: a call that fails for its
         * credentials must not read as a resource that is gone. */
        pp_error_set_status(&e, PP_GRPC_UNAUTHENTICATED, -EACCES,
                            "azure credentials (%s): `AZURE_FEDERATED_TOKEN_FILE` `%s`: %s",
                            source(st), st->cfg.federated_token_file, uv_strerror(status));
        finish(st, -EACCES, &e);
        return;
    }
    int r = start_refresh(st, assertion, &e);
    explicit_bzero(assertion, strlen(assertion));
    free(assertion);
    if (r < 0)
        finish(st, r, &e);
}

static int creds_fetch(pp_token_cache_t *cache, void *arg)
{
    pp__azure_state_t *st = arg;
    (void)cache;
    if (st->d.cred_mode == PP_AZURE_CREDS_WORKLOAD)
        return pp_token_file_read(st->p->loop, st->cfg.federated_token_file, ASSERTION_MAX,
                                  on_assertion, st);
    pp_error_t e = {0};
    return start_refresh(st, NULL, &e);
}

int pp__azure_creds_ensure(pp__azure_state_t *st, pp_token_waiter_t *w)
{
    pp__azure_creds_t *c = &st->creds;
    if (c->cache.fetch == NULL)
        pp_token_cache_init(&c->cache, creds_fetch, st);
    return pp_token_cache_ensure(&c->cache, w);
}
