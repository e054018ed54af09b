#include "pbmsg.h"

#include <errno.h>

#include "util/pb.h"

int guest_pb_bytes(const uint8_t *msg, size_t len, uint32_t number, guest_pb_bytes_t *out)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    int rc;
    out->p = NULL;
    out->n = 0;
    out->present = 0;
    pp_pb_reader_init(&r, msg, len);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        if (f.number != number)
            continue;
        if (f.wire != PP_PB_LEN)
            return -EBADMSG;
        out->p = f.data;
        out->n = f.len;
        out->present = 1;
    }
    return rc < 0 ? -EBADMSG : 0;
}

int guest_pb_varint(const uint8_t *msg, size_t len, uint32_t number, uint64_t *out, int *present)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    int rc;
    *present = 0;
    pp_pb_reader_init(&r, msg, len);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        if (f.number != number)
            continue;
        if (f.wire != PP_PB_VARINT)
            return -EBADMSG;
        *out = f.varint;
        *present = 1;
    }
    return rc < 0 ? -EBADMSG : 0;
}

int guest_pb_one_bytes(uint32_t number, const void *p, size_t n, uint8_t **out, size_t *out_len)
{
    pp_buf_t b;
    pp_buf_init(&b, 0);
    int r = n > 0 ? pp_pb_put_bytes(&b, number, p, n) : 0;
    if (r < 0) {
        pp_buf_free(&b);
        return r;
    }
    /* An empty message is a valid answer: give a non-NULL pointer anyway. */
    if (b.data == NULL && (r = pp_buf_reserve(&b, 1)) < 0)
        return r;
    *out = pp_buf_steal(&b, out_len);
    return 0;
}
