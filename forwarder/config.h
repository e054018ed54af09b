/* agent-protocol-forwarder configuration: command-line flags (upstream's
 * names, Go flag syntax) and the JSON file CAA provisions through user data.
 *
 * `-pod-namespace` is the network namespace path containers join; the
 * file's `pod-namespace` and `pod-name` are the Kubernetes identity of the
 * pod, used in the log only (both as upstream). */
#ifndef APF_CONFIG_H
#define APF_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/error.h"

#define APF_DEFAULT_LISTEN       "0.0.0.0:15150"
#define APF_DEFAULT_AGENT_SOCKET "/run/kata-containers/agent.sock"
#define APF_DEFAULT_CONFIG       "/run/peerpod/apf.json"
#define APF_DEFAULT_NETNS        "/run/netns/podns"
/* How long to wait for the kata agent socket, at start and on redial. */
#define APF_DEFAULT_AGENT_WAIT_MS 150000u
/* Largest configuration file read. */
#define APF_CONFIG_MAX (1u << 20)

typedef struct apf_config_s {
    char *listen;       /* host:port */
    char *agent_socket; /* the kata agent's unix socket */
    char *config_path;
    char *netns_path; /* -pod-namespace */
    int disable_tls;
    int show_help;
    int show_version;
    uint64_t agent_wait_ms; /* -kata-agent-timeout */
    unsigned busy_poll_us;  /* -busy-poll-us */

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
    char *tls_cipher_suites;
    int has_pod_network;
    char *pod_network_json; /* the `pod-network` object as text */
} apf_config_t;

/* Fills in the defaults. 0 or -ENOMEM. */
int apf_config_init(apf_config_t *cfg);
void apf_config_fini(apf_config_t *cfg);

/* Parses argv (argv[0] skipped): `-name value`, `-name=value`, with one or
 * two dashes; booleans take no value or `=true|false`. Unknown flags,
 * missing values and bad values are errors naming the flag. */
int apf_config_parse_args(apf_config_t *cfg, int argc, char **argv, pp_error_t *err);

/* Reads cfg->config_path when it exists (absent is not an error) and applies
 * it. Malformed JSON or a key of the wrong type is an error naming the file
 * (and line/column or key). Unknown keys are ignored. */
int apf_config_load_file(apf_config_t *cfg, pp_error_t *err);

/* Applies a JSON document; `origin` names it in errors. */
int apf_config_apply_json(apf_config_t *cfg, const char *text, size_t len, const char *origin,
                          pp_error_t *err);

/* Writes the usage text. */
void apf_config_usage(FILE *out, const char *argv0);

#endif
