/* The TEE module: launch-bound values in SNP reports and TDX quotes, the
 * expected value for each digest length, the configfs-tsm exchange and the
 * check against a fake configfs tree, and detection. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "tee.h"
#include "tpm.h"

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void test_snp_value(void **state)
{
    (void)state;
    uint8_t r[0x4A0] = {0};
    for (int i = 0; i < 32; i++)
        r[0xC0 + i] = (uint8_t)(i + 1);
    r[0xC0 - 1] = 0xEE; /* neighbours must not leak in */
    r[0xE0] = 0xEE;
    pud_launch_value_t lv;
    pp_error_t err = {0};
    assert_int_equal(pud_tsm_launch_value("sev_guest", r, sizeof(r), &lv, &err), 0);
    assert_string_equal(lv.field, "HOST_DATA");
    assert_int_equal(lv.len, 32);
    for (int i = 0; i < 32; i++)
        assert_int_equal(lv.value[i], i + 1);
    assert_int_equal(pud_tsm_launch_value("sev_guest", r, 0xE0, &lv, &err), 0);
    assert_int_equal(pud_tsm_launch_value("sev_guest", r, 0xDF, &lv, &err), -EBADMSG);
    assert_int_equal(pud_tsm_launch_value("sev_guest", r, 0, &lv, &err), -EBADMSG);
    assert_int_equal(pud_tsm_launch_value("arm_cca_guest", r, sizeof(r), &lv, &err), -ENOTSUP);
}

static size_t make_quote(uint8_t *q, int version, uint16_t body_type)
{
    size_t body = version == 5 ? 54 : 48;
    size_t len = body + 584 + 100;
    memset(q, 0, len);
    put_le16(q, (uint16_t)version);
    put_le16(q + 2, 2);
    put_le32(q + 4, 0x81);
    if (version == 5) {
        put_le16(q + 48, body_type);
        put_le32(q + 50, 584);
    }
    for (int i = 0; i < 48; i++)
        q[body + 184 + i] = (uint8_t)(0x80 + i);
    q[body + 136 + 47] = 0xEE; /* MRTD's last byte, just before */
    q[body + 232] = 0xEE;      /* MROWNER's first, just after */
    return len;
}

static void test_tdx_value(void **state)
{
    (void)state;
    uint8_t q[1024];
    pud_launch_value_t lv;
    pp_error_t err = {0};
    for (int v = 4; v <= 5; v++) {
        for (uint16_t type = 2; type <= 3; type++) {
            size_t len = make_quote(q, v, type);
            assert_int_equal(pud_tsm_launch_value("tdx_guest", q, len, &lv, &err), 0);
            assert_string_equal(lv.field, "MRCONFIGID");
            assert_int_equal(lv.len, 48);
            for (int i = 0; i < 48; i++)
                assert_int_equal(lv.value[i], 0x80 + i);
            size_t need = (v == 5 ? 54 : 48) + 184 + 48;
            assert_int_equal(pud_tsm_launch_value("tdx_guest", q, need, &lv, &err), 0);
            assert_int_equal(pud_tsm_launch_value("tdx_guest", q, need - 1, &lv, &err), -EBADMSG);
        }
    }
    size_t len = make_quote(q, 5, 4); /* an unknown body type */
    assert_int_equal(pud_tsm_launch_value("tdx_guest", q, len, &lv, &err), -EBADMSG);
    len = make_quote(q, 3, 0); /* an SGX-era version */
    assert_int_equal(pud_tsm_launch_value("tdx_guest", q, len, &lv, &err), -EBADMSG);
    len = make_quote(q, 4, 0);
    put_le32(q + 4, 0); /* SGX, not TDX */
    assert_int_equal(pud_tsm_launch_value("tdx_guest", q, len, &lv, &err), -EBADMSG);
    assert_int_equal(pud_tsm_launch_value("tdx_guest", q, 10, &lv, &err), -EBADMSG);
}

static void test_expected(void **state)
{
    (void)state;
    uint8_t d[64], out[48];
    for (int i = 0; i < 64; i++)
        d[i] = (uint8_t)(i + 1);
    pud_launch_expected(d, 32, 48, out); /* sha256 into MRCONFIGID: zero-padded */
    assert_memory_equal(out, d, 32);
    for (int i = 32; i < 48; i++)
        assert_int_equal(out[i], 0);
    pud_launch_expected(d, 64, 48, out); /* sha512: cut */
    assert_memory_equal(out, d, 48);
    pud_launch_expected(d, 48, 32, out); /* sha384 into HOST_DATA: cut */
    assert_memory_equal(out, d, 32);
}

/* ---- against a fake configfs tree --------------------------------------------- */

typedef struct tree_s {
    char dir[64];
    char cfg[128];
} tree_t;

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void tree_init(tree_t *t, const char *provider, const uint8_t *blob, size_t len)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/test_pud_tee.XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->cfg, sizeof(t->cfg), "%s/cfg", t->dir);
    char p[256];
    const char *parts[] = {"", "/tsm", "/tsm/report", ("/tsm/report/" PUD_TSM_ENTRY)};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s%s", t->cfg, parts[i]);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    snprintf(p, sizeof(p), "%s/tsm/report/" PUD_TSM_ENTRY "/provider", t->cfg);
    write_file(p, provider, strlen(provider));
    snprintf(p, sizeof(p), "%s/tsm/report/" PUD_TSM_ENTRY "/generation", t->cfg);
    write_file(p, "3\n", 2);
    snprintf(p, sizeof(p), "%s/tsm/report/" PUD_TSM_ENTRY "/inblob", t->cfg);
    write_file(p, "", 0);
    snprintf(p, sizeof(p), "%s/tsm/report/" PUD_TSM_ENTRY "/outblob", t->cfg);
    write_file(p, blob, len);
}

static void tree_free(tree_t *t)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    assert_int_equal(system(cmd), 0);
}

static void test_check_binding(void **state)
{
    (void)state;
    uint8_t digest[48];
    for (int i = 0; i < 48; i++)
        digest[i] = (uint8_t)(0xA0 ^ i);
    uint8_t r[0x4A0] = {0};
    memcpy(r + 0xC0, digest, 32);
    tree_t t;
    tree_init(&t, "sev_guest\n", r, sizeof(r));
    pud_opts_t o = {.root = t.dir, .configfs = t.cfg};
    char result[256];
    pp_error_t err = {0};
    assert_int_equal(pud_check_launch_binding(&o, digest, 48, result, sizeof(result), &err), 0);
    assert_string_equal(result, "HOST_DATA matches (sev_guest)");
    /* The report data went to inblob: 64 bytes. */
    char p[256];
    struct stat st;
    snprintf(p, sizeof(p), "%s/tsm/report/" PUD_TSM_ENTRY "/inblob", t.cfg);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, PUD_TSM_INBLOB);

    /* A digest that differs in its last bound byte. */
    digest[31] ^= 1;
    assert_int_equal(pud_check_launch_binding(&o, digest, 48, result, sizeof(result), &err),
                     -EPERM);
    assert_non_null(strstr(err.message, "does not match the initdata digest"));
    /* ... but past the 32 bytes HOST_DATA holds, nothing matters. */
    digest[31] ^= 1;
    digest[40] ^= 1;
    assert_int_equal(pud_check_launch_binding(&o, digest, 48, result, sizeof(result), &err), 0);
    /* Set, but no initdata. */
    assert_int_equal(pud_check_launch_binding(&o, NULL, 0, result, sizeof(result), &err), -EPERM);
    assert_non_null(strstr(err.message, "carries no initdata"));
    tree_free(&t);

    /* All zero: the host bound nothing. */
    memset(r + 0xC0, 0, 32);
    tree_init(&t, "sev_guest\n", r, sizeof(r));
    o.root = t.dir;
    o.configfs = t.cfg;
    assert_int_equal(pud_check_launch_binding(&o, digest, 48, result, sizeof(result), &err), 0);
    assert_non_null(strstr(result, "unset"));
    assert_int_equal(pud_check_launch_binding(&o, NULL, 0, result, sizeof(result), &err), 0);
    tree_free(&t);

    /* A report too short for the provider: skipped, with the reason. */
    tree_init(&t, "sev_guest\n", r, 16);
    o.root = t.dir;
    o.configfs = t.cfg;
    assert_int_equal(pud_check_launch_binding(&o, digest, 48, result, sizeof(result), &err), 0);
    assert_non_null(strstr(result, "skipped: SNP report of 16 bytes is too short"));
    tree_free(&t);

    /* No configfs-tsm. */
    o.configfs = "/nonexistent";
    assert_int_equal(pud_check_launch_binding(&o, digest, 48, result, sizeof(result), &err), 0);
    assert_string_equal(result, "skipped: no configfs-tsm");
}

static void test_tsm_report(void **state)
{
    (void)state;
    uint8_t blob[100];
    memset(blob, 0x5A, sizeof(blob));
    tree_t t;
    tree_init(&t, "tdx_guest", blob, sizeof(blob));
    pud_opts_t o = {.root = t.dir, .configfs = t.cfg};
    char provider[64];
    pp_buf_t b;
    pp_buf_init(&b, 0);
    pp_error_t err = {0};
    assert_int_equal(pud_tsm_report(&o, provider, sizeof(provider), &b, &err), 0);
    assert_string_equal(provider, "tdx_guest");
    assert_int_equal(b.len, sizeof(blob));
    assert_memory_equal(b.data, blob, sizeof(blob));
    pp_buf_free(&b);
    /* An outblob larger than the kernel ever gives is refused. */
    uint8_t *big = calloc(1, PUD_TSM_OUTBLOB + 1);
    assert_non_null(big);
    char p[256];
    snprintf(p, sizeof(p), "%s/tsm/report/" PUD_TSM_ENTRY "/outblob", t.cfg);
    write_file(p, big, PUD_TSM_OUTBLOB + 1);
    free(big);
    pp_buf_init(&b, 0);
    assert_int_equal(pud_tsm_report(&o, provider, sizeof(provider), &b, &err), -EMSGSIZE);
    pp_buf_free(&b);
    tree_free(&t);
}

static void test_detect(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_pud_tee.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char dev[128], p[160];
    snprintf(dev, sizeof(dev), "%s/dev", dir);
    assert_int_equal(mkdir(dev, 0755), 0);
    pud_opts_t o = {.root = dir};
    pud_tee_t t;
    pud_tee_detect(&o, &t);
    assert_int_equal(t.kind, PUD_TEE_NONE);
    assert_string_equal(pud_tee_kind_name(t.kind), "none");

    snprintf(p, sizeof(p), "%s/tpmrm0", dev);
    write_file(p, "", 0);
    pud_tee_detect(&o, &t);
    assert_int_equal(t.kind, PUD_TEE_VTPM);
    assert_true(t.have_tpm);
    /* A plain file is shown, never used as a TPM. */
    char tcti[256];
    assert_int_equal(pud_tpm_tcti(&o, tcti, sizeof(tcti)), -ENOENT);
    o.tcti = "swtpm:port=1";
    assert_int_equal(pud_tpm_tcti(&o, tcti, sizeof(tcti)), 0);
    assert_string_equal(tcti, "swtpm:port=1");
    o.tcti = NULL;

    snprintf(p, sizeof(p), "%s/tdx_guest", dev);
    write_file(p, "", 0);
    pud_tee_detect(&o, &t);
    assert_int_equal(t.kind, PUD_TEE_TDX);
    assert_non_null(strstr(t.evidence, "tdx_guest"));

    snprintf(p, sizeof(p), "%s/sev-guest", dev);
    write_file(p, "", 0);
    pud_tee_detect(&o, &t);
    assert_int_equal(t.kind, PUD_TEE_SNP);
    assert_string_equal(pud_tee_kind_name(t.kind), "snp");

    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snp_value),  cmocka_unit_test(test_tdx_value),
        cmocka_unit_test(test_expected),   cmocka_unit_test(test_check_binding),
        cmocka_unit_test(test_tsm_report), cmocka_unit_test(test_detect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
