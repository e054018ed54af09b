/* Attesters: evidence from the TEE under the pod VM, in the JSON form
 * Trustee's verifier for that TEE reads.
 *
 *   tpm          {"tpm_quote": {"signature", "message", "pcrs"[24]}, "ak_public"}
 *                a TPM2 quote over the sha256 PCRs 0-23 by the attestation key
 *                (RSA, RSASSA-SHA256) at a persistent handle, with the report
 *                data (cut or zero-padded to 32 bytes) as qualifying data
 *   snp          {"attestation_report": {...}, "cert_chain": [...] | null}
 *   tdx          {"cc_eventlog": base64 | null, "quote": base64}
 *   az-snp-vtpm, az-tdx-vtpm
 *                Azure's paravisor: its HCL report in TPM NV index 0x01400001
 *                and a quote by its attestation key 0x81000003 (azure.c)
 *
 * The TEE is detected once, at start, in the order upstream detects it:
 * TDX, Azure TDX, Azure SNP, SNP, then a plain (v)TPM. Paths are taken
 * under `root` (tests point it at a tree of their own).
 *
 * Every operation blocks (device I/O, a TPM round trip, a quote from the
 * host): callers run them off the loop thread. One attester may be used by
 * one thread at a time. */
#ifndef GUEST_ATTESTER_H
#define GUEST_ATTESTER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define GUEST_TPM_AK_HANDLE   0x81010002u /* upstream's default */
#define GUEST_AZ_AK_HANDLE    0x81000003u
#define GUEST_AZ_REPORT_NV    0x01400001u
#define GUEST_REPORT_DATA_MAX 64
#define GUEST_TSM_DIR         "/sys/kernel/config/tsm/report"

typedef enum guest_tee_e {
    GUEST_TEE_NONE,
    GUEST_TEE_TPM,
    GUEST_TEE_SNP,
    GUEST_TEE_TDX,
    GUEST_TEE_AZ_SNP_VTPM,
    GUEST_TEE_AZ_TDX_VTPM,
    GUEST_TEE_COUNT,
} guest_tee_t;

/* Where to look; every path NULL/0 means the real one. */
typedef struct guest_tee_opts_s {
    const char *root;    /* prefix for /dev, /sys; NULL = "" */
    const char *tcti;    /* TPM TCTI ("swtpm:host=...,port=..."); NULL = device:<root>/dev/tpmrm0 */
    uint32_t ak_handle;  /* 0 = GUEST_TPM_AK_HANDLE */
    int no_ak_create;    /* do not create the AK when the handle is empty */
    const char *tsm_dir; /* NULL = <root>/sys/kernel/config/tsm/report */
    const char *imds_url;   /* Azure's metadata service; NULL = http://169.254.169.254 */
    unsigned az_refresh_ms; /* wait for the paravisor's new report (upstream: 3000) */
} guest_tee_opts_t;

typedef struct guest_attester_s guest_attester_t;

typedef struct guest_attester_ops_s {
    guest_tee_t tee;
    const char *name;       /* the KBS's name for it: "tpm", "snp", ... */
    size_t report_data_len; /* what the evidence binds: 32 or 64 */
    int can_extend;         /* runtime measurements (PCRs) */
    int (*evidence)(guest_attester_t *a, const uint8_t *report_data, size_t len, json_t **out,
                    pp_error_t *err);
    /* Extends register `index` with a sha256 digest. */
    int (*extend)(guest_attester_t *a, unsigned index, const uint8_t digest[32], pp_error_t *err);
    /* Reads register `index` (sha256). */
    int (*read)(guest_attester_t *a, unsigned index, uint8_t out[32], pp_error_t *err);
    /* Checks that the TEE holds initdata `digest` where the launch (or
     * process-user-data, for a vTPM's PCR8) bound it: -EPERM with a gRPC
     * status FAILED_PRECONDITION when it does not. */
    int (*bind)(guest_attester_t *a, const uint8_t *digest, size_t len, pp_error_t *err);
} guest_attester_ops_t;

struct guest_attester_s {
    const guest_attester_ops_t *ops;
    guest_tee_opts_t opts;
    char tcti[512];
    char why[512]; /* what detection found, for the log */
    unsigned seq;  /* configfs-tsm entries made */
};

/* "tpm", "snp", ...; "none". */
const char *guest_tee_name(guest_tee_t tee);

/* Detects the TEE and fills `a` (opts copied; strings must outlive `a`).
 * Never fails: with nothing found a->ops is NULL and a->why says what was
 * looked for. */
void guest_attester_detect(guest_attester_t *a, const guest_tee_opts_t *opts);

/* Sets `a` up for one TEE without detection (tests, benchmarks). */
int guest_attester_for(guest_attester_t *a, guest_tee_t tee, const guest_tee_opts_t *opts,
                       pp_error_t *err);

/* Evidence for `report_data` (at most GUEST_REPORT_DATA_MAX bytes), as a
 * compact JSON text (malloc'd, NUL-terminated). -ENODEV when no TEE. */
int guest_attester_evidence(guest_attester_t *a, const uint8_t *report_data, size_t len,
                            char **json, size_t *json_len, pp_error_t *err);

/* A path under opts->root. -ENAMETOOLONG when it does not fit. */
int guest__path(const guest_tee_opts_t *o, const char *path, char *out, size_t size);

extern const guest_attester_ops_t guest_tpm_ops;
extern const guest_attester_ops_t guest_snp_ops;
extern const guest_attester_ops_t guest_tdx_ops;
extern const guest_attester_ops_t guest_az_snp_ops;
extern const guest_attester_ops_t guest_az_tdx_ops;

/* ---- TPM pieces, pure (for tests and the fuzz targets) ----------------------- */

/* The evidence JSON from a quote's parts: `attest` (TPMS_ATTEST) and `sig`
 * (TPMT_SIGNATURE) marshalled, the 24 sha256 PCRs, the AK as DER
 * SubjectPublicKeyInfo. */
json_t *guest_tpm_evidence_json(const uint8_t *attest, size_t attest_len, const uint8_t *sig,
                                size_t sig_len, const uint8_t pcrs[24][32], const uint8_t *ak_der,
                                size_t ak_der_len);

/* ---- SEV-SNP and TDX pieces, pure ------------------------------------------- */

#define GUEST_SNP_REPORT_LEN 0x4A0

/* The sev crate's JSON of an attestation report (`attestation_report`). */
json_t *guest_snp_report_json(const uint8_t *report, size_t len, pp_error_t *err);
/* `cert_chain` from the extended report's certificate table. */
json_t *guest_snp_certs_json(const uint8_t *table, size_t len, pp_error_t *err);
/* {"attestation_report": ..., "cert_chain": ... | null}. */
json_t *guest_snp_evidence_json(const uint8_t *report, size_t len, const uint8_t *certs,
                                size_t certs_len, pp_error_t *err);

/* A TD quote's parts, views into it. */
typedef struct guest_tdx_quote_s {
    unsigned version;
    const uint8_t *body; /* the TD report body */
    size_t body_len;
    const uint8_t *mrconfigid;  /* 48 bytes */
    const uint8_t *report_data; /* 64 bytes */
    size_t signed_len;          /* header and body: what the attestation key signs */
    const uint8_t *signature;   /* ECDSA P-256 r||s, 64 bytes */
    const uint8_t *attest_key;  /* its public key x||y, 64 bytes */
    size_t sig_data_len;
} guest_tdx_quote_t;

int guest_tdx_quote_parse(const uint8_t *quote, size_t len, guest_tdx_quote_t *out,
                          pp_error_t *err);
/* The length of the CC event log up to its end marker. */
int guest_ccel_trim(const uint8_t *ccel, size_t len, size_t *out, pp_error_t *err);
/* An Azure paravisor's HCL report, views into it. */
typedef struct guest_hcl_s {
    guest_tee_t tee;          /* GUEST_TEE_AZ_SNP_VTPM or _AZ_TDX_VTPM */
    const uint8_t *hw_report; /* the SNP report or the TD report */
    size_t hw_report_len;     /* 1184 or 1024 */
    const uint8_t *claims;    /* the runtime claims JSON */
    size_t claims_len;
    uint32_t hash_type; /* 1: its SHA-256 is the hardware report's report data */
} guest_hcl_t;

int guest_hcl_parse(const uint8_t *report, size_t len, guest_hcl_t *out, pp_error_t *err);
/* The evidence from its parts: the quote's raw RSA signature and
 * TPMS_ATTEST, the PCRs, the HCL report, and the VCEK (DER) or TD quote. */
json_t *guest_az_evidence_json(guest_tee_t tee, const uint8_t *sig, size_t sig_len,
                               const uint8_t *msg, size_t msg_len, const uint8_t pcrs[24][32],
                               const uint8_t *hcl, size_t hcl_len, const uint8_t *extra,
                               size_t extra_len);

/* {"cc_eventlog": base64 | null, "quote": base64}. */
json_t *guest_tdx_evidence_json(const uint8_t *quote, size_t len, const uint8_t *ccel,
                                size_t ccel_len, pp_error_t *err);

#endif
