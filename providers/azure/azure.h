/* The Azure provider's internals, shared by its files, the tests and the
 * fuzz target.
 *
 * Pod VMs are Azure virtual machines made through Resource Manager's REST
 * API (JSON, jansson) over providers/http, with an Azure AD (Entra ID)
 * bearer token. Each VM `<name>` comes with a NIC `<name>-net`, an OS disk
 * `<name>-disk` and, with USE_PUBLIC_IP, a public address `<name>-ip`, all
 * deleted with the VM (deleteOption). Resources are named after the
 * instance name, so a retried create finds what the first made; each is
 * tagged with the node and the sandbox id (PP_AZURE_TAG_*) and TAGS. */
#ifndef PP_PROVIDERS_AZURE_AZURE_H
#define PP_PROVIDERS_AZURE_AZURE_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "providers/http/errors.h"
#include "providers/http/http.h"
#include "providers/http/token.h"
#include "providers/instance_type.h"
#include "providers/provider.h"
#include "util/settings.h"

#define PP_AZURE_COMPUTE_API   "2024-03-01"
#define PP_AZURE_NETWORK_API   "2024-01-01"
#define PP_AZURE_IMDS_API      "2018-02-01"
#define PP_AZURE_RESOURCE      "https://management.azure.com/"
#define PP_AZURE_SCOPE         "https://management.azure.com/.default"
#define PP_AZURE_TAG_NODE      "peerpod-node"
#define PP_AZURE_TAG_SANDBOX   "peerpod-sandbox-id"
#define PP_AZURE_USER_DATA_MAX 49152 /* raw bytes: 64 KiB of base64, Azure's limit */
#define PP_AZURE_JSON_MAX      ((size_t)8 << 20)
#define PP_AZURE_MAX_ITEMS     5000 /* items read from one list */

extern const struct pp_provider_ops pp_provider_azure_ops;

/* --- settings (config.c) ------------------------------------------------------- */

typedef struct pp__azure_config_s {
    char client_id[128];
    char client_secret[1024];
    char tenant_id[128];
    char subscription_id[128];
    char region[64];
    char resource_group[91];
    char instance_size[PP_INSTANCE_TYPE_NAME_MAX];
    char instance_sizes[4096];
    char subnet_id[512];
    char nsg_id[512];
    char image_id[512];
    char ssh_username[64];
    char ssh_key_path[PATH_MAX];
    int disable_cvm;
    int enable_secure_boot;
    int use_public_ip;
    int root_volume_size;
    char tags[2048];
    char federated_token_file[PATH_MAX];
    char authority_host[512];
    char arm_endpoint[512];
    char imds_endpoint[512];
    char ca_bundle[PATH_MAX];
    double rate;
    int burst;
    int max_attempts;
    int64_t backoff_base_ms, backoff_max_ms;
    int64_t attempt_timeout_ms, request_timeout_ms;
    int64_t poll_ms, operation_timeout_ms;
} pp__azure_config_t;

extern const pp_settings_table_t pp__azure_settings;

typedef struct pp__azure_tag_s {
    char key[129];
    char value[257];
} pp__azure_tag_t;

enum pp__azure_cred_mode {
    PP_AZURE_CREDS_SECRET,   /* client secret */
    PP_AZURE_CREDS_WORKLOAD, /* federated token file (workload identity) */
    PP_AZURE_CREDS_MANAGED,  /* managed identity through IMDS */
};

/* What is derived from the settings once they are read. */
typedef struct pp__azure_derived_s {
    enum pp__azure_cred_mode cred_mode;
    char (*sizes)[PP_INSTANCE_TYPE_NAME_MAX];
    size_t nsizes;
    pp__azure_tag_t *tags;
    size_t ntags;
    char *ssh_key; /* the public key's text, read or made at start */
    char arm[512]; /* the endpoints without a trailing slash */
    char authority[512];
    char imds[512];
} pp__azure_derived_t;

/* Checks the settings (already loaded into `c`) and derives the rest; the
 * first bad or missing one is named in `err`. Free with
 * pp__azure_derived_free() (also after a failure). */
int pp__azure_config_check(const pp__azure_config_t *c, pp__azure_derived_t *d, pp_error_t *err);
void pp__azure_derived_free(pp__azure_derived_t *d);

/* --- responses (parse.c): bounded; each returns 0 or -EBADMSG ------------------ */

typedef struct pp__azure_token_s {
    char *access_token; /* malloc'd, cleared when freed */
    int64_t expires_in; /* seconds */
} pp__azure_token_t;

/* The token endpoint's or IMDS's answer ("expires_in" as a number or a
 * string of digits). */
int pp__azure_parse_token(const char *json, size_t len, pp__azure_token_t *out);
void pp__azure_token_free(pp__azure_token_t *t);

typedef struct pp__azure_error_info_s {
    char code[128];
    char message[384];
} pp__azure_error_info_t;

/* ARM's {"error": {"code", "message"}} and Azure AD's {"error",
 * "error_description"}. */
int pp__azure_parse_error(const char *json, size_t len, pp__azure_error_info_t *out);

/* An async operation's status: "InProgress", "Succeeded", "Failed",
 * "Canceled"; `err` holds its error when it has one. */
int pp__azure_parse_operation(const char *json, size_t len, char *status, size_t statuslen,
                              pp__azure_error_info_t *err);

typedef struct pp__azure_vm_s {
    char name[80];
    char state[32]; /* provisioningState */
    char nic_id[512];
    char node[257];
    char sandbox_id[257];
} pp__azure_vm_t;

typedef struct pp__azure_vms_s {
    pp__azure_vm_t *items;
    size_t n;
    char next_link[2048];
} pp__azure_vms_t;

/* One VM, or a page of a list ({"value": [...], "nextLink"}). */
int pp__azure_parse_vm(const char *json, size_t len, pp__azure_vm_t *out);
int pp__azure_parse_vms(const char *json, size_t len, pp__azure_vms_t *out);
void pp__azure_vms_free(pp__azure_vms_t *l);

typedef struct pp__azure_addr_s {
    char id[512];     /* the NIC's or the public address's ARM id */
    char ip[64];      /* its private (NIC) or public address; "" if none yet */
    char pip_id[512]; /* NIC: its public address, if any */
} pp__azure_addr_t;

typedef struct pp__azure_addrs_s {
    pp__azure_addr_t *items;
    size_t n;
    char next_link[2048];
} pp__azure_addrs_t;

/* A NIC or a public IP address, or a page of either. */
int pp__azure_parse_addr(const char *json, size_t len, pp__azure_addr_t *out);
int pp__azure_parse_addrs(const char *json, size_t len, pp__azure_addrs_t *out);
void pp__azure_addrs_free(pp__azure_addrs_t *l);

/* Resource Manager's VM sizes of a region. */
int pp__azure_parse_sizes(const char *json, size_t len, pp_instance_type_t **out, size_t *n);

/* --- credentials (creds.c) ------------------------------------------------------- */

typedef struct pp__azure_state_s pp__azure_state_t;
typedef void (*pp__azure_ready_cb)(int status, const pp_error_t *err, void *data);

typedef struct pp__azure_waiter_s {
    struct pp__azure_waiter_s *next;
    pp__azure_ready_cb cb;
    void *data;
} pp__azure_waiter_t;

typedef struct pp__azure_creds_s {
    char *token;    /* the bearer token, cleared when dropped */
    time_t expires; /* of the token just fetched */
    pp_token_cache_t cache;
} pp__azure_creds_t;

/* 1: the token is fresh, `w->cb` will not be called. 0: a fetch runs and
 * `w->cb` fires once with its result, never from inside this call
 * (providers/http/token.h). Negative: none could start. */
int pp__azure_creds_ensure(pp__azure_state_t *st, pp_token_waiter_t *w);
/* After an answer that says the token expired or is invalid. */
void pp__azure_creds_invalidate(pp__azure_state_t *st);
void pp__azure_creds_clear(pp__azure_creds_t *c);

/* --- Resource Manager calls (arm.c) --------------------------------------------- */

typedef struct pp__azure_answer_s {
    long status; /* HTTP */
    const char *body;
    size_t len;
    const pp_http_response_t *resp; /* for headers */
} pp__azure_answer_t;

/* `status` 0: a 2xx answer (`ans`). Otherwise `err` holds the translated
 * error (gRPC status set), and `code` ARM's error code ("" if none); -ENOENT
 * for 404 and 204 of a GET. */
typedef void (*pp__azure_call_cb)(int status, const pp__azure_answer_t *ans, const char *code,
                                  const pp_error_t *err, void *data);

/* One ARM request: `path` below the ARM endpoint (query optional; the
 * api-version is added) or a full URL on it (a nextLink, an operation).
 * `body` (may be NULL) is taken over. */
int pp__azure_arm(pp__azure_state_t *st, const char *method, const char *path,
                  const char *api_version, json_t *body, pp__azure_call_cb cb, void *data);

/* A PUT or DELETE followed to its end: its async operation (or Location)
 * polled until it succeeds or fails. 0: done (a DELETE of what is gone
 * included); else the error, with the operation's code. */
typedef void (*pp__azure_done_cb)(int status, const char *code, const pp_error_t *err, void *data);
int pp__azure_arm_wait(pp__azure_state_t *st, const char *method, const char *path,
                       const char *api_version, json_t *body, pp__azure_done_cb cb, void *data);

/* The one translation of an ARM or Azure AD error code into ours, the
 * HTTP status deciding for a code it lacks (providers/http/errors.h). */
void pp__azure_error_classify(const char *code, long http_status, pp_http_error_class_t *out);
pp_http_verdict_t pp__azure_http_classify(const pp_http_response_t *resp, void *arg);

/* Whether `url` is on the ARM endpoint `arm` (scheme, host and port), so
 * that the bearer token goes nowhere else. */
int pp__azure_same_origin(const char *arm, const char *url);

/* --- the provider (azure.c) ------------------------------------------------------ */

typedef struct pp__azure_create_s pp__azure_create_t;

/* The settings come first: the settings table's offsets are into this. */
struct pp__azure_state_s {
    pp__azure_config_t cfg;
    pp_provider_t *p;
    pp__azure_derived_t d;
    pp_http_t *http;
    pp__azure_creds_t creds;
    pp_instance_type_t *specs;
    size_t nspecs;
    int specs_state; /* 0 not loaded, 1 loading, 2 loaded */
    pp__azure_waiter_t *specs_waiters;
    pp__azure_create_t *creates; /* in flight, for joining twins */
    unsigned ops_in_flight;
};

/* The VM name of an instance id: a VM name (what create returns), or an ARM
 * VM id of this subscription and resource group; NULL when `id` is
 * neither. */
const char *pp__azure_vm_name(const pp__azure_config_t *c, const char *id, char *out,
                              size_t outlen);

#endif
