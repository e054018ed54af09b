/* cloud-api-adaptor's settings table (config.h). */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/loop.h"

typedef caa_config_t cfg_t;

static const char *const only_vxlan[] = {"vxlan", NULL};
static const char *const only_false[] = {"false", NULL};

static const pp_setting_t items[] = {
    PP_SETTING_STR(cfg_t, provider, "CLOUD_PROVIDER", "provider", "local",
                   "cloud provider (also the first word of the command line)",
                   .chars = "abcdefghijklmnopqrstuvwxyz0123456789_-"),
    PP_SETTING_STR(cfg_t, module_dir, "PP_MODULE_DIR", "module-dir", NULL,
                   "where provider and TLS modules are (default <bin>/../lib/peerpod, else the "
                   "installed libdir)"),
    PP_SETTING_STR(cfg_t, socket, "REMOTE_HYPERVISOR_ENDPOINT", "socket",
                   "/run/peerpod/hypervisor.sock", "unix socket the kata shim calls"),
    PP_SETTING_STR(cfg_t, pods_dir, "PODS_DIR", "pods-dir", "/run/peerpod/pods",
                   "per-pod directories"),
    PP_SETTING_STR(cfg_t, node_name, "NODE_NAME", "node-name", NULL,
                   "this node's name (default: the hostname)"),
    PP_SETTING_INT_OF(cfg_t, forwarder_port, "FORWARDER_PORT", "forwarder-port", "15150", 1, 65535,
                      "agent-protocol-forwarder port in the pod VM"),
    PP_SETTING_DURATION_OF(cfg_t, proxy_timeout_ms, "PROXY_TIMEOUT", "proxy-timeout", "5m", 1, 0,
                           "how long StartVM waits for the forwarder"),
    PP_SETTING_INT_OF(cfg_t, vxlan_port, "VXLAN_PORT", "vxlan-port", "4789", 1, 65535,
                      "VXLAN UDP port"),
    PP_SETTING_INT_OF(cfg_t, vxlan_min_id, "VXLAN_MIN_ID", "vxlan-min-id", "555000", 1,
                      16777215 - 4096, "first VXLAN VNI"),
    PP_SETTING_STR(cfg_t, host_interface, "HOST_INTERFACE", "host-interface", NULL,
                   "node interface for tunnels (default: the one of the default route)"),
    PP_SETTING_STR(cfg_t, initdata, "INITDATA", "initdata", NULL,
                   "default initdata for pods without their own (gzip+base64)"),
    PP_SETTING_STR(cfg_t, tls_min_version, "TLS_MIN_VERSION", "tls-min-version", NULL,
                   "lowest TLS version to the forwarders: VersionTLS12 or VersionTLS13 (also "
                   "1.2, 1.3, TLS 1.2, TLS 1.3)"),
    PP_SETTING_LIST_OF(cfg_t, tls_cipher_suites, "TLS_CIPHER_SUITES", "tls-cipher-suites", NULL,
                       "TLS cipher suites to the forwarders, IANA names, comma separated"),
    PP_SETTING_STR(cfg_t, ca_cert_file, "CACERT_FILE", "ca-cert-file", NULL,
                   "CA certificate (PEM) instead of the per-node CA"),
    PP_SETTING_STR(cfg_t, cert_file, "CERT_FILE", "cert-file", NULL,
                   "client certificate (PEM), with CACERT_FILE"),
    PP_SETTING_STR(cfg_t, cert_key, "CERT_KEY", "cert-key", NULL,
                   "client key (PEM), with CACERT_FILE"),
    PP_SETTING_BOOL_OF(cfg_t, tls_skip_verify, "TLS_SKIP_VERIFY", "tls-skip-verify", "false",
                       "do not verify the forwarder's certificate (testing only)"),
    PP_SETTING_BOOL_OF(cfg_t, disable_tls, "DISABLE_TLS", "disable-tls", "false",
                       "plaintext to the forwarders (testing only)"),
    PP_SETTING_STR(cfg_t, auth_json_file, "AUTH_JSON_FILE", "auth-json-file",
                   "/root/containers/auth.json",
                   "image pull credentials sent to each pod VM when the file exists"),
    PP_SETTING_STR(cfg_t, ca_dir, "CA_DIR", "ca-dir", NULL,
                   "where the per-node CA is kept (default <PODS_DIR>/.ca)"),
    PP_SETTING_INT_OF(cfg_t, peerpods_limit, "PEERPODS_LIMIT_PER_NODE", "peerpods-limit-per-node",
                      "10", 0, 100000, "most pod VMs on this node (0: no limit)"),
    PP_SETTING_INT_OF(cfg_t, provider_concurrency, "PROVIDER_CONCURRENCY", "provider-concurrency",
                      "32", 0, 4096,
                      "most calls to create or delete pod VMs in flight at once; more StartVM "
                      "calls are accepted and wait their turn (0: no bound)"),
    PP_SETTING_BOOL_OF(cfg_t, enable_scratch_space, "ENABLE_SCRATCH_SPACE", "enable-scratch-space",
                       "false",
                       "ask pod VMs for encrypted scratch space (a marker in the user data, "
                       "which the pod VM image acts on)"),
    PP_SETTING_INT_OF(cfg_t, busy_poll_us, "BUSY_POLL_US", "busy-poll-us", "0", 0,
                      PP_LOOP_BUSY_POLL_MAX_US,
                      "after a quick wake-up, poll this long (microseconds) before sleeping "
                      "again; 0: never"),
    PP_SETTING_INT_OF(cfg_t, probe_port, "PROBE_PORT", "probe-port", "8000", 0, 65535,
                      "port of /startup, /healthz and /metrics (0: none)"),
    PP_SETTING_STR(cfg_t, probe_address, "PROBE_ADDRESS", "probe-address", "127.0.0.1",
                   "address the probes and metrics listen on (an IPv4 or IPv6 literal)"),
    PP_SETTING_DURATION_OF(cfg_t, shutdown_grace_ms, "SHUTDOWN_GRACE", "shutdown-grace", "20s", 0,
                           0,
                           "on SIGTERM, how long calls in flight may take; then they fail "
                           "UNAVAILABLE and the daemon exits, pod VMs kept for the next start "
                           "(keep it under the pod's termination grace period)"),
    PP_SETTING_DURATION_OF(cfg_t, unstarted_ttl_ms, "UNSTARTED_SANDBOX_TTL",
                           "unstarted-sandbox-ttl", "10m", 0, 0,
                           "a sandbox created and not started within this is removed (0: never)"),
    PP_SETTING_DURATION_OF(cfg_t, forwarder_silence_ms, "FORWARDER_SILENCE_TIMEOUT",
                           "forwarder-silence-timeout", "60s", 0, 0,
                           "a pod VM's forwarder silent this long (TCP keepalive unanswered, or "
                           "data unacknowledged; the kernel watches) is taken as gone: agent "
                           "calls in flight to it fail UNAVAILABLE, also those without a timeout "
                           "(0: the kernel's defaults, some 15 minutes)"),
    PP_SETTING_STR(cfg_t, socket_group, "SOCKET_GROUP", "socket-group", NULL,
                   "group (name or number) that may use the hypervisor and agent sockets: they "
                   "are then 0660 in it; without, 0600 (root only)"),
    PP_SETTING_STR(cfg_t, failpoint, "PP_FAILPOINT", "failpoint", NULL,
                   "tests only: die with SIGKILL at this named step", .flags = PP_SETTING_HIDDEN),
    PP_SETTING_DURATION_OF(cfg_t, test_recovery_delay_ms, "PP_TEST_RECOVERY_DELAY",
                           "test-recovery-delay", NULL, 0, 0,
                           "tests only: wait this long before asking the provider for its "
                           "instances at start-up",
                           .flags = PP_SETTING_HIDDEN),
    PP_SETTING_BOOL_OF(cfg_t, list_settings, NULL, "list-settings", NULL,
                       "print every setting of the daemon and the provider, one a line, and exit"),

    /* Upstream's, whose feature is absent here (docs/configuration.md). */
    PP_SETTING_UPSTREAM(PP_SETTING_WARN, "PAUSE_IMAGE", "pause-image", NULL,
                        "the pod VM uses the pause image it has; none is pulled"),
    PP_SETTING_UPSTREAM(PP_SETTING_REFUSE, "TUNNEL_TYPE", "tunnel-type", only_vxlan,
                        "pod networks are VXLAN tunnels only"),
    PP_SETTING_UPSTREAM(PP_SETTING_NOOP, "CLOUD_CONFIG_VERIFY", "cloud-config-verify", NULL,
                        "upstream's check never stops its daemon; user data is always built "
                        "here and checked in the pod VM",
                        .flags = PP_SETTING_AS_BOOL),
    PP_SETTING_UPSTREAM(PP_SETTING_REFUSE, "EXTERNAL_NETWORK_VIA_PODVM", "ext-network-via-podvm",
                        only_false, "pod traffic leaves through the node only",
                        .flags = PP_SETTING_AS_BOOL),
    PP_SETTING_UPSTREAM(PP_SETTING_NOOP, "POD_SUBNET_CIDRS", "pod-subnet-cidrs", NULL,
                        "its routes matter only with EXTERNAL_NETWORK_VIA_PODVM; without it the "
                        "pod VM's default route already goes through the tunnel"),
    PP_SETTING_UPSTREAM(PP_SETTING_REFUSE, "ENABLE_CLOUD_PROVIDER_EXTERNAL_PLUGIN", NULL,
                        only_false,
                        "providers are this project's modules (PP_MODULE_DIR); Go plugins do "
                        "not load",
                        .flags = PP_SETTING_AS_BOOL),
    PP_SETTING_UPSTREAM(PP_SETTING_NOOP, "CLOUD_PROVIDER_EXTERNAL_PLUGIN_PATH", NULL, NULL,
                        "read only with ENABLE_CLOUD_PROVIDER_EXTERNAL_PLUGIN"),
    PP_SETTING_UPSTREAM(PP_SETTING_NOOP, "CLOUD_PROVIDER_EXTERNAL_PLUGIN_HASH", NULL, NULL,
                        "read only with ENABLE_CLOUD_PROVIDER_EXTERNAL_PLUGIN"),
    PP_SETTING_UPSTREAM(PP_SETTING_NOOP, "CRI_RUNTIME_ENDPOINT", NULL, NULL,
                        "read by upstream's start script only, never by its daemon"),
    PP_SETTING_UPSTREAM(PP_SETTING_WARN, "RUNTIMECLASS_NAME", NULL, NULL,
                        "read by upstream's startup probe, which is not served"),
    PP_SETTING_UPSTREAM(PP_SETTING_NOOP, "POD_UID", NULL, NULL,
                        "upstream's owner of the PeerPod objects and the node's extended "
                        "resource, which are not made here: PEERPODS_LIMIT_PER_NODE is "
                        "enforced by the daemon"),
    PP_SETTING_UPSTREAM(PP_SETTING_NOOP, "POD_NAMESPACE", NULL, NULL,
                        "upstream's namespace of the PeerPod objects, which are not made here"),
};

const pp_settings_table_t caa_settings = {"cloud-api-adaptor", items, PP_ARRAY_SIZE(items)};

/* TLS_MIN_VERSION: upstream's spelling, and the ones accepted before. */
static const struct {
    const char *word;
    const char *canonical; /* NULL: refused */
} tls_versions[] = {
    {"VersionTLS12", "VersionTLS12"}, {"VersionTLS13", "VersionTLS13"}, {"1.2", "VersionTLS12"},
    {"1.3", "VersionTLS13"},          {"TLS 1.2", "VersionTLS12"},      {"TLS 1.3", "VersionTLS13"},
    {"TLS12", "VersionTLS12"},        {"TLS13", "VersionTLS13"},        {"TLSv1.2", "VersionTLS12"},
    {"TLSv1.3", "VersionTLS13"},      {"VersionTLS10", NULL},           {"VersionTLS11", NULL},
};

static int tls_version(caa_config_t *cfg, pp_error_t *err)
{
    if (cfg->tls_min_version[0] == '\0')
        return 0;
    for (size_t i = 0; i < PP_ARRAY_SIZE(tls_versions); i++) {
        if (strcasecmp(cfg->tls_min_version, tls_versions[i].word) != 0)
            continue;
        if (tls_versions[i].canonical == NULL)
            return pp_error_set(
                err, -EINVAL,
                "`TLS_MIN_VERSION` (`-tls-min-version`): `%s`: TLS 1.0 and 1.1 are not "
                "supported, use VersionTLS12 or VersionTLS13",
                cfg->tls_min_version);
        snprintf(cfg->tls_min_version, sizeof(cfg->tls_min_version), "%s",
                 tls_versions[i].canonical);
        return 0;
    }
    return pp_error_set(err, -EINVAL,
                        "`TLS_MIN_VERSION` (`-tls-min-version`): `%s` is not VersionTLS12 or "
                        "VersionTLS13 (or 1.2, 1.3, TLS 1.2, TLS 1.3)",
                        cfg->tls_min_version);
}

static int is_help_word(const char *a)
{
    return strcmp(a, "-h") == 0 || strcmp(a, "-help") == 0 || strcmp(a, "--help") == 0 ||
           strcmp(a, "--h") == 0;
}

static int is_list_word(const char *a)
{
    return strcmp(a, "-list-settings") == 0 || strcmp(a, "--list-settings") == 0 ||
           strcmp(a, "-list-settings=true") == 0 || strcmp(a, "--list-settings=true") == 0;
}

/* -h and -list-settings: only where the tables come from matters. */
static int load_for_tables(caa_config_t *cfg, const char *word, int mode, pp_error_t *err)
{
    pp_error_t ignored = {0};
    pp_settings_load(&caa_settings, cfg, cfg->nflags, cfg->flags,
                     PP_SETTINGS_LENIENT | PP_SETTINGS_QUIET | PP_SETTINGS_NO_ENV, &ignored);
    static const struct {
        const char *env;
        size_t off, size;
    } from_env[] = {
        {"CLOUD_PROVIDER", offsetof(cfg_t, provider), sizeof(cfg->provider)},
        {"PP_MODULE_DIR", offsetof(cfg_t, module_dir), sizeof(cfg->module_dir)},
    };
    for (size_t i = 0; i < PP_ARRAY_SIZE(from_env); i++) {
        /* A flag set it when it differs from the default. */
        const pp_setting_t *s = pp_settings_find_env(&caa_settings, from_env[i].env);
        char *field = (char *)cfg + from_env[i].off;
        const char *v = getenv(from_env[i].env);
        if (strcmp(field, s->def != NULL ? s->def : "") == 0 && v != NULL && v[0] != '\0')
            snprintf(field, from_env[i].size, "%s", v);
    }
    if (word != NULL &&
        snprintf(cfg->provider, sizeof(cfg->provider), "%s", word) >= (int)sizeof(cfg->provider))
        return pp_error_set(err, -EINVAL, "provider `%s`: name too long", word);
    return mode;
}

/* SOCKET_GROUP: a group name, or a number. */
static int socket_group(caa_config_t *cfg, pp_error_t *err)
{
    const char *g = cfg->socket_group;
    if (g[0] == '\0')
        return 0;
    char *end;
    errno = 0;
    unsigned long n = strtoul(g, &end, 10);
    if (*end == '\0' && errno == 0 && n > 0 && n < 0xffffffffUL) {
        cfg->socket_gid = (unsigned)n;
        return 0;
    }
    struct group gr, *found = NULL;
    char buf[4096];
    int r = getgrnam_r(g, &gr, buf, sizeof(buf), &found);
    if (found == NULL)
        return pp_error_set(err, r ? -r : -ENOENT,
                            "`SOCKET_GROUP`: `%s` is not a group of this system%s%s", g,
                            r ? ": " : "", r ? strerror(r) : "");
    if (gr.gr_gid == 0)
        return pp_error_set(err, -EINVAL, "`SOCKET_GROUP`: `%s` is root's group; leave it unset",
                            g);
    cfg->socket_gid = (unsigned)gr.gr_gid;
    return 0;
}

int caa_config_load(caa_config_t *cfg, int argc, char **argv, pp_error_t *err)
{
    memset(cfg, 0, sizeof(*cfg));
    /* As upstream: `cloud-api-adaptor <provider> [flags]`, where the
     * provider word may also be `help` or `version`. */
    const char *word = NULL;
    int first = 1;
    if (argc > 1 && argv[1][0] != '-') {
        word = argv[1];
        first = 2;
        if (strcmp(word, "help") == 0)
            return CAA_CONFIG_HELP;
        if (strcmp(word, "version") == 0)
            return CAA_CONFIG_VERSION;
    }
    cfg->nflags = argc - first;
    cfg->flags = argv + first;
    for (int i = 0; i < cfg->nflags; i++) {
        if (is_help_word(cfg->flags[i]))
            return load_for_tables(cfg, word, CAA_CONFIG_HELP, err);
        if (is_list_word(cfg->flags[i]))
            return load_for_tables(cfg, word, CAA_CONFIG_LIST, err);
    }
    int r = pp_settings_load(&caa_settings, cfg, cfg->nflags, cfg->flags, PP_SETTINGS_LENIENT, err);
    if (r < 0)
        return r;
    if (word != NULL) {
        const pp_setting_t *s = &items[0];
        if ((size_t)snprintf(cfg->provider, sizeof(cfg->provider), "%s", word) >= s->size)
            return pp_error_set(err, -EINVAL, "provider `%s`: name too long", word);
    }
    if (cfg->node_name[0] == '\0' && gethostname(cfg->node_name, sizeof(cfg->node_name) - 1) < 0)
        return pp_error_set(err, -errno, "`NODE_NAME` is not set and the hostname is unknown");
    if ((r = tls_version(cfg, err)) < 0)
        return r;
    if (cfg->ca_dir[0] == '\0' && snprintf(cfg->ca_dir, sizeof(cfg->ca_dir), "%s/.ca",
                                           cfg->pods_dir) >= (int)sizeof(cfg->ca_dir))
        return pp_error_set(err, -EINVAL, "`PODS_DIR` is too long to hold the CA");
    return socket_group(cfg, err);
}

int caa_config_check_flags(const caa_config_t *cfg, const pp_settings_table_t *provider,
                           pp_error_t *err)
{
    const pp_settings_table_t *tables[] = {&caa_settings, provider};
    return pp_settings_check_flags(tables, provider != NULL ? 2 : 1, cfg->nflags, cfg->flags, err);
}

void caa_config_usage(FILE *out, const char *argv0, const char *provider_name,
                      const pp_settings_table_t *provider)
{
    fprintf(out,
            "usage: %s [provider] [flags]   (or CLOUD_PROVIDER=provider %s [flags])\n"
            "       %s [provider] -list-settings | help | version\n\n",
            argv0, argv0, argv0);
    pp_settings_usage(out, &caa_settings);
    if (provider != NULL) {
        fputc('\n', out);
        pp_settings_usage(out, provider);
    } else if (provider_name != NULL) {
        fprintf(out, "\nthe `%s` provider has no settings\n", provider_name);
    }
}

void caa_config_list(FILE *out, const pp_settings_table_t *provider)
{
    pp_settings_list(out, &caa_settings);
    if (provider != NULL)
        pp_settings_list(out, provider);
}
