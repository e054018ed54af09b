/* Fuzzes the ibmcloud provider's readers of untrusted answers: IAM's tokens
 * and refusals, the VPC API's errors, instances, instance lists (and their
 * next page's token), network interfaces with floating IPs, profiles,
 * images, volumes' tags, floating IPs, dedicated hosts' zones, the Global
 * Tagging API's results, and the HTTP classify hook. Every reader sees
 * every input; what they return is checked against their bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/ibmcloud/ibmcloud.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The HTTP layer hands bodies over NUL-terminated. */
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    pp__ibm_token_t tok;
    if (pp__ibm_parse_token(text, size, &tok) == 0) {
        if (tok.access_token == NULL || tok.expires_in <= 0)
            abort();
        pp__ibm_token_free(&tok);
    }
    char code[64], msg[256];
    pp__ibm_parse_iam_error(text, size, code, sizeof(code), msg, sizeof(msg));

    pp__ibm_error_info_t ei;
    if (pp__ibm_parse_error(text, size, &ei) == 0 && ei.code[0] == '\0')
        abort();

    pp__ibm_instance_t in;
    if (pp__ibm_parse_instance(text, size, &in) == 0 &&
        (in.nnics > PP_IBM_MAX_NICS || in.id[0] == '\0'))
        abort();
    if (pp__ibm_parse_nics(text, size, &in) == 0 && in.nnics > PP_IBM_MAX_NICS)
        abort();

    pp__ibm_instances_t l;
    if (pp__ibm_parse_instances(text, size, &l) == 0) {
        if (l.n > PP_IBM_MAX_ITEMS || strlen(l.next_start) >= sizeof(l.next_start))
            abort();
        pp__ibm_instances_free(&l);
    }

    pp__ibm_profile_t pr;
    if (pp__ibm_parse_profile(text, size, &pr) == 0 &&
        (pr.spec.vcpus == 0 || pr.spec.memory_mib == 0))
        abort();
    pp__ibm_image_t img;
    pp__ibm_parse_image(text, size, &img);
    pp__ibm_owner_t o;
    pp__ibm_parse_volume_owner(text, size, &o);
    char id[PP_IBM_ID_MAX], addr[48], zone[64];
    pp__ibm_parse_fip(text, size, id, addr);
    pp__ibm_parse_zone(text, size, zone, sizeof(zone));
    pp__ibm_parse_tag_results(text, size, msg, sizeof(msg));

    pp_http_response_t resp = {.status = 409, .body = text, .body_len = size};
    pp__ibm_http_classify(&resp, NULL);
    resp.status = 429;
    pp__ibm_http_classify(&resp, NULL);

    /* Names that come back from the cloud go through the same rules. */
    pp__ibm_profile_name_t pn;
    pp__ibm_profile_name(text, &pn);
    pp__ibm_instance_id_valid(text);

    free(text);
    return 0;
}
