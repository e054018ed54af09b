/* podvm-call: agent API calls over plaintext TCP, as CAA makes them to the
 * forwarder in a pod VM (without TLS): grpc.Health/Check, then
 * grpc.AgentService/GetGuestDetails, printing the agent's version.
 *
 * Usage: podvm-call HOST PORT [SECONDS]
 * Connects and calls until both answer or SECONDS (default 60) pass: a
 * port forwarded to a VM accepts before the forwarder listens, then drops.
 * Exit status 0 when both answered OK, 1 otherwise. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "agent.pb-c.h"
#include "health.pb-c.h"
#include "ttrpc/ttrpc.h"

#define CALL_TIMEOUT_MS 5000

typedef struct wait_s {
    int done;
    int code;
    char message[256];
    uint8_t *payload;
    size_t len;
} wait_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void connected(pp_ttrpc_client_t *c, int status, void *data)
{
    wait_t *w = data;
    (void)c;
    w->code = status;
    w->done = 1;
}

static void answered(pp_ttrpc_result_t *res, void *data)
{
    wait_t *w = data;
    w->code = res->code;
    snprintf(w->message, sizeof(w->message), "%.*s", (int)res->message.n,
             res->message.p ? res->message.p : "");
    w->payload = malloc(res->payload_len + 1);
    if (w->payload != NULL && res->payload_len)
        memcpy(w->payload, res->payload, res->payload_len);
    w->len = res->payload_len;
    w->done = 1;
}

/* One connection, one call; 0 with the answer in `w`, or -errno / the gRPC
 * status of the failure. */
static int call(const struct sockaddr *addr, const char *service, const char *method,
                const void *payload, size_t len, wait_t *w)
{
    uv_loop_t loop;
    pp_ttrpc_client_t *c = NULL;
    memset(w, 0, sizeof(*w));
    int r = uv_loop_init(&loop);
    if (r < 0)
        return r;
    r = pp_ttrpc_client_new(&loop, &c);
    if (r == 0)
        r = pp_ttrpc_client_connect_tcp(c, addr, connected, w);
    while (r == 0 && !w->done)
        uv_run(&loop, UV_RUN_ONCE);
    if (r == 0)
        r = w->code;
    if (r == 0) {
        pp_ttrpc_call_opts_t o = {
            .service = service,
            .method = method,
            .payload = payload,
            .payload_len = len,
            .timeout_nano = (int64_t)CALL_TIMEOUT_MS * 1000000,
        };
        w->done = 0;
        r = pp_ttrpc_client_call(c, &o, answered, w);
        while (r == 0 && !w->done)
            uv_run(&loop, UV_RUN_ONCE);
        if (r == 0)
            r = w->code;
    }
    if (c != NULL)
        pp_ttrpc_client_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return r;
}

static int health(const struct sockaddr *addr)
{
    Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
    uint8_t buf[16];
    size_t n = grpc__check_request__pack(&req, buf);
    wait_t w;
    int r = call(addr, "grpc.Health", "Check", buf, n, &w);
    if (r == 0) {
        Grpc__HealthCheckResponse *resp =
            grpc__health_check_response__unpack(NULL, w.len, w.payload);
        if (resp == NULL || resp->status != GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING)
            r = -EPROTO;
        else
            printf("grpc.Health/Check: SERVING\n");
        if (resp != NULL)
            grpc__health_check_response__free_unpacked(resp, NULL);
    } else if (r > 0) {
        fprintf(stderr, "grpc.Health/Check: status %d: %s\n", r, w.message);
    }
    free(w.payload);
    return r;
}

static int guest_details(const struct sockaddr *addr)
{
    Grpc__GuestDetailsRequest req = GRPC__GUEST_DETAILS_REQUEST__INIT;
    uint8_t buf[64];
    size_t n = grpc__guest_details_request__pack(&req, buf);
    wait_t w;
    int r = call(addr, "grpc.AgentService", "GetGuestDetails", buf, n, &w);
    if (r == 0) {
        Grpc__GuestDetailsResponse *resp =
            grpc__guest_details_response__unpack(NULL, w.len, w.payload);
        if (resp == NULL || resp->agent_details == NULL || resp->agent_details->version == NULL)
            r = -EPROTO;
        else
            printf("grpc.AgentService/GetGuestDetails: agent version `%s`\n",
                   resp->agent_details->version);
        if (resp != NULL)
            grpc__guest_details_response__free_unpacked(resp, NULL);
    } else if (r > 0) {
        fprintf(stderr, "grpc.AgentService/GetGuestDetails: status %d: %s\n", r, w.message);
    }
    free(w.payload);
    return r;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: podvm-call HOST PORT [SECONDS]\n");
        return 2;
    }
    char *end, *end2 = "";
    unsigned long port = strtoul(argv[2], &end, 10);
    unsigned long seconds = argc == 4 ? strtoul(argv[3], &end2, 10) : 60;
    struct sockaddr_in sa;
    if (*end != '\0' || port == 0 || port > 65535 || uv_ip4_addr(argv[1], (int)port, &sa) != 0) {
        fprintf(stderr, "podvm-call: bad address %s:%s\n", argv[1], argv[2]);
        return 2;
    }
    if (*end2 != '\0' || seconds == 0 || seconds > 3600) {
        fprintf(stderr, "podvm-call: bad number of seconds `%s`\n", argv[3]);
        return 2;
    }
    uint64_t deadline = now_ms() + seconds * 1000;
    int r, attempts = 0;
    do {
        attempts++;
        r = health((struct sockaddr *)&sa);
        if (r == 0)
            break;
        struct timespec pause = {0, 250 * 1000000};
        nanosleep(&pause, NULL);
    } while (now_ms() < deadline);
    if (r != 0) {
        fprintf(stderr, "podvm-call: no answer from %s:%lu in %lus (%d attempts; last: %s)\n",
                argv[1], port, seconds, attempts, r < 0 ? uv_strerror(r) : "gRPC error");
        return 1;
    }
    r = guest_details((struct sockaddr *)&sa);
    if (r != 0) {
        fprintf(stderr, "podvm-call: GetGuestDetails failed: %s\n",
                r < 0 ? uv_strerror(r) : "gRPC error");
        return 1;
    }
    return 0;
}
