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

static void close_cb(uv_handle_t *h)
{
    pp__conn_t *c = h->data;
    free(h);
    c->stream = NULL;
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
    end(c, UV_ECANCELED);
    drop_batch(c);
    uv_close((uv_handle_t *)c->stream, close_cb);
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
        end(c, (int)nread);
        pp__conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    int r;
    c->in_read = 1;
    if (c->filter != NULL)
        r = c->filter->read(c->filter, (const uint8_t *)buf->base, (size_t)nread, feed_plain,
                            &c->dec);
    else if (c->direct != NULL && (uint8_t *)buf->base == c->direct)
        r = pp_ttrpc_decoder_advance(&c->dec, (size_t)nread);
    else
        r = pp_ttrpc_decoder_feed(&c->dec, (const uint8_t *)buf->base, (size_t)nread);
    c->direct = NULL;
    c->in_read = 0;
    if (r < 0 && !c->closing) {
        end(c, r);
        pp__conn_close(c);
    }
    if (!c->closing)
        flush(c);
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
    if (status < 0 && status != UV_ECANCELED && !c->closing) {
        end(c, status);
        pp__conn_close(c);
    }
}

static void drop_batch(pp__conn_t *c)
{
    for (size_t i = 0; i < c->nbatch; i++)
        free(c->batch[i]);
    c->nbatch = 0;
}

/* Writes the batched frames with one uv_write. */
static int flush(pp__conn_t *c)
{
    if (c->nbatch == 0)
        return 0;
    size_t n = c->nbatch;
    write_req_t *w = malloc(sizeof(*w) + n * sizeof(w->frames[0]));
    if (w == NULL) {
        drop_batch(c);
        return -ENOMEM;
    }
    w->conn = c;
    w->nframes = n;
    memcpy(w->frames, c->batch, n * sizeof(w->frames[0]));
    c->nbatch = 0;
    int r = uv_write(&w->req, c->stream, c->batch_bufs, (unsigned)n, write_cb);
    if (r < 0) {
        for (size_t i = 0; i < n; i++)
            free(w->frames[i]);
        free(w);
        if (!c->closing) {
            end(c, r);
            pp__conn_close(c);
        }
    }
    return r;
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
        end(c, -ENOBUFS);
        pp__conn_close(c);
        return -ENOBUFS;
    }
    if (c->filter != NULL) {
        int r = c->filter->write(c->filter, frame, len);
        if (r < 0 && !c->closing) {
            end(c, r);
            pp__conn_close(c);
        }
        return r;
    }
    c->batch[c->nbatch] = frame;
    c->batch_bufs[c->nbatch] = uv_buf_init((char *)frame, (unsigned)len);
    c->nbatch++;
    if (c->in_read && c->nbatch < PP__CONN_BATCH_MAX)
        return 0;
    return flush(c);
}
