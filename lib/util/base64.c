#include "util/base64.h"

#include <errno.h>

static const char std_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int encode(const void *data, size_t len, const char *alphabet, int pad, pp_buf_t *out)
{
    const uint8_t *p = data;
    if (len / 3 >= SIZE_MAX / 4 - 1)
        return -EMSGSIZE;
    /* And the NUL, which is not counted. */
    int r = pp_buf_reserve(out, (len + 2) / 3 * 4 + 1);
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
        if (pad) {
            *o++ = '=';
            *o++ = '=';
        }
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = (uint8_t)alphabet[v >> 18];
        *o++ = (uint8_t)alphabet[(v >> 12) & 63];
        *o++ = (uint8_t)alphabet[(v >> 6) & 63];
        if (pad)
            *o++ = '=';
    }
    *o = '\0';
    out->len = (size_t)(o - out->data);
    return 0;
}

int pp_base64_encode(const void *data, size_t len, pp_buf_t *out)
{
    return encode(data, len, std_alphabet, 1, out);
}

int pp_base64url_encode(const void *data, size_t len, pp_buf_t *out)
{
    return encode(data, len, url_alphabet, 0, out);
}

static char *encode_str(const void *data, size_t len, int url)
{
    pp_buf_t b;
    pp_buf_init(&b, 0);
    int r = url ? pp_base64url_encode(data, len, &b) : pp_base64_encode(data, len, &b);
    if (r < 0) {
        pp_buf_free(&b);
        return NULL;
    }
    return (char *)pp_buf_steal(&b, NULL);
}

char *pp_base64_str(const void *data, size_t len)
{
    return encode_str(data, len, 0);
}

char *pp_base64url_str(const void *data, size_t len)
{
    return encode_str(data, len, 1);
}

/* The value of a character of the alphabet, or -1. */
static int value(unsigned char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Appends the bytes of a final group of `n` characters (2 or 3, the rest
 * padding or absent) whose bits are in `acc`; the bits past the last byte
 * must be zero. */
static int tail(uint32_t acc, int n, pp_buf_t *out)
{
    uint8_t bytes[2];
    if (n == 3) {
        /* 18 bits carried: 16 of data, 2 that must be zero. */
        if (acc & 3)
            return -EBADMSG;
        acc >>= 2;
        bytes[0] = (uint8_t)(acc >> 8);
        bytes[1] = (uint8_t)acc;
        return pp_buf_append(out, bytes, 2);
    }
    if (acc & 15)
        return -EBADMSG;
    bytes[0] = (uint8_t)(acc >> 4);
    return pp_buf_append(out, bytes, 1);
}

static int decode(const char *text, size_t len, int url, pp_buf_t *out)
{
    const unsigned char *s = (const unsigned char *)text;
    uint32_t acc = 0;
    int n = 0;   /* characters in the current group */
    int pad = 0; /* '=' seen in the current group */
    int done = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (!url && is_space(c))
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
            int v = value(c, url);
            if (v < 0 || pad > 0)
                return -EBADMSG;
            acc = acc << 6 | (uint32_t)v;
            n++;
        }
        if (n < 4)
            continue;
        int r;
        if (pad == 0) {
            uint8_t bytes[3] = {(uint8_t)(acc >> 16), (uint8_t)(acc >> 8), (uint8_t)acc};
            r = pp_buf_append(out, bytes, 3);
        } else {
            r = tail(acc, 4 - pad, out);
            done = 1;
        }
        if (r < 0)
            return r;
        acc = 0;
        n = 0;
        pad = 0;
    }
    if (n == 0)
        return 0;
    /* A final group cut short: only where padding is optional, and never
     * with a part of its padding. */
    if (!url || pad > 0 || n == 1)
        return -EBADMSG;
    return tail(acc, n, out);
}

int pp_base64_decode(const char *text, size_t len, pp_buf_t *out)
{
    size_t start = out->len;
    int r = decode(text, len, 0, out);
    if (r < 0)
        out->len = start;
    return r;
}

int pp_base64url_decode(const char *text, size_t len, pp_buf_t *out)
{
    size_t start = out->len;
    int r = decode(text, len, 1, out);
    if (r < 0)
        out->len = start;
    return r;
}
