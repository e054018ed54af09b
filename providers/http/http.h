/* HTTP for the cloud providers: libcurl's multi interface driven by the
 * libuv loop (sockets watched with uv_poll, curl's timer on a uv_timer), so
 * nothing blocks the loop. One client per provider.
 *
 * What a client does for every request:
 *   - a deadline for the whole request (all attempts and waits), and a
 *     shorter one for each attempt;
 *   - retries with exponential backoff and full jitter after connection
 *     errors, timeouts of an attempt, HTTP 429, 500, 502, 503 and 504, and
 *     whatever the provider's classify hook calls retryable (a cloud's
 *     throttling codes); a `Retry-After` answer is waited out;
 *   - a token bucket per client: no request goes out before it has a token
 *     (also curl's own resend when a reused connection turns out dead);
 *   - a cap on the size of the response body and headers;
 *   - TLS peer and host verification, always (the CA bundle can be set);
 *   - the proxy from the environment (`HTTPS_PROXY`, `https_proxy`,
 *     `http_proxy`, `NO_PROXY`), which libcurl reads: nothing here turns
 *     it off;
 *   - only http and https, no redirects, no verbose output.
 * Log lines carry the method, the URL without its query, the status and the
 * timing; never a header, a body or a query, since those hold credentials,
 * signatures and tokens. For the same reason the client clears its copies
 * of a request's body and header lines, and the answer's body and headers,
 * before it frees them (tests/unit/test_secret_wipe.c).
 *
 * The process ignores SIGPIPE, as the daemons do: libcurl runs with
 * CURLOPT_NOSIGNAL (no signals on the loop thread), so a TLS write to a
 * peer that hung up would otherwise kill it.
 *
 * Async contract: pp_http_send() either fails synchronously (negative
 * return, no callback) or calls back exactly once, never from inside the
 * call, also on pp_http_cancel() and pp_http_free(). Loop thread only. */
#ifndef PP_PROVIDERS_HTTP_H
#define PP_PROVIDERS_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "metrics/metrics.h"
#include "util/error.h"

typedef struct pp_http_s pp_http_t;
typedef struct pp_http_req_s pp_http_req_t;

/* The answer to one attempt; valid until the callback (or the classify hook)
 * returns. */
typedef struct pp_http_response_s {
    long status;
    const char *body; /* NUL-terminated; may hold NUL bytes before body_len */
    size_t body_len;
    const char *headers; /* the raw header block of the final response */
    size_t headers_len;
    unsigned attempts; /* attempts made so far, this one included */
} pp_http_response_t;

/* What the classify hook says of a response. */
typedef enum pp_http_verdict {
    PP_HTTP_DEFAULT = 0, /* retry 429, 500, 502, 503, 504 */
    PP_HTTP_RETRY,       /* retry this one (a throttling code) */
    PP_HTTP_FINAL,       /* hand this one to the caller (a 500 that is no use retrying) */
} pp_http_verdict_t;

typedef pp_http_verdict_t (*pp_http_classify_cb)(const pp_http_response_t *resp, void *arg);

typedef struct pp_http_config_s {
    const char *name;            /* in log lines and messages, e.g. "aws"; copied */
    const char *ca_bundle;       /* PEM file of trusted CAs; NULL = the system's; copied */
    const char *ca_pem;          /* PEM text of trusted CAs, instead of a file; copied */
    double rate;                 /* attempts per second; 0 = no limit */
    unsigned burst;              /* bucket size; 0 = max(1, rate) */
    unsigned max_attempts;       /* per request; 0 = 5 */
    uint64_t backoff_base_ms;    /* first backoff's ceiling; 0 = 100 */
    uint64_t backoff_max_ms;     /* ceiling of any backoff; 0 = 20000 */
    uint64_t timeout_ms;         /* a request's deadline; 0 = 60000 */
    uint64_t attempt_timeout_ms; /* one attempt's; 0 = 20000 */
    uint64_t connect_timeout_ms; /* 0 = 10000 */
    size_t max_response;         /* body bytes; 0 = 8 MiB */
    const char *user_agent;      /* NULL = "peerpod" */
    pp_http_classify_cb classify;
    void *classify_arg;
    /* Where calls are counted (NULL: nowhere), by provider (`name`),
     * operation and result: peerpod_cloud_api_calls_total{provider,
     * operation,result} (result: ok, http_4xx, http_5xx, timeout, network,
     * canceled, error), peerpod_cloud_api_call_duration_seconds{provider,
     * operation}, peerpod_cloud_api_throttles_total{provider,operation}
     * (answers 429 and 503, and those the classify hook retries),
     * peerpod_cloud_api_retries_total{provider,operation} and
     * peerpod_cloud_api_rate_limit_wait_seconds_total{provider} (time
     * requests waited for a token). Loop thread only, as the client. */
    pp_metrics_t *metrics;
} pp_http_config_t;

#define PP_HTTP_DEFAULT_MAX_RESPONSE ((size_t)8 << 20)
#define PP_HTTP_MAX_HEADERS          ((size_t)64 << 10)

/* Flags of a request. */
#define PP_HTTP_NO_RETRY (1u << 0) /* one attempt only */
#define PP_HTTP_NO_PROXY (1u << 1) /* never through a proxy (link-local metadata services) */

/* Called before each attempt, to add the headers that depend on the moment
 * of sending (a signature and its date) with pp_http_req_add_header(). A
 * negative return fails the request with `err`. */
typedef int (*pp_http_sign_cb)(pp_http_req_t *req, void *arg, pp_error_t *err);

typedef struct pp_http_request_s {
    const char *method;         /* GET, POST, PUT, DELETE, HEAD */
    const char *operation;      /* for metrics ("RunInstances"); NULL: the method; copied */
    const char *url;            /* http:// or https:// */
    const char *const *headers; /* "Name: value" strings, NULL-terminated; copied */
    const void *body;           /* copied */
    size_t body_len;
    uint64_t timeout_ms;         /* deadline of this request; 0 = the client's */
    uint64_t attempt_timeout_ms; /* of each attempt; 0 = the client's (a call the server
                                  * holds on purpose, such as a long poll, needs more) */
    unsigned flags;              /* PP_HTTP_* */
    pp_http_sign_cb sign;
    void *sign_arg;
} pp_http_request_t;

/* `status` 0: a response came (any HTTP status; after the retries, the last
 * one). Negative: none that can be used: -ETIMEDOUT (deadline), -ECANCELED,
 * -EMSGSIZE (over the cap), -ECONNREFUSED, -ECONNRESET, -EHOSTUNREACH,
 * -EPROTO (TLS, protocol), ...; `err` says what happened. */
typedef void (*pp_http_cb)(int status, const pp_http_response_t *resp, const pp_error_t *err,
                           void *data);

/* Makes a client on `loop`. Fails with -EINVAL for a bad setting. */
int pp_http_new(uv_loop_t *loop, const pp_http_config_t *cfg, pp_http_t **out, pp_error_t *err);
/* Cancels what is in flight (each callback fires with -ECANCELED, after this
 * returns) and frees the client once its handles have closed: run the loop
 * once more before uv_loop_close(). */
void pp_http_free(pp_http_t *h);

/* Starts a request. `out` (may be NULL) receives a handle for
 * pp_http_cancel(), valid until the callback returns. Synchronous failures:
 * -EINVAL (bad method or URL), -ENOMEM, -ECANCELED (the client is closing). */
int pp_http_send(pp_http_t *h, const pp_http_request_t *r, pp_http_cb cb, void *data,
                 pp_http_req_t **out);
/* The callback fires with -ECANCELED on a later turn of the loop; nothing
 * happens if it has fired already or is about to. */
void pp_http_cancel(pp_http_req_t *req);

/* For the sign hook: adds a header to this attempt only. */
int pp_http_req_add_header(pp_http_req_t *req, const char *name, const char *value);
/* The attempt about to be made (1 for the first). */
unsigned pp_http_req_attempt(const pp_http_req_t *req);

/* Copies the value of response header `name` (case-insensitive, the last
 * one wins) into `out`; -ENOENT when absent, -ENOSPC when it does not fit. */
int pp_http_response_header(const pp_http_response_t *resp, const char *name, char *out,
                            size_t outlen);

typedef struct pp_http_stats_s {
    uint64_t requests;    /* started */
    uint64_t attempts;    /* sent */
    uint64_t retries;     /* attempts after the first */
    uint64_t rate_waits;  /* attempts that waited for a token */
    uint64_t resends;     /* curl's resends after a reused connection died */
    uint64_t in_flight;   /* requests not yet called back */
    double max_rate_seen; /* the most attempts started in any one-second window */
} pp_http_stats_t;

void pp_http_get_stats(const pp_http_t *h, pp_http_stats_t *out);

/* --- pure parts, for the tests ------------------------------------------- */

/* Full jitter: a value in [0, min(max, base * 2^(retry - 1))] from `rnd`
 * (uniform over 64 bits). `retry` counts from 1. */
uint64_t pp__http_backoff(uint64_t base_ms, uint64_t max_ms, unsigned retry, uint64_t rnd);

/* Parses a Retry-After value: delay-seconds or an HTTP date, relative to
 * `now`. -EINVAL when it is neither. */
int pp__http_retry_after(const char *value, time_t now, uint64_t *ms);

/* A token bucket over a monotonic clock in microseconds. */
typedef struct pp__http_bucket_s {
    double rate;     /* tokens per second; 0 = unlimited */
    double capacity; /* burst */
    double tokens;
    uint64_t last_us;
} pp__http_bucket_t;

void pp__http_bucket_init(pp__http_bucket_t *b, double rate, unsigned burst, uint64_t now_us);
/* Takes a token and returns 0, or returns how many ms to wait for one. */
uint64_t pp__http_bucket_take(pp__http_bucket_t *b, uint64_t now_us);

/* Maps a CURLcode to a negative errno, and says whether it is worth
 * another attempt. */
int pp__http_curl_errno(int curl_code, int *retryable);

#endif
