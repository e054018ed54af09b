/* The daemon context: everything one cloud-api-adaptor holds (design.md §3:
 * no mutable globals; one context, passed down). Only data: each field is
 * read and changed by the module that owns it, named beside it. Everything
 * runs on the daemon's one loop thread. */
#ifndef CAA_CONTEXT_H
#define CAA_CONTEXT_H

#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "heap.h"
#include "metrics.h"
#include "providers/provider.h"
#include "tlsmod.h"
#include "net/net.h"
#include "ttrpc/ttrpc.h"

#define CAA_VERSION "0.1.0"

typedef struct caa_daemon_s caa_daemon_t;
typedef struct caa_sandbox_s caa_sandbox_t;
typedef struct caa_vminfo_waiter_s caa_vminfo_waiter_t;

/* A hypervisor call that waits: during recovery, or for a teardown. */
typedef struct caa_waiting_call_s {
    struct caa_waiting_call_s *next;
    pp_ttrpc_call_t *call;
} caa_waiting_call_t;

struct caa_daemon_s {
    uv_loop_t *loop;
    caa_config_t cfg;
    pp_provider_t *provider;
    const struct pp_provider_ops *provider_ops; /* NULL: loaded by caa_daemon_start() */
    pp_module_t *provider_module;               /* the provider's module; NULL when built in */
    pp_node_net_t net;                          /* node side of pod networks */
    pp_podindex_t index;                        /* pod indexes, kept under PODS_DIR/.indexes */
    int net_inited;
    int net_ready;            /* indexes open: pod networks can be made */
    caa_tls_t tls;            /* the CA and the forwarder links' TLS (tlsmod.h) */
    pp_ttrpc_server_t *hv;    /* hypervisor service */
    caa_sandbox_t *sandboxes; /* sandbox.h */
    size_t nsandboxes;
    uv_signal_t sigterm, sigint;
    caa_heap_t heap;
    caa_metrics_t metrics;               /* metrics.h: the registry, passed down */
    struct pp_httpd_s *probe;            /* probe.h: /startup, /healthz, /metrics */
    caa_waiting_call_t *parked;          /* hypervisor calls that came during recovery */
    caa_vminfo_waiter_t *vminfo_waiters; /* PodVMInfo calls waiting for a VM (vminfo.h) */
    int recovering;
    int stopping;
    int exit_code;
};

#endif
