#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pud.h"
#include "userdata/cloudconfig.h"
#include "util/cleanup.h"

/* Where the config drive (a `cidata` volume) is mounted in the pod VM. */
#define PUD_CONFIG_DRIVE_USER_DATA "media/cidata/user-data"

int pud_read_file(int dirfd, const char *path, int nofollow, size_t max, pp_buf_t *out,
                  pp_error_t *err)
{
    /* O_NONBLOCK: opening a FIFO must not hang; it is refused below. */
    int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (nofollow ? O_NOFOLLOW : 0);
    cleanup_close int fd = openat(dirfd, path, flags);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            return pp_error_set(err, -ELOOP, "`%s` is a symlink", path);
        return pp_error_set(err, -e, "open `%s`: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return pp_error_set(err, -errno, "stat `%s`: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return pp_error_set(err, -EINVAL, "`%s` is not a regular file", path);
    size_t start = out->len;
    for (;;) {
        int r = pp_buf_reserve(out, 4096);
        if (r < 0)
            return pp_error_set(err, r, "read `%s`: %s", path, strerror(-r));
        /* Read one byte past the limit to tell "exactly max" from "more". */
        size_t room = out->cap - out->len;
        size_t left = max + 1 - (out->len - start);
        ssize_t n = read(fd, out->data + out->len, room < left ? room : left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return pp_error_set(err, -errno, "read `%s`: %s", path, strerror(errno));
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
        if (out->len - start > max)
            return pp_error_set(err, -EMSGSIZE, "`%s` is larger than the limit of %zu bytes", path,
                                max);
    }
    return 0;
}

size_t pud_user_data_max(const pud_opts_t *o)
{
    if (o->max_size == 0)
        return PP_USERDATA_MAX_DEFAULT;
    return o->max_size < PP_USERDATA_MAX_LIMIT ? o->max_size : PP_USERDATA_MAX_LIMIT;
}

/* The config drive: a file on a volume the hypervisor attaches, mounted by
 * the image; read relative to the root so tests can plant one. */
static int probe_config_drive(const pud_opts_t *o, pp_buf_t *out, pp_error_t *err)
{
    cleanup_close int root = open(o->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return pp_error_set(err, -errno, "open root `%s`: %s", o->root, strerror(errno));
    int r = pud_read_file(root, PUD_CONFIG_DRIVE_USER_DATA, 0, pud_user_data_max(o), out, err);
    if (r == -ENOENT || r == -ENOTDIR)
        return -ENOENT;
    return r;
}

/* Tried in order; cloud metadata services join this table. */
static const pud_source_t config_drive = {.name = "config-drive", .probe = probe_config_drive};
static const pud_source_t *const sources[] = {&config_drive, NULL};

int pud_fetch(const pud_opts_t *o, pp_buf_t *out, const char **source, pp_error_t *err)
{
    if (o->from != NULL) {
        *source = o->from;
        return pud_read_file(AT_FDCWD, o->from, 0, pud_user_data_max(o), out, err);
    }
    char tried[256] = "";
    for (size_t i = 0; sources[i] != NULL; i++) {
        int r = sources[i]->probe(o, out, err);
        if (r == 0) {
            *source = sources[i]->name;
            return 0;
        }
        if (r != -ENOENT)
            return pp_error_wrap(err, "user data source `%s`", sources[i]->name);
        size_t used = strlen(tried);
        snprintf(tried + used, sizeof(tried) - used, "%s%s", used ? ", " : "", sources[i]->name);
    }
    return pp_error_set(err, -ENOENT, "no user data found (tried: %s)", tried);
}
