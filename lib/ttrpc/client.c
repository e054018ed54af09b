/* ttrpc client: one connection, many multiplexed calls. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ttrpc/conn.h"
#include "util/cleanup.h"
#include "util/log.h"

#define BUCKETS 256 /* power of two */

enum cstate { C_IDLE, C_CONNECTING, C_CONNECTED, C_DEAD };

typedef struct pending_s {
    struct pending_s *next; /* bucket chain */
    pp_ttrpc_client_t *client;
    uint32_t id;
    pp_ttrpc_result_cb cb;
    void *data;
    pp__deadline_t deadline; /* due 0: none; else in the connection's heap */
} pending_t;

struct pp_ttrpc_client_s {
    uv_loop_t *loop;
    pp__conn_t conn;
    enum cstate state;
    uint32_t next_id;
    pending_t *buckets[BUCKETS];
    size_t in_flight;
    size_t pending_closes; /* the connection's handles still closing */
    uv_connect_t connect_req;
    pp_ttrpc_connect_cb connect_cb;
    void *connect_data;
    void (*disconnect_cb)(pp_ttrpc_client_t *, void *);
    void *disconnect_data;
    pp_ttrpc_client_close_cb close_cb;
    void *close_data;
    unsigned has_stream : 1;
    unsigned closing : 1;
};

static void maybe_free(pp_ttrpc_client_t *c);

int pp_ttrpc_client_new(uv_loop_t *loop, pp_ttrpc_client_t **out)
{
    pp_ttrpc_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->loop = loop;
    c->next_id = 1;
    *out = c;
    return 0;
}

int pp_ttrpc_client_connected(const pp_ttrpc_client_t *c)
{
    return c->state == C_CONNECTED;
}

size_t pp_ttrpc_client_in_flight(const pp_ttrpc_client_t *c)
{
    return c->in_flight;
}

void pp_ttrpc_client_on_disconnect(pp_ttrpc_client_t *c, void (*cb)(pp_ttrpc_client_t *, void *),
                                   void *data)
{
    c->disconnect_cb = cb;
    c->disconnect_data = data;
}

/* ---- pending calls ----------------------------------------------------- */

static int find_pending(pp_ttrpc_client_t *c, uint32_t id)
{
    for (pending_t *p = c->buckets[(id >> 1) & (BUCKETS - 1)]; p != NULL; p = p->next)
        if (p->id == id)
            return 1;
    return 0;
}

static pending_t *take_pending(pp_ttrpc_client_t *c, uint32_t id)
{
    pending_t **pp = &c->buckets[(id >> 1) & (BUCKETS - 1)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            pending_t *p = *pp;
            *pp = p->next;
            p->next = NULL;
            c->in_flight--;
            pp__conn_deadline_remove(&c->conn, &p->deadline);
            return p;
        }
    }
    return NULL;
}

static void pending_release(pending_t *p)
{
    free(p);
}

/* Completes a call that was taken out of the table. */
static void complete_local(pending_t *p, int code, const char *msg)
{
    pp_ttrpc_result_t res = {0};
    res.code = code;
    res.message.p = msg;
    res.message.n = strlen(msg);
    pp_ttrpc_result_cb cb = p->cb;
    void *data = p->data;
    pending_release(p);
    cb(&res, data);
}

/* Fails every call in flight; callbacks may start new calls or close. */
static void fail_all(pp_ttrpc_client_t *c, int code, const char *msg)
{
    pending_t *list = NULL;
    for (size_t i = 0; i < BUCKETS; i++) {
        while (c->buckets[i] != NULL) {
            pending_t *p = c->buckets[i];
            c->buckets[i] = p->next;
            p->next = list;
            list = p;
        }
    }
    c->in_flight = 0;
    for (pending_t *p = list; p != NULL; p = p->next)
        pp__conn_deadline_remove(&c->conn, &p->deadline);
    while (list != NULL) {
        pending_t *p = list;
        list = p->next;
        complete_local(p, code, msg);
    }
}

/* The connection's timer: completes every call whose deadline has passed,
 * earliest first, each taken out of the table (and the heap) before its
 * callback, which may make or end calls, or close the client. */
static uint64_t cconn_expire(pp__conn_t *conn, uint64_t now)
{
    pp_ttrpc_client_t *c = conn->owner;
    pp__deadline_t *e;
    while (!c->closing && (e = pp__conn_deadline_due(conn, now)) != NULL) {
        pending_t *p = take_pending(c, container_of(e, pending_t, deadline)->id);
        complete_local(p, PP_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
    }
    return 0;
}

/* ---- connection -------------------------------------------------------- */

static int cconn_frame(pp__conn_t *conn, const pp_ttrpc_header_t *h, uint8_t *frame)
{
    pp_ttrpc_client_t *c = conn->owner;
    if (h->type != PP_TTRPC_RESPONSE) {
        free(frame);
        return 0;
    }
    pending_t *p = take_pending(c, h->stream_id);
    if (p == NULL) {
        /* A late answer to a call that already timed out. */
        free(frame);
        return 0;
    }
    pp_ttrpc_response_t resp;
    if (pp_ttrpc_response_decode(frame + PP_TTRPC_HEADER_SIZE, h->length, &resp) < 0) {
        free(frame);
        complete_local(p, PP_GRPC_INTERNAL, "malformed response");
        return 0;
    }
    pp_ttrpc_result_t res = {
        .code = resp.code,
        .message = resp.message,
        .payload = resp.payload,
        .payload_len = resp.payload_len,
        .frame = frame,
        .frame_len = PP_TTRPC_HEADER_SIZE + (size_t)h->length,
    };
    pp_ttrpc_result_cb cb = p->cb;
    void *data = p->data;
    pending_release(p);
    cb(&res, data);
    free(res.frame); /* unless the callback stole it */
    return 0;
}

static int cconn_oversize(pp__conn_t *conn, const pp_ttrpc_header_t *h)
{
    pp_ttrpc_client_t *c = conn->owner;
    pending_t *p = take_pending(c, h->stream_id);
    if (p != NULL)
        complete_local(p, PP_GRPC_RESOURCE_EXHAUSTED, "response exceeds maximum message size");
    return 0;
}

static void cconn_ended(pp__conn_t *conn, int status)
{
    pp_ttrpc_client_t *c = conn->owner;
    int was = c->state;
    c->state = C_DEAD;
    if (c->closing)
        return;
    char msg[512];
    const char *why =
        conn->filter && conn->filter->last_error ? conn->filter->last_error(conn->filter) : NULL;
    snprintf(msg, sizeof(msg), "connection closed: %s",
             why                ? why
             : status == UV_EOF ? "end of stream"
                                : uv_strerror(status));
    fail_all(c, PP_GRPC_UNAVAILABLE, msg);
    if (was == C_CONNECTED && c->disconnect_cb && !c->closing)
        c->disconnect_cb(c, c->disconnect_data);
}

static void cconn_closed(pp__conn_t *conn)
{
    pp_ttrpc_client_t *c = conn->owner;
    c->has_stream = 0;
    c->pending_closes--;
    maybe_free(c);
}

static const pp__conn_ops_t cconn_ops = {
    .frame = cconn_frame,
    .oversize = cconn_oversize,
    .ended = cconn_ended,
    .closed = cconn_closed,
    .expire = cconn_expire,
};

int pp_ttrpc_client_open(pp_ttrpc_client_t *c, uv_stream_t *stream)
{
    return pp_ttrpc_client_open_filtered(c, stream, NULL);
}

int pp_ttrpc_client_open_filtered(pp_ttrpc_client_t *c, uv_stream_t *stream,
                                  pp_stream_filter_t *filter)
{
    if (c->state != C_IDLE) {
        if (filter)
            filter->destroy(filter);
        return -EALREADY;
    }
    pp__conn_init(&c->conn, stream, &cconn_ops, c);
    c->conn.filter = filter;
    c->has_stream = 1;
    c->pending_closes++;
    int r = pp__conn_start(&c->conn);
    if (r < 0) {
        c->state = C_DEAD;
        pp__conn_close(&c->conn);
        return r;
    }
    c->state = C_CONNECTED;
    return 0;
}

static void connect_done(uv_connect_t *req, int status)
{
    pp_ttrpc_client_t *c = container_of(req, pp_ttrpc_client_t, connect_req);
    pp_ttrpc_connect_cb cb = c->connect_cb;
    if (status == 0 && !c->closing) {
        int r = pp__conn_start(&c->conn);
        if (r == 0)
            c->state = C_CONNECTED;
        status = r;
    }
    if (status < 0) {
        c->state = C_DEAD;
        if (status == UV_ECANCELED && c->closing)
            status = -ECANCELED;
        pp__conn_close(&c->conn);
    }
    if (cb)
        cb(c, status, c->connect_data);
}

static int start_connect(pp_ttrpc_client_t *c, uv_stream_t *stream, pp_ttrpc_connect_cb cb,
                         void *data)
{
    pp__conn_init(&c->conn, stream, &cconn_ops, c);
    c->has_stream = 1;
    c->pending_closes++;
    c->state = C_CONNECTING;
    c->connect_cb = cb;
    c->connect_data = data;
    return 0;
}

int pp_ttrpc_client_connect_unix(pp_ttrpc_client_t *c, const char *path, pp_ttrpc_connect_cb cb,
                                 void *data)
{
    if (c->state != C_IDLE)
        return -EALREADY;
    uv_pipe_t *p = malloc(sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    int r = uv_pipe_init(c->loop, p, 0);
    if (r < 0) {
        free(p);
        return r;
    }
    start_connect(c, (uv_stream_t *)p, cb, data);
    /* uv_pipe_connect reports every error through the callback. */
    uv_pipe_connect(&c->connect_req, p, path, connect_done);
    return 0;
}

int pp_ttrpc_client_connect_tcp(pp_ttrpc_client_t *c, const struct sockaddr *addr,
                                pp_ttrpc_connect_cb cb, void *data)
{
    if (c->state != C_IDLE)
        return -EALREADY;
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    int r = uv_tcp_init(c->loop, t);
    if (r < 0) {
        free(t);
        return r;
    }
    uv_tcp_nodelay(t, 1);
    r = uv_tcp_connect(&c->connect_req, t, addr, connect_done);
    if (r < 0) {
        uv_close((uv_handle_t *)t, (uv_close_cb)free);
        return r;
    }
    start_connect(c, (uv_stream_t *)t, cb, data);
    return 0;
}

/* ---- calls ------------------------------------------------------------- */

static int send_frame(pp_ttrpc_client_t *c, uint8_t *frame, size_t len, int64_t timeout_nano,
                      pp_ttrpc_result_cb cb, void *data)
{
    if (c->state != C_CONNECTED || c->closing) {
        free(frame);
        return -ENOTCONN;
    }
    if (len > PP_TTRPC_HEADER_SIZE + PP_TTRPC_MAX_MESSAGE) {
        free(frame);
        return -EMSGSIZE;
    }
    pending_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        free(frame);
        return -ENOMEM;
    }
    /* Odd ids, increasing; after a wrap, skip any still in flight. */
    uint32_t id;
    do {
        id = c->next_id;
        c->next_id = id >= UINT32_MAX - 1 ? 1 : id + 2;
    } while (find_pending(c, id));
    p->client = c;
    p->id = id;
    p->cb = cb;
    p->data = data;
    pp_ttrpc_frame_set_stream(frame, id);
    frame[8] = PP_TTRPC_REQUEST;
    int r = pp__conn_write(&c->conn, frame, len);
    if (r < 0) {
        free(p);
        return r;
    }
    if (timeout_nano > 0) {
        /* The loop's cached time may be stale if the caller blocked. */
        uv_update_time(c->loop);
        p->deadline.due = uv_now(c->loop) + ((uint64_t)timeout_nano + 999999) / 1000000;
        if (pp__conn_deadline_add(&c->conn, &p->deadline) < 0) {
            /* The frame is on its way: its answer will find no call. */
            free(p);
            return -ENOMEM;
        }
    }
    pending_t **b = &c->buckets[(id >> 1) & (BUCKETS - 1)];
    p->next = *b;
    *b = p;
    c->in_flight++;
    return 0;
}

int pp_ttrpc_client_call(pp_ttrpc_client_t *c, const pp_ttrpc_call_opts_t *o, pp_ttrpc_result_cb cb,
                         void *data)
{
    pp_ttrpc_request_t req = {0};
    req.service.p = o->service;
    req.service.n = strlen(o->service);
    req.method.p = o->method;
    req.method.n = strlen(o->method);
    req.payload = o->payload;
    req.payload_len = o->payload_len;
    req.timeout_nano = o->timeout_nano;
    req.metadata = (pp_ttrpc_kv_t *)o->metadata;
    req.metadata_count = o->metadata_count;
    uint8_t *frame;
    size_t len;
    int r = pp_ttrpc_request_frame(&req, &frame, &len);
    if (r < 0)
        return r;
    return send_frame(c, frame, len, o->timeout_nano, cb, data);
}

int pp_ttrpc_client_call_frame(pp_ttrpc_client_t *c, uint8_t *frame, size_t len,
                               int64_t timeout_nano, pp_ttrpc_result_cb cb, void *data)
{
    if (len < PP_TTRPC_HEADER_SIZE) {
        free(frame);
        return -EINVAL;
    }
    return send_frame(c, frame, len, timeout_nano, cb, data);
}

/* ---- close ------------------------------------------------------------- */

static void maybe_free(pp_ttrpc_client_t *c)
{
    if (!c->closing || c->pending_closes > 0)
        return;
    pp_ttrpc_client_close_cb cb = c->close_cb;
    void *data = c->close_data;
    if (cb)
        cb(c, data);
    free(c);
}

void pp_ttrpc_client_close(pp_ttrpc_client_t *c, pp_ttrpc_client_close_cb cb, void *data)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->close_cb = cb;
    c->close_data = data;
    c->pending_closes++; /* held while failing calls, so callbacks cannot free c */
    fail_all(c, PP_GRPC_CANCELLED, "client closed");
    if (c->has_stream && !c->conn.closing)
        pp__conn_close(&c->conn);
    c->pending_closes--;
    maybe_free(c);
}
