/* Stand-ins for the TLS functions cloud-api-adaptor calls, which load
 * nothing themselves and call the module's (lazy.h). */
#include "tls/lazy.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>

#include "util/module.h"

/* Process-wide, like the dlopen behind them: set once, never cleared. */
static pp_module_t *module;
static const pp_tls_module_t *api;

int pp_tls_lazy_load(const char *module_dir, pp_error_t *err)
{
    if (api != NULL)
        return 0;
    char dir[PATH_MAX];
    int r = pp_module_dir(module_dir, dir, sizeof(dir));
    if (r < 0)
        return pp_error_set(err, r, "module directory `%s` is too long", module_dir);
    pp_module_t *m;
    if ((r = pp_module_open(dir, PP_TLS_MODULE_FILE, &m, err)) < 0)
        return pp_error_wrap(err, "TLS");
    const pp_tls_module_t *t = pp_module_sym(m, PP_TLS_MODULE_SYMBOL, err);
    if (t == NULL) {
        pp_module_close(m);
        return pp_error_wrap(err, "TLS");
    }
    /* Kept open until exit (lazy.h). */
    module = m;
    api = t;
    return 0;
}

int pp_tls_lazy_loaded(void)
{
    return api != NULL;
}

static int not_loaded(pp_error_t *err)
{
    return pp_error_set(err, -ENOSYS, "TLS: the TLS module is not loaded");
}

int pp_ca_load_or_create(const pp_ca_opts_t *o, pp_ca_t **out, pp_error_t *err)
{
    return api != NULL ? api->ca_load_or_create(o, out, err) : not_loaded(err);
}

void pp_ca_free(pp_ca_t *ca)
{
    if (api != NULL)
        api->ca_free(ca);
}

int pp_ca_can_issue(const pp_ca_t *ca)
{
    return api != NULL && api->ca_can_issue(ca);
}

const char *pp_ca_cert_pem(const pp_ca_t *ca)
{
    return api != NULL ? api->ca_cert_pem(ca) : NULL;
}

int pp_ca_issue_server(pp_ca_t *ca, const char *name, const char *ip, int64_t validity_s,
                       char **cert_pem, char **key_pem, pp_error_t *err)
{
    return api != NULL ? api->ca_issue_server(ca, name, ip, validity_s, cert_pem, key_pem, err)
                       : not_loaded(err);
}

int pp_ca_client_identity(pp_ca_t *ca, const char *name, const char **cert_pem,
                          const char **key_pem, pp_error_t *err)
{
    return api != NULL ? api->ca_client_identity(ca, name, cert_pem, key_pem, err)
                       : not_loaded(err);
}

void pp_ca_secret_free(char *secret)
{
    if (api != NULL)
        api->ca_secret_free(secret);
    else
        free(secret);
}

int pp_tls_ctx_new(pp_tls_role_t role, const pp_tls_config_t *cfg, pp_tls_ctx_t **out,
                   pp_error_t *err)
{
    return api != NULL ? api->ctx_new(role, cfg, out, err) : not_loaded(err);
}

void pp_tls_ctx_free(pp_tls_ctx_t *ctx)
{
    if (api != NULL)
        api->ctx_free(ctx);
}

int pp_tls_dial(uv_loop_t *loop, pp_tls_ctx_t *ctx, const struct sockaddr *addr,
                const char *server_name, pp_tls_dial_cb cb, void *data, pp_tls_dial_t **out)
{
    return api != NULL ? api->dial(loop, ctx, addr, server_name, cb, data, out) : -ENOSYS;
}

void pp_tls_dial_cancel(pp_tls_dial_t *d)
{
    if (api != NULL)
        api->dial_cancel(d);
}

int pp_initdata_digest(pp_initdata_alg_t alg, const void *data, size_t len, uint8_t *out,
                       size_t *out_len)
{
    return api != NULL ? api->initdata_digest(alg, data, len, out, out_len) : -ENOSYS;
}
