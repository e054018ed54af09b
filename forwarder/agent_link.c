#include "agent_link.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"
#include "util/log.h"

#define COMPONENT "agent"

enum astate { A_IDLE, A_DIALING, A_CONNECTED };

struct apf_agent_req_s {
    apf_agent_t *a;
    apf_agent_req_t *prev, *next; /* in the queue or the done list */
    uint8_t *frame;               /* NULL once handed to the client */
    size_t len;
    int64_t timeout_nano;
    pp_ttrpc_result_cb cb;
    void *data;
    int code; /* set when completed locally before being sent */
    unsigned sent : 1;
    unsigned done : 1;
};

typedef struct req_list_s {
    apf_agent_req_t *head, *tail;
    size_t n;
} req_list_t;

struct apf_agent_s {
    uv_loop_t *loop;
    char *path;
    uint64_t wait_ms;
    enum astate state;
    pp_ttrpc_client_t *client; /* dialling or connected */
    uv_timer_t backoff;        /* next dial attempt */
    uv_timer_t sweep;          /* completes cancelled requests off the caller's stack */
    uint64_t dial_deadline;
    unsigned backoff_ms;
    unsigned attempts;
    int last_err;
    req_list_t queue; /* waiting for a connection */
    req_list_t done;  /* completed locally, callbacks pending */
    apf_agent_ready_cb ready_cb;
    void *ready_data;
    size_t pending; /* handles and clients still closing */
    apf_agent_close_cb close_cb;
    void *close_data;
    unsigned closing : 1;
};

static void on_backoff(uv_timer_t *t);
static void on_sweep(uv_timer_t *t);

/* ---- lists -------------------------------------------------------------- */

static void list_push(req_list_t *l, apf_agent_req_t *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->n++;
}

static void list_remove(req_list_t *l, apf_agent_req_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->n--;
}

static apf_agent_req_t *list_pop(req_list_t *l)
{
    apf_agent_req_t *r = l->head;
    if (r != NULL)
        list_remove(l, r);
    return r;
}

/* ---- completion --------------------------------------------------------- */

static void complete_local(apf_agent_req_t *req, int code, const char *msg)
{
    pp_ttrpc_result_t res = {0};
    res.code = code;
    res.message.p = msg;
    res.message.n = strlen(msg);
    pp_ttrpc_result_cb cb = req->cb;
    void *data = req->data;
    free(req->frame);
    free(req);
    cb(&res, data);
}

static const char *local_message(int code)
{
    switch (code) {
    case PP_GRPC_CANCELLED:
        return "cancelled";
    case PP_GRPC_DEADLINE_EXCEEDED:
        return "deadline exceeded while waiting for the kata agent";
    default:
        return "kata agent is not reachable";
    }
}

/* Completes every request in `l` with `code` (or the code each was given
 * when it was cancelled). Callbacks may queue new requests or close. */
static void fail_list(req_list_t *l, int code, const char *msg)
{
    apf_agent_req_t *req;
    while ((req = list_pop(l)) != NULL) {
        if (req->done)
            complete_local(req, req->code, local_message(req->code));
        else
            complete_local(req, code, msg);
    }
}

static void on_sent_result(pp_ttrpc_result_t *res, void *data)
{
    apf_agent_req_t *req = data;
    pp_ttrpc_result_cb cb = req->cb;
    void *cb_data = req->data;
    free(req);
    cb(res, cb_data);
}

/* ---- closing ------------------------------------------------------------ */

static void maybe_finish(apf_agent_t *a)
{
    if (!a->closing || a->pending > 0)
        return;
    if (a->close_cb)
        a->close_cb(a, a->close_data);
    free(a->path);
    free(a);
}

static void on_client_closed(pp_ttrpc_client_t *c, void *data)
{
    apf_agent_t *a = data;
    (void)c;
    a->pending--;
    maybe_finish(a);
}

static void close_client(apf_agent_t *a, pp_ttrpc_client_t *c)
{
    a->pending++;
    pp_ttrpc_client_close(c, on_client_closed, a);
}

static void on_timer_closed(uv_handle_t *h)
{
    apf_agent_t *a = h->data;
    a->pending--;
    maybe_finish(a);
}

/* ---- dialling ----------------------------------------------------------- */

int apf_agent_new(uv_loop_t *loop, const char *path, uint64_t wait_ms, apf_agent_t **out)
{
    apf_agent_t *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    a->path = strdup(path);
    if (a->path == NULL) {
        free(a);
        return -ENOMEM;
    }
    a->loop = loop;
    a->wait_ms = wait_ms;
    uv_timer_init(loop, &a->backoff);
    uv_timer_init(loop, &a->sweep);
    a->backoff.data = a;
    a->sweep.data = a;
    *out = a;
    return 0;
}

int apf_agent_connected(const apf_agent_t *a)
{
    return a->state == A_CONNECTED && a->client != NULL && pp_ttrpc_client_connected(a->client);
}

static void fire_ready(apf_agent_t *a, int status)
{
    apf_agent_ready_cb cb = a->ready_cb;
    void *data = a->ready_data;
    a->ready_cb = NULL;
    if (cb)
        cb(a, status, data);
}

static void give_up(apf_agent_t *a)
{
    a->state = A_IDLE;
    PP_ERR(COMPONENT, "kata agent at `%s` not reachable after %llu ms (%u attempts): %s", a->path,
           (unsigned long long)a->wait_ms, a->attempts,
           a->last_err ? uv_strerror(a->last_err) : "no attempt");
    fire_ready(a, -ETIMEDOUT);
    if (!a->closing)
        fail_list(&a->queue, PP_GRPC_UNAVAILABLE, "kata agent is not reachable");
}

static void schedule_retry(apf_agent_t *a)
{
    uint64_t now = uv_now(a->loop);
    if (now >= a->dial_deadline) {
        give_up(a);
        return;
    }
    if (a->backoff_ms == 0)
        a->backoff_ms = APF_AGENT_BACKOFF_MIN_MS;
    else if (a->backoff_ms < APF_AGENT_BACKOFF_MAX_MS)
        a->backoff_ms = a->backoff_ms * 2 > APF_AGENT_BACKOFF_MAX_MS ? APF_AGENT_BACKOFF_MAX_MS
                                                                     : a->backoff_ms * 2;
    uint64_t delay = a->backoff_ms;
    if (delay > a->dial_deadline - now)
        delay = a->dial_deadline - now;
    uv_timer_start(&a->backoff, on_backoff, delay, 0);
}

static void flush_queue(apf_agent_t *a)
{
    apf_agent_req_t *req;
    while (!a->closing && a->state == A_CONNECTED && (req = list_pop(&a->queue)) != NULL) {
        uint8_t *frame = PP_STEAL(req->frame);
        req->sent = 1;
        int r = pp_ttrpc_client_call_frame(a->client, frame, req->len, req->timeout_nano,
                                           on_sent_result, req);
        if (r < 0)
            complete_local(req, PP_GRPC_UNAVAILABLE, "kata agent connection failed");
    }
}

static void on_disconnect(pp_ttrpc_client_t *c, void *data)
{
    apf_agent_t *a = data;
    if (c != a->client)
        return;
    PP_WARN(COMPONENT, "connection to kata agent at `%s` lost; the next call redials", a->path);
    a->client = NULL;
    a->state = A_IDLE;
    close_client(a, c);
}

static void on_connect(pp_ttrpc_client_t *c, int status, void *data)
{
    apf_agent_t *a = data;
    if (a->closing || c != a->client)
        return;
    if (status < 0) {
        a->client = NULL;
        a->last_err = status;
        PP_DEBUG(COMPONENT, "dial `%s`: %s", a->path, uv_strerror(status));
        close_client(a, c);
        schedule_retry(a);
        return;
    }
    a->state = A_CONNECTED;
    a->backoff_ms = 0;
    pp_ttrpc_client_on_disconnect(c, on_disconnect, a);
    PP_INFO(COMPONENT, "connected to kata agent at `%s` (attempt %u)", a->path, a->attempts);
    fire_ready(a, 0);
    flush_queue(a);
}

static void dial(apf_agent_t *a)
{
    pp_ttrpc_client_t *c;
    a->attempts++;
    int r = pp_ttrpc_client_new(a->loop, &c);
    if (r == 0) {
        a->client = c;
        r = pp_ttrpc_client_connect_unix(c, a->path, on_connect, a);
        if (r < 0) {
            a->client = NULL;
            close_client(a, c);
        }
    }
    if (r < 0) {
        a->last_err = r;
        schedule_retry(a);
    }
}

static void on_backoff(uv_timer_t *t)
{
    apf_agent_t *a = t->data;
    if (!a->closing && a->state == A_DIALING && a->client == NULL)
        dial(a);
}

/* Starts a dial sequence; the first attempt runs from the loop, so that no
 * callback fires from inside the caller. */
static void start_dialing(apf_agent_t *a)
{
    a->state = A_DIALING;
    a->dial_deadline = uv_now(a->loop) + a->wait_ms;
    a->backoff_ms = 0;
    a->attempts = 0;
    a->last_err = 0;
    uv_timer_start(&a->backoff, on_backoff, 0, 0);
}

int apf_agent_wait(apf_agent_t *a, apf_agent_ready_cb cb, void *data)
{
    if (a->closing)
        return -ESHUTDOWN;
    if (a->state != A_IDLE || a->ready_cb != NULL)
        return -EALREADY;
    a->ready_cb = cb;
    a->ready_data = data;
    PP_INFO(COMPONENT, "waiting up to %llu ms for kata agent at `%s`",
            (unsigned long long)a->wait_ms, a->path);
    start_dialing(a);
    return 0;
}

/* ---- requests ----------------------------------------------------------- */

int apf_agent_forward(apf_agent_t *a, uint8_t *frame, size_t len, int64_t timeout_nano,
                      pp_ttrpc_result_cb cb, void *data, apf_agent_req_t **out)
{
    if (a->closing) {
        free(frame);
        return -ESHUTDOWN;
    }
    /* The client may have ended during a callback, before its disconnect
     * notice reached us. */
    if (a->state == A_CONNECTED && !pp_ttrpc_client_connected(a->client)) {
        pp_ttrpc_client_t *c = PP_STEAL(a->client);
        a->state = A_IDLE;
        close_client(a, c);
    }
    if (a->state != A_CONNECTED && a->queue.n >= APF_AGENT_MAX_QUEUED) {
        free(frame);
        return -ENOBUFS;
    }
    apf_agent_req_t *req = calloc(1, sizeof(*req));
    if (req == NULL) {
        free(frame);
        return -ENOMEM;
    }
    req->a = a;
    req->len = len;
    req->timeout_nano = timeout_nano;
    req->cb = cb;
    req->data = data;
    if (a->state == A_CONNECTED) {
        req->sent = 1;
        int r =
            pp_ttrpc_client_call_frame(a->client, frame, len, timeout_nano, on_sent_result, req);
        if (r < 0) {
            free(req);
            return r;
        }
    } else {
        req->frame = frame;
        list_push(&a->queue, req);
        if (a->state == A_IDLE) {
            PP_INFO(COMPONENT, "redialling kata agent at `%s`", a->path);
            start_dialing(a);
        }
    }
    if (out != NULL)
        *out = req;
    return 0;
}

static void on_sweep(uv_timer_t *t)
{
    apf_agent_t *a = t->data;
    fail_list(&a->done, PP_GRPC_CANCELLED, "cancelled");
}

int apf_agent_cancel(apf_agent_req_t *req, int code)
{
    if (req->sent)
        return -EALREADY;
    if (req->done)
        return 0;
    apf_agent_t *a = req->a;
    list_remove(&a->queue, req);
    req->done = 1;
    req->code = code;
    list_push(&a->done, req);
    uv_timer_start(&a->sweep, on_sweep, 0, 0);
    return 0;
}

void apf_agent_close(apf_agent_t *a, apf_agent_close_cb cb, void *data)
{
    if (a->closing)
        return;
    a->closing = 1;
    a->close_cb = cb;
    a->close_data = data;
    /* Hold a reference while callbacks run, so nothing frees `a` under us. */
    a->pending++;
    fire_ready(a, -ECANCELED);
    fail_list(&a->done, PP_GRPC_CANCELLED, "cancelled");
    fail_list(&a->queue, PP_GRPC_CANCELLED, "forwarder is shutting down");
    if (a->client != NULL)
        close_client(a, PP_STEAL(a->client));
    a->state = A_IDLE;
    uv_timer_stop(&a->backoff);
    uv_timer_stop(&a->sweep);
    a->pending += 2;
    uv_close((uv_handle_t *)&a->backoff, on_timer_closed);
    uv_close((uv_handle_t *)&a->sweep, on_timer_closed);
    a->pending--;
    maybe_finish(a);
}
