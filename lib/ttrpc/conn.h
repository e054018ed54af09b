/* Internal: one ttrpc connection over a libuv stream, shared by the server
 * and the client. It reads frames (straight into the payload buffer for
 * large ones), writes whole frames, and tells its owner once when it ends.
 *
 * Writes are corked: frames written anywhere during a loop iteration (while
 * reading this connection, another one, or from a timer) are gathered and
 * go out together from the connection's prepare handle, which runs once the
 * loop has handled its events and before it waits for more. So one read of
 * many requests, or one read of many answers on another connection, costs
 * one writev here (one TLS seal and write through a filter), tried with
 * uv_try_write() first so that nothing is queued when the socket takes it
 * all. Each connection owns three handles, the stream, the prepare handle
 * and a deadline timer, and is closed once all three are. */
#ifndef PP_TTRPC_CONN_H
#define PP_TTRPC_CONN_H

#include "ttrpc.h"

/* Small reads go through a scratch buffer of this size; a payload with at
 * least this much left to come is read straight into its frame. Each
 * connection holds one, so it stays modest: a node has two per pod. */
#define PP__CONN_READ_CHUNK (16 * 1024)
/* Bytes queued for writing past which the peer is deemed stuck. */
#define PP__CONN_WRITE_QUEUE_MAX (64u << 20)

#define PP__CONN_BATCH_MAX 64

typedef struct pp__conn_s pp__conn_t;

typedef struct pp__conn_ops_s {
    /* A complete frame (header + payload); ownership passes. <0 closes. */
    int (*frame)(pp__conn_t *c, const pp_ttrpc_header_t *h, uint8_t *frame);
    /* A frame over the maximum was announced and is being discarded. */
    int (*oversize)(pp__conn_t *c, const pp_ttrpc_header_t *h);
    /* Reading stopped (EOF, error, protocol error): called once, before
     * the handle closes. `status` is a negative errno or UV_EOF. */
    void (*ended)(pp__conn_t *c, int status);
    /* The handle is closed; the owner may free the conn now. */
    void (*closed)(pp__conn_t *c);
    /* Optional: the deadline timer fired at loop time `now`. Ends what is
     * due and returns the next deadline (loop time), or 0 for none. */
    uint64_t (*expire)(pp__conn_t *c, uint64_t now);
} pp__conn_ops_t;

struct pp__conn_s {
    uv_stream_t *stream;        /* malloc'd, owned */
    pp_stream_filter_t *filter; /* owned, or NULL */
    pp_ttrpc_decoder_t dec;
    const pp__conn_ops_t *ops;
    void *owner;
    uint8_t *scratch;
    uint8_t *direct; /* where the last read was directed, or NULL */
    /* Frames written since the last flush, sent in one writev by the
     * prepare handle (or at once when the batch is full). */
    uint8_t *batch[PP__CONN_BATCH_MAX];
    uv_buf_t batch_bufs[PP__CONN_BATCH_MAX];
    size_t nbatch;
    uv_prepare_t flusher; /* started while writes wait to be flushed */
    /* One timer for the deadlines of all the calls on the connection, set
     * for the earliest; calls that end first leave it be (it finds nothing
     * due when it fires), so a call costs no timer of its own. */
    uv_timer_t deadlines;
    uint64_t deadline_due; /* loop time the timer is set for; 0 when unset */
    int deferred_error;    /* a failed corked flush, to end the connection */
    unsigned open_handles; /* stream, flusher, timer: until closed */
    unsigned flush_queued : 1;
    unsigned ended : 1;
    unsigned closing : 1;
};

void pp__conn_init(pp__conn_t *c, uv_stream_t *stream, const pp__conn_ops_t *ops, void *owner);
int pp__conn_start(pp__conn_t *c);
/* Writes a frame and frees it when done (also on failure). The frame goes
 * out before the loop next waits for events, in order with the others. */
int pp__conn_write(pp__conn_t *c, uint8_t *frame, size_t len);
/* Sends what is corked now, without waiting for the prepare handle. A
 * negative errno when the stream failed; the caller ends the connection. */
int pp__conn_flush(pp__conn_t *c);
/* Makes the deadline timer fire no later than loop time `due`. */
void pp__conn_deadline(pp__conn_t *c, uint64_t due);
/* Sends what is corked (as far as the socket takes it), stops reading
 * (calling ops->ended if not yet) and closes the handles. */
void pp__conn_close(pp__conn_t *c);

#endif
