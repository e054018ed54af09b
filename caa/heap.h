/* The daemon's heap policy (docs/design/memory.md). caa_heap_tune() sets
 * malloc's thresholds (call it first thing); the handles give free pages
 * back once the loop goes quiet after a busy spell. Loop thread only. */
#ifndef CAA_HEAP_H
#define CAA_HEAP_H

#include <stddef.h>
#include <uv.h>

typedef struct caa_heap_s {
    uv_check_t check; /* counts loop iterations */
    uv_timer_t timer; /* runs while there is activity */
    unsigned long iterations;
    size_t trims;
    unsigned started : 1;
    unsigned ticked : 1;
} caa_heap_t;

void caa_heap_tune(void);
int caa_heap_start(caa_heap_t *h, uv_loop_t *loop);
/* Closes the handles; run the loop once more before freeing `h`. */
void caa_heap_stop(caa_heap_t *h);

#endif
