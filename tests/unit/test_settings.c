/* The settings reader: sources and their order, the vocabulary, errors that
 * name the setting, and upstream's settings we lack. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/cleanup.h"
#include "util/settings.h"

typedef struct cfg_s {
    char name[16];
    char list[64];
    int port;
    int64_t big;
    int on;
    uint64_t timeout_ms;
    int mode;
    double rate;
    char key[32];
} cfg_t;

static const char *const modes[] = {"vxlan", "geneve", NULL};
static const char *const only_vxlan[] = {"vxlan", NULL};
static const char *const only_false[] = {"false", NULL};

static const pp_setting_t items[] = {
    PP_SETTING_STR(cfg_t, name, "T_NAME", "name", "dflt", "a name",
                   .chars = "abcdefghijklmnopqrstuvwxyz"),
    PP_SETTING_LIST_OF(cfg_t, list, "T_LIST", "list", NULL, "a list", .chars = "abc", .max = 3),
    PP_SETTING_INT_OF(cfg_t, port, "T_PORT", "port", "15150", 1, 65535, "a port"),
    PP_SETTING_INT_OF(cfg_t, big, "T_BIG", NULL, "0", -5, 1LL << 40, "a big number"),
    PP_SETTING_BOOL_OF(cfg_t, on, "T_ON", "on", "false", "a switch"),
    PP_SETTING_DURATION_OF(cfg_t, timeout_ms, "T_TIMEOUT", "timeout", "5m", 1, 0, "a timeout"),
    PP_SETTING_ENUM_OF(cfg_t, mode, "T_MODE", "mode", "vxlan", modes, "a mode"),
    PP_SETTING_NUMBER_OF(cfg_t, rate, "T_RATE", "rate", "2.5", 0, 100, "a rate"),
    PP_SETTING_STR(cfg_t, key, "T_KEY", "key", NULL, "a key", .flags = PP_SETTING_SECRET,
                   .chars = "abc"),
    PP_SETTING_UPSTREAM(PP_SETTING_NOOP, "T_PAUSE", "pause-image", NULL, "has no effect"),
    PP_SETTING_UPSTREAM(PP_SETTING_WARN, "T_SCRATCH", "scratch", only_false, "no scratch space",
                        .flags = PP_SETTING_AS_BOOL),
    PP_SETTING_UPSTREAM(PP_SETTING_REFUSE, "T_TUNNEL", "tunnel-type", only_vxlan,
                        "only vxlan tunnels"),
    PP_SETTING_UPSTREAM(PP_SETTING_REFUSE, "T_EXT", "ext", only_false, "no external network",
                        .flags = PP_SETTING_AS_BOOL),
};
static const pp_settings_table_t table = {"test", items, PP_ARRAY_SIZE(items)};

static const char *const envs[] = {"T_NAME",    "T_LIST",   "T_PORT", "T_BIG", "T_ON",
                                   "T_TIMEOUT", "T_MODE",   "T_RATE", "T_KEY", "T_PAUSE",
                                   "T_SCRATCH", "T_TUNNEL", "T_EXT"};

static int setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < PP_ARRAY_SIZE(envs); i++)
        unsetenv(envs[i]);
    return 0;
}

static int load(cfg_t *c, pp_error_t *err, int argc, char **argv)
{
    memset(c, 0x5a, sizeof(*c));
    memset(err, 0, sizeof(*err));
    return pp_settings_load(&table, c, argc, argv, 0, err);
}

static void test_defaults(void **state)
{
    (void)state;
    cfg_t c;
    pp_error_t err;
    assert_int_equal(load(&c, &err, 0, NULL), 0);
    assert_string_equal(c.name, "dflt");
    assert_string_equal(c.list, "");
    assert_int_equal(c.port, 15150);
    assert_int_equal(c.big, 0);
    assert_int_equal(c.on, 0);
    assert_int_equal(c.timeout_ms, 300000);
    assert_int_equal(c.mode, 0);
    assert_true(c.rate == 2.5);
    assert_string_equal(c.key, "");
}

static void test_env_then_flag(void **state)
{
    (void)state;
    cfg_t c;
    pp_error_t err;
    setenv("T_PORT", "8080", 1);
    setenv("T_NAME", "abc", 1);
    assert_int_equal(load(&c, &err, 0, NULL), 0);
    assert_int_equal(c.port, 8080);
    assert_string_equal(c.name, "abc");
    char *argv[] = {"-port", "9090", "--name=mno", "-on", "-timeout", "1h30m", "--mode", "GENEVE"};
    assert_int_equal(load(&c, &err, 8, argv), 0);
    assert_int_equal(c.port, 9090);
    assert_string_equal(c.name, "mno");
    assert_int_equal(c.on, 1);
    assert_int_equal(c.timeout_ms, 5400000);
    assert_int_equal(c.mode, 1);
}

/* Upstream treats an empty variable as unset. */
static void test_empty_is_unset(void **state)
{
    (void)state;
    cfg_t c;
    pp_error_t err;
    setenv("T_PORT", "", 1);
    setenv("T_TIMEOUT", "", 1);
    setenv("T_ON", "", 1);
    setenv("T_NAME", "", 1);
    assert_int_equal(load(&c, &err, 0, NULL), 0);
    assert_int_equal(c.port, 15150);
    assert_int_equal(c.timeout_ms, 300000);
    assert_string_equal(c.name, "dflt");
}

static void test_bool_vocabulary(void **state)
{
    (void)state;
    const char *yes[] = {"1", "t", "T", "TRUE", "true", "True", "yes", "YES", "on"};
    const char *no[] = {"0", "f", "F", "FALSE", "false", "False", "no", "Off"};
    const char *bad[] = {"tRuE2", "2", "y", "", " true"};
    int b;
    for (size_t i = 0; i < PP_ARRAY_SIZE(yes); i++) {
        b = 0;
        assert_int_equal(pp_parse_bool(yes[i], &b), 0);
        assert_int_equal(b, 1);
    }
    for (size_t i = 0; i < PP_ARRAY_SIZE(no); i++) {
        b = 1;
        assert_int_equal(pp_parse_bool(no[i], &b), 0);
        assert_int_equal(b, 0);
    }
    for (size_t i = 0; i < PP_ARRAY_SIZE(bad); i++)
        assert_int_equal(pp_parse_bool(bad[i], &b), -EINVAL);
}

static void test_duration_vocabulary(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t ms;
    } ok[] = {{"300ms", 300}, {"5m", 300000},        {"1h30m", 5400000}, {"90", 90000},
              {"1.5s", 1500}, {"2h45m10s", 9910000}, {"1500us", 1},      {"1000000ns", 1},
              {"0", 0},       {"\xc2\xb5s", 0}};
    const char *bad[] = {"", "x", "-5s", "5 s", "1.2.3s", "5d", "s", ".s", "1e3s"};
    uint64_t ms;
    for (size_t i = 0; i < PP_ARRAY_SIZE(ok) - 1; i++) {
        assert_int_equal(pp_parse_duration_ms(ok[i].s, &ms), 0);
        assert_int_equal(ms, ok[i].ms);
    }
    /* "µs" alone has no number. */
    assert_int_equal(pp_parse_duration_ms(ok[PP_ARRAY_SIZE(ok) - 1].s, &ms), -EINVAL);
    assert_int_equal(pp_parse_duration_ms("3\xc2\xb5s", &ms), 0);
    for (size_t i = 0; i < PP_ARRAY_SIZE(bad); i++)
        assert_int_equal(pp_parse_duration_ms(bad[i], &ms), -EINVAL);
    /* "5" alone is five seconds: a bare number. */
    assert_int_equal(pp_parse_duration_ms("5", &ms), 0);
    assert_int_equal(ms, 5000);
}

static void test_errors_name_the_setting(void **state)
{
    (void)state;
    cfg_t c;
    pp_error_t err;
    setenv("T_PORT", "x", 1);
    assert_int_equal(load(&c, &err, 0, NULL), -EINVAL);
    assert_string_equal(err.message,
                        "environment variable `T_PORT`: `x` is not a whole number from 1 to 65535");
    unsetenv("T_PORT");
    char *a1[] = {"-port=0"};
    assert_int_equal(load(&c, &err, 1, a1), -EINVAL);
    assert_string_equal(err.message, "flag `-port`: `0` is not a whole number from 1 to 65535");
    char *a2[] = {"-nope", "1"};
    assert_int_equal(load(&c, &err, 2, a2), -EINVAL);
    assert_non_null(strstr(err.message, "unknown flag `-nope`"));
    char *a3[] = {"-port"};
    assert_int_equal(load(&c, &err, 1, a3), -EINVAL);
    assert_string_equal(err.message, "flag `-port` needs a value");
    setenv("T_MODE", "gre", 1);
    assert_int_equal(load(&c, &err, 0, NULL), -EINVAL);
    assert_string_equal(err.message,
                        "environment variable `T_MODE`: `gre` is not `vxlan` or `geneve`");
    unsetenv("T_MODE");
    setenv("T_TIMEOUT", "0s", 1);
    assert_int_equal(load(&c, &err, 0, NULL), -EINVAL);
    assert_non_null(strstr(err.message, "`T_TIMEOUT`"));
    unsetenv("T_TIMEOUT");
    setenv("T_NAME", "abcdefghijklmnopqrstu", 1);
    assert_int_equal(load(&c, &err, 0, NULL), -EINVAL);
    assert_string_equal(err.message, "environment variable `T_NAME`: longer than 15 bytes");
    setenv("T_NAME", "XYZ", 1);
    assert_int_equal(load(&c, &err, 0, NULL), -EINVAL);
    assert_non_null(strstr(err.message, "`XYZ` has characters outside"));
    unsetenv("T_NAME");
    setenv("T_LIST", "a, b,,c ,a", 1);
    assert_int_equal(load(&c, &err, 0, NULL), -EINVAL);
    assert_string_equal(err.message, "environment variable `T_LIST`: more than 3 items");
    setenv("T_LIST", " a, b,,c ", 1);
    assert_int_equal(load(&c, &err, 0, NULL), 0);
    assert_int_equal(pp_list_count(c.list), 3);
    unsetenv("T_LIST");
    /* A secret's value is never repeated. */
    setenv("T_KEY", "hunter2", 1);
    assert_int_equal(load(&c, &err, 0, NULL), -EINVAL);
    assert_null(strstr(err.message, "hunter2"));
    assert_non_null(strstr(err.message, "`T_KEY`"));
}

static void test_upstream_settings(void **state)
{
    (void)state;
    cfg_t c;
    pp_error_t err;
    setenv("T_PAUSE", "registry.k8s.io/pause:3.9", 1);
    setenv("T_SCRATCH", "true", 1);
    setenv("T_TUNNEL", "vxlan", 1);
    setenv("T_EXT", "F", 1);
    assert_int_equal(load(&c, &err, 0, NULL), 0);
    setenv("T_TUNNEL", "geneve", 1);
    assert_int_equal(load(&c, &err, 0, NULL), -ENOTSUP);
    assert_string_equal(err.message, "environment variable `T_TUNNEL`: `geneve` is not supported: "
                                     "only vxlan tunnels (supported: `vxlan`)");
    unsetenv("T_TUNNEL");
    char *a1[] = {"-ext"};
    assert_int_equal(load(&c, &err, 1, a1), -ENOTSUP);
    assert_non_null(strstr(err.message, "flag `-ext`: `true` is not supported"));
    char *a2[] = {"-ext", "false", "-pause-image", "x", "-tunnel-type=vxlan"};
    assert_int_equal(load(&c, &err, 5, a2), 0);
}

static void test_lenient_and_check(void **state)
{
    (void)state;
    cfg_t c;
    pp_error_t err = {0};
    char *argv[] = {"-other", "v", "-port", "99", "-flag-of-other", "-on", "false", "-x=1"};
    memset(&c, 0, sizeof(c));
    assert_int_equal(pp_settings_load(&table, &c, 8, argv, PP_SETTINGS_LENIENT, &err), 0);
    assert_int_equal(c.port, 99);
    assert_int_equal(c.on, 0);
    static const pp_setting_t other_items[] = {
        PP_SETTING_STR(cfg_t, name, NULL, "other", NULL, "other's"),
        PP_SETTING_BOOL_OF(cfg_t, on, NULL, "flag-of-other", NULL, "other's"),
        PP_SETTING_INT_OF(cfg_t, port, NULL, "x", NULL, 0, 9, "other's"),
    };
    static const pp_settings_table_t other = {"other", other_items, PP_ARRAY_SIZE(other_items)};
    const pp_settings_table_t *both[] = {&table, &other};
    assert_int_equal(pp_settings_check_flags(both, 2, 8, argv, &err), 0);
    assert_int_equal(pp_settings_check_flags(both, 1, 8, argv, &err), -EINVAL);
    assert_non_null(strstr(err.message, "`-other`"));
    char *help[] = {"-port", "1", "-h"};
    assert_int_equal(pp_settings_load(&table, &c, 3, help, 0, &err), PP_SETTINGS_HELP);
}

static void test_list_table(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    pp_settings_list(f, &table);
    fclose(f);
    assert_non_null(strstr(buf, "T_PORT\tport\tint\tsupported\t15150\n"));
    assert_non_null(strstr(buf, "T_BIG\t-\tint\tsupported\t0\n"));
    assert_non_null(strstr(buf, "T_TUNNEL\ttunnel-type\tstring\trefuse\t-\n"));
    assert_non_null(strstr(buf, "T_PAUSE\tpause-image\tstring\tnoop\t-\n"));
    free(buf);
    assert_non_null(pp_settings_find_env(&table, "T_RATE"));
    assert_null(pp_settings_find_env(&table, "T_NONE"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_env_then_flag, setup),
        cmocka_unit_test_setup(test_empty_is_unset, setup),
        cmocka_unit_test_setup(test_bool_vocabulary, setup),
        cmocka_unit_test_setup(test_duration_vocabulary, setup),
        cmocka_unit_test_setup(test_errors_name_the_setting, setup),
        cmocka_unit_test_setup(test_upstream_settings, setup),
        cmocka_unit_test_setup(test_lenient_and_check, setup),
        cmocka_unit_test_setup(test_list_table, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
