/* ttrpc_bench_client: load generator on our ttrpc client.
 *
 *     ttrpc_bench_client SOCKET CONC SIZE WARMUP_MS DURATION_MS
 *
 * Keeps CONC Echo calls of SIZE bytes in flight on one connection, discards
 * the warm-up, records every call started and finished inside the measured
 * window, checks every answer, and prints one RESULT line in the format of
 * the Go load generator (go/main.go), so the two are measured alike. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/loop.h"
#include "ttrpc/ttrpc.h"

enum phase { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };

typedef struct bench_s bench_t;

typedef struct slot_s {
    bench_t *b;
    uint64_t started; /* uv_hrtime() */
    enum phase phase; /* when it started */
} slot_t;

struct bench_s {
    uv_loop_t *loop;
    pp_ttrpc_client_t *cl;
    uv_timer_t timer;
    enum phase phase;
    uint64_t window_start;
    uint64_t window_ns;
    uint8_t *payload;
    size_t size;
    size_t in_flight;
    uint64_t *samples; /* ns */
    size_t nsamples, cap;
    long errors;
    int connect_status;
    uint64_t duration_ms;
};

static void issue(slot_t *s);

static int record(bench_t *b, uint64_t ns)
{
    if (b->nsamples == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        uint64_t *v = realloc(b->samples, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        b->samples = v;
        b->cap = cap;
    }
    b->samples[b->nsamples++] = ns;
    return 0;
}

static void closed_cb(pp_ttrpc_client_t *c, void *data)
{
    bench_t *b = data;
    (void)c;
    uv_close((uv_handle_t *)&b->timer, NULL);
}

static void result_cb(pp_ttrpc_result_t *res, void *data)
{
    slot_t *s = data;
    bench_t *b = s->b;
    uint64_t el = uv_hrtime() - s->started;
    b->in_flight--;
    if (res->code != 0 || res->payload_len != b->size ||
        memcmp(res->payload, b->payload, b->size) != 0)
        b->errors++;
    else if (s->phase == PHASE_MEASURE && b->phase == PHASE_MEASURE && record(b, el) < 0)
        b->errors++;
    if (b->phase != PHASE_STOP) {
        issue(s);
        return;
    }
    if (b->in_flight == 0)
        pp_ttrpc_client_close(b->cl, closed_cb, b);
}

static void issue(slot_t *s)
{
    bench_t *b = s->b;
    pp_ttrpc_call_opts_t o = {
        .service = "pp.test.Echo",
        .method = "Echo",
        .payload = b->payload,
        .payload_len = b->size,
    };
    s->started = uv_hrtime();
    s->phase = b->phase;
    if (pp_ttrpc_client_call(b->cl, &o, result_cb, s) < 0) {
        b->errors++;
        return;
    }
    b->in_flight++;
}

static void stop_cb(uv_timer_t *t)
{
    bench_t *b = t->data;
    b->phase = PHASE_STOP;
    b->window_ns = uv_hrtime() - b->window_start;
    if (b->in_flight == 0)
        pp_ttrpc_client_close(b->cl, closed_cb, b);
}

static void measure_cb(uv_timer_t *t)
{
    bench_t *b = t->data;
    b->phase = PHASE_MEASURE;
    b->window_start = uv_hrtime();
    uv_timer_start(&b->timer, stop_cb, b->duration_ms, 0);
}

static void connect_cb(pp_ttrpc_client_t *c, int status, void *data)
{
    bench_t *b = data;
    (void)c;
    b->connect_status = status;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static long parse_arg(const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < min || v > max)
        return -1;
    return v;
}

int main(int argc, char **argv)
{
    bench_t b = {.loop = uv_default_loop(), .connect_status = 1};
    unsigned busy_poll_us;
    if (argc != 6 || pp_loop_busy_poll_parse(getenv("BUSY_POLL_US"), &busy_poll_us) < 0) {
        fprintf(stderr, "usage: [BUSY_POLL_US=microseconds] ttrpc_bench_client SOCKET CONC SIZE "
                        "WARMUP_MS DURATION_MS\n");
        return 2;
    }
    long conc = parse_arg(argv[2], 1, 4096), size = parse_arg(argv[3], 0, 1 << 20);
    long warmup = parse_arg(argv[4], 0, 600000), duration = parse_arg(argv[5], 1, 600000);
    if (conc < 0 || size < 0 || warmup < 0 || duration < 0) {
        fprintf(stderr, "ttrpc_bench_client: bad argument\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    b.size = (size_t)size;
    b.duration_ms = (uint64_t)duration;
    b.payload = malloc(b.size ? b.size : 1);
    slot_t *slots = calloc((size_t)conc, sizeof(*slots));
    if (b.payload == NULL || slots == NULL)
        return 1;
    memset(b.payload, 'x', b.size);

    int r = pp_ttrpc_client_new(b.loop, &b.cl);
    if (r == 0)
        r = pp_ttrpc_client_connect_unix(b.cl, argv[1], connect_cb, &b);
    while (r == 0 && b.connect_status == 1)
        uv_run(b.loop, UV_RUN_ONCE);
    if (r < 0 || b.connect_status != 0) {
        fprintf(stderr, "ttrpc_bench_client: connect `%s`: %s\n", argv[1],
                uv_strerror(r < 0 ? r : b.connect_status));
        return 1;
    }

    uv_timer_init(b.loop, &b.timer);
    b.timer.data = &b;
    uv_timer_start(&b.timer, measure_cb, (uint64_t)warmup, 0);
    for (long i = 0; i < conc; i++) {
        slots[i].b = &b;
        issue(&slots[i]);
    }
    pp_loop_run(b.loop, busy_poll_us);
    uv_loop_close(b.loop);

    if (b.nsamples == 0) {
        fprintf(stderr,
                "ttrpc_bench_client: no call completed in the measured window (%ld errors)\n",
                b.errors);
        return 1;
    }
    qsort(b.samples, b.nsamples, sizeof(*b.samples), cmp_u64);
    double secs = (double)b.window_ns / 1e9;
    double p50 = (double)b.samples[(size_t)((double)(b.nsamples - 1) * 0.50)] / 1e3;
    double p99 = (double)b.samples[(size_t)((double)(b.nsamples - 1) * 0.99)] / 1e3;
    printf("RESULT calls=%zu seconds=%.3f cps=%.0f p50_us=%.1f p99_us=%.1f errors=%ld\n",
           b.nsamples, secs, (double)b.nsamples / secs, p50, p99, b.errors);
    free(b.samples);
    free(b.payload);
    free(slots);
    return b.errors ? 1 : 0;
}
