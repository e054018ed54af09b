#include "iso9660.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Volume descriptor fields (ECMA-119 8.4, 8.5). */
#define VD_TYPE_PRIMARY       1
#define VD_TYPE_SUPPLEMENTARY 2
#define VD_TYPE_TERMINATOR    255
#define VD_MAX                64 /* descriptors read before giving up on a terminator */
#define VD_VOLUME_ID          40
#define VD_ESCAPES            88
#define VD_BLOCK_SIZE         128
#define VD_ROOT_RECORD        156

/* Directory record fields (ECMA-119 9.1). */
#define DR_MIN       34
#define DR_XA_LEN    1
#define DR_EXTENT    2
#define DR_DATA_LEN  10
#define DR_FLAGS     25
#define DR_UNIT_SIZE 26
#define DR_GAP       27
#define DR_NAME_LEN  32
#define DR_NAME      33
#define DR_F_DIR     0x02
#define DR_F_MULTI   0x80
#define NAME_MAX_ISO 255

/* Rock Ridge NM flags (RRIP 4.1.4). */
#define NM_CONTINUE 0x01
#define NM_CURRENT  0x02
#define NM_PARENT   0x04

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* A both-endian 32-bit field (ECMA-119 7.3.3): the halves must agree. */
static int both32(const uint8_t *p, uint32_t *out)
{
    uint32_t v = le32(p);
    if (v != be32(p + 4))
        return -EBADMSG;
    *out = v;
    return 0;
}

static int both16(const uint8_t *p, uint16_t *out)
{
    uint16_t v = le16(p);
    if (v != be16(p + 2))
        return -EBADMSG;
    *out = v;
    return 0;
}

int pud_iso_mem_read(void *ctx, uint64_t off, void *buf, size_t len)
{
    const pud_iso_mem_t *m = ctx;
    if (off > m->len || len > m->len - off)
        return -EIO;
    memcpy(buf, m->data + off, len);
    return 0;
}

int pud_iso_fd_read(void *ctx, uint64_t off, void *buf, size_t len)
{
    int fd = *(const int *)ctx;
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

/* Checks that `len` bytes at block `lba` (plus `skip` blocks) lie in the
 * image, and gives their offset. */
static int extent_offset(const pud_iso_t *iso, uint32_t lba, uint32_t skip, uint64_t len,
                         uint64_t *off)
{
    uint64_t start = ((uint64_t)lba + skip) * iso->block;
    if (start > iso->size || len > iso->size - start)
        return -EBADMSG;
    *off = start;
    return 0;
}

/* Reads a root directory record embedded in a volume descriptor. */
static int parse_root_record(const pud_iso_t *iso, const uint8_t *r, uint32_t *lba, uint32_t *len,
                             pp_error_t *err)
{
    uint32_t extent, dlen;
    if (r[0] != DR_MIN || both32(r + DR_EXTENT, &extent) < 0 ||
        both32(r + DR_DATA_LEN, &dlen) < 0 || !(r[DR_FLAGS] & DR_F_DIR))
        return pp_error_set(err, -EBADMSG, "iso9660: malformed root directory record");
    if (dlen == 0 || dlen > PUD_ISO_DIR_MAX)
        return pp_error_set(err, -EBADMSG, "iso9660: root directory of %u bytes", dlen);
    uint64_t off;
    if (extent_offset(iso, extent, 0, dlen, &off) < 0)
        return pp_error_set(err, -EBADMSG, "iso9660: root directory outside the image");
    *lba = extent;
    *len = dlen;
    return 0;
}

static int parse_block_size(const uint8_t *vd, uint32_t *block, pp_error_t *err)
{
    uint16_t bs;
    if (both16(vd + VD_BLOCK_SIZE, &bs) < 0 || (bs != 512 && bs != 1024 && bs != 2048))
        return pp_error_set(err, -EBADMSG, "iso9660: bad logical block size");
    *block = bs;
    return 0;
}

int pud_iso9660_open(pud_iso_t *iso, pud_iso_read_fn rd, void *ctx, uint64_t size, pp_error_t *err)
{
    memset(iso, 0, sizeof(*iso));
    iso->read = rd;
    iso->ctx = ctx;
    iso->size = size;
    uint8_t vd[PUD_ISO_SECTOR];
    int have_primary = 0;
    for (unsigned i = 0;; i++) {
        uint64_t off = PUD_ISO_VD_OFFSET + (uint64_t)i * PUD_ISO_SECTOR;
        if (i == VD_MAX)
            return pp_error_set(err, -EBADMSG, "iso9660: no volume descriptor terminator");
        if (off > size || size - off < PUD_ISO_SECTOR) {
            if (i == 0)
                return pp_error_set(err, -ENOENT, "too small for iso9660");
            return pp_error_set(err, -EBADMSG, "iso9660: volume descriptors run off the end");
        }
        int r = rd(ctx, off, vd, sizeof(vd));
        if (r < 0)
            return pp_error_set(err, r, "read volume descriptor: %s", strerror(-r));
        /* Version 1; an ISO9660:1999 enhanced descriptor (type 2) has 2. */
        if (memcmp(vd + 1, "CD001", 5) != 0 || vd[6] < 1 ||
            vd[6] > (vd[0] == VD_TYPE_SUPPLEMENTARY ? 2 : 1)) {
            if (i == 0)
                return pp_error_set(err, -ENOENT, "not iso9660");
            return pp_error_set(err, -EBADMSG, "iso9660: bad volume descriptor %u", i);
        }
        if (vd[0] == VD_TYPE_TERMINATOR)
            break;
        if (vd[0] == VD_TYPE_PRIMARY && !have_primary) {
            r = parse_block_size(vd, &iso->block, err);
            if (r == 0)
                r = parse_root_record(iso, vd + VD_ROOT_RECORD, &iso->root_lba, &iso->root_len,
                                      err);
            if (r < 0)
                return r;
            memcpy(iso->label, vd + VD_VOLUME_ID, 32);
            iso->label[32] = '\0';
            for (int k = 31; k >= 0 && (iso->label[k] == ' ' || iso->label[k] == '\0'); k--)
                iso->label[k] = '\0';
            have_primary = 1;
        } else if (vd[0] == VD_TYPE_SUPPLEMENTARY && have_primary && iso->joliet_len == 0 &&
                   vd[VD_ESCAPES] == '%' && vd[VD_ESCAPES + 1] == '/' &&
                   (vd[VD_ESCAPES + 2] == '@' || vd[VD_ESCAPES + 2] == 'C' ||
                    vd[VD_ESCAPES + 2] == 'E')) {
            /* Joliet (UCS-2 levels 1 to 3). It must share the block size
             * the extents are counted in. */
            uint32_t block = 0;
            r = parse_block_size(vd, &block, err);
            if (r == 0 && block != iso->block)
                r = pp_error_set(err, -EBADMSG, "iso9660: joliet block size differs");
            if (r == 0)
                r = parse_root_record(iso, vd + VD_ROOT_RECORD, &iso->joliet_lba, &iso->joliet_len,
                                      err);
            if (r < 0)
                return r;
        }
    }
    if (!have_primary)
        return pp_error_set(err, -EBADMSG, "iso9660: no primary volume descriptor");
    return 0;
}

/* ---- names ----------------------------------------------------------------- */

enum scheme { SCHEME_ROCK_RIDGE, SCHEME_PLAIN, SCHEME_JOLIET, SCHEME_N };

/* Removes an ISO9660 version suffix (";1"). */
static size_t strip_version(const char *s, size_t n)
{
    for (size_t i = n; i > 0; i--) {
        if (s[i - 1] == ';')
            return i - 1;
        if (s[i - 1] < '0' || s[i - 1] > '9')
            break;
    }
    return n;
}

static int fold(char c)
{
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 'A';
    if (c == '_')
        return '-';
    return (unsigned char)c;
}

static int match_plain(const char *s, size_t n, const char *want)
{
    n = strip_version(s, n);
    if (n > 0 && s[n - 1] == '.')
        n--;
    if (n != strlen(want))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (fold(s[i]) != fold(want[i]))
            return 0;
    return 1;
}

static int match_exact(const char *s, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

/* The Rock Ridge name in a system use area, into `name` (NAME_MAX_ISO + 1).
 * Returns its length, or -1 when there is none (or it is unusable: too
 * long, or continued in an area this reader does not follow). */
static int rock_ridge_name(const uint8_t *sua, size_t len, char *name)
{
    size_t n = 0;
    while (len >= 4) {
        size_t elen = sua[2];
        if (elen < 4 || elen > len)
            break;
        if (sua[0] == 'S' && sua[1] == 'T')
            break;
        if (sua[0] == 'N' && sua[1] == 'M' && elen >= 5) {
            uint8_t flags = sua[4];
            if (flags & (NM_CURRENT | NM_PARENT))
                return -1;
            size_t part = elen - 5;
            if (n + part > NAME_MAX_ISO)
                return -1;
            memcpy(name + n, sua + 5, part);
            n += part;
            if (!(flags & NM_CONTINUE))
                return (int)n;
        }
        sua += elen;
        len -= elen;
    }
    /* No name, or one still marked as continued: the rest would be in a
     * continuation area, which this reader does not follow. */
    return -1;
}

/* The Joliet name as ASCII (other characters cannot match a name we look
 * for); -1 when it has any. */
static int joliet_name(const uint8_t *s, size_t n, char *name)
{
    if (n % 2 != 0 || n / 2 > NAME_MAX_ISO)
        return -1;
    for (size_t i = 0; i < n; i += 2) {
        if (s[i] != 0 || s[i + 1] == 0 || s[i + 1] >= 0x80)
            return -1;
        name[i / 2] = (char)s[i + 1];
    }
    return (int)(n / 2);
}

/* ---- directories ----------------------------------------------------------- */

typedef struct found_s {
    int n;              /* matches in this scheme */
    const uint8_t *rec; /* the first matching record */
} found_t;

/* The SUSP skip length from the `SP` entry of a directory's "." record
 * (SUSP 5.3); 0 when there is none. */
static size_t susp_skip(const uint8_t *sua, size_t len)
{
    if (len >= 7 && sua[0] == 'S' && sua[1] == 'P' && sua[2] == 7 && sua[4] == 0xBE &&
        sua[5] == 0xEF)
        return sua[6];
    return 0;
}

/* Walks the records of a directory read into `d` (`len` bytes), recording
 * matches of `want` per naming scheme. Records end in the sector they
 * start in; a zero length byte pads to the next sector. */
static int scan_dir(const uint8_t *d, size_t len, int joliet, const char *want, found_t *found,
                    pp_error_t *err)
{
    size_t pos = 0, skip = 0;
    int first = 1;
    char name[NAME_MAX_ISO + 1];
    while (pos < len) {
        size_t reclen = d[pos];
        if (reclen == 0) {
            pos = (pos / PUD_ISO_SECTOR + 1) * PUD_ISO_SECTOR;
            continue;
        }
        if (reclen < DR_MIN || reclen > len - pos || pos % PUD_ISO_SECTOR + reclen > PUD_ISO_SECTOR)
            return pp_error_set(err, -EBADMSG, "iso9660: malformed directory record at %zu", pos);
        const uint8_t *r = d + pos;
        size_t nl = r[DR_NAME_LEN];
        if (nl == 0 || DR_NAME + nl > reclen)
            return pp_error_set(err, -EBADMSG, "iso9660: bad name length at %zu", pos);
        size_t sua_off = DR_NAME + nl + (nl % 2 == 0 ? 1 : 0);
        const uint8_t *sua = r + sua_off;
        size_t sua_len = sua_off < reclen ? reclen - sua_off : 0;
        pos += reclen;

        int dot = nl == 1 && (r[DR_NAME] == 0 || r[DR_NAME] == 1);
        if (first) {
            first = 0;
            if (dot && !joliet)
                skip = susp_skip(sua, sua_len);
        }
        if (dot || (r[DR_FLAGS] & DR_F_DIR))
            continue;
        const char *s = (const char *)r + DR_NAME;
        if (joliet) {
            int jn = joliet_name(r + DR_NAME, nl, name);
            if (jn >= 0 && match_exact(name, strip_version(name, (size_t)jn), want) &&
                found[SCHEME_JOLIET].n++ == 0)
                found[SCHEME_JOLIET].rec = r;
            continue;
        }
        int rn = skip <= sua_len ? rock_ridge_name(sua + skip, sua_len - skip, name) : -1;
        if (rn >= 0) {
            if (match_exact(name, (size_t)rn, want) && found[SCHEME_ROCK_RIDGE].n++ == 0)
                found[SCHEME_ROCK_RIDGE].rec = r;
        } else if (match_plain(s, nl, want) && found[SCHEME_PLAIN].n++ == 0) {
            found[SCHEME_PLAIN].rec = r;
        }
    }
    return 0;
}

static int read_dir(const pud_iso_t *iso, uint32_t lba, uint32_t len, uint8_t **out,
                    pp_error_t *err)
{
    uint64_t off;
    if (extent_offset(iso, lba, 0, len, &off) < 0)
        return pp_error_set(err, -EBADMSG, "iso9660: directory outside the image");
    uint8_t *d = malloc(len);
    if (d == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    int r = iso->read(iso->ctx, off, d, len);
    if (r < 0) {
        free(d);
        return pp_error_set(err, r, "read directory: %s", strerror(-r));
    }
    *out = d;
    return 0;
}

static int read_record_data(const pud_iso_t *iso, const uint8_t *r, const char *name, size_t max,
                            pp_buf_t *out, pp_error_t *err)
{
    uint32_t lba, len;
    if (both32(r + DR_EXTENT, &lba) < 0 || both32(r + DR_DATA_LEN, &len) < 0)
        return pp_error_set(err, -EBADMSG, "iso9660: malformed record for `%s`", name);
    if (r[DR_FLAGS] & DR_F_MULTI)
        return pp_error_set(err, -EBADMSG, "iso9660: `%s` spans several extents", name);
    if (r[DR_UNIT_SIZE] != 0 || r[DR_GAP] != 0)
        return pp_error_set(err, -EBADMSG, "iso9660: `%s` is interleaved", name);
    if (len > max)
        return pp_error_set(err, -EMSGSIZE,
                            "`%s` on the config drive is larger than the limit "
                            "of %zu bytes",
                            name, max);
    uint64_t off;
    if (extent_offset(iso, lba, r[DR_XA_LEN], len, &off) < 0)
        return pp_error_set(err, -EBADMSG, "iso9660: `%s` lies outside the image", name);
    int rc = pp_buf_reserve(out, len);
    if (rc < 0)
        return pp_error_set(err, rc, "read `%s`: %s", name, strerror(-rc));
    rc = iso->read(iso->ctx, off, out->data + out->len, len);
    if (rc < 0)
        return pp_error_set(err, rc, "read `%s`: %s", name, strerror(-rc));
    out->len += len;
    return 0;
}

int pud_iso9660_read_file(const pud_iso_t *iso, const char *name, size_t max, pp_buf_t *out,
                          pp_error_t *err)
{
    found_t found[SCHEME_N] = {{0, NULL}};
    uint8_t *primary = NULL, *joliet = NULL;
    int r = read_dir(iso, iso->root_lba, iso->root_len, &primary, err);
    if (r == 0)
        r = scan_dir(primary, iso->root_len, 0, name, found, err);
    if (r == 0 && found[SCHEME_ROCK_RIDGE].n == 0 && iso->joliet_len != 0) {
        r = read_dir(iso, iso->joliet_lba, iso->joliet_len, &joliet, err);
        if (r == 0)
            r = scan_dir(joliet, iso->joliet_len, 1, name, found, err);
    }
    if (r == 0) {
        /* The order Linux prefers: Rock Ridge, then Joliet, then plain. */
        static const enum scheme order[] = {SCHEME_ROCK_RIDGE, SCHEME_JOLIET, SCHEME_PLAIN};
        static const char *const scheme_names[] = {"rock ridge", "plain", "joliet"};
        r = pp_error_set(err, -ENOENT, "no `%s` in the root directory", name);
        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
            const found_t *f = &found[order[i]];
            if (f->n == 0)
                continue;
            if (f->n > 1)
                r = pp_error_set(err, -EBADMSG, "iso9660: %d entries named `%s` (%s names)", f->n,
                                 name, scheme_names[order[i]]);
            else
                r = read_record_data(iso, f->rec, name, max, out, err);
            break;
        }
    }
    free(primary);
    free(joliet);
    return r;
}
