/* The daemon's metrics (docs/install.md, "Troubleshooting"): the registry
 * the context owns, passed down to the provider's HTTP client and to TLS,
 * and the few series the daemon itself keeps:
 *
 *   caa_sandboxes{state}                       read at each scrape
 *   caa_startvm_duration_seconds{stage}        create_instance, tunnel,
 *                                              vm_up, agent_ready, total
 *   caa_recovery_sandboxes_total{outcome}      adopted, resumed, lost,
 *                                              reaped (orphan instances)
 *   caa_agent_proxy_calls_total, caa_agent_proxy_failures_total
 *   caa_guard_actions_total{action}            d->counters (bounds.h):
 *                                              what the daemon refused or
 *                                              set aside
 *   caa_socket_connections_closed_total{why}   the sockets' budget: refused,
 *                                              evicted, idle, frame_timeout
 *   caa_socket_connections, caa_socket_bytes_held, caa_socket_answers_queued_bytes
 *   process_*                                  resident memory, descriptors
 *
 * Loop thread only. */
#ifndef CAA_METRICS_H
#define CAA_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "metrics/metrics.h"

typedef struct caa_daemon_s caa_daemon_t;
typedef struct caa_sandbox_s caa_sandbox_t;

typedef enum caa_stage {
    CAA_STAGE_CREATE_INSTANCE, /* the provider's create, until it has an address */
    CAA_STAGE_TUNNEL,          /* the pod's VXLAN, node side */
    CAA_STAGE_VM_UP,           /* until the forwarder accepts a connection */
    CAA_STAGE_AGENT_READY,     /* until the agent answers through it */
    CAA_STAGE_TOTAL,           /* StartVM, start to running */
    CAA_STAGE_N,
} caa_stage_t;

typedef struct caa_metrics_s {
    pp_metrics_t *registry;
    pp_metric_t *sandboxes;
    pp_series_t *stage[CAA_STAGE_N];
    pp_metric_t *recovery;
    pp_series_t *proxy_calls, *proxy_failures;
    pp_metric_t *guard, *closed;
    pp_series_t *conns, *held, *queued;
} caa_metrics_t;

/* Makes the registry and the daemon's series; the sandboxes gauge reads
 * d->sandboxes at each scrape. -ENOMEM. */
int caa_metrics_init(caa_metrics_t *m, caa_daemon_t *d);
void caa_metrics_fini(caa_metrics_t *m);

/* StartVM's clock, kept in the sandbox: begin at StartVM, then each stage
 * ends at `now_ms` (loop time) and the next begins. */
void caa_metrics_start_begin(caa_sandbox_t *sb);
void caa_metrics_stage_end(caa_sandbox_t *sb, caa_stage_t stage, uint64_t now_ms);
/* What recovery did at start-up. */
void caa_metrics_recovered(caa_metrics_t *m, size_t adopted, size_t resumed, size_t lost,
                           size_t reaped);

#endif
