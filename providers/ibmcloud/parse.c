/* Readers of what IAM, the VPC API and the Global Tagging API answer (JSON).
 * Everything is bounded: strings are copied into fixed fields (too long is
 * malformed), lists stop at PP_IBM_MAX_ITEMS. */
#include "providers/ibmcloud/ibmcloud.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "util/cleanup.h"

static json_t *load(const char *body, size_t len)
{
    if (body == NULL || len == 0 || len > PP_IBM_JSON_MAX)
        return NULL;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Copies string member `key` of `o` into out[outlen]: 0, -ENOENT when
 * absent (out is ""), -EBADMSG when not a string, too long, or holding NUL. */
static int str(const json_t *o, const char *key, char *out, size_t outlen)
{
    out[0] = '\0';
    json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
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

/* The same, required. */
static int need(const json_t *o, const char *key, char *out, size_t outlen)
{
    int r = str(o, key, out, outlen);
    return r < 0 || out[0] == '\0' ? -EBADMSG : 0;
}

/* A message for people: cut, not refused, when long. */
static void text(const json_t *o, const char *key, char *out, size_t outlen)
{
    out[0] = '\0';
    json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    if (json_is_string(v))
        snprintf(out, outlen, "%s", json_string_value(v));
}

/* o.key.value as a whole number in [lo, hi]. */
static int fixed(const json_t *o, const char *key, long long lo, long long hi, long long *out)
{
    json_t *f = json_object_get(o, key);
    json_t *v = json_is_object(f) ? json_object_get(f, "value") : NULL;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return -EBADMSG;
    *out = json_integer_value(v);
    return 0;
}

int pp__ibm_parse_token(const char *body, size_t len, pp__ibm_token_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    json_t *tok = json_object_get(j, "access_token"), *exp = json_object_get(j, "expires_in");
    json_t *at = json_object_get(j, "expiration");
    char type[32];
    if (!json_is_string(tok) || json_string_length(tok) == 0 || json_string_length(tok) > 16384 ||
        !json_is_integer(exp) || json_integer_value(exp) <= 0 ||
        json_integer_value(exp) > 86400 * 7 || str(j, "token_type", type, sizeof(type)) < 0 ||
        strcasecmp(type, "Bearer") != 0 || (at != NULL && !json_is_integer(at)))
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
    out->expiration = at ? json_integer_value(at) : 0;
    r = 0;
out:
    json_decref(j);
    return r;
}

void pp__ibm_token_free(pp__ibm_token_t *t)
{
    if (t->access_token != NULL) {
        OPENSSL_cleanse(t->access_token, strlen(t->access_token));
        free(t->access_token);
        t->access_token = NULL;
    }
}

int pp__ibm_parse_iam_error(const char *body, size_t len, char *code, size_t codelen, char *msg,
                            size_t msglen)
{
    code[0] = msg[0] = '\0';
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = str(j, "errorCode", code, codelen) < 0 ? -EBADMSG : 0;
    text(j, "errorMessage", msg, msglen);
    json_decref(j);
    return r;
}

int pp__ibm_parse_error(const char *body, size_t len, pp__ibm_error_info_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    json_t *errs = json_object_get(j, "errors");
    json_t *first = json_is_array(errs) ? json_array_get(errs, 0) : NULL;
    if (!json_is_object(first) || need(first, "code", out->code, sizeof(out->code)) < 0)
        goto out;
    text(first, "message", out->message, sizeof(out->message));
    json_t *t = json_object_get(first, "target");
    if (json_is_object(t) && str(t, "name", out->target, sizeof(out->target)) == -EBADMSG)
        goto out;
    r = 0;
out:
    json_decref(j);
    return r;
}

static int nic_of(const json_t *n, pp__ibm_nic_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(n) || need(n, "id", out->id, sizeof(out->id)) < 0)
        return -EBADMSG;
    json_t *pip = json_object_get(n, "primary_ip");
    if (json_is_object(pip) && str(pip, "address", out->address, sizeof(out->address)) == -EBADMSG)
        return -EBADMSG;
    json_t *fips = json_object_get(n, "floating_ips");
    size_t i;
    json_t *f;
    if (fips != NULL && !json_is_array(fips))
        return -EBADMSG;
    json_array_foreach(fips, i, f)
    {
        if (out->nfips >= PP_ARRAY_SIZE(out->fip_id))
            break;
        if (need(f, "id", out->fip_id[out->nfips], sizeof(out->fip_id[0])) < 0 ||
            str(f, "address", out->fip_address[out->nfips], sizeof(out->fip_address[0])) ==
                -EBADMSG)
            return -EBADMSG;
        out->nfips++;
    }
    return 0;
}

static int instance_of(const json_t *o, pp__ibm_instance_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(o) || need(o, "id", out->id, sizeof(out->id)) < 0 ||
        need(o, "name", out->name, sizeof(out->name)) < 0 ||
        need(o, "status", out->status, sizeof(out->status)) < 0 ||
        str(o, "crn", out->crn, sizeof(out->crn)) == -EBADMSG)
        return -EBADMSG;
    json_t *reasons = json_object_get(o, "status_reasons");
    json_t *r0 = json_is_array(reasons) ? json_array_get(reasons, 0) : NULL;
    if (json_is_object(r0)) {
        if (str(r0, "code", out->reason_code, sizeof(out->reason_code)) == -EBADMSG)
            return -EBADMSG;
        text(r0, "message", out->reason_message, sizeof(out->reason_message));
    }
    json_t *bva = json_object_get(o, "boot_volume_attachment");
    json_t *vol = json_is_object(bva) ? json_object_get(bva, "volume") : NULL;
    if (json_is_object(vol) && str(vol, "id", out->volume_id, sizeof(out->volume_id)) == -EBADMSG)
        return -EBADMSG;
    json_t *pni = json_object_get(o, "primary_network_interface");
    if (pni != NULL) {
        if (nic_of(pni, &out->nics[0]) < 0)
            return -EBADMSG;
        out->nnics = 1;
    }
    json_t *nics = json_object_get(o, "network_interfaces");
    size_t i;
    json_t *n;
    if (nics != NULL && !json_is_array(nics))
        return -EBADMSG;
    json_array_foreach(nics, i, n)
    {
        pp__ibm_nic_t nic;
        if (nic_of(n, &nic) < 0)
            return -EBADMSG;
        if (out->nnics > 0 && strcmp(nic.id, out->nics[0].id) == 0)
            continue;
        if (out->nnics >= PP_IBM_MAX_NICS)
            return -EBADMSG;
        out->nics[out->nnics++] = nic;
    }
    return 0;
}

int pp__ibm_parse_instance(const char *body, size_t len, pp__ibm_instance_t *out)
{
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = instance_of(j, out);
    json_decref(j);
    return r;
}

int pp__ibm_parse_nics(const char *body, size_t len, pp__ibm_instance_t *out)
{
    out->nnics = 0;
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    json_t *nics = json_object_get(j, "network_interfaces");
    size_t i;
    json_t *n;
    if (!json_is_array(nics) || json_array_size(nics) > PP_IBM_MAX_NICS)
        goto out;
    json_array_foreach(nics, i, n)
    {
        if (nic_of(n, &out->nics[out->nnics]) < 0)
            goto out;
        out->nnics++;
    }
    r = 0;
out:
    json_decref(j);
    return r;
}

/* The `start` query parameter of next.href. */
static int next_start(const json_t *j, char *out, size_t outlen)
{
    out[0] = '\0';
    json_t *next = json_object_get(j, "next");
    if (next == NULL || json_is_null(next))
        return 0;
    char href[2048];
    if (need(next, "href", href, sizeof(href)) < 0)
        return -EBADMSG;
    const char *q = strchr(href, '?');
    for (const char *p = q; p != NULL && *p; p = strchr(p + 1, '&')) {
        if (strncmp(p + 1, "start=", 6) == 0) {
            size_t n = strcspn(p + 7, "&#");
            if (n == 0 || n >= outlen)
                return -EBADMSG;
            memcpy(out, p + 7, n);
            out[n] = '\0';
            /* It goes back into a query as it came: URL characters only. */
            if (strspn(out,
                       "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%") != n)
                return -EBADMSG;
            return 0;
        }
    }
    return -EBADMSG;
}

int pp__ibm_parse_instances(const char *body, size_t len, pp__ibm_instances_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    json_t *items = json_object_get(j, "instances");
    if (!json_is_array(items) || json_array_size(items) > PP_IBM_MAX_ITEMS ||
        next_start(j, out->next_start, sizeof(out->next_start)) < 0)
        goto out;
    size_t n = json_array_size(items);
    out->items = calloc(n ? n : 1, sizeof(*out->items));
    if (out->items == NULL) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (instance_of(json_array_get(items, i), &out->items[i]) < 0) {
            pp__ibm_instances_free(out);
            goto out;
        }
        out->n++;
    }
    r = 0;
out:
    json_decref(j);
    return r;
}

void pp__ibm_instances_free(pp__ibm_instances_t *l)
{
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int pp__ibm_parse_profile(const char *body, size_t len, pp__ibm_profile_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    long long cpus, gib, gpus = 0;
    json_t *arch = json_object_get(j, "vcpu_architecture");
    if (need(j, "name", out->spec.name, sizeof(out->spec.name)) < 0 ||
        fixed(j, "vcpu_count", 1, 100000, &cpus) < 0 || fixed(j, "memory", 1, 1000000, &gib) < 0 ||
        (json_object_get(j, "gpu_count") != NULL && fixed(j, "gpu_count", 0, 64, &gpus) < 0) ||
        need(arch, "value", out->arch, sizeof(out->arch)) < 0)
        goto out;
    out->spec.vcpus = (unsigned)cpus;
    out->spec.memory_mib = (unsigned)(gib * 1024);
    out->spec.gpus = (unsigned)gpus;
    json_t *ccm = json_object_get(j, "confidential_compute_modes");
    json_t *values = json_is_object(ccm) ? json_object_get(ccm, "values") : NULL;
    size_t i;
    json_t *v;
    if (values != NULL && !json_is_array(values))
        goto out;
    out->modes_listed = values != NULL;
    json_array_foreach(values, i, v)
    {
        if (!json_is_string(v))
            goto out;
        if (strcmp(json_string_value(v), "tdx") == 0)
            out->tdx = 1;
    }
    r = 0;
out:
    json_decref(j);
    return r;
}

int pp__ibm_parse_image(const char *body, size_t len, pp__ibm_image_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    json_t *os = json_object_get(j, "operating_system");
    if (need(j, "id", out->id, sizeof(out->id)) < 0 ||
        str(j, "status", out->status, sizeof(out->status)) == -EBADMSG ||
        need(os, "architecture", out->arch, sizeof(out->arch)) < 0 ||
        need(os, "name", out->os, sizeof(out->os)) < 0)
        goto out;
    /* Secure Execution images are of the Hyper Protect family
     * (hyper-protect-1-0-s390x). */
    out->se = strncmp(out->os, "hyper-protect", 13) == 0;
    r = 0;
out:
    json_decref(j);
    return r;
}

int pp__ibm_parse_volume_owner(const char *body, size_t len, pp__ibm_owner_t *out)
{
    memset(out, 0, sizeof(*out));
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    json_t *tags = json_object_get(j, "user_tags");
    size_t i;
    json_t *t;
    if (tags != NULL && (!json_is_array(tags) || json_array_size(tags) > PP_IBM_MAX_ITEMS))
        goto out;
    json_array_foreach(tags, i, t)
    {
        if (!json_is_string(t) || json_string_length(t) > PP_IBM_TAG_MAX)
            goto out;
        const char *s = json_string_value(t);
        if (strncasecmp(s, PP_IBM_TAG_SANDBOX, strlen(PP_IBM_TAG_SANDBOX)) == 0)
            snprintf(out->sandbox, sizeof(out->sandbox), "%s", s + strlen(PP_IBM_TAG_SANDBOX));
        else if (strncasecmp(s, PP_IBM_TAG_NODE, strlen(PP_IBM_TAG_NODE)) == 0)
            snprintf(out->node_tag, sizeof(out->node_tag), "%s", s);
    }
    r = 0;
out:
    json_decref(j);
    return r;
}

int pp__ibm_parse_fip(const char *body, size_t len, char id[PP_IBM_ID_MAX], char address[48])
{
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r =
        need(j, "id", id, PP_IBM_ID_MAX) < 0 || need(j, "address", address, 48) < 0 ? -EBADMSG : 0;
    json_decref(j);
    return r;
}

int pp__ibm_parse_zone(const char *body, size_t len, char *zone, size_t zonelen)
{
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = need(json_object_get(j, "zone"), "name", zone, zonelen) < 0 ? -EBADMSG : 0;
    json_decref(j);
    return r;
}

int pp__ibm_parse_tag_results(const char *body, size_t len, char *msg, size_t msglen)
{
    msg[0] = '\0';
    json_t *j = load(body, len);
    if (j == NULL)
        return -EBADMSG;
    int r = -EBADMSG;
    json_t *res = json_object_get(j, "results");
    json_t *r0 = json_is_array(res) && json_array_size(res) == 1 ? json_array_get(res, 0) : NULL;
    json_t *is_error = json_is_object(r0) ? json_object_get(r0, "is_error") : NULL;
    if (!json_is_boolean(is_error))
        goto out;
    r = 0;
    if (json_is_true(is_error)) {
        text(r0, "message", msg, msglen);
        r = -EIO;
    }
out:
    json_decref(j);
    return r;
}
