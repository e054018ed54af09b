/* Readers of the instance metadata service's plain-text answers (IMDSv2):
 * the session token, the node's MAC, region, subnet, security groups and
 * key pair (discover.c), and the instance role's name (creds.c). What the
 * service says is untrusted: every reader is bounded by the answer's
 * length (it need not be NUL-terminated) and takes only the characters the
 * value may hold, so nothing it returns can reach a URL path or a header
 * as anything but that value. */
#include "providers/aws/aws.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"

#define ALNUM "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

/* What each one-line answer may hold (`prefix`: what comes before the
 * value on its line; `segment`: the value becomes a segment of the next
 * request's path, where `.` or `..` would name another path). */
static const struct {
    const char *chars;
    const char *prefix;
    int segment;
} fields[] = {
    /* IMDSv2 tokens are base64. */
    [PP_AWS_IMDS_TOKEN] = {ALNUM "-_=+/.", "", 0},
    [PP_AWS_IMDS_MAC] = {"0123456789abcdefABCDEF:", "", 1},
    [PP_AWS_IMDS_REGION] = {"abcdefghijklmnopqrstuvwxyz0123456789-", "", 0},
    [PP_AWS_IMDS_ID] = {ALNUM "-_.", "", 0},
    /* IAM role names. */
    [PP_AWS_IMDS_ROLE] = {ALNUM "+=,.@-_", "", 1},
    /* public-keys: `0=<name>` on the first line, as upstream reads it;
     * EC2 key pair names are printable ASCII. */
    [PP_AWS_IMDS_KEY_NAME] = {ALNUM "=-_.@+ ", "0=", 0},
};

static int in_set(char ch, const char *set)
{
    return ch != '\0' && strchr(set, ch) != NULL;
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

int pp__aws_imds_read(enum pp__aws_imds_field f, const char *body, size_t len, char *out,
                      size_t size)
{
    if ((size_t)f >= PP_ARRAY_SIZE(fields) || size == 0)
        return -EINVAL;
    out[0] = '\0';
    size_t n = 0;
    while (n < len && body[n] != '\n' && body[n] != '\r')
        n++;
    while (n > 0 && is_space(body[n - 1]))
        n--;
    size_t pl = strlen(fields[f].prefix);
    if (n <= pl || memcmp(body, fields[f].prefix, pl) != 0 || n - pl >= size)
        return -EBADMSG;
    size_t dots = 0;
    for (size_t i = pl; i < n; i++) {
        if (!in_set(body[i], fields[f].chars))
            return -EBADMSG;
        dots += body[i] == '.';
    }
    if (fields[f].segment && dots == n - pl && dots <= 2)
        return -EBADMSG;
    memcpy(out, body + pl, n - pl);
    out[n - pl] = '\0';
    return 0;
}

int pp__aws_imds_read_groups(const char *body, size_t len, char (**ids)[64], size_t *count)
{
    *ids = NULL;
    *count = 0;
    size_t n = 0, cap = 0, i = 0;
    char(*v)[64] = NULL;
    while (i < len) {
        while (i < len && is_space(body[i]))
            i++;
        size_t s = i;
        while (i < len && !is_space(body[i]))
            i++;
        if (i == s)
            break;
        int bad = i - s >= sizeof(*v) || n == PP_AWS_IMDS_GROUPS_MAX;
        for (size_t k = s; k < i && !bad; k++)
            bad = !in_set(body[k], fields[PP_AWS_IMDS_ID].chars);
        if (bad) {
            free(v);
            return -EBADMSG;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            void *nv = realloc(v, cap * sizeof(*v));
            if (nv == NULL) {
                free(v);
                return -ENOMEM;
            }
            v = nv;
        }
        memset(v[n], 0, sizeof(v[n]));
        memcpy(v[n], body + s, i - s);
        n++;
    }
    if (n == 0) {
        free(v);
        return -EBADMSG;
    }
    *ids = v;
    *count = n;
    return 0;
}
