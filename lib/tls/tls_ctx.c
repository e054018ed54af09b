/* TLS contexts: versions, cipher suites, certificates, verification. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls/tls_int.h"
#include "util/buf.h"
#include "util/cleanup.h"
#include "util/log.h"

BIO_METHOD *pp__tls_bio_method_new(void);

/* ---- versions ---------------------------------------------------------- */

/* Spellings seen in configuration: ours, Go's constants, OpenSSL's. */
static const struct {
    const char *name;
    int version;
} versions[] = {
    {"1.2", TLS1_2_VERSION},
    {"tls1.2", TLS1_2_VERSION},
    {"tls 1.2", TLS1_2_VERSION},
    {"tlsv1.2", TLS1_2_VERSION},
    {"tls12", TLS1_2_VERSION},
    {"tls_1.2", TLS1_2_VERSION},
    {"versiontls12", TLS1_2_VERSION},
    {"1.3", TLS1_3_VERSION},
    {"tls1.3", TLS1_3_VERSION},
    {"tls 1.3", TLS1_3_VERSION},
    {"tlsv1.3", TLS1_3_VERSION},
    {"tls13", TLS1_3_VERSION},
    {"tls_1.3", TLS1_3_VERSION},
    {"versiontls13", TLS1_3_VERSION},
    /* Known, and refused with a reason below. */
    {"1.0", TLS1_VERSION},
    {"tls1.0", TLS1_VERSION},
    {"tls 1.0", TLS1_VERSION},
    {"tlsv1.0", TLS1_VERSION},
    {"tls10", TLS1_VERSION},
    {"versiontls10", TLS1_VERSION},
    {"1.1", TLS1_1_VERSION},
    {"tls1.1", TLS1_1_VERSION},
    {"tls 1.1", TLS1_1_VERSION},
    {"tlsv1.1", TLS1_1_VERSION},
    {"tls11", TLS1_1_VERSION},
    {"versiontls11", TLS1_1_VERSION},
};

int pp_tls_parse_version(const char *s, int *out, pp_error_t *err)
{
    if (s == NULL || *s == '\0') {
        *out = TLS1_2_VERSION;
        return 0;
    }
    for (size_t i = 0; i < PP_ARRAY_SIZE(versions); i++) {
        if (strcasecmp(s, versions[i].name) != 0)
            continue;
        if (versions[i].version < TLS1_2_VERSION)
            return pp_error_set(err, -EINVAL, "TLS version `%s` is not supported: use 1.2 or 1.3",
                                s);
        *out = versions[i].version;
        return 0;
    }
    return pp_error_set(err, -EINVAL, "unknown TLS version `%s`: expected 1.2 or 1.3", s);
}

static const char *version_name(int v)
{
    return v == TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2";
}

/* ---- cipher suites ----------------------------------------------------- */

/* Go's crypto/tls names (the IANA names) and OpenSSL's. TLS 1.3 suites have
 * the same name in both. */
static const struct {
    const char *go;
    const char *openssl;
    unsigned tls13 : 1;
    unsigned insecure : 1;
} ciphers[] = {
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", 1, 0},
    {"TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384", 1, 0},
    {"TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256", 1, 0},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256", 0, 0},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384", 0, 0},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305", 0, 0},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305", 0, 0},
    {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256", 0, 0},
    {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384", 0, 0},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305", 0, 0},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA-CHACHA20-POLY1305", 0, 0},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA", 0, 0},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA", 0, 0},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256", 0, 0},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA", 0, 0},
    {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA", 0, 0},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256", 0, 0},
    {"TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256", 0, 0},
    {"TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384", 0, 0},
    {"TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA", 0, 0},
    {"TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA", 0, 0},
    {"TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256", 0, 0},
    {"TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA", 0, 1},
    {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA", 0, 1},
    {"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-ECDSA-RC4-SHA", 0, 1},
    {"TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA", 0, 1},
    {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA", 0, 1},
};

static int cipher_index(const char *name)
{
    for (size_t i = 0; i < PP_ARRAY_SIZE(ciphers); i++)
        if (strcasecmp(name, ciphers[i].go) == 0 || strcasecmp(name, ciphers[i].openssl) == 0)
            return (int)i;
    return -1;
}

const char *pp_tls_cipher_openssl_name(const char *name, int *tls13)
{
    int i = cipher_index(name);
    if (i < 0 || ciphers[i].insecure)
        return NULL;
    if (tls13 != NULL)
        *tls13 = ciphers[i].tls13;
    return ciphers[i].openssl;
}

static int append_name(pp_buf_t *b, const char *name)
{
    if (b->len > 0 && pp_buf_append_byte(b, ':') < 0)
        return -ENOMEM;
    return pp_buf_printf(b, "%s", name);
}

/* Splits the list on commas, colons and blanks into the TLS 1.2 and TLS 1.3
 * lists OpenSSL takes, naming the first unknown suite. */
static int set_ciphers(SSL_CTX *sc, const char *list, int min_version, pp_error_t *err)
{
    __attribute__((cleanup(pp_buf_free))) pp_buf_t l12, l13;
    pp_buf_init(&l12, 4096);
    pp_buf_init(&l13, 4096);
    const char *p = list;
    while (*p != '\0') {
        size_t n = strcspn(p, ",: \t\n");
        if (n == 0) {
            p++;
            continue;
        }
        char name[96];
        if (n >= sizeof(name))
            return pp_error_set(err, -EINVAL, "unknown cipher suite `%.40s...`", p);
        memcpy(name, p, n);
        name[n] = '\0';
        p += n;
        int i = cipher_index(name);
        if (i < 0)
            return pp_error_set(err, -EINVAL, "unknown cipher suite `%s`", name);
        if (ciphers[i].insecure)
            return pp_error_set(err, -EINVAL, "cipher suite `%s` is insecure and not supported",
                                name);
        if (append_name(ciphers[i].tls13 ? &l13 : &l12, ciphers[i].openssl) < 0)
            return pp_error_set(err, -ENOMEM, "cipher suites: out of memory");
    }
    if (l12.len == 0 && l13.len == 0)
        return pp_error_set(err, -EINVAL, "cipher suite list `%s` names no suite", list);
    if (l12.len > 0) {
        if (min_version >= TLS1_3_VERSION)
            PP_WARN("tls", "TLS 1.2 cipher suites in TLS_CIPHER_SUITES have no effect with "
                           "minimum version TLS 1.3");
        char reason[128];
        if (!SSL_CTX_set_cipher_list(sc, (const char *)l12.data))
            return pp_error_set(err, -EINVAL, "cipher suites `%s`: %s", (const char *)l12.data,
                                pp__tls_ssl_reason(reason, sizeof(reason)));
    }
    if (l13.len > 0) {
        char reason[128];
        if (!SSL_CTX_set_ciphersuites(sc, (const char *)l13.data))
            return pp_error_set(err, -EINVAL, "cipher suites `%s`: %s", (const char *)l13.data,
                                pp__tls_ssl_reason(reason, sizeof(reason)));
    }
    return 0;
}

/* ---- certificates ------------------------------------------------------ */

const char *pp__tls_ssl_reason(char *buf, size_t n)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    if (r != NULL)
        snprintf(buf, n, "%s", r);
    else if (e != 0)
        snprintf(buf, n, "error %lu", e);
    else
        snprintf(buf, n, "unknown error");
    ERR_clear_error();
    return buf;
}

/* Our certificate and key: the first certificate is the leaf, any others
 * are sent along as its chain. */
static int load_identity(SSL_CTX *sc, const char *cert_pem, const char *key_pem, pp_error_t *err)
{
    char reason[128];
    cleanup_bio BIO *cb = BIO_new_mem_buf(cert_pem, -1);
    if (cb == NULL)
        return pp_error_set(err, -ENOMEM, "certificate: out of memory");
    X509 *leaf = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    if (leaf == NULL)
        return pp_error_set(err, -EINVAL, "certificate: not a PEM certificate (%s)",
                            pp__tls_ssl_reason(reason, sizeof(reason)));
    int ok = SSL_CTX_use_certificate(sc, leaf);
    X509_free(leaf);
    if (!ok)
        return pp_error_set(err, -EINVAL, "certificate: %s",
                            pp__tls_ssl_reason(reason, sizeof(reason)));
    X509 *extra;
    while ((extra = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL) {
        if (!SSL_CTX_add0_chain_cert(sc, extra)) {
            X509_free(extra);
            return pp_error_set(err, -EINVAL, "certificate chain: %s",
                                pp__tls_ssl_reason(reason, sizeof(reason)));
        }
    }
    ERR_clear_error(); /* the end of the PEM input */

    cleanup_bio BIO *kb = BIO_new_mem_buf(key_pem, -1);
    if (kb == NULL)
        return pp_error_set(err, -ENOMEM, "key: out of memory");
    EVP_PKEY *key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    if (key == NULL)
        return pp_error_set(err, -EINVAL, "key: not a PEM private key (%s)",
                            pp__tls_ssl_reason(reason, sizeof(reason)));
    if (!X509_check_private_key(SSL_CTX_get0_certificate(sc), key)) {
        EVP_PKEY_free(key);
        ERR_clear_error();
        return pp_error_set(err, -EINVAL, "certificate and key do not match");
    }
    ok = SSL_CTX_use_PrivateKey(sc, key);
    EVP_PKEY_free(key);
    if (!ok)
        return pp_error_set(err, -EINVAL, "key: %s", pp__tls_ssl_reason(reason, sizeof(reason)));
    if (!SSL_CTX_check_private_key(sc)) {
        ERR_clear_error();
        return pp_error_set(err, -EINVAL, "certificate and key do not match");
    }
    X509 *mine = SSL_CTX_get0_certificate(sc);
    if (X509_cmp_current_time(X509_get0_notAfter(mine)) < 0)
        PP_WARN("tls", "our certificate has expired: peers will refuse it");
    return 0;
}

/* Trusted CAs go into the verification store; a server also tells clients
 * which CAs it accepts, so that they pick the right certificate. */
static int load_trust(SSL_CTX *sc, const char *ca_pem, int server, pp_error_t *err)
{
    char reason[128];
    cleanup_bio BIO *b = BIO_new_mem_buf(ca_pem, -1);
    if (b == NULL)
        return pp_error_set(err, -ENOMEM, "CA certificates: out of memory");
    X509_STORE *store = SSL_CTX_get_cert_store(sc);
    STACK_OF(X509_NAME) *names = server ? sk_X509_NAME_new_null() : NULL;
    if (server && names == NULL)
        return pp_error_set(err, -ENOMEM, "CA certificates: out of memory");
    int count = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        int ok = X509_STORE_add_cert(store, x);
        if (ok && names != NULL) {
            X509_NAME *dup = X509_NAME_dup(X509_get_subject_name(x));
            ok = dup != NULL && sk_X509_NAME_push(names, dup) > 0;
            if (!ok)
                X509_NAME_free(dup);
        }
        X509_free(x);
        if (!ok) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            return pp_error_set(err, -EINVAL, "CA certificates: %s",
                                pp__tls_ssl_reason(reason, sizeof(reason)));
        }
        count++;
    }
    ERR_clear_error();
    if (count == 0) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return pp_error_set(err, -EINVAL, "CA certificates: no PEM certificate found");
    }
    if (names != NULL)
        SSL_CTX_set_client_CA_list(sc, names);
    return 0;
}

/* ---- contexts ---------------------------------------------------------- */

pp_tls_ctx_t *pp__tls_ctx_ref(pp_tls_ctx_t *ctx)
{
    __atomic_fetch_add(&ctx->refs, 1, __ATOMIC_RELAXED);
    return ctx;
}

void pp_tls_ctx_free(pp_tls_ctx_t *ctx)
{
    if (ctx == NULL || __atomic_sub_fetch(&ctx->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    BIO_meth_free(ctx->bio_method);
    free(ctx);
}

pp_tls_role_t pp_tls_ctx_role(const pp_tls_ctx_t *ctx)
{
    return ctx->role;
}

static int ctx_setup(pp_tls_ctx_t *ctx, const pp_tls_config_t *cfg, pp_error_t *err)
{
    int server = ctx->role == PP_TLS_SERVER;
    int min, max = 0;
    if (pp_tls_parse_version(cfg->min_version, &min, err) < 0)
        return pp_error_wrap(err, "minimum TLS version");
    if (cfg->max_version != NULL && *cfg->max_version != '\0') {
        if (pp_tls_parse_version(cfg->max_version, &max, err) < 0)
            return pp_error_wrap(err, "maximum TLS version");
        if (max < min)
            return pp_error_set(err, -EINVAL, "maximum TLS version %s is below the minimum %s",
                                version_name(max), version_name(min));
    }
    if (cfg->skip_verify && server)
        return pp_error_set(err, -EINVAL,
                            "skip_verify applies to clients only; servers use no_client_auth");
    if (server && (cfg->cert_pem == NULL || cfg->key_pem == NULL))
        return pp_error_set(err, -EINVAL, "a TLS server needs a certificate and a key");
    if ((cfg->cert_pem == NULL) != (cfg->key_pem == NULL))
        return pp_error_set(err, -EINVAL, "a certificate needs its key and a key its certificate");
    ctx->verify_peer = server ? !cfg->no_client_auth : !cfg->skip_verify;
    ctx->handshake_failures =
        pp_metrics_counter(cfg->metrics, "peerpod_tls_handshake_failures_total",
                           "TLS handshakes that failed, by our role and why.", "role,reason");
    if (ctx->verify_peer && cfg->ca_pem == NULL)
        return pp_error_set(err, -EINVAL, "no CA certificate to verify the %s with",
                            server ? "client (mutual TLS)" : "server");

    ctx->ssl_ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    ctx->bio_method = pp__tls_bio_method_new();
    if (ctx->ssl_ctx == NULL || ctx->bio_method == NULL)
        return pp_error_set(err, -ENOMEM, "TLS context: out of memory");
    SSL_CTX *sc = ctx->ssl_ctx;
    if (!SSL_CTX_set_min_proto_version(sc, min) ||
        (max != 0 && !SSL_CTX_set_max_proto_version(sc, max)))
        return pp_error_set(err, -EINVAL, "TLS versions not supported by the library");
    /* Sessions are never resumed: every connection is a full handshake with
     * certificate checks, and no ticket keys live in the process. */
    SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET |
                                (server ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
    /* Send the chain as configured; the CAs trusted for verifying peers
     * are no part of it. */
    /* Idle connections (one per pod, mostly idle) give their record
     * buffers back between reads and writes. */
    SSL_CTX_set_mode(sc, SSL_MODE_NO_AUTO_CHAIN | SSL_MODE_RELEASE_BUFFERS);
    if (server)
        SSL_CTX_set_num_tickets(sc, 0);
    if (cfg->cipher_suites != NULL && *cfg->cipher_suites != '\0') {
        int r = set_ciphers(sc, cfg->cipher_suites, min, err);
        if (r < 0)
            return pp_error_wrap(err, "TLS_CIPHER_SUITES");
    }
    if (cfg->cert_pem != NULL) {
        int r = load_identity(sc, cfg->cert_pem, cfg->key_pem, err);
        if (r < 0)
            return r;
    }
    if (cfg->ca_pem != NULL) {
        int r = load_trust(sc, cfg->ca_pem, server, err);
        if (r < 0)
            return r;
    }
    if (!ctx->verify_peer)
        SSL_CTX_set_verify(sc, SSL_VERIFY_NONE, NULL);
    else if (server)
        SSL_CTX_set_verify(sc, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    else
        SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
    if (!server && cfg->skip_verify)
        PP_WARN("tls", "TLS_SKIP_VERIFY is set: server certificates are NOT verified; anyone on "
                       "the path can impersonate the server. Never use this in production");
    if (server && cfg->no_client_auth)
        PP_WARN("tls", "client certificates are not required: any client can connect");
    ctx->timeout_ms =
        cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms : PP_TLS_HANDSHAKE_TIMEOUT_MS;
    return 0;
}

int pp_tls_ctx_new(pp_tls_role_t role, const pp_tls_config_t *cfg, pp_tls_ctx_t **out,
                   pp_error_t *err)
{
    if (cfg == NULL || out == NULL || (role != PP_TLS_SERVER && role != PP_TLS_CLIENT))
        return pp_error_set(err, -EINVAL, "TLS context: bad arguments");
    pp_tls_ctx_t *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return pp_error_set(err, -ENOMEM, "TLS context: out of memory");
    ctx->refs = 1;
    ctx->role = role;
    ERR_clear_error();
    int r = ctx_setup(ctx, cfg, err);
    if (r < 0) {
        ERR_clear_error();
        pp_tls_ctx_free(ctx);
        return r;
    }
    *out = ctx;
    return 0;
}
