/* The cloud HTTP client against scripted servers on 127.0.0.1: requests and
 * headers, retries and their limits, the classify hook, Retry-After,
 * deadlines, size caps, the rate limit, cancel and close, the proxy from the
 * environment, TLS verification, and a log that never holds a secret. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "providers/http/http.h"
#include "test_http_server.h"
#include "tls/ca.h"

typedef struct result_s {
    int calls;
    int status;
    long http;
    unsigned attempts;
    char body[256];
    char msg[PP_ERROR_MAX];
    uint64_t at_ms;
} result_t;

static uv_loop_t loop;
static ths_t srv;
static int guard_fired;

static void on_done(int status, const pp_http_response_t *resp, const pp_error_t *err, void *data)
{
    result_t *r = data;
    r->calls++;
    r->status = status;
    r->at_ms = uv_hrtime() / 1000000;
    if (status == 0) {
        assert_non_null(resp);
        r->http = resp->status;
        r->attempts = resp->attempts;
        snprintf(r->body, sizeof(r->body), "%.*s", (int)resp->body_len, resp->body);
    } else {
        assert_non_null(err);
        assert_int_equal(err->code, status);
        snprintf(r->msg, sizeof(r->msg), "%s", err->message);
    }
}

static void on_guard(uv_timer_t *t)
{
    guard_fired = 1;
    uv_stop(t->loop);
}

/* Runs the loop until `*calls` reaches `want`, for at most `ms`. */
static void run_until(int *calls, int want, uint64_t ms)
{
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    guard_fired = 0;
    uv_timer_start(&guard, on_guard, ms, 0);
    while (*calls < want && !guard_fired)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (guard_fired)
        fail_msg("timed out after %llu ms: %d of %d callbacks", (unsigned long long)ms, *calls,
                 want);
}

static char url[256];

static const char *srv_url(const char *path)
{
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", srv.port, path);
    return url;
}

static pp_http_t *client(const pp_http_config_t *over)
{
    pp_http_config_t cfg = {
        .name = "test",
        .max_attempts = 4,
        .backoff_base_ms = 10,
        .backoff_max_ms = 50,
        .timeout_ms = 5000,
        .attempt_timeout_ms = 2000,
    };
    if (over != NULL)
        cfg = *over;
    pp_http_t *h = NULL;
    pp_error_t err = {0};
    int rc = pp_http_new(&loop, &cfg, &h, &err);
    if (rc < 0)
        fail_msg("pp_http_new: %s", err.message);
    return h;
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(ths_start(&loop, &srv), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ths_stop(&srv);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    return 0;
}

static void free_client(pp_http_t *h)
{
    pp_http_free(h);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static int sign_calls;

static int sign_hook(pp_http_req_t *req, void *arg, pp_error_t *err)
{
    (void)err;
    sign_calls++;
    char v[32];
    snprintf(v, sizeof(v), "attempt-%u", pp_http_req_attempt(req));
    (void)arg;
    return pp_http_req_add_header(req, "X-Signed", v);
}

static void test_basic(void **state)
{
    (void)state;
    pp_http_t *h = client(NULL);
    static const ths_reply_t replies[] = {
        {.status = 200, .body = "hello", .headers = "X-Request-Id: r-1\r\n"}};
    ths_script(&srv, replies, 1, NULL);
    const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded", "X-Custom: 1", NULL};
    pp_http_request_t r = {.method = "POST",
                           .url = srv_url("/path?q=1"),
                           .headers = hdrs,
                           .body = "a=b&c=d",
                           .body_len = 7,
                           .sign = sign_hook};
    result_t res = {0};
    sign_calls = 0;
    assert_int_equal(pp_http_send(h, &r, on_done, &res, NULL), 0);
    assert_int_equal(res.calls, 0); /* never from inside the call */
    run_until(&res.calls, 1, 5000);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.http, 200);
    assert_string_equal(res.body, "hello");
    assert_int_equal(res.attempts, 1);
    assert_int_equal(srv.nreqs, 1);
    assert_string_equal(srv.reqs[0].method, "POST");
    assert_string_equal(srv.reqs[0].target, "/path?q=1");
    assert_string_equal(srv.reqs[0].body, "a=b&c=d");
    char v[128];
    assert_non_null(ths_header(&srv.reqs[0], "X-Custom", v, sizeof(v)));
    assert_non_null(ths_header(&srv.reqs[0], "X-Signed", v, sizeof(v)));
    assert_string_equal(v, "attempt-1");
    assert_null(ths_header(&srv.reqs[0], "Expect", v, sizeof(v)));
    assert_int_equal(sign_calls, 1);

    /* GET, PUT and DELETE, and a large body (no 100-continue round trip). */
    static char big[40000];
    memset(big, 'b', sizeof(big));
    const char *methods[] = {"GET", "PUT", "DELETE", "HEAD"};
    for (size_t i = 0; i < 4; i++) {
        ths_clear(&srv);
        ths_script(&srv, NULL, 0, NULL);
        pp_http_request_t q = {.method = methods[i], .url = srv_url("/m")};
        if (i == 1) {
            q.body = big;
            q.body_len = sizeof(big);
        }
        result_t rr = {0};
        assert_int_equal(pp_http_send(h, &q, on_done, &rr, NULL), 0);
        run_until(&rr.calls, 1, 5000);
        assert_int_equal(rr.status, 0);
        assert_int_equal(rr.http, 200);
        assert_string_equal(srv.reqs[0].method, methods[i]);
        if (i == 1)
            assert_int_equal(srv.reqs[0].body_len, sizeof(big));
    }
    free_client(h);
}

static void test_sync_failures(void **state)
{
    (void)state;
    pp_http_t *h = client(NULL);
    result_t res = {0};
    pp_http_request_t r = {.method = "GET", .url = "ftp://127.0.0.1/x"};
    assert_int_equal(pp_http_send(h, &r, on_done, &res, NULL), -EINVAL);
    r.url = "not a url";
    assert_int_equal(pp_http_send(h, &r, on_done, &res, NULL), -EINVAL);
    r.url = srv_url("/");
    r.method = "BREW";
    assert_int_equal(pp_http_send(h, &r, on_done, &res, NULL), -EINVAL);
    r.method = "GET";
    const char *bad[] = {"X-Evil: a\r\nInjected: b", NULL};
    r.headers = bad;
    assert_int_equal(pp_http_send(h, &r, on_done, &res, NULL), -EINVAL);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(res.calls, 0);
    assert_int_equal(srv.nreqs, 0);
    free_client(h);
    pp_http_config_t cfg = {.rate = -1};
    pp_http_t *h2 = NULL;
    pp_error_t err = {0};
    assert_int_equal(pp_http_new(&loop, &cfg, &h2, &err), -EINVAL);
}

static void test_retry_5xx_then_ok(void **state)
{
    (void)state;
    pp_http_t *h = client(NULL);
    static const ths_reply_t replies[] = {
        {.status = 503, .body = "busy"},
        {.status = 500, .body = "oops"},
        {.status = 200, .body = "fine"},
    };
    ths_script(&srv, replies, 3, NULL);
    pp_http_request_t r = {.method = "GET", .url = srv_url("/"), .sign = sign_hook};
    result_t res = {0};
    sign_calls = 0;
    assert_int_equal(pp_http_send(h, &r, on_done, &res, NULL), 0);
    run_until(&res.calls, 1, 5000);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.http, 200);
    assert_int_equal(res.attempts, 3);
    assert_int_equal(srv.nreqs, 3);
    assert_int_equal(sign_calls, 3); /* signed again for every attempt */
    char v[64];
    assert_string_equal(ths_header(&srv.reqs[2], "X-Signed", v, sizeof(v)), "attempt-3");

    /* 404 is final; 501 too. */
    static const ths_reply_t four[] = {{.status = 404, .body = "no"}, {.status = 501}};
    ths_clear(&srv);
    ths_script(&srv, four, 2, NULL);
    for (int i = 0; i < 2; i++) {
        result_t rr = {0};
        assert_int_equal(pp_http_send(h, &r, on_done, &rr, NULL), 0);
        run_until(&rr.calls, 1, 5000);
        assert_int_equal(rr.http, i == 0 ? 404 : 501);
        assert_int_equal(rr.attempts, 1);
    }

    /* Exhausted: the last answer comes back, after max_attempts. */
    static const ths_reply_t always = {.status = 502, .body = "bad gateway"};
    ths_clear(&srv);
    ths_script(&srv, NULL, 0, &always);
    result_t ex = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &ex, NULL), 0);
    run_until(&ex.calls, 1, 5000);
    assert_int_equal(ex.status, 0);
    assert_int_equal(ex.http, 502);
    assert_int_equal(ex.attempts, 4);
    assert_int_equal(srv.nreqs, 4);

    /* PP_HTTP_NO_RETRY: one attempt. */
    ths_clear(&srv);
    r.flags = PP_HTTP_NO_RETRY;
    result_t one = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &one, NULL), 0);
    run_until(&one.calls, 1, 5000);
    assert_int_equal(one.attempts, 1);
    assert_int_equal(srv.nreqs, 1);
    free_client(h);
}

static pp_http_verdict_t classify(const pp_http_response_t *resp, void *arg)
{
    int *calls = arg;
    (*calls)++;
    if (strstr(resp->body, "<Code>Throttling</Code>") != NULL)
        return PP_HTTP_RETRY;
    if (strstr(resp->body, "<Code>InsufficientInstanceCapacity</Code>") != NULL)
        return PP_HTTP_FINAL;
    return PP_HTTP_DEFAULT;
}

static void test_classify_hook(void **state)
{
    (void)state;
    int calls = 0;
    pp_http_config_t cfg = {.name = "test",
                            .max_attempts = 5,
                            .backoff_base_ms = 5,
                            .backoff_max_ms = 20,
                            .classify = classify,
                            .classify_arg = &calls};
    pp_http_t *h = client(&cfg);
    static const ths_reply_t replies[] = {
        {.status = 400,
         .body = "<Response><Errors><Error><Code>Throttling</Code></Error></Errors>"},
        {.status = 200, .body = "done"},
        {.status = 500,
         .body = "<Response><Errors><Error><Code>InsufficientInstanceCapacity</Code>"},
    };
    ths_script(&srv, replies, 3, NULL);
    pp_http_request_t r = {.method = "POST", .url = srv_url("/")};
    result_t a = {0}, b = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &a, NULL), 0);
    run_until(&a.calls, 1, 5000);
    assert_int_equal(a.http, 200);
    assert_int_equal(a.attempts, 2); /* a 400 with a throttling code was retried */
    assert_int_equal(pp_http_send(h, &r, on_done, &b, NULL), 0);
    run_until(&b.calls, 1, 5000);
    assert_int_equal(b.http, 500);
    assert_int_equal(b.attempts, 1); /* a 500 the hook calls final was not */
    assert_int_equal(calls, 3);
    free_client(h);
}

static void test_retry_after(void **state)
{
    (void)state;
    pp_http_t *h = client(NULL);
    static const ths_reply_t replies[] = {
        {.status = 429, .headers = "Retry-After: 1\r\n"},
        {.status = 200, .body = "ok"},
    };
    ths_script(&srv, replies, 2, NULL);
    pp_http_request_t r = {.method = "GET", .url = srv_url("/")};
    result_t res = {0};
    uint64_t t0 = uv_hrtime() / 1000000;
    assert_int_equal(pp_http_send(h, &r, on_done, &res, NULL), 0);
    run_until(&res.calls, 1, 5000);
    assert_int_equal(res.http, 200);
    uint64_t gap = (srv.reqs[1].t_us - srv.reqs[0].t_us) / 1000;
    print_message("retry-after 1 s: second attempt %llu ms after the first\n",
                  (unsigned long long)gap);
    assert_true(gap >= 990);
    assert_true(res.at_ms - t0 < 3000);

    /* A Retry-After past the deadline ends the request with that answer. */
    static const ths_reply_t far = {.status = 503, .headers = "Retry-After: 60\r\n"};
    ths_clear(&srv);
    ths_script(&srv, NULL, 0, &far);
    r.timeout_ms = 1000;
    result_t f = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &f, NULL), 0);
    run_until(&f.calls, 1, 3000);
    assert_int_equal(f.status, 0);
    assert_int_equal(f.http, 503);
    assert_int_equal(srv.nreqs, 1);
    free_client(h);
}

static void test_connection_errors(void **state)
{
    (void)state;
    pp_http_t *h = client(NULL);
    /* A port with nobody listening: bind one, close it. */
    uv_tcp_t t;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(&loop, &t);
    uv_tcp_bind(&t, (const struct sockaddr *)&a, 0);
    int len = sizeof(a);
    uv_tcp_getsockname(&t, (struct sockaddr *)&a, &len);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    char u[64];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/", ntohs(a.sin_port));
    pp_http_request_t r = {.method = "GET", .url = u};
    result_t res = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &res, NULL), 0);
    run_until(&res.calls, 1, 5000);
    assert_int_equal(res.status, -ECONNREFUSED);
    print_message("refused: %s\n", res.msg);
    assert_non_null(strstr(res.msg, "GET http://127.0.0.1:"));
    pp_http_stats_t st;
    pp_http_get_stats(h, &st);
    assert_int_equal(st.attempts, 4);

    /* Dropped connections are retried. */
    static const ths_reply_t drops[] = {{.drop = 1}, {.drop = 1}, {.status = 200, .body = "ok"}};
    ths_script(&srv, drops, 3, NULL);
    r.url = srv_url("/");
    result_t d = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &d, NULL), 0);
    run_until(&d.calls, 1, 5000);
    assert_int_equal(d.status, 0);
    assert_int_equal(d.attempts, 3);
    free_client(h);
}

static void test_timeouts(void **state)
{
    (void)state;
    pp_http_config_t cfg = {.name = "test",
                            .max_attempts = 3,
                            .backoff_base_ms = 10,
                            .backoff_max_ms = 10,
                            .timeout_ms = 5000,
                            .attempt_timeout_ms = 300};
    pp_http_t *h = client(&cfg);
    /* An attempt that hangs times out and the next one answers. */
    static const ths_reply_t replies[] = {{.hang = 1}, {.status = 200, .body = "late"}};
    ths_script(&srv, replies, 2, NULL);
    pp_http_request_t r = {.method = "GET", .url = srv_url("/")};
    result_t res = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &res, NULL), 0);
    run_until(&res.calls, 1, 5000);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.attempts, 2);

    /* A retried answer, then an attempt that hangs past the request's
     * deadline: the callback gets that answer, whole (its buffers are kept
     * while the retry fills new ones). */
    static const ths_reply_t busy_then_hang[] = {
        {.status = 503, .body = "busy, try again"}, {.hang = 1}, {.hang = 1}};
    ths_clear(&srv);
    ths_script(&srv, busy_then_hang, 3, NULL);
    r.timeout_ms = 700;
    result_t last = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &last, NULL), 0);
    run_until(&last.calls, 1, 5000);
    assert_int_equal(last.status, 0);
    assert_int_equal(last.http, 503);
    assert_string_equal(last.body, "busy, try again");
    r.timeout_ms = 0;

    /* The request's deadline bounds everything. */
    static const ths_reply_t hang = {.hang = 1};
    ths_script(&srv, NULL, 0, &hang);
    cfg.attempt_timeout_ms = 5000;
    cfg.max_attempts = 10;
    pp_http_t *h2 = client(&cfg);
    r.timeout_ms = 700;
    result_t t = {0};
    uint64_t t0 = uv_hrtime() / 1000000;
    assert_int_equal(pp_http_send(h2, &r, on_done, &t, NULL), 0);
    run_until(&t.calls, 1, 5000);
    uint64_t took = t.at_ms - t0;
    print_message("deadline 700 ms: failed after %llu ms: %s\n", (unsigned long long)took, t.msg);
    assert_int_equal(t.status, -ETIMEDOUT);
    assert_true(took >= 650 && took < 1500);
    free_client(h);
    free_client(h2);
}

static void test_size_cap(void **state)
{
    (void)state;
    pp_http_config_t cfg = {.name = "test", .max_attempts = 3, .max_response = 1000};
    pp_http_t *h = client(&cfg);
    static const ths_reply_t replies[] = {{.status = 200, .body_fill = 1001},
                                          {.status = 200, .body_fill = 1000}};
    ths_script(&srv, replies, 2, NULL);
    pp_http_request_t r = {.method = "GET", .url = srv_url("/")};
    result_t a = {0}, b = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &a, NULL), 0);
    run_until(&a.calls, 1, 5000);
    assert_int_equal(a.status, -EMSGSIZE);
    assert_int_equal(srv.nreqs, 1); /* not retried */
    assert_int_equal(pp_http_send(h, &r, on_done, &b, NULL), 0);
    run_until(&b.calls, 1, 5000);
    assert_int_equal(b.status, 0);
    assert_int_equal(strlen(b.body), 255);
    free_client(h);
}

static void test_rate_limit(void **state)
{
    (void)state;
    const double rate = 20;
    const unsigned burst = 2, n = 14;
    pp_http_config_t cfg = {.name = "test", .rate = rate, .burst = burst};
    pp_http_t *h = client(&cfg);
    result_t res[14] = {{0}};
    int done = 0;
    pp_http_request_t r = {.method = "GET", .url = srv_url("/")};
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(pp_http_send(h, &r, on_done, &res[i], NULL), 0);
    for (;;) {
        done = 0;
        for (unsigned i = 0; i < n; i++)
            done += res[i].calls;
        if (done == (int)n)
            break;
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(srv.nreqs, n);
    /* Over any stretch of arrivals, no more than burst + rate * time (one
     * more for the scheduling jitter between send and arrival). */
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++) {
            double secs = (double)(srv.reqs[j].t_us - srv.reqs[i].t_us) / 1e6;
            double allowed = burst + rate * secs + 1;
            double excess = (double)(j - i + 1) - allowed;
            if (excess > worst)
                worst = excess;
        }
    }
    double span = (double)(srv.reqs[n - 1].t_us - srv.reqs[0].t_us) / 1e6;
    print_message("rate 20/s burst 2: %u requests over %.3f s\n", n, span);
    assert_true(worst <= 0);
    assert_true(span >= (n - burst) / rate - 0.05);
    pp_http_stats_t st;
    pp_http_get_stats(h, &st);
    assert_true(st.rate_waits > 0);
    assert_true(st.max_rate_seen <= burst + rate + 1);
    free_client(h);
}

static void test_cancel_and_close(void **state)
{
    (void)state;
    pp_http_config_t cfg = {.name = "test", .rate = 1, .burst = 1};
    pp_http_t *h = client(&cfg);
    static const ths_reply_t hang = {.hang = 1};
    ths_script(&srv, NULL, 0, &hang);
    pp_http_request_t r = {.method = "GET", .url = srv_url("/")};
    result_t running = {0}, queued = {0}, later = {0};
    pp_http_req_t *q1 = NULL, *q2 = NULL;
    assert_int_equal(pp_http_send(h, &r, on_done, &running, &q1), 0);
    assert_int_equal(pp_http_send(h, &r, on_done, &queued, &q2), 0);
    assert_int_equal(pp_http_send(h, &r, on_done, &later, NULL), 0);
    /* Let the first reach the server. */
    while (srv.nreqs < 1)
        uv_run(&loop, UV_RUN_ONCE);
    pp_http_cancel(q1);
    pp_http_cancel(q2);
    pp_http_cancel(q2); /* twice is fine */
    assert_int_equal(running.calls + queued.calls, 0);
    run_until(&queued.calls, 1, 2000);
    assert_int_equal(running.calls, 1);
    assert_int_equal(running.status, -ECANCELED);
    assert_int_equal(queued.status, -ECANCELED);
    /* Closing the client calls back what is left, after pp_http_free(). */
    pp_http_free(h);
    assert_int_equal(later.calls, 0);
    result_t refused = {0};
    run_until(&later.calls, 1, 2000);
    assert_int_equal(later.status, -ECANCELED);
    assert_int_equal(running.calls + queued.calls + later.calls + refused.calls, 3);
}

static void test_proxy_from_environment(void **state)
{
    (void)state;
    /* A second server stands in for the proxy. */
    ths_t proxy;
    assert_int_equal(ths_start(&loop, &proxy), 0);
    static const ths_reply_t deny = {.status = 403, .body = "no tunnels here"};
    ths_script(&proxy, NULL, 0, &deny);
    char purl[64];
    snprintf(purl, sizeof(purl), "http://127.0.0.1:%d", proxy.port);
    pp_http_t *h = client(&(pp_http_config_t){.name = "test", .max_attempts = 1});

    /* HTTPS_PROXY: the client asks the proxy for a tunnel; it never
     * resolves the name itself. */
    setenv("HTTPS_PROXY", purl, 1);
    unsetenv("NO_PROXY");
    pp_http_request_t r = {.method = "GET", .url = "https://pp-proxy-test.invalid/x"};
    result_t a = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &a, NULL), 0);
    run_until(&a.calls, 1, 5000);
    assert_true(a.status < 0);
    assert_int_equal(proxy.nreqs, 1);
    assert_string_equal(proxy.reqs[0].method, "CONNECT");
    assert_string_equal(proxy.reqs[0].target, "pp-proxy-test.invalid:443");

    /* http_proxy for plain http, and NO_PROXY exempts 127.0.0.1. */
    static const ths_reply_t ok = {.status = 200, .body = "via proxy"};
    ths_script(&proxy, NULL, 0, &ok);
    setenv("http_proxy", purl, 1);
    r.url = "http://pp-proxy-test.invalid/y";
    result_t b = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &b, NULL), 0);
    run_until(&b.calls, 1, 5000);
    assert_int_equal(b.http, 200);
    assert_string_equal(b.body, "via proxy");
    assert_int_equal(proxy.nreqs, 2);
    assert_string_equal(proxy.reqs[1].target, "http://pp-proxy-test.invalid/y");

    /* A request flagged PP_HTTP_NO_PROXY never goes through one. */
    pp_http_request_t np = {
        .method = "GET", .url = srv_url("/no-proxy"), .flags = PP_HTTP_NO_PROXY};
    result_t n = {0};
    assert_int_equal(pp_http_send(h, &np, on_done, &n, NULL), 0);
    run_until(&n.calls, 1, 5000);
    assert_int_equal(n.http, 200);
    assert_int_equal(proxy.nreqs, 2);
    assert_int_equal(srv.nreqs, 1);
    ths_clear(&srv);

    setenv("NO_PROXY", "127.0.0.1", 1);
    r.url = srv_url("/direct");
    result_t c = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &c, NULL), 0);
    run_until(&c.calls, 1, 5000);
    assert_int_equal(c.http, 200);
    assert_int_equal(proxy.nreqs, 2);
    assert_int_equal(srv.nreqs, 1);
    assert_string_equal(srv.reqs[0].target, "/direct");
    unsetenv("HTTPS_PROXY");
    unsetenv("http_proxy");
    unsetenv("NO_PROXY");
    free_client(h);
    ths_stop(&proxy);
}

static void test_tls_verification(void **state)
{
    (void)state;
    char dir[] = "/tmp/pp-http-tls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    pp_ca_t *ca = NULL;
    pp_error_t err = {0};
    pp_ca_opts_t o = {.dir = dir};
    assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), 0);
    char *cert = NULL, *key = NULL;
    assert_int_equal(pp_ca_issue_server(ca, "localhost", "127.0.0.1", 0, &cert, &key, &err), 0);
    ths_tls_t tls;
    assert_int_equal(ths_tls_start(&tls, cert, key), 0);
    char u[64], bundle[128];
    snprintf(u, sizeof(u), "https://127.0.0.1:%d/", tls.port);
    snprintf(bundle, sizeof(bundle), "%s/ca.crt", dir);

    /* Unknown issuer: refused, and not retried. */
    pp_http_t *h = client(NULL);
    pp_http_request_t r = {.method = "GET", .url = u};
    result_t a = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &a, NULL), 0);
    run_until(&a.calls, 1, 5000);
    print_message("untrusted: %s\n", a.msg);
    assert_int_equal(a.status, -EPROTO);
    assert_non_null(strstr(a.msg, "certificate"));
    free_client(h);

    /* The configured CA bundle makes it trusted. */
    pp_http_config_t cfg = {.name = "test", .ca_bundle = bundle};
    h = client(&cfg);
    result_t b = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &b, NULL), 0);
    run_until(&b.calls, 1, 5000);
    assert_int_equal(b.status, 0);
    assert_int_equal(b.http, 200);

    /* The name must match too: a certificate of the same CA for another
     * name, without the address, is refused. */
    char *cert2 = NULL, *key2 = NULL;
    assert_int_equal(pp_ca_issue_server(ca, "other.example", NULL, 0, &cert2, &key2, &err), 0);
    ths_tls_t tls2;
    assert_int_equal(ths_tls_start(&tls2, cert2, key2), 0);
    snprintf(u, sizeof(u), "https://127.0.0.1:%d/", tls2.port);
    result_t c = {0};
    r.url = u;
    assert_int_equal(pp_http_send(h, &r, on_done, &c, NULL), 0);
    run_until(&c.calls, 1, 5000);
    print_message("wrong name: %s\n", c.msg);
    assert_int_equal(c.status, -EPROTO);
    ths_tls_stop(&tls2);
    free(cert2);
    pp_ca_secret_free(key2);
    free_client(h);
    ths_tls_stop(&tls);
    free(cert);
    pp_ca_secret_free(key);
    pp_ca_free(ca);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Secrets go in headers, queries and bodies; the log (at debug level) must
 * show the requests, and none of them. */
static void test_log_has_no_secrets(void **state)
{
    (void)state;
    static const char *const secrets[] = {
        "SECRETSIGNATURE0123", "SESSIONTOKENSECRET", "QUERYSECRET42",
        "BODYSECRET77",        "RESPONSESECRET99",   "AKIDSECRETEXAMPLE",
    };
    char path[] = "/tmp/pp-http-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);

    pp_http_t *h = client(NULL);
    static const ths_reply_t replies[] = {
        {.status = 503, .body = "RESPONSESECRET99"},
        {.status = 200, .body = "RESPONSESECRET99", .headers = "X-Token: SESSIONTOKENSECRET\r\n"},
    };
    ths_script(&srv, replies, 2, NULL);
    const char *hdrs[] = {"Authorization: AWS4-HMAC-SHA256 Credential=AKIDSECRETEXAMPLE/x, "
                          "Signature=SECRETSIGNATURE0123",
                          "X-Amz-Security-Token: SESSIONTOKENSECRET", NULL};
    pp_http_request_t r = {.method = "POST",
                           .url = srv_url("/p?X-Amz-Signature=QUERYSECRET42"),
                           .headers = hdrs,
                           .body = "Token=BODYSECRET77",
                           .body_len = 18};
    result_t a = {0}, b = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &a, NULL), 0);
    run_until(&a.calls, 1, 5000);
    r.url = "http://user:QUERYSECRET42@127.0.0.1:1/?x=QUERYSECRET42";
    assert_int_equal(pp_http_send(h, &r, on_done, &b, NULL), 0);
    run_until(&b.calls, 1, 5000);
    free_client(h);

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    char *log = calloc(1, (size_t)st.st_size + 1);
    assert_non_null(log);
    assert_int_equal(pread(fd, log, (size_t)st.st_size, 0), st.st_size);
    close(fd);
    unlink(path);
    print_message("log (%lld bytes):\n%s", (long long)st.st_size, log);
    assert_non_null(strstr(log, "POST http://127.0.0.1:"));
    assert_non_null(strstr(log, "attempt 1: HTTP 503"));
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        if (strstr(log, secrets[i]) != NULL)
            fail_msg("the log holds `%s`", secrets[i]);
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        if (strstr(b.msg, secrets[i]) != NULL || strstr(a.msg, secrets[i]) != NULL)
            fail_msg("an error message holds `%s`", secrets[i]);
    free(log);
}

/* With a registry, every call is counted by provider, operation and result,
 * with its throttles, retries and the time it waited for the rate limit. */
static void test_metrics(void **state)
{
    (void)state;
    pp_metrics_t *m = pp_metrics_new();
    assert_non_null(m);
    int classified = 0;
    pp_http_config_t cfg = {.name = "test",
                            .max_attempts = 4,
                            .backoff_base_ms = 10,
                            .backoff_max_ms = 20,
                            .rate = 20,
                            .burst = 1,
                            .classify = classify,
                            .classify_arg = &classified,
                            .metrics = m};
    pp_http_t *h = client(&cfg);
    static const ths_reply_t replies[] = {
        {.status = 429, .body = "slow down"},
        {.status = 400, .body = "<Code>Throttling</Code>"},
        {.status = 200, .body = "fine"},
        {.status = 404, .body = "no"},
    };
    ths_script(&srv, replies, 4, NULL);
    pp_http_request_t r = {.method = "POST", .url = srv_url("/"), .operation = "RunInstances"};
    result_t a = {0}, b = {0};
    assert_int_equal(pp_http_send(h, &r, on_done, &a, NULL), 0);
    run_until(&a.calls, 1, 5000);
    assert_int_equal(a.http, 200);
    r.operation = NULL;
    assert_int_equal(pp_http_send(h, &r, on_done, &b, NULL), 0);
    run_until(&b.calls, 1, 5000);
    assert_int_equal(b.http, 404);
    /* The connection refused: a network result. */
    pp_http_request_t down = {.method = "GET",
                              .url = "http://127.0.0.1:1/",
                              .operation = "Down",
                              .flags = PP_HTTP_NO_RETRY};
    result_t c = {0};
    assert_int_equal(pp_http_send(h, &down, on_done, &c, NULL), 0);
    run_until(&c.calls, 1, 5000);
    assert_true(c.status < 0);

    pp_metric_t *calls =
        pp_metrics_counter(m, "peerpod_cloud_api_calls_total", "", "provider,operation,result");
    assert_true(pp_series_value(pp_metric_at(calls, "test", "RunInstances", "ok")) == 1);
    assert_true(pp_series_value(pp_metric_at(calls, "test", "POST", "http_4xx")) == 1);
    assert_true(pp_series_value(pp_metric_at(calls, "test", "Down", "network")) == 1);
    pp_metric_t *thr =
        pp_metrics_counter(m, "peerpod_cloud_api_throttles_total", "", "provider,operation");
    assert_true(pp_series_value(pp_metric_at(thr, "test", "RunInstances")) == 2);
    pp_metric_t *ret =
        pp_metrics_counter(m, "peerpod_cloud_api_retries_total", "", "provider,operation");
    assert_true(pp_series_value(pp_metric_at(ret, "test", "RunInstances")) == 2);
    assert_true(pp_series_value(pp_metric_at(ret, "test", "POST")) == 0);
    pp_metric_t *dur =
        pp_metrics_histogram(m, "peerpod_cloud_api_call_duration_seconds", "", "provider,operation",
                             pp_metrics_seconds_buckets, pp_metrics_seconds_nbuckets);
    assert_true(pp_series_value(pp_metric_at(dur, "test", "RunInstances")) == 1);
    /* Five attempts at 20/s with a burst of one: about 0.2 s of waiting. */
    pp_metric_t *wait =
        pp_metrics_counter(m, "peerpod_cloud_api_rate_limit_wait_seconds_total", "", "provider");
    double waited = pp_series_value(pp_metric_at(wait, "test"));
    print_message("waited %.3f s for the rate limit\n", waited);
    assert_true(waited > 0.05 && waited < 2);
    free_client(h);
    pp_metrics_free(m);
}

int main(void)
{
    /* As in the daemons: a peer that hangs up is an error, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    /* Debug logging for the whole run, so the log test sees every line. */
    setenv("PP_LOG_LEVEL", "debug", 1);
    unsetenv("HTTPS_PROXY");
    unsetenv("https_proxy");
    unsetenv("http_proxy");
    unsetenv("ALL_PROXY");
    unsetenv("all_proxy");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_5xx_then_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_classify_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_from_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_verification, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_has_no_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
