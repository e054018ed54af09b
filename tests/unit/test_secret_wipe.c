/* Secrets in buffers and in the cloud HTTP client do not stay in freed
 * memory: a secret pp_buf clears the old block when it grows and the last
 * one when freed, and pp_http clears its copies of a request's body and
 * headers and of the answer before it frees them.
 *
 * The test is linked with --wrap=free and --wrap=realloc: while armed,
 * every block our code frees (libcurl's own allocations excepted: they are
 * not ours to clear) is searched for the secrets, and a realloc of a block
 * holding one fails the test, since realloc may leave the old copy behind.
 * The server answering pp_http runs in a child process, so that its copies
 * of what it received are not searched. */
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "providers/http/http.h"
#include "util/buf.h"

#define BODY_SECRET   "client_secret=Sekr3t~body~0123456789abcdef"
#define HEADER_SECRET "hdr-T0ken-fedcba9876543210-zyx"
#define ANSWER_SECRET "answer-Acc3ss-token-5a5a5a5a5a5a5a5a"

/* --- the watch on free and realloc ------------------------------------------------------- */

void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);

static int armed;
static unsigned found;
static char found_what[64];

static const char *const SECRETS[] = {BODY_SECRET, HEADER_SECRET, ANSWER_SECRET};

static void search(const void *p, const char *how)
{
    if (!armed || p == NULL)
        return;
    size_t n = malloc_usable_size((void *)p);
    for (size_t i = 0; i < sizeof(SECRETS) / sizeof(SECRETS[0]); i++) {
        if (memmem(p, n, SECRETS[i], strlen(SECRETS[i])) != NULL) {
            if (found++ == 0)
                snprintf(found_what, sizeof(found_what), "%s of `%.20s...`", how, SECRETS[i]);
        }
    }
}

void *__wrap_realloc(void *p, size_t n)
{
    search(p, "realloc");
    return __real_realloc(p, n);
}

void __wrap_free(void *p)
{
    search(p, "free");
    __real_free(p);
}

static void arm(void)
{
    found = 0;
    found_what[0] = '\0';
    armed = 1;
}

static unsigned disarm(void)
{
    armed = 0;
    return found;
}

/* --- pp_buf ----------------------------------------------------------------------------------- */

static void fill(pp_buf_t *b)
{
    assert_int_equal(pp_buf_append(b, "grant_type=client_credentials&", 30), 0);
    assert_int_equal(pp_buf_append(b, BODY_SECRET, strlen(BODY_SECRET)), 0);
    /* Grown several times over, past the secret. */
    for (int i = 0; i < 200; i++)
        assert_int_equal(pp_buf_printf(b, "&k%d=%s", i, "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv"), 0);
}

static void test_buf(void **state)
{
    (void)state;
    pp_buf_t b;
    pp_buf_init_secret(&b, 0);
    arm();
    fill(&b);
    assert_non_null(memmem(b.data, b.len, BODY_SECRET, strlen(BODY_SECRET)));
    pp_buf_free(&b);
    if (disarm() != 0)
        fail_msg("a secret buffer left its secret in freed memory: %s", found_what);
    assert_null(b.data);

    /* The watch sees what an ordinary buffer leaves. */
    pp_buf_init(&b, 0);
    arm();
    fill(&b);
    pp_buf_free(&b);
    assert_true(disarm() > 0);
}

/* --- pp_http ------------------------------------------------------------------------------------
 */

/* Answers each request on 127.0.0.1 with 503 and then 200, the token in
 * the body, until killed. */
static void serve(int lfd)
{
    for (unsigned n = 0;; n++) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            _exit(1);
        char buf[8192];
        size_t got = 0;
        for (;;) {
            ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
            if (r <= 0)
                break;
            got += (size_t)r;
            buf[got] = '\0';
            char *end = strstr(buf, "\r\n\r\n");
            char *cl = strcasestr(buf, "content-length:");
            if (end != NULL &&
                (cl == NULL || got >= (size_t)(end + 4 - buf) + strtoul(cl + 15, NULL, 10)))
                break;
        }
        char out[512];
        int len;
        if (n % 2 == 0)
            len = snprintf(out, sizeof(out),
                           "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                           "Connection: close\r\n\r\n");
        else
            len = snprintf(out, sizeof(out),
                           "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                           "X-Token: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n"
                           "{\"access_token\":\"%s\"}",
                           ANSWER_SECRET, strlen(ANSWER_SECRET) + 19, ANSWER_SECRET);
        if (write(fd, out, (size_t)len) != len)
            _exit(1);
        close(fd);
    }
}

static int sign(pp_http_req_t *req, void *arg, pp_error_t *err)
{
    (void)arg;
    (void)err;
    return pp_http_req_add_header(req, "Authorization", "Bearer " HEADER_SECRET);
}

typedef struct result_s {
    int done, status;
    long http;
    char token[64];
} result_t;

static void on_done(int status, const pp_http_response_t *resp, const pp_error_t *err, void *data)
{
    result_t *r = data;
    (void)err;
    r->done = 1;
    r->status = status;
    if (status == 0) {
        r->http = resp->status;
        const char *t = strstr(resp->body, ANSWER_SECRET);
        if (t != NULL)
            snprintf(r->token, sizeof(r->token), "%.*s", (int)strlen(ANSWER_SECRET), t);
    }
}

static void test_http(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Gone with the test, also when an assertion ends it early. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        serve(lfd);
    }
    close(lfd);

    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    pp_http_config_t cfg = {.name = "wipe",
                            .max_attempts = 3,
                            .backoff_base_ms = 1,
                            .backoff_max_ms = 5,
                            .timeout_ms = 10000,
                            .attempt_timeout_ms = 5000};
    pp_http_t *h = NULL;
    pp_error_t err = {0};
    assert_int_equal(pp_http_new(&loop, &cfg, &h, &err), 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/token", ntohs(sa.sin_port));
    /* The body in a block of the caller's, cleared by the caller. */
    char body[256];
    int n = snprintf(body, sizeof(body), "grant_type=client_credentials&%s", BODY_SECRET);
    const char *hdrs[] = {"Content-Type: application/x-www-form-urlencoded",
                          "X-Client: " HEADER_SECRET, NULL};
    pp_http_request_t r = {.method = "POST",
                           .url = url,
                           .headers = hdrs,
                           .body = body,
                           .body_len = (size_t)n,
                           .sign = sign};
    result_t res = {0};
    arm();
    assert_int_equal(pp_http_send(h, &r, on_done, &res, NULL), 0);
    while (!res.done)
        uv_run(&loop, UV_RUN_ONCE);
    pp_http_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    unsigned leaks = disarm();
    assert_int_equal(res.status, 0);
    assert_int_equal(res.http, 200);
    assert_string_equal(res.token, ANSWER_SECRET); /* the answer came, after a retry */
    if (leaks != 0)
        fail_msg("%u freed blocks held a secret, the first at %s", leaks, found_what);
    assert_int_equal(uv_loop_close(&loop), 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_http),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
