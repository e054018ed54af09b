/* Fuzzes the pod-network JSON reader (apf.json's `pod-network`, from user
 * data): anything it accepts must encode and decode back to the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pp_podnet_t *a = calloc(1, sizeof(*a));
    pp_podnet_t *b = calloc(1, sizeof(*b));
    if (a == NULL || b == NULL)
        abort();
    if (pp_podnet_decode((const char *)data, size, a, NULL) == 0) {
        char *text = NULL;
        /* Some accepted values may have no JSON form (port 0); those are
         * refused by the encoder, which is fine. */
        if (pp_podnet_encode(a, &text, NULL) == 0) {
            if (pp_podnet_decode(text, strlen(text), b, NULL) != 0)
                abort();
            char *again = NULL;
            if (pp_podnet_encode(b, &again, NULL) != 0 || strcmp(text, again) != 0)
                abort();
            free(again);
            free(text);
        }
    }
    free(a);
    free(b);
    return 0;
}
