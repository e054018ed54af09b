#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/log.h"

typedef struct write_req_s {
    uv_write_t req;
    pp__conn_t *conn;
    size_t nframes;
    uint8_t *frames[]; /* freed when written */
} write_req_t;

static void drop_batch(pp__conn_t *c);
static int flush(pp__conn_t *c);

static int on_frame(void *ctx, const pp_ttrpc_header_t *h, uint8_t *frame)
{
    pp__conn_t *c = ctx;
    return c->ops->frame(c, h, frame);
}

static int on_oversize(void *ctx, const pp_ttrpc_header_t *h)
{
    pp__conn_t *c = ctx;
    return c->ops->oversize ? c->ops->oversize(c, h) : 0;
}

void pp__conn_init(pp__conn_t *c, uv_stream_t *stream, const pp__conn_ops_t *ops, void *owner)
{
    memset(c, 0, sizeof(*c));
    c->stream = stream;
    c->ops = ops;
    c->owner = owner;
    stream->data = c;
    uv_prepare_init(stream->loop, &c->flusher);
    c->flusher.data = c;
    uv_timer_init(stream->loop, &c->deadlines);
    c->deadlines.data = c;
    c->open_handles = 3;
    pp_ttrpc_decoder_init(&c->dec, PP_TTRPC_MAX_MESSAGE, on_frame, on_oversize, c);
}

static void end(pp__conn_t *c, int status)
{
    if (c->ended)
        return;
    c->ended = 1;
    uv_read_stop(c->stream);
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
    free(c->scratch);
    c->scratch = NULL;
    c->ops->closed(c);
}

void pp__conn_close(pp__conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    /* Answers written just before the close still go out, as far as the
     * socket takes them now (writes left queued are cancelled by the
     * close). */
    pp__conn_flush(c);
    end(c, UV_ECANCELED);
    drop_batch(c);
    uv_close((uv_handle_t *)c->stream, close_cb);
    uv_close((uv_handle_t *)&c->flusher, close_cb);
    uv_close((uv_handle_t *)&c->deadlines, close_cb);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    pp__conn_t *c = h->data;
    (void)suggested;
    uint8_t *p;
    /* Through a filter, read bytes are not frame bytes: no direct reads. */
    size_t n = c->filter ? 0 : pp_ttrpc_decoder_direct(&c->dec, &p, PP__CONN_READ_CHUNK);
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
    if (r < 0)
        fail(c, r);
}

static void deadline_cb(uv_timer_t *t)
{
    pp__conn_t *c = t->data;
    c->deadline_due = 0;
    if (c->deferred_error != 0) {
        fail(c, c->deferred_error);
        return;
    }
    uint64_t next = c->ops->expire ? c->ops->expire(c, uv_now(t->loop)) : 0;
    if (next != 0)
        pp__conn_deadline(c, next);
}

void pp__conn_deadline(pp__conn_t *c, uint64_t due)
{
    if (c->closing || (c->deadline_due != 0 && c->deadline_due <= due))
        return;
    uint64_t now = uv_now(c->deadlines.loop);
    c->deadline_due = due;
    uv_timer_start(&c->deadlines, deadline_cb, due > now ? due - now : 0, 0);
}

int pp__conn_start(pp__conn_t *c)
{
    return uv_read_start(c->stream, alloc_cb, read_cb);
}

static void write_cb(uv_write_t *req, int status)
{
    write_req_t *w = container_of(req, write_req_t, req);
    pp__conn_t *c = w->conn;
    for (size_t i = 0; i < w->nframes; i++)
        free(w->frames[i]);
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        fail(c, status);
}

static void drop_batch(pp__conn_t *c)
{
    for (size_t i = 0; i < c->nbatch; i++)
        free(c->batch[i]);
    c->nbatch = 0;
}

/* Writes the batched frames: what the socket takes now with one writev,
 * the rest with one uv_write. On failure the caller ends the connection. */
static int flush(pp__conn_t *c)
{
    size_t n = c->nbatch, first = 0;
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
            free(c->batch[first]);
            first++;
        }
        if (first == n) {
            c->nbatch = 0;
            return 0;
        }
        c->batch_bufs[first].base += done;
        c->batch_bufs[first].len -= done;
    }
    size_t left = n - first;
    write_req_t *w = malloc(sizeof(*w) + left * sizeof(w->frames[0]));
    if (w == NULL) {
        c->nbatch = 0;
        for (size_t i = first; i < n; i++)
            free(c->batch[i]);
        return -ENOMEM;
    }
    w->conn = c;
    w->nframes = left;
    memcpy(w->frames, c->batch + first, left * sizeof(w->frames[0]));
    c->nbatch = 0;
    int r = uv_write(&w->req, c->stream, c->batch_bufs + first, (unsigned)left, write_cb);
    if (r < 0) {
        for (size_t i = 0; i < left; i++)
            free(w->frames[i]);
        free(w);
    }
    return r;
}

int pp__conn_flush(pp__conn_t *c)
{
    if (c->flush_queued) {
        c->flush_queued = 0;
        uv_prepare_stop(&c->flusher);
    }
    if (c->stream == NULL)
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
 * for the next event. The deadline timer, due at once, ends it instead:
 * timers run before the prepare handles, so what its callbacks write goes
 * out in the same iteration. */
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

int pp__conn_write(pp__conn_t *c, uint8_t *frame, size_t len)
{
    if (c->closing || c->ended) {
        free(frame);
        return -ENOTCONN;
    }
    if (uv_stream_get_write_queue_size(c->stream) > PP__CONN_WRITE_QUEUE_MAX) {
        /* The peer stopped reading; holding more would only grow memory. */
        free(frame);
        PP_WARN("ttrpc", "peer is not reading: write queue over %u bytes, closing",
                PP__CONN_WRITE_QUEUE_MAX);
        fail(c, -ENOBUFS);
        return -ENOBUFS;
    }
    if (c->filter != NULL) {
        int r = c->filter->write(c->filter, frame, len);
        if (r < 0) {
            fail(c, r);
            return r;
        }
        if (c->filter->flush != NULL)
            queue_flush(c);
        return 0;
    }
    c->batch[c->nbatch] = frame;
    c->batch_bufs[c->nbatch] = uv_buf_init((char *)frame, (unsigned)len);
    c->nbatch++;
    if (c->nbatch < PP__CONN_BATCH_MAX) {
        queue_flush(c);
        return 0;
    }
    int r = flush(c);
    if (r < 0)
        fail(c, r);
    return r;
}
