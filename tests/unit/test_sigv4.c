/* SigV4 checked two ways.
 *
 * 1. Cases of AWS's published SigV4 test suite, their inputs and expected
 *    results written below as data: every case is signed and its signature
 *    and Authorization header compared; for some the canonical request and
 *    string to sign too. All share one context: the example credentials,
 *    us-east-1, service "service", 2015-08-30T12:36:00Z.
 * 2. Generated requests (reserved and non-ASCII path bytes, dot segments,
 *    repeated and percent-encoded query keys, repeated headers with runs of
 *    blanks, binary bodies, session tokens, the S3 variant) signed by us and
 *    by botocore (sigv4_botocore.py under /usr/bin/python3) and the
 *    Authorization headers compared. Skipped when botocore is not importable.
 *    SIGV4_SEED=<n> in the environment replays one run. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "providers/aws/sigv4.h"
#include "util/buf.h"

#ifndef SIGV4_BOTOCORE_SCRIPT
#error "SIGV4_BOTOCORE_SCRIPT must name the reference signer script"
#endif

#define SUITE_ACCESS_KEY "AKIDEXAMPLE"
#define SUITE_SECRET_KEY "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_TOKEN                                                                                \
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfp"   \
    "SPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQ"   \
    "DYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+"    \
    "scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
#define SUITE_TOKEN_SHORT "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
#define SUITE_SCOPE       "20150830/us-east-1/service/aws4_request"
#define SUITE_WHEN        ((time_t)1440938160) /* 2015-08-30T12:36:00Z */

typedef struct vector_s {
    const char *name;
    const char *method;
    const char *path;
    const char *query;            /* NULL = none */
    pp_sigv4_header_t headers[6]; /* in request order, up to the first NULL name */
    const char *body;
    unsigned flags;    /* PP_SIGV4_* */
    const char *token; /* NULL = none */
    const char *signed_headers;
    const char *signature;
    const char *canonical_request; /* NULL = not checked */
    const char *string_to_sign;    /* NULL = not checked */
} vector_t;

/* clang-format off */
static const vector_t vectors[] = {
    {"get-header-key-duplicate", "GET", "/", NULL, {{"Host", "example.amazonaws.com"}, {"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}}, "", 0, NULL,
     "host;my-header1;x-amz-date",
     "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea", NULL, NULL},
    {"get-header-value-multiline", "GET", "/", NULL, {{"Host", "example.amazonaws.com"}, {"My-Header1", "value1\n  value2\n     value3"}}, "", 0, NULL,
     "host;my-header1;x-amz-date",
     "cfd34249e4b1c8d6b91ef74165d41a32e5fab3306300901bb65a51a73575eefd", NULL, NULL},
    {"get-header-value-order", "GET", "/", NULL, {{"Host", "example.amazonaws.com"}, {"My-Header1", "value4"}, {"My-Header1", "value1"}, {"My-Header1", "value3"}, {"My-Header1", "value2"}}, "", 0, NULL,
     "host;my-header1;x-amz-date",
     "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01", NULL, NULL},
    {"get-header-value-trim", "GET", "/", NULL, {{"Host", "example.amazonaws.com"}, {"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}}, "", 0, NULL,
     "host;my-header1;my-header2;x-amz-date",
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
     "GET\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "my-header1:value1\n"
     "my-header2:\"a b c\"\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;my-header1;my-header2;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n"
     "20150830T123600Z\n"
     "20150830/us-east-1/service/aws4_request\n"
     "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7"},
    {"get-relative-normalized", "GET", "/example/..", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31", NULL, NULL},
    {"get-relative-relative-normalized", "GET", "/example1/example2/../..", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31", NULL, NULL},
    {"get-relative-relative-unnormalized", "GET", "/example1/example2/../..", NULL, {{"Host", "example.amazonaws.com"}}, "", PP_SIGV4_NO_NORMALIZE, NULL,
     "host;x-amz-date",
     "dc33e0856fd4baca4d7aa2146c38958283844764f38c74252a333df5e613003b", NULL, NULL},
    {"get-relative-unnormalized", "GET", "/example/..", NULL, {{"Host", "example.amazonaws.com"}}, "", PP_SIGV4_NO_NORMALIZE, NULL,
     "host;x-amz-date",
     "eca7ead57bb5aa5c8e28007acd4ff04e1ff9a0ff3b237ec1554a184887ff9282", NULL, NULL},
    {"get-slash-dot-slash-normalized", "GET", "/./", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31", NULL, NULL},
    {"get-slash-dot-slash-unnormalized", "GET", "/./", NULL, {{"Host", "example.amazonaws.com"}}, "", PP_SIGV4_NO_NORMALIZE, NULL,
     "host;x-amz-date",
     "68714168e6557f8f2de0ef956fc24dc2593a4bd2961f8df51898d8a134695145", NULL, NULL},
    {"get-slash-normalized", "GET", "//", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31", NULL, NULL},
    {"get-slash-pointless-dot-normalized", "GET", "/./example", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5", NULL, NULL},
    {"get-slash-pointless-dot-unnormalized", "GET", "/./example", NULL, {{"Host", "example.amazonaws.com"}}, "", PP_SIGV4_NO_NORMALIZE, NULL,
     "host;x-amz-date",
     "beb03f223f7deae4146464f06e29eebbee9c8afbe15c290cf07aa8b119e14cff", NULL, NULL},
    {"get-slash-unnormalized", "GET", "//", NULL, {{"Host", "example.amazonaws.com"}}, "", PP_SIGV4_NO_NORMALIZE, NULL,
     "host;x-amz-date",
     "c88bcd3d312d75078c0cd961d6deae3f4c754924b01669efcfcb439fd5e5b76e", NULL, NULL},
    {"get-slashes-normalized", "GET", "//example//", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84", NULL, NULL},
    {"get-slashes-unnormalized", "GET", "//example//", NULL, {{"Host", "example.amazonaws.com"}}, "", PP_SIGV4_NO_NORMALIZE, NULL,
     "host;x-amz-date",
     "87cca117541a147f6df867677d98a7d80dff226d2bfca9e4ffa899665623c7e5", NULL, NULL},
    {"get-space-normalized", "GET", "/example space/", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741", NULL, NULL},
    {"get-space-unnormalized", "GET", "/example space/", NULL, {{"Host", "example.amazonaws.com"}}, "", PP_SIGV4_NO_NORMALIZE, NULL,
     "host;x-amz-date",
     "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741", NULL, NULL},
    {"get-unreserved", "GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f", NULL, NULL},
    {"get-utf8", "GET", "/\341\210\264", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
     "GET\n"
     "/%E1%88%B4\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n"
     "20150830T123600Z\n"
     "20150830/us-east-1/service/aws4_request\n"
     "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102"},
    {"get-vanilla", "GET", "/", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
     "GET\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "host;x-amz-date\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n"
     "20150830T123600Z\n"
     "20150830/us-east-1/service/aws4_request\n"
     "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"},
    {"get-vanilla-empty-query-key", "GET", "/", "Param1=value1", {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb", NULL, NULL},
    {"get-vanilla-query", "GET", "/", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31", NULL, NULL},
    {"get-vanilla-query-order-encoded", "GET", "/", "Param-3=Value3&Param=Value2&%E1%88%B4=Value1", {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac", NULL, NULL},
    {"get-vanilla-query-order-key-case", "GET", "/", "Param2=value2&Param1=value1", {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500", NULL, NULL},
    {"get-vanilla-query-unreserved", "GET", "/", "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197", NULL, NULL},
    {"get-vanilla-utf8-query", "GET", "/", "\341\210\264=bar", {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04", NULL, NULL},
    {"get-vanilla-with-session-token", "GET", "/", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, SUITE_TOKEN_SHORT,
     "host;x-amz-date;x-amz-security-token",
     "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8", NULL, NULL},
    {"post-header-key-case", "POST", "/", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b", NULL, NULL},
    {"post-header-key-sort", "POST", "/", NULL, {{"Host", "example.amazonaws.com"}, {"My-Header1", "value1"}}, "", 0, NULL,
     "host;my-header1;x-amz-date",
     "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c", NULL, NULL},
    {"post-header-value-case", "POST", "/", NULL, {{"Host", "example.amazonaws.com"}, {"My-Header1", "VALUE1"}}, "", 0, NULL,
     "host;my-header1;x-amz-date",
     "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d", NULL, NULL},
    {"post-sts-header-after", "POST", "/", NULL, {{"Host", "example.amazonaws.com"}}, "", PP_SIGV4_TOKEN_UNSIGNED, SUITE_TOKEN,
     "host;x-amz-date",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b", NULL, NULL},
    {"post-sts-header-before", "POST", "/", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, SUITE_TOKEN,
     "host;x-amz-date;x-amz-security-token",
     "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
     "POST\n"
     "/\n"
     "\n"
     "host:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n"
     "x-amz-security-token:" SUITE_TOKEN "\n"
     "\n"
     "host;x-amz-date;x-amz-security-token\n"
     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
     "AWS4-HMAC-SHA256\n"
     "20150830T123600Z\n"
     "20150830/us-east-1/service/aws4_request\n"
     "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6"},
    {"post-vanilla", "POST", "/", NULL, {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b", NULL, NULL},
    {"post-vanilla-empty-query-value", "POST", "/", "Param1=value1", {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11", NULL, NULL},
    {"post-vanilla-query", "POST", "/", "Param1=value1", {{"Host", "example.amazonaws.com"}}, "", 0, NULL,
     "host;x-amz-date",
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11", NULL, NULL},
    {"post-x-www-form-urlencoded", "POST", "/", NULL, {{"Content-Type", "application/x-www-form-urlencoded"}, {"Host", "example.amazonaws.com"}, {"Content-Length", "13"}}, "Param1=value1", PP_SIGV4_CONTENT_SHA256, NULL,
     "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
     "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
     "POST\n"
     "/\n"
     "\n"
     "content-length:13\n"
     "content-type:application/x-www-form-urlencoded\n"
     "host:example.amazonaws.com\n"
     "x-amz-content-sha256:9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e\n"
     "x-amz-date:20150830T123600Z\n"
     "\n"
     "content-length;content-type;host;x-amz-content-sha256;x-amz-date\n"
     "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
     "AWS4-HMAC-SHA256\n"
     "20150830T123600Z\n"
     "20150830/us-east-1/service/aws4_request\n"
     "b1edd1d03544c25390e32085d55b57acc9a3961bb59415ff86c45c3d89d16cfb"},
    {"post-x-www-form-urlencoded-parameters", "POST", "/", NULL, {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}, {"Host", "example.amazonaws.com"}, {"Content-Length", "13"}}, "Param1=value1", PP_SIGV4_CONTENT_SHA256, NULL,
     "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
     "328d1b9eaadca9f5818ef05e8392801e091653bafec24fcab71e7344e7f51422", NULL, NULL},

};
/* clang-format on */

static int check_vector(const vector_t *v)
{
    size_t n = 0;
    while (n < sizeof(v->headers) / sizeof(v->headers[0]) && v->headers[n].name != NULL)
        n++;
    pp_sigv4_input_t in = {
        .method = v->method,
        .path = v->path,
        .query = v->query,
        .headers = v->headers,
        .nheaders = n,
        .body = v->body,
        .body_len = strlen(v->body),
        .region = "us-east-1",
        .service = "service",
        .when = SUITE_WHEN,
        .access_key = SUITE_ACCESS_KEY,
        .secret_key = SUITE_SECRET_KEY,
        .session_token = v->token,
        .flags = v->flags,
    };
    pp_sigv4_output_t out;
    pp_error_t err = {0};
    if (pp_sigv4_sign(&in, &out, &err) < 0) {
        print_error("%s: %s\n", v->name, err.message);
        return 1;
    }
    int bad = 0;
    if (strcmp(out.signature, v->signature) != 0) {
        print_error("%s: signature %s, want %s\n", v->name, out.signature, v->signature);
        bad = 1;
    }
    char auth[512];
    snprintf(auth, sizeof(auth),
             "AWS4-HMAC-SHA256 Credential=" SUITE_ACCESS_KEY "/" SUITE_SCOPE
             ", SignedHeaders=%s, Signature=%s",
             v->signed_headers, v->signature);
    if (strcmp(out.authorization, auth) != 0) {
        print_error("%s: authorization\n got %s\nwant %s\n", v->name, out.authorization, auth);
        bad = 1;
    }
    if (v->canonical_request != NULL && strcmp(out.canonical_request, v->canonical_request) != 0) {
        print_error("%s: canonical request\n--- got\n%s\n--- want\n%s\n", v->name,
                    out.canonical_request, v->canonical_request);
        bad = 1;
    }
    if (v->string_to_sign != NULL && strcmp(out.string_to_sign, v->string_to_sign) != 0) {
        print_error("%s: string to sign\n--- got\n%s\n--- want\n%s\n", v->name, out.string_to_sign,
                    v->string_to_sign);
        bad = 1;
    }
    if (strcmp(out.amz_date, "20150830T123600Z") != 0) {
        print_error("%s: x-amz-date %s\n", v->name, out.amz_date);
        bad = 1;
    }
    pp_sigv4_output_free(&out);
    return bad;
}

static void test_vectors(void **state)
{
    (void)state;
    size_t count = sizeof(vectors) / sizeof(vectors[0]);
    int failed = 0;
    for (size_t i = 0; i < count; i++)
        failed += check_vector(&vectors[i]);
    print_message("sigv4 vectors: %zu cases, %d failed\n", count, failed);
    assert_int_equal(failed, 0);
}

/* ---- Cross-check against botocore ---- */

#define XCHECK_COUNT 200

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static size_t rng_below(uint64_t *s, size_t n)
{
    return (size_t)(rng_next(s) % n);
}

#define PICK(s, arr) ((arr)[rng_below((s), sizeof(arr) / sizeof((arr)[0]))])

/* Bits of path segments and query keys/values: unreserved, reserved, '%'
 * (as data, and looking like an escape), space and multi-byte UTF-8. */
static const char *const text_bits[] = {
    "a",
    "Zz",
    "0-9",
    "_.~",
    "x y",
    "%",
    "%41",
    "!$&'()*+,;=:@",
    "\xc3\xa9",
    "\xe1\x88\xb4",
    "\xf0\x9f\x98\x80",
    "[]",
    "\"<>^`{|}\\",
    "Action",
    "v1.0",
    "-",
};
static const char *const query_keys[] = {
    "a", "A", "b", "Action", "Version", "k\xc3\xa9", "x y", "a&b=c", "~-._", "%",
};
static const char *const header_names[] = {
    "X-Test", "x-test", "My-Header", "Content-Type", "X-Amz-Meta-A", "zeta", "Accept",
};
static const char *const header_words[] = {
    "a", "b c", "value", "\"q\"", "x=y;z", "t/1.0", "application/json", "UPPER", "1",
};
static const char *const hosts[] = {
    "example.amazonaws.com",
    "ec2.eu-west-1.amazonaws.com",
    "h.test:8443",
};
static const char *const regions[] = {"us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1"};
static const char *const services[] = {"ec2", "sts", "execute-api", "service", "iam"};
static const char *const methods[] = {"GET", "POST", "PUT", "DELETE"};
static const char key_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char secret_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";

typedef struct xreq_s {
    const char *method;
    pp_buf_t path;
    pp_buf_t query; /* as sent: percent-encoded our own way */
    json_t *qpairs; /* the same, decoded, for botocore */
    size_t nh;
    pp_sigv4_header_t headers[6];
    pp_buf_t hvals[6];
    unsigned char body[48];
    size_t body_len;
    const char *region, *service;
    time_t when;
    char access_key[21], secret_key[41], token[81];
    int s3;
} xreq_t;

static void cstr_finish(pp_buf_t *b)
{
    assert_int_equal(pp_buf_append_byte(b, 0), 0);
}

static void append_text(uint64_t *s, pp_buf_t *b, int bits)
{
    for (int i = 0; i < bits; i++) {
        const char *t = PICK(s, text_bits);
        assert_int_equal(pp_buf_append(b, t, strlen(t)), 0);
    }
}

/* Percent-encodes for the query as a client might send it: every byte
 * outside the unreserved set, and some inside it, with either hex case. */
static void encode_query_part(uint64_t *s, pp_buf_t *b, const char *t)
{
    for (const unsigned char *p = (const unsigned char *)t; *p != '\0'; p++) {
        int unreserved = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                         (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
                         *p == '~';
        if (unreserved && rng_below(s, 4) != 0)
            assert_int_equal(pp_buf_append_byte(b, *p), 0);
        else
            assert_int_equal(pp_buf_printf(b, rng_below(s, 2) ? "%%%02X" : "%%%02x", *p), 0);
    }
}

static void random_chars(uint64_t *s, char *out, size_t n, const char *set)
{
    size_t k = strlen(set);
    for (size_t i = 0; i < n; i++)
        out[i] = set[rng_below(s, k)];
    out[n] = '\0';
}

static void make_request(uint64_t *s, xreq_t *r)
{
    memset(r, 0, sizeof(*r));
    r->method = PICK(s, methods);
    r->s3 = rng_below(s, 4) == 0;

    pp_buf_init(&r->path, 0);
    size_t segs = rng_below(s, 5);
    if (segs == 0)
        assert_int_equal(pp_buf_append_byte(&r->path, '/'), 0);
    for (size_t i = 0; i < segs; i++) {
        assert_int_equal(pp_buf_append_byte(&r->path, '/'), 0);
        size_t kind = rng_below(s, 10);
        if (kind == 0)
            assert_int_equal(pp_buf_append(&r->path, ".", 1), 0);
        else if (kind == 1)
            assert_int_equal(pp_buf_append(&r->path, "..", 2), 0);
        else if (kind == 2)
            ; /* an empty segment: "//" */
        else
            append_text(s, &r->path, 1 + (int)rng_below(s, 3));
    }
    if (segs > 0 && rng_below(s, 3) == 0)
        assert_int_equal(pp_buf_append_byte(&r->path, '/'), 0);
    cstr_finish(&r->path);

    pp_buf_init(&r->query, 0);
    r->qpairs = json_array();
    size_t nq = rng_below(s, 5);
    for (size_t i = 0; i < nq; i++) {
        const char *key = PICK(s, query_keys);
        pp_buf_t val;
        pp_buf_init(&val, 0);
        append_text(s, &val, (int)rng_below(s, 3));
        cstr_finish(&val);
        const char *v = (const char *)val.data;
        if (i > 0)
            assert_int_equal(pp_buf_append_byte(&r->query, '&'), 0);
        encode_query_part(s, &r->query, key);
        if (v[0] != '\0' || rng_below(s, 2) == 0) {
            assert_int_equal(pp_buf_append_byte(&r->query, '='), 0);
            encode_query_part(s, &r->query, v);
        }
        json_array_append_new(r->qpairs, json_pack("[ss]", key, v));
        pp_buf_free(&val);
    }
    cstr_finish(&r->query);

    r->headers[0] = (pp_sigv4_header_t){"Host", PICK(s, hosts)};
    r->nh = 1 + rng_below(s, 5);
    for (size_t i = 1; i < r->nh; i++) {
        pp_buf_t *b = &r->hvals[i];
        pp_buf_init(b, 0);
        size_t words = rng_below(s, 4);
        for (size_t w = 0; w < words + 1; w++) {
            size_t blanks = w == 0 || w == words ? rng_below(s, 3) : 1 + rng_below(s, 3);
            for (size_t k = 0; k < blanks; k++)
                assert_int_equal(pp_buf_append_byte(b, ' '), 0);
            if (w < words) {
                const char *t = PICK(s, header_words);
                assert_int_equal(pp_buf_append(b, t, strlen(t)), 0);
            }
        }
        cstr_finish(b);
        r->headers[i] = (pp_sigv4_header_t){PICK(s, header_names), (const char *)b->data};
    }

    if (strcmp(r->method, "POST") == 0 || strcmp(r->method, "PUT") == 0) {
        r->body_len = rng_below(s, sizeof(r->body) + 1);
        for (size_t i = 0; i < r->body_len; i++)
            r->body[i] = (unsigned char)rng_next(s);
    }
    r->region = PICK(s, regions);
    r->service = r->s3 ? "s3" : PICK(s, services);
    r->when = (time_t)(1420070400 + rng_below(s, 15u * 365 * 86400));
    memcpy(r->access_key, "AKIA", 4);
    random_chars(s, r->access_key + 4, 16, key_chars);
    random_chars(s, r->secret_key, 40, secret_chars);
    if (rng_below(s, 3) == 0)
        random_chars(s, r->token, 80, secret_chars);
}

static void free_request(xreq_t *r)
{
    pp_buf_free(&r->path);
    pp_buf_free(&r->query);
    json_decref(r->qpairs);
    for (size_t i = 1; i < r->nh; i++)
        pp_buf_free(&r->hvals[i]);
}

/* One JSON line for sigv4_botocore.py; the caller frees it. */
static char *request_json(const xreq_t *r)
{
    json_t *headers = json_array();
    for (size_t i = 0; i < r->nh; i++)
        json_array_append_new(headers, json_pack("[ss]", r->headers[i].name, r->headers[i].value));
    char hex[2 * sizeof(r->body) + 1];
    for (size_t i = 0; i < r->body_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", r->body[i]);
    hex[2 * r->body_len] = '\0';
    json_t *o =
        json_pack("{ss ss sO so ss ss ss sI ss ss sb}", "method", r->method, "path",
                  (const char *)r->path.data, "query", r->qpairs, "headers", headers, "body", hex,
                  "region", r->region, "service", r->service, "when", (json_int_t)r->when,
                  "access_key", r->access_key, "secret_key", r->secret_key, "s3", r->s3);
    assert_non_null(o);
    if (r->token[0] != '\0')
        json_object_set_new(o, "token", json_string(r->token));
    char *line = json_dumps(o, JSON_COMPACT);
    assert_non_null(line);
    json_decref(o);
    return line;
}

static int sign_ours(const xreq_t *r, pp_sigv4_output_t *out, pp_error_t *err)
{
    pp_sigv4_input_t in = {
        .method = r->method,
        .path = (const char *)r->path.data,
        .query = r->query.len > 1 ? (const char *)r->query.data : NULL,
        .headers = r->headers,
        .nheaders = r->nh,
        .body = r->body,
        .body_len = r->body_len,
        .region = r->region,
        .service = r->service,
        .when = r->when,
        .access_key = r->access_key,
        .secret_key = r->secret_key,
        .session_token = r->token,
        .flags = r->s3 ? PP_SIGV4_NO_NORMALIZE | PP_SIGV4_CONTENT_SHA256 : 0,
    };
    return pp_sigv4_sign(&in, out, err);
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

static void test_botocore(void **state)
{
    (void)state;
    if (access("/usr/bin/python3", X_OK) != 0) {
        print_message("skipping the botocore cross-check: no /usr/bin/python3\n");
        skip();
    }
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    const char *env = getenv("SIGV4_SEED");
    if (env != NULL && *env != '\0')
        seed = strtoull(env, NULL, 0);
    if (seed == 0)
        seed = 1;
    print_message("sigv4 botocore cross-check: SIGV4_SEED=%" PRIu64 "\n", seed);

    /* All requests go to one run of the script, through a file. */
    char in_path[] = "/tmp/test_sigv4_XXXXXX";
    int fd = mkstemp(in_path);
    assert_true(fd >= 0);
    FILE *in = fdopen(fd, "w");
    assert_non_null(in);
    uint64_t s = seed;
    for (int i = 0; i < XCHECK_COUNT; i++) {
        xreq_t r;
        make_request(&s, &r);
        char *line = request_json(&r);
        fprintf(in, "%s\n", line);
        free(line);
        free_request(&r);
    }
    assert_int_equal(fclose(in), 0);

    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' < '%s'", SIGV4_BOTOCORE_SCRIPT, in_path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got = getline(&line, &cap, p);
    if (got <= 0 || strncmp(line, "ok ", 3) != 0) {
        if (got > 0)
            chomp(line);
        print_message("skipping the botocore cross-check: %s\n",
                      got > 0 ? line : "/usr/bin/python3 printed nothing");
        free(line);
        pclose(p);
        unlink(in_path);
        skip();
    }
    chomp(line);
    print_message("sigv4 botocore cross-check: botocore %s\n", line + 3);

    /* Generate the same requests again from the seed and compare. */
    s = seed;
    int mismatches = 0, compared = 0;
    for (int i = 0; i < XCHECK_COUNT; i++) {
        xreq_t r;
        make_request(&s, &r);
        got = getline(&line, &cap, p);
        if (got <= 0) {
            print_error("botocore: output ended after %d requests\n", i);
            free_request(&r);
            mismatches++;
            break;
        }
        chomp(line);
        pp_sigv4_output_t out;
        pp_error_t err = {0};
        int rc = sign_ours(&r, &out, &err);
        const char *ours = rc < 0 ? err.message : out.authorization;
        if (rc < 0 || strcmp(ours, line) != 0) {
            if (mismatches < 5) {
                char *req = request_json(&r);
                print_error("request %d differs: %s\n ours     %s\n botocore %s\n", i, req, ours,
                            line);
                if (rc == 0)
                    print_error("our canonical request:\n%s\n", out.canonical_request);
                free(req);
            }
            mismatches++;
        }
        compared++;
        if (rc == 0)
            pp_sigv4_output_free(&out);
        free_request(&r);
    }
    free(line);
    int status = pclose(p);
    unlink(in_path);
    print_message("sigv4 botocore cross-check: %d requests, %d differ\n", compared, mismatches);
    assert_int_equal(status, 0);
    assert_int_equal(compared, XCHECK_COUNT);
    assert_int_equal(mismatches, 0);
}

/* ---- Errors ---- */

static void test_errors(void **state)
{
    (void)state;
    pp_sigv4_header_t host = {"Host", "ec2.us-east-1.amazonaws.com"};
    pp_sigv4_input_t in = {.method = "POST",
                           .path = "/",
                           .headers = &host,
                           .nheaders = 1,
                           .region = "us-east-1",
                           .service = "ec2",
                           .when = 1440938160,
                           .access_key = "AKIDEXAMPLE",
                           .secret_key = "secret"};
    pp_sigv4_output_t out;
    pp_error_t err = {0};
    assert_int_equal(pp_sigv4_sign(&in, &out, &err), 0);
    assert_string_equal(out.amz_date, "20150830T123600Z");
    pp_sigv4_output_free(&out);
    in.secret_key = "";
    assert_int_equal(pp_sigv4_sign(&in, &out, &err), -EINVAL);
    assert_string_equal(err.message, "sigv4: no secret key");
    assert_null(out.authorization);
    in.secret_key = "secret";
    in.nheaders = 0;
    assert_int_equal(pp_sigv4_sign(&in, &out, &err), -EINVAL);
    assert_non_null(strstr(err.message, "`host`"));
    /* The message never carries the key. */
    assert_null(strstr(err.message, "secret"));
}

/* No failure names the secret key or the session token, whichever part is
 * missing. */
static void test_errors_keep_secrets(void **state)
{
    (void)state;
    pp_sigv4_header_t host = {"Host", "example.amazonaws.com"};
    for (int missing = 0; missing < 5; missing++) {
        pp_sigv4_input_t in = {.method = "GET",
                               .path = "/",
                               .headers = &host,
                               .nheaders = 1,
                               .region = "us-east-1",
                               .service = "service",
                               .when = SUITE_WHEN,
                               .access_key = SUITE_ACCESS_KEY,
                               .secret_key = SUITE_SECRET_KEY,
                               .session_token = SUITE_TOKEN};
        switch (missing) {
        case 0:
            in.method = NULL;
            break;
        case 1:
            in.region = NULL;
            break;
        case 2:
            in.service = NULL;
            break;
        case 3:
            in.access_key = NULL;
            break;
        default:
            in.nheaders = 0;
            break;
        }
        pp_sigv4_output_t out;
        pp_error_t err = {0};
        assert_int_equal(pp_sigv4_sign(&in, &out, &err), -EINVAL);
        assert_null(out.authorization);
        assert_true(err.message[0] != '\0');
        assert_null(strstr(err.message, "wJalrXUtnFEMI"));
        assert_null(strstr(err.message, "AQoDYXdzEPT"));
    }
}

static void test_uri_encode(void **state)
{
    (void)state;
    pp_buf_t b;
    pp_buf_init(&b, 0);
    assert_int_equal(pp_sigv4_uri_encode(&b, "a b/c~d+\xc3\xa9=", 11, 0), 0);
    assert_int_equal(pp_buf_append_byte(&b, 0), 0);
    assert_string_equal((char *)b.data, "a%20b%2Fc~d%2B%C3%A9%3D");
    pp_buf_free(&b);
    pp_buf_init(&b, 0);
    assert_int_equal(pp_sigv4_uri_encode(&b, "/x y/", 5, 1), 0);
    assert_int_equal(pp_buf_append_byte(&b, 0), 0);
    assert_string_equal((char *)b.data, "/x%20y/");
    pp_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),    cmocka_unit_test(test_botocore),
        cmocka_unit_test(test_errors),     cmocka_unit_test(test_errors_keep_secrets),
        cmocka_unit_test(test_uri_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
