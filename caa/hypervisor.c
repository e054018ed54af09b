/* The hypervisor.Hypervisor ttrpc service the kata shim calls. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor.h"
#include "hypervisor.pb-c.h"
#include "lifecycle.h"
#include "util/cleanup.h"
#include "util/log.h"

#define SERVICE "hypervisor.Hypervisor"

static void version(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    const pp_ttrpc_request_t *r = pp_ttrpc_call_request(call);
    Hypervisor__VersionRequest *req =
        hypervisor__version_request__unpack(NULL, r->payload_len, r->payload);
    if (req == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT, "malformed VersionRequest");
        return;
    }
    hypervisor__version_request__free_unpacked(req, NULL);
    Hypervisor__VersionResponse resp = HYPERVISOR__VERSION_RESPONSE__INIT;
    resp.version = CAA_VERSION;
    uint8_t buf[64];
    size_t n = hypervisor__version_response__pack(&resp, buf);
    pp_ttrpc_call_reply(call, buf, n);
}

static void create_vm(pp_ttrpc_call_t *call, void *data)
{
    caa_daemon_t *d = data;
    const pp_ttrpc_request_t *r = pp_ttrpc_call_request(call);
    cleanup_pb Hypervisor__CreateVMRequest *req =
        hypervisor__create_vmrequest__unpack(NULL, r->payload_len, r->payload);
    if (req == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT, "malformed CreateVMRequest");
        return;
    }
    size_t n = req->n_annotations;
    cleanup_free const char **keys = calloc(n + 1, sizeof(*keys));
    cleanup_free const char **values = calloc(n + 1, sizeof(*values));
    if (keys == NULL || values == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        keys[i] = req->annotations[i]->key;
        values[i] = req->annotations[i]->value;
    }
    pp_error_t err = {0};
    caa_sandbox_t *sb = NULL;
    int rc = caa_sandbox_create(d, req->id, req->networknamespacepath, keys, values, n, &sb, &err);
    if (rc < 0) {
        PP_WARN("caa", "CreateVM `%.*s`: %s", PP_SANDBOX_ID_MAX + 1, req->id, err.message);
        pp_ttrpc_call_fail(call, pp_error_grpc_status(&err), "%s", err.message);
        return;
    }
    Hypervisor__CreateVMResponse resp = HYPERVISOR__CREATE_VMRESPONSE__INIT;
    resp.agentsocketpath = sb->socket_path;
    uint8_t buf[160];
    size_t len = hypervisor__create_vmresponse__pack(&resp, buf);
    pp_ttrpc_call_reply(call, buf, len);
}

/* StartVM and StopVM carry only the id. */
static char *read_id(pp_ttrpc_call_t *call, int start)
{
    const pp_ttrpc_request_t *r = pp_ttrpc_call_request(call);
    char *id = NULL;
    if (start) {
        cleanup_pb Hypervisor__StartVMRequest *req =
            hypervisor__start_vmrequest__unpack(NULL, r->payload_len, r->payload);
        id = req != NULL ? strdup(req->id) : NULL;
    } else {
        cleanup_pb Hypervisor__StopVMRequest *req =
            hypervisor__stop_vmrequest__unpack(NULL, r->payload_len, r->payload);
        id = req != NULL ? strdup(req->id) : NULL;
    }
    if (id == NULL)
        pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT, "malformed %s request",
                           start ? "StartVM" : "StopVM");
    return id;
}

static void start_vm(pp_ttrpc_call_t *call, void *data)
{
    cleanup_free char *id = read_id(call, 1);
    if (id != NULL)
        caa_sandbox_start(data, call, id);
}

static void stop_vm(pp_ttrpc_call_t *call, void *data)
{
    cleanup_free char *id = read_id(call, 0);
    if (id != NULL)
        caa_sandbox_stop(data, call, id);
}

static const struct {
    const char *method;
    pp_ttrpc_handler_cb cb;
} methods[] = {
    {"Version", version},
    {"CreateVM", create_vm},
    {"StartVM", start_vm},
    {"StopVM", stop_vm},
};

/* Every call comes here first: until the records are reconciled with the
 * provider, an answer could be wrong (an unknown id is not unknown). */
static void dispatch(pp_ttrpc_call_t *call, void *data)
{
    caa_daemon_t *d = data;
    if (d->recovering) {
        caa_waiting_call_t *w = malloc(sizeof(*w));
        if (w == NULL) {
            pp_ttrpc_call_fail(call, PP_GRPC_UNAVAILABLE, "recovering; try again");
            return;
        }
        w->call = call;
        w->next = d->parked;
        d->parked = w;
        return;
    }
    const pp_ttrpc_request_t *r = pp_ttrpc_call_request(call);
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (pp_str_eq(r->method, methods[i].method)) {
            methods[i].cb(call, d);
            return;
        }
    pp_ttrpc_call_fail(call, PP_GRPC_UNIMPLEMENTED, "method %.*s", (int)r->method.n, r->method.p);
}

void caa_hypervisor_resume(caa_daemon_t *d)
{
    caa_waiting_call_t *w = d->parked, *rev = NULL;
    d->parked = NULL;
    while (w != NULL) { /* oldest first */
        caa_waiting_call_t *next = w->next;
        w->next = rev;
        rev = w;
        w = next;
    }
    while (rev != NULL) {
        caa_waiting_call_t *next = rev->next;
        dispatch(rev->call, d);
        free(rev);
        rev = next;
    }
}

int caa_hypervisor_register(caa_daemon_t *d)
{
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        int r = pp_ttrpc_server_register(d->hv, SERVICE, methods[i].method, dispatch, d);
        if (r < 0)
            return r;
    }
    return 0;
}
