#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/loop.h"
#include "util/settings.h"

typedef apf_config_t cfg_t;

static const pp_setting_t items[] = {
    PP_SETTING_STR(cfg_t, config_path, NULL, "config", APF_DEFAULT_CONFIG,
                   "the forwarder's config file (read when present)"),
    PP_SETTING_STR(cfg_t, listen, NULL, "listen", APF_DEFAULT_LISTEN, "listen address (host:port)"),
    PP_SETTING_STR(cfg_t, agent_socket, NULL, "kata-agent-socket", APF_DEFAULT_AGENT_SOCKET,
                   "the kata agent's socket"),
    PP_SETTING_STR(cfg_t, netns_path, NULL, "pod-namespace", APF_DEFAULT_NETNS,
                   "the network namespace where the pod runs (absolute)"),
    PP_SETTING_UPSTREAM(PP_SETTING_NOOP, NULL, "host-interface", NULL,
                        "the VXLAN end in the pod VM is bound to no interface; upstream's reads "
                        "it only to check a dedicated interface's address"),
    PP_SETTING_STR(cfg_t, ca_cert_file, NULL, "ca-cert-file", NULL,
                   "CA of the clients (PEM), instead of the config file's `tls-client-ca`"),
    PP_SETTING_STR(cfg_t, cert_file, NULL, "cert-file", NULL,
                   "server certificate (PEM), with -cert-key, instead of the config file's"),
    PP_SETTING_STR(cfg_t, cert_key, NULL, "cert-key", NULL,
                   "server key (PEM), with -cert-file, instead of the config file's"),
    PP_SETTING_UPSTREAM(PP_SETTING_NOOP, NULL, "tls-skip-verify", NULL,
                        "a server verifies its clients against their CA; upstream's flag "
                        "changes only what a client checks",
                        .flags = PP_SETTING_AS_BOOL),
    PP_SETTING_BOOL_OF(cfg_t, disable_tls, NULL, "disable-tls", "false",
                       "serve without TLS (testing only)"),
    PP_SETTING_DURATION_OF(cfg_t, agent_wait_ms, NULL, "kata-agent-timeout", "150s", 1, 3600000,
                           "how long to wait for the kata agent socket (like 150s, 500ms)"),
    PP_SETTING_INT_OF(cfg_t, busy_poll_us, "BUSY_POLL_US", "busy-poll-us", "0", 0,
                      PP_LOOP_BUSY_POLL_MAX_US,
                      "after a quick wake-up, poll this long (microseconds) before sleeping "
                      "again; 0: never"),
    PP_SETTING_BOOL_OF(cfg_t, show_version, NULL, "version", "false", "print the version and exit"),
    PP_SETTING_BOOL_OF(cfg_t, list_settings, NULL, "list-settings", "false",
                       "print every setting, one a line, and exit"),
};

const pp_settings_table_t apf_settings = {"agent-protocol-forwarder", items, PP_ARRAY_SIZE(items)};

static int set_string(char **slot, const char *v)
{
    char *copy = strdup(v);
    if (copy == NULL)
        return -ENOMEM;
    free(*slot);
    *slot = copy;
    return 0;
}

int apf_config_init(apf_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    pp_error_t err = {0};
    return pp_settings_load(&apf_settings, cfg, 0, NULL, PP_SETTINGS_NO_ENV | PP_SETTINGS_QUIET,
                            &err) < 0
               ? -EINVAL
               : 0;
}

void apf_config_fini(apf_config_t *cfg)
{
    free(cfg->pod_name);
    free(cfg->pod_namespace);
    if (cfg->tls_server_key != NULL)
        explicit_bzero(cfg->tls_server_key, strlen(cfg->tls_server_key));
    if (cfg->pod_network != NULL)
        json_decref(cfg->pod_network);
    free(cfg->tls_server_key);
    free(cfg->tls_server_cert);
    free(cfg->tls_client_ca);
    free(cfg->tls_min_version);
    free(cfg->tls_cipher_suites);
    memset(cfg, 0, sizeof(*cfg));
}

void apf_config_usage(FILE *out, const char *argv0)
{
    fprintf(out, "usage: %s [flags]\n\n", argv0);
    pp_settings_usage(out, &apf_settings);
}

int apf_config_parse_args(apf_config_t *cfg, int argc, char **argv, pp_error_t *err)
{
    int r = pp_settings_load(&apf_settings, cfg, argc > 0 ? argc - 1 : 0, argv + 1, 0, err);
    if (r < 0)
        return r;
    cfg->show_help = r == PP_SETTINGS_HELP;
    /* Checked now, not after waiting for the agent; the host part is
     * checked when listening. */
    const char *colon = strrchr(cfg->listen, ':');
    char *end = NULL;
    long port = colon != NULL ? strtol(colon + 1, &end, 10) : -1;
    if (colon == NULL || end == colon + 1 || *end != '\0' || port < 0 || port > 65535)
        return pp_error_set(err, -EINVAL, "flag `-listen`: expected host:port, got `%s`",
                            cfg->listen);
    if (cfg->netns_path[0] != '/')
        return pp_error_set(err, -EINVAL,
                            "flag `-pod-namespace`: expected an absolute path, got `%s`",
                            cfg->netns_path);
    if ((cfg->cert_file[0] != '\0') != (cfg->cert_key[0] != '\0'))
        return pp_error_set(err, -EINVAL, "flag `%s` is set but `%s` is not: both or neither",
                            cfg->cert_file[0] ? "-cert-file" : "-cert-key",
                            cfg->cert_file[0] ? "-cert-key" : "-cert-file");
    return 0;
}

/* ---- the file ----------------------------------------------------------- */

/* Keys the forwarder knows; anything else is ignored (newer CAAs may send
 * more). Only the type of those not used yet is checked. */
enum key_use { KEY_POD_NAME, KEY_POD_NAMESPACE, KEY_POD_NETWORK, KEY_TLS, KEY_STRING, KEY_SUITES };

#define NO_FIELD ((size_t)-1)

static const struct {
    const char *key;
    json_type type;
    enum key_use use;
    size_t field; /* char * in apf_config_t, for KEY_TLS and KEY_STRING */
} keys[] = {
    {"pod-name", JSON_STRING, KEY_POD_NAME, NO_FIELD},
    {"pod-namespace", JSON_STRING, KEY_POD_NAMESPACE, NO_FIELD},
    {"pod-network", JSON_OBJECT, KEY_POD_NETWORK, NO_FIELD},
    {"tls-server-key", JSON_STRING, KEY_TLS, offsetof(apf_config_t, tls_server_key)},
    {"tls-server-cert", JSON_STRING, KEY_TLS, offsetof(apf_config_t, tls_server_cert)},
    {"tls-client-ca", JSON_STRING, KEY_TLS, offsetof(apf_config_t, tls_client_ca)},
    {"tls-min-version", JSON_STRING, KEY_STRING, offsetof(apf_config_t, tls_min_version)},
    /* Upstream's forwarder reads an array of names; a string is what this
     * project wrote before. */
    {"tls-cipher-suites", JSON_ARRAY, KEY_SUITES, offsetof(apf_config_t, tls_cipher_suites)},
};

static const char *json_type_name(json_type t)
{
    static const char *const names[] = {
        [JSON_OBJECT] = "an object", [JSON_ARRAY] = "an array", [JSON_STRING] = "a string",
        [JSON_INTEGER] = "a number", [JSON_REAL] = "a number",  [JSON_TRUE] = "a boolean",
        [JSON_FALSE] = "a boolean",  [JSON_NULL] = "null",
    };
    return (size_t)t < PP_ARRAY_SIZE(names) && names[t] ? names[t] : "unknown";
}

/* ["A", "B"] -> "A,B". -EINVAL for an item that is not a name. */
static int join_names(json_t *arr, char **out)
{
    pp_buf_t b;
    pp_buf_init(&b, 64 * 1024);
    size_t i;
    json_t *item;
    json_array_foreach(arr, i, item)
    {
        const char *name = json_string_value(item);
        if (name == NULL || name[0] == '\0' || strchr(name, ',') != NULL) {
            pp_buf_free(&b);
            return -EINVAL;
        }
        if ((i > 0 && pp_buf_append_byte(&b, ',') < 0) || pp_buf_printf(&b, "%s", name) < 0) {
            pp_buf_free(&b);
            return -ENOMEM;
        }
    }
    if (pp_buf_append_byte(&b, '\0') < 0) {
        pp_buf_free(&b);
        return -ENOMEM;
    }
    char *s = strdup((const char *)b.data);
    pp_buf_free(&b);
    if (s == NULL)
        return -ENOMEM;
    free(*out);
    *out = s;
    return 0;
}

int apf_config_apply_json(apf_config_t *cfg, const char *text, size_t len, const char *origin,
                          pp_error_t *err)
{
    json_error_t jerr;
    cleanup_json json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return pp_error_set(err, -EINVAL, "config `%s`: line %d column %d: %s", origin, jerr.line,
                            jerr.column, jerr.text);
    if (!json_is_object(root))
        return pp_error_set(err, -EINVAL, "config `%s`: expected a JSON object, got %s", origin,
                            json_type_name(json_typeof(root)));

    for (size_t i = 0; i < PP_ARRAY_SIZE(keys); i++) {
        json_t *v = json_object_get(root, keys[i].key);
        if (v == NULL || json_is_null(v))
            continue;
        if (json_typeof(v) != keys[i].type && !(keys[i].use == KEY_SUITES && json_is_string(v)))
            return pp_error_set(err, -EINVAL, "config `%s`: key `%s`: expected %s, got %s", origin,
                                keys[i].key, json_type_name(keys[i].type),
                                json_type_name(json_typeof(v)));
        int rc = 0;
        switch (keys[i].use) {
        case KEY_POD_NAME:
            rc = set_string(&cfg->pod_name, json_string_value(v));
            break;
        case KEY_POD_NAMESPACE:
            rc = set_string(&cfg->pod_namespace, json_string_value(v));
            break;
        case KEY_POD_NETWORK:
            /* Kept as read; decoded once, when the network is set up
             * (podnet.h). */
            if (cfg->pod_network != NULL)
                json_decref(cfg->pod_network);
            cfg->pod_network = json_incref(v);
            cfg->has_pod_network = 1;
            break;
        case KEY_TLS:
            cfg->has_tls_material |= json_string_length(v) > 0;
            rc = set_string((char **)((char *)cfg + keys[i].field), json_string_value(v));
            break;
        case KEY_STRING:
            rc = set_string((char **)((char *)cfg + keys[i].field), json_string_value(v));
            break;
        case KEY_SUITES:
            if (json_is_string(v)) {
                rc = set_string((char **)((char *)cfg + keys[i].field), json_string_value(v));
                break;
            }
            rc = join_names(v, (char **)((char *)cfg + keys[i].field));
            if (rc == -EINVAL)
                return pp_error_set(err, rc,
                                    "config `%s`: key `%s`: expected an array of names without "
                                    "commas",
                                    origin, keys[i].key);
            break;
        }
        if (rc < 0)
            return pp_error_set(err, rc, "out of memory");
    }
    cfg->file_loaded = 1;
    return 0;
}

int apf_config_load_file(apf_config_t *cfg, pp_error_t *err)
{
    const char *path = cfg->config_path;
    cleanup_free char *text = NULL;
    size_t len;
    int r = pp_file_read(path, APF_CONFIG_MAX, PP_FILE_REGULAR, &text, &len, err);
    if (r == -ENOENT) {
        pp_error_clear(err);
        return 0;
    }
    if (r < 0) {
        pp_error_wrap(err, "config");
        return r;
    }
    return apf_config_apply_json(cfg, text, len, path, err);
}

/* A whole PEM file, for -ca-cert-file, -cert-file and -cert-key. */
static int read_pem(const char *flag, const char *path, char **out, pp_error_t *err)
{
    char *text = NULL;
    size_t len;
    int r = pp_file_read(path, APF_CONFIG_MAX, PP_FILE_REGULAR | PP_FILE_SECRET, &text, &len, NULL);
    if (r == -EINVAL || r == -EFBIG)
        return pp_error_set(err, -EINVAL, "flag `-%s`: `%s` is not a PEM file of at most %u bytes",
                            flag, path, APF_CONFIG_MAX);
    if (r < 0)
        return pp_error_set(err, r, "flag `-%s`: `%s`: %s", flag, path, strerror(-r));
    if (strstr(text, "-----BEGIN ") == NULL) {
        explicit_bzero(text, len);
        free(text);
        return pp_error_set(err, -EINVAL, "flag `-%s`: `%s` holds no PEM block", flag, path);
    }
    pp_secret_free(*out);
    *out = text;
    return 0;
}

int apf_config_load_tls_files(apf_config_t *cfg, pp_error_t *err)
{
    int r = 0;
    if (cfg->ca_cert_file[0] != '\0')
        r = read_pem("ca-cert-file", cfg->ca_cert_file, &cfg->tls_client_ca, err);
    if (r == 0 && cfg->cert_file[0] != '\0') {
        r = read_pem("cert-file", cfg->cert_file, &cfg->tls_server_cert, err);
        if (r == 0)
            r = read_pem("cert-key", cfg->cert_key, &cfg->tls_server_key, err);
    }
    if (r == 0 && (cfg->ca_cert_file[0] != '\0' || cfg->cert_file[0] != '\0'))
        cfg->has_tls_material = 1;
    return r;
}
