/* The IBM Cloud VPC provider's internals, shared by its files and the tests.
 *
 * Pod VMs are VPC virtual server instances made with the VPC REST API
 * (`version` and `generation=2` on every call) over providers/http,
 * authorised with an IAM access token: from an API key, or from a trusted
 * profile and the compute resource token file (a projected service account
 * token, read anew at every exchange).
 *
 * The instance name is the idempotency key (the VPC API has none): names
 * are unique in the VPC, so a create that meets "name not unique" looks the
 * instance up and takes it if it is this sandbox's. Which sandbox and node
 * an instance belongs to is written where it is made, atomically: as user
 * tags of its boot volume (PP_IBM_TAG_NODE, PP_IBM_TAG_SANDBOX), read back
 * for that check and for the list of the node's instances. Once it has an
 * address the instance gets upstream's user tags through the Global Tagging
 * API (`coco-pod-vm:<cluster>` and TAGS), and the node's and the sandbox's.
 * A create that fails after the instance may exist deletes it (its floating
 * IP first). */
#ifndef PP_PROVIDERS_IBMCLOUD_IBMCLOUD_H
#define PP_PROVIDERS_IBMCLOUD_IBMCLOUD_H

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

#define PP_IBM_USER_DATA_MAX  ((size_t)64 << 10) /* the VPC API's limit */
#define PP_IBM_VPC_VERSION    "2025-06-10"       /* the API behaviour we speak */
#define PP_IBM_TAG_NODE       "peerpod-node:"
#define PP_IBM_TAG_SANDBOX    "peerpod-sandbox:"
#define PP_IBM_TAG_CLUSTER    "coco-pod-vm:" /* upstream's */
#define PP_IBM_TAG_MAX        128            /* IBM's limit on a tag */
#define PP_IBM_JSON_MAX       ((size_t)8 << 20)
#define PP_IBM_MAX_ITEMS      1000 /* items read from one response */
#define PP_IBM_ID_MAX         80
#define PP_IBM_NAME_MAX       64
#define PP_IBM_MAX_NICS       5
#define PP_IBM_BOOT_PROFILE   "general-purpose"
#define PP_IBM_GRANT_APIKEY   "urn:ibm:params:oauth:grant-type:apikey"
#define PP_IBM_GRANT_CR_TOKEN "urn:ibm:params:oauth:grant-type:cr-token"

extern const struct pp_provider_ops pp_provider_ibmcloud_ops;

/* --- settings (config.c) ------------------------------------------------------ */

/* Filled from the settings table (pp__ibm_settings) before init. */
typedef struct pp__ibm_config_s {
    char api_key[512];        /* secret */
    char iam_profile_id[256]; /* secret, as upstream marks it */
    char cr_token_file[PATH_MAX];
    char iam_url[512];
    char vpc_url[512];
    char tagging_url[512];
    char resource_group[128];
    char profile[PP_INSTANCE_TYPE_NAME_MAX];
    char profiles[4096];
    char zone[64];
    char subnet[128];
    char key_id[128];
    char vpc_id[128];
    char cluster_id[128];
    int disable_cvm;
    char secondary_subnet[128];
    char secondary_sg[128];
    char images[4096];
    char tags[4096];
    char sg_ids[4096];
    char dh_ids[4096];
    char dhg_ids[4096];
    int use_public_ip;
    char ca_bundle[PATH_MAX];
    double rate;
    int64_t burst;
    int64_t max_attempts;
    uint64_t backoff_base_ms, backoff_max_ms;
    uint64_t attempt_timeout_ms, request_timeout_ms;
    uint64_t create_timeout_ms, delete_timeout_ms, poll_ms;
} pp__ibm_config_t;

extern const pp_settings_table_t pp__ibm_settings;

/* What a pod VM runs as. */
enum pp__ibm_mode { PP_IBM_PLAIN, PP_IBM_TDX, PP_IBM_SE };

/* An instance profile name, read by IBM's naming rule
 * <class letters><architecture letter><generation>[features]-<vCPUs>x<GiB>...:
 * architecture 'x' (amd64), 'z' (s390x), 'p' (ppc64le); feature 'c'
 * confidential computing (TDX from generation 3), 'e' Secure Execution. */
typedef struct pp__ibm_profile_name_s {
    char arch[16]; /* amd64, s390x, ppc64le */
    int tdx;       /* can run TDX */
    int se;        /* a Secure Execution profile: runs only SE images */
} pp__ibm_profile_name_t;

/* -EINVAL when `name` does not follow the rule. */
int pp__ibm_profile_name(const char *name, pp__ibm_profile_name_t *out);
/* 0 when a profile so named can run `mode`; else -EINVAL with `err` saying
 * why (naming `setting`). */
int pp__ibm_profile_fits(const char *setting, const char *name, enum pp__ibm_mode mode,
                         pp_error_t *err);
const char *pp__ibm_mode_name(enum pp__ibm_mode m);

/* What init derives from the settings. */
typedef struct pp__ibm_derived_s {
    char iam[600];     /* the token endpoint, ending in /identity/token */
    char vpc[600];     /* the VPC API base, no trailing '/' (…/v1) */
    char tagging[600]; /* the Global Tagging API base, no trailing '/' */
    int cvm;           /* !DISABLECVM */
    char (*profiles)[PP_INSTANCE_TYPE_NAME_MAX];
    size_t nprofiles;
    char (*images)[PP_IBM_ID_MAX];
    size_t nimages;
    char (*sgs)[PP_IBM_ID_MAX];
    size_t nsgs;
    char (*dhs)[PP_IBM_ID_MAX];
    size_t ndhs;
    char (*dhgs)[PP_IBM_ID_MAX];
    size_t ndhgs;
    char (*tags)[PP_IBM_TAG_MAX + 1]; /* upstream's: the cluster's, then TAGS */
    size_t ntags;
    char node_tag[PP_IBM_TAG_MAX + 1];
} pp__ibm_derived_t;

/* Checks the settings across each other and derives what the calls need;
 * the first bad one is named in `err`. pp__ibm_derived_free() after a
 * failure too. */
int pp__ibm_derive(const pp__ibm_config_t *c, const char *node, pp__ibm_derived_t *d,
                   pp_error_t *err);
void pp__ibm_derived_free(pp__ibm_derived_t *d);

/* The node's tag: PP_IBM_TAG_NODE and the node name when it is a valid tag
 * value, else `sha256-` and 32 hex digits of its hash. */
void pp__ibm_node_tag(const char *node, char out[PP_IBM_TAG_MAX + 1]);
/* Whether `sandbox_id` can be kept as a tag value exactly (IBM keeps tags in
 * lowercase): 1 to 112 of [a-z0-9_.-]. */
int pp__ibm_sandbox_storable(const char *sandbox_id);
/* Whether `id` has the form of a VPC instance id (`0717_` and a UUID). */
int pp__ibm_instance_id_valid(const char *id);

/* --- answers (parse.c): bounded; -EBADMSG for anything malformed ------------- */

typedef struct pp__ibm_error_info_s {
    char code[96]; /* errors[0].code */
    char message[384];
    char target[64]; /* errors[0].target.name */
} pp__ibm_error_info_t;

typedef struct pp__ibm_token_s {
    char *access_token; /* heap; wiped by pp__ibm_token_free() */
    long expires_in;
    long long expiration; /* unix time, 0 when absent */
} pp__ibm_token_t;

typedef struct pp__ibm_nic_s {
    char id[PP_IBM_ID_MAX];
    char address[48]; /* "" or 0.0.0.0 while none is assigned */
    char fip_id[2][PP_IBM_ID_MAX];
    char fip_address[2][48];
    unsigned nfips;
} pp__ibm_nic_t;

typedef struct pp__ibm_instance_s {
    char id[PP_IBM_ID_MAX];
    char crn[256];
    char name[PP_IBM_NAME_MAX];
    char status[24];
    char reason_code[64]; /* status_reasons[0] */
    char reason_message[384];
    char volume_id[PP_IBM_ID_MAX];       /* the boot volume */
    pp__ibm_nic_t nics[PP_IBM_MAX_NICS]; /* the primary first */
    unsigned nnics;
} pp__ibm_instance_t;

typedef struct pp__ibm_instances_s {
    pp__ibm_instance_t *items;
    size_t n;
    char next_start[512]; /* `start` of the next page, "" on the last */
} pp__ibm_instances_t;

typedef struct pp__ibm_profile_s {
    pp_instance_type_t spec;
    char arch[16];
    int modes_listed; /* confidential_compute_modes.values was there */
    int tdx;          /* ... and held "tdx" */
} pp__ibm_profile_t;

typedef struct pp__ibm_image_s {
    char id[PP_IBM_ID_MAX];
    char arch[16];
    char os[128];
    char status[24];
    int se; /* a Secure Execution image (the Hyper Protect family) */
} pp__ibm_image_t;

typedef struct pp__ibm_owner_s {
    char sandbox[PP_IBM_TAG_MAX + 1];
    char node_tag[PP_IBM_TAG_MAX + 1];
} pp__ibm_owner_t;

/* IAM's answer to a token request, or its refusal ({errorCode, errorMessage}). */
int pp__ibm_parse_token(const char *body, size_t len, pp__ibm_token_t *out);
void pp__ibm_token_free(pp__ibm_token_t *t);
int pp__ibm_parse_iam_error(const char *body, size_t len, char *code, size_t codelen, char *msg,
                            size_t msglen);
/* The VPC API's and the tagging API's errors: {errors: [{code, message, target}]}. */
int pp__ibm_parse_error(const char *body, size_t len, pp__ibm_error_info_t *out);
int pp__ibm_parse_instance(const char *body, size_t len, pp__ibm_instance_t *out);
int pp__ibm_parse_instances(const char *body, size_t len, pp__ibm_instances_t *out);
void pp__ibm_instances_free(pp__ibm_instances_t *l);
/* GET /instances/{id}/network_interfaces, with their floating IPs. */
int pp__ibm_parse_nics(const char *body, size_t len, pp__ibm_instance_t *out);
int pp__ibm_parse_profile(const char *body, size_t len, pp__ibm_profile_t *out);
int pp__ibm_parse_image(const char *body, size_t len, pp__ibm_image_t *out);
/* A volume's user tags: which sandbox and node it was made for ("" when
 * not ours). */
int pp__ibm_parse_volume_owner(const char *body, size_t len, pp__ibm_owner_t *out);
/* A floating IP: id and address. */
int pp__ibm_parse_fip(const char *body, size_t len, char id[PP_IBM_ID_MAX], char address[48]);
/* A dedicated host's or group's zone. */
int pp__ibm_parse_zone(const char *body, size_t len, char *zone, size_t zonelen);
/* The tagging API's results: 0 when the one resource was tagged, -EIO with
 * its message when it says is_error. */
int pp__ibm_parse_tag_results(const char *body, size_t len, char *msg, size_t msglen);

/* --- errors (errors.c): the one translation ------------------------------------ */

void pp__ibm_error_classify(const char *code, long http_status, pp_http_error_class_t *out);
/* The HTTP client's hook: retries throttling and transient codes. */
pp_http_verdict_t pp__ibm_http_classify(const pp_http_response_t *resp, void *arg);
/* Whether `code` says the name is taken. */
int pp__ibm_code_name_taken(const char *code);

/* --- calls (iam.c) ----------------------------------------------------- */

typedef struct pp__ibm_state_s pp__ibm_state_t;

/* `status` 0: `body` is the answer (HTTP 2xx; `http` the status). Otherwise
 * `err` holds the translated error and `code` the cloud's code ("" when
 * there is none). */
typedef pp_bearer_cb pp__ibm_call_cb;

/* An authorised call: `url` is complete (the VPC's carries version and
 * generation, pp__ibm_vpc_url()); JSON `body` or NULL; `what` names it in
 * errors and metrics ("vpc `instances.create`"). */
int pp__ibm_call(pp__ibm_state_t *st, const char *method, const char *url, const char *body,
                 const char *what, pp__ibm_call_cb cb, void *data);
/* The URL of VPC path `path` (starting with '/') with `query` (NULL or
 * "a=b&c=d", already encoded) and version and generation. -ENAMETOOLONG. */
int pp__ibm_vpc_url(const pp__ibm_state_t *st, const char *path, const char *query, char *out,
                    size_t outlen);

void pp__ibm_auth_clear(pp__ibm_state_t *st);
/* The token request's form body for the settings (heap; the caller wipes
 * it): the API key grant, or the trusted profile grant with the compute
 * resource token read from `cr_token_file` now. */
int pp__ibm_token_form(const pp__ibm_config_t *c, char **out, pp_error_t *err);

/* --- the provider (ibmcloud.c, catalog.c) ------------------------------------------ */

typedef struct pp__ibm_lazy_s {
    int state; /* 0 not loaded, 1 loading, 2 loaded */
    pp_token_waiter_t *waiters;
} pp__ibm_lazy_t;

/* What the cloud said of the settings' profiles, images and hosts, loaded
 * once at the first create (and again after a failed load). */
typedef struct pp__ibm_catalog_s {
    pp__ibm_lazy_t lazy;
    pp__ibm_profile_t *profiles; /* one per allowed profile */
    size_t nprofiles;
    pp__ibm_image_t *images; /* IBMCLOUD_PODVM_IMAGE_ID's that exist */
    size_t nimages;
    char dh[PP_IBM_ID_MAX];  /* the dedicated host in the zone, or "" */
    char dhg[PP_IBM_ID_MAX]; /* the group, or "" */
    size_t step;             /* while loading */
} pp__ibm_catalog_t;

/* An image named by a pod's annotation, looked up once. */
typedef struct pp__ibm_image_entry_s {
    struct pp__ibm_image_entry_s *next;
    pp__ibm_image_t img;
    pp__ibm_lazy_t lazy;
} pp__ibm_image_entry_t;

struct pp__ibm_state_s {
    pp__ibm_config_t cfg; /* first: the settings' offsets are into it */
    pp_provider_t *p;
    pp__ibm_derived_t d;
    pp_http_t *http;
    pp_token_cache_t tok;
    char *access_token;
    pp_bearer_t bearer;
    pp__ibm_catalog_t cat;
    pp__ibm_image_entry_t *images;
    void *creates; /* the creates under way (ibmcloud.c) */
    unsigned ops_in_flight;
};

/* Selection, once the catalog is there: the image for `profile` in `mode`
 * (the first of IBMCLOUD_PODVM_IMAGE_ID of the profile's architecture, a
 * Secure Execution one exactly when the mode is SE). NULL with `err` set
 * when none fits. */
const pp__ibm_image_t *pp__ibm_select_image(const pp__ibm_catalog_t *cat,
                                            const pp__ibm_profile_t *profile,
                                            enum pp__ibm_mode mode, pp_error_t *err);
/* Whether `img` can boot on `profile` in `mode`: 0, or -EINVAL with `err`. */
int pp__ibm_image_fits(const pp__ibm_image_t *img, const pp__ibm_profile_t *profile,
                       enum pp__ibm_mode mode, pp_error_t *err);
/* The mode the settings ask of a profile of architecture `arch`. */
enum pp__ibm_mode pp__ibm_mode_for(const pp__ibm_derived_t *d, const char *arch);

#endif
