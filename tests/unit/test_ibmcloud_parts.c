/* The ibmcloud provider's pure parts: profile names and the modes they run,
 * which image boots on which profile, tags and ids, the settings across
 * each other (endpoints, the region from the zone, the credentials), the
 * IAM token request (the compute resource token read anew each time), the
 * error table, and the readers fed the recorded answers of the fuzz corpus. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "providers/ibmcloud/ibmcloud.h"
#include "util/grpc_codes.h"

static void test_profile_names(void **state)
{
    (void)state;
    pp__ibm_profile_name_t pn;
    assert_int_equal(pp__ibm_profile_name("bx3dc-2x10", &pn), 0);
    assert_string_equal(pn.arch, "amd64");
    assert_true(pn.tdx);
    assert_false(pn.se);
    assert_int_equal(pp__ibm_profile_name("cx3dc-128x320", &pn), 0);
    assert_true(pn.tdx);
    /* Generation 2 and no `c`: no TDX. */
    assert_int_equal(pp__ibm_profile_name("bx2-2x8", &pn), 0);
    assert_false(pn.tdx);
    assert_int_equal(pp__ibm_profile_name("bx2d-4x16", &pn), 0);
    assert_false(pn.tdx);
    assert_int_equal(pp__ibm_profile_name("gx3-16x80x1l4", &pn), 0);
    assert_false(pn.tdx);
    assert_int_equal(pp__ibm_profile_name("bz2e-2x8", &pn), 0);
    assert_string_equal(pn.arch, "s390x");
    assert_true(pn.se);
    assert_int_equal(pp__ibm_profile_name("mz2e-16x128", &pn), 0);
    assert_true(pn.se);
    assert_int_equal(pp__ibm_profile_name("bz2-2x8", &pn), 0);
    assert_false(pn.se);
    assert_int_equal(pp__ibm_profile_name("bx3dc", &pn), -EINVAL);
    assert_int_equal(pp__ibm_profile_name("x-2x8", &pn), -EINVAL);
    assert_int_equal(pp__ibm_profile_name("bq2-2x8", &pn), -EINVAL);

    pp_error_t err;
    assert_int_equal(pp__ibm_profile_fits("S", "bx3dc-2x10", PP_IBM_TDX, &err), 0);
    assert_int_equal(pp__ibm_profile_fits("S", "bx2-2x8", PP_IBM_TDX, &err), -EINVAL);
    assert_int_equal(pp_error_grpc_status(&err), PP_GRPC_FAILED_PRECONDITION);
    assert_int_equal(pp__ibm_profile_fits("S", "bz2e-2x8", PP_IBM_SE, &err), 0);
    assert_int_equal(pp__ibm_profile_fits("S", "bz2-2x8", PP_IBM_SE, &err), -EINVAL);
    assert_int_equal(pp__ibm_profile_fits("S", "bz2e-2x8", PP_IBM_PLAIN, &err), -EINVAL);
    assert_int_equal(pp__ibm_profile_fits("S", "bx3dc-2x10", PP_IBM_PLAIN, &err), 0);
    /* A name outside the rule cannot be checked for a confidential mode. */
    assert_int_equal(pp__ibm_profile_fits("S", "custom", PP_IBM_PLAIN, &err), 0);
    assert_int_equal(pp__ibm_profile_fits("S", "custom", PP_IBM_TDX, &err), -EINVAL);
}

static void test_images(void **state)
{
    (void)state;
    pp__ibm_image_t imgs[3] = {
        {.id = "img-amd64", .arch = "amd64", .os = "ubuntu-24-04-amd64"},
        {.id = "img-s390x", .arch = "s390x", .os = "ubuntu-24-04-s390x"},
        {.id = "img-se", .arch = "s390x", .os = "hyper-protect-1-0-s390x", .se = 1},
    };
    pp__ibm_catalog_t cat = {.images = imgs, .nimages = 3};
    pp__ibm_profile_t tdx = {.spec = {.name = "bx3dc-2x10"}, .arch = "amd64"};
    pp__ibm_profile_t se = {.spec = {.name = "bz2e-2x8"}, .arch = "s390x"};
    pp__ibm_profile_t z = {.spec = {.name = "bz2-2x8"}, .arch = "s390x"};
    pp_error_t err;
    assert_string_equal(pp__ibm_select_image(&cat, &tdx, PP_IBM_TDX, &err)->id, "img-amd64");
    assert_string_equal(pp__ibm_select_image(&cat, &se, PP_IBM_SE, &err)->id, "img-se");
    assert_string_equal(pp__ibm_select_image(&cat, &z, PP_IBM_PLAIN, &err)->id, "img-s390x");
    cat.nimages = 1;
    assert_null(pp__ibm_select_image(&cat, &se, PP_IBM_SE, &err));
    assert_non_null(strstr(err.message, "Secure Execution"));
    assert_int_equal(pp__ibm_image_fits(&imgs[2], &z, PP_IBM_PLAIN, &err), -EINVAL);
    assert_int_equal(pp__ibm_image_fits(&imgs[0], &se, PP_IBM_SE, &err), -EINVAL);
}

static void test_tags_and_ids(void **state)
{
    (void)state;
    char t[PP_IBM_TAG_MAX + 1];
    pp__ibm_node_tag("worker-1.example.com", t);
    assert_string_equal(t, "peerpod-node:worker-1.example.com");
    char longname[200];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    pp__ibm_node_tag(longname, t);
    assert_int_equal(strncmp(t, "peerpod-node:sha256-", 20), 0);
    assert_int_equal(strlen(t), 20 + 32);
    pp__ibm_node_tag("Node_A", t); /* tags are kept lowercase: a hash instead */
    assert_int_equal(strncmp(t, "peerpod-node:sha256-", 20), 0);
    assert_true(pp__ibm_sandbox_storable("3f1e0c9a7b2d4e6f8a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f3a5b"
                                         "7c9d1e3f"));
    assert_false(pp__ibm_sandbox_storable("Upper"));
    assert_false(pp__ibm_sandbox_storable(""));
    assert_true(pp__ibm_instance_id_valid("0717_e21b7391-2ca2-4ab5-84a8-b92157a633b0"));
    assert_false(pp__ibm_instance_id_valid("0717_e21b7391-2ca2-4ab5-84a8-b92157a633b"));
    assert_false(pp__ibm_instance_id_valid("i-0123456789abcdef0"));
    assert_false(pp__ibm_instance_id_valid("0717_E21B7391-2CA2-4AB5-84A8-B92157A633B0"));
}

static void base_config(pp__ibm_config_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->api_key, sizeof(c->api_key), "key");
    snprintf(c->iam_url, sizeof(c->iam_url), "https://iam.cloud.ibm.com");
    snprintf(c->tagging_url, sizeof(c->tagging_url),
             "https://tags.global-search-tagging.cloud.ibm.com/");
    snprintf(c->zone, sizeof(c->zone), "eu-de-2");
    snprintf(c->profile, sizeof(c->profile), "bx3dc-2x10");
    snprintf(c->images, sizeof(c->images), "r006-a, r006-b");
    snprintf(c->tags, sizeof(c->tags), "team:peer-pods");
    snprintf(c->cluster_id, sizeof(c->cluster_id), "cq0abc");
}

static void test_derive(void **state)
{
    (void)state;
    pp__ibm_config_t c;
    pp__ibm_derived_t d;
    pp_error_t err;
    base_config(&c);
    assert_int_equal(pp__ibm_derive(&c, "node-a", &d, &err), 0);
    /* As IBM's SDK canonicalises it: the token path is added. */
    assert_string_equal(d.iam, "https://iam.cloud.ibm.com/identity/token");
    assert_string_equal(d.vpc, "https://eu-de.iaas.cloud.ibm.com/v1");
    assert_string_equal(d.tagging, "https://tags.global-search-tagging.cloud.ibm.com");
    assert_int_equal(d.nimages, 2);
    assert_string_equal(d.images[1], "r006-b");
    assert_int_equal(d.ntags, 2);
    assert_string_equal(d.tags[0], "coco-pod-vm:cq0abc");
    assert_string_equal(d.node_tag, "peerpod-node:node-a");
    pp__ibm_derived_free(&d);

    snprintf(c.iam_url, sizeof(c.iam_url), "https://iam.test.cloud.ibm.com/identity/token/");
    assert_int_equal(pp__ibm_derive(&c, "node-a", &d, &err), 0);
    assert_string_equal(d.iam, "https://iam.test.cloud.ibm.com/identity/token");
    pp__ibm_derived_free(&d);

    base_config(&c);
    c.api_key[0] = '\0';
    assert_int_equal(pp__ibm_derive(&c, "node-a", &d, &err), -EINVAL);
    assert_non_null(strstr(err.message, "IBMCLOUD_IAM_PROFILE_ID"));
    pp__ibm_derived_free(&d);

    base_config(&c);
    snprintf(c.secondary_subnet, sizeof(c.secondary_subnet), "0717-s2");
    assert_int_equal(pp__ibm_derive(&c, "node-a", &d, &err), -EINVAL);
    assert_non_null(strstr(err.message, "-secondary-security-group-id"));
    pp__ibm_derived_free(&d);

    base_config(&c);
    snprintf(c.tags, sizeof(c.tags), "ok, not/a/tag");
    assert_int_equal(pp__ibm_derive(&c, "node-a", &d, &err), -EINVAL);
    assert_non_null(strstr(err.message, "`TAGS`"));
    pp__ibm_derived_free(&d);

    base_config(&c);
    snprintf(c.vpc_url, sizeof(c.vpc_url), "ftp://x");
    assert_int_equal(pp__ibm_derive(&c, "node-a", &d, &err), -EINVAL);
    pp__ibm_derived_free(&d);
}

static void test_token_form(void **state)
{
    (void)state;
    pp__ibm_config_t c;
    base_config(&c);
    snprintf(c.api_key, sizeof(c.api_key), "a key/with+chars");
    char *form = NULL;
    pp_error_t err;
    assert_int_equal(pp__ibm_token_form(&c, &form, &err), 0);
    assert_string_equal(form, "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey"
                              "&apikey=a%20key%2Fwith%2Bchars");
    free(form);

    /* The trusted profile: the token file is read at every exchange. */
    char path[] = "/tmp/pp-test-cr-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "first-token\n", 12), 12);
    close(fd);
    c.api_key[0] = '\0';
    snprintf(c.iam_profile_id, sizeof(c.iam_profile_id), "Profile-1");
    snprintf(c.cr_token_file, sizeof(c.cr_token_file), "%s", path);
    assert_int_equal(pp__ibm_token_form(&c, &form, &err), 0);
    assert_string_equal(form, "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Acr-token"
                              "&cr_token=first-token&profile_id=Profile-1");
    free(form);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(write(fd, "second-token", 12), 12);
    close(fd);
    assert_int_equal(pp__ibm_token_form(&c, &form, &err), 0);
    assert_non_null(strstr(form, "cr_token=second-token&"));
    free(form);
    fd = open(path, O_WRONLY | O_TRUNC);
    close(fd);
    assert_int_equal(pp__ibm_token_form(&c, &form, &err), -EINVAL);
    assert_non_null(strstr(err.message, "empty"));
    unlink(path);
    assert_int_equal(pp__ibm_token_form(&c, &form, &err), -ENOENT);
}

static void test_errors(void **state)
{
    (void)state;
    pp_http_error_class_t c;
    pp__ibm_error_classify("over_quota", 400, &c);
    assert_int_equal(c.grpc, PP_GRPC_RESOURCE_EXHAUSTED);
    pp__ibm_error_classify("cannot_start_capacity", 0, &c);
    assert_int_equal(c.grpc, PP_GRPC_RESOURCE_EXHAUSTED);
    pp__ibm_error_classify("rate_limit_exceeded", 429, &c);
    assert_int_equal(c.retry, PP_HTTP_ERR_RETRY);
    pp__ibm_error_classify("not_found", 404, &c);
    assert_int_equal(c.err, -ENOENT);
    pp__ibm_error_classify("instance_delete_conflict", 409, &c);
    assert_int_equal(c.err, -EBUSY);
    pp__ibm_error_classify("something_new", 502, &c);
    assert_int_equal(c.grpc, PP_GRPC_UNAVAILABLE);
    assert_true(pp__ibm_code_name_taken("validation_unique_failed"));
    assert_false(pp__ibm_code_name_taken("not_found"));
    const char *q = "{\"errors\":[{\"code\":\"over_quota\",\"message\":\"quota\"}]}";
    pp_http_response_t r = {.status = 400, .body = q, .body_len = strlen(q)};
    assert_int_equal(pp__ibm_http_classify(&r, NULL), PP_HTTP_FINAL);
    const char *t = "{\"errors\":[{\"code\":\"internal_error\",\"message\":\"x\"}]}";
    r.body = t;
    r.body_len = strlen(t);
    r.status = 500;
    assert_int_equal(pp__ibm_http_classify(&r, NULL), PP_HTTP_RETRY);
}

static char *corpus(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", IBM_CORPUS_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    *len = fread(buf, 1, 65535, f);
    fclose(f);
    return buf;
}

static void test_readers(void **state)
{
    (void)state;
    size_t len;
    char *b = corpus("instance.json", &len);
    pp__ibm_instance_t in;
    assert_int_equal(pp__ibm_parse_instance(b, len, &in), 0);
    assert_string_equal(in.id, "0717_e21b7391-2ca2-4ab5-84a8-b92157a633b0");
    assert_int_equal(in.nnics, 2); /* the primary once, then the second */
    assert_string_equal(in.nics[0].address, "10.240.0.7");
    assert_string_equal(in.nics[1].address, "10.240.64.5");
    assert_string_equal(in.volume_id, "r006-5f4e3d2c-1b0a-4987-8654-3210fedcba98");
    free(b);
    b = corpus("instance_failed.json", &len);
    assert_int_equal(pp__ibm_parse_instance(b, len, &in), 0);
    assert_string_equal(in.status, "failed");
    assert_string_equal(in.reason_code, "cannot_start_capacity");
    free(b);
    b = corpus("instances.json", &len);
    pp__ibm_instances_t l;
    assert_int_equal(pp__ibm_parse_instances(b, len, &l), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.next_start, "s100");
    pp__ibm_instances_free(&l);
    free(b);
    b = corpus("nics.json", &len);
    assert_int_equal(pp__ibm_parse_nics(b, len, &in), 0);
    assert_int_equal(in.nics[0].nfips, 1);
    assert_string_equal(in.nics[0].fip_address[0], "169.63.0.7");
    free(b);
    b = corpus("profile.json", &len);
    pp__ibm_profile_t pr;
    assert_int_equal(pp__ibm_parse_profile(b, len, &pr), 0);
    assert_int_equal(pr.spec.memory_mib, 10 * 1024);
    assert_true(pr.modes_listed && pr.tdx);
    free(b);
    b = corpus("profile_s390x.json", &len);
    assert_int_equal(pp__ibm_parse_profile(b, len, &pr), 0);
    assert_string_equal(pr.arch, "s390x");
    assert_false(pr.modes_listed); /* IBM's known issue */
    free(b);
    b = corpus("image_se.json", &len);
    pp__ibm_image_t img;
    assert_int_equal(pp__ibm_parse_image(b, len, &img), 0);
    assert_true(img.se);
    free(b);
    b = corpus("volume.json", &len);
    pp__ibm_owner_t o;
    assert_int_equal(pp__ibm_parse_volume_owner(b, len, &o), 0);
    assert_string_equal(o.node_tag, "peerpod-node:worker-1.example.com");
    assert_int_equal(strlen(o.sandbox), 64);
    free(b);
    b = corpus("tag_results.json", &len);
    char msg[128];
    assert_int_equal(pp__ibm_parse_tag_results(b, len, msg, sizeof(msg)), -EIO);
    assert_string_equal(msg, "Tagging failed: internal error");
    free(b);
    b = corpus("token.json", &len);
    pp__ibm_token_t tok;
    assert_int_equal(pp__ibm_parse_token(b, len, &tok), 0);
    assert_int_equal(tok.expires_in, 3600);
    pp__ibm_token_free(&tok);
    free(b);
    b = corpus("truncated.json", &len);
    assert_int_equal(pp__ibm_parse_instances(b, len, &l), -EBADMSG);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_profile_names), cmocka_unit_test(test_images),
        cmocka_unit_test(test_tags_and_ids),  cmocka_unit_test(test_derive),
        cmocka_unit_test(test_token_form),    cmocka_unit_test(test_errors),
        cmocka_unit_test(test_readers),
    };
    return cmocka_run_group_tests_name("ibmcloud parts", tests, NULL, NULL);
}
