/* One TLS connection: the handshake on a raw uv stream, then the filter
 * that ttrpc reads and writes through.
 *
 * OpenSSL talks to a BIO of ours: reads come from a window over the bytes
 * the caller just received (OpenSSL keeps any partial record itself), and
 * writes append to a buffer that is handed to uv_write whole, so ciphertext
 * is copied once on each side. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/tls_int.h"
#include "util/buf.h"
#include "util/cleanup.h"
#include "util/log.h"

#define REC_HDR 5
/* The largest TLS 1.2 ciphertext record (RFC 5246 6.2.3); TLS 1.3 ones
 * are smaller. */
#define REC_MAX     (16384 + 2048)
#define PLAIN_CHUNK 16384
/* The largest write buffer kept for reuse (what a 1 MiB write grows to):
 * a connection holds at most this much while idle. */
/* Buffers larger than this are given back once empty rather than kept for
 * the next write: a burst must not leave every connection holding its peak.
 * The decryption scratch is taken per read for the same reason. */
#define KEEP_MAX ((size_t)8 << 10)
/* Writes below this size are gathered until the connection flushes, and
 * sealed together: one seal and one write for many small frames. */
#define COALESCE_MAX 16384
/* Gathered plaintext past which it is sealed without waiting for the flush,
 * so that a burst of small writes does not grow one buffer unbounded. */
#define PEND_MAX ((size_t)256 << 10)
/* After a failed handshake, how long to wait for the peer to read our
 * alert and close, so that closing does not reset the connection under
 * the alert. */
#define LINGER_MS 500

enum hs_state { HS_RUNNING, HS_LINGER, HS_DONE };

struct pp_tls_handshake_s {
    pp_stream_filter_t filter; /* handed out once the handshake is done */
    int refs;                  /* owner (until the callback), timer, writes, filter */
    pp_tls_ctx_t *ctx;
    uv_stream_t *stream; /* NULL once the stream is no longer ours to use */
    void *stream_data;   /* stream->data before the handshake took it */
    SSL *ssl;

    /* BIO window: ciphertext OpenSSL may read now. */
    const uint8_t *in;
    size_t in_len;
    pp_buf_t out; /* ciphertext produced, not yet handed to uv_write */
    /* A buffer back from uv_write, kept for the next one: large buffers
     * that are freed and allocated again cost a page fault per page. */
    uint8_t *spare;
    size_t spare_cap;
    pp_buf_t pend; /* small plaintext written since the last flush */
    int write_error;
    int broken; /* a fatal TLS error ended the connection */

    /* Handshake. */
    enum hs_state state;
    pp_tls_handshake_cb cb;
    void *data;
    uv_timer_t timer;
    uint8_t *rec; /* one record being read, header first */
    size_t rec_have, rec_need;
    size_t bytes_read;
    int fail_status;
    char *server_name;
    char err[384];
    char verify_subject[160]; /* the certificate that failed verification */
    int alert;                /* last alert received, or -1 */
    int cert_requested;       /* client: the server asked for our certificate */
    char peer_cn[128];

    uint8_t *plain; /* decryption scratch, PLAIN_CHUNK bytes, during f_read only */
};

typedef struct wreq_s {
    uv_write_t req;
    pp_tls_handshake_t *hs;
    uint8_t *buf;
    size_t cap;
} wreq_t;

static void hs_unref(pp_tls_handshake_t *hs)
{
    if (--hs->refs > 0)
        return;
    SSL_free(hs->ssl); /* frees the BIO too */
    pp_buf_free(&hs->out);
    pp_buf_free(&hs->pend);
    free(hs->spare);
    free(hs->rec);
    free(hs->plain);
    free(hs->server_name);
    pp_tls_ctx_free(hs->ctx);
    free(hs);
}

/* ---- BIO --------------------------------------------------------------- */

static int bio_write(BIO *b, const char *p, int n)
{
    pp_tls_handshake_t *hs = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (n <= 0)
        return 0;
    if (pp_buf_append(&hs->out, p, (size_t)n) < 0)
        return -1;
    return n;
}

static int bio_read(BIO *b, char *p, int n)
{
    pp_tls_handshake_t *hs = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (hs->in_len == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t m = (size_t)n < hs->in_len ? (size_t)n : hs->in_len;
    memcpy(p, hs->in, m);
    hs->in += m;
    hs->in_len -= m;
    return (int)m;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    pp_tls_handshake_t *hs = BIO_get_data(b);
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return (long)hs->in_len;
    case BIO_CTRL_WPENDING:
        return (long)hs->out.len;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int bio_destroy(BIO *b)
{
    (void)b;
    return 1;
}

BIO_METHOD *pp__tls_bio_method_new(void);

BIO_METHOD *pp__tls_bio_method_new(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pp-tls-mem");
    if (m == NULL)
        return NULL;
    if (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
        !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create) ||
        !BIO_meth_set_destroy(m, bio_destroy)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

/* ---- writing ----------------------------------------------------------- */

static void fail_now(pp_tls_handshake_t *hs, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void write_cb(uv_write_t *req, int status)
{
    wreq_t *w = container_of(req, wreq_t, req);
    pp_tls_handshake_t *hs = w->hs;
    if (hs->spare == NULL && hs->stream != NULL && w->cap <= KEEP_MAX) {
        hs->spare = w->buf;
        hs->spare_cap = w->cap;
    } else {
        free(w->buf);
    }
    free(w);
    if (status < 0 && status != UV_ECANCELED && hs->write_error == 0) {
        hs->write_error = status;
        if (hs->state == HS_RUNNING)
            fail_now(hs, status, "write: %s", uv_strerror(status));
    }
    hs_unref(hs);
}

/* Hands the ciphertext OpenSSL produced to the stream: what the socket
 * takes now directly (the buffer then stays for the next records), the rest
 * with a uv_write that owns the buffer until it is done. */
static int flush_out(pp_tls_handshake_t *hs)
{
    if (hs->out.len == 0)
        return 0;
    if (hs->stream == NULL || hs->write_error != 0) {
        hs->out.len = 0;
        return hs->write_error ? hs->write_error : -ENOTCONN;
    }
    size_t off = 0;
    uv_buf_t tb = uv_buf_init((char *)hs->out.data, (unsigned)hs->out.len);
    int t = uv_try_write(hs->stream, &tb, 1);
    if (t < 0 && t != UV_EAGAIN) {
        hs->out.len = 0;
        hs->write_error = t;
        return t;
    }
    if (t > 0) {
        off = (size_t)t;
        if (off == hs->out.len) {
            hs->out.len = 0;
            if (hs->out.cap > KEEP_MAX)
                pp_buf_free(&hs->out);
            return 0;
        }
    }
    wreq_t *w = malloc(sizeof(*w));
    if (w == NULL) {
        hs->out.len = 0;
        return -ENOMEM;
    }
    size_t len;
    w->cap = hs->out.cap;
    w->buf = pp_buf_steal(&hs->out, &len);
    w->hs = hs;
    if (hs->spare != NULL) {
        hs->out.data = hs->spare;
        hs->out.cap = hs->spare_cap;
        hs->spare = NULL;
    }
    uv_buf_t b = uv_buf_init((char *)w->buf + off, (unsigned)(len - off));
    int r = uv_write(&w->req, hs->stream, &b, 1, write_cb);
    if (r < 0) {
        free(w->buf);
        free(w);
        hs->write_error = r;
        return r;
    }
    hs->refs++;
    return 0;
}

/* ---- errors ------------------------------------------------------------ */

static const char *peer_role(const pp_tls_handshake_t *hs)
{
    return hs->ctx->role == PP_TLS_SERVER ? "client" : "server";
}

/* What a received alert means for us, by its description code, and
 * whether it is about a certificate (reported as -EACCES). */
static const struct {
    int desc;
    int certificate;
    const char *meaning;
} alert_meanings[] = {
    {SSL_AD_UNKNOWN_CA, 1, "it does not trust the CA that issued our certificate"},
    {SSL_AD_BAD_CERTIFICATE, 1, "it refused our certificate"},
    {SSL_AD_CERTIFICATE_EXPIRED, 1, "our certificate has expired or is not yet valid"},
    {SSL_AD_CERTIFICATE_REVOKED, 1, "our certificate is revoked"},
    {SSL_AD_UNSUPPORTED_CERTIFICATE, 1, "it cannot use our certificate"},
    {SSL_AD_CERTIFICATE_UNKNOWN, 1, "it refused our certificate"},
    {SSL_AD_CERTIFICATE_REQUIRED, 1, "it requires a client certificate and we sent none"},
    {SSL_AD_ACCESS_DENIED, 1, "access denied"},
    {SSL_AD_PROTOCOL_VERSION, 0, "we have no TLS version in common"},
    {SSL_AD_HANDSHAKE_FAILURE, 0,
     "it found no cipher suite or parameters in common, or lacked a certificate it requires"},
    {SSL_AD_INSUFFICIENT_SECURITY, 0, "our settings are weaker than it requires"},
    {SSL_AD_DECRYPT_ERROR, 0, "a signature or key check failed"},
    {SSL_AD_UNRECOGNIZED_NAME, 0, "it does not know the server name we asked for"},
};

/* Local failures OpenSSL reports, said plainly. */
static const struct {
    int reason;
    int status;
    const char *text;
} reasons[] = {
    {SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE, -EACCES,
     "the client presented no certificate, and mutual TLS is required"},
    {SSL_R_UNSUPPORTED_PROTOCOL, -EPROTO,
     "the peer offered no TLS version we accept (too old for our minimum)"},
    {SSL_R_NO_SHARED_CIPHER, -EPROTO, "no cipher suite in common with the peer"},
    {SSL_R_NO_CIPHERS_AVAILABLE, -EPROTO, "no cipher suite enabled for this TLS version"},
    {SSL_R_WRONG_VERSION_NUMBER, -EPROTO, "the peer is not speaking TLS (bad record version)"},
    {SSL_R_HTTP_REQUEST, -EPROTO, "the peer is speaking plain HTTP, not TLS"},
    {SSL_R_PACKET_LENGTH_TOO_LONG, -EPROTO, "the peer is not speaking TLS (bad record length)"},
    {SSL_R_NO_PROTOCOLS_AVAILABLE, -EPROTO, "no TLS version enabled"},
    {SSL_R_UNEXPECTED_EOF_WHILE_READING, UV_EOF, "the peer closed the connection"},
};

/* Explains a fatal TLS error in hs->err and returns the status for it:
 * our verification of the peer, else an alert from the peer, else what
 * OpenSSL says. Clears OpenSSL's error queue. */
static int explain(pp_tls_handshake_t *hs, int ssl_error)
{
    unsigned long e = ERR_peek_error();
    long vr = SSL_get_verify_result(hs->ssl);
    int status = -EPROTO;
    if (hs->ctx->verify_peer && vr != X509_V_OK &&
        (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED || e == 0)) {
        if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
            snprintf(hs->err, sizeof(hs->err),
                     "%s certificate verification failed: it is not valid for `%s`%s",
                     peer_role(hs), hs->server_name ? hs->server_name : "", hs->verify_subject);
        else
            snprintf(hs->err, sizeof(hs->err), "%s certificate verification failed: %s%s",
                     peer_role(hs), X509_verify_cert_error_string(vr), hs->verify_subject);
        status = -EACCES;
    } else if (hs->alert >= 0) {
        const char *meaning = NULL;
        for (size_t i = 0; i < PP_ARRAY_SIZE(alert_meanings); i++) {
            if (alert_meanings[i].desc == hs->alert) {
                meaning = alert_meanings[i].meaning;
                if (alert_meanings[i].certificate)
                    status = -EACCES;
            }
        }
        /* TLS 1.2 servers say handshake_failure for a missing client
         * certificate. */
        if (hs->cert_requested && SSL_get_certificate(hs->ssl) == NULL &&
            (hs->alert == SSL_AD_HANDSHAKE_FAILURE || hs->alert == SSL_AD_CERTIFICATE_REQUIRED))
            meaning = "it requires a client certificate and we have none";
        snprintf(hs->err, sizeof(hs->err), "the %s refused the connection with TLS alert `%s`%s%s",
                 peer_role(hs), SSL_alert_desc_string_long(hs->alert), meaning ? ": " : "",
                 meaning ? meaning : "");
    } else if (e != 0) {
        int reason = ERR_GET_REASON(e);
        const char *text = NULL;
        for (size_t i = 0; i < PP_ARRAY_SIZE(reasons); i++) {
            if (reasons[i].reason == reason) {
                text = reasons[i].text;
                status = reasons[i].status;
            }
        }
        if (text != NULL) {
            snprintf(hs->err, sizeof(hs->err), "%s", text);
        } else {
            const char *r = ERR_reason_error_string(e);
            snprintf(hs->err, sizeof(hs->err), "TLS error: %s", r ? r : "unknown");
        }
    } else if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN) {
        snprintf(hs->err, sizeof(hs->err), "the peer closed the connection");
        status = UV_EOF;
    } else {
        snprintf(hs->err, sizeof(hs->err), "TLS error %d", ssl_error);
    }
    ERR_clear_error();
    return status;
}

static void info_cb(const SSL *ssl, int where, int ret)
{
    pp_tls_handshake_t *hs = SSL_get_app_data(ssl);
    if ((where & SSL_CB_ALERT) && (where & SSL_CB_READ) && (ret >> 8) == SSL3_AL_FATAL)
        hs->alert = ret & 0xff;
}

static int cert_cb(SSL *ssl, void *arg)
{
    pp_tls_handshake_t *hs = arg;
    (void)ssl;
    hs->cert_requested = 1;
    return 1;
}

/* Remembers which certificate failed verification, for the message. */
static int verify_cb(int ok, X509_STORE_CTX *xs)
{
    if (ok)
        return ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    pp_tls_handshake_t *hs = ssl ? SSL_get_app_data(ssl) : NULL;
    X509 *cert = X509_STORE_CTX_get_current_cert(xs);
    if (hs != NULL && cert != NULL && hs->verify_subject[0] == '\0') {
        char cn[96] = "";
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
        snprintf(hs->verify_subject, sizeof(hs->verify_subject), " (certificate `CN=%s`)", cn);
    }
    return ok;
}

/* ---- handshake --------------------------------------------------------- */

static void timer_close_cb(uv_handle_t *h)
{
    pp_tls_handshake_t *hs = container_of((uv_timer_t *)h, pp_tls_handshake_t, timer);
    hs_unref(hs);
}

/* Ends the handshake and calls back, once. */
static void finish(pp_tls_handshake_t *hs, int status, pp_stream_filter_t *filter)
{
    if (hs->state == HS_DONE)
        return;
    hs->state = HS_DONE;
    if (hs->stream != NULL) {
        uv_read_stop(hs->stream);
        hs->stream->data = hs->stream_data;
    }
    uv_close((uv_handle_t *)&hs->timer, timer_close_cb);
    free(hs->rec);
    hs->rec = NULL;
    if (status < 0) {
        /* The stream goes back to the caller; writes queued on it hold
         * their own references. */
        hs->stream = NULL;
        if (hs->err[0] == '\0')
            snprintf(hs->err, sizeof(hs->err), "%s", uv_strerror(status));
        const char *reason = status == -EACCES                             ? "certificate"
                             : status == UV_ETIMEDOUT                      ? "timeout"
                             : status == UV_EOF || status == UV_ECONNRESET ? "closed"
                                                                           : "protocol";
        pp_series_inc(pp_metric_at(hs->ctx->handshake_failures,
                                   hs->ctx->role == PP_TLS_SERVER ? "server" : "client", reason));
    }
    hs->cb(hs, status, filter, status < 0 ? hs->err : NULL, hs->data);
    hs_unref(hs);
}

static void fail_now(pp_tls_handshake_t *hs, int status, const char *fmt, ...)
{
    if (hs->state == HS_DONE)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hs->err, sizeof(hs->err), fmt, ap);
    va_end(ap);
    finish(hs, status, NULL);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    pp_tls_handshake_t *hs = req->data;
    (void)status;
    free(req);
    hs_unref(hs);
}

static void linger_timer_cb(uv_timer_t *t)
{
    pp_tls_handshake_t *hs = container_of(t, pp_tls_handshake_t, timer);
    finish(hs, hs->fail_status, NULL);
}

/* A protocol failure: sends what OpenSSL queued (its alert), half-closes,
 * and reports once the peer has closed too or after LINGER_MS. */
static void fail_linger(pp_tls_handshake_t *hs, int status)
{
    hs->fail_status = status;
    hs->state = HS_LINGER;
    if (flush_out(hs) < 0) {
        finish(hs, status, NULL);
        return;
    }
    uv_shutdown_t *req = malloc(sizeof(*req));
    if (req == NULL) {
        finish(hs, status, NULL);
        return;
    }
    req->data = hs;
    if (uv_shutdown(req, hs->stream, shutdown_cb) < 0) {
        free(req);
        finish(hs, status, NULL);
        return;
    }
    hs->refs++;
    uv_timer_start(&hs->timer, linger_timer_cb, LINGER_MS, 0);
}

static void succeed(pp_tls_handshake_t *hs)
{
    X509 *peer = SSL_get0_peer_certificate(hs->ssl);
    if (peer != NULL)
        X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, hs->peer_cn,
                                  sizeof(hs->peer_cn));
    ERR_clear_error();
    hs->refs++; /* the filter's */
    finish(hs, 0, &hs->filter);
}

/* Runs the handshake on whatever the window holds. */
static void step(pp_tls_handshake_t *hs)
{
    ERR_clear_error();
    int r = SSL_do_handshake(hs->ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(hs->ssl, r);
    if (r == 1 || e == SSL_ERROR_WANT_READ) {
        int w = flush_out(hs);
        if (w < 0) {
            fail_now(hs, w, "write: %s", uv_strerror(w));
            return;
        }
        if (r == 1)
            succeed(hs);
        return;
    }
    fail_linger(hs, explain(hs, e));
}

static void hs_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    pp_tls_handshake_t *hs = h->data;
    (void)suggested;
    if (hs->state == HS_LINGER) {
        /* Anything the peer still sends is read and dropped. */
        *buf = uv_buf_init((char *)hs->rec, REC_HDR + REC_MAX);
        return;
    }
    /* Exactly the rest of the current record, so nothing past the last
     * handshake record leaves the socket. */
    size_t want = hs->rec_have < REC_HDR ? REC_HDR : hs->rec_need;
    *buf = uv_buf_init((char *)hs->rec + hs->rec_have, (unsigned)(want - hs->rec_have));
}

static int record_header_ok(const uint8_t *h, size_t *len)
{
    *len = ((size_t)h[3] << 8) | h[4];
    /* change_cipher_spec, alert, handshake or application_data, in
     * SSL 3.0 / TLS 1.x framing. */
    return h[0] >= 20 && h[0] <= 23 && h[1] == 3 && *len <= REC_MAX;
}

static void hs_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    pp_tls_handshake_t *hs = s->data;
    (void)buf;
    if (nread == 0)
        return;
    if (hs->state == HS_LINGER) {
        if (nread < 0)
            finish(hs, hs->fail_status, NULL);
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF)
            fail_now(hs, UV_EOF, "the %s closed the connection during the handshake%s",
                     peer_role(hs), hs->bytes_read == 0 ? " without sending anything" : "");
        else
            fail_now(hs, (int)nread, "read: %s", uv_strerror((int)nread));
        return;
    }
    hs->bytes_read += (size_t)nread;
    hs->rec_have += (size_t)nread;
    if (hs->rec_have == REC_HDR) {
        size_t len;
        if (!record_header_ok(hs->rec, &len)) {
            const uint8_t *h = hs->rec;
            snprintf(hs->err, sizeof(hs->err),
                     "the %s is not speaking TLS: it sent bytes %02x %02x %02x %02x %02x where a "
                     "TLS record was expected (a plaintext peer?)",
                     peer_role(hs), h[0], h[1], h[2], h[3], h[4]);
            fail_linger(hs, -EPROTO);
            return;
        }
        hs->rec_need = REC_HDR + len;
    }
    if (hs->rec_have < REC_HDR || hs->rec_have < hs->rec_need)
        return;
    hs->in = hs->rec;
    hs->in_len = hs->rec_need;
    hs->rec_have = 0;
    hs->rec_need = 0;
    step(hs);
    if (hs->state == HS_DONE || hs->state == HS_LINGER)
        return;
    /* OpenSSL takes whole records, so the window is empty here. */
    hs->in_len = 0;
}

static void timeout_cb(uv_timer_t *t)
{
    pp_tls_handshake_t *hs = container_of(t, pp_tls_handshake_t, timer);
    fail_now(hs, UV_ETIMEDOUT, "the TLS handshake timed out after %u ms (%s)", hs->ctx->timeout_ms,
             hs->bytes_read == 0 ? "the peer sent nothing" : "the peer stopped mid-handshake");
}

/* ---- filter ------------------------------------------------------------ */

/* A fatal error on an established connection: logged here, since ttrpc
 * only learns an errno. */
static int conn_error(pp_tls_handshake_t *hs, int ssl_error)
{
    int status = explain(hs, ssl_error);
    hs->broken = 1;
    PP_WARN("tls", "connection ended: %s", hs->err);
    return status == UV_EOF ? UV_EOF : status;
}

/* Encrypts into hs->out; the caller flushes. */
static int seal(pp_tls_handshake_t *hs, const uint8_t *data, size_t len)
{
    if (len == 0)
        return 0;
    /* Room for the records' headers, tags and padding, so that a large
     * write grows the buffer once. */
    pp_buf_reserve(&hs->out, len + (len / 16384 + 1) * 64);
    ERR_clear_error();
    size_t done = 0;
    if (!SSL_write_ex(hs->ssl, data, len, &done))
        return conn_error(hs, SSL_get_error(hs->ssl, 0));
    return 0;
}

static int seal_pending(pp_tls_handshake_t *hs)
{
    int r = seal(hs, hs->pend.data, hs->pend.len);
    hs->pend.len = 0;
    if (hs->pend.cap > KEEP_MAX)
        pp_buf_free(&hs->pend);
    return r;
}

static int f_flush(pp_stream_filter_t *f)
{
    pp_tls_handshake_t *hs = container_of(f, pp_tls_handshake_t, filter);
    if (hs->write_error != 0 || hs->broken) {
        hs->pend.len = 0;
        return hs->write_error ? hs->write_error : -EPROTO;
    }
    int r = seal_pending(hs);
    int w = flush_out(hs);
    return r < 0 ? r : w;
}

static int f_write(pp_stream_filter_t *f, uint8_t *data, size_t len)
{
    pp_tls_handshake_t *hs = container_of(f, pp_tls_handshake_t, filter);
    if (hs->write_error != 0 || hs->broken) {
        free(data);
        return hs->write_error ? hs->write_error : -EPROTO;
    }
    int r;
    if (len < COALESCE_MAX) {
        /* Gathered, and sealed and sent with the others at the flush, in
         * as few records as they fit and one write. */
        if (hs->pend.len + len > PEND_MAX && (r = f_flush(f)) < 0) {
            free(data);
            return r;
        }
        r = pp_buf_append(&hs->pend, data, len);
        free(data);
        return r;
    }
    /* A large write is sealed and sent at once, after what was gathered,
     * rather than copied into an ever larger buffer. */
    r = seal_pending(hs);
    if (r == 0)
        r = seal(hs, data, len);
    free(data);
    if (r < 0)
        return r;
    return flush_out(hs);
}

static int f_read(pp_stream_filter_t *f, const uint8_t *in, size_t n, pp_filter_deliver_cb deliver,
                  void *ctx)
{
    pp_tls_handshake_t *hs = container_of(f, pp_tls_handshake_t, filter);
    if (hs->write_error != 0)
        return hs->write_error;
    if (hs->broken)
        return -EPROTO;
    if (hs->plain == NULL && (hs->plain = malloc(PLAIN_CHUNK)) == NULL)
        return -ENOMEM;
    hs->in = in;
    hs->in_len = n;
    int rv = 0;
    for (;;) {
        size_t got = 0;
        ERR_clear_error();
        if (SSL_read_ex(hs->ssl, hs->plain, PLAIN_CHUNK, &got)) {
            rv = deliver(ctx, hs->plain, got);
            if (rv < 0)
                break;
            /* Nothing left to read, in the window or inside OpenSSL: the
             * next call could only ask for more. */
            if (hs->in_len == 0 && !SSL_has_pending(hs->ssl))
                break;
            continue;
        }
        int e = SSL_get_error(hs->ssl, 0);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            rv = UV_EOF; /* close_notify */
            break;
        }
        rv = conn_error(hs, e);
        break;
    }
    hs->in = NULL;
    hs->in_len = 0;
    free(hs->plain);
    hs->plain = NULL;
    /* Answers written while delivering wait in hs->pend for the
     * connection's flush. A KeyUpdate that asked for ours is answered now,
     * not at our next write, which may be far off: OpenSSL only notes it as
     * pending, and scheduling the same update ourselves is what lets
     * SSL_do_handshake() send it. */
    if (rv == 0 && SSL_get_key_update_type(hs->ssl) != SSL_KEY_UPDATE_NONE) {
        ERR_clear_error();
        if (!SSL_key_update(hs->ssl, SSL_KEY_UPDATE_NOT_REQUESTED) ||
            SSL_do_handshake(hs->ssl) != 1)
            rv = conn_error(hs, SSL_get_error(hs->ssl, 0));
    }
    int w = flush_out(hs);
    return rv < 0 ? rv : w;
}

static const char *f_last_error(pp_stream_filter_t *f)
{
    pp_tls_handshake_t *hs = container_of(f, pp_tls_handshake_t, filter);
    return hs->broken && hs->err[0] ? hs->err : NULL;
}

static void f_destroy(pp_stream_filter_t *f)
{
    pp_tls_handshake_t *hs = container_of(f, pp_tls_handshake_t, filter);
    hs->stream = NULL;
    hs_unref(hs);
}

int pp_tls_filter_key_update(pp_stream_filter_t *f, int request_peer)
{
    if (f == NULL || f->write != f_write)
        return -EINVAL;
    pp_tls_handshake_t *hs = container_of(f, pp_tls_handshake_t, filter);
    if (SSL_version(hs->ssl) < TLS1_3_VERSION)
        return -ENOTSUP;
    if (hs->broken || hs->write_error)
        return -ENOTCONN;
    ERR_clear_error();
    if (!SSL_key_update(hs->ssl,
                        request_peer ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED) ||
        SSL_do_handshake(hs->ssl) != 1) {
        ERR_clear_error();
        return -EPROTO;
    }
    return flush_out(hs);
}

/* ---- API --------------------------------------------------------------- */

static int is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

static int setup_ssl(pp_tls_handshake_t *hs, const char *server_name)
{
    pp_tls_ctx_t *ctx = hs->ctx;
    hs->ssl = SSL_new(ctx->ssl_ctx);
    if (hs->ssl == NULL)
        return -ENOMEM;
    BIO *bio = BIO_new(ctx->bio_method);
    if (bio == NULL)
        return -ENOMEM;
    BIO_set_data(bio, hs);
    SSL_set_bio(hs->ssl, bio, bio);
    SSL_set_app_data(hs->ssl, hs);
    SSL_set_info_callback(hs->ssl, info_cb);
    if (ctx->verify_peer)
        SSL_set_verify(hs->ssl, SSL_get_verify_mode(hs->ssl), verify_cb);
    if (ctx->role == PP_TLS_SERVER) {
        SSL_set_accept_state(hs->ssl);
        return 0;
    }
    SSL_set_connect_state(hs->ssl);
    SSL_set_cert_cb(hs->ssl, cert_cb, hs);
    if (server_name == NULL || *server_name == '\0')
        return 0;
    hs->server_name = strdup(server_name);
    if (hs->server_name == NULL)
        return -ENOMEM;
    X509_VERIFY_PARAM *param = SSL_get0_param(hs->ssl);
    if (is_ip(server_name)) {
        if (!X509_VERIFY_PARAM_set1_ip_asc(param, server_name))
            return -EINVAL;
        return 0;
    }
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (!SSL_set_tlsext_host_name(hs->ssl, server_name) || !SSL_set1_host(hs->ssl, server_name))
        return -EINVAL;
    return 0;
}

int pp_tls_handshake(pp_tls_ctx_t *ctx, uv_stream_t *stream, const char *server_name,
                     pp_tls_handshake_cb cb, void *data, pp_tls_handshake_t **out)
{
    if (ctx == NULL || stream == NULL || cb == NULL)
        return -EINVAL;
    pp_tls_handshake_t *hs = calloc(1, sizeof(*hs));
    if (hs == NULL)
        return -ENOMEM;
    hs->refs = 1;
    hs->ctx = pp__tls_ctx_ref(ctx);
    hs->alert = -1;
    hs->cb = cb;
    hs->data = data;
    hs->filter.write = f_write;
    hs->filter.read = f_read;
    hs->filter.destroy = f_destroy;
    hs->filter.flush = f_flush;
    hs->filter.last_error = f_last_error;
    /* No maximum: a write is at most one ttrpc frame, and the connection
     * bounds what is queued. */
    pp_buf_init(&hs->out, 0);
    pp_buf_init(&hs->pend, 0);
    hs->rec = malloc(REC_HDR + REC_MAX);
    int r = hs->rec == NULL ? -ENOMEM : setup_ssl(hs, server_name);
    if (r < 0) {
        ERR_clear_error();
        hs_unref(hs);
        return r;
    }
    uv_loop_t *loop = stream->loop;
    uv_timer_init(loop, &hs->timer);
    hs->refs++; /* the timer's, until its close callback */
    hs->stream = stream;
    hs->stream_data = stream->data;
    stream->data = hs;
    r = uv_read_start(stream, hs_alloc_cb, hs_read_cb);
    if (r == 0 && ctx->role == PP_TLS_CLIENT) {
        /* The ClientHello. */
        ERR_clear_error();
        int h = SSL_do_handshake(hs->ssl);
        if (h == 1 || SSL_get_error(hs->ssl, h) != SSL_ERROR_WANT_READ)
            r = -EPROTO;
        else
            r = flush_out(hs);
        ERR_clear_error();
    }
    if (r < 0) {
        /* Failing synchronously: no callback. */
        uv_read_stop(stream);
        stream->data = hs->stream_data;
        hs->stream = NULL;
        hs->state = HS_DONE;
        uv_close((uv_handle_t *)&hs->timer, timer_close_cb);
        hs_unref(hs);
        return r;
    }
    uv_timer_start(&hs->timer, timeout_cb, ctx->timeout_ms, 0);
    if (out != NULL)
        *out = hs;
    return 0;
}

void pp_tls_handshake_cancel(pp_tls_handshake_t *hs)
{
    if (hs == NULL || hs->state == HS_DONE)
        return;
    fail_now(hs, UV_ECANCELED, "the TLS handshake was cancelled");
}

const char *pp_tls_handshake_version(const pp_tls_handshake_t *hs)
{
    return SSL_get_version(hs->ssl);
}

const char *pp_tls_handshake_cipher(const pp_tls_handshake_t *hs)
{
    const char *c = SSL_get_cipher_name(hs->ssl);
    return c ? c : "";
}

const char *pp_tls_handshake_peer_cn(const pp_tls_handshake_t *hs)
{
    return hs->peer_cn;
}
