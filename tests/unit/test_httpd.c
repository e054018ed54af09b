/* The HTTP server on the loop (lib/httpd): it answers what a handler says,
 * now or later; malformed, oversized and slow requests get a 4xx or are cut
 * off while other clients go on being served; a flood of idle connections
 * cannot keep it from serving; close waits for the handler's answers. The
 * clients are plain blocking sockets in a thread of their own, speaking
 * HTTP/1.1 over loopback TCP. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "httpd/httpd.h"

/* ---- the server side: a loop, a handler --------------------------------- */

typedef struct fx_s {
    uv_loop_t loop;
    pp_httpd_t *h;
    int port;
    uv_async_t done;
    int client_done;
    uv_timer_t later;
    pp_httpd_req_t *deferred; /* /later, answered by the timer */
    pp_httpd_req_t *held;     /* /never, answered by the test */
    int closed;
    void (*client)(struct fx_s *);
    int held_fd;
} fx_t;

static void later_cb(uv_timer_t *t)
{
    fx_t *fx = t->data;
    if (fx->deferred != NULL) {
        pp_httpd_respond(fx->deferred, 200, "text/plain", "later\n", 6);
        fx->deferred = NULL;
    }
}

static void handler(pp_httpd_req_t *r, void *data)
{
    fx_t *fx = data;
    const char *path = pp_httpd_path(r);
    if (strcmp(path, "/hello") == 0) {
        pp_httpd_respond(r, 200, "text/plain", "hello\n", 6);
    } else if (strcmp(path, "/echo") == 0) {
        size_t blen;
        const uint8_t *body = pp_httpd_body(r, &blen);
        const char *q = pp_httpd_query(r, "q"), *x = pp_httpd_header(r, "x-test");
        char out[512];
        int n = snprintf(out, sizeof(out), "%s %s q=%s x=%s body=%.*s", pp_httpd_method(r), path,
                         q ? q : "-", x ? x : "-", (int)blen, (const char *)body);
        pp_httpd_respond(r, 200, "text/plain", out, (size_t)n);
    } else if (strcmp(path, "/later") == 0) {
        fx->deferred = r;
        uv_timer_start(&fx->later, later_cb, 100, 0);
    } else if (strcmp(path, "/never") == 0) {
        __atomic_store_n(&fx->held, r, __ATOMIC_RELEASE);
    } else {
        pp_httpd_respond(r, 404, "text/plain", "not found\n", 10);
    }
}

static void done_cb(uv_async_t *a)
{
    fx_t *fx = a->data;
    fx->client_done = 1;
}

static void fx_start(fx_t *fx, const pp_httpd_opts_t *extra)
{
    memset(fx, 0, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    pp_httpd_opts_t o = extra ? *extra : (pp_httpd_opts_t){0};
    o.handler = handler;
    o.data = fx;
    o.name = "test";
    pp_error_t err = {0};
    int r = pp_httpd_start(&fx->loop, &o, &fx->h, &err);
    if (r != 0)
        fail_msg("start: %s", err.message);
    fx->port = pp_httpd_port(fx->h);
    assert_true(fx->port > 0);
    uv_async_init(&fx->loop, &fx->done, done_cb);
    fx->done.data = fx;
    uv_timer_init(&fx->loop, &fx->later);
    fx->later.data = fx;
}

static void closed_cb(pp_httpd_t *h, void *data)
{
    (void)h;
    ((fx_t *)data)->closed = 1;
}

static void fx_stop(fx_t *fx)
{
    pp_httpd_close(fx->h, closed_cb, fx);
    uv_close((uv_handle_t *)&fx->done, NULL);
    uv_close((uv_handle_t *)&fx->later, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(fx->closed, 1);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

static void *client_main(void *arg)
{
    fx_t *fx = arg;
    fx->client(fx);
    uv_async_send(&fx->done);
    return NULL;
}

/* Runs `client` in a thread while the loop serves, until it returns. */
static void with_client(fx_t *fx, void (*client)(fx_t *))
{
    pthread_t th;
    fx->client = client;
    fx->client_done = 0;
    assert_int_equal(pthread_create(&th, NULL, client_main, fx), 0);
    while (!fx->client_done)
        uv_run(&fx->loop, UV_RUN_ONCE);
    pthread_join(th, NULL);
}

/* ---- the client side: blocking sockets ---------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return; /* the server may cut a hostile request short */
        c += w;
        n -= (size_t)w;
    }
}

/* Reads one answer; returns its status (0 when the connection closed
 * without one) and copies its body into `body`. */
static int read_answer(int fd, char *body, size_t cap)
{
    char buf[65536];
    size_t have = 0;
    for (;;) {
        char *end = memmem(buf, have, "\r\n\r\n", 4);
        if (end != NULL) {
            int status = 0;
            sscanf(buf, "HTTP/1.%*d %d", &status);
            size_t hl = (size_t)(end - buf) + 4;
            size_t cl = 0;
            for (char *p = buf; p < end; p++)
                if (strncasecmp(p, "\r\ncontent-length:", 17) == 0)
                    cl = strtoul(p + 17, NULL, 10);
            while (have < hl + cl) {
                ssize_t n = recv(fd, buf + have, sizeof(buf) - have, 0);
                if (n <= 0)
                    break;
                have += (size_t)n;
            }
            if (body != NULL) {
                size_t bl = have - hl < cap - 1 ? have - hl : cap - 1;
                memcpy(body, buf + hl, bl);
                body[bl] = '\0';
            }
            return status;
        }
        if (have == sizeof(buf))
            return 0;
        ssize_t n = recv(fd, buf + have, sizeof(buf) - have, 0);
        if (n <= 0)
            return 0;
        have += (size_t)n;
    }
}

static int exchange(int port, const char *raw, size_t n, char *body, size_t cap)
{
    int fd = dial(port);
    send_all(fd, raw, n);
    int status = read_answer(fd, body, cap);
    close(fd);
    return status;
}

static int get(int port, const char *path, char *body, size_t cap)
{
    char req[512];
    int n =
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    return exchange(port, req, (size_t)n, body, cap);
}

/* ---- tests -------------------------------------------------------------- */

static void client_basic(fx_t *fx)
{
    char body[512];
    assert_int_equal(get(fx->port, "/hello", body, sizeof(body)), 200);
    assert_string_equal(body, "hello\n");
    assert_int_equal(get(fx->port, "/nothing", body, sizeof(body)), 404);
    const char req[] = "POST /echo?q=a%20b HTTP/1.1\r\nHost: x\r\nX-Test: yes\r\n"
                       "Content-Length: 5\r\nConnection: close\r\n\r\nabcde";
    assert_int_equal(exchange(fx->port, req, sizeof(req) - 1, body, sizeof(body)), 200);
    assert_string_equal(body, "POST /echo q=a b x=yes body=abcde");
    /* Two requests on one connection. */
    int fd = dial(fx->port);
    const char ka[] = "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, ka, sizeof(ka) - 1);
    assert_int_equal(read_answer(fd, body, sizeof(body)), 200);
    send_all(fd, ka, sizeof(ka) - 1);
    assert_int_equal(read_answer(fd, body, sizeof(body)), 200);
    assert_string_equal(body, "hello\n");
    close(fd);
}

static void test_serves(void **state)
{
    (void)state;
    fx_t fx;
    pp_httpd_opts_t o = {.max_body = 64};
    fx_start(&fx, &o);
    with_client(&fx, client_basic);
    pp_httpd_stats_t st;
    pp_httpd_stats(fx.h, &st);
    assert_int_equal(st.requests, 5);
    assert_int_equal(st.refused, 0);
    fx_stop(&fx);
}

static void client_later(fx_t *fx)
{
    char body[64];
    uint64_t t0 = now_ms();
    assert_int_equal(get(fx->port, "/later", body, sizeof(body)), 200);
    assert_string_equal(body, "later\n");
    assert_true(now_ms() - t0 >= 90);
}

static void test_answer_later(void **state)
{
    (void)state;
    fx_t fx;
    fx_start(&fx, NULL);
    with_client(&fx, client_later);
    fx_stop(&fx);
}

static void client_malformed(fx_t *fx)
{
    char body[256];
    /* A request line without a method, path and version is not HTTP:
     * libmicrohttpd closes the connection without an answer. */
    assert_int_equal(exchange(fx->port, "GARBAGE\r\n\r\n", 11, body, sizeof(body)), 0);
    assert_int_equal(get(fx->port, "/hello", body, sizeof(body)), 200);
    static const char *const bad[] = {
        "GET /hello\r\n\r\n",
        "GET /hello HTTP/1.1 x\r\nHost: x\r\n\r\n",
        "GET /hello HTTP/1.1\r\n\r\n", /* HTTP/1.1 without Host */
        "GET /hello HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int s = exchange(fx->port, bad[i], strlen(bad[i]), body, sizeof(body));
        if (s < 400 || s > 499)
            fail_msg("request %zu: status %d, want 4xx", i, s);
        assert_int_equal(get(fx->port, "/hello", body, sizeof(body)), 200);
    }
}

static void test_malformed(void **state)
{
    (void)state;
    fx_t fx;
    fx_start(&fx, NULL);
    with_client(&fx, client_malformed);
    pp_httpd_stats_t st;
    pp_httpd_stats(fx.h, &st);
    /* Only the good requests reached the handler. */
    assert_int_equal(st.requests, 7);
    fx_stop(&fx);
}

static void client_oversized(fx_t *fx)
{
    char body[256];
    size_t big = 32768;
    char *req = malloc(big + 256);
    assert_non_null(req);
    /* A header over max_header. */
    int n = snprintf(req, 256, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + n, 'a', big);
    memcpy(req + n + big, "\r\n\r\n", 4);
    int s = exchange(fx->port, req, (size_t)n + big + 4, body, sizeof(body));
    if (s < 400 || s > 499)
        fail_msg("big header: status %d, want 4xx", s);
    /* A path over max_header. */
    n = snprintf(req, 256, "GET /");
    memset(req + n, 'p', big);
    n += snprintf(req + n + big, 256, " HTTP/1.1\r\nHost: x\r\n\r\n");
    s = exchange(fx->port, req, (size_t)n + big, body, sizeof(body));
    if (s < 400 || s > 499)
        fail_msg("long path: status %d, want 4xx", s);
    /* A body over max_body, announced and chunked. */
    n = snprintf(req, 256, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
    memset(req + n, 'b', 100);
    assert_int_equal(exchange(fx->port, req, (size_t)n + 100, body, sizeof(body)), 413);
    const char chunked[] = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "40\r\n0123456789012345678901234567890123456789012345678901234567890123"
                           "\r\n0\r\n\r\n";
    assert_int_equal(exchange(fx->port, chunked, sizeof(chunked) - 1, body, sizeof(body)), 413);
    /* Within the bounds. */
    const char ok[] =
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n0123456789abcdef";
    assert_int_equal(exchange(fx->port, ok, sizeof(ok) - 1, body, sizeof(body)), 200);
    assert_string_equal(body, "POST /echo q=- x=- body=0123456789abcdef");
    free(req);
}

static void test_oversized(void **state)
{
    (void)state;
    fx_t fx;
    pp_httpd_opts_t o = {.max_header = 4096, .max_body = 16};
    fx_start(&fx, &o);
    with_client(&fx, client_oversized);
    pp_httpd_stats_t st;
    pp_httpd_stats(fx.h, &st);
    assert_int_equal(st.requests, 1);
    assert_int_equal(st.refused, 2);
    fx_stop(&fx);
}

/* A client that sends half a request and stalls is cut off after the
 * deadline, and others are served meanwhile. */
static void client_slow(fx_t *fx)
{
    char body[64];
    int slow = dial(fx->port);
    const char part[] = "GET /hello HTTP/1.1\r\nHost: x\r\n";
    uint64_t t0 = now_ms();
    send_all(slow, part, sizeof(part) - 1);
    /* One byte every 100 ms does not keep it alive. */
    int dribble = dial(fx->port);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(get(fx->port, "/hello", body, sizeof(body)), 200);
        send_all(dribble, "X", 1);
        usleep(100 * 1000);
    }
    char c;
    ssize_t n = recv(slow, &c, 1, 0);
    uint64_t took = now_ms() - t0;
    assert_true(n <= 0);
    if (took < 250 || took > 3000)
        fail_msg("the stalled request was cut after %llu ms, want about 300",
                 (unsigned long long)took);
    for (;;) {
        n = send(dribble, "X", 1, MSG_NOSIGNAL);
        if (n <= 0 || recv(dribble, &c, 1, MSG_DONTWAIT) == 0)
            break;
        usleep(50 * 1000);
        if (now_ms() - t0 > 5000)
            fail_msg("the dribbling client was never cut off");
    }
    close(slow);
    close(dribble);
    assert_int_equal(get(fx->port, "/hello", body, sizeof(body)), 200);
}

static void test_slow(void **state)
{
    (void)state;
    fx_t fx;
    pp_httpd_opts_t o = {.timeout_ms = 300};
    fx_start(&fx, &o);
    with_client(&fx, client_slow);
    pp_httpd_stats_t st;
    pp_httpd_stats(fx.h, &st);
    assert_true(st.timeouts >= 2);
    fx_stop(&fx);
}

/* More idle connections than the server takes: a request still gets its
 * answer once the deadline has cleared them. */
static void client_flood(fx_t *fx)
{
    int fds[64];
    for (size_t i = 0; i < 64; i++)
        fds[i] = dial(fx->port);
    char body[64];
    uint64_t t0 = now_ms();
    assert_int_equal(get(fx->port, "/hello", body, sizeof(body)), 200);
    assert_true(now_ms() - t0 < 5000);
    for (size_t i = 0; i < 64; i++)
        close(fds[i]);
}

static void test_flood(void **state)
{
    (void)state;
    fx_t fx;
    pp_httpd_opts_t o = {.timeout_ms = 300, .max_conns = 8};
    fx_start(&fx, &o);
    with_client(&fx, client_flood);
    fx_stop(&fx);
}

/* Random bytes ending like a request head: each gets a 4xx or a closed
 * connection, never a crash, and the server goes on. */
static void client_random(fx_t *fx)
{
    uint32_t seed = 12345;
    char req[600], body[64];
    for (int i = 0; i < 200; i++) {
        size_t n = 1 + (seed % 500);
        for (size_t k = 0; k < n; k++) {
            seed = seed * 1103515245u + 12345u;
            req[k] = (char)(seed >> 16);
        }
        memcpy(req + n, "\r\n\r\n", 4);
        int s = exchange(fx->port, req, n + 4, body, sizeof(body));
        if (s != 0 && (s < 400 || s > 599))
            fail_msg("random request %d: status %d", i, s);
    }
    assert_int_equal(get(fx->port, "/hello", body, sizeof(body)), 200);
}

static void test_random(void **state)
{
    (void)state;
    fx_t fx;
    pp_httpd_opts_t o = {.timeout_ms = 1000};
    fx_start(&fx, &o);
    with_client(&fx, client_random);
    fx_stop(&fx);
}

static void client_never(fx_t *fx)
{
    int fd = dial(fx->port);
    const char req[] = "GET /never HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, req, sizeof(req) - 1);
    /* Wait until the handler holds it. */
    for (int i = 0; i < 500 && __atomic_load_n(&fx->held, __ATOMIC_ACQUIRE) == NULL; i++)
        usleep(10 * 1000);
    fx->held_fd = fd;
}

/* Closing waits for requests the handler holds; their answers are dropped. */
static void test_close_waits(void **state)
{
    (void)state;
    fx_t fx;
    fx_start(&fx, NULL);
    with_client(&fx, client_never);
    assert_non_null(fx.held);
    pp_httpd_close(fx.h, closed_cb, &fx);
    for (int i = 0; i < 5; i++)
        uv_run(&fx.loop, UV_RUN_NOWAIT);
    assert_int_equal(fx.closed, 0);
    assert_int_equal(pp_httpd_respond(fx.held, 200, NULL, "x", 1), 0);
    uv_close((uv_handle_t *)&fx.done, NULL);
    uv_close((uv_handle_t *)&fx.later, NULL);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    assert_int_equal(fx.closed, 1);
    assert_int_equal(uv_loop_close(&fx.loop), 0);
    close(fx.held_fd);
}

static void test_bad_address(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    pp_httpd_t *h = NULL;
    pp_error_t err = {0};
    pp_httpd_opts_t o = {.address = "localhost", .handler = handler};
    assert_int_equal(pp_httpd_start(&loop, &o, &h, &err), -EINVAL);
    assert_non_null(strstr(err.message, "`localhost`"));
    /* A port in use is named. */
    fx_t fx;
    fx_start(&fx, NULL);
    o.address = "127.0.0.1";
    o.port = fx.port;
    assert_int_equal(pp_httpd_start(&loop, &o, &h, &err), -EADDRINUSE);
    fx_stop(&fx);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serves),      cmocka_unit_test(test_answer_later),
        cmocka_unit_test(test_malformed),   cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_slow),        cmocka_unit_test(test_flood),
        cmocka_unit_test(test_random),      cmocka_unit_test(test_close_waits),
        cmocka_unit_test(test_bad_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
