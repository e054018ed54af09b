/* Where user data comes from: the config drive, then the cloud metadata
 * services, the one the DMI strings name first. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "imds.h"
#include "iso9660.h"
#include "pud.h"
#include "userdata/cloudconfig.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/log.h"

/* Where the config drive (a `cidata` volume) may be mounted in the pod VM. */
#define CONFIG_DRIVE_MOUNTED "media/cidata/user-data"
#define CONFIG_DRIVE_LABEL   "cidata"
#define CONFIG_DRIVE_FILE    "user-data"
#define BLOCK_SCAN_MAX       256 /* block devices looked at, at most */

/* ---- paths ------------------------------------------------------------------ */

static int join(char *buf, size_t n, const char *a, const char *b)
{
    size_t al = strlen(a);
    while (al > 1 && a[al - 1] == '/')
        al--;
    int r;
    if (b == NULL || b[0] == '\0')
        r = snprintf(buf, n, "%.*s", (int)al, a);
    else if (al == 1 && a[0] == '/')
        r = snprintf(buf, n, "/%s", b);
    else
        r = snprintf(buf, n, "%.*s/%s", (int)al, a, b);
    return r < 0 || (size_t)r >= n ? -ENAMETOOLONG : 0;
}

int pud_path(const pud_opts_t *o, enum pud_base base, const char *rel, char *buf, size_t n)
{
    char b[PATH_MAX];
    int r = 0;
    switch (base) {
    case PUD_BASE_ROOT:
        return join(buf, n, o->root, rel);
    case PUD_BASE_SYSFS:
        if (o->sysfs != NULL)
            return join(buf, n, o->sysfs, rel);
        r = join(b, sizeof(b), o->root, "sys");
        break;
    case PUD_BASE_DEV:
        if (o->dev != NULL)
            return join(buf, n, o->dev, rel);
        r = join(b, sizeof(b), o->root, "dev");
        break;
    case PUD_BASE_CONFIGFS:
        if (o->configfs != NULL)
            return join(buf, n, o->configfs, rel);
        r = pud_path(o, PUD_BASE_SYSFS, "kernel/config", b, sizeof(b));
        break;
    }
    return r < 0 ? r : join(buf, n, b, rel);
}

int pud_read_attr(const char *path, char *buf, size_t n)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    while (len + 1 < n) {
        ssize_t r = read(fd, buf + len, n - 1 - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' ' || buf[len - 1] == '\t' ||
                       buf[len - 1] == '\0'))
        len--;
    buf[len] = '\0';
    return 0;
}

size_t pud_user_data_max(const pud_opts_t *o)
{
    if (o->max_size == 0)
        return PP_USERDATA_MAX_DEFAULT;
    return o->max_size < PP_USERDATA_MAX_LIMIT ? o->max_size : PP_USERDATA_MAX_LIMIT;
}

int pud_metadata_enabled(const pud_opts_t *o)
{
    return o->metadata_url != NULL || strcmp(o->root, "/") == 0;
}

const char *pud_metadata_url(const pud_opts_t *o)
{
    return o->metadata_url != NULL ? o->metadata_url : PUD_METADATA_URL_DEFAULT;
}

unsigned pud_probe_timeout_ms(const pud_opts_t *o)
{
    if (o->probe_timeout_ms == 0)
        return PUD_PROBE_TIMEOUT_MS_DEFAULT;
    return o->probe_timeout_ms < PUD_PROBE_TIMEOUT_MS_MAX ? o->probe_timeout_ms
                                                          : PUD_PROBE_TIMEOUT_MS_MAX;
}

/* ---- config drive ---------------------------------------------------------- */

/* Reads user-data from the ISO9660 image at `path` (block device or image
 * file) when it is labelled `cidata`. -ENOENT when it is not (or cannot be
 * opened: a CD-ROM drive without a disc), or has no such file (then
 * `*labelled` is set); 0 with the bytes; or a hard error for a `cidata`
 * volume whose directory or file is malformed or too large. */
static int read_drive(const char *path, size_t max, pp_buf_t *out, int *labelled, pp_error_t *err)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return pp_error_set(err, -ENOENT, "open `%s`: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0)
        return pp_error_set(err, -ENOENT, "stat `%s`: %s", path, strerror(errno));
    uint64_t size;
    if (S_ISREG(st.st_mode)) {
        size = (uint64_t)st.st_size;
    } else if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, &size) < 0)
            return pp_error_set(err, -ENOENT, "size of `%s`: %s", path, strerror(errno));
    } else {
        return pp_error_set(err, -ENOENT, "`%s` is not a block device", path);
    }
    pud_iso_t iso;
    pp_error_t e = {0};
    /* Anything that does not open as a volume labelled `cidata` is some
     * other disk, and skipped. */
    int r = pud_iso9660_open(&iso, pud_iso_fd_read, &fd, size, &e);
    if (r < 0)
        return pp_error_set(err, -ENOENT, "`%s`: %s", path, e.message);
    if (strcasecmp(iso.label, CONFIG_DRIVE_LABEL) != 0)
        return pp_error_set(err, -ENOENT, "`%s` is labelled `%s`", path, iso.label);
    r = pud_iso9660_read_file(&iso, CONFIG_DRIVE_FILE, max, out, &e);
    if (r == -ENOENT) {
        *labelled = 1;
        return pp_error_set(
            err, -ENOENT, "config drive `%s` has no `" CONFIG_DRIVE_FILE "` in its root directory",
            path);
    }
    if (r < 0) {
        pp_error_set(err, r, "%s", e.message);
        return pp_error_wrap(err, "config drive `%s`", path);
    }
    PP_INFO(PUD_LOG, "config drive: read `" CONFIG_DRIVE_FILE "` from the iso9660 volume on `%s`",
            path);
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The drive by its label, then every block device. */
static int probe_block_devices(const pud_opts_t *o, size_t max, pp_buf_t *out, pp_error_t *err)
{
    static const char *const by_label[] = {"disk/by-label/cidata", "disk/by-label/CIDATA"};
    char path[PATH_MAX], missing[PP_ERROR_MAX] = "";
    int labelled = 0;
    for (size_t i = 0; i < PP_ARRAY_SIZE(by_label); i++) {
        if (pud_path(o, PUD_BASE_DEV, by_label[i], path, sizeof(path)) < 0 ||
            access(path, F_OK) < 0)
            continue;
        int r = read_drive(path, max, out, &labelled, err);
        if (r != -ENOENT)
            return r;
        PP_DEBUG(PUD_LOG, "%s", err->message);
        if (labelled && missing[0] == '\0')
            snprintf(missing, sizeof(missing), "%s", err->message);
    }
    char blocks[PATH_MAX];
    if (pud_path(o, PUD_BASE_SYSFS, "class/block", blocks, sizeof(blocks)) < 0)
        return -ENOENT;
    DIR *d = opendir(blocks);
    if (d == NULL) {
        if (missing[0] != '\0')
            return pp_error_set(err, -ENOENT, "%s", missing);
        return pp_error_set(err, -ENOENT, "no `%s`", blocks);
    }
    /* readdir order is arbitrary; sort by name so the result is stable. */
    char names[BLOCK_SCAN_MAX][NAME_MAX + 1];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < BLOCK_SCAN_MAX) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(names[n++], sizeof(names[0]), "%s", e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), compare_names);
    for (size_t i = 0; i < n; i++) {
        if (pud_path(o, PUD_BASE_DEV, names[i], path, sizeof(path)) < 0)
            continue;
        int r = read_drive(path, max, out, &labelled, err);
        if (r != -ENOENT)
            return r;
        PP_DEBUG(PUD_LOG, "%s", err->message);
        if (labelled && missing[0] == '\0')
            snprintf(missing, sizeof(missing), "%s", err->message);
    }
    if (missing[0] != '\0')
        return pp_error_set(err, -ENOENT, "%s", missing);
    return pp_error_set(err, -ENOENT, "no iso9660 volume labelled `" CONFIG_DRIVE_LABEL "`");
}

/* The config drive: the file on a volume the image mounted (read relative
 * to the root so tests can plant one), else the volume itself. */
static int probe_config_drive(const pud_opts_t *o, pp_buf_t *out, pp_error_t *err)
{
    size_t max = pud_user_data_max(o);
    cleanup_close int root = open(o->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0)
        return pp_error_set(err, -errno, "open root `%s`: %s", o->root, strerror(errno));
    int r = pp_file_read_at(root, CONFIG_DRIVE_MOUNTED, max, PP_FILE_REGULAR, out, err);
    if (r == 0) {
        PP_INFO(PUD_LOG, "config drive: read `/" CONFIG_DRIVE_MOUNTED "`");
        return 0;
    }
    if (r != -ENOENT && r != -ENOTDIR)
        return r;
    return probe_block_devices(o, max, out, err);
}

const pud_source_t pud_source_config_drive = {.name = "config-drive", .probe = probe_config_drive};

/* ---- order ------------------------------------------------------------------- */

static const pud_source_t *const clouds[] = {
    &pud_source_azure,
    &pud_source_aws,
    &pud_source_gcp,
    &pud_source_ibmcloud,
};

enum match { PREFIX, EXACT_NOCASE };

/* DMI strings that name a cloud (/sys/class/dmi/id). */
static const struct {
    const char *attr;
    enum match how;
    const char *value;
    const pud_source_t *source;
} dmi_hints[] = {
    {"sys_vendor", PREFIX, "Microsoft Corporation", &pud_source_azure},
    {"chassis_asset_tag", EXACT_NOCASE, "7783-7084-3265-9085-8269-3286-77", &pud_source_azure},
    {"sys_vendor", PREFIX, "Amazon EC2", &pud_source_aws},
    {"product_name", PREFIX, "Amazon EC2", &pud_source_aws},
    {"sys_vendor", PREFIX, "Google", &pud_source_gcp},
    {"product_name", PREFIX, "Google Compute Engine", &pud_source_gcp},
    {"sys_vendor", PREFIX, "IBM", &pud_source_ibmcloud},
    {"chassis_asset_tag", EXACT_NOCASE, "ibmcloud", &pud_source_ibmcloud},
};

const pud_source_t *pud_dmi_hint(const pud_opts_t *o, char *why, size_t why_len)
{
    for (size_t i = 0; i < PP_ARRAY_SIZE(dmi_hints); i++) {
        char rel[64], path[PATH_MAX], v[256];
        snprintf(rel, sizeof(rel), "class/dmi/id/%s", dmi_hints[i].attr);
        if (pud_path(o, PUD_BASE_SYSFS, rel, path, sizeof(path)) < 0 ||
            pud_read_attr(path, v, sizeof(v)) < 0)
            continue;
        const char *want = dmi_hints[i].value;
        int hit = dmi_hints[i].how == PREFIX ? strncmp(v, want, strlen(want)) == 0
                                             : strcasecmp(v, want) == 0;
        if (!hit)
            continue;
        if (why != NULL)
            snprintf(why, why_len, "DMI %s `%s`", dmi_hints[i].attr, v);
        return dmi_hints[i].source;
    }
    if (why != NULL && why_len > 0)
        why[0] = '\0';
    return NULL;
}

size_t pud_source_order(const pud_opts_t *o, const pud_source_t **out, char *why, size_t why_len)
{
    size_t n = 0;
    out[n++] = &pud_source_config_drive;
    const pud_source_t *hint = pud_dmi_hint(o, why, why_len);
    if (hint != NULL)
        out[n++] = hint;
    for (size_t i = 0; i < PP_ARRAY_SIZE(clouds); i++)
        if (clouds[i] != hint)
            out[n++] = clouds[i];
    return n;
}

/* ---- fetch --------------------------------------------------------------------- */

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int pud_fetch(const pud_opts_t *o, pp_buf_t *out, const char **source, pp_error_t *err)
{
    if (o->from != NULL) {
        *source = o->from;
        return pp_file_read_at(AT_FDCWD, o->from, pud_user_data_max(o), PP_FILE_REGULAR, out, err);
    }
    const pud_source_t *order[PUD_MAX_SOURCES];
    char why[320];
    size_t n = pud_source_order(o, order, why, sizeof(why));
    int network = pud_metadata_enabled(o);
    if (!network)
        PP_INFO(PUD_LOG,
                "cloud metadata services not asked: the root is `%s`, not `/`, and no "
                "metadata URL was given",
                o->root);
    else if (why[0] != '\0')
        PP_INFO(PUD_LOG, "%s: trying `%s` first among the clouds", why, order[1]->name);

    uint64_t deadline = pud_now_ms() + (uint64_t)o->wait_s * 1000;
    uint64_t pause = 1000;
    for (unsigned round = 1;; round++) {
        char tried[256] = "";
        for (size_t i = 0; i < n; i++) {
            const pud_source_t *s = order[i];
            if ((s->flags & PUD_SOURCE_NETWORK) && !network)
                continue;
            PP_INFO(PUD_LOG, "probing `%s`", s->name);
            pp_error_clear(err);
            size_t len = out->len;
            uint64_t t0 = pud_now_ms();
            int r = s->probe(o, out, err);
            if (r == 0) {
                *source = s->name;
                return 0;
            }
            out->len = len;
            if (r != -ENOENT)
                return pp_error_wrap(err, "user data source `%s`", s->name);
            PP_INFO(PUD_LOG, "`%s` has no user data (%llu ms): %s", s->name,
                    (unsigned long long)(pud_now_ms() - t0), err->message);
            size_t used = strlen(tried);
            snprintf(tried + used, sizeof(tried) - used, "%s%s", used ? ", " : "", s->name);
        }
        uint64_t now = pud_now_ms();
        if (now >= deadline)
            return pp_error_set(err, -ENOENT, "no user data found (tried: %s)", tried);
        uint64_t wait = pause < deadline - now ? pause : deadline - now;
        PP_INFO(PUD_LOG, "no user data yet (round %u); trying again in %llu ms", round,
                (unsigned long long)wait);
        sleep_ms(wait);
        if (pause < 5000)
            pause *= 2;
    }
}
