/* The one translation of Google's error answers into ours: an error
 * reason (error.errors[].reason), a canonical status (error.status) or an
 * operation's error code, and the HTTP status. */
#include "providers/gcp/gcp.h"

#include <errno.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/grpc_codes.h"

enum { PLAIN = 0, RETRY = 1, FINAL = -1 };

static const struct {
    const char *code;
    int err, grpc, retry;
} gcp_errors[] = {
    /* Throttling: back off and go again. */
    {"rateLimitExceeded", -EAGAIN, PP_GRPC_UNAVAILABLE, RETRY},
    {"userRateLimitExceeded", -EAGAIN, PP_GRPC_UNAVAILABLE, RETRY},
    {"RATE_LIMIT_EXCEEDED", -EAGAIN, PP_GRPC_UNAVAILABLE, RETRY},
    {"backendError", -EAGAIN, PP_GRPC_UNAVAILABLE, RETRY},
    {"resourceNotReady", -EAGAIN, PP_GRPC_UNAVAILABLE, RETRY},
    {"RESOURCE_NOT_READY", -EAGAIN, PP_GRPC_UNAVAILABLE, RETRY},
    /* Capacity and quota: the shim hears RESOURCE_EXHAUSTED with the
     * cloud's words; retrying at once does not help. */
    {"quotaExceeded", -EDQUOT, PP_GRPC_RESOURCE_EXHAUSTED, FINAL},
    {"QUOTA_EXCEEDED", -EDQUOT, PP_GRPC_RESOURCE_EXHAUSTED, FINAL},
    {"ZONE_RESOURCE_POOL_EXHAUSTED", -ENOSPC, PP_GRPC_RESOURCE_EXHAUSTED, FINAL},
    {"ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", -ENOSPC, PP_GRPC_RESOURCE_EXHAUSTED, FINAL},
    {"resourcePoolExhausted", -ENOSPC, PP_GRPC_RESOURCE_EXHAUSTED, FINAL},
    /* What is or is not there. */
    {"notFound", -ENOENT, PP_GRPC_NOT_FOUND, FINAL},
    {"NOT_FOUND", -ENOENT, PP_GRPC_NOT_FOUND, FINAL},
    {"RESOURCE_NOT_FOUND", -ENOENT, PP_GRPC_NOT_FOUND, FINAL},
    {"alreadyExists", -EEXIST, PP_GRPC_ALREADY_EXISTS, FINAL},
    {"ALREADY_EXISTS", -EEXIST, PP_GRPC_ALREADY_EXISTS, FINAL},
    {"RESOURCE_ALREADY_EXISTS", -EEXIST, PP_GRPC_ALREADY_EXISTS, FINAL},
    /* Credentials and permissions. */
    {"authError", -EACCES, PP_GRPC_UNAUTHENTICATED, FINAL},
    {"UNAUTHENTICATED", -EACCES, PP_GRPC_UNAUTHENTICATED, FINAL},
    {"forbidden", -EPERM, PP_GRPC_PERMISSION_DENIED, FINAL},
    {"PERMISSION_DENIED", -EPERM, PP_GRPC_PERMISSION_DENIED, FINAL},
    {"accessNotConfigured", -EPERM, PP_GRPC_PERMISSION_DENIED, FINAL},
    /* The request itself. */
    {"invalid", -EINVAL, PP_GRPC_INVALID_ARGUMENT, FINAL},
    {"badRequest", -EINVAL, PP_GRPC_INVALID_ARGUMENT, FINAL},
    {"required", -EINVAL, PP_GRPC_INVALID_ARGUMENT, FINAL},
    {"INVALID_ARGUMENT", -EINVAL, PP_GRPC_INVALID_ARGUMENT, FINAL},
    {"conditionNotMet", -EINVAL, PP_GRPC_FAILED_PRECONDITION, FINAL},
    {"FAILED_PRECONDITION", -EINVAL, PP_GRPC_FAILED_PRECONDITION, FINAL},
    {"UNSUPPORTED_OPERATION", -EINVAL, PP_GRPC_FAILED_PRECONDITION, FINAL},
};

void pp__gcp_error_classify(const char *code, long http_status, pp__gcp_error_class_t *out)
{
    for (size_t i = 0; code != NULL && i < PP_ARRAY_SIZE(gcp_errors); i++) {
        if (strcmp(gcp_errors[i].code, code) == 0) {
            out->err = gcp_errors[i].err;
            out->grpc = gcp_errors[i].grpc;
            out->retry = gcp_errors[i].retry;
            return;
        }
    }
    /* Unknown codes: by the HTTP status. */
    out->retry = PLAIN;
    if (http_status >= 500 || http_status == 429) {
        out->err = -EAGAIN;
        out->grpc = PP_GRPC_UNAVAILABLE;
    } else if (http_status == 401) {
        out->err = -EACCES;
        out->grpc = PP_GRPC_UNAUTHENTICATED;
    } else if (http_status == 403) {
        out->err = -EPERM;
        out->grpc = PP_GRPC_PERMISSION_DENIED;
    } else if (http_status == 404) {
        out->err = -ENOENT;
        out->grpc = PP_GRPC_NOT_FOUND;
    } else if (http_status == 409) {
        out->err = -EEXIST;
        out->grpc = PP_GRPC_ALREADY_EXISTS;
    } else if (http_status == 0) {
        out->err = -EPROTO;
        out->grpc = PP_GRPC_UNKNOWN;
    } else {
        out->err = -EINVAL;
        out->grpc = PP_GRPC_FAILED_PRECONDITION;
    }
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
    if (c.retry == RETRY)
        return PP_HTTP_RETRY;
    if (c.retry == FINAL && resp->status != 429 && resp->status < 500)
        return PP_HTTP_FINAL;
    return PP_HTTP_DEFAULT;
}
