/* api-server-rest: the REST API in front of the guest components (rest.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>

#include "config.h"
#include "guest_main.h"
#include "rest.h"
#include "util/cleanup.h"
#include "util/settings.h"

#ifndef PP_VERSION
#define PP_VERSION "dev"
#endif

typedef struct rest_settings_s {
    char features[16];
    char bind[128];
    char aa[4096];
    char cdh[4096];
} rest_settings_t;

static const pp_setting_t items[] = {
    PP_SETTING_STR(rest_settings_t, features, NULL, "features", "resource",
                   "what to serve: resource (/cdh), attestation (/aa), all"),
    PP_SETTING_STR(rest_settings_t, bind, NULL, "bind", GUEST_REST_BIND,
                   "the loopback address and port to serve"),
    PP_SETTING_STR(rest_settings_t, aa, NULL, "aa-socket", "unix://" GUEST_AA_SOCKET,
                   "the attestation agent's socket"),
    PP_SETTING_STR(rest_settings_t, cdh, NULL, "cdh-socket", "unix://" GUEST_CDH_SOCKET,
                   "the data hub's socket"),
};
static const pp_settings_table_t table = {"api-server-rest", items, PP_ARRAY_SIZE(items)};

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    rest_settings_t s;
    pp_error_t err = {0};
    int r = pp_settings_load(&table, &s, argc - 1, argv + 1, 0, &err);
    if (r == PP_SETTINGS_HELP) {
        pp_settings_usage(stdout, &table);
        return 0;
    }
    char aa[4096], cdh[4096];
    if (r == 0)
        r = guest_socket_arg(s.aa, "aa-socket", aa, sizeof(aa), &err);
    if (r == 0)
        r = guest_socket_arg(s.cdh, "cdh-socket", cdh, sizeof(cdh), &err);
    if (r < 0) {
        fprintf(stderr, "api-server-rest: %s\n", err.message);
        return 2;
    }
    guest_rest_opts_t o = {.bind = s.bind,
                           .features = s.features,
                           .aa_socket = aa,
                           .cdh_socket = cdh,
                           .version = PP_VERSION};
    r = guest_run("api-server-rest", &o, GUEST_RUN_REST, &err);
    if (r < 0) {
        fprintf(stderr, "api-server-rest: %s\n", err.message);
        return r == -EINVAL ? 2 : 1;
    }
    return 0;
}
