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
/* Frees what is left once the loop has stopped. */
void caa_daemon_fini(caa_daemon_t *d);

#endif
