/* The daemon's metrics (metrics.h). */
#include "metrics.h"

#include <errno.h>

#include "context.h"
#include "sandbox.h"
#include "state.h"
#include "util/cleanup.h"

static const char *const stage_names[CAA_STAGE_N] = {
    [CAA_STAGE_CREATE_INSTANCE] = "create_instance",
    [CAA_STAGE_TUNNEL] = "tunnel",
    [CAA_STAGE_VM_UP] = "vm_up",
    [CAA_STAGE_AGENT_READY] = "agent_ready",
    [CAA_STAGE_TOTAL] = "total",
};

static const enum caa_sandbox_state states[] = {CAA_SB_CREATED, CAA_SB_STARTING, CAA_SB_RUNNING,
                                                CAA_SB_STOPPING, CAA_SB_FAILED};

/* Sandboxes by state, counted when scraped: one walk of the list. */
static void sandboxes_cb(pp_metrics_t *reg, void *data)
{
    caa_daemon_t *d = data;
    (void)reg;
    size_t count[PP_ARRAY_SIZE(states)] = {0};
    for (const caa_sandbox_t *sb = d->sandboxes; sb != NULL; sb = sb->next)
        for (size_t i = 0; i < PP_ARRAY_SIZE(states); i++)
            count[i] += sb->state == states[i];
    for (size_t i = 0; i < PP_ARRAY_SIZE(states); i++)
        pp_series_set(pp_metric_at(d->metrics.sandboxes, caa_state_name(states[i])),
                      (double)count[i]);
}

/* What the daemon refused or set aside (d->counters), and what its
 * sockets' peers hold (d->budget), read when scraped. */
static void guard_cb(pp_metrics_t *reg, void *data)
{
    caa_daemon_t *d = data;
    caa_metrics_t *m = &d->metrics;
    (void)reg;
    const struct {
        const char *action;
        uint64_t value;
    } actions[] = {
        {"record_set_aside", d->counters.records_set_aside},
        {"unstarted_expired", d->counters.unstarted_expired},
        {"parked_call_dropped", d->counters.parked_dropped},
        {"netns_refused", d->counters.netns_refused},
        {"pod_refused_descriptors", d->counters.fd_refused},
        {"call_abandoned_at_shutdown", d->counters.shutdown_abandoned},
    };
    for (size_t i = 0; i < PP_ARRAY_SIZE(actions); i++)
        pp_series_set(pp_metric_at(m->guard, actions[i].action), (double)actions[i].value);
    const pp_ttrpc_limit_stats_t *st = &d->budget.stats;
    const struct {
        const char *why;
        uint64_t value;
    } closed[] = {
        {"refused", st->refused},
        {"evicted", st->evicted},
        {"idle", st->idle_closed},
        {"frame_timeout", st->frame_timeouts},
    };
    for (size_t i = 0; i < PP_ARRAY_SIZE(closed); i++)
        pp_series_set(pp_metric_at(m->closed, closed[i].why), (double)closed[i].value);
    pp_series_set(m->conns, (double)d->budget.conns);
    pp_series_set(m->held, (double)d->budget.used_bytes);
    pp_series_set(m->queued, (double)d->budget.queued_bytes);
}

int caa_metrics_init(caa_metrics_t *m, caa_daemon_t *d)
{
    pp_metrics_t *reg = pp_metrics_new();
    if (reg == NULL)
        return -ENOMEM;
    m->registry = reg;
    m->sandboxes =
        pp_metrics_gauge(reg, "caa_sandboxes", "Sandboxes of this node by state.", "state");
    pp_metric_t *startvm = pp_metrics_histogram(
        reg, "caa_startvm_duration_seconds", "Time StartVM spent in each stage.", "stage",
        pp_metrics_seconds_buckets, pp_metrics_seconds_nbuckets);
    for (size_t i = 0; i < CAA_STAGE_N; i++)
        m->stage[i] = pp_metric_at(startvm, stage_names[i]);
    m->recovery = pp_metrics_counter(reg, "caa_recovery_sandboxes_total",
                                     "What recovery at start-up did with each sandbox: running "
                                     "ones adopted, interrupted ones resumed, running ones whose "
                                     "instance was gone, orphan instances reaped.",
                                     "outcome");
    m->proxy_calls = pp_metric_series(pp_metrics_counter(
        reg, "caa_agent_proxy_calls_total", "Agent API calls the pods' proxies took.", NULL));
    m->proxy_failures = pp_metric_series(
        pp_metrics_counter(reg, "caa_agent_proxy_failures_total",
                           "Agent API calls that failed on the way to or from the pod VM.", NULL));
    m->guard = pp_metrics_counter(reg, "caa_guard_actions_total",
                                  "What the daemon refused or set aside to protect the node: "
                                  "unreadable records set aside, sandboxes never started "
                                  "expired, calls parked during recovery whose caller went, pod "
                                  "namespaces that were the daemon's or the host's, pods refused "
                                  "at the descriptor ceiling, calls abandoned at shutdown.",
                                  "action");
    m->closed = pp_metrics_counter(reg, "caa_socket_connections_closed_total",
                                   "Connections to the hypervisor and agent sockets closed by "
                                   "their limits: refused at a limit, evicted for a new one, idle, "
                                   "a frame not whole in time.",
                                   "why");
    m->conns = pp_metric_series(
        pp_metrics_gauge(reg, "caa_socket_connections",
                         "Connections open to the hypervisor and agent sockets.", NULL));
    m->held = pp_metric_series(pp_metrics_gauge(
        reg, "caa_socket_bytes_held",
        "Bytes the sockets' peers hold in the daemon: frames being read, requests in flight.",
        NULL));
    m->queued = pp_metric_series(
        pp_metrics_gauge(reg, "caa_socket_answers_queued_bytes",
                         "Bytes of answers waiting for their peers to read them.", NULL));
    int r = 0;
    if (m->sandboxes == NULL || m->stage[CAA_STAGE_N - 1] == NULL || m->recovery == NULL ||
        m->proxy_calls == NULL || m->proxy_failures == NULL || m->guard == NULL ||
        m->closed == NULL || m->conns == NULL || m->held == NULL || m->queued == NULL ||
        (r = pp_metrics_add_collector(reg, sandboxes_cb, d)) < 0 ||
        (r = pp_metrics_add_collector(reg, guard_cb, d)) < 0 ||
        (r = pp_metrics_add_collector(reg, pp_metrics_process_cb, NULL)) < 0) {
        caa_metrics_fini(m);
        return r < 0 ? r : -ENOMEM;
    }
    /* Every series shows from the first scrape, at zero. */
    sandboxes_cb(reg, d);
    guard_cb(reg, d);
    static const char *const outcomes[] = {"adopted", "resumed", "lost", "reaped"};
    for (size_t i = 0; i < PP_ARRAY_SIZE(outcomes); i++)
        pp_metric_at(m->recovery, outcomes[i]);
    return 0;
}

void caa_metrics_fini(caa_metrics_t *m)
{
    pp_metrics_free(m->registry);
    *m = (caa_metrics_t){0};
}

void caa_metrics_start_begin(caa_sandbox_t *sb)
{
    sb->start_ms = sb->stage_ms = uv_now(sb->d->loop);
}

void caa_metrics_stage_end(caa_sandbox_t *sb, caa_stage_t stage, uint64_t now_ms)
{
    caa_metrics_t *m = &sb->d->metrics;
    uint64_t since = stage == CAA_STAGE_TOTAL ? sb->start_ms : sb->stage_ms;
    if (sb->start_ms == 0 || now_ms < since)
        return;
    pp_series_observe(m->stage[stage], (double)(now_ms - since) / 1000.0);
    sb->stage_ms = now_ms;
}

void caa_metrics_recovered(caa_metrics_t *m, size_t adopted, size_t resumed, size_t lost,
                           size_t reaped)
{
    pp_series_add(pp_metric_at(m->recovery, "adopted"), (double)adopted);
    pp_series_add(pp_metric_at(m->recovery, "resumed"), (double)resumed);
    pp_series_add(pp_metric_at(m->recovery, "lost"), (double)lost);
    pp_series_add(pp_metric_at(m->recovery, "reaped"), (double)reaped);
}
