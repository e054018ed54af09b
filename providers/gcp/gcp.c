/* The GCP provider: create, delete and list pod VM instances on Compute
 * Engine.
 *
 * Every request is an operation driven by the loop: API calls over the
 * provider's HTTP client, and one uv_timer for polls. An operation ends by
 * closing its timer, and its callback runs from the close callback, so it
 * never fires inside the call that started it.
 *
 * create: the allowed types' specs (machineTypes.get, once, when a fit by
 * size is asked for) -> the image's size (images.get, once per image) ->
 * the tags' ids (Resource Manager, once, with TAGS) -> instances.insert
 * with the sandbox's requestId -> the zone operation followed with its
 * `wait` until DONE (bounded) -> instances.get for the address (polled,
 * bounded, when the external one is not there yet). A create that fails
 * after the insert went out deletes the instance if it exists and is this
 * sandbox's, so no VM outlives a failed create. */
#include "providers/gcp/gcp.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "providers/names.h"
#include "util/base64.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/log.h"

#define COMP            "gcp"
#define MAX_LIST_PAGES  1000
#define WAIT_ATTEMPT_MS 150000 /* operations.wait holds the call up to 2 minutes */
#define LIST_PAGE_SIZE  "100"

typedef pp__gcp_state_t st_t;
typedef struct op_s op_t;

enum op_kind { OP_CREATE, OP_DELETE, OP_LIST };

struct op_s {
    st_t *st;
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

    /* an operation being followed */
    char opname[PP_GCP_NAME_MAX + 16];
    uint64_t op_deadline;
    void (*op_done)(op_t *op, const pp__gcp_operation_t *o);

    /* create */
    char sandbox_id[PP_SANDBOX_ID_MAX + 1];
    char name[PP_GCP_NAME_MAX];
    char node[256];
    char node_label[64];
    char *user_data; /* base64 */
    char machine_type[PP_INSTANCE_TYPE_NAME_MAX];
    char image[600];
    unsigned vcpus, memory_mib, gpus;
    char request_id[37];
    char type[PP_INSTANCE_TYPE_NAME_MAX];
    pp__gcp_image_entry_t *img;
    int insert_sent; /* an instance may exist */
    uint64_t ip_deadline;
    pp_instance_t result;

    /* list */
    pp_instance_t *insts;
    size_t n, cap;
    char next_page[1024];
    unsigned pages;
};

/* --- operations -------------------------------------------------------------------- */

static void op_closed(uv_handle_t *h)
{
    op_t *op = container_of((uv_timer_t *)h, op_t, timer);
    st_t *st = op->st;
    const pp_error_t *err = op->status < 0 ? &op->err : NULL;
    switch (op->kind) {
    case OP_CREATE:
        op->create_cb(op->status, op->status < 0 ? NULL : &op->result, err, op->data);
        break;
    case OP_DELETE:
        op->delete_cb(op->status, err, op->data);
        break;
    case OP_LIST:
        op->list_cb(op->status, op->status < 0 ? NULL : op->insts, op->status < 0 ? 0 : op->n, err,
                    op->data);
        break;
    }
    free(op->user_data);
    free(op->insts);
    free(op);
    st->ops_in_flight--;
}

static void op_end(op_t *op, int status)
{
    op->status = status;
    uv_timer_stop(&op->timer);
    uv_close((uv_handle_t *)&op->timer, op_closed);
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

/* Ends `op` with `err` (copied unless it is op->err). */
static void op_fail(op_t *op, int status, const pp_error_t *err)
{
    if (err != &op->err)
        op->err = *err;
    op_end(op, status);
}

/* Starts a call for `op`; a synchronous failure ends the op through `fail`. */
static void call(op_t *op, const char *method, const char *url, const char *body, const char *what,
                 uint64_t attempt_ms, pp__gcp_call_cb cb,
                 void (*fail)(op_t *op, int status, const pp_error_t *err))
{
    int r = pp__gcp_call(op->st, method, url, body, what, attempt_ms, cb, op);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "%s: %s", what, uv_strerror(r));
        fail(op, r, &e);
    }
}

/* --- following a zone operation ------------------------------------------------------ */

static void op_wait(op_t *op);

static void op_answered(int status, const char *body, size_t len, const char *code,
                        const pp_error_t *err, void *data);

/* Takes an operation (from an insert, a delete, or a wait) and goes on:
 * waits more, or hands it to op->op_done once DONE. */
static void op_follow(op_t *op, const char *body, size_t len,
                      void (*fail)(op_t *op, int status, const pp_error_t *err))
{
    pp__gcp_operation_t o;
    pp_error_t e;
    if (pp__gcp_parse_operation(body, len, &o) < 0 || !pp_cloud_name_valid(o.name)) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EBADMSG,
                            "compute: the answer is not an operation");
        fail(op, -EBADMSG, &e);
        return;
    }
    if (strcmp(o.status, "DONE") == 0) {
        op->op_done(op, &o);
        return;
    }
    snprintf(op->opname, sizeof(op->opname), "%s", o.name);
    if (uv_now(op->st->p->loop) >= op->op_deadline) {
        pp_error_set_status(&e, PP_GRPC_DEADLINE_EXCEEDED, -ETIMEDOUT,
                            "compute: operation `%s` on `%s` not done in %" PRIu64 " ms", o.name,
                            op->name, op->st->cfg.op_timeout_ms);
        fail(op, -ETIMEDOUT, &e);
        return;
    }
    op_wait(op);
}

static void create_fail(op_t *op, int status, const pp_error_t *err);

static void fail_for(op_t *op, int status, const pp_error_t *err)
{
    if (op->kind == OP_CREATE)
        create_fail(op, status, err);
    else
        op_fail(op, status, err);
}

static void op_answered(int status, const char *body, size_t len, const char *code,
                        const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)code;
    if (status < 0) {
        fail_for(op, status, err);
        return;
    }
    op_follow(op, body, len, fail_for);
}

static void op_wait(op_t *op)
{
    char url[800];
    snprintf(url, sizeof(url), "%soperations/%s/wait", op->st->d.compute, op->opname);
    call(op, "POST", url, NULL, "compute `zoneOperations.wait`", WAIT_ATTEMPT_MS, op_answered,
         fail_for);
}

/* The error an operation ended with, translated. */
static int op_error(const pp__gcp_operation_t *o, const char *what, pp_error_t *e)
{
    pp__gcp_error_class_t cls;
    pp__gcp_error_classify(o->error_code, o->http_error, &cls);
    return pp_error_set_status(e, cls.grpc, cls.err, "compute `%s`: operation `%s`: %s: %s", what,
                               o->name, o->error_code, o->error_message);
}

/* --- things loaded once: machine type specs, image sizes, tag ids ----------------------- */

static void lazy_woken(int status, const pp_error_t *err, void *data)
{
    op_t *op = data;
    if (status < 0) {
        create_fail(op, status, err);
        return;
    }
    op->resume(op);
}

static void lazy_done(pp__gcp_lazy_t *lz, int status, const pp_error_t *err)
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

/* Waits for `lz` (starting `load` if nobody has), then goes on with
 * `then`. Returns 1 when it is loaded already. */
static int lazy_wait(op_t *op, pp__gcp_lazy_t *lz, int (*load)(op_t *op), void (*then)(op_t *op))
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

/* Machine types, one get each, in turn; the loading op carries the index
 * in op->n. */
static int load_spec(op_t *op);

static void spec_answered(int status, const char *body, size_t len, const char *code,
                          const pp_error_t *err, void *data)
{
    op_t *op = data;
    st_t *st = op->st;
    (void)code;
    pp_error_t e = {0};
    if (status < 0) {
        e = *err;
        pp_error_wrap(&e, "machine types of `GCP_INSTANCE_TYPES`");
        lazy_done(&st->specs_lazy, status, &e);
        return;
    }
    pp_instance_type_t t;
    if (pp__gcp_parse_machine_type(body, len, &t) < 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EBADMSG,
                            "compute `machineTypes.get`: the answer cannot be read");
        lazy_done(&st->specs_lazy, -EBADMSG, &e);
        return;
    }
    st->specs[st->nspecs++] = t;
    int r = op->n < st->d.ntypes ? load_spec(op) : 0;
    if (r < 0) {
        pp_error_set(&e, r, "compute `machineTypes.get`: %s", uv_strerror(r));
        lazy_done(&st->specs_lazy, r, &e);
        return;
    }
    if (op->n >= st->d.ntypes && st->nspecs == st->d.ntypes) {
        pp_instance_types_sort(st->specs, st->nspecs);
        PP_INFO(COMP, "%zu machine types known for best-fit selection", st->nspecs);
        op->n = 0;
        lazy_done(&st->specs_lazy, 0, NULL);
    }
}

static int load_spec(op_t *op)
{
    st_t *st = op->st;
    char url[800];
    snprintf(url, sizeof(url), "%smachineTypes/%s", st->d.compute, st->d.types[op->n++]);
    return pp__gcp_call(st, "GET", url, NULL, "compute `machineTypes.get`", 0, spec_answered, op);
}

static int load_specs(op_t *op)
{
    st_t *st = op->st;
    free(st->specs);
    st->nspecs = 0;
    st->specs = calloc(st->d.ntypes ? st->d.ntypes : 1, sizeof(*st->specs));
    if (st->specs == NULL)
        return -ENOMEM;
    op->n = 0;
    if (st->d.ntypes == 0)
        return -ENOENT;
    return load_spec(op);
}

/* The images.get URL of a source image path. */
static int image_url(const st_t *st, const char *image, char *url, size_t len)
{
    const char *p = strstr(image, "projects/");
    if (p == NULL || strstr(p, "/global/images/") == NULL)
        return -EINVAL;
    return (size_t)snprintf(url, len, "%s%s", st->d.endpoint, p) < len ? 0 : -ENAMETOOLONG;
}

static void image_answered(int status, const char *body, size_t len, const char *code,
                           const pp_error_t *err, void *data)
{
    op_t *op = data;
    pp__gcp_image_entry_t *img = op->img;
    (void)code;
    pp_error_t e = {0};
    if (status < 0) {
        e = *err;
        if (status == -ENOENT)
            e.status = PP_GRPC_FAILED_PRECONDITION;
        pp_error_wrap(&e, "size of image `%s`", img->image);
        lazy_done(&img->lazy, status, &e);
        return;
    }
    if (pp__gcp_parse_image(body, len, &img->disk_gib) < 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EBADMSG,
                            "compute `images.get`: cannot read the size of `%s`", img->image);
        lazy_done(&img->lazy, -EBADMSG, &e);
        return;
    }
    lazy_done(&img->lazy, 0, NULL);
}

static int load_image(op_t *op)
{
    char url[800];
    int r = image_url(op->st, op->img->image, url, sizeof(url));
    if (r < 0)
        return r;
    return pp__gcp_call(op->st, "GET", url, NULL, "compute `images.get`", 0, image_answered, op);
}

static pp__gcp_image_entry_t *image_entry(st_t *st, const char *image)
{
    for (pp__gcp_image_entry_t *e = st->images; e != NULL; e = e->next)
        if (strcmp(e->image, image) == 0)
            return e;
    pp__gcp_image_entry_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    snprintf(e->image, sizeof(e->image), "%s", image);
    e->next = st->images;
    st->images = e;
    return e;
}

/* Tags: the project's keys (tagKeys.list), then each asked key's values
 * (tagValues.list); op->n counts the keys done. */
static int load_tag_step(op_t *op);

static void tags_fail(op_t *op, int status, const pp_error_t *err)
{
    pp_error_t e = *err;
    pp_error_wrap(&e, "tags of `TAGS`");
    op->next_page[0] = '\0';
    lazy_done(&op->st->tags_lazy, status, &e);
}

static void tags_answered(int status, const char *body, size_t len, const char *code,
                          const pp_error_t *err, void *data)
{
    op_t *op = data;
    st_t *st = op->st;
    (void)code;
    if (status < 0) {
        tags_fail(op, status, err);
        return;
    }
    /* While some key has no id, this was a keys page; else a values page
     * of key op->n. */
    int listing_keys = 0;
    for (size_t i = 0; i < st->d.ntags; i++)
        listing_keys |= st->d.tags[i].key_id[0] == '\0';
    pp__gcp_tag_list_t l;
    pp_error_t e;
    if (pp__gcp_parse_tags(body, len, listing_keys ? "tagKeys" : "tagValues", &l) < 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EBADMSG,
                            "resource manager: the answer cannot be read");
        tags_fail(op, -EBADMSG, &e);
        return;
    }
    for (size_t i = 0; i < l.n; i++) {
        for (size_t t = 0; t < st->d.ntags; t++) {
            pp__gcp_tag_t *tag = &st->d.tags[t];
            if (listing_keys && strcmp(tag->key, l.items[i].short_name) == 0)
                snprintf(tag->key_id, sizeof(tag->key_id), "%s", l.items[i].name);
            else if (!listing_keys && t == op->n && strcmp(tag->value, l.items[i].short_name) == 0)
                snprintf(tag->value_id, sizeof(tag->value_id), "%s", l.items[i].name);
        }
    }
    snprintf(op->next_page, sizeof(op->next_page), "%s", l.next_page);
    pp__gcp_tags_free(&l);
    int r = 0;
    if (op->next_page[0] != '\0' && ++op->pages < MAX_LIST_PAGES) {
        r = load_tag_step(op);
    } else if (listing_keys) {
        for (size_t t = 0; t < st->d.ntags; t++)
            if (st->d.tags[t].key_id[0] == '\0') {
                pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -ENOENT,
                                    "tag key `%s` does not exist in project `%s`",
                                    st->d.tags[t].key, st->cfg.project);
                tags_fail(op, -ENOENT, &e);
                return;
            }
        op->n = 0;
        op->pages = 0;
        r = load_tag_step(op);
    } else {
        pp__gcp_tag_t *tag = &st->d.tags[op->n];
        if (tag->value_id[0] == '\0') {
            pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -ENOENT,
                                "tag `%s=%s` not found: the value does not exist", tag->key,
                                tag->value);
            tags_fail(op, -ENOENT, &e);
            return;
        }
        op->pages = 0;
        if (++op->n < st->d.ntags) {
            r = load_tag_step(op);
        } else {
            op->n = 0;
            PP_INFO(COMP, "%zu tags resolved", st->d.ntags);
            lazy_done(&st->tags_lazy, 0, NULL);
            return;
        }
    }
    if (r < 0) {
        pp_error_set(&e, r, "resource manager: %s", uv_strerror(r));
        tags_fail(op, r, &e);
    }
}

static void pct_encode(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < outlen; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
}

static int load_tag_step(op_t *op)
{
    st_t *st = op->st;
    char url[4096], parent[400], page[3200] = "";
    int keys = 0;
    for (size_t i = 0; i < st->d.ntags; i++)
        keys |= st->d.tags[i].key_id[0] == '\0';
    if (keys) {
        char p[200];
        snprintf(p, sizeof(p), "projects/%s", st->cfg.project);
        pct_encode(p, parent, sizeof(parent));
    } else {
        pct_encode(st->d.tags[op->n].key_id, parent, sizeof(parent));
    }
    if (op->next_page[0] != '\0') {
        char enc[3100];
        pct_encode(op->next_page, enc, sizeof(enc));
        snprintf(page, sizeof(page), "&pageToken=%s", enc);
    }
    if ((size_t)snprintf(url, sizeof(url), "%s%s?parent=%s&pageSize=300%s", st->d.crm,
                         keys ? "tagKeys" : "tagValues", parent, page) >= sizeof(url))
        return -ENAMETOOLONG;
    return pp__gcp_call(st, "GET", url, NULL,
                        keys ? "resource manager `tagKeys.list`"
                             : "resource manager `tagValues.list`",
                        0, tags_answered, op);
}

static int load_tags(op_t *op)
{
    op->n = 0;
    op->pages = 0;
    op->next_page[0] = '\0';
    return load_tag_step(op);
}

/* --- create -------------------------------------------------------------------------- */

static void create_image(op_t *op);
static void create_tags(op_t *op);
static void create_insert(op_t *op);
static void create_get(op_t *op);
static void cleanup_get(op_t *op);

/* Fails the create; what it may have made is deleted first. */
static void create_fail(op_t *op, int status, const pp_error_t *err)
{
    if (err != &op->err)
        op->err = *err;
    op->status = status;
    if (!op->insert_sent) {
        op_end(op, status);
        return;
    }
    op->insert_sent = 0;
    cleanup_get(op);
}

static void cleanup_left(op_t *op, int status, const pp_error_t *err)
{
    if (status == -ENOENT) {
        op_end(op, op->status);
        return;
    }
    char more[PP_ERROR_MAX];
    snprintf(more, sizeof(more),
             "; instance `%.63s` may be left (%.300s): cleanup at restart removes it", op->name,
             err ? err->message : uv_strerror(status));
    size_t n = strlen(op->err.message);
    snprintf(op->err.message + n, sizeof(op->err.message) - n, "%s", more);
    PP_WARN(COMP, "instance `%s` of sandbox `%s` could not be deleted: %s", op->name,
            op->sandbox_id, err ? err->message : uv_strerror(status));
    op_end(op, op->status);
}

static void cleanup_deleted(op_t *op, const pp__gcp_operation_t *o)
{
    pp_error_t e;
    if (o->error_code[0] != '\0' && strcmp(o->error_code, "RESOURCE_NOT_FOUND") != 0) {
        int r = op_error(o, "instances.delete", &e);
        cleanup_left(op, r, &e);
        return;
    }
    PP_INFO(COMP, "instance `%s` of sandbox `%s` deleted after a failed create", op->name,
            op->sandbox_id);
    op_end(op, op->status);
}

static void cleanup_delete_answered(int status, const char *body, size_t len, const char *code,
                                    const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)code;
    if (status < 0) {
        cleanup_left(op, status, err);
        return;
    }
    op->op_done = cleanup_deleted;
    op->op_deadline = uv_now(op->st->p->loop) + op->st->cfg.op_timeout_ms;
    op_follow(op, body, len, cleanup_left);
}

static void cleanup_got(int status, const char *body, size_t len, const char *code,
                        const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)code;
    if (status < 0) {
        cleanup_left(op, status, err);
        return;
    }
    pp__gcp_instance_t in;
    if (pp__gcp_parse_instance(body, len, &in) < 0) {
        pp_error_t e;
        pp_error_set(&e, -EBADMSG, "compute `instances.get`: the answer cannot be read");
        cleanup_left(op, -EBADMSG, &e);
        return;
    }
    /* Only this sandbox's instance is ours to delete. */
    if (strcmp(in.sandbox, op->sandbox_id) != 0) {
        op_end(op, op->status);
        return;
    }
    PP_INFO(COMP, "deleting instance `%s` of sandbox `%s` after a failed create", op->name,
            op->sandbox_id);
    char url[800], rid[37];
    if (pp__gcp_random_id(rid) < 0) {
        pp_error_t e;
        pp_error_set(&e, -EIO, "no random request id");
        cleanup_left(op, -EIO, &e);
        return;
    }
    snprintf(url, sizeof(url), "%sinstances/%s?requestId=%s", op->st->d.compute, op->name, rid);
    call(op, "DELETE", url, NULL, "compute `instances.delete`", 0, cleanup_delete_answered,
         cleanup_left);
}

static void cleanup_get(op_t *op)
{
    char url[800];
    snprintf(url, sizeof(url), "%sinstances/%s", op->st->d.compute, op->name);
    call(op, "GET", url, NULL, "compute `instances.get`", 0, cleanup_got, cleanup_left);
}

static void create_select(op_t *op)
{
    st_t *st = op->st;
    pp_instance_type_want_t want = {.machine_type = op->machine_type,
                                    .vcpus = op->vcpus,
                                    .memory_mib = op->memory_mib,
                                    .gpus = op->gpus};
    if (pp_instance_type_needs_specs(&want) && st->d.ntypes > 0 &&
        !lazy_wait(op, &st->specs_lazy, load_specs, create_select))
        return;
    const char *allowed[128];
    size_t nallowed = 0;
    for (size_t i = 0; i < st->d.ntypes && i < PP_ARRAY_SIZE(allowed); i++)
        allowed[nallowed++] = st->d.types[i];
    pp_instance_type_list_t list = {.setting = "GCP_INSTANCE_TYPES",
                                    .allowed = allowed,
                                    .nallowed = nallowed,
                                    .default_type = st->cfg.machine_type,
                                    .specs = st->specs,
                                    .nspecs = st->nspecs};
    pp_error_t e = {0};
    int r = pp_instance_type_select(&list, &want, op->type, sizeof(op->type), &e);
    if (r < 0) {
        create_fail(op, r, &e);
        return;
    }
    if (st->d.cvm != PP_GCP_CVM_NONE && !pp__gcp_cvm_supported(st->d.cvm, op->type)) {
        pp_error_set_status(&e, PP_GRPC_INVALID_ARGUMENT, -EINVAL,
                            "machine type `%s` cannot run confidential type `%s`", op->type,
                            pp__gcp_cvm_name(st->d.cvm));
        create_fail(op, -EINVAL, &e);
        return;
    }
    create_image(op);
}

static void create_image(op_t *op)
{
    st_t *st = op->st;
    if (op->image[0] == '\0') {
        pp_error_t e;
        pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -EINVAL,
                            "no pod VM image: set `PODVM_IMAGE_NAME` or the pod's image "
                            "annotation");
        create_fail(op, -EINVAL, &e);
        return;
    }
    if (op->img == NULL && (op->img = image_entry(st, op->image)) == NULL) {
        pp_error_t e;
        pp_error_set(&e, -ENOMEM, "out of memory");
        create_fail(op, -ENOMEM, &e);
        return;
    }
    if (lazy_wait(op, &op->img->lazy, load_image, create_tags))
        create_tags(op);
}

static void create_tags(op_t *op)
{
    st_t *st = op->st;
    if (st->d.ntags > 0 && !lazy_wait(op, &st->tags_lazy, load_tags, create_insert))
        return;
    create_insert(op);
}

static json_t *insert_body(op_t *op)
{
    st_t *st = op->st;
    const pp__gcp_config_t *c = &st->cfg;
    const pp__gcp_derived_t *d = &st->d;
    char mt[200], dt[200], sandbox_label[64], disk[24];
    snprintf(mt, sizeof(mt), "zones/%s/machineTypes/%s", c->zone, op->type);
    snprintf(dt, sizeof(dt), "zones/%s/diskTypes/%s", c->zone, c->disk_type);
    pp__gcp_label_value(op->sandbox_id, sandbox_label);
    unsigned gib = op->img->disk_gib;
    if (c->root_volume_gib > 0 && (unsigned)c->root_volume_gib > gib)
        gib = (unsigned)c->root_volume_gib;
    snprintf(disk, sizeof(disk), "%u", gib);
    json_t *nic = json_pack("{s:s, s:s}", "network", d->network, "stackType", "IPV4_ONLY");
    if (nic != NULL && d->subnetwork[0] != '\0')
        json_object_set_new(nic, "subnetwork", json_string(d->subnetwork));
    if (nic != NULL && c->use_public_ip)
        json_object_set_new(nic, "accessConfigs",
                            json_pack("[{s:s, s:s, s:s}]", "name", "External NAT", "type",
                                      "ONE_TO_ONE_NAT", "networkTier", "STANDARD"));
    json_t *b = json_pack(
        "{s:s, s:s, s:s, s:{s:s, s:s}, s:{s:[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}, {s:s, s:s}]},"
        " s:[{s:b, s:b, s:s, s:{s:s, s:s, s:s}}], s:[o]}",
        "name", op->name, "machineType", mt, "description", "peer pod VM", "labels",
        PP_GCP_LABEL_NODE, op->node_label, PP_GCP_LABEL_SANDBOX, sandbox_label, "metadata", "items",
        "key", "user-data", "value", op->user_data, "key", "user-data-encoding", "value", "base64",
        "key", PP_GCP_META_SANDBOX, "value", op->sandbox_id, "key", PP_GCP_META_NODE, "value",
        op->node, "disks", "boot", 1, "autoDelete", 1, "type", "PERSISTENT", "initializeParams",
        "sourceImage", op->image, "diskSizeGb", disk, "diskType", dt, "networkInterfaces", nic);
    if (b == NULL)
        return NULL;
    int terminate = op->gpus > 0;
    if (d->cvm != PP_GCP_CVM_NONE) {
        json_object_set_new(b, "confidentialInstanceConfig",
                            json_pack("{s:b, s:s}", "enableConfidentialCompute", 1,
                                      "confidentialInstanceType", pp__gcp_cvm_name(d->cvm)));
        if (d->cvm == PP_GCP_CVM_SEV_SNP)
            json_object_set_new(b, "minCpuPlatform", json_string("AMD Milan"));
        terminate = 1;
    }
    if (terminate)
        json_object_set_new(b, "scheduling", json_pack("{s:s}", "onHostMaintenance", "TERMINATE"));
    if (d->ntags > 0) {
        json_t *tags = json_object();
        for (size_t i = 0; tags != NULL && i < d->ntags; i++)
            json_object_set_new(tags, d->tags[i].key_id, json_string(d->tags[i].value_id));
        json_object_set_new(b, "params", json_pack("{s:o}", "resourceManagerTags", tags));
    }
    return b;
}

static void insert_done(op_t *op, const pp__gcp_operation_t *o)
{
    if (o->error_code[0] != '\0') {
        pp_error_t e;
        /* Someone made it under this name: ours if it is this sandbox's. */
        if (strcmp(o->error_code, "RESOURCE_ALREADY_EXISTS") == 0 ||
            strcmp(o->error_code, "alreadyExists") == 0) {
            create_get(op);
            return;
        }
        int r = op_error(o, "instances.insert", &e);
        create_fail(op, r, &e);
        return;
    }
    create_get(op);
}

static void insert_answered(int status, const char *body, size_t len, const char *code,
                            const pp_error_t *err, void *data)
{
    op_t *op = data;
    if (status == -EEXIST || strcmp(code, "alreadyExists") == 0) {
        create_get(op);
        return;
    }
    if (status < 0) {
        create_fail(op, status, err);
        return;
    }
    op->op_done = insert_done;
    op->op_deadline = uv_now(op->st->p->loop) + op->st->cfg.op_timeout_ms;
    op_follow(op, body, len, create_fail);
}

static void create_insert(op_t *op)
{
    st_t *st = op->st;
    json_t *b = insert_body(op);
    char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (body == NULL) {
        pp_error_t e;
        pp_error_set(&e, -ENOMEM, "out of memory");
        create_fail(op, -ENOMEM, &e);
        return;
    }
    char url[800];
    snprintf(url, sizeof(url), "%sinstances?requestId=%s", st->d.compute, op->request_id);
    PP_INFO(COMP, "inserting instance `%s` (%s, %s) for sandbox `%s`", op->name, op->type,
            st->d.cvm ? pp__gcp_cvm_name(st->d.cvm) : "not confidential", op->sandbox_id);
    op->insert_sent = 1;
    call(op, "POST", url, body, "compute `instances.insert`", 0, insert_answered, create_fail);
    free(body);
}

static int gone(const char *status)
{
    return strcmp(status, "STOPPING") == 0 || strcmp(status, "TERMINATED") == 0 ||
           strcmp(status, "SUSPENDED") == 0;
}

static void create_got(int status, const char *body, size_t len, const char *code,
                       const pp_error_t *err, void *data)
{
    op_t *op = data;
    st_t *st = op->st;
    (void)code;
    pp_error_t e;
    if (status == -ENOENT) {
        /* The insert is done, so this request made it before and the
         * instance was deleted since: a sandbox is started once. */
        pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -ESTALE,
                            "instance `%s` made for sandbox `%s` earlier is gone; a sandbox is "
                            "started once",
                            op->name, op->sandbox_id);
        op->insert_sent = 0;
        create_fail(op, -ESTALE, &e);
        return;
    }
    if (status < 0) {
        create_fail(op, status, err);
        return;
    }
    pp__gcp_instance_t in;
    if (pp__gcp_parse_instance(body, len, &in) < 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EBADMSG,
                            "compute `instances.get`: the answer cannot be read");
        create_fail(op, -EBADMSG, &e);
        return;
    }
    if (strcmp(in.sandbox, op->sandbox_id) != 0) {
        pp_error_set_status(&e, PP_GRPC_ALREADY_EXISTS, -EEXIST,
                            "instance name `%s` is taken by sandbox `%s`", op->name, in.sandbox);
        op->insert_sent = 0; /* not ours: never deleted here */
        create_fail(op, -EEXIST, &e);
        return;
    }
    if (gone(in.status)) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -ECANCELED,
                            "instance `%s` is %s before it got an address", op->name, in.status);
        create_fail(op, -ECANCELED, &e);
        return;
    }
    const char *ip = st->cfg.use_public_ip ? in.public_ip : in.private_ip;
    if (ip[0] != '\0') {
        pp_instance_t *r = &op->result;
        snprintf(r->id, sizeof(r->id), "%s", op->name);
        snprintf(r->name, sizeof(r->name), "%s", op->name);
        snprintf(r->ip, sizeof(r->ip), "%s", ip);
        snprintf(r->sandbox_id, sizeof(r->sandbox_id), "%s", op->sandbox_id);
        PP_INFO(COMP, "instance `%s` of sandbox `%s` has address %s", op->name, op->sandbox_id, ip);
        op->insert_sent = 0;
        op_end(op, 0);
        return;
    }
    uint64_t now = uv_now(st->p->loop);
    if (op->ip_deadline == 0)
        op->ip_deadline = now + st->cfg.ip_wait_ms;
    if (now >= op->ip_deadline) {
        pp_error_set_status(&e, PP_GRPC_DEADLINE_EXCEEDED, -ETIMEDOUT,
                            "instance `%s` got no %s address in %" PRIu64 " ms", op->name,
                            st->cfg.use_public_ip ? "external" : "internal", st->cfg.ip_wait_ms);
        create_fail(op, -ETIMEDOUT, &e);
        return;
    }
    uint64_t wait = st->cfg.poll_ms;
    if (now + wait > op->ip_deadline)
        wait = op->ip_deadline - now;
    after(op, wait, create_get);
}

static void create_get(op_t *op)
{
    char url[800];
    snprintf(url, sizeof(url), "%sinstances/%s", op->st->d.compute, op->name);
    call(op, "GET", url, NULL, "compute `instances.get`", 0, create_got, create_fail);
}

static int gcp_create(pp_provider_t *p, const pp_instance_spec_t *spec, pp_provider_create_cb cb,
                      void *data)
{
    st_t *st = p->state;
    if (spec == NULL || cb == NULL || spec->sandbox_id == NULL || spec->sandbox_id[0] == '\0' ||
        strlen(spec->sandbox_id) >= sizeof(((op_t *)0)->sandbox_id) ||
        spec->instance_name == NULL || strlen(spec->instance_name) > 253)
        return -EINVAL;
    char name[64];
    if (pp_cloud_instance_name(spec->instance_name, name) < 0)
        return -EINVAL;
    if (spec->user_data_len > PP_GCP_USER_DATA_MAX)
        return -EMSGSIZE;
    if ((spec->machine_type && strlen(spec->machine_type) >= PP_INSTANCE_TYPE_NAME_MAX) ||
        (spec->image && strlen(spec->image) >= sizeof(((op_t *)0)->image)))
        return -EINVAL;
    const char *node = spec->node_name ? spec->node_name : p->node_name;
    if (node == NULL)
        node = "";
    if (strlen(node) >= sizeof(((op_t *)0)->node))
        return -EINVAL;
    char rid[37];
    pp_buf_t b64;
    pp_buf_init(&b64, 0);
    int r = pp_base64_encode(spec->user_data ? spec->user_data : "", spec->user_data_len, &b64);
    if (r == 0)
        r = pp_buf_append_byte(&b64, 0);
    if (r == 0)
        r = pp__gcp_request_id("instances.insert", node, spec->sandbox_id, rid);
    op_t *op = r == 0 ? op_new(st, OP_CREATE) : NULL;
    if (op == NULL) {
        pp_buf_free(&b64);
        return r < 0 ? r : -ENOMEM;
    }
    size_t len;
    op->user_data = (char *)pp_buf_steal(&b64, &len);
    memcpy(op->request_id, rid, sizeof(rid));
    op->create_cb = cb;
    op->data = data;
    snprintf(op->sandbox_id, sizeof(op->sandbox_id), "%s", spec->sandbox_id);
    snprintf(op->name, sizeof(op->name), "%s", name);
    snprintf(op->node, sizeof(op->node), "%s", node);
    pp__gcp_label_value(node, op->node_label);
    snprintf(op->machine_type, sizeof(op->machine_type), "%s",
             spec->machine_type ? spec->machine_type : "");
    /* An annotation's image is taken as written, as upstream does; a bare
     * name is one in this project. */
    if (spec->image != NULL && spec->image[0] != '\0' && strchr(spec->image, '/') == NULL)
        snprintf(op->image, sizeof(op->image), "projects/%.128s/global/images/%.400s",
                 st->cfg.project, spec->image);
    else
        snprintf(op->image, sizeof(op->image), "%s",
                 spec->image && spec->image[0] ? spec->image : st->d.image);
    op->vcpus = spec->vcpus;
    op->memory_mib = spec->memory_mib;
    op->gpus = spec->gpus;
    PP_INFO(COMP, "creating instance `%s` for sandbox `%s`", op->name, op->sandbox_id);
    create_select(op);
    return 0;
}

/* --- delete ------------------------------------------------------------------------- */

static void delete_done(op_t *op, const pp__gcp_operation_t *o)
{
    if (o->error_code[0] != '\0' && strcmp(o->error_code, "RESOURCE_NOT_FOUND") != 0) {
        int r = op_error(o, "instances.delete", &op->err);
        op_end(op, r);
        return;
    }
    PP_INFO(COMP, "instance `%s` deleted", op->name);
    op_end(op, 0);
}

static void delete_answered(int status, const char *body, size_t len, const char *code,
                            const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)code;
    if (status == -ENOENT) {
        PP_INFO(COMP, "instance `%s` deleted (not found)", op->name);
        op_end(op, 0);
        return;
    }
    if (status < 0) {
        op_fail(op, status, err);
        return;
    }
    op->op_done = delete_done;
    op->op_deadline = uv_now(op->st->p->loop) + op->st->cfg.op_timeout_ms;
    op_follow(op, body, len, op_fail);
}

static void delete_unknown(op_t *op)
{
    op_end(op, 0);
}

static int gcp_delete(pp_provider_t *p, const char *instance_id, pp_provider_delete_cb cb,
                      void *data)
{
    st_t *st = p->state;
    if (instance_id == NULL || cb == NULL)
        return -EINVAL;
    char rid[37];
    if (pp__gcp_random_id(rid) < 0)
        return -EIO;
    op_t *op = op_new(st, OP_DELETE);
    if (op == NULL)
        return -ENOMEM;
    op->delete_cb = cb;
    op->data = data;
    /* Not an instance name: no such instance, so it is deleted already. */
    if (!pp_cloud_name_valid(instance_id)) {
        after(op, 0, delete_unknown);
        return 0;
    }
    snprintf(op->name, sizeof(op->name), "%s", instance_id);
    PP_INFO(COMP, "deleting instance `%s`", op->name);
    char url[800];
    /* A fresh requestId per delete: a retry of this request is the same
     * delete, a later delete of a new instance by that name is not. */
    snprintf(url, sizeof(url), "%sinstances/%s?requestId=%s", st->d.compute, op->name, rid);
    call(op, "DELETE", url, NULL, "compute `instances.delete`", 0, delete_answered, op_fail);
    return 0;
}

/* --- list ---------------------------------------------------------------------------- */

static void list_page(op_t *op);

static void list_answered(int status, const char *body, size_t len, const char *code,
                          const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)code;
    if (status < 0) {
        op_fail(op, status, err);
        return;
    }
    pp__gcp_instances_t l;
    int r = pp__gcp_parse_instances(body, len, &l);
    if (r < 0) {
        pp_error_set_status(&op->err, PP_GRPC_UNAVAILABLE, r,
                            "compute `instances.list`: the answer cannot be read");
        op_end(op, r);
        return;
    }
    for (size_t i = 0; i < l.n; i++) {
        const pp__gcp_instance_t *in = &l.items[i];
        if (in->sandbox[0] == '\0')
            continue;
        if (op->n == op->cap) {
            size_t nc = op->cap ? op->cap * 2 : 16;
            pp_instance_t *v = realloc(op->insts, nc * sizeof(*v));
            if (v == NULL) {
                pp__gcp_instances_free(&l);
                pp_error_set(&op->err, -ENOMEM, "out of memory");
                op_end(op, -ENOMEM);
                return;
            }
            op->insts = v;
            op->cap = nc;
        }
        pp_instance_t *o = &op->insts[op->n++];
        memset(o, 0, sizeof(*o));
        snprintf(o->id, sizeof(o->id), "%s", in->name);
        snprintf(o->name, sizeof(o->name), "%s", in->name);
        snprintf(o->ip, sizeof(o->ip), "%s",
                 op->st->cfg.use_public_ip ? in->public_ip : in->private_ip);
        snprintf(o->sandbox_id, sizeof(o->sandbox_id), "%.*s", PP_SANDBOX_ID_MAX, in->sandbox);
    }
    snprintf(op->next_page, sizeof(op->next_page), "%s", l.next_page);
    pp__gcp_instances_free(&l);
    if (op->next_page[0] != '\0' && ++op->pages < MAX_LIST_PAGES) {
        list_page(op);
        return;
    }
    op_end(op, 0);
}

static void list_page(op_t *op)
{
    st_t *st = op->st;
    const char *node = st->p->node_name;
    char filter[200], enc[600], page[3200] = "", url[4096];
    if (node != NULL && node[0] != '\0')
        snprintf(filter, sizeof(filter), "labels.%s = \"%s\"", PP_GCP_LABEL_NODE, st->d.node_label);
    else
        snprintf(filter, sizeof(filter), "labels.%s:*", PP_GCP_LABEL_SANDBOX);
    pct_encode(filter, enc, sizeof(enc));
    if (op->next_page[0] != '\0') {
        char tok[3100];
        pct_encode(op->next_page, tok, sizeof(tok));
        snprintf(page, sizeof(page), "&pageToken=%s", tok);
    }
    if ((size_t)snprintf(url, sizeof(url), "%sinstances?filter=%s&maxResults=%s%s", st->d.compute,
                         enc, LIST_PAGE_SIZE, page) >= sizeof(url)) {
        pp_error_set(&op->err, -ENAMETOOLONG, "compute `instances.list`: the URL is too long");
        op_end(op, -ENAMETOOLONG);
        return;
    }
    call(op, "GET", url, NULL, "compute `instances.list`", 0, list_answered, op_fail);
}

static int gcp_list(pp_provider_t *p, pp_provider_list_cb cb, void *data)
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

/* --- start and stop ------------------------------------------------------------------- */

static void wipe_credentials(st_t *st)
{
    OPENSSL_cleanse(st->cfg.credentials, sizeof(st->cfg.credentials));
}

static int gcp_init(pp_provider_t *p, pp_error_t *err)
{
    st_t *st = p->state;
    st->p = p;
    int r = pp__gcp_derive(&st->cfg, p->node_name, &st->d, err);
    /* The key is parsed: the JSON copy is no longer needed. */
    wipe_credentials(st);
    if (r < 0) {
        pp__gcp_derived_free(&st->d);
        return r;
    }
    const pp__gcp_config_t *c = &st->cfg;
    pp_http_config_t hc = {
        .name = "gcp",
        .ca_bundle = c->ca_bundle[0] ? c->ca_bundle : NULL,
        .rate = c->rate,
        .burst = (unsigned)c->burst,
        .max_attempts = (unsigned)c->max_attempts,
        .backoff_base_ms = c->backoff_base_ms,
        .backoff_max_ms = c->backoff_max_ms,
        .timeout_ms = c->request_timeout_ms,
        .attempt_timeout_ms = c->attempt_timeout_ms,
        .max_response = PP_GCP_JSON_MAX,
        .user_agent = "peerpod-cloud-api-adaptor",
        .classify = pp__gcp_http_classify,
    };
    r = pp_http_new(p->loop, &hc, &st->http, err);
    if (r < 0) {
        pp__gcp_derived_free(&st->d);
        return r;
    }
    pp_token_cache_init(&st->tok, NULL, st);
    st->tok.fetch = NULL; /* set on first use (auth.c) */
    PP_INFO(COMP,
            "project `%s`, zone `%s`, endpoint %s, token from the %s, image `%s`, type `%s` "
            "(%zu allowed), %s, API rate %g/s burst %u",
            c->project, c->zone, st->d.endpoint,
            st->d.key.pkey ? "service-account key" : "metadata server", st->d.image,
            c->machine_type, st->d.ntypes,
            st->d.cvm ? pp__gcp_cvm_name(st->d.cvm) : "not confidential", c->rate,
            (unsigned)c->burst);
    return 0;
}

static void gcp_fini(pp_provider_t *p)
{
    st_t *st = p->state;
    if (st->ops_in_flight > 0)
        PP_WARN(COMP, "closing with %u operations in flight", st->ops_in_flight);
    pp_http_free(st->http);
    st->http = NULL;
    pp__gcp_auth_clear(st);
    pp__gcp_derived_free(&st->d);
    wipe_credentials(st);
    free(st->specs);
    while (st->images != NULL) {
        pp__gcp_image_entry_t *n = st->images->next;
        free(st->images);
        st->images = n;
    }
}

const struct pp_provider_ops pp_provider_gcp_ops = {
    .name = "gcp",
    .state_size = sizeof(pp__gcp_state_t),
    .user_data_max = PP_GCP_USER_DATA_MAX,
    .settings = &pp__gcp_settings,
    .init = gcp_init,
    .create_instance = gcp_create,
    .delete_instance = gcp_delete,
    .list_instances = gcp_list,
    .fini = gcp_fini,
};
