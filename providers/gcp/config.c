/* The GCP provider's settings (the table below: upstream's variables and
 * flags, then ours for endpoints and API use), what init derives from them,
 * and the naming rules of Compute Engine (labels, resource names, request
 * ids, which machine series run which confidential technology). */
#include "providers/gcp/gcp.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "providers/names.h"
#include "util/cleanup.h"
#include "util/file.h"

#define NAME_CHARS  "abcdefghijklmnopqrstuvwxyz0123456789-"
#define PATH_CHARS  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:"
#define PROJ_CHARS  "abcdefghijklmnopqrstuvwxyz0123456789-.:"
#define TYPE_CHARS  "abcdefghijklmnopqrstuvwxyz0123456789-"
#define HOST_CHARS  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.:[]"
#define LABEL_CHARS "abcdefghijklmnopqrstuvwxyz0123456789_-"

typedef pp__gcp_config_t cfg_t;

static const pp_setting_t items[] = {
    PP_SETTING_STR(cfg_t, credentials, "GCP_CREDENTIALS", "gcp-credentials", NULL,
                   "a service-account key (JSON); unset: the metadata server's token",
                   .flags = PP_SETTING_SECRET),
    PP_SETTING_STR(cfg_t, key_file, "GOOGLE_APPLICATION_CREDENTIALS", NULL, NULL,
                   "a service-account key file, as Google's libraries read it (upstream's "
                   "start script writes GCP_CREDENTIALS there); used when GCP_CREDENTIALS is "
                   "unset"),
    PP_SETTING_STR(cfg_t, project, "GCP_PROJECT_ID", "gcp-project-id", NULL,
                   "project of the pod VMs", .flags = PP_SETTING_REQUIRED, .chars = PROJ_CHARS),
    PP_SETTING_STR(cfg_t, zone, "GCP_ZONE", "zone", NULL, "zone of the pod VMs, like us-central1-a",
                   .flags = PP_SETTING_REQUIRED, .chars = NAME_CHARS),
    PP_SETTING_STR(cfg_t, image, "PODVM_IMAGE_NAME", "image-name", NULL,
                   "pod VM image: a name in the project, projects/P/global/images/I (or "
                   "images/family/F), or its URL",
                   .chars = PATH_CHARS),
    PP_SETTING_STR(cfg_t, machine_type, "GCP_MACHINE_TYPE", "machine-type", "e2-medium",
                   "default machine type", .chars = TYPE_CHARS),
    PP_SETTING_LIST_OF(cfg_t, machine_types, "GCP_INSTANCE_TYPES", "machine-types", NULL,
                       "machine types a pod may ask for, comma separated", .chars = TYPE_CHARS,
                       .max = 100),
    PP_SETTING_STR(cfg_t, network, "GCP_NETWORK", "network", NULL,
                   "VPC network of the pod VMs: a name, global/networks/N or a longer path",
                   .flags = PP_SETTING_REQUIRED, .chars = PATH_CHARS),
    PP_SETTING_STR(cfg_t, subnetwork, "GCP_SUBNETWORK", "subnetwork", NULL,
                   "subnetwork (custom subnet mode networks): a name in the zone's region, or "
                   "a path",
                   .chars = PATH_CHARS),
    PP_SETTING_STR(cfg_t, disk_type, "GCP_DISK_TYPE", "disk-type", "pd-standard",
                   "boot disk type (pd-standard, pd-ssd, pd-balanced, pd-extreme, ...)",
                   .chars = TYPE_CHARS),
    PP_SETTING_BOOL_OF(cfg_t, disable_cvm, "DISABLECVM", "disable-cvm", "false",
                       "launch pod VMs that are not confidential"),
    PP_SETTING_STR(cfg_t, confidential_type, "GCP_CONFIDENTIAL_TYPE", "confidential-type", NULL,
                   "confidential technology unless DISABLECVM: SEV, SEV_SNP or TDX"),
    PP_SETTING_INT_OF(cfg_t, root_volume_gib, "ROOT_VOLUME_SIZE", "root-volume-size", "10", 0,
                      65536, "boot disk, GiB (never below the image's size)"),
    PP_SETTING_BOOL_OF(cfg_t, use_public_ip, "USE_PUBLIC_IP", "use-public-ip", "false",
                       "give pod VMs an external address and reach the forwarder there"),
    PP_SETTING_LIST_OF(cfg_t, tags, "TAGS", "tags", NULL,
                       "resource manager tags of the project to bind to the pod VMs, "
                       "key=value, comma separated",
                       .max = 50),
    PP_SETTING_STR(cfg_t, metadata_host, "GCE_METADATA_HOST", NULL, "metadata.google.internal",
                   "metadata server, host[:port] (as Google's libraries read it)",
                   .chars = HOST_CHARS),
    PP_SETTING_STR(cfg_t, compute_endpoint, "GCP_COMPUTE_ENDPOINT", "gcp-compute-endpoint",
                   "https://compute.googleapis.com/compute/v1/", "Compute Engine v1 endpoint URL"),
    PP_SETTING_STR(cfg_t, crm_endpoint, "GCP_RESOURCE_MANAGER_ENDPOINT", NULL,
                   "https://cloudresourcemanager.googleapis.com/v3/",
                   "Resource Manager v3 endpoint URL (for TAGS)"),
    PP_SETTING_STR(cfg_t, ca_bundle, "GCP_CA_BUNDLE", NULL, NULL,
                   "CA certificates for the endpoints (PEM file)"),
    PP_SETTING_NUMBER_OF(cfg_t, rate, "GCP_API_RATE_LIMIT", NULL, "10", 0, 100000,
                         "API requests per second (0: no limit)"),
    PP_SETTING_INT_OF(cfg_t, burst, "GCP_API_BURST", NULL, "20", 1, 100000,
                      "API requests in a burst"),
    PP_SETTING_INT_OF(cfg_t, max_attempts, "GCP_MAX_ATTEMPTS", NULL, "5", 1, 100,
                      "attempts of a failing request"),
    PP_SETTING_DURATION_OF(cfg_t, backoff_base_ms, "GCP_RETRY_BASE_DELAY", NULL, "200ms", 1, 600000,
                           "first delay before a retry"),
    PP_SETTING_DURATION_OF(cfg_t, backoff_max_ms, "GCP_RETRY_MAX_DELAY", NULL, "20s", 1, 3600000,
                           "longest delay before a retry"),
    PP_SETTING_DURATION_OF(cfg_t, attempt_timeout_ms, "GCP_API_ATTEMPT_TIMEOUT", NULL, "20s", 10,
                           3600000, "time for one attempt (an operation's wait gets 150 s)"),
    PP_SETTING_DURATION_OF(cfg_t, request_timeout_ms, "GCP_API_TIMEOUT", NULL, "90s", 10, 3600000,
                           "time for a request with its retries"),
    PP_SETTING_DURATION_OF(cfg_t, op_timeout_ms, "GCP_OPERATION_TIMEOUT", NULL, "10m", 100,
                           86400000, "how long to follow an insert or delete operation"),
    PP_SETTING_DURATION_OF(cfg_t, ip_wait_ms, "GCP_IP_WAIT_TIMEOUT", NULL, "2m", 0, 3600000,
                           "how long to wait for a pod VM's external address"),
    PP_SETTING_DURATION_OF(cfg_t, poll_ms, "GCP_POLL_INTERVAL", NULL, "2s", 1, 600000,
                           "how often to look for that address"),
};

const pp_settings_table_t pp__gcp_settings = {"gcp provider", items, PP_ARRAY_SIZE(items)};

/* --- confidential technologies ---------------------------------------------------- */

static const char *const cvm_names[] = {"", "SEV", "SEV_SNP", "TDX"};

int pp__gcp_cvm_parse(const char *name, enum pp__gcp_cvm *out)
{
    for (size_t i = 1; i < PP_ARRAY_SIZE(cvm_names); i++)
        if (strcmp(name, cvm_names[i]) == 0) {
            *out = (enum pp__gcp_cvm)i;
            return 0;
        }
    return -EINVAL;
}

const char *pp__gcp_cvm_name(enum pp__gcp_cvm t)
{
    return (size_t)t < PP_ARRAY_SIZE(cvm_names) ? cvm_names[t] : "";
}

/* Google's supported configurations: a machine type is named
 * <series>-<kind>-<size>; an entry ending in '-' matches a prefix. */
static const struct {
    enum pp__gcp_cvm t;
    const char *type;
} cvm_types[] = {
    {PP_GCP_CVM_SEV, "n2d-"},          {PP_GCP_CVM_SEV, "c2d-"},
    {PP_GCP_CVM_SEV, "c3d-"},          {PP_GCP_CVM_SEV, "c4d-"},
    {PP_GCP_CVM_SEV_SNP, "n2d-"},      {PP_GCP_CVM_TDX, "c3-standard-"},
    {PP_GCP_CVM_TDX, "a3-highgpu-1g"},
};

int pp__gcp_cvm_supported(enum pp__gcp_cvm t, const char *type)
{
    for (size_t i = 0; i < PP_ARRAY_SIZE(cvm_types); i++) {
        if (cvm_types[i].t != t)
            continue;
        const char *m = cvm_types[i].type;
        size_t ml = strlen(m);
        if (m[ml - 1] == '-' ? strncmp(type, m, ml) == 0 && type[ml] != '\0' : strcmp(type, m) == 0)
            return 1;
    }
    return 0;
}

/* --- names -------------------------------------------------------------------------- */

int pp__gcp_label_value(const char *in, char out[64])
{
    size_t n = strlen(in);
    if (n <= 63 && strspn(in, LABEL_CHARS) == n) {
        memcpy(out, in, n + 1);
        return 0;
    }
    size_t keep = n < 54 ? n : 54;
    for (size_t i = 0; i < keep; i++) {
        unsigned char ch = (unsigned char)tolower((unsigned char)in[i]);
        out[i] = strchr(LABEL_CHARS, ch) != NULL && ch != '\0' ? (char)ch : '_';
    }
    unsigned char h[32];
    pp_cloud_sha256(in, n, h);
    snprintf(out + keep, 64 - keep, "-%02x%02x%02x%02x", h[0], h[1], h[2], h[3]);
    return 0;
}

static void format_uuid(unsigned char b[16], char out[37])
{
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x80); /* version 8: made of our own bits */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 9562 variant */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

int pp__gcp_request_id(const char *kind, const char *node, const char *sandbox, char out[37])
{
    size_t kl = strlen(kind), nl = strlen(node), sl = strlen(sandbox);
    char *buf = malloc(kl + nl + sl + 3);
    if (buf == NULL)
        return -ENOMEM;
    memcpy(buf, kind, kl + 1);
    memcpy(buf + kl + 1, node, nl + 1);
    memcpy(buf + kl + nl + 2, sandbox, sl + 1);
    unsigned char h[32];
    pp_cloud_sha256(buf, kl + nl + sl + 3, h);
    free(buf);
    format_uuid(h, out);
    return 0;
}

int pp__gcp_random_id(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return -EIO;
    format_uuid(b, out);
    return 0;
}

/* --- what init derives ------------------------------------------------------------------ */

static int has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static int url_check(const char *setting, const char *url, pp_error_t *err)
{
    CURLU *u = curl_url();
    if (u == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    char *scheme = NULL, *query = NULL, *user = NULL;
    int bad = curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
              (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) ||
              curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
              curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK;
    curl_free(scheme);
    curl_free(query);
    curl_free(user);
    curl_url_cleanup(u);
    if (bad)
        return pp_error_set(err, -EINVAL,
                            "environment variable `%s`: `%s` is not an http:// or https:// URL "
                            "without user or query",
                            setting, url);
    return 0;
}

/* An endpoint URL, with a trailing '/'. */
static int endpoint(const char *setting, const char *url, char *out, size_t outlen, pp_error_t *err)
{
    int r = url_check(setting, url, err);
    if (r < 0)
        return r;
    size_t n = strlen(url);
    if ((size_t)snprintf(out, outlen, "%s%s", url, n > 0 && url[n - 1] == '/' ? "" : "/") >= outlen)
        return pp_error_set(err, -EINVAL, "environment variable `%s`: `%s` is too long", setting,
                            url);
    return 0;
}

static int split_types(const pp__gcp_config_t *c, pp__gcp_derived_t *d, pp_error_t *err)
{
    size_t cap = pp_list_count(c->machine_types);
    if (cap == 0)
        return 0;
    d->types = calloc(cap, sizeof(*d->types));
    if (d->types == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    const char *cur = c->machine_types, *item;
    size_t len;
    while (pp_list_next(&cur, &item, &len)) {
        if (len >= sizeof(d->types[0]))
            return pp_error_set(err, -EINVAL,
                                "environment variable `GCP_INSTANCE_TYPES`: `%.*s` is too long",
                                (int)len, item);
        memcpy(d->types[d->ntypes++], item, len);
    }
    return 0;
}

static int split_tags(const pp__gcp_config_t *c, pp__gcp_derived_t *d, pp_error_t *err)
{
    size_t cap = pp_list_count(c->tags);
    if (cap == 0)
        return 0;
    d->tags = calloc(cap, sizeof(*d->tags));
    if (d->tags == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    const char *cur = c->tags, *item;
    size_t len;
    while (pp_list_next(&cur, &item, &len)) {
        const char *eq = memchr(item, '=', len);
        pp__gcp_tag_t *t = &d->tags[d->ntags];
        size_t kl = eq ? (size_t)(eq - item) : 0, vl = eq ? len - kl - 1 : 0;
        if (eq == NULL || kl == 0 || vl == 0 || kl >= sizeof(t->key) || vl >= sizeof(t->value))
            return pp_error_set(err, -EINVAL,
                                "environment variable `TAGS`: `%.*s` is not key=value (a tag "
                                "key and value of the project, by short name)",
                                (int)len, item);
        memcpy(t->key, item, kl);
        memcpy(t->value, eq + 1, vl);
        for (size_t i = 0; i < d->ntags; i++)
            if (strcmp(d->tags[i].key, t->key) == 0)
                return pp_error_set(err, -EINVAL, "environment variable `TAGS`: `%s` twice",
                                    t->key);
        d->ntags++;
    }
    return 0;
}

/* The zone's region: us-central1-a -> us-central1. */
static int zone_region(const char *zone, char *out, size_t outlen)
{
    const char *dash = strrchr(zone, '-');
    if (dash == NULL || dash == zone || (size_t)(dash - zone) >= outlen)
        return -EINVAL;
    memcpy(out, zone, (size_t)(dash - zone));
    out[dash - zone] = '\0';
    return 0;
}

static int check_cvm_type(const pp__gcp_derived_t *d, const char *setting, const char *type,
                          pp_error_t *err)
{
    if (d->cvm == PP_GCP_CVM_NONE || pp__gcp_cvm_supported(d->cvm, type))
        return 0;
    return pp_error_set(err, -EINVAL,
                        "environment variable `%s`: machine type `%s` cannot run confidential "
                        "type `%s` (`GCP_CONFIDENTIAL_TYPE`); pick a supported series, or set "
                        "`DISABLECVM=true`",
                        setting, type, pp__gcp_cvm_name(d->cvm));
}

/* The key file (a few KiB, read once at start): bounded, parsed, and its
 * bytes wiped. */
static int read_key_file(const char *path, pp__gcp_key_t *key, pp_error_t *err)
{
    char *buf = NULL;
    size_t len = 0;
    int r = pp_file_read(path, PP_GCP_CREDENTIALS_MAX, PP_FILE_REGULAR | PP_FILE_SECRET, &buf, &len,
                         err);
    if (r < 0)
        return r;
    if ((r = pp__gcp_parse_key(buf, len, key, err)) < 0)
        pp_error_wrap(err, "`%s`", path);
    OPENSSL_cleanse(buf, len);
    free(buf);
    return r;
}

int pp__gcp_derive(const pp__gcp_config_t *c, const char *node, pp__gcp_derived_t *d,
                   pp_error_t *err)
{
    memset(d, 0, sizeof(*d));
    int r;
    if (!pp_cloud_name_valid(c->zone))
        return pp_error_set(err, -EINVAL,
                            "environment variable `GCP_ZONE`: `%s` is not a zone name such as "
                            "`us-central1-a`",
                            c->zone);
    if (!c->disable_cvm) {
        if (c->confidential_type[0] == '\0')
            return pp_error_set(err, -EINVAL,
                                "environment variable `GCP_CONFIDENTIAL_TYPE` is not set: "
                                "expected SEV, SEV_SNP or TDX (or `DISABLECVM=true`)");
        if (pp__gcp_cvm_parse(c->confidential_type, &d->cvm) < 0)
            return pp_error_set(err, -EINVAL,
                                "environment variable `GCP_CONFIDENTIAL_TYPE`: `%s` is not one "
                                "of SEV, SEV_SNP, TDX",
                                c->confidential_type);
    }
    if ((r = split_types(c, d, err)) < 0 || (r = split_tags(c, d, err)) < 0)
        return r;
    /* A type that cannot run the asked technology never can: say so now. */
    if ((r = check_cvm_type(d, "GCP_MACHINE_TYPE", c->machine_type, err)) < 0)
        return r;
    for (size_t i = 0; i < d->ntypes; i++)
        if ((r = check_cvm_type(d, "GCP_INSTANCE_TYPES", d->types[i], err)) < 0)
            return r;
    if ((r = endpoint("GCP_COMPUTE_ENDPOINT", c->compute_endpoint, d->endpoint, sizeof(d->endpoint),
                      err)) < 0 ||
        (r = endpoint("GCP_RESOURCE_MANAGER_ENDPOINT", c->crm_endpoint, d->crm, sizeof(d->crm),
                      err)) < 0)
        return r;
    if ((size_t)snprintf(d->compute, sizeof(d->compute), "%sprojects/%s/zones/%s/", d->endpoint,
                         c->project, c->zone) >= sizeof(d->compute) ||
        (size_t)snprintf(d->metadata, sizeof(d->metadata), "http://%s", c->metadata_host) >=
            sizeof(d->metadata))
        return pp_error_set(err, -EINVAL,
                            "environment variable `GCP_COMPUTE_ENDPOINT` is too long");
    /* Image, network and subnetwork: a bare name is in this project (and,
     * for the subnetwork, the zone's region); a path is taken as written. */
    static const char *const pathy[] = {"projects/", "/projects/", "https://",
                                        "http://",   "global/",    "regions/"};
    const struct {
        const char *setting, *v;
        char *out;
        const char *fmt;
    } paths[] = {
        {"PODVM_IMAGE_NAME", c->image, d->image, "projects/%s/global/images/%s"},
        {"GCP_NETWORK", c->network, d->network, "projects/%s/global/networks/%s"},
        {"GCP_SUBNETWORK", c->subnetwork, d->subnetwork, "projects/%s/regions/%s/subnetworks/%s"},
    };
    char region[64];
    if (zone_region(c->zone, region, sizeof(region)) < 0)
        return pp_error_set(err, -EINVAL, "environment variable `GCP_ZONE`: `%s` names no region",
                            c->zone);
    for (size_t i = 0; i < PP_ARRAY_SIZE(paths); i++) {
        const char *v = paths[i].v;
        if (v[0] == '\0')
            continue;
        int is_path = 0;
        for (size_t j = 0; j < PP_ARRAY_SIZE(pathy); j++)
            is_path |= has_prefix(v, pathy[j]);
        int n;
        if (is_path)
            n = snprintf(paths[i].out, 600, "%s", v);
        else if (i == 2)
            n = snprintf(paths[i].out, 600, paths[i].fmt, c->project, region, v);
        else
            n = snprintf(paths[i].out, 600,
                         i == 0 ? "projects/%s/global/images/%s" : "projects/%s/global/networks/%s",
                         c->project, v);
        if (n < 0 || n >= 600)
            return pp_error_set(err, -EINVAL, "environment variable `%s`: `%s` is too long",
                                paths[i].setting, v);
        if (!is_path && !pp_cloud_name_valid(v))
            return pp_error_set(err, -EINVAL,
                                "environment variable `%s`: `%s` is neither a resource name nor "
                                "a path",
                                paths[i].setting, v);
    }
    pp__gcp_label_value(node != NULL ? node : "", d->node_label);
    /* GCP_CREDENTIALS first, as upstream's provider; else the key file,
     * as Google's libraries look for one before the metadata server. */
    const char *from = "GCP_CREDENTIALS";
    if (c->credentials[0] != '\0') {
        if ((r = pp__gcp_parse_key(c->credentials, strlen(c->credentials), &d->key, err)) < 0)
            return pp_error_wrap(err, "environment variable `GCP_CREDENTIALS`");
    } else if (c->key_file[0] != '\0') {
        from = "GOOGLE_APPLICATION_CREDENTIALS";
        if ((r = read_key_file(c->key_file, &d->key, err)) < 0)
            return pp_error_wrap(err, "environment variable `GOOGLE_APPLICATION_CREDENTIALS`");
    }
    if (d->key.pkey != NULL && (r = url_check(from, d->key.token_uri, err)) < 0)
        return pp_error_wrap(err, "`token_uri` of the key");
    return 0;
}

void pp__gcp_derived_free(pp__gcp_derived_t *d)
{
    free(d->types);
    free(d->tags);
    pp__gcp_key_free(&d->key);
    d->types = NULL;
    d->tags = NULL;
    d->ntypes = d->ntags = 0;
}
