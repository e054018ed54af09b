/* ttrpc: containerd's RPC protocol, on libuv streams.
 *
 * Wire (design.md §4): a frame is a 10-byte header (length u32 BE, stream id
 * u32 BE, type u8, flags u8) and a payload of at most 4 MiB. Requests carry a
 * `ttrpc.Request`, responses a `ttrpc.Response` whose `status` is always
 * present.
 *
 * Threading: everything here runs on the loop thread of the loop it was
 * created with. Callbacks follow libuv's contract: a function that takes a
 * callback either fails synchronously (negative errno, no callback) or calls
 * back exactly once, also on close.
 *
 * Copies: a received frame is read into one heap buffer, straight from the
 * socket for large payloads; messages are decoded in place (views into that
 * buffer). The raw calls below move whole encoded messages without decoding
 * the payload and without copying it again. */
#ifndef PP_TTRPC_H
#define PP_TTRPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util/error.h"
#include "util/grpc_codes.h"

#define PP_TTRPC_HEADER_SIZE 10
#define PP_TTRPC_MAX_MESSAGE (4u << 20)
/* A frame announced over the maximum is discarded and answered
 * RESOURCE_EXHAUSTED, as containerd's ttrpc does, up to this length; a
 * longer one (a 4 GiB length is a broken or hostile peer, not a message)
 * ends the connection after that answer. */
#define PP_TTRPC_DISCARD_MAX (16u << 20)
/* Metadata entries a request may carry; more are refused with
 * RESOURCE_EXHAUSTED (each costs a decoded entry on the heap). */
#define PP_TTRPC_MAX_METADATA 1024
/* A frame's payload buffer starts at this size (or the frame's, when
 * smaller) and grows as its bytes arrive, by at most PP_TTRPC_GROW_STEP at a
 * time: a length in a header reserves nothing. */
#define PP_TTRPC_FRAME_START (16u << 10)
#define PP_TTRPC_GROW_STEP   (256u << 10)

enum pp_ttrpc_type { PP_TTRPC_REQUEST = 1, PP_TTRPC_RESPONSE = 2, PP_TTRPC_DATA = 3 };

/* A view of bytes inside a received message: not NUL-terminated. */
typedef struct pp_str_s {
    const char *p;
    size_t n;
} pp_str_t;

int pp_str_eq(pp_str_t s, const char *lit);

/* ---- frame codec ------------------------------------------------------- */

typedef struct pp_ttrpc_header_s {
    uint32_t length;
    uint32_t stream_id;
    uint8_t type;
    uint8_t flags;
} pp_ttrpc_header_t;

void pp_ttrpc_header_pack(uint8_t out[PP_TTRPC_HEADER_SIZE], const pp_ttrpc_header_t *h);
void pp_ttrpc_header_unpack(const uint8_t in[PP_TTRPC_HEADER_SIZE], pp_ttrpc_header_t *h);

/* Called with each complete frame; takes ownership of `frame`, one malloc'd
 * buffer holding the header and then the payload (h->length bytes at
 * frame + PP_TTRPC_HEADER_SIZE). A negative return stops decoding and is
 * returned by pp_ttrpc_decoder_feed(). */
typedef int (*pp_ttrpc_frame_cb)(void *ctx, const pp_ttrpc_header_t *h, uint8_t *frame);
/* Called when a header announces more than the maximum; the decoder then
 * discards that many bytes and goes on with the next frame, or, past
 * PP_TTRPC_DISCARD_MAX, returns -EMSGSIZE from pp_ttrpc_decoder_feed() once
 * the callback has returned. */
typedef int (*pp_ttrpc_oversize_cb)(void *ctx, const pp_ttrpc_header_t *h);

typedef struct pp_ttrpc_decoder_s {
    uint8_t hdr[PP_TTRPC_HEADER_SIZE];
    size_t hdr_have;
    pp_ttrpc_header_t cur;
    uint8_t *payload; /* payload of the frame being received (header room before) */
    size_t have;
    size_t cap;       /* bytes of payload room allocated; grows as bytes arrive */
    uint64_t discard; /* bytes of an oversize frame still to drop */
    size_t max;
    pp_ttrpc_frame_cb on_frame;
    pp_ttrpc_oversize_cb on_oversize;
    void *ctx;
} pp_ttrpc_decoder_t;

void pp_ttrpc_decoder_init(pp_ttrpc_decoder_t *d, size_t max, pp_ttrpc_frame_cb on_frame,
                           pp_ttrpc_oversize_cb on_oversize, void *ctx);
void pp_ttrpc_decoder_fini(pp_ttrpc_decoder_t *d);
/* Feeds bytes; frames may arrive one byte at a time. 0, -ENOMEM, -EMSGSIZE
 * (an announced length past PP_TTRPC_DISCARD_MAX), or what a callback
 * returned. */
int pp_ttrpc_decoder_feed(pp_ttrpc_decoder_t *d, const uint8_t *p, size_t n);
/* Where the decoder wants bytes written directly: room in the payload being
 * received (grown if need be), when at least `min` bytes of it remain to
 * come. 0 when none; then feed. */
size_t pp_ttrpc_decoder_direct(pp_ttrpc_decoder_t *d, uint8_t **p, size_t min);
/* Whether a frame has begun and not ended (header, payload or discard). */
int pp_ttrpc_decoder_busy(const pp_ttrpc_decoder_t *d);
/* Heap held for the frame being received (0 when none). */
size_t pp_ttrpc_decoder_held(const pp_ttrpc_decoder_t *d);
/* Accounts for `n` bytes written at the pointer pp_ttrpc_decoder_direct()
 * gave. */
int pp_ttrpc_decoder_advance(pp_ttrpc_decoder_t *d, size_t n);

/* ---- messages ---------------------------------------------------------- */

typedef struct pp_ttrpc_kv_s {
    pp_str_t key;
    pp_str_t value;
} pp_ttrpc_kv_t;

/* ttrpc.Request, decoded in place. */
typedef struct pp_ttrpc_request_s {
    pp_str_t service;
    pp_str_t method;
    const uint8_t *payload;
    size_t payload_len;
    int64_t timeout_nano;
    pp_ttrpc_kv_t *metadata; /* malloc'd array, views into the message */
    size_t metadata_count;
} pp_ttrpc_request_t;

/* ttrpc.Response, decoded in place. */
typedef struct pp_ttrpc_response_s {
    int32_t code;
    pp_str_t message;
    const uint8_t *details; /* google.rpc.Status.details fields, as encoded */
    size_t details_len;
    const uint8_t *payload;
    size_t payload_len;
} pp_ttrpc_response_t;

/* Decoders: 0 or -EBADMSG; a request with more than PP_TTRPC_MAX_METADATA
 * metadata entries gives -E2BIG. Unknown fields are skipped. */
int pp_ttrpc_request_decode(const uint8_t *p, size_t n, pp_ttrpc_request_t *out);
void pp_ttrpc_request_fini(pp_ttrpc_request_t *req);
int pp_ttrpc_response_decode(const uint8_t *p, size_t n, pp_ttrpc_response_t *out);

/* Encoders. Each writes a whole frame (header included, stream id 0, to be
 * set with pp_ttrpc_frame_set_stream()) into a fresh heap buffer. */
int pp_ttrpc_request_frame(const pp_ttrpc_request_t *req, uint8_t **out, size_t *len);
int pp_ttrpc_response_frame(int32_t code, const char *message, const void *payload,
                            size_t payload_len, uint8_t **out, size_t *len);
void pp_ttrpc_frame_set_stream(uint8_t *frame, uint32_t stream_id);

/* ---- stream filters ---------------------------------------------------- */

/* A filter sits between a connection's stream and its frames: TLS, once its
 * handshake is done, is one. Without a filter frames go to the stream as
 * they are. Filter functions run on the loop thread. */
typedef int (*pp_filter_deliver_cb)(void *ctx, const uint8_t *plain, size_t n);

typedef struct pp_stream_filter_s pp_stream_filter_t;
struct pp_stream_filter_s {
    /* Sends `len` bytes of `data` (taking ownership of the malloc'd buffer)
     * on the filter's stream. 0 or a negative errno. With a `flush`, the
     * filter may hold the bytes back until it is called. */
    int (*write)(pp_stream_filter_t *f, uint8_t *data, size_t len);
    /* Optional: sends whatever write() held back. The connection calls it
     * once per loop iteration in which it wrote, before the loop waits for
     * events, so that many small writes cost one seal and one syscall.
     * 0 or a negative errno (which ends the connection). */
    int (*flush)(pp_stream_filter_t *f);
    /* Takes bytes read from the stream and calls `deliver` with what they
     * carry (zero or more times). A negative return ends the connection. */
    int (*read)(pp_stream_filter_t *f, const uint8_t *in, size_t n, pp_filter_deliver_cb deliver,
                void *ctx);
    /* Frees the filter; the stream is closed by the connection. */
    void (*destroy)(pp_stream_filter_t *f);
    /* Optional: why the connection broke, in words, once read or write
     * failed; NULL when it has nothing to say. */
    const char *(*last_error)(pp_stream_filter_t *f);
};

/* ---- limits ------------------------------------------------------------ */

/* What a peer can make a connection hold, and for how long
 * (docs/design/limits.md gives the figures and why):
 *
 * - A frame being received holds only what has come of it (see
 *   PP_TTRPC_FRAME_START), and must be whole within `frame_timeout_ms` of
 *   its first byte, discarded ones too; else the connection ends.
 * - Bytes held for a connection (its frame being received, and the
 *   requests of its calls in flight) count against the connection's cap
 *   and against a budget that servers may share. Past either, the
 *   connection is not read until they go down: the peer waits, the heap
 *   does not grow. A connection holding less than PP_TTRPC_BUDGET_FREE is
 *   read even when the budget is spent, so that small calls (a Version)
 *   still get through.
 * - Answers queued and not yet taken by the peer stop the reading of its
 *   connection past PP_TTRPC_WRITE_PAUSE bytes of heap, until they drain to
 *   a quarter of that; past PP_TTRPC_WRITE_MAX the connection ends. (For a
 *   connection through a filter, TLS, only the latter applies, counted in
 *   bytes queued on the stream.)
 * - A server holds at most `max_conns` connections, and servers sharing a
 *   budget at most the budget's `max_conns` together. At a limit a new
 *   connection is closed at once, unless `evict_idle` lets it take the place
 *   of the connection idle the longest (no call in flight, no frame begun).
 * - With `idle_timeout_ms`, a connection idle that long is closed. */
#define PP_TTRPC_FRAME_TIMEOUT_MS 30000u
#define PP_TTRPC_MAX_CONNS        1024u
/* Connections the kernel queues for a listener until the loop accepts them
 * (it caps this at net.core.somaxconn). Past it a unix socket's connect
 * fails at once (EAGAIN), so a burst of shims, each opening a connection
 * for its StartVM while the loop is busy, must fit. */
#define PP_TTRPC_LISTEN_BACKLOG 4096
#define PP_TTRPC_CONN_MAX_HELD  (8u << 20)
#define PP_TTRPC_BUDGET_BYTES   (32u << 20)
#define PP_TTRPC_BUDGET_FREE    (16u << 10)
#define PP_TTRPC_WRITE_PAUSE    (1u << 20)
#define PP_TTRPC_WRITE_MAX      (64u << 20)

/* Counts of what the limits did, for logs and metrics. */
typedef struct pp_ttrpc_limit_stats_s {
    uint64_t refused;        /* connections closed at accept: at a limit */
    uint64_t evicted;        /* idle connections closed for a new one */
    uint64_t idle_closed;    /* idle past idle_timeout_ms */
    uint64_t frame_timeouts; /* a frame not whole within frame_timeout_ms */
    uint64_t oversize;       /* frames announced over the maximum */
    uint64_t paused;         /* times a connection's reading was paused */
} pp_ttrpc_limit_stats_t;

/* Shared by the servers (and their connections) it is given to; lives as
 * long as they do. Loop thread only. */
typedef struct pp_ttrpc_budget_s {
    size_t max_bytes; /* held across connections before large ones pause */
    size_t used_bytes;
    size_t queued_bytes; /* heap of answers not yet taken by their peers */
    size_t max_conns;    /* connections across the servers; 0 = no limit */
    size_t conns;
    struct pp__conn_s *waiters; /* paused for the budget (internal) */
    pp_ttrpc_limit_stats_t stats;
} pp_ttrpc_budget_t;

void pp_ttrpc_budget_init(pp_ttrpc_budget_t *b, size_t max_bytes, size_t max_conns);

typedef struct pp_ttrpc_server_opts_s {
    size_t max_conns;          /* 0: PP_TTRPC_MAX_CONNS */
    int evict_idle;            /* at a limit, the longest idle connection makes room */
    uint64_t idle_timeout_ms;  /* 0: idle connections stay */
    uint64_t frame_timeout_ms; /* 0: PP_TTRPC_FRAME_TIMEOUT_MS */
    size_t conn_max_held;      /* 0: PP_TTRPC_CONN_MAX_HELD */
    pp_ttrpc_budget_t *budget; /* NULL: the server's own, PP_TTRPC_BUDGET_BYTES */
    /* Unix sockets: the mode the socket file gets (0: 0600), set on the file
     * whatever the umask, and its group ((gid_t)-1 or 0: left as created). */
    unsigned socket_mode;
    unsigned socket_gid;
    const char *name; /* in log lines: "hypervisor", "agent of `x`"; copied */
} pp_ttrpc_server_opts_t;

/* ---- server ------------------------------------------------------------ */

typedef struct pp_ttrpc_server_s pp_ttrpc_server_t;
typedef struct pp_ttrpc_call_s pp_ttrpc_call_t;

/* A handler owns the call until it answers it with exactly one of
 * pp_ttrpc_call_reply(), _fail() or _reply_raw(), which free it. It may
 * answer from inside the handler or later, from any loop callback. */
typedef void (*pp_ttrpc_handler_cb)(pp_ttrpc_call_t *call, void *data);
typedef void (*pp_ttrpc_server_close_cb)(pp_ttrpc_server_t *srv, void *data);

int pp_ttrpc_server_new(uv_loop_t *loop, pp_ttrpc_server_t **out);
/* `service` and `method` are copied. -EEXIST when already registered. */
int pp_ttrpc_server_register(pp_ttrpc_server_t *srv, const char *service, const char *method,
                             pp_ttrpc_handler_cb cb, void *data);
/* Handles every method not registered (a proxy); without one such calls are
 * answered UNIMPLEMENTED. */
void pp_ttrpc_server_set_fallback(pp_ttrpc_server_t *srv, pp_ttrpc_handler_cb cb, void *data);
/* Sets the limits (see above) for connections accepted from now on, and
 * the mode of sockets listened on from now on. -ENOMEM. */
int pp_ttrpc_server_set_opts(pp_ttrpc_server_t *srv, const pp_ttrpc_server_opts_t *o);
/* The budget the server counts in (its own, or the one shared), with what
 * the limits did: for logs, metrics and tests. */
const pp_ttrpc_budget_t *pp_ttrpc_server_budget(const pp_ttrpc_server_t *srv);
/* Connections open now. */
size_t pp_ttrpc_server_conns(const pp_ttrpc_server_t *srv);
/* Listens on a unix socket, replacing a stale socket file (but not a live
 * socket or any other kind of file). The socket file's mode is set as the
 * options say (0600 by default); it is never more open than that, even for
 * an instant, whatever the umask. */
int pp_ttrpc_server_listen_unix(pp_ttrpc_server_t *srv, const char *path, pp_error_t *err);
/* Listens on "host:port" (IPv4 or [IPv6]). */
int pp_ttrpc_server_listen_tcp(pp_ttrpc_server_t *srv, const char *hostport, pp_error_t *err);
/* Serves an already connected stream; the server takes it over and frees it
 * (it must be heap-allocated with malloc), also when this fails. */
int pp_ttrpc_server_serve_stream(pp_ttrpc_server_t *srv, uv_stream_t *stream);
/* Same, with `filter` (owned from now on) between the stream and frames. */
int pp_ttrpc_server_serve_filtered(pp_ttrpc_server_t *srv, uv_stream_t *stream,
                                   pp_stream_filter_t *filter);
/* Called for every accepted connection instead of serving it directly, so
 * that a TLS handshake can run first; the hook then calls
 * pp_ttrpc_server_serve_filtered() or closes the stream. */
void pp_ttrpc_server_set_accept_hook(pp_ttrpc_server_t *srv,
                                     void (*hook)(pp_ttrpc_server_t *, uv_stream_t *, void *),
                                     void *data);
/* Number of calls handed to handlers and not answered yet. */
size_t pp_ttrpc_server_in_flight(const pp_ttrpc_server_t *srv);
/* Stops accepting; lets calls in flight finish (new requests on open
 * connections get UNAVAILABLE), closes every connection, then calls `cb`
 * and frees the server. With `graceful` 0 it does not wait for calls in
 * flight: their later answers are dropped. */
void pp_ttrpc_server_close(pp_ttrpc_server_t *srv, int graceful, pp_ttrpc_server_close_cb cb,
                           void *data);

const pp_ttrpc_request_t *pp_ttrpc_call_request(const pp_ttrpc_call_t *call);
/* The encoded ttrpc.Request as received. */
const uint8_t *pp_ttrpc_call_raw(const pp_ttrpc_call_t *call, size_t *len);
/* Takes the received request frame (header + ttrpc.Request), to send it on
 * with pp_ttrpc_client_call_frame() without a copy. Afterwards the views of
 * pp_ttrpc_call_request() and pp_ttrpc_call_raw() are no longer valid. */
uint8_t *pp_ttrpc_call_steal_frame(pp_ttrpc_call_t *call, size_t *len);
/* The caller's deadline as loop time in ms (uv_now), or 0 when none. */
uint64_t pp_ttrpc_call_deadline(const pp_ttrpc_call_t *call);
/* Fired once, on the loop, when the call can no longer be answered (its
 * connection closed or its deadline passed). The handler still answers it. */
void pp_ttrpc_call_on_cancel(pp_ttrpc_call_t *call, void (*cb)(pp_ttrpc_call_t *, void *),
                             void *data);
int pp_ttrpc_call_is_cancelled(const pp_ttrpc_call_t *call);
int pp_ttrpc_call_reply(pp_ttrpc_call_t *call, const void *payload, size_t len);
int pp_ttrpc_call_fail(pp_ttrpc_call_t *call, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Answers with an encoded response frame (pp_ttrpc_response_frame() or one
 * received by pp_ttrpc_client_call_raw()); takes ownership of `frame`. */
int pp_ttrpc_call_reply_frame(pp_ttrpc_call_t *call, uint8_t *frame, size_t len);

/* ---- client ------------------------------------------------------------ */

typedef struct pp_ttrpc_client_s pp_ttrpc_client_t;

typedef struct pp_ttrpc_result_s {
    int code;         /* gRPC status: from the server, or local */
    pp_str_t message; /* valid during the callback */
    const uint8_t *payload;
    size_t payload_len;
    uint8_t *frame; /* the whole response frame; steal it to keep it */
    size_t frame_len;
} pp_ttrpc_result_t;

typedef void (*pp_ttrpc_result_cb)(pp_ttrpc_result_t *res, void *data);
typedef void (*pp_ttrpc_connect_cb)(pp_ttrpc_client_t *c, int status, void *data);
typedef void (*pp_ttrpc_client_close_cb)(pp_ttrpc_client_t *c, void *data);

typedef struct pp_ttrpc_call_opts_s {
    const char *service;
    const char *method;
    const void *payload;
    size_t payload_len;
    int64_t timeout_nano; /* 0 = none; sent, and enforced locally too */
    const pp_ttrpc_kv_t *metadata;
    size_t metadata_count;
} pp_ttrpc_call_opts_t;

int pp_ttrpc_client_new(uv_loop_t *loop, pp_ttrpc_client_t **out);
/* Connects; `cb` fires once with 0 or a negative errno. */
int pp_ttrpc_client_connect_unix(pp_ttrpc_client_t *c, const char *path, pp_ttrpc_connect_cb cb,
                                 void *data);
int pp_ttrpc_client_connect_tcp(pp_ttrpc_client_t *c, const struct sockaddr *addr,
                                pp_ttrpc_connect_cb cb, void *data);
/* Uses an already connected, malloc'd stream. */
int pp_ttrpc_client_open(pp_ttrpc_client_t *c, uv_stream_t *stream);
/* Same, with `filter` (owned from now on) between the stream and frames. */
int pp_ttrpc_client_open_filtered(pp_ttrpc_client_t *c, uv_stream_t *stream,
                                  pp_stream_filter_t *filter);
/* Called once if the connection drops or fails (not after close). */
void pp_ttrpc_client_on_disconnect(pp_ttrpc_client_t *c, void (*cb)(pp_ttrpc_client_t *, void *),
                                   void *data);
int pp_ttrpc_client_connected(const pp_ttrpc_client_t *c);
/* Makes a call; `cb` fires once. The payload is copied. Calls made before
 * the connection is up fail with -ENOTCONN. When the connection drops every
 * call in flight completes with UNAVAILABLE; on close, with CANCELLED. */
int pp_ttrpc_client_call(pp_ttrpc_client_t *c, const pp_ttrpc_call_opts_t *o, pp_ttrpc_result_cb cb,
                         void *data);
/* Sends an encoded request frame (any stream id: it is rewritten), taking
 * ownership of `frame`. `timeout_nano` is only enforced locally (the one in
 * the frame travels as is). */
int pp_ttrpc_client_call_frame(pp_ttrpc_client_t *c, uint8_t *frame, size_t len,
                               int64_t timeout_nano, pp_ttrpc_result_cb cb, void *data);
size_t pp_ttrpc_client_in_flight(const pp_ttrpc_client_t *c);
/* Fails calls in flight with CANCELLED, closes, calls `cb`, frees. */
void pp_ttrpc_client_close(pp_ttrpc_client_t *c, pp_ttrpc_client_close_cb cb, void *data);

#endif
