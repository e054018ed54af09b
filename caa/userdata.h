/* The user data each pod VM gets (design.md §4 "User data"): the
 * forwarder's configuration (apf.json, with the pod VM's TLS material and
 * pod network), image pull credentials (auth.json) and the pod's initdata,
 * as #cloud-config. */
#ifndef CAA_USERDATA_H
#define CAA_USERDATA_H

#include "context.h"
#include "sandbox.h"
#include "util/error.h"

/* Checks the pod's initdata (annotation, else INITDATA) and keeps it
 * gzip+base64 in sb->initdata_b64 (NULL when none), its digest in
 * sb->initdata_digest. */
int caa_initdata_prepare(caa_daemon_t *d, caa_sandbox_t *sb, const char *annotation,
                         pp_error_t *err);
/* At CreateVM, before the pod network is known: checks what the user data
 * can be checked for then, so that a pod that cannot get it fails at once.
 * The TLS material can be made (the CA is ready: the TLS module is mapped
 * at the first pod), and what is known of the size (initdata, auth.json)
 * is within the provider's limit. */
int caa_userdata_check(caa_daemon_t *d, caa_sandbox_t *sb, pp_error_t *err);
/* The #cloud-config for a sandbox, into sb->user_data (replacing what was
 * there): built once per pod VM, at StartVM, when the pod network is known
 * (it issues the pod VM's key). */
int caa_userdata_build(caa_daemon_t *d, caa_sandbox_t *sb, pp_error_t *err);

#endif
