/* The provider registry: the built-in table, and provider modules. */
#include "providers/provider.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/module.h"

#define MODULE_PREFIX "pp-provider-"

const struct pp_provider_ops *const pp_providers[] = {
    &pp_provider_local_ops,
    NULL,
};

const struct pp_provider_ops *pp_provider_find(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return pp_providers[0];
    for (size_t i = 0; pp_providers[i] != NULL; i++)
        if (strcmp(pp_providers[i]->name, name) == 0)
            return pp_providers[i];
    return NULL;
}

void pp_provider_names(const char *module_dir, char *out, size_t size)
{
    if (size == 0)
        return;
    for (size_t i = 0; pp_providers[i] != NULL; i++) {
        size_t used = strnlen(out, size);
        if (used < size)
            snprintf(out + used, size - used, "%s%s", used > 0 ? ", " : "", pp_providers[i]->name);
    }
    char dir[PATH_MAX];
    if (pp_module_dir(module_dir, dir, sizeof(dir)) == 0)
        pp_module_list(dir, MODULE_PREFIX, out, size);
}

/* Names are file and symbol names: keep them to [a-z0-9_-]. */
static int valid_name(const char *name)
{
    if (name[0] == '\0' || strlen(name) > 32)
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return 0;
    return 1;
}

/* Whether every setting of the table lies inside the provider's state. */
static int settings_fit(const struct pp_provider_ops *o)
{
    const pp_settings_table_t *t = o->settings;
    if (t == NULL)
        return 1;
    if (t->items == NULL && t->n > 0)
        return 0;
    for (size_t i = 0; i < t->n; i++) {
        const pp_setting_t *s = &t->items[i];
        if (s->kind < PP_SETTING_NOOP &&
            (s->offset > o->state_size || s->size == 0 || s->size > o->state_size - s->offset))
            return 0;
    }
    return 1;
}

static int unknown(const char *name, const char *dir, pp_error_t *err)
{
    char names[512] = "";
    pp_provider_names(dir, names, sizeof(names));
    char where[PATH_MAX];
    if (pp_module_dir(dir, where, sizeof(where)) < 0)
        where[0] = '\0';
    return pp_error_set(err, -ENOENT, "unknown provider `%s`; available: %s (modules from `%s`)",
                        name, names, where);
}

int pp_provider_load(const char *name, const char *module_dir, const struct pp_provider_ops **ops,
                     pp_module_t **module, pp_error_t *err)
{
    *ops = pp_provider_find(name);
    *module = NULL;
    if (*ops != NULL)
        return 0;
    if (!valid_name(name))
        return unknown(name, module_dir, err);
    char dir[PATH_MAX], file[64], sym[64];
    int r = pp_module_dir(module_dir, dir, sizeof(dir));
    if (r < 0)
        return pp_error_set(err, r, "module directory `%s` is too long", module_dir);
    snprintf(file, sizeof(file), MODULE_PREFIX "%s" PP_MODULE_SUFFIX, name);
    /* The symbol is a C identifier. */
    snprintf(sym, sizeof(sym), "pp_provider_%s_ops", name);
    for (char *p = sym; *p; p++)
        if (*p == '-')
            *p = '_';
    pp_module_t *m = NULL;
    if ((r = pp_module_open(dir, file, &m, err)) < 0)
        return r == -ENOENT ? unknown(name, module_dir, err) : r;
    const struct pp_provider_ops *o = pp_module_sym(m, sym, err);
    if (o == NULL) {
        pp_module_close(m);
        return -ENOEXEC;
    }
    if (o->name == NULL || strcmp(o->name, name) != 0 || o->init == NULL ||
        o->create_instance == NULL || o->delete_instance == NULL || o->list_instances == NULL ||
        !settings_fit(o)) {
        pp_error_set(err, -ENOEXEC, "module `%s`: `%s` is not the `%s` provider's table",
                     pp_module_path(m), sym, name);
        pp_module_close(m);
        return -ENOEXEC;
    }
    *ops = o;
    *module = m;
    return 0;
}
int pp_provider_new(const struct pp_provider_ops *ops, uv_loop_t *loop, const char *node_name,
                    int argc, char **argv, pp_provider_t **out, pp_error_t *err)
{
    return pp_provider_new_with_metrics(ops, loop, node_name, argc, argv, NULL, out, err);
}

int pp_provider_new_with_metrics(const struct pp_provider_ops *ops, uv_loop_t *loop,
                                 const char *node_name, int argc, char **argv,
                                 pp_metrics_t *metrics, pp_provider_t **out, pp_error_t *err)
{
    if (ops == NULL || loop == NULL || out == NULL || (argc > 0 && argv == NULL))
        return pp_error_set(err, -EINVAL, "provider: missing argument");
    if (!settings_fit(ops))
        return pp_error_set(err, -EINVAL, "provider `%s`: a setting lies outside its state",
                            ops->name);
    pp_provider_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return pp_error_set(err, -ENOMEM, "provider `%s`: out of memory", ops->name);
    p->ops = ops;
    p->loop = loop;
    p->metrics = metrics;
    if (node_name != NULL && (p->node_name = strdup(node_name)) == NULL)
        goto nomem;
    if (ops->state_size > 0 && (p->state = calloc(1, ops->state_size)) == NULL)
        goto nomem;
    int rc = 0;
    if (ops->settings != NULL)
        rc = pp_settings_load(ops->settings, p->state, argc, argv, PP_SETTINGS_LENIENT, err);
    if (rc == PP_SETTINGS_HELP)
        rc = pp_error_set(err, -EINVAL, "provider `%s`: help asked for", ops->name);
    if (rc == 0 && ops->init != NULL)
        rc = ops->init(p, err);
    if (rc < 0) {
        free(p->state);
        free((char *)p->node_name);
        free(p);
        return rc;
    }
    *out = p;
    return 0;

nomem:
    free((char *)p->node_name);
    free(p);
    return pp_error_set(err, -ENOMEM, "provider `%s`: out of memory", ops->name);
}

void pp_provider_free(pp_provider_t *p)
{
    if (p == NULL)
        return;
    if (p->ops->fini != NULL)
        p->ops->fini(p);
    free(p->state);
    free((char *)p->node_name);
    free(p);
}
