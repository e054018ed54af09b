/* process-user-data: the command line over pud_provision() and pud_show().
 *
 * `process-user-data provision-files [flags]` and `process-user-data show
 * [flags]`, the flags read by the one settings reader (pud_settings), with
 * upstream's `--user-data-fetch-timeout` (`-t`, seconds, 180) and
 * `--version` (`-v`) among them. */
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pud.h"
#include "util/cleanup.h"
#include "util/json_wipe.h"
#include "util/log.h"
#include "util/settings.h"

#ifndef PP_VERSION
#define PP_VERSION "dev"
#endif

/* The flags, as given; pud_opts_t points into them. */
typedef struct pud_args_s {
    char from[PATH_MAX];
    char root[PATH_MAX];
    int64_t max_size;
    int64_t max_initdata;
    char metadata_url[512];
    int probe_timeout_ms;
    int wait_s;
    char tcti[256];
    char sysfs[PATH_MAX];
    char dev[PATH_MAX];
    char configfs[PATH_MAX];
    int version;
    int list_settings;
} pud_args_t;

#define WAIT_HELP "keep trying this long (seconds) while no source has user data"

static const pp_setting_t items[] = {
    PP_SETTING_STR(pud_args_t, from, NULL, "from", NULL,
                   "read the user data from this file instead of its sources"),
    PP_SETTING_STR(pud_args_t, root, NULL, "root", "/", "the root to provision under"),
    PP_SETTING_INT_OF(pud_args_t, max_size, NULL, "max-size", NULL, 1, INT64_MAX,
                      "largest user data, bytes (default: the library's)"),
    PP_SETTING_INT_OF(pud_args_t, max_initdata, NULL, "max-initdata", NULL, 1, INT64_MAX,
                      "largest initdata once decompressed, bytes (default: the library's)"),
    PP_SETTING_STR(pud_args_t, metadata_url, "PP_METADATA_URL", "metadata-url", NULL,
                   "metadata service base URL (default " PUD_METADATA_URL_DEFAULT
                   ", asked only when the root is /)"),
    PP_SETTING_INT_OF(pud_args_t, probe_timeout_ms, NULL, "probe-timeout", "2000", 1,
                      PUD_PROBE_TIMEOUT_MS_MAX, "time for each source, ms"),
    /* Three names for one field: the aliases come first, since each entry
     * clears its field before the default is applied. */
    PP_SETTING_INT_OF(pud_args_t, wait_s, NULL, "t", NULL, 0, 3600,
                      "the same as -user-data-fetch-timeout"),
    PP_SETTING_INT_OF(pud_args_t, wait_s, NULL, "wait", NULL, 0, 3600, WAIT_HELP),
    PP_SETTING_INT_OF(pud_args_t, wait_s, NULL, "user-data-fetch-timeout", "180", 0, 3600,
                      WAIT_HELP " (upstream's name)"),
    PP_SETTING_STR(pud_args_t, tcti, NULL, "tcti", NULL,
                   "TPM TCTI (default device:<dev>/tpmrm0 when present)"),
    PP_SETTING_STR(pud_args_t, sysfs, NULL, "sysfs", NULL, "sysfs to look at (default <root>/sys)"),
    PP_SETTING_STR(pud_args_t, dev, NULL, "dev", NULL, "devices to look at (default <root>/dev)"),
    PP_SETTING_STR(pud_args_t, configfs, NULL, "configfs", NULL,
                   "configfs to look at (default <sysfs>/kernel/config)"),
    PP_SETTING_BOOL_OF(pud_args_t, version, NULL, "version", NULL, "print the version and exit"),
    PP_SETTING_BOOL_OF(pud_args_t, version, NULL, "v", NULL, "the same as -version"),
    PP_SETTING_BOOL_OF(pud_args_t, list_settings, NULL, "list-settings", NULL,
                       "print every setting, one a line, and exit"),
};

static const pp_settings_table_t pud_settings = {"process-user-data", items, PP_ARRAY_SIZE(items)};

typedef struct command_s {
    const char *name;
    int (*run)(const pud_opts_t *o, pp_error_t *err);
} command_t;

static int run_provision(const pud_opts_t *o, pp_error_t *err)
{
    return pud_provision(o, err);
}

static int run_show(const pud_opts_t *o, pp_error_t *err)
{
    return pud_show(o, stdout, err);
}

static const command_t commands[] = {
    {"provision-files", run_provision},
    {"show", run_show},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: process-user-data provision-files [flags]\n"
               "       process-user-data show [flags]\n"
               "       process-user-data --version\n"
               "\n"
               "provision-files reads the user data (--from FILE, else the first source that\n"
               "has it: the config drive, mounted at <root>/media/cidata or an iso9660 volume\n"
               "labelled cidata; then the Azure, AWS, GCP and IBM Cloud metadata services, the\n"
               "one the DMI strings name first), validates it, checks initdata against a\n"
               "launch-bound TEE value (configfs-tsm), extends PCR8 on a TPM, and writes\n"
               "/run/peerpod/ under the root (default /). show prints what is there, the\n"
               "source, the TEE, and checks the initdata digest.\n\n");
    pp_settings_usage(f, &pud_settings);
}

static const char *opt(const char *s)
{
    return s[0] != '\0' ? s : NULL;
}

int main(int argc, char **argv)
{
    pp_json_wipe_on_free();
    pud_args_t a;
    pp_error_t err = {0};
    const command_t *cmd = NULL;
    if (argc >= 2 && argv[1][0] != '-') {
        for (size_t i = 0; i < PP_ARRAY_SIZE(commands); i++)
            if (strcmp(argv[1], commands[i].name) == 0)
                cmd = &commands[i];
        if (cmd == NULL) {
            fprintf(stderr, "process-user-data: unknown command `%s`\n", argv[1]);
            usage(stderr);
            return 2;
        }
    }
    int first = cmd != NULL ? 2 : 1;
    int r = pp_settings_load(&pud_settings, &a, argc - first, argv + first, 0, &err);
    if (r == PP_SETTINGS_HELP) {
        usage(stdout);
        return 0;
    }
    if (r < 0) {
        fprintf(stderr, "process-user-data: %s\n", err.message);
        return 2;
    }
    if (a.list_settings) {
        pp_settings_list(stdout, &pud_settings);
        return 0;
    }
    if (a.version) {
        printf("process-user-data %s\n", PP_VERSION);
        return 0;
    }
    if (cmd == NULL) {
        usage(stderr);
        return 2;
    }
    if (a.metadata_url[0] != '\0' && strncmp(a.metadata_url, "http://", 7) != 0 &&
        strncmp(a.metadata_url, "https://", 8) != 0) {
        fprintf(stderr,
                "process-user-data: `-metadata-url`: `%s` is not an http:// or https:// "
                "URL\n",
                a.metadata_url);
        return 2;
    }
    pud_opts_t o = {
        .root = a.root[0] != '\0' ? a.root : "/",
        .from = opt(a.from),
        .max_size = (size_t)a.max_size,
        .max_initdata = (size_t)a.max_initdata,
        .metadata_url = opt(a.metadata_url),
        .probe_timeout_ms = (unsigned)a.probe_timeout_ms,
        .wait_s = (unsigned)a.wait_s,
        .tcti = opt(a.tcti),
        .sysfs = opt(a.sysfs),
        .dev = opt(a.dev),
        .configfs = opt(a.configfs),
    };

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        PP_ERR(PUD_LOG, "curl: global initialization failed");
        return 1;
    }
    r = cmd->run(&o, &err);
    curl_global_cleanup();
    if (r < 0) {
        PP_ERR(PUD_LOG, "%s: %s", cmd->name, err.message[0] ? err.message : "failed");
        return 1;
    }
    return 0;
}
