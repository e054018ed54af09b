#include "teekey.h"

#include <errno.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include "util/base64.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"

struct guest_teekey_s {
    EVP_PKEY *pkey;
    guest_key_alg_t alg;
};

void guest_buf_wipe(pp_buf_t *b)
{
    if (b->data != NULL)
        explicit_bzero(b->data, b->cap);
    pp_buf_free(b);
}

static const char *curve_of(guest_key_alg_t alg)
{
    return alg == GUEST_KEY_EC_P521 ? "P-521" : "P-256";
}

static size_t coord_len(guest_key_alg_t alg)
{
    return alg == GUEST_KEY_EC_P521 ? 66 : 32;
}

int guest_teekey_new(guest_key_alg_t alg, guest_teekey_t **out, pp_error_t *err)
{
    guest_teekey_t *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    k->alg = alg;
    if (alg == GUEST_KEY_RSA)
        k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    else
        k->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve_of(alg));
    if (k->pkey == NULL) {
        free(k);
        return pp_error_set(err, -EIO, "make a %s key", guest_key_alg_name(alg));
    }
    *out = k;
    return 0;
}

void guest_teekey_free(guest_teekey_t *k)
{
    if (k == NULL)
        return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

int guest_teekey_from_pem(const char *pem, size_t len, guest_teekey_t **out, pp_error_t *err)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (pkey == NULL)
        return pp_error_set(err, -EBADMSG, "the TEE key is not a PEM private key");
    guest_teekey_t *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        EVP_PKEY_free(pkey);
        return pp_error_set(err, -ENOMEM, "out of memory");
    }
    k->pkey = pkey;
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        k->alg = GUEST_KEY_RSA;
    } else if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[32] = "";
        EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       NULL);
        if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
            k->alg = GUEST_KEY_EC_P256;
        else if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0)
            k->alg = GUEST_KEY_EC_P521;
        else
            k->pkey = NULL;
    } else {
        k->pkey = NULL;
    }
    if (k->pkey == NULL) {
        EVP_PKEY_free(pkey);
        free(k);
        return pp_error_set(err, -ENOTSUP, "the TEE key is neither RSA nor EC P-256/P-521");
    }
    *out = k;
    return 0;
}

/* A big number, left-padded to `width` bytes (0: as is), base64url. */
static char *bn_b64url(const BIGNUM *bn, size_t width)
{
    size_t n = (size_t)BN_num_bytes(bn);
    if (width == 0)
        width = n;
    if (n > width)
        return NULL;
    cleanup_free uint8_t *buf = calloc(1, width ? width : 1);
    if (buf == NULL || BN_bn2binpad(bn, buf, (int)width) < 0)
        return NULL;
    return pp_base64url_str(buf, width);
}

json_t *guest_teekey_jwk(const guest_teekey_t *k)
{
    BIGNUM *a = NULL, *b = NULL;
    json_t *jwk = NULL;
    cleanup_free char *sa = NULL;
    cleanup_free char *sb = NULL;
    if (k->alg == GUEST_KEY_RSA) {
        if (!EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_N, &a) ||
            !EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_E, &b))
            goto out;
        sa = bn_b64url(a, 0);
        sb = bn_b64url(b, 0);
        if (sa != NULL && sb != NULL)
            jwk = json_pack("{s:s,s:s,s:s,s:s}", "kty", "RSA", "alg", "RSA-OAEP-256", "n", sa, "e",
                            sb);
    } else {
        if (!EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, &a) ||
            !EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &b))
            goto out;
        sa = bn_b64url(a, coord_len(k->alg));
        sb = bn_b64url(b, coord_len(k->alg));
        if (sa != NULL && sb != NULL)
            jwk = json_pack("{s:s,s:s,s:s,s:s,s:s}", "kty", "EC", "crv", curve_of(k->alg), "alg",
                            "ECDH-ES+A256KW", "x", sa, "y", sb);
    }
out:
    BN_free(a);
    BN_free(b);
    return jwk;
}

char *guest_teekey_pem(const guest_teekey_t *k)
{
    BIO *bio = BIO_new(BIO_s_secmem());
    if (bio == NULL)
        return NULL;
    int ok;
    if (k->alg == GUEST_KEY_RSA)
        /* Upstream writes RSA keys as PKCS#1, EC keys as PKCS#8. */
        ok = PEM_write_bio_PrivateKey_traditional(bio, k->pkey, NULL, NULL, 0, NULL, NULL);
    else
        ok = PEM_write_bio_PKCS8PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL);
    char *data = NULL;
    long n = ok ? BIO_get_mem_data(bio, &data) : 0;
    char *out = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (out != NULL) {
        memcpy(out, data, (size_t)n);
        out[n] = 0;
    }
    BIO_free(bio);
    return out;
}

/* ---- JWE -------------------------------------------------------------------- */

#define CEK_LEN 32
#define IV_LEN  12
#define TAG_LEN 16

/* A base64url member of `o` decoded into `out` (at most `max` bytes). */
static int member(json_t *o, const char *name, size_t max, int required, pp_buf_t *out,
                  pp_error_t *err)
{
    json_t *v = json_object_get(o, name);
    if (v == NULL && !required)
        return 0;
    if (!json_is_string(v))
        return pp_error_set(err, -EBADMSG, "JWE: `%s` is %s", name,
                            v == NULL ? "missing" : "not a string");
    pp_buf_init(out, max);
    int r = pp_base64url_decode(json_string_value(v), json_string_length(v), out);
    if (r < 0) {
        pp_buf_free(out);
        return pp_error_set(err, -EBADMSG, "JWE: `%s` is not base64url%s", name,
                            r == -EMSGSIZE ? " of a sane size" : "");
    }
    return 1;
}

/* ECDH-ES key agreement and the Concat KDF of RFC 7518 §4.6, for
 * "ECDH-ES+A256KW" with empty PartyUInfo and PartyVInfo, as Trustee
 * derives it. */
static int ecdh_kek(const guest_teekey_t *k, json_t *epk, uint8_t kek[32], pp_error_t *err)
{
    const char *crv = json_string_value(json_object_get(epk, "crv"));
    const char *kty = json_string_value(json_object_get(epk, "kty"));
    if (crv == NULL || strcmp(crv, curve_of(k->alg)) != 0 || (kty && strcmp(kty, "EC") != 0))
        return pp_error_set(err, -EKEYREJECTED, "JWE: the `epk` is not on our curve %s",
                            curve_of(k->alg));
    pp_buf_t x, y;
    int r = member(epk, "x", 66, 1, &x, err);
    if (r < 0)
        return r;
    r = member(epk, "y", 66, 1, &y, err);
    if (r < 0) {
        pp_buf_free(&x);
        return r;
    }
    size_t cl = coord_len(k->alg);
    uint8_t point[1 + 2 * 66];
    r = -EBADMSG;
    if (x.len == cl && y.len == cl) {
        point[0] = 4;
        memcpy(point + 1, x.data, cl);
        memcpy(point + 1 + cl, y.data, cl);
        r = 0;
    }
    pp_buf_free(&x);
    pp_buf_free(&y);
    if (r < 0)
        return pp_error_set(err, r, "JWE: `epk` coordinates are not %zu bytes", cl);

    EVP_PKEY *peer = NULL;
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    OSSL_PARAM params[] = {
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)curve_of(k->alg), 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * cl),
        OSSL_PARAM_END,
    };
    uint8_t z[66];
    size_t zlen = sizeof(z);
    EVP_PKEY_CTX *dctx = NULL;
    r = -EKEYREJECTED;
    if (pctx == NULL || EVP_PKEY_fromdata_init(pctx) <= 0 ||
        EVP_PKEY_fromdata(pctx, &peer, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        goto out;
    /* fromdata does not check that the point is on the curve. */
    EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, peer, NULL);
    int on_curve = check != NULL && EVP_PKEY_public_check(check) == 1;
    EVP_PKEY_CTX_free(check);
    if (!on_curve)
        goto out;
    dctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    if (dctx == NULL || EVP_PKEY_derive_init(dctx) <= 0 ||
        EVP_PKEY_derive_set_peer(dctx, peer) <= 0 || EVP_PKEY_derive(dctx, z, &zlen) <= 0)
        goto out;
    /* One round of SHA-256 gives the 256 bits of an A256KW key. */
    static const char alg[] = "ECDH-ES+A256KW";
    uint8_t be[4];
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned dl = 0;
    int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    const uint32_t fields[] = {1, (uint32_t)strlen(alg)};
    for (size_t i = 0; ok && i < 2; i++) {
        be[0] = (uint8_t)(fields[i] >> 24), be[1] = (uint8_t)(fields[i] >> 16);
        be[2] = (uint8_t)(fields[i] >> 8), be[3] = (uint8_t)fields[i];
        ok = EVP_DigestUpdate(md, be, 4) && (i == 1 || EVP_DigestUpdate(md, z, zlen));
    }
    static const uint8_t tail[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}; /* apu, apv, 256 */
    ok = ok && EVP_DigestUpdate(md, alg, strlen(alg)) && EVP_DigestUpdate(md, tail, sizeof(tail)) &&
         EVP_DigestFinal_ex(md, kek, &dl) && dl == 32;
    EVP_MD_CTX_free(md);
    r = ok ? 0 : -EIO;
out:
    explicit_bzero(z, sizeof(z));
    EVP_PKEY_CTX_free(dctx);
    EVP_PKEY_CTX_free(pctx);
    EVP_PKEY_free(peer);
    if (r == -EKEYREJECTED)
        return pp_error_set(err, r, "JWE: the KBS's ephemeral key does not agree with ours");
    return r < 0 ? pp_error_set(err, r, "JWE: key derivation failed") : 0;
}

static int aes_unwrap(const uint8_t kek[32], const pp_buf_t *wrapped, uint8_t cek[CEK_LEN],
                      pp_error_t *err)
{
    if (wrapped->len != CEK_LEN + 8)
        return pp_error_set(err, -EBADMSG, "JWE: `encrypted_key` is %zu bytes, not %d",
                            wrapped->len, CEK_LEN + 8);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, m = 0, ok = c != NULL;
    if (ok) {
        EVP_CIPHER_CTX_set_flags(c, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
        ok = EVP_DecryptInit_ex(c, EVP_aes_256_wrap(), NULL, kek, NULL) &&
             EVP_DecryptUpdate(c, cek, &n, wrapped->data, (int)wrapped->len) &&
             EVP_DecryptFinal_ex(c, cek + n, &m) && n + m == CEK_LEN;
    }
    EVP_CIPHER_CTX_free(c);
    return ok ? 0
              : pp_error_set(err, -EKEYREJECTED,
                             "JWE: the content key does not unwrap "
                             "with our key");
}

static int rsa_unwrap(const guest_teekey_t *k, const pp_buf_t *wrapped, uint8_t cek[CEK_LEN],
                      pp_error_t *err)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
    uint8_t out[512];
    size_t n = sizeof(out);
    int ok = c != NULL && EVP_PKEY_decrypt_init(c) > 0 &&
             EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha256()) > 0 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha256()) > 0 &&
             EVP_PKEY_decrypt(c, out, &n, wrapped->data, wrapped->len) > 0 && n == CEK_LEN;
    EVP_PKEY_CTX_free(c);
    if (ok)
        memcpy(cek, out, CEK_LEN);
    explicit_bzero(out, sizeof(out));
    return ok ? 0
              : pp_error_set(err, -EKEYREJECTED,
                             "JWE: the content key does not decrypt "
                             "with our key");
}

static int gcm_decrypt(const uint8_t cek[CEK_LEN], const pp_buf_t *iv, const pp_buf_t *ct,
                       const pp_buf_t *tag, const char *aad, size_t aad_len, pp_buf_t *out,
                       pp_error_t *err)
{
    if (iv->len != IV_LEN || tag->len != TAG_LEN)
        return pp_error_set(err, -EBADMSG, "JWE: A256GCM needs a %d-byte iv and a %d-byte tag",
                            IV_LEN, TAG_LEN);
    int r = pp_buf_reserve(out, ct->len + 16);
    if (r < 0)
        return pp_error_set(err, r, "JWE: the resource is larger than allowed");
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, m = 0;
    int ok = c != NULL && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, IV_LEN, NULL) &&
             EVP_DecryptInit_ex(c, NULL, NULL, cek, iv->data) &&
             EVP_DecryptUpdate(c, NULL, &n, (const uint8_t *)aad, (int)aad_len) &&
             EVP_DecryptUpdate(c, out->data + out->len, &n, ct->data, (int)ct->len) &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag->data) &&
             EVP_DecryptFinal_ex(c, out->data + out->len + n, &m) > 0;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        explicit_bzero(out->data + out->len, ct->len);
        return pp_error_set(err, -EKEYREJECTED,
                            "JWE: the content does not decrypt (tag "
                            "mismatch: altered, or not for us)");
    }
    out->len += (size_t)(n + m);
    return 0;
}

int guest_jwe_decrypt(const guest_teekey_t *k, const char *jwe, size_t len, pp_buf_t *out,
                      pp_error_t *err)
{
    if (len > GUEST_JWE_MAX)
        return pp_error_set(err, -EMSGSIZE, "JWE of %zu bytes: more than %u", len, GUEST_JWE_MAX);
    json_error_t jerr;
    json_t *root = json_loadb(jwe, len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *hdr = NULL;
    pp_buf_t ek = {0}, iv = {0}, ct = {0}, tag = {0}, ph = {0};
    uint8_t cek[CEK_LEN];
    cleanup_free char *aad = NULL;
    int r;
    if (!json_is_object(root)) {
        r = pp_error_set(err, -EBADMSG, "JWE: not a JSON object%s%s", root ? "" : ": ",
                         root ? "" : jerr.text);
        goto out;
    }
    json_t *prot = json_object_get(root, "protected");
    if (!json_is_string(prot)) {
        r = pp_error_set(err, -EBADMSG, "JWE: `protected` is missing or not a string");
        goto out;
    }
    if ((r = member(root, "protected", 4096, 1, &ph, err)) < 0)
        goto out;
    hdr = json_loadb((const char *)ph.data, ph.len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(hdr)) {
        r = pp_error_set(err, -EBADMSG, "JWE: the protected header is not a JSON object");
        goto out;
    }
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    const char *enc = json_string_value(json_object_get(hdr, "enc"));
    if (alg == NULL || enc == NULL) {
        r = pp_error_set(err, -EBADMSG, "JWE: the protected header lacks `alg` or `enc`");
        goto out;
    }
    if (strcmp(enc, "A256GCM") != 0) {
        r = pp_error_set(err, -ENOTSUP, "JWE: `enc` `%.32s` is not A256GCM", enc);
        goto out;
    }
    if ((r = member(root, "encrypted_key", 1024, 1, &ek, err)) < 0 ||
        (r = member(root, "iv", 64, 1, &iv, err)) < 0 ||
        (r = member(root, "ciphertext", GUEST_JWE_MAX, 1, &ct, err)) < 0 ||
        (r = member(root, "tag", 64, 1, &tag, err)) < 0)
        goto out;
    if (strcmp(alg, "ECDH-ES+A256KW") == 0) {
        if (k->alg == GUEST_KEY_RSA) {
            r = pp_error_set(err, -EKEYREJECTED, "JWE: `alg` %s needs an EC key; ours is RSA", alg);
            goto out;
        }
        uint8_t kek[32];
        r = ecdh_kek(k, json_object_get(hdr, "epk"), kek, err);
        if (r == 0)
            r = aes_unwrap(kek, &ek, cek, err);
        explicit_bzero(kek, sizeof(kek));
    } else if (strcmp(alg, "RSA-OAEP-256") == 0) {
        if (k->alg != GUEST_KEY_RSA) {
            r = pp_error_set(err, -EKEYREJECTED, "JWE: `alg` %s needs an RSA key; ours is EC", alg);
            goto out;
        }
        r = rsa_unwrap(k, &ek, cek, err);
    } else {
        r = pp_error_set(err, -ENOTSUP,
                         "JWE: `alg` `%.32s` is not ECDH-ES+A256KW or "
                         "RSA-OAEP-256",
                         alg);
    }
    if (r < 0)
        goto out;
    /* AAD: ASCII(BASE64URL(protected)), then "." and the aad member. */
    json_t *extra = json_object_get(root, "aad");
    if (extra != NULL && !json_is_string(extra)) {
        r = pp_error_set(err, -EBADMSG, "JWE: `aad` is not a string");
        goto out;
    }
    size_t plen = json_string_length(prot), elen = extra ? json_string_length(extra) : 0;
    aad = malloc(plen + elen + 2);
    if (aad == NULL) {
        r = pp_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    memcpy(aad, json_string_value(prot), plen);
    size_t alen = plen;
    if (extra != NULL) {
        aad[alen++] = '.';
        memcpy(aad + alen, json_string_value(extra), elen);
        alen += elen;
    }
    r = gcm_decrypt(cek, &iv, &ct, &tag, aad, alen, out, err);
out:
    explicit_bzero(cek, sizeof(cek));
    guest_buf_wipe(&ct);
    pp_buf_free(&ek);
    pp_buf_free(&iv);
    pp_buf_free(&tag);
    pp_buf_free(&ph);
    json_decref(hdr);
    json_decref(root);
    return r;
}
