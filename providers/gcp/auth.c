/* The access token for Google's APIs: a service-account key's JWT (RS256)
 * exchanged at the key's `token_uri` (RFC 7523), or the metadata server's
 * token for the VM's service account (GKE workload identity gives the
 * pod's). Cached and refreshed before expiry (providers/http/token.h);
 * never logged. */
#include "providers/gcp/gcp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "util/base64.h"
#include "util/buf.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/log.h"

#define COMP             "gcp"
#define JWT_LIFE_S       3600
#define METADATA_TIMEOUT 5000
#define TOKEN_PATH       "/computeMetadata/v1/instance/service-accounts/default/token"
#define GRANT_TYPE       "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"

static int b64url_json(json_t *j, pp_buf_t *out)
{
    char *s = json_dumps(j, JSON_COMPACT);
    if (s == NULL)
        return -ENOMEM;
    int r = pp_base64url_encode(s, strlen(s), out);
    free(s);
    return r;
}

int pp__gcp_jwt(const pp__gcp_key_t *key, const char *scope, time_t now, char **out,
                pp_error_t *err)
{
    *out = NULL;
    if (key->pkey == NULL)
        return pp_error_set(err, -EINVAL, "no key");
    json_t *hdr = json_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
    json_t *claims =
        json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", key->client_email, "scope", scope, "aud",
                  key->token_uri, "iat", (json_int_t)now, "exp", (json_int_t)(now + JWT_LIFE_S));
    if (hdr != NULL && key->key_id[0] != '\0')
        json_object_set_new(hdr, "kid", json_string(key->key_id));
    pp_buf_t b;
    pp_buf_init(&b, 0);
    int r = hdr && claims ? 0 : -ENOMEM;
    if (r == 0)
        r = b64url_json(hdr, &b);
    if (r == 0)
        r = pp_buf_append(&b, ".", 1);
    if (r == 0)
        r = b64url_json(claims, &b);
    json_decref(hdr);
    json_decref(claims);
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    if (r == 0) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key->pkey) != 1 ||
            EVP_DigestSign(md, sig, &siglen, b.data, b.len) != 1)
            r = -EPROTO;
        EVP_MD_CTX_free(md);
    }
    if (r == 0)
        r = pp_buf_append(&b, ".", 1);
    if (r == 0)
        r = pp_base64url_encode(sig, siglen, &b);
    if (r == 0)
        r = pp_buf_append_byte(&b, 0);
    if (r < 0) {
        pp_buf_free(&b);
        return pp_error_set(err, r, "signing the JWT: %s",
                            r == -EPROTO ? "the key does not sign" : uv_strerror(r));
    }
    size_t len;
    *out = (char *)pp_buf_steal(&b, &len);
    return 0;
}

/* --- the fetch ------------------------------------------------------------------------ */

static void fetched(int status, const pp_http_response_t *resp, const pp_error_t *herr, void *data)
{
    pp__gcp_state_t *st = data;
    const char *from = st->d.key.pkey ? "service-account key" : "metadata server";
    pp_error_t e = {0};
    if (status < 0) {
        e = *herr;
        if (status != -ECANCELED)
            e.status = PP_GRPC_UNAVAILABLE;
        pp_error_wrap(&e, "access token from the %s", from);
        pp_token_cache_done(&st->tok, status, 0, &e);
        return;
    }
    if (resp->status != 200) {
        char code[96], desc[256];
        pp__gcp_parse_oauth_error(resp->body, resp->body_len, code, sizeof(code), desc,
                                  sizeof(desc));
        pp__gcp_error_class_t cls;
        pp__gcp_error_classify(NULL, resp->status, &cls);
        /* The token endpoint refuses a key it does not know with 400
         * invalid_grant: that is a credentials problem, not a bad request. */
        if (strcmp(code, "invalid_grant") == 0 || strcmp(code, "unauthorized_client") == 0 ||
            strcmp(code, "invalid_client") == 0) {
            cls.err = -EACCES;
            cls.grpc = PP_GRPC_UNAUTHENTICATED;
        }
        pp_error_set_status(&e, cls.grpc, cls.err, "access token from the %s: HTTP %ld%s%s%s%s",
                            from, resp->status, code[0] ? ": " : "", code, desc[0] ? ": " : "",
                            desc);
        pp_token_cache_done(&st->tok, cls.err, 0, &e);
        return;
    }
    pp__gcp_token_t t;
    int r = pp__gcp_parse_token(resp->body, resp->body_len, &t);
    if (r < 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, r,
                            "access token from the %s: the answer is not a token", from);
        pp_token_cache_done(&st->tok, r, 0, &e);
        return;
    }
    pp__gcp_auth_clear(st);
    st->access_token = t.access_token;
    PP_DEBUG(COMP, "access token from the %s; valid for %ld s", from, t.expires_in);
    pp_token_cache_done(&st->tok, 0, time(NULL) + t.expires_in, NULL);
}

static int fetch(pp_token_cache_t *c, void *arg)
{
    pp__gcp_state_t *st = arg;
    (void)c;
    pp_http_request_t r = {0};
    char url[600];
    if (st->d.key.pkey == NULL) {
        static const char *const hdrs[] = {"Metadata-Flavor: Google", NULL};
        snprintf(url, sizeof(url), "%s%s", st->d.metadata, TOKEN_PATH);
        r.method = "GET";
        r.url = url;
        r.headers = hdrs;
        r.timeout_ms = METADATA_TIMEOUT;
        r.flags = PP_HTTP_NO_PROXY; /* the metadata server is the VM's own */
        return pp_http_send(st->http, &r, fetched, st, NULL);
    }
    char *jwt = NULL;
    pp_error_t e;
    int rc =
        pp__gcp_jwt(&st->d.key, st->d.ntags ? PP_GCP_SCOPE " " PP_GCP_SCOPE_TAGS : PP_GCP_SCOPE,
                    time(NULL), &jwt, &e);
    if (rc < 0) {
        PP_WARN(COMP, "access token: %s", e.message);
        return rc;
    }
    pp_buf_t body;
    pp_buf_init(&body, 0);
    rc = pp_buf_printf(&body, "grant_type=%s&assertion=%s", GRANT_TYPE, jwt);
    OPENSSL_cleanse(jwt, strlen(jwt));
    free(jwt);
    static const char *const hdrs[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    if (rc == 0) {
        r.method = "POST";
        r.url = st->d.key.token_uri;
        r.headers = hdrs;
        r.body = body.data;
        r.body_len = body.len;
        rc = pp_http_send(st->http, &r, fetched, st, NULL);
    }
    OPENSSL_cleanse(body.data, body.len);
    pp_buf_free(&body);
    return rc;
}

void pp__gcp_auth_prepare(pp__gcp_state_t *st)
{
    if (st->tok.fetch == NULL)
        pp_token_cache_init(&st->tok, fetch, st);
}

void pp__gcp_auth_clear(pp__gcp_state_t *st)
{
    if (st->access_token != NULL) {
        OPENSSL_cleanse(st->access_token, strlen(st->access_token));
        free(st->access_token);
        st->access_token = NULL;
    }
}
