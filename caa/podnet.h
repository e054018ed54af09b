/* A pod's network (design.md §4 VXLAN): its index (hence its VNI), the
 * inspection of its namespace into sb->podnet, and the node end of its
 * tunnel, which is made and removed off the loop. */
#ifndef CAA_PODNET_H
#define CAA_PODNET_H

#include "sandbox.h"
#include "util/error.h"

typedef void (*caa_podnet_cb)(caa_sandbox_t *sb, int status, const pp_error_t *err);

/* At start-up: the node side's settings (d->net) from the configuration,
 * and the pod indexes, kept under PODS_DIR/.indexes (d->index). When the
 * indexes cannot be opened it says why and pod networking is off
 * (d->net_ready 0): pods that name a network namespace then fail at StartVM
 * with a reason, the rest run. */
void caa_podnet_start(caa_daemon_t *d);
/* Waits for the tunnel deletions still running in the background, then
 * frees what caa_podnet_start() made; safe after a failed or no start. */
void caa_podnet_stop(caa_daemon_t *d);

/* Refuses a pod network namespace that is the daemon's own or the host's
 * (process 1's): by identity (device and inode of the namespace), not by
 * path, since any path can name either. The tunnel's tc redirect would
 * otherwise take the node's own traffic to the pod VM. 0, or -EPERM (with
 * `err` saying which, INVALID_ARGUMENT) or the error of stat(). */
int caa_podnet_check_netns(const char *path, pp_error_t *err);
/* Takes the pod's index and inspects its namespace into sb->podnet (after
 * caa_podnet_check_netns()). */
int caa_podnet_prepare(caa_sandbox_t *sb, pp_error_t *err);
/* The node end of the tunnel toward the instance, off the loop; `cb` gets
 * 0 or a negative errno with `err`. */
int caa_podnet_up(caa_sandbox_t *sb, caa_podnet_cb cb);
/* Removes the node end; `cb` as above. */
int caa_podnet_down(caa_sandbox_t *sb, caa_podnet_cb cb);
/* Gives the pod's index back. */
void caa_podnet_release(caa_sandbox_t *sb);

#endif
