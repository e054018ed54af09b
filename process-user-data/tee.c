#include "tee.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/file.h"
#include "util/hex.h"
#include "util/log.h"

static const char *const kind_names[] = {
    [PUD_TEE_NONE] = "none",
    [PUD_TEE_SNP] = "snp",
    [PUD_TEE_TDX] = "tdx",
    [PUD_TEE_VTPM] = "vtpm",
};

const char *pud_tee_kind_name(pud_tee_kind_t kind)
{
    return (unsigned)kind < PP_ARRAY_SIZE(kind_names) ? kind_names[kind] : "none";
}

/* ---- configfs-tsm ---------------------------------------------------------------- */

typedef struct tsm_entry_s {
    char dir[PATH_MAX];
    int created;
} tsm_entry_t;

static int entry_path(const tsm_entry_t *e, const char *attr, char *buf, size_t n)
{
    int r = snprintf(buf, n, "%s/%s", e->dir, attr);
    return r < 0 || (size_t)r >= n ? -ENAMETOOLONG : 0;
}

/* Makes our report entry; -ENOENT when there is no configfs-tsm. */
static int tsm_open(const pud_opts_t *o, tsm_entry_t *e, pp_error_t *err)
{
    char reports[PATH_MAX];
    int r = pud_path(o, PUD_BASE_CONFIGFS, "tsm/report", reports, sizeof(reports));
    if (r < 0)
        return pp_error_set(err, r, "configfs path too long");
    struct stat st;
    if (stat(reports, &st) < 0 || !S_ISDIR(st.st_mode))
        return pp_error_set(err, -ENOENT, "no configfs-tsm at `%s`", reports);
    r = snprintf(e->dir, sizeof(e->dir), "%s/" PUD_TSM_ENTRY, reports);
    if (r < 0 || (size_t)r >= sizeof(e->dir))
        return pp_error_set(err, -ENAMETOOLONG, "configfs path too long");
    e->created = 0;
    if (mkdir(e->dir, 0700) == 0)
        e->created = 1;
    else if (errno != EEXIST) /* a left-over entry of ours is reused */
        return pp_error_set(err, -errno, "create `%s`: %s", e->dir, strerror(errno));
    return 0;
}

static void tsm_close(tsm_entry_t *e)
{
    /* On configfs this releases the entry; in a plain directory (a test
     * tree) it fails on the files in it, which is fine. */
    if (rmdir(e->dir) < 0 && errno != ENOTEMPTY && errno != ENOENT)
        PP_DEBUG(PUD_LOG, "remove `%s`: %s", e->dir, strerror(errno));
}

static int tsm_attr(const tsm_entry_t *e, const char *attr, char *buf, size_t n, pp_error_t *err)
{
    char path[PATH_MAX];
    int r = entry_path(e, attr, path, sizeof(path));
    if (r == 0)
        r = pud_read_attr(path, buf, n);
    return r < 0 ? pp_error_set(err, r, "read `%s/%s`: %s", e->dir, attr, strerror(-r)) : 0;
}

/* configfs takes a binary attribute when the file is closed, so the close
 * is where a refusal shows. */
static int tsm_write_inblob(const tsm_entry_t *e, pp_error_t *err)
{
    char path[PATH_MAX];
    int r = entry_path(e, "inblob", path, sizeof(path));
    if (r < 0)
        return pp_error_set(err, r, "configfs path too long");
    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return pp_error_set(err, -errno, "open `%s`: %s", path, strerror(errno));
    /* The report data is not used: only fields the launch fixed are read. */
    static const uint8_t zeros[PUD_TSM_INBLOB];
    ssize_t w = write(fd, zeros, sizeof(zeros));
    int e1 = w < 0 ? errno : (w != (ssize_t)sizeof(zeros) ? EIO : 0);
    int e2 = close(fd) < 0 ? errno : 0;
    if (e1 != 0 || e2 != 0)
        return pp_error_set(err, -(e1 ? e1 : e2), "write `%s`: %s", path, strerror(e1 ? e1 : e2));
    return 0;
}

int pud_tsm_report(const pud_opts_t *o, char *provider, size_t provider_len, pp_buf_t *out,
                   pp_error_t *err)
{
    tsm_entry_t e;
    int r = tsm_open(o, &e, err);
    if (r < 0)
        return r;
    char gen1[32], gen2[32], path[PATH_MAX];
    r = tsm_write_inblob(&e, err);
    if (r == 0)
        r = tsm_attr(&e, "provider", provider, provider_len, err);
    if (r == 0)
        r = tsm_attr(&e, "generation", gen1, sizeof(gen1), err);
    if (r == 0 && (r = entry_path(&e, "outblob", path, sizeof(path))) < 0)
        pp_error_set(err, r, "configfs path too long");
    if (r == 0)
        r = pp_file_read_at(AT_FDCWD, path, PUD_TSM_OUTBLOB, PP_FILE_REGULAR | PP_FILE_NOFOLLOW,
                            out, err);
    if (r == -EFBIG) /* more than the kernel ever gives: a message too large, not a file */
        r = pp_error_set(err, -EMSGSIZE, "`%s` is larger than the limit of %u bytes", path,
                         (unsigned)PUD_TSM_OUTBLOB);
    if (r == 0)
        r = tsm_attr(&e, "generation", gen2, sizeof(gen2), err);
    if (r == 0 && strcmp(gen1, gen2) != 0)
        r = pp_error_set(err, -EBUSY,
                         "`%s` changed while it was read (generation %s, then %s): another "
                         "writer uses it",
                         e.dir, gen1, gen2);
    tsm_close(&e);
    return r;
}

static int tsm_provider(const pud_opts_t *o, char *provider, size_t n)
{
    tsm_entry_t e;
    if (tsm_open(o, &e, NULL) < 0)
        return -ENOENT;
    int r = tsm_attr(&e, "provider", provider, n, NULL);
    tsm_close(&e);
    return r;
}

/* ---- launch-bound values ------------------------------------------------------ */

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static int snp_value(const uint8_t *b, size_t len, pud_launch_value_t *lv, pp_error_t *err)
{
    if (len < PUD_SNP_HOST_DATA + 32)
        return pp_error_set(err, -EBADMSG, "SNP report of %zu bytes is too short", len);
    lv->field = "HOST_DATA";
    lv->len = 32;
    memcpy(lv->value, b + PUD_SNP_HOST_DATA, 32);
    return 0;
}

/* TD quote (Intel TDX DCAP quote format): a 48-byte header (version u16,
 * attestation key type u16, TEE type u32, ...), then in version 4 the TD
 * report body; version 5 puts a body descriptor (type u16, size u32) first. */
static int tdx_value(const uint8_t *b, size_t len, pud_launch_value_t *lv, pp_error_t *err)
{
    if (len < 48)
        return pp_error_set(err, -EBADMSG, "TDX quote of %zu bytes is too short", len);
    uint16_t version = le16(b);
    if (le32(b + 4) != PUD_TDX_TEE_TYPE)
        return pp_error_set(err, -EBADMSG, "TDX quote with TEE type %#x", le32(b + 4));
    size_t body;
    if (version == 4) {
        body = 48;
    } else if (version == 5) {
        if (len < 54)
            return pp_error_set(err, -EBADMSG, "TDX quote of %zu bytes is too short", len);
        uint16_t type = le16(b + 48);
        if (type != 2 && type != 3) /* TD report 1.0, 1.5 */
            return pp_error_set(err, -EBADMSG, "TDX quote v5 with body type %u", type);
        body = 54;
    } else {
        return pp_error_set(err, -EBADMSG, "TDX quote version %u", version);
    }
    if (len < body + PUD_TDX_MRCONFIGID + 48)
        return pp_error_set(err, -EBADMSG, "TDX quote of %zu bytes is too short", len);
    lv->field = "MRCONFIGID";
    lv->len = 48;
    memcpy(lv->value, b + body + PUD_TDX_MRCONFIGID, 48);
    return 0;
}

static const struct {
    const char *provider;
    int (*parse)(const uint8_t *b, size_t len, pud_launch_value_t *lv, pp_error_t *err);
} launch_parsers[] = {
    {"sev_guest", snp_value},
    {"tdx_guest", tdx_value},
};

int pud_tsm_launch_value(const char *provider, const uint8_t *blob, size_t len,
                         pud_launch_value_t *lv, pp_error_t *err)
{
    memset(lv, 0, sizeof(*lv));
    for (size_t i = 0; i < PP_ARRAY_SIZE(launch_parsers); i++)
        if (strcmp(provider, launch_parsers[i].provider) == 0)
            return launch_parsers[i].parse(blob, len, lv, err);
    return pp_error_set(err, -ENOTSUP, "provider `%s` has no launch-bound value known here",
                        provider);
}

void pud_launch_expected(const uint8_t *digest, size_t digest_len, size_t len, uint8_t *out)
{
    size_t n = digest_len < len ? digest_len : len;
    memcpy(out, digest, n);
    memset(out + n, 0, len - n);
}

static int all_zero(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

int pud_check_launch_binding(const pud_opts_t *o, const uint8_t *digest, size_t digest_len,
                             char *result, size_t result_len, pp_error_t *err)
{
    char provider[64] = "";
    pp_buf_t blob;
    pp_buf_init(&blob, 0);
    pp_error_t e = {0};
    pud_launch_value_t lv;
    int r = pud_tsm_report(o, provider, sizeof(provider), &blob, &e);
    if (r == 0)
        r = pud_tsm_launch_value(provider, blob.data, blob.len, &lv, &e);
    pp_buf_free(&blob);
    if (r == -ENOENT) {
        snprintf(result, result_len, "skipped: no configfs-tsm");
        return 0;
    }
    if (r < 0) {
        snprintf(result, result_len, "skipped: %s", e.message);
        PP_WARN(PUD_LOG, "launch-bound initdata check skipped: %s", e.message);
        return 0;
    }
    char got[2 * sizeof(lv.value) + 1], want_hex[2 * sizeof(lv.value) + 1];
    pp_hex_encode(lv.value, lv.len, got);
    if (all_zero(lv.value, lv.len)) {
        snprintf(result, result_len, "skipped: %s unset (%s)", lv.field, provider);
        return 0;
    }
    if (digest == NULL)
        return pp_error_set(err, -EPERM,
                            "the launch bound %s %s (%s), but the user data carries no initdata; "
                            "refusing to provision",
                            lv.field, got, provider);
    uint8_t want[sizeof(lv.value)];
    pud_launch_expected(digest, digest_len, lv.len, want);
    pp_hex_encode(want, lv.len, want_hex);
    if (memcmp(want, lv.value, lv.len) != 0)
        return pp_error_set(err, -EPERM,
                            "launch-bound %s %s (%s) does not match the initdata digest (want "
                            "%s); refusing to provision",
                            lv.field, got, provider, want_hex);
    snprintf(result, result_len, "%s matches (%s)", lv.field, provider);
    return 0;
}

/* ---- detection ---------------------------------------------------------------- */

static int dev_exists(const pud_opts_t *o, const char *name, char *path, size_t n)
{
    struct stat st;
    return pud_path(o, PUD_BASE_DEV, name, path, n) == 0 && stat(path, &st) == 0;
}

void pud_tee_detect(const pud_opts_t *o, pud_tee_t *t)
{
    memset(t, 0, sizeof(*t));
    char path[PATH_MAX];
    t->have_tpm = dev_exists(o, "tpmrm0", path, sizeof(path));
    if (tsm_provider(o, t->provider, sizeof(t->provider)) < 0)
        t->provider[0] = '\0';
    static const struct {
        pud_tee_kind_t kind;
        const char *dev;
        const char *provider;
    } probes[] = {
        {PUD_TEE_SNP, "sev-guest", "sev_guest"},
        {PUD_TEE_TDX, "tdx_guest", "tdx_guest"},
    };
    for (size_t i = 0; i < PP_ARRAY_SIZE(probes); i++) {
        if (dev_exists(o, probes[i].dev, path, sizeof(path))) {
            t->kind = probes[i].kind;
            snprintf(t->evidence, sizeof(t->evidence), "`%s`", path);
            return;
        }
        if (strcmp(t->provider, probes[i].provider) == 0) {
            t->kind = probes[i].kind;
            snprintf(t->evidence, sizeof(t->evidence), "configfs-tsm provider `%s`", t->provider);
            return;
        }
    }
    if (t->have_tpm) {
        t->kind = PUD_TEE_VTPM;
        dev_exists(o, "tpmrm0", path, sizeof(path));
        snprintf(t->evidence, sizeof(t->evidence), "`%s`", path);
        return;
    }
    t->kind = PUD_TEE_NONE;
    snprintf(t->evidence, sizeof(t->evidence), "no TEE device, no configfs-tsm provider");
}
