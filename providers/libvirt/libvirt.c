/* The libvirt provider: pod VMs as libvirt domains (libvirt.h). */
#include "providers/libvirt/libvirt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <uv.h>

#include "providers/provider.h"
#include "util/cleanup.h"
#include "util/hex.h"
#include "util/log.h"

#define LOG        "libvirt"
#define UPLOAD_MAX (256u * 1024) /* bytes per stream write */
#define UUID_LEN   VIR_UUID_STRING_BUFLEN

typedef struct lv_s {
    pp__libvirt_config_t cfg; /* first: the settings' offsets are into it */
    uv_mutex_t lock;
    virConnectPtr conn; /* guarded by lock; reopened when it dies */
    char type[8];       /* domain type: kvm, qemu or test */
    int snp;            /* launch pod VMs with SEV-SNP */
    pp__libvirt_hooks_t hooks;
} lv_t;

enum job_kind { JOB_CREATE, JOB_DELETE, JOB_LIST };
enum create_phase { PHASE_CREATE, PHASE_ADDRESS, PHASE_UNDO };

typedef struct job_s {
    uv_work_t work;
    uv_timer_t timer; /* create: the wait between address lookups */
    pp_provider_t *p;
    lv_t *lv;
    enum job_kind kind;
    enum create_phase phase;
    int status;
    pp_error_t err;
    void *data;
    union {
        pp_provider_create_cb create;
        pp_provider_delete_cb del;
        pp_provider_list_cb list;
    } cb;
    /* create */
    pp_instance_t inst; /* id = domain UUID */
    char *user_data;
    size_t user_data_len;
    char node[256];
    char base_vol[256];
    int base_from_pod; /* named by the pod's image annotation */
    unsigned vcpus, memory_mib;
    uint8_t host_data[32];
    int has_host_data;
    int domain_gone; /* the domain stopped while we waited for its address */
    uint64_t deadline;
    /* list */
    pp_instance_t *insts;
    size_t ninsts;
} job_t;

/* ---- errors and the connection (any thread) ---- */

static void quiet(void *arg, virErrorPtr e)
{
    (void)arg;
    (void)e; /* errors are read with virGetLastError() and reported by us */
}

/* Fills `err` from libvirt's last error on this thread. */
__attribute__((format(printf, 2, 3))) static int lv_fail(pp_error_t *err, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    virErrorPtr e = virGetLastError();
    int code = -EIO;
    if (e != NULL) {
        switch (e->code) {
        case VIR_ERR_NO_DOMAIN:
        case VIR_ERR_NO_STORAGE_POOL:
        case VIR_ERR_NO_STORAGE_VOL:
        case VIR_ERR_NO_NETWORK:
            code = -ENOENT;
            break;
        case VIR_ERR_NO_SUPPORT:
            code = -ENOTSUP;
            break;
        case VIR_ERR_NO_CONNECT:
        case VIR_ERR_SYSTEM_ERROR:
        case VIR_ERR_RPC:
            code = -ECONNREFUSED;
            break;
        case VIR_ERR_OPERATION_DENIED:
        case VIR_ERR_AUTH_FAILED:
            code = -EACCES;
            break;
        default:
            break;
        }
    }
    return pp_error_set(err, code, "%s: %s", what,
                        e != NULL && e->message != NULL ? e->message : "unknown libvirt error");
}

static int last_error_is(int code)
{
    virErrorPtr e = virGetLastError();
    return e != NULL && e->code == code;
}

/* A reference to the connection, reopened if it died; virConnectClose()
 * drops the reference. */
static virConnectPtr conn_get(lv_t *lv, pp_error_t *err)
{
    uv_mutex_lock(&lv->lock);
    if (lv->conn != NULL && virConnectIsAlive(lv->conn) != 1) {
        PP_WARN(LOG, "connection to `%s` lost; reconnecting", lv->cfg.uri);
        virConnectClose(lv->conn);
        lv->conn = NULL;
    }
    if (lv->conn == NULL)
        lv->conn = virConnectOpen(lv->cfg.uri);
    virConnectPtr c = lv->conn;
    if (c != NULL)
        virConnectRef(c);
    else
        lv_fail(err, "connect to `%s` (LIBVIRT_URI)", lv->cfg.uri);
    uv_mutex_unlock(&lv->lock);
    return c;
}

static int step(lv_t *lv, const char *name, pp_error_t *err)
{
    if (lv == NULL || lv->hooks.step == NULL)
        return 0;
    int r = lv->hooks.step(lv->hooks.arg, name);
    return r < 0 ? pp_error_set(err, r, "%s: injected failure", name) : 0;
}

/* ---- volumes ---- */

static int vol_delete(virConnectPtr c, const char *pool_name, const char *vol_name, pp_error_t *err)
{
    virStoragePoolPtr pool = virStoragePoolLookupByName(c, pool_name);
    if (pool == NULL)
        return last_error_is(VIR_ERR_NO_STORAGE_POOL)
                   ? 0
                   : lv_fail(err, "storage pool `%s`", pool_name);
    int r = 0;
    virStorageVolPtr vol = virStorageVolLookupByName(pool, vol_name);
    if (vol == NULL) {
        if (!last_error_is(VIR_ERR_NO_STORAGE_VOL))
            r = lv_fail(err, "volume `%s`", vol_name);
    } else {
        if (virStorageVolDelete(vol, 0) < 0 && !last_error_is(VIR_ERR_NO_STORAGE_VOL))
            r = lv_fail(err, "delete volume `%s`", vol_name);
        virStorageVolFree(vol);
    }
    virStoragePoolFree(pool);
    return r;
}

static int upload(lv_t *lv, virConnectPtr c, virStorageVolPtr vol, const char *name,
                  const uint8_t *data, size_t len, pp_error_t *err)
{
    if (lv->hooks.upload != NULL) {
        int r = lv->hooks.upload(lv->hooks.arg, name, data, len);
        return r < 0 ? pp_error_set(err, r, "upload `%s`: failed", name) : 0;
    }
    virStreamPtr st = virStreamNew(c, 0);
    if (st == NULL)
        return lv_fail(err, "upload `%s`", name);
    int r = 0;
    if (virStorageVolUpload(vol, st, 0, len, 0) < 0) {
        r = lv_fail(err, "upload `%s`", name);
        virStreamFree(st);
        return r;
    }
    for (size_t off = 0; off < len && r == 0;) {
        size_t n = len - off < UPLOAD_MAX ? len - off : UPLOAD_MAX;
        int sent = virStreamSend(st, (const char *)data + off, n);
        if (sent <= 0)
            r = lv_fail(err, "upload `%s`", name);
        else
            off += (size_t)sent;
    }
    if (r == 0 && virStreamFinish(st) < 0)
        r = lv_fail(err, "upload `%s`", name);
    if (r < 0)
        virStreamAbort(st);
    virStreamFree(st);
    return r;
}

/* Makes `<name><suffix>` in the pool from `xml`, replacing a leftover of an
 * earlier attempt (the name is this instance's alone). */
static virStorageVolPtr vol_create(virConnectPtr c, virStoragePoolPtr pool, const char *pool_name,
                                   const char *name, const char *xml, pp_error_t *err)
{
    virStorageVolPtr old = virStorageVolLookupByName(pool, name);
    if (old != NULL) {
        PP_INFO(LOG, "removing volume `%s` left by an earlier attempt", name);
        virStorageVolFree(old);
        if (vol_delete(c, pool_name, name, err) < 0)
            return NULL;
    }
    virStorageVolPtr vol = virStorageVolCreateXML(pool, xml, 0);
    if (vol == NULL)
        lv_fail(err, "create volume `%s` in pool `%s`", name, pool_name);
    return vol;
}

/* ---- domains ---- */

static int domain_vol_cb(const char *pool, const char *vol, void *arg)
{
    void **a = arg;
    virConnectPtr c = a[0];
    const char *prefix = a[1];
    pp_error_t *err = a[2];
    /* Only the volumes made for this domain: never the base image, nor
     * anything else a hand-edited domain may point at. */
    if (strncmp(vol, prefix, strlen(prefix)) != 0 || vol[strlen(prefix)] != '-')
        return 0;
    return vol_delete(c, pool, vol, err);
}

/* Destroys and undefines `dom` and deletes its volumes. The domain goes
 * last, so an interruption leaves something list_instances() finds. `lv`
 * is NULL where no failure may be injected (undoing a create). */
static int domain_remove(lv_t *lv, virConnectPtr c, virDomainPtr dom, pp_error_t *err)
{
    const char *name = virDomainGetName(dom);
    char dname[128];
    snprintf(dname, sizeof(dname), "%s", name != NULL ? name : "");
    int r;
    if ((r = step(lv, "destroy", err)) < 0)
        return r;
    if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0 &&
        !last_error_is(VIR_ERR_OPERATION_INVALID))
        return lv_fail(err, "destroy domain `%s`", dname);
    if ((r = step(lv, "volumes", err)) < 0)
        return r;
    char *xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE);
    if (xml == NULL)
        return lv_fail(err, "domain `%s`", dname);
    void *arg[] = {c, dname, err};
    r = pp__libvirt_domain_volumes(xml, domain_vol_cb, arg);
    free(xml);
    if (r < 0)
        return r == -EBADMSG ? pp_error_set(err, r, "domain `%s`: unreadable XML", dname) : r;
    if ((r = step(lv, "undefine", err)) < 0)
        return r;
    if (virDomainUndefineFlags(dom, VIR_DOMAIN_UNDEFINE_NVRAM | VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
                                        VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA) < 0) {
        if (last_error_is(VIR_ERR_NO_DOMAIN))
            return 0;
        if (!last_error_is(VIR_ERR_NO_SUPPORT) && !last_error_is(VIR_ERR_INVALID_ARG))
            return lv_fail(err, "undefine domain `%s`", dname);
        if (virDomainUndefine(dom) < 0 && !last_error_is(VIR_ERR_NO_DOMAIN))
            return lv_fail(err, "undefine domain `%s`", dname);
    }
    return 0;
}

/* The sandbox a domain's metadata names for this node: 1 with it, 0 when
 * the domain is not one of this node's pod VMs. */
static int domain_owner(const char *node, virDomainPtr dom, char *sandbox, size_t len)
{
    char *md = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, PP_LIBVIRT_NS, 0);
    if (md == NULL)
        return 0;
    char mnode[256];
    int r = pp__libvirt_metadata_parse(md, mnode, sizeof(mnode), sandbox, len);
    free(md);
    return r == 0 && strcmp(mnode, node != NULL ? node : "") == 0;
}

/* The first IPv4 address in the network's DHCP leases for the domain. */
static int domain_address(virDomainPtr dom, char *ip, size_t iplen, pp_error_t *err)
{
    virDomainInterfacePtr *ifs = NULL;
    int n = virDomainInterfaceAddresses(dom, &ifs, VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0);
    if (n < 0)
        return lv_fail(err, "addresses of domain `%s`", virDomainGetName(dom));
    ip[0] = '\0';
    for (int i = 0; i < n; i++) {
        for (unsigned a = 0; ip[0] == '\0' && a < ifs[i]->naddrs; a++)
            if (ifs[i]->addrs[a].type == VIR_IP_ADDR_TYPE_IPV4 && ifs[i]->addrs[a].addr != NULL)
                snprintf(ip, iplen, "%s", ifs[i]->addrs[a].addr);
        virDomainInterfaceFree(ifs[i]);
    }
    free(ifs);
    return 0;
}

/* ---- create ---- */

static int create_volumes_and_domain(job_t *j, virConnectPtr c, virStoragePoolPtr pool,
                                     virDomainPtr *out, int *made, pp_error_t *err)
{
    lv_t *lv = j->lv;
    const char *name = j->inst.name;
    virStorageVolPtr base = virStorageVolLookupByName(pool, j->base_vol);
    if (base == NULL && virStoragePoolRefresh(pool, 0) == 0)
        base = virStorageVolLookupByName(pool, j->base_vol); /* copied in behind libvirt */
    if (base == NULL)
        return lv_fail(err, "base volume `%s` in pool `%s` (%s, LIBVIRT_POOL)", j->base_vol,
                       lv->cfg.pool,
                       j->base_from_pod ? "the pod's image annotation" : "LIBVIRT_VOL_NAME");
    virStorageVolInfo info;
    char *bxml = virStorageVolGetXMLDesc(base, 0);
    int r = bxml != NULL && virStorageVolGetInfo(base, &info) == 0
                ? 0
                : lv_fail(err, "base volume `%s`", j->base_vol);
    virStorageVolFree(base);
    char bformat[32], bpath[PATH_MAX];
    if (r == 0 &&
        pp__libvirt_volume_parse(bxml, bformat, sizeof(bformat), bpath, sizeof(bpath)) < 0)
        r = pp_error_set(err, -EBADMSG, "base volume `%s`: no format or path in its XML",
                         j->base_vol);
    free(bxml);
    if (r < 0)
        return r;

    char root[128], cidata[128];
    snprintf(root, sizeof(root), "%s" PP_LIBVIRT_ROOT, name);
    snprintf(cidata, sizeof(cidata), "%s" PP_LIBVIRT_CIDATA, name);
    pp_buf_t xml, iso;
    pp_buf_init(&xml, 0);
    pp_buf_init(&iso, 0);
    virStorageVolPtr vol = NULL;

    if ((r = step(lv, "root-volume", err)) < 0)
        goto out;
    /* At least LIBVIRT_ROOT_DISK_SIZE, never smaller than the base (as
     * upstream); the guest grows its file system into the rest. */
    uint64_t capacity = lv->cfg.root_disk_gib << 30;
    if (capacity < info.capacity)
        capacity = info.capacity;
    if ((r = pp__libvirt_volume_xml(root, capacity, "qcow2", bpath, bformat, &xml)) < 0) {
        pp_error_set(err, r, "volume `%s`: out of memory", root);
        goto out;
    }
    if ((vol = vol_create(c, pool, lv->cfg.pool, root, (char *)xml.data, err)) == NULL) {
        r = err->code;
        goto out;
    }
    *made |= 1;
    virStorageVolFree(vol);
    vol = NULL;

    if ((r = step(lv, "cidata-volume", err)) < 0)
        goto out;
    if ((r = pp__libvirt_cidata(name, j->user_data, j->user_data_len, &iso, err)) < 0)
        goto out;
    xml.len = 0;
    if ((r = pp__libvirt_volume_xml(cidata, iso.len, "raw", NULL, NULL, &xml)) < 0) {
        pp_error_set(err, r, "volume `%s`: out of memory", cidata);
        goto out;
    }
    if ((vol = vol_create(c, pool, lv->cfg.pool, cidata, (char *)xml.data, err)) == NULL) {
        r = err->code;
        goto out;
    }
    *made |= 2;
    if ((r = step(lv, "upload", err)) < 0 ||
        (r = upload(lv, c, vol, cidata, iso.data, iso.len, err)) < 0)
        goto out;

    char log[PATH_MAX];
    if ((size_t)snprintf(log, sizeof(log), "%s/%s-console.log", lv->cfg.console_dir, name) >=
        sizeof(log)) {
        r = pp_error_set(err, -ENAMETOOLONG, "console log path for `%s` too long", name);
        goto out;
    }
    pp__libvirt_domain_t d = {
        .name = name,
        .type = lv->type,
        .node = j->node,
        .sandbox_id = j->inst.sandbox_id,
        .vcpus = j->vcpus,
        .cpuset = lv->cfg.cpuset,
        .memory_mib = j->memory_mib,
        .pool = lv->cfg.pool,
        .root_vol = root,
        .cidata_vol = cidata,
        .network = lv->cfg.net,
        .firmware = lv->cfg.firmware,
        .console_log = strcmp(lv->type, "test") != 0 ? log : NULL,
        .cpu_mode = lv->cfg.cpu_mode,
        .snp = lv->snp,
        .vtpm = lv->cfg.vtpm,
        .host_data = j->has_host_data ? j->host_data : NULL,
    };
    xml.len = 0;
    if ((r = pp__libvirt_domain_xml(&d, &xml)) < 0) {
        pp_error_set(err, r, "domain `%s`: XML too large", name);
        goto out;
    }
    if ((r = step(lv, "define", err)) < 0)
        goto out;
    virDomainPtr dom = virDomainDefineXML(c, (char *)xml.data);
    if (dom == NULL) {
        r = lv_fail(err, "define domain `%s`", name);
        goto out;
    }
    *out = dom;
    if ((r = step(lv, "start", err)) < 0)
        goto out;
    if (virDomainCreate(dom) < 0) {
        r = lv_fail(err, "start domain `%s`", name);
        goto out;
    }
out:
    if (vol != NULL)
        virStorageVolFree(vol);
    pp_buf_free(&xml);
    pp_buf_free(&iso);
    return r;
}

static void create_work(uv_work_t *w)
{
    job_t *j = container_of(w, job_t, work);
    lv_t *lv = j->lv;
    pp_error_t *err = &j->err;
    virConnectPtr c = conn_get(lv, err);
    if (c == NULL) {
        j->status = err->code;
        return;
    }
    virDomainPtr dom = virDomainLookupByName(c, j->inst.name);
    if (dom != NULL) {
        /* Asked again (a retry, or after a restart): the same VM, if it is
         * this sandbox's. */
        char sb[PP_SANDBOX_ID_MAX + 1] = "";
        if (!domain_owner(j->node, dom, sb, sizeof(sb)) || strcmp(sb, j->inst.sandbox_id) != 0) {
            j->status = pp_error_set(err, -EEXIST,
                                     "a domain named `%s` exists and is not this sandbox's pod VM",
                                     j->inst.name);
        } else if (virDomainIsActive(dom) != 1 && virDomainCreate(dom) < 0) {
            j->status = lv_fail(err, "start domain `%s`", j->inst.name);
        } else if (virDomainGetUUIDString(dom, j->inst.id) < 0) {
            j->status = lv_fail(err, "domain `%s`", j->inst.name);
        }
        virDomainFree(dom);
        virConnectClose(c);
        return;
    }
    virStoragePoolPtr pool = virStoragePoolLookupByName(c, lv->cfg.pool);
    if (pool == NULL) {
        j->status = lv_fail(err, "storage pool `%s` (LIBVIRT_POOL)", lv->cfg.pool);
        virConnectClose(c);
        return;
    }
    int made = 0;
    dom = NULL;
    j->status = create_volumes_and_domain(j, c, pool, &dom, &made, err);
    if (j->status == 0 && virDomainGetUUIDString(dom, j->inst.id) < 0)
        j->status = lv_fail(err, "domain `%s`", j->inst.name);
    if (j->status < 0) {
        /* Nothing of a failed create stays. */
        pp_error_t e2;
        pp_error_clear(&e2);
        if (dom != NULL && domain_remove(NULL, c, dom, &e2) < 0)
            PP_ERR(LOG, "undo create of `%s`: %s", j->inst.name, e2.message);
        static const char *const suffix[] = {PP_LIBVIRT_ROOT, PP_LIBVIRT_CIDATA};
        for (size_t i = 0; i < PP_ARRAY_SIZE(suffix); i++) {
            char vname[128];
            snprintf(vname, sizeof(vname), "%s%s", j->inst.name, suffix[i]);
            if ((made & (1 << i)) && vol_delete(c, lv->cfg.pool, vname, &e2) < 0)
                PP_ERR(LOG, "undo create of `%s`: %s", j->inst.name, e2.message);
        }
    }
    if (dom != NULL)
        virDomainFree(dom);
    virStoragePoolFree(pool);
    virConnectClose(c);
}

static void address_work(uv_work_t *w)
{
    job_t *j = container_of(w, job_t, work);
    pp_error_t *err = &j->err;
    const pp__libvirt_hooks_t *h = &j->lv->hooks;
    int hr = h->step != NULL ? h->step(h->arg, "address") : 0;
    if (hr < 0) {
        j->status = pp_error_set(err, hr, "address: injected failure");
        return;
    }
    if (hr > 0)
        return; /* as if there were no lease yet */
    virConnectPtr c = conn_get(j->lv, err);
    if (c == NULL) {
        j->status = err->code;
        return;
    }
    virDomainPtr dom = virDomainLookupByUUIDString(c, j->inst.id);
    if (dom == NULL) {
        j->status = lv_fail(err, "domain `%s`", j->inst.name);
    } else {
        if (virDomainIsActive(dom) != 1)
            j->domain_gone = 1;
        else
            j->status = domain_address(dom, j->inst.ip, sizeof(j->inst.ip), err);
        virDomainFree(dom);
    }
    virConnectClose(c);
}

static void undo_work(uv_work_t *w)
{
    job_t *j = container_of(w, job_t, work);
    pp_error_t e;
    pp_error_clear(&e);
    virConnectPtr c = conn_get(j->lv, &e);
    if (c == NULL) {
        PP_ERR(LOG, "remove `%s` after a failed start: %s", j->inst.name, e.message);
        return;
    }
    virDomainPtr dom = virDomainLookupByUUIDString(c, j->inst.id);
    if (dom != NULL) {
        if (domain_remove(NULL, c, dom, &e) < 0)
            PP_ERR(LOG, "remove `%s` after a failed start: %s", j->inst.name, e.message);
        virDomainFree(dom);
    }
    virConnectClose(c);
}

static void job_free(job_t *j)
{
    if (j->user_data != NULL) {
        memset(j->user_data, 0, j->user_data_len); /* it carries the pod's keys */
        free(j->user_data);
    }
    free(j->insts);
    free(j);
}

static void timer_closed(uv_handle_t *h)
{
    job_free(container_of((uv_timer_t *)h, job_t, timer));
}

static void create_finish(job_t *j)
{
    if (j->status < 0)
        j->cb.create(j->status, NULL, &j->err, j->data);
    else
        j->cb.create(0, &j->inst, NULL, j->data);
    uv_close((uv_handle_t *)&j->timer, timer_closed);
}

static void create_after(uv_work_t *w, int status);

static void poll_address(uv_timer_t *t)
{
    job_t *j = container_of(t, job_t, timer);
    j->phase = PHASE_ADDRESS;
    int r = uv_queue_work(j->p->loop, &j->work, address_work, create_after);
    if (r < 0) {
        j->status = pp_error_set(&j->err, r, "look up the address of `%s`: %s", j->inst.name,
                                 uv_strerror(r));
        j->phase = PHASE_UNDO;
        if (uv_queue_work(j->p->loop, &j->work, undo_work, create_after) < 0)
            create_finish(j);
    }
}

static void create_after(uv_work_t *w, int status)
{
    job_t *j = container_of(w, job_t, work);
    lv_t *lv = j->lv;
    if (status < 0 && j->status == 0)
        j->status = pp_error_set(&j->err, status, "create `%s`: cancelled", j->inst.name);
    switch (j->phase) {
    case PHASE_CREATE:
        if (j->status < 0) {
            create_finish(j); /* the create job removed what it made */
            return;
        }
        PP_INFO(LOG, "domain `%s` (%s) started; waiting for its address", j->inst.name, j->inst.id);
        j->deadline = uv_now(j->p->loop) + lv->cfg.ip_timeout_ms;
        poll_address(&j->timer);
        return;
    case PHASE_ADDRESS:
        if (j->status == 0 && j->inst.ip[0] != '\0') {
            PP_INFO(LOG, "domain `%s` has address %s", j->inst.name, j->inst.ip);
            create_finish(j);
            return;
        }
        if (j->status == 0 && j->domain_gone)
            j->status = pp_error_set(&j->err, -EIO,
                                     "domain `%s` stopped before it had an address (console: "
                                     "%s/%s-console.log)",
                                     j->inst.name, lv->cfg.console_dir, j->inst.name);
        else if (j->status == 0 && uv_now(j->p->loop) >= j->deadline)
            j->status =
                pp_error_set(&j->err, -ETIMEDOUT,
                             "domain `%s` had no DHCP lease on network `%s` after %llu ms "
                             "(console: %s/%s-console.log)",
                             j->inst.name, lv->cfg.net, (unsigned long long)lv->cfg.ip_timeout_ms,
                             lv->cfg.console_dir, j->inst.name);
        if (j->status < 0) {
            j->phase = PHASE_UNDO;
            if (uv_queue_work(j->p->loop, &j->work, undo_work, create_after) < 0)
                create_finish(j);
            return;
        }
        uv_timer_start(&j->timer, poll_address, lv->cfg.ip_poll_ms, 0);
        return;
    case PHASE_UNDO:
        create_finish(j);
        return;
    }
}

static int hex_bytes(const char *hex, uint8_t *out, size_t n)
{
    if (hex == NULL || strlen(hex) < 2 * n)
        return -EINVAL;
    return pp_hex_decode(hex, n, out);
}

static int lv_create(pp_provider_t *p, const pp_instance_spec_t *spec, pp_provider_create_cb cb,
                     void *data)
{
    lv_t *lv = p->state;
    job_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return -ENOMEM;
    j->p = p;
    j->lv = lv;
    j->kind = JOB_CREATE;
    j->cb.create = cb;
    j->data = data;
    if ((size_t)snprintf(j->inst.name, sizeof(j->inst.name), "%s", spec->instance_name) >=
            sizeof(j->inst.name) ||
        (size_t)snprintf(j->inst.sandbox_id, sizeof(j->inst.sandbox_id), "%s", spec->sandbox_id) >=
            sizeof(j->inst.sandbox_id) ||
        (size_t)snprintf(j->node, sizeof(j->node), "%s",
                         p->node_name != NULL ? p->node_name : "") >= sizeof(j->node)) {
        free(j);
        return -ENAMETOOLONG;
    }
    /* The image annotation names another base volume in the same pool. */
    const char *base =
        spec->image != NULL && spec->image[0] != '\0' ? spec->image : lv->cfg.vol_name;
    if (strchr(base, '/') != NULL ||
        (size_t)snprintf(j->base_vol, sizeof(j->base_vol), "%s", base) >= sizeof(j->base_vol)) {
        free(j);
        return -EINVAL;
    }
    j->base_from_pod = base != lv->cfg.vol_name;
    j->vcpus = spec->vcpus > 0 ? spec->vcpus : lv->cfg.vcpus;
    j->memory_mib = spec->memory_mib > 0 ? spec->memory_mib : lv->cfg.memory_mib;
    if (lv->snp && spec->initdata_digest != NULL && spec->initdata_digest[0] != '\0')
        j->has_host_data = hex_bytes(spec->initdata_digest, j->host_data, 32) == 0;
    j->user_data = malloc(spec->user_data_len + 1);
    if (j->user_data == NULL) {
        free(j);
        return -ENOMEM;
    }
    memcpy(j->user_data, spec->user_data, spec->user_data_len);
    j->user_data[spec->user_data_len] = '\0';
    j->user_data_len = spec->user_data_len;
    int r = uv_timer_init(p->loop, &j->timer);
    if (r < 0) {
        job_free(j);
        return r;
    }
    j->phase = PHASE_CREATE;
    r = uv_queue_work(p->loop, &j->work, create_work, create_after);
    if (r < 0) {
        uv_close((uv_handle_t *)&j->timer, timer_closed);
        return r;
    }
    return 0;
}

/* ---- delete and list ---- */

static void delete_work(uv_work_t *w)
{
    job_t *j = container_of(w, job_t, work);
    virConnectPtr c = conn_get(j->lv, &j->err);
    if (c == NULL) {
        j->status = j->err.code;
        return;
    }
    virDomainPtr dom = virDomainLookupByUUIDString(c, j->inst.id);
    if (dom == NULL) {
        if (!last_error_is(VIR_ERR_NO_DOMAIN) && !last_error_is(VIR_ERR_INVALID_ARG))
            j->status = lv_fail(&j->err, "domain `%s`", j->inst.id);
    } else {
        j->status = domain_remove(j->lv, c, dom, &j->err);
        virDomainFree(dom);
    }
    virConnectClose(c);
}

static void list_work(uv_work_t *w)
{
    job_t *j = container_of(w, job_t, work);
    virConnectPtr c = conn_get(j->lv, &j->err);
    if (c == NULL) {
        j->status = j->err.code;
        return;
    }
    virDomainPtr *doms = NULL;
    int n = virConnectListAllDomains(c, &doms, 0);
    if (n < 0) {
        j->status = lv_fail(&j->err, "list domains");
        virConnectClose(c);
        return;
    }
    j->insts = calloc((size_t)n + 1, sizeof(*j->insts));
    if (j->insts == NULL)
        j->status = pp_error_set(&j->err, -ENOMEM, "list domains: out of memory");
    for (int i = 0; i < n; i++) {
        pp_instance_t *in = j->insts != NULL ? &j->insts[j->ninsts] : NULL;
        if (in != NULL && domain_owner(j->node, doms[i], in->sandbox_id, sizeof(in->sandbox_id)) &&
            virDomainGetUUIDString(doms[i], in->id) == 0) {
            snprintf(in->name, sizeof(in->name), "%s", virDomainGetName(doms[i]));
            pp_error_t e;
            if (virDomainIsActive(doms[i]) == 1 &&
                domain_address(doms[i], in->ip, sizeof(in->ip), &e) < 0)
                in->ip[0] = '\0';
            j->ninsts++;
        }
        virDomainFree(doms[i]);
    }
    free(doms);
    virConnectClose(c);
}

static void simple_after(uv_work_t *w, int status)
{
    job_t *j = container_of(w, job_t, work);
    if (status < 0 && j->status == 0)
        j->status = pp_error_set(&j->err, status, "cancelled");
    if (j->kind == JOB_DELETE)
        j->cb.del(j->status, j->status < 0 ? &j->err : NULL, j->data);
    else
        j->cb.list(j->status, j->status < 0 ? NULL : j->insts, j->status < 0 ? 0 : j->ninsts,
                   j->status < 0 ? &j->err : NULL, j->data);
    job_free(j);
}

static int lv_delete(pp_provider_t *p, const char *instance_id, pp_provider_delete_cb cb,
                     void *data)
{
    job_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return -ENOMEM;
    if ((size_t)snprintf(j->inst.id, sizeof(j->inst.id), "%s", instance_id) >= UUID_LEN) {
        free(j);
        return -EINVAL;
    }
    j->p = p;
    j->lv = p->state;
    j->kind = JOB_DELETE;
    j->cb.del = cb;
    j->data = data;
    int r = uv_queue_work(p->loop, &j->work, delete_work, simple_after);
    if (r < 0)
        free(j);
    return r;
}

static int lv_list(pp_provider_t *p, pp_provider_list_cb cb, void *data)
{
    job_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return -ENOMEM;
    j->p = p;
    j->lv = p->state;
    j->kind = JOB_LIST;
    j->cb.list = cb;
    j->data = data;
    snprintf(j->node, sizeof(j->node), "%s", p->node_name != NULL ? p->node_name : "");
    int r = uv_queue_work(p->loop, &j->work, list_work, simple_after);
    if (r < 0)
        free(j);
    return r;
}

/* ---- init ---- */

/* kvm where the host offers it, else qemu (emulation, slow), or test for
 * libvirt's test driver. */
static void domain_type(lv_t *lv)
{
    const char *t = virConnectGetType(lv->conn);
    if (t != NULL && strcasecmp(t, "test") == 0) {
        snprintf(lv->type, sizeof(lv->type), "test");
        return;
    }
    const char *want = lv->cfg.domain_type;
    char *caps = NULL;
    if (want[0] == '\0' || strcmp(want, "kvm") == 0)
        caps = virConnectGetDomainCapabilities(lv->conn, NULL, "x86_64", NULL, "kvm", 0);
    if (caps == NULL)
        caps = virConnectGetDomainCapabilities(lv->conn, NULL, "x86_64", NULL, "qemu", 0);
    else
        want = "kvm";
    snprintf(lv->type, sizeof(lv->type), "%s", want[0] != '\0' ? want : "qemu");
    if (strcmp(lv->type, "qemu") == 0)
        PP_WARN(LOG, "`%s`: pod VMs run emulated (%s)", lv->cfg.uri,
                lv->cfg.domain_type[0] != '\0' ? "LIBVIRT_DOMAIN_TYPE=qemu" : "no KVM offered");
    else if (!lv->cfg.disable_cvm &&
             (lv->cfg.launch == PP_LIBVIRT_LAUNCH_AUTO || lv->cfg.launch == PP_LIBVIRT_LAUNCH_SNP))
        lv->snp = pp__libvirt_caps_have_snp(caps);
    free(caps);
}

/* s390x Protected Virtualization: recognised, refused where libvirt does
 * not offer it, and refused where it does, since pod VMs are x86_64 here. */
static int check_s390_pv(lv_t *lv, pp_error_t *err)
{
    char *caps = virConnectGetDomainCapabilities(lv->conn, NULL, "s390x", NULL, NULL, 0);
    int have = caps != NULL && strstr(caps, "<s390-pv supported='yes'") != NULL;
    free(caps);
    if (!have)
        return pp_error_set(err, -ENOTSUP,
                            "`LIBVIRT_LAUNCH_SECURITY` (`-launch-security`) is `s390-pv` but `%s` "
                            "offers no s390x Protected Virtualization (an IBM Z host with it is "
                            "needed); unset it or set `none`",
                            lv->cfg.uri);
    return pp_error_set(err, -ENOTSUP,
                        "`LIBVIRT_LAUNCH_SECURITY` (`-launch-security`) is `s390-pv`: `%s` offers "
                        "it, but this provider makes x86_64 pod VMs only",
                        lv->cfg.uri);
}

static int lv_init(pp_provider_t *p, pp_error_t *err)
{
    lv_t *lv = p->state;
    int r = pp__libvirt_config_check(&lv->cfg, err);
    if (r < 0)
        return r;
    if (virInitialize() < 0)
        return pp_error_set(err, -EIO, "libvirt: initialisation failed");
    virSetErrorFunc(NULL, quiet);
    if ((r = uv_mutex_init(&lv->lock)) < 0)
        return pp_error_set(err, r, "libvirt: %s", uv_strerror(r));
    lv->conn = virConnectOpen(lv->cfg.uri);
    if (lv->conn == NULL) {
        r = lv_fail(err, "environment variable `LIBVIRT_URI`: cannot connect to `%s`", lv->cfg.uri);
        uv_mutex_destroy(&lv->lock);
        return r;
    }
    domain_type(lv);
    if (lv->cfg.launch == PP_LIBVIRT_LAUNCH_S390_PV) {
        r = check_s390_pv(lv, err);
        virConnectClose(lv->conn);
        uv_mutex_destroy(&lv->lock);
        return r;
    }
    if (lv->cfg.launch == PP_LIBVIRT_LAUNCH_SNP && !lv->snp) {
        r = pp_error_set(err, -ENOTSUP,
                         "environment variable `LIBVIRT_LAUNCH_SECURITY` is `sev-snp` but `%s` "
                         "cannot launch SEV-SNP guests",
                         lv->cfg.uri);
        virConnectClose(lv->conn);
        uv_mutex_destroy(&lv->lock);
        return r;
    }
    /* Name what is missing now rather than at the first pod. */
    virStoragePoolPtr pool = virStoragePoolLookupByName(lv->conn, lv->cfg.pool);
    virNetworkPtr net = pool != NULL ? virNetworkLookupByName(lv->conn, lv->cfg.net) : NULL;
    if (pool == NULL || net == NULL) {
        r = pool == NULL
                ? lv_fail(err, "environment variable `LIBVIRT_POOL`: storage pool `%s`",
                          lv->cfg.pool)
                : lv_fail(err, "environment variable `LIBVIRT_NET`: network `%s`", lv->cfg.net);
        if (pool != NULL)
            virStoragePoolFree(pool);
        virConnectClose(lv->conn);
        uv_mutex_destroy(&lv->lock);
        return r;
    }
    virNetworkFree(net);
    virStorageVolPtr base = virStorageVolLookupByName(pool, lv->cfg.vol_name);
    if (base == NULL)
        PP_WARN(LOG, "pool `%s` has no volume `%s` (LIBVIRT_VOL_NAME) yet", lv->cfg.pool,
                lv->cfg.vol_name);
    else
        virStorageVolFree(base);
    virStoragePoolFree(pool);
    PP_INFO(LOG, "%s: pool `%s`, network `%s`, base volume `%s`, %s domains, %s", lv->cfg.uri,
            lv->cfg.pool, lv->cfg.net, lv->cfg.vol_name, lv->type,
            lv->snp ? "SEV-SNP" : "no confidential computing");
    return 0;
}

static void lv_fini(pp_provider_t *p)
{
    lv_t *lv = p->state;
    if (lv->conn != NULL)
        virConnectClose(lv->conn);
    lv->conn = NULL;
    uv_mutex_destroy(&lv->lock);
}

void pp__libvirt_set_hooks(pp_provider_t *p, const pp__libvirt_hooks_t *hooks)
{
    lv_t *lv = p->state;
    if (hooks != NULL)
        lv->hooks = *hooks;
    else
        memset(&lv->hooks, 0, sizeof(lv->hooks));
}

const struct pp_provider_ops pp_provider_libvirt_ops = {
    .name = "libvirt",
    .state_size = sizeof(lv_t),
    .user_data_max = 16u * 1024 * 1024,
    .settings = &pp__libvirt_settings,
    .init = lv_init,
    .create_instance = lv_create,
    .delete_instance = lv_delete,
    .list_instances = lv_list,
    .fini = lv_fini,
};

_Static_assert(offsetof(lv_t, cfg) == 0, "the settings' offsets are into the config");
