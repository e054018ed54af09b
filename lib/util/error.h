/* Errors: one convention for the whole tree (docs/design/errors.md).
 *
 * Fallible functions return 0 or a negative errno (equal to UV_E* on Linux).
 * Where context matters they also take `pp_error_t *err` last and fill it on
 * failure. Context is added as the error travels up with pp_error_wrap(), and
 * the error is logged once, at the request boundary. */
#ifndef PP_UTIL_ERROR_H
#define PP_UTIL_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#define PP_ERROR_MAX 512

typedef struct pp_error_s {
    int code;                   /* negative errno, or 0 when unset */
    int status;                 /* gRPC status to report, 0 = derive from code */
    char message[PP_ERROR_MAX]; /* lowercase, identifiers in backticks */
} pp_error_t;

/* Sets `err` (which may be NULL) and returns `code`, so callers can write
 * `return pp_error_set(err, -EINVAL, "bad `%s`", name);`. */
int pp_error_set(pp_error_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* pp_error_set() with a va_list, for functions that take a format of their
 * own (a parser's `fail(p, fmt, ...)`, which adds its position with
 * pp_error_wrap()). */
int pp_error_setv(pp_error_t *err, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* Like pp_error_set(), and records the gRPC status code to answer with. */
int pp_error_set_status(pp_error_t *err, int status, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Prefixes the message with context: "create tunnel for pod `x`: <old>".
 * Returns err->code. */
int pp_error_wrap(pp_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The gRPC status that answers this error: the recorded one, else one derived
 * from the errno (EINVAL -> INVALID_ARGUMENT, ENOENT -> NOT_FOUND, ...). */
int pp_error_grpc_status(const pp_error_t *err);

/* Maps a negative errno to a gRPC status code. */
int pp_errno_to_grpc(int code);

/* The name of a gRPC status code ("NOT_FOUND"), or "UNKNOWN". */
const char *pp_grpc_code_name(int status);

void pp_error_clear(pp_error_t *err);

#endif
