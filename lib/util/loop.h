/* Running a daemon's event loop, with adaptive busy polling.
 *
 * A process that sleeps in epoll_wait() between two messages of a fast
 * exchange pays for being woken: on a virtual machine a wake-up across
 * CPUs costs some 20 to 40 us (an IPI, the idle vCPU's exit), several
 * times the work of forwarding the message. So after a wake-up that came soon after
 * the loop went idle, the loop keeps polling, without sleeping, for up to
 * `spin_us`: the next message of the exchange is then taken without a
 * wake-up. While polling it yields the CPU to any other runnable task
 * (sched_yield), and it stops as soon as a wait outlasts `spin_us`: an idle
 * loop, or one woken at wider intervals, sleeps as uv_run() would and costs
 * nothing more. */
#ifndef PP_UTIL_LOOP_H
#define PP_UTIL_LOOP_H

#include <uv.h>

/* The daemons' default polling budget, in microseconds: none. Polling
 * halves the median latency of one call at a time when the host is quiet,
 * but it doubles the CPU time per call, and where the vCPUs share busy
 * hosts it costs throughput and tail latency (docs/design/latency.md).
 * About 200 suits an agent call, the time one takes to come back through
 * the pod VM. */
#define PP_LOOP_BUSY_POLL_US     0u
#define PP_LOOP_BUSY_POLL_MAX_US 100000u

/* Runs the loop like uv_run(loop, UV_RUN_DEFAULT) until it has no active
 * handles or requests left, polling as above for up to spin_us after each
 * wake-up that followed a wait shorter than spin_us. spin_us == 0 is plain
 * uv_run(). uv_stop() ends only the current pass, not the run. Returns what
 * uv_run() returns. */
int pp_loop_run(uv_loop_t *loop, unsigned spin_us);

/* Parses a polling budget: decimal microseconds, 0 to
 * PP_LOOP_BUSY_POLL_MAX_US. NULL gives the default. Returns 0 or -EINVAL. */
int pp_loop_busy_poll_parse(const char *s, unsigned *us);

#endif
