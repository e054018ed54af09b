/* Files of the local provider: pidfiles, paths, tree removal (reads and
 * atomic writes are lib/util/file.h's). Everything here is on tmpfs-sized
 * data. */
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
#include "util/file.h"

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

int pp__local_pidfile_write(const char *path, pid_t pid, unsigned long long start)
{
    char line[64];
    int n = snprintf(line, sizeof(line), "%d %llu\n", (int)pid, start);
    return pp_file_write_atomic(path, line, (size_t)n, 0600, 0, NULL);
}

int pp__local_pidfile_read(const char *path, pid_t *pid, unsigned long long *start)
{
    cleanup_free char *buf = NULL;
    int rc = pp_file_read(path, 64, PP_FILE_NOFOLLOW, &buf, NULL, NULL);
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
