/* The hypervisor.Hypervisor ttrpc service the kata shim calls (design.md
 * §4): Version, CreateVM, StartVM, StopVM. */
#ifndef CAA_HYPERVISOR_H
#define CAA_HYPERVISOR_H

#include "context.h"

/* Registers the service methods on d->hv. Calls that come while
 * d->recovering wait, and are handled by caa_hypervisor_resume(). */
int caa_hypervisor_register(caa_daemon_t *d);
void caa_hypervisor_resume(caa_daemon_t *d);

#endif
