/* ttrpc frame codec and in-place message codec. */
#include "ttrpc/ttrpc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/pb.h"

int pp_str_eq(pp_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && (n == 0 || memcmp(s.p, lit, n) == 0);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void pp_ttrpc_header_pack(uint8_t out[PP_TTRPC_HEADER_SIZE], const pp_ttrpc_header_t *h)
{
    put_be32(out, h->length);
    put_be32(out + 4, h->stream_id);
    out[8] = h->type;
    out[9] = h->flags;
}

void pp_ttrpc_header_unpack(const uint8_t in[PP_TTRPC_HEADER_SIZE], pp_ttrpc_header_t *h)
{
    h->length = get_be32(in);
    h->stream_id = get_be32(in + 4);
    h->type = in[8];
    h->flags = in[9];
}

void pp_ttrpc_frame_set_stream(uint8_t *frame, uint32_t stream_id)
{
    put_be32(frame + 4, stream_id);
}

/* ---- decoder ----------------------------------------------------------- */

void pp_ttrpc_decoder_init(pp_ttrpc_decoder_t *d, size_t max, pp_ttrpc_frame_cb on_frame,
                           pp_ttrpc_oversize_cb on_oversize, void *ctx)
{
    memset(d, 0, sizeof(*d));
    d->max = max;
    d->on_frame = on_frame;
    d->on_oversize = on_oversize;
    d->ctx = ctx;
}

void pp_ttrpc_decoder_fini(pp_ttrpc_decoder_t *d)
{
    if (d->payload != NULL)
        free(d->payload - PP_TTRPC_HEADER_SIZE);
    d->payload = NULL;
    d->hdr_have = 0;
    d->have = 0;
    d->cap = 0;
    d->discard = 0;
}

int pp_ttrpc_decoder_busy(const pp_ttrpc_decoder_t *d)
{
    return d->hdr_have > 0 || d->payload != NULL || d->discard > 0;
}

size_t pp_ttrpc_decoder_held(const pp_ttrpc_decoder_t *d)
{
    return d->payload != NULL ? PP_TTRPC_HEADER_SIZE + d->cap : 0;
}

/* Hands the completed frame to the callback and resets for the next one. */
static int deliver(pp_ttrpc_decoder_t *d)
{
    uint8_t *frame = d->payload - PP_TTRPC_HEADER_SIZE;
    pp_ttrpc_header_t h = d->cur;
    d->payload = NULL;
    d->have = 0;
    d->cap = 0;
    d->hdr_have = 0;
    return d->on_frame(d->ctx, &h, frame);
}

/* Makes room for at least `need` bytes of payload. The room grows by at
 * most PP_TTRPC_GROW_STEP at a time, so the heap a frame holds follows the
 * bytes that came, not the length its header announced; large buffers are
 * mmap'ed by malloc, and realloc moves their pages without copying. */
static int grow(pp_ttrpc_decoder_t *d, size_t need)
{
    if (need <= d->cap)
        return 0;
    size_t step = d->cap < PP_TTRPC_GROW_STEP ? d->cap : PP_TTRPC_GROW_STEP;
    size_t cap = d->cap + step;
    if (cap < need)
        cap = need;
    if (cap > d->cur.length)
        cap = d->cur.length;
    uint8_t *frame = realloc(d->payload - PP_TTRPC_HEADER_SIZE, PP_TTRPC_HEADER_SIZE + cap);
    if (frame == NULL)
        return -ENOMEM;
    d->payload = frame + PP_TTRPC_HEADER_SIZE;
    d->cap = cap;
    return 0;
}

/* A header is complete: start its payload, or its discard. */
static int start_payload(pp_ttrpc_decoder_t *d)
{
    pp_ttrpc_header_unpack(d->hdr, &d->cur);
    if (d->cur.length > d->max) {
        d->discard = d->cur.length;
        d->hdr_have = 0;
        int r = d->on_oversize ? d->on_oversize(d->ctx, &d->cur) : 0;
        if (r == 0 && d->cur.length > PP_TTRPC_DISCARD_MAX) {
            d->discard = 0;
            r = -EMSGSIZE;
        }
        return r;
    }
    /* The payload is received behind room for its header, so the buffer is
     * a whole frame that can be sent on as it is. */
    size_t cap = d->cur.length < PP_TTRPC_FRAME_START ? d->cur.length : PP_TTRPC_FRAME_START;
    uint8_t *frame = malloc(PP_TTRPC_HEADER_SIZE + cap);
    if (frame == NULL)
        return -ENOMEM;
    memcpy(frame, d->hdr, PP_TTRPC_HEADER_SIZE);
    d->payload = frame + PP_TTRPC_HEADER_SIZE;
    d->have = 0;
    d->cap = cap;
    if (d->cur.length == 0)
        return deliver(d);
    return 0;
}

int pp_ttrpc_decoder_feed(pp_ttrpc_decoder_t *d, const uint8_t *p, size_t n)
{
    while (n > 0) {
        if (d->discard > 0) {
            size_t k = d->discard < n ? (size_t)d->discard : n;
            d->discard -= k;
            p += k;
            n -= k;
            continue;
        }
        if (d->payload == NULL) {
            size_t k = PP_TTRPC_HEADER_SIZE - d->hdr_have;
            if (k > n)
                k = n;
            memcpy(d->hdr + d->hdr_have, p, k);
            d->hdr_have += k;
            p += k;
            n -= k;
            if (d->hdr_have == PP_TTRPC_HEADER_SIZE) {
                int r = start_payload(d);
                if (r < 0)
                    return r;
            }
            continue;
        }
        size_t k = d->cur.length - d->have;
        if (k > n)
            k = n;
        int r = grow(d, d->have + k);
        if (r < 0)
            return r;
        memcpy(d->payload + d->have, p, k);
        d->have += k;
        p += k;
        n -= k;
        if (d->have == d->cur.length) {
            r = deliver(d);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

size_t pp_ttrpc_decoder_direct(pp_ttrpc_decoder_t *d, uint8_t **p, size_t min)
{
    if (d->payload == NULL || d->discard > 0)
        return 0;
    size_t rest = d->cur.length - d->have;
    if (rest < min)
        return 0;
    if (d->cap - d->have < min && grow(d, d->have + min) < 0)
        return 0;
    *p = d->payload + d->have;
    return d->cap - d->have;
}

int pp_ttrpc_decoder_advance(pp_ttrpc_decoder_t *d, size_t n)
{
    d->have += n;
    if (d->have == d->cur.length)
        return deliver(d);
    return 0;
}

/* ---- messages ---------------------------------------------------------- */

static pp_str_t str_of(const pp_pb_field_t *f)
{
    pp_str_t s = {(const char *)f->data, f->len};
    return s;
}

static int decode_kv(const pp_pb_field_t *f, pp_ttrpc_kv_t *kv)
{
    pp_pb_reader_t r;
    pp_pb_field_t g;
    int rc;
    memset(kv, 0, sizeof(*kv));
    pp_pb_reader_init(&r, f->data, f->len);
    while ((rc = pp_pb_next(&r, &g)) > 0) {
        if (g.number == 1 && g.wire == PP_PB_LEN)
            kv->key = str_of(&g);
        else if (g.number == 2 && g.wire == PP_PB_LEN)
            kv->value = str_of(&g);
    }
    return rc;
}

int pp_ttrpc_request_decode(const uint8_t *p, size_t n, pp_ttrpc_request_t *out)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    int rc;
    size_t nmd = 0;

    memset(out, 0, sizeof(*out));
    pp_pb_reader_init(&r, p, n);
    /* First pass: validate, find scalars, and count metadata entries. */
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        switch (f.number) {
        case 1:
            if (f.wire != PP_PB_LEN)
                return -EBADMSG;
            out->service = str_of(&f);
            break;
        case 2:
            if (f.wire != PP_PB_LEN)
                return -EBADMSG;
            out->method = str_of(&f);
            break;
        case 3:
            if (f.wire != PP_PB_LEN)
                return -EBADMSG;
            out->payload = f.data;
            out->payload_len = f.len;
            break;
        case 4:
            if (f.wire != PP_PB_VARINT)
                return -EBADMSG;
            out->timeout_nano = (int64_t)f.varint;
            break;
        case 5:
            if (f.wire != PP_PB_LEN)
                return -EBADMSG;
            nmd++;
            break;
        default:
            break;
        }
    }
    if (rc < 0)
        return rc;
    if (nmd == 0)
        return 0;
    if (nmd > PP_TTRPC_MAX_METADATA)
        return -E2BIG;
    out->metadata = calloc(nmd, sizeof(*out->metadata));
    if (out->metadata == NULL)
        return -ENOMEM;
    pp_pb_reader_init(&r, p, n);
    while (pp_pb_next(&r, &f) > 0) {
        if (f.number != 5)
            continue;
        if (decode_kv(&f, &out->metadata[out->metadata_count]) < 0) {
            pp_ttrpc_request_fini(out);
            return -EBADMSG;
        }
        out->metadata_count++;
    }
    return 0;
}

void pp_ttrpc_request_fini(pp_ttrpc_request_t *req)
{
    free(req->metadata);
    req->metadata = NULL;
    req->metadata_count = 0;
}

static int decode_status(const pp_pb_field_t *sf, pp_ttrpc_response_t *out)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    int rc;
    const uint8_t *first_detail = NULL, *end_detail = NULL;
    pp_pb_reader_init(&r, sf->data, sf->len);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        if (f.number == 1 && f.wire == PP_PB_VARINT)
            out->code = (int32_t)f.varint;
        else if (f.number == 2 && f.wire == PP_PB_LEN)
            out->message = str_of(&f);
        else if (f.number == 3 && f.wire == PP_PB_LEN) {
            if (first_detail == NULL)
                first_detail = f.start;
            end_detail = f.start + f.total;
        }
    }
    out->details = first_detail;
    out->details_len = first_detail ? (size_t)(end_detail - first_detail) : 0;
    return rc;
}

int pp_ttrpc_response_decode(const uint8_t *p, size_t n, pp_ttrpc_response_t *out)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    int rc;
    memset(out, 0, sizeof(*out));
    pp_pb_reader_init(&r, p, n);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        if (f.number == 1) {
            if (f.wire != PP_PB_LEN || decode_status(&f, out) < 0)
                return -EBADMSG;
        } else if (f.number == 2) {
            if (f.wire != PP_PB_LEN)
                return -EBADMSG;
            out->payload = f.data;
            out->payload_len = f.len;
        }
    }
    return rc;
}

/* Reserves the frame header at the front of `b`; the length is filled in by
 * finish_frame(). */
static int start_frame(pp_buf_t *b, size_t body_hint)
{
    pp_buf_init(b, PP_TTRPC_HEADER_SIZE + PP_TTRPC_MAX_MESSAGE);
    if (body_hint > PP_TTRPC_MAX_MESSAGE)
        body_hint = PP_TTRPC_MAX_MESSAGE;
    int r = pp_buf_reserve(b, PP_TTRPC_HEADER_SIZE + body_hint);
    if (r < 0)
        return r;
    b->len = PP_TTRPC_HEADER_SIZE;
    return 0;
}

static int finish_frame(pp_buf_t *b, uint8_t type, uint8_t **out, size_t *len)
{
    pp_ttrpc_header_t h = {(uint32_t)(b->len - PP_TTRPC_HEADER_SIZE), 0, type, 0};
    pp_ttrpc_header_pack(b->data, &h);
    *out = pp_buf_steal(b, len);
    return 0;
}

static int put_str(pp_buf_t *b, uint32_t number, pp_str_t s)
{
    return s.n == 0 ? 0 : pp_pb_put_bytes(b, number, s.p, s.n);
}

int pp_ttrpc_request_frame(const pp_ttrpc_request_t *req, uint8_t **out, size_t *len)
{
    pp_buf_t b;
    int r = start_frame(&b, req->service.n + req->method.n + req->payload_len + 32);
    if (r == 0)
        r = put_str(&b, 1, req->service);
    if (r == 0)
        r = put_str(&b, 2, req->method);
    if (r == 0 && req->payload_len > 0)
        r = pp_pb_put_bytes(&b, 3, req->payload, req->payload_len);
    if (r == 0 && req->timeout_nano != 0)
        r = pp_pb_put_uint(&b, 4, (uint64_t)req->timeout_nano);
    for (size_t i = 0; r == 0 && i < req->metadata_count; i++) {
        const pp_ttrpc_kv_t *kv = &req->metadata[i];
        size_t inner = 0;
        if (kv->key.n)
            inner += 1 + pp_pb_varint_size(kv->key.n) + kv->key.n;
        if (kv->value.n)
            inner += 1 + pp_pb_varint_size(kv->value.n) + kv->value.n;
        r = pp_pb_put_tag(&b, 5, PP_PB_LEN);
        if (r == 0)
            r = pp_pb_put_varint(&b, inner);
        if (r == 0)
            r = put_str(&b, 1, kv->key);
        if (r == 0)
            r = put_str(&b, 2, kv->value);
    }
    if (r < 0) {
        pp_buf_free(&b);
        return r;
    }
    return finish_frame(&b, PP_TTRPC_REQUEST, out, len);
}

int pp_ttrpc_response_frame(int32_t code, const char *message, const void *payload,
                            size_t payload_len, uint8_t **out, size_t *len)
{
    size_t mlen = message ? strlen(message) : 0;
    size_t status_len = 0;
    if (code != 0)
        status_len += 1 + pp_pb_varint_size((uint64_t)(int64_t)code);
    if (mlen)
        status_len += 1 + pp_pb_varint_size(mlen) + mlen;

    pp_buf_t b;
    int r = start_frame(&b, status_len + payload_len + 16);
    /* The status is always present, even when empty (`0a 00`). */
    if (r == 0)
        r = pp_pb_put_tag(&b, 1, PP_PB_LEN);
    if (r == 0)
        r = pp_pb_put_varint(&b, status_len);
    if (r == 0 && code != 0)
        r = pp_pb_put_uint(&b, 1, (uint64_t)(int64_t)code);
    if (r == 0 && mlen)
        r = pp_pb_put_bytes(&b, 2, message, mlen);
    if (r == 0 && payload_len > 0)
        r = pp_pb_put_bytes(&b, 2, payload, payload_len);
    if (r < 0) {
        pp_buf_free(&b);
        return r;
    }
    return finish_frame(&b, PP_TTRPC_RESPONSE, out, len);
}
