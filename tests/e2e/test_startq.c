/* A burst of StartVM calls reaches the provider with bounded concurrency
 * (PROVIDER_CONCURRENCY, caa/startq.h): every call is accepted at once and
 * succeeds, the provider never holds more than the bound (seen from the
 * outside, in the local provider's state directory, and in the daemon's
 * own peak), and a StartVM still waiting for its turn is taken back by
 * StopVM without ever reaching the provider. Each create is made to take
 * at least 600 ms (process-user-data runs behind a sleep), so that the
 * calls overlap however loaded the machine is. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "e2e_util.h"

#define BURST 8
#define BOUND 2

static char slow_pud[256];

/* process-user-data behind a sleep: the provider's create is slow. */
static void start_daemon(caa_t *c, const char *name)
{
    char script[512], env[300];
    snprintf(slow_pud, sizeof(slow_pud), "/tmp/pp-e2e-slow-pud-%d.sh", (int)getpid());
    snprintf(script, sizeof(script), "#!/bin/sh\nsleep 0.6\nexec %s/process-user-data \"$@\"\n",
             e2e_bin_dir);
    write_file(slow_pud, script, 0755);
    snprintf(env, sizeof(env), "LOCAL_PROCESS_USER_DATA_COMMAND=%s", slow_pud);
    caa_start(c, name, (const char *const[]){"PROVIDER_CONCURRENCY=2", env, NULL});
}

/* ---- the provider's creates in progress, from its state directory ---- */

typedef struct watch_s {
    const char *dir;
    volatile int stop;
    int max;
} watch_t;

static int tag_ready(const char *dir, const char *name)
{
    char path[512], buf[4096];
    snprintf(path, sizeof(path), "%s/%s/tag.json", dir, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *p = strstr(buf, "\"ready\"");
    if (p == NULL)
        return 0;
    for (p += 7; *p == ' ' || *p == ':'; p++)
        ;
    return *p == 't';
}

/* A VM directory without a ready tag is a create in progress. */
static void *watch(void *arg)
{
    watch_t *w = arg;
    while (!w->stop) {
        DIR *d = opendir(w->dir);
        int busy = 0;
        struct dirent *de;
        while (d != NULL && (de = readdir(d)) != NULL)
            if (de->d_name[0] != '.' && !tag_ready(w->dir, de->d_name))
                busy++;
        if (d != NULL)
            closedir(d);
        if (busy > w->max)
            w->max = busy;
        usleep(5000);
    }
    return NULL;
}

/* ---- shim calls from threads -------------------------------------------- */

typedef struct start_s {
    const caa_t *c;
    char id[65];
    int rc;
    double ms;
    char msg[512];
} start_t;

static void *start_one(void *arg)
{
    start_t *s = arg;
    double t0 = now_ms();
    s->rc = id_call(s->c, "StartVM", s->id, 120000, s->msg, sizeof(s->msg));
    s->ms = now_ms() - t0;
    return NULL;
}

static double metric(const char *name)
{
    char cmd[256], line[512];
    snprintf(cmd, sizeof(cmd), "curl -s --max-time 10 http://127.0.0.1:8000/metrics");
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    double v = -1;
    size_t n = strlen(name);
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, name, n) == 0 && line[n] == ' ')
            v = strtod(line + n + 1, NULL);
    pclose(f);
    return v;
}

static void make_id(char *id, const char *tag, int k)
{
    snprintf(id, 65, "%08x%s%08d", (unsigned)getpid(), tag, k);
}

static void test_burst_is_bounded(void **state)
{
    (void)state;
    static caa_t c; /* outlives a failed test, for the exit cleanup */
    memset(&c, 0, sizeof(c));
    start_daemon(&c, "sq");
    start_t s[BURST];
    pthread_t t[BURST];
    for (int k = 0; k < BURST; k++) {
        char sock[256], msg[512], pod[32];
        memset(&s[k], 0, sizeof(s[k]));
        s[k].c = &c;
        make_id(s[k].id, "bst", k);
        snprintf(pod, sizeof(pod), "burst-%d", k);
        assert_int_equal(
            create_vm(&c, s[k].id, pod, "ns", NULL, sock, sizeof(sock), msg, sizeof(msg)), 0);
    }
    watch_t w = {.dir = c.vms};
    pthread_t wt;
    assert_int_equal(pthread_create(&wt, NULL, watch, &w), 0);
    double t0 = now_ms();
    for (int k = 0; k < BURST; k++)
        assert_int_equal(pthread_create(&t[k], NULL, start_one, &s[k]), 0);
    /* Every call is in: the daemon holds BOUND and lets the rest wait. */
    double waiting = -1, in_flight = -1;
    for (int i = 0; i < 200 && waiting != BURST - BOUND; i++) {
        usleep(10000);
        waiting = metric("caa_provider_calls_waiting");
        in_flight = metric("caa_provider_calls_in_flight");
    }
    printf("with %d StartVM calls in: %.0f in the provider, %.0f waiting\n", BURST, in_flight,
           waiting);
    assert_true(waiting == BURST - BOUND);
    assert_true(in_flight == BOUND);
    for (int k = 0; k < BURST; k++)
        pthread_join(t[k], NULL);
    double wall = now_ms() - t0;
    w.stop = 1;
    pthread_join(wt, NULL);
    double slowest = 0;
    for (int k = 0; k < BURST; k++) {
        if (s[k].rc != 0) {
            print_log(&c);
            fail_msg("StartVM `%s`: %d %s", s[k].id, s[k].rc, s[k].msg);
        }
        if (s[k].ms > slowest)
            slowest = s[k].ms;
    }
    double peak = metric("caa_provider_calls_in_flight_peak");
    double queued = metric("caa_startvm_queued_seconds_count");
    double queued_s = metric("caa_startvm_queued_seconds_sum");
    printf("%d StartVM in %.0f ms (slowest %.0f ms); creates in progress seen at most %d, "
           "daemon's peak %.0f, bound %d; %.0f creates waited %.2f s in all\n",
           BURST, wall, slowest, w.max, peak, BOUND, queued, queued_s);
    assert_true(w.max >= 1 && w.max <= BOUND);
    assert_true(peak == BOUND);
    assert_true(queued == BURST);
    /* Each of the four rounds of two creates takes at least 600 ms: the
     * last two waited for three rounds. */
    assert_true(queued_s >= 0.6 * (1 + 2 + 3) * BOUND * 0.9);
    for (int k = 0; k < BURST; k++)
        assert_int_equal(id_call(&c, "StopVM", s[k].id, 60000, NULL, 0), 0);
    assert_int_equal(metric("caa_provider_calls_in_flight"), 0);
    assert_int_equal(count_entries(c.vms), 0);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* StopVM of a sandbox whose create waits for its turn: the StartVM fails
 * CANCELLED at once, its create never reaches the provider, and the one
 * in the provider is not disturbed. */
static void test_stop_while_waiting(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    start_daemon(&c, "sqs");
    start_t s[3];
    pthread_t t[3];
    for (int k = 0; k < 3; k++) {
        char sock[256], msg[512], pod[32];
        memset(&s[k], 0, sizeof(s[k]));
        s[k].c = &c;
        make_id(s[k].id, "stp", k);
        snprintf(pod, sizeof(pod), "stop-%d", k);
        assert_int_equal(
            create_vm(&c, s[k].id, pod, "ns", NULL, sock, sizeof(sock), msg, sizeof(msg)), 0);
    }
    /* Two take the provider's places; the third waits. */
    for (int k = 0; k < 3; k++) {
        assert_int_equal(pthread_create(&t[k], NULL, start_one, &s[k]), 0);
        for (int i = 0;
             i < 200 &&
             metric("caa_provider_calls_in_flight") + metric("caa_provider_calls_waiting") < k + 1;
             i++)
            usleep(5000);
    }
    assert_true(metric("caa_provider_calls_waiting") == 1);
    double t0 = now_ms();
    char msg[512];
    assert_int_equal(id_call(&c, "StopVM", s[2].id, 60000, msg, sizeof(msg)), 0);
    double stop_ms = now_ms() - t0;
    pthread_join(t[2], NULL);
    printf("StopVM of the waiting one: %.0f ms; its StartVM: %d `%s`\n", stop_ms, s[2].rc,
           s[2].msg);
    assert_int_equal(s[2].rc, 1); /* CANCELLED */
    assert_non_null(strstr(s[2].msg, "was stopped while starting"));
    assert_true(metric("caa_provider_calls_waiting") == 0);
    for (int k = 0; k < 2; k++) {
        pthread_join(t[k], NULL);
        if (s[k].rc != 0) {
            print_log(&c);
            fail_msg("StartVM `%s`: %d %s", s[k].id, s[k].rc, s[k].msg);
        }
    }
    /* The third never reached the provider, which logs each instance it
     * makes or removes. */
    assert_int_not_equal(e2e_sh("grep ' local: ' %s | grep -q 'podvm-stop-2-'", c.log), 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(id_call(&c, "StopVM", s[k].id, 60000, NULL, 0), 0);
    assert_int_equal(count_entries(c.vms), 0);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* A burst of shims connecting while the loop is busy (here: stopped)
 * waits in the kernel's backlog, and each is answered when the loop runs
 * again; none is refused at connect. */
static void test_burst_of_connections(void **state)
{
    (void)state;
    enum { CONNS = 600 };
    static caa_t c;
    memset(&c, 0, sizeof(c));
    caa_start(&c, "sqc", NULL);
    static int fds[CONNS];
    assert_int_equal(kill(c.pid, SIGSTOP), 0);
    int refused = 0;
    for (int i = 0; i < CONNS; i++) {
        fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        assert_true(strlen(c.sock) < sizeof(sa.sun_path));
        memcpy(sa.sun_path, c.sock, strlen(c.sock) + 1);
        if (connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            refused++;
            close(fds[i]);
            fds[i] = -1;
        }
    }
    assert_int_equal(kill(c.pid, SIGCONT), 0);
    printf("%d connections while the daemon was stopped: %d refused\n", CONNS, refused);
    assert_int_equal(refused, 0);
    /* Each is served: a Version call on every one. */
    int answered = 0;
    for (int i = 0; i < CONNS; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        fcntl(fds[i], F_SETFL, fl & ~O_NONBLOCK);
        /* ttrpc: header (length, stream 1, request), then Request{service,
         * method, payload = VersionRequest{version = "0"}} */
        static const uint8_t req[] = {0x0a, 0x15, 'h',  'y',  'p',  'e',  'r', 'v', 'i', 's',
                                      'o',  'r',  '.',  'H',  'y',  'p',  'e', 'r', 'v', 'i',
                                      's',  'o',  'r',  0x12, 0x07, 'V',  'e', 'r', 's', 'i',
                                      'o',  'n',  0x1a, 0x03, 0x0a, 0x01, '0'};
        uint8_t hdr[10] = {0, 0, 0, sizeof(req), 0, 0, 0, 1, 1, 0};
        uint8_t ans[10];
        if (write(fds[i], hdr, sizeof(hdr)) == sizeof(hdr) &&
            write(fds[i], req, sizeof(req)) == sizeof(req) && read(fds[i], ans, 10) == 10 &&
            ans[8] == 2)
            answered++;
        close(fds[i]);
    }
    assert_int_equal(answered, CONNS);
    caa_stop(&c);
    caa_cleanup(&c);
}

int main(void)
{
    e2e_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_is_bounded),
        cmocka_unit_test(test_stop_while_waiting),
        cmocka_unit_test(test_burst_of_connections),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(slow_pud);
    return rc;
}
