#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"

#define READ_CHUNK 4096

/* Drops what a failed read appended, clearing it first for a secret. */
static void undo(pp_buf_t *out, size_t start, unsigned flags)
{
    if ((flags & PP_FILE_SECRET) && out->len > start)
        explicit_bzero(out->data + start, out->len - start);
    out->len = start;
}

int pp_file_read_at(int dirfd, const char *path, size_t max, unsigned flags, pp_buf_t *out,
                    pp_error_t *err)
{
    /* O_NONBLOCK: opening a FIFO must not hang, since it is refused below. */
    int oflags = O_RDONLY | O_CLOEXEC | O_NOCTTY;
    if (flags & PP_FILE_NOFOLLOW)
        oflags |= O_NOFOLLOW;
    if (flags & PP_FILE_REGULAR)
        oflags |= O_NONBLOCK;
    cleanup_close int fd = openat(dirfd, path, oflags);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP && (flags & PP_FILE_NOFOLLOW))
            return pp_error_set(err, -ELOOP, "`%s` is a symlink", path);
        return pp_error_set(err, -e, "open `%s`: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return pp_error_set(err, -errno, "stat `%s`: %s", path, strerror(errno));
    if ((flags & PP_FILE_REGULAR) && !S_ISREG(st.st_mode))
        return pp_error_set(err, -EINVAL, "`%s` is not a regular file", path);

    size_t start = out->len;
    /* The stated size, only a hint (configfs and sysfs state a page), and
     * one byte more (for the NUL pp_file_read adds, or to see the end) at
     * once, so that a secret is not copied by growth. */
    size_t want = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : READ_CHUNK;
    for (;;) {
        /* Read one byte past `max` to tell "exactly max" from "more". */
        size_t left = max + 1 - (out->len - start);
        int r = pp_buf_reserve(out, want < left ? want : left);
        if (r < 0) {
            undo(out, start, flags);
            return pp_error_set(err, r, "read `%s`: %s", path, strerror(-r));
        }
        want = READ_CHUNK;
        size_t room = out->cap - out->len;
        ssize_t n = read(fd, out->data + out->len, room < left ? room : left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            undo(out, start, flags);
            return pp_error_set(err, -e, "read `%s`: %s", path, strerror(e));
        }
        if (n == 0)
            return 0;
        out->len += (size_t)n;
        if (out->len - start > max) {
            undo(out, start, flags);
            return pp_error_set(err, -EFBIG, "`%s` is larger than the limit of %zu bytes", path,
                                max);
        }
    }
}

int pp_file_read(const char *path, size_t max, unsigned flags, char **out, size_t *len,
                 pp_error_t *err)
{
    pp_buf_t b;
    if (flags & PP_FILE_SECRET)
        pp_buf_init_secret(&b, 0);
    else
        pp_buf_init(&b, 0);
    int r = pp_file_read_at(AT_FDCWD, path, max, flags, &b, err);
    if (r == 0 && (r = pp_buf_append_byte(&b, 0)) < 0)
        pp_error_set(err, r, "read `%s`: %s", path, strerror(-r));
    if (r < 0) {
        undo(&b, 0, flags);
        pp_buf_free(&b);
        return r;
    }
    size_t n = b.len - 1;
    *out = (char *)pp_buf_steal(&b, NULL);
    if (len != NULL)
        *len = n;
    return 0;
}

int pp_file_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

int pp_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                         unsigned flags, pp_error_t *err)
{
    char dir[PATH_MAX], tmp[PATH_MAX];
    const char *slash = strrchr(path, '/');
    const char *name = slash != NULL ? slash + 1 : path;
    int dlen = slash == NULL ? 1 : slash == path ? 1 : (int)(slash - path);
    if (name[0] == '\0')
        return pp_error_set(err, -EINVAL, "write `%s`: not a file name", path);
    if ((size_t)snprintf(dir, sizeof(dir), "%.*s", dlen, slash != NULL ? path : ".") >=
            sizeof(dir) ||
        (size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, name) >= sizeof(tmp))
        return pp_error_set(err, -ENAMETOOLONG, "path `%s` is too long", path);
    /* mkostemp() creates the file 0600 and exclusively: a symlink planted
     * under that name is never followed. */
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return pp_error_set(err, -errno, "create a temporary beside `%s`: %s", path,
                            strerror(errno));
    int r = 0;
    if (fchmod(fd, mode) < 0)
        r = -errno;
    if (r == 0)
        r = pp_file_write_all(fd, data, len);
    if (r == 0 && (flags & PP_FILE_DURABLE) && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return pp_error_set(err, r, "write `%s`: %s", path, strerror(-r));
    }
    /* The rename itself must survive a crash too. */
    if ((flags & PP_FILE_DURABLE) && (r = fsync_dir(dir)) < 0)
        return pp_error_set(err, r, "sync directory `%s`: %s", dir, strerror(-r));
    return 0;
}

int pp_mkdir_p(const char *path, mode_t mode, pp_error_t *err)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0)
        return pp_error_set(err, -EINVAL, "create directory: empty path");
    if (n >= sizeof(buf))
        return pp_error_set(err, -ENAMETOOLONG, "path `%s` is too long", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return pp_error_set(err, -errno, "create directory `%s`: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) < 0)
        return pp_error_set(err, -errno, "`%s`: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return pp_error_set(err, -ENOTDIR, "`%s` is not a directory", path);
    return 0;
}

int pp_mkdir_parents(const char *path, mode_t mode, pp_error_t *err)
{
    char dir[PATH_MAX];
    if ((size_t)snprintf(dir, sizeof(dir), "%s", path) >= sizeof(dir))
        return pp_error_set(err, -ENAMETOOLONG, "path `%s` is too long", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir)
        return 0;
    *slash = '\0';
    return pp_mkdir_p(dir, mode, err);
}
