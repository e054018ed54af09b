/* The AWS provider's settings (each bad one named at start-up), its ops
 * table, and the shared instance type selection. No network. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "providers/aws/aws.h"
#include "providers/instance_type.h"
#include "util/grpc_codes.h"

static const char *const all_vars[] = {
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "PODVM_AMI_ID",
    "PODVM_INSTANCE_TYPE",
    "PODVM_INSTANCE_TYPES",
    "AWS_SUBNET_ID",
    "AWS_SG_IDS",
    "SSH_KP_NAME",
    "USE_PUBLIC_IP",
    "ROOT_VOLUME_SIZE",
    "DISABLECVM",
    "TAGS",
    "PODVM_LAUNCHTEMPLATE_NAME",
    "USE_PODVM_LAUNCHTEMPLATE",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_SESSION_NAME",
    "AWS_CA_BUNDLE",
    "AWS_API_RATE_LIMIT",
    "AWS_API_BURST",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_BASE_DELAY_MS",
    "AWS_RETRY_MAX_DELAY_MS",
    "AWS_API_ATTEMPT_TIMEOUT_MS",
    "AWS_API_TIMEOUT_MS",
    "AWS_IP_WAIT_TIMEOUT_MS",
    "AWS_IP_POLL_INTERVAL_MS",
    "AWS_PROFILE",
};

static int clean_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(all_vars) / sizeof(all_vars[0]); i++)
        unsetenv(all_vars[i]);
    setenv("AWS_REGION", "eu-west-1", 1);
    setenv("PODVM_AMI_ID", "ami-0123456789abcdef0", 1);
    return 0;
}

static void test_defaults(void **state)
{
    (void)state;
    pp__aws_config_t c;
    pp_error_t err = {0};
    assert_int_equal(pp__aws_config_load(&c, &err), 0);
    assert_string_equal(c.region, "eu-west-1");
    assert_string_equal(c.ec2.url, "https://ec2.eu-west-1.amazonaws.com/");
    assert_string_equal(c.ec2.host, "ec2.eu-west-1.amazonaws.com");
    assert_string_equal(c.sts.url, "https://sts.eu-west-1.amazonaws.com/");
    assert_string_equal(c.imds.url, "http://169.254.169.254/");
    assert_string_equal(c.instance_type, "m6a.large");
    assert_string_equal(c.launch_template, "kata");
    assert_int_equal(c.root_volume_gib, 30);
    assert_int_equal(c.ninstance_types, 0);
    assert_int_equal(c.cred_mode, PP_AWS_CREDS_IMDS);
    assert_int_equal(c.disable_cvm, 0);
    assert_true(c.rate > 0);
    pp__aws_config_free(&c);
}

static void test_everything_set(void **state)
{
    (void)state;
    const char *set[][2] = {
        {"PODVM_INSTANCE_TYPES", " m6a.large, m6a.xlarge ,,c6a.xlarge"},
        {"AWS_SG_IDS", "sg-1,sg-2"},
        {"AWS_SUBNET_ID", "subnet-1"},
        {"SSH_KP_NAME", "my key"},
        {"USE_PUBLIC_IP", "TRUE"},
        {"DISABLECVM", "1"},
        {"ROOT_VOLUME_SIZE", "0"},
        {"TAGS", "team=peer pods,cost-center=42,empty="},
        {"AWS_ENDPOINT_URL", "http://127.0.0.1:8080"},
        {"AWS_ENDPOINT_URL_EC2", "https://[::1]:8443/ec2"},
        {"AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"},
        {"AWS_SECRET_ACCESS_KEY", "secret"},
        {"AWS_SESSION_TOKEN", "token"},
        {"AWS_API_RATE_LIMIT", "2.5"},
    };
    for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++)
        setenv(set[i][0], set[i][1], 1);
    pp__aws_config_t c;
    pp_error_t err = {0};
    if (pp__aws_config_load(&c, &err) < 0)
        fail_msg("%s", err.message);
    assert_int_equal(c.ninstance_types, 3);
    assert_string_equal(c.instance_types[1], "m6a.xlarge");
    assert_int_equal(c.nsg_ids, 2);
    assert_int_equal(c.use_public_ip, 1);
    assert_int_equal(c.disable_cvm, 1);
    assert_int_equal(c.root_volume_gib, 0);
    assert_int_equal(c.ntags, 3);
    assert_string_equal(c.tags[0].value, "peer pods");
    assert_string_equal(c.tags[2].key, "empty");
    assert_string_equal(c.tags[2].value, "");
    assert_string_equal(c.ec2.host, "[::1]:8443");
    assert_string_equal(c.ec2.path, "/ec2");
    assert_string_equal(c.sts.url, "http://127.0.0.1:8080/");
    assert_string_equal(c.sts.host, "127.0.0.1:8080");
    assert_int_equal(c.cred_mode, PP_AWS_CREDS_STATIC);
    assert_string_equal(c.session_token, "token");
    assert_true(c.rate == 2.5);
    pp__aws_config_free(&c);

    /* A launch template needs no image. */
    unsetenv("PODVM_AMI_ID");
    setenv("USE_PODVM_LAUNCHTEMPLATE", "yes", 1);
    setenv("PODVM_LAUNCHTEMPLATE_NAME", "peerpods", 1);
    assert_int_equal(pp__aws_config_load(&c, &err), 0);
    assert_string_equal(c.launch_template, "peerpods");
    pp__aws_config_free(&c);
}

static void expect_error(const char *var, const char *value, const char *needle)
{
    char *old = getenv(var) ? strdup(getenv(var)) : NULL;
    if (value != NULL)
        setenv(var, value, 1);
    else
        unsetenv(var);
    pp__aws_config_t c;
    pp_error_t err = {0};
    int rc = pp__aws_config_load(&c, &err);
    pp__aws_config_free(&c);
    if (old != NULL)
        setenv(var, old, 1);
    else
        unsetenv(var);
    free(old);
    assert_true(rc < 0);
    assert_int_equal(err.code, rc);
    if (strstr(err.message, needle) == NULL)
        fail_msg("`%s` not in \"%s\"", needle, err.message);
}

static void test_errors_named(void **state)
{
    (void)state;
    expect_error("AWS_REGION", "us east", "`AWS_REGION`");
    expect_error("PODVM_AMI_ID", NULL, "`PODVM_AMI_ID` is not set");
    expect_error("USE_PUBLIC_IP", "maybe", "`USE_PUBLIC_IP`: `maybe` is not true or false");
    expect_error("DISABLECVM", "2", "`DISABLECVM`");
    expect_error("ROOT_VOLUME_SIZE", "30GB", "`ROOT_VOLUME_SIZE`: `30GB` is not a whole number");
    expect_error("ROOT_VOLUME_SIZE", "-1", "`ROOT_VOLUME_SIZE`");
    expect_error("TAGS", "novalue", "`TAGS`: `novalue` is not key=value");
    expect_error("TAGS", "aws:x=1", "set by the provider");
    expect_error("TAGS", "Name=x", "set by the provider");
    expect_error("TAGS", "peerpod/node=x", "set by the provider");
    expect_error("PODVM_INSTANCE_TYPES", "m6a.large,bad type", "`PODVM_INSTANCE_TYPES`");
    expect_error("AWS_SG_IDS", "sg-1;sg-2", "`AWS_SG_IDS`");
    expect_error("AWS_ENDPOINT_URL", "ftp://x", "`AWS_ENDPOINT_URL`");
    expect_error("AWS_ENDPOINT_URL_EC2", "http://user:pw@host/", "`AWS_ENDPOINT_URL_EC2`");
    expect_error("AWS_ENDPOINT_URL_STS", "http://h/?q=1", "`AWS_ENDPOINT_URL_STS`");
    expect_error("AWS_EC2_METADATA_SERVICE_ENDPOINT", "nonsense",
                 "`AWS_EC2_METADATA_SERVICE_ENDPOINT`");
    expect_error("AWS_ACCESS_KEY_ID", "AKID", "`AWS_SECRET_ACCESS_KEY` is not");
    expect_error("AWS_ROLE_ARN", "arn:aws:iam::1:role/x", "`AWS_WEB_IDENTITY_TOKEN_FILE`");
    setenv("AWS_ROLE_ARN", "arn:aws:iam::1:role/x", 1);
    expect_error("AWS_WEB_IDENTITY_TOKEN_FILE", "relative/token", "not an absolute path");
    unsetenv("AWS_ROLE_ARN");
    expect_error("AWS_API_RATE_LIMIT", "fast", "`AWS_API_RATE_LIMIT`");
    expect_error("AWS_MAX_ATTEMPTS", "0", "`AWS_MAX_ATTEMPTS`");
    expect_error("AWS_IP_POLL_INTERVAL_MS", "0", "`AWS_IP_POLL_INTERVAL_MS`");
}

static void test_secrets_not_in_messages(void **state)
{
    (void)state;
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "SECRETKEYVALUE", 1);
    setenv("AWS_SESSION_TOKEN", "SESSIONTOKENVALUE", 1);
    expect_error("TAGS", "=x", "`TAGS`");
    pp_provider_t *p = NULL;
    uv_loop_t loop;
    uv_loop_init(&loop);
    pp_error_t err = {0};
    setenv("DISABLECVM", "sometimes", 1);
    assert_true(pp_provider_new(&pp_provider_aws_ops, &loop, "n", 0, NULL, &p, &err) < 0);
    assert_null(strstr(err.message, "SECRETKEYVALUE"));
    assert_null(strstr(err.message, "SESSIONTOKENVALUE"));
    unsetenv("DISABLECVM");
    /* A good configuration makes a provider; closing it leaves nothing. */
    assert_int_equal(pp_provider_new(&pp_provider_aws_ops, &loop, "n", 0, NULL, &p, &err), 0);
    assert_string_equal(p->ops->name, "aws");
    assert_int_equal(p->ops->user_data_max, 16384);
    /* AWS is a module, not built in. */
    assert_null(pp_provider_find("aws"));
    pp_provider_free(p);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Upstream's flags (cloud-api-adaptor aws -aws-region ... ), which win over
 * the variables, reach the provider through pp_provider_new(). */
static void test_upstream_flags(void **state)
{
    (void)state;
    setenv("PODVM_INSTANCE_TYPE", "c6a.large", 1);
    setenv("AWS_SG_IDS", "", 1); /* empty: unset */
    char *argv[] = {"-aws-region",
                    "eu-central-1",
                    "-imageid=ami-0fedcba9876543210",
                    "-instance-type",
                    "m6a.xlarge",
                    "-securitygroupids",
                    "sg-1,sg-2",
                    "-subnetid",
                    "subnet-9",
                    "-keyname",
                    "kp",
                    "-use-public-ip",
                    "-root-volume-size",
                    "50",
                    "-disable-cvm",
                    "true",
                    "-tags",
                    "team=a,env=b",
                    "-use-lt=false",
                    "-aws-lt-name",
                    "lt",
                    "-instance-types",
                    "m6a.large,m6a.xlarge",
                    "-socket", /* the daemon's: skipped here */
                    "/tmp/x.sock"};
    int argc = (int)(sizeof(argv) / sizeof(argv[0]));
    uv_loop_t loop;
    uv_loop_init(&loop);
    pp_provider_t *p = NULL;
    pp_error_t err = {0};
    if (pp_provider_new(&pp_provider_aws_ops, &loop, "n", argc, argv, &p, &err) < 0)
        fail_msg("%s", err.message);
    const pp__aws_config_t *c = &((pp__aws_state_t *)p->state)->cfg;
    assert_string_equal(c->region, "eu-central-1");
    assert_string_equal(c->ec2.host, "ec2.eu-central-1.amazonaws.com");
    assert_string_equal(c->image_id, "ami-0fedcba9876543210");
    assert_string_equal(c->instance_type, "m6a.xlarge");
    assert_int_equal(c->nsg_ids, 2);
    assert_string_equal(c->sg_ids[1], "sg-2");
    assert_string_equal(c->subnet_id, "subnet-9");
    assert_string_equal(c->key_name, "kp");
    assert_int_equal(c->use_public_ip, 1);
    assert_int_equal(c->root_volume_gib, 50);
    assert_int_equal(c->disable_cvm, 1);
    assert_int_equal(c->ntags, 2);
    assert_string_equal(c->tags[1].key, "env");
    assert_int_equal(c->use_launch_template, 0);
    assert_string_equal(c->launch_template, "lt");
    assert_int_equal(c->ninstance_types, 2);
    pp_provider_free(p);

    /* A shared config profile is refused, as a flag or a variable. */
    char *profile[] = {"-aws-profile", "dev"};
    assert_int_equal(pp_provider_new(&pp_provider_aws_ops, &loop, "n", 2, profile, &p, &err),
                     -ENOTSUP);
    assert_non_null(strstr(err.message, "flag `-aws-profile`: `dev` is not supported"));
    setenv("AWS_PROFILE", "dev", 1);
    assert_int_equal(pp_provider_new(&pp_provider_aws_ops, &loop, "n", 0, NULL, &p, &err),
                     -ENOTSUP);
    assert_non_null(strstr(err.message, "environment variable `AWS_PROFILE`"));
    unsetenv("AWS_PROFILE");
    unsetenv("PODVM_INSTANCE_TYPE");
    unsetenv("AWS_SG_IDS");
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Empty variables are unset (upstream's rule), and AWS_DEFAULT_REGION
 * stands in for AWS_REGION. */
static void test_empty_is_unset(void **state)
{
    (void)state;
    static const char *const empty[] = {
        "PODVM_INSTANCE_TYPE", "ROOT_VOLUME_SIZE", "USE_PUBLIC_IP", "DISABLECVM", "TAGS",
        "AWS_API_BURST",       "AWS_ACCESS_KEY_ID"};
    for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++)
        setenv(empty[i], "", 1);
    setenv("AWS_REGION", "", 1);
    setenv("AWS_DEFAULT_REGION", "ap-south-1", 1);
    pp__aws_config_t c;
    pp_error_t err = {0};
    if (pp__aws_config_load(&c, &err) < 0)
        fail_msg("%s", err.message);
    assert_string_equal(c.region, "ap-south-1");
    assert_string_equal(c.instance_type, "m6a.large");
    assert_int_equal(c.root_volume_gib, 30);
    assert_int_equal(c.burst, 20);
    assert_int_equal(c.cred_mode, PP_AWS_CREDS_IMDS);
    pp__aws_config_free(&c);
    for (size_t i = 0; i < sizeof(empty) / sizeof(empty[0]); i++)
        unsetenv(empty[i]);
    unsetenv("AWS_DEFAULT_REGION");
    setenv("AWS_REGION", "eu-west-1", 1);
}

static void test_instance_type_selection(void **state)
{
    (void)state;
    pp_instance_type_t specs[] = {
        {"m6a.2xlarge", 8, 32768, 0}, {"m6a.large", 2, 8192, 0},      {"c6a.xlarge", 4, 8192, 0},
        {"m6a.xlarge", 4, 16384, 0},  {"g5.12xlarge", 48, 196608, 4}, {"g5.xlarge", 4, 16384, 1},
    };
    pp_instance_types_sort(specs, 6);
    assert_string_equal(specs[0].name, "m6a.large");
    assert_string_equal(specs[1].name, "c6a.xlarge");
    assert_string_equal(specs[4].name, "g5.xlarge");
    const char *allowed[] = {"m6a.large",   "c6a.xlarge", "m6a.xlarge",
                             "m6a.2xlarge", "g5.xlarge",  "g5.12xlarge"};
    pp_instance_type_list_t l = {.setting = "PODVM_INSTANCE_TYPES",
                                 .allowed = allowed,
                                 .nallowed = 6,
                                 .default_type = "m6a.large",
                                 .specs = specs,
                                 .nspecs = 6};
    struct {
        const char *mt;
        unsigned v, m, g;
        const char *want;
        int rc, grpc;
    } cases[] = {
        {NULL, 0, 0, 0, "m6a.large", 0, 0},
        {"m6a.2xlarge", 0, 0, 0, "m6a.2xlarge", 0, 0},
        {"m6a.2xlarge", 64, 0, 0, "m6a.2xlarge", 0, 0},
        {"t3.nano", 0, 0, 0, NULL, -EINVAL, PP_GRPC_INVALID_ARGUMENT},
        {NULL, 4, 8192, 0, "c6a.xlarge", 0, 0},
        {NULL, 4, 8193, 0, "m6a.xlarge", 0, 0},
        {NULL, 5, 0, 0, "m6a.2xlarge", 0, 0},
        {NULL, 0, 16000, 0, "m6a.xlarge", 0, 0},
        {NULL, 9, 0, 0, NULL, -ENOENT, PP_GRPC_FAILED_PRECONDITION},
        {NULL, 0, 0, 1, "g5.xlarge", 0, 0},
        {NULL, 8, 0, 1, "g5.12xlarge", 0, 0},
        {NULL, 0, 0, 2, "g5.12xlarge", 0, 0},
        {NULL, 0, 0, 8, NULL, -ENOENT, PP_GRPC_FAILED_PRECONDITION},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pp_instance_type_want_t w = {cases[i].mt, cases[i].v, cases[i].m, cases[i].g};
        char out[64] = "";
        pp_error_t err = {0};
        int rc = pp_instance_type_select(&l, &w, out, sizeof(out), &err);
        if (rc != cases[i].rc || (rc == 0 && strcmp(out, cases[i].want) != 0) ||
            (rc < 0 && err.status != cases[i].grpc))
            fail_msg("case %zu: rc %d, `%s`, %s", i, rc, out, err.message);
    }
    /* A type the cloud did not describe is never chosen by size, and one
     * outside the allow-list never at all. */
    l.nallowed = 2;
    pp_instance_type_want_t big = {NULL, 4, 16384, 0};
    char out[64];
    pp_error_t err = {0};
    assert_int_equal(pp_instance_type_select(&l, &big, out, sizeof(out), &err), -ENOENT);
    assert_non_null(strstr(err.message, "`m6a.large`, `c6a.xlarge`"));
    /* No list: the default alone is allowed. */
    l.nallowed = 0;
    pp_instance_type_want_t mt = {"c6a.xlarge", 0, 0, 0};
    assert_int_equal(pp_instance_type_select(&l, &mt, out, sizeof(out), &err), -EINVAL);
    mt.machine_type = "m6a.large";
    assert_int_equal(pp_instance_type_select(&l, &mt, out, sizeof(out), &err), 0);
    pp_instance_type_want_t two = {NULL, 2, 0, 0};
    assert_int_equal(pp_instance_type_select(&l, &two, out, sizeof(out), &err), 0);
    assert_string_equal(out, "m6a.large");
    assert_int_equal(pp_instance_type_select(&l, &mt, out, 4, &err), -ENAMETOOLONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clean_env),
        cmocka_unit_test_setup(test_everything_set, clean_env),
        cmocka_unit_test_setup(test_errors_named, clean_env),
        cmocka_unit_test_setup(test_secrets_not_in_messages, clean_env),
        cmocka_unit_test_setup(test_upstream_flags, clean_env),
        cmocka_unit_test_setup(test_empty_is_unset, clean_env),
        cmocka_unit_test(test_instance_type_selection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
