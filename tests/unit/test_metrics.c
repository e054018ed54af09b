/* The metrics registry (lib/metrics): counters, gauges and histograms with
 * labels render in Prometheus' text format exactly as expected, and the
 * Prometheus project's own parser (python3-prometheus-client) reads them
 * back with the same names, labels and values; shapes are checked, label
 * values escaped, series capped, NULL is harmless, and the process gauges
 * read /proc. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "metrics/metrics.h"

static char *render(pp_metrics_t *m)
{
    pp_buf_t b;
    pp_buf_init(&b, 1 << 20);
    assert_int_equal(pp_metrics_render(m, &b), 0);
    assert_int_equal(pp_buf_append_byte(&b, '\0'), 0);
    size_t n;
    return (char *)pp_buf_steal(&b, &n);
}

static const double bounds[] = {0.1, 1, 10};

static pp_metrics_t *sample(void)
{
    pp_metrics_t *m = pp_metrics_new();
    assert_non_null(m);
    pp_metric_t *calls = pp_metrics_counter(m, "caa_cloud_api_calls_total", "Cloud API calls.",
                                            "provider, operation,result");
    assert_non_null(calls);
    pp_series_inc(pp_metric_at(calls, "aws", "RunInstances", "ok"));
    pp_series_add(pp_metric_at(calls, "aws", "RunInstances", "ok"), 2);
    pp_series_inc(pp_metric_at(calls, "aws", "TerminateInstances", "throttled"));
    pp_metric_t *sb = pp_metrics_gauge(m, "caa_sandboxes", "Sandboxes by state.", "state");
    pp_series_set(pp_metric_at(sb, "running"), 1000);
    pp_series_set(pp_metric_at(sb, "failed"), 0);
    pp_metric_t *h =
        pp_metrics_histogram(m, "caa_startvm_seconds", "StartVM duration.", "stage", bounds, 3);
    pp_series_t *s = pp_metric_at(h, "tunnel");
    pp_series_observe(s, 0.05);
    pp_series_observe(s, 0.1); /* on a bound: that bucket */
    pp_series_observe(s, 5);
    pp_series_observe(s, 50);
    pp_metric_t *esc = pp_metrics_gauge(m, "odd", "Help with \\ and\nnewline.", "v");
    pp_series_set(pp_metric_at(esc, "a\"b\\c\nd"), -1.5);
    pp_series_inc(pp_metric_series(pp_metrics_counter(m, "plain_total", "", NULL)));
    return m;
}

static const char expected[] =
    "# HELP caa_cloud_api_calls_total Cloud API calls.\n"
    "# TYPE caa_cloud_api_calls_total counter\n"
    "caa_cloud_api_calls_total{provider=\"aws\",operation=\"RunInstances\",result=\"ok\"} 3\n"
    "caa_cloud_api_calls_total{provider=\"aws\",operation=\"TerminateInstances\","
    "result=\"throttled\"} 1\n"
    "# HELP caa_sandboxes Sandboxes by state.\n"
    "# TYPE caa_sandboxes gauge\n"
    "caa_sandboxes{state=\"running\"} 1000\n"
    "caa_sandboxes{state=\"failed\"} 0\n"
    "# HELP caa_startvm_seconds StartVM duration.\n"
    "# TYPE caa_startvm_seconds histogram\n"
    "caa_startvm_seconds_bucket{stage=\"tunnel\",le=\"0.1\"} 2\n"
    "caa_startvm_seconds_bucket{stage=\"tunnel\",le=\"1\"} 2\n"
    "caa_startvm_seconds_bucket{stage=\"tunnel\",le=\"10\"} 3\n"
    "caa_startvm_seconds_bucket{stage=\"tunnel\",le=\"+Inf\"} 4\n"
    "caa_startvm_seconds_sum{stage=\"tunnel\"} 55.15\n"
    "caa_startvm_seconds_count{stage=\"tunnel\"} 4\n"
    "# HELP odd Help with \\\\ and\\nnewline.\n"
    "# TYPE odd gauge\n"
    "odd{v=\"a\\\"b\\\\c\\nd\"} -1.5\n"
    "# HELP plain_total \n"
    "# TYPE plain_total counter\n"
    "plain_total 1\n";

static void test_render(void **state)
{
    (void)state;
    pp_metrics_t *m = sample();
    char *text = render(m);
    assert_string_equal(text, expected);
    free(text);
    pp_metrics_free(m);
}

/* What Prometheus' own parser reads back. */
static void test_prometheus_parser(void **state)
{
    (void)state;
    if (system("/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null") != 0) {
        print_message("skip: /usr/bin/python3 lacks prometheus_client "
                      "(python3-prometheus-client)\n");
        skip();
    }
    pp_metrics_t *m = sample();
    char *text = render(m);
    char path[] = "/tmp/test_metrics_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s %s", METRICS_PARSE_SCRIPT, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[8192];
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    assert_int_equal(pclose(p), 0);
    unlink(path);
    static const char want[] =
        "# caa_cloud_api_calls counter Cloud API calls.\n"
        "caa_cloud_api_calls_total{operation=RunInstances,provider=aws,result=ok} 3.0\n"
        "caa_cloud_api_calls_total{operation=TerminateInstances,provider=aws,result=throttled} "
        "1.0\n"
        "# caa_sandboxes gauge Sandboxes by state.\n"
        "caa_sandboxes{state=running} 1000.0\n"
        "caa_sandboxes{state=failed} 0.0\n"
        "# caa_startvm_seconds histogram StartVM duration.\n"
        "caa_startvm_seconds_bucket{le=0.1,stage=tunnel} 2.0\n"
        "caa_startvm_seconds_bucket{le=1,stage=tunnel} 2.0\n"
        "caa_startvm_seconds_bucket{le=10,stage=tunnel} 3.0\n"
        "caa_startvm_seconds_bucket{le=+Inf,stage=tunnel} 4.0\n"
        "caa_startvm_seconds_sum{stage=tunnel} 55.15\n"
        "caa_startvm_seconds_count{stage=tunnel} 4.0\n"
        "# odd gauge Help with \\ and\\nnewline.\n"
        "odd{v=a\"b\\c\\nd} -1.5\n"
        "# plain counter \n"
        "plain_total{} 1.0\n";
    assert_string_equal(out, want);
    free(text);
    pp_metrics_free(m);
}

static void test_shapes(void **state)
{
    (void)state;
    pp_metrics_t *m = pp_metrics_new();
    pp_metric_t *a = pp_metrics_counter(m, "a_total", "x", "x,y");
    assert_non_null(a);
    /* The same shape gives the same family; another does not. */
    assert_ptr_equal(pp_metrics_counter(m, "a_total", "other help", "x, y"), a);
    assert_null(pp_metrics_gauge(m, "a_total", "x", "x,y"));
    assert_null(pp_metrics_counter(m, "a_total", "x", "x"));
    assert_null(pp_metrics_counter(m, "a_total", "x", "y,x"));
    /* Bad names and labels. */
    assert_null(pp_metrics_counter(m, "9lives", "", NULL));
    assert_null(pp_metrics_counter(m, "a-b", "", NULL));
    assert_null(pp_metrics_counter(m, "", "", NULL));
    assert_null(pp_metrics_counter(m, "ok", "", "le"));
    assert_null(pp_metrics_counter(m, "ok", "", "__x"));
    assert_null(pp_metrics_counter(m, "ok", "", "a,a"));
    assert_null(pp_metrics_counter(m, "ok", "", "a:b"));
    assert_null(pp_metrics_counter(m, "ok", "", "a,b,c,d,e,f,g"));
    static const double down[] = {1, 0.5};
    assert_null(pp_metrics_histogram(m, "h", "", NULL, down, 2));
    assert_non_null(pp_metrics_counter(m, "ns:ok_total", "", "a,b,c,d,e,f"));
    /* Counters never go down; histograms take no add. */
    pp_series_t *s = pp_metric_at(a, "1", "2");
    pp_series_add(s, -1);
    pp_series_add(s, NAN);
    pp_series_add(s, 2);
    pp_series_set(s, 1);
    assert_true(pp_series_value(s) == 2);
    pp_series_set(s, 7);
    assert_true(pp_series_value(s) == 7);
    pp_series_observe(s, 1);
    assert_true(pp_series_value(s) == 7);
    /* A labelled family has no label-less series. */
    assert_null(pp_metric_series(a));
    pp_metrics_free(m);
}

static void test_cap(void **state)
{
    (void)state;
    pp_metrics_t *m = pp_metrics_new();
    pp_metric_t *f = pp_metrics_counter(m, "c_total", "", "id");
    char id[16];
    for (int i = 0; i < PP_METRICS_MAX_SERIES; i++) {
        snprintf(id, sizeof(id), "%d", i);
        assert_non_null(pp_metric_at(f, id));
    }
    assert_null(pp_metric_at(f, "one-more"));
    /* Existing ones are still found. */
    assert_non_null(pp_metric_at(f, "0"));
    pp_metrics_free(m);
}

static void test_null(void **state)
{
    (void)state;
    assert_null(pp_metrics_counter(NULL, "a", "", NULL));
    assert_null(pp_metric_at(NULL, "x"));
    assert_null(pp_metric_series(NULL));
    pp_series_inc(NULL);
    pp_series_set(NULL, 1);
    pp_series_observe(NULL, 1);
    assert_true(pp_series_value(NULL) == 0);
    assert_int_equal(pp_metrics_add_collector(NULL, pp_metrics_process_cb, NULL), 0);
    pp_buf_t b;
    pp_buf_init(&b, 16);
    assert_int_equal(pp_metrics_render(NULL, &b), 0);
    assert_int_equal(b.len, 0);
    pp_metrics_free(NULL);
}

/* A bounded buffer that is too small fails the rendering, as the caller
 * asked. */
static void test_bounded(void **state)
{
    (void)state;
    pp_metrics_t *m = sample();
    pp_buf_t b;
    pp_buf_init(&b, 100);
    assert_int_equal(pp_metrics_render(m, &b), -EMSGSIZE);
    pp_buf_free(&b);
    pp_metrics_free(m);
}

static void count_cb(pp_metrics_t *m, void *data)
{
    int *n = data;
    (*n)++;
    pp_series_set(pp_metric_series(pp_metrics_gauge(m, "renders", "", NULL)), *n);
}

static void test_collectors(void **state)
{
    (void)state;
    pp_metrics_t *m = pp_metrics_new();
    int n = 0;
    assert_int_equal(pp_metrics_add_collector(m, count_cb, &n), 0);
    assert_int_equal(pp_metrics_add_collector(m, pp_metrics_process_cb, NULL), 0);
    free(render(m));
    char *text = render(m);
    assert_int_equal(n, 2);
    assert_non_null(strstr(text, "\nrenders 2\n"));
    double rss = 0, fds = 0;
    const char *p = strstr(text, "\nprocess_resident_memory_bytes ");
    assert_non_null(p);
    rss = strtod(p + 31, NULL);
    p = strstr(text, "\nprocess_open_fds ");
    assert_non_null(p);
    fds = strtod(p + 18, NULL);
    assert_true(rss > 1e6 && rss < 1e9);
    assert_true(fds >= 3 && fds < 1000);
    assert_non_null(strstr(text, "# TYPE process_cpu_seconds_total counter\n"));
    assert_non_null(strstr(text, "\nprocess_start_time_seconds 1"));
    free(text);
    pp_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),     cmocka_unit_test(test_prometheus_parser),
        cmocka_unit_test(test_shapes),     cmocka_unit_test(test_cap),
        cmocka_unit_test(test_null),       cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_collectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
