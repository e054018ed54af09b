/* Sealed secrets, as upstream's confidential data hub defines them
 * (confidential-data-hub/docs/SEALED_SECRET.md): the text
 *     sealed.<header>.<payload>.<signature>
 * is a JWS (compact, base64url) behind the `sealed.` prefix. The header
 * names `alg` ES256 and a `kid`; the signature (64 bytes, r||s) covers
 * "<header>.<payload>". The payload is JSON:
 *     {"version":"0.1.0","type":"vault","provider":"kbs",
 *      "name":"kbs:///repo/type/tag","provider_settings":{},"annotations":{}}
 * or "type":"envelope" (key_id, encrypted_key, encrypted_data, wrap_type,
 * iv, provider, ...), which needs a KMS this data hub does not have.
 * Pure; parsed inputs are bounded (64 KiB). */
#ifndef GUEST_SEALED_H
#define GUEST_SEALED_H

#include <stddef.h>

#include "util/error.h"

#define GUEST_SEALED_MAX (64u * 1024)

typedef struct guest_sealed_s guest_sealed_t;

/* Splits and decodes; checks the header is JSON and the payload JSON. */
int guest_sealed_parse(const char *text, size_t len, guest_sealed_t **out, pp_error_t *err);
void guest_sealed_free(guest_sealed_t *s);

/* The header's `kid` ("" when none). */
const char *guest_sealed_kid(const guest_sealed_t *s);
/* Verifies the ES256 signature with a P-256 public JWK ({"kty":"EC",
 * "crv":"P-256","x","y"}). -EBADMSG (no such key, bad form), -EKEYREJECTED
 * (signature does not verify), with a gRPC status set on `err`. */
int guest_sealed_verify(const guest_sealed_t *s, const char *jwk, size_t len, pp_error_t *err);
/* The resource URI of a `vault` secret whose provider is `kbs`. */
int guest_sealed_vault_uri(const guest_sealed_t *s, char *out, size_t size, pp_error_t *err);
/* Reads the JWK of a local `kid` from `dir` (a plain name: no `/`, no
 * leading `.`). */
int guest_sealed_local_key(const char *dir, const char *kid, char **jwk, size_t *len,
                           pp_error_t *err);

#endif
