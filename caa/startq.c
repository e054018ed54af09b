/* Bounded calls to the provider, and StartVM's clock (startq.h). */
#include "startq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "metrics/metrics.h"
#include "sandbox.h"
#include "util/cleanup.h"

struct caa_startq_op_s {
    caa_startq_op_t *next, *prev; /* in its list while waiting */
    caa_daemon_t *d;
    caa_sandbox_t *sb;
    pp_instance_spec_t spec;         /* creates */
    pp_provider_create_cb create_cb; /* one of the two */
    pp_provider_delete_cb delete_cb;
    uint64_t queued_at; /* uv_hrtime() */
};

/* Buckets for a create's wait, in seconds: from nothing to the shim's own
 * 600 s deadline. */
static const double queued_buckets[] = {0.001, 0.01, 0.1, 0.5, 1,   2.5, 5,
                                        10,    30,   60,  120, 300, 600};

void caa_startq_init(caa_startq_t *q, unsigned limit, pp_metrics_t *registry)
{
    memset(q, 0, sizeof(*q));
    q->limit = limit;
    q->m_in_flight = pp_metric_series(pp_metrics_gauge(
        registry, "caa_provider_calls_in_flight",
        "Calls to create or delete an instance that the provider holds now.", NULL));
    q->m_waiting = pp_metric_series(
        pp_metrics_gauge(registry, "caa_provider_calls_waiting",
                         "Calls to create or delete an instance waiting for their turn "
                         "(PROVIDER_CONCURRENCY).",
                         NULL));
    q->m_peak = pp_metric_series(
        pp_metrics_gauge(registry, "caa_provider_calls_in_flight_peak",
                         "The most calls the provider held at once since start.", NULL));
    q->m_queued = pp_metric_series(pp_metrics_histogram(
        registry, "caa_startvm_queued_seconds",
        "Time a StartVM's create waited for its turn before reaching the provider.", NULL,
        queued_buckets, PP_ARRAY_SIZE(queued_buckets)));
}

static caa_startq_op_t *pop(caa_startq_t *q);

void caa_startq_fini(caa_startq_t *q)
{
    caa_startq_op_t *op;
    while ((op = pop(q)) != NULL)
        free(op);
}

void caa_startq_clock_start(caa_sandbox_t *sb)
{
    sb->start_hr = uv_hrtime();
    sb->waited_ns = 0;
}

void caa_startq_clock_stop(caa_sandbox_t *sb, double *total_ms, double *waited_ms, double *own_ms)
{
    uint64_t total = sb->start_hr != 0 ? uv_hrtime() - sb->start_hr : 0;
    uint64_t waited = sb->waited_ns < total ? sb->waited_ns : total;
    *total_ms = (double)total / 1e6;
    *waited_ms = (double)waited / 1e6;
    *own_ms = (double)(total - waited) / 1e6;
}

static void gauges(caa_startq_t *q)
{
    if (q->in_flight > q->peak) {
        q->peak = q->in_flight;
        pp_series_set(q->m_peak, q->peak);
    }
    pp_series_set(q->m_in_flight, q->in_flight);
    pp_series_set(q->m_waiting, (double)q->waiting);
}

static void pump(caa_startq_t *q);

/* The provider answered: the slot is free for the next call. */
static void op_done(caa_startq_op_t *op)
{
    caa_startq_t *q = &op->d->startq;
    q->in_flight--;
    op->sb->waited_ns += uv_hrtime() - op->queued_at;
    gauges(q);
}

static void created(int status, const pp_instance_t *inst, const pp_error_t *err, void *data)
{
    caa_startq_op_t *op = data;
    caa_startq_t *q = &op->d->startq;
    caa_sandbox_t *sb = op->sb;
    pp_provider_create_cb cb = op->create_cb;
    op_done(op);
    free(op);
    cb(status, inst, err, sb);
    pump(q);
}

static void deleted(int status, const pp_error_t *err, void *data)
{
    caa_startq_op_t *op = data;
    caa_startq_t *q = &op->d->startq;
    caa_sandbox_t *sb = op->sb;
    pp_provider_delete_cb cb = op->delete_cb;
    op_done(op);
    free(op);
    cb(status, err, sb);
    pump(q);
}

/* Hands the call to the provider; its synchronous failure comes back as
 * the return value, with `op` freed. */
static int dispatch(caa_startq_op_t *op)
{
    caa_daemon_t *d = op->d;
    caa_startq_t *q = &d->startq;
    pp_provider_t *p = d->provider;
    if (op->create_cb != NULL)
        pp_series_observe(q->m_queued, (double)(uv_hrtime() - op->queued_at) / 1e9);
    q->in_flight++;
    gauges(q);
    int r = op->create_cb != NULL ? p->ops->create_instance(p, &op->spec, created, op)
                                  : p->ops->delete_instance(p, op->sb->instance.id, deleted, op);
    if (r < 0) {
        q->in_flight--;
        gauges(q);
        free(op);
    }
    return r;
}

static void unlink_op(caa_startq_t *q, caa_startq_op_t *op)
{
    caa_startq_list_t *l = op->create_cb != NULL ? &q->creates : &q->deletes;
    if (op->prev != NULL)
        op->prev->next = op->next;
    else
        l->head = op->next;
    if (op->next != NULL)
        op->next->prev = op->prev;
    else
        l->tail = op->prev;
    op->next = op->prev = NULL;
    op->sb->startq_op = NULL;
    q->waiting--;
}

static void append(caa_startq_t *q, caa_startq_op_t *op)
{
    caa_startq_list_t *l = op->create_cb != NULL ? &q->creates : &q->deletes;
    op->prev = l->tail;
    op->next = NULL;
    if (l->tail != NULL)
        l->tail->next = op;
    else
        l->head = op;
    l->tail = op;
    op->sb->startq_op = op;
    q->waiting++;
}

/* Deletes first: they give capacity back. */
static caa_startq_op_t *pop(caa_startq_t *q)
{
    caa_startq_op_t *op = q->deletes.head != NULL ? q->deletes.head : q->creates.head;
    if (op != NULL)
        unlink_op(q, op);
    return op;
}

/* Starts waiting calls while there is room. Runs from a provider's
 * callback, never inside caa_startq_create()/_delete(): a call that fails
 * here is answered through its callback. */
static void pump(caa_startq_t *q)
{
    while (q->limit == 0 || q->in_flight < q->limit) {
        caa_startq_op_t *op = pop(q);
        if (op == NULL)
            break;
        gauges(q);
        caa_sandbox_t *sb = op->sb;
        pp_provider_create_cb ccb = op->create_cb;
        pp_provider_delete_cb dcb = op->delete_cb;
        int r = ccb != NULL && op->d->stopping ? -ESHUTDOWN : 0;
        if (r < 0)
            free(op);
        else
            r = dispatch(op);
        if (r < 0) {
            pp_error_t e;
            pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, r, "%s",
                                r == -ESHUTDOWN ? "cloud-api-adaptor is shutting down"
                                                : uv_strerror(r));
            if (ccb != NULL)
                ccb(r, NULL, &e, sb);
            else
                dcb(r, &e, sb);
        }
    }
}

static int submit(caa_daemon_t *d, caa_sandbox_t *sb, const pp_instance_spec_t *spec,
                  pp_provider_create_cb ccb, pp_provider_delete_cb dcb)
{
    caa_startq_t *q = &d->startq;
    if (ccb != NULL && d->stopping)
        return -ESHUTDOWN;
    caa_startq_op_t *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return -ENOMEM;
    op->d = d;
    op->sb = sb;
    op->create_cb = ccb;
    op->delete_cb = dcb;
    if (spec != NULL)
        op->spec = *spec;
    op->queued_at = uv_hrtime();
    /* Nothing waits ahead of it (or the waiting ones could go first). */
    if ((q->limit == 0 || q->in_flight < q->limit) && q->waiting == 0)
        return dispatch(op);
    append(q, op);
    gauges(q);
    return 0;
}

int caa_startq_create(caa_daemon_t *d, caa_sandbox_t *sb, const pp_instance_spec_t *spec,
                      pp_provider_create_cb cb)
{
    return submit(d, sb, spec, cb, NULL);
}

int caa_startq_delete(caa_daemon_t *d, caa_sandbox_t *sb, pp_provider_delete_cb cb)
{
    return submit(d, sb, NULL, NULL, cb);
}

int caa_startq_cancel(caa_daemon_t *d, caa_sandbox_t *sb)
{
    caa_startq_t *q = &d->startq;
    caa_startq_op_t *op = sb->startq_op;
    if (op == NULL)
        return 0;
    unlink_op(q, op);
    free(op);
    gauges(q);
    return 1;
}
