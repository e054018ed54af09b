/* agent-protocol-forwarder: serves the kata agent API on TCP to CAA and
 * forwards every call to the kata agent over one multiplexed connection.
 *
 * Calls pass through as received (the request frame is moved, not
 * re-encoded): payload bytes, timeout_nano and metadata reach the agent
 * unchanged, and the agent's response frame comes back unchanged. The two
 * methods the interceptor rewrites (interceptor.h) are re-wrapped with the
 * rewritten payload, keeping service, method, timeout_nano and metadata.
 *
 * Failures answered locally: INVALID_ARGUMENT for a CreateContainer or
 * CreateSandbox payload that does not parse, RESOURCE_EXHAUSTED when a
 * rewrite would pass 4 MiB or too many calls wait for the agent, UNAVAILABLE
 * when the agent cannot be reached or its connection drops mid-call (the
 * next call redials), DEADLINE_EXCEEDED from the caller's deadline.
 *
 * Loop thread only; callbacks follow the libuv contract. */
#ifndef APF_FORWARDER_H
#define APF_FORWARDER_H

#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "util/error.h"

/* How long a graceful close waits for calls in flight. */
#define APF_SHUTDOWN_GRACE_MS 10000u

/* The link to the kata agent (ttrpc/link.h, over its unix socket): calls
 * allowed to wait for a connection at once, and the backoff between dial
 * attempts. Each dial sequence, also one a call starts after the agent went
 * away, lasts the configured wait (`-kata-agent-timeout`). */
#define APF_AGENT_MAX_QUEUED     1024
#define APF_AGENT_BACKOFF_MIN_MS 10
#define APF_AGENT_BACKOFF_MAX_MS 1000

typedef struct apf_forwarder_s apf_forwarder_t;

/* Fires once: 0 when serving; otherwise the agent did not come up in time
 * or the listener failed, with `err` saying which (valid during the
 * callback). */
typedef void (*apf_forwarder_ready_cb)(apf_forwarder_t *f, int status, const pp_error_t *err,
                                       void *data);
typedef void (*apf_forwarder_close_cb)(apf_forwarder_t *f, void *data);

/* Copies what it needs from `cfg`. -EPERM without TLS material unless
 * cfg->disable_tls: the agent API is served in plaintext only when that
 * was asked for. */
int apf_forwarder_new(uv_loop_t *loop, const apf_config_t *cfg, apf_forwarder_t **out);

/* Waits for the kata agent (up to cfg->agent_wait_ms), then listens. */
int apf_forwarder_start(apf_forwarder_t *f, apf_forwarder_ready_cb cb, void *data);

/* Stops accepting, lets calls in flight finish for up to `grace_ms` (then
 * they are answered CANCELLED), closes the agent connection, calls `cb` and
 * frees `f`. Calling it again while closing with `grace_ms` 0 cuts the wait
 * short. */
void apf_forwarder_close(apf_forwarder_t *f, uint64_t grace_ms, apf_forwarder_close_cb cb,
                         void *data);

#endif
