/* The AWS provider's settings, from the environment (upstream's names):
 *
 *   AWS_REGION (or AWS_DEFAULT_REGION)  required
 *   PODVM_AMI_ID                 required unless USE_PODVM_LAUNCHTEMPLATE
 *   PODVM_INSTANCE_TYPE          default type (m6a.large)
 *   PODVM_INSTANCE_TYPES         allow-list, comma separated (at most 100)
 *   AWS_SUBNET_ID, AWS_SG_IDS (comma separated), SSH_KP_NAME
 *   USE_PUBLIC_IP, DISABLECVM, USE_PODVM_LAUNCHTEMPLATE   true/false
 *   PODVM_LAUNCHTEMPLATE_NAME    (kata)
 *   ROOT_VOLUME_SIZE             GiB, 0 = the image's (30)
 *   TAGS                         key=value,key=value
 * Credentials, in this order: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY
 * (+ AWS_SESSION_TOKEN); AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE (+
 * AWS_ROLE_SESSION_NAME) for STS web identity; else the instance role over
 * IMDSv2.
 * Endpoints: AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL,
 * AWS_EC2_METADATA_SERVICE_ENDPOINT; AWS_CA_BUNDLE.
 * API use: AWS_API_RATE_LIMIT (requests/s, 10), AWS_API_BURST (20),
 * AWS_MAX_ATTEMPTS (5), AWS_RETRY_BASE_DELAY_MS (200),
 * AWS_RETRY_MAX_DELAY_MS (20000), AWS_API_ATTEMPT_TIMEOUT_MS (20000),
 * AWS_API_TIMEOUT_MS (90000), AWS_IP_WAIT_TIMEOUT_MS (120000),
 * AWS_IP_POLL_INTERVAL_MS (2000). */
#include "aws.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "providers/settings.h"
#include "util/cleanup.h"

#define ID_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."

static const char *env(const char *name)
{
    return pp_setting(name);
}

static int get_rate(const char *name, double def, double *out, pp_error_t *err)
{
    const char *v = env(name);
    *out = def;
    if (v == NULL)
        return 0;
    char *end = NULL;
    errno = 0;
    double x = strtod(v, &end);
    if (errno != 0 || *end != '\0' || !(x >= 0 && x <= 100000))
        return pp_error_set(err, -EINVAL,
                            "environment variable `%s`: `%s` is not a number of requests per "
                            "second from 0 (no limit) to 100000",
                            name, v);
    *out = x;
    return 0;
}

/* Splits a comma-separated list into fixed-size names; empty items are
 * skipped, blanks around items trimmed. */
static int get_list(const char *name, size_t width, const char *chars, void **out, size_t *n,
                    pp_error_t *err)
{
    *out = NULL;
    *n = 0;
    const char *v = env(name);
    if (v == NULL)
        return 0;
    size_t cap = 1;
    for (const char *p = v; *p; p++)
        cap += *p == ',';
    if (cap > 256)
        return pp_error_set(err, -EINVAL, "environment variable `%s`: more than 256 items", name);
    char *items = calloc(cap, width);
    if (items == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    const char *p = v;
    while (*p != '\0') {
        size_t l = strcspn(p, ",");
        const char *s = p, *e = p + l;
        while (s < e && isspace((unsigned char)*s))
            s++;
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (e > s) {
            char *dst = items + *n * width;
            if ((size_t)(e - s) >= width) {
                free(items);
                return pp_error_set(err, -EINVAL,
                                    "environment variable `%s`: `%.*s` is longer than %zu bytes",
                                    name, (int)(e - s), s, width - 1);
            }
            memcpy(dst, s, (size_t)(e - s));
            if (dst[strspn(dst, chars)] != '\0') {
                int r = pp_error_set(err, -EINVAL,
                                     "environment variable `%s`: `%s` has characters outside `%s`",
                                     name, dst, chars);
                free(items);
                return r;
            }
            (*n)++;
        }
        p += l;
        if (*p == ',')
            p++;
    }
    *out = items;
    return 0;
}

static int get_tags(pp__aws_config_t *c, pp_error_t *err)
{
    const char *v = env("TAGS");
    if (v == NULL)
        return 0;
    size_t cap = 1;
    for (const char *p = v; *p; p++)
        cap += *p == ',';
    if (cap > 40)
        return pp_error_set(err, -EINVAL, "environment variable `TAGS`: more than 40 tags");
    c->tags = calloc(cap, sizeof(*c->tags));
    if (c->tags == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    const char *p = v;
    while (*p != '\0') {
        size_t l = strcspn(p, ",");
        const char *eq = memchr(p, '=', l);
        if (l > 0) {
            if (eq == NULL || eq == p)
                return pp_error_set(err, -EINVAL,
                                    "environment variable `TAGS`: `%.*s` is not key=value", (int)l,
                                    p);
            pp__aws_tag_t *t = &c->tags[c->ntags];
            size_t kl = (size_t)(eq - p), vl = l - kl - 1;
            if (kl >= sizeof(t->key) || vl >= sizeof(t->value))
                return pp_error_set(err, -EINVAL,
                                    "environment variable `TAGS`: `%.*s`: keys are at most 128 "
                                    "bytes, values 256",
                                    (int)l, p);
            memcpy(t->key, p, kl);
            memcpy(t->value, eq + 1, vl);
            static const char *const reserved[] = {"aws:", "Name", PP_AWS_TAG_NODE,
                                                   PP_AWS_TAG_SANDBOX};
            for (size_t i = 0; i < PP_ARRAY_SIZE(reserved); i++) {
                size_t rl = strlen(reserved[i]);
                if (strncmp(t->key, reserved[i], rl) == 0 &&
                    (reserved[i][rl - 1] == ':' || t->key[rl] == '\0'))
                    return pp_error_set(err, -EINVAL,
                                        "environment variable `TAGS`: the tag `%s` is set by the "
                                        "provider",
                                        t->key);
            }
            c->ntags++;
        }
        p += l;
        if (*p == ',')
            p++;
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

static int endpoint(const char *specific, const char *def_host, const char *region,
                    pp__aws_endpoint_t *ep, pp_error_t *err)
{
    const char *name = specific, *v = env(specific);
    if (v == NULL && strcmp(specific, "AWS_EC2_METADATA_SERVICE_ENDPOINT") != 0) {
        name = "AWS_ENDPOINT_URL";
        v = env(name);
    }
    char def[300];
    if (v == NULL) {
        if (region != NULL)
            snprintf(def, sizeof(def), "https://%s.%s.amazonaws.com/", def_host, region);
        else
            snprintf(def, sizeof(def), "%s", def_host);
        v = def;
    }
    return pp__aws_endpoint_parse(name, v, ep, err);
}

static char *dup_secret(const char *v)
{
    return v != NULL ? strdup(v) : NULL;
}

static int credentials(pp__aws_config_t *c, pp_error_t *err)
{
    const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
    if (ak != NULL || sk != NULL) {
        if (ak == NULL || sk == NULL)
            return pp_error_set(err, -EINVAL,
                                "environment variable `%s` is set but `%s` is not: both or neither",
                                ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                                ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        c->cred_mode = PP_AWS_CREDS_STATIC;
        c->access_key = dup_secret(ak);
        c->secret_key = dup_secret(sk);
        c->session_token = dup_secret(env("AWS_SESSION_TOKEN"));
        if (c->access_key == NULL || c->secret_key == NULL ||
            (env("AWS_SESSION_TOKEN") != NULL && c->session_token == NULL))
            return pp_error_set(err, -ENOMEM, "out of memory");
        return 0;
    }
    const char *arn = env("AWS_ROLE_ARN"), *file = env("AWS_WEB_IDENTITY_TOKEN_FILE");
    if (arn != NULL || file != NULL) {
        if (arn == NULL || file == NULL)
            return pp_error_set(err, -EINVAL,
                                "environment variable `%s` is set but `%s` is not: both or neither",
                                arn ? "AWS_ROLE_ARN" : "AWS_WEB_IDENTITY_TOKEN_FILE",
                                arn ? "AWS_WEB_IDENTITY_TOKEN_FILE" : "AWS_ROLE_ARN");
        c->cred_mode = PP_AWS_CREDS_WEB_IDENTITY;
        int r = pp_setting_copy("AWS_ROLE_ARN", arn, c->role_arn, sizeof(c->role_arn), NULL, err);
        if (r == 0)
            r = pp_setting_copy("AWS_WEB_IDENTITY_TOKEN_FILE", file, c->token_file,
                                sizeof(c->token_file), NULL, err);
        if (r == 0 && file[0] != '/')
            r = pp_error_set(err, -EINVAL,
                             "environment variable `AWS_WEB_IDENTITY_TOKEN_FILE`: `%s` is not an "
                             "absolute path",
                             file);
        const char *sn = env("AWS_ROLE_SESSION_NAME");
        if (r == 0)
            r = pp_setting_copy(
                "AWS_ROLE_SESSION_NAME", sn ? sn : "peerpod-cloud-api-adaptor", c->session_name,
                sizeof(c->session_name),
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=,.@-_", err);
        return r;
    }
    c->cred_mode = PP_AWS_CREDS_IMDS;
    return 0;
}

int pp__aws_config_load(pp__aws_config_t *c, pp_error_t *err)
{
    memset(c, 0, sizeof(*c));
    const char *region_var = env("AWS_REGION") ? "AWS_REGION" : "AWS_DEFAULT_REGION";
    const char *region = env(region_var);
    if (region == NULL)
        return pp_error_set(err, -EINVAL,
                            "environment variable `AWS_REGION` is not set: expected a region such "
                            "as `us-east-1`");
    int r = pp_setting_copy(region_var, region, c->region, sizeof(c->region),
                            "abcdefghijklmnopqrstuvwxyz0123456789-", err);
    if (r < 0)
        return r;
    if ((r = pp_setting_bool("USE_PODVM_LAUNCHTEMPLATE", 0, &c->use_launch_template, err)) < 0 ||
        (r = pp_setting_bool("USE_PUBLIC_IP", 0, &c->use_public_ip, err)) < 0 ||
        (r = pp_setting_bool("DISABLECVM", 0, &c->disable_cvm, err)) < 0)
        return r;

    static const struct {
        const char *name;
        size_t off, size;
        const char *def;
        const char *chars;
    } strs[] = {
        {"PODVM_AMI_ID", offsetof(pp__aws_config_t, image_id), 128, NULL, ID_CHARS},
        {"PODVM_INSTANCE_TYPE", offsetof(pp__aws_config_t, instance_type),
         PP_INSTANCE_TYPE_NAME_MAX, "m6a.large", ID_CHARS},
        {"AWS_SUBNET_ID", offsetof(pp__aws_config_t, subnet_id), 128, NULL, ID_CHARS},
        {"SSH_KP_NAME", offsetof(pp__aws_config_t, key_name), 256, NULL, NULL},
        {"PODVM_LAUNCHTEMPLATE_NAME", offsetof(pp__aws_config_t, launch_template), 128, "kata",
         NULL},
        {"AWS_CA_BUNDLE", offsetof(pp__aws_config_t, ca_bundle), PATH_MAX, NULL, NULL},
    };
    for (size_t i = 0; i < PP_ARRAY_SIZE(strs); i++) {
        const char *v = env(strs[i].name);
        if (v == NULL)
            v = strs[i].def;
        if (v != NULL && (r = pp_setting_copy(strs[i].name, v, (char *)c + strs[i].off,
                                              strs[i].size, strs[i].chars, err)) < 0)
            return r;
    }
    if (c->image_id[0] == '\0' && !c->use_launch_template)
        return pp_error_set(err, -EINVAL,
                            "environment variable `PODVM_AMI_ID` is not set: expected the pod VM "
                            "image's AMI id (or USE_PODVM_LAUNCHTEMPLATE=true)");
    void *list = NULL;
    if ((r = get_list("PODVM_INSTANCE_TYPES", PP_INSTANCE_TYPE_NAME_MAX, ID_CHARS, &list,
                      &c->ninstance_types, err)) < 0)
        return r;
    c->instance_types = list;
    if (c->ninstance_types > 100)
        return pp_error_set(err, -EINVAL,
                            "environment variable `PODVM_INSTANCE_TYPES`: more than 100 types");
    if ((r = get_list("AWS_SG_IDS", 64, ID_CHARS, &list, &c->nsg_ids, err)) < 0)
        return r;
    c->sg_ids = list;
    if ((r = get_tags(c, err)) < 0)
        return r;

    uint64_t u = 0;
    struct {
        const char *name;
        uint64_t def, min, max;
        uint64_t *dst;
    } nums[] = {
        {"AWS_RETRY_BASE_DELAY_MS", 200, 1, 600000, &c->backoff_base_ms},
        {"AWS_RETRY_MAX_DELAY_MS", 20000, 1, 3600000, &c->backoff_max_ms},
        {"AWS_API_ATTEMPT_TIMEOUT_MS", 20000, 10, 3600000, &c->attempt_timeout_ms},
        {"AWS_API_TIMEOUT_MS", 90000, 10, 3600000, &c->request_timeout_ms},
        {"AWS_IP_WAIT_TIMEOUT_MS", 120000, 0, 3600000, &c->ip_wait_ms},
        {"AWS_IP_POLL_INTERVAL_MS", 2000, 1, 600000, &c->poll_ms},
    };
    for (size_t i = 0; i < PP_ARRAY_SIZE(nums); i++)
        if ((r = pp_setting_u64(nums[i].name, nums[i].def, nums[i].min, nums[i].max, nums[i].dst,
                                err)) < 0)
            return r;
    if ((r = pp_setting_u64("ROOT_VOLUME_SIZE", 30, 0, 65536, &u, err)) < 0)
        return r;
    c->root_volume_gib = (unsigned)u;
    if ((r = pp_setting_u64("AWS_MAX_ATTEMPTS", 5, 1, 100, &u, err)) < 0)
        return r;
    c->max_attempts = (unsigned)u;
    if ((r = pp_setting_u64("AWS_API_BURST", 20, 1, 100000, &u, err)) < 0)
        return r;
    c->burst = (unsigned)u;
    if ((r = get_rate("AWS_API_RATE_LIMIT", 10, &c->rate, err)) < 0)
        return r;

    if ((r = endpoint("AWS_ENDPOINT_URL_EC2", "ec2", c->region, &c->ec2, err)) < 0 ||
        (r = endpoint("AWS_ENDPOINT_URL_STS", "sts", c->region, &c->sts, err)) < 0 ||
        (r = endpoint("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://169.254.169.254/", NULL,
                      &c->imds, err)) < 0)
        return r;
    return credentials(c, err);
}

static void free_secret(char **s)
{
    if (*s != NULL) {
        OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

void pp__aws_config_free(pp__aws_config_t *c)
{
    free(c->instance_types);
    free(c->sg_ids);
    free(c->tags);
    free_secret(&c->access_key);
    free_secret(&c->secret_key);
    free_secret(&c->session_token);
    c->instance_types = NULL;
    c->sg_ids = NULL;
    c->tags = NULL;
}
