/* Recovery at start: records against the provider's instances. */
#include "recover.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lifecycle.h"
#include "sandbox.h"
#include "state.h"
#include "util/log.h"

typedef struct recovery_s {
    caa_daemon_t *d;
    void (*cb)(caa_daemon_t *d, int status, const pp_error_t *err);
    caa_sandbox_t *loaded; /* records read, not linked yet */
} recovery_t;

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
    caa_daemon_t *d = data;
    caa_sandbox_t *sb = caa_sandbox_find(d, owner);
    if (sb != NULL && sb->pod_index == (int)ix)
        return 0;
    PP_WARN("caa", "pod index %u of `%s` has no record: releasing it", ix, owner);
    pp_podindex_release(&d->index, ix, owner, NULL);
    return 0;
}

static void release_orphan_indexes(caa_daemon_t *d)
{
    pp_error_t err = {0};
    if (d->net_ready && pp_podindex_foreach(&d->index, release_if_orphan, d, &err) < 0)
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
        if (sb->state == CAA_SB_RUNNING)
            adopted++; /* already serving, see caa_recover() */
        else if (sb->state == CAA_SB_STARTING || sb->state == CAA_SB_STOPPING)
            resumed++;
        if (sb->state != CAA_SB_RUNNING)
            caa_sandbox_resume(sb);
    }
    for (size_t i = 0; i < n; i++)
        if (claimed != NULL && !claimed[i]) {
            delete_orphan(d, &insts[i]);
            reaped++;
        }
    release_orphan_indexes(d);
    free(claimed);
    PP_INFO("caa", "recovered %zu sandboxes: %zu running adopted, %zu interrupted resumed",
            d->nsandboxes, adopted, resumed);
    caa_metrics_recovered(&d->metrics, adopted, resumed, lost, reaped);
    void (*cb)(caa_daemon_t *, int, const pp_error_t *) = rc->cb;
    free(rc);
    cb(d, 0, NULL);
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
        if (caa_state_load(d, e->d_name, &sb, &lerr) < 0) {
            /* A directory without a record never got past CreateVM's first
             * step: nothing outside this process exists for it. */
            char path[600];
            snprintf(path, sizeof(path), "%s/%s", d->cfg.pods_dir, e->d_name);
            PP_WARN("caa", "removing `%s`: %s", path, lerr.message);
            caa_remove_dir(path);
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
    int r = d->provider->ops->list_instances(d->provider, listed_cb, rc);
    if (r < 0) {
        pp_error_t lerr;
        pp_error_set(&lerr, r, "%s", uv_strerror(r));
        listed_cb(r, NULL, 0, &lerr, rc);
    }
    return 0;
}
