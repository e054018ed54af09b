#include "util/loop.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>

/* Polls without sleeping until an event is ready or `budget_ns` passed
 * since the last one. Each event is dispatched by a non-blocking pass, and
 * a second pass sends what its callbacks queued for "before the loop waits"
 * (corked writes go out from prepare handles). Returns 0 when the loop has
 * nothing left to run, 1 when the budget ran out. */
static int spin(uv_loop_t *loop, uint64_t budget_ns)
{
    struct pollfd p = {.fd = uv_backend_fd(loop), .events = POLLIN};
    /* What the last blocking pass's callbacks queued goes out first. */
    if (uv_run(loop, UV_RUN_NOWAIT) == 0)
        return 0;
    uint64_t end = uv_hrtime() + budget_ns;
    for (;;) {
        /* Ready: I/O on the backend, or work libuv does without waiting
         * (pending callbacks, idle or closing handles, a timer due). */
        uv_update_time(loop);
        if (uv_backend_timeout(loop) == 0 || poll(&p, 1, 0) > 0) {
            if (uv_run(loop, UV_RUN_NOWAIT) == 0 || uv_run(loop, UV_RUN_NOWAIT) == 0)
                return 0;
            end = uv_hrtime() + budget_ns;
            continue;
        }
        if (uv_hrtime() >= end)
            return 1;
        /* Any other runnable task on this CPU goes first. */
        sched_yield();
    }
}

int pp_loop_run(uv_loop_t *loop, unsigned spin_us)
{
    if (spin_us == 0)
        return uv_run(loop, UV_RUN_DEFAULT);
    if (spin_us > PP_LOOP_BUSY_POLL_MAX_US)
        spin_us = PP_LOOP_BUSY_POLL_MAX_US;
    uint64_t budget_ns = (uint64_t)spin_us * 1000u;
    int polling = 0;
    for (;;) {
        if (polling && spin(loop, budget_ns) == 0)
            return 0;
        uint64_t slept = uv_hrtime();
        if (uv_run(loop, UV_RUN_ONCE) == 0)
            return 0;
        /* Woken soon after going idle: an exchange is under way. */
        polling = uv_hrtime() - slept < budget_ns;
    }
}

int pp_loop_busy_poll_parse(const char *s, unsigned *us)
{
    if (s == NULL) {
        *us = PP_LOOP_BUSY_POLL_US;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v > PP_LOOP_BUSY_POLL_MAX_US)
        return -EINVAL;
    *us = (unsigned)v;
    return 0;
}
