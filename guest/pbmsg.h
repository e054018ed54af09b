/* The guest services' messages are a few scalar fields each: read and
 * written here with the wire reader of util/pb.h instead of generated code.
 * Readers take the last occurrence of a field, as protobuf does, and skip
 * unknown fields. */
#ifndef GUEST_PBMSG_H
#define GUEST_PBMSG_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

typedef struct guest_pb_bytes_s {
    const uint8_t *p;
    size_t n;
    int present;
} guest_pb_bytes_t;

/* Field `number` (length-delimited) of `msg`. 0 or -EBADMSG. */
int guest_pb_bytes(const uint8_t *msg, size_t len, uint32_t number, guest_pb_bytes_t *out);
/* Field `number` (varint). 0 or -EBADMSG; *present says whether it was. */
int guest_pb_varint(const uint8_t *msg, size_t len, uint32_t number, uint64_t *out, int *present);
/* A message with one bytes field (omitted when empty, as proto3 does). */
int guest_pb_one_bytes(uint32_t number, const void *p, size_t n, uint8_t **out, size_t *out_len);

#endif
