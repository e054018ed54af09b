/* A pod keeps its Kubernetes IP and its traffic reaches the VM: a CNI-like
 * pod namespace on the node, cloud-api-adaptor with the local provider, and
 * real traffic through the VXLAN tunnel between the two pod namespaces. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "e2e_util.h"

static char podns[40]; /* the CNI-made pod namespace, under /run/netns */
static char podpath[128];

#define sh e2e_sh

static void make_id(char *id, const char *tag)
{
    static int seq;
    snprintf(id, 65, "%08x%s%08d", (unsigned)getpid(), tag, ++seq);
}

/* The node (this test's namespace): an uplink with the node's IP and a
 * default route, as a worker node has; a pod namespace made like a CNI
 * plugin would, with a veth to the node, the pod IP and a gateway. */
static int group_setup(void **state)
{
    (void)state;
    snprintf(podns, sizeof(podns), "pp-e2e-pod-%d", (int)getpid());
    snprintf(podpath, sizeof(podpath), "/run/netns/%s", podns);
    e2e_node_uplink();
    e2e_cni_pod(podns, "cnipod", "10.244.1.5", "10.244.1.1");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    /* Also the bad-namespace case's, which a failed assertion skips. */
    sh("ip netns del %s 2>/dev/null; ip netns del %s-bare 2>/dev/null; "
       "ip netns del %s-two 2>/dev/null",
       podns, podns, podns);
    sh("ip link del uplink 2>/dev/null; ip link del cnipod 2>/dev/null");
    return 0;
}

static int create_with_netns(caa_t *c, const char *id, const char *pod, const char *netns,
                             char *sock, size_t size, char *msg, size_t msize)
{
    /* CreateVM with a network namespace path: built by hand here. */
    return create_vm_netns(c, id, pod, "ns", netns, sock, size, msg, msize);
}

static int read_index(const caa_t *c, const char *id)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s/state.json", c->pods, id);
    json_t *j = json_load_file(path, 0, NULL);
    if (j == NULL)
        return -2;
    int ix = (int)json_integer_value(json_object_get(j, "pod-index"));
    json_decref(j);
    return ix;
}

static void test_traffic_through_the_tunnel(void **state)
{
    (void)state;
    static caa_t c; /* outlives a failed test, for the exit cleanup */
    memset(&c, 0, sizeof(c));
    caa_start(&c, "podnet", NULL);
    char id[65], sock[256], msg[512];
    make_id(id, "net");
    assert_int_equal(
        create_with_netns(&c, id, "web", podpath, sock, sizeof(sock), msg, sizeof(msg)), 0);
    if (id_call(&c, "StartVM", id, 60000, msg, sizeof(msg)) != 0) {
        print_log(&c);
        fail_msg("StartVM: %s", msg);
    }
    assert_int_equal(read_index(&c, id), 0);
    char vmpod[400];
    snprintf(vmpod, sizeof(vmpod), "%s/podvm-web-%.8s.podns", c.netns, id);
    /* The node end: vxlan1 in the pod namespace, VNI 555000, port 4789. */
    assert_int_equal(sh("ip -n %s -d link show vxlan1 | grep -q 'vxlan id 555000 remote "
                        "198.18.0.2 .*dstport 4789'",
                        podns),
                     0);
    /* The VM end: the pod's interface, IP and MAC recreated, MTU 1450. */
    char mac[32] = "";
    char cmd[600];
    snprintf(cmd, sizeof(cmd),
             "ip -n %s -o link show eth0 | sed 's/.*link\\/ether \\([^ ]*\\).*/\\1/'", podns);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(mac, sizeof(mac), f));
    pclose(f);
    mac[strcspn(mac, "\n")] = 0;
    assert_int_equal(sh("nsenter --net=%s ip -o addr show eth0 | grep -q '10.244.1.5/24'", vmpod),
                     0);
    assert_int_equal(
        sh("nsenter --net=%s ip -o link show eth0 | grep -q 'mtu 1450.*%s'", vmpod, mac), 0);
    /* Traffic both ways: the node (the pod's gateway) to the pod IP, which
     * now answers from the VM, and the VM's pod namespace to the gateway. */
    assert_int_equal(sh("ping -c 2 -W 2 -q 10.244.1.5 >/dev/null"), 0);
    assert_int_equal(sh("nsenter --net=%s ping -c 2 -W 2 -q 10.244.1.1 >/dev/null", vmpod), 0);
    /* The largest unfragmented packet the VM side's MTU allows, and one
     * byte more, which must not pass. */
    assert_int_equal(sh("ping -M do -s 1422 -c 1 -W 2 -q 10.244.1.5 >/dev/null"), 0);
    assert_int_not_equal(sh("nsenter --net=%s ping -M do -s 1423 -c 1 -W 2 -q 10.244.1.1 "
                            ">/dev/null 2>&1",
                            vmpod),
                         0);
    /* The agent API still works over the forwarder link. */
    assert_int_equal(health(sock), 0);

    /* A second pod while the first runs, across a restart: its index is
     * not the first one's. */
    caa_kill(&c);
    caa_restart(&c, NULL);
    char id2[65], sock2[256], pod2[64], pod2path[128];
    snprintf(pod2, sizeof(pod2), "%s-b", podns);
    snprintf(pod2path, sizeof(pod2path), "/run/netns/%s", pod2);
    assert_int_equal(sh("ip netns add %s && ip link add cnipod2 type veth peer name eth0 netns %s "
                        "&& ip -n %s addr add 10.244.2.5/24 dev eth0 && ip -n %s link set eth0 up "
                        "&& ip -n %s route add default via 10.244.2.1 && ip addr add 10.244.2.1/24 "
                        "dev cnipod2 && ip link set cnipod2 up",
                        pod2, pod2, pod2, pod2, pod2),
                     0);
    make_id(id2, "net");
    assert_int_equal(
        create_with_netns(&c, id2, "web2", pod2path, sock2, sizeof(sock2), msg, sizeof(msg)), 0);
    assert_int_equal(id_call(&c, "StartVM", id2, 60000, msg, sizeof(msg)), 0);
    assert_int_equal(read_index(&c, id2), 1);
    assert_int_equal(sh("ip -n %s -d link show vxlan1 | grep -q 'vxlan id 555001'", pod2), 0);
    assert_int_equal(sh("ping -c 1 -W 2 -q 10.244.2.5 >/dev/null"), 0);
    assert_int_equal(sh("ping -c 1 -W 2 -q 10.244.1.5 >/dev/null"), 0);

    /* StopVM removes exactly what was added. */
    assert_int_equal(id_call(&c, "StopVM", id, 60000, NULL, 0), 0);
    assert_int_equal(id_call(&c, "StopVM", id2, 60000, NULL, 0), 0);
    caa_stop(&c); /* waits for the background deletions */
    /* At most E2E_SETTLE_MS (20 ms a look). */
    for (int i = 0;
         i < E2E_SETTLE_MS / 20 && sh("ip -n %s link show vxlan1 >/dev/null 2>&1", podns) == 0; i++)
        usleep(20000);
    assert_int_not_equal(sh("ip -n %s link show vxlan1 >/dev/null 2>&1", podns), 0);
    assert_int_not_equal(sh("ip -n %s link show vxlan1 >/dev/null 2>&1", pod2), 0);
    assert_int_equal(sh("tc -n %s qdisc show dev eth0 | grep -c ingress | grep -q '^0$'", podns),
                     0);
    assert_int_equal(sh("tc -n %s filter show dev eth0 ingress | wc -l | grep -q '^0$'", podns), 0);
    assert_int_not_equal(sh("nft list table inet peerpod >/dev/null 2>&1"), 0);
    char ixdir[300];
    snprintf(ixdir, sizeof(ixdir), "%s/.indexes", c.pods);
    assert_int_equal(count_entries(ixdir), 0);
    assert_int_equal(count_entries(c.vms), 0);
    /* The pod kept its own IP and MAC on the node. */
    assert_int_equal(sh("ip -n %s -o addr show eth0 | grep -q 10.244.1.5/24", podns), 0);
    sh("ip netns del %s; ip link del cnipod2 2>/dev/null", pod2);
    caa_cleanup(&c);
}

static void test_bad_pod_namespaces(void **state)
{
    (void)state;
    static caa_t c; /* outlives a failed test, for the exit cleanup */
    memset(&c, 0, sizeof(c));
    caa_start(&c, "badnet", NULL);
    char bare[64], barepath[128], two[64], twopath[128];
    snprintf(bare, sizeof(bare), "%s-bare", podns);
    snprintf(barepath, sizeof(barepath), "/run/netns/%s", bare);
    snprintf(two, sizeof(two), "%s-two", podns);
    snprintf(twopath, sizeof(twopath), "/run/netns/%s", two);
    /* No default route; and two IPv4 addresses on the default route's
     * interface. */
    assert_int_equal(sh("ip netns add %s && ip -n %s link set lo up", bare, bare), 0);
    assert_int_equal(sh("ip netns add %s && ip -n %s link add eth0 type veth peer name eth1 && "
                        "ip -n %s addr add 10.244.3.5/24 dev eth0 && ip -n %s addr add "
                        "10.244.3.6/24 dev eth0 && ip -n %s link set eth0 up && "
                        "ip -n %s route add default via 10.244.3.1",
                        two, two, two, two, two, two),
                     0);
    const struct {
        const char *path, *says;
    } cases[] = {
        {"/run/netns/pp-e2e-no-such-namespace", "pp-e2e-no-such-namespace"},
        {barepath, "default route"},
        {twopath, "IPv4"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char id[65], sock[256], msg[512];
        make_id(id, "bad");
        assert_int_equal(
            create_with_netns(&c, id, "bad", cases[i].path, sock, sizeof(sock), msg, sizeof(msg)),
            0);
        int code = id_call(&c, "StartVM", id, 30000, msg, sizeof(msg));
        printf("StartVM with pod namespace `%s`: %d `%s`\n", cases[i].path, code, msg);
        assert_int_equal(code, 9); /* FAILED_PRECONDITION */
        assert_non_null(strstr(msg, cases[i].says));
        /* Nothing was made: no VM, no index held. */
        assert_int_equal(count_entries(c.vms), 0);
        char ixdir[300];
        snprintf(ixdir, sizeof(ixdir), "%s/.indexes", c.pods);
        assert_int_equal(count_entries(ixdir), 0);
        assert_int_equal(id_call(&c, "StopVM", id, 30000, NULL, 0), 0);
    }
    sh("ip netns del %s; ip netns del %s", bare, two);
    caa_stop(&c);
    caa_cleanup(&c);
}

int main(void)
{
    e2e_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traffic_through_the_tunnel),
        cmocka_unit_test(test_bad_pod_namespaces),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
