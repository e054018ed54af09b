/* The confidential data hub: upstream's ttrpc services on its socket
 * (/run/confidential-containers/cdh.sock), as the kata agent calls them:
 *
 *   api.GetResourceService/GetResource(ResourcePath=1 "kbs:///repo/type/tag")
 *       -> {Resource=1 bytes}
 *   api.SealedSecretService/UnsealSecret(secret=1 "sealed.<JWS header>.
 *       <payload>.<signature>") -> {plaintext=1 bytes}
 *   api.SecureMountService/SecureMount, api.ImagePullService/PullImage
 *       -> UNIMPLEMENTED, saying so
 *
 * Resources come from the KBS with the attestation agent's token (its
 * GetToken, as upstream's data hub asks for it), kept until it expires or
 * the KBS refuses it (401: one fresh token, once). A resource is decrypted
 * from its JWE in memory, handed to the caller and wiped: never written to
 * disk, never logged.
 *
 * The [[credentials]] of cdh.toml are fetched at start and written (0600)
 * to their paths under /run, as upstream's data hub provisions KMS
 * credentials; a failed round is tried again 5 s later.
 *
 * Sealed secrets (upstream's format, version 0.1.0): the JWS is verified
 * with ES256 by the key its `kid` names, a KBS resource URI (a P-256 JWK
 * fetched from the KBS) or a file under /run/confidential-containers/cdh/
 * sealed-secret/, unless skip_sealed_secret_verification; the payload's
 * `vault` secret with provider `kbs` is the resource its `name` names.
 * Envelope secrets need a KMS provider this data hub does not have: refused
 * with UNIMPLEMENTED. */
#ifndef GUEST_CDH_H
#define GUEST_CDH_H

#include <uv.h>

#include "config.h"
#include "util/error.h"

#define GUEST_CDH_SEALED_KEYS "/run/confidential-containers/cdh/sealed-secret"

typedef struct guest_cdh_s guest_cdh_t;

typedef struct guest_cdh_opts_s {
    const guest_cdh_cfg_t *cfg; /* socket, KBS, AA socket; copied */
    const char *keys_dir;       /* sealed-secret keys; NULL = GUEST_CDH_SEALED_KEYS */
} guest_cdh_opts_t;

int guest_cdh_start(uv_loop_t *loop, const guest_cdh_opts_t *o, guest_cdh_t **out, pp_error_t *err);
void guest_cdh_close(guest_cdh_t *c, void (*cb)(void *data), void *data);

/* Requests sent to the KBS so far. */
uint64_t guest_cdh_kbs_round_trips(const guest_cdh_t *c);

#endif
