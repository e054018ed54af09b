/* The local provider's pure parts: address pool, command lines, names, the
 * tag record, /proc stat parsing, small files. Nothing here needs root. */
#include <errno.h>
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

#include <netlink/errno.h>

#include "net/net.h"
#include "providers/local/local.h"
#include "util/file.h"

#define A(a, b, c, d) (((uint32_t)(a) << 24) | ((uint32_t)(b) << 16) | ((uint32_t)(c) << 8) | (d))

static void test_pool_parse(void **state)
{
    (void)state;
    pp__local_pool_t pool;
    assert_int_equal(pp__local_pool_init(&pool, "198.18.0.0/16"), 0);
    assert_int_equal(pool.base, A(198, 18, 0, 0));
    assert_int_equal(pool.prefix, 16);
    assert_int_equal(pool.nslots, 16384);
    pp__local_pool_free(&pool);

    assert_int_equal(pp__local_pool_init(&pool, "10.0.0.0/30"), 0);
    assert_int_equal(pool.nslots, 1);
    pp__local_pool_free(&pool);

    static const char *const bad[] = {
        "",
        "198.18.0.0",
        "198.18.0.0/",
        "198.18.0.1/16", /* host bits */
        "198.18.0.0/31",
        "10.0.0.0/7",
        "198.18.0.0/ 16",
        "198.18.0.0/+16",
        "198.18.0.0/016",
        "198.18.0/16",
        "fd00::/64",
        "x/16",
        "198.18.0.0/16x",
        "/16",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (pp__local_pool_init(&pool, bad[i]) != -EINVAL)
            fail_msg("`%s` was accepted", bad[i]);
    }
    assert_int_equal(pp__local_pool_init(&pool, NULL), -EINVAL);
}

static int busy_odd(uint32_t slot, void *arg)
{
    (*(int *)arg)++;
    return slot % 2 == 1;
}

static void test_pool_alloc(void **state)
{
    (void)state;
    pp__local_pool_t pool;
    assert_int_equal(pp__local_pool_init(&pool, "198.18.0.0/27"), 0); /* 8 slots */
    assert_int_equal(pool.nslots, 8);
    uint32_t s;
    for (uint32_t i = 0; i < 8; i++) {
        assert_int_equal(pp__local_pool_take(&pool, NULL, NULL, &s), 0);
        assert_int_equal(s, i);
    }
    assert_int_equal(pp__local_pool_take(&pool, NULL, NULL, &s), -ENOSPC);
    /* The lowest free slot comes back first. */
    pp__local_pool_release(&pool, 5);
    pp__local_pool_release(&pool, 2);
    assert_int_equal(pp__local_pool_take(&pool, NULL, NULL, &s), 0);
    assert_int_equal(s, 2);
    assert_int_equal(pp__local_pool_mark(&pool, 5), 0);
    assert_int_equal(pp__local_pool_mark(&pool, 5), -EEXIST);
    assert_int_equal(pp__local_pool_mark(&pool, 8), -ERANGE);
    assert_true(pp__local_pool_is_used(&pool, 99));
    pp__local_pool_release(&pool, 99); /* out of range: ignored */
    pp__local_pool_free(&pool);

    /* Slots something else uses are skipped and stay free. */
    assert_int_equal(pp__local_pool_init(&pool, "198.18.0.0/16"), 0);
    assert_int_equal(pp__local_pool_mark(&pool, 0), 0);
    int calls = 0;
    assert_int_equal(pp__local_pool_take(&pool, busy_odd, &calls, &s), 0);
    assert_int_equal(s, 2);
    assert_int_equal(calls, 2); /* 1 and 2; 0 was ours already */
    assert_false(pp__local_pool_is_used(&pool, 1));
    pp__local_pool_free(&pool);
}

static void test_pool_full_bytes(void **state)
{
    (void)state;
    pp__local_pool_t pool;
    assert_int_equal(pp__local_pool_init(&pool, "198.18.0.0/20"), 0); /* 1024 slots */
    uint32_t s;
    for (uint32_t i = 0; i < 1000; i++)
        assert_int_equal(pp__local_pool_take(&pool, NULL, NULL, &s), 0);
    assert_int_equal(s, 999);
    pp__local_pool_release(&pool, 17);
    assert_int_equal(pp__local_pool_take(&pool, NULL, NULL, &s), 0);
    assert_int_equal(s, 17);
    assert_int_equal(pp__local_pool_take(&pool, NULL, NULL, &s), 0);
    assert_int_equal(s, 1000);
    pp__local_pool_free(&pool);
}

static void test_pool_addresses(void **state)
{
    (void)state;
    pp__local_pool_t pool;
    assert_int_equal(pp__local_pool_init(&pool, "198.18.0.0/16"), 0);
    assert_int_equal(pp__local_slot_node_addr(&pool, 0), A(198, 18, 0, 1));
    assert_int_equal(pp__local_slot_vm_addr(&pool, 0), A(198, 18, 0, 2));
    assert_int_equal(pp__local_slot_node_addr(&pool, 5), A(198, 18, 0, 21));
    assert_int_equal(pp__local_slot_vm_addr(&pool, 64), A(198, 18, 1, 2));
    assert_int_equal(pp__local_slot_vm_addr(&pool, 16383), A(198, 18, 255, 254));
    uint32_t s;
    assert_int_equal(pp__local_pool_slot_of(&pool, A(198, 18, 1, 2), &s), 0);
    assert_int_equal(s, 64);
    assert_int_equal(pp__local_pool_slot_of(&pool, A(198, 18, 0, 3), &s), 0);
    assert_int_equal(s, 0);
    assert_int_equal(pp__local_pool_slot_of(&pool, A(198, 18, 255, 255), &s), 0);
    assert_int_equal(s, 16383);
    assert_int_equal(pp__local_pool_slot_of(&pool, A(198, 19, 0, 0), &s), -ERANGE);
    assert_int_equal(pp__local_pool_slot_of(&pool, A(198, 17, 255, 255), &s), -ERANGE);
    pp__local_pool_free(&pool);
}

static void test_split(void **state)
{
    (void)state;
    char **argv;
    size_t argc;
    assert_int_equal(pp__local_split("  /bin/sh  -c\tx ", &argv, &argc), 0);
    assert_int_equal(argc, 3);
    assert_string_equal(argv[0], "/bin/sh");
    assert_string_equal(argv[1], "-c");
    assert_string_equal(argv[2], "x");
    assert_null(argv[3]);
    free(argv);

    assert_int_equal(pp__local_split("agent", &argv, &argc), 0);
    assert_int_equal(argc, 1);
    assert_string_equal(argv[0], "agent");
    assert_null(argv[1]);
    free(argv);

    assert_int_equal(pp__local_split("", &argv, &argc), -EINVAL);
    assert_int_equal(pp__local_split(" \t ", &argv, &argc), -EINVAL);
    assert_int_equal(pp__local_split(NULL, &argv, &argc), -EINVAL);
}

static void test_resolve(void **state)
{
    (void)state;
    char *path = NULL;
    assert_int_equal(pp__local_resolve("sh", "/nonexistent:/bin", &path), 0);
    assert_string_equal(path, "/bin/sh");
    free(path);
    assert_int_equal(pp__local_resolve("/bin/sh", NULL, &path), 0);
    assert_string_equal(path, "/bin/sh");
    free(path);
    assert_int_equal(pp__local_resolve("/nonexistent/agent", NULL, &path), -ENOENT);
    assert_int_equal(pp__local_resolve("no-such-program-here", "/bin", &path), -ENOENT);
    assert_int_equal(pp__local_resolve("/tmp", NULL, &path), -EACCES);
    assert_int_equal(pp__local_resolve("", NULL, &path), -ENOENT);
}

static void test_names(void **state)
{
    (void)state;
    assert_true(pp__local_name_valid("podvm-nginx-1a2b3c4d"));
    assert_true(pp__local_name_valid("a"));
    assert_true(pp__local_name_valid("0abc"));
    char max[64];
    memset(max, 'a', 63);
    max[63] = '\0';
    assert_true(pp__local_name_valid(max));
    char over[65];
    memset(over, 'a', 64);
    over[64] = '\0';
    assert_false(pp__local_name_valid(over));
    static const char *const bad[] = {"", "-a", "A", "a_b", "a/b", "..", "a.podns", "a b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (pp__local_name_valid(bad[i]))
            fail_msg("`%s` was accepted", bad[i]);
    assert_false(pp__local_name_valid(NULL));
}

static void test_parse_stat(void **state)
{
    (void)state;
    /* A command name may hold blanks and parentheses. */
    const char *line = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 "
                       "123456789 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
    char st;
    unsigned long long start;
    assert_int_equal(pp__local_parse_stat(line, strlen(line), &st, &start), 0);
    assert_int_equal(st, 'S');
    assert_int_equal(start, 123456789ull);

    const char *zombie = "7 (sh) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0";
    assert_int_equal(pp__local_parse_stat(zombie, strlen(zombie), &st, &start), 0);
    assert_int_equal(st, 'Z');
    assert_int_equal(start, 55);

    static const char *const bad[] = {"", "1 (x", "1 (x) S 1 2 3",
                                      "1 (x) S 1 2 3 4 5 6 7 8 9 10 "
                                      "11 12 13 14 15 16 17 18 x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(pp__local_parse_stat(bad[i], strlen(bad[i]), &st, &start), -EINVAL);

    /* Our own entry parses, and its start time is stable. */
    unsigned long long a, b;
    assert_int_equal(pp__local_proc_start(getpid(), &a), 0);
    assert_int_equal(pp__local_proc_start(getpid(), &b), 0);
    assert_int_equal(a, b);
    pp__local_proc_t p;
    assert_int_equal(pp__local_proc_open(getpid(), a, &p), 0);
    assert_true(pp__local_proc_alive(&p));
    pp__local_proc_close(&p);
    assert_int_equal(pp__local_proc_open(getpid(), a + 1, &p), -ESRCH);
}

static void test_tag_roundtrip(void **state)
{
    (void)state;
    pp__local_tag_t t = {0}, u;
    snprintf(t.name, sizeof(t.name), "%s", "podvm-x-12345678");
    snprintf(t.sandbox_id, sizeof(t.sandbox_id), "%s", "12345678abcdef");
    snprintf(t.node, sizeof(t.node), "%s", "node-1");
    snprintf(t.ip, sizeof(t.ip), "%s", "198.18.0.2");
    snprintf(t.node_ip, sizeof(t.node_ip), "%s", "198.18.0.1");
    snprintf(t.link, sizeof(t.link), "%s", "pplv0");
    t.ready = 1;
    char *json = NULL;
    assert_int_equal(pp__local_tag_encode(&t, &json), 0);
    assert_non_null(strstr(json, "\"id\": \"local-podvm-x-12345678\""));
    assert_int_equal(pp__local_tag_decode(json, strlen(json), &u), 0);
    assert_memory_equal(&t, &u, sizeof(t));
    free(json);
}

static void test_tag_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "[]",
        "{\"name\":\"a\"}",
        /* a name that would escape the state dir */
        "{\"name\":\"../x\",\"sandbox_id\":\"s\",\"node\":\"n\",\"ip\":\"198.18.0.2\","
        "\"node_ip\":\"198.18.0.1\",\"link\":\"pplv0\",\"ready\":true}",
        /* a link that is not ours */
        "{\"name\":\"a\",\"sandbox_id\":\"s\",\"node\":\"n\",\"ip\":\"198.18.0.2\","
        "\"node_ip\":\"198.18.0.1\",\"link\":\"eth0\",\"ready\":true}",
        "{\"name\":\"a\",\"sandbox_id\":\"s\",\"node\":\"n\",\"ip\":\"x\","
        "\"node_ip\":\"198.18.0.1\",\"link\":\"pplv0\",\"ready\":true}",
        "{\"name\":\"a\",\"sandbox_id\":\"s\",\"node\":\"n\",\"ip\":\"198.18.0.2\","
        "\"node_ip\":\"198.18.0.1\",\"link\":\"pplv0\",\"ready\":1}",
        "{\"name\":\"a\",\"sandbox_id\":\"s\",\"node\":\"n\",\"ip\":\"198.18.0.2\","
        "\"node_ip\":\"198.18.0.1\",\"link\":\"pplv000000000000000\",\"ready\":true}",
        "{\"name\":\"a\",\"name\":\"b\",\"sandbox_id\":\"s\",\"node\":\"n\",\"ip\":\"198.18.0.2\","
        "\"node_ip\":\"198.18.0.1\",\"link\":\"pplv0\",\"ready\":true}",
    };
    pp__local_tag_t t;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (pp__local_tag_decode(bad[i], strlen(bad[i]), &t) != -EBADMSG)
            fail_msg("accepted: %s", bad[i]);
}

static void test_files(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/pp-local-unit-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char path[256], deep[256];
    snprintf(path, sizeof(path), "%s/f", tmpl);
    assert_int_equal(pp_file_write_atomic(path, "hello", 5, 0600, 0, NULL), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char *buf;
    size_t len;
    assert_int_equal(pp_file_read(path, 5, PP_FILE_NOFOLLOW, &buf, &len, NULL), 0);
    assert_int_equal(len, 5);
    assert_string_equal(buf, "hello");
    free(buf);
    assert_int_equal(pp_file_read(path, 4, PP_FILE_NOFOLLOW, &buf, &len, NULL), -EFBIG);

    snprintf(path, sizeof(path), "%s/p.pid", tmpl);
    assert_int_equal(pp__local_pidfile_write(path, 1234, 987654321ull), 0);
    pid_t pid;
    unsigned long long start;
    assert_int_equal(pp__local_pidfile_read(path, &pid, &start), 0);
    assert_int_equal(pid, 1234);
    assert_int_equal(start, 987654321ull);
    assert_int_equal(pp_file_write_atomic(path, "12 x\n", 5, 0600, 0, NULL), 0);
    assert_int_equal(pp__local_pidfile_read(path, &pid, &start), -EBADMSG);
    assert_int_equal(pp_file_write_atomic(path, "1 5\n", 4, 0600, 0, NULL), 0);
    assert_int_equal(pp__local_pidfile_read(path, &pid, &start), -EBADMSG); /* never pid 1 */

    snprintf(deep, sizeof(deep), "%s/a/b/c", tmpl);
    assert_int_equal(pp_mkdir_p(deep, 0700, NULL), 0);
    assert_int_equal(pp_mkdir_p(deep, 0700, NULL), 0);
    snprintf(path, sizeof(path), "%s/a/b/c/file", tmpl);
    assert_int_equal(pp_file_write_atomic(path, "x", 1, 0600, 0, NULL), 0);
    assert_int_equal(pp_mkdir_p(path, 0700, NULL), -ENOTDIR);
    /* A symlink in the tree is removed, not followed. */
    snprintf(path, sizeof(path), "%s/a/link", tmpl);
    assert_int_equal(symlink("/etc", path), 0);
    snprintf(path, sizeof(path), "%s/a", tmpl);
    assert_int_equal(pp__local_rmtree(path), 0);
    assert_int_equal(stat(path, &st), -1);
    assert_int_equal(stat("/etc", &st), 0);
    assert_int_equal(pp__local_rmtree(path), 0); /* gone already */
    assert_int_equal(pp__local_rmtree(tmpl), 0);

    char small[8];
    assert_int_equal(pp__local_fmt(small, sizeof(small), "%s", "1234567"), 0);
    assert_int_equal(pp__local_fmt(small, sizeof(small), "%s", "12345678"), -ENAMETOOLONG);
}

static void test_nl_errno(void **state)
{
    (void)state;
    assert_int_equal(pp_net_nlerr_to_errno(-NLE_EXIST), -EEXIST);
    assert_int_equal(pp_net_nlerr_to_errno(-NLE_OBJ_NOTFOUND), -ENOENT);
    assert_int_equal(pp_net_nlerr_to_errno(-NLE_PERM), -EPERM);
    assert_int_equal(pp_net_nlerr_to_errno(-NLE_NODEV), -ENODEV);
    assert_int_equal(pp_net_nlerr_to_errno(-NLE_FAILURE), -EIO);
    assert_int_equal(pp_net_nlerr_to_errno(0), 0);
    assert_string_equal(pp__local_step_name(PP_LOCAL_STEP_EXEC), "exec");
    assert_string_equal(pp__local_step_name(999), "unknown step");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_parse),      cmocka_unit_test(test_pool_alloc),
        cmocka_unit_test(test_pool_full_bytes), cmocka_unit_test(test_pool_addresses),
        cmocka_unit_test(test_split),           cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_names),           cmocka_unit_test(test_parse_stat),
        cmocka_unit_test(test_tag_roundtrip),   cmocka_unit_test(test_tag_rejects),
        cmocka_unit_test(test_files),           cmocka_unit_test(test_nl_errno),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
