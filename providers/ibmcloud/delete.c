/* Deleting an instance (its floating IPs, then it, then waiting until it is
 * gone), for deletes and for the cleanup of a failed create; and the list of
 * the node's instances, read from their boot volumes' tags. */
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

/* --- deleting an instance: its floating IPs, then it, then waiting ---------------------- */

static void del_nics(op_t *op);
static void del_instance(op_t *op);
static void del_wait(op_t *op);

static void del_end(op_t *op, int status, const pp_error_t *err)
{
    op->del_done(op, status, err);
}

void pp__ibm_del_start(op_t *op, const char *id, void (*done)(op_t *, int, const pp_error_t *))
{
    snprintf(op->del_id, sizeof(op->del_id), "%s", id);
    op->del_done = done;
    op->del_deadline = pp__ibm_now_ms(op) + op->st->cfg.delete_timeout_ms;
    del_nics(op);
}

static void del_fip_next(op_t *op);

static void del_fip_answered(int status, long http, const char *body, size_t len, const char *code,
                             const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    (void)body;
    (void)len;
    (void)code;
    if (status < 0 && status != -ENOENT) {
        del_end(op, status, err);
        return;
    }
    del_fip_next(op);
}

/* The floating IPs of every interface, one by one; op->del_fip counts them. */
static void del_fip_next(op_t *op)
{
    unsigned k = op->del_fip++;
    for (unsigned i = 0; i < op->del_nics.nnics; i++) {
        if (k < op->del_nics.nics[i].nfips) {
            char path[160];
            snprintf(path, sizeof(path), "/floating_ips/%s", op->del_nics.nics[i].fip_id[k]);
            PP_INFO(COMP, "releasing floating IP %s of instance `%s`",
                    op->del_nics.nics[i].fip_address[k], op->del_id);
            pp__ibm_op_vpc(op, "DELETE", path, NULL, NULL, "vpc `floating_ips.delete`",
                           del_fip_answered, del_end);
            return;
        }
        k -= op->del_nics.nics[i].nfips;
    }
    del_instance(op);
}

static void del_nics_answered(int status, long http, const char *body, size_t len, const char *code,
                              const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    (void)code;
    if (status == -ENOENT) {
        del_end(op, 0, NULL);
        return;
    }
    if (status < 0) {
        del_end(op, status, err);
        return;
    }
    if (pp__ibm_parse_nics(body, len, &op->del_nics) < 0) {
        pp_error_t e;
        pp__ibm_unreadable(&e, "vpc `instance_network_interfaces.list`");
        del_end(op, -EBADMSG, &e);
        return;
    }
    op->del_fip = 0;
    del_fip_next(op);
}

static void del_nics(op_t *op)
{
    char path[160];
    snprintf(path, sizeof(path), "/instances/%s/network_interfaces", op->del_id);
    pp__ibm_op_vpc(op, "GET", path, NULL, NULL, "vpc `instance_network_interfaces.list`",
                   del_nics_answered, del_end);
}

static void del_answered(int status, long http, const char *body, size_t len, const char *code,
                         const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    (void)body;
    (void)len;
    (void)code;
    if (status == -ENOENT) {
        del_end(op, 0, NULL);
        return;
    }
    /* 409: pending or starting (or deleting already): look again. */
    if (status < 0 && status != -EBUSY) {
        del_end(op, status, err);
        return;
    }
    pp__ibm_after(op, op->st->cfg.poll_ms, del_wait);
}

static void del_instance(op_t *op)
{
    char path[160];
    snprintf(path, sizeof(path), "/instances/%s", op->del_id);
    pp__ibm_op_vpc(op, "DELETE", path, NULL, NULL, "vpc `instances.delete`", del_answered, del_end);
}

static void del_got(int status, long http, const char *body, size_t len, const char *code,
                    const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    (void)code;
    if (status == -ENOENT) {
        del_end(op, 0, NULL);
        return;
    }
    if (status < 0) {
        del_end(op, status, err);
        return;
    }
    pp__ibm_instance_t in;
    pp_error_t e;
    if (pp__ibm_parse_instance(body, len, &in) < 0) {
        pp__ibm_unreadable(&e, "vpc `instances.get`");
        del_end(op, -EBADMSG, &e);
        return;
    }
    if (pp__ibm_now_ms(op) >= op->del_deadline) {
        pp_error_set_status(&e, PP_GRPC_DEADLINE_EXCEEDED, -ETIMEDOUT,
                            "instance `%s` is still %s after %" PRIu64 " ms", op->del_id, in.status,
                            op->st->cfg.delete_timeout_ms);
        del_end(op, -ETIMEDOUT, &e);
        return;
    }
    /* Deleting: wait. Anything else (pending, starting): delete again. */
    pp__ibm_after(op, op->st->cfg.poll_ms,
                  strcmp(in.status, "deleting") == 0 ? del_wait : del_instance);
}

static void del_wait(op_t *op)
{
    char path[160];
    snprintf(path, sizeof(path), "/instances/%s", op->del_id);
    pp__ibm_op_vpc(op, "GET", path, NULL, NULL, "vpc `instances.get`", del_got, del_end);
}

/* --- delete ---------------------------------------------------------------------------------- */

static void delete_done(op_t *op, int status, const pp_error_t *err)
{
    if (status < 0) {
        pp__ibm_op_fail(op, status, err);
        return;
    }
    PP_INFO(COMP, "instance `%s` deleted", op->del_id);
    pp__ibm_op_end(op, 0);
}

static void delete_unknown(op_t *op)
{
    pp__ibm_op_end(op, 0);
}

int pp__ibm_delete(pp_provider_t *p, const char *instance_id, pp_provider_delete_cb cb, void *data)
{
    st_t *st = p->state;
    if (instance_id == NULL || cb == NULL)
        return -EINVAL;
    op_t *op = pp__ibm_op_new(st, OP_DELETE);
    if (op == NULL)
        return -ENOMEM;
    op->delete_cb = cb;
    op->data = data;
    /* Not an instance id of this cloud: no such instance, deleted already. */
    if (!pp__ibm_instance_id_valid(instance_id)) {
        pp__ibm_after(op, 0, delete_unknown);
        return 0;
    }
    PP_INFO(COMP, "deleting instance `%s`", instance_id);
    pp__ibm_del_start(op, instance_id, delete_done);
    return 0;
}

/* --- list ------------------------------------------------------------------------------------ */

static void list_page(op_t *op);
static void list_item(op_t *op);

static int list_add(op_t *op, const pp__ibm_instance_t *in, const char *sandbox, const char *ip)
{
    if (op->n == op->cap) {
        size_t nc = op->cap ? op->cap * 2 : 16;
        pp_instance_t *v = realloc(op->insts, nc * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        op->insts = v;
        op->cap = nc;
    }
    pp_instance_t *o = &op->insts[op->n++];
    memset(o, 0, sizeof(*o));
    snprintf(o->id, sizeof(o->id), "%s", in->id);
    snprintf(o->name, sizeof(o->name), "%s", in->name);
    snprintf(o->ip, sizeof(o->ip), "%s", ip);
    snprintf(o->sandbox_id, sizeof(o->sandbox_id), "%.127s", sandbox);
    return 0;
}

static void list_next(op_t *op)
{
    op->page_i++;
    list_item(op);
}

static void list_fips(int status, long http, const char *body, size_t len, const char *code,
                      const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    (void)code;
    const pp__ibm_instance_t *in = &op->page.items[op->page_i];
    if (status == -ENOENT) {
        list_next(op);
        return;
    }
    if (status < 0) {
        pp__ibm_op_fail(op, status, err);
        return;
    }
    pp__ibm_instance_t nics;
    const char *ip = "";
    if (pp__ibm_parse_nics(body, len, &nics) == 0)
        for (unsigned i = 0; i < nics.nnics; i++)
            if (strcmp(nics.nics[i].id, in->nics[0].id) == 0 && nics.nics[i].nfips > 0)
                ip = nics.nics[i].fip_address[0];
    if (list_add(op, in, op->result.sandbox_id, ip) < 0) {
        pp_error_set(&op->err, -ENOMEM, "out of memory");
        pp__ibm_op_end(op, -ENOMEM);
        return;
    }
    list_next(op);
}

static void list_owner(int status, long http, const char *body, size_t len, const char *code,
                       const pp_error_t *err, void *data)
{
    op_t *op = data;
    st_t *st = op->st;
    (void)http;
    (void)code;
    const pp__ibm_instance_t *in = &op->page.items[op->page_i];
    if (status == -ENOENT) {
        list_next(op);
        return;
    }
    if (status < 0) {
        pp__ibm_op_fail(op, status, err);
        return;
    }
    pp__ibm_owner_t o;
    if (pp__ibm_parse_volume_owner(body, len, &o) < 0) {
        pp__ibm_unreadable(&op->err, "vpc `volumes.get`");
        pp__ibm_op_end(op, -EBADMSG);
        return;
    }
    const char *node = st->p->node_name;
    int mine = o.sandbox[0] != '\0' &&
               ((node == NULL || node[0] == '\0') ? o.node_tag[0] != '\0'
                                                  : strcasecmp(o.node_tag, st->d.node_tag) == 0);
    if (!mine) {
        list_next(op);
        return;
    }
    if (st->cfg.use_public_ip) {
        snprintf(op->result.sandbox_id, sizeof(op->result.sandbox_id), "%.127s", o.sandbox);
        char path[160];
        snprintf(path, sizeof(path), "/instances/%s/network_interfaces", in->id);
        pp__ibm_op_vpc(op, "GET", path, NULL, NULL, "vpc `instance_network_interfaces.list`",
                       list_fips, pp__ibm_op_fail);
        return;
    }
    if (list_add(op, in, o.sandbox, in->nnics > 0 ? in->nics[0].address : "") < 0) {
        pp_error_set(&op->err, -ENOMEM, "out of memory");
        pp__ibm_op_end(op, -ENOMEM);
        return;
    }
    list_next(op);
}

/* Each instance of the page that may be a pod VM: its boot volume's tags. */
static void list_item(op_t *op)
{
    for (; op->page_i < op->page.n; op->page_i++) {
        const pp__ibm_instance_t *in = &op->page.items[op->page_i];
        if (strncmp(in->name, NAME_PREFIX, strlen(NAME_PREFIX)) != 0 || in->volume_id[0] == '\0' ||
            strcmp(in->status, "deleting") == 0)
            continue;
        char path[160];
        snprintf(path, sizeof(path), "/volumes/%s", in->volume_id);
        pp__ibm_op_vpc(op, "GET", path, NULL, NULL, "vpc `volumes.get`", list_owner,
                       pp__ibm_op_fail);
        return;
    }
    pp__ibm_instances_free(&op->page);
    if (op->next_start[0] != '\0' && ++op->pages < MAX_LIST_PAGES) {
        list_page(op);
        return;
    }
    pp__ibm_op_end(op, 0);
}

static void list_answered(int status, long http, const char *body, size_t len, const char *code,
                          const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    (void)code;
    if (status < 0) {
        pp__ibm_op_fail(op, status, err);
        return;
    }
    int r = pp__ibm_parse_instances(body, len, &op->page);
    if (r < 0) {
        pp__ibm_unreadable(&op->err, "vpc `instances.list`");
        pp__ibm_op_end(op, r);
        return;
    }
    snprintf(op->next_start, sizeof(op->next_start), "%s", op->page.next_start);
    op->page_i = 0;
    list_item(op);
}

static void list_page(op_t *op)
{
    st_t *st = op->st;
    char q[1024];
    int n = snprintf(q, sizeof(q), "vpc.id=%s&limit=%s", st->cfg.vpc_id, LIST_LIMIT);
    if (st->cfg.resource_group[0] != '\0')
        n +=
            snprintf(q + n, sizeof(q) - (size_t)n, "&resource_group.id=%s", st->cfg.resource_group);
    if (op->next_start[0] != '\0' && (size_t)snprintf(q + n, sizeof(q) - (size_t)n, "&start=%s",
                                                      op->next_start) >= sizeof(q) - (size_t)n) {
        pp_error_set(&op->err, -ENAMETOOLONG, "vpc `instances.list`: the page token is too long");
        pp__ibm_op_end(op, -ENAMETOOLONG);
        return;
    }
    pp__ibm_op_vpc(op, "GET", "/instances", q, NULL, "vpc `instances.list`", list_answered,
                   pp__ibm_op_fail);
}

int pp__ibm_list(pp_provider_t *p, pp_provider_list_cb cb, void *data)
{
    if (cb == NULL)
        return -EINVAL;
    op_t *op = pp__ibm_op_new(p->state, OP_LIST);
    if (op == NULL)
        return -ENOMEM;
    op->list_cb = cb;
    op->data = data;
    list_page(op);
    return 0;
}
