/* Descriptors, pods, sockets and unstarted sandboxes (bounds.h). */
#include "bounds.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "util/log.h"

static int64_t wall_now(void)
{
    return (int64_t)time(NULL);
}

/* Descriptors this process has open now. */
static size_t open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n > 0 ? n - 1 : 0; /* the directory's own */
}

static void expiry_cb(uv_timer_t *t);

int caa_bounds_start(caa_daemon_t *d, pp_error_t *err)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return pp_error_set(err, -errno, "descriptor limit: %s", strerror(errno));
    rlim_t soft = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            PP_WARN("caa", "raise the descriptor limit from %llu to %llu: %s",
                    (unsigned long long)soft, (unsigned long long)rl.rlim_max, strerror(errno));
            rl.rlim_cur = soft;
        }
    }
    d->fd_ceiling = rl.rlim_cur == RLIM_INFINITY ? (size_t)1 << 20 : (size_t)rl.rlim_cur;
    size_t room = d->fd_ceiling > CAA_FDS_RESERVE ? d->fd_ceiling - CAA_FDS_RESERVE : 0;
    PP_INFO("caa",
            "descriptors: ceiling %zu (soft limit %llu raised to the hard one); a running pod "
            "holds about %d, so room for about %zu pods",
            d->fd_ceiling, (unsigned long long)soft, CAA_FDS_PER_POD, room / CAA_FDS_PER_POD);
    /* The sockets' peers may hold half the descriptors at most: the rest
     * are for pods. */
    pp_ttrpc_budget_init(&d->budget, PP_TTRPC_BUDGET_BYTES, d->fd_ceiling / 2);
    uv_timer_init(d->loop, &d->expiry);
    d->expiry.data = d;
    d->expiry_inited = 1;
    return 0;
}

void caa_bounds_stop(caa_daemon_t *d)
{
    if (!d->expiry_inited)
        return;
    d->expiry_inited = 0;
    uv_close((uv_handle_t *)&d->expiry, NULL);
}

void caa_bounds_server_opts(caa_daemon_t *d, int hypervisor, const char *id,
                            pp_ttrpc_server_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->budget = &d->budget;
    o->socket_mode = d->cfg.socket_gid != 0 ? 0660 : 0600;
    o->socket_gid = d->cfg.socket_gid;
    if (hypervisor) {
        size_t quarter = d->fd_ceiling / 4;
        o->max_conns = quarter < PP_TTRPC_MAX_CONNS ? quarter : PP_TTRPC_MAX_CONNS;
        o->evict_idle = 1;
        o->idle_timeout_ms = CAA_HV_IDLE_TIMEOUT_MS;
        o->name = "hypervisor";
    } else {
        o->max_conns = CAA_AGENT_CONNS;
        o->name = id;
    }
}

int caa_bounds_admit(caa_daemon_t *d, pp_error_t *err)
{
    if (d->cfg.peerpods_limit > 0 && d->nsandboxes >= (size_t)d->cfg.peerpods_limit)
        return pp_error_set_status(
            err, PP_GRPC_RESOURCE_EXHAUSTED, -ENOSPC,
            "this node already has %zu peer pods (`PEERPODS_LIMIT_PER_NODE` is %d)", d->nsandboxes,
            d->cfg.peerpods_limit);
    /* Far from the ceiling, a bound is enough: every pod, running or not,
     * at its full cost, and every connection of the sockets. */
    size_t bound = (d->nsandboxes + 1) * CAA_FDS_PER_POD + d->budget.conns + CAA_FDS_RESERVE * 2;
    if (bound <= d->fd_ceiling)
        return 0;
    /* Near it, count: what is open, and what pods not running yet will
     * open. */
    size_t pending = 1;
    for (caa_sandbox_t *sb = d->sandboxes; sb != NULL; sb = sb->next)
        pending += sb->state != CAA_SB_RUNNING;
    size_t need = open_fds() + pending * CAA_FDS_PER_POD + CAA_FDS_RESERVE;
    if (need <= d->fd_ceiling)
        return 0;
    d->counters.fd_refused++;
    return pp_error_set_status(err, PP_GRPC_RESOURCE_EXHAUSTED, -EMFILE,
                               "no descriptors for another pod: %zu pods here, each holding about "
                               "%d, against a ceiling of %zu (raise the hard `RLIMIT_NOFILE` of "
                               "cloud-api-adaptor for more)",
                               d->nsandboxes, CAA_FDS_PER_POD, d->fd_ceiling);
}

/* ---- sandboxes created and never started -------------------------------- */

static void expiry_arm(caa_daemon_t *d, int64_t due)
{
    if (!d->expiry_inited || d->cfg.unstarted_ttl_ms == 0)
        return;
    if (d->expiry_due != 0 && d->expiry_due <= due)
        return;
    int64_t now = wall_now();
    d->expiry_due = due;
    uint64_t ms = due > now ? (uint64_t)(due - now) * 1000 : 0;
    uv_timer_start(&d->expiry, expiry_cb, ms, 0);
}

void caa_bounds_watch_created(caa_daemon_t *d, caa_sandbox_t *sb)
{
    if (d->cfg.unstarted_ttl_ms == 0)
        return;
    int64_t ttl = (int64_t)((d->cfg.unstarted_ttl_ms + 999) / 1000);
    expiry_arm(d, sb->created_at + ttl);
}

/* Removes the sandboxes created and not started within the time, and sets
 * the timer for the next. The scan runs only when one is due, never at
 * rest. A created sandbox holds no instance, tunnel or index: its
 * directory is all there is. */
static void expiry_cb(uv_timer_t *t)
{
    caa_daemon_t *d = t->data;
    d->expiry_due = 0;
    if (d->stopping)
        return;
    int64_t now = wall_now();
    int64_t ttl = (int64_t)((d->cfg.unstarted_ttl_ms + 999) / 1000);
    int64_t next = 0;
    caa_sandbox_t *sb = d->sandboxes, *following;
    for (; sb != NULL; sb = following) {
        following = sb->next;
        if (sb->state != CAA_SB_CREATED)
            continue;
        if (sb->created_at + ttl > now) {
            if (next == 0 || sb->created_at + ttl < next)
                next = sb->created_at + ttl;
            continue;
        }
        PP_WARN("caa",
                "sandbox `%s` (pod `%s/%s`): created %lld s ago and never started; removing it "
                "(`UNSTARTED_SANDBOX_TTL`)",
                sb->id, sb->pod_namespace, sb->pod_name, (long long)(now - sb->created_at));
        d->counters.unstarted_expired++;
        caa_remove_dir(sb->dir);
        caa_sandbox_unlink_free(sb);
    }
    if (next != 0)
        expiry_arm(d, next);
}
