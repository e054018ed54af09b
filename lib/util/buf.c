#include "util/buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pp_buf_init(pp_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
    b->secret = 0;
}

void pp_buf_init_secret(pp_buf_t *b, size_t max)
{
    pp_buf_init(b, max);
    b->secret = 1;
}

void pp_buf_free(pp_buf_t *b)
{
    if (b->secret && b->data != NULL)
        explicit_bzero(b->data, b->cap);
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int pp_buf_reserve(pp_buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return -EMSGSIZE;
    size_t need = b->len + extra;
    if (b->max != 0 && need > b->max)
        return -EMSGSIZE;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->max != 0 && cap > b->max)
        cap = b->max;
    uint8_t *p;
    if (b->secret) {
        if ((p = malloc(cap)) == NULL)
            return -ENOMEM;
        if (b->data != NULL) {
            memcpy(p, b->data, b->len);
            explicit_bzero(b->data, b->cap);
            free(b->data);
        }
    } else if ((p = realloc(b->data, cap)) == NULL) {
        return -ENOMEM;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

int pp_buf_append(pp_buf_t *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    int r = pp_buf_reserve(b, n);
    if (r < 0)
        return r;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int pp_buf_append_byte(pp_buf_t *b, uint8_t c)
{
    return pp_buf_append(b, &c, 1);
}

int pp_buf_printf(pp_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    /* Room for the terminating NUL, which is not counted in len. */
    int r = pp_buf_reserve(b, (size_t)n + 1);
    if (r < 0)
        return r;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

uint8_t *pp_buf_steal(pp_buf_t *b, size_t *len)
{
    uint8_t *p = b->data;
    if (len != NULL)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
