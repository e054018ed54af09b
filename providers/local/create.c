/* A create of the local provider, step by step: a slot of LOCAL_SUBNET, the
 * VM directory and its record (tag.json, written before anything it names
 * is made), the namespaces, the veth pair, then the agent, process-user-data
 * and the forwarder, each a child watched by the reaper. A failure tears down
 * what this create made (teardown.c). */
#include "providers/local/local.h"
#include "providers/local/op.h"

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

#define PUD_TIMEOUT_MS 120000 /* process-user-data must finish by then */
#define GRACE_MS       100    /* the agent and forwarder must survive this long */

extern char **environ;

static const char *ntoa(uint32_t host_order, char *buf)
{
    struct in_addr a = {.s_addr = htonl(host_order)};
    return inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
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
    pp__local_op_finish(op);
}

/* Fails after something may have been made: tear it down, then answer. The
 * error is in op->err. */
static void create_abort(lp_op_t *op)
{
    if (op->err.code >= 0)
        op->err.code = -EIO;
    op->status = op->err.code;
    pp_error_wrap(&op->err, "create instance `%s`", op->entry->name);
    pp__local_teardown(op, create_failed);
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
    pp__local_op_finish(op);
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
    pp__local_op_arm(op, create_done, GRACE_MS);
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
    pp__local_op_arm(op, pud_timeout, PUD_TIMEOUT_MS);
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
            pp__local_op_fail_now(op);
            return;
        }
        st->netns_dir_ready = 1;
    }
    /* A VM dir without a tag is what a crash right after mkdir leaves. */
    rc = pp__local_rmtree(op->dir);
    if (rc < 0) {
        pp_error_set(&op->err, rc, "remove stale `%s`: %s", op->dir, strerror(-rc));
        pp__local_op_fail_now(op);
        return;
    }
    if (take_slot(op) < 0) {
        pp__local_op_fail_now(op);
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
        pp__local_op_fail_now(op);
        return;
    }
    op->have_tag = op->have_slot = 0;
    op->own_dir = op->own_vm_ns = op->own_pod_ns = op->own_link = 0;
    create_alloc(op);
}

void pp__local_create_begin(lp_op_t *op)
{
    pp__local_tag_t tag;
    int rc = pp__local_read_tag(op->dir, &tag);
    if (rc == 0) {
        if (strcmp(tag.sandbox_id, op->sandbox_id) != 0) {
            pp_error_set(&op->err, -EEXIST, "the instance exists for sandbox `%s`", tag.sandbox_id);
            pp__local_op_fail_now(op);
            return;
        }
        if (tag.ready && pp__local_netns_mounted(op->vm_ns, NULL, NULL)) {
            op->tag = tag;
            pp__local_fill_instance(&op->inst, &tag);
            op->status = 0;
            pp__local_op_finish(op);
            return;
        }
        /* An earlier create did not finish (the daemon stopped during it):
         * remove what it left and start afresh. */
        PP_INFO(COMP, "instance `%s`: removing what an unfinished create left", op->entry->name);
        pp__local_op_adopt_tag(op, &tag);
        pp__local_teardown(op, create_after_stale);
        return;
    }
    if (rc != -ENOENT) {
        pp_error_set(&op->err, rc, "read `%s/tag.json`: %s", op->dir, strerror(-rc));
        pp__local_op_fail_now(op);
        return;
    }
    create_alloc(op);
}
