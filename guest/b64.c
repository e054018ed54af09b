#include "b64.h"

#include <errno.h>
#include <string.h>

static const char std_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int encode(const uint8_t *p, size_t n, const char *alpha, int pad, pp_buf_t *out)
{
    int r = pp_buf_reserve(out, (n + 2) / 3 * 4 + 1);
    if (r < 0)
        return r;
    char *o = (char *)out->data + out->len;
    size_t i = 0, k = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        o[k++] = alpha[v >> 18 & 63];
        o[k++] = alpha[v >> 12 & 63];
        o[k++] = alpha[v >> 6 & 63];
        o[k++] = alpha[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        o[k++] = alpha[v >> 18 & 63];
        o[k++] = alpha[v >> 12 & 63];
        if (pad) {
            o[k++] = '=';
            o[k++] = '=';
        }
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        o[k++] = alpha[v >> 18 & 63];
        o[k++] = alpha[v >> 12 & 63];
        o[k++] = alpha[v >> 6 & 63];
        if (pad)
            o[k++] = '=';
    }
    o[k] = 0;
    out->len += k;
    return 0;
}

int guest_b64_encode(const void *p, size_t n, pp_buf_t *out)
{
    return encode(p, n, std_alpha, 1, out);
}

int guest_b64url_encode(const void *p, size_t n, pp_buf_t *out)
{
    return encode(p, n, url_alpha, 0, out);
}

static char *str(const void *p, size_t n, int url)
{
    pp_buf_t b;
    pp_buf_init(&b, 0);
    if ((url ? guest_b64url_encode(p, n, &b) : guest_b64_encode(p, n, &b)) < 0) {
        pp_buf_free(&b);
        return NULL;
    }
    return (char *)pp_buf_steal(&b, NULL);
}

char *guest_b64_str(const void *p, size_t n)
{
    return str(p, n, 0);
}

char *guest_b64url_str(const void *p, size_t n)
{
    return str(p, n, 1);
}

static int value(char c, int url)
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

/* `need_pad`: the standard form must be padded to a multiple of 4. */
static int decode(const char *s, size_t n, int url, pp_buf_t *out)
{
    size_t pad = 0;
    while (n > 0 && s[n - 1] == '=' && pad < 2) {
        n--;
        pad++;
    }
    if (!url && (n + pad) % 4 != 0)
        return -EBADMSG;
    if (n % 4 == 1 || (pad && (n + pad) % 4 != 0))
        return -EBADMSG;
    int r = pp_buf_reserve(out, n / 4 * 3 + 3);
    if (r < 0)
        return r;
    uint8_t *o = out->data + out->len;
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = value(s[i], url);
        if (v < 0)
            return -EBADMSG;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[k++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -EBADMSG; /* non-zero trailing bits */
    out->len += k;
    return 0;
}

int guest_b64_decode(const char *s, size_t n, pp_buf_t *out)
{
    return decode(s, n, 0, out);
}

int guest_b64url_decode(const char *s, size_t n, pp_buf_t *out)
{
    return decode(s, n, 1, out);
}

void guest_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = 0;
}
