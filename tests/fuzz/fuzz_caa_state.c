/* Fuzzes cloud-api-adaptor's sandbox record reader (PODS_DIR/<sid>/state.json,
 * read at every start): any bytes are refused or accepted without harm, and
 * a record it accepts encodes to one that decodes to the same record. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "sandbox.h"
#include "state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static caa_sandbox_t *fresh(caa_daemon_t *d)
{
    caa_sandbox_t *sb = NULL;
    /* The id the corpus's records carry. */
    if (caa_sandbox_new(d, "0123456789abcdef", &sb, NULL) < 0)
        abort();
    return sb;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    caa_daemon_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        abort();
    caa_sandbox_t *a = fresh(d);
    if (caa_state_decode(a, (const char *)data, size, NULL) == 0) {
        char *text = NULL;
        if (caa_state_encode(a, &text, NULL) != 0)
            abort();
        caa_sandbox_t *b = fresh(d);
        if (caa_state_decode(b, text, strlen(text), NULL) != 0)
            abort();
        char *again = NULL;
        if (caa_state_encode(b, &again, NULL) != 0 || strcmp(text, again) != 0)
            abort();
        if (a->state != b->state || a->has_instance != b->has_instance ||
            a->pod_index != b->pod_index || strcmp(a->instance.id, b->instance.id) != 0)
            abort();
        free(again);
        free(text);
        caa_sandbox_free(b);
    }
    caa_sandbox_free(a);
    free(d);
    return 0;
}
