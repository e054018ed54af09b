/* The ttrpc server's limits against peers that misbehave: connection
 * limits and eviction, idle and frame timeouts, announced lengths, the
 * byte budget, answers not taken, metadata counts, socket modes, and many
 * deadlines on one connection. The server runs its loop in a thread; the
 * peers here are plain blocking sockets, as a hostile client would be.
 * docs/design/limits.md gives the figures asserted here. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "raw_peer.h"
#include "ttrpc/ttrpc.h"

#define SVC      "pp.test.Limits"
#define MAX_HELD 4096

typedef struct lx_s lx_t;
typedef void (*work_fn)(lx_t *, void *);

struct lx_s {
    uv_loop_t loop;
    pthread_t thread;
    uv_async_t wake;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    work_fn work;
    void *work_arg;
    int work_done;
    pp_ttrpc_server_t *srv;
    pp_ttrpc_budget_t budget;
    char dir[64];
    char sock[128];
    pp_ttrpc_call_t *held[MAX_HELD];
    size_t nheld;
};

/* ---- the server, on its own thread --------------------------------------- */

static void h_echo(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    const pp_ttrpc_request_t *r = pp_ttrpc_call_request(call);
    pp_ttrpc_call_reply(call, r->payload, r->payload_len);
}

static void h_hold(pp_ttrpc_call_t *call, void *data)
{
    lx_t *lx = data;
    assert_true(lx->nheld < MAX_HELD);
    lx->held[lx->nheld++] = call;
}

static void wake_cb(uv_async_t *a)
{
    lx_t *lx = a->data;
    pthread_mutex_lock(&lx->mu);
    if (lx->work != NULL) {
        lx->work(lx, lx->work_arg);
        lx->work = NULL;
        lx->work_done = 1;
        pthread_cond_broadcast(&lx->cv);
    }
    pthread_mutex_unlock(&lx->mu);
}

static void *serve(void *arg)
{
    lx_t *lx = arg;
    uv_run(&lx->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Runs `fn` on the loop thread and waits for it. */
static void on_loop(lx_t *lx, work_fn fn, void *arg)
{
    pthread_mutex_lock(&lx->mu);
    lx->work = fn;
    lx->work_arg = arg;
    lx->work_done = 0;
    uv_async_send(&lx->wake);
    while (!lx->work_done)
        pthread_cond_wait(&lx->cv, &lx->mu);
    pthread_mutex_unlock(&lx->mu);
}

static void lx_start(lx_t *lx, const pp_ttrpc_server_opts_t *opts)
{
    memset(lx, 0, sizeof(*lx));
    uv_loop_init(&lx->loop);
    pthread_mutex_init(&lx->mu, NULL);
    pthread_cond_init(&lx->cv, NULL);
    snprintf(lx->dir, sizeof(lx->dir), "/tmp/pp-limits-XXXXXX");
    assert_non_null(mkdtemp(lx->dir));
    snprintf(lx->sock, sizeof(lx->sock), "%s/s.sock", lx->dir);
    assert_int_equal(pp_ttrpc_server_new(&lx->loop, &lx->srv), 0);
    assert_int_equal(pp_ttrpc_server_register(lx->srv, SVC, "Echo", h_echo, lx), 0);
    assert_int_equal(pp_ttrpc_server_register(lx->srv, SVC, "Hold", h_hold, lx), 0);
    pp_ttrpc_server_opts_t o = opts ? *opts : (pp_ttrpc_server_opts_t){0};
    if (o.budget != NULL) {
        lx->budget = *o.budget;
        o.budget = &lx->budget;
    }
    assert_int_equal(pp_ttrpc_server_set_opts(lx->srv, &o), 0);
    pp_error_t err = {0};
    assert_int_equal(pp_ttrpc_server_listen_unix(lx->srv, lx->sock, &err), 0);
    uv_async_init(&lx->loop, &lx->wake, wake_cb);
    lx->wake.data = lx;
    assert_int_equal(pthread_create(&lx->thread, NULL, serve, lx), 0);
}

static void answer_all(lx_t *lx, void *arg)
{
    (void)arg;
    for (size_t i = 0; i < lx->nheld; i++)
        pp_ttrpc_call_reply(lx->held[i], "held", 4);
    lx->nheld = 0;
}

static void stop_work(lx_t *lx, void *arg)
{
    (void)arg;
    answer_all(lx, NULL);
    pp_ttrpc_server_close(lx->srv, 0, NULL, NULL);
    uv_close((uv_handle_t *)&lx->wake, NULL);
}

static void lx_stop(lx_t *lx)
{
    on_loop(lx, stop_work, NULL);
    pthread_join(lx->thread, NULL);
    assert_int_equal(uv_loop_close(&lx->loop), 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", lx->dir);
    assert_int_equal(system(cmd), 0);
    pthread_mutex_destroy(&lx->mu);
    pthread_cond_destroy(&lx->cv);
}

typedef struct snap_s {
    pp_ttrpc_limit_stats_t stats;
    size_t conns, used, queued, nheld;
} snap_t;

static void snap_work(lx_t *lx, void *arg)
{
    snap_t *s = arg;
    const pp_ttrpc_budget_t *b = pp_ttrpc_server_budget(lx->srv);
    s->stats = b->stats;
    s->conns = pp_ttrpc_server_conns(lx->srv);
    s->used = b->used_bytes;
    s->queued = b->queued_bytes;
    s->nheld = lx->nheld;
}

static snap_t snap(lx_t *lx)
{
    snap_t s;
    on_loop(lx, snap_work, &s);
    return s;
}

/* ---- a peer: blocking socket (tests/common/raw_peer.h) ------------------ */

#define now_ms raw_now_ms

static int peer(const char *path)
{
    int fd = raw_connect(path);
    assert_true(fd >= 0);
    return fd;
}

static void write_all(int fd, const void *p, size_t n)
{
    int r = raw_write_all(fd, p, n);
    if (r < 0)
        fail_msg("write: %s", strerror(-r));
}

static uint8_t *request(uint32_t id, const char *method, const void *payload, size_t plen,
                        size_t nmeta, size_t *len)
{
    uint8_t *f = raw_request(id, SVC, method, payload, plen, nmeta, len);
    assert_non_null(f);
    return f;
}

/* One response's code (failing the test when none comes). */
static int read_answer(int fd, uint32_t *id, char *msg, size_t msize)
{
    int r = raw_read_answer(fd, id, msg, msize);
    if (r < 0)
        fail_msg("read an answer: %s", strerror(-r));
    return r;
}

#define wait_eof raw_wait_eof

static void send_call(int fd, uint32_t id, const char *method, const char *payload)
{
    size_t len;
    uint8_t *f = request(id, method, payload, strlen(payload), 0, &len);
    write_all(fd, f, len);
    free(f);
}

static void echo_ok(int fd, uint32_t id)
{
    send_call(fd, id, "Echo", "hi");
    uint32_t got;
    assert_int_equal(read_answer(fd, &got, NULL, 0), 0);
    assert_int_equal(got, id);
}

/* Whether the server has ended the connection by now. */
static int ended_now(int fd)
{
    return wait_eof(fd, 50) >= 0;
}

static void wait_conns(lx_t *lx, size_t n)
{
    for (int i = 0; i < 200 && snap(lx).conns != n; i++)
        usleep(10000);
    assert_int_equal(snap(lx).conns, n);
}

static void wait_held(lx_t *lx, size_t n)
{
    for (int i = 0; i < 200 && snap(lx).nheld < n; i++)
        usleep(10000);
    assert_int_equal(snap(lx).nheld, n);
}

/* ---- connections --------------------------------------------------------- */

/* Four connections at most: the fifth is closed at once, counted, and a
 * place freed by a close is taken again. */
static void test_connection_limit(void **state)
{
    (void)state;
    lx_t lx;
    pp_ttrpc_server_opts_t o = {.max_conns = 4};
    lx_start(&lx, &o);
    int fd[4];
    for (int i = 0; i < 4; i++) {
        fd[i] = peer(lx.sock);
        echo_ok(fd[i], 1);
    }
    int extra = peer(lx.sock);
    assert_true(wait_eof(extra, 2000) >= 0);
    close(extra);
    snap_t s = snap(&lx);
    assert_int_equal(s.stats.refused, 1);
    assert_int_equal(s.conns, 4);
    for (int i = 0; i < 4; i++)
        assert_false(ended_now(fd[i]));
    close(fd[0]);
    wait_conns(&lx, 3);
    fd[0] = peer(lx.sock);
    echo_ok(fd[0], 1);
    for (int i = 0; i < 4; i++)
        close(fd[i]);
    lx_stop(&lx);
}

/* With eviction, the connection idle the longest makes room; one with a
 * call in flight never does, and when all have one the new one is
 * refused. */
static void test_evict_idle(void **state)
{
    (void)state;
    lx_t lx;
    pp_ttrpc_server_opts_t o = {.max_conns = 4, .evict_idle = 1};
    lx_start(&lx, &o);
    int fd[4];
    for (int i = 0; i < 4; i++) {
        fd[i] = peer(lx.sock);
        echo_ok(fd[i], 1);
        usleep(20000); /* distinct idle times: fd[0] is the oldest */
    }
    /* fd[0] is busy with a held call; fd[1] is then the longest idle. */
    send_call(fd[0], 3, "Hold", "x");
    wait_held(&lx, 1);
    int e = peer(lx.sock);
    echo_ok(e, 1);
    assert_true(wait_eof(fd[1], 2000) >= 0);
    assert_false(ended_now(fd[0]));
    assert_false(ended_now(fd[2]));
    close(fd[1]);
    /* Now fd[0], fd[2], fd[3], e: make them all busy. */
    fd[1] = e;
    for (int i = 1; i < 4; i++)
        send_call(fd[i], 5, "Hold", "x");
    wait_held(&lx, 4);
    int f = peer(lx.sock);
    assert_true(wait_eof(f, 2000) >= 0);
    close(f);
    snap_t s = snap(&lx);
    assert_int_equal(s.stats.evicted, 1);
    assert_int_equal(s.stats.refused, 1);
    assert_int_equal(s.conns, 4);
    for (int i = 0; i < 4; i++)
        assert_false(ended_now(fd[i]));
    on_loop(&lx, answer_all, NULL);
    for (int i = 0; i < 4; i++)
        close(fd[i]);
    lx_stop(&lx);
}

/* An idle connection goes after 300 ms; one with a call in flight stays,
 * and goes 300 ms after its last answer. */
static void test_idle_timeout(void **state)
{
    (void)state;
    lx_t lx;
    pp_ttrpc_server_opts_t o = {.idle_timeout_ms = 300};
    lx_start(&lx, &o);
    int idle = peer(lx.sock);
    int busy = peer(lx.sock);
    send_call(busy, 1, "Hold", "x");
    wait_held(&lx, 1);
    double t = wait_eof(idle, 3000);
    assert_true(t >= 200 && t < 2000);
    close(idle);
    usleep(500000);
    assert_false(ended_now(busy));
    on_loop(&lx, answer_all, NULL);
    assert_int_equal(read_answer(busy, NULL, NULL, 0), 0);
    t = wait_eof(busy, 3000);
    assert_true(t >= 150 && t < 2000);
    close(busy);
    assert_int_equal(snap(&lx).stats.idle_closed, 2);
    lx_stop(&lx);
}

/* ---- frames -------------------------------------------------------------- */

/* A frame must be whole within 300 ms of its first byte: a part of a
 * header, a part of a payload, and a trickle that keeps coming all end the
 * connection then; a whole frame sent in pieces within the time is served. */
static void test_frame_timeout(void **state)
{
    (void)state;
    lx_t lx;
    pp_ttrpc_server_opts_t o = {.frame_timeout_ms = 300};
    lx_start(&lx, &o);
    size_t len;
    uint8_t *f = request(1, "Echo", "0123456789", 10, 0, &len);

    int a = peer(lx.sock);
    write_all(a, f, 3);
    double t = wait_eof(a, 3000);
    assert_true(t >= 200 && t < 2000);
    close(a);

    int b = peer(lx.sock);
    write_all(b, f, len - 4);
    t = wait_eof(b, 3000);
    assert_true(t >= 200 && t < 2000);
    close(b);

    /* One byte every 100 ms: the frame would take about 4 s. */
    int c = peer(lx.sock);
    double start = now_ms();
    size_t sent = 0;
    while (sent < len && !ended_now(c)) {
        write_all(c, f + sent, 1);
        sent++;
        usleep(50000);
    }
    t = now_ms() - start;
    assert_true(sent < len);
    assert_true(t >= 200 && t < 2000);
    close(c);

    int d = peer(lx.sock);
    write_all(d, f, 5);
    usleep(100000);
    write_all(d, f + 5, len - 5);
    assert_int_equal(read_answer(d, NULL, NULL, 0), 0);
    close(d);
    free(f);
    assert_int_equal(snap(&lx).stats.frame_timeouts, 3);
    lx_stop(&lx);
}

/* A 4 GiB length is answered RESOURCE_EXHAUSTED and the connection ends at
 * once; 5 MiB is answered and discarded, and the connection goes on. */
static void test_announced_lengths(void **state)
{
    (void)state;
    lx_t lx;
    lx_start(&lx, NULL);
    int fd = peer(lx.sock);
    uint8_t hdr[PP_TTRPC_HEADER_SIZE];
    pp_ttrpc_header_t h = {0xffffffffu, 1, PP_TTRPC_REQUEST, 0};
    pp_ttrpc_header_pack(hdr, &h);
    write_all(fd, hdr, sizeof(hdr));
    char msg[256];
    assert_int_equal(read_answer(fd, NULL, msg, sizeof(msg)), PP_GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(msg, "exceeds maximum message size"));
    double t = wait_eof(fd, 2000);
    assert_true(t >= 0 && t < 1000);
    close(fd);

    fd = peer(lx.sock);
    h.length = 5u << 20;
    h.stream_id = 3;
    pp_ttrpc_header_pack(hdr, &h);
    write_all(fd, hdr, sizeof(hdr));
    uint8_t *junk = calloc(1, h.length);
    write_all(fd, junk, h.length);
    free(junk);
    uint32_t id;
    assert_int_equal(read_answer(fd, &id, NULL, 0), PP_GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(id, 3);
    echo_ok(fd, 5);
    close(fd);
    assert_int_equal(snap(&lx).stats.oversize, 2);
    lx_stop(&lx);
}

/* 1024 metadata entries are served; 1025 are refused on their stream and
 * the connection goes on. */
static void test_metadata_count(void **state)
{
    (void)state;
    lx_t lx;
    lx_start(&lx, NULL);
    int fd = peer(lx.sock);
    size_t len;
    uint8_t *f = request(1, "Echo", "x", 1, PP_TTRPC_MAX_METADATA, &len);
    write_all(fd, f, len);
    free(f);
    assert_int_equal(read_answer(fd, NULL, NULL, 0), 0);
    f = request(3, "Echo", "x", 1, PP_TTRPC_MAX_METADATA + 1, &len);
    write_all(fd, f, len);
    free(f);
    char msg[256];
    uint32_t id;
    assert_int_equal(read_answer(fd, &id, msg, sizeof(msg)), PP_GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(id, 3);
    assert_string_equal(msg, "request has more than 1024 metadata entries");
    echo_ok(fd, 5);
    close(fd);
    lx_stop(&lx);
}

/* ---- memory -------------------------------------------------------------- */

typedef struct flood_s {
    int fd;
    size_t sent;
} flood_t;

/* Sends what the socket takes without blocking, up to `max` bytes of
 * `data`, until nothing more goes for `quiet_ms`. */
static void send_until_stuck(flood_t *fl, size_t n, const uint8_t *data, size_t max, int quiet_ms)
{
    double last = now_ms();
    while (now_ms() - last < quiet_ms) {
        int moved = 0;
        for (size_t i = 0; i < n; i++) {
            if (fl[i].sent >= max)
                continue;
            ssize_t w = send(fl[i].fd, data + fl[i].sent, max - fl[i].sent, MSG_DONTWAIT);
            if (w > 0) {
                fl[i].sent += (size_t)w;
                moved = 1;
            }
        }
        if (moved)
            last = now_ms();
        else
            usleep(5000);
    }
}

/* Sixteen peers each send all but the last byte of a 4 MiB frame. With a
 * budget of 8 MiB the server holds at most that plus one read and one
 * growth step per connection (8 MiB + 16 x 288 KiB), pauses the rest, still
 * answers a small call on a new connection at once, and gives everything
 * back when the frame timeout (1 s here) ends the connections: a paused
 * connection is not read, so its peer's going is seen only then. */
static void test_budget_bounds_partial_frames(void **state)
{
    (void)state;
    lx_t lx;
    pp_ttrpc_budget_t b;
    pp_ttrpc_budget_init(&b, 8u << 20, 0);
    pp_ttrpc_server_opts_t o = {.budget = &b, .frame_timeout_ms = 1000};
    lx_start(&lx, &o);
    size_t len;
    uint8_t *payload = calloc(1, PP_TTRPC_MAX_MESSAGE - 64);
    uint8_t *f = request(1, "Echo", payload, PP_TTRPC_MAX_MESSAGE - 64, 0, &len);
    free(payload);
    flood_t fl[16];
    for (int i = 0; i < 16; i++)
        fl[i] = (flood_t){peer(lx.sock), 0};
    send_until_stuck(fl, 16, f, len - 1, 500);
    snap_t s = snap(&lx);
    size_t bound = (8u << 20) + 16 * (PP_TTRPC_GROW_STEP + PP_TTRPC_FRAME_START + 16 * 1024);
    printf("# 16 x 4 MiB partial frames, budget 8 MiB: %zu KiB held (bound %zu KiB), "
           "%llu pauses\n",
           s.used >> 10, bound >> 10, (unsigned long long)s.stats.paused);
    assert_true(s.used <= bound);
    assert_true(s.used >= (8u << 20));
    assert_true(s.stats.paused >= 1);
    int small = peer(lx.sock);
    double t0 = now_ms();
    echo_ok(small, 1);
    assert_true(now_ms() - t0 < 1000);
    close(small);
    for (int i = 0; i < 16; i++)
        close(fl[i].fd);
    wait_conns(&lx, 0);
    s = snap(&lx);
    assert_int_equal(s.used, 0);
    /* The first to time out free the budget; the others are then read, and
     * end at their peers' close. */
    assert_true(s.stats.frame_timeouts >= 1);
    free(f);
    lx_stop(&lx);
}

/* A peer sends 100,000 calls and reads no answer: the server stops reading
 * it once 1 MiB of answers wait (plus the answers to one read: 16 KiB of
 * requests), so what it holds stays under 1 MiB + 64 KiB; then the peer
 * reads, and every answer comes, in order. */
static void test_answers_not_taken(void **state)
{
    (void)state;
    lx_t lx;
    lx_start(&lx, NULL);
    int fd = peer(lx.sock);
    const size_t n = 100000;
    size_t one;
    uint8_t *f1 = request(1, "Echo", "0123456789abcdef", 16, 0, &one);
    free(f1);
    uint8_t *all = malloc(n * one);
    for (size_t i = 0; i < n; i++) {
        size_t l;
        uint8_t *f = request((uint32_t)(2 * i + 1), "Echo", "0123456789abcdef", 16, 0, &l);
        memcpy(all + i * one, f, one);
        free(f);
    }
    flood_t fl = {fd, 0};
    send_until_stuck(&fl, 1, all, n * one, 500);
    snap_t s = snap(&lx);
    printf("# peer not reading: sent %zu of %zu bytes; answers held %zu KiB, %llu pauses\n",
           fl.sent, n * one, s.queued >> 10, (unsigned long long)s.stats.paused);
    assert_true(fl.sent < n * one);
    assert_true(s.queued <= PP_TTRPC_WRITE_PAUSE + (64u << 10));
    assert_true(s.stats.paused >= 1);
    /* Reading now: the rest goes through, and every answer comes. */
    size_t got = 0;
    while (got < n) {
        if (fl.sent < n * one) {
            ssize_t w = send(fd, all + fl.sent, n * one - fl.sent, MSG_DONTWAIT);
            if (w > 0)
                fl.sent += (size_t)w;
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 10) <= 0)
            continue;
        uint32_t id;
        assert_int_equal(read_answer(fd, &id, NULL, 0), 0);
        assert_int_equal(id, (uint32_t)(2 * got + 1));
        got++;
    }
    free(all);
    close(fd);
    lx_stop(&lx);
}

/* ---- sockets ------------------------------------------------------------- */

/* Under umask 000 the socket is still 0600; with a group, 0660 and that
 * group. */
static void test_socket_mode(void **state)
{
    (void)state;
    mode_t old = umask(0);
    lx_t lx;
    lx_start(&lx, NULL);
    struct stat st;
    assert_int_equal(stat(lx.sock, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    lx_stop(&lx);
    if (geteuid() == 0) {
        pp_ttrpc_server_opts_t o = {.socket_mode = 0660, .socket_gid = 4242};
        lx_start(&lx, &o);
        assert_int_equal(stat(lx.sock, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0660);
        assert_int_equal(st.st_gid, 4242);
        lx_stop(&lx);
    } else {
        printf("# not root: the group case is not checked\n");
    }
    umask(old);
}

/* ---- deadlines ----------------------------------------------------------- */

/* 2,000 held calls on one connection with deadlines spread over 1 s (from
 * 0.5 s to 1.5 s), in a
 * scrambled order: each is answered DEADLINE_EXCEEDED no sooner than its
 * deadline and within 300 ms of it, and the 500 the handler answers first
 * are never timed out. */
static void answer_every_fourth(lx_t *lx, void *arg)
{
    (void)arg;
    size_t keep = 0;
    for (size_t i = 0; i < lx->nheld; i++) {
        const pp_ttrpc_request_t *r = pp_ttrpc_call_request(lx->held[i]);
        unsigned k = (unsigned)strtoul((const char *)r->payload, NULL, 10);
        if (k % 4 == 0)
            pp_ttrpc_call_reply(lx->held[i], "early", 5);
        else
            lx->held[keep++] = lx->held[i];
    }
    lx->nheld = keep;
}

static void drop_cancelled(lx_t *lx, void *arg)
{
    (void)arg;
    answer_all(lx, NULL); /* answers of timed-out calls are dropped */
}

static void test_many_deadlines(void **state)
{
    (void)state;
    lx_t lx;
    lx_start(&lx, NULL);
    int fd = peer(lx.sock);
    enum { N = 2000 };
    double due[N];
    double start = now_ms();
    for (unsigned i = 0; i < N; i++) {
        unsigned k = (i * 7919u) % N; /* a permutation */
        int64_t ms = 500 + (int64_t)k / 2;
        char body[16];
        snprintf(body, sizeof(body), "%u", k);
        pp_ttrpc_request_t req = {.service = {SVC, strlen(SVC)},
                                  .method = {"Hold", 4},
                                  .payload = (const uint8_t *)body,
                                  .payload_len = strlen(body) + 1,
                                  .timeout_nano = ms * 1000000};
        uint8_t *f;
        size_t len;
        assert_int_equal(pp_ttrpc_request_frame(&req, &f, &len), 0);
        pp_ttrpc_frame_set_stream(f, 2 * k + 1);
        write_all(fd, f, len);
        free(f);
        due[k] = now_ms() + (double)ms;
    }
    wait_held(&lx, N);
    on_loop(&lx, answer_every_fourth, NULL);
    int early = 0, late = 0;
    double worst = 0;
    for (unsigned i = 0; i < N; i++) {
        uint32_t id;
        int code = read_answer(fd, &id, NULL, 0);
        unsigned k = (id - 1) / 2;
        double at = now_ms();
        if (k % 4 == 0) {
            assert_int_equal(code, 0);
            early++;
            continue;
        }
        assert_int_equal(code, PP_GRPC_DEADLINE_EXCEEDED);
        assert_true(at >= due[k] - 20);
        if (at - due[k] > worst)
            worst = at - due[k];
        late++;
    }
    printf("# %d answered, %d timed out, at most %.0f ms after their deadlines (%.0f ms in all)\n",
           early, late, worst, now_ms() - start);
    assert_int_equal(early, N / 4);
    assert_true(worst < 300);
    on_loop(&lx, drop_cancelled, NULL);
    close(fd);
    lx_stop(&lx);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    /* Frames of megabytes are mmap'ed and given back, as in the daemons. */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    if (getenv("PP_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("PP_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_evict_idle),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_frame_timeout),
        cmocka_unit_test(test_announced_lengths),
        cmocka_unit_test(test_metadata_count),
        cmocka_unit_test(test_budget_bounds_partial_frames),
        cmocka_unit_test(test_answers_not_taken),
        cmocka_unit_test(test_socket_mode),
        cmocka_unit_test(test_many_deadlines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
