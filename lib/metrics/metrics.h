/* Metrics: counters, gauges and histograms with labels, rendered in
 * Prometheus' text exposition format (version 0.0.4).
 *
 * A registry is an object like any other: the daemon's context owns one and
 * passes it down (to its provider, the provider's HTTP client, the TLS
 * layer); nothing here is process-wide. Every function takes NULL for the
 * registry, the family or the series and then does nothing, so code that
 * may run without a registry (tools, tests, the forwarder) needs no checks.
 *
 * A family is one metric name with its help, type and label names; a
 * series is the family at one set of label values. Families are made once
 * (making one again with the same name, type and labels gives the same
 * family back); series are found by their label values, or made at first
 * use, and stay until the registry is freed: callers on hot paths keep the
 * series pointer. A family holds at most PP_METRICS_MAX_SERIES series;
 * beyond that pp_metric_with() gives NULL and the values are dropped, so a
 * label fed from outside cannot grow the registry without bound.
 *
 * Collectors are called at each rendering, before anything is written, to
 * set the gauges whose value is read rather than counted (resident memory,
 * sandboxes by state).
 *
 * Loop thread only: no locks. */
#ifndef PP_METRICS_H
#define PP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

#define PP_METRICS_MAX_LABELS  6
#define PP_METRICS_MAX_BUCKETS 24
#define PP_METRICS_MAX_SERIES  256

/* The Content-Type of pp_metrics_render()'s output. */
#define PP_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct pp_metrics_s pp_metrics_t;
typedef struct pp_metric_s pp_metric_t;
typedef struct pp_series_s pp_series_t;

typedef void (*pp_metrics_collect_cb)(pp_metrics_t *m, void *data);

pp_metrics_t *pp_metrics_new(void);
void pp_metrics_free(pp_metrics_t *m);

/* Families. `labels` is a comma-separated list of label names ("provider,
 * operation,result"), or NULL for none. NULL when a name is not a valid
 * Prometheus name, the name is taken by a family of another type or
 * labels, or memory is short. Names and help are copied. */
pp_metric_t *pp_metrics_counter(pp_metrics_t *m, const char *name, const char *help,
                                const char *labels);
pp_metric_t *pp_metrics_gauge(pp_metrics_t *m, const char *name, const char *help,
                              const char *labels);
/* `bounds`: the buckets' upper bounds, increasing; +Inf is implied. */
pp_metric_t *pp_metrics_histogram(pp_metrics_t *m, const char *name, const char *help,
                                  const char *labels, const double *bounds, size_t nbounds);

/* The series at these label values, one per label name of the family in
 * order (NULL values count as ""). Made at first use. */
pp_series_t *pp_metric_with(pp_metric_t *f, const char *const *values);
/* The same with the values as arguments: pp_metric_at(f, "aws", "create"). */
#define pp_metric_at(f, ...) pp_metric_with((f), (const char *const[]){__VA_ARGS__, NULL})
/* The series of a family without labels. */
pp_series_t *pp_metric_series(pp_metric_t *f);

/* Counters go up by `v` (>= 0; anything else is ignored); gauges move by
 * `v`. */
void pp_series_add(pp_series_t *s, double v);
void pp_series_inc(pp_series_t *s);
/* Gauges; counters read from elsewhere (only upward moves are taken). */
void pp_series_set(pp_series_t *s, double v);
/* Histograms only. */
void pp_series_observe(pp_series_t *s, double v);
/* A counter's or gauge's value, a histogram's count (for tests). */
double pp_series_value(const pp_series_t *s);

/* Called, in the order added, at each rendering. */
int pp_metrics_add_collector(pp_metrics_t *m, pp_metrics_collect_cb cb, void *data);

/* Appends the exposition of every family, in the order they were made, to
 * `out`. Returns 0, or what pp_buf_append returned. */
int pp_metrics_render(pp_metrics_t *m, pp_buf_t *out);

/* Fills the standard process gauges (process_resident_memory_bytes,
 * process_open_fds, process_max_fds, process_cpu_seconds_total,
 * process_start_time_seconds) from /proc/self: register with
 * pp_metrics_add_collector(m, pp_metrics_process_cb, NULL). */
void pp_metrics_process_cb(pp_metrics_t *m, void *data);

/* Buckets for durations in seconds from 5 ms to 10 minutes. */
extern const double pp_metrics_seconds_buckets[];
extern const size_t pp_metrics_seconds_nbuckets;

#endif
