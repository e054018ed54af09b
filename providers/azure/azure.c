/* The Azure provider: create, delete and list pod VMs through Resource
 * Manager.
 *
 * create: the allowed sizes' specs (once, when a fit by size is asked
 * for) -> with USE_PUBLIC_IP, PUT `<name>-ip` -> PUT `<name>-net` -> PUT
 * the VM `<name>` (its OS disk `<name>-disk`), each followed to the end of
 * its operation -> GET the NIC (and the address) for the IP. Everything is
 * named after the instance name, so a retried create (a new adaptor, the
 * shim asking again) PUTs the same resources and finds what the first
 * made; creates for the same name in flight in this process join the
 * first. A create that fails removes what it may have made, VM first.
 *
 * delete: DELETE the VM (its NIC, disk and address go with it, by their
 * deleteOption), then whatever of them is left from a create cut short. */
#include "providers/azure/azure.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/base64.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/log.h"

#define COMP      "azure"
#define MAX_PAGES 1000

typedef pp__azure_state_t st_t;

/* --- common to the operations ----------------------------------------------------- */

typedef struct joiner_s {
    struct joiner_s *next;
    pp_provider_create_cb cb;
    void *data;
} joiner_t;

struct pp__azure_create_s {
    st_t *st;
    pp__azure_create_t *next; /* in st->creates */
    uv_timer_t timer;         /* the end runs from its close callback */
    joiner_t *joiners;        /* the first is the caller's */
    pp__azure_waiter_t w;
    int status;
    pp_error_t err;
    char sandbox_id[PP_SANDBOX_ID_MAX + 1];
    char name[64];
    char node[256];
    char *user_data; /* base64 */
    char machine_type[PP_INSTANCE_TYPE_NAME_MAX];
    char image[512];
    unsigned vcpus, memory_mib, gpus;
    char size[PP_INSTANCE_TYPE_NAME_MAX];
    int made; /* a PUT went out: something may exist */
    int cleanup_step;
    uint64_t busy_deadline, busy_delay; /* waiting for an operation on the VM */
    int reputs;
    char private_ip[64], public_ip[64];
    pp_instance_t result;
};

typedef pp__azure_create_t cr_t;

static int path_of(const st_t *st, char *out, size_t outlen, const char *provider, const char *kind,
                   const char *name)
{
    int n = snprintf(out, outlen, "/subscriptions/%s/resourceGroups/%s/providers/%s/%s%s%s",
                     st->cfg.subscription_id, st->cfg.resource_group, provider, kind,
                     name ? "/" : "", name ? name : "");
    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

#define VM_PATH(st, buf, name)                                                                     \
    path_of(st, buf, sizeof(buf), "Microsoft.Compute", "virtualMachines", name)
#define DISK_PATH(st, buf, name) path_of(st, buf, sizeof(buf), "Microsoft.Compute", "disks", name)
#define NIC_PATH(st, buf, name)                                                                    \
    path_of(st, buf, sizeof(buf), "Microsoft.Network", "networkInterfaces", name)
#define PIP_PATH(st, buf, name)                                                                    \
    path_of(st, buf, sizeof(buf), "Microsoft.Network", "publicIPAddresses", name)

static void res_name(char *out, size_t outlen, const char *name, const char *suffix)
{
    snprintf(out, outlen, "%s%s", name, suffix);
}

static json_t *tags_of(const st_t *st, const char *node, const char *sandbox_id)
{
    json_t *t = json_object();
    for (size_t i = 0; i < st->d.ntags; i++)
        json_object_set_new(t, st->d.tags[i].key, json_string(st->d.tags[i].value));
    json_object_set_new(t, PP_AZURE_TAG_NODE, json_string(node));
    json_object_set_new(t, PP_AZURE_TAG_SANDBOX, json_string(sandbox_id));
    return t;
}

/* --- create: the end ---------------------------------------------------------------- */

static void create_closed(uv_handle_t *h)
{
    cr_t *c = container_of((uv_timer_t *)h, cr_t, timer);
    st_t *st = c->st;
    for (cr_t **pp = &st->creates; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    joiner_t *j = c->joiners;
    while (j != NULL) {
        joiner_t *next = j->next;
        j->cb(c->status, c->status < 0 ? NULL : &c->result, c->status < 0 ? &c->err : NULL,
              j->data);
        free(j);
        j = next;
    }
    free(c->user_data);
    free(c);
    st->ops_in_flight--;
}

static void create_end(cr_t *c, int status)
{
    c->status = status;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, create_closed);
}

static void create_cleanup(cr_t *c);

static void create_fail(cr_t *c, int status, const pp_error_t *err)
{
    /* The adaptor adds "create instance `<name>`". */
    if (err != &c->err)
        c->err = *err;
    c->status = status;
    if (!c->made) {
        create_end(c, status);
        return;
    }
    PP_INFO(COMP, "removing what the failed create of `%s` (sandbox `%s`) made", c->name,
            c->sandbox_id);
    c->cleanup_step = 0;
    create_cleanup(c);
}

/* --- create: cleanup after a failure -------------------------------------------------- */

static void cleanup_done(int status, const char *code, const pp_error_t *err, void *data)
{
    cr_t *c = data;
    (void)code;
    if (status < 0) {
        size_t n = strlen(c->err.message);
        snprintf(c->err.message + n, sizeof(c->err.message) - n,
                 "; `%.60s` and what it uses may be left (%.200s): cleanup at restart removes "
                 "them",
                 c->name, err ? err->message : uv_strerror(status));
        PP_WARN(COMP, "cleanup of `%s` (sandbox `%s`) failed: %s", c->name, c->sandbox_id,
                err ? err->message : uv_strerror(status));
        create_end(c, c->status);
        return;
    }
    create_cleanup(c);
}

/* VM, then NIC, public address and disk: each DELETE followed to its end
 * (what is gone answers 204). */
static void create_cleanup(cr_t *c)
{
    st_t *st = c->st;
    char name[96], path[1024];
    int r = 0;
    const char *api = PP_AZURE_NETWORK_API;
    switch (c->cleanup_step++) {
    case 0:
        r = VM_PATH(st, path, c->name);
        api = PP_AZURE_COMPUTE_API;
        break;
    case 1:
        res_name(name, sizeof(name), c->name, "-net");
        r = NIC_PATH(st, path, name);
        break;
    case 2:
        if (!st->cfg.use_public_ip) {
            create_cleanup(c);
            return;
        }
        res_name(name, sizeof(name), c->name, "-ip");
        r = PIP_PATH(st, path, name);
        break;
    case 3:
        res_name(name, sizeof(name), c->name, "-disk");
        r = DISK_PATH(st, path, name);
        api = PP_AZURE_COMPUTE_API;
        break;
    default:
        create_end(c, c->status);
        return;
    }
    if (r == 0)
        r = pp__azure_arm_wait(st, "DELETE", path, api, NULL, cleanup_done, c);
    if (r < 0)
        cleanup_done(r, "", NULL, c);
}

/* --- create: the steps ---------------------------------------------------------------- */

static void create_pip(cr_t *c);
static void create_nic(cr_t *c);
static void create_vm(cr_t *c);
static void create_addr(cr_t *c);

static void fail_sync(cr_t *c, int r, const char *what)
{
    pp_error_t e;
    pp_error_set_status(&e, r == -ENOMEM ? PP_GRPC_RESOURCE_EXHAUSTED : PP_GRPC_UNAVAILABLE, r,
                        "%s: %s", what, uv_strerror(r));
    create_fail(c, r, &e);
}

static void specs_answered(int status, const pp__azure_answer_t *ans, const char *code,
                           const pp_error_t *err, void *data)
{
    st_t *st = data;
    (void)code;
    pp_error_t e = {0};
    if (status == 0) {
        pp_instance_type_t *t;
        size_t n;
        status = pp__azure_parse_sizes(ans->body, ans->len, &t, &n);
        if (status == 0) {
            pp_instance_types_sort(t, n);
            free(st->specs);
            st->specs = t;
            st->nspecs = n;
            PP_INFO(COMP, "%zu VM sizes known in `%s` for best-fit selection", n, st->cfg.region);
        } else {
            pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, status,
                                "azure VM sizes: the answer cannot be read");
        }
    } else {
        e = *err;
        pp_error_wrap(&e, "VM sizes of `%s`", st->cfg.region);
    }
    st->specs_state = status == 0 ? 2 : 0;
    pp__azure_waiter_t *w = st->specs_waiters;
    st->specs_waiters = NULL;
    while (w != NULL) {
        pp__azure_waiter_t *next = w->next;
        w->cb(status, status < 0 ? &e : NULL, w->data);
        w = next;
    }
}

static void create_select(cr_t *c);

static void specs_ready(int status, const pp_error_t *err, void *data)
{
    cr_t *c = data;
    if (status < 0) {
        create_fail(c, status, err);
        return;
    }
    create_select(c);
}

static void create_select(cr_t *c)
{
    st_t *st = c->st;
    pp_instance_type_want_t want = {.machine_type = c->machine_type,
                                    .vcpus = c->vcpus,
                                    .memory_mib = c->memory_mib,
                                    .gpus = c->gpus};
    if (pp_instance_type_needs_specs(&want) && st->specs_state != 2) {
        c->w.cb = specs_ready;
        c->w.data = c;
        c->w.next = st->specs_waiters;
        st->specs_waiters = &c->w;
        if (st->specs_state == 1)
            return;
        st->specs_state = 1;
        char path[512];
        snprintf(path, sizeof(path),
                 "/subscriptions/%s/providers/Microsoft.Compute/locations/%s/vmSizes",
                 st->cfg.subscription_id, st->cfg.region);
        int r = pp__azure_arm(st, "GET", path, PP_AZURE_COMPUTE_API, NULL, specs_answered, st);
        if (r < 0) {
            pp_error_t e;
            pp_error_set(&e, r, "azure VM sizes: %s", uv_strerror(r));
            st->specs_state = 1;
            specs_answered(r, NULL, "", &e, st);
        }
        return;
    }
    const char *allowed[256];
    size_t na = 0;
    for (; na < st->d.nsizes && na < PP_ARRAY_SIZE(allowed); na++)
        allowed[na] = st->d.sizes[na];
    pp_instance_type_list_t list = {.setting = "AZURE_INSTANCE_SIZES",
                                    .allowed = allowed,
                                    .nallowed = na,
                                    .default_type = st->cfg.instance_size,
                                    .specs = st->specs,
                                    .nspecs = st->nspecs};
    pp_error_t e = {0};
    int r = pp_instance_type_select(&list, &want, c->size, sizeof(c->size), &e);
    if (r < 0) {
        create_fail(c, r, &e);
        return;
    }
    if (st->cfg.use_public_ip)
        create_pip(c);
    else
        create_nic(c);
}

static void step_done(int status, const pp_error_t *err, cr_t *c, const char *what,
                      void (*next)(cr_t *))
{
    if (status < 0) {
        pp_error_t e = *err;
        pp_error_wrap(&e, "%s", what);
        create_fail(c, status, &e);
        return;
    }
    next(c);
}

static void pip_done(int status, const char *code, const pp_error_t *err, void *data)
{
    (void)code;
    step_done(status, err, data, "public IP address", create_nic);
}

static void create_pip(cr_t *c)
{
    st_t *st = c->st;
    char name[96], path[1024];
    res_name(name, sizeof(name), c->name, "-ip");
    int r = PIP_PATH(st, path, name);
    if (r < 0) {
        fail_sync(c, r, "public IP address");
        return;
    }
    json_t *b =
        json_pack("{s:s, s:o, s:{s:s}, s:{s:s, s:s}}", "location", st->cfg.region, "tags",
                  tags_of(st, c->node, c->sandbox_id), "sku", "name", "Standard", "properties",
                  "publicIPAllocationMethod", "Static", "deleteOption", "Delete");
    c->made = 1;
    r = b ? pp__azure_arm_wait(st, "PUT", path, PP_AZURE_NETWORK_API, b, pip_done, c) : -ENOMEM;
    if (r < 0)
        fail_sync(c, r, "public IP address");
}

static void nic_done(int status, const char *code, const pp_error_t *err, void *data)
{
    (void)code;
    step_done(status, err, data, "network interface", create_vm);
}

static void create_nic(cr_t *c)
{
    st_t *st = c->st;
    char name[96], cfgname[112], path[1024];
    res_name(name, sizeof(name), c->name, "-net");
    res_name(cfgname, sizeof(cfgname), name, "-ipConfig");
    int r = NIC_PATH(st, path, name);
    if (r < 0) {
        fail_sync(c, r, "network interface");
        return;
    }
    json_t *ipp = json_pack("{s:s, s:{s:s}}", "privateIPAllocationMethod", "Dynamic", "subnet",
                            "id", st->cfg.subnet_id);
    if (ipp != NULL && st->cfg.use_public_ip) {
        char pip[96], pippath[1024];
        res_name(pip, sizeof(pip), c->name, "-ip");
        PIP_PATH(st, pippath, pip);
        json_object_set_new(ipp, "publicIPAddress", json_pack("{s:s}", "id", pippath));
    }
    json_t *props =
        json_pack("{s:[{s:s, s:o}]}", "ipConfigurations", "name", cfgname, "properties", ipp);
    if (props != NULL && st->cfg.nsg_id[0] != '\0')
        json_object_set_new(props, "networkSecurityGroup",
                            json_pack("{s:s}", "id", st->cfg.nsg_id));
    json_t *b = props ? json_pack("{s:s, s:o, s:o}", "location", st->cfg.region, "tags",
                                  tags_of(st, c->node, c->sandbox_id), "properties", props)
                      : NULL;
    c->made = 1;
    r = b ? pp__azure_arm_wait(st, "PUT", path, PP_AZURE_NETWORK_API, b, nic_done, c) : -ENOMEM;
    if (r < 0)
        fail_sync(c, r, "network interface");
}

static json_t *vm_body(cr_t *c)
{
    st_t *st = c->st;
    const pp__azure_config_t *cfg = &st->cfg;
    char disk[96], nic[96], nicpath[1024], keypath[128];
    res_name(disk, sizeof(disk), c->name, "-disk");
    res_name(nic, sizeof(nic), c->name, "-net");
    NIC_PATH(st, nicpath, nic);
    snprintf(keypath, sizeof(keypath), "/home/%s/.ssh/authorized_keys", cfg->ssh_username);
    const char *image = c->image[0] ? c->image : cfg->image_id;
    json_t *imgref = strncmp(image, "/CommunityGalleries/", 20) == 0
                         ? json_pack("{s:s}", "communityGalleryImageId", image)
                         : json_pack("{s:s}", "id", image);
    json_t *managed = json_pack("{s:s}", "storageAccountType", "Standard_LRS");
    json_t *os_disk =
        json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", disk, "createOption", "FromImage", "caching",
                  "ReadWrite", "deleteOption", "Delete", "managedDisk", managed);
    if (os_disk != NULL && cfg->root_volume_size > 0)
        json_object_set_new(os_disk, "diskSizeGB", json_integer(cfg->root_volume_size));
    json_t *props = json_pack(
        "{s:{s:s}, s:{s:o, s:o}, s:{s:s, s:s, s:{s:b, s:{s:[{s:s, s:s}]}}}, "
        "s:{s:[{s:s, s:{s:s, s:b}}]}, s:{s:{s:b}}, s:s}",
        "hardwareProfile", "vmSize", c->size, "storageProfile", "imageReference", imgref, "osDisk",
        os_disk, "osProfile", "adminUsername", cfg->ssh_username, "computerName", c->name,
        "linuxConfiguration", "disablePasswordAuthentication", 1, "ssh", "publicKeys", "path",
        keypath, "keyData", st->d.ssh_key, "networkProfile", "networkInterfaces", "id", nicpath,
        "properties", "deleteOption", "Delete", "primary", 1, "diagnosticsProfile",
        "bootDiagnostics", "enabled", 1, "userData", c->user_data);
    if (props == NULL)
        return NULL;
    if (!cfg->disable_cvm) {
        /* A confidential VM: SEV-SNP or TDX by its size, a vTPM, the guest
         * state encrypted with the VM. */
        json_object_set_new(managed, "securityProfile",
                            json_pack("{s:s}", "securityEncryptionType", "VMGuestStateOnly"));
        json_object_set_new(props, "securityProfile",
                            json_pack("{s:s, s:{s:b, s:b}}", "securityType", "ConfidentialVM",
                                      "uefiSettings", "secureBootEnabled", cfg->enable_secure_boot,
                                      "vTpmEnabled", 1));
    }
    return json_pack("{s:s, s:o, s:o}", "location", cfg->region, "tags",
                     tags_of(st, c->node, c->sandbox_id), "properties", props);
}

/* --- create: a VM that another operation is making ------------------------------ */

/* Azure's answer to a PUT of a VM while an operation on it runs. */
static int vm_busy(const char *code)
{
    return code != NULL &&
           (strcmp(code, "RetryableError") == 0 || strcmp(code, "AnotherOperationInProgress") == 0);
}

static void busy_get(cr_t *c);

static void busy_tick(uv_timer_t *t)
{
    busy_get(container_of(t, cr_t, timer));
}

/* The next read of the VM, each wait twice the last, up to 16 polls'. */
static void busy_later(cr_t *c)
{
    st_t *st = c->st;
    uint64_t now = uv_now(st->p->loop);
    if (now + c->busy_delay > c->busy_deadline) {
        pp_error_t e;
        pp_error_set_status(&e, PP_GRPC_DEADLINE_EXCEEDED, -ETIMEDOUT,
                            "the operation in progress on VM `%s` did not end in %" PRId64 " ms",
                            c->name, st->cfg.operation_timeout_ms);
        create_fail(c, -ETIMEDOUT, &e);
        return;
    }
    uv_timer_start(&c->timer, busy_tick, c->busy_delay, 0);
    uint64_t cap = (uint64_t)st->cfg.poll_ms * 16;
    c->busy_delay = c->busy_delay * 2 < cap ? c->busy_delay * 2 : cap;
}

static void busy_answered(int status, const pp__azure_answer_t *ans, const char *code,
                          const pp_error_t *err, void *data)
{
    cr_t *c = data;
    (void)code;
    pp_error_t e = {0};
    if (status == -ENOENT) {
        /* Gone meanwhile (its creation failed and was removed): made again. */
        if (++c->reputs <= 3) {
            create_vm(c);
            return;
        }
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EAGAIN,
                            "VM `%s` went away %d times while it was being made", c->name,
                            c->reputs - 1);
        create_fail(c, -EAGAIN, &e);
        return;
    }
    if (status < 0) {
        create_fail(c, status, err);
        return;
    }
    pp__azure_vm_t vm;
    if (pp__azure_parse_vm(ans->body, ans->len, &vm) < 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EBADMSG,
                            "azure: VM `%s`: the answer cannot be read", c->name);
        create_fail(c, -EBADMSG, &e);
        return;
    }
    if (strcmp(vm.sandbox_id, c->sandbox_id) != 0) {
        /* Not this sandbox's: nothing here is ours to remove. */
        pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -EEXIST,
                            "VM `%s` exists for sandbox `%.128s`", c->name, vm.sandbox_id);
        c->made = 0;
        create_fail(c, -EEXIST, &e);
        return;
    }
    if (strcmp(vm.state, "Succeeded") == 0) {
        PP_INFO(COMP, "VM `%s`, made by an earlier request of this create, is ready", c->name);
        create_addr(c);
        return;
    }
    if (strcmp(vm.state, "Failed") == 0 || strcmp(vm.state, "Canceled") == 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EIO, "VM `%s`: provisioning %s", c->name,
                            vm.state);
        create_fail(c, -EIO, &e);
        return;
    }
    busy_later(c);
}

static void busy_get(cr_t *c)
{
    char path[1024];
    int r = VM_PATH(c->st, path, c->name);
    if (r == 0)
        r = pp__azure_arm(c->st, "GET", path, PP_AZURE_COMPUTE_API, NULL, busy_answered, c);
    if (r < 0)
        fail_sync(c, r, "virtual machine");
}

/* A PUT of the VM met another operation on it: this create's own earlier
 * PUT, whose answer was lost (a connection dropped after Azure took it, an
 * answer past the attempt's timeout). Sending the PUT again meets the same
 * answer until Azure is done with the VM, which takes minutes: the VM is
 * read instead until that operation ends. Made, it is this create's; failed,
 * it is removed as any failed create's; gone, it is PUT again. */
static void busy_start(cr_t *c)
{
    st_t *st = c->st;
    PP_INFO(COMP,
            "VM `%s`: an operation on it is in progress, from an earlier request of "
            "this create; waiting for it to end",
            c->name);
    c->busy_deadline = uv_now(st->p->loop) + (uint64_t)st->cfg.operation_timeout_ms;
    c->busy_delay = (uint64_t)st->cfg.poll_ms;
    busy_later(c);
}

static void vm_done(int status, const char *code, const pp_error_t *err, void *data)
{
    cr_t *c = data;
    if (status < 0 && vm_busy(code)) {
        busy_start(c);
        return;
    }
    step_done(status, err, c, "virtual machine", create_addr);
}

static void create_vm(cr_t *c)
{
    st_t *st = c->st;
    char path[1024];
    int r = VM_PATH(st, path, c->name);
    if (r < 0) {
        fail_sync(c, r, "virtual machine");
        return;
    }
    json_t *b = vm_body(c);
    PP_INFO(COMP, "creating VM `%s` (%s%s) for sandbox `%s`", c->name, c->size,
            st->cfg.disable_cvm ? "" : ", confidential", c->sandbox_id);
    r = b ? pp__azure_arm_wait(st, "PUT", path, PP_AZURE_COMPUTE_API, b, vm_done, c) : -ENOMEM;
    if (r < 0)
        fail_sync(c, r, "virtual machine");
}

static void create_succeed(cr_t *c)
{
    st_t *st = c->st;
    const char *ip = st->cfg.use_public_ip ? c->public_ip : c->private_ip;
    pp_instance_t *res = &c->result;
    /* The VM's name: with the configured subscription and resource group
     * it names the VM, and its ARM id does not fit pp_instance_t.id. */
    snprintf(res->id, sizeof(res->id), "%s", c->name);
    snprintf(res->name, sizeof(res->name), "%s", c->name);
    snprintf(res->ip, sizeof(res->ip), "%s", ip);
    snprintf(res->sandbox_id, sizeof(res->sandbox_id), "%s", c->sandbox_id);
    PP_INFO(COMP, "VM `%s` of sandbox `%s` has address %s", c->name, c->sandbox_id, ip);
    create_end(c, 0);
}

static void addr_answered(int status, const pp__azure_answer_t *ans, const char *code,
                          const pp_error_t *err, void *data)
{
    cr_t *c = data;
    (void)code;
    if (status < 0) {
        create_fail(c, status, err);
        return;
    }
    pp__azure_addr_t a;
    pp_error_t e = {0};
    if (pp__azure_parse_addr(ans->body, ans->len, &a) < 0 || a.ip[0] == '\0') {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EBADMSG,
                            "azure: no address in the answer for `%s`", c->name);
        create_fail(c, -EBADMSG, &e);
        return;
    }
    if (c->private_ip[0] == '\0') {
        snprintf(c->private_ip, sizeof(c->private_ip), "%s", a.ip);
        if (c->st->cfg.use_public_ip) {
            create_addr(c);
            return;
        }
    } else {
        snprintf(c->public_ip, sizeof(c->public_ip), "%s", a.ip);
    }
    create_succeed(c);
}

/* The NIC's private address, then with USE_PUBLIC_IP the public one. */
static void create_addr(cr_t *c)
{
    st_t *st = c->st;
    char name[96], path[1024];
    int r;
    if (c->private_ip[0] == '\0') {
        res_name(name, sizeof(name), c->name, "-net");
        r = NIC_PATH(st, path, name);
    } else {
        res_name(name, sizeof(name), c->name, "-ip");
        r = PIP_PATH(st, path, name);
    }
    if (r == 0)
        r = pp__azure_arm(st, "GET", path, PP_AZURE_NETWORK_API, NULL, addr_answered, c);
    if (r < 0)
        fail_sync(c, r, "address");
}

static int azure_create(pp_provider_t *p, const pp_instance_spec_t *spec, pp_provider_create_cb cb,
                        void *data)
{
    st_t *st = p->state;
    if (cb == NULL)
        return -EINVAL;
    int rc =
        pp_instance_spec_check(spec, sizeof(((cr_t *)0)->sandbox_id), sizeof(((cr_t *)0)->name),
                               sizeof(((cr_t *)0)->image), PP_AZURE_USER_DATA_MAX);
    if (rc < 0)
        return rc;
    joiner_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return -ENOMEM;
    j->cb = cb;
    j->data = data;
    /* A create of the same VM in flight: this one gets its result. */
    for (cr_t *c = st->creates; c != NULL; c = c->next) {
        if (strcmp(c->name, spec->instance_name) == 0 &&
            strcmp(c->sandbox_id, spec->sandbox_id) == 0) {
            joiner_t **tail = &c->joiners;
            while (*tail != NULL)
                tail = &(*tail)->next;
            *tail = j;
            PP_DEBUG(COMP, "create of `%s` joins the one in flight", c->name);
            return 0;
        }
    }
    const char *node = spec->node_name ? spec->node_name : p->node_name;
    pp_buf_t b64;
    pp_buf_init(&b64, 0);
    int r = pp_base64_encode(spec->user_data ? spec->user_data : "", spec->user_data_len, &b64);
    cr_t *c = r == 0 ? calloc(1, sizeof(*c)) : NULL;
    if (c == NULL || uv_timer_init(p->loop, &c->timer) < 0) {
        free(c);
        free(j);
        pp_buf_free(&b64);
        return r < 0 ? r : -ENOMEM;
    }
    size_t len;
    c->user_data = (char *)pp_buf_steal(&b64, &len);
    c->st = st;
    c->joiners = j;
    snprintf(c->sandbox_id, sizeof(c->sandbox_id), "%s", spec->sandbox_id);
    snprintf(c->name, sizeof(c->name), "%s", spec->instance_name);
    snprintf(c->node, sizeof(c->node), "%s", node ? node : "");
    snprintf(c->machine_type, sizeof(c->machine_type), "%s",
             spec->machine_type ? spec->machine_type : "");
    snprintf(c->image, sizeof(c->image), "%s", spec->image ? spec->image : "");
    c->vcpus = spec->vcpus;
    c->memory_mib = spec->memory_mib;
    c->gpus = spec->gpus;
    c->next = st->creates;
    st->creates = c;
    st->ops_in_flight++;
    create_select(c);
    return 0;
}

/* --- delete ---------------------------------------------------------------------------- */

typedef struct del_s {
    st_t *st;
    uv_timer_t timer;
    char name[80];
    int step;
    int status;
    pp_error_t err;
    pp_provider_delete_cb cb;
    void *data;
} del_t;

static void del_closed(uv_handle_t *h)
{
    del_t *d = container_of((uv_timer_t *)h, del_t, timer);
    d->cb(d->status, d->status < 0 ? &d->err : NULL, d->data);
    d->st->ops_in_flight--;
    free(d);
}

static void del_end(del_t *d, int status)
{
    d->status = status;
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, del_closed);
}

static void del_next(del_t *d);

static void del_done(int status, const char *code, const pp_error_t *err, void *data)
{
    del_t *d = data;
    (void)code;
    if (status < 0) {
        d->err = *err;
        pp_error_wrap(&d->err, "delete `%s`", d->name);
        del_end(d, status);
        return;
    }
    if (d->step == 1)
        PP_INFO(COMP, "VM `%s` deleted", d->name);
    del_next(d);
}

/* The VM, then what a create cut short may have left. */
static void del_next(del_t *d)
{
    st_t *st = d->st;
    char name[96], path[1024];
    const char *api = PP_AZURE_NETWORK_API;
    int r;
    switch (d->step++) {
    case 0:
        r = VM_PATH(st, path, d->name);
        api = PP_AZURE_COMPUTE_API;
        break;
    case 1:
        res_name(name, sizeof(name), d->name, "-net");
        r = NIC_PATH(st, path, name);
        break;
    case 2:
        if (!st->cfg.use_public_ip) {
            del_next(d);
            return;
        }
        res_name(name, sizeof(name), d->name, "-ip");
        r = PIP_PATH(st, path, name);
        break;
    case 3:
        res_name(name, sizeof(name), d->name, "-disk");
        r = DISK_PATH(st, path, name);
        api = PP_AZURE_COMPUTE_API;
        break;
    default:
        del_end(d, 0);
        return;
    }
    if (r == 0)
        r = pp__azure_arm_wait(st, "DELETE", path, api, NULL, del_done, d);
    if (r < 0) {
        pp_error_set_status(&d->err, PP_GRPC_UNAVAILABLE, r, "delete `%s`: %s", d->name,
                            uv_strerror(r));
        del_end(d, r);
    }
}

static void del_start(uv_timer_t *t)
{
    del_next(container_of(t, del_t, timer));
}

static int azure_delete(pp_provider_t *p, const char *instance_id, pp_provider_delete_cb cb,
                        void *data)
{
    st_t *st = p->state;
    if (instance_id == NULL || cb == NULL)
        return -EINVAL;
    del_t *d = calloc(1, sizeof(*d));
    if (d == NULL || uv_timer_init(p->loop, &d->timer) < 0) {
        free(d);
        return -ENOMEM;
    }
    d->st = st;
    d->cb = cb;
    d->data = data;
    st->ops_in_flight++;
    /* Not a VM of this resource group: nothing of ours to delete. */
    if (pp__azure_vm_name(&st->cfg, instance_id, d->name, sizeof(d->name)) == NULL) {
        PP_INFO(COMP, "`%s` is no VM of resource group `%s`: nothing to delete", instance_id,
                st->cfg.resource_group);
        d->step = 4;
    } else {
        PP_INFO(COMP, "deleting VM `%s`", d->name);
    }
    uv_timer_start(&d->timer, del_start, 0, 0);
    return 0;
}

/* --- list -------------------------------------------------------------------------------- */

typedef struct list_s {
    st_t *st;
    uv_timer_t timer;
    int phase; /* 0 VMs, 1 NICs, 2 public addresses */
    unsigned pages;
    pp__azure_vm_t *vms;
    size_t nvms, capvms;
    pp__azure_addr_t *addrs;
    size_t naddrs, capaddrs;
    pp_instance_t *out;
    size_t nout;
    int status;
    pp_error_t err;
    pp_provider_list_cb cb;
    void *data;
} list_t;

static void list_closed(uv_handle_t *h)
{
    list_t *l = container_of((uv_timer_t *)h, list_t, timer);
    l->cb(l->status, l->status < 0 ? NULL : l->out, l->status < 0 ? 0 : l->nout,
          l->status < 0 ? &l->err : NULL, l->data);
    l->st->ops_in_flight--;
    free(l->vms);
    free(l->addrs);
    free(l->out);
    free(l);
}

static void list_end(list_t *l, int status)
{
    l->status = status;
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, list_closed);
}

static const char *addr_ip(const list_t *l, const char *id, const char **pip)
{
    for (size_t i = 0; i < l->naddrs; i++) {
        if (strcasecmp(l->addrs[i].id, id) == 0) {
            if (pip != NULL)
                *pip = l->addrs[i].pip_id;
            return l->addrs[i].ip;
        }
    }
    return "";
}

static void list_finish(list_t *l)
{
    l->out = calloc(l->nvms ? l->nvms : 1, sizeof(*l->out));
    if (l->out == NULL) {
        pp_error_set(&l->err, -ENOMEM, "out of memory");
        list_end(l, -ENOMEM);
        return;
    }
    for (size_t i = 0; i < l->nvms; i++) {
        const pp__azure_vm_t *vm = &l->vms[i];
        pp_instance_t *o = &l->out[l->nout++];
        snprintf(o->id, sizeof(o->id), "%.63s", vm->name);
        snprintf(o->name, sizeof(o->name), "%.63s", vm->name);
        snprintf(o->sandbox_id, sizeof(o->sandbox_id), "%.127s", vm->sandbox_id);
        const char *pip = "";
        const char *ip = addr_ip(l, vm->nic_id, &pip);
        if (l->st->cfg.use_public_ip)
            ip = pip[0] ? addr_ip(l, pip, NULL) : "";
        snprintf(o->ip, sizeof(o->ip), "%s", ip);
    }
    list_end(l, 0);
}

static void list_page(list_t *l, const char *url);

static void list_answered(int status, const pp__azure_answer_t *ans, const char *code,
                          const pp_error_t *err, void *data)
{
    list_t *l = data;
    (void)code;
    if (status < 0) {
        l->err = *err;
        pp_error_wrap(&l->err, "list instances");
        list_end(l, status);
        return;
    }
    char next[2048];
    int r;
    const char *node = l->st->p->node_name;
    if (l->phase == 0) {
        pp__azure_vms_t v;
        r = pp__azure_parse_vms(ans->body, ans->len, &v);
        for (size_t i = 0; r == 0 && i < v.n; i++) {
            const pp__azure_vm_t *vm = &v.items[i];
            if (vm->sandbox_id[0] == '\0' || strcmp(vm->state, "Deleting") == 0 ||
                (node != NULL && node[0] != '\0' && strcmp(vm->node, node) != 0))
                continue;
            if (l->nvms == l->capvms) {
                size_t nc = l->capvms ? l->capvms * 2 : 16;
                pp__azure_vm_t *nv = realloc(l->vms, nc * sizeof(*nv));
                if (nv == NULL) {
                    r = -ENOMEM;
                    break;
                }
                l->vms = nv;
                l->capvms = nc;
            }
            l->vms[l->nvms++] = *vm;
        }
        snprintf(next, sizeof(next), "%s", r == 0 ? v.next_link : "");
        if (r == 0 || v.items != NULL)
            pp__azure_vms_free(&v);
    } else {
        pp__azure_addrs_t a;
        r = pp__azure_parse_addrs(ans->body, ans->len, &a);
        if (r == 0 && a.n > 0) {
            pp__azure_addr_t *na = realloc(l->addrs, (l->naddrs + a.n) * sizeof(*na));
            if (na == NULL) {
                r = -ENOMEM;
            } else {
                memcpy(na + l->naddrs, a.items, a.n * sizeof(*na));
                l->addrs = na;
                l->naddrs += a.n;
            }
        }
        snprintf(next, sizeof(next), "%s", r == 0 ? a.next_link : "");
        if (r == 0 || a.items != NULL)
            pp__azure_addrs_free(&a);
    }
    if (r < 0) {
        pp_error_set_status(&l->err, PP_GRPC_UNAVAILABLE, r, "list instances: %s",
                            r == -ENOMEM ? "out of memory" : "the answer cannot be read");
        list_end(l, r);
        return;
    }
    if (next[0] != '\0' && ++l->pages < MAX_PAGES) {
        list_page(l, next);
        return;
    }
    if (l->nvms == 0 || l->phase == (l->st->cfg.use_public_ip ? 2 : 1)) {
        list_finish(l);
        return;
    }
    l->phase++;
    list_page(l, NULL);
}

static void list_page(list_t *l, const char *url)
{
    st_t *st = l->st;
    char path[1024];
    int r = 0;
    const char *api = l->phase == 0 ? PP_AZURE_COMPUTE_API : PP_AZURE_NETWORK_API;
    if (url == NULL) {
        if (l->phase == 0)
            r = VM_PATH(st, path, NULL);
        else if (l->phase == 1)
            r = NIC_PATH(st, path, NULL);
        else
            r = PIP_PATH(st, path, NULL);
        url = path;
    }
    if (r == 0)
        r = pp__azure_arm(st, "GET", url, api, NULL, list_answered, l);
    if (r < 0) {
        pp_error_set_status(&l->err, PP_GRPC_UNAVAILABLE, r, "list instances: %s",
                            r == -EPERM ? "a next page off the Resource Manager endpoint"
                                        : uv_strerror(r));
        list_end(l, r);
    }
}

static void list_start(uv_timer_t *t)
{
    list_page(container_of(t, list_t, timer), NULL);
}

static int azure_list(pp_provider_t *p, pp_provider_list_cb cb, void *data)
{
    st_t *st = p->state;
    if (cb == NULL)
        return -EINVAL;
    list_t *l = calloc(1, sizeof(*l));
    if (l == NULL || uv_timer_init(p->loop, &l->timer) < 0) {
        free(l);
        return -ENOMEM;
    }
    l->st = st;
    l->cb = cb;
    l->data = data;
    st->ops_in_flight++;
    uv_timer_start(&l->timer, list_start, 0, 0);
    return 0;
}

/* --- start and stop ---------------------------------------------------------------------- */

static int azure_init(pp_provider_t *p, pp_error_t *err)
{
    st_t *st = p->state;
    st->p = p;
    /* The settings are in st->cfg already (ops.settings). */
    int r = pp__azure_config_check(&st->cfg, &st->d, err);
    if (r < 0) {
        pp__azure_derived_free(&st->d);
        explicit_bzero(st->cfg.client_secret, sizeof(st->cfg.client_secret));
        return r;
    }
    const pp__azure_config_t *c = &st->cfg;
    pp_http_config_t hc = {
        .name = "azure",
        .ca_bundle = c->ca_bundle[0] ? c->ca_bundle : NULL,
        .rate = c->rate,
        .burst = (unsigned)c->burst,
        .max_attempts = (unsigned)c->max_attempts,
        .backoff_base_ms = (uint64_t)c->backoff_base_ms,
        .backoff_max_ms = (uint64_t)c->backoff_max_ms,
        .timeout_ms = (uint64_t)c->request_timeout_ms,
        .attempt_timeout_ms = (uint64_t)c->attempt_timeout_ms,
        .max_response = PP_AZURE_JSON_MAX,
        .user_agent = "peerpod-cloud-api-adaptor",
        .classify = pp__azure_http_classify,
        .metrics = p->metrics,
    };
    r = pp_http_new(p->loop, &hc, &st->http, err);
    if (r < 0) {
        pp__azure_derived_free(&st->d);
        explicit_bzero(st->cfg.client_secret, sizeof(st->cfg.client_secret));
        return r;
    }
    static const char *const modes[] = {"a client secret", "workload identity",
                                        "the managed identity"};
    PP_INFO(COMP,
            "subscription `%s`, resource group `%s`, region `%s`, endpoint %s, credentials "
            "from %s, size `%s` (%zu allowed), %s, API rate %g/s burst %d",
            c->subscription_id, c->resource_group, c->region, st->d.arm, modes[st->d.cred_mode],
            c->instance_size, st->d.nsizes, c->disable_cvm ? "no CVM" : "confidential VMs", c->rate,
            c->burst);
    return 0;
}

static void azure_fini(pp_provider_t *p)
{
    st_t *st = p->state;
    if (st->ops_in_flight > 0)
        PP_WARN(COMP, "closing with %u operations in flight", st->ops_in_flight);
    pp_http_free(st->http);
    st->http = NULL;
    pp__azure_creds_clear(&st->creds);
    pp__azure_derived_free(&st->d);
    explicit_bzero(st->cfg.client_secret, sizeof(st->cfg.client_secret));
    free(st->specs);
}

const struct pp_provider_ops pp_provider_azure_ops = {
    .name = "azure",
    .state_size = sizeof(pp__azure_state_t),
    .user_data_max = PP_AZURE_USER_DATA_MAX,
    .settings = &pp__azure_settings,
    .init = azure_init,
    .create_instance = azure_create,
    .delete_instance = azure_delete,
    .list_instances = azure_list,
    .fini = azure_fini,
};
