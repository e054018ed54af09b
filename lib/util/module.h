/* Loadable modules: shared objects that cloud-api-adaptor maps only when a
 * setting asks for what they hold (a cloud provider, TLS), so that the
 * libraries they pull in (libcurl, libxml2, OpenSSL, libvirt) cost nothing
 * to a daemon that does not use them.
 *
 * A module is built by the CMake function pp_module() (cmake/module.cmake):
 * it carries its own copies of the static libraries it links, hidden, and
 * exports only `pp_module_abi` and the symbols it names. The loader refuses
 * a module whose `pp_module_abi` differs from PP_MODULE_ABI, so a module
 * from another build fails with a message rather than a crash.
 *
 * Where modules are looked for (pp_module_dir()): the directory given by a
 * setting when it is not empty; else `<directory of the executable>/../lib/
 * peerpod` when that exists (the build tree, or a relocatable install);
 * else PP_MODULE_INSTALL_DIR, fixed at build time.
 *
 * Modules stay loaded until pp_module_close(); a module is never closed
 * while anything it made is alive. Not thread-safe: one thread at a time. */
#ifndef PP_UTIL_MODULE_H
#define PP_UTIL_MODULE_H

#include <stddef.h>

#include "util/error.h"

/* Bump when anything that crosses a module boundary changes: the provider
 * ops table and pp_provider_t (providers/provider.h), the settings tables it
 * points to (util/settings.h), the TLS module's table (tls/lazy.h),
 * pp_tls_config_t, pp_error_t, pp_stream_filter_t, the metrics registry
 * (metrics/metrics.c: modules hold their own copy of the code that works on
 * the daemon's registry). */
#define PP_MODULE_ABI 3

#define PP_MODULE_SUFFIX ".so"

/* Defined in every module (lib/util/module_abi.c). */
extern const unsigned pp_module_abi;

typedef struct pp_module_s pp_module_t;

/* Fills `out` with the directory modules are looked for in (see above).
 * -ENAMETOOLONG when it does not fit. */
int pp_module_dir(const char *setting, char *out, size_t size);

/* Loads `<dir>/<file>` with every symbol resolved now. -ENOENT when the
 * file is not there; -ENOEXEC when it does not load or its ABI differs;
 * `err` says which file and why. */
int pp_module_open(const char *dir, const char *file, pp_module_t **out, pp_error_t *err);

/* The address of `symbol` in the module; NULL with `err` naming the module
 * and the symbol when it has none. */
void *pp_module_sym(pp_module_t *m, const char *symbol, pp_error_t *err);

/* The module's path. */
const char *pp_module_path(const pp_module_t *m);

void pp_module_close(pp_module_t *m);

/* Appends to `out` (", "-separated, after what `out` holds) the names
 * of the modules `<prefix><name>.so` in `dir`, sorted. Returns how many. */
size_t pp_module_list(const char *dir, const char *prefix, char *out, size_t size);

#endif
