#include "ttrpc/conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/log.h"

typedef struct write_req_s {
    uv_write_t req;
    pp__conn_t *conn;
    size_t charge; /* of conn->queued */
    size_t nframes;
    uint8_t *frames[]; /* freed when written */
} write_req_t;

static void drop_batch(pp__conn_t *c);
static int flush(pp__conn_t *c);
static void update_reading(pp__conn_t *c);
static void arm(pp__conn_t *c);
static void timer_cb(uv_timer_t *t);
static void disarm_if_idle(pp__conn_t *c);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* ---- deadline heap ----------------------------------------------------- */

static void heap_set(pp__deadlines_t *h, size_t i, pp__deadline_t *e)
{
    h->v[i] = e;
    e->slot = i + 1;
}

static void sift_up(pp__deadlines_t *h, size_t i)
{
    pp__deadline_t *e = h->v[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->v[parent]->due <= e->due)
            break;
        heap_set(h, i, h->v[parent]);
        i = parent;
    }
    heap_set(h, i, e);
}

static void sift_down(pp__deadlines_t *h, size_t i)
{
    pp__deadline_t *e = h->v[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->n)
            break;
        if (child + 1 < h->n && h->v[child + 1]->due < h->v[child]->due)
            child++;
        if (e->due <= h->v[child]->due)
            break;
        heap_set(h, i, h->v[child]);
        i = child;
    }
    heap_set(h, i, e);
}

int pp__deadlines_add(pp__deadlines_t *h, pp__deadline_t *e)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 8;
        pp__deadline_t **v = realloc(h->v, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    h->v[h->n] = e;
    h->n++;
    sift_up(h, h->n - 1);
    return 0;
}

void pp__deadlines_remove(pp__deadlines_t *h, pp__deadline_t *e)
{
    if (e->slot == 0)
        return;
    size_t i = e->slot - 1;
    e->slot = 0;
    pp__deadline_t *last = h->v[--h->n];
    if (i < h->n) {
        heap_set(h, i, last);
        sift_down(h, i);
        sift_up(h, last->slot - 1);
    }
    /* A burst of calls leaves no large array behind. */
    if (h->n == 0 && h->cap > 64) {
        free(h->v);
        h->v = NULL;
        h->cap = 0;
    }
}

pp__deadline_t *pp__deadlines_first(const pp__deadlines_t *h)
{
    return h->n > 0 ? h->v[0] : NULL;
}

void pp__deadlines_fini(pp__deadlines_t *h)
{
    for (size_t i = 0; i < h->n; i++)
        h->v[i]->slot = 0;
    free(h->v);
    memset(h, 0, sizeof(*h));
}

/* ---- budget ------------------------------------------------------------ */

void pp_ttrpc_budget_init(pp_ttrpc_budget_t *b, size_t max_bytes, size_t max_conns)
{
    memset(b, 0, sizeof(*b));
    b->max_bytes = max_bytes;
    b->max_conns = max_conns;
}

static void waiter_unlink(pp__conn_t *c)
{
    if (!c->waiting)
        return;
    if (c->wait_prev)
        c->wait_prev->wait_next = c->wait_next;
    else
        c->budget->waiters = c->wait_next;
    if (c->wait_next)
        c->wait_next->wait_prev = c->wait_prev;
    c->wait_prev = c->wait_next = NULL;
    c->waiting = 0;
}

static void waiter_link(pp__conn_t *c)
{
    if (c->waiting)
        return;
    c->wait_prev = NULL;
    c->wait_next = c->budget->waiters;
    if (c->wait_next)
        c->wait_next->wait_prev = c;
    c->budget->waiters = c;
    c->waiting = 1;
}

/* Moves `n` bytes into (n > 0) or out of the connection's holding. When the
 * budget comes back under its maximum, every connection that waited for it
 * is read again (each pauses again after a read if it must). */
static void hold(pp__conn_t *c, ptrdiff_t n)
{
    c->held = (size_t)((ptrdiff_t)c->held + n);
    pp_ttrpc_budget_t *b = c->budget;
    if (b == NULL)
        return;
    b->used_bytes = (size_t)((ptrdiff_t)b->used_bytes + n);
    if (n >= 0 || b->waiters == NULL || b->used_bytes > b->max_bytes)
        return;
    pp__conn_t *list = b->waiters;
    b->waiters = NULL;
    while (list != NULL) {
        pp__conn_t *w = list;
        list = w->wait_next;
        w->wait_prev = w->wait_next = NULL;
        w->waiting = 0;
        update_reading(w);
    }
}

void pp__conn_charge(pp__conn_t *c, ptrdiff_t n)
{
    hold(c, n);
    update_reading(c);
}

/* The decoder's buffer, counted after every read: it grows as bytes come,
 * and goes to the owner with each frame. */
static void recount_decoder(pp__conn_t *c)
{
    size_t now = pp_ttrpc_decoder_held(&c->dec);
    if (now != c->dec_charged) {
        hold(c, (ptrdiff_t)now - (ptrdiff_t)c->dec_charged);
        c->dec_charged = now;
    }
}

static int budget_spent(const pp__conn_t *c)
{
    return c->budget != NULL && c->budget->used_bytes > c->budget->max_bytes &&
           c->held > PP_TTRPC_BUDGET_FREE;
}

/* Starts or stops reading as the limits say. */
static void update_reading(pp__conn_t *c)
{
    if (c->closing || c->ended || !c->started)
        return;
    int spent = budget_spent(c);
    int want = !spent && !c->write_paused && (c->max_held == 0 || c->held <= c->max_held);
    if (spent)
        waiter_link(c);
    else
        waiter_unlink(c);
    if (want == (int)c->reading)
        return;
    if (want) {
        int r = uv_read_start(c->stream, alloc_cb, read_cb);
        if (r < 0) {
            /* Ended from the timer, not from whatever changed the limits. */
            if (c->deferred_error == 0)
                c->deferred_error = r;
            pp__conn_deadline(c, 1);
            return;
        }
        c->reading = 1;
    } else {
        uv_read_stop(c->stream);
        c->reading = 0;
        if (c->budget != NULL)
            c->budget->stats.paused++;
    }
}

/* ---- life -------------------------------------------------------------- */

static int on_frame(void *ctx, const pp_ttrpc_header_t *h, uint8_t *frame)
{
    pp__conn_t *c = ctx;
    return c->ops->frame(c, h, frame);
}

static int on_oversize(void *ctx, const pp_ttrpc_header_t *h)
{
    pp__conn_t *c = ctx;
    if (c->budget != NULL)
        c->budget->stats.oversize++;
    return c->ops->oversize ? c->ops->oversize(c, h) : 0;
}

void pp__conn_init(pp__conn_t *c, uv_stream_t *stream, const pp__conn_ops_t *ops, void *owner)
{
    memset(c, 0, sizeof(*c));
    c->stream = stream;
    c->ops = ops;
    c->owner = owner;
    c->frame_timeout_ms = PP_TTRPC_FRAME_TIMEOUT_MS;
    stream->data = c;
    uv_prepare_init(stream->loop, &c->flusher);
    c->flusher.data = c;
    uv_timer_init(stream->loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 3;
    pp_ttrpc_decoder_init(&c->dec, PP_TTRPC_MAX_MESSAGE, on_frame, on_oversize, c);
}

void pp__conn_limit(pp__conn_t *c, pp_ttrpc_budget_t *budget, size_t max_held,
                    uint64_t frame_timeout_ms)
{
    c->limited = 1;
    c->budget = budget;
    c->max_held = max_held;
    c->frame_timeout_ms = frame_timeout_ms;
}

static void end(pp__conn_t *c, int status)
{
    if (c->ended)
        return;
    c->ended = 1;
    uv_read_stop(c->stream);
    c->reading = 0;
    if (c->budget != NULL)
        waiter_unlink(c);
    c->ops->ended(c, status);
}

/* Ends the connection after a failure on it, unless it is closing already. */
static void fail(pp__conn_t *c, int status)
{
    if (c->closing)
        return;
    end(c, status);
    pp__conn_close(c);
}

static void close_cb(uv_handle_t *h)
{
    pp__conn_t *c = h->data;
    if (h == (uv_handle_t *)c->stream) {
        free(h);
        c->stream = NULL;
    }
    if (--c->open_handles > 0)
        return;
    if (c->filter != NULL)
        c->filter->destroy(c->filter);
    c->filter = NULL;
    pp_ttrpc_decoder_fini(&c->dec);
    recount_decoder(c);
    pp__deadlines_fini(&c->deadlines);
    free(c->scratch);
    c->scratch = NULL;
    c->ops->closed(c);
}

void pp__conn_close(pp__conn_t *c)
{
    if (c->closing)
        return;
    /* Answers written just before the close still go out, as far as the
     * socket takes them now (writes left queued are cancelled by the
     * close). */
    pp__conn_flush(c);
    c->closing = 1;
    end(c, UV_ECANCELED);
    drop_batch(c);
    uv_close((uv_handle_t *)c->stream, close_cb);
    uv_close((uv_handle_t *)&c->flusher, close_cb);
    uv_close((uv_handle_t *)&c->timer, close_cb);
}

/* ---- reading ----------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    pp__conn_t *c = h->data;
    (void)suggested;
    uint8_t *p;
    /* Through a filter, read bytes are not frame bytes: no direct reads.
     * With the budget spent, a connection still read (it holds little) reads
     * a chunk at a time, so its frame grows by a chunk at a time. */
    int spent = c->budget != NULL && c->budget->used_bytes > c->budget->max_bytes;
    size_t n = c->filter || spent ? 0 : pp_ttrpc_decoder_direct(&c->dec, &p, PP__CONN_READ_CHUNK);
    if (n > 0) {
        /* Large payload: let the kernel copy straight into it. */
        c->direct = p;
        *buf = uv_buf_init((char *)p, (unsigned)n);
        return;
    }
    c->direct = NULL;
    if (c->scratch == NULL)
        c->scratch = malloc(PP__CONN_READ_CHUNK);
    *buf = uv_buf_init((char *)c->scratch, c->scratch ? PP__CONN_READ_CHUNK : 0);
}

static int feed_plain(void *ctx, const uint8_t *p, size_t n)
{
    return pp_ttrpc_decoder_feed(ctx, p, n);
}

/* A frame begun starts the clock for its whole; an end stops it. */
static void watch_frame(pp__conn_t *c)
{
    if (!pp_ttrpc_decoder_busy(&c->dec)) {
        if (c->frame_due != 0) {
            c->frame_due = 0;
            disarm_if_idle(c);
        }
        return;
    }
    if (c->frame_due != 0 || c->frame_timeout_ms == 0)
        return;
    c->frame_due = uv_now(c->stream->loop) + c->frame_timeout_ms;
    arm(c);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    pp__conn_t *c = s->data;
    if (nread < 0) {
        /* What was answered before the peer stopped sending still goes. */
        if (nread == UV_EOF)
            pp__conn_flush(c);
        fail(c, (int)nread);
        return;
    }
    if (nread == 0)
        return;
    int r;
    if (c->filter != NULL)
        r = c->filter->read(c->filter, (const uint8_t *)buf->base, (size_t)nread, feed_plain,
                            &c->dec);
    else if (c->direct != NULL && (uint8_t *)buf->base == c->direct)
        r = pp_ttrpc_decoder_advance(&c->dec, (size_t)nread);
    else
        r = pp_ttrpc_decoder_feed(&c->dec, (const uint8_t *)buf->base, (size_t)nread);
    c->direct = NULL;
    /* The scratch is taken per read: an idle connection holds none. */
    free(c->scratch);
    c->scratch = NULL;
    if (r < 0) {
        fail(c, r);
        return;
    }
    if (c->closing)
        return;
    recount_decoder(c);
    watch_frame(c);
    if (c->ops->read_done != NULL)
        c->ops->read_done(c);
    update_reading(c);
}

int pp__conn_start(pp__conn_t *c)
{
    int r = uv_read_start(c->stream, alloc_cb, read_cb);
    if (r == 0)
        c->started = c->reading = 1;
    return r;
}

/* ---- timer: frame timeout and deadlines -------------------------------- */

static uint64_t earliest(uint64_t a, uint64_t b)
{
    return a == 0 ? b : b == 0 ? a : a < b ? a : b;
}

/* Sets the timer for the earliest thing due, unless it is already set for
 * that or sooner (then it fires early, finds nothing, and sets itself
 * again): a deadline that goes away costs no timer update while others
 * remain. The last to go stops it (disarm_if_idle()), so a connection at
 * rest holds no timer: otherwise every pod's links woke the loop once at
 * the deadline of their last call. */
static void arm(pp__conn_t *c)
{
    if (c->closing)
        return;
    pp__deadline_t *first = pp__deadlines_first(&c->deadlines);
    uint64_t due = earliest(earliest(c->asked_due, c->frame_due), first ? first->due : 0);
    if (due == 0 || (c->timer_due != 0 && c->timer_due <= due))
        return;
    uint64_t now = uv_now(c->timer.loop);
    c->timer_due = due;
    uv_timer_start(&c->timer, timer_cb, due > now ? due - now : 0, 0);
}

static void disarm_if_idle(pp__conn_t *c)
{
    if (c->timer_due == 0 || c->deadlines.n != 0 || c->asked_due != 0 || c->frame_due != 0)
        return;
    uv_timer_stop(&c->timer);
    c->timer_due = 0;
}

static void timer_cb(uv_timer_t *t)
{
    pp__conn_t *c = t->data;
    c->timer_due = 0;
    if (c->deferred_error != 0) {
        fail(c, c->deferred_error);
        return;
    }
    uint64_t now = uv_now(t->loop);
    if (c->frame_due != 0 && c->frame_due <= now) {
        if (c->budget != NULL)
            c->budget->stats.frame_timeouts++;
        PP_DEBUG("ttrpc", "a frame was not whole within %llu ms of its first byte: closing",
                 (unsigned long long)c->frame_timeout_ms);
        fail(c, -ETIMEDOUT);
        return;
    }
    int due = 0;
    if (c->asked_due != 0 && c->asked_due <= now) {
        c->asked_due = 0;
        due = 1;
    }
    pp__deadline_t *first = pp__deadlines_first(&c->deadlines);
    if (first != NULL && first->due <= now)
        due = 1;
    if (due && c->ops->expire != NULL) {
        uint64_t next = c->ops->expire(c, now);
        if (next != 0)
            c->asked_due = earliest(c->asked_due, next);
    }
    arm(c);
}

void pp__conn_deadline(pp__conn_t *c, uint64_t due)
{
    c->asked_due = earliest(c->asked_due, due);
    arm(c);
}

int pp__conn_deadline_add(pp__conn_t *c, pp__deadline_t *e)
{
    int r = pp__deadlines_add(&c->deadlines, e);
    if (r == 0)
        arm(c);
    return r;
}

void pp__conn_deadline_remove(pp__conn_t *c, pp__deadline_t *e)
{
    pp__deadlines_remove(&c->deadlines, e);
    disarm_if_idle(c);
}

pp__deadline_t *pp__conn_deadline_due(pp__conn_t *c, uint64_t now)
{
    pp__deadline_t *first = pp__deadlines_first(&c->deadlines);
    return first != NULL && first->due <= now ? first : NULL;
}

/* ---- writing ----------------------------------------------------------- */

/* Answers taken by the peer: reading resumes once what is queued has
 * drained to a quarter of the pause mark. */
static void unqueue(pp__conn_t *c, size_t n)
{
    c->queued -= n;
    if (c->budget != NULL)
        c->budget->queued_bytes -= n;
    if (c->write_paused && c->queued <= PP_TTRPC_WRITE_PAUSE / 4) {
        c->write_paused = 0;
        update_reading(c);
    }
}

static void write_cb(uv_write_t *req, int status)
{
    write_req_t *w = container_of(req, write_req_t, req);
    pp__conn_t *c = w->conn;
    for (size_t i = 0; i < w->nframes; i++)
        free(w->frames[i]);
    size_t charge = w->charge;
    free(w);
    unqueue(c, charge);
    if (status < 0 && status != UV_ECANCELED)
        fail(c, status);
}

/* What a frame in the batch counts in c->queued: its bytes not yet sent
 * (the first may be partly sent) and its overhead. */
static size_t batch_charge(const pp__conn_t *c, size_t i)
{
    return c->batch_bufs[i].len + PP__CONN_FRAME_OVERHEAD;
}

static void drop_batch(pp__conn_t *c)
{
    size_t charge = 0;
    for (size_t i = 0; i < c->nbatch; i++) {
        charge += batch_charge(c, i);
        free(c->batch[i]);
    }
    c->nbatch = 0;
    unqueue(c, charge);
}

/* Writes the batched frames: what the socket takes now with one writev,
 * the rest with one uv_write. On failure the caller ends the connection. */
static int flush(pp__conn_t *c)
{
    size_t n = c->nbatch, first = 0, taken = 0;
    if (n == 0)
        return 0;
    int t = uv_try_write(c->stream, c->batch_bufs, (unsigned)n);
    if (t < 0 && t != UV_EAGAIN) {
        drop_batch(c);
        return t;
    }
    if (t > 0) {
        size_t done = (size_t)t;
        while (first < n && done >= c->batch_bufs[first].len) {
            done -= c->batch_bufs[first].len;
            taken += batch_charge(c, first);
            free(c->batch[first]);
            first++;
        }
        if (first == n) {
            c->nbatch = 0;
            unqueue(c, taken);
            return 0;
        }
        c->batch_bufs[first].base += done;
        c->batch_bufs[first].len -= done;
        taken += done;
    }
    size_t left = n - first, charge = 0;
    for (size_t i = first; i < n; i++)
        charge += batch_charge(c, i);
    write_req_t *w = malloc(sizeof(*w) + left * sizeof(w->frames[0]));
    if (w == NULL) {
        c->nbatch = 0;
        for (size_t i = first; i < n; i++)
            free(c->batch[i]);
        unqueue(c, taken + charge);
        return -ENOMEM;
    }
    w->conn = c;
    w->charge = charge;
    w->nframes = left;
    memcpy(w->frames, c->batch + first, left * sizeof(w->frames[0]));
    c->nbatch = 0;
    int r = uv_write(&w->req, c->stream, c->batch_bufs + first, (unsigned)left, write_cb);
    if (r < 0) {
        for (size_t i = 0; i < left; i++)
            free(w->frames[i]);
        free(w);
        taken += charge;
    }
    unqueue(c, taken);
    return r;
}

int pp__conn_flush(pp__conn_t *c)
{
    if (c->flush_queued) {
        c->flush_queued = 0;
        uv_prepare_stop(&c->flusher);
    }
    if (c->stream == NULL || c->closing)
        return -ENOTCONN;
    if (c->filter == NULL)
        return flush(c);
    if (c->filter->flush == NULL)
        return 0;
    return c->filter->flush(c->filter);
}

/* A failed flush does not end the connection from here: ending it runs the
 * owner's callbacks, which may answer on other connections whose prepare
 * handles already ran in this loop iteration, and those answers would wait
 * for the next event. The timer, due at once, ends it instead: timers run
 * before the prepare handles, so what its callbacks write goes out in the
 * same iteration. */
static void flusher_cb(uv_prepare_t *p)
{
    pp__conn_t *c = p->data;
    int r = pp__conn_flush(c);
    if (r < 0 && !c->closing && c->deferred_error == 0) {
        c->deferred_error = r;
        pp__conn_deadline(c, 1);
    }
}

/* Flushes before the loop next waits. The prepare handle keeps the loop
 * alive while it is started, so corked bytes are never left behind. */
static void queue_flush(pp__conn_t *c)
{
    if (c->flush_queued)
        return;
    c->flush_queued = 1;
    uv_prepare_start(&c->flusher, flusher_cb);
}

/* The peer is not taking its answers: past the mark, its requests are not
 * read (so it cannot make more answers); past the maximum, it goes. */
static int check_queue(pp__conn_t *c, size_t len)
{
    size_t queued = c->filter != NULL ? uv_stream_get_write_queue_size(c->stream) + len : c->queued;
    if (queued > PP_TTRPC_WRITE_MAX) {
        PP_WARN("ttrpc", "peer is not reading: %zu bytes of answers queued, closing", queued);
        fail(c, -ENOBUFS);
        return -ENOBUFS;
    }
    if (c->limited && c->filter == NULL && queued > PP_TTRPC_WRITE_PAUSE && !c->write_paused) {
        c->write_paused = 1;
        update_reading(c);
    }
    return 0;
}

int pp__conn_write(pp__conn_t *c, uint8_t *frame, size_t len)
{
    if (c->closing || c->ended) {
        free(frame);
        return -ENOTCONN;
    }
    if (c->filter != NULL) {
        if (check_queue(c, len) < 0) {
            free(frame);
            return -ENOBUFS;
        }
        int r = c->filter->write(c->filter, frame, len);
        if (r < 0) {
            fail(c, r);
            return r;
        }
        if (c->filter->flush != NULL)
            queue_flush(c);
        return 0;
    }
    size_t charge = len + PP__CONN_FRAME_OVERHEAD;
    c->batch[c->nbatch] = frame;
    c->batch_bufs[c->nbatch] = uv_buf_init((char *)frame, (unsigned)len);
    c->nbatch++;
    c->queued += charge;
    if (c->budget != NULL)
        c->budget->queued_bytes += charge;
    int r = check_queue(c, len);
    if (r < 0)
        return r;
    if (c->nbatch < PP__CONN_BATCH_MAX) {
        queue_flush(c);
        return 0;
    }
    r = flush(c);
    if (r < 0)
        fail(c, r);
    return r;
}
