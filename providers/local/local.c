/* The local provider's create and delete: a pod VM is a network namespace
 * on this machine (local.h has the layout, setup.c the settings).
 *
 * Every request for an instance is an operation queued on that instance's
 * entry; one runs at a time, so a delete arriving during a create waits for
 * it, and a create for the same sandbox joins the one in flight. Operations
 * are step machines driven by the loop: a timer (also for the deferred first
 * step, so no callback fires inside the call), forked children watched by
 * the reaper, and the threadpool for tree removal. What a create makes is
 * recorded in tag.json before it is made; a failed create tears down exactly
 * what it made, with the same code as delete. */
#include "providers/local/local.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/rtnetlink.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>

#include "net/net.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/log.h"

#define COMP PP_LOCAL_LOG

#define STOP_TIMEOUT_MS 5000   /* SIGTERM, then SIGKILL */
#define KILL_WAIT_MS    2000   /* after SIGKILL, before giving up waiting */
#define POLL_MS         50     /* how often a teardown looks again */
#define PUD_TIMEOUT_MS  120000 /* process-user-data must finish by then */
#define GRACE_MS        100    /* the agent and forwarder must survive this long */
#define TAG_MAX         16384
#define USER_DATA_MAX   (1024 * 1024)

extern char **environ;

typedef pp__local_state_t lp_state_t;
typedef pp__local_entry_t lp_entry_t;
typedef struct lp_op_s lp_op_t;

/* The operations on one instance, by name. */
struct pp__local_entry_s {
    lp_entry_t *next;
    char name[PP_LOCAL_NAME_MAX + 1];
    lp_op_t *head, *tail; /* head runs; the rest wait their turn */
};

typedef struct lp_waiter_s {
    struct lp_waiter_s *next;
    pp_provider_create_cb create_cb;
    pp_provider_delete_cb delete_cb;
    void *data;
} lp_waiter_t;

enum op_kind { OP_CREATE, OP_DELETE };

struct lp_op_s {
    lp_op_t *next;
    lp_state_t *st;
    lp_entry_t *entry;
    enum op_kind kind;
    int started;
    lp_waiter_t *waiters, **waiters_tail;
    uv_timer_t timer;
    void (*timer_fn)(lp_op_t *op);
    uv_work_t work;

    /* create's request, copied */
    char *sandbox_id;
    char *node;
    char *user_data;
    size_t user_data_len;

    /* what exists, for the teardown: only what is ours is removed */
    pp__local_tag_t tag;
    int have_tag, have_slot, own_dir, own_vm_ns, own_pod_ns, own_link;
    uint32_t slot;
    char dir[PATH_MAX], vm_ns[PATH_MAX], pod_ns[PATH_MAX];
    int vm_fd;
    pp__local_child_t *child;
    int timed_out;
    pp__local_proc_t agent, fwd;

    /* teardown */
    void (*after_teardown)(lp_op_t *op);
    pp__local_proc_t *targets;
    size_t ntargets, cap;
    pp__local_proc_t *found; /* the scan's, handed to the loop */
    size_t nfound;
    int scan_self; /* the daemon's pid, for the scan */
    void (*after_scan)(lp_op_t *op);
    int have_vm_id, have_pod_id, killed;
    dev_t vm_dev, pod_dev;
    ino_t vm_ino, pod_ino;
    uint64_t deadline;
    int td_status;
    pp_error_t td_err;

    /* result */
    int status;
    pp_error_t err;
    pp_instance_t inst;
};

static void teardown(lp_op_t *op, void (*then)(lp_op_t *op));
static void create_alloc(lp_op_t *op);

/* --- entries and operations ------------------------------------------------ */

static lp_entry_t *entry_get(lp_state_t *st, const char *name)
{
    for (lp_entry_t *e = st->entries; e != NULL; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    lp_entry_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    pp__local_fmt(e->name, sizeof(e->name), "%s", name);
    e->next = st->entries;
    st->entries = e;
    return e;
}

static void entry_drop(lp_state_t *st, lp_entry_t *e)
{
    for (lp_entry_t **pp = &st->entries; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            free(e);
            return;
        }
    }
}

static void on_timer(uv_timer_t *t)
{
    lp_op_t *op = container_of(t, lp_op_t, timer);
    op->timer_fn(op);
}

static void arm(lp_op_t *op, void (*fn)(lp_op_t *op), uint64_t ms)
{
    op->timer_fn = fn;
    uv_timer_start(&op->timer, on_timer, ms, 0);
}

static void op_closed(uv_handle_t *h)
{
    lp_op_t *op = container_of((uv_timer_t *)h, lp_op_t, timer);
    free(op->targets);
    free(op->found);
    free(op->sandbox_id);
    free(op->node);
    free(op->user_data);
    free(op);
}

static lp_op_t *op_new(lp_state_t *st, lp_entry_t *e, enum op_kind kind)
{
    lp_op_t *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return NULL;
    op->st = st;
    op->entry = e;
    op->kind = kind;
    op->waiters_tail = &op->waiters;
    op->vm_fd = -1;
    op->agent.pidfd = -1;
    op->fwd.pidfd = -1;
    pp__local_fmt(op->dir, sizeof(op->dir), "%s/%s", st->state_dir, e->name);
    pp__local_fmt(op->vm_ns, sizeof(op->vm_ns), "%s/%s", st->netns_dir, e->name);
    pp__local_fmt(op->pod_ns, sizeof(op->pod_ns), "%s/%s" PP_LOCAL_PODNS_SUFFIX, st->netns_dir,
                  e->name);
    uv_timer_init(st->p->loop, &op->timer);
    return op;
}

/* Frees an operation that never started. */
static void op_discard(lp_op_t *op)
{
    for (lp_waiter_t *w = op->waiters, *n; w != NULL; w = n) {
        n = w->next;
        free(w);
    }
    uv_close((uv_handle_t *)&op->timer, op_closed);
}

static int op_add_waiter(lp_op_t *op, pp_provider_create_cb ccb, pp_provider_delete_cb dcb,
                         void *data)
{
    lp_waiter_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->create_cb = ccb;
    w->delete_cb = dcb;
    w->data = data;
    *op->waiters_tail = w;
    op->waiters_tail = &w->next;
    return 0;
}

static void create_begin(lp_op_t *op);
static void delete_begin(lp_op_t *op);

static void op_start(lp_op_t *op)
{
    op->started = 1;
    /* Always through the loop, so no callback fires inside the caller. */
    arm(op, op->kind == OP_CREATE ? create_begin : delete_begin, 0);
}

static void op_enqueue(lp_op_t *op)
{
    lp_entry_t *e = op->entry;
    if (e->tail != NULL)
        e->tail->next = op;
    else
        e->head = op;
    e->tail = op;
    if (e->head == op)
        op_start(op);
}

static void op_finish(lp_op_t *op)
{
    lp_state_t *st = op->st;
    lp_entry_t *e = op->entry;
    e->head = op->next;
    if (e->head == NULL)
        e->tail = NULL;
    if (op->vm_fd >= 0)
        close(op->vm_fd);
    op->vm_fd = -1;
    pp__local_proc_close(&op->agent);
    pp__local_proc_close(&op->fwd);

    const pp_error_t *err = op->status < 0 ? &op->err : NULL;
    for (lp_waiter_t *w = op->waiters, *n; w != NULL; w = n) {
        n = w->next;
        if (w->create_cb != NULL)
            w->create_cb(op->status, op->status == 0 ? &op->inst : NULL, err, w->data);
        else
            w->delete_cb(op->status, err, w->data);
        free(w);
    }
    op->waiters = NULL;
    uv_close((uv_handle_t *)&op->timer, op_closed);

    /* A callback may have queued more work on this entry. */
    if (e->head != NULL && !e->head->started)
        op_start(e->head);
    else if (e->head == NULL)
        entry_drop(st, e);
}

/* Fails before anything was made: nothing to tear down. */
static void op_fail_now(lp_op_t *op)
{
    if (op->err.code >= 0)
        op->err.code = -EIO;
    op->status = op->err.code;
    pp_error_wrap(&op->err, "%s instance `%s`", op->kind == OP_CREATE ? "create" : "delete",
                  op->entry->name);
    op_finish(op);
}

/* --- helpers ------------------------------------------------------------------ */

static const char *ntoa(uint32_t host_order, char *buf)
{
    struct in_addr a = {.s_addr = htonl(host_order)};
    return inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

int pp__local_read_tag(const char *dir, pp__local_tag_t *tag)
{
    char path[PATH_MAX];
    pp__local_fmt(path, sizeof(path), "%s/tag.json", dir);
    cleanup_free char *buf = NULL;
    size_t len;
    int rc = pp_file_read(path, TAG_MAX, PP_FILE_NOFOLLOW, &buf, &len, NULL);
    if (rc < 0)
        return rc == -ENOTDIR ? -ENOENT : rc;
    return pp__local_tag_decode(buf, len, tag);
}

static int write_tag(const char *dir, const pp__local_tag_t *tag)
{
    char path[PATH_MAX];
    pp__local_fmt(path, sizeof(path), "%s/tag.json", dir);
    cleanup_free char *json = NULL;
    int rc = pp__local_tag_encode(tag, &json);
    if (rc < 0)
        return rc;
    return pp_file_write_atomic(path, json, strlen(json), 0600, 0, NULL);
}

void pp__local_fill_instance(pp_instance_t *inst, const pp__local_tag_t *tag)
{
    memset(inst, 0, sizeof(*inst));
    pp__local_fmt(inst->id, sizeof(inst->id), PP_LOCAL_ID_PREFIX "%s", tag->name);
    pp__local_fmt(inst->name, sizeof(inst->name), "%s", tag->name);
    pp__local_fmt(inst->ip, sizeof(inst->ip), "%s", tag->ip);
    pp__local_fmt(inst->sandbox_id, sizeof(inst->sandbox_id), "%s", tag->sandbox_id);
}

/* Takes over a record found on disk: everything it names is ours. */
static void adopt_tag(lp_op_t *op, const pp__local_tag_t *tag)
{
    lp_state_t *st = op->st;
    op->tag = *tag;
    op->have_tag = 1;
    op->own_dir = op->own_vm_ns = op->own_pod_ns = op->own_link = 1;
    struct in_addr a;
    uint32_t slot;
    if (inet_pton(AF_INET, tag->ip, &a) == 1 &&
        pp__local_pool_slot_of(&st->pool, ntohl(a.s_addr), &slot) == 0) {
        op->have_slot = 1;
        op->slot = slot;
    }
}

/* The environment of a child: ours, with KATA_AGENT_SOCKET replaced by `add`
 * when given. The strings are borrowed. */
static char **child_env(const char *add)
{
    size_t n = 0;
    for (char **e = environ; e != NULL && *e != NULL; e++)
        n++;
    char **env = calloc(n + 2, sizeof(char *));
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "KATA_AGENT_SOCKET=", 18) != 0)
            env[k++] = environ[i];
    if (add != NULL)
        env[k++] = (char *)add;
    env[k] = NULL;
    return env;
}

static int spawn(lp_op_t *op, const pp__local_cmd_t *cmd, const char *const *extra, size_t nextra,
                 const char *env_add, const char *log, int detached, pp__local_child_cb cb)
{
    lp_state_t *st = op->st;
    cleanup_free char **argv = calloc(cmd->argc + nextra + 1, sizeof(char *));
    cleanup_free char **envp = child_env(env_add);
    if (argv == NULL || envp == NULL)
        return -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < cmd->argc; i++)
        argv[k++] = cmd->argv[i];
    for (size_t i = 0; i < nextra; i++)
        argv[k++] = (char *)extra[i];
    argv[k] = NULL;

    char path[PATH_MAX];
    pp__local_fmt(path, sizeof(path), "%s/%s", op->dir, log);
    cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    pp__local_exec_t x = {
        .path = cmd->path,
        .argv = argv,
        .envp = envp,
        .netns_fd = op->vm_fd,
        .out_fd = fd,
        .cwd = op->dir,
        .detached = detached,
    };
    return pp__local_child_exec(st->reaper, &x, cb, op, &op->child);
}

/* --- create ------------------------------------------------------------------- */

static void create_failed(lp_op_t *op)
{
    if (op->td_status < 0)
        PP_WARN(COMP, "instance `%s`: cleaning up after a failed create: %s", op->entry->name,
                op->td_err.message);
    op_finish(op);
}

/* Fails after something may have been made: tear it down, then answer. The
 * error is in op->err. */
static void create_abort(lp_op_t *op)
{
    if (op->err.code >= 0)
        op->err.code = -EIO;
    op->status = op->err.code;
    pp_error_wrap(&op->err, "create instance `%s`", op->entry->name);
    teardown(op, create_failed);
}

static void create_done(lp_op_t *op)
{
    if (!pp__local_proc_alive(&op->agent)) {
        pp_error_set(&op->err, -ECHILD, "agent exited after start; see `%s/agent.log`", op->dir);
        create_abort(op);
        return;
    }
    if (!pp__local_proc_alive(&op->fwd)) {
        pp_error_set(&op->err, -ECHILD, "forwarder exited after start; see `%s/forwarder.log`",
                     op->dir);
        create_abort(op);
        return;
    }
    op->tag.ready = 1;
    int rc = write_tag(op->dir, &op->tag);
    if (rc < 0) {
        pp_error_set(&op->err, rc, "write `%s/tag.json`: %s", op->dir, strerror(-rc));
        create_abort(op);
        return;
    }
    pp__local_fill_instance(&op->inst, &op->tag);
    PP_INFO(COMP, "instance `%s` for sandbox `%s` is up at %s", op->tag.name, op->tag.sandbox_id,
            op->tag.ip);
    op->status = 0;
    op_finish(op);
}

/* Records a detached process: its pid and start time, so a delete after a
 * restart signals it and nothing that reused its pid. */
static int record_process(lp_op_t *op, pid_t pid, const char *role, pp__local_proc_t *proc)
{
    unsigned long long start;
    if (pp__local_proc_start(pid, &start) < 0 || pp__local_proc_open(pid, start, proc) < 0)
        return pp_error_set(&op->err, -ECHILD, "%s exited at once; see `%s/%s.log`", role, op->dir,
                            role);
    char path[PATH_MAX];
    pp__local_fmt(path, sizeof(path), "%s/%s.pid", op->dir, role);
    int rc = pp__local_pidfile_write(path, pid, start);
    if (rc < 0)
        return pp_error_set(&op->err, rc, "write `%s`: %s", path, strerror(-rc));
    /* Out of the adaptor's cgroup, as a cloud VM is out of its reach. */
    for (char **g = op->st->cgroup_procs; g != NULL && *g != NULL; g++) {
        char text[24];
        int n = snprintf(text, sizeof(text), "%d", (int)pid);
        cleanup_close int fd = open(*g, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, text, (size_t)n) != n)
            return pp_error_set(&op->err, -errno, "`LOCAL_CGROUP_DIR`: move the %s into `%s`: %s",
                                role, *g, strerror(errno));
    }
    return 0;
}

static int child_failed(lp_op_t *op, const pp__local_child_result_t *res, const char *what,
                        const pp__local_cmd_t *cmd)
{
    return pp_error_set(&op->err, res->status, "start %s `%s`: %s: %s", what, cmd->path,
                        pp__local_step_name(res->step), strerror(-res->status));
}

static void on_forwarder(pp__local_child_result_t *res, void *data)
{
    lp_op_t *op = data;
    op->child = NULL;
    if (res->status < 0) {
        child_failed(op, res, "forwarder", &op->st->forwarder);
        create_abort(op);
        return;
    }
    if (record_process(op, res->pid, "forwarder", &op->fwd) < 0) {
        create_abort(op);
        return;
    }
    arm(op, create_done, GRACE_MS);
}

static void start_forwarder(lp_op_t *op)
{
    char listen[INET_ADDRSTRLEN + 8], sock[PATH_MAX], config[PATH_MAX];
    pp__local_fmt(listen, sizeof(listen), "%s:%d", op->tag.ip, PP_LOCAL_FORWARDER_PORT);
    pp__local_fmt(sock, sizeof(sock), "%s/agent.sock", op->dir);
    pp__local_fmt(config, sizeof(config), "%s/root/run/peerpod/apf.json", op->dir);
    /* The forwarder serves TLS with its config's material, or plaintext
     * when told to (as a pod VM image for a node without TLS would be). */
    const char *extra[] = {"-listen",     listen, "-kata-agent-socket", sock,
                           "-config",     config, "-pod-namespace",     op->pod_ns,
                           "-disable-tls"};
    size_t nextra = PP_ARRAY_SIZE(extra) - (op->st->plaintext ? 0 : 1);
    int rc = spawn(op, &op->st->forwarder, extra, nextra, NULL, "forwarder.log", 1, on_forwarder);
    if (rc < 0) {
        pp_error_set(&op->err, rc, "start forwarder: %s", strerror(-rc));
        create_abort(op);
    }
}

static void pud_timeout(lp_op_t *op)
{
    op->timed_out = 1;
    pp__local_child_kill(op->child, SIGKILL);
}

static void on_pud(pp__local_child_result_t *res, void *data)
{
    lp_op_t *op = data;
    op->child = NULL;
    uv_timer_stop(&op->timer);
    const pp__local_cmd_t *cmd = &op->st->pud;
    if (op->timed_out) {
        pp_error_set(&op->err, -ETIMEDOUT,
                     "process-user-data did not finish in %d s; see "
                     "`%s/process-user-data.log`",
                     PUD_TIMEOUT_MS / 1000, op->dir);
    } else if (res->status < 0) {
        child_failed(op, res, "process-user-data", cmd);
    } else if (res->wstatus == -1) {
        pp_error_set(&op->err, -ECHILD,
                     "process-user-data: its exit status was lost "
                     "(something else reaped it)");
    } else if (!WIFEXITED(res->wstatus) || WEXITSTATUS(res->wstatus) != 0) {
        int sig = WIFSIGNALED(res->wstatus);
        pp_error_set(&op->err, -EIO, "process-user-data %s %d; see `%s/process-user-data.log`",
                     sig ? "was killed by signal" : "exited with status",
                     sig ? WTERMSIG(res->wstatus) : WEXITSTATUS(res->wstatus), op->dir);
    } else if (!pp__local_proc_alive(&op->agent)) {
        pp_error_set(&op->err, -ECHILD, "agent exited after start; see `%s/agent.log`", op->dir);
    } else {
        start_forwarder(op);
        return;
    }
    create_abort(op);
}

static void start_pud(lp_op_t *op)
{
    char from[PATH_MAX], root[PATH_MAX];
    pp__local_fmt(from, sizeof(from), "%s/user-data", op->dir);
    pp__local_fmt(root, sizeof(root), "%s/root", op->dir);
    const char *extra[] = {"provision-files", "--from", from, "--root", root};
    int rc = spawn(op, &op->st->pud, extra, PP_ARRAY_SIZE(extra), NULL, "process-user-data.log", 0,
                   on_pud);
    if (rc < 0) {
        pp_error_set(&op->err, rc, "start process-user-data: %s", strerror(-rc));
        create_abort(op);
        return;
    }
    arm(op, pud_timeout, PUD_TIMEOUT_MS);
}

static void on_agent(pp__local_child_result_t *res, void *data)
{
    lp_op_t *op = data;
    op->child = NULL;
    if (res->status < 0) {
        child_failed(op, res, "agent", &op->st->agent);
        create_abort(op);
        return;
    }
    if (record_process(op, res->pid, "agent", &op->agent) < 0) {
        create_abort(op);
        return;
    }
    start_pud(op);
}

static void start_agent(lp_op_t *op)
{
    char env[PATH_MAX + 32];
    pp__local_fmt(env, sizeof(env), "KATA_AGENT_SOCKET=%s/agent.sock", op->dir);
    int rc = spawn(op, &op->st->agent, NULL, 0, env, "agent.log", 1, on_agent);
    if (rc < 0) {
        pp_error_set(&op->err, rc, "start agent: %s", strerror(-rc));
        create_abort(op);
    }
}

static void on_netns(pp__local_child_result_t *res, void *data)
{
    lp_op_t *op = data;
    op->child = NULL;
    if (res->status < 0) {
        pp_error_set(&op->err, res->status, "network namespaces: %s: %s",
                     pp__local_step_name(res->step), strerror(-res->status));
        create_abort(op);
        return;
    }
    if (res->fd < 0) {
        pp_error_set(&op->err, -EPROTO, "network namespaces: no netlink socket came back");
        create_abort(op);
        return;
    }
    op->vm_fd = open(op->vm_ns, O_RDONLY | O_CLOEXEC);
    if (op->vm_fd < 0) {
        pp_error_set(&op->err, -errno, "open `%s`: %s", op->vm_ns, strerror(errno));
        create_abort(op);
        return;
    }
    pp_veth_spec_t v = {
        .name = op->tag.link,
        .peer = PP_LOCAL_VM_IFNAME,
        .peer_ns_fd = op->vm_fd,
        .peer_nl_fd = res->fd,
        .addr.len = PP_LOCAL_SLOT_PREFIX,
        .peer_addr.len = PP_LOCAL_SLOT_PREFIX,
    };
    inet_pton(AF_INET, op->tag.node_ip, &v.addr.addr);
    inet_pton(AF_INET, op->tag.ip, &v.peer_addr.addr);
    res->fd = -1; /* pp_veth_setup consumes it */
    bool created = false;
    int rc = pp_veth_setup(&v, &created, &op->err);
    op->own_link = created;
    if (rc < 0) {
        create_abort(op);
        return;
    }
    start_agent(op);
}

/* Whether `addr` (host order) is an address of this namespace: the local
 * table's entry for it, asked for alone (a FIB lookup), is RTN_LOCAL. */
typedef struct fib_answer_s {
    int type; /* -1 until an answer came */
} fib_answer_t;

static int fib_answer_cb(struct nl_msg *msg, void *arg)
{
    fib_answer_t *a = arg;
    struct nlmsghdr *h = nlmsg_hdr(msg);
    if (h->nlmsg_type == RTM_NEWROUTE && nlmsg_valid_hdr(h, sizeof(struct rtmsg)))
        a->type = ((const struct rtmsg *)nlmsg_data(h))->rtm_type;
    return NL_OK;
}

static int addr_is_local(struct nl_sock *sk, uint32_t addr, int *local)
{
    *local = 0;
    struct nl_msg *msg = nlmsg_alloc_simple(RTM_GETROUTE, 0);
    struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
    struct rtmsg rtm = {.rtm_family = AF_INET, .rtm_dst_len = 32};
    uint32_t be = htonl(addr);
    int rc = msg != NULL && cb != NULL ? 0 : -NLE_NOMEM;
    if (rc == 0)
        rc = nlmsg_append(msg, &rtm, sizeof(rtm), NLMSG_ALIGNTO);
    if (rc == 0)
        rc = nla_put(msg, RTA_DST, 4, &be);
    fib_answer_t a = {.type = -1};
    if (rc == 0) {
        nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, fib_answer_cb, &a);
        rc = nl_send_auto(sk, msg);
    }
    /* The kernel's refusal of the lookup (no route to it at all, by
     * whichever errno) means it is no address of this namespace. */
    if (rc >= 0) {
        /* The answer, then the ack that libnl asked for (an error answer
         * is the ack itself). */
        if (nl_recvmsgs(sk, cb) < 0)
            a.type = -1;
        else
            rc = nl_wait_for_ack(sk);
    }
    if (cb != NULL)
        nl_cb_put(cb);
    if (msg != NULL)
        nlmsg_free(msg);
    if (rc < 0)
        return rc;
    *local = a.type == RTN_LOCAL;
    return 0;
}

/* A slot is busy when its link name or any address of its /30 is in use in
 * the node's namespace, whoever put it there. Each is asked for alone:
 * listing the node's links and addresses, which grow with the pods (and a
 * link listing costs the kernel more for each veth), took longer at each
 * create. */
typedef struct busy_ctx_s {
    lp_state_t *st;
    int rc; /* the first netlink failure */
} busy_ctx_t;

static int slot_busy(uint32_t slot, void *arg)
{
    busy_ctx_t *c = arg;
    if (c->rc < 0)
        return 1; /* netlink failed: take nothing */
    char name[IF_NAMESIZE];
    pp__local_fmt(name, sizeof(name), PP_LOCAL_LINK_PREFIX "%" PRIu32, slot);
    struct rtnl_link *l = NULL;
    int rc = rtnl_link_get_kernel(c->st->nl, 0, name, &l);
    if (l != NULL) {
        rtnl_link_put(l);
        return 1;
    }
    if (rc < 0 && rc != -NLE_OBJ_NOTFOUND && rc != -NLE_NODEV) {
        c->rc = rc;
        return 1;
    }
    uint32_t base = pp__local_slot_node_addr(&c->st->pool, slot) - 1;
    for (uint32_t a = base; a < base + 4; a++) {
        int local;
        rc = addr_is_local(c->st->nl, a, &local);
        if (rc < 0) {
            c->rc = rc;
            return 1;
        }
        if (local)
            return 1;
    }
    return 0;
}

static int take_slot(lp_op_t *op)
{
    lp_state_t *st = op->st;
    busy_ctx_t c = {.st = st};
    int rc = pp__local_pool_take(&st->pool, slot_busy, &c, &op->slot);
    if (c.rc < 0) {
        if (rc == 0)
            pp__local_pool_release(&st->pool, op->slot);
        return pp_error_set(&op->err, pp_net_nlerr_to_errno(c.rc),
                            "look at the node's links and addresses: netlink: %s",
                            nl_geterror(c.rc));
    }
    if (rc < 0)
        return pp_error_set(&op->err, rc, "no free /%d left in `LOCAL_SUBNET`",
                            PP_LOCAL_SLOT_PREFIX);
    op->have_slot = 1;
    return 0;
}

static int make_ns_file(lp_op_t *op, const char *path, int *own)
{
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
    if (fd < 0)
        return pp_error_set(&op->err, -errno, "create `%s`: %s", path, strerror(errno));
    close(fd);
    *own = 1;
    return 0;
}

static void create_alloc(lp_op_t *op)
{
    lp_state_t *st = op->st;
    int rc;
    if (!st->netns_dir_ready) {
        if (pp__local_netns_dir_prepare(st->netns_dir, &op->err) < 0) {
            op_fail_now(op);
            return;
        }
        st->netns_dir_ready = 1;
    }
    /* A VM dir without a tag is what a crash right after mkdir leaves. */
    rc = pp__local_rmtree(op->dir);
    if (rc < 0) {
        pp_error_set(&op->err, rc, "remove stale `%s`: %s", op->dir, strerror(-rc));
        op_fail_now(op);
        return;
    }
    if (take_slot(op) < 0) {
        op_fail_now(op);
        return;
    }

    pp__local_tag_t *t = &op->tag;
    memset(t, 0, sizeof(*t));
    pp__local_fmt(t->name, sizeof(t->name), "%s", op->entry->name);
    pp__local_fmt(t->sandbox_id, sizeof(t->sandbox_id), "%s", op->sandbox_id);
    pp__local_fmt(t->node, sizeof(t->node), "%s", op->node);
    ntoa(pp__local_slot_vm_addr(&st->pool, op->slot), t->ip);
    ntoa(pp__local_slot_node_addr(&st->pool, op->slot), t->node_ip);
    pp__local_fmt(t->link, sizeof(t->link), PP_LOCAL_LINK_PREFIX "%" PRIu32, op->slot);
    op->have_tag = 1;

    char path[PATH_MAX];
    if (mkdir(op->dir, 0700) < 0) {
        pp_error_set(&op->err, -errno, "create `%s`: %s", op->dir, strerror(errno));
        create_abort(op);
        return;
    }
    op->own_dir = 1;
    /* The record comes first: whatever exists after this point can be found. */
    rc = write_tag(op->dir, t);
    if (rc < 0) {
        pp_error_set(&op->err, rc, "write `%s/tag.json`: %s", op->dir, strerror(-rc));
        create_abort(op);
        return;
    }
    pp__local_fmt(path, sizeof(path), "%s/user-data", op->dir);
    rc = pp_file_write_atomic(path, op->user_data != NULL ? op->user_data : "", op->user_data_len,
                              0600, 0, NULL);
    if (rc < 0) {
        pp_error_set(&op->err, rc, "write `%s`: %s", path, strerror(-rc));
        create_abort(op);
        return;
    }
    pp__local_fmt(path, sizeof(path), "%s/root", op->dir);
    if (mkdir(path, 0755) < 0) {
        pp_error_set(&op->err, -errno, "create `%s`: %s", path, strerror(errno));
        create_abort(op);
        return;
    }
    if (make_ns_file(op, op->vm_ns, &op->own_vm_ns) < 0 ||
        make_ns_file(op, op->pod_ns, &op->own_pod_ns) < 0) {
        create_abort(op);
        return;
    }
    rc = pp__local_child_netns(st->reaper, op->vm_ns, op->pod_ns, on_netns, op, &op->child);
    if (rc < 0) {
        pp_error_set(&op->err, rc, "fork: %s", strerror(-rc));
        create_abort(op);
    }
}

static void create_after_stale(lp_op_t *op)
{
    if (op->td_status < 0) {
        op->err = op->td_err;
        op_fail_now(op);
        return;
    }
    op->have_tag = op->have_slot = 0;
    op->own_dir = op->own_vm_ns = op->own_pod_ns = op->own_link = 0;
    create_alloc(op);
}

static void create_begin(lp_op_t *op)
{
    pp__local_tag_t tag;
    int rc = pp__local_read_tag(op->dir, &tag);
    if (rc == 0) {
        if (strcmp(tag.sandbox_id, op->sandbox_id) != 0) {
            pp_error_set(&op->err, -EEXIST, "the instance exists for sandbox `%s`", tag.sandbox_id);
            op_fail_now(op);
            return;
        }
        if (tag.ready && pp__local_netns_mounted(op->vm_ns, NULL, NULL)) {
            op->tag = tag;
            pp__local_fill_instance(&op->inst, &tag);
            op->status = 0;
            op_finish(op);
            return;
        }
        /* An earlier create did not finish (the daemon stopped during it):
         * remove what it left and start afresh. */
        PP_INFO(COMP, "instance `%s`: removing what an unfinished create left", op->entry->name);
        adopt_tag(op, &tag);
        teardown(op, create_after_stale);
        return;
    }
    if (rc != -ENOENT) {
        pp_error_set(&op->err, rc, "read `%s/tag.json`: %s", op->dir, strerror(-rc));
        op_fail_now(op);
        return;
    }
    create_alloc(op);
}

/* --- teardown ------------------------------------------------------------------- */

static int target_known(const lp_op_t *op, pid_t pid)
{
    for (size_t i = 0; i < op->ntargets; i++)
        if (op->targets[i].pid == pid)
            return 1;
    return 0;
}

/* Takes an opened process as a target, and signals it. */
static void target_take(lp_op_t *op, pp__local_proc_t *p)
{
    if (target_known(op, p->pid)) {
        pp__local_proc_close(p);
        return;
    }
    if (op->ntargets == op->cap) {
        size_t cap = op->cap ? op->cap * 2 : 8;
        pp__local_proc_t *t = realloc(op->targets, cap * sizeof(*t));
        if (t == NULL) {
            pp__local_proc_close(p); /* found again on the next look */
            return;
        }
        op->targets = t;
        op->cap = cap;
    }
    pp__local_proc_signal(p, op->killed ? SIGKILL : SIGTERM);
    op->targets[op->ntargets++] = *p;
}

static int in_namespaces(const lp_op_t *op, pid_t pid)
{
    char path[64];
    struct stat st;
    pp__local_fmt(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
    if (stat(path, &st) < 0)
        return 0;
    return (op->have_vm_id && st.st_dev == op->vm_dev && st.st_ino == op->vm_ino) ||
           (op->have_pod_id && st.st_dev == op->pod_dev && st.st_ino == op->pod_ino);
}

/* The instance's processes named in its pidfiles. */
static void collect_pidfiles(lp_op_t *op)
{
    static const char *const roles[] = {"agent", "forwarder"};
    pp__local_proc_t p;
    if (!op->own_dir)
        return;
    for (size_t i = 0; i < PP_ARRAY_SIZE(roles); i++) {
        char path[PATH_MAX];
        pid_t pid;
        unsigned long long start;
        pp__local_fmt(path, sizeof(path), "%s/%s.pid", op->dir, roles[i]);
        if (pp__local_pidfile_read(path, &pid, &start) == 0 &&
            pp__local_proc_open(pid, start, &p) == 0)
            target_take(op, &p);
    }
}

/* Anything at all inside the instance's namespaces (children the agent
 * started, say): a look at every process of the machine, which grows with
 * the pod VMs, so it runs on the threadpool, never on the loop, and into
 * op->found only (the loop owns op->targets). */
static void scan_work(uv_work_t *w)
{
    lp_op_t *op = container_of(w, lp_op_t, work);
    op->nfound = 0;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return;
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long v = strtol(de->d_name, &end, 10);
        if (*end != '\0' || v <= 1 || v > INT32_MAX || (pid_t)v == op->scan_self)
            continue;
        pid_t pid = (pid_t)v;
        unsigned long long start;
        pp__local_proc_t p;
        if (!in_namespaces(op, pid) || pp__local_proc_start(pid, &start) < 0 ||
            pp__local_proc_open(pid, start, &p) < 0)
            continue;
        /* The pid may have changed hands between the look and the open: the
         * process is ours only if it is still in there, and still alive
         * after that second look. */
        if (!in_namespaces(op, pid) || !pp__local_proc_alive(&p)) {
            pp__local_proc_close(&p);
            continue;
        }
        if (op->nfound == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            pp__local_proc_t *f = realloc(op->found, ncap * sizeof(*f));
            if (f == NULL) {
                pp__local_proc_close(&p); /* found again on the next look */
                break;
            }
            op->found = f;
            cap = ncap;
        }
        op->found[op->nfound++] = p;
    }
    closedir(d);
}

static void scan_after(uv_work_t *w, int status)
{
    lp_op_t *op = container_of(w, lp_op_t, work);
    (void)status;
    for (size_t i = 0; i < op->nfound; i++)
        target_take(op, &op->found[i]);
    op->nfound = 0;
    op->after_scan(op);
}

/* Looks for processes in the namespaces, then runs `then` on the loop. */
static void scan(lp_op_t *op, void (*then)(lp_op_t *op))
{
    op->after_scan = then;
    op->nfound = 0;
    op->scan_self = getpid();
    if ((!op->have_vm_id && !op->have_pod_id) ||
        uv_queue_work(op->st->p->loop, &op->work, scan_work, scan_after) < 0) {
        if (op->have_vm_id || op->have_pod_id)
            scan_work(&op->work);
        scan_after(&op->work, 0);
    }
}

static void td_fail(lp_op_t *op, const pp_error_t *e)
{
    if (op->td_status == 0) {
        op->td_status = e->code < 0 ? e->code : -EIO;
        op->td_err = *e;
    }
}

static void fs_work(uv_work_t *w)
{
    lp_op_t *op = container_of(w, lp_op_t, work);
    pp_error_t e = {0};
    if (op->own_vm_ns && pp__local_netns_remove(op->vm_ns, &e) < 0)
        td_fail(op, &e);
    if (op->own_pod_ns && pp__local_netns_remove(op->pod_ns, &e) < 0)
        td_fail(op, &e);
    if (op->own_dir) {
        int rc = pp__local_rmtree(op->dir);
        if (rc < 0) {
            pp_error_set(&e, rc, "remove `%s`: %s", op->dir, strerror(-rc));
            td_fail(op, &e);
        }
    }
}

static void fs_after(uv_work_t *w, int status)
{
    lp_op_t *op = container_of(w, lp_op_t, work);
    (void)status;
    /* A slot whose parts could not all be removed stays taken. */
    if (op->have_slot && op->td_status == 0)
        pp__local_pool_release(&op->st->pool, op->slot);
    op->have_slot = 0;
    op->after_teardown(op);
}

static void teardown_rest(lp_op_t *op)
{
    for (size_t i = 0; i < op->ntargets; i++)
        pp__local_proc_close(&op->targets[i]);
    op->ntargets = 0;
    if (op->own_link && op->have_tag) {
        pp_error_t e = {0};
        if (pp_link_delete(op->tag.link, &e) < 0)
            td_fail(op, &e);
    }
    /* Unmounting and removing a tree are file system work: the threadpool's. */
    if (uv_queue_work(op->st->p->loop, &op->work, fs_work, fs_after) < 0) {
        fs_work(&op->work);
        fs_after(&op->work, 0);
    }
}

static void teardown_tick(lp_op_t *op);

/* After a look: what it found is signalled; nothing means done. */
static void after_look(lp_op_t *op)
{
    if (op->ntargets == 0)
        teardown_rest(op);
    else
        arm(op, teardown_tick, POLL_MS);
}

static void teardown_tick(lp_op_t *op)
{
    size_t k = 0;
    for (size_t i = 0; i < op->ntargets; i++) {
        if (pp__local_proc_alive(&op->targets[i])) {
            op->targets[k++] = op->targets[i];
            continue;
        }
        /* Where the daemon is pid 1 or a subreaper, the exited process was
         * reparented to it and is its to reap. Not reaped yet, its pid is
         * still its own; for anyone else's child this is ECHILD. */
        waitpid(op->targets[i].pid, NULL, WNOHANG);
        pp__local_proc_close(&op->targets[i]);
    }
    op->ntargets = k;
    if (k == 0) {
        /* Look again: a dying process may have started another. */
        scan(op, after_look);
        return;
    }
    uint64_t now = uv_now(op->st->p->loop);
    if (now >= op->deadline) {
        if (op->killed) {
            PP_WARN(COMP, "instance `%s`: %zu process(es) survive SIGKILL; removing the rest",
                    op->entry->name, op->ntargets);
            teardown_rest(op);
            return;
        }
        PP_WARN(COMP, "instance `%s`: %zu process(es) ignored SIGTERM for %d ms; killing",
                op->entry->name, op->ntargets, STOP_TIMEOUT_MS);
        op->killed = 1;
        op->deadline = now + KILL_WAIT_MS;
        for (size_t i = 0; i < op->ntargets; i++)
            pp__local_proc_signal(&op->targets[i], SIGKILL);
    }
    arm(op, teardown_tick, POLL_MS);
}

/* Stops the instance's processes (SIGTERM, SIGKILL after STOP_TIMEOUT_MS),
 * then removes the link, the namespaces and the VM dir: whatever op->own_*
 * says is ours. Runs `then` when done, with any failure in op->td_*. Those
 * in the pidfiles are signalled at once; the namespaces are looked through
 * for others when they are gone (or at once when there were none). */
static void teardown(lp_op_t *op, void (*then)(lp_op_t *op))
{
    op->after_teardown = then;
    op->td_status = 0;
    op->killed = 0;
    if (op->vm_fd >= 0)
        close(op->vm_fd);
    op->vm_fd = -1;
    pp__local_proc_close(&op->agent);
    pp__local_proc_close(&op->fwd);
    op->have_vm_id = op->own_vm_ns && pp__local_netns_mounted(op->vm_ns, &op->vm_dev, &op->vm_ino);
    op->have_pod_id =
        op->own_pod_ns && pp__local_netns_mounted(op->pod_ns, &op->pod_dev, &op->pod_ino);
    op->deadline = uv_now(op->st->p->loop) + STOP_TIMEOUT_MS;
    collect_pidfiles(op);
    if (op->ntargets == 0)
        scan(op, after_look);
    else
        arm(op, teardown_tick, POLL_MS);
}

/* --- delete --------------------------------------------------------------------- */

static void delete_done(lp_op_t *op)
{
    op->status = op->td_status;
    if (op->td_status < 0) {
        op->err = op->td_err;
        pp_error_wrap(&op->err, "delete instance `%s`", op->entry->name);
    } else {
        PP_INFO(COMP, "instance `%s` deleted", op->entry->name);
    }
    op_finish(op);
}

static void delete_begin(lp_op_t *op)
{
    pp__local_tag_t tag;
    int rc = pp__local_read_tag(op->dir, &tag);
    if (rc == 0) {
        adopt_tag(op, &tag);
    } else {
        struct stat st;
        if (lstat(op->dir, &st) < 0) {
            op->status = 0; /* nothing of it exists */
            op_finish(op);
            return;
        }
        /* A VM dir with no (or a broken) tag: what is named after the
         * instance is ours; an unknown link dies with the VM namespace. */
        op->own_dir = 1;
        op->own_vm_ns = op->own_pod_ns = rc != -ENOENT;
    }
    teardown(op, delete_done);
}

/* --- ops ------------------------------------------------------------------------ */

static int local_create(pp_provider_t *p, const pp_instance_spec_t *spec, pp_provider_create_cb cb,
                        void *data)
{
    lp_state_t *st = p->state;
    if (spec == NULL || cb == NULL || !pp__local_name_valid(spec->instance_name) ||
        spec->sandbox_id == NULL || spec->sandbox_id[0] == '\0' ||
        strlen(spec->sandbox_id) >= sizeof(((pp__local_tag_t *)0)->sandbox_id))
        return -EINVAL;
    if (spec->user_data_len > USER_DATA_MAX)
        return -EMSGSIZE;
    const char *node = spec->node_name != NULL ? spec->node_name : p->node_name;
    if (node != NULL && strlen(node) >= sizeof(((pp__local_tag_t *)0)->node))
        return -EINVAL;

    lp_entry_t *e = entry_get(st, spec->instance_name);
    if (e == NULL)
        return -ENOMEM;
    lp_op_t *last = e->tail;
    if (last != NULL && last->kind == OP_CREATE && strcmp(last->sandbox_id, spec->sandbox_id) == 0)
        return op_add_waiter(last, cb, NULL, data);

    lp_op_t *op = op_new(st, e, OP_CREATE);
    if (op == NULL) {
        if (e->head == NULL)
            entry_drop(st, e);
        return -ENOMEM;
    }
    op->sandbox_id = strdup(spec->sandbox_id);
    op->node = strdup(node != NULL ? node : "");
    if (spec->user_data != NULL && spec->user_data_len > 0) {
        op->user_data = malloc(spec->user_data_len);
        if (op->user_data != NULL)
            memcpy(op->user_data, spec->user_data, spec->user_data_len);
        op->user_data_len = spec->user_data_len;
    }
    if (op->sandbox_id == NULL || op->node == NULL ||
        (op->user_data_len > 0 && op->user_data == NULL) || op_add_waiter(op, cb, NULL, data) < 0) {
        op_discard(op);
        if (e->head == NULL)
            entry_drop(st, e);
        return -ENOMEM;
    }
    op_enqueue(op);
    return 0;
}

/* Answers a delete of an id that cannot be ours, through the loop. */
typedef struct lp_noop_s {
    uv_timer_t timer;
    pp_provider_delete_cb cb;
    void *data;
} lp_noop_t;

static void noop_closed(uv_handle_t *h)
{
    free(container_of((uv_timer_t *)h, lp_noop_t, timer));
}

static void noop_fire(uv_timer_t *t)
{
    lp_noop_t *n = container_of(t, lp_noop_t, timer);
    n->cb(0, NULL, n->data);
    uv_close((uv_handle_t *)t, noop_closed);
}

static int local_delete(pp_provider_t *p, const char *id, pp_provider_delete_cb cb, void *data)
{
    lp_state_t *st = p->state;
    if (id == NULL || cb == NULL)
        return -EINVAL;
    size_t plen = strlen(PP_LOCAL_ID_PREFIX);
    const char *name = id + plen;
    if (strncmp(id, PP_LOCAL_ID_PREFIX, plen) != 0 || !pp__local_name_valid(name)) {
        lp_noop_t *n = calloc(1, sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        n->cb = cb;
        n->data = data;
        uv_timer_init(p->loop, &n->timer);
        uv_timer_start(&n->timer, noop_fire, 0, 0);
        return 0;
    }
    lp_entry_t *e = entry_get(st, name);
    if (e == NULL)
        return -ENOMEM;
    if (e->tail != NULL && e->tail->kind == OP_DELETE)
        return op_add_waiter(e->tail, NULL, cb, data);
    lp_op_t *op = op_new(st, e, OP_DELETE);
    if (op == NULL || op_add_waiter(op, NULL, cb, data) < 0) {
        if (op != NULL)
            op_discard(op);
        if (e->head == NULL)
            entry_drop(st, e);
        return -ENOMEM;
    }
    op_enqueue(op);
    return 0;
}

const struct pp_provider_ops pp_provider_local_ops = {
    .name = "local",
    .state_size = sizeof(lp_state_t),
    .user_data_max = USER_DATA_MAX,
    .settings = &pp__local_settings,
    .init = pp__local_init,
    .create_instance = local_create,
    .delete_instance = local_delete,
    .list_instances = pp__local_list,
    .fini = pp__local_fini,
};
