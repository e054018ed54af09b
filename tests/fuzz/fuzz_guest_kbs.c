/* What the KBS and the pod send the guest components, on arbitrary bytes:
 * a JWE (decrypted with a key of ours: only a tag that matches could give
 * plaintext, which arbitrary bytes never have), a challenge, a token's
 * claims, a resource URI and a sealed secret. The first byte picks one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kbs.h"
#include "sealed.h"
#include "teekey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One key per run: making one for every input would measure OpenSSL. */
static guest_teekey_t *key(int rsa)
{
    static guest_teekey_t *keys[2];
    pp_error_t err;
    if (keys[rsa] == NULL &&
        guest_teekey_new(rsa ? GUEST_KEY_RSA : GUEST_KEY_EC_P256, &keys[rsa], &err) != 0)
        abort();
    return keys[rsa];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    pp_error_t err;
    switch (data[0] % 5) {
    case 0:
    case 1: {
        pp_buf_t out;
        pp_buf_init(&out, GUEST_JWE_MAX);
        if (guest_jwe_decrypt(key(data[0] % 5), s, n, &out, &err) == 0)
            abort(); /* a forged JWE never decrypts */
        guest_buf_wipe(&out);
        break;
    }
    case 2: {
        char *nonce = NULL;
        const void *md;
        if (guest__kbs_challenge(s, n, &nonce, &md, &err) == 0 && (nonce == NULL || !nonce[0]))
            abort();
        free(nonce);
        break;
    }
    case 3: {
        char *z = malloc(n + 1);
        if (z != NULL) {
            memcpy(z, s, n);
            z[n] = 0;
        }
        int64_t exp;
        char path[512];
        if (z != NULL) {
            guest_jwt_exp(z, &exp);
            if (guest_resource_path(z, strlen(z), path, sizeof(path), &err) == 0 &&
                (strstr(path, "..") != NULL && strstr(path, "/../") != NULL))
                abort();
        }
        free(z);
        break;
    }
    default: {
        guest_sealed_t *sealed = NULL;
        if (guest_sealed_parse(s, n, &sealed, &err) == 0) {
            char uri[1024];
            guest_sealed_vault_uri(sealed, uri, sizeof(uri), &err);
            static const char jwk[] = "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":"
                                      "\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\",\"y\":"
                                      "\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}";
            if (guest_sealed_verify(sealed, jwk, sizeof(jwk) - 1, &err) == 0)
                abort(); /* no forged signature verifies */
            guest_sealed_free(sealed);
        }
        break;
    }
    }
    return 0;
}
