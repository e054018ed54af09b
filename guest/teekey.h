/* The TEE key: an ephemeral key pair made for each attestation, whose
 * public half goes to the KBS as `tee-pubkey` (a JWK bound into the
 * evidence) and to which the KBS wraps every resource (a JWE).
 *
 *   EC P-256 / P-521   {"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x","y"}
 *   RSA 2048           {"kty":"RSA","alg":"RSA-OAEP-256","n","e"}
 *
 * A resource is JWE flattened JSON: {"protected", "encrypted_key", "iv",
 * "ciphertext", "tag", ["aad"]}, base64url. Accepted: `alg`
 * ECDH-ES+A256KW (Concat KDF, SHA-256, no PartyUInfo/PartyVInfo, AES key
 * wrap) with the `epk` on our curve, or RSA-OAEP-256; `enc` A256GCM, with
 * the protected header's text (and "." aad) as additional data. RSA1_5 is
 * refused. Plaintext goes into a buffer the caller clears. */
#ifndef GUEST_TEEKEY_H
#define GUEST_TEEKEY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util/buf.h"
#include "util/error.h"

#define GUEST_JWE_MAX (8u << 20) /* a resource's JWE, at most */

typedef struct guest_teekey_s guest_teekey_t;

int guest_teekey_new(guest_key_alg_t alg, guest_teekey_t **out, pp_error_t *err);
/* From the PEM upstream hands over in GetToken's `tee_keypair` (PKCS#8 EC
 * or PKCS#1 RSA). */
int guest_teekey_from_pem(const char *pem, size_t len, guest_teekey_t **out, pp_error_t *err);
void guest_teekey_free(guest_teekey_t *k);

/* The public JWK (a new reference). */
json_t *guest_teekey_jwk(const guest_teekey_t *k);
/* The private key as PEM, as upstream writes it; malloc'd, clear it. */
char *guest_teekey_pem(const guest_teekey_t *k);

/* Decrypts a JWE (its JSON text) into `out` (whose maximum applies). 0, or
 * -EBADMSG (malformed), -ENOTSUP (an algorithm we refuse), -EKEYREJECTED
 * (does not decrypt with this key: wrong key, tampered) with `err`. */
int guest_jwe_decrypt(const guest_teekey_t *k, const char *jwe, size_t len, pp_buf_t *out,
                      pp_error_t *err);

/* Clears and frees a buffer that held a secret. */
void guest_buf_wipe(pp_buf_t *b);

#endif
