/* cloud-api-adaptor: stands in for the hypervisor of the kata shim and runs
 * each pod in its own VM from a cloud provider. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "daemon.h"
#include "util/json_wipe.h"
#include "util/log.h"
#include "util/loop.h"
#include "util/notify.h"

/* The settings of the daemon and of its provider, from the environment and
 * the command line; -h, -list-settings and `version` are answered here.
 * Returns -1 to go on, else the exit code. */
static int configure(caa_daemon_t *d, int argc, char **argv)
{
    pp_error_t err = {0};
    int r = caa_config_load(&d->cfg, argc, argv, &err);
    if (r < 0) {
        PP_ERR("caa", "configuration: %s", err.message);
        return 2;
    }
    if (r == CAA_CONFIG_VERSION) {
        printf("cloud-api-adaptor %s\n", CAA_VERSION);
        return 0;
    }
    const struct pp_provider_ops *ops = NULL;
    pp_module_t *module = NULL;
    pp_error_t lerr = {0};
    int lr = pp_provider_load(d->cfg.provider, d->cfg.module_dir, &ops, &module, &lerr);
    if (r == CAA_CONFIG_HELP) {
        caa_config_usage(stdout, argv[0], lr == 0 ? ops->name : NULL,
                         lr == 0 ? ops->settings : NULL);
        if (lr < 0)
            fprintf(stdout, "\n%s\n", lerr.message);
        pp_module_close(module);
        return 0;
    }
    if (lr < 0) {
        PP_ERR("caa", "configuration: `CLOUD_PROVIDER`: %s", lerr.message);
        return 2;
    }
    if (r == CAA_CONFIG_LIST) {
        caa_config_list(stdout, ops->settings);
        pp_module_close(module);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (caa_config_check_flags(&d->cfg, ops->settings, &err) < 0) {
        PP_ERR("caa", "configuration: %s", err.message);
        pp_module_close(module);
        return 2;
    }
    d->provider_ops = ops;
    d->provider_module = module;
    return -1;
}

int main(int argc, char **argv)
{
    caa_heap_tune();
    pp_json_wipe_on_free();
    caa_daemon_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return 1;
    int code = configure(d, argc, argv);
    if (code >= 0) {
        free(d);
        return code;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    pp_error_t err = {0};
    if (caa_daemon_start(d, &loop, &err) < 0) {
        PP_ERR("caa", "start: %s", err.message);
        code = 1;
    } else {
        /* Serving: a unit of Type=notify (upstream's) may go on. */
        if (pp_notify("READY=1") < 0)
            PP_WARN("caa", "`NOTIFY_SOCKET`: the service manager could not be told we are ready");
        pp_loop_run(&loop, (unsigned)d->cfg.busy_poll_us);
        code = d->exit_code;
    }
    /* Shutdown's grace ran out with work in flight (a provider's create, a
     * tunnel on the threadpool) that nothing can cancel: exit now, without
     * freeing what that work still uses. The records on disk say where
     * every pod is; the next start takes over. */
    if (d->abandoned)
        _exit(code);
    caa_daemon_fini(d);
    /* Let the handles closed by fini finish closing: their callbacks may be
     * the provider module's code, so it is unmapped only afterwards. */
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        PP_WARN("caa", "handles still open at exit");
    pp_module_close(d->provider_module);
    free(d);
    return code;
}
