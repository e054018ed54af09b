/* A per-node certificate authority for the mutual TLS between
 * cloud-api-adaptor and agent-protocol-forwarder.
 *
 * Automatic mode: the CA (ECDSA P-256, self-signed) is created on first
 * start in a directory and loaded from it afterwards: `ca.crt` (0644) and
 * `ca.key` (0600; written to a temporary file created 0600, fsynced and
 * renamed, so it is never readable by others, not even briefly, and never
 * half written). It issues each pod VM's server certificate and the
 * adaptor's client certificate.
 *
 * Manual mode (CACERT_FILE, CERT_FILE, CERT_KEY): the CA certificate that
 * server certificates must chain to and the adaptor's own client
 * certificate and key are loaded from files; nothing is issued.
 *
 * Issued certificates: ECDSA P-256 keys, random 128-bit serials, SHA-256
 * signatures, basicConstraints CA:FALSE, keyUsage digitalSignature,
 * extKeyUsage serverAuth or clientAuth, subject and authority key ids, CN
 * and DNS SAN = the name (plus an IP SAN when given). Keys come back as
 * PKCS#8 PEM in malloc'd strings; free them with pp_ca_secret_free().
 * Nothing here logs key material. Not thread-safe: one thread at a time. */
#ifndef PP_TLS_CA_H
#define PP_TLS_CA_H

#include <stdint.h>

#include "util/error.h"

#define PP_CA_CERT_FILE "ca.crt"
#define PP_CA_KEY_FILE  "ca.key"
/* The default lifetime of issued certificates, and of the CA itself. */
#define PP_CA_ISSUE_VALIDITY_S (365LL * 24 * 3600)
#define PP_CA_VALIDITY_S       (10LL * 365 * 24 * 3600)

typedef struct pp_ca_s pp_ca_t;

typedef struct pp_ca_opts_s {
    /* Automatic mode: where the CA lives (created 0700 when missing). */
    const char *dir;
    /* The CA's subject CN when it is created; NULL = "peerpod-ca". */
    const char *name;
    /* Manual mode, when any is set: CACERT_FILE (optional), CERT_FILE and
     * CERT_KEY (both required). */
    const char *cacert_file;
    const char *cert_file;
    const char *key_file;
} pp_ca_opts_t;

/* Loads the CA, creating it first in automatic mode. Errors name the file
 * and the setting. */
int pp_ca_load_or_create(const pp_ca_opts_t *o, pp_ca_t **out, pp_error_t *err);
void pp_ca_free(pp_ca_t *ca);

/* Whether this CA can issue (automatic mode). */
int pp_ca_can_issue(const pp_ca_t *ca);
/* The CA certificate (PEM), to verify server certificates and to give to
 * pod VMs to verify the adaptor; NULL in manual mode without CACERT_FILE. */
const char *pp_ca_cert_pem(const pp_ca_t *ca);

typedef enum pp_ca_kind { PP_CA_SERVER = 0, PP_CA_CLIENT = 1 } pp_ca_kind_t;

typedef struct pp_ca_issue_s {
    pp_ca_kind_t kind;
    const char *name; /* CN and DNS SAN: [A-Za-z0-9.-], at most 253 chars */
    const char *ip;   /* optional IPv4/IPv6 SAN */
    /* Validity relative to now, in seconds: from now + not_before (0 =
     * five minutes ago, for clock skew) to now + not_after (0 =
     * PP_CA_ISSUE_VALIDITY_S). Past values make expired certificates for
     * tests. */
    int64_t not_before;
    int64_t not_after;
} pp_ca_issue_t;

/* Issues a certificate and a fresh key. -ENOTSUP in manual mode, -EINVAL
 * for a bad name or address. */
int pp_ca_issue(pp_ca_t *ca, const pp_ca_issue_t *req, char **cert_pem, char **key_pem,
                pp_error_t *err);
/* A pod VM's server certificate: CN and DNS SAN `name`, IP SAN `ip` if not
 * NULL, valid for `validity_s` seconds (0 = the default). */
int pp_ca_issue_server(pp_ca_t *ca, const char *name, const char *ip, int64_t validity_s,
                       char **cert_pem, char **key_pem, pp_error_t *err);
/* The adaptor's client certificate. */
int pp_ca_issue_client(pp_ca_t *ca, const char *name, int64_t validity_s, char **cert_pem,
                       char **key_pem, pp_error_t *err);

/* The adaptor's client certificate and key: loaded in manual mode, issued
 * once (CN `name`) and kept in automatic mode. Owned by the CA. */
int pp_ca_client_identity(pp_ca_t *ca, const char *name, const char **cert_pem,
                          const char **key_pem, pp_error_t *err);

/* Wipes and frees a key returned above (also fine for NULL). */
void pp_ca_secret_free(char *secret);

#endif
