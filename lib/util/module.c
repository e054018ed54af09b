#include "util/module.h"

#include "pp_module_abi.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef PP_MODULE_INSTALL_DIR
#define PP_MODULE_INSTALL_DIR "/usr/local/lib/peerpod"
#endif

struct pp_module_s {
    void *handle;
    char path[PATH_MAX];
};

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int pp_module_dir(const char *setting, char *out, size_t size)
{
    if (setting != NULL && setting[0] != '\0') {
        if ((size_t)snprintf(out, size, "%s", setting) >= size)
            return -ENAMETOOLONG;
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        /* <prefix>/bin/<exe> -> <prefix>/lib/peerpod */
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            slash = strrchr(exe, '/');
        }
        if (slash != NULL) {
            *slash = '\0';
            if ((size_t)snprintf(out, size, "%s/lib/peerpod", exe) < size && is_dir(out))
                return 0;
        }
    }
    if ((size_t)snprintf(out, size, "%s", PP_MODULE_INSTALL_DIR) >= size)
        return -ENAMETOOLONG;
    return 0;
}

int pp_module_open(const char *dir, const char *file, pp_module_t **out, pp_error_t *err)
{
    pp_module_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    if ((size_t)snprintf(m->path, sizeof(m->path), "%s/%s", dir, file) >= sizeof(m->path)) {
        free(m);
        return pp_error_set(err, -ENAMETOOLONG, "module path `%s/%s` is too long", dir, file);
    }
    if (access(m->path, R_OK) != 0) {
        int e = errno;
        pp_error_set(err, -e, "module `%s`: %s", m->path, strerror(e));
        free(m);
        return -e;
    }
    /* RTLD_NOW: a module that needs a symbol nobody has fails here, with
     * the symbol named, not at its first call. */
    m->handle = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
    if (m->handle == NULL) {
        const char *why = dlerror();
        pp_error_set(err, -ENOEXEC, "module `%s` does not load: %s", m->path,
                     why != NULL ? why : "unknown error");
        free(m);
        return -ENOEXEC;
    }
    const unsigned *abi = dlsym(m->handle, "pp_module_abi");
    if (abi == NULL || *abi != PP_MODULE_ABI) {
        if (abi == NULL)
            pp_error_set(err, -ENOEXEC, "module `%s` has no `pp_module_abi`: not a peerpod module",
                         m->path);
        else
            pp_error_set(err, -ENOEXEC,
                         "module `%s` was built for module ABI %08x, this program has %08x; "
                         "rebuild it with this program",
                         m->path, *abi, (unsigned)PP_MODULE_ABI);
        dlclose(m->handle);
        free(m);
        return -ENOEXEC;
    }
    *out = m;
    return 0;
}

void *pp_module_sym(pp_module_t *m, const char *symbol, pp_error_t *err)
{
    dlerror();
    void *p = dlsym(m->handle, symbol);
    if (p == NULL)
        pp_error_set(err, -ENOEXEC, "module `%s` has no symbol `%s`", m->path, symbol);
    return p;
}

const char *pp_module_path(const pp_module_t *m)
{
    return m->path;
}

void pp_module_close(pp_module_t *m)
{
    if (m == NULL)
        return;
    dlclose(m->handle);
    free(m);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t pp_module_list(const char *dir, const char *prefix, char *out, size_t size)
{
    DIR *dp = opendir(dir);
    if (dp == NULL)
        return 0;
    char *names[64];
    size_t n = 0, plen = strlen(prefix), slen = strlen(PP_MODULE_SUFFIX);
    struct dirent *de;
    while ((de = readdir(dp)) != NULL && n < sizeof(names) / sizeof(names[0])) {
        size_t len = strlen(de->d_name);
        if (len <= plen + slen || strncmp(de->d_name, prefix, plen) != 0 ||
            strcmp(de->d_name + len - slen, PP_MODULE_SUFFIX) != 0)
            continue;
        names[n] = strndup(de->d_name + plen, len - plen - slen);
        if (names[n] != NULL)
            n++;
    }
    closedir(dp);
    qsort(names, n, sizeof(names[0]), cmp_names);
    for (size_t i = 0; i < n; i++) {
        size_t used = strnlen(out, size);
        if (used < size)
            snprintf(out + used, size - used, "%s%s", used > 0 ? ", " : "", names[i]);
        free(names[i]);
    }
    return n;
}
