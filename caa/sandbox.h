/* The sandbox object: what cloud-api-adaptor knows of one pod, its paths,
 * and the daemon's list of them. The state machine that moves a sandbox
 * from created to gone is lifecycle.h; its record on disk is state.h.
 *
 * A sandbox goes created (CreateVM) -> starting (StartVM: instance, then
 * forwarder dial) -> running -> stopping -> gone, or to failed. Loop thread
 * only. */
#ifndef CAA_SANDBOX_H
#define CAA_SANDBOX_H

#include <stddef.h>

#include "context.h"
#include "providers/provider.h"
#include "proxy.h"
#include "net/net.h"
#include "ttrpc/ttrpc.h"
#include "util/error.h"

enum caa_sandbox_state {
    CAA_SB_CREATED,
    CAA_SB_STARTING,
    CAA_SB_RUNNING,
    CAA_SB_STOPPING,
    CAA_SB_FAILED,
};

struct caa_sandbox_s {
    caa_sandbox_t *prev, *next;
    caa_daemon_t *d;
    enum caa_sandbox_state state;
    char id[PP_SANDBOX_ID_MAX + 1];
    char pod_name[254];
    char pod_namespace[254];
    char netns_path[256];
    char instance_name[64];
    char dir[256];
    char socket_path[108];
    char machine_type[128];
    char image[256];
    unsigned vcpus, memory_mib, gpus;
    int64_t created_at;         /* wall clock (s) of CreateVM: for UNSTARTED_SANDBOX_TTL */
    char initdata_digest[129];  /* hex, or empty */
    char *initdata_b64;         /* gzip+base64 initdata, or NULL */
    struct pp_podnet_s *podnet; /* the pod network, or NULL (malloc'd) */
    int pod_index;              /* -1 when none is held */
    char *user_data;            /* #cloud-config, NUL-terminated; holds a key */
    size_t user_data_len;
    pp_instance_t instance;
    caa_proxy_t *proxy;
    pp_ttrpc_call_t *start_call;    /* StartVM waiting for the outcome */
    caa_waiting_call_t *stop_calls; /* StopVMs waiting for the teardown */
    pp_error_t start_error;         /* why the start failed */
    uint64_t start_ms, stage_ms;    /* StartVM's clock, loop time (metrics.h) */
    uint64_t start_hr, waited_ns;   /* StartVM's arrival, its waits for the provider (startq.h) */
    struct caa_startq_op_s *startq_op; /* its provider call waiting its turn (startq.h) */
    unsigned has_instance : 1;         /* the provider holds an instance */
    unsigned tunnel_up : 1;            /* the node end of the tunnel may exist */
    unsigned net_busy : 1;             /* a tunnel setup or teardown is in flight */
    unsigned provider_busy : 1;        /* a create or delete is in flight */
    unsigned stop_requested : 1;
};

/* A new sandbox `id` of `d`, zeroed but for the id, not linked; -EINVAL when
 * the id does not fit. */
int caa_sandbox_new(caa_daemon_t *d, const char *id, caa_sandbox_t **out, pp_error_t *err);
/* Sets sb->dir and sb->socket_path from PODS_DIR and sb->id. */
int caa_sandbox_paths(caa_daemon_t *d, caa_sandbox_t *sb, pp_error_t *err);
/* Frees a sandbox that is not linked (or no longer). */
void caa_sandbox_free(caa_sandbox_t *sb);
/* Wipes and frees sb->user_data (it holds the pod VM's private key). */
void caa_sandbox_forget_user_data(caa_sandbox_t *sb);

/* The daemon's list. */
caa_sandbox_t *caa_sandbox_find(caa_daemon_t *d, const char *id);
/* Adds a sandbox (new, or loaded from its record). */
void caa_sandbox_link(caa_daemon_t *d, caa_sandbox_t *sb);
/* Takes a linked sandbox off the list and frees it. */
void caa_sandbox_unlink_free(caa_sandbox_t *sb);

/* Removes a pod directory and everything in it (no symlink is followed). */
void caa_remove_dir(const char *dir);
/* Derives `podvm-<pod>-<first 8 of sid>` within 63 characters. */
void caa_instance_name(const char *pod, const char *sid, char out[64]);

#endif
