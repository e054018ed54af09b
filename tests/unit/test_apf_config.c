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
    assert_int_equal(cfg->agent_wait_ms, 3000);
    assert_int_equal(parse(cfg, &err, "-help", NULL), 0);
    assert_true(cfg->show_help);
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
    assert_rejected(cfg, "unknown flag `-listenx`", "-listenx=1", NULL);
    assert_rejected(cfg, "`-listen` needs a value", "-listen", NULL);
    assert_rejected(cfg, "`-listen` needs a non-empty value", "-listen=", NULL);
    assert_rejected(cfg, "`-disable-tls`: expected true or false", "-disable-tls=maybe", NULL);
    assert_rejected(cfg, "`-kata-agent-timeout`", "-kata-agent-timeout", "soon", NULL);
    assert_rejected(cfg, "`-kata-agent-timeout`", "-kata-agent-timeout", "5h", NULL);
    assert_rejected(cfg, "`-kata-agent-timeout`", "-kata-agent-timeout", "-5s", NULL);
    assert_rejected(cfg, "`-busy-poll-us`: expected microseconds from 0 to 100000", "-busy-poll-us",
                    "100001", NULL);
    assert_rejected(cfg, "`-busy-poll-us`", "-busy-poll-us", "-1", NULL);
    assert_rejected(cfg, "`-busy-poll-us`", "-busy-poll-us", "200us", NULL);
    assert_rejected(cfg, "`-busy-poll-us`", "-busy-poll-us", "", NULL);
    assert_rejected(cfg, "unexpected argument `stray`", "stray", NULL);
    setenv("BUSY_POLL_US", "soon", 1);
    assert_rejected(cfg, "`BUSY_POLL_US`: expected microseconds", NULL);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
