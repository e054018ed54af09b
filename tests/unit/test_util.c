/* Errors, bounded buffers and the protobuf wire helpers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/error.h"
#include "util/grpc_codes.h"
#include "util/notify.h"
#include "util/pb.h"

static void test_error_wrap(void **state)
{
    (void)state;
    pp_error_t err = {0};
    assert_int_equal(pp_error_set(&err, -EEXIST, "netlink: %s", "File exists"), -EEXIST);
    assert_int_equal(pp_error_wrap(&err, "create tunnel for pod `%s`", "x"), -EEXIST);
    assert_string_equal(err.message, "create tunnel for pod `x`: netlink: File exists");
    assert_int_equal(pp_error_grpc_status(&err), PP_GRPC_ALREADY_EXISTS);
    pp_error_set_status(&err, PP_GRPC_INVALID_ARGUMENT, -EINVAL, "bad");
    assert_int_equal(pp_error_grpc_status(&err), PP_GRPC_INVALID_ARGUMENT);
    assert_int_equal(pp_errno_to_grpc(-ETIMEDOUT), PP_GRPC_DEADLINE_EXCEEDED);
    assert_int_equal(pp_errno_to_grpc(-EIO), PP_GRPC_INTERNAL);
    assert_string_equal(pp_grpc_code_name(14), "UNAVAILABLE");
    assert_string_equal(pp_grpc_code_name(99), "UNKNOWN");
    /* A NULL error is allowed and the code still comes back. */
    assert_int_equal(pp_error_set(NULL, -ENOENT, "x"), -ENOENT);
}

static void test_error_wrap_truncates(void **state)
{
    (void)state;
    pp_error_t err = {0};
    char big[PP_ERROR_MAX * 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    pp_error_set(&err, -EIO, "%s", big);
    pp_error_wrap(&err, "ctx");
    assert_int_equal(strlen(err.message), PP_ERROR_MAX - 1);
    assert_memory_equal(err.message, "ctx: aaa", 8);
}

static void test_buf_bounded(void **state)
{
    (void)state;
    pp_buf_t b;
    pp_buf_init(&b, 10);
    assert_int_equal(pp_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(pp_buf_append(&b, "x", 1), -EMSGSIZE);
    assert_int_equal(b.len, 10);
    pp_buf_free(&b);
    pp_buf_init(&b, 0);
    assert_int_equal(pp_buf_printf(&b, "%d-%s", 42, "x"), 0);
    assert_int_equal(b.len, 4);
    assert_string_equal((char *)b.data, "42-x");
    size_t n;
    uint8_t *p = pp_buf_steal(&b, &n);
    assert_int_equal(n, 4);
    assert_null(b.data);
    free(p);
}

static void test_pb_roundtrip(void **state)
{
    (void)state;
    pp_buf_t b;
    pp_buf_init(&b, 0);
    assert_int_equal(pp_pb_put_uint(&b, 1, 300), 0);
    assert_int_equal(pp_pb_put_string(&b, 2, "hi"), 0);
    assert_int_equal(pp_pb_put_uint(&b, 536870911, UINT64_MAX), 0);
    const uint8_t head[] = {0x08, 0xac, 0x02, 0x12, 0x02, 'h', 'i'};
    assert_memory_equal(b.data, head, sizeof(head));
    pp_pb_reader_t r;
    pp_pb_field_t f;
    pp_pb_reader_init(&r, b.data, b.len);
    assert_int_equal(pp_pb_next(&r, &f), 1);
    assert_int_equal(f.number, 1);
    assert_int_equal(f.varint, 300);
    assert_int_equal(f.total, 3);
    assert_int_equal(pp_pb_next(&r, &f), 1);
    assert_int_equal(f.wire, PP_PB_LEN);
    assert_memory_equal(f.data, "hi", 2);
    assert_int_equal(pp_pb_next(&r, &f), 1);
    assert_int_equal(f.number, 536870911);
    assert_true(f.varint == UINT64_MAX);
    assert_int_equal(pp_pb_next(&r, &f), 0);
    assert_int_equal(pp_pb_varint_size(UINT64_MAX), 10);
    pp_buf_free(&b);
}

/* NOTIFY_SOCKET: a path or an abstract name gets one datagram; unset or
 * empty sends nothing. */
static void test_notify(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(pp_notify("READY=1"), 1);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(pp_notify("READY=1"), 1);
    setenv("NOTIFY_SOCKET", "relative", 1);
    assert_int_equal(pp_notify("READY=1"), -EINVAL);

    char dir[] = "/tmp/pp-notify-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[108];
    snprintf(path, sizeof(path), "%s/notify", dir);
    char abstract[64];
    snprintf(abstract, sizeof(abstract), "@pp-notify-test-%d", (int)getpid());
    const char *names[] = {path, abstract};
    for (int i = 0; i < 2; i++) {
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        size_t n = strlen(names[i]);
        memcpy(sun.sun_path, names[i], n);
        if (names[i][0] == '@')
            sun.sun_path[0] = '\0';
        assert_int_equal(bind(fd, (struct sockaddr *)&sun,
                              (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)),
                         0);
        setenv("NOTIFY_SOCKET", names[i], 1);
        assert_int_equal(pp_notify("READY=1"), 0);
        char buf[32] = {0};
        assert_int_equal(recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT), 7);
        assert_string_equal(buf, "READY=1");
        close(fd);
    }
    /* Nobody listening: an error, never a wait. */
    setenv("NOTIFY_SOCKET", path, 1);
    assert_true(pp_notify("READY=1") < 0);
    unlink(path);
    rmdir(dir);
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_wrap),  cmocka_unit_test(test_error_wrap_truncates),
        cmocka_unit_test(test_buf_bounded), cmocka_unit_test(test_pb_roundtrip),
        cmocka_unit_test(test_notify),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
