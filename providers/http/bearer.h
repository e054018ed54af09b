/* Calls authorised with a bearer token from a token cache (token.h), for the
 * providers whose clouds take one (GCP, IBM Cloud): the token first (one
 * fetch for every caller that needs it), the request with
 * `Authorization: Bearer`, and an answer 401, which says the token expired
 * early or was revoked, invalidates it and tries once more with a new one.
 * A failed answer is read by the cloud's own hook (code and message) and
 * translated by its table (errors.h); the callback gets the translation.
 *
 * Async contract as pp_http_send(): fails synchronously without calling
 * back, or calls back exactly once. Loop thread only. */
#ifndef PP_PROVIDERS_HTTP_BEARER_H
#define PP_PROVIDERS_HTTP_BEARER_H

#include <stddef.h>
#include <stdint.h>

#include "providers/http/errors.h"
#include "providers/http/http.h"
#include "providers/http/token.h"

/* Reads the cloud's code (may stay "") and message from a failed answer. */
typedef void (*pp_bearer_error_fn)(const pp_http_response_t *resp, char *code, size_t codelen,
                                   char *msg, size_t msglen);
typedef void (*pp_bearer_classify_fn)(const char *code, long http_status,
                                      pp_http_error_class_t *out);

/* What the calls of one provider share; lives as long as they do. */
typedef struct pp_bearer_s {
    pp_http_t *http;
    pp_token_cache_t *tok;
    char *const *token; /* where the cache's fetch keeps the token */
    pp_bearer_error_fn error_info;
    pp_bearer_classify_fn classify;
} pp_bearer_t;

/* `status` 0: a 2xx answer, `body` (NUL-terminated). Otherwise `err` holds
 * the translated error (gRPC status set) and `code` the cloud's code, or "". */
typedef void (*pp_bearer_cb)(int status, long http, const char *body, size_t len, const char *code,
                             const pp_error_t *err, void *data);

typedef struct pp_bearer_request_s {
    const char *method;
    const char *url;
    const char *body;            /* JSON, or NULL; copied */
    const char *what;            /* names the call in errors and metrics; copied */
    uint64_t attempt_timeout_ms; /* 0: the client's */
} pp_bearer_request_t;

int pp_bearer_call(const pp_bearer_t *b, const pp_bearer_request_t *r, pp_bearer_cb cb, void *data);

#endif
