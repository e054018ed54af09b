/* TLS context configuration: versions, cipher suite names (Go's and
 * OpenSSL's), certificates and keys, and the errors for each setting. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/ssl.h>

#include "tls/ca.h"
#include "tls/tls.h"

typedef struct fx_s {
    char dir[64];
    pp_ca_t *ca;
    char *cert, *key;
    char *other_cert, *other_key; /* another CA's */
    pp_ca_t *other;
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/pp-test-tlscfg.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    pp_error_t err = {0};
    char d[128];
    snprintf(d, sizeof(d), "%s/a", fx->dir);
    pp_ca_opts_t o = {.dir = d};
    assert_int_equal(pp_ca_load_or_create(&o, &fx->ca, &err), 0);
    snprintf(d, sizeof(d), "%s/b", fx->dir);
    pp_ca_opts_t o2 = {.dir = d};
    assert_int_equal(pp_ca_load_or_create(&o2, &fx->other, &err), 0);
    assert_int_equal(pp_ca_issue_server(fx->ca, "srv", NULL, 0, &fx->cert, &fx->key, &err), 0);
    assert_int_equal(
        pp_ca_issue_server(fx->other, "srv", NULL, 0, &fx->other_cert, &fx->other_key, &err), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx->cert);
    free(fx->other_cert);
    pp_ca_secret_free(fx->key);
    pp_ca_secret_free(fx->other_key);
    pp_ca_free(fx->ca);
    pp_ca_free(fx->other);
    free(fx);
    return 0;
}

static pp_tls_config_t server_cfg(fx_t *fx)
{
    pp_tls_config_t c = {
        .cert_pem = fx->cert, .key_pem = fx->key, .ca_pem = pp_ca_cert_pem(fx->ca)};
    return c;
}

static void test_versions(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int v;
    } ok[] = {
        {NULL, TLS1_2_VERSION},      {"", TLS1_2_VERSION},        {"1.2", TLS1_2_VERSION},
        {"TLS 1.2", TLS1_2_VERSION}, {"TLS12", TLS1_2_VERSION},   {"VersionTLS12", TLS1_2_VERSION},
        {"tlsv1.2", TLS1_2_VERSION}, {"1.3", TLS1_3_VERSION},     {"TLS 1.3", TLS1_3_VERSION},
        {"TLS13", TLS1_3_VERSION},   {"TLSv1.3", TLS1_3_VERSION}, {"VersionTLS13", TLS1_3_VERSION},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int v = 0;
        pp_error_t err = {0};
        assert_int_equal(pp_tls_parse_version(ok[i].s, &v, &err), 0);
        assert_int_equal(v, ok[i].v);
    }
    pp_error_t err = {0};
    int v;
    assert_int_equal(pp_tls_parse_version("1.1", &v, &err), -EINVAL);
    assert_non_null(strstr(err.message, "not supported"));
    assert_int_equal(pp_tls_parse_version("TLS 1.0", &v, &err), -EINVAL);
    assert_int_equal(pp_tls_parse_version("1.4", &v, &err), -EINVAL);
    assert_non_null(strstr(err.message, "`1.4`"));
    assert_int_equal(pp_tls_parse_version("ssl3", &v, &err), -EINVAL);
}

static void test_cipher_names(void **state)
{
    (void)state;
    int t13 = -1;
    assert_string_equal(pp_tls_cipher_openssl_name("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", &t13),
                        "ECDHE-ECDSA-AES128-GCM-SHA256");
    assert_int_equal(t13, 0);
    assert_string_equal(pp_tls_cipher_openssl_name("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", &t13),
                        "ECDHE-RSA-CHACHA20-POLY1305");
    assert_string_equal(pp_tls_cipher_openssl_name("TLS_AES_256_GCM_SHA384", &t13),
                        "TLS_AES_256_GCM_SHA384");
    assert_int_equal(t13, 1);
    /* OpenSSL's own names are accepted too, in any case. */
    assert_string_equal(pp_tls_cipher_openssl_name("ecdhe-ecdsa-aes256-gcm-sha384", &t13),
                        "ECDHE-ECDSA-AES256-GCM-SHA384");
    assert_null(pp_tls_cipher_openssl_name("TLS_RSA_WITH_RC4_128_SHA", &t13));
    assert_null(pp_tls_cipher_openssl_name("NOPE", &t13));
}

static void test_cipher_config(void **state)
{
    fx_t *fx = *state;
    pp_tls_config_t c = server_cfg(fx);
    pp_tls_ctx_t *ctx;
    pp_error_t err = {0};

    c.cipher_suites = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256";
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), 0);
    pp_tls_ctx_free(ctx);
    c.cipher_suites = "ECDHE-ECDSA-AES256-GCM-SHA384:TLS_CHACHA20_POLY1305_SHA256";
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), 0);
    pp_tls_ctx_free(ctx);

    c.cipher_suites = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_MADE_UP_SUITE";
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), -EINVAL);
    assert_non_null(strstr(err.message, "TLS_CIPHER_SUITES"));
    assert_non_null(strstr(err.message, "`TLS_MADE_UP_SUITE`"));
    c.cipher_suites = "TLS_RSA_WITH_3DES_EDE_CBC_SHA";
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), -EINVAL);
    assert_non_null(strstr(err.message, "insecure"));
    c.cipher_suites = " , ";
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), -EINVAL);
    assert_non_null(strstr(err.message, "names no suite"));
}

static void test_version_config(void **state)
{
    fx_t *fx = *state;
    pp_tls_config_t c = server_cfg(fx);
    pp_tls_ctx_t *ctx;
    pp_error_t err = {0};
    c.min_version = "TLS 1.3";
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), 0);
    pp_tls_ctx_free(ctx);
    c.min_version = "1.1";
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), -EINVAL);
    assert_non_null(strstr(err.message, "minimum TLS version"));
    c.min_version = "1.3";
    c.max_version = "1.2";
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), -EINVAL);
    assert_non_null(strstr(err.message, "below the minimum"));
}

static void test_identity_errors(void **state)
{
    fx_t *fx = *state;
    pp_tls_ctx_t *ctx = NULL;
    pp_error_t err = {0};

    pp_tls_config_t c = server_cfg(fx);
    c.key_pem = fx->other_key;
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), -EINVAL);
    assert_string_equal(err.message, "certificate and key do not match");

    c = server_cfg(fx);
    c.cert_pem = "garbage";
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), -EINVAL);
    assert_non_null(strstr(err.message, "not a PEM certificate"));

    /* A key that does not parse: the message must not quote it. */
    c = server_cfg(fx);
    char *broken = strdup(fx->key);
    broken[40] ^= 0x55;
    broken[41] ^= 0x55;
    c.key_pem = broken;
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), -EINVAL);
    assert_non_null(strstr(err.message, "key"));
    assert_null(strstr(err.message, "PRIVATE"));
    assert_null(strstr(err.message, broken + 28));
    pp_ca_secret_free(broken);

    c = server_cfg(fx);
    c.ca_pem = "no certificates here";
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), -EINVAL);
    assert_non_null(strstr(err.message, "CA certificates"));

    c = server_cfg(fx);
    c.ca_pem = NULL;
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), -EINVAL);
    assert_non_null(strstr(err.message, "mutual TLS"));
    c.no_client_auth = 1;
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), 0);
    pp_tls_ctx_free(ctx);

    c = server_cfg(fx);
    c.cert_pem = NULL;
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), -EINVAL);
    c = server_cfg(fx);
    c.skip_verify = 1;
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), -EINVAL);
    assert_non_null(strstr(err.message, "clients only"));

    /* Clients: a CA unless skipping verification; a certificate is
     * optional but needs its key. */
    pp_tls_config_t cc = {0};
    assert_int_equal(pp_tls_ctx_new(PP_TLS_CLIENT, &cc, &ctx, &err), -EINVAL);
    cc.skip_verify = 1;
    assert_int_equal(pp_tls_ctx_new(PP_TLS_CLIENT, &cc, &ctx, &err), 0);
    assert_int_equal(pp_tls_ctx_role(ctx), PP_TLS_CLIENT);
    pp_tls_ctx_free(ctx);
    cc.skip_verify = 0;
    cc.ca_pem = pp_ca_cert_pem(fx->ca);
    cc.cert_pem = fx->cert;
    assert_int_equal(pp_tls_ctx_new(PP_TLS_CLIENT, &cc, &ctx, &err), -EINVAL);
    cc.key_pem = fx->key;
    assert_int_equal(pp_tls_ctx_new(PP_TLS_CLIENT, &cc, &ctx, &err), 0);
    pp_tls_ctx_free(ctx);
}

static void test_chain_and_bundle(void **state)
{
    fx_t *fx = *state;
    /* A bundle of two CAs, and a certificate followed by its chain. */
    size_t n = strlen(pp_ca_cert_pem(fx->ca)) + strlen(pp_ca_cert_pem(fx->other)) + 1;
    char *bundle = malloc(n);
    snprintf(bundle, n, "%s%s", pp_ca_cert_pem(fx->ca), pp_ca_cert_pem(fx->other));
    n = strlen(fx->cert) + strlen(pp_ca_cert_pem(fx->ca)) + 1;
    char *chain = malloc(n);
    snprintf(chain, n, "%s%s", fx->cert, pp_ca_cert_pem(fx->ca));
    pp_tls_config_t c = {.cert_pem = chain, .key_pem = fx->key, .ca_pem = bundle};
    pp_tls_ctx_t *ctx;
    pp_error_t err = {0};
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), 0);
    pp_tls_ctx_free(ctx);
    free(bundle);
    free(chain);
}

int main(void)
{
    setenv("PP_LOG_LEVEL", "error", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_cipher_names),
        cmocka_unit_test_setup_teardown(test_cipher_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chain_and_bundle, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
