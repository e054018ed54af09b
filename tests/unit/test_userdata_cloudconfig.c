/* User data: the cloud-config builder and the strict reader. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "userdata/cloudconfig.h"

#define APF     "/run/peerpod/apf.json"
#define AUTH    "/run/peerpod/auth.json"
#define INITD   "/run/peerpod/initdata"
#define AA      "/run/peerpod/aa.toml"
#define CDH     "/run/peerpod/cdh.toml"
#define SCRATCH "/run/peerpod/scratch-space.marker"

/* ---- helpers ------------------------------------------------------------- */

static int parse_str(const char *doc, pp_cloudconfig_t *cc, pp_error_t *err)
{
    return pp_cloudconfig_parse(doc, strlen(doc), 0, cc, err);
}

/* Parses `doc`, which must fail with `code` and a message containing `want`. */
static void expect_fail(const char *doc, size_t len, int code, const char *want)
{
    pp_cloudconfig_t cc;
    pp_error_t err = {0};
    int r = pp_cloudconfig_parse(doc, len, 0, &cc, &err);
    if (r != code || strstr(err.message, want) == NULL) {
        print_error("document:\n%.*s\n", (int)len, doc);
        print_error("got %d `%s`, want %d containing `%s`\n", r, err.message, code, want);
        fail();
    }
    assert_null(cc.files);
    assert_int_equal(cc.nfiles, 0);
}

#define EXPECT_FAIL(doc, want) expect_fail((doc), strlen(doc), -EINVAL, (want))

/* Parses `doc` and checks it holds exactly one file with this content. */
static void expect_one(const char *doc, const char *path, const char *content, size_t len)
{
    pp_cloudconfig_t cc;
    pp_error_t err = {0};
    int r = parse_str(doc, &cc, &err);
    if (r != 0) {
        print_error("document:\n%s\nerror: %s\n", doc, err.message);
        fail();
    }
    assert_int_equal(cc.nfiles, 1);
    assert_string_equal(cc.files[0].path, path);
    if (cc.files[0].len != len || memcmp(cc.files[0].content, content, len) != 0) {
        print_error("document:\n%s\ngot  [%.*s] (%zu)\nwant [%.*s] (%zu)\n", doc,
                    (int)cc.files[0].len, cc.files[0].content, cc.files[0].len, (int)len, content,
                    len);
        fail();
    }
    assert_int_equal(cc.files[0].content[len], '\0');
    pp_cloudconfig_free(&cc);
}

#define EXPECT_ONE(doc, content) expect_one((doc), APF, (content), sizeof(content) - 1)

/* Builds `n` files, parses the result and compares every byte. */
static void roundtrip(const pp_userdata_file_t *files, size_t n, pp_buf_t *doc_out)
{
    pp_buf_t doc;
    pp_buf_init(&doc, 0);
    pp_error_t err = {0};
    assert_int_equal(pp_cloudconfig_build(files, n, &doc, &err), 0);
    pp_cloudconfig_t cc;
    int r = pp_cloudconfig_parse(doc.data, doc.len, PP_USERDATA_MAX_LIMIT, &cc, &err);
    if (r != 0) {
        print_error("document:\n%.*s\nerror: %s\n", (int)doc.len, (char *)doc.data, err.message);
        fail();
    }
    assert_int_equal(cc.nfiles, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(cc.files[i].path, files[i].path);
        if (cc.files[i].len != files[i].len ||
            memcmp(cc.files[i].content, files[i].content, files[i].len) != 0) {
            print_error("document:\n%.*s\nfile %zu differs (len %zu, want %zu)\n", (int)doc.len,
                        (char *)doc.data, i, cc.files[i].len, files[i].len);
            fail();
        }
    }
    pp_cloudconfig_free(&cc);
    if (doc_out != NULL)
        *doc_out = doc;
    else
        pp_buf_free(&doc);
}

/* ---- builder -> parser --------------------------------------------------- */

static const char pem[] = "-----BEGIN EC PRIVATE KEY-----\n"
                          "MHcCAQEEIDq0Xh1qgqRk4b0p8Qm0p8Qm0p8Qm0p8Qm0p8Qm0p8QmoAoGCCqGSM49\n"
                          "AwEHoUQDQgAE2x0ZxbP0p8Qm0p8Qm0p8Qm0p8Qm0p8Qm0p8Qm0p8Qm0p8Qm0p8Q\n"
                          "m0p8Qm0p8Qm0p8Qm0p8Qm0p8Qm0p8Qm0p8Qm0w==\n"
                          "-----END EC PRIVATE KEY-----\n";

static const char *const tricky[] = {
    "",
    "\n",
    "\n\n\n",
    "plain",
    "no final newline\nsecond line",
    "one final newline\n",
    "several final newlines\n\n\n",
    "\nleading empty line\n",
    "  leading spaces on the first line\nsecond\n",
    "\tleading tab\n",
    "trailing spaces  \nnext\n",
    "trailing tab\t\n",
    "last line trailing space ",
    "   ",
    "a\n   \nb\n",
    "inner\ttab\n",
    "{\"pod-network\":{\"podip\":\"10.244.1.5/24\",\"routes\":[]},\n \"pod-name\":\"x\"}\n",
    "{\"tls-server-key\":\"-----BEGIN KEY-----\\nAAAA\\n-----END KEY-----\\n\"}",
    "unicode: é € 😀 \xf4\x8f\xbf\xbd\n",
    "controls: \x01\x1b\x7f end\n",
    "nul \0 inside\n",
    "carriage\r\nreturn\r\n",
    "C1 \xc2\x85 NEL, \xe2\x80\xa8 LS, \xe2\x80\xa9 PS, \xef\xbb\xbf BOM\n",
    "quotes ' and \" and backslash \\ \n",
    "- looks like a sequence\n- item\n",
    "key: value\nother: [1, 2]\n",
    "# a comment\n#another\n",
    "|\n>\n",
    "...\n---\n",
    "yes",
    "0x1F",
    "~",
    "&anchor *alias !tag",
    "    indented block\n  less\n",
};

static void test_roundtrip_each(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
        size_t len = strlen(tricky[i]);
        if (strncmp(tricky[i], "nul ", 4) == 0)
            len = sizeof("nul \0 inside\n") - 1;
        pp_userdata_file_t f = {AUTH, tricky[i], len};
        roundtrip(&f, 1, NULL);
    }
    pp_userdata_file_t f = {AUTH, pem, strlen(pem)};
    roundtrip(&f, 1, NULL);
}

static void test_roundtrip_all_paths(void **state)
{
    (void)state;
    pp_userdata_file_t files[] = {
        {APF, tricky[16], strlen(tricky[16])},
        {AUTH, pem, strlen(pem)},
        {INITD, "H4sIAAAAAAAAA+3BMQEAAADCoPVPbQhfoAAAAAAAAAAAAAAAAAAAAIC3AYbSVKsAKAAA", 68},
        {AA, "[token_configs]\n", 16},
        {CDH, "x  \n\n", 5},
        {SCRATCH, "", 0},
    };
    pp_buf_t doc;
    roundtrip(files, 6, &doc);
    assert_int_equal(pp_buf_append_byte(&doc, 0), 0); /* for strstr */
    /* The PEM key, the common case, is a literal block. */
    assert_non_null(strstr((char *)doc.data, "- path: " AUTH "\n  content: |\n    -----BEGIN"));
    /* Trailing spaces force the quoted form. */
    assert_non_null(strstr((char *)doc.data, "content: \"x  \\n\\n\"\n"));
    pp_buf_free(&doc);
}

static void test_roundtrip_large(void **state)
{
    (void)state;
    size_t n = 200 * 1024;
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        big[i] = (i % 61 == 60) ? '\n' : (char)('a' + i % 26);
    pp_userdata_file_t f = {APF, big, n};
    roundtrip(&f, 1, NULL);
    big[n - 1] = ' '; /* now double-quoted, one very long line */
    roundtrip(&f, 1, NULL);
    free(big);
}

static void test_build_refuses(void **state)
{
    (void)state;
    pp_buf_t doc;
    pp_buf_init(&doc, 0);
    pp_error_t err = {0};
    pp_userdata_file_t bad_path = {"/etc/shadow", "x", 1};
    assert_int_equal(pp_cloudconfig_build(&bad_path, 1, &doc, &err), -EINVAL);
    assert_non_null(strstr(err.message, "outside /run/peerpod/"));
    pp_userdata_file_t dup[] = {{APF, "a", 1}, {APF, "b", 1}};
    assert_int_equal(pp_cloudconfig_build(dup, 2, &doc, &err), -EINVAL);
    assert_non_null(strstr(err.message, "duplicate path"));
    pp_userdata_file_t bad_utf8 = {APF, "a\xff", 2};
    assert_int_equal(pp_cloudconfig_build(&bad_utf8, 1, &doc, &err), -EINVAL);
    assert_non_null(strstr(err.message, "not UTF-8"));
    pp_buf_free(&doc);

    /* No files: an empty flow sequence, which parses back empty. */
    pp_buf_init(&doc, 0);
    assert_int_equal(pp_cloudconfig_build(NULL, 0, &doc, &err), 0);
    assert_int_equal(doc.len, strlen("#cloud-config\nwrite_files: []\n"));
    assert_memory_equal(doc.data, "#cloud-config\nwrite_files: []\n", doc.len);
    pp_cloudconfig_t cc;
    assert_int_equal(pp_cloudconfig_parse(doc.data, doc.len, 0, &cc, &err), 0);
    assert_int_equal(cc.nfiles, 0);
    pp_cloudconfig_free(&cc);
    pp_buf_free(&doc);
}

static void test_path_check(void **state)
{
    (void)state;
    pp_error_t err = {0};
    assert_int_equal(pp_userdata_path_check(APF, &err), 0);
    assert_int_equal(pp_userdata_path_check("run/peerpod/apf.json", &err), -EINVAL);
    assert_non_null(strstr(err.message, "not absolute"));
    assert_int_equal(pp_userdata_path_check("/run/peerpod/../../etc/passwd", &err), -EINVAL);
    assert_non_null(strstr(err.message, "`..`"));
    assert_int_equal(pp_userdata_path_check("/run/peerpod/x/../apf.json", &err), -EINVAL);
    assert_int_equal(pp_userdata_path_check("/run/peerpod/policy.rego", &err), -EINVAL);
    assert_non_null(strstr(err.message, "not an allowed file"));
    assert_int_equal(pp_userdata_path_check("/run/peerpod//apf.json", &err), -EINVAL);
    assert_int_equal(pp_userdata_path_check("/run/peerpodX/apf.json", &err), -EINVAL);
    assert_int_equal(pp_userdata_path_lookup(AUTH)->mode, 0600);
    assert_int_equal(pp_userdata_path_lookup(INITD)->mode, 0600);
    assert_int_equal(pp_userdata_path_lookup(SCRATCH)->mode, 0644);
    assert_string_equal(pp_userdata_path_lookup(CDH)->name, "cdh.toml");
    size_t n;
    assert_non_null(pp_userdata_paths(&n));
    assert_int_equal(n, 6);
}

/* ---- YAML forms the parser reads ----------------------------------------- */

#define HEAD "#cloud-config\nwrite_files:\n"

static void test_scalar_forms(void **state)
{
    (void)state;
    EXPECT_ONE(HEAD "- path: " APF "\n  content: plain text # comment\n", "plain text");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: -----BEGIN:x ?y a#b\n", "-----BEGIN:x ?y a#b");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: 'it''s # not a comment'\n",
               "it's # not a comment");
    EXPECT_ONE(HEAD "- path: '" APF "'\n  content: \"" APF "\"\n", APF);
    EXPECT_ONE(HEAD "- path: " APF "\n  content: \"\\x41\\u00e9\\U0001F600\\t\\\"\\\\\\/\\0"
                    "\\a\\b\\e\\f\\r\\v\\ \\N\\_\\L\\P\"\n",
               "A\xc3\xa9\xf0\x9f\x98\x80\t\"\\/\0\a\b\x1b\f\r\v \xc2\x85\xc2\xa0\xe2\x80\xa8"
               "\xe2\x80\xa9");
    /* Multi-line flow scalars fold: a break is a space, an empty line a break,
     * white space around breaks goes. */
    EXPECT_ONE(HEAD "- path: " APF "\n  content: first\n    second  \n\n     third\n",
               "first second\nthird");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: 'a  \n    b\n\n\n    c '\n", "a b\n\nc ");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: \"a\\\n    \\ b\\n\\\n    c  \\\n   d\"\n",
               "a b\nc  d");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: \"x\\t\n    y\"\n", "x\t y");
    /* Block scalars: chomping and indentation indicators, folding. */
    EXPECT_ONE(HEAD "- path: " APF "\n  content: |\n    a\n     b\n\n    c\n\n\n", "a\n b\n\nc\n");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: |-\n    a\n\n", "a");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: |+\n    a\n\n", "a\n\n");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: |+\n    a", "a");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: |2-\n      lead\n    x\n", "  lead\nx");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: |-2\n      lead\n", "  lead");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: | # comment\n    # not a comment\n",
               "# not a comment\n");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: >\n    a\n    b\n\n    c\n      more\n    d\n",
               "a b\nc\n  more\nd\n");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: >-\n\n    a\n    b\n", "\na b");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: |\n\n", "");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: |+\n\n\n", "\n\n");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: |\n        \n", "");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: |+\n        \n  \n", "\n\n");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: ''\n", "");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: \"\"  # empty\n", "");
}

static void test_structure_forms(void **state)
{
    (void)state;
    /* Indented sequence (Go yaml.v3 style), keys in any order. */
    EXPECT_ONE("#cloud-config\nwrite_files:\n    -   content: x\n        path: " APF "\n", "x");
    /* The mapping on the lines after a bare `-`. */
    EXPECT_ONE(HEAD "-\n  path: " APF "\n  content: x\n", "x");
    /* Comments and blank lines anywhere between nodes, a document start and
     * end, trailing white space on the header. */
    EXPECT_ONE("#cloud-config  \n# c\n---\n\nwrite_files: # c\n# c\n- path: " APF
               " # c\n\n  # c\n  content: |\n    x\n# c\n...\n# end\n",
               "x\n");
    /* A block scalar's content may look like anything. */
    EXPECT_ONE(HEAD "- path: " APF "\n  content: |\n    - path: /etc/shadow\n      content: x\n",
               "- path: /etc/shadow\n  content: x\n");

    pp_cloudconfig_t cc;
    pp_error_t err = {0};
    assert_int_equal(parse_str("#cloud-config\nwrite_files: []\n", &cc, &err), 0);
    assert_int_equal(cc.nfiles, 0);
    pp_cloudconfig_free(&cc);
    const char *two = HEAD "- path: " AA "\n  content: a\n- content: b\n  path: " CDH "\n";
    assert_int_equal(parse_str(two, &cc, &err), 0);
    assert_int_equal(cc.nfiles, 2);
    assert_string_equal(pp_cloudconfig_find(&cc, CDH)->content, "b");
    assert_string_equal(pp_cloudconfig_find(&cc, AA)->content, "a");
    assert_null(pp_cloudconfig_find(&cc, APF));
    pp_cloudconfig_free(&cc);
    /* An entry without `content` is an empty file: upstream's template
     * writes the scratch space marker so. */
    const char *marker = HEAD "- path: " SCRATCH "\n- path: " AA "\n  content: a\n";
    assert_int_equal(parse_str(marker, &cc, &err), 0);
    assert_int_equal(cc.nfiles, 2);
    assert_string_equal(pp_cloudconfig_find(&cc, SCRATCH)->content, "");
    assert_int_equal(pp_cloudconfig_find(&cc, SCRATCH)->len, 0);
    pp_cloudconfig_free(&cc);
}

/* ---- hostile input ------------------------------------------------------- */

static void test_refuses_keys_and_paths(void **state)
{
    (void)state;
    EXPECT_FAIL("#cloud-config\nruncmd:\n- reboot\n", "line 2: unknown top-level key `runcmd`");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: x\n  owner: root\n",
                "line 5: unknown key `owner` in a `write_files` entry");
    EXPECT_FAIL(HEAD "- path: " APF "\n  permissions: '0777'\n  content: x\n",
                "unknown key `permissions`");
    EXPECT_FAIL(HEAD "- path: " APF "\n  encoding: b64\n  content: eA==\n",
                "unknown key `encoding`");
    EXPECT_FAIL(HEAD "- path: /run/peerpod/../../etc/shadow\n  content: x\n",
                "line 3: path `/run/peerpod/../../etc/shadow` contains `..`");
    EXPECT_FAIL(HEAD "- path: /etc/passwd\n  content: x\n", "is outside /run/peerpod/");
    EXPECT_FAIL(HEAD "- path: run/peerpod/apf.json\n  content: x\n", "not absolute");
    EXPECT_FAIL(HEAD "- path: /run/peerpod/agent.toml\n  content: x\n", "not an allowed file");
    EXPECT_FAIL(HEAD "- path: \"/run/peerpod/apf.json\\0x\"\n  content: x\n", "NUL");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: a\n- path: " APF "\n  content: b\n",
                "line 5: duplicate path `" APF "` (first on line 3)");
    EXPECT_FAIL(HEAD "- path: " APF "\n  path: " AUTH "\n  content: x\n",
                "line 4: duplicate key `path` (first on line 3)");
    EXPECT_FAIL(HEAD "- content: x\n", "line 3: `write_files` entry has no `path`");
    EXPECT_FAIL("#cloud-config\nwrite_files: []\nwrite_files: []\n", "duplicate key");
    EXPECT_FAIL("#cloud-config\n# nothing\n", "no `write_files` key");
}

static void test_refuses_yaml_features(void **state)
{
    (void)state;
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: &a x\n", "line 4: anchors are not supported");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: *a\n", "aliases are not supported");
    EXPECT_FAIL(HEAD "- &e path: " APF "\n  content: x\n", "anchors are not supported");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: !!binary eA==\n", "tags are not supported");
    EXPECT_FAIL(HEAD "- {path: " APF ", content: x}\n", "flow collections are not supported");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: [a, b]\n", "not a flow collection");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content:\n  - a\n", "needs a string value");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: - a\n", "not a collection");
    EXPECT_FAIL(HEAD "- path: " APF "\n  ? content\n  : x\n", "complex keys");
    EXPECT_FAIL(HEAD "- path: " APF "\n  \"content\": x\n", "quoted keys");
    EXPECT_FAIL(HEAD "- - path: " APF "\n", "unexpected sequence entry");
    EXPECT_FAIL("#cloud-config\nwrite_files:\n  path: x\n", "must be a sequence of entries");
    EXPECT_FAIL("#cloud-config\nwrite_files: x\n", "must be a sequence of entries");
    EXPECT_FAIL("#cloud-config\nwrite_files: [a]\n", "flow sequences are not supported");
    EXPECT_FAIL("#cloud-config\nwrite_files:\n", "must be a sequence of entries");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: x\n---\nwrite_files: []\n",
                "only one YAML document");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: x\n...\nwrite_files: []\n",
                "only one YAML document");
    EXPECT_FAIL(HEAD "-\n", "empty `write_files` entry");
}

static void test_refuses_non_strings(void **state)
{
    (void)state;
    static const char *const values[] = {
        "123",   "-1",   "0x1F", "0o17",  "1.5",        "1e3",      ".inf",
        "-.Inf", ".NaN", "true", "No",    "off",        "y",        "~",
        "null",  "<<",   "=",    "1_000", "2001-12-14", "12:30:00", "2001-12-14 21:59:43.10 -5"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char doc[256];
        snprintf(doc, sizeof(doc), HEAD "- path: " APF "\n  content: %s\n", values[i]);
        EXPECT_FAIL(doc, "may not read as a string in every YAML reader; quote it");
    }
    EXPECT_FAIL(HEAD "- path: " APF "\n  content:\n", "line 4: `content` needs a string value");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: # only a comment\n", "needs a string value");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: a: b\n", "`:` followed by a space");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: a\n    b: c\n", "`:` followed by a space");
    /* Strings that merely start like numbers are fine. */
    EXPECT_ONE(HEAD "- path: " APF "\n  content: 1 apple\n", "1 apple");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: -.\n", "-.");
    EXPECT_ONE(HEAD "- path: " APF "\n  content: 1.2.3-rc/x\n", "1.2.3-rc/x");
}

static void test_refuses_malformed(void **state)
{
    (void)state;
    EXPECT_FAIL("", "line 1: empty user data");
    EXPECT_FAIL("#!/bin/sh\nreboot\n", "does not start with `#cloud-config`");
    EXPECT_FAIL("#cloud-configX\nwrite_files: []\n", "unexpected text after `#cloud-config`");
    EXPECT_FAIL("\xef\xbb\xbf#cloud-config\nwrite_files: []\n", "does not start with");
    EXPECT_FAIL("#cloud-config\r\nwrite_files: []\r\n", "line 1: carriage return");
    EXPECT_FAIL(HEAD "- path: " APF "\n\tcontent: x\n", "line 4: tab character in indentation");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content:\tx\n", "tab character after `:`");
    EXPECT_FAIL(HEAD "-\tpath: " APF "\n", "tab character after `-`");
    EXPECT_FAIL(HEAD "- path: '" APF "'\n   content: x\n", "line 4: unexpected indentation");
    /* After a plain value a deeper line continues it, as in YAML. */
    EXPECT_FAIL(HEAD "- path: " APF "\n   content: x\n", "line 4: `:` followed by a space");
    EXPECT_FAIL(HEAD "- path: " APF "\n content: x\n", "line 4: unexpected indentation");
    EXPECT_FAIL(HEAD "  - path: " APF "\n    content: x\n - path: " AUTH "\n",
                "line 5: unexpected indentation");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: 'abc\n", "line 4: unterminated single-quoted");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: \"abc\n  d\"\n",
                "line 5: continuation of a quoted string must be indented more");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: 'a' b\n", "unexpected text after the closing");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: 'a'#b\n", "unexpected text after the closing");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: \"\\q\"\n", "unknown escape `\\q`");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: \"\\x4\"\n", "bad hex digit");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: \"\\u12\n", "truncated");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: \"\\ud800\"\n", "names no Unicode character");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: \"\\U00110000\"\n", "names no Unicode");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: |x\n    a\n", "bad block scalar header");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: |0\n    a\n", "bad block scalar header");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: |--\n    a\n", "bad block scalar header");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: |\n        \n    a\n",
                "empty line in a block scalar is indented more");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: |\n    a\n   b\n", "unexpected indentation");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: |\n   \t\tx\n", "line 5: tab character in block");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: |\n    a\n  \t\n    b\n",
                "line 6: tab character in block scalar indentation");
    /* Past the indentation a tab is content. */
    EXPECT_ONE(HEAD "- path: " APF "\n  content: |\n    a\n    \tb\n", "a\n\tb\n");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: x\n\x01\n", "line 5: control character 0x01");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: \xc3\x28\n", "line 4: invalid UTF-8");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: \xed\xa0\x80\n", "invalid UTF-8");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: \xc0\xaf\n", "invalid UTF-8");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: 'a\xe2\x80\xa8'\n", "U+2028 must be escaped");
    EXPECT_FAIL(HEAD "- path: " APF "\n  content: 'a\xc2\x85'\n", "U+0085 must be escaped");
    static const char nul[] = HEAD "- path: " APF "\n  content: a\0b\n";
    expect_fail(nul, sizeof(nul) - 1, -EINVAL, "control character 0x00");
}

static void test_size_limit(void **state)
{
    (void)state;
    size_t n = PP_USERDATA_MAX_DEFAULT + 1;
    char *doc = malloc(n);
    assert_non_null(doc);
    memset(doc, '#', n);
    expect_fail(doc, n, -EMSGSIZE, "more than the limit of 262144");
    /* A smaller limit of the caller's choice. */
    const char *small = HEAD "- path: " APF "\n  content: x\n";
    pp_cloudconfig_t cc;
    pp_error_t err = {0};
    assert_int_equal(pp_cloudconfig_parse(small, strlen(small), 16, &cc, &err), -EMSGSIZE);
    assert_int_equal(pp_cloudconfig_parse(small, strlen(small), strlen(small), &cc, &err), 0);
    pp_cloudconfig_free(&cc);
    free(doc);
}

/* Mutations of valid documents: the parser never crashes, and whatever it
 * accepts the builder writes back into something it reads the same. */
static void test_mutations(void **state)
{
    (void)state;
    pp_userdata_file_t files[] = {
        {APF, "{\"a\": \"b\"}\n", 11},
        {AUTH, "  x\ny  \n", 8},
        {AA, "é\n\n", 4},
    };
    pp_buf_t base;
    roundtrip(files, 3, &base);
    static const char extra[] = "\n \t-:#'\"\\|>&*!{}[],?\x80\xc3";
    uint32_t seed = 12345;
    char *m = malloc(base.len + 16);
    assert_non_null(m);
    for (int iter = 0; iter < 30000; iter++) {
        memcpy(m, base.data, base.len);
        size_t n = base.len;
        for (int k = 0; k < 1 + iter % 4; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = 14 + (seed >> 8) % (n - 14);
            seed = seed * 1103515245u + 12345u;
            char c = extra[(seed >> 8) % (sizeof(extra) - 1)];
            switch ((seed >> 20) % 4) {
            case 0:
                m[pos] = c;
                break;
            case 1:
                memmove(m + pos + 1, m + pos, n - pos);
                m[pos] = c;
                n++;
                break;
            case 2:
                if (n > 15) {
                    memmove(m + pos, m + pos + 1, n - pos - 1);
                    n--;
                }
                break;
            default:
                n = pos + 1;
                break;
            }
        }
        pp_cloudconfig_t cc;
        pp_error_t err = {0};
        if (pp_cloudconfig_parse(m, n, 0, &cc, &err) == 0) {
            roundtrip(cc.files, cc.nfiles, NULL);
            pp_cloudconfig_free(&cc);
        } else {
            assert_true(err.message[0] != '\0');
        }
    }
    free(m);
    pp_buf_free(&base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_each),
        cmocka_unit_test(test_roundtrip_all_paths),
        cmocka_unit_test(test_roundtrip_large),
        cmocka_unit_test(test_build_refuses),
        cmocka_unit_test(test_path_check),
        cmocka_unit_test(test_scalar_forms),
        cmocka_unit_test(test_structure_forms),
        cmocka_unit_test(test_refuses_keys_and_paths),
        cmocka_unit_test(test_refuses_yaml_features),
        cmocka_unit_test(test_refuses_non_strings),
        cmocka_unit_test(test_refuses_malformed),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
