/* Reconnecting ttrpc client (link.h): dial sequences with backoff, the
 * queue of calls waiting for a connection, and forwarding of server calls. */
#include "ttrpc/link.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "util/cleanup.h"
#include "util/log.h"

enum lstate {
    L_IDLE,    /* no connection, no sequence */
    L_BACKOFF, /* in a sequence, waiting for the next attempt */
    L_DIALING, /* in a sequence, the dialer is at work */
    L_PROBING, /* in a sequence, connected, the probe call is out */
    L_UP,      /* connected */
};

struct pp_ttrpc_link_req_s {
    pp_ttrpc_link_t *l;
    pp_ttrpc_link_req_t *prev, *next; /* in the queue or the done list */
    uint8_t *frame;                   /* while queued */
    size_t len;
    int64_t timeout_nano;
    uint64_t deadline; /* loop time, while queued; 0 = none */
    pp_ttrpc_result_cb cb;
    void *data;
    pp_ttrpc_call_t *call; /* a forwarded server call, answered instead of cb */
    int code;              /* why it was cancelled while queued */
    unsigned sent : 1;
    unsigned done : 1;
};

typedef struct req_list_s {
    pp_ttrpc_link_req_t *head, *tail;
    size_t n;
} req_list_t;

struct pp_ttrpc_link_s {
    uv_loop_t *loop;
    char *name;
    const char *component;
    unsigned backoff_min_ms;
    unsigned backoff_max_ms;
    uint64_t redial_window_ms;
    size_t max_queued;
    uint64_t silence_timeout_ms;
    pp_ttrpc_dialer_t dialer;
    void *dialer_data;

    enum lstate state;
    pp_ttrpc_client_t *client; /* probing or up */
    uv_timer_t backoff;        /* the next attempt of a sequence */
    uv_timer_t sweep;          /* queued deadlines and cancelled calls */
    uint64_t sweep_due;        /* loop time the sweep is set for; 0 when idle */
    uint64_t deadline;         /* end of the sequence's window (loop time) */
    unsigned backoff_ms;
    unsigned attempts;
    char last_error[256];
    uint64_t first_connect_ms; /* loop time of the first connection; 0: none yet */

    void (*forward_failed)(pp_ttrpc_link_t *l, int code, void *data);
    void *forward_failed_data;

    pp_ttrpc_link_wait_cb wait_cb; /* a wait is pending while set */
    void *wait_data;
    /* The probe of the wait's sequence; service NULL when none. */
    char *probe_service;
    char *probe_method;
    uint8_t *probe_payload;
    size_t probe_len;
    int64_t probe_timeout_nano;
    unsigned seq_probe : 1; /* this sequence probes its connections */

    req_list_t queue; /* waiting for a connection */
    req_list_t done;  /* cancelled while queued, callbacks due */
    size_t in_flight; /* sent, not answered */

    size_t pending; /* clients and handles closing, an attempt ending, holds */
    pp_ttrpc_link_close_cb close_cb;
    void *close_data;
    unsigned dialing : 1; /* an attempt is at the dialer */
    unsigned closing : 1;
};

static void on_backoff(uv_timer_t *t);
static void on_sweep(uv_timer_t *t);

/* ---- lists -------------------------------------------------------------- */

static void list_push(req_list_t *q, pp_ttrpc_link_req_t *r)
{
    r->next = NULL;
    r->prev = q->tail;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    q->n++;
}

static void list_remove(req_list_t *q, pp_ttrpc_link_req_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        q->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        q->tail = r->prev;
    r->prev = r->next = NULL;
    q->n--;
}

static pp_ttrpc_link_req_t *list_pop(req_list_t *q)
{
    pp_ttrpc_link_req_t *r = q->head;
    if (r != NULL)
        list_remove(q, r);
    return r;
}

/* Moves every entry of `from` to a fresh list, so that callbacks fired
 * while it is emptied cannot add to it. */
static req_list_t list_take(req_list_t *from)
{
    req_list_t taken = *from;
    *from = (req_list_t){0};
    return taken;
}

/* ---- lifetime ----------------------------------------------------------- */

static void free_probe(pp_ttrpc_link_t *l)
{
    free(PP_STEAL(l->probe_service));
    free(PP_STEAL(l->probe_method));
    free(PP_STEAL(l->probe_payload));
    l->probe_len = 0;
}

static void maybe_finish(pp_ttrpc_link_t *l)
{
    if (!l->closing || l->pending > 0)
        return;
    if (l->close_cb)
        l->close_cb(l, l->close_data);
    if (l->dialer.free)
        l->dialer.free(l->dialer_data);
    free_probe(l);
    free(l->name);
    free(l);
}

/* Holds keep `l` alive while callbacks that may close it run. */
static void hold(pp_ttrpc_link_t *l)
{
    l->pending++;
}

static void release(pp_ttrpc_link_t *l)
{
    l->pending--;
    maybe_finish(l);
}

static void on_client_closed(pp_ttrpc_client_t *c, void *data)
{
    (void)c;
    release(data);
}

static void close_client(pp_ttrpc_link_t *l)
{
    pp_ttrpc_client_t *c = PP_STEAL(l->client);
    if (c == NULL)
        return;
    hold(l);
    pp_ttrpc_client_close(c, on_client_closed, l);
}

static void on_handle_closed(uv_handle_t *h)
{
    release(h->data);
}

int pp_ttrpc_link_new(uv_loop_t *loop, const pp_ttrpc_link_opts_t *o,
                      const pp_ttrpc_dialer_t *dialer, void *dialer_data, pp_ttrpc_link_t **out)
{
    if (o == NULL || o->name == NULL || dialer == NULL || dialer->start == NULL ||
        dialer->cancel == NULL)
        return -EINVAL;
    pp_ttrpc_link_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    l->name = strdup(o->name);
    if (l->name == NULL) {
        free(l);
        return -ENOMEM;
    }
    l->loop = loop;
    l->component = o->component ? o->component : "ttrpc";
    l->backoff_min_ms = o->backoff_min_ms ? o->backoff_min_ms : PP_TTRPC_LINK_BACKOFF_MIN_MS;
    l->backoff_max_ms = o->backoff_max_ms ? o->backoff_max_ms : PP_TTRPC_LINK_BACKOFF_MAX_MS;
    if (l->backoff_max_ms < l->backoff_min_ms)
        l->backoff_max_ms = l->backoff_min_ms;
    l->redial_window_ms = o->redial_window_ms;
    l->max_queued = o->max_queued ? o->max_queued : PP_TTRPC_LINK_MAX_QUEUED;
    l->silence_timeout_ms = o->silence_timeout_ms;
    l->dialer = *dialer;
    l->dialer_data = dialer_data;
    uv_timer_init(loop, &l->backoff);
    uv_timer_init(loop, &l->sweep);
    l->backoff.data = l;
    l->sweep.data = l;
    *out = l;
    return 0;
}

int pp_ttrpc_link_connected(const pp_ttrpc_link_t *l)
{
    return l->state == L_UP && l->client != NULL && pp_ttrpc_client_connected(l->client);
}

uint64_t pp_ttrpc_link_first_connect_ms(const pp_ttrpc_link_t *l)
{
    return l->first_connect_ms;
}

void pp_ttrpc_link_on_forward_failure(pp_ttrpc_link_t *l,
                                      void (*cb)(pp_ttrpc_link_t *l, int code, void *data),
                                      void *data)
{
    l->forward_failed = cb;
    l->forward_failed_data = data;
}

size_t pp_ttrpc_link_queued(const pp_ttrpc_link_t *l)
{
    return l->queue.n + l->done.n;
}

size_t pp_ttrpc_link_in_flight(const pp_ttrpc_link_t *l)
{
    return l->in_flight;
}

/* ---- completion --------------------------------------------------------- */

/* Answers a forwarded server call with what came back for it. */
static void answer_call(pp_ttrpc_link_t *l, pp_ttrpc_call_t *call, pp_ttrpc_result_t *res)
{
    if (res->frame != NULL) {
        size_t len = res->frame_len;
        pp_ttrpc_call_reply_frame(call, PP_STEAL(res->frame), len);
        return;
    }
    /* Answered here, not by the peer: the connection dropped, the peer is
     * unreachable, or the deadline passed. */
    if (l->forward_failed)
        l->forward_failed(l, res->code, l->forward_failed_data);
    if (res->code != PP_GRPC_CANCELLED)
        PP_WARN(l->component, "call to %s failed: %s: %.*s", l->name, pp_grpc_code_name(res->code),
                (int)res->message.n, res->message.p);
    pp_ttrpc_call_fail(call, res->code, "%.*s", (int)res->message.n, res->message.p);
}

/* Frees `req` and delivers `res` to whoever made the call. */
static void finish(pp_ttrpc_link_req_t *req, pp_ttrpc_result_t *res)
{
    pp_ttrpc_link_t *l = req->l;
    pp_ttrpc_result_cb cb = req->cb;
    void *data = req->data;
    pp_ttrpc_call_t *call = req->call;
    free(req->frame);
    free(req);
    if (call != NULL)
        answer_call(l, call, res);
    else
        cb(res, data);
}

static void complete_local(pp_ttrpc_link_req_t *req, int code, const char *msg)
{
    pp_ttrpc_result_t res = {.code = code, .message = {msg, strlen(msg)}};
    finish(req, &res);
}

static void on_sent_result(pp_ttrpc_result_t *res, void *data)
{
    pp_ttrpc_link_req_t *req = data;
    req->l->in_flight--;
    finish(req, res);
}

/* Completes every call in `q` with `code` and `msg`, or with the code it
 * was cancelled with. Callbacks may make calls or close the link. */
static void fail_list(pp_ttrpc_link_t *l, req_list_t *q, int code, const char *msg)
{
    req_list_t taken = list_take(q);
    pp_ttrpc_link_req_t *req;
    char cancelled[300];
    while ((req = list_pop(&taken)) != NULL) {
        if (!req->done) {
            complete_local(req, code, msg);
            continue;
        }
        if (req->code == PP_GRPC_DEADLINE_EXCEEDED)
            snprintf(cancelled, sizeof(cancelled), "deadline exceeded while waiting for %s",
                     l->name);
        else
            snprintf(cancelled, sizeof(cancelled), "cancelled while waiting for %s", l->name);
        complete_local(req, req->code, cancelled);
    }
}

/* ---- sending ------------------------------------------------------------ */

static int send_req(pp_ttrpc_link_t *l, pp_ttrpc_link_req_t *req, uint8_t *frame)
{
    int64_t timeout = req->timeout_nano;
    if (req->deadline != 0) {
        /* Queued: what is left of the deadline is enforced from now on. */
        uint64_t now = uv_now(l->loop);
        uint64_t left_ms = req->deadline > now ? req->deadline - now : 1;
        timeout = (int64_t)left_ms * 1000000;
    }
    req->sent = 1;
    int r = pp_ttrpc_client_call_frame(l->client, frame, req->len, timeout, on_sent_result, req);
    if (r == 0)
        l->in_flight++;
    return r;
}

/* Sends the queue in order. Callbacks of calls that fail to go out may
 * queue more; those go out after the others. */
static void flush_queue(pp_ttrpc_link_t *l)
{
    pp_ttrpc_link_req_t *req;
    while (!l->closing && l->state == L_UP && (req = list_pop(&l->queue)) != NULL) {
        if (send_req(l, req, PP_STEAL(req->frame)) < 0)
            complete_local(req, PP_GRPC_UNAVAILABLE, "connection failed while sending");
    }
    /* Nothing left for the sweep: a link at rest holds no timer (it fired
     * once at the deadline of the calls queued while dialling). */
    if (l->sweep_due != 0 && l->queue.head == NULL && l->done.head == NULL) {
        uv_timer_stop(&l->sweep);
        l->sweep_due = 0;
    }
}

/* ---- the sweep: cancelled calls and queued deadlines --------------------- */

static void arm_sweep(pp_ttrpc_link_t *l, uint64_t due)
{
    if (l->closing)
        return;
    if (l->sweep_due != 0 && l->sweep_due <= due)
        return;
    uint64_t now = uv_now(l->loop);
    l->sweep_due = due > now ? due : now;
    uv_timer_start(&l->sweep, on_sweep, l->sweep_due - now, 0);
}

static void on_sweep(uv_timer_t *t)
{
    pp_ttrpc_link_t *l = t->data;
    l->sweep_due = 0;
    hold(l);
    fail_list(l, &l->done, PP_GRPC_CANCELLED, "cancelled");
    /* Queued calls past their deadline. */
    uint64_t now = uv_now(l->loop);
    req_list_t due = {0};
    for (pp_ttrpc_link_req_t *req = l->queue.head, *next; req != NULL; req = next) {
        next = req->next;
        if (req->deadline != 0 && req->deadline <= now) {
            list_remove(&l->queue, req);
            req->done = 1;
            req->code = PP_GRPC_DEADLINE_EXCEEDED;
            list_push(&due, req);
        }
    }
    fail_list(l, &due, PP_GRPC_DEADLINE_EXCEEDED, "");
    uint64_t next_due = 0;
    for (pp_ttrpc_link_req_t *req = l->queue.head; req != NULL; req = req->next)
        if (req->deadline != 0 && (next_due == 0 || req->deadline < next_due))
            next_due = req->deadline;
    if (next_due != 0)
        arm_sweep(l, next_due);
    release(l);
}

/* ---- dial sequences ----------------------------------------------------- */

static void set_error(pp_ttrpc_link_t *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(pp_ttrpc_link_t *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->last_error, sizeof(l->last_error), fmt, ap);
    va_end(ap);
}

static void fire_wait(pp_ttrpc_link_t *l, int status, const pp_error_t *err)
{
    pp_ttrpc_link_wait_cb cb = PP_STEAL(l->wait_cb);
    free_probe(l);
    if (cb)
        cb(l, status, err, l->wait_data);
}

static void start_sequence(pp_ttrpc_link_t *l, uint64_t deadline, int probe)
{
    l->state = L_BACKOFF;
    l->deadline = deadline;
    l->backoff_ms = 0;
    l->attempts = 0;
    l->last_error[0] = '\0';
    l->seq_probe = probe ? 1 : 0;
    /* The first attempt runs from the loop, never from inside the caller. */
    uv_timer_start(&l->backoff, on_backoff, 0, 0);
}

/* The sequence's window closed: the wait learns why, queued calls fail. */
static void give_up(pp_ttrpc_link_t *l)
{
    l->state = L_IDLE;
    pp_error_t err;
    pp_error_set(&err, -ETIMEDOUT, "no connection after %u attempt%s: %s", l->attempts,
                 l->attempts == 1 ? "" : "s", l->last_error[0] ? l->last_error : "no attempt made");
    hold(l);
    if (l->wait_cb != NULL)
        fire_wait(l, -ETIMEDOUT, &err);
    else
        PP_WARN(l->component, "%s: %s", l->name, err.message);
    if (!l->closing) {
        char msg[PP_ERROR_MAX + 8];
        snprintf(msg, sizeof(msg), "%s is not reachable: %s", l->name,
                 l->last_error[0] ? l->last_error : "no attempt made");
        fail_list(l, &l->queue, PP_GRPC_UNAVAILABLE, msg);
    }
    release(l);
}

static void attempt_failed(pp_ttrpc_link_t *l)
{
    PP_DEBUG(l->component, "dial %s (attempt %u): %s", l->name, l->attempts, l->last_error);
    uint64_t now = uv_now(l->loop);
    if (now >= l->deadline) {
        give_up(l);
        return;
    }
    if (l->backoff_ms == 0)
        l->backoff_ms = l->backoff_min_ms;
    else
        l->backoff_ms =
            l->backoff_ms * 2 > l->backoff_max_ms ? l->backoff_max_ms : l->backoff_ms * 2;
    uint64_t delay = l->backoff_ms;
    if (delay > l->deadline - now)
        delay = l->deadline - now;
    l->state = L_BACKOFF;
    uv_timer_start(&l->backoff, on_backoff, delay, 0);
}

static void on_disconnect(pp_ttrpc_client_t *c, void *data)
{
    pp_ttrpc_link_t *l = data;
    if (c != l->client)
        return;
    /* Calls in flight have completed UNAVAILABLE (the client does that). */
    PP_WARN(l->component, "connection to %s lost; the next call redials", l->name);
    l->state = L_IDLE;
    close_client(l);
}

static void connected(pp_ttrpc_link_t *l)
{
    l->state = L_UP;
    l->backoff_ms = 0;
    pp_ttrpc_client_on_disconnect(l->client, on_disconnect, l);
    PP_INFO(l->component, "connected to %s (attempt %u)", l->name, l->attempts);
    hold(l);
    fire_wait(l, 0, NULL);
    flush_queue(l);
    release(l);
}

static void probe_done(pp_ttrpc_result_t *res, void *data)
{
    pp_ttrpc_link_t *l = data;
    if (l->closing || l->state != L_PROBING)
        return; /* the client was closed under the probe */
    if (res->code != PP_GRPC_OK) {
        set_error(l, "probe `%s/%s`: %s: %.*s", l->probe_service, l->probe_method,
                  pp_grpc_code_name(res->code), (int)res->message.n, res->message.p);
        close_client(l);
        attempt_failed(l);
        return;
    }
    connected(l);
}

static void discard_stream(uv_stream_t *stream, pp_stream_filter_t *filter)
{
    if (filter != NULL)
        filter->destroy(filter);
    if (stream != NULL)
        uv_close((uv_handle_t *)stream, (uv_close_cb)free);
}

/* The silence bound, kept by the kernel: keepalive probes from half of it
 * on, one every sixth, three unanswered end the connection; sent data
 * unacknowledged for all of it ends it too. */
static void watch_silence(const pp_ttrpc_link_t *l, uv_stream_t *s)
{
    uv_os_fd_t fd;
    if (l->silence_timeout_ms == 0 || s->type != UV_TCP || uv_fileno((uv_handle_t *)s, &fd) < 0)
        return;
    int on = 1, cnt = 3;
    int idle = (int)(l->silence_timeout_ms / 2000), intvl = (int)(l->silence_timeout_ms / 6000);
    unsigned user = (unsigned)l->silence_timeout_ms;
    if (idle < 1)
        idle = 1;
    if (intvl < 1)
        intvl = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user, sizeof(user)) < 0)
        PP_WARN(l->component, "%s: keepalive: %s", l->name, strerror(errno));
}

void pp_ttrpc_link_dialed(pp_ttrpc_link_t *l, int status, uv_stream_t *stream,
                          pp_stream_filter_t *filter, const char *why)
{
    l->dialing = 0;
    if (l->closing) {
        discard_stream(status == 0 ? stream : NULL, status == 0 ? filter : NULL);
        release(l); /* the attempt's hold, taken by close */
        return;
    }
    if (status < 0) {
        set_error(l, "%s", why != NULL ? why : uv_strerror(status));
        attempt_failed(l);
        return;
    }
    if (l->first_connect_ms == 0)
        l->first_connect_ms = uv_now(l->loop);
    watch_silence(l, stream);
    int r = pp_ttrpc_client_new(l->loop, &l->client);
    if (r < 0) {
        discard_stream(stream, filter);
    } else if ((r = pp_ttrpc_client_open_filtered(l->client, stream, filter)) < 0) {
        close_client(l); /* it has closed the stream */
    } else if (l->seq_probe) {
        l->state = L_PROBING;
        pp_ttrpc_call_opts_t o = {
            .service = l->probe_service,
            .method = l->probe_method,
            .payload = l->probe_payload,
            .payload_len = l->probe_len,
            .timeout_nano = l->probe_timeout_nano,
        };
        r = pp_ttrpc_client_call(l->client, &o, probe_done, l);
        if (r < 0)
            close_client(l);
    } else {
        connected(l);
        return;
    }
    if (r < 0) {
        set_error(l, "%s", uv_strerror(r));
        attempt_failed(l);
    }
}

static void on_backoff(uv_timer_t *t)
{
    pp_ttrpc_link_t *l = t->data;
    if (l->closing || l->state != L_BACKOFF)
        return;
    l->attempts++;
    l->state = L_DIALING;
    l->dialing = 1;
    int r = l->dialer.start(l, l->loop, l->dialer_data);
    if (r < 0) {
        l->dialing = 0;
        set_error(l, "%s", uv_strerror(r));
        attempt_failed(l);
    }
}

int pp_ttrpc_link_wait(pp_ttrpc_link_t *l, uint64_t deadline_ms, const pp_ttrpc_link_probe_t *probe,
                       pp_ttrpc_link_wait_cb cb, void *data)
{
    if (l->closing)
        return -ESHUTDOWN;
    if (l->state != L_IDLE || l->wait_cb != NULL)
        return -EALREADY;
    if (cb == NULL || (probe != NULL && (probe->service == NULL || probe->method == NULL)))
        return -EINVAL;
    if (probe != NULL) {
        l->probe_service = strdup(probe->service);
        l->probe_method = strdup(probe->method);
        l->probe_payload = malloc(probe->payload_len ? probe->payload_len : 1);
        if (l->probe_service == NULL || l->probe_method == NULL || l->probe_payload == NULL) {
            free_probe(l);
            return -ENOMEM;
        }
        if (probe->payload_len)
            memcpy(l->probe_payload, probe->payload, probe->payload_len);
        l->probe_len = probe->payload_len;
        l->probe_timeout_nano = probe->timeout_nano;
    }
    l->wait_cb = cb;
    l->wait_data = data;
    start_sequence(l, deadline_ms, probe != NULL);
    return 0;
}

/* ---- calls -------------------------------------------------------------- */

static int submit(pp_ttrpc_link_t *l, uint8_t *frame, size_t len, int64_t timeout_nano,
                  pp_ttrpc_result_cb cb, void *data, pp_ttrpc_call_t *call,
                  pp_ttrpc_link_req_t **out)
{
    cleanup_free uint8_t *owned = frame;
    if (l->closing)
        return -ESHUTDOWN;
    if (len < PP_TTRPC_HEADER_SIZE || len > PP_TTRPC_HEADER_SIZE + PP_TTRPC_MAX_MESSAGE)
        return -EMSGSIZE;
    /* The connection may have ended during a callback, before its
     * disconnect notice reached us. */
    if (l->state == L_UP && !pp_ttrpc_client_connected(l->client)) {
        l->state = L_IDLE;
        close_client(l);
    }
    int direct = l->state == L_UP && l->queue.n == 0;
    if (!direct && l->queue.n >= l->max_queued)
        return -ENOBUFS;
    pp_ttrpc_link_req_t *req = calloc(1, sizeof(*req));
    if (req == NULL)
        return -ENOMEM;
    req->l = l;
    req->len = len;
    req->timeout_nano = timeout_nano;
    req->cb = cb;
    req->data = data;
    req->call = call;
    if (direct) {
        int r = send_req(l, req, PP_STEAL(owned));
        if (r < 0) {
            free(req);
            return r;
        }
    } else {
        req->frame = PP_STEAL(owned);
        list_push(&l->queue, req);
        if (timeout_nano > 0) {
            /* The loop's cached time may be stale if the caller blocked. */
            uv_update_time(l->loop);
            req->deadline = uv_now(l->loop) + ((uint64_t)timeout_nano + 999999) / 1000000;
            arm_sweep(l, req->deadline);
        }
        if (l->state == L_IDLE) {
            PP_INFO(l->component, "dialling %s", l->name);
            start_sequence(l, uv_now(l->loop) + l->redial_window_ms, 0);
        }
    }
    if (out != NULL)
        *out = req;
    return 0;
}

int pp_ttrpc_link_call_frame(pp_ttrpc_link_t *l, uint8_t *frame, size_t len, int64_t timeout_nano,
                             pp_ttrpc_result_cb cb, void *data, pp_ttrpc_link_req_t **req)
{
    if (cb == NULL) {
        free(frame);
        return -EINVAL;
    }
    return submit(l, frame, len, timeout_nano, cb, data, NULL, req);
}

int pp_ttrpc_link_cancel(pp_ttrpc_link_req_t *req, int code)
{
    if (req->sent)
        return -EALREADY;
    if (req->done)
        return 0;
    pp_ttrpc_link_t *l = req->l;
    list_remove(&l->queue, req);
    req->done = 1;
    req->code = code;
    list_push(&l->done, req);
    arm_sweep(l, uv_now(l->loop));
    return 0;
}

/* The caller is gone or its deadline passed. A call still queued is
 * dropped; one already sent finishes with the peer's answer or its own
 * deadline (the server drops an answer to a cancelled call). */
static void forward_cancelled(pp_ttrpc_call_t *call, void *data)
{
    pp_ttrpc_link_req_t *req = data;
    uint64_t deadline = pp_ttrpc_call_deadline(call);
    int code = deadline != 0 && uv_now(req->l->loop) >= deadline ? PP_GRPC_DEADLINE_EXCEEDED
                                                                 : PP_GRPC_CANCELLED;
    pp_ttrpc_link_cancel(req, code);
}

void pp_ttrpc_link_forward(pp_ttrpc_link_t *l, pp_ttrpc_call_t *call, uint8_t *frame, size_t len)
{
    /* timeout_nano is a value, still valid once the frame was stolen. */
    int64_t timeout_nano = pp_ttrpc_call_request(call)->timeout_nano;
    if (frame == NULL) {
        if (l->forward_failed)
            l->forward_failed(l, PP_GRPC_INTERNAL, l->forward_failed_data);
        pp_ttrpc_call_fail(call, PP_GRPC_INTERNAL, "request frame unavailable");
        return;
    }
    pp_ttrpc_link_req_t *req;
    int r = submit(l, frame, len, timeout_nano, NULL, NULL, call, &req);
    if (r < 0) {
        int code = r == -ENOBUFS || r == -ENOMEM || r == -EMSGSIZE ? PP_GRPC_RESOURCE_EXHAUSTED
                                                                   : PP_GRPC_UNAVAILABLE;
        if (l->forward_failed)
            l->forward_failed(l, code, l->forward_failed_data);
        PP_WARN(l->component, "forward to %s: %s", l->name, strerror(-r));
        pp_ttrpc_call_fail(call, code, "forward to %s: %s", l->name, strerror(-r));
        return;
    }
    pp_ttrpc_call_on_cancel(call, forward_cancelled, req);
}

/* ---- close -------------------------------------------------------------- */

void pp_ttrpc_link_close(pp_ttrpc_link_t *l, pp_ttrpc_link_close_cb cb, void *data)
{
    if (l->closing)
        return;
    l->closing = 1;
    l->close_cb = cb;
    l->close_data = data;
    hold(l);
    if (l->wait_cb != NULL) {
        pp_error_t err;
        pp_error_set(&err, -ECANCELED, "link to %s closed", l->name);
        fire_wait(l, -ECANCELED, &err);
    }
    char msg[PP_ERROR_MAX];
    snprintf(msg, sizeof(msg), "link to %s closed", l->name);
    fail_list(l, &l->done, PP_GRPC_CANCELLED, msg);
    fail_list(l, &l->queue, PP_GRPC_CANCELLED, msg);
    if (l->dialing) {
        hold(l); /* released by pp_ttrpc_link_dialed() */
        l->dialer.cancel(l, l->dialer_data);
    }
    close_client(l); /* calls in flight complete CANCELLED */
    l->state = L_IDLE;
    uv_timer_stop(&l->backoff);
    uv_timer_stop(&l->sweep);
    hold(l);
    hold(l);
    uv_close((uv_handle_t *)&l->backoff, on_handle_closed);
    uv_close((uv_handle_t *)&l->sweep, on_handle_closed);
    release(l);
}

/* ---- built-in dialers: unix and TCP -------------------------------------- */

typedef struct net_dialer_s {
    pp_ttrpc_link_t *link;
    uv_connect_t req;
    uv_stream_t *stream; /* connecting */
    char *path;          /* unix, or NULL for TCP */
    struct sockaddr_storage addr;
} net_dialer_t;

static void net_connected(uv_connect_t *creq, int status)
{
    net_dialer_t *d = container_of(creq, net_dialer_t, req);
    uv_stream_t *s = PP_STEAL(d->stream);
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, (uv_close_cb)free);
        pp_ttrpc_link_dialed(d->link, status, NULL, NULL, NULL);
        return;
    }
    pp_ttrpc_link_dialed(d->link, 0, s, NULL, NULL);
}

static int net_start(pp_ttrpc_link_t *l, uv_loop_t *loop, void *data)
{
    net_dialer_t *d = data;
    d->link = l;
    int r;
    if (d->path != NULL) {
        uv_pipe_t *p = malloc(sizeof(*p));
        if (p == NULL)
            return -ENOMEM;
        if ((r = uv_pipe_init(loop, p, 0)) < 0) {
            free(p);
            return r;
        }
        /* uv_pipe_connect reports every error through the callback. */
        uv_pipe_connect(&d->req, p, d->path, net_connected);
        d->stream = (uv_stream_t *)p;
        return 0;
    }
    uv_tcp_t *t = malloc(sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    if ((r = uv_tcp_init(loop, t)) < 0) {
        free(t);
        return r;
    }
    uv_tcp_nodelay(t, 1);
    if ((r = uv_tcp_connect(&d->req, t, (struct sockaddr *)&d->addr, net_connected)) < 0) {
        uv_close((uv_handle_t *)t, (uv_close_cb)free);
        return r;
    }
    d->stream = (uv_stream_t *)t;
    return 0;
}

/* Closing the handle makes the connect request complete with
 * UV_ECANCELED. */
static void net_cancel(pp_ttrpc_link_t *l, void *data)
{
    net_dialer_t *d = data;
    (void)l;
    if (d->stream != NULL && !uv_is_closing((uv_handle_t *)d->stream))
        uv_close((uv_handle_t *)d->stream, (uv_close_cb)free);
}

static void net_free(void *data)
{
    net_dialer_t *d = data;
    free(d->path);
    free(d);
}

static const pp_ttrpc_dialer_t net_dialer = {
    .start = net_start,
    .cancel = net_cancel,
    .free = net_free,
};

static int new_net(uv_loop_t *loop, const pp_ttrpc_link_opts_t *o, net_dialer_t *d,
                   pp_ttrpc_link_t **out)
{
    int r = pp_ttrpc_link_new(loop, o, &net_dialer, d, out);
    if (r < 0)
        net_free(d);
    return r;
}

int pp_ttrpc_link_new_unix(uv_loop_t *loop, const pp_ttrpc_link_opts_t *o, const char *path,
                           pp_ttrpc_link_t **out)
{
    net_dialer_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    d->path = strdup(path);
    if (d->path == NULL) {
        free(d);
        return -ENOMEM;
    }
    return new_net(loop, o, d, out);
}

int pp_ttrpc_link_new_tcp(uv_loop_t *loop, const pp_ttrpc_link_opts_t *o,
                          const struct sockaddr *addr, pp_ttrpc_link_t **out)
{
    if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6)
        return -EAFNOSUPPORT;
    net_dialer_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    memcpy(&d->addr, addr,
           addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    return new_net(loop, o, d, out);
}
