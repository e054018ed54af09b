/* The ibmcloud provider against the fake IBM Cloud (fake_ibmcloud.py, which
 * starts this program with FAKE_URL and the provider's settings set), one
 * behaviour a scenario: what a TDX pod VM's prototype holds and where its
 * tags and user data go; Secure Execution on s390x; plain VMs; profiles
 * that cannot run the asked mode refused before any call; best fit from the
 * profile list; an annotation's image that does not fit the profile;
 * floating IPs made, listed and released; the dedicated host of the zone;
 * a create that meets its own instance after a lost answer. What every
 * provider must do is in tests/conformance/ (conformance_ibmcloud). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "providers/ibmcloud/ibmcloud.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"

#define IMG_AMD64 "r006-0f9b6a56-aaaa-4e1c-9d2a-1a2b3c4d5e6f"
#define IMG_S390X "r006-1a0c7b67-bbbb-4f2d-8e3b-2b3c4d5e6f70"
#define IMG_SE    "r006-2b1d8c78-cccc-4a3e-9f4c-3c4d5e6f7081"
#define DH_HERE   "0717-d1a2b3c4-0000-4000-8000-000000000001"
#define DH_THERE  "0727-d1a2b3c4-0000-4000-8000-000000000002"
#define DHG_HERE  "0717-e1a2b3c4-0000-4000-8000-000000000001"

/* The settings each scenario changes, put back before the next. */
static const char *const CHANGED[] = {
    "DISABLECVM",    "IBMCLOUD_PODVM_INSTANCE_PROFILE_NAME", "IBMCLOUD_PODVM_INSTANCE_PROFILE_LIST",
    "USE_PUBLIC_IP", "IBMCLOUD_DEDICATED_HOST_IDS",          "IBMCLOUD_DEDICATED_HOST_GROUP_IDS"};
static char *saved[PP_ARRAY_SIZE(CHANGED)];

static int setup(void **state)
{
    harness_reset(state);
    for (size_t i = 0; i < PP_ARRAY_SIZE(CHANGED); i++) {
        if (saved[i] != NULL)
            setenv(CHANGED[i], saved[i], 1);
        else
            unsetenv(CHANGED[i]);
    }
    return 0;
}

static pp_provider_t *provider(void)
{
    return provider_of(&pp_provider_ibmcloud_ops, NODE);
}

static json_t *last_prototype(json_t *rep)
{
    json_t *a = json_object_get(rep, "prototypes");
    assert_true(json_array_size(a) > 0);
    return json_array_get(a, json_array_size(a) - 1);
}

static const char *sget(json_t *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *cur = o;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k != NULL;
         k = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, k);
    return json_is_string(cur) ? json_string_value(cur) : NULL;
}

static void assert_sound(json_t *rep)
{
    if (json_integer_value(json_object_get(rep, "refused_count")) != 0) {
        char *s = rdump(rep, "refused");
        fail_msg("the fake refused requests: %s", s);
    }
}

static void assert_nothing_left(void)
{
    json_t *rep = report();
    assert_sound(rep);
    if (alive_total(rep) != 0) {
        char *s = rdump(rep, "alive_resources");
        fail_msg("left: %s", s);
    }
    json_decref(rep);
}

static int has_tag(json_t *rep, const char *name, const char *tag)
{
    json_t *tags = json_object_get(json_object_get(rep, "tags"), name);
    size_t i;
    json_t *t;
    json_array_foreach(tags, i, t)
    {
        if (strcmp(json_string_value(t), tag) == 0)
            return 1;
    }
    return 0;
}

static void test_tdx(void **state)
{
    (void)state;
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("0123456789abcdef-tdx", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    assert_true(pp__ibm_instance_id_valid(c.inst.id));
    assert_string_equal(c.inst.name, name);
    assert_true(strncmp(c.inst.ip, "10.240.", 7) == 0);
    json_t *rep = report();
    assert_sound(rep);
    json_t *proto = last_prototype(rep);
    assert_string_equal(sget(proto, "confidential_compute_mode"), "tdx");
    assert_true(json_is_true(json_object_get(proto, "enable_secure_boot")));
    assert_string_equal(sget(proto, "profile.name"), "bx3dc-2x10");
    assert_string_equal(sget(proto, "image.id"), IMG_AMD64);
    assert_string_equal(sget(proto, "metadata_service.protocol"), "http");
    assert_int_equal(json_array_size(json_object_get(proto, "network_interfaces")), 1);
    assert_int_equal(json_array_size(json_object_get(
                         json_object_get(proto, "primary_network_interface"), "security_groups")),
                     2);
    json_t *vol = json_object_get(json_object_get(proto, "boot_volume_attachment"), "volume");
    json_t *utags = json_object_get(vol, "user_tags");
    assert_string_equal(json_string_value(json_array_get(utags, 0)), "peerpod-node:" NODE);
    assert_string_equal(json_string_value(json_array_get(utags, 1)),
                        "peerpod-sandbox:0123456789abcdef-tdx");
    /* Upstream's tags, and ours, through Global Tagging. */
    assert_true(has_tag(rep, name, "coco-pod-vm:cq0fake0cluster0id0ci"));
    assert_true(has_tag(rep, name, "team:peer-pods"));
    assert_true(has_tag(rep, name, "env:ci"));
    assert_true(has_tag(rep, name, "peerpod-sandbox:0123456789abcdef-tdx"));
    json_decref(rep);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    assert_nothing_left();
    provider_free(p);
}

static void test_secure_execution(void **state)
{
    (void)state;
    setenv("IBMCLOUD_PODVM_INSTANCE_PROFILE_NAME", "bz2e-2x8", 1);
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("5e0123456789-se", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    json_t *rep = report();
    assert_sound(rep);
    json_t *proto = last_prototype(rep);
    /* SE comes with the profile and the image: no mode, no secure boot. */
    assert_null(json_object_get(proto, "confidential_compute_mode"));
    assert_null(json_object_get(proto, "enable_secure_boot"));
    assert_string_equal(sget(proto, "image.id"), IMG_SE);
    json_decref(rep);
    /* An annotation's image that is no SE image: refused before any create. */
    pp_instance_spec_t s2 = spec_for("5e0123456789-se-plain-image", name, sizeof(name));
    s2.image = IMG_S390X;
    res_t c2 = create(p, &s2);
    assert_int_equal(c2.status, -EINVAL);
    assert_int_equal(c2.grpc, PP_GRPC_FAILED_PRECONDITION);
    rep = report();
    assert_int_equal(json_integer_value(json_object_get(rep, "created")), 1);
    json_decref(rep);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    assert_nothing_left();
    provider_free(p);
}

static void test_plain(void **state)
{
    (void)state;
    setenv("DISABLECVM", "true", 1);
    setenv("IBMCLOUD_PODVM_INSTANCE_PROFILE_NAME", "bx2-2x8", 1);
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("0123456789abcdef-plain", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    json_t *rep = report();
    json_t *proto = last_prototype(rep);
    assert_string_equal(sget(proto, "confidential_compute_mode"), "disabled");
    assert_true(json_is_false(json_object_get(proto, "enable_secure_boot")));
    json_decref(rep);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    assert_nothing_left();
    provider_free(p);
}

/* A profile that cannot run the asked mode: init names it, no call made. */
static void refused(const char *disable_cvm, const char *profile, const char *list,
                    const char *expect)
{
    setenv("DISABLECVM", disable_cvm, 1);
    setenv("IBMCLOUD_PODVM_INSTANCE_PROFILE_NAME", profile, 1);
    if (list != NULL)
        setenv("IBMCLOUD_PODVM_INSTANCE_PROFILE_LIST", list, 1);
    else
        unsetenv("IBMCLOUD_PODVM_INSTANCE_PROFILE_LIST");
    pp_provider_t *p = NULL;
    pp_error_t err = {0};
    assert_int_equal(pp_provider_new(&pp_provider_ibmcloud_ops, &loop, NODE, 0, NULL, &p, &err),
                     -EINVAL);
    print_message("%s\n", err.message);
    assert_non_null(strstr(err.message, expect));
}

static void test_refused_before_any_call(void **state)
{
    (void)state;
    refused("false", "bx2-2x8", NULL,
            "`IBMCLOUD_PODVM_INSTANCE_PROFILE_NAME`: profile `bx2-2x8` "
            "cannot run TDX");
    refused("false", "bz2-2x8", NULL, "is no Secure Execution profile");
    refused("true", "bz2e-2x8", NULL, "is a Secure Execution profile");
    refused("false", "bx3dc-2x10", "bx3dc-4x20,bx2-4x16",
            "`IBMCLOUD_PODVM_INSTANCE_PROFILE_LIST`: profile `bx2-4x16`");
    json_t *rep = report();
    assert_int_equal(json_integer_value(json_object_get(rep, "requests")), 0);
    json_decref(rep);
}

static void test_best_fit(void **state)
{
    (void)state;
    setenv("IBMCLOUD_PODVM_INSTANCE_PROFILE_LIST", "bx3dc-2x10,bx3dc-4x20,cx3dc-8x20", 1);
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("0123456789abcdef-fit", name, sizeof(name));
    s.vcpus = 3;
    s.memory_mib = 12 * 1024;
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    json_t *rep = report();
    assert_string_equal(sget(last_prototype(rep), "profile.name"), "bx3dc-4x20");
    json_decref(rep);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    /* Too big for any: FAILED_PRECONDITION, nothing made. */
    pp_instance_spec_t s2 = spec_for("0123456789abcdef-huge", name, sizeof(name));
    s2.vcpus = 64;
    res_t c2 = create(p, &s2);
    assert_int_equal(c2.grpc, PP_GRPC_FAILED_PRECONDITION);
    /* A profile outside the list: INVALID_ARGUMENT. */
    pp_instance_spec_t s3 = spec_for("0123456789abcdef-other", name, sizeof(name));
    s3.machine_type = "bx3dc-96x480";
    res_t c3 = create(p, &s3);
    assert_int_equal(c3.grpc, PP_GRPC_INVALID_ARGUMENT);
    assert_nothing_left();
    provider_free(p);
}

static void test_floating_ip(void **state)
{
    (void)state;
    setenv("USE_PUBLIC_IP", "true", 1);
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("0123456789abcdef-fip", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    assert_true(strncmp(c.inst.ip, "169.63.", 7) == 0);
    json_t *rep = report();
    assert_int_equal(json_integer_value(
                         json_object_get(json_object_get(rep, "alive_resources"), "floating_ips")),
                     1);
    json_decref(rep);
    res_t l = list(p);
    assert_int_equal(l.status, 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.list[0].ip, c.inst.ip);
    assert_string_equal(l.list[0].sandbox_id, s.sandbox_id);
    free(l.list);
    /* Every answer to the floating IP's creation lost after it is made:
     * the create fails, and deletes the floating IP with the instance. */
    pp_instance_spec_t s2 = spec_for("f1p20123456789ab-fip2", name, sizeof(name));
    fake_config("{\"fault_rate\": 1.0, \"fault_kinds\": {\"drop_after\": 1}, "
                "\"fault_actions\": [\"floating_ips.create\"]}");
    res_t c2 = create(p, &s2);
    fake_config("{\"fault_rate\": 0}");
    assert_true(c2.status < 0);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    assert_nothing_left();
    provider_free(p);
}

static void test_dedicated_host(void **state)
{
    (void)state;
    setenv("IBMCLOUD_DEDICATED_HOST_IDS", DH_THERE "," DH_HERE, 1);
    setenv("IBMCLOUD_DEDICATED_HOST_GROUP_IDS", DHG_HERE, 1);
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("0123456789abcdef-dh", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    json_t *rep = report();
    assert_string_equal(sget(last_prototype(rep), "placement_target.id"), DH_HERE);
    json_decref(rep);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    provider_free(p);
    /* Only another zone's host: refused, nothing made. */
    setenv("IBMCLOUD_DEDICATED_HOST_IDS", DH_THERE, 1);
    p = provider();
    pp_instance_spec_t s2 = spec_for("0123456789abcdef-dh2", name, sizeof(name));
    res_t c2 = create(p, &s2);
    assert_int_equal(c2.grpc, PP_GRPC_FAILED_PRECONDITION);
    assert_non_null(strstr(c2.msg, "us-south-1"));
    assert_nothing_left();
    provider_free(p);
}

static void test_lost_answer(void **state)
{
    (void)state;
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("0123456789abcdef-lost", name, sizeof(name));
    /* The create is applied and its answer lost: the retry meets the name
     * taken, reads the boot volume's tags, and takes the instance. */
    fake_config("{\"fault_at\": {\"n\": 6, \"kind\": \"drop_after\"}}");
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    json_t *rep = report();
    assert_int_equal(json_integer_value(json_object_get(rep, "created")), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(rep, "counts"), "volumes.get")), 1);
    json_decref(rep);
    /* Another sandbox's create under the same name is refused, and the
     * instance is not touched. */
    pp_instance_spec_t s2 = s;
    s2.sandbox_id = "another-sandbox";
    res_t c2 = create(p, &s2);
    assert_int_equal(c2.grpc, PP_GRPC_ALREADY_EXISTS);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    assert_nothing_left();
    provider_free(p);
}

int main(void)
{
    int rc = harness_init(getenv("PP_LOG_LEVEL") ? getenv("PP_LOG_LEVEL") : "warn");
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < PP_ARRAY_SIZE(CHANGED); i++) {
        const char *v = getenv(CHANGED[i]);
        saved[i] = v ? strdup(v) : NULL;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_tdx, setup),
        cmocka_unit_test_setup(test_secure_execution, setup),
        cmocka_unit_test_setup(test_plain, setup),
        cmocka_unit_test_setup(test_refused_before_any_call, setup),
        cmocka_unit_test_setup(test_best_fit, setup),
        cmocka_unit_test_setup(test_floating_ip, setup),
        cmocka_unit_test_setup(test_dedicated_host, setup),
        cmocka_unit_test_setup(test_lost_answer, setup),
    };
    rc = cmocka_run_group_tests_name("ibmcloud provider", tests, NULL, NULL);
    for (size_t i = 0; i < PP_ARRAY_SIZE(CHANGED); i++)
        free(saved[i]);
    harness_fini();
    return rc;
}
