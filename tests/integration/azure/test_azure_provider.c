/* The Azure provider against the fake Azure (fake_azure.py, which starts
 * this program with FAKE_URL and the provider's settings set): what the
 * conformance suite does not check, one scenario per behaviour: the bodies
 * of a confidential VM and of a plain one, a public address, sizes by fit,
 * user data, deletes by ARM id, lists over pages, a VM whose PUT lost its
 * answer, workload identity with a rotated token file, the managed
 * identity through IMDS, metrics by operation, and a debug log without
 * secrets. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "metrics/metrics.h"
#include "providers/azure/azure.h"
#include "util/buf.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"

/* The provider's settings as the fake gave them, restored before each
 * scenario. */
static const char *const VARS[] = {
    "AZURE_CLIENT_ID",     "AZURE_CLIENT_SECRET",  "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_INSTANCE_SIZE", "AZURE_INSTANCE_SIZES", "USE_PUBLIC_IP",   "DISABLECVM",
    "ENABLE_SECURE_BOOT",  "ROOT_VOLUME_SIZE",     "AZURE_NSG_ID",    "TAGS",
    "AZURE_IMAGE_ID",      "SSH_USERNAME",
};
static char *saved[sizeof(VARS) / sizeof(VARS[0])];
static char token_path[64];

static int setup(void **state)
{
    harness_reset(state);
    for (size_t i = 0; i < PP_ARRAY_SIZE(VARS); i++) {
        if (saved[i] != NULL)
            setenv(VARS[i], saved[i], 1);
        else
            unsetenv(VARS[i]);
    }
    char cfg[128];
    snprintf(cfg, sizeof(cfg), "{\"expect_rate\": %s, \"expect_burst\": %s}", getenv("FAKE_RATE"),
             getenv("FAKE_BURST"));
    fake_config(cfg);
    return 0;
}

static pp_provider_t *provider(void)
{
    return provider_of(&pp_provider_azure_ops, NODE);
}

/* A member at a path of object keys ("properties", "osProfile", NULL). */
static json_t *at(json_t *j, ...)
{
    va_list ap;
    va_start(ap, j);
    const char *k;
    while (j != NULL && (k = va_arg(ap, const char *)) != NULL)
        j = json_object_get(j, k);
    va_end(ap);
    return j;
}

/* The string at such a path. */
static const char *sat(json_t *j, ...)
{
    va_list ap;
    va_start(ap, j);
    const char *k;
    while (j != NULL && (k = va_arg(ap, const char *)) != NULL)
        j = json_object_get(j, k);
    va_end(ap);
    return json_string_value(j);
}

/* Nothing refused, no sandbox with two VMs, within the rate. */
static void assert_sound(json_t *rep)
{
    if (rnum(rep, "refused_count") != 0) {
        char *s = rdump(rep, "refused");
        fail_msg("the fake refused %lld requests: %s", rnum(rep, "refused_count"), s);
    }
    assert_int_equal(json_object_size(json_object_get(rep, "duplicates")), 0);
    assert_true(json_number_value(json_object_get(rep, "rate_excess")) <= 0.0);
}

static long long count_of(json_t *rep, const char *action)
{
    return rnum(json_object_get(rep, "counts"), action);
}

static void lifecycle(pp_provider_t *p, const char *sid)
{
    char name[64];
    pp_instance_spec_t s = spec_for(sid, name, sizeof(name));
    res_t c = create(p, &s);
    if (c.status != 0)
        fail_msg("create %s: %s", sid, c.msg);
    res_t d = destroy(p, c.inst.id);
    if (d.status != 0)
        fail_msg("delete %s: %s", sid, d.msg);
}

static void check_clean(void)
{
    json_t *rep = report();
    assert_sound(rep);
    if (alive_total(rep) != 0) {
        char *s = rdump(rep, "alive");
        fail_msg("left: %s", s);
    }
    json_decref(rep);
}

/* --- what a create sends --------------------------------------------------------------- */

/* The default: a confidential VM (vTPM on, secure boot off, the guest state
 * encrypted), its NIC and disk deleted with it, tagged. */
static void test_confidential_vm(void **state)
{
    (void)state;
    setenv("ROOT_VOLUME_SIZE", "50", 1);
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("cvm-0001", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    assert_string_equal(c.inst.id, name);
    assert_true(strncmp(c.inst.ip, "10.1.", 5) == 0);
    json_t *rep = report();
    assert_sound(rep);
    json_t *vm = json_object_get(json_object_get(rep, "vm_bodies"), name);
    assert_non_null(vm);
    json_t *props = json_object_get(vm, "properties");
    assert_string_equal(sat(props, "securityProfile", "securityType", NULL, NULL),
                        "ConfidentialVM");
    assert_true(json_is_true(at(props, "securityProfile", "uefiSettings", "vTpmEnabled", NULL)));
    assert_true(
        json_is_false(at(props, "securityProfile", "uefiSettings", "secureBootEnabled", NULL)));
    json_t *osd = at(props, "storageProfile", "osDisk", NULL);
    assert_string_equal(sat(osd, "managedDisk", "securityProfile", "securityEncryptionType", NULL),
                        "VMGuestStateOnly");
    assert_string_equal(sat(osd, "deleteOption", NULL, NULL, NULL), "Delete");
    assert_int_equal(json_integer_value(json_object_get(osd, "diskSizeGB")), 50);
    char disk[96];
    snprintf(disk, sizeof(disk), "%s-disk", name);
    assert_string_equal(sat(osd, "name", NULL, NULL, NULL), disk);
    assert_string_equal(sat(props, "hardwareProfile", "vmSize", NULL, NULL), "Standard_DC2as_v5");
    json_t *nic = json_array_get(at(props, "networkProfile", "networkInterfaces", NULL), 0);
    assert_string_equal(sat(nic, "properties", "deleteOption", NULL, NULL), "Delete");
    assert_true(json_is_true(
        at(props, "osProfile", "linuxConfiguration", "disablePasswordAuthentication", NULL)));
    assert_string_equal(sat(props, "osProfile", "adminUsername", NULL, NULL), "peerpod");
    json_t *tags = json_object_get(vm, "tags");
    assert_string_equal(sat(tags, "peerpod-node", NULL, NULL, NULL), NODE);
    assert_string_equal(sat(tags, "peerpod-sandbox-id", NULL, NULL, NULL), "cvm-0001");
    assert_string_equal(sat(tags, "team", NULL, NULL, NULL), "peer-pods");
    assert_string_equal(sat(tags, "env", NULL, NULL, NULL), "ci");
    /* The NIC is not public and has no security group unless set. */
    char nicname[96];
    snprintf(nicname, sizeof(nicname), "%s-net", name);
    json_t *nb = json_object_get(json_object_get(rep, "nic_bodies"), nicname);
    assert_non_null(nb);
    json_t *ipc = json_array_get(at(nb, "properties", "ipConfigurations", NULL), 0);
    assert_null(at(ipc, "properties", "publicIPAddress", NULL));
    assert_null(at(nb, "properties", "networkSecurityGroup", NULL));
    assert_int_equal(json_object_size(json_object_get(rep, "pip_bodies")), 0);
    json_decref(rep);

    assert_int_equal(destroy(p, c.inst.id).status, 0);
    check_clean();
    provider_free(p);

    /* Secure boot on request. */
    setenv("ENABLE_SECURE_BOOT", "true", 1);
    p = provider();
    s = spec_for("cvm-0002", name, sizeof(name));
    c = create(p, &s);
    assert_int_equal(c.status, 0);
    rep = report();
    vm = json_object_get(json_object_get(rep, "vm_bodies"), name);
    assert_true(json_is_true(
        at(vm, "properties", "securityProfile", "uefiSettings", "secureBootEnabled", NULL)));
    json_decref(rep);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    check_clean();
    provider_free(p);
}

/* DISABLECVM: no security profile at all, on a size that is no CVM size
 * (the fake, as Azure, refuses a CVM profile there). */
static void test_plain_vm(void **state)
{
    (void)state;
    setenv("DISABLECVM", "true", 1);
    setenv("AZURE_INSTANCE_SIZE", "Standard_D2as_v5", 1);
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("plain-0001", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    json_t *rep = report();
    assert_sound(rep);
    json_t *props = at(rep, "vm_bodies", name, "properties", NULL);
    assert_non_null(props);
    assert_null(json_object_get(props, "securityProfile"));
    assert_null(at(props, "storageProfile", "osDisk", "managedDisk", "securityProfile", NULL));
    assert_null(at(props, "storageProfile", "osDisk", "diskSizeGB", NULL));
    assert_string_equal(sat(props, "hardwareProfile", "vmSize", NULL, NULL), "Standard_D2as_v5");
    json_decref(rep);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    check_clean();
    provider_free(p);

    /* A CVM on that size is Azure's refusal, reported as it comes. */
    unsetenv("DISABLECVM");
    p = provider();
    s = spec_for("plain-0002", name, sizeof(name));
    c = create(p, &s);
    assert_int_equal(c.status, -EINVAL);
    assert_non_null(strstr(c.msg, "ConfidentialVM"));
    rep = report();
    assert_int_equal(rnum(rep, "refused_count"), 1); /* that one */
    assert_int_equal(alive_total(rep), 0);           /* its NIC removed */
    json_decref(rep);
    provider_free(p);
}

/* USE_PUBLIC_IP: a Standard static address `<name>-ip` on the NIC, the
 * VM reached there, and gone with the VM. With an NSG on the NIC. */
static void test_public_ip(void **state)
{
    (void)state;
    setenv("USE_PUBLIC_IP", "true", 1);
    setenv("AZURE_NSG_ID",
           "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/peerpods-rg/"
           "providers/Microsoft.Network/networkSecurityGroups/nsg",
           1);
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("pip-0001", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    print_message("VM %s at %s\n", c.inst.id, c.inst.ip);
    assert_true(strncmp(c.inst.ip, "20.", 3) == 0);
    json_t *rep = report();
    assert_sound(rep);
    char pipname[96], nicname[96];
    snprintf(pipname, sizeof(pipname), "%s-ip", name);
    snprintf(nicname, sizeof(nicname), "%s-net", name);
    json_t *pip = json_object_get(json_object_get(rep, "pip_bodies"), pipname);
    assert_non_null(pip);
    assert_string_equal(sat(pip, "sku", "name", NULL, NULL), "Standard");
    assert_string_equal(sat(pip, "properties", "publicIPAllocationMethod", NULL, NULL), "Static");
    assert_string_equal(sat(pip, "properties", "deleteOption", NULL, NULL), "Delete");
    assert_string_equal(sat(pip, "tags", "peerpod-sandbox-id", NULL, NULL), "pip-0001");
    json_t *nic = json_object_get(json_object_get(rep, "nic_bodies"), nicname);
    json_t *ipc = json_array_get(at(nic, "properties", "ipConfigurations", NULL), 0);
    const char *ref = sat(ipc, "properties", "publicIPAddress", "id", NULL);
    assert_non_null(ref);
    assert_non_null(strstr(ref, "/publicIPAddresses/"));
    assert_non_null(strstr(ref, pipname));
    assert_non_null(strstr(sat(nic, "properties", "networkSecurityGroup", "id", NULL),
                           "/networkSecurityGroups/nsg"));
    assert_int_equal(rnum(json_object_get(rep, "alive_resources"), "public_ips"), 1);
    json_decref(rep);

    /* Listed with the public address. */
    res_t l = list(p);
    assert_int_equal(l.status, 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.list[0].ip, c.inst.ip);
    free(l.list);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    check_clean();
    provider_free(p);
}

/* AZURE_INSTANCE_SIZES: the smallest allowed size that fits, from the
 * region's sizes read once; a size outside the list is refused. */
static void test_sizes(void **state)
{
    (void)state;
    setenv("AZURE_INSTANCE_SIZES", "Standard_DC2as_v5, Standard_DC4as_v5,Standard_DC8as_v5", 1);
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("size-0001", name, sizeof(name));
    s.vcpus = 3;
    s.memory_mib = 4096;
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    char name2[64];
    pp_instance_spec_t s2 = spec_for("size-0002", name2, sizeof(name2));
    s2.memory_mib = 20000;
    res_t c2 = create(p, &s2);
    assert_int_equal(c2.status, 0);
    json_t *rep = report();
    assert_sound(rep);
    assert_string_equal(
        sat(at(rep, "vm_bodies", name, NULL), "properties", "hardwareProfile", "vmSize", NULL),
        "Standard_DC4as_v5");
    assert_string_equal(
        sat(at(rep, "vm_bodies", name2, NULL), "properties", "hardwareProfile", "vmSize", NULL),
        "Standard_DC8as_v5");
    assert_int_equal(count_of(rep, "GET vmSizes"), 1);
    json_decref(rep);

    char name3[64];
    pp_instance_spec_t s3 = spec_for("size-0003", name3, sizeof(name3));
    s3.machine_type = "Standard_B2s";
    res_t c3 = create(p, &s3);
    assert_int_equal(c3.status, -EINVAL);
    assert_int_equal(c3.grpc, PP_GRPC_INVALID_ARGUMENT);
    s3.machine_type = "Standard_DC8as_v5";
    c3 = create(p, &s3);
    assert_int_equal(c3.status, 0);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    assert_int_equal(destroy(p, c2.inst.id).status, 0);
    assert_int_equal(destroy(p, c3.inst.id).status, 0);
    check_clean();
    provider_free(p);
}

/* User data reaches the VM as it was given, base64 in the body; past
 * Azure's limit it is refused before any call. */
static void test_user_data(void **state)
{
    (void)state;
    pp_provider_t *p = provider();
    assert_int_equal(p->ops->user_data_max, PP_AZURE_USER_DATA_MAX);
    char name[64];
    pp_instance_spec_t s = spec_for("ud-0001", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    json_t *rep = report();
    const char *b64 = sat(at(rep, "vm_bodies", name, NULL), "properties", "userData", NULL);
    assert_non_null(b64);
    assert_string_equal(b64, "I2Nsb3VkLWNvbmZpZwp3cml0ZV9maWxlczoKLSBwYXRoOiAvcnVuL3BlZXJwb2Qv"
                             "YXBmLmpzb24KICBjb250ZW50OiAne30nCg==");
    json_decref(rep);
    assert_int_equal(destroy(p, c.inst.id).status, 0);

    char *big = malloc(PP_AZURE_USER_DATA_MAX + 2);
    assert_non_null(big);
    memset(big, 'x', PP_AZURE_USER_DATA_MAX + 1);
    big[PP_AZURE_USER_DATA_MAX + 1] = '\0';
    s = spec_for("ud-0002", name, sizeof(name));
    s.user_data = big;
    s.user_data_len = PP_AZURE_USER_DATA_MAX + 1;
    res_t r = {0};
    assert_int_equal(p->ops->create_instance(p, &s, on_create, &r), -EMSGSIZE);
    /* At the limit: 64 KiB of base64, accepted. */
    s.user_data_len = PP_AZURE_USER_DATA_MAX;
    big[PP_AZURE_USER_DATA_MAX] = '\0';
    c = create(p, &s);
    assert_int_equal(c.status, 0);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    free(big);
    check_clean();
    provider_free(p);
}

/* --- deletes, lists ---------------------------------------------------------------------- */

static void test_delete_by_arm_id(void **state)
{
    (void)state;
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("armid-0001", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    char id[512];
    snprintf(id, sizeof(id),
             "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/PeerPods-RG/"
             "providers/Microsoft.Compute/virtualMachines/%s",
             name);
    /* Another resource group's VM is none of ours: nothing is called. */
    json_t *rep = report();
    long long before = rnum(rep, "requests");
    json_decref(rep);
    assert_int_equal(destroy(p, "/subscriptions/11111111-2222-3333-4444-555555555555/"
                                "resourceGroups/other/providers/Microsoft.Compute/"
                                "virtualMachines/x")
                         .status,
                     0);
    rep = report();
    assert_int_equal(rnum(rep, "requests"), before);
    assert_int_equal(rnum(json_object_get(rep, "alive_resources"), "vms"), 1);
    json_decref(rep);
    assert_int_equal(destroy(p, id).status, 0);
    check_clean();
    provider_free(p);
}

/* Lists of VMs and NICs over pages (nextLink), this node's VMs only. */
static void test_list_pages(void **state)
{
    (void)state;
    fake_config("{\"page_size\": 2}");
    pp_provider_t *p = provider();
    pp_provider_t *other = provider_of(&pp_provider_azure_ops, "node-b");
    res_t mine[5], theirs;
    char names[5][64], oname[64];
    for (int i = 0; i < 5; i++) {
        char sid[32];
        snprintf(sid, sizeof(sid), "page-%d", i);
        pp_instance_spec_t s = spec_for(sid, names[i], sizeof(names[i]));
        mine[i] = create(p, &s);
        assert_int_equal(mine[i].status, 0);
    }
    pp_instance_spec_t so = spec_for("page-other", oname, sizeof(oname));
    so.node_name = "node-b";
    theirs = create(other, &so);
    assert_int_equal(theirs.status, 0);
    res_t l = list(p);
    assert_int_equal(l.status, 0);
    assert_int_equal(l.n, 5);
    for (int i = 0; i < 5; i++) {
        int found = 0;
        for (size_t j = 0; j < l.n; j++) {
            if (strcmp(l.list[j].id, mine[i].inst.id) == 0) {
                found = 1;
                assert_string_equal(l.list[j].ip, mine[i].inst.ip);
                assert_string_equal(l.list[j].sandbox_id, mine[i].inst.sandbox_id);
            }
        }
        assert_true(found);
    }
    free(l.list);
    json_t *rep = report();
    assert_sound(rep);
    assert_int_equal(count_of(rep, "GET list virtualMachines"), 3);
    assert_int_equal(count_of(rep, "GET list networkInterfaces"), 3);
    json_decref(rep);
    for (int i = 0; i < 5; i++)
        assert_int_equal(destroy(p, mine[i].inst.id).status, 0);
    assert_int_equal(destroy(other, theirs.inst.id).status, 0);
    check_clean();
    provider_free(other);
    provider_free(p);
}

/* --- a VM PUT whose answer is lost ----------------------------------------------------------- */

/* The VM's PUT is taken by Azure and its answer lost (the connection drops,
 * or the answer comes after the attempt's timeout): the PUT sent again
 * meets Azure's 409 for the operation in progress, and the create waits
 * for that operation instead of failing. The fifth request of a fresh
 * provider's create is the VM's PUT (token, NIC PUT and two polls first). */
static void test_vm_put_answer_lost(void **state)
{
    static const char *const kinds[] = {"drop_after", "timeout"};
    for (size_t k = 0; k < PP_ARRAY_SIZE(kinds); k++) {
        setup(state);
        /* The operation then ends in its own time, unpolled. */
        char cfg[160];
        snprintf(cfg, sizeof(cfg),
                 "{\"fault_at\": {\"n\": 5, \"kind\": \"%s\"}, \"timeout_s\": 0.6, "
                 "\"op_time_s\": 1.0}",
                 kinds[k]);
        fake_config(cfg);
        pp_provider_t *p = provider();
        char name[64], sid[32];
        snprintf(sid, sizeof(sid), "lost-%s", kinds[k]);
        pp_instance_spec_t s = spec_for(sid, name, sizeof(name));
        res_t c = create(p, &s);
        if (c.status != 0)
            fail_msg("create after `%s` of the VM's PUT: %s", kinds[k], c.msg);
        json_t *rep = report();
        assert_sound(rep);
        print_message("`%s` of the VM's PUT: %lld PUTs of it, %lld reads of it\n", kinds[k],
                      count_of(rep, "PUT virtualMachines"), count_of(rep, "GET virtualMachines"));
        assert_int_equal(rnum(json_object_get(rep, "faults"), kinds[k]), 1);
        assert_true(count_of(rep, "PUT virtualMachines") >= 2);
        assert_true(count_of(rep, "GET virtualMachines") >= 1);
        assert_int_equal(rnum(rep, "created"), 1);
        json_decref(rep);
        assert_int_equal(destroy(p, c.inst.id).status, 0);
        check_clean();
        provider_free(p);
    }
}

/* --- identities ------------------------------------------------------------------------------- */

static void write_token(const char *assertion)
{
    if (token_path[0] == '\0') {
        snprintf(token_path, sizeof(token_path), "/tmp/pp-azure-token-XXXXXX");
        int fd = mkstemp(token_path);
        assert_true(fd >= 0);
        close(fd);
    }
    /* As the kubelet rotates it: a new file renamed over the old one. */
    char tmp[80];
    snprintf(tmp, sizeof(tmp), "%s.new", token_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, assertion, strlen(assertion)), (ssize_t)strlen(assertion));
    assert_int_equal(write(fd, "\n", 1), 1);
    close(fd);
    assert_int_equal(rename(tmp, token_path), 0);
}

static void use_workload_identity(void)
{
    unsetenv("AZURE_CLIENT_SECRET");
    write_token(getenv("FAKE_AZURE_ASSERTION"));
    setenv("AZURE_FEDERATED_TOKEN_FILE", token_path, 1);
}

#define ROTATED "eyJhbGciOiJSUzI1NiJ9.cm90YXRlZC1hc3NlcnRpb24.c2lnbmF0dXJlLW9mLXRoZS1uZXctb25l"

/* Workload identity: the token file is read at every refresh, so a file
 * the kubelet rotated is what the next refresh sends (Azure AD no longer
 * takes the old assertion). A file that cannot be read, and an assertion
 * Azure AD refuses, fail creates with clear errors. */
static void test_workload_identity(void **state)
{
    (void)state;
    use_workload_identity();
    fake_config("{\"token_ttl\": 2}");
    pp_provider_t *p = provider();
    lifecycle(p, "wi-0001");
    pp__azure_state_t *st = p->state;
    assert_int_equal(st->d.cred_mode, PP_AZURE_CREDS_WORKLOAD);
    unsigned fetches = st->creds.cache.fetches;

    /* The kubelet rotates the file; Azure AD takes only the new one. */
    write_token(ROTATED);
    fake_config("{\"federated_assertions\": [\"" ROTATED "\"]}");
    sleep_ms(1200); /* past the refresh, halfway through 2 s */
    lifecycle(p, "wi-0002");
    assert_true(st->creds.cache.fetches > fetches);
    json_t *rep = report();
    assert_sound(rep);
    print_message("workload identity: %lld tokens issued, %lld requests for them\n",
                  rnum(rep, "tokens_issued"), count_of(rep, "token"));
    assert_true(rnum(rep, "tokens_issued") >= 2);
    assert_int_equal(rnum(rep, "expired_rejections"), 0);
    json_decref(rep);
    provider_free(p);

    /* An assertion Azure AD does not take. */
    fake_config("{\"federated_assertions\": [\"" ROTATED "x\"]}");
    p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("wi-bad", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, -EACCES);
    assert_int_equal(c.grpc, PP_GRPC_UNAUTHENTICATED);
    assert_non_null(strstr(c.msg, "invalid_client_assertion"));
    assert_non_null(strstr(c.msg, "workload identity"));
    provider_free(p);

    /* The file gone. */
    unlink(token_path);
    p = provider();
    c = create(p, &s);
    assert_int_equal(c.status, -EACCES);
    assert_int_equal(c.grpc, PP_GRPC_UNAUTHENTICATED);
    assert_non_null(strstr(c.msg, "AZURE_FEDERATED_TOKEN_FILE"));
    assert_non_null(strstr(c.msg, "no such file"));
    provider_free(p);
    token_path[0] = '\0';
    check_clean();
}

/* The node's managed identity through IMDS: system-assigned (no client
 * id) and user-assigned (AZURE_CLIENT_ID), refreshed before expiry. */
static void test_managed_identity(void **state)
{
    (void)state;
    unsetenv("AZURE_CLIENT_SECRET");
    unsetenv("AZURE_CLIENT_ID");
    unsetenv("AZURE_TENANT_ID");
    fake_config("{\"token_ttl\": 2}");
    pp_provider_t *p = provider();
    assert_int_equal(((pp__azure_state_t *)p->state)->d.cred_mode, PP_AZURE_CREDS_MANAGED);
    lifecycle(p, "mi-0001");
    sleep_ms(1200);
    lifecycle(p, "mi-0002");
    provider_free(p);
    setenv("AZURE_CLIENT_ID", getenv("FAKE_AZURE_MI_CLIENT_ID"), 1);
    p = provider();
    lifecycle(p, "mi-0003");
    provider_free(p);
    json_t *rep = report();
    assert_sound(rep);
    print_message("managed identity: %lld IMDS token requests\n", count_of(rep, "imds"));
    assert_true(count_of(rep, "imds") >= 3);
    assert_int_equal(count_of(rep, "token"), 0);
    assert_int_equal(rnum(rep, "expired_rejections"), 0);
    json_decref(rep);
    check_clean();
}

/* --- metrics and logs ------------------------------------------------------------------------- */

/* Calls are counted by the REST API's operation names. */
static void test_metrics(void **state)
{
    (void)state;
    pp_metrics_t *m = pp_metrics_new();
    assert_non_null(m);
    pp_provider_t *p = NULL;
    pp_error_t err = {0};
    assert_int_equal(
        pp_provider_new_with_metrics(&pp_provider_azure_ops, &loop, NODE, 0, NULL, m, &p, &err), 0);
    lifecycle(p, "metrics-0001");
    res_t l = list(p);
    assert_int_equal(l.status, 0);
    free(l.list);
    provider_free(p);
    pp_buf_t out;
    pp_buf_init(&out, 0);
    assert_int_equal(pp_metrics_render(m, &out), 0);
    assert_int_equal(pp_buf_append_byte(&out, 0), 0);
    const char *text = (const char *)out.data;
    static const char *const ops[] = {
        "Token",
        "NetworkInterfaces_CreateOrUpdate",
        "VirtualMachines_CreateOrUpdate",
        "AsyncOperation_Get",
        "NetworkInterfaces_Get",
        "VirtualMachines_Delete",
        "NetworkInterfaces_Delete",
        "Disks_Delete",
        "VirtualMachines_List",
    };
    for (size_t i = 0; i < PP_ARRAY_SIZE(ops); i++) {
        char want[160];
        snprintf(want, sizeof(want),
                 "peerpod_cloud_api_calls_total{provider=\"azure\",operation=\"%s\",result=\"ok\"}",
                 ops[i]);
        if (strstr(text, want) == NULL)
            fail_msg("no `%s` in:\n%s", want, text);
    }
    pp_buf_free(&out);
    pp_metrics_free(m);
}

/* At debug level, with each identity, faults and a revoked token: the log
 * shows the calls and the remaining-quota headers, and none of the client
 * secret, the assertions or the tokens. */
static void test_no_secrets_in_log(void **state)
{
    (void)state;
    char path[] = "/tmp/pp-azure-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved_fd = dup(2);
    dup2(fd, 2);
    for (int mode = 0; mode < 3; mode++) {
        if (mode == 1) {
            use_workload_identity();
        } else if (mode == 2) {
            unsetenv("AZURE_FEDERATED_TOKEN_FILE");
            unsetenv("AZURE_CLIENT_ID");
        }
        fake_config("{\"fault_rate\": 0.3, \"fault_kinds\": {\"throttle\": 1, \"internal\": 1}}");
        pp_provider_t *p = provider();
        char sid[32];
        snprintf(sid, sizeof(sid), "log-%d", mode);
        lifecycle(p, sid);
        json_decref(fake("POST", "/_fake/expire", NULL));
        snprintf(sid, sizeof(sid), "log-%d-revoked", mode);
        lifecycle(p, sid);
        provider_free(p);
    }
    fflush(stderr);
    dup2(saved_fd, 2);
    close(saved_fd);
    unlink(token_path);
    token_path[0] = '\0';
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    char *log = calloc(1, (size_t)sb.st_size + 1);
    assert_non_null(log);
    assert_int_equal(pread(fd, log, (size_t)sb.st_size, 0), sb.st_size);
    close(fd);
    unlink(path);
    assert_non_null(strstr(log, "PUT http://127.0.0.1:"));
    assert_non_null(strstr(log, "x-ms-ratelimit-remaining-subscription-writes"));
    assert_non_null(strstr(log, "ExpiredAuthenticationToken; fetching a new token"));
    json_t *rep = report();
    json_t *secrets = json_object_get(rep, "secrets");
    print_message("log: %lld bytes; %zu secrets looked for\n", (long long)sb.st_size,
                  json_array_size(secrets) + 1);
    assert_true(json_array_size(secrets) >= 6);
    size_t i;
    json_t *v;
    json_array_foreach(secrets, i, v)
    {
        if (strstr(log, json_string_value(v)) != NULL)
            fail_msg("the log holds a secret");
    }
    if (strstr(log, getenv("FAKE_AZURE_ASSERTION")) != NULL)
        fail_msg("the log holds the federated assertion");
    static const char *const words[] = {"Bearer", "client_secret",
                                        "client_assertion=", "access_token", "Authorization"};
    for (i = 0; i < PP_ARRAY_SIZE(words); i++)
        if (strstr(log, words[i]) != NULL)
            fail_msg("the log holds `%s`", words[i]);
    json_decref(rep);
    free(log);
}

int main(void)
{
    int rc = harness_init("debug");
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < PP_ARRAY_SIZE(VARS); i++) {
        const char *v = getenv(VARS[i]);
        saved[i] = v ? strdup(v) : NULL;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_confidential_vm, setup),
        cmocka_unit_test_setup(test_plain_vm, setup),
        cmocka_unit_test_setup(test_public_ip, setup),
        cmocka_unit_test_setup(test_sizes, setup),
        cmocka_unit_test_setup(test_user_data, setup),
        cmocka_unit_test_setup(test_delete_by_arm_id, setup),
        cmocka_unit_test_setup(test_list_pages, setup),
        cmocka_unit_test_setup(test_vm_put_answer_lost, setup),
        cmocka_unit_test_setup(test_workload_identity, setup),
        cmocka_unit_test_setup(test_managed_identity, setup),
        cmocka_unit_test_setup(test_metrics, setup),
        cmocka_unit_test_setup(test_no_secrets_in_log, setup),
    };
    rc = cmocka_run_group_tests_name("azure provider", tests, NULL, NULL);
    harness_fini();
    for (size_t i = 0; i < PP_ARRAY_SIZE(VARS); i++)
        free(saved[i]);
    return rc;
}
