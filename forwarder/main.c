/* agent-protocol-forwarder: the kata agent API bridge in the pod VM. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "config.h"
#include "forwarder.h"
#include "podnet.h"
#include "util/json_wipe.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/notify.h"

#ifndef PP_VERSION
#define PP_VERSION "dev"
#endif

#define COMPONENT "apf"

typedef struct apf_main_s {
    uv_loop_t loop;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    apf_forwarder_t *fwd;
    int exit_code;
    unsigned stopping : 1;
} apf_main_t;

static void on_closed(apf_forwarder_t *f, void *data)
{
    apf_main_t *m = data;
    (void)f;
    m->fwd = NULL;
    uv_close((uv_handle_t *)&m->sigterm, NULL);
    uv_close((uv_handle_t *)&m->sigint, NULL);
    PP_INFO(COMPONENT, "stopped");
}

static void stop(apf_main_t *m, uint64_t grace_ms)
{
    m->stopping = 1;
    if (m->fwd != NULL)
        apf_forwarder_close(m->fwd, grace_ms, on_closed, m);
}

static void on_signal(uv_signal_t *s, int signum)
{
    apf_main_t *m = s->data;
    if (m->stopping) {
        PP_WARN(COMPONENT, "signal %d again: not waiting for calls in flight", signum);
        stop(m, 0);
        return;
    }
    PP_INFO(COMPONENT, "signal %d: shutting down", signum);
    stop(m, APF_SHUTDOWN_GRACE_MS);
}

static void on_ready(apf_forwarder_t *f, int status, const pp_error_t *err, void *data)
{
    apf_main_t *m = data;
    (void)f;
    if (status == 0) {
        /* Listening: a unit of Type=notify (upstream's) may go on. */
        if (pp_notify("READY=1") < 0)
            PP_WARN(COMPONENT, "`NOTIFY_SOCKET`: the service manager could not be told we are "
                               "ready");
        return;
    }
    if (m->stopping)
        return;
    PP_ERR(COMPONENT, "%s", err ? err->message : uv_strerror(status));
    m->exit_code = 1;
    stop(m, 0);
}

static void log_config(const apf_config_t *cfg)
{
    PP_INFO(COMPONENT,
            "agent-protocol-forwarder %s: listen %s, kata agent `%s`, pod network "
            "namespace `%s`",
            PP_VERSION, cfg->listen, cfg->agent_socket, cfg->netns_path);
    if (cfg->file_loaded)
        PP_INFO(COMPONENT, "config `%s`: pod `%s` in namespace `%s`", cfg->config_path,
                cfg->pod_name ? cfg->pod_name : "", cfg->pod_namespace ? cfg->pod_namespace : "");
    else
        PP_INFO(COMPONENT, "config `%s` not present; using flags only", cfg->config_path);
    if (cfg->disable_tls)
        PP_WARN(COMPONENT,
                "TLS DISABLED by -disable-tls: serving plaintext ttrpc, for "
                "debugging only%s",
                cfg->has_tls_material ? " (tls material in the config is ignored)" : "");
    else if (cfg->has_tls_material)
        PP_INFO(COMPONENT, "serving ttrpc over TLS%s",
                cfg->tls_client_ca ? " with client certificates required" : "");
}

/* Plaintext only when it was asked for: a config that is missing, or that
 * carries no TLS material, means the pod VM was not provisioned as it
 * should have been, not that anyone wants the agent API open to the
 * network without authentication (upstream's forwarder fails then too). */
static int check_tls(const apf_config_t *cfg, pp_error_t *err)
{
    if (cfg->disable_tls || cfg->has_tls_material)
        return 0;
    return pp_error_set(err, -EPERM,
                        "no TLS material: the config `%s` %s and no -cert-file/-cert-key were "
                        "given; refusing to serve the agent API in plaintext (give -disable-tls "
                        "for that, for debugging only)",
                        cfg->config_path,
                        cfg->file_loaded ? "has no tls-server-key, tls-server-cert or tls-client-ca"
                                         : "does not exist");
}

int main(int argc, char **argv)
{
    apf_config_t cfg;
    pp_error_t err = {0};
    apf_main_t m = {0};

    pp_json_wipe_on_free();
    /* A peer that closes mid-write must cost a connection, not the process. */
    signal(SIGPIPE, SIG_IGN);
    if (apf_config_init(&cfg) < 0) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        return 1;
    }
    if (apf_config_parse_args(&cfg, argc, argv, &err) < 0) {
        fprintf(stderr, "%s: %s\n", argv[0], err.message);
        apf_config_usage(stderr, argv[0]);
        apf_config_fini(&cfg);
        return 2;
    }
    if (cfg.show_help || cfg.show_version || cfg.list_settings) {
        if (cfg.show_help)
            apf_config_usage(stdout, argv[0]);
        else if (cfg.list_settings)
            pp_settings_list(stdout, &apf_settings);
        else
            printf("agent-protocol-forwarder %s\n", PP_VERSION);
        apf_config_fini(&cfg);
        return 0;
    }
    if (apf_config_load_file(&cfg, &err) < 0 || apf_config_load_tls_files(&cfg, &err) < 0) {
        fprintf(stderr, "%s: %s\n", argv[0], err.message);
        apf_config_fini(&cfg);
        return 1;
    }
    log_config(&cfg);
    if (check_tls(&cfg, &err) < 0) {
        PP_ERR(COMPONENT, "%s", err.message);
        apf_config_fini(&cfg);
        return 1;
    }
    if (cfg.has_pod_network && apf_podnet_setup(cfg.pod_network, cfg.netns_path, &err) < 0) {
        PP_ERR(COMPONENT, "pod network: %s", err.message);
        apf_config_fini(&cfg);
        return 1;
    }

    int r = uv_loop_init(&m.loop);
    if (r < 0) {
        fprintf(stderr, "%s: loop: %s\n", argv[0], uv_strerror(r));
        apf_config_fini(&cfg);
        return 1;
    }
    uv_signal_init(&m.loop, &m.sigterm);
    uv_signal_init(&m.loop, &m.sigint);
    m.sigterm.data = m.sigint.data = &m;
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    uv_signal_start(&m.sigint, on_signal, SIGINT);

    r = apf_forwarder_new(&m.loop, &cfg, &m.fwd);
    if (r == 0)
        r = apf_forwarder_start(m.fwd, on_ready, &m);
    if (r < 0) {
        PP_ERR(COMPONENT, "start: %s", uv_strerror(r));
        m.exit_code = 1;
        if (m.fwd != NULL) {
            stop(&m, 0);
        } else {
            uv_close((uv_handle_t *)&m.sigterm, NULL);
            uv_close((uv_handle_t *)&m.sigint, NULL);
        }
    }
    unsigned busy_poll_us = (unsigned)cfg.busy_poll_us;
    apf_config_fini(&cfg);

    pp_loop_run(&m.loop, busy_poll_us);
    r = uv_loop_close(&m.loop);
    if (r < 0)
        PP_WARN(COMPONENT, "loop close: %s", uv_strerror(r));
    return m.exit_code;
}
