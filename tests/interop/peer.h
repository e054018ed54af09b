/* The interop test service `pp.test.Echo`, as both C peers see it.
 *
 * Payloads are raw bytes. Methods: Echo (answers the payload), Sleep (waits
 * the decimal number of ms in the payload, or until the caller's deadline),
 * Fail ("code:message" -> that status), Metadata (the request metadata as
 * "k=v\n" lines, keys sorted, values of a key in the order received), Big
 * (answers as many bytes as the decimal payload says, byte i = i % 251) and
 * Deadline (ms left before the caller's deadline, or "none"). The Go peer in
 * go/service.go implements the same. */
#ifndef PP_TEST_INTEROP_PEER_H
#define PP_TEST_INTEROP_PEER_H

#include <stddef.h>
#include <stdint.h>

#define PEER_SERVICE "pp.test.Echo"

/* Byte i of a Big answer. */
static inline uint8_t peer_pattern_byte(size_t i)
{
    return (uint8_t)(i % 251);
}

/* Parses a non-negative decimal of at most 12 digits: 0 or -EINVAL. */
int peer_parse_size(const uint8_t *p, size_t n, uint64_t *out);

#endif
