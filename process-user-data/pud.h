/* process-user-data: provisions /run/peerpod/ in a pod VM from the user data
 * CAA sent (design.md §4 "User data", "Initdata").
 *
 * The work runs once at boot, as root, before the forwarder starts; it is a
 * short-lived CLI, so plain blocking I/O is fine here. Everything read is
 * untrusted until parsed: nothing is written unless the whole user data and
 * its initdata validated (and, where the platform carries a launch-bound
 * value, that value matches the initdata digest), and writes never follow a
 * symlink under the root.
 *
 * Everything the program looks at on the machine is found under `root` by
 * default (<root>/sys, <root>/dev, <root>/sys/kernel/config), so a test
 * tree can stand for the machine; each can be pointed elsewhere. Cloud
 * metadata services describe the machine the program runs on, so they are
 * asked only when provisioning that machine (root `/`) or when a metadata
 * URL is given explicitly. */
#ifndef PUD_H
#define PUD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/buf.h"
#include "util/error.h"

#define PUD_LOG "process-user-data"

#define PUD_METADATA_URL_DEFAULT "http://169.254.169.254"
/* Each source gets this long, all its requests together. */
#define PUD_PROBE_TIMEOUT_MS_DEFAULT 2000u
#define PUD_PROBE_TIMEOUT_MS_MAX     60000u

typedef struct pud_opts_s {
    const char *root;     /* the file system root to provision under, "/" in the VM */
    const char *from;     /* read user data from this file; NULL: probe the sources */
    size_t max_size;      /* limit on user data, bytes (0: the library's default) */
    size_t max_initdata;  /* limit on decompressed initdata, bytes (0: default) */
    const char *sysfs;    /* sysfs root; NULL: <root>/sys */
    const char *dev;      /* device directory; NULL: <root>/dev */
    const char *configfs; /* configfs root; NULL: <sysfs>/kernel/config */
    /* Cloud metadata base URL. NULL: PUD_METADATA_URL_DEFAULT, and only
     * when root is "/". */
    const char *metadata_url;
    unsigned probe_timeout_ms; /* per source; 0: PUD_PROBE_TIMEOUT_MS_DEFAULT */
    unsigned wait_s;           /* repeat the probes this long while none has user data */
    const char *tcti;          /* TPM TCTI; NULL: device:<dev>/tpmrm0 when that exists */
} pud_opts_t;

/* ---- paths (source.c) ------------------------------------------------------ */

enum pud_base { PUD_BASE_ROOT, PUD_BASE_SYSFS, PUD_BASE_DEV, PUD_BASE_CONFIGFS };

/* Writes <base>/<rel> into `buf`; -ENAMETOOLONG when it does not fit. */
int pud_path(const pud_opts_t *o, enum pud_base base, const char *rel, char *buf, size_t n);

/* Reads a small text attribute (sysfs, configfs) at `path`: at most `n`-1
 * bytes, NUL-terminated, trailing white space removed. 0 or -errno. */
int pud_read_attr(const char *path, char *buf, size_t n);

/* ---- sources (source.c) ---------------------------------------------------- */

#define PUD_SOURCE_NETWORK 1u /* asks a metadata service */

/* A place user data may come from. `probe` returns 0 with the bytes appended
 * to `out`, -ENOENT when the source is absent on this VM or holds no user
 * data (the next one is tried; `err` says why), or another error that ends
 * the search (malformed or oversized answers above all). */
typedef struct pud_source_s {
    const char *name;
    unsigned flags;
    int (*probe)(const pud_opts_t *o, pp_buf_t *out, pp_error_t *err);
} pud_source_t;

#define PUD_MAX_SOURCES 8

/* The sources in the order they are tried: the config drive, then the cloud
 * the DMI strings point to (if any), then the other clouds. Fills `out`
 * (PUD_MAX_SOURCES entries) and returns how many; `why` (may be NULL)
 * receives the DMI evidence for the hint, or "". */
size_t pud_source_order(const pud_opts_t *o, const pud_source_t **out, char *why, size_t why_len);

/* The cloud source the DMI strings under <sysfs>/class/dmi/id point to, or
 * NULL. `why` receives e.g. "sys_vendor `Amazon EC2`". */
const pud_source_t *pud_dmi_hint(const pud_opts_t *o, char *why, size_t why_len);

/* 1 when the metadata services may be asked (see the top of this file). */
int pud_metadata_enabled(const pud_opts_t *o);

/* The metadata base URL in effect. */
const char *pud_metadata_url(const pud_opts_t *o);

/* The per-source time limit in effect, milliseconds. */
unsigned pud_probe_timeout_ms(const pud_opts_t *o);

/* Fetches the user data: from `o->from` when set, else from the first source
 * that has it. `*source` names where it came from (static storage). */
int pud_fetch(const pud_opts_t *o, pp_buf_t *out, const char **source, pp_error_t *err);

/* The limit on user data in effect: --max-size within the library's bounds. */
size_t pud_user_data_max(const pud_opts_t *o);

/* The config drive source, for the table in pud_source_order(). */
extern const pud_source_t pud_source_config_drive;

/* ---- provisioning (provision.c, show.c) ------------------------------------ */

/* What provisioning records beside the files, for `show`. */
#define PUD_RECORD_NAME "provision.json"

/* Opens <root>/run/peerpod; -ENOENT when it does not exist and !create. */
int pud_open_peerpod_dir(const char *root, int create, pp_error_t *err);

/* Fetches, validates, binds and writes everything; 0 or a negative errno. */
int pud_provision(const pud_opts_t *o, pp_error_t *err);

/* Prints what is provisioned under the root (source, files, TEE, digest),
 * and checks the initdata digest against the stored initdata. Fails on a
 * mismatch. */
int pud_show(const pud_opts_t *o, FILE *out, pp_error_t *err);

#endif
