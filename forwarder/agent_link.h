/* The forwarder's one connection to the kata agent: a multiplexed ttrpc
 * client on the agent's unix socket, dialled with backoff and redialled on
 * demand.
 *
 * - apf_agent_wait() dials until the socket accepts, for at most the wait
 *   window (the agent starts after the forwarder in the pod VM).
 * - apf_agent_forward() sends a request frame. When the connection is down
 *   the request is queued and a redial starts, with the same backoff and
 *   window; queued requests go out once connected, or fail UNAVAILABLE when
 *   the window closes.
 * - When the connection drops, requests in flight fail UNAVAILABLE (the
 *   ttrpc client does that); the next request redials.
 *
 * Threading and callbacks: loop thread only. Every function taking a
 * callback either fails synchronously (negative errno, no callback) or calls
 * back exactly once, never from inside the call that took it. */
#ifndef APF_AGENT_LINK_H
#define APF_AGENT_LINK_H

#include <stdint.h>
#include <uv.h>

#include "ttrpc/ttrpc.h"

/* Requests allowed to wait for a connection at once. */
#define APF_AGENT_MAX_QUEUED     1024
#define APF_AGENT_BACKOFF_MIN_MS 10
#define APF_AGENT_BACKOFF_MAX_MS 1000

typedef struct apf_agent_s apf_agent_t;
typedef struct apf_agent_req_s apf_agent_req_t;

/* `status`: 0 once connected; -ETIMEDOUT when the window closed (the last
 * dial error is logged); -ECANCELED on close. */
typedef void (*apf_agent_ready_cb)(apf_agent_t *a, int status, void *data);
typedef void (*apf_agent_close_cb)(apf_agent_t *a, void *data);

/* `path` is copied. `wait_ms` bounds each dial sequence. */
int apf_agent_new(uv_loop_t *loop, const char *path, uint64_t wait_ms, apf_agent_t **out);

/* Dials until connected. -EALREADY when connected or dialling. */
int apf_agent_wait(apf_agent_t *a, apf_agent_ready_cb cb, void *data);

int apf_agent_connected(const apf_agent_t *a);

/* Sends a whole request frame (ownership passes, also on failure) and calls
 * `cb` once with the agent's answer or a local failure: UNAVAILABLE when the
 * agent cannot be reached or the connection drops, DEADLINE_EXCEEDED after
 * `timeout_nano` (0 = none; the deadline in the frame travels unchanged),
 * CANCELLED on close or apf_agent_cancel(). The result's frame may be
 * stolen. `*req` (may be NULL) identifies the request until `cb` fires.
 * Fails synchronously with -ENOBUFS when too many requests are queued,
 * -ESHUTDOWN when closing, -ENOMEM. */
int apf_agent_forward(apf_agent_t *a, uint8_t *frame, size_t len, int64_t timeout_nano,
                      pp_ttrpc_result_cb cb, void *data, apf_agent_req_t **req);

/* Gives up on a request still waiting for a connection: its callback fires
 * soon (not from inside this call) with `code`. A request already sent
 * cannot be recalled: -EALREADY, and its callback fires when the agent
 * answers or the timeout passes. Safe to call from any loop callback. */
int apf_agent_cancel(apf_agent_req_t *req, int code);

/* Fails queued requests and those in flight with CANCELLED (their callbacks,
 * and a pending wait's with -ECANCELED, run from inside this call), closes
 * the connection and the timers, then calls `cb` and frees `a`. */
void apf_agent_close(apf_agent_t *a, apf_agent_close_cb cb, void *data);

#endif
