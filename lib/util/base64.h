/* Base64 (RFC 4648) in its two alphabets: standard and padded (user data,
 * evidence fields), and URL-safe without padding (JWK, JWE, JWS, JWT).
 * Pure.
 *
 * Encoders append to `out`, with a NUL after the encoding that out->len
 * does not count (as pp_buf_printf()), and fail only as pp_buf_append()
 * does (-ENOMEM, -EMSGSIZE). Decoders are strict about what matters (alphabet,
 * padding, zero trailing bits) and fail with -EBADMSG on malformed input;
 * on any failure `out` is as it was. */
#ifndef PP_UTIL_BASE64_H
#define PP_UTIL_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Standard alphabet, padded, one line. */
int pp_base64_encode(const void *data, size_t len, pp_buf_t *out);
/* URL-safe alphabet, no padding. */
int pp_base64url_encode(const void *data, size_t len, pp_buf_t *out);

/* The same as malloc'd NUL-terminated strings, or NULL when out of memory. */
char *pp_base64_str(const void *data, size_t len);
char *pp_base64url_str(const void *data, size_t len);

/* Standard alphabet, padded to whole groups. ASCII whitespace is ignored,
 * so the line-wrapped output of the `base64` tool decodes too. */
int pp_base64_decode(const char *text, size_t len, pp_buf_t *out);
/* URL-safe alphabet; `=` padding is taken but not needed, as some encoders
 * add it. No whitespace. */
int pp_base64url_decode(const char *text, size_t len, pp_buf_t *out);

#endif
