/* Trust in restarts: cloud-api-adaptor killed with SIGKILL at every step of
 * a pod's lifecycle, then started again, must end with no instance without
 * a sandbox and no sandbox without its instance; and 50 running pods must
 * be served again at once after a kill, with no VM created or deleted. */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
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

static void make_id(char *id, const char *tag)
{
    static int seq;
    snprintf(id, 65, "%08x%s%08d", (unsigned)getpid(), tag, ++seq);
}

/* Reads PODS_DIR/<id>/state.json: state and instance name. */
static int read_record(const caa_t *c, const char *id, char *state, size_t ssize, char *inst,
                       size_t isize)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s/state.json", c->pods, id);
    json_t *j = json_load_file(path, 0, NULL);
    if (j == NULL)
        return -1;
    snprintf(state, ssize, "%s", json_string_value(json_object_get(j, "state")));
    snprintf(inst, isize, "%s", json_string_value(json_object_get(j, "instance-name")));
    json_decref(j);
    return 0;
}

/* Every instance (VM directory) belongs to a recorded sandbox that is
 * running or failed-with-instance; every running sandbox has its instance
 * and its agent socket serves. */
static void check_consistent(const caa_t *c)
{
    DIR *d = opendir(c->vms);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int owned = 0;
        DIR *p = opendir(c->pods);
        struct dirent *f;
        while (p != NULL && (f = readdir(p)) != NULL) {
            char state[32], inst[128];
            if (f->d_name[0] != '.' &&
                read_record(c, f->d_name, state, sizeof(state), inst, sizeof(inst)) == 0 &&
                strcmp(inst, e->d_name) == 0)
                owned = 1;
        }
        if (p)
            closedir(p);
        if (!owned)
            fail_msg("instance `%s` has no sandbox record", e->d_name);
    }
    if (d)
        closedir(d);
    DIR *p = opendir(c->pods);
    while (p != NULL && (e = readdir(p)) != NULL) {
        char state[32], inst[128], dir[600], sock[600];
        if (e->d_name[0] == '.' ||
            read_record(c, e->d_name, state, sizeof(state), inst, sizeof(inst)) < 0)
            continue;
        if (strcmp(state, "running") != 0)
            continue;
        snprintf(dir, sizeof(dir), "%s/%s", c->vms, inst);
        struct stat st;
        if (stat(dir, &st) < 0)
            fail_msg("running sandbox `%s` has no instance `%s`", e->d_name, inst);
        snprintf(sock, sizeof(sock), "%s/%s/agent.ttrpc", c->pods, e->d_name);
        assert_int_equal(health(sock), 0);
    }
    if (p)
        closedir(p);
}

/* Waits for teardowns that recovery resumed. */
static void settle(const caa_t *c)
{
    int last = -1, same = 0;
    for (int i = 0; i < 300 && same < 10; i++) {
        int n = count_entries(c->vms);
        same = n == last ? same + 1 : 0;
        last = n;
        usleep(20000);
    }
}

/* Network leftovers in this (node) namespace and the pod namespace: the
 * tunnel device, ingress qdiscs, our nftables table, held indexes. */
static void check_no_network_leftovers(const char *podns, const caa_t *c)
{
    assert_int_not_equal(e2e_sh("ip -n %s link show vxlan1 >/dev/null 2>&1", podns), 0);
    assert_int_equal(
        e2e_sh("tc -n %s qdisc show dev eth0 | grep -c ingress | grep -q '^0$'", podns), 0);
    assert_int_not_equal(e2e_sh("nft list table inet peerpod >/dev/null 2>&1"), 0);
    char ixdir[300];
    snprintf(ixdir, sizeof(ixdir), "%s/.indexes", c->pods);
    assert_int_equal(count_entries(ixdir), 0);
}

static void kill_at_every_step(const char *netns)
{
    static const char *const points[] = {
        "create:recorded",         "start:recorded",         "start:instance-created",
        "start:instance-recorded", "start:tunnel-recorded",  "start:tunnel-up",
        "start:proxy-ready",       "start:running-recorded", "stop:recorded",
        "stop:tunnel-down",        "stop:instance-deleted",
    };
    for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
        if (netns == NULL && strstr(points[i], "tunnel") != NULL)
            continue;
        static caa_t c; /* outlives a failed test, for the exit cleanup */
        memset(&c, 0, sizeof(c));
        char fp[96];
        snprintf(fp, sizeof(fp), "PP_FAILPOINT=%s", points[i]);
        const char *extra[] = {fp, NULL};
        caa_start(&c, "crash", extra);
        char id[65], sock[256];
        make_id(id, "crash");
        /* Drive the lifecycle until the daemon dies at the failpoint. */
        int rc = create_vm_netns(&c, id, "crashy", "ns", netns ? netns : "", sock, sizeof(sock),
                                 NULL, 0);
        if (rc == 0)
            rc = id_call(&c, "StartVM", id, 30000, NULL, 0);
        if (rc == 0)
            rc = id_call(&c, "StopVM", id, 30000, NULL, 0);
        int status;
        assert_int_equal(waitpid(c.pid, &status, 0), c.pid);
        c.pid = 0;
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
            print_log(&c);
            fail_msg("failpoint `%s`: daemon did not die there (status %#x)", points[i], status);
        }
        caa_restart(&c, NULL);
        settle(&c);
        check_consistent(&c);
        /* What the kubelet does next: stop the pod. Nothing is left. */
        assert_int_equal(id_call(&c, "StopVM", id, 30000, NULL, 0), 0);
        assert_int_equal(count_entries(c.pods), 0);
        assert_int_equal(count_entries(c.vms), 0);
        assert_int_equal(count_entries(c.netns), 0);
        if (netns != NULL) {
            caa_stop(&c); /* waits for background deletions */
            check_no_network_leftovers(netns + strlen("/run/netns/"), &c);
            /* Only the pod's own veth to the node, and the uplink. */
            assert_int_equal(count_links(), 3);
        } else {
            assert_int_equal(count_links(), 0);
            caa_stop(&c);
        }
        printf("killed at `%s`%s: recovered, then stopped cleanly\n", points[i],
               netns ? " with a pod network" : "");
        caa_cleanup(&c);
    }
}

static void test_kill_at_every_step(void **state)
{
    (void)state;
    kill_at_every_step(NULL);
}

static void test_kill_at_every_step_with_network(void **state)
{
    (void)state;
    char podns[64], path[128];
    snprintf(podns, sizeof(podns), "pp-e2e-crash-%d", (int)getpid());
    snprintf(path, sizeof(path), "/run/netns/%s", podns);
    e2e_node_uplink();
    e2e_cni_pod(podns, "cnicrash", "10.244.9.5", "10.244.9.1");
    kill_at_every_step(path);
    e2e_cni_pod_del(podns, "cnicrash");
    e2e_sh("ip link del uplink 2>/dev/null");
}

#define RUNNING 50

typedef struct pod_s {
    char id[65];
    char sock[256];
    int rc;
} pod_t;

static caa_t *many_caa;

static void *start_pod(void *arg)
{
    pod_t *p = arg;
    p->rc = id_call(many_caa, "StartVM", p->id, 120000, NULL, 0);
    return NULL;
}

static void *stop_pod(void *arg)
{
    pod_t *p = arg;
    p->rc = id_call(many_caa, "StopVM", p->id, 120000, NULL, 0);
    return NULL;
}

static int read_agent_pid(const caa_t *c, const char *inst)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s/agent.pid", c->vms, inst);
    FILE *f = fopen(path, "r");
    int pid = -1;
    if (f != NULL) {
        if (fscanf(f, "%d", &pid) != 1)
            pid = -1;
        fclose(f);
    }
    return pid;
}

static void test_kill_with_50_running(void **state)
{
    (void)state;
    static caa_t c; /* outlives a failed test, for the exit cleanup */
    memset(&c, 0, sizeof(c));
    /* The startup probe on a port of its own. */
    const char *probe[] = {"PROBE_PORT=18090", NULL};
    caa_start(&c, "fifty", probe);
    many_caa = &c;
    pod_t *pods = calloc(RUNNING, sizeof(*pods));
    pthread_t th[RUNNING];
    int pids[RUNNING];
    for (int i = 0; i < RUNNING; i++) {
        char name[32];
        make_id(pods[i].id, "fifty");
        snprintf(name, sizeof(name), "p%d", i);
        assert_int_equal(create_vm(&c, pods[i].id, name, "ns", NULL, pods[i].sock,
                                   sizeof(pods[i].sock), NULL, 0),
                         0);
    }
    for (int i = 0; i < RUNNING; i++)
        pthread_create(&th[i], NULL, start_pod, &pods[i]);
    for (int i = 0; i < RUNNING; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(pods[i].rc, 0);
        char inst[64];
        snprintf(inst, sizeof(inst), "podvm-p%d-%.8s", i, pods[i].id);
        pids[i] = read_agent_pid(&c, inst);
        assert_true(pids[i] > 0);
    }
    assert_int_equal(health(pods[0].sock), 0);

    caa_kill(&c);
    double t0 = now_ms();
    caa_restart(&c, probe);
    /* Started, as the kubelet's startup probe sees it: the sandboxes found
     * are recovered. */
    double started = -1;
    while (now_ms() - t0 < E2E_SETTLE_MS) {
        if (http_status(18090, "/startup") == 200) {
            started = now_ms() - t0;
            break;
        }
        usleep(20000);
    }
    if (started < 0) {
        print_log(&c);
        fail_msg("/startup did not answer 200 within %.0f ms of the restart", E2E_SETTLE_MS);
    }
    /* From then on every pod's agent socket serves, at the first call. */
    for (int i = 0; i < RUNNING; i++)
        if (health(pods[i].sock) != 0)
            fail_msg("pod %d's agent socket does not serve once the daemon says it started", i);
    double all_at = now_ms() - t0;
    printf("after SIGKILL and restart: started (recovery done) %.0f ms after start; all %d agent "
           "sockets served at the first call by %.0f ms\n",
           started, RUNNING, all_at);
    /* Not one VM was created or deleted: the same agents run. */
    assert_int_equal(count_entries(c.vms), RUNNING);
    for (int i = 0; i < RUNNING; i++) {
        char inst[64];
        snprintf(inst, sizeof(inst), "podvm-p%d-%.8s", i, pods[i].id);
        assert_int_equal(read_agent_pid(&c, inst), pids[i]);
        assert_int_equal(kill(pids[i], 0), 0);
    }
    for (int i = 0; i < RUNNING; i++)
        pthread_create(&th[i], NULL, stop_pod, &pods[i]);
    for (int i = 0; i < RUNNING; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(pods[i].rc, 0);
    }
    assert_int_equal(count_entries(c.pods), 0);
    assert_int_equal(count_entries(c.vms), 0);
    assert_int_equal(count_links(), 0);
    free(pods);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* An instance of this node with no record is an orphan: deleted at start. */
static void test_orphan_deleted(void **state)
{
    (void)state;
    static caa_t c; /* outlives a failed test, for the exit cleanup */
    memset(&c, 0, sizeof(c));
    caa_start(&c, "orphan", NULL);
    char id[65], sock[256];
    make_id(id, "orphan");
    assert_int_equal(create_vm(&c, id, "orphan", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    assert_int_equal(id_call(&c, "StartVM", id, 30000, NULL, 0), 0);
    caa_kill(&c);
    /* The record is lost (as if the pods directory were wiped). */
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf %s/%s", c.pods, id);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(count_entries(c.vms), 1);
    caa_restart(&c, NULL);
    double gone = wait_entries(c.vms, 0, E2E_SETTLE_MS);
    printf("the orphan deleted %.0f ms after the restart\n", gone);
    assert_true(gone >= 0);
    assert_int_equal(count_entries(c.netns), 0);
    assert_int_equal(count_links(), 0);
    caa_stop(&c);
    caa_cleanup(&c);
}

int main(void)
{
    e2e_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_at_every_step),
        cmocka_unit_test(test_kill_at_every_step_with_network),
        cmocka_unit_test(test_kill_with_50_running),
        cmocka_unit_test(test_orphan_deleted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
