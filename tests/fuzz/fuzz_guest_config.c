/* aa.toml and cdh.toml on arbitrary bytes: the TOML reader and both
 * configuration readers must answer 0 or an error, never crash or leak;
 * what parses as TOML is walked whole. */
#include <stdint.h>
#include <stdlib.h>

#include "config.h"
#include "toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t walk(const guest_toml_t *t, unsigned depth)
{
    if (depth > GUEST_TOML_MAX_DEPTH + 2)
        abort();
    size_t n = 1;
    if (t->type == GUEST_TOML_ARRAY || t->type == GUEST_TOML_TABLE)
        for (size_t i = 0; i < t->len; i++)
            n += walk(t->items[i], depth + 1);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    guest_toml_t *t = NULL;
    pp_error_t err;
    /* Unknown keys are warned about: not for every input. */
    setenv("PP_LOG_LEVEL", "error", 0);
    if (guest_toml_parse((const char *)data, size, &t, &err) == 0) {
        walk(t, 0);
        guest_toml_free(t);
    } else if (t != NULL) {
        abort();
    }
    guest_aa_cfg_t aa;
    guest_aa_cfg_parse((const char *)data, size, &aa, &err);
    guest_aa_cfg_fini(&aa);
    guest_cdh_cfg_t cdh;
    guest_cdh_cfg_parse((const char *)data, size, &cdh, &err);
    guest_cdh_cfg_fini(&cdh);
    return 0;
}
