/* Instance type selection (see instance_type.h). */
#include "providers/instance_type.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "providers/provider.h"
#include "util/grpc_codes.h"

static int cmp_type(const void *a, const void *b)
{
    const pp_instance_type_t *x = a, *y = b;
    if (x->gpus != y->gpus)
        return x->gpus < y->gpus ? -1 : 1;
    if (x->memory_mib != y->memory_mib)
        return x->memory_mib < y->memory_mib ? -1 : 1;
    if (x->vcpus != y->vcpus)
        return x->vcpus < y->vcpus ? -1 : 1;
    return strcmp(x->name, y->name);
}

void pp_instance_types_sort(pp_instance_type_t *types, size_t n)
{
    if (types != NULL && n > 1)
        qsort(types, n, sizeof(*types), cmp_type);
}

int pp_instance_type_needs_specs(const pp_instance_type_want_t *want)
{
    if (want->machine_type != NULL && want->machine_type[0] != '\0')
        return 0;
    return want->gpus > 0 || want->vcpus > 0 || want->memory_mib > 0;
}

static int allowed(const pp_instance_type_list_t *l, const char *name)
{
    if (l->nallowed == 0)
        return l->default_type != NULL && strcmp(l->default_type, name) == 0;
    for (size_t i = 0; i < l->nallowed; i++)
        if (strcmp(l->allowed[i], name) == 0)
            return 1;
    return 0;
}

static int put(const char *name, char *out, size_t outlen, pp_error_t *err)
{
    if (name == NULL || name[0] == '\0')
        return pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, -ENOENT,
                                   "no default instance type is set");
    if ((size_t)snprintf(out, outlen, "%s", name) >= outlen)
        return pp_error_set(err, -ENAMETOOLONG, "instance type `%s` is too long", name);
    return 0;
}

/* The allow-list as text for messages: "a, b, c" (at most ~200 bytes). */
static void describe(const pp_instance_type_list_t *l, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    size_t count = l->nallowed ? l->nallowed : 1;
    for (size_t i = 0; i < count && n + 1 < len; i++) {
        const char *name = l->nallowed ? l->allowed[i] : l->default_type;
        int w = snprintf(buf + n, len - n, "%s`%s`", i ? ", " : "", name ? name : "");
        if (w < 0 || (size_t)w >= len - n) {
            snprintf(buf + (len > 5 ? len - 5 : 0), len > 5 ? 5 : len, "...");
            return;
        }
        n += (size_t)w;
    }
}

int pp_instance_type_select(const pp_instance_type_list_t *l, const pp_instance_type_want_t *w,
                            char *out, size_t outlen, pp_error_t *err)
{
    const char *setting = l->setting ? l->setting : "instance types";
    char list[256];
    if (w->machine_type != NULL && w->machine_type[0] != '\0') {
        if (allowed(l, w->machine_type))
            return put(w->machine_type, out, outlen, err);
        describe(l, list, sizeof(list));
        return pp_error_set_status(err, PP_GRPC_INVALID_ARGUMENT, -EINVAL,
                                   "instance type `%s` is not allowed: `%s` allows %s",
                                   w->machine_type, setting, list);
    }
    if (!pp_instance_type_needs_specs(w))
        return put(l->default_type, out, outlen, err);

    /* The smallest allowed type that fits, in sorted order. */
    const pp_instance_type_t *best = NULL;
    for (size_t i = 0; i < l->nspecs; i++) {
        const pp_instance_type_t *t = &l->specs[i];
        if (!allowed(l, t->name))
            continue;
        if (w->gpus > 0 ? t->gpus < w->gpus : t->gpus > 0)
            continue;
        if (t->vcpus < w->vcpus || t->memory_mib < w->memory_mib)
            continue;
        if (best == NULL || cmp_type(t, best) < 0)
            best = t;
    }
    if (best != NULL)
        return put(best->name, out, outlen, err);
    describe(l, list, sizeof(list));
    if (w->gpus > 0)
        return pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, -ENOENT,
                                   "no instance type in `%s` (%s) has %u GPUs, %u vCPUs and %u MiB",
                                   setting, list, w->gpus, w->vcpus, w->memory_mib);
    return pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, -ENOENT,
                               "no instance type in `%s` (%s) has %u vCPUs and %u MiB", setting,
                               list, w->vcpus, w->memory_mib);
}

int pp_instance_spec_check(const struct pp_instance_spec_s *spec, size_t sandbox_max,
                           size_t name_max, size_t image_max, size_t user_data_max)
{
    if (spec == NULL || spec->sandbox_id == NULL || spec->sandbox_id[0] == '\0' ||
        strlen(spec->sandbox_id) >= sandbox_max || spec->instance_name == NULL ||
        spec->instance_name[0] == '\0' || strlen(spec->instance_name) >= name_max)
        return -EINVAL;
    if (spec->user_data_len > user_data_max)
        return -EMSGSIZE;
    if ((spec->machine_type && strlen(spec->machine_type) >= PP_INSTANCE_TYPE_NAME_MAX) ||
        (spec->image && strlen(spec->image) >= image_max))
        return -EINVAL;
    return 0;
}
