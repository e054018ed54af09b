/* TLS over libuv streams (OpenSSL with in-memory I/O), under ttrpc.
 *
 * A connection first runs its handshake on the raw stream; once it is done
 * the caller gets a pp_stream_filter_t and hands the stream and the filter to
 * ttrpc (pp_ttrpc_server_serve_filtered(), pp_ttrpc_client_open_filtered()).
 * The filter encrypts what ttrpc writes and decrypts what it reads, and
 * answers post-handshake messages (TLS 1.3 KeyUpdate) by itself. Small
 * writes are gathered until the filter's flush (which the ttrpc connection
 * calls once per loop iteration in which it wrote) and sealed together and
 * sent in one write; large ones go out at once, after what was gathered.
 * Errors on an established connection are logged
 * here (ttrpc only sees an errno: -EACCES for a refused certificate,
 * -EPROTO for other TLS failures, UV_EOF for close_notify).
 *
 * During the handshake the stream is read one TLS record at a time, so not a
 * byte past the handshake is taken from the socket: whatever the peer sends
 * right after it stays in the kernel and wakes the ttrpc connection up.
 *
 * Threading: everything runs on the thread of the loop the stream belongs
 * to. Callbacks follow libuv's contract: a function that takes a callback
 * either fails synchronously (negative errno, no callback) or calls back
 * exactly once, also when cancelled.
 *
 * Secrets: keys and certificates are never logged, and error messages never
 * quote PEM input. */
#ifndef PP_TLS_TLS_H
#define PP_TLS_TLS_H

#include <stddef.h>
#include <uv.h>

#include "metrics/metrics.h"
#include "ttrpc/link.h"
#include "ttrpc/ttrpc.h"
#include "util/error.h"

#define PP_TLS_HANDSHAKE_TIMEOUT_MS 10000u

typedef enum pp_tls_role { PP_TLS_SERVER = 0, PP_TLS_CLIENT = 1 } pp_tls_role_t;

typedef struct pp_tls_config_s {
    /* Our certificate, optionally followed by intermediates, and its key
     * (PEM). Required for servers; for clients, what they present when
     * the server asks. */
    const char *cert_pem;
    const char *key_pem;
    /* The certificates (PEM, one or more) the peer's chain must lead to.
     * Required unless `skip_verify` (client) or `no_client_auth` (server). */
    const char *ca_pem;
    /* "1.2" (the default when NULL or empty) or "1.3", also spelt
     * "TLS 1.3", "TLS13", "TLSv1.3", "VersionTLS13". */
    const char *min_version;
    /* Highest version offered; NULL = the highest supported. */
    const char *max_version;
    /* Comma-separated cipher suites, in Go's names
     * (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256) or
     * OpenSSL's. TLS 1.2 and TLS 1.3 suites are configured separately; a
     * family with no name in the list keeps OpenSSL's defaults. */
    const char *cipher_suites;
    /* Server: do not ask for a client certificate. Mutual authentication is
     * the default. */
    int no_client_auth;
    /* Client: accept any server certificate and name. Insecure: logged as
     * a warning when the context is made. Refused for servers. */
    int skip_verify;
    /* 0 = PP_TLS_HANDSHAKE_TIMEOUT_MS. */
    unsigned handshake_timeout_ms;
    /* Where failed handshakes are counted (NULL: nowhere), as
     * peerpod_tls_handshake_failures_total{role,reason} (role: ours,
     * client or server; reason: certificate, timeout, closed, protocol).
     * It must outlive the context; a context with one is used by one
     * loop's thread only. */
    pp_metrics_t *metrics;
} pp_tls_config_t;

typedef struct pp_tls_ctx_s pp_tls_ctx_t;

/* Builds a context from `cfg` (copied: the strings may go away afterwards).
 * Errors name the setting at fault, e.g. "unknown cipher suite `X`". A
 * context may be shared by loops on different threads. */
int pp_tls_ctx_new(pp_tls_role_t role, const pp_tls_config_t *cfg, pp_tls_ctx_t **out,
                   pp_error_t *err);
/* Drops the caller's reference; handshakes, filters and acceptors keep the
 * context alive as long as they need it. */
void pp_tls_ctx_free(pp_tls_ctx_t *ctx);
pp_tls_role_t pp_tls_ctx_role(const pp_tls_ctx_t *ctx);

/* Parses a version setting as described for `min_version`: 0 and the
 * OpenSSL version (TLS1_2_VERSION, TLS1_3_VERSION) in *out, or -EINVAL. */
int pp_tls_parse_version(const char *s, int *out, pp_error_t *err);
/* The OpenSSL name of a cipher suite given by its Go (IANA) or OpenSSL
 * name, and whether it is a TLS 1.3 suite; NULL when unknown. */
const char *pp_tls_cipher_openssl_name(const char *name, int *tls13);

/* ---- handshake --------------------------------------------------------- */

typedef struct pp_tls_handshake_s pp_tls_handshake_t;

/* On success `status` is 0 and `filter` is the caller's (hand it to ttrpc,
 * or destroy it); `err_msg` is NULL. On failure `status` is a negative
 * errno (UV_ETIMEDOUT, UV_EOF when the peer closed, UV_ECANCELED, -EPROTO
 * for a TLS failure, -EACCES when a certificate was refused), `filter` is
 * NULL and `err_msg` says why, e.g. "server certificate verification
 * failed: certificate has expired". The stream stays the caller's either
 * way: after a failure the caller closes it. `hs` is valid during the
 * callback only. */
typedef void (*pp_tls_handshake_cb)(pp_tls_handshake_t *hs, int status, pp_stream_filter_t *filter,
                                    const char *err_msg, void *data);

/* Starts the handshake on a connected `stream`. Until the callback the
 * handshake reads and writes the stream and uses stream->data (restored
 * before the callback). A client checks the server's certificate against
 * `server_name` (a DNS name, matched against the SAN or, without one, the
 * CN; or an IP address, matched against IP SANs) and sends it as SNI when
 * it is a DNS name; with NULL only the chain is checked. Servers pass NULL.
 * `out` (optional) receives a handle for pp_tls_handshake_cancel().
 *
 * The filter handed out keeps the context alive; once it has written
 * messages of 1 MiB or more it keeps up to two write buffers of at most
 * 2 MiB each for reuse, freed with the filter. */
int pp_tls_handshake(pp_tls_ctx_t *ctx, uv_stream_t *stream, const char *server_name,
                     pp_tls_handshake_cb cb, void *data, pp_tls_handshake_t **out);
/* Ends a handshake in progress: the callback fires from inside this call
 * with UV_ECANCELED. Only valid before the callback has fired (the handle
 * is gone afterwards). */
void pp_tls_handshake_cancel(pp_tls_handshake_t *hs);

/* During a successful handshake's callback: the protocol ("TLSv1.3"), the
 * cipher suite (OpenSSL's name), and the peer certificate's subject CN
 * (empty when the peer sent none). */
const char *pp_tls_handshake_version(const pp_tls_handshake_t *hs);
const char *pp_tls_handshake_cipher(const pp_tls_handshake_t *hs);
const char *pp_tls_handshake_peer_cn(const pp_tls_handshake_t *hs);

/* Asks for a TLS 1.3 key update on a filter made here, and with
 * `request_peer` asks the peer to update its keys too. -ENOTSUP on TLS 1.2. */
int pp_tls_filter_key_update(pp_stream_filter_t *filter, int request_peer);

/* ---- server side: TLS in front of a ttrpc server ----------------------- */

typedef struct pp_tls_acceptor_s pp_tls_acceptor_t;

/* Told about every connection after its handshake: status 0 when it is
 * served, or the failure; `peer` is "ip:port". */
typedef void (*pp_tls_accept_event_cb)(pp_tls_acceptor_t *a, int status, const char *peer,
                                       const char *err_msg, void *data);

/* Handshakes in progress at once; at the cap a new connection ends the
 * oldest handshake (docs/design/limits.md). */
#define PP_TLS_MAX_PENDING 64

typedef struct pp_tls_acceptor_stats_s {
    uint64_t failed;  /* handshakes that failed (or could not start) */
    uint64_t evicted; /* handshakes ended at the cap for a newer connection */
} pp_tls_acceptor_stats_t;

/* Installs an accept hook on `srv` so that every connection it accepts runs
 * a handshake with `ctx` first (server role), and is served through the TLS
 * filter if it succeeds, or closed if it fails (logged at most once every
 * 10 s, with the number not logged). At most PP_TLS_MAX_PENDING handshakes
 * run at once. */
int pp_tls_acceptor_new(pp_ttrpc_server_t *srv, pp_tls_ctx_t *ctx, pp_tls_acceptor_t **out,
                        pp_error_t *err);
void pp_tls_acceptor_on_event(pp_tls_acceptor_t *a, pp_tls_accept_event_cb cb, void *data);
/* Handshakes in progress. */
size_t pp_tls_acceptor_pending(const pp_tls_acceptor_t *a);
const pp_tls_acceptor_stats_t *pp_tls_acceptor_stats(const pp_tls_acceptor_t *a);
/* Cancels handshakes in progress (closing their streams) and frees the
 * acceptor; the server refuses connections from then on. Call it before
 * pp_ttrpc_server_close(). */
void pp_tls_acceptor_free(pp_tls_acceptor_t *a);

/* ---- client side: dial and handshake ------------------------------------ */

typedef struct pp_tls_dial_s pp_tls_dial_t;

/* On success `stream` (a malloc'd uv_tcp_t) and `filter` are the caller's:
 * pp_ttrpc_client_open_filtered(c, stream, filter). On failure both are
 * NULL, the connection is already closed, and `err_msg` says why. */
typedef void (*pp_tls_dial_cb)(pp_tls_dial_t *d, int status, uv_stream_t *stream,
                               pp_stream_filter_t *filter, const char *err_msg, void *data);

/* Connects to `addr` and runs the handshake (client role), checking the
 * server against `server_name` (see pp_tls_handshake()). The connection
 * attempt and the handshake each get the context's handshake timeout. */
int pp_tls_dial(uv_loop_t *loop, pp_tls_ctx_t *ctx, const struct sockaddr *addr,
                const char *server_name, pp_tls_dial_cb cb, void *data, pp_tls_dial_t **out);
/* Ends a dial in progress: the callback fires from inside this call with
 * UV_ECANCELED. Only valid before the callback has fired. */
void pp_tls_dial_cancel(pp_tls_dial_t *d);

/* The signatures of pp_tls_dial() and pp_tls_dial_cancel(), for callers
 * that reach TLS through a module's table. */
typedef int (*pp_tls_dial_fn)(uv_loop_t *loop, pp_tls_ctx_t *ctx, const struct sockaddr *addr,
                              const char *server_name, pp_tls_dial_cb cb, void *data,
                              pp_tls_dial_t **out);
typedef void (*pp_tls_dial_cancel_fn)(pp_tls_dial_t *d);

/* ---- a reconnecting link over TLS ---------------------------------------- */

/* A reconnecting ttrpc link (ttrpc/link.h) whose attempts are `dial` to
 * `addr` with `ctx` (a client context, borrowed: it must outlive the link),
 * checking the server against `server_name` (copied; may be NULL), and
 * whose close cancels an attempt with `cancel`. Pass pp_tls_dial and
 * pp_tls_dial_cancel, or the same functions from the TLS module's table:
 * this part of lib/tls links no OpenSSL (it is in libpeerpod). A failed
 * attempt's reason starts with "tls: ". */
int pp_tls_link_new(uv_loop_t *loop, const pp_ttrpc_link_opts_t *o, pp_tls_dial_fn dial,
                    pp_tls_dial_cancel_fn cancel, pp_tls_ctx_t *ctx, const struct sockaddr *addr,
                    const char *server_name, pp_ttrpc_link_t **out);

#endif
