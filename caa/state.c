#include "state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/net.h"
#include "util/cleanup.h"
#include "util/log.h"

static const char *const state_names[] = {
    [CAA_SB_CREATED] = "created",   [CAA_SB_STARTING] = "starting", [CAA_SB_RUNNING] = "running",
    [CAA_SB_STOPPING] = "stopping", [CAA_SB_FAILED] = "failed",
};

const char *caa_state_name(enum caa_sandbox_state s)
{
    return state_names[s];
}

int caa_state_parse(const char *name, enum caa_sandbox_state *out)
{
    for (size_t i = 0; i < PP_ARRAY_SIZE(state_names); i++)
        if (strcmp(name, state_names[i]) == 0) {
            *out = (enum caa_sandbox_state)i;
            return 0;
        }
    return -EINVAL;
}

/* Writes `len` bytes to dir/name atomically with `mode`. */
static int write_atomic(const char *dir, const char *name, const void *data, size_t len,
                        mode_t mode, pp_error_t *err)
{
    char tmp[320], path[320];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return pp_error_set(err, -errno, "write `%s`: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            unlink(tmp);
            return pp_error_set(err, -e, "write `%s`: %s", tmp, strerror(e));
        }
        p += n;
        left -= (size_t)n;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        int e = errno;
        unlink(tmp);
        return pp_error_set(err, -e, "sync `%s`: %s", tmp, strerror(e));
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return pp_error_set(err, -e, "rename to `%s`: %s", path, strerror(e));
    }
    /* The rename itself must survive a crash too. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int caa_state_save(caa_sandbox_t *sb, pp_error_t *err)
{
    json_t *j = json_pack(
        "{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:s, s:i, s:i, s:i}", "version", 1,
        "id", sb->id, "state", caa_state_name(sb->state), "pod-name", sb->pod_name, "pod-namespace",
        sb->pod_namespace, "netns", sb->netns_path, "instance-name", sb->instance_name,
        "instance-id", sb->instance.id, "ip", sb->instance.ip, "has-instance", sb->has_instance,
        "machine-type", sb->machine_type, "image", sb->image, "vcpus", (int)sb->vcpus, "memory-mib",
        (int)sb->memory_mib, "gpus", (int)sb->gpus);
    if (j == NULL)
        return pp_error_set(err, -ENOMEM, "record for `%s`: cannot encode", sb->id);
    int r = json_object_set_new(j, "pod-index", json_integer(sb->pod_index));
    r |= json_object_set_new(j, "tunnel-up", json_boolean(sb->tunnel_up));
    if (sb->podnet != NULL) {
        json_t *pn;
        if (pp_podnet_to_json(sb->podnet, &pn, err) < 0) {
            json_decref(j);
            return err->code;
        }
        r |= json_object_set_new(j, "pod-network", pn);
    }
    if (r != 0) {
        json_decref(j);
        return pp_error_set(err, -ENOMEM, "record for `%s`: cannot encode", sb->id);
    }
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (text == NULL)
        return pp_error_set(err, -ENOMEM, "record for `%s`: cannot encode", sb->id);
    r = write_atomic(sb->dir, CAA_STATE_FILE, text, strlen(text), 0600, err);
    free(text);
    return r;
}

int caa_state_save_initdata(caa_sandbox_t *sb, pp_error_t *err)
{
    if (sb->initdata_b64 == NULL)
        return 0;
    return write_atomic(sb->dir, CAA_INITDATA_FILE, sb->initdata_b64, strlen(sb->initdata_b64),
                        0600, err);
}

static int read_file(const char *path, size_t max, char **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        close(fd);
        return -EINVAL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}

static int copy_str(char *dst, size_t size, json_t *v)
{
    const char *s = json_string_value(v);
    if (s == NULL || strlen(s) >= size)
        return -EINVAL;
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

int caa_state_load(caa_daemon_t *d, const char *id, caa_sandbox_t **out, pp_error_t *err)
{
    caa_sandbox_t *sb;
    int r = caa_sandbox_new(d, id, &sb, err);
    if (r < 0)
        return r;
    r = caa_sandbox_paths(d, sb, err);
    if (r < 0) {
        free(sb);
        return r;
    }
    char path[320];
    snprintf(path, sizeof(path), "%s/%s", sb->dir, CAA_STATE_FILE);
    char *text = NULL;
    size_t len;
    r = read_file(path, 64 * 1024, &text, &len);
    if (r < 0) {
        free(sb);
        return pp_error_set(err, r, "read `%s`: %s", path, strerror(-r));
    }
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    free(text);
    r = j == NULL ? -EBADMSG : 0;
    const char *state = j ? json_string_value(json_object_get(j, "state")) : NULL;
    if (r == 0 && (state == NULL || caa_state_parse(state, &sb->state) < 0 ||
                   json_integer_value(json_object_get(j, "version")) != 1))
        r = -EBADMSG;
    const struct {
        const char *key;
        char *dst;
        size_t size;
    } strs[] = {
        {"pod-name", sb->pod_name, sizeof(sb->pod_name)},
        {"pod-namespace", sb->pod_namespace, sizeof(sb->pod_namespace)},
        {"netns", sb->netns_path, sizeof(sb->netns_path)},
        {"instance-name", sb->instance_name, sizeof(sb->instance_name)},
        {"instance-id", sb->instance.id, sizeof(sb->instance.id)},
        {"ip", sb->instance.ip, sizeof(sb->instance.ip)},
        {"machine-type", sb->machine_type, sizeof(sb->machine_type)},
        {"image", sb->image, sizeof(sb->image)},
    };
    for (size_t i = 0; r == 0 && i < PP_ARRAY_SIZE(strs); i++)
        if (copy_str(strs[i].dst, strs[i].size, json_object_get(j, strs[i].key)) < 0)
            r = -EBADMSG;
    json_t *pi = j ? json_object_get(j, "pod-index") : NULL;
    sb->pod_index = json_is_integer(pi) ? (int)json_integer_value(pi) : -1;
    json_t *pn = j ? json_object_get(j, "pod-network") : NULL;
    if (r == 0 && pn != NULL) {
        sb->podnet = calloc(1, sizeof(*sb->podnet));
        if (sb->podnet == NULL || pp_podnet_from_json(pn, sb->podnet, NULL) < 0)
            r = -EBADMSG;
    }
    if (r == 0) {
        sb->tunnel_up = json_is_true(json_object_get(j, "tunnel-up"));
        sb->has_instance = json_is_true(json_object_get(j, "has-instance"));
        sb->vcpus = (unsigned)json_integer_value(json_object_get(j, "vcpus"));
        sb->memory_mib = (unsigned)json_integer_value(json_object_get(j, "memory-mib"));
        sb->gpus = (unsigned)json_integer_value(json_object_get(j, "gpus"));
        snprintf(sb->instance.name, sizeof(sb->instance.name), "%s", sb->instance_name);
        memcpy(sb->instance.sandbox_id, sb->id, sizeof(sb->id));
    }
    json_decref(j);
    if (r < 0) {
        caa_sandbox_free(sb);
        return pp_error_set(err, r, "record `%s` is malformed", path);
    }
    snprintf(path, sizeof(path), "%s/%s", sb->dir, CAA_INITDATA_FILE);
    size_t ilen;
    if (read_file(path, 16u << 20, &sb->initdata_b64, &ilen) < 0)
        sb->initdata_b64 = NULL;
    *out = sb;
    return 0;
}
