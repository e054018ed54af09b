/* Helpers shared by the AWS provider's tests against the fake EC2: the
 * loop, the fake's control API, the provider's settings, and synchronous
 * wrappers around create, delete and list. */
#include "harness.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>

#include <cmocka.h>

uv_loop_t loop;
const char *fake_url;
pp_http_t *ctl;

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

/* The server side's verdict that every scenario must keep. */
void assert_clean(json_t *rep)
{
    if (rnum(rep, "signature_failures") != 0 || rnum(rep, "auth_failures") != 0 ||
        json_array_size(json_object_get(rep, "param_failures")) != 0) {
        char *s = json_dumps(rep, JSON_COMPACT);
        fail_msg("the fake refused requests: %.2000s", s);
    }
    assert_int_equal(json_object_size(json_object_get(rep, "duplicates")), 0);
}

/* --- the provider ---------------------------------------------------------------------- */

void base_env(void)
{
    static const char *const unset[] = {
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_STS",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_SESSION_TOKEN",
        "PODVM_INSTANCE_TYPES",
        "USE_PUBLIC_IP",
        "DISABLECVM",
        "USE_PODVM_LAUNCHTEMPLATE",
        "PODVM_LAUNCHTEMPLATE_NAME",
        "SSH_KP_NAME",
        "AWS_DEFAULT_REGION",
        "AWS_CA_BUNDLE",
    };
    for (size_t i = 0; i < sizeof(unset) / sizeof(unset[0]); i++)
        unsetenv(unset[i]);
    static char rate[16], burst[16];
    snprintf(rate, sizeof(rate), "%d", RATE);
    snprintf(burst, sizeof(burst), "%d", BURST);
    const char *set[][2] = {
        {"AWS_REGION", "us-east-1"},
        {"AWS_ENDPOINT_URL", fake_url},
        {"AWS_EC2_METADATA_SERVICE_ENDPOINT", fake_url},
        {"AWS_ACCESS_KEY_ID", getenv("FAKE_EC2_ACCESS_KEY")},
        {"AWS_SECRET_ACCESS_KEY", getenv("FAKE_EC2_SECRET_KEY")},
        {"PODVM_AMI_ID", AMI},
        {"PODVM_INSTANCE_TYPE", "m6a.large"},
        {"AWS_SUBNET_ID", "subnet-0123456789abcdef0"},
        {"AWS_SG_IDS", "sg-0aaaaaaaaaaaaaaaa, sg-0bbbbbbbbbbbbbbbb"},
        {"TAGS", "team=peer-pods,env=ci"},
        {"ROOT_VOLUME_SIZE", "30"},
        {"AWS_RETRY_BASE_DELAY_MS", "5"},
        {"AWS_RETRY_MAX_DELAY_MS", "40"},
        {"AWS_MAX_ATTEMPTS", "8"},
        {"AWS_API_ATTEMPT_TIMEOUT_MS", "400"},
        {"AWS_API_TIMEOUT_MS", "15000"},
        {"AWS_IP_POLL_INTERVAL_MS", "20"},
        {"AWS_IP_WAIT_TIMEOUT_MS", "5000"},
        {"AWS_API_RATE_LIMIT", rate},
        {"AWS_API_BURST", burst},
    };
    for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++) {
        assert_non_null(set[i][1]);
        setenv(set[i][0], set[i][1], 1);
    }
}

pp_provider_t *provider(void)
{
    pp_provider_t *p = NULL;
    pp_error_t err = {0};
    int rc = pp_provider_new(&pp_provider_aws_ops, &loop, NODE, 0, NULL, &p, &err);
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
    snprintf(name, nlen, "podvm-test-%.8s", sid);
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

json_t *last_run(json_t *rep)
{
    json_t *runs = json_object_get(rep, "runs");
    assert_true(json_array_size(runs) > 0);
    return json_array_get(runs, json_array_size(runs) - 1);
}

const char *tag_of(json_t *run, const char *key)
{
    json_t *specs = json_object_get(run, "TagSpecifications");
    json_t *tags = json_object_get(json_array_get(specs, 0), "Tags");
    size_t i;
    json_t *t;
    json_array_foreach(tags, i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "Key")), key) == 0)
            return json_string_value(json_object_get(t, "Value"));
    }
    return NULL;
}

int harness_setup(void **state)
{
    (void)state;
    json_decref(fake("POST", "/_fake/reset", NULL));
    base_env();
    return 0;
}

int harness_init(const char *log_level)
{
    /* As in the daemons: a peer that hangs up is an error, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    fake_url = getenv("FAKE_EC2_URL");
    if (fake_url == NULL) {
        fprintf(stderr, "run me under tests/integration/aws/fake_ec2.py\n");
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
