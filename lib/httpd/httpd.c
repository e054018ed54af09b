/* libmicrohttpd driven by a libuv loop (httpd.h).
 *
 * libmicrohttpd runs without threads of its own (external polling, epoll):
 * its epoll descriptor becomes readable whenever one of its sockets has
 * something, so one uv_poll on it tells when to call MHD_run(), and after
 * each run MHD_get_timeout() says when it must run again even without
 * activity (its own timeouts, and connections it left with work pending),
 * which one uv_timer keeps. A second timer enforces the request deadline,
 * which libmicrohttpd lacks (its timeout is for inactivity, in seconds):
 * connections whose request has not arrived in time are shut down, and
 * libmicrohttpd then sees the hang-up on its next run and closes them. */
#include "httpd/httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/log.h"

/* Requests take part of libmicrohttpd's per-connection pool for the answer's
 * header lines and their own bookkeeping. */
#define POOL_SLACK 4096u

typedef struct conn_s {
    struct conn_s *prev, *next; /* in the deadline list while armed */
    pp_httpd_t *h;
    int fd;
    uint64_t deadline; /* uv_now() milliseconds */
    unsigned armed : 1;
} conn_t;

enum req_state {
    REQ_RECEIVING, /* headers in, body coming */
    REQ_DRAINING,  /* body too big: the rest is dropped, then 413 */
    REQ_HANDED,    /* the handler has it */
    REQ_ANSWERED,  /* answered, not yet queued with libmicrohttpd */
    REQ_QUEUED,    /* libmicrohttpd sends it */
};

struct pp_httpd_req_s {
    pp_httpd_t *h;
    struct MHD_Connection *c; /* NULL once libmicrohttpd is done with it */
    conn_t *conn;
    const char *method, *path; /* in libmicrohttpd's pool, valid until completion */
    pp_buf_t body;
    enum req_state state;
    unsigned status;
    char content_type[96];
    uint8_t *answer;
    size_t answer_len;
    unsigned suspended : 1;
    unsigned orphaned : 1; /* completed while handed out: freed when answered */
};

struct pp_httpd_s {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;     /* libmicrohttpd's timeouts; runs soon after a resume */
    uv_timer_t deadlines; /* the head of `armed` */
    conn_t *head, *tail;  /* armed connections, earliest deadline first */
    char name[32];
    size_t max_body;
    unsigned timeout_ms;
    int port;
    pp_httpd_handler_cb handler;
    void *data;
    pp_httpd_stats_t stats;
    pp_httpd_close_cb close_cb;
    void *close_data;
    unsigned pending_closes;
    unsigned closing : 1;
    unsigned quiesced : 1;
    unsigned rerun : 1; /* a connection closed during this run */
};

/* ---- deadlines --------------------------------------------------------- */

static void conn_unlink(conn_t *c)
{
    if (!c->armed)
        return;
    pp_httpd_t *h = c->h;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        h->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        h->tail = c->prev;
    c->prev = c->next = NULL;
    c->armed = 0;
}

static void deadlines_cb(uv_timer_t *t);

static void deadlines_rearm(pp_httpd_t *h)
{
    if (h->head == NULL) {
        uv_timer_stop(&h->deadlines);
        return;
    }
    uint64_t now = uv_now(h->loop);
    uint64_t due = h->head->deadline > now ? h->head->deadline - now : 0;
    uv_timer_start(&h->deadlines, deadlines_cb, due, 0);
}

/* Every deadline is now + the same timeout, so appending keeps the list in
 * deadline order. */
static void conn_arm(conn_t *c)
{
    pp_httpd_t *h = c->h;
    conn_unlink(c);
    c->deadline = uv_now(h->loop) + h->timeout_ms;
    c->prev = h->tail;
    if (h->tail != NULL)
        h->tail->next = c;
    else
        h->head = c;
    h->tail = c;
    c->armed = 1;
    if (h->head == c)
        deadlines_rearm(h);
}

static void kick(pp_httpd_t *h);

static void deadlines_cb(uv_timer_t *t)
{
    pp_httpd_t *h = container_of(t, pp_httpd_t, deadlines);
    uint64_t now = uv_now(h->loop);
    int shut = 0;
    while (h->head != NULL && h->head->deadline <= now) {
        conn_t *c = h->head;
        conn_unlink(c);
        /* shutdown, not close: the descriptor stays libmicrohttpd's, which
         * sees the hang-up and closes it itself. */
        shutdown(c->fd, SHUT_RDWR);
        h->stats.timeouts++;
        shut = 1;
    }
    if (shut) {
        PP_DEBUG(h->name, "shut a connection whose request took over %u ms", h->timeout_ms);
        kick(h);
    }
    deadlines_rearm(h);
}

/* ---- libmicrohttpd callbacks ------------------------------------------- */

static void on_log(void *cls, const char *fmt, va_list ap)
{
    pp_httpd_t *h = cls;
    char line[256];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    /* What it reports comes from clients (malformed requests, resets):
     * not worth more than a debug line. */
    PP_DEBUG(h->name, "libmicrohttpd: %s", line);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    pp_httpd_t *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        h->stats.connections++;
        h->stats.open++;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn_t *conn = ci != NULL ? calloc(1, sizeof(*conn)) : NULL;
        /* Without one, libmicrohttpd's inactivity timeout still bounds it. */
        if (conn == NULL)
            return;
        conn->h = h;
        conn->fd = ci->connect_fd;
        *socket_context = conn;
        conn_arm(conn);
        return;
    }
    h->stats.open--;
    h->rerun = 1;
    conn_t *conn = *socket_context;
    if (conn != NULL) {
        conn_unlink(conn);
        free(conn);
        *socket_context = NULL;
    }
}

static void req_free(pp_httpd_req_t *r)
{
    pp_buf_free(&r->body);
    free(r->answer);
    free(r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    pp_httpd_t *h = cls;
    pp_httpd_req_t *r = *req_cls;
    (void)c;
    (void)toe;
    *req_cls = NULL;
    if (r == NULL)
        return;
    if (r->conn != NULL && !h->closing)
        conn_arm(r->conn);
    if (r->state == REQ_HANDED) {
        /* Only when the server stops: the handler still holds it. */
        r->c = NULL;
        r->orphaned = 1;
        return;
    }
    req_free(r);
}

static enum MHD_Result queue(pp_httpd_req_t *r)
{
    struct MHD_Response *resp;
    if (r->answer_len > 0) {
        resp = MHD_create_response_from_buffer(r->answer_len, r->answer, MHD_RESPMEM_MUST_FREE);
        if (resp != NULL)
            r->answer = NULL;
    } else {
        resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    r->state = REQ_QUEUED;
    if (resp == NULL)
        return MHD_NO;
    if (r->content_type[0] != '\0' &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type) != MHD_YES) {
        MHD_destroy_response(resp);
        return MHD_NO;
    }
    enum MHD_Result ret = MHD_queue_response(r->c, r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void answer_set(pp_httpd_req_t *r, unsigned status, const char *content_type, uint8_t *bytes,
                       size_t len)
{
    r->status = status;
    snprintf(r->content_type, sizeof(r->content_type), "%s", content_type ? content_type : "");
    free(r->answer);
    r->answer = bytes;
    r->answer_len = len;
    r->state = REQ_ANSWERED;
}

/* Answers here, before the handler: the request is bad or too big. */
static enum MHD_Result refuse(pp_httpd_req_t *r, unsigned status, const char *why)
{
    size_t n = strlen(why);
    uint8_t *copy = malloc(n);
    if (copy != NULL)
        memcpy(copy, why, n);
    answer_set(r, status, "text/plain; charset=utf-8", copy, copy != NULL ? n : 0);
    r->h->stats.refused++;
    return queue(r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    pp_httpd_t *h = cls;
    pp_httpd_req_t *r = *req_cls;
    (void)version;
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return MHD_NO;
        r->h = h;
        r->c = c;
        r->method = method;
        r->path = url;
        pp_buf_init(&r->body, h->max_body);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->conn = ci != NULL ? ci->socket_context : NULL;
        *req_cls = r;
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno == 0 && end != cl && n > h->max_body)
                return refuse(r, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n");
        }
        return MHD_YES;
    }
    switch (r->state) {
    case REQ_RECEIVING:
        if (*upload_size > 0) {
            size_t n = *upload_size;
            *upload_size = 0;
            /* libmicrohttpd takes an answer only once the body is in: drop
             * the rest (the deadline bounds how long that may take). */
            if (pp_buf_append(&r->body, upload, n) < 0) {
                pp_buf_free(&r->body);
                r->state = REQ_DRAINING;
            }
            return MHD_YES;
        }
        r->state = REQ_HANDED;
        if (r->conn != NULL)
            conn_unlink(r->conn);
        h->stats.requests++;
        h->stats.waiting++;
        h->handler(r, h->data);
        if (r->state == REQ_ANSWERED)
            return queue(r);
        MHD_suspend_connection(c);
        r->suspended = 1;
        return MHD_YES;
    case REQ_DRAINING:
        if (*upload_size == 0)
            return refuse(r, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large\n");
        break;
    case REQ_ANSWERED:
        /* Resumed after a late answer. */
        return queue(r);
    case REQ_HANDED:
    case REQ_QUEUED:
        break;
    }
    /* The rest of a body too big. */
    *upload_size = 0;
    return MHD_YES;
}

/* ---- the loop side ----------------------------------------------------- */

static void timer_cb(uv_timer_t *t);

static void rearm(pp_httpd_t *h)
{
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(h->mhd, &ms) != MHD_YES) {
        uv_timer_stop(&h->timer);
        return;
    }
    if (ms > 3600000)
        ms = 3600000;
    uv_timer_start(&h->timer, timer_cb, ms, 0);
}

static void handle_closed_cb(uv_handle_t *hd)
{
    pp_httpd_t *h = hd->data;
    if (--h->pending_closes > 0)
        return;
    if (h->close_cb != NULL)
        h->close_cb(h, h->close_data);
    free(h);
}

static void finish_close(pp_httpd_t *h)
{
    /* Closes every connection; completion callbacks run from here. */
    MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
    h->head = h->tail = NULL;
    h->pending_closes = 3;
    uv_close((uv_handle_t *)&h->poll, handle_closed_cb);
    uv_close((uv_handle_t *)&h->timer, handle_closed_cb);
    uv_close((uv_handle_t *)&h->deadlines, handle_closed_cb);
}

static void run(pp_httpd_t *h)
{
    if (h->closing) {
        if (!h->quiesced && h->stats.waiting > 0) {
            /* Stop listening; suspended connections must be resumed
             * (answered) before libmicrohttpd may stop. */
            MHD_socket fd = MHD_quiesce_daemon(h->mhd);
            if (fd != MHD_INVALID_SOCKET)
                close(fd);
            h->quiesced = 1;
        }
        if (h->stats.waiting == 0) {
            finish_close(h);
            return;
        }
    }
    h->rerun = 0;
    MHD_run(h->mhd);
    /* libmicrohttpd stops polling its listening socket at the connection
     * limit and polls it again only from its next run, which nothing would
     * trigger once the connections that filled it are gone. */
    if (h->rerun)
        kick(h);
    else
        rearm(h);
}

static void timer_cb(uv_timer_t *t)
{
    run(container_of(t, pp_httpd_t, timer));
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run(container_of(p, pp_httpd_t, poll));
}

/* Runs libmicrohttpd at the loop's next turn, never from inside its own
 * callbacks. */
static void kick(pp_httpd_t *h)
{
    if (h->mhd != NULL)
        uv_timer_start(&h->timer, timer_cb, 0, 0);
}

static int listen_socket(const char *address, int port, int *out, pp_error_t *err)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, address, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        len = sizeof(*in4);
    } else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        len = sizeof(*in6);
    } else {
        return pp_error_set(err, -EINVAL, "`%s` is not an IPv4 or IPv6 address", address);
    }
    cleanup_close int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return pp_error_set(err, -errno, "socket: %s", strerror(errno));
    int one = 1;
    /* A restarted daemon binds again while old connections linger. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        return pp_error_set(err, -errno, "SO_REUSEADDR: %s", strerror(errno));
    if (ss.ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0)
        return pp_error_set(err, -errno, "bind `%s` port %d: %s", address, port, strerror(errno));
    if (listen(fd, 64) < 0)
        return pp_error_set(err, -errno, "listen: %s", strerror(errno));
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return pp_error_set(err, -errno, "getsockname: %s", strerror(errno));
    *out = fd;
    fd = -1;
    return ntohs(ss.ss_family == AF_INET ? in4->sin_port : in6->sin6_port);
}

int pp_httpd_start(uv_loop_t *loop, const pp_httpd_opts_t *o, pp_httpd_t **out, pp_error_t *err)
{
    if (o->handler == NULL || o->port < 0 || o->port > 65535)
        return pp_error_set(err, -EINVAL, "HTTP server: no handler, or port out of range");
    const char *address = o->address != NULL && o->address[0] ? o->address : "127.0.0.1";
    int lfd = -1;
    int port = listen_socket(address, o->port, &lfd, err);
    if (port < 0)
        return port;
    pp_httpd_t *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        close(lfd);
        return pp_error_set(err, -ENOMEM, "HTTP server: out of memory");
    }
    h->loop = loop;
    snprintf(h->name, sizeof(h->name), "%s", o->name ? o->name : "httpd");
    h->max_body = o->max_body;
    h->timeout_ms = o->timeout_ms ? o->timeout_ms : PP_HTTPD_TIMEOUT_DEFAULT_MS;
    h->handler = o->handler;
    h->data = o->data;
    h->port = port;
    size_t pool = (o->max_header ? o->max_header : PP_HTTPD_MAX_HEADER_DEFAULT) + POOL_SLACK;
    unsigned conns = o->max_conns ? o->max_conns : PP_HTTPD_MAX_CONNS_DEFAULT;
    /* libmicrohttpd's own inactivity timeout, in whole seconds, is only a
     * backstop behind the deadline. */
    unsigned idle_s = h->timeout_ms / 1000 + 2;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (strchr(address, ':') != NULL)
        flags |= MHD_USE_IPv6;
    h->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, on_log, h,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lfd, MHD_OPTION_CONNECTION_MEMORY_LIMIT, pool,
        MHD_OPTION_CONNECTION_LIMIT, conns, MHD_OPTION_CONNECTION_TIMEOUT, idle_s,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        h, MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_END);
    if (h->mhd == NULL) {
        close(lfd);
        free(h);
        return pp_error_set(err, -EIO,
                            "HTTP server on `%s` port %d: libmicrohttpd refused to start", address,
                            port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    int r = di != NULL ? uv_poll_init(loop, &h->poll, di->epoll_fd) : -EIO;
    if (r < 0) {
        MHD_stop_daemon(h->mhd);
        free(h);
        return pp_error_set(err, r, "HTTP server: poll: %s", uv_strerror(r));
    }
    uv_timer_init(loop, &h->timer);
    uv_timer_init(loop, &h->deadlines);
    h->poll.data = h->timer.data = h->deadlines.data = h;
    uv_poll_start(&h->poll, UV_READABLE, poll_cb);
    rearm(h);
    *out = h;
    return 0;
}

int pp_httpd_port(const pp_httpd_t *h)
{
    return h->port;
}

void pp_httpd_stats(const pp_httpd_t *h, pp_httpd_stats_t *out)
{
    *out = h->stats;
}

void pp_httpd_close(pp_httpd_t *h, pp_httpd_close_cb cb, void *data)
{
    if (h->closing)
        return;
    h->closing = 1;
    h->close_cb = cb;
    h->close_data = data;
    uv_poll_stop(&h->poll);
    uv_timer_stop(&h->deadlines);
    kick(h);
}

/* ---- requests ---------------------------------------------------------- */

const char *pp_httpd_method(const pp_httpd_req_t *r)
{
    return r->method;
}

const char *pp_httpd_path(const pp_httpd_req_t *r)
{
    return r->path;
}

const char *pp_httpd_query(const pp_httpd_req_t *r, const char *key)
{
    return r->c != NULL ? MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, key) : NULL;
}

const char *pp_httpd_header(const pp_httpd_req_t *r, const char *name)
{
    return r->c != NULL ? MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, name) : NULL;
}

const uint8_t *pp_httpd_body(const pp_httpd_req_t *r, size_t *len)
{
    *len = r->body.len;
    return r->body.data != NULL ? r->body.data : (const uint8_t *)"";
}

static int answer(pp_httpd_req_t *r, unsigned status, const char *content_type, uint8_t *bytes,
                  size_t len)
{
    pp_httpd_t *h = r->h;
    if (r->state != REQ_HANDED)
        return -EINVAL;
    answer_set(r, status, content_type, bytes, len);
    h->stats.waiting--;
    if (r->orphaned) {
        req_free(r);
    } else if (r->suspended) {
        r->suspended = 0;
        MHD_resume_connection(r->c);
        kick(h);
    }
    if (h->closing)
        kick(h);
    return 0;
}

int pp_httpd_respond(pp_httpd_req_t *r, unsigned status, const char *content_type, const void *body,
                     size_t len)
{
    uint8_t *copy = NULL;
    if (len > 0 && (copy = malloc(len)) == NULL) {
        answer(r, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, NULL, 0);
        return -ENOMEM;
    }
    if (len > 0)
        memcpy(copy, body, len);
    int rc = answer(r, status, content_type, copy, len);
    if (rc < 0)
        free(copy);
    return rc;
}

int pp_httpd_respond_buf(pp_httpd_req_t *r, unsigned status, const char *content_type,
                         pp_buf_t *body)
{
    if (r->state != REQ_HANDED)
        return -EINVAL;
    size_t len = 0;
    uint8_t *bytes = pp_buf_steal(body, &len);
    return answer(r, status, content_type, bytes, len);
}
