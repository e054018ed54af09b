/* Hexadecimal: bytes to lower-case digits and back. Pure. */
#ifndef PP_UTIL_HEX_H
#define PP_UTIL_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes the lower-case hex of `n` bytes and a NUL to `out` (2n+1 bytes). */
void pp_hex_encode(const void *data, size_t n, char *out);

/* The value of one hex digit of either case, or -1. */
int pp_hex_value(int c);

/* Decodes the 2n digits at `s` (either case) into `n` bytes. -EINVAL when
 * one is not a hex digit; `s` must hold at least 2n characters. */
int pp_hex_decode(const char *s, size_t n, uint8_t *out);

#endif
