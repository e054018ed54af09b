/* The TLS handshake and filter over a socketpair on a real loop: the
 * filter fed ciphertext in every chunking (a byte at a time, odd sizes,
 * many records at once), key updates both ways (a write needed during a
 * read), bytes sent right after the handshake left for the next reader,
 * and handshakes that fail: timeout, cancel, peer gone, plaintext peer. */
#include <errno.h>
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

#include "tls/ca.h"
#include "tls/tls.h"
#include "util/buf.h"

typedef struct side_s {
    uv_pipe_t *pipe;
    pp_tls_handshake_t *hs;
    int done;
    int status;
    char msg[512];
    char version[32];
    char peer_cn[64];
    pp_stream_filter_t *filter;
    pp_buf_t raw;   /* ciphertext read after the handshake */
    pp_buf_t plain; /* what the filter delivered */
    int eof;
} side_t;

typedef struct fx_s {
    uv_loop_t loop;
    char dir[64];
    pp_ca_t *ca;
    char *srv_cert, *srv_key, *cli_cert, *cli_key;
    side_t s, c;
} fx_t;

static void watchdog_cb(uv_timer_t *t)
{
    (void)t;
    fail_msg("test timed out waiting on the loop");
}

static void run_until(fx_t *fx, const int *a, const int *b, uint64_t ms)
{
    uv_timer_t wd;
    uv_timer_init(&fx->loop, &wd);
    uv_timer_start(&wd, watchdog_cb, ms, 0);
    while (!*a || (b != NULL && !*b))
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static uv_pipe_t *open_pipe(fx_t *fx, int fd)
{
    uv_pipe_t *p = malloc(sizeof(*p));
    assert_int_equal(uv_pipe_init(&fx->loop, p, 0), 0);
    assert_int_equal(uv_pipe_open(p, fd), 0);
    return p;
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/pp-test-tlsf.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    pp_ca_opts_t o = {.dir = fx->dir};
    pp_error_t err = {0};
    assert_int_equal(pp_ca_load_or_create(&o, &fx->ca, &err), 0);
    assert_int_equal(
        pp_ca_issue_server(fx->ca, "podvm-t", NULL, 0, &fx->srv_cert, &fx->srv_key, &err), 0);
    assert_int_equal(pp_ca_issue_client(fx->ca, "caa", 0, &fx->cli_cert, &fx->cli_key, &err), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fx->s.pipe = open_pipe(fx, sv[0]);
    fx->c.pipe = open_pipe(fx, sv[1]);
    pp_buf_init(&fx->s.raw, 0);
    pp_buf_init(&fx->s.plain, 0);
    pp_buf_init(&fx->c.raw, 0);
    pp_buf_init(&fx->c.plain, 0);
    *state = fx;
    return 0;
}

static void close_side(side_t *sd)
{
    if (sd->filter != NULL)
        sd->filter->destroy(sd->filter);
    sd->filter = NULL;
    if (sd->pipe != NULL && !uv_is_closing((uv_handle_t *)sd->pipe))
        uv_close((uv_handle_t *)sd->pipe, (uv_close_cb)free);
    pp_buf_free(&sd->raw);
    pp_buf_free(&sd->plain);
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    close_side(&fx->s);
    close_side(&fx->c);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx->srv_cert);
    free(fx->cli_cert);
    pp_ca_secret_free(fx->srv_key);
    pp_ca_secret_free(fx->cli_key);
    pp_ca_free(fx->ca);
    free(fx);
    return 0;
}

static pp_tls_ctx_t *server_ctx(fx_t *fx, const char *max, unsigned timeout_ms)
{
    pp_tls_config_t c = {.cert_pem = fx->srv_cert,
                         .key_pem = fx->srv_key,
                         .ca_pem = pp_ca_cert_pem(fx->ca),
                         .max_version = max,
                         .handshake_timeout_ms = timeout_ms};
    pp_tls_ctx_t *ctx;
    pp_error_t err = {0};
    assert_int_equal(pp_tls_ctx_new(PP_TLS_SERVER, &c, &ctx, &err), 0);
    return ctx;
}

static pp_tls_ctx_t *client_ctx(fx_t *fx, const char *max)
{
    pp_tls_config_t c = {.cert_pem = fx->cli_cert,
                         .key_pem = fx->cli_key,
                         .ca_pem = pp_ca_cert_pem(fx->ca),
                         .max_version = max};
    pp_tls_ctx_t *ctx;
    pp_error_t err = {0};
    assert_int_equal(pp_tls_ctx_new(PP_TLS_CLIENT, &c, &ctx, &err), 0);
    return ctx;
}

static void hs_cb(pp_tls_handshake_t *hs, int status, pp_stream_filter_t *filter,
                  const char *err_msg, void *data)
{
    side_t *sd = data;
    assert_false(sd->done); /* exactly once */
    sd->done = 1;
    sd->status = status;
    sd->filter = filter;
    if (status == 0) {
        assert_null(err_msg);
        snprintf(sd->version, sizeof(sd->version), "%s", pp_tls_handshake_version(hs));
        snprintf(sd->peer_cn, sizeof(sd->peer_cn), "%s", pp_tls_handshake_peer_cn(hs));
    } else {
        assert_null(filter);
        assert_non_null(err_msg);
        snprintf(sd->msg, sizeof(sd->msg), "%s", err_msg);
    }
}

/* Writes through the filter and flushes: small writes wait for a flush,
 * which a ttrpc connection makes once per loop iteration. */
static int filter_send(pp_stream_filter_t *f, uint8_t *p, size_t n)
{
    int r = f->write(f, p, n);
    return r < 0 ? r : f->flush(f);
}

/* The client writes right after its handshake, before the server is done:
 * those bytes must wait in the socket for whoever reads next. */
static void hs_cb_write_early(pp_tls_handshake_t *hs, int status, pp_stream_filter_t *filter,
                              const char *err_msg, void *data)
{
    hs_cb(hs, status, filter, err_msg, data);
    if (status == 0) {
        char *m = strdup("early bird");
        assert_int_equal(filter_send(filter, (uint8_t *)m, strlen(m)), 0);
    }
}

static void handshake_pair(fx_t *fx, const char *max, pp_tls_handshake_cb client_cb)
{
    pp_tls_ctx_t *sc = server_ctx(fx, max, 0), *cc = client_ctx(fx, max);
    assert_int_equal(
        pp_tls_handshake(sc, (uv_stream_t *)fx->s.pipe, NULL, hs_cb, &fx->s, &fx->s.hs), 0);
    assert_int_equal(
        pp_tls_handshake(cc, (uv_stream_t *)fx->c.pipe, "podvm-t", client_cb, &fx->c, &fx->c.hs),
        0);
    /* The handshakes hold the contexts. */
    pp_tls_ctx_free(sc);
    pp_tls_ctx_free(cc);
    run_until(fx, &fx->s.done, &fx->c.done, 5000);
    assert_int_equal(fx->s.status, 0);
    assert_int_equal(fx->c.status, 0);
    assert_string_equal(fx->s.peer_cn, "caa");
    assert_string_equal(fx->c.peer_cn, "podvm-t");
}

/* ---- raw reading: collect ciphertext, feed it by hand ------------------ */

static void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = suggested;
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    side_t *sd = s->data;
    if (n > 0)
        assert_int_equal(pp_buf_append(&sd->raw, buf->base, (size_t)n), 0);
    else if (n < 0)
        sd->eof = 1;
    free(buf->base);
}

static void raw_start(side_t *sd)
{
    sd->pipe->data = sd;
    assert_int_equal(uv_read_start((uv_stream_t *)sd->pipe, raw_alloc, raw_read), 0);
}

static int deliver(void *ctx, const uint8_t *p, size_t n)
{
    return pp_buf_append(ctx, p, n);
}

/* Feeds what was collected to the filter in chunks of sizes cycling
 * through `sizes`. */
static int feed(side_t *sd, const size_t *sizes, size_t nsizes)
{
    size_t off = 0, i = 0;
    while (off < sd->raw.len) {
        size_t n = sizes[i++ % nsizes];
        if (n > sd->raw.len - off)
            n = sd->raw.len - off;
        int r = sd->filter->read(sd->filter, sd->raw.data + off, n, deliver, &sd->plain);
        if (r < 0)
            return r;
        off += n;
    }
    sd->raw.len = 0;
    return 0;
}

static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + seed + (i >> 9));
    return p;
}

static void wait_raw(fx_t *fx, side_t *sd, size_t at_least)
{
    uv_timer_t wd;
    uv_timer_init(&fx->loop, &wd);
    uv_timer_start(&wd, watchdog_cb, 5000, 0);
    while (sd->raw.len < at_least)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    /* Anything else already sent. */
    for (int i = 0; i < 5; i++)
        uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static void check_chunkings(fx_t *fx)
{
    static const size_t one[] = {1};
    static const size_t odd[] = {3, 7, 5, 1, 4093, 13, 17000};
    static const size_t big[] = {1 << 20};
    const size_t *plans[] = {one, odd, big};
    size_t nplans[] = {1, 7, 1};
    static const size_t sizes[] = {1, 100, 16384, 16385, 300000, 1 << 20};
    for (size_t pl = 0; pl < 3; pl++) {
        size_t total = 0;
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
            /* Skip the largest writes when feeding a byte at a time. */
            if (pl == 0 && sizes[k] > 20000)
                continue;
            uint8_t *p = pattern(sizes[k], (unsigned)k);
            assert_int_equal(filter_send(fx->c.filter, p, sizes[k]), 0);
            total += sizes[k];
        }
        wait_raw(fx, &fx->s, total);
        fx->s.plain.len = 0;
        assert_int_equal(feed(&fx->s, plans[pl], nplans[pl]), 0);
        assert_int_equal(fx->s.plain.len, total);
        size_t off = 0;
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
            if (pl == 0 && sizes[k] > 20000)
                continue;
            uint8_t *p = pattern(sizes[k], (unsigned)k);
            assert_memory_equal(fx->s.plain.data + off, p, sizes[k]);
            off += sizes[k];
            free(p);
        }
    }
}

/* ---- tests ------------------------------------------------------------- */

static void test_chunked_tls13(void **state)
{
    fx_t *fx = *state;
    handshake_pair(fx, NULL, hs_cb);
    assert_string_equal(fx->s.version, "TLSv1.3");
    raw_start(&fx->s);
    raw_start(&fx->c);
    check_chunkings(fx);
    assert_int_equal(pp_tls_filter_key_update(NULL, 0), -EINVAL);
}

static void test_chunked_tls12(void **state)
{
    fx_t *fx = *state;
    handshake_pair(fx, "1.2", hs_cb);
    assert_string_equal(fx->c.version, "TLSv1.2");
    raw_start(&fx->s);
    raw_start(&fx->c);
    check_chunkings(fx);
    assert_int_equal(pp_tls_filter_key_update(fx->c.filter, 1), -ENOTSUP);
}

/* Small writes wait for the flush and are sealed together; more than the
 * filter gathers at once is sealed on the way; the socket takes only part
 * of each write (a small send buffer), so the rest is queued behind it. */
static void test_gathered_writes_partial(void **state)
{
    fx_t *fx = *state;
    handshake_pair(fx, NULL, hs_cb);
    raw_start(&fx->s);
    raw_start(&fx->c);
    uv_os_fd_t cfd;
    assert_int_equal(uv_fileno((uv_handle_t *)fx->c.pipe, &cfd), 0);
    int sndbuf = 4096;
    assert_int_equal(setsockopt(cfd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)), 0);
    enum { N = 700, SZ = 997 };
    for (unsigned k = 0; k < 10; k++)
        assert_int_equal(fx->c.filter->write(fx->c.filter, pattern(SZ, k), SZ), 0);
    for (int i = 0; i < 5; i++)
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_int_equal(fx->s.raw.len, 0); /* gathered, not sent */
    for (unsigned k = 10; k < N; k++)
        assert_int_equal(fx->c.filter->write(fx->c.filter, pattern(SZ, k), SZ), 0);
    assert_int_equal(fx->c.filter->flush(fx->c.filter), 0);
    assert_true(uv_stream_get_write_queue_size((uv_stream_t *)fx->c.pipe) > 0);
    static const size_t odd[] = {3, 7000, 5, 40000};
    while (fx->s.plain.len < (size_t)N * SZ) {
        wait_raw(fx, &fx->s, 1);
        assert_int_equal(feed(&fx->s, odd, 4), 0);
    }
    assert_int_equal(fx->s.plain.len, (size_t)N * SZ);
    for (unsigned k = 0; k < N; k++) {
        uint8_t *want = pattern(SZ, k);
        assert_memory_equal(fx->s.plain.data + (size_t)k * SZ, want, SZ);
        free(want);
    }
    /* A flush with nothing gathered sends nothing. */
    assert_int_equal(fx->c.filter->flush(fx->c.filter), 0);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_int_equal(fx->s.raw.len, 0);
}

static void test_key_update(void **state)
{
    fx_t *fx = *state;
    handshake_pair(fx, NULL, hs_cb);
    raw_start(&fx->s);
    raw_start(&fx->c);
    for (int round = 0; round < 3; round++) {
        /* The client updates its keys and asks the server to do the same:
         * the server must answer while it reads. */
        assert_int_equal(pp_tls_filter_key_update(fx->c.filter, 1), 0);
        uint8_t *p = pattern(5000, 9);
        assert_int_equal(filter_send(fx->c.filter, p, 5000), 0);
        wait_raw(fx, &fx->s, 5000);
        fx->s.plain.len = 0;
        assert_int_equal(feed(&fx->s, (const size_t[]){777}, 1), 0);
        assert_int_equal(fx->s.plain.len, 5000);
        /* The server's own KeyUpdate went out during that read. */
        wait_raw(fx, &fx->c, 1);
        size_t ku = fx->c.raw.len;
        p = pattern(70000, 3);
        assert_int_equal(filter_send(fx->s.filter, p, 70000), 0);
        wait_raw(fx, &fx->c, ku + 70000);
        fx->c.plain.len = 0;
        assert_int_equal(feed(&fx->c, (const size_t[]){1, 50000}, 2), 0);
        assert_int_equal(fx->c.plain.len, 70000);
        uint8_t *want = pattern(70000, 3);
        assert_memory_equal(fx->c.plain.data, want, 70000);
        free(want);
    }
    /* And the server on its own, without asking. */
    assert_int_equal(pp_tls_filter_key_update(fx->s.filter, 0), 0);
    uint8_t *p = pattern(10, 1);
    assert_int_equal(filter_send(fx->s.filter, p, 10), 0);
    wait_raw(fx, &fx->c, 10);
    fx->c.plain.len = 0;
    assert_int_equal(feed(&fx->c, (const size_t[]){64}, 1), 0);
    assert_int_equal(fx->c.plain.len, 10);
}

static void test_bytes_after_handshake_stay(void **state)
{
    fx_t *fx = *state;
    handshake_pair(fx, NULL, hs_cb_write_early);
    /* The server's handshake stopped at its last record: the early data
     * is read only now. */
    raw_start(&fx->s);
    wait_raw(fx, &fx->s, 10);
    assert_int_equal(feed(&fx->s, (const size_t[]){4096}, 1), 0);
    assert_int_equal(fx->s.plain.len, 10);
    assert_memory_equal(fx->s.plain.data, "early bird", 10);
}

static void test_corrupt_record(void **state)
{
    fx_t *fx = *state;
    handshake_pair(fx, NULL, hs_cb);
    raw_start(&fx->s);
    raw_start(&fx->c);
    uint8_t *p = pattern(1000, 2);
    assert_int_equal(filter_send(fx->c.filter, p, 1000), 0);
    wait_raw(fx, &fx->s, 1000);
    fx->s.raw.data[fx->s.raw.len - 3] ^= 1;
    assert_true(feed(&fx->s, (const size_t[]){100000}, 1) < 0);
    assert_int_equal(fx->s.plain.len, 0);
    /* The connection is broken for good, both ways. */
    p = pattern(10, 2);
    assert_true(filter_send(fx->s.filter, p, 10) < 0);
}

static void test_timeout(void **state)
{
    fx_t *fx = *state;
    pp_tls_ctx_t *sc = server_ctx(fx, NULL, 200);
    assert_int_equal(
        pp_tls_handshake(sc, (uv_stream_t *)fx->s.pipe, NULL, hs_cb, &fx->s, &fx->s.hs), 0);
    pp_tls_ctx_free(sc);
    uint64_t t0 = uv_now(&fx->loop);
    run_until(fx, &fx->s.done, NULL, 5000);
    assert_int_equal(fx->s.status, UV_ETIMEDOUT);
    assert_true(uv_now(&fx->loop) - t0 >= 190);
    assert_non_null(strstr(fx->s.msg, "timed out after 200 ms"));
    assert_non_null(strstr(fx->s.msg, "sent nothing"));
}

static void test_cancel(void **state)
{
    fx_t *fx = *state;
    pp_tls_ctx_t *sc = server_ctx(fx, NULL, 0);
    assert_int_equal(
        pp_tls_handshake(sc, (uv_stream_t *)fx->s.pipe, NULL, hs_cb, &fx->s, &fx->s.hs), 0);
    pp_tls_ctx_free(sc);
    pp_tls_handshake_cancel(fx->s.hs);
    /* Called back from inside the cancel. */
    assert_true(fx->s.done);
    assert_int_equal(fx->s.status, UV_ECANCELED);
    assert_non_null(strstr(fx->s.msg, "cancelled"));
    uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static void test_peer_closes(void **state)
{
    fx_t *fx = *state;
    pp_tls_ctx_t *sc = server_ctx(fx, NULL, 0);
    assert_int_equal(
        pp_tls_handshake(sc, (uv_stream_t *)fx->s.pipe, NULL, hs_cb, &fx->s, &fx->s.hs), 0);
    pp_tls_ctx_free(sc);
    /* Half a ClientHello, then gone. */
    uv_buf_t b = uv_buf_init("\x16\x03\x01\x02\x00\x01\x00", 7);
    assert_int_equal(uv_try_write((uv_stream_t *)fx->c.pipe, &b, 1), 7);
    uv_close((uv_handle_t *)fx->c.pipe, (uv_close_cb)free);
    fx->c.pipe = NULL;
    run_until(fx, &fx->s.done, NULL, 5000);
    assert_int_equal(fx->s.status, UV_EOF);
    assert_non_null(strstr(fx->s.msg, "closed the connection during the handshake"));
}

static void test_plaintext_peer(void **state)
{
    fx_t *fx = *state;
    pp_tls_ctx_t *sc = server_ctx(fx, NULL, 0);
    assert_int_equal(
        pp_tls_handshake(sc, (uv_stream_t *)fx->s.pipe, NULL, hs_cb, &fx->s, &fx->s.hs), 0);
    pp_tls_ctx_free(sc);
    /* A ttrpc request header, as a plaintext client would send. */
    uv_buf_t b = uv_buf_init("\x00\x00\x00\x2a\x00\x00\x00\x01\x01\x00", 10);
    assert_int_equal(uv_try_write((uv_stream_t *)fx->c.pipe, &b, 1), 10);
    raw_start(&fx->c);
    run_until(fx, &fx->s.done, NULL, 5000);
    assert_int_equal(fx->s.status, -EPROTO);
    assert_non_null(strstr(fx->s.msg, "not speaking TLS"));
    assert_non_null(strstr(fx->s.msg, "00 00 00 2a 00"));
    /* The server half-closed after refusing: the peer sees the end. */
    run_until(fx, &fx->c.eof, NULL, 5000);
}

static void test_client_against_plaintext(void **state)
{
    fx_t *fx = *state;
    pp_tls_ctx_t *cc = client_ctx(fx, NULL);
    assert_int_equal(
        pp_tls_handshake(cc, (uv_stream_t *)fx->c.pipe, "podvm-t", hs_cb, &fx->c, &fx->c.hs), 0);
    pp_tls_ctx_free(cc);
    /* A plaintext ttrpc server answers the "frame" it cannot parse. */
    uv_buf_t b = uv_buf_init("\x00\x00\x00\x30\x16\x03\x01\x00\x02\x00", 10);
    assert_int_equal(uv_try_write((uv_stream_t *)fx->s.pipe, &b, 1), 10);
    run_until(fx, &fx->c.done, NULL, 5000);
    assert_int_equal(fx->c.status, -EPROTO);
    assert_non_null(strstr(fx->c.msg, "server is not speaking TLS"));
}

int main(void)
{
    setenv("PP_LOG_LEVEL", "error", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chunked_tls13, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_tls12, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gathered_writes_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bytes_after_handshake_stay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plaintext_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_against_plaintext, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
