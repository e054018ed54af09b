/* Fuzzes the forwarder's reader of apf.json (forwarder/config.h), the file
 * process-user-data writes from the user data: any bytes, as a whole
 * document. Beyond "no crash, no leak": reading the same bytes twice gives
 * the same answer and the same configuration, a refusal says why, and a
 * `pod-network` that was read is an object. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apf_config_t a, b;
    pp_error_t err = {0};
    CHECK(apf_config_init(&a) == 0);
    CHECK(apf_config_init(&b) == 0);
    int ra = apf_config_apply_json(&a, (const char *)data, size, "fuzz", &err);
    int rb = apf_config_apply_json(&b, (const char *)data, size, "fuzz", &err);
    CHECK(ra == rb);
    if (ra == 0) {
        CHECK(a.file_loaded);
        CHECK(same(a.pod_name, b.pod_name) && same(a.pod_namespace, b.pod_namespace));
        CHECK(same(a.tls_min_version, b.tls_min_version));
        CHECK(same(a.tls_cipher_suites, b.tls_cipher_suites));
        CHECK(a.has_pod_network == b.has_pod_network);
        CHECK(!a.has_pod_network || json_is_object(a.pod_network));
        CHECK(!a.has_pod_network || json_equal(a.pod_network, b.pod_network));
    } else {
        CHECK(err.message[0] != '\0');
    }
    apf_config_fini(&a);
    apf_config_fini(&b);
    return 0;
}
