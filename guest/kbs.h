/* A client of Trustee's Key Broker Service (kbs/docs/kbs_attestation_protocol.md,
 * protocol version 0.4.0), on the libuv loop through libcurl (providers/http).
 *
 * Attestation (RCAR), three steps and two round trips:
 *   POST /kbs/v0/auth   {"version":"0.4.0","tee":T,"extra-params":
 *                        {"supported-hash-algorithms":["sha256","sha384","sha512"]}}
 *                       -> 200 {"nonce":N,"extra-params":...}, Set-Cookie kbs-session-id
 *   evidence            report data = H(canonical JSON of {"additional-evidence":"",
 *                        "nonce":N,"tee-pubkey":JWK}), H the challenge's
 *                        `selected-hash-algorithm` or sha384, JWK a fresh TEE key
 *   POST /kbs/v0/attest (cookie) {"init-data":{"format":"toml","body":...}?,
 *                        "runtime-data":{"nonce":N,"tee-pubkey":JWK},
 *                        "tee-evidence":{"primary_evidence":E,"additional_evidence":""}}
 *                       -> 200 {"token": JWT}
 * Resources, one round trip:
 *   GET /kbs/v0/resource/<repository>/<type>/<tag>, Authorization: Bearer JWT
 *                       -> 200 JWE to the token's TEE key (teekey.h)
 *
 * Errors name the step and carry the KBS's words (its ErrorInformation
 * `detail`, cut short and made printable), the HTTP status, and a gRPC
 * status for the caller: 401/403 PERMISSION_DENIED, 404 NOT_FOUND, 5xx and
 * transport errors UNAVAILABLE, a malformed answer INTERNAL. Tokens, keys
 * and resources never reach a log.
 *
 * Async contract as providers/http: each call fails synchronously or calls
 * back exactly once, on the loop thread. */
#ifndef GUEST_KBS_H
#define GUEST_KBS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "teekey.h"
#include "util/buf.h"
#include "util/error.h"

#define GUEST_KBS_PROTOCOL   "0.4.0"
#define GUEST_KBS_MAX_ANSWER (GUEST_JWE_MAX + 4096)

typedef struct guest_kbs_s guest_kbs_t;

/* The evidence for report data `rd`; calls `done` once (as guest_aa_evidence). */
typedef void (*guest_kbs_evidence_done_cb)(int status, const char *json, size_t len,
                                           const pp_error_t *err, void *data);
typedef int (*guest_kbs_evidence_fn)(void *ctx, const uint8_t *rd, size_t len,
                                     guest_kbs_evidence_done_cb done, void *data);

typedef struct guest_kbs_opts_s {
    const char *url;    /* base URL, no trailing slash; copied */
    const char *ca_pem; /* NULL: the system's CAs; copied */
    guest_key_alg_t key_alg;
    const char *tee;      /* the KBS's name of our TEE; copied */
    const char *initdata; /* initdata TOML to send, or NULL; copied */
    guest_kbs_evidence_fn evidence;
    void *evidence_ctx;
    uint64_t timeout_ms;   /* per request; 0 = 30 s */
    unsigned max_attempts; /* per request (transport errors, 5xx); 0 = 3 */
} guest_kbs_opts_t;

int guest_kbs_new(uv_loop_t *loop, const guest_kbs_opts_t *o, guest_kbs_t **out, pp_error_t *err);
/* Cancels what is in flight (callbacks fire with -ECANCELED) and frees once
 * nothing is pending. */
void guest_kbs_free(guest_kbs_t *k);

/* A whole attestation. On success `token` and `key` are the caller's
 * (guest_teekey_free, and free the token after clearing it). */
typedef void (*guest_kbs_token_cb)(int status, char *token, guest_teekey_t *key,
                                   const pp_error_t *err, void *data);
int guest_kbs_attest(guest_kbs_t *k, guest_kbs_token_cb cb, void *data);

/* A resource by path ("repository/type/tag"), with a token and its key.
 * `plain` is valid during the callback and wiped after it; `http_status`
 * is the KBS's answer (0 when none came). */
typedef void (*guest_kbs_resource_cb)(int status, long http_status, const uint8_t *plain,
                                      size_t len, const pp_error_t *err, void *data);
int guest_kbs_resource(guest_kbs_t *k, const char *path, const char *token,
                       const guest_teekey_t *key, guest_kbs_resource_cb cb, void *data);

/* Requests sent to the KBS so far (attempts, retries included). */
uint64_t guest_kbs_round_trips(const guest_kbs_t *k);

/* "kbs:///repo/type/tag" or "kbs://host/repo/type/tag" (the host is
 * ignored, as upstream does: the configured KBS serves) into
 * "repo/type/tag". Each part: 1..128 of [A-Za-z0-9._-], not "." or "..".
 * 0 or -EINVAL with `err`. */
int guest_resource_path(const char *uri, size_t len, char *out, size_t size, pp_error_t *err);

/* The challenge of /kbs/v0/auth: its nonce (malloc'd) and the hash the
 * runtime data is bound with (an EVP_MD: `selected-hash-algorithm`, or
 * sha384). -EBADMSG with `err` for anything else. Pure. */
int guest__kbs_challenge(const char *body, size_t len, char **nonce, const void **md,
                         pp_error_t *err);

/* The `exp` claim of a JWT (seconds since the epoch); 0 when it has none.
 * -EBADMSG when it is not a JWT. */
int guest_jwt_exp(const char *jwt, int64_t *exp);

#endif
