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
 * and a timer, and is closed once all three are.
 *
 * Limits (ttrpc.h, "limits"): the connection stops reading while it holds
 * too much (its frame being received plus what its owner charged to it),
 * while a budget it shares is spent, or while its answers are not being
 * taken; a frame must be whole within a timeout of its first byte. The one
 * timer serves that timeout and the owner's deadlines, which are kept in a
 * binary heap: adding or removing one is O(log n), and the timer is set for
 * the earliest. */
#ifndef PP_TTRPC_CONN_H
#define PP_TTRPC_CONN_H

#include "ttrpc/ttrpc.h"

/* Small reads go through a scratch buffer of this size; a payload with at
 * least this much left to come is read straight into its frame. The
 * scratch is taken per read, so an idle connection holds none. */
#define PP__CONN_READ_CHUNK (16 * 1024)
/* Heap counted for each frame queued for writing besides its bytes: its
 * malloc header, its pointer and uv_buf_t in a write request. */
#define PP__CONN_FRAME_OVERHEAD 64

#define PP__CONN_BATCH_MAX 64

typedef struct pp__conn_s pp__conn_t;

/* A deadline in a connection's heap, embedded in what it times. */
typedef struct pp__deadline_s {
    uint64_t due; /* loop time */
    size_t slot;  /* index in the heap + 1; 0 when not in it */
} pp__deadline_t;

typedef struct pp__deadlines_s {
    pp__deadline_t **v;
    size_t n, cap;
} pp__deadlines_t;

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
    /* Optional: the timer fired at loop time `now` and a deadline of the
     * heap (pp__conn_deadline_add) or one asked for with
     * pp__conn_deadline() may be due. Ends what is due (taking it out of
     * the heap) and returns the next deadline asked for with
     * pp__conn_deadline(), or 0 for none. */
    uint64_t (*expire)(pp__conn_t *c, uint64_t now);
    /* Optional: a read was handled (frames delivered); the connection is
     * still open. */
    void (*read_done)(pp__conn_t *c);
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
    /* One timer for the frame timeout and every deadline of the
     * connection, set for the earliest. */
    uv_timer_t timer;
    uint64_t timer_due; /* loop time the timer is set for; 0 when unset */
    uint64_t asked_due; /* the earliest pp__conn_deadline(); 0 when none */
    uint64_t frame_due; /* loop time the frame begun must be whole by; 0 */
    uint64_t frame_timeout_ms;
    pp__deadlines_t deadlines;
    /* Limits. */
    pp_ttrpc_budget_t *budget;         /* NULL: none (the client) */
    pp__conn_t *wait_prev, *wait_next; /* in budget->waiters */
    size_t max_held;                   /* 0: no cap */
    size_t held;                       /* charged by the owner and the frame being read */
    size_t dec_charged;                /* of `held`: the decoder's buffer */
    size_t queued;                     /* heap of frames written and not yet taken */
    int deferred_error;                /* a failed corked flush, to end the connection */
    unsigned open_handles;             /* stream, flusher, timer: until closed */
    unsigned flush_queued : 1;
    unsigned ended : 1;
    unsigned closing : 1;
    unsigned started : 1;      /* reading was asked for */
    unsigned reading : 1;      /* uv_read_start in effect */
    unsigned waiting : 1;      /* in budget->waiters */
    unsigned limited : 1;      /* pp__conn_limit() was called: a server's */
    unsigned write_paused : 1; /* answers not taken: paused until they drain */
};

/* Heap of deadlines (used by the connection; exposed for the owners). */
int pp__deadlines_add(pp__deadlines_t *h, pp__deadline_t *e);
void pp__deadlines_remove(pp__deadlines_t *h, pp__deadline_t *e);
pp__deadline_t *pp__deadlines_first(const pp__deadlines_t *h);
void pp__deadlines_fini(pp__deadlines_t *h);

void pp__conn_init(pp__conn_t *c, uv_stream_t *stream, const pp__conn_ops_t *ops, void *owner);
int pp__conn_start(pp__conn_t *c);
/* Writes a frame and frees it when done (also on failure). The frame goes
 * out before the loop next waits for events, in order with the others. */
int pp__conn_write(pp__conn_t *c, uint8_t *frame, size_t len);
/* Sends what is corked now, without waiting for the prepare handle. A
 * negative errno when the stream failed; the caller ends the connection. */
int pp__conn_flush(pp__conn_t *c);
/* Makes the timer fire no later than loop time `due` (then ops->expire). */
void pp__conn_deadline(pp__conn_t *c, uint64_t due);
/* Adds `e` (with e->due set) to the connection's heap of deadlines, or
 * takes it out (a no-op when it is not in). When one is due, ops->expire
 * is called, which takes it out. -ENOMEM. */
int pp__conn_deadline_add(pp__conn_t *c, pp__deadline_t *e);
void pp__conn_deadline_remove(pp__conn_t *c, pp__deadline_t *e);
/* The earliest deadline in the heap that is due at `now`, or NULL. */
pp__deadline_t *pp__conn_deadline_due(pp__conn_t *c, uint64_t now);
/* Limits for a server's connection: the budget whose bytes it uses (NULL:
 * none), the cap on what it holds (0: none), the frame timeout (0: none),
 * and reading paused while its answers are not taken. Call before
 * pp__conn_start. Without it (a client's connection) there is no budget
 * and no cap, reading never pauses (a client must always take the answers
 * to what it asked, or the two ends would wait on each other), and the
 * frame timeout is PP_TTRPC_FRAME_TIMEOUT_MS. */
void pp__conn_limit(pp__conn_t *c, pp_ttrpc_budget_t *budget, size_t max_held,
                    uint64_t frame_timeout_ms);
/* Adds (n > 0) or gives back (n < 0) bytes the owner holds for the
 * connection, pausing or resuming its reading. */
void pp__conn_charge(pp__conn_t *c, ptrdiff_t n);
/* Sends what is corked (as far as the socket takes it), stops reading
 * (calling ops->ended if not yet) and closes the handles. */
void pp__conn_close(pp__conn_t *c);

#endif
