/* Namespaces: work runs on a thread of its own and never moves the caller;
 * named namespaces come and go; errors say what is wrong. The libnl error
 * table. Tests that need root skip with the reason. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
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

static void need_root(void)
{
    if (geteuid() != 0) {
        print_message("skipped: needs root for network namespaces\n");
        skip();
    }
}

static ino_t ns_inode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_ino;
}

struct probe {
    pthread_t caller;
    int other_thread;
    ino_t inode;
};

static int probe_main(void *p)
{
    struct probe *pr = p;
    pr->other_thread = !pthread_equal(pthread_self(), pr->caller);
    struct stat st;
    if (stat("/proc/thread-self/ns/net", &st) < 0)
        return -errno;
    pr->inode = st.st_ino;
    return 42;
}

static void test_run_on_own_thread(void **state)
{
    (void)state;
    struct probe pr = {.caller = pthread_self()};
    assert_int_equal(pp_netns_run(NULL, probe_main, &pr), 42);
    assert_true(pr.other_thread);
    assert_int_equal(pr.inode, ns_inode("/proc/thread-self/ns/net"));
    /* Only those threads may change namespace. */
    assert_int_equal(pp_netns_enter(0), -EPERM);
}

static void test_named_namespaces(void **state)
{
    (void)state;
    need_root();
    char name[64], path[128];
    snprintf(name, sizeof(name), "pptest-%d-a", (int)getpid());
    assert_int_equal(pp_netns_path(name, path, sizeof(path)), 0);
    ino_t mine = ns_inode("/proc/thread-self/ns/net");

    pp_error_t err = {0};
    bool created = false;
    assert_int_equal(pp_netns_create(name, false, &created, &err), 0);
    assert_true(created);
    assert_int_equal(pp_netns_create(name, false, &created, &err), -EEXIST);
    assert_non_null(strstr(err.message, "already exists"));
    assert_int_equal(pp_netns_create(name, true, &created, &err), 0);
    assert_false(created);

    struct probe pr = {.caller = pthread_self()};
    assert_int_equal(pp_netns_run(path, probe_main, &pr), 42);
    assert_int_equal(pr.inode, ns_inode(path));
    assert_true(pr.inode != mine);
    assert_int_equal(ns_inode("/proc/thread-self/ns/net"), mine);

    /* A namespace with only `lo`: inspection says there is no default route. */
    pp_podnet_t cfg;
    assert_int_equal(pp_podns_inspect(path, &cfg, &err), -ENETUNREACH);
    char want[256];
    snprintf(want, sizeof(want), "no default route in network namespace `%s`", path);
    assert_string_equal(err.message, want);

    assert_int_equal(pp_netns_delete(name, &err), 0);
    assert_int_equal(pp_netns_delete(name, &err), 0);
    assert_int_equal(pp_netns_run(path, probe_main, &pr), -ENOENT);
    assert_int_equal(pp_podns_inspect(path, &cfg, &err), -ENOENT);
    snprintf(want, sizeof(want), "network namespace `%s` does not exist", path);
    assert_string_equal(err.message, want);
}

static void test_bad_paths_and_names(void **state)
{
    (void)state;
    pp_error_t err = {0};
    char path[64];
    assert_int_equal(pp_netns_open("/etc/hostname", &err), -EINVAL);
    assert_string_equal(err.message, "`/etc/hostname` is not a network namespace");
    assert_int_equal(pp_netns_open("/nonexistent/ns", &err), -ENOENT);
    assert_int_equal(pp_netns_path("", path, sizeof(path)), -EINVAL);
    assert_int_equal(pp_netns_path("a/b", path, sizeof(path)), -EINVAL);
    assert_int_equal(pp_netns_path("..", path, sizeof(path)), -EINVAL);
    assert_int_equal(pp_netns_path("podns", path, 8), -ENAMETOOLONG);
    assert_int_equal(pp_netns_path("podns", path, sizeof(path)), 0);
    assert_string_equal(path, "/run/netns/podns");
    /* And back: a name only for a path directly under /run/netns. */
    assert_string_equal(pp_netns_name_or_path("/run/netns/podns"), "podns");
    assert_string_equal(pp_netns_name_or_path("/run/netns/a/b"), "/run/netns/a/b");
    assert_string_equal(pp_netns_name_or_path("/run/netns/"), "/run/netns/");
    assert_string_equal(pp_netns_name_or_path("/run/netnsx/podns"), "/run/netnsx/podns");
    assert_string_equal(pp_netns_name_or_path("/proc/1/ns/net"), "/proc/1/ns/net");
    assert_int_equal(pp_netns_create("../etc", true, NULL, &err), -EINVAL);
    assert_int_equal(pp_netns_delete("", &err), -EINVAL);
}

static void test_nlerr_table(void **state)
{
    (void)state;
    assert_int_equal(pp_net_nlerr_to_errno(0), 0);
    assert_int_equal(pp_net_nlerr_to_errno(-NLE_NOMEM), -ENOMEM);
    assert_int_equal(pp_net_nlerr_to_errno(NLE_EXIST), -EEXIST);
    assert_int_equal(pp_net_nlerr_to_errno(-NLE_OBJ_NOTFOUND), -ENOENT);
    assert_int_equal(pp_net_nlerr_to_errno(-NLE_NODEV), -ENODEV);
    assert_int_equal(pp_net_nlerr_to_errno(-NLE_PERM), -EPERM);
    assert_int_equal(pp_net_nlerr_to_errno(-NLE_BUSY), -EBUSY);
    assert_int_equal(pp_net_nlerr_to_errno(-NLE_FAILURE), -EIO);
    assert_int_equal(pp_net_nlerr_to_errno(-9999), -EIO);
    /* Every code libnl defines maps to a real errno. */
    for (int e = 1; e <= NLE_MAX; e++)
        assert_true(pp_net_nlerr_to_errno(-e) < 0);
}

static void test_node_inspect_ranges(void **state)
{
    (void)state;
    pp_node_net_t n;
    pp_node_net_init(&n);
    assert_int_equal(n.vxlan_port, 4789);
    assert_int_equal(n.vxlan_min_id, 555000);
    pp_podnet_t cfg;
    pp_error_t err = {0};
    assert_int_equal(pp_node_inspect(&n, "/nonexistent", PP_VXLAN_ID_MAX - 555000 + 1, &cfg, &err),
                     -ERANGE);
    assert_string_equal(err.message,
                        "pod index 16222216 is not from 0 to 16222215 for vxlan min id 555000");
    assert_int_equal(pp_node_net_drain(&n, 10), 0);
    pp_node_net_fini(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_on_own_thread),   cmocka_unit_test(test_named_namespaces),
        cmocka_unit_test(test_bad_paths_and_names), cmocka_unit_test(test_nlerr_table),
        cmocka_unit_test(test_node_inspect_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
