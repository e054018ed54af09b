/* The guest components' configuration files, as upstream's guest
 * components read them, so the aa.toml and cdh.toml that initdata carries
 * (process-user-data writes them to /run/peerpod/) work unchanged.
 *
 * aa.toml:
 *     [token_configs.kbs]
 *     url = "https://kbs:8080"          # required for GetToken
 *     cert = """-----BEGIN CERTIFICATE-----..."""   # the KBS's CA, PEM
 *     tee_key_algorithm = "ECDH-ES+A256KW-P256"    # or -P521, RSA-OAEP-256
 *     [eventlog_config]
 *     init_pcr = 17                     # 0..23
 *     enable_eventlog = false
 *     [log]
 *     level = "info"
 *
 * cdh.toml:
 *     socket = "unix:///run/confidential-containers/cdh.sock"
 *     skip_sealed_secret_verification = false
 *     [kbc]
 *     name = "cc_kbc"                   # required: cc_kbc or offline_fs_kbc
 *     url = "https://kbs:8080"          # required for cc_kbc
 *     kbs_cert = """..."""
 *     [aa]
 *     aa_socket = "unix:///run/confidential-containers/attestation-agent/attestation-agent.sock"
 *     [[credentials]]                  # fetched at start, written there
 *     resource_uri = "kbs:///default/credential/x"
 *     path = "/run/confidential-containers/cdh/kms-credential/x.json"  # under /run
 *     [image] ...                      # image pulls: accepted, not served here
 *
 * Keys upstream ignores are ignored here too, with a warning naming them
 * (a misspelt key then shows). A value of the wrong type, out of range, or
 * a required one missing fails with `err` naming the key as written in the
 * file: "`token_configs.kbs.url`: expected a string, found an integer". */
#ifndef GUEST_CONFIG_H
#define GUEST_CONFIG_H

#include <stddef.h>

#include "util/error.h"

#define GUEST_AA_SOCKET  "/run/confidential-containers/attestation-agent/attestation-agent.sock"
#define GUEST_CDH_SOCKET "/run/confidential-containers/cdh.sock"
#define GUEST_PCR_MAX    23

/* The TEE key the KBS wraps resources to (`tee_key_algorithm`). */
typedef enum guest_key_alg_e {
    GUEST_KEY_EC_P256, /* "ECDH-ES+A256KW-P256", the default */
    GUEST_KEY_EC_P521, /* "ECDH-ES+A256KW-P521" */
    GUEST_KEY_RSA,     /* "RSA-OAEP-256" */
} guest_key_alg_t;

typedef struct guest_kbs_cfg_s {
    char *url;  /* http(s)://host[:port][/prefix], no trailing slash; NULL: none */
    char *cert; /* PEM of the CA(s) to trust for the KBS; NULL: the system's */
    guest_key_alg_t key_alg;
} guest_kbs_cfg_t;

typedef struct guest_aa_cfg_s {
    guest_kbs_cfg_t kbs;
    int coco_as; /* [token_configs.coco_as] given (not served here) */
    unsigned init_pcr;
    int eventlog;
    char log_level[16];
} guest_aa_cfg_t;

typedef struct guest_cred_s {
    char *resource_uri;
    char *path;
} guest_cred_t;

typedef enum guest_kbc_e { GUEST_KBC_CC, GUEST_KBC_OFFLINE_FS } guest_kbc_t;

typedef struct guest_cdh_cfg_s {
    char *socket; /* a path (the `unix://` prefix removed) */
    guest_kbc_t kbc;
    guest_kbs_cfg_t kbs;
    char *aa_socket; /* a path */
    int skip_verification;
    guest_cred_t *creds;
    size_t ncreds;
    char log_level[16];
} guest_cdh_cfg_t;

/* Defaults as upstream's, without a file. */
void guest_aa_cfg_init(guest_aa_cfg_t *c);
void guest_cdh_cfg_init(guest_cdh_cfg_t *c);

/* Parses a file's text into `c` (initialised first). 0 or -EINVAL,
 * -ENOMEM with `err`; `c` is left initialised either way. */
int guest_aa_cfg_parse(const char *text, size_t len, guest_aa_cfg_t *c, pp_error_t *err);
int guest_cdh_cfg_parse(const char *text, size_t len, guest_cdh_cfg_t *c, pp_error_t *err);

/* Reads and parses `path`; errors start with the path. */
int guest_aa_cfg_load(const char *path, guest_aa_cfg_t *c, pp_error_t *err);
int guest_cdh_cfg_load(const char *path, guest_cdh_cfg_t *c, pp_error_t *err);

void guest_aa_cfg_fini(guest_aa_cfg_t *c);
void guest_cdh_cfg_fini(guest_cdh_cfg_t *c);

/* "ECDH-ES+A256KW-P256", ... */
const char *guest_key_alg_name(guest_key_alg_t alg);

#endif
