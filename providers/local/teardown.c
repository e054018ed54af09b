/* The removal of a local pod VM, for a delete and for a failed or stale
 * create: its processes stopped (SIGTERM, then SIGKILL), looked for in its
 * namespaces on the threadpool, then its link, namespaces and directory. */
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

#include "net/net.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/log.h"

#define COMP PP_LOCAL_LOG

#define STOP_TIMEOUT_MS 5000 /* SIGTERM, then SIGKILL */
#define KILL_WAIT_MS    2000 /* after SIGKILL, before giving up waiting */
#define POLL_MS         50   /* how often a teardown looks again */

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
        pp__local_op_arm(op, teardown_tick, POLL_MS);
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
    pp__local_op_arm(op, teardown_tick, POLL_MS);
}

/* Stops the instance's processes (SIGTERM, SIGKILL after STOP_TIMEOUT_MS),
 * then removes the link, the namespaces and the VM dir: whatever op->own_*
 * says is ours. Runs `then` when done, with any failure in op->td_*. Those
 * in the pidfiles are signalled at once; the namespaces are looked through
 * for others when they are gone (or at once when there were none). */
void pp__local_teardown(lp_op_t *op, void (*then)(lp_op_t *op))
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
        pp__local_op_arm(op, teardown_tick, POLL_MS);
}
