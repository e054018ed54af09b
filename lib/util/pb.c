#include "util/pb.h"

#include <errno.h>
#include <string.h>

void pp_pb_reader_init(pp_pb_reader_t *r, const uint8_t *p, size_t n)
{
    r->p = p;
    r->end = p + n;
}

int pp_pb_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    const uint8_t *q = *p;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (q >= end)
            return -EBADMSG;
        uint8_t c = *q++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            *p = q;
            *out = v;
            return 0;
        }
    }
    return -EBADMSG;
}

int pp_pb_next(pp_pb_reader_t *r, pp_pb_field_t *f)
{
    if (r->p >= r->end)
        return 0;
    const uint8_t *q = r->p;
    uint64_t tag;
    if (pp_pb_read_varint(&q, r->end, &tag) < 0)
        return -EBADMSG;
    uint64_t number = tag >> 3;
    if (number == 0 || number > 0x1fffffff)
        return -EBADMSG;
    f->start = r->p;
    f->number = (uint32_t)number;
    f->wire = (enum pp_pb_wire)(tag & 7);
    f->data = NULL;
    f->len = 0;
    f->varint = 0;
    switch (f->wire) {
    case PP_PB_VARINT:
        if (pp_pb_read_varint(&q, r->end, &f->varint) < 0)
            return -EBADMSG;
        break;
    case PP_PB_I64:
    case PP_PB_I32: {
        size_t w = f->wire == PP_PB_I64 ? 8 : 4;
        if ((size_t)(r->end - q) < w)
            return -EBADMSG;
        for (size_t i = 0; i < w; i++)
            f->varint |= (uint64_t)q[i] << (8 * i);
        q += w;
        break;
    }
    case PP_PB_LEN: {
        uint64_t n;
        if (pp_pb_read_varint(&q, r->end, &n) < 0 || n > (uint64_t)(r->end - q))
            return -EBADMSG;
        f->data = q;
        f->len = (size_t)n;
        q += n;
        break;
    }
    default:
        return -EBADMSG;
    }
    f->total = (size_t)(q - r->p);
    r->p = q;
    return 1;
}

size_t pp_pb_varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

size_t pp_pb_encode_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

int pp_pb_put_varint(pp_buf_t *b, uint64_t v)
{
    uint8_t tmp[10];
    return pp_buf_append(b, tmp, pp_pb_encode_varint(tmp, v));
}

int pp_pb_put_tag(pp_buf_t *b, uint32_t number, enum pp_pb_wire wire)
{
    return pp_pb_put_varint(b, ((uint64_t)number << 3) | wire);
}

int pp_pb_put_uint(pp_buf_t *b, uint32_t number, uint64_t v)
{
    int r = pp_pb_put_tag(b, number, PP_PB_VARINT);
    return r < 0 ? r : pp_pb_put_varint(b, v);
}

int pp_pb_put_bytes(pp_buf_t *b, uint32_t number, const void *p, size_t n)
{
    int r = pp_pb_put_tag(b, number, PP_PB_LEN);
    if (r == 0)
        r = pp_pb_put_varint(b, n);
    if (r == 0)
        r = pp_buf_append(b, p, n);
    return r;
}

int pp_pb_put_string(pp_buf_t *b, uint32_t number, const char *s)
{
    return pp_pb_put_bytes(b, number, s, strlen(s));
}
