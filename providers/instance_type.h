/* Instance type selection, shared by the cloud providers.
 *
 * The allow-list is the provider's list of instance types
 * (PODVM_INSTANCE_TYPES and the like), or, when that is empty, the default
 * type alone. The choice, in order:
 *   1. an explicit machine type (the pod's annotation), if it is allowed;
 *   2. with GPUs asked for: the smallest allowed type with at least that
 *      many GPUs, vCPUs and MiB;
 *   3. with vCPUs or memory asked for: the smallest allowed type without
 *      GPUs that has at least as many of each;
 *   4. the default type.
 * "Smallest" is the order of pp_instance_types_sort(): GPUs, then memory,
 * then vCPUs, ascending; names break ties so the choice is stable. The
 * result is always in the allow-list. */
#ifndef PP_PROVIDERS_INSTANCE_TYPE_H
#define PP_PROVIDERS_INSTANCE_TYPE_H

#include <stddef.h>

#include "util/error.h"

#define PP_INSTANCE_TYPE_NAME_MAX 64

typedef struct pp_instance_type_s {
    char name[PP_INSTANCE_TYPE_NAME_MAX];
    unsigned vcpus;
    unsigned memory_mib;
    unsigned gpus;
} pp_instance_type_t;

typedef struct pp_instance_type_want_s {
    const char *machine_type; /* NULL or "" = none */
    unsigned vcpus;           /* 0 = any */
    unsigned memory_mib;      /* 0 = any */
    unsigned gpus;            /* 0 = none wanted */
} pp_instance_type_want_t;

typedef struct pp_instance_type_list_s {
    const char *setting;        /* named in messages: "PODVM_INSTANCE_TYPES" */
    const char *const *allowed; /* may be empty */
    size_t nallowed;
    const char *default_type;        /* "PODVM_INSTANCE_TYPE"'s value */
    const pp_instance_type_t *specs; /* what the cloud said of the allowed types */
    size_t nspecs;
} pp_instance_type_list_t;

void pp_instance_types_sort(pp_instance_type_t *types, size_t n);

/* Whether a fit by size is asked for (steps 2 and 3), so that the caller
 * knows it needs the specs. */
int pp_instance_type_needs_specs(const pp_instance_type_want_t *want);

/* Writes the chosen type to `out`. Errors: -EINVAL with gRPC
 * INVALID_ARGUMENT for a machine type outside the allow-list; -ENOENT with
 * FAILED_PRECONDITION when no allowed type is big enough or the specs are
 * missing; -ENAMETOOLONG. */
int pp_instance_type_select(const pp_instance_type_list_t *list,
                            const pp_instance_type_want_t *want, char *out, size_t outlen,
                            pp_error_t *err);

/* What a cloud provider's create checks of a spec before anything else:
 * a sandbox id and an instance name, each shorter than the room the
 * provider keeps for it, a machine type that fits
 * PP_INSTANCE_TYPE_NAME_MAX, an image shorter than `image_max`; -EINVAL if
 * not. User data over `user_data_max` bytes: -EMSGSIZE. */
struct pp_instance_spec_s;
int pp_instance_spec_check(const struct pp_instance_spec_s *spec, size_t sandbox_max,
                           size_t name_max, size_t image_max, size_t user_data_max);

#endif
