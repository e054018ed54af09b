/* Fuzzes the GCP provider's readers of untrusted responses: Compute Engine
 * errors, operations, instances and instance lists, machine types, images,
 * Resource Manager tag lists, the token endpoint's and the metadata
 * server's tokens and refusals, a service-account key, and the HTTP
 * classify hook. Every reader sees every input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/gcp/gcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The HTTP layer hands bodies over NUL-terminated. */
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    pp__gcp_error_info_t ei;
    pp__gcp_parse_error(text, size, &ei);

    pp__gcp_operation_t op;
    if (pp__gcp_parse_operation(text, size, &op) == 0 &&
        (strlen(op.name) >= sizeof(op.name) || strlen(op.error_code) >= sizeof(op.error_code)))
        abort();

    pp__gcp_instance_t in;
    pp__gcp_parse_instance(text, size, &in);

    pp__gcp_instances_t l;
    if (pp__gcp_parse_instances(text, size, &l) == 0) {
        if (l.n > PP_GCP_MAX_ITEMS)
            abort();
        pp__gcp_instances_free(&l);
    }

    pp_instance_type_t t;
    if (pp__gcp_parse_machine_type(text, size, &t) == 0 && (t.vcpus == 0 || t.memory_mib == 0))
        abort();

    unsigned gib;
    pp__gcp_parse_image(text, size, &gib);

    pp__gcp_token_t tok;
    if (pp__gcp_parse_token(text, size, &tok) == 0) {
        if (tok.access_token == NULL || tok.expires_in <= 0)
            abort();
        pp__gcp_token_free(&tok);
    }

    char code[96], desc[256];
    pp__gcp_parse_oauth_error(text, size, code, sizeof(code), desc, sizeof(desc));

    pp__gcp_tag_list_t tags;
    if (pp__gcp_parse_tags(text, size, "tagKeys", &tags) == 0)
        pp__gcp_tags_free(&tags);
    if (pp__gcp_parse_tags(text, size, "tagValues", &tags) == 0)
        pp__gcp_tags_free(&tags);

    pp__gcp_key_t key;
    pp_error_t err;
    if (pp__gcp_parse_key(text, size, &key, &err) == 0)
        pp__gcp_key_free(&key);

    pp_http_response_t resp = {.status = 403, .body = text, .body_len = size};
    pp__gcp_http_classify(&resp, NULL);
    resp.status = 429;
    pp__gcp_http_classify(&resp, NULL);

    free(text);
    return 0;
}
