/* Against Go's crypto/tls (tests/integration/tls/go): a Go client with
 * mutual TLS making ttrpc Echo calls on our server, and our ttrpc client on
 * a Go server, in TLS 1.3 and 1.2, large payloads and key updates included;
 * then the refusals each way, with the server serving on after each. */
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

static const char *go_peer;

static void start_our_server(fx_t *fx, const char *min_version)
{
    pp_tls_config_t sc = fx_server_config(fx, &fx->server);
    sc.min_version = min_version;
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_SERVER, &sc);
    fx_server_start(fx, &fx->tls, ctx);
    pp_tls_ctx_free(ctx);
}

/* Runs the Go client to the end; returns its exit status. */
static int64_t go_client(fx_t *fx, fx_proc_t **out, const fx_cred_t *cred, const char *ca_file,
                         const char *name, const char *const *extra)
{
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", fx->tls.port);
    char *argv[32] = {(char *)go_peer, "client",     "-addr", addr,
                      "-name",         (char *)name, "-ca",   (char *)ca_file};
    int n = 8;
    if (cred != NULL) {
        argv[n++] = "-cert";
        argv[n++] = (char *)cred->cert_file;
        argv[n++] = "-key";
        argv[n++] = (char *)cred->key_file;
    }
    for (; extra != NULL && *extra != NULL; extra++)
        argv[n++] = (char *)*extra;
    argv[n] = NULL;
    fx_proc_t *p = fx_spawn(fx, argv);
    int64_t st = fx_proc_wait_exit(fx, p, 60000);
    *out = p;
    return st;
}

static void go_client_ok(fx_t *fx, const char *const *extra, const char *want)
{
    int from = fx->nevents;
    fx_proc_t *p;
    int64_t st = go_client(fx, &p, &fx->client, fx->ca_file, FX_NAME, extra);
    if (st != 0 || !fx_proc_has(p, want)) {
        fx_proc_dump(p, "go client");
        fail_msg("go client failed (status %lld), expected \"%s\"", (long long)st, want);
    }
    const fx_event_t *e = fx_wait_event(fx, from, 5000);
    assert_int_equal(e->status, 0);
    p->used = 0;
}

static void test_go_client(void **state)
{
    fx_t *fx = *state;
    start_our_server(fx, NULL);
    static const char *many[] = {"-calls", "300", "-size", "700", NULL};
    go_client_ok(fx, many, "OK calls=300");
    static const char *large[] = {"-calls", "6", "-size", "1048576", NULL};
    go_client_ok(fx, large, "OK calls=6");
    static const char *tls12[] = {"-max", "1.2", "-calls", "50", "-size", "20000", NULL};
    go_client_ok(fx, tls12, "HANDSHAKE TLSv1.2 TLS_ECDHE_ECDSA_WITH_");
    static const char *tls13[] = {"-min", "1.3", "-calls", "5", NULL};
    go_client_ok(fx, tls13, "HANDSHAKE TLSv1.3 TLS_AES_");
}

/* A refused Go client: it says `client_says`, our server `server_says`;
 * then a good Go client works. */
static void go_client_refused(fx_t *fx, const fx_cred_t *cred, const char *ca_file,
                              const char *name, const char *const *extra, const char *client_says,
                              const char *server_says)
{
    int from = fx->nevents;
    fx_proc_t *p;
    int64_t st = go_client(fx, &p, cred, ca_file, name, extra);
    if (st == 0 || !fx_proc_has(p, client_says)) {
        fx_proc_dump(p, "go client");
        fail_msg("go client (status %lld) does not say \"%s\"", (long long)st, client_says);
    }
    printf("  go client: %.*s", (int)p->outb.len, (const char *)p->outb.data);
    p->used = 0;
    const fx_event_t *e = fx_wait_event(fx, from, 5000);
    printf("  server: %s\n", e->msg);
    if (e->status == 0 || strstr(e->msg, server_says) == NULL)
        fail_msg("server event \"%s\" does not say \"%s\"", e->msg, server_says);
    static const char *few[] = {"-calls", "3", NULL};
    go_client_ok(fx, few, "OK calls=3");
}

static void test_go_client_refused(void **state)
{
    fx_t *fx = *state;
    start_our_server(fx, "1.3");
    go_client_refused(fx, NULL, fx->ca_file, FX_NAME, NULL,
                      "ERROR remote error: tls:", "the client presented no certificate");
    /* Go offers only a certificate from a CA the server names, so it
     * sends none at all here. */
    go_client_refused(fx, &fx->client_other, fx->ca_file, FX_NAME, NULL,
                      "ERROR remote error: tls:", "the client presented no certificate");
    go_client_refused(fx, &fx->client_expired, fx->ca_file, FX_NAME, NULL,
                      "ERROR remote error: tls:", "certificate has expired");
    go_client_refused(fx, &fx->client, fx->other_ca_file, FX_NAME, NULL,
                      "certificate signed by unknown authority",
                      "the client refused the connection with TLS alert");
    go_client_refused(fx, &fx->client, fx->ca_file, "podvm-impostor", NULL, "not podvm-impostor",
                      "the client refused the connection with TLS alert");
    static const char *old[] = {"-max", "1.2", NULL};
    go_client_refused(fx, &fx->client, fx->ca_file, FX_NAME, old, "protocol version",
                      "offered no TLS version we accept");
}

/* ---- our client against the Go server ---------------------------------- */

static fx_proc_t *start_go_server(fx_t *fx, const fx_cred_t *cred, int *port,
                                  const char *const *extra)
{
    char *argv[24] = {(char *)go_peer,        "server", "-cert",    (char *)cred->cert_file, "-key",
                      (char *)cred->key_file, "-ca",    fx->ca_file};
    int n = 8;
    for (; extra != NULL && *extra != NULL; extra++)
        argv[n++] = (char *)*extra;
    argv[n] = NULL;
    fx_proc_t *p = fx_spawn(fx, argv);
    if (!fx_proc_wait_for(fx, p, "\n", 10000) || !fx_proc_has(p, "LISTENING ")) {
        fx_proc_dump(p, "go server");
        fail_msg("go server did not start");
    }
    const char *s = memmem(p->outb.data, p->outb.len, "LISTENING ", 10);
    /* The output buffer is not NUL-terminated: parse the digits by hand. */
    const char *end = (const char *)p->outb.data + p->outb.len;
    *port = 0;
    for (s += 10; s < end && *s >= '0' && *s <= '9'; s++)
        *port = *port * 10 + (*s - '0');
    assert_true(*port > 0);
    return p;
}

static void test_our_client_go_server(void **state)
{
    fx_t *fx = *state;
    int port;
    fx_proc_t *srv = start_go_server(fx, &fx->server, &port, NULL);
    pp_tls_config_t cc = fx_client_config(fx, &fx->client, NULL);
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    fx_client_t c;
    if (fx_client_connect(fx, &c, ctx, port, FX_NAME) != 0) {
        fx_proc_dump(srv, "go server");
        fail_msg("handshake with the Go server: %s", c.msg);
    }
    assert_true(fx_proc_wait_for(fx, srv, "ACCEPTED TLSv1.3 cloud-api-adaptor", 5000));
    char msg[256];
    static const size_t sizes[] = {0, 1, 16384, 100001, 1 << 20, 3 << 20};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int code = fx_echo(fx, c.cli, sizes[i], (unsigned)i, msg, sizeof(msg));
        if (code != 0)
            fail_msg("echo %zu bytes through the Go server: %d %s", sizes[i], code, msg);
    }
    /* Many in flight, with key updates that Go must answer. */
    enum { N = 200 };
    size_t many[N];
    for (int i = 0; i < N; i++)
        many[i] = (size_t)(i * 977) % 70000;
    for (int round = 0; round < 3; round++) {
        fx_batch_t b = {0};
        fx_echo_batch(fx, c.cli, many, N / 2, &b);
        assert_int_equal(pp_tls_filter_key_update(c.filter, 1), 0);
        fx_echo_batch(fx, c.cli, many + N / 2, N / 2, &b);
        fx_run_until_count(fx, &b.done, N, 30000);
        if (b.ok != N)
            fail_msg("round %d: %d of %d ok: %d %s", round, b.ok, N, b.failed_code, b.failed_msg);
    }
    fx_client_close(fx, &c);

    /* TLS 1.2 with a suite named the Go way on both sides. */
    fx_proc_kill(fx, srv);
    static const char *cs[] = {"-ciphers", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", NULL};
    srv = start_go_server(fx, &fx->server, &port, cs);
    cc.max_version = "1.2";
    cc.cipher_suites = "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256";
    pp_tls_ctx_t *ctx12 = fx_ctx(PP_TLS_CLIENT, &cc);
    assert_int_equal(fx_client_connect(fx, &c, ctx12, port, FX_NAME), 0);
    assert_true(fx_proc_wait_for(fx, srv, "ACCEPTED TLSv1.2", 5000));
    assert_int_equal(fx_echo(fx, c.cli, 500000, 4, msg, sizeof(msg)), 0);
    fx_client_close(fx, &c);
    pp_tls_ctx_free(ctx12);
    pp_tls_ctx_free(ctx);
    fx_proc_kill(fx, srv);
}

static void test_our_client_refused_by_go(void **state)
{
    fx_t *fx = *state;
    int port;
    fx_proc_t *srv = start_go_server(fx, &fx->server, &port, NULL);
    char msg[256];
    fx_client_t c;

    /* No client certificate: Go refuses; our first call fails. */
    pp_tls_config_t cc = fx_client_config(fx, NULL, NULL);
    pp_tls_ctx_t *ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    assert_int_equal(fx_client_connect(fx, &c, ctx, port, FX_NAME), 0);
    assert_int_equal(fx_echo(fx, c.cli, 10, 1, msg, sizeof(msg)), PP_GRPC_UNAVAILABLE);
    fx_client_close(fx, &c);
    pp_tls_ctx_free(ctx);
    assert_true(fx_proc_wait_for(fx, srv, "HANDSHAKE_ERROR", 5000));
    printf("  go server: %.*s", (int)srv->outb.len, (const char *)srv->outb.data);

    /* We trust another CA; then the wrong name. */
    cc = fx_client_config(fx, &fx->client, pp_ca_cert_pem(fx->other_ca));
    ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    assert_true(fx_client_connect(fx, &c, ctx, port, FX_NAME) < 0);
    printf("  our client: %s\n", c.msg);
    assert_non_null(strstr(c.msg, "unable to get local issuer certificate"));
    pp_tls_ctx_free(ctx);
    cc = fx_client_config(fx, &fx->client, NULL);
    ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    assert_true(fx_client_connect(fx, &c, ctx, port, "podvm-impostor") < 0);
    assert_non_null(strstr(c.msg, "not valid for `podvm-impostor`"));
    /* Still serving. */
    assert_int_equal(fx_client_connect(fx, &c, ctx, port, FX_NAME), 0);
    assert_int_equal(fx_echo(fx, c.cli, 10, 1, msg, sizeof(msg)), 0);
    fx_client_close(fx, &c);
    fx_proc_kill(fx, srv);

    /* An expired server certificate. */
    srv = start_go_server(fx, &fx->server_expired, &port, NULL);
    assert_true(fx_client_connect(fx, &c, ctx, port, FX_NAME) < 0);
    assert_non_null(strstr(c.msg, "certificate has expired"));
    fx_proc_kill(fx, srv);

    /* Go wants 1.3, we offer at most 1.2. */
    static const char *min13[] = {"-min", "1.3", NULL};
    srv = start_go_server(fx, &fx->server, &port, min13);
    pp_tls_ctx_free(ctx);
    cc.max_version = "1.2";
    ctx = fx_ctx(PP_TLS_CLIENT, &cc);
    assert_true(fx_client_connect(fx, &c, ctx, port, FX_NAME) < 0);
    printf("  our client: %s\n", c.msg);
    assert_non_null(strstr(c.msg, "protocol version"));
    pp_tls_ctx_free(ctx);
    fx_proc_kill(fx, srv);
}

int main(int argc, char **argv)
{
    setenv("PP_LOG_LEVEL", "error", 0);
    if (argc < 2 || access(argv[1], X_OK) != 0) {
        fprintf(stderr,
                "the Go TLS peer `%s` is not built (Debian package `golang-go`): "
                "skipped\n",
                argc < 2 ? "" : argv[1]);
        return 77;
    }
    go_peer = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_go_client, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_go_client_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_our_client_go_server, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_our_client_refused_by_go, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
