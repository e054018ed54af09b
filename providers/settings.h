/* Provider settings from the environment, with upstream's variable names.
 *
 * Every reader leaves the default in `*out` when the variable is unset or
 * empty, and on a bad value fills `err` with a message that names the
 * variable and says what was expected. */
#ifndef PP_PROVIDER_SETTINGS_H
#define PP_PROVIDER_SETTINGS_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* The variable's value, or NULL when it is unset or empty. */
const char *pp_setting(const char *name);

/* Copies `value`, the value of variable `name`, into out[outlen]; too long,
 * or a character outside `chars` (when not NULL), is an error. */
int pp_setting_copy(const char *name, const char *value, char *out, size_t outlen,
                    const char *chars, pp_error_t *err);

/* Copies the value (or `def`, which may be NULL for "") into out[outlen];
 * too long, or a character outside `chars` (when not NULL), is an error. */
int pp_setting_str(const char *name, const char *def, char *out, size_t outlen, const char *chars,
                   pp_error_t *err);

/* true/false, 1/0, yes/no, any case. */
int pp_setting_bool(const char *name, int def, int *out, pp_error_t *err);

/* A whole number in [min, max]. */
int pp_setting_u64(const char *name, uint64_t def, uint64_t min, uint64_t max, uint64_t *out,
                   pp_error_t *err);

#endif
