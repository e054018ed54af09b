/* Secrets in JSON do not outlive their documents in freed memory
 * (lib/util/json_wipe.h): the programs' jansson frees through a function
 * that clears each block first, and jansson works as before with it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/json_wipe.h"

static void wipe_clears_the_whole_block(void **state)
{
    (void)state;
    for (size_t len = 1; len <= 4096; len = len * 3 + 1) {
        unsigned char *p = malloc(len);
        assert_non_null(p);
        size_t usable = malloc_usable_size(p);
        assert_true(usable >= len);
        memset(p, 0xa5, usable);
        pp_wipe_allocation(p);
        for (size_t i = 0; i < usable; i++)
            if (p[i] != 0)
                fail_msg("byte %zu of %zu (asked %zu) not cleared", i, usable, len);
        free(p);
    }
    pp_wipe_allocation(NULL); /* like free(NULL) */
}

static void jansson_frees_through_it(void **state)
{
    (void)state;
    pp_json_wipe_on_free();
    json_malloc_t m = NULL;
    json_free_t f = NULL;
    json_get_alloc_funcs(&m, &f);
    assert_ptr_equal(m, malloc);
    assert_ptr_equal(f, pp_json_wiping_free);

    /* A document with a key in it, parsed, changed, dumped and freed. */
    const char *doc = "{\"tls-server-key\":\"-----BEGIN PRIVATE KEY-----\\nMIGH\\n\","
                      "\"pod-name\":\"p\",\"list\":[1,2,3]}";
    json_error_t je;
    json_t *j = json_loads(doc, JSON_REJECT_DUPLICATES, &je);
    assert_non_null(j);
    assert_int_equal(json_object_set_new(j, "more", json_string("x")), 0);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"tls-server-key\":\"-----BEGIN PRIVATE KEY-----\\nMIGH\\n\""));
    pp_json_wiping_free(text);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wipe_clears_the_whole_block),
        cmocka_unit_test(jansson_frees_through_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
