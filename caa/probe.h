/* The daemon's HTTP endpoints, on PROBE_ADDRESS:PROBE_PORT (127.0.0.1:8000
 * by default, as upstream's probe; port 0 serves none):
 *
 *   /startup  200 once the hypervisor socket is served and the sandboxes
 *             found at start-up are recovered, 500 before (upstream's
 *             startup probe and status codes; upstream also waits for the
 *             peer pods it finds through the Kubernetes API to be Ready,
 *             which recovery stands for here);
 *   /healthz  200 while the loop turns (liveness);
 *   /metrics  the registry, in Prometheus' text format.
 *
 * GET and HEAD only; no request body; nothing secret in any answer. The
 * server is lib/httpd on the daemon's loop, with its bounds. */
#ifndef CAA_PROBE_H
#define CAA_PROBE_H

#include "util/error.h"

typedef struct caa_daemon_s caa_daemon_t;

/* Starts serving; fails (with `err` naming PROBE_PORT) when the address
 * cannot be bound, which the daemon logs and lives with. */
int caa_probe_start(caa_daemon_t *d, pp_error_t *err);
/* Stops serving; the server's handles close on the loop. */
void caa_probe_stop(caa_daemon_t *d);

#endif
