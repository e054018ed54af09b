/* Azure confidential VMs: the paravisor (HCL) under the guest exposes the
 * TEE through the vTPM. Its HCL report (header 32 bytes, the hardware report
 * in 1184 bytes, then the IGVM request data: data_size, version,
 * report_type (2 SNP, 4 TDX), report_data_hash_type, variable_data_size and
 * the runtime claims JSON) sits in NV index 0x01400001; writing the report
 * data to NV index 0x01400002 makes the paravisor refresh it (upstream waits
 * 3 s for that). A quote by the paravisor's attestation key 0x81000003 binds
 * the report data too. The VCEK (SNP) and the TD quote (TDX) come from the
 * instance metadata service.
 *
 *   az-snp-vtpm {"version":2,"tpm_quote":{"signature","message","pcrs"} (hex),
 *                "hcl_report": base64url, "vcek": base64url DER}
 *   az-tdx-vtpm {"version":2,"tpm_quote":{...},"hcl_report","td_quote"} */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>

#include "attester.h"
#include "tee_int.h"
#include "tpm_int.h"
#include "util/base64.h"
#include "util/cleanup.h"
#include "util/hex.h"

#define HCL_HEADER        32
#define HCL_HW_REPORT     32
#define HCL_REQUEST_DATA  (32 + 1184)
#define HCL_VAR_DATA      (HCL_REQUEST_DATA + 20)
#define HCL_TYPE_SNP      2
#define HCL_TYPE_TDX      4
#define HCL_MAX           (16u * 1024)
#define AZ_REPORT_DATA_NV 0x01400002u
#define IMDS_DEFAULT      "http://169.254.169.254"

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int guest_hcl_parse(const uint8_t *r, size_t len, guest_hcl_t *out, pp_error_t *err)
{
    memset(out, 0, sizeof(*out));
    if (len < HCL_VAR_DATA)
        return pp_error_set(err, -EBADMSG, "HCL report of %zu bytes: shorter than its header", len);
    if (memcmp(r, "HCLA", 4) != 0)
        return pp_error_set(err, -EBADMSG, "HCL report: no `HCLA` signature");
    uint32_t type = le32(r + HCL_REQUEST_DATA + 8), var = le32(r + HCL_REQUEST_DATA + 16);
    if (type != HCL_TYPE_SNP && type != HCL_TYPE_TDX)
        return pp_error_set(err, -EBADMSG, "HCL report: report type %u is neither SNP nor TDX",
                            type);
    if (var > len - HCL_VAR_DATA)
        return pp_error_set(err, -EBADMSG, "HCL report: its runtime claims run past the end");
    out->tee = type == HCL_TYPE_SNP ? GUEST_TEE_AZ_SNP_VTPM : GUEST_TEE_AZ_TDX_VTPM;
    out->hw_report = r + HCL_HW_REPORT;
    out->hw_report_len = type == HCL_TYPE_SNP ? GUEST_SNP_REPORT_LEN : 1024;
    out->claims = r + HCL_VAR_DATA;
    out->claims_len = var;
    out->hash_type = le32(r + HCL_REQUEST_DATA + 12);
    return 0;
}

static int hex_list(const uint8_t pcrs[24][32], json_t **out)
{
    json_t *a = json_array();
    for (int i = 0; a != NULL && i < 24; i++) {
        char h[65];
        pp_hex_encode(pcrs[i], 32, h);
        if (json_array_append_new(a, json_string(h)) < 0) {
            json_decref(a);
            a = NULL;
        }
    }
    *out = a;
    return a ? 0 : -ENOMEM;
}

json_t *guest_az_evidence_json(guest_tee_t tee, const uint8_t *sig, size_t sig_len,
                               const uint8_t *msg, size_t msg_len, const uint8_t pcrs[24][32],
                               const uint8_t *hcl, size_t hcl_len, const uint8_t *extra,
                               size_t extra_len)
{
    cleanup_free char *sh = malloc(2 * sig_len + 1);
    cleanup_free char *mh = malloc(2 * msg_len + 1);
    json_t *list = NULL;
    if (sh == NULL || mh == NULL || hex_list(pcrs, &list) < 0)
        return NULL;
    pp_hex_encode(sig, sig_len, sh);
    pp_hex_encode(msg, msg_len, mh);
    /* serde_with's URL-safe base64 pads. */
    pp_buf_t hb, eb;
    pp_buf_init(&hb, 0);
    pp_buf_init(&eb, 0);
    json_t *ev = NULL;
    if (pp_base64url_encode(hcl, hcl_len, &hb) == 0 &&
        pp_base64url_encode(extra, extra_len, &eb) == 0) {
        for (size_t i = hb.len % 4; i && i < 4; i++)
            pp_buf_append(&hb, "=", 1);
        for (size_t i = eb.len % 4; i && i < 4; i++)
            pp_buf_append(&eb, "=", 1);
        if (pp_buf_append_byte(&hb, 0) == 0 && pp_buf_append_byte(&eb, 0) == 0)
            ev = json_pack("{s:i,s:{s:s,s:s,s:o},s:s,s:s}", "version", 2, "tpm_quote", "signature",
                           sh, "message", mh, "pcrs", list, "hcl_report", (const char *)hb.data,
                           tee == GUEST_TEE_AZ_SNP_VTPM ? "vcek" : "td_quote",
                           (const char *)eb.data);
    }
    if (ev == NULL && list != NULL)
        json_decref(list);
    pp_buf_free(&hb);
    pp_buf_free(&eb);
    return ev;
}

/* ---- the paravisor's TPM ---------------------------------------------------- */

static int nv_read(guest__tpm_t *t, uint32_t index, pp_buf_t *out, pp_error_t *err)
{
    ESYS_TR nv;
    TSS2_RC rc =
        Esys_TR_FromTPMPublic(t->esys, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv);
    if (rc != TSS2_RC_SUCCESS)
        return pp_error_set(err, -ENOENT, "NV index 0x%08x: %s", index, Tss2_RC_Decode(rc));
    TPM2B_NV_PUBLIC *pub = NULL;
    rc = Esys_NV_ReadPublic(t->esys, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL);
    if (rc != TSS2_RC_SUCCESS)
        return pp_error_set(err, -EIO, "NV index 0x%08x: %s", index, Tss2_RC_Decode(rc));
    uint16_t size = pub->nvPublic.dataSize;
    Esys_Free(pub);
    if (size > HCL_MAX)
        return pp_error_set(err, -EMSGSIZE, "NV index 0x%08x holds %u bytes", index, size);
    for (uint16_t off = 0; off < size;) {
        uint16_t n = size - off > 1024 ? 1024 : (uint16_t)(size - off);
        TPM2B_MAX_NV_BUFFER *data = NULL;
        rc = Esys_NV_Read(t->esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                          ESYS_TR_NONE, n, off, &data);
        if (rc != TSS2_RC_SUCCESS)
            return pp_error_set(err, -EIO, "read NV index 0x%08x: %s", index, Tss2_RC_Decode(rc));
        int r = pp_buf_append(out, data->buffer, data->size);
        uint16_t got = data->size;
        Esys_Free(data);
        if (r < 0 || got == 0)
            return pp_error_set(err, r < 0 ? r : -EIO, "read NV index 0x%08x", index);
        off = (uint16_t)(off + got);
    }
    return 0;
}

/* The report data index: made (owner read/write, 64 bytes) when absent. */
static int nv_write_report_data(guest__tpm_t *t, const uint8_t rd[64], pp_error_t *err)
{
    ESYS_TR nv;
    TSS2_RC rc = Esys_TR_FromTPMPublic(t->esys, AZ_REPORT_DATA_NV, ESYS_TR_NONE, ESYS_TR_NONE,
                                       ESYS_TR_NONE, &nv);
    if (rc != TSS2_RC_SUCCESS) {
        TPM2B_NV_PUBLIC pub = {.nvPublic = {.nvIndex = AZ_REPORT_DATA_NV,
                                            .nameAlg = TPM2_ALG_SHA256,
                                            .attributes = TPMA_NV_OWNERWRITE | TPMA_NV_OWNERREAD,
                                            .dataSize = 64}};
        TPM2B_AUTH auth = {0};
        rc = Esys_NV_DefineSpace(t->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                 ESYS_TR_NONE, &auth, &pub, &nv);
        if (rc != TSS2_RC_SUCCESS)
            return pp_error_set(err, -EIO, "define NV index 0x%08x: %s", AZ_REPORT_DATA_NV,
                                Tss2_RC_Decode(rc));
    }
    TPM2B_MAX_NV_BUFFER data = {.size = 64};
    memcpy(data.buffer, rd, 64);
    rc = Esys_NV_Write(t->esys, ESYS_TR_RH_OWNER, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                       &data, 0);
    if (rc != TSS2_RC_SUCCESS)
        return pp_error_set(err, -EIO, "write NV index 0x%08x: %s", AZ_REPORT_DATA_NV,
                            Tss2_RC_Decode(rc));
    return 0;
}

int guest__azure_detect(guest_attester_t *a)
{
    if (!guest__attester_tpm_tcti(a))
        return 0;
    guest__tpm_t t;
    pp_error_t err;
    if (guest__tpm_open(&t, a->tcti, &err) < 0)
        return 0;
    pp_buf_t hcl;
    pp_buf_init(&hcl, HCL_MAX);
    guest_hcl_t h;
    int found = nv_read(&t, GUEST_AZ_REPORT_NV, &hcl, &err) == 0 &&
                guest_hcl_parse(hcl.data, hcl.len, &h, &err) == 0;
    guest__tpm_close(&t);
    pp_buf_free(&hcl);
    if (!found)
        return 0;
    a->ops = h.tee == GUEST_TEE_AZ_SNP_VTPM ? &guest_az_snp_ops : &guest_az_tdx_ops;
    snprintf(a->why, sizeof(a->why), "an Azure paravisor's HCL report in NV index 0x%08x",
             GUEST_AZ_REPORT_NV);
    return 1;
}

/* ---- the instance metadata service ------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t n, void *data)
{
    pp_buf_t *b = data;
    return pp_buf_append(b, p, size * n) == 0 ? size * n : 0;
}

/* One blocking request (we run on the thread pool, never on the loop). */
static int imds(guest_attester_t *a, const char *path, const char *body, json_t **out,
                pp_error_t *err)
{
    char url[512];
    const char *base = a->opts.imds_url ? a->opts.imds_url : IMDS_DEFAULT;
    snprintf(url, sizeof(url), "%s%s", base, path);
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    pp_buf_t b;
    pp_buf_init(&b, 256 * 1024);
    if (c == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    h = curl_slist_append(h, "Metadata: true");
    if (body != NULL)
        h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (body != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    int r = 0;
    if (cc != CURLE_OK)
        r = pp_error_set(err, -EHOSTUNREACH, "instance metadata `%s`: %s", path,
                         curl_easy_strerror(cc));
    else if (status != 200)
        r = pp_error_set(err, -EIO, "instance metadata `%s`: status %ld", path, status);
    else if ((*out = json_loadb((const char *)b.data, b.len, 0, NULL)) == NULL)
        r = pp_error_set(err, -EBADMSG, "instance metadata `%s`: not JSON", path);
    pp_buf_free(&b);
    return r;
}

/* The VCEK, as DER, from the PEM the metadata service gives. */
static int vcek(guest_attester_t *a, pp_buf_t *der, pp_error_t *err)
{
    json_t *j = NULL;
    int r = imds(a, "/metadata/THIM/amd/certification", NULL, &j, err);
    if (r < 0)
        return r;
    const char *pem = json_string_value(json_object_get(j, "vcekCert"));
    BIO *bio = pem ? BIO_new_mem_buf(pem, -1) : NULL;
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    unsigned char *d = NULL;
    int n = x ? i2d_X509(x, &d) : -1;
    if (n <= 0)
        r = pp_error_set(err, -EBADMSG, "instance metadata: `vcekCert` is not a PEM certificate");
    else
        r = pp_buf_append(der, d, (size_t)n);
    OPENSSL_free(d);
    X509_free(x);
    BIO_free(bio);
    json_decref(j);
    return r;
}

static int td_quote(guest_attester_t *a, const uint8_t *td_report, pp_buf_t *out, pp_error_t *err)
{
    cleanup_free char *rep = pp_base64url_str(td_report, 1024);
    json_t *req = rep ? json_pack("{s:s}", "report", rep) : NULL;
    cleanup_free char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (body == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    json_t *j = NULL;
    int r = imds(a, "/acc/tdquote", body, &j, err);
    if (r < 0)
        return r;
    const char *q = json_string_value(json_object_get(j, "quote"));
    if (q == NULL || pp_base64url_decode(q, strlen(q), out) < 0)
        r = pp_error_set(err, -EBADMSG, "instance metadata: `quote` is not base64url");
    json_decref(j);
    return r;
}

static int az_evidence(guest_attester_t *a, const uint8_t *rd, size_t len, json_t **out,
                       pp_error_t *err)
{
    uint8_t data[64] = {0};
    memcpy(data, rd, len);
    guest__tpm_t t;
    int r = guest__tpm_open(&t, a->tcti, err);
    if (r < 0)
        return r;
    pp_buf_t hcl, extra;
    pp_buf_init(&hcl, HCL_MAX);
    pp_buf_init(&extra, 64 * 1024);
    cleanup_free guest__quote_t *q = calloc(1, sizeof(*q));
    ESYS_TR ak;
    if (q == NULL)
        r = pp_error_set(err, -ENOMEM, "out of memory");
    if (r == 0)
        r = nv_write_report_data(&t, data, err);
    if (r == 0 && a->opts.az_refresh_ms > 0)
        usleep(a->opts.az_refresh_ms * 1000); /* the paravisor's refresh */
    if (r == 0)
        r = nv_read(&t, GUEST_AZ_REPORT_NV, &hcl, err);
    if (r == 0)
        r = guest__tpm_ak(&t, GUEST_AZ_AK_HANDLE, 0, &ak, err);
    if (r == 0)
        r = guest__tpm_quote(&t, ak, data, 64, q, err);
    guest__tpm_close(&t);
    guest_hcl_t h;
    if (r == 0 && (r = guest_hcl_parse(hcl.data, hcl.len, &h, err)) == 0 && h.tee != a->ops->tee)
        r = pp_error_set(err, -EIO, "HCL report: its type changed since start");
    if (r == 0)
        r = h.tee == GUEST_TEE_AZ_SNP_VTPM ? vcek(a, &extra, err)
                                           : td_quote(a, h.hw_report, &extra, err);
    /* The raw RSA signature, as upstream sends it: after sigAlg, hash and
     * the size of TPMT_SIGNATURE. */
    if (r == 0 && q->sig_len < 6)
        r = pp_error_set(err, -EIO, "TPM quote: no signature");
    if (r == 0 && (*out = guest_az_evidence_json(h.tee, q->sig + 6, q->sig_len - 6, q->attest,
                                                 q->attest_len, (const uint8_t(*)[32])q->pcrs,
                                                 hcl.data, hcl.len, extra.data, extra.len)) == NULL)
        r = pp_error_set(err, -ENOMEM, "out of memory");
    pp_buf_free(&hcl);
    pp_buf_free(&extra);
    return r;
}

/* PCRs work as on any vTPM: PCR8 holds the initdata digest. */
static int az_bind(guest_attester_t *a, const uint8_t *digest, size_t len, pp_error_t *err)
{
    return guest_tpm_ops.bind(a, digest, len, err);
}

static int az_extend(guest_attester_t *a, unsigned index, const uint8_t digest[32], pp_error_t *err)
{
    return guest_tpm_ops.extend(a, index, digest, err);
}

static int az_read(guest_attester_t *a, unsigned index, uint8_t out[32], pp_error_t *err)
{
    return guest_tpm_ops.read(a, index, out, err);
}

const guest_attester_ops_t guest_az_snp_ops = {
    .tee = GUEST_TEE_AZ_SNP_VTPM,
    .name = "az-snp-vtpm",
    .report_data_len = 64,
    .can_extend = 1,
    .evidence = az_evidence,
    .extend = az_extend,
    .read = az_read,
    .bind = az_bind,
};

const guest_attester_ops_t guest_az_tdx_ops = {
    .tee = GUEST_TEE_AZ_TDX_VTPM,
    .name = "az-tdx-vtpm",
    .report_data_len = 64,
    .can_extend = 1,
    .evidence = az_evidence,
    .extend = az_extend,
    .read = az_read,
    .bind = az_bind,
};
