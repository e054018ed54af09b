/* Fuzzes the AWS provider's readers of the instance metadata service's
 * answers (providers/aws/imds.c: the session token, MAC, region, subnet,
 * security groups, key pair and role name the node's IMDS gives; and the
 * role's JSON credentials). The input is handed over in a buffer of its
 * exact size, not NUL-terminated, so that a reader going past the answer's
 * length is caught. What a reader accepts must be the answer's first line
 * as it stands, printable, without a path separator where it becomes part
 * of a path or a name, and what it refuses leaves nothing behind. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/aws/aws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct {
    enum pp__aws_imds_field f;
    size_t prefix;    /* bytes before the value */
    int slash;        /* may hold '/' */
    int space;        /* may hold ' ' inside */
    int segment;      /* is never `.` or `..` */
    size_t out_sizes; /* as the provider's buffers */
} fields[] = {
    {PP_AWS_IMDS_TOKEN, 0, 1, 0, 0, 256}, {PP_AWS_IMDS_MAC, 0, 0, 0, 1, 64},
    {PP_AWS_IMDS_REGION, 0, 0, 0, 0, 32}, {PP_AWS_IMDS_ID, 0, 0, 0, 0, 128},
    {PP_AWS_IMDS_ROLE, 0, 0, 0, 1, 256},  {PP_AWS_IMDS_KEY_NAME, 2, 0, 1, 0, 256},
};

static int is_space(uint8_t ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static void check_value(const char *out, size_t size, const uint8_t *data, size_t len, size_t skip,
                        int slash, int space, int segment)
{
    size_t n = strnlen(out, size);
    if (n == 0 || n >= size || skip + n > len || memcmp(out, data + skip, n) != 0)
        abort();
    /* The whole first line (white space after it aside). */
    size_t end = skip + n;
    if (end < len && !is_space(data[end]))
        abort();
    for (size_t i = end; i < len && data[i] != '\n' && data[i] != '\r'; i++)
        if (!is_space(data[i]))
            abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)out[i];
        if (ch < 0x20 || ch >= 0x7f || (ch == ' ' && !space) || (ch == '/' && !slash) ||
            ch == '?' || ch == '#' || ch == '%' || ch == '\\')
            abort();
    }
    if (out[n - 1] == ' ' || (segment && (strcmp(out, ".") == 0 || strcmp(out, "..") == 0)))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact copy: no NUL after it for a reader to rely on. */
    char *body = malloc(size ? size : 1);
    if (body == NULL)
        return 0;
    if (size > 0)
        memcpy(body, data, size);

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        char out[256];
        memset(out, 'x', sizeof(out));
        size_t osz = fields[i].out_sizes;
        int r = pp__aws_imds_read(fields[i].f, body, size, out, osz);
        if (r == 0)
            check_value(out, osz, data, size, fields[i].prefix, fields[i].slash, fields[i].space,
                        fields[i].segment);
        else if (r != -EBADMSG || out[0] != '\0')
            abort();
    }

    char(*ids)[64] = NULL;
    size_t n = 0;
    int r = pp__aws_imds_read_groups(body, size, &ids, &n);
    if (r == 0) {
        if (n == 0 || n > PP_AWS_IMDS_GROUPS_MAX)
            abort();
        for (size_t i = 0; i < n; i++) {
            size_t l = strnlen(ids[i], sizeof(ids[i]));
            if (l == 0 || l >= sizeof(ids[i]) || memmem(data, size, ids[i], l) == NULL)
                abort();
            for (size_t k = 0; k < l; k++)
                if (is_space((uint8_t)ids[i][k]) || ids[i][k] == '/')
                    abort();
        }
        free(ids);
    } else if (ids != NULL || n != 0 || (r != -EBADMSG && r != -ENOMEM)) {
        abort();
    }

    pp__aws_sts_creds_t c;
    if (pp__aws_parse_imds_creds(body, size, &c) == 0)
        pp__aws_sts_creds_free(&c);
    free(body);
    return 0;
}
