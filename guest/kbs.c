#include "kbs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "providers/http/http.h"
#include "util/base64.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/log.h"

#define LOG "kbs"

struct guest_kbs_s {
    uv_loop_t *loop;
    pp_http_t *http;
    char *url;
    char *tee;
    char *initdata;
    guest_key_alg_t key_alg;
    guest_kbs_evidence_fn evidence;
    void *evidence_ctx;
    uint64_t timeout_ms;
    size_t pending; /* attestations and resource requests in flight */
    int freeing;
};

typedef struct rcar_s {
    guest_kbs_t *k;
    guest_kbs_token_cb cb;
    void *data;
    guest_teekey_t *key;
    json_t *jwk;
    char *nonce;
    char cookie[256];
    const char *step;
} rcar_t;

typedef struct res_req_s {
    guest_kbs_t *k;
    guest_teekey_t *key; /* borrowed from the caller until the callback */
    guest_kbs_resource_cb cb;
    void *data;
} res_req_t;

uint64_t guest_kbs_round_trips(const guest_kbs_t *k)
{
    pp_http_stats_t s;
    pp_http_get_stats(k->http, &s);
    return s.attempts;
}

int guest_kbs_new(uv_loop_t *loop, const guest_kbs_opts_t *o, guest_kbs_t **out, pp_error_t *err)
{
    guest_kbs_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    k->loop = loop;
    k->url = strdup(o->url);
    k->tee = strdup(o->tee ? o->tee : "");
    k->initdata = o->initdata ? strdup(o->initdata) : NULL;
    k->key_alg = o->key_alg;
    k->evidence = o->evidence;
    k->evidence_ctx = o->evidence_ctx;
    k->timeout_ms = o->timeout_ms ? o->timeout_ms : 30000;
    if (k->url == NULL || k->tee == NULL || (o->initdata && k->initdata == NULL)) {
        guest_kbs_free(k);
        return pp_error_set(err, -ENOMEM, "out of memory");
    }
    pp_http_config_t hc = {
        .name = "kbs",
        .ca_pem = o->ca_pem,
        .max_attempts = o->max_attempts ? o->max_attempts : 3,
        .backoff_base_ms = 200,
        .backoff_max_ms = 2000,
        .timeout_ms = k->timeout_ms,
        .attempt_timeout_ms = k->timeout_ms,
        .max_response = GUEST_KBS_MAX_ANSWER,
        .user_agent = "guest-components",
    };
    int r = pp_http_new(loop, &hc, &k->http, err);
    if (r < 0) {
        k->http = NULL;
        guest_kbs_free(k);
        return r;
    }
    *out = k;
    return 0;
}

static void maybe_free(guest_kbs_t *k)
{
    if (!k->freeing || k->pending > 0)
        return;
    free(k->url);
    free(k->tee);
    if (k->initdata != NULL) {
        explicit_bzero(k->initdata, strlen(k->initdata));
        free(k->initdata);
    }
    free(k);
}

void guest_kbs_free(guest_kbs_t *k)
{
    if (k == NULL)
        return;
    k->freeing = 1;
    if (k->http != NULL)
        pp_http_free(k->http); /* callbacks fire with -ECANCELED, later */
    k->http = NULL;
    maybe_free(k);
}

/* ---- answers ---------------------------------------------------------------- */

/* The KBS's words for a refusal: ErrorInformation's `detail`, printable and
 * short. */
static void kbs_detail(const pp_http_response_t *resp, char *out, size_t size)
{
    out[0] = 0;
    json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *d = json_string_value(json_object_get(j, "detail"));
    const char *src = d ? d : resp->body;
    size_t n = d ? strlen(d) : resp->body_len, o = 0;
    for (size_t i = 0; i < n && o + 4 < size; i++) {
        unsigned char c = (unsigned char)src[i];
        out[o++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (o + 4 >= size && o > 0)
        memcpy(out + o, "...", 4), o += 3;
    out[o] = 0;
    json_decref(j);
}

/* Turns a non-200 answer or a transport failure into our error. */
static int http_fail(int status, const pp_http_response_t *resp, const pp_error_t *herr,
                     const char *step, pp_error_t *err)
{
    if (status < 0)
        return pp_error_set_status(err, PP_GRPC_UNAVAILABLE, status, "%s: %s", step,
                                   herr ? herr->message : "no answer");
    char detail[200];
    kbs_detail(resp, detail, sizeof(detail));
    long s = resp->status;
    int code = s == 404 ? -ENOENT : s == 401 || s == 403 ? -EACCES : -EIO;
    int grpc = s == 404               ? PP_GRPC_NOT_FOUND
               : s == 401 || s == 403 ? PP_GRPC_PERMISSION_DENIED
               : s >= 500             ? PP_GRPC_UNAVAILABLE
                                      : PP_GRPC_INTERNAL;
    return pp_error_set_status(err, grpc, code, "%s: the KBS answered %ld%s%s", step, s,
                               detail[0] ? ": " : "", detail);
}

/* ---- RCAR ------------------------------------------------------------------- */

static void rcar_finish(rcar_t *rc, int status, char *token, const pp_error_t *err)
{
    guest_kbs_t *k = rc->k;
    guest_teekey_t *key = status == 0 ? PP_STEAL(rc->key) : NULL;
    rc->cb(status, token, key, err, rc->data);
    guest_teekey_free(rc->key);
    json_decref(rc->jwk);
    free(rc->nonce);
    explicit_bzero(rc->cookie, sizeof(rc->cookie));
    free(rc);
    k->pending--;
    maybe_free(k);
}

static void rcar_fail(rcar_t *rc, const pp_error_t *err)
{
    rcar_finish(rc, err->code ? err->code : -EIO, NULL, err);
}

static int post_json(rcar_t *rc, const char *path, json_t *body, pp_http_cb cb, unsigned flags,
                     pp_error_t *err)
{
    guest_kbs_t *k = rc->k;
    cleanup_free char *text = json_dumps(body, JSON_COMPACT);
    char url[2048], cookie[300];
    const char *headers[3] = {"Content-Type: application/json", NULL, NULL};
    if (rc->cookie[0]) {
        snprintf(cookie, sizeof(cookie), "Cookie: %s", rc->cookie);
        headers[1] = cookie;
    }
    if (text == NULL || snprintf(url, sizeof(url), "%s%s", k->url, path) >= (int)sizeof(url))
        return pp_error_set(err, -ENOMEM, "%s: cannot build the request", rc->step);
    pp_http_request_t req = {.method = "POST",
                             .url = url,
                             .headers = headers,
                             .body = text,
                             .body_len = strlen(text),
                             .flags = flags};
    int r = k->http ? pp_http_send(k->http, &req, cb, rc, NULL) : -ECANCELED;
    explicit_bzero(cookie, sizeof(cookie));
    if (r < 0)
        return pp_error_set(err, r, "%s: %s", rc->step, strerror(-r));
    return 0;
}

static void on_attest(int status, const pp_http_response_t *resp, const pp_error_t *herr,
                      void *data)
{
    rcar_t *rc = data;
    pp_error_t err = {0};
    if (status < 0 || resp->status != 200) {
        http_fail(status, resp, herr, "KBS attest", &err);
        rcar_fail(rc, &err);
        return;
    }
    json_t *j = json_loadb(resp->body, resp->body_len, 0, NULL);
    const char *tok = json_string_value(json_object_get(j, "token"));
    int64_t exp;
    char *copy = tok ? strdup(tok) : NULL;
    if (tok == NULL || guest_jwt_exp(tok, &exp) < 0) {
        pp_error_set_status(&err, PP_GRPC_INTERNAL, -EBADMSG,
                            "KBS attest: the answer holds no attestation token (JWT)");
        free(copy);
        copy = NULL;
    } else if (copy == NULL) {
        pp_error_set(&err, -ENOMEM, "out of memory");
    }
    if (j != NULL) {
        /* The parsed copy holds the token: clear it before it is freed. */
        json_t *t = json_object_get(j, "token");
        if (json_is_string(t))
            explicit_bzero((char *)json_string_value(t), json_string_length(t));
        json_decref(j);
    }
    if (copy == NULL) {
        rcar_fail(rc, &err);
        return;
    }
    PP_DEBUG(LOG, "attested: token received");
    rcar_finish(rc, 0, copy, NULL);
}

static void on_evidence(int status, const char *json, size_t len, const pp_error_t *eerr,
                        void *data)
{
    rcar_t *rc = data;
    pp_error_t err = {0};
    if (status < 0) {
        err = *eerr;
        pp_error_wrap(&err, "evidence");
        rcar_fail(rc, &err);
        return;
    }
    if (rc->k->freeing) {
        pp_error_set(&err, -ECANCELED, "cancelled");
        rcar_fail(rc, &err);
        return;
    }
    json_t *ev = json_loadb(json, len, 0, NULL);
    json_t *body = NULL;
    if (ev != NULL) {
        body =
            json_pack("{s:{s:s,s:O},s:{s:o,s:s}}", "runtime-data", "nonce", rc->nonce, "tee-pubkey",
                      rc->jwk, "tee-evidence", "primary_evidence", ev, "additional_evidence", "");
        if (body != NULL && rc->k->initdata != NULL)
            json_object_set_new(body, "init-data",
                                json_pack("{s:s,s:s}", "format", "toml", "body", rc->k->initdata));
    }
    if (body == NULL) {
        pp_error_set(&err, -ENOMEM, "KBS attest: cannot build the request");
        rcar_fail(rc, &err);
        return;
    }
    rc->step = "KBS attest";
    /* The nonce is good once: an attempt that failed may have used it. */
    if (post_json(rc, "/kbs/v0/attest", body, on_attest, PP_HTTP_NO_RETRY, &err) < 0)
        rcar_fail(rc, &err);
    json_decref(body);
}

static const EVP_MD *hash_by_name(const char *name)
{
    if (name == NULL || strcasecmp(name, "sha384") == 0)
        return EVP_sha384();
    if (strcasecmp(name, "sha256") == 0)
        return EVP_sha256();
    if (strcasecmp(name, "sha512") == 0)
        return EVP_sha512();
    return NULL;
}

int guest__kbs_challenge(const char *body, size_t len, char **nonce, const void **md,
                         pp_error_t *err)
{
    json_t *ch = json_loadb(body, len, 0, NULL);
    const char *n = json_string_value(json_object_get(ch, "nonce"));
    json_t *extra = json_object_get(ch, "extra-params");
    json_t *selected = json_object_get(extra, "selected-hash-algorithm");
    const EVP_MD *h = hash_by_name(json_string_value(selected));
    int r = 0;
    *nonce = NULL;
    if (!json_is_object(ch) || n == NULL || n[0] == 0 || strlen(n) > 1024)
        r = pp_error_set_status(err, PP_GRPC_INTERNAL, -EBADMSG,
                                "KBS auth: the challenge holds no usable nonce");
    else if ((selected != NULL && !json_is_string(selected)) || h == NULL)
        r = pp_error_set_status(err, PP_GRPC_INTERNAL, -EBADMSG,
                                "KBS auth: the challenge asks for a hash algorithm we do not "
                                "offer");
    else if ((*nonce = strdup(n)) == NULL)
        r = pp_error_set(err, -ENOMEM, "out of memory");
    json_decref(ch);
    if (r == 0)
        *md = h;
    return r;
}

/* The cookie `kbs-session-id=...` from Set-Cookie, without attributes. */
static int session_cookie(const pp_http_response_t *resp, char *out, size_t size)
{
    char v[512];
    if (pp_http_response_header(resp, "set-cookie", v, sizeof(v)) < 0)
        return -ENOENT;
    size_t n = strcspn(v, ";");
    v[n] = 0;
    if (strncmp(v, "kbs-session-id=", 15) != 0 || n <= 15 || n >= size)
        return -EBADMSG;
    for (size_t i = 15; i < n; i++)
        if (v[i] <= ' ' || v[i] >= 0x7f || v[i] == '"' || v[i] == ',' || v[i] == '\\')
            return -EBADMSG;
    memcpy(out, v, n + 1);
    return 0;
}

static void on_auth(int status, const pp_http_response_t *resp, const pp_error_t *herr, void *data)
{
    rcar_t *rc = data;
    pp_error_t err = {0};
    if (status < 0 || resp->status != 200) {
        http_fail(status, resp, herr, "KBS auth", &err);
        rcar_fail(rc, &err);
        return;
    }
    const void *md = NULL;
    int r = guest__kbs_challenge(resp->body, resp->body_len, &rc->nonce, &md, &err);
    if (r == 0 && session_cookie(resp, rc->cookie, sizeof(rc->cookie)) < 0)
        r = pp_error_set_status(&err, PP_GRPC_INTERNAL, -EBADMSG,
                                "KBS auth: the answer sets no `kbs-session-id` cookie");
    if (r < 0) {
        rcar_fail(rc, &err);
        return;
    }
    /* The report data: a hash of the runtime data in canonical JSON (keys
     * sorted, no blanks), which the KBS recomputes from what we send. */
    json_t *rt = json_pack("{s:s,s:s,s:O}", "additional-evidence", "", "nonce", rc->nonce,
                           "tee-pubkey", rc->jwk);
    cleanup_free char *canon = rt ? json_dumps(rt, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(rt);
    uint8_t rd[EVP_MAX_MD_SIZE];
    unsigned rdlen = 0;
    if (canon == NULL || !EVP_Digest(canon, strlen(canon), rd, &rdlen, (const EVP_MD *)md, NULL)) {
        pp_error_set(&err, -ENOMEM, "runtime data: out of memory");
        rcar_fail(rc, &err);
        return;
    }
    rc->step = "evidence";
    r = rc->k->evidence(rc->k->evidence_ctx, rd, rdlen, on_evidence, rc);
    if (r < 0) {
        pp_error_set(&err, r, "evidence: %s", strerror(-r));
        rcar_fail(rc, &err);
    }
}

int guest_kbs_attest(guest_kbs_t *k, guest_kbs_token_cb cb, void *data)
{
    if (k->freeing)
        return -ECANCELED;
    rcar_t *rc = calloc(1, sizeof(*rc));
    if (rc == NULL)
        return -ENOMEM;
    rc->k = k;
    rc->cb = cb;
    rc->data = data;
    rc->step = "KBS auth";
    pp_error_t err;
    /* A fresh key for every attestation. */
    int r = guest_teekey_new(k->key_alg, &rc->key, &err);
    if (r == 0 && (rc->jwk = guest_teekey_jwk(rc->key)) == NULL)
        r = -ENOMEM;
    json_t *req = NULL;
    if (r == 0) {
        req = json_pack("{s:s,s:s,s:{s:[s,s,s]}}", "version", GUEST_KBS_PROTOCOL, "tee", k->tee,
                        "extra-params", "supported-hash-algorithms", "sha256", "sha384", "sha512");
        r = req == NULL ? -ENOMEM : post_json(rc, "/kbs/v0/auth", req, on_auth, 0, &err);
    }
    json_decref(req);
    if (r < 0) {
        guest_teekey_free(rc->key);
        json_decref(rc->jwk);
        free(rc);
        return r;
    }
    k->pending++;
    return 0;
}

/* ---- resources -------------------------------------------------------------- */

static void on_resource(int status, const pp_http_response_t *resp, const pp_error_t *herr,
                        void *data)
{
    res_req_t *rq = data;
    guest_kbs_t *k = rq->k;
    pp_error_t err = {0};
    pp_buf_t plain;
    pp_buf_init(&plain, GUEST_JWE_MAX);
    long hs = status < 0 ? 0 : resp->status;
    int r;
    if (status < 0 || resp->status != 200)
        r = http_fail(status, resp, herr, "KBS resource", &err);
    else if ((r = guest_jwe_decrypt(rq->key, resp->body, resp->body_len, &plain, &err)) < 0)
        pp_error_set_status(&err, PP_GRPC_INTERNAL, r, "KBS resource: %s", err.message);
    rq->cb(r, hs, plain.data, plain.len, r < 0 ? &err : NULL, rq->data);
    guest_buf_wipe(&plain);
    free(rq);
    k->pending--;
    maybe_free(k);
}

int guest_kbs_resource(guest_kbs_t *k, const char *path, const char *token,
                       const guest_teekey_t *key, guest_kbs_resource_cb cb, void *data)
{
    if (k->freeing || k->http == NULL)
        return -ECANCELED;
    char url[2048];
    size_t tlen = strlen(token);
    cleanup_free char *auth = malloc(tlen + 32);
    if (auth == NULL)
        return -ENOMEM;
    if (snprintf(url, sizeof(url), "%s/kbs/v0/resource/%s", k->url, path) >= (int)sizeof(url))
        return -ENAMETOOLONG;
    snprintf(auth, tlen + 32, "Authorization: Bearer %s", token);
    const char *headers[] = {auth, NULL};
    res_req_t *rq = calloc(1, sizeof(*rq));
    if (rq == NULL)
        return -ENOMEM;
    rq->k = k;
    rq->key = (guest_teekey_t *)key;
    rq->cb = cb;
    rq->data = data;
    pp_http_request_t req = {.method = "GET", .url = url, .headers = headers};
    int r = pp_http_send(k->http, &req, on_resource, rq, NULL);
    explicit_bzero(auth, tlen + 32);
    if (r < 0) {
        free(rq);
        return r;
    }
    k->pending++;
    return 0;
}

/* ---- helpers ---------------------------------------------------------------- */

static int part_ok(const char *p, size_t n)
{
    if (n == 0 || n > 128 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int guest_resource_path(const char *uri, size_t len, char *out, size_t size, pp_error_t *err)
{
    const char *prefix = "kbs://";
    char shown[64];
    snprintf(shown, sizeof(shown), "%.*s", (int)(len < 48 ? len : 48), uri);
    for (char *c = shown; *c; c++)
        if (*c < 0x20 || *c >= 0x7f)
            *c = '?';
    if (len < 6 || memcmp(uri, prefix, 6) != 0)
        return pp_error_set(err, -EINVAL, "`%s`: not a kbs:// resource URI", shown);
    const char *p = uri + 6, *end = uri + len;
    const char *slash = memchr(p, '/', (size_t)(end - p));
    if (slash == NULL)
        return pp_error_set(err, -EINVAL, "`%s`: no path after the host", shown);
    p = slash + 1;
    const char *parts[3];
    size_t lens[3];
    for (int i = 0; i < 3; i++) {
        const char *s = memchr(p, '/', (size_t)(end - p));
        const char *e = s ? s : end;
        if (i < 2 && s == NULL)
            return pp_error_set(err, -EINVAL, "`%s`: expected <repository>/<type>/<tag>", shown);
        if (i == 2 && s != NULL)
            return pp_error_set(err, -EINVAL, "`%s`: more than <repository>/<type>/<tag>", shown);
        if (!part_ok(p, (size_t)(e - p)))
            return pp_error_set(err, -EINVAL,
                                "`%s`: each part must be 1 to 128 of A-Z a-z 0-9 . _ -", shown);
        parts[i] = p;
        lens[i] = (size_t)(e - p);
        p = e + 1;
    }
    int r = snprintf(out, size, "%.*s/%.*s/%.*s", (int)lens[0], parts[0], (int)lens[1], parts[1],
                     (int)lens[2], parts[2]);
    return r < 0 || (size_t)r >= size ? pp_error_set(err, -ENAMETOOLONG, "`%s`: too long", shown)
                                      : 0;
}

int guest_jwt_exp(const char *jwt, int64_t *exp)
{
    const char *a = strchr(jwt, '.');
    const char *b = a ? strchr(a + 1, '.') : NULL;
    *exp = 0;
    if (a == NULL || b == NULL || strchr(b + 1, '.') != NULL)
        return -EBADMSG;
    pp_buf_t claims;
    pp_buf_init(&claims, 64 * 1024);
    int r = pp_base64url_decode(a + 1, (size_t)(b - a - 1), &claims);
    json_t *j = r == 0 ? json_loadb((const char *)claims.data, claims.len, 0, NULL) : NULL;
    pp_buf_free(&claims);
    if (!json_is_object(j)) {
        json_decref(j);
        return -EBADMSG;
    }
    json_t *e = json_object_get(j, "exp");
    if (json_is_integer(e))
        *exp = json_integer_value(e);
    else if (json_is_real(e) && json_real_value(e) > -9.2e18 && json_real_value(e) < 9.2e18)
        *exp = (int64_t)json_real_value(e); /* in range: the conversion is defined */
    else if (e != NULL && !json_is_null(e))
        r = -EBADMSG;
    json_decref(j);
    return r;
}
