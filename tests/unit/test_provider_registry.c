/* The provider registry, and the local provider's settings and the calls
 * that touch nothing outside its state dir. No root needed. */
#include <errno.h>
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
#include <uv.h>

#include "providers/local/local.h"
#include "providers/provider.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/pp-registry-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/state", tmpdir);
    setenv("LOCAL_STATE_DIR", dir, 1);
    snprintf(dir, sizeof(dir), "%s/netns", tmpdir);
    setenv("LOCAL_NETNS_DIR", dir, 1);
    setenv("LOCAL_AGENT_COMMAND", "/bin/true", 1);
    setenv("LOCAL_FORWARDER_COMMAND", "true --flag", 1);
    setenv("LOCAL_PROCESS_USER_DATA_COMMAND", "/bin/true", 1);
    unsetenv("LOCAL_SUBNET");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pp__local_rmtree(tmpdir);
    return 0;
}

static void test_table(void **state)
{
    (void)state;
    assert_non_null(pp_providers[0]);
    assert_string_equal(pp_providers[0]->name, "local");
    assert_ptr_equal(pp_provider_find("local"), &pp_provider_local_ops);
    assert_ptr_equal(pp_provider_find(NULL), pp_providers[0]);
    assert_ptr_equal(pp_provider_find(""), pp_providers[0]);
    assert_null(pp_provider_find("no-such-cloud"));
    for (size_t i = 0; pp_providers[i] != NULL; i++) {
        const struct pp_provider_ops *o = pp_providers[i];
        assert_non_null(o->init);
        assert_non_null(o->create_instance);
        assert_non_null(o->delete_instance);
        assert_non_null(o->list_instances);
        assert_non_null(o->fini);
    }
}

static void expect_load_error(const char *name, const char *dir, int code, const char *needle)
{
    const struct pp_provider_ops *ops = &pp_provider_local_ops;
    pp_module_t *m = (pp_module_t *)&ops; /* must be cleared */
    pp_error_t err = {0};
    int rc = pp_provider_load(name, dir, &ops, &m, &err);
    printf("CLOUD_PROVIDER=%s from %s: %d \"%s\"\n", name, dir, rc, err.message);
    assert_int_equal(rc, code);
    assert_null(m);
    if (strstr(err.message, needle) == NULL)
        fail_msg("`%s` not in \"%s\"", needle, err.message);
}

/* Every provider but the built-in ones is a module; bad modules and
 * unknown names are refused with what is wrong and what there is. */
static void test_modules(void **state)
{
    (void)state;
    const struct pp_provider_ops *ops = NULL;
    pp_module_t *m = (pp_module_t *)&ops;
    pp_error_t err = {0};
    /* Built in: no module. */
    assert_int_equal(pp_provider_load("local", TEST_MODULE_DIR, &ops, &m, &err), 0);
    assert_ptr_equal(ops, &pp_provider_local_ops);
    assert_null(m);
    assert_int_equal(pp_provider_load("", TEST_MODULE_DIR, &ops, &m, &err), 0);
    assert_ptr_equal(ops, &pp_provider_local_ops);

    expect_load_error("nocloud", MODULE_DIR, -ENOENT,
                      "unknown provider `nocloud`; available: local");
#if HAVE_AWS
    expect_load_error("nocloud", MODULE_DIR, -ENOENT, "available: local, aws");
    /* A provider module: its table, from its own copy of the code. */
    assert_int_equal(pp_provider_load("aws", MODULE_DIR, &ops, &m, &err), 0);
    assert_non_null(m);
    assert_string_equal(ops->name, "aws");
    assert_non_null(ops->create_instance);
    assert_true(ops->user_data_max > 0);
    pp_module_close(m);
#endif
#if HAVE_LIBVIRT
    expect_load_error("nocloud", MODULE_DIR, -ENOENT, "libvirt (modules from `");
    assert_int_equal(pp_provider_load("libvirt", MODULE_DIR, &ops, &m, &err), 0);
    assert_non_null(m);
    assert_string_equal(ops->name, "libvirt");
    /* Its settings come with it, for -h and -list-settings. */
    assert_non_null(ops->settings);
    assert_non_null(pp_settings_find_env(ops->settings, "LIBVIRT_URI"));
    pp_module_close(m);
#endif
    /* Not there, in another directory. */
    expect_load_error(
        "aws", TEST_MODULE_DIR, -ENOENT,
        "available: local, broken, foreign, impostor, misfit (modules from `" TEST_MODULE_DIR);
    expect_load_error("aws", "/nonexistent", -ENOENT,
                      "available: local (modules from `/nonexistent`)");
    /* Names that are no file names. */
    expect_load_error("../modules/pp-provider-broken", TEST_MODULE_DIR, -ENOENT,
                      "unknown provider");
    expect_load_error("Broken", TEST_MODULE_DIR, -ENOENT, "unknown provider `Broken`");
    /* Bad modules. */
    expect_load_error("broken", TEST_MODULE_DIR, -ENOEXEC,
                      "pp-provider-broken.so` has no symbol `pp_provider_broken_ops`");
    expect_load_error("foreign", TEST_MODULE_DIR, -ENOEXEC,
                      "has no `pp_module_abi`: not a peerpod module");
    expect_load_error("impostor", TEST_MODULE_DIR, -ENOEXEC,
                      "`pp_provider_impostor_ops` is not the `impostor` provider's table");
    /* A settings table that would write past the provider's state. */
    expect_load_error("misfit", TEST_MODULE_DIR, -ENOEXEC,
                      "`pp_provider_misfit_ops` is not the `misfit` provider's table");
}

/* A bad setting fails init, and the message names it. */
static void expect_setting_error(const char *var, const char *value, const char *needle)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char *old = getenv(var) ? strdup(getenv(var)) : NULL;
    setenv(var, value, 1);
    pp_provider_t *p = NULL;
    pp_error_t err = {0};
    int rc = pp_provider_new(&pp_provider_local_ops, &loop, "node", 0, NULL, &p, &err);
    if (old != NULL)
        setenv(var, old, 1);
    else
        unsetenv(var);
    free(old);
    assert_true(rc < 0);
    assert_int_equal(err.code, rc);
    assert_null(p);
    if (strstr(err.message, needle) == NULL)
        fail_msg("`%s` not in \"%s\"", needle, err.message);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_settings_errors(void **state)
{
    (void)state;
    expect_setting_error("LOCAL_SUBNET", "198.18.0.1/16", "`LOCAL_SUBNET`");
    expect_setting_error("LOCAL_SUBNET", "banana", "got `banana`");
    expect_setting_error("LOCAL_SUBNET", "10.0.0.0/31", "`LOCAL_SUBNET`");
    expect_setting_error("LOCAL_STATE_DIR", "relative/dir", "`LOCAL_STATE_DIR`");
    char longdir[120];
    memset(longdir, 'd', sizeof(longdir) - 1);
    longdir[0] = '/';
    longdir[sizeof(longdir) - 1] = '\0';
    expect_setting_error("LOCAL_STATE_DIR", longdir, "too long");
    expect_setting_error("LOCAL_NETNS_DIR", "netns", "`LOCAL_NETNS_DIR`");
    expect_setting_error("LOCAL_AGENT_COMMAND", "/nonexistent/agent -x", "`LOCAL_AGENT_COMMAND`");
    expect_setting_error("LOCAL_AGENT_COMMAND", "   ", "expected a command line");
    expect_setting_error("LOCAL_FORWARDER_COMMAND", "/etc", "`LOCAL_FORWARDER_COMMAND`");
    expect_setting_error("LOCAL_PROCESS_USER_DATA_COMMAND", "no-such-program-x",
                         "`LOCAL_PROCESS_USER_DATA_COMMAND`");
}

struct calls {
    int deletes, lists, status;
    size_t n;
};

static void on_delete(int status, const pp_error_t *err, void *data)
{
    struct calls *c = data;
    (void)err;
    c->deletes++;
    c->status = status;
}

static void on_list(int status, const pp_instance_t *insts, size_t n, const pp_error_t *err,
                    void *data)
{
    struct calls *c = data;
    (void)insts;
    (void)err;
    c->lists++;
    c->status = status;
    c->n = n;
}

static void on_create(int status, const pp_instance_t *inst, const pp_error_t *err, void *data)
{
    (void)status;
    (void)inst;
    (void)err;
    (void)data;
    fail_msg("a rejected create called back");
}

static void test_calls_without_instances(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    pp_provider_t *p = NULL;
    pp_error_t err = {0};
    assert_int_equal(pp_provider_new(pp_provider_find("local"), &loop, "node-a", 0, NULL, &p, &err),
                     0);
    assert_string_equal(p->node_name, "node-a");
    assert_non_null(p->state);

    char dir[128];
    struct stat st;
    snprintf(dir, sizeof(dir), "%s/state", tmpdir);
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    struct calls c = {0};
    /* Unknown ids, ours or not, are deleted already: success, later. */
    assert_int_equal(p->ops->delete_instance(p, "local-podvm-x-1", on_delete, &c), 0);
    assert_int_equal(p->ops->delete_instance(p, "i-0123456789", on_delete, &c), 0);
    assert_int_equal(p->ops->delete_instance(p, "local-../../etc", on_delete, &c), 0);
    assert_int_equal(p->ops->list_instances(p, on_list, &c), 0);
    assert_int_equal(c.deletes + c.lists, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c.deletes, 3);
    assert_int_equal(c.lists, 1);
    assert_int_equal(c.status, 0);
    assert_int_equal(c.n, 0);

    /* Bad requests fail at once and never call back. */
    pp_instance_spec_t spec = {.sandbox_id = "sid", .instance_name = "Bad_Name"};
    assert_int_equal(p->ops->create_instance(p, &spec, on_create, NULL), -EINVAL);
    spec.instance_name = "podvm-a-1";
    spec.sandbox_id = "";
    assert_int_equal(p->ops->create_instance(p, &spec, on_create, NULL), -EINVAL);
    spec.sandbox_id = "sid";
    spec.user_data = "x";
    spec.user_data_len = p->ops->user_data_max + 1;
    assert_int_equal(p->ops->create_instance(p, &spec, on_create, NULL), -EMSGSIZE);
    assert_int_equal(p->ops->delete_instance(p, NULL, on_delete, &c), -EINVAL);

    pp_provider_free(p);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_modules),
        cmocka_unit_test(test_settings_errors),
        cmocka_unit_test(test_calls_without_instances),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
