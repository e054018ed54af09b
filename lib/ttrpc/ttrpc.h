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

#include "../util/error.h"
#include "../util/grpc_codes.h"

#define PP_TTRPC_HEADER_SIZE 10
#define PP_TTRPC_MAX_MESSAGE (4u << 20)

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
 * discards that many bytes and goes on with the next frame. */
typedef int (*pp_ttrpc_oversize_cb)(void *ctx, const pp_ttrpc_header_t *h);

typedef struct pp_ttrpc_decoder_s {
    uint8_t hdr[PP_TTRPC_HEADER_SIZE];
    size_t hdr_have;
    pp_ttrpc_header_t cur;
    uint8_t *payload; /* payload of the frame being received (header room before) */
    size_t have;
    uint64_t discard; /* bytes of an oversize frame still to drop */
    size_t max;
    pp_ttrpc_frame_cb on_frame;
    pp_ttrpc_oversize_cb on_oversize;
    void *ctx;
} pp_ttrpc_decoder_t;

void pp_ttrpc_decoder_init(pp_ttrpc_decoder_t *d, size_t max, pp_ttrpc_frame_cb on_frame,
                           pp_ttrpc_oversize_cb on_oversize, void *ctx);
void pp_ttrpc_decoder_fini(pp_ttrpc_decoder_t *d);
/* Feeds bytes; frames may arrive one byte at a time. 0, -ENOMEM, or what a
 * callback returned. */
int pp_ttrpc_decoder_feed(pp_ttrpc_decoder_t *d, const uint8_t *p, size_t n);
/* Where the decoder wants bytes written directly: the rest of a payload being
 * received, when at least `min` bytes remain. 0 when none; then feed. */
size_t pp_ttrpc_decoder_direct(pp_ttrpc_decoder_t *d, uint8_t **p, size_t min);
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

/* Decoders: 0 or -EBADMSG. Unknown fields are skipped. */
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
/* Listens on a unix socket, replacing a stale socket file (but not a live
 * socket or any other kind of file). */
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
