/* The AWS provider's internals, shared by its files and the tests.
 *
 * Pod VMs are EC2 instances made with the EC2 Query API (version
 * 2016-11-15) over providers/http, signed with SigV4. Every instance is
 * tagged `Name` (the instance name), PP_AWS_TAG_NODE (the node) and
 * PP_AWS_TAG_SANDBOX (the sandbox id), plus TAGS; its RunInstances
 * ClientToken is derived from the node and the sandbox id, so a retried
 * create returns the instance the first one made. A create that fails after
 * EC2 may have made the instance terminates whatever carries its token. */
#ifndef PP_PROVIDERS_AWS_AWS_H
#define PP_PROVIDERS_AWS_AWS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "providers/http/errors.h"
#include "providers/http/http.h"
#include "providers/http/token.h"
#include "providers/instance_type.h"
#include "providers/provider.h"
#include "util/buf.h"

#define PP_AWS_EC2_VERSION   "2016-11-15"
#define PP_AWS_STS_VERSION   "2011-06-15"
#define PP_AWS_USER_DATA_MAX 16384 /* EC2's limit, before base64 */
#define PP_AWS_TAG_NODE      "peerpod/node"
#define PP_AWS_TAG_SANDBOX   "peerpod/sandbox-id"
#define PP_AWS_MAX_ITEMS     1000 /* items read from one response */
#define PP_AWS_XML_MAX       ((size_t)8 << 20)
/* How long an IMDSv2 session token (asked for 6 h) is used. */
#define PP_AWS_IMDS_TOKEN_LIFE_MS (21600ULL * 1000 - 60000)

extern const struct pp_provider_ops pp_provider_aws_ops;

/* --- settings (config.c) --------------------------------------------------- */

typedef struct pp__aws_endpoint_s {
    char url[512];
    char host[300]; /* the Host header: host[:port], port only when not the default */
    char path[256]; /* "/" at least */
} pp__aws_endpoint_t;

typedef struct pp__aws_tag_s {
    char key[129];
    char value[257];
} pp__aws_tag_t;

enum pp__aws_cred_mode { PP_AWS_CREDS_STATIC, PP_AWS_CREDS_WEB_IDENTITY, PP_AWS_CREDS_IMDS };

/* Settings (config.c, pp__aws_settings), upstream's variables and flags
 * where upstream has them; the table's offsets are into this struct, which
 * leads the provider's state. */
typedef struct pp__aws_config_s {
    char region[64];         /* AWS_REGION -aws-region */
    char default_region[64]; /* AWS_DEFAULT_REGION, when AWS_REGION is unset */
    char image_id[128];      /* PODVM_AMI_ID -imageid */
    char instance_type[PP_INSTANCE_TYPE_NAME_MAX]; /* PODVM_INSTANCE_TYPE -instance-type */
    char instance_types_list[4096];                /* PODVM_INSTANCE_TYPES -instance-types */
    char subnet_id[128];                           /* AWS_SUBNET_ID -subnetid */
    char sg_ids_list[4096];                        /* AWS_SG_IDS -securitygroupids */
    char key_name[256];                            /* SSH_KP_NAME -keyname */
    int use_public_ip;                             /* USE_PUBLIC_IP -use-public-ip */
    unsigned root_volume_gib;  /* ROOT_VOLUME_SIZE -root-volume-size; 0 = the image's */
    int disable_cvm;           /* DISABLECVM -disable-cvm */
    char tags_list[16384];     /* TAGS -tags */
    char launch_template[128]; /* PODVM_LAUNCHTEMPLATE_NAME -aws-lt-name */
    int use_launch_template;   /* USE_PODVM_LAUNCHTEMPLATE -use-lt */
    /* Credentials; secrets, wiped by pp__aws_config_free(). */
    char access_key[256];      /* AWS_ACCESS_KEY_ID -aws-access-key-id */
    char secret_key[256];      /* AWS_SECRET_ACCESS_KEY -aws-secret-key */
    char session_token[8192];  /* AWS_SESSION_TOKEN -aws-session-token */
    char role_arn[2048];       /* AWS_ROLE_ARN */
    char token_file[PATH_MAX]; /* AWS_WEB_IDENTITY_TOKEN_FILE */
    char session_name[65];     /* AWS_ROLE_SESSION_NAME */
    /* Endpoints as given. */
    char ec2_url[512];  /* AWS_ENDPOINT_URL_EC2 */
    char sts_url[512];  /* AWS_ENDPOINT_URL_STS */
    char any_url[512];  /* AWS_ENDPOINT_URL */
    char imds_url[512]; /* AWS_EC2_METADATA_SERVICE_ENDPOINT */
    char ca_bundle[PATH_MAX];
    double rate;
    unsigned burst;
    unsigned max_attempts;
    uint64_t backoff_base_ms, backoff_max_ms;
    uint64_t attempt_timeout_ms, request_timeout_ms;
    uint64_t ip_wait_ms, poll_ms;

    /* Derived by pp__aws_config_check(). */
    pp__aws_endpoint_t ec2, sts, imds;
    char (*instance_types)[PP_INSTANCE_TYPE_NAME_MAX];
    size_t ninstance_types;
    char (*sg_ids)[64];
    size_t nsg_ids;
    pp__aws_tag_t *tags;
    size_t ntags;
    enum pp__aws_cred_mode cred_mode;
} pp__aws_config_t;

extern const pp_settings_table_t pp__aws_settings;

/* Checks the rules across settings and derives the lists, endpoints and
 * credential mode; the first bad or missing setting is named in `err`. A
 * region left unset (for the instance metadata service to give: discover.c)
 * leaves the EC2 and STS endpoints to pp__aws_config_endpoints(). Free with
 * pp__aws_config_free() (also after a failure). */
int pp__aws_config_check(pp__aws_config_t *c, pp_error_t *err);
/* The EC2 and STS endpoints, from the settings and the region. */
int pp__aws_config_endpoints(pp__aws_config_t *c, pp_error_t *err);
/* The table from the environment, then the check (for tests). */
int pp__aws_config_load(pp__aws_config_t *c, pp_error_t *err);
void pp__aws_config_free(pp__aws_config_t *c);
/* Parses an endpoint URL (http or https) for `setting`. */
int pp__aws_endpoint_parse(const char *setting, const char *url, pp__aws_endpoint_t *ep,
                           pp_error_t *err);

/* --- Query API bodies and errors (query.c) ----------------------------------- */

/* "Action=X&Version=Y&k=v&...", values percent-encoded. Errors stick: the
 * first failure is kept and returned by pp__aws_query_finish(). */
typedef struct pp__aws_query_s {
    pp_buf_t buf;
    int err;
} pp__aws_query_t;

void pp__aws_query_init(pp__aws_query_t *q, const char *action, const char *version);
void pp__aws_query_add(pp__aws_query_t *q, const char *key, const char *value);
void pp__aws_query_addf(pp__aws_query_t *q, const char *value, const char *keyfmt, ...)
    __attribute__((format(printf, 3, 4)));
/* NUL-terminates; 0 or the first error. The text stays in q->buf. */
int pp__aws_query_finish(pp__aws_query_t *q);
void pp__aws_query_free(pp__aws_query_t *q);

/* The one translation of an AWS error code (and HTTP status) into ours. */
typedef pp_http_error_class_t pp__aws_error_class_t;

void pp__aws_error_classify(const char *code, long http_status, pp__aws_error_class_t *out);
/* The HTTP client's hook: retries throttling and transient codes, and
 * hands capacity errors (500s from EC2) straight back. */
pp_http_verdict_t pp__aws_http_classify(const pp_http_response_t *resp, void *arg);

/* --- responses (xml.c): bounded, namespaces ignored ----------------------------- */

typedef struct pp__aws_error_info_s {
    char code[128];
    char message[384];
    char request_id[128];
} pp__aws_error_info_t;

typedef struct pp__aws_instance_s {
    char id[32];
    char state[24];
    char type[PP_INSTANCE_TYPE_NAME_MAX];
    char private_ip[48];
    char public_ip[48];
    char client_token[65];
    char name[257];
    char node[257];
    char sandbox_id[257];
} pp__aws_instance_t;

typedef struct pp__aws_instances_s {
    pp__aws_instance_t *items;
    size_t n;
    char next_token[1025];
} pp__aws_instances_t;

typedef struct pp__aws_types_s {
    pp_instance_type_t *items;
    size_t n;
    char next_token[1025];
} pp__aws_types_t;

typedef struct pp__aws_image_s {
    char root_device[64];
    unsigned root_size_gib; /* 0 = not said */
} pp__aws_image_t;

typedef struct pp__aws_sts_creds_s {
    char *access_key, *secret_key, *session_token;
    time_t expiration;
} pp__aws_sts_creds_t;

/* Each returns 0, or -EBADMSG for anything malformed, too big or too deep. */
int pp__aws_parse_error(const char *xml, size_t len, pp__aws_error_info_t *out);
/* RunInstances (instancesSet) or DescribeInstances (reservationSet). */
int pp__aws_parse_instances(const char *xml, size_t len, pp__aws_instances_t *out);
void pp__aws_instances_free(pp__aws_instances_t *l);
/* TerminateInstances: the current state of `id`, "" when not listed. */
int pp__aws_parse_terminate(const char *xml, size_t len, const char *id, char *state,
                            size_t statelen);
int pp__aws_parse_instance_types(const char *xml, size_t len, pp__aws_types_t *out);
void pp__aws_types_free(pp__aws_types_t *t);
int pp__aws_parse_image(const char *xml, size_t len, const char *image_id, pp__aws_image_t *out);
int pp__aws_parse_sts(const char *xml, size_t len, pp__aws_sts_creds_t *out);
/* IMDS's JSON credentials document. */
int pp__aws_parse_imds_creds(const char *json, size_t len, pp__aws_sts_creds_t *out);
void pp__aws_sts_creds_free(pp__aws_sts_creds_t *c);
/* "2006-01-02T15:04:05Z" (fractions allowed) -> seconds since the epoch. */
int pp__aws_parse_time(const char *s, time_t *out);

/* --- credentials (creds.c) ----------------------------------------------------- */

typedef struct pp__aws_state_s pp__aws_state_t;
typedef void (*pp__aws_ready_cb)(int status, const pp_error_t *err, void *data);

typedef struct pp__aws_waiter_s {
    struct pp__aws_waiter_s *next;
    pp__aws_ready_cb cb;
    void *data;
} pp__aws_waiter_t;

typedef struct pp__aws_creds_s {
    enum pp__aws_cred_mode mode;
    char *access_key, *secret_key, *session_token;
    time_t expiration; /* of the keys just fetched */
    pp_token_cache_t cache;
    char imds_token[256];
    uint64_t imds_token_until_ms;
    char imds_role[256];
} pp__aws_creds_t;

/* 1: the credentials are fresh, `cb` will not be called. 0: a refresh runs
 * and `w->cb` fires once with its result (providers/http/token.h). */
int pp__aws_creds_ensure(pp__aws_state_t *st, pp_token_waiter_t *w);
/* After an answer that says the credentials expired: fetch new ones next. */
void pp__aws_creds_invalidate(pp__aws_state_t *st);
void pp__aws_creds_clear(pp__aws_creds_t *c);

/* --- calls (ec2.c) -------------------------------------------------------------- */

/* `status` 0: `body` is the answer. Otherwise `err` holds the translated
 * error, `code` the AWS error code ("" when there is none). */
typedef void (*pp__aws_call_cb)(int status, const char *body, size_t len, const char *code,
                                const pp_error_t *err, void *data);

typedef struct pp__aws_call_s pp__aws_call_t;

/* A signed EC2 Query API call; `q` is taken over (freed here). */
int pp__aws_ec2_call(pp__aws_state_t *st, pp__aws_query_t *q, const char *action,
                     pp__aws_call_cb cb, void *data);
/* STS AssumeRoleWithWebIdentity (unsigned). */
int pp__aws_sts_call(pp__aws_state_t *st, pp__aws_query_t *q, const char *action,
                     pp__aws_call_cb cb, void *data);
/* IMDSv2: GET `path` with the session token (`token` NULL: PUT the token
 * request instead). */
int pp__aws_imds_call(pp__aws_state_t *st, const char *path, const char *token, pp__aws_call_cb cb,
                      void *data);

/* --- the instance metadata service's answers (imds.c) ------------------------------- */

/* The one-line answers: what each may hold is in imds.c's table. */
enum pp__aws_imds_field {
    PP_AWS_IMDS_TOKEN,    /* PUT /latest/api/token */
    PP_AWS_IMDS_MAC,      /* meta-data/mac */
    PP_AWS_IMDS_REGION,   /* meta-data/placement/region */
    PP_AWS_IMDS_ID,       /* a subnet id */
    PP_AWS_IMDS_ROLE,     /* meta-data/iam/security-credentials/ */
    PP_AWS_IMDS_KEY_NAME, /* meta-data/public-keys: `0=<name>` */
};

#define PP_AWS_IMDS_GROUPS_MAX 256

/* The first line of `body` (`len` bytes, not necessarily NUL-terminated),
 * trailing white space dropped, into `out` as a string: 0, or -EBADMSG
 * when it is empty, does not fit in `size`, or holds a character the field
 * may not (`out` is then ""). */
int pp__aws_imds_read(enum pp__aws_imds_field f, const char *body, size_t len, char *out,
                      size_t size);
/* security-group-ids: ids separated by white space, at least one, at most
 * PP_AWS_IMDS_GROUPS_MAX. 0 with `*ids` (free()) and `*count`, -EBADMSG,
 * -ENOMEM. */
int pp__aws_imds_read_groups(const char *body, size_t len, char (**ids)[64], size_t *count);

/* --- the node's settings from instance metadata (discover.c) ----------------------- */

#define PP_AWS_NEED_REGION (1u << 0)
#define PP_AWS_NEED_SUBNET (1u << 1)
#define PP_AWS_NEED_SGS    (1u << 2)
#define PP_AWS_NEED_KEY    (1u << 3)

enum { PP_AWS_DISCOVER_TODO, PP_AWS_DISCOVER_RUNNING, PP_AWS_DISCOVER_DONE };

typedef struct pp__aws_discovery_s {
    int state;
    unsigned need; /* PP_AWS_NEED_*: what is unset and asked for */
    int step;
    char token[256];
    char mac[64];
    pp__aws_waiter_t *waiters;
} pp__aws_discovery_t;

/* What is unset; nothing is asked yet. */
void pp__aws_discover_init(pp__aws_state_t *st);
/* 1: nothing (more) to ask, `w` is not called. 0: the answers are asked
 * for and `w->cb` fires once when they are in (an error only when the
 * region stays unknown); `w` may be NULL to only start. <0: could not ask. */
int pp__aws_discover_ensure(pp__aws_state_t *st, pp__aws_waiter_t *w);

/* --- the provider (aws.c) ---------------------------------------------------------- */

typedef struct pp__aws_op_s pp__aws_op_t;

/* Loaded on first need and kept: the specs of the allowed instance types,
 * and the root device of each image used with ROOT_VOLUME_SIZE. */
typedef struct pp__aws_lazy_s {
    int state; /* 0 not loaded, 1 loading, 2 loaded */
    pp__aws_waiter_t *waiters;
} pp__aws_lazy_t;

typedef struct pp__aws_image_entry_s {
    struct pp__aws_image_entry_s *next;
    char image_id[128];
    pp__aws_image_t info;
    pp__aws_lazy_t lazy;
} pp__aws_image_entry_t;

struct pp__aws_state_s {
    pp__aws_config_t cfg; /* first: the settings' offsets are into it */
    pp_provider_t *p;
    pp_http_t *http;
    pp__aws_creds_t creds;
    pp__aws_discovery_t discovery;
    pp_instance_type_t *specs;
    size_t nspecs;
    pp__aws_lazy_t specs_lazy;
    pp__aws_image_entry_t *images;
    unsigned ops_in_flight;
};

/* The ClientToken for a sandbox on a node: 64 hex characters. -ENOMEM. */
int pp__aws_client_token(const char *node, const char *sandbox_id, char out[65]);
/* Whether `id` looks like an EC2 instance id ("i-" and 8 or 17 hex). */
int pp__aws_instance_id_valid(const char *id);

#endif
