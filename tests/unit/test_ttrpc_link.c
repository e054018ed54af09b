/* The reconnecting ttrpc link (ttrpc/link.h) on a real loop: dial sequences
 * with backoff, calls queued while dialling and flushed on connect, calls
 * failed on drop and when the window closes, cancellation, deadlines while
 * queued, the probe, close while dialling, and forwarding of server calls
 * byte for byte. Peers are in-process ttrpc servers on unix sockets; a
 * scripted dialer stands in where the test must decide how an attempt
 * ends. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ttrpc/link.h"
#include "ttrpc/ttrpc.h"

/* ---- a scripted dialer -------------------------------------------------- */

enum step { FAIL_SYNC, FAIL_ASYNC, HANG, CONNECT };

typedef struct script_s {
    struct fixture_s *fx;
    const enum step *steps; /* the last one repeats */
    size_t nsteps;
    size_t starts;
    uint64_t at[64]; /* loop time of each start */
    int cancels;
    int freed;
    uv_timer_t later;
    pp_ttrpc_link_t *link;
    int hanging;
    int in_use; /* `later` is initialised */
} script_t;

typedef struct fixture_s {
    uv_loop_t loop;
    char dir[64];
    char sock[128];
    char front[128];
    pp_ttrpc_server_t *srv;
    pp_ttrpc_call_t *held[8]; /* calls the server sits on */
    int nheld;
    int ready_ok; /* "Ready" answers OK once set */
    int nready;   /* "Ready" calls seen */
    /* What the last "Record" call carried. */
    uint8_t raw[512];
    size_t raw_len;
    int64_t timeout_nano;
    pp_ttrpc_link_t *link;
    pp_ttrpc_server_t *front_srv; /* forwards every call through the link */
    pp_ttrpc_client_t *clients[2];
    int failures[2]; /* forwarded calls the link answered: count, last code */
    script_t script; /* the scripted dialer's state, when used */
} fixture_t;

typedef struct result_s {
    int done;
    int code;
    char message[256];
    char payload[64];
    uint64_t at;
    int *order; /* completion order, when set */
    int *norder;
    int id;
} result_t;

/* ---- the peer ---------------------------------------------------------- */

static void on_echo(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    pp_ttrpc_call_reply(call, req->payload, req->payload_len);
}

static void on_hold(pp_ttrpc_call_t *call, void *data)
{
    fixture_t *fx = data;
    assert_true(fx->nheld < 8);
    fx->held[fx->nheld++] = call;
}

static void on_ready_probe(pp_ttrpc_call_t *call, void *data)
{
    fixture_t *fx = data;
    fx->nready++;
    if (fx->ready_ok)
        pp_ttrpc_call_reply(call, "up", 2);
    else
        pp_ttrpc_call_fail(call, PP_GRPC_UNAVAILABLE, "agent not up yet");
}

/* Records the request as received and answers with a status, a message and
 * a payload of its own, so that the caller can compare what came back. */
static void on_record(pp_ttrpc_call_t *call, void *data)
{
    fixture_t *fx = data;
    size_t n;
    const uint8_t *raw = pp_ttrpc_call_raw(call, &n);
    assert_true(n <= sizeof(fx->raw));
    memcpy(fx->raw, raw, n);
    fx->raw_len = n;
    fx->timeout_nano = pp_ttrpc_call_request(call)->timeout_nano;
    uint8_t *frame;
    size_t len;
    assert_int_equal(pp_ttrpc_response_frame(PP_GRPC_NOT_FOUND, "no such `thing`",
                                             "\x01\x02\x00\x03", 4, &frame, &len),
                     0);
    pp_ttrpc_call_reply_frame(call, frame, len);
}

static void start_server(fixture_t *fx)
{
    pp_error_t err;
    assert_int_equal(pp_ttrpc_server_new(&fx->loop, &fx->srv), 0);
    assert_int_equal(pp_ttrpc_server_register(fx->srv, "t", "Echo", on_echo, fx), 0);
    assert_int_equal(pp_ttrpc_server_register(fx->srv, "t", "Hold", on_hold, fx), 0);
    assert_int_equal(pp_ttrpc_server_register(fx->srv, "t", "Ready", on_ready_probe, fx), 0);
    assert_int_equal(pp_ttrpc_server_register(fx->srv, "t", "Record", on_record, fx), 0);
    assert_int_equal(pp_ttrpc_server_listen_unix(fx->srv, fx->sock, &err), 0);
}

static void on_flag(pp_ttrpc_server_t *srv, void *data)
{
    (void)srv;
    *(int *)data = 1;
}

/* ---- running the loop -------------------------------------------------- */

typedef struct guard_s {
    uv_timer_t t;
    int fired;
} guard_t;

static void on_guard(uv_timer_t *t)
{
    ((guard_t *)t->data)->fired = 1;
}

static void run_while(fixture_t *fx, const int *flag, int want, unsigned ms)
{
    guard_t g = {0};
    uv_timer_init(&fx->loop, &g.t);
    g.t.data = &g;
    uv_timer_start(&g.t, on_guard, ms, 0);
    while ((flag == NULL || *flag != want) && !g.fired)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&g.t, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
}

/* Runs the loop until `cond` holds, for at most 5 s of loop time. */
#define RUN_UNTIL(fx, cond)                                                                        \
    do {                                                                                           \
        guard_t g_ = {0};                                                                          \
        uv_timer_init(&(fx)->loop, &g_.t);                                                         \
        g_.t.data = &g_;                                                                           \
        uv_timer_start(&g_.t, on_guard, 5000, 0);                                                  \
        while (!(cond) && !g_.fired)                                                               \
            uv_run(&(fx)->loop, UV_RUN_ONCE);                                                      \
        uv_close((uv_handle_t *)&g_.t, NULL);                                                      \
        uv_run(&(fx)->loop, UV_RUN_NOWAIT);                                                        \
        assert_true(cond);                                                                         \
    } while (0)

static void run_until(fixture_t *fx, const int *flag, unsigned ms)
{
    run_while(fx, flag, 1, ms);
    assert_true(*flag);
}

static void run_for(fixture_t *fx, unsigned ms)
{
    run_while(fx, NULL, 0, ms);
}

static void stop_server(fixture_t *fx)
{
    if (fx->srv == NULL)
        return;
    for (int i = 0; i < fx->nheld; i++)
        pp_ttrpc_call_reply(fx->held[i], NULL, 0);
    fx->nheld = 0;
    int closed = 0;
    pp_ttrpc_server_close(fx->srv, 0, on_flag, &closed);
    fx->srv = NULL;
    run_until(fx, &closed, 5000);
}

static int setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/pp-link-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->sock, sizeof(fx->sock), "%s/peer.sock", fx->dir);
    snprintf(fx->front, sizeof(fx->front), "%s/front.sock", fx->dir);
    uv_loop_init(&fx->loop);
    *state = fx;
    return 0;
}

static void on_link_closed(pp_ttrpc_link_t *l, void *data)
{
    assert_non_null(l);
    *(int *)data = 1;
}

static void close_link(fixture_t *fx)
{
    int closed = 0;
    pp_ttrpc_link_close(fx->link, on_link_closed, &closed);
    fx->link = NULL;
    run_until(fx, &closed, 5000);
}

static void script_fini(struct fixture_s *fx, script_t *s);

static int teardown(void **state)
{
    fixture_t *fx = *state;
    for (int i = 0; i < 2; i++)
        if (fx->clients[i] != NULL)
            pp_ttrpc_client_close(fx->clients[i], NULL, NULL);
    if (fx->front_srv != NULL)
        pp_ttrpc_server_close(fx->front_srv, 0, NULL, NULL);
    if (fx->link != NULL)
        close_link(fx);
    script_fini(fx, &fx->script);
    stop_server(fx);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&fx->loop);
    unlink(fx->sock);
    unlink(fx->front);
    rmdir(fx->dir);
    free(fx);
    return rc == 0 ? 0 : -1;
}

/* ---- calls ------------------------------------------------------------- */

static void on_result(pp_ttrpc_result_t *res, void *data)
{
    result_t *r = data;
    assert_false(r->done);
    r->done = 1;
    r->code = res->code;
    snprintf(r->message, sizeof(r->message), "%.*s", (int)res->message.n, res->message.p);
    snprintf(r->payload, sizeof(r->payload), "%.*s", (int)res->payload_len,
             (const char *)res->payload);
    if (r->order != NULL)
        r->order[(*r->norder)++] = r->id;
}

static uint8_t *request(const char *method, const char *payload, int64_t timeout_nano, size_t *len)
{
    pp_ttrpc_request_t q = {0};
    q.service.p = "t";
    q.service.n = 1;
    q.method.p = method;
    q.method.n = strlen(method);
    q.payload = (const uint8_t *)payload;
    q.payload_len = strlen(payload);
    q.timeout_nano = timeout_nano;
    uint8_t *frame;
    assert_int_equal(pp_ttrpc_request_frame(&q, &frame, len), 0);
    return frame;
}

static int call(fixture_t *fx, const char *method, const char *payload, int64_t timeout_nano,
                result_t *r, pp_ttrpc_link_req_t **req)
{
    size_t len;
    uint8_t *frame = request(method, payload, timeout_nano, &len);
    memset(r, 0, sizeof(*r));
    return pp_ttrpc_link_call_frame(fx->link, frame, len, timeout_nano, on_result, r, req);
}

static pp_ttrpc_link_opts_t opts(uint64_t redial_window_ms)
{
    return (pp_ttrpc_link_opts_t){
        .name = "test peer",
        .component = "test",
        .backoff_min_ms = 10,
        .backoff_max_ms = 80,
        .redial_window_ms = redial_window_ms,
    };
}

static void new_unix_link(fixture_t *fx, uint64_t redial_window_ms)
{
    pp_ttrpc_link_opts_t o = opts(redial_window_ms);
    assert_int_equal(pp_ttrpc_link_new_unix(&fx->loop, &o, fx->sock, &fx->link), 0);
}

typedef struct ready_s {
    int done;
    int status;
    char message[PP_ERROR_MAX];
} ready_t;

static void on_ready(pp_ttrpc_link_t *l, int status, const pp_error_t *err, void *data)
{
    ready_t *rd = data;
    (void)l;
    assert_false(rd->done);
    rd->done = 1;
    rd->status = status;
    snprintf(rd->message, sizeof(rd->message), "%s", err ? err->message : "");
}

static uint64_t now(fixture_t *fx)
{
    uv_update_time(&fx->loop);
    return uv_now(&fx->loop);
}

static void script_fail_later(uv_timer_t *t)
{
    script_t *s = t->data;
    pp_ttrpc_link_dialed(s->link, UV_ECONNREFUSED, NULL, NULL, "refused by the script");
}

static void script_connected(uv_connect_t *req, int status)
{
    script_t *s = req->data;
    uv_stream_t *stream = req->handle;
    free(req);
    if (status < 0) {
        uv_close((uv_handle_t *)stream, (uv_close_cb)free);
        pp_ttrpc_link_dialed(s->link, status, NULL, NULL, NULL);
        return;
    }
    pp_ttrpc_link_dialed(s->link, 0, stream, NULL, NULL);
}

static int script_start(pp_ttrpc_link_t *l, uv_loop_t *loop, void *data)
{
    script_t *s = data;
    s->link = l;
    if (s->starts < 64)
        s->at[s->starts] = uv_now(loop);
    enum step st = s->steps[s->starts < s->nsteps ? s->starts : s->nsteps - 1];
    s->starts++;
    switch (st) {
    case FAIL_SYNC:
        return -ECONNREFUSED;
    case FAIL_ASYNC:
        uv_timer_start(&s->later, script_fail_later, 0, 0);
        return 0;
    case HANG:
        s->hanging = 1;
        return 0;
    case CONNECT: {
        uv_pipe_t *p = malloc(sizeof(*p));
        uv_connect_t *req = malloc(sizeof(*req));
        uv_pipe_init(loop, p, 0);
        req->data = s;
        uv_pipe_connect(req, p, s->fx->sock, script_connected);
        return 0;
    }
    }
    return -EINVAL;
}

static void script_cancel(pp_ttrpc_link_t *l, void *data)
{
    script_t *s = data;
    s->cancels++;
    if (s->hanging) {
        s->hanging = 0;
        pp_ttrpc_link_dialed(l, UV_ECANCELED, NULL, NULL, "cancelled");
    }
}

static void script_free(void *data)
{
    ((script_t *)data)->freed = 1;
}

static const pp_ttrpc_dialer_t script_dialer = {script_start, script_cancel, script_free};

static void new_script_link(fixture_t *fx, script_t *s, const enum step *steps, size_t n,
                            uint64_t redial_window_ms)
{
    memset(s, 0, sizeof(*s));
    s->fx = fx;
    s->steps = steps;
    s->nsteps = n;
    uv_timer_init(&fx->loop, &s->later);
    s->later.data = s;
    s->in_use = 1;
    pp_ttrpc_link_opts_t o = opts(redial_window_ms);
    assert_int_equal(pp_ttrpc_link_new(&fx->loop, &o, &script_dialer, s, &fx->link), 0);
}

static void script_fini(fixture_t *fx, script_t *s)
{
    if (!s->in_use)
        return;
    s->in_use = 0;
    uv_close((uv_handle_t *)&s->later, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
}

/* ---- tests ------------------------------------------------------------- */

static void test_wait_and_call(void **state)
{
    fixture_t *fx = *state;
    start_server(fx);
    new_unix_link(fx, 0);
    ready_t rd = {0};
    assert_int_equal(pp_ttrpc_link_wait(fx->link, now(fx) + 5000, NULL, on_ready, &rd), 0);
    assert_int_equal(pp_ttrpc_link_wait(fx->link, now(fx) + 5000, NULL, on_ready, &rd), -EALREADY);
    assert_false(rd.done); /* never from inside the call */
    run_until(fx, &rd.done, 5000);
    assert_int_equal(rd.status, 0);
    assert_true(pp_ttrpc_link_connected(fx->link));
    assert_int_equal(pp_ttrpc_link_wait(fx->link, now(fx) + 5000, NULL, on_ready, &rd), -EALREADY);

    result_t r;
    assert_int_equal(call(fx, "Echo", "hello", 0, &r, NULL), 0);
    assert_false(r.done);
    assert_int_equal(pp_ttrpc_link_in_flight(fx->link), 1);
    run_until(fx, &r.done, 5000);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.payload, "hello");
    assert_int_equal(pp_ttrpc_link_in_flight(fx->link), 0);
}

/* The peer is not there yet: the wait keeps dialling, and succeeds when it
 * appears; a window that closes first reports -ETIMEDOUT, saying how many
 * attempts failed and why. */
static void test_wait_for_late_peer(void **state)
{
    fixture_t *fx = *state;
    new_unix_link(fx, 0);
    ready_t rd = {0};
    assert_int_equal(pp_ttrpc_link_wait(fx->link, now(fx) + 10000, NULL, on_ready, &rd), 0);
    run_for(fx, 300);
    assert_false(rd.done);
    start_server(fx);
    run_until(fx, &rd.done, 3000);
    assert_int_equal(rd.status, 0);
    close_link(fx);
    stop_server(fx);

    new_unix_link(fx, 0);
    memset(&rd, 0, sizeof(rd));
    uint64_t t0 = now(fx);
    assert_int_equal(pp_ttrpc_link_wait(fx->link, t0 + 200, NULL, on_ready, &rd), 0);
    run_until(fx, &rd.done, 3000);
    assert_int_equal(rd.status, -ETIMEDOUT);
    assert_true(uv_now(&fx->loop) - t0 >= 200);
    assert_non_null(strstr(rd.message, "attempts"));
    assert_non_null(strstr(rd.message, uv_strerror(UV_ENOENT)));
}

/* Attempts that fail, synchronously or from the loop, are spaced by a
 * backoff that doubles from the minimum up to the maximum, and the last one
 * comes no later than the window's end. */
static void test_backoff(void **state)
{
    fixture_t *fx = *state;
    static const enum step steps[] = {FAIL_SYNC, FAIL_ASYNC, FAIL_SYNC, FAIL_ASYNC};
    script_t *s = &fx->script;
    new_script_link(fx, s, steps, 4, 0);
    ready_t rd = {0};
    uint64_t t0 = now(fx);
    assert_int_equal(pp_ttrpc_link_wait(fx->link, t0 + 500, NULL, on_ready, &rd), 0);
    assert_int_equal(s->starts, 0); /* the first attempt runs from the loop */
    run_until(fx, &rd.done, 3000);
    assert_int_equal(rd.status, -ETIMEDOUT);
    /* 10 + 20 + 40 + 80 + 80 ... ms: at most ten attempts in 500 ms, fewer
     * when the machine is busy and timers fire late. The wait before each
     * attempt is the backoff, or what was left of the window. */
    assert_in_range(s->starts, 4, 10);
    static const unsigned want[] = {10, 20, 40, 80, 80, 80, 80, 80, 80};
    for (size_t i = 0; i + 1 < s->starts; i++) {
        uint64_t gap = s->at[i + 1] - s->at[i];
        uint64_t left = t0 + 500 - s->at[i];
        uint64_t min = want[i] < left ? want[i] : left;
        if (gap < min || gap > min + 100)
            fail_msg("wait before attempt %zu: %llu ms, want %llu", i + 2, (unsigned long long)gap,
                     (unsigned long long)min);
    }
    assert_true(s->at[s->starts - 1] <= t0 + 500 + 20);
    char want_msg[64];
    snprintf(want_msg, sizeof(want_msg), "after %zu attempts", s->starts);
    assert_non_null(strstr(rd.message, want_msg));
    /* The last attempt failed from the loop or at once; either reason is
     * the last error. */
    assert_true(strstr(rd.message, "refused") != NULL);
    script_fini(fx, s);
    close_link(fx);
    assert_true(s->freed);
}

/* Calls made while the peer is away wait for it and go out in order once
 * it is there; a window that closes first fails them UNAVAILABLE; a later
 * call dials again. */
static void test_queue_flushed_on_connect(void **state)
{
    fixture_t *fx = *state;
    new_unix_link(fx, 300);
    result_t r1, r2, r3;
    assert_int_equal(call(fx, "Echo", "one", 0, &r1, NULL), 0);
    assert_int_equal(pp_ttrpc_link_queued(fx->link), 1);
    run_until(fx, &r1.done, 3000);
    assert_int_equal(r1.code, PP_GRPC_UNAVAILABLE);
    assert_non_null(strstr(r1.message, "test peer is not reachable"));
    assert_int_equal(pp_ttrpc_link_queued(fx->link), 0);

    int order[3], norder = 0;
    assert_int_equal(call(fx, "Echo", "two", 0, &r1, NULL), 0);
    assert_int_equal(call(fx, "Echo", "three", 0, &r2, NULL), 0);
    assert_int_equal(call(fx, "Echo", "four", 0, &r3, NULL), 0);
    r1.order = r2.order = r3.order = order;
    r1.norder = r2.norder = r3.norder = &norder;
    r1.id = 1, r2.id = 2, r3.id = 3;
    run_for(fx, 100);
    assert_false(r1.done);
    assert_int_equal(pp_ttrpc_link_queued(fx->link), 3);
    start_server(fx);
    run_until(fx, &r3.done, 3000);
    assert_int_equal(norder, 3);
    assert_int_equal(order[0], 1);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 3);
    assert_int_equal(r1.code, 0);
    assert_string_equal(r1.payload, "two");
    assert_string_equal(r2.payload, "three");
    assert_string_equal(r3.payload, "four");
    assert_true(pp_ttrpc_link_connected(fx->link));
}

static void test_queue_limit(void **state)
{
    fixture_t *fx = *state;
    new_unix_link(fx, 60000);
    result_t *rs = calloc(PP_TTRPC_LINK_MAX_QUEUED + 1, sizeof(*rs));
    for (size_t i = 0; i < PP_TTRPC_LINK_MAX_QUEUED; i++)
        assert_int_equal(call(fx, "Echo", "x", 0, &rs[i], NULL), 0);
    assert_int_equal(call(fx, "Echo", "x", 0, &rs[PP_TTRPC_LINK_MAX_QUEUED], NULL), -ENOBUFS);
    assert_false(rs[PP_TTRPC_LINK_MAX_QUEUED].done);

    /* Close fails every queued call CANCELLED, from inside the close. */
    int closed = 0;
    pp_ttrpc_link_close(fx->link, on_link_closed, &closed);
    fx->link = NULL;
    for (size_t i = 0; i < PP_TTRPC_LINK_MAX_QUEUED; i++) {
        assert_true(rs[i].done);
        assert_int_equal(rs[i].code, PP_GRPC_CANCELLED);
    }
    run_until(fx, &closed, 5000);
    free(rs);
}

static void test_cancel(void **state)
{
    fixture_t *fx = *state;
    new_unix_link(fx, 60000);
    result_t r1, r2;
    pp_ttrpc_link_req_t *q1, *q2;
    assert_int_equal(call(fx, "Echo", "one", 0, &r1, &q1), 0);
    assert_int_equal(call(fx, "Echo", "two", 0, &r2, &q2), 0);
    assert_int_equal(pp_ttrpc_link_cancel(q1, PP_GRPC_DEADLINE_EXCEEDED), 0);
    assert_int_equal(pp_ttrpc_link_cancel(q1, PP_GRPC_CANCELLED), 0); /* no second callback */
    assert_false(r1.done);
    run_until(fx, &r1.done, 1000);
    assert_int_equal(r1.code, PP_GRPC_DEADLINE_EXCEEDED);

    /* The other one is still queued and goes out when the peer comes. */
    start_server(fx);
    run_until(fx, &r2.done, 3000);
    assert_int_equal(r2.code, 0);
    assert_string_equal(r2.payload, "two");

    /* A call already with the peer cannot be recalled. */
    assert_int_equal(call(fx, "Hold", "h", 0, &r1, &q1), 0);
    RUN_UNTIL(fx, fx->nheld > 0);
    assert_int_equal(pp_ttrpc_link_cancel(q1, PP_GRPC_CANCELLED), -EALREADY);
    pp_ttrpc_call_reply(fx->held[0], "ok", 2);
    fx->nheld = 0;
    run_until(fx, &r1.done, 3000);
    assert_int_equal(r1.code, 0);
    assert_string_equal(r1.payload, "ok");
}

/* The peer goes away with calls in flight: every one fails UNAVAILABLE,
 * and the next call redials. */
static void test_drop_and_redial(void **state)
{
    fixture_t *fx = *state;
    start_server(fx);
    new_unix_link(fx, 5000);
    ready_t rd = {0};
    assert_int_equal(pp_ttrpc_link_wait(fx->link, now(fx) + 5000, NULL, on_ready, &rd), 0);
    run_until(fx, &rd.done, 3000);

    result_t r[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(call(fx, "Hold", "h", 0, &r[i], NULL), 0);
    RUN_UNTIL(fx, fx->nheld >= 3);
    assert_int_equal(pp_ttrpc_link_in_flight(fx->link), 3);
    int closed = 0;
    pp_ttrpc_server_close(fx->srv, 0, on_flag, &closed);
    fx->srv = NULL;
    /* The server frees itself once its handler lets go of the calls; the
     * answers go nowhere. */
    for (int i = 0; i < 3; i++)
        pp_ttrpc_call_reply(fx->held[i], NULL, 0);
    fx->nheld = 0;
    for (int i = 0; i < 3; i++) {
        run_until(fx, &r[i].done, 3000);
        assert_int_equal(r[i].code, PP_GRPC_UNAVAILABLE);
    }
    run_until(fx, &closed, 3000);
    assert_false(pp_ttrpc_link_connected(fx->link));
    assert_int_equal(pp_ttrpc_link_in_flight(fx->link), 0);

    start_server(fx);
    assert_int_equal(call(fx, "Echo", "again", 0, &r[0], NULL), 0);
    run_until(fx, &r[0].done, 3000);
    assert_int_equal(r[0].code, 0);
    assert_string_equal(r[0].payload, "again");
    assert_true(pp_ttrpc_link_connected(fx->link));
}

/* A call with a deadline fails DEADLINE_EXCEEDED when it passes while the
 * call is queued; one without stays queued and goes out later. */
static void test_deadline_while_queued(void **state)
{
    fixture_t *fx = *state;
    new_unix_link(fx, 60000);
    result_t quick, slow, patient;
    uint64_t t0 = now(fx);
    assert_int_equal(call(fx, "Echo", "quick", 100 * 1000000LL, &quick, NULL), 0);
    assert_int_equal(call(fx, "Echo", "slow", 400 * 1000000LL, &slow, NULL), 0);
    assert_int_equal(call(fx, "Echo", "patient", 0, &patient, NULL), 0);
    run_until(fx, &quick.done, 3000);
    assert_int_equal(quick.code, PP_GRPC_DEADLINE_EXCEEDED);
    assert_non_null(strstr(quick.message, "deadline exceeded while waiting for test peer"));
    uint64_t took = uv_now(&fx->loop) - t0;
    assert_in_range(took, 100, 300);
    assert_false(slow.done);
    run_until(fx, &slow.done, 3000);
    assert_int_equal(slow.code, PP_GRPC_DEADLINE_EXCEEDED);
    assert_true(uv_now(&fx->loop) - t0 >= 400);
    assert_false(patient.done);
    assert_int_equal(pp_ttrpc_link_queued(fx->link), 1);
    start_server(fx);
    run_until(fx, &patient.done, 3000);
    assert_int_equal(patient.code, 0);
    assert_string_equal(patient.payload, "patient");
}

static void count_active_timer(uv_handle_t *h, void *arg)
{
    if (h->type == UV_TIMER && uv_is_active(h))
        (*(int *)arg)++;
}

/* Calls with deadlines queued while the link dials, then answered: the
 * link at rest holds no timer (the sweep set for their deadlines stops
 * once the queue is empty), so nothing wakes the loop later. */
static void test_rest_holds_no_timer(void **state)
{
    fixture_t *fx = *state;
    new_unix_link(fx, 60000);
    start_server(fx);
    result_t a, b;
    assert_int_equal(call(fx, "Echo", "a", 60000 * 1000000LL, &a, NULL), 0);
    assert_int_equal(call(fx, "Echo", "b", 30000 * 1000000LL, &b, NULL), 0);
    run_until(fx, &b.done, 3000);
    run_until(fx, &a.done, 3000);
    assert_int_equal(a.code, 0);
    assert_int_equal(b.code, 0);
    for (int k = 0; k < 3; k++)
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    int active = 0;
    uv_walk(&fx->loop, count_active_timer, &active);
    assert_int_equal(active, 0);
}

/* Closing while a wait is pending reports -ECANCELED to it from inside the
 * close; an attempt in progress is cancelled and the link is freed only
 * once the dialer has reported it; calls after close are refused. */
static void test_close_while_dialing(void **state)
{
    fixture_t *fx = *state;
    static const enum step steps[] = {HANG};
    script_t *s = &fx->script;
    new_script_link(fx, s, steps, 1, 60000);
    ready_t rd = {0};
    assert_int_equal(pp_ttrpc_link_wait(fx->link, now(fx) + 60000, NULL, on_ready, &rd), 0);
    result_t queued;
    assert_int_equal(call(fx, "Echo", "q", 0, &queued, NULL), 0);
    run_for(fx, 50);
    assert_int_equal(s->starts, 1);
    assert_true(s->hanging);
    int closed = 0;
    pp_ttrpc_link_t *l = fx->link;
    fx->link = NULL;
    pp_ttrpc_link_close(l, on_link_closed, &closed);
    assert_true(rd.done);
    assert_int_equal(rd.status, -ECANCELED);
    assert_true(queued.done);
    assert_int_equal(queued.code, PP_GRPC_CANCELLED);
    assert_int_equal(s->cancels, 1);
    size_t len;
    uint8_t *frame = request("Echo", "late", 0, &len);
    result_t late = {0};
    assert_int_equal(pp_ttrpc_link_call_frame(l, frame, len, 0, on_result, &late, NULL),
                     -ESHUTDOWN);
    assert_int_equal(pp_ttrpc_link_wait(l, now(fx) + 100, NULL, on_ready, &rd), -ESHUTDOWN);
    run_until(fx, &closed, 5000);
    assert_true(s->freed);
    assert_false(late.done);
    script_fini(fx, s);
}

/* A dialer that reports only after the cancel, from the loop: the link
 * waits for it before it goes. */
static void slow_cancel(pp_ttrpc_link_t *l, void *data)
{
    script_t *s = data;
    (void)l;
    s->cancels++;
    s->hanging = 0;
    uv_timer_start(&s->later, script_fail_later, 30, 0);
}

static void test_close_waits_for_dialer(void **state)
{
    fixture_t *fx = *state;
    static const enum step steps[] = {HANG};
    static const pp_ttrpc_dialer_t dialer = {script_start, slow_cancel, script_free};
    script_t *s = &fx->script;
    *s = (script_t){.fx = fx, .steps = steps, .nsteps = 1, .in_use = 1};
    uv_timer_init(&fx->loop, &s->later);
    s->later.data = s;
    pp_ttrpc_link_opts_t o = opts(60000);
    assert_int_equal(pp_ttrpc_link_new(&fx->loop, &o, &dialer, s, &fx->link), 0);
    result_t r;
    assert_int_equal(call(fx, "Echo", "q", 0, &r, NULL), 0);
    run_for(fx, 30);
    assert_int_equal(s->starts, 1);
    int closed = 0;
    pp_ttrpc_link_close(fx->link, on_link_closed, &closed);
    fx->link = NULL;
    assert_true(r.done);
    run_for(fx, 10);
    assert_false(closed); /* the dialer has not reported yet */
    assert_false(s->freed);
    run_until(fx, &closed, 3000);
    assert_true(s->freed);
    script_fini(fx, s);
}

/* With a probe, a connection counts only once the probe answers OK;
 * failed probes are failed attempts, and the reason reaches the wait. */
static void test_probe(void **state)
{
    fixture_t *fx = *state;
    start_server(fx);
    new_unix_link(fx, 0);
    pp_ttrpc_link_probe_t probe = {"t", "Ready", "?", 1, 1000000000LL};
    ready_t rd = {0};
    result_t queued;
    assert_int_equal(pp_ttrpc_link_wait(fx->link, now(fx) + 5000, &probe, on_ready, &rd), 0);
    assert_int_equal(call(fx, "Echo", "after the probe", 0, &queued, NULL), 0);
    RUN_UNTIL(fx, fx->nready >= 3);
    assert_false(rd.done);
    assert_false(queued.done);
    assert_false(pp_ttrpc_link_connected(fx->link));
    /* Connections were made, though none counts yet. */
    uint64_t first = pp_ttrpc_link_first_connect_ms(fx->link);
    assert_true(first != 0 && first <= uv_now(&fx->loop));
    fx->ready_ok = 1;
    run_until(fx, &rd.done, 3000);
    assert_int_equal(rd.status, 0);
    run_until(fx, &queued.done, 3000);
    assert_string_equal(queued.payload, "after the probe");
    close_link(fx);

    /* A probe that never passes: the window closes with its reason. */
    fx->ready_ok = 0;
    new_unix_link(fx, 0);
    memset(&rd, 0, sizeof(rd));
    assert_int_equal(pp_ttrpc_link_wait(fx->link, now(fx) + 200, &probe, on_ready, &rd), 0);
    run_until(fx, &rd.done, 3000);
    assert_int_equal(rd.status, -ETIMEDOUT);
    assert_non_null(strstr(rd.message, "probe `t/Ready`: UNAVAILABLE: agent not up yet"));

    /* Later dials of the link do not probe: only the wait's do. */
    result_t r;
    assert_int_equal(call(fx, "Echo", "unprobed", 0, &r, NULL), 0);
    run_until(fx, &r.done, 3000);
    assert_int_equal(r.code, 0);
}

/* The scripted dialer's connection is used like any other. */
static void test_custom_dialer(void **state)
{
    fixture_t *fx = *state;
    static const enum step steps[] = {FAIL_ASYNC, CONNECT};
    start_server(fx);
    script_t *s = &fx->script;
    new_script_link(fx, s, steps, 2, 5000);
    result_t r;
    assert_int_equal(call(fx, "Echo", "through", 0, &r, NULL), 0);
    run_until(fx, &r.done, 3000);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.payload, "through");
    assert_int_equal(s->starts, 2);
    close_link(fx);
    script_fini(fx, s);
}

/* ---- forwarding -------------------------------------------------------- */

static void count_failure(pp_ttrpc_link_t *l, int code, void *data)
{
    (void)l;
    int *counts = data;
    counts[0]++;
    counts[1] = code;
}

static void on_front_call(pp_ttrpc_call_t *call, void *data)
{
    fixture_t *fx = data;
    size_t len;
    uint8_t *frame = pp_ttrpc_call_steal_frame(call, &len);
    pp_ttrpc_link_forward(fx->link, call, frame, len);
}

static void start_front(fixture_t *fx)
{
    pp_error_t err;
    assert_int_equal(pp_ttrpc_server_new(&fx->loop, &fx->front_srv), 0);
    pp_ttrpc_server_set_fallback(fx->front_srv, on_front_call, fx);
    assert_int_equal(pp_ttrpc_server_listen_unix(fx->front_srv, fx->front, &err), 0);
}

typedef struct raw_s {
    int done;
    int code;
    uint8_t frame[512];
    size_t len;
} raw_t;

static void on_raw(pp_ttrpc_result_t *res, void *data)
{
    raw_t *r = data;
    r->done = 1;
    r->code = res->code;
    r->len = res->frame_len;
    if (res->frame != NULL && res->frame_len <= sizeof(r->frame))
        memcpy(r->frame, res->frame, res->frame_len);
}

static void on_connected(pp_ttrpc_client_t *c, int status, void *data)
{
    (void)c;
    *(int *)data = status == 0 ? 1 : -1;
}

/* A client in the fixture's slot `i`, connected to `path`. */
static pp_ttrpc_client_t *connect_to(fixture_t *fx, int i, const char *path)
{
    pp_ttrpc_client_t *c;
    int up = 0;
    assert_int_equal(pp_ttrpc_client_new(&fx->loop, &c), 0);
    fx->clients[i] = c;
    assert_int_equal(pp_ttrpc_client_connect_unix(c, path, on_connected, &up), 0);
    run_until(fx, &up, 3000);
    return c;
}

/* Through a front server whose every call is forwarded: the request bytes
 * (metadata and timeout_nano included) reach the peer unchanged, and the
 * response frame comes back as the peer sent it, status and all. */
static void test_forward_byte_exact(void **state)
{
    fixture_t *fx = *state;
    start_server(fx);
    new_unix_link(fx, 0);
    int *failures = fx->failures;
    pp_ttrpc_link_on_forward_failure(fx->link, count_failure, failures);
    assert_int_equal(pp_ttrpc_link_first_connect_ms(fx->link), 0);
    start_front(fx);

    pp_ttrpc_kv_t md[2] = {{{"k1", 2}, {"v1", 2}}, {{"k2", 2}, {"", 0}}};
    pp_ttrpc_request_t q = {
        .service = {"t", 1},
        .method = {"Record", 6},
        .payload = (const uint8_t *)"\x00\xff\x10payload",
        .payload_len = 10,
        .timeout_nano = 7000000123LL,
        .metadata = md,
        .metadata_count = 2,
    };
    uint8_t *frame;
    size_t len;
    assert_int_equal(pp_ttrpc_request_frame(&q, &frame, &len), 0);
    uint8_t sent[512];
    memcpy(sent, frame, len);

    /* The same call straight to the peer, for the answer to compare. */
    pp_ttrpc_client_t *direct = connect_to(fx, 0, fx->sock);
    raw_t want = {0};
    uint8_t *copy = malloc(len);
    memcpy(copy, frame, len);
    assert_int_equal(pp_ttrpc_client_call_frame(direct, copy, len, 0, on_raw, &want), 0);
    run_until(fx, &want.done, 3000);
    assert_int_equal(want.code, PP_GRPC_NOT_FOUND);

    pp_ttrpc_client_t *c = connect_to(fx, 1, fx->front);
    raw_t got = {0};
    fx->raw_len = 0;
    assert_int_equal(pp_ttrpc_client_call_frame(c, frame, len, 0, on_raw, &got), 0);
    run_until(fx, &got.done, 3000);
    assert_int_equal(fx->raw_len, len - PP_TTRPC_HEADER_SIZE);
    assert_memory_equal(fx->raw, sent + PP_TTRPC_HEADER_SIZE, fx->raw_len);
    assert_int_equal(fx->timeout_nano, 7000000123LL);
    assert_int_equal(got.code, PP_GRPC_NOT_FOUND);
    assert_int_equal(got.len, want.len);
    /* Length, then type and flags, then the response: all but the stream
     * id (bytes 4-7). */
    assert_memory_equal(got.frame, want.frame, 4);
    assert_memory_equal(got.frame + 8, want.frame + 8, got.len - 8);
    /* The peer's own error is no failure of the link's. */
    assert_int_equal(failures[0], 0);

    /* The peer goes away: the next call dials once, fails, and the caller
     * hears UNAVAILABLE. */
    stop_server(fx);
    run_for(fx, 50);
    pp_ttrpc_call_opts_t o = {"t", "Echo", "x", 1, 2000000000LL, NULL, 0};
    result_t r = {0};
    assert_int_equal(pp_ttrpc_client_call(c, &o, on_result, &r), 0);
    run_until(fx, &r.done, 3000);
    assert_int_equal(r.code, PP_GRPC_UNAVAILABLE);
    assert_int_equal(pp_ttrpc_link_queued(fx->link), 0);
    assert_int_equal(failures[0], 1);
    assert_int_equal(failures[1], PP_GRPC_UNAVAILABLE);
}

/* A forwarded call whose caller's deadline passes while it is queued is
 * answered DEADLINE_EXCEEDED and leaves the queue; one whose caller goes
 * away leaves it too, and never reaches the peer. */
static void test_forward_queued_caller_gone(void **state)
{
    fixture_t *fx = *state;
    new_unix_link(fx, 60000);
    start_front(fx);

    pp_ttrpc_client_t *c = connect_to(fx, 1, fx->front);
    pp_ttrpc_call_opts_t o = {"t", "Echo", "x", 1, 150000000LL, NULL, 0};
    result_t r = {0};
    assert_int_equal(pp_ttrpc_client_call(c, &o, on_result, &r), 0);
    RUN_UNTIL(fx, pp_ttrpc_link_queued(fx->link) > 0);
    run_until(fx, &r.done, 3000);
    assert_int_equal(r.code, PP_GRPC_DEADLINE_EXCEEDED);
    run_for(fx, 20);
    assert_int_equal(pp_ttrpc_link_queued(fx->link), 0);

    /* The caller goes away. */
    pp_ttrpc_client_t *c2 = connect_to(fx, 0, fx->front);
    o.method = "Record";
    o.timeout_nano = 0;
    result_t r2 = {0};
    assert_int_equal(pp_ttrpc_client_call(c2, &o, on_result, &r2), 0);
    RUN_UNTIL(fx, pp_ttrpc_link_queued(fx->link) > 0);
    pp_ttrpc_client_close(c2, NULL, NULL);
    fx->clients[0] = NULL;
    assert_true(r2.done);
    assert_int_equal(r2.code, PP_GRPC_CANCELLED);
    RUN_UNTIL(fx, pp_ttrpc_link_queued(fx->link) == 0);
    start_server(fx);
    result_t r3;
    assert_int_equal(call(fx, "Echo", "later", 0, &r3, NULL), 0);
    run_until(fx, &r3.done, 3000);
    assert_int_equal(r3.code, 0);
    assert_int_equal(fx->raw_len, 0); /* the dropped call never arrived */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_wait_and_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_for_late_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backoff, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_flushed_on_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_and_redial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_while_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rest_holds_no_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_while_dialing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_waits_for_dialer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_custom_dialer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forward_byte_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forward_queued_caller_gone, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
