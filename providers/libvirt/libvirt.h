/* The libvirt provider's internals, shared by its files and its tests.
 *
 * A pod VM is a libvirt domain named after the instance, with two volumes in
 * LIBVIRT_POOL: `<name>-root.qcow2` backed by the base volume, and
 * `<name>-cidata.iso`, a NoCloud config drive with the user data. The domain
 * carries this node and the sandbox id in its metadata; its id is its UUID.
 *
 * Every libvirt call blocks, so each operation runs as one job on the uv
 * thread pool; waiting for the VM's address is a timer on the loop that
 * queues one short lookup at a time, so a slow boot holds no pool thread. */
#ifndef PP_PROVIDER_LIBVIRT_H
#define PP_PROVIDER_LIBVIRT_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/error.h"
#include "util/settings.h"

#define PP_LIBVIRT_NS     "urn:peerpod:podvm:1" /* the metadata element's namespace */
#define PP_LIBVIRT_PREFIX "peerpod"
#define PP_LIBVIRT_ROOT   "-root.qcow2"
#define PP_LIBVIRT_CIDATA "-cidata.iso"

/* LIBVIRT_LAUNCH_SECURITY's words, in this order. */
enum pp__libvirt_launch {
    PP_LIBVIRT_LAUNCH_AUTO = 0, /* unset: SEV-SNP where the host has it */
    PP_LIBVIRT_LAUNCH_NONE,
    PP_LIBVIRT_LAUNCH_SNP,
    PP_LIBVIRT_LAUNCH_S390_PV, /* s390x Protected Virtualization */
};

/* LIBVIRT_CPU_MODE's and LIBVIRT_DOMAIN_TYPE's words, in this order. */
enum pp__libvirt_cpu_mode {
    PP_LIBVIRT_CPU_HOST_MODEL,
    PP_LIBVIRT_CPU_PASSTHROUGH,
    PP_LIBVIRT_CPU_DEFAULT
};
enum pp__libvirt_domain_type { PP_LIBVIRT_TYPE_AUTO, PP_LIBVIRT_TYPE_KVM, PP_LIBVIRT_TYPE_QEMU };

#define PP_LIBVIRT_ROOT_DISK_GIB 10 /* LIBVIRT_ROOT_DISK_SIZE's default, as upstream */

/* Settings (config.c, pp__libvirt_settings), upstream's variables and flags:
 *   LIBVIRT_URI -uri (qemu:///system), LIBVIRT_POOL -pool-name (default),
 *   LIBVIRT_NET -network-name (default), LIBVIRT_VOL_NAME -vol-name
 *   (podvm-base.qcow2), LIBVIRT_CPU -cpu (2), LIBVIRT_MEMORY -memory (MiB,
 *   8192), LIBVIRT_CPUSET -cpuset (host CPUs the vCPUs run on, like 0-3,8),
 *   LIBVIRT_ROOT_DISK_SIZE -root-disk-size (GiB, 10; the root volume is at
 *   least this big, never smaller than its base), LIBVIRT_EFI_FIRMWARE
 *   -firmware (empty: BIOS), LIBVIRT_LAUNCH_SECURITY -launch-security
 *   (empty: SEV-SNP where the host has it; `none`; `sev-snp`; `s390-pv`,
 *   refused on a host without it), DISABLECVM -disable-cvm (true, as
 *   upstream's libvirt provider), -data-dir (accepted, no effect: config
 *   drives are volumes in the pool)
 * and ours: LIBVIRT_CONSOLE_LOG_DIR (/var/log/libvirt/qemu), where each VM's
 * serial console is written; LIBVIRT_CPU_MODE (host-model; host-passthrough;
 * default, for the hypervisor's own model, where the host CPU cannot be
 * passed on, as under some nested hypervisors); LIBVIRT_DOMAIN_TYPE (kvm
 * where the host offers it, else qemu; or either by name: qemu emulates,
 * for hosts whose KVM cannot run an ordinary guest kernel);
 * LIBVIRT_IP_TIMEOUT_MS (180000) and LIBVIRT_IP_POLL_INTERVAL_MS (500), how
 * long and how often to look for the VM's DHCP lease. */
typedef struct pp__libvirt_config_s {
    char uri[512];
    char pool[128];
    char net[128];
    char vol_name[256];
    unsigned vcpus;
    unsigned memory_mib;
    char cpuset[256];
    uint64_t root_disk_gib;
    char firmware[PATH_MAX];
    int launch; /* enum pp__libvirt_launch */
    int disable_cvm;
    int vtpm; /* a TPM 2.0 per pod VM (libvirt's swtpm back end) */
    char console_dir[PATH_MAX];
    int cpu_mode_word;    /* enum pp__libvirt_cpu_mode */
    int domain_type_word; /* enum pp__libvirt_domain_type */
    uint64_t ip_timeout_ms;
    uint64_t ip_poll_ms;
    /* Derived by pp__libvirt_config_check(). */
    char cpu_mode[32];   /* host-model, host-passthrough, or "" for the hypervisor's default */
    char domain_type[8]; /* kvm, qemu, or "" for kvm where the host offers it */
} pp__libvirt_config_t;

/* The table; its offsets are into pp__libvirt_config_t, which leads the
 * provider's state. */
extern const pp_settings_table_t pp__libvirt_settings;
/* The rules across settings, and the derived fields. */
int pp__libvirt_config_check(pp__libvirt_config_t *c, pp_error_t *err);
/* The table from the environment, then the check (for tests). */
int pp__libvirt_config_load(pp__libvirt_config_t *c, pp_error_t *err);
/* Whether `s` is a CPU list like 0-3,8,10-12 (numbers ascending in each range). */
int pp__libvirt_cpuset_valid(const char *s);

/* What a domain is made of (domain.c). Strings are borrowed. */
typedef struct pp__libvirt_domain_s {
    const char *name;
    const char *type; /* "kvm", "qemu" or "test" */
    const char *node;
    const char *sandbox_id;
    unsigned vcpus;
    const char *cpuset; /* NULL or "": any host CPU */
    unsigned memory_mib;
    const char *pool;
    const char *root_vol;
    const char *cidata_vol;
    const char *network;
    const char *firmware;     /* NULL or "": BIOS */
    const char *console_log;  /* NULL: no serial log file */
    const char *cpu_mode;     /* NULL or "": no <cpu> element */
    int snp;                  /* SEV-SNP launch security */
    int vtpm;                 /* a TPM 2.0 emulated by swtpm on the host */
    const uint8_t *host_data; /* 32 bytes, or NULL */
} pp__libvirt_domain_t;

/* The domain's XML, NUL-terminated, in `out` (initialised by the caller). */
int pp__libvirt_domain_xml(const pp__libvirt_domain_t *d, pp_buf_t *out);

/* A volume backed by `backing` (a path, with its format), or a plain one when
 * `backing` is NULL. */
int pp__libvirt_volume_xml(const char *name, uint64_t capacity, const char *format,
                           const char *backing, const char *backing_format, pp_buf_t *out);

/* The metadata element written into a domain (the same as in the domain
 * XML), and the node and sandbox read back from one. */
int pp__libvirt_metadata_xml(const char *node, const char *sandbox_id, pp_buf_t *out);
int pp__libvirt_metadata_parse(const char *xml, char *node, size_t nodelen, char *sandbox,
                               size_t sandboxlen);

/* From a volume's XML: its format (`raw` when it names none) and path. */
int pp__libvirt_volume_parse(const char *xml, char *format, size_t formatlen, char *path,
                             size_t pathlen);

/* Calls fn(pool, volume) for each `<disk type='volume'>` source in a domain's
 * XML; stops at and returns fn's first negative return. */
int pp__libvirt_domain_volumes(const char *xml,
                               int (*fn)(const char *pool, const char *vol, void *arg), void *arg);

/* Whether a domain capabilities document offers SEV-SNP launch security. */
int pp__libvirt_caps_have_snp(const char *xml);

/* A NoCloud config drive (cidata.c, libarchive): an ISO9660 image labelled `cidata` with
 * Rock Ridge and Joliet names, holding `user-data` and `meta-data`
 * (`instance-id` and `local-hostname`, both the instance name). */
int pp__libvirt_cidata(const char *name, const char *user_data, size_t user_data_len, pp_buf_t *out,
                       pp_error_t *err);

/* Test seams (libvirt.c): the step names a job passes, and the upload of the
 * config drive, which libvirt's test driver does not implement. */
typedef struct pp__libvirt_hooks_s {
    /* Called before each step of create ("root-volume", "cidata-volume",
     * "upload", "define", "start", "address") and delete ("destroy",
     * "volumes", "undefine"); a negative return fails that step, and a
     * positive one at "address" is a lookup that found no lease. */
    int (*step)(void *arg, const char *step);
    /* Replaces the upload when set: gets the volume's name and bytes. */
    int (*upload)(void *arg, const char *vol, const uint8_t *data, size_t len);
    void *arg;
} pp__libvirt_hooks_t;

struct pp_provider_s;
void pp__libvirt_set_hooks(struct pp_provider_s *p, const pp__libvirt_hooks_t *hooks);

#endif
