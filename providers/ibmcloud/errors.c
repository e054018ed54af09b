/* The one translation of IBM Cloud's error codes (the VPC API's errors[].code
 * and an instance's status_reasons[].code) into ours; codes the table lacks
 * go by the HTTP status (providers/http/errors.h). */
#include "providers/ibmcloud/ibmcloud.h"

#include <errno.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/grpc_codes.h"

enum { RETRY = PP_HTTP_ERR_RETRY, FINAL = PP_HTTP_ERR_FINAL, PLAIN = PP_HTTP_ERR_PLAIN };

#define E(code, err, grpc, retry) PP_HTTP_ERROR(code, err, PP_GRPC_##grpc, retry)
static const pp_http_error_map_t ibm_errors[] = {
    /* Throttling and passing trouble: back off and go again. */
    E("rate_limit_exceeded", -EAGAIN, UNAVAILABLE, RETRY),
    E("internal_error", -EAGAIN, UNAVAILABLE, RETRY),
    E("internal_server_error", -EAGAIN, UNAVAILABLE, RETRY),
    E("backend_service_unavailable", -EAGAIN, UNAVAILABLE, RETRY),
    E("iam_failure", -EAGAIN, UNAVAILABLE, RETRY),
    E("service_manager_service_failure", -EAGAIN, UNAVAILABLE, RETRY),
    /* Quota and capacity: the shim hears RESOURCE_EXHAUSTED with IBM's
     * words; trying again at once does not help. */
    E("over_quota", -EDQUOT, RESOURCE_EXHAUSTED, FINAL),
    E("instance_sec_volume_over_quota", -EDQUOT, RESOURCE_EXHAUSTED, FINAL),
    E("subnet_out_of_ip_addresses", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("cannot_start_capacity", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("cannot_start_compute", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("cannot_start_reservation_capacity", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("cannot_start_placement_group", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("cannot_start_ip_address", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    /* An instance that did not start for another reason. */
    E("cannot_start", -EIO, UNAVAILABLE, PLAIN),
    E("cannot_start_network", -EIO, UNAVAILABLE, PLAIN),
    E("cannot_start_storage", -EIO, UNAVAILABLE, PLAIN),
    E("encryption_key_deleted", -EIO, FAILED_PRECONDITION, PLAIN),
    /* What is or is not there, and states that forbid the call now. */
    E("not_found", -ENOENT, NOT_FOUND, FINAL),
    E("validation_unique_failed", -EEXIST, ALREADY_EXISTS, FINAL),
    E("instance_name_exists", -EEXIST, ALREADY_EXISTS, FINAL),
    E("duplicate_error", -EEXIST, ALREADY_EXISTS, FINAL),
    E("target_in_use", -EEXIST, ALREADY_EXISTS, FINAL),
    E("instance_delete_conflict", -EBUSY, UNAVAILABLE, FINAL),
    E("invalid_state", -EBUSY, UNAVAILABLE, FINAL),
    /* Credentials and permissions. */
    E("not_authorized", -EPERM, PERMISSION_DENIED, FINAL),
    E("token_invalid", -EACCES, UNAUTHENTICATED, FINAL),
    E("token_missing", -EACCES, UNAUTHENTICATED, FINAL),
    E("account_disabled", -EPERM, PERMISSION_DENIED, FINAL),
    /* The configuration: an image, profile, subnet or group that does not fit. */
    E("bad_field", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("invalid_zone", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("acl_rule_does_not_allow", -EINVAL, FAILED_PRECONDITION, FINAL),
    /* The request itself. */
    E("bad_request", -EINVAL, INVALID_ARGUMENT, FINAL),
    E("validation_failure", -EINVAL, INVALID_ARGUMENT, FINAL),
    E("validation_enum", -EINVAL, INVALID_ARGUMENT, FINAL),
    E("validation_invalid_name", -EINVAL, INVALID_ARGUMENT, FINAL),
    E("invalid_request_field", -EINVAL, INVALID_ARGUMENT, FINAL),
    E("missing_field", -EINVAL, INVALID_ARGUMENT, FINAL),
    E("invalid_id_format", -EINVAL, INVALID_ARGUMENT, FINAL),
    E("invalid_version", -EINVAL, INVALID_ARGUMENT, FINAL),
    E("invalid_version_range", -EINVAL, INVALID_ARGUMENT, FINAL),
    E("invalid_generation_parameter", -EINVAL, INVALID_ARGUMENT, FINAL),
    E("invalid_route", -EINVAL, INVALID_ARGUMENT, FINAL),
};
#undef E

void pp__ibm_error_classify(const char *code, long http_status, pp_http_error_class_t *out)
{
    pp_http_error_classify(ibm_errors, PP_ARRAY_SIZE(ibm_errors), code, http_status, out);
}

int pp__ibm_code_name_taken(const char *code)
{
    return strcmp(code, "validation_unique_failed") == 0 ||
           strcmp(code, "instance_name_exists") == 0 || strcmp(code, "duplicate_error") == 0;
}

pp_http_verdict_t pp__ibm_http_classify(const pp_http_response_t *resp, void *arg)
{
    (void)arg;
    if (resp->status < 400)
        return PP_HTTP_DEFAULT;
    pp__ibm_error_info_t ei;
    if (pp__ibm_parse_error(resp->body, resp->body_len, &ei) < 0)
        return PP_HTTP_DEFAULT;
    pp_http_error_class_t c;
    pp__ibm_error_classify(ei.code, resp->status, &c);
    return pp_http_error_verdict(&c, resp->status);
}
