/* Daemon lifetime: start-up, signals, graceful shutdown. */
#include "daemon.h"
#include "probe.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hypervisor.h"
#include "vminfo.h"
#include "lifecycle.h"
#include "podnet.h"
#include "bounds.h"
#include "recover.h"
#include "sandbox.h"
#include "tlsmod.h"
#include "tls/ca.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/log.h"

/* What is left behind, by what it is: pod VMs running (adopted at the next
 * start), pod VMs whose start or stop the next start finishes, failed
 * sandboxes still holding a VM, and sandboxes with no VM at all. */
static void log_left(caa_daemon_t *d)
{
    size_t running = 0, unfinished = 0, failed_vm = 0, no_vm = 0;
    for (caa_sandbox_t *sb = d->sandboxes; sb != NULL; sb = sb->next) {
        if (sb->state == CAA_SB_RUNNING)
            running++;
        else if (sb->state == CAA_SB_STARTING || sb->state == CAA_SB_STOPPING)
            unfinished++;
        else if (sb->has_instance)
            failed_vm++;
        else
            no_vm++;
    }
    PP_INFO("caa",
            "stopped: %zu pod VMs running, kept for the next start; %zu starting or stopping, "
            "which the next start finishes; %zu failed sandboxes holding a VM; %zu sandboxes "
            "without a VM",
            running, unfinished, failed_vm, no_vm);
}

static void grace_closed_cb(uv_handle_t *h)
{
    (void)h;
}

static void hv_closed_cb(pp_ttrpc_server_t *s, void *data)
{
    caa_daemon_t *d = data;
    (void)s;
    d->hv = NULL;
    /* Proxies go; pod VMs stay, to be adopted by the next start. */
    caa_sandboxes_release(d);
    log_left(d);
    if (d->grace_inited) {
        d->grace_inited = 0;
        uv_close((uv_handle_t *)&d->grace, grace_closed_cb);
    }
    /* Past the grace, what is still in flight (a provider's create, a
     * tunnel) is not waited for: the records say where each pod is, and
     * the next start takes it from there. */
    if (d->abandoned)
        uv_stop(d->loop);
}

/* The grace is over: every call still waiting is answered UNAVAILABLE, so
 * that the server's close ends and the daemon exits within the bound (a
 * StartVM may otherwise wait up to PROXY_TIMEOUT, past the kubelet's
 * patience). Nothing is torn down: VMs stay for the next start. */
static void grace_cb(uv_timer_t *t)
{
    caa_daemon_t *d = t->data;
    d->abandoned = 1;
    size_t n = caa_sandboxes_abandon(d, "cloud-api-adaptor is shutting down; the pod VM is kept "
                                        "and taken over by its next start");
    n += caa_hypervisor_abandon_parked(d);
    d->counters.shutdown_abandoned += n;
    PP_WARN("caa",
            "shutdown: `SHUTDOWN_GRACE` (%llu ms) is over: %zu calls still in flight failed "
            "UNAVAILABLE; their pod VMs are kept",
            (unsigned long long)d->cfg.shutdown_grace_ms, n);
    if (d->hv == NULL)
        uv_stop(d->loop);
}

static void close_signals(caa_daemon_t *d)
{
    if (!d->signals_started)
        return;
    d->signals_started = 0;
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
}

void caa_daemon_shutdown(caa_daemon_t *d)
{
    if (d->stopping)
        return;
    d->stopping = 1;
    PP_INFO("caa", "shutting down: finishing %zu calls in flight, for at most %llu ms",
            d->hv ? pp_ttrpc_server_in_flight(d->hv) : (size_t)0,
            (unsigned long long)d->cfg.shutdown_grace_ms);
    close_signals(d);
    caa_heap_stop(&d->heap);
    caa_bounds_stop(d);
    caa_vminfo_stop(d);
    caa_probe_stop(d);
    uv_timer_init(d->loop, &d->grace);
    d->grace.data = d;
    d->grace_inited = 1;
    uv_timer_start(&d->grace, grace_cb, d->cfg.shutdown_grace_ms, 0);
    if (d->hv != NULL)
        pp_ttrpc_server_close(d->hv, 1, hv_closed_cb, d);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    caa_daemon_t *d = s->data;
    PP_INFO("caa", "received %s", strsignal(signum));
    caa_daemon_shutdown(d);
}

/* Whether PODS_DIR holds pods from before (dot names are the daemon's own). */
static int has_pods(const caa_daemon_t *d)
{
    DIR *dir = opendir(d->cfg.pods_dir);
    if (dir == NULL)
        return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(dir)) != NULL)
        found = e->d_name[0] != '.';
    closedir(dir);
    return found;
}

/* The per-node CA made the certificates of every pod VM running: a new one
 * would not be trusted by any of them, and their agent calls would all
 * fail. So with pods on record that may be running, a CA that is gone is
 * not made again: start-up stops and says what is missing. */
static int check_ca(caa_daemon_t *d, pp_error_t *err)
{
    const caa_config_t *c = &d->cfg;
    if (c->disable_tls || c->ca_cert_file[0] || c->cert_file[0] || c->cert_key[0])
        return 0;
    static const char *const files[] = {PP_CA_CERT_FILE, PP_CA_KEY_FILE};
    const char *missing = NULL;
    for (size_t i = 0; i < PP_ARRAY_SIZE(files) && missing == NULL; i++) {
        char path[320];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", c->ca_dir, files[i]);
        if (lstat(path, &st) < 0)
            missing = files[i];
    }
    if (missing == NULL)
        return 0;
    size_t live = caa_recover_count_live(d);
    if (live == 0)
        return 0;
    return pp_error_set(err, -ENOENT,
                        "the per-node CA in `%s` is gone (`%s` is missing) while %zu pods on "
                        "record may be running: their pod VMs trust only that CA, so a new one "
                        "would cut them off; restore `CA_DIR` from a backup, or remove those "
                        "pods' records from `PODS_DIR` `%s`, and start again",
                        c->ca_dir, missing, live, c->pods_dir);
}

static void recovered_cb(caa_daemon_t *d, int status, const pp_error_t *err)
{
    if (status < 0)
        PP_ERR("caa", "recovery: %s", err ? err->message : uv_strerror(status));
    d->recovering = 0;
    caa_hypervisor_resume(d);
}

int caa_daemon_start(caa_daemon_t *d, uv_loop_t *loop, pp_error_t *err)
{
    d->loop = loop;
    const struct pp_provider_ops *ops = d->provider_ops;
    int r = ops != NULL ? 0
                        : pp_provider_load(d->cfg.provider, d->cfg.module_dir, &ops,
                                           &d->provider_module, err);
    if (r < 0)
        return pp_error_wrap(err, "`CLOUD_PROVIDER`");
    /* The descriptor ceiling first, before anything opens many. */
    if ((r = caa_bounds_start(d, err)) < 0)
        return r;
    if ((r = caa_metrics_init(&d->metrics, d)) < 0)
        return pp_error_set(err, r, "metrics: %s", strerror(-r));
    d->tls.metrics = d->metrics.registry;
    caa_startq_init(&d->startq, (unsigned)d->cfg.provider_concurrency, d->metrics.registry);
    r = pp_provider_new_with_metrics(ops, loop, d->cfg.node_name, d->cfg.nflags, d->cfg.flags,
                                     d->metrics.registry, &d->provider, err);
    if (r < 0)
        return pp_error_wrap(err, "provider `%s`", ops->name);
    if ((r = pp_mkdir_p(d->cfg.pods_dir, 0755, NULL)) < 0)
        return pp_error_set(err, r, "`PODS_DIR` `%s`: %s", d->cfg.pods_dir, strerror(-r));
    if ((r = check_ca(d, err)) < 0)
        return r;
    /* Pods to recover need their proxies, hence TLS, at once. */
    if ((r = caa_tls_check(&d->tls, &d->cfg, has_pods(d), err)) < 0)
        return r;
    caa_podnet_start(d);
    char sockdir[256];
    snprintf(sockdir, sizeof(sockdir), "%s", d->cfg.socket);
    char *slash = strrchr(sockdir, '/');
    if (slash != NULL && slash != sockdir) {
        *slash = '\0';
        if ((r = pp_mkdir_p(sockdir, 0755, NULL)) < 0)
            return pp_error_set(err, r, "`REMOTE_HYPERVISOR_ENDPOINT` directory `%s`: %s", sockdir,
                                strerror(-r));
    }
    pp_ttrpc_server_opts_t so;
    caa_bounds_server_opts(d, 1, NULL, &so);
    if ((r = pp_ttrpc_server_new(loop, &d->hv)) < 0 ||
        (r = pp_ttrpc_server_set_opts(d->hv, &so)) < 0 || (r = caa_hypervisor_register(d)) < 0 ||
        (r = caa_vminfo_register(d)) < 0)
        return pp_error_set(err, r, "hypervisor service: %s", strerror(-r));
    /* Before the socket exists: a SIGTERM sent as soon as it accepts is
     * handled (on the loop, once it runs), not fatal. */
    uv_signal_init(loop, &d->sigterm);
    uv_signal_init(loop, &d->sigint);
    d->sigterm.data = d->sigint.data = d;
    uv_signal_start(&d->sigterm, signal_cb, SIGTERM);
    uv_signal_start(&d->sigint, signal_cb, SIGINT);
    d->signals_started = 1;
    /* Claim the socket before recovery so that a second daemon fails here. */
    if ((r = pp_ttrpc_server_listen_unix(d->hv, d->cfg.socket, err)) < 0)
        return pp_error_wrap(err, "`REMOTE_HYPERVISOR_ENDPOINT`");
    d->recovering = 1;
    /* Before recovery, so that /startup says it is not done. A port taken
     * is logged and the daemon goes on, as upstream's does: its startup
     * probe then fails, and says why. */
    pp_error_t perr = {0};
    if (caa_probe_start(d, &perr) < 0)
        PP_ERR("caa", "probes and metrics are not served: %s", perr.message);
    if ((r = caa_recover(d, recovered_cb, err)) < 0)
        return pp_error_wrap(err, "recover");
    if ((r = caa_heap_start(&d->heap, loop)) < 0)
        return pp_error_set(err, r, "heap policy: %s", uv_strerror(r));
    PP_INFO("caa", "cloud-api-adaptor %s: provider `%s`, node `%s`, serving `%s`", CAA_VERSION,
            ops->name, d->cfg.node_name, d->cfg.socket);
    return 0;
}

void caa_daemon_fini(caa_daemon_t *d)
{
    /* After a failed start, handles made before the failure close here. */
    close_signals(d);
    caa_bounds_stop(d);
    caa_heap_stop(&d->heap);
    caa_podnet_stop(d);
    caa_tls_fini(&d->tls);
    caa_startq_fini(&d->startq);
    if (d->provider != NULL)
        pp_provider_free(d->provider);
    d->provider = NULL;
    /* The provider's module stays mapped: the handles its client closed
     * finish closing, in its code, when the loop runs once more (main closes
     * it after that). */
    while (d->sandboxes != NULL) {
        caa_sandbox_t *sb = d->sandboxes;
        d->sandboxes = sb->next;
        caa_sandbox_free(sb);
    }
    caa_probe_stop(d);
    d->tls.metrics = NULL;
    caa_metrics_fini(&d->metrics);
}
