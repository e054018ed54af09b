/* One bounded HTTP request for process-user-data, on libcurl's easy API
 * (a one-shot CLI: blocking is fine here, unlike in the daemons).
 *
 * Every request has a total time limit, a cap on the response body, no
 * proxy (the metadata address is link-local; a proxy from the environment
 * would be wrong and could see tokens), no redirects, and http or https
 * only. Transport failures are told apart from answers: the caller decides
 * what an HTTP status means. */
#ifndef PUD_HTTP_H
#define PUD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/error.h"

typedef struct pud_http_req_s {
    const char *method; /* "GET" or "PUT" */
    const char *url;
    const char *const *headers; /* "Name: value", NULL-terminated; may be NULL */
    const char *body;           /* PUT body, may be NULL */
    size_t body_len;
    uint64_t timeout_ms; /* whole request, > 0 */
    size_t max_body;     /* larger responses fail with -EMSGSIZE */
    const char *capture; /* a response header whose value to keep, or NULL */
} pud_http_req_t;

typedef struct pud_http_resp_s {
    long status;
    pp_buf_t body;
    char captured[256]; /* value of req->capture, "" when absent */
} pud_http_resp_t;

void pud_http_resp_init(pud_http_resp_t *resp);
void pud_http_resp_free(pud_http_resp_t *resp);

/* Performs the request. 0 when an answer arrived (any status, in
 * `resp->status`, body in `resp->body`). Otherwise a negative errno with
 * `err` set: -ETIMEDOUT, -ECONNREFUSED, -ECONNRESET, -EHOSTUNREACH (no answer: the
 * service is not there), -EMSGSIZE (body over the cap), -ENOMEM, -EINVAL
 * (bad URL), -EIO (anything else, the curl message in `err`). */
int pud_http_do(const pud_http_req_t *req, pud_http_resp_t *resp, pp_error_t *err);

/* 1 when a failure of pud_http_do() means nobody answered. */
int pud_http_unreachable(int code);

/* Milliseconds on a monotonic clock. */
uint64_t pud_now_ms(void);

#endif
