/* Readers of what Compute Engine, Resource Manager, the OAuth token endpoint
 * and the metadata server answer (JSON), and of a service-account key.
 * Everything is bounded: strings are copied into fixed fields (too long is
 * malformed), lists stop at PP_GCP_MAX_ITEMS. */
#include "providers/gcp/gcp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "util/cleanup.h"

static json_t *load(const char *body, size_t len)
{
    if (body == NULL || len == 0 || len > PP_GCP_JSON_MAX)
        return NULL;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Copies string member `key` of `o` into out[outlen]: 0, -ENOENT when
 * absent (out is ""), -EBADMSG when not a string or too long. */
static int str(const json_t *o, const char *key, char *out, size_t outlen)
{
    out[0] = '\0';
    json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v))
        return -ENOENT;
    if (!json_is_string(v))
        return -EBADMSG;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n >= outlen || memchr(s, '\0', n) != NULL)
        return -EBADMSG;
    memcpy(out, s, n + 1);
    return 0;
}

/* An int64 that Google's JSON writes as a string (or a number). */
static int int64_member(const json_t *o, const char *key, long long *out)
{
    json_t *v = json_object_get(o, key);
    if (v == NULL)
        return -ENOENT;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return -EBADMSG;
    const char *s = json_string_value(v);
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -EBADMSG;
    *out = x;
    return 0;
}

/* The last path segment of a URL or path into out. */
static int last_segment(const char *s, char *out, size_t outlen)
{
    const char *slash = strrchr(s, '/');
    const char *seg = slash ? slash + 1 : s;
    if (strlen(seg) >= outlen)
        return -EBADMSG;
    snprintf(out, outlen, "%s", seg);
    return 0;
}

int pp__gcp_parse_error(const char *body, size_t len, pp__gcp_error_info_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    json_t *e = json_object_get(j, "error");
    if (!json_is_object(e))
        goto out;
    json_t *code = json_object_get(e, "code");
    if (json_is_integer(code))
        out->http = (long)json_integer_value(code);
    if (str(e, "status", out->status, sizeof(out->status)) == -EBADMSG)
        goto out;
    /* A long message is cut, not refused: it is only for people. */
    json_t *m = json_object_get(e, "message");
    if (json_is_string(m))
        snprintf(out->message, sizeof(out->message), "%s", json_string_value(m));
    json_t *errs = json_object_get(e, "errors");
    if (json_is_array(errs) && json_array_size(errs) > 0) {
        json_t *first = json_array_get(errs, 0);
        if (json_is_object(first) &&
            str(first, "reason", out->reason, sizeof(out->reason)) == -EBADMSG)
            goto out;
    }
    r = 0;
out:
    json_decref(j);
    return r;
}

int pp__gcp_parse_operation(const char *body, size_t len, pp__gcp_operation_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    if (str(j, "name", out->name, sizeof(out->name)) < 0 ||
        str(j, "status", out->status, sizeof(out->status)) < 0)
        goto out;
    char link[1024];
    if (str(j, "targetLink", link, sizeof(link)) == 0 &&
        last_segment(link, out->target, sizeof(out->target)) < 0)
        goto out;
    json_t *code = json_object_get(j, "httpErrorStatusCode");
    if (json_is_integer(code))
        out->http_error = (long)json_integer_value(code);
    json_t *e = json_object_get(j, "error");
    if (e != NULL) {
        json_t *errs = json_object_get(e, "errors");
        json_t *first = json_is_array(errs) ? json_array_get(errs, 0) : NULL;
        if (!json_is_object(first) ||
            str(first, "code", out->error_code, sizeof(out->error_code)) < 0 ||
            out->error_code[0] == '\0')
            goto out;
        json_t *m = json_object_get(first, "message");
        if (json_is_string(m))
            snprintf(out->error_message, sizeof(out->error_message), "%s", json_string_value(m));
    }
    r = 0;
out:
    json_decref(j);
    return r;
}

static int instance_of(const json_t *o, pp__gcp_instance_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(o) || str(o, "name", out->name, sizeof(out->name)) < 0 ||
        str(o, "status", out->status, sizeof(out->status)) == -EBADMSG)
        return -EBADMSG;
    long long id = 0;
    int r = int64_member(o, "id", &id);
    if (r == -EBADMSG)
        return r;
    if (r == 0)
        snprintf(out->id, sizeof(out->id), "%lld", id);
    char mt[512];
    if ((r = str(o, "machineType", mt, sizeof(mt))) == -EBADMSG ||
        (r == 0 && last_segment(mt, out->machine_type, sizeof(out->machine_type)) < 0))
        return -EBADMSG;
    json_t *nics = json_object_get(o, "networkInterfaces");
    json_t *nic = json_is_array(nics) ? json_array_get(nics, 0) : NULL;
    if (json_is_object(nic)) {
        if (str(nic, "networkIP", out->private_ip, sizeof(out->private_ip)) == -EBADMSG)
            return -EBADMSG;
        json_t *acs = json_object_get(nic, "accessConfigs");
        json_t *ac = json_is_array(acs) ? json_array_get(acs, 0) : NULL;
        if (json_is_object(ac) &&
            str(ac, "natIP", out->public_ip, sizeof(out->public_ip)) == -EBADMSG)
            return -EBADMSG;
    }
    json_t *labels = json_object_get(o, "labels");
    char sandbox_label[64] = "";
    if (json_is_object(labels)) {
        if (str(labels, PP_GCP_LABEL_NODE, out->node, sizeof(out->node)) == -EBADMSG ||
            str(labels, PP_GCP_LABEL_SANDBOX, sandbox_label, sizeof(sandbox_label)) == -EBADMSG)
            return -EBADMSG;
    }
    json_t *meta = json_object_get(o, "metadata");
    json_t *mitems = json_is_object(meta) ? json_object_get(meta, "items") : NULL;
    size_t i;
    json_t *it;
    if (json_is_array(mitems)) {
        json_array_foreach(mitems, i, it)
        {
            if (i >= 128)
                break;
            json_t *k = json_object_get(it, "key");
            if (json_is_string(k) && strcmp(json_string_value(k), PP_GCP_META_SANDBOX) == 0 &&
                str(it, "value", out->sandbox, sizeof(out->sandbox)) == -EBADMSG)
                return -EBADMSG;
        }
    }
    if (out->sandbox[0] == '\0')
        snprintf(out->sandbox, sizeof(out->sandbox), "%s", sandbox_label);
    return 0;
}

int pp__gcp_parse_instance(const char *body, size_t len, pp__gcp_instance_t *out)
{
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = instance_of(j, out);
    json_decref(j);
    return r;
}

int pp__gcp_parse_instances(const char *body, size_t len, pp__gcp_instances_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    if (str(j, "nextPageToken", out->next_page, sizeof(out->next_page)) == -EBADMSG)
        goto out;
    json_t *items = json_object_get(j, "items");
    if (items == NULL) {
        r = 0;
        goto out;
    }
    if (!json_is_array(items) || json_array_size(items) > PP_GCP_MAX_ITEMS)
        goto out;
    size_t n = json_array_size(items);
    out->items = calloc(n ? n : 1, sizeof(*out->items));
    if (out->items == NULL) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (instance_of(json_array_get(items, i), &out->items[i]) < 0) {
            pp__gcp_instances_free(out);
            goto out;
        }
        out->n++;
    }
    r = 0;
out:
    json_decref(j);
    return r;
}

void pp__gcp_instances_free(pp__gcp_instances_t *l)
{
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int pp__gcp_parse_machine_type(const char *body, size_t len, pp_instance_type_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    json_t *cpus = json_object_get(j, "guestCpus"), *mem = json_object_get(j, "memoryMb");
    if (str(j, "name", out->name, sizeof(out->name)) < 0 || !json_is_integer(cpus) ||
        !json_is_integer(mem) || json_integer_value(cpus) <= 0 ||
        json_integer_value(cpus) > 100000 || json_integer_value(mem) <= 0 ||
        json_integer_value(mem) > 100000000)
        goto out;
    out->vcpus = (unsigned)json_integer_value(cpus);
    out->memory_mib = (unsigned)json_integer_value(mem);
    json_t *accs = json_object_get(j, "accelerators");
    size_t i;
    json_t *a;
    if (json_is_array(accs)) {
        json_array_foreach(accs, i, a)
        {
            json_t *c = json_object_get(a, "guestAcceleratorCount");
            if (!json_is_integer(c) || json_integer_value(c) < 0 || json_integer_value(c) > 64)
                goto out;
            out->gpus += (unsigned)json_integer_value(c);
        }
    }
    r = 0;
out:
    json_decref(j);
    return r;
}

int pp__gcp_parse_image(const char *body, size_t len, unsigned *disk_gib)
{
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    long long gb = 0;
    int r = int64_member(j, "diskSizeGb", &gb);
    json_decref(j);
    if (r < 0 || gb <= 0 || gb > 65536)
        return -EBADMSG;
    *disk_gib = (unsigned)gb;
    return 0;
}

int pp__gcp_parse_token(const char *body, size_t len, pp__gcp_token_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    json_t *tok = json_object_get(j, "access_token"), *exp = json_object_get(j, "expires_in");
    char type[32];
    if (!json_is_string(tok) || json_string_length(tok) == 0 || json_string_length(tok) > 8192 ||
        !json_is_integer(exp) || json_integer_value(exp) <= 0 ||
        json_integer_value(exp) > 86400 * 7 || str(j, "token_type", type, sizeof(type)) < 0 ||
        strcasecmp(type, "Bearer") != 0)
        goto out;
    const char *t = json_string_value(tok);
    /* It goes into a header: printable, no blanks. */
    for (const char *p = t; *p; p++)
        if (*p <= ' ' || *p > '~')
            goto out;
    out->access_token = strdup(t);
    if (out->access_token == NULL) {
        r = -ENOMEM;
        goto out;
    }
    out->expires_in = (long)json_integer_value(exp);
    r = 0;
out:
    json_decref(j);
    return r;
}

void pp__gcp_token_free(pp__gcp_token_t *t)
{
    if (t->access_token != NULL) {
        OPENSSL_cleanse(t->access_token, strlen(t->access_token));
        free(t->access_token);
        t->access_token = NULL;
    }
}

int pp__gcp_parse_oauth_error(const char *body, size_t len, char *code, size_t codelen, char *desc,
                              size_t desclen)
{
    code[0] = desc[0] = '\0';
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = str(j, "error", code, codelen) < 0 ? -EBADMSG : 0;
    json_t *d = json_object_get(j, "error_description");
    if (r == 0 && json_is_string(d))
        snprintf(desc, desclen, "%s", json_string_value(d));
    json_decref(j);
    return r;
}

int pp__gcp_parse_tags(const char *body, size_t len, const char *field, pp__gcp_tag_list_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    if (str(j, "nextPageToken", out->next_page, sizeof(out->next_page)) == -EBADMSG)
        goto out;
    json_t *items = json_object_get(j, field);
    if (items == NULL) {
        r = 0;
        goto out;
    }
    if (!json_is_array(items) || json_array_size(items) > PP_GCP_MAX_ITEMS)
        goto out;
    size_t n = json_array_size(items);
    out->items = calloc(n ? n : 1, sizeof(*out->items));
    if (out->items == NULL) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(items, i);
        pp__gcp_tag_entry_t *e = &out->items[out->n];
        if (!json_is_object(it) || str(it, "name", e->name, sizeof(e->name)) < 0 ||
            str(it, "shortName", e->short_name, sizeof(e->short_name)) < 0) {
            pp__gcp_tags_free(out);
            goto out;
        }
        out->n++;
    }
    r = 0;
out:
    json_decref(j);
    return r;
}

void pp__gcp_tags_free(pp__gcp_tag_list_t *l)
{
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int pp__gcp_parse_key(const char *json, size_t len, pp__gcp_key_t *out, pp_error_t *err)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(json, len);
    if (j == NULL)
        return pp_error_set(err, -EINVAL, "not a JSON object");
    int r = -EINVAL;
    char type[64];
    json_t *pk = json_object_get(j, "private_key");
    if (str(j, "type", type, sizeof(type)) < 0 || strcmp(type, "service_account") != 0) {
        pp_error_set(err, r,
                     "`type` is not `service_account` (only service-account keys are read)");
        goto out;
    }
    if (str(j, "client_email", out->client_email, sizeof(out->client_email)) < 0 ||
        out->client_email[0] == '\0' || !json_is_string(pk)) {
        pp_error_set(err, r, "`client_email` or `private_key` is missing");
        goto out;
    }
    if (str(j, "private_key_id", out->key_id, sizeof(out->key_id)) == -EBADMSG ||
        str(j, "token_uri", out->token_uri, sizeof(out->token_uri)) == -EBADMSG) {
        pp_error_set(err, r, "`private_key_id` or `token_uri` is not a short string");
        goto out;
    }
    if (out->token_uri[0] == '\0')
        snprintf(out->token_uri, sizeof(out->token_uri), "%s",
                 "https://oauth2.googleapis.com/token");
    BIO *bio = BIO_new_mem_buf(json_string_value(pk), (int)json_string_length(pk));
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (key == NULL || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
        EVP_PKEY_free(key);
        pp_error_set(err, r, "`private_key` is not an RSA private key in PEM");
        goto out;
    }
    out->pkey = key;
    r = 0;
out:
    json_decref(j);
    return r;
}

void pp__gcp_key_free(pp__gcp_key_t *k)
{
    EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
}
