/* Answers from cloud metadata services and TEE reports, all untrusted: the
 * first byte picks the parser (base64 user data, a session token, IBM's
 * token and initialization JSON, an SNP report, a TDX quote), the rest is
 * its input. Successes must respect the limits they promise. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imds.h"
#include "tee.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LIMIT 4096u

static void check_token(int r, const char *tok)
{
    if (r != 0)
        return;
    size_t n = strlen(tok);
    if (n == 0 || n > PUD_IMDS_TOKEN_MAX)
        abort();
    for (size_t i = 0; i < n; i++)
        if (tok[i] < 0x21 || tok[i] > 0x7e)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    pp_error_t err;
    pp_buf_t out;
    pp_buf_init(&out, 0);
    char tok[PUD_IMDS_TOKEN_MAX + 1];
    pud_launch_value_t lv;
    switch (data[0] % 6) {
    case 0:
        if (pud_imds_decode_base64(p, n, LIMIT, &out, &err) == 0 &&
            (out.len == 0 || out.len > LIMIT))
            abort();
        break;
    case 1:
        check_token(pud_imds_token_text(p, n, tok, &err), tok);
        break;
    case 2:
        check_token(pud_imds_ibm_token(p, n, tok, &err), tok);
        break;
    case 3:
        if (pud_imds_ibm_user_data(p, n, LIMIT, &out, &err) == 0 &&
            (out.len == 0 || out.len > LIMIT))
            abort();
        break;
    case 4:
        if (pud_tsm_launch_value("sev_guest", p, n, &lv, &err) == 0 && lv.len != 32)
            abort();
        break;
    case 5:
        if (pud_tsm_launch_value("tdx_guest", p, n, &lv, &err) == 0 && lv.len != 48)
            abort();
        break;
    }
    pp_buf_free(&out);
    return 0;
}
