/* The local provider's internals, shared by its files and the unit tests.
 *
 * A pod VM is a network namespace joined to the node by a veth pair on a
 * private subnet; in it run the agent, process-user-data and the forwarder.
 * Layout of one instance `<name>`:
 *
 *   <LOCAL_STATE_DIR>/<name>/         the VM dir (0700)
 *       tag.json                      node, sandbox, addresses; written first
 *       user-data                     the instance's user data, as a config
 *                                     drive would hand it over
 *       root/                         --root of process-user-data
 *       agent.pid, forwarder.pid      "<pid> <start time>\n"
 *       agent.log, forwarder.log, process-user-data.log
 *   <LOCAL_NETNS_DIR>/<name>          the VM's network namespace
 *   <LOCAL_NETNS_DIR>/<name>.podns    the pod namespace inside the VM
 *   pplv<slot>                        node end of the veth; `eth0` in the VM
 *
 * Each VM gets one /30 of LOCAL_SUBNET (slot k: node .4k+1, VM .4k+2). */
#ifndef PP_PROVIDERS_LOCAL_LOCAL_H
#define PP_PROVIDERS_LOCAL_LOCAL_H

#include <limits.h>
#include <netinet/in.h>
#include <net/if.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "providers/provider.h"

#define PP_LOCAL_SLOT_PREFIX    30
#define PP_LOCAL_NAME_MAX       63
#define PP_LOCAL_LINK_PREFIX    "pplv"
#define PP_LOCAL_VM_IFNAME      "eth0"
#define PP_LOCAL_PODNS_SUFFIX   ".podns"
#define PP_LOCAL_ID_PREFIX      "local-"
#define PP_LOCAL_FORWARDER_PORT 15150

/* --- address pool: one /30 per VM -------------------------------------- */

typedef struct pp__local_pool_s {
    uint32_t base;   /* network address, host byte order */
    unsigned prefix; /* of LOCAL_SUBNET */
    uint32_t nslots; /* /30 blocks in the subnet */
    uint8_t *used;   /* bitmap, nslots bits */
} pp__local_pool_t;

/* Parses "a.b.c.d/n" with 8 <= n <= 30 and no host bits set. -EINVAL when
 * malformed, -ENOMEM. */
int pp__local_pool_init(pp__local_pool_t *pool, const char *cidr);
void pp__local_pool_free(pp__local_pool_t *pool);
int pp__local_pool_is_used(const pp__local_pool_t *pool, uint32_t slot);
/* -ERANGE outside the pool, -EEXIST when already taken. */
int pp__local_pool_mark(pp__local_pool_t *pool, uint32_t slot);
void pp__local_pool_release(pp__local_pool_t *pool, uint32_t slot);
/* Takes the lowest free slot for which `busy` (may be NULL) answers 0, and
 * marks it. -ENOSPC when none is left. */
int pp__local_pool_take(pp__local_pool_t *pool, int (*busy)(uint32_t slot, void *arg), void *arg,
                        uint32_t *slot);
/* The slot whose /30 holds `addr` (host byte order); -ERANGE if none. */
int pp__local_pool_slot_of(const pp__local_pool_t *pool, uint32_t addr, uint32_t *slot);
uint32_t pp__local_slot_node_addr(const pp__local_pool_t *pool, uint32_t slot);
uint32_t pp__local_slot_vm_addr(const pp__local_pool_t *pool, uint32_t slot);

/* --- small helpers ------------------------------------------------------- */

/* A command line split on blanks (no quoting): argv[0] as given, `path` the
 * executable it resolves to. One allocation, released by pp__local_cmd_free. */
typedef struct pp__local_cmd_s {
    char **argv; /* NULL-terminated */
    size_t argc;
    char *path;
} pp__local_cmd_t;

/* -EINVAL when the line holds no word, -ENOMEM. */
int pp__local_split(const char *line, char ***argv, size_t *argc);
void pp__local_cmd_free(pp__local_cmd_t *cmd);
/* Finds argv[0] like execvp would (a name with a slash is used as is, others
 * are looked up in `search_path`); -ENOENT or -EACCES when not executable. */
int pp__local_resolve(const char *name, const char *search_path, char **out);

/* 1..63 of [a-z0-9-], starting with a letter or digit. */
int pp__local_name_valid(const char *name);

/* Parses /proc/<pid>/stat: the state letter and the start time (field 22).
 * -EINVAL when malformed. */
int pp__local_parse_stat(const char *buf, size_t len, char *state, unsigned long long *start);

/* The record written before anything else is created, so that delete and a
 * restarted provider find every part again. */
typedef struct pp__local_tag_s {
    char name[PP_LOCAL_NAME_MAX + 1];
    char sandbox_id[PP_SANDBOX_ID_MAX + 1];
    char node[256];
    char ip[INET_ADDRSTRLEN];      /* the VM's end */
    char node_ip[INET_ADDRSTRLEN]; /* the node's end */
    char link[IF_NAMESIZE];        /* node end of the veth */
    int ready;                     /* every process was started */
} pp__local_tag_t;

/* Returns a malloc'd JSON text. */
int pp__local_tag_encode(const pp__local_tag_t *tag, char **out);
/* -EBADMSG on anything malformed or out of bounds. */
int pp__local_tag_decode(const char *json, size_t len, pp__local_tag_t *tag);

/* --- children: forked helpers, watched without blocking the loop --------- */

/* Reaps the provider's children on SIGCHLD with waitpid(pid, WNOHANG) for each
 * pid it forked, so children of others (uv_spawn) are left alone. */
typedef struct pp__local_reaper_s pp__local_reaper_t;

int pp__local_reaper_new(uv_loop_t *loop, pp__local_reaper_t **out);
/* No child may be pending. The signal handle closes asynchronously. */
void pp__local_reaper_free(pp__local_reaper_t *r);

typedef struct pp__local_child_result_s {
    int status;  /* 0, or the negative errno of the step that failed */
    int step;    /* PP_LOCAL_STEP_* that failed */
    int wstatus; /* waitpid() status of the direct child; -1 if lost */
    pid_t pid;   /* the detached grandchild, else the direct child */
    int fd;      /* a descriptor the child passed back (now the caller's), or -1 */
} pp__local_child_result_t;

enum {
    PP_LOCAL_STEP_NONE = 0,
    PP_LOCAL_STEP_UNSHARE,
    PP_LOCAL_STEP_MOUNT_VM,
    PP_LOCAL_STEP_NETLINK,
    PP_LOCAL_STEP_MOUNT_POD,
    PP_LOCAL_STEP_SETNS,
    PP_LOCAL_STEP_SETSID,
    PP_LOCAL_STEP_FORK,
    PP_LOCAL_STEP_STDIO,
    PP_LOCAL_STEP_CHDIR,
    PP_LOCAL_STEP_EXEC,
    PP_LOCAL_STEP_PROTOCOL,
};

const char *pp__local_step_name(int step);

typedef struct pp__local_child_s pp__local_child_t;
/* Fires once, when the child has exited and its report socket is closed. To
 * keep res->fd, set it to -1; otherwise it is closed after the callback. */
typedef void (*pp__local_child_cb)(pp__local_child_result_t *res, void *data);

/* Makes two network namespaces, bind-mounted on the existing empty files
 * `vm_path` and `pod_path`, and passes back a bound NETLINK_ROUTE socket
 * opened inside the first. */
int pp__local_child_netns(pp__local_reaper_t *r, const char *vm_path, const char *pod_path,
                          pp__local_child_cb cb, void *data, pp__local_child_t **out);

typedef struct pp__local_exec_s {
    const char *path;
    char *const *argv;
    char *const *envp;
    int netns_fd; /* setns() here first, or -1 */
    int out_fd;   /* stdout and stderr */
    const char *cwd;
    int detached; /* setsid + fork: the process is reparented away from us */
} pp__local_exec_t;

/* Starts a program. Detached: the callback fires once it has exec'd (or
 * failed to), with its pid; otherwise when it has exited, with its status. */
int pp__local_child_exec(pp__local_reaper_t *r, const pp__local_exec_t *x, pp__local_child_cb cb,
                         void *data, pp__local_child_t **out);
/* Signals the direct child (before its callback has fired). */
void pp__local_child_kill(pp__local_child_t *c, int sig);

/* --- processes we did not fork directly ---------------------------------- */

/* A process identified by pid and start time, with a pidfd where the kernel
 * has them, so that a reused pid is never signalled. */
typedef struct pp__local_proc_s {
    pid_t pid;
    unsigned long long start;
    int pidfd;
} pp__local_proc_t;

/* Reads the start time of `pid`; -ESRCH when it is gone or a zombie. */
int pp__local_proc_start(pid_t pid, unsigned long long *start);
/* Fills `p` when `pid` still has start time `start`; -ESRCH otherwise. */
int pp__local_proc_open(pid_t pid, unsigned long long start, pp__local_proc_t *p);
int pp__local_proc_alive(const pp__local_proc_t *p);
void pp__local_proc_signal(const pp__local_proc_t *p, int sig);
void pp__local_proc_close(pp__local_proc_t *p);

/* Writes and reads "<pid> <start>\n" pidfiles. */
int pp__local_pidfile_write(const char *path, pid_t pid, unsigned long long start);
int pp__local_pidfile_read(const char *path, pid_t *pid, unsigned long long *start);

/* --- network ---------------------------------------------------------------- */

struct nl_sock;

/* Makes `dir` a shared mount point (bind-mounted on itself if need be), the
 * way iproute2 prepares /run/netns, so that namespace mounts propagate. */
int pp__local_netns_dir_prepare(const char *dir, pp_error_t *err);
/* mounts.c: 1 when namespaces mounted under `dir` by this process will be
 * seen from the host's mount namespace (and so outlive this process), 0
 * when not (`why` says why and what to do), -errno when it cannot tell. */
int pp__local_netns_dir_outlives(const char *dir, char *why, size_t n);
/* 1 when `path` is a mounted namespace, and its identity. */
int pp__local_netns_mounted(const char *path, dev_t *dev, ino_t *ino);
/* Unmounts (lazily) and unlinks; missing is fine. */
int pp__local_netns_remove(const char *path, pp_error_t *err);

/* --- the provider -------------------------------------------------------- */

#define PP_LOCAL_LOG "local"

typedef struct pp__local_entry_s pp__local_entry_t; /* local.c: requests per instance */

/* pp_provider_t.state. Settings are fixed after init; the rest is touched on
 * the loop thread only. */
typedef struct pp__local_state_s {
    /* Settings (pp__local_settings), as given; init checks them. */
    char subnet[32];           /* LOCAL_SUBNET */
    char state_dir[PATH_MAX];  /* LOCAL_STATE_DIR, without trailing slashes after init */
    char netns_dir[PATH_MAX];  /* LOCAL_NETNS_DIR, likewise */
    char agent_cmd[1024];      /* LOCAL_AGENT_COMMAND */
    char forwarder_cmd[1024];  /* LOCAL_FORWARDER_COMMAND */
    char pud_cmd[1024];        /* LOCAL_PROCESS_USER_DATA_COMMAND */
    char cgroup_dir[PATH_MAX]; /* LOCAL_CGROUP_DIR */
    int plaintext;             /* DISABLE_TLS: forwarders run with -disable-tls */

    pp_provider_t *p;
    pp__local_pool_t pool; /* LOCAL_SUBNET */
    pp__local_cmd_t agent, forwarder, pud;
    char **cgroup_procs; /* where pod VM processes are moved (NULL-terminated), or NULL */
    struct nl_sock *nl;  /* in the node's namespace */
    pp__local_reaper_t *reaper;
    int netns_dir_ready;
    pp__local_entry_t *entries;
} pp__local_state_t;

/* setup.c: settings, start-up, list. */
extern const pp_settings_table_t pp__local_settings;
int pp__local_init(pp_provider_t *p, pp_error_t *err);
void pp__local_fini(pp_provider_t *p);
int pp__local_list(pp_provider_t *p, pp_provider_list_cb cb, void *data);

/* local.c */
int pp__local_read_tag(const char *dir, pp__local_tag_t *tag);
void pp__local_fill_instance(pp_instance_t *inst, const pp__local_tag_t *tag);

/* --- files ------------------------------------------------------------------- */

/* snprintf() that says -ENAMETOOLONG instead of truncating. */
int pp__local_fmt(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Removes a tree without following symlinks or crossing mounts. */
int pp__local_rmtree(const char *path);

#endif
