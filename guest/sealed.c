#include "sealed.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include "config.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/grpc_codes.h"

struct guest_sealed_s {
    char *signing_input; /* "<header>.<payload>" */
    pp_buf_t sig;
    json_t *header;
    json_t *payload;
    char kid[512];
};

void guest_sealed_free(guest_sealed_t *s)
{
    if (s == NULL)
        return;
    free(s->signing_input);
    pp_buf_free(&s->sig);
    json_decref(s->header);
    json_decref(s->payload);
    free(s);
}

static int bad(pp_error_t *err, const char *what)
{
    return pp_error_set_status(err, PP_GRPC_INVALID_ARGUMENT, -EBADMSG, "sealed secret: %s", what);
}

static json_t *b64_json(const char *p, size_t n)
{
    pp_buf_t b;
    pp_buf_init(&b, GUEST_SEALED_MAX);
    json_t *j = NULL;
    if (pp_base64url_decode(p, n, &b) == 0)
        j = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
    if (b.data != NULL)
        explicit_bzero(b.data, b.len);
    pp_buf_free(&b);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

int guest_sealed_parse(const char *text, size_t len, guest_sealed_t **out, pp_error_t *err)
{
    if (len > GUEST_SEALED_MAX)
        return bad(err, "longer than 64 KiB");
    if (len < 7 || memcmp(text, "sealed.", 7) != 0)
        return bad(err, "does not start with `sealed.`");
    const char *p = text + 7, *end = text + len;
    const char *d1 = memchr(p, '.', (size_t)(end - p));
    const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(end - d1 - 1)) : NULL;
    if (d2 == NULL || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)) != NULL)
        return bad(err, "not `sealed.<header>.<payload>.<signature>`");
    guest_sealed_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    pp_buf_init(&s->sig, 1024);
    int r = 0;
    s->header = b64_json(p, (size_t)(d1 - p));
    s->payload = b64_json(d1 + 1, (size_t)(d2 - d1 - 1));
    if (s->header == NULL)
        r = bad(err, "the header is not base64url JSON");
    else if (s->payload == NULL)
        r = bad(err, "the payload is not base64url JSON");
    else if (pp_base64url_decode(d2 + 1, (size_t)(end - d2 - 1), &s->sig) < 0)
        r = bad(err, "the signature is not base64url");
    else if ((s->signing_input = malloc((size_t)(d2 - p) + 1)) == NULL)
        r = pp_error_set(err, -ENOMEM, "out of memory");
    else {
        /* The secret is not NUL-terminated (it comes from a message field):
         * copy exactly its bytes, never read one past them. */
        memcpy(s->signing_input, p, (size_t)(d2 - p));
        s->signing_input[d2 - p] = '\0';
    }
    if (r == 0) {
        const char *kid = json_string_value(json_object_get(s->header, "kid"));
        if (kid != NULL && snprintf(s->kid, sizeof(s->kid), "%s", kid) >= (int)sizeof(s->kid))
            r = bad(err, "the `kid` is too long");
    }
    if (r < 0) {
        guest_sealed_free(s);
        return r;
    }
    *out = s;
    return 0;
}

const char *guest_sealed_kid(const guest_sealed_t *s)
{
    return s->kid;
}

static EVP_PKEY *p256_from_jwk(json_t *jwk)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    const char *x = json_string_value(json_object_get(jwk, "x"));
    const char *y = json_string_value(json_object_get(jwk, "y"));
    if (!kty || !crv || !x || !y || strcmp(kty, "EC") != 0 || strcmp(crv, "P-256") != 0)
        return NULL;
    pp_buf_t bx, by;
    pp_buf_init(&bx, 64);
    pp_buf_init(&by, 64);
    uint8_t point[65];
    EVP_PKEY *pkey = NULL;
    if (pp_base64url_decode(x, strlen(x), &bx) == 0 &&
        pp_base64url_decode(y, strlen(y), &by) == 0 && bx.len == 32 && by.len == 32) {
        point[0] = 4;
        memcpy(point + 1, bx.data, 32);
        memcpy(point + 33, by.data, 32);
        OSSL_PARAM params[] = {
            OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0),
            OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)),
            OSSL_PARAM_END,
        };
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
            EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
            pkey = NULL;
        EVP_PKEY_CTX_free(ctx);
        if (pkey != NULL) {
            EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
            if (check == NULL || EVP_PKEY_public_check(check) != 1) {
                EVP_PKEY_free(pkey);
                pkey = NULL;
            }
            EVP_PKEY_CTX_free(check);
        }
    }
    pp_buf_free(&bx);
    pp_buf_free(&by);
    return pkey;
}

int guest_sealed_verify(const guest_sealed_t *s, const char *jwk, size_t len, pp_error_t *err)
{
    const char *alg = json_string_value(json_object_get(s->header, "alg"));
    if (alg == NULL || strcmp(alg, "ES256") != 0)
        return pp_error_set_status(err, PP_GRPC_INVALID_ARGUMENT, -EBADMSG,
                                   "sealed secret: the JWS algorithm must be ES256");
    json_t *k = json_loadb(jwk, len, 0, NULL);
    EVP_PKEY *pkey = k ? p256_from_jwk(k) : NULL;
    json_decref(k);
    if (pkey == NULL)
        return pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, -EBADMSG,
                                   "sealed secret: the key `%.64s` is not a P-256 public JWK",
                                   s->kid);
    int ok = 0;
    if (s->sig.len == 64) {
        /* JWS carries r||s; OpenSSL wants DER. */
        ECDSA_SIG *sig = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(s->sig.data, 32, NULL), *sv = BN_bin2bn(s->sig.data + 32, 32, NULL);
        unsigned char *der = NULL;
        int dlen = -1;
        if (sig != NULL && r != NULL && sv != NULL && ECDSA_SIG_set0(sig, r, sv)) {
            r = sv = NULL;
            dlen = i2d_ECDSA_SIG(sig, &der);
        }
        BN_free(r);
        BN_free(sv);
        ECDSA_SIG_free(sig);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        ok = dlen > 0 && md != NULL &&
             EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1 &&
             EVP_DigestVerify(md, der, (size_t)dlen, (const unsigned char *)s->signing_input,
                              strlen(s->signing_input)) == 1;
        EVP_MD_CTX_free(md);
        OPENSSL_free(der);
    }
    EVP_PKEY_free(pkey);
    if (!ok)
        return pp_error_set_status(err, PP_GRPC_PERMISSION_DENIED, -EKEYREJECTED,
                                   "sealed secret: the signature does not verify with `%.64s`",
                                   s->kid);
    return 0;
}

int guest_sealed_vault_uri(const guest_sealed_t *s, char *out, size_t size, pp_error_t *err)
{
    const char *version = json_string_value(json_object_get(s->payload, "version"));
    const char *type = json_string_value(json_object_get(s->payload, "type"));
    const char *provider = json_string_value(json_object_get(s->payload, "provider"));
    const char *name = json_string_value(json_object_get(s->payload, "name"));
    if (version == NULL || strcmp(version, "0.1.0") != 0)
        return bad(err, "`version` is not 0.1.0");
    if (type == NULL || provider == NULL)
        return bad(err, "`type` or `provider` is missing");
    if (strcmp(type, "envelope") == 0)
        return pp_error_set_status(err, PP_GRPC_UNIMPLEMENTED, -ENOTSUP,
                                   "sealed secret: envelope secrets need KMS provider `%.32s`, "
                                   "which this data hub does not have",
                                   provider);
    if (strcmp(type, "vault") != 0)
        return bad(err, "`type` is neither vault nor envelope");
    if (strcmp(provider, "kbs") != 0)
        return pp_error_set_status(err, PP_GRPC_UNIMPLEMENTED, -ENOTSUP,
                                   "sealed secret: vault provider `%.32s` is not served here "
                                   "(only kbs)",
                                   provider);
    if (name == NULL || strlen(name) >= size)
        return bad(err, "`name` is missing or too long");
    snprintf(out, size, "%s", name);
    return 0;
}

int guest_sealed_local_key(const char *dir, const char *kid, char **jwk, size_t *len,
                           pp_error_t *err)
{
    if (kid[0] == 0 || kid[0] == '.' || strchr(kid, '/') != NULL)
        return pp_error_set_status(err, PP_GRPC_INVALID_ARGUMENT, -EINVAL,
                                   "sealed secret: `kid` `%.64s` is neither a kbs:// URI nor a "
                                   "plain key name",
                                   kid);
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/%s", dir, kid) >= (int)sizeof(path))
        return pp_error_set(err, -ENAMETOOLONG, "sealed secret: key path too long");
    int r = pp_file_read(path, GUEST_SEALED_MAX, PP_FILE_REGULAR | PP_FILE_SECRET, jwk, len, err);
    if (r < 0)
        pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, r, "sealed secret: key `%.64s`: %s",
                            kid, strerror(-r));
    return r;
}
