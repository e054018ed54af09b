#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/loop.h"

enum flag_kind { FLAG_STRING, FLAG_BOOL, FLAG_DURATION, FLAG_BUSY_POLL };

static const struct flag_s {
    const char *name;
    enum flag_kind kind;
    size_t offset;
    const char *help;
} flags[] = {
    {"listen", FLAG_STRING, offsetof(apf_config_t, listen), "listen address (host:port)"},
    {"kata-agent-socket", FLAG_STRING, offsetof(apf_config_t, agent_socket),
     "path to the kata agent socket"},
    {"config", FLAG_STRING, offsetof(apf_config_t, config_path),
     "path to the forwarder config file (read when present)"},
    {"pod-namespace", FLAG_STRING, offsetof(apf_config_t, netns_path),
     "path to the network namespace where the pod runs"},
    {"kata-agent-timeout", FLAG_DURATION, offsetof(apf_config_t, agent_wait_ms),
     "how long to wait for the kata agent socket (e.g. 150s, 500ms)"},
    {"busy-poll-us", FLAG_BUSY_POLL, offsetof(apf_config_t, busy_poll_us),
     "after a quick wake-up, poll this long (microseconds) before sleeping again; 0: never "
     "(default: BUSY_POLL_US, else 0)"},
    {"disable-tls", FLAG_BOOL, offsetof(apf_config_t, disable_tls),
     "serve without TLS (for testing)"},
    {"version", FLAG_BOOL, offsetof(apf_config_t, show_version), "print the version and exit"},
    {"help", FLAG_BOOL, offsetof(apf_config_t, show_help), "print this help and exit"},
    {"h", FLAG_BOOL, offsetof(apf_config_t, show_help), NULL},
};

static char **str_field(apf_config_t *cfg, size_t offset)
{
    return (char **)((char *)cfg + offset);
}

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
    cfg->agent_wait_ms = APF_DEFAULT_AGENT_WAIT_MS;
    cfg->busy_poll_us = PP_LOOP_BUSY_POLL_US;
    if (set_string(&cfg->listen, APF_DEFAULT_LISTEN) < 0 ||
        set_string(&cfg->agent_socket, APF_DEFAULT_AGENT_SOCKET) < 0 ||
        set_string(&cfg->config_path, APF_DEFAULT_CONFIG) < 0 ||
        set_string(&cfg->netns_path, APF_DEFAULT_NETNS) < 0) {
        apf_config_fini(cfg);
        return -ENOMEM;
    }
    return 0;
}

void apf_config_fini(apf_config_t *cfg)
{
    free(cfg->listen);
    free(cfg->agent_socket);
    free(cfg->config_path);
    free(cfg->netns_path);
    free(cfg->pod_name);
    free(cfg->pod_namespace);
    if (cfg->tls_server_key != NULL)
        explicit_bzero(cfg->tls_server_key, strlen(cfg->tls_server_key));
    free(cfg->pod_network_json);
    free(cfg->tls_server_key);
    free(cfg->tls_server_cert);
    free(cfg->tls_client_ca);
    free(cfg->tls_min_version);
    free(cfg->tls_cipher_suites);
    memset(cfg, 0, sizeof(*cfg));
}

void apf_config_usage(FILE *out, const char *argv0)
{
    fprintf(out, "usage: %s [flags]\n", argv0);
    for (size_t i = 0; i < PP_ARRAY_SIZE(flags); i++) {
        if (flags[i].help == NULL)
            continue;
        fprintf(out, "  -%s%s\n        %s\n", flags[i].name,
                flags[i].kind == FLAG_BOOL ? "" : " value", flags[i].help);
    }
}

/* Go-style durations, reduced to what a timeout needs: an unsigned number
 * with an optional unit (ms, s, m); no unit means seconds. */
static int parse_duration_ms(const char *v, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}};
    char *end;
    if (v[0] < '0' || v[0] > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno != 0)
        return -EINVAL;
    for (size_t i = 0; i < PP_ARRAY_SIZE(units); i++) {
        if (strcmp(end, units[i].unit) != 0)
            continue;
        if (n > UINT64_MAX / units[i].ms)
            return -EINVAL;
        *out = (uint64_t)n * units[i].ms;
        return 0;
    }
    return -EINVAL;
}

static int parse_bool(const char *v, int *out)
{
    static const struct {
        const char *word;
        int value;
    } words[] = {{"1", 1}, {"t", 1}, {"true", 1},  {"TRUE", 1},  {"True", 1},
                 {"0", 0}, {"f", 0}, {"false", 0}, {"FALSE", 0}, {"False", 0}};
    for (size_t i = 0; i < PP_ARRAY_SIZE(words); i++) {
        if (strcmp(v, words[i].word) == 0) {
            *out = words[i].value;
            return 0;
        }
    }
    return -EINVAL;
}

static const struct flag_s *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < PP_ARRAY_SIZE(flags); i++)
        if (strlen(flags[i].name) == len && memcmp(flags[i].name, name, len) == 0)
            return &flags[i];
    return NULL;
}

int apf_config_parse_args(apf_config_t *cfg, int argc, char **argv, pp_error_t *err)
{
    /* The one setting also taken from the environment, under the name
     * cloud-api-adaptor uses for it; the flag wins. */
    const char *env = getenv("BUSY_POLL_US");
    if (env != NULL && pp_loop_busy_poll_parse(env, &cfg->busy_poll_us) < 0)
        return pp_error_set(err, -EINVAL,
                            "`BUSY_POLL_US`: expected microseconds from 0 to %u, got `%s`",
                            PP_LOOP_BUSY_POLL_MAX_US, env);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || arg[1] == '\0')
            return pp_error_set(err, -EINVAL, "unexpected argument `%s`", arg);
        const char *name = arg + (arg[1] == '-' ? 2 : 1);
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const struct flag_s *fl = find_flag(name, name_len);
        if (fl == NULL)
            return pp_error_set(err, -EINVAL, "unknown flag `-%.*s`", (int)name_len, name);

        const char *value = eq ? eq + 1 : NULL;
        if (fl->kind == FLAG_BOOL) {
            int *slot = (int *)((char *)cfg + fl->offset);
            if (value == NULL) {
                *slot = 1;
            } else if (parse_bool(value, slot) < 0) {
                return pp_error_set(err, -EINVAL, "flag `-%s`: expected true or false, got `%s`",
                                    fl->name, value);
            }
            continue;
        }
        if (value == NULL) {
            if (i + 1 >= argc)
                return pp_error_set(err, -EINVAL, "flag `-%s` needs a value", fl->name);
            value = argv[++i];
        }
        if (fl->kind == FLAG_DURATION) {
            uint64_t *slot = (uint64_t *)((char *)cfg + fl->offset);
            if (parse_duration_ms(value, slot) < 0)
                return pp_error_set(err, -EINVAL,
                                    "flag `-%s`: expected a duration such as 150s or 500ms, got "
                                    "`%s`",
                                    fl->name, value);
            continue;
        }
        if (fl->kind == FLAG_BUSY_POLL) {
            unsigned *slot = (unsigned *)((char *)cfg + fl->offset);
            if (pp_loop_busy_poll_parse(value, slot) < 0)
                return pp_error_set(err, -EINVAL,
                                    "flag `-%s`: expected microseconds from 0 to %u, got `%s`",
                                    fl->name, PP_LOOP_BUSY_POLL_MAX_US, value);
            continue;
        }
        if (value[0] == '\0')
            return pp_error_set(err, -EINVAL, "flag `-%s` needs a non-empty value", fl->name);
        if (set_string(str_field(cfg, fl->offset), value) < 0)
            return pp_error_set(err, -ENOMEM, "out of memory");
    }
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
    return 0;
}

/* ---- the file ----------------------------------------------------------- */

/* Keys the forwarder knows; anything else is ignored (newer CAAs may send
 * more). Only the type of those not used yet is checked. */
enum key_use { KEY_POD_NAME, KEY_POD_NAMESPACE, KEY_POD_NETWORK, KEY_TLS, KEY_STRING };

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
    {"tls-cipher-suites", JSON_STRING, KEY_STRING, offsetof(apf_config_t, tls_cipher_suites)},
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

static void json_decref_p(json_t **j)
{
    if (*j != NULL)
        json_decref(*j);
}

int apf_config_apply_json(apf_config_t *cfg, const char *text, size_t len, const char *origin,
                          pp_error_t *err)
{
    json_error_t jerr;
    __attribute__((cleanup(json_decref_p))) json_t *root =
        json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
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
        if (json_typeof(v) != keys[i].type)
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
        case KEY_POD_NETWORK: {
            char *text = json_dumps(v, JSON_COMPACT);
            if (text == NULL) {
                rc = -ENOMEM;
                break;
            }
            free(cfg->pod_network_json);
            cfg->pod_network_json = text;
            cfg->has_pod_network = 1;
            break;
        }
        case KEY_TLS:
            cfg->has_tls_material |= json_string_length(v) > 0;
            rc = set_string((char **)((char *)cfg + keys[i].field), json_string_value(v));
            break;
        case KEY_STRING:
            rc = set_string((char **)((char *)cfg + keys[i].field), json_string_value(v));
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
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        return pp_error_set(err, -errno, "config `%s`: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) < 0)
        return pp_error_set(err, -errno, "config `%s`: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return pp_error_set(err, -EINVAL, "config `%s`: not a regular file", path);
    if (st.st_size > (off_t)APF_CONFIG_MAX)
        return pp_error_set(err, -EFBIG, "config `%s`: larger than %u bytes", path, APF_CONFIG_MAX);
    cleanup_free char *text = malloc((size_t)st.st_size + 1);
    if (text == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    size_t have = 0;
    while (have < (size_t)st.st_size) {
        ssize_t n = read(fd, text + have, (size_t)st.st_size - have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return pp_error_set(err, -errno, "config `%s`: %s", path, strerror(errno));
        if (n == 0)
            break;
        have += (size_t)n;
    }
    return apf_config_apply_json(cfg, text, have, path, err);
}
