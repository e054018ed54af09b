/* Blocking ttrpc calls, for tools and tests: each call connects (unix or
 * TCP, plaintext), makes one call, waits for the answer on a loop of its
 * own and closes, as the kata shim does for the hypervisor service.
 *
 * It blocks the calling thread until the answer, the deadline or a
 * connection failure, so it is built as a library of its own
 * (`pp_ttrpc_sync`) that only tools and tests link: no daemon can reach it
 * from a loop callback. Safe to call from several threads at once (nothing
 * is shared between calls). */
#ifndef PP_TTRPC_SYNC_CLIENT_H
#define PP_TTRPC_SYNC_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "ttrpc/ttrpc.h"

typedef struct pp_ttrpc_sync_result_s {
    int code; /* gRPC status, or a negative errno when the call could not be made */
    char message[1024];
    uint8_t *payload; /* malloc'd, NUL-terminated after len; NULL when no answer came */
    size_t len;
} pp_ttrpc_sync_result_t;

/* Calls `service`/`method` on the unix socket `sock` with `timeout_ms` as
 * the call's deadline (sent as timeout_nano, and enforced here too; 0 =
 * none). Returns out->code: 0, the gRPC status the server or the client
 * answered with, or a negative errno when the connection failed (then
 * `message` is the errno's text). Free the result with
 * pp_ttrpc_sync_result_free() whatever the outcome. */
int pp_ttrpc_sync_call(const char *sock, const char *service, const char *method,
                       const void *payload, size_t len, uint64_t timeout_ms,
                       pp_ttrpc_sync_result_t *out);
/* The same over TCP (plaintext), as the adaptor calls a forwarder. */
int pp_ttrpc_sync_call_tcp(const struct sockaddr *addr, const char *service, const char *method,
                           const void *payload, size_t len, uint64_t timeout_ms,
                           pp_ttrpc_sync_result_t *out);
void pp_ttrpc_sync_result_free(pp_ttrpc_sync_result_t *r);

#endif
