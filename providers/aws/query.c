/* Query API bodies, and the one table that turns AWS error codes into ours. */
#include "providers/aws/aws.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "providers/aws/sigv4.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/hex.h"

#define QUERY_MAX ((size_t)1 << 20)

void pp__aws_query_init(pp__aws_query_t *q, const char *action, const char *version)
{
    /* A query may carry a web identity token. */
    pp_buf_init_secret(&q->buf, QUERY_MAX);
    q->err = 0;
    pp__aws_query_add(q, "Action", action);
    pp__aws_query_add(q, "Version", version);
}

void pp__aws_query_add(pp__aws_query_t *q, const char *key, const char *value)
{
    if (q->err < 0)
        return;
    if (key == NULL || value == NULL) {
        q->err = -EINVAL;
        return;
    }
    int r = 0;
    if (q->buf.len > 0)
        r = pp_buf_append_byte(&q->buf, '&');
    if (r == 0)
        r = pp_sigv4_uri_encode(&q->buf, key, strlen(key), 0);
    if (r == 0)
        r = pp_buf_append_byte(&q->buf, '=');
    if (r == 0)
        r = pp_sigv4_uri_encode(&q->buf, value, strlen(value), 0);
    if (r < 0)
        q->err = r;
}

void pp__aws_query_addf(pp__aws_query_t *q, const char *value, const char *keyfmt, ...)
{
    char key[256];
    va_list ap;
    va_start(ap, keyfmt);
    int n = vsnprintf(key, sizeof(key), keyfmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(key)) {
        if (q->err == 0)
            q->err = -ENAMETOOLONG;
        return;
    }
    pp__aws_query_add(q, key, value);
}

int pp__aws_query_finish(pp__aws_query_t *q)
{
    if (q->err == 0 && pp_buf_append_byte(&q->buf, 0) == 0)
        q->buf.len--; /* the NUL is there, not counted */
    else if (q->err == 0)
        q->err = -ENOMEM;
    return q->err;
}

void pp__aws_query_free(pp__aws_query_t *q)
{
    pp_buf_free(&q->buf);
}

/* --- errors --------------------------------------------------------------------- */

enum { RETRY = PP_HTTP_ERR_RETRY, FINAL = PP_HTTP_ERR_FINAL };

#define E(code, err, grpc, retry) PP_HTTP_ERROR(code, err, PP_GRPC_##grpc, retry)
static const pp_http_error_map_t aws_errors[] = {
    /* Throttling: the HTTP layer backs off and tries again. */
    E("RequestLimitExceeded", -EAGAIN, UNAVAILABLE, RETRY),
    E("Throttling", -EAGAIN, UNAVAILABLE, RETRY),
    E("ThrottlingException", -EAGAIN, UNAVAILABLE, RETRY),
    E("ThrottledException", -EAGAIN, UNAVAILABLE, RETRY),
    E("RequestThrottled", -EAGAIN, UNAVAILABLE, RETRY),
    E("RequestThrottledException", -EAGAIN, UNAVAILABLE, RETRY),
    E("TooManyRequestsException", -EAGAIN, UNAVAILABLE, RETRY),
    E("BandwidthLimitExceeded", -EAGAIN, UNAVAILABLE, RETRY),
    E("EC2ThrottledException", -EAGAIN, UNAVAILABLE, RETRY),
    E("SlowDown", -EAGAIN, UNAVAILABLE, RETRY),
    E("PriorRequestNotComplete", -EAGAIN, UNAVAILABLE, RETRY),
    E("RequestTimeout", -ETIMEDOUT, UNAVAILABLE, RETRY),
    E("RequestTimeoutException", -ETIMEDOUT, UNAVAILABLE, RETRY),
    /* Transient. */
    E("InternalError", -EAGAIN, UNAVAILABLE, RETRY),
    E("InternalFailure", -EAGAIN, UNAVAILABLE, RETRY),
    E("ServiceUnavailable", -EAGAIN, UNAVAILABLE, RETRY),
    E("Unavailable", -EAGAIN, UNAVAILABLE, RETRY),
    E("IDPCommunicationError", -EAGAIN, UNAVAILABLE, RETRY),
    /* Capacity: EC2 answers these with 500, but trying again at once only
     * burns the rate budget; the caller hears of it. */
    E("InsufficientInstanceCapacity", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("InsufficientHostCapacity", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("InsufficientReservedInstanceCapacity", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("InsufficientCapacity", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("InsufficientAddressCapacity", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("InsufficientFreeAddressesInSubnet", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("InsufficientVolumeCapacity", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    /* Limits. */
    E("InstanceLimitExceeded", -EDQUOT, RESOURCE_EXHAUSTED, FINAL),
    E("VcpuLimitExceeded", -EDQUOT, RESOURCE_EXHAUSTED, FINAL),
    E("ResourceLimitExceeded", -EDQUOT, RESOURCE_EXHAUSTED, FINAL),
    E("VolumeLimitExceeded", -EDQUOT, RESOURCE_EXHAUSTED, FINAL),
    E("AddressLimitExceeded", -EDQUOT, RESOURCE_EXHAUSTED, FINAL),
    E("MaxSpotInstanceCountExceeded", -EDQUOT, RESOURCE_EXHAUSTED, FINAL),
    /* Not possible with this configuration. */
    E("Unsupported", -EOPNOTSUPP, FAILED_PRECONDITION, FINAL),
    E("UnsupportedOperation", -EOPNOTSUPP, FAILED_PRECONDITION, FINAL),
    E("InvalidParameterCombination", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("InvalidParameterValue", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("InvalidParameter", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("MissingParameter", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("UnknownParameter", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("InvalidInstanceType", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("InvalidAMIID.NotFound", -ENOENT, FAILED_PRECONDITION, FINAL),
    E("InvalidAMIID.Malformed", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("InvalidAMIID.Unavailable", -ENOENT, FAILED_PRECONDITION, FINAL),
    E("InvalidSubnetID.NotFound", -ENOENT, FAILED_PRECONDITION, FINAL),
    E("InvalidGroup.NotFound", -ENOENT, FAILED_PRECONDITION, FINAL),
    E("InvalidKeyPair.NotFound", -ENOENT, FAILED_PRECONDITION, FINAL),
    E("InvalidLaunchTemplateName.NotFoundException", -ENOENT, FAILED_PRECONDITION, FINAL),
    E("IdempotentParameterMismatch", -EEXIST, FAILED_PRECONDITION, FINAL),
    /* Instances that are not there. */
    E("InvalidInstanceID.NotFound", -ENOENT, NOT_FOUND, FINAL),
    E("InvalidInstanceID.Malformed", -EINVAL, NOT_FOUND, FINAL),
    /* Credentials and permissions. */
    E("AuthFailure", -EACCES, PERMISSION_DENIED, FINAL),
    E("UnauthorizedOperation", -EPERM, PERMISSION_DENIED, FINAL),
    E("AccessDenied", -EPERM, PERMISSION_DENIED, FINAL),
    E("OptInRequired", -EACCES, PERMISSION_DENIED, FINAL),
    E("Blocked", -EACCES, PERMISSION_DENIED, FINAL),
    E("SignatureDoesNotMatch", -EACCES, UNAUTHENTICATED, FINAL),
    E("IncompleteSignature", -EACCES, UNAUTHENTICATED, FINAL),
    E("InvalidClientTokenId", -EACCES, UNAUTHENTICATED, FINAL),
    E("MissingAuthenticationToken", -EACCES, UNAUTHENTICATED, FINAL),
    E("ExpiredToken", -EACCES, UNAUTHENTICATED, FINAL),
    E("ExpiredTokenException", -EACCES, UNAUTHENTICATED, FINAL),
    E("RequestExpired", -EACCES, UNAUTHENTICATED, FINAL),
    E("InvalidIdentityToken", -EACCES, UNAUTHENTICATED, FINAL),
};
#undef E

void pp__aws_error_classify(const char *code, long http_status, pp__aws_error_class_t *out)
{
    pp_http_error_classify(aws_errors, PP_ARRAY_SIZE(aws_errors), code, http_status, out);
}

pp_http_verdict_t pp__aws_http_classify(const pp_http_response_t *resp, void *arg)
{
    (void)arg;
    if (resp->status < 400)
        return PP_HTTP_DEFAULT;
    pp__aws_error_info_t ei;
    if (pp__aws_parse_error(resp->body, resp->body_len, &ei) < 0 || ei.code[0] == '\0')
        return PP_HTTP_DEFAULT;
    pp__aws_error_class_t c;
    pp__aws_error_classify(ei.code, resp->status, &c);
    if (c.retry == RETRY)
        return PP_HTTP_RETRY;
    if (c.retry == FINAL)
        return PP_HTTP_FINAL;
    return PP_HTTP_DEFAULT;
}

/* --- identifiers ---------------------------------------------------------------------- */

int pp__aws_client_token(const char *node, const char *sandbox_id, char out[65])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (node == NULL)
        node = "";
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    /* "peerpod", the node and the sandbox id, each ended by a NUL, so that
     * no two pairs hash the same bytes. */
    int ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(c, "peerpod", 8) == 1 &&
             EVP_DigestUpdate(c, node, strlen(node) + 1) == 1 &&
             EVP_DigestUpdate(c, sandbox_id, strlen(sandbox_id) + 1) == 1 &&
             EVP_DigestFinal_ex(c, d, &dlen) == 1 && dlen == 32;
    EVP_MD_CTX_free(c);
    if (!ok)
        return -ENOMEM;
    pp_hex_encode(d, 32, out);
    return 0;
}

int pp__aws_instance_id_valid(const char *id)
{
    if (id == NULL || strncmp(id, "i-", 2) != 0)
        return 0;
    size_t n = strspn(id + 2, "0123456789abcdef");
    return id[2 + n] == '\0' && (n == 8 || n == 17);
}
