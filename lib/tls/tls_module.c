/* The table pp-tls.so exports (tls_ops.h): this library's functions. */
#include "tls/tls_ops.h"

const pp_tls_ops_t pp_tls_ops = {
    .name = "openssl",
    .ca_load_or_create = pp_ca_load_or_create,
    .ca_free = pp_ca_free,
    .ca_can_issue = pp_ca_can_issue,
    .ca_cert_pem = pp_ca_cert_pem,
    .ca_issue_server = pp_ca_issue_server,
    .ca_client_identity = pp_ca_client_identity,
    .ca_secret_free = pp_ca_secret_free,
    .ctx_new = pp_tls_ctx_new,
    .ctx_free = pp_tls_ctx_free,
    .dial = pp_tls_dial,
    .dial_cancel = pp_tls_dial_cancel,
    .initdata_digest = pp_initdata_digest,
};
