/* The provider registry: one table, guarded by build options. */
#include "providers/provider.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifdef PP_PROVIDER_AWS
extern const struct pp_provider_ops pp_provider_aws_ops;
#endif
#ifdef PP_PROVIDER_LIBVIRT
extern const struct pp_provider_ops pp_provider_libvirt_ops;
#endif

const struct pp_provider_ops *const pp_providers[] = {
    &pp_provider_local_ops,
#ifdef PP_PROVIDER_AWS
    &pp_provider_aws_ops,
#endif
#ifdef PP_PROVIDER_LIBVIRT
    &pp_provider_libvirt_ops,
#endif
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

int pp_provider_new(const struct pp_provider_ops *ops, uv_loop_t *loop, const char *node_name,
                    pp_provider_t **out, pp_error_t *err)
{
    if (ops == NULL || loop == NULL || out == NULL)
        return pp_error_set(err, -EINVAL, "provider: missing argument");
    pp_provider_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return pp_error_set(err, -ENOMEM, "provider `%s`: out of memory", ops->name);
    p->ops = ops;
    p->loop = loop;
    if (node_name != NULL && (p->node_name = strdup(node_name)) == NULL)
        goto nomem;
    if (ops->state_size > 0 && (p->state = calloc(1, ops->state_size)) == NULL)
        goto nomem;
    int rc = ops->init != NULL ? ops->init(p, err) : 0;
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
