/* Finds the TLS module's table (tls_ops.h). */
#include "tls/tls_ops.h"

#include <limits.h>
#include <string.h>

int pp_tls_ops_load(const char *module_dir, pp_module_t **module, const pp_tls_ops_t **ops,
                    pp_error_t *err)
{
    char dir[PATH_MAX];
    int r = pp_module_dir(module_dir, dir, sizeof(dir));
    if (r < 0)
        return pp_error_set(err, r, "module directory `%s` is too long", module_dir);
    pp_module_t *m;
    if ((r = pp_module_open(dir, PP_TLS_MODULE_FILE, &m, err)) < 0)
        return pp_error_wrap(err, "TLS");
    const pp_tls_ops_t *t = pp_module_sym(m, PP_TLS_MODULE_SYMBOL, err);
    if (t == NULL) {
        pp_module_close(m);
        return pp_error_wrap(err, "TLS");
    }
    *module = m;
    *ops = t;
    return 0;
}
