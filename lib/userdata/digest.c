/* pp_initdata_digest() with OpenSSL, in its own library (pp_initdata_digest)
 * so that a program can take the digest from elsewhere (initdata.h). */
#include <errno.h>

#include <openssl/evp.h>

#include "userdata/initdata.h"

int pp_initdata_digest(pp_initdata_alg_t alg, const void *data, size_t len, uint8_t *out,
                       size_t *out_len)
{
    const EVP_MD *md = NULL;
    switch (alg) {
    case PP_INITDATA_SHA256:
        md = EVP_sha256();
        break;
    case PP_INITDATA_SHA384:
        md = EVP_sha384();
        break;
    case PP_INITDATA_SHA512:
        md = EVP_sha512();
        break;
    }
    if (md == NULL)
        return -EINVAL;
    unsigned int n = 0;
    if (EVP_Digest(data, len, out, &n, md, NULL) != 1)
        return -ENOMEM;
    *out_len = n;
    return 0;
}

int pp_initdata_parse(const void *toml, size_t len, pp_initdata_t *out, pp_error_t *err)
{
    return pp_initdata_parse_with(toml, len, pp_initdata_digest, out, err);
}
