/* Network namespaces: work on a thread of its own, named namespaces. */
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/net_int.h"
#include "util/cleanup.h"

/* Set on the threads pp_netns_run() makes: only they may setns(). */
static __thread int ns_thread;

struct run {
    int fd;
    int (*fn)(void *);
    void *arg;
    int rc;
};

static void *run_main(void *p)
{
    struct run *r = p;
    ns_thread = 1;
    if (r->fd >= 0 && setns(r->fd, CLONE_NEWNET) < 0) {
        r->rc = -errno;
        return NULL;
    }
    r->rc = r->fn(r->arg);
    return NULL;
}

int pp_netns_run_fd(int netns_fd, int (*fn)(void *), void *arg)
{
    struct run r = {.fd = netns_fd, .fn = fn, .arg = arg, .rc = 0};
    sigset_t all, old;
    pthread_t t;
    /* The thread takes no signals: they belong to the daemon's loop. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&t, NULL, run_main, &r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return -rc;
    pthread_join(t, NULL);
    return r.rc;
}

int pp_netns_run(const char *netns_path, int (*fn)(void *), void *arg)
{
    if (netns_path == NULL)
        return pp_netns_run_fd(-1, fn, arg);
    int fd = pp_netns_open(netns_path, NULL);
    if (fd < 0)
        return fd;
    int rc = pp_netns_run_fd(fd, fn, arg);
    close(fd);
    return rc;
}

int pp_netns_enter(int netns_fd)
{
    if (!ns_thread)
        return -EPERM;
    if (setns(netns_fd, CLONE_NEWNET) < 0)
        return -errno;
    return 0;
}

const char *pp__ns_label(const char *path)
{
    return path != NULL ? path : "the current namespace";
}

int pp_netns_open(const char *netns_path, pp_error_t *err)
{
    if (netns_path == NULL || netns_path[0] == '\0')
        return pp_error_set(err, -EINVAL, "no network namespace path");
    int fd = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return pp_error_set(err, -ENOENT, "network namespace `%s` does not exist", netns_path);
        return pp_error_set(err, -e, "open network namespace `%s`: %s", netns_path, strerror(e));
    }
    int type = ioctl(fd, NS_GET_NSTYPE);
    if (type != CLONE_NEWNET) {
        close(fd);
        return pp_error_set(err, -EINVAL, "`%s` is not a network namespace", netns_path);
    }
    return fd;
}

int pp_netns_path(const char *name, char *buf, size_t len)
{
    if (name == NULL || name[0] == '\0' || strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0 || strlen(name) > 200)
        return -EINVAL;
    int n = snprintf(buf, len, "%s/%s", PP_NETNS_DIR, name);
    if (n < 0 || (size_t)n >= len)
        return -ENAMETOOLONG;
    return 0;
}

const char *pp_netns_name_or_path(const char *path)
{
    size_t dl = strlen(PP_NETNS_DIR);
    if (strncmp(path, PP_NETNS_DIR "/", dl + 1) == 0 && path[dl + 1] != '\0' &&
        strchr(path + dl + 1, '/') == NULL)
        return path + dl + 1;
    return path;
}

/* Like iproute2: /run/netns is a shared mount point, so a namespace
 * mounted under it shows in every mount namespace that shares it (a
 * daemon's container with bidirectional propagation). */
static int make_dir_shared(pp_error_t *err)
{
    if (mkdir(PP_NETNS_DIR, 0755) < 0 && errno != EEXIST)
        return pp_error_set(err, -errno, "create `%s`: %s", PP_NETNS_DIR, strerror(errno));
    for (int bound = 0;; bound = 1) {
        if (mount("", PP_NETNS_DIR, "none", MS_SHARED | MS_REC, NULL) == 0)
            return 0;
        if (errno != EINVAL || bound)
            return pp_error_set(err, -errno, "make `%s` a shared mount: %s", PP_NETNS_DIR,
                                strerror(errno));
        /* Not a mount point yet: make it one. */
        if (mount(PP_NETNS_DIR, PP_NETNS_DIR, "none", MS_BIND | MS_REC, NULL) < 0)
            return pp_error_set(err, -errno, "bind-mount `%s`: %s", PP_NETNS_DIR, strerror(errno));
    }
}

struct create {
    const char *path;
    int rc;
};

static int create_main(void *p)
{
    struct create *c = p;
    if (unshare(CLONE_NEWNET) < 0)
        return -errno;
    char self[64];
    snprintf(self, sizeof(self), "/proc/self/task/%d/ns/net", (int)gettid());
    if (mount(self, c->path, "none", MS_BIND, NULL) < 0)
        return -errno;
    return 0;
}

static bool is_netns(const char *path)
{
    int fd = pp_netns_open(path, NULL);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

int pp_netns_create(const char *name, bool exist_ok, bool *created, pp_error_t *err)
{
    char path[256];
    if (created != NULL)
        *created = false;
    if (pp_netns_path(name, path, sizeof(path)) < 0)
        return pp_error_set(err, -EINVAL, "`%s` is not a valid network namespace name",
                            name ? name : "");
    if (is_netns(path)) {
        if (exist_ok)
            return 0;
        return pp_error_set(err, -EEXIST, "network namespace `%s` already exists", path);
    }
    int rc = make_dir_shared(err);
    if (rc < 0)
        return rc;
    /* A file left by an interrupted create or delete is reused. */
    int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0);
    if (fd < 0)
        return pp_error_set(err, -errno, "create `%s`: %s", path, strerror(errno));
    close(fd);
    struct create c = {.path = path};
    rc = pp_netns_run_fd(-1, create_main, &c);
    if (rc < 0) {
        unlink(path);
        return pp_error_set(err, rc, "create network namespace `%s`: %s", path, strerror(-rc));
    }
    if (created != NULL)
        *created = true;
    return 0;
}

int pp_netns_delete(const char *name, pp_error_t *err)
{
    char path[256];
    if (pp_netns_path(name, path, sizeof(path)) < 0)
        return pp_error_set(err, -EINVAL, "`%s` is not a valid network namespace name",
                            name ? name : "");
    if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
        return pp_error_set(err, -errno, "unmount `%s`: %s", path, strerror(errno));
    if (unlink(path) < 0 && errno != ENOENT)
        return pp_error_set(err, -errno, "remove `%s`: %s", path, strerror(errno));
    return 0;
}
