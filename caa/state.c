#include "state.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net/net.h"
#include "util/cleanup.h"
#include "util/file.h"
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

/* Writes `len` bytes to dir/name atomically with `mode`, on disk when it
 * returns. */
static int write_atomic(const char *dir, const char *name, const void *data, size_t len,
                        mode_t mode, pp_error_t *err)
{
    char path[320];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return pp_error_set(err, -ENAMETOOLONG, "path `%s/%s` is too long", dir, name);
    return pp_file_write_atomic(path, data, len, mode, PP_FILE_DURABLE, err);
}

int caa_state_encode(const caa_sandbox_t *sb, char **out, pp_error_t *err)
{
    json_t *j = json_pack(
        "{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:s, s:i, s:i, s:i}", "version",
        CAA_STATE_VERSION, "id", sb->id, "state", caa_state_name(sb->state), "pod-name",
        sb->pod_name, "pod-namespace", sb->pod_namespace, "netns", sb->netns_path, "instance-name",
        sb->instance_name, "instance-id", sb->instance.id, "ip", sb->instance.ip, "has-instance",
        sb->has_instance, "machine-type", sb->machine_type, "image", sb->image, "vcpus",
        (int)sb->vcpus, "memory-mib", (int)sb->memory_mib, "gpus", (int)sb->gpus);
    if (j == NULL)
        return pp_error_set(err, -ENOMEM, "record for `%s`: cannot encode", sb->id);
    int r = json_object_set_new(j, "pod-index", json_integer(sb->pod_index));
    r |= json_object_set_new(j, "created-at", json_integer(sb->created_at));
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
    *out = text;
    return 0;
}

int caa_state_save(caa_sandbox_t *sb, pp_error_t *err)
{
    char *text = NULL;
    int r = caa_state_encode(sb, &text, err);
    if (r < 0)
        return r;
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

static int copy_str(char *dst, size_t size, json_t *v)
{
    const char *s = json_string_value(v);
    if (s == NULL || strlen(s) >= size || strlen(s) != json_string_length(v))
        return -EINVAL;
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

/* A whole number from 0 to `max` into *out; absent is 0. */
static int get_count(json_t *j, const char *key, json_int_t max, unsigned *out)
{
    json_t *v = json_object_get(j, key);
    if (v == NULL) {
        *out = 0;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return -EINVAL;
    *out = (unsigned)json_integer_value(v);
    return 0;
}

/* A boolean into *out; absent is false. */
static int get_bool(json_t *j, const char *key, int *out)
{
    json_t *v = json_object_get(j, key);
    if (v != NULL && !json_is_boolean(v))
        return -EINVAL;
    *out = json_is_true(v);
    return 0;
}

int caa_state_decode(caa_sandbox_t *sb, const char *text, size_t len, pp_error_t *err)
{
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        return pp_error_set(err, -EBADMSG, "not a JSON object%s%s", j == NULL ? ": " : "",
                            j == NULL ? je.text : "");
    }
    int r = 0;
    const char *why = NULL;
    json_t *version = json_object_get(j, "version");
    const char *state = json_string_value(json_object_get(j, "state"));
    const char *id = json_string_value(json_object_get(j, "id"));
    if (!json_is_integer(version) || json_integer_value(version) != CAA_STATE_VERSION)
        why = "`version` is not 1 (written by another version of cloud-api-adaptor)";
    else if (state == NULL || caa_state_parse(state, &sb->state) < 0)
        why = "`state` is not one of created, starting, running, stopping, failed";
    else if (id == NULL || strcmp(id, sb->id) != 0)
        why = "`id` is not the directory's name";
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
    char what[96];
    for (size_t i = 0; why == NULL && i < PP_ARRAY_SIZE(strs); i++)
        if (copy_str(strs[i].dst, strs[i].size, json_object_get(j, strs[i].key)) < 0) {
            snprintf(what, sizeof(what), "`%s` is not a string of fewer than %zu bytes",
                     strs[i].key, strs[i].size);
            why = what;
        }
    int has_instance = 0, tunnel_up = 0;
    if (why == NULL && (get_count(j, "vcpus", 1024, &sb->vcpus) < 0 ||
                        get_count(j, "memory-mib", 16 << 20, &sb->memory_mib) < 0 ||
                        get_count(j, "gpus", 64, &sb->gpus) < 0))
        why = "`vcpus`, `memory-mib` or `gpus` is not a whole number in range";
    if (why == NULL && (get_bool(j, "has-instance", &has_instance) < 0 ||
                        get_bool(j, "tunnel-up", &tunnel_up) < 0))
        why = "`has-instance` or `tunnel-up` is not a boolean";
    json_t *pi = json_object_get(j, "pod-index");
    if (why == NULL && pi != NULL &&
        (!json_is_integer(pi) || json_integer_value(pi) < -1 || json_integer_value(pi) > INT32_MAX))
        why = "`pod-index` is not a whole number";
    sb->pod_index = pi != NULL && why == NULL ? (int)json_integer_value(pi) : -1;
    /* Absent in records of before: the sandbox counts as created now. */
    json_t *ca = json_object_get(j, "created-at");
    if (why == NULL && ca != NULL && (!json_is_integer(ca) || json_integer_value(ca) < 0))
        why = "`created-at` is not a whole number";
    sb->created_at =
        ca != NULL && why == NULL ? (int64_t)json_integer_value(ca) : (int64_t)time(NULL);
    json_t *pn = json_object_get(j, "pod-network");
    if (why == NULL && pn != NULL) {
        sb->podnet = calloc(1, sizeof(*sb->podnet));
        if (sb->podnet == NULL)
            r = -ENOMEM;
        else if (pp_podnet_from_json(pn, sb->podnet, NULL) < 0)
            why = "`pod-network` is malformed";
    }
    if (why == NULL && r == 0) {
        sb->tunnel_up = tunnel_up ? 1 : 0;
        sb->has_instance = has_instance ? 1 : 0;
        snprintf(sb->instance.name, sizeof(sb->instance.name), "%s", sb->instance_name);
        memcpy(sb->instance.sandbox_id, sb->id, sizeof(sb->id));
    }
    json_decref(j);
    if (r < 0)
        return pp_error_set(err, r, "out of memory");
    if (why != NULL)
        return pp_error_set(err, -EBADMSG, "%s", why);
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
    r = pp_file_read(path, CAA_STATE_MAX, PP_FILE_NOFOLLOW | PP_FILE_REGULAR, &text, &len, NULL);
    if (r == -EFBIG)
        r = -EINVAL; /* as anything else that is not a record file */
    if (r < 0) {
        free(sb);
        return pp_error_set(err, r, "read `%s`: %s", path,
                            r == -EINVAL ? "not a regular file of at most 64 KiB" : strerror(-r));
    }
    pp_error_t derr = {0};
    r = caa_state_decode(sb, text, len, &derr);
    free(text);
    if (r < 0) {
        caa_sandbox_free(sb);
        return pp_error_set(err, r == -ENOMEM ? r : -EBADMSG, "record `%s`: %s", path,
                            derr.message);
    }
    snprintf(path, sizeof(path), "%s/%s", sb->dir, CAA_INITDATA_FILE);
    size_t ilen;
    if (pp_file_read(path, 16u << 20, PP_FILE_NOFOLLOW | PP_FILE_REGULAR, &sb->initdata_b64, &ilen,
                     NULL) < 0)
        sb->initdata_b64 = NULL;
    *out = sb;
    return 0;
}
