/* The AWS provider's settings (the table below; upstream's variables and
 * flags where upstream has them):
 *
 *   AWS_REGION -aws-region (or AWS_DEFAULT_REGION)   else the node's, from IMDS
 *   PODVM_AMI_ID -imageid         required unless USE_PODVM_LAUNCHTEMPLATE
 *   PODVM_INSTANCE_TYPE -instance-type     default type (m6a.large)
 *   PODVM_INSTANCE_TYPES -instance-types   allow-list, comma separated (at most 100)
 *   AWS_SUBNET_ID -subnetid, AWS_SG_IDS -securitygroupids (comma separated),
 *   SSH_KP_NAME -keyname          else the node's, from IMDS (discover.c)
 *   USE_PUBLIC_IP, DISABLECVM, USE_PODVM_LAUNCHTEMPLATE -use-lt   booleans
 *   PODVM_LAUNCHTEMPLATE_NAME -aws-lt-name    (kata)
 *   ROOT_VOLUME_SIZE -root-volume-size        GiB, 0 = the image's (30)
 *   TAGS -tags                    key=value,key=value
 * Credentials, in this order: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY
 * (+ AWS_SESSION_TOKEN); AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (+
 * AWS_ROLE_SESSION_NAME) for STS web identity; else the instance role over
 * IMDSv2. -aws-profile and AWS_PROFILE (shared config files) are refused.
 * Endpoints: AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL,
 * AWS_EC2_METADATA_SERVICE_ENDPOINT; AWS_CA_BUNDLE.
 * API use: AWS_API_RATE_LIMIT (requests/s, 10), AWS_API_BURST (20),
 * AWS_MAX_ATTEMPTS (5), AWS_RETRY_BASE_DELAY_MS (200),
 * AWS_RETRY_MAX_DELAY_MS (20000), AWS_API_ATTEMPT_TIMEOUT_MS (20000),
 * AWS_API_TIMEOUT_MS (90000), AWS_IP_WAIT_TIMEOUT_MS (120000),
 * AWS_IP_POLL_INTERVAL_MS (2000). */
#include "providers/aws/aws.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "util/cleanup.h"

#define ID_CHARS           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
#define REGION_CHARS       "abcdefghijklmnopqrstuvwxyz0123456789-"
#define ROLE_SESSION_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=,.@-_"

typedef pp__aws_config_t cfg_t;

#define SECRET .flags = PP_SETTING_SECRET

static const pp_setting_t items[] = {
    PP_SETTING_STR(cfg_t, region, "AWS_REGION", "aws-region", NULL,
                   "region of the pod VMs, like us-east-1 (default: the node's, from its "
                   "metadata)",
                   .chars = REGION_CHARS),
    PP_SETTING_STR(cfg_t, default_region, "AWS_DEFAULT_REGION", NULL, NULL,
                   "the region when AWS_REGION is unset", .chars = REGION_CHARS),
    PP_SETTING_STR(cfg_t, image_id, "PODVM_AMI_ID", "imageid", NULL,
                   "the pod VM image's AMI id (required unless USE_PODVM_LAUNCHTEMPLATE)",
                   .chars = ID_CHARS),
    PP_SETTING_STR(cfg_t, instance_type, "PODVM_INSTANCE_TYPE", "instance-type", "m6a.large",
                   "default instance type", .chars = ID_CHARS),
    PP_SETTING_LIST_OF(cfg_t, instance_types_list, "PODVM_INSTANCE_TYPES", "instance-types", NULL,
                       "instance types a pod may ask for, comma separated", .chars = ID_CHARS,
                       .max = 100),
    PP_SETTING_STR(cfg_t, subnet_id, "AWS_SUBNET_ID", "subnetid", NULL,
                   "subnet of the pod VMs (default: the node's, from its metadata)",
                   .chars = ID_CHARS),
    PP_SETTING_LIST_OF(cfg_t, sg_ids_list, "AWS_SG_IDS", "securitygroupids", NULL,
                       "security groups of the pod VMs, comma separated (default: the node's)",
                       .chars = ID_CHARS, .max = 256),
    PP_SETTING_STR(cfg_t, key_name, "SSH_KP_NAME", "keyname", NULL,
                   "SSH key pair of the pod VMs (default: the node's)"),
    PP_SETTING_BOOL_OF(cfg_t, use_public_ip, "USE_PUBLIC_IP", "use-public-ip", "false",
                       "reach the forwarder on the pod VM's public address"),
    PP_SETTING_INT_OF(cfg_t, root_volume_gib, "ROOT_VOLUME_SIZE", "root-volume-size", "30", 0,
                      65536, "root volume of a pod VM, GiB (0: the image's)"),
    PP_SETTING_BOOL_OF(cfg_t, disable_cvm, "DISABLECVM", "disable-cvm", "false",
                       "launch pod VMs without AMD SEV-SNP"),
    PP_SETTING_LIST_OF(cfg_t, tags_list, "TAGS", "tags", NULL,
                       "tags of the pod VMs, key=value, comma separated", .max = 40),
    PP_SETTING_STR(cfg_t, launch_template, "PODVM_LAUNCHTEMPLATE_NAME", "aws-lt-name", "kata",
                   "launch template, with USE_PODVM_LAUNCHTEMPLATE"),
    PP_SETTING_BOOL_OF(cfg_t, use_launch_template, "USE_PODVM_LAUNCHTEMPLATE", "use-lt", "false",
                       "create pod VMs from the launch template"),
    PP_SETTING_STR(cfg_t, access_key, "AWS_ACCESS_KEY_ID", "aws-access-key-id", NULL,
                   "access key id", SECRET),
    PP_SETTING_STR(cfg_t, secret_key, "AWS_SECRET_ACCESS_KEY", "aws-secret-key", NULL,
                   "secret access key", SECRET),
    PP_SETTING_STR(cfg_t, session_token, "AWS_SESSION_TOKEN", "aws-session-token", NULL,
                   "session token of temporary keys", SECRET),
    PP_SETTING_STR(cfg_t, role_arn, "AWS_ROLE_ARN", NULL, NULL,
                   "role assumed with the web identity token"),
    PP_SETTING_STR(cfg_t, token_file, "AWS_WEB_IDENTITY_TOKEN_FILE", NULL, NULL,
                   "web identity token file (absolute)"),
    PP_SETTING_STR(cfg_t, session_name, "AWS_ROLE_SESSION_NAME", NULL, "peerpod-cloud-api-adaptor",
                   "role session name", .chars = ROLE_SESSION_CHARS),
    PP_SETTING_STR(cfg_t, ec2_url, "AWS_ENDPOINT_URL_EC2", NULL, NULL, "EC2 endpoint URL"),
    PP_SETTING_STR(cfg_t, sts_url, "AWS_ENDPOINT_URL_STS", NULL, NULL, "STS endpoint URL"),
    PP_SETTING_STR(cfg_t, any_url, "AWS_ENDPOINT_URL", NULL, NULL,
                   "endpoint URL of EC2 and STS when theirs are unset"),
    PP_SETTING_STR(cfg_t, imds_url, "AWS_EC2_METADATA_SERVICE_ENDPOINT", NULL,
                   "http://169.254.169.254/", "instance metadata service URL"),
    PP_SETTING_STR(cfg_t, ca_bundle, "AWS_CA_BUNDLE", NULL, NULL,
                   "CA certificates for the endpoints (PEM file)"),
    PP_SETTING_NUMBER_OF(cfg_t, rate, "AWS_API_RATE_LIMIT", NULL, "10", 0, 100000,
                         "EC2 requests per second (0: no limit)"),
    PP_SETTING_INT_OF(cfg_t, burst, "AWS_API_BURST", NULL, "20", 1, 100000,
                      "EC2 requests in a burst"),
    PP_SETTING_INT_OF(cfg_t, max_attempts, "AWS_MAX_ATTEMPTS", NULL, "5", 1, 100,
                      "attempts of a failing request"),
    PP_SETTING_INT_OF(cfg_t, backoff_base_ms, "AWS_RETRY_BASE_DELAY_MS", NULL, "200", 1, 600000,
                      "first delay before a retry, ms"),
    PP_SETTING_INT_OF(cfg_t, backoff_max_ms, "AWS_RETRY_MAX_DELAY_MS", NULL, "20000", 1, 3600000,
                      "longest delay before a retry, ms"),
    PP_SETTING_INT_OF(cfg_t, attempt_timeout_ms, "AWS_API_ATTEMPT_TIMEOUT_MS", NULL, "20000", 10,
                      3600000, "time for one attempt, ms"),
    PP_SETTING_INT_OF(cfg_t, request_timeout_ms, "AWS_API_TIMEOUT_MS", NULL, "90000", 10, 3600000,
                      "time for a request with its retries, ms"),
    PP_SETTING_INT_OF(cfg_t, ip_wait_ms, "AWS_IP_WAIT_TIMEOUT_MS", NULL, "120000", 0, 3600000,
                      "how long to wait for a pod VM's address, ms"),
    PP_SETTING_INT_OF(cfg_t, poll_ms, "AWS_IP_POLL_INTERVAL_MS", NULL, "2000", 1, 600000,
                      "how often to look for a pod VM's address, ms"),
    PP_SETTING_UPSTREAM(PP_SETTING_REFUSE, "AWS_PROFILE", "aws-profile", NULL,
                        "shared AWS config profiles are not read; give keys "
                        "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), a web identity "
                        "(AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE) or use the node's "
                        "instance role"),
};

const pp_settings_table_t pp__aws_settings = {"aws provider", items, PP_ARRAY_SIZE(items)};

/* Splits a list setting into fixed-size names. */
static int split_list(const char *name, const char *v, size_t width, void **out, size_t *n,
                      pp_error_t *err)
{
    *out = NULL;
    *n = 0;
    size_t cap = pp_list_count(v);
    if (cap == 0)
        return 0;
    char *items = calloc(cap, width);
    if (items == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    const char *cur = v, *item;
    size_t len;
    while (pp_list_next(&cur, &item, &len)) {
        if (len >= width) {
            free(items);
            return pp_error_set(err, -EINVAL, "`%s`: `%.*s` is longer than %zu bytes", name,
                                (int)len, item, width - 1);
        }
        memcpy(items + *n * width, item, len);
        (*n)++;
    }
    *out = items;
    return 0;
}

static int split_tags(pp__aws_config_t *c, pp_error_t *err)
{
    size_t cap = pp_list_count(c->tags_list);
    if (cap == 0)
        return 0;
    c->tags = calloc(cap, sizeof(*c->tags));
    if (c->tags == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    const char *cur = c->tags_list, *p;
    size_t l;
    while (pp_list_next(&cur, &p, &l)) {
        const char *eq = memchr(p, '=', l);
        if (eq == NULL || eq == p)
            return pp_error_set(err, -EINVAL, "`TAGS`: `%.*s` is not key=value", (int)l, p);
        pp__aws_tag_t *t = &c->tags[c->ntags];
        size_t kl = (size_t)(eq - p), vl = l - kl - 1;
        if (kl >= sizeof(t->key) || vl >= sizeof(t->value))
            return pp_error_set(
                err, -EINVAL, "`TAGS`: `%.*s`: keys are at most 128 bytes, values 256", (int)l, p);
        memcpy(t->key, p, kl);
        memcpy(t->value, eq + 1, vl);
        static const char *const reserved[] = {"aws:", "Name", PP_AWS_TAG_NODE, PP_AWS_TAG_SANDBOX};
        for (size_t i = 0; i < PP_ARRAY_SIZE(reserved); i++) {
            size_t rl = strlen(reserved[i]);
            if (strncmp(t->key, reserved[i], rl) == 0 &&
                (reserved[i][rl - 1] == ':' || t->key[rl] == '\0'))
                return pp_error_set(err, -EINVAL, "`TAGS`: the tag `%s` is set by the provider",
                                    t->key);
        }
        c->ntags++;
    }
    return 0;
}

int pp__aws_endpoint_parse(const char *setting, const char *url, pp__aws_endpoint_t *ep,
                           pp_error_t *err)
{
    memset(ep, 0, sizeof(*ep));
    CURLU *u = curl_url();
    if (u == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *user = NULL;
    int r = -EINVAL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) ||
        curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        pp_error_set(err, -EINVAL,
                     "`%s`: `%s` is not an http:// or https:// URL without user or query", setting,
                     url);
        goto out;
    }
    curl_url_get(u, CURLUPART_PORT, &port, 0);
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    const char *p = path != NULL && path[0] != '\0' ? path : "/";
    if ((size_t)snprintf(ep->host, sizeof(ep->host), "%s%s%s", host, port ? ":" : "",
                         port ? port : "") >= sizeof(ep->host) ||
        (size_t)snprintf(ep->path, sizeof(ep->path), "%s", p) >= sizeof(ep->path) ||
        (size_t)snprintf(ep->url, sizeof(ep->url), "%s://%s%s", scheme, ep->host, ep->path) >=
            sizeof(ep->url)) {
        pp_error_set(err, -EINVAL, "`%s`: `%s` is too long", setting, url);
        goto out;
    }
    r = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(user);
    curl_url_cleanup(u);
    return r;
}

static int endpoint(const char *name, const char *given, const char *def_host,
                    const pp__aws_config_t *c, pp__aws_endpoint_t *ep, pp_error_t *err)
{
    if (given[0] == '\0' && c->any_url[0] != '\0') {
        name = "AWS_ENDPOINT_URL";
        given = c->any_url;
    }
    char def[300];
    if (given[0] == '\0') {
        snprintf(def, sizeof(def), "https://%s.%s.amazonaws.com/", def_host, c->region);
        given = def;
    }
    return pp__aws_endpoint_parse(name, given, ep, err);
}

static int credentials(pp__aws_config_t *c, pp_error_t *err)
{
    int ak = c->access_key[0] != '\0', sk = c->secret_key[0] != '\0';
    if (ak || sk) {
        if (!ak || !sk)
            return pp_error_set(err, -EINVAL, "`%s` is set but `%s` is not: both or neither",
                                ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                                ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        c->cred_mode = PP_AWS_CREDS_STATIC;
        return 0;
    }
    int arn = c->role_arn[0] != '\0', file = c->token_file[0] != '\0';
    if (arn || file) {
        if (!arn || !file)
            return pp_error_set(err, -EINVAL, "`%s` is set but `%s` is not: both or neither",
                                arn ? "AWS_ROLE_ARN" : "AWS_WEB_IDENTITY_TOKEN_FILE",
                                arn ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN");
        if (c->token_file[0] != '/')
            return pp_error_set(err, -EINVAL,
                                "`AWS_WEB_IDENTITY_TOKEN_FILE`: `%s` is not an absolute path",
                                c->token_file);
        c->cred_mode = PP_AWS_CREDS_WEB_IDENTITY;
        return 0;
    }
    c->cred_mode = PP_AWS_CREDS_IMDS;
    return 0;
}

int pp__aws_config_check(pp__aws_config_t *c, pp_error_t *err)
{
    c->instance_types = NULL;
    c->sg_ids = NULL;
    c->tags = NULL;
    c->ninstance_types = c->nsg_ids = c->ntags = 0;
    if (c->region[0] == '\0')
        memcpy(c->region, c->default_region, sizeof(c->region));
    if (c->image_id[0] == '\0' && !c->use_launch_template)
        return pp_error_set(err, -EINVAL,
                            "`PODVM_AMI_ID` is not set: expected the pod VM image's AMI id (or "
                            "USE_PODVM_LAUNCHTEMPLATE=true)");
    void *list = NULL;
    int r = split_list("PODVM_INSTANCE_TYPES", c->instance_types_list, PP_INSTANCE_TYPE_NAME_MAX,
                       &list, &c->ninstance_types, err);
    c->instance_types = list;
    if (r < 0)
        return r;
    r = split_list("AWS_SG_IDS", c->sg_ids_list, sizeof(*c->sg_ids), &list, &c->nsg_ids, err);
    c->sg_ids = list;
    if (r < 0 || (r = split_tags(c, err)) < 0)
        return r;
    if ((r = pp__aws_endpoint_parse("AWS_EC2_METADATA_SERVICE_ENDPOINT", c->imds_url, &c->imds,
                                    err)) < 0 ||
        (c->region[0] != '\0' && (r = pp__aws_config_endpoints(c, err)) < 0))
        return r;
    return credentials(c, err);
}

int pp__aws_config_endpoints(pp__aws_config_t *c, pp_error_t *err)
{
    int r = endpoint("AWS_ENDPOINT_URL_EC2", c->ec2_url, "ec2", c, &c->ec2, err);
    return r < 0 ? r : endpoint("AWS_ENDPOINT_URL_STS", c->sts_url, "sts", c, &c->sts, err);
}

int pp__aws_config_load(pp__aws_config_t *c, pp_error_t *err)
{
    memset(c, 0, sizeof(*c));
    int r = pp_settings_load(&pp__aws_settings, c, 0, NULL, PP_SETTINGS_QUIET, err);
    return r < 0 ? r : pp__aws_config_check(c, err);
}

void pp__aws_config_free(pp__aws_config_t *c)
{
    free(c->instance_types);
    free(c->sg_ids);
    free(c->tags);
    c->instance_types = NULL;
    c->sg_ids = NULL;
    c->tags = NULL;
    c->ninstance_types = c->nsg_ids = c->ntags = 0;
    OPENSSL_cleanse(c->access_key, sizeof(c->access_key));
    OPENSSL_cleanse(c->secret_key, sizeof(c->secret_key));
    OPENSSL_cleanse(c->session_token, sizeof(c->session_token));
}
