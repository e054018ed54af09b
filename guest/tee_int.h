/* Shared by the TEE attesters (internal). */
#ifndef GUEST_TEE_INT_H
#define GUEST_TEE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "attester.h"
#include "util/buf.h"

/* The configfs-tsm report directory. */
int guest__tsm_dir(const guest_tee_opts_t *o, char *out, size_t size);
/* The provider an entry gets ("sev_guest", "tdx_guest"), in `out`; -ENOENT
 * without configfs-tsm. */
int guest__tsm_provider(const guest_tee_opts_t *o, char *out, size_t size);
/* A report from provider `want` for `inblob`: `out` (and `aux`, may be
 * NULL) initialised by the caller. */
int guest__tsm_report(guest_attester_t *a, const char *want, const uint8_t *inblob, size_t len,
                      pp_buf_t *out, pp_buf_t *aux, pp_error_t *err);

/* Sets a->tcti to the TPM's (the one given, else <root>/dev/tpmrm0); 0
 * when there is none. */
int guest__attester_tpm_tcti(guest_attester_t *a);
/* An Azure paravisor behind the TPM: sets a->ops and returns 1. */
int guest__azure_detect(guest_attester_t *a);

#endif
