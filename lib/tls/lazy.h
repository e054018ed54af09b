/* TLS on demand: the per-node CA, TLS client contexts and the initdata
 * digest, with OpenSSL, in a loadable module (pp-tls.so, util/module.h).
 *
 * Merely mapping libssl and libcrypto costs a process about 2 MiB of
 * resident memory (relocations, symbol binding), before any certificate is
 * read. cloud-api-adaptor links pp_tls_lazy instead of pp_tls and
 * pp_initdata_digest: it has the same functions (the subset of ca.h and
 * tls.h the daemon calls, and pp_initdata_digest()), which call the
 * module's. The daemon loads the module with pp_tls_lazy_load() when the
 * first pod needs TLS or an initdata digest, and checks its TLS settings at
 * start-up in a child process, so that errors are still start-up errors.
 *
 * Until pp_tls_lazy_load() has succeeded, the stand-ins that can fail fail
 * with -ENOSYS (and `err` saying so); the others are never reached, since
 * their arguments can only come from the module. The module is process-wide
 * (as any dlopen) and stays loaded until exit: OpenSSL, which it brings,
 * is never unloaded either. Everything runs on one thread at a time. */
#ifndef PP_TLS_LAZY_H
#define PP_TLS_LAZY_H

#include <stddef.h>
#include <stdint.h>

#include "tls/ca.h"
#include "tls/tls.h"
#include "userdata/initdata.h"
#include "util/error.h"

#define PP_TLS_MODULE_FILE   "pp-tls.so"
#define PP_TLS_MODULE_SYMBOL "pp_tls_module"

/* What the module exports as `pp_tls_module`: the real functions. */
typedef struct pp_tls_module_s {
    int (*ca_load_or_create)(const pp_ca_opts_t *o, pp_ca_t **out, pp_error_t *err);
    void (*ca_free)(pp_ca_t *ca);
    int (*ca_can_issue)(const pp_ca_t *ca);
    const char *(*ca_cert_pem)(const pp_ca_t *ca);
    int (*ca_issue_server)(pp_ca_t *ca, const char *name, const char *ip, int64_t validity_s,
                           char **cert_pem, char **key_pem, pp_error_t *err);
    int (*ca_client_identity)(pp_ca_t *ca, const char *name, const char **cert_pem,
                              const char **key_pem, pp_error_t *err);
    void (*ca_secret_free)(char *secret);
    int (*ctx_new)(pp_tls_role_t role, const pp_tls_config_t *cfg, pp_tls_ctx_t **out,
                   pp_error_t *err);
    void (*ctx_free)(pp_tls_ctx_t *ctx);
    int (*dial)(uv_loop_t *loop, pp_tls_ctx_t *ctx, const struct sockaddr *addr,
                const char *server_name, pp_tls_dial_cb cb, void *data, pp_tls_dial_t **out);
    void (*dial_cancel)(pp_tls_dial_t *d);
    int (*initdata_digest)(pp_initdata_alg_t alg, const void *data, size_t len, uint8_t *out,
                           size_t *out_len);
} pp_tls_module_t;

/* Loads the module from pp_module_dir(module_dir) once; later calls return
 * 0 at once. On failure `err` names the file and why. */
int pp_tls_lazy_load(const char *module_dir, pp_error_t *err);
/* Whether the module is loaded (OpenSSL is mapped). */
int pp_tls_lazy_loaded(void);

#endif
