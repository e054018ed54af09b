/* The libvirt provider's pure parts: the domain and volume XML it writes
 * (read back with libxml2), the metadata round trip, what it reads from
 * libvirt's XML, its settings, and the config drive (read back with
 * process-user-data's own ISO9660 reader, as the pod VM reads it). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#include "iso9660.h"
#include "providers/libvirt/libvirt.h"

/* The string value of an XPath expression over `xml`, or "" when none. */
static char *xpath(const char *xml, const char *expr)
{
    static char out[1024];
    out[0] = '\0';
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), NULL, NULL, XML_PARSE_NONET);
    assert_non_null(doc);
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
    if (o != NULL) {
        xmlChar *s = xmlXPathCastToString(o);
        snprintf(out, sizeof(out), "%s", (char *)s);
        xmlFree(s);
        xmlXPathFreeObject(o);
    }
    xmlXPathFreeContext(ctx);
    xmlFreeDoc(doc);
    return out;
}

static pp__libvirt_domain_t dom(void)
{
    return (pp__libvirt_domain_t){
        .name = "podvm-web-5b0c1d2e",
        .type = "kvm",
        .node = "worker-1",
        .sandbox_id = "5b0c1d2e99",
        .vcpus = 3,
        .memory_mib = 1536,
        .pool = "default",
        .root_vol = "podvm-web-5b0c1d2e-root.qcow2",
        .cidata_vol = "podvm-web-5b0c1d2e-cidata.iso",
        .network = "default",
        .console_log = "/var/log/pp/podvm-web-5b0c1d2e-console.log",
        .cpu_mode = "host-model",
    };
}

typedef struct seen_s {
    char vol[4][128];
    int n;
} seen_t;

static int collect(const char *pool, const char *vol, void *arg)
{
    seen_t *s = arg;
    assert_string_equal(pool, "default");
    assert_true(s->n < 4);
    snprintf(s->vol[s->n++], sizeof(s->vol[0]), "%s", vol);
    return 0;
}

static void test_domain_xml(void **state)
{
    (void)state;
    pp__libvirt_domain_t d = dom();
    pp_buf_t b;
    pp_buf_init(&b, 0);
    assert_int_equal(pp__libvirt_domain_xml(&d, &b), 0);
    const char *x = (const char *)b.data;
    assert_int_equal(strlen(x), b.len);
    assert_string_equal(xpath(x, "/domain/@type"), "kvm");
    assert_string_equal(xpath(x, "/domain/name"), "podvm-web-5b0c1d2e");
    assert_string_equal(xpath(x, "/domain/vcpu"), "3");
    assert_string_equal(xpath(x, "/domain/memory"), "1536");
    assert_string_equal(xpath(x, "/domain/memory/@unit"), "MiB");
    assert_string_equal(xpath(x, "string(/domain/metadata/*[local-name()='podvm']/*[local-name()="
                                 "'node'])"),
                        "worker-1");
    assert_string_equal(xpath(x, "namespace-uri(/domain/metadata/*)"), PP_LIBVIRT_NS);
    assert_string_equal(xpath(x, "/domain/devices/disk[1]/source/@volume"),
                        "podvm-web-5b0c1d2e-root.qcow2");
    assert_string_equal(xpath(x, "/domain/devices/disk[1]/driver/@type"), "qcow2");
    assert_string_equal(xpath(x, "/domain/devices/disk[1]/target/@bus"), "virtio");
    assert_string_equal(xpath(x, "/domain/devices/disk[2]/source/@volume"),
                        "podvm-web-5b0c1d2e-cidata.iso");
    assert_string_equal(xpath(x, "count(/domain/devices/disk[2]/readonly)"), "1");
    assert_string_equal(xpath(x, "/domain/devices/interface/source/@network"), "default");
    assert_string_equal(xpath(x, "/domain/devices/interface/model/@type"), "virtio");
    assert_string_equal(xpath(x, "/domain/devices/serial/source/@path"),
                        "/var/log/pp/podvm-web-5b0c1d2e-console.log");
    assert_string_equal(xpath(x, "count(/domain/launchSecurity)"), "0");
    assert_string_equal(xpath(x, "count(/domain/os/loader)"), "0");
    assert_string_equal(xpath(x, "/domain/cpu/@mode"), "host-model");
    assert_string_equal(xpath(x, "count(/domain/devices/tpm)"), "0");

    /* Volumes found in it for removal are the two it names. */
    seen_t seen = {0};
    assert_int_equal(pp__libvirt_domain_volumes(x, collect, &seen), 0);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.vol[0], "podvm-web-5b0c1d2e-root.qcow2");
    assert_string_equal(seen.vol[1], "podvm-web-5b0c1d2e-cidata.iso");
    assert_string_equal(xpath(x, "count(/domain/vcpu/@cpuset)"), "0");

    /* LIBVIRT_CPUSET pins the vCPUs. */
    d.cpuset = "0-3,8";
    b.len = 0;
    assert_int_equal(pp__libvirt_domain_xml(&d, &b), 0);
    x = (const char *)b.data;
    assert_string_equal(xpath(x, "/domain/vcpu/@cpuset"), "0-3,8");
    assert_string_equal(xpath(x, "/domain/vcpu/@placement"), "static");
    assert_string_equal(xpath(x, "/domain/vcpu"), "3");

    /* LIBVIRT_VTPM: a TPM 2.0 on swtpm. */
    d.vtpm = 1;
    b.len = 0;
    assert_int_equal(pp__libvirt_domain_xml(&d, &b), 0);
    x = (const char *)b.data;
    assert_string_equal(xpath(x, "/domain/devices/tpm/@model"), "tpm-crb");
    assert_string_equal(xpath(x, "/domain/devices/tpm/backend/@type"), "emulator");
    assert_string_equal(xpath(x, "/domain/devices/tpm/backend/@version"), "2.0");
    pp_buf_free(&b);
}

static void test_domain_xml_snp_efi(void **state)
{
    (void)state;
    uint8_t hd[32];
    for (int i = 0; i < 32; i++)
        hd[i] = (uint8_t)(0xf0 + i);
    pp__libvirt_domain_t d = dom();
    d.firmware = "/usr/share/OVMF/OVMF.amdsev.fd";
    d.snp = 1;
    d.host_data = hd;
    pp_buf_t b;
    pp_buf_init(&b, 0);
    assert_int_equal(pp__libvirt_domain_xml(&d, &b), 0);
    const char *x = (const char *)b.data;
    assert_string_equal(xpath(x, "/domain/launchSecurity/@type"), "sev-snp");
    /* base64 of f0 f1 ... 0f */
    assert_string_equal(xpath(x, "/domain/launchSecurity/hostData"),
                        "8PHy8/T19vf4+fr7/P3+/wABAgMEBQYHCAkKCwwNDg8=");
    assert_string_equal(xpath(x, "/domain/os/type/@machine"), "q35");
    assert_string_equal(xpath(x, "/domain/os/@firmware"), "efi");
    assert_string_equal(xpath(x, "/domain/os/loader"), "/usr/share/OVMF/OVMF.amdsev.fd");
    assert_string_equal(xpath(x, "/domain/memoryBacking/source/@type"), "memfd");
    pp_buf_free(&b);
}

static void test_domain_xml_escapes(void **state)
{
    (void)state;
    pp__libvirt_domain_t d = dom();
    d.node = "n<1>&'\"x";
    d.type = "test";
    d.console_log = NULL;
    pp_buf_t b;
    pp_buf_init(&b, 0);
    assert_int_equal(pp__libvirt_domain_xml(&d, &b), 0);
    const char *x = (const char *)b.data;
    assert_string_equal(xpath(x, "string(/domain/metadata/*/*[local-name()='node'])"), "n<1>&'\"x");
    /* The test driver takes no host CPU, rng or console file. */
    assert_string_equal(xpath(x, "count(/domain/cpu)"), "0");
    assert_string_equal(xpath(x, "count(/domain/devices/serial)"), "0");
    pp_buf_free(&b);

    /* And the metadata element, as libvirt hands it back, parses. */
    pp_buf_init(&b, 0);
    assert_int_equal(pp__libvirt_metadata_xml("n<1>&'\"x", "sb-1", &b), 0);
    char node[64], sb[64];
    assert_int_equal(pp__libvirt_metadata_parse((char *)b.data, node, sizeof(node), sb, sizeof(sb)),
                     0);
    assert_string_equal(node, "n<1>&'\"x");
    assert_string_equal(sb, "sb-1");
    /* As libvirt returns it: without the namespace. */
    assert_int_equal(pp__libvirt_metadata_parse("<podvm><node>a</node><sandbox>b</sandbox>"
                                                "</podvm>",
                                                node, sizeof(node), sb, sizeof(sb)),
                     0);
    assert_string_equal(node, "a");
    assert_string_equal(sb, "b");
    assert_int_equal(pp__libvirt_metadata_parse("<podvm><node>a</node></podvm>", node, sizeof(node),
                                                sb, sizeof(sb)),
                     -ENOENT);
    assert_int_equal(pp__libvirt_metadata_parse("<unclosed", node, sizeof(node), sb, sizeof(sb)),
                     -EBADMSG);
    assert_int_equal(pp__libvirt_metadata_parse((char *)b.data, node, 3, sb, sizeof(sb)),
                     -ENAMETOOLONG);
    pp_buf_free(&b);
}

static void test_volume_xml(void **state)
{
    (void)state;
    pp_buf_t b;
    pp_buf_init(&b, 0);
    assert_int_equal(pp__libvirt_volume_xml("v-root.qcow2", 10737418240ull, "qcow2",
                                            "/var/lib/libvirt/images/base.qcow2", "qcow2", &b),
                     0);
    const char *x = (const char *)b.data;
    assert_string_equal(xpath(x, "/volume/name"), "v-root.qcow2");
    assert_string_equal(xpath(x, "/volume/capacity"), "10737418240");
    assert_string_equal(xpath(x, "/volume/target/format/@type"), "qcow2");
    assert_string_equal(xpath(x, "/volume/backingStore/path"),
                        "/var/lib/libvirt/images/base.qcow2");
    pp_buf_free(&b);

    char fmt[16], path[64];
    assert_int_equal(pp__libvirt_volume_parse("<volume><target><path>/p/v</path><format "
                                              "type='qcow2'/></target></volume>",
                                              fmt, sizeof(fmt), path, sizeof(path)),
                     0);
    assert_string_equal(fmt, "qcow2");
    assert_string_equal(path, "/p/v");
    assert_int_equal(pp__libvirt_volume_parse("<volume><target><path>/p/raw</path></target>"
                                              "</volume>",
                                              fmt, sizeof(fmt), path, sizeof(path)),
                     0);
    assert_string_equal(fmt, "raw");
    assert_int_equal(pp__libvirt_volume_parse("<volume/>", fmt, sizeof(fmt), path, sizeof(path)),
                     -ENOENT);
}

static void test_caps(void **state)
{
    (void)state;
    assert_true(pp__libvirt_caps_have_snp(
        "<domainCapabilities><features><launchSecurity supported='yes'><enum name='sectype'>"
        "<value>sev</value><value>sev-snp</value></enum></launchSecurity></features>"
        "</domainCapabilities>"));
    assert_false(pp__libvirt_caps_have_snp(
        "<domainCapabilities><features><launchSecurity supported='yes'><enum name='sectype'>"
        "<value>sev</value></enum></launchSecurity></features></domainCapabilities>"));
    assert_false(pp__libvirt_caps_have_snp(
        "<domainCapabilities><features><launchSecurity supported='no'/><sev supported='yes'/>"
        "</features></domainCapabilities>"));
    assert_false(pp__libvirt_caps_have_snp("not xml"));
}

static void test_cidata(void **state)
{
    (void)state;
    const char ud[] = "#cloud-config\nwrite_files:\n- path: /run/peerpod/apf.json\n  content: "
                      "'{}'\n";
    pp_buf_t iso;
    pp_buf_init(&iso, 0);
    pp_error_t err;
    assert_int_equal(pp__libvirt_cidata("podvm-a-1", ud, strlen(ud), &iso, &err), 0);
    assert_true(iso.len >= 16 * 2048 && iso.len % 2048 == 0);
    assert_true(iso.len < 1024 * 1024); /* no padding */

    pud_iso_mem_t mem = {iso.data, iso.len};
    pud_iso_t v;
    assert_int_equal(pud_iso9660_open(&v, pud_iso_mem_read, &mem, iso.len, &err), 0);
    /* ISO9660 volume ids are upper case; NoCloud takes either case. */
    assert_string_equal(v.label, "CIDATA");
    pp_buf_t f;
    pp_buf_init(&f, 0);
    assert_int_equal(pud_iso9660_read_file(&v, "user-data", 1 << 20, &f, &err), 0);
    assert_int_equal(f.len, strlen(ud));
    assert_memory_equal(f.data, ud, f.len);
    f.len = 0;
    assert_int_equal(pud_iso9660_read_file(&v, "meta-data", 1 << 20, &f, &err), 0);
    assert_int_equal(f.len, strlen("instance-id: podvm-a-1\nlocal-hostname: podvm-a-1\n"));
    assert_memory_equal(f.data, "instance-id: podvm-a-1\nlocal-hostname: podvm-a-1\n", f.len);
    pp_buf_free(&f);

    /* The same input gives the same bytes. */
    pp_buf_t again;
    pp_buf_init(&again, 0);
    assert_int_equal(pp__libvirt_cidata("podvm-a-1", ud, strlen(ud), &again, &err), 0);
    assert_int_equal(again.len, iso.len);
    assert_memory_equal(again.data, iso.data, iso.len);
    pp_buf_free(&again);
    pp_buf_free(&iso);
}

static const char *const vars[] = {
    "LIBVIRT_URI",
    "LIBVIRT_POOL",
    "LIBVIRT_NET",
    "LIBVIRT_VOL_NAME",
    "LIBVIRT_CPU",
    "LIBVIRT_MEMORY",
    "LIBVIRT_EFI_FIRMWARE",
    "LIBVIRT_LAUNCH_SECURITY",
    "DISABLECVM",
    "LIBVIRT_CONSOLE_LOG_DIR",
    "LIBVIRT_IP_TIMEOUT_MS",
    "LIBVIRT_IP_POLL_INTERVAL_MS",
    "LIBVIRT_CPUSET",
    "LIBVIRT_ROOT_DISK_SIZE",
    "LIBVIRT_CPU_MODE",
    "LIBVIRT_DOMAIN_TYPE",
    "LIBVIRT_VTPM",
};

static void test_config(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    pp__libvirt_config_t c;
    pp_error_t err;
    assert_int_equal(pp__libvirt_config_load(&c, &err), 0);
    assert_string_equal(c.uri, "qemu:///system");
    assert_string_equal(c.pool, "default");
    assert_string_equal(c.net, "default");
    assert_string_equal(c.vol_name, "podvm-base.qcow2");
    assert_int_equal(c.vcpus, 2);
    assert_int_equal(c.memory_mib, 8192);
    assert_string_equal(c.firmware, "");
    assert_string_equal(c.cpu_mode, "host-model");
    assert_int_equal(c.launch, PP_LIBVIRT_LAUNCH_AUTO);
    /* Upstream's libvirt provider launches no confidential VM unless told. */
    assert_int_equal(c.disable_cvm, 1);
    assert_string_equal(c.cpuset, "");
    assert_int_equal(c.root_disk_gib, PP_LIBVIRT_ROOT_DISK_GIB);
    assert_string_equal(c.domain_type, "");
    assert_int_equal(c.vtpm, 0);
    setenv("LIBVIRT_VTPM", "true", 1);
    assert_int_equal(pp__libvirt_config_load(&c, &err), 0);
    assert_int_equal(c.vtpm, 1);
    unsetenv("LIBVIRT_VTPM");

    static const struct {
        const char *var, *value;
    } bad[] = {
        {"LIBVIRT_CPU", "two"},
        {"LIBVIRT_CPU", "0"},
        {"LIBVIRT_MEMORY", "-5"},
        {"LIBVIRT_POOL", "a/b"},
        {"LIBVIRT_NET", "x'y"},
        {"LIBVIRT_VOL_NAME", "../etc/passwd"},
        {"LIBVIRT_EFI_FIRMWARE", "OVMF.fd"},
        {"LIBVIRT_LAUNCH_SECURITY", "tdx"},
        {"DISABLECVM", "maybe"},
        {"LIBVIRT_IP_TIMEOUT_MS", "1"},
        {"LIBVIRT_CONSOLE_LOG_DIR", "logs"},
        {"LIBVIRT_CPU_MODE", "custom"},
        {"LIBVIRT_DOMAIN_TYPE", "xen"},
        {"LIBVIRT_CPUSET", "0-3,"},
        {"LIBVIRT_CPUSET", "3-1"},
        {"LIBVIRT_CPUSET", "a"},
        {"LIBVIRT_CPUSET", ",1"},
        {"LIBVIRT_ROOT_DISK_SIZE", "10G"},
        {"LIBVIRT_ROOT_DISK_SIZE", "-1"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv(bad[i].var, bad[i].value, 1);
        pp_error_clear(&err);
        assert_int_equal(pp__libvirt_config_load(&c, &err), -EINVAL);
        if (strstr(err.message, bad[i].var) == NULL)
            fail_msg("%s=%s: `%s` does not name the variable", bad[i].var, bad[i].value,
                     err.message);
        unsetenv(bad[i].var);
    }
    /* A confidential VM asked for while DISABLECVM is true, by default too. */
    static const char *const cvm[] = {"sev-snp", "s390-pv"};
    for (size_t i = 0; i < 2; i++) {
        setenv("LIBVIRT_LAUNCH_SECURITY", cvm[i], 1);
        assert_int_equal(pp__libvirt_config_load(&c, &err), -EINVAL);
        assert_non_null(strstr(err.message, "`DISABLECVM` is true"));
        setenv("DISABLECVM", "f", 1);
        assert_int_equal(pp__libvirt_config_load(&c, &err), 0);
        unsetenv("DISABLECVM");
    }
    assert_int_equal(c.launch, PP_LIBVIRT_LAUNCH_S390_PV);
    unsetenv("LIBVIRT_LAUNCH_SECURITY");
    /* Empty is unset; 0 is upstream's default size. */
    setenv("LIBVIRT_CPUSET", "", 1);
    setenv("LIBVIRT_ROOT_DISK_SIZE", "0", 1);
    setenv("LIBVIRT_URI", "", 1);
    assert_int_equal(pp__libvirt_config_load(&c, &err), 0);
    assert_string_equal(c.cpuset, "");
    assert_string_equal(c.uri, "qemu:///system");
    assert_int_equal(c.root_disk_gib, 10);
    setenv("LIBVIRT_CPUSET", "0-3,8,10-12", 1);
    setenv("LIBVIRT_ROOT_DISK_SIZE", "40", 1);
    setenv("LIBVIRT_DOMAIN_TYPE", "QEMU", 1);
    assert_int_equal(pp__libvirt_config_load(&c, &err), 0);
    assert_string_equal(c.cpuset, "0-3,8,10-12");
    assert_int_equal(c.root_disk_gib, 40);
    assert_string_equal(c.domain_type, "qemu");
    unsetenv("LIBVIRT_CPUSET");
    unsetenv("LIBVIRT_ROOT_DISK_SIZE");
    unsetenv("LIBVIRT_URI");
    unsetenv("LIBVIRT_DOMAIN_TYPE");
    setenv("DISABLECVM", "true", 1);
    setenv("LIBVIRT_CPU", "4", 1);
    setenv("LIBVIRT_MEMORY", "2048", 1);
    assert_int_equal(pp__libvirt_config_load(&c, &err), 0);
    assert_int_equal(c.disable_cvm, 1);
    assert_int_equal(c.vcpus, 4);
    assert_int_equal(c.memory_mib, 2048);
    unsetenv("DISABLECVM");
    unsetenv("LIBVIRT_CPU");
    unsetenv("LIBVIRT_MEMORY");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_domain_xml),
        cmocka_unit_test(test_domain_xml_snp_efi),
        cmocka_unit_test(test_domain_xml_escapes),
        cmocka_unit_test(test_volume_xml),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_cidata),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
