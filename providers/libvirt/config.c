/* The libvirt provider's settings (libvirt.h lists them). */
#include "providers/libvirt/libvirt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "providers/settings.h"
#include "util/cleanup.h"

/* Names libvirt takes for pools, networks and volumes; kept to characters
 * that need no quoting in XML or paths. */
#define NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+"

static const struct {
    const char *word;
    enum pp__libvirt_launch launch;
} launch_words[] = {
    {"", PP_LIBVIRT_LAUNCH_AUTO},
    {"none", PP_LIBVIRT_LAUNCH_NONE},
    {"sev-snp", PP_LIBVIRT_LAUNCH_SNP},
};

int pp__libvirt_config_load(pp__libvirt_config_t *c, pp_error_t *err)
{
    memset(c, 0, sizeof(*c));
    int r;
    if ((r = pp_setting_str("LIBVIRT_URI", "qemu:///system", c->uri, sizeof(c->uri), NULL, err)) <
            0 ||
        (r = pp_setting_str("LIBVIRT_POOL", "default", c->pool, sizeof(c->pool), NAME_CHARS, err)) <
            0 ||
        (r = pp_setting_str("LIBVIRT_NET", "default", c->net, sizeof(c->net), NAME_CHARS, err)) <
            0 ||
        (r = pp_setting_str("LIBVIRT_VOL_NAME", "podvm-base.qcow2", c->vol_name,
                            sizeof(c->vol_name), NAME_CHARS, err)) < 0 ||
        (r = pp_setting_str("LIBVIRT_EFI_FIRMWARE", NULL, c->firmware, sizeof(c->firmware), NULL,
                            err)) < 0 ||
        (r = pp_setting_str("LIBVIRT_CONSOLE_LOG_DIR", "/var/log/libvirt/qemu", c->console_dir,
                            sizeof(c->console_dir), NULL, err)) < 0 ||
        (r = pp_setting_bool("DISABLECVM", 0, &c->disable_cvm, err)) < 0)
        return r;
    if (c->firmware[0] != '\0' && c->firmware[0] != '/')
        return pp_error_set(err, -EINVAL,
                            "environment variable `LIBVIRT_EFI_FIRMWARE`: `%s` is not an absolute "
                            "path",
                            c->firmware);
    if (c->console_dir[0] != '/')
        return pp_error_set(err, -EINVAL,
                            "environment variable `LIBVIRT_CONSOLE_LOG_DIR`: `%s` is not an "
                            "absolute path",
                            c->console_dir);

    const char *mode = pp_setting("LIBVIRT_CPU_MODE");
    if (mode == NULL)
        mode = "host-model";
    if (strcmp(mode, "host-model") != 0 && strcmp(mode, "host-passthrough") != 0 &&
        strcmp(mode, "default") != 0)
        return pp_error_set(err, -EINVAL,
                            "environment variable `LIBVIRT_CPU_MODE`: `%s` is not `host-model`, "
                            "`host-passthrough` or `default`",
                            mode);
    snprintf(c->cpu_mode, sizeof(c->cpu_mode), "%s", strcmp(mode, "default") == 0 ? "" : mode);

    const char *type = pp_setting("LIBVIRT_DOMAIN_TYPE");
    if (type != NULL && strcmp(type, "kvm") != 0 && strcmp(type, "qemu") != 0)
        return pp_error_set(err, -EINVAL,
                            "environment variable `LIBVIRT_DOMAIN_TYPE`: `%s` is not `kvm` or "
                            "`qemu`",
                            type);
    snprintf(c->domain_type, sizeof(c->domain_type), "%s", type != NULL ? type : "");

    uint64_t u;
    if ((r = pp_setting_u64("LIBVIRT_CPU", 2, 1, 512, &u, err)) < 0)
        return r;
    c->vcpus = (unsigned)u;
    if ((r = pp_setting_u64("LIBVIRT_MEMORY", 8192, 64, 16u * 1024 * 1024, &u, err)) < 0)
        return r;
    c->memory_mib = (unsigned)u;
    if ((r = pp_setting_u64("LIBVIRT_IP_TIMEOUT_MS", 180000, 100, 3600000, &c->ip_timeout_ms,
                            err)) < 0 ||
        (r = pp_setting_u64("LIBVIRT_IP_POLL_INTERVAL_MS", 500, 10, 60000, &c->ip_poll_ms, err)) <
            0)
        return r;

    const char *ls = pp_setting("LIBVIRT_LAUNCH_SECURITY");
    if (ls == NULL)
        ls = "";
    size_t i = 0;
    while (i < PP_ARRAY_SIZE(launch_words) && strcmp(ls, launch_words[i].word) != 0)
        i++;
    if (i == PP_ARRAY_SIZE(launch_words))
        return pp_error_set(err, -EINVAL,
                            "environment variable `LIBVIRT_LAUNCH_SECURITY`: `%s` is not `none` "
                            "or `sev-snp` (or empty, for SEV-SNP where the host has it)",
                            ls);
    c->launch = launch_words[i].launch;
    if (c->disable_cvm && c->launch == PP_LIBVIRT_LAUNCH_SNP)
        return pp_error_set(err, -EINVAL,
                            "environment variable `LIBVIRT_LAUNCH_SECURITY` is `sev-snp` but "
                            "`DISABLECVM` is true");
    return 0;
}
