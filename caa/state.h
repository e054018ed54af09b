/* Sandbox records: what CAA knows of each pod, kept under PODS_DIR/<sid>/
 * so that a restart (even after SIGKILL) finds every VM again.
 *
 * A record is written atomically (temp file, fsync, rename, fsync of the
 * directory) before each side effect outside the process and after it:
 * "starting" is on disk before an instance is asked for, the instance id
 * after it exists, "stopping" before the teardown. Recovery reads the
 * records, compares them with the provider's instances, adopts what is
 * live, finishes what was interrupted and deletes orphans. */
#ifndef CAA_STATE_H
#define CAA_STATE_H

#include "context.h"
#include "sandbox.h"
#include "util/error.h"

#define CAA_STATE_FILE    "state.json"
#define CAA_INITDATA_FILE "initdata"

/* Writes the sandbox's record; 0 or a negative errno with `err`. */
int caa_state_save(caa_sandbox_t *sb, pp_error_t *err);
/* Writes the pod's initdata (gzip+base64) next to the record, if any. */
int caa_state_save_initdata(caa_sandbox_t *sb, pp_error_t *err);
/* Reads one record into a new sandbox (not linked). */
int caa_state_load(caa_daemon_t *d, const char *id, caa_sandbox_t **out, pp_error_t *err);

const char *caa_state_name(enum caa_sandbox_state s);
int caa_state_parse(const char *name, enum caa_sandbox_state *out);

#endif
