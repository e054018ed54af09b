/* The ibmcloud provider: create, delete and list pod VM instances in an IBM
 * Cloud VPC.
 *
 * Every request is an operation driven by the loop: API calls over the
 * provider's HTTP client, and one uv_timer for polls. An operation ends by
 * closing its timer, and its callback runs from the close callback, so it
 * never fires inside the call that started it.
 *
 * create: the catalog (catalog.c: the profiles' sizes and architectures,
 * the images', the dedicated host and group of the zone; once) -> the
 * profile (explicit, best fit, or the default) and the image for it, each
 * checked against the confidential mode -> POST /instances (a name that is
 * taken is looked up and adopted when its boot volume says it is this
 * sandbox's) -> GET /instances/{id} until every network interface has an
 * address (bounded) -> a floating IP, with USE_PUBLIC_IP -> the tags
 * (Global Tagging). A create that fails once the instance may exist deletes
 * it, so no VM outlives a failed create.
 *
 * delete: the instance's floating IPs -> DELETE /instances/{id} (again
 * while the instance is pending or starting, which the API refuses) ->
 * GET until it is gone (bounded). */
#include "ibmcloud.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/log.h"

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
    char sandbox_id[128];
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

static void op_end(op_t *op, int status)
{
    op->status = status;
    uv_timer_stop(&op->timer);
    uv_close((uv_handle_t *)&op->timer, op_closed);
}

static void op_fail(op_t *op, int status, const pp_error_t *err)
{
    if (err != &op->err)
        op->err = *err;
    op_end(op, status);
}

static op_t *op_new(st_t *st, enum op_kind kind)
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

static void after(op_t *op, uint64_t ms, void (*fn)(op_t *op))
{
    op->resume = fn;
    uv_timer_start(&op->timer, on_op_timer, ms, 0);
}

static uint64_t now_ms(const op_t *op)
{
    return uv_now(op->st->p->loop);
}

/* Starts a call for `op`; a synchronous failure goes to `fail`. */
static void call(op_t *op, const char *method, const char *url, const char *body, const char *what,
                 pp__ibm_call_cb cb, fail_fn fail)
{
    int r = pp__ibm_call(op->st, method, url, body, what, cb, op);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "%s: %s", what, uv_strerror(r));
        fail(op, r, &e);
    }
}

/* A VPC call to `path` (+ query); a URL that does not fit fails the op. */
static void vpc(op_t *op, const char *method, const char *path, const char *query, const char *body,
                const char *what, pp__ibm_call_cb cb, fail_fn fail)
{
    char url[2048];
    if (pp__ibm_vpc_url(op->st, path, query, url, sizeof(url)) < 0) {
        pp_error_t e;
        pp_error_set(&e, -ENAMETOOLONG, "%s: the URL is too long", what);
        fail(op, -ENAMETOOLONG, &e);
        return;
    }
    call(op, method, url, body, what, cb, fail);
}

static int unreadable(pp_error_t *e, const char *what)
{
    return pp_error_set_status(e, PP_GRPC_UNAVAILABLE, -EBADMSG, "%s: the answer cannot be read",
                               what);
}

/* --- things loaded once ---------------------------------------------------------------- */

static void create_fail(op_t *op, int status, const pp_error_t *err);

static void lazy_woken(int status, const pp_error_t *err, void *data)
{
    op_t *op = data;
    if (status < 0) {
        create_fail(op, status, err);
        return;
    }
    op->resume(op);
}

static void lazy_done(pp__ibm_lazy_t *lz, int status, const pp_error_t *err)
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
static int lazy_wait(op_t *op, pp__ibm_lazy_t *lz, int (*load)(op_t *op), void (*then)(op_t *op))
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
        lazy_done(lz, r, &e);
    }
    return 0;
}

/* The catalog, one GET at a time: the allowed profiles, the images, the
 * dedicated hosts, the groups; cat.step counts through them. */
static int catalog_step(op_t *op);

static void catalog_failed(st_t *st, int status, const pp_error_t *err)
{
    pp__ibm_catalog_t *cat = &st->cat;
    free(cat->profiles);
    free(cat->images);
    cat->profiles = NULL;
    cat->images = NULL;
    cat->nprofiles = cat->nimages = cat->step = 0;
    cat->dh[0] = cat->dhg[0] = '\0';
    lazy_done(&cat->lazy, status, err);
}

static size_t nallowed(const st_t *st)
{
    return 1 + st->d.nprofiles;
}

static const char *allowed_profile(const st_t *st, size_t i)
{
    return i == 0 ? st->cfg.profile : st->d.profiles[i - 1];
}

static void catalog_answered(int status, long http, const char *body, size_t len, const char *code,
                             const pp_error_t *err, void *data)
{
    op_t *op = data;
    st_t *st = op->st;
    pp__ibm_catalog_t *cat = &st->cat;
    (void)http;
    (void)code;
    size_t np = nallowed(st), ni = st->d.nimages, nh = st->d.ndhs;
    size_t i = cat->step - 1;
    pp_error_t e = {0};
    if (i < np) {
        if (status < 0) {
            e = *err;
            if (status == -ENOENT)
                e.status = PP_GRPC_FAILED_PRECONDITION;
            pp_error_wrap(&e, "instance profile `%s`", allowed_profile(st, i));
            catalog_failed(st, status, &e);
            return;
        }
        pp__ibm_profile_t *pr = &cat->profiles[cat->nprofiles];
        if (pp__ibm_parse_profile(body, len, pr) < 0) {
            unreadable(&e, "vpc `instance_profiles.get`");
            catalog_failed(st, -EBADMSG, &e);
            return;
        }
        cat->nprofiles++;
    } else if (i < np + ni) {
        const char *id = st->d.images[i - np];
        if (status == -ENOENT) {
            PP_WARN(COMP, "image `%s` of `IBMCLOUD_PODVM_IMAGE_ID` does not exist; skipped", id);
        } else if (status < 0) {
            e = *err;
            pp_error_wrap(&e, "image `%s`", id);
            catalog_failed(st, status, &e);
            return;
        } else {
            pp__ibm_image_t *img = &cat->images[cat->nimages];
            if (pp__ibm_parse_image(body, len, img) < 0) {
                unreadable(&e, "vpc `images.get`");
                catalog_failed(st, -EBADMSG, &e);
                return;
            }
            if (strcmp(img->status, "failed") == 0 || strcmp(img->status, "deleting") == 0)
                PP_WARN(COMP, "image `%s` is %s; skipped", id, img->status);
            else
                cat->nimages++;
        }
    } else {
        int host = i < np + ni + nh;
        const char *id = host ? st->d.dhs[i - np - ni] : st->d.dhgs[i - np - ni - nh];
        const char *what = host ? "dedicated host" : "dedicated host group";
        char zone[64];
        if (status < 0) {
            e = *err;
            pp_error_wrap(&e, "%s `%s`", what, id);
            catalog_failed(st, status, &e);
            return;
        }
        if (pp__ibm_parse_zone(body, len, zone, sizeof(zone)) < 0) {
            unreadable(&e, what);
            catalog_failed(st, -EBADMSG, &e);
            return;
        }
        char *chosen = host ? cat->dh : cat->dhg;
        if (strcmp(zone, st->cfg.zone) == 0) {
            if (chosen[0] != '\0')
                PP_WARN(COMP, "several %ss in zone `%s`: `%s` is used", what, zone, chosen);
            else
                snprintf(chosen, PP_IBM_ID_MAX, "%s", id);
        }
    }
    int r = catalog_step(op);
    if (r < 0) {
        pp_error_set(&e, r, "catalog: %s", uv_strerror(r));
        catalog_failed(st, r, &e);
    }
}

static int catalog_step(op_t *op)
{
    st_t *st = op->st;
    pp__ibm_catalog_t *cat = &st->cat;
    size_t np = nallowed(st), ni = st->d.nimages, nh = st->d.ndhs, ng = st->d.ndhgs;
    size_t i = cat->step++;
    char path[256], url[2048];
    const char *what;
    if (i < np) {
        snprintf(path, sizeof(path), "/instance/profiles/%s", allowed_profile(st, i));
        what = "vpc `instance_profiles.get`";
    } else if (i < np + ni) {
        snprintf(path, sizeof(path), "/images/%s", st->d.images[i - np]);
        what = "vpc `images.get`";
    } else if (i < np + ni + nh) {
        snprintf(path, sizeof(path), "/dedicated_hosts/%s", st->d.dhs[i - np - ni]);
        what = "vpc `dedicated_hosts.get`";
    } else if (i < np + ni + nh + ng) {
        snprintf(path, sizeof(path), "/dedicated_host/groups/%s", st->d.dhgs[i - np - ni - nh]);
        what = "vpc `dedicated_host_groups.get`";
    } else {
        pp_error_t e;
        if (cat->nimages == 0) {
            pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -ENOENT,
                                "no image of `IBMCLOUD_PODVM_IMAGE_ID` exists");
            catalog_failed(st, -ENOENT, &e);
            return 0;
        }
        if ((nh > 0 && cat->dh[0] == '\0') || (ng > 0 && cat->dhg[0] == '\0')) {
            pp_error_set_status(
                &e, PP_GRPC_FAILED_PRECONDITION, -ENOENT, "no %s of `%s` is in zone `%s`",
                nh > 0 && cat->dh[0] == '\0' ? "dedicated host" : "dedicated host group",
                nh > 0 && cat->dh[0] == '\0' ? "IBMCLOUD_DEDICATED_HOST_IDS"
                                             : "IBMCLOUD_DEDICATED_HOST_GROUP_IDS",
                st->cfg.zone);
            catalog_failed(st, -ENOENT, &e);
            return 0;
        }
        PP_INFO(COMP, "%zu profiles and %zu images known%s%s%s%s", cat->nprofiles, cat->nimages,
                cat->dh[0] ? "; dedicated host " : "", cat->dh, cat->dhg[0] ? "; group " : "",
                cat->dhg);
        lazy_done(&cat->lazy, 0, NULL);
        return 0;
    }
    int r = pp__ibm_vpc_url(st, path, NULL, url, sizeof(url));
    if (r < 0)
        return r;
    return pp__ibm_call(st, "GET", url, NULL, what, catalog_answered, op);
}

static int load_catalog(op_t *op)
{
    st_t *st = op->st;
    pp__ibm_catalog_t *cat = &st->cat;
    cat->profiles = calloc(nallowed(st), sizeof(*cat->profiles));
    cat->images = calloc(st->d.nimages ? st->d.nimages : 1, sizeof(*cat->images));
    if (cat->profiles == NULL || cat->images == NULL)
        return -ENOMEM;
    cat->nprofiles = cat->nimages = cat->step = 0;
    return catalog_step(op);
}

/* An image named by a pod's annotation. */
static void ann_answered(int status, long http, const char *body, size_t len, const char *code,
                         const pp_error_t *err, void *data)
{
    op_t *op = data;
    pp__ibm_image_entry_t *a = op->ann;
    (void)http;
    (void)code;
    pp_error_t e = {0};
    if (status < 0) {
        e = *err;
        if (status == -ENOENT)
            e.status = PP_GRPC_FAILED_PRECONDITION;
        pp_error_wrap(&e, "image `%s` of the pod's annotation", a->img.id);
        lazy_done(&a->lazy, status, &e);
        return;
    }
    char id[PP_IBM_ID_MAX];
    snprintf(id, sizeof(id), "%s", a->img.id);
    if (pp__ibm_parse_image(body, len, &a->img) < 0) {
        snprintf(a->img.id, sizeof(a->img.id), "%s", id);
        unreadable(&e, "vpc `images.get`");
        lazy_done(&a->lazy, -EBADMSG, &e);
        return;
    }
    lazy_done(&a->lazy, 0, NULL);
}

static int load_ann(op_t *op)
{
    char url[2048], path[256];
    snprintf(path, sizeof(path), "/images/%s", op->ann->img.id);
    int r = pp__ibm_vpc_url(op->st, path, NULL, url, sizeof(url));
    if (r < 0)
        return r;
    return pp__ibm_call(op->st, "GET", url, NULL, "vpc `images.get`", ann_answered, op);
}

static pp__ibm_image_entry_t *ann_entry(st_t *st, const char *id)
{
    for (pp__ibm_image_entry_t *e = st->images; e != NULL; e = e->next)
        if (strcmp(e->img.id, id) == 0)
            return e;
    pp__ibm_image_entry_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    snprintf(e->img.id, sizeof(e->img.id), "%s", id);
    e->next = st->images;
    st->images = e;
    return e;
}

/* --- deleting an instance: its floating IPs, then it, then waiting ---------------------- */

static void del_nics(op_t *op);
static void del_instance(op_t *op);
static void del_wait(op_t *op);

static void del_end(op_t *op, int status, const pp_error_t *err)
{
    op->del_done(op, status, err);
}

static void del_start(op_t *op, const char *id, void (*done)(op_t *, int, const pp_error_t *))
{
    snprintf(op->del_id, sizeof(op->del_id), "%s", id);
    op->del_done = done;
    op->del_deadline = now_ms(op) + op->st->cfg.delete_timeout_ms;
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
            vpc(op, "DELETE", path, NULL, NULL, "vpc `floating_ips.delete`", del_fip_answered,
                del_end);
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
        unreadable(&e, "vpc `instance_network_interfaces.list`");
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
    vpc(op, "GET", path, NULL, NULL, "vpc `instance_network_interfaces.list`", del_nics_answered,
        del_end);
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
    after(op, op->st->cfg.poll_ms, del_wait);
}

static void del_instance(op_t *op)
{
    char path[160];
    snprintf(path, sizeof(path), "/instances/%s", op->del_id);
    vpc(op, "DELETE", path, NULL, NULL, "vpc `instances.delete`", del_answered, del_end);
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
        unreadable(&e, "vpc `instances.get`");
        del_end(op, -EBADMSG, &e);
        return;
    }
    if (now_ms(op) >= op->del_deadline) {
        pp_error_set_status(&e, PP_GRPC_DEADLINE_EXCEEDED, -ETIMEDOUT,
                            "instance `%s` is still %s after %" PRIu64 " ms", op->del_id, in.status,
                            op->st->cfg.delete_timeout_ms);
        del_end(op, -ETIMEDOUT, &e);
        return;
    }
    /* Deleting: wait. Anything else (pending, starting): delete again. */
    after(op, op->st->cfg.poll_ms, strcmp(in.status, "deleting") == 0 ? del_wait : del_instance);
}

static void del_wait(op_t *op)
{
    char path[160];
    snprintf(path, sizeof(path), "/instances/%s", op->del_id);
    vpc(op, "GET", path, NULL, NULL, "vpc `instances.get`", del_got, del_end);
}

/* --- create ------------------------------------------------------------------------------ */

static void create_select(op_t *op);
static void create_image(op_t *op);
static void create_post(op_t *op);
static void create_get(op_t *op);
static void create_fip(op_t *op);
static void create_tags(op_t *op);
static void cleanup_lookup(op_t *op);

static void cleanup_done(op_t *op, int status, const pp_error_t *err)
{
    if (status < 0) {
        size_t n = strlen(op->err.message);
        snprintf(op->err.message + n, sizeof(op->err.message) - n,
                 "; instance `%.63s` may be left (%.300s): cleanup at restart removes it", op->name,
                 err ? err->message : uv_strerror(status));
        PP_WARN(COMP, "instance `%s` of sandbox `%s` could not be deleted: %s", op->name,
                op->sandbox_id, err ? err->message : uv_strerror(status));
    } else {
        PP_INFO(COMP, "instance `%s` of sandbox `%s` deleted after a failed create", op->name,
                op->sandbox_id);
    }
    op_end(op, op->status);
}

/* Fails the create; what it may have made is deleted first. */
static void create_fail(op_t *op, int status, const pp_error_t *err)
{
    if (err != &op->err)
        op->err = *err;
    op->status = status;
    if (!op->may_exist) {
        op_end(op, status);
        return;
    }
    op->may_exist = 0;
    if (op->inst.id[0] != '\0') {
        PP_INFO(COMP, "deleting instance `%s` of sandbox `%s` after a failed create", op->name,
                op->sandbox_id);
        del_start(op, op->inst.id, cleanup_done);
        return;
    }
    cleanup_lookup(op);
}

static void create_start(op_t *op)
{
    if (lazy_wait(op, &op->st->cat.lazy, load_catalog, create_select))
        create_select(op);
}

static void create_select(op_t *op)
{
    st_t *st = op->st;
    pp__ibm_catalog_t *cat = &st->cat;
    pp_instance_type_want_t want = {.machine_type = op->machine_type,
                                    .vcpus = op->vcpus,
                                    .memory_mib = op->memory_mib,
                                    .gpus = op->gpus};
    const char *allowed[101];
    size_t n = 0;
    for (size_t i = 0; i < st->d.nprofiles && n < PP_ARRAY_SIZE(allowed); i++)
        allowed[n++] = st->d.profiles[i];
    pp_instance_type_t specs[101];
    for (size_t i = 0; i < cat->nprofiles && i < PP_ARRAY_SIZE(specs); i++)
        specs[i] = cat->profiles[i].spec;
    pp_instance_types_sort(specs, cat->nprofiles);
    pp_instance_type_list_t list = {.setting = "IBMCLOUD_PODVM_INSTANCE_PROFILE_LIST",
                                    .allowed = allowed,
                                    .nallowed = n,
                                    .default_type = st->cfg.profile,
                                    .specs = specs,
                                    .nspecs = cat->nprofiles};
    char type[PP_INSTANCE_TYPE_NAME_MAX];
    pp_error_t e = {0};
    int r = pp_instance_type_select(&list, &want, type, sizeof(type), &e);
    if (r < 0) {
        create_fail(op, r, &e);
        return;
    }
    const pp__ibm_profile_t *pr = NULL;
    for (size_t i = 0; i < cat->nprofiles; i++)
        if (strcmp(cat->profiles[i].spec.name, type) == 0)
            pr = &cat->profiles[i];
    if (pr == NULL) {
        pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -ENOENT, "profile `%s` is unknown",
                            type);
        create_fail(op, -ENOENT, &e);
        return;
    }
    op->prof = *pr;
    op->mode = pp__ibm_mode_for(&st->d, pr->arch);
    /* The name's rule, and what the cloud says the profile runs. */
    if ((r = pp__ibm_profile_fits("the pod's profile", type, op->mode, &e)) < 0) {
        create_fail(op, r, &e);
        return;
    }
    if (op->mode == PP_IBM_TDX && pr->modes_listed && !pr->tdx) {
        pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -EINVAL,
                            "profile `%s` does not offer the confidential compute mode `tdx`",
                            type);
        create_fail(op, -EINVAL, &e);
        return;
    }
    if (op->image_ann[0] != '\0') {
        if ((op->ann = ann_entry(st, op->image_ann)) == NULL) {
            pp_error_set(&e, -ENOMEM, "out of memory");
            create_fail(op, -ENOMEM, &e);
            return;
        }
        if (lazy_wait(op, &op->ann->lazy, load_ann, create_image))
            create_image(op);
        return;
    }
    const pp__ibm_image_t *img = pp__ibm_select_image(cat, pr, op->mode, &e);
    if (img == NULL) {
        create_fail(op, -ENOENT, &e);
        return;
    }
    snprintf(op->image, sizeof(op->image), "%s", img->id);
    create_post(op);
}

/* The annotation's image, as upstream takes it, once checked against the profile. */
static void create_image(op_t *op)
{
    pp_error_t e;
    int r = pp__ibm_image_fits(&op->ann->img, &op->prof, op->mode, &e);
    if (r < 0) {
        create_fail(op, r, &e);
        return;
    }
    snprintf(op->image, sizeof(op->image), "%s", op->ann->img.id);
    create_post(op);
}

static json_t *ids(char (*v)[PP_IBM_ID_MAX], size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++)
        json_array_append_new(a, json_pack("{s:s}", "id", v[i]));
    return a;
}

static json_t *prototype(op_t *op)
{
    st_t *st = op->st;
    const pp__ibm_config_t *c = &st->cfg;
    const pp__ibm_derived_t *d = &st->d;
    char sandbox_tag[PP_IBM_TAG_MAX + 1];
    snprintf(sandbox_tag, sizeof(sandbox_tag), "%s%.112s", PP_IBM_TAG_SANDBOX, op->sandbox_id);
    json_t *b =
        json_pack("{s:s, s:{s:s}, s:s, s:{s:s}, s:{s:s}, s:{s:s}, s:{s:{s:s}, s:o}, s:{s:b, s:s},"
                  " s:{s:b, s:{s:{s:s}, s:[s, s]}}}",
                  "name", op->name, "image", "id", op->image, "user_data", op->user_data, "profile",
                  "name", op->prof.spec.name, "zone", "name", c->zone, "vpc", "id", c->vpc_id,
                  "primary_network_interface", "subnet", "id", c->subnet, "security_groups",
                  ids(d->sgs, d->nsgs), "metadata_service", "enabled", 1, "protocol", "http",
                  "boot_volume_attachment", "delete_volume_on_instance_delete", 1, "volume",
                  "profile", "name", PP_IBM_BOOT_PROFILE, "user_tags", d->node_tag, sandbox_tag);
    if (b == NULL)
        return NULL;
    json_t *keys = json_array();
    if (c->key_id[0] != '\0')
        json_array_append_new(keys, json_pack("{s:s}", "id", c->key_id));
    json_object_set_new(b, "keys", keys);
    if (c->resource_group[0] != '\0')
        json_object_set_new(b, "resource_group", json_pack("{s:s}", "id", c->resource_group));
    if (c->secondary_subnet[0] != '\0')
        json_object_set_new(b, "network_interfaces",
                            json_pack("[{s:b, s:{s:s}, s:[{s:s}]}]", "allow_ip_spoofing", 1,
                                      "subnet", "id", c->secondary_subnet, "security_groups", "id",
                                      c->secondary_sg));
    /* TDX through the instance's confidential compute mode, with secure
     * boot, as upstream; a plain amd64 VM says so. Secure Execution comes
     * with the s390x profile and image: s390x profiles offer no mode. */
    if (strcmp(op->prof.arch, "amd64") == 0) {
        int tdx = op->mode == PP_IBM_TDX;
        json_object_set_new(b, "confidential_compute_mode", json_string(tdx ? "tdx" : "disabled"));
        json_object_set_new(b, "enable_secure_boot", json_boolean(tdx));
    }
    const char *place = st->cat.dh[0] && !op->use_group ? st->cat.dh : st->cat.dhg;
    if (place[0] != '\0')
        json_object_set_new(b, "placement_target", json_pack("{s:s}", "id", place));
    return b;
}

static void create_check(op_t *op);
static void adopt_listed(int status, long http, const char *body, size_t len, const char *code,
                         const pp_error_t *err, void *data);

static void create_adopt(op_t *op)
{
    char q[512];
    snprintf(q, sizeof(q), "name=%s&vpc.id=%s", op->name, op->st->cfg.vpc_id);
    vpc(op, "GET", "/instances", q, NULL, "vpc `instances.list`", adopt_listed, create_fail);
}

static void posted(int status, long http, const char *body, size_t len, const char *code,
                   const pp_error_t *err, void *data)
{
    op_t *op = data;
    st_t *st = op->st;
    (void)http;
    if (status < 0 && pp__ibm_code_name_taken(code)) {
        /* A retry of ours, a twin, or a restarted adaptor's: ours if the
         * boot volume says so. */
        create_adopt(op);
        return;
    }
    int grpc = status < 0 ? pp_error_grpc_status(err) : 0;
    if (status < 0 && st->cat.dh[0] && st->cat.dhg[0] && !op->use_group &&
        grpc != PP_GRPC_UNAVAILABLE && grpc != PP_GRPC_DEADLINE_EXCEEDED) {
        PP_WARN(COMP,
                "instance `%s` could not be made on dedicated host `%s` (%s); trying group "
                "`%s`",
                op->name, st->cat.dh, err->message, st->cat.dhg);
        op->use_group = 1;
        create_post(op);
        return;
    }
    if (status < 0) {
        create_fail(op, status, err);
        return;
    }
    pp_error_t e;
    if (pp__ibm_parse_instance(body, len, &op->inst) < 0) {
        unreadable(&e, "vpc `instances.create`");
        create_fail(op, -EBADMSG, &e);
        return;
    }
    op->deadline = now_ms(op) + st->cfg.create_timeout_ms;
    create_check(op);
}

static void create_post(op_t *op)
{
    json_t *b = prototype(op);
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (body == NULL) {
        pp_error_t e;
        pp_error_set(&e, -ENOMEM, "out of memory");
        create_fail(op, -ENOMEM, &e);
        return;
    }
    PP_INFO(COMP, "creating instance `%s` (%s, %s) for sandbox `%s`", op->name, op->prof.spec.name,
            pp__ibm_mode_name(op->mode), op->sandbox_id);
    op->may_exist = 1;
    vpc(op, "POST", "/instances", NULL, body, "vpc `instances.create`", posted, create_fail);
    OPENSSL_cleanse(body, strlen(body));
    free(body);
}

/* The instance by name: whose it is says its boot volume. */
static void adopt_owner(int status, long http, const char *body, size_t len, const char *code,
                        const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    (void)code;
    pp_error_t e;
    if (status == -ENOENT) {
        /* The volume goes with a deleted instance: look again. */
        create_adopt(op);
        return;
    }
    if (status < 0) {
        create_fail(op, status, err);
        return;
    }
    pp__ibm_owner_t o;
    if (pp__ibm_parse_volume_owner(body, len, &o) < 0) {
        unreadable(&e, "vpc `volumes.get`");
        create_fail(op, -EBADMSG, &e);
        return;
    }
    if (strcasecmp(o.sandbox, op->sandbox_id) != 0) {
        pp_error_set_status(&e, PP_GRPC_ALREADY_EXISTS, -EEXIST,
                            "instance name `%s` is taken by %s%s%s", op->name,
                            o.sandbox[0] ? "sandbox `" : "an instance that is no pod VM", o.sandbox,
                            o.sandbox[0] ? "`" : "");
        op->may_exist = 0; /* not ours: never deleted here */
        op->inst.id[0] = '\0';
        create_fail(op, -EEXIST, &e);
        return;
    }
    if (strcmp(op->inst.status, "deleting") == 0) {
        pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -ESTALE,
                            "instance `%s` made for sandbox `%s` earlier is being deleted; a "
                            "sandbox is started once",
                            op->name, op->sandbox_id);
        op->may_exist = 0;
        create_fail(op, -ESTALE, &e);
        return;
    }
    PP_INFO(COMP, "instance `%s` of sandbox `%s` exists already: taken", op->name, op->sandbox_id);
    op->may_exist = 1;
    if (op->deadline == 0)
        op->deadline = now_ms(op) + op->st->cfg.create_timeout_ms;
    create_check(op);
}

static void adopt_listed(int status, long http, const char *body, size_t len, const char *code,
                         const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    (void)code;
    pp_error_t e;
    if (status < 0) {
        create_fail(op, status, err);
        return;
    }
    pp__ibm_instances_t l;
    if (pp__ibm_parse_instances(body, len, &l) < 0) {
        unreadable(&e, "vpc `instances.list`");
        create_fail(op, -EBADMSG, &e);
        return;
    }
    if (l.n == 0) {
        pp__ibm_instances_free(&l);
        /* Gone between the two calls: create again, a few times. */
        if (++op->tries < MAX_ADOPT) {
            create_post(op);
            return;
        }
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EAGAIN,
                            "instance name `%s` is taken, yet no instance has it", op->name);
        create_fail(op, -EAGAIN, &e);
        return;
    }
    op->inst = l.items[0];
    pp__ibm_instances_free(&l);
    if (op->inst.volume_id[0] == '\0') {
        pp_error_set_status(&e, PP_GRPC_ALREADY_EXISTS, -EEXIST,
                            "instance name `%s` is taken by an instance without a boot volume",
                            op->name);
        op->may_exist = 0;
        op->inst.id[0] = '\0';
        create_fail(op, -EEXIST, &e);
        return;
    }
    char path[160];
    snprintf(path, sizeof(path), "/volumes/%s", op->inst.volume_id);
    vpc(op, "GET", path, NULL, NULL, "vpc `volumes.get`", adopt_owner, create_fail);
}

static int has_address(const pp__ibm_nic_t *n)
{
    return n->address[0] != '\0' && strcmp(n->address, "0.0.0.0") != 0;
}

/* The instance as last read: failed, gone, addressed, or not yet. */
static void create_check(op_t *op)
{
    pp__ibm_instance_t *in = &op->inst;
    pp_error_t e;
    if (strcmp(in->status, "failed") == 0) {
        pp_http_error_class_t cls;
        pp__ibm_error_classify(in->reason_code, 0, &cls);
        if (in->reason_code[0] == '\0') {
            cls.err = -EIO;
            cls.grpc = PP_GRPC_UNAVAILABLE;
        }
        pp_error_set_status(&e, cls.grpc, cls.err, "instance `%s` failed%s%s%s%s", op->name,
                            in->reason_code[0] ? ": " : "", in->reason_code,
                            in->reason_message[0] ? ": " : "", in->reason_message);
        create_fail(op, cls.err, &e);
        return;
    }
    if (strcmp(in->status, "deleting") == 0 || strcmp(in->status, "stopping") == 0 ||
        strcmp(in->status, "stopped") == 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -ECANCELED,
                            "instance `%s` is %s before it got its addresses", op->name,
                            in->status);
        create_fail(op, -ECANCELED, &e);
        return;
    }
    int ready = in->nnics > 0;
    for (unsigned i = 0; i < in->nnics; i++)
        ready &= has_address(&in->nics[i]);
    size_t want = 1 + (op->st->cfg.secondary_subnet[0] != '\0');
    if (ready && in->nnics >= want) {
        create_fip(op);
        return;
    }
    uint64_t now = now_ms(op);
    if (now >= op->deadline) {
        pp_error_set_status(&e, PP_GRPC_DEADLINE_EXCEEDED, -ETIMEDOUT,
                            "instance `%s` got no address in %" PRIu64 " ms (%s)", op->name,
                            op->st->cfg.create_timeout_ms, in->status);
        create_fail(op, -ETIMEDOUT, &e);
        return;
    }
    uint64_t wait = op->st->cfg.poll_ms;
    if (now + wait > op->deadline)
        wait = op->deadline - now;
    after(op, wait, create_get);
}

static void create_got(int status, long http, const char *body, size_t len, const char *code,
                       const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    (void)code;
    pp_error_t e;
    if (status == -ENOENT) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -ECANCELED,
                            "instance `%s` is gone before it got its addresses", op->name);
        op->may_exist = 0;
        create_fail(op, -ECANCELED, &e);
        return;
    }
    if (status < 0) {
        create_fail(op, status, err);
        return;
    }
    char id[PP_IBM_ID_MAX];
    snprintf(id, sizeof(id), "%s", op->inst.id);
    if (pp__ibm_parse_instance(body, len, &op->inst) < 0 || strcmp(op->inst.id, id) != 0) {
        snprintf(op->inst.id, sizeof(op->inst.id), "%s", id);
        unreadable(&e, "vpc `instances.get`");
        create_fail(op, -EBADMSG, &e);
        return;
    }
    create_check(op);
}

static void create_get(op_t *op)
{
    char path[160];
    snprintf(path, sizeof(path), "/instances/%s", op->inst.id);
    vpc(op, "GET", path, NULL, NULL, "vpc `instances.get`", create_got, create_fail);
}

/* --- the floating IP ------------------------------------------------------------------- */

static void fip_listed(int status, long http, const char *body, size_t len, const char *code,
                       const pp_error_t *err, void *data);

static void fip_look(op_t *op)
{
    char path[160];
    snprintf(path, sizeof(path), "/instances/%s/network_interfaces", op->inst.id);
    vpc(op, "GET", path, NULL, NULL, "vpc `instance_network_interfaces.list`", fip_listed,
        create_fail);
}

static void fip_made(int status, long http, const char *body, size_t len, const char *code,
                     const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    pp_error_t e;
    if (status < 0 && (pp__ibm_code_name_taken(code) || strcmp(code, "target_in_use") == 0) &&
        ++op->tries < MAX_ADOPT) {
        /* A twin's, or ours before a lost answer: look at the interface. */
        fip_look(op);
        return;
    }
    if (status < 0) {
        create_fail(op, status, err);
        return;
    }
    char id[PP_IBM_ID_MAX];
    if (pp__ibm_parse_fip(body, len, id, op->fip_address) < 0) {
        unreadable(&e, "vpc `floating_ips.create`");
        create_fail(op, -EBADMSG, &e);
        return;
    }
    create_tags(op);
}

static void fip_listed(int status, long http, const char *body, size_t len, const char *code,
                       const pp_error_t *err, void *data)
{
    op_t *op = data;
    st_t *st = op->st;
    (void)http;
    (void)code;
    pp_error_t e;
    if (status < 0) {
        create_fail(op, status, err);
        return;
    }
    pp__ibm_instance_t nics;
    if (pp__ibm_parse_nics(body, len, &nics) < 0 || nics.nnics == 0) {
        unreadable(&e, "vpc `instance_network_interfaces.list`");
        create_fail(op, -EBADMSG, &e);
        return;
    }
    const pp__ibm_nic_t *primary = &nics.nics[0];
    for (unsigned i = 0; i < nics.nnics; i++)
        if (strcmp(nics.nics[i].id, op->inst.nics[0].id) == 0)
            primary = &nics.nics[i];
    if (primary->nfips > 0) {
        snprintf(op->fip_address, sizeof(op->fip_address), "%s", primary->fip_address[0]);
        create_tags(op);
        return;
    }
    json_t *b = json_pack("{s:s, s:{s:s}}", "name", op->name, "target", "id", primary->id);
    if (b != NULL && st->cfg.resource_group[0] != '\0')
        json_object_set_new(b, "resource_group", json_pack("{s:s}", "id", st->cfg.resource_group));
    char *s = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (s == NULL) {
        pp_error_set(&e, -ENOMEM, "out of memory");
        create_fail(op, -ENOMEM, &e);
        return;
    }
    vpc(op, "POST", "/floating_ips", NULL, s, "vpc `floating_ips.create`", fip_made, create_fail);
    free(s);
}

static void create_fip(op_t *op)
{
    if (!op->st->cfg.use_public_ip) {
        create_tags(op);
        return;
    }
    op->tries = 0;
    fip_look(op);
}

/* --- tags, and done ----------------------------------------------------------------------- */

static void tagged(int status, long http, const char *body, size_t len, const char *code,
                   const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    (void)code;
    pp_error_t e;
    if (status < 0) {
        create_fail(op, status, err);
        return;
    }
    char msg[256];
    int r = pp__ibm_parse_tag_results(body, len, msg, sizeof(msg));
    if (r == -EIO) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EIO,
                            "global tagging: the tags of instance `%s` were not attached: %s",
                            op->name, msg);
        create_fail(op, -EIO, &e);
        return;
    }
    if (r < 0) {
        unreadable(&e, "global tagging `attach`");
        create_fail(op, r, &e);
        return;
    }
    pp_instance_t *res = &op->result;
    snprintf(res->id, sizeof(res->id), "%s", op->inst.id);
    snprintf(res->name, sizeof(res->name), "%s", op->name);
    snprintf(res->ip, sizeof(res->ip), "%s",
             op->st->cfg.use_public_ip ? op->fip_address : op->inst.nics[0].address);
    snprintf(res->sandbox_id, sizeof(res->sandbox_id), "%s", op->sandbox_id);
    PP_INFO(COMP, "instance `%s` (%s) of sandbox `%s` has address %s", op->name, op->inst.id,
            op->sandbox_id, res->ip);
    op->may_exist = 0;
    op_end(op, 0);
}

static void create_tags(op_t *op)
{
    st_t *st = op->st;
    const pp__ibm_derived_t *d = &st->d;
    char sandbox_tag[PP_IBM_TAG_MAX + 1];
    snprintf(sandbox_tag, sizeof(sandbox_tag), "%s%.112s", PP_IBM_TAG_SANDBOX, op->sandbox_id);
    json_t *names = json_array();
    for (size_t i = 0; names != NULL && i < d->ntags; i++)
        json_array_append_new(names, json_string(d->tags[i]));
    json_array_append_new(names, json_string(d->node_tag));
    json_array_append_new(names, json_string(sandbox_tag));
    json_t *b =
        json_pack("{s:[{s:s}], s:o}", "resources", "resource_id", op->inst.crn, "tag_names", names);
    char *s = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    char url[800];
    pp_error_t e;
    if (s == NULL || op->inst.crn[0] == '\0') {
        free(s);
        if (op->inst.crn[0] == '\0')
            unreadable(&e, "vpc `instances.get` (no crn)");
        else
            pp_error_set(&e, -ENOMEM, "out of memory");
        create_fail(op, e.code, &e);
        return;
    }
    snprintf(url, sizeof(url), "%s/v3/tags/attach?tag_type=user", d->tagging);
    call(op, "POST", url, s, "global tagging `attach`", tagged, create_fail);
    free(s);
}

/* --- cleanup of a create whose instance id is unknown -------------------------------------- */

static void cleanup_owner(int status, long http, const char *body, size_t len, const char *code,
                          const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    (void)code;
    if (status == -ENOENT) {
        op_end(op, op->status);
        return;
    }
    if (status < 0) {
        cleanup_done(op, status, err);
        return;
    }
    pp__ibm_owner_t o;
    if (pp__ibm_parse_volume_owner(body, len, &o) < 0) {
        pp_error_t e;
        unreadable(&e, "vpc `volumes.get`");
        cleanup_done(op, -EBADMSG, &e);
        return;
    }
    if (strcasecmp(o.sandbox, op->sandbox_id) != 0) {
        op_end(op, op->status);
        return;
    }
    PP_INFO(COMP, "deleting instance `%s` of sandbox `%s` after a failed create", op->name,
            op->sandbox_id);
    del_start(op, op->inst.id, cleanup_done);
}

static void cleanup_listed(int status, long http, const char *body, size_t len, const char *code,
                           const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    (void)code;
    if (status < 0) {
        cleanup_done(op, status, err);
        return;
    }
    pp__ibm_instances_t l;
    if (pp__ibm_parse_instances(body, len, &l) < 0) {
        pp_error_t e;
        unreadable(&e, "vpc `instances.list`");
        cleanup_done(op, -EBADMSG, &e);
        return;
    }
    if (l.n == 0 || l.items[0].volume_id[0] == '\0') {
        pp__ibm_instances_free(&l);
        op_end(op, op->status);
        return;
    }
    op->inst = l.items[0];
    pp__ibm_instances_free(&l);
    char path[160];
    snprintf(path, sizeof(path), "/volumes/%s", op->inst.volume_id);
    vpc(op, "GET", path, NULL, NULL, "vpc `volumes.get`", cleanup_owner, cleanup_done);
}

static void cleanup_lookup(op_t *op)
{
    char q[512];
    snprintf(q, sizeof(q), "name=%s&vpc.id=%s", op->name, op->st->cfg.vpc_id);
    vpc(op, "GET", "/instances", q, NULL, "vpc `instances.list`", cleanup_listed, cleanup_done);
}

static int ibm_create(pp_provider_t *p, const pp_instance_spec_t *spec, pp_provider_create_cb cb,
                      void *data)
{
    st_t *st = p->state;
    if (spec == NULL || cb == NULL || spec->sandbox_id == NULL ||
        !pp__ibm_sandbox_storable(spec->sandbox_id) || spec->instance_name == NULL ||
        strlen(spec->instance_name) > 253)
        return -EINVAL;
    char name[64];
    if (pp_cloud_instance_name(spec->instance_name, name) < 0)
        return -EINVAL;
    if (spec->user_data_len > PP_IBM_USER_DATA_MAX ||
        (spec->user_data != NULL && strlen(spec->user_data) != spec->user_data_len))
        return -EMSGSIZE;
    if ((spec->machine_type && strlen(spec->machine_type) >= PP_INSTANCE_TYPE_NAME_MAX) ||
        (spec->image && strlen(spec->image) >= PP_IBM_ID_MAX))
        return -EINVAL;
    for (op_t *c = st->creates; c != NULL; c = c->next_create) {
        if (strcmp(c->sandbox_id, spec->sandbox_id) == 0) {
            follower_t *f = calloc(1, sizeof(*f));
            if (f == NULL)
                return -ENOMEM;
            f->cb = cb;
            f->data = data;
            f->next = c->followers;
            c->followers = f;
            PP_INFO(COMP, "sandbox `%s`: its create is under way; this one waits for it",
                    spec->sandbox_id);
            return 0;
        }
    }
    char *ud = strdup(spec->user_data ? spec->user_data : "");
    op_t *op = ud ? op_new(st, OP_CREATE) : NULL;
    if (op == NULL) {
        free(ud);
        return -ENOMEM;
    }
    op->user_data = ud;
    op->next_create = st->creates;
    st->creates = op;
    op->create_cb = cb;
    op->data = data;
    snprintf(op->sandbox_id, sizeof(op->sandbox_id), "%s", spec->sandbox_id);
    snprintf(op->name, sizeof(op->name), "%s", name);
    snprintf(op->machine_type, sizeof(op->machine_type), "%s",
             spec->machine_type ? spec->machine_type : "");
    snprintf(op->image_ann, sizeof(op->image_ann), "%s", spec->image ? spec->image : "");
    op->vcpus = spec->vcpus;
    op->memory_mib = spec->memory_mib;
    op->gpus = spec->gpus;
    create_start(op);
    return 0;
}

/* --- delete ---------------------------------------------------------------------------------- */

static void delete_done(op_t *op, int status, const pp_error_t *err)
{
    if (status < 0) {
        op_fail(op, status, err);
        return;
    }
    PP_INFO(COMP, "instance `%s` deleted", op->del_id);
    op_end(op, 0);
}

static void delete_unknown(op_t *op)
{
    op_end(op, 0);
}

static int ibm_delete(pp_provider_t *p, const char *instance_id, pp_provider_delete_cb cb,
                      void *data)
{
    st_t *st = p->state;
    if (instance_id == NULL || cb == NULL)
        return -EINVAL;
    op_t *op = op_new(st, OP_DELETE);
    if (op == NULL)
        return -ENOMEM;
    op->delete_cb = cb;
    op->data = data;
    /* Not an instance id of this cloud: no such instance, deleted already. */
    if (!pp__ibm_instance_id_valid(instance_id)) {
        after(op, 0, delete_unknown);
        return 0;
    }
    PP_INFO(COMP, "deleting instance `%s`", instance_id);
    del_start(op, instance_id, delete_done);
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
        op_fail(op, status, err);
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
        op_end(op, -ENOMEM);
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
        op_fail(op, status, err);
        return;
    }
    pp__ibm_owner_t o;
    if (pp__ibm_parse_volume_owner(body, len, &o) < 0) {
        unreadable(&op->err, "vpc `volumes.get`");
        op_end(op, -EBADMSG);
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
        vpc(op, "GET", path, NULL, NULL, "vpc `instance_network_interfaces.list`", list_fips,
            op_fail);
        return;
    }
    if (list_add(op, in, o.sandbox, in->nnics > 0 ? in->nics[0].address : "") < 0) {
        pp_error_set(&op->err, -ENOMEM, "out of memory");
        op_end(op, -ENOMEM);
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
        vpc(op, "GET", path, NULL, NULL, "vpc `volumes.get`", list_owner, op_fail);
        return;
    }
    pp__ibm_instances_free(&op->page);
    if (op->next_start[0] != '\0' && ++op->pages < MAX_LIST_PAGES) {
        list_page(op);
        return;
    }
    op_end(op, 0);
}

static void list_answered(int status, long http, const char *body, size_t len, const char *code,
                          const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)http;
    (void)code;
    if (status < 0) {
        op_fail(op, status, err);
        return;
    }
    int r = pp__ibm_parse_instances(body, len, &op->page);
    if (r < 0) {
        unreadable(&op->err, "vpc `instances.list`");
        op_end(op, r);
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
        op_end(op, -ENAMETOOLONG);
        return;
    }
    vpc(op, "GET", "/instances", q, NULL, "vpc `instances.list`", list_answered, op_fail);
}

static int ibm_list(pp_provider_t *p, pp_provider_list_cb cb, void *data)
{
    if (cb == NULL)
        return -EINVAL;
    op_t *op = op_new(p->state, OP_LIST);
    if (op == NULL)
        return -ENOMEM;
    op->list_cb = cb;
    op->data = data;
    list_page(op);
    return 0;
}

/* --- start and stop ----------------------------------------------------------------------------
 */

static int ibm_init(pp_provider_t *p, pp_error_t *err)
{
    st_t *st = p->state;
    st->p = p;
    int r = pp__ibm_derive(&st->cfg, p->node_name, &st->d, err);
    if (r < 0) {
        pp__ibm_derived_free(&st->d);
        return r;
    }
    const pp__ibm_config_t *c = &st->cfg;
    pp_http_config_t hc = {
        .name = "ibmcloud",
        .ca_bundle = c->ca_bundle[0] ? c->ca_bundle : NULL,
        .rate = c->rate,
        .burst = (unsigned)c->burst,
        .max_attempts = (unsigned)c->max_attempts,
        .backoff_base_ms = c->backoff_base_ms,
        .backoff_max_ms = c->backoff_max_ms,
        .timeout_ms = c->request_timeout_ms,
        .attempt_timeout_ms = c->attempt_timeout_ms,
        .max_response = PP_IBM_JSON_MAX,
        .user_agent = "peerpod-cloud-api-adaptor",
        .classify = pp__ibm_http_classify,
        .metrics = p->metrics,
    };
    r = pp_http_new(p->loop, &hc, &st->http, err);
    if (r < 0) {
        pp__ibm_derived_free(&st->d);
        return r;
    }
    PP_INFO(COMP,
            "zone `%s`, VPC `%s`, endpoint %s, token from the %s, profile `%s` (%zu more "
            "allowed), %zu images, %s, API rate %g/s burst %u",
            c->zone, c->vpc_id, st->d.vpc, c->api_key[0] ? "API key" : "trusted profile",
            c->profile, st->d.nprofiles, st->d.nimages,
            st->d.cvm ? "confidential (TDX on amd64, Secure Execution on s390x)"
                      : "not confidential",
            c->rate, (unsigned)c->burst);
    return 0;
}

static void ibm_fini(pp_provider_t *p)
{
    st_t *st = p->state;
    if (st->ops_in_flight > 0)
        PP_WARN(COMP, "closing with %u operations in flight", st->ops_in_flight);
    pp_http_free(st->http);
    st->http = NULL;
    pp__ibm_auth_clear(st);
    pp__ibm_derived_free(&st->d);
    OPENSSL_cleanse(st->cfg.api_key, sizeof(st->cfg.api_key));
    OPENSSL_cleanse(st->cfg.iam_profile_id, sizeof(st->cfg.iam_profile_id));
    free(st->cat.profiles);
    free(st->cat.images);
    while (st->images != NULL) {
        pp__ibm_image_entry_t *n = st->images->next;
        free(st->images);
        st->images = n;
    }
}

const struct pp_provider_ops pp_provider_ibmcloud_ops = {
    .name = "ibmcloud",
    .state_size = sizeof(pp__ibm_state_t),
    .user_data_max = PP_IBM_USER_DATA_MAX,
    .settings = &pp__ibm_settings,
    .init = ibm_init,
    .create_instance = ibm_create,
    .delete_instance = ibm_delete,
    .list_instances = ibm_list,
    .fini = ibm_fini,
};
