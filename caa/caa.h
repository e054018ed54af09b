/* cloud-api-adaptor internals: the daemon context and the sandbox state
 * machine (design.md §3).
 *
 * A sandbox goes created (CreateVM) -> starting (StartVM: instance, then
 * forwarder dial) -> running -> stopping -> gone, or to failed. Everything
 * runs on the daemon's one loop thread; provider calls and dials are
 * asynchronous, so a slow sandbox never delays another. */
#ifndef CAA_CAA_H
#define CAA_CAA_H

#include <uv.h>

#include "config.h"
#include "provider.h"
#include "proxy.h"
#include "net/net.h"
#include "tls/ca.h"
#include "tls/tls.h"
#include "ttrpc/ttrpc.h"

#define CAA_VERSION "0.1.0"

typedef struct caa_daemon_s caa_daemon_t;
typedef struct caa_sandbox_s caa_sandbox_t;

enum caa_sandbox_state {
    CAA_SB_CREATED,
    CAA_SB_STARTING,
    CAA_SB_RUNNING,
    CAA_SB_STOPPING,
    CAA_SB_FAILED,
};

typedef struct caa_waiting_call_s {
    struct caa_waiting_call_s *next;
    pp_ttrpc_call_t *call;
} caa_waiting_call_t;

struct caa_sandbox_s {
    caa_sandbox_t *prev, *next;
    caa_daemon_t *d;
    enum caa_sandbox_state state;
    char id[128];
    char pod_name[254];
    char pod_namespace[254];
    char netns_path[256];
    char instance_name[64];
    char dir[256];
    char socket_path[108];
    char machine_type[128];
    char image[256];
    unsigned vcpus, memory_mib, gpus;
    char initdata_digest[129];  /* hex, or empty */
    char *initdata_b64;         /* gzip+base64 initdata, or NULL */
    struct pp_podnet_s *podnet; /* the pod network, or NULL (malloc'd) */
    int pod_index;              /* -1 when none is held */
    char *user_data;            /* #cloud-config, NUL-terminated */
    size_t user_data_len;
    pp_instance_t instance;
    caa_proxy_t *proxy;
    pp_ttrpc_call_t *start_call;    /* StartVM waiting for the outcome */
    caa_waiting_call_t *stop_calls; /* StopVMs waiting for the teardown */
    pp_error_t start_error;         /* why the start failed */
    unsigned has_instance : 1;      /* the provider holds an instance */
    unsigned tunnel_up : 1;         /* the node end of the tunnel may exist */
    unsigned net_busy : 1;          /* a tunnel setup or teardown is in flight */
    unsigned provider_busy : 1;     /* a create or delete is in flight */
    unsigned stop_requested : 1;
};

/* heap.c: the heap policy. caa_heap_tune() sets malloc's thresholds (call
 * it first thing); the handles give free pages back once the loop goes quiet
 * after a busy spell. */
typedef struct caa_heap_s {
    uv_check_t check; /* counts loop iterations */
    uv_timer_t timer; /* runs while there is activity */
    unsigned long iterations;
    size_t trims;
    unsigned started : 1;
    unsigned ticked : 1;
} caa_heap_t;

void caa_heap_tune(void);
int caa_heap_start(caa_heap_t *h, uv_loop_t *loop);
/* Closes the handles; run the loop once more before freeing `h`. */
void caa_heap_stop(caa_heap_t *h);

struct caa_daemon_s {
    uv_loop_t *loop;
    caa_config_t cfg;
    pp_provider_t *provider;
    const struct pp_provider_ops *provider_ops; /* NULL: loaded by caa_daemon_start() */
    pp_module_t *provider_module;               /* the provider's module; NULL when built in */
    pp_node_net_t net;                          /* node side of pod networks */
    pp_podindex_t index;                        /* pod indexes, kept under PODS_DIR/.indexes */
    int net_inited;
    int net_ready;         /* indexes open: pod networks can be made */
    pp_ca_t *ca;           /* issues pod VM certificates; NULL with TLS off */
    pp_tls_ctx_t *tls;     /* client side of the forwarder link; NULL = plaintext */
    pp_ttrpc_server_t *hv; /* hypervisor service */
    caa_sandbox_t *sandboxes;
    size_t nsandboxes;
    uv_signal_t sigterm, sigint;
    caa_heap_t heap;
    caa_waiting_call_t *parked; /* hypervisor calls that came during recovery */
    int recovering;
    int stopping;
    int exit_code;
};

/* daemon.c: makes the CA and the TLS context at the first call (the TLS
 * module, and OpenSSL, are mapped then: tls/lazy.h); 0 at once when they
 * exist or TLS is disabled. */
int caa_tls_ready(caa_daemon_t *d, pp_error_t *err);

/* hypervisor.c: registers the service methods on d->hv. Calls that come
 * while d->recovering wait, and are handled by caa_hypervisor_resume(). */
int caa_hypervisor_register(caa_daemon_t *d);
void caa_hypervisor_resume(caa_daemon_t *d);

/* sandbox.c */
caa_sandbox_t *caa_sandbox_find(caa_daemon_t *d, const char *id);
/* CreateVM: validates the request, makes the pod directory and the user
 * data; creates no VM. */
int caa_sandbox_create(caa_daemon_t *d, const char *id, const char *netns_path,
                       const char *const *keys, const char *const *values, size_t nannotations,
                       caa_sandbox_t **out, pp_error_t *err);
/* StartVM and StopVM: take the call and answer it when done. */
void caa_sandbox_start(caa_daemon_t *d, pp_ttrpc_call_t *call, const char *id);
void caa_sandbox_stop(caa_daemon_t *d, pp_ttrpc_call_t *call, const char *id);
/* Removes a pod directory and everything in it (no symlink is followed). */
void caa_remove_dir(const char *dir);
/* Frees a sandbox that is not linked (or no longer). */
void caa_sandbox_free(caa_sandbox_t *sb);
/* Sets sb->dir and sb->socket_path from PODS_DIR and sb->id. */
int caa_sandbox_paths(caa_daemon_t *d, caa_sandbox_t *sb, pp_error_t *err);
/* Adds a sandbox (made by caa_sandbox_create or loaded from its record). */
void caa_sandbox_link(caa_daemon_t *d, caa_sandbox_t *sb);
/* After a restart: serves a running sandbox's agent socket again, and
 * finishes an interrupted start (the instance goes) or stop. */
void caa_sandbox_resume(caa_sandbox_t *sb);
/* Closes a sandbox's agent proxy, leaving its instance alone. */
void caa_sandbox_release(caa_sandbox_t *sb);
/* Releases every sandbox's proxy without touching instances (shutdown). */
void caa_sandboxes_release(caa_daemon_t *d);

/* Derives `podvm-<pod>-<first 8 of sid>` within 63 characters. */
void caa_instance_name(const char *pod, const char *sid, char out[64]);

/* userdata.c: checks the pod's initdata (annotation, else INITDATA) and
 * keeps it gzip+base64 in sb->initdata_b64 (NULL when none). */
int caa_initdata_prepare(caa_daemon_t *d, caa_sandbox_t *sb, const char *annotation,
                         pp_error_t *err);
/* The #cloud-config for a sandbox (apf.json with its TLS material and pod
 * network, auth.json, initdata), into sb->user_data. */
int caa_userdata_build(caa_daemon_t *d, caa_sandbox_t *sb, pp_error_t *err);
/* Wipes and frees sb->user_data (it holds a private key). */
void caa_userdata_forget(caa_sandbox_t *sb);

/* podnet.c: the pod's network (design.md §4 VXLAN). */
/* Takes the pod's index and inspects its namespace into sb->podnet. */
int caa_podnet_prepare(caa_sandbox_t *sb, pp_error_t *err);
/* The node end of the tunnel toward the instance, off the loop; `cb` gets
 * 0 or a negative errno with `err`. */
int caa_podnet_up(caa_sandbox_t *sb, void (*cb)(caa_sandbox_t *, int, const pp_error_t *));
/* Removes the node end; `cb` as above. */
int caa_podnet_down(caa_sandbox_t *sb, void (*cb)(caa_sandbox_t *, int, const pp_error_t *));
/* Gives the pod's index back. */
void caa_podnet_release(caa_sandbox_t *sb);

#endif
