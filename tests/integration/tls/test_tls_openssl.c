/* Against OpenSSL's own tools: our client with `openssl s_server` (data
 * both ways, a key update the server asks us to answer, TLS 1.2, refusals)
 * and `openssl s_client` with our ttrpc server (a real Echo call carried
 * over s_client, and its refusals), the server serving on after each. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fixture.h"

/* ---- our client, raw over the filter ----------------------------------- */

typedef struct raw_client_s {
    fx_client_t dial; /* only its dial fields are used */
    uv_stream_t *stream;
    pp_stream_filter_t *filter;
    pp_buf_t plain;
    int read_status; /* first negative return of the filter, or EOF */
    int closed;
} raw_client_t;

static void rc_dial_cb(pp_tls_dial_t *d, int status, uv_stream_t *stream,
                       pp_stream_filter_t *filter, const char *err_msg, void *data)
{
    raw_client_t *rc = data;
    (void)d;
    rc->dial.status = status;
    rc->stream = stream;
    rc->filter = filter;
    snprintf(rc->dial.msg, sizeof(rc->dial.msg), "%s", err_msg ? err_msg : "ok");
    rc->dial.done = 1;
}

static int rc_deliver(void *ctx, const uint8_t *p, size_t n)
{
    return pp_buf_append(ctx, p, n);
}

static void rc_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)h;
    b->base = malloc(s);
    b->len = s;
}

static void rc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    raw_client_t *rc = s->data;
    if (n > 0 && rc->read_status == 0) {
        int r = rc->filter->read(rc->filter, (const uint8_t *)b->base, (size_t)n, rc_deliver,
                                 &rc->plain);
        if (r < 0)
            rc->read_status = r;
    } else if (n < 0 && rc->read_status == 0) {
        rc->read_status = (int)n;
    }
    free(b->base);
}

static int rc_connect(fx_t *fx, raw_client_t *rc, pp_tls_ctx_t *ctx, int port, const char *name)
{
    memset(rc, 0, sizeof(*rc));
    pp_buf_init(&rc->plain, 0);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    assert_int_equal(
        pp_tls_dial(&fx->loop, ctx, (struct sockaddr *)&sa, name, rc_dial_cb, rc, NULL), 0);
    fx_run_until(fx, &rc->dial.done, 15000);
    printf("  our client: %s\n", rc->dial.msg);
    if (rc->dial.status == 0) {
        rc->stream->data = rc;
        assert_int_equal(uv_read_start(rc->stream, rc_alloc, rc_read), 0);
    }
    return rc->dial.status;
}

/* Writes through the filter and flushes: small writes wait for a flush,
 * which a ttrpc connection makes once per loop iteration. */
static int filter_send(pp_stream_filter_t *f, uint8_t *p, size_t n)
{
    int r = f->write(f, p, n);
    return r < 0 ? r : f->flush(f);
}

static void rc_write(raw_client_t *rc, const char *s)
{
    char *p = strdup(s);
    assert_int_equal(filter_send(rc->filter, (uint8_t *)p, strlen(s)), 0);
}

static void rc_closed(uv_handle_t *h)
{
    raw_client_t *rc = h->data;
    free(h);
    rc->closed = 1;
}

static void rc_close(fx_t *fx, raw_client_t *rc)
{
    if (rc->stream != NULL) {
        rc->filter->destroy(rc->filter);
        uv_close((uv_handle_t *)rc->stream, rc_closed);
        fx_run_until(fx, &rc->closed, 5000);
    }
    pp_buf_free(&rc->plain);
}

static int plain_has(const raw_client_t *rc, const char *needle)
{
    return rc->plain.len > 0 && memmem(rc->plain.data, rc->plain.len, needle, strlen(needle));
}

static void wait_plain(fx_t *fx, raw_client_t *rc, const char *needle)
{
    for (int i = 0; i < 500 && !plain_has(rc, needle); i++)
        fx_run_for(fx, 10);
    if (!plain_has(rc, needle))
        fail_msg("our client never received \"%s\" (read status %d)", needle, rc->read_status);
}

static fx_proc_t *start_s_server(fx_t *fx, const fx_cred_t *cred, int *port, const char *extra)
{
    *port = fx_free_port();
    char accept[32];
    snprintf(accept, sizeof(accept), "127.0.0.1:%d", *port);
    char *argv[20] = {"openssl",
                      "s_server",
                      "-accept",
                      accept,
                      "-cert",
                      (char *)cred->cert_file,
                      "-key",
                      (char *)cred->key_file,
                      "-CAfile",
                      fx->ca_file,
                      "-Verify",
                      "1",
                      "-verify_return_error"};
    int n = 13;
    if (extra != NULL)
        argv[n++] = (char *)extra;
    argv[n] = NULL;
    fx_proc_t *p = fx_spawn(fx, argv);
    if (!fx_proc_wait_for(fx, p, "ACCEPT", 10000)) {
        fx_proc_dump(p, "s_server");
        fail_msg("s_server did not start");
    }
    return p;
}

/* ---- our client against s_server --------------------------------------- */

static void client_vs_s_server(fx_t *fx, const char *version_flag, const char *want_version)
{
    int port;
    fx_proc_t *srv = start_s_server(fx, &fx->server, &port, version_flag);
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    raw_client_t rc;
    if (rc_connect(fx, &rc, ctx, port, FX_NAME) != 0) {
        fx_proc_dump(srv, "s_server");
        fail_msg("handshake with s_server failed: %s", rc.dial.msg);
    }
    pp_tls_ctx_free(ctx);

    rc_write(&rc, "hello from our client\n");
    if (!fx_proc_wait_for(fx, srv, "hello from our client", 5000)) {
        fx_proc_dump(srv, "s_server");
        fail_msg("s_server did not receive our data");
    }
    fx_proc_write(srv, "hello from s_server\n", 20);
    wait_plain(fx, &rc, "hello from s_server");

    if (want_version != NULL && strcmp(want_version, "TLSv1.3") == 0) {
        /* s_server's "K": a KeyUpdate asking us to update ours too, which
         * our filter sends while reading. Data after it flows both ways. */
        fx_proc_write(srv, "K\n", 2);
        fx_run_for(fx, 200);
        fx_proc_write(srv, "after key update\n", 17);
        wait_plain(fx, &rc, "after key update");
        rc_write(&rc, "ours after key update\n");
        if (!fx_proc_wait_for(fx, srv, "ours after key update", 5000)) {
            fx_proc_dump(srv, "s_server");
            fail_msg("s_server could not read us after the key update");
        }
        /* And our own key update. */
        assert_int_equal(pp_tls_filter_key_update(rc.filter, 1), 0);
        rc_write(&rc, "after our key update\n");
        if (!fx_proc_wait_for(fx, srv, "after our key update", 5000)) {
            fx_proc_dump(srv, "s_server");
            fail_msg("s_server could not read us after our key update");
        }
        fx_proc_write(srv, "server after ours\n", 18);
        wait_plain(fx, &rc, "server after ours");
    }
    assert_int_equal(rc.read_status, 0);
    rc_close(fx, &rc);
    fx_proc_kill(fx, srv);
}

static void test_client_vs_s_server_tls13(void **state)
{
    client_vs_s_server(*state, "-tls1_3", "TLSv1.3");
}

static void test_client_vs_s_server_tls12(void **state)
{
    client_vs_s_server(*state, "-tls1_2", "TLSv1.2");
}

static void test_client_refusals_s_server(void **state)
{
    fx_t *fx = *state;
    int port;
    fx_proc_t *srv = start_s_server(fx, &fx->server, &port, NULL);
    raw_client_t rc;

    /* We trust another CA. */
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, pp_ca_cert_pem(fx->other_ca));
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    assert_true(rc_connect(fx, &rc, ctx, port, FX_NAME) < 0);
    /* s_server sends its CA along, so OpenSSL names that one. */
    assert_non_null(strstr(rc.dial.msg, "server certificate verification failed: self-signed "
                                        "certificate in certificate chain"));
    rc_close(fx, &rc);
    pp_tls_ctx_free(ctx);

    /* The name is not the server's. */
    cc = fx_client_config(fx, &fx->client, NULL);
    ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    assert_true(rc_connect(fx, &rc, ctx, port, "podvm-impostor") < 0);
    assert_non_null(strstr(rc.dial.msg, "not valid for `podvm-impostor`"));
    rc_close(fx, &rc);

    /* The right name: s_server still serves. */
    assert_int_equal(rc_connect(fx, &rc, ctx, port, FX_NAME), 0);
    rc_close(fx, &rc);
    pp_tls_ctx_free(ctx);

    /* No client certificate: TLS 1.3 tells us at the first read. */
    cc = fx_client_config(fx, NULL, NULL);
    ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    assert_int_equal(rc_connect(fx, &rc, ctx, port, FX_NAME), 0);
    for (int i = 0; i < 300 && rc.read_status == 0; i++)
        fx_run_for(fx, 10);
    printf("  our client, first read: %s\n", uv_strerror(rc.read_status));
    assert_int_equal(rc.read_status, -EACCES);
    rc_close(fx, &rc);
    pp_tls_ctx_free(ctx);
    fx_proc_kill(fx, srv);

    /* An expired server certificate. */
    srv = start_s_server(fx, &fx->server_expired, &port, NULL);
    cc = fx_client_config(fx, &fx->client, NULL);
    ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    assert_true(rc_connect(fx, &rc, ctx, port, FX_NAME) < 0);
    assert_non_null(strstr(rc.dial.msg, "certificate has expired"));
    rc_close(fx, &rc);
    pp_tls_ctx_free(ctx);
    fx_proc_kill(fx, srv);

    /* A TLS 1.2 server when we require 1.3. */
    srv = start_s_server(fx, &fx->server, &port, "-tls1_2");
    cc = fx_client_config(fx, &fx->client, NULL);
    cc.min_version = "1.3";
    ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    assert_true(rc_connect(fx, &rc, ctx, port, FX_NAME) < 0);
    assert_non_null(strstr(rc.dial.msg, "protocol version"));
    rc_close(fx, &rc);
    pp_tls_ctx_free(ctx);
    fx_proc_kill(fx, srv);
}

/* ---- s_client against our server -------------------------------------- */

static fx_proc_t *start_s_client(fx_t *fx, const fx_cred_t *cred, const char *ca_file,
                                 const char *extra)
{
    char connect[32];
    snprintf(connect, sizeof(connect), "127.0.0.1:%d", fx->tls.port);
    char *argv[24] = {"openssl",
                      "s_client",
                      "-connect",
                      connect,
                      "-CAfile",
                      (char *)ca_file,
                      "-servername",
                      FX_NAME,
                      "-verify_hostname",
                      FX_NAME,
                      "-verify_return_error",
                      "-quiet"};
    int n = 12;
    if (cred != NULL) {
        argv[n++] = "-cert";
        argv[n++] = (char *)cred->cert_file;
        argv[n++] = "-key";
        argv[n++] = (char *)cred->key_file;
    }
    if (extra != NULL)
        argv[n++] = (char *)extra;
    argv[n] = NULL;
    return fx_spawn(fx, argv);
}

/* Sends one ttrpc Echo request through s_client and checks the answer
 * that comes back on its stdout. */
static void echo_through_s_client(fx_t *fx, fx_proc_t *cli, const char *text)
{
    pp_ttrpc_request_t req = {.service = {FX_SERVICE, strlen(FX_SERVICE)},
                              .method = {"Echo", 4},
                              .payload = (const uint8_t *)text,
                              .payload_len = strlen(text)};
    uint8_t *frame;
    size_t len;
    assert_int_equal(pp_ttrpc_request_frame(&req, &frame, &len), 0);
    pp_ttrpc_frame_set_stream(frame, 1);
    fx_proc_write(cli, frame, len);
    free(frame);
    if (!fx_proc_wait_for(fx, cli, text, 10000)) {
        fx_proc_dump(cli, "s_client");
        fail_msg("no answer through s_client");
    }
    const pp_buf_t *out = &cli->outb;
    assert_true(out->len >= PP_TTRPC_HEADER_SIZE);
    pp_ttrpc_header_t h;
    pp_ttrpc_header_unpack(out->data, &h);
    assert_int_equal(h.stream_id, 1);
    assert_int_equal(h.type, PP_TTRPC_RESPONSE);
    assert_int_equal(out->len, PP_TTRPC_HEADER_SIZE + h.length);
    pp_ttrpc_response_t resp;
    assert_int_equal(pp_ttrpc_response_decode(out->data + PP_TTRPC_HEADER_SIZE, h.length, &resp),
                     0);
    assert_int_equal(resp.code, 0);
    assert_int_equal(resp.payload_len, strlen(text));
    assert_memory_equal(resp.payload, text, strlen(text));
}

static void start_our_server(fx_t *fx, const char *min_version)
{
    pp_tls_config_t sc = fx_server_config(fx, &fx->server);
    sc.min_version = min_version;
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_SERVER, &sc);
    fx_server_start(fx, &fx->tls, ctx);
    pp_tls_ctx_free(ctx);
}

static void test_s_client_echo(void **state)
{
    fx_t *fx = *state;
    start_our_server(fx, NULL);
    static const char *flags[] = {"-tls1_3", "-tls1_2"};
    for (int i = 0; i < 2; i++) {
        int from = fx->nevents;
        fx_proc_t *cli = start_s_client(fx, &fx->client, fx->ca_file, flags[i]);
        echo_through_s_client(fx, cli, i == 0 ? "ping over s_client 1.3" : "ping over 1.2");
        const fx_event_t *e = fx_wait_event(fx, from, 5000);
        assert_int_equal(e->status, 0);
        fx_proc_kill(fx, cli);
    }
}

/* A refused s_client: the server reports `server_says`, s_client's output
 * shows `client_says`, and a good s_client works right after. */
static void s_client_refused(fx_t *fx, const fx_cred_t *cred, const char *ca_file,
                             const char *extra, const char *client_says, const char *server_says)
{
    int from = fx->nevents;
    fx_proc_t *cli = start_s_client(fx, cred, ca_file, extra);
    const fx_event_t *e = fx_wait_event(fx, from, 10000);
    printf("  server: %s\n", e->msg);
    if (e->status == 0 || strstr(e->msg, server_says) == NULL)
        fail_msg("server event \"%s\" does not say \"%s\"", e->msg, server_says);
    if (!fx_proc_wait_for(fx, cli, client_says, 5000)) {
        fx_proc_dump(cli, "s_client");
        fail_msg("s_client does not say \"%s\"", client_says);
    }
    /* s_client ends by itself: it heard the refusal. */
    assert_int_not_equal(fx_proc_wait_exit(fx, cli, 5000), 0);

    from = fx->nevents;
    cli = start_s_client(fx, &fx->client, fx->ca_file, NULL);
    echo_through_s_client(fx, cli, "still serving");
    fx_proc_kill(fx, cli);
}

static void test_s_client_refusals(void **state)
{
    fx_t *fx = *state;
    start_our_server(fx, "1.3");
    /* No client certificate. */
    s_client_refused(fx, NULL, fx->ca_file, NULL, "certificate required",
                     "the client presented no certificate");
    /* A client certificate from another CA. */
    s_client_refused(fx, &fx->client_other, fx->ca_file, NULL, "unknown ca",
                     "client certificate verification failed: unable to get local issuer");
    /* An expired client certificate. */
    s_client_refused(fx, &fx->client_expired, fx->ca_file, NULL, "certificate expired",
                     "client certificate verification failed: certificate has expired");
    /* s_client does not trust us. */
    s_client_refused(fx, &fx->client, fx->other_ca_file, NULL, "unable to get local issuer",
                     "the client refused the connection with TLS alert `unknown CA`");
    /* TLS 1.2 against our minimum of 1.3. */
    s_client_refused(fx, &fx->client, fx->ca_file, "-tls1_2", "protocol version",
                     "offered no TLS version we accept");
}

int main(void)
{
    setenv("PP_LOG_LEVEL", "error", 0);
    if (system("openssl version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "openssl command not found (Debian package `openssl`): skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_client_vs_s_server_tls13, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_vs_s_server_tls12, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_refusals_s_server, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_s_client_echo, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_s_client_refusals, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
