/* Resource names as Compute Engine and IBM Cloud VPC take them: 1 to 63
 * characters of [a-z0-9-], a lowercase letter first, no '-' last (the
 * regular expression `[a-z]([-a-z0-9]{0,61}[a-z0-9])?`). Shared by the
 * providers whose clouds name instances so. */
#ifndef PP_PROVIDERS_NAMES_H
#define PP_PROVIDERS_NAMES_H

/* Whether `name` is such a name. */
#include <stddef.h>

int pp_cloud_name_valid(const char *name);

/* The instance name for the adaptor's `in` (podvm-<pod>-<sid8>): itself
 * when it is a valid name, else it lowercased, other characters mapped to
 * '-', at most 54 bytes without a trailing '-', then '-' and 8 hex digits
 * of its SHA-256 (so that two inputs stay apart). -EINVAL for "". */
int pp_cloud_instance_name(const char *in, char out[64]);

/* SHA-256 of `len` bytes. */
void pp_cloud_sha256(const void *data, size_t len, unsigned char out[32]);

#endif
