/* Helpers for the end-to-end tests: a cloud-api-adaptor child process with
 * the local provider, and the kata shim's calls. */
#ifndef PP_TESTS_E2E_UTIL_H
#define PP_TESTS_E2E_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct caa_s {
    pid_t pid;
    char dir[128];    /* everything of this daemon lives below */
    char sock[192];   /* hypervisor socket */
    char pods[192];   /* PODS_DIR */
    char vms[192];    /* LOCAL_STATE_DIR */
    char netns[192];  /* LOCAL_NETNS_DIR */
    char record[192]; /* what the agents received */
    char log[192];
} caa_t;

/* Where the binaries are ($PP_BIN_DIR); set by e2e_init(). */
extern const char *e2e_bin_dir;
/* When not 0, daemons started from now on get this descriptor limit, soft
 * and hard. */
extern unsigned long e2e_nofile;

/* Skips (exit 77) unless root; moves this process into a new network
 * namespace with lo up, so the machine's network is never touched. */
void e2e_init(void);

double now_ms(void);
void write_file(const char *path, const char *text, mode_t mode);
int count_entries(const char *dir);
int count_links(void);
/* How long a test waits for what should follow at once (a teardown after
 * its answer, sockets after a restart): long enough for a loaded shared
 * machine, so that only what never happens fails. What it took is printed
 * by the tests; speed is measured in tests/bench. */
#define E2E_SETTLE_MS 30000.0
/* Waits until `dir` holds `want` entries, at most `max_ms`: the
 * milliseconds it took, or -1 when it did not. */
double wait_entries(const char *dir, int want, double max_ms);
/* GET http://127.0.0.1:<port><path>: the status, or -1 when nothing
 * answers. */
int http_status(int port, const char *path);
void print_log(const caa_t *c);

/* Makes c->dir and starts a daemon; `extra` is a NULL-terminated list of
 * NAME=VALUE that wins over the defaults. */
void caa_start(caa_t *c, const char *name, const char *const *extra);
/* Starts the daemon again on the same directories. */
void caa_restart(caa_t *c, const char *const *extra);
/* The same without waiting for it to serve (c->pid is set). */
void caa_spawn(caa_t *c, const char *const *extra);
/* SIGTERM, and the daemon must exit 0. */
void caa_stop(caa_t *c);
/* SIGKILL. */
void caa_kill(caa_t *c);
void caa_cleanup(caa_t *c);

int create_vm(const caa_t *c, const char *id, const char *pod, const char *ns,
              const char *const *extra_kv, char *agent_sock, size_t size, char *msg, size_t msize);
int create_vm_netns(const caa_t *c, const char *id, const char *pod, const char *ns,
                    const char *netns, char *agent_sock, size_t size, char *msg, size_t msize);
int create_vm_full(const caa_t *c, const char *id, const char *pod, const char *ns,
                   const char *netns, const char *const *extra_kv, char *agent_sock, size_t size,
                   char *msg, size_t msize);
int id_call(const caa_t *c, const char *method, const char *id, uint64_t timeout_ms, char *msg,
            size_t msize);
int health(const char *agent_sock);

/* Runs a shell command; its exit status. */
int e2e_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Gives this (node) namespace an uplink with 198.19.0.1/24 and a default
 * route, as a worker node has. */
void e2e_node_uplink(void);
/* Makes a pod namespace /run/netns/<name> like a CNI plugin: a veth from
 * the node (`node_if`, holding `gw`/24) to the pod's eth0 holding
 * `ip`/24, default route via `gw`. */
void e2e_cni_pod(const char *name, const char *node_if, const char *ip, const char *gw);
void e2e_cni_pod_del(const char *name, const char *node_if);

#endif
