/* agent-protocol-forwarder configuration: flags and the JSON file. */
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

#include "config.h"
#include "net/net.h"

static int parse(apf_config_t *cfg, pp_error_t *err, ...)
{
    char *argv[32] = {"agent-protocol-forwarder"};
    int argc = 1;
    va_list ap;
    va_start(ap, err);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 31;)
        argv[argc++] = a;
    va_end(ap);
    return apf_config_parse_args(cfg, argc, argv, err);
}

static int setup(void **state)
{
    apf_config_t *cfg = malloc(sizeof(*cfg));
    assert_non_null(cfg);
    assert_int_equal(apf_config_init(cfg), 0);
    *state = cfg;
    return 0;
}

static int teardown(void **state)
{
    apf_config_fini(*state);
    free(*state);
    return 0;
}

static void test_defaults(void **state)
{
    apf_config_t *cfg = *state;
    pp_error_t err = {0};
    assert_int_equal(parse(cfg, &err, NULL), 0);
    assert_string_equal(cfg->listen, "0.0.0.0:15150");
    assert_string_equal(cfg->agent_socket, "/run/kata-containers/agent.sock");
    assert_string_equal(cfg->config_path, "/run/peerpod/apf.json");
    assert_string_equal(cfg->netns_path, "/run/netns/podns");
    assert_int_equal(cfg->agent_wait_ms, 150000);
    assert_int_equal(cfg->busy_poll_us, 0);
    assert_false(cfg->disable_tls);
    assert_false(cfg->file_loaded);
    assert_null(cfg->pod_name);
}

static void test_flags(void **state)
{
    apf_config_t *cfg = *state;
    pp_error_t err = {0};
    int r = parse(cfg, &err, "-listen", "127.0.0.1:1234", "--kata-agent-socket=/tmp/a.sock",
                  "-config", "/tmp/apf.json", "-pod-namespace=/run/netns/other", "-disable-tls",
                  "-kata-agent-timeout", "1500ms", NULL);
    assert_int_equal(r, 0);
    assert_string_equal(cfg->listen, "127.0.0.1:1234");
    assert_string_equal(cfg->agent_socket, "/tmp/a.sock");
    assert_string_equal(cfg->config_path, "/tmp/apf.json");
    assert_string_equal(cfg->netns_path, "/run/netns/other");
    assert_true(cfg->disable_tls);
    assert_int_equal(cfg->agent_wait_ms, 1500);

    assert_int_equal(parse(cfg, &err, "-disable-tls=false", "-kata-agent-timeout=2m", NULL), 0);
    assert_false(cfg->disable_tls);
    assert_int_equal(cfg->agent_wait_ms, 120000);
    assert_int_equal(parse(cfg, &err, "-kata-agent-timeout", "3", NULL), 0);
    assert_int_equal(cfg->agent_wait_ms, 3000);
    assert_int_equal(parse(cfg, &err, "-busy-poll-us", "0", NULL), 0);
    assert_int_equal(cfg->busy_poll_us, 0);
    assert_int_equal(parse(cfg, &err, "-busy-poll-us=100000", NULL), 0);
    assert_int_equal(cfg->busy_poll_us, 100000);
    setenv("BUSY_POLL_US", "200", 1);
    assert_int_equal(parse(cfg, &err, NULL), 0);
    assert_int_equal(cfg->busy_poll_us, 200);
    assert_int_equal(parse(cfg, &err, "-busy-poll-us", "50", NULL), 0);
    assert_int_equal(cfg->busy_poll_us, 50); /* the flag wins */
    unsetenv("BUSY_POLL_US");
    assert_int_equal(parse(cfg, &err, "-listen", "[::1]:15150", NULL), 0);
    assert_int_equal(parse(cfg, &err, "-help", NULL), 0);
    assert_true(cfg->show_help);
    assert_int_equal(parse(cfg, &err, "-version", NULL), 0);
    assert_true(cfg->show_version);
    /* Upstream's flags, as its unit file passes them. */
    assert_int_equal(parse(cfg, &err, "-host-interface", "eth1", "-tls-skip-verify",
                           "-ca-cert-file", "/etc/c/ca.crt", "-cert-file", "/etc/c/s.crt",
                           "-cert-key", "/etc/c/s.key", NULL),
                     0);
    assert_string_equal(cfg->ca_cert_file, "/etc/c/ca.crt");
    assert_string_equal(cfg->cert_key, "/etc/c/s.key");
}

static void assert_rejected(apf_config_t *cfg, const char *needle, ...)
{
    char *argv[8] = {"agent-protocol-forwarder"};
    int argc = 1;
    va_list ap;
    va_start(ap, needle);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 7;)
        argv[argc++] = a;
    va_end(ap);
    pp_error_t err = {0};
    assert_int_equal(apf_config_parse_args(cfg, argc, argv, &err), -EINVAL);
    print_message("error: %s\n", err.message);
    assert_non_null(strstr(err.message, needle));
}

static void test_bad_flags(void **state)
{
    apf_config_t *cfg = *state;
    assert_rejected(cfg, "unknown flag `-bogus`", "-bogus", NULL);
    assert_rejected(cfg, "unknown flag `-listenx=1`", "-listenx=1", NULL);
    assert_rejected(cfg, "`-listen` needs a value", "-listen", NULL);
    assert_rejected(cfg, "`-listen`: expected host:port, got ``", "-listen=", NULL);
    assert_rejected(cfg, "`-disable-tls`: `maybe` is not true or false", "-disable-tls=maybe",
                    NULL);
    assert_rejected(cfg, "`-cert-file` is set but `-cert-key` is not", "-cert-file", "/c", NULL);
    assert_rejected(cfg, "`-kata-agent-timeout`", "-kata-agent-timeout", "soon", NULL);
    assert_rejected(cfg, "`-kata-agent-timeout`", "-kata-agent-timeout", "5h", NULL);
    assert_rejected(cfg, "`-kata-agent-timeout`", "-kata-agent-timeout", "-5s", NULL);
    assert_rejected(cfg, "`-busy-poll-us`: `100001` is not a whole number from 0 to 100000",
                    "-busy-poll-us", "100001", NULL);
    assert_rejected(cfg, "`-busy-poll-us`", "-busy-poll-us", "-1", NULL);
    assert_rejected(cfg, "`-busy-poll-us`", "-busy-poll-us", "200us", NULL);
    assert_rejected(cfg, "`-busy-poll-us`", "-busy-poll-us", "", NULL);
    assert_rejected(cfg, "unexpected argument `stray`", "stray", NULL);
    setenv("BUSY_POLL_US", "soon", 1);
    assert_rejected(cfg, "`BUSY_POLL_US`: `soon` is not a whole number", NULL);
    unsetenv("BUSY_POLL_US");
    assert_rejected(cfg, "`-pod-namespace`: expected an absolute path", "-pod-namespace", "podns",
                    NULL);
}

static int apply(apf_config_t *cfg, const char *json, pp_error_t *err)
{
    return apf_config_apply_json(cfg, json, strlen(json), "test.json", err);
}

static void test_json(void **state)
{
    apf_config_t *cfg = *state;
    pp_error_t err = {0};
    const char *doc = "{\"pod-name\": \"nginx\", \"pod-namespace\": \"default\","
                      " \"pod-network\": {\"podip\": \"10.244.1.5/24\", \"mtu\": 1450},"
                      " \"tls-server-cert\": \"-----BEGIN CERTIFICATE-----\","
                      " \"sc\": true, \"something-new\": [1, 2, 3]}";
    assert_int_equal(apply(cfg, doc, &err), 0);
    assert_true(cfg->file_loaded);
    assert_string_equal(cfg->pod_name, "nginx");
    assert_string_equal(cfg->pod_namespace, "default");
    assert_true(cfg->has_pod_network);
    assert_true(cfg->has_tls_material);
    /* The file never changes the network namespace path. */
    assert_string_equal(cfg->netns_path, "/run/netns/podns");

    assert_int_equal(apply(cfg, "{\"pod-name\": null}", &err), 0);
    assert_int_equal(apply(cfg, "{}", &err), 0);

    /* TLS settings as upstream's daemon writes them, and as this one did. */
    assert_int_equal(apply(cfg,
                           "{\"tls-min-version\": \"VersionTLS12\", \"tls-cipher-suites\": "
                           "[\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\", "
                           "\"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"]}",
                           &err),
                     0);
    assert_string_equal(cfg->tls_min_version, "VersionTLS12");
    assert_string_equal(
        cfg->tls_cipher_suites,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
    assert_int_equal(apply(cfg, "{\"tls-cipher-suites\": \"TLS_AES_128_GCM_SHA256\"}", &err), 0);
    assert_string_equal(cfg->tls_cipher_suites, "TLS_AES_128_GCM_SHA256");
    assert_int_equal(apply(cfg, "{\"tls-cipher-suites\": []}", &err), 0);
    assert_string_equal(cfg->tls_cipher_suites, "");
}

static void assert_json_rejected(apf_config_t *cfg, const char *json, const char *needle)
{
    pp_error_t err = {0};
    assert_int_equal(apply(cfg, json, &err), -EINVAL);
    print_message("error: %s\n", err.message);
    assert_non_null(strstr(err.message, "config `test.json`"));
    assert_non_null(strstr(err.message, needle));
}

static void test_json_rejected(void **state)
{
    apf_config_t *cfg = *state;
    assert_json_rejected(cfg, "{\"pod-name\": \"x\",", "line 1 column");
    assert_json_rejected(cfg, "", "line");
    assert_json_rejected(cfg, "[1]", "expected a JSON object, got an array");
    assert_json_rejected(cfg, "{\"pod-name\": 5}",
                         "key `pod-name`: expected a string, got a number");
    assert_json_rejected(cfg, "{\"pod-network\": \"x\"}",
                         "key `pod-network`: expected an object, got a string");
    assert_json_rejected(cfg, "{\"a\": 1, \"a\": 2}", "duplicate");
    assert_json_rejected(cfg, "{\"tls-cipher-suites\": [1]}", "expected an array of names");
    assert_json_rejected(cfg, "{\"tls-cipher-suites\": [\"A,B\"]}", "expected an array of names");
    assert_json_rejected(cfg, "{\"tls-cipher-suites\": 5}", "expected an array, got a number");
}

static void test_file(void **state)
{
    apf_config_t *cfg = *state;
    pp_error_t err = {0};
    char dir[] = "/tmp/apf-config-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];

    /* Absent: fine, nothing loaded. */
    snprintf(path, sizeof(path), "%s/absent.json", dir);
    assert_int_equal(parse(cfg, &err, "-config", path, NULL), 0);
    assert_int_equal(apf_config_load_file(cfg, &err), 0);
    assert_false(cfg->file_loaded);

    snprintf(path, sizeof(path), "%s/apf.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"pod-name\": \"busybox\", \"pod-namespace\": \"ns1\"}\n", f);
    fclose(f);
    assert_int_equal(parse(cfg, &err, "-config", path, NULL), 0);
    assert_int_equal(apf_config_load_file(cfg, &err), 0);
    assert_true(cfg->file_loaded);
    assert_string_equal(cfg->pod_name, "busybox");
    assert_string_equal(cfg->pod_namespace, "ns1");

    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\n  \"pod-name\": \"busybox\"\n  \"pod-namespace\": \"ns1\"\n}\n", f);
    fclose(f);
    assert_int_equal(apf_config_load_file(cfg, &err), -EINVAL);
    print_message("error: %s\n", err.message);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "line 3"));
    unlink(path);

    /* A directory is not a config file. */
    assert_int_equal(parse(cfg, &err, "-config", dir, NULL), 0);
    assert_int_equal(apf_config_load_file(cfg, &err), -EINVAL);
    assert_non_null(strstr(err.message, "not a regular file"));
    rmdir(dir);
}

/* apf.json as upstream's daemon writes it: its TLS profile (an array of
 * suites), and its pod network (a route with `"gw": ""`, omitted protocol
 * and scope), read by this forwarder. */
static void test_upstream_apf_json(void **state)
{
    apf_config_t *cfg = *state;
    pp_error_t err = {0};
    assert_int_equal(parse(cfg, &err, "-config", UPSTREAM_APF, NULL), 0);
    if (apf_config_load_file(cfg, &err) < 0)
        fail_msg("%s", err.message);
    assert_string_equal(cfg->pod_name, "nginx-7c5ddbdf54-x2x8k");
    assert_string_equal(cfg->pod_namespace, "default");
    assert_true(cfg->has_tls_material);
    assert_string_equal(cfg->tls_min_version, "VersionTLS12");
    assert_string_equal(cfg->tls_cipher_suites, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,"
                                                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
    assert_true(cfg->has_pod_network);
    pp_podnet_t *pn = calloc(1, sizeof(*pn));
    assert_non_null(pn);
    if (pp_podnet_from_json(cfg->pod_network, pn, &err) < 0)
        fail_msg("pod-network: %s", err.message);
    assert_string_equal(pn->interface, "eth0");
    assert_int_equal(pn->vxlan_id, 555003);
    assert_int_equal(pn->vxlan_port, 4789);
    assert_int_equal(pn->mtu, 1450);
    assert_int_equal(pn->n_routes, 3);
    assert_false(pn->routes[1].has_gw);
    assert_int_equal(pn->n_neighbors, 1);
    free(pn);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* -ca-cert-file, -cert-file and -cert-key win over the file's TLS material,
 * as upstream's. */
static void test_tls_files(void **state)
{
    apf_config_t *cfg = *state;
    pp_error_t err = {0};
    char dir[] = "/tmp/apf-tls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char ca[256], crt[256], key[256], bad[256];
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
    snprintf(crt, sizeof(crt), "%s/s.crt", dir);
    snprintf(key, sizeof(key), "%s/s.key", dir);
    snprintf(bad, sizeof(bad), "%s/bad", dir);
    write_file(ca, "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n");
    write_file(crt, "-----BEGIN CERTIFICATE-----\nS\n-----END CERTIFICATE-----\n");
    write_file(key, "-----BEGIN PRIVATE KEY-----\nK\n-----END PRIVATE KEY-----\n");
    write_file(bad, "not pem\n");
    assert_int_equal(apply(cfg,
                           "{\"tls-server-cert\": \"FILE CERT\", \"tls-server-key\": \"FILE KEY\","
                           " \"tls-client-ca\": \"FILE CA\"}",
                           &err),
                     0);
    /* Without the flags, the file's. */
    assert_int_equal(parse(cfg, &err, NULL), 0);
    assert_int_equal(apf_config_load_tls_files(cfg, &err), 0);
    assert_string_equal(cfg->tls_server_cert, "FILE CERT");
    assert_int_equal(
        parse(cfg, &err, "-ca-cert-file", ca, "-cert-file", crt, "-cert-key", key, NULL), 0);
    assert_int_equal(apf_config_load_tls_files(cfg, &err), 0);
    assert_non_null(strstr(cfg->tls_client_ca, "\nCA\n"));
    assert_non_null(strstr(cfg->tls_server_cert, "\nS\n"));
    assert_non_null(strstr(cfg->tls_server_key, "\nK\n"));
    assert_true(cfg->has_tls_material);
    assert_int_equal(parse(cfg, &err, "-ca-cert-file", bad, NULL), 0);
    assert_int_equal(apf_config_load_tls_files(cfg, &err), -EINVAL);
    assert_non_null(strstr(err.message, "flag `-ca-cert-file`"));
    assert_int_equal(parse(cfg, &err, "-cert-file", crt, "-cert-key", "/nonexistent", NULL), 0);
    assert_int_equal(apf_config_load_tls_files(cfg, &err), -ENOENT);
    assert_non_null(strstr(err.message, "flag `-cert-key`: `/nonexistent`"));
    unlink(ca);
    unlink(crt);
    unlink(key);
    unlink(bad);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_apf_json, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
