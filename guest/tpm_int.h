/* TPM sessions shared by the vTPM and Azure attesters (internal). */
#ifndef GUEST_TPM_INT_H
#define GUEST_TPM_INT_H

#include <stddef.h>
#include <stdint.h>

#include <tss2/tss2_esys.h>

#include "util/error.h"

typedef struct guest__tpm_s {
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
} guest__tpm_t;

/* One quote's parts: TPMS_ATTEST and TPMT_SIGNATURE marshalled, and the
 * PCRs read after it (whose digest matches the quote's). */
typedef struct guest__quote_s {
    uint8_t attest[sizeof(TPMS_ATTEST)];
    size_t attest_len;
    uint8_t sig[sizeof(TPMT_SIGNATURE)];
    size_t sig_len;
    uint8_t pcrs[24][32];
} guest__quote_t;

int guest__tpm_open(guest__tpm_t *t, const char *tcti, pp_error_t *err);
void guest__tpm_close(guest__tpm_t *t);
/* The key at persistent `handle`; made (and persisted) when absent and
 * `create` is set. */
int guest__tpm_ak(guest__tpm_t *t, uint32_t handle, int create, ESYS_TR *out, pp_error_t *err);
int guest__tpm_ak_der(guest__tpm_t *t, ESYS_TR ak, uint8_t **der, size_t *der_len, pp_error_t *err);
int guest__tpm_read_pcrs(guest__tpm_t *t, uint8_t pcrs[24][32], pp_error_t *err);
int guest__tpm_extend(guest__tpm_t *t, unsigned index, const uint8_t digest[32], pp_error_t *err);
int guest__tpm_quote(guest__tpm_t *t, ESYS_TR ak, const uint8_t *qdata, size_t qlen,
                     guest__quote_t *q, pp_error_t *err);
/* DER SubjectPublicKeyInfo of an RSA key; *der is OPENSSL_free'd. */
int guest__rsa_der(const uint8_t *n, size_t n_len, uint32_t e, uint8_t **der, size_t *der_len);

#endif
