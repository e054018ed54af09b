/* `process-user-data provision-files`: validate everything, bind initdata to
 * the TEE, then write /run/peerpod/ all at once. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "pud.h"
#include "tee.h"
#include "tpm.h"
#include "userdata/cloudconfig.h"
#include "userdata/initdata.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/log.h"

#define DIGEST_NAME   "initdata.digest"
#define INITDATA_PATH PP_PEERPOD_DIR "/initdata"
#define MAX_ITEMS     12

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

int pud_open_peerpod_dir(const char *root, int create, pp_error_t *err)
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
    int r = pp_file_write_all(fd, it->data, it->len);
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

/* Runs after every file is written to its temporary and before any is
 * renamed into place; a failure leaves the directory as it was. */
typedef int (*commit_hook_fn)(void *ctx, pp_error_t *err);

/* Writes every file to a temporary first, then renames them all into place:
 * a failure while writing leaves the directory as it was. rename() replaces
 * a name without following it, so a symlink planted after the check is
 * replaced, never written through. */
static int write_plan(const char *root, plan_t *plan, commit_hook_fn hook, void *hook_ctx,
                      pp_error_t *err)
{
    /* First look, without creating anything. */
    int dirfd = pud_open_peerpod_dir(root, 0, err);
    if (dirfd >= 0) {
        int r = check_targets(dirfd, plan, err);
        close(dirfd);
        if (r < 0)
            return r;
    } else if (dirfd != -ENOENT) {
        return dirfd;
    }

    cleanup_close int fd = pud_open_peerpod_dir(root, 1, err);
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
    if (hook != NULL && (r = hook(hook_ctx, err)) < 0) {
        remove_temps(fd, plan);
        return r;
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

/* ---- binding -------------------------------------------------------------- */

typedef struct binding_s {
    pud_tee_t tee;
    char launch[384]; /* the launch-bound check's result */
    char tcti[512];   /* "" when there is no TPM */
    int extend;       /* PCR8 is to be extended with `pcr_value` */
    uint8_t pcr_value[PUD_PCR_SIZE];
    char pcr8[640]; /* what happened to PCR8, for the record */
} binding_t;

static int extend_hook(void *ctx, pp_error_t *err)
{
    binding_t *b = ctx;
    int r = pud_tpm_extend_pcr8(b->tcti, b->pcr_value, err);
    if (r < 0)
        return pp_error_wrap(err, "bind initdata to the TPM");
    PP_INFO(PUD_LOG, "extended PCR8 (sha256) with the first %d bytes of the initdata digest",
            PUD_PCR_SIZE);
    return 0;
}

/* Checks the launch-bound value and prepares the PCR8 extension. Fails
 * (before anything is written) when the launch-bound value disagrees. */
static int bind_prepare(const pud_opts_t *o, const pp_initdata_t *id, binding_t *b, pp_error_t *err)
{
    memset(b, 0, sizeof(*b));
    pud_tee_detect(o, &b->tee);
    PP_INFO(PUD_LOG, "TEE: %s (%s)", pud_tee_kind_name(b->tee.kind), b->tee.evidence);
    int r = pud_check_launch_binding(o, id ? id->digest : NULL, id ? id->digest_len : 0, b->launch,
                                     sizeof(b->launch), err);
    if (r < 0)
        return r;
    PP_INFO(PUD_LOG, "launch-bound initdata: %s", b->launch);
    if (pud_tpm_tcti(o, b->tcti, sizeof(b->tcti)) < 0) {
        b->tcti[0] = '\0';
        snprintf(b->pcr8, sizeof(b->pcr8), "no TPM");
    } else if (id == NULL) {
        snprintf(b->pcr8, sizeof(b->pcr8), "not extended: no initdata (TPM `%s`)", b->tcti);
    } else {
        /* Every digest algorithm gives at least 32 bytes. */
        memcpy(b->pcr_value, id->digest, PUD_PCR_SIZE);
        b->extend = 1;
        snprintf(b->pcr8, sizeof(b->pcr8),
                 "extended with the first %d bytes of the initdata digest (TPM `%s`)", PUD_PCR_SIZE,
                 b->tcti);
    }
    PP_INFO(PUD_LOG, "PCR8: %s", b->pcr8);
    return 0;
}

/* The record `show` reads: where the user data came from and how initdata
 * was bound. */
static char *record_new(const char *source, const pp_initdata_t *id, const binding_t *b)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:s?, s:s, s:s}", "source", source, "tee",
                          pud_tee_kind_name(b->tee.kind), "tee-evidence", b->tee.evidence,
                          "initdata-digest", id ? id->digest_hex : NULL, "launch-binding",
                          b->launch, "pcr8", b->pcr8);
    if (j == NULL)
        return NULL;
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    return s;
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
    binding_t bind;
    char *record = NULL;

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
        PP_INFO(PUD_LOG, "initdata %s digest %s", pp_initdata_alg_name(id.alg), id.digest_hex);
    }

    r = bind_prepare(o, init ? &id : NULL, &bind, err);
    if (r < 0)
        goto out;
    record = record_new(source, init ? &id : NULL, &bind);
    if (record == NULL) {
        r = pp_error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    plan_put(&plan, PUD_RECORD_NAME, record, strlen(record), 0644);
    /* Last, so a reader that sees the digest sees everything else. */
    if (init != NULL)
        plan_put(&plan, DIGEST_NAME, id.digest_hex, strlen(id.digest_hex), 0644);

    r = write_plan(o->root, &plan, bind.extend ? extend_hook : NULL, &bind, err);
out:
    free(record);
    pp_initdata_free(&id);
    pp_buf_free(&toml);
    pp_cloudconfig_free(&cc);
    pp_buf_free(&raw);
    return r;
}
