/* A module whose table names another provider than its file. */
#include "providers/provider.h"

const struct pp_provider_ops pp_provider_impostor_ops = {
    .name = "local",
};
