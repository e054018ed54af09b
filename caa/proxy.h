/* Agent proxy: serves the kata agent API to the shim on a pod's unix socket
 * and forwards every call, frame for frame, over one reconnecting ttrpc link
 * (ttrpc/link.h) to the agent-protocol-forwarder in the pod VM: mutual TLS
 * over TCP, or plain TCP without a TLS context.
 *
 * Request and response frames pass unchanged (only the stream id differs),
 * so payloads, `timeout_nano` and metadata reach the agent as the shim sent
 * them. When the forwarder connection drops, calls in flight fail with
 * UNAVAILABLE and the next call dials again (one attempt). Loop thread
 * only; callbacks as the link's (the async contract of
 * docs/design/errors.md). */
#ifndef CAA_PROXY_H
#define CAA_PROXY_H

#include <uv.h>

#include "metrics/metrics.h"
#include "tlsmod.h"
#include "ttrpc/ttrpc.h"
#include "util/error.h"

typedef struct caa_proxy_s caa_proxy_t;

typedef void (*caa_proxy_ready_cb)(caa_proxy_t *p, int status, const pp_error_t *err, void *data);
typedef void (*caa_proxy_close_cb)(caa_proxy_t *p, void *data);

/* `tls` (borrowed, ready; NULL for plaintext) secures the forwarder link,
 * whose certificate must name `server_name`. A forwarder silent for
 * `silence_ms` (FORWARDER_SILENCE_TIMEOUT; the kernel watches) is taken as
 * gone: the calls in flight to it fail UNAVAILABLE. */
int caa_proxy_new(uv_loop_t *loop, const char *socket_path, const struct sockaddr *forwarder,
                  const caa_tls_t *tls, const char *server_name, uint64_t silence_ms,
                  caa_proxy_t **out);
/* Dials the forwarder (retrying with backoff until `deadline_ms`, loop
 * time) and checks that the agent answers grpc.Health/Check; then listens
 * on the socket and calls `cb` with 0. On failure `cb` gets a negative
 * errno (-ETIMEDOUT when the deadline passed) and `err` says why. Cancelled
 * by caa_proxy_close() (`cb` gets -ECANCELED from inside it). */
int caa_proxy_start(caa_proxy_t *p, uint64_t deadline_ms, caa_proxy_ready_cb cb, void *data);
/* After a restart: listens on the socket at once and dials the forwarder
 * when the first call comes (calls wait for the dial). */
int caa_proxy_adopt(caa_proxy_t *p, pp_error_t *err);
/* The limits of the agent socket (ttrpc.h; `o->budget` borrowed, `o->name`
 * copied), for the server made by caa_proxy_start() or caa_proxy_adopt(). */
void caa_proxy_set_limits(caa_proxy_t *p, const pp_ttrpc_server_opts_t *o);
/* Counts each call the shim makes in `calls`, and each that fails on the
 * way to or from the pod VM in `failures` (metrics.h; either may be NULL). */
void caa_proxy_count(caa_proxy_t *p, pp_series_t *calls, pp_series_t *failures);
/* When caa_proxy_start() first reached the forwarder (loop time: a
 * connection made, before the health check), or 0. */
uint64_t caa_proxy_connected_ms(const caa_proxy_t *p);
/* Fails queued calls and calls in flight with CANCELLED, stops listening,
 * removes the socket, then calls `cb` (p is NULL then) and frees. */
void caa_proxy_close(caa_proxy_t *p, caa_proxy_close_cb cb, void *data);

#endif
