/* Blocking ttrpc calls for tests and tools: each call connects, calls, waits
 * on a private loop and closes, as the kata shim does for the hypervisor. */
#ifndef PP_TESTS_SYNC_CLIENT_H
#define PP_TESTS_SYNC_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ttrpc/ttrpc.h"

typedef struct pp_sync_result_s {
    int code; /* gRPC status, or -errno when the call could not be made */
    char message[1024];
    uint8_t *payload; /* malloc'd, NUL-terminated after len */
    size_t len;
} pp_sync_result_t;

int pp_sync_call(const char *sock, const char *service, const char *method, const void *payload,
                 size_t len, uint64_t timeout_ms, pp_sync_result_t *out);
/* The same over TCP (plaintext), as the adaptor calls a forwarder. */
int pp_sync_call_tcp(const struct sockaddr *addr, const char *service, const char *method,
                     const void *payload, size_t len, uint64_t timeout_ms, pp_sync_result_t *out);
void pp_sync_result_free(pp_sync_result_t *r);

#endif
