/* AWS Signature Version 4 (see sigv4.h). */
#include "providers/aws/sigv4.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "util/buf.h"
#include "util/cleanup.h"
#include "util/hex.h"

#define ALGORITHM "AWS4-HMAC-SHA256"

static int unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

int pp_sigv4_uri_encode(pp_buf_t *out, const char *s, size_t len, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int r;
        if (unreserved(c) || (keep_slash && c == '/')) {
            r = pp_buf_append_byte(out, c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            r = pp_buf_append(out, e, 3);
        }
        if (r < 0)
            return r;
    }
    return 0;
}

static void sha256_hex(const void *p, size_t n, char out[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256(p, n, d);
    pp_hex_encode(d, sizeof(d), out);
}

static int hmac(const void *key, size_t klen, const void *msg, size_t mlen,
                unsigned char out[SHA256_DIGEST_LENGTH])
{
    unsigned int len = SHA256_DIGEST_LENGTH;
    return HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &len) != NULL ? 0 : -ENOMEM;
}

/* --- canonical parts ------------------------------------------------------------ */

/* The path with empty and "." segments dropped and ".." applied, keeping a
 * trailing slash. */
static int normalize_path(const char *path, pp_buf_t *out)
{
    size_t n = strlen(path);
    const char **segs = calloc(n / 2 + 2, sizeof(*segs));
    size_t *lens = calloc(n / 2 + 2, sizeof(*lens));
    size_t nseg = 0;
    int r = 0;
    if (segs == NULL || lens == NULL) {
        r = -ENOMEM;
        goto out;
    }
    const char *p = path;
    int trailing = 0;
    while (*p != '\0') {
        while (*p == '/')
            p++;
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 0)
            break;
        trailing = e != NULL;
        if (l == 1 && p[0] == '.') {
            /* nothing */
        } else if (l == 2 && p[0] == '.' && p[1] == '.') {
            if (nseg > 0)
                nseg--;
        } else {
            segs[nseg] = p;
            lens[nseg++] = l;
        }
        p += l;
    }
    /* Only a literal trailing slash is kept: "/a/.." becomes "/". */
    r = pp_buf_append_byte(out, '/');
    for (size_t i = 0; r == 0 && i < nseg; i++) {
        r = pp_buf_append(out, segs[i], lens[i]);
        if (r == 0 && (i + 1 < nseg || trailing))
            r = pp_buf_append_byte(out, '/');
    }
out:
    free(segs);
    free(lens);
    return r;
}

static int canonical_uri(const char *path, unsigned flags, pp_buf_t *out)
{
    if (path == NULL || path[0] == '\0')
        path = "/";
    if (flags & PP_SIGV4_NO_NORMALIZE)
        return pp_sigv4_uri_encode(out, path, strlen(path), 1);
    pp_buf_t norm;
    pp_buf_init(&norm, 0);
    int r = normalize_path(path, &norm);
    if (r == 0)
        r = pp_sigv4_uri_encode(out, (const char *)norm.data, norm.len, 1);
    pp_buf_free(&norm);
    return r;
}

/* Decodes %XX (a malformed escape stays as it is), then encodes. */
static int reencode(const char *s, size_t len, pp_buf_t *out)
{
    cleanup_free char *dec = malloc(len + 1);
    if (dec == NULL)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < len && (hi = pp_hex_value((unsigned char)s[i + 1])) >= 0 &&
            (lo = pp_hex_value((unsigned char)s[i + 2])) >= 0) {
            dec[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            dec[n++] = s[i];
        }
    }
    return pp_sigv4_uri_encode(out, dec, n, 0);
}

typedef struct qparam_s {
    char *key;
    char *value;
} qparam_t;

static int qparam_cmp(const void *a, const void *b)
{
    const qparam_t *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c != 0 ? c : strcmp(x->value, y->value);
}

static char *buf_cstr(pp_buf_t *b)
{
    if (pp_buf_append_byte(b, 0) < 0)
        return NULL;
    size_t len;
    return (char *)pp_buf_steal(b, &len);
}

static int canonical_query(const char *query, pp_buf_t *out)
{
    if (query == NULL || query[0] == '\0')
        return 0;
    size_t max = 1;
    for (const char *p = query; *p; p++)
        max += *p == '&';
    qparam_t *ps = calloc(max, sizeof(*ps));
    if (ps == NULL)
        return -ENOMEM;
    size_t n = 0;
    int r = 0;
    const char *p = query;
    while (r == 0 && *p != '\0') {
        const char *amp = strchr(p, '&');
        size_t l = amp ? (size_t)(amp - p) : strlen(p);
        if (l > 0) {
            const char *eq = memchr(p, '=', l);
            size_t kl = eq ? (size_t)(eq - p) : l;
            pp_buf_t k, v;
            pp_buf_init(&k, 0);
            pp_buf_init(&v, 0);
            r = reencode(p, kl, &k);
            if (r == 0 && eq != NULL)
                r = reencode(eq + 1, l - kl - 1, &v);
            if (r == 0) {
                ps[n].key = buf_cstr(&k);
                ps[n].value = buf_cstr(&v);
                if (ps[n].key == NULL || ps[n].value == NULL)
                    r = -ENOMEM;
                n++;
            }
            pp_buf_free(&k);
            pp_buf_free(&v);
        }
        p += l;
        if (*p == '&')
            p++;
    }
    if (r == 0) {
        qsort(ps, n, sizeof(*ps), qparam_cmp);
        for (size_t i = 0; r == 0 && i < n; i++)
            r = pp_buf_printf(out, "%s%s=%s", i ? "&" : "", ps[i].key, ps[i].value);
    }
    for (size_t i = 0; i < n; i++) {
        free(ps[i].key);
        free(ps[i].value);
    }
    free(ps);
    return r;
}

typedef struct hdr_s {
    char *name;  /* lowercase */
    char *value; /* trimmed, blanks collapsed */
} hdr_t;

static char *lower_dup(const char *s)
{
    char *d = strdup(s);
    for (char *p = d; p != NULL && *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return d;
}

static char *trim_dup(const char *s)
{
    char *d = malloc(strlen(s) + 1);
    if (d == NULL)
        return NULL;
    size_t n = 0;
    int blank = 0;
    for (const char *p = s; *p; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
            blank = n > 0;
            continue;
        }
        if (blank)
            d[n++] = ' ';
        blank = 0;
        d[n++] = *p;
    }
    d[n] = '\0';
    return d;
}

static void hdrs_free(hdr_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    free(h);
}

/* Canonical headers and the signed-headers list. */
static int canonical_headers(const pp_sigv4_input_t *in, const char *amz_date,
                             const char *content_sha, pp_buf_t *canon, pp_buf_t *signed_list)
{
    size_t cap = in->nheaders + 3, n = 0;
    hdr_t *h = calloc(cap, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    int have_host = 0, r = 0;
    pp_sigv4_header_t extra[3];
    size_t nextra = 0;
    extra[nextra++] = (pp_sigv4_header_t){"x-amz-date", amz_date};
    if (in->session_token != NULL && in->session_token[0] != '\0' &&
        !(in->flags & PP_SIGV4_TOKEN_UNSIGNED))
        extra[nextra++] = (pp_sigv4_header_t){"x-amz-security-token", in->session_token};
    if (in->flags & PP_SIGV4_CONTENT_SHA256)
        extra[nextra++] = (pp_sigv4_header_t){"x-amz-content-sha256", content_sha};
    for (size_t i = 0; i < in->nheaders + nextra; i++) {
        const pp_sigv4_header_t *src =
            i < in->nheaders ? &in->headers[i] : &extra[i - in->nheaders];
        if (src->name == NULL || src->value == NULL || src->name[0] == '\0') {
            r = -EINVAL;
            goto out;
        }
        h[n].name = lower_dup(src->name);
        h[n].value = trim_dup(src->value);
        if (h[n].name == NULL || h[n].value == NULL) {
            n++;
            r = -ENOMEM;
            goto out;
        }
        have_host |= strcmp(h[n].name, "host") == 0;
        n++;
    }
    if (!have_host) {
        r = -EINVAL;
        goto out;
    }
    /* Stable sort by name: duplicates keep the order they came in. */
    for (size_t i = 1; i < n; i++) {
        hdr_t x = h[i];
        size_t j = i;
        while (j > 0 && strcmp(h[j - 1].name, x.name) > 0) {
            h[j] = h[j - 1];
            j--;
        }
        h[j] = x;
    }
    for (size_t i = 0; r == 0 && i < n; i++) {
        if (i > 0 && strcmp(h[i].name, h[i - 1].name) == 0) {
            /* Replace the newline of the previous line by ",value". */
            canon->len--;
            r = pp_buf_printf(canon, ",%s\n", h[i].value);
            continue;
        }
        r = pp_buf_printf(canon, "%s:%s\n", h[i].name, h[i].value);
        if (r == 0)
            r = pp_buf_printf(signed_list, "%s%s", signed_list->len ? ";" : "", h[i].name);
    }
out:
    hdrs_free(h, n);
    return r;
}

/* --- signing ---------------------------------------------------------------------- */

static int signing_key(const char *secret, const char *date, const char *region,
                       const char *service, unsigned char key[SHA256_DIGEST_LENGTH])
{
    size_t slen = strlen(secret);
    cleanup_free char *k0 = malloc(slen + 5);
    if (k0 == NULL)
        return -ENOMEM;
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, slen + 1);
    unsigned char k1[SHA256_DIGEST_LENGTH], k2[SHA256_DIGEST_LENGTH], k3[SHA256_DIGEST_LENGTH];
    int r = hmac(k0, slen + 4, date, strlen(date), k1);
    if (r == 0)
        r = hmac(k1, sizeof(k1), region, strlen(region), k2);
    if (r == 0)
        r = hmac(k2, sizeof(k2), service, strlen(service), k3);
    if (r == 0)
        r = hmac(k3, sizeof(k3), "aws4_request", 12, key);
    OPENSSL_cleanse(k0, slen + 4);
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    OPENSSL_cleanse(k3, sizeof(k3));
    return r;
}

void pp_sigv4_output_free(pp_sigv4_output_t *out)
{
    if (out == NULL)
        return;
    free(out->authorization);
    free(out->canonical_request);
    free(out->string_to_sign);
    out->authorization = out->canonical_request = out->string_to_sign = NULL;
}

static const char *missing(const pp_sigv4_input_t *in)
{
    static const struct {
        size_t off;
        const char *name;
    } fields[] = {
        {offsetof(pp_sigv4_input_t, method), "method"},
        {offsetof(pp_sigv4_input_t, region), "region"},
        {offsetof(pp_sigv4_input_t, service), "service"},
        {offsetof(pp_sigv4_input_t, access_key), "access key"},
        {offsetof(pp_sigv4_input_t, secret_key), "secret key"},
    };
    for (size_t i = 0; i < PP_ARRAY_SIZE(fields); i++) {
        const char *v = *(const char *const *)((const char *)in + fields[i].off);
        if (v == NULL || v[0] == '\0')
            return fields[i].name;
    }
    return NULL;
}

int pp_sigv4_sign(const pp_sigv4_input_t *in, pp_sigv4_output_t *out, pp_error_t *err)
{
    memset(out, 0, sizeof(*out));
    const char *what = missing(in);
    if (what != NULL)
        return pp_error_set(err, -EINVAL, "sigv4: no %s", what);
    if (in->body == NULL && in->body_len > 0)
        return pp_error_set(err, -EINVAL, "sigv4: no body");
    struct tm tm;
    if (gmtime_r(&in->when, &tm) == NULL ||
        strftime(out->amz_date, sizeof(out->amz_date), "%Y%m%dT%H%M%SZ", &tm) != 16)
        return pp_error_set(err, -EINVAL, "sigv4: bad time");
    char date[9];
    memcpy(date, out->amz_date, 8);
    date[8] = '\0';
    sha256_hex(in->body_len ? in->body : "", in->body_len, out->content_sha256);

    pp_buf_t creq, sts, signed_list, auth;
    pp_buf_init(&creq, 0);
    pp_buf_init(&sts, 0);
    pp_buf_init(&signed_list, 0);
    pp_buf_init(&auth, 0);
    unsigned char key[SHA256_DIGEST_LENGTH], sig[SHA256_DIGEST_LENGTH];
    int r = pp_buf_printf(&creq, "%s\n", in->method);
    if (r == 0)
        r = canonical_uri(in->path, in->flags, &creq);
    if (r == 0)
        r = pp_buf_append_byte(&creq, '\n');
    if (r == 0)
        r = canonical_query(in->query, &creq);
    if (r == 0)
        r = pp_buf_append_byte(&creq, '\n');
    if (r == 0)
        r = canonical_headers(in, out->amz_date, out->content_sha256, &creq, &signed_list);
    if (r == -EINVAL) {
        pp_error_set(err, r, "sigv4: a header without a name or value, or no `host` header");
        goto fail;
    }
    if (r == 0)
        r = pp_buf_append_byte(&signed_list, 0);
    if (r == 0)
        r = pp_buf_printf(&creq, "\n%s\n%s", (const char *)signed_list.data, out->content_sha256);
    char creq_hash[65];
    if (r == 0) {
        sha256_hex(creq.data, creq.len, creq_hash);
        r = pp_buf_printf(&sts, ALGORITHM "\n%s\n%s/%s/%s/aws4_request\n%s", out->amz_date, date,
                          in->region, in->service, creq_hash);
    }
    if (r == 0)
        r = signing_key(in->secret_key, date, in->region, in->service, key);
    if (r == 0)
        r = hmac(key, sizeof(key), sts.data, sts.len, sig);
    OPENSSL_cleanse(key, sizeof(key));
    if (r == 0) {
        pp_hex_encode(sig, sizeof(sig), out->signature);
        r = pp_buf_printf(&auth,
                          ALGORITHM " Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, "
                                    "Signature=%s",
                          in->access_key, date, in->region, in->service,
                          (const char *)signed_list.data, out->signature);
    }
    if (r == 0) {
        out->authorization = buf_cstr(&auth);
        out->canonical_request = buf_cstr(&creq);
        out->string_to_sign = buf_cstr(&sts);
        if (out->authorization == NULL || out->canonical_request == NULL ||
            out->string_to_sign == NULL)
            r = -ENOMEM;
    }
    if (r < 0) {
        pp_sigv4_output_free(out);
        pp_error_set(err, r, "sigv4: out of memory");
    }
fail:
    pp_buf_free(&creq);
    pp_buf_free(&sts);
    pp_buf_free(&signed_list);
    pp_buf_free(&auth);
    return r;
}
