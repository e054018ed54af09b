/* The ISO9660 reader on images built here byte by byte: Rock Ridge, Joliet
 * and plain names, the order they are preferred in, limits, and malformed
 * structures, which must fail cleanly. */
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

#include "iso9660.h"

#define SECTOR    2048
#define NSECTORS  32
#define IMG_SIZE  (NSECTORS * SECTOR)
#define ROOT_LBA  20
#define JROOT_LBA 21
#define DATA_LBA  22

typedef struct file_s {
    const char *iso;    /* primary name, NULL: not in the primary directory */
    const char *rr;     /* Rock Ridge NM, NULL: none */
    const char *joliet; /* Joliet name, NULL: not in the Joliet directory */
    const char *data;
    uint8_t flags;
} file_t;

static void both32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
        p[7 - i] = (uint8_t)(v >> (8 * i));
    }
}

static void both16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Writes a directory record at `p`; returns its length. */
static size_t record(uint8_t *p, uint32_t lba, uint32_t len, uint8_t flags, const uint8_t *name,
                     size_t nl, const uint8_t *sua, size_t sual)
{
    size_t n = 33 + nl + (nl % 2 == 0 ? 1 : 0);
    size_t reclen = n + sual;
    memset(p, 0, reclen);
    p[0] = (uint8_t)reclen;
    both32(p + 2, lba);
    both32(p + 10, len);
    p[25] = flags;
    both16(p + 28, 1);
    p[32] = (uint8_t)nl;
    memcpy(p + 33, name, nl);
    if (sual)
        memcpy(p + n, sua, sual);
    return reclen;
}

static void descriptor(uint8_t *vd, uint8_t type, const char *label, uint32_t root_lba)
{
    memset(vd, 0, SECTOR);
    vd[0] = type;
    memcpy(vd + 1, "CD001", 5);
    vd[6] = 1;
    memset(vd + 40, ' ', 32);
    memcpy(vd + 40, label, strlen(label));
    both32(vd + 80, NSECTORS);
    both16(vd + 128, SECTOR);
    static const uint8_t dot = 0;
    record(vd + 156, root_lba, SECTOR, 0x02, &dot, 1, NULL, 0);
}

/* Builds an image with the files; `rr` adds the SUSP SP entry and NM names,
 * `joliet` a Joliet volume. */
static uint8_t *build(const char *label, const file_t *files, size_t n, int rr, int joliet)
{
    uint8_t *img = calloc(1, IMG_SIZE);
    assert_non_null(img);
    descriptor(img + 16 * SECTOR, 1, label, ROOT_LBA);
    size_t vd = 17;
    if (joliet) {
        descriptor(img + vd * SECTOR, 2, "", JROOT_LBA);
        memcpy(img + vd * SECTOR + 88, "%/E", 3);
        vd++;
    }
    img[vd * SECTOR] = 255;
    memcpy(img + vd * SECTOR + 1, "CD001", 5);
    img[vd * SECTOR + 6] = 1;

    static const uint8_t dot = 0, dotdot = 1;
    static const uint8_t sp[] = {'S', 'P', 7, 1, 0xBE, 0xEF, 0};
    uint8_t *root = img + ROOT_LBA * SECTOR, *jroot = img + JROOT_LBA * SECTOR;
    size_t pos = record(root, ROOT_LBA, SECTOR, 0x02, &dot, 1, rr ? sp : NULL, rr ? sizeof(sp) : 0);
    pos += record(root + pos, ROOT_LBA, SECTOR, 0x02, &dotdot, 1, NULL, 0);
    size_t jpos = record(jroot, JROOT_LBA, SECTOR, 0x02, &dot, 1, NULL, 0);
    jpos += record(jroot + jpos, JROOT_LBA, SECTOR, 0x02, &dotdot, 1, NULL, 0);
    for (size_t i = 0; i < n; i++) {
        uint32_t lba = DATA_LBA + (uint32_t)i;
        uint32_t len = (uint32_t)strlen(files[i].data);
        memcpy(img + lba * SECTOR, files[i].data, len);
        if (files[i].iso != NULL) {
            uint8_t nm[300];
            size_t nml = 0;
            if (rr && files[i].rr != NULL) {
                size_t l = strlen(files[i].rr);
                nm[0] = 'N';
                nm[1] = 'M';
                nm[2] = (uint8_t)(5 + l);
                nm[3] = 1;
                nm[4] = 0;
                memcpy(nm + 5, files[i].rr, l);
                nml = 5 + l;
            }
            pos += record(root + pos, lba, len, files[i].flags, (const uint8_t *)files[i].iso,
                          strlen(files[i].iso), nm, nml);
        }
        if (joliet && files[i].joliet != NULL) {
            uint8_t u[128];
            size_t l = strlen(files[i].joliet);
            for (size_t k = 0; k < l; k++) {
                u[2 * k] = 0;
                u[2 * k + 1] = (uint8_t)files[i].joliet[k];
            }
            jpos += record(jroot + jpos, lba, len, files[i].flags, u, 2 * l, NULL, 0);
        }
    }
    return img;
}

/* Opens the image and reads `name`; returns the result, the data in *out. */
static int read_name(const uint8_t *img, size_t size, const char *name, size_t max, char *out,
                     size_t out_len)
{
    pud_iso_mem_t m = {img, size};
    pud_iso_t iso;
    pp_error_t err = {0};
    int r = pud_iso9660_open(&iso, pud_iso_mem_read, &m, size, &err);
    if (r < 0)
        return r;
    pp_buf_t b;
    pp_buf_init(&b, 0);
    r = pud_iso9660_read_file(&iso, name, max, &b, &err);
    if (r == 0) {
        assert_true(b.len < out_len);
        memcpy(out, b.data, b.len);
        out[b.len] = '\0';
    } else {
        assert_true(err.message[0] != '\0');
    }
    pp_buf_free(&b);
    return r;
}

static void test_rock_ridge(void **state)
{
    (void)state;
    file_t f[] = {
        {"META_DAT.;1", "meta-data", NULL, "meta", 0},
        {"USER_DAT.;1", "user-data", NULL, "rock ridge", 0},
    };
    uint8_t *img = build("cidata", f, 2, 1, 0);
    char out[64];
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), 0);
    assert_string_equal(out, "rock ridge");
    assert_int_equal(read_name(img, IMG_SIZE, "meta-data", 1024, out, sizeof(out)), 0);
    assert_string_equal(out, "meta");
    assert_int_equal(read_name(img, IMG_SIZE, "vendor-data", 1024, out, sizeof(out)), -ENOENT);

    pud_iso_mem_t m = {img, IMG_SIZE};
    pud_iso_t iso;
    assert_int_equal(pud_iso9660_open(&iso, pud_iso_mem_read, &m, IMG_SIZE, NULL), 0);
    assert_string_equal(iso.label, "cidata");
    assert_int_equal(iso.block, 2048);
    free(img);
}

static void test_joliet(void **state)
{
    (void)state;
    file_t f[] = {{"USER_DAT.;1", NULL, "user-data;1", "joliet", 0}};
    uint8_t *img = build("CIDATA", f, 1, 0, 1);
    char out[64];
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), 0);
    assert_string_equal(out, "joliet");
    free(img);
}

static void test_plain_names(void **state)
{
    (void)state;
    static const char *const names[] = {"USER-DATA.;1", "USER_DATA;1", "user-data", "USER-DATA."};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        file_t f[] = {{names[i], NULL, NULL, "plain", 0}};
        uint8_t *img = build("cidata", f, 1, 0, 0);
        char out[64];
        assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), 0);
        assert_string_equal(out, "plain");
        free(img);
    }
    /* An 8.3 name cannot stand for user-data. */
    file_t f[] = {{"USER_DAT.;1", NULL, NULL, "x", 0}};
    uint8_t *img = build("cidata", f, 1, 0, 0);
    char out[8];
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -ENOENT);
    free(img);
}

static void test_preference(void **state)
{
    (void)state;
    char out[64];
    /* Rock Ridge wins over Joliet. */
    file_t a[] = {
        {"A.;1", "user-data", NULL, "rr", 0},
        {"B.;1", NULL, "user-data", "joliet", 0},
    };
    uint8_t *img = build("cidata", a, 2, 1, 1);
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), 0);
    assert_string_equal(out, "rr");
    free(img);
    /* Joliet wins over a plain name. */
    file_t b[] = {
        {"USER-DATA.;1", NULL, NULL, "plain", 0},
        {"X.;1", NULL, "user-data", "joliet", 0},
    };
    img = build("cidata", b, 2, 0, 1);
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), 0);
    assert_string_equal(out, "joliet");
    free(img);
    /* A Rock Ridge name is the name: the plain one under it is not looked at. */
    file_t c[] = {{"USER-DATA.;1", "something-else", NULL, "x", 0}};
    img = build("cidata", c, 1, 1, 0);
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -ENOENT);
    free(img);
}

static void test_refusals(void **state)
{
    (void)state;
    char out[64];
    /* Two entries with the name. */
    file_t dup[] = {
        {"A.;1", "user-data", NULL, "one", 0},
        {"B.;1", "user-data", NULL, "two", 0},
    };
    uint8_t *img = build("cidata", dup, 2, 1, 0);
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -EBADMSG);
    free(img);
    /* A directory by that name is not the file. */
    file_t dir[] = {{"USER-DATA", NULL, NULL, "", 0x02}};
    img = build("cidata", dir, 1, 0, 0);
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -ENOENT);
    free(img);
    /* Multi-extent and interleaved files. */
    file_t multi[] = {{"USER-DATA", NULL, NULL, "x", 0x80}};
    img = build("cidata", multi, 1, 0, 0);
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -EBADMSG);
    free(img);
    file_t f[] = {{"USER-DATA", NULL, NULL, "12345", 0}};
    img = build("cidata", f, 1, 0, 0);
    uint8_t *rec = img + ROOT_LBA * SECTOR + 34 + 34; /* after "." and ".." */
    rec[26] = 1;
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -EBADMSG);
    rec[26] = 0;
    /* The size limit, exactly and one past. */
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 5, out, sizeof(out)), 0);
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 4, out, sizeof(out)), -EMSGSIZE);
    /* Extent past the end of the image. */
    both32(rec + 2, NSECTORS + 5);
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -EBADMSG);
    both32(rec + 2, DATA_LBA);
    /* Both-endian halves that disagree. */
    rec[10 + 4] ^= 1;
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -EBADMSG);
    rec[10 + 4] ^= 1;
    /* A root directory shorter than its records. */
    both32(img + 16 * SECTOR + 156 + 10, 100);
    both32(img + ROOT_LBA * SECTOR + 10, 100);
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -EBADMSG);
    free(img);
}

static void test_record_across_sectors(void **state)
{
    (void)state;
    file_t none[] = {{"OTHER", NULL, NULL, "x", 0}};
    uint8_t *img = build("cidata", none, 1, 0, 0);
    both32(img + 16 * SECTOR + 156 + 10, 2 * SECTOR);
    uint8_t *root = img + ROOT_LBA * SECTOR;
    uint8_t name[200];
    memset(name, 'A', sizeof(name));
    size_t pos = 68; /* after "." and ".." */
    for (int i = 0; i < 8; i++) {
        name[0] = (uint8_t)('B' + i);
        pos += record(root + pos, DATA_LBA, 1, 0, name, 200, NULL, 0);
    }
    /* 1940 + 114 runs into the next sector. */
    assert_int_equal(pos, 1940);
    record(root + pos, DATA_LBA, 1, 0, name, 80, NULL, 0);
    char out[8];
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -EBADMSG);
    free(img);
}

static void test_padding_to_next_sector(void **state)
{
    (void)state;
    file_t none[] = {{"OTHER", NULL, NULL, "x", 0}};
    uint8_t *img = build("cidata", none, 1, 0, 0);
    /* A two-sector root directory: the first ends in zero padding, the
     * second holds the entry. */
    uint8_t *pvd = img + 16 * SECTOR;
    both32(pvd + 156 + 10, 2 * SECTOR);
    uint8_t *second = img + (ROOT_LBA + 1) * SECTOR; /* JROOT_LBA: no Joliet here */
    memset(second, 0, SECTOR);
    memcpy(img + (DATA_LBA + 1) * SECTOR, "second sector", 13);
    record(second, DATA_LBA + 1, 13, 0, (const uint8_t *)"USER-DATA.;1", 12, NULL, 0);
    char out[64];
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), 0);
    assert_string_equal(out, "second sector");
    free(img);
}

static void test_descriptors(void **state)
{
    (void)state;
    char out[8];
    uint8_t *zeros = calloc(1, IMG_SIZE);
    assert_non_null(zeros);
    assert_int_equal(read_name(zeros, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -ENOENT);
    assert_int_equal(read_name(zeros, 1000, "user-data", 1024, out, sizeof(out)), -ENOENT);
    free(zeros);

    file_t f[] = {{"USER-DATA", NULL, NULL, "x", 0}};
    uint8_t *img = build("cidata", f, 1, 0, 1);
    /* Descriptors running off the end: no terminator. */
    assert_int_equal(read_name(img, 18 * SECTOR, "user-data", 1024, out, sizeof(out)), -EBADMSG);
    /* A bad descriptor after the first. */
    img[17 * SECTOR + 3] = 'X';
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -EBADMSG);
    img[17 * SECTOR + 3] = '0';
    /* A Joliet volume counting in another block size. */
    both16(img + 17 * SECTOR + 128, 1024);
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -EBADMSG);
    both16(img + 17 * SECTOR + 128, SECTOR);
    /* A root directory record that is not a directory. */
    img[16 * SECTOR + 156 + 25] = 0;
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -EBADMSG);
    img[16 * SECTOR + 156 + 25] = 2;
    /* A root directory larger than the reader takes. */
    both32(img + 16 * SECTOR + 156 + 10, PUD_ISO_DIR_MAX + 1);
    assert_int_equal(read_name(img, IMG_SIZE, "user-data", 1024, out, sizeof(out)), -EBADMSG);
    free(img);
}

static void test_fd_reader(void **state)
{
    (void)state;
    file_t f[] = {{"A.;1", "user-data", NULL, "from a file", 0}};
    uint8_t *img = build("cidata", f, 1, 1, 0);
    char path[] = "/tmp/test_pud_iso9660.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, img, IMG_SIZE), IMG_SIZE);
    pud_iso_t iso;
    assert_int_equal(pud_iso9660_open(&iso, pud_iso_fd_read, &fd, IMG_SIZE, NULL), 0);
    pp_buf_t b;
    pp_buf_init(&b, 0);
    assert_int_equal(pud_iso9660_read_file(&iso, "user-data", 100, &b, NULL), 0);
    assert_int_equal(b.len, 11);
    assert_memory_equal(b.data, "from a file", 11);
    pp_buf_free(&b);
    /* A size larger than the file: reads past its end fail cleanly. */
    assert_int_equal(pud_iso9660_open(&iso, pud_iso_fd_read, &fd, 2 * IMG_SIZE, NULL), 0);
    uint8_t *root = img + ROOT_LBA * SECTOR;
    both32(root + root[0] + root[root[0]] + 2, 40); /* file extent past the real end */
    assert_int_equal(pwrite(fd, img + ROOT_LBA * SECTOR, SECTOR, ROOT_LBA * SECTOR), SECTOR);
    assert_int_equal(pud_iso9660_read_file(&iso, "user-data", 100, &b, NULL), -EIO);
    pp_buf_free(&b);
    close(fd);
    free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rock_ridge),
        cmocka_unit_test(test_joliet),
        cmocka_unit_test(test_plain_names),
        cmocka_unit_test(test_preference),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_record_across_sectors),
        cmocka_unit_test(test_padding_to_next_sector),
        cmocka_unit_test(test_descriptors),
        cmocka_unit_test(test_fd_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
