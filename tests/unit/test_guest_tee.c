/* The guest components' pure parsers, on reports built to the
 * specifications here: SEV-SNP reports into the sev crate's JSON, the
 * extended report's certificate table, TD quotes (v4 and v5), the CC event
 * log, Azure's HCL report; base64 in both alphabets; JWEs that must not
 * decrypt; resource URIs; JWT expiry. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "attester.h"
#include "kbs.h"
#include "teekey.h"
#include "util/base64.h"

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16),
    p[3] = (uint8_t)(v >> 24);
}

static void snp_report(uint8_t r[GUEST_SNP_REPORT_LEN], uint32_t version, uint8_t fam, uint8_t mod)
{
    memset(r, 0, GUEST_SNP_REPORT_LEN);
    put32(r, version);
    put32(r + 0x34, 1);
    for (int i = 0; i < 64; i++)
        r[0x50 + i] = (uint8_t)i;
    r[0xC0] = 0xAB;
    static const uint8_t tcb[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    memcpy(r + 0x38, tcb, 8);
    memcpy(r + 0x180, tcb, 8);
    r[0x188] = fam, r[0x189] = mod, r[0x18A] = 2;
    r[0x1E8] = 9, r[0x1E9] = 55, r[0x1EA] = 1;
    r[0x1F8] = 0x77, r[0x200] = 0x88;
    r[0x2A0] = 0xEE, r[0x2E8] = 0xDD;
}

static json_int_t num(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static void test_snp_report(void **state)
{
    (void)state;
    uint8_t r[GUEST_SNP_REPORT_LEN];
    pp_error_t err;
    /* Version 5, Milan: legacy TCB layout, CPUID and mitigation vectors. */
    snp_report(r, 5, 0x19, 0x01);
    json_t *j = guest_snp_report_json(r, sizeof(r), &err);
    assert_non_null(j);
    assert_int_equal(json_object_size(j), 29);
    assert_int_equal(num(j, "version"), 5);
    json_t *t = json_object_get(j, "current_tcb");
    assert_true(json_is_null(json_object_get(t, "fmc")));
    assert_int_equal(num(t, "bootloader"), 1);
    assert_int_equal(num(t, "tee"), 2);
    assert_int_equal(num(t, "snp"), 7);
    assert_int_equal(num(t, "microcode"), 8);
    assert_int_equal(num(j, "cpuid_fam_id"), 0x19);
    assert_int_equal(num(j, "launch_mit_vector"), 0x77);
    json_t *cur = json_object_get(j, "current");
    assert_int_equal(num(cur, "major"), 1);
    assert_int_equal(num(cur, "minor"), 55);
    assert_int_equal(num(cur, "build"), 9);
    json_t *rd = json_object_get(j, "report_data");
    assert_int_equal(json_array_size(rd), 64);
    assert_int_equal(json_integer_value(json_array_get(rd, 63)), 63);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "host_data"), 0)), 0xAB);
    json_t *sig = json_object_get(j, "signature");
    assert_int_equal(json_array_size(json_object_get(sig, "r")), 72);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(sig, "s"), 0)), 0xDD);
    json_decref(j);

    /* Turin: FMC first. Version 2: no CPUID, no mitigation vectors. */
    snp_report(r, 3, 0x1A, 0x02);
    j = guest_snp_report_json(r, sizeof(r), &err);
    t = json_object_get(j, "reported_tcb");
    assert_int_equal(num(t, "fmc"), 1);
    assert_int_equal(num(t, "snp"), 4);
    assert_true(json_is_null(json_object_get(j, "launch_mit_vector")));
    json_decref(j);
    snp_report(r, 2, 0x1A, 0x02);
    j = guest_snp_report_json(r, sizeof(r), &err);
    assert_true(json_is_null(json_object_get(j, "cpuid_fam_id")));
    assert_true(json_is_null(json_object_get(json_object_get(j, "current_tcb"), "fmc")));
    json_decref(j);

    assert_null(guest_snp_report_json(r, sizeof(r) - 1, &err));
    assert_non_null(strstr(err.message, "expected 1184"));
    snp_report(r, 9, 0, 0);
    assert_null(guest_snp_report_json(r, sizeof(r), &err));
    assert_non_null(strstr(err.message, "version 9"));
    snp_report(r, 3, 0, 0);
    put32(r + 0x34, 2);
    assert_null(guest_snp_report_json(r, sizeof(r), &err));
    assert_non_null(strstr(err.message, "not ECDSA P-384"));
}

static void test_snp_certs(void **state)
{
    (void)state;
    /* VCEK's GUID 63da758d-e664-4564-adc5-f4b93be8accd, then an unknown one. */
    static const uint8_t vcek[16] = {0x8d, 0x75, 0xda, 0x63, 0x64, 0xe6, 0x64, 0x45,
                                     0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd};
    uint8_t t[24 * 3 + 5] = {0};
    memcpy(t, vcek, 16);
    put32(t + 16, 72);
    put32(t + 20, 3);
    memset(t + 24, 0x11, 16);
    put32(t + 24 + 16, 75);
    put32(t + 24 + 20, 2);
    t[72] = 1, t[73] = 2, t[74] = 3, t[75] = 4, t[76] = 5;
    pp_error_t err;
    json_t *j = guest_snp_certs_json(t, sizeof(t), &err);
    assert_non_null(j);
    assert_int_equal(json_array_size(j), 2);
    json_t *e = json_array_get(j, 0);
    assert_string_equal(json_string_value(json_object_get(e, "cert_type")), "VCEK");
    assert_int_equal(json_array_size(json_object_get(e, "data")), 3);
    e = json_array_get(j, 1);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(e, "cert_type"), "OTHER")),
        "11111111-1111-1111-1111-111111111111");
    json_decref(j);
    put32(t + 20, 1000); /* past the end */
    assert_null(guest_snp_certs_json(t, sizeof(t), &err));
    assert_non_null(strstr(err.message, "outside"));
    assert_null(guest_snp_certs_json(t, 20, &err));
    assert_non_null(strstr(err.message, "no terminating entry"));
}

static size_t td_quote(uint8_t *q, unsigned version)
{
    memset(q, 0, 2048);
    q[0] = (uint8_t)version, q[2] = 2;
    put32(q + 4, 0x81);
    size_t body = 48;
    if (version == 5) {
        q[48] = 2;
        put32(q + 50, 584);
        body = 54;
    }
    q[body + 184] = 0xC0;
    q[body + 520] = 0xD0;
    put32(q + body + 584, 200);
    return body + 584 + 4 + 200;
}

static void test_tdx_quote(void **state)
{
    (void)state;
    uint8_t q[2048];
    guest_tdx_quote_t t;
    pp_error_t err;
    for (unsigned v = 4; v <= 5; v++) {
        size_t n = td_quote(q, v);
        assert_int_equal(guest_tdx_quote_parse(q, n, &t, &err), 0);
        assert_int_equal(t.version, v);
        assert_int_equal(t.mrconfigid[0], 0xC0);
        assert_int_equal(t.report_data[0], 0xD0);
        assert_int_equal(t.sig_data_len, 200);
        assert_int_not_equal(guest_tdx_quote_parse(q, n - 1, &t, &err), 0);
        assert_non_null(strstr(err.message, "does not fit"));
        json_t *ev = guest_tdx_evidence_json(q, n, NULL, 0, &err);
        assert_true(json_is_null(json_object_get(ev, "cc_eventlog")));
        pp_buf_t b;
        pp_buf_init(&b, 0);
        const char *s = json_string_value(json_object_get(ev, "quote"));
        assert_int_equal(pp_base64_decode(s, strlen(s), &b), 0);
        assert_int_equal(b.len, n);
        assert_memory_equal(b.data, q, n);
        pp_buf_free(&b);
        json_decref(ev);
    }
    size_t n = td_quote(q, 4);
    put32(q + 4, 0); /* SGX, not TDX */
    assert_int_not_equal(guest_tdx_quote_parse(q, n, &t, &err), 0);
    assert_non_null(strstr(err.message, "not TDX"));
    n = td_quote(q, 5);
    put32(q + 50, 100);
    assert_int_not_equal(guest_tdx_quote_parse(q, n, &t, &err), 0);
    n = td_quote(q, 3);
    assert_int_not_equal(guest_tdx_quote_parse(q, n, &t, &err), 0);
    assert_non_null(strstr(err.message, "version 3"));
}

static void test_ccel(void **state)
{
    (void)state;
    /* The spec ID event (type 3, 4 bytes of data), one event with a SHA-384
     * digest and 2 bytes, the end marker, then padding. */
    uint8_t e[256];
    memset(e, 0xFF, sizeof(e));
    size_t i = 0;
    put32(e, 0), put32(e + 4, 3), memset(e + 8, 0, 20), put32(e + 28, 4);
    i = 32 + 4;
    put32(e + i, 1), put32(e + i + 4, 0x80000001), put32(e + i + 8, 1);
    e[i + 12] = 0x0c, e[i + 13] = 0;
    i += 14 + 48;
    put32(e + i, 2);
    i += 4 + 2;
    size_t want = i;
    size_t n;
    pp_error_t err;
    assert_int_equal(guest_ccel_trim(e, sizeof(e), &n, &err), 0);
    assert_int_equal(n, want);
    assert_int_not_equal(guest_ccel_trim(e, want + 4, &n, &err), 0);
    e[36 + 12] = 0x99; /* an unknown digest algorithm */
    assert_int_not_equal(guest_ccel_trim(e, sizeof(e), &n, &err), 0);
    assert_non_null(strstr(err.message, "unknown digest algorithm"));
}

static void test_hcl(void **state)
{
    (void)state;
    uint8_t r[1236 + 16] = {0};
    memcpy(r, "HCLA", 4);
    put32(r + 1216 + 8, 2);
    put32(r + 1216 + 12, 1);
    put32(r + 1216 + 16, 16);
    memcpy(r + 1236, "{\"keys\":[]}     ", 16);
    guest_hcl_t h;
    pp_error_t err;
    assert_int_equal(guest_hcl_parse(r, sizeof(r), &h, &err), 0);
    assert_int_equal(h.tee, GUEST_TEE_AZ_SNP_VTPM);
    assert_int_equal(h.hw_report_len, GUEST_SNP_REPORT_LEN);
    assert_int_equal(h.claims_len, 16);
    put32(r + 1216 + 8, 4);
    assert_int_equal(guest_hcl_parse(r, sizeof(r), &h, &err), 0);
    assert_int_equal(h.tee, GUEST_TEE_AZ_TDX_VTPM);
    put32(r + 1216 + 16, 17);
    assert_int_not_equal(guest_hcl_parse(r, sizeof(r), &h, &err), 0);
    put32(r + 1216 + 16, 16);
    put32(r + 1216 + 8, 3);
    assert_int_not_equal(guest_hcl_parse(r, sizeof(r), &h, &err), 0);
    r[0] = 'X';
    assert_int_not_equal(guest_hcl_parse(r, sizeof(r), &h, &err), 0);

    uint8_t pcrs[24][32] = {{0}};
    pcrs[8][0] = 0x5A;
    uint8_t sig[3] = {1, 2, 255}, msg[2] = {0xff, 0x54};
    json_t *ev = guest_az_evidence_json(GUEST_TEE_AZ_SNP_VTPM, sig, 3, msg, 2,
                                        (const uint8_t(*)[32])pcrs, r, 5, sig, 2);
    assert_int_equal(num(ev, "version"), 2);
    json_t *q = json_object_get(ev, "tpm_quote");
    assert_string_equal(json_string_value(json_object_get(q, "signature")), "0102ff");
    assert_string_equal(json_string_value(json_object_get(q, "message")), "ff54");
    assert_string_equal(json_string_value(json_array_get(json_object_get(q, "pcrs"), 8)),
                        "5a00000000000000000000000000000000000000000000000000000000000000");
    assert_string_equal(json_string_value(json_object_get(ev, "hcl_report")), "WENMQQA=");
    assert_string_equal(json_string_value(json_object_get(ev, "vcek")), "AQI=");
    json_decref(ev);
}

static void test_b64(void **state)
{
    (void)state;
    pp_buf_t b;
    pp_buf_init(&b, 0);
    assert_int_equal(pp_base64url_encode("\xfb\xff", 2, &b), 0);
    assert_string_equal((char *)b.data, "-_8");
    b.len = 0;
    assert_int_equal(pp_base64url_decode("-_8", 3, &b), 0);
    assert_int_equal(b.len, 2);
    b.len = 0;
    assert_int_equal(pp_base64url_decode("-_8=", 4, &b), 0);
    assert_int_equal(pp_base64url_decode("-_9", 3, &b), -EBADMSG); /* trailing bits */
    assert_int_equal(pp_base64url_decode("+/8", 3, &b), -EBADMSG);
    assert_int_equal(pp_base64_decode("+/8", 3, &b), -EBADMSG); /* unpadded */
    assert_int_equal(pp_base64_decode("a", 1, &b), -EBADMSG);
    b.len = 0;
    assert_int_equal(pp_base64_decode("+/8=", 4, &b), 0);
    assert_int_equal(b.len, 2);
    pp_buf_free(&b);
}

static void test_jwe_refusals(void **state)
{
    (void)state;
    guest_teekey_t *k;
    pp_error_t err;
    assert_int_equal(guest_teekey_new(GUEST_KEY_EC_P256, &k, &err), 0);
    json_t *jwk = guest_teekey_jwk(k);
    assert_string_equal(json_string_value(json_object_get(jwk, "alg")), "ECDH-ES+A256KW");
    assert_int_equal(strlen(json_string_value(json_object_get(jwk, "x"))), 43);
    json_decref(jwk);
    static const struct {
        const char *jwe;
        int code;
        const char *want;
    } cases[] = {
        {"[]", -EBADMSG, "not a JSON object"},
        {"{\"protected\":\"e30\"}", -EBADMSG, "lacks `alg` or `enc`"},
        /* {"alg":"RSA1_5","enc":"A256GCM"} */
        {"{\"protected\":\"eyJhbGciOiJSU0ExXzUiLCJlbmMiOiJBMjU2R0NNIn0\",\"encrypted_key\":\"\","
         "\"iv\":\"\",\"ciphertext\":\"\",\"tag\":\"\"}",
         -ENOTSUP, "is not ECDH-ES+A256KW or RSA-OAEP-256"},
        /* {"alg":"dir","enc":"A128CBC-HS256"} */
        {"{\"protected\":\"eyJhbGciOiJkaXIiLCJlbmMiOiJBMTI4Q0JDLUhTMjU2In0\"}", -ENOTSUP,
         "is not A256GCM"},
        /* {"alg":"RSA-OAEP-256","enc":"A256GCM"} to an EC key */
        {"{\"protected\":\"eyJhbGciOiJSU0EtT0FFUC0yNTYiLCJlbmMiOiJBMjU2R0NNIn0\",\"encrypted_"
         "key\":\"AA\",\"iv\":\"AA\",\"ciphertext\":\"\",\"tag\":\"AA\"}",
         -EKEYREJECTED, "needs an RSA key"},
        /* {"alg":"ECDH-ES+A256KW","enc":"A256GCM"}: no epk */
        {"{\"protected\":\"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00ifQ\","
         "\"encrypted_key\":\"AA\",\"iv\":\"AA\",\"ciphertext\":\"\",\"tag\":\"AA\"}",
         -EKEYREJECTED, "not on our curve"},
        {"{\"protected\":\"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00ifQ\","
         "\"encrypted_key\":\"!!\",\"iv\":\"AA\",\"ciphertext\":\"\",\"tag\":\"AA\"}",
         -EBADMSG, "`encrypted_key` is not base64url"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pp_buf_t out;
        pp_buf_init(&out, 1024);
        int r = guest_jwe_decrypt(k, cases[i].jwe, strlen(cases[i].jwe), &out, &err);
        if (r != cases[i].code || strstr(err.message, cases[i].want) == NULL)
            print_error("case %zu: r=%d `%s`\n", i, r, err.message);
        assert_int_equal(r, cases[i].code);
        assert_non_null(strstr(err.message, cases[i].want));
        pp_buf_free(&out);
    }
    /* The key round-trips through the PEM handed to the data hub. */
    char *pem = guest_teekey_pem(k);
    assert_non_null(strstr(pem, "BEGIN PRIVATE KEY"));
    guest_teekey_t *k2;
    assert_int_equal(guest_teekey_from_pem(pem, strlen(pem), &k2, &err), 0);
    json_t *a = guest_teekey_jwk(k), *b = guest_teekey_jwk(k2);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
    explicit_bzero(pem, strlen(pem));
    free(pem);
    guest_teekey_free(k2);
    guest_teekey_free(k);
}

static void test_uri_and_jwt(void **state)
{
    (void)state;
    char path[256];
    pp_error_t err;
    assert_int_equal(guest_resource_path("kbs:///default/key/k1", 21, path, sizeof(path), &err), 0);
    assert_string_equal(path, "default/key/k1");
    const char *u = "kbs://kbs.example:8080/repo/type/tag.v1";
    assert_int_equal(guest_resource_path(u, strlen(u), path, sizeof(path), &err), 0);
    assert_string_equal(path, "repo/type/tag.v1");
    static const char *const bad[] = {"kbs:///../key/k1", "kbs:///a/b",     "kbs:///a/b/c/d",
                                      "http:///a/b/c",    "kbs:///a/b c/d", "kbs:///a//c"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(guest_resource_path(bad[i], strlen(bad[i]), path, sizeof(path), &err),
                         -EINVAL);
    int64_t exp;
    /* {"alg":"ES256"}.{"exp":1700000000}.x */
    assert_int_equal(guest_jwt_exp("eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.x", &exp), 0);
    assert_int_equal(exp, 1700000000);
    assert_int_equal(guest_jwt_exp("a.e30.b", &exp), 0);
    assert_int_equal(exp, 0);
    assert_int_equal(guest_jwt_exp("a.b", &exp), -EBADMSG);
    assert_int_equal(guest_jwt_exp("a.!!.b", &exp), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snp_report),   cmocka_unit_test(test_snp_certs),
        cmocka_unit_test(test_tdx_quote),    cmocka_unit_test(test_ccel),
        cmocka_unit_test(test_hcl),          cmocka_unit_test(test_b64),
        cmocka_unit_test(test_jwe_refusals), cmocka_unit_test(test_uri_and_jwt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
