/* Fuzzes the Azure provider's readers of untrusted answers: Azure AD's and
 * IMDS's tokens, ARM's and Azure AD's errors, async operations, VMs, NICs,
 * public addresses, their list pages and the region's VM sizes, and the
 * HTTP classify hook that reads error codes. Every reader sees every
 * input, and what a reader accepts is checked against its contract. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/azure/azure.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL inside the field or none at its end breaks the fixed-size copy. */
#define TERMINATED(f) (memchr((f), '\0', sizeof(f)) != NULL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The HTTP layer hands bodies over NUL-terminated. */
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    pp__azure_token_t t;
    if (pp__azure_parse_token(text, size, &t) == 0) {
        /* It goes into an Authorization header: one line of token chars. */
        if (t.access_token == NULL || t.access_token[0] == '\0' ||
            strpbrk(t.access_token, " \r\n:") != NULL || t.expires_in < 0)
            abort();
        pp__azure_token_free(&t);
    }

    pp__azure_error_info_t ei;
    if (pp__azure_parse_error(text, size, &ei) == 0 &&
        (!TERMINATED(ei.code) || !TERMINATED(ei.message)))
        abort();

    char status[32];
    if (pp__azure_parse_operation(text, size, status, sizeof(status), &ei) == 0 &&
        (status[0] == '\0' || !TERMINATED(status)))
        abort();

    pp__azure_vm_t vm;
    if (pp__azure_parse_vm(text, size, &vm) == 0 && vm.name[0] == '\0')
        abort();

    pp__azure_vms_t vms;
    if (pp__azure_parse_vms(text, size, &vms) == 0) {
        if (vms.n > PP_AZURE_MAX_ITEMS)
            abort();
        for (size_t i = 0; i < vms.n; i++)
            if (vms.items[i].name[0] == '\0' || !TERMINATED(vms.items[i].sandbox_id))
                abort();
        pp__azure_vms_free(&vms);
    }

    pp__azure_addr_t a;
    pp__azure_parse_addr(text, size, &a);
    pp__azure_addrs_t as;
    if (pp__azure_parse_addrs(text, size, &as) == 0)
        pp__azure_addrs_free(&as);

    pp_instance_type_t *types;
    size_t n;
    if (pp__azure_parse_sizes(text, size, &types, &n) == 0) {
        pp_instance_types_sort(types, n);
        free(types);
    }

    pp_http_response_t resp = {.status = 409, .body = text, .body_len = size};
    pp__azure_http_classify(&resp, NULL);
    resp.status = 500;
    pp__azure_http_classify(&resp, NULL);
    free(text);
    return 0;
}
