/* The helpers of lib/util that every program shares: files, hex, base64,
 * pp_error_setv() and the cleanup types. */
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
#include <jansson.h>

#include "util/base64.h"
#include "util/cleanup.h"
#include "util/error.h"
#include "util/file.h"
#include "util/hex.h"

static void test_hex(void **state)
{
    (void)state;
    static const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char text[2 * sizeof(bytes) + 1];
    pp_hex_encode(bytes, sizeof(bytes), text);
    assert_string_equal(text, "00017f80abff");
    uint8_t back[sizeof(bytes)];
    assert_int_equal(pp_hex_decode("00017F80aBfF", sizeof(back), back), 0);
    assert_memory_equal(back, bytes, sizeof(bytes));
    assert_int_equal(pp_hex_decode("0g", 1, back), -EINVAL);
    assert_int_equal(pp_hex_decode("g0", 1, back), -EINVAL);
    assert_int_equal(pp_hex_decode("0", 1, back), -EINVAL); /* the NUL is no digit */
    assert_int_equal(pp_hex_value('9'), 9);
    assert_int_equal(pp_hex_value('F'), 15);
    assert_int_equal(pp_hex_value(0xc3), -1);
    pp_hex_encode(bytes, 0, text);
    assert_string_equal(text, "");
}

static void test_base64_forms(void **state)
{
    (void)state;
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    for (int url = 0; url <= 1; url++) {
        for (size_t n = 0; n <= 4; n++) {
            pp_buf_t e, d;
            pp_buf_init(&e, 0);
            pp_buf_init(&d, 0);
            const uint8_t *p = all + 256 - n;
            assert_int_equal(url ? pp_base64url_encode(p, n, &e) : pp_base64_encode(p, n, &e), 0);
            /* A NUL after the encoding, not counted. */
            assert_int_equal(strlen((char *)e.data), e.len);
            assert_int_equal(e.len, url ? (n * 4 + 2) / 3 : (n + 2) / 3 * 4);
            assert_int_equal(url ? pp_base64url_decode((char *)e.data, e.len, &d)
                                 : pp_base64_decode((char *)e.data, e.len, &d),
                             0);
            assert_int_equal(d.len, n);
            if (n > 0)
                assert_memory_equal(d.data, p, n);
            pp_buf_free(&e);
            pp_buf_free(&d);
        }
    }
    char *s = pp_base64_str("\xfb\xff", 2);
    assert_string_equal(s, "+/8=");
    free(s);
    s = pp_base64url_str("\xfb\xff", 2);
    assert_string_equal(s, "-_8");
    free(s);
}

static void test_base64_strict(void **state)
{
    (void)state;
    pp_buf_t b;
    pp_buf_init(&b, 0);
    assert_int_equal(pp_buf_append(&b, "kept", 4), 0);
    /* A failure leaves what was there, and nothing of the bad input. */
    assert_int_equal(pp_base64_decode("Zm9vYmFy Zm9v!", 14, &b), -EBADMSG);
    assert_int_equal(b.len, 4);
    assert_int_equal(pp_base64url_decode("Zm9v YmFy", 9, &b), -EBADMSG); /* no whitespace */
    assert_int_equal(b.len, 4);
    assert_int_equal(pp_base64url_decode("Zm9=", 4, &b), -EBADMSG); /* trailing bits */
    assert_int_equal(pp_base64url_decode("Zg=", 3, &b), -EBADMSG);  /* half the padding */
    assert_int_equal(pp_base64url_decode("Z", 1, &b), -EBADMSG);
    assert_int_equal(pp_base64url_decode("Zg==Zg", 6, &b), -EBADMSG); /* data after padding */
    assert_int_equal(b.len, 4);
    assert_int_equal(pp_base64url_decode("Zg==", 4, &b), 0);
    assert_int_equal(pp_base64url_decode("Zg", 2, &b), 0);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "keptff", 6);
    pp_buf_free(&b);
    /* A bounded buffer: the encoding and its NUL must fit. */
    pp_buf_init(&b, 4);
    assert_int_equal(pp_base64_encode("abc", 3, &b), -EMSGSIZE);
    pp_buf_free(&b);
    pp_buf_init(&b, 5);
    assert_int_equal(pp_base64_encode("abc", 3, &b), 0);
    assert_string_equal((char *)b.data, "YWJj");
    pp_buf_free(&b);
}

static int fail_at(pp_error_t *err, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(pp_error_t *err, unsigned line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pp_error_setv(err, -EINVAL, fmt, ap);
    va_end(ap);
    pp_error_wrap(err, "line %u", line);
    return -EINVAL;
}

static void test_error_setv(void **state)
{
    (void)state;
    pp_error_t err = {0};
    err.status = 5;
    assert_int_equal(fail_at(&err, 7, "bad `%s`", "x"), -EINVAL);
    assert_string_equal(err.message, "line 7: bad `x`");
    assert_int_equal(err.code, -EINVAL);
    assert_int_equal(err.status, 0);
    assert_int_equal(fail_at(NULL, 7, "bad `%s`", "x"), -EINVAL);
}

typedef struct dir_s {
    char path[64];
} dir_t;

static int setup_dir(void **state)
{
    dir_t *d = calloc(1, sizeof(*d));
    snprintf(d->path, sizeof(d->path), "/tmp/pp-util-XXXXXX");
    if (mkdtemp(d->path) == NULL)
        return -1;
    *state = d;
    return 0;
}

static int teardown_dir(void **state)
{
    dir_t *d = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d->path);
    int r = system(cmd);
    free(d);
    return r == 0 ? 0 : -1;
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static size_t entries(const char *dir)
{
    cleanup_dir DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    return n;
}

static void test_file_read(void **state)
{
    dir_t *d = *state;
    char path[128], link[128];
    snprintf(path, sizeof(path), "%s/f", d->path);
    snprintf(link, sizeof(link), "%s/l", d->path);
    put(path, "hello");
    pp_error_t err = {0};
    char *s = NULL;
    size_t len = 0;
    assert_int_equal(pp_file_read(path, 5, PP_FILE_REGULAR, &s, &len, &err), 0);
    assert_int_equal(len, 5);
    assert_string_equal(s, "hello");
    free(s);
    assert_int_equal(pp_file_read(path, 4, 0, &s, &len, &err), -EFBIG);
    assert_non_null(strstr(err.message, "is larger than the limit of 4 bytes"));

    /* Appends, and leaves the buffer as it was on failure. */
    pp_buf_t b;
    pp_buf_init(&b, 0);
    assert_int_equal(pp_buf_append(&b, ">", 1), 0);
    assert_int_equal(pp_file_read_at(AT_FDCWD, path, 5, 0, &b, &err), 0);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, ">hello", 6);
    assert_int_equal(pp_file_read_at(AT_FDCWD, path, 4, PP_FILE_SECRET, &b, &err), -EFBIG);
    assert_int_equal(b.len, 6);
    pp_buf_free(&b);

    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(pp_file_read(link, 64, 0, &s, &len, &err), 0);
    free(s);
    assert_int_equal(pp_file_read(link, 64, PP_FILE_NOFOLLOW, &s, &len, &err), -ELOOP);
    assert_non_null(strstr(err.message, "is a symlink"));
    assert_int_equal(pp_file_read(d->path, 64, PP_FILE_REGULAR, &s, &len, &err), -EINVAL);
    assert_non_null(strstr(err.message, "is not a regular file"));
    /* A FIFO nobody writes to is refused at once, not waited on. */
    char fifo[128];
    snprintf(fifo, sizeof(fifo), "%s/p", d->path);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(pp_file_read(fifo, 64, PP_FILE_REGULAR, &s, &len, &err), -EINVAL);
    snprintf(path, sizeof(path), "%s/none", d->path);
    assert_int_equal(pp_file_read(path, 64, 0, &s, &len, &err), -ENOENT);
    assert_non_null(strstr(err.message, path));
    /* A file whose stated size is 0 is read to its end. */
    assert_int_equal(pp_file_read("/proc/self/stat", 4096, PP_FILE_REGULAR, &s, &len, NULL), 0);
    assert_true(len > 10);
    assert_int_equal(strlen(s), len);
    free(s);
}

static void test_file_write_atomic(void **state)
{
    dir_t *d = *state;
    char path[128], target[128];
    snprintf(path, sizeof(path), "%s/w", d->path);
    pp_error_t err = {0};
    mode_t old = umask(077);
    assert_int_equal(pp_file_write_atomic(path, "one", 3, 0644, PP_FILE_DURABLE, &err), 0);
    umask(old);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644); /* whatever the umask */
    char *s;
    assert_int_equal(pp_file_read(path, 64, 0, &s, NULL, NULL), 0);
    assert_string_equal(s, "one");
    free(s);
    assert_int_equal(pp_file_write_atomic(path, "two!", 4, 0600, 0, &err), 0);
    assert_int_equal(pp_file_read(path, 64, 0, &s, NULL, NULL), 0);
    assert_string_equal(s, "two!");
    free(s);
    assert_int_equal(entries(d->path), 1); /* no temporary left behind */

    /* A symlink at the path is replaced, never written through. */
    snprintf(target, sizeof(target), "%s/target", d->path);
    put(target, "keep");
    assert_int_equal(unlink(path), 0);
    assert_int_equal(symlink(target, path), 0);
    assert_int_equal(pp_file_write_atomic(path, "new", 3, 0600, 0, &err), 0);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(pp_file_read(target, 64, 0, &s, NULL, NULL), 0);
    assert_string_equal(s, "keep");
    free(s);

    /* No such directory: an error, and nothing made. */
    snprintf(path, sizeof(path), "%s/no/w", d->path);
    assert_int_equal(pp_file_write_atomic(path, "x", 1, 0600, 0, &err), -ENOENT);
    assert_non_null(strstr(err.message, path));

    /* A name relative to the working directory. */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(d->path), 0);
    assert_int_equal(pp_file_write_atomic("rel", "r", 1, 0600, PP_FILE_DURABLE, &err), 0);
    assert_int_equal(chdir(cwd), 0);
    snprintf(path, sizeof(path), "%s/rel", d->path);
    assert_int_equal(access(path, F_OK), 0);
}

static void test_mkdir_p(void **state)
{
    dir_t *d = *state;
    char deep[160], file[160];
    snprintf(deep, sizeof(deep), "%s/a/b//c/", d->path);
    pp_error_t err = {0};
    assert_int_equal(pp_mkdir_p(deep, 0750, &err), 0);
    assert_int_equal(pp_mkdir_p(deep, 0750, &err), 0);
    struct stat st;
    assert_int_equal(stat(deep, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    snprintf(file, sizeof(file), "%s/a/f", d->path);
    put(file, "");
    assert_int_equal(pp_mkdir_p(file, 0750, &err), -ENOTDIR);
    snprintf(deep, sizeof(deep), "%s/a/f/below", d->path);
    assert_int_equal(pp_mkdir_p(deep, 0750, &err), -ENOTDIR);
    assert_int_equal(pp_mkdir_p("", 0750, &err), -EINVAL);

    /* The directories above a socket's path, not the path itself. */
    snprintf(deep, sizeof(deep), "%s/run/x/y.sock", d->path);
    assert_int_equal(pp_mkdir_parents(deep, 0700, &err), 0);
    snprintf(file, sizeof(file), "%s/run/x", d->path);
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(deep, &st), -1);
    assert_int_equal(pp_mkdir_parents("y.sock", 0700, &err), 0);
}

/* The cleanup types run on every way out of a scope; LeakSanitizer and
 * the descriptor count say whether they did. */
static void test_cleanup_types(void **state)
{
    (void)state;
    int fds = (int)entries("/proc/self/fd");
    for (int i = 0; i < 3; i++) {
        cleanup_json json_t *j = json_pack("{s:s}", "k", "v");
        cleanup_secret char *secret = strdup("hunter2");
        cleanup_dir DIR *dir = opendir("/");
        cleanup_file FILE *f = fopen("/proc/self/stat", "re");
        cleanup_free char *p = malloc(16);
        cleanup_close int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        assert_non_null(j);
        assert_non_null(secret);
        assert_non_null(dir);
        assert_non_null(f);
        assert_non_null(p);
        assert_true(fd >= 0);
        if (i == 1)
            continue;
        json_t *kept = PP_STEAL(j);
        json_decref(kept);
    }
    cleanup_json json_t *none = NULL;
    cleanup_dir DIR *no_dir = NULL;
    cleanup_file FILE *no_file = NULL;
    cleanup_secret char *no_secret = NULL;
    (void)none;
    (void)no_dir;
    (void)no_file;
    (void)no_secret;
    assert_int_equal((int)entries("/proc/self/fd"), fds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_base64_forms),
        cmocka_unit_test(test_base64_strict),
        cmocka_unit_test(test_error_setv),
        cmocka_unit_test_setup_teardown(test_file_read, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_file_write_atomic, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_mkdir_p, setup_dir, teardown_dir),
        cmocka_unit_test(test_cleanup_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
