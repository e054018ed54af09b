/* api-server-rest: the REST API containers reach on 127.0.0.1:8006, with
 * upstream's paths and answers, in front of the attestation agent and the
 * data hub (a ttrpc call to them per request):
 *
 *   GET /info                          {"version","tee"?,"additional_tees"?,"feature"}
 *   GET /aa/token?token_type=kbs       GetToken's Token (octet-stream)
 *   GET /aa/evidence?runtime_data=X[&encoding=base64]   GetEvidence's Evidence
 *   GET /aa/additional-evidence?runtime_data=X          GetAdditionalEvidence's
 *   POST /aa/aael {"domain","operation","content"}      {"success":"true"} or
 *                                      {"success":"false","message":...}
 *   /cdh/resource/<repository>/<type>/<tag>             the resource (octet-stream)
 *
 * A missing parameter answers 400 "BAD REQUEST"; an unknown path 404 "URL
 * NOT FOUND"; a feature not enabled 404 ("Attestation Feature Not Enabled",
 * "Resource Feature Not Enabled"); a failed call 500 with its message.
 * Features: `resource` (the data hub, upstream's default), `attestation`
 * (the agent), `all`. The server binds a loopback address only (upstream
 * answers 403 to anything else; here nothing else can connect). */
#ifndef GUEST_REST_H
#define GUEST_REST_H

#include <uv.h>

#include "util/error.h"

#define GUEST_REST_BIND "127.0.0.1:8006"

typedef struct guest_rest_s guest_rest_t;

typedef struct guest_rest_opts_s {
    const char *bind;     /* "127.0.0.1:8006", "[::1]:8006" */
    const char *features; /* resource, attestation, all */
    const char *aa_socket;
    const char *cdh_socket;
    const char *version;
} guest_rest_opts_t;

int guest_rest_start(uv_loop_t *loop, const guest_rest_opts_t *o, guest_rest_t **out,
                     pp_error_t *err);
int guest_rest_port(const guest_rest_t *r);
void guest_rest_close(guest_rest_t *r, void (*cb)(void *data), void *data);

#endif
