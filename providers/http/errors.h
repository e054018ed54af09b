/* The translation of a cloud's error answer into ours, shared by the cloud
 * providers: each keeps one table of its cloud's error codes (what each
 * means as a negative errno and a gRPC status, and whether another attempt
 * can help), and a code the table lacks is judged by the HTTP status alone,
 * the same way for every cloud. Pure functions. */
#ifndef PP_PROVIDERS_HTTP_ERRORS_H
#define PP_PROVIDERS_HTTP_ERRORS_H

#include <stddef.h>

#include "providers/http/http.h"

/* pp_http_error_class_t.retry */
#define PP_HTTP_ERR_PLAIN 0  /* the HTTP status decides (429 and 5xx are retried) */
#define PP_HTTP_ERR_RETRY 1  /* worth another attempt (throttling, transient) */
#define PP_HTTP_ERR_FINAL -1 /* never worth another attempt (capacity, quota, refusal) */

typedef struct pp_http_error_class_s {
    int err;   /* negative errno */
    int grpc;  /* gRPC status */
    int retry; /* PP_HTTP_ERR_* */
} pp_http_error_class_t;

/* One row of a cloud's table. */
typedef struct pp_http_error_map_s {
    const char *code;
    pp_http_error_class_t cls;
} pp_http_error_map_t;

/* A row: PP_HTTP_ERROR("QuotaExceeded", -EDQUOT, PP_GRPC_RESOURCE_EXHAUSTED, PP_HTTP_ERR_FINAL). */
#define PP_HTTP_ERROR(code, err, grpc, retry)                                                      \
    {                                                                                              \
        (code),                                                                                    \
        {                                                                                          \
            (err), (grpc), (retry)                                                                 \
        }                                                                                          \
    }

/* By the HTTP status alone: 429 and 5xx -EAGAIN UNAVAILABLE, 401 -EACCES
 * UNAUTHENTICATED, 403 -EPERM PERMISSION_DENIED, 404 -ENOENT NOT_FOUND,
 * 409 -EEXIST ALREADY_EXISTS, 0 (no status) -EPROTO UNKNOWN, any other
 * -EINVAL FAILED_PRECONDITION; retry PLAIN. */
void pp_http_status_class(long http_status, pp_http_error_class_t *out);

/* The row of `map` for `code` (NULL or "": none), else by the status. */
void pp_http_error_classify(const pp_http_error_map_t *map, size_t n, const char *code,
                            long http_status, pp_http_error_class_t *out);

/* The HTTP client's verdict on an answer whose code classified as `c`:
 * RETRY; FINAL unless the status is 429 or 5xx (which the client retries
 * anyway); else DEFAULT. */
pp_http_verdict_t pp_http_error_verdict(const pp_http_error_class_t *c, long http_status);

#endif
