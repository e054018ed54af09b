/* A reader for the one thing process-user-data needs from an ISO9660 image
 * (ECMA-119): the volume label and one regular file in the root directory,
 * read straight from the device without mounting it.
 *
 * The image is untrusted: every offset and length is checked against the
 * image size and the structure it lives in, both-endian fields must agree,
 * directories are read whole but bounded (PUD_ISO_DIR_MAX), and nothing
 * recurses. File names are matched as Linux shows them: the Rock Ridge
 * name (SUSP `NM` entries) on the primary volume, else the Joliet name
 * (UCS-2 on a supplementary volume), else the plain ISO9660 name with its
 * `;1` version and trailing dot removed, compared case-insensitively with
 * `-` and `_` taken as equal (mkisofs maps one to the other). Multi-extent
 * and interleaved files are refused. Pure apart from the read callback. */
#ifndef PUD_ISO9660_H
#define PUD_ISO9660_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/error.h"

#define PUD_ISO_SECTOR    2048u
#define PUD_ISO_VD_OFFSET (16u * PUD_ISO_SECTOR) /* the first volume descriptor */
#define PUD_ISO_DIR_MAX   (1024u * 1024)         /* largest root directory read */

/* Reads exactly `len` bytes at `off` into `buf`: 0, or -errno (a short read
 * is -EIO). */
typedef int (*pud_iso_read_fn)(void *ctx, uint64_t off, void *buf, size_t len);

typedef struct pud_iso_s {
    pud_iso_read_fn read;
    void *ctx;
    uint64_t size;     /* bytes in the image */
    uint32_t block;    /* logical block size */
    char label[33];    /* the primary volume identifier, trailing spaces removed */
    uint32_t root_lba; /* primary root directory extent */
    uint32_t root_len;
    uint32_t joliet_lba; /* Joliet root directory extent; joliet_len 0 when none */
    uint32_t joliet_len;
} pud_iso_t;

/* Reads the volume descriptors of an image of `size` bytes. 0 on success;
 * -ENOENT when there is no ISO9660 volume descriptor at sector 16;
 * -EBADMSG when the descriptors are malformed; or the read error. */
int pud_iso9660_open(pud_iso_t *iso, pud_iso_read_fn rd, void *ctx, uint64_t size, pp_error_t *err);

/* Appends the contents of the regular file `name` in the root directory to
 * `out`. -ENOENT when there is none; -EMSGSIZE when it is larger than `max`;
 * -EBADMSG when the directory or the file's record is malformed, or two
 * entries carry the name. */
int pud_iso9660_read_file(const pud_iso_t *iso, const char *name, size_t max, pp_buf_t *out,
                          pp_error_t *err);

/* Image bytes in memory, for pud_iso9660_open(): ctx is a pud_iso_mem_t. */
typedef struct pud_iso_mem_s {
    const uint8_t *data;
    size_t len;
} pud_iso_mem_t;
int pud_iso_mem_read(void *ctx, uint64_t off, void *buf, size_t len);

/* A file descriptor (block device or image file): ctx points to the int. */
int pud_iso_fd_read(void *ctx, uint64_t off, void *buf, size_t len);

#endif
