/* IAM access tokens (https://iam.cloud.ibm.com/identity/token): the API key
 * grant, or the trusted profile grant with the compute resource token, read
 * from its file at every exchange (the kubelet rotates the projected token).
 * Cached and refreshed before expiry (providers/http/token.h); never logged;
 * and the authorised calls that use them (providers/http/bearer.h). */
#include "providers/ibmcloud/ibmcloud.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "util/buf.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/grpc_codes.h"
#include "util/log.h"

#define COMP         "ibmcloud"
#define CR_TOKEN_MAX 16384

static void wipe_free(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* form-urlencoded `k=v`, appended. */
static int form_add(pp_buf_t *b, const char *k, const char *v)
{
    char *enc = curl_easy_escape(NULL, v, 0);
    if (enc == NULL)
        return -ENOMEM;
    int r = pp_buf_printf(b, "%s%s=%s", b->len ? "&" : "", k, enc);
    OPENSSL_cleanse(enc, strlen(enc));
    curl_free(enc);
    return r;
}

static int read_cr_token(const char *path, char **out, pp_error_t *err)
{
    *out = NULL;
    char *buf = NULL;
    size_t n = 0;
    /* CR_TOKEN_MAX bytes or more: not a token. */
    int r = pp_file_read(path, CR_TOKEN_MAX - 1, PP_FILE_SECRET, &buf, &n, NULL);
    if (r == -EFBIG)
        return pp_error_set(err, -EINVAL, "compute resource token `%s`: not a token", path);
    if (r < 0)
        return pp_error_set(err, r, "compute resource token `%s`: %s", path, strerror(-r));
    size_t size = n;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (n == 0 || strlen(buf) != n) {
        explicit_bzero(buf, size);
        wipe_free(buf);
        return pp_error_set(err, -EINVAL, "compute resource token `%s`: %s", path,
                            n == 0 ? "empty" : "not a token");
    }
    *out = buf;
    return 0;
}

int pp__ibm_token_form(const pp__ibm_config_t *c, char **out, pp_error_t *err)
{
    *out = NULL;
    pp_buf_t b;
    pp_buf_init(&b, 0);
    int r;
    if (c->api_key[0] != '\0') {
        r = form_add(&b, "grant_type", PP_IBM_GRANT_APIKEY);
        if (r == 0)
            r = form_add(&b, "apikey", c->api_key);
    } else {
        char *cr = NULL;
        if ((r = read_cr_token(c->cr_token_file, &cr, err)) < 0) {
            pp_buf_free(&b);
            return r;
        }
        r = form_add(&b, "grant_type", PP_IBM_GRANT_CR_TOKEN);
        if (r == 0)
            r = form_add(&b, "cr_token", cr);
        if (r == 0)
            r = form_add(&b, "profile_id", c->iam_profile_id);
        wipe_free(cr);
    }
    if (r == 0)
        r = pp_buf_append_byte(&b, 0);
    if (r < 0) {
        OPENSSL_cleanse(b.data, b.len);
        pp_buf_free(&b);
        return pp_error_set(err, r, "out of memory");
    }
    size_t len;
    *out = (char *)pp_buf_steal(&b, &len);
    return 0;
}

static void fetched(int status, const pp_http_response_t *resp, const pp_error_t *herr, void *data)
{
    pp__ibm_state_t *st = data;
    pp_error_t e = {0};
    if (status < 0) {
        e = *herr;
        if (status != -ECANCELED)
            e.status = PP_GRPC_UNAVAILABLE;
        pp_error_wrap(&e, "IAM access token");
        pp_token_cache_done(&st->tok, status, 0, &e);
        return;
    }
    if (resp->status != 200) {
        char code[64], msg[256];
        pp__ibm_parse_iam_error(resp->body, resp->body_len, code, sizeof(code), msg, sizeof(msg));
        pp_http_error_class_t cls;
        pp_http_status_class(resp->status, &cls);
        /* IAM refuses a key or profile it does not take with 400: that is a
         * credentials problem, not a bad request. */
        if (resp->status == 400) {
            cls.err = -EACCES;
            cls.grpc = PP_GRPC_UNAUTHENTICATED;
        }
        pp_error_set_status(&e, cls.grpc, cls.err, "IAM access token: HTTP %ld%s%s%s%s",
                            resp->status, code[0] ? ": " : "", code, msg[0] ? ": " : "", msg);
        pp_token_cache_done(&st->tok, cls.err, 0, &e);
        return;
    }
    pp__ibm_token_t t;
    int r = pp__ibm_parse_token(resp->body, resp->body_len, &t);
    if (r < 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, r,
                            "IAM access token: the answer is not a "
                            "token");
        pp_token_cache_done(&st->tok, r, 0, &e);
        return;
    }
    pp__ibm_auth_clear(st);
    st->access_token = t.access_token;
    PP_DEBUG(COMP, "IAM access token from %s; valid for %ld s",
             st->cfg.api_key[0] ? "the API key" : "the trusted profile", t.expires_in);
    pp_token_cache_done(&st->tok, 0, time(NULL) + t.expires_in, NULL);
}

static int fetch(pp_token_cache_t *c, void *arg)
{
    pp__ibm_state_t *st = arg;
    (void)c;
    char *form = NULL;
    pp_error_t e;
    int r = pp__ibm_token_form(&st->cfg, &form, &e);
    if (r < 0) {
        PP_WARN(COMP, "IAM access token: %s", e.message);
        return r;
    }
    static const char *const hdrs[] = {"Content-Type: application/x-www-form-urlencoded",
                                       "Accept: application/json", NULL};
    pp_http_request_t req = {.method = "POST",
                             .operation = "iam `token`",
                             .url = st->d.iam,
                             .headers = hdrs,
                             .body = form,
                             .body_len = strlen(form)};
    r = pp_http_send(st->http, &req, fetched, st, NULL);
    wipe_free(form);
    return r;
}

void pp__ibm_auth_clear(pp__ibm_state_t *st)
{
    wipe_free(st->access_token);
    st->access_token = NULL;
}

/* --- authorised calls -------------------------------------------------------------- */

static void error_info(const pp_http_response_t *resp, char *code, size_t codelen, char *msg,
                       size_t msglen)
{
    pp__ibm_error_info_t ei;
    pp__ibm_parse_error(resp->body, resp->body_len, &ei);
    snprintf(code, codelen, "%s", ei.code);
    snprintf(msg, msglen, "%s", ei.message);
}

int pp__ibm_call(pp__ibm_state_t *st, const char *method, const char *url, const char *body,
                 const char *what, pp__ibm_call_cb cb, void *data)
{
    if (st->tok.fetch == NULL)
        pp_token_cache_init(&st->tok, fetch, st);
    static const pp_bearer_t proto = {.error_info = error_info, .classify = pp__ibm_error_classify};
    if (st->bearer.http == NULL) {
        st->bearer = proto;
        st->bearer.http = st->http;
        st->bearer.tok = &st->tok;
        st->bearer.token = &st->access_token;
    }
    pp_bearer_request_t r = {.method = method, .url = url, .body = body, .what = what};
    return pp_bearer_call(&st->bearer, &r, cb, data);
}

int pp__ibm_vpc_url(const pp__ibm_state_t *st, const char *path, const char *query, char *out,
                    size_t outlen)
{
    int n = snprintf(out, outlen, "%s%s?version=%s&generation=2%s%s", st->d.vpc, path,
                     PP_IBM_VPC_VERSION, query ? "&" : "", query ? query : "");
    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}
