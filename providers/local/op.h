/* The local provider's operations (internal to local.c, create.c and
 * teardown.c). Every request for an instance is an operation queued on
 * that instance's entry; one runs at a time. Everything here runs on the
 * loop thread, except the threadpool work each file says it queues. */
#ifndef PP_PROVIDERS_LOCAL_OP_H
#define PP_PROVIDERS_LOCAL_OP_H

#include "providers/local/local.h"

typedef pp__local_state_t lp_state_t;
typedef pp__local_entry_t lp_entry_t;
typedef struct lp_op_s lp_op_t;

/* The operations on one instance, by name. */
struct pp__local_entry_s {
    lp_entry_t *next;
    char name[PP_LOCAL_NAME_MAX + 1];
    lp_op_t *head, *tail; /* head runs; the rest wait their turn */
};

typedef struct lp_waiter_s {
    struct lp_waiter_s *next;
    pp_provider_create_cb create_cb;
    pp_provider_delete_cb delete_cb;
    void *data;
} lp_waiter_t;

enum op_kind { OP_CREATE, OP_DELETE };

struct lp_op_s {
    lp_op_t *next;
    lp_state_t *st;
    lp_entry_t *entry;
    enum op_kind kind;
    int started;
    lp_waiter_t *waiters, **waiters_tail;
    uv_timer_t timer;
    void (*timer_fn)(lp_op_t *op);
    uv_work_t work;

    /* create's request, copied */
    char *sandbox_id;
    char *node;
    char *user_data;
    size_t user_data_len;

    /* what exists, for the teardown: only what is ours is removed */
    pp__local_tag_t tag;
    int have_tag, have_slot, own_dir, own_vm_ns, own_pod_ns, own_link;
    uint32_t slot;
    char dir[PATH_MAX], vm_ns[PATH_MAX], pod_ns[PATH_MAX];
    int vm_fd;
    pp__local_child_t *child;
    int timed_out;
    pp__local_proc_t agent, fwd;

    /* teardown */
    void (*after_teardown)(lp_op_t *op);
    pp__local_proc_t *targets;
    size_t ntargets, cap;
    pp__local_proc_t *found; /* the scan's, handed to the loop */
    size_t nfound;
    int scan_self; /* the daemon's pid, for the scan */
    void (*after_scan)(lp_op_t *op);
    int have_vm_id, have_pod_id, killed;
    dev_t vm_dev, pod_dev;
    ino_t vm_ino, pod_ino;
    uint64_t deadline;
    int td_status;
    pp_error_t td_err;

    /* result */
    int status;
    pp_error_t err;
    pp_instance_t inst;
};

/* local.c: runs `fn` from the loop after `ms` (0: on the next turn). */
void pp__local_op_arm(lp_op_t *op, void (*fn)(lp_op_t *op), uint64_t ms);
/* local.c: answers every waiter with op->status (and op->inst or op->err),
 * frees the operation and starts the next one on its entry. */
void pp__local_op_finish(lp_op_t *op);
/* local.c: fails before anything was made: nothing to tear down. */
void pp__local_op_fail_now(lp_op_t *op);
/* local.c: takes over a record found on disk: everything it names is ours. */
void pp__local_op_adopt_tag(lp_op_t *op, const pp__local_tag_t *tag);

/* create.c: the first step of a create. */
void pp__local_create_begin(lp_op_t *op);

/* teardown.c: stops the instance's processes, then removes what op->own_*
 * says is ours; runs `then` when done, with any failure in op->td_*. */
void pp__local_teardown(lp_op_t *op, void (*then)(lp_op_t *op));

#endif
