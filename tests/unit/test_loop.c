/* The daemons' loop runner (lib/util/loop.c): during a quick exchange the
 * loop takes each message without going to sleep, what callbacks queue for
 * "before the loop waits" still goes out at once, an idle or slow loop
 * sleeps as uv_run() does, and the run ends when the handles are gone. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "util/loop.h"

#define ROUNDS 2000

static long sleeps_of_this_thread(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_THREAD, &ru), 0);
    return ru.ru_nvcsw; /* voluntary switches: the thread blocked */
}

static uint64_t cpu_ns_of_this_thread(void)
{
    struct timespec ts;
    assert_int_equal(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts), 0);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- an echo over a socketpair, answered from a prepare handle ---------- */

typedef struct {
    uv_pipe_t pipe;
    uv_prepare_t answer; /* the echo goes out "before the loop waits" */
    char pending[64];
    size_t npending;
    size_t echoed;
} echo_t;

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    echo_t *e = h->data;
    buf->base = e->pending + e->npending;
    buf->len = sizeof(e->pending) - e->npending;
}

static void answer_cb(uv_prepare_t *p)
{
    echo_t *e = p->data;
    uv_prepare_stop(p);
    uv_buf_t b = uv_buf_init(e->pending, (unsigned)e->npending);
    assert_int_equal(uv_try_write((uv_stream_t *)&e->pipe, &b, 1), (int)e->npending);
    e->echoed += e->npending;
    e->npending = 0;
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    echo_t *e = s->data;
    if (n < 0) {
        uv_close((uv_handle_t *)&e->pipe, NULL);
        uv_close((uv_handle_t *)&e->answer, NULL);
        return;
    }
    e->npending += (size_t)n;
    if (n > 0)
        uv_prepare_start(&e->answer, answer_cb);
}

static void *peer_main(void *arg)
{
    int fd = *(int *)arg;
    char msg[8] = "ping-000", back[8];
    for (int i = 0; i < ROUNDS; i++) {
        assert_int_equal(write(fd, msg, sizeof(msg)), (ssize_t)sizeof(msg));
        size_t got = 0;
        while (got < sizeof(back)) {
            ssize_t n = read(fd, back + got, sizeof(back) - got);
            assert_true(n > 0);
            got += (size_t)n;
        }
        assert_memory_equal(back, msg, sizeof(msg));
    }
    close(fd);
    return NULL;
}

/* Runs ROUNDS round trips with the loop under pp_loop_run(spin_us) and
 * returns how often the loop thread went to sleep meanwhile. */
static long echo_sleeps(unsigned spin_us)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    uv_loop_t loop;
    echo_t e = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_pipe_init(&loop, &e.pipe, 0), 0);
    assert_int_equal(uv_pipe_open(&e.pipe, sv[0]), 0);
    assert_int_equal(uv_prepare_init(&loop, &e.answer), 0);
    e.pipe.data = e.answer.data = &e;
    assert_int_equal(uv_read_start((uv_stream_t *)&e.pipe, alloc_cb, read_cb), 0);

    pthread_t peer;
    long before = sleeps_of_this_thread();
    assert_int_equal(pthread_create(&peer, NULL, peer_main, &sv[1]), 0);
    assert_int_equal(pp_loop_run(&loop, spin_us), 0);
    long sleeps = sleeps_of_this_thread() - before;
    pthread_join(peer, NULL);

    assert_int_equal(e.echoed, (size_t)ROUNDS * 8);
    assert_int_equal(uv_loop_close(&loop), 0);
    return sleeps;
}

static void exchange_is_taken_without_sleeping(void **state)
{
    (void)state;
    /* The measure first: a plain loop sleeps between the messages. */
    long plain = echo_sleeps(0);
    assert_true(plain > ROUNDS / 4);
    /* Polling (with a budget no scheduler hiccup outlasts): hardly ever. */
    long polled = echo_sleeps(20000);
    print_message("loop went to sleep %ld times in %d round trips plain, %ld polling\n", plain,
                  ROUNDS, polled);
    assert_true(polled < ROUNDS / 20);
}

/* ---- a slow loop sleeps ------------------------------------------------------ */

typedef struct {
    uv_timer_t timer;
    int ticks;
} ticker_t;

static void tick_cb(uv_timer_t *t)
{
    ticker_t *k = t->data;
    if (++k->ticks == 100)
        uv_close((uv_handle_t *)t, NULL);
}

static void slow_wakeups_do_not_poll(void **state)
{
    (void)state;
    uv_loop_t loop;
    ticker_t k = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &k.timer);
    k.timer.data = &k;
    /* Woken every 2 ms, with a budget of 1 ms: each wait outlasts it. */
    uv_timer_start(&k.timer, tick_cb, 2, 2);
    uint64_t cpu = cpu_ns_of_this_thread(), wall = uv_hrtime();
    long sleeps = sleeps_of_this_thread();
    assert_int_equal(pp_loop_run(&loop, 1000), 0);
    cpu = cpu_ns_of_this_thread() - cpu;
    wall = uv_hrtime() - wall;
    sleeps = sleeps_of_this_thread() - sleeps;
    print_message("100 ticks: %.1f ms on the CPU in %.1f ms, %ld sleeps\n", cpu / 1e6, wall / 1e6,
                  sleeps);
    assert_int_equal(k.ticks, 100);
    /* Polling 1 ms after each tick would take half of the time or more. */
    assert_true(sleeps >= 90);
    assert_true(cpu < wall / 4);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- work that is not I/O on the loop's own descriptors ----------------- */

typedef struct {
    uv_async_t async;
    uv_timer_t timer;
    uv_work_t work;
    int async_seen, timer_seen, work_done, closed;
} misc_t;

static void closed_cb(uv_handle_t *h)
{
    misc_t *m = h->data;
    m->closed++;
}

static void maybe_finish(misc_t *m)
{
    if (m->async_seen && m->timer_seen && m->work_done) {
        uv_close((uv_handle_t *)&m->async, closed_cb);
        uv_close((uv_handle_t *)&m->timer, closed_cb);
    }
}

static void async_cb(uv_async_t *a)
{
    misc_t *m = a->data;
    m->async_seen = 1;
    maybe_finish(m);
}

static void timer_cb(uv_timer_t *t)
{
    misc_t *m = t->data;
    m->timer_seen = 1;
    maybe_finish(m);
}

static void work_cb(uv_work_t *w)
{
    misc_t *m = w->data;
    usleep(5000);
    uv_async_send(&m->async);
}

static void after_work_cb(uv_work_t *w, int status)
{
    misc_t *m = w->data;
    assert_int_equal(status, 0);
    m->work_done = 1;
    maybe_finish(m);
}

static void async_timers_work_and_closes_complete(void **state)
{
    (void)state;
    uv_loop_t loop;
    misc_t m = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_async_init(&loop, &m.async, async_cb), 0);
    uv_timer_init(&loop, &m.timer);
    m.async.data = m.timer.data = m.work.data = &m;
    uv_timer_start(&m.timer, timer_cb, 1, 0);
    assert_int_equal(uv_queue_work(&loop, &m.work, work_cb, after_work_cb), 0);
    assert_int_equal(pp_loop_run(&loop, 20000), 0);
    assert_true(m.async_seen && m.timer_seen && m.work_done);
    assert_int_equal(m.closed, 2);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exchange_is_taken_without_sleeping),
        cmocka_unit_test(slow_wakeups_do_not_poll),
        cmocka_unit_test(async_timers_work_and_closes_complete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
