/* The TLS module: the per-node CA, TLS client contexts and dials, and the
 * initdata digest, with OpenSSL, behind one const operation table.
 *
 * Merely mapping libssl and libcrypto costs a process about 2 MiB of
 * resident memory (relocations, symbol binding) before any certificate is
 * read (docs/design/memory.md). So cloud-api-adaptor links no OpenSSL: it
 * loads the module pp-tls.so with pp_tls_ops_load() when the first pod
 * needs TLS or an initdata digest, keeps the module and its table in its
 * context, and calls through the table (caa/tlsmod.h). Programs that map
 * OpenSSL anyway (the forwarder, process-user-data, the tests) link pp_tls
 * and call ca.h and tls.h directly; the table in the module holds those
 * same functions.
 *
 * The module carries its own copies of the static libraries it links; what
 * crosses the boundary is this table, the structures of ca.h and tls.h that
 * its functions take, pp_error_t, pp_stream_filter_t and libuv's handles.
 * The loader checks the module ABI stamp derived from them (util/module.h).
 * Everything runs on one thread at a time. */
#ifndef PP_TLS_TLS_OPS_H
#define PP_TLS_TLS_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "tls/ca.h"
#include "tls/tls.h"
#include "userdata/initdata.h"
#include "util/error.h"
#include "util/module.h"

#define PP_TLS_MODULE_FILE   "pp-tls.so"
#define PP_TLS_MODULE_SYMBOL "pp_tls_ops"

typedef struct pp_tls_ops_s {
    const char *name; /* the library behind it: "openssl" */
    /* ca.h */
    int (*ca_load_or_create)(const pp_ca_opts_t *o, pp_ca_t **out, pp_error_t *err);
    void (*ca_free)(pp_ca_t *ca);
    int (*ca_can_issue)(const pp_ca_t *ca);
    const char *(*ca_cert_pem)(const pp_ca_t *ca);
    int (*ca_issue_server)(pp_ca_t *ca, const char *name, const char *ip, int64_t validity_s,
                           char **cert_pem, char **key_pem, pp_error_t *err);
    int (*ca_client_identity)(pp_ca_t *ca, const char *name, const char **cert_pem,
                              const char **key_pem, pp_error_t *err);
    void (*ca_secret_free)(char *secret);
    /* tls.h */
    int (*ctx_new)(pp_tls_role_t role, const pp_tls_config_t *cfg, pp_tls_ctx_t **out,
                   pp_error_t *err);
    void (*ctx_free)(pp_tls_ctx_t *ctx);
    int (*dial)(uv_loop_t *loop, pp_tls_ctx_t *ctx, const struct sockaddr *addr,
                const char *server_name, pp_tls_dial_cb cb, void *data, pp_tls_dial_t **out);
    void (*dial_cancel)(pp_tls_dial_t *d);
    /* userdata/initdata.h */
    pp_initdata_digest_fn initdata_digest;
} pp_tls_ops_t;

/* Loads pp-tls.so from pp_module_dir(module_dir) (util/module.h) and finds
 * its table. On success `*module` is open and `*ops` points into it until
 * pp_module_close(*module), which must wait until everything made through
 * the table is freed. On failure `err` names the file and why. */
int pp_tls_ops_load(const char *module_dir, pp_module_t **module, const pp_tls_ops_t **ops,
                    pp_error_t *err);

#endif
