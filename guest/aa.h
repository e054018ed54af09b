/* The attestation agent: upstream's ttrpc service
 * `attestation_agent.AttestationAgentService` on its socket
 * (/run/confidential-containers/attestation-agent/attestation-agent.sock):
 *
 *   GetEvidence(RuntimeData=1 bytes) -> {Evidence=1 bytes}   the TEE's
 *       evidence JSON with RuntimeData (at most 64 bytes) as report data
 *   GetAdditionalEvidence -> {Evidence=1}     empty: no device attesters
 *   GetToken(TokenType=1 "kbs") -> {Token=1}  {"token": JWT, "tee_keypair":
 *       PEM} after the KBS protocol (kbs.h); a valid token is reused
 *   ExtendRuntimeMeasurement(Domain=1, Operation=2, Content=3,
 *       RegisterIndex=4 optional) -> {Result=1: OK 0, NOT_SUPPORTED 1,
 *       NOT_ENABLED 2}
 *   BindInitData(Digest=1) -> {}     checks that the TEE holds the digest
 *       (a vTPM: PCR8 = sha256(0^32 || digest[0:32]), as process-user-data
 *       extended it at boot); FAILED_PRECONDITION when it does not
 *   GetTeeType -> {tee=1 string}; GetAdditionalTees -> {} (none)
 *
 * Evidence and PCR work runs on the libuv thread pool, one job at a time;
 * the loop keeps serving. Errors reach the caller as a gRPC status with a
 * message that says what failed; nothing secret is logged. */
#ifndef GUEST_AA_H
#define GUEST_AA_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "attester.h"
#include "config.h"
#include "util/error.h"

#define GUEST_AA_SERVICE "attestation_agent.AttestationAgentService"

typedef struct guest_aa_s guest_aa_t;

typedef struct guest_aa_opts_s {
    const char *socket;        /* a path */
    const guest_aa_cfg_t *cfg; /* copied */
    guest_tee_opts_t tee;      /* strings must outlive the agent */
    int tee_forced;            /* use `tee_kind` instead of detecting */
    guest_tee_t tee_kind;
    const char *initdata; /* initdata TOML sent to the KBS, or NULL */
    size_t initdata_len;
    const char *eventlog; /* where measured events are appended */
} guest_aa_opts_t;

/* Detects the TEE, reads nothing else, listens. 0 or -errno with `err`. */
int guest_aa_start(uv_loop_t *loop, const guest_aa_opts_t *o, guest_aa_t **out, pp_error_t *err);
/* Stops listening, waits for jobs in flight, frees, then calls `cb`. */
void guest_aa_close(guest_aa_t *aa, void (*cb)(void *data), void *data);

const guest_attester_t *guest_aa_attester(const guest_aa_t *aa);

/* Evidence for `rd`, asynchronously (the thread pool): `cb` gets 0 and the
 * JSON (owned by the callee until the callback returns), or -errno and
 * `err`. For the KBS client. */
typedef void (*guest_aa_evidence_cb)(int status, const char *json, size_t len,
                                     const pp_error_t *err, void *data);
int guest_aa_evidence(guest_aa_t *aa, const uint8_t *rd, size_t len, guest_aa_evidence_cb cb,
                      void *data);

#endif
