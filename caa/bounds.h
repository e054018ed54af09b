/* What the daemon lets mistakes and hostile clients take (docs/design/
 * limits.md): descriptors, pods, sockets' connections and bytes, and the
 * time a created sandbox may wait for its StartVM. Loop thread only. */
#ifndef CAA_BOUNDS_H
#define CAA_BOUNDS_H

#include <stddef.h>

#include "context.h"
#include "sandbox.h"
#include "ttrpc/ttrpc.h"
#include "util/error.h"

/* Descriptors a running pod holds in the daemon (its agent socket's
 * listener, the link to its forwarder, the shim's connection to it, and one
 * to spare for a second shim connection), and those kept free for
 * everything else (the hypervisor socket's calls, files, the provider). */
#define CAA_FDS_PER_POD 4
#define CAA_FDS_RESERVE 64
/* Connections to one pod's agent socket (the shim keeps one or two). */
#define CAA_AGENT_CONNS 32
/* The hypervisor socket: the shim opens a connection per call, so one
 * left idle is a leak; at the limit the idlest makes room, and any idle
 * this long is closed. */
#define CAA_HV_IDLE_TIMEOUT_MS 60000u

/* At start-up: raises the soft descriptor limit to the hard one and logs
 * the ceiling and what a pod costs; sets up the budget the sockets share
 * and the expiry of sandboxes never started. */
int caa_bounds_start(caa_daemon_t *d, pp_error_t *err);
/* Closes the expiry timer (shutdown). */
void caa_bounds_stop(caa_daemon_t *d);
/* Options for the hypervisor socket (`hypervisor` 1) or a pod's agent
 * socket (0, `id` its sandbox). */
void caa_bounds_server_opts(caa_daemon_t *d, int hypervisor, const char *id,
                            pp_ttrpc_server_opts_t *o);
/* Whether one more pod fits: PEERPODS_LIMIT_PER_NODE and the descriptor
 * ceiling. 0, or -ENOSPC/-EMFILE with `err` (RESOURCE_EXHAUSTED) saying
 * which and how many. Running pods are not affected either way. */
int caa_bounds_admit(caa_daemon_t *d, pp_error_t *err);
/* A sandbox in the created state (new, or recovered): it expires
 * UNSTARTED_SANDBOX_TTL after sb->created_at unless started before. */
void caa_bounds_watch_created(caa_daemon_t *d, caa_sandbox_t *sb);

#endif
