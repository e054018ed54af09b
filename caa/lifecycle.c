/* The sandbox state machine: CreateVM, StartVM, StopVM (lifecycle.h). */
#include "lifecycle.h"
#include "vminfo.h"

#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bounds.h"
#include "podnet.h"
#include "startq.h"
#include "state.h"
#include "userdata.h"
#include "util/cleanup.h"
#include "util/log.h"

#define ANN_PREFIX "io.katacontainers.config.hypervisor."

/* Crash tests name a step at which the daemon dies as if killed. */
static void failpoint(caa_daemon_t *d, const char *name)
{
    if (d->cfg.failpoint[0] != '\0' && strcmp(d->cfg.failpoint, name) == 0) {
        PP_WARN("caa", "failpoint `%s`: dying now", name);
        raise(SIGKILL);
    }
}

/* Records the sandbox; a failure is logged (the caller decides whether it
 * may go on). */
static int save(caa_sandbox_t *sb)
{
    pp_error_t err = {0};
    int r = caa_state_save(sb, &err);
    if (r < 0)
        PP_ERR("caa", "sandbox `%s`: record: %s", sb->id, err.message);
    return r;
}

/* ---- CreateVM ---------------------------------------------------------- */

/* 1 to PP_SANDBOX_ID_MAX of [A-Za-z0-9._-], not starting with `.`: names
 * that start with one are the daemon's own under PODS_DIR (`.ca`,
 * `.indexes`), and a sandbox of that name would be their directory. */
static int valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > PP_SANDBOX_ID_MAX || id[0] == '.')
        return 0;
    for (const char *p = id; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return 0;
    return 1;
}

static int parse_count(const char *v, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || n > max)
        return -EINVAL;
    *out = (unsigned)n;
    return 0;
}

static int copy_field(char *dst, size_t size, const char *v)
{
    if (strlen(v) >= size)
        return -ENAMETOOLONG;
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

/* Reads the annotations into `sb`; the first problem is named in `err`. */
static int read_annotations(caa_sandbox_t *sb, const char *const *keys, const char *const *values,
                            size_t n, const char **initdata, pp_error_t *err)
{
    static const struct {
        const char *key;
        size_t off;
        size_t size;
    } strings[] = {
        {"io.kubernetes.cri.sandbox-name", offsetof(caa_sandbox_t, pod_name),
         sizeof(((caa_sandbox_t *)0)->pod_name)},
        {"io.kubernetes.cri.sandbox-namespace", offsetof(caa_sandbox_t, pod_namespace),
         sizeof(((caa_sandbox_t *)0)->pod_namespace)},
        {ANN_PREFIX "machine_type", offsetof(caa_sandbox_t, machine_type),
         sizeof(((caa_sandbox_t *)0)->machine_type)},
        {ANN_PREFIX "image", offsetof(caa_sandbox_t, image), sizeof(((caa_sandbox_t *)0)->image)},
    };
    static const struct {
        const char *key;
        size_t off;
        unsigned max;
    } counts[] = {
        {ANN_PREFIX "default_vcpus", offsetof(caa_sandbox_t, vcpus), 1024},
        {ANN_PREFIX "default_memory", offsetof(caa_sandbox_t, memory_mib), 16u << 20},
        {ANN_PREFIX "default_gpus", offsetof(caa_sandbox_t, gpus), 64},
    };
    for (size_t i = 0; i < n; i++) {
        const char *k = keys[i], *v = values[i];
        for (size_t s = 0; s < PP_ARRAY_SIZE(strings); s++)
            if (strcmp(k, strings[s].key) == 0 &&
                copy_field((char *)sb + strings[s].off, strings[s].size, v) < 0)
                return pp_error_set(err, -EINVAL, "annotation `%s` is too long", k);
        for (size_t c = 0; c < PP_ARRAY_SIZE(counts); c++)
            if (strcmp(k, counts[c].key) == 0 &&
                parse_count(v, counts[c].max, (unsigned *)((char *)sb + counts[c].off)) < 0)
                return pp_error_set(err, -EINVAL,
                                    "annotation `%s`: `%s` is not a whole number from 0 to %u", k,
                                    v, counts[c].max);
        if (strcmp(k, ANN_PREFIX "cc_init_data") == 0)
            *initdata = v;
    }
    if (sb->pod_name[0] == '\0')
        return pp_error_set(err, -EINVAL, "annotation `io.kubernetes.cri.sandbox-name` is missing");
    if (sb->pod_namespace[0] == '\0')
        return pp_error_set(err, -EINVAL,
                            "annotation `io.kubernetes.cri.sandbox-namespace` is missing");
    return 0;
}

int caa_sandbox_create(caa_daemon_t *d, const char *id, const char *netns_path,
                       const char *const *keys, const char *const *values, size_t nannotations,
                       caa_sandbox_t **out, pp_error_t *err)
{
    if (!valid_id(id))
        return pp_error_set_status(err, PP_GRPC_INVALID_ARGUMENT, -EINVAL,
                                   "sandbox id `%.*s` is not 1 to %d of [A-Za-z0-9._-] not "
                                   "starting with `.`",
                                   PP_SANDBOX_ID_MAX + 1, id, PP_SANDBOX_ID_MAX);
    caa_sandbox_t *old = caa_sandbox_find(d, id);
    if (old != NULL) {
        if (old->state != CAA_SB_CREATED)
            return pp_error_set_status(err, PP_GRPC_ALREADY_EXISTS, -EEXIST,
                                       "sandbox `%s` exists and is %s", id,
                                       caa_state_name(old->state));
        /* A repeated CreateVM before StartVM prepares again from scratch. */
        caa_remove_dir(old->dir);
        caa_sandbox_unlink_free(old);
    }
    int r = caa_bounds_admit(d, err);
    if (r < 0)
        return r;
    caa_sandbox_t *sb;
    if ((r = caa_sandbox_new(d, id, &sb, err)) < 0)
        return r;
    sb->created_at = (int64_t)time(NULL);
    const char *initdata = NULL;
    if ((r = read_annotations(sb, keys, values, nannotations, &initdata, err)) < 0)
        goto fail;
    if (copy_field(sb->netns_path, sizeof(sb->netns_path), netns_path) < 0) {
        r = pp_error_set(err, -EINVAL, "network namespace path is too long");
        goto fail;
    }
    /* Refused at once when it is the daemon's or the host's; checked again
     * at StartVM, when the CNI has surely made it, and before the tunnel. */
    if (sb->netns_path[0] != '\0') {
        pp_error_t nerr = {0};
        if ((r = caa_podnet_check_netns(sb->netns_path, &nerr)) == -EPERM) {
            d->counters.netns_refused++;
            *err = nerr;
            goto fail;
        }
        r = 0;
    }
    if ((r = caa_sandbox_paths(d, sb, err)) < 0)
        goto fail;
    caa_instance_name(sb->pod_name, id, sb->instance_name);
    if ((r = caa_initdata_prepare(d, sb, initdata, err)) < 0)
        goto fail;
    /* The user data is built at StartVM, once the pod network is known;
     * what can fail early fails now. */
    if ((r = caa_userdata_check(d, sb, err)) < 0)
        goto fail;
    /* The directory must be new: one that exists belongs to no sandbox
     * this daemon knows (recovery removed those without a record), so it
     * is not ours to fill, nor to remove on the way out. */
    if (mkdir(sb->dir, 0700) < 0) {
        if (errno == EEXIST)
            r = pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, -EEXIST,
                                    "pod directory `%s` exists and belongs to no sandbox; it is "
                                    "left as it is",
                                    sb->dir);
        else
            r = pp_error_set(err, -errno, "create pod directory `%s`: %s", sb->dir,
                             strerror(errno));
        goto fail;
    }
    sb->state = CAA_SB_CREATED;
    if ((r = caa_state_save_initdata(sb, err)) < 0 || (r = caa_state_save(sb, err)) < 0)
        goto fail_dir;
    caa_sandbox_link(d, sb);
    caa_bounds_watch_created(d, sb);
    failpoint(d, "create:recorded");
    PP_INFO("caa", "sandbox `%s`: created for pod `%s/%s`, instance `%s`", id, sb->pod_namespace,
            sb->pod_name, sb->instance_name);
    *out = sb;
    return 0;

fail_dir:
    caa_remove_dir(sb->dir);
fail:
    caa_sandbox_free(sb);
    return r;
}

/* ---- StartVM / StopVM -------------------------------------------------- */

static void teardown(caa_sandbox_t *sb);
static int forwarder_addr(caa_sandbox_t *sb, struct sockaddr_storage *ss);

/* What secures the link to the forwarder: NULL with TLS disabled. */
static const caa_tls_t *forwarder_tls(caa_sandbox_t *sb)
{
    return sb->d->tls.client != NULL ? &sb->d->tls : NULL;
}

static void answer_stops(caa_sandbox_t *sb, const pp_error_t *err)
{
    caa_waiting_call_t *w = sb->stop_calls;
    sb->stop_calls = NULL;
    while (w != NULL) {
        caa_waiting_call_t *next = w->next;
        if (err == NULL)
            pp_ttrpc_call_reply(w->call, NULL, 0);
        else
            pp_ttrpc_call_fail(w->call, pp_error_grpc_status(err), "%s", err->message);
        free(w);
        w = next;
    }
}

static void answer_start(caa_sandbox_t *sb, const pp_error_t *err)
{
    pp_ttrpc_call_t *call = sb->start_call;
    sb->start_call = NULL;
    if (call == NULL)
        return;
    if (err == NULL)
        pp_ttrpc_call_reply(call, NULL, 0);
    else
        pp_ttrpc_call_fail(call, pp_error_grpc_status(err), "%s", err->message);
}

/* The sandbox is gone: answer whoever waits and forget it. */
static void finish_gone(caa_sandbox_t *sb)
{
    PP_INFO("caa", "sandbox `%s`: stopped", sb->id);
    caa_remove_dir(sb->dir);
    if (sb->start_call != NULL) {
        pp_error_t err;
        if (sb->start_error.code != 0)
            err = sb->start_error;
        else
            pp_error_set_status(&err, PP_GRPC_CANCELLED, -ECANCELED,
                                "sandbox `%s` was stopped "
                                "while starting",
                                sb->id);
        answer_start(sb, &err);
    }
    answer_stops(sb, NULL);
    caa_sandbox_unlink_free(sb);
    /* A node's pods come and go; give the freed heap back to the system. */
    malloc_trim(0);
}

static void deleted_cb(int status, const pp_error_t *err, void *data)
{
    caa_sandbox_t *sb = data;
    sb->provider_busy = 0;
    if (status < 0) {
        /* The instance may still exist: keep the record so that a retried
         * StopVM deletes it, and report the failure. */
        PP_ERR("caa", "sandbox `%s`: delete instance `%s`: %s", sb->id, sb->instance.id,
               err ? err->message : uv_strerror(status));
        pp_error_t e;
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, status, "delete instance `%s`: %s",
                            sb->instance.id, err ? err->message : uv_strerror(status));
        sb->state = CAA_SB_FAILED;
        sb->stop_requested = 0;
        save(sb);
        answer_start(sb, sb->start_error.code ? &sb->start_error : &e);
        answer_stops(sb, &e);
        return;
    }
    sb->has_instance = 0;
    save(sb);
    failpoint(sb->d, "stop:instance-deleted");
    teardown(sb);
}

static void proxy_closed_cb(caa_proxy_t *p, void *data)
{
    (void)p;
    (void)data;
}

static void tunnel_down_cb(caa_sandbox_t *sb, int status, const pp_error_t *err)
{
    if (status < 0)
        PP_WARN("caa", "sandbox `%s`: remove tunnel: %s", sb->id,
                err ? err->message : uv_strerror(status));
    /* The library removes what it can and reports the rest; a pod
     * namespace that is gone took the tunnel with it. */
    sb->tunnel_up = 0;
    failpoint(sb->d, "stop:tunnel-down");
    save(sb);
    teardown(sb);
}

/* Undoes what exists, one step at a time: the proxy, the tunnel, the
 * instance, the pod index; then finishes. Each asynchronous step calls
 * back here. */
static void teardown(caa_sandbox_t *sb)
{
    if (sb->proxy != NULL) {
        caa_proxy_t *p = sb->proxy;
        sb->proxy = NULL;
        caa_proxy_close(p, proxy_closed_cb, NULL);
    }
    /* A create still waiting for its turn is simply taken back. */
    if (sb->provider_busy && caa_startq_cancel(sb->d, sb))
        sb->provider_busy = 0;
    if (sb->provider_busy || sb->net_busy)
        return; /* the operation in flight calls back here */
    if (sb->tunnel_up) {
        int r = caa_podnet_down(sb, tunnel_down_cb);
        if (r < 0) {
            pp_error_t e;
            pp_error_set(&e, r, "%s", uv_strerror(r));
            tunnel_down_cb(sb, r, &e);
        }
        return;
    }
    if (!sb->has_instance) {
        caa_podnet_release(sb);
        if (sb->stop_requested)
            finish_gone(sb);
        else {
            sb->state = CAA_SB_FAILED;
            save(sb);
            answer_start(sb, &sb->start_error);
        }
        return;
    }
    sb->provider_busy = 1;
    int r = caa_startq_delete(sb->d, sb, deleted_cb);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "delete instance: %s", uv_strerror(r));
        deleted_cb(r, &e, sb);
    }
}

static void start_failed(caa_sandbox_t *sb, const pp_error_t *err)
{
    if (sb->start_error.code == 0)
        sb->start_error = *err;
    PP_WARN("caa", "sandbox `%s`: start failed: %s", sb->id, err->message);
    sb->state = CAA_SB_STOPPING;
    teardown(sb);
}

/* The agent socket's limits: its connections, the budget it shares with
 * the other sockets, the socket's mode (bounds.h). */
static void proxy_limits(caa_sandbox_t *sb)
{
    pp_ttrpc_server_opts_t o;
    caa_bounds_server_opts(sb->d, 0, sb->id, &o);
    caa_proxy_set_limits(sb->proxy, &o);
}

void caa_sandbox_resume(caa_sandbox_t *sb)
{
    switch (sb->state) {
    case CAA_SB_STARTING: {
        /* The StartVM that began it died with the previous process. */
        pp_error_t e;
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -ECANCELED,
                            "cloud-api-adaptor restarted while `%s` was starting", sb->id);
        start_failed(sb, &e);
        break;
    }
    case CAA_SB_STOPPING:
        sb->stop_requested = 1;
        teardown(sb);
        break;
    case CAA_SB_RUNNING: {
        struct sockaddr_storage ss;
        pp_error_t e = {0};
        int r = forwarder_addr(sb, &ss);
        if (r == 0)
            r = caa_tls_ready(&sb->d->tls, &sb->d->cfg, &e);
        if (r == 0)
            r = caa_proxy_new(sb->d->loop, sb->socket_path, (struct sockaddr *)&ss,
                              forwarder_tls(sb), sb->instance_name, sb->d->cfg.forwarder_silence_ms,
                              &sb->proxy);
        if (r == 0) {
            proxy_limits(sb);
            caa_proxy_count(sb->proxy, sb->d->metrics.proxy_calls, sb->d->metrics.proxy_failures);
            r = caa_proxy_adopt(sb->proxy, &e);
        }
        if (r < 0) {
            PP_ERR("caa", "sandbox `%s`: serve agent socket again: %s", sb->id,
                   e.code ? e.message : uv_strerror(r));
            sb->state = CAA_SB_FAILED;
            save(sb);
        }
        break;
    }
    default:
        break;
    }
}

static void proxy_ready_cb(caa_proxy_t *p, int status, const pp_error_t *err, void *data)
{
    caa_sandbox_t *sb = data;
    if (status == -ECANCELED && (sb->state != CAA_SB_STARTING || sb->d->stopping))
        return; /* closed by teardown, which carries on, or by shutdown */
    if (status < 0) {
        pp_error_t e;
        pp_error_set_status(&e,
                            status == -ETIMEDOUT ? PP_GRPC_DEADLINE_EXCEEDED : PP_GRPC_UNAVAILABLE,
                            status, "pod VM `%s` (%s): %s", sb->instance_name, sb->instance.ip,
                            err ? err->message : uv_strerror(status));
        start_failed(sb, &e);
        return;
    }
    failpoint(sb->d, "start:proxy-ready");
    uint64_t now = uv_now(sb->d->loop);
    caa_metrics_stage_end(sb, CAA_STAGE_VM_UP, caa_proxy_connected_ms(p));
    caa_metrics_stage_end(sb, CAA_STAGE_AGENT_READY, now);
    caa_metrics_stage_end(sb, CAA_STAGE_TOTAL, now);
    sb->state = CAA_SB_RUNNING;
    save(sb);
    caa_sandbox_forget_user_data(sb); /* delivered; it holds the VM's private key */
    failpoint(sb->d, "start:running-recorded");
    double total_ms, waited_ms, own_ms;
    caa_startq_clock_stop(sb, &total_ms, &waited_ms, &own_ms);
    PP_INFO("caa",
            "sandbox `%s`: running, instance `%s` at %s, agent on `%s` (StartVM %.3f ms, "
            "%.3f ms of it waiting for the provider, %.3f ms the daemon's own)",
            sb->id, sb->instance.id, sb->instance.ip, sb->socket_path, total_ms, waited_ms, own_ms);
    answer_start(sb, NULL);
}

static uint64_t start_deadline(caa_sandbox_t *sb)
{
    uint64_t deadline = uv_now(sb->d->loop) + sb->d->cfg.proxy_timeout_ms;
    uint64_t caller = sb->start_call ? pp_ttrpc_call_deadline(sb->start_call) : 0;
    return caller != 0 && caller < deadline ? caller : deadline;
}

static int forwarder_addr(caa_sandbox_t *sb, struct sockaddr_storage *ss)
{
    int port = sb->d->cfg.forwarder_port;
    if (uv_ip4_addr(sb->instance.ip, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    return uv_ip6_addr(sb->instance.ip, port, (struct sockaddr_in6 *)ss);
}

static void start_proxy(caa_sandbox_t *sb);
static void tunnel_up_cb(caa_sandbox_t *sb, int status, const pp_error_t *err);

static void created_cb(int status, const pp_instance_t *inst, const pp_error_t *err, void *data)
{
    caa_sandbox_t *sb = data;
    sb->provider_busy = 0;
    if (status == 0) {
        sb->instance = *inst;
        sb->has_instance = 1;
        failpoint(sb->d, "start:instance-created");
        /* The instance exists now: its id must be on disk before anything
         * else happens, so that a crash from here on finds it. */
        save(sb);
        failpoint(sb->d, "start:instance-recorded");
        caa_vminfo_notify(sb->d, sb->pod_namespace, sb->pod_name, sb->instance.id);
    }
    if (sb->stop_requested || sb->state != CAA_SB_STARTING) {
        teardown(sb);
        return;
    }
    pp_error_t e;
    if (status < 0) {
        pp_error_set_status(&e, pp_error_grpc_status(err), status, "create instance `%s`: %s",
                            sb->instance_name, err ? err->message : uv_strerror(status));
        start_failed(sb, &e);
        return;
    }
    PP_INFO("caa", "sandbox `%s`: instance `%s` created at %s", sb->id, inst->id, inst->ip);
    caa_metrics_stage_end(sb, CAA_STAGE_CREATE_INSTANCE, uv_now(sb->d->loop));
    if (sb->podnet != NULL) {
        /* Recorded before it exists, so a crash from here on removes it. */
        sb->tunnel_up = 1;
        save(sb);
        failpoint(sb->d, "start:tunnel-recorded");
        int r = caa_podnet_up(sb, tunnel_up_cb);
        if (r < 0) {
            pp_error_set(&e, r, "tunnel to `%s`: %s", inst->ip, uv_strerror(r));
            start_failed(sb, &e);
        }
        return;
    }
    start_proxy(sb);
}

static void start_proxy(caa_sandbox_t *sb)
{
    pp_error_t e = {0};
    struct sockaddr_storage ss;
    int r = forwarder_addr(sb, &ss);
    if (r == 0 && caa_tls_ready(&sb->d->tls, &sb->d->cfg, &e) < 0) {
        start_failed(sb, &e);
        return;
    }
    if (r == 0)
        r = caa_proxy_new(sb->d->loop, sb->socket_path, (struct sockaddr *)&ss, forwarder_tls(sb),
                          sb->instance_name, sb->d->cfg.forwarder_silence_ms, &sb->proxy);
    if (r == 0) {
        proxy_limits(sb);
        caa_proxy_count(sb->proxy, sb->d->metrics.proxy_calls, sb->d->metrics.proxy_failures);
        r = caa_proxy_start(sb->proxy, start_deadline(sb), proxy_ready_cb, sb);
    }
    if (r < 0) {
        pp_error_set(&e, r, "agent proxy for `%s` (%s): %s", sb->instance_name, sb->instance.ip,
                     uv_strerror(r));
        start_failed(sb, &e);
    }
}

static void tunnel_up_cb(caa_sandbox_t *sb, int status, const pp_error_t *err)
{
    if (sb->stop_requested || sb->state != CAA_SB_STARTING) {
        teardown(sb);
        return;
    }
    if (status < 0) {
        pp_error_t e;
        pp_error_set_status(&e, PP_GRPC_INTERNAL, status, "tunnel to `%s`: %s", sb->instance.ip,
                            err ? err->message : uv_strerror(status));
        start_failed(sb, &e);
        return;
    }
    PP_INFO("caa", "sandbox `%s`: tunnel up, vxlan %u to %s", sb->id, sb->podnet->vxlan_id,
            sb->instance.ip);
    failpoint(sb->d, "start:tunnel-up");
    caa_metrics_stage_end(sb, CAA_STAGE_TUNNEL, uv_now(sb->d->loop));
    start_proxy(sb);
}

/* The StartVM caller went away or its deadline passed: undo the start. */
static void start_cancelled(pp_ttrpc_call_t *call, void *data)
{
    caa_sandbox_t *sb = data;
    if (sb->start_call != call || sb->state != CAA_SB_STARTING)
        return;
    pp_error_t e;
    pp_error_set_status(&e, PP_GRPC_DEADLINE_EXCEEDED, -ETIMEDOUT,
                        "StartVM for `%s` was abandoned by its caller", sb->id);
    start_failed(sb, &e);
}

void caa_sandbox_start(caa_daemon_t *d, pp_ttrpc_call_t *call, const char *id)
{
    caa_sandbox_t *sb = caa_sandbox_find(d, id);
    if (sb == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_NOT_FOUND, "sandbox `%s` was not created", id);
        return;
    }
    if (sb->state == CAA_SB_RUNNING) {
        pp_ttrpc_call_reply(call, NULL, 0);
        return;
    }
    if (sb->state != CAA_SB_CREATED) {
        pp_ttrpc_call_fail(call, PP_GRPC_FAILED_PRECONDITION, "sandbox `%s` is %s", id,
                           caa_state_name(sb->state));
        return;
    }
    caa_startq_clock_start(sb);
    pp_error_t serr = {0};
    /* The pod network is inspected now (the CNI has made it by StartVM) and
     * goes into the VM's user data. */
    int r = sb->netns_path[0] != '\0' ? caa_podnet_prepare(sb, &serr) : 0;
    if (r == 0)
        r = caa_userdata_build(d, sb, &serr);
    if (r < 0) {
        caa_podnet_release(sb);
        PP_WARN("caa", "StartVM `%s`: %s", id, serr.message);
        pp_ttrpc_call_fail(call, pp_error_grpc_status(&serr), "%s", serr.message);
        return;
    }
    sb->state = CAA_SB_STARTING;
    if (caa_state_save(sb, &serr) < 0) {
        sb->state = CAA_SB_CREATED;
        caa_podnet_release(sb);
        pp_ttrpc_call_fail(call, PP_GRPC_INTERNAL, "sandbox `%s`: record: %s", id, serr.message);
        return;
    }
    failpoint(d, "start:recorded");
    caa_metrics_start_begin(sb);
    sb->start_call = call;
    pp_error_clear(&sb->start_error);
    pp_ttrpc_call_on_cancel(call, start_cancelled, sb);
    pp_instance_spec_t spec = {
        .sandbox_id = sb->id,
        .instance_name = sb->instance_name,
        .node_name = d->cfg.node_name,
        .user_data = sb->user_data,
        .user_data_len = sb->user_data_len,
        .machine_type = sb->machine_type[0] ? sb->machine_type : NULL,
        .image = sb->image[0] ? sb->image : NULL,
        .vcpus = sb->vcpus,
        .memory_mib = sb->memory_mib,
        .gpus = sb->gpus,
        .initdata_digest = sb->initdata_digest[0] ? sb->initdata_digest : NULL,
    };
    PP_INFO("caa", "sandbox `%s`: creating instance `%s`", id, sb->instance_name);
    sb->provider_busy = 1;
    r = caa_startq_create(d, sb, &spec, created_cb);
    if (r < 0) {
        sb->provider_busy = 0;
        pp_error_t e;
        pp_error_set(&e, r, "create instance `%s`: %s", sb->instance_name, uv_strerror(r));
        start_failed(sb, &e);
    }
}

void caa_sandbox_stop(caa_daemon_t *d, pp_ttrpc_call_t *call, const char *id)
{
    caa_sandbox_t *sb = caa_sandbox_find(d, id);
    if (sb == NULL) {
        pp_ttrpc_call_reply(call, NULL, 0);
        return;
    }
    caa_waiting_call_t *w = malloc(sizeof(*w));
    if (w == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    w->call = call;
    w->next = sb->stop_calls;
    sb->stop_calls = w;
    if (sb->stop_requested)
        return; /* already on its way down */
    sb->stop_requested = 1;
    PP_INFO("caa", "sandbox `%s`: stopping (was %s)", id, caa_state_name(sb->state));
    sb->state = CAA_SB_STOPPING;
    save(sb);
    failpoint(d, "stop:recorded");
    teardown(sb);
}

void caa_sandbox_release(caa_sandbox_t *sb)
{
    if (sb->proxy != NULL) {
        caa_proxy_t *p = sb->proxy;
        sb->proxy = NULL;
        caa_proxy_close(p, proxy_closed_cb, NULL);
    }
}

void caa_sandboxes_release(caa_daemon_t *d)
{
    for (caa_sandbox_t *sb = d->sandboxes; sb != NULL; sb = sb->next)
        caa_sandbox_release(sb);
}

size_t caa_sandboxes_abandon(caa_daemon_t *d, const char *why)
{
    size_t n = 0;
    pp_error_t e;
    pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -ESHUTDOWN, "%s", why);
    for (caa_sandbox_t *sb = d->sandboxes; sb != NULL; sb = sb->next) {
        n += sb->start_call != NULL;
        for (caa_waiting_call_t *w = sb->stop_calls; w != NULL; w = w->next)
            n++;
        answer_start(sb, &e);
        answer_stops(sb, &e);
    }
    return n;
}
