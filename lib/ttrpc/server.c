/* ttrpc server: listeners, connections, dispatch, deadlines, limits. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ttrpc/conn.h"
#include "util/cleanup.h"
#include "util/log.h"

#define MAX_LISTENERS 4

typedef struct method_s {
    char *service;
    char *method;
    pp_ttrpc_handler_cb cb;
    void *data;
} method_t;

typedef struct sconn_s sconn_t;

struct pp_ttrpc_call_s {
    sconn_t *sc; /* NULL once the connection is gone */
    struct pp_ttrpc_call_s *prev, *next;
    pp_ttrpc_server_t *srv;
    uint32_t stream_id;
    uint8_t *frame; /* header + the encoded request; NULL once stolen */
    size_t raw_len;
    pp_ttrpc_request_t req;
    pp__deadline_t deadline; /* due 0: none; else in the connection's heap */
    size_t charge;           /* heap held, counted to the connection */
    void (*cancel_cb)(pp_ttrpc_call_t *, void *);
    void *cancel_data;
    unsigned cancelled : 1; /* no answer can be sent any more */
};

struct sconn_s {
    pp__conn_t conn;
    pp_ttrpc_server_t *srv;
    sconn_t *prev, *next;
    sconn_t *idle_prev, *idle_next; /* in srv's idle list, oldest first */
    uint64_t idle_since;            /* loop time it went idle */
    pp_ttrpc_call_t *calls;
    size_t ncalls;
    unsigned closed : 1; /* handle closed; freed once no call refers to it */
    unsigned idle : 1;   /* in the idle list */
    unsigned live : 1;   /* counted in srv->live and the budget */
};

typedef struct listener_s {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } u;
    pp_ttrpc_server_t *srv;
    int is_pipe;
} listener_t;

struct pp_ttrpc_server_s {
    uv_loop_t *loop;
    method_t *methods;
    size_t nmethods;
    pp_ttrpc_handler_cb fallback;
    void *fallback_data;
    listener_t *listeners[MAX_LISTENERS];
    size_t nlisteners;
    sconn_t *conns;
    sconn_t *idle_head, *idle_tail; /* connections with nothing going on */
    size_t live;                    /* connections open and not ending */
    size_t in_flight;
    pp_ttrpc_server_opts_t opts; /* with defaults filled in */
    char name[64];
    pp_ttrpc_budget_t own_budget;
    pp_ttrpc_budget_t *budget; /* &own_budget or a shared one */
    uv_timer_t idle_timer;     /* closes idle connections past the timeout */
    uint64_t idle_timer_due;
    pp_log_limit_t refuse_log;
    size_t pending_closes; /* listeners and connections still closing */
    pp_ttrpc_server_close_cb close_cb;
    void *close_data;
    void (*accept_hook)(pp_ttrpc_server_t *, uv_stream_t *, void *);
    void *accept_data;
    unsigned closing : 1;
    unsigned graceful : 1;
};

static void maybe_finish_close(pp_ttrpc_server_t *srv);
static void sconn_close(sconn_t *sc);
static void sconn_touch(sconn_t *sc);

/* ---- registration ------------------------------------------------------ */

int pp_ttrpc_server_new(uv_loop_t *loop, pp_ttrpc_server_t **out)
{
    pp_ttrpc_server_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return -ENOMEM;
    srv->loop = loop;
    pp_ttrpc_budget_init(&srv->own_budget, PP_TTRPC_BUDGET_BYTES, 0);
    pp_ttrpc_server_opts_t o = {0};
    pp_ttrpc_server_set_opts(srv, &o);
    uv_timer_init(loop, &srv->idle_timer);
    srv->idle_timer.data = srv;
    *out = srv;
    return 0;
}

int pp_ttrpc_server_set_opts(pp_ttrpc_server_t *srv, const pp_ttrpc_server_opts_t *o)
{
    pp_ttrpc_server_opts_t v = *o;
    if (v.max_conns == 0)
        v.max_conns = PP_TTRPC_MAX_CONNS;
    if (v.frame_timeout_ms == 0)
        v.frame_timeout_ms = PP_TTRPC_FRAME_TIMEOUT_MS;
    if (v.conn_max_held == 0)
        v.conn_max_held = PP_TTRPC_CONN_MAX_HELD;
    if (v.socket_mode == 0)
        v.socket_mode = 0600;
    v.socket_mode &= 0777;
    snprintf(srv->name, sizeof(srv->name), "%s", o->name ? o->name : "ttrpc");
    v.name = srv->name;
    srv->budget = v.budget ? v.budget : &srv->own_budget;
    srv->opts = v;
    return 0;
}

const pp_ttrpc_budget_t *pp_ttrpc_server_budget(const pp_ttrpc_server_t *srv)
{
    return srv->budget;
}

size_t pp_ttrpc_server_conns(const pp_ttrpc_server_t *srv)
{
    return srv->live;
}

static method_t *find_method(pp_ttrpc_server_t *srv, pp_str_t service, pp_str_t method)
{
    for (size_t i = 0; i < srv->nmethods; i++) {
        method_t *m = &srv->methods[i];
        if (pp_str_eq(service, m->service) && pp_str_eq(method, m->method))
            return m;
    }
    return NULL;
}

int pp_ttrpc_server_register(pp_ttrpc_server_t *srv, const char *service, const char *method,
                             pp_ttrpc_handler_cb cb, void *data)
{
    pp_str_t s = {service, strlen(service)}, m = {method, strlen(method)};
    if (find_method(srv, s, m) != NULL)
        return -EEXIST;
    method_t *v = realloc(srv->methods, (srv->nmethods + 1) * sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    srv->methods = v;
    method_t *e = &v[srv->nmethods];
    e->service = strdup(service);
    e->method = strdup(method);
    if (e->service == NULL || e->method == NULL) {
        free(e->service);
        free(e->method);
        return -ENOMEM;
    }
    e->cb = cb;
    e->data = data;
    srv->nmethods++;
    return 0;
}

void pp_ttrpc_server_set_fallback(pp_ttrpc_server_t *srv, pp_ttrpc_handler_cb cb, void *data)
{
    srv->fallback = cb;
    srv->fallback_data = data;
}

size_t pp_ttrpc_server_in_flight(const pp_ttrpc_server_t *srv)
{
    return srv->in_flight;
}

/* ---- answering --------------------------------------------------------- */

static int send_status(sconn_t *sc, uint32_t stream_id, int code, const char *msg)
{
    uint8_t *frame;
    size_t len;
    int r = pp_ttrpc_response_frame(code, msg, NULL, 0, &frame, &len);
    if (r < 0)
        return r;
    pp_ttrpc_frame_set_stream(frame, stream_id);
    return pp__conn_write(&sc->conn, frame, len);
}

static void sconn_maybe_free(sconn_t *sc)
{
    if (sc->closed && sc->ncalls == 0)
        free(sc);
}

/* Detaches the call from its connection; the caller decides the
 * connection's fate. */
static void unlink_call(pp_ttrpc_call_t *call)
{
    sconn_t *sc = call->sc;
    if (sc == NULL)
        return;
    if (call->prev)
        call->prev->next = call->next;
    else
        sc->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->sc = NULL;
    sc->ncalls--;
    pp__conn_deadline_remove(&sc->conn, &call->deadline);
    pp__conn_charge(&sc->conn, -(ptrdiff_t)call->charge);
    call->charge = 0;
}

/* The handler has answered: release everything the call holds. */
static void call_finish(pp_ttrpc_call_t *call)
{
    pp_ttrpc_server_t *srv = call->srv;
    sconn_t *sc = call->sc;
    unlink_call(call);
    pp_ttrpc_request_fini(&call->req);
    free(call->frame);
    call->frame = NULL;
    srv->in_flight--;
    free(call);
    if (sc != NULL && sc->ncalls == 0) {
        if (sc->closed)
            free(sc); /* the last call held it after its handle closed */
        else if (srv->closing)
            sconn_close(sc); /* a graceful close waited for this answer */
        else
            sconn_touch(sc);
    }
    maybe_finish_close(srv);
}

static void cancel_call(pp_ttrpc_call_t *call)
{
    if (call->cancelled)
        return;
    call->cancelled = 1;
    if (call->cancel_cb)
        call->cancel_cb(call, call->cancel_data);
}

static int answer(pp_ttrpc_call_t *call, uint8_t *frame, size_t len)
{
    int r = 0;
    if (call->cancelled || call->sc == NULL || call->sc->closed) {
        free(frame);
        r = -ECANCELED;
    } else {
        pp_ttrpc_frame_set_stream(frame, call->stream_id);
        r = pp__conn_write(&call->sc->conn, frame, len);
    }
    call_finish(call);
    return r;
}

int pp_ttrpc_call_reply(pp_ttrpc_call_t *call, const void *payload, size_t len)
{
    uint8_t *frame;
    size_t flen;
    int r = pp_ttrpc_response_frame(0, NULL, payload, len, &frame, &flen);
    if (r < 0) {
        /* Too big or out of memory: the caller still gets an answer. */
        r = pp_ttrpc_response_frame(r == -EMSGSIZE ? PP_GRPC_RESOURCE_EXHAUSTED : PP_GRPC_INTERNAL,
                                    "response too large or out of memory", NULL, 0, &frame, &flen);
        if (r < 0) {
            call_finish(call);
            return r;
        }
    }
    return answer(call, frame, flen);
}

int pp_ttrpc_call_fail(pp_ttrpc_call_t *call, int code, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    /* A message that does not fit in a frame is cut to what does. */
    if (n > (int)(PP_TTRPC_MAX_MESSAGE - 64))
        msg[PP_TTRPC_MAX_MESSAGE - 64] = '\0';
    uint8_t *frame;
    size_t flen;
    int r = n < 0 ? -ENOMEM : pp_ttrpc_response_frame(code, msg, NULL, 0, &frame, &flen);
    free(n < 0 ? NULL : msg);
    if (r < 0) {
        call_finish(call);
        return r;
    }
    return answer(call, frame, flen);
}

int pp_ttrpc_call_reply_frame(pp_ttrpc_call_t *call, uint8_t *frame, size_t len)
{
    if (len < PP_TTRPC_HEADER_SIZE) {
        free(frame);
        return pp_ttrpc_call_fail(call, PP_GRPC_INTERNAL, "malformed response frame");
    }
    frame[8] = PP_TTRPC_RESPONSE;
    return answer(call, frame, len);
}

const pp_ttrpc_request_t *pp_ttrpc_call_request(const pp_ttrpc_call_t *call)
{
    return &call->req;
}

const uint8_t *pp_ttrpc_call_raw(const pp_ttrpc_call_t *call, size_t *len)
{
    *len = call->frame ? call->raw_len : 0;
    return call->frame ? call->frame + PP_TTRPC_HEADER_SIZE : NULL;
}

uint8_t *pp_ttrpc_call_steal_frame(pp_ttrpc_call_t *call, size_t *len)
{
    uint8_t *f = call->frame;
    *len = f ? PP_TTRPC_HEADER_SIZE + call->raw_len : 0;
    call->frame = NULL;
    return f;
}

uint64_t pp_ttrpc_call_deadline(const pp_ttrpc_call_t *call)
{
    return call->deadline.due;
}

void pp_ttrpc_call_on_cancel(pp_ttrpc_call_t *call, void (*cb)(pp_ttrpc_call_t *, void *),
                             void *data)
{
    call->cancel_cb = cb;
    call->cancel_data = data;
}

int pp_ttrpc_call_is_cancelled(const pp_ttrpc_call_t *call)
{
    return call->cancelled;
}

/* The connection's timer: answers every call whose deadline has passed
 * (the handler's later answer is dropped) and tells its handler. Each is
 * taken from the heap before its callback, which may answer, and so take
 * out, any other call. */
static uint64_t sconn_expire(pp__conn_t *c, uint64_t now)
{
    sconn_t *sc = c->owner;
    pp__deadline_t *e;
    while (!c->closing && (e = pp__conn_deadline_due(c, now)) != NULL) {
        pp_ttrpc_call_t *due = container_of(e, pp_ttrpc_call_t, deadline);
        pp__conn_deadline_remove(c, e);
        send_status(sc, due->stream_id, PP_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
        cancel_call(due);
    }
    return 0;
}

/* ---- dispatch ---------------------------------------------------------- */

static int dispatch(sconn_t *sc, uint32_t stream_id, uint8_t *frame, size_t len)
{
    pp_ttrpc_server_t *srv = sc->srv;
    pp_ttrpc_call_t *call = calloc(1, sizeof(*call));
    if (call == NULL) {
        free(frame);
        return send_status(sc, stream_id, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    call->frame = frame;
    call->raw_len = len;
    call->stream_id = stream_id;
    call->srv = srv;
    int r = pp_ttrpc_request_decode(frame + PP_TTRPC_HEADER_SIZE, len, &call->req);
    if (r == -E2BIG) {
        free(frame);
        free(call);
        char msg[128];
        snprintf(msg, sizeof(msg), "request has more than %u metadata entries",
                 PP_TTRPC_MAX_METADATA);
        return send_status(sc, stream_id, PP_GRPC_RESOURCE_EXHAUSTED, msg);
    }
    if (r < 0) {
        free(frame);
        free(call);
        /* An undecodable request means the peer is broken: drop the conn. */
        PP_WARN("ttrpc", "undecodable request on stream %u, closing connection", stream_id);
        return -EBADMSG;
    }
    if (srv->closing)
        goto refuse;

    pp_ttrpc_handler_cb cb = srv->fallback;
    void *data = srv->fallback_data;
    method_t *m = find_method(srv, call->req.service, call->req.method);
    if (m != NULL) {
        cb = m->cb;
        data = m->data;
    }
    if (cb == NULL) {
        /* Same messages as containerd's: "service X" or "method Y". */
        char msg[600];
        int known = 0;
        for (size_t i = 0; i < srv->nmethods && !known; i++)
            known = pp_str_eq(call->req.service, srv->methods[i].service);
        if (known)
            snprintf(msg, sizeof(msg), "method %.*s",
                     (int)(call->req.method.n > 256 ? 256 : call->req.method.n),
                     call->req.method.p);
        else
            snprintf(msg, sizeof(msg), "service %.*s",
                     (int)(call->req.service.n > 256 ? 256 : call->req.service.n),
                     call->req.service.p);
        pp_ttrpc_request_fini(&call->req);
        free(call->frame);
        free(call);
        return send_status(sc, stream_id, PP_GRPC_UNIMPLEMENTED, msg);
    }

    /* Link the call to its connection before the handler may answer. */
    call->sc = sc;
    call->next = sc->calls;
    if (sc->calls)
        sc->calls->prev = call;
    sc->calls = call;
    sc->ncalls++;
    srv->in_flight++;
    sconn_touch(sc);
    /* What the call holds until it is answered counts against the
     * connection's cap and the budget. */
    call->charge = sizeof(*call) + PP_TTRPC_HEADER_SIZE + len +
                   call->req.metadata_count * sizeof(pp_ttrpc_kv_t);
    pp__conn_charge(&sc->conn, (ptrdiff_t)call->charge);

    if (call->req.timeout_nano > 0) {
        uint64_t ms = ((uint64_t)call->req.timeout_nano + 999999) / 1000000;
        call->deadline.due = uv_now(srv->loop) + ms;
        if (pp__conn_deadline_add(&sc->conn, &call->deadline) < 0) {
            unlink_call(call);
            srv->in_flight--;
            goto refuse_memory;
        }
    }
    cb(call, data);
    return 0;

refuse_memory:
    pp_ttrpc_request_fini(&call->req);
    free(call->frame);
    free(call);
    return send_status(sc, stream_id, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");

refuse:
    pp_ttrpc_request_fini(&call->req);
    free(call->frame);
    free(call);
    return send_status(sc, stream_id, PP_GRPC_UNAVAILABLE, "server is shutting down");
}

static int sconn_frame(pp__conn_t *c, const pp_ttrpc_header_t *h, uint8_t *frame)
{
    sconn_t *sc = c->owner;
    if (h->type != PP_TTRPC_REQUEST) {
        /* Other types are for streams this server does not offer. */
        free(frame);
        return 0;
    }
    if (h->stream_id % 2 != 1) {
        free(frame);
        return send_status(sc, h->stream_id, PP_GRPC_INVALID_ARGUMENT,
                           "stream id must be odd for client initiated streams");
    }
    return dispatch(sc, h->stream_id, frame, h->length);
}

static int sconn_oversize(pp__conn_t *c, const pp_ttrpc_header_t *h)
{
    sconn_t *sc = c->owner;
    char msg[128];
    snprintf(msg, sizeof(msg), "message length %u exceeds maximum message size of %u", h->length,
             PP_TTRPC_MAX_MESSAGE);
    return send_status(sc, h->stream_id, PP_GRPC_RESOURCE_EXHAUSTED, msg);
}

/* Tells the handlers of every call in flight that it can no longer be
 * answered. A handler may answer (and so free) its call from the callback,
 * so the list is walked with the next pointer taken first, and the
 * connection is held by a pretend call meanwhile. */
static void cancel_all(sconn_t *sc)
{
    sc->ncalls++;
    pp_ttrpc_call_t *next;
    for (pp_ttrpc_call_t *call = sc->calls; call != NULL; call = next) {
        next = call->next;
        cancel_call(call);
    }
    sc->ncalls--;
}

/* ---- idle connections -------------------------------------------------- */

static void idle_unlink(sconn_t *sc)
{
    pp_ttrpc_server_t *srv = sc->srv;
    if (!sc->idle)
        return;
    if (sc->idle_prev)
        sc->idle_prev->idle_next = sc->idle_next;
    else
        srv->idle_head = sc->idle_next;
    if (sc->idle_next)
        sc->idle_next->idle_prev = sc->idle_prev;
    else
        srv->idle_tail = sc->idle_prev;
    sc->idle_prev = sc->idle_next = NULL;
    sc->idle = 0;
}

static void idle_timer_cb(uv_timer_t *t);

static void idle_timer_arm(pp_ttrpc_server_t *srv)
{
    if (srv->opts.idle_timeout_ms == 0 || srv->idle_head == NULL || srv->closing)
        return;
    uint64_t due = srv->idle_head->idle_since + srv->opts.idle_timeout_ms;
    /* Set already for that or sooner: it fires, and sets itself again. */
    if (srv->idle_timer_due != 0 && srv->idle_timer_due <= due)
        return;
    uint64_t now = uv_now(srv->loop);
    srv->idle_timer_due = due;
    uv_timer_start(&srv->idle_timer, idle_timer_cb, due > now ? due - now : 0, 0);
}

/* Closes the connections idle past the timeout: the list is oldest first. */
static void idle_timer_cb(uv_timer_t *t)
{
    pp_ttrpc_server_t *srv = t->data;
    srv->idle_timer_due = 0;
    uint64_t now = uv_now(srv->loop);
    while (srv->idle_head != NULL &&
           srv->idle_head->idle_since + srv->opts.idle_timeout_ms <= now) {
        sconn_t *sc = srv->idle_head;
        idle_unlink(sc);
        srv->budget->stats.idle_closed++;
        sconn_close(sc);
    }
    idle_timer_arm(srv);
}

/* A connection is idle when it has no call in flight and no frame begun:
 * then it joins the end of the idle list (again, after each read), and
 * leaves it when that changes. O(1). */
static void sconn_touch(sconn_t *sc)
{
    pp_ttrpc_server_t *srv = sc->srv;
    idle_unlink(sc);
    if (sc->ncalls > 0 || sc->conn.closing || sc->conn.ended || sc->closed ||
        pp_ttrpc_decoder_busy(&sc->conn.dec))
        return;
    sc->idle = 1;
    sc->idle_since = uv_now(srv->loop);
    sc->idle_prev = srv->idle_tail;
    if (srv->idle_tail)
        srv->idle_tail->idle_next = sc;
    else
        srv->idle_head = sc;
    srv->idle_tail = sc;
    idle_timer_arm(srv);
}

static void sconn_read_done(pp__conn_t *c)
{
    sconn_touch(c->owner);
}

static void sconn_ended(pp__conn_t *c, int status)
{
    sconn_t *sc = c->owner;
    (void)status;
    idle_unlink(sc);
    if (sc->live) {
        sc->live = 0;
        sc->srv->live--;
        sc->srv->budget->conns--;
    }
    cancel_all(sc);
}

static void sconn_closed(pp__conn_t *c)
{
    sconn_t *sc = c->owner;
    pp_ttrpc_server_t *srv = sc->srv;
    if (sc->prev)
        sc->prev->next = sc->next;
    else
        srv->conns = sc->next;
    if (sc->next)
        sc->next->prev = sc->prev;
    srv->pending_closes--;
    /* Calls still held by handlers keep the struct until they answer. */
    cancel_all(sc);
    sc->closed = 1;
    sconn_maybe_free(sc);
    maybe_finish_close(srv);
}

static const pp__conn_ops_t sconn_ops = {
    .frame = sconn_frame,
    .oversize = sconn_oversize,
    .ended = sconn_ended,
    .closed = sconn_closed,
    .expire = sconn_expire,
    .read_done = sconn_read_done,
};

static void sconn_close(sconn_t *sc)
{
    pp__conn_close(&sc->conn);
}

int pp_ttrpc_server_serve_stream(pp_ttrpc_server_t *srv, uv_stream_t *stream)
{
    return pp_ttrpc_server_serve_filtered(srv, stream, NULL);
}

void pp_ttrpc_server_set_accept_hook(pp_ttrpc_server_t *srv,
                                     void (*hook)(pp_ttrpc_server_t *, uv_stream_t *, void *),
                                     void *data)
{
    srv->accept_hook = hook;
    srv->accept_data = data;
}

int pp_ttrpc_server_serve_filtered(pp_ttrpc_server_t *srv, uv_stream_t *stream,
                                   pp_stream_filter_t *filter)
{
    if (srv->closing) {
        if (filter)
            filter->destroy(filter);
        uv_close((uv_handle_t *)stream, (uv_close_cb)free);
        return -ECANCELED;
    }
    sconn_t *sc = calloc(1, sizeof(*sc));
    if (sc == NULL) {
        if (filter)
            filter->destroy(filter);
        uv_close((uv_handle_t *)stream, (uv_close_cb)free);
        return -ENOMEM;
    }
    sc->srv = srv;
    pp__conn_init(&sc->conn, stream, &sconn_ops, sc);
    pp__conn_limit(&sc->conn, srv->budget, srv->opts.conn_max_held, srv->opts.frame_timeout_ms);
    sc->conn.filter = filter;
    sc->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = sc;
    srv->conns = sc;
    srv->pending_closes++;
    sc->live = 1;
    srv->live++;
    srv->budget->conns++;
    int r = pp__conn_start(&sc->conn);
    if (r < 0)
        pp__conn_close(&sc->conn);
    else
        sconn_touch(sc);
    return 0;
}

/* ---- listening --------------------------------------------------------- */

/* At a limit: the connection idle the longest makes room when the options
 * allow it, else the new one is refused (closed at once, so that it does
 * not wait in the backlog; logged at most every 10 s). */
static int admit(pp_ttrpc_server_t *srv)
{
    pp_ttrpc_budget_t *b = srv->budget;
    int full = srv->live >= srv->opts.max_conns || (b->max_conns != 0 && b->conns >= b->max_conns);
    if (!full)
        return 1;
    if (srv->opts.evict_idle && srv->idle_head != NULL) {
        sconn_t *sc = srv->idle_head;
        idle_unlink(sc);
        b->stats.evicted++;
        sconn_close(sc);
        return 1;
    }
    b->stats.refused++;
    uint64_t quiet;
    if (pp_log_limit(&srv->refuse_log, uv_now(srv->loop), 10000, &quiet))
        PP_WARN("ttrpc",
                "`%s`: refusing connections: %zu open (limit %zu here, %zu in all); "
                "%llu more refused since the last message",
                srv->name, srv->live, srv->opts.max_conns, b->max_conns, (unsigned long long)quiet);
    return 0;
}

static void connection_cb(uv_stream_t *server, int status)
{
    listener_t *l = server->data;
    pp_ttrpc_server_t *srv = l->srv;
    if (status < 0) {
        uint64_t quiet;
        if (pp_log_limit(&srv->refuse_log, uv_now(srv->loop), 10000, &quiet))
            PP_WARN("ttrpc", "`%s`: accept: %s", srv->name, uv_strerror(status));
        return;
    }
    uv_stream_t *client;
    if (l->is_pipe) {
        uv_pipe_t *p = malloc(sizeof(*p));
        if (p == NULL || uv_pipe_init(srv->loop, p, 0) < 0) {
            free(p);
            return;
        }
        client = (uv_stream_t *)p;
    } else {
        uv_tcp_t *t = malloc(sizeof(*t));
        if (t == NULL || uv_tcp_init(srv->loop, t) < 0) {
            free(t);
            return;
        }
        uv_tcp_nodelay(t, 1);
        client = (uv_stream_t *)t;
    }
    if (uv_accept(server, client) < 0 || !admit(srv)) {
        uv_close((uv_handle_t *)client, (uv_close_cb)free);
        return;
    }
    if (srv->accept_hook != NULL) {
        srv->accept_hook(srv, client, srv->accept_data);
        return;
    }
    pp_ttrpc_server_serve_stream(srv, client);
}

static void listener_close_cb(uv_handle_t *h)
{
    listener_t *l = h->data;
    pp_ttrpc_server_t *srv = l->srv;
    free(l);
    srv->pending_closes--;
    maybe_finish_close(srv);
}

static listener_t *listener_new(pp_ttrpc_server_t *srv, int is_pipe)
{
    if (srv->nlisteners == MAX_LISTENERS)
        return NULL;
    listener_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->srv = srv;
    l->is_pipe = is_pipe;
    int r = is_pipe ? uv_pipe_init(srv->loop, &l->u.pipe, 0) : uv_tcp_init(srv->loop, &l->u.tcp);
    if (r < 0) {
        free(l);
        return NULL;
    }
    l->u.handle.data = l;
    return l;
}

static void listener_discard(listener_t *l)
{
    l->srv->pending_closes++;
    uv_close(&l->u.handle, listener_close_cb);
}

/* Removes `path` if it is a socket nobody listens on. */
static int remove_stale_socket(const char *path, pp_error_t *err)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0
                               : pp_error_set(err, -errno, "stat `%s`: %s", path, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return pp_error_set(err, -EEXIST, "`%s` exists and is not a socket", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return pp_error_set(err, -errno, "socket: %s", strerror(errno));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    if (live)
        return pp_error_set(err, -EADDRINUSE, "`%s` is served by another process", path);
    if (unlink(path) < 0 && errno != ENOENT)
        return pp_error_set(err, -errno, "remove stale socket `%s`: %s", path, strerror(errno));
    return 0;
}

/* A listening unix socket at `path` whose file has exactly `mode` (and
 * group `gid` unless -1), never more open meanwhile: bind() makes the file
 * with the socket's own mode less the umask, and the socket's mode is set
 * to `mode` first, so the file is at most that before it is set exactly. */
static int bind_unix(const char *path, unsigned mode, gid_t gid, int *out, pp_error_t *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return pp_error_set(err, -errno, "socket: %s", strerror(errno));
    int e = 0;
    const char *what = "";
    if (fchmod(fd, (mode_t)mode) < 0) {
        e = errno;
        what = "set the socket's mode";
    } else if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        e = errno;
        what = "bind";
    } else if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0) {
        e = errno;
        what = "set the socket's group";
    } else if (chmod(path, (mode_t)mode) < 0) {
        e = errno;
        what = "set the socket's mode";
    }
    if (e != 0) {
        if (strcmp(what, "bind") != 0)
            unlink(path);
        close(fd);
        return pp_error_set(err, -e, "listen on `%s`: %s: %s", path, what, strerror(e));
    }
    *out = fd;
    return 0;
}

int pp_ttrpc_server_listen_unix(pp_ttrpc_server_t *srv, const char *path, pp_error_t *err)
{
    struct sockaddr_un sa;
    if (strlen(path) >= sizeof(sa.sun_path))
        return pp_error_set(err, -ENAMETOOLONG, "socket path `%s` is too long", path);
    int r = remove_stale_socket(path, err);
    if (r < 0)
        return r;
    listener_t *l = listener_new(srv, 1);
    if (l == NULL)
        return pp_error_set(err, -ENOMEM, "listen on `%s`: out of memory or listeners", path);
    gid_t gid = srv->opts.socket_gid != 0 ? (gid_t)srv->opts.socket_gid : (gid_t)-1;
    int fd = -1;
    r = bind_unix(path, srv->opts.socket_mode, gid, &fd, err);
    if (r < 0) {
        listener_discard(l);
        return r;
    }
    r = uv_pipe_open(&l->u.pipe, fd);
    if (r < 0)
        close(fd);
    else
        r = uv_listen(&l->u.stream, PP_TTRPC_LISTEN_BACKLOG, connection_cb);
    if (r < 0) {
        unlink(path);
        listener_discard(l);
        return pp_error_set(err, r, "listen on `%s`: %s", path, uv_strerror(r));
    }
    srv->listeners[srv->nlisteners++] = l;
    return 0;
}

int pp_ttrpc_server_listen_tcp(pp_ttrpc_server_t *srv, const char *hostport, pp_error_t *err)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host))
        return pp_error_set(err, -EINVAL, "listen address `%s` is not host:port", hostport);
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535)
        return pp_error_set(err, -EINVAL, "listen address `%s` has a bad port", hostport);
    struct sockaddr_storage ss;
    char *h = host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = '\0';
        h++;
    }
    if (*h == '\0')
        h = "0.0.0.0";
    int r = uv_ip4_addr(h, (int)port, (struct sockaddr_in *)&ss);
    if (r < 0)
        r = uv_ip6_addr(h, (int)port, (struct sockaddr_in6 *)&ss);
    if (r < 0)
        return pp_error_set(err, -EINVAL, "listen address `%s`: bad IP address", hostport);
    listener_t *l = listener_new(srv, 0);
    if (l == NULL)
        return pp_error_set(err, -ENOMEM, "listen on `%s`: out of memory or listeners", hostport);
    r = uv_tcp_bind(&l->u.tcp, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen(&l->u.stream, PP_TTRPC_LISTEN_BACKLOG, connection_cb);
    if (r < 0) {
        listener_discard(l);
        return pp_error_set(err, r, "listen on `%s`: %s", hostport, uv_strerror(r));
    }
    srv->listeners[srv->nlisteners++] = l;
    return 0;
}

/* ---- shutdown ---------------------------------------------------------- */

static void maybe_finish_close(pp_ttrpc_server_t *srv)
{
    if (!srv->closing || srv->pending_closes > 0 || srv->conns != NULL)
        return;
    if (srv->graceful && srv->in_flight > 0)
        return;
    pp_ttrpc_server_close_cb cb = srv->close_cb;
    void *data = srv->close_data;
    /* Calls still held by handlers were detached; their answers are
     * dropped and free only the call. */
    if (srv->in_flight > 0)
        return; /* freed when the last one answers */
    for (size_t i = 0; i < srv->nmethods; i++) {
        free(srv->methods[i].service);
        free(srv->methods[i].method);
    }
    free(srv->methods);
    if (cb)
        cb(srv, data);
    free(srv);
}

static void idle_timer_closed_cb(uv_handle_t *h)
{
    pp_ttrpc_server_t *srv = h->data;
    srv->pending_closes--;
    maybe_finish_close(srv);
}

void pp_ttrpc_server_close(pp_ttrpc_server_t *srv, int graceful, pp_ttrpc_server_close_cb cb,
                           void *data)
{
    if (srv->closing)
        return;
    srv->closing = 1;
    srv->graceful = graceful ? 1 : 0;
    srv->close_cb = cb;
    srv->close_data = data;
    for (size_t i = 0; i < srv->nlisteners; i++) {
        listener_t *l = srv->listeners[i];
        if (l->is_pipe) {
            /* Remove the socket file so nobody connects to a dead path. */
            char path[256];
            size_t n = sizeof(path);
            if (uv_pipe_getsockname(&l->u.pipe, path, &n) == 0 && n < sizeof(path)) {
                path[n] = '\0';
                unlink(path);
            }
        }
        listener_discard(l);
    }
    srv->nlisteners = 0;
    srv->pending_closes++;
    uv_close((uv_handle_t *)&srv->idle_timer, idle_timer_closed_cb);
    sconn_t *next;
    for (sconn_t *sc = srv->conns; sc != NULL; sc = next) {
        next = sc->next;
        if (!graceful || sc->ncalls == 0)
            sconn_close(sc);
    }
    maybe_finish_close(srv);
}
