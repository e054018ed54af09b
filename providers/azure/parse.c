/* Readers of what Azure AD, IMDS and Resource Manager answer: JSON through
 * jansson, bounded in size and depth, every field checked for its type and
 * copied into fixed-size fields (too long is malformed). */
#include "providers/azure/azure.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"

#define MAX_DEPTH 32

static json_t *load(const char *json, size_t len)
{
    if (json == NULL || len == 0 || len > PP_AZURE_JSON_MAX)
        return NULL;
    /* jansson bounds its own recursion; the size bound is ours. */
    json_error_t e;
    json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &e);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Copies a string member (absent: "" and 0; not a string or too long:
 * -EBADMSG). */
static int str(json_t *obj, const char *key, char *out, size_t outlen)
{
    out[0] = '\0';
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_length(v) >= outlen ||
        strlen(json_string_value(v)) != json_string_length(v))
        return -EBADMSG;
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static json_t *obj(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_object(v) ? v : NULL;
}

int pp__azure_parse_token(const char *json, size_t len, pp__azure_token_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(json, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    json_t *tok = json_object_get(j, "access_token");
    json_t *exp = json_object_get(j, "expires_in");
    json_t *type = json_object_get(j, "token_type");
    int64_t secs = -1;
    if (json_is_integer(exp)) {
        secs = json_integer_value(exp);
    } else if (json_is_string(exp)) {
        const char *s = json_string_value(exp);
        size_t l = strlen(s);
        if (l > 0 && l < 12 && strspn(s, "0123456789") == l)
            secs = strtoll(s, NULL, 10);
    }
    if (json_is_string(tok) && json_string_length(tok) > 0 && json_string_length(tok) < 16384 &&
        strlen(json_string_value(tok)) == json_string_length(tok) &&
        strspn(json_string_value(tok), "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                       "0123456789-._~+/=") == json_string_length(tok) &&
        secs >= 0 && secs <= 31 * 86400 &&
        (type == NULL ||
         (json_is_string(type) && strcasecmp(json_string_value(type), "Bearer") == 0))) {
        out->access_token = strdup(json_string_value(tok));
        out->expires_in = secs;
        r = out->access_token ? 0 : -ENOMEM;
    }
    json_decref(j);
    return r;
}

void pp__azure_token_free(pp__azure_token_t *t)
{
    if (t->access_token != NULL) {
        explicit_bzero(t->access_token, strlen(t->access_token));
        free(t->access_token);
    }
    memset(t, 0, sizeof(*t));
}

int pp__azure_parse_error(const char *json, size_t len, pp__azure_error_info_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(json, len);
    if (j == NULL)
        return -EBADMSG;
    int r = 0;
    json_t *e = obj(j, "error");
    if (e != NULL) {
        /* ARM: {"error": {"code", "message"}}; messages are cut, not refused. */
        json_t *m = json_object_get(e, "message");
        if (str(e, "code", out->code, sizeof(out->code)) < 0)
            r = -EBADMSG;
        if (json_is_string(m))
            snprintf(out->message, sizeof(out->message), "%s", json_string_value(m));
    } else if (json_is_string(json_object_get(j, "error"))) {
        /* Azure AD: {"error": "invalid_client", "error_description": ...}. */
        json_t *m = json_object_get(j, "error_description");
        if (str(j, "error", out->code, sizeof(out->code)) < 0)
            r = -EBADMSG;
        if (json_is_string(m))
            snprintf(out->message, sizeof(out->message), "%s", json_string_value(m));
    } else {
        r = -EBADMSG;
    }
    json_decref(j);
    return r;
}

int pp__azure_parse_operation(const char *json, size_t len, char *status, size_t statuslen,
                              pp__azure_error_info_t *err)
{
    memset(err, 0, sizeof(*err));
    json_t *j = load(json, len);
    if (j == NULL)
        return -EBADMSG;
    int r = str(j, "status", status, statuslen);
    if (r == 0 && status[0] == '\0')
        r = -EBADMSG;
    json_t *e = obj(j, "error");
    if (r == 0 && e != NULL) {
        json_t *m = json_object_get(e, "message");
        if (str(e, "code", err->code, sizeof(err->code)) < 0)
            r = -EBADMSG;
        if (json_is_string(m))
            snprintf(err->message, sizeof(err->message), "%s", json_string_value(m));
    }
    json_decref(j);
    return r;
}

static int vm_of(json_t *v, pp__azure_vm_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(v))
        return -EBADMSG;
    json_t *props = obj(v, "properties"), *tags = obj(v, "tags");
    if (str(v, "name", out->name, sizeof(out->name)) < 0 || out->name[0] == '\0')
        return -EBADMSG;
    if (props != NULL) {
        if (str(props, "provisioningState", out->state, sizeof(out->state)) < 0)
            return -EBADMSG;
        json_t *nics = json_object_get(obj(props, "networkProfile"), "networkInterfaces");
        json_t *first = json_is_array(nics) ? json_array_get(nics, 0) : NULL;
        if (first != NULL &&
            (!json_is_object(first) || str(first, "id", out->nic_id, sizeof(out->nic_id)) < 0))
            return -EBADMSG;
    }
    if (tags != NULL &&
        (str(tags, PP_AZURE_TAG_NODE, out->node, sizeof(out->node)) < 0 ||
         str(tags, PP_AZURE_TAG_SANDBOX, out->sandbox_id, sizeof(out->sandbox_id)) < 0))
        return -EBADMSG;
    return 0;
}

int pp__azure_parse_vm(const char *json, size_t len, pp__azure_vm_t *out)
{
    json_t *j = load(json, len);
    if (j == NULL)
        return -EBADMSG;
    int r = vm_of(j, out);
    json_decref(j);
    return r;
}

/* A page of a list: {"value": [...], "nextLink": "..."}; each item read by
 * `one` into items[i] of `size` bytes. */
static int page(const char *json, size_t len, size_t size, int (*one)(json_t *, void *),
                void **items, size_t *n, char *next, size_t nextlen)
{
    *items = NULL;
    *n = 0;
    next[0] = '\0';
    json_t *j = load(json, len);
    if (j == NULL)
        return -EBADMSG;
    json_t *value = json_object_get(j, "value");
    int r = -EBADMSG;
    if (!json_is_array(value) || json_array_size(value) > PP_AZURE_MAX_ITEMS ||
        str(j, "nextLink", next, nextlen) < 0)
        goto out;
    size_t count = json_array_size(value);
    char *v = calloc(count ? count : 1, size);
    if (v == NULL) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        if (one(json_array_get(value, i), v + i * size) < 0) {
            free(v);
            goto out;
        }
    }
    *items = v;
    *n = count;
    r = 0;
out:
    json_decref(j);
    return r;
}

static int vm_one(json_t *v, void *out)
{
    return vm_of(v, out);
}

int pp__azure_parse_vms(const char *json, size_t len, pp__azure_vms_t *out)
{
    void *items;
    int r = page(json, len, sizeof(pp__azure_vm_t), vm_one, &items, &out->n, out->next_link,
                 sizeof(out->next_link));
    out->items = items;
    return r;
}

void pp__azure_vms_free(pp__azure_vms_t *l)
{
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* A NIC (its first IP configuration's private address and public address
 * id) or a public IP address (its address). */
static int addr_of(json_t *v, pp__azure_addr_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(v) || str(v, "id", out->id, sizeof(out->id)) < 0)
        return -EBADMSG;
    json_t *props = obj(v, "properties");
    if (props == NULL)
        return 0;
    json_t *ipcs = json_object_get(props, "ipConfigurations");
    if (ipcs != NULL) {
        json_t *first = json_is_array(ipcs) ? json_array_get(ipcs, 0) : NULL;
        if (first == NULL)
            return json_is_array(ipcs) ? 0 : -EBADMSG;
        json_t *ip = obj(first, "properties");
        if (!json_is_object(first) || ip == NULL)
            return -EBADMSG;
        if (str(ip, "privateIPAddress", out->ip, sizeof(out->ip)) < 0)
            return -EBADMSG;
        json_t *pub = obj(ip, "publicIPAddress");
        if (pub != NULL && str(pub, "id", out->pip_id, sizeof(out->pip_id)) < 0)
            return -EBADMSG;
        return 0;
    }
    return str(props, "ipAddress", out->ip, sizeof(out->ip));
}

int pp__azure_parse_addr(const char *json, size_t len, pp__azure_addr_t *out)
{
    json_t *j = load(json, len);
    if (j == NULL)
        return -EBADMSG;
    int r = addr_of(j, out);
    json_decref(j);
    return r;
}

static int addr_one(json_t *v, void *out)
{
    return addr_of(v, out);
}

int pp__azure_parse_addrs(const char *json, size_t len, pp__azure_addrs_t *out)
{
    void *items;
    int r = page(json, len, sizeof(pp__azure_addr_t), addr_one, &items, &out->n, out->next_link,
                 sizeof(out->next_link));
    out->items = items;
    return r;
}

void pp__azure_addrs_free(pp__azure_addrs_t *l)
{
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static int size_one(json_t *v, void *out)
{
    pp_instance_type_t *t = out;
    memset(t, 0, sizeof(*t));
    json_t *cores = json_object_get(v, "numberOfCores"), *mem = json_object_get(v, "memoryInMB");
    if (!json_is_object(v) || str(v, "name", t->name, sizeof(t->name)) < 0 || t->name[0] == '\0' ||
        !json_is_integer(cores) || !json_is_integer(mem) || json_integer_value(cores) < 0 ||
        json_integer_value(cores) > 100000 || json_integer_value(mem) < 0 ||
        json_integer_value(mem) > (1LL << 32) - 1)
        return -EBADMSG;
    t->vcpus = (unsigned)json_integer_value(cores);
    t->memory_mib = (unsigned)json_integer_value(mem);
    return 0;
}

int pp__azure_parse_sizes(const char *json, size_t len, pp_instance_type_t **out, size_t *n)
{
    char next[8];
    void *items;
    int r = page(json, len, sizeof(pp_instance_type_t), size_one, &items, n, next, sizeof(next));
    *out = items;
    return r;
}
