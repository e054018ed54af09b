/* cloud-api-adaptor settings: each has a flag and the environment variable
 * of the upstream peer-pods-cm config map. A flag wins over the variable,
 * which wins over the default. Bad values are reported by name. */
#ifndef CAA_CONFIG_H
#define CAA_CONFIG_H

#include <stdint.h>

#include "util/error.h"

typedef struct caa_config_s {
    char provider[64];
    char module_dir[256]; /* PP_MODULE_DIR: provider and TLS modules */
    char socket[256];     /* REMOTE_HYPERVISOR_ENDPOINT */
    char pods_dir[256];   /* PODS_DIR */
    char node_name[128];
    char initdata[65536]; /* INITDATA: gzip+base64 default initdata */
    char tls_min_version[16];
    char tls_cipher_suites[512];
    char ca_cert_file[256];
    char cert_file[256];
    char cert_key[256];
    char auth_json_file[256]; /* AUTH_JSON_FILE: image pull credentials */
    char ca_dir[256];         /* CA_DIR: the per-node CA; default <PODS_DIR>/.ca */
    char host_interface[32];
    int forwarder_port;
    uint64_t proxy_timeout_ms;
    int vxlan_port;
    int vxlan_min_id;
    int disable_cvm;
    int tls_skip_verify;
    int disable_tls;
    int peerpods_limit; /* 0 = no limit */
    int busy_poll_us;   /* 0 = never (util/loop.h) */
    char failpoint[64]; /* PP_FAILPOINT: for crash tests only */
} caa_config_t;

/* Fills `cfg` from defaults, the environment, then argv (flags of the form
 * -name value, -name=value, --name value). A first positional argument names
 * the provider. Returns 0, 1 when help was printed, or a negative errno with
 * `err` naming the setting. */
int caa_config_load(caa_config_t *cfg, int argc, char **argv, pp_error_t *err);
void caa_config_usage(const char *argv0);

/* Parses a Go-style duration ("300ms", "5m", "1h30m", "90s", bare seconds). */
int caa_parse_duration_ms(const char *s, uint64_t *out);

#endif
