/* The hypervisor.Hypervisor ttrpc service the kata shim calls (design.md
 * §4): Version, CreateVM, StartVM, StopVM. */
#ifndef CAA_HYPERVISOR_H
#define CAA_HYPERVISOR_H

#include <stddef.h>

#include "context.h"

/* Registers the service methods on d->hv. Calls that come while
 * d->recovering wait, and are handled by caa_hypervisor_resume(). */
int caa_hypervisor_register(caa_daemon_t *d);
void caa_hypervisor_resume(caa_daemon_t *d);
/* Shutdown's grace is over: answers the calls still waiting for recovery
 * UNAVAILABLE. How many. */
size_t caa_hypervisor_abandon_parked(caa_daemon_t *d);

#endif
