/* Deadline cost on one connection: N calls held by the server, each with
 * its own deadline, spread over half a second, all expiring. Prints the CPU
 * time per call at each N and the ratio to the smallest N: with one timer
 * rescanning every call, the cost per call grows with N; with the heap it
 * stays flat (O(log N)).
 *
 *   pp_bench_deadlines server|client [N...]   (default 100 1000 10000 30000)
 *
 * Client and server share one loop in this process. "server": the timeout
 * travels in the frame only and the server enforces it; "client": the
 * client enforces it and the server never answers. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "ttrpc/ttrpc.h"

#define SVC "pp.bench.Deadlines"

typedef struct bench_s {
    uv_loop_t loop;
    int client_side;
    pp_ttrpc_server_t *srv;
    pp_ttrpc_client_t *cli;
    size_t answered, expired, held;
    int connected;
} bench_t;

static void on_cancel(pp_ttrpc_call_t *call, void *data)
{
    bench_t *b = data;
    b->held--;
    pp_ttrpc_call_reply(call, NULL, 0); /* dropped: the deadline answered */
}

static void h_hold(pp_ttrpc_call_t *call, void *data)
{
    bench_t *b = data;
    b->held++;
    pp_ttrpc_call_on_cancel(call, on_cancel, b);
}

static void cancel_held(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    pp_ttrpc_call_reply(call, NULL, 0);
}

static void h_hold_forever(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    pp_ttrpc_call_on_cancel(call, cancel_held, NULL);
}

static void result_cb(pp_ttrpc_result_t *res, void *data)
{
    bench_t *b = data;
    b->answered++;
    if (res->code == PP_GRPC_DEADLINE_EXCEEDED)
        b->expired++;
}

static void connect_cb(pp_ttrpc_client_t *c, int status, void *data)
{
    (void)c;
    ((bench_t *)data)->connected = status == 0 ? 1 : -1;
}

static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static double wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* CPU ms for N calls sent, held and expired; -1 on failure. */
static double run(const char *sock, size_t n, int client_side)
{
    bench_t b = {0};
    b.client_side = client_side;
    uv_loop_init(&b.loop);
    pp_error_t err = {0};
    if (pp_ttrpc_server_new(&b.loop, &b.srv) < 0 ||
        pp_ttrpc_server_register(b.srv, SVC, "Hold", client_side ? h_hold_forever : h_hold, &b) <
            0 ||
        pp_ttrpc_server_listen_unix(b.srv, sock, &err) < 0) {
        fprintf(stderr, "server: %s\n", err.message);
        return -1;
    }
    pp_ttrpc_client_new(&b.loop, &b.cli);
    pp_ttrpc_client_connect_unix(b.cli, sock, connect_cb, &b);
    while (b.connected == 0)
        uv_run(&b.loop, UV_RUN_ONCE);
    if (b.connected < 0)
        return -1;
    double cpu0 = cpu_ms(), wall0 = wall_ms();
    for (size_t i = 0; i < n; i++) {
        /* Deadlines from 100 ms to 600 ms, in a scrambled order. */
        size_t k = (i * 7919u) % n;
        int64_t ms = 100 + (int64_t)(k * 500 / n);
        int64_t timeout = ms * 1000000;
        pp_ttrpc_request_t req = {.service = {SVC, strlen(SVC)},
                                  .method = {"Hold", 4},
                                  .timeout_nano = client_side ? 0 : timeout};
        uint8_t *frame;
        size_t len;
        if (pp_ttrpc_request_frame(&req, &frame, &len) < 0 ||
            pp_ttrpc_client_call_frame(b.cli, frame, len, client_side ? timeout : 0, result_cb,
                                       &b) < 0)
            return -1;
        /* Keep the socket moving while sending. */
        if (i % 256 == 255)
            uv_run(&b.loop, UV_RUN_NOWAIT);
    }
    while (b.answered < n && wall_ms() - wall0 < 30000)
        uv_run(&b.loop, UV_RUN_ONCE);
    double cpu = cpu_ms() - cpu0;
    if (b.expired != n) {
        fprintf(stderr, "%zu of %zu calls expired\n", b.expired, n);
        return -1;
    }
    pp_ttrpc_client_close(b.cli, NULL, NULL);
    pp_ttrpc_server_close(b.srv, 0, NULL, NULL);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    return cpu;
}

int main(int argc, char **argv)
{
    size_t ns[16] = {100, 1000, 10000, 30000};
    size_t count = 4;
    if (argc < 2 || (strcmp(argv[1], "server") != 0 && strcmp(argv[1], "client") != 0)) {
        fprintf(stderr, "usage: %s server|client [N...]\n", argv[0]);
        return 2;
    }
    int client_side = strcmp(argv[1], "client") == 0;
    if (argc > 2) {
        count = 0;
        for (int i = 2; i < argc && count < 16; i++)
            ns[count++] = (size_t)strtoul(argv[i], NULL, 10);
    }
    char dir[] = "/tmp/pp-bench-deadlines-XXXXXX";
    if (mkdtemp(dir) == NULL)
        return 1;
    char sock[128];
    snprintf(sock, sizeof(sock), "%s/s.sock", dir);
    /* A warm-up run, not printed. */
    if (run(sock, ns[0], client_side) < 0)
        return 1;
    printf("deadlines enforced by the %s\n", argv[1]);
    printf("%8s %12s %14s %8s\n", "calls", "cpu ms", "us per call", "ratio");
    double base = 0;
    for (size_t i = 0; i < count; i++) {
        double cpu = run(sock, ns[i], client_side);
        if (cpu < 0)
            return 1;
        double per = cpu * 1e3 / (double)ns[i];
        if (i == 0)
            base = per;
        printf("%8zu %12.1f %14.2f %8.2f\n", ns[i], cpu, per, per / base);
        printf("RESULT calls=%zu cpu_ms=%.1f per_call_us=%.2f ratio=%.2f\n", ns[i], cpu, per,
               per / base);
    }
    rmdir(dir);
    return 0;
}
