/* Protocol buffers wire format, read in place and written into a pp_buf.
 *
 * The reader never copies: a length-delimited field is a view into the input.
 * It is used where a message must pass through unchanged except for a field
 * or two (ttrpc envelopes, the forwarder's interceptor), so unknown fields
 * are never dropped. Every read is bounds-checked; malformed input returns
 * -EBADMSG. */
#ifndef PP_UTIL_PB_H
#define PP_UTIL_PB_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum pp_pb_wire { PP_PB_VARINT = 0, PP_PB_I64 = 1, PP_PB_LEN = 2, PP_PB_I32 = 5 };

typedef struct pp_pb_reader_s {
    const uint8_t *p;
    const uint8_t *end;
} pp_pb_reader_t;

typedef struct pp_pb_field_s {
    uint32_t number;
    enum pp_pb_wire wire;
    uint64_t varint;      /* VARINT, I64, I32 */
    const uint8_t *data;  /* LEN: the bytes */
    size_t len;           /* LEN: their count */
    const uint8_t *start; /* the whole field, tag included */
    size_t total;
} pp_pb_field_t;

void pp_pb_reader_init(pp_pb_reader_t *r, const uint8_t *p, size_t n);
/* 1 with a field, 0 at the end, -EBADMSG on malformed input. Groups (wire
 * types 3 and 4) are rejected as malformed. */
int pp_pb_next(pp_pb_reader_t *r, pp_pb_field_t *f);
int pp_pb_read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out);

size_t pp_pb_varint_size(uint64_t v);
size_t pp_pb_encode_varint(uint8_t *out, uint64_t v);
int pp_pb_put_varint(pp_buf_t *b, uint64_t v);
int pp_pb_put_tag(pp_buf_t *b, uint32_t number, enum pp_pb_wire wire);
int pp_pb_put_uint(pp_buf_t *b, uint32_t number, uint64_t v);
int pp_pb_put_bytes(pp_buf_t *b, uint32_t number, const void *p, size_t n);
int pp_pb_put_string(pp_buf_t *b, uint32_t number, const char *s);

#endif
