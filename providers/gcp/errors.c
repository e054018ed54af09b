/* The one translation of Google's error answers into ours: an error
 * reason (error.errors[].reason), a canonical status (error.status) or an
 * operation's error code, and the HTTP status. */
#include "providers/gcp/gcp.h"

#include <errno.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/grpc_codes.h"

enum { RETRY = PP_HTTP_ERR_RETRY, FINAL = PP_HTTP_ERR_FINAL };

#define E PP_HTTP_ERROR
static const pp_http_error_map_t gcp_errors[] = {
    /* Throttling: back off and go again. */
    E("rateLimitExceeded", -EAGAIN, PP_GRPC_UNAVAILABLE, RETRY),
    E("userRateLimitExceeded", -EAGAIN, PP_GRPC_UNAVAILABLE, RETRY),
    E("RATE_LIMIT_EXCEEDED", -EAGAIN, PP_GRPC_UNAVAILABLE, RETRY),
    E("backendError", -EAGAIN, PP_GRPC_UNAVAILABLE, RETRY),
    E("resourceNotReady", -EAGAIN, PP_GRPC_UNAVAILABLE, RETRY),
    E("RESOURCE_NOT_READY", -EAGAIN, PP_GRPC_UNAVAILABLE, RETRY),
    /* Capacity and quota: the shim hears RESOURCE_EXHAUSTED with the
     * cloud's words; retrying at once does not help. */
    E("quotaExceeded", -EDQUOT, PP_GRPC_RESOURCE_EXHAUSTED, FINAL),
    E("QUOTA_EXCEEDED", -EDQUOT, PP_GRPC_RESOURCE_EXHAUSTED, FINAL),
    E("ZONE_RESOURCE_POOL_EXHAUSTED", -ENOSPC, PP_GRPC_RESOURCE_EXHAUSTED, FINAL),
    E("ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", -ENOSPC, PP_GRPC_RESOURCE_EXHAUSTED, FINAL),
    E("resourcePoolExhausted", -ENOSPC, PP_GRPC_RESOURCE_EXHAUSTED, FINAL),
    /* What is or is not there. */
    E("notFound", -ENOENT, PP_GRPC_NOT_FOUND, FINAL),
    E("NOT_FOUND", -ENOENT, PP_GRPC_NOT_FOUND, FINAL),
    E("RESOURCE_NOT_FOUND", -ENOENT, PP_GRPC_NOT_FOUND, FINAL),
    E("alreadyExists", -EEXIST, PP_GRPC_ALREADY_EXISTS, FINAL),
    E("ALREADY_EXISTS", -EEXIST, PP_GRPC_ALREADY_EXISTS, FINAL),
    E("RESOURCE_ALREADY_EXISTS", -EEXIST, PP_GRPC_ALREADY_EXISTS, FINAL),
    /* Credentials and permissions. */
    E("authError", -EACCES, PP_GRPC_UNAUTHENTICATED, FINAL),
    E("UNAUTHENTICATED", -EACCES, PP_GRPC_UNAUTHENTICATED, FINAL),
    E("forbidden", -EPERM, PP_GRPC_PERMISSION_DENIED, FINAL),
    E("PERMISSION_DENIED", -EPERM, PP_GRPC_PERMISSION_DENIED, FINAL),
    E("accessNotConfigured", -EPERM, PP_GRPC_PERMISSION_DENIED, FINAL),
    /* The request itself. */
    E("invalid", -EINVAL, PP_GRPC_INVALID_ARGUMENT, FINAL),
    E("badRequest", -EINVAL, PP_GRPC_INVALID_ARGUMENT, FINAL),
    E("required", -EINVAL, PP_GRPC_INVALID_ARGUMENT, FINAL),
    E("INVALID_ARGUMENT", -EINVAL, PP_GRPC_INVALID_ARGUMENT, FINAL),
    E("conditionNotMet", -EINVAL, PP_GRPC_FAILED_PRECONDITION, FINAL),
    E("FAILED_PRECONDITION", -EINVAL, PP_GRPC_FAILED_PRECONDITION, FINAL),
    E("UNSUPPORTED_OPERATION", -EINVAL, PP_GRPC_FAILED_PRECONDITION, FINAL),
};
#undef E

void pp__gcp_error_classify(const char *code, long http_status, pp__gcp_error_class_t *out)
{
    pp_http_error_classify(gcp_errors, PP_ARRAY_SIZE(gcp_errors), code, http_status, out);
}

pp_http_verdict_t pp__gcp_http_classify(const pp_http_response_t *resp, void *arg)
{
    (void)arg;
    if (resp->status < 400)
        return PP_HTTP_DEFAULT;
    pp__gcp_error_info_t ei;
    if (pp__gcp_parse_error(resp->body, resp->body_len, &ei) < 0)
        return PP_HTTP_DEFAULT;
    pp__gcp_error_class_t c;
    pp__gcp_error_classify(ei.reason[0] ? ei.reason : ei.status, resp->status, &c);
    return pp_http_error_verdict(&c, resp->status);
}
