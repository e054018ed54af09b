#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pud.h"
#include "userdata/cloudconfig.h"
#include "userdata/initdata.h"
#include "util/cleanup.h"
#include "util/log.h"

#define DIGEST_NAME   "initdata.digest"
#define POLICY_NAME   "policy.rego"
#define INITDATA_PATH PP_PEERPOD_DIR "/initdata"
#define MAX_ITEMS     10

/* One file to write in /run/peerpod. */
typedef struct item_s {
    const char *name; /* a single path component */
    const char *data;
    size_t len;
    unsigned mode;
    char tmp[64]; /* temporary name while being written, "" when none */
} item_t;

typedef struct plan_s {
    item_t items[MAX_ITEMS];
    size_t n;
} plan_t;

/* Modes of files that come from initdata. */
static const struct {
    enum pp_initdata_key key;
    unsigned mode;
} initdata_files[] = {
    {PP_INITDATA_AA_TOML, 0644},
    {PP_INITDATA_CDH_TOML, 0644},
    {PP_INITDATA_POLICY_REGO, 0644},
};

/* Every file this program may write, for `show`. */
static const char *const shown_files[] = {
    "apf.json",  "auth.json", "initdata", "aa.toml", "cdh.toml", "scratch-space.marker",
    POLICY_NAME, DIGEST_NAME,
};

/* Adds or replaces the item called `name`. */
static void plan_put(plan_t *p, const char *name, const char *data, size_t len, unsigned mode)
{
    size_t i = 0;
    while (i < p->n && strcmp(p->items[i].name, name) != 0)
        i++;
    if (i == p->n) {
        if (p->n == MAX_ITEMS)
            return; /* cannot happen: the names come from fixed lists */
        p->n++;
    } else {
        PP_WARN(PUD_LOG, "`%s` from initdata replaces the one in user data", name);
    }
    p->items[i] = (item_t){.name = name, .data = data, .len = len, .mode = mode};
}

/* ---- directory handling -------------------------------------------------- */

/* Opens directory `name` under `dirfd` without following a symlink. With
 * `create`, makes it (0755) when missing. -ENOENT when missing otherwise. */
static int open_dir(int dirfd, const char *name, const char *shown, int create, pp_error_t *err)
{
    if (create && mkdirat(dirfd, name, 0755) == 0) {
        PP_DEBUG(PUD_LOG, "created `%s`", shown);
    } else if (create && errno != EEXIST) {
        return pp_error_set(err, -errno, "create `%s`: %s", shown, strerror(errno));
    }
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT)
            return -ENOENT;
        return pp_error_set(err, -errno, "stat `%s`: %s", shown, strerror(errno));
    }
    if (S_ISLNK(st.st_mode))
        return pp_error_set(err, -ELOOP, "`%s` is a symlink; refusing to follow it", shown);
    if (!S_ISDIR(st.st_mode))
        return pp_error_set(err, -ENOTDIR, "`%s` is not a directory", shown);
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return pp_error_set(err, -errno, "open `%s`: %s", shown, strerror(errno));
    return fd;
}

/* Opens <root>/run/peerpod; -ENOENT when it does not exist and !create. */
static int open_peerpod_dir(const char *root, int create, pp_error_t *err)
{
    cleanup_close int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return pp_error_set(err, -errno, "open root `%s`: %s", root, strerror(errno));
    cleanup_close int run = open_dir(rootfd, "run", "/run", create, err);
    if (run < 0)
        return run;
    return open_dir(run, "peerpod", PP_PEERPOD_DIR, create, err);
}

/* Refuses targets that exist and are not regular files (a planted symlink
 * above all), before anything is written. */
static int check_targets(int dirfd, const plan_t *plan, pp_error_t *err)
{
    for (size_t i = 0; i < plan->n; i++) {
        const char *name = plan->items[i].name;
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            return pp_error_set(err, -errno, "stat `" PP_PEERPOD_DIR "/%s`: %s", name,
                                strerror(errno));
        }
        if (S_ISLNK(st.st_mode))
            return pp_error_set(
                err, -ELOOP, "`" PP_PEERPOD_DIR "/%s` is a symlink; refusing to replace it", name);
        if (!S_ISREG(st.st_mode))
            return pp_error_set(err, -EEXIST,
                                "`" PP_PEERPOD_DIR "/%s` is not a regular file; refusing to "
                                "replace it",
                                name);
    }
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes the item's bytes to a new temporary file beside the target. */
static int write_temp(int dirfd, item_t *it, size_t index, pp_error_t *err)
{
    snprintf(it->tmp, sizeof(it->tmp), ".%s.tmp-%ld-%zu", it->name, (long)getpid(), index);
    /* A leftover from a crashed run with the same pid is removed, never
     * followed: unlinkat() acts on a symlink itself. */
    if (unlinkat(dirfd, it->tmp, 0) < 0 && errno != ENOENT) {
        int e = errno;
        it->tmp[0] = '\0';
        return pp_error_set(err, -e, "remove stale temporary for `%s`: %s", it->name, strerror(e));
    }
    cleanup_close int fd =
        openat(dirfd, it->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        it->tmp[0] = '\0';
        return pp_error_set(err, -e, "create temporary for `%s`: %s", it->name, strerror(e));
    }
    int r = write_all(fd, it->data, it->len);
    /* fchmod, since the creation mode is filtered by the umask. */
    if (r == 0 && fchmod(fd, it->mode) < 0)
        r = -errno;
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (r < 0)
        return pp_error_set(err, r, "write `" PP_PEERPOD_DIR "/%s`: %s", it->name, strerror(-r));
    return 0;
}

static void remove_temps(int dirfd, plan_t *plan)
{
    for (size_t i = 0; i < plan->n; i++) {
        if (plan->items[i].tmp[0] != '\0')
            unlinkat(dirfd, plan->items[i].tmp, 0);
        plan->items[i].tmp[0] = '\0';
    }
}

/* Writes every file to a temporary first, then renames them all into place:
 * a failure while writing leaves the directory as it was. rename() replaces
 * a name without following it, so a symlink planted after the check is
 * replaced, never written through. */
static int write_plan(const char *root, plan_t *plan, pp_error_t *err)
{
    /* First look, without creating anything. */
    int dirfd = open_peerpod_dir(root, 0, err);
    if (dirfd >= 0) {
        int r = check_targets(dirfd, plan, err);
        close(dirfd);
        if (r < 0)
            return r;
    } else if (dirfd != -ENOENT) {
        return dirfd;
    }

    cleanup_close int fd = open_peerpod_dir(root, 1, err);
    if (fd < 0)
        return fd;
    int r = check_targets(fd, plan, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < plan->n; i++) {
        r = write_temp(fd, &plan->items[i], i, err);
        if (r < 0) {
            remove_temps(fd, plan);
            return r;
        }
    }
    for (size_t i = 0; i < plan->n; i++) {
        item_t *it = &plan->items[i];
        if (renameat(fd, it->tmp, fd, it->name) < 0) {
            r = pp_error_set(err, -errno, "rename into `" PP_PEERPOD_DIR "/%s`: %s", it->name,
                             strerror(errno));
            remove_temps(fd, plan);
            return r;
        }
        it->tmp[0] = '\0';
        PP_INFO(PUD_LOG, "wrote `" PP_PEERPOD_DIR "/%s` (%zu bytes, mode %04o)", it->name, it->len,
                it->mode);
    }
    if (fsync(fd) < 0)
        return pp_error_set(err, -errno, "sync `" PP_PEERPOD_DIR "`: %s", strerror(errno));
    return 0;
}

/* ---- provision-files ----------------------------------------------------- */

int pud_provision(const pud_opts_t *o, pp_error_t *err)
{
    pp_buf_t raw;
    pp_buf_init(&raw, 0);
    pp_cloudconfig_t cc = {0};
    pp_initdata_t id = {0};
    pp_buf_t toml;
    pp_buf_init(&toml, 0);
    plan_t plan = {0};
    const char *source = NULL;

    int r = pud_fetch(o, &raw, &source, err);
    if (r < 0)
        goto out;
    PP_INFO(PUD_LOG, "user data from `%s` (%zu bytes)", source, raw.len);
    r = pp_cloudconfig_parse(raw.data, raw.len, o->max_size, &cc, err);
    if (r < 0)
        goto out;
    for (size_t i = 0; i < cc.nfiles; i++) {
        const pp_userdata_path_t *ap = pp_userdata_path_lookup(cc.files[i].path);
        plan_put(&plan, ap->name, cc.files[i].content, cc.files[i].len, ap->mode);
    }

    const pp_userdata_file_t *init = pp_cloudconfig_find(&cc, INITDATA_PATH);
    if (init != NULL) {
        r = pp_initdata_decode(init->content, init->len, o->max_initdata, &toml, err);
        if (r == 0)
            r = pp_initdata_parse(toml.data, toml.len, &id, err);
        if (r < 0) {
            pp_error_wrap(err, "`" INITDATA_PATH "`");
            goto out;
        }
        for (size_t k = 0; k < PP_ARRAY_SIZE(initdata_files); k++) {
            enum pp_initdata_key key = initdata_files[k].key;
            if (id.data[key] != NULL)
                plan_put(&plan, pp_initdata_key_name(key), id.data[key], id.data_len[key],
                         initdata_files[k].mode);
        }
        /* Last, so a reader that sees the digest sees everything else. */
        plan_put(&plan, DIGEST_NAME, id.digest_hex, strlen(id.digest_hex), 0644);
        PP_INFO(PUD_LOG, "initdata %s digest %s", pp_initdata_alg_name(id.alg), id.digest_hex);
    }

    r = write_plan(o->root, &plan, err);
out:
    pp_initdata_free(&id);
    pp_buf_free(&toml);
    pp_cloudconfig_free(&cc);
    pp_buf_free(&raw);
    return r;
}

/* ---- show ---------------------------------------------------------------- */

/* Re-derives the digest from the stored initdata and compares. */
static int verify_digest(int dirfd, const pud_opts_t *o, const char *stored, FILE *out,
                         pp_error_t *err)
{
    pp_buf_t b64, toml;
    pp_buf_init(&b64, 0);
    pp_buf_init(&toml, 0);
    pp_initdata_t id = {0};
    int r = pud_read_file(dirfd, "initdata", 1, pud_user_data_max(o), &b64, err);
    if (r == 0)
        r = pp_initdata_decode((const char *)b64.data, b64.len, o->max_initdata, &toml, err);
    if (r == 0)
        r = pp_initdata_parse(toml.data, toml.len, &id, err);
    if (r == 0) {
        int match = strcmp(id.digest_hex, stored) == 0;
        fprintf(out, "initdata: algorithm %s, digest %s\n", pp_initdata_alg_name(id.alg),
                match ? "verified" : "MISMATCH");
        if (!match)
            r = pp_error_set(err, -EBADMSG,
                             "`" PP_PEERPOD_DIR "/" DIGEST_NAME "` does not match `" INITDATA_PATH
                             "` (computed %s)",
                             id.digest_hex);
    }
    pp_initdata_free(&id);
    pp_buf_free(&b64);
    pp_buf_free(&toml);
    return r;
}

int pud_show(const pud_opts_t *o, FILE *out, pp_error_t *err)
{
    int fd = open_peerpod_dir(o->root, 0, err);
    if (fd == -ENOENT) {
        fprintf(out, "nothing provisioned: `" PP_PEERPOD_DIR "` does not exist under `%s`\n",
                o->root);
        return 0;
    }
    if (fd < 0)
        return fd;
    cleanup_close int dirfd = fd;
    fprintf(out, "root: %s\n", o->root);
    int have_digest = 0, have_initdata = 0;
    for (size_t i = 0; i < PP_ARRAY_SIZE(shown_files); i++) {
        const char *name = shown_files[i];
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            fprintf(out, "  " PP_PEERPOD_DIR "/%-22s absent\n", name);
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            fprintf(out, "  " PP_PEERPOD_DIR "/%-22s NOT A REGULAR FILE\n", name);
            continue;
        }
        fprintf(out, "  " PP_PEERPOD_DIR "/%-22s %04o %8lld bytes\n", name,
                (unsigned)(st.st_mode & 07777), (long long)st.st_size);
        have_digest |= strcmp(name, DIGEST_NAME) == 0;
        have_initdata |= strcmp(name, "initdata") == 0;
    }
    if (!have_digest) {
        fprintf(out, "initdata digest: none\n");
        return 0;
    }
    pp_buf_t d;
    pp_buf_init(&d, 0);
    int r = pud_read_file(dirfd, DIGEST_NAME, 1, 2 * PP_INITDATA_DIGEST_MAX, &d, err);
    if (r == 0)
        r = pp_buf_append_byte(&d, 0);
    if (r == 0) {
        const char *digest = (const char *)d.data;
        fprintf(out, "initdata digest: %s\n", digest);
        if (have_initdata)
            r = verify_digest(dirfd, o, digest, out, err);
    } else if (r == -ENOMEM) {
        pp_error_set(err, r, "out of memory");
    }
    pp_buf_free(&d);
    return r;
}
