/* The AWS provider's readers fed recorded responses (the fuzz corpus in
 * tests/fuzz/corpus/fuzz_aws_xml), and its Query API encoder, error table,
 * classify hook and client tokens. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "providers/aws/aws.h"
#include "util/grpc_codes.h"

#ifndef AWS_CORPUS_DIR
#error "AWS_CORPUS_DIR must name the recorded responses"
#endif

static char *blob(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", AWS_CORPUS_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
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

static void test_instances(void **state)
{
    (void)state;
    size_t len;
    char *x = blob("run_instances.xml", &len);
    pp__aws_instances_t l;
    assert_int_equal(pp__aws_parse_instances(x, len, &l), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.items[0].id, "i-0abcdef1234567890");
    assert_string_equal(l.items[0].state, "pending");
    assert_string_equal(l.items[0].type, "m6a.large");
    assert_string_equal(l.items[0].private_ip, "10.0.1.17");
    assert_string_equal(l.items[0].public_ip, "");
    assert_string_equal(l.items[0].name, "podvm-nginx-0123abcd");
    assert_string_equal(l.items[0].node, "worker-1");
    assert_string_equal(l.items[0].sandbox_id, "0123abcd4567ef89");
    assert_int_equal(strlen(l.items[0].client_token), 64);
    assert_string_equal(l.next_token, "");
    pp__aws_instances_free(&l);
    free(x);

    x = blob("describe_instances.xml", &len);
    assert_int_equal(pp__aws_parse_instances(x, len, &l), 0);
    assert_int_equal(l.n, 3); /* across two reservations */
    assert_string_equal(l.items[0].public_ip, "198.51.100.7");
    assert_string_equal(l.items[1].id, "i-1d48637b");
    assert_string_equal(l.items[1].state, "terminated");
    assert_string_equal(l.items[1].sandbox_id, "");
    /* Addresses from the first interface when the instance has none. */
    assert_string_equal(l.items[2].private_ip, "10.0.2.9");
    assert_string_equal(l.items[2].public_ip, "203.0.113.20");
    assert_string_equal(l.next_token, "eyJ2IjoiMSIsIm4iOjJ9");
    pp__aws_instances_free(&l);
    free(x);

    x = blob("describe_instances_empty.xml", &len);
    assert_int_equal(pp__aws_parse_instances(x, len, &l), 0);
    assert_int_equal(l.n, 0);
    free(x);

    static const char *const bad[] = {"bad_instance_id.xml", "bad_too_many.xml",
                                      "bad_external_entity.xml", "bad_deep.xml", "error_ec2.xml"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        x = blob(bad[i], &len);
        if (pp__aws_parse_instances(x, len, &l) != -EBADMSG)
            fail_msg("%s was read", bad[i]);
        assert_null(l.items);
        free(x);
    }
    assert_int_equal(pp__aws_parse_instances("", 0, &l), -EBADMSG);
    assert_int_equal(pp__aws_parse_instances(NULL, 0, &l), -EBADMSG);
}

static void test_terminate_types_images(void **state)
{
    (void)state;
    size_t len;
    char *x = blob("terminate_instances.xml", &len);
    char st[32];
    assert_int_equal(pp__aws_parse_terminate(x, len, "i-0abcdef1234567890", st, sizeof(st)), 0);
    assert_string_equal(st, "shutting-down");
    assert_int_equal(pp__aws_parse_terminate(x, len, "i-0000000000000000f", st, sizeof(st)), 0);
    assert_string_equal(st, "");
    free(x);

    x = blob("describe_instance_types.xml", &len);
    pp__aws_types_t t;
    assert_int_equal(pp__aws_parse_instance_types(x, len, &t), 0);
    assert_int_equal(t.n, 2);
    assert_string_equal(t.items[0].name, "m6a.large");
    assert_int_equal(t.items[0].vcpus, 2);
    assert_int_equal(t.items[0].memory_mib, 8192);
    assert_int_equal(t.items[0].gpus, 0);
    assert_int_equal(t.items[1].gpus, 4);
    assert_int_equal(t.items[1].vcpus, 48);
    pp__aws_types_free(&t);
    free(x);
    x = blob("bad_truncated.xml", &len);
    assert_int_equal(pp__aws_parse_instance_types(x, len, &t), -EBADMSG);
    free(x);
    const char *neg = "<R><instanceTypeSet><item><instanceType>x</instanceType><vCpuInfo>"
                      "<defaultVCpus>-2</defaultVCpus></vCpuInfo></item></instanceTypeSet></R>";
    assert_int_equal(pp__aws_parse_instance_types(neg, strlen(neg), &t), -EBADMSG);

    x = blob("describe_images.xml", &len);
    pp__aws_image_t img;
    assert_int_equal(pp__aws_parse_image(x, len, "ami-0123456789abcdef0", &img), 0);
    assert_string_equal(img.root_device, "/dev/xvda");
    assert_int_equal(img.root_size_gib, 8);
    assert_int_equal(pp__aws_parse_image(x, len, "ami-0000000000000000f", &img), -ENOENT);
    free(x);
}

static void test_errors(void **state)
{
    (void)state;
    size_t len;
    char *x = blob("error_ec2.xml", &len);
    pp__aws_error_info_t ei;
    assert_int_equal(pp__aws_parse_error(x, len, &ei), 0);
    assert_string_equal(ei.code, "InsufficientInstanceCapacity");
    assert_non_null(strstr(ei.message, "us-east-1a"));
    assert_string_equal(ei.request_id, "ea966190-f9aa-478e-9ede-example");
    pp_http_response_t resp = {.status = 500, .body = x, .body_len = len};
    assert_int_equal(pp__aws_http_classify(&resp, NULL), PP_HTTP_FINAL);
    free(x);

    x = blob("error_sts.xml", &len);
    assert_int_equal(pp__aws_parse_error(x, len, &ei), 0);
    assert_string_equal(ei.code, "InvalidIdentityToken");
    assert_string_equal(ei.request_id, "c6104cbe-af31-11e0-8154-cbc7ccf896c7");
    free(x);

    x = blob("error_throttle.xml", &len);
    resp = (pp_http_response_t){.status = 503, .body = x, .body_len = len};
    assert_int_equal(pp__aws_http_classify(&resp, NULL), PP_HTTP_RETRY);
    resp.status = 400; /* a throttling code is retried whatever the status */
    assert_int_equal(pp__aws_http_classify(&resp, NULL), PP_HTTP_RETRY);
    free(x);
    resp = (pp_http_response_t){.status = 502, .body = "<html>bad gateway</html>", .body_len = 24};
    assert_int_equal(pp__aws_http_classify(&resp, NULL), PP_HTTP_DEFAULT);
    resp = (pp_http_response_t){.status = 200, .body = "", .body_len = 0};
    assert_int_equal(pp__aws_http_classify(&resp, NULL), PP_HTTP_DEFAULT);

    x = blob("bad_doctype_entities.xml", &len);
    assert_int_equal(pp__aws_parse_error(x, len, &ei), -EBADMSG);
    assert_string_equal(ei.code, "");
    free(x);

    /* The table: one place, every class. */
    struct {
        const char *code;
        long http;
        int err, grpc, retry;
    } cases[] = {
        {"RequestLimitExceeded", 503, -EAGAIN, PP_GRPC_UNAVAILABLE, 1},
        {"Throttling", 400, -EAGAIN, PP_GRPC_UNAVAILABLE, 1},
        {"InternalError", 500, -EAGAIN, PP_GRPC_UNAVAILABLE, 1},
        {"InsufficientInstanceCapacity", 500, -ENOSPC, PP_GRPC_RESOURCE_EXHAUSTED, -1},
        {"InstanceLimitExceeded", 400, -EDQUOT, PP_GRPC_RESOURCE_EXHAUSTED, -1},
        {"VcpuLimitExceeded", 400, -EDQUOT, PP_GRPC_RESOURCE_EXHAUSTED, -1},
        {"Unsupported", 400, -EOPNOTSUPP, PP_GRPC_FAILED_PRECONDITION, -1},
        {"InvalidAMIID.NotFound", 400, -ENOENT, PP_GRPC_FAILED_PRECONDITION, -1},
        {"InvalidInstanceID.NotFound", 400, -ENOENT, PP_GRPC_NOT_FOUND, -1},
        {"UnauthorizedOperation", 403, -EPERM, PP_GRPC_PERMISSION_DENIED, -1},
        {"ExpiredToken", 400, -EACCES, PP_GRPC_UNAUTHENTICATED, -1},
        {"SomethingNew", 503, -EAGAIN, PP_GRPC_UNAVAILABLE, 0},
        {"SomethingNew", 400, -EINVAL, PP_GRPC_FAILED_PRECONDITION, 0},
        {NULL, 403, -EPERM, PP_GRPC_PERMISSION_DENIED, 0},
        {NULL, 401, -EACCES, PP_GRPC_UNAUTHENTICATED, 0},
        {"", 409, -EEXIST, PP_GRPC_ALREADY_EXISTS, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pp__aws_error_class_t c;
        pp__aws_error_classify(cases[i].code, cases[i].http, &c);
        if (c.err != cases[i].err || c.grpc != cases[i].grpc || c.retry != cases[i].retry)
            fail_msg("%s/%ld: %d %d %d", cases[i].code ? cases[i].code : "-", cases[i].http, c.err,
                     c.grpc, c.retry);
    }
}

static void test_credentials(void **state)
{
    (void)state;
    size_t len;
    char *x = blob("sts_credentials.xml", &len);
    pp__aws_sts_creds_t c;
    assert_int_equal(pp__aws_parse_sts(x, len, &c), 0);
    assert_string_equal(c.access_key, "ASgeIAIOSFODNN7EXAMPLE");
    assert_string_equal(c.secret_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
    assert_string_equal(c.session_token, "AQoDYXdzEE0a8ANXXXXXXXXNO1ewxE5TijQyp+IEXAMPLE");
    assert_int_equal(c.expiration, 1729810823);
    pp__aws_sts_creds_free(&c);
    assert_null(c.secret_key);
    free(x);
    x = blob("imds_credentials.json", &len);
    assert_int_equal(pp__aws_parse_imds_creds(x, len, &c), 0);
    assert_string_equal(c.access_key, "ASIAIOSFODNN7EXAMPLE");
    assert_string_equal(c.session_token, "token-EXAMPLE");
    assert_int_equal(c.expiration, 1729822083);
    pp__aws_sts_creds_free(&c);
    free(x);
    const char *failed = "{\"Code\":\"Failure\",\"AccessKeyId\":\"a\"}";
    assert_int_equal(pp__aws_parse_imds_creds(failed, strlen(failed), &c), -EBADMSG);
    x = blob("error_sts.xml", &len);
    assert_int_equal(pp__aws_parse_sts(x, len, &c), -EBADMSG);
    free(x);

    time_t t;
    assert_int_equal(pp__aws_parse_time("2024-10-24T23:00:23Z", &t), 0);
    assert_int_equal(t, 1729810823);
    assert_int_equal(pp__aws_parse_time("2024-10-24T23:00:23.123Z", &t), 0);
    assert_int_equal(t, 1729810823);
    assert_int_equal(pp__aws_parse_time("2024-10-24T23:00:23+00:00", &t), 0);
    assert_int_equal(pp__aws_parse_time("2024-10-24T23:00:23+02:00", &t), -EBADMSG);
    assert_int_equal(pp__aws_parse_time("yesterday", &t), -EBADMSG);
}

static void test_query(void **state)
{
    (void)state;
    pp__aws_query_t q;
    pp__aws_query_init(&q, "RunInstances", PP_AWS_EC2_VERSION);
    pp__aws_query_add(&q, "UserData", "I2Nsb3VkLWNvbmZpZw==");
    pp__aws_query_addf(&q, "a b&c=d/é", "TagSpecification.1.Tag.%d.Value", 2);
    assert_int_equal(pp__aws_query_finish(&q), 0);
    assert_string_equal((char *)q.buf.data,
                        "Action=RunInstances&Version=2016-11-15&UserData=I2Nsb3VkLWNvbmZpZw%3D%3D&"
                        "TagSpecification.1.Tag.2.Value=a%20b%26c%3Dd%2F%C3%A9");
    pp__aws_query_free(&q);
    pp__aws_query_init(&q, "X", "1");
    pp__aws_query_add(&q, "k", NULL);
    pp__aws_query_add(&q, "later", "ignored");
    assert_int_equal(pp__aws_query_finish(&q), -EINVAL);
    pp__aws_query_free(&q);

    char a[65], b[65], c[65];
    assert_int_equal(pp__aws_client_token("node-1", "sandbox-1", a), 0);
    assert_int_equal(pp__aws_client_token("node-1", "sandbox-1", b), 0);
    assert_string_equal(a, b);
    assert_int_equal(strlen(a), 64);
    assert_int_equal(strspn(a, "0123456789abcdef"), 64);
    assert_int_equal(pp__aws_client_token("node-1", "sandbox-2", c), 0);
    assert_string_not_equal(a, c);
    /* The node and the sandbox id cannot trade bytes. */
    assert_int_equal(pp__aws_client_token("node-1s", "andbox-1", c), 0);
    assert_string_not_equal(a, c);
    assert_int_equal(pp__aws_client_token(NULL, "sandbox-1", c), 0);
    assert_string_not_equal(a, c);

    assert_true(pp__aws_instance_id_valid("i-0abcdef1234567890"));
    assert_true(pp__aws_instance_id_valid("i-1d48637b"));
    assert_false(pp__aws_instance_id_valid("i-0ABCDEF1234567890"));
    assert_false(pp__aws_instance_id_valid("i-0abcdef123456789"));
    assert_false(pp__aws_instance_id_valid("local-podvm-x"));
    assert_false(pp__aws_instance_id_valid(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_instances), cmocka_unit_test(test_terminate_types_images),
        cmocka_unit_test(test_errors),    cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
