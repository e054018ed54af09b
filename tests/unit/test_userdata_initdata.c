/* Initdata: the TOML subset, digests, base64, gzip encode and capped decode. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>
#include <zlib.h>

#include "util/base64.h"
#include "userdata/initdata.h"

/* The shape of upstream's documented example. */
static const char sample[] = "algorithm = \"sha384\"\n"
                             "version = \"0.1.0\"\n"
                             "\n"
                             "[data]\n"
                             "\"aa.toml\" = '''\n"
                             "[token_configs]\n"
                             "[token_configs.coco_as]\n"
                             "url = 'http://127.0.0.1:8080'\n"
                             "\n"
                             "[token_configs.kbs]\n"
                             "url = 'http://127.0.0.1:8080'\n"
                             "'''\n"
                             "\n"
                             "\"cdh.toml\"  = '''\n"
                             "socket = 'unix:///run/confidential-containers/cdh.sock'\n"
                             "credentials = []\n"
                             "\n"
                             "[kbc]\n"
                             "name = 'cc_kbc'\n"
                             "url = 'http://1.2.3.4:8080'\n"
                             "'''\n"
                             "\n"
                             "\"policy.rego\" = '''\n"
                             "package agent_policy\n"
                             "\n"
                             "default AddARPNeighborsRequest := true\n"
                             "default ExecProcessRequest := false\n"
                             "'''\n";

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void expect_fail(const char *toml, const char *want)
{
    pp_initdata_t id;
    pp_error_t err = {0};
    int r = pp_initdata_parse(toml, strlen(toml), &id, &err);
    if (r != -EINVAL || strstr(err.message, want) == NULL) {
        print_error("toml:\n%s\ngot %d `%s`, want `%s`\n", toml, r, err.message, want);
        fail();
    }
    for (int k = 0; k < PP_INITDATA_NKEYS; k++)
        assert_null(id.data[k]);
}

#define HEAD "algorithm = \"sha256\"\nversion = \"0.1.0\"\n"

static void expect_data(const char *toml, enum pp_initdata_key key, const char *want,
                        size_t want_len)
{
    pp_initdata_t id;
    pp_error_t err = {0};
    int r = pp_initdata_parse(toml, strlen(toml), &id, &err);
    if (r != 0) {
        print_error("toml:\n%s\nerror: %s\n", toml, err.message);
        fail();
    }
    assert_non_null(id.data[key]);
    if (id.data_len[key] != want_len || memcmp(id.data[key], want, want_len) != 0) {
        print_error("toml:\n%s\ngot  [%s]\nwant [%s]\n", toml, id.data[key], want);
        fail();
    }
    pp_initdata_free(&id);
}

#define EXPECT_AA(toml, want) expect_data((toml), PP_INITDATA_AA_TOML, (want), sizeof(want) - 1)

/* ---- parsing ------------------------------------------------------------- */

static void test_parse_sample(void **state)
{
    (void)state;
    pp_initdata_t id;
    pp_error_t err = {0};
    assert_int_equal(pp_initdata_parse(sample, strlen(sample), &id, &err), 0);
    assert_int_equal(id.alg, PP_INITDATA_SHA384);
    assert_string_equal(id.data[PP_INITDATA_AA_TOML],
                        "[token_configs]\n[token_configs.coco_as]\nurl = "
                        "'http://127.0.0.1:8080'\n\n[token_configs.kbs]\nurl = "
                        "'http://127.0.0.1:8080'\n");
    assert_non_null(strstr(id.data[PP_INITDATA_CDH_TOML], "name = 'cc_kbc'\n"));
    assert_non_null(strstr(id.data[PP_INITDATA_POLICY_REGO], "package agent_policy\n"));
    assert_int_equal(id.digest_len, 48);
    uint8_t want[SHA384_DIGEST_LENGTH];
    SHA384((const unsigned char *)sample, strlen(sample), want);
    assert_memory_equal(id.digest, want, sizeof(want));
    char want_hex[2 * SHA384_DIGEST_LENGTH + 1];
    hex(want, sizeof(want), want_hex);
    assert_string_equal(id.digest_hex, want_hex);
    pp_initdata_free(&id);
    pp_initdata_free(&id); /* idempotent */
}

/* The digest covers the raw bytes, for each algorithm, and matches OpenSSL's
 * one-shot functions. */
static void test_digest_algorithms(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        size_t len;
        unsigned char *(*fn)(const unsigned char *, size_t, unsigned char *);
    } algs[] = {{"sha256", 32, SHA256}, {"sha384", 48, SHA384}, {"sha512", 64, SHA512}};
    for (size_t a = 0; a < 3; a++) {
        char toml[512];
        snprintf(toml, sizeof(toml),
                 "# comment\r\nalgorithm = '%s'  # trailing\r\nversion=\"0.1.0\"\r\n[ data ]\r\n"
                 "'policy.rego' = \"\"\"\r\npackage x\r\n\"\"\"\r\n",
                 algs[a].name);
        pp_initdata_t id;
        pp_error_t err = {0};
        assert_int_equal(pp_initdata_parse(toml, strlen(toml), &id, &err), 0);
        assert_string_equal(pp_initdata_alg_name(id.alg), algs[a].name);
        assert_int_equal(id.digest_len, algs[a].len);
        uint8_t want[64];
        algs[a].fn((const unsigned char *)toml, strlen(toml), want);
        assert_memory_equal(id.digest, want, algs[a].len);
        char want_hex[129];
        hex(want, algs[a].len, want_hex);
        assert_string_equal(id.digest_hex, want_hex);
        assert_string_equal(id.data[PP_INITDATA_POLICY_REGO], "package x\r\n");
        assert_null(id.data[PP_INITDATA_AA_TOML]);

        uint8_t d[PP_INITDATA_DIGEST_MAX];
        size_t dl;
        assert_int_equal(pp_initdata_digest(id.alg, "", 0, d, &dl), 0);
        algs[a].fn((const unsigned char *)"", 0, want);
        assert_memory_equal(d, want, dl);
        pp_initdata_free(&id);
    }
    pp_initdata_alg_t alg;
    assert_int_equal(pp_initdata_alg_parse("sha512", &alg), 0);
    assert_int_equal(alg, PP_INITDATA_SHA512);
    assert_int_equal(pp_initdata_alg_parse("SHA512", &alg), -EINVAL);
    assert_null(pp_initdata_alg_name((pp_initdata_alg_t)7));
    assert_string_equal(pp_initdata_key_name(PP_INITDATA_CDH_TOML), "cdh.toml");
    assert_null(pp_initdata_key_name(PP_INITDATA_NKEYS));
}

static void test_string_forms(void **state)
{
    (void)state;
    EXPECT_AA(HEAD "[data]\n\"aa.toml\" = \"a\\tb\\n\\\"q\\\"\\\\ \\u00e9\\U0001F600\\b\\f\\r\"\n",
              "a\tb\n\"q\"\\ \xc3\xa9\xf0\x9f\x98\x80\b\f\r");
    EXPECT_AA(HEAD "[data]\n\"aa.toml\" = 'C:\\no\\escapes \"here\"'\n",
              "C:\\no\\escapes \"here\"");
    EXPECT_AA(HEAD "[data]\n\"aa.toml\" = \"\"\"\nline1\nline2 \\\n    continued \\  \n\n  "
                   "again\"\"\"\n",
              "line1\nline2 continued again");
    EXPECT_AA(HEAD "[data]\n\"aa.toml\" = \"\"\"x\"\"\"\"\"\n", "x\"\"");
    EXPECT_AA(HEAD "[data]\n\"aa.toml\" = \"\"\"\"x\"\"\"\"\n", "\"x\"");
    EXPECT_AA(HEAD "[data]\n\"aa.toml\" = '''\n'quoted' ''two'' \\n'''''\n",
              "'quoted' ''two'' \\n''");
    EXPECT_AA(HEAD "[data]\n\"aa.toml\" = ''''''\n", "");
    EXPECT_AA(HEAD "[data]\n\"aa.toml\" = \"\"\n", "");
    EXPECT_AA(HEAD "[data]\n\"aa\\u002etoml\" = 'escaped key'\n", "escaped key");
    EXPECT_AA(HEAD "\n  [data]  # comment\n\t'aa.toml'\t=\t'x' # c\n", "x");
    EXPECT_AA("version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\n\"aa.toml\" = 'x'", "x");
    static const char nul[] = "a\0b";
    expect_data(HEAD "[data]\n\"aa.toml\" = \"a\\u0000b\"\n", PP_INITDATA_AA_TOML, nul, 3);

    /* No [data] is fine: nothing to write, still a digest. */
    pp_initdata_t id;
    pp_error_t err = {0};
    assert_int_equal(pp_initdata_parse(HEAD, strlen(HEAD), &id, &err), 0);
    assert_int_equal(id.alg, PP_INITDATA_SHA256);
    assert_int_equal(strlen(id.digest_hex), 64);
    pp_initdata_free(&id);
}

static void test_refuses(void **state)
{
    (void)state;
    expect_fail("version = \"0.1.0\"\n", "missing `algorithm`");
    expect_fail("algorithm = \"sha256\"\n", "missing `version`");
    expect_fail("algorithm = \"md5\"\nversion = \"0.1.0\"\n",
                "line 1: unsupported algorithm `md5` (expected sha256, sha384 or sha512)");
    expect_fail("algorithm = \"sha256\"\nversion = \"0.2.0\"\n",
                "line 2: unsupported version `0.2.0` (expected 0.1.0)");
    expect_fail(HEAD "algorithm = \"sha256\"\n", "line 3: duplicate key `algorithm`");
    expect_fail(HEAD "extra = 'x'\n", "line 3: unknown key `extra`");
    expect_fail(HEAD "[data]\n\"kata.toml\" = 'x'\n",
                "line 4: unknown key `kata.toml` in `[data]` (allowed: aa.toml, cdh.toml, "
                "policy.rego)");
    expect_fail(HEAD "[data]\naa.toml = 'x'\n", "dotted keys are not supported");
    expect_fail(HEAD "[data]\n\"aa.toml\" = 'x'\n\n\"aa.toml\" = 'y'\n",
                "line 6: duplicate key `aa.toml` (first on line 4)");
    expect_fail(HEAD "[data]\n[data]\n", "line 4: duplicate table `[data]`");
    expect_fail(HEAD "[[data]]\n", "arrays of tables are not supported");
    expect_fail(HEAD "[other]\n", "unknown table `[other]`");
    expect_fail(HEAD "[data.x]\n", "dotted keys");
    expect_fail(HEAD "[data\n", "expected `]`");
    expect_fail("algorithm = 256\nversion = \"0.1.0\"\n", "value of `algorithm` must be a string");
    expect_fail(HEAD "[data]\n\"aa.toml\" = true\n", "must be a string");
    expect_fail(HEAD "[data]\n\"aa.toml\" = ['x']\n", "must be a string");
    expect_fail(HEAD "[data]\n\"aa.toml\" = {a = 'x'}\n", "must be a string");
    expect_fail(HEAD "[data]\n\"aa.toml\" =\n", "line 4: missing value for `aa.toml`");
    expect_fail(HEAD "[data]\n\"aa.toml\" 'x'\n", "expected `=` after key `aa.toml`");
    expect_fail(HEAD "[data]\n\"aa.toml\" = 'x' 'y'\n", "unexpected text after the value");
    expect_fail(HEAD "[data]\n\"aa.toml\" = 'x\n", "line 4: unterminated string");
    expect_fail(HEAD "[data]\n\"aa.toml\" = \"x\n", "unterminated string");
    expect_fail(HEAD "[data]\n\"aa.toml\" = '''x\n\n", "line 4: unterminated multi-line");
    expect_fail(HEAD "[data]\n\"aa.toml\" = \"\"\"x\"\"\"\"\"\"\n", "too many quotes");
    expect_fail(HEAD "[data]\n\"aa.toml\" = \"\\q\"\n", "unknown escape `\\q`");
    expect_fail(HEAD "[data]\n\"aa.toml\" = \"\\e\"\n", "unknown escape `\\e`");
    expect_fail(HEAD "[data]\n\"aa.toml\" = \"\\u12\"\n", "bad `\\u` escape");
    expect_fail(HEAD "[data]\n\"aa.toml\" = \"\\uD800\"\n", "names no Unicode character");
    expect_fail(HEAD "[data]\n\"aa.toml\" = \"\"\"\\ x\"\"\"\n", "unknown escape");
    expect_fail(HEAD "[data]\n\"\"\"aa.toml\"\"\" = 'x'\n", "may not be a multi-line string");
    expect_fail(HEAD "= 'x'\n", "expected a key");
    expect_fail(HEAD "[data]\n\"aa.toml\" = '\x01'\n", "line 4: control character 0x01");
    expect_fail(HEAD "[data]\n\"aa.toml\" = 'a\rb'\n", "control character 0x0d");
    expect_fail(HEAD "[data]\n\"aa.toml\" = '\xff'\n", "line 4: invalid UTF-8");
    expect_fail(HEAD "# \x7f\n", "control character 0x7f");
    pp_initdata_t id;
    pp_error_t err = {0};
    static const char nul[] = "algorithm = \"sha256\0\"\nversion = \"0.1.0\"\n";
    assert_int_equal(pp_initdata_parse(nul, sizeof(nul) - 1, &id, &err), -EINVAL);
    assert_non_null(strstr(err.message, "control character 0x00"));
    /* An escaped NUL does not sneak a prefix match through. */
    expect_fail("algorithm = \"sha256\\u0000\"\nversion = \"0.1.0\"\n",
                "unsupported algorithm `sha256?`");
}

/* ---- base64 -------------------------------------------------------------- */

static void test_base64(void **state)
{
    (void)state;
    /* RFC 4648 section 10. */
    static const char *const vec[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        pp_buf_t b;
        pp_buf_init(&b, 0);
        assert_int_equal(pp_base64_encode(vec[i][0], strlen(vec[i][0]), &b), 0);
        assert_int_equal(b.len, strlen(vec[i][1]));
        assert_memory_equal(b.data, vec[i][1], b.len);
        pp_buf_free(&b);
        assert_int_equal(pp_base64_decode(vec[i][1], strlen(vec[i][1]), &b), 0);
        assert_int_equal(b.len, strlen(vec[i][0]));
        if (b.len > 0)
            assert_memory_equal(b.data, vec[i][0], b.len);
        pp_buf_free(&b);
    }
    pp_buf_t b;
    pp_buf_init(&b, 0);
    assert_int_equal(pp_base64_decode("Zm9v\nYmFy\r\n ", 12, &b), 0);
    assert_memory_equal(b.data, "foobar", 6);
    pp_buf_free(&b);
    static const char *const bad[] = {"Zg",           "Zg=",      "Z===",  "Zm9",  "Zh==", "Zm9=",
                                      "Zm9vYg==Zg==", "Zg==Zg==", "Zm9v!", "Zm-v", "=Zm9", "Zg=a"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pp_buf_init(&b, 0);
        if (pp_base64_decode(bad[i], strlen(bad[i]), &b) != -EBADMSG) {
            print_error("`%s` decoded\n", bad[i]);
            fail();
        }
        pp_buf_free(&b);
    }
    /* All byte values. */
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    pp_buf_t e, d;
    pp_buf_init(&e, 0);
    pp_buf_init(&d, 0);
    assert_int_equal(pp_base64_encode(all, sizeof(all), &e), 0);
    assert_int_equal(pp_base64_decode((char *)e.data, e.len, &d), 0);
    assert_int_equal(d.len, 256);
    assert_memory_equal(d.data, all, 256);
    pp_buf_free(&e);
    pp_buf_free(&d);
}

/* ---- gzip + base64 ------------------------------------------------------- */

/* gzip with zlib directly (not our encoder), then base64. */
static void gzip_b64(const void *data, size_t len, int level, pp_buf_t *out)
{
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
    uLong bound = deflateBound(&zs, (uLong)len);
    uint8_t *gz = malloc(bound);
    assert_non_null(gz);
    zs.next_in = (Bytef *)(uintptr_t)data;
    zs.avail_in = (uInt)len;
    zs.next_out = gz;
    zs.avail_out = (uInt)bound;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    assert_int_equal(pp_base64_encode(gz, zs.total_out, out), 0);
    deflateEnd(&zs);
    free(gz);
}

static void test_encode_decode(void **state)
{
    (void)state;
    pp_buf_t enc, dec;
    pp_buf_init(&enc, 0);
    pp_buf_init(&dec, 0);
    pp_error_t err = {0};
    assert_int_equal(pp_initdata_encode(sample, strlen(sample), &enc, &err), 0);
    assert_null(memchr(enc.data, '\n', enc.len));
    assert_int_equal(pp_initdata_decode((char *)enc.data, enc.len, 0, &dec, &err), 0);
    assert_int_equal(dec.len, strlen(sample));
    assert_memory_equal(dec.data, sample, dec.len);
    pp_buf_free(&enc);
    pp_buf_free(&dec);

    /* Another encoder's output, at another level. */
    pp_buf_init(&enc, 0);
    gzip_b64(sample, strlen(sample), 1, &enc);
    pp_buf_init(&dec, 0);
    assert_int_equal(pp_initdata_decode((char *)enc.data, enc.len, 0, &dec, &err), 0);
    assert_memory_equal(dec.data, sample, strlen(sample));
    pp_buf_free(&dec);
    /* The limit is inclusive. */
    pp_buf_init(&dec, 0);
    assert_int_equal(pp_initdata_decode((char *)enc.data, enc.len, strlen(sample), &dec, &err), 0);
    pp_buf_free(&dec);
    pp_buf_init(&dec, 0);
    assert_int_equal(pp_initdata_decode((char *)enc.data, enc.len, strlen(sample) - 1, &dec, &err),
                     -EMSGSIZE);
    pp_buf_free(&dec);
    pp_buf_free(&enc);

    /* Empty input encodes to a valid, empty gzip member. */
    pp_buf_init(&enc, 0);
    pp_buf_init(&dec, 0);
    assert_int_equal(pp_initdata_encode("", 0, &enc, &err), 0);
    assert_int_equal(pp_initdata_decode((char *)enc.data, enc.len, 0, &dec, &err), 0);
    assert_int_equal(dec.len, 0);
    pp_buf_free(&enc);
    pp_buf_free(&dec);
}

static void test_gzip_bomb(void **state)
{
    (void)state;
    size_t n = 64u << 20; /* 64 MiB of zeros packs into about 64 KiB */
    uint8_t *zeros = calloc(1, n);
    assert_non_null(zeros);
    pp_buf_t enc, dec;
    pp_buf_init(&enc, 0);
    gzip_b64(zeros, n, 9, &enc);
    free(zeros);
    assert_true(enc.len < 200 * 1024);
    pp_buf_init(&dec, 0);
    pp_error_t err = {0};
    assert_int_equal(pp_initdata_decode((char *)enc.data, enc.len, 0, &dec, &err), -EMSGSIZE);
    assert_non_null(strstr(err.message, "exceeds the limit of 1048576 bytes"));
    /* It stopped at the limit, not after inflating everything. */
    assert_true(dec.len <= PP_INITDATA_MAX_DEFAULT);
    pp_buf_free(&dec);
    pp_buf_free(&enc);
}

static void test_decode_refuses(void **state)
{
    (void)state;
    pp_buf_t enc, dec;
    pp_buf_init(&enc, 0);
    pp_error_t err = {0};
    assert_int_equal(pp_initdata_encode(sample, strlen(sample), &enc, &err), 0);
    char *t = (char *)enc.data;

    static const struct {
        const char *what;
        const char *want;
    } cases[] = {
        {"truncated base64", "invalid base64"},
        {"truncated gzip", "truncated gzip stream"},
        {"bad character", "invalid base64"},
        {"corrupt crc", "corrupt gzip stream"},
        {"trailing data", "data after the gzip stream"},
        {"not gzip", "not gzip data"},
        {"empty", "not gzip data"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pp_buf_t in;
        pp_buf_init(&in, 0);
        pp_buf_t raw;
        pp_buf_init(&raw, 0);
        assert_int_equal(pp_base64_decode(t, enc.len, &raw), 0);
        switch (i) {
        case 0:
            pp_buf_append(&in, t, enc.len - 3);
            break;
        case 1:
            pp_base64_encode(raw.data, raw.len - 12, &in);
            break;
        case 2:
            pp_buf_append(&in, t, enc.len);
            in.data[5] = '*';
            break;
        case 3:
            raw.data[raw.len - 6] ^= 0x55;
            pp_base64_encode(raw.data, raw.len, &in);
            break;
        case 4:
            pp_buf_append(&raw, "junk", 4);
            pp_base64_encode(raw.data, raw.len, &in);
            break;
        case 5:
            pp_base64_encode(sample, strlen(sample), &in);
            break;
        default:
            break;
        }
        pp_buf_init(&dec, 0);
        int r = pp_initdata_decode(in.data ? (char *)in.data : "", in.len, 0, &dec, &err);
        if (r != -EBADMSG || strstr(err.message, cases[i].want) == NULL) {
            print_error("%s: got %d `%s`\n", cases[i].what, r, err.message);
            fail();
        }
        pp_buf_free(&dec);
        pp_buf_free(&in);
        pp_buf_free(&raw);
    }
    pp_buf_free(&enc);
}

/* Mutations of the sample: never a crash, and a success always has a digest
 * and only known keys. */
static void test_mutations(void **state)
{
    (void)state;
    size_t n0 = strlen(sample);
    char *m = malloc(n0 + 16);
    assert_non_null(m);
    static const char extra[] = "\"'\\=[]#.\n\r\t ux0\xc3";
    uint32_t seed = 99;
    for (int iter = 0; iter < 30000; iter++) {
        memcpy(m, sample, n0);
        size_t n = n0;
        for (int k = 0; k < 1 + iter % 3; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            char c = extra[(seed >> 8) % (sizeof(extra) - 1)];
            if ((seed >> 20) % 3 == 0) {
                m[pos] = c;
            } else if ((seed >> 20) % 3 == 1) {
                memmove(m + pos + 1, m + pos, n - pos);
                m[pos] = c;
                n++;
            } else {
                n = pos + 1;
            }
        }
        pp_initdata_t id;
        pp_error_t err = {0};
        if (pp_initdata_parse(m, n, &id, &err) == 0) {
            assert_true(id.digest_len == 32 || id.digest_len == 48 || id.digest_len == 64);
            pp_initdata_free(&id);
        } else {
            assert_true(err.message[0] != '\0');
        }
    }
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_sample), cmocka_unit_test(test_digest_algorithms),
        cmocka_unit_test(test_string_forms), cmocka_unit_test(test_refuses),
        cmocka_unit_test(test_base64),       cmocka_unit_test(test_encode_decode),
        cmocka_unit_test(test_gzip_bomb),    cmocka_unit_test(test_decode_refuses),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
