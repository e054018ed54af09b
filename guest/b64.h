/* Base64 in the two alphabets the KBS protocol uses: standard, padded
 * (evidence fields, nonces) and URL-safe without padding (JWK, JWE, JWS,
 * JWT). Decoders are strict (alphabet, padding, zero trailing bits) and
 * append to a bounded buffer. Pure. */
#ifndef GUEST_B64_H
#define GUEST_B64_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Appends the encoding and a NUL (not counted in out->len). */
int guest_b64_encode(const void *p, size_t n, pp_buf_t *out);
int guest_b64url_encode(const void *p, size_t n, pp_buf_t *out);
/* A malloc'd NUL-terminated encoding, or NULL when out of memory. */
char *guest_b64_str(const void *p, size_t n);
char *guest_b64url_str(const void *p, size_t n);

/* Append the decoded bytes. -EBADMSG on malformed input. The URL-safe
 * decoder also takes `=` padding, as some encoders add it. */
int guest_b64_decode(const char *s, size_t n, pp_buf_t *out);
int guest_b64url_decode(const char *s, size_t n, pp_buf_t *out);

/* Lower-case hex of `n` bytes into `out` (2n+1 bytes). */
void guest_hex(const uint8_t *p, size_t n, char *out);

#endif
