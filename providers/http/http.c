/* libcurl multi on the libuv loop, with deadlines, retries and a rate limit.
 *
 * A request is a small state machine: it waits in the rate queue for a
 * token, runs one attempt on the multi handle, and then either finishes or
 * waits out a backoff on its own timer and queues again. Every request owns
 * one uv_timer (backoff and the deadline while queued); it finishes by
 * closing that timer, and the user's callback runs from the close callback,
 * so it never runs inside pp_http_send(), pp_http_cancel() or
 * pp_http_free(). The client is freed when every handle it counted has
 * closed. */
#include "providers/http/http.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <curl/curl.h>

#include "util/buf.h"
#include "util/cleanup.h"
#include "util/log.h"

#define COMP "http"

#define DEF_MAX_ATTEMPTS    5
#define DEF_BACKOFF_BASE_MS 100
#define DEF_BACKOFF_MAX_MS  20000
#define DEF_TIMEOUT_MS      60000
#define DEF_ATTEMPT_MS      20000
#define DEF_CONNECT_MS      10000
#define RATE_WINDOW         4096 /* attempt start times kept for the stats */

typedef struct sock_s {
    uv_poll_t poll;
    curl_socket_t fd;
    pp_http_t *h;
    struct sock_s *prev, *next;
} sock_t;

enum req_state { RQ_QUEUED, RQ_RUNNING, RQ_BACKOFF, RQ_DONE };

struct pp_http_req_s {
    pp_http_t *h;
    pp_http_req_t *prev, *next;   /* h->reqs */
    pp_http_req_t *qnext, *qprev; /* h->queue, while RQ_QUEUED */
    enum req_state state;
    CURL *easy;
    int in_multi;
    uv_timer_t timer;

    char *method;
    char *url;
    char *log_url;      /* without query and user info */
    char operation[64]; /* for metrics */
    uint64_t queued_ns; /* when it last joined the queue for a token */
    struct curl_slist *headers;
    struct curl_slist *attempt_headers;
    struct curl_slist *sent_headers; /* headers + attempt_headers, for this attempt */
    uint8_t *body;
    size_t body_len;
    unsigned flags;
    pp_http_sign_cb sign;
    void *sign_arg;
    pp_http_cb cb;
    void *data;

    uint64_t start_ms, deadline_ms, attempt_timeout_ms;
    unsigned attempt;
    pp_buf_t rbody, rhdr;
    /* The last answer's buffers while a retry fills rbody and rhdr: `resp`
     * points into them, and a retry that ends without an answer of its own
     * (the deadline) finishes with that answer. */
    pp_buf_t last_body, last_hdr;
    int resp_in_rbody; /* `resp` points into rbody and rhdr, not last_* */
    int body_capped, hdr_capped;
    unsigned sends; /* this attempt's sends: curl resends on a dead reused connection */
    int rate_abort; /* a resend found no token and was stopped */
    char errbuf[CURL_ERROR_SIZE];

    /* result */
    int status;
    int have_resp;
    pp_http_response_t resp;
    pp_error_t err;
};

struct pp_http_s {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t curl_timer;
    uv_timer_t rate_timer;
    char *name;
    char *ca_bundle;
    char *ca_pem;
    char *user_agent;
    pp_http_config_t cfg;
    pp__http_bucket_t bucket;
    pp_http_req_t *reqs;
    pp_http_req_t *qhead, *qtail;
    sock_t *socks;
    uint64_t rng;
    int closing;
    unsigned pending; /* handles not yet closed, and requests not yet called back */
    pp_http_stats_t stats;
    pp_metric_t *m_calls, *m_duration, *m_throttles, *m_retries;
    pp_series_t *m_rate_wait;
    uint64_t starts[RATE_WINDOW];
    size_t nstarts, first;
};

static uv_once_t curl_once = UV_ONCE_INIT;
static CURLcode curl_init_rc;

/* libcurl's global state is set up once per process, as it requires. */
static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static uint64_t next_rand(pp_http_t *h)
{
    /* xorshift64*: jitter needs spread, not secrecy. */
    uint64_t x = h->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    h->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void maybe_free(pp_http_t *h)
{
    if (!h->closing || h->pending > 0)
        return;
    free(h->name);
    free(h->ca_bundle);
    free(h->ca_pem);
    free(h->user_agent);
    free(h);
}

static void handle_closed(uv_handle_t *hd)
{
    pp_http_t *h = hd->data;
    h->pending--;
    maybe_free(h);
}

/* --- sockets and timers: curl <-> libuv ------------------------------------ */

static void check_done(pp_http_t *h);

static void sock_closed(uv_handle_t *hd)
{
    sock_t *sk = container_of((uv_poll_t *)hd, sock_t, poll);
    pp_http_t *h = sk->h;
    free(sk);
    h->pending--;
    maybe_free(h);
}

static void sock_close(sock_t *sk)
{
    pp_http_t *h = sk->h;
    if (sk->prev != NULL)
        sk->prev->next = sk->next;
    else
        h->socks = sk->next;
    if (sk->next != NULL)
        sk->next->prev = sk->prev;
    uv_close((uv_handle_t *)&sk->poll, sock_closed);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_t *sk = container_of(p, sock_t, poll);
    pp_http_t *h = sk->h;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running = 0;
    curl_multi_socket_action(h->multi, sk->fd, flags, &running);
    check_done(h);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    pp_http_t *h = userp;
    sock_t *sk = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL) {
            if (h->multi != NULL)
                curl_multi_assign(h->multi, fd, NULL);
            sock_close(sk);
        }
        return 0;
    }
    if (h->closing)
        return 0;
    if (sk == NULL) {
        sk = calloc(1, sizeof(*sk));
        if (sk == NULL)
            return -1;
        if (uv_poll_init_socket(h->loop, &sk->poll, fd) < 0) {
            free(sk);
            return -1;
        }
        sk->fd = fd;
        sk->h = h;
        sk->next = h->socks;
        if (h->socks != NULL)
            h->socks->prev = sk;
        h->socks = sk;
        h->pending++;
        curl_multi_assign(h->multi, fd, sk);
    }
    int ev = 0;
    if (what & CURL_POLL_IN)
        ev |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        ev |= UV_WRITABLE;
    return uv_poll_start(&sk->poll, ev, on_poll) < 0 ? -1 : 0;
}

static void on_curl_timer(uv_timer_t *t)
{
    pp_http_t *h = t->data;
    int running = 0;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

static int on_timer_set(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    pp_http_t *h = userp;
    if (h->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&h->curl_timer);
    else
        uv_timer_start(&h->curl_timer, on_curl_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* --- requests ---------------------------------------------------------------- */

static void start_attempt(pp_http_req_t *req);
static void pump(pp_http_t *h);

/* Headers and bodies carry credentials (a bearer token, a signature, a
 * client secret in a form): cleared before they are freed. */
static void slist_wipe_free(struct curl_slist *l)
{
    for (struct curl_slist *s = l; s != NULL; s = s->next)
        explicit_bzero(s->data, strlen(s->data));
    curl_slist_free_all(l);
}

static void body_wipe_free(uint8_t *body, size_t len)
{
    if (body != NULL)
        explicit_bzero(body, len + 1);
    free(body);
}

static void req_closed(uv_handle_t *hd)
{
    pp_http_req_t *req = container_of((uv_timer_t *)hd, pp_http_req_t, timer);
    pp_http_t *h = req->h;
    if (req->status < 0)
        req->cb(req->status, NULL, &req->err, req->data);
    else
        req->cb(0, &req->resp, NULL, req->data);
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        h->reqs = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    if (req->easy != NULL)
        curl_easy_cleanup(req->easy);
    slist_wipe_free(req->headers);
    slist_wipe_free(req->attempt_headers);
    slist_wipe_free(req->sent_headers);
    pp_buf_free(&req->rbody);
    pp_buf_free(&req->rhdr);
    pp_buf_free(&req->last_body);
    pp_buf_free(&req->last_hdr);
    free(req->method);
    free(req->url);
    free(req->log_url);
    body_wipe_free(req->body, req->body_len);
    free(req);
    h->stats.in_flight--;
    h->pending--;
    maybe_free(h);
}

static void dequeue(pp_http_req_t *req)
{
    pp_http_t *h = req->h;
    if (req->qprev != NULL)
        req->qprev->qnext = req->qnext;
    else
        h->qhead = req->qnext;
    if (req->qnext != NULL)
        req->qnext->qprev = req->qprev;
    else
        h->qtail = req->qprev;
    req->qnext = req->qprev = NULL;
}

static void detach(pp_http_req_t *req)
{
    if (req->state == RQ_QUEUED)
        dequeue(req);
    if (req->in_multi) {
        curl_multi_remove_handle(req->h->multi, req->easy);
        req->in_multi = 0;
    }
    uv_timer_stop(&req->timer);
}

/* The result label of a finished request. */
static const char *result_of(const pp_http_req_t *req)
{
    if (req->status == 0)
        return req->resp.status < 400 ? "ok" : req->resp.status < 500 ? "http_4xx" : "http_5xx";
    switch (req->status) {
    case -ETIMEDOUT:
        return "timeout";
    case -ECANCELED:
        return "canceled";
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -EHOSTUNREACH:
    case -ENETUNREACH:
    case -EPROTO:
        return "network";
    default:
        return "error";
    }
}

static void count_call(const pp_http_req_t *req)
{
    const pp_http_t *h = req->h;
    if (h->m_calls == NULL)
        return;
    pp_series_inc(pp_metric_at(h->m_calls, h->name, req->operation, result_of(req)));
    pp_series_observe(pp_metric_at(h->m_duration, h->name, req->operation),
                      (double)(now_ms() - req->start_ms) / 1000.0);
}

/* Ends the request; the callback runs when the timer has closed. */
static void finish(pp_http_req_t *req, int status)
{
    if (req->state == RQ_DONE)
        return;
    detach(req);
    req->state = RQ_DONE;
    req->status = status;
    count_call(req);
    if (status == 0) {
        PP_DEBUG(COMP, "%s: %s %s: %ld after %u attempt(s), %" PRIu64 " ms", req->h->name,
                 req->method, req->log_url, req->resp.status, req->attempt,
                 now_ms() - req->start_ms);
    } else {
        PP_DEBUG(COMP, "%s: %s %s: failed after %u attempt(s), %" PRIu64 " ms: %s", req->h->name,
                 req->method, req->log_url, req->attempt, now_ms() - req->start_ms,
                 uv_strerror(status));
    }
    uv_close((uv_handle_t *)&req->timer, req_closed);
}

static void fail(pp_http_req_t *req, int code, const char *fmt, const char *detail)
{
    pp_error_set(&req->err, code, fmt, req->h->name, req->method, req->log_url, detail);
    finish(req, code);
}

static void on_deadline(uv_timer_t *t)
{
    pp_http_req_t *req = container_of(t, pp_http_req_t, timer);
    if (req->have_resp) {
        finish(req, 0); /* the last answer is the best there is */
        return;
    }
    fail(req, -ETIMEDOUT, "%s: %s %s: %s", "no answer before the deadline");
}

static void enqueue(pp_http_req_t *req)
{
    pp_http_t *h = req->h;
    req->state = RQ_QUEUED;
    req->queued_ns = uv_hrtime();
    req->qprev = h->qtail;
    req->qnext = NULL;
    if (h->qtail != NULL)
        h->qtail->qnext = req;
    else
        h->qhead = req;
    h->qtail = req;
    uint64_t now = now_ms();
    uint64_t left = req->deadline_ms > now ? req->deadline_ms - now : 0;
    uv_timer_start(&req->timer, on_deadline, left, 0);
}

static void on_rate_timer(uv_timer_t *t)
{
    pump(t->data);
}

static void note_start(pp_http_t *h)
{
    uint64_t now = uv_hrtime() / 1000;
    while (h->nstarts > 0 && now - h->starts[h->first] >= 1000000) {
        h->first = (h->first + 1) % RATE_WINDOW;
        h->nstarts--;
    }
    if (h->nstarts == RATE_WINDOW) {
        h->first = (h->first + 1) % RATE_WINDOW;
        h->nstarts--;
    }
    h->starts[(h->first + h->nstarts) % RATE_WINDOW] = now;
    h->nstarts++;
    if ((double)h->nstarts > h->stats.max_rate_seen)
        h->stats.max_rate_seen = (double)h->nstarts;
}

/* Starts queued requests while there are tokens; wakes up for the next one. */
static void pump(pp_http_t *h)
{
    while (h->qhead != NULL && !h->closing) {
        uint64_t wait = pp__http_bucket_take(&h->bucket, uv_hrtime() / 1000);
        if (wait > 0) {
            h->stats.rate_waits++;
            uv_timer_start(&h->rate_timer, on_rate_timer, wait, 0);
            return;
        }
        pp_http_req_t *req = h->qhead;
        dequeue(req);
        uv_timer_stop(&req->timer);
        pp_series_add(h->m_rate_wait, (double)(uv_hrtime() - req->queued_ns) / 1e9);
        start_attempt(req);
    }
}

static void on_backoff(uv_timer_t *t)
{
    pp_http_req_t *req = container_of(t, pp_http_req_t, timer);
    enqueue(req);
    pump(req->h);
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    pp_http_req_t *req = arg;
    size_t len = size * n;
    if (req->rbody.len + len > req->h->cfg.max_response || pp_buf_append(&req->rbody, p, len) < 0) {
        req->body_capped = 1;
        return 0;
    }
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    pp_http_req_t *req = arg;
    size_t len = size * n;
    /* Each response (a proxy's, an interim 100) starts a new block. */
    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0)
        req->rhdr.len = 0;
    if (req->rhdr.len + len > PP_HTTP_MAX_HEADERS || pp_buf_append(&req->rhdr, p, len) < 0) {
        req->hdr_capped = 1;
        return 0;
    }
    return len;
}

/* Called by curl each time it is about to send the request. A second send
 * in one attempt is curl's own retry after a reused connection died; it
 * needs a token like any attempt, or the server would see more requests
 * than the rate allows. Without one it is stopped, and the attempt is
 * retried through the queue. */
static int on_prereq(void *arg, char *ip, char *local_ip, int port, int local_port)
{
    pp_http_req_t *req = arg;
    (void)ip;
    (void)local_ip;
    (void)port;
    (void)local_port;
    if (++req->sends == 1)
        return CURL_PREREQFUNC_OK;
    if (pp__http_bucket_take(&req->h->bucket, uv_hrtime() / 1000) > 0) {
        req->rate_abort = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    req->h->stats.resends++;
    note_start(req->h);
    return CURL_PREREQFUNC_OK;
}

#define SETOPT(e, opt, val)                                                                        \
    do {                                                                                           \
        if (curl_easy_setopt((e), (opt), (val)) != CURLE_OK)                                       \
            return -EINVAL;                                                                        \
    } while (0)

static int configure(pp_http_req_t *req, uint64_t attempt_ms)
{
    pp_http_t *h = req->h;
    CURL *e = req->easy;
    curl_easy_reset(e);
    SETOPT(e, CURLOPT_URL, req->url);
    SETOPT(e, CURLOPT_PRIVATE, req);
    SETOPT(e, CURLOPT_NOSIGNAL, 1L);
    SETOPT(e, CURLOPT_ERRORBUFFER, req->errbuf);
    SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* TLS verification is never turned off. */
    SETOPT(e, CURLOPT_SSL_VERIFYPEER, 1L);
    SETOPT(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (h->ca_bundle != NULL)
        SETOPT(e, CURLOPT_CAINFO, h->ca_bundle);
    if (h->ca_pem != NULL) {
        /* libcurl copies the blob. */
        struct curl_blob blob = {h->ca_pem, strlen(h->ca_pem), CURL_BLOB_COPY};
        SETOPT(e, CURLOPT_CAINFO_BLOB, &blob);
    }
    SETOPT(e, CURLOPT_USERAGENT, h->user_agent);
    SETOPT(e, CURLOPT_TIMEOUT_MS, (long)attempt_ms);
    SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS,
           (long)(h->cfg.connect_timeout_ms < attempt_ms ? h->cfg.connect_timeout_ms : attempt_ms));
    SETOPT(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->cfg.max_response);
    SETOPT(e, CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(e, CURLOPT_WRITEDATA, req);
    SETOPT(e, CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(e, CURLOPT_HEADERDATA, req);
    if (req->flags & PP_HTTP_NO_PROXY)
        SETOPT(e, CURLOPT_NOPROXY, "*");
    SETOPT(e, CURLOPT_PREREQFUNCTION, on_prereq);
    SETOPT(e, CURLOPT_PREREQDATA, req);
    if (strcmp(req->method, "GET") == 0) {
        SETOPT(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "HEAD") == 0) {
        SETOPT(e, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(req->method, "POST") != 0)
            SETOPT(e, CURLOPT_CUSTOMREQUEST, req->method);
        if (req->body_len > 0 || strcmp(req->method, "DELETE") != 0) {
            SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
            SETOPT(e, CURLOPT_POSTFIELDS, req->body != NULL ? (char *)req->body : "");
        }
    }
    /* The request's headers, then this attempt's. */
    slist_wipe_free(req->sent_headers);
    req->sent_headers = NULL;
    const struct curl_slist *lists[] = {req->headers, req->attempt_headers};
    for (size_t i = 0; i < PP_ARRAY_SIZE(lists); i++) {
        for (const struct curl_slist *s = lists[i]; s != NULL; s = s->next) {
            struct curl_slist *n = curl_slist_append(req->sent_headers, s->data);
            if (n == NULL)
                return -ENOMEM;
            req->sent_headers = n;
        }
    }
    if (req->sent_headers != NULL)
        SETOPT(e, CURLOPT_HTTPHEADER, req->sent_headers);
    return 0;
}

static void start_attempt(pp_http_req_t *req)
{
    pp_http_t *h = req->h;
    uint64_t now = now_ms();
    if (now >= req->deadline_ms) {
        on_deadline(&req->timer);
        return;
    }
    req->attempt++;
    slist_wipe_free(req->attempt_headers);
    req->attempt_headers = NULL;
    if (req->sign != NULL) {
        pp_error_t serr = {0};
        int rc = req->sign(req, req->sign_arg, &serr);
        if (rc < 0) {
            req->err = serr;
            req->err.code = rc;
            pp_error_wrap(&req->err, "%s: %s %s: sign", h->name, req->method, req->log_url);
            finish(req, rc);
            return;
        }
    }
    uint64_t attempt_ms = req->deadline_ms - now;
    if (attempt_ms > req->attempt_timeout_ms)
        attempt_ms = req->attempt_timeout_ms;
    if (req->resp_in_rbody) {
        /* `resp` points into this answer's buffers: they are kept. */
        req->resp_in_rbody = 0;
        pp_buf_free(&req->last_body);
        pp_buf_free(&req->last_hdr);
        req->last_body = req->rbody;
        req->last_hdr = req->rhdr;
    } else {
        pp_buf_free(&req->rbody);
        pp_buf_free(&req->rhdr);
    }
    pp_buf_init_secret(&req->rbody, h->cfg.max_response + 1);
    pp_buf_init_secret(&req->rhdr, PP_HTTP_MAX_HEADERS + 1);
    req->body_capped = req->hdr_capped = 0;
    req->sends = 0;
    req->rate_abort = 0;
    req->errbuf[0] = '\0';
    int rc = configure(req, attempt_ms);
    if (rc < 0) {
        fail(req, rc, "%s: %s %s: %s", rc == -ENOMEM ? "out of memory" : "curl refused an option");
        return;
    }
    CURLMcode mc = curl_multi_add_handle(h->multi, req->easy);
    if (mc != CURLM_OK) {
        fail(req, -ENOMEM, "%s: %s %s: %s", curl_multi_strerror(mc));
        return;
    }
    req->in_multi = 1;
    req->state = RQ_RUNNING;
    h->stats.attempts++;
    if (req->attempt > 1) {
        h->stats.retries++;
        pp_series_inc(pp_metric_at(h->m_retries, h->name, req->operation));
    }
    note_start(h);
}

static int retryable_status(long status)
{
    static const long codes[] = {429, 500, 502, 503, 504};
    for (size_t i = 0; i < PP_ARRAY_SIZE(codes); i++)
        if (codes[i] == status)
            return 1;
    return 0;
}

/* Another attempt after `min_ms` at least, if the deadline and the attempt
 * budget allow; returns 0 when it is scheduled. */
static int schedule_retry(pp_http_req_t *req, uint64_t min_ms, const char *why)
{
    pp_http_t *h = req->h;
    if ((req->flags & PP_HTTP_NO_RETRY) || req->attempt >= h->cfg.max_attempts || h->closing)
        return -1;
    uint64_t delay =
        pp__http_backoff(h->cfg.backoff_base_ms, h->cfg.backoff_max_ms, req->attempt, next_rand(h));
    if (delay < min_ms)
        delay = min_ms;
    uint64_t now = now_ms();
    if (now + delay >= req->deadline_ms)
        return -1;
    PP_DEBUG(COMP, "%s: %s %s: attempt %u: %s; next in %" PRIu64 " ms", h->name, req->method,
             req->log_url, req->attempt, why, delay);
    req->state = RQ_BACKOFF;
    uv_timer_start(&req->timer, on_backoff, delay, 0);
    return 0;
}

static void attempt_done(pp_http_req_t *req, CURLcode code)
{
    pp_http_t *h = req->h;
    curl_multi_remove_handle(h->multi, req->easy);
    req->in_multi = 0;
    if (code == CURLE_OK) {
        long status = 0;
        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
        /* NUL-terminate both; the buffers have room for one more byte. */
        if (pp_buf_append_byte(&req->rbody, 0) < 0 || pp_buf_append_byte(&req->rhdr, 0) < 0) {
            fail(req, -ENOMEM, "%s: %s %s: %s", "out of memory");
            return;
        }
        req->have_resp = 1;
        req->resp.status = status;
        req->resp.body = (const char *)req->rbody.data;
        req->resp.body_len = req->rbody.len - 1;
        req->resp.headers = (const char *)req->rhdr.data;
        req->resp.headers_len = req->rhdr.len - 1;
        req->resp.attempts = req->attempt;
        req->resp_in_rbody = 1;
        pp_buf_free(&req->last_body); /* an earlier answer, no longer pointed to */
        pp_buf_free(&req->last_hdr);
        pp_http_verdict_t v = PP_HTTP_DEFAULT;
        if (h->cfg.classify != NULL)
            v = h->cfg.classify(&req->resp, h->cfg.classify_arg);
        int retry = v == PP_HTTP_RETRY || (v == PP_HTTP_DEFAULT && retryable_status(status));
        if (v == PP_HTTP_RETRY || status == 429 || status == 503)
            pp_series_inc(pp_metric_at(h->m_throttles, h->name, req->operation));
        if (retry) {
            uint64_t after = 0;
            char ra[64];
            if (pp_http_response_header(&req->resp, "Retry-After", ra, sizeof(ra)) == 0)
                pp__http_retry_after(ra, time(NULL), &after);
            char why[32];
            snprintf(why, sizeof(why), "HTTP %ld", status);
            if (schedule_retry(req, after, why) == 0)
                return;
        }
        finish(req, 0);
        return;
    }
    if (req->body_capped || req->hdr_capped) {
        char detail[96];
        snprintf(detail, sizeof(detail), "the response is larger than %zu bytes",
                 req->body_capped ? h->cfg.max_response : PP_HTTP_MAX_HEADERS);
        fail(req, -EMSGSIZE, "%s: %s %s: %s", detail);
        return;
    }
    int retryable = 0;
    int err = pp__http_curl_errno(code, &retryable);
    if (req->rate_abort) {
        /* The connection died and the resend had to wait for a token. */
        err = -ECONNRESET;
        retryable = 1;
    }
    char detail[CURL_ERROR_SIZE + 64];
    snprintf(detail, sizeof(detail), "%s%s%s", curl_easy_strerror(code), req->errbuf[0] ? ": " : "",
             req->errbuf);
    if (retryable && schedule_retry(req, 0, curl_easy_strerror(code)) == 0)
        return;
    if (req->have_resp && err == -ETIMEDOUT) {
        finish(req, 0);
        return;
    }
    if (code == CURLE_PEER_FAILED_VERIFICATION)
        fail(req, err, "%s: %s %s: TLS certificate verification failed: %s", detail);
    else
        fail(req, err, "%s: %s %s: %s", detail);
}

static void check_done(pp_http_t *h)
{
    CURLMsg *msg;
    int left;
    while (h->multi != NULL && (msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        pp_http_req_t *req = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&req);
        if (req != NULL && req->state == RQ_RUNNING)
            attempt_done(req, code);
    }
    pump(h);
}

/* --- public API ------------------------------------------------------------- */

/* The URL as logged: scheme, host, port and path; never the query or user
 * info, where credentials can travel. */
static int log_url(const char *url, char **out)
{
    CURLU *u = curl_url();
    if (u == NULL)
        return -ENOMEM;
    int rc = -EINVAL;
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        goto out;
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
        goto out;
    curl_url_get(u, CURLUPART_PORT, &port, 0);
    curl_url_get(u, CURLUPART_PATH, &path, 0);
    size_t n =
        strlen(scheme) + strlen(host) + (port ? strlen(port) : 0) + (path ? strlen(path) : 0) + 8;
    *out = malloc(n);
    rc = -ENOMEM;
    if (*out != NULL) {
        snprintf(*out, n, "%s://%s%s%s%s", scheme, host, port ? ":" : "", port ? port : "",
                 path ? path : "/");
        rc = 0;
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return rc;
}

static char *dup_or_null(const char *s, int *oom)
{
    if (s == NULL)
        return NULL;
    char *d = strdup(s);
    if (d == NULL)
        *oom = 1;
    return d;
}

int pp_http_new(uv_loop_t *loop, const pp_http_config_t *cfg, pp_http_t **out, pp_error_t *err)
{
    if (loop == NULL || cfg == NULL || out == NULL)
        return pp_error_set(err, -EINVAL, "http: missing argument");
    uv_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return pp_error_set(err, -EIO, "http: libcurl: %s", curl_easy_strerror(curl_init_rc));
    if (cfg->rate < 0 || cfg->rate > 1e6)
        return pp_error_set(err, -EINVAL, "http: rate %g is not from 0 to 1000000", cfg->rate);
    pp_http_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return pp_error_set(err, -ENOMEM, "http: out of memory");
    h->loop = loop;
    h->cfg = *cfg;
    int oom = 0;
    h->name = dup_or_null(cfg->name ? cfg->name : "http", &oom);
    h->ca_bundle = dup_or_null(cfg->ca_bundle, &oom);
    h->ca_pem = dup_or_null(cfg->ca_pem, &oom);
    h->user_agent = dup_or_null(cfg->user_agent ? cfg->user_agent : "peerpod", &oom);
    if (oom) {
        free(h->name);
        free(h->ca_bundle);
        free(h->ca_pem);
        free(h->user_agent);
        free(h);
        return pp_error_set(err, -ENOMEM, "http: out of memory");
    }
    h->cfg.name = h->name;
    h->cfg.ca_bundle = h->ca_bundle;
    h->cfg.ca_pem = h->ca_pem;
    h->cfg.user_agent = h->user_agent;
#define DEF(f, v)                                                                                  \
    if (h->cfg.f == 0)                                                                             \
    h->cfg.f = (v)
    DEF(max_attempts, DEF_MAX_ATTEMPTS);
    DEF(backoff_base_ms, DEF_BACKOFF_BASE_MS);
    DEF(backoff_max_ms, DEF_BACKOFF_MAX_MS);
    DEF(timeout_ms, DEF_TIMEOUT_MS);
    DEF(attempt_timeout_ms, DEF_ATTEMPT_MS);
    DEF(connect_timeout_ms, DEF_CONNECT_MS);
    DEF(max_response, PP_HTTP_DEFAULT_MAX_RESPONSE);
#undef DEF
    pp__http_bucket_init(&h->bucket, h->cfg.rate, h->cfg.burst, uv_hrtime() / 1000);
    pp_metrics_t *m = cfg->metrics;
    h->m_calls = pp_metrics_counter(m, "peerpod_cloud_api_calls_total",
                                    "Cloud API calls by provider, operation and result.",
                                    "provider,operation,result");
    h->m_duration = pp_metrics_histogram(m, "peerpod_cloud_api_call_duration_seconds",
                                         "Cloud API calls' duration, retries and waits included.",
                                         "provider,operation", pp_metrics_seconds_buckets,
                                         pp_metrics_seconds_nbuckets);
    h->m_throttles =
        pp_metrics_counter(m, "peerpod_cloud_api_throttles_total",
                           "Cloud API answers that asked to slow down.", "provider,operation");
    h->m_retries = pp_metrics_counter(m, "peerpod_cloud_api_retries_total",
                                      "Cloud API attempts after the first.", "provider,operation");
    h->m_rate_wait = pp_metric_at(
        pp_metrics_counter(m, "peerpod_cloud_api_rate_limit_wait_seconds_total",
                           "Time cloud API calls waited for the rate limit.", "provider"),
        h->name);
    if (getrandom(&h->rng, sizeof(h->rng), GRND_NONBLOCK) != (ssize_t)sizeof(h->rng))
        h->rng = uv_hrtime();
    h->rng |= 1;

    const char *what = "curl_multi_init";
    if ((h->multi = curl_multi_init()) == NULL)
        goto fail;
    what = "curl_multi_setopt";
    if (curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) != CURLM_OK ||
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer_set) != CURLM_OK ||
        curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h) != CURLM_OK)
        goto fail;
    what = "uv_timer_init";
    if (uv_timer_init(loop, &h->curl_timer) < 0)
        goto fail;
    h->curl_timer.data = h;
    if (uv_timer_init(loop, &h->rate_timer) < 0) {
        h->closing = 1;
        h->pending = 1;
        curl_multi_cleanup(h->multi);
        h->multi = NULL;
        uv_close((uv_handle_t *)&h->curl_timer, handle_closed);
        return pp_error_set(err, -ENOMEM, "http: %s failed", what);
    }
    h->rate_timer.data = h;
    h->pending = 2;
    *out = h;
    return 0;

fail:
    if (h->multi != NULL)
        curl_multi_cleanup(h->multi);
    free(h->name);
    free(h->ca_bundle);
    free(h->ca_pem);
    free(h->user_agent);
    free(h);
    return pp_error_set(err, -ENOMEM, "http: %s failed", what);
}

void pp_http_free(pp_http_t *h)
{
    if (h == NULL || h->closing)
        return;
    h->closing = 1;
    for (pp_http_req_t *r = h->reqs; r != NULL; r = r->next) {
        if (r->state != RQ_DONE) {
            pp_error_set(&r->err, -ECANCELED, "%s: %s %s: cancelled: the client is closing",
                         h->name, r->method, r->log_url);
            finish(r, -ECANCELED);
        }
    }
    /* Removing the transfers closed their sockets; the cleanup closes the
     * cached connections, whose watchers are closed here. */
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    while (h->socks != NULL)
        sock_close(h->socks);
    uv_close((uv_handle_t *)&h->curl_timer, handle_closed);
    uv_close((uv_handle_t *)&h->rate_timer, handle_closed);
}

static int add_header_line(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);
    if (n == NULL)
        return -ENOMEM;
    *list = n;
    return 0;
}

static int valid_header(const char *line)
{
    const char *colon = strchr(line, ':');
    if (colon == NULL || colon == line)
        return 0;
    return strpbrk(line, "\r\n") == NULL;
}

int pp_http_send(pp_http_t *h, const pp_http_request_t *r, pp_http_cb cb, void *data,
                 pp_http_req_t **out)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "HEAD"};
    if (h == NULL || r == NULL || cb == NULL || r->method == NULL || r->url == NULL)
        return -EINVAL;
    if (h->closing)
        return -ECANCELED;
    int known = 0;
    for (size_t i = 0; i < PP_ARRAY_SIZE(methods); i++)
        known |= strcmp(methods[i], r->method) == 0;
    if (!known)
        return -EINVAL;
    pp_http_req_t *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return -ENOMEM;
    req->h = h;
    int rc = log_url(r->url, &req->log_url);
    if (rc < 0)
        goto fail;
    rc = -ENOMEM;
    if ((req->method = strdup(r->method)) == NULL || (req->url = strdup(r->url)) == NULL)
        goto fail;
    snprintf(req->operation, sizeof(req->operation), "%s",
             r->operation != NULL ? r->operation : r->method);
    /* One more byte so that POSTFIELDS is never NULL and a text body ends in NUL. */
    if ((req->body = malloc(r->body_len + 1)) == NULL)
        goto fail;
    if (r->body_len > 0)
        memcpy(req->body, r->body, r->body_len);
    req->body[r->body_len] = 0;
    req->body_len = r->body_len;
    for (size_t i = 0; r->headers != NULL && r->headers[i] != NULL; i++) {
        if (!valid_header(r->headers[i])) {
            rc = -EINVAL;
            goto fail;
        }
        if (add_header_line(&req->headers, r->headers[i]) < 0)
            goto fail;
    }
    /* No "Expect: 100-continue" round trip for larger bodies. */
    if (add_header_line(&req->headers, "Expect:") < 0)
        goto fail;
    if ((req->easy = curl_easy_init()) == NULL)
        goto fail;
    if (uv_timer_init(h->loop, &req->timer) < 0)
        goto fail;
    req->flags = r->flags;
    req->sign = r->sign;
    req->sign_arg = r->sign_arg;
    req->cb = cb;
    req->data = data;
    req->start_ms = now_ms();
    req->deadline_ms = req->start_ms + (r->timeout_ms ? r->timeout_ms : h->cfg.timeout_ms);
    req->attempt_timeout_ms =
        r->attempt_timeout_ms ? r->attempt_timeout_ms : h->cfg.attempt_timeout_ms;
    pp_buf_init_secret(&req->rbody, h->cfg.max_response + 1);
    pp_buf_init_secret(&req->rhdr, PP_HTTP_MAX_HEADERS + 1);
    req->next = h->reqs;
    if (h->reqs != NULL)
        h->reqs->prev = req;
    h->reqs = req;
    h->pending++;
    h->stats.requests++;
    h->stats.in_flight++;
    enqueue(req);
    if (out != NULL)
        *out = req;
    pump(h);
    return 0;

fail:
    if (req->easy != NULL)
        curl_easy_cleanup(req->easy);
    slist_wipe_free(req->headers);
    body_wipe_free(req->body, req->body_len);
    free(req->url);
    free(req->method);
    free(req->log_url);
    free(req);
    return rc;
}

void pp_http_cancel(pp_http_req_t *req)
{
    if (req == NULL || req->state == RQ_DONE)
        return;
    pp_error_set(&req->err, -ECANCELED, "%s: %s %s: cancelled", req->h->name, req->method,
                 req->log_url);
    finish(req, -ECANCELED);
}

int pp_http_req_add_header(pp_http_req_t *req, const char *name, const char *value)
{
    if (req == NULL || name == NULL || value == NULL || name[0] == '\0' ||
        strpbrk(name, ":\r\n ") != NULL || strpbrk(value, "\r\n") != NULL)
        return -EINVAL;
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = malloc(n);
    if (line == NULL)
        return -ENOMEM;
    snprintf(line, n, "%s: %s", name, value);
    int r = add_header_line(&req->attempt_headers, line);
    explicit_bzero(line, n);
    free(line);
    return r;
}

unsigned pp_http_req_attempt(const pp_http_req_t *req)
{
    return req->attempt;
}

int pp_http_response_header(const pp_http_response_t *resp, const char *name, char *out,
                            size_t outlen)
{
    if (resp == NULL || resp->headers == NULL || name == NULL)
        return -ENOENT;
    size_t nlen = strlen(name);
    const char *p = resp->headers, *end = resp->headers + resp->headers_len;
    const char *found = NULL;
    size_t flen = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            found = v;
            flen = (size_t)(ve - v);
        }
        p = eol + 1;
    }
    if (found == NULL)
        return -ENOENT;
    if (flen + 1 > outlen)
        return -ENOSPC;
    memcpy(out, found, flen);
    out[flen] = '\0';
    return 0;
}

void pp_http_get_stats(const pp_http_t *h, pp_http_stats_t *out)
{
    *out = h->stats;
}
