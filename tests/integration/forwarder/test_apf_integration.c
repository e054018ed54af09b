/* agent-protocol-forwarder end to end: the real daemon between a ttrpc
 * client (ours) on 127.0.0.1 and pp-test-agent on a unix socket, each test
 * in its own temporary directory with its own port and processes.
 *
 * usage: test_apf_integration <agent-protocol-forwarder> <pp-test-agent>
 *
 * The agent records every request it receives (PP_AGENT_RECORD), so the
 * tests compare what the client sent with what the agent got, byte for
 * byte. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.pb-c.h"
#include "health.pb-c.h"
#include "interceptor.h"
#include "oci.pb-c.h"
#include "tls/ca.h"
#include "tls/tls.h"
#include "ttrpc/ttrpc.h"

#define PODNS         "/run/netns/itest-podns"
#define AGENT_SERVICE "grpc.AgentService"

static const char *apf_bin, *agent_bin;

typedef struct env_s {
    char dir[64];
    char sock[128], record[128], agent_log[128], apf_log[128], config[128];
    char listen[64];
    int port;
    pid_t agent, apf;
    uv_loop_t loop;
    pp_ttrpc_client_t *client;
    int tls; /* start the forwarder without -disable-tls */
} env_t;

/* Test hooks of pp-test-agent; NULL leaves one unset. */
typedef struct agent_opts_s {
    const char *delay_ms;
    const char *delay_method;
    const char *fail_method;
    const char *fail_code;
} agent_opts_t;

typedef struct result_s {
    int done;
    int code;
    char message[512];
    uint8_t *payload;
    size_t payload_len;
} result_t;

/* ---- processes ---------------------------------------------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static pid_t spawn(char *const argv[], const char *log, const char *const env_kv[])
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (size_t i = 0; env_kv != NULL && env_kv[i] != NULL; i += 2)
            if (env_kv[i + 1] != NULL)
                setenv(env_kv[i], env_kv[i + 1], 1);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* Waits for `pid` to exit, up to `ms`; its wait status, or -1 on timeout. */
static int wait_exit(pid_t pid, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (now_ms() >= end)
            return -1;
        sleep_ms(10);
    }
}

/* Whether `pid` is still running; an exited child is left to be reaped. */
static int alive(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    return pid > 0 && waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           si.si_pid == 0;
}

/* Stops a process: `sig`, then SIGKILL if it lingers. Its wait status. */
static int stop_process(pid_t *pid, int sig)
{
    if (*pid <= 0)
        return 0;
    kill(*pid, sig);
    int status = wait_exit(*pid, 15000);
    if (status == -1) {
        kill(*pid, SIGKILL);
        status = wait_exit(*pid, 5000);
        print_error("pid %d ignored signal %d\n", (int)*pid, sig);
        status = -1;
    }
    *pid = 0;
    return status;
}

static int count_dir(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "ls -1 %s 2>/dev/null | wc -l", path);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p != NULL && fscanf(p, "%d", &n) != 1)
        n = -1;
    if (p != NULL)
        pclose(p);
    return n;
}

static int unix_accepts(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof(sa.sun_path)) {
        close(fd);
        return 0;
    }
    memcpy(sa.sun_path, path, n + 1);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static int tcp_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void start_agent(env_t *e, const agent_opts_t *o)
{
    agent_opts_t none = {0};
    if (o == NULL)
        o = &none;
    char *argv[] = {(char *)agent_bin, "-socket", e->sock, NULL};
    const char *kv[] = {"PP_AGENT_RECORD",
                        e->record,
                        "PP_AGENT_DELAY_MS",
                        o->delay_ms,
                        "PP_AGENT_DELAY_METHOD",
                        o->delay_method,
                        "PP_AGENT_FAIL_METHOD",
                        o->fail_method,
                        "PP_AGENT_FAIL_CODE",
                        o->fail_code,
                        NULL};
    e->agent = spawn(argv, e->agent_log, kv);
    uint64_t end = now_ms() + 10000;
    while (!unix_accepts(e->sock)) {
        assert_true(alive(e->agent));
        assert_true(now_ms() < end);
        sleep_ms(10);
    }
}

/* Starts the forwarder with `extra` flags (NULL-terminated, may be NULL);
 * with `wait`, returns once it serves. */
static void start_apf(env_t *e, const char *const *extra, int wait)
{
    char *argv[24] = {(char *)apf_bin, "-listen",     e->listen, "-kata-agent-socket",
                      e->sock,         "-config",     e->config, "-pod-namespace",
                      PODNS,           "-disable-tls"};
    size_t argc = e->tls ? 9 : 10;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && argc < 23; i++)
        argv[argc++] = (char *)extra[i];
    argv[argc] = NULL;
    const char *kv[] = {"PP_LOG_LEVEL", "debug", NULL};
    e->apf = spawn(argv, e->apf_log, kv);
    if (!wait)
        return;
    uint64_t end = now_ms() + 10000;
    while (!tcp_accepts(e->port)) {
        assert_true(alive(e->apf));
        assert_true(now_ms() < end);
        sleep_ms(10);
    }
}

static void dump_file(const char *what, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    fprintf(stderr, "---- %s (%s)\n", what, path);
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL)
        fputs(line, stderr);
    fclose(f);
}

static int file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* ---- the client --------------------------------------------------------- */

typedef struct guard_s {
    uv_timer_t timer;
    int fired;
} guard_t;

static void on_guard(uv_timer_t *t)
{
    ((guard_t *)t->data)->fired = 1;
}

/* Runs the loop until `*flag` is set; fails the test after `ms`. */
static void run_until(env_t *e, const int *flag, unsigned ms)
{
    guard_t g = {0};
    uv_timer_init(&e->loop, &g.timer);
    g.timer.data = &g;
    uv_timer_start(&g.timer, on_guard, ms, 0);
    while (!*flag && !g.fired)
        uv_run(&e->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&g.timer, NULL);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    assert_true(*flag);
}

/* Runs the loop for `ms`, letting calls progress. */
static void run_for(env_t *e, unsigned ms)
{
    guard_t g = {0};
    uv_timer_init(&e->loop, &g.timer);
    g.timer.data = &g;
    uv_timer_start(&g.timer, on_guard, ms, 0);
    while (!g.fired)
        uv_run(&e->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&g.timer, NULL);
    uv_run(&e->loop, UV_RUN_NOWAIT);
}

typedef struct connect_s {
    int done;
    int status;
} connect_t;

static void on_connect(pp_ttrpc_client_t *c, int status, void *data)
{
    connect_t *cs = data;
    (void)c;
    cs->status = status;
    cs->done = 1;
}

static int client_connect(env_t *e)
{
    struct sockaddr_in sa;
    connect_t cs = {0};
    uv_ip4_addr("127.0.0.1", e->port, &sa);
    assert_int_equal(pp_ttrpc_client_new(&e->loop, &e->client), 0);
    assert_int_equal(
        pp_ttrpc_client_connect_tcp(e->client, (struct sockaddr *)&sa, on_connect, &cs), 0);
    run_until(e, &cs.done, 10000);
    return cs.status;
}

static void on_client_closed(pp_ttrpc_client_t *c, void *data)
{
    (void)c;
    *(int *)data = 1;
}

static void client_close(env_t *e)
{
    if (e->client == NULL)
        return;
    int closed = 0;
    pp_ttrpc_client_close(e->client, on_client_closed, &closed);
    e->client = NULL;
    run_until(e, &closed, 5000);
}

static void on_result(pp_ttrpc_result_t *res, void *data)
{
    result_t *r = data;
    r->code = res->code;
    snprintf(r->message, sizeof(r->message), "%.*s", (int)res->message.n,
             res->message.p ? res->message.p : "");
    r->payload_len = res->payload_len;
    r->payload = malloc(res->payload_len ? res->payload_len : 1);
    if (res->payload_len)
        memcpy(r->payload, res->payload, res->payload_len);
    r->done = 1;
}

static void call_start(env_t *e, const char *service, const char *method, const void *payload,
                       size_t len, int64_t timeout_nano, const pp_ttrpc_kv_t *md, size_t nmd,
                       result_t *r)
{
    memset(r, 0, sizeof(*r));
    /* The test blocks between loop runs; timers start from the loop's
     * cached time, which must be current for timeouts to mean anything. */
    uv_update_time(&e->loop);
    pp_ttrpc_call_opts_t o = {
        .service = service,
        .method = method,
        .payload = payload,
        .payload_len = len,
        .timeout_nano = timeout_nano,
        .metadata = md,
        .metadata_count = nmd,
    };
    assert_int_equal(pp_ttrpc_client_call(e->client, &o, on_result, r), 0);
}

static void call_sync(env_t *e, const char *service, const char *method, const void *payload,
                      size_t len, int64_t timeout_nano, const pp_ttrpc_kv_t *md, size_t nmd,
                      result_t *r)
{
    call_start(e, service, method, payload, len, timeout_nano, md, nmd, r);
    run_until(e, &r->done, 30000);
}

static void result_free(result_t *r)
{
    free(r->payload);
    r->payload = NULL;
}

static void assert_code(const result_t *r, int code)
{
    if (r->code != code)
        print_error("got %s (%d) \"%s\", want %s (%d)\n", pp_grpc_code_name(r->code), r->code,
                    r->message, pp_grpc_code_name(code), code);
    assert_int_equal(r->code, code);
}

/* ---- the agent's record ------------------------------------------------- */

/* Every request the agent recorded for `method`, oldest first. */
static json_t *records(env_t *e, const char *method)
{
    json_t *all = json_array();
    FILE *f = fopen(e->record, "r");
    if (f == NULL)
        return all;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        assert_non_null(j);
        const char *m = json_string_value(json_object_get(j, "method"));
        if (m != NULL && strcmp(m, method) == 0)
            json_array_append_new(all, j);
        else
            json_decref(j);
    }
    free(line);
    fclose(f);
    return all;
}

/* Waits until the agent has recorded `n` requests for `method`. */
static void wait_records(env_t *e, const char *method, size_t n)
{
    uint64_t end = now_ms() + 10000;
    for (;;) {
        json_t *r = records(e, method);
        size_t have = json_array_size(r);
        json_decref(r);
        if (have >= n)
            return;
        assert_true(now_ms() < end);
        run_for(e, 10);
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    fail_msg("bad hex digit %c", c);
    return 0;
}

static uint8_t *unhex(const char *s, size_t *len)
{
    size_t n = strlen(s) / 2;
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]));
    *len = n;
    return p;
}

/* Checks the last record for `method` against what was sent; returns its
 * payload (malloc'd). */
static uint8_t *check_record(env_t *e, const char *service, const char *method,
                             int64_t timeout_nano, const pp_ttrpc_kv_t *md, size_t nmd,
                             size_t *payload_len)
{
    json_t *all = records(e, method);
    assert_true(json_array_size(all) > 0);
    json_t *rec = json_array_get(all, json_array_size(all) - 1);
    assert_string_equal(json_string_value(json_object_get(rec, "service")), service);
    assert_int_equal(json_integer_value(json_object_get(rec, "timeout_nano")), timeout_nano);
    json_t *jmd = json_object_get(rec, "metadata");
    assert_int_equal(json_array_size(jmd), nmd);
    for (size_t i = 0; i < nmd; i++) {
        json_t *kv = json_array_get(jmd, i);
        char key[256], value[256];
        snprintf(key, sizeof(key), "%.*s", (int)md[i].key.n, md[i].key.p);
        snprintf(value, sizeof(value), "%.*s", (int)md[i].value.n, md[i].value.p);
        assert_string_equal(json_string_value(json_object_get(kv, "key")), key);
        assert_string_equal(json_string_value(json_object_get(kv, "value")), value);
    }
    uint8_t *p = unhex(json_string_value(json_object_get(rec, "payload")), payload_len);
    json_decref(all);
    return p;
}

/* ---- fixture ------------------------------------------------------------ */

static int setup(void **state)
{
    env_t *e = calloc(1, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/apf-itest-XXXXXX");
    if (mkdtemp(e->dir) == NULL)
        return -1;
    snprintf(e->sock, sizeof(e->sock), "%s/agent.sock", e->dir);
    snprintf(e->record, sizeof(e->record), "%s/record.jsonl", e->dir);
    snprintf(e->agent_log, sizeof(e->agent_log), "%s/agent.log", e->dir);
    snprintf(e->apf_log, sizeof(e->apf_log), "%s/apf.log", e->dir);
    snprintf(e->config, sizeof(e->config), "%s/apf.json", e->dir);
    e->port = free_port();
    snprintf(e->listen, sizeof(e->listen), "127.0.0.1:%d", e->port);
    uv_loop_init(&e->loop);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env_t *e = *state;
    client_close(e);
    int apf_status = stop_process(&e->apf, SIGTERM);
    stop_process(&e->agent, SIGTERM);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    int loop_rc = uv_loop_close(&e->loop);
    if (getenv("PP_TEST_VERBOSE") != NULL || apf_status != 0 || loop_rc != 0) {
        dump_file("agent-protocol-forwarder", e->apf_log);
        dump_file("pp-test-agent", e->agent_log);
    }
    static const char *const files[] = {"agent.sock", "record.jsonl", "agent.log", "apf.log",
                                        "apf.json"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char p[192];
        snprintf(p, sizeof(p), "%s/%s", e->dir, files[i]);
        unlink(p);
    }
    rmdir(e->dir);
    free(e);
    /* A forwarder that did not exit 0 on SIGTERM fails the test. */
    return apf_status == 0 && loop_rc == 0 ? 0 : -1;
}

/* ---- tests -------------------------------------------------------------- */

static void test_health(void **state)
{
    env_t *e = *state;
    start_agent(e, NULL);
    start_apf(e, NULL, 1);
    assert_int_equal(client_connect(e), 0);

    result_t r;
    static const uint8_t check_req[] = {0x0a, 0x00};
    call_sync(e, "grpc.Health", "Check", check_req, sizeof(check_req), 0, NULL, 0, &r);
    assert_code(&r, PP_GRPC_OK);
    Grpc__HealthCheckResponse *hc =
        grpc__health_check_response__unpack(NULL, r.payload_len, r.payload);
    assert_non_null(hc);
    assert_int_equal(hc->status, GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    grpc__health_check_response__free_unpacked(hc, NULL);
    result_free(&r);

    call_sync(e, "grpc.Health", "Version", NULL, 0, 0, NULL, 0, &r);
    assert_code(&r, PP_GRPC_OK);
    Grpc__VersionCheckResponse *v =
        grpc__version_check_response__unpack(NULL, r.payload_len, r.payload);
    assert_non_null(v);
    assert_string_equal(v->agent_version, "pp-test-agent 0.1");
    grpc__version_check_response__free_unpacked(v, NULL);
    result_free(&r);

    /* A service neither the forwarder nor the agent knows. */
    call_sync(e, "grpc.Nope", "Nothing", NULL, 0, 0, NULL, 0, &r);
    assert_code(&r, PP_GRPC_UNIMPLEMENTED);
    result_free(&r);
}

/* Methods not intercepted reach the agent byte for byte, with timeout_nano
 * and metadata, whatever the payload; answers come back as the agent sent
 * them. */
static void test_passthrough(void **state)
{
    env_t *e = *state;
    start_agent(e, NULL);
    start_apf(e, NULL, 1);
    assert_int_equal(client_connect(e), 0);

    /* StartContainerRequest with an unknown field the forwarder must keep. */
    Grpc__StartContainerRequest sc = GRPC__START_CONTAINER_REQUEST__INIT;
    sc.container_id = "ctr-1";
    uint8_t start_req[64];
    size_t start_len = grpc__start_container_request__pack(&sc, start_req);
    static const uint8_t unknown[] = {0xf8, 0x06, 0x2a}; /* field 111 = 42 */
    memcpy(start_req + start_len, unknown, sizeof(unknown));
    start_len += sizeof(unknown);

    static const uint8_t junk[] = {0xff, 0x00, 0x0b, 0x32, 0x7f};
    size_t big_len = 1u << 20;
    uint8_t *big = malloc(big_len);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)(i * 2654435761u >> 24);

    static const pp_ttrpc_kv_t md[] = {
        {{"trace-id", 8}, {"abc123", 6}},
        {{"x-empty", 7}, {"", 0}},
        {{"trace-id", 8}, {"second", 6}},
    };
    const struct {
        const char *method;
        const uint8_t *payload;
        size_t len;
        int64_t timeout_nano;
        size_t nmd;
    } cases[] = {
        {"StartContainer", start_req, start_len, 5000000000, 3},
        {"ExecProcess", junk, sizeof(junk), 0, 0},
        {"DestroySandbox", NULL, 0, 1, 1},
        {"UpdateContainer", big, big_len, 60000000000, 2},
        {"SetPolicy", junk, 1, 123456789, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("case %s\n", cases[i].method);
        result_t r;
        /* A timeout of 1 ns would expire on the way; the agent still
         * records it, and the client sees DEADLINE_EXCEEDED. */
        call_sync(e, AGENT_SERVICE, cases[i].method, cases[i].payload, cases[i].len,
                  cases[i].timeout_nano, md, cases[i].nmd, &r);
        if (cases[i].timeout_nano != 1) {
            assert_code(&r, PP_GRPC_OK);
            assert_int_equal(r.payload_len, 0);
        }
        result_free(&r);
        wait_records(e, cases[i].method, 1);
        size_t got_len;
        uint8_t *got = check_record(e, AGENT_SERVICE, cases[i].method, cases[i].timeout_nano, md,
                                    cases[i].nmd, &got_len);
        assert_int_equal(got_len, cases[i].len);
        if (got_len > 0)
            assert_memory_equal(got, cases[i].payload, got_len);
        free(got);
    }
    free(big);

    /* An answer with a payload comes back unchanged. */
    result_t r;
    call_sync(e, AGENT_SERVICE, "GetGuestDetails", NULL, 0, 0, NULL, 0, &r);
    assert_code(&r, PP_GRPC_OK);
    Grpc__GuestDetailsResponse *gd =
        grpc__guest_details_response__unpack(NULL, r.payload_len, r.payload);
    assert_non_null(gd);
    assert_int_equal(gd->mem_block_size_bytes, 128u << 20);
    assert_string_equal(gd->agent_details->version, "pp-test-agent 0.1");
    grpc__guest_details_response__free_unpacked(gd, NULL);
    result_free(&r);
}

static void test_intercepted(void **state)
{
    env_t *e = *state;
    start_agent(e, NULL);
    start_apf(e, NULL, 1);
    assert_int_equal(client_connect(e), 0);
    static const pp_ttrpc_kv_t md[] = {{{"k", 1}, {"v", 1}}};

    /* CreateContainer with pid and ipc namespaces and an unknown field. */
    Grpc__LinuxNamespace pid = GRPC__LINUX_NAMESPACE__INIT, ipc = GRPC__LINUX_NAMESPACE__INIT;
    pid.type = "pid";
    ipc.type = "ipc";
    ipc.path = "/proc/1/ns/ipc";
    Grpc__LinuxNamespace *nss[] = {&pid, &ipc};
    Grpc__Linux lx = GRPC__LINUX__INIT;
    lx.n_namespaces = 2;
    lx.namespaces = nss;
    lx.cgroupspath = "/kubepods/p/c";
    Grpc__Spec spec = GRPC__SPEC__INIT;
    spec.version = "1.1.0";
    spec.linux_ = &lx;
    Grpc__CreateContainerRequest cc = GRPC__CREATE_CONTAINER_REQUEST__INIT;
    cc.container_id = "ctr-1";
    cc.oci = &spec;
    size_t cc_len = grpc__create_container_request__get_packed_size(&cc);
    uint8_t *cc_req = malloc(cc_len + 3);
    grpc__create_container_request__pack(&cc, cc_req);
    static const uint8_t unknown[] = {0xf8, 0x06, 0x2a};
    memcpy(cc_req + cc_len, unknown, sizeof(unknown));
    cc_len += sizeof(unknown);

    result_t r;
    call_sync(e, AGENT_SERVICE, "CreateContainer", cc_req, cc_len, 7000000000, md, 1, &r);
    assert_code(&r, PP_GRPC_OK);
    result_free(&r);
    wait_records(e, "CreateContainer", 1);
    size_t got_len;
    uint8_t *got = check_record(e, AGENT_SERVICE, "CreateContainer", 7000000000, md, 1, &got_len);

    /* Exactly what the interceptor makes of it... */
    pp_buf_t want;
    assert_int_equal(apf_intercept_create_container(cc_req, cc_len, PODNS, &want, NULL), 0);
    assert_int_equal(got_len, want.len);
    assert_memory_equal(got, want.data, want.len);
    pp_buf_free(&want);
    /* ...which is the request with the pod network namespace added. */
    Grpc__CreateContainerRequest *m = grpc__create_container_request__unpack(NULL, got_len, got);
    assert_non_null(m);
    assert_string_equal(m->container_id, "ctr-1");
    assert_int_equal(m->base.n_unknown_fields, 1);
    assert_string_equal(m->oci->linux_->cgroupspath, "/kubepods/p/c");
    assert_int_equal(m->oci->linux_->n_namespaces, 3);
    assert_string_equal(m->oci->linux_->namespaces[0]->type, "pid");
    assert_string_equal(m->oci->linux_->namespaces[1]->path, "/proc/1/ns/ipc");
    assert_string_equal(m->oci->linux_->namespaces[2]->type, "network");
    assert_string_equal(m->oci->linux_->namespaces[2]->path, PODNS);
    grpc__create_container_request__free_unpacked(m, NULL);
    free(got);
    free(cc_req);

    /* CreateSandbox loses its dns, nothing else. */
    char *dns[] = {"nameserver 10.96.0.10", "search default.svc.cluster.local"};
    Grpc__CreateSandboxRequest cs = GRPC__CREATE_SANDBOX_REQUEST__INIT;
    cs.hostname = "pod-1";
    cs.n_dns = 2;
    cs.dns = dns;
    cs.sandbox_id = "sandbox-1";
    cs.sandbox_pidns = 1;
    uint8_t cs_req[256];
    size_t cs_len = grpc__create_sandbox_request__pack(&cs, cs_req);
    call_sync(e, AGENT_SERVICE, "CreateSandbox", cs_req, cs_len, 0, NULL, 0, &r);
    assert_code(&r, PP_GRPC_OK);
    result_free(&r);
    wait_records(e, "CreateSandbox", 1);
    got = check_record(e, AGENT_SERVICE, "CreateSandbox", 0, NULL, 0, &got_len);
    Grpc__CreateSandboxRequest *s = grpc__create_sandbox_request__unpack(NULL, got_len, got);
    assert_non_null(s);
    assert_int_equal(s->n_dns, 0);
    assert_string_equal(s->hostname, "pod-1");
    assert_string_equal(s->sandbox_id, "sandbox-1");
    assert_true(s->sandbox_pidns);
    grpc__create_sandbox_request__free_unpacked(s, NULL);
    free(got);

    /* A CreateContainer payload that does not parse is refused here; the
     * agent never sees it, and the connection stays usable. */
    static const uint8_t bad[] = {0x32, 0x05, 0x42};
    call_sync(e, AGENT_SERVICE, "CreateContainer", bad, sizeof(bad), 0, NULL, 0, &r);
    assert_code(&r, PP_GRPC_INVALID_ARGUMENT);
    result_free(&r);
    json_t *all = records(e, "CreateContainer");
    assert_int_equal(json_array_size(all), 1);
    json_decref(all);
    call_sync(e, AGENT_SERVICE, "StartContainer", NULL, 0, 0, NULL, 0, &r);
    assert_code(&r, PP_GRPC_OK);
    result_free(&r);
}

/* The agent's own errors reach the client unchanged. */
static void test_agent_error(void **state)
{
    env_t *e = *state;
    agent_opts_t o = {.fail_method = "PauseContainer", .fail_code = "5"};
    start_agent(e, &o);
    start_apf(e, NULL, 1);
    assert_int_equal(client_connect(e), 0);
    result_t r;
    call_sync(e, AGENT_SERVICE, "PauseContainer", NULL, 0, 0, NULL, 0, &r);
    assert_code(&r, PP_GRPC_NOT_FOUND);
    assert_string_equal(r.message, "test failure for PauseContainer");
    result_free(&r);
}

/* timeout_nano reaches the agent unchanged and bounds the call. */
static void test_deadline(void **state)
{
    env_t *e = *state;
    agent_opts_t o = {.delay_ms = "3000", .delay_method = "WaitProcess"};
    start_agent(e, &o);
    start_apf(e, NULL, 1);
    assert_int_equal(client_connect(e), 0);
    result_t r;
    uint64_t t0 = now_ms();
    call_sync(e, AGENT_SERVICE, "WaitProcess", NULL, 0, 300000000, NULL, 0, &r);
    assert_code(&r, PP_GRPC_DEADLINE_EXCEEDED);
    assert_true(now_ms() - t0 < 2000);
    result_free(&r);
    size_t n;
    free(check_record(e, AGENT_SERVICE, "WaitProcess", 300000000, NULL, 0, &n));

    call_sync(e, AGENT_SERVICE, "StartContainer", NULL, 0, 0, NULL, 0, &r);
    assert_code(&r, PP_GRPC_OK);
    result_free(&r);
}

/* The forwarder dies mid-call: the client gets UNAVAILABLE. */
static void test_forwarder_killed(void **state)
{
    env_t *e = *state;
    agent_opts_t o = {.delay_ms = "10000", .delay_method = "WaitProcess"};
    start_agent(e, &o);
    start_apf(e, NULL, 1);
    assert_int_equal(client_connect(e), 0);
    result_t r;
    call_start(e, AGENT_SERVICE, "WaitProcess", NULL, 0, 0, NULL, 0, &r);
    wait_records(e, "WaitProcess", 1);
    kill(e->apf, SIGKILL);
    assert_int_not_equal(wait_exit(e->apf, 5000), -1);
    e->apf = 0;
    run_until(e, &r.done, 5000);
    assert_code(&r, PP_GRPC_UNAVAILABLE);
    result_free(&r);
    client_close(e);
    assert_int_not_equal(client_connect(e), 0);
    client_close(e);
}

/* The agent dies mid-call: that call gets UNAVAILABLE, the forwarder stays
 * up, and once the agent is back the next calls reach it again, also one
 * made while it was still away. */
static void test_agent_killed(void **state)
{
    env_t *e = *state;
    agent_opts_t o = {.delay_ms = "10000", .delay_method = "WaitProcess"};
    start_agent(e, &o);
    start_apf(e, NULL, 1);
    assert_int_equal(client_connect(e), 0);

    result_t r;
    call_start(e, AGENT_SERVICE, "WaitProcess", NULL, 0, 0, NULL, 0, &r);
    wait_records(e, "WaitProcess", 1);
    kill(e->agent, SIGKILL);
    assert_int_not_equal(wait_exit(e->agent, 5000), -1);
    e->agent = 0;
    run_until(e, &r.done, 5000);
    assert_code(&r, PP_GRPC_UNAVAILABLE);
    result_free(&r);
    assert_true(alive(e->apf));

    /* While the agent is away a call waits for it, within its deadline. */
    call_sync(e, AGENT_SERVICE, "StartContainer", NULL, 0, 300000000, NULL, 0, &r);
    assert_code(&r, PP_GRPC_DEADLINE_EXCEEDED);
    result_free(&r);
    assert_true(alive(e->apf));

    start_agent(e, &o);
    call_sync(e, AGENT_SERVICE, "StartContainer", "\x0a\x01x", 3, 5000000000, NULL, 0, &r);
    assert_code(&r, PP_GRPC_OK);
    result_free(&r);
    size_t n;
    uint8_t *p = check_record(e, AGENT_SERVICE, "StartContainer", 5000000000, NULL, 0, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "\x0a\x01x", 3);
    free(p);

    /* Again, with the call made before the agent is back. */
    stop_process(&e->agent, SIGKILL);
    run_for(e, 100);
    call_start(e, AGENT_SERVICE, "ResumeContainer", NULL, 0, 10000000000, NULL, 0, &r);
    run_for(e, 300);
    assert_false(r.done);
    start_agent(e, &o);
    run_until(e, &r.done, 8000);
    assert_code(&r, PP_GRPC_OK);
    result_free(&r);
    assert_true(alive(e->apf));
}

/* SIGTERM lets a call in flight finish, then the forwarder exits 0 (the
 * teardown checks the status). */
static void test_sigterm_graceful(void **state)
{
    env_t *e = *state;
    agent_opts_t o = {.delay_ms = "700", .delay_method = "WaitProcess"};
    start_agent(e, &o);
    start_apf(e, NULL, 1);
    assert_int_equal(client_connect(e), 0);
    result_t r;
    call_start(e, AGENT_SERVICE, "WaitProcess", NULL, 0, 0, NULL, 0, &r);
    wait_records(e, "WaitProcess", 1);
    kill(e->apf, SIGTERM);
    run_until(e, &r.done, 5000);
    assert_code(&r, PP_GRPC_OK);
    result_free(&r);
    int status = wait_exit(e->apf, 5000);
    e->apf = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* A second SIGTERM stops waiting for calls in flight: they are answered
 * CANCELLED and the forwarder still exits 0. */
static void test_sigterm_twice(void **state)
{
    env_t *e = *state;
    agent_opts_t o = {.delay_ms = "20000", .delay_method = "WaitProcess"};
    start_agent(e, &o);
    start_apf(e, NULL, 1);
    assert_int_equal(client_connect(e), 0);
    result_t r;
    call_start(e, AGENT_SERVICE, "WaitProcess", NULL, 0, 0, NULL, 0, &r);
    wait_records(e, "WaitProcess", 1);
    uint64_t t0 = now_ms();
    kill(e->apf, SIGTERM);
    run_for(e, 300);
    assert_false(r.done);
    assert_true(alive(e->apf));
    kill(e->apf, SIGTERM);
    run_until(e, &r.done, 5000);
    assert_code(&r, PP_GRPC_CANCELLED);
    result_free(&r);
    int status = wait_exit(e->apf, 5000);
    e->apf = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(now_ms() - t0 < 5000);
}

/* The forwarder waits for an agent that starts late, serving only once it
 * is there; one that never comes makes it exit 1. */
static void test_agent_late(void **state)
{
    env_t *e = *state;
    static const char *const wait20[] = {"-kata-agent-timeout", "20s", NULL};
    start_apf(e, wait20, 0);
    sleep_ms(500);
    assert_true(alive(e->apf));
    assert_false(tcp_accepts(e->port));
    start_agent(e, NULL);
    uint64_t end = now_ms() + 5000;
    while (!tcp_accepts(e->port)) {
        assert_true(now_ms() < end);
        sleep_ms(10);
    }
    assert_int_equal(client_connect(e), 0);
    result_t r;
    call_sync(e, AGENT_SERVICE, "StartContainer", NULL, 0, 0, NULL, 0, &r);
    assert_code(&r, PP_GRPC_OK);
    result_free(&r);
    client_close(e);
    assert_int_equal(stop_process(&e->apf, SIGTERM), 0);
    stop_process(&e->agent, SIGTERM);

    static const char *const wait300[] = {"-kata-agent-timeout", "300ms", NULL};
    uint64_t t0 = now_ms();
    start_apf(e, wait300, 0);
    int status = wait_exit(e->apf, 5000);
    e->apf = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    assert_true(now_ms() - t0 < 3000);
    assert_true(file_contains(e->apf_log, "did not accept connections in time"));
}

/* The config file is read when present; malformed JSON stops start-up with
 * an error naming the file. */
static void test_config_file(void **state)
{
    env_t *e = *state;
    FILE *f = fopen(e->config, "w");
    fputs("{\"pod-name\": \"nginx\", \"pod-namespace\": \"default\", \"future-key\": 1}", f);
    fclose(f);
    start_agent(e, NULL);
    start_apf(e, NULL, 1);
    assert_true(file_contains(e->apf_log, "pod `nginx` in namespace `default`"));
    assert_int_equal(stop_process(&e->apf, SIGTERM), 0);

    f = fopen(e->config, "w");
    fputs("{\"pod-name\": \"nginx\",\n \"pod-namespace\" \"default\"}", f);
    fclose(f);
    start_apf(e, NULL, 0);
    int status = wait_exit(e->apf, 5000);
    e->apf = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    assert_true(file_contains(e->apf_log, e->config));
    assert_true(file_contains(e->apf_log, "line 2"));
}

/* Without -disable-tls the forwarder serves only with TLS material: with no
 * config, or a config without it, it stops at once saying why, and nothing
 * listens. */
static void test_plaintext_refused(void **state)
{
    env_t *e = *state;
    e->tls = 1;
    start_agent(e, NULL);
    unlink(e->config);
    start_apf(e, NULL, 0);
    int status = wait_exit(e->apf, 5000);
    e->apf = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    assert_false(tcp_accepts(e->port));
    assert_true(file_contains(e->apf_log, "refusing to serve the agent API in plaintext"));
    assert_true(file_contains(e->apf_log, "does not exist"));

    FILE *f = fopen(e->config, "w");
    fputs("{\"pod-name\": \"nginx\", \"pod-namespace\": \"default\"}", f);
    fclose(f);
    start_apf(e, NULL, 0);
    status = wait_exit(e->apf, 5000);
    e->apf = 0;
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    assert_false(tcp_accepts(e->port));
    assert_true(file_contains(e->apf_log, "has no tls-server-key"));
}

static int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    return count_dir(path);
}

static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

typedef struct dial_s {
    int done, status;
    uv_stream_t *stream;
    pp_stream_filter_t *filter;
    char why[256];
} dial_t;

static void on_dial(pp_tls_dial_t *d, int status, uv_stream_t *stream, pp_stream_filter_t *filter,
                    const char *err_msg, void *data)
{
    dial_t *ds = data;
    (void)d;
    ds->status = status;
    ds->stream = stream;
    ds->filter = filter;
    snprintf(ds->why, sizeof(ds->why), "%s", err_msg ? err_msg : "");
    ds->done = 1;
}

/* 300 connections that never start their TLS handshake: the forwarder
 * holds at most 64 of them (PP_TLS_MAX_PENDING; the oldest goes for each
 * new one), logs at most a line per 10 s for those it ends, and a client
 * that does its handshake is served at once. */
static void test_tls_handshake_cap(void **state)
{
    env_t *e = *state;
    char cadir[128];
    snprintf(cadir, sizeof(cadir), "%s/ca", e->dir);
    pp_ca_opts_t co = {.dir = cadir};
    pp_ca_t *ca = NULL;
    pp_error_t err = {0};
    assert_int_equal(pp_ca_load_or_create(&co, &ca, &err), 0);
    char *cert = NULL, *key = NULL;
    assert_int_equal(pp_ca_issue_server(ca, "apf-itest", "127.0.0.1", 0, &cert, &key, &err), 0);
    json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "pod-name", "nginx", "tls-server-key", key,
                          "tls-server-cert", cert, "tls-client-ca", pp_ca_cert_pem(ca));
    assert_int_equal(json_dump_file(j, e->config, 0), 0);
    json_decref(j);
    pp_ca_secret_free(key);
    free(cert);

    e->tls = 1;
    start_agent(e, NULL);
    start_apf(e, NULL, 1);
    sleep_ms(200);
    int base = count_fds(e->apf);
    int silent[300];
    for (int i = 0; i < 300; i++) {
        silent[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)e->port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(silent[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
    }
    sleep_ms(500);
    int fds = count_fds(e->apf);
    printf("# forwarder descriptors: %d before, %d with 300 silent connections\n", base, fds);
    assert_true(fds <= base + PP_TLS_MAX_PENDING + 2);

    const char *ccert, *ckey;
    assert_int_equal(pp_ca_client_identity(ca, "cloud-api-adaptor", &ccert, &ckey, &err), 0);
    pp_tls_config_t tc = {.cert_pem = ccert, .key_pem = ckey, .ca_pem = pp_ca_cert_pem(ca)};
    pp_tls_ctx_t *ctx = NULL;
    assert_int_equal(pp_tls_ctx_new(PP_TLS_CLIENT, &tc, &ctx, &err), 0);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", e->port, &sa);
    dial_t ds = {0};
    uint64_t t0 = now_ms();
    pp_tls_dial_t *d;
    assert_int_equal(
        pp_tls_dial(&e->loop, ctx, (struct sockaddr *)&sa, "apf-itest", on_dial, &ds, &d), 0);
    run_until(e, &ds.done, 10000);
    if (ds.status != 0)
        fail_msg("TLS dial: %s", ds.why);
    assert_int_equal(pp_ttrpc_client_new(&e->loop, &e->client), 0);
    assert_int_equal(pp_ttrpc_client_open_filtered(e->client, ds.stream, ds.filter), 0);
    result_t r;
    static const uint8_t check_req[] = {0x0a, 0x00};
    call_sync(e, "grpc.Health", "Check", check_req, sizeof(check_req), 0, NULL, 0, &r);
    assert_code(&r, PP_GRPC_OK);
    result_free(&r);
    printf("# a client with its handshake served in %llu ms\n",
           (unsigned long long)(now_ms() - t0));
    assert_true(now_ms() - t0 < 3000);
    /* The probe of start_apf and the 236 handshakes ended at the cap: at
     * most one line each 10 s. */
    int lines = count_lines(e->apf_log, "warn  tls:");
    printf("# %d lines logged for 237 refused connections\n", lines);
    assert_true(lines >= 1 && lines <= 2);
    for (int i = 0; i < 300; i++)
        close(silent[i]);
    client_close(e);
    pp_tls_ctx_free(ctx);
    pp_ca_free(ca);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", cadir);
    assert_int_equal(system(cmd), 0);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s <agent-protocol-forwarder> <pp-test-agent>\n", argv[0]);
        return 2;
    }
    apf_bin = argv[1];
    agent_bin = argv[2];
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passthrough, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intercepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forwarder_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_killed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_graceful, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_late, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plaintext_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_handshake_cap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
