/* The local provider's settings, start-up and list.
 *
 * Settings (the table below), from the environment:
 *   LOCAL_SUBNET          network cut into one /30 per pod VM (198.18.0.0/16)
 *   LOCAL_STATE_DIR       VM dirs (/run/peerpod/local)
 *   LOCAL_NETNS_DIR       namespace mounts (/run/netns)
 *   LOCAL_AGENT_COMMAND, LOCAL_FORWARDER_COMMAND, LOCAL_PROCESS_USER_DATA_COMMAND
 *                         command lines, split on blanks; by default
 *                         pp-test-agent, agent-protocol-forwarder and
 *                         process-user-data next to this program
 *   LOCAL_CGROUP_DIR      the node's cgroup file system, as mounted here:
 *                         a pod VM's processes are moved into its group
 *                         `peerpod-local` (in each hierarchy), out of the
 *                         adaptor's own, so that like a cloud VM they
 *                         outlive the adaptor's container; empty: they stay */
#include "providers/local/local.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/socket.h>

#include "net/net.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/log.h"

#define COMP PP_LOCAL_LOG

#define DEFAULT_SUBNET    "198.18.0.0/16"
#define DEFAULT_STATE_DIR "/run/peerpod/local"
#define DEFAULT_NETNS_DIR "/run/netns"

typedef pp__local_state_t lp_state_t;

typedef struct lp_list_s {
    uv_work_t work;
    lp_state_t *st;
    pp_provider_list_cb cb;
    void *data;
    pp_instance_t *insts;
    size_t n, cap;
    int status;
    pp_error_t err;
} lp_list_t;

static void list_work(uv_work_t *w)
{
    lp_list_t *l = container_of(w, lp_list_t, work);
    lp_state_t *st = l->st;
    const char *node = st->p->node_name;
    DIR *d = opendir(st->state_dir);
    if (d == NULL) {
        if (errno != ENOENT)
            l->status =
                pp_error_set(&l->err, -errno, "list `%s`: %s", st->state_dir, strerror(errno));
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!pp__local_name_valid(de->d_name))
            continue;
        char dir[PATH_MAX], ns[PATH_MAX];
        pp__local_fmt(dir, sizeof(dir), "%s/%s", st->state_dir, de->d_name);
        pp__local_fmt(ns, sizeof(ns), "%s/%s", st->netns_dir, de->d_name);
        pp__local_tag_t tag;
        if (pp__local_read_tag(dir, &tag) < 0 || strcmp(tag.name, de->d_name) != 0)
            continue;
        /* Instances of another node (a shared state dir) are not ours to list. */
        if (node != NULL && node[0] != '\0' && strcmp(tag.node, node) != 0)
            continue;
        if (!pp__local_netns_mounted(ns, NULL, NULL))
            continue;
        if (l->n == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 16;
            pp_instance_t *v = realloc(l->insts, cap * sizeof(*v));
            if (v == NULL) {
                l->status = pp_error_set(&l->err, -ENOMEM, "list instances: out of memory");
                break;
            }
            l->insts = v;
            l->cap = cap;
        }
        pp__local_fill_instance(&l->insts[l->n++], &tag);
    }
    closedir(d);
}

static void list_after(uv_work_t *w, int status)
{
    lp_list_t *l = container_of(w, lp_list_t, work);
    (void)status;
    if (l->status < 0)
        l->cb(l->status, NULL, 0, &l->err, l->data);
    else
        l->cb(0, l->insts, l->n, NULL, l->data);
    free(l->insts);
    free(l);
}

int pp__local_list(pp_provider_t *p, pp_provider_list_cb cb, void *data)
{
    if (cb == NULL)
        return -EINVAL;
    lp_list_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    l->st = p->state;
    l->cb = cb;
    l->data = data;
    int rc = uv_queue_work(p->loop, &l->work, list_work, list_after);
    if (rc < 0)
        free(l);
    return rc;
}

/* --- settings, start-up ----------------------------------------------------------- */

#define LP_SETTING(fld, env, def, help) PP_SETTING_STR(lp_state_t, fld, env, NULL, def, help)

static const pp_setting_t local_items[] = {
    LP_SETTING(subnet, "LOCAL_SUBNET", DEFAULT_SUBNET,
               "IPv4 network cut into one /30 per pod VM (from /8 to /30)"),
    LP_SETTING(state_dir, "LOCAL_STATE_DIR", DEFAULT_STATE_DIR,
               "where each pod VM's directory is kept (absolute)"),
    LP_SETTING(netns_dir, "LOCAL_NETNS_DIR", DEFAULT_NETNS_DIR,
               "where the pod VMs' network namespaces are mounted (absolute)"),
    LP_SETTING(agent_cmd, "LOCAL_AGENT_COMMAND", NULL,
               "the kata agent's command line (default: pp-test-agent next to this program)"),
    LP_SETTING(forwarder_cmd, "LOCAL_FORWARDER_COMMAND", NULL,
               "the forwarder's command line (default: agent-protocol-forwarder next to this "
               "program)"),
    LP_SETTING(pud_cmd, "LOCAL_PROCESS_USER_DATA_COMMAND", NULL,
               "process-user-data's command line (default: process-user-data next to this "
               "program)"),
    /* The adaptor's own variable: a node whose adaptor speaks plaintext to
     * its pod VMs has pod VMs whose forwarders were told to (a forwarder
     * without TLS material refuses to serve otherwise). No flag: the
     * adaptor's -disable-tls is the adaptor's. */
    PP_SETTING_BOOL_OF(lp_state_t, plaintext, "DISABLE_TLS", NULL, NULL,
                       "the pod VMs' forwarders serve plaintext (-disable-tls), as the adaptor "
                       "does with DISABLE_TLS"),
    LP_SETTING(cgroup_dir, "LOCAL_CGROUP_DIR", NULL,
               "the node's cgroup file system as mounted here: pod VMs' processes move into its "
               "`peerpod-local` group, so that they outlive the adaptor's container"),
};

const pp_settings_table_t pp__local_settings = {"local provider", local_items,
                                                PP_ARRAY_SIZE(local_items)};

/* An absolute directory, trailing slashes dropped, with `room` bytes left
 * below `cap` for the paths made under it. */
static int check_dir(const char *name, char *dir, size_t cap, size_t room, pp_error_t *err)
{
    size_t n = strlen(dir);
    if (dir[0] != '/')
        return pp_error_set(err, -EINVAL, "`%s`: expected an absolute path, got `%s`", name, dir);
    if (n + room >= cap)
        return pp_error_set(err, -ENAMETOOLONG,
                            "`%s`: `%s` is too long: paths under it must stay below %zu bytes",
                            name, dir, cap);
    while (n > 1 && dir[n - 1] == '/')
        dir[--n] = '\0';
    return 0;
}

static int setting_cmd(const char *name, const char *exe_dir, const char *line, const char *def,
                       pp__local_cmd_t *cmd, pp_error_t *err)
{
    cleanup_free char *fallback = NULL;
    if (line[0] == '\0') {
        if (asprintf(&fallback, "%s/%s", exe_dir, def) < 0)
            return pp_error_set(err, -ENOMEM, "out of memory");
        line = fallback;
    }
    int rc = pp__local_split(line, &cmd->argv, &cmd->argc);
    if (rc == -EINVAL)
        return pp_error_set(err, rc, "`%s`: expected a command line, got `%s`", name, line);
    if (rc < 0)
        return pp_error_set(err, rc, "out of memory");
    rc = pp__local_resolve(cmd->argv[0], getenv("PATH"), &cmd->path);
    if (rc < 0)
        return pp_error_set(err, rc,
                            "`%s`: `%s` is not an executable file (%s); without `%s` it is `%s` "
                            "next to this program",
                            name, cmd->argv[0], strerror(-rc), name, def);
    return 0;
}

#define VM_CGROUP "peerpod-local"

static int cgroup_add(lp_state_t *st, size_t *n, const char *hierarchy, pp_error_t *err)
{
    char dir[PATH_MAX], procs[PATH_MAX];
    pp__local_fmt(dir, sizeof(dir), "%s/" VM_CGROUP, hierarchy);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return pp_error_set(err, -errno, "`LOCAL_CGROUP_DIR`: make `%s`: %s", dir, strerror(errno));
    /* A new v1 cpuset group has no CPUs and no memory nodes, and takes no
     * process until it has its parent's. */
    static const char *const inherit[] = {"cpuset.cpus", "cpuset.mems"};
    for (size_t i = 0; i < PP_ARRAY_SIZE(inherit); i++) {
        char from[PATH_MAX], to[PATH_MAX], value[4096];
        pp__local_fmt(from, sizeof(from), "%s/%s", hierarchy, inherit[i]);
        pp__local_fmt(to, sizeof(to), "%s/%s", dir, inherit[i]);
        cleanup_close int in = open(from, O_RDONLY | O_CLOEXEC);
        if (in < 0)
            continue;
        ssize_t n = read(in, value, sizeof(value));
        cleanup_close int out = open(to, O_WRONLY | O_CLOEXEC);
        if (n <= 0 || out < 0 || write(out, value, (size_t)n) != n)
            return pp_error_set(err, -EIO, "`LOCAL_CGROUP_DIR`: set `%s` from `%s`", to, from);
    }
    pp__local_fmt(procs, sizeof(procs), "%s/cgroup.procs", dir);
    char **more = realloc(st->cgroup_procs, (*n + 2) * sizeof(char *));
    if (more == NULL || (more[*n] = strdup(procs)) == NULL) {
        if (more != NULL)
            st->cgroup_procs = more;
        return pp_error_set(err, -ENOMEM, "out of memory");
    }
    st->cgroup_procs = more;
    more[++*n] = NULL;
    return 0;
}

/* The `peerpod-local` group in each hierarchy of the node's cgroup file
 * system: the unified one (cgroup v2), or each controller's (v1). */
static int cgroup_setup(lp_state_t *st, pp_error_t *err)
{
    int rc = check_dir("LOCAL_CGROUP_DIR", st->cgroup_dir, sizeof(st->cgroup_dir), 64, err);
    if (rc < 0)
        return rc;
    char probe[PATH_MAX];
    size_t n = 0;
    pp__local_fmt(probe, sizeof(probe), "%s/cgroup.controllers", st->cgroup_dir);
    if (access(probe, F_OK) == 0)
        return cgroup_add(st, &n, st->cgroup_dir, err);
    DIR *d = opendir(st->cgroup_dir);
    if (d == NULL)
        return pp_error_set(err, -errno, "`LOCAL_CGROUP_DIR`: `%s`: %s", st->cgroup_dir,
                            strerror(errno));
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        /* Controllers mounted together appear once as a directory and
         * again as links to it. */
        if (e->d_name[0] == '.' || e->d_type != DT_DIR)
            continue;
        char hierarchy[PATH_MAX];
        pp__local_fmt(hierarchy, sizeof(hierarchy), "%s/%s", st->cgroup_dir, e->d_name);
        pp__local_fmt(probe, sizeof(probe), "%s/cgroup.procs", hierarchy);
        if (access(probe, W_OK) == 0)
            rc = cgroup_add(st, &n, hierarchy, err);
    }
    closedir(d);
    if (rc == 0 && n == 0)
        rc = pp_error_set(err, -ENOENT, "`LOCAL_CGROUP_DIR`: no cgroup hierarchy in `%s`",
                          st->cgroup_dir);
    return rc;
}

static int settings(lp_state_t *st, pp_error_t *err)
{
    if (pp__local_pool_init(&st->pool, st->subnet) < 0)
        return pp_error_set(err, -EINVAL,
                            "`LOCAL_SUBNET`: expected an IPv4 network from /8 to /%d with no "
                            "host bits set, like %s, got `%s`",
                            PP_LOCAL_SLOT_PREFIX, DEFAULT_SUBNET, st->subnet);
    /* Room for "/<name>/agent.sock", which must fit a unix socket address. */
    struct sockaddr_un sun;
    size_t room = 1 + PP_LOCAL_NAME_MAX + strlen("/agent.sock");
    int rc = check_dir("LOCAL_STATE_DIR", st->state_dir, sizeof(sun.sun_path), room, err);
    if (rc == 0)
        rc = check_dir("LOCAL_NETNS_DIR", st->netns_dir, sizeof(st->netns_dir),
                       1 + PP_LOCAL_NAME_MAX + 16, err);
    if (rc < 0)
        return rc;

    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return pp_error_set(err, -errno, "find this program's directory: %s", strerror(errno));
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash != NULL)
        *slash = '\0';

    rc = setting_cmd("LOCAL_AGENT_COMMAND", exe, st->agent_cmd, "pp-test-agent", &st->agent, err);
    if (rc == 0)
        rc = setting_cmd("LOCAL_FORWARDER_COMMAND", exe, st->forwarder_cmd,
                         "agent-protocol-forwarder", &st->forwarder, err);
    if (rc == 0)
        rc = setting_cmd("LOCAL_PROCESS_USER_DATA_COMMAND", exe, st->pud_cmd, "process-user-data",
                         &st->pud, err);
    if (rc == 0 && st->cgroup_dir[0] != '\0')
        rc = cgroup_setup(st, err);
    return rc;
}

/* Removes, at start-up, an instance whose VM namespace is gone (a reboot, or
 * someone else's cleanup): nothing of it can work again. Everything here is
 * quick, so it is done in place; processes get SIGKILL without a wait. */
static void remove_dead(lp_state_t *st, const pp__local_tag_t *tag, const char *dir,
                        const char *pod_ns)
{
    static const char *const roles[] = {"agent", "forwarder"};
    for (size_t i = 0; i < PP_ARRAY_SIZE(roles); i++) {
        char path[PATH_MAX];
        pid_t pid;
        unsigned long long start;
        pp__local_proc_t p;
        pp__local_fmt(path, sizeof(path), "%s/%s.pid", dir, roles[i]);
        if (pp__local_pidfile_read(path, &pid, &start) == 0 &&
            pp__local_proc_open(pid, start, &p) == 0) {
            pp__local_proc_signal(&p, SIGKILL);
            pp__local_proc_close(&p);
        }
    }
    pp_error_t e = {0};
    char vm_ns[PATH_MAX];
    pp__local_fmt(vm_ns, sizeof(vm_ns), "%s/%s", st->netns_dir, tag->name);
    if (pp_link_delete(tag->link, &e) < 0 || pp__local_netns_remove(vm_ns, &e) < 0 ||
        pp__local_netns_remove(pod_ns, &e) < 0) {
        PP_WARN(COMP, "instance `%s`: %s", tag->name, e.message);
        return;
    }
    int rc = pp__local_rmtree(dir);
    if (rc < 0)
        PP_WARN(COMP, "instance `%s`: remove `%s`: %s", tag->name, dir, strerror(-rc));
    else
        PP_INFO(COMP, "instance `%s`: removed; its namespace was gone", tag->name);
}

/* Takes the addresses of the instances that exist, so none is handed out
 * twice across a restart. */
static void scan(lp_state_t *st)
{
    DIR *d = opendir(st->state_dir);
    if (d == NULL)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!pp__local_name_valid(de->d_name))
            continue;
        char dir[PATH_MAX], vm_ns[PATH_MAX], pod_ns[PATH_MAX];
        pp__local_fmt(dir, sizeof(dir), "%s/%s", st->state_dir, de->d_name);
        pp__local_fmt(vm_ns, sizeof(vm_ns), "%s/%s", st->netns_dir, de->d_name);
        pp__local_fmt(pod_ns, sizeof(pod_ns), "%s/%s" PP_LOCAL_PODNS_SUFFIX, st->netns_dir,
                      de->d_name);
        pp__local_tag_t tag;
        if (pp__local_read_tag(dir, &tag) < 0 || strcmp(tag.name, de->d_name) != 0)
            continue; /* create and delete deal with these */
        if (!pp__local_netns_mounted(vm_ns, NULL, NULL)) {
            remove_dead(st, &tag, dir, pod_ns);
            continue;
        }
        struct in_addr a;
        uint32_t slot;
        if (inet_pton(AF_INET, tag.ip, &a) == 1 &&
            pp__local_pool_slot_of(&st->pool, ntohl(a.s_addr), &slot) == 0 &&
            pp__local_pool_mark(&st->pool, slot) < 0)
            PP_WARN(COMP, "instance `%s`: address %s is used twice", tag.name, tag.ip);
    }
    closedir(d);
}

static void release(lp_state_t *st)
{
    if (st->nl != NULL)
        nl_socket_free(st->nl);
    st->nl = NULL;
    pp__local_reaper_free(st->reaper);
    st->reaper = NULL;
    pp__local_cmd_free(&st->agent);
    pp__local_cmd_free(&st->forwarder);
    pp__local_cmd_free(&st->pud);
    pp__local_pool_free(&st->pool);
    for (size_t i = 0; st->cgroup_procs != NULL && st->cgroup_procs[i] != NULL; i++)
        free(st->cgroup_procs[i]);
    free(st->cgroup_procs);
    st->cgroup_procs = NULL;
}

int pp__local_init(pp_provider_t *p, pp_error_t *err)
{
    lp_state_t *st = p->state;
    st->p = p;
    int rc = settings(st, err);
    if (rc < 0)
        goto fail;
    rc = pp__local_reaper_new(p->loop, &st->reaper);
    if (rc < 0) {
        pp_error_set(err, rc, "watch child processes: %s", uv_strerror(rc));
        goto fail;
    }
    st->nl = nl_socket_alloc();
    if (st->nl == NULL) {
        rc = pp_error_set(err, -ENOMEM, "netlink socket: out of memory");
        goto fail;
    }
    rc = nl_connect(st->nl, NETLINK_ROUTE);
    if (rc < 0) {
        rc = pp_error_set(err, pp_net_nlerr_to_errno(rc), "netlink: %s", nl_geterror(rc));
        goto fail;
    }
    rc = pp_mkdir_p(st->state_dir, 0700, NULL);
    if (rc < 0) {
        pp_error_set(err, rc, "`LOCAL_STATE_DIR`: create `%s`: %s", st->state_dir, strerror(-rc));
        goto fail;
    }
    char why[1024];
    if (pp__local_netns_dir_outlives(st->netns_dir, why, sizeof(why)) == 0)
        PP_WARN(COMP, "`LOCAL_NETNS_DIR`: %s", why);
    scan(st);
    return 0;

fail:
    release(st);
    return rc;
}

void pp__local_fini(pp_provider_t *p)
{
    lp_state_t *st = p->state;
    if (st->entries != NULL)
        PP_ERR(COMP, "provider released with operations in flight");
    release(st);
}
