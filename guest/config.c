#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "toml.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/log.h"

#define LOG "guest-config"

static const char *const key_alg_names[] = {
    [GUEST_KEY_EC_P256] = "ECDH-ES+A256KW-P256",
    [GUEST_KEY_EC_P521] = "ECDH-ES+A256KW-P521",
    [GUEST_KEY_RSA] = "RSA-OAEP-256",
};

const char *guest_key_alg_name(guest_key_alg_t alg)
{
    return (unsigned)alg < PP_ARRAY_SIZE(key_alg_names) ? key_alg_names[alg] : "?";
}

/* ---- typed lookups ---------------------------------------------------------- */

/* `name` is the key as a user wrote it, dotted from the root. */
static int wrong_type(const guest_toml_t *v, const char *name, const char *want, pp_error_t *err)
{
    return pp_error_set(err, -EINVAL, "`%s` (line %u): expected %s, found %s %s", name, v->line,
                        want, v->type == GUEST_TOML_INT ? "an" : "a",
                        guest_toml_type_name(v->type));
}

static int get_table(const guest_toml_t *t, const char *key, const char *name,
                     const guest_toml_t **out, pp_error_t *err)
{
    const guest_toml_t *v = guest_toml_get(t, key);
    *out = NULL;
    if (v == NULL)
        return 0;
    if (v->type != GUEST_TOML_TABLE)
        return wrong_type(v, name, "a table", err);
    *out = v;
    return 1;
}

/* 1 with a copy in *out, 0 when absent. */
static int get_string(const guest_toml_t *t, const char *key, const char *name, char **out,
                      pp_error_t *err)
{
    const guest_toml_t *v = guest_toml_get(t, key);
    if (v == NULL)
        return 0;
    if (v->type != GUEST_TOML_STRING)
        return wrong_type(v, name, "a string", err);
    if (strlen(v->str) != v->len)
        return pp_error_set(err, -EINVAL, "`%s` (line %u): holds a NUL character", name, v->line);
    char *s = strdup(v->str);
    if (s == NULL)
        return pp_error_set(err, -ENOMEM, "`%s`: out of memory", name);
    free(*out);
    *out = s;
    return 1;
}

static int get_bool(const guest_toml_t *t, const char *key, const char *name, int *out,
                    pp_error_t *err)
{
    const guest_toml_t *v = guest_toml_get(t, key);
    if (v == NULL)
        return 0;
    /* Upstream's reader also takes "true" and "false" as strings. */
    if (v->type == GUEST_TOML_STRING &&
        (strcmp(v->str, "true") == 0 || strcmp(v->str, "false") == 0)) {
        *out = v->str[0] == 't';
        return 1;
    }
    if (v->type != GUEST_TOML_BOOL)
        return wrong_type(v, name, "a boolean", err);
    *out = (int)v->num;
    return 1;
}

static int get_int(const guest_toml_t *t, const char *key, const char *name, int64_t lo, int64_t hi,
                   int64_t *out, pp_error_t *err)
{
    const guest_toml_t *v = guest_toml_get(t, key);
    if (v == NULL)
        return 0;
    if (v->type != GUEST_TOML_INT)
        return wrong_type(v, name, "an integer", err);
    if (v->num < lo || v->num > hi)
        return pp_error_set(err, -EINVAL, "`%s` (line %u): %lld is not from %lld to %lld", name,
                            v->line, (long long)v->num, (long long)lo, (long long)hi);
    *out = v->num;
    return 1;
}

/* Warns once for each key of `t` not in `known` (NULL-terminated). */
static void warn_unknown(const guest_toml_t *t, const char *prefix, const char *const *known,
                         const char *file)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->len; i++) {
        const char *k = t->items[i]->key;
        int found = 0;
        for (size_t j = 0; known[j] != NULL && !found; j++)
            found = strcmp(known[j], k) == 0;
        if (!found)
            PP_WARN(LOG, "%s: `%s%s%s` (line %u) is not a setting here: ignored", file, prefix,
                    prefix[0] ? "." : "", k, t->items[i]->line);
    }
}

/* ---- shared values ---------------------------------------------------------- */

static int check_url(char *url, const char *name, pp_error_t *err)
{
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return pp_error_set(err, -EINVAL, "`%s`: `%.64s` is not an http:// or https:// URL", name,
                            url);
    const char *host = url + (url[4] == 's' ? 8 : 7);
    if (*host == 0 || *host == '/')
        return pp_error_set(err, -EINVAL, "`%s`: `%.64s` has no host", name, url);
    for (const char *c = url; *c; c++)
        if (*c <= ' ' || *c == 0x7f || *c == '?' || *c == '#')
            return pp_error_set(err, -EINVAL, "`%s`: `%.64s` holds a character not allowed here",
                                name, url);
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        url[--n] = 0;
    return 0;
}

static int check_pem(const char *pem, const char *name, pp_error_t *err)
{
    if (strstr(pem, "-----BEGIN CERTIFICATE-----") == NULL)
        return pp_error_set(err, -EINVAL, "`%s`: not a PEM certificate (no BEGIN CERTIFICATE line)",
                            name);
    return 0;
}

static int parse_key_alg(const guest_toml_t *t, const char *name, guest_key_alg_t *out,
                         pp_error_t *err)
{
    cleanup_free char *s = NULL;
    int r = get_string(t, "tee_key_algorithm", name, &s, err);
    if (r <= 0)
        return r;
    for (size_t i = 0; i < PP_ARRAY_SIZE(key_alg_names); i++)
        if (strcmp(s, key_alg_names[i]) == 0) {
            *out = (guest_key_alg_t)i;
            return 0;
        }
    return pp_error_set(err, -EINVAL,
                        "`%s`: `%.64s` is not one of ECDH-ES+A256KW-P256, "
                        "ECDH-ES+A256KW-P521, RSA-OAEP-256",
                        name, s);
}

/* A socket address as upstream writes it: unix:///path. */
static int socket_path(char **s, const char *name, pp_error_t *err)
{
    const char *prefix = "unix://";
    if (strncmp(*s, prefix, strlen(prefix)) != 0 || (*s)[strlen(prefix)] != '/')
        return pp_error_set(err, -EINVAL, "`%s`: `%.64s` is not a unix:///path address", name, *s);
    memmove(*s, *s + strlen(prefix), strlen(*s) - strlen(prefix) + 1);
    return 0;
}

static int log_level(const guest_toml_t *root, char *out, size_t size, const char *file,
                     pp_error_t *err)
{
    const guest_toml_t *log;
    int r = get_table(root, "log", "log", &log, err);
    if (r <= 0)
        return r;
    cleanup_free char *level = NULL;
    r = get_string(log, "level", "log.level", &level, err);
    if (r < 0)
        return r;
    static const char *const known[] = {"level", NULL};
    warn_unknown(log, "log", known, file);
    if (r == 0)
        return 0;
    static const char *const levels[] = {"error", "warn", "info", "debug", "trace", NULL};
    for (size_t i = 0; levels[i] != NULL; i++)
        if (strcasecmp(level, levels[i]) == 0) {
            snprintf(out, size, "%s", levels[i]);
            return 0;
        }
    return pp_error_set(err, -EINVAL,
                        "`log.level`: `%.32s` is not one of error, warn, info, "
                        "debug, trace",
                        level);
}

static void kbs_fini(guest_kbs_cfg_t *k)
{
    free(k->url);
    free(k->cert);
    k->url = k->cert = NULL;
}

/* ---- aa.toml ---------------------------------------------------------------- */

void guest_aa_cfg_init(guest_aa_cfg_t *c)
{
    memset(c, 0, sizeof(*c));
    c->init_pcr = 17;
    snprintf(c->log_level, sizeof(c->log_level), "info");
}

void guest_aa_cfg_fini(guest_aa_cfg_t *c)
{
    kbs_fini(&c->kbs);
}

static void toml_freep(guest_toml_t **t)
{
    guest_toml_free(*t);
}

static int aa_parse(const guest_toml_t *root, guest_aa_cfg_t *c, pp_error_t *err)
{
    const char *file = "aa.toml";
    static const char *const top[] = {"token_configs", "eventlog_config", "log", NULL};
    warn_unknown(root, "", top, file);

    const guest_toml_t *tc, *kbs, *ev;
    int r = get_table(root, "token_configs", "token_configs", &tc, err);
    if (r < 0)
        return r;
    static const char *const tc_keys[] = {"kbs", "coco_as", NULL};
    warn_unknown(tc, "token_configs", tc_keys, file);
    c->coco_as = guest_toml_get(tc, "coco_as") != NULL;
    if (c->coco_as)
        PP_WARN(LOG, "%s: `token_configs.coco_as` is not served here: GetToken serves `kbs` only",
                file);
    r = get_table(tc, "kbs", "token_configs.kbs", &kbs, err);
    if (r < 0)
        return r;
    if (kbs != NULL) {
        static const char *const kbs_keys[] = {"url", "cert", "tee_key_algorithm", NULL};
        warn_unknown(kbs, "token_configs.kbs", kbs_keys, file);
        r = get_string(kbs, "url", "token_configs.kbs.url", &c->kbs.url, err);
        if (r < 0)
            return r;
        if (r == 0)
            return pp_error_set(err, -EINVAL,
                                "`token_configs.kbs.url` is required in "
                                "[token_configs.kbs]");
        if ((r = check_url(c->kbs.url, "token_configs.kbs.url", err)) < 0)
            return r;
        r = get_string(kbs, "cert", "token_configs.kbs.cert", &c->kbs.cert, err);
        if (r < 0 || (r > 0 && (r = check_pem(c->kbs.cert, "token_configs.kbs.cert", err)) < 0))
            return r;
        if ((r = parse_key_alg(kbs, "token_configs.kbs.tee_key_algorithm", &c->kbs.key_alg, err)) <
            0)
            return r;
    }
    r = get_table(root, "eventlog_config", "eventlog_config", &ev, err);
    if (r < 0)
        return r;
    static const char *const ev_keys[] = {"init_pcr", "enable_eventlog", NULL};
    warn_unknown(ev, "eventlog_config", ev_keys, file);
    int64_t pcr = 0;
    r = get_int(ev, "init_pcr", "eventlog_config.init_pcr", 0, GUEST_PCR_MAX, &pcr, err);
    if (r < 0)
        return r;
    if (r > 0)
        c->init_pcr = (unsigned)pcr;
    if ((r = get_bool(ev, "enable_eventlog", "eventlog_config.enable_eventlog", &c->eventlog,
                      err)) < 0)
        return r;
    return log_level(root, c->log_level, sizeof(c->log_level), file, err);
}

int guest_aa_cfg_parse(const char *text, size_t len, guest_aa_cfg_t *c, pp_error_t *err)
{
    guest_aa_cfg_init(c);
    __attribute__((cleanup(toml_freep))) guest_toml_t *root = NULL;
    int r = guest_toml_parse(text, len, &root, err);
    if (r == 0)
        r = aa_parse(root, c, err);
    if (r < 0) {
        guest_aa_cfg_fini(c);
        guest_aa_cfg_init(c);
    }
    return r;
}

/* ---- cdh.toml --------------------------------------------------------------- */

void guest_cdh_cfg_init(guest_cdh_cfg_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->log_level, sizeof(c->log_level), "info");
}

void guest_cdh_cfg_fini(guest_cdh_cfg_t *c)
{
    free(c->socket);
    free(c->aa_socket);
    kbs_fini(&c->kbs);
    for (size_t i = 0; i < c->ncreds; i++) {
        free(c->creds[i].resource_uri);
        free(c->creds[i].path);
    }
    free(c->creds);
    c->creds = NULL;
    c->ncreds = 0;
    c->socket = c->aa_socket = NULL;
}

static int cdh_creds(const guest_toml_t *root, guest_cdh_cfg_t *c, pp_error_t *err)
{
    const guest_toml_t *a = guest_toml_get(root, "credentials");
    if (a == NULL)
        return 0;
    if (a->type != GUEST_TOML_ARRAY)
        return wrong_type(a, "credentials", "an array of tables", err);
    c->creds = calloc(a->len ? a->len : 1, sizeof(*c->creds));
    if (c->creds == NULL)
        return pp_error_set(err, -ENOMEM, "`credentials`: out of memory");
    for (size_t i = 0; i < a->len; i++) {
        const guest_toml_t *t = a->items[i];
        char name[64];
        if (t->type != GUEST_TOML_TABLE)
            return wrong_type(t, "credentials", "an array of tables", err);
        guest_cred_t *cr = &c->creds[c->ncreds++];
        snprintf(name, sizeof(name), "credentials[%zu].resource_uri", i);
        int r = get_string(t, "resource_uri", name, &cr->resource_uri, err);
        if (r == 0)
            r = pp_error_set(err, -EINVAL, "`%s` is required", name);
        if (r < 0)
            return r;
        snprintf(name, sizeof(name), "credentials[%zu].path", i);
        r = get_string(t, "path", name, &cr->path, err);
        if (r == 0)
            r = pp_error_set(err, -EINVAL, "`%s` is required", name);
        if (r < 0)
            return r;
        /* Written in clear: only to the tmpfs /run, never to a disk. */
        if (strncmp(cr->path, "/run/", 5) != 0 || strstr(cr->path, "/../") != NULL ||
            cr->path[strlen(cr->path) - 1] == '/')
            return pp_error_set(err, -EINVAL,
                                "`%s`: `%.64s` is not a file under /run (a "
                                "credential is written in clear, so only to the tmpfs)",
                                name, cr->path);
    }
    return 0;
}

static int cdh_parse(const guest_toml_t *root, guest_cdh_cfg_t *c, pp_error_t *err)
{
    const char *file = "cdh.toml";
    static const char *const top[] = {"socket",      "kbc",   "aa",
                                      "credentials", "image", "skip_sealed_secret_verification",
                                      "log",         NULL};
    warn_unknown(root, "", top, file);
    int r = get_string(root, "socket", "socket", &c->socket, err);
    if (r < 0 || (r > 0 && (r = socket_path(&c->socket, "socket", err)) < 0))
        return r;
    if ((r = get_bool(root, "skip_sealed_secret_verification", "skip_sealed_secret_verification",
                      &c->skip_verification, err)) < 0)
        return r;
    if (guest_toml_get(root, "image") != NULL)
        PP_WARN(LOG, "%s: `[image]` is accepted but image pulls are not served here", file);

    const guest_toml_t *kbc, *aa;
    r = get_table(root, "kbc", "kbc", &kbc, err);
    if (r < 0)
        return r;
    if (r == 0)
        return pp_error_set(err, -EINVAL, "`[kbc]` is required (name = \"cc_kbc\", url = ...)");
    static const char *const kbc_keys[] = {"name", "url", "kbs_cert", NULL};
    warn_unknown(kbc, "kbc", kbc_keys, file);
    cleanup_free char *name = NULL;
    r = get_string(kbc, "name", "kbc.name", &name, err);
    if (r == 0)
        r = pp_error_set(err, -EINVAL, "`kbc.name` is required");
    if (r < 0)
        return r;
    if (strcmp(name, "cc_kbc") == 0)
        c->kbc = GUEST_KBC_CC;
    else if (strcmp(name, "offline_fs_kbc") == 0)
        c->kbc = GUEST_KBC_OFFLINE_FS;
    else
        return pp_error_set(err, -EINVAL,
                            "`kbc.name`: `%.32s` is not one of cc_kbc, "
                            "offline_fs_kbc",
                            name);
    r = get_string(kbc, "url", "kbc.url", &c->kbs.url, err);
    if (r < 0)
        return r;
    if (r == 0 && c->kbc == GUEST_KBC_CC)
        return pp_error_set(err, -EINVAL, "`kbc.url` is required with cc_kbc");
    if (r > 0 && (r = check_url(c->kbs.url, "kbc.url", err)) < 0)
        return r;
    r = get_string(kbc, "kbs_cert", "kbc.kbs_cert", &c->kbs.cert, err);
    if (r < 0 || (r > 0 && (r = check_pem(c->kbs.cert, "kbc.kbs_cert", err)) < 0))
        return r;

    r = get_table(root, "aa", "aa", &aa, err);
    if (r < 0)
        return r;
    static const char *const aa_keys[] = {"aa_socket", NULL};
    warn_unknown(aa, "aa", aa_keys, file);
    r = get_string(aa, "aa_socket", "aa.aa_socket", &c->aa_socket, err);
    if (r < 0 || (r > 0 && (r = socket_path(&c->aa_socket, "aa.aa_socket", err)) < 0))
        return r;
    if ((r = cdh_creds(root, c, err)) < 0)
        return r;
    return log_level(root, c->log_level, sizeof(c->log_level), file, err);
}

int guest_cdh_cfg_parse(const char *text, size_t len, guest_cdh_cfg_t *c, pp_error_t *err)
{
    guest_cdh_cfg_init(c);
    __attribute__((cleanup(toml_freep))) guest_toml_t *root = NULL;
    int r = guest_toml_parse(text, len, &root, err);
    if (r == 0)
        r = cdh_parse(root, c, err);
    if (r == 0 && c->socket == NULL && (c->socket = strdup(GUEST_CDH_SOCKET)) == NULL)
        r = pp_error_set(err, -ENOMEM, "out of memory");
    if (r == 0 && c->aa_socket == NULL && (c->aa_socket = strdup(GUEST_AA_SOCKET)) == NULL)
        r = pp_error_set(err, -ENOMEM, "out of memory");
    if (r < 0) {
        guest_cdh_cfg_fini(c);
        guest_cdh_cfg_init(c);
    }
    return r;
}

/* ---- files ------------------------------------------------------------------ */

#define CONFIG_MAX (256u * 1024)

int guest_aa_cfg_load(const char *path, guest_aa_cfg_t *c, pp_error_t *err)
{
    cleanup_free char *text = NULL;
    size_t len;
    guest_aa_cfg_init(c);
    int r = pp_file_read(path, CONFIG_MAX, PP_FILE_REGULAR, &text, &len, err);
    if (r == 0 && (r = guest_aa_cfg_parse(text, len, c, err)) < 0)
        pp_error_wrap(err, "`%s`", path);
    return r;
}

int guest_cdh_cfg_load(const char *path, guest_cdh_cfg_t *c, pp_error_t *err)
{
    cleanup_free char *text = NULL;
    size_t len;
    guest_cdh_cfg_init(c);
    int r = pp_file_read(path, CONFIG_MAX, PP_FILE_REGULAR, &text, &len, err);
    if (r == 0 && (r = guest_cdh_cfg_parse(text, len, c, err)) < 0)
        pp_error_wrap(err, "`%s`", path);
    return r;
}
