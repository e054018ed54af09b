/* The ibmcloud provider's operations (create, delete, list): one struct
 * each, driven by the loop, shared by the files that run them
 * (ibmcloud.c: create; catalog.c: what is loaded once; delete.c: delete and
 * list; ops.c: the plumbing). Internal to the provider. */
#ifndef PP_PROVIDERS_IBMCLOUD_OP_H
#define PP_PROVIDERS_IBMCLOUD_OP_H

#include "providers/ibmcloud/ibmcloud.h"

#define COMP           "ibmcloud"
#define MAX_LIST_PAGES 1000
#define LIST_LIMIT     "100"
#define NAME_PREFIX    "podvm-" /* the adaptor's instance names */
#define MAX_ADOPT      3

typedef pp__ibm_state_t st_t;
typedef struct op_s op_t;
typedef void (*fail_fn)(op_t *op, int status, const pp_error_t *err);

enum op_kind { OP_CREATE, OP_DELETE, OP_LIST };

/* A second create for a sandbox whose create is under way: it gets that
 * create's result (the VPC API has no idempotency key, and a twin that
 * posted after the first create failed and deleted its instance would make
 * a second VM for the sandbox). */
typedef struct follower_s {
    struct follower_s *next;
    pp_provider_create_cb cb;
    void *data;
} follower_t;

struct op_s {
    st_t *st;
    op_t *next_create; /* the provider's creates under way */
    follower_t *followers;
    enum op_kind kind;
    uv_timer_t timer;
    void (*resume)(op_t *op);
    pp_token_waiter_t w;
    pp_provider_create_cb create_cb;
    pp_provider_delete_cb delete_cb;
    pp_provider_list_cb list_cb;
    void *data;
    int status;
    pp_error_t err;

    /* create */
    char sandbox_id[PP_SANDBOX_ID_MAX + 1];
    char name[PP_IBM_NAME_MAX];
    char *user_data;
    char machine_type[PP_INSTANCE_TYPE_NAME_MAX];
    char image_ann[PP_IBM_ID_MAX];
    unsigned vcpus, memory_mib, gpus;
    pp__ibm_profile_t prof;
    enum pp__ibm_mode mode;
    char image[PP_IBM_ID_MAX];
    pp__ibm_image_entry_t *ann;
    int use_group;  /* the dedicated host failed: the group */
    int may_exist;  /* the create went out: an instance may exist */
    unsigned tries; /* adoptions, floating IP attempts */
    pp__ibm_instance_t inst;
    uint64_t deadline;
    char fip_address[48];
    pp_instance_t result;

    /* delete (also the cleanup of a failed create) */
    char del_id[PP_IBM_ID_MAX];
    uint64_t del_deadline;
    pp__ibm_instance_t del_nics;
    unsigned del_fip;
    void (*del_done)(op_t *op, int status, const pp_error_t *err);

    /* list */
    pp_instance_t *insts;
    size_t n, cap;
    pp__ibm_instances_t page;
    size_t page_i;
    char next_start[512];
    unsigned pages;
};

/* ops.c */
op_t *pp__ibm_op_new(st_t *st, enum op_kind kind);
/* Ends `op`: its callback runs once the timer has closed. */
void pp__ibm_op_end(op_t *op, int status);
void pp__ibm_op_fail(op_t *op, int status, const pp_error_t *err);
void pp__ibm_after(op_t *op, uint64_t ms, void (*fn)(op_t *op));
uint64_t pp__ibm_now_ms(const op_t *op);
/* A call for `op`; a synchronous failure goes to `fail`. */
void pp__ibm_op_call(op_t *op, const char *method, const char *url, const char *body,
                     const char *what, pp__ibm_call_cb cb, fail_fn fail);
/* A VPC call to `path` (+ query). */
void pp__ibm_op_vpc(op_t *op, const char *method, const char *path, const char *query,
                    const char *body, const char *what, pp__ibm_call_cb cb, fail_fn fail);
int pp__ibm_unreadable(pp_error_t *e, const char *what);
/* Waits for `lz` (starting `load` if nobody has), then goes on with `then`
 * (a failure fails the create). Returns 1 when it is loaded already. */
int pp__ibm_lazy_wait(op_t *op, pp__ibm_lazy_t *lz, int (*load)(op_t *op), void (*then)(op_t *op));
void pp__ibm_lazy_done(pp__ibm_lazy_t *lz, int status, const pp_error_t *err);

/* catalog.c */
int pp__ibm_load_catalog(op_t *op);
int pp__ibm_load_ann(op_t *op);
pp__ibm_image_entry_t *pp__ibm_ann_entry(st_t *st, const char *id);

/* ibmcloud.c */
void pp__ibm_create_fail(op_t *op, int status, const pp_error_t *err);

/* delete.c */
/* Deletes instance `id` (its floating IPs first) and waits until it is
 * gone; then `done`. */
void pp__ibm_del_start(op_t *op, const char *id, void (*done)(op_t *, int, const pp_error_t *));
int pp__ibm_delete(pp_provider_t *p, const char *instance_id, pp_provider_delete_cb cb, void *data);
int pp__ibm_list(pp_provider_t *p, pp_provider_list_cb cb, void *data);

#endif
