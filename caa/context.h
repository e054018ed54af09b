/* The daemon context: everything one cloud-api-adaptor holds (design.md §3:
 * no mutable globals; one context, passed down). Only data: each field is
 * read and changed by the module that owns it, named beside it. Everything
 * runs on the daemon's one loop thread. */
#ifndef CAA_CONTEXT_H
#define CAA_CONTEXT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "heap.h"
#include "metrics.h"
#include "providers/provider.h"
#include "startq.h"
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

/* What the daemon did about mistakes and hostile requests, for logs and
 * metrics: counts since start, only ever incremented. */
typedef struct caa_counters_s {
    uint64_t records_set_aside;  /* unreadable sandbox records renamed and kept */
    uint64_t unstarted_expired;  /* sandboxes created and never started, expired */
    uint64_t parked_dropped;     /* calls parked during recovery whose caller went */
    uint64_t netns_refused;      /* pod namespaces that were the daemon's or the host's */
    uint64_t fd_refused;         /* pods refused at the descriptor ceiling */
    uint64_t shutdown_abandoned; /* calls failed UNAVAILABLE at the end of the grace */
} caa_counters_t;

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
    caa_startq_t startq;                 /* startq.h: calls to the provider, bounded */
    caa_metrics_t metrics;               /* metrics.h: the registry, passed down */
    struct pp_httpd_s *probe;            /* probe.h: /startup, /healthz, /metrics */
    caa_waiting_call_t *parked;          /* hypervisor calls that came during recovery */
    caa_vminfo_waiter_t *vminfo_waiters; /* PodVMInfo calls waiting for a VM (vminfo.h) */
    int recovering;
    int stopping;
    int exit_code;
    caa_counters_t counters;
    /* bounds.h */
    pp_ttrpc_budget_t budget; /* what the hypervisor and agent sockets' peers hold */
    size_t fd_ceiling;        /* RLIMIT_NOFILE after start-up */
    uv_timer_t expiry;        /* sandboxes created and never started */
    int64_t expiry_due;       /* wall clock (s) it is set for; 0: unset */
    unsigned expiry_inited : 1;
    /* daemon.c: the bound on SIGTERM's wait */
    uv_timer_t grace;
    unsigned grace_inited : 1;
    unsigned abandoned : 1;       /* the grace passed: exit at once, VMs kept */
    unsigned signals_started : 1; /* sigterm, sigint: open until shutdown or fini */
};

#endif
