/* cloud-api-adaptor's settings: upstream's command line and spellings,
 * empty variables as unset, the provider's flags beside the daemon's, and
 * upstream's settings we lack. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "util/cleanup.h"

/* Every variable of the table is unset before each test. */
static int clean_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < caa_settings.n; i++)
        if (caa_settings.items[i].env != NULL)
            unsetenv(caa_settings.items[i].env);
    setenv("NODE_NAME", "node-1", 1);
    return 0;
}

static int load(caa_config_t *c, pp_error_t *err, int argc, char **argv)
{
    memset(err, 0, sizeof(*err));
    return caa_config_load(c, argc, argv, err);
}

static caa_config_t *cfg_new(void)
{
    caa_config_t *c = malloc(sizeof(*c));
    assert_non_null(c);
    return c;
}

static void test_defaults_as_upstream(void **state)
{
    (void)state;
    cleanup_free caa_config_t *c = cfg_new();
    pp_error_t err;
    char *argv[] = {"cloud-api-adaptor"};
    assert_int_equal(load(c, &err, 1, argv), 0);
    assert_string_equal(c->provider, "local");
    assert_string_equal(c->socket, "/run/peerpod/hypervisor.sock");
    assert_string_equal(c->pods_dir, "/run/peerpod/pods");
    assert_int_equal(c->forwarder_port, 15150);
    assert_int_equal(c->proxy_timeout_ms, 5 * 60 * 1000);
    assert_int_equal(c->vxlan_port, 4789);
    assert_int_equal(c->vxlan_min_id, 555000);
    assert_int_equal(c->peerpods_limit, 10); /* upstream's default */
    assert_string_equal(c->tls_min_version, "");
    assert_string_equal(c->ca_dir, "/run/peerpod/pods/.ca");
    assert_int_equal(c->nflags, 0);
}

/* `cloud-api-adaptor <provider> [flags]`, as upstream's entrypoint runs it;
 * else CLOUD_PROVIDER. */
static void test_provider_word(void **state)
{
    (void)state;
    cleanup_free caa_config_t *c = cfg_new();
    pp_error_t err;
    setenv("CLOUD_PROVIDER", "libvirt", 1);
    char *a1[] = {"caa", "-pods-dir", "/tmp/p"};
    assert_int_equal(load(c, &err, 3, a1), 0);
    assert_string_equal(c->provider, "libvirt");
    assert_string_equal(c->pods_dir, "/tmp/p");
    assert_int_equal(c->nflags, 2);
    char *a2[] = {"caa", "aws", "-aws-region", "us-east-1", "-socket=/tmp/s.sock"};
    assert_int_equal(load(c, &err, 5, a2), 0);
    assert_string_equal(c->provider, "aws");
    assert_string_equal(c->socket, "/tmp/s.sock");
    /* The provider's flags are left for the provider's table. */
    assert_int_equal(c->nflags, 3);
    assert_string_equal(c->flags[0], "-aws-region");
    char *a3[] = {"caa", "version"};
    assert_int_equal(load(c, &err, 2, a3), CAA_CONFIG_VERSION);
    char *a4[] = {"caa", "help"};
    assert_int_equal(load(c, &err, 2, a4), CAA_CONFIG_HELP);
}

static void test_flags_of_both_tables(void **state)
{
    (void)state;
    cleanup_free caa_config_t *c = cfg_new();
    pp_error_t err;
    static const pp_setting_t pitems[] = {
        PP_SETTING_STR(caa_config_t, node_name, "P_REGION", "aws-region", NULL, "a region"),
        PP_SETTING_BOOL_OF(caa_config_t, disable_tls, "P_CVM", "disable-cvm", NULL, "no cvm"),
    };
    static const pp_settings_table_t provider = {"p", pitems, 2};
    char *argv[] = {"caa", "p", "-aws-region", "r", "-disable-cvm", "-vxlan-port", "5000"};
    assert_int_equal(load(c, &err, 7, argv), 0);
    assert_int_equal(c->vxlan_port, 5000);
    assert_int_equal(caa_config_check_flags(c, &provider, &err), 0);
    /* Without the provider's table its flags are unknown. */
    assert_int_equal(caa_config_check_flags(c, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.message, "unknown flag `-aws-region`"));
    char *bad[] = {"caa", "p", "-no-such-flag", "1"};
    assert_int_equal(load(c, &err, 4, bad), 0);
    assert_int_equal(caa_config_check_flags(c, &provider, &err), -EINVAL);
    assert_non_null(strstr(err.message, "`-no-such-flag`"));
}

/* TLS_MIN_VERSION in upstream's spelling (its chart's value) and in the
 * ones accepted before, kept as upstream's. */
static void test_tls_min_version_spellings(void **state)
{
    (void)state;
    cleanup_free caa_config_t *c = cfg_new();
    pp_error_t err;
    char *argv[] = {"caa"};
    static const struct {
        const char *given, *kept;
    } ok[] = {
        {"VersionTLS12", "VersionTLS12"}, {"VersionTLS13", "VersionTLS13"},
        {"1.2", "VersionTLS12"},          {"TLS 1.3", "VersionTLS13"},
        {"tlsv1.2", "VersionTLS12"},      {"TLS13", "VersionTLS13"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        setenv("TLS_MIN_VERSION", ok[i].given, 1);
        assert_int_equal(load(c, &err, 1, argv), 0);
        assert_string_equal(c->tls_min_version, ok[i].kept);
    }
    setenv("TLS_MIN_VERSION", "VersionTLS11", 1);
    assert_int_equal(load(c, &err, 1, argv), -EINVAL);
    assert_non_null(strstr(err.message, "TLS 1.0 and 1.1 are not supported"));
    setenv("TLS_MIN_VERSION", "VersionTLS14", 1);
    assert_int_equal(load(c, &err, 1, argv), -EINVAL);
    assert_non_null(strstr(err.message, "`TLS_MIN_VERSION` (`-tls-min-version`): `VersionTLS14`"));
    char *flag[] = {"caa", "-tls-min-version", "VersionTLS13"};
    assert_int_equal(load(c, &err, 3, flag), 0);
    assert_string_equal(c->tls_min_version, "VersionTLS13");
}

/* An empty variable is unset, as upstream's readers treat it: the daemon
 * starts with the defaults instead of failing. */
static void test_empty_is_unset(void **state)
{
    (void)state;
    cleanup_free caa_config_t *c = cfg_new();
    pp_error_t err;
    char *argv[] = {"caa"};
    for (size_t i = 0; i < caa_settings.n; i++)
        if (caa_settings.items[i].env != NULL)
            setenv(caa_settings.items[i].env, "", 1);
    setenv("NODE_NAME", "node-1", 1);
    if (load(c, &err, 1, argv) != 0)
        fail_msg("%s", err.message);
    assert_int_equal(c->forwarder_port, 15150);
    assert_int_equal(c->proxy_timeout_ms, 300000);
    assert_int_equal(c->peerpods_limit, 10);
    assert_string_equal(c->provider, "local");
}

/* One vocabulary: Go durations and bare seconds, Go booleans and yes/no. */
static void test_vocabulary(void **state)
{
    (void)state;
    cleanup_free caa_config_t *c = cfg_new();
    pp_error_t err;
    char *argv[] = {"caa"};
    setenv("PROXY_TIMEOUT", "1m30s", 1);
    setenv("TLS_SKIP_VERIFY", "T", 1);
    setenv("DISABLE_TLS", "yes", 1);
    assert_int_equal(load(c, &err, 1, argv), 0);
    assert_int_equal(c->proxy_timeout_ms, 90000);
    assert_int_equal(c->tls_skip_verify, 1);
    assert_int_equal(c->disable_tls, 1);
    setenv("PROXY_TIMEOUT", "90", 1);
    assert_int_equal(load(c, &err, 1, argv), 0);
    assert_int_equal(c->proxy_timeout_ms, 90000);
    setenv("PROXY_TIMEOUT", "0s", 1);
    assert_int_equal(load(c, &err, 1, argv), -EINVAL);
    assert_non_null(strstr(err.message, "`PROXY_TIMEOUT`"));
    unsetenv("PROXY_TIMEOUT");
    setenv("FORWARDER_PORT", "70000", 1);
    assert_int_equal(load(c, &err, 1, argv), -EINVAL);
    assert_string_equal(err.message, "environment variable `FORWARDER_PORT`: `70000` is not a "
                                     "whole number from 1 to 65535");
}

/* Upstream's settings whose feature is absent: refused where running
 * without it would be wrong, else accepted. */
static void test_upstream_settings(void **state)
{
    (void)state;
    cleanup_free caa_config_t *c = cfg_new();
    pp_error_t err;
    char *argv[] = {"caa"};
    static const struct {
        const char *env, *value;
        int ok;
    } cases[] = {
        {"TUNNEL_TYPE", "vxlan", 1},
        {"TUNNEL_TYPE", "routing", 0},
        {"EXTERNAL_NETWORK_VIA_PODVM", "false", 1},
        {"EXTERNAL_NETWORK_VIA_PODVM", "0", 1},
        {"EXTERNAL_NETWORK_VIA_PODVM", "true", 0},
        {"ENABLE_CLOUD_PROVIDER_EXTERNAL_PLUGIN", "true", 0},
        {"ENABLE_CLOUD_PROVIDER_EXTERNAL_PLUGIN", "false", 1},
        {"PAUSE_IMAGE", "registry.k8s.io/pause:3.9", 1},
        {"CLOUD_CONFIG_VERIFY", "true", 1},
        {"ENABLE_SCRATCH_SPACE", "true", 1},
        {"POD_SUBNET_CIDRS", "10.244.0.0/16", 1},
        {"POD_UID", "0b6e8a1c", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        setenv(cases[i].env, cases[i].value, 1);
        int r = load(c, &err, 1, argv);
        if (cases[i].ok && r != 0)
            fail_msg("%s=%s: %s", cases[i].env, cases[i].value, err.message);
        if (!cases[i].ok) {
            assert_int_equal(r, -ENOTSUP);
            assert_non_null(strstr(err.message, cases[i].env));
        }
        unsetenv(cases[i].env);
    }
    /* Upstream's flags too. */
    char *flags[] = {"caa",
                     "-pause-image",
                     "x",
                     "-tunnel-type",
                     "vxlan",
                     "-cloud-config-verify",
                     "-ext-network-via-podvm=false"};
    assert_int_equal(load(c, &err, 7, flags), 0);
    assert_int_equal(caa_config_check_flags(c, NULL, &err), 0);
    char *ext[] = {"caa", "-ext-network-via-podvm"};
    assert_int_equal(load(c, &err, 2, ext), -ENOTSUP);
}

/* -h and -list-settings show the tables even when a value is bad. */
static void test_tables_despite_bad_values(void **state)
{
    (void)state;
    cleanup_free caa_config_t *c = cfg_new();
    pp_error_t err;
    setenv("FORWARDER_PORT", "none", 1);
    setenv("CLOUD_PROVIDER", "libvirt", 1);
    char *list[] = {"caa", "-list-settings"};
    assert_int_equal(load(c, &err, 2, list), CAA_CONFIG_LIST);
    assert_string_equal(c->provider, "libvirt");
    char *help[] = {"caa", "aws", "-h"};
    assert_int_equal(load(c, &err, 3, help), CAA_CONFIG_HELP);
    assert_string_equal(c->provider, "aws");
    char *run[] = {"caa"};
    assert_int_equal(load(c, &err, 1, run), -EINVAL);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    caa_config_list(f, NULL);
    fclose(f);
    assert_non_null(strstr(buf, "PEERPODS_LIMIT_PER_NODE\tpeerpods-limit-per-node\tint\tsupported"
                                "\t10\n"));
    assert_non_null(strstr(buf, "TUNNEL_TYPE\ttunnel-type\tstring\trefuse\t-\n"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults_as_upstream, clean_env),
        cmocka_unit_test_setup(test_provider_word, clean_env),
        cmocka_unit_test_setup(test_flags_of_both_tables, clean_env),
        cmocka_unit_test_setup(test_tls_min_version_spellings, clean_env),
        cmocka_unit_test_setup(test_empty_is_unset, clean_env),
        cmocka_unit_test_setup(test_vocabulary, clean_env),
        cmocka_unit_test_setup(test_upstream_settings, clean_env),
        cmocka_unit_test_setup(test_tables_despite_bad_values, clean_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
