/* The sandbox state machine: CreateVM, StartVM, StopVM (design.md §3).
 *
 * created (CreateVM) -> starting (StartVM: the instance, the tunnel, the
 * forwarder dial) -> running -> stopping -> gone, or failed. Every step
 * that makes something outside the process is recorded first (state.h), so
 * that a restart finds it. Provider calls, tunnels and dials are
 * asynchronous: a slow sandbox never delays another. Loop thread only. */
#ifndef CAA_LIFECYCLE_H
#define CAA_LIFECYCLE_H

#include <stddef.h>

#include "context.h"
#include "sandbox.h"
#include "ttrpc/ttrpc.h"
#include "util/error.h"

/* CreateVM: validates the request, makes the pod directory and the user
 * data; creates no VM. */
int caa_sandbox_create(caa_daemon_t *d, const char *id, const char *netns_path,
                       const char *const *keys, const char *const *values, size_t nannotations,
                       caa_sandbox_t **out, pp_error_t *err);
/* StartVM and StopVM: take the call and answer it when done. */
void caa_sandbox_start(caa_daemon_t *d, pp_ttrpc_call_t *call, const char *id);
void caa_sandbox_stop(caa_daemon_t *d, pp_ttrpc_call_t *call, const char *id);
/* After a restart: serves a running sandbox's agent socket again, and
 * finishes an interrupted start (the instance goes) or stop. */
void caa_sandbox_resume(caa_sandbox_t *sb);
/* Closes a sandbox's agent proxy, leaving its instance alone. */
void caa_sandbox_release(caa_sandbox_t *sb);
/* Releases every sandbox's proxy without touching instances (shutdown). */
void caa_sandboxes_release(caa_daemon_t *d);
/* Shutdown's grace is over: answers every StartVM and StopVM still waiting
 * UNAVAILABLE with `why`, and touches nothing else. How many. */
size_t caa_sandboxes_abandon(caa_daemon_t *d, const char *why);

#endif
