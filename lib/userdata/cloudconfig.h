/* User data: the `#cloud-config` document CAA gives a pod VM, and the strict
 * reader the VM uses on it (design.md §4 "User data").
 *
 * The document is `#cloud-config` and a `write_files` sequence whose entries
 * have exactly `path` and `content`, both strings; paths come from a fixed
 * allow-list under /run/peerpod/.
 *
 * The builder (CAA side) writes each content as a YAML literal block when
 * that holds it exactly, else as a one-line double-quoted string with
 * escapes, so that YAML readers (cloud-init, Go yaml, ours) read back the
 * same bytes. Content must be valid UTF-8.
 *
 * The parser (VM side) reads untrusted bytes. It accepts the YAML forms a
 * generator of this document plausibly emits (block sequences, compact or
 * indented; plain, single- and double-quoted strings, multi-line with
 * folding; literal and folded block scalars with chomping and indentation
 * indicators; comments; `---` and `...` around the one document), as
 * PyYAML and Go's yaml.v2 read them, and rejects everything else with a
 * message naming the line: other keys, anchors, aliases, tags, flow
 * collections, tabs in indentation, carriage returns, raw U+0085, U+2028
 * and U+2029 (line breaks to YAML 1.1 only), plain scalars some reader
 * would take for a non-string, paths off the list, duplicate paths, and
 * documents over the size limit. It allocates a few times the input size
 * at most and never recurses.
 *
 * All functions are pure and thread-safe; results are plain heap objects. */
#ifndef PP_USERDATA_CLOUDCONFIG_H
#define PP_USERDATA_CLOUDCONFIG_H

#include <stddef.h>

#include "util/buf.h"
#include "util/error.h"

#define PP_PEERPOD_DIR "/run/peerpod"

/* Default limit on the user data document, in bytes. */
#define PP_USERDATA_MAX_DEFAULT (256u * 1024)
/* The limit can be raised, never past this. */
#define PP_USERDATA_MAX_LIMIT (16u * 1024 * 1024)

/* A file the user data may write. */
typedef struct pp_userdata_path_s {
    const char *path; /* absolute: "/run/peerpod/apf.json" */
    const char *name; /* the last component: "apf.json" */
    unsigned mode;    /* 0600 for files holding keys, else 0644 */
} pp_userdata_path_t;

/* One `write_files` entry. In a parsed document both strings are owned by the
 * pp_cloudconfig_t; `content` is NUL-terminated after `len` bytes but may
 * hold NUL bytes itself (from a "\0" escape), so use `len`. */
typedef struct pp_userdata_file_s {
    const char *path;
    const char *content;
    size_t len;
} pp_userdata_file_t;

typedef struct pp_cloudconfig_s {
    pp_userdata_file_t *files; /* in document order */
    size_t nfiles;
} pp_cloudconfig_t;

/* The allow-list entry for `path`, or NULL when the path may not be written. */
const pp_userdata_path_t *pp_userdata_path_lookup(const char *path);

/* The allow-list itself, `*n` (PP_USERDATA_PATHS) entries. */
#define PP_USERDATA_PATHS 6
const pp_userdata_path_t *pp_userdata_paths(size_t *n);

/* 0 when `path` is on the allow-list, else -EINVAL with a message that says
 * why (relative, traversal, outside /run/peerpod, not an allowed name). */
int pp_userdata_path_check(const char *path, pp_error_t *err);

/* Appends the document for `n` files to `out`. Fails with -EINVAL (path not
 * allowed, duplicate path, content not UTF-8) or as pp_buf_append(). On
 * failure `out` may hold a partial document. */
int pp_cloudconfig_build(const pp_userdata_file_t *files, size_t n, pp_buf_t *out, pp_error_t *err);

/* Parses `len` bytes of user data. `max_size` 0 means
 * PP_USERDATA_MAX_DEFAULT; larger than PP_USERDATA_MAX_LIMIT means that
 * limit. On success fills `out` (free with
 * pp_cloudconfig_free); on failure returns -EINVAL (malformed or refused),
 * -EMSGSIZE (over the limit) or -ENOMEM, with `out` zeroed. */
int pp_cloudconfig_parse(const void *data, size_t len, size_t max_size, pp_cloudconfig_t *out,
                         pp_error_t *err);

void pp_cloudconfig_free(pp_cloudconfig_t *cc);

/* The entry for `path`, or NULL. */
const pp_userdata_file_t *pp_cloudconfig_find(const pp_cloudconfig_t *cc, const char *path);

#endif
