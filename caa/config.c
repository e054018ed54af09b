#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/loop.h"

enum kind { K_STR, K_INT, K_BOOL, K_DURATION };

typedef struct setting_s {
    const char *flag;
    const char *env;
    enum kind kind;
    size_t off;
    size_t size; /* K_STR: buffer size */
    const char *def;
    long min, max; /* K_INT */
    const char *help;
} setting_t;

#define STR(f, e, field, d, h)                                                                     \
    {                                                                                              \
        f, e, K_STR, offsetof(caa_config_t, field), sizeof(((caa_config_t *)0)->field), d, 0, 0, h \
    }
#define INT(f, e, field, d, lo, hi, h)                                                             \
    {                                                                                              \
        f, e, K_INT, offsetof(caa_config_t, field), 0, d, lo, hi, h                                \
    }
#define BOOL(f, e, field, d, h)                                                                    \
    {                                                                                              \
        f, e, K_BOOL, offsetof(caa_config_t, field), 0, d, 0, 0, h                                 \
    }
#define DUR(f, e, field, d, h)                                                                     \
    {                                                                                              \
        f, e, K_DURATION, offsetof(caa_config_t, field), 0, d, 0, 0, h                             \
    }

static const setting_t settings[] = {
    STR("provider", "CLOUD_PROVIDER", provider, "local", "cloud provider"),
    STR("module-dir", "PP_MODULE_DIR", module_dir, "",
        "where provider and TLS modules are (default <bin>/../lib/peerpod, else the installed "
        "libdir)"),
    STR("socket", "REMOTE_HYPERVISOR_ENDPOINT", socket, "/run/peerpod/hypervisor.sock",
        "unix socket the kata shim calls"),
    STR("pods-dir", "PODS_DIR", pods_dir, "/run/peerpod/pods", "per-pod directories"),
    STR("node-name", "NODE_NAME", node_name, "", "this node's name (default: hostname)"),
    INT("forwarder-port", "FORWARDER_PORT", forwarder_port, "15150", 1, 65535,
        "agent-protocol-forwarder port in the pod VM"),
    DUR("proxy-timeout", "PROXY_TIMEOUT", proxy_timeout_ms, "5m",
        "how long StartVM waits for the forwarder"),
    INT("vxlan-port", "VXLAN_PORT", vxlan_port, "4789", 1, 65535, "VXLAN UDP port"),
    INT("vxlan-min-id", "VXLAN_MIN_ID", vxlan_min_id, "555000", 1, 16777215 - 4096,
        "first VXLAN VNI"),
    STR("host-interface", "HOST_INTERFACE", host_interface, "", "node interface for tunnels"),
    BOOL("disable-cvm", "DISABLECVM", disable_cvm, "false", "launch non-confidential VMs"),
    STR("initdata", "INITDATA", initdata, "", "default initdata (gzip+base64)"),
    STR("tls-min-version", "TLS_MIN_VERSION", tls_min_version, "", "TLS 1.2 or TLS 1.3"),
    STR("tls-cipher-suites", "TLS_CIPHER_SUITES", tls_cipher_suites, "", "TLS cipher suites"),
    STR("ca-cert-file", "CACERT_FILE", ca_cert_file, "", "CA certificate (PEM)"),
    STR("cert-file", "CERT_FILE", cert_file, "", "client certificate (PEM)"),
    STR("cert-key", "CERT_KEY", cert_key, "", "client key (PEM)"),
    STR("auth-json-file", "AUTH_JSON_FILE", auth_json_file, "/root/containers/auth.json",
        "image pull credentials sent to each pod VM when the file exists"),
    STR("ca-dir", "CA_DIR", ca_dir, "", "where the per-node CA is kept (default <PODS_DIR>/.ca)"),
    BOOL("tls-skip-verify", "TLS_SKIP_VERIFY", tls_skip_verify, "false",
         "do not verify the forwarder's certificate"),
    BOOL("disable-tls", "DISABLE_TLS", disable_tls, "false", "plaintext to the forwarder"),
    STR("failpoint", "PP_FAILPOINT", failpoint, "",
        "tests only: die with SIGKILL at this named step"),
    INT("peerpods-limit-per-node", "PEERPODS_LIMIT_PER_NODE", peerpods_limit, "0", 0, 100000,
        "most pod VMs on this node (0: no limit)"),
    INT("busy-poll-us", "BUSY_POLL_US", busy_poll_us, "0", 0, PP_LOOP_BUSY_POLL_MAX_US,
        "after a quick wake-up, poll this long (microseconds) before sleeping again; 0: never"),
};

static const struct {
    const char *suffix;
    uint64_t ms_num, ms_den;
} units[] = {{"ms", 1, 1},      {"s", 1000, 1},  {"m", 60000, 1},
             {"h", 3600000, 1}, {"us", 1, 1000}, {"ns", 1, 1000000}};

int caa_parse_duration_ms(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0')
        return -EINVAL;
    char *end;
    /* A bare number is seconds. */
    unsigned long long v = strtoull(s, &end, 10);
    if (*end == '\0' && s[0] != '-') {
        *out = (uint64_t)v * 1000;
        return 0;
    }
    uint64_t total = 0;
    const char *p = s;
    while (*p) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = strtoull(p, &end, 10);
        if (end == p)
            return -EINVAL;
        size_t best = 0, best_len = 0;
        for (size_t i = 0; i < PP_ARRAY_SIZE(units); i++) {
            size_t n = strlen(units[i].suffix);
            if (strncmp(end, units[i].suffix, n) == 0 && n > best_len) {
                best = i;
                best_len = n;
            }
        }
        if (best_len == 0)
            return -EINVAL;
        total += (uint64_t)v * units[best].ms_num / units[best].ms_den;
        p = end + best_len;
    }
    *out = total;
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True", "yes"};
    static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False", "no", ""};
    for (size_t i = 0; i < PP_ARRAY_SIZE(yes); i++)
        if (strcmp(v, yes[i]) == 0)
            return *out = 1, 0;
    for (size_t i = 0; i < PP_ARRAY_SIZE(no); i++)
        if (strcmp(v, no[i]) == 0)
            return *out = 0, 0;
    return -EINVAL;
}

static int apply(caa_config_t *cfg, const setting_t *s, const char *v, const char *source,
                 pp_error_t *err)
{
    char *field = (char *)cfg + s->off;
    switch (s->kind) {
    case K_STR:
        if (strlen(v) >= s->size)
            return pp_error_set(err, -EINVAL, "%s `%s`: value too long (at most %zu bytes)", source,
                                s->env, s->size - 1);
        memcpy(field, v, strlen(v) + 1);
        return 0;
    case K_INT: {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0' || n < s->min || n > s->max)
            return pp_error_set(err, -EINVAL, "%s `%s`: `%s` is not a number from %ld to %ld",
                                source, s->env, v, s->min, s->max);
        *(int *)field = (int)n;
        return 0;
    }
    case K_BOOL:
        if (parse_bool(v, (int *)field) < 0)
            return pp_error_set(err, -EINVAL, "%s `%s`: `%s` is not true or false", source, s->env,
                                v);
        return 0;
    case K_DURATION:
        if (caa_parse_duration_ms(v, (uint64_t *)field) < 0)
            return pp_error_set(err, -EINVAL,
                                "%s `%s`: `%s` is not a duration (like 90s, 5m, 1h30m)", source,
                                s->env, v);
        return 0;
    }
    return -EINVAL;
}

void caa_config_usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [provider] [-flag value]...\n\n", argv0);
    for (size_t i = 0; i < PP_ARRAY_SIZE(settings); i++)
        fprintf(stderr, "  -%-26s %-28s %s (default \"%s\")\n", settings[i].flag, settings[i].env,
                settings[i].help, settings[i].def);
}

static const setting_t *find_flag(const char *name, size_t n)
{
    for (size_t i = 0; i < PP_ARRAY_SIZE(settings); i++)
        if (strlen(settings[i].flag) == n && strncmp(settings[i].flag, name, n) == 0)
            return &settings[i];
    return NULL;
}

int caa_config_load(caa_config_t *cfg, int argc, char **argv, pp_error_t *err)
{
    int r;
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < PP_ARRAY_SIZE(settings); i++) {
        const setting_t *s = &settings[i];
        if ((r = apply(cfg, s, s->def, "default", err)) < 0)
            return r;
        const char *v = getenv(s->env);
        if (v != NULL && (r = apply(cfg, s, v, "environment variable", err)) < 0)
            return r;
    }
    int positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            if (positional++ > 0)
                return pp_error_set(err, -EINVAL, "unexpected argument `%s`", a);
            if ((r = apply(cfg, &settings[0], a, "argument", err)) < 0)
                return r;
            continue;
        }
        a += a[1] == '-' ? 2 : 1;
        if (strcmp(a, "h") == 0 || strcmp(a, "help") == 0) {
            caa_config_usage(argv[0]);
            return 1;
        }
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        const setting_t *s = find_flag(a, n);
        if (s == NULL)
            return pp_error_set(err, -EINVAL, "unknown flag `-%.*s`", (int)n, a);
        const char *v;
        if (eq != NULL)
            v = eq + 1;
        else if (s->kind == K_BOOL && (i + 1 >= argc || argv[i + 1][0] == '-'))
            v = "true";
        else if (i + 1 < argc)
            v = argv[++i];
        else
            return pp_error_set(err, -EINVAL, "flag `-%s` needs a value", s->flag);
        if ((r = apply(cfg, s, v, "flag", err)) < 0)
            return r;
    }
    if (cfg->node_name[0] == '\0' && gethostname(cfg->node_name, sizeof(cfg->node_name) - 1) < 0)
        return pp_error_set(err, -errno, "`NODE_NAME` is not set and the hostname is unknown");
    if (cfg->tls_min_version[0] && strcmp(cfg->tls_min_version, "TLS 1.2") != 0 &&
        strcmp(cfg->tls_min_version, "TLS 1.3") != 0 && strcmp(cfg->tls_min_version, "1.2") != 0 &&
        strcmp(cfg->tls_min_version, "1.3") != 0)
        return pp_error_set(err, -EINVAL, "`TLS_MIN_VERSION`: `%s` is not TLS 1.2 or TLS 1.3",
                            cfg->tls_min_version);
    if (cfg->ca_dir[0] == '\0' && snprintf(cfg->ca_dir, sizeof(cfg->ca_dir), "%s/.ca",
                                           cfg->pods_dir) >= (int)sizeof(cfg->ca_dir))
        return pp_error_set(err, -EINVAL, "`PODS_DIR` is too long to hold the CA");
    if (cfg->proxy_timeout_ms == 0)
        return pp_error_set(err, -EINVAL, "`PROXY_TIMEOUT` must be more than zero");
    return 0;
}
