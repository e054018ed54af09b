/* Fuzzes the AWS provider's readers of untrusted responses: EC2 and STS
 * XML (errors, instances, terminations, instance types, images,
 * credentials), IMDS JSON credentials, and the HTTP classify hook that
 * reads error codes. Every reader sees every input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/aws/aws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The HTTP layer hands bodies over NUL-terminated. */
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    pp__aws_error_info_t ei;
    pp__aws_parse_error(text, size, &ei);

    pp__aws_instances_t l;
    if (pp__aws_parse_instances(text, size, &l) == 0) {
        for (size_t i = 0; i < l.n; i++)
            if (!pp__aws_instance_id_valid(l.items[i].id))
                abort();
        pp__aws_instances_free(&l);
    }

    char state[32];
    pp__aws_parse_terminate(text, size, "i-0abcdef1234567890", state, sizeof(state));

    pp__aws_types_t t;
    if (pp__aws_parse_instance_types(text, size, &t) == 0) {
        pp_instance_types_sort(t.items, t.n);
        pp__aws_types_free(&t);
    }

    pp__aws_image_t img;
    pp__aws_parse_image(text, size, "ami-0123456789abcdef0", &img);

    pp__aws_sts_creds_t c;
    if (pp__aws_parse_sts(text, size, &c) == 0)
        pp__aws_sts_creds_free(&c);
    if (pp__aws_parse_imds_creds(text, size, &c) == 0)
        pp__aws_sts_creds_free(&c);

    pp_http_response_t resp = {.status = 500, .body = text, .body_len = size};
    pp__aws_http_classify(&resp, NULL);
    resp.status = 400;
    pp__aws_http_classify(&resp, NULL);

    time_t when;
    pp__aws_parse_time(text, &when);
    free(text);
    return 0;
}
