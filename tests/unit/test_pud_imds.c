/* Metadata service answers: base64 bodies (Azure, GCP), session tokens (AWS,
 * IBM), IBM's JSON; and one request through the HTTP helper against a
 * listener in this process, for the body cap and the captured header. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "http.h"
#include "imds.h"

static void test_base64(void **state)
{
    (void)state;
    pp_buf_t b;
    pp_buf_init(&b, 0);
    pp_error_t err = {0};
    const char *ok = "I2Nsb3VkLWNvbmZpZwo=\n";
    assert_int_equal(pud_imds_decode_base64(ok, strlen(ok), 100, &b, &err), 0);
    assert_int_equal(b.len, 14);
    assert_memory_equal(b.data, "#cloud-config\n", 14);
    /* Exactly at the limit, and one past. */
    b.len = 0;
    assert_int_equal(pud_imds_decode_base64(ok, strlen(ok), 14, &b, &err), 0);
    b.len = 0;
    assert_int_equal(pud_imds_decode_base64(ok, strlen(ok), 13, &b, &err), -EMSGSIZE);
    assert_non_null(strstr(err.message, "larger than the limit of 13 bytes"));
    assert_int_equal(b.len, 0);
    /* Nothing set. */
    assert_int_equal(pud_imds_decode_base64("", 0, 100, &b, &err), -ENOENT);
    assert_int_equal(pud_imds_decode_base64(" \n", 2, 100, &b, &err), -ENOENT);
    /* Truncated, bad alphabet, bad padding, data after padding. */
    static const char *const bad[] = {"I2Nsb3VkLWNvbmZpZwo", "I2Nsb3V*", "I2=s",
                                      "aGk=aGk=", "aGk==="};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(pud_imds_decode_base64(bad[i], strlen(bad[i]), 100, &b, &err), -EBADMSG);
        assert_non_null(strstr(err.message, "not valid base64"));
        assert_int_equal(b.len, 0);
    }
    pp_buf_free(&b);
}

static void test_token_text(void **state)
{
    (void)state;
    char tok[PUD_IMDS_TOKEN_MAX + 1];
    pp_error_t err = {0};
    const char *ok = "AQAEAFx2_ZZ9k2Qbg==";
    assert_int_equal(pud_imds_token_text(ok, strlen(ok), tok, &err), 0);
    assert_string_equal(tok, ok);
    static const char *const bad[] = {"",      "a b",  "a\r\nX-Injected: 1",
                                      "tok\n", "\x7f", "t\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(pud_imds_token_text(bad[i], strlen(bad[i]), tok, &err), -EBADMSG);
    char *big = malloc(PUD_IMDS_TOKEN_MAX + 1);
    assert_non_null(big);
    memset(big, 'a', PUD_IMDS_TOKEN_MAX + 1);
    assert_int_equal(pud_imds_token_text(big, PUD_IMDS_TOKEN_MAX, tok, &err), 0);
    assert_int_equal(strlen(tok), PUD_IMDS_TOKEN_MAX);
    assert_int_equal(pud_imds_token_text(big, PUD_IMDS_TOKEN_MAX + 1, tok, &err), -EBADMSG);
    free(big);
}

static void test_ibm_token(void **state)
{
    (void)state;
    char tok[PUD_IMDS_TOKEN_MAX + 1];
    pp_error_t err = {0};
    const char *ok = "{\"access_token\": \"eyJhbGci.eyJzdWIi.sig\", \"expires_in\": 60}";
    assert_int_equal(pud_imds_ibm_token(ok, strlen(ok), tok, &err), 0);
    assert_string_equal(tok, "eyJhbGci.eyJzdWIi.sig");
    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"access_token\": 5}",
        "{\"access_token\": \"\"}",
        "{\"access_token\": \"a b\"}",
        "{\"access_token\": \"x\", \"access_token\": \"y\"}",
        "{\"access_token\": \"x\"} trailing",
        "{\"access_token\": \"x\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(pud_imds_ibm_token(bad[i], strlen(bad[i]), tok, &err), -EBADMSG);
}

static void test_ibm_user_data(void **state)
{
    (void)state;
    pp_buf_t b;
    pp_buf_init(&b, 0);
    pp_error_t err = {0};
    const char *ok = "{\"keys\": [], \"user_data\": \"#cloud-config\\nwrite_files: []\\n\"}";
    assert_int_equal(pud_imds_ibm_user_data(ok, strlen(ok), 100, &b, &err), 0);
    assert_int_equal(b.len, 30);
    assert_memory_equal(b.data, "#cloud-config\nwrite_files: []\n", 30);
    b.len = 0;
    assert_int_equal(pud_imds_ibm_user_data(ok, strlen(ok), 29, &b, &err), -EMSGSIZE);
    static const char *const none[] = {"{}", "{\"user_data\": null}", "{\"user_data\": \"\"}"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        assert_int_equal(pud_imds_ibm_user_data(none[i], strlen(none[i]), 100, &b, &err), -ENOENT);
    static const char *const bad[] = {
        "null",
        "\"x\"",
        "{\"user_data\": 1}",
        "{\"user_data\": [\"a\"]}",
        "{\"user_data\": \"a\", \"user_data\": \"b\"}",
        "{\"user_data\": \"\\u0000\"}",
        "{",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(pud_imds_ibm_user_data(bad[i], strlen(bad[i]), 100, &b, &err), -EBADMSG);
    assert_int_equal(b.len, 0);
    pp_buf_free(&b);
}

/* ---- the HTTP helper against a one-shot listener ------------------------------- */

typedef struct server_s {
    int fd;
    const char *answer;
    char request[2048];
} server_t;

static void *serve_one(void *arg)
{
    server_t *s = arg;
    int c = accept(s->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    size_t n = 0;
    while (n < sizeof(s->request) - 1 && !strstr(s->request, "\r\n\r\n")) {
        ssize_t r = read(c, s->request + n, sizeof(s->request) - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        s->request[n] = '\0';
    }
    ssize_t w = write(c, s->answer, strlen(s->answer));
    (void)w;
    close(c);
    return NULL;
}

static int listen_local(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 1) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

static int request(server_t *s, size_t max_body, pud_http_resp_t *resp, pp_error_t *err)
{
    int port;
    s->fd = listen_local(&port);
    assert_true(s->fd >= 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, serve_one, s), 0);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/latest/api/token", port);
    static const char *const headers[] = {"X-aws-ec2-metadata-token-ttl-seconds: 60", NULL};
    pud_http_req_t req = {.method = "PUT",
                          .url = url,
                          .headers = headers,
                          .body = "",
                          .timeout_ms = 5000,
                          .max_body = max_body,
                          .capture = "Metadata-Flavor"};
    int r = pud_http_do(&req, resp, err);
    pthread_join(th, NULL);
    close(s->fd);
    return r;
}

static void test_http(void **state)
{
    (void)state;
    server_t s = {.answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nmetadata-flavor:  Google \r\n"
                            "Connection: close\r\n\r\ntoken"};
    pud_http_resp_t resp;
    pud_http_resp_init(&resp);
    pp_error_t err = {0};
    assert_int_equal(request(&s, 5, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.body.len, 5);
    assert_memory_equal(resp.body.data, "token", 5);
    assert_string_equal(resp.captured, "Google");
    assert_non_null(strstr(s.request, "PUT /latest/api/token HTTP/1.1\r\n"));
    assert_non_null(strstr(s.request, "X-aws-ec2-metadata-token-ttl-seconds: 60\r\n"));
    assert_null(strstr(s.request, "Expect:"));
    pud_http_resp_free(&resp);

    /* One byte over the cap. */
    pud_http_resp_init(&resp);
    assert_int_equal(request(&s, 4, &resp, &err), -EMSGSIZE);
    pud_http_resp_free(&resp);

    /* Statuses are the caller's business. */
    server_t nf = {.answer = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"};
    pud_http_resp_init(&resp);
    assert_int_equal(request(&nf, 100, &resp, &err), 0);
    assert_int_equal(resp.status, 404);
    assert_string_equal(resp.captured, "");
    pud_http_resp_free(&resp);

    /* Nobody listening. */
    int port;
    int fd = listen_local(&port);
    close(fd);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    pud_http_req_t req = {.method = "GET", .url = url, .timeout_ms = 2000, .max_body = 10};
    pud_http_resp_init(&resp);
    int r = pud_http_do(&req, &resp, &err);
    assert_int_equal(r, -ECONNREFUSED);
    assert_true(pud_http_unreachable(r));
    pud_http_resp_free(&resp);
    /* Not http. */
    req.url = "file:///etc/passwd";
    pud_http_resp_init(&resp);
    assert_int_equal(pud_http_do(&req, &resp, &err), -EINVAL);
    pud_http_resp_free(&resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64),    cmocka_unit_test(test_token_text),
        cmocka_unit_test(test_ibm_token), cmocka_unit_test(test_ibm_user_data),
        cmocka_unit_test(test_http),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
