#include "userdata/base64.h"

#include <errno.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int pp_base64_encode(const void *data, size_t len, pp_buf_t *out)
{
    const uint8_t *p = data;
    if (len / 3 >= SIZE_MAX / 4 - 1)
        return -EMSGSIZE;
    int r = pp_buf_reserve(out, (len + 2) / 3 * 4);
    if (r < 0)
        return r;
    uint8_t *o = out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = (uint8_t)alphabet[v >> 18];
        *o++ = (uint8_t)alphabet[(v >> 12) & 63];
        *o++ = (uint8_t)alphabet[(v >> 6) & 63];
        *o++ = (uint8_t)alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = (uint8_t)alphabet[v >> 18];
        *o++ = (uint8_t)alphabet[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = (uint8_t)alphabet[v >> 18];
        *o++ = (uint8_t)alphabet[(v >> 12) & 63];
        *o++ = (uint8_t)alphabet[(v >> 6) & 63];
        *o++ = '=';
    }
    out->len = (size_t)(o - out->data);
    return 0;
}

/* The value of a base64 character, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int pp_base64_decode(const char *text, size_t len, pp_buf_t *out)
{
    const unsigned char *s = (const unsigned char *)text;
    uint32_t acc = 0;
    int n = 0;   /* characters in the current group */
    int pad = 0; /* '=' seen in the current group */
    int done = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (is_space(c))
            continue;
        if (done)
            return -EBADMSG; /* data after the padded final group */
        if (c == '=') {
            /* Padding only in the last two places of a group. */
            if (n < 2)
                return -EBADMSG;
            pad++;
            n++;
        } else {
            int v = b64_value(c);
            if (v < 0 || pad > 0)
                return -EBADMSG;
            acc = acc << 6 | (uint32_t)v;
            n++;
        }
        if (n < 4)
            continue;
        uint8_t bytes[3];
        int r;
        if (pad == 0) {
            bytes[0] = (uint8_t)(acc >> 16);
            bytes[1] = (uint8_t)(acc >> 8);
            bytes[2] = (uint8_t)acc;
            r = pp_buf_append(out, bytes, 3);
        } else if (pad == 1) {
            /* 18 bits carried: 16 of data, 2 that must be zero. */
            if (acc & 3)
                return -EBADMSG;
            acc >>= 2;
            bytes[0] = (uint8_t)(acc >> 8);
            bytes[1] = (uint8_t)acc;
            r = pp_buf_append(out, bytes, 2);
            done = 1;
        } else {
            if (acc & 15)
                return -EBADMSG;
            acc >>= 4;
            bytes[0] = (uint8_t)acc;
            r = pp_buf_append(out, bytes, 1);
            done = 1;
        }
        if (r < 0)
            return r;
        acc = 0;
        n = 0;
        pad = 0;
    }
    return n == 0 ? 0 : -EBADMSG;
}
