/* Children of the local provider.
 *
 * Namespace work and exec happen in forked children, never on the loop
 * thread. A child reports over a SOCK_SEQPACKET pair (a message per step that
 * failed, a pid, or a descriptor) and is reaped on SIGCHLD with
 * waitpid(pid, WNOHANG) for its own pid only, so that uv_spawn's children are
 * left to libuv. Its callback fires when it has exited and every copy of the
 * report socket is closed: a detached grandchild holds one until it has
 * exec'd, which is how exec failures are seen.
 *
 * Between fork and exec the daemon has other threads (the uv threadpool), so
 * the child calls only async-signal-safe functions: everything it needs is
 * prepared by the parent first. */
#include "providers/local/local.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/netlink.h>

#include "util/cleanup.h"
#include "util/file.h"

struct pp__local_reaper_s {
    uv_signal_t *sig; /* heap: it outlives the reaper until its close callback */
    pp__local_child_t *children;
};

struct pp__local_child_s {
    pp__local_child_t *next;
    pp__local_reaper_t *reaper;
    uv_poll_t poll;
    pid_t pid_direct;
    int sock; /* our end of the report pair */
    int eof, reaped, done;
    pp__local_child_result_t res;
    pp__local_child_cb cb;
    void *data;
};

/* What a child sends. */
enum { MSG_FAIL = 1, MSG_PID = 2, MSG_FD = 3 };

struct msg {
    int32_t kind;
    int32_t step;
    int32_t err;
    int32_t pid;
};

static const char *const step_names[] = {
    [PP_LOCAL_STEP_NONE] = "none",
    [PP_LOCAL_STEP_UNSHARE] = "unshare network namespace",
    [PP_LOCAL_STEP_MOUNT_VM] = "bind-mount the VM namespace",
    [PP_LOCAL_STEP_NETLINK] = "open netlink in the VM namespace",
    [PP_LOCAL_STEP_MOUNT_POD] = "bind-mount the pod namespace",
    [PP_LOCAL_STEP_SETNS] = "enter the VM namespace",
    [PP_LOCAL_STEP_SETSID] = "setsid",
    [PP_LOCAL_STEP_FORK] = "fork",
    [PP_LOCAL_STEP_STDIO] = "redirect output",
    [PP_LOCAL_STEP_CHDIR] = "chdir",
    [PP_LOCAL_STEP_EXEC] = "exec",
    [PP_LOCAL_STEP_PROTOCOL] = "report",
};

const char *pp__local_step_name(int step)
{
    if (step < 0 || (size_t)step >= PP_ARRAY_SIZE(step_names) || step_names[step] == NULL)
        return "unknown step";
    return step_names[step];
}

/* --- in the child: async-signal-safe only -------------------------------- */

static void child_send(int sock, int kind, int step, int err, int pid, int fd)
{
    struct msg m = {.kind = kind, .step = step, .err = err, .pid = pid};
    struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&u, 0, sizeof(u));
        mh.msg_control = u.buf;
        mh.msg_controllen = sizeof(u.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    while (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

static __attribute__((noreturn)) void child_fail(int sock, int step)
{
    child_send(sock, MSG_FAIL, step, errno, 0, -1);
    _exit(127);
}

/* The daemon's handlers and mask must not leak into programs we start: a
 * handled signal resets on exec, but an ignored one (SIGPIPE) and the mask
 * would stay. */
static void child_reset_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        sigaction(s, &sa, NULL); /* fails harmlessly for SIGKILL, SIGSTOP, RT gaps */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void close_from(unsigned lo, unsigned hi)
{
    if (lo > hi)
        return;
#ifdef SYS_close_range
    if (syscall(SYS_close_range, lo, hi, 0) == 0)
        return;
#endif
    struct rlimit rl;
    unsigned max = 1024;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 65536)
        max = (unsigned)rl.rlim_cur;
    for (unsigned fd = lo; fd <= hi && fd < max; fd++)
        close((int)fd);
}

static __attribute__((noreturn)) void child_netns(int sock, const char *vm_path,
                                                  const char *pod_path)
{
    child_reset_signals();
    if (unshare(CLONE_NEWNET) < 0)
        child_fail(sock, PP_LOCAL_STEP_UNSHARE);
    if (mount("/proc/self/ns/net", vm_path, "none", MS_BIND, NULL) < 0)
        child_fail(sock, PP_LOCAL_STEP_MOUNT_VM);
    /* A netlink socket stays bound to the namespace it was opened in, so
     * this one configures the VM side from the parent later. */
    int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (nl < 0)
        child_fail(sock, PP_LOCAL_STEP_NETLINK);
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    if (bind(nl, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        child_fail(sock, PP_LOCAL_STEP_NETLINK);
    if (unshare(CLONE_NEWNET) < 0)
        child_fail(sock, PP_LOCAL_STEP_UNSHARE);
    if (mount("/proc/self/ns/net", pod_path, "none", MS_BIND, NULL) < 0)
        child_fail(sock, PP_LOCAL_STEP_MOUNT_POD);
    child_send(sock, MSG_FD, 0, 0, 0, nl);
    _exit(0);
}

static __attribute__((noreturn)) void child_exec(int sock, const pp__local_exec_t *x, int in_fd)
{
    child_reset_signals();
    if (x->netns_fd >= 0 && setns(x->netns_fd, CLONE_NEWNET) < 0)
        child_fail(sock, PP_LOCAL_STEP_SETNS);
    if (x->detached) {
        if (setsid() < 0)
            child_fail(sock, PP_LOCAL_STEP_SETSID);
        pid_t g = fork();
        if (g < 0)
            child_fail(sock, PP_LOCAL_STEP_FORK);
        if (g > 0) {
            /* The grandchild is reparented away from the daemon when we exit. */
            child_send(sock, MSG_PID, 0, 0, (int)g, -1);
            _exit(0);
        }
    }
    if (dup2(in_fd, 0) < 0 || dup2(x->out_fd, 1) < 0 || dup2(x->out_fd, 2) < 0)
        child_fail(sock, PP_LOCAL_STEP_STDIO);
    /* Nothing of the daemon's but the report socket (close-on-exec) may
     * reach the program: a listening socket inherited by a long-lived agent
     * would keep a restarted daemon from binding it again. */
    close_from(3, (unsigned)sock - 1);
    close_from((unsigned)sock + 1, ~0u);
    if (x->cwd != NULL && chdir(x->cwd) < 0)
        child_fail(sock, PP_LOCAL_STEP_CHDIR);
    execve(x->path, x->argv, x->envp);
    child_fail(sock, PP_LOCAL_STEP_EXEC);
}

/* --- in the parent ---------------------------------------------------------- */

/* The socket is closed only here: closing a poll handle removes its fd
 * number from epoll, so while the handle exists the number must not be
 * reused by another child's socket. */
static void child_closed(uv_handle_t *h)
{
    pp__local_child_t *c = container_of((uv_poll_t *)h, pp__local_child_t, poll);
    if (c->sock >= 0)
        close(c->sock);
    free(c);
}

static void unlink_child(pp__local_child_t *c)
{
    for (pp__local_child_t **pp = &c->reaper->children; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
}

static void maybe_finish(pp__local_child_t *c)
{
    if (!c->eof || !c->reaped || c->done)
        return;
    c->done = 1;
    unlink_child(c);
    c->cb(&c->res, c->data);
    /* A descriptor the callback did not take is closed here. */
    if (c->res.fd >= 0)
        close(c->res.fd);
    uv_close((uv_handle_t *)&c->poll, child_closed);
}

static void try_reap(pp__local_child_t *c)
{
    if (c->reaped)
        return;
    int st;
    pid_t r;
    do
        r = waitpid(c->pid_direct, &st, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == c->pid_direct) {
        c->reaped = 1;
        c->res.wstatus = st;
    } else if (r < 0 && errno == ECHILD) {
        /* Someone else reaped it (a waitpid(-1) elsewhere): its status is lost. */
        c->reaped = 1;
        c->res.wstatus = -1;
    }
}

static void on_report(uv_poll_t *h, int status, int events)
{
    pp__local_child_t *c = container_of(h, pp__local_child_t, poll);
    (void)events;
    for (;;) {
        struct msg m;
        struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } u;
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = u.buf,
                            .msg_controllen = sizeof(u.buf)};
        ssize_t n = status < 0 ? 0 : recvmsg(c->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            /* Every copy of the child's end is closed: the child and any
             * grandchild have exited or exec'd. */
            uv_poll_stop(&c->poll);
            c->eof = 1;
            try_reap(c);
            maybe_finish(c);
            return;
        }
        int fd = -1;
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
                cm->cmsg_len == CMSG_LEN(sizeof(int)))
                memcpy(&fd, CMSG_DATA(cm), sizeof(int));
        if ((size_t)n != sizeof(m) || (mh.msg_flags & MSG_CTRUNC)) {
            if (fd >= 0)
                close(fd);
            if (c->res.status == 0) {
                c->res.status = -EPROTO;
                c->res.step = PP_LOCAL_STEP_PROTOCOL;
            }
            continue;
        }
        switch (m.kind) {
        case MSG_FAIL:
            if (c->res.status == 0) {
                c->res.status = m.err > 0 ? -m.err : -EIO;
                c->res.step = m.step;
            }
            break;
        case MSG_PID:
            c->res.pid = m.pid;
            break;
        case MSG_FD:
            if (c->res.fd < 0 && fd >= 0) {
                c->res.fd = fd;
                fd = -1;
            }
            break;
        }
        if (fd >= 0)
            close(fd);
    }
}

static void on_sigchld(uv_signal_t *h, int signum)
{
    (void)signum;
    pp__local_reaper_t *r = h->data;
    /* A callback may start new children (added at the head) but finishes
     * none but its own, so the saved successor stays valid. */
    pp__local_child_t *c = r->children;
    while (c != NULL) {
        pp__local_child_t *next = c->next;
        try_reap(c);
        maybe_finish(c);
        c = next;
    }
}

static void sig_closed(uv_handle_t *h)
{
    free(h);
}

int pp__local_reaper_new(uv_loop_t *loop, pp__local_reaper_t **out)
{
    pp__local_reaper_t *r = calloc(1, sizeof(*r));
    uv_signal_t *sig = calloc(1, sizeof(*sig));
    if (r == NULL || sig == NULL) {
        free(r);
        free(sig);
        return -ENOMEM;
    }
    int rc = uv_signal_init(loop, sig);
    if (rc < 0) {
        free(r);
        free(sig);
        return rc;
    }
    sig->data = r;
    rc = uv_signal_start(sig, on_sigchld, SIGCHLD);
    if (rc < 0) {
        uv_close((uv_handle_t *)sig, sig_closed);
        free(r);
        return rc;
    }
    /* Reaping must not keep the loop alive on its own. */
    uv_unref((uv_handle_t *)sig);
    r->sig = sig;
    *out = r;
    return 0;
}

void pp__local_reaper_free(pp__local_reaper_t *r)
{
    if (r == NULL)
        return;
    uv_close((uv_handle_t *)r->sig, sig_closed);
    free(r);
}

/* Moves a descriptor above stdio, so that the dup2() calls in the child
 * cannot overwrite one with another. */
static int above_stdio(int fd, int *owned)
{
    *owned = -1;
    if (fd > 2)
        return fd;
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (d < 0)
        return -errno;
    *owned = d;
    return d;
}

enum { MODE_NETNS, MODE_EXEC };

static int start(pp__local_reaper_t *r, int mode, const char *vm_path, const char *pod_path,
                 const pp__local_exec_t *x, pp__local_child_cb cb, void *data,
                 pp__local_child_t **out)
{
    pp__local_child_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->res.fd = -1;
    c->sock = -1;
    c->reaper = r;
    c->cb = cb;
    c->data = data;

    int rc = 0, sv[2] = {-1, -1}, in_fd = -1, out_owned = -1, in_owned = -1;
    pp__local_exec_t xc = {.netns_fd = -1, .out_fd = -1};
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        rc = -errno;
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        int owned;
        int fd = above_stdio(sv[i], &owned);
        if (fd < 0) {
            rc = fd;
            goto fail;
        }
        if (owned >= 0) {
            close(sv[i]);
            sv[i] = owned;
        }
    }
    if (mode == MODE_EXEC) {
        xc = *x;
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            rc = -errno;
            goto fail;
        }
        in_fd = above_stdio(fd, &in_owned);
        if (in_owned >= 0)
            close(fd);
        if (in_fd < 0) {
            rc = in_fd;
            goto fail;
        }
        xc.out_fd = above_stdio(x->out_fd, &out_owned);
        if (xc.out_fd < 0) {
            rc = xc.out_fd;
            goto fail;
        }
    }
    rc = uv_poll_init(uv_handle_get_loop((uv_handle_t *)r->sig), &c->poll, sv[0]);
    if (rc < 0)
        goto fail;

    pid_t pid = fork();
    if (pid == 0) {
        if (mode == MODE_NETNS)
            child_netns(sv[1], vm_path, pod_path);
        child_exec(sv[1], &xc, in_fd);
    }
    if (pid < 0) {
        rc = -errno;
        close(sv[1]);
        if (in_fd >= 0)
            close(in_fd);
        if (out_owned >= 0)
            close(out_owned);
        c->sock = sv[0];
        uv_close((uv_handle_t *)&c->poll, child_closed);
        return rc;
    }
    close(sv[1]);
    if (in_fd >= 0)
        close(in_fd);
    if (out_owned >= 0)
        close(out_owned);
    c->pid_direct = pid;
    c->res.pid = pid;
    c->sock = sv[0];
    c->next = r->children;
    r->children = c;
    rc = uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, on_report);
    if (rc < 0) {
        /* The child runs anyway: it is still reaped, and reports this. */
        c->eof = 1;
        c->res.status = rc;
        c->res.step = PP_LOCAL_STEP_PROTOCOL;
    }
    if (out != NULL)
        *out = c;
    return 0;

fail:
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (in_fd >= 0)
        close(in_fd);
    if (out_owned >= 0)
        close(out_owned);
    free(c);
    return rc;
}

int pp__local_child_netns(pp__local_reaper_t *r, const char *vm_path, const char *pod_path,
                          pp__local_child_cb cb, void *data, pp__local_child_t **out)
{
    return start(r, MODE_NETNS, vm_path, pod_path, NULL, cb, data, out);
}

int pp__local_child_exec(pp__local_reaper_t *r, const pp__local_exec_t *x, pp__local_child_cb cb,
                         void *data, pp__local_child_t **out)
{
    return start(r, MODE_EXEC, NULL, NULL, x, cb, data, out);
}

void pp__local_child_kill(pp__local_child_t *c, int sig)
{
    /* Not reaped yet, so the pid cannot have been reused. */
    if (c != NULL && !c->reaped)
        kill(c->pid_direct, sig);
}

/* --- processes by pid and start time --------------------------------------- */

int pp__local_proc_start(pid_t pid, unsigned long long *start)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    cleanup_free char *buf = NULL;
    size_t len;
    int rc = pp_file_read(path, 4096, PP_FILE_NOFOLLOW, &buf, &len, NULL);
    if (rc < 0)
        return -ESRCH;
    char state;
    if (pp__local_parse_stat(buf, len, &state, start) < 0)
        return -ESRCH;
    if (state == 'Z' || state == 'X' || state == 'x')
        return -ESRCH;
    return 0;
}

int pp__local_proc_open(pid_t pid, unsigned long long start, pp__local_proc_t *p)
{
    p->pid = pid;
    p->start = start;
    p->pidfd = -1;
#ifdef SYS_pidfd_open
    /* Open first, check the start time second: then the pidfd is known to
     * name the process that had it. */
    long fd = syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) {
        p->pidfd = (int)fd;
        fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
    }
#endif
    unsigned long long s;
    if (pp__local_proc_start(pid, &s) < 0 || s != start) {
        pp__local_proc_close(p);
        return -ESRCH;
    }
    return 0;
}

int pp__local_proc_alive(const pp__local_proc_t *p)
{
    if (p->pidfd >= 0) {
        /* A pidfd turns readable when its process has exited. */
        struct pollfd pf = {.fd = p->pidfd, .events = POLLIN};
        int r;
        do
            r = poll(&pf, 1, 0);
        while (r < 0 && errno == EINTR);
        if (r > 0)
            return 0;
        /* A zombie nobody reaps has exited too, as far as we are concerned. */
    }
    unsigned long long s;
    return pp__local_proc_start(p->pid, &s) == 0 && s == p->start;
}

void pp__local_proc_signal(const pp__local_proc_t *p, int sig)
{
#ifdef SYS_pidfd_send_signal
    if (p->pidfd >= 0) {
        syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0);
        return;
    }
#endif
    if (pp__local_proc_alive(p))
        kill(p->pid, sig);
}

void pp__local_proc_close(pp__local_proc_t *p)
{
    if (p->pidfd >= 0)
        close(p->pidfd);
    p->pidfd = -1;
}
