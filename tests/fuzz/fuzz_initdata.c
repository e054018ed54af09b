/* Initdata on arbitrary bytes: as TOML (a success carries the digest of
 * exactly these bytes), as gzip+base64 under a small limit (and what decodes
 * is parsed too), and through encode then decode, which must give the bytes
 * back. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "userdata/initdata.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DECODE_LIMIT (64u * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pp_initdata_t id;
    pp_error_t err;
    if (pp_initdata_parse(data, size, &id, &err) == 0) {
        uint8_t d[PP_INITDATA_DIGEST_MAX];
        size_t n;
        if (pp_initdata_digest(id.alg, data, size, d, &n) != 0 || n != id.digest_len ||
            memcmp(d, id.digest, n) != 0)
            abort();
        pp_initdata_free(&id);
    }

    pp_buf_t out;
    pp_buf_init(&out, 0);
    if (pp_initdata_decode((const char *)data, size, DECODE_LIMIT, &out, &err) == 0) {
        if (out.len > DECODE_LIMIT)
            abort();
        if (pp_initdata_parse(out.data, out.len, &id, &err) == 0)
            pp_initdata_free(&id);
    }
    pp_buf_free(&out);

    if (size <= DECODE_LIMIT) {
        pp_buf_t enc, dec;
        pp_buf_init(&enc, 0);
        pp_buf_init(&dec, 0);
        if (pp_initdata_encode(data, size, &enc, &err) != 0 ||
            pp_initdata_decode((const char *)enc.data, enc.len, size ? size : 1, &dec, &err) != 0 ||
            dec.len != size || (size > 0 && memcmp(dec.data, data, size) != 0))
            abort();
        pp_buf_free(&enc);
        pp_buf_free(&dec);
    }
    return 0;
}
