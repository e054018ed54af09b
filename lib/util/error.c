#include "util/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/grpc_codes.h"

int pp_error_setv(pp_error_t *err, int code, const char *fmt, va_list ap)
{
    if (err == NULL)
        return code;
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    err->code = code;
    err->status = 0;
    return code;
}

int pp_error_set(pp_error_t *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pp_error_setv(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int pp_error_set_status(pp_error_t *err, int status, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pp_error_setv(err, code, fmt, ap);
    va_end(ap);
    if (err != NULL)
        err->status = status;
    return code;
}

int pp_error_wrap(pp_error_t *err, const char *fmt, ...)
{
    if (err == NULL)
        return 0;
    char prefix[PP_ERROR_MAX];
    char old[PP_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->message, sizeof(old));
    /* Truncation keeps the start, which names the outermost context. */
    size_t n = strnlen(prefix, sizeof(prefix) - 1);
    memcpy(err->message, prefix, n);
    if (n + 2 < sizeof(err->message)) {
        memcpy(err->message + n, ": ", 2);
        n += 2;
    }
    size_t rest = sizeof(err->message) - 1 - n;
    size_t m = strnlen(old, rest);
    memcpy(err->message + n, old, m);
    err->message[n + m] = '\0';
    return err->code;
}

void pp_error_clear(pp_error_t *err)
{
    if (err == NULL)
        return;
    err->code = 0;
    err->status = 0;
    err->message[0] = '\0';
}

/* errno -> gRPC status; anything unlisted is INTERNAL. */
static const struct {
    int errnum;
    int status;
} errno_map[] = {
    {EINVAL, PP_GRPC_INVALID_ARGUMENT},     {ENOENT, PP_GRPC_NOT_FOUND},
    {EEXIST, PP_GRPC_ALREADY_EXISTS},       {ETIMEDOUT, PP_GRPC_DEADLINE_EXCEEDED},
    {ECANCELED, PP_GRPC_CANCELLED},         {ENOMEM, PP_GRPC_RESOURCE_EXHAUSTED},
    {EMSGSIZE, PP_GRPC_RESOURCE_EXHAUSTED}, {ENOSPC, PP_GRPC_RESOURCE_EXHAUSTED},
    {ECONNREFUSED, PP_GRPC_UNAVAILABLE},    {ECONNRESET, PP_GRPC_UNAVAILABLE},
    {EPIPE, PP_GRPC_UNAVAILABLE},           {ENOTCONN, PP_GRPC_UNAVAILABLE},
    {EAGAIN, PP_GRPC_UNAVAILABLE},          {ENOSYS, PP_GRPC_UNIMPLEMENTED},
    {EOPNOTSUPP, PP_GRPC_UNIMPLEMENTED},    {EBUSY, PP_GRPC_FAILED_PRECONDITION},
    {EPERM, PP_GRPC_FAILED_PRECONDITION},   {EACCES, PP_GRPC_FAILED_PRECONDITION},
};

int pp_errno_to_grpc(int code)
{
    if (code == 0)
        return PP_GRPC_OK;
    for (size_t i = 0; i < sizeof(errno_map) / sizeof(errno_map[0]); i++)
        if (errno_map[i].errnum == -code)
            return errno_map[i].status;
    return PP_GRPC_INTERNAL;
}

int pp_error_grpc_status(const pp_error_t *err)
{
    if (err->status != 0)
        return err->status;
    return err->code == 0 ? PP_GRPC_UNKNOWN : pp_errno_to_grpc(err->code);
}

const char *pp_grpc_code_name(int status)
{
    static const char *const names[] = {
#define PP_GRPC_NAME(name, value) [value] = #name,
        PP_GRPC_CODE_MAP(PP_GRPC_NAME)
#undef PP_GRPC_NAME
    };
    if (status < 0 || (size_t)status >= sizeof(names) / sizeof(names[0]) || names[status] == NULL)
        return "UNKNOWN";
    return names[status];
}
