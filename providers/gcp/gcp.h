/* The GCP provider's internals, shared by its files and the tests.
 *
 * Pod VMs are Compute Engine instances made with the Compute Engine v1 REST
 * API over providers/http, authorised with an OAuth 2.0 access token: from a
 * service-account key (a JWT signed RS256, exchanged at the key's
 * `token_uri`), or from the metadata server (the node's service account,
 * GKE workload identity) when no key is given.
 *
 * The instance's name is the id CAA keeps (instance names are unique in a
 * zone). Every instance carries the labels PP_GCP_LABEL_NODE and
 * PP_GCP_LABEL_SANDBOX (label values are short: long or odd values are
 * abbreviated, pp__gcp_label_value()) and the exact sandbox id and node
 * name in its metadata. Its insert carries a `requestId` derived from the
 * node and the sandbox, so a retried insert is the same request; a create
 * that fails after the insert may have made the instance deletes it (after
 * checking it is this sandbox's). */
#ifndef PP_PROVIDERS_GCP_GCP_H
#define PP_PROVIDERS_GCP_GCP_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "providers/http/bearer.h"
#include "providers/http/errors.h"
#include "providers/http/http.h"
#include "providers/http/token.h"
#include "providers/instance_type.h"
#include "providers/names.h"
#include "providers/provider.h"
#include "util/settings.h"

/* One metadata value may hold 256 KiB; user data goes in base64. */
#define PP_GCP_USER_DATA_MAX   ((size_t)192 << 10)
#define PP_GCP_LABEL_NODE      "peerpod-node"
#define PP_GCP_LABEL_SANDBOX   "peerpod-sandbox"
#define PP_GCP_META_SANDBOX    "peerpod-sandbox-id"
#define PP_GCP_META_NODE       "peerpod-node"
#define PP_GCP_SCOPE           "https://www.googleapis.com/auth/compute"
#define PP_GCP_SCOPE_TAGS      "https://www.googleapis.com/auth/cloud-platform"
#define PP_GCP_JSON_MAX        ((size_t)8 << 20)
#define PP_GCP_MAX_ITEMS       1000 /* items read from one response */
#define PP_GCP_NAME_MAX        64   /* instance, operation, zone, type names */
#define PP_GCP_CREDENTIALS_MAX 16384

extern const struct pp_provider_ops pp_provider_gcp_ops;

/* --- settings (config.c) ------------------------------------------------------ */

enum pp__gcp_cvm { PP_GCP_CVM_NONE, PP_GCP_CVM_SEV, PP_GCP_CVM_SEV_SNP, PP_GCP_CVM_TDX };

/* Filled from the settings table (pp__gcp_settings) before init. */
typedef struct pp__gcp_config_s {
    char credentials[PP_GCP_CREDENTIALS_MAX]; /* a service-account key, JSON */
    char key_file[PATH_MAX];                  /* GOOGLE_APPLICATION_CREDENTIALS */
    char project[128];
    char zone[64];
    char image[512];
    char machine_type[PP_INSTANCE_TYPE_NAME_MAX];
    char machine_types[4096];
    char network[512];
    char subnetwork[512];
    char disk_type[64];
    int disable_cvm;
    char confidential_type[16];
    int64_t root_volume_gib;
    int use_public_ip;
    char tags[4096];
    char metadata_host[256];
    char compute_endpoint[512];
    char crm_endpoint[512];
    char ca_bundle[PATH_MAX];
    double rate;
    int64_t burst;
    int64_t max_attempts;
    uint64_t backoff_base_ms, backoff_max_ms;
    uint64_t attempt_timeout_ms, request_timeout_ms;
    uint64_t op_timeout_ms, ip_wait_ms, poll_ms;
} pp__gcp_config_t;

extern const pp_settings_table_t pp__gcp_settings;

/* A service-account key, as Google's tools write it. */
typedef struct pp__gcp_key_s {
    char client_email[256];
    char key_id[128];
    char token_uri[512];
    void *pkey; /* EVP_PKEY */
} pp__gcp_key_t;

typedef struct pp__gcp_tag_s {
    char key[256];
    char value[256];
    char key_id[128];   /* tagKeys/N, once resolved */
    char value_id[128]; /* tagValues/N */
} pp__gcp_tag_t;

/* What init derives from the settings. */
typedef struct pp__gcp_derived_s {
    enum pp__gcp_cvm cvm;
    char compute[600];  /* <endpoint>projects/<p>/zones/<z>/, ends in '/' */
    char endpoint[520]; /* <endpoint>, ends in '/' */
    char crm[520];      /* resource manager endpoint, ends in '/' */
    char metadata[300]; /* http://<host> */
    char image[600];    /* the source image, as the insert takes it */
    char network[600];
    char subnetwork[600];
    char node_label[64];
    char (*types)[PP_INSTANCE_TYPE_NAME_MAX];
    size_t ntypes;
    pp__gcp_tag_t *tags;
    size_t ntags;
    pp__gcp_key_t key; /* key.pkey NULL: the metadata server's token */
} pp__gcp_derived_t;

/* Checks the settings across each other and derives what the calls need;
 * the first bad one is named in `err`. pp__gcp_derived_free() after a
 * failure too. */
int pp__gcp_derive(const pp__gcp_config_t *c, const char *node, pp__gcp_derived_t *d,
                   pp_error_t *err);
void pp__gcp_derived_free(pp__gcp_derived_t *d);

/* The confidential technology `name` names (SEV, SEV_SNP, TDX), -EINVAL. */
int pp__gcp_cvm_parse(const char *name, enum pp__gcp_cvm *out);
const char *pp__gcp_cvm_name(enum pp__gcp_cvm t);
/* Whether machine type `type` can run confidential technology `t`
 * (Google's supported configurations: SEV on C2D, C3D, C4D and N2D;
 * SEV_SNP on N2D; TDX on C3 standard and a3-highgpu-1g). */
int pp__gcp_cvm_supported(enum pp__gcp_cvm t, const char *type);

/* A label value (at most 63 of [a-z0-9_-]) for `in`: itself when it fits,
 * else its sanitised first 54 bytes, '-', and 8 hex digits of its SHA-256. */
int pp__gcp_label_value(const char *in, char out[64]);
/* A UUID derived from the parts (SHA-256), for `requestId`. */
int pp__gcp_request_id(const char *kind, const char *node, const char *sandbox, char out[37]);
/* A random UUID. */
int pp__gcp_random_id(char out[37]);

/* --- responses (parse.c): bounded; -EBADMSG for anything malformed ------------- */

typedef struct pp__gcp_error_info_s {
    long http;       /* error.code */
    char status[64]; /* error.status: PERMISSION_DENIED, ... */
    char reason[64]; /* error.errors[0].reason: rateLimitExceeded, ... */
    char message[384];
} pp__gcp_error_info_t;

typedef struct pp__gcp_operation_s {
    char name[PP_GCP_NAME_MAX + 16];
    char status[16];     /* PENDING, RUNNING, DONE */
    char error_code[96]; /* the first error's code, "" if none */
    char error_message[384];
    long http_error;
    char target[PP_GCP_NAME_MAX]; /* the last part of targetLink */
} pp__gcp_operation_t;

typedef struct pp__gcp_instance_s {
    char name[PP_GCP_NAME_MAX];
    char id[24];
    char status[24];
    char private_ip[48];
    char public_ip[48];
    char node[256];    /* the node label */
    char sandbox[256]; /* from the metadata; else the sandbox label */
    char machine_type[PP_INSTANCE_TYPE_NAME_MAX];
} pp__gcp_instance_t;

typedef struct pp__gcp_instances_s {
    pp__gcp_instance_t *items;
    size_t n;
    char next_page[1024];
} pp__gcp_instances_t;

typedef struct pp__gcp_token_s {
    char *access_token; /* heap; wiped by pp__gcp_token_free() */
    long expires_in;
} pp__gcp_token_t;

typedef struct pp__gcp_tag_entry_s {
    char name[128]; /* tagKeys/N or tagValues/N */
    char short_name[256];
} pp__gcp_tag_entry_t;

typedef struct pp__gcp_tag_list_s {
    pp__gcp_tag_entry_t *items;
    size_t n;
    char next_page[1024];
} pp__gcp_tag_list_t;

int pp__gcp_parse_error(const char *body, size_t len, pp__gcp_error_info_t *out);
int pp__gcp_parse_operation(const char *body, size_t len, pp__gcp_operation_t *out);
int pp__gcp_parse_instance(const char *body, size_t len, pp__gcp_instance_t *out);
int pp__gcp_parse_instances(const char *body, size_t len, pp__gcp_instances_t *out);
void pp__gcp_instances_free(pp__gcp_instances_t *l);
int pp__gcp_parse_machine_type(const char *body, size_t len, pp_instance_type_t *out);
/* images.get: diskSizeGb. */
int pp__gcp_parse_image(const char *body, size_t len, unsigned *disk_gib);
int pp__gcp_parse_token(const char *body, size_t len, pp__gcp_token_t *out);
void pp__gcp_token_free(pp__gcp_token_t *t);
/* The token endpoint's refusal: {"error": ..., "error_description": ...}. */
int pp__gcp_parse_oauth_error(const char *body, size_t len, char *code, size_t codelen, char *desc,
                              size_t desclen);
/* tagKeys.list (`tagKeys`) or tagValues.list (`tagValues`). */
int pp__gcp_parse_tags(const char *body, size_t len, const char *field, pp__gcp_tag_list_t *out);
void pp__gcp_tags_free(pp__gcp_tag_list_t *l);
/* A service-account key file; the private key is parsed with OpenSSL. */
int pp__gcp_parse_key(const char *json, size_t len, pp__gcp_key_t *out, pp_error_t *err);
void pp__gcp_key_free(pp__gcp_key_t *k);

/* --- errors (errors.c): the one translation ------------------------------------ */

typedef pp_http_error_class_t pp__gcp_error_class_t;

/* From an error reason, status or operation error code (any may be NULL)
 * and the HTTP status. */
void pp__gcp_error_classify(const char *code, long http_status, pp__gcp_error_class_t *out);
/* The HTTP client's hook: retries rateLimitExceeded and transient codes. */
pp_http_verdict_t pp__gcp_http_classify(const pp_http_response_t *resp, void *arg);

/* --- calls (compute.c, auth.c) --------------------------------------------------- */

typedef struct pp__gcp_state_s pp__gcp_state_t;

/* `status` 0: `body` is the answer. Otherwise `err` holds the translated
 * error and `code` the cloud's reason ("" when there is none). */
typedef void (*pp__gcp_call_cb)(int status, const char *body, size_t len, const char *code,
                                const pp_error_t *err, void *data);

/* An authorised call to `url` (JSON `body` or NULL); `what` names it in
 * errors ("compute `instances.insert`"). A long poll (operations.wait)
 * passes its attempt timeout. */
int pp__gcp_call(pp__gcp_state_t *st, const char *method, const char *url, const char *body,
                 const char *what, uint64_t attempt_timeout_ms, pp__gcp_call_cb cb, void *data);

/* The access token (auth.c). */
/* Sets the token cache's fetch (once); the bearer calls then use it. */
void pp__gcp_auth_prepare(pp__gcp_state_t *st);
void pp__gcp_auth_clear(pp__gcp_state_t *st);
/* The signed JWT assertion for `key` at `now` (heap, NUL-terminated). */
int pp__gcp_jwt(const pp__gcp_key_t *key, const char *scope, time_t now, char **out,
                pp_error_t *err);

/* --- the provider (gcp.c) --------------------------------------------------------- */

typedef struct pp__gcp_lazy_s {
    int state; /* 0 not loaded, 1 loading, 2 loaded */
    pp_token_waiter_t *waiters;
} pp__gcp_lazy_t;

typedef struct pp__gcp_image_entry_s {
    struct pp__gcp_image_entry_s *next;
    char image[600];
    unsigned disk_gib;
    pp__gcp_lazy_t lazy;
} pp__gcp_image_entry_t;

struct pp__gcp_state_s {
    pp__gcp_config_t cfg; /* first: the settings' offsets are into it */
    pp_provider_t *p;
    pp__gcp_derived_t d;
    pp_http_t *http;
    pp_token_cache_t tok;
    char *access_token;
    pp_bearer_t bearer;
    pp_instance_type_t *specs;
    size_t nspecs;
    pp__gcp_lazy_t specs_lazy;
    pp__gcp_lazy_t tags_lazy;
    pp__gcp_image_entry_t *images;
    unsigned ops_in_flight;
};

#endif
