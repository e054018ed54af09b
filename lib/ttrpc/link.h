/* A reconnecting ttrpc client: one multiplexed connection to one peer,
 * dialled with backoff, with calls queued while it is down.
 *
 * The adaptor's agent proxy (to the forwarder in the pod VM, over TCP with
 * mutual TLS) and the forwarder (to the kata agent, over a unix socket) both
 * hold one. How a connection is made is the dialer's business
 * (pp_ttrpc_dialer_t): unix and TCP are built in here, TLS is in lib/tls
 * (pp_tls_link_new(), over pp_tls_dial()); everything else is the link's.
 *
 * Dial sequences. A sequence makes attempts until one succeeds or its
 * window closes: the first attempt runs from the loop (never from inside the
 * call that started the sequence), each failure waits a backoff that starts
 * at `backoff_min_ms` and doubles up to `backoff_max_ms`, never past the end
 * of the window. An attempt in progress when the window closes runs to its
 * end (the dialer bounds it: TLS by its handshake timeout, TCP by the
 * kernel's connect timeout). A sequence starts with pp_ttrpc_link_wait() (window up to a
 * deadline, optionally with a probe call that must answer OK before the
 * connection counts), or when a call finds the link down (window
 * `redial_window_ms`; 0 = exactly one attempt, however long it takes).
 *
 * Calls (pp_ttrpc_link_call_frame(), pp_ttrpc_link_forward()). While the
 * connection is up a call goes out at once. Otherwise it waits in a queue
 * (at most `max_queued` calls) and goes out, in order, once connected; when
 * the sequence fails every queued call fails UNAVAILABLE. Once sent, a call
 * completes with the peer's answer, or locally: UNAVAILABLE when the
 * connection drops (the next call redials), DEADLINE_EXCEEDED after its
 * `timeout_nano` (also while queued), CANCELLED on close. Payloads and the
 * request frame's fields travel unchanged; only the stream id is rewritten
 * (odd, increasing, per connection).
 *
 * Ownership: the link owns its connection, its timers, the frames handed to
 * it and the dialer's `data` once pp_ttrpc_link_new() succeeded (freed with
 * the dialer's `free`). Results are the caller's during the callback only;
 * the response frame may be stolen (pp_ttrpc_result_t).
 *
 * Threading and callbacks: loop thread only. The async contract
 * (docs/design/errors.md): a function taking a callback either fails
 * synchronously (negative errno, no callback) or calls the callback exactly
 * once, never from inside that function, except pp_ttrpc_link_close(),
 * which completes the pending wait and the queued and sent calls from inside
 * itself (they cannot be answered any more). Callbacks may make new calls or
 * close the link. */
#ifndef PP_TTRPC_LINK_H
#define PP_TTRPC_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "ttrpc/ttrpc.h"
#include "util/error.h"

#define PP_TTRPC_LINK_MAX_QUEUED     1024
#define PP_TTRPC_LINK_BACKOFF_MIN_MS 100
#define PP_TTRPC_LINK_BACKOFF_MAX_MS 2000

typedef struct pp_ttrpc_link_s pp_ttrpc_link_t;
typedef struct pp_ttrpc_link_req_s pp_ttrpc_link_req_t;

typedef struct pp_ttrpc_link_opts_s {
    /* What the link reaches, for logs and messages ("kata agent at
     * `/run/kata-containers/agent.sock`"); copied. Required. */
    const char *name;
    /* Log component; NULL = "ttrpc". Must outlive the link (a literal). */
    const char *component;
    /* 0 = PP_TTRPC_LINK_BACKOFF_MIN_MS / _MAX_MS. */
    unsigned backoff_min_ms;
    unsigned backoff_max_ms;
    /* Window of a sequence started by a call; 0 = one attempt. */
    uint64_t redial_window_ms;
    /* Calls allowed to wait for a connection at once; 0 =
     * PP_TTRPC_LINK_MAX_QUEUED. */
    size_t max_queued;
    /* Over TCP: how long the peer may be silent (no answer to keepalive
     * probes on a quiet connection, or sent data unacknowledged) before the
     * kernel ends the connection, and the calls on it fail UNAVAILABLE, as
     * when a VM freezes or its network goes. The kernel keeps the watch:
     * nothing of ours wakes up for it. 0 = the kernel's defaults (no
     * keepalive; unacknowledged data retried for some 15 minutes). */
    uint64_t silence_timeout_ms;
} pp_ttrpc_link_opts_t;

/* ---- dialers ------------------------------------------------------------ */

/* How the link gets a connected stream. The link runs one attempt at a
 * time. `start` begins one and reports it with pp_ttrpc_link_dialed()
 * exactly once (from a loop callback, or from inside `start`), or fails
 * synchronously with a negative errno and reports nothing. `cancel` ends the
 * attempt in progress; pp_ttrpc_link_dialed() must follow (from inside
 * `cancel` or later) with UV_ECANCELED or whatever the attempt came to.
 * `free` (optional) frees `data` when the link is freed. */
typedef struct pp_ttrpc_dialer_s {
    int (*start)(pp_ttrpc_link_t *l, uv_loop_t *loop, void *data);
    void (*cancel)(pp_ttrpc_link_t *l, void *data);
    void (*free)(void *data);
} pp_ttrpc_dialer_t;

/* Reports the attempt: `status` 0 with a connected, malloc'd `stream` and
 * an optional `filter` (both owned by the link from now on), or a negative
 * errno with `why` (may be NULL; copied) saying what failed. */
void pp_ttrpc_link_dialed(pp_ttrpc_link_t *l, int status, uv_stream_t *stream,
                          pp_stream_filter_t *filter, const char *why);

/* ---- the link ----------------------------------------------------------- */

/* Fires once: 0 when connected (and the probe answered OK); -ETIMEDOUT when
 * the window closed, with `err` saying how many attempts failed and how the
 * last one did ("no connection after 3 attempts: connection refused"; the
 * owner adds what it dialled); -ECANCELED on close. `err` is valid during
 * the callback. */
typedef void (*pp_ttrpc_link_wait_cb)(pp_ttrpc_link_t *l, int status, const pp_error_t *err,
                                      void *data);
typedef void (*pp_ttrpc_link_close_cb)(pp_ttrpc_link_t *l, void *data);

/* Makes a link that dials with `dialer` and `dialer_data`. On failure
 * `dialer_data` stays the caller's. Nothing is dialled until a wait or a
 * call. */
int pp_ttrpc_link_new(uv_loop_t *loop, const pp_ttrpc_link_opts_t *o,
                      const pp_ttrpc_dialer_t *dialer, void *dialer_data, pp_ttrpc_link_t **out);
/* A link to a unix socket (`path` copied). */
int pp_ttrpc_link_new_unix(uv_loop_t *loop, const pp_ttrpc_link_opts_t *o, const char *path,
                           pp_ttrpc_link_t **out);
/* A link over plain TCP to `addr` (IPv4 or IPv6; copied). */
int pp_ttrpc_link_new_tcp(uv_loop_t *loop, const pp_ttrpc_link_opts_t *o,
                          const struct sockaddr *addr, pp_ttrpc_link_t **out);

/* A probe: a call made on every new connection of a wait's sequence before
 * it counts as up; any answer but OK (or none within `timeout_nano`) counts
 * as a failed attempt. The strings and the payload are copied. */
typedef struct pp_ttrpc_link_probe_s {
    const char *service;
    const char *method;
    const void *payload;
    size_t payload_len;
    int64_t timeout_nano;
} pp_ttrpc_link_probe_t;

/* Starts a dial sequence whose window ends at loop time `deadline_ms`,
 * with `probe` (may be NULL). -EALREADY when the link is connected or
 * dialling, or a wait is pending; -ESHUTDOWN when closing. */
int pp_ttrpc_link_wait(pp_ttrpc_link_t *l, uint64_t deadline_ms, const pp_ttrpc_link_probe_t *probe,
                       pp_ttrpc_link_wait_cb cb, void *data);

int pp_ttrpc_link_connected(const pp_ttrpc_link_t *l);
/* Loop time at which an attempt first gave a connection (before any probe
 * ran on it), or 0 while none has. */
uint64_t pp_ttrpc_link_first_connect_ms(const pp_ttrpc_link_t *l);
/* Calls queued and calls sent and not answered yet. */
size_t pp_ttrpc_link_queued(const pp_ttrpc_link_t *l);
size_t pp_ttrpc_link_in_flight(const pp_ttrpc_link_t *l);

/* Sends a whole request frame (header + ttrpc.Request; ownership passes,
 * also on failure) and calls `cb` once with the answer or a local failure
 * (see the top). `timeout_nano` (0 = none) is enforced locally; the one in
 * the frame travels as it is. `*req` (may be NULL) names the call for
 * pp_ttrpc_link_cancel() until `cb` fires. Fails synchronously with
 * -ENOBUFS when the queue is full, -EMSGSIZE for a frame over the maximum,
 * -ESHUTDOWN when closing, -ENOMEM. */
int pp_ttrpc_link_call_frame(pp_ttrpc_link_t *l, uint8_t *frame, size_t len, int64_t timeout_nano,
                             pp_ttrpc_result_cb cb, void *data, pp_ttrpc_link_req_t **req);

/* Gives up on a call still queued: its callback fires soon (from the loop,
 * not from inside this call) with `code`. A call already sent cannot be
 * recalled: -EALREADY, and its callback fires with the peer's answer or at
 * its deadline. */
int pp_ttrpc_link_cancel(pp_ttrpc_link_req_t *req, int code);

/* Forwards a call a ttrpc server received: sends `frame` (the call's own
 * request frame, from pp_ttrpc_call_steal_frame(), or a rewritten one;
 * owned from now on) with the call's `timeout_nano`, and answers the call
 * with the response frame exactly as it came back, or with the local
 * failure's status and message. A call whose caller goes away while it is
 * queued is dropped from the queue. The call is always answered, exactly
 * once; a failure to send is answered at once (RESOURCE_EXHAUSTED for a
 * full queue, an oversize frame or no memory, else UNAVAILABLE) and logged.
 */
void pp_ttrpc_link_forward(pp_ttrpc_link_t *l, pp_ttrpc_call_t *call, uint8_t *frame, size_t len);
/* Tells `cb` (may be NULL) of every forwarded call the link answers itself,
 * with the status it answers: whatever did not come back from the peer as
 * a response frame (for counting; `cb` must not close the link). */
void pp_ttrpc_link_on_forward_failure(pp_ttrpc_link_t *l,
                                      void (*cb)(pp_ttrpc_link_t *l, int code, void *data),
                                      void *data);

/* Completes the pending wait with -ECANCELED and every queued call with
 * CANCELLED, from inside this call; cancels the attempt in progress; closes
 * the connection (calls sent complete CANCELLED) and the timers; then calls
 * `cb` (may be NULL; the link is still valid during it, and only then) and
 * frees the link. */
void pp_ttrpc_link_close(pp_ttrpc_link_t *l, pp_ttrpc_link_close_cb cb, void *data);

#endif
