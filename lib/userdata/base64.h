/* Base64 (RFC 4648, standard alphabet, padded) for user data payloads.
 *
 * Encoding emits one line, no line breaks. Decoding is strict about what
 * matters (alphabet, padding, zero trailing bits) and ignores ASCII
 * whitespace, so line-wrapped output of the `base64` tool decodes too. */
#ifndef PP_USERDATA_BASE64_H
#define PP_USERDATA_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Appends the encoding of `len` bytes to `out`. 0, -ENOMEM or -EMSGSIZE. */
int pp_base64_encode(const void *data, size_t len, pp_buf_t *out);

/* Appends the decoded bytes to `out`. -EBADMSG on malformed input (bad
 * character, bad padding, truncated group, non-zero trailing bits), else as
 * pp_buf_append(). On failure `out` keeps what was appended so far. */
int pp_base64_decode(const char *text, size_t len, pp_buf_t *out);

#endif
