/* Files of the local provider: small reads and atomic writes in the VM dir,
 * pidfiles, tree removal. Everything here is on tmpfs-sized data. */
#include "providers/local/local.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"

int pp__local_read_file(const char *path, size_t max, char **out, size_t *len)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    cleanup_free char *buf = malloc(max + 1);
    if (buf == NULL)
        return -ENOMEM;
    size_t n = 0;
    for (;;) {
        /* Read one byte past `max` to tell "exactly max" from "too big". */
        ssize_t r = read(fd, buf + n, max + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max)
            return -EFBIG;
    }
    buf[n] = '\0';
    *out = PP_STEAL(buf);
    if (len != NULL)
        *len = n;
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int pp__local_write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -errno;
    int rc = write_all(fd, data, len);
    if (rc == 0 && fchmod(fd, mode) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

int pp__local_fmt(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return -ENAMETOOLONG;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    int r = (flag == FTW_DP) ? rmdir(path) : unlink(path);
    if (r < 0 && errno != ENOENT)
        return errno;
    return 0;
}

int pp__local_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    /* FTW_PHYS: never follow a symlink a process left in the tree; FTW_MOUNT:
     * never descend into something mounted there. */
    int rc = nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    if (rc > 0)
        return -rc;
    if (rc < 0)
        return errno == ENOENT ? 0 : -errno;
    return 0;
}

int pp__local_mkdir_p(const char *path, mode_t mode)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(buf))
        return -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int pp__local_pidfile_write(const char *path, pid_t pid, unsigned long long start)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "%d %llu\n", (int)pid, start);
    return pp__local_write_file(path, line, (size_t)n, 0600);
}

int pp__local_pidfile_read(const char *path, pid_t *pid, unsigned long long *start)
{
    cleanup_free char *buf = NULL;
    int rc = pp__local_read_file(path, 64, &buf, NULL);
    if (rc < 0)
        return rc;
    long long p;
    unsigned long long s;
    char nl;
    if (sscanf(buf, "%lld %llu%c", &p, &s, &nl) != 3 || nl != '\n' || p <= 1 || p > INT32_MAX)
        return -EBADMSG;
    *pid = (pid_t)p;
    *start = s;
    return 0;
}
