/* Small pure helpers of the local provider: command lines, names, the tag
 * record, /proc/<pid>/stat. None of them touches the system beyond access(). */
#include "providers/local/local.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n';
}

int pp__local_split(const char *line, char ***argv, size_t *argc)
{
    if (line == NULL)
        return -EINVAL;
    size_t n = 0, len = strlen(line);
    for (size_t i = 0; i < len; i++)
        if (!is_blank(line[i]) && (i == 0 || is_blank(line[i - 1])))
            n++;
    if (n == 0)
        return -EINVAL;

    /* The vector and the words share one allocation, so free(argv) is all. */
    size_t vec = (n + 1) * sizeof(char *);
    char **v = malloc(vec + len + 1);
    if (v == NULL)
        return -ENOMEM;
    char *s = (char *)v + vec;
    memcpy(s, line, len + 1);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (is_blank(s[i])) {
            s[i] = '\0';
            continue;
        }
        if (i == 0 || s[i - 1] == '\0')
            v[k++] = s + i;
    }
    v[k] = NULL;
    *argv = v;
    *argc = k;
    return 0;
}

void pp__local_cmd_free(pp__local_cmd_t *cmd)
{
    free(cmd->argv);
    free(cmd->path);
    cmd->argv = NULL;
    cmd->path = NULL;
    cmd->argc = 0;
}

static int executable(const char *path)
{
    if (access(path, X_OK) == 0) {
        /* access() says yes to directories for root. */
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            return 0;
        return -EACCES;
    }
    return -errno;
}

int pp__local_resolve(const char *name, const char *search_path, char **out)
{
    if (name == NULL || name[0] == '\0')
        return -ENOENT;
    if (strchr(name, '/') != NULL) {
        int rc = executable(name);
        if (rc < 0)
            return rc;
        *out = strdup(name);
        return *out != NULL ? 0 : -ENOMEM;
    }
    if (search_path == NULL)
        search_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    int last = -ENOENT;
    const char *p = search_path;
    for (;;) {
        const char *end = strchrnul(p, ':');
        size_t dlen = (size_t)(end - p);
        cleanup_free char *cand = NULL;
        if (asprintf(&cand, "%.*s/%s", (int)dlen, dlen ? p : ".", name) < 0)
            return -ENOMEM;
        int rc = executable(cand);
        if (rc == 0) {
            *out = PP_STEAL(cand);
            return 0;
        }
        if (rc != -ENOENT && rc != -ENOTDIR)
            last = rc;
        if (*end == '\0')
            break;
        p = end + 1;
    }
    return last;
}

int pp__local_name_valid(const char *name)
{
    if (name == NULL)
        return 0;
    size_t n = strlen(name);
    if (n == 0 || n > PP_LOCAL_NAME_MAX || name[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
    }
    return 1;
}

int pp__local_parse_stat(const char *buf, size_t len, char *state, unsigned long long *start)
{
    /* The command name (field 2) is in parentheses and may hold anything,
     * parentheses and blanks included, so fields are counted from the last ')'. */
    const char *rp = NULL;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == ')')
            rp = buf + i;
    if (rp == NULL)
        return -EINVAL;
    const char *p = rp + 1, *end = buf + len;
    /* After ')' come fields 3.. separated by single spaces. */
    int field = 2;
    const char *f3 = NULL, *f22 = NULL;
    while (p < end && *p != '\0') {
        if (*p == ' ') {
            field++;
            if (field == 3)
                f3 = p + 1;
            else if (field == 22)
                f22 = p + 1;
        }
        p++;
    }
    if (f3 == NULL || f22 == NULL || f3 >= end || f22 >= end)
        return -EINVAL;
    if (*f3 < 'A' || *f3 > 'z')
        return -EINVAL;
    unsigned long long v = 0;
    const char *q = f22;
    if (q >= end || *q < '0' || *q > '9')
        return -EINVAL;
    for (; q < end && *q >= '0' && *q <= '9'; q++) {
        if (v > (~0ull - 9) / 10)
            return -EINVAL;
        v = v * 10 + (unsigned long long)(*q - '0');
    }
    *state = *f3;
    *start = v;
    return 0;
}

/* --- tag.json ----------------------------------------------------------- */

#define TAG_FIELDS(XX)                                                                             \
    XX("name", name)                                                                               \
    XX("sandbox_id", sandbox_id)                                                                   \
    XX("node", node)                                                                               \
    XX("ip", ip)                                                                                   \
    XX("node_ip", node_ip)                                                                         \
    XX("link", link)

int pp__local_tag_encode(const pp__local_tag_t *tag, char **out)
{
    json_t *o = json_object();
    if (o == NULL)
        return -ENOMEM;
    char id[sizeof(PP_LOCAL_ID_PREFIX) + PP_LOCAL_NAME_MAX];
    snprintf(id, sizeof(id), PP_LOCAL_ID_PREFIX "%s", tag->name);
    int bad = json_object_set_new(o, "id", json_string(id));
#define TAG_PUT(key, field) bad |= json_object_set_new(o, key, json_string(tag->field));
    TAG_FIELDS(TAG_PUT)
#undef TAG_PUT
    bad |= json_object_set_new(o, "ready", json_boolean(tag->ready));
    char *s = bad ? NULL : json_dumps(o, JSON_SORT_KEYS);
    json_decref(o);
    if (s == NULL)
        return -ENOMEM;
    *out = s;
    return 0;
}

static int copy_str(json_t *o, const char *key, char *dst, size_t cap)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL || strlen(s) >= cap)
        return -EBADMSG;
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

int pp__local_tag_decode(const char *json, size_t len, pp__local_tag_t *tag)
{
    memset(tag, 0, sizeof(*tag));
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    if (o == NULL)
        return -EBADMSG;
    int rc = json_is_object(o) ? 0 : -EBADMSG;
#define TAG_GET(key, field)                                                                        \
    if (rc == 0)                                                                                   \
        rc = copy_str(o, key, tag->field, sizeof(tag->field));
    TAG_FIELDS(TAG_GET)
#undef TAG_GET
    json_t *ready = json_object_get(o, "ready");
    if (rc == 0 && !json_is_boolean(ready))
        rc = -EBADMSG;
    if (rc == 0)
        tag->ready = json_is_true(ready);
    json_decref(o);

    /* Names from the file become paths and link names: hold them to the same
     * rules as the names we made. */
    struct in_addr a;
    if (rc == 0 &&
        (!pp__local_name_valid(tag->name) ||
         strncmp(tag->link, PP_LOCAL_LINK_PREFIX, strlen(PP_LOCAL_LINK_PREFIX)) != 0 ||
         inet_pton(AF_INET, tag->ip, &a) != 1 || inet_pton(AF_INET, tag->node_ip, &a) != 1))
        rc = -EBADMSG;
    if (rc < 0)
        memset(tag, 0, sizeof(*tag));
    return rc;
}
