/* The ibmcloud provider's settings (the table below: upstream's variables and
 * flags, then ours for endpoints and API use), what init derives from them,
 * and the rules of IBM Cloud VPC the provider checks before any call:
 * profile names and the confidential mode each can run, tags, ids, and which
 * image boots on which profile. */
#include "providers/ibmcloud/ibmcloud.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/cleanup.h"
#include "util/grpc_codes.h"

#define ID_CHARS      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
#define NAME_CHARS    "abcdefghijklmnopqrstuvwxyz0123456789-"
#define TAG_CHARS     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.:-"
#define SANDBOX_CHARS "abcdefghijklmnopqrstuvwxyz0123456789_.-"

typedef pp__ibm_config_t cfg_t;

static const pp_setting_t items[] = {
    PP_SETTING_STR(cfg_t, api_key, "IBMCLOUD_API_KEY", "api-key", NULL,
                   "IBM Cloud API key (or a trusted profile: IBMCLOUD_IAM_PROFILE_ID)",
                   .flags = PP_SETTING_SECRET),
    PP_SETTING_STR(cfg_t, iam_profile_id, "IBMCLOUD_IAM_PROFILE_ID", "iam-profile-id", NULL,
                   "IAM trusted profile id, with the compute resource token file",
                   .flags = PP_SETTING_SECRET, .chars = ID_CHARS),
    PP_SETTING_STR(cfg_t, cr_token_file, "IBMCLOUD_CR_TOKEN_FILENAME", "cr-token-filename",
                   "/var/run/secrets/tokens/vault-token",
                   "compute resource token (a projected service account token) for the trusted "
                   "profile; read at every token exchange"),
    PP_SETTING_STR(cfg_t, iam_url, "IBMCLOUD_IAM_ENDPOINT", "iam-service-url",
                   "https://iam.cloud.ibm.com/identity/token", "IAM token endpoint URL"),
    PP_SETTING_STR(cfg_t, vpc_url, "IBMCLOUD_VPC_ENDPOINT", "vpc-service-url", NULL,
                   "VPC API URL; unset: https://<region of IBMCLOUD_ZONE>.iaas.cloud.ibm.com/v1"),
    PP_SETTING_STR(cfg_t, tagging_url, "IBMCLOUD_TAGGING_ENDPOINT", NULL,
                   "https://tags.global-search-tagging.cloud.ibm.com", "Global Tagging API URL"),
    PP_SETTING_STR(cfg_t, resource_group, "IBMCLOUD_RESOURCE_GROUP_ID", "resource-group-id", NULL,
                   "resource group of the pod VMs; unset: the account's default",
                   .chars = ID_CHARS),
    PP_SETTING_STR(cfg_t, profile, "IBMCLOUD_PODVM_INSTANCE_PROFILE_NAME", "profile-name", NULL,
                   "default instance profile of the pod VMs", .flags = PP_SETTING_REQUIRED,
                   .chars = NAME_CHARS),
    PP_SETTING_LIST_OF(cfg_t, profiles, "IBMCLOUD_PODVM_INSTANCE_PROFILE_LIST", "profile-list",
                       NULL, "instance profiles a pod may ask for, comma separated",
                       .chars = NAME_CHARS, .max = 100),
    PP_SETTING_STR(cfg_t, zone, "IBMCLOUD_ZONE", "zone-name", NULL,
                   "zone of the pod VMs, like us-south-1", .flags = PP_SETTING_REQUIRED,
                   .chars = NAME_CHARS),
    PP_SETTING_STR(cfg_t, subnet, "IBMCLOUD_VPC_SUBNET_ID", "primary-subnet-id", NULL,
                   "subnet of the pod VMs' primary network interface", .flags = PP_SETTING_REQUIRED,
                   .chars = ID_CHARS),
    PP_SETTING_STR(cfg_t, key_id, "IBMCLOUD_SSH_KEY_ID", "key-id", NULL,
                   "SSH key put in the pod VMs", .chars = ID_CHARS),
    PP_SETTING_STR(cfg_t, vpc_id, "IBMCLOUD_VPC_ID", "vpc-id", NULL, "VPC of the pod VMs",
                   .flags = PP_SETTING_REQUIRED, .chars = ID_CHARS),
    PP_SETTING_STR(cfg_t, cluster_id, "IBMCLOUD_CLUSTER_ID", "cluster-id", NULL,
                   "cluster id, tagged on each pod VM as coco-pod-vm:<id>", .chars = ID_CHARS),
    PP_SETTING_BOOL_OF(cfg_t, disable_cvm, "DISABLECVM", "disable-cvm", "true",
                       "plain pod VMs; false: TDX (amd64) or Secure Execution (s390x)"),
    PP_SETTING_STR(cfg_t, secondary_subnet, "IBMCLOUD_VPC_SECONDARY_SUBNET_ID",
                   "secondary-subnet-id", NULL,
                   "subnet of a second network interface (IP spoofing allowed)", .chars = ID_CHARS),
    PP_SETTING_STR(cfg_t, secondary_sg, "IBMCLOUD_SECONDARY_SECURITY_GROUP_ID",
                   "secondary-security-group-id", NULL,
                   "security group of the second network interface", .chars = ID_CHARS),
    PP_SETTING_LIST_OF(cfg_t, images, "IBMCLOUD_PODVM_IMAGE_ID", "image-id", NULL,
                       "pod VM images, comma separated: the first of the profile's "
                       "architecture is used",
                       .flags = PP_SETTING_REQUIRED, .chars = ID_CHARS, .max = 50),
    PP_SETTING_LIST_OF(cfg_t, tags, "TAGS", "tags", NULL,
                       "user tags attached to the pod VMs, comma separated", .max = 50),
    PP_SETTING_LIST_OF(cfg_t, sg_ids, "IBMCLOUD_SECURITY_GROUP_IDS", "security-group-ids", NULL,
                       "security groups of the primary network interface, comma separated "
                       "(give the cluster's, kube-<cluster id>, here)",
                       .chars = ID_CHARS, .max = 5),
    PP_SETTING_LIST_OF(cfg_t, dh_ids, "IBMCLOUD_DEDICATED_HOST_IDS", "dedicated-host-ids", NULL,
                       "dedicated hosts, one per zone: the zone's is used", .chars = ID_CHARS,
                       .max = 20),
    PP_SETTING_LIST_OF(cfg_t, dhg_ids, "IBMCLOUD_DEDICATED_HOST_GROUP_IDS",
                       "dedicated-host-group-ids", NULL,
                       "dedicated host groups, one per zone: the zone's is used (after a "
                       "failed create on the host, too)",
                       .chars = ID_CHARS, .max = 20),
    PP_SETTING_BOOL_OF(cfg_t, use_public_ip, "USE_PUBLIC_IP", "use-public-ip", "false",
                       "give each pod VM a floating IP and reach the forwarder there"),
    PP_SETTING_STR(cfg_t, ca_bundle, "IBMCLOUD_CA_BUNDLE", NULL, NULL,
                   "CA certificates for the endpoints (PEM file)"),
    PP_SETTING_NUMBER_OF(cfg_t, rate, "IBMCLOUD_API_RATE_LIMIT", NULL, "10", 0, 100000,
                         "API requests per second (0: no limit)"),
    PP_SETTING_INT_OF(cfg_t, burst, "IBMCLOUD_API_BURST", NULL, "20", 1, 100000,
                      "API requests in a burst"),
    PP_SETTING_INT_OF(cfg_t, max_attempts, "IBMCLOUD_MAX_ATTEMPTS", NULL, "5", 1, 100,
                      "attempts of a failing request"),
    PP_SETTING_DURATION_OF(cfg_t, backoff_base_ms, "IBMCLOUD_RETRY_BASE_DELAY", NULL, "200ms", 1,
                           600000, "first delay before a retry"),
    PP_SETTING_DURATION_OF(cfg_t, backoff_max_ms, "IBMCLOUD_RETRY_MAX_DELAY", NULL, "20s", 1,
                           3600000, "longest delay before a retry"),
    PP_SETTING_DURATION_OF(cfg_t, attempt_timeout_ms, "IBMCLOUD_API_ATTEMPT_TIMEOUT", NULL, "20s",
                           10, 3600000, "time for one attempt"),
    PP_SETTING_DURATION_OF(cfg_t, request_timeout_ms, "IBMCLOUD_API_TIMEOUT", NULL, "90s", 10,
                           3600000, "time for a request with its retries"),
    PP_SETTING_DURATION_OF(cfg_t, create_timeout_ms, "IBMCLOUD_CREATE_TIMEOUT", NULL, "5m", 100,
                           86400000, "how long a new instance may take to get its addresses"),
    PP_SETTING_DURATION_OF(cfg_t, delete_timeout_ms, "IBMCLOUD_DELETE_TIMEOUT", NULL, "5m", 100,
                           86400000, "how long a delete waits for the instance to be gone"),
    PP_SETTING_DURATION_OF(cfg_t, poll_ms, "IBMCLOUD_POLL_INTERVAL", NULL, "2s", 1, 600000,
                           "how often an instance's state is read while waiting"),
};

const pp_settings_table_t pp__ibm_settings = {"ibmcloud provider", items, PP_ARRAY_SIZE(items)};

/* --- profiles and modes -------------------------------------------------------------- */

static const char *const mode_names[] = {"plain", "TDX", "Secure Execution"};

const char *pp__ibm_mode_name(enum pp__ibm_mode m)
{
    return (size_t)m < PP_ARRAY_SIZE(mode_names) ? mode_names[m] : "";
}

static const struct {
    char letter;
    const char *arch;
} arch_letters[] = {{'x', "amd64"}, {'z', "s390x"}, {'p', "ppc64le"}};

static int small_number(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n && v < 1000; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

int pp__ibm_profile_name(const char *name, pp__ibm_profile_name_t *out)
{
    memset(out, 0, sizeof(*out));
    size_t letters = strspn(name, "abcdefghijklmnopqrstuvwxyz");
    size_t digits = strspn(name + letters, "0123456789");
    if (letters < 2 || digits == 0)
        return -EINVAL;
    const char *feat = name + letters + digits;
    size_t nfeat = strspn(feat, "abcdefghijklmnopqrstuvwxyz");
    if (feat[nfeat] != '-' || !isdigit((unsigned char)feat[nfeat + 1]))
        return -EINVAL;
    for (size_t i = 0; i < PP_ARRAY_SIZE(arch_letters); i++)
        if (arch_letters[i].letter == name[letters - 1])
            snprintf(out->arch, sizeof(out->arch), "%s", arch_letters[i].arch);
    if (out->arch[0] == '\0')
        return -EINVAL;
    int gen = small_number(name + letters, digits);
    out->tdx = strcmp(out->arch, "amd64") == 0 && gen >= 3 && memchr(feat, 'c', nfeat) != NULL;
    out->se = strcmp(out->arch, "s390x") == 0 && memchr(feat, 'e', nfeat) != NULL;
    return 0;
}

enum pp__ibm_mode pp__ibm_mode_for(const pp__ibm_derived_t *d, const char *arch)
{
    if (!d->cvm)
        return PP_IBM_PLAIN;
    return strcmp(arch, "s390x") == 0 ? PP_IBM_SE : PP_IBM_TDX;
}

int pp__ibm_profile_fits(const char *setting, const char *name, enum pp__ibm_mode mode,
                         pp_error_t *err)
{
    pp__ibm_profile_name_t pn;
    if (pp__ibm_profile_name(name, &pn) < 0) {
        if (mode == PP_IBM_PLAIN)
            return 0; /* nothing to check */
        return pp_error_set(err, -EINVAL,
                            "`%s`: `%s` is not an instance profile name (like bx3dc-2x10), so "
                            "it cannot be checked for %s",
                            setting, name, pp__ibm_mode_name(mode));
    }
    const char *why = NULL;
    if (mode == PP_IBM_PLAIN && pn.se)
        why = "is a Secure Execution profile, which boots only Secure Execution images; set "
              "`DISABLECVM=false` or pick a profile without `e`";
    else if (mode == PP_IBM_TDX && !pn.tdx)
        why = "cannot run TDX (the confidential computing profiles of generation 3, like "
              "bx3dc-2x10, can); set `DISABLECVM=true` for plain VMs";
    else if (mode == PP_IBM_SE && !pn.se)
        why = "is no Secure Execution profile (those are bz2e, cz2e, mz2e); set "
              "`DISABLECVM=true` for plain VMs";
    if (why == NULL)
        return 0;
    return pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, -EINVAL, "`%s`: profile `%s` %s",
                               setting, name, why);
}

int pp__ibm_image_fits(const pp__ibm_image_t *img, const pp__ibm_profile_t *profile,
                       enum pp__ibm_mode mode, pp_error_t *err)
{
    if (strcmp(img->arch, profile->arch) != 0)
        return pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, -EINVAL,
                                   "image `%s` is for %s, profile `%s` is %s", img->id, img->arch,
                                   profile->spec.name, profile->arch);
    if (img->se != (mode == PP_IBM_SE))
        return pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, -EINVAL,
                                   "image `%s` (%s) %s a Secure Execution image, and profile `%s` "
                                   "runs %s pod VMs",
                                   img->id, img->os, img->se ? "is" : "is not", profile->spec.name,
                                   pp__ibm_mode_name(mode));
    return 0;
}

const pp__ibm_image_t *pp__ibm_select_image(const pp__ibm_catalog_t *cat,
                                            const pp__ibm_profile_t *profile,
                                            enum pp__ibm_mode mode, pp_error_t *err)
{
    pp_error_t ignored;
    for (size_t i = 0; i < cat->nimages; i++)
        if (pp__ibm_image_fits(&cat->images[i], profile, mode, &ignored) == 0)
            return &cat->images[i];
    pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, -ENOENT,
                        "no image of `IBMCLOUD_PODVM_IMAGE_ID` is a%s %s image for profile `%s`",
                        mode == PP_IBM_SE ? " Secure Execution" : "n", profile->arch,
                        profile->spec.name);
    return NULL;
}

/* --- tags and ids -------------------------------------------------------------------- */

static int tag_valid(const char *t)
{
    size_t n = strlen(t);
    return n > 0 && n <= PP_IBM_TAG_MAX && strspn(t, TAG_CHARS) == n;
}

void pp__ibm_node_tag(const char *node, char out[PP_IBM_TAG_MAX + 1])
{
    size_t n = strlen(node);
    if (n > 0 && n <= PP_IBM_TAG_MAX - strlen(PP_IBM_TAG_NODE) &&
        strspn(node, SANDBOX_CHARS) == n) {
        snprintf(out, PP_IBM_TAG_MAX + 1, "%s%s", PP_IBM_TAG_NODE, node);
        return;
    }
    unsigned char h[32];
    pp_cloud_sha256(node, n, h);
    int o = snprintf(out, PP_IBM_TAG_MAX + 1, "%ssha256-", PP_IBM_TAG_NODE);
    for (size_t i = 0; i < 16; i++)
        o += snprintf(out + o, (size_t)(PP_IBM_TAG_MAX + 1 - o), "%02x", h[i]);
}

int pp__ibm_sandbox_storable(const char *sandbox_id)
{
    size_t n = strlen(sandbox_id);
    return n > 0 && n <= PP_IBM_TAG_MAX - strlen(PP_IBM_TAG_SANDBOX) &&
           strspn(sandbox_id, SANDBOX_CHARS) == n;
}

int pp__ibm_instance_id_valid(const char *id)
{
    /* 0717_e21b7391-2ca2-4ab5-84a8-b92157a633b0 */
    static const char shape[] = "zzzz_hhhhhhhh-hhhh-hhhh-hhhh-hhhhhhhhhhhh";
    if (strlen(id) != sizeof(shape) - 1)
        return 0;
    for (size_t i = 0; shape[i]; i++) {
        char c = id[i];
        int ok = shape[i] == 'h'   ? (isdigit((unsigned char)c) || (c >= 'a' && c <= 'f'))
                 : shape[i] == 'z' ? (isdigit((unsigned char)c) || (c >= 'a' && c <= 'z'))
                                   : c == shape[i];
        if (!ok)
            return 0;
    }
    return 1;
}

/* --- what init derives ------------------------------------------------------------- */

/* Copies `url` without trailing '/' (and, for IAM, ensures the token path). */
static int endpoint(const char *setting, const char *url, const char *suffix, char *out,
                    size_t outlen, pp_error_t *err)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    if ((strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0) ||
        memchr(url, '?', n) != NULL || memchr(url, '@', n) != NULL)
        return pp_error_set(err, -EINVAL,
                            "environment variable `%s`: `%s` is not an http:// or https:// URL "
                            "without user or query",
                            setting, url);
    size_t sl = suffix ? strlen(suffix) : 0;
    int has = sl > 0 && n >= sl && strncmp(url + n - sl, suffix, sl) == 0;
    if ((size_t)snprintf(out, outlen, "%.*s%s", (int)n, url, has || !suffix ? "" : suffix) >=
        outlen)
        return pp_error_set(err, -EINVAL, "environment variable `%s`: `%s` is too long", setting,
                            url);
    return 0;
}

/* Splits list setting `v` into `*out` (entries of `size` bytes). */
static int split(const char *setting, const char *v, size_t size, void **out, size_t *n,
                 pp_error_t *err)
{
    *n = 0;
    size_t cap = pp_list_count(v);
    if (cap == 0)
        return 0;
    char *arr = calloc(cap, size);
    if (arr == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    *out = arr;
    const char *cur = v, *item;
    size_t len;
    while (pp_list_next(&cur, &item, &len)) {
        if (len >= size)
            return pp_error_set(err, -EINVAL, "environment variable `%s`: `%.*s` is too long",
                                setting, (int)len, item);
        memcpy(arr + *n * size, item, len);
        (*n)++;
    }
    return 0;
}

static int check_profiles(const pp__ibm_config_t *c, const pp__ibm_derived_t *d, pp_error_t *err)
{
    int r;
    const char *names[101];
    const char *settings[101];
    size_t n = 0;
    names[n] = c->profile;
    settings[n++] = "IBMCLOUD_PODVM_INSTANCE_PROFILE_NAME";
    for (size_t i = 0; i < d->nprofiles && n < PP_ARRAY_SIZE(names); i++) {
        names[n] = d->profiles[i];
        settings[n++] = "IBMCLOUD_PODVM_INSTANCE_PROFILE_LIST";
    }
    for (size_t i = 0; i < n; i++) {
        pp__ibm_profile_name_t pn;
        enum pp__ibm_mode m = PP_IBM_PLAIN;
        if (pp__ibm_profile_name(names[i], &pn) == 0)
            m = pp__ibm_mode_for(d, pn.arch);
        else if (d->cvm)
            m = PP_IBM_TDX;
        if ((r = pp__ibm_profile_fits(settings[i], names[i], m, err)) < 0)
            return r;
    }
    return 0;
}

int pp__ibm_derive(const pp__ibm_config_t *c, const char *node, pp__ibm_derived_t *d,
                   pp_error_t *err)
{
    memset(d, 0, sizeof(*d));
    int r;
    d->cvm = !c->disable_cvm;
    if (c->api_key[0] == '\0' && c->iam_profile_id[0] == '\0')
        return pp_error_set(err, -EINVAL,
                            "neither `IBMCLOUD_API_KEY` nor `IBMCLOUD_IAM_PROFILE_ID` is set: "
                            "one is needed for IAM tokens");
    if (c->api_key[0] == '\0' && c->cr_token_file[0] == '\0')
        return pp_error_set(err, -EINVAL,
                            "`-cr-token-filename` is empty: the trusted profile needs the "
                            "compute resource token file");
    if (!pp_cloud_name_valid(c->zone) || strrchr(c->zone, '-') == NULL)
        return pp_error_set(err, -EINVAL,
                            "environment variable `IBMCLOUD_ZONE`: `%s` is not a zone such as "
                            "`us-south-1`",
                            c->zone);
    if ((c->secondary_subnet[0] == '\0') != (c->secondary_sg[0] == '\0'))
        return pp_error_set(err, -EINVAL,
                            "`-secondary-subnet-id` and `-secondary-security-group-id` go "
                            "together: set both or neither");
    if ((r = endpoint("IBMCLOUD_IAM_ENDPOINT", c->iam_url, "/identity/token", d->iam,
                      sizeof(d->iam), err)) < 0 ||
        (r = endpoint("IBMCLOUD_TAGGING_ENDPOINT", c->tagging_url, NULL, d->tagging,
                      sizeof(d->tagging), err)) < 0)
        return r;
    if (c->vpc_url[0] != '\0') {
        if ((r = endpoint("IBMCLOUD_VPC_ENDPOINT", c->vpc_url, NULL, d->vpc, sizeof(d->vpc), err)) <
            0)
            return r;
    } else {
        /* us-south-1 is in us-south. */
        int rl = (int)(strrchr(c->zone, '-') - c->zone);
        snprintf(d->vpc, sizeof(d->vpc), "https://%.*s.iaas.cloud.ibm.com/v1", rl, c->zone);
    }
    const struct {
        const char *setting, *value;
        size_t size;
        void **out;
        size_t *n;
    } lists[] = {
        {"IBMCLOUD_PODVM_INSTANCE_PROFILE_LIST", c->profiles, sizeof(*d->profiles),
         (void **)&d->profiles, &d->nprofiles},
        {"IBMCLOUD_PODVM_IMAGE_ID", c->images, sizeof(*d->images), (void **)&d->images,
         &d->nimages},
        {"IBMCLOUD_SECURITY_GROUP_IDS", c->sg_ids, sizeof(*d->sgs), (void **)&d->sgs, &d->nsgs},
        {"IBMCLOUD_DEDICATED_HOST_IDS", c->dh_ids, sizeof(*d->dhs), (void **)&d->dhs, &d->ndhs},
        {"IBMCLOUD_DEDICATED_HOST_GROUP_IDS", c->dhg_ids, sizeof(*d->dhgs), (void **)&d->dhgs,
         &d->ndhgs},
    };
    for (size_t i = 0; i < PP_ARRAY_SIZE(lists); i++)
        if ((r = split(lists[i].setting, lists[i].value, lists[i].size, lists[i].out, lists[i].n,
                       err)) < 0)
            return r;
    /* Upstream's tags: the cluster's, then TAGS. */
    size_t ntags = pp_list_count(c->tags) + 1;
    d->tags = calloc(ntags, sizeof(*d->tags));
    if (d->tags == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    if (c->cluster_id[0] != '\0')
        snprintf(d->tags[d->ntags++], sizeof(*d->tags), "%s%.100s", PP_IBM_TAG_CLUSTER,
                 c->cluster_id);
    const char *cur = c->tags, *item;
    size_t len;
    while (pp_list_next(&cur, &item, &len)) {
        if (len > PP_IBM_TAG_MAX)
            return pp_error_set(err, -EINVAL, "environment variable `TAGS`: `%.*s` is too long",
                                (int)len, item);
        memcpy(d->tags[d->ntags], item, len);
        if (!tag_valid(d->tags[d->ntags]))
            return pp_error_set(err, -EINVAL,
                                "environment variable `TAGS`: `%s` is not a tag (at most 128 "
                                "of letters, digits, space, `_`, `.`, `:`, `-`)",
                                d->tags[d->ntags]);
        d->ntags++;
    }
    pp__ibm_node_tag(node != NULL ? node : "", d->node_tag);
    return check_profiles(c, d, err);
}

void pp__ibm_derived_free(pp__ibm_derived_t *d)
{
    free(d->profiles);
    free(d->images);
    free(d->sgs);
    free(d->dhs);
    free(d->dhgs);
    free(d->tags);
    memset(d, 0, sizeof(*d));
}
