/* The TEE under the pod VM, and the launch-bound initdata check.
 *
 * Detection: AMD SEV-SNP by <dev>/sev-guest or the configfs-tsm provider
 * `sev_guest`; Intel TDX by <dev>/tdx_guest or the provider `tdx_guest`;
 * else a vTPM by <dev>/tpmrm0 (Azure confidential VMs show only that);
 * else none.
 *
 * Launch binding, beyond what upstream checks: where the host bound a value
 * into the TEE at launch and the guest can read it back in a report,
 * it must agree with the initdata digest, or nothing is provisioned.
 *   SNP  HOST_DATA, 32 bytes at 0xC0 of the attestation report
 *        = the first 32 bytes of the digest;
 *   TDX  MRCONFIGID, 48 bytes at 184 into the TD quote body (quote v4 body
 *        at 48, v5 at 54) = the digest, cut or zero-padded to 48 bytes.
 * The report comes from configfs-tsm (<configfs>/tsm/report: make an
 * entry, write `inblob`, read `provider`, `generation`, `outblob`, check
 * `generation` did not move). No configfs-tsm, a report that cannot be had
 * (a TDX host without a quote service), a provider with no such value, or
 * an all-zero value (the host bound nothing) skip the check with a log
 * line: it is an early consistency check, remote attestation remains the
 * authority. A set value with no initdata in the user data is refused. */
#ifndef PUD_TEE_H
#define PUD_TEE_H

#include <stddef.h>
#include <stdint.h>

#include "pud.h"

#define PUD_TSM_ENTRY      "process-user-data" /* our entry under tsm/report */
#define PUD_TSM_INBLOB     64
#define PUD_TSM_OUTBLOB    (32u * 1024) /* the kernel's TSM_OUTBLOB_MAX */
#define PUD_SNP_HOST_DATA  0xC0
#define PUD_TDX_TEE_TYPE   0x81
#define PUD_TDX_MRCONFIGID 184 /* within the TD quote body */

typedef enum pud_tee_kind_e { PUD_TEE_NONE, PUD_TEE_SNP, PUD_TEE_TDX, PUD_TEE_VTPM } pud_tee_kind_t;

typedef struct pud_tee_s {
    pud_tee_kind_t kind;
    char evidence[4160]; /* what showed it, for logs and `show` */
    int have_tpm;        /* <dev>/tpmrm0 exists */
    char provider[64];   /* the configfs-tsm provider, "" when none */
} pud_tee_t;

/* "snp", "tdx", "vtpm", "none". */
const char *pud_tee_kind_name(pud_tee_kind_t kind);

/* Looks at the device directory and configfs-tsm; never fails. */
void pud_tee_detect(const pud_opts_t *o, pud_tee_t *tee);

/* Asks configfs-tsm for a report: `provider` (NUL-terminated) and the raw
 * `outblob` appended to `out`. -ENOENT when there is no configfs-tsm
 * report directory; -EBUSY when another writer changed the entry while it
 * was read; -EMSGSIZE for an `outblob` larger than PUD_TSM_OUTBLOB; or the
 * error from the file system. */
int pud_tsm_report(const pud_opts_t *o, char *provider, size_t provider_len, pp_buf_t *out,
                   pp_error_t *err);

/* The launch-bound value in a report. */
typedef struct pud_launch_value_s {
    const char *field; /* "HOST_DATA", "MRCONFIGID" */
    uint8_t value[48];
    size_t len;
} pud_launch_value_t;

/* Finds the launch-bound value in `blob` from `provider`. -ENOTSUP when
 * the provider's reports carry none this program knows; -EBADMSG when the
 * blob is too short or not the expected format. Pure. */
int pud_tsm_launch_value(const char *provider, const uint8_t *blob, size_t len,
                         pud_launch_value_t *lv, pp_error_t *err);

/* The value a launch bound to `digest` carries in a field of `len` bytes:
 * the digest's first bytes, zero-padded. */
void pud_launch_expected(const uint8_t *digest, size_t digest_len, size_t len, uint8_t *out);

/* The check described above, for the initdata `digest` (NULL when the user
 * data has none). 0 when it passed or was skipped, `result` saying which
 * (for the log and the record); -EPERM with `err` when the value
 * disagrees. */
int pud_check_launch_binding(const pud_opts_t *o, const uint8_t *digest, size_t digest_len,
                             char *result, size_t result_len, pp_error_t *err);

#endif
