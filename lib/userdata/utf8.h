/* UTF-8 helpers shared by the user data readers (internal). */
#ifndef PP_USERDATA_UTF8_H
#define PP_USERDATA_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes the sequence at `p` (`n` bytes available) into `*cp`. Returns its
 * length (1-4), or 0 when it is not well-formed UTF-8: truncated, overlong,
 * a surrogate, or past U+10FFFF. */
size_t pp__utf8_decode(const uint8_t *p, size_t n, uint32_t *cp);

/* Encodes a Unicode scalar value into `out`; returns the length (1-4), or 0
 * for a surrogate or a value past U+10FFFF. */
size_t pp__utf8_encode(uint32_t cp, uint8_t out[4]);

/* 1 when all `n` bytes are well-formed UTF-8; else 0 and `*bad` is the offset
 * of the first bad sequence. */
int pp__utf8_valid(const uint8_t *p, size_t n, size_t *bad);

/* Copies at most `max` bytes of untrusted text into `out` (of `size` bytes,
 * NUL-terminated) for an error message: bytes outside printable ASCII become
 * `?`, and a cut is marked with "...". Returns `out`. */
char *pp__printable(const char *s, size_t n, char *out, size_t size);

/* Untrusted text quoted in a message, at most (pp__printable's `max`). */
#define PP__MSG_MAX 64

/* 1 for the code points a YAML reader could take for something else when
 * raw, so a writer escapes them and the strict reader refuses them raw: C1
 * controls (U+0085 is a line break in YAML 1.1), the line and paragraph
 * separators (breaks in 1.1), the byte order mark and non-characters. */
int pp__yaml_needs_escape(uint32_t cp);

#endif
