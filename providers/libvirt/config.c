/* The libvirt provider's settings (libvirt.h lists them). */
#include "providers/libvirt/libvirt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"

/* Names libvirt takes for pools, networks and volumes; kept to characters
 * that need no quoting in XML or paths. */
#define NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+"

typedef pp__libvirt_config_t cfg_t;

static const char *const launch_words[] = {"auto", "none", "sev-snp", "s390-pv", NULL};
static const char *const cpu_mode_words[] = {"host-model", "host-passthrough", "default", NULL};
static const char *const domain_type_words[] = {"auto", "kvm", "qemu", NULL};

static const pp_setting_t items[] = {
    PP_SETTING_STR(cfg_t, uri, "LIBVIRT_URI", "uri", "qemu:///system", "libvirt URI"),
    PP_SETTING_STR(cfg_t, pool, "LIBVIRT_POOL", "pool-name", "default",
                   "storage pool of the base volume and the pod VMs' volumes", .chars = NAME_CHARS),
    PP_SETTING_STR(cfg_t, net, "LIBVIRT_NET", "network-name", "default",
                   "libvirt network the pod VMs join", .chars = NAME_CHARS),
    PP_SETTING_STR(cfg_t, vol_name, "LIBVIRT_VOL_NAME", "vol-name", "podvm-base.qcow2",
                   "the pod VM image's volume in the pool", .chars = NAME_CHARS),
    PP_SETTING_INT_OF(cfg_t, vcpus, "LIBVIRT_CPU", "cpu", "2", 1, 512, "vCPUs of a pod VM"),
    PP_SETTING_INT_OF(cfg_t, memory_mib, "LIBVIRT_MEMORY", "memory", "8192", 64, 16 * 1024 * 1024,
                      "memory of a pod VM, MiB"),
    PP_SETTING_STR(cfg_t, cpuset, "LIBVIRT_CPUSET", "cpuset", NULL,
                   "host CPUs the vCPUs run on, like 0,2,4,6 or 0-3 or 0-3,8,10-12 (empty: any)",
                   .chars = "0123456789,-"),
    PP_SETTING_INT_OF(cfg_t, root_disk_gib, "LIBVIRT_ROOT_DISK_SIZE", "root-disk-size", "10", 0,
                      65536,
                      "root disk of a pod VM, GiB (0: 10); never smaller than the base volume"),
    PP_SETTING_STR(cfg_t, firmware, "LIBVIRT_EFI_FIRMWARE", "firmware", NULL,
                   "UEFI firmware (OVMF) for the pod VMs, an absolute path (empty: BIOS)"),
    PP_SETTING_ENUM_OF(cfg_t, launch, "LIBVIRT_LAUNCH_SECURITY", "launch-security", NULL,
                       launch_words,
                       "confidential VM technology: sev-snp, s390-pv, none, or empty to use "
                       "SEV-SNP where the host has it"),
    PP_SETTING_BOOL_OF(cfg_t, disable_cvm, "DISABLECVM", "disable-cvm", "true",
                       "launch pod VMs that are not confidential VMs"),
    PP_SETTING_BOOL_OF(cfg_t, vtpm, "LIBVIRT_VTPM", "vtpm", "false",
                       "give each pod VM a TPM 2.0 (libvirt's swtpm back end), where initdata "
                       "is bound (PCR8) and attested"),
    PP_SETTING_STR(cfg_t, console_dir, "LIBVIRT_CONSOLE_LOG_DIR", NULL, "/var/log/libvirt/qemu",
                   "where each pod VM's serial console is written (absolute)"),
    PP_SETTING_ENUM_OF(cfg_t, cpu_mode_word, "LIBVIRT_CPU_MODE", NULL, "host-model", cpu_mode_words,
                       "guest CPU: the host's model, passed through, or the hypervisor's "
                       "default"),
    PP_SETTING_ENUM_OF(cfg_t, domain_type_word, "LIBVIRT_DOMAIN_TYPE", NULL, "auto",
                       domain_type_words,
                       "kvm, qemu (emulated), or auto: kvm where the host offers it"),
    PP_SETTING_INT_OF(cfg_t, ip_timeout_ms, "LIBVIRT_IP_TIMEOUT_MS", NULL, "180000", 100, 3600000,
                      "how long to wait for a pod VM's address, ms"),
    PP_SETTING_INT_OF(cfg_t, ip_poll_ms, "LIBVIRT_IP_POLL_INTERVAL_MS", NULL, "500", 10, 60000,
                      "how often to look for a pod VM's address, ms"),
    PP_SETTING_UPSTREAM(PP_SETTING_NOOP, NULL, "data-dir", NULL,
                        "no effect: config drives are volumes in LIBVIRT_POOL"),
};

const pp_settings_table_t pp__libvirt_settings = {"libvirt provider", items, PP_ARRAY_SIZE(items)};

int pp__libvirt_cpuset_valid(const char *s)
{
    /* Items are N or N-M with N <= M, comma separated. */
    const char *p = s;
    if (*p == '\0')
        return 0;
    for (;;) {
        char *end;
        if (*p < '0' || *p > '9')
            return 0;
        unsigned long a = strtoul(p, &end, 10), b = a;
        if (end - p > 5)
            return 0;
        p = end;
        if (*p == '-') {
            p++;
            if (*p < '0' || *p > '9')
                return 0;
            b = strtoul(p, &end, 10);
            if (end - p > 5 || b < a)
                return 0;
            p = end;
        }
        if (*p == '\0')
            return 1;
        if (*p++ != ',')
            return 0;
    }
}

int pp__libvirt_config_check(pp__libvirt_config_t *c, pp_error_t *err)
{
    if (c->firmware[0] != '\0' && c->firmware[0] != '/')
        return pp_error_set(err, -EINVAL, "`LIBVIRT_EFI_FIRMWARE`: `%s` is not an absolute path",
                            c->firmware);
    if (c->console_dir[0] != '/')
        return pp_error_set(err, -EINVAL, "`LIBVIRT_CONSOLE_LOG_DIR`: `%s` is not an absolute path",
                            c->console_dir);
    if (c->cpuset[0] != '\0' && !pp__libvirt_cpuset_valid(c->cpuset))
        return pp_error_set(err, -EINVAL,
                            "`LIBVIRT_CPUSET`: `%s` is not a list of CPU numbers and ranges, like "
                            "0,2,4,6 or 0-3 or 0-3,8,10-12",
                            c->cpuset);
    if (c->root_disk_gib == 0)
        c->root_disk_gib = PP_LIBVIRT_ROOT_DISK_GIB;
    static const char *const modes[] = {[PP_LIBVIRT_CPU_HOST_MODEL] = "host-model",
                                        [PP_LIBVIRT_CPU_PASSTHROUGH] = "host-passthrough",
                                        [PP_LIBVIRT_CPU_DEFAULT] = ""};
    static const char *const types[] = {[PP_LIBVIRT_TYPE_AUTO] = "",
                                        [PP_LIBVIRT_TYPE_KVM] = "kvm",
                                        [PP_LIBVIRT_TYPE_QEMU] = "qemu"};
    snprintf(c->cpu_mode, sizeof(c->cpu_mode), "%s", modes[c->cpu_mode_word]);
    snprintf(c->domain_type, sizeof(c->domain_type), "%s", types[c->domain_type_word]);
    if (c->disable_cvm &&
        (c->launch == PP_LIBVIRT_LAUNCH_SNP || c->launch == PP_LIBVIRT_LAUNCH_S390_PV))
        return pp_error_set(err, -EINVAL,
                            "`LIBVIRT_LAUNCH_SECURITY` is `%s` but `DISABLECVM` is true (its "
                            "default for libvirt, as upstream's): set `DISABLECVM=false` for "
                            "confidential VMs",
                            launch_words[c->launch]);
    return 0;
}

int pp__libvirt_config_load(pp__libvirt_config_t *c, pp_error_t *err)
{
    int r = pp_settings_load(&pp__libvirt_settings, c, 0, NULL, PP_SETTINGS_QUIET, err);
    return r < 0 ? r : pp__libvirt_config_check(c, err);
}
