/* process-user-data: provisions /run/peerpod/ in a pod VM from the user data
 * CAA sent (design.md §4 "User data", "Initdata").
 *
 * The work runs once at boot, as root, before the forwarder starts; it is a
 * short-lived CLI, so plain blocking I/O is fine here. Everything read is
 * untrusted until parsed: nothing is written unless the whole user data and
 * its initdata validated, and writes never follow a symlink under the
 * root. */
#ifndef PUD_H
#define PUD_H

#include <stddef.h>
#include <stdio.h>

#include "util/buf.h"
#include "util/error.h"

#define PUD_LOG "process-user-data"

typedef struct pud_opts_s {
    const char *root;    /* the file system root to provision under, "/" in the VM */
    const char *from;    /* read user data from this file; NULL: probe the sources */
    size_t max_size;     /* limit on user data, bytes (0: the library's default) */
    size_t max_initdata; /* limit on decompressed initdata, bytes (0: default) */
} pud_opts_t;

/* ---- sources (source.c) ---------------------------------------------------- */

/* A place user data may come from. `probe` returns 0 with the bytes appended
 * to `out`, -ENOENT when the source is absent on this VM (the next one is
 * tried), or another error that ends the search. */
typedef struct pud_source_s {
    const char *name;
    int (*probe)(const pud_opts_t *o, pp_buf_t *out, pp_error_t *err);
} pud_source_t;

/* Fetches the user data: from `o->from` when set, else from the first source
 * in the table that has it. `*source` names where it came from. */
int pud_fetch(const pud_opts_t *o, pp_buf_t *out, const char **source, pp_error_t *err);

/* The limit on user data in effect: --max-size within the library's bounds. */
size_t pud_user_data_max(const pud_opts_t *o);

/* Reads a regular file at `path` relative to `dirfd` (or AT_FDCWD), at most
 * `max` bytes (-EMSGSIZE past that). With `nofollow` a symlink as the last
 * component is refused. */
int pud_read_file(int dirfd, const char *path, int nofollow, size_t max, pp_buf_t *out,
                  pp_error_t *err);

/* ---- provisioning (provision.c) -------------------------------------------- */

/* Fetches, validates and writes everything; 0 or a negative errno. */
int pud_provision(const pud_opts_t *o, pp_error_t *err);

/* Prints what is provisioned under the root, and checks the initdata digest
 * against the stored initdata. Fails on a mismatch. */
int pud_show(const pud_opts_t *o, FILE *out, pp_error_t *err);

#endif
