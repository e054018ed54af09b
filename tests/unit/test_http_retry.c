/* The HTTP client's pure parts: full-jitter backoff, Retry-After, the token
 * bucket, the CURLcode table, the credential cache, and credential files
 * read on the threadpool. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "providers/http/http.h"
#include "providers/http/token.h"

static void test_backoff(void **state)
{
    (void)state;
    /* The ceiling doubles from the base and stops at the maximum. */
    assert_int_equal(pp__http_backoff(100, 20000, 0, 12345), 0);
    assert_int_equal(pp__http_backoff(100, 20000, 1, UINT64_MAX), UINT64_MAX % 101);
    assert_int_equal(pp__http_backoff(100, 20000, 1, 100), 100);
    assert_int_equal(pp__http_backoff(100, 20000, 1, 101), 0);
    assert_int_equal(pp__http_backoff(100, 20000, 3, 400), 400);
    assert_int_equal(pp__http_backoff(100, 20000, 3, 401), 0);
    assert_int_equal(pp__http_backoff(100, 1000, 10, 1000), 1000);
    assert_int_equal(pp__http_backoff(100, 1000, 200, 1001), 0);
    /* Spread: over many draws the values cover the range. */
    uint64_t x = 88172645463325252ULL, lo = UINT64_MAX, hi = 0, sum = 0;
    for (int i = 0; i < 10000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t d = pp__http_backoff(50, 10000, 4, x);
        assert_true(d <= 400);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        sum += d;
    }
    assert_true(lo < 10);
    assert_true(hi > 390);
    assert_true(sum / 10000 > 170 && sum / 10000 < 230);
}

static void test_retry_after(void **state)
{
    (void)state;
    uint64_t ms = 0;
    assert_int_equal(pp__http_retry_after("3", 0, &ms), 0);
    assert_int_equal(ms, 3000);
    assert_int_equal(pp__http_retry_after(" 0 ", 0, &ms), 0);
    assert_int_equal(ms, 0);
    /* 1994-11-06 08:49:37 UTC = 784111777 */
    assert_int_equal(pp__http_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111770, &ms), 0);
    assert_int_equal(ms, 7000);
    assert_int_equal(pp__http_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111800, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(pp__http_retry_after("soon", 0, &ms), -EINVAL);
    assert_int_equal(pp__http_retry_after("5x", 0, &ms), -EINVAL);
    assert_int_equal(pp__http_retry_after("-1", 0, &ms), -EINVAL);
    assert_int_equal(pp__http_retry_after("99999999999999999999999", 0, &ms), -EINVAL);
    assert_int_equal(pp__http_retry_after(NULL, 0, &ms), -EINVAL);
}

static void test_bucket(void **state)
{
    (void)state;
    pp__http_bucket_t b;
    /* 10/s, burst 3: three at once, then one every 100 ms. */
    pp__http_bucket_init(&b, 10, 3, 0);
    assert_int_equal(pp__http_bucket_take(&b, 0), 0);
    assert_int_equal(pp__http_bucket_take(&b, 0), 0);
    assert_int_equal(pp__http_bucket_take(&b, 0), 0);
    uint64_t w = pp__http_bucket_take(&b, 0);
    assert_true(w >= 100 && w <= 101);
    w = pp__http_bucket_take(&b, 50000);
    assert_true(w >= 50 && w <= 51);
    assert_int_equal(pp__http_bucket_take(&b, 100000), 0);
    /* A long idle time refills no more than the burst. */
    int got = 0;
    while (pp__http_bucket_take(&b, 100000000) == 0)
        got++;
    assert_int_equal(got, 3);
    /* Over 10 s of steady demand: at most burst + rate * t. */
    pp__http_bucket_init(&b, 10, 3, 0);
    int taken = 0;
    for (uint64_t t = 0; t <= 10000000; t += 1000)
        while (pp__http_bucket_take(&b, t) == 0)
            taken++;
    assert_true(taken <= 3 + 100);
    assert_true(taken >= 100);
    /* Rate 0: no limit. */
    pp__http_bucket_init(&b, 0, 0, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(pp__http_bucket_take(&b, 0), 0);
    /* A fractional rate still gets one token of burst. */
    pp__http_bucket_init(&b, 0.5, 0, 0);
    assert_int_equal(pp__http_bucket_take(&b, 0), 0);
    w = pp__http_bucket_take(&b, 0);
    assert_true(w >= 2000 && w <= 2001);
}

static void test_curl_errors(void **state)
{
    (void)state;
    int retry = -1;
    assert_int_equal(pp__http_curl_errno(CURLE_OK, &retry), 0);
    assert_int_equal(pp__http_curl_errno(CURLE_COULDNT_CONNECT, &retry), -ECONNREFUSED);
    assert_int_equal(retry, 1);
    assert_int_equal(pp__http_curl_errno(CURLE_OPERATION_TIMEDOUT, &retry), -ETIMEDOUT);
    assert_int_equal(retry, 1);
    assert_int_equal(pp__http_curl_errno(CURLE_PEER_FAILED_VERIFICATION, &retry), -EPROTO);
    assert_int_equal(retry, 0);
    assert_int_equal(pp__http_curl_errno(CURLE_URL_MALFORMAT, &retry), -EINVAL);
    assert_int_equal(retry, 0);
    assert_int_equal(pp__http_curl_errno(CURLE_LDAP_CANNOT_BIND, &retry), -EIO);
    assert_int_equal(retry, 0);
}

typedef struct fetch_log_s {
    int started;
    int fail_sync;
} fetch_log_t;

static int count_fetch(pp_token_cache_t *c, void *arg)
{
    fetch_log_t *l = arg;
    (void)c;
    if (l->fail_sync)
        return -EIO;
    l->started++;
    return 0;
}

static void waiter_done(int status, const pp_error_t *err, void *data)
{
    int *got = data;
    *got = status < 0 ? status : 1;
    (void)err;
}

static void test_token_cache(void **state)
{
    (void)state;
    /* Refresh five minutes early, or halfway through a short life. */
    assert_int_equal(pp__token_refresh_at(1000, 0), 0);
    assert_int_equal(pp__token_refresh_at(1000, 1000 + 3600), 1000 + 3600 - 300);
    assert_int_equal(pp__token_refresh_at(1000, 1000 + 60), 1000 + 30);
    assert_int_equal(pp__token_refresh_at(1000, 900), 900);

    fetch_log_t log = {0};
    pp_token_cache_t c;
    pp_token_cache_init(&c, count_fetch, &log);
    pp_token_waiter_t w1 = {.cb = waiter_done}, w2 = {.cb = waiter_done}, w3 = {.cb = waiter_done};
    int g1 = 0, g2 = 0, g3 = 0;
    w1.data = &g1;
    w2.data = &g2;
    w3.data = &g3;
    /* Two callers, one fetch; both woken by its end. */
    assert_int_equal(pp_token_cache_ensure(&c, &w1), 0);
    assert_int_equal(pp_token_cache_ensure(&c, &w2), 0);
    assert_int_equal(log.started, 1);
    pp_token_cache_done(&c, 0, time(NULL) + 3600, NULL);
    assert_int_equal(g1, 1);
    assert_int_equal(g2, 1);
    assert_int_equal(c.fetches, 1);
    /* Fresh: no fetch, no callback. */
    assert_int_equal(pp_token_cache_ensure(&c, &w3), 1);
    assert_int_equal(log.started, 1);
    /* Invalidated: fetched again; a failed fetch is reported to the waiter. */
    pp_token_cache_invalidate(&c);
    assert_int_equal(pp_token_cache_ensure(&c, &w3), 0);
    assert_int_equal(log.started, 2);
    pp_error_t e;
    pp_error_set(&e, -EACCES, "refused");
    pp_token_cache_done(&c, -EACCES, 0, &e);
    assert_int_equal(g3, -EACCES);
    assert_int_equal(c.fetches, 1);
    /* Expired: refreshed. */
    pp_token_cache_done(&c, 0, time(NULL) - 1, NULL);
    g1 = 0;
    assert_int_equal(pp_token_cache_ensure(&c, &w1), 0);
    assert_int_equal(log.started, 3);
    /* A fetch that cannot start leaves no waiter behind. */
    log.fail_sync = 1;
    pp_token_cache_done(&c, -EIO, 0, &e);
    assert_int_equal(g1, -EIO);
    pp_token_cache_invalidate(&c);
    assert_int_equal(pp_token_cache_ensure(&c, &w2), -EIO);
    assert_null(c.waiters);
    assert_int_equal(c.fetching, 0);
}

typedef struct file_res_s {
    int calls, status;
    char text[64];
} file_res_t;

static void file_done(int status, char *text, void *data)
{
    file_res_t *r = data;
    r->calls++;
    r->status = status;
    r->text[0] = '\0';
    if (text != NULL) {
        snprintf(r->text, sizeof(r->text), "%s", text);
        free(text);
    }
}

/* Reads `path` as a fetch would and returns what the callback got. */
static file_res_t read_file(uv_loop_t *loop, const char *path, size_t max)
{
    file_res_t r = {0};
    assert_int_equal(pp_token_file_read(loop, path, max, file_done, &r), 0);
    assert_int_equal(r.calls, 0); /* never from inside the call */
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(r.calls, 1);
    return r;
}

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_token_file(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char path[] = "/tmp/pp-token-file-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    /* Trailing whitespace goes; each read sees the file as it is now. */
    put(path, "eyJhbGciOiJSUzI1NiJ9.first.sig\n");
    file_res_t r = read_file(&loop, path, 64);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.text, "eyJhbGciOiJSUzI1NiJ9.first.sig");
    put(path, "eyJhbGciOiJSUzI1NiJ9.rotated.sig \r\n");
    r = read_file(&loop, path, 64);
    assert_string_equal(r.text, "eyJhbGciOiJSUzI1NiJ9.rotated.sig");
    /* Empty, at the bound, missing. */
    put(path, "\n");
    assert_int_equal(read_file(&loop, path, 64).status, -ENODATA);
    put(path, "0123456789abcdef");
    assert_int_equal(read_file(&loop, path, 16).status, -EFBIG);
    assert_int_equal(read_file(&loop, path, 17).status, 0);
    put(path, "0123456789abcdef\n\n");
    assert_int_equal(read_file(&loop, path, 16).status, -EFBIG);
    unlink(path);
    r = read_file(&loop, path, 64);
    assert_int_equal(r.status, -ENOENT);
    assert_string_equal(r.text, "");
    assert_int_equal(pp_token_file_read(&loop, "", 64, file_done, &r), -EINVAL);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),     cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_bucket),      cmocka_unit_test(test_curl_errors),
        cmocka_unit_test(test_token_cache), cmocka_unit_test(test_token_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
