/* A module whose settings table reaches past its private state. */
#include <errno.h>

#include "providers/provider.h"

typedef struct misfit_state_s {
    char small[8];
    char big[64];
} misfit_state_t;

static const pp_setting_t items[] = {
    PP_SETTING_STR(misfit_state_t, big, "MISFIT_BIG", NULL, NULL, "past the state's end"),
};
static const pp_settings_table_t table = {"misfit provider", items, 1};

static int misfit_init(pp_provider_t *p, pp_error_t *err)
{
    (void)p;
    (void)err;
    return 0;
}

static int misfit_create(pp_provider_t *p, const pp_instance_spec_t *spec, pp_provider_create_cb cb,
                         void *data)
{
    (void)p;
    (void)spec;
    (void)cb;
    (void)data;
    return -ENOTSUP;
}

static int misfit_delete(pp_provider_t *p, const char *id, pp_provider_delete_cb cb, void *data)
{
    (void)p;
    (void)id;
    (void)cb;
    (void)data;
    return -ENOTSUP;
}

static int misfit_list(pp_provider_t *p, pp_provider_list_cb cb, void *data)
{
    (void)p;
    (void)cb;
    (void)data;
    return -ENOTSUP;
}

const struct pp_provider_ops pp_provider_misfit_ops = {
    .name = "misfit",
    .state_size = sizeof(char[8]), /* the table is for a larger state */
    .settings = &table,
    .init = misfit_init,
    .create_instance = misfit_create,
    .delete_instance = misfit_delete,
    .list_instances = misfit_list,
};
