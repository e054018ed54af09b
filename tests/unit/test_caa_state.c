/* cloud-api-adaptor's sandbox records: what the reader accepts and what it
 * refuses, with the reason it gives (recovery logs it and sets the record
 * aside; tests/e2e/test_hostile.c checks that the pod and its VM stay). The
 * records are the fuzz target's seed corpus. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "context.h"
#include "sandbox.h"
#include "state.h"

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", PP_CORPUS_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(65536);
    *len = fread(buf, 1, 65535, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static int decode(const char *name, caa_sandbox_t **out, char *why, size_t wsize)
{
    static caa_daemon_t d;
    caa_sandbox_t *sb;
    assert_int_equal(caa_sandbox_new(&d, "0123456789abcdef", &sb, NULL), 0);
    size_t len;
    char *text = slurp(name, &len);
    pp_error_t err = {0};
    int r = caa_state_decode(sb, text, len, &err);
    free(text);
    snprintf(why, wsize, "%s", err.message);
    if (r == 0 && out != NULL) {
        *out = sb;
        return r;
    }
    caa_sandbox_free(sb);
    return r;
}

static void test_accepts_records(void **state)
{
    (void)state;
    char why[600];
    caa_sandbox_t *sb;
    assert_int_equal(decode("running.json", &sb, why, sizeof(why)), 0);
    assert_int_equal(sb->state, CAA_SB_RUNNING);
    assert_true(sb->has_instance);
    assert_true(sb->tunnel_up);
    assert_string_equal(sb->instance.id, "i-0abc");
    assert_int_equal(sb->pod_index, 3);
    assert_non_null(sb->podnet);
    assert_int_equal(sb->vcpus, 2);
    caa_sandbox_free(sb);
    assert_int_equal(decode("created.json", &sb, why, sizeof(why)), 0);
    assert_int_equal(sb->state, CAA_SB_CREATED);
    assert_false(sb->has_instance);
    assert_null(sb->podnet);
    caa_sandbox_free(sb);
}

static void test_refuses_unreadable(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        const char *why;
    } cases[] = {
        {"version2.json", "`version` is not 1"},
        {"truncated.json", "not a JSON object"},
        {"wrong_types.json", "`vcpus`, `memory-mib` or `gpus` is not a whole number"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char why[600];
        assert_int_equal(decode(cases[i].file, NULL, why, sizeof(why)), -EBADMSG);
        if (strstr(why, cases[i].why) == NULL)
            fail_msg("%s: got \"%s\", want \"%s\"", cases[i].file, why, cases[i].why);
    }
}

/* Another sandbox's record in this one's directory is not this sandbox. */
static void test_refuses_other_id(void **state)
{
    (void)state;
    static caa_daemon_t d;
    caa_sandbox_t *sb;
    assert_int_equal(caa_sandbox_new(&d, "another", &sb, NULL), 0);
    size_t len;
    char *text = slurp("created.json", &len);
    pp_error_t err = {0};
    assert_int_equal(caa_state_decode(sb, text, len, &err), -EBADMSG);
    assert_non_null(strstr(err.message, "`id` is not the directory's name"));
    free(text);
    caa_sandbox_free(sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_records),
        cmocka_unit_test(test_refuses_unreadable),
        cmocka_unit_test(test_refuses_other_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
