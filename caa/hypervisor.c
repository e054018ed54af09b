/* The hypervisor.Hypervisor ttrpc service the kata shim calls. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hypervisor.h"
#include "hypervisor.pb-c.h"
#include "lifecycle.h"
#include "util/cleanup.h"
#include "util/log.h"
#include "util/pb.h"

#define SERVICE "hypervisor.Hypervisor"

/* The most annotations a CreateVM may carry. Kubernetes caps a pod's
 * annotations at 256 KiB in all, and kata adds its own few; a request with
 * more is refused before anything is allocated for them (one of 4 MiB
 * could otherwise hold two million, at over 90 bytes of heap each). */
#define CAA_MAX_ANNOTATIONS 4096

/* A NUL byte in a string field: C strings end there, so "a\0b" would be
 * read as "a". */
static int has_nul(const pp_pb_field_t *f)
{
    return f->wire == PP_PB_LEN && memchr(f->data, '\0', f->len) != NULL;
}

/* Checks a request's bytes before protobuf-c unpacks them: no string field
 * (every field here is one, or a map entry of two) holds a NUL byte, and a
 * CreateVM has at most CAA_MAX_ANNOTATIONS annotations (field 2). One pass
 * over the bytes, nothing allocated. */
static int check_request(const uint8_t *p, size_t n, const char *what, int create, pp_error_t *err)
{
    static const char *const names[] = {NULL, "id", "annotations", "networkNamespacePath"};
    pp_pb_reader_t r;
    pp_pb_field_t f;
    size_t nann = 0;
    int rc;
    pp_pb_reader_init(&r, p, n);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        if (create && f.number == 2 && f.wire == PP_PB_LEN) {
            if (++nann > CAA_MAX_ANNOTATIONS)
                return pp_error_set_status(err, PP_GRPC_RESOURCE_EXHAUSTED, -E2BIG,
                                           "%s has more than %u annotations", what,
                                           CAA_MAX_ANNOTATIONS);
            pp_pb_reader_t er;
            pp_pb_field_t e;
            pp_pb_reader_init(&er, f.data, f.len);
            while ((rc = pp_pb_next(&er, &e)) > 0)
                if (has_nul(&e))
                    return pp_error_set_status(err, PP_GRPC_INVALID_ARGUMENT, -EINVAL,
                                               "%s: an annotation %s holds a NUL byte", what,
                                               e.number == 1 ? "key" : "value");
            if (rc < 0)
                break;
        } else if (has_nul(&f)) {
            return pp_error_set_status(
                err, PP_GRPC_INVALID_ARGUMENT, -EINVAL, "%s: `%s` holds a NUL byte", what,
                f.number < PP_ARRAY_SIZE(names) && names[f.number] ? names[f.number] : "a field");
        }
    }
    if (rc < 0)
        return pp_error_set_status(err, PP_GRPC_INVALID_ARGUMENT, -EBADMSG, "malformed %s", what);
    return 0;
}

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
    pp_error_t cerr = {0};
    if (check_request(r->payload, r->payload_len, "CreateVMRequest", 1, &cerr) < 0) {
        PP_WARN("caa", "CreateVM: %s", cerr.message);
        pp_ttrpc_call_fail(call, pp_error_grpc_status(&cerr), "%s", cerr.message);
        return;
    }
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
    pp_error_t cerr = {0};
    if (check_request(r->payload, r->payload_len, start ? "StartVMRequest" : "StopVMRequest", 0,
                      &cerr) < 0) {
        pp_ttrpc_call_fail(call, pp_error_grpc_status(&cerr), "%s", cerr.message);
        return NULL;
    }
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
        /* A caller that went (or whose deadline passed) while recovery ran
         * has had its answer: what it asked for is not carried out, or a
         * StartVM would make a VM nobody waits for. */
        if (pp_ttrpc_call_is_cancelled(rev->call)) {
            const pp_ttrpc_request_t *r = pp_ttrpc_call_request(rev->call);
            PP_INFO("caa", "%.*s that waited for recovery: its caller is gone; not carried out",
                    (int)r->method.n, r->method.p);
            d->counters.parked_dropped++;
            pp_ttrpc_call_fail(rev->call, PP_GRPC_CANCELLED, "the caller went during recovery");
        } else {
            dispatch(rev->call, d);
        }
        free(rev);
        rev = next;
    }
}

size_t caa_hypervisor_abandon_parked(caa_daemon_t *d)
{
    size_t n = 0;
    caa_waiting_call_t *w = d->parked;
    d->parked = NULL;
    while (w != NULL) {
        caa_waiting_call_t *next = w->next;
        pp_ttrpc_call_fail(w->call, PP_GRPC_UNAVAILABLE,
                           "cloud-api-adaptor is shutting down during recovery");
        free(w);
        n++;
        w = next;
    }
    return n;
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
