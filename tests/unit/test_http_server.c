/* The scripted loopback server of the HTTP client's tests (see the header). */
#include "test_http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#define CONN_MAX_REQ (1u << 20)

typedef struct conn_s {
    uv_tcp_t tcp;
    uv_timer_t timer;
    ths_t *s;
    char *buf;
    size_t len;
    int handled;
    int closing;
    unsigned pending;
    const ths_reply_t *reply;
    uv_write_t wr;
    char *out;
} conn_t;

static void conn_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->pending > 0)
        return;
    c->s->open_conns--;
    free(c->buf);
    free(c->out);
    free(c);
}

static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    conn_close(w->data);
}

static void send_reply(conn_t *c)
{
    const ths_reply_t *r = c->reply;
    if (r->drop) {
        conn_close(c);
        return;
    }
    size_t blen =
        r->body_fill ? r->body_fill : (r->body ? (r->body_len ? r->body_len : strlen(r->body)) : 0);
    const char *hdrs = r->headers ? r->headers : "";
    size_t cap = strlen(hdrs) + blen + 256;
    c->out = malloc(cap);
    if (c->out == NULL) {
        conn_close(c);
        return;
    }
    int n =
        snprintf(c->out, cap, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
                 r->status, blen, hdrs);
    if (r->body_fill)
        memset(c->out + n, 'x', blen);
    else if (blen > 0)
        memcpy(c->out + n, r->body, blen);
    uv_buf_t b = uv_buf_init(c->out, (unsigned)((size_t)n + blen));
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0)
        conn_close(c);
}

static void on_delay(uv_timer_t *t)
{
    send_reply(t->data);
}

static const char *find_hdr(const char *head, const char *name, size_t *vlen)
{
    size_t n = strlen(name);
    const char *p = strstr(head, "\r\n");
    while (p != NULL && p[2] != '\0') {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            *vlen = e ? (size_t)(e - v) : strlen(v);
            return v;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

const char *ths_header(const ths_request_t *r, const char *name, char *out, size_t outlen)
{
    size_t vlen = 0;
    const char *v = find_hdr(r->head, name, &vlen);
    if (v == NULL || vlen + 1 > outlen)
        return NULL;
    memcpy(out, v, vlen);
    out[vlen] = '\0';
    return out;
}

static void try_handle(conn_t *c)
{
    if (c->handled)
        return;
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (end == NULL)
        return;
    size_t head_len = (size_t)(end - c->buf) + 2;
    char *head = strndup(c->buf, head_len);
    if (head == NULL)
        return;
    size_t clen = 0, vlen = 0;
    const char *v = find_hdr(head, "Content-Length", &vlen);
    if (v != NULL)
        clen = strtoul(v, NULL, 10);
    if (c->len < head_len + 2 + clen) {
        free(head);
        return;
    }
    c->handled = 1;
    ths_t *s = c->s;
    if (s->nreqs < sizeof(s->reqs) / sizeof(s->reqs[0])) {
        ths_request_t *r = &s->reqs[s->nreqs++];
        memset(r, 0, sizeof(*r));
        sscanf(head, "%15s %2047s", r->method, r->target);
        r->head = head;
        r->body = malloc(clen + 1);
        if (r->body != NULL) {
            memcpy(r->body, end + 4, clen);
            r->body[clen] = '\0';
        }
        r->body_len = clen;
        r->t_us = uv_hrtime() / 1000;
    } else {
        free(head);
    }
    c->reply = s->next < s->nscript ? &s->script[s->next++] : &s->dflt;
    if (c->reply->hang)
        return;
    if (c->reply->delay_ms > 0)
        uv_timer_start(&c->timer, on_delay, c->reply->delay_ms, 0);
    else
        send_reply(c);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    conn_t *c = h->data;
    (void)size;
    if (c->len + 65536 > CONN_MAX_REQ) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    char *p = realloc(c->buf, c->len + 65536);
    if (p == NULL) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    c->buf = p;
    *buf = uv_buf_init(c->buf + c->len, 65536);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = st->data;
    (void)buf;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    try_handle(c);
}

static void on_conn(uv_stream_t *l, int status)
{
    ths_t *s = l->data;
    if (status < 0 || s->closing)
        return;
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->s = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->pending = 2;
    s->open_conns++;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c);
}

int ths_start(uv_loop_t *loop, ths_t *s)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->dflt.status = 200;
    s->dflt.body = "ok";
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    int rc = uv_tcp_init(loop, &s->listener);
    if (rc < 0)
        return rc;
    s->listener.data = s;
    if ((rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&a, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&s->listener, 128, on_conn)) < 0)
        return rc;
    struct sockaddr_in got;
    int len = sizeof(got);
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &len);
    s->port = ntohs(got.sin_port);
    return 0;
}

void ths_script(ths_t *s, const ths_reply_t *replies, size_t n, const ths_reply_t *dflt)
{
    s->script = replies;
    s->nscript = n;
    s->next = 0;
    if (dflt != NULL)
        s->dflt = *dflt;
    else
        s->dflt = (ths_reply_t){.status = 200, .body = "ok"};
}

static void walk_close(uv_handle_t *h, void *arg)
{
    ths_t *s = arg;
    if (h->type == UV_TCP && h != (uv_handle_t *)&s->listener && h->data != NULL) {
        conn_t *c = h->data;
        if (c->s == s)
            conn_close(c);
    }
}

void ths_clear(ths_t *s)
{
    for (size_t i = 0; i < s->nreqs; i++) {
        free(s->reqs[i].head);
        free(s->reqs[i].body);
    }
    s->nreqs = 0;
}

void ths_stop(ths_t *s)
{
    s->closing = 1;
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_walk(s->loop, walk_close, s);
    ths_clear(s);
}

/* --- TLS ------------------------------------------------------------------------ */

static void *tls_main(void *arg)
{
    ths_tls_t *t = arg;
    while (!t->stop) {
        struct pollfd p = {.fd = t->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(t->fd, NULL, NULL);
        if (fd < 0)
            continue;
        SSL *ssl = SSL_new(t->ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) == 1) {
            char buf[4096];
            size_t len = 0;
            while (len < sizeof(buf) - 1) {
                int n = SSL_read(ssl, buf + len, (int)(sizeof(buf) - 1 - len));
                if (n <= 0)
                    break;
                len += (size_t)n;
                buf[len] = '\0';
                if (strstr(buf, "\r\n\r\n") != NULL)
                    break;
            }
            static const char resp[] =
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
            SSL_write(ssl, resp, sizeof(resp) - 1);
            SSL_shutdown(ssl);
            t->served++;
        } else {
            t->failed++;
        }
        SSL_free(ssl);
        close(fd);
    }
    return NULL;
}

int ths_tls_start(ths_tls_t *t, const char *cert_pem, const char *key_pem)
{
    memset(t, 0, sizeof(*t));
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return -ENOMEM;
    BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *cert = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    BIO_free(cb);
    BIO_free(kb);
    int ok = cert != NULL && key != NULL && SSL_CTX_use_certificate(ctx, cert) == 1 &&
             SSL_CTX_use_PrivateKey(ctx, key) == 1;
    X509_free(cert);
    EVP_PKEY_free(key);
    if (!ok) {
        SSL_CTX_free(ctx);
        return -EINVAL;
    }
    t->ctx = ctx;
    t->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (t->fd < 0 || bind(t->fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(t->fd, 16) < 0 ||
        getsockname(t->fd, (struct sockaddr *)&a, &alen) < 0) {
        if (t->fd >= 0)
            close(t->fd);
        SSL_CTX_free(ctx);
        return -errno;
    }
    t->port = ntohs(a.sin_port);
    if (pthread_create(&t->thread, NULL, tls_main, t) != 0) {
        close(t->fd);
        SSL_CTX_free(ctx);
        return -EAGAIN;
    }
    return 0;
}

void ths_tls_stop(ths_tls_t *t)
{
    t->stop = 1;
    pthread_join(t->thread, NULL);
    close(t->fd);
    SSL_CTX_free(t->ctx);
}
