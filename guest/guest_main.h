/* What the guest daemons' mains share: the socket argument, the TEE name,
 * and running a service on a loop until SIGTERM or SIGINT. */
#ifndef GUEST_MAIN_H
#define GUEST_MAIN_H

#include <stddef.h>

#include "attester.h"
#include "util/error.h"

enum guest_run_kind { GUEST_RUN_AA, GUEST_RUN_CDH, GUEST_RUN_REST };

/* "unix:///path" or "/path" into a path. */
int guest_socket_arg(const char *arg, const char *name, char *out, size_t size, pp_error_t *err);
/* "tpm", "snp", ... */
int guest_tee_parse(const char *name, guest_tee_t *out, pp_error_t *err);
/* Starts the service with `opts` (guest_aa_opts_t, guest_cdh_opts_t or
 * guest_rest_opts_t),
 * runs the loop until a signal, closes. 0 or -errno with `err`. */
int guest_run(const char *log, const void *opts, enum guest_run_kind kind, pp_error_t *err);

#endif
