/* The daemon's TLS: the TLS module (tls/tls_ops.h) with its table, the
 * per-node CA that issues each pod VM's server certificate, and the client
 * context of the links to the forwarders. The module, and OpenSSL with it,
 * is mapped only when the first pod needs it (docs/design/memory.md); the
 * settings are still checked at start-up. Everything else reaches the
 * module through the thin wrappers below. Loop thread only. */
#ifndef CAA_TLSMOD_H
#define CAA_TLSMOD_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "tls/tls_ops.h"
#include "ttrpc/link.h"
#include "userdata/initdata.h"
#include "util/error.h"
#include "util/module.h"

typedef struct caa_tls_s {
    pp_module_t *module;     /* pp-tls.so, once loaded */
    const pp_tls_ops_t *ops; /* its table; NULL until loaded */
    pp_ca_t *ca;             /* NULL until ready, and with TLS disabled */
    pp_tls_ctx_t *client;    /* NULL until ready; NULL when ready = plaintext */
    pp_metrics_t *metrics;   /* where failed handshakes are counted, or NULL */
} caa_tls_t;

/* At start-up: checks the TLS settings the way the first pod will use them,
 * in a child process, so that the daemon itself maps nothing yet and a bad
 * setting still stops it, named (in automatic mode the child also creates
 * the CA when there is none). With `now` (there are pods to recover, whose
 * proxies need TLS at once) makes it ready instead. With TLS disabled it
 * only warns. */
int caa_tls_check(caa_tls_t *t, const caa_config_t *cfg, int now, pp_error_t *err);
/* Loads the module (for the initdata digest); 0 at once when loaded. */
int caa_tls_load(caa_tls_t *t, const caa_config_t *cfg, pp_error_t *err);
/* Makes the CA and the client context at the first call (loading the
 * module); 0 at once when they exist or TLS is disabled. */
int caa_tls_ready(caa_tls_t *t, const caa_config_t *cfg, pp_error_t *err);
/* Frees what was made, then closes the module. */
void caa_tls_fini(caa_tls_t *t);

/* ---- through the table; the module must be loaded ----------------------- */

/* Whether the CA can issue certificates (automatic mode); 0 without one. */
int caa_tls_can_issue(const caa_tls_t *t);
/* The CA certificate (PEM), or NULL (no CA, or manual mode without one). */
const char *caa_tls_ca_pem(const caa_tls_t *t);
/* A pod VM's server certificate and a fresh key for `name` (ca.h). */
int caa_tls_issue_server(caa_tls_t *t, const char *name, int64_t validity_s, char **cert_pem,
                         char **key_pem, pp_error_t *err);
/* Wipes and frees a key from caa_tls_issue_server() (NULL is fine). */
void caa_tls_secret_free(const caa_tls_t *t, char *secret);
/* A link to a forwarder that dials with the client context and the
 * module's dial (tls.h pp_tls_link_new()). */
int caa_tls_link_new(const caa_tls_t *t, uv_loop_t *loop, const pp_ttrpc_link_opts_t *o,
                     const struct sockaddr *addr, const char *server_name, pp_ttrpc_link_t **out);
/* pp_initdata_parse() with the module's digest. */
int caa_tls_initdata_parse(const caa_tls_t *t, const void *toml, size_t len, pp_initdata_t *out,
                           pp_error_t *err);

#endif
