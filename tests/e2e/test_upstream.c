/* cloud-api-adaptor configured as upstream's documentation and chart
 * configure it, read back the way upstream's programs read it: a pod's
 * apf.json and user data decoded with upstream's shapes (tests/compat/go,
 * upstream-compat), the PodVMInfo service called with containerd's Go
 * ttrpc, PEERPODS_LIMIT_PER_NODE at upstream's default of 10. Local
 * provider; root. */
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
#include <jansson.h>

#include "e2e_util.h"

#define SUITES                                                                                     \
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,"             \
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"

static caa_t caa;
static char podns[64], podpath[128];

/* The settings of upstream's peer-pods-cm as its chart writes them, with
 * the empty values a chart leaves (empty is unset). */
static const char *const upstream_cm[] = {
    "FORWARDER_PORT=",
    "PROXY_TIMEOUT=",
    "VXLAN_PORT=",
    "TUNNEL_TYPE=",
    "PAUSE_IMAGE=",
    "INITDATA=",
    "PEERPODS_LIMIT_PER_NODE=", /* upstream's default, 10, then */
    "CLOUD_CONFIG_VERIFY=false",
    "ENABLE_SCRATCH_SPACE=true",
    "EXTERNAL_NETWORK_VIA_PODVM=false",
    "TLS_SKIP_VERIFY=false",
    "TLS_MIN_VERSION=VersionTLS12",
    "TLS_CIPHER_SUITES=" SUITES,
    NULL,
};

static int group_setup(void **state)
{
    (void)state;
    if (access(UPSTREAM_COMPAT, X_OK) != 0) {
        fprintf(stderr, "`%s` is missing: Go and its Debian sources (scripts/setup.sh) build it\n",
                UPSTREAM_COMPAT);
        return -1;
    }
    /* A node with an uplink, and a pod namespace as a CNI plugin makes it,
     * so that the pod's apf.json carries a pod network. */
    snprintf(podns, sizeof(podns), "pp-e2e-up-%d", (int)getpid());
    snprintf(podpath, sizeof(podpath), "/run/netns/%s", podns);
    e2e_node_uplink();
    e2e_cni_pod(podns, "cnipod", "10.244.1.5", "10.244.1.1");
    caa_start(&caa, "upstream", upstream_cm);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    caa_stop(&caa);
    caa_cleanup(&caa);
    e2e_sh("ip netns del %s 2>/dev/null; ip link del uplink 2>/dev/null; "
           "ip link del cnipod 2>/dev/null",
           podns);
    return 0;
}

/* Runs `cmd`, its whole output in `out`; its exit status. */
static int run(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t size, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void make_id(char *id, const char *tag, int n)
{
    snprintf(id, 65, "%08x%s%08d", (unsigned)getpid(), tag, n);
}

static void test_pod_as_upstream_reads_it(void **state)
{
    (void)state;
    char id[65], sock[256], out[8192], msg[1024];
    make_id(id, "web", 0);
    assert_int_equal(
        create_vm_netns(&caa, id, "web", "shop", podpath, sock, sizeof(sock), msg, sizeof(msg)), 0);

    /* Before StartVM the pod has no VM: NOT_FOUND, as upstream's. */
    assert_int_equal(run(out, sizeof(out), "%s podvminfo %s shop web", UPSTREAM_COMPAT, caa.sock),
                     0);
    printf("GetInfo before StartVM: %s", out);
    assert_non_null(strstr(out, "CODE NotFound VM ID for shop:web was not found"));

    /* A caller that waits is answered once the VM exists. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s podvminfo %s shop web -wait -timeout 60s", UPSTREAM_COMPAT,
             caa.sock);
    FILE *waiter = popen(cmd, "r");
    assert_non_null(waiter);
    usleep(300 * 1000);
    assert_int_equal(id_call(&caa, "StartVM", id, 60000, msg, sizeof(msg)), 0);
    char want[160];
    snprintf(want, sizeof(want), "VMID local-podvm-web-%.8s\n", id);
    size_t n = fread(out, 1, sizeof(out) - 1, waiter);
    out[n] = '\0';
    assert_int_equal(pclose(waiter), 0);
    printf("GetInfo with Wait, across StartVM: %s", out);
    assert_string_equal(out, want);
    assert_int_equal(run(out, sizeof(out), "%s podvminfo %s shop web", UPSTREAM_COMPAT, caa.sock),
                     0);
    assert_string_equal(out, want);
    /* Another pod, waited for until the call's deadline. */
    assert_int_equal(run(out, sizeof(out), "%s podvminfo %s shop other -wait -timeout 500ms",
                         UPSTREAM_COMPAT, caa.sock),
                     0);
    printf("GetInfo with Wait for a pod that never comes: %s", out);
    assert_non_null(strstr(out, "CODE DeadlineExceeded"));

    /* The forwarder took the TLS profile and serves. */
    assert_int_equal(health(sock), 0);

    /* The pod VM's apf.json and user data, as upstream's readers take
     * them: the TLS profile in upstream's spelling, the suites an array,
     * the scratch space marker sent. */
    char vm[400];
    snprintf(vm, sizeof(vm), "%s/podvm-web-%.8s", caa.vms, id);
    int rc = run(out, sizeof(out), "%s apf %s/root/run/peerpod/apf.json 2>&1", UPSTREAM_COMPAT, vm);
    printf("apf.json as upstream's forwarder decodes it: %s", out);
    assert_int_equal(rc, 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "tls-min-version")), "VersionTLS12");
    json_t *suites = json_object_get(j, "tls-cipher-suites");
    assert_int_equal(json_array_size(suites), 3);
    assert_string_equal(json_string_value(json_array_get(suites, 2)),
                        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    assert_true(json_is_true(json_object_get(j, "has-tls")));
    assert_string_equal(json_string_value(json_object_get(j, "pod-name")), "web");
    /* The pod network, its routes and neighbours in upstream's names. */
    assert_string_equal(json_string_value(json_object_get(j, "podip")), "10.244.1.5/24");
    assert_string_equal(json_string_value(json_object_get(j, "tunnel-type")), "vxlan");
    assert_true(json_integer_value(json_object_get(j, "routes")) >= 1);
    json_decref(j);
    rc = run(out, sizeof(out), "%s userdata %s/user-data 2>&1", UPSTREAM_COMPAT, vm);
    printf("user data as upstream's process-user-data decodes it: %s", out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "\"/run/peerpod/scratch-space.marker\""));
    char marker[512];
    snprintf(marker, sizeof(marker), "%s/root/run/peerpod/scratch-space.marker", vm);
    assert_int_equal(access(marker, F_OK), 0);

    assert_int_equal(id_call(&caa, "StopVM", id, 60000, NULL, 0), 0);
    /* Gone with its VM: not found again. */
    assert_int_equal(run(out, sizeof(out), "%s podvminfo %s shop web", UPSTREAM_COMPAT, caa.sock),
                     0);
    assert_non_null(strstr(out, "CODE NotFound"));
}

/* PEERPODS_LIMIT_PER_NODE is 10 unless set, as upstream's. */
static void test_default_limit(void **state)
{
    (void)state;
    char id[65], msg[1024];
    for (int i = 1; i <= 10; i++) {
        make_id(id, "lim", i);
        char pod[32];
        snprintf(pod, sizeof(pod), "lim-%d", i);
        assert_int_equal(create_vm(&caa, id, pod, "shop", NULL, NULL, 0, msg, sizeof(msg)), 0);
    }
    make_id(id, "lim", 11);
    int code = create_vm(&caa, id, "lim-11", "shop", NULL, NULL, 0, msg, sizeof(msg));
    printf("CreateVM of the 11th pod: %d `%s`\n", code, msg);
    assert_int_equal(code, 8); /* RESOURCE_EXHAUSTED */
    assert_non_null(strstr(msg, "`PEERPODS_LIMIT_PER_NODE` is 10"));
    for (int i = 1; i <= 10; i++) {
        make_id(id, "lim", i);
        assert_int_equal(id_call(&caa, "StopVM", id, 60000, NULL, 0), 0);
    }
}

int main(void)
{
    e2e_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pod_as_upstream_reads_it),
        cmocka_unit_test(test_default_limit),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
