/* Pod indexes: lowest free, persisted across reopen (a daemon restart),
 * owners, release, exhaustion, concurrent acquirers never share. */
#include <errno.h>
#include <pthread.h>
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

#include "net/net.h"

static int make_dir(void **state)
{
    char *dir = strdup("/tmp/pp-test-index.XXXXXX");
    if (dir == NULL || mkdtemp(dir) == NULL)
        return -1;
    *state = dir;
    return 0;
}

static int remove_dir(void **state)
{
    char *dir = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    int rc = system(cmd);
    free(dir);
    return rc == 0 ? 0 : -1;
}

static void test_lowest_free_and_restart(void **state)
{
    const char *dir = *state;
    pp_podindex_t ix;
    pp_error_t err = {0};
    uint32_t i;
    assert_int_equal(pp_podindex_open(&ix, dir, 100, &err), 0);
    for (uint32_t k = 0; k < 5; k++) {
        char owner[16];
        snprintf(owner, sizeof(owner), "sb%u", k);
        assert_int_equal(pp_podindex_acquire(&ix, owner, &i, &err), 0);
        assert_int_equal(i, k);
    }
    /* The same owner gets its index back (a retried StartVM). */
    assert_int_equal(pp_podindex_acquire(&ix, "sb3", &i, &err), 0);
    assert_int_equal(i, 3);
    assert_int_equal(pp_podindex_release(&ix, 1, "sb1", &err), 0);
    assert_int_equal(pp_podindex_release(&ix, 3, "sb3", &err), 0);
    pp_podindex_close(&ix);

    /* A new process sees what is held: 1 and 3 are free, lowest first. */
    assert_int_equal(pp_podindex_open(&ix, dir, 100, &err), 0);
    char who[64];
    assert_int_equal(pp_podindex_owner(&ix, 4, who, sizeof(who)), 0);
    assert_string_equal(who, "sb4");
    assert_int_equal(pp_podindex_owner(&ix, 1, who, sizeof(who)), -ENOENT);
    assert_int_equal(pp_podindex_acquire(&ix, "new1", &i, &err), 0);
    assert_int_equal(i, 1);
    assert_int_equal(pp_podindex_acquire(&ix, "new2", &i, &err), 0);
    assert_int_equal(i, 3);
    assert_int_equal(pp_podindex_acquire(&ix, "new3", &i, &err), 0);
    assert_int_equal(i, 5);
    pp_podindex_close(&ix);
}

struct seen {
    char owners[8][16];
    unsigned n;
    uint32_t stop_at; /* index at which to stop, or UINT32_MAX */
};

static int visit(uint32_t index, const char *owner, void *data)
{
    struct seen *s = data;
    if (index < 8)
        snprintf(s->owners[index], sizeof(s->owners[index]), "%s", owner);
    s->n++;
    return index == s->stop_at ? 7 : 0;
}

static int release_odd(uint32_t index, const char *owner, void *data)
{
    pp_podindex_t *ix = data;
    return index % 2 ? pp_podindex_release(ix, index, owner, NULL) : 0;
}

/* The walk sees what is held, with owners, and nothing else; it stops when
 * told, and may release as it goes. */
static void test_foreach(void **state)
{
    const char *dir = *state;
    pp_podindex_t ix;
    pp_error_t err = {0};
    uint32_t i;
    assert_int_equal(pp_podindex_open(&ix, dir, 8, &err), 0);
    struct seen s = {.stop_at = UINT32_MAX};
    assert_int_equal(pp_podindex_foreach(&ix, visit, &s, &err), 0);
    assert_int_equal(s.n, 0);
    for (uint32_t k = 0; k < 4; k++) {
        char owner[16];
        snprintf(owner, sizeof(owner), "sb%u", k);
        assert_int_equal(pp_podindex_acquire(&ix, owner, &i, &err), 0);
    }
    assert_int_equal(pp_podindex_release(&ix, 2, "sb2", &err), 0);
    /* Files that are no index are not walked. */
    char path[128];
    snprintf(path, sizeof(path), "%s/07", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("stray", f);
    fclose(f);
    assert_int_equal(pp_podindex_foreach(&ix, visit, &s, &err), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.owners[0], "sb0");
    assert_string_equal(s.owners[1], "sb1");
    assert_string_equal(s.owners[2], "");
    assert_string_equal(s.owners[3], "sb3");
    memset(&s, 0, sizeof(s));
    s.stop_at = 1;
    assert_int_equal(pp_podindex_foreach(&ix, visit, &s, &err), 7);
    assert_string_equal(s.owners[1], "sb1");
    assert_int_equal(pp_podindex_foreach(&ix, release_odd, &ix, &err), 0);
    char who[16];
    assert_int_equal(pp_podindex_owner(&ix, 1, who, sizeof(who)), -ENOENT);
    assert_int_equal(pp_podindex_owner(&ix, 3, who, sizeof(who)), -ENOENT);
    assert_int_equal(pp_podindex_owner(&ix, 0, who, sizeof(who)), 0);
    pp_podindex_close(&ix);
}

static void test_owner_checks(void **state)
{
    const char *dir = *state;
    pp_podindex_t ix;
    pp_error_t err = {0};
    uint32_t i;
    assert_int_equal(pp_podindex_open(&ix, dir, 10, &err), 0);
    assert_int_equal(pp_podindex_acquire(&ix, "a", &i, &err), 0);
    assert_int_equal(pp_podindex_release(&ix, i, "b", &err), -EBUSY);
    assert_string_equal(err.message, "pod index 0 is held by `a`, not `b`");
    /* Releasing what is free is fine (teardown is idempotent). */
    assert_int_equal(pp_podindex_release(&ix, 7, "a", &err), 0);
    assert_int_equal(pp_podindex_release(&ix, 10, NULL, &err), -EINVAL);
    assert_int_equal(pp_podindex_release(&ix, i, NULL, &err), 0);
    assert_int_equal(pp_podindex_acquire(&ix, "", &i, &err), -EINVAL);
    assert_int_equal(pp_podindex_acquire(&ix, "a/b", &i, &err), -EINVAL);
    assert_int_equal(pp_podindex_acquire(&ix, "a\nb", &i, &err), -EINVAL);
    /* Files that are not indexes are ignored. */
    char path[256];
    snprintf(path, sizeof(path), "%s/007", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(pp_podindex_acquire(&ix, "x", &i, &err), 0);
    assert_int_equal(i, 0);
    pp_podindex_close(&ix);
}

static void test_exhausted(void **state)
{
    const char *dir = *state;
    pp_podindex_t ix;
    pp_error_t err = {0};
    uint32_t i;
    assert_int_equal(pp_podindex_open(&ix, dir, 3, &err), 0);
    assert_int_equal(pp_podindex_acquire(&ix, "a", &i, &err), 0);
    assert_int_equal(pp_podindex_acquire(&ix, "b", &i, &err), 0);
    assert_int_equal(pp_podindex_acquire(&ix, "c", &i, &err), 0);
    assert_int_equal(pp_podindex_acquire(&ix, "d", &i, &err), -ENOSPC);
    assert_string_equal(err.message, "all 3 pod indexes are in use");
    pp_podindex_close(&ix);
    assert_int_equal(pp_podindex_open(&ix, dir, 0, &err), -EINVAL);
    assert_int_equal(pp_podindex_open(&ix, "/proc/nonexistent/x", 3, &err), -ENOENT);
}

struct racer {
    const char *dir;
    int id;
    uint32_t got[20];
};

static void *race(void *p)
{
    struct racer *r = p;
    pp_podindex_t ix;
    /* Each thread opens its own, as separate processes would. */
    if (pp_podindex_open(&ix, r->dir, 1000, NULL) < 0)
        return NULL;
    for (int k = 0; k < 20; k++) {
        char owner[32];
        snprintf(owner, sizeof(owner), "t%d-%d", r->id, k);
        if (pp_podindex_acquire(&ix, owner, &r->got[k], NULL) < 0)
            r->got[k] = UINT32_MAX;
    }
    pp_podindex_close(&ix);
    return NULL;
}

static void test_concurrent(void **state)
{
    enum { THREADS = 8 };
    struct racer r[THREADS];
    pthread_t t[THREADS];
    for (int k = 0; k < THREADS; k++) {
        r[k] = (struct racer){.dir = *state, .id = k};
        assert_int_equal(pthread_create(&t[k], NULL, race, &r[k]), 0);
    }
    static uint8_t seen[THREADS * 20];
    memset(seen, 0, sizeof(seen));
    for (int k = 0; k < THREADS; k++) {
        pthread_join(t[k], NULL);
        for (int j = 0; j < 20; j++) {
            uint32_t v = r[k].got[j];
            assert_true(v < THREADS * 20); /* dense: lowest free each time */
            assert_int_equal(seen[v], 0);  /* never shared */
            seen[v] = 1;
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lowest_free_and_restart, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_foreach, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_owner_checks, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_exhausted, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_concurrent, make_dir, remove_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
