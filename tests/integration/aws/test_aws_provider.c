/* The AWS provider against the fake EC2 (fake_ec2.py, which starts this
 * program with FAKE_EC2_URL set and checks every signature with botocore):
 * one scenario per behaviour: full lifecycle, idempotent creates, instance
 * type selection, capacity and limit errors, injected faults, address
 * polling, deletes, web identity and IMDS credentials, options, and a log
 * without secrets. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "aws_harness.h"
#include "util/grpc_codes.h"

/* --- scenarios ------------------------------------------------------------------------------ */

static void test_lifecycle(void **state)
{
    (void)state;
    fake_config("{\"ip_delay\": 2, \"consistency_delay\": 1}");
    pp_provider_t *p = provider();
    assert_int_equal(p->ops->user_data_max, 16384);
    char name[64];
    pp_instance_spec_t s = spec_for("0123456789abcdef-lifecycle", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    print_message("created %s (%s) at %s\n", c.inst.id, c.inst.name, c.inst.ip);
    assert_true(pp__aws_instance_id_valid(c.inst.id));
    assert_string_equal(c.inst.name, name);
    assert_string_equal(c.inst.sandbox_id, s.sandbox_id);
    assert_true(strncmp(c.inst.ip, "10.", 3) == 0);

    json_t *rep = report();
    assert_clean(rep);
    json_t *run = last_run(rep);
    char token[65];
    assert_int_equal(pp__aws_client_token(NODE, s.sandbox_id, token), 0);
    assert_string_equal(json_string_value(json_object_get(run, "ClientToken")), token);
    assert_string_equal(json_string_value(json_object_get(run, "UserData")), UD);
    assert_string_equal(json_string_value(json_object_get(run, "ImageId")), AMI);
    assert_string_equal(json_string_value(json_object_get(run, "InstanceType")), "m6a.large");
    assert_string_equal(json_string_value(json_object_get(run, "SubnetId")),
                        "subnet-0123456789abcdef0");
    assert_int_equal(json_array_size(json_object_get(run, "SecurityGroupIds")), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(run, "CpuOptions"), "AmdSevSnp")),
        "enabled");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(run, "MetadataOptions"), "HttpTokens")),
        "required");
    json_t *bdm = json_array_get(json_object_get(run, "BlockDeviceMappings"), 0);
    assert_string_equal(json_string_value(json_object_get(bdm, "DeviceName")), "/dev/xvda");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(bdm, "Ebs"), "VolumeSize")),
                     30);
    assert_string_equal(tag_of(run, "Name"), name);
    assert_string_equal(tag_of(run, PP_AWS_TAG_NODE), NODE);
    assert_string_equal(tag_of(run, PP_AWS_TAG_SANDBOX), s.sandbox_id);
    assert_string_equal(tag_of(run, "team"), "peer-pods");
    assert_string_equal(tag_of(run, "env"), "ci");
    assert_int_equal(rnum(rep, "alive_count"), 1);
    json_decref(rep);

    res_t l = list(p);
    assert_int_equal(l.status, 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.list[0].id, c.inst.id);
    assert_string_equal(l.list[0].sandbox_id, s.sandbox_id);
    assert_string_equal(l.list[0].name, name);
    assert_string_equal(l.list[0].ip, c.inst.ip);
    free(l.list);

    /* Another node's provider does not list it. */
    pp_provider_t *other = NULL;
    pp_error_t err = {0};
    assert_int_equal(pp_provider_new(&pp_provider_aws_ops, &loop, "node-b", 0, NULL, &other, &err),
                     0);
    res_t lo = list(other);
    assert_int_equal(lo.n, 0);
    free(lo.list);
    provider_free(other);

    res_t d = destroy(p, c.inst.id);
    assert_int_equal(d.status, 0);
    res_t l2 = list(p);
    assert_int_equal(l2.n, 0);
    free(l2.list);
    rep = report();
    assert_clean(rep);
    assert_int_equal(rnum(rep, "alive_count"), 0);
    assert_int_equal(rnum(rep, "created"), 1);
    json_decref(rep);
    provider_free(p);
}

static void test_idempotent_create(void **state)
{
    (void)state;
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("idem-0001", name, sizeof(name));
    res_t a = {0}, b = {0};
    assert_int_equal(p->ops->create_instance(p, &s, on_create, &a), 0);
    assert_int_equal(p->ops->create_instance(p, &s, on_create, &b), 0);
    run_until(&a.done, 30000);
    run_until(&b.done, 30000);
    assert_int_equal(a.status, 0);
    assert_int_equal(b.status, 0);
    assert_string_equal(a.inst.id, b.inst.id);
    /* And again later: the same instance. */
    res_t c = create(p, &s);
    assert_string_equal(c.inst.id, a.inst.id);
    json_t *rep = report();
    assert_clean(rep);
    assert_int_equal(rnum(rep, "created"), 1);
    json_decref(rep);
    assert_int_equal(destroy(p, a.inst.id).status, 0);
    /* Once terminated, the sandbox cannot get a second VM with its token. */
    res_t d = create(p, &s);
    assert_int_equal(d.status, -ESTALE);
    assert_int_equal(d.grpc, PP_GRPC_FAILED_PRECONDITION);
    rep = report();
    assert_int_equal(rnum(rep, "created"), 1);
    assert_int_equal(rnum(rep, "alive_count"), 0);
    json_decref(rep);
    provider_free(p);
}

static const char *type_of_last_run(void)
{
    static char t[64];
    json_t *rep = report();
    assert_clean(rep);
    snprintf(t, sizeof(t), "%s", json_string_value(json_object_get(last_run(rep), "InstanceType")));
    json_decref(rep);
    return t;
}

static void test_instance_types(void **state)
{
    (void)state;
    setenv("PODVM_INSTANCE_TYPES", "m6a.2xlarge,m6a.large,c6a.xlarge,m6a.xlarge,g5.xlarge", 1);
    pp_provider_t *p = provider();
    struct {
        const char *machine_type;
        unsigned vcpus, mem, gpus;
        const char *want;
    } cases[] = {
        {NULL, 0, 0, 0, "m6a.large"},                 /* the default */
        {NULL, 4, 8192, 0, "c6a.xlarge"},             /* smallest memory first */
        {NULL, 4, 12000, 0, "m6a.xlarge"},            /* */
        {NULL, 3, 0, 0, "c6a.xlarge"},                /* vCPUs alone */
        {NULL, 0, 20000, 0, "m6a.2xlarge"},           /* memory alone */
        {NULL, 2, 2048, 0, "m6a.large"},              /* never a GPU type without GPUs */
        {"m6a.xlarge", 64, 1 << 20, 0, "m6a.xlarge"}, /* explicit wins */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char sid[32], name[64];
        snprintf(sid, sizeof(sid), "types-%zu", i);
        pp_instance_spec_t s = spec_for(sid, name, sizeof(name));
        s.machine_type = cases[i].machine_type;
        s.vcpus = cases[i].vcpus;
        s.memory_mib = cases[i].mem;
        res_t c = create(p, &s);
        assert_int_equal(c.status, 0);
        assert_string_equal(type_of_last_run(), cases[i].want);
        assert_int_equal(destroy(p, c.inst.id).status, 0);
    }
    json_t *rep = report();
    /* The specs were asked for once. */
    assert_int_equal(rnum(json_object_get(rep, "counts"), "DescribeInstanceTypes"), 1);
    assert_int_equal(rnum(json_object_get(rep, "counts"), "DescribeImages"), 1);
    json_decref(rep);

    /* Outside the allow-list, or too big: clear errors, nothing made. GPUs
     * need a type without SEV-SNP here, which EC2 refuses with CVMs on. */
    char name[64];
    pp_instance_spec_t s = spec_for("types-bad", name, sizeof(name));
    s.machine_type = "t3.small";
    res_t c = create(p, &s);
    assert_int_equal(c.status, -EINVAL);
    assert_int_equal(c.grpc, PP_GRPC_INVALID_ARGUMENT);
    assert_non_null(strstr(c.msg, "`PODVM_INSTANCE_TYPES`"));
    s.machine_type = NULL;
    s.vcpus = 64;
    c = create(p, &s);
    assert_int_equal(c.status, -ENOENT);
    assert_int_equal(c.grpc, PP_GRPC_FAILED_PRECONDITION);
    assert_non_null(strstr(c.msg, "64 vCPUs"));
    s.vcpus = 2;
    s.gpus = 1;
    c = create(p, &s);
    assert_int_equal(c.status, -EOPNOTSUPP);
    assert_int_equal(c.grpc, PP_GRPC_FAILED_PRECONDITION);
    assert_non_null(strstr(c.msg, "Unsupported"));
    rep = report();
    assert_clean(rep);
    assert_int_equal(rnum(rep, "alive_count"), 0);
    json_decref(rep);
    provider_free(p);
}

static void test_capacity_and_limits(void **state)
{
    (void)state;
    setenv("PODVM_INSTANCE_TYPES", "m6a.large,m6a.xlarge", 1);
    fake_config("{\"capacity_types\": [\"m6a.xlarge\"], \"instance_limit\": 2}");
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("cap-1", name, sizeof(name));
    s.machine_type = "m6a.xlarge";
    res_t c = create(p, &s);
    assert_int_equal(c.status, -ENOSPC);
    assert_int_equal(c.grpc, PP_GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(c.msg, "InsufficientInstanceCapacity"));
    /* A capacity error is not worth retrying at once: one RunInstances. */
    json_t *rep = report();
    assert_int_equal(rnum(json_object_get(rep, "counts"), "RunInstances"), 1);
    json_decref(rep);

    res_t ok[2];
    for (int i = 0; i < 2; i++) {
        char sid[16], n2[64];
        snprintf(sid, sizeof(sid), "lim-%d", i);
        pp_instance_spec_t s2 = spec_for(sid, n2, sizeof(n2));
        ok[i] = create(p, &s2);
        assert_int_equal(ok[i].status, 0);
    }
    pp_instance_spec_t s3 = spec_for("lim-3", name, sizeof(name));
    c = create(p, &s3);
    assert_int_equal(c.status, -EDQUOT);
    assert_int_equal(c.grpc, PP_GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(c.msg, "InstanceLimitExceeded"));
    for (int i = 0; i < 2; i++)
        assert_int_equal(destroy(p, ok[i].inst.id).status, 0);

    /* SEV-SNP on a type without it. */
    setenv("PODVM_INSTANCE_TYPES", "t3.small", 1);
    setenv("PODVM_INSTANCE_TYPE", "t3.small", 1);
    pp_provider_t *p2 = provider();
    pp_instance_spec_t s4 = spec_for("snp-1", name, sizeof(name));
    c = create(p2, &s4);
    assert_int_equal(c.status, -EOPNOTSUPP);
    assert_int_equal(c.grpc, PP_GRPC_FAILED_PRECONDITION);
    provider_free(p2);

    rep = report();
    assert_clean(rep);
    assert_int_equal(rnum(rep, "alive_count"), 0);
    json_decref(rep);
    provider_free(p);
}

static void test_faults(void **state)
{
    (void)state;
    pp_provider_t *p = provider();
    char name[64];
    /* Every RunInstances makes the instance and answers 500: the create
     * fails, and the instance it made is found by its token and removed. */
    fake_config("{\"fault_rate\": 1.0, \"fault_actions\": [\"RunInstances\"], "
                "\"fault_kinds\": {\"create_error\": 1}}");
    pp_instance_spec_t s = spec_for("fault-always", name, sizeof(name));
    res_t c = create(p, &s);
    assert_true(c.status < 0);
    assert_int_equal(c.grpc, PP_GRPC_UNAVAILABLE);
    assert_non_null(strstr(c.msg, "InternalError"));
    json_t *rep = report();
    assert_clean(rep);
    assert_int_equal(rnum(rep, "created"), 1);
    assert_int_equal(rnum(rep, "alive_count"), 0);
    assert_int_equal(rnum(json_object_get(rep, "counts"), "RunInstances"), 8);
    json_decref(rep);

    /* Each kind of fault, on 30% of the requests: every create succeeds,
     * with one instance per sandbox. */
    static const char *const kinds[] = {"throttle", "internal", "unavailable",
                                        "drop",     "timeout",  "create_error"};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        char cfg[256];
        snprintf(cfg, sizeof(cfg),
                 "{\"fault_rate\": 0.3, \"fault_actions\": null, \"seed\": %zu, \"timeout_s\": "
                 "0.6, \"fault_kinds\": {\"%s\": 1}}",
                 k + 7, kinds[k]);
        fake_config(cfg);
        for (int i = 0; i < 4; i++) {
            char sid[64];
            snprintf(sid, sizeof(sid), "fault-%s-%d", kinds[k], i);
            pp_instance_spec_t s2 = spec_for(sid, name, sizeof(name));
            res_t r = create(p, &s2);
            assert_int_equal(r.status, 0);
            res_t d = destroy(p, r.inst.id);
            assert_int_equal(d.status, 0);
        }
        rep = report();
        print_message("fault `%s`: %lld injected\n", kinds[k],
                      rnum(json_object_get(rep, "faults"), kinds[k]));
        assert_true(rnum(json_object_get(rep, "faults"), kinds[k]) > 0);
        json_decref(rep);
    }
    fake_config("{\"fault_rate\": 0}");
    rep = report();
    assert_clean(rep);
    assert_int_equal(rnum(rep, "alive_count"), 0);
    json_decref(rep);
    provider_free(p);
}

static void test_address_wait(void **state)
{
    (void)state;
    /* The address never comes: the create fails in time and removes the VM. */
    setenv("AWS_IP_WAIT_TIMEOUT_MS", "300", 1);
    fake_config("{\"ip_delay\": 1000000}");
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("noip-1", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, -ETIMEDOUT);
    assert_int_equal(c.grpc, PP_GRPC_DEADLINE_EXCEEDED);
    json_t *rep = report();
    assert_clean(rep);
    assert_int_equal(rnum(rep, "created"), 1);
    assert_int_equal(rnum(rep, "alive_count"), 0);
    json_decref(rep);
    provider_free(p);
}

static void test_delete(void **state)
{
    (void)state;
    pp_provider_t *p = provider();
    /* Unknown, malformed and twice-deleted ids are all deleted already. */
    assert_int_equal(destroy(p, "i-0123456789abcdef0").status, 0);
    assert_int_equal(destroy(p, "local-podvm-x").status, 0);
    assert_int_equal(destroy(p, "i-../../etc").status, 0);
    char name[64];
    pp_instance_spec_t s = spec_for("del-1", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    assert_int_equal(p->ops->delete_instance(p, NULL, on_delete, NULL), -EINVAL);
    /* Bad requests fail at once. */
    res_t never = {0};
    pp_instance_spec_t bad = s;
    bad.sandbox_id = "";
    assert_int_equal(p->ops->create_instance(p, &bad, on_create, &never), -EINVAL);
    bad = s;
    bad.user_data_len = 16385;
    char *big = calloc(1, 16386);
    memset(big, 'u', 16385);
    bad.user_data = big;
    assert_int_equal(p->ops->create_instance(p, &bad, on_create, &never), -EMSGSIZE);
    /* EC2's limit is on the raw bytes: exactly 16 KiB goes through. */
    bad.user_data_len = 16384;
    bad.sandbox_id = "del-big";
    res_t b = create(p, &bad);
    assert_int_equal(b.status, 0);
    assert_int_equal(destroy(p, b.inst.id).status, 0);
    free(big);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(never.done, 0);
    json_t *rep = report();
    assert_clean(rep);
    assert_int_equal(rnum(rep, "alive_count"), 0);
    json_decref(rep);
    provider_free(p);
}

static char token_path[64];

static void write_token_file(void)
{
    snprintf(token_path, sizeof(token_path), "/tmp/pp-aws-token-XXXXXX");
    int fd = mkstemp(token_path);
    assert_true(fd >= 0);
    const char *t = getenv("FAKE_EC2_WEB_IDENTITY_TOKEN");
    assert_non_null(t);
    assert_int_equal(write(fd, t, strlen(t)), (ssize_t)strlen(t));
    assert_int_equal(write(fd, "\n", 1), 1);
    close(fd);
}

static void test_web_identity(void **state)
{
    (void)state;
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    write_token_file();
    setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/peerpod", 1);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", token_path, 1);
    /* Credentials for 4 s: refreshed halfway, before they expire. */
    fake_config("{\"sts_ttl\": 4}");
    pp_provider_t *p = provider();
    for (int i = 0; i < 3; i++) {
        char sid[16], name[64];
        snprintf(sid, sizeof(sid), "wi-%d", i);
        pp_instance_spec_t s = spec_for(sid, name, sizeof(name));
        res_t c = create(p, &s);
        assert_int_equal(c.status, 0);
        assert_int_equal(destroy(p, c.inst.id).status, 0);
        if (i < 2)
            sleep_ms(2300);
    }
    json_t *rep = report();
    assert_clean(rep);
    print_message("web identity: %lld STS calls\n", rnum(rep, "sts_calls"));
    /* The 4 s credentials were outlived, and no request was refused. */
    assert_true(rnum(rep, "sts_calls") >= 2);
    json_decref(rep);
    provider_free(p);

    /* A token the fake does not accept: a clear error. */
    int fd = open(token_path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "wrong-token", 11), 11);
    close(fd);
    p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("wi-bad", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, -EACCES);
    assert_non_null(strstr(c.msg, "InvalidIdentityToken"));
    provider_free(p);
    unlink(token_path);
}

static void test_instance_role(void **state)
{
    (void)state;
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    pp_provider_t *p = provider();
    for (int i = 0; i < 2; i++) {
        char sid[16], name[64];
        snprintf(sid, sizeof(sid), "imds-%d", i);
        pp_instance_spec_t s = spec_for(sid, name, sizeof(name));
        res_t c = create(p, &s);
        assert_int_equal(c.status, 0);
        assert_int_equal(destroy(p, c.inst.id).status, 0);
    }
    json_t *rep = report();
    assert_clean(rep);
    /* Token, role, credentials: once for both creates; and the key pair,
     * unset, asked once (none: 404) with the same token, as upstream asks. */
    assert_int_equal(rnum(rep, "imds_calls"), 4);
    json_decref(rep);
    provider_free(p);
}

/* Region, subnet, security groups and key pair from the node's instance
 * metadata (IMDSv2) when unset, as upstream takes them; and what happens
 * when the metadata service refuses a token, lacks a path, or is slow. */
/* The node as the fake's metadata service describes it. */
static const char node_metadata[] =
    "{\"imds_metadata\": {\"mac\": \"0e:2a:4c:11:22:33\", "
    "\"placement/region\": \"us-east-1\", "
    "\"network/interfaces/macs/0e:2a:4c:11:22:33/subnet-id\": \"subnet-0c0ffee0c0ffee000\", "
    "\"network/interfaces/macs/0e:2a:4c:11:22:33/security-group-ids\": "
    "\"sg-0c0ffee0c0ffee001\\nsg-0c0ffee0c0ffee002\\n\", "
    "\"public-keys\": \"0=node-key\"}}";

/* A list's status; the instances are not kept. */
static int list_status(pp_provider_t *p)
{
    res_t r = list(p);
    free(r.list);
    return r.status;
}

static void test_imds_discovery(void **state)
{
    (void)state;
    static const char *const unset[] = {"AWS_REGION", "AWS_SUBNET_ID", "AWS_SG_IDS", "SSH_KP_NAME"};
    for (size_t i = 0; i < sizeof(unset) / sizeof(unset[0]); i++)
        unsetenv(unset[i]);
    fake_config(node_metadata);
    pp_provider_t *p = provider();
    const pp__aws_config_t *c = &((pp__aws_state_t *)p->state)->cfg;
    assert_string_equal(c->region, "");
    res_t l = list(p); /* the first operation asks */
    free(l.list);
    assert_int_equal(l.status, 0);
    assert_string_equal(c->region, "us-east-1");
    assert_string_equal(c->ec2.host, strstr(getenv("FAKE_EC2_URL"), "//") + 2);
    assert_string_equal(c->subnet_id, "subnet-0c0ffee0c0ffee000");
    assert_int_equal(c->nsg_ids, 2);
    assert_string_equal(c->sg_ids[1], "sg-0c0ffee0c0ffee002");
    assert_string_equal(c->key_name, "node-key");
    char name[64];
    pp_instance_spec_t s = spec_for("imds-found", name, sizeof(name));
    res_t cr = create(p, &s);
    assert_int_equal(cr.status, 0);
    json_t *rep = report();
    assert_clean(rep);
    json_t *run = last_run(rep);
    assert_string_equal(json_string_value(json_object_get(run, "SubnetId")),
                        "subnet-0c0ffee0c0ffee000");
    assert_string_equal(json_string_value(json_object_get(run, "KeyName")), "node-key");
    assert_int_equal(json_array_size(json_object_get(run, "SecurityGroupIds")), 2);
    /* Asked once: token, mac, region, subnet, groups, key. */
    assert_int_equal(rnum(rep, "imds_calls"), 6);
    json_decref(rep);
    assert_int_equal(destroy(p, cr.inst.id).status, 0);
    provider_free(p);

    /* No token (IMDSv2 refused): without a region nothing can be signed;
     * each operation says so, and the next asks again. */
    fake_config("{\"imds_no_token\": true}");
    p = provider();
    c = &((pp__aws_state_t *)p->state)->cfg;
    s = spec_for("imds-noregion", name, sizeof(name));
    cr = create(p, &s);
    print_message("no token: %s\n", cr.msg);
    assert_int_equal(cr.status, -EHOSTUNREACH);
    assert_int_equal(cr.grpc, PP_GRPC_FAILED_PRECONDITION);
    assert_non_null(strstr(cr.msg, "`AWS_REGION` is not set and the instance metadata service "
                                   "did not give it"));
    assert_non_null(strstr(cr.msg, "403"));
    fake_config("{\"imds_no_token\": false}");
    l = list(p);
    free(l.list);
    assert_int_equal(l.status, 0);
    assert_string_equal(c->region, "us-east-1");
    provider_free(p);

    /* With the region set, a refused token leaves the rest unset, and
     * pod VMs are still made (EC2's default subnet and group). */
    setenv("AWS_REGION", "us-east-1", 1);
    fake_config("{\"imds_no_token\": true}");
    p = provider();
    c = &((pp__aws_state_t *)p->state)->cfg;
    s = spec_for("imds-notoken", name, sizeof(name));
    cr = create(p, &s);
    assert_int_equal(cr.status, 0);
    assert_string_equal(c->subnet_id, "");
    assert_int_equal(c->nsg_ids, 0);
    rep = report();
    run = last_run(rep);
    assert_null(json_object_get(run, "SubnetId"));
    assert_null(json_object_get(run, "KeyName"));
    json_decref(rep);
    assert_int_equal(destroy(p, cr.inst.id).status, 0);
    provider_free(p);
    fake_config("{\"imds_no_token\": false}");

    /* 404: no region path. The error names it; the subnet's 404 leaves it
     * unset. */
    unsetenv("AWS_REGION");
    fake_config("{\"imds_metadata\": {\"mac\": \"0e:2a:4c:11:22:33\"}}");
    p = provider();
    c = &((pp__aws_state_t *)p->state)->cfg;
    l = list(p);
    free(l.list);
    print_message("404: %s\n", l.msg);
    assert_int_equal(l.status, -EHOSTUNREACH);
    assert_non_null(strstr(l.msg, "HTTP 404"));
    provider_free(p);
    setenv("AWS_REGION", "us-east-1", 1);
    p = provider();
    c = &((pp__aws_state_t *)p->state)->cfg;
    assert_int_equal(list_status(p), 0);
    assert_string_equal(c->subnet_id, "");
    assert_string_equal(c->key_name, "");
    provider_free(p);

    /* An answer that is no subnet id (it holds a shell's `$(...)`): the
     * subnet stays unset and is never sent; the rest is taken. */
    fake_config("{\"imds_metadata\": {\"mac\": \"0e:2a:4c:11:22:33\", "
                "\"network/interfaces/macs/0e:2a:4c:11:22:33/subnet-id\": "
                "\"subnet-0c0ffee$(id)\\n\", "
                "\"network/interfaces/macs/0e:2a:4c:11:22:33/security-group-ids\": "
                "\"sg-0c0ffee0c0ffee001\"}}");
    p = provider();
    c = &((pp__aws_state_t *)p->state)->cfg;
    s = spec_for("imds-badsubnet", name, sizeof(name));
    cr = create(p, &s);
    assert_int_equal(cr.status, 0);
    assert_string_equal(c->subnet_id, "");
    assert_int_equal(c->nsg_ids, 1);
    rep = report();
    assert_clean(rep);
    run = last_run(rep);
    assert_null(json_object_get(run, "SubnetId"));
    assert_int_equal(json_array_size(json_object_get(run, "SecurityGroupIds")), 1);
    json_decref(rep);
    assert_int_equal(destroy(p, cr.inst.id).status, 0);
    provider_free(p);

    /* Slow: answers within the bound are waited for; beyond it (5 s per
     * call), the region is missing with a timeout. */
    unsetenv("AWS_REGION");
    fake_config(node_metadata);
    fake_config("{\"imds_delay_ms\": 150}");
    p = provider();
    c = &((pp__aws_state_t *)p->state)->cfg;
    uint64_t t0 = uv_hrtime();
    assert_int_equal(list_status(p), 0);
    print_message("slow metadata (150 ms an answer): %.0f ms\n", (uv_hrtime() - t0) / 1e6);
    assert_string_equal(c->region, "us-east-1");
    provider_free(p);
    fake_config("{\"imds_delay_ms\": 6000}");
    p = provider();
    t0 = uv_hrtime();
    l = list(p);
    free(l.list);
    double ms = (uv_hrtime() - t0) / 1e6;
    print_message("metadata slower than its bound: %.0f ms: %s\n", ms, l.msg);
    assert_int_equal(l.status, -EHOSTUNREACH);
    assert_non_null(strstr(l.msg, "`AWS_REGION` is not set"));
    assert_true(ms < 15000);
    provider_free(p);
    fake_config("{\"imds_delay_ms\": 0}");
}

static void test_options(void **state)
{
    (void)state;
    setenv("DISABLECVM", "true", 1);
    setenv("USE_PUBLIC_IP", "true", 1);
    setenv("SSH_KP_NAME", "my-key", 1);
    setenv("ROOT_VOLUME_SIZE", "0", 1);
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("opt-1", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    assert_true(strncmp(c.inst.ip, "198.51.", 7) == 0); /* the public address */
    json_t *rep = report();
    assert_clean(rep);
    json_t *run = last_run(rep);
    assert_null(json_object_get(run, "CpuOptions"));
    assert_null(json_object_get(run, "SubnetId"));
    assert_null(json_object_get(run, "BlockDeviceMappings"));
    assert_string_equal(json_string_value(json_object_get(run, "KeyName")), "my-key");
    json_t *ni = json_array_get(json_object_get(run, "NetworkInterfaces"), 0);
    assert_true(json_is_true(json_object_get(ni, "AssociatePublicIpAddress")));
    assert_int_equal(json_array_size(json_object_get(ni, "Groups")), 2);
    json_decref(rep);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    res_t l = list(p);
    assert_int_equal(l.n, 0);
    free(l.list);
    provider_free(p);

    /* A launch template carries image and type. */
    unsetenv("PODVM_AMI_ID");
    unsetenv("DISABLECVM");
    unsetenv("USE_PUBLIC_IP");
    setenv("USE_PODVM_LAUNCHTEMPLATE", "true", 1);
    p = provider();
    pp_instance_spec_t s2 = spec_for("opt-lt", name, sizeof(name));
    c = create(p, &s2);
    assert_int_equal(c.status, 0);
    rep = report();
    assert_clean(rep);
    run = last_run(rep);
    assert_string_equal(json_string_value(json_object_get(json_object_get(run, "LaunchTemplate"),
                                                          "LaunchTemplateName")),
                        "kata");
    assert_null(json_object_get(run, "ImageId"));
    assert_null(json_object_get(run, "InstanceType"));
    json_decref(rep);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    provider_free(p);
}

/* A lifecycle at debug level, with web identity credentials and with
 * static keys: the log shows the calls and none of the secrets. */
static void test_no_secrets_in_log(void **state)
{
    (void)state;
    char path[] = "/tmp/pp-aws-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    for (int mode = 0; mode < 2; mode++) {
        if (mode == 1) {
            unsetenv("AWS_ACCESS_KEY_ID");
            unsetenv("AWS_SECRET_ACCESS_KEY");
            write_token_file();
            setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/peerpod", 1);
            setenv("AWS_WEB_IDENTITY_TOKEN_FILE", token_path, 1);
        }
        fake_config("{\"fault_rate\": 0.3, \"fault_kinds\": {\"throttle\": 1, \"internal\": 1}}");
        pp_provider_t *p = provider();
        char name[64];
        pp_instance_spec_t s = spec_for(mode ? "log-wi" : "log-static", name, sizeof(name));
        res_t c = create(p, &s);
        assert_int_equal(c.status, 0);
        assert_int_equal(destroy(p, c.inst.id).status, 0);
        provider_free(p);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    unlink(token_path);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *log = calloc(1, (size_t)st.st_size + 1);
    assert_int_equal(pread(fd, log, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    unlink(path);
    assert_non_null(strstr(log, "POST http://127.0.0.1:"));
    assert_non_null(strstr(log, "instance `i-"));
    json_t *rep = report();
    json_t *secrets = json_object_get(rep, "secrets");
    assert_true(json_array_size(secrets) >= 3);
    size_t i;
    json_t *v;
    json_array_foreach(secrets, i, v)
    {
        if (strstr(log, json_string_value(v)) != NULL)
            fail_msg("the log holds a secret");
    }
    static const char *const words[] = {"Signature=", "Authorization", "X-Amz-Security-Token",
                                        "WebIdentityToken"};
    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strstr(log, words[i]) != NULL)
            fail_msg("the log holds `%s`", words[i]);
    assert_null(strstr(log, getenv("FAKE_EC2_WEB_IDENTITY_TOKEN")));
    print_message("log: %lld bytes, no secrets\n", (long long)st.st_size);
    json_decref(rep);
    free(log);
}

int main(void)
{
    /* Debug lines, for the log test. */
    int rc = harness_init("debug");
    if (rc != 0)
        return rc;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_lifecycle, harness_setup),
        cmocka_unit_test_setup(test_idempotent_create, harness_setup),
        cmocka_unit_test_setup(test_instance_types, harness_setup),
        cmocka_unit_test_setup(test_capacity_and_limits, harness_setup),
        cmocka_unit_test_setup(test_faults, harness_setup),
        cmocka_unit_test_setup(test_address_wait, harness_setup),
        cmocka_unit_test_setup(test_delete, harness_setup),
        cmocka_unit_test_setup(test_web_identity, harness_setup),
        cmocka_unit_test_setup(test_instance_role, harness_setup),
        cmocka_unit_test_setup(test_imds_discovery, harness_setup),
        cmocka_unit_test_setup(test_options, harness_setup),
        cmocka_unit_test_setup(test_no_secrets_in_log, harness_setup),
    };
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    harness_fini();
    return rc;
}
