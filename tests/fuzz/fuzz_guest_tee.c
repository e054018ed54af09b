/* What a TEE interface hands the attestation agent, on arbitrary bytes: an
 * SEV-SNP report and certificate table, a TD quote, a CC event log, an
 * Azure HCL report. Every parser answers or refuses within the bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attester.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pp_error_t err;
    /* Copies of exactly `size` bytes, so ASan sees any read past them. */
    uint8_t *p = malloc(size ? size : 1);
    if (p == NULL)
        return 0;
    memcpy(p, data, size);
    json_t *j = guest_snp_report_json(p, size, &err);
    json_decref(j);
    j = guest_snp_certs_json(p, size, &err);
    json_decref(j);
    guest_tdx_quote_t q;
    if (guest_tdx_quote_parse(p, size, &q, &err) == 0) {
        if (q.report_data + 64 > p + size || q.signature + q.sig_data_len > p + size)
            abort();
        j = guest_tdx_evidence_json(p, size, p, size, &err);
        json_decref(j);
    }
    size_t n;
    if (guest_ccel_trim(p, size, &n, &err) == 0 && n > size)
        abort();
    guest_hcl_t h;
    if (guest_hcl_parse(p, size, &h, &err) == 0 && h.claims + h.claims_len > p + size)
        abort();
    free(p);
    return 0;
}
