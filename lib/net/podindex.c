/* Pod indexes: one file per index held, `<dir>/<index>` containing the
 * owner, created with O_EXCL so the file system arbitrates between threads,
 * processes and restarts. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/net.h"
#include "util/cleanup.h"

#define OWNER_MAX 255

int pp_podindex_open(pp_podindex_t *ix, const char *dir, uint32_t limit, pp_error_t *err)
{
    ix->dirfd = -1;
    ix->limit = 0;
    if (limit == 0 || limit > PP_VXLAN_ID_MAX + 1)
        return pp_error_set(err, -EINVAL, "pod index limit %u is not from 1 to %u", limit,
                            PP_VXLAN_ID_MAX + 1);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return pp_error_set(err, -errno, "create pod index directory `%s`: %s", dir,
                            strerror(errno));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return pp_error_set(err, -errno, "open pod index directory `%s`: %s", dir, strerror(errno));
    ix->dirfd = fd;
    ix->limit = limit;
    return 0;
}

void pp_podindex_close(pp_podindex_t *ix)
{
    if (ix->dirfd >= 0)
        close(ix->dirfd);
    ix->dirfd = -1;
}

static bool owner_valid(const char *owner)
{
    size_t n = owner ? strlen(owner) : 0;
    return n > 0 && n <= OWNER_MAX && strchr(owner, '/') == NULL && strchr(owner, '\n') == NULL;
}

/* A file name that is an index: decimal, no leading zero, below limit. */
static int parse_index(const char *name, uint32_t limit, uint32_t *out)
{
    if (name[0] < '0' || name[0] > '9' || (name[0] == '0' && name[1] != '\0'))
        return -EINVAL;
    uint64_t v = 0;
    for (const char *p = name; *p; p++) {
        if (*p < '0' || *p > '9' || p - name > 8)
            return -EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v >= limit)
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

static int read_owner(int dirfd, uint32_t index, char *buf, size_t len)
{
    char name[16];
    snprintf(name, sizeof(name), "%u", index);
    cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    ssize_t n;
    do
        n = read(fd, buf, len - 1);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return 0;
}

int pp_podindex_owner(pp_podindex_t *ix, uint32_t index, char *buf, size_t len)
{
    if (index >= ix->limit || len == 0)
        return -EINVAL;
    return read_owner(ix->dirfd, index, buf, len);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The directory, to read. A fresh open file description: a dup() would
 * share the read offset with concurrent callers. */
static int open_dir(pp_podindex_t *ix, DIR **out, pp_error_t *err)
{
    int dfd = openat(ix->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return pp_error_set(err, -errno, "pod index directory: %s", strerror(errno));
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        int e = errno;
        close(dfd);
        return pp_error_set(err, -e, "pod index directory: %s", strerror(e));
    }
    *out = d;
    return 0;
}

int pp_podindex_foreach(pp_podindex_t *ix, pp_podindex_cb cb, void *data, pp_error_t *err)
{
    cleanup_dir DIR *d = NULL;
    int r = open_dir(ix, &d, err);
    if (r < 0)
        return r;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint32_t i;
        char who[OWNER_MAX + 2];
        if (parse_index(de->d_name, ix->limit, &i) < 0 ||
            read_owner(ix->dirfd, i, who, sizeof(who)) < 0)
            continue;
        if ((r = cb(i, who, data)) != 0)
            return r;
    }
    return 0;
}

int pp_podindex_acquire(pp_podindex_t *ix, const char *owner, uint32_t *index, pp_error_t *err)
{
    if (!owner_valid(owner))
        return pp_error_set(err, -EINVAL, "pod index owner `%.64s` is not valid",
                            owner ? owner : "");
    cleanup_dir DIR *d = NULL;
    int r = open_dir(ix, &d, err);
    if (r < 0)
        return r;

    /* The indexes in use, and whether `owner` already holds one. */
    cleanup_free uint32_t *used = NULL;
    size_t n_used = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint32_t i;
        if (parse_index(de->d_name, ix->limit, &i) < 0)
            continue;
        char who[OWNER_MAX + 2];
        if (read_owner(ix->dirfd, i, who, sizeof(who)) == 0 && strcmp(who, owner) == 0) {
            *index = i;
            return 0;
        }
        if (n_used == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            uint32_t *p = realloc(used, ncap * sizeof(*used));
            if (p == NULL)
                return pp_error_set(err, -ENOMEM, "out of memory");
            used = p;
            cap = ncap;
        }
        used[n_used++] = i;
    }
    if (n_used > 0)
        qsort(used, n_used, sizeof(*used), cmp_u32);

    /* Lowest free first; a file made meanwhile by someone else (EEXIST)
     * just moves us on. */
    size_t u = 0;
    for (uint32_t i = 0; i < ix->limit; i++) {
        while (u < n_used && used[u] < i)
            u++;
        if (u < n_used && used[u] == i)
            continue;
        char name[16];
        snprintf(name, sizeof(name), "%u", i);
        cleanup_close int fd =
            openat(ix->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            return pp_error_set(err, -errno, "create pod index file `%s`: %s", name,
                                strerror(errno));
        size_t len = strlen(owner);
        ssize_t w;
        do
            w = write(fd, owner, len);
        while (w < 0 && errno == EINTR);
        if (w != (ssize_t)len) {
            int e = w < 0 ? errno : EIO;
            unlinkat(ix->dirfd, name, 0);
            return pp_error_set(err, -e, "write pod index file `%s`: %s", name, strerror(e));
        }
        *index = i;
        return 0;
    }
    return pp_error_set(err, -ENOSPC, "all %u pod indexes are in use", ix->limit);
}

int pp_podindex_release(pp_podindex_t *ix, uint32_t index, const char *owner, pp_error_t *err)
{
    if (index >= ix->limit)
        return pp_error_set(err, -EINVAL, "pod index %u is not below %u", index, ix->limit);
    if (owner != NULL) {
        char who[OWNER_MAX + 2];
        int rc = read_owner(ix->dirfd, index, who, sizeof(who));
        if (rc == -ENOENT)
            return 0;
        if (rc < 0)
            return pp_error_set(err, rc, "read pod index %u: %s", index, strerror(-rc));
        if (strcmp(who, owner) != 0)
            return pp_error_set(err, -EBUSY, "pod index %u is held by `%.64s`, not `%.64s`", index,
                                who, owner);
    }
    char name[16];
    snprintf(name, sizeof(name), "%u", index);
    if (unlinkat(ix->dirfd, name, 0) < 0 && errno != ENOENT)
        return pp_error_set(err, -errno, "remove pod index %u: %s", index, strerror(errno));
    return 0;
}
