/* A scripted HTTP/1.1 server on 127.0.0.1 for the HTTP client's tests. It
 * runs on the test's loop, records every request with its arrival time, and
 * answers each one with the next scripted reply (then the default one).
 * Every connection is closed after its answer. A TLS variant runs in a
 * thread of its own with OpenSSL. */
#ifndef PP_TEST_HTTP_SERVER_H
#define PP_TEST_HTTP_SERVER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct ths_reply_s {
    int status;
    const char *headers; /* extra header lines, each ending in \r\n */
    const char *body;
    size_t body_len;   /* 0 = strlen(body) */
    size_t body_fill;  /* > 0: a body of this many 'x' instead */
    unsigned delay_ms; /* wait before answering */
    int hang;          /* never answer; wait for the client to go */
    int drop;          /* close without answering */
} ths_reply_t;

typedef struct ths_request_s {
    char method[16];
    char target[2048];
    char *head; /* request line and headers, NUL-terminated */
    char *body;
    size_t body_len;
    uint64_t t_us; /* uv_hrtime() / 1000 at arrival */
} ths_request_t;

typedef struct ths_s {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    const ths_reply_t *script;
    size_t nscript, next;
    ths_reply_t dflt;
    ths_request_t reqs[256];
    size_t nreqs;
    unsigned open_conns;
    int closing;
} ths_t;

int ths_start(uv_loop_t *loop, ths_t *s);
/* Replies in order, then `dflt` (NULL: 200 "ok"). */
void ths_script(ths_t *s, const ths_reply_t *replies, size_t n, const ths_reply_t *dflt);
/* Closes the listener and every connection; run the loop to finish. */
void ths_stop(ths_t *s);
/* Forgets the recorded requests. */
void ths_clear(ths_t *s);
/* The value of header `name` in a recorded request (case-insensitive), in
 * `out`; NULL when absent. */
const char *ths_header(const ths_request_t *r, const char *name, char *out, size_t outlen);

/* TLS: answers "200 ok" to every request on a thread; handshakes that the
 * client rejects are counted. */
typedef struct ths_tls_s {
    pthread_t thread;
    int fd;
    int port;
    volatile int stop;
    void *ctx; /* SSL_CTX */
    volatile int served, failed;
} ths_tls_t;

int ths_tls_start(ths_tls_t *t, const char *cert_pem, const char *key_pem);
void ths_tls_stop(ths_tls_t *t);

#endif
