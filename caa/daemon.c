/* Daemon lifetime: start-up, signals, graceful shutdown. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caa.h"
#include "daemon.h"
#include "state.h"
#include "tls/lazy.h"
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

/* The per-node CA and the client side of the forwarder link. */
static int tls_init(caa_daemon_t *d, pp_error_t *err)
{
    const caa_config_t *c = &d->cfg;
    int r = pp_tls_lazy_load(c->module_dir, err);
    if (r < 0)
        return r;
    pp_ca_opts_t o = {
        .dir = c->ca_dir,
        .cacert_file = c->ca_cert_file[0] ? c->ca_cert_file : NULL,
        .cert_file = c->cert_file[0] ? c->cert_file : NULL,
        .key_file = c->cert_key[0] ? c->cert_key : NULL,
    };
    pp_ca_t *ca = NULL;
    pp_tls_ctx_t *tls = NULL;
    r = pp_ca_load_or_create(&o, &ca, err);
    if (r < 0)
        return pp_error_wrap(err, "certificate authority");
    const char *cert, *key;
    r = pp_ca_client_identity(ca, "cloud-api-adaptor", &cert, &key, err);
    if (r < 0) {
        pp_ca_free(ca);
        return pp_error_wrap(err, "client certificate");
    }
    pp_tls_config_t tc = {
        .cert_pem = cert,
        .key_pem = key,
        .ca_pem = pp_ca_cert_pem(ca),
        .min_version = c->tls_min_version,
        .cipher_suites = c->tls_cipher_suites[0] ? c->tls_cipher_suites : NULL,
        .skip_verify = c->tls_skip_verify,
    };
    r = pp_tls_ctx_new(PP_TLS_CLIENT, &tc, &tls, err);
    if (r < 0) {
        pp_ca_free(ca);
        return pp_error_wrap(err, "TLS");
    }
    d->ca = ca;
    d->tls = tls;
    return 0;
}

int caa_tls_ready(caa_daemon_t *d, pp_error_t *err)
{
    if (d->cfg.disable_tls || d->tls != NULL)
        return 0;
    int r = tls_init(d, err);
    if (r == 0)
        PP_INFO("caa", "TLS to the forwarders ready (module `%s` loaded)", PP_TLS_MODULE_FILE);
    return r;
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

/* Checks the TLS settings at start-up the way the first pod will use them,
 * in a child process: the daemon itself maps OpenSSL only when that pod
 * comes (tls/lazy.h), yet a bad setting still stops it at start-up, named.
 * In automatic mode the child also creates the CA when there is none. When
 * there are pods to recover, whose proxies need TLS at once, the daemon
 * makes its TLS context right away instead. */
static int tls_check(caa_daemon_t *d, pp_error_t *err)
{
    if (d->cfg.disable_tls) {
        PP_WARN("caa", "TLS DISABLED (`DISABLE_TLS`): the agent API crosses the network in "
                       "plaintext; for debugging only");
        return 0;
    }
    if (has_pods(d))
        return caa_tls_ready(d, err);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return pp_error_set(err, -errno, "check TLS settings: pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return pp_error_set(err, -e, "check TLS settings: fork: %s", strerror(e));
    }
    if (pid == 0) {
        close(fds[0]);
        pp_error_t e = {0};
        int r = tls_init(d, &e);
        if (r < 0 && write(fds[1], &e, sizeof(e)) != (ssize_t)sizeof(e))
            _exit(3);
        /* _exit: nothing of the parent's (atexit handlers, stdio buffers)
         * runs twice. */
        _exit(r < 0 ? 1 : 0);
    }
    close(fds[1]);
    pp_error_t e = {0};
    size_t got = 0;
    while (got < sizeof(e)) {
        ssize_t n = read(fds[0], (char *)&e + got, sizeof(e) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got == sizeof(e) && e.code < 0) {
        e.message[sizeof(e.message) - 1] = '\0';
        return pp_error_set(err, e.code, "%s", e.message);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return pp_error_set(err, -EPROTO, "check TLS settings: the checking process %s %d",
                            WIFSIGNALED(status) ? "died of signal" : "exited with",
                            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    return 0;
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
    r = pp_provider_new(ops, loop, d->cfg.node_name, d->cfg.nflags, d->cfg.flags, &d->provider,
                        err);
    if (r < 0)
        return pp_error_wrap(err, "provider `%s`", ops->name);
    if ((r = mkdir_p(d->cfg.pods_dir, 0755)) < 0)
        return pp_error_set(err, r, "`PODS_DIR` `%s`: %s", d->cfg.pods_dir, strerror(-r));
    if ((r = tls_check(d, err)) < 0)
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
    if ((r = pp_ttrpc_server_new(loop, &d->hv)) < 0 || (r = caa_hypervisor_register(d)) < 0)
        return pp_error_set(err, r, "hypervisor service: %s", strerror(-r));
    /* Claim the socket before recovery so that a second daemon fails here. */
    if ((r = pp_ttrpc_server_listen_unix(d->hv, d->cfg.socket, err)) < 0)
        return pp_error_wrap(err, "`REMOTE_HYPERVISOR_ENDPOINT`");
    d->recovering = 1;
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
    if (d->tls != NULL)
        pp_tls_ctx_free(d->tls);
    d->tls = NULL;
    if (d->ca != NULL)
        pp_ca_free(d->ca);
    d->ca = NULL;
    if (d->provider != NULL)
        pp_provider_free(d->provider);
    d->provider = NULL;
    pp_module_close(d->provider_module);
    d->provider_module = NULL;
    while (d->sandboxes != NULL) {
        caa_sandbox_t *sb = d->sandboxes;
        d->sandboxes = sb->next;
        caa_sandbox_free(sb);
    }
}
