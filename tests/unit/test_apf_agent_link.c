/* The forwarder's link to the kata agent: dialling with backoff, requests
 * queued while the agent is away, cancellation, the wait window, close.
 * Runs against an in-process ttrpc server on a unix socket. */
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

#include "agent_link.h"
#include "ttrpc/ttrpc.h"

typedef struct fixture_s {
    uv_loop_t loop;
    char dir[64];
    char sock[128];
    pp_ttrpc_server_t *srv;
    pp_ttrpc_call_t *held; /* a call the server sits on */
    apf_agent_t *agent;
} fixture_t;

typedef struct result_s {
    int done;
    int code;
    char payload[64];
} result_t;

/* The stand-in agent: "Echo" answers with the request payload, "Hold"
 * keeps the call until the test lets go. */
static void on_echo(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    pp_ttrpc_call_reply(call, req->payload, req->payload_len);
}

static void on_hold(pp_ttrpc_call_t *call, void *data)
{
    fixture_t *fx = data;
    fx->held = call;
}

static void start_server(fixture_t *fx)
{
    pp_error_t err;
    assert_int_equal(pp_ttrpc_server_new(&fx->loop, &fx->srv), 0);
    assert_int_equal(pp_ttrpc_server_register(fx->srv, "t", "Echo", on_echo, fx), 0);
    assert_int_equal(pp_ttrpc_server_register(fx->srv, "t", "Hold", on_hold, fx), 0);
    assert_int_equal(pp_ttrpc_server_listen_unix(fx->srv, fx->sock, &err), 0);
}

static void on_server_closed(pp_ttrpc_server_t *srv, void *data)
{
    (void)srv;
    *(int *)data = 1;
}

typedef struct guard_s {
    uv_timer_t t;
    int fired;
} guard_t;

static void on_guard(uv_timer_t *t)
{
    ((guard_t *)t->data)->fired = 1;
}

static void run_until(fixture_t *fx, const int *flag, unsigned ms)
{
    guard_t g = {0};
    uv_timer_init(&fx->loop, &g.t);
    g.t.data = &g;
    uv_timer_start(&g.t, on_guard, ms, 0);
    while (!*flag && !g.fired)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&g.t, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_true(*flag);
}

static void run_for(fixture_t *fx, unsigned ms)
{
    int never = 0;
    guard_t g = {0};
    uv_timer_init(&fx->loop, &g.t);
    g.t.data = &g;
    uv_timer_start(&g.t, on_guard, ms, 0);
    while (!never && !g.fired)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&g.t, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static void stop_server(fixture_t *fx)
{
    if (fx->srv == NULL)
        return;
    if (fx->held != NULL)
        pp_ttrpc_call_reply(fx->held, NULL, 0);
    fx->held = NULL;
    int closed = 0;
    pp_ttrpc_server_close(fx->srv, 0, on_server_closed, &closed);
    fx->srv = NULL;
    run_until(fx, &closed, 5000);
}

static int setup(void **state)
{
    fixture_t *fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/apf-link-XXXXXX");
    if (mkdtemp(fx->dir) == NULL)
        return -1;
    snprintf(fx->sock, sizeof(fx->sock), "%s/agent.sock", fx->dir);
    uv_loop_init(&fx->loop);
    *state = fx;
    return 0;
}

static void on_agent_closed(apf_agent_t *a, void *data)
{
    (void)a;
    *(int *)data = 1;
}

static int teardown(void **state)
{
    fixture_t *fx = *state;
    if (fx->agent != NULL) {
        int closed = 0;
        apf_agent_close(fx->agent, on_agent_closed, &closed);
        run_until(fx, &closed, 5000);
    }
    stop_server(fx);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&fx->loop);
    unlink(fx->sock);
    rmdir(fx->dir);
    free(fx);
    return rc == 0 ? 0 : -1;
}

static void on_result(pp_ttrpc_result_t *res, void *data)
{
    result_t *r = data;
    assert_false(r->done);
    r->done = 1;
    r->code = res->code;
    snprintf(r->payload, sizeof(r->payload), "%.*s", (int)res->payload_len,
             (const char *)res->payload);
}

static int forward(fixture_t *fx, const char *method, const char *payload, result_t *r,
                   apf_agent_req_t **req)
{
    pp_ttrpc_request_t q = {0};
    q.service.p = "t";
    q.service.n = 1;
    q.method.p = method;
    q.method.n = strlen(method);
    q.payload = (const uint8_t *)payload;
    q.payload_len = strlen(payload);
    uint8_t *frame;
    size_t len;
    assert_int_equal(pp_ttrpc_request_frame(&q, &frame, &len), 0);
    memset(r, 0, sizeof(*r));
    return apf_agent_forward(fx->agent, frame, len, 0, on_result, r, req);
}

typedef struct ready_s {
    int done;
    int status;
} ready_t;

static void on_ready(apf_agent_t *a, int status, void *data)
{
    ready_t *rd = data;
    (void)a;
    rd->done = 1;
    rd->status = status;
}

static void test_wait_and_forward(void **state)
{
    fixture_t *fx = *state;
    start_server(fx);
    assert_int_equal(apf_agent_new(&fx->loop, fx->sock, 5000, &fx->agent), 0);
    ready_t rd = {0};
    assert_int_equal(apf_agent_wait(fx->agent, on_ready, &rd), 0);
    assert_int_equal(apf_agent_wait(fx->agent, on_ready, &rd), -EALREADY);
    assert_false(rd.done); /* never from inside the call */
    run_until(fx, &rd.done, 5000);
    assert_int_equal(rd.status, 0);
    assert_true(apf_agent_connected(fx->agent));

    result_t r;
    assert_int_equal(forward(fx, "Echo", "hello", &r, NULL), 0);
    assert_false(r.done);
    run_until(fx, &r.done, 5000);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.payload, "hello");
}

/* The agent is not there yet: the wait keeps dialling, and succeeds when it
 * appears; a window that closes first reports -ETIMEDOUT. */
static void test_wait_for_late_agent(void **state)
{
    fixture_t *fx = *state;
    assert_int_equal(apf_agent_new(&fx->loop, fx->sock, 10000, &fx->agent), 0);
    ready_t rd = {0};
    assert_int_equal(apf_agent_wait(fx->agent, on_ready, &rd), 0);
    run_for(fx, 300);
    assert_false(rd.done);
    start_server(fx);
    run_until(fx, &rd.done, 3000);
    assert_int_equal(rd.status, 0);

    int closed = 0;
    apf_agent_close(fx->agent, on_agent_closed, &closed);
    fx->agent = NULL;
    run_until(fx, &closed, 5000);
    stop_server(fx);

    assert_int_equal(apf_agent_new(&fx->loop, fx->sock, 200, &fx->agent), 0);
    memset(&rd, 0, sizeof(rd));
    uv_update_time(&fx->loop);
    uint64_t t0 = uv_now(&fx->loop);
    assert_int_equal(apf_agent_wait(fx->agent, on_ready, &rd), 0);
    run_until(fx, &rd.done, 3000);
    assert_int_equal(rd.status, -ETIMEDOUT);
    assert_true(uv_now(&fx->loop) - t0 >= 200);
}

/* Requests made while the agent is away wait for it; the window closing
 * fails them UNAVAILABLE; a later request dials again. */
static void test_queue(void **state)
{
    fixture_t *fx = *state;
    assert_int_equal(apf_agent_new(&fx->loop, fx->sock, 300, &fx->agent), 0);
    result_t r1, r2;
    assert_int_equal(forward(fx, "Echo", "one", &r1, NULL), 0);
    run_until(fx, &r1.done, 3000);
    assert_int_equal(r1.code, PP_GRPC_UNAVAILABLE);

    assert_int_equal(forward(fx, "Echo", "two", &r1, NULL), 0);
    assert_int_equal(forward(fx, "Echo", "three", &r2, NULL), 0);
    run_for(fx, 100);
    assert_false(r1.done);
    start_server(fx);
    run_until(fx, &r1.done, 3000);
    run_until(fx, &r2.done, 3000);
    assert_int_equal(r1.code, 0);
    assert_string_equal(r1.payload, "two");
    assert_int_equal(r2.code, 0);
    assert_string_equal(r2.payload, "three");
}

static void test_queue_limit(void **state)
{
    fixture_t *fx = *state;
    assert_int_equal(apf_agent_new(&fx->loop, fx->sock, 60000, &fx->agent), 0);
    result_t *rs = calloc(APF_AGENT_MAX_QUEUED + 1, sizeof(*rs));
    for (size_t i = 0; i < APF_AGENT_MAX_QUEUED; i++)
        assert_int_equal(forward(fx, "Echo", "x", &rs[i], NULL), 0);
    assert_int_equal(forward(fx, "Echo", "x", &rs[APF_AGENT_MAX_QUEUED], NULL), -ENOBUFS);
    assert_false(rs[APF_AGENT_MAX_QUEUED].done);

    /* Close fails every queued request CANCELLED. */
    int closed = 0;
    apf_agent_close(fx->agent, on_agent_closed, &closed);
    fx->agent = NULL;
    run_until(fx, &closed, 5000);
    for (size_t i = 0; i < APF_AGENT_MAX_QUEUED; i++) {
        assert_true(rs[i].done);
        assert_int_equal(rs[i].code, PP_GRPC_CANCELLED);
    }
    free(rs);
}

static void test_cancel(void **state)
{
    fixture_t *fx = *state;
    assert_int_equal(apf_agent_new(&fx->loop, fx->sock, 60000, &fx->agent), 0);
    result_t r1, r2;
    apf_agent_req_t *q1, *q2;
    assert_int_equal(forward(fx, "Echo", "one", &r1, &q1), 0);
    assert_int_equal(forward(fx, "Echo", "two", &r2, &q2), 0);
    assert_int_equal(apf_agent_cancel(q1, PP_GRPC_DEADLINE_EXCEEDED), 0);
    assert_int_equal(apf_agent_cancel(q1, PP_GRPC_CANCELLED), 0); /* no second callback */
    assert_false(r1.done);
    run_until(fx, &r1.done, 1000);
    assert_int_equal(r1.code, PP_GRPC_DEADLINE_EXCEEDED);

    /* The other one is still queued and goes out when the agent comes. */
    start_server(fx);
    run_until(fx, &r2.done, 3000);
    assert_int_equal(r2.code, 0);
    assert_string_equal(r2.payload, "two");

    /* A request already with the agent cannot be recalled. */
    fx->held = NULL;
    assert_int_equal(forward(fx, "Hold", "h", &r1, &q1), 0);
    while (fx->held == NULL)
        uv_run(&fx->loop, UV_RUN_ONCE);
    assert_int_equal(apf_agent_cancel(q1, PP_GRPC_CANCELLED), -EALREADY);
    pp_ttrpc_call_reply(fx->held, "ok", 2);
    fx->held = NULL;
    run_until(fx, &r1.done, 3000);
    assert_int_equal(r1.code, 0);
    assert_string_equal(r1.payload, "ok");
}

/* The agent goes away mid-call: that call fails UNAVAILABLE, and the next
 * request redials. */
static void test_drop_and_redial(void **state)
{
    fixture_t *fx = *state;
    start_server(fx);
    assert_int_equal(apf_agent_new(&fx->loop, fx->sock, 5000, &fx->agent), 0);
    ready_t rd = {0};
    assert_int_equal(apf_agent_wait(fx->agent, on_ready, &rd), 0);
    run_until(fx, &rd.done, 3000);

    result_t r;
    assert_int_equal(forward(fx, "Hold", "h", &r, NULL), 0);
    while (fx->held == NULL)
        uv_run(&fx->loop, UV_RUN_ONCE);
    int closed = 0;
    pp_ttrpc_server_close(fx->srv, 0, on_server_closed, &closed);
    fx->srv = NULL;
    /* The server frees itself once its handler lets go of the call; the
     * answer goes nowhere. */
    pp_ttrpc_call_reply(fx->held, NULL, 0);
    fx->held = NULL;
    run_until(fx, &r.done, 3000);
    run_until(fx, &closed, 3000);
    assert_int_equal(r.code, PP_GRPC_UNAVAILABLE);
    assert_false(apf_agent_connected(fx->agent));

    start_server(fx);
    assert_int_equal(forward(fx, "Echo", "again", &r, NULL), 0);
    run_until(fx, &r.done, 3000);
    assert_int_equal(r.code, 0);
    assert_string_equal(r.payload, "again");
    assert_true(apf_agent_connected(fx->agent));
}

/* Closing while a wait is pending reports -ECANCELED to it; requests after
 * close are refused. */
static void test_close_during_wait(void **state)
{
    fixture_t *fx = *state;
    assert_int_equal(apf_agent_new(&fx->loop, fx->sock, 60000, &fx->agent), 0);
    ready_t rd = {0};
    assert_int_equal(apf_agent_wait(fx->agent, on_ready, &rd), 0);
    run_for(fx, 50);
    int closed = 0;
    apf_agent_t *a = fx->agent;
    fx->agent = NULL;
    apf_agent_close(a, on_agent_closed, &closed);
    assert_true(rd.done);
    assert_int_equal(rd.status, -ECANCELED);
    result_t r;
    uint8_t *frame = malloc(16);
    assert_int_equal(apf_agent_forward(a, frame, 16, 0, on_result, &r, NULL), -ESHUTDOWN);
    run_until(fx, &closed, 5000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_wait_and_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_for_late_agent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_and_redial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_during_wait, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
