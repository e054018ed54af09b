/* The user data each pod VM gets: the forwarder's configuration (apf.json)
 * and, when given, the pod's initdata, as #cloud-config. */
#include "userdata.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tlsmod.h"
#include "net/net.h"
#include "userdata/cloudconfig.h"
#include "userdata/initdata.h"
#include "util/buf.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/settings.h"

/* TLS_CIPHER_SUITES as upstream's forwarder reads it: an array of names.
 * NULL (which jansson's setters refuse) when out of memory. */
static json_t *suite_names(const char *list)
{
    json_t *a = json_array();
    const char *cur = list, *item;
    size_t len;
    while (a != NULL && pp_list_next(&cur, &item, &len)) {
        if (json_array_append_new(a, json_stringn(item, len)) < 0) {
            json_decref(a);
            a = NULL;
        }
    }
    return a;
}

/* The forwarder's certificate, issued for the instance name, and the CA
 * that CAA's client certificate comes from. */
static int tls_material(caa_daemon_t *d, caa_sandbox_t *sb, json_t *root, pp_error_t *err)
{
    int r = caa_tls_ready(&d->tls, &d->cfg, err);
    if (r < 0)
        return r;
    if (d->tls.ca == NULL)
        return 0;
    if (caa_tls_can_issue(&d->tls)) {
        cleanup_free char *cert = NULL;
        cleanup_secret char *key = NULL;
        r = caa_tls_issue_server(&d->tls, sb->instance_name, PP_CA_ISSUE_VALIDITY_S, &cert, &key,
                                 err);
        if (r < 0)
            return pp_error_wrap(err, "certificate for `%s`", sb->instance_name);
        r |= json_object_set_new(root, "tls-server-key", json_string(key));
        r |= json_object_set_new(root, "tls-server-cert", json_string(cert));
    }
    r |= json_object_set_new(root, "tls-client-ca", json_string(caa_tls_ca_pem(&d->tls)));
    if (d->cfg.tls_min_version[0])
        r |= json_object_set_new(root, "tls-min-version", json_string(d->cfg.tls_min_version));
    if (d->cfg.tls_cipher_suites[0])
        r |= json_object_set_new(root, "tls-cipher-suites", suite_names(d->cfg.tls_cipher_suites));
    return r == 0 ? 0 : pp_error_set(err, -ENOMEM, "out of memory");
}

static int apf_json(caa_daemon_t *d, caa_sandbox_t *sb, char **out, pp_error_t *err)
{
    cleanup_json json_t *root = json_object();
    if (root == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    int r = json_object_set_new(root, "pod-namespace", json_string(sb->pod_namespace));
    r |= json_object_set_new(root, "pod-name", json_string(sb->pod_name));
    if (r == 0 && tls_material(d, sb, root, err) < 0)
        return err->code;
    if (r == 0 && sb->podnet != NULL) {
        json_t *pn;
        if (pp_podnet_to_json(sb->podnet, &pn, err) < 0)
            return err->code;
        r |= json_object_set_new(root, "pod-network", pn);
    }
    char *s = r == 0 ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (s == NULL)
        return pp_error_set(err, -EINVAL, "apf.json: annotations are not valid UTF-8");
    *out = s;
    return 0;
}

#define AUTH_JSON_MAX (64 * 1024)

static int initdata(caa_daemon_t *d, caa_sandbox_t *sb, const char *annotation, pp_buf_t *out,
                    pp_error_t *err);

/* Image pull credentials, read anew for each pod VM so that a rotated
 * secret is used at once. Absent file: none. */
static int auth_json(caa_daemon_t *d, char **out, pp_error_t *err)
{
    const char *path = d->cfg.auth_json_file;
    *out = NULL;
    if (path[0] == '\0')
        return 0;
    json_error_t je;
    cleanup_free char *text = NULL;
    size_t n = 0;
    int r = pp_file_read(path, AUTH_JSON_MAX, PP_FILE_SECRET, &text, &n, NULL);
    if (r == -ENOENT)
        return 0;
    if (r == -EFBIG)
        return pp_error_set(err, -EFBIG, "`AUTH_JSON_FILE` `%s` is over %d bytes", path,
                            AUTH_JSON_MAX);
    if (r < 0)
        return pp_error_set(err, r, "`AUTH_JSON_FILE` `%s`: %s", path, strerror(-r));
    cleanup_json json_t *j = json_loadb(text, n, 0, &je);
    if (j == NULL || !json_is_object(j)) {
        /* All of it: a NUL may hide the rest from a wipe by length. */
        explicit_bzero(text, n);
        /* The position only: the text holds credentials. */
        return pp_error_set(err, -EINVAL, "`AUTH_JSON_FILE` `%s` is not a JSON object (line %d)",
                            path, je.line);
    }
    *out = PP_STEAL(text);
    return 0;
}

/* The pod's initdata: the annotation (raw TOML), else the INITDATA setting
 * (gzip+base64). It is checked here, so a bad one fails CreateVM, and goes
 * to the VM gzip+base64 in `out` (empty when there is none). */
int caa_initdata_prepare(caa_daemon_t *d, caa_sandbox_t *sb, const char *annotation,
                         pp_error_t *err)
{
    cleanup_buf pp_buf_t enc;
    pp_buf_init(&enc, 0);
    int r = initdata(d, sb, annotation, &enc, err);
    if (r < 0 || enc.len == 0)
        return r;
    if ((r = pp_buf_append_byte(&enc, 0)) < 0)
        return pp_error_set(err, r, "out of memory");
    free(sb->initdata_b64);
    sb->initdata_b64 = (char *)pp_buf_steal(&enc, NULL);
    return 0;
}

static int initdata(caa_daemon_t *d, caa_sandbox_t *sb, const char *annotation, pp_buf_t *out,
                    pp_error_t *err)
{
    cleanup_buf pp_buf_t toml;
    pp_buf_init(&toml, 0);
    const char *what = "annotation `io.katacontainers.config.hypervisor.cc_init_data`";
    int r = 0;
    if (annotation != NULL && annotation[0] != '\0') {
        r = pp_buf_append(&toml, annotation, strlen(annotation));
    } else if (d->cfg.initdata[0] != '\0') {
        what = "setting `INITDATA`";
        r = pp_initdata_decode(d->cfg.initdata, strlen(d->cfg.initdata), 0, &toml, err);
        if (r < 0)
            return pp_error_set_status(err, PP_GRPC_INVALID_ARGUMENT, -EINVAL,
                                       "%s is not gzip+base64 initdata: %s", what, err->message);
    }
    if (r < 0 || toml.len == 0)
        return r;
    pp_initdata_t id;
    /* The digest comes from the TLS module (tlsmod.h). */
    r = caa_tls_load(&d->tls, &d->cfg, err);
    if (r < 0)
        return r;
    r = caa_tls_initdata_parse(&d->tls, toml.data, toml.len, &id, err);
    if (r < 0)
        return pp_error_set_status(err, PP_GRPC_INVALID_ARGUMENT, -EINVAL, "%s: %s", what,
                                   err->message);
    snprintf(sb->initdata_digest, sizeof(sb->initdata_digest), "%s", id.digest_hex);
    pp_initdata_free(&id);
    return pp_initdata_encode(toml.data, toml.len, out, err);
}

static int too_big(caa_daemon_t *d, caa_sandbox_t *sb, size_t max, pp_error_t *err)
{
    return pp_error_set(err, -EINVAL,
                        "user data for `%s` is over the `%s` provider's limit of %zu bytes", sb->id,
                        d->provider->ops->name, max);
}

int caa_userdata_check(caa_daemon_t *d, caa_sandbox_t *sb, pp_error_t *err)
{
    int r = caa_tls_ready(&d->tls, &d->cfg, err);
    if (r < 0)
        return r;
    size_t max = d->provider->ops->user_data_max;
    if (max == 0)
        return 0;
    /* Each file's content is in the document at least once, whole. */
    size_t least = sb->initdata_b64 != NULL ? strlen(sb->initdata_b64) : 0;
    struct stat st;
    const char *auth = d->cfg.auth_json_file;
    if (auth[0] != '\0' && stat(auth, &st) == 0 && S_ISREG(st.st_mode))
        least += (size_t)st.st_size;
    return least > max ? too_big(d, sb, max, err) : 0;
}

int caa_userdata_build(caa_daemon_t *d, caa_sandbox_t *sb, pp_error_t *err)
{
    /* Both hold secrets: the forwarder's key, the pull credentials. */
    cleanup_secret char *apf = NULL;
    cleanup_secret char *auth = NULL;
    int r = apf_json(d, sb, &apf, err);
    if (r < 0)
        return r;
    pp_userdata_file_t files[4] = {{"/run/peerpod/apf.json", apf, strlen(apf)}};
    size_t n = 1;
    r = auth_json(d, &auth, err);
    if (r < 0)
        return r;
    if (auth != NULL) {
        files[n].path = "/run/peerpod/auth.json";
        files[n].content = auth;
        files[n].len = strlen(auth);
        n++;
    }
    if (sb->initdata_b64 != NULL) {
        files[n].path = "/run/peerpod/initdata";
        files[n].content = sb->initdata_b64;
        files[n].len = strlen(sb->initdata_b64);
        n++;
    }
    if (d->cfg.enable_scratch_space) {
        /* As upstream's daemon: an empty marker, which the pod VM image acts
         * on. */
        files[n].path = "/run/peerpod/scratch-space.marker";
        files[n].content = "";
        files[n].len = 0;
        n++;
    }
    cleanup_buf pp_buf_t b;
    size_t max = d->provider->ops->user_data_max;
    pp_buf_init(&b, max);
    r = pp_cloudconfig_build(files, n, &b, err);
    if (r == 0)
        r = pp_buf_append_byte(&b, 0);
    if (r == -EMSGSIZE)
        return too_big(d, sb, max, err);
    if (r < 0)
        return r;
    caa_sandbox_forget_user_data(sb);
    sb->user_data_len = b.len - 1;
    sb->user_data = (char *)pp_buf_steal(&b, NULL);
    return 0;
}
