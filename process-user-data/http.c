#include "http.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/cleanup.h"

uint64_t pud_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void pud_http_resp_init(pud_http_resp_t *resp)
{
    resp->status = 0;
    pp_buf_init(&resp->body, 0);
    resp->captured[0] = '\0';
}

void pud_http_resp_free(pud_http_resp_t *resp)
{
    /* Bodies may hold tokens. */
    if (resp->body.data != NULL)
        explicit_bzero(resp->body.data, resp->body.cap);
    pp_buf_free(&resp->body);
    resp->captured[0] = '\0';
}

/* CURLcode to errno, in one place (style.md 7). */
static const struct {
    CURLcode code;
    int err;
} curl_errors[] = {
    {CURLE_OPERATION_TIMEDOUT, -ETIMEDOUT},
    {CURLE_COULDNT_CONNECT, -ECONNREFUSED},
    {CURLE_COULDNT_RESOLVE_HOST, -EHOSTUNREACH},
    {CURLE_COULDNT_RESOLVE_PROXY, -EHOSTUNREACH},
    {CURLE_GOT_NOTHING, -ECONNRESET},
    {CURLE_RECV_ERROR, -ECONNRESET},
    {CURLE_SEND_ERROR, -ECONNRESET},
    {CURLE_OUT_OF_MEMORY, -ENOMEM},
    {CURLE_URL_MALFORMAT, -EINVAL},
    {CURLE_UNSUPPORTED_PROTOCOL, -EINVAL},
    {CURLE_FILESIZE_EXCEEDED, -EMSGSIZE},
};

int pud_http_unreachable(int code)
{
    return code == -ETIMEDOUT || code == -ECONNREFUSED || code == -ECONNRESET ||
           code == -EHOSTUNREACH;
}

typedef struct xfer_s {
    pud_http_resp_t *resp;
    size_t max_body;
    const char *capture;
    int too_big;
} xfer_t;

static size_t on_body(char *p, size_t size, size_t n, void *data)
{
    xfer_t *x = data;
    size_t len = size * n;
    if (len > x->max_body - x->resp->body.len) {
        x->too_big = 1;
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    if (pp_buf_append(&x->resp->body, p, len) < 0)
        return 0;
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *data)
{
    xfer_t *x = data;
    size_t len = size * n;
    /* A new status line (after 100 Continue) starts a new header set. */
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        x->resp->captured[0] = '\0';
        return len;
    }
    if (x->capture == NULL)
        return len;
    size_t nl = strlen(x->capture);
    if (len <= nl || p[nl] != ':' || strncasecmp(p, x->capture, nl) != 0)
        return len;
    const char *v = p + nl + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vl = (size_t)(end - v);
    if (vl >= sizeof(x->resp->captured))
        vl = sizeof(x->resp->captured) - 1;
    memcpy(x->resp->captured, v, vl);
    x->resp->captured[vl] = '\0';
    return len;
}

static void free_slist(struct curl_slist **l)
{
    curl_slist_free_all(*l);
}

static void cleanup_easy(CURL **c)
{
    if (*c != NULL)
        curl_easy_cleanup(*c);
}

int pud_http_do(const pud_http_req_t *req, pud_http_resp_t *resp, pp_error_t *err)
{
    __attribute__((cleanup(cleanup_easy))) CURL *c = curl_easy_init();
    __attribute__((cleanup(free_slist))) struct curl_slist *hdrs = NULL;
    if (c == NULL)
        return pp_error_set(err, -ENOMEM, "curl: cannot create a handle");
    /* No "Expect: 100-continue" round trip for PUT bodies. */
    struct curl_slist *t = curl_slist_append(hdrs, "Expect:");
    if (t == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    hdrs = t;
    for (size_t i = 0; req->headers != NULL && req->headers[i] != NULL; i++) {
        t = curl_slist_append(hdrs, req->headers[i]);
        if (t == NULL)
            return pp_error_set(err, -ENOMEM, "out of memory");
        hdrs = t;
    }
    xfer_t x = {.resp = resp, .max_body = req->max_body, .capture = req->capture};
    char errbuf[CURL_ERROR_SIZE] = "";
    long timeout =
        req->timeout_ms > 0 && req->timeout_ms < (uint64_t)LONG_MAX ? (long)req->timeout_ms : 1;
    CURLcode cc = CURLE_OK;
#define SETOPT(opt, val)                                                                           \
    if (cc == CURLE_OK)                                                                            \
    cc = curl_easy_setopt(c, opt, val)
    SETOPT(CURLOPT_URL, req->url);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_NOPROXY, "*");
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_TIMEOUT_MS, timeout);
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, timeout);
    SETOPT(CURLOPT_HTTPHEADER, hdrs);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, &x);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, &x);
    SETOPT(CURLOPT_ERRORBUFFER, errbuf);
    SETOPT(CURLOPT_USERAGENT, "process-user-data");
    if (strcmp(req->method, "GET") != 0) {
        SETOPT(CURLOPT_CUSTOMREQUEST, req->method);
        SETOPT(CURLOPT_POSTFIELDS, req->body != NULL ? req->body : "");
        SETOPT(CURLOPT_POSTFIELDSIZE, (long)req->body_len);
    }
#undef SETOPT
    if (cc != CURLE_OK)
        return pp_error_set(err, -EINVAL, "curl: %s", curl_easy_strerror(cc));

    cc = curl_easy_perform(c);
    if (x.too_big)
        return pp_error_set(err, -EMSGSIZE, "answer larger than the limit of %zu bytes",
                            req->max_body);
    if (cc != CURLE_OK) {
        int code = -EIO;
        for (size_t i = 0; i < PP_ARRAY_SIZE(curl_errors); i++)
            if (curl_errors[i].code == cc)
                code = curl_errors[i].err;
        return pp_error_set(err, code, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    return 0;
}
