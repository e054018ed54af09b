/* pp-shim: does what the kata shim's remote hypervisor does, from the
 * command line: Version, CreateVM with annotations, StartVM, agent calls on
 * the returned socket, StopVM; and `lifecycle`, all of it in order with the
 * time each step took. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "health.pb-c.h"
#include "hypervisor.pb-c.h"
#include "ttrpc/sync_client.h"

#define HV      "hypervisor.Hypervisor"
#define MAX_ANN 32

typedef struct opts_s {
    const char *socket;
    const char *netns;
    const char *pod;
    const char *ns;
    uint64_t timeout_ms;
    const char *keys[MAX_ANN];
    const char *values[MAX_ANN];
    size_t nann;
    int quiet;
} opts_t;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Connects, makes one call, closes: the shim opens a connection per call.
 * Says on stderr why a call failed. */
static int call(const char *sock, const char *svc, const char *method, const void *payload,
                size_t len, uint64_t timeout_ms, pp_ttrpc_sync_result_t *out)
{
    int r = pp_ttrpc_sync_call(sock, svc, method, payload, len, timeout_ms, out);
    if (r < 0)
        fprintf(stderr, "pp-shim: %s on `%s`: %s\n", method, sock, out->message);
    else if (r != 0)
        fprintf(stderr, "pp-shim: %s: %s: %s\n", method, pp_grpc_code_name(r), out->message);
    return r;
}

static int do_version(const opts_t *o)
{
    Hypervisor__VersionRequest req = HYPERVISOR__VERSION_REQUEST__INIT;
    req.version = "0.0.1";
    uint8_t buf[64];
    size_t n = hypervisor__version_request__pack(&req, buf);
    pp_ttrpc_sync_result_t s;
    int r = call(o->socket, HV, "Version", buf, n, o->timeout_ms, &s);
    if (r == 0) {
        Hypervisor__VersionResponse *resp =
            hypervisor__version_response__unpack(NULL, s.len, s.payload);
        if (resp == NULL)
            r = -EBADMSG;
        else {
            if (!o->quiet)
                printf("version %s\n", resp->version);
            hypervisor__version_response__free_unpacked(resp, NULL);
        }
    }
    pp_ttrpc_sync_result_free(&s);
    return r;
}

static int do_create(const opts_t *o, const char *id, char *agent_socket, size_t size)
{
    Hypervisor__CreateVMRequest req = HYPERVISOR__CREATE_VMREQUEST__INIT;
    Hypervisor__CreateVMRequest__AnnotationsEntry entries[MAX_ANN + 2];
    Hypervisor__CreateVMRequest__AnnotationsEntry *ptrs[MAX_ANN + 2];
    size_t n = 0;
    if (o->pod != NULL) {
        hypervisor__create_vmrequest__annotations_entry__init(&entries[n]);
        entries[n].key = "io.kubernetes.cri.sandbox-name";
        entries[n].value = (char *)o->pod;
        n++;
    }
    if (o->ns != NULL) {
        hypervisor__create_vmrequest__annotations_entry__init(&entries[n]);
        entries[n].key = "io.kubernetes.cri.sandbox-namespace";
        entries[n].value = (char *)o->ns;
        n++;
    }
    for (size_t i = 0; i < o->nann; i++, n++) {
        hypervisor__create_vmrequest__annotations_entry__init(&entries[n]);
        entries[n].key = (char *)o->keys[i];
        entries[n].value = (char *)o->values[i];
    }
    for (size_t i = 0; i < n; i++)
        ptrs[i] = &entries[i];
    req.id = (char *)id;
    req.networknamespacepath = (char *)(o->netns ? o->netns : "");
    req.n_annotations = n;
    req.annotations = ptrs;
    size_t len = hypervisor__create_vmrequest__get_packed_size(&req);
    uint8_t *buf = malloc(len + 1);
    if (buf == NULL)
        return -ENOMEM;
    hypervisor__create_vmrequest__pack(&req, buf);
    pp_ttrpc_sync_result_t s;
    int r = call(o->socket, HV, "CreateVM", buf, len, o->timeout_ms, &s);
    free(buf);
    if (r == 0) {
        Hypervisor__CreateVMResponse *resp =
            hypervisor__create_vmresponse__unpack(NULL, s.len, s.payload);
        if (resp == NULL)
            r = -EBADMSG;
        else {
            snprintf(agent_socket, size, "%s", resp->agentsocketpath);
            hypervisor__create_vmresponse__free_unpacked(resp, NULL);
        }
    }
    pp_ttrpc_sync_result_free(&s);
    return r;
}

static int do_id_call(const opts_t *o, const char *method, const char *id)
{
    /* StartVMRequest and StopVMRequest are both {id = 1}. */
    Hypervisor__StartVMRequest req = HYPERVISOR__START_VMREQUEST__INIT;
    req.id = (char *)id;
    size_t len = hypervisor__start_vmrequest__get_packed_size(&req);
    uint8_t *buf = malloc(len + 1);
    if (buf == NULL)
        return -ENOMEM;
    hypervisor__start_vmrequest__pack(&req, buf);
    pp_ttrpc_sync_result_t s;
    int r = call(o->socket, HV, method, buf, len, o->timeout_ms, &s);
    free(buf);
    pp_ttrpc_sync_result_free(&s);
    return r;
}

static int do_health(const char *sock, uint64_t timeout_ms, int quiet)
{
    Grpc__CheckRequest req = GRPC__CHECK_REQUEST__INIT;
    uint8_t buf[16];
    size_t n = grpc__check_request__pack(&req, buf);
    pp_ttrpc_sync_result_t s;
    int r = call(sock, "grpc.Health", "Check", buf, n, timeout_ms, &s);
    if (r == 0) {
        Grpc__HealthCheckResponse *resp =
            grpc__health_check_response__unpack(NULL, s.len, s.payload);
        if (resp == NULL)
            r = -EBADMSG;
        else {
            if (!quiet)
                printf("health %s\n",
                       resp->status == GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                           ? "SERVING"
                           : "NOT_SERVING");
            if (resp->status != GRPC__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING)
                r = -EIO;
            grpc__health_check_response__free_unpacked(resp, NULL);
        }
    }
    pp_ttrpc_sync_result_free(&s);
    return r;
}

static int step(const char *name, double t0, int r)
{
    printf("%-34s %s %8.1f ms\n", name, r == 0 ? "ok    " : "FAILED", now_ms() - t0);
    fflush(stdout);
    return r;
}

static int do_lifecycle(opts_t *o, const char *id)
{
    char sock[256];
    double total = now_ms(), t;
    int r;
    if (o->pod == NULL)
        o->pod = "demo";
    if (o->ns == NULL)
        o->ns = "default";
    o->quiet = 1;
    t = now_ms();
    if ((r = step("Version", t, do_version(o))) != 0)
        return r;
    t = now_ms();
    if ((r = step("CreateVM", t, do_create(o, id, sock, sizeof(sock)))) != 0)
        return r;
    printf("  agent socket: %s\n", sock);
    t = now_ms();
    r = step("StartVM (pod VM boots, agent ready)", t, do_id_call(o, "StartVM", id));
    if (r == 0) {
        t = now_ms();
        r = step("agent call grpc.Health/Check", t, do_health(sock, 10000, 1));
    }
    if (r == 0) {
        t = now_ms();
        pp_ttrpc_sync_result_t s;
        r = step("agent call grpc.AgentService/CreateSandbox", t,
                 call(sock, "grpc.AgentService", "CreateSandbox",
                      "\x12\x07"
                      "8.8.8.8",
                      9, 10000, &s));
        pp_ttrpc_sync_result_free(&s);
    }
    t = now_ms();
    int r2 = step("StopVM", t, do_id_call(o, "StopVM", id));
    printf("%-34s %s %8.1f ms\n", "lifecycle", r == 0 && r2 == 0 ? "ok    " : "FAILED",
           now_ms() - total);
    return r != 0 ? r : r2;
}

static void usage(void)
{
    fprintf(stderr, "usage: pp-shim [-socket PATH] [-timeout SECONDS] COMMAND\n"
                    "  version\n"
                    "  create ID [-pod NAME] [-namespace NS] [-netns PATH] [-a KEY=VALUE]...\n"
                    "  start ID | stop ID\n"
                    "  health AGENT_SOCKET\n"
                    "  lifecycle ID [-pod NAME] [-namespace NS] [-netns PATH] [-a KEY=VALUE]...\n"
                    "Exit status: 0, or the gRPC status code of the failed call (or 1).\n");
}

int main(int argc, char **argv)
{
    opts_t o = {.socket = "/run/peerpod/hypervisor.sock", .timeout_ms = 600000};
    const char *pos[3] = {0};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] == '-' && v == NULL) {
            usage();
            return 1;
        }
        if (strcmp(a, "-socket") == 0)
            o.socket = argv[++i];
        else if (strcmp(a, "-timeout") == 0)
            o.timeout_ms = strtoull(argv[++i], NULL, 10) * 1000;
        else if (strcmp(a, "-pod") == 0)
            o.pod = argv[++i];
        else if (strcmp(a, "-namespace") == 0)
            o.ns = argv[++i];
        else if (strcmp(a, "-netns") == 0)
            o.netns = argv[++i];
        else if (strcmp(a, "-a") == 0) {
            char *kv = argv[++i];
            char *eq = strchr(kv, '=');
            if (eq == NULL || o.nann == MAX_ANN) {
                usage();
                return 1;
            }
            *eq = '\0';
            o.keys[o.nann] = kv;
            o.values[o.nann++] = eq + 1;
        } else if (a[0] == '-' || npos == 3) {
            usage();
            return 1;
        } else
            pos[npos++] = a;
    }
    if (npos == 0) {
        usage();
        return 1;
    }
    int r;
    const char *cmd = pos[0], *arg = pos[1];
    char sock[256];
    if (strcmp(cmd, "version") == 0)
        r = do_version(&o);
    else if (arg == NULL) {
        usage();
        return 1;
    } else if (strcmp(cmd, "create") == 0) {
        r = do_create(&o, arg, sock, sizeof(sock));
        if (r == 0)
            printf("%s\n", sock);
    } else if (strcmp(cmd, "start") == 0)
        r = do_id_call(&o, "StartVM", arg);
    else if (strcmp(cmd, "stop") == 0)
        r = do_id_call(&o, "StopVM", arg);
    else if (strcmp(cmd, "health") == 0)
        r = do_health(arg, o.timeout_ms, 0);
    else if (strcmp(cmd, "lifecycle") == 0)
        r = do_lifecycle(&o, arg);
    else {
        usage();
        return 1;
    }
    return r == 0 ? 0 : (r > 0 ? r : 1);
}
