/* The AWS provider's own tests against the fake EC2: its settings and the
 * fake's EC2-specific report, over the shared harness. */
#include "aws_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The server side's verdict that every scenario must keep. */
void assert_clean(json_t *rep)
{
    if (rnum(rep, "signature_failures") != 0 || rnum(rep, "auth_failures") != 0 ||
        json_array_size(json_object_get(rep, "param_failures")) != 0) {
        char *s = json_dumps(rep, JSON_COMPACT);
        fail_msg("the fake refused requests: %.2000s", s);
    }
    assert_int_equal(json_object_size(json_object_get(rep, "duplicates")), 0);
}

void base_env(void)
{
    static const char *const unset[] = {
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_STS",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_SESSION_TOKEN",
        "PODVM_INSTANCE_TYPES",
        "USE_PUBLIC_IP",
        "DISABLECVM",
        "USE_PODVM_LAUNCHTEMPLATE",
        "PODVM_LAUNCHTEMPLATE_NAME",
        "SSH_KP_NAME",
        "AWS_DEFAULT_REGION",
        "AWS_CA_BUNDLE",
    };
    for (size_t i = 0; i < sizeof(unset) / sizeof(unset[0]); i++)
        unsetenv(unset[i]);
    static char rate[16], burst[16];
    snprintf(rate, sizeof(rate), "%d", RATE);
    snprintf(burst, sizeof(burst), "%d", BURST);
    const char *set[][2] = {
        {"AWS_REGION", "us-east-1"},
        {"AWS_ENDPOINT_URL", fake_url},
        {"AWS_EC2_METADATA_SERVICE_ENDPOINT", fake_url},
        {"AWS_ACCESS_KEY_ID", getenv("FAKE_EC2_ACCESS_KEY")},
        {"AWS_SECRET_ACCESS_KEY", getenv("FAKE_EC2_SECRET_KEY")},
        {"PODVM_AMI_ID", AMI},
        {"PODVM_INSTANCE_TYPE", "m6a.large"},
        {"AWS_SUBNET_ID", "subnet-0123456789abcdef0"},
        {"AWS_SG_IDS", "sg-0aaaaaaaaaaaaaaaa, sg-0bbbbbbbbbbbbbbbb"},
        {"TAGS", "team=peer-pods,env=ci"},
        {"ROOT_VOLUME_SIZE", "30"},
        {"AWS_RETRY_BASE_DELAY_MS", "5"},
        {"AWS_RETRY_MAX_DELAY_MS", "40"},
        {"AWS_MAX_ATTEMPTS", "8"},
        {"AWS_API_ATTEMPT_TIMEOUT_MS", "400"},
        {"AWS_API_TIMEOUT_MS", "15000"},
        {"AWS_IP_POLL_INTERVAL_MS", "20"},
        {"AWS_IP_WAIT_TIMEOUT_MS", "5000"},
        {"AWS_API_RATE_LIMIT", rate},
        {"AWS_API_BURST", burst},
    };
    for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++) {
        assert_non_null(set[i][1]);
        setenv(set[i][0], set[i][1], 1);
    }
}

pp_provider_t *provider(void)
{
    return provider_of(&pp_provider_aws_ops, NODE);
}

json_t *last_run(json_t *rep)
{
    json_t *runs = json_object_get(rep, "runs");
    assert_true(json_array_size(runs) > 0);
    return json_array_get(runs, json_array_size(runs) - 1);
}

const char *tag_of(json_t *run, const char *key)
{
    json_t *specs = json_object_get(run, "TagSpecifications");
    json_t *tags = json_object_get(json_array_get(specs, 0), "Tags");
    size_t i;
    json_t *t;
    json_array_foreach(tags, i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "Key")), key) == 0)
            return json_string_value(json_object_get(t, "Value"));
    }
    return NULL;
}

int harness_setup(void **state)
{
    harness_reset(state);
    base_env();
    return 0;
}
