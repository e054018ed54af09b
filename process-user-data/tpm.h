/* PCR8 binding of initdata on a (v)TPM, through tpm2-tss ESYS.
 *
 * With a TPM present, PCR8 of the sha256 bank is extended once with the
 * first 32 bytes of the initdata digest, so that afterwards it holds
 * sha256(PCR8_before || digest[0:32]) (the upstream pod VM does the same
 * with `tpm2_pcrextend 8:sha256=...`). The TPM is reached through a TCTI
 * configuration string: `device:/dev/tpmrm0` in a VM, `swtpm:host=...,port=...`
 * in tests. Built without tpm2-tss, every call fails with -ENOTSUP. */
#ifndef PUD_TPM_H
#define PUD_TPM_H

#include <stddef.h>
#include <stdint.h>

#include "pud.h"

#define PUD_PCR_INITDATA 8
#define PUD_PCR_SIZE     32 /* sha256 */

/* The TCTI to use: `o->tcti` when set, else "device:<dev>/tpmrm0" when that
 * is a character device. 0 with `buf` filled, -ENOENT when there is no TPM. */
int pud_tpm_tcti(const pud_opts_t *o, char *buf, size_t n);

/* Extends PCR8 (sha256) with `value`. */
int pud_tpm_extend_pcr8(const char *tcti, const uint8_t value[PUD_PCR_SIZE], pp_error_t *err);

/* Reads PCR8 (sha256). */
int pud_tpm_read_pcr8(const char *tcti, uint8_t out[PUD_PCR_SIZE], pp_error_t *err);

#endif
