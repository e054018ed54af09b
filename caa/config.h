/* cloud-api-adaptor settings (caa_settings, util/settings.h): each has a
 * flag and the environment variable of the upstream peer-pods-cm config
 * map. A flag wins over the variable, which wins over the default; an empty
 * variable is unset. Bad values are reported by name. Upstream's settings
 * whose feature is absent here are in the table too: accepted without
 * effect, warned about once, or refused (docs/configuration.md).
 *
 * The command line is upstream's: `cloud-api-adaptor [provider] [flags]`,
 * the provider's flags mixed with the daemon's; without a provider word,
 * CLOUD_PROVIDER (or -provider) names it. */
#ifndef CAA_CONFIG_H
#define CAA_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "util/error.h"
#include "util/settings.h"

typedef struct caa_config_s {
    char provider[64];
    char module_dir[256]; /* PP_MODULE_DIR: provider and TLS modules */
    char socket[256];     /* REMOTE_HYPERVISOR_ENDPOINT */
    char pods_dir[256];   /* PODS_DIR */
    char node_name[128];
    char initdata[65536]; /* INITDATA: gzip+base64 default initdata */
    /* TLS_MIN_VERSION in upstream's spelling (VersionTLS12, VersionTLS13),
     * whichever spelling was given; empty: the default (TLS 1.2). */
    char tls_min_version[16];
    char tls_cipher_suites[1024];
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
    int tls_skip_verify;
    int disable_tls;
    int peerpods_limit;       /* 0 = no limit */
    int provider_concurrency; /* PROVIDER_CONCURRENCY: provider calls at once; 0 = no bound */
    int enable_scratch_space; /* ENABLE_SCRATCH_SPACE: the marker in the user data */
    int busy_poll_us;         /* 0 = never (util/loop.h) */
    int probe_port;           /* PROBE_PORT: probes and metrics (probe.h); 0 = none */
    char probe_address[64];
    uint64_t shutdown_grace_ms;      /* SHUTDOWN_GRACE: SIGTERM's wait for calls in flight */
    uint64_t unstarted_ttl_ms;       /* UNSTARTED_SANDBOX_TTL: 0 = created sandboxes never expire */
    uint64_t forwarder_silence_ms;   /* FORWARDER_SILENCE_TIMEOUT: 0 = the kernel's defaults */
    char socket_group[64];           /* SOCKET_GROUP: group of the sockets (0660); empty: 0600 */
    unsigned socket_gid;             /* SOCKET_GROUP resolved; 0 when unset */
    char failpoint[64];              /* PP_FAILPOINT: for crash tests only */
    uint64_t test_recovery_delay_ms; /* PP_TEST_RECOVERY_DELAY: for tests only */
    int list_settings;               /* -list-settings */
    /* The flags of the command line (argv past the program and the
     * provider word), borrowed: the provider reads its own from them. */
    int nflags;
    char **flags;
} caa_config_t;

extern const pp_settings_table_t caa_settings;

/* caa_config_load() results besides 0 and -errno. */
#define CAA_CONFIG_HELP    1 /* -h: print caa_config_usage() */
#define CAA_CONFIG_LIST    2 /* -list-settings: print caa_config_list() */
#define CAA_CONFIG_VERSION 3 /* `version` as the provider word */

/* Fills `cfg` from defaults, the environment, then argv (flags of the form
 * -name value, -name=value, --name value). A first word that is not a flag
 * names the provider. Flags of no table of the daemon's are left for the
 * provider's table (caa_config_check_flags()). With -h or -list-settings,
 * only the provider and the module directory are read, and from flags and
 * the environment, so that a bad value elsewhere does not hide the table.
 * Returns 0, a CAA_CONFIG_* code, or a negative errno with `err` naming the
 * setting. */
int caa_config_load(caa_config_t *cfg, int argc, char **argv, pp_error_t *err);

/* Checks that every flag belongs to the daemon's table or `provider`'s
 * (NULL: none). */
int caa_config_check_flags(const caa_config_t *cfg, const pp_settings_table_t *provider,
                           pp_error_t *err);

/* -h: the usage line, the daemon's table and the provider's. */
void caa_config_usage(FILE *out, const char *argv0, const char *provider_name,
                      const pp_settings_table_t *provider);
/* -list-settings: pp_settings_list() rows of the daemon's table, then the
 * provider's. */
void caa_config_list(FILE *out, const pp_settings_table_t *provider);

#endif
