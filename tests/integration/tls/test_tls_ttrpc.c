/* Our ttrpc server and client over TLS on 127.0.0.1: echo with small and
 * large payloads, many concurrent calls and connections, key updates under
 * load, and every refusal (wrong CA, expired, wrong name, no client
 * certificate, plaintext either way, old version, timeouts), each with a
 * clear message, after which the server keeps serving. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"

/* A good client can still connect and call. */
static void assert_still_serving(fx_t *fx)
{
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    fx_client_t c;
    int r = fx_client_connect(fx, &c, ctx, fx->tls.port, FX_NAME);
    if (r != 0)
        fail_msg("good client refused after a failure case: %s", c.msg);
    char msg[256];
    assert_int_equal(fx_echo(fx, c.cli, 100, 1, msg, sizeof(msg)), 0);
    fx_client_close(fx, &c);
    pp_tls_ctx_free(ctx);
}

static void start_default_server(fx_t *fx, const char *min_version)
{
    pp_tls_config_t sc = fx_server_config(fx, &fx->server);
    sc.min_version = min_version;
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_SERVER, &sc);
    fx_server_start(fx, &fx->tls, ctx);
    pp_tls_ctx_free(ctx); /* the acceptor holds it */
}

/* Connects with `cfg` and expects the dial to fail with `client_says`, or,
 * when the failure only shows at the first call (TLS 1.3 client
 * certificates), that call to fail. The server must report `server_says`
 * (NULL: no server event expected). */
static void expect_refusal(fx_t *fx, pp_tls_config_t *cfg, const char *name,
                           const char *client_says, const char *server_says)
{
    int from = fx->nevents;
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, cfg);
    fx_client_t c;
    int r = fx_client_connect(fx, &c, ctx, fx->tls.port, name);
    if (r == 0) {
        char msg[256] = "";
        int code = fx_echo(fx, c.cli, 10, 1, msg, sizeof(msg));
        printf("  client: handshake done, first call: %d %s\n", code, msg);
        assert_int_equal(code, PP_GRPC_UNAVAILABLE);
        fx_client_close(fx, &c);
        if (client_says != NULL && strstr(client_says, "@call") == NULL)
            fail_msg("expected the handshake to fail with \"%s\", the call failed with \"%s\"",
                     client_says, msg);
    } else {
        printf("  client: %s\n", c.msg);
        assert_true(r < 0);
        if (client_says != NULL && strstr(c.msg, client_says) == NULL)
            fail_msg("client error \"%s\" does not say \"%s\"", c.msg, client_says);
        /* The message names the peer. */
        assert_non_null(strstr(c.msg, "127.0.0.1:"));
    }
    pp_tls_ctx_free(ctx);
    if (server_says != NULL) {
        const fx_event_t *e = fx_wait_event(fx, from, 5000);
        printf("  server: %s\n", e->msg);
        if (e->status == 0 || strstr(e->msg, server_says) == NULL)
            fail_msg("server event %d \"%s\" does not say \"%s\"", e->status, e->msg, server_says);
    }
    assert_still_serving(fx);
}

/* ---- traffic ----------------------------------------------------------- */

static void test_echo_small_and_large(void **state)
{
    fx_t *fx = *state;
    start_default_server(fx, NULL);
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    fx_client_t c;
    assert_int_equal(fx_client_connect(fx, &c, ctx, fx->tls.port, FX_NAME), 0);
    pp_tls_ctx_free(ctx);
    const fx_event_t *e = fx_wait_event(fx, 0, 5000);
    assert_int_equal(e->status, 0);
    char msg[256];
    /* The largest payload a request can carry: 4 MiB less the service
     * (2 + 12), method (2 + 4), payload (1 + 4) and timeout (1 + 5) fields. */
    const size_t fit = PP_TTRPC_MAX_MESSAGE - 14 - 6 - 5 - 6;
    const size_t sizes[] = {0, 1, 64, 16383, 16384, 16385, 100000, 1 << 20, 2 << 20, fit};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int code = fx_echo(fx, c.cli, sizes[i], (unsigned)i, msg, sizeof(msg));
        if (code != 0)
            fail_msg("echo of %zu bytes: code %d %s", sizes[i], code, msg);
    }
    /* Over the maximum: ttrpc refuses it, the TLS connection stays up. */
    int code = fx_echo(fx, c.cli, fit + 1, 1, msg, sizeof(msg));
    assert_int_equal(code, PP_GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(fx_echo(fx, c.cli, 1000, 3, msg, sizeof(msg)), 0);
    fx_client_close(fx, &c);
}

static void test_concurrent_calls(void **state)
{
    fx_t *fx = *state;
    start_default_server(fx, NULL);
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    fx_client_t c;
    assert_int_equal(fx_client_connect(fx, &c, ctx, fx->tls.port, FX_NAME), 0);

    /* 400 calls in flight on one connection, sizes from 0 to ~1 MiB. */
    enum { N = 400 };
    size_t *sizes = malloc(N * sizeof(*sizes));
    uint8_t *r = fx_pattern(N, 99);
    for (int i = 0; i < N; i++)
        sizes[i] =
            i % 50 == 0 ? (size_t)(1 << 20) - (size_t)i : (size_t)r[i] * (size_t)(i % 7 + 1) * 37;
    fx_batch_t b = {0};
    fx_echo_batch(fx, c.cli, sizes, N, &b);
    fx_run_until_count(fx, &b.done, N, 60000);
    if (b.ok != N)
        fail_msg("%d of %d calls ok; first failure %d %s", b.ok, N, b.failed_code, b.failed_msg);
    free(r);

    /* And 8 connections at once, 50 calls each. */
    enum { C = 8, M = 50 };
    fx_client_t cs[C];
    fx_batch_t bs[C];
    memset(bs, 0, sizeof(bs));
    for (int k = 0; k < C; k++)
        assert_int_equal(fx_client_connect(fx, &cs[k], ctx, fx->tls.port, FX_NAME), 0);
    for (int k = 0; k < C; k++)
        fx_echo_batch(fx, cs[k].cli, sizes + k * M, M, &bs[k]);
    for (int k = 0; k < C; k++) {
        fx_run_until_count(fx, &bs[k].done, M, 60000);
        assert_int_equal(bs[k].ok, M);
    }
    for (int k = 0; k < C; k++)
        fx_client_close(fx, &cs[k]);
    fx_client_close(fx, &c);
    pp_tls_ctx_free(ctx);
    free(sizes);
}

static void test_key_update_under_load(void **state)
{
    fx_t *fx = *state;
    start_default_server(fx, NULL);
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    fx_client_t c;
    assert_int_equal(fx_client_connect(fx, &c, ctx, fx->tls.port, FX_NAME), 0);
    pp_tls_ctx_free(ctx);
    enum { N = 60 };
    size_t sizes[N];
    for (int i = 0; i < N; i++)
        sizes[i] = (size_t)(i * 4099) % 300000;
    for (int round = 0; round < 5; round++) {
        fx_batch_t b = {0};
        fx_echo_batch(fx, c.cli, sizes, N / 2, &b);
        /* Mid-flight: new keys both ways (the server answers ours with its
         * own while it reads), then more calls on the new keys. */
        assert_int_equal(pp_tls_filter_key_update(c.filter, 1), 0);
        fx_echo_batch(fx, c.cli, sizes + N / 2, N / 2, &b);
        fx_run_until_count(fx, &b.done, N, 30000);
        if (b.ok != N)
            fail_msg("round %d: %d of %d ok; %d %s", round, b.ok, N, b.failed_code, b.failed_msg);
    }
    fx_client_close(fx, &c);
}

static void test_tls12_and_ciphers(void **state)
{
    fx_t *fx = *state;
    pp_tls_config_t sc = fx_server_config(fx, &fx->server);
    sc.cipher_suites = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,"
                       "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_AES_256_GCM_SHA384";
    pp_tls_ctx_t *sctx = fx_ctx(PP_TLS_SERVER, &sc);
    fx_server_start(fx, &fx->tls, sctx);
    pp_tls_ctx_free(sctx);
    static const char *suites[] = {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                                   "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"};
    for (int i = 0; i < 2; i++) {
        pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
        cc.max_version = "1.2";
        cc.cipher_suites = suites[i];
        pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
        fx_client_t c;
        assert_int_equal(fx_client_connect(fx, &c, ctx, fx->tls.port, FX_NAME), 0);
        char msg[128];
        assert_int_equal(fx_echo(fx, c.cli, 300000, 5, msg, sizeof(msg)), 0);
        fx_client_close(fx, &c);
        pp_tls_ctx_free(ctx);
    }
    /* No suite in common. */
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
    cc.max_version = "1.2";
    cc.cipher_suites = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256";
    expect_refusal(fx, &cc, FX_NAME, "handshake failure", "no cipher suite in common");
}

static void test_skip_verify_and_no_client_auth(void **state)
{
    fx_t *fx = *state;
    /* A server without client authentication, with a certificate from a CA
     * the client does not know: a client that skips verification (and
     * sends no certificate) gets through, and checks nothing, not even the
     * name. */
    pp_tls_config_t sc = fx_server_config(fx, &fx->server_other);
    sc.no_client_auth = 1;
    sc.ca_pem = NULL;
    pp_tls_ctx_t *sctx = fx_ctx(PP_TLS_SERVER, &sc);
    fx_server_start(fx, &fx->tls, sctx);
    pp_tls_ctx_free(sctx);
    pp_tls_config_t cc = {.skip_verify = 1};
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    fx_client_t c;
    assert_int_equal(fx_client_connect(fx, &c, ctx, fx->tls.port, "any-name-at-all"), 0);
    char msg[128];
    assert_int_equal(fx_echo(fx, c.cli, 5000, 1, msg, sizeof(msg)), 0);
    fx_client_close(fx, &c);
    pp_tls_ctx_free(ctx);
    /* Without skipping, the same client setup is refused. */
    cc = fx_client_config(fx, NULL, NULL);
    ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    assert_true(fx_client_connect(fx, &c, ctx, fx->tls.port, FX_NAME) < 0);
    assert_non_null(strstr(c.msg, "server certificate verification failed"));
    pp_tls_ctx_free(ctx);
}

/* ---- refusals ---------------------------------------------------------- */

/* Failed handshakes are counted on both sides when the contexts have a
 * registry; good ones are not. */
static void test_failures_counted(void **state)
{
    fx_t *fx = *state;
    pp_metrics_t *m = pp_metrics_new();
    pp_tls_config_t sc = fx_server_config(fx, &fx->server);
    sc.metrics = m;
    pp_tls_ctx_t *sctx = fx_ctx(PP_TLS_SERVER, &sc);
    fx_server_start(fx, &fx->tls, sctx);
    pp_tls_ctx_free(sctx);
    pp_metric_t *f =
        pp_metrics_counter(m, "peerpod_tls_handshake_failures_total", "", "role,reason");
    assert_non_null(f);
    /* The client trusts another CA: it refuses the server's certificate. */
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, pp_ca_cert_pem(fx->other_ca));
    cc.metrics = m;
    expect_refusal(fx, &cc, FX_NAME, "server certificate verification failed", "unknown CA");
    assert_true(pp_series_value(pp_metric_at(f, "client", "certificate")) == 1);
    /* The server heard the client's alert about its certificate. */
    assert_true(pp_series_value(pp_metric_at(f, "server", "certificate")) == 1);
    /* TLS 1.2, so that the server sees the bad client certificate during
     * the handshake. */
    cc = fx_client_config(fx, &fx->client_other, NULL);
    cc.max_version = "1.2";
    expect_refusal(fx, &cc, FX_NAME, NULL, "client certificate verification failed");
    assert_true(pp_series_value(pp_metric_at(f, "server", "certificate")) == 2);
    assert_true(pp_series_value(pp_metric_at(f, "client", "certificate")) == 1);
    /* assert_still_serving() made good handshakes: nothing more counted. */
    pp_buf_t b;
    pp_buf_init(&b, 1 << 16);
    assert_int_equal(pp_metrics_render(m, &b), 0);
    assert_int_equal(pp_buf_append_byte(&b, 0), 0);
    printf("%s", (const char *)b.data);
    assert_non_null(strstr((const char *)b.data, "peerpod_tls_handshake_failures_total{role="
                                                 "\"client\",reason=\"certificate\"} 1\n"));
    pp_buf_free(&b);
    fx_server_stop(fx, &fx->tls);
    pp_metrics_free(m);
}

static void test_wrong_ca(void **state)
{
    fx_t *fx = *state;
    start_default_server(fx, NULL);
    /* The client trusts another CA. */
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, pp_ca_cert_pem(fx->other_ca));
    expect_refusal(fx, &cc, FX_NAME,
                   "server certificate verification failed: unable to get local issuer "
                   "certificate (certificate `CN=" FX_NAME "`)",
                   "unknown CA");
    /* The client's certificate is from another CA. */
    cc = fx_client_config(fx, &fx->client_other, NULL);
    expect_refusal(fx, &cc, FX_NAME, "@call",
                   "client certificate verification failed: unable to get local issuer "
                   "certificate");
}

static void test_expired(void **state)
{
    fx_t *fx = *state;
    /* The server's certificate has expired. */
    pp_tls_config_t sc = fx_server_config(fx, &fx->server_expired);
    pp_tls_ctx_t *sctx = fx_ctx(PP_TLS_SERVER, &sc);
    fx_server_t expired;
    fx_server_start(fx, &expired, sctx);
    pp_tls_acceptor_on_event(expired.acc, NULL, NULL);
    pp_tls_ctx_free(sctx);
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    fx_client_t c;
    assert_true(fx_client_connect(fx, &c, ctx, expired.port, FX_NAME) < 0);
    assert_non_null(strstr(c.msg, "server certificate verification failed: certificate has "
                                  "expired"));
    pp_tls_ctx_free(ctx);
    fx_server_stop(fx, &expired);

    /* The client's has. */
    start_default_server(fx, NULL);
    cc = fx_client_config(fx, &fx->client_expired, NULL);
    expect_refusal(fx, &cc, FX_NAME, "@call",
                   "client certificate verification failed: certificate has expired");
}

static void test_wrong_name(void **state)
{
    fx_t *fx = *state;
    start_default_server(fx, NULL);
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
    expect_refusal(fx, &cc, "podvm-someone-else",
                   "server certificate verification failed: it is not valid for "
                   "`podvm-someone-else`",
                   "bad certificate");
    /* An IP address the certificate does not name. */
    expect_refusal(fx, &cc, "127.0.0.1", "it is not valid for `127.0.0.1`", NULL);
}

static void test_no_client_certificate(void **state)
{
    fx_t *fx = *state;
    start_default_server(fx, NULL);
    /* TLS 1.3: the client thinks it is done; its first call fails. */
    pp_tls_config_t cc = fx_client_config(fx, NULL, NULL);
    expect_refusal(fx, &cc, FX_NAME, "@call",
                   "the client presented no certificate, and mutual TLS is required");
    /* TLS 1.2: the client hears it during the handshake. */
    cc.max_version = "1.2";
    expect_refusal(fx, &cc, FX_NAME, "handshake failure",
                   "the client presented no certificate, and mutual TLS is required");
}

static void test_old_version(void **state)
{
    fx_t *fx = *state;
    start_default_server(fx, "TLS 1.3");
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
    cc.max_version = "1.2";
    expect_refusal(fx, &cc, FX_NAME, "protocol version", "offered no TLS version we accept");
}

static void plain_connect_cb(pp_ttrpc_client_t *c, int status, void *data)
{
    (void)c;
    *(int *)data = status == 0 ? 1 : status;
}

static void test_plaintext_client(void **state)
{
    fx_t *fx = *state;
    start_default_server(fx, NULL);
    int from = fx->nevents;
    pp_ttrpc_client_t *cli;
    assert_int_equal(pp_ttrpc_client_new(&fx->loop, &cli), 0);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", fx->tls.port, &sa);
    int connected = 0;
    assert_int_equal(
        pp_ttrpc_client_connect_tcp(cli, (struct sockaddr *)&sa, plain_connect_cb, &connected), 0);
    fx_run_until(fx, &connected, 5000);
    assert_int_equal(connected, 1);
    char msg[256];
    int code = fx_echo(fx, cli, 64, 1, msg, sizeof(msg));
    assert_int_equal(code, PP_GRPC_UNAVAILABLE);
    const fx_event_t *e = fx_wait_event(fx, from, 5000);
    assert_int_equal(e->status, -EPROTO);
    assert_non_null(strstr(e->msg, "the client is not speaking TLS"));
    fx_client_t wrap = {.cli = cli};
    fx_client_close(fx, &wrap);
    assert_still_serving(fx);
}

static void test_tls_client_plaintext_server(void **state)
{
    fx_t *fx = *state;
    fx_server_t plain;
    fx_server_start(fx, &plain, NULL);
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    fx_client_t c;
    assert_true(fx_client_connect(fx, &c, ctx, plain.port, FX_NAME) < 0);
    assert_non_null(strstr(c.msg, "the server is not speaking TLS"));
    pp_tls_ctx_free(ctx);
    /* The plaintext server is fine too. */
    pp_ttrpc_client_t *cli;
    assert_int_equal(pp_ttrpc_client_new(&fx->loop, &cli), 0);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", plain.port, &sa);
    int connected = 0;
    assert_int_equal(
        pp_ttrpc_client_connect_tcp(cli, (struct sockaddr *)&sa, plain_connect_cb, &connected), 0);
    fx_run_until(fx, &connected, 5000);
    char msg[128];
    assert_int_equal(fx_echo(fx, cli, 64, 1, msg, sizeof(msg)), 0);
    fx_client_t wrap = {.cli = cli};
    fx_client_close(fx, &wrap);
    fx_server_stop(fx, &plain);
}

/* ---- timeouts, cancellation, shutdown ---------------------------------- */

typedef struct raw_s {
    uv_tcp_t tcp;
    uv_connect_t req;
    int connected;
    int eof;
    int closed;
} raw_t;

static void raw_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)h;
    static char sink[65536];
    (void)s;
    *b = uv_buf_init(sink, sizeof(sink));
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    raw_t *r = s->data;
    (void)b;
    if (n < 0)
        r->eof = 1;
}

static void raw_connect_cb(uv_connect_t *req, int status)
{
    raw_t *r = req->data;
    r->connected = status == 0 ? 1 : status;
    if (status == 0)
        uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
}

static void raw_connect(fx_t *fx, raw_t *r, int port)
{
    memset(r, 0, sizeof(*r));
    uv_tcp_init(&fx->loop, &r->tcp);
    r->tcp.data = r;
    r->req.data = r;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    assert_int_equal(uv_tcp_connect(&r->req, &r->tcp, (struct sockaddr *)&sa, raw_connect_cb), 0);
    fx_run_until(fx, &r->connected, 5000);
    assert_int_equal(r->connected, 1);
}

static void raw_closed(uv_handle_t *h)
{
    ((raw_t *)h->data)->closed = 1;
}

static void raw_close(fx_t *fx, raw_t *r)
{
    uv_close((uv_handle_t *)&r->tcp, raw_closed);
    fx_run_until(fx, &r->closed, 5000);
}

static void test_handshake_timeouts(void **state)
{
    fx_t *fx = *state;
    /* A client that connects and says nothing is dropped after the
     * server's timeout; meanwhile others are served. */
    pp_tls_config_t sc = fx_server_config(fx, &fx->server);
    sc.handshake_timeout_ms = 1500;
    pp_tls_ctx_t *sctx = fx_ctx(PP_TLS_SERVER, &sc);
    fx_server_start(fx, &fx->tls, sctx);
    pp_tls_ctx_free(sctx);
    raw_t r;
    raw_connect(fx, &r, fx->tls.port);
    fx_run_for(fx, 20);
    assert_int_equal(pp_tls_acceptor_pending(fx->tls.acc), 1);
    assert_still_serving(fx);
    assert_int_equal(pp_tls_acceptor_pending(fx->tls.acc), 1);
    const fx_event_t *e = NULL;
    for (int i = 0; i < 500 && e == NULL; i++) {
        fx_run_for(fx, 10);
        e = fx_find_event(fx, 0, "timed out");
    }
    assert_non_null(e);
    printf("  server: %s\n", e->msg);
    assert_int_equal(e->status, UV_ETIMEDOUT);
    assert_non_null(strstr(e->msg, "timed out after 1500 ms (the peer sent nothing)"));
    fx_run_until(fx, &r.eof, 5000);
    raw_close(fx, &r);
    assert_still_serving(fx);

    /* A server that accepts and says nothing: the client gives up. */
    /* Listening, never accepting: the kernel completes the connection
     * and nobody ever answers. */
    int mute = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(mute, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t slen = sizeof(sa);
    assert_int_equal(getsockname(mute, (struct sockaddr *)&sa, &slen), 0);
    assert_int_equal(listen(mute, 8), 0);
    int port = ntohs(sa.sin_port);
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
    cc.handshake_timeout_ms = 300;
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    fx_client_t c;
    assert_int_equal(fx_client_connect(fx, &c, ctx, port, FX_NAME), UV_ETIMEDOUT);
    assert_non_null(strstr(c.msg, "timed out after 300 ms"));
    /* Nothing listening at all. */
    int closed_port = fx_free_port();
    assert_int_equal(fx_client_connect(fx, &c, ctx, closed_port, FX_NAME), UV_ECONNREFUSED);
    assert_non_null(strstr(c.msg, "connect to 127.0.0.1:"));
    pp_tls_ctx_free(ctx);
    close(mute);
}

static void cancel_cb(pp_tls_dial_t *d, int status, uv_stream_t *stream, pp_stream_filter_t *f,
                      const char *err_msg, void *data)
{
    (void)d;
    (void)err_msg;
    int *calls = data;
    assert_null(stream);
    assert_null(f);
    assert_int_equal(status, UV_ECANCELED);
    (*calls)++;
}

static void test_cancel_and_shutdown(void **state)
{
    fx_t *fx = *state;
    start_default_server(fx, NULL);
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", fx->tls.port, &sa);

    /* Cancelled while connecting, and while in the handshake. */
    int calls = 0;
    pp_tls_dial_t *d;
    assert_int_equal(
        pp_tls_dial(&fx->loop, ctx, (struct sockaddr *)&sa, FX_NAME, cancel_cb, &calls, &d), 0);
    pp_tls_dial_cancel(d);
    assert_int_equal(calls, 1);
    fx_run_for(fx, 50);
    assert_int_equal(calls, 1);

    /* Handshakes in progress when the acceptor goes: cancelled, their
     * connections closed, nothing leaks (ASan/valgrind). */
    raw_t r[3];
    for (int i = 0; i < 3; i++)
        raw_connect(fx, &r[i], fx->tls.port);
    fx_run_for(fx, 50);
    assert_int_equal(pp_tls_acceptor_pending(fx->tls.acc), 3);
    int from = fx->nevents;
    fx_server_stop(fx, &fx->tls);
    assert_int_equal(fx->nevents, from); /* no events while freeing */
    for (int i = 0; i < 3; i++) {
        fx_run_until(fx, &r[i].eof, 5000);
        raw_close(fx, &r[i]);
    }
    pp_tls_ctx_free(ctx);
}

int main(void)
{
    setenv("PP_LOG_LEVEL", "error", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_small_and_large, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_failures_counted, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_calls, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_key_update_under_load, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls12_and_ciphers, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_skip_verify_and_no_client_auth, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_ca, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_expired, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_name, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_no_client_certificate, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_old_version, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_plaintext_client, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_tls_client_plaintext_server, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeouts, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_shutdown, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
