/* Resource names of the clouds that share Compute Engine's rule (names.h). */
#include "providers/names.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#define NAME_CHARS "abcdefghijklmnopqrstuvwxyz0123456789-"

int pp_cloud_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 63 || !islower((unsigned char)name[0]) || name[n - 1] == '-')
        return 0;
    return strspn(name, NAME_CHARS) == n;
}

void pp_cloud_sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int outlen = 32;
    EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL);
}

int pp_cloud_instance_name(const char *in, char out[64])
{
    if (pp_cloud_name_valid(in)) {
        snprintf(out, 64, "%s", in);
        return 0;
    }
    size_t n = strlen(in);
    if (n == 0)
        return -EINVAL;
    char s[64];
    size_t o = 0;
    if (!isalpha((unsigned char)in[0]))
        s[o++] = 'p';
    for (size_t i = 0; i < n && o < 54; i++) {
        unsigned char ch = (unsigned char)tolower((unsigned char)in[i]);
        s[o++] = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ? (char)ch : '-';
    }
    while (o > 0 && s[o - 1] == '-')
        o--;
    s[o] = '\0';
    unsigned char h[32];
    pp_cloud_sha256(in, n, h);
    snprintf(out, 64, "%.54s-%02x%02x%02x%02x", s, h[0], h[1], h[2], h[3]);
    return 0;
}
