/* Internal to lib/tls: the context as the connection code sees it. */
#ifndef PP_TLS_TLS_INT_H
#define PP_TLS_TLS_INT_H

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include "tls/tls.h"

struct pp_tls_ctx_s {
    int refs; /* atomic: loops on several threads may share a context */
    pp_tls_role_t role;
    SSL_CTX *ssl_ctx;
    /* The in-memory BIO connections are made with; it must outlive them,
     * which the reference count sees to. */
    BIO_METHOD *bio_method;
    unsigned timeout_ms;
    int verify_peer;
    pp_metric_t *handshake_failures; /* NULL: not counted */
};

pp_tls_ctx_t *pp__tls_ctx_ref(pp_tls_ctx_t *ctx);

/* Fills `buf` with the reason OpenSSL gives for the first queued error and
 * clears the queue; "unknown error" when it is empty. */
const char *pp__tls_ssl_reason(char *buf, size_t n);

#endif
