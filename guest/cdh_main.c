/* confidential-data-hub: the confidential data hub daemon (cdh.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cdh.h"
#include "guest_main.h"
#include "util/cleanup.h"
#include "util/json_wipe.h"
#include "util/settings.h"

#define LOG "confidential-data-hub"

typedef struct cdh_settings_s {
    char config[4096];
    char config_long[4096];
    char keys[4096];
} cdh_settings_t;

static const pp_setting_t items[] = {
    PP_SETTING_STR(cdh_settings_t, config, NULL, "c", NULL, "cdh.toml to read"),
    PP_SETTING_STR(cdh_settings_t, config_long, NULL, "config", NULL, "the same as -c"),
    PP_SETTING_STR(cdh_settings_t, keys, NULL, "sealed-secret-keys", GUEST_CDH_SEALED_KEYS,
                   "where sealed-secret verification keys named by a plain `kid` are"),
};
static const pp_settings_table_t table = {"confidential-data-hub", items, PP_ARRAY_SIZE(items)};

int main(int argc, char **argv)
{
    pp_json_wipe_on_free();
    signal(SIGPIPE, SIG_IGN);
    cdh_settings_t s;
    pp_error_t err = {0};
    int r = pp_settings_load(&table, &s, argc - 1, argv + 1, 0, &err);
    if (r == PP_SETTINGS_HELP) {
        pp_settings_usage(stdout, &table);
        return 0;
    }
    if (r < 0) {
        fprintf(stderr, "confidential-data-hub: %s\n", err.message);
        return 2;
    }
    const char *path = s.config[0] ? s.config : s.config_long;
    guest_cdh_cfg_t cfg;
    if (!path[0]) {
        fprintf(stderr, "confidential-data-hub: `-c`: a cdh.toml is required ([kbc] name and "
                        "url)\n");
        return 2;
    }
    if (guest_cdh_cfg_load(path, &cfg, &err) < 0) {
        fprintf(stderr, "confidential-data-hub: %s\n", err.message);
        return 2;
    }
    guest_cdh_opts_t o = {.cfg = &cfg, .keys_dir = s.keys};
    r = guest_run(LOG, &o, GUEST_RUN_CDH, &err);
    guest_cdh_cfg_fini(&cfg);
    if (r < 0) {
        fprintf(stderr, "confidential-data-hub: %s\n", err.message);
        return r == -ENOTSUP || r == -EINVAL ? 2 : 1;
    }
    return 0;
}
