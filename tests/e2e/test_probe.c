/* cloud-api-adaptor's probes and metrics, as the kubelet and Prometheus use
 * them: /startup follows the hypervisor socket and recovery, /healthz
 * answers, /metrics counts a pod's lifecycle, a restart's recovery and the
 * agent calls; bad, oversized, slow and flooding requests get a 4xx or are
 * cut off while the daemon goes on serving probes and agent calls. In a
 * network namespace of its own, with the local provider. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "e2e_util.h"

#define PROBE_PORT 18000

/* ---- a plain HTTP client ------------------------------------------------ */

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = 15};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons(PROBE_PORT),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends `raw` and reads until the server closes; the status (0: none) and
 * the body in `body`. */
static int exchange(const char *raw, size_t n, char *body, size_t cap)
{
    int fd = dial();
    if (fd < 0)
        return -1;
    for (size_t off = 0; off < n;) {
        ssize_t w = send(fd, raw + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    static char buf[1 << 20];
    size_t have = 0;
    ssize_t r;
    while (have < sizeof(buf) - 1 && (r = recv(fd, buf + have, sizeof(buf) - 1 - have, 0)) > 0)
        have += (size_t)r;
    close(fd);
    buf[have] = '\0';
    int status = 0;
    sscanf(buf, "HTTP/1.%*d %d", &status);
    if (body != NULL) {
        const char *b = strstr(buf, "\r\n\r\n");
        snprintf(body, cap, "%s", b ? b + 4 : "");
    }
    return status;
}

static int get(const char *path, char *body, size_t cap)
{
    char req[256];
    int n =
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    return exchange(req, (size_t)n, body, cap);
}

/* The value of the sample `series` (name and labels as written) in an
 * exposition, or -1. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; (p = strstr(p, series)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

static char metrics[1 << 20];

static double metric(const char *series)
{
    assert_int_equal(get("/metrics", metrics, sizeof(metrics)), 200);
    return sample(metrics, series);
}

static void wait_startup(int want, double ms)
{
    double t0 = now_ms();
    int s = 0;
    while ((s = get("/startup", NULL, 0)) != want && now_ms() - t0 < ms)
        usleep(20 * 1000);
    if (s != want)
        fail_msg("/startup: %d, want %d", s, want);
}

static const char *const env[] = {"PROBE_PORT=18000", NULL};

/* ---- tests -------------------------------------------------------------- */

static void test_lifecycle_counted(void **state)
{
    (void)state;
    caa_t c;
    caa_start(&c, "probe", env);
    wait_startup(200, 10000);
    char body[256];
    assert_int_equal(get("/healthz", body, sizeof(body)), 200);
    assert_string_equal(body, "ok\n");
    assert_true(metric("caa_sandboxes{state=\"running\"}") == 0);

    char sock[256];
    assert_int_equal(
        create_vm(&c, "probe-sb-1", "probe-pod", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    assert_true(metric("caa_sandboxes{state=\"created\"}") == 1);
    assert_int_equal(id_call(&c, "StartVM", "probe-sb-1", 30000, NULL, 0), 0);
    assert_int_equal(health(sock), 0);
    assert_int_equal(health(sock), 0);
    assert_true(metric("caa_sandboxes{state=\"running\"}") == 1);
    assert_true(metric("caa_sandboxes{state=\"created\"}") == 0);
    for (const char *const *s =
             (const char *const[]){"create_instance", "vm_up", "agent_ready", "total", NULL};
         *s != NULL; s++) {
        char name[128];
        snprintf(name, sizeof(name), "caa_startvm_duration_seconds_count{stage=\"%s\"}", *s);
        if (metric(name) != 1)
            fail_msg("%s: %g, want 1", name, metric(name));
    }
    /* No pod network was asked for: no tunnel. */
    assert_true(metric("caa_startvm_duration_seconds_count{stage=\"tunnel\"}") == 0);
    double total = metric("caa_startvm_duration_seconds_sum{stage=\"total\"}");
    double parts = metric("caa_startvm_duration_seconds_sum{stage=\"create_instance\"}") +
                   metric("caa_startvm_duration_seconds_sum{stage=\"vm_up\"}") +
                   metric("caa_startvm_duration_seconds_sum{stage=\"agent_ready\"}");
    print_message("StartVM %.3f s, stages %.3f s\n", total, parts);
    assert_true(total > 0 && parts <= total + 0.001 && parts >= total * 0.9 - 0.01);
    assert_true(metric("caa_agent_proxy_calls_total") == 2);
    assert_true(metric("caa_agent_proxy_failures_total") == 0);
    assert_true(metric("process_resident_memory_bytes") > 1e6);
    assert_true(metric("process_open_fds") > 3);
    /* Nothing secret: the pod VM's key went out in its user data only. */
    assert_null(strstr(metrics, "PRIVATE KEY"));

    /* A restart adopts the running pod; /startup waits for that. */
    caa_kill(&c);
    assert_true(get("/healthz", NULL, 0) <= 0);
    caa_restart(&c, env);
    wait_startup(200, 10000);
    assert_true(metric("caa_recovery_sandboxes_total{outcome=\"adopted\"}") == 1);
    assert_true(metric("caa_sandboxes{state=\"running\"}") == 1);
    assert_int_equal(health(sock), 0);
    assert_true(metric("caa_agent_proxy_calls_total") == 1);

    /* Without its hypervisor socket the daemon is not started. */
    char moved[256];
    snprintf(moved, sizeof(moved), "%s.away", c.sock);
    assert_int_equal(rename(c.sock, moved), 0);
    assert_int_equal(get("/startup", body, sizeof(body)), 500);
    assert_non_null(strstr(body, "hypervisor socket"));
    assert_int_equal(rename(moved, c.sock), 0);
    assert_int_equal(get("/startup", NULL, 0), 200);

    assert_int_equal(id_call(&c, "StopVM", "probe-sb-1", 30000, NULL, 0), 0);
    assert_true(metric("caa_sandboxes{state=\"running\"}") == 0);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* Bad requests get a 4xx, hostile clients are cut off, and the daemon
 * keeps answering probes and agent calls. */
static void test_hostile_clients(void **state)
{
    (void)state;
    caa_t c;
    caa_start(&c, "hostile", env);
    wait_startup(200, 10000);
    char sock[256], body[512];
    assert_int_equal(
        create_vm(&c, "probe-sb-2", "hostile-pod", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    assert_int_equal(id_call(&c, "StartVM", "probe-sb-2", 30000, NULL, 0), 0);

    static const struct {
        const char *what, *raw;
        int want;
    } cases[] = {
        {"a POST", "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405},
        {"a body", "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 413},
        {"a malformed header", "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", 400},
        {"no Host", "GET /healthz HTTP/1.1\r\n\r\n", 400},
        {"an unknown path", "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 404},
        {"a bad chunk",
         "GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int s = exchange(cases[i].raw, strlen(cases[i].raw), body, sizeof(body));
        print_message("%s: %d\n", cases[i].what, s);
        if (s != cases[i].want)
            fail_msg("%s: status %d, want %d", cases[i].what, s, cases[i].want);
    }
    /* Oversized: a 64 KiB header. */
    size_t big = 65536;
    char *req = malloc(big + 128);
    int n = snprintf(req, 128, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + n, 'a', big);
    memcpy(req + n + big, "\r\n\r\n", 4);
    int s = exchange(req, (size_t)n + big + 4, NULL, 0);
    print_message("a 64 KiB header: %d\n", s);
    assert_true(s >= 400 && s < 500);
    free(req);

    /* Slow: half a request, then nothing; meanwhile the probes answer, and
     * the stalled client is cut off within the server's 5 s. */
    int slow = dial();
    assert_true(slow >= 0);
    const char part[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
    assert_int_equal(send(slow, part, sizeof(part) - 1, 0), (ssize_t)(sizeof(part) - 1));
    double t0 = now_ms();
    /* A flood of idle connections beside it. */
    int flood[40];
    for (size_t i = 0; i < 40; i++)
        flood[i] = dial();
    assert_int_equal(health(sock), 0);
    char ch;
    ssize_t got = recv(slow, &ch, 1, 0);
    double took = now_ms() - t0;
    print_message("stalled request cut after %.0f ms\n", took);
    assert_true(got <= 0 && took < 8000);
    close(slow);
    for (size_t i = 0; i < 40; i++)
        if (flood[i] >= 0)
            close(flood[i]);
    /* Still serving. */
    assert_int_equal(get("/healthz", NULL, 0), 200);
    assert_int_equal(get("/startup", NULL, 0), 200);
    assert_int_equal(health(sock), 0);
    assert_true(metric("caa_sandboxes{state=\"running\"}") == 1);
    assert_int_equal(id_call(&c, "StopVM", "probe-sb-2", 30000, NULL, 0), 0);
    caa_stop(&c);
    caa_cleanup(&c);
}

int main(void)
{
    e2e_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle_counted),
        cmocka_unit_test(test_hostile_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
