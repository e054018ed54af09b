/* The daemon's heap policy (caa/heap.c): after a busy spell that left the
 * heap full of holes, the free pages go back to the system once the loop is
 * quiet, and a quiet daemon does not wake up for it. */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "heap.h"

#define BLOCKS 4096
#define BLOCK  2048 /* below the mmap threshold: on the heap */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%ld %ld", &pages, &resident), 2);
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

typedef struct {
    caa_heap_t heap;
    uv_timer_t work, probe;
    char *blocks[BLOCKS];
    int rounds;
    long rss_busy, rss_quiet;
    size_t trims_when_quiet;
} fixture_t;

/* A burst: many blocks, then all freed but every 64th, which pins the heap
 * top so that only malloc_trim() can give the holes back. */
static void work_cb(uv_timer_t *t)
{
    fixture_t *f = t->data;
    for (int i = 0; i < BLOCKS; i++) {
        f->blocks[i] = malloc(BLOCK);
        assert_non_null(f->blocks[i]);
        memset(f->blocks[i], 0x5a, BLOCK);
    }
    for (int i = 0; i < BLOCKS; i++)
        if (i % 64 != 63) {
            free(f->blocks[i]);
            f->blocks[i] = NULL;
        }
    if (++f->rounds == 5) {
        uv_timer_stop(t);
        f->rss_busy = rss_kib();
    }
}

static void probe_cb(uv_timer_t *t)
{
    fixture_t *f = t->data;
    f->rss_quiet = rss_kib();
    f->trims_when_quiet = f->heap.trims;
    /* Quiet now: the policy's timer is off, nothing wakes the loop. */
    assert_false(uv_is_active((uv_handle_t *)&f->heap.timer));
    caa_heap_stop(&f->heap);
    uv_close((uv_handle_t *)&f->work, NULL);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_trim_after_burst(void **state)
{
    (void)state;
    caa_heap_tune();
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    static fixture_t f;
    memset(&f, 0, sizeof(f));
    assert_int_equal(caa_heap_start(&f.heap, &loop), 0);
    uv_timer_init(&loop, &f.work);
    uv_timer_init(&loop, &f.probe);
    f.work.data = f.probe.data = &f;
    uv_timer_start(&f.work, work_cb, 10, 10);
    /* The bursts end after 50 ms; the probe looks 600 ms later. */
    uv_timer_start(&f.probe, probe_cb, 650, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    for (int i = 0; i < BLOCKS; i++)
        free(f.blocks[i]);
    long freed = (long)BLOCKS * BLOCK / 1024 * 63 / 64;
    printf("heap: %ld KiB resident after the bursts, %ld KiB when quiet (%ld KiB freed), "
           "%zu trims\n",
           f.rss_busy, f.rss_quiet, freed, f.trims_when_quiet);
    assert_int_equal(f.trims_when_quiet, 1);
    /* Most of what was freed left the process. */
    assert_true(f.rss_busy - f.rss_quiet > freed / 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trim_after_burst),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
