/* Sources: paths under the root or given explicitly, DMI hints and the
 * probe order they give, when the metadata services may be asked, and the
 * fetch loop when nothing has user data. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "imds.h"
#include "pud.h"

static void test_paths(void **state)
{
    (void)state;
    char p[256];
    pud_opts_t o = {.root = "/"};
    assert_int_equal(pud_path(&o, PUD_BASE_SYSFS, "class/dmi/id/sys_vendor", p, sizeof(p)), 0);
    assert_string_equal(p, "/sys/class/dmi/id/sys_vendor");
    assert_int_equal(pud_path(&o, PUD_BASE_DEV, "tpmrm0", p, sizeof(p)), 0);
    assert_string_equal(p, "/dev/tpmrm0");
    assert_int_equal(pud_path(&o, PUD_BASE_CONFIGFS, "tsm/report", p, sizeof(p)), 0);
    assert_string_equal(p, "/sys/kernel/config/tsm/report");
    assert_int_equal(pud_path(&o, PUD_BASE_ROOT, "media/cidata", p, sizeof(p)), 0);
    assert_string_equal(p, "/media/cidata");

    o.root = "/tmp/vm/";
    assert_int_equal(pud_path(&o, PUD_BASE_CONFIGFS, "tsm", p, sizeof(p)), 0);
    assert_string_equal(p, "/tmp/vm/sys/kernel/config/tsm");
    o.sysfs = "/fake/sys";
    assert_int_equal(pud_path(&o, PUD_BASE_CONFIGFS, "tsm", p, sizeof(p)), 0);
    assert_string_equal(p, "/fake/sys/kernel/config/tsm");
    o.configfs = "cfg";
    o.dev = "d//";
    assert_int_equal(pud_path(&o, PUD_BASE_CONFIGFS, "tsm", p, sizeof(p)), 0);
    assert_string_equal(p, "cfg/tsm");
    assert_int_equal(pud_path(&o, PUD_BASE_DEV, "sr0", p, sizeof(p)), 0);
    assert_string_equal(p, "d/sr0");
    assert_int_equal(pud_path(&o, PUD_BASE_DEV, "sr0", p, 4), -ENAMETOOLONG);
}

static void test_settings(void **state)
{
    (void)state;
    pud_opts_t o = {.root = "/"};
    assert_true(pud_metadata_enabled(&o));
    assert_string_equal(pud_metadata_url(&o), "http://169.254.169.254");
    assert_int_equal(pud_probe_timeout_ms(&o), PUD_PROBE_TIMEOUT_MS_DEFAULT);
    o.root = "/tmp/x";
    assert_false(pud_metadata_enabled(&o));
    o.metadata_url = "http://127.0.0.1:1";
    assert_true(pud_metadata_enabled(&o));
    assert_string_equal(pud_metadata_url(&o), "http://127.0.0.1:1");
    o.probe_timeout_ms = 10 * PUD_PROBE_TIMEOUT_MS_MAX;
    assert_int_equal(pud_probe_timeout_ms(&o), PUD_PROBE_TIMEOUT_MS_MAX);
    assert_int_equal(pud_user_data_max(&o), 256 * 1024);
    o.max_size = (size_t)1 << 40;
    assert_int_equal(pud_user_data_max(&o), 16 * 1024 * 1024);
}

typedef struct sysfs_s {
    char dir[64];
} sysfs_t;

static void put(const char *dir, const char *name, const char *value)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/class/dmi/id/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, value, strlen(value)), (ssize_t)strlen(value));
    close(fd);
}

static void sysfs_init(sysfs_t *s)
{
    snprintf(s->dir, sizeof(s->dir), "/tmp/test_pud_source.XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    char p[256];
    snprintf(p, sizeof(p), "mkdir -p '%s/class/dmi/id'", s->dir);
    assert_int_equal(system(p), 0);
}

static void sysfs_free(sysfs_t *s)
{
    char p[256];
    snprintf(p, sizeof(p), "rm -rf '%s'", s->dir);
    assert_int_equal(system(p), 0);
}

static void test_dmi_hints(void **state)
{
    (void)state;
    static const struct {
        const char *attr, *value;
        const pud_source_t *want;
    } cases[] = {
        {"sys_vendor", "Microsoft Corporation\n", &pud_source_azure},
        {"chassis_asset_tag", "7783-7084-3265-9085-8269-3286-77\n", &pud_source_azure},
        {"sys_vendor", "Amazon EC2\n", &pud_source_aws},
        {"product_name", "Amazon EC2 m6a.large", &pud_source_aws},
        {"sys_vendor", "Google\n", &pud_source_gcp},
        {"product_name", "Google Compute Engine\n", &pud_source_gcp},
        {"sys_vendor", "IBM:Cloud\n", &pud_source_ibmcloud},
        {"chassis_asset_tag", "IBMCloud\n", &pud_source_ibmcloud},
        {"sys_vendor", "QEMU\n", NULL},
        {"sys_vendor", "Googled Inc.", &pud_source_gcp}, /* a prefix match, as upstream's */
        {"chassis_asset_tag", "ibmcloud-x\n", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sysfs_t s;
        sysfs_init(&s);
        put(s.dir, cases[i].attr, cases[i].value);
        pud_opts_t o = {.root = "/", .sysfs = s.dir};
        char why[256];
        const pud_source_t *got = pud_dmi_hint(&o, why, sizeof(why));
        assert_ptr_equal(got, cases[i].want);
        if (got != NULL)
            assert_non_null(strstr(why, cases[i].attr));
        else
            assert_string_equal(why, "");

        const pud_source_t *order[PUD_MAX_SOURCES];
        size_t n = pud_source_order(&o, order, NULL, 0);
        assert_int_equal(n, 5);
        assert_ptr_equal(order[0], &pud_source_config_drive);
        if (got != NULL)
            assert_ptr_equal(order[1], got);
        else
            assert_ptr_equal(order[1], &pud_source_azure); /* the default order */
        for (size_t a = 0; a < n; a++)                     /* each source once */
            for (size_t b = a + 1; b < n; b++)
                assert_ptr_not_equal(order[a], order[b]);
        sysfs_free(&s);
    }
    /* No DMI at all. */
    pud_opts_t o = {.root = "/", .sysfs = "/nonexistent"};
    assert_null(pud_dmi_hint(&o, NULL, 0));
}

static int unused_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void test_fetch_nothing(void **state)
{
    (void)state;
    sysfs_t s;
    sysfs_init(&s);
    pud_opts_t o = {.root = s.dir};
    pp_buf_t b;
    pp_buf_init(&b, 0);
    pp_error_t err = {0};
    const char *source = NULL;
    /* Not the machine's root, no URL: only the config drive is looked at. */
    assert_int_equal(pud_fetch(&o, &b, &source, &err), -ENOENT);
    assert_string_equal(err.message, "no user data found (tried: config-drive)");
    /* With a metadata URL nobody listens on (a loopback port this test
     * held and let go), every cloud is tried. */
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", unused_port());
    o.metadata_url = url;
    o.probe_timeout_ms = 500;
    assert_int_equal(pud_fetch(&o, &b, &source, &err), -ENOENT);
    assert_string_equal(err.message,
                        "no user data found (tried: config-drive, azure, aws, gcp, ibmcloud)");
    assert_int_equal(b.len, 0);

    /* The mounted config drive. */
    char p[256];
    snprintf(p, sizeof(p), "mkdir -p '%s/media/cidata' && printf 'ud' >'%s/media/cidata/user-data'",
             s.dir, s.dir);
    assert_int_equal(system(p), 0);
    assert_int_equal(pud_fetch(&o, &b, &source, &err), 0);
    assert_string_equal(source, "config-drive");
    assert_int_equal(b.len, 2);
    pp_buf_free(&b);
    sysfs_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_dmi_hints),
        cmocka_unit_test(test_fetch_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
