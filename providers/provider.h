/* Cloud providers: one const operation table per back end.
 *
 * A provider creates, deletes and lists pod VM instances. create and delete
 * are asynchronous and idempotent (creating an instance for a sandbox that
 * already has one returns that one; deleting one that is gone succeeds).
 * Every instance is tagged with the node and the sandbox id so that
 * list_instances() finds it again after a restart.
 *
 * Threading: every op is called on the daemon's loop thread and must not
 * block it; callbacks fire on the loop thread, exactly once, unless the op
 * failed synchronously (returned a negative errno). */
#ifndef PP_PROVIDER_H
#define PP_PROVIDER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "metrics/metrics.h"
#include "util/error.h"
#include "util/module.h"
#include "util/settings.h"

/* The longest sandbox id, in bytes (CreateVM refuses longer ones). */
#define PP_SANDBOX_ID_MAX 127

typedef struct pp_provider_s pp_provider_t;

/* What CAA asks for. Strings are borrowed for the duration of the call. */
typedef struct pp_instance_spec_s {
    const char *sandbox_id;
    const char *instance_name; /* podvm-<pod>-<sid8> */
    const char *node_name;
    const char *user_data; /* #cloud-config, NUL-terminated */
    size_t user_data_len;
    const char *machine_type; /* annotation, or NULL */
    const char *image;        /* annotation, or NULL */
    unsigned vcpus;           /* 0 = provider default */
    unsigned memory_mib;      /* 0 = provider default */
    unsigned gpus;
    const char *initdata_digest; /* hex, or NULL: what a TEE binds at launch */
} pp_instance_spec_t;

typedef struct pp_instance_s {
    char id[128];  /* provider's instance id */
    char name[64]; /* instance name */
    char ip[64];   /* address the forwarder listens on */
    char sandbox_id[PP_SANDBOX_ID_MAX + 1];
} pp_instance_t;

/* `status` is 0 or a negative errno; `err` (when status < 0) says why. */
typedef void (*pp_provider_create_cb)(int status, const pp_instance_t *inst, const pp_error_t *err,
                                      void *data);
typedef void (*pp_provider_delete_cb)(int status, const pp_error_t *err, void *data);
typedef void (*pp_provider_list_cb)(int status, const pp_instance_t *insts, size_t n,
                                    const pp_error_t *err, void *data);

struct pp_provider_ops {
    const char *name;
    size_t state_size;    /* bytes of private state, zeroed, at pp_provider_t.state */
    size_t user_data_max; /* bytes; 0 = no limit */
    /* The provider's settings (util/settings.h), upstream's variables and
     * flags: each entry's offset is into the private state. pp_provider_new()
     * fills them from the defaults, the environment and the flags before
     * init; cloud-api-adaptor prints them with -h and -list-settings. NULL:
     * none. */
    const pp_settings_table_t *settings;
    /* Checks what no single setting can (rules across settings), reports
     * the first bad one by name, and builds the provider's state. */
    int (*init)(pp_provider_t *p, pp_error_t *err);
    int (*create_instance)(pp_provider_t *p, const pp_instance_spec_t *spec,
                           pp_provider_create_cb cb, void *data);
    int (*delete_instance)(pp_provider_t *p, const char *instance_id, pp_provider_delete_cb cb,
                           void *data);
    /* The instances tagged with this node (pp_provider_t.node_name), for
     * reconcile; the array lives until the callback returns. */
    int (*list_instances)(pp_provider_t *p, pp_provider_list_cb cb, void *data);
    /* Releases the state; no op is in flight. */
    void (*fini)(pp_provider_t *p);
};

struct pp_provider_s {
    const struct pp_provider_ops *ops;
    uv_loop_t *loop;
    const char *node_name; /* a copy, or NULL */
    void *state;           /* ops->state_size bytes */
    /* The daemon's registry, for the provider's HTTP client to count its
     * cloud calls in (pp_http_config_t.metrics); NULL when nobody counts. */
    pp_metrics_t *metrics;
};

/* The back ends built in. */
extern const struct pp_provider_ops pp_provider_local_ops;

/* The built-in registry: NULL-terminated; the first is the default. */
extern const struct pp_provider_ops *const pp_providers[];

/* The built-in provider called `name`; NULL or "" give the default. NULL
 * if none is built in by that name. */
const struct pp_provider_ops *pp_provider_find(const char *name);

/* Provider modules (providers/README.md): every provider but the built-in
 * ones is a module `pp-provider-<name>.so` that exports
 * `const struct pp_provider_ops pp_provider_<name>_ops`, looked for in the
 * directory pp_module_dir(module_dir) gives (util/module.h).
 *
 * Finds the provider `name` (NULL or "" give the default): built in, with
 * *module NULL; or loaded from its module, with *module the module, which
 * must stay open (pp_module_close()) until the provider is freed. Fails
 * with -ENOENT and `err` listing the providers there are when there is no
 * provider by that name, with -ENOEXEC when its module does not load, lacks
 * the symbol, or holds another provider. */
int pp_provider_load(const char *name, const char *module_dir, const struct pp_provider_ops **ops,
                     pp_module_t **module, pp_error_t *err);
/* Appends the names of the providers there are, built in first, to `out`
 * (", "-separated). */
void pp_provider_names(const char *module_dir, char *out, size_t size);
/* Allocates the provider (node_name is copied), fills the settings of
 * ops->settings from the environment and argv[0..argc) (flags only; flags of
 * other tables are skipped: the caller checks them with
 * pp_settings_check_flags()), and runs ops->init; on failure nothing is
 * left and `err` says which setting is wrong. */
int pp_provider_new(const struct pp_provider_ops *ops, uv_loop_t *loop, const char *node_name,
                    int argc, char **argv, pp_provider_t **out, pp_error_t *err);
/* The same, with a metrics registry that outlives the provider. */
int pp_provider_new_with_metrics(const struct pp_provider_ops *ops, uv_loop_t *loop,
                                 const char *node_name, int argc, char **argv,
                                 pp_metrics_t *metrics, pp_provider_t **out, pp_error_t *err);
/* Runs ops->fini and frees. No operation may be in flight, and it must not be
 * called from inside a provider callback. Handles the provider owned close
 * asynchronously: run the loop once more before uv_loop_close(). */
void pp_provider_free(pp_provider_t *p);

#endif
