/* The HTTP client's pure parts: full-jitter backoff, Retry-After, the token
 * bucket, and the CURLcode table. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "providers/http/http.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_curl_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
