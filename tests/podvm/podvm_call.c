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
#include <time.h>
#include <uv.h>

#include "agent.pb-c.h"
#include "health.pb-c.h"
#include "ttrpc/sync_client.h"

#define CALL_TIMEOUT_MS 5000

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int health(const struct sockaddr *addr)
{
    Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
    uint8_t buf[16];
    size_t n = grpc__check_request__pack(&req, buf);
    pp_ttrpc_sync_result_t w;
    int r = pp_ttrpc_sync_call_tcp(addr, "grpc.Health", "Check", buf, n, CALL_TIMEOUT_MS, &w);
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
    pp_ttrpc_sync_result_free(&w);
    return r;
}

static int guest_details(const struct sockaddr *addr)
{
    Grpc__GuestDetailsRequest req = GRPC__GUEST_DETAILS_REQUEST__INIT;
    uint8_t buf[64];
    size_t n = grpc__guest_details_request__pack(&req, buf);
    pp_ttrpc_sync_result_t w;
    int r = pp_ttrpc_sync_call_tcp(addr, "grpc.AgentService", "GetGuestDetails", buf, n,
                                   CALL_TIMEOUT_MS, &w);
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
    pp_ttrpc_sync_result_free(&w);
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
