/* attestation-agent: the attestation agent daemon (aa.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "aa.h"
#include "guest_main.h"
#include "userdata/initdata.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/json_wipe.h"
#include "util/log.h"
#include "util/settings.h"

#define LOG "attestation-agent"

typedef struct aa_settings_s {
    char config[4096];
    char config_long[4096];
    char sock[4096];
    char initdata[4096];
    char initdata_toml[4096];
    char tpm_device[4096];
    char tcti[512];
    char ak_handle[16];
    char tee[16];
    char root[4096];
    char eventlog[4096];
    char tsm_dir[4096];
    char imds[256];
    int az_refresh_ms;
} aa_settings_t;

static const pp_setting_t items[] = {
    PP_SETTING_STR(aa_settings_t, config, NULL, "c", NULL, "aa.toml to read"),
    PP_SETTING_STR(aa_settings_t, config_long, NULL, "config_file", NULL, "the same as -c"),
    PP_SETTING_STR(aa_settings_t, sock, NULL, "attestation_sock", "unix://" GUEST_AA_SOCKET,
                   "the ttrpc socket to serve"),
    PP_SETTING_STR(aa_settings_t, initdata_toml, NULL, "initdata_toml", NULL,
                   "initdata TOML to send to the KBS"),
    PP_SETTING_STR(aa_settings_t, initdata, NULL, "initdata", "/run/peerpod/initdata",
                   "initdata as process-user-data stores it (gzip+base64), sent to the KBS "
                   "when present"),
    PP_SETTING_STR(aa_settings_t, tpm_device, "AA_TPM_DEVICE", NULL, NULL,
                   "the TPM device (default /dev/tpmrm0)"),
    PP_SETTING_STR(aa_settings_t, tcti, "AA_TPM_TCTI", "tcti", NULL,
                   "a tpm2-tss TCTI instead of the device (swtpm:host=...,port=...)"),
    PP_SETTING_STR(aa_settings_t, ak_handle, "AA_TPM_AK_HANDLE", NULL, "0x81010002",
                   "the attestation key's persistent handle", .chars = "0123456789abcdefABCDEFx"),
    PP_SETTING_STR(aa_settings_t, tee, "AA_TEE", "tee", NULL,
                   "skip detection: tpm, snp, tdx, az-snp-vtpm, az-tdx-vtpm"),
    PP_SETTING_STR(aa_settings_t, root, NULL, "root", NULL, "prefix for /dev and /sys (tests)",
                   .flags = PP_SETTING_HIDDEN),
    PP_SETTING_STR(aa_settings_t, eventlog, NULL, "eventlog", "/run/attestation-agent/eventlog",
                   "where measured events are logged"),
    PP_SETTING_STR(aa_settings_t, tsm_dir, NULL, "tsm-dir", NULL,
                   "the configfs-tsm report directory (default /sys/kernel/config/tsm/report)",
                   .flags = PP_SETTING_HIDDEN),
    PP_SETTING_STR(aa_settings_t, imds, NULL, "imds-url", NULL,
                   "Azure's instance metadata service (tests)", .flags = PP_SETTING_HIDDEN),
    PP_SETTING_INT_OF(aa_settings_t, az_refresh_ms, NULL, "az-refresh-ms", "3000", 0, 60000,
                      "how long an Azure paravisor takes to refresh its report",
                      .flags = PP_SETTING_HIDDEN),
};
static const pp_settings_table_t table = {"attestation-agent", items, PP_ARRAY_SIZE(items)};

/* Initdata to show the KBS: the TOML file given, else the stored form. */
static int read_initdata(const aa_settings_t *s, char **out, size_t *len, pp_error_t *err)
{
    *out = NULL;
    *len = 0;
    if (s->initdata_toml[0])
        return pp_file_read(s->initdata_toml, PP_INITDATA_MAX_DEFAULT, PP_FILE_REGULAR, out, len,
                            err);
    struct stat st;
    if (!s->initdata[0] || stat(s->initdata, &st) < 0)
        return 0;
    cleanup_free char *text = NULL;
    size_t n;
    int r = pp_file_read(s->initdata, 4 * PP_INITDATA_MAX_DEFAULT, PP_FILE_REGULAR, &text, &n, err);
    if (r < 0)
        return r;
    pp_buf_t b;
    pp_buf_init(&b, PP_INITDATA_MAX_DEFAULT);
    r = pp_initdata_decode(text, n, 0, &b, err);
    if (r == 0)
        r = pp_buf_append_byte(&b, 0);
    if (r < 0) {
        pp_buf_free(&b);
        return pp_error_wrap(err, "`%s`", s->initdata);
    }
    *out = (char *)pp_buf_steal(&b, len);
    (*len)--;
    return 0;
}

int main(int argc, char **argv)
{
    pp_json_wipe_on_free();
    signal(SIGPIPE, SIG_IGN);
    /* tpm2-tss logs its own errors to stderr, also for an absent key that
     * is then made: ours say what failed, once. */
    setenv("TSS2_LOG", "all+none", 0);
    aa_settings_t s;
    pp_error_t err = {0};
    int r = pp_settings_load(&table, &s, argc - 1, argv + 1, 0, &err);
    if (r == PP_SETTINGS_HELP) {
        pp_settings_usage(stdout, &table);
        return 0;
    }
    if (r < 0) {
        fprintf(stderr, "attestation-agent: %s\n", err.message);
        return 2;
    }
    guest_aa_cfg_t cfg;
    const char *path = s.config[0] ? s.config : s.config_long;
    if (path[0])
        r = guest_aa_cfg_load(path, &cfg, &err);
    else
        guest_aa_cfg_init(&cfg);
    char sock[4096];
    if (r == 0)
        r = guest_socket_arg(s.sock, "attestation_sock", sock, sizeof(sock), &err);
    cleanup_free char *initdata = NULL;
    size_t initdata_len = 0;
    if (r == 0)
        r = read_initdata(&s, &initdata, &initdata_len, &err);
    guest_aa_opts_t o = {
        .socket = sock,
        .cfg = &cfg,
        .initdata = initdata,
        .initdata_len = initdata_len,
        .eventlog = s.eventlog,
    };
    char tcti[4200];
    o.tee.root = s.root[0] ? s.root : NULL;
    o.tee.tsm_dir = s.tsm_dir[0] ? s.tsm_dir : NULL;
    o.tee.imds_url = s.imds[0] ? s.imds : NULL;
    o.tee.az_refresh_ms = (unsigned)s.az_refresh_ms;
    if (s.tcti[0])
        o.tee.tcti = s.tcti;
    else if (s.tpm_device[0]) {
        snprintf(tcti, sizeof(tcti), "device:%s", s.tpm_device);
        o.tee.tcti = tcti;
    }
    if (r == 0) {
        char *end;
        unsigned long h = strtoul(s.ak_handle, &end, 16);
        if (*end != 0 || h < 0x81000000ul || h > 0x81ffffffUL)
            r = pp_error_set(&err, -EINVAL,
                             "`AA_TPM_AK_HANDLE`: `%s` is not a persistent "
                             "handle (0x81000000 to 0x81ffffff)",
                             s.ak_handle);
        o.tee.ak_handle = (uint32_t)h;
    }
    if (r == 0 && s.tee[0]) {
        o.tee_forced = 1;
        r = guest_tee_parse(s.tee, &o.tee_kind, &err);
    }
    if (r < 0) {
        fprintf(stderr, "attestation-agent: %s\n", err.message);
        guest_aa_cfg_fini(&cfg);
        return 2;
    }
    r = guest_run(LOG, &o, GUEST_RUN_AA, &err);
    guest_aa_cfg_fini(&cfg);
    if (initdata != NULL)
        explicit_bzero(initdata, initdata_len);
    if (r < 0) {
        fprintf(stderr, "attestation-agent: %s\n", err.message);
        return 1;
    }
    return 0;
}
