/* The NoCloud config drive, written in memory with libarchive's ISO9660
 * writer: Rock Ridge (what Linux shows when it mounts it) and Joliet names,
 * volume label `cidata`, and two files in the root, `user-data` and
 * `meta-data`. */
#include "providers/libvirt/libvirt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>

#define CIDATA_MAX (64u * 1024 * 1024) /* far above any user data we accept */

static la_ssize_t sink(struct archive *a, void *arg, const void *p, size_t n)
{
    pp_buf_t *b = arg;
    int r = pp_buf_append(b, p, n);
    if (r < 0) {
        archive_set_error(a, -r, "config drive larger than %u bytes", CIDATA_MAX);
        return -1;
    }
    return (la_ssize_t)n;
}

static int add_file(struct archive *a, const char *name, const void *data, size_t len,
                    pp_error_t *err)
{
    struct archive_entry *e = archive_entry_new();
    if (e == NULL)
        return pp_error_set(err, -ENOMEM, "config drive: out of memory");
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0444);
    archive_entry_set_size(e, (la_int64_t)len);
    /* The same bytes for the same input: no clock in the entries. */
    archive_entry_set_mtime(e, 0, 0);
    int r = archive_write_header(a, e);
    archive_entry_free(e);
    if (r != ARCHIVE_OK || (len > 0 && archive_write_data(a, data, len) != (la_ssize_t)len))
        return pp_error_set(err, -EIO, "config drive: `%s`: %s", name, archive_error_string(a));
    return 0;
}

int pp__libvirt_cidata(const char *name, const char *user_data, size_t user_data_len, pp_buf_t *out,
                       pp_error_t *err)
{
    char meta[256];
    int n = snprintf(meta, sizeof(meta), "instance-id: %s\nlocal-hostname: %s\n", name, name);
    if (n < 0 || (size_t)n >= sizeof(meta))
        return pp_error_set(err, -ENAMETOOLONG, "config drive: instance name too long");

    struct archive *a = archive_write_new();
    if (a == NULL)
        return pp_error_set(err, -ENOMEM, "config drive: out of memory");
    pp_buf_t b;
    pp_buf_init(&b, CIDATA_MAX);
    int r = 0;
    /* No padding: the writer would add 300 KiB of zeros for CD readers. */
    if (archive_write_set_format_iso9660(a) != ARCHIVE_OK ||
        archive_write_set_format_option(a, "iso9660", "volume-id", "cidata") != ARCHIVE_OK ||
        archive_write_set_format_option(a, "iso9660", "rockridge", "1") != ARCHIVE_OK ||
        archive_write_set_format_option(a, "iso9660", "joliet", "1") != ARCHIVE_OK ||
        archive_write_set_format_option(a, "iso9660", "pad", NULL) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
        archive_write_open2(a, &b, NULL, sink, NULL, NULL) != ARCHIVE_OK)
        r = pp_error_set(err, -EIO, "config drive: %s", archive_error_string(a));
    if (r == 0)
        r = add_file(a, "user-data", user_data, user_data_len, err);
    if (r == 0)
        r = add_file(a, "meta-data", meta, (size_t)n, err);
    if (r == 0 && archive_write_close(a) != ARCHIVE_OK)
        r = pp_error_set(err, -EIO, "config drive: %s", archive_error_string(a));
    archive_write_free(a);
    if (r < 0) {
        pp_buf_free(&b);
        return r;
    }
    pp_buf_free(out);
    *out = b;
    return 0;
}
