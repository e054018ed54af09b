/* cloud-api-adaptor daemon lifetime. */
#ifndef CAA_DAEMON_H
#define CAA_DAEMON_H

#include "context.h"
#include "util/error.h"

/* Creates the provider, the pods directory and the hypervisor socket, and
 * installs SIGTERM/SIGINT handlers. `d->cfg` must be loaded. */
int caa_daemon_start(caa_daemon_t *d, uv_loop_t *loop, pp_error_t *err);
/* Stops accepting, lets calls in flight finish, closes every socket; pod
 * VMs are left running. The loop then runs dry. */
void caa_daemon_shutdown(caa_daemon_t *d);
/* Frees what is left once the loop has stopped; the provider's module
 * (d->provider_module) stays mapped for the handles still closing: run the
 * loop once more, then pp_module_close() it. */
void caa_daemon_fini(caa_daemon_t *d);

#endif
