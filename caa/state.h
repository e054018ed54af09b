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
/* The record's format; a record of another is not read (set aside). */
#define CAA_STATE_VERSION 1
/* The largest record read. */
#define CAA_STATE_MAX (64 * 1024)
/* A record that could not be read is renamed to this, plus a dot and the
 * time, and kept: recovery leaves its pod directory and its instance
 * alone, and says so at every start until someone looks. */
#define CAA_STATE_SET_ASIDE "state.json.unreadable"

/* The sandbox's record as text (malloc'd); 0 or -ENOMEM. */
int caa_state_encode(const caa_sandbox_t *sb, char **out, pp_error_t *err);
/* Writes the sandbox's record; 0 or a negative errno with `err`. */
int caa_state_save(caa_sandbox_t *sb, pp_error_t *err);
/* Writes the pod's initdata (gzip+base64) next to the record, if any. */
int caa_state_save_initdata(caa_sandbox_t *sb, pp_error_t *err);
/* Reads one record into a new sandbox (not linked). -ENOENT when there is
 * none; -EBADMSG (err says why) when it cannot be read as a record of this
 * version: wrong JSON, another version, a missing field, a wrong type. */
int caa_state_load(caa_daemon_t *d, const char *id, caa_sandbox_t **out, pp_error_t *err);
/* Decodes a record's bytes into `sb` (whose id is set: the record's must
 * match). 0, -EBADMSG with `err` saying what is wrong, or -ENOMEM. The
 * state loader's fuzz target calls this. */
int caa_state_decode(caa_sandbox_t *sb, const char *text, size_t len, pp_error_t *err);

const char *caa_state_name(enum caa_sandbox_state s);
int caa_state_parse(const char *name, enum caa_sandbox_state *out);

#endif
