/* agent-protocol-forwarder configuration: command-line flags (upstream's
 * names, Go flag syntax, read by the one settings reader: apf_settings) and
 * the JSON file CAA provisions through user data.
 *
 * `-pod-namespace` is the network namespace path containers join; the
 * file's `pod-namespace` and `pod-name` are the Kubernetes identity of the
 * pod, used in the log only (both as upstream). As upstream, -cert-file and
 * -cert-key (both or neither) and -ca-cert-file win over the file's TLS
 * material; the file's `tls-cipher-suites` is a JSON array of names
 * (upstream's) or one comma-separated string (what this project wrote
 * before), and `tls-min-version` is VersionTLS12/VersionTLS13 or 1.2/1.3. */
#ifndef APF_CONFIG_H
#define APF_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "util/error.h"
#include "util/settings.h"

#define APF_DEFAULT_LISTEN       "0.0.0.0:15150"
#define APF_DEFAULT_AGENT_SOCKET "/run/kata-containers/agent.sock"
#define APF_DEFAULT_CONFIG       "/run/peerpod/apf.json"
#define APF_DEFAULT_NETNS        "/run/netns/podns"
/* How long to wait for the kata agent socket, at start and on redial. */
#define APF_DEFAULT_AGENT_WAIT_MS 150000u
/* Largest configuration file read. */
#define APF_CONFIG_MAX (1u << 20)

typedef struct apf_config_s {
    /* Flags (apf_settings). */
    char listen[256];            /* host:port */
    char agent_socket[PATH_MAX]; /* the kata agent's unix socket */
    char config_path[PATH_MAX];
    char netns_path[PATH_MAX];   /* -pod-namespace */
    char ca_cert_file[PATH_MAX]; /* -ca-cert-file: clients' CA, instead of the file's */
    char cert_file[PATH_MAX];    /* -cert-file, -cert-key: ours, instead of the file's */
    char cert_key[PATH_MAX];
    int disable_tls;
    int show_help;
    int show_version;
    int list_settings;      /* -list-settings: the table's rows (util/settings.h) */
    uint64_t agent_wait_ms; /* -kata-agent-timeout */
    int busy_poll_us;       /* -busy-poll-us, BUSY_POLL_US */

    /* From the file; NULL when absent. */
    int file_loaded;
    char *pod_name;
    char *pod_namespace;
    int has_tls_material; /* any tls-* key present */
    /* TLS from the file (PEM); NULL when absent. The key is wiped on fini. */
    char *tls_server_key;
    char *tls_server_cert;
    char *tls_client_ca;
    char *tls_min_version;
    char *tls_cipher_suites; /* comma separated, from a JSON array or string */
    int has_pod_network;
    json_t *pod_network; /* the `pod-network` object as read (a reference) */
} apf_config_t;

extern const pp_settings_table_t apf_settings;

/* Fills in the defaults. 0 or -ENOMEM. */
int apf_config_init(apf_config_t *cfg);
void apf_config_fini(apf_config_t *cfg);

/* Parses argv (argv[0] skipped) with apf_settings: `-name value`,
 * `-name=value`, with one or two dashes; booleans take no value or
 * `=true|false`. Unknown flags, missing values and bad values are errors
 * naming the flag. -h sets show_help. */
int apf_config_parse_args(apf_config_t *cfg, int argc, char **argv, pp_error_t *err);

/* Reads cfg->config_path when it exists (absent is not an error) and applies
 * it. Malformed JSON or a key of the wrong type is an error naming the file
 * (and line/column or key). Unknown keys are ignored. */
int apf_config_load_file(apf_config_t *cfg, pp_error_t *err);

/* Applies a JSON document; `origin` names it in errors. */
int apf_config_apply_json(apf_config_t *cfg, const char *text, size_t len, const char *origin,
                          pp_error_t *err);

/* Reads -ca-cert-file, -cert-file and -cert-key when given; their PEM
 * replaces the file's TLS material (call after apf_config_load_file()). */
int apf_config_load_tls_files(apf_config_t *cfg, pp_error_t *err);

/* Writes the usage text. */
void apf_config_usage(FILE *out, const char *argv0);

#endif
