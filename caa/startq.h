/* The way to the provider: calls to create and delete instances go through
 * here, at most PROVIDER_CONCURRENCY at a time. A burst of StartVM calls is
 * admitted at once (each is recorded, its pod network prepared, and it is
 * answered when its pod runs), but the provider, and behind it the cloud's
 * API, sees a bounded number of calls in flight: the rest wait in order of
 * arrival. Deletes go before waiting creates, since they give capacity
 * back. Nothing here wakes the loop while idle.
 *
 * It also keeps StartVM's clock for the daemon's own share: the time from
 * the call to the answer less the time spent waiting here and in the
 * provider.
 *
 * Series (in the daemon's registry): caa_provider_calls_in_flight,
 * caa_provider_calls_waiting, caa_provider_calls_in_flight_peak (the most
 * at once since start), caa_startvm_queued_seconds (a create's wait for its
 * turn). Loop thread only. */
#ifndef CAA_STARTQ_H
#define CAA_STARTQ_H

#include <stddef.h>
#include <stdint.h>

#include "metrics/metrics.h"
#include "providers/provider.h"

typedef struct caa_daemon_s caa_daemon_t;
typedef struct caa_sandbox_s caa_sandbox_t;

typedef struct caa_startq_op_s caa_startq_op_t;

typedef struct caa_startq_list_s {
    caa_startq_op_t *head, *tail; /* oldest first */
} caa_startq_list_t;

typedef struct caa_startq_s {
    unsigned limit;            /* 0: no bound */
    unsigned in_flight, peak;  /* calls the provider holds */
    size_t waiting;            /* calls queued here */
    caa_startq_list_t deletes; /* waiting, each also in its sandbox's startq_op */
    caa_startq_list_t creates;
    pp_series_t *m_in_flight, *m_waiting, *m_peak, *m_queued;
} caa_startq_t;

/* Sets the bound and registers the series (`registry` may be NULL). */
void caa_startq_init(caa_startq_t *q, unsigned limit, pp_metrics_t *registry);
/* Frees the calls still waiting without calling them back (the daemon is
 * going away with its sandboxes). */
void caa_startq_fini(caa_startq_t *q);

/* StartVM for `sb` arrived: its clock starts (sb->start_hr, sb->waited_ns). */
void caa_startq_clock_start(caa_sandbox_t *sb);
/* `sb` runs: StartVM's time in ms, and the daemon's own share of it (less
 * the waits here and in the provider). */
void caa_startq_clock_stop(caa_sandbox_t *sb, double *total_ms, double *waited_ms, double *own_ms);

/* The provider's create_instance for `sb`, with `spec` (copied; the strings
 * it points to must live as long as `sb`), now or when a slot frees. `cb`
 * gets `sb` as its data and is called exactly once, through the loop,
 * unless caa_startq_cancel() takes the call back first. A create still
 * waiting when the daemon begins to stop fails with -ESHUTDOWN. */
int caa_startq_create(caa_daemon_t *d, caa_sandbox_t *sb, const pp_instance_spec_t *spec,
                      pp_provider_create_cb cb);
/* The provider's delete_instance of sb->instance.id; as above. */
int caa_startq_delete(caa_daemon_t *d, caa_sandbox_t *sb, pp_provider_delete_cb cb);
/* Takes back the call of `sb` still waiting: 1 when one was (its callback
 * will not run), 0 when none waits (one may be in the provider). */
int caa_startq_cancel(caa_daemon_t *d, caa_sandbox_t *sb);

#endif
