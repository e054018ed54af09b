/* Recovery at start-up: the sandbox records (state.h) against the
 * provider's instances. */
#ifndef CAA_RECOVER_H
#define CAA_RECOVER_H

#include "context.h"
#include "util/error.h"

/* Loads every record, asks the provider for its instances, and reconciles:
 * adopts what is live, finishes what was interrupted, deletes orphan
 * instances and frees orphan pod indexes. `cb` fires once when done
 * (status 0, or the provider's failure). */
int caa_recover(caa_daemon_t *d, void (*cb)(caa_daemon_t *d, int status, const pp_error_t *err),
                pp_error_t *err);

/* Records of pods with a pod VM that may be running (running, starting,
 * stopping, or holding an instance), counted before recovery: start-up
 * refuses to replace a lost CA while there are any. Unreadable records
 * count too: their pods may be running. */
size_t caa_recover_count_live(caa_daemon_t *d);

#endif
