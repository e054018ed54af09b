/* The plumbing of the ibmcloud provider's operations (op.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "providers/ibmcloud/op.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/log.h"

/* --- operations ------------------------------------------------------------------------ */

static void op_closed(uv_handle_t *h)
{
    op_t *op = container_of((uv_timer_t *)h, op_t, timer);
    st_t *st = op->st;
    const pp_error_t *err = op->status < 0 ? &op->err : NULL;
    switch (op->kind) {
    case OP_CREATE:
        for (op_t **pp = (op_t **)&st->creates; *pp != NULL; pp = &(*pp)->next_create)
            if (*pp == op) {
                *pp = op->next_create;
                break;
            }
        op->create_cb(op->status, op->status < 0 ? NULL : &op->result, err, op->data);
        while (op->followers != NULL) {
            follower_t *f = op->followers;
            op->followers = f->next;
            f->cb(op->status, op->status < 0 ? NULL : &op->result, err, f->data);
            free(f);
        }
        break;
    case OP_DELETE:
        op->delete_cb(op->status, err, op->data);
        break;
    case OP_LIST:
        op->list_cb(op->status, op->status < 0 ? NULL : op->insts, op->status < 0 ? 0 : op->n, err,
                    op->data);
        break;
    }
    if (op->user_data != NULL) {
        OPENSSL_cleanse(op->user_data, strlen(op->user_data));
        free(op->user_data);
    }
    free(op->insts);
    pp__ibm_instances_free(&op->page);
    free(op);
    st->ops_in_flight--;
}

void pp__ibm_op_end(op_t *op, int status)
{
    op->status = status;
    uv_timer_stop(&op->timer);
    uv_close((uv_handle_t *)&op->timer, op_closed);
}

void pp__ibm_op_fail(op_t *op, int status, const pp_error_t *err)
{
    if (err != &op->err)
        op->err = *err;
    pp__ibm_op_end(op, status);
}

op_t *pp__ibm_op_new(st_t *st, enum op_kind kind)
{
    op_t *op = calloc(1, sizeof(*op));
    if (op == NULL)
        return NULL;
    if (uv_timer_init(st->p->loop, &op->timer) < 0) {
        free(op);
        return NULL;
    }
    op->st = st;
    op->kind = kind;
    st->ops_in_flight++;
    return op;
}

static void on_op_timer(uv_timer_t *t)
{
    op_t *op = container_of(t, op_t, timer);
    op->resume(op);
}

void pp__ibm_after(op_t *op, uint64_t ms, void (*fn)(op_t *op))
{
    op->resume = fn;
    uv_timer_start(&op->timer, on_op_timer, ms, 0);
}

uint64_t pp__ibm_now_ms(const op_t *op)
{
    return uv_now(op->st->p->loop);
}

/* Starts a call for `op`; a synchronous failure goes to `fail`. */
void pp__ibm_op_call(op_t *op, const char *method, const char *url, const char *body,
                     const char *what, pp__ibm_call_cb cb, fail_fn fail)
{
    int r = pp__ibm_call(op->st, method, url, body, what, cb, op);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "%s: %s", what, uv_strerror(r));
        fail(op, r, &e);
    }
}

/* A VPC call to `path` (+ query); a URL that does not fit fails the op. */
void pp__ibm_op_vpc(op_t *op, const char *method, const char *path, const char *query,
                    const char *body, const char *what, pp__ibm_call_cb cb, fail_fn fail)
{
    char url[2048];
    if (pp__ibm_vpc_url(op->st, path, query, url, sizeof(url)) < 0) {
        pp_error_t e;
        pp_error_set(&e, -ENAMETOOLONG, "%s: the URL is too long", what);
        fail(op, -ENAMETOOLONG, &e);
        return;
    }
    pp__ibm_op_call(op, method, url, body, what, cb, fail);
}

int pp__ibm_unreadable(pp_error_t *e, const char *what)
{
    return pp_error_set_status(e, PP_GRPC_UNAVAILABLE, -EBADMSG, "%s: the answer cannot be read",
                               what);
}

/* --- things loaded once ---------------------------------------------------------------- */

void pp__ibm_create_fail(op_t *op, int status, const pp_error_t *err);

static void lazy_woken(int status, const pp_error_t *err, void *data)
{
    op_t *op = data;
    if (status < 0) {
        pp__ibm_create_fail(op, status, err);
        return;
    }
    op->resume(op);
}

void pp__ibm_lazy_done(pp__ibm_lazy_t *lz, int status, const pp_error_t *err)
{
    lz->state = status < 0 ? 0 : 2;
    pp_token_waiter_t *w = lz->waiters;
    lz->waiters = NULL;
    while (w != NULL) {
        pp_token_waiter_t *next = w->next;
        w->cb(status, err, w->data);
        w = next;
    }
}

/* Waits for `lz` (starting `load` if nobody has), then goes on with `then`.
 * Returns 1 when it is loaded already. */
int pp__ibm_lazy_wait(op_t *op, pp__ibm_lazy_t *lz, int (*load)(op_t *op), void (*then)(op_t *op))
{
    if (lz->state == 2)
        return 1;
    op->resume = then;
    op->w.cb = lazy_woken;
    op->w.data = op;
    op->w.next = lz->waiters;
    lz->waiters = &op->w;
    if (lz->state == 1)
        return 0;
    lz->state = 1;
    int r = load(op);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "%s", uv_strerror(r));
        pp__ibm_lazy_done(lz, r, &e);
    }
    return 0;
}

/* The catalog, one GET at a time: the allowed profiles, the images, the
 * dedicated hosts, the groups; cat.step counts through them. */
