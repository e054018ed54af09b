/* Tunnel setup and teardown latency, in process, through the library's
 * public calls, with fork and exec forbidden by a seccomp filter for the
 * whole measured run (a library that tried either would fail here).
 *
 *   pp-net-bench NODE_NETNS POD_NETNS VM_NETNS VM_POD_NAME REMOTE ITERATIONS
 *
 * Prints p50, p99 and mean in milliseconds for node setup, node teardown,
 * node setup+teardown, the background deletion of vxlan1 that teardown
 * leaves running (waited for outside the timed calls, so each iteration
 * starts clean), VM setup, VM teardown, and whether node setup+teardown met
 * the goal (p99 < 5 ms). */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

#include "net/net.h"

#define GOAL_MS 5.0

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n, double *p99_out)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    qsort(v, (size_t)n, sizeof(*v), cmp);
    double p99 = v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
    printf("  %-26s p50 %7.3f ms   p99 %7.3f ms   mean %7.3f ms\n", what, v[n / 2], p99, sum / n);
    if (p99_out != NULL)
        *p99_out = p99;
}

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define ARCH AUDIT_ARCH_AARCH64
#endif

/* execve, execveat, fork, vfork and process-making clone fail with EPERM;
 * clone3 says ENOSYS so glibc makes its threads with clone, whose flags
 * the filter can see. */
static int forbid_fork_exec(void)
{
#ifdef ARCH
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        /* 4: */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execve, 6, 0),
        /* 5: */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execveat, 5, 0),
#ifdef __NR_fork
        /* 6: */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fork, 4, 0),
        /* 7: */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_vfork, 3, 0),
#else /* no fork or vfork: keep the offsets */
        /* 6: */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execve, 4, 0),
        /* 7: */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execve, 3, 0),
#endif
        /* 8: */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 3, 0),
        /* 9: */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 3, 0),
        /* 10: */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* 11: */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        /* 12: */ BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        /* 13: clone: flags are the first argument (low word). */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    };
    struct sock_fprog prog = {.len = sizeof(f) / sizeof(f[0]), .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        return -errno;
    return 0;
#else
    return -ENOSYS;
#endif
}

static long num(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return end != s && *end == '\0' && v > 0 ? v : -1;
}

/* Samples in milliseconds, one array per measured step. */
enum { NODE_SETUP, NODE_TEARDOWN, NODE_BOTH, NODE_GONE, VM_SETUP, VM_TEARDOWN, STEPS };

typedef struct run_s {
    const char *node_ns, *pod_ns, *vm_ns, *vm_pod;
    struct in_addr remote;
    int n, warm;
    double *v[STEPS];
    int rc;
    pp_error_t err;
} run_t;

/* The measured run, on a thread of its own: the seccomp filter covers it
 * and every thread it (and the library) makes, not the main thread, which
 * the sanitizers' exit-time checks need. */
static void *measure(void *p)
{
    run_t *r = p;
    pp_error_t *err = &r->err;
    r->rc = forbid_fork_exec();
    if (r->rc < 0) {
        pp_error_set(err, r->rc, "seccomp: %s", strerror(-r->rc));
        return NULL;
    }
    pp_node_net_t net;
    pp_node_net_init(&net);
    net.host_netns = r->node_ns;
    static pp_podnet_t cfg;
    int rc = pp_node_inspect(&net, r->pod_ns, 7, &cfg, err);
    /* Node side, then VM side: in real life they are different kernels, so
     * one's deferred kernel work must not land in the other's timings. */
    for (int i = -r->warm; rc == 0 && i < r->n; i++) {
        double t0 = now_ms();
        rc = pp_node_tunnel_setup(&net, r->pod_ns, &cfg, r->remote, err);
        double t1 = now_ms();
        if (rc == 0)
            rc = pp_node_tunnel_teardown(&net, r->pod_ns, &cfg, err);
        double t2 = now_ms();
        if (rc == 0 && (rc = pp_node_net_drain(&net, 10000)) < 0)
            pp_error_set(err, rc, "background deletion takes over 10 s");
        double t3 = now_ms();
        if (rc < 0)
            pp_error_wrap(err, "node iteration %d", i);
        if (rc == 0 && i >= 0) {
            r->v[NODE_SETUP][i] = t1 - t0;
            r->v[NODE_TEARDOWN][i] = t2 - t1;
            r->v[NODE_BOTH][i] = t2 - t0;
            r->v[NODE_GONE][i] = t3 - t2;
        }
    }
    for (int i = -r->warm; rc == 0 && i < r->n; i++) {
        double t0 = now_ms();
        rc = pp_vm_tunnel_setup(r->vm_ns, r->vm_pod, &cfg, err);
        double t1 = now_ms();
        if (rc == 0)
            rc = pp_vm_tunnel_teardown(r->vm_ns, r->vm_pod, &cfg, false, err);
        double t2 = now_ms();
        if (rc < 0)
            pp_error_wrap(err, "vm iteration %d", i);
        if (rc == 0 && i >= 0) {
            r->v[VM_SETUP][i] = t1 - t0;
            r->v[VM_TEARDOWN][i] = t2 - t1;
        }
    }
    pp_vm_tunnel_teardown(r->vm_ns, r->vm_pod, &cfg, true, NULL);
    pp_node_net_fini(&net);
    r->rc = rc;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 7 || num(argv[6]) < 0) {
        fprintf(stderr, "usage: pp-net-bench NODE_NETNS POD_NETNS VM_NETNS VM_POD_NAME REMOTE "
                        "ITERATIONS\n");
        return 2;
    }
    run_t r = {.node_ns = argv[1], .pod_ns = argv[2], .vm_ns = argv[3], .vm_pod = argv[4]};
    r.n = (int)num(argv[6]);
    r.warm = r.n / 10 + 3;
    if (inet_pton(AF_INET, argv[5], &r.remote) != 1) {
        fprintf(stderr, "pp-net-bench: `%s` is not an IPv4 address\n", argv[5]);
        return 2;
    }
    for (int k = 0; k < STEPS; k++) {
        r.v[k] = calloc((size_t)r.n, sizeof(double));
        if (r.v[k] == NULL)
            return 1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, measure, &r) != 0)
        return 1;
    pthread_join(t, NULL);
    if (r.rc < 0) {
        fprintf(stderr, "pp-net-bench: %s\n", r.err.message);
        return 1;
    }
    double p99;
    printf("tunnel setup/teardown, %d iterations (after %d warm-up), fork/exec forbidden:\n", r.n,
           r.warm);
    report("node setup", r.v[NODE_SETUP], r.n, NULL);
    report("node teardown", r.v[NODE_TEARDOWN], r.n, NULL);
    report("node setup+teardown", r.v[NODE_BOTH], r.n, &p99);
    report("  then vxlan1 gone after", r.v[NODE_GONE], r.n, NULL);
    report("vm setup", r.v[VM_SETUP], r.n, NULL);
    report("vm teardown", r.v[VM_TEARDOWN], r.n, NULL);
    printf("  goal: node setup+teardown p99 < %.0f ms: %s (%.3f ms)\n", GOAL_MS,
           p99 < GOAL_MS ? "met" : "MISSED", p99);
    for (int k = 0; k < STEPS; k++)
        free(r.v[k]);
    return 0;
}
