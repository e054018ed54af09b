/* Loadable modules: shared objects that cloud-api-adaptor maps only when a
 * setting asks for what they hold (a cloud provider, TLS), so that the
 * libraries they pull in (libcurl, libxml2, OpenSSL, libvirt) cost nothing
 * to a daemon that does not use them.
 *
 * A module is built by the CMake function pp_module() (cmake/module.cmake):
 * it carries its own copies of the static libraries it links, hidden, and
 * exports only `pp_module_abi` and the symbols it names. The loader refuses
 * a module whose `pp_module_abi` differs from its own, so a module built
 * against other declarations fails with a message rather than a crash.
 *
 * The stamp, PP_MODULE_ABI, is derived at build time (cmake/module.cmake):
 * the first 32 bits of a SHA-256 over what the compiler sees of the files
 * whose declarations cross a module boundary, comments and blank space left
 * out: providers/provider.h and tls/tls_ops.h with what they include (the
 * settings tables of util/settings.h, pp_error_t, pp_stream_filter_t,
 * pp_tls_config_t and the CA types, the initdata types), and
 * metrics/metrics.c, whose private structures the daemon's registry is
 * made of and whose code modules carry a copy of. A hash of the declarations rather than
 * sizeof/offsetof of each structure: the boundary is mostly tables of function pointers, whose
 * layout does not change when a function's parameters do, and a list of
 * structures and fields kept by hand is what went stale before.
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
