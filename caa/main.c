/* cloud-api-adaptor: stands in for the hypervisor of the kata shim and runs
 * each pod in its own VM from a cloud provider. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon.h"
#include "util/json_wipe.h"
#include "util/log.h"
#include "util/loop.h"

int main(int argc, char **argv)
{
    caa_heap_tune();
    pp_json_wipe_on_free();
    caa_daemon_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return 1;
    pp_error_t err = {0};
    int r = caa_config_load(&d->cfg, argc, argv, &err);
    if (r != 0) {
        if (r < 0)
            PP_ERR("caa", "configuration: %s", err.message);
        free(d);
        return r < 0 ? 2 : 0;
    }
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    if (caa_daemon_start(d, &loop, &err) < 0) {
        PP_ERR("caa", "start: %s", err.message);
        caa_daemon_fini(d);
        free(d);
        return 1;
    }
    pp_loop_run(&loop, (unsigned)d->cfg.busy_poll_us);
    int code = d->exit_code;
    caa_daemon_fini(d);
    free(d);
    /* Let the handles closed by fini finish closing. */
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        PP_WARN("caa", "handles still open at exit");
    return code;
}
