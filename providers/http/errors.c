/* The shared part of the cloud providers' error translation (errors.h). */
#include "providers/http/errors.h"

#include <errno.h>
#include <string.h>

#include "util/grpc_codes.h"

static const struct {
    long status;
    int err, grpc;
} by_status[] = {
    {401, -EACCES, PP_GRPC_UNAUTHENTICATED}, {403, -EPERM, PP_GRPC_PERMISSION_DENIED},
    {404, -ENOENT, PP_GRPC_NOT_FOUND},       {409, -EEXIST, PP_GRPC_ALREADY_EXISTS},
    {429, -EAGAIN, PP_GRPC_UNAVAILABLE},     {0, -EPROTO, PP_GRPC_UNKNOWN},
};

void pp_http_status_class(long http_status, pp_http_error_class_t *out)
{
    out->retry = PP_HTTP_ERR_PLAIN;
    out->err = -EINVAL;
    out->grpc = PP_GRPC_FAILED_PRECONDITION;
    if (http_status >= 500) {
        out->err = -EAGAIN;
        out->grpc = PP_GRPC_UNAVAILABLE;
        return;
    }
    for (size_t i = 0; i < sizeof(by_status) / sizeof(by_status[0]); i++) {
        if (by_status[i].status == http_status) {
            out->err = by_status[i].err;
            out->grpc = by_status[i].grpc;
            return;
        }
    }
}

void pp_http_error_classify(const pp_http_error_map_t *map, size_t n, const char *code,
                            long http_status, pp_http_error_class_t *out)
{
    for (size_t i = 0; code != NULL && code[0] != '\0' && i < n; i++) {
        if (strcmp(map[i].code, code) == 0) {
            *out = map[i].cls;
            return;
        }
    }
    pp_http_status_class(http_status, out);
}

pp_http_verdict_t pp_http_error_verdict(const pp_http_error_class_t *c, long http_status)
{
    if (c->retry == PP_HTTP_ERR_RETRY)
        return PP_HTTP_RETRY;
    if (c->retry == PP_HTTP_ERR_FINAL && http_status != 429 && http_status < 500)
        return PP_HTTP_FINAL;
    return PP_HTTP_DEFAULT;
}
