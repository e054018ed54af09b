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
#include "recover.h"
#include "sandbox.h"
#include "tlsmod.h"
#include "util/log.h"

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[256];
    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void hv_closed_cb(pp_ttrpc_server_t *s, void *data)
{
    caa_daemon_t *d = data;
    (void)s;
    d->hv = NULL;
    /* Proxies go; pod VMs stay, to be adopted by the next start. */
    caa_sandboxes_release(d);
    PP_INFO("caa", "stopped; %zu pod VMs left running", d->nsandboxes);
}

void caa_daemon_shutdown(caa_daemon_t *d)
{
    if (d->stopping)
        return;
    d->stopping = 1;
    PP_INFO("caa", "shutting down: finishing %zu calls in flight",
            d->hv ? pp_ttrpc_server_in_flight(d->hv) : (size_t)0);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    caa_heap_stop(&d->heap);
    caa_vminfo_stop(d);
    caa_probe_stop(d);
    if (d->hv != NULL)
        pp_ttrpc_server_close(d->hv, 1, hv_closed_cb, d);
}

static void signal_cb(uv_signal_t *s, int signum)
{
    caa_daemon_t *d = s->data;
    PP_INFO("caa", "received %s", strsignal(signum));
    caa_daemon_shutdown(d);
}

/* Pod networking: indexes kept beside the pods, tunnel settings. Without
 * it, pods that name a network namespace fail at StartVM with a reason. */
static void net_start(caa_daemon_t *d)
{
    pp_node_net_init(&d->net);
    d->net_inited = 1;
    d->net.vxlan_port = (uint16_t)d->cfg.vxlan_port;
    d->net.vxlan_min_id = (uint32_t)d->cfg.vxlan_min_id;
    d->net.host_ifname = d->cfg.host_interface[0] ? d->cfg.host_interface : NULL;
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/.indexes", d->cfg.pods_dir);
    pp_error_t err = {0};
    /* Indexes past 2^24 - min id would make VNIs out of range. */
    uint32_t limit = 0xffffffu - (uint32_t)d->cfg.vxlan_min_id;
    if (limit > 65536)
        limit = 65536;
    if (pp_podindex_open(&d->index, dir, limit, &err) < 0) {
        PP_ERR("caa", "pod indexes in `%s`: %s; pod networks will fail", dir, err.message);
        return;
    }
    d->net_ready = 1;
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
    if ((r = caa_metrics_init(&d->metrics, d)) < 0)
        return pp_error_set(err, r, "metrics: %s", strerror(-r));
    d->tls.metrics = d->metrics.registry;
    r = pp_provider_new_with_metrics(ops, loop, d->cfg.node_name, d->cfg.nflags, d->cfg.flags,
                                     d->metrics.registry, &d->provider, err);
    if (r < 0)
        return pp_error_wrap(err, "provider `%s`", ops->name);
    if ((r = mkdir_p(d->cfg.pods_dir, 0755)) < 0)
        return pp_error_set(err, r, "`PODS_DIR` `%s`: %s", d->cfg.pods_dir, strerror(-r));
    /* Pods to recover need their proxies, hence TLS, at once. */
    if ((r = caa_tls_check(&d->tls, &d->cfg, has_pods(d), err)) < 0)
        return r;
    net_start(d);
    char sockdir[256];
    snprintf(sockdir, sizeof(sockdir), "%s", d->cfg.socket);
    char *slash = strrchr(sockdir, '/');
    if (slash != NULL && slash != sockdir) {
        *slash = '\0';
        if ((r = mkdir_p(sockdir, 0755)) < 0)
            return pp_error_set(err, r, "`REMOTE_HYPERVISOR_ENDPOINT` directory `%s`: %s", sockdir,
                                strerror(-r));
    }
    if ((r = pp_ttrpc_server_new(loop, &d->hv)) < 0 || (r = caa_hypervisor_register(d)) < 0 ||
        (r = caa_vminfo_register(d)) < 0)
        return pp_error_set(err, r, "hypervisor service: %s", strerror(-r));
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
    uv_signal_init(loop, &d->sigterm);
    uv_signal_init(loop, &d->sigint);
    d->sigterm.data = d->sigint.data = d;
    uv_signal_start(&d->sigterm, signal_cb, SIGTERM);
    uv_signal_start(&d->sigint, signal_cb, SIGINT);
    if ((r = caa_heap_start(&d->heap, loop)) < 0)
        return pp_error_set(err, r, "heap policy: %s", uv_strerror(r));
    PP_INFO("caa", "cloud-api-adaptor %s: provider `%s`, node `%s`, serving `%s`", CAA_VERSION,
            ops->name, d->cfg.node_name, d->cfg.socket);
    return 0;
}

void caa_daemon_fini(caa_daemon_t *d)
{
    caa_heap_stop(&d->heap);
    /* Tunnel deletions still running in the background finish first. */
    if (d->net_ready)
        pp_podindex_close(&d->index);
    if (d->net_inited)
        pp_node_net_fini(&d->net);
    d->net_ready = d->net_inited = 0;
    caa_tls_fini(&d->tls);
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
