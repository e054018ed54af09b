/* The PodVMInfo service (vminfo.h). */
#include "vminfo.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "podvminfo.pb-c.h"
#include "sandbox.h"
#include "util/grpc_codes.h"
#include "util/log.h"

#define SERVICE "podvminfo.PodVMInfo"

/* A GetInfo call waiting for its pod's VM. */
struct caa_vminfo_waiter_s {
    struct caa_vminfo_waiter_s *next;
    caa_daemon_t *d;
    pp_ttrpc_call_t *call;
    char *pod_namespace;
    char *pod_name;
};

static void reply_id(pp_ttrpc_call_t *call, const char *id)
{
    Podvminfo__GetInfoResponse resp = PODVMINFO__GET_INFO_RESPONSE__INIT;
    resp.vmid = (char *)id;
    uint8_t buf[256];
    size_t n = podvminfo__get_info_response__get_packed_size(&resp);
    if (n > sizeof(buf)) {
        pp_ttrpc_call_fail(call, PP_GRPC_INTERNAL, "VM ID too long");
        return;
    }
    pp_ttrpc_call_reply(call, buf, podvminfo__get_info_response__pack(&resp, buf));
}

/* The instance id of the pod's VM, or NULL when it has none (yet). */
static const char *find(caa_daemon_t *d, const char *ns, const char *name)
{
    for (caa_sandbox_t *sb = d->sandboxes; sb != NULL; sb = sb->next)
        if (sb->has_instance && sb->instance.id[0] != '\0' && strcmp(sb->pod_namespace, ns) == 0 &&
            strcmp(sb->pod_name, name) == 0)
            return sb->instance.id;
    return NULL;
}

static void waiter_free(caa_vminfo_waiter_t *w)
{
    free(w->pod_namespace);
    free(w->pod_name);
    free(w);
}

static void unlink_waiter(caa_vminfo_waiter_t *w)
{
    for (caa_vminfo_waiter_t **p = &w->d->vminfo_waiters; *p != NULL; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            return;
        }
    }
}

/* The deadline passed or the caller went away. */
static void cancelled(pp_ttrpc_call_t *call, void *data)
{
    caa_vminfo_waiter_t *w = data;
    unlink_waiter(w);
    pp_ttrpc_call_fail(call, PP_GRPC_DEADLINE_EXCEEDED, "getting VM ID for %s:%s: no VM yet",
                       w->pod_namespace, w->pod_name);
    waiter_free(w);
}

static void get_info(pp_ttrpc_call_t *call, void *data)
{
    caa_daemon_t *d = data;
    const pp_ttrpc_request_t *r = pp_ttrpc_call_request(call);
    Podvminfo__GetInfoRequest *req =
        podvminfo__get_info_request__unpack(NULL, r->payload_len, r->payload);
    if (req == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT, "malformed GetInfoRequest");
        return;
    }
    const char *id = find(d, req->podnamespace, req->podname);
    if (id != NULL) {
        reply_id(call, id);
    } else if (!req->wait || d->stopping) {
        pp_ttrpc_call_fail(call, PP_GRPC_NOT_FOUND, "VM ID for %.253s:%.253s was not found",
                           req->podnamespace, req->podname);
    } else {
        caa_vminfo_waiter_t *w = calloc(1, sizeof(*w));
        if (w != NULL) {
            w->pod_namespace = strdup(req->podnamespace);
            w->pod_name = strdup(req->podname);
        }
        if (w == NULL || w->pod_namespace == NULL || w->pod_name == NULL) {
            if (w != NULL)
                waiter_free(w);
            pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            w->d = d;
            w->call = call;
            w->next = d->vminfo_waiters;
            d->vminfo_waiters = w;
            pp_ttrpc_call_on_cancel(call, cancelled, w);
        }
    }
    podvminfo__get_info_request__free_unpacked(req, NULL);
}

void caa_vminfo_notify(caa_daemon_t *d, const char *pod_namespace, const char *pod_name,
                       const char *instance_id)
{
    caa_vminfo_waiter_t **p = &d->vminfo_waiters;
    while (*p != NULL) {
        caa_vminfo_waiter_t *w = *p;
        if (strcmp(w->pod_namespace, pod_namespace) != 0 || strcmp(w->pod_name, pod_name) != 0) {
            p = &w->next;
            continue;
        }
        *p = w->next;
        pp_ttrpc_call_on_cancel(w->call, NULL, NULL);
        reply_id(w->call, instance_id);
        waiter_free(w);
    }
}

void caa_vminfo_stop(caa_daemon_t *d)
{
    while (d->vminfo_waiters != NULL) {
        caa_vminfo_waiter_t *w = d->vminfo_waiters;
        d->vminfo_waiters = w->next;
        pp_ttrpc_call_on_cancel(w->call, NULL, NULL);
        pp_ttrpc_call_fail(w->call, PP_GRPC_UNAVAILABLE, "cloud-api-adaptor is stopping");
        waiter_free(w);
    }
}

int caa_vminfo_register(caa_daemon_t *d)
{
    return pp_ttrpc_server_register(d->hv, SERVICE, "GetInfo", get_info, d);
}
