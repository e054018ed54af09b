/* Files: whole reads with a maximum, writes that land whole or not at all,
 * mkdir -p. Every call blocks on the file system: use them at start-up, on
 * the threadpool, or for small files on a tmpfs.
 *
 * Functions return 0 or a negative errno and, where they take one, fill
 * `err` (which may be NULL) with a message that names the path. */
#ifndef PP_UTIL_FILE_H
#define PP_UTIL_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "util/buf.h"
#include "util/error.h"

/* Flags of the reads. */
#define PP_FILE_NOFOLLOW 0x1u /* a symlink as the last component: -ELOOP */
#define PP_FILE_REGULAR  0x2u /* anything but a regular file: -EINVAL; a FIFO never hangs */
/* On failure, clear what was read before freeing it; pp_file_read() reads
 * into a secret buffer (pp_buf_init_secret), so growth leaves no copy. */
#define PP_FILE_SECRET 0x4u

/* Appends the bytes of the file at `path` (relative to `dirfd`, or
 * AT_FDCWD) to `out`. The file is read to its end, whatever its stated size
 * (/proc files have none). More than `max` bytes: -EFBIG, "`path` is larger
 * than the limit of <max> bytes". A file that does not exist: -ENOENT. On
 * failure `out` is as it was. */
int pp_file_read_at(int dirfd, const char *path, size_t max, unsigned flags, pp_buf_t *out,
                    pp_error_t *err);

/* The whole file as a malloc'd string, NUL-terminated (`*len`, which may be
 * NULL, does not count the NUL; the bytes may hold NULs of their own). */
int pp_file_read(const char *path, size_t max, unsigned flags, char **out, size_t *len,
                 pp_error_t *err);

/* Writes all `len` bytes to `fd`, through short writes and EINTR. */
int pp_file_write_all(int fd, const void *data, size_t len);

/* Flag of pp_file_write_atomic: the file and the rename are on disk (fsync
 * of both) before it returns. Without it, for files on a tmpfs. */
#define PP_FILE_DURABLE 0x1u

/* Writes `path` whole or not at all, with `mode`: a new temporary file in
 * the same directory (created 0600, exclusively, so it never follows a
 * planted symlink), `mode` set before any byte is written, then renamed over
 * `path`. */
int pp_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                         unsigned flags, pp_error_t *err);

/* Makes `path` and its missing parents with `mode` (as `mkdir -p`). Present
 * already: 0. Something other than a directory there: -ENOTDIR. */
int pp_mkdir_p(const char *path, mode_t mode, pp_error_t *err);

/* pp_mkdir_p() of the directory that holds `path` (a socket's, a file's);
 * nothing for a name without one. */
int pp_mkdir_parents(const char *path, mode_t mode, pp_error_t *err);

#endif
