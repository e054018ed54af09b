/* The (v)TPM attester, through tpm2-tss ESYS. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "attester.h"
#include "tpm_int.h"
#include "util/base64.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/hex.h"
#include "util/log.h"

#define LOG "guest-tpm"

#define NPCRS 24

int guest__tpm_open(guest__tpm_t *t, const char *tcti, pp_error_t *err)
{
    t->tcti = NULL;
    t->esys = NULL;
    TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti, (TSS2_TCTI_CONTEXT **)&t->tcti);
    if (rc != TSS2_RC_SUCCESS)
        return pp_error_set(err, -ENODEV, "TPM `%s`: %s", tcti, Tss2_RC_Decode(rc));
    rc = Esys_Initialize((ESYS_CONTEXT **)&t->esys, t->tcti, NULL);
    if (rc != TSS2_RC_SUCCESS) {
        Tss2_TctiLdr_Finalize((TSS2_TCTI_CONTEXT **)&t->tcti);
        return pp_error_set(err, -ENODEV, "TPM `%s`: %s", tcti, Tss2_RC_Decode(rc));
    }
    return 0;
}

void guest__tpm_close(guest__tpm_t *t)
{
    if (t->esys != NULL)
        Esys_Finalize((ESYS_CONTEXT **)&t->esys);
    if (t->tcti != NULL)
        Tss2_TctiLdr_Finalize((TSS2_TCTI_CONTEXT **)&t->tcti);
}

/* ---- the attestation key ---------------------------------------------------- */

/* An RSA 2048 restricted signing key (RSASSA, SHA-256), as tpm2_createak
 * makes one: a primary of the endorsement hierarchy, so the same TPM always
 * derives the same key. */
static const TPM2B_PUBLIC ak_template = {
    .publicArea =
        {
            .type = TPM2_ALG_RSA,
            .nameAlg = TPM2_ALG_SHA256,
            .objectAttributes = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT |
                                TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH,
            .parameters.rsaDetail =
                {
                    .symmetric = {.algorithm = TPM2_ALG_NULL},
                    .scheme = {.scheme = TPM2_ALG_RSASSA,
                               .details.rsassa = {.hashAlg = TPM2_ALG_SHA256}},
                    .keyBits = 2048,
                    .exponent = 0,
                },
        },
};

static int ak_create(guest__tpm_t *t, uint32_t handle, ESYS_TR *out, pp_error_t *err)
{
    ESYS_CONTEXT *esys = t->esys;
    TPM2B_SENSITIVE_CREATE sens = {0};
    TPM2B_DATA outside = {0};
    TPML_PCR_SELECTION pcrs = {0};
    ESYS_TR key = ESYS_TR_NONE;
    TSS2_RC rc = Esys_CreatePrimary(esys, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                    ESYS_TR_NONE, &sens, &ak_template, &outside, &pcrs, &key, NULL,
                                    NULL, NULL, NULL);
    if (rc != TSS2_RC_SUCCESS)
        return pp_error_set(err, -EIO, "create the attestation key: %s", Tss2_RC_Decode(rc));
    ESYS_TR persistent = ESYS_TR_NONE;
    rc = Esys_EvictControl(esys, ESYS_TR_RH_OWNER, key, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                           ESYS_TR_NONE, handle, &persistent);
    Esys_FlushContext(esys, key);
    if (rc != TSS2_RC_SUCCESS)
        return pp_error_set(err, -EIO, "persist the attestation key at 0x%08x: %s", handle,
                            Tss2_RC_Decode(rc));
    PP_INFO(LOG, "created the attestation key at 0x%08x", handle);
    *out = persistent;
    return 0;
}

int guest__tpm_ak(guest__tpm_t *t, uint32_t handle, int create, ESYS_TR *out, pp_error_t *err)
{
    TSS2_RC rc =
        Esys_TR_FromTPMPublic(t->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, out);
    if (rc == TSS2_RC_SUCCESS)
        return 0;
    if (!create)
        return pp_error_set(err, -ENOENT, "no attestation key at 0x%08x: %s", handle,
                            Tss2_RC_Decode(rc));
    return ak_create(t, handle, out, err);
}

/* The AK's public key as DER SubjectPublicKeyInfo. */
int guest__tpm_ak_der(guest__tpm_t *t, ESYS_TR ak, uint8_t **der, size_t *der_len, pp_error_t *err)
{
    TPM2B_PUBLIC *pub = NULL;
    TSS2_RC rc =
        Esys_ReadPublic(t->esys, ak, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL, NULL);
    if (rc != TSS2_RC_SUCCESS)
        return pp_error_set(err, -EIO, "read the attestation key: %s", Tss2_RC_Decode(rc));
    int r = 0;
    if (pub->publicArea.type != TPM2_ALG_RSA) {
        r = pp_error_set(err, -ENOTSUP, "the attestation key is not an RSA key");
    } else {
        const TPM2B_PUBLIC_KEY_RSA *n = &pub->publicArea.unique.rsa;
        uint32_t e = pub->publicArea.parameters.rsaDetail.exponent;
        r = guest__rsa_der(n->buffer, n->size, e ? e : 65537, der, der_len);
        if (r < 0)
            r = pp_error_set(err, r, "encode the attestation key");
    }
    Esys_Free(pub);
    return r;
}

int guest__rsa_der(const uint8_t *n, size_t n_len, uint32_t e, uint8_t **der, size_t *der_len)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *bn = BN_bin2bn(n, (int)n_len, NULL), *be = BN_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    int r = -ENOMEM;
    if (bld == NULL || bn == NULL || be == NULL || !BN_set_word(be, e) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL)
        goto out;
    r = -EINVAL;
    if (EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        goto out;
    unsigned char *p = NULL;
    int len = i2d_PUBKEY(pkey, &p);
    if (len <= 0)
        goto out;
    *der = p;
    *der_len = (size_t)len;
    r = 0;
out:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return r;
}

/* ---- PCRs and quotes -------------------------------------------------------- */

static void select_all(TPML_PCR_SELECTION *sel)
{
    memset(sel, 0, sizeof(*sel));
    sel->count = 1;
    sel->pcrSelections[0].hash = TPM2_ALG_SHA256;
    sel->pcrSelections[0].sizeofSelect = 3;
    sel->pcrSelections[0].pcrSelect[0] = 0xff;
    sel->pcrSelections[0].pcrSelect[1] = 0xff;
    sel->pcrSelections[0].pcrSelect[2] = 0xff;
}

/* PCR_Read answers at most 8 digests at a time: ask for what is left. */
int guest__tpm_read_pcrs(guest__tpm_t *t, uint8_t pcrs[24][32], pp_error_t *err)
{
    TPML_PCR_SELECTION want;
    select_all(&want);
    uint8_t *mask = want.pcrSelections[0].pcrSelect;
    for (int round = 0; round < NPCRS && (mask[0] | mask[1] | mask[2]); round++) {
        TPML_PCR_SELECTION *got = NULL;
        TPML_DIGEST *values = NULL;
        UINT32 counter;
        TSS2_RC rc = Esys_PCR_Read(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &want,
                                   &counter, &got, &values);
        if (rc != TSS2_RC_SUCCESS)
            return pp_error_set(err, -EIO, "read PCRs (sha256): %s", Tss2_RC_Decode(rc));
        size_t k = 0;
        int bad = got->count != 1 || got->pcrSelections[0].hash != TPM2_ALG_SHA256;
        for (unsigned i = 0; i < NPCRS && !bad; i++) {
            if (!(got->pcrSelections[0].pcrSelect[i / 8] & (1u << (i % 8))))
                continue;
            if (k >= values->count || values->digests[k].size != 32) {
                bad = 1;
                break;
            }
            memcpy(pcrs[i], values->digests[k++].buffer, 32);
            mask[i / 8] &= (uint8_t) ~(1u << (i % 8));
        }
        if (k == 0)
            bad = 1;
        Esys_Free(got);
        Esys_Free(values);
        if (bad)
            return pp_error_set(err, -EIO, "read PCRs (sha256): the TPM has no such bank");
    }
    return 0;
}

int guest__tpm_extend(guest__tpm_t *t, unsigned index, const uint8_t digest[32], pp_error_t *err)
{
    if (index >= NPCRS)
        return pp_error_set(err, -EINVAL, "PCR %u: there are 24", index);
    TPML_DIGEST_VALUES d = {.count = 1};
    d.digests[0].hashAlg = TPM2_ALG_SHA256;
    memcpy(d.digests[0].digest.sha256, digest, 32);
    TSS2_RC rc = Esys_PCR_Extend(t->esys, ESYS_TR_PCR0 + index, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                 ESYS_TR_NONE, &d);
    if (rc != TSS2_RC_SUCCESS)
        return pp_error_set(err, -EIO, "extend PCR %u (sha256): %s", index, Tss2_RC_Decode(rc));
    return 0;
}

int guest__tpm_quote(guest__tpm_t *t, ESYS_TR ak, const uint8_t *qdata, size_t qlen,
                     guest__quote_t *q, pp_error_t *err)
{
    TPM2B_DATA qualifying = {.size = (UINT16)qlen};
    if (qlen > sizeof(qualifying.buffer))
        return pp_error_set(err, -EINVAL, "qualifying data of %zu bytes", qlen);
    memcpy(qualifying.buffer, qdata, qlen);
    TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_RSASSA,
                              .details.rsassa = {.hashAlg = TPM2_ALG_SHA256}};
    TPML_PCR_SELECTION sel;
    select_all(&sel);
    /* PCRs may move between the quote and reading them: the digest in the
     * quote must match what we send, so read again until it does. */
    for (int attempt = 0; attempt < 3; attempt++) {
        TPM2B_ATTEST *quoted = NULL;
        TPMT_SIGNATURE *sig = NULL;
        TSS2_RC rc = Esys_Quote(t->esys, ak, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                                &qualifying, &scheme, &sel, &quoted, &sig);
        if (rc != TSS2_RC_SUCCESS)
            return pp_error_set(err, -EIO, "TPM quote: %s", Tss2_RC_Decode(rc));
        int r = guest__tpm_read_pcrs(t, q->pcrs, err);
        size_t off = 0;
        TPMS_ATTEST attest;
        if (r == 0 && (Tss2_MU_TPMS_ATTEST_Unmarshal(quoted->attestationData, quoted->size, &off,
                                                     &attest) != TSS2_RC_SUCCESS ||
                       attest.type != TPM2_ST_ATTEST_QUOTE))
            r = pp_error_set(err, -EIO, "TPM quote: the TPM answered something else");
        q->sig_len = 0;
        if (r == 0 && Tss2_MU_TPMT_SIGNATURE_Marshal(sig, q->sig, sizeof(q->sig), &q->sig_len) !=
                          TSS2_RC_SUCCESS)
            r = pp_error_set(err, -EIO, "TPM quote: cannot encode its signature");
        int same = 0;
        if (r == 0) {
            uint8_t digest[32];
            SHA256(&q->pcrs[0][0], sizeof(q->pcrs), digest);
            const TPM2B_DIGEST *want = &attest.attested.quote.pcrDigest;
            same = want->size == 32 && memcmp(want->buffer, digest, 32) == 0;
            memcpy(q->attest, quoted->attestationData, quoted->size);
            q->attest_len = quoted->size;
        }
        Esys_Free(quoted);
        Esys_Free(sig);
        if (r < 0 || same)
            return r;
        PP_DEBUG(LOG, "PCRs moved during the quote: quoting again");
    }
    return pp_error_set(err, -EAGAIN, "TPM quote: the PCRs kept changing");
}

/* ---- evidence --------------------------------------------------------------- */

json_t *guest_tpm_evidence_json(const uint8_t *attest, size_t attest_len, const uint8_t *sig,
                                size_t sig_len, const uint8_t pcrs[24][32], const uint8_t *ak_der,
                                size_t ak_der_len)
{
    cleanup_free char *sig_b64 = pp_base64_str(sig, sig_len);
    cleanup_free char *msg_b64 = pp_base64_str(attest, attest_len);
    cleanup_free char *ak_b64 = pp_base64_str(ak_der, ak_der_len);
    json_t *list = json_array();
    if (sig_b64 == NULL || msg_b64 == NULL || ak_b64 == NULL || list == NULL) {
        json_decref(list);
        return NULL;
    }
    for (int i = 0; i < NPCRS; i++) {
        char hex[65];
        pp_hex_encode(pcrs[i], 32, hex);
        if (json_array_append_new(list, json_string(hex)) < 0) {
            json_decref(list);
            return NULL;
        }
    }
    return json_pack("{s:{s:s,s:s,s:o},s:s}", "tpm_quote", "signature", sig_b64, "message", msg_b64,
                     "pcrs", list, "ak_public", ak_b64);
}

static int tpm_evidence(guest_attester_t *a, const uint8_t *rd, size_t len, json_t **out,
                        pp_error_t *err)
{
    /* Upstream's attester cuts or zero-pads the report data to 32 bytes. */
    uint8_t qdata[32] = {0};
    memcpy(qdata, rd, len < sizeof(qdata) ? len : sizeof(qdata));
    guest__tpm_t t;
    int r = guest__tpm_open(&t, a->tcti, err);
    if (r < 0)
        return r;
    ESYS_TR ak;
    uint32_t handle = a->opts.ak_handle ? a->opts.ak_handle : GUEST_TPM_AK_HANDLE;
    cleanup_free uint8_t *der = NULL;
    size_t der_len = 0;
    cleanup_free guest__quote_t *q = calloc(1, sizeof(*q));
    if (q == NULL)
        r = pp_error_set(err, -ENOMEM, "out of memory");
    if (r == 0)
        r = guest__tpm_ak(&t, handle, !a->opts.no_ak_create, &ak, err);
    if (r == 0)
        r = guest__tpm_ak_der(&t, ak, &der, &der_len, err);
    if (r == 0)
        r = guest__tpm_quote(&t, ak, qdata, sizeof(qdata), q, err);
    guest__tpm_close(&t);
    if (r < 0)
        return r;
    *out = guest_tpm_evidence_json(q->attest, q->attest_len, q->sig, q->sig_len,
                                   (const uint8_t(*)[32])q->pcrs, der, der_len);
    OPENSSL_free(PP_STEAL(der));
    return *out == NULL ? pp_error_set(err, -ENOMEM, "out of memory") : 0;
}

static int tpm_extend(guest_attester_t *a, unsigned index, const uint8_t digest[32],
                      pp_error_t *err)
{
    guest__tpm_t t;
    int r = guest__tpm_open(&t, a->tcti, err);
    if (r == 0) {
        r = guest__tpm_extend(&t, index, digest, err);
        guest__tpm_close(&t);
    }
    return r;
}

static int tpm_read(guest_attester_t *a, unsigned index, uint8_t out[32], pp_error_t *err)
{
    guest__tpm_t t;
    uint8_t pcrs[NPCRS][32];
    if (index >= NPCRS)
        return pp_error_set(err, -EINVAL, "PCR %u: there are 24", index);
    int r = guest__tpm_open(&t, a->tcti, err);
    if (r == 0) {
        r = guest__tpm_read_pcrs(&t, pcrs, err);
        guest__tpm_close(&t);
    }
    if (r == 0)
        memcpy(out, pcrs[index], 32);
    return r;
}

/* process-user-data extended PCR8 once with the digest's first 32 bytes. */
static int tpm_bind(guest_attester_t *a, const uint8_t *digest, size_t len, pp_error_t *err)
{
    uint8_t pcr[32], want[32], in[64] = {0};
    int r = tpm_read(a, 8, pcr, err);
    if (r < 0)
        return r;
    memcpy(in + 32, digest, len < 32 ? len : 32);
    SHA256(in, sizeof(in), want);
    if (memcmp(pcr, want, 32) != 0)
        return pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, -EPERM,
                                   "PCR8 does not hold this initdata digest (it was not bound "
                                   "at boot, or another was)");
    return 0;
}

const guest_attester_ops_t guest_tpm_ops = {
    .tee = GUEST_TEE_TPM,
    .name = "tpm",
    .report_data_len = 32,
    .can_extend = 1,
    .evidence = tpm_evidence,
    .extend = tpm_extend,
    .read = tpm_read,
    .bind = tpm_bind,
};
