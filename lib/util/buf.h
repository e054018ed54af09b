/* A growable byte buffer with a hard maximum, for anything fed from outside.
 * Appends fail with -EMSGSIZE past `max` and -ENOMEM when out of memory, and
 * leave the buffer as it was.
 *
 * A buffer made with pp_buf_init_secret() holds a secret (a form with a
 * client secret, a token's answer): growing it copies the bytes to a new
 * block and clears the old one, where realloc would leave the old copy in
 * freed memory, and pp_buf_free() clears it before freeing. What
 * pp_buf_steal() hands over is the caller's to clear. */
#ifndef PP_UTIL_BUF_H
#define PP_UTIL_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct pp_buf_s {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /* 0 = no maximum */
    int secret; /* cleared when it moves or is freed */
} pp_buf_t;

void pp_buf_init(pp_buf_t *b, size_t max);
void pp_buf_init_secret(pp_buf_t *b, size_t max);
void pp_buf_free(pp_buf_t *b);
int pp_buf_reserve(pp_buf_t *b, size_t extra);
int pp_buf_append(pp_buf_t *b, const void *p, size_t n);
int pp_buf_append_byte(pp_buf_t *b, uint8_t c);
int pp_buf_printf(pp_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the bytes to the caller (who frees them) and resets the buffer. */
uint8_t *pp_buf_steal(pp_buf_t *b, size_t *len);

#endif
