#include "attester.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "tee_int.h"
#include "util/cleanup.h"
#include "util/log.h"

static const char *const tee_names[GUEST_TEE_COUNT] = {
    [GUEST_TEE_NONE] = "none",
    [GUEST_TEE_TPM] = "tpm",
    [GUEST_TEE_SNP] = "snp",
    [GUEST_TEE_TDX] = "tdx",
    [GUEST_TEE_AZ_SNP_VTPM] = "az-snp-vtpm",
    [GUEST_TEE_AZ_TDX_VTPM] = "az-tdx-vtpm",
};

const char *guest_tee_name(guest_tee_t tee)
{
    return (unsigned)tee < GUEST_TEE_COUNT ? tee_names[tee] : "none";
}

int guest__path(const guest_tee_opts_t *o, const char *path, char *out, size_t size)
{
    int r = snprintf(out, size, "%s%s", o->root ? o->root : "", path);
    return r < 0 || (size_t)r >= size ? -ENAMETOOLONG : 0;
}

static int exists(const guest_tee_opts_t *o, const char *path)
{
    char p[4096];
    struct stat st;
    return guest__path(o, path, p, sizeof(p)) == 0 && stat(p, &st) == 0;
}

/* The TPM's TCTI: the one given, else the resource manager device. */
int guest__attester_tpm_tcti(guest_attester_t *a)
{
    if (a->opts.tcti != NULL) {
        snprintf(a->tcti, sizeof(a->tcti), "%s", a->opts.tcti);
        return 1;
    }
    char dev[4096];
    struct stat st;
    if (guest__path(&a->opts, "/dev/tpmrm0", dev, sizeof(dev)) < 0 || stat(dev, &st) < 0 ||
        !S_ISCHR(st.st_mode))
        return 0;
    int r = snprintf(a->tcti, sizeof(a->tcti), "device:%.*s", (int)sizeof(a->tcti) - 8, dev);
    return r > 0 && (size_t)r < sizeof(a->tcti);
}

static const guest_attester_ops_t *const attesters[GUEST_TEE_COUNT] = {
    [GUEST_TEE_TPM] = &guest_tpm_ops,
    [GUEST_TEE_SNP] = &guest_snp_ops,
    [GUEST_TEE_TDX] = &guest_tdx_ops,
    [GUEST_TEE_AZ_SNP_VTPM] = &guest_az_snp_ops,
    [GUEST_TEE_AZ_TDX_VTPM] = &guest_az_tdx_ops,
};

int guest_attester_for(guest_attester_t *a, guest_tee_t tee, const guest_tee_opts_t *opts,
                       pp_error_t *err)
{
    memset(a, 0, sizeof(*a));
    a->opts = *opts;
    if ((unsigned)tee >= GUEST_TEE_COUNT || attesters[tee] == NULL)
        return pp_error_set(err, -ENOTSUP, "no attester for `%s`", guest_tee_name(tee));
    if ((tee == GUEST_TEE_TPM || tee == GUEST_TEE_AZ_SNP_VTPM || tee == GUEST_TEE_AZ_TDX_VTPM) &&
        !guest__attester_tpm_tcti(a))
        return pp_error_set(err, -ENODEV, "`%s`: no TPM (no /dev/tpmrm0)", guest_tee_name(tee));
    a->ops = attesters[tee];
    snprintf(a->why, sizeof(a->why), "chosen");
    return 0;
}

void guest_attester_detect(guest_attester_t *a, const guest_tee_opts_t *opts)
{
    memset(a, 0, sizeof(*a));
    a->opts = *opts;
    char provider[64] = "";
    guest__tsm_provider(opts, provider, sizeof(provider));
    if (strcmp(provider, "tdx_guest") == 0 || exists(opts, "/dev/tdx_guest")) {
        a->ops = &guest_tdx_ops;
        snprintf(a->why, sizeof(a->why), "%s",
                 provider[0] ? "configfs-tsm provider tdx_guest" : "/dev/tdx_guest");
        return;
    }
    if (guest__azure_detect(a))
        return;
    if (strcmp(provider, "sev_guest") == 0 || exists(opts, "/dev/sev-guest") ||
        exists(opts, "/sys/devices/platform/sev-guest")) {
        a->ops = &guest_snp_ops;
        snprintf(a->why, sizeof(a->why), "%s",
                 provider[0] ? "configfs-tsm provider sev_guest" : "/dev/sev-guest");
        return;
    }
    if (guest__attester_tpm_tcti(a)) {
        a->ops = &guest_tpm_ops;
        snprintf(a->why, sizeof(a->why), "a TPM at `%.400s`", a->tcti);
        return;
    }
    snprintf(a->why, sizeof(a->why),
             "no TEE found: no configfs-tsm provider, /dev/tdx_guest, /dev/sev-guest or "
             "/dev/tpmrm0");
}

int guest_attester_evidence(guest_attester_t *a, const uint8_t *report_data, size_t len,
                            char **json, size_t *json_len, pp_error_t *err)
{
    if (a->ops == NULL)
        return pp_error_set(err, -ENODEV, "%s", a->why);
    if (len > GUEST_REPORT_DATA_MAX)
        return pp_error_set(err, -EINVAL, "report data of %zu bytes: at most %d", len,
                            GUEST_REPORT_DATA_MAX);
    json_t *ev = NULL;
    int r = a->ops->evidence(a, report_data, len, &ev, err);
    if (r < 0)
        return pp_error_wrap(err, "%s evidence", a->ops->name);
    char *s = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (s == NULL)
        return pp_error_set(err, -ENOMEM, "%s evidence: out of memory", a->ops->name);
    *json = s;
    *json_len = strlen(s);
    return 0;
}
