/* ttrpc server and client on a real loop over unix sockets: dispatch,
 * deadlines both ways, statuses, metadata, limits, broken peers, shutdown. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "ttrpc/ttrpc.h"
#include "util/pb.h"

#define SVC "pp.test.Echo"

typedef struct fx_s {
    uv_loop_t loop;
    char dir[64];
    char sock[128];
    pp_ttrpc_server_t *srv;
    pp_ttrpc_client_t *cli;
    pp_ttrpc_call_t *held[8];
    int nheld;
    int connected;
    int server_closed;
    int client_closed;
} fx_t;

typedef struct result_s {
    int done;
    int code;
    char message[256];
    uint8_t *payload;
    size_t payload_len;
    uint64_t at; /* loop time of completion */
} result_t;

/* ---- handlers ---------------------------------------------------------- */

static void h_echo(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    const pp_ttrpc_request_t *r = pp_ttrpc_call_request(call);
    pp_ttrpc_call_reply(call, r->payload, r->payload_len);
}

static void h_fail(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    const pp_ttrpc_request_t *r = pp_ttrpc_call_request(call);
    /* payload: "<code>:<message>" */
    char buf[256];
    size_t n = r->payload_len < sizeof(buf) - 1 ? r->payload_len : sizeof(buf) - 1;
    memcpy(buf, r->payload, n);
    buf[n] = '\0';
    char *colon = strchr(buf, ':');
    assert_non_null(colon);
    *colon = '\0';
    pp_ttrpc_call_fail(call, (int)strtol(buf, NULL, 10), "%s", colon + 1);
}

static void h_metadata(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    const pp_ttrpc_request_t *r = pp_ttrpc_call_request(call);
    char out[1024];
    size_t off = 0;
    for (size_t i = 0; i < r->metadata_count; i++)
        off += (size_t)snprintf(out + off, sizeof(out) - off, "%.*s=%.*s\n",
                                (int)r->metadata[i].key.n, r->metadata[i].key.p,
                                (int)r->metadata[i].value.n, r->metadata[i].value.p);
    pp_ttrpc_call_reply(call, out, off);
}

static void h_hold(pp_ttrpc_call_t *call, void *data)
{
    fx_t *fx = data;
    fx->held[fx->nheld++] = call;
}

static void answer_on_cancel(pp_ttrpc_call_t *call, void *data)
{
    int *answered = data;
    assert_int_equal(pp_ttrpc_call_fail(call, PP_GRPC_CANCELLED, "gone"), -ECANCELED);
    (*answered)++;
}

static int cancel_answers;

static void h_answer_on_cancel(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    pp_ttrpc_call_on_cancel(call, answer_on_cancel, &cancel_answers);
}

static void h_timeout_echo(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    char out[32];
    int n =
        snprintf(out, sizeof(out), "%lld", (long long)pp_ttrpc_call_request(call)->timeout_nano);
    pp_ttrpc_call_reply(call, out, (size_t)n);
}

/* ---- fixture ----------------------------------------------------------- */

static void connect_cb(pp_ttrpc_client_t *c, int status, void *data)
{
    fx_t *fx = data;
    (void)c;
    fx->connected = status == 0 ? 1 : status;
}

static void watchdog_cb(uv_timer_t *t)
{
    (void)t;
    fail_msg("test timed out waiting on the loop");
}

/* Runs the loop until *flag becomes non-zero, failing after `ms`. */
static void run_until(fx_t *fx, const int *flag, uint64_t ms)
{
    uv_timer_t wd;
    uv_timer_init(&fx->loop, &wd);
    uv_timer_start(&wd, watchdog_cb, ms, 0);
    while (!*flag)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    uv_loop_init(&fx->loop);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/pp-ttrpc-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->sock, sizeof(fx->sock), "%s/s.sock", fx->dir);
    assert_int_equal(pp_ttrpc_server_new(&fx->loop, &fx->srv), 0);
    assert_int_equal(pp_ttrpc_server_register(fx->srv, SVC, "Echo", h_echo, fx), 0);
    assert_int_equal(pp_ttrpc_server_register(fx->srv, SVC, "Echo", h_echo, fx), -EEXIST);
    assert_int_equal(pp_ttrpc_server_register(fx->srv, SVC, "Fail", h_fail, fx), 0);
    assert_int_equal(pp_ttrpc_server_register(fx->srv, SVC, "Metadata", h_metadata, fx), 0);
    assert_int_equal(pp_ttrpc_server_register(fx->srv, SVC, "Hold", h_hold, fx), 0);
    assert_int_equal(pp_ttrpc_server_register(fx->srv, SVC, "Timeout", h_timeout_echo, fx), 0);
    assert_int_equal(
        pp_ttrpc_server_register(fx->srv, SVC, "AnswerOnCancel", h_answer_on_cancel, fx), 0);
    pp_error_t err = {0};
    assert_int_equal(pp_ttrpc_server_listen_unix(fx->srv, fx->sock, &err), 0);
    assert_int_equal(pp_ttrpc_client_new(&fx->loop, &fx->cli), 0);
    assert_int_equal(pp_ttrpc_client_connect_unix(fx->cli, fx->sock, connect_cb, fx), 0);
    run_until(fx, &fx->connected, 2000);
    assert_int_equal(fx->connected, 1);
    *state = fx;
    return 0;
}

static void server_closed_cb(pp_ttrpc_server_t *s, void *data)
{
    (void)s;
    ((fx_t *)data)->server_closed = 1;
}

static void client_closed_cb(pp_ttrpc_client_t *c, void *data)
{
    (void)c;
    ((fx_t *)data)->client_closed = 1;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    if (fx->cli != NULL) {
        pp_ttrpc_client_close(fx->cli, client_closed_cb, fx);
        run_until(fx, &fx->client_closed, 2000);
    }
    if (fx->srv != NULL) {
        for (int i = 0; i < fx->nheld; i++)
            if (fx->held[i] != NULL)
                pp_ttrpc_call_reply(fx->held[i], NULL, 0);
        pp_ttrpc_server_close(fx->srv, 0, server_closed_cb, fx);
        run_until(fx, &fx->server_closed, 2000);
    }
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

static void result_cb(pp_ttrpc_result_t *res, void *data)
{
    result_t *r = data;
    r->code = res->code;
    snprintf(r->message, sizeof(r->message), "%.*s", (int)res->message.n, res->message.p);
    r->payload_len = res->payload_len;
    r->payload = malloc(res->payload_len + 1);
    if (res->payload_len)
        memcpy(r->payload, res->payload, res->payload_len);
    r->done = 1;
}

static void call(fx_t *fx, const char *method, const void *p, size_t n, int64_t timeout,
                 result_t *r)
{
    memset(r, 0, sizeof(*r));
    pp_ttrpc_call_opts_t o = {SVC, method, p, n, timeout, NULL, 0};
    assert_int_equal(pp_ttrpc_client_call(fx->cli, &o, result_cb, r), 0);
}

/* ---- tests ------------------------------------------------------------- */

static void test_echo_sizes(void **state)
{
    fx_t *fx = *state;
    /* Up to the largest request that fits: 4 MiB minus service (14 bytes),
     * method (6) and the payload's tag and length (5). */
    size_t sizes[] = {0, 1, 127, 128, 65535, 65536, 1 << 20, PP_TTRPC_MAX_MESSAGE - 25};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        uint8_t *p = malloc(n + 1);
        for (size_t k = 0; k < n; k++)
            p[k] = (uint8_t)(k * 7 + i);
        result_t r;
        call(fx, "Echo", p, n, 0, &r);
        run_until(fx, &r.done, 5000);
        assert_int_equal(r.code, 0);
        assert_int_equal(r.payload_len, n);
        if (n)
            assert_memory_equal(r.payload, p, n);
        free(r.payload);
        free(p);
    }
}

static void test_concurrent_256(void **state)
{
    fx_t *fx = *state;
    enum { N = 256 };
    result_t *rs = calloc(N, sizeof(*rs));
    char bodies[N][16];
    /* Held calls answered in reverse order prove multiplexing. */
    for (int i = 0; i < N; i++) {
        snprintf(bodies[i], sizeof(bodies[i]), "call-%d", i);
        call(fx, i % 2 ? "Echo" : "Metadata", bodies[i], strlen(bodies[i]), 0, &rs[i]);
    }
    assert_int_equal(pp_ttrpc_client_in_flight(fx->cli), N);
    for (int i = 0; i < N; i++) {
        run_until(fx, &rs[i].done, 5000);
        assert_int_equal(rs[i].code, 0);
        if (i % 2)
            assert_memory_equal(rs[i].payload, bodies[i], strlen(bodies[i]));
        else
            assert_int_equal(rs[i].payload_len, 0);
        free(rs[i].payload);
    }
    assert_int_equal(pp_ttrpc_client_in_flight(fx->cli), 0);
    free(rs);
}

static void test_out_of_order_answers(void **state)
{
    fx_t *fx = *state;
    result_t r[3];
    for (int i = 0; i < 3; i++)
        call(fx, "Hold", "x", 1, 0, &r[i]);
    while (fx->nheld < 3)
        uv_run(&fx->loop, UV_RUN_ONCE);
    const char *ans[] = {"zero", "one", "two"};
    for (int i = 2; i >= 0; i--) {
        assert_int_equal(pp_ttrpc_call_reply(fx->held[i], ans[i], strlen(ans[i])), 0);
        fx->held[i] = NULL;
        run_until(fx, &r[i].done, 2000);
        assert_int_equal(r[i].code, 0);
        assert_memory_equal(r[i].payload, ans[i], strlen(ans[i]));
        for (int k = 0; k < i; k++)
            assert_int_equal(r[k].done, 0);
        free(r[i].payload);
    }
    fx->nheld = 0;
}

static void test_unimplemented(void **state)
{
    fx_t *fx = *state;
    result_t r;
    call(fx, "Nope", "", 0, 0, &r);
    run_until(fx, &r.done, 2000);
    assert_int_equal(r.code, PP_GRPC_UNIMPLEMENTED);
    assert_string_equal(r.message, "method Nope");
    free(r.payload);
    memset(&r, 0, sizeof(r));
    pp_ttrpc_call_opts_t o = {"no.Such", "Echo", "", 0, 0, NULL, 0};
    assert_int_equal(pp_ttrpc_client_call(fx->cli, &o, result_cb, &r), 0);
    run_until(fx, &r.done, 2000);
    assert_int_equal(r.code, PP_GRPC_UNIMPLEMENTED);
    assert_string_equal(r.message, "service no.Such");
    free(r.payload);
}

static void test_status_roundtrip(void **state)
{
    fx_t *fx = *state;
    const int codes[] = {1, 3, 5, 9, 13, 14, 16};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        char body[64];
        int n = snprintf(body, sizeof(body), "%d:failure %zu with `ticks`", codes[i], i);
        result_t r;
        call(fx, "Fail", body, (size_t)n, 0, &r);
        run_until(fx, &r.done, 2000);
        assert_int_equal(r.code, codes[i]);
        assert_string_equal(r.message, strchr(body, ':') + 1);
        free(r.payload);
    }
}

static void test_metadata_roundtrip(void **state)
{
    fx_t *fx = *state;
    pp_ttrpc_kv_t md[] = {
        {{"a", 1}, {"1", 1}}, {{"b-key", 5}, {"two words", 9}}, {{"a", 1}, {"again", 5}}};
    pp_ttrpc_call_opts_t o = {SVC, "Metadata", NULL, 0, 0, md, 3};
    result_t r = {0};
    assert_int_equal(pp_ttrpc_client_call(fx->cli, &o, result_cb, &r), 0);
    run_until(fx, &r.done, 2000);
    assert_int_equal(r.code, 0);
    const char *want = "a=1\nb-key=two words\na=again\n";
    assert_int_equal(r.payload_len, strlen(want));
    assert_memory_equal(r.payload, want, strlen(want));
    free(r.payload);
}

static void test_timeout_propagates(void **state)
{
    fx_t *fx = *state;
    result_t r;
    call(fx, "Timeout", NULL, 0, 123456789, &r);
    run_until(fx, &r.done, 2000);
    assert_int_equal(r.code, 0);
    assert_memory_equal(r.payload, "123456789", 9);
    free(r.payload);
}

static void count_active_timer(uv_handle_t *h, void *arg)
{
    if (h->type == UV_TIMER && uv_is_active(h))
        (*(int *)arg)++;
}

/* A connection whose calls with deadlines are all answered holds no timer,
 * on either side: at rest nothing wakes the loop (a timer left set for the
 * last call's deadline woke it once per connection). */
static void test_idle_holds_no_timer(void **state)
{
    fx_t *fx = *state;
    for (int i = 0; i < 3; i++) {
        result_t r;
        call(fx, "Timeout", NULL, 0, (int64_t)(60 + i) * 1000000000LL, &r);
        run_until(fx, &r.done, 2000);
        assert_int_equal(r.code, 0);
        free(r.payload);
        for (int k = 0; k < 3; k++)
            uv_run(&fx->loop, UV_RUN_NOWAIT);
        int active = 0;
        uv_walk(&fx->loop, count_active_timer, &active);
        assert_int_equal(active, 0);
    }
}

static void test_server_enforces_deadline(void **state)
{
    fx_t *fx = *state;
    result_t r;
    uv_update_time(&fx->loop);
    uint64_t t0 = uv_now(&fx->loop);
    /* The client's own timer is later than the server's answer would be,
     * so DEADLINE_EXCEEDED here comes from the server. */
    memset(&r, 0, sizeof(r));
    pp_ttrpc_request_t req = {
        .service = {SVC, strlen(SVC)}, .method = {"Hold", 4}, .timeout_nano = 50 * 1000000LL};
    uint8_t *frame;
    size_t len;
    assert_int_equal(pp_ttrpc_request_frame(&req, &frame, &len), 0);
    assert_int_equal(pp_ttrpc_client_call_frame(fx->cli, frame, len, 0, result_cb, &r), 0);
    run_until(fx, &r.done, 2000);
    uint64_t dt = uv_now(&fx->loop) - t0;
    assert_int_equal(r.code, PP_GRPC_DEADLINE_EXCEEDED);
    assert_true(dt >= 50 && dt < 1000);
    assert_int_equal(fx->nheld, 1);
    assert_true(pp_ttrpc_call_is_cancelled(fx->held[0]));
    /* The handler's late answer is dropped, and the connection still works. */
    assert_int_equal(pp_ttrpc_call_reply(fx->held[0], "late", 4), -ECANCELED);
    fx->held[0] = NULL;
    fx->nheld = 0;
    free(r.payload);
    call(fx, "Echo", "ok", 2, 0, &r);
    run_until(fx, &r.done, 2000);
    assert_int_equal(r.code, 0);
    free(r.payload);
}

/* A server that accepts and never answers. */
static uv_pipe_t mute_conn;
static void mute_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    static char buf[65536];
    (void)h;
    (void)s;
    *b = uv_buf_init(buf, sizeof(buf));
}
static void mute_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)s;
    (void)n;
    (void)b;
}
static void mute_accept(uv_stream_t *server, int status)
{
    assert_int_equal(status, 0);
    uv_pipe_init(server->loop, &mute_conn, 0);
    assert_int_equal(uv_accept(server, (uv_stream_t *)&mute_conn), 0);
    uv_read_start((uv_stream_t *)&mute_conn, mute_alloc, mute_read);
}

/* A client connected to a server that reads and never answers. */
static pp_ttrpc_client_t *mute_client(fx_t *fx, uv_pipe_t *mute)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/mute.sock", fx->dir);
    uv_pipe_init(&fx->loop, mute, 0);
    assert_int_equal(uv_pipe_bind(mute, path), 0);
    assert_int_equal(uv_listen((uv_stream_t *)mute, 4, mute_accept), 0);
    pp_ttrpc_client_t *c;
    assert_int_equal(pp_ttrpc_client_new(&fx->loop, &c), 0);
    fx->connected = 0;
    assert_int_equal(pp_ttrpc_client_connect_unix(c, path, connect_cb, fx), 0);
    run_until(fx, &fx->connected, 2000);
    return c;
}

static void mute_close(fx_t *fx, uv_pipe_t *mute)
{
    uv_close((uv_handle_t *)&mute_conn, NULL);
    uv_close((uv_handle_t *)mute, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static void test_client_enforces_deadline(void **state)
{
    fx_t *fx = *state;
    uv_pipe_t mute;
    pp_ttrpc_client_t *c = mute_client(fx, &mute);
    result_t r = {0};
    pp_ttrpc_call_opts_t o = {SVC, "Echo", "x", 1, 80 * 1000000LL, NULL, 0};
    uv_update_time(&fx->loop);
    uint64_t t0 = uv_now(&fx->loop);
    assert_int_equal(pp_ttrpc_client_call(c, &o, result_cb, &r), 0);
    run_until(fx, &r.done, 2000);
    assert_int_equal(r.code, PP_GRPC_DEADLINE_EXCEEDED);
    assert_true(uv_now(&fx->loop) - t0 >= 80);
    free(r.payload);
    pp_ttrpc_client_close(c, (pp_ttrpc_client_close_cb)NULL, NULL);
    mute_close(fx, &mute);
}

/* Deadlines out of order on one connection, each side with one timer for
 * all of them: each call ends at its own deadline, earliest first, and a
 * call without one is left alone. */
static void test_server_deadlines_out_of_order(void **state)
{
    fx_t *fx = *state;
    const int ms[3] = {300, 100, 200}, order[3] = {1, 2, 0};
    result_t r[3], none;
    uv_update_time(&fx->loop);
    uint64_t t0 = uv_now(&fx->loop);
    for (int i = 0; i < 3; i++) {
        memset(&r[i], 0, sizeof(r[i]));
        pp_ttrpc_request_t req = {.service = {SVC, strlen(SVC)},
                                  .method = {"Hold", 4},
                                  .timeout_nano = ms[i] * 1000000LL};
        uint8_t *frame;
        size_t len;
        assert_int_equal(pp_ttrpc_request_frame(&req, &frame, &len), 0);
        /* No local timeout: what ends these calls is the server. */
        assert_int_equal(pp_ttrpc_client_call_frame(fx->cli, frame, len, 0, result_cb, &r[i]), 0);
    }
    call(fx, "Hold", "n", 1, 0, &none);
    for (int k = 0; k < 3; k++) {
        int i = order[k];
        run_until(fx, &r[i].done, 2000);
        uint64_t dt = uv_now(&fx->loop) - t0;
        assert_int_equal(r[i].code, PP_GRPC_DEADLINE_EXCEEDED);
        assert_true(dt >= (uint64_t)ms[i]);
        for (int j = k + 1; j < 3; j++)
            assert_int_equal(r[order[j]].done, 0);
        free(r[i].payload);
    }
    assert_int_equal(none.done, 0);
    assert_int_equal(fx->nheld, 4);
    for (int i = 0; i < 4; i++) {
        const pp_ttrpc_request_t *req = pp_ttrpc_call_request(fx->held[i]);
        int expired = req->timeout_nano != 0;
        assert_int_equal(pp_ttrpc_call_is_cancelled(fx->held[i]), expired);
        assert_int_equal(pp_ttrpc_call_reply(fx->held[i], "ok", 2), expired ? -ECANCELED : 0);
        fx->held[i] = NULL;
    }
    fx->nheld = 0;
    run_until(fx, &none.done, 2000);
    assert_int_equal(none.code, 0);
    free(none.payload);
}

static void test_client_deadlines_out_of_order(void **state)
{
    fx_t *fx = *state;
    uv_pipe_t mute;
    pp_ttrpc_client_t *c = mute_client(fx, &mute);
    const int ms[3] = {240, 80, 160}, order[3] = {1, 2, 0};
    result_t r[3] = {0}, none = {0};
    uv_update_time(&fx->loop);
    uint64_t t0 = uv_now(&fx->loop);
    for (int i = 0; i < 3; i++) {
        pp_ttrpc_call_opts_t o = {SVC, "Echo", "x", 1, ms[i] * 1000000LL, NULL, 0};
        assert_int_equal(pp_ttrpc_client_call(c, &o, result_cb, &r[i]), 0);
    }
    pp_ttrpc_call_opts_t o = {SVC, "Echo", "x", 1, 0, NULL, 0};
    assert_int_equal(pp_ttrpc_client_call(c, &o, result_cb, &none), 0);
    for (int k = 0; k < 3; k++) {
        int i = order[k];
        run_until(fx, &r[i].done, 2000);
        assert_int_equal(r[i].code, PP_GRPC_DEADLINE_EXCEEDED);
        assert_true(uv_now(&fx->loop) - t0 >= (uint64_t)ms[i]);
        for (int j = k + 1; j < 3; j++)
            assert_int_equal(r[order[j]].done, 0);
        free(r[i].payload);
    }
    assert_int_equal(none.done, 0);
    assert_int_equal(pp_ttrpc_client_in_flight(c), 1);
    pp_ttrpc_client_close(c, (pp_ttrpc_client_close_cb)NULL, NULL);
    assert_int_equal(none.code, PP_GRPC_CANCELLED);
    free(none.payload);
    mute_close(fx, &mute);
}

static void test_connection_drop_fails_in_flight(void **state)
{
    fx_t *fx = *state;
    result_t r[2];
    call(fx, "Hold", "a", 1, 0, &r[0]);
    call(fx, "Hold", "b", 1, 0, &r[1]);
    while (fx->nheld < 2)
        uv_run(&fx->loop, UV_RUN_ONCE);
    /* The server goes away without answering. */
    pp_ttrpc_server_close(fx->srv, 0, server_closed_cb, fx);
    run_until(fx, &r[1].done, 2000);
    run_until(fx, &r[0].done, 2000);
    assert_int_equal(r[0].code, PP_GRPC_UNAVAILABLE);
    assert_int_equal(r[1].code, PP_GRPC_UNAVAILABLE);
    assert_false(pp_ttrpc_client_connected(fx->cli));
    /* New calls fail synchronously, and the held calls can still be
     * answered (dropped) without harm; the server is freed after that. */
    pp_ttrpc_call_opts_t o = {SVC, "Echo", "", 0, 0, NULL, 0};
    assert_int_equal(pp_ttrpc_client_call(fx->cli, &o, result_cb, &r[0]), -ENOTCONN);
    assert_true(pp_ttrpc_call_is_cancelled(fx->held[0]));
    assert_int_equal(pp_ttrpc_call_reply(fx->held[0], NULL, 0), -ECANCELED);
    assert_int_equal(fx->server_closed, 0);
    assert_int_equal(pp_ttrpc_call_fail(fx->held[1], 2, "x"), -ECANCELED);
    assert_int_equal(fx->server_closed, 1);
    fx->nheld = 0;
    fx->srv = NULL;
    free(r[0].payload);
    free(r[1].payload);
}

static void test_graceful_close_waits(void **state)
{
    fx_t *fx = *state;
    result_t r;
    call(fx, "Hold", "a", 1, 0, &r);
    while (fx->nheld < 1)
        uv_run(&fx->loop, UV_RUN_ONCE);
    pp_ttrpc_server_close(fx->srv, 1, server_closed_cb, fx);
    for (int i = 0; i < 5; i++)
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    /* No new connections: the socket file is gone. */
    struct stat st;
    assert_int_equal(stat(fx->sock, &st), -1);
    assert_int_equal(r.done, 0);
    assert_int_equal(fx->server_closed, 0);
    assert_int_equal(pp_ttrpc_call_reply(fx->held[0], "fin", 3), 0);
    run_until(fx, &r.done, 2000);
    assert_int_equal(r.code, 0);
    assert_memory_equal(r.payload, "fin", 3);
    run_until(fx, &fx->server_closed, 2000);
    fx->nheld = 0;
    fx->srv = NULL;
    free(r.payload);
}

static void test_client_close_cancels(void **state)
{
    fx_t *fx = *state;
    result_t r;
    call(fx, "Hold", "a", 1, 0, &r);
    pp_ttrpc_client_close(fx->cli, client_closed_cb, fx);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.code, PP_GRPC_CANCELLED);
    run_until(fx, &fx->client_closed, 2000);
    fx->cli = NULL;
    free(r.payload);
    /* The server sees the connection end and cancels the held call. */
    while (fx->nheld < 1 || !pp_ttrpc_call_is_cancelled(fx->held[0]))
        uv_run(&fx->loop, UV_RUN_ONCE);
}

/* Handlers may answer from their cancel callback, several at once, while
 * the connection goes away (checked for use after free by the ASan run). */
static void test_answer_from_cancel(void **state)
{
    fx_t *fx = *state;
    result_t r[3];
    cancel_answers = 0;
    for (int i = 0; i < 3; i++)
        call(fx, "AnswerOnCancel", "x", 1, 0, &r[i]);
    for (int i = 0; i < 20; i++)
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_int_equal(pp_ttrpc_server_in_flight(fx->srv), 3);
    pp_ttrpc_client_close(fx->cli, client_closed_cb, fx);
    fx->cli = NULL;
    while (cancel_answers < 3)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(pp_ttrpc_server_in_flight(fx->srv), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].code, PP_GRPC_CANCELLED);
        free(r[i].payload);
    }
}

static void test_stale_socket(void **state)
{
    fx_t *fx = *state;
    pp_error_t err = {0};
    pp_ttrpc_server_t *s2;
    assert_int_equal(pp_ttrpc_server_new(&fx->loop, &s2), 0);
    /* A live socket is refused. */
    assert_int_equal(pp_ttrpc_server_listen_unix(s2, fx->sock, &err), -EADDRINUSE);
    assert_non_null(strstr(err.message, "another process"));
    /* A socket file nobody serves is replaced. */
    char stale[160];
    snprintf(stale, sizeof(stale), "%s/stale.sock", fx->dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, stale, strlen(stale) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    assert_int_equal(pp_ttrpc_server_listen_unix(s2, stale, &err), 0);
    /* A regular file is not touched. */
    char reg[160];
    snprintf(reg, sizeof(reg), "%s/file", fx->dir);
    FILE *f = fopen(reg, "w");
    fclose(f);
    assert_int_equal(pp_ttrpc_server_listen_unix(s2, reg, &err), -EEXIST);
    int closed = 0;
    pp_ttrpc_server_close(s2, 0, (pp_ttrpc_server_close_cb)NULL, NULL);
    closed = 1;
    run_until(fx, &closed, 100);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    struct stat st;
    assert_int_equal(stat(stale, &st), -1);
}

/* ---- raw peers: the server loop in a thread, a blocking socket here ---- */

typedef struct raw_s {
    fx_t *fx;
    pthread_t thread;
    uv_async_t stop;
} raw_t;

static void stop_cb(uv_async_t *a)
{
    raw_t *raw = a->data;
    pp_ttrpc_server_close(raw->fx->srv, 0, NULL, NULL);
    raw->fx->srv = NULL;
    pp_ttrpc_client_close(raw->fx->cli, NULL, NULL);
    raw->fx->cli = NULL;
    uv_close((uv_handle_t *)a, NULL);
}

static void *serve(void *arg)
{
    raw_t *raw = arg;
    uv_run(&raw->fx->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void raw_start(raw_t *raw, fx_t *fx)
{
    raw->fx = fx;
    uv_async_init(&fx->loop, &raw->stop, stop_cb);
    raw->stop.data = raw;
    assert_int_equal(pthread_create(&raw->thread, NULL, serve, raw), 0);
}

static void raw_stop(raw_t *raw)
{
    uv_async_send(&raw->stop);
    pthread_join(raw->thread, NULL);
}

static int raw_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(path) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void write_all(int fd, const void *p, size_t n)
{
    const uint8_t *q = p;
    while (n > 0) {
        ssize_t w = write(fd, q, n);
        assert_true(w > 0);
        q += w;
        n -= (size_t)w;
    }
}

static void read_all(int fd, void *p, size_t n)
{
    uint8_t *q = p;
    while (n > 0) {
        ssize_t r = read(fd, q, n);
        if (r <= 0)
            fail_msg("read: %zd (%s)", r, strerror(errno));
        q += r;
        n -= (size_t)r;
    }
}

/* Reads one response frame; returns its status code. */
static int read_response(int fd, uint32_t *id, uint8_t **payload, size_t *plen)
{
    uint8_t hdr[PP_TTRPC_HEADER_SIZE];
    read_all(fd, hdr, sizeof(hdr));
    pp_ttrpc_header_t h;
    pp_ttrpc_header_unpack(hdr, &h);
    assert_int_equal(h.type, PP_TTRPC_RESPONSE);
    uint8_t *body = malloc(h.length + 1);
    read_all(fd, body, h.length);
    pp_ttrpc_response_t resp;
    assert_int_equal(pp_ttrpc_response_decode(body, h.length, &resp), 0);
    *id = h.stream_id;
    if (payload != NULL) {
        *plen = resp.payload_len;
        *payload = malloc(resp.payload_len + 1);
        memcpy(*payload, resp.payload, resp.payload_len);
    }
    free(body);
    return resp.code;
}

static uint8_t *echo_frame(uint32_t id, size_t payload_len, size_t *len)
{
    uint8_t *p = malloc(payload_len + 1);
    memset(p, 'q', payload_len);
    pp_ttrpc_request_t req = {.service = {SVC, strlen(SVC)},
                              .method = {"Echo", 4},
                              .payload = p,
                              .payload_len = payload_len};
    uint8_t *frame;
    assert_int_equal(pp_ttrpc_request_frame(&req, &frame, len), 0);
    pp_ttrpc_frame_set_stream(frame, id);
    free(p);
    return frame;
}

static void test_exact_limit_and_oversize(void **state)
{
    fx_t *fx = *state;
    raw_t raw;
    raw_start(&raw, fx);
    int fd = raw_connect(fx->sock);
    /* Service "pp.test.Echo" (14), method (6), payload tag+len (5). */
    size_t fit = PP_TTRPC_MAX_MESSAGE - 14 - 6 - 5;
    size_t len;
    uint8_t *frame = echo_frame(1, fit, &len);
    assert_int_equal(len, PP_TTRPC_HEADER_SIZE + PP_TTRPC_MAX_MESSAGE);
    write_all(fd, frame, len);
    uint32_t id;
    uint8_t *pl;
    size_t plen;
    /* Exactly 4 MiB is accepted and echoed. */
    int code = read_response(fd, &id, &pl, &plen);
    assert_int_equal(id, 1);
    assert_int_equal(code, 0);
    assert_int_equal(plen, fit);
    assert_memory_equal(pl, frame + len - fit, fit);
    free(pl);
    free(frame);

    /* 4 MiB + 1: discarded unread and answered on its stream. */
    uint8_t hdr[PP_TTRPC_HEADER_SIZE];
    pp_ttrpc_header_t h = {PP_TTRPC_MAX_MESSAGE + 1, 3, PP_TTRPC_REQUEST, 0};
    pp_ttrpc_header_pack(hdr, &h);
    write_all(fd, hdr, sizeof(hdr));
    uint8_t *junk = calloc(1, PP_TTRPC_MAX_MESSAGE + 1);
    write_all(fd, junk, PP_TTRPC_MAX_MESSAGE + 1);
    free(junk);
    code = read_response(fd, &id, NULL, NULL);
    assert_int_equal(id, 3);
    assert_int_equal(code, PP_GRPC_RESOURCE_EXHAUSTED);

    /* The connection is still usable. */
    frame = echo_frame(5, 10, &len);
    write_all(fd, frame, len);
    free(frame);
    code = read_response(fd, &id, &pl, &plen);
    assert_int_equal(code, 0);
    assert_int_equal(id, 5);
    assert_int_equal(plen, 10);
    free(pl);
    close(fd);
    raw_stop(&raw);
}

static void test_even_stream_and_malformed(void **state)
{
    fx_t *fx = *state;
    raw_t raw;
    raw_start(&raw, fx);
    int fd = raw_connect(fx->sock);
    size_t len;
    uint8_t *frame = echo_frame(2, 3, &len);
    write_all(fd, frame, len);
    free(frame);
    uint32_t id;
    assert_int_equal(read_response(fd, &id, NULL, NULL), PP_GRPC_INVALID_ARGUMENT);
    assert_int_equal(id, 2);
    /* Frames of other types are ignored. */
    uint8_t data_frame[PP_TTRPC_HEADER_SIZE + 2] = {0};
    pp_ttrpc_header_t h = {2, 7, PP_TTRPC_DATA, 0};
    pp_ttrpc_header_pack(data_frame, &h);
    write_all(fd, data_frame, sizeof(data_frame));
    frame = echo_frame(9, 3, &len);
    write_all(fd, frame, len);
    free(frame);
    assert_int_equal(read_response(fd, &id, NULL, NULL), 0);
    assert_int_equal(id, 9);
    /* An undecodable Request closes this connection only. */
    uint8_t bad[PP_TTRPC_HEADER_SIZE + 3];
    h = (pp_ttrpc_header_t){3, 11, PP_TTRPC_REQUEST, 0};
    pp_ttrpc_header_pack(bad, &h);
    memcpy(bad + PP_TTRPC_HEADER_SIZE, "\x0a\x09x", 3);
    write_all(fd, bad, sizeof(bad));
    char c;
    assert_int_equal(read(fd, &c, 1), 0);
    close(fd);
    int fd2 = raw_connect(fx->sock);
    frame = echo_frame(1, 3, &len);
    write_all(fd2, frame, len);
    free(frame);
    assert_int_equal(read_response(fd2, &id, NULL, NULL), 0);
    close(fd2);
    raw_stop(&raw);
}

/* ---- corked writes: answers wait for the loop, in order, per connection -- */

static uint8_t *hold_frame(uint32_t id, const char *body, size_t *len)
{
    pp_ttrpc_request_t req = {.service = {SVC, strlen(SVC)},
                              .method = {"Hold", 4},
                              .payload = (const uint8_t *)body,
                              .payload_len = strlen(body)};
    uint8_t *frame;
    assert_int_equal(pp_ttrpc_request_frame(&req, &frame, len), 0);
    pp_ttrpc_frame_set_stream(frame, id);
    return frame;
}

/* Two raw connections, each with three calls held by the server; the calls
 * are numbered by their payloads "<conn><k>" and stream ids 1, 3, 5. */
static void hold_six(fx_t *fx, int fd[2], pp_ttrpc_call_t *calls[2][3])
{
    for (int c = 0; c < 2; c++) {
        fd[c] = raw_connect(fx->sock);
        for (int k = 0; k < 3; k++) {
            char body[8];
            snprintf(body, sizeof(body), "%d%d", c, k);
            size_t len;
            uint8_t *frame = hold_frame((uint32_t)(2 * k + 1), body, &len);
            write_all(fd[c], frame, len);
            free(frame);
        }
    }
    while (fx->nheld < 6)
        uv_run(&fx->loop, UV_RUN_ONCE);
    for (int i = 0; i < 6; i++) {
        const pp_ttrpc_request_t *r = pp_ttrpc_call_request(fx->held[i]);
        assert_int_equal(r->payload_len, 2);
        calls[r->payload[0] - '0'][r->payload[1] - '0'] = fx->held[i];
        fx->held[i] = NULL;
    }
    fx->nheld = 0;
}

static int readable_now(int fd)
{
    char c;
    return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

static void test_corked_answers_keep_order(void **state)
{
    fx_t *fx = *state;
    int fd[2];
    pp_ttrpc_call_t *calls[2][3];
    hold_six(fx, fd, calls);
    /* Answered outside any read, interleaved across the connections and
     * backwards within each. */
    const int order[6][2] = {{0, 2}, {1, 1}, {0, 0}, {1, 2}, {0, 1}, {1, 0}};
    for (int i = 0; i < 6; i++) {
        char ans[8];
        snprintf(ans, sizeof(ans), "a%d%d", order[i][0], order[i][1]);
        assert_int_equal(pp_ttrpc_call_reply(calls[order[i][0]][order[i][1]], ans, 3), 0);
    }
    /* Nothing has left yet: the answers wait for the loop. */
    assert_false(readable_now(fd[0]));
    assert_false(readable_now(fd[1]));
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_true(readable_now(fd[0]));
    assert_true(readable_now(fd[1]));
    /* Each connection gets its answers in the order they were made. */
    for (int c = 0; c < 2; c++) {
        for (int i = 0; i < 6; i++) {
            if (order[i][0] != c)
                continue;
            uint32_t id;
            uint8_t *pl;
            size_t plen;
            assert_int_equal(read_response(fd[c], &id, &pl, &plen), 0);
            assert_int_equal(id, (uint32_t)(2 * order[i][1] + 1));
            char want[8];
            snprintf(want, sizeof(want), "a%d%d", c, order[i][1]);
            assert_int_equal(plen, 3);
            assert_memory_equal(pl, want, 3);
            free(pl);
        }
        assert_false(readable_now(fd[c]));
        close(fd[c]);
    }
}

static void test_close_with_corked_answers(void **state)
{
    fx_t *fx = *state;
    int fd[2];
    pp_ttrpc_call_t *calls[2][3];
    hold_six(fx, fd, calls);
    for (int k = 0; k < 3; k++)
        assert_int_equal(pp_ttrpc_call_reply(calls[0][k], "done", 4), 0);
    pp_ttrpc_call_reply(calls[1][0], "done", 4);
    assert_false(readable_now(fd[0]));
    /* The server closes while both connections have answers corked: they
     * still go out, then the connections end; the calls still held are
     * cancelled, and their answers dropped. The teardown's uv_loop_close()
     * checks that every handle of the connections was closed. */
    pp_ttrpc_server_close(fx->srv, 0, server_closed_cb, fx);
    fx->srv = NULL;
    assert_int_equal(pp_ttrpc_call_reply(calls[1][1], "late", 4), -ECANCELED);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    /* The server is freed once the last held call is answered. */
    assert_int_equal(fx->server_closed, 0);
    assert_int_equal(pp_ttrpc_call_reply(calls[1][2], "late", 4), -ECANCELED);
    run_until(fx, &fx->server_closed, 2000);
    uint32_t id;
    for (int k = 0; k < 3; k++) {
        assert_int_equal(read_response(fd[0], &id, NULL, NULL), 0);
        assert_int_equal(id, (uint32_t)(2 * k + 1));
    }
    assert_int_equal(read_response(fd[1], &id, NULL, NULL), 0);
    assert_int_equal(id, 1);
    char c;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(read(fd[i], &c, 1), 0);
        close(fd[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_256, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_order_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unimplemented, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metadata_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_propagates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_holds_no_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_enforces_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_enforces_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_deadlines_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_deadlines_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_drop_fails_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graceful_close_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_close_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_from_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exact_limit_and_oversize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_even_stream_and_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corked_answers_keep_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_corked_answers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
