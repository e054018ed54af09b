/* The TLS module as cloud-api-adaptor uses it: pp-tls.so loaded by name,
 * its ABI stamp accepted, and its table working end to end (CA, server
 * certificate, client context, initdata digest); a missing module named. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tls/tls_ops.h"

typedef struct fx_s {
    char dir[64];
    pp_module_t *module;
    const pp_tls_ops_t *ops;
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/pp-test-tlsmod.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    pp_error_t err = {0};
    if (pp_tls_ops_load(MODULE_DIR, &fx->module, &fx->ops, &err) < 0)
        fail_msg("load: %s", err.message);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    pp_module_close(fx->module);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

static void test_table(void **state)
{
    fx_t *fx = *state;
    const pp_tls_ops_t *ops = fx->ops;
    assert_string_equal(ops->name, "openssl");
    assert_string_equal(pp_module_path(fx->module), MODULE_DIR "/" PP_TLS_MODULE_FILE);

    pp_error_t err = {0};
    pp_ca_opts_t o = {.dir = fx->dir};
    pp_ca_t *ca = NULL;
    if (ops->ca_load_or_create(&o, &ca, &err) < 0)
        fail_msg("CA: %s", err.message);
    assert_true(ops->ca_can_issue(ca));
    const char *ca_pem = ops->ca_cert_pem(ca);
    assert_non_null(ca_pem);
    assert_non_null(strstr(ca_pem, "-----BEGIN CERTIFICATE-----"));

    char *cert = NULL, *key = NULL;
    assert_int_equal(ops->ca_issue_server(ca, "podvm-a-12345678", NULL, 0, &cert, &key, &err), 0);
    assert_non_null(strstr(cert, "-----BEGIN CERTIFICATE-----"));
    assert_non_null(strstr(key, "-----BEGIN PRIVATE KEY-----"));
    free(cert);
    ops->ca_secret_free(key);
    /* A name no certificate can carry is refused, with the error filled. */
    assert_int_equal(ops->ca_issue_server(ca, "bad name", NULL, 0, &cert, &key, &err), -EINVAL);
    assert_int_equal(err.code, -EINVAL);

    const char *ccert, *ckey;
    assert_int_equal(ops->ca_client_identity(ca, "cloud-api-adaptor", &ccert, &ckey, &err), 0);
    pp_tls_config_t tc = {.cert_pem = ccert, .key_pem = ckey, .ca_pem = ca_pem};
    pp_tls_ctx_t *ctx = NULL;
    assert_int_equal(ops->ctx_new(PP_TLS_CLIENT, &tc, &ctx, &err), 0);
    ops->ctx_free(ctx);
    tc.cipher_suites = "TLS_NOT_A_SUITE";
    assert_int_equal(ops->ctx_new(PP_TLS_CLIENT, &tc, &ctx, &err), -EINVAL);
    assert_non_null(strstr(err.message, "TLS_NOT_A_SUITE"));
    ops->ca_free(ca);

    /* SHA-256 of nothing. */
    uint8_t d[PP_INITDATA_DIGEST_MAX];
    size_t n = 0;
    assert_int_equal(ops->initdata_digest(PP_INITDATA_SHA256, "", 0, d, &n), 0);
    assert_int_equal(n, 32);
    static const uint8_t empty[4] = {0xe3, 0xb0, 0xc4, 0x42};
    assert_memory_equal(d, empty, sizeof(empty));
    /* ... and through the parser, which takes the digest as a parameter. */
    const char *toml = "algorithm = \"sha384\"\nversion = \"0.1.0\"\n[data]\n";
    pp_initdata_t id;
    assert_int_equal(pp_initdata_parse_with(toml, strlen(toml), ops->initdata_digest, &id, &err),
                     0);
    assert_int_equal(id.digest_len, 48);
    assert_int_equal(strlen(id.digest_hex), 96);
    pp_initdata_free(&id);
}

static void test_missing(void **state)
{
    (void)state;
    pp_module_t *m = NULL;
    const pp_tls_ops_t *ops = NULL;
    pp_error_t err = {0};
    assert_int_equal(pp_tls_ops_load("/nonexistent", &m, &ops, &err), -ENOENT);
    assert_null(m);
    assert_null(ops);
    if (strstr(err.message, "TLS: module `/nonexistent/pp-tls.so`") == NULL)
        fail_msg("unexpected: %s", err.message);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_table, setup, teardown),
        cmocka_unit_test(test_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
