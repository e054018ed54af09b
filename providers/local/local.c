/* The local provider's operations and its create and delete calls: a pod VM
 * is a network namespace on this machine (local.h has the layout, setup.c
 * the settings, create.c the create's steps, teardown.c the removal both
 * use).
 *
 * Every request for an instance is an operation queued on that instance's
 * entry; one runs at a time, so a delete arriving during a create waits for
 * it, and a create for the same sandbox joins the one in flight. Operations
 * are step machines driven by the loop: a timer (also for the deferred first
 * step, so no callback fires inside the call), forked children watched by
 * the reaper, and the threadpool for tree removal. What a create makes is
 * recorded in tag.json before it is made; a failed create tears down exactly
 * what it made, with the same code as delete. */
#include "providers/local/local.h"
#include "providers/local/op.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net/net.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/log.h"

#define COMP PP_LOCAL_LOG

#define TAG_MAX       16384
#define USER_DATA_MAX (1024 * 1024)

/* --- entries and operations ------------------------------------------------ */

static lp_entry_t *entry_get(lp_state_t *st, const char *name)
{
    for (lp_entry_t *e = st->entries; e != NULL; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    lp_entry_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    pp__local_fmt(e->name, sizeof(e->name), "%s", name);
    e->next = st->entries;
    st->entries = e;
    return e;
}

static void entry_drop(lp_state_t *st, lp_entry_t *e)
{
    for (lp_entry_t **pp = &st->entries; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            free(e);
            return;
        }
    }
}

static void on_timer(uv_timer_t *t)
{
    lp_op_t *op = container_of(t, lp_op_t, timer);
    op->timer_fn(op);
}

void pp__local_op_arm(lp_op_t *op, void (*fn)(lp_op_t *op), uint64_t ms)
{
    op->timer_fn = fn;
    uv_timer_start(&op->timer, on_timer, ms, 0);
}

static void op_closed(uv_handle_t *h)
{
    lp_op_t *op = container_of((uv_timer_t *)h, lp_op_t, timer);
    free(op->targets);
    free(op->found);
    free(op->sandbox_id);
    free(op->node);
    free(op->user_data);
    free(op);
}

static lp_op_t *op_new(lp_state_t *st, lp_entry_t *e, enum op_kind kind)
{
    lp_op_t *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return NULL;
    op->st = st;
    op->entry = e;
    op->kind = kind;
    op->waiters_tail = &op->waiters;
    op->vm_fd = -1;
    op->agent.pidfd = -1;
    op->fwd.pidfd = -1;
    pp__local_fmt(op->dir, sizeof(op->dir), "%s/%s", st->state_dir, e->name);
    pp__local_fmt(op->vm_ns, sizeof(op->vm_ns), "%s/%s", st->netns_dir, e->name);
    pp__local_fmt(op->pod_ns, sizeof(op->pod_ns), "%s/%s" PP_LOCAL_PODNS_SUFFIX, st->netns_dir,
                  e->name);
    uv_timer_init(st->p->loop, &op->timer);
    return op;
}

/* Frees an operation that never started. */
static void op_discard(lp_op_t *op)
{
    for (lp_waiter_t *w = op->waiters, *n; w != NULL; w = n) {
        n = w->next;
        free(w);
    }
    uv_close((uv_handle_t *)&op->timer, op_closed);
}

static int op_add_waiter(lp_op_t *op, pp_provider_create_cb ccb, pp_provider_delete_cb dcb,
                         void *data)
{
    lp_waiter_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->create_cb = ccb;
    w->delete_cb = dcb;
    w->data = data;
    *op->waiters_tail = w;
    op->waiters_tail = &w->next;
    return 0;
}

static void delete_begin(lp_op_t *op);

static void op_start(lp_op_t *op)
{
    op->started = 1;
    /* Always through the loop, so no callback fires inside the caller. */
    pp__local_op_arm(op, op->kind == OP_CREATE ? pp__local_create_begin : delete_begin, 0);
}

static void op_enqueue(lp_op_t *op)
{
    lp_entry_t *e = op->entry;
    if (e->tail != NULL)
        e->tail->next = op;
    else
        e->head = op;
    e->tail = op;
    if (e->head == op)
        op_start(op);
}

void pp__local_op_finish(lp_op_t *op)
{
    lp_state_t *st = op->st;
    lp_entry_t *e = op->entry;
    e->head = op->next;
    if (e->head == NULL)
        e->tail = NULL;
    if (op->vm_fd >= 0)
        close(op->vm_fd);
    op->vm_fd = -1;
    pp__local_proc_close(&op->agent);
    pp__local_proc_close(&op->fwd);

    const pp_error_t *err = op->status < 0 ? &op->err : NULL;
    for (lp_waiter_t *w = op->waiters, *n; w != NULL; w = n) {
        n = w->next;
        if (w->create_cb != NULL)
            w->create_cb(op->status, op->status == 0 ? &op->inst : NULL, err, w->data);
        else
            w->delete_cb(op->status, err, w->data);
        free(w);
    }
    op->waiters = NULL;
    uv_close((uv_handle_t *)&op->timer, op_closed);

    /* A callback may have queued more work on this entry. */
    if (e->head != NULL && !e->head->started)
        op_start(e->head);
    else if (e->head == NULL)
        entry_drop(st, e);
}

/* Fails before anything was made: nothing to tear down. */
void pp__local_op_fail_now(lp_op_t *op)
{
    if (op->err.code >= 0)
        op->err.code = -EIO;
    op->status = op->err.code;
    pp_error_wrap(&op->err, "%s instance `%s`", op->kind == OP_CREATE ? "create" : "delete",
                  op->entry->name);
    pp__local_op_finish(op);
}

/* --- helpers ------------------------------------------------------------------ */

int pp__local_read_tag(const char *dir, pp__local_tag_t *tag)
{
    char path[PATH_MAX];
    pp__local_fmt(path, sizeof(path), "%s/tag.json", dir);
    cleanup_free char *buf = NULL;
    size_t len;
    int rc = pp_file_read(path, TAG_MAX, PP_FILE_NOFOLLOW, &buf, &len, NULL);
    if (rc < 0)
        return rc == -ENOTDIR ? -ENOENT : rc;
    return pp__local_tag_decode(buf, len, tag);
}

void pp__local_fill_instance(pp_instance_t *inst, const pp__local_tag_t *tag)
{
    memset(inst, 0, sizeof(*inst));
    pp__local_fmt(inst->id, sizeof(inst->id), PP_LOCAL_ID_PREFIX "%s", tag->name);
    pp__local_fmt(inst->name, sizeof(inst->name), "%s", tag->name);
    pp__local_fmt(inst->ip, sizeof(inst->ip), "%s", tag->ip);
    pp__local_fmt(inst->sandbox_id, sizeof(inst->sandbox_id), "%s", tag->sandbox_id);
}

/* Takes over a record found on disk: everything it names is ours. */
void pp__local_op_adopt_tag(lp_op_t *op, const pp__local_tag_t *tag)
{
    lp_state_t *st = op->st;
    op->tag = *tag;
    op->have_tag = 1;
    op->own_dir = op->own_vm_ns = op->own_pod_ns = op->own_link = 1;
    struct in_addr a;
    uint32_t slot;
    if (inet_pton(AF_INET, tag->ip, &a) == 1 &&
        pp__local_pool_slot_of(&st->pool, ntohl(a.s_addr), &slot) == 0) {
        op->have_slot = 1;
        op->slot = slot;
    }
}

/* --- delete --------------------------------------------------------------------- */

static void delete_done(lp_op_t *op)
{
    op->status = op->td_status;
    if (op->td_status < 0) {
        op->err = op->td_err;
        pp_error_wrap(&op->err, "delete instance `%s`", op->entry->name);
    } else {
        PP_INFO(COMP, "instance `%s` deleted", op->entry->name);
    }
    pp__local_op_finish(op);
}

static void delete_begin(lp_op_t *op)
{
    pp__local_tag_t tag;
    int rc = pp__local_read_tag(op->dir, &tag);
    if (rc == 0) {
        pp__local_op_adopt_tag(op, &tag);
    } else {
        struct stat st;
        if (lstat(op->dir, &st) < 0) {
            op->status = 0; /* nothing of it exists */
            pp__local_op_finish(op);
            return;
        }
        /* A VM dir with no (or a broken) tag: what is named after the
         * instance is ours; an unknown link dies with the VM namespace. */
        op->own_dir = 1;
        op->own_vm_ns = op->own_pod_ns = rc != -ENOENT;
    }
    pp__local_teardown(op, delete_done);
}

/* --- ops ------------------------------------------------------------------------ */

static int local_create(pp_provider_t *p, const pp_instance_spec_t *spec, pp_provider_create_cb cb,
                        void *data)
{
    lp_state_t *st = p->state;
    if (spec == NULL || cb == NULL || !pp__local_name_valid(spec->instance_name) ||
        spec->sandbox_id == NULL || spec->sandbox_id[0] == '\0' ||
        strlen(spec->sandbox_id) >= sizeof(((pp__local_tag_t *)0)->sandbox_id))
        return -EINVAL;
    if (spec->user_data_len > USER_DATA_MAX)
        return -EMSGSIZE;
    const char *node = spec->node_name != NULL ? spec->node_name : p->node_name;
    if (node != NULL && strlen(node) >= sizeof(((pp__local_tag_t *)0)->node))
        return -EINVAL;

    lp_entry_t *e = entry_get(st, spec->instance_name);
    if (e == NULL)
        return -ENOMEM;
    lp_op_t *last = e->tail;
    if (last != NULL && last->kind == OP_CREATE && strcmp(last->sandbox_id, spec->sandbox_id) == 0)
        return op_add_waiter(last, cb, NULL, data);

    lp_op_t *op = op_new(st, e, OP_CREATE);
    if (op == NULL) {
        if (e->head == NULL)
            entry_drop(st, e);
        return -ENOMEM;
    }
    op->sandbox_id = strdup(spec->sandbox_id);
    op->node = strdup(node != NULL ? node : "");
    if (spec->user_data != NULL && spec->user_data_len > 0) {
        op->user_data = malloc(spec->user_data_len);
        if (op->user_data != NULL)
            memcpy(op->user_data, spec->user_data, spec->user_data_len);
        op->user_data_len = spec->user_data_len;
    }
    if (op->sandbox_id == NULL || op->node == NULL ||
        (op->user_data_len > 0 && op->user_data == NULL) || op_add_waiter(op, cb, NULL, data) < 0) {
        op_discard(op);
        if (e->head == NULL)
            entry_drop(st, e);
        return -ENOMEM;
    }
    op_enqueue(op);
    return 0;
}

/* Answers a delete of an id that cannot be ours, through the loop. */
typedef struct lp_noop_s {
    uv_timer_t timer;
    pp_provider_delete_cb cb;
    void *data;
} lp_noop_t;

static void noop_closed(uv_handle_t *h)
{
    free(container_of((uv_timer_t *)h, lp_noop_t, timer));
}

static void noop_fire(uv_timer_t *t)
{
    lp_noop_t *n = container_of(t, lp_noop_t, timer);
    n->cb(0, NULL, n->data);
    uv_close((uv_handle_t *)t, noop_closed);
}

static int local_delete(pp_provider_t *p, const char *id, pp_provider_delete_cb cb, void *data)
{
    lp_state_t *st = p->state;
    if (id == NULL || cb == NULL)
        return -EINVAL;
    size_t plen = strlen(PP_LOCAL_ID_PREFIX);
    const char *name = id + plen;
    if (strncmp(id, PP_LOCAL_ID_PREFIX, plen) != 0 || !pp__local_name_valid(name)) {
        lp_noop_t *n = calloc(1, sizeof(*n));
        if (n == NULL)
            return -ENOMEM;
        n->cb = cb;
        n->data = data;
        uv_timer_init(p->loop, &n->timer);
        uv_timer_start(&n->timer, noop_fire, 0, 0);
        return 0;
    }
    lp_entry_t *e = entry_get(st, name);
    if (e == NULL)
        return -ENOMEM;
    if (e->tail != NULL && e->tail->kind == OP_DELETE)
        return op_add_waiter(e->tail, NULL, cb, data);
    lp_op_t *op = op_new(st, e, OP_DELETE);
    if (op == NULL || op_add_waiter(op, NULL, cb, data) < 0) {
        if (op != NULL)
            op_discard(op);
        if (e->head == NULL)
            entry_drop(st, e);
        return -ENOMEM;
    }
    op_enqueue(op);
    return 0;
}

const struct pp_provider_ops pp_provider_local_ops = {
    .name = "local",
    .state_size = sizeof(lp_state_t),
    .user_data_max = USER_DATA_MAX,
    .settings = &pp__local_settings,
    .init = pp__local_init,
    .create_instance = local_create,
    .delete_instance = local_delete,
    .list_instances = pp__local_list,
    .fini = pp__local_fini,
};
