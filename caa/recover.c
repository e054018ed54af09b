/* Recovery at start: records against the provider's instances. */
#include "recover.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "lifecycle.h"
#include "bounds.h"
#include "sandbox.h"
#include "state.h"
#include "util/log.h"

typedef struct recovery_s {
    caa_daemon_t *d;
    void (*cb)(caa_daemon_t *d, int status, const pp_error_t *err);
    caa_sandbox_t *loaded; /* records read, not linked yet */
    char **aside;          /* ids whose record is set aside: their instances stay */
    size_t naside;
    uv_timer_t delay; /* PP_TEST_RECOVERY_DELAY */
} recovery_t;

static int set_aside(const recovery_t *rc, const char *id)
{
    for (size_t i = 0; i < rc->naside; i++)
        if (strcmp(rc->aside[i], id) == 0)
            return 1;
    return 0;
}

static void remember_aside(recovery_t *rc, const char *id)
{
    char **v = realloc(rc->aside, (rc->naside + 1) * sizeof(*v));
    if (v == NULL)
        return;
    rc->aside = v;
    if ((v[rc->naside] = strdup(id)) != NULL)
        rc->naside++;
}

static void recovery_free(recovery_t *rc)
{
    for (size_t i = 0; i < rc->naside; i++)
        free(rc->aside[i]);
    free(rc->aside);
    free(rc);
}

static void delay_closed_cb(uv_handle_t *h)
{
    recovery_free(h->data);
}

/* Frees `rc`, after its timer has closed when it was used. */
static void recovery_done(recovery_t *rc)
{
    if (rc->d->cfg.test_recovery_delay_ms == 0)
        recovery_free(rc);
    else
        uv_close((uv_handle_t *)&rc->delay, delay_closed_cb);
}

/* Whether `dir` holds a record set aside at an earlier start. */
static int has_set_aside(const char *dir)
{
    DIR *dd = opendir(dir);
    struct dirent *e;
    int found = 0;
    while (dd != NULL && !found && (e = readdir(dd)) != NULL)
        found = strncmp(e->d_name, CAA_STATE_SET_ASIDE, strlen(CAA_STATE_SET_ASIDE)) == 0;
    if (dd != NULL)
        closedir(dd);
    return found;
}

/* A record that cannot be read (another version's, truncated, of the wrong
 * shape) says nothing certain about its pod, so nothing of the pod is
 * touched: the record is renamed, not removed, its directory stays, and
 * its instance is not deleted as an orphan. The log names it at every
 * start, and the daemon counts it. */
static void keep_unreadable(recovery_t *rc, const char *dir, const char *id, const char *why)
{
    caa_daemon_t *d = rc->d;
    char from[700], to[720];
    snprintf(from, sizeof(from), "%s/%s", dir, CAA_STATE_FILE);
    snprintf(to, sizeof(to), "%s/%s.%lld", dir, CAA_STATE_SET_ASIDE, (long long)time(NULL));
    if (rename(from, to) < 0)
        PP_ERR("caa",
               "sandbox `%s`: %s; could not set the record aside (%s): keeping it in place, "
               "and its pod directory and instance",
               id, why, strerror(errno));
    else
        PP_ERR("caa",
               "sandbox `%s`: %s; the record is set aside as `%s`, and its pod directory and "
               "instance are kept, neither served nor deleted: put a readable record back as "
               "`%s`, or delete the instance and the directory by hand",
               id, why, to, CAA_STATE_FILE);
    d->counters.records_set_aside++;
    remember_aside(rc, id);
}

static void orphan_deleted(int status, const pp_error_t *err, void *data)
{
    char *id = data;
    if (status < 0)
        PP_ERR("caa", "delete orphan instance `%s`: %s", id,
               err ? err->message : uv_strerror(status));
    else
        PP_INFO("caa", "deleted orphan instance `%s`", id);
    free(id);
}

static void delete_orphan(caa_daemon_t *d, const pp_instance_t *inst)
{
    PP_WARN("caa", "instance `%s` (`%s`) of sandbox `%s` has no record: deleting it", inst->id,
            inst->name, inst->sandbox_id);
    char *id = strdup(inst->id);
    if (id == NULL)
        return;
    int r = d->provider->ops->delete_instance(d->provider, id, orphan_deleted, id);
    if (r < 0) {
        PP_ERR("caa", "delete orphan instance `%s`: %s", id, uv_strerror(r));
        free(id);
    }
}

/* An index whose owner has no record (a crash between taking it and
 * recording it) is free again. */
static int release_if_orphan(uint32_t ix, const char *owner, void *data)
{
    const recovery_t *rc = data;
    caa_daemon_t *d = rc->d;
    caa_sandbox_t *sb = caa_sandbox_find(d, owner);
    /* A record set aside may own it: kept with the rest of its pod. */
    if ((sb != NULL && sb->pod_index == (int)ix) || set_aside(rc, owner))
        return 0;
    PP_WARN("caa", "pod index %u of `%s` has no record: releasing it", ix, owner);
    pp_podindex_release(&d->index, ix, owner, NULL);
    return 0;
}

static void release_orphan_indexes(const recovery_t *rc)
{
    caa_daemon_t *d = rc->d;
    pp_error_t err = {0};
    if (d->net_ready && pp_podindex_foreach(&d->index, release_if_orphan, (void *)rc, &err) < 0)
        PP_WARN("caa", "pod indexes: %s", err.message);
}

static void listed_cb(int status, const pp_instance_t *insts, size_t n, const pp_error_t *err,
                      void *data)
{
    recovery_t *rc = data;
    caa_daemon_t *d = rc->d;
    int listed = status == 0;
    if (!listed) {
        /* Without the list, trust the records and delete nothing. */
        PP_WARN("caa", "list instances: %s; adopting records as they are",
                err ? err->message : uv_strerror(status));
        n = 0;
    }
    char *claimed = calloc(n + 1, 1);
    size_t adopted = 0, resumed = 0, lost = 0, reaped = 0;
    while (rc->loaded != NULL) {
        caa_sandbox_t *sb = rc->loaded;
        rc->loaded = sb->next;
        sb->next = sb->prev = NULL;
        const pp_instance_t *live = NULL;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(insts[i].sandbox_id, sb->id) == 0) {
                live = &insts[i];
                if (claimed)
                    claimed[i] = 1;
            }
        }
        if (listed) {
            sb->has_instance = live != NULL;
            if (live != NULL)
                sb->instance = *live;
        }
        if (sb->state == CAA_SB_RUNNING && !sb->has_instance) {
            PP_WARN("caa", "sandbox `%s` was running but its instance is gone", sb->id);
            lost++;
            caa_sandbox_release(sb);
            sb->state = CAA_SB_FAILED;
            pp_error_t e = {0};
            if (caa_state_save(sb, &e) < 0)
                PP_ERR("caa", "sandbox `%s`: record: %s", sb->id, e.message);
        }
        caa_sandbox_link(d, sb);
        if (sb->state == CAA_SB_CREATED)
            caa_bounds_watch_created(d, sb);
        if (sb->state == CAA_SB_RUNNING)
            adopted++; /* already serving, see caa_recover() */
        else if (sb->state == CAA_SB_STARTING || sb->state == CAA_SB_STOPPING)
            resumed++;
        if (sb->state != CAA_SB_RUNNING)
            caa_sandbox_resume(sb);
    }
    for (size_t i = 0; i < n; i++) {
        if (claimed == NULL || claimed[i])
            continue;
        if (set_aside(rc, insts[i].sandbox_id)) {
            PP_WARN("caa",
                    "instance `%s` (`%s`) of sandbox `%s`, whose record is set aside: "
                    "kept",
                    insts[i].id, insts[i].name, insts[i].sandbox_id);
            continue;
        }
        delete_orphan(d, &insts[i]);
        reaped++;
    }
    release_orphan_indexes(rc);
    free(claimed);
    PP_INFO("caa",
            "recovered %zu sandboxes: %zu running adopted, %zu interrupted resumed, %zu records "
            "set aside",
            d->nsandboxes, adopted, resumed, rc->naside);
    caa_metrics_recovered(&d->metrics, adopted, resumed, lost, reaped);
    void (*cb)(caa_daemon_t *, int, const pp_error_t *) = rc->cb;
    recovery_done(rc);
    cb(d, 0, NULL);
}

static void list(recovery_t *rc)
{
    caa_daemon_t *d = rc->d;
    int r = d->provider->ops->list_instances(d->provider, listed_cb, rc);
    if (r < 0) {
        pp_error_t lerr;
        pp_error_set(&lerr, r, "%s", uv_strerror(r));
        listed_cb(r, NULL, 0, &lerr, rc);
    }
}

static void delayed_list(uv_timer_t *t)
{
    list(t->data);
}

int caa_recover(caa_daemon_t *d, void (*cb)(caa_daemon_t *d, int status, const pp_error_t *err),
                pp_error_t *err)
{
    recovery_t *rc = calloc(1, sizeof(*rc));
    if (rc == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    rc->d = d;
    rc->cb = cb;
    DIR *dir = opendir(d->cfg.pods_dir);
    if (dir == NULL) {
        free(rc);
        return pp_error_set(err, -errno, "read `PODS_DIR` `%s`: %s", d->cfg.pods_dir,
                            strerror(errno));
    }
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        caa_sandbox_t *sb;
        pp_error_t lerr = {0};
        char path[600];
        snprintf(path, sizeof(path), "%s/%s", d->cfg.pods_dir, e->d_name);
        int lr = caa_state_load(d, e->d_name, &sb, &lerr);
        if (lr == -ENOENT && has_set_aside(path)) {
            PP_ERR("caa",
                   "sandbox `%s`: its record was set aside at an earlier start; its pod "
                   "directory and instance are kept",
                   e->d_name);
            d->counters.records_set_aside++;
            remember_aside(rc, e->d_name);
            continue;
        }
        if (lr == -ENOENT) {
            /* A directory without a record never got past CreateVM's first
             * step: nothing outside this process exists for it. */
            PP_WARN("caa", "removing `%s`: %s", path, lerr.message);
            caa_remove_dir(path);
            continue;
        }
        if (lr < 0) {
            keep_unreadable(rc, path, e->d_name, lerr.message);
            continue;
        }
        /* Running pods get their agent socket back at once, before the
         * provider answers: their calls wait for the forwarder dial, not for
         * the listing. A pod whose instance turns out gone is closed then. */
        if (sb->state == CAA_SB_RUNNING)
            caa_sandbox_resume(sb);
        sb->next = rc->loaded;
        rc->loaded = sb;
    }
    closedir(dir);
    if (d->cfg.test_recovery_delay_ms != 0) {
        uv_timer_init(d->loop, &rc->delay);
        rc->delay.data = rc;
        uv_timer_start(&rc->delay, delayed_list, d->cfg.test_recovery_delay_ms, 0);
        return 0;
    }
    list(rc);
    return 0;
}

size_t caa_recover_count_live(caa_daemon_t *d)
{
    DIR *dir = opendir(d->cfg.pods_dir);
    struct dirent *e;
    size_t n = 0;
    while (dir != NULL && (e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        caa_sandbox_t *sb;
        pp_error_t err = {0};
        char path[600];
        snprintf(path, sizeof(path), "%s/%s", d->cfg.pods_dir, e->d_name);
        int r = caa_state_load(d, e->d_name, &sb, &err);
        if (r == -ENOENT) {
            n += has_set_aside(path);
            continue;
        }
        if (r < 0) {
            n++;
            continue;
        }
        n += sb->state == CAA_SB_RUNNING || sb->state == CAA_SB_STARTING ||
             sb->state == CAA_SB_STOPPING || sb->has_instance;
        caa_sandbox_free(sb);
    }
    if (dir != NULL)
        closedir(dir);
    return n;
}
