/* The daemon's TLS: the per-node CA that issues each pod VM's server
 * certificate, and the client context of the links to the forwarders. Both
 * come from the TLS module (tls/lazy.h), so OpenSSL is mapped only when the
 * first pod needs it (docs/design/memory.md); the settings are still
 * checked at start-up. Loop thread only. */
#ifndef CAA_TLSMOD_H
#define CAA_TLSMOD_H

#include "config.h"
#include "tls/ca.h"
#include "tls/tls.h"
#include "util/error.h"

typedef struct caa_tls_s {
    pp_ca_t *ca;          /* NULL until ready, and with TLS disabled */
    pp_tls_ctx_t *client; /* NULL until ready; NULL when ready = plaintext */
} caa_tls_t;

/* At start-up: checks the TLS settings the way the first pod will use them,
 * in a child process, so that the daemon itself maps nothing yet and a bad
 * setting still stops it, named (in automatic mode the child also creates
 * the CA when there is none). With `now` (there are pods to recover, whose
 * proxies need TLS at once) makes it ready instead. With TLS disabled it
 * only warns. */
int caa_tls_check(caa_tls_t *t, const caa_config_t *cfg, int now, pp_error_t *err);
/* Makes the CA and the client context at the first call (the TLS module is
 * mapped then); 0 at once when they exist or TLS is disabled. */
int caa_tls_ready(caa_tls_t *t, const caa_config_t *cfg, pp_error_t *err);
/* Frees what caa_tls_ready() made. */
void caa_tls_fini(caa_tls_t *t);

#endif
