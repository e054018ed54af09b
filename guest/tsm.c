/* configfs-tsm reports (Documentation/ABI/testing/configfs-tsm): an entry
 * made under tsm/report, `inblob` written, `outblob` (and `auxblob`) read,
 * `generation` checked to be the one our write made, the entry removed. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attester.h"
#include "tee_int.h"
#include "util/cleanup.h"
#include "util/file.h"

#define TSM_OUT_MAX (32u * 1024) /* the kernel's TSM_OUTBLOB_MAX */

int guest__tsm_dir(const guest_tee_opts_t *o, char *out, size_t size)
{
    if (o->tsm_dir != NULL) {
        int r = snprintf(out, size, "%s", o->tsm_dir);
        return r < 0 || (size_t)r >= size ? -ENAMETOOLONG : 0;
    }
    return guest__path(o, GUEST_TSM_DIR, out, size);
}

static int read_attr(const char *dir, const char *name, size_t max, pp_buf_t *out, pp_error_t *err)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    out->max = max + 1; /* one byte more, to tell "too large" from "just fits" */
    int r = pp_file_read_at(AT_FDCWD, path, max, 0, out, err);
    if (r < 0)
        pp_error_wrap(err, "configfs-tsm");
    return r;
}

static int write_attr(const char *dir, const char *name, const void *p, size_t n, pp_error_t *err)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    cleanup_close int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return pp_error_set(err, -errno, "configfs-tsm: open `%s`: %s", name, strerror(errno));
    ssize_t w = write(fd, p, n);
    if (w != (ssize_t)n)
        return pp_error_set(err, w < 0 ? -errno : -EIO, "configfs-tsm: write `%s`: %s", name,
                            w < 0 ? strerror(errno) : "short write");
    return 0;
}

int guest__tsm_provider(const guest_tee_opts_t *o, char *out, size_t size)
{
    char dir[4096];
    out[0] = 0;
    if (guest__tsm_dir(o, dir, sizeof(dir)) < 0)
        return -ENAMETOOLONG;
    struct stat st;
    if (stat(dir, &st) < 0)
        return -ENOENT;
    /* The provider shows only in an entry: make one and remove it. */
    char entry[4200];
    snprintf(entry, sizeof(entry), "%s/guest-probe-%d", dir, (int)getpid());
    if (mkdir(entry, 0700) < 0)
        return -errno;
    pp_buf_t b;
    pp_error_t err;
    pp_buf_init(&b, 256);
    int r = read_attr(entry, "provider", 256, &b, &err);
    if (r == 0) {
        size_t n = b.len;
        while (n > 0 && (b.data[n - 1] == '\n' || b.data[n - 1] == 0))
            n--;
        snprintf(out, size, "%.*s", (int)n, (const char *)b.data);
    }
    pp_buf_free(&b);
    rmdir(entry);
    return r;
}

int guest__tsm_report(guest_attester_t *a, const char *want, const uint8_t *inblob, size_t len,
                      pp_buf_t *out, pp_buf_t *aux, pp_error_t *err)
{
    char dir[4096], entry[4200];
    if (guest__tsm_dir(&a->opts, dir, sizeof(dir)) < 0)
        return pp_error_set(err, -ENAMETOOLONG, "configfs-tsm: path too long");
    snprintf(entry, sizeof(entry), "%s/guest-aa-%d-%u", dir, (int)getpid(), ++a->seq);
    if (mkdir(entry, 0700) < 0)
        return pp_error_set(err, errno == ENOENT ? -ENODEV : -errno,
                            "configfs-tsm: cannot make a report entry in `%s`: %s", dir,
                            strerror(errno));
    pp_buf_t prov;
    pp_buf_init(&prov, 256);
    int r = read_attr(entry, "provider", 256, &prov, err);
    if (r == 0) {
        size_t n = prov.len;
        while (n > 0 && prov.data[n - 1] == '\n')
            n--;
        if (n != strlen(want) || memcmp(prov.data, want, n) != 0)
            r = pp_error_set(err, -ENODEV, "configfs-tsm: the provider is `%.*s`, not `%s`",
                             (int)(n < 64 ? n : 64), (const char *)prov.data, want);
    }
    pp_buf_free(&prov);
    if (r == 0)
        r = write_attr(entry, "inblob", inblob, len, err);
    if (r == 0)
        r = read_attr(entry, "outblob", TSM_OUT_MAX, out, err);
    if (r == 0 && aux != NULL) {
        pp_error_t e2;
        if (read_attr(entry, "auxblob", 64 * 1024, aux, &e2) < 0)
            aux->len = 0; /* optional: not every provider has one */
    }
    pp_buf_t gen;
    pp_buf_init(&gen, 64);
    if (r == 0 && (r = read_attr(entry, "generation", 64, &gen, err)) == 0) {
        /* Another writer to our entry would have moved it past 1. */
        char text[65];
        snprintf(text, sizeof(text), "%.*s", (int)gen.len, (const char *)gen.data);
        int g = (int)strtol(text, NULL, 10);
        if (g != 1)
            r = pp_error_set(err, -EBUSY,
                             "configfs-tsm: generation %d, expected 1: the entry "
                             "was written by someone else",
                             g);
    }
    pp_buf_free(&gen);
    rmdir(entry);
    if (r == 0 && out->len == 0)
        r = pp_error_set(err, -EIO, "configfs-tsm: the provider returned an empty report");
    return r;
}
