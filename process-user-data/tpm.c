#include "tpm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "util/log.h"

int pud_tpm_tcti(const pud_opts_t *o, char *buf, size_t n)
{
    if (o->tcti != NULL) {
        int r = snprintf(buf, n, "%s", o->tcti);
        return r < 0 || (size_t)r >= n ? -ENAMETOOLONG : 0;
    }
    char path[4096];
    struct stat st;
    /* Only a character device: a test tree may hold a plain file there to
     * show a vTPM to detection. */
    if (pud_path(o, PUD_BASE_DEV, "tpmrm0", path, sizeof(path)) < 0 || stat(path, &st) < 0 ||
        !S_ISCHR(st.st_mode))
        return -ENOENT;
    int r = snprintf(buf, n, "device:%s", path);
    return r < 0 || (size_t)r >= n ? -ENAMETOOLONG : 0;
}

#ifdef PUD_HAVE_TSS2

#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

typedef struct tpm_s {
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
} tpm_t;

static int tpm_open(tpm_t *t, const char *conf, pp_error_t *err)
{
    t->tcti = NULL;
    t->esys = NULL;
    TSS2_RC rc = Tss2_TctiLdr_Initialize(conf, &t->tcti);
    if (rc != TSS2_RC_SUCCESS)
        return pp_error_set(err, -ENODEV, "TPM TCTI `%s`: %s", conf, Tss2_RC_Decode(rc));
    rc = Esys_Initialize(&t->esys, t->tcti, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        Tss2_TctiLdr_Finalize(&t->tcti);
        return pp_error_set(err, -ENODEV, "TPM `%s`: %s", conf, Tss2_RC_Decode(rc));
    }
    return 0;
}

static void tpm_close(tpm_t *t)
{
    if (t->esys != NULL)
        Esys_Finalize(&t->esys);
    if (t->tcti != NULL)
        Tss2_TctiLdr_Finalize(&t->tcti);
}

int pud_tpm_extend_pcr8(const char *tcti, const uint8_t value[PUD_PCR_SIZE], pp_error_t *err)
{
    tpm_t t;
    int r = tpm_open(&t, tcti, err);
    if (r < 0)
        return r;
    TPML_DIGEST_VALUES digests = {.count = 1};
    digests.digests[0].hashAlg = TPM2_ALG_SHA256;
    memcpy(digests.digests[0].digest.sha256, value, PUD_PCR_SIZE);
    /* PCR8 has an empty authorization value: a password session does. */
    TSS2_RC rc = Esys_PCR_Extend(t.esys, ESYS_TR_PCR8, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                 &digests);
    if (rc != TSS2_RC_SUCCESS)
        r = pp_error_set(err, -EIO, "extend PCR8 (sha256): %s", Tss2_RC_Decode(rc));
    tpm_close(&t);
    return r;
}

int pud_tpm_read_pcr8(const char *tcti, uint8_t out[PUD_PCR_SIZE], pp_error_t *err)
{
    tpm_t t;
    int r = tpm_open(&t, tcti, err);
    if (r < 0)
        return r;
    TPML_PCR_SELECTION sel = {.count = 1};
    sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
    sel.pcrSelections[0].sizeofSelect = 3;
    sel.pcrSelections[0].pcrSelect[PUD_PCR_INITDATA / 8] = 1u << (PUD_PCR_INITDATA % 8);
    UINT32 counter;
    TPML_PCR_SELECTION *sel_out = NULL;
    TPML_DIGEST *values = NULL;
    TSS2_RC rc = Esys_PCR_Read(t.esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, &counter,
                               &sel_out, &values);
    if (rc != TSS2_RC_SUCCESS)
        r = pp_error_set(err, -EIO, "read PCR8 (sha256): %s", Tss2_RC_Decode(rc));
    else if (values == NULL || values->count != 1 || values->digests[0].size != PUD_PCR_SIZE)
        r = pp_error_set(err, -EIO, "read PCR8 (sha256): the TPM has no such bank");
    else
        memcpy(out, values->digests[0].buffer, PUD_PCR_SIZE);
    Esys_Free(sel_out);
    Esys_Free(values);
    tpm_close(&t);
    return r;
}

#else /* !PUD_HAVE_TSS2 */

int pud_tpm_extend_pcr8(const char *tcti, const uint8_t value[PUD_PCR_SIZE], pp_error_t *err)
{
    (void)value;
    return pp_error_set(err, -ENOTSUP, "TPM `%s`: built without tpm2-tss", tcti);
}

int pud_tpm_read_pcr8(const char *tcti, uint8_t out[PUD_PCR_SIZE], pp_error_t *err)
{
    (void)out;
    return pp_error_set(err, -ENOTSUP, "TPM `%s`: built without tpm2-tss", tcti);
}

#endif
