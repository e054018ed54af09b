#include "imds.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "util/base64.h"
#include "util/cleanup.h"
#include "util/log.h"

#define AZURE_USER_DATA "/metadata/instance/compute/userData?api-version=2021-01-01&format=text"
#define AWS_TOKEN       "/latest/api/token"
#define AWS_USER_DATA   "/latest/user-data"
#define GCP_USER_DATA   "/computeMetadata/v1/instance/attributes/user-data"
#define IBM_VERSION     "2022-03-01" /* the first version with instance identity tokens */
#define IBM_TOKEN       "/instance_identity/v1/token?version=" IBM_VERSION
#define IBM_INIT        "/metadata/v1/instance/initialization?version=" IBM_VERSION

#define TOKEN_TTL      "60" /* seconds: only this program uses the token, right away */
#define JSON_SLACK     (64u * 1024)
#define TOKEN_BODY_MAX (64u * 1024)

/* ---- decoders ---------------------------------------------------------------- */

int pud_imds_decode_base64(const void *body, size_t len, size_t max, pp_buf_t *out, pp_error_t *err)
{
    pp_buf_t dec;
    pp_buf_init(&dec, max);
    int r = pp_base64_decode(body, len, &dec);
    if (r == -EBADMSG)
        r = pp_error_set(err, r, "answer is not valid base64");
    else if (r == -EMSGSIZE)
        r = pp_error_set(err, r, "user data larger than the limit of %zu bytes", max);
    else if (r < 0)
        r = pp_error_set(err, r, "decode base64: %s", strerror(-r));
    else if (dec.len == 0)
        r = pp_error_set(err, -ENOENT, "no user data set");
    else if ((r = pp_buf_append(out, dec.data, dec.len)) < 0)
        pp_error_set(err, r, "out of memory");
    pp_buf_free(&dec);
    return r;
}

int pud_imds_token_text(const void *body, size_t len, char *out, pp_error_t *err)
{
    const unsigned char *s = body;
    if (len == 0 || len > PUD_IMDS_TOKEN_MAX)
        return pp_error_set(err, -EBADMSG, "token of %zu bytes", len);
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return pp_error_set(err, -EBADMSG, "token holds a byte a header cannot carry");
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

/* Parses a JSON object, strictly: one value, no duplicate keys. */
static int load_object(const void *body, size_t len, json_t **out, pp_error_t *err)
{
    json_error_t je;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL)
        return pp_error_set(err, -EBADMSG, "answer is not JSON: %s (line %d)", je.text, je.line);
    if (!json_is_object(j)) {
        json_decref(j);
        return pp_error_set(err, -EBADMSG, "answer is not a JSON object");
    }
    *out = j;
    return 0;
}

int pud_imds_ibm_token(const void *body, size_t len, char *out, pp_error_t *err)
{
    cleanup_json json_t *j = NULL;
    int r = load_object(body, len, &j, err);
    if (r < 0)
        return r;
    json_t *t = json_object_get(j, "access_token");
    if (!json_is_string(t))
        return pp_error_set(err, -EBADMSG, "answer has no `access_token` string");
    r = pud_imds_token_text(json_string_value(t), json_string_length(t), out, err);
    return r < 0 ? pp_error_wrap(err, "`access_token`") : 0;
}

int pud_imds_ibm_user_data(const void *body, size_t len, size_t max, pp_buf_t *out, pp_error_t *err)
{
    cleanup_json json_t *j = NULL;
    int r = load_object(body, len, &j, err);
    if (r < 0)
        return r;
    json_t *ud = json_object_get(j, "user_data");
    if (ud == NULL || json_is_null(ud))
        return pp_error_set(err, -ENOENT, "no user data set");
    if (!json_is_string(ud))
        return pp_error_set(err, -EBADMSG, "`user_data` is not a string");
    size_t n = json_string_length(ud);
    if (n == 0)
        return pp_error_set(err, -ENOENT, "no user data set");
    if (n > max)
        return pp_error_set(err, -EMSGSIZE, "user data larger than the limit of %zu bytes", max);
    r = pp_buf_append(out, json_string_value(ud), n);
    return r < 0 ? pp_error_set(err, r, "out of memory") : 0;
}

/* ---- requests -------------------------------------------------------------- */

typedef struct probe_s {
    const pud_opts_t *o;
    uint64_t deadline;
    size_t max; /* user data limit */
} probe_t;

static void probe_begin(probe_t *p, const pud_opts_t *o)
{
    p->o = o;
    p->deadline = pud_now_ms() + pud_probe_timeout_ms(o);
    p->max = pud_user_data_max(o);
}

/* Sends one request within what is left of the probe's time (and at most
 * `limit_ms` of it when non-zero). 0 when an answer came. */
static int call(const probe_t *p, const char *method, const char *path, const char *const *headers,
                const char *body, size_t max_body, uint64_t limit_ms, const char *capture,
                pud_http_resp_t *resp, pp_error_t *err)
{
    const char *base = pud_metadata_url(p->o);
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    char url[2048];
    int n = snprintf(url, sizeof(url), "%.*s%s", (int)bl, base, path);
    if (n < 0 || (size_t)n >= sizeof(url))
        return pp_error_set(err, -EINVAL, "metadata URL too long");
    uint64_t now = pud_now_ms();
    uint64_t left = p->deadline > now ? p->deadline - now : 0;
    if (left == 0)
        return pp_error_set(err, -ETIMEDOUT, "%s %s: out of time", method, path);
    if (limit_ms != 0 && limit_ms < left)
        left = limit_ms;
    pud_http_req_t req = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = body,
        .body_len = body != NULL ? strlen(body) : 0,
        .timeout_ms = left,
        .max_body = max_body,
        .capture = capture,
    };
    int r = pud_http_do(&req, resp, err);
    if (r < 0)
        return pp_error_wrap(err, "%s %s", method, path);
    PP_DEBUG(PUD_LOG, "%s %s: HTTP %ld, %zu bytes", method, path, resp->status, resp->body.len);
    return 0;
}

/* What a failed call means for the probe: nobody (or nothing sensible)
 * answered, so the source is absent; except an oversized answer, a bad
 * URL or no memory, which end the search. */
static int failed(int r)
{
    if (r == -EMSGSIZE || r == -EINVAL || r == -ENOMEM)
        return r;
    return -ENOENT;
}

/* A status other than 200: this service is not here, or has nothing. */
static int not_ok(const char *method, const char *path, long status, pp_error_t *err)
{
    return pp_error_set(err, -ENOENT, "%s %s answered HTTP %ld", method, path, status);
}

/* An answer over its cap: said in terms of the user data limit. */
static int too_big(size_t max, pp_error_t *err)
{
    char was[PP_ERROR_MAX];
    snprintf(was, sizeof(was), "%s", err->message);
    return pp_error_set(err, -EMSGSIZE, "user data larger than the limit of %zu bytes (%s)", max,
                        was);
}

static size_t base64_cap(size_t max)
{
    /* Base64 of `max` bytes, with room for line breaks. */
    return max / 3 * 4 + 4 + max / 16 + 64;
}

/* ---- Azure --------------------------------------------------------------------- */

static int probe_azure(const pud_opts_t *o, pp_buf_t *out, pp_error_t *err)
{
    static const char *const headers[] = {"Metadata: true", NULL};
    probe_t p;
    probe_begin(&p, o);
    pud_http_resp_t resp;
    pud_http_resp_init(&resp);
    int r = call(&p, "GET", AZURE_USER_DATA, headers, NULL, base64_cap(p.max), 0, NULL, &resp, err);
    if (r == -EMSGSIZE)
        r = too_big(p.max, err);
    else if (r < 0)
        r = failed(r);
    else if (resp.status != 200)
        r = not_ok("GET", AZURE_USER_DATA, resp.status, err);
    else
        r = pud_imds_decode_base64(resp.body.data, resp.body.len, p.max, out, err);
    pud_http_resp_free(&resp);
    return r;
}

const pud_source_t pud_source_azure = {
    .name = "azure", .flags = PUD_SOURCE_NETWORK, .probe = probe_azure};

/* ---- AWS ------------------------------------------------------------------------ */

/* IMDSv2: a session token first. Returns 0 with `token` set, 0 with
 * `token` empty when the service did not give one but may still answer
 * IMDSv1 (an HTTP error, or the answer was lost: a hop limit of 1 drops
 * it behind a bridge), -ENOENT when nobody is there, or a hard error. */
static int aws_token(const probe_t *p, char *token, pp_error_t *err)
{
    static const char *const headers[] = {"X-aws-ec2-metadata-token-ttl-seconds: " TOKEN_TTL, NULL};
    token[0] = '\0';
    pud_http_resp_t resp;
    pud_http_resp_init(&resp);
    uint64_t half = pud_probe_timeout_ms(p->o) / 2;
    int r = call(p, "PUT", AWS_TOKEN, headers, "", PUD_IMDS_TOKEN_MAX, half ? half : 1, NULL, &resp,
                 err);
    if (r == -ECONNREFUSED || r == -EHOSTUNREACH) {
        r = -ENOENT;
    } else if (r < 0) {
        r = failed(r);
        if (r == -ENOENT) {
            PP_INFO(PUD_LOG, "aws: %s; trying IMDSv1", err->message);
            r = 0;
        }
    } else if (resp.status != 200) {
        PP_INFO(PUD_LOG, "aws: PUT " AWS_TOKEN " answered HTTP %ld; trying IMDSv1", resp.status);
    } else {
        r = pud_imds_token_text(resp.body.data, resp.body.len, token, err);
        if (r < 0)
            pp_error_wrap(err, "PUT " AWS_TOKEN);
    }
    pud_http_resp_free(&resp);
    return r;
}

static int probe_aws(const pud_opts_t *o, pp_buf_t *out, pp_error_t *err)
{
    probe_t p;
    probe_begin(&p, o);
    char token[PUD_IMDS_TOKEN_MAX + 1];
    int r = aws_token(&p, token, err);
    if (r < 0)
        return r;
    char header[sizeof(token) + 64];
    const char *headers[] = {NULL, NULL};
    if (token[0] != '\0') {
        snprintf(header, sizeof(header), "X-aws-ec2-metadata-token: %s", token);
        headers[0] = header;
    }
    pud_http_resp_t resp;
    pud_http_resp_init(&resp);
    r = call(&p, "GET", AWS_USER_DATA, headers, NULL, p.max, 0, NULL, &resp, err);
    if (r == -EMSGSIZE)
        r = too_big(p.max, err);
    else if (r < 0)
        r = failed(r);
    else if (resp.status != 200)
        r = not_ok("GET", AWS_USER_DATA, resp.status, err);
    else if (resp.body.len == 0)
        r = pp_error_set(err, -ENOENT, "no user data set");
    else if ((r = pp_buf_append(out, resp.body.data, resp.body.len)) < 0)
        pp_error_set(err, r, "out of memory");
    explicit_bzero(token, sizeof(token));
    explicit_bzero(header, sizeof(header));
    pud_http_resp_free(&resp);
    return r;
}

const pud_source_t pud_source_aws = {
    .name = "aws", .flags = PUD_SOURCE_NETWORK, .probe = probe_aws};

/* ---- GCP ------------------------------------------------------------------------ */

static int probe_gcp(const pud_opts_t *o, pp_buf_t *out, pp_error_t *err)
{
    static const char *const headers[] = {"Metadata-Flavor: Google", NULL};
    probe_t p;
    probe_begin(&p, o);
    pud_http_resp_t resp;
    pud_http_resp_init(&resp);
    int r = call(&p, "GET", GCP_USER_DATA, headers, NULL, base64_cap(p.max), 0, "Metadata-Flavor",
                 &resp, err);
    if (r == -EMSGSIZE)
        r = too_big(p.max, err);
    else if (r < 0)
        r = failed(r);
    else if (resp.status != 200)
        r = not_ok("GET", GCP_USER_DATA, resp.status, err);
    else if (strcmp(resp.captured, "Google") != 0)
        r = pp_error_set(err, -ENOENT, "answer lacks `Metadata-Flavor: Google`");
    else
        r = pud_imds_decode_base64(resp.body.data, resp.body.len, p.max, out, err);
    pud_http_resp_free(&resp);
    return r;
}

const pud_source_t pud_source_gcp = {
    .name = "gcp", .flags = PUD_SOURCE_NETWORK, .probe = probe_gcp};

/* ---- IBM Cloud -------------------------------------------------------------------- */

static int probe_ibmcloud(const pud_opts_t *o, pp_buf_t *out, pp_error_t *err)
{
    static const char *const token_headers[] = {
        "Metadata-Flavor: ibm", "Content-Type: application/json", "Accept: application/json", NULL};
    probe_t p;
    probe_begin(&p, o);
    char token[PUD_IMDS_TOKEN_MAX + 1] = "";
    char auth[sizeof(token) + 64] = "";
    pud_http_resp_t resp;
    pud_http_resp_init(&resp);
    int r = call(&p, "PUT", IBM_TOKEN, token_headers, "{\"expires_in\": " TOKEN_TTL "}",
                 TOKEN_BODY_MAX, 0, NULL, &resp, err);
    if (r < 0) {
        r = failed(r);
    } else if (resp.status != 200) {
        r = not_ok("PUT", IBM_TOKEN, resp.status, err);
    } else if ((r = pud_imds_ibm_token(resp.body.data, resp.body.len, token, err)) < 0) {
        pp_error_wrap(err, "PUT " IBM_TOKEN);
    }
    pud_http_resp_free(&resp);
    if (r < 0)
        return r;

    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    const char *const headers[] = {auth, "Accept: application/json", NULL};
    pud_http_resp_init(&resp);
    size_t cap = p.max <= (SIZE_MAX - JSON_SLACK) / 6 ? p.max * 6 + JSON_SLACK : SIZE_MAX;
    r = call(&p, "GET", IBM_INIT, headers, NULL, cap, 0, NULL, &resp, err);
    if (r == -EMSGSIZE)
        r = too_big(p.max, err);
    else if (r < 0)
        r = failed(r);
    else if (resp.status != 200)
        r = not_ok("GET", IBM_INIT, resp.status, err);
    else if ((r = pud_imds_ibm_user_data(resp.body.data, resp.body.len, p.max, out, err)) < 0 &&
             r != -ENOENT)
        pp_error_wrap(err, "GET " IBM_INIT);
    explicit_bzero(token, sizeof(token));
    explicit_bzero(auth, sizeof(auth));
    pud_http_resp_free(&resp);
    return r;
}

const pud_source_t pud_source_ibmcloud = {
    .name = "ibmcloud", .flags = PUD_SOURCE_NETWORK, .probe = probe_ibmcloud};
