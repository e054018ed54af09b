/* The Azure provider's settings: upstream's names, flags and defaults
 * (cloud-api-adaptor's azure provider and its entrypoint), the Azure SDKs'
 * names for what they have (AZURE_FEDERATED_TOKEN_FILE,
 * AZURE_AUTHORITY_HOST, AZURE_POD_IDENTITY_AUTHORITY_HOST), and ours for
 * the HTTP client's limits, in the AWS provider's pattern. */
#include "providers/azure/azure.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util/base64.h"
#include "util/buf.h"
#include "util/cleanup.h"
#include "util/file.h"

#define T       pp__azure_config_t
#define ID      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
#define ARM_ID  ID "/()"
#define KEY_MAX 16384

static const pp_setting_t items[] = {
    PP_SETTING_STR(T, client_id, "AZURE_CLIENT_ID", "clientid", NULL,
                   "application (client) id; with managed identity, picks a user-assigned one",
                   .chars = ID),
    PP_SETTING_STR(T, client_secret, "AZURE_CLIENT_SECRET", "secret", NULL,
                   "client secret (first choice of credentials)", .flags = PP_SETTING_SECRET),
    PP_SETTING_STR(T, tenant_id, "AZURE_TENANT_ID", "tenantid", NULL, "directory (tenant) id",
                   .chars = ID),
    PP_SETTING_STR(T, subscription_id, "AZURE_SUBSCRIPTION_ID", "subscriptionid", NULL,
                   "subscription id", .chars = ID, .flags = PP_SETTING_REQUIRED),
    PP_SETTING_STR(T, region, "AZURE_REGION", "region", NULL, "region (location) of the VMs",
                   .chars = ID, .flags = PP_SETTING_REQUIRED),
    PP_SETTING_STR(T, resource_group, "AZURE_RESOURCE_GROUP", "resourcegroup", NULL,
                   "resource group of the VMs", .chars = ID "()", .flags = PP_SETTING_REQUIRED),
    PP_SETTING_STR(T, instance_size, "AZURE_INSTANCE_SIZE", "instance-size", "Standard_DC2as_v5",
                   "default VM size", .chars = ID),
    PP_SETTING_LIST_OF(T, instance_sizes, "AZURE_INSTANCE_SIZES", "instance-sizes", NULL,
                       "allowed VM sizes, comma separated (best fit by vCPUs and memory)",
                       .chars = ID, .max = 256),
    PP_SETTING_STR(T, subnet_id, "AZURE_SUBNET_ID", "subnetid", NULL, "subnet of the VMs' NICs",
                   .chars = ARM_ID, .flags = PP_SETTING_REQUIRED),
    PP_SETTING_STR(T, nsg_id, "AZURE_NSG_ID", "securitygroupid", NULL,
                   "network security group of the NICs", .chars = ARM_ID),
    PP_SETTING_STR(T, image_id, "AZURE_IMAGE_ID", "imageid", NULL,
                   "pod VM image: an image id, or /CommunityGalleries/... ", .chars = ARM_ID,
                   .flags = PP_SETTING_REQUIRED),
    PP_SETTING_STR(T, ssh_username, "SSH_USERNAME", "ssh-username", "peerpod",
                   "admin user of the VMs", .chars = "abcdefghijklmnopqrstuvwxyz0123456789_-"),
    PP_SETTING_STR(T, ssh_key_path, NULL, "ssh-key-path", NULL,
                   "SSH public key file for the admin user; none: a key is made at start (its "
                   "private half is not kept: the pod VMs are not reached over SSH)"),
    PP_SETTING_BOOL_OF(T, disable_cvm, "DISABLECVM", "disable-cvm", "false",
                       "plain VMs instead of confidential VMs"),
    PP_SETTING_BOOL_OF(T, enable_secure_boot, "ENABLE_SECURE_BOOT", "enable-secure-boot", "false",
                       "secure boot on confidential VMs"),
    PP_SETTING_BOOL_OF(T, use_public_ip, "USE_PUBLIC_IP", "use-public-ip", "false",
                       "give each VM a public address and reach the forwarder there"),
    PP_SETTING_INT_OF(T, root_volume_size, "ROOT_VOLUME_SIZE", "root-volume-size", "0", 0, 4095,
                      "OS disk size in GiB; 0 keeps the image's"),
    PP_SETTING_STR(T, tags, "TAGS", "tags", NULL, "extra tags, key=value,key=value"),
    PP_SETTING_STR(T, federated_token_file, "AZURE_FEDERATED_TOKEN_FILE", NULL, NULL,
                   "workload identity token file, re-read at every refresh"),
    PP_SETTING_STR(T, authority_host, "AZURE_AUTHORITY_HOST", NULL,
                   "https://login.microsoftonline.com", "Azure AD endpoint"),
    PP_SETTING_STR(T, arm_endpoint, "AZURE_RESOURCE_MANAGER_ENDPOINT", NULL,
                   "https://management.azure.com", "Resource Manager endpoint"),
    PP_SETTING_STR(T, imds_endpoint, "AZURE_POD_IDENTITY_AUTHORITY_HOST", NULL,
                   "http://169.254.169.254", "managed identity (IMDS) endpoint"),
    PP_SETTING_STR(T, ca_bundle, "AZURE_CA_BUNDLE", NULL, NULL, "extra CA file (PEM)"),
    PP_SETTING_NUMBER_OF(T, rate, "AZURE_API_RATE_LIMIT", NULL, "10", 0, 100000,
                         "requests per second to Azure, retries included; 0: no limit"),
    PP_SETTING_INT_OF(T, burst, "AZURE_API_BURST", NULL, "20", 1, 100000, "burst of requests"),
    PP_SETTING_INT_OF(T, max_attempts, "AZURE_MAX_ATTEMPTS", NULL, "5", 1, 100,
                      "attempts of one request"),
    PP_SETTING_INT_OF(T, backoff_base_ms, "AZURE_RETRY_BASE_DELAY_MS", NULL, "200", 1, 600000,
                      "first backoff ceiling (ms)"),
    PP_SETTING_INT_OF(T, backoff_max_ms, "AZURE_RETRY_MAX_DELAY_MS", NULL, "20000", 1, 600000,
                      "largest backoff (ms)"),
    PP_SETTING_INT_OF(T, attempt_timeout_ms, "AZURE_API_ATTEMPT_TIMEOUT_MS", NULL, "20000", 100,
                      600000, "one attempt (ms)"),
    PP_SETTING_INT_OF(T, request_timeout_ms, "AZURE_API_TIMEOUT_MS", NULL, "90000", 100, 3600000,
                      "one request with its retries (ms)"),
    PP_SETTING_INT_OF(T, poll_ms, "AZURE_POLL_INTERVAL_MS", NULL, "2000", 1, 600000,
                      "shortest wait between polls of an operation (ms)"),
    PP_SETTING_INT_OF(T, operation_timeout_ms, "AZURE_OPERATION_TIMEOUT_MS", NULL, "900000", 1000,
                      7200000, "one long operation (ms)"),
    PP_SETTING_UPSTREAM(PP_SETTING_NOOP, NULL, "zone", NULL,
                        "availability zone (accepted; upstream's VMs take none from it either)"),
};

const pp_settings_table_t pp__azure_settings = {
    .title = "azure provider", .items = items, .n = PP_ARRAY_SIZE(items)};

/* Drops a trailing slash; an endpoint is http or https. */
static int endpoint(const char *setting, const char *v, char *out, size_t outlen, pp_error_t *err)
{
    if (strncmp(v, "https://", 8) != 0 && strncmp(v, "http://", 7) != 0)
        return pp_error_set(err, -EINVAL, "environment variable `%s`: `%s` is not an http(s) URL",
                            setting, v);
    size_t n = strlen(v);
    while (n > 8 && v[n - 1] == '/')
        n--;
    if (n >= outlen)
        return pp_error_set(err, -EINVAL, "environment variable `%s`: too long", setting);
    memcpy(out, v, n);
    out[n] = '\0';
    return 0;
}

static int parse_tags(const char *v, pp__azure_derived_t *d, pp_error_t *err)
{
    size_t n = pp_list_count(v);
    if (n == 0)
        return 0;
    if (n > 40)
        return pp_error_set(err, -EINVAL, "environment variable `TAGS`: more than 40 tags");
    d->tags = calloc(n, sizeof(*d->tags));
    if (d->tags == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    const char *cur = v, *item;
    size_t len;
    while (pp_list_next(&cur, &item, &len)) {
        const char *eq = memchr(item, '=', len);
        if (eq == NULL || eq == item)
            return pp_error_set(err, -EINVAL,
                                "environment variable `TAGS`: `%.*s` is not key=value", (int)len,
                                item);
        pp__azure_tag_t *t = &d->tags[d->ntags];
        size_t kl = (size_t)(eq - item), vl = len - kl - 1;
        if (kl >= sizeof(t->key) || vl >= sizeof(t->value))
            return pp_error_set(err, -EINVAL,
                                "environment variable `TAGS`: `%.*s`: keys are at most 128 bytes, "
                                "values 256",
                                (int)len, item);
        memcpy(t->key, item, kl);
        memcpy(t->value, eq + 1, vl);
        /* Azure refuses these in tag names; ours are reserved. */
        if (strpbrk(t->key, "<>%&\\?/") != NULL || strcmp(t->key, PP_AZURE_TAG_NODE) == 0 ||
            strcmp(t->key, PP_AZURE_TAG_SANDBOX) == 0)
            return pp_error_set(err, -EINVAL,
                                "environment variable `TAGS`: tag `%s` has one of `<>%%&\\?/` or "
                                "is reserved",
                                t->key);
        d->ntags++;
    }
    return 0;
}

static int read_key(const char *path, pp__azure_derived_t *d, pp_error_t *err)
{
    char *buf = NULL;
    size_t n = 0;
    pp_error_t e = {0};
    int r = pp_file_read(path, KEY_MAX, 0, &buf, &n, &e);
    if (r < 0 && r != -EFBIG)
        return pp_error_set(err, r, "`-ssh-key-path`: %s", e.message);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (r < 0 || n == 0 || memchr(buf, '\n', n) != NULL || strlen(buf) != n ||
        (strncmp(buf, "ssh-", 4) != 0 && strncmp(buf, "ecdsa-", 6) != 0)) {
        free(buf);
        return pp_error_set(err, -EINVAL, "`-ssh-key-path`: `%s` is not one OpenSSH public key",
                            path);
    }
    d->ssh_key = buf;
    return 0;
}

/* Appends an SSH wire string (a 32-bit length, then the bytes). */
static int ssh_string(pp_buf_t *b, const void *p, size_t n)
{
    uint8_t len[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    int r = pp_buf_append(b, len, sizeof(len));
    return r == 0 ? pp_buf_append(b, p, n) : r;
}

/* Azure wants a public key for a Linux VM's admin user even with
 * passwords off; the pod VMs are never reached over SSH, so without
 * -ssh-key-path one is made here and its private half dropped, as upstream
 * does. Ed25519, which Azure takes, since making one costs nothing, where
 * upstream's RSA 4096 takes about a second of CPU. */
static int make_key(pp__azure_derived_t *d, pp_error_t *err)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    uint8_t pub[32];
    size_t publen = sizeof(pub);
    int ok = k != NULL && EVP_PKEY_get_raw_public_key(k, pub, &publen) == 1 && publen == 32;
    EVP_PKEY_free(k);
    if (!ok)
        return pp_error_set(err, -EIO, "making an SSH key for the VMs' admin user failed");
    pp_buf_t blob, text;
    pp_buf_init(&blob, 0);
    pp_buf_init(&text, 0);
    int r = ssh_string(&blob, "ssh-ed25519", 11);
    if (r == 0)
        r = ssh_string(&blob, pub, sizeof(pub));
    if (r == 0)
        r = pp_buf_append(&text, "ssh-ed25519 ", 12);
    if (r == 0)
        r = pp_base64_encode(blob.data, blob.len, &text);
    if (r == 0)
        r = pp_buf_append(&text, " peerpod\0", 9);
    pp_buf_free(&blob);
    if (r < 0) {
        pp_buf_free(&text);
        return pp_error_set(err, r, "out of memory");
    }
    d->ssh_key = (char *)pp_buf_steal(&text, NULL);
    return 0;
}

int pp__azure_config_check(const pp__azure_config_t *c, pp__azure_derived_t *d, pp_error_t *err)
{
    memset(d, 0, sizeof(*d));
    int r;
    if ((r = endpoint("AZURE_RESOURCE_MANAGER_ENDPOINT", c->arm_endpoint, d->arm, sizeof(d->arm),
                      err)) < 0 ||
        (r = endpoint("AZURE_AUTHORITY_HOST", c->authority_host, d->authority, sizeof(d->authority),
                      err)) < 0 ||
        (r = endpoint("AZURE_POD_IDENTITY_AUTHORITY_HOST", c->imds_endpoint, d->imds,
                      sizeof(d->imds), err)) < 0)
        return r;
    /* The Azure SDKs' order: a client secret, then workload identity, then
     * the managed identity. */
    if (c->client_secret[0] != '\0')
        d->cred_mode = PP_AZURE_CREDS_SECRET;
    else if (c->federated_token_file[0] != '\0')
        d->cred_mode = PP_AZURE_CREDS_WORKLOAD;
    else
        d->cred_mode = PP_AZURE_CREDS_MANAGED;
    if (d->cred_mode != PP_AZURE_CREDS_MANAGED) {
        const char *what = d->cred_mode == PP_AZURE_CREDS_SECRET ? "AZURE_CLIENT_SECRET"
                                                                 : "AZURE_FEDERATED_TOKEN_FILE";
        if (c->tenant_id[0] == '\0')
            return pp_error_set(
                err, -EINVAL, "environment variable `AZURE_TENANT_ID` is required with `%s`", what);
        if (c->client_id[0] == '\0')
            return pp_error_set(
                err, -EINVAL, "environment variable `AZURE_CLIENT_ID` is required with `%s`", what);
    }
    if (c->instance_size[0] == '\0')
        return pp_error_set(err, -EINVAL, "`AZURE_INSTANCE_SIZE` is empty");
    size_t n = pp_list_count(c->instance_sizes);
    if (n > 0) {
        d->sizes = calloc(n, sizeof(*d->sizes));
        if (d->sizes == NULL)
            return pp_error_set(err, -ENOMEM, "out of memory");
        const char *cur = c->instance_sizes, *item;
        size_t len;
        while (pp_list_next(&cur, &item, &len)) {
            if (len >= sizeof(d->sizes[0]))
                return pp_error_set(err, -EINVAL,
                                    "environment variable `AZURE_INSTANCE_SIZES`: `%.*s` is too "
                                    "long",
                                    (int)len, item);
            memcpy(d->sizes[d->nsizes++], item, len);
        }
    }
    if ((r = parse_tags(c->tags, d, err)) < 0)
        return r;
    return c->ssh_key_path[0] ? read_key(c->ssh_key_path, d, err) : make_key(d, err);
}

void pp__azure_derived_free(pp__azure_derived_t *d)
{
    free(d->sizes);
    free(d->tags);
    free(d->ssh_key);
    memset(d, 0, sizeof(*d));
}

const char *pp__azure_vm_name(const pp__azure_config_t *c, const char *id, char *out, size_t outlen)
{
    char prefix[512];
    if (id != NULL && strchr(id, '/') == NULL) {
        /* A bare VM name, as create returns. */
        size_t len = strlen(id);
        if (len == 0 || len > 64 || len >= outlen || strspn(id, ID) != len || id[0] == '-' ||
            id[0] == '.')
            return NULL;
        memcpy(out, id, len + 1);
        return out;
    }
    int n = snprintf(prefix, sizeof(prefix),
                     "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/"
                     "virtualMachines/",
                     c->subscription_id, c->resource_group);
    if (n < 0 || (size_t)n >= sizeof(prefix) || id == NULL || strncasecmp(id, prefix, (size_t)n))
        return NULL;
    const char *name = id + n;
    size_t len = strlen(name);
    if (len == 0 || len >= outlen || len > 64 || strspn(name, ID) != len)
        return NULL;
    memcpy(out, name, len + 1);
    return out;
}
