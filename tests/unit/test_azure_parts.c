/* The Azure provider's pure parts, without a network: its settings (each
 * bad one named at start-up, upstream's flags, the identity chosen in the
 * Azure SDKs' order), the instance ids it accepts, the origin check that
 * keeps the token on Resource Manager, the translation of Azure's errors,
 * and its readers fed recorded answers (tests/fuzz/corpus/fuzz_azure_json). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "providers/azure/azure.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"

#ifndef AZURE_CORPUS_DIR
#error "AZURE_CORPUS_DIR must name the recorded answers"
#endif

#define SUB "11111111-2222-3333-4444-555555555555"
#define SUBNET                                                                                     \
    "/subscriptions/" SUB                                                                          \
    "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v/subnets/default"

static char key_path[64];

static const char *const all_vars[] = {
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_REGION",
    "AZURE_RESOURCE_GROUP",
    "AZURE_INSTANCE_SIZE",
    "AZURE_INSTANCE_SIZES",
    "AZURE_SUBNET_ID",
    "AZURE_NSG_ID",
    "AZURE_IMAGE_ID",
    "SSH_USERNAME",
    "DISABLECVM",
    "ENABLE_SECURE_BOOT",
    "USE_PUBLIC_IP",
    "ROOT_VOLUME_SIZE",
    "TAGS",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_RESOURCE_MANAGER_ENDPOINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_CA_BUNDLE",
    "AZURE_API_RATE_LIMIT",
    "AZURE_API_BURST",
    "AZURE_MAX_ATTEMPTS",
    "AZURE_RETRY_BASE_DELAY_MS",
    "AZURE_RETRY_MAX_DELAY_MS",
    "AZURE_API_ATTEMPT_TIMEOUT_MS",
    "AZURE_API_TIMEOUT_MS",
    "AZURE_POLL_INTERVAL_MS",
    "AZURE_OPERATION_TIMEOUT_MS",
};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* The required settings and a client secret. */
static int clean_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < PP_ARRAY_SIZE(all_vars); i++)
        unsetenv(all_vars[i]);
    setenv("AZURE_SUBSCRIPTION_ID", SUB, 1);
    setenv("AZURE_REGION", "eastus", 1);
    setenv("AZURE_RESOURCE_GROUP", "peerpods-rg", 1);
    setenv("AZURE_SUBNET_ID", SUBNET, 1);
    setenv("AZURE_IMAGE_ID", "/CommunityGalleries/cocopodvm-1/Images/podvm/Versions/0.1.0", 1);
    setenv("AZURE_CLIENT_ID", "0b7d5e3c-1a2b-4c3d-8e9f-a0b1c2d3e4f5", 1);
    setenv("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47", 1);
    setenv("AZURE_CLIENT_SECRET", "s3cret", 1);
    return 0;
}

/* Loads the table from the environment and `argv`, then checks it. */
static int load(pp__azure_config_t *c, pp__azure_derived_t *d, int argc, char **argv,
                pp_error_t *err)
{
    memset(d, 0, sizeof(*d));
    int r = pp_settings_load(&pp__azure_settings, c, argc, argv, 0, err);
    if (r < 0)
        return r;
    return pp__azure_config_check(c, d, err);
}

static void expect_error_argv(const char *needle, int argc, char **argv)
{
    pp__azure_config_t c;
    pp__azure_derived_t d;
    pp_error_t err = {0};
    int r = load(&c, &d, argc, argv, &err);
    pp__azure_derived_free(&d);
    if (r >= 0)
        fail_msg("accepted; expected an error naming `%s`", needle);
    if (strstr(err.message, needle) == NULL)
        fail_msg("`%s` does not name `%s`", err.message, needle);
}

static void expect_error(const char *needle)
{
    expect_error_argv(needle, 0, NULL);
}

/* --- settings -------------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    pp__azure_config_t c;
    pp__azure_derived_t d;
    pp_error_t err = {0};
    assert_int_equal(load(&c, &d, 0, NULL, &err), 0);
    assert_string_equal(c.instance_size, "Standard_DC2as_v5");
    assert_string_equal(c.ssh_username, "peerpod");
    assert_int_equal(c.disable_cvm, 0);
    assert_int_equal(c.enable_secure_boot, 0);
    assert_int_equal(c.use_public_ip, 0);
    assert_int_equal(c.root_volume_size, 0);
    assert_string_equal(d.authority, "https://login.microsoftonline.com");
    assert_string_equal(d.arm, "https://management.azure.com");
    assert_string_equal(d.imds, "http://169.254.169.254");
    assert_true(c.rate == 10.0);
    assert_int_equal(c.burst, 20);
    assert_int_equal(c.max_attempts, 5);
    assert_int_equal(c.poll_ms, 2000);
    assert_int_equal(c.operation_timeout_ms, 900000);
    assert_int_equal(d.cred_mode, PP_AZURE_CREDS_SECRET);
    assert_int_equal(d.nsizes, 0);
    assert_int_equal(d.ntags, 0);
    assert_string_equal(c.ssh_key_path, "");
    /* No key given: one made, an OpenSSH Ed25519 public key, each time
     * another. */
    assert_true(strncmp(d.ssh_key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI", 37) == 0);
    assert_int_equal(strlen(d.ssh_key), 12 + 68 + 8);
    assert_string_equal(d.ssh_key + 12 + 68, " peerpod");
    char first[128];
    snprintf(first, sizeof(first), "%s", d.ssh_key);
    pp__azure_derived_free(&d);
    assert_int_equal(load(&c, &d, 0, NULL, &err), 0);
    assert_string_not_equal(d.ssh_key, first);
    pp__azure_derived_free(&d);
}

/* Upstream's flags, over the environment. */
static void test_flags(void **state)
{
    (void)state;
    char *argv[] = {"-subscriptionid",
                    "22222222-2222-3333-4444-555555555555",
                    "-region",
                    "westeurope",
                    "-resourcegroup",
                    "other-rg",
                    "-instance-size",
                    "Standard_DC4es_v5",
                    "-instance-sizes",
                    "Standard_DC4es_v5,Standard_DC8es_v5",
                    "-disable-cvm=true",
                    "-enable-secure-boot",
                    "-use-public-ip",
                    "-root-volume-size",
                    "64",
                    "-ssh-username",
                    "kata",
                    "-tags",
                    "a=b, c=d=e",
                    "-securitygroupid",
                    "/subscriptions/" SUB "/resourceGroups/rg/providers/"
                    "Microsoft.Network/networkSecurityGroups/nsg",
                    "-zone",
                    "2",
                    "-ssh-key-path",
                    key_path};
    write_file(key_path, "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ key@host\n");
    pp__azure_config_t c;
    pp__azure_derived_t d;
    pp_error_t err = {0};
    if (load(&c, &d, (int)PP_ARRAY_SIZE(argv), argv, &err) < 0)
        fail_msg("%s", err.message);
    assert_string_equal(c.subscription_id, "22222222-2222-3333-4444-555555555555");
    assert_string_equal(c.region, "westeurope");
    assert_string_equal(c.resource_group, "other-rg");
    assert_string_equal(c.instance_size, "Standard_DC4es_v5");
    assert_int_equal(d.nsizes, 2);
    assert_string_equal(d.sizes[1], "Standard_DC8es_v5");
    assert_int_equal(c.disable_cvm, 1);
    assert_int_equal(c.enable_secure_boot, 1);
    assert_int_equal(c.use_public_ip, 1);
    assert_int_equal(c.root_volume_size, 64);
    assert_string_equal(c.ssh_username, "kata");
    assert_int_equal(d.ntags, 2);
    assert_string_equal(d.tags[0].key, "a");
    assert_string_equal(d.tags[0].value, "b");
    assert_string_equal(d.tags[1].key, "c");
    assert_string_equal(d.tags[1].value, "d=e");
    assert_non_null(strstr(c.nsg_id, "/networkSecurityGroups/nsg"));
    assert_string_equal(d.ssh_key, "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ key@host");
    pp__azure_derived_free(&d);

    /* Flags upstream does not have. */
    char *unknown[] = {"-ssh-pub-key", "/root/.ssh/id_rsa.pub"};
    assert_true(load(&c, &d, 2, unknown, &err) < 0);
    assert_non_null(strstr(err.message, "ssh-pub-key"));
    pp__azure_derived_free(&d);
}

static void test_required(void **state)
{
    static const char *const required[] = {"AZURE_SUBSCRIPTION_ID", "AZURE_REGION",
                                           "AZURE_RESOURCE_GROUP", "AZURE_SUBNET_ID",
                                           "AZURE_IMAGE_ID"};
    for (size_t i = 0; i < PP_ARRAY_SIZE(required); i++) {
        clean_env(state);
        unsetenv(required[i]);
        expect_error(required[i]);
    }
    /* Characters an ARM name or id never has. */
    clean_env(state);
    setenv("AZURE_RESOURCE_GROUP", "rg/../other", 1);
    expect_error("AZURE_RESOURCE_GROUP");
    clean_env(state);
    setenv("AZURE_REGION", "east us", 1);
    expect_error("AZURE_REGION");
    clean_env(state);
    setenv("ROOT_VOLUME_SIZE", "5000", 1);
    expect_error("ROOT_VOLUME_SIZE");
    clean_env(state);
    setenv("DISABLECVM", "maybe", 1);
    expect_error("DISABLECVM");
}

/* The Azure SDKs' order: a client secret, workload identity, the managed
 * identity; the first two need the tenant and the client. */
static void test_identity_order(void **state)
{
    pp__azure_config_t c;
    pp__azure_derived_t d;
    pp_error_t err = {0};
    setenv("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/azure/tokens/azure-identity-token", 1);
    assert_int_equal(load(&c, &d, 0, NULL, &err), 0);
    assert_int_equal(d.cred_mode, PP_AZURE_CREDS_SECRET);
    pp__azure_derived_free(&d);
    unsetenv("AZURE_CLIENT_SECRET");
    assert_int_equal(load(&c, &d, 0, NULL, &err), 0);
    assert_int_equal(d.cred_mode, PP_AZURE_CREDS_WORKLOAD);
    pp__azure_derived_free(&d);
    unsetenv("AZURE_TENANT_ID");
    expect_error("AZURE_TENANT_ID");
    clean_env(state);
    unsetenv("AZURE_CLIENT_ID");
    expect_error("AZURE_CLIENT_ID");
    /* Nothing configured: the node's managed identity, a client id
     * optional (a user-assigned one). */
    clean_env(state);
    unsetenv("AZURE_CLIENT_SECRET");
    unsetenv("AZURE_CLIENT_ID");
    unsetenv("AZURE_TENANT_ID");
    assert_int_equal(load(&c, &d, 0, NULL, &err), 0);
    assert_int_equal(d.cred_mode, PP_AZURE_CREDS_MANAGED);
    pp__azure_derived_free(&d);
}

static void test_endpoints(void **state)
{
    (void)state;
    pp__azure_config_t c;
    pp__azure_derived_t d;
    pp_error_t err = {0};
    setenv("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us/", 1);
    setenv("AZURE_RESOURCE_MANAGER_ENDPOINT", "https://management.usgovcloudapi.net//", 1);
    setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:8080", 1);
    assert_int_equal(load(&c, &d, 0, NULL, &err), 0);
    assert_string_equal(d.authority, "https://login.microsoftonline.us");
    assert_string_equal(d.arm, "https://management.usgovcloudapi.net");
    assert_string_equal(d.imds, "http://127.0.0.1:8080");
    pp__azure_derived_free(&d);
    setenv("AZURE_RESOURCE_MANAGER_ENDPOINT", "ftp://management.azure.com", 1);
    expect_error("AZURE_RESOURCE_MANAGER_ENDPOINT");
}

static void test_tags_sizes_key(void **state)
{
    setenv("TAGS", "owner=me,", 1);
    pp__azure_config_t c;
    pp__azure_derived_t d;
    pp_error_t err = {0};
    assert_int_equal(load(&c, &d, 0, NULL, &err), 0);
    assert_int_equal(d.ntags, 1);
    pp__azure_derived_free(&d);
    static const char *const bad_tags[] = {"novalue", "=x", "a/b=c", "peerpod-node=x",
                                           "peerpod-sandbox-id=y"};
    for (size_t i = 0; i < PP_ARRAY_SIZE(bad_tags); i++) {
        setenv("TAGS", bad_tags[i], 1);
        expect_error("TAGS");
    }
    char many[512] = "";
    for (int i = 0; i < 41; i++) {
        size_t n = strlen(many);
        snprintf(many + n, sizeof(many) - n, "%sk%d=v", i ? "," : "", i);
    }
    setenv("TAGS", many, 1);
    expect_error("more than 40 tags");
    clean_env(state);

    char longsize[80];
    memset(longsize, 'S', sizeof(longsize) - 1);
    longsize[sizeof(longsize) - 1] = '\0';
    setenv("AZURE_INSTANCE_SIZES", longsize, 1);
    expect_error("AZURE_INSTANCE_SIZES");
    clean_env(state);

    /* The SSH key file: missing, not a key, two keys. */
    char *missing[] = {"-ssh-key-path", "/nonexistent/id_rsa.pub"};
    expect_error_argv("-ssh-key-path", 2, missing);
    char *given[] = {"-ssh-key-path", key_path};
    write_file(key_path, "-----BEGIN OPENSSH PRIVATE KEY-----\n");
    expect_error_argv("is not one OpenSSH public key", 2, given);
    write_file(key_path, "ssh-rsa AAAA a\nssh-rsa BBBB b\n");
    expect_error_argv("is not one OpenSSH public key", 2, given);
}

/* --- instance ids, origins, errors ------------------------------------------------------------ */

static void test_vm_name(void **state)
{
    (void)state;
    pp__azure_config_t c = {0};
    snprintf(c.subscription_id, sizeof(c.subscription_id), "%s", SUB);
    snprintf(c.resource_group, sizeof(c.resource_group), "peerpods-rg");
    char out[80];
    assert_string_equal(pp__azure_vm_name(&c, "podvm-nginx-0123abcd", out, sizeof(out)),
                        "podvm-nginx-0123abcd");
    assert_string_equal(pp__azure_vm_name(&c,
                                          "/subscriptions/" SUB "/resourceGroups/PEERPODS-RG/"
                                          "providers/Microsoft.Compute/virtualMachines/podvm-x",
                                          out, sizeof(out)),
                        "podvm-x");
    static const char *const none[] = {
        "",
        "-leading-dash",
        "has space",
        "i-0abcdef1234567890/../x",
        "/subscriptions/" SUB "/resourceGroups/other/providers/Microsoft.Compute/"
        "virtualMachines/podvm-x",
        "/subscriptions/" SUB "/resourceGroups/peerpods-rg/providers/Microsoft.Compute/"
        "virtualMachines/podvm-x/extensions/y",
        "/subscriptions/" SUB "/resourceGroups/peerpods-rg/providers/Microsoft.Network/"
        "networkInterfaces/podvm-x",
        "local-podvm-x-but-far-too-long-for-an-azure-virtual-machine-name-0123456789",
    };
    for (size_t i = 0; i < PP_ARRAY_SIZE(none); i++)
        if (pp__azure_vm_name(&c, none[i], out, sizeof(out)) != NULL)
            fail_msg("`%s` taken for a VM of the resource group", none[i]);
    assert_null(pp__azure_vm_name(&c, NULL, out, sizeof(out)));
}

static void test_same_origin(void **state)
{
    (void)state;
    const char *arm = "https://management.azure.com";
    assert_true(pp__azure_same_origin(arm, "https://management.azure.com/subscriptions/x"));
    assert_true(pp__azure_same_origin(arm, "https://MANAGEMENT.azure.com/x?y"));
    assert_false(pp__azure_same_origin(arm, "https://management.azure.com.evil.example/x"));
    assert_false(pp__azure_same_origin(arm, "https://management.azure.com:8443/x"));
    assert_false(pp__azure_same_origin(arm, "http://management.azure.com/x"));
    assert_false(pp__azure_same_origin(arm, "https://management.azure.com@evil.example/x"));
    assert_true(pp__azure_same_origin("http://127.0.0.1:8080", "http://127.0.0.1:8080/op"));
    assert_false(pp__azure_same_origin("http://127.0.0.1:8080", "http://127.0.0.1:80801/op"));
}

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        const char *code;
        long http;
        int err, grpc;
        pp_http_verdict_t verdict;
    } cases[] = {
        {"TooManyRequests", 429, -EAGAIN, PP_GRPC_UNAVAILABLE, PP_HTTP_RETRY},
        {"RetryableError", 409, -EAGAIN, PP_GRPC_UNAVAILABLE, PP_HTTP_RETRY},
        {"AllocationFailed", 200, -ENOSPC, PP_GRPC_RESOURCE_EXHAUSTED, PP_HTTP_FINAL},
        {"SkuNotAvailable", 409, -ENOSPC, PP_GRPC_RESOURCE_EXHAUSTED, PP_HTTP_FINAL},
        {"QuotaExceeded", 409, -EDQUOT, PP_GRPC_RESOURCE_EXHAUSTED, PP_HTTP_FINAL},
        {"AuthorizationFailed", 403, -EPERM, PP_GRPC_PERMISSION_DENIED, PP_HTTP_FINAL},
        {"ExpiredAuthenticationToken", 401, -EACCES, PP_GRPC_UNAUTHENTICATED, PP_HTTP_FINAL},
        {"invalid_client", 401, -EACCES, PP_GRPC_UNAUTHENTICATED, PP_HTTP_FINAL},
        {"ResourceNotFound", 404, -ENOENT, PP_GRPC_NOT_FOUND, PP_HTTP_FINAL},
        {"InternalServerError", 500, -EIO, PP_GRPC_UNAVAILABLE, PP_HTTP_RETRY},
        {"SomethingNew", 404, -ENOENT, PP_GRPC_NOT_FOUND, PP_HTTP_DEFAULT},
        {"SomethingNew", 409, -EEXIST, PP_GRPC_ALREADY_EXISTS, PP_HTTP_DEFAULT},
        {"SomethingNew", 503, -EAGAIN, PP_GRPC_UNAVAILABLE, PP_HTTP_DEFAULT},
        {"SomethingNew", 400, -EINVAL, PP_GRPC_FAILED_PRECONDITION, PP_HTTP_DEFAULT},
    };
    for (size_t i = 0; i < PP_ARRAY_SIZE(cases); i++) {
        pp_http_error_class_t cls;
        pp__azure_error_classify(cases[i].code, cases[i].http, &cls);
        if (cls.err != cases[i].err || cls.grpc != cases[i].grpc)
            fail_msg("%s (HTTP %ld): %d %s", cases[i].code, cases[i].http, cls.err,
                     pp_grpc_code_name(cls.grpc));
        char body[128];
        snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\",\"message\":\"m\"}}",
                 cases[i].code);
        pp_http_response_t resp = {.status = cases[i].http < 400 ? 409 : cases[i].http,
                                   .body = body,
                                   .body_len = strlen(body)};
        if (cases[i].http >= 400)
            assert_int_equal(pp__azure_http_classify(&resp, NULL), cases[i].verdict);
    }
    /* No body that can be read: the status decides. */
    pp_http_response_t resp = {.status = 503, .body = "<html>", .body_len = 6};
    assert_int_equal(pp__azure_http_classify(&resp, NULL), PP_HTTP_DEFAULT);
}

/* --- readers, on recorded answers ----------------------------------------------------------------
 */

static char *blob(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", AZURE_CORPUS_DIR, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("%s: missing", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void test_parse_tokens(void **state)
{
    (void)state;
    size_t len;
    char *j = blob("token_aad.json", &len);
    pp__azure_token_t t;
    assert_int_equal(pp__azure_parse_token(j, len, &t), 0);
    assert_int_equal(t.expires_in, 3599);
    assert_true(strncmp(t.access_token, "eyJ0eXAiOiJKV1Qi", 16) == 0);
    pp__azure_token_free(&t);
    assert_null(t.access_token);
    free(j);
    j = blob("token_imds.json", &len);
    assert_int_equal(pp__azure_parse_token(j, len, &t), 0);
    assert_int_equal(t.expires_in, 86399); /* IMDS's is a string */
    pp__azure_token_free(&t);
    free(j);
    static const char *const bad[] = {
        "bad_duplicate.json", "bad_nul.json",       "bad_token_chars.json", "bad_token_type.json",
        "bad_types.json",     "bad_array_top.json", "bad_truncated.json",   "error_aad.json"};
    for (size_t i = 0; i < PP_ARRAY_SIZE(bad); i++) {
        j = blob(bad[i], &len);
        if (pp__azure_parse_token(j, len, &t) != -EBADMSG)
            fail_msg("%s taken for a token", bad[i]);
        assert_null(t.access_token);
        free(j);
    }
}

static void test_parse_errors_and_operations(void **state)
{
    (void)state;
    size_t len;
    pp__azure_error_info_t ei;
    char *j = blob("error_aad.json", &len);
    assert_int_equal(pp__azure_parse_error(j, len, &ei), 0);
    assert_string_equal(ei.code, "invalid_client");
    assert_true(strncmp(ei.message, "AADSTS7000215", 13) == 0);
    free(j);
    j = blob("error_conflict.json", &len);
    assert_int_equal(pp__azure_parse_error(j, len, &ei), 0);
    assert_string_equal(ei.code, "RetryableError");
    free(j);
    j = blob("error_arm.json", &len);
    assert_int_equal(pp__azure_parse_error(j, len, &ei), 0);
    assert_string_equal(ei.code, "AuthorizationFailed");
    assert_int_equal(strlen(ei.message), sizeof(ei.message) - 1); /* cut, not refused */
    free(j);

    static const struct {
        const char *file, *status, *code;
    } ops[] = {{"operation_inprogress.json", "InProgress", ""},
               {"operation_succeeded.json", "Succeeded", ""},
               {"operation_failed.json", "Failed", "AllocationFailed"}};
    for (size_t i = 0; i < PP_ARRAY_SIZE(ops); i++) {
        char st[32];
        j = blob(ops[i].file, &len);
        assert_int_equal(pp__azure_parse_operation(j, len, st, sizeof(st), &ei), 0);
        assert_string_equal(st, ops[i].status);
        assert_string_equal(ei.code, ops[i].code);
        free(j);
    }
    char st[32];
    j = blob("bad_nul.json", &len);
    assert_int_equal(pp__azure_parse_operation(j, len, st, sizeof(st), &ei), -EBADMSG);
    free(j);
    j = blob("vms_empty.json", &len); /* no status */
    assert_int_equal(pp__azure_parse_operation(j, len, st, sizeof(st), &ei), -EBADMSG);
    free(j);
}

static void test_parse_vms(void **state)
{
    (void)state;
    size_t len;
    char *j = blob("vm.json", &len);
    pp__azure_vm_t vm;
    assert_int_equal(pp__azure_parse_vm(j, len, &vm), 0);
    assert_string_equal(vm.name, "podvm-nginx-0123abcd");
    assert_string_equal(vm.state, "Creating");
    assert_string_equal(vm.node, "worker-1");
    assert_string_equal(vm.sandbox_id, "0123abcd4567ef89");
    assert_non_null(strstr(vm.nic_id, "/networkInterfaces/podvm-nginx-0123abcd-net"));
    free(j);

    j = blob("vms_page.json", &len);
    pp__azure_vms_t l;
    assert_int_equal(pp__azure_parse_vms(j, len, &l), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.items[1].state, "Deleting");
    assert_string_equal(l.items[2].sandbox_id, "");
    assert_non_null(strstr(l.next_link, "$skiptoken=abc"));
    pp__azure_vms_free(&l);
    free(j);
    j = blob("vms_empty.json", &len);
    assert_int_equal(pp__azure_parse_vms(j, len, &l), 0);
    assert_int_equal(l.n, 0);
    assert_string_equal(l.next_link, "");
    pp__azure_vms_free(&l);
    free(j);
    static const char *const bad[] = {"bad_too_many.json", "bad_truncated.json", "bad_types.json",
                                      "bad_array_top.json"};
    for (size_t i = 0; i < PP_ARRAY_SIZE(bad); i++) {
        j = blob(bad[i], &len);
        if (pp__azure_parse_vms(j, len, &l) != -EBADMSG)
            fail_msg("%s taken for a list of VMs", bad[i]);
        assert_null(l.items);
        free(j);
    }
    j = blob("bad_nul.json", &len);
    assert_int_equal(pp__azure_parse_vm(j, len, &vm), -EBADMSG);
    free(j);
}

static void test_parse_addresses_and_sizes(void **state)
{
    (void)state;
    size_t len;
    pp__azure_addr_t a;
    char *j = blob("nic.json", &len);
    assert_int_equal(pp__azure_parse_addr(j, len, &a), 0);
    assert_string_equal(a.ip, "10.0.1.17");
    assert_non_null(strstr(a.pip_id, "/publicIPAddresses/podvm-a-00000001-ip"));
    assert_non_null(strstr(a.id, "/networkInterfaces/podvm-a-00000001-net"));
    free(j);
    j = blob("pip.json", &len);
    assert_int_equal(pp__azure_parse_addr(j, len, &a), 0);
    assert_string_equal(a.ip, "20.1.2.3");
    assert_string_equal(a.pip_id, "");
    free(j);
    j = blob("nics_page.json", &len);
    pp__azure_addrs_t l;
    assert_int_equal(pp__azure_parse_addrs(j, len, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.items[0].ip, "10.0.1.4");
    assert_string_equal(l.items[1].ip, ""); /* no IP configuration yet */
    pp__azure_addrs_free(&l);
    free(j);
    j = blob("bad_types.json", &len);
    assert_int_equal(pp__azure_parse_addr(j, len, &a), -EBADMSG);
    free(j);

    j = blob("vm_sizes.json", &len);
    pp_instance_type_t *t;
    size_t n;
    assert_int_equal(pp__azure_parse_sizes(j, len, &t, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(t[2].name, "Standard_EC4as_v5");
    assert_int_equal(t[2].vcpus, 4);
    assert_int_equal(t[2].memory_mib, 32768);
    free(t);
    free(j);
    j = blob("bad_sizes.json", &len);
    assert_int_equal(pp__azure_parse_sizes(j, len, &t, &n), -EBADMSG);
    free(j);
}

int main(void)
{
    snprintf(key_path, sizeof(key_path), "/tmp/pp-azure-key-XXXXXX");
    int fd = mkstemp(key_path);
    if (fd < 0)
        return 1;
    close(fd);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clean_env),
        cmocka_unit_test_setup(test_flags, clean_env),
        cmocka_unit_test_setup(test_required, clean_env),
        cmocka_unit_test_setup(test_identity_order, clean_env),
        cmocka_unit_test_setup(test_endpoints, clean_env),
        cmocka_unit_test_setup(test_tags_sizes_key, clean_env),
        cmocka_unit_test(test_vm_name),
        cmocka_unit_test(test_same_origin),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_parse_tokens),
        cmocka_unit_test(test_parse_errors_and_operations),
        cmocka_unit_test(test_parse_vms),
        cmocka_unit_test(test_parse_addresses_and_sizes),
    };
    int rc = cmocka_run_group_tests_name("azure parts", tests, NULL, NULL);
    unlink(key_path);
    return rc;
}
