/* Upstream's PodVMInfo service (`podvminfo.PodVMInfo`, method `GetInfo`),
 * served on the hypervisor socket beside hypervisor.Hypervisor: the
 * provider's instance id of the VM that runs a pod, found by the pod's
 * namespace and name.
 *
 * A pod whose VM exists is answered at once. Otherwise the answer is
 * NOT_FOUND, or, when the request sets Wait, the call waits until the pod
 * has a VM, until its deadline (DEADLINE_EXCEEDED) or until the daemon
 * stops (UNAVAILABLE). Upstream's daemon answers a waiting call as soon as
 * a sandbox of that name exists, VM or not (then NOT_FOUND); waiting for
 * the VM is what a caller that sets Wait wants. Loop thread only. */
#ifndef CAA_VMINFO_H
#define CAA_VMINFO_H

#include "context.h"

/* Registers GetInfo on d->hv. */
int caa_vminfo_register(caa_daemon_t *d);
/* A sandbox of `d` got its VM: answers the calls waiting for its pod. */
void caa_vminfo_notify(caa_daemon_t *d, const char *pod_namespace, const char *pod_name,
                       const char *instance_id);
/* Answers every waiting call with UNAVAILABLE (shutdown). */
void caa_vminfo_stop(caa_daemon_t *d);

#endif
