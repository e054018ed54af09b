/* The libvirt provider against libvirt's own test driver (test:///default):
 * create, list, delete, idempotence, bad settings, and a failure injected at
 * every step of create and delete, each followed by a check, through a second
 * connection of the test's own, that no domain or volume of the instance is
 * left and the base volume is untouched.
 *
 * The test driver keeps its state per process while a connection is open, so
 * the test's connection sees what the provider's makes. It cannot upload to
 * a volume; the upload hook stands in and keeps the bytes, which are read
 * back as the pod VM would read its config drive. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <uv.h>

#include "iso9660.h"
#include "providers/libvirt/libvirt.h"
#include "providers/provider.h"

#define NODE "worker-7"
#define BASE "podvm-base.qcow2"

extern const struct pp_provider_ops pp_provider_libvirt_ops;

static virConnectPtr conn; /* the test's own view */
static uv_loop_t loop;

/* What the hooks saw and do. */
static struct {
    char fail_at[32]; /* step to fail, or "" */
    int no_lease;     /* "address" finds nothing */
    int steps_seen;
    uint8_t *iso;
    size_t iso_len;
    char iso_vol[128];
} hk;

static int hook_step(void *arg, const char *step)
{
    (void)arg;
    __atomic_fetch_add(&hk.steps_seen, 1, __ATOMIC_RELAXED);
    if (strcmp(step, "address") == 0 && hk.no_lease)
        return 1;
    return strcmp(step, hk.fail_at) == 0 ? -EIO : 0;
}

/* Uploads run on the thread pool, several at once. */
static pthread_mutex_t hk_lock = PTHREAD_MUTEX_INITIALIZER;

static int hook_upload(void *arg, const char *vol, const uint8_t *data, size_t len)
{
    (void)arg;
    pthread_mutex_lock(&hk_lock);
    free(hk.iso);
    hk.iso = malloc(len);
    memcpy(hk.iso, data, len);
    hk.iso_len = len;
    snprintf(hk.iso_vol, sizeof(hk.iso_vol), "%s", vol);
    pthread_mutex_unlock(&hk_lock);
    return 0;
}

static void quiet(void *arg, virErrorPtr e)
{
    (void)arg;
    (void)e;
}

static void env_defaults(void)
{
    setenv("LIBVIRT_URI", "test:///default", 1);
    unsetenv("LIBVIRT_POOL");
    setenv("LIBVIRT_NET", "default", 1);
    unsetenv("LIBVIRT_VOL_NAME");
    setenv("LIBVIRT_MEMORY", "512", 1);
    unsetenv("LIBVIRT_CPU");
    unsetenv("LIBVIRT_LAUNCH_SECURITY");
    unsetenv("DISABLECVM");
    setenv("LIBVIRT_IP_POLL_INTERVAL_MS", "10", 1);
    setenv("LIBVIRT_IP_TIMEOUT_MS", "2000", 1);
    /* The test driver's pool holds a few dozen GiB: root volumes of
     * upstream's default 10 GiB would not fit test_many_at_once. */
    setenv("LIBVIRT_ROOT_DISK_SIZE", "1", 1);
    unsetenv("LIBVIRT_CPUSET");
}

static int setup(void **state)
{
    (void)state;
    virSetErrorFunc(NULL, quiet);
    conn = virConnectOpen("test:///default");
    if (conn == NULL)
        return -1;
    /* The base image every pod VM's root volume is backed by. */
    virStoragePoolPtr pool = virStoragePoolLookupByName(conn, "default-pool");
    virStorageVolPtr v = virStorageVolCreateXML(
        pool,
        "<volume><name>" BASE "</name><capacity unit='G'>2</capacity><target><format "
        "type='qcow2'/></target></volume>",
        0);
    if (v == NULL)
        return -1;
    virStorageVolFree(v);
    virStoragePoolFree(pool);
    env_defaults();
    setenv("LIBVIRT_POOL", "default-pool", 1);
    return uv_loop_init(&loop);
}

static int teardown(void **state)
{
    (void)state;
    free(hk.iso);
    virConnectClose(conn);
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop);
}

static pp_provider_t *provider(void)
{
    pp_provider_t *p = NULL;
    pp_error_t err;
    if (pp_provider_new(&pp_provider_libvirt_ops, &loop, NODE, 0, NULL, &p, &err) < 0)
        fail_msg("provider: %s", err.message);
    pp__libvirt_hooks_t h = {.step = hook_step, .upload = hook_upload};
    free(hk.iso);
    memset(&hk, 0, sizeof(hk));
    pp__libvirt_set_hooks(p, &h);
    return p;
}

static void provider_free(pp_provider_t *p)
{
    pp_provider_free(p);
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* ---- running one operation to its end ---- */

typedef struct result_s {
    int done, status;
    pp_instance_t inst;
    pp_instance_t insts[16];
    size_t n;
    char message[PP_ERROR_MAX];
} result_t;

static void created(int status, const pp_instance_t *inst, const pp_error_t *err, void *data)
{
    result_t *r = data;
    r->done = 1;
    r->status = status;
    if (inst != NULL)
        r->inst = *inst;
    if (err != NULL)
        snprintf(r->message, sizeof(r->message), "%s", err->message);
}

static void deleted(int status, const pp_error_t *err, void *data)
{
    result_t *r = data;
    r->done = 1;
    r->status = status;
    if (err != NULL)
        snprintf(r->message, sizeof(r->message), "%s", err->message);
}

static void listed(int status, const pp_instance_t *insts, size_t n, const pp_error_t *err,
                   void *data)
{
    result_t *r = data;
    r->done = 1;
    r->status = status;
    for (size_t i = 0; i < n && i < 16; i++)
        r->insts[i] = insts[i];
    r->n = n;
    if (err != NULL)
        snprintf(r->message, sizeof(r->message), "%s", err->message);
}

static void run_until(result_t *r)
{
    while (!r->done)
        uv_run(&loop, UV_RUN_ONCE);
}

static pp_instance_spec_t spec(const char *name, const char *sid)
{
    static const char ud[] = "#cloud-config\nwrite_files:\n- path: /run/peerpod/apf.json\n"
                             "  content: '{\"pod-network\":{}}'\n";
    return (pp_instance_spec_t){
        .sandbox_id = sid,
        .instance_name = name,
        .node_name = NODE,
        .user_data = ud,
        .user_data_len = sizeof(ud) - 1,
        .vcpus = 3,
    };
}

static result_t create(pp_provider_t *p, const char *name, const char *sid)
{
    result_t r = {0};
    pp_instance_spec_t s = spec(name, sid);
    assert_int_equal(p->ops->create_instance(p, &s, created, &r), 0);
    run_until(&r);
    return r;
}

static result_t delete (pp_provider_t *p, const char *id)
{
    result_t r = {0};
    assert_int_equal(p->ops->delete_instance(p, id, deleted, &r), 0);
    run_until(&r);
    return r;
}

static result_t list(pp_provider_t *p)
{
    result_t r = {0};
    assert_int_equal(p->ops->list_instances(p, listed, &r), 0);
    run_until(&r);
    return r;
}

/* ---- what exists, seen from the test's connection ---- */

static int domain_exists(const char *name)
{
    virDomainPtr d = virDomainLookupByName(conn, name);
    if (d == NULL)
        return 0;
    virDomainFree(d);
    return 1;
}

/* Volumes in the pool whose names start with `prefix`. */
static int volumes_named(const char *prefix)
{
    virStoragePoolPtr pool = virStoragePoolLookupByName(conn, "default-pool");
    assert_non_null(pool);
    char **names = NULL;
    int n = virStoragePoolListAllVolumes(pool, NULL, 0);
    assert_true(n >= 0);
    virStorageVolPtr *vols = NULL;
    n = virStoragePoolListAllVolumes(pool, &vols, 0);
    int count = 0;
    for (int i = 0; i < n; i++) {
        if (strncmp(virStorageVolGetName(vols[i]), prefix, strlen(prefix)) == 0)
            count++;
        virStorageVolFree(vols[i]);
    }
    free(vols);
    free(names);
    virStoragePoolFree(pool);
    return count;
}

static void nothing_left(const char *name)
{
    if (domain_exists(name))
        fail_msg("domain `%s` left behind", name);
    int v = volumes_named(name);
    if (v != 0)
        fail_msg("%d volume(s) of `%s` left behind", v, name);
    assert_int_equal(volumes_named(BASE), 1);
}

static char *vol_xml(const char *name)
{
    virStoragePoolPtr pool = virStoragePoolLookupByName(conn, "default-pool");
    virStorageVolPtr v = virStorageVolLookupByName(pool, name);
    char *x = v != NULL ? virStorageVolGetXMLDesc(v, 0) : NULL;
    if (v != NULL)
        virStorageVolFree(v);
    virStoragePoolFree(pool);
    return x;
}

/* ---- tests ---- */

static void test_lifecycle(void **state)
{
    (void)state;
    pp_provider_t *p = provider();
    result_t r = create(p, "podvm-web-11111111", "11111111aaaa");
    if (r.status != 0)
        fail_msg("create: %s", r.message);
    assert_int_equal(strlen(r.inst.id), VIR_UUID_STRING_BUFLEN - 1);
    assert_string_equal(r.inst.name, "podvm-web-11111111");
    assert_string_equal(r.inst.sandbox_id, "11111111aaaa");
    assert_true(strncmp(r.inst.ip, "192.168.122.", 12) == 0);

    /* The domain: running, its UUID the id, vCPUs from the spec, memory from
     * LIBVIRT_MEMORY, this node and sandbox in its metadata. */
    virDomainPtr d = virDomainLookupByUUIDString(conn, r.inst.id);
    assert_non_null(d);
    assert_string_equal(virDomainGetName(d), "podvm-web-11111111");
    assert_int_equal(virDomainIsActive(d), 1);
    virDomainInfo info;
    assert_int_equal(virDomainGetInfo(d, &info), 0);
    assert_int_equal(info.nrVirtCpu, 3);
    assert_int_equal(info.maxMem, 512 * 1024);
    char *md = virDomainGetMetadata(d, VIR_DOMAIN_METADATA_ELEMENT, PP_LIBVIRT_NS, 0);
    assert_non_null(md);
    assert_non_null(strstr(md, NODE));
    assert_non_null(strstr(md, "11111111aaaa"));
    free(md);
    virDomainFree(d);

    /* Its volumes: the root one backed by the base, never smaller than it
     * (2 GiB, over LIBVIRT_ROOT_DISK_SIZE=1), and the config drive. */
    char *x = vol_xml("podvm-web-11111111-root.qcow2");
    assert_non_null(x);
    assert_non_null(strstr(x, "<backingStore>"));
    assert_non_null(strstr(x, "<capacity unit='bytes'>2147483648</capacity>"));
    assert_non_null(strstr(x, "/default-pool/" BASE));
    free(x);
    x = vol_xml("podvm-web-11111111-cidata.iso");
    assert_non_null(x);
    free(x);
    assert_string_equal(hk.iso_vol, "podvm-web-11111111-cidata.iso");
    pud_iso_mem_t mem = {hk.iso, hk.iso_len};
    pud_iso_t iso;
    pp_error_t err;
    assert_int_equal(pud_iso9660_open(&iso, pud_iso_mem_read, &mem, hk.iso_len, &err), 0);
    pp_buf_t ud;
    pp_buf_init(&ud, 0);
    assert_int_equal(pud_iso9660_read_file(&iso, "user-data", 1 << 20, &ud, &err), 0);
    pp_instance_spec_t s = spec("x", "y");
    assert_int_equal(ud.len, s.user_data_len);
    assert_memory_equal(ud.data, s.user_data, ud.len);
    pp_buf_free(&ud);

    /* Asked again, the same VM. */
    result_t again = create(p, "podvm-web-11111111", "11111111aaaa");
    assert_int_equal(again.status, 0);
    assert_string_equal(again.inst.id, r.inst.id);
    /* The same name for another sandbox is refused, and the VM stays. */
    result_t other = create(p, "podvm-web-11111111", "22222222bbbb");
    assert_int_equal(other.status, -EEXIST);
    assert_true(domain_exists("podvm-web-11111111"));

    /* List finds it, and not the test driver's own domain `test`. */
    result_t l = list(p);
    assert_int_equal(l.status, 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.insts[0].id, r.inst.id);
    assert_string_equal(l.insts[0].sandbox_id, "11111111aaaa");
    assert_string_equal(l.insts[0].ip, r.inst.ip);

    result_t del = delete (p, r.inst.id);
    if (del.status != 0)
        fail_msg("delete: %s", del.message);
    nothing_left("podvm-web-11111111");
    /* Gone is gone: deleting again, or an id never seen, succeeds. */
    assert_int_equal(delete (p, r.inst.id).status, 0);
    assert_int_equal(delete (p, "6695eb01-f6a4-8304-79aa-97f2502e193f").status, 0);
    assert_int_equal(list(p).n, 0);
    provider_free(p);
}

static void test_list_other_nodes(void **state)
{
    (void)state;
    pp_provider_t *p = provider();
    result_t a = create(p, "podvm-a-33333333", "33333333");
    assert_int_equal(a.status, 0);
    provider_free(p);
    /* The same libvirt, another node: it sees none of ours. */
    pp_provider_t *q = NULL;
    pp_error_t err;
    assert_int_equal(
        pp_provider_new(&pp_provider_libvirt_ops, &loop, "worker-8", 0, NULL, &q, &err), 0);
    assert_int_equal(list(q).n, 0);
    provider_free(q);
    p = provider();
    assert_int_equal(list(p).n, 1);
    assert_int_equal(delete (p, a.inst.id).status, 0);
    nothing_left("podvm-a-33333333");
    provider_free(p);
}

static void test_create_fails_at_each_step(void **state)
{
    (void)state;
    static const char *const steps[] = {"root-volume", "cidata-volume", "upload",
                                        "define",      "start",         "address"};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        pp_provider_t *p = provider();
        snprintf(hk.fail_at, sizeof(hk.fail_at), "%s", steps[i]);
        result_t r = create(p, "podvm-fail-44444444", "44444444");
        assert_int_equal(r.status, -EIO);
        if (strstr(r.message, steps[i]) == NULL)
            fail_msg("failure at `%s` reported as `%s`", steps[i], r.message);
        nothing_left("podvm-fail-44444444");
        /* And the next attempt, with nothing injected, works. */
        hk.fail_at[0] = '\0';
        r = create(p, "podvm-fail-44444444", "44444444");
        assert_int_equal(r.status, 0);
        assert_int_equal(delete (p, r.inst.id).status, 0);
        nothing_left("podvm-fail-44444444");
        provider_free(p);
    }
}

static void test_no_lease_times_out(void **state)
{
    (void)state;
    setenv("LIBVIRT_IP_TIMEOUT_MS", "200", 1);
    pp_provider_t *p = provider();
    hk.no_lease = 1;
    uint64_t t0 = uv_hrtime();
    result_t r = create(p, "podvm-slow-55555555", "55555555");
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_int_equal(r.status, -ETIMEDOUT);
    assert_non_null(strstr(r.message, "no DHCP lease"));
    assert_true(ms >= 200 && ms < 5000);
    assert_true(hk.steps_seen >= 5); /* it polled, more than once */
    nothing_left("podvm-slow-55555555");
    provider_free(p);
    setenv("LIBVIRT_IP_TIMEOUT_MS", "2000", 1);
}

static void test_delete_fails_at_each_step(void **state)
{
    (void)state;
    static const char *const steps[] = {"destroy", "volumes", "undefine"};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        pp_provider_t *p = provider();
        result_t r = create(p, "podvm-del-66666666", "66666666");
        assert_int_equal(r.status, 0);
        snprintf(hk.fail_at, sizeof(hk.fail_at), "%s", steps[i]);
        result_t d = delete (p, r.inst.id);
        assert_int_equal(d.status, -EIO);
        assert_non_null(strstr(d.message, steps[i]));
        /* Still listed, so a retry (or recovery) finds it. */
        assert_int_equal(list(p).n, 1);
        hk.fail_at[0] = '\0';
        assert_int_equal(delete (p, r.inst.id).status, 0);
        nothing_left("podvm-del-66666666");
        provider_free(p);
    }
}

static void test_many_at_once(void **state)
{
    (void)state;
    pp_provider_t *p = provider();
    enum { N = 12 };
    result_t r[N];
    pp_instance_spec_t s[N];
    char names[N][64], sids[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof(names[i]), "podvm-many%d-%08d", i, i);
        snprintf(sids[i], sizeof(sids[i]), "%08d", i);
        s[i] = spec(names[i], sids[i]);
        memset(&r[i], 0, sizeof(r[i]));
        assert_int_equal(p->ops->create_instance(p, &s[i], created, &r[i]), 0);
    }
    for (int i = 0; i < N; i++)
        run_until(&r[i]);
    for (int i = 0; i < N; i++) {
        if (r[i].status != 0)
            fail_msg("create %d: %s", i, r[i].message);
        for (int k = 0; k < i; k++)
            assert_string_not_equal(r[i].inst.id, r[k].inst.id);
    }
    assert_int_equal(list(p).n, N);
    result_t d[N];
    for (int i = 0; i < N; i++) {
        memset(&d[i], 0, sizeof(d[i]));
        assert_int_equal(p->ops->delete_instance(p, r[i].inst.id, deleted, &d[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        run_until(&d[i]);
        assert_int_equal(d[i].status, 0);
        nothing_left(names[i]);
    }
    provider_free(p);
}

/* LIBVIRT_ROOT_DISK_SIZE grows the root volume past its base, and
 * LIBVIRT_CPUSET pins the vCPUs. */
static void test_root_disk_and_cpuset(void **state)
{
    (void)state;
    setenv("LIBVIRT_ROOT_DISK_SIZE", "3", 1);
    setenv("LIBVIRT_CPUSET", "0-1,3", 1);
    pp_provider_t *p = provider();
    result_t r = create(p, "podvm-big-33333333", "33333333cccc");
    if (r.status != 0)
        fail_msg("create: %s", r.message);
    char *x = vol_xml("podvm-big-33333333-root.qcow2");
    assert_non_null(x);
    assert_non_null(strstr(x, "<capacity unit='bytes'>3221225472</capacity>"));
    free(x);
    virDomainPtr d = virDomainLookupByUUIDString(conn, r.inst.id);
    assert_non_null(d);
    x = virDomainGetXMLDesc(d, 0);
    assert_non_null(x);
    if (strstr(x, "cpuset='0-1,3'") == NULL)
        fail_msg("no cpuset in %s", x);
    free(x);
    virDomainFree(d);
    result_t del = delete (p, r.inst.id);
    assert_int_equal(del.status, 0);
    nothing_left("podvm-big-33333333");
    provider_free(p);
    env_defaults();
    setenv("LIBVIRT_POOL", "default-pool", 1);
}

/* `extra`, "NAME=value" or NULL, is set too. */
static void expect_init_error_with(const char *extra, const char *var, const char *value,
                                   const char *named)
{
    env_defaults();
    setenv("LIBVIRT_POOL", "default-pool", 1);
    if (extra != NULL)
        putenv((char *)extra);
    setenv(var, value, 1);
    pp_provider_t *p = NULL;
    pp_error_t err;
    pp_error_clear(&err);
    assert_true(pp_provider_new(&pp_provider_libvirt_ops, &loop, NODE, 0, NULL, &p, &err) < 0);
    assert_null(p);
    if (strstr(err.message, named) == NULL)
        fail_msg("%s=%s: `%s` does not name `%s`", var, value, err.message, named);
}

static void expect_init_error(const char *var, const char *value, const char *named)
{
    expect_init_error_with(NULL, var, value, named);
}

static void test_bad_settings(void **state)
{
    (void)state;
    expect_init_error("LIBVIRT_URI", "test:///no/such/file.xml", "LIBVIRT_URI");
    expect_init_error("LIBVIRT_URI", "nosuchdriver:///x", "LIBVIRT_URI");
    expect_init_error("LIBVIRT_POOL", "no-such-pool", "LIBVIRT_POOL");
    expect_init_error("LIBVIRT_NET", "no-such-net", "LIBVIRT_NET");
    expect_init_error("LIBVIRT_CPU", "lots", "LIBVIRT_CPU");
    /* Confidential VMs the test driver cannot launch, asked for with
     * DISABLECVM=false (true is the libvirt provider's default). */
    expect_init_error_with("DISABLECVM=false", "LIBVIRT_LAUNCH_SECURITY", "sev-snp",
                           "cannot launch SEV-SNP guests");
    expect_init_error_with("DISABLECVM=false", "LIBVIRT_LAUNCH_SECURITY", "s390-pv",
                           "`LIBVIRT_LAUNCH_SECURITY` (`-launch-security`) is `s390-pv` but "
                           "`test:///default` offers no s390x Protected Virtualization");
    expect_init_error("LIBVIRT_LAUNCH_SECURITY", "s390-pv", "`DISABLECVM` is true");
    expect_init_error("LIBVIRT_CPUSET", "0-", "LIBVIRT_CPUSET");
    env_defaults();
    setenv("LIBVIRT_POOL", "default-pool", 1);

    /* A base volume that is not there fails the create, naming it. */
    setenv("LIBVIRT_VOL_NAME", "missing.qcow2", 1);
    pp_provider_t *p = provider();
    result_t r = create(p, "podvm-nobase-77777777", "77777777");
    assert_int_equal(r.status, -ENOENT);
    assert_non_null(strstr(r.message, "LIBVIRT_VOL_NAME"));
    nothing_left("podvm-nobase-77777777");
    provider_free(p);
    unsetenv("LIBVIRT_VOL_NAME");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_list_other_nodes),
        cmocka_unit_test(test_create_fails_at_each_step),
        cmocka_unit_test(test_no_lease_times_out),
        cmocka_unit_test(test_delete_fails_at_each_step),
        cmocka_unit_test(test_many_at_once),
        cmocka_unit_test(test_root_disk_and_cpuset),
        cmocka_unit_test(test_bad_settings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
