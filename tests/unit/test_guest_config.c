/* The guest components' TOML reader and their aa.toml / cdh.toml: what
 * upstream's files hold reads back; what TOML forbids, and bad values, are
 * refused naming the line or the key. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"
#include "toml.h"

static guest_toml_t *parse_ok(const char *text)
{
    guest_toml_t *t = NULL;
    pp_error_t err = {0};
    int r = guest_toml_parse(text, strlen(text), &t, &err);
    if (r != 0)
        print_error("unexpected error: %s\n", err.message);
    assert_int_equal(r, 0);
    return t;
}

static void parse_bad(const char *text, const char *want)
{
    guest_toml_t *t = NULL;
    pp_error_t err = {0};
    int r = guest_toml_parse(text, strlen(text), &t, &err);
    if (r == 0 || strstr(err.message, want) == NULL)
        print_error("input %s\n  got r=%d `%s`, want `%s`\n", text, r, err.message, want);
    assert_int_not_equal(r, 0);
    assert_null(t);
    assert_non_null(strstr(err.message, want));
}

static void test_toml_values(void **state)
{
    (void)state;
    guest_toml_t *t = parse_ok("# comment\n"
                               "a = \"x\\ty\\u00e9\" # trailing\n"
                               "b = 'C:\\raw'\n"
                               "c = \"\"\"\nline1\nline2 \\\n   joined\"\"\"\n"
                               "d = '''\nkeep \\n as is'''\n"
                               "e = -1_000\n"
                               "f = 0x1F\n"
                               "g = true\n"
                               "h = [1, 'two', [3],\n  # inside\n]\n"
                               "i = { x = 1, y.z = 'w' }\n"
                               "[t.u]\n"
                               "\"quoted key\" = 1\n"
                               "[[arr]]\nn = 1\n[[arr]]\nn = 2\n");
    const guest_toml_t *v = guest_toml_get(t, "a");
    assert_string_equal(v->str, "x\ty\xc3\xa9");
    assert_string_equal(guest_toml_get(t, "b")->str, "C:\\raw");
    assert_string_equal(guest_toml_get(t, "c")->str, "line1\nline2 joined");
    assert_string_equal(guest_toml_get(t, "d")->str, "keep \\n as is");
    assert_int_equal(guest_toml_get(t, "e")->num, -1000);
    assert_int_equal(guest_toml_get(t, "f")->num, 31);
    assert_int_equal(guest_toml_get(t, "g")->num, 1);
    v = guest_toml_get(t, "h");
    assert_int_equal(v->type, GUEST_TOML_ARRAY);
    assert_int_equal(v->len, 3);
    v = guest_toml_get(t, "i");
    assert_string_equal(guest_toml_get(guest_toml_get(v, "y"), "z")->str, "w");
    v = guest_toml_get(guest_toml_get(t, "t"), "u");
    assert_int_equal(guest_toml_get(v, "quoted key")->num, 1);
    v = guest_toml_get(t, "arr");
    assert_int_equal(v->len, 2);
    assert_int_equal(guest_toml_get(v->items[1], "n")->num, 2);
    guest_toml_free(t);
}

static void test_toml_refusals(void **state)
{
    (void)state;
    parse_bad("a = 1\na = 2\n", "line 2: `a` is defined twice (first on line 1)");
    parse_bad("[t]\n[t]\n", "line 2: `t` is defined already");
    parse_bad("a = 1.5\n", "floats are not supported");
    parse_bad("a = 1979-05-27\n", "dates and times are not supported");
    parse_bad("a = \"\\q\"\n", "bad escape");
    parse_bad("a = \"open\n", "newline in a single-line string");
    parse_bad("a = 01\n", "leading zeros");
    parse_bad("a = 99999999999999999999\n", "out of range");
    parse_bad("a = 1 b = 2\n", "expected the end of the line");
    parse_bad("a = { x = 1 }\n[a]\n", "`a` is defined already");
    parse_bad("a = \"\xff\"\n", "line 1: invalid UTF-8");
    parse_bad("= 1\n", "expected a key");
    parse_bad("a = [1 2]\n", "expected `,` or `]`");
    parse_bad("a.b = 1\n[a.b]\n", "defined already");
    char deep[200];
    memset(deep, '[', sizeof(deep) - 1);
    deep[0] = 'a', deep[1] = '=';
    deep[sizeof(deep) - 1] = 0;
    parse_bad(deep, "nested more than 32 deep");
}

static void test_aa_config(void **state)
{
    (void)state;
    guest_aa_cfg_t c;
    pp_error_t err = {0};
    const char *text = "[token_configs]\n"
                       "[token_configs.kbs]\n"
                       "url = \"https://kbs.example:8080/\"\n"
                       "cert = \"\"\"\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END "
                       "CERTIFICATE-----\n\"\"\"\n"
                       "tee_key_algorithm = \"RSA-OAEP-256\"\n"
                       "[eventlog_config]\ninit_pcr = 17\nenable_eventlog = true\n"
                       "[log]\nlevel = \"DEBUG\"\n";
    assert_int_equal(guest_aa_cfg_parse(text, strlen(text), &c, &err), 0);
    assert_string_equal(c.kbs.url, "https://kbs.example:8080");
    assert_non_null(strstr(c.kbs.cert, "BEGIN CERTIFICATE"));
    assert_int_equal(c.kbs.key_alg, GUEST_KEY_RSA);
    assert_int_equal(c.init_pcr, 17);
    assert_int_equal(c.eventlog, 1);
    assert_string_equal(c.log_level, "debug");
    guest_aa_cfg_fini(&c);

    assert_int_equal(guest_aa_cfg_parse("", 0, &c, &err), 0);
    assert_null(c.kbs.url);
    assert_int_equal(c.init_pcr, 17);
    guest_aa_cfg_fini(&c);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[token_configs.kbs]\n", "`token_configs.kbs.url` is required"},
        {"[token_configs.kbs]\nurl = 5\n", "`token_configs.kbs.url` (line 2): expected a string, "
                                           "found an integer"},
        {"[token_configs.kbs]\nurl = \"ftp://x\"\n", "is not an http:// or https:// URL"},
        {"[token_configs.kbs]\nurl = \"http://x\"\ncert = \"nope\"\n", "not a PEM certificate"},
        {"[token_configs.kbs]\nurl = \"http://x\"\ntee_key_algorithm = \"A\"\n",
         "`token_configs.kbs.tee_key_algorithm`: `A` is not one of"},
        {"[eventlog_config]\ninit_pcr = 24\n", "`eventlog_config.init_pcr` (line 2): 24 is not "
                                               "from 0 to 23"},
        {"[log]\nlevel = \"loud\"\n", "`log.level`: `loud` is not one of"},
        {"token_configs = 1\n", "`token_configs` (line 1): expected a table"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = guest_aa_cfg_parse(bad[i].text, strlen(bad[i].text), &c, &err);
        if (r == 0 || strstr(err.message, bad[i].want) == NULL)
            print_error("%s\n  got `%s`, want `%s`\n", bad[i].text, err.message, bad[i].want);
        assert_int_not_equal(r, 0);
        assert_non_null(strstr(err.message, bad[i].want));
        guest_aa_cfg_fini(&c);
    }
}

static void test_cdh_config(void **state)
{
    (void)state;
    guest_cdh_cfg_t c;
    pp_error_t err = {0};
    const char *text = "socket = \"unix:///run/x/cdh.sock\"\n"
                       "[kbc]\nname = \"cc_kbc\"\nurl = \"http://10.0.0.1:8080\"\n"
                       "[aa]\naa_socket = \"unix:///run/aa.sock\"\n"
                       "[[credentials]]\nresource_uri = \"kbs:///a/b/c\"\npath = \"/run/c\"\n"
                       "[image]\nmax_concurrent_layer_downloads_per_image = 3\n";
    assert_int_equal(guest_cdh_cfg_parse(text, strlen(text), &c, &err), 0);
    assert_string_equal(c.socket, "/run/x/cdh.sock");
    assert_string_equal(c.aa_socket, "/run/aa.sock");
    assert_string_equal(c.kbs.url, "http://10.0.0.1:8080");
    assert_int_equal(c.ncreds, 1);
    assert_string_equal(c.creds[0].path, "/run/c");
    guest_cdh_cfg_fini(&c);

    text = "[kbc]\nname = \"cc_kbc\"\nurl = \"http://k\"\n";
    assert_int_equal(guest_cdh_cfg_parse(text, strlen(text), &c, &err), 0);
    assert_string_equal(c.socket, GUEST_CDH_SOCKET);
    assert_string_equal(c.aa_socket, GUEST_AA_SOCKET);
    guest_cdh_cfg_fini(&c);

    static const struct {
        const char *text, *want;
    } bad[] = {
        {"", "`[kbc]` is required"},
        {"[kbc]\nname = \"other\"\n", "`kbc.name`: `other` is not one of cc_kbc"},
        {"[kbc]\nname = \"cc_kbc\"\n", "`kbc.url` is required with cc_kbc"},
        {"socket = \"/x\"\n[kbc]\nname = \"cc_kbc\"\nurl = \"http://k\"\n",
         "`socket`: `/x` is not a unix:///path address"},
        {"[kbc]\nname = \"cc_kbc\"\nurl = \"http://k\"\n[[credentials]]\npath = \"/x\"\n",
         "`credentials[0].resource_uri` is required"},
        {"skip_sealed_secret_verification = 3\n", "expected a boolean"},
        {"[kbc]\nname = \"cc_kbc\"\nurl = \"http://k\"\n[[credentials]]\nresource_uri = "
         "\"kbs:///a/b/c\"\npath = \"/etc/x\"\n",
         "`credentials[0].path`: `/etc/x` is not a file under /run"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = guest_cdh_cfg_parse(bad[i].text, strlen(bad[i].text), &c, &err);
        if (r == 0 || strstr(err.message, bad[i].want) == NULL)
            print_error("%s\n  got `%s`, want `%s`\n", bad[i].text, err.message, bad[i].want);
        assert_int_not_equal(r, 0);
        assert_non_null(strstr(err.message, bad[i].want));
        guest_cdh_cfg_fini(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_toml_values),
        cmocka_unit_test(test_toml_refusals),
        cmocka_unit_test(test_aa_config),
        cmocka_unit_test(test_cdh_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
