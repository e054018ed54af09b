/* Helpers shared by the tests of a provider against its fake cloud: the
 * loop, the fake's control API, and synchronous wrappers around create,
 * delete and list. */
#include "harness.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/grpc_codes.h"

uv_loop_t loop;
const char *fake_url;
static pp_http_t *ctl;

/* --- running the loop ------------------------------------------------------------ */

static int guard_fired;

static void on_guard(uv_timer_t *t)
{
    guard_fired = 1;
    uv_stop(t->loop);
}

void run_until(int *flag, uint64_t ms)
{
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    guard_fired = 0;
    uv_timer_start(&guard, on_guard, ms, 0);
    while (!*flag && !guard_fired)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (guard_fired)
        fail_msg("timed out after %llu ms", (unsigned long long)ms);
}

static void on_sleep(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

void sleep_ms(uint64_t ms)
{
    uv_timer_t t;
    int done = 0;
    uv_timer_init(&loop, &t);
    t.data = &done;
    uv_timer_start(&t, on_sleep, ms, 0);
    run_until(&done, ms + 5000);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

/* --- the fake's control API --------------------------------------------------------- */

typedef struct ctl_res_s {
    int done, status;
    long http;
    char *body;
} ctl_res_t;

static void on_ctl(int status, const pp_http_response_t *resp, const pp_error_t *err, void *data)
{
    ctl_res_t *r = data;
    (void)err;
    r->done = 1;
    r->status = status;
    if (status == 0) {
        r->http = resp->status;
        r->body = strndup(resp->body, resp->body_len);
    }
}

json_t *fake(const char *method, const char *path, const char *json)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", fake_url, path);
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    pp_http_request_t r = {.method = method,
                           .url = url,
                           .headers = hdrs,
                           .body = json,
                           .body_len = json ? strlen(json) : 0};
    ctl_res_t res = {0};
    assert_int_equal(pp_http_send(ctl, &r, on_ctl, &res, NULL), 0);
    run_until(&res.done, 60000);
    assert_int_equal(res.status, 0);
    if (res.http != 200)
        fail_msg("fake %s %s: HTTP %ld: %s", method, path, res.http, res.body);
    json_error_t jerr;
    json_t *j = json_loads(res.body, 0, &jerr);
    free(res.body);
    assert_non_null(j);
    return j;
}

void fake_config(const char *json)
{
    json_decref(fake("POST", "/_fake/config", json));
}

json_t *report(void)
{
    return fake("GET", "/_fake/report", NULL);
}

long long rnum(json_t *rep, const char *key)
{
    json_t *v = json_object_get(rep, key);
    return json_is_integer(v) ? json_integer_value(v) : (long long)json_number_value(v);
}

long long alive_total(json_t *rep)
{
    json_t *alive = json_object_get(rep, "alive_resources");
    assert_true(json_is_object(alive));
    long long n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(alive, k, v)
    {
        n += json_integer_value(v);
    }
    return n;
}

char *rdump(json_t *rep, const char *key)
{
    return json_dumps(json_object_get(rep, key), JSON_COMPACT);
}

int harness_reset(void **state)
{
    (void)state;
    json_decref(fake("POST", "/_fake/reset", NULL));
    return 0;
}

/* --- the provider ---------------------------------------------------------------------- */

pp_provider_t *provider_of(const struct pp_provider_ops *ops, const char *node)
{
    pp_provider_t *p = NULL;
    pp_error_t err = {0};
    int rc = pp_provider_new(ops, &loop, node, 0, NULL, &p, &err);
    if (rc < 0)
        fail_msg("provider: %s", err.message);
    return p;
}

void provider_free(pp_provider_t *p)
{
    pp_provider_free(p);
    uv_run(&loop, UV_RUN_NOWAIT);
}

void on_create(int status, const pp_instance_t *inst, const pp_error_t *err, void *data)
{
    res_t *r = data;
    assert_int_equal(r->done, 0);
    r->done = 1;
    r->status = status;
    if (status == 0) {
        r->inst = *inst;
    } else {
        r->grpc = pp_error_grpc_status(err);
        snprintf(r->msg, sizeof(r->msg), "%s", err->message);
    }
}

void on_delete(int status, const pp_error_t *err, void *data)
{
    res_t *r = data;
    assert_int_equal(r->done, 0);
    r->done = 1;
    r->status = status;
    if (status < 0)
        snprintf(r->msg, sizeof(r->msg), "%s", err->message);
}

void on_list(int status, const pp_instance_t *insts, size_t n, const pp_error_t *err, void *data)
{
    res_t *r = data;
    r->done = 1;
    r->status = status;
    if (status == 0) {
        r->n = n;
        r->list = calloc(n + 1, sizeof(*insts));
        if (n > 0)
            memcpy(r->list, insts, n * sizeof(*insts));
    } else {
        snprintf(r->msg, sizeof(r->msg), "%s", err->message);
    }
}

pp_instance_spec_t spec_for(const char *sid, char *name, size_t nlen)
{
    /* Like the adaptor's names: 8 hex digits (of the sandbox id's hash). */
    uint32_t h = 2166136261u;
    for (const char *c = sid; *c; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    snprintf(name, nlen, "podvm-test-%08x", h);
    return (pp_instance_spec_t){.sandbox_id = sid,
                                .instance_name = name,
                                .node_name = NODE,
                                .user_data = UD,
                                .user_data_len = strlen(UD)};
}

res_t create(pp_provider_t *p, const pp_instance_spec_t *spec)
{
    res_t r = {0};
    assert_int_equal(p->ops->create_instance(p, spec, on_create, &r), 0);
    assert_int_equal(r.done, 0);
    run_until(&r.done, 60000);
    if (r.status < 0)
        print_message("create `%s`: %s (%s)\n", spec->sandbox_id, r.msg, pp_grpc_code_name(r.grpc));
    return r;
}

res_t destroy(pp_provider_t *p, const char *id)
{
    res_t r = {0};
    assert_int_equal(p->ops->delete_instance(p, id, on_delete, &r), 0);
    assert_int_equal(r.done, 0);
    run_until(&r.done, 60000);
    return r;
}

res_t list(pp_provider_t *p)
{
    res_t r = {0};
    assert_int_equal(p->ops->list_instances(p, on_list, &r), 0);
    run_until(&r.done, 60000);
    return r;
}

int harness_init(const char *log_level)
{
    /* As in the daemons: a peer that hangs up is an error, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    fake_url = getenv("FAKE_URL");
    if (fake_url == NULL) {
        fprintf(stderr, "run me under a fake cloud (tests/conformance/README.md)\n");
        return 77;
    }
    setenv("PP_LOG_LEVEL", log_level, 1);
    if (uv_loop_init(&loop) < 0)
        return 1;
    pp_http_config_t cc = {.name = "fake-control",
                           .max_attempts = 1,
                           .timeout_ms = 60000,
                           .attempt_timeout_ms = 60000};
    pp_error_t err = {0};
    if (pp_http_new(&loop, &cc, &ctl, &err) < 0) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    return 0;
}

void harness_fini(void)
{
    pp_http_free(ctl);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}
