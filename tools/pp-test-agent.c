/* pp-test-agent: a stand-in kata agent for tests and demos.
 *
 * Serves the agent API on a unix socket (`-socket PATH`, else
 * $KATA_AGENT_SOCKET, else the kata default):
 * - grpc.Health/Check answers SERVING, grpc.Health/Version a fixed version;
 * - grpc.AgentService/GetGuestDetails answers plausible guest details;
 * - every other grpc.AgentService method answers an empty message (OK);
 * - any other service is UNIMPLEMENTED.
 *
 * With $PP_AGENT_RECORD set, every request received is appended to that file
 * as one JSON line, written with a single write(2) so lines never interleave
 * and are on disk before the answer leaves:
 *   {"service":..,"method":..,"payload":"<hex>","timeout_nano":N,
 *    "metadata":[{"key":..,"value":..}]}
 *
 * Test hooks: $PP_AGENT_DELAY_MS delays AgentService answers (only for the
 * method named by $PP_AGENT_DELAY_METHOD when set); $PP_AGENT_FAIL_METHOD
 * names an AgentService method answered with $PP_AGENT_FAIL_CODE (default
 * 13, INTERNAL). SIGTERM or SIGINT stops it, exit status 0. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "agent.pb-c.h"
#include "health.pb-c.h"
#include "ttrpc/ttrpc.h"
#include "util/buf.h"
#include "util/hex.h"
#include "util/log.h"

#define COMPONENT      "test-agent"
#define DEFAULT_SOCKET "/run/kata-containers/agent.sock"
#define AGENT_VERSION  "pp-test-agent 0.1"

typedef struct delayed_s delayed_t;

typedef struct test_agent_s {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    pp_ttrpc_server_t *srv;
    int record_fd;
    uint64_t delay_ms;
    const char *delay_method;
    const char *fail_method;
    int fail_code;
    delayed_t *delayed; /* answers waiting for their delay */
    unsigned stopping : 1;
} test_agent_t;

struct delayed_s {
    uv_timer_t timer;
    test_agent_t *ta;
    pp_ttrpc_call_t *call;
    delayed_t *prev, *next;
};

/* ---- recording ---------------------------------------------------------- */

static json_t *str_json(pp_str_t s)
{
    /* Not valid UTF-8: null rather than a lossy string. */
    json_t *j = json_stringn(s.p ? s.p : "", s.n);
    return j ? j : json_null();
}

static int record(test_agent_t *ta, const pp_ttrpc_request_t *req)
{
    if (ta->record_fd < 0)
        return 0;
    char *payload = malloc(req->payload_len * 2 + 1);
    if (payload == NULL)
        return -ENOMEM;
    pp_hex_encode(req->payload, req->payload_len, payload);

    json_t *md = json_array();
    for (size_t i = 0; i < req->metadata_count; i++)
        json_array_append_new(md, json_pack("{s:o,s:o}", "key", str_json(req->metadata[i].key),
                                            "value", str_json(req->metadata[i].value)));
    json_t *line = json_pack("{s:o,s:o,s:s,s:I,s:o}", "service", str_json(req->service), "method",
                             str_json(req->method), "payload", payload, "timeout_nano",
                             (json_int_t)req->timeout_nano, "metadata", md);
    free(payload);
    if (line == NULL)
        return -ENOMEM;
    char *text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    if (text == NULL)
        return -ENOMEM;
    size_t n = strlen(text);
    text[n] = '\n'; /* replaces the NUL; the length is known */
    ssize_t w = write(ta->record_fd, text, n + 1);
    int rc = w == (ssize_t)(n + 1) ? 0 : -EIO;
    free(text);
    if (rc < 0)
        PP_ERR(COMPONENT, "record: short write");
    return rc;
}

/* ---- answers ------------------------------------------------------------ */

static void reply_message(pp_ttrpc_call_t *call, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    protobuf_c_message_pack(msg, buf);
    pp_ttrpc_call_reply(call, buf, n);
    free(buf);
}

static void on_check(pp_ttrpc_call_t *call, void *data)
{
    test_agent_t *ta = data;
    record(ta, pp_ttrpc_call_request(call));
    Grpc__HealthCheckResponse resp = GRPC__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    reply_message(call, &resp.base);
}

static void on_version(pp_ttrpc_call_t *call, void *data)
{
    test_agent_t *ta = data;
    record(ta, pp_ttrpc_call_request(call));
    Grpc__VersionCheckResponse resp = GRPC__VERSION_CHECK_RESPONSE__INIT;
    resp.grpc_version = "pp-test";
    resp.agent_version = AGENT_VERSION;
    reply_message(call, &resp.base);
}

static void answer_agent_call(pp_ttrpc_call_t *call, test_agent_t *ta)
{
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    if (ta->fail_method != NULL && pp_str_eq(req->method, ta->fail_method)) {
        pp_ttrpc_call_fail(call, ta->fail_code, "test failure for %s", ta->fail_method);
        return;
    }
    if (pp_str_eq(req->method, "GetGuestDetails")) {
        Grpc__AgentDetails details = GRPC__AGENT_DETAILS__INIT;
        Grpc__GuestDetailsResponse resp = GRPC__GUEST_DETAILS_RESPONSE__INIT;
        details.version = AGENT_VERSION;
        details.init_daemon = 1;
        resp.mem_block_size_bytes = 128u << 20;
        resp.agent_details = &details;
        reply_message(call, &resp.base);
        return;
    }
    pp_ttrpc_call_reply(call, NULL, 0);
}

static void delayed_free(uv_handle_t *h)
{
    free(h->data);
}

static void delayed_finish(delayed_t *d)
{
    test_agent_t *ta = d->ta;
    if (d->prev)
        d->prev->next = d->next;
    else
        ta->delayed = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->timer.data = d;
    uv_close((uv_handle_t *)&d->timer, delayed_free);
}

static void on_delay(uv_timer_t *t)
{
    delayed_t *d = t->data;
    pp_ttrpc_call_t *call = d->call;
    test_agent_t *ta = d->ta;
    delayed_finish(d);
    answer_agent_call(call, ta);
}

static void on_agent_call(pp_ttrpc_call_t *call, void *data)
{
    test_agent_t *ta = data;
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    record(ta, req);
    if (!pp_str_eq(req->service, "grpc.AgentService")) {
        pp_ttrpc_call_fail(call, PP_GRPC_UNIMPLEMENTED, "service %.*s", (int)req->service.n,
                           req->service.p);
        return;
    }
    int delay =
        ta->delay_ms > 0 && (ta->delay_method == NULL || pp_str_eq(req->method, ta->delay_method));
    if (!delay) {
        answer_agent_call(call, ta);
        return;
    }
    delayed_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    d->ta = ta;
    d->call = call;
    d->next = ta->delayed;
    if (ta->delayed)
        ta->delayed->prev = d;
    ta->delayed = d;
    uv_timer_init(&ta->loop, &d->timer);
    d->timer.data = d;
    uv_timer_start(&d->timer, on_delay, ta->delay_ms, 0);
}

/* ---- process ------------------------------------------------------------ */

static void on_server_closed(pp_ttrpc_server_t *srv, void *data)
{
    test_agent_t *ta = data;
    (void)srv;
    ta->srv = NULL;
    uv_close((uv_handle_t *)&ta->sigterm, NULL);
    uv_close((uv_handle_t *)&ta->sigint, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    test_agent_t *ta = s->data;
    (void)signum;
    if (ta->stopping)
        return;
    ta->stopping = 1;
    PP_INFO(COMPONENT, "stopping");
    /* Delayed calls are answered now; the answers are dropped. */
    while (ta->delayed != NULL) {
        delayed_t *d = ta->delayed;
        pp_ttrpc_call_t *call = d->call;
        delayed_finish(d);
        pp_ttrpc_call_fail(call, PP_GRPC_UNAVAILABLE, "agent stopping");
    }
    pp_ttrpc_server_close(ta->srv, 0, on_server_closed, ta);
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return dflt;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end != '\0') {
        fprintf(stderr, "pp-test-agent: $%s: expected a number, got `%s`\n", name, v);
        exit(2);
    }
    return n;
}

static const char *env_str(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? v : NULL;
}

int main(int argc, char **argv)
{
    test_agent_t ta = {.record_fd = -1};
    const char *socket_path = env_str("KATA_AGENT_SOCKET");
    pp_error_t err = {0};

    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-socket") == 0 || strcmp(argv[i], "--socket") == 0) && i + 1 < argc) {
            socket_path = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [-socket PATH]\n", argv[0]);
            return 2;
        }
    }
    if (socket_path == NULL)
        socket_path = DEFAULT_SOCKET;
    signal(SIGPIPE, SIG_IGN);

    const char *rec = env_str("PP_AGENT_RECORD");
    if (rec != NULL) {
        ta.record_fd = open(rec, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (ta.record_fd < 0) {
            fprintf(stderr, "pp-test-agent: open `%s`: %s\n", rec, strerror(errno));
            return 1;
        }
    }
    ta.delay_ms = env_u64("PP_AGENT_DELAY_MS", 0);
    ta.delay_method = env_str("PP_AGENT_DELAY_METHOD");
    ta.fail_method = env_str("PP_AGENT_FAIL_METHOD");
    ta.fail_code = (int)env_u64("PP_AGENT_FAIL_CODE", PP_GRPC_INTERNAL);

    uv_loop_init(&ta.loop);
    uv_signal_init(&ta.loop, &ta.sigterm);
    uv_signal_init(&ta.loop, &ta.sigint);
    ta.sigterm.data = ta.sigint.data = &ta;
    uv_signal_start(&ta.sigterm, on_signal, SIGTERM);
    uv_signal_start(&ta.sigint, on_signal, SIGINT);

    int r = pp_ttrpc_server_new(&ta.loop, &ta.srv);
    if (r == 0)
        r = pp_ttrpc_server_register(ta.srv, "grpc.Health", "Check", on_check, &ta);
    if (r == 0)
        r = pp_ttrpc_server_register(ta.srv, "grpc.Health", "Version", on_version, &ta);
    if (r < 0) {
        fprintf(stderr, "pp-test-agent: %s\n", uv_strerror(r));
        return 1;
    }
    pp_ttrpc_server_set_fallback(ta.srv, on_agent_call, &ta);
    r = pp_ttrpc_server_listen_unix(ta.srv, socket_path, &err);
    if (r < 0) {
        fprintf(stderr, "pp-test-agent: %s\n", err.message);
        return 1;
    }
    PP_INFO(COMPONENT, "serving on `%s`", socket_path);

    uv_run(&ta.loop, UV_RUN_DEFAULT);
    uv_loop_close(&ta.loop);
    if (ta.record_fd >= 0)
        close(ta.record_fd);
    return 0;
}
