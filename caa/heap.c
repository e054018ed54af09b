/* The daemon's heap policy (docs/design/memory.md).
 *
 * glibc's malloc gives memory back to the system only from the top of the
 * heap, and only past a threshold that grows with every large free. A burst
 * of agent calls (64 in flight on each of 100 pods) leaves megabytes free
 * in the middle of the heap, resident until the next burst. So: fixed
 * thresholds (large buffers, such as 4 MiB ttrpc frames, are mmap'ed and go
 * back when freed), one arena for the loop thread and the threadpool (which
 * allocates little; a second arena costs 132 KiB for a few KiB of use),
 * and once the loop has been quiet for a moment after being busy, the free
 * pages are returned with malloc_trim(). When idle, nothing wakes up. */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "util/cleanup.h"
#include "util/log.h"

#define QUIET_MS      200u           /* quiet for this long: trim */
#define TRIM_MIN_FREE (128u * 1024u) /* ... when at least this much is free */

void caa_heap_tune(void)
{
    /* GLIBC_TUNABLES with malloc settings: the operator decides. */
    const char *t = getenv("GLIBC_TUNABLES");
    if (t != NULL && strstr(t, "glibc.malloc.") != NULL)
        return;
    mallopt(M_ARENA_MAX, 1);
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
}

static void tick_cb(uv_timer_t *t);

static void check_cb(uv_check_t *c)
{
    caa_heap_t *h = container_of(c, caa_heap_t, check);
    if (h->ticked) {
        /* This loop iteration ran the timer: no news. */
        h->ticked = 0;
        return;
    }
    h->iterations++;
    if (!uv_is_active((uv_handle_t *)&h->timer))
        uv_timer_start(&h->timer, tick_cb, QUIET_MS, QUIET_MS);
}

static void tick_cb(uv_timer_t *t)
{
    caa_heap_t *h = container_of(t, caa_heap_t, timer);
    h->ticked = 1;
    if (h->iterations != 0) {
        /* Busy during the last period: wait for a quiet one. */
        h->iterations = 0;
        return;
    }
    uv_timer_stop(t);
    struct mallinfo2 mi = mallinfo2();
    if (mi.fordblks < TRIM_MIN_FREE)
        return;
    malloc_trim(0);
    h->trims++;
    PP_DEBUG("caa", "heap: gave back free pages of %zu KiB free after a busy spell",
             mi.fordblks / 1024);
}

int caa_heap_start(caa_heap_t *h, uv_loop_t *loop)
{
    memset(h, 0, sizeof(*h));
    int r = uv_check_init(loop, &h->check);
    if (r < 0)
        return r;
    uv_timer_init(loop, &h->timer);
    /* Neither keeps the loop alive. */
    uv_unref((uv_handle_t *)&h->check);
    uv_unref((uv_handle_t *)&h->timer);
    h->started = 1;
    return uv_check_start(&h->check, check_cb);
}

void caa_heap_stop(caa_heap_t *h)
{
    if (!h->started || uv_is_closing((uv_handle_t *)&h->check))
        return;
    uv_close((uv_handle_t *)&h->check, NULL);
    uv_close((uv_handle_t *)&h->timer, NULL);
}
