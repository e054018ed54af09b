/* The pure parts of the HTTP client: backoff, Retry-After, the token bucket
 * and the one translation of CURLcode into errno. */
#include "providers/http/http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "util/cleanup.h"

uint64_t pp__http_backoff(uint64_t base_ms, uint64_t max_ms, unsigned retry, uint64_t rnd)
{
    if (retry == 0)
        return 0;
    uint64_t ceiling = base_ms;
    for (unsigned i = 1; i < retry && ceiling < max_ms; i++)
        ceiling = ceiling > UINT64_MAX / 2 ? UINT64_MAX : ceiling * 2;
    if (ceiling > max_ms)
        ceiling = max_ms;
    if (ceiling == UINT64_MAX)
        return rnd;
    return rnd % (ceiling + 1);
}

int pp__http_retry_after(const char *value, time_t now, uint64_t *ms)
{
    if (value == NULL)
        return -EINVAL;
    while (*value == ' ' || *value == '\t')
        value++;
    if (*value >= '0' && *value <= '9') {
        char *end = NULL;
        errno = 0;
        unsigned long long s = strtoull(value, &end, 10);
        while (end != NULL && (*end == ' ' || *end == '\t'))
            end++;
        if (errno != 0 || end == NULL || *end != '\0' || s > 86400ULL * 365)
            return -EINVAL;
        *ms = (uint64_t)s * 1000;
        return 0;
    }
    time_t when = curl_getdate(value, NULL);
    if (when == (time_t)-1)
        return -EINVAL;
    *ms = when > now ? (uint64_t)(when - now) * 1000 : 0;
    return 0;
}

void pp__http_bucket_init(pp__http_bucket_t *b, double rate, unsigned burst, uint64_t now_us)
{
    b->rate = rate > 0 ? rate : 0;
    double cap = burst > 0 ? (double)burst : (rate >= 1 ? rate : 1);
    b->capacity = cap;
    b->tokens = cap;
    b->last_us = now_us;
}

uint64_t pp__http_bucket_take(pp__http_bucket_t *b, uint64_t now_us)
{
    if (b->rate <= 0)
        return 0;
    if (now_us > b->last_us) {
        b->tokens += (double)(now_us - b->last_us) * b->rate / 1e6;
        if (b->tokens > b->capacity)
            b->tokens = b->capacity;
        b->last_us = now_us;
    }
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }
    /* Round up, so that the next look finds the token there. */
    uint64_t ms = (uint64_t)((1.0 - b->tokens) * 1000.0 / b->rate) + 1;
    return ms;
}

/* CURLcode -> errno, and whether another attempt may succeed. Codes not
 * listed are -EIO and final. */
static const struct {
    CURLcode code;
    int err;
    int retry;
} curl_errors[] = {
    {CURLE_UNSUPPORTED_PROTOCOL, -EPROTONOSUPPORT, 0},
    {CURLE_URL_MALFORMAT, -EINVAL, 0},
    {CURLE_COULDNT_RESOLVE_PROXY, -EHOSTUNREACH, 1},
    {CURLE_COULDNT_RESOLVE_HOST, -EHOSTUNREACH, 1},
    {CURLE_COULDNT_CONNECT, -ECONNREFUSED, 1},
    {CURLE_WEIRD_SERVER_REPLY, -EPROTO, 1},
    {CURLE_HTTP2, -EPROTO, 1},
    {CURLE_HTTP2_STREAM, -EPROTO, 1},
    {CURLE_PARTIAL_FILE, -ECONNRESET, 1},
    {CURLE_GOT_NOTHING, -ECONNRESET, 1},
    {CURLE_SEND_ERROR, -ECONNRESET, 1},
    {CURLE_RECV_ERROR, -ECONNRESET, 1},
    {CURLE_OPERATION_TIMEDOUT, -ETIMEDOUT, 1},
    {CURLE_SSL_CONNECT_ERROR, -EPROTO, 1},
    {CURLE_PROXY, -EPROTO, 1},
    {CURLE_PEER_FAILED_VERIFICATION, -EPROTO, 0},
    {CURLE_SSL_CACERT_BADFILE, -ENOENT, 0},
    {CURLE_SSL_CERTPROBLEM, -EINVAL, 0},
    {CURLE_FILESIZE_EXCEEDED, -EMSGSIZE, 0},
    {CURLE_TOO_MANY_REDIRECTS, -ELOOP, 0},
    {CURLE_OUT_OF_MEMORY, -ENOMEM, 0},
    {CURLE_ABORTED_BY_CALLBACK, -ECANCELED, 0},
    {CURLE_WRITE_ERROR, -EIO, 0},
    {CURLE_READ_ERROR, -EIO, 0},
    {CURLE_BAD_FUNCTION_ARGUMENT, -EINVAL, 0},
};

int pp__http_curl_errno(int curl_code, int *retryable)
{
    for (size_t i = 0; i < PP_ARRAY_SIZE(curl_errors); i++) {
        if ((int)curl_errors[i].code == curl_code) {
            if (retryable != NULL)
                *retryable = curl_errors[i].retry;
            return curl_errors[i].err;
        }
    }
    if (retryable != NULL)
        *retryable = 0;
    return curl_code == CURLE_OK ? 0 : -EIO;
}
