#include "e2e_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "health.pb-c.h"
#include "hypervisor.pb-c.h"
#include "ttrpc/sync_client.h"

#define HV "hypervisor.Hypervisor"

const char *e2e_bin_dir;
unsigned long e2e_nofile;

static void remember(caa_t *c, int add);

static void bring_lo_up(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    ioctl(fd, SIOCGIFFLAGS, &ifr);
    ifr.ifr_flags |= IFF_UP;
    ioctl(fd, SIOCSIFFLAGS, &ifr);
    close(fd);
}

void e2e_init(void)
{
    if (geteuid() != 0) {
        printf("skipped: the end-to-end tests need root for network namespaces\n");
        exit(77);
    }
    e2e_bin_dir = getenv("PP_BIN_DIR");
    if (e2e_bin_dir == NULL) {
        fprintf(stderr, "PP_BIN_DIR is not set\n");
        exit(1);
    }
    if (unshare(CLONE_NEWNET) < 0) {
        printf("skipped: unshare(CLONE_NEWNET): %s\n", strerror(errno));
        exit(77);
    }
    bring_lo_up();
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)time(NULL));
}

double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? 0 : -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

double wait_entries(const char *dir, int want, double max_ms)
{
    double t0 = now_ms();
    for (;;) {
        double took = now_ms() - t0;
        if (count_entries(dir) == want)
            return took;
        if (took > max_ms)
            return -1;
        usleep(20000);
    }
}

int http_status(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char req[256], resp[64] = "";
    int n =
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    int status = -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
        size_t have = 0;
        ssize_t r;
        while (have < sizeof(resp) - 1 &&
               (r = recv(fd, resp + have, sizeof(resp) - 1 - have, 0)) > 0)
            have += (size_t)r;
        resp[have] = '\0';
        if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
            status = -1;
    }
    close(fd);
    return status;
}

/* Links in this (node) namespace other than lo. */
int count_links(void)
{
    struct if_nameindex *ifs = if_nameindex();
    int n = 0;
    for (struct if_nameindex *i = ifs; i && i->if_index; i++)
        if (strcmp(i->if_name, "lo") != 0)
            n++;
    if_freenameindex(ifs);
    return n;
}

void print_log(const caa_t *c)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "tail -n 60 %s >&2", c->log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

static int socket_accepts(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        close(fd);
        return 0;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

void caa_start(caa_t *c, const char *name, const char *const *extra)
{
    snprintf(c->dir, sizeof(c->dir), "/tmp/pp-e2e-%s-XXXXXX", name);
    assert_non_null(mkdtemp(c->dir));
    snprintf(c->sock, sizeof(c->sock), "%s/hv.sock", c->dir);
    snprintf(c->pods, sizeof(c->pods), "%s/pods", c->dir);
    snprintf(c->vms, sizeof(c->vms), "%s/vms", c->dir);
    snprintf(c->netns, sizeof(c->netns), "%s/netns", c->dir);
    snprintf(c->record, sizeof(c->record), "%s/agent.record", c->dir);
    snprintf(c->log, sizeof(c->log), "%s/caa.log", c->dir);
    char wrapper[256], script[1024];
    snprintf(wrapper, sizeof(wrapper), "%s/agent.sh", c->dir);
    snprintf(script, sizeof(script),
             "#!/bin/sh\nexport PP_AGENT_RECORD=%s\nexport PP_AGENT_DELAY_MS=3000\n"
             "export PP_AGENT_DELAY_METHOD=WaitProcess\nexec %s/pp-test-agent \"$@\"\n",
             c->record, e2e_bin_dir);
    write_file(wrapper, script, 0755);
    remember(c, 1);
    caa_restart(c, extra);
}

void caa_spawn(caa_t *c, const char *const *extra)
{
    char env[32][300];
    char *envp[36];
    int n = 0;
    /* Extras first: getenv() finds the first of two equal names. */
    for (int i = 0; extra && extra[i]; i++)
        snprintf(env[n++], 300, "%s", extra[i]);
    snprintf(env[n++], 300, "PATH=/usr/sbin:/usr/bin:/sbin:/bin");
    snprintf(env[n++], 300, "CLOUD_PROVIDER=local");
    snprintf(env[n++], 300, "REMOTE_HYPERVISOR_ENDPOINT=%s", c->sock);
    snprintf(env[n++], 300, "PODS_DIR=%s", c->pods);
    snprintf(env[n++], 300, "LOCAL_STATE_DIR=%s", c->vms);
    snprintf(env[n++], 300, "LOCAL_NETNS_DIR=%s", c->netns);
    snprintf(env[n++], 300, "LOCAL_AGENT_COMMAND=%s/agent.sh", c->dir);
    snprintf(env[n++], 300, "NODE_NAME=e2e-node");
    snprintf(env[n++], 300, "PROXY_TIMEOUT=30s");
    /* Above upstream's default of 10: the tests run up to 50 pods at once. */
    snprintf(env[n++], 300, "PEERPODS_LIMIT_PER_NODE=64");
    snprintf(env[n++], 300, "AUTH_JSON_FILE=%s/auth.json", c->dir);
    for (int i = 0; i < n; i++)
        envp[i] = env[i];
    envp[n] = NULL;

    char exe[256];
    snprintf(exe, sizeof(exe), "%s/cloud-api-adaptor", e2e_bin_dir);
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        int fd = open(c->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        if (e2e_nofile != 0) {
            struct rlimit rl = {e2e_nofile, e2e_nofile};
            if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                _exit(126);
        }
        execle(exe, exe, (char *)NULL, envp);
        _exit(127);
    }
}

void caa_restart(caa_t *c, const char *const *extra)
{
    caa_spawn(c, extra);
    /* A socket file may be left from a killed daemon: wait until one
     * accepts. */
    for (int i = 0; i < 500; i++) {
        if (socket_accepts(c->sock))
            return;
        usleep(10000);
    }
    print_log(c);
    fail_msg("cloud-api-adaptor did not serve %s", c->sock);
}

void caa_kill(caa_t *c)
{
    if (c->pid <= 0)
        return;
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    c->pid = 0;
}

void caa_stop(caa_t *c)
{
    if (c->pid <= 0)
        return;
    kill(c->pid, SIGTERM);
    int status;
    assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
    c->pid = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        print_log(c);
        fail_msg("cloud-api-adaptor ended with status %#x after SIGTERM", status);
    }
}

/* Kills what a pod VM left running: its pidfiles name the processes. */
static void kill_vm_processes(const caa_t *c)
{
    DIR *d = opendir(c->vms);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        static const char *const names[] = {"agent.pid", "forwarder.pid"};
        for (size_t i = 0; e->d_name[0] != '.' && i < 2; i++) {
            char path[600];
            snprintf(path, sizeof(path), "%s/%s/%s", c->vms, e->d_name, names[i]);
            FILE *f = fopen(path, "r");
            int pid;
            if (f != NULL && fscanf(f, "%d", &pid) == 1 && pid > 1)
                kill(pid, SIGKILL);
            if (f != NULL)
                fclose(f);
        }
    }
    if (d)
        closedir(d);
    d = opendir(c->netns);
    while (d != NULL && (e = readdir(d)) != NULL) {
        char path[600];
        snprintf(path, sizeof(path), "%s/%s", c->netns, e->d_name);
        if (e->d_name[0] != '.')
            umount2(path, MNT_DETACH);
    }
    if (d)
        closedir(d);
}

#define MAX_DAEMONS 16
static caa_t *started[MAX_DAEMONS];

/* A failed test skips its own cleanup; this runs at exit for what is left. */
static void cleanup_all(void)
{
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (started[i] != NULL)
            caa_cleanup(started[i]);
}

static void remember(caa_t *c, int add)
{
    static int registered;
    if (!registered) {
        atexit(cleanup_all);
        registered = 1;
    }
    for (int i = 0; i < MAX_DAEMONS; i++) {
        if (add && started[i] == NULL) {
            started[i] = c;
            return;
        }
        if (!add && started[i] == c)
            started[i] = NULL;
    }
}

void caa_cleanup(caa_t *c)
{
    remember(c, 0);
    caa_kill(c);
    kill_vm_processes(c);
    /* The provider made its namespace directory a mount point. */
    umount2(c->netns, MNT_DETACH);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", c->dir);
}

/* ---- the shim's calls -------------------------------------------------- */

int create_vm(const caa_t *c, const char *id, const char *pod, const char *ns,
              const char *const *extra_kv, char *agent_sock, size_t size, char *msg, size_t msize)
{
    return create_vm_full(c, id, pod, ns, "", extra_kv, agent_sock, size, msg, msize);
}

int create_vm_netns(const caa_t *c, const char *id, const char *pod, const char *ns,
                    const char *netns, char *agent_sock, size_t size, char *msg, size_t msize)
{
    return create_vm_full(c, id, pod, ns, netns, NULL, agent_sock, size, msg, msize);
}

int create_vm_full(const caa_t *c, const char *id, const char *pod, const char *ns,
                   const char *netns, const char *const *extra_kv, char *agent_sock, size_t size,
                   char *msg, size_t msize)
{
    Hypervisor__CreateVMRequest req = HYPERVISOR__CREATE_VMREQUEST__INIT;
    Hypervisor__CreateVMRequest__AnnotationsEntry e[16];
    Hypervisor__CreateVMRequest__AnnotationsEntry *ep[16];
    size_t n = 0;
    const char *kv[32];
    size_t nkv = 0;
    if (pod) {
        kv[nkv++] = "io.kubernetes.cri.sandbox-name";
        kv[nkv++] = pod;
    }
    if (ns) {
        kv[nkv++] = "io.kubernetes.cri.sandbox-namespace";
        kv[nkv++] = ns;
    }
    for (size_t i = 0; extra_kv && extra_kv[i]; i += 2) {
        kv[nkv++] = extra_kv[i];
        kv[nkv++] = extra_kv[i + 1];
    }
    for (size_t i = 0; i < nkv; i += 2, n++) {
        hypervisor__create_vmrequest__annotations_entry__init(&e[n]);
        e[n].key = (char *)kv[i];
        e[n].value = (char *)kv[i + 1];
        ep[n] = &e[n];
    }
    req.id = (char *)id;
    req.networknamespacepath = (char *)netns;
    req.n_annotations = n;
    req.annotations = ep;
    uint8_t buf[4096];
    size_t len = hypervisor__create_vmrequest__pack(&req, buf);
    pp_ttrpc_sync_result_t r;
    int code = pp_ttrpc_sync_call(c->sock, HV, "CreateVM", buf, len, 10000, &r);
    if (msg)
        snprintf(msg, msize, "%s", r.message);
    if (code == 0 && agent_sock) {
        Hypervisor__CreateVMResponse *resp =
            hypervisor__create_vmresponse__unpack(NULL, r.len, r.payload);
        assert_non_null(resp);
        snprintf(agent_sock, size, "%s", resp->agentsocketpath);
        hypervisor__create_vmresponse__free_unpacked(resp, NULL);
    }
    pp_ttrpc_sync_result_free(&r);
    return code;
}

int id_call(const caa_t *c, const char *method, const char *id, uint64_t timeout_ms, char *msg,
            size_t msize)
{
    Hypervisor__StartVMRequest req = HYPERVISOR__START_VMREQUEST__INIT;
    req.id = (char *)id;
    uint8_t buf[512];
    size_t len = hypervisor__start_vmrequest__pack(&req, buf);
    pp_ttrpc_sync_result_t r;
    int code = pp_ttrpc_sync_call(c->sock, HV, method, buf, len, timeout_ms, &r);
    if (msg)
        snprintf(msg, msize, "%s", r.message);
    if (code != 0)
        fprintf(stderr, "%s %s: %d %s\n", method, id, code, r.message);
    pp_ttrpc_sync_result_free(&r);
    return code;
}

int health(const char *agent_sock)
{
    uint8_t buf[8];
    Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
    size_t len = grpc__check_request__pack(&req, buf);
    pp_ttrpc_sync_result_t r;
    int code = pp_ttrpc_sync_call(agent_sock, "grpc.Health", "Check", buf, len, 10000, &r);
    if (code == 0) {
        Grpc__HealthCheckResponse *resp =
            grpc__health_check_response__unpack(NULL, r.len, r.payload);
        assert_non_null(resp);
        assert_int_equal(resp->status, GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
        grpc__health_check_response__free_unpacked(resp, NULL);
    }
    pp_ttrpc_sync_result_free(&r);
    return code;
}

int e2e_sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int r = system(cmd);
    return WIFEXITED(r) ? WEXITSTATUS(r) : 128;
}

void e2e_node_uplink(void)
{
    assert_int_equal(e2e_sh("ip link add uplink type veth peer name uplink-peer && "
                            "ip addr add 198.19.0.1/24 dev uplink && ip link set uplink up && "
                            "ip route add default via 198.19.0.254 dev uplink"),
                     0);
}

void e2e_cni_pod(const char *name, const char *node_if, const char *ip, const char *gw)
{
    assert_int_equal(e2e_sh("ip netns add %s && ip link add %s type veth peer name eth0 netns %s "
                            "&& ip addr add %s/24 dev %s && ip link set %s up && "
                            "ip -n %s addr add %s/24 dev eth0 && ip -n %s link set eth0 up && "
                            "ip -n %s link set lo up && ip -n %s route add default via %s",
                            name, node_if, name, gw, node_if, node_if, name, ip, name, name, name,
                            gw),
                     0);
}

void e2e_cni_pod_del(const char *name, const char *node_if)
{
    e2e_sh("ip netns del %s 2>/dev/null; ip link del %s 2>/dev/null", name, node_if);
}
