/* A small HTTP/1.1 server on a daemon's libuv loop: libmicrohttpd in its
 * external-polling mode, with its epoll descriptor under a uv_poll and its
 * timeouts under a uv_timer, so it runs on the loop thread and never blocks
 * it. For probes, metrics and local REST APIs: loopback by default.
 *
 * Bounds, each with a default:
 *   - the request line and headers fit in `max_header` bytes (else 431 or
 *     414, from libmicrohttpd), a body in `max_body` (else 413; by default
 *     no body is accepted);
 *   - a request must have arrived whole within `timeout_ms` of the
 *     connection opening or of the previous answer; past that the
 *     connection is shut down. The time a handler takes to answer does not
 *     count: that is the handler's to bound;
 *   - at most `max_conns` connections at once (more wait in the backlog).
 * Malformed requests get 400 from libmicrohttpd (a request line that is
 * not three words is not HTTP at all: the connection is closed without an
 * answer); none of them reach the handler, and the server keeps serving.
 *
 * One quirk of libmicrohttpd 0.9.75: a client that half-closes in the same
 * breath as it sends its request (the FIN arriving with the request) gets
 * its answer, but the hang-up is only noticed at the deadline; a client
 * that closes after reading, as HTTP clients do, is noticed at once.
 *
 * Handlers: `handler` is called on the loop thread once per request that
 * arrived whole. It answers with pp_httpd_respond() (or _buf) exactly once,
 * either before returning or later from any loop callback; until then the
 * request and its accessors stay valid, and afterwards the request must not
 * be touched. A server closed with requests unanswered finishes closing
 * once they are all answered.
 *
 * Everything runs on the loop thread. Nothing here is process-wide. */
#ifndef PP_HTTPD_H
#define PP_HTTPD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util/buf.h"
#include "util/error.h"

typedef struct pp_httpd_s pp_httpd_t;
typedef struct pp_httpd_req_s pp_httpd_req_t;

typedef void (*pp_httpd_handler_cb)(pp_httpd_req_t *req, void *data);
typedef void (*pp_httpd_close_cb)(pp_httpd_t *h, void *data);

#define PP_HTTPD_MAX_HEADER_DEFAULT 8192u
#define PP_HTTPD_TIMEOUT_DEFAULT_MS 5000u
#define PP_HTTPD_MAX_CONNS_DEFAULT  32u

typedef struct pp_httpd_opts_s {
    const char *name;    /* for the log ("probe"); default "httpd" */
    const char *address; /* IPv4 or IPv6 literal; default 127.0.0.1 */
    int port;            /* 0: any free port (see pp_httpd_port) */
    size_t max_header;   /* request line and headers; 0: the default */
    size_t max_body;     /* 0: requests with a body are refused (413) */
    unsigned timeout_ms; /* 0: the default */
    unsigned max_conns;  /* 0: the default */
    pp_httpd_handler_cb handler;
    void *data;
} pp_httpd_opts_t;

typedef struct pp_httpd_stats_s {
    uint64_t connections; /* accepted, ever */
    uint64_t requests;    /* handed to the handler */
    uint64_t refused;     /* answered 4xx here, before the handler */
    uint64_t timeouts;    /* connections shut for taking too long */
    unsigned open;        /* connections open now */
    unsigned waiting;     /* requests handed out and not yet answered */
} pp_httpd_stats_t;

/* Starts listening. Fails synchronously (with `err`) when the address is
 * not a literal or cannot be bound. */
int pp_httpd_start(uv_loop_t *loop, const pp_httpd_opts_t *opts, pp_httpd_t **out, pp_error_t *err);
/* The port bound (useful after port 0). */
int pp_httpd_port(const pp_httpd_t *h);
void pp_httpd_stats(const pp_httpd_t *h, pp_httpd_stats_t *out);
/* Stops accepting and closes every connection; `cb` (may be NULL) runs once
 * every handle is closed and `h` is freed. Requests handed out and not yet
 * answered must still be answered (their answers are dropped). */
void pp_httpd_close(pp_httpd_t *h, pp_httpd_close_cb cb, void *data);

/* The request, valid until it is answered. */
const char *pp_httpd_method(const pp_httpd_req_t *r);
/* The path, without the query, percent-decoded by libmicrohttpd. */
const char *pp_httpd_path(const pp_httpd_req_t *r);
/* A query argument or a header (case-insensitive), or NULL. */
const char *pp_httpd_query(const pp_httpd_req_t *r, const char *key);
const char *pp_httpd_header(const pp_httpd_req_t *r, const char *name);
/* The body (empty unless max_body allows one). */
const uint8_t *pp_httpd_body(const pp_httpd_req_t *r, size_t *len);

/* Answers with a copy of `body`. Returns 0, or -ENOMEM (the request is then
 * answered 500, if memory allows, and is finished all the same). */
int pp_httpd_respond(pp_httpd_req_t *r, unsigned status, const char *content_type, const void *body,
                     size_t len);
/* Answers with the bytes of `body`, which is left empty. */
int pp_httpd_respond_buf(pp_httpd_req_t *r, unsigned status, const char *content_type,
                         pp_buf_t *body);

#endif
