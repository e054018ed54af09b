/* The GCP provider's pure parts: which machine series run which
 * confidential technology, label values, instance names, request ids, the
 * checks init makes across settings, the key from GCP_CREDENTIALS or the
 * file GOOGLE_APPLICATION_CREDENTIALS names, and the JWT (its RS256
 * signature verified with the key's public half). */
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
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "providers/gcp/gcp.h"
#include "providers/names.h"
#include "util/base64.h"

static void test_cvm_series(void **state)
{
    (void)state;
    enum pp__gcp_cvm t;
    assert_int_equal(pp__gcp_cvm_parse("SEV_SNP", &t), 0);
    assert_int_equal(t, PP_GCP_CVM_SEV_SNP);
    assert_int_equal(pp__gcp_cvm_parse("sev-snp", &t), -EINVAL);
    assert_true(pp__gcp_cvm_supported(PP_GCP_CVM_SEV_SNP, "n2d-standard-2"));
    assert_false(pp__gcp_cvm_supported(PP_GCP_CVM_SEV_SNP, "c2d-standard-2"));
    assert_true(pp__gcp_cvm_supported(PP_GCP_CVM_SEV, "c3d-standard-4"));
    assert_true(pp__gcp_cvm_supported(PP_GCP_CVM_TDX, "c3-standard-4"));
    assert_false(pp__gcp_cvm_supported(PP_GCP_CVM_TDX, "c3-highmem-4"));
    assert_true(pp__gcp_cvm_supported(PP_GCP_CVM_TDX, "a3-highgpu-1g"));
    assert_false(pp__gcp_cvm_supported(PP_GCP_CVM_TDX, "a3-highgpu-2g"));
    assert_false(pp__gcp_cvm_supported(PP_GCP_CVM_SEV, "e2-medium"));
    assert_false(pp__gcp_cvm_supported(PP_GCP_CVM_SEV, "n2d-"));
}

static void test_names(void **state)
{
    (void)state;
    char out[64];
    pp__gcp_label_value("node-a", out);
    assert_string_equal(out, "node-a");
    /* A node name with dots, and a 64-character sandbox id: abbreviated,
     * apart, within the rules. */
    pp__gcp_label_value("ip-10-0-0-1.ec2.internal", out);
    assert_int_equal(strspn(out, "abcdefghijklmnopqrstuvwxyz0123456789_-"), strlen(out));
    assert_memory_equal(out, "ip-10-0-0-1_ec2_internal-", 25);
    char a[64], b[64];
    pp__gcp_label_value("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", a);
    pp__gcp_label_value("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdee", b);
    assert_true(strlen(a) <= 63);
    assert_string_not_equal(a, b);

    assert_int_equal(pp_cloud_instance_name("podvm-nginx-0123abcd", out), 0);
    assert_string_equal(out, "podvm-nginx-0123abcd");
    assert_int_equal(pp_cloud_instance_name("podvm-test-steps-c-", out), 0);
    assert_true(pp_cloud_name_valid(out));
    assert_memory_equal(out, "podvm-test-steps-c-", 19);
    assert_int_equal(pp_cloud_instance_name("9Pod_X", out), 0);
    assert_true(pp_cloud_name_valid(out));
    assert_int_equal(pp_cloud_instance_name("", out), -EINVAL);
    assert_false(pp_cloud_name_valid("Podvm"));
    assert_false(pp_cloud_name_valid("podvm-"));
    assert_false(pp_cloud_name_valid("1podvm"));

    char r1[37], r2[37], r3[37];
    assert_int_equal(pp__gcp_request_id("instances.insert", "node-a", "sb1", r1), 0);
    assert_int_equal(pp__gcp_request_id("instances.insert", "node-a", "sb1", r2), 0);
    assert_int_equal(pp__gcp_request_id("instances.insert", "node-a", "sb2", r3), 0);
    assert_string_equal(r1, r2);
    assert_string_not_equal(r1, r3);
    assert_int_equal(strlen(r1), 36);
    assert_true(r1[8] == '-' && r1[13] == '-' && r1[14] == '8' && r1[18] == '-' && r1[23] == '-');
}

static void base_cfg(pp__gcp_config_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->project, sizeof(c->project), "proj-1");
    snprintf(c->zone, sizeof(c->zone), "us-central1-a");
    snprintf(c->network, sizeof(c->network), "default");
    snprintf(c->subnetwork, sizeof(c->subnetwork), "sub-a");
    snprintf(c->image, sizeof(c->image), "podvm-image");
    snprintf(c->machine_type, sizeof(c->machine_type), "n2d-standard-2");
    snprintf(c->confidential_type, sizeof(c->confidential_type), "SEV_SNP");
    snprintf(c->compute_endpoint, sizeof(c->compute_endpoint),
             "https://compute.googleapis.com/compute/v1/");
    snprintf(c->crm_endpoint, sizeof(c->crm_endpoint), "https://crm.example/v3");
    snprintf(c->metadata_host, sizeof(c->metadata_host), "metadata.google.internal");
}

static void test_derive(void **state)
{
    (void)state;
    pp__gcp_config_t c;
    pp__gcp_derived_t d;
    pp_error_t err;
    base_cfg(&c);
    assert_int_equal(pp__gcp_derive(&c, "node-a", &d, &err), 0);
    assert_string_equal(d.compute,
                        "https://compute.googleapis.com/compute/v1/projects/proj-1/zones/"
                        "us-central1-a/");
    assert_string_equal(d.crm, "https://crm.example/v3/");
    assert_string_equal(d.image, "projects/proj-1/global/images/podvm-image");
    assert_string_equal(d.network, "projects/proj-1/global/networks/default");
    assert_string_equal(d.subnetwork, "projects/proj-1/regions/us-central1/subnetworks/sub-a");
    assert_int_equal(d.cvm, PP_GCP_CVM_SEV_SNP);
    assert_null(d.key.pkey);
    pp__gcp_derived_free(&d);

    /* A type that cannot run the technology: refused, naming both. */
    base_cfg(&c);
    snprintf(c.machine_types, sizeof(c.machine_types), "n2d-standard-4, c3-standard-4");
    assert_int_equal(pp__gcp_derive(&c, "node-a", &d, &err), -EINVAL);
    assert_non_null(strstr(err.message, "`c3-standard-4`"));
    assert_non_null(strstr(err.message, "`SEV_SNP`"));
    pp__gcp_derived_free(&d);
    /* No technology named, with confidential VMs on. */
    base_cfg(&c);
    c.confidential_type[0] = '\0';
    assert_int_equal(pp__gcp_derive(&c, "node-a", &d, &err), -EINVAL);
    assert_non_null(strstr(err.message, "GCP_CONFIDENTIAL_TYPE"));
    pp__gcp_derived_free(&d);
    /* ... and off: any type. */
    c.disable_cvm = 1;
    snprintf(c.machine_type, sizeof(c.machine_type), "e2-medium");
    assert_int_equal(pp__gcp_derive(&c, "node-a", &d, &err), 0);
    assert_int_equal(d.cvm, PP_GCP_CVM_NONE);
    pp__gcp_derived_free(&d);
    /* Paths are taken as written; a bad TAGS item is named. */
    base_cfg(&c);
    snprintf(c.image, sizeof(c.image), "projects/other/global/images/family/podvm");
    snprintf(c.tags, sizeof(c.tags), "team=a,broken");
    assert_int_equal(pp__gcp_derive(&c, "node-a", &d, &err), -EINVAL);
    assert_non_null(strstr(err.message, "`broken`"));
    pp__gcp_derived_free(&d);
    snprintf(c.tags, sizeof(c.tags), "team=a");
    assert_int_equal(pp__gcp_derive(&c, "node-a", &d, &err), 0);
    assert_string_equal(d.image, "projects/other/global/images/family/podvm");
    assert_int_equal(d.ntags, 1);
    pp__gcp_derived_free(&d);
    /* A key that is no service-account key. */
    snprintf(c.credentials, sizeof(c.credentials), "{\"type\": \"authorized_user\"}");
    assert_int_equal(pp__gcp_derive(&c, "node-a", &d, &err), -EINVAL);
    assert_non_null(strstr(err.message, "GCP_CREDENTIALS"));
    pp__gcp_derived_free(&d);
}

static void b64url_to_std(const char *in, size_t len, char *out)
{
    size_t i;
    for (i = 0; i < len; i++)
        out[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    while (i % 4)
        out[i++] = '=';
    out[i] = '\0';
}

static void test_jwt(void **state)
{
    (void)state;
    EVP_PKEY *pk = EVP_RSA_gen(2048);
    assert_non_null(pk);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL), 1);
    char *pem;
    long pemlen = BIO_get_mem_data(bio, &pem);
    json_t *k = json_pack("{s:s, s:s, s:s, s:s#, s:s}", "type", "service_account", "client_email",
                          "sa@p.iam.gserviceaccount.com", "private_key_id", "kid1", "private_key",
                          pem, (int)pemlen, "token_uri", "https://oauth2.example/token");
    char *ks = json_dumps(k, 0);
    pp__gcp_key_t key;
    pp_error_t err;
    assert_int_equal(pp__gcp_parse_key(ks, strlen(ks), &key, &err), 0);
    char *jwt = NULL;
    assert_int_equal(pp__gcp_jwt(&key, PP_GCP_SCOPE, 1700000000, &jwt, &err), 0);
    /* header.claims.signature, the claims as Google's token endpoint wants them */
    char *dot1 = strchr(jwt, '.'), *dot2 = strrchr(jwt, '.');
    assert_true(dot1 != NULL && dot2 != dot1);
    char std[2048];
    pp_buf_t dec;
    b64url_to_std(dot1 + 1, (size_t)(dot2 - dot1 - 1), std);
    pp_buf_init(&dec, 0);
    assert_int_equal(pp_base64_decode(std, strlen(std), &dec), 0);
    json_t *claims = json_loadb((const char *)dec.data, dec.len, 0, NULL);
    assert_non_null(claims);
    assert_string_equal(json_string_value(json_object_get(claims, "iss")),
                        "sa@p.iam.gserviceaccount.com");
    assert_string_equal(json_string_value(json_object_get(claims, "aud")),
                        "https://oauth2.example/token");
    assert_string_equal(json_string_value(json_object_get(claims, "scope")), PP_GCP_SCOPE);
    assert_int_equal(json_integer_value(json_object_get(claims, "exp")), 1700003600);
    json_decref(claims);
    pp_buf_free(&dec);
    /* The signature verifies with the public key over header.claims. */
    b64url_to_std(dot2 + 1, strlen(dot2 + 1), std);
    pp_buf_init(&dec, 0);
    assert_int_equal(pp_base64_decode(std, strlen(std), &dec), 0);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk), 1);
    assert_int_equal(
        EVP_DigestVerify(md, dec.data, dec.len, (const unsigned char *)jwt, (size_t)(dot2 - jwt)),
        1);
    /* ... and not over anything else. */
    jwt[1] ^= 1;
    assert_int_not_equal(
        EVP_DigestVerify(md, dec.data, dec.len, (const unsigned char *)jwt, (size_t)(dot2 - jwt)),
        1);
    EVP_MD_CTX_free(md);
    pp_buf_free(&dec);
    free(jwt);
    free(ks);
    json_decref(k);
    pp__gcp_key_free(&key);
    BIO_free(bio);
    EVP_PKEY_free(pk);
}

/* Writes `text` to a new file under /tmp; its path in `path`. */
static void temp_file(char *path, size_t size, const char *text, size_t len)
{
    snprintf(path, size, "/tmp/pp-gcp-key-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* GOOGLE_APPLICATION_CREDENTIALS: a key file, read when GCP_CREDENTIALS is
 * unset (which, set, wins, as upstream's provider has it). */
static void test_key_file(void **state)
{
    (void)state;
    EVP_PKEY *pk = EVP_RSA_gen(2048);
    assert_non_null(pk);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL), 1);
    char *pem;
    long pemlen = BIO_get_mem_data(bio, &pem);
    json_t *k = json_pack("{s:s, s:s, s:s, s:s#, s:s}", "type", "service_account", "client_email",
                          "file@p.iam.gserviceaccount.com", "private_key_id", "kid2", "private_key",
                          pem, (int)pemlen, "token_uri", "https://oauth2.example/token");
    char *ks = json_dumps(k, JSON_INDENT(2));
    char good[64], user[64], big[64];
    temp_file(good, sizeof(good), ks, strlen(ks));
    const char *au = "{\"type\": \"authorized_user\", \"client_id\": \"x\"}\n";
    temp_file(user, sizeof(user), au, strlen(au));
    char *pad = malloc(PP_GCP_CREDENTIALS_MAX + 10);
    memset(pad, ' ', PP_GCP_CREDENTIALS_MAX + 10);
    memcpy(pad, ks, strlen(ks));
    temp_file(big, sizeof(big), pad, PP_GCP_CREDENTIALS_MAX + 10);

    pp__gcp_config_t c;
    pp__gcp_derived_t d;
    pp_error_t err;
    /* The file's key is the one used. */
    base_cfg(&c);
    snprintf(c.key_file, sizeof(c.key_file), "%s", good);
    assert_int_equal(pp__gcp_derive(&c, "node-a", &d, &err), 0);
    assert_non_null(d.key.pkey);
    assert_string_equal(d.key.client_email, "file@p.iam.gserviceaccount.com");
    assert_string_equal(d.key.key_id, "kid2");
    assert_int_equal(EVP_PKEY_eq(d.key.pkey, pk), 1);
    pp__gcp_derived_free(&d);
    /* GCP_CREDENTIALS, when set, is read instead. */
    snprintf(c.credentials, sizeof(c.credentials), "{\"type\": \"authorized_user\"}");
    assert_int_equal(pp__gcp_derive(&c, "node-a", &d, &err), -EINVAL);
    assert_non_null(strstr(err.message, "`GCP_CREDENTIALS`"));
    pp__gcp_derived_free(&d);
    /* A file that is not there, not a service-account key, or too large:
     * refused at start, naming the variable and the file. */
    base_cfg(&c);
    snprintf(c.key_file, sizeof(c.key_file), "%s.gone", good);
    assert_int_equal(pp__gcp_derive(&c, "node-a", &d, &err), -ENOENT);
    assert_non_null(strstr(err.message, "`GOOGLE_APPLICATION_CREDENTIALS`"));
    assert_non_null(strstr(err.message, ".gone"));
    pp__gcp_derived_free(&d);
    snprintf(c.key_file, sizeof(c.key_file), "%s", user);
    assert_int_equal(pp__gcp_derive(&c, "node-a", &d, &err), -EINVAL);
    assert_non_null(strstr(err.message, "`GOOGLE_APPLICATION_CREDENTIALS`"));
    assert_non_null(strstr(err.message, "service_account"));
    assert_null(d.key.pkey);
    pp__gcp_derived_free(&d);
    snprintf(c.key_file, sizeof(c.key_file), "%s", big);
    assert_int_equal(pp__gcp_derive(&c, "node-a", &d, &err), -EFBIG);
    assert_non_null(strstr(err.message, big));
    pp__gcp_derived_free(&d);

    unlink(good);
    unlink(user);
    unlink(big);
    free(pad);
    free(ks);
    json_decref(k);
    BIO_free(bio);
    EVP_PKEY_free(pk);
}

static void test_errors(void **state)
{
    (void)state;
    pp__gcp_error_class_t c;
    pp__gcp_error_classify("QUOTA_EXCEEDED", 403, &c);
    assert_int_equal(c.grpc, 8); /* RESOURCE_EXHAUSTED */
    pp__gcp_error_classify("ZONE_RESOURCE_POOL_EXHAUSTED", 503, &c);
    assert_int_equal(c.grpc, 8);
    pp__gcp_error_classify("rateLimitExceeded", 403, &c);
    assert_int_equal(c.retry, 1);
    const char *body = "{\"error\":{\"code\":403,\"message\":\"Rate Limit Exceeded\","
                       "\"errors\":[{\"reason\":\"rateLimitExceeded\"}]}}";
    pp_http_response_t r = {.status = 403, .body = body, .body_len = strlen(body)};
    assert_int_equal(pp__gcp_http_classify(&r, NULL), PP_HTTP_RETRY);
    const char *q = "{\"error\":{\"code\":403,\"message\":\"Quota\","
                    "\"errors\":[{\"reason\":\"quotaExceeded\"}]}}";
    r.body = q;
    r.body_len = strlen(q);
    assert_int_equal(pp__gcp_http_classify(&r, NULL), PP_HTTP_FINAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cvm_series), cmocka_unit_test(test_names),
        cmocka_unit_test(test_derive),     cmocka_unit_test(test_jwt),
        cmocka_unit_test(test_key_file),   cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
