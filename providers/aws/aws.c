/* The AWS provider: create, delete and list pod VM instances on EC2.
 *
 * Every request is an operation driven by the loop: EC2 calls over the
 * provider's HTTP client, and one uv_timer for polls. An operation ends by
 * closing its timer, and its callback runs from the close callback, so it
 * never fires inside the call that started it.
 *
 * create: the allowed types' specs (DescribeInstanceTypes, once, when a fit
 * by size is asked for) -> the image's root device (DescribeImages, once
 * per image, when ROOT_VOLUME_SIZE is set) -> RunInstances with the
 * sandbox's ClientToken -> DescribeInstances until the address is there
 * (bounded). A create that fails after RunInstances may have made the
 * instance terminates it (found by id, or by its ClientToken), so no VM
 * outlives a failed create. */
#include "providers/aws/aws.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/base64.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/log.h"

#define COMP           "aws"
#define MAX_LIST_PAGES 1000

typedef pp__aws_state_t st_t;
typedef pp__aws_op_t op_t;

enum op_kind { OP_CREATE, OP_DELETE, OP_LIST };

struct pp__aws_op_s {
    st_t *st;
    enum op_kind kind;
    uv_timer_t timer;
    void (*resume)(op_t *op);
    pp__aws_waiter_t w;
    pp_provider_create_cb create_cb;
    pp_provider_delete_cb delete_cb;
    pp_provider_list_cb list_cb;
    void *data;
    int status;
    pp_error_t err;

    /* create */
    char sandbox_id[PP_SANDBOX_ID_MAX + 1];
    char name[64];
    char node[256];
    char *user_data; /* base64 */
    char machine_type[PP_INSTANCE_TYPE_NAME_MAX];
    char image[128];
    unsigned vcpus, memory_mib, gpus;
    char token[65];
    char type[PP_INSTANCE_TYPE_NAME_MAX];
    pp__aws_image_entry_t *img;
    pp__aws_instance_t inst;
    int have_inst;
    int run_sent; /* RunInstances went out: an instance may exist */
    uint64_t ip_deadline;
    pp__aws_instances_t orphans; /* found by ClientToken after a failed RunInstances */
    int orphans_asked;
    size_t next_orphan;
    pp_instance_t result;

    /* delete */
    char id[32];

    /* list */
    pp_instance_t *insts;
    size_t n, cap;
    char next_token[1025];
    unsigned pages;
};

/* --- operations ------------------------------------------------------------------ */

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
    pp__aws_instances_free(&op->orphans);
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

/* Starts an EC2 call for `op`, or ends the op with the synchronous error. */
static void call(op_t *op, pp__aws_query_t *q, const char *action, pp__aws_call_cb cb)
{
    int r = pp__aws_ec2_call(op->st, q, action, cb, op);
    if (r < 0) {
        pp_error_set(&op->err, r, "ec2 `%s`: %s", action, uv_strerror(r));
        op_end(op, r);
    }
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

/* Ends the op with op->err, from the loop: a callback never fires from
 * inside the call that started the op. */
static void op_fail_async(op_t *op)
{
    op_end(op, op->err.code);
}

/* --- the node's settings from instance metadata, before any call ------------------ */

static void discovered(int status, const pp_error_t *err, void *data)
{
    op_t *op = data;
    if (status < 0) {
        op->err = *err;
        op_end(op, status);
        return;
    }
    op->resume(op);
}

/* Goes on with `fn` once what is unset is asked of the instance metadata
 * service (discover.c). The first operation asks (the reconcile list, at
 * start-up); no operation, no question, so nothing outlives fini. */
static void begin(op_t *op, void (*fn)(op_t *op))
{
    op->resume = fn;
    op->w.cb = discovered;
    op->w.data = op;
    int r = pp__aws_discover_ensure(op->st, &op->w);
    if (r == 1) {
        fn(op);
    } else if (r < 0) {
        pp_error_set(&op->err, r, "instance metadata: %s", uv_strerror(r));
        after(op, 0, op_fail_async);
    }
}

/* --- things loaded once: instance type specs, image root devices ------------------ */

static void create_fail(op_t *op, int status, const pp_error_t *err);

/* Only creates wait for these. */
static void lazy_woken(int status, const pp_error_t *err, void *data)
{
    op_t *op = data;
    if (status < 0) {
        create_fail(op, status, err);
        return;
    }
    op->resume(op);
}

/* Waits for `lz` to be loaded (starting `load` if nobody has), then goes
 * on with `then`. Returns 1 when it is loaded already. */
static int lazy_wait(op_t *op, pp__aws_lazy_t *lz, int (*load)(op_t *op), void (*then)(op_t *op))
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
        lz->state = 0;
        pp__aws_waiter_t *w = lz->waiters;
        lz->waiters = NULL;
        for (; w != NULL;) {
            pp__aws_waiter_t *next = w->next;
            w->cb(r, &e, w->data);
            w = next;
        }
    }
    return 0;
}

static void lazy_done(pp__aws_lazy_t *lz, int status, const pp_error_t *err)
{
    lz->state = status < 0 ? 0 : 2;
    pp__aws_waiter_t *w = lz->waiters;
    lz->waiters = NULL;
    while (w != NULL) {
        pp__aws_waiter_t *next = w->next;
        w->cb(status, err, w->data);
        w = next;
    }
}

static void specs_answered(int status, const char *body, size_t len, const char *code,
                           const pp_error_t *err, void *data)
{
    op_t *op = data;
    st_t *st = op->st;
    (void)code;
    pp_error_t e = {0};
    if (status < 0) {
        e = *err;
        pp_error_wrap(&e, "instance types of `PODVM_INSTANCE_TYPES`");
        lazy_done(&st->specs_lazy, status, &e);
        return;
    }
    pp__aws_types_t t;
    int r = pp__aws_parse_instance_types(body, len, &t);
    if (r < 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, r,
                            "ec2 `DescribeInstanceTypes`: the answer cannot be read");
        lazy_done(&st->specs_lazy, r, &e);
        return;
    }
    pp_instance_types_sort(t.items, t.n);
    free(st->specs);
    st->specs = t.items;
    st->nspecs = t.n;
    PP_INFO(COMP, "%zu instance types known for best-fit selection", t.n);
    lazy_done(&st->specs_lazy, 0, NULL);
}

static int load_specs(op_t *op)
{
    st_t *st = op->st;
    const pp__aws_config_t *c = &st->cfg;
    pp__aws_query_t q;
    pp__aws_query_init(&q, "DescribeInstanceTypes", PP_AWS_EC2_VERSION);
    if (c->ninstance_types == 0)
        pp__aws_query_add(&q, "InstanceType.1", c->instance_type);
    for (size_t i = 0; i < c->ninstance_types; i++)
        pp__aws_query_addf(&q, c->instance_types[i], "InstanceType.%zu", i + 1);
    return pp__aws_ec2_call(st, &q, "DescribeInstanceTypes", specs_answered, op);
}

static void image_answered(int status, const char *body, size_t len, const char *code,
                           const pp_error_t *err, void *data)
{
    op_t *op = data;
    pp__aws_image_entry_t *img = op->img;
    (void)code;
    pp_error_t e = {0};
    if (status < 0) {
        e = *err;
        pp_error_wrap(&e, "root device of image `%s`", img->image_id);
        lazy_done(&img->lazy, status, &e);
        return;
    }
    int r = pp__aws_parse_image(body, len, img->image_id, &img->info);
    if (r < 0) {
        pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, r == -ENOENT ? -ENOENT : -EBADMSG,
                            "ec2 `DescribeImages`: %s `%s`",
                            r == -ENOENT ? "no such image" : "cannot read what it says of",
                            img->image_id);
        lazy_done(&img->lazy, e.code, &e);
        return;
    }
    lazy_done(&img->lazy, 0, NULL);
}

static int load_image(op_t *op)
{
    pp__aws_query_t q;
    pp__aws_query_init(&q, "DescribeImages", PP_AWS_EC2_VERSION);
    pp__aws_query_add(&q, "ImageId.1", op->img->image_id);
    return pp__aws_ec2_call(op->st, &q, "DescribeImages", image_answered, op);
}

static pp__aws_image_entry_t *image_entry(st_t *st, const char *image)
{
    for (pp__aws_image_entry_t *e = st->images; e != NULL; e = e->next)
        if (strcmp(e->image_id, image) == 0)
            return e;
    pp__aws_image_entry_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    snprintf(e->image_id, sizeof(e->image_id), "%s", image);
    e->next = st->images;
    st->images = e;
    return e;
}

/* --- create ------------------------------------------------------------------------ */

static void create_run(op_t *op);
static void create_wait_ip(op_t *op);
static void create_cleanup(op_t *op);

/* Fails the create; what it may have made is terminated first. The caller
 * adds which instance it was. */
static void create_fail(op_t *op, int status, const pp_error_t *err)
{
    if (err != &op->err)
        op->err = *err;
    op->status = status;
    create_cleanup(op);
}

static void cleanup_done(op_t *op, int status, const pp_error_t *err, const char *id)
{
    if (status < 0 && status != -ENOENT) {
        /* The first error is the one that matters; say what is left. */
        char more[PP_ERROR_MAX];
        snprintf(more, sizeof(more),
                 "; instance `%.40s` may be left (%.300s): cleanup at restart "
                 "removes it",
                 id, err ? err->message : uv_strerror(status));
        size_t n = strlen(op->err.message);
        snprintf(op->err.message + n, sizeof(op->err.message) - n, "%s", more);
        PP_WARN(COMP, "instance `%s` of sandbox `%s` could not be terminated: %s", id,
                op->sandbox_id, err ? err->message : uv_strerror(status));
    }
}

static void terminate_answered(int status, const char *body, size_t len, const char *code,
                               const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)body;
    (void)len;
    if (strcmp(code, "InvalidInstanceID.NotFound") == 0)
        status = 0;
    const char *id = op->have_inst ? op->inst.id : op->orphans.items[op->next_orphan - 1].id;
    cleanup_done(op, status, err, id);
    if (op->have_inst) {
        op->have_inst = 0;
        op_end(op, op->status);
        return;
    }
    create_cleanup(op);
}

static void terminate_for_cleanup(op_t *op, const char *id)
{
    PP_INFO(COMP, "terminating instance `%s` of sandbox `%s` after a failed create", id,
            op->sandbox_id);
    pp__aws_query_t q;
    pp__aws_query_init(&q, "TerminateInstances", PP_AWS_EC2_VERSION);
    pp__aws_query_add(&q, "InstanceId.1", id);
    int r = pp__aws_ec2_call(op->st, &q, "TerminateInstances", terminate_answered, op);
    if (r < 0) {
        cleanup_done(op, r, NULL, id);
        op_end(op, op->status);
    }
}

static void orphans_answered(int status, const char *body, size_t len, const char *code,
                             const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)code;
    if (status == 0 && pp__aws_parse_instances(body, len, &op->orphans) < 0)
        status = -EBADMSG;
    if (status < 0) {
        cleanup_done(op, status, err, "with this sandbox's client token");
        op_end(op, op->status);
        return;
    }
    op->next_orphan = 0;
    create_cleanup(op);
}

/* After a failure: terminate the instance we know of; else, if RunInstances
 * was sent, the ones carrying our ClientToken; then end. */
static void create_cleanup(op_t *op)
{
    if (op->have_inst) {
        terminate_for_cleanup(op, op->inst.id);
        return;
    }
    if (!op->run_sent) {
        op_end(op, op->status);
        return;
    }
    if (!op->orphans_asked) {
        op->orphans_asked = 1;
        pp__aws_query_t q;
        pp__aws_query_init(&q, "DescribeInstances", PP_AWS_EC2_VERSION);
        pp__aws_query_add(&q, "Filter.1.Name", "client-token");
        pp__aws_query_add(&q, "Filter.1.Value.1", op->token);
        int r = pp__aws_ec2_call(op->st, &q, "DescribeInstances", orphans_answered, op);
        if (r < 0) {
            cleanup_done(op, r, NULL, "with this sandbox's client token");
            op_end(op, op->status);
        }
        return;
    }
    while (op->next_orphan < op->orphans.n) {
        const pp__aws_instance_t *o = &op->orphans.items[op->next_orphan++];
        if (strcmp(o->state, "terminated") != 0 && strcmp(o->state, "shutting-down") != 0) {
            terminate_for_cleanup(op, o->id);
            return;
        }
    }
    op_end(op, op->status);
}

static void create_select(op_t *op);

static void create_image(op_t *op)
{
    st_t *st = op->st;
    const char *image = op->image[0] ? op->image : st->cfg.image_id;
    if (st->cfg.root_volume_gib == 0 || image[0] == '\0') {
        create_run(op);
        return;
    }
    if (op->img == NULL && (op->img = image_entry(st, image)) == NULL) {
        pp_error_t e;
        pp_error_set(&e, -ENOMEM, "out of memory");
        create_fail(op, -ENOMEM, &e);
        return;
    }
    if (lazy_wait(op, &op->img->lazy, load_image, create_run))
        create_run(op);
}

static void create_select(op_t *op)
{
    st_t *st = op->st;
    const pp__aws_config_t *c = &st->cfg;
    if (c->use_launch_template) {
        snprintf(op->type, sizeof(op->type), "%s", "(launch template)");
        create_image(op);
        return;
    }
    pp_instance_type_want_t want = {.machine_type = op->machine_type,
                                    .vcpus = op->vcpus,
                                    .memory_mib = op->memory_mib,
                                    .gpus = op->gpus};
    if (pp_instance_type_needs_specs(&want) &&
        !lazy_wait(op, &st->specs_lazy, load_specs, create_select))
        return;
    const char *allowed[256];
    for (size_t i = 0; i < c->ninstance_types && i < PP_ARRAY_SIZE(allowed); i++)
        allowed[i] = c->instance_types[i];
    pp_instance_type_list_t list = {.setting = "PODVM_INSTANCE_TYPES",
                                    .allowed = allowed,
                                    .nallowed = c->ninstance_types,
                                    .default_type = c->instance_type,
                                    .specs = st->specs,
                                    .nspecs = st->nspecs};
    pp_error_t e = {0};
    int r = pp_instance_type_select(&list, &want, op->type, sizeof(op->type), &e);
    if (r < 0) {
        create_fail(op, r, &e);
        return;
    }
    create_image(op);
}

static void add_run_params(op_t *op, pp__aws_query_t *q)
{
    st_t *st = op->st;
    const pp__aws_config_t *c = &st->cfg;
    pp__aws_query_add(q, "MinCount", "1");
    pp__aws_query_add(q, "MaxCount", "1");
    pp__aws_query_add(q, "ClientToken", op->token);
    pp__aws_query_add(q, "UserData", op->user_data);
    if (c->use_launch_template) {
        pp__aws_query_add(q, "LaunchTemplate.LaunchTemplateName", c->launch_template);
    } else {
        pp__aws_query_add(q, "ImageId", op->image[0] ? op->image : c->image_id);
        pp__aws_query_add(q, "InstanceType", op->type);
        if (c->key_name[0] != '\0')
            pp__aws_query_add(q, "KeyName", c->key_name);
        if (c->use_public_ip) {
            /* Interface 0 gets a public address; subnet and groups move there. */
            pp__aws_query_add(q, "NetworkInterface.1.DeviceIndex", "0");
            pp__aws_query_add(q, "NetworkInterface.1.AssociatePublicIpAddress", "true");
            pp__aws_query_add(q, "NetworkInterface.1.DeleteOnTermination", "true");
            if (c->subnet_id[0] != '\0')
                pp__aws_query_add(q, "NetworkInterface.1.SubnetId", c->subnet_id);
            for (size_t i = 0; i < c->nsg_ids; i++)
                pp__aws_query_addf(q, c->sg_ids[i], "NetworkInterface.1.SecurityGroupId.%zu",
                                   i + 1);
        } else {
            if (c->subnet_id[0] != '\0')
                pp__aws_query_add(q, "SubnetId", c->subnet_id);
            for (size_t i = 0; i < c->nsg_ids; i++)
                pp__aws_query_addf(q, c->sg_ids[i], "SecurityGroupId.%zu", i + 1);
        }
        if (!c->disable_cvm)
            pp__aws_query_add(q, "CpuOptions.AmdSevSnp", "enabled");
    }
    /* IMDSv2 only: the pod VM reads its user data with a session token. */
    pp__aws_query_add(q, "MetadataOptions.HttpTokens", "required");
    pp__aws_query_add(q, "MetadataOptions.HttpEndpoint", "enabled");
    if (op->img != NULL && op->img->lazy.state == 2) {
        unsigned gib = c->root_volume_gib;
        if (op->img->info.root_size_gib > gib)
            gib = op->img->info.root_size_gib; /* never smaller than the image */
        char size[16];
        snprintf(size, sizeof(size), "%u", gib);
        pp__aws_query_add(q, "BlockDeviceMapping.1.DeviceName", op->img->info.root_device);
        pp__aws_query_add(q, "BlockDeviceMapping.1.Ebs.VolumeSize", size);
    }
    size_t t = 1;
    pp__aws_query_add(q, "TagSpecification.1.ResourceType", "instance");
    const char *fixed[][2] = {
        {"Name", op->name}, {PP_AWS_TAG_SANDBOX, op->sandbox_id}, {PP_AWS_TAG_NODE, op->node}};
    for (size_t i = 0; i < PP_ARRAY_SIZE(fixed); i++) {
        if (fixed[i][1][0] == '\0')
            continue;
        pp__aws_query_addf(q, fixed[i][0], "TagSpecification.1.Tag.%zu.Key", t);
        pp__aws_query_addf(q, fixed[i][1], "TagSpecification.1.Tag.%zu.Value", t++);
    }
    for (size_t i = 0; i < c->ntags; i++) {
        pp__aws_query_addf(q, c->tags[i].key, "TagSpecification.1.Tag.%zu.Key", t);
        pp__aws_query_addf(q, c->tags[i].value, "TagSpecification.1.Tag.%zu.Value", t++);
    }
}

static int gone(const char *state)
{
    return strcmp(state, "terminated") == 0 || strcmp(state, "shutting-down") == 0;
}

static void run_answered(int status, const char *body, size_t len, const char *code,
                         const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)code;
    if (status < 0) {
        create_fail(op, status, err);
        return;
    }
    pp__aws_instances_t l;
    pp_error_t e = {0};
    if (pp__aws_parse_instances(body, len, &l) < 0 || l.n != 1) {
        if (l.items != NULL)
            pp__aws_instances_free(&l);
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EBADMSG,
                            "ec2 `RunInstances`: the answer does not hold one instance");
        create_fail(op, -EBADMSG, &e);
        return;
    }
    op->inst = l.items[0];
    pp__aws_instances_free(&l);
    if (gone(op->inst.state)) {
        /* The token was used before, by an instance since terminated. */
        pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -ESTALE,
                            "instance `%s` made for sandbox `%s` earlier is %s; a sandbox is "
                            "started once",
                            op->inst.id, op->sandbox_id, op->inst.state);
        op->run_sent = 0;
        create_fail(op, -ESTALE, &e);
        return;
    }
    op->have_inst = 1;
    PP_INFO(COMP, "instance `%s` (`%s`, %s) for sandbox `%s` is %s", op->inst.id, op->name,
            op->type, op->sandbox_id, op->inst.state);
    op->ip_deadline = uv_now(op->st->p->loop) + op->st->cfg.ip_wait_ms;
    create_wait_ip(op);
}

static void create_run(op_t *op)
{
    pp__aws_query_t q;
    pp__aws_query_init(&q, "RunInstances", PP_AWS_EC2_VERSION);
    add_run_params(op, &q);
    int r = pp__aws_ec2_call(op->st, &q, "RunInstances", run_answered, op);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "ec2 `RunInstances`: %s", uv_strerror(r));
        create_fail(op, r, &e);
        return;
    }
    op->run_sent = 1;
}

static void create_poll(op_t *op);

static void describe_answered(int status, const char *body, size_t len, const char *code,
                              const pp_error_t *err, void *data)
{
    op_t *op = data;
    /* A new instance may not be visible yet: keep asking. */
    if (status < 0 && strcmp(code, "InvalidInstanceID.NotFound") != 0) {
        create_fail(op, status, err);
        return;
    }
    if (status == 0) {
        pp__aws_instances_t l;
        if (pp__aws_parse_instances(body, len, &l) == 0) {
            for (size_t i = 0; i < l.n; i++)
                if (strcmp(l.items[i].id, op->inst.id) == 0)
                    op->inst = l.items[i];
            pp__aws_instances_free(&l);
        }
    }
    if (gone(op->inst.state)) {
        pp_error_t e;
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -ECANCELED,
                            "instance `%s` is %s before it got an address", op->inst.id,
                            op->inst.state);
        op->have_inst = 0;
        op->run_sent = 0;
        create_fail(op, -ECANCELED, &e);
        return;
    }
    create_wait_ip(op);
}

static void create_poll(op_t *op)
{
    pp__aws_query_t q;
    pp__aws_query_init(&q, "DescribeInstances", PP_AWS_EC2_VERSION);
    pp__aws_query_add(&q, "InstanceId.1", op->inst.id);
    int r = pp__aws_ec2_call(op->st, &q, "DescribeInstances", describe_answered, op);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "ec2 `DescribeInstances`: %s", uv_strerror(r));
        create_fail(op, r, &e);
    }
}

static void create_wait_ip(op_t *op)
{
    st_t *st = op->st;
    const char *ip = st->cfg.use_public_ip ? op->inst.public_ip : op->inst.private_ip;
    if (ip[0] != '\0' && strcmp(ip, "0.0.0.0") != 0) {
        pp_instance_t *r = &op->result;
        snprintf(r->id, sizeof(r->id), "%s", op->inst.id);
        snprintf(r->name, sizeof(r->name), "%s", op->name);
        snprintf(r->ip, sizeof(r->ip), "%s", ip);
        snprintf(r->sandbox_id, sizeof(r->sandbox_id), "%s", op->sandbox_id);
        PP_INFO(COMP, "instance `%s` of sandbox `%s` has address %s", op->inst.id, op->sandbox_id,
                ip);
        op->have_inst = 0;
        op_end(op, 0);
        return;
    }
    uint64_t now = uv_now(st->p->loop);
    if (now >= op->ip_deadline) {
        pp_error_t e;
        pp_error_set_status(&e, PP_GRPC_DEADLINE_EXCEEDED, -ETIMEDOUT,
                            "instance `%s` got no %s address in %" PRIu64 " ms", op->inst.id,
                            st->cfg.use_public_ip ? "public" : "private", st->cfg.ip_wait_ms);
        create_fail(op, -ETIMEDOUT, &e);
        return;
    }
    uint64_t wait = st->cfg.poll_ms;
    if (now + wait > op->ip_deadline)
        wait = op->ip_deadline - now;
    after(op, wait, create_poll);
}

static int aws_create(pp_provider_t *p, const pp_instance_spec_t *spec, pp_provider_create_cb cb,
                      void *data)
{
    st_t *st = p->state;
    if (cb == NULL)
        return -EINVAL;
    int rc =
        pp_instance_spec_check(spec, sizeof(((op_t *)0)->sandbox_id), sizeof(((op_t *)0)->name),
                               sizeof(((op_t *)0)->image), PP_AWS_USER_DATA_MAX);
    if (rc < 0)
        return rc;
    const char *node = spec->node_name ? spec->node_name : p->node_name;
    char token[65];
    pp_buf_t b64;
    pp_buf_init(&b64, 0);
    int r = pp_base64_encode(spec->user_data ? spec->user_data : "", spec->user_data_len, &b64);
    if (r == 0)
        r = pp_buf_append_byte(&b64, 0);
    if (r == 0)
        r = pp__aws_client_token(node, spec->sandbox_id, token);
    op_t *op = r == 0 ? op_new(st, OP_CREATE) : NULL;
    if (op == NULL) {
        pp_buf_free(&b64);
        return r < 0 ? r : -ENOMEM;
    }
    size_t len;
    op->user_data = (char *)pp_buf_steal(&b64, &len);
    memcpy(op->token, token, sizeof(token));
    op->create_cb = cb;
    op->data = data;
    snprintf(op->sandbox_id, sizeof(op->sandbox_id), "%s", spec->sandbox_id);
    snprintf(op->name, sizeof(op->name), "%s", spec->instance_name);
    snprintf(op->node, sizeof(op->node), "%s", node ? node : "");
    snprintf(op->machine_type, sizeof(op->machine_type), "%s",
             spec->machine_type ? spec->machine_type : "");
    snprintf(op->image, sizeof(op->image), "%s", spec->image ? spec->image : "");
    op->vcpus = spec->vcpus;
    op->memory_mib = spec->memory_mib;
    op->gpus = spec->gpus;
    PP_INFO(COMP, "creating instance `%s` for sandbox `%s`", op->name, op->sandbox_id);
    begin(op, create_select);
    return 0;
}

/* --- delete ------------------------------------------------------------------------ */

static void delete_answered(int status, const char *body, size_t len, const char *code,
                            const pp_error_t *err, void *data)
{
    op_t *op = data;
    if (status < 0 && strcmp(code, "InvalidInstanceID.NotFound") != 0) {
        op->err = *err;
        op_end(op, status);
        return;
    }
    char state[32] = "";
    if (status == 0)
        pp__aws_parse_terminate(body, len, op->id, state, sizeof(state));
    PP_INFO(COMP, "instance `%s` terminated (%s)", op->id, state[0] ? state : "not found");
    op_end(op, 0);
}

static void delete_unknown(op_t *op)
{
    op_end(op, 0);
}

static void delete_start(op_t *op)
{
    pp__aws_query_t q;
    pp__aws_query_init(&q, "TerminateInstances", PP_AWS_EC2_VERSION);
    pp__aws_query_add(&q, "InstanceId.1", op->id);
    call(op, &q, "TerminateInstances", delete_answered);
}

static int aws_delete(pp_provider_t *p, const char *instance_id, pp_provider_delete_cb cb,
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
    /* Not an EC2 instance id: no such instance, so it is deleted already. */
    if (!pp__aws_instance_id_valid(instance_id)) {
        after(op, 0, delete_unknown);
        return 0;
    }
    snprintf(op->id, sizeof(op->id), "%s", instance_id);
    PP_INFO(COMP, "terminating instance `%s`", op->id);
    begin(op, delete_start);
    return 0;
}

/* --- list --------------------------------------------------------------------------- */

static void list_page(op_t *op);

static void list_answered(int status, const char *body, size_t len, const char *code,
                          const pp_error_t *err, void *data)
{
    op_t *op = data;
    (void)code;
    if (status < 0) {
        op->err = *err;
        op_end(op, status);
        return;
    }
    pp__aws_instances_t l;
    int r = pp__aws_parse_instances(body, len, &l);
    if (r < 0) {
        pp_error_set_status(&op->err, PP_GRPC_UNAVAILABLE, r,
                            "ec2 `DescribeInstances`: the answer cannot be read");
        op_end(op, r);
        return;
    }
    for (size_t i = 0; i < l.n; i++) {
        const pp__aws_instance_t *in = &l.items[i];
        if (gone(in->state) || in->sandbox_id[0] == '\0')
            continue;
        if (op->n == op->cap) {
            size_t nc = op->cap ? op->cap * 2 : 16;
            pp_instance_t *v = realloc(op->insts, nc * sizeof(*v));
            if (v == NULL) {
                pp__aws_instances_free(&l);
                pp_error_set(&op->err, -ENOMEM, "out of memory");
                op_end(op, -ENOMEM);
                return;
            }
            op->insts = v;
            op->cap = nc;
        }
        pp_instance_t *o = &op->insts[op->n++];
        memset(o, 0, sizeof(*o));
        snprintf(o->id, sizeof(o->id), "%s", in->id);
        snprintf(o->name, sizeof(o->name), "%.63s", in->name);
        snprintf(o->ip, sizeof(o->ip), "%s",
                 op->st->cfg.use_public_ip ? in->public_ip : in->private_ip);
        snprintf(o->sandbox_id, sizeof(o->sandbox_id), "%.*s", PP_SANDBOX_ID_MAX, in->sandbox_id);
    }
    snprintf(op->next_token, sizeof(op->next_token), "%s", l.next_token);
    pp__aws_instances_free(&l);
    if (op->next_token[0] != '\0' && ++op->pages < MAX_LIST_PAGES) {
        list_page(op);
        return;
    }
    op_end(op, 0);
}

static void list_page(op_t *op)
{
    static const char *const live[] = {"pending", "running", "stopping", "stopped"};
    const char *node = op->st->p->node_name;
    pp__aws_query_t q;
    pp__aws_query_init(&q, "DescribeInstances", PP_AWS_EC2_VERSION);
    pp__aws_query_add(&q, "Filter.1.Name", "tag-key");
    pp__aws_query_add(&q, "Filter.1.Value.1", PP_AWS_TAG_SANDBOX);
    pp__aws_query_add(&q, "Filter.2.Name", "instance-state-name");
    for (size_t i = 0; i < PP_ARRAY_SIZE(live); i++)
        pp__aws_query_addf(&q, live[i], "Filter.2.Value.%zu", i + 1);
    if (node != NULL && node[0] != '\0') {
        pp__aws_query_add(&q, "Filter.3.Name", "tag:" PP_AWS_TAG_NODE);
        pp__aws_query_add(&q, "Filter.3.Value.1", node);
    }
    pp__aws_query_add(&q, "MaxResults", "1000");
    if (op->next_token[0] != '\0')
        pp__aws_query_add(&q, "NextToken", op->next_token);
    call(op, &q, "DescribeInstances", list_answered);
}

static int aws_list(pp_provider_t *p, pp_provider_list_cb cb, void *data)
{
    if (cb == NULL)
        return -EINVAL;
    op_t *op = op_new(p->state, OP_LIST);
    if (op == NULL)
        return -ENOMEM;
    op->list_cb = cb;
    op->data = data;
    begin(op, list_page);
    return 0;
}

/* --- start and stop ------------------------------------------------------------------- */

static int aws_init(pp_provider_t *p, pp_error_t *err)
{
    st_t *st = p->state;
    st->p = p;
    int r = pp__aws_config_check(&st->cfg, err);
    if (r < 0) {
        pp__aws_config_free(&st->cfg);
        return r;
    }
    const pp__aws_config_t *c = &st->cfg;
    pp_http_config_t hc = {
        .name = "aws",
        .ca_bundle = c->ca_bundle[0] ? c->ca_bundle : NULL,
        .rate = c->rate,
        .burst = c->burst,
        .max_attempts = c->max_attempts,
        .backoff_base_ms = c->backoff_base_ms,
        .backoff_max_ms = c->backoff_max_ms,
        .timeout_ms = c->request_timeout_ms,
        .attempt_timeout_ms = c->attempt_timeout_ms,
        .max_response = PP_AWS_XML_MAX,
        .user_agent = "peerpod-cloud-api-adaptor",
        .classify = pp__aws_http_classify,
        .metrics = p->metrics,
    };
    r = pp_http_new(p->loop, &hc, &st->http, err);
    if (r < 0) {
        pp__aws_config_free(&st->cfg);
        return r;
    }
    st->creds.mode = c->cred_mode;
    if (c->cred_mode == PP_AWS_CREDS_STATIC) {
        /* The config keeps its copy; the signer reads this one. */
        st->creds.access_key = strdup(c->access_key);
        st->creds.secret_key = strdup(c->secret_key);
        st->creds.session_token = c->session_token[0] ? strdup(c->session_token) : NULL;
        if (st->creds.access_key == NULL || st->creds.secret_key == NULL ||
            (c->session_token[0] && st->creds.session_token == NULL)) {
            pp__aws_creds_clear(&st->creds);
            pp_http_free(st->http);
            pp__aws_config_free(&st->cfg);
            return pp_error_set(err, -ENOMEM, "out of memory");
        }
    }
    pp__aws_discover_init(st);
    static const char *const modes[] = {"access keys", "web identity", "instance role (IMDSv2)"};
    PP_INFO(COMP,
            "region `%s`, endpoint %s, credentials from %s, image `%s`, type `%s` (%zu allowed), "
            "%s, API rate %g/s burst %u",
            c->region[0] ? c->region : "(from instance metadata)",
            c->region[0] ? c->ec2.url : "(after the region)", modes[c->cred_mode],
            c->use_launch_template ? "(launch template)" : c->image_id, c->instance_type,
            c->ninstance_types, c->disable_cvm ? "no CVM" : "SEV-SNP", c->rate, c->burst);
    return 0;
}

static void aws_fini(pp_provider_t *p)
{
    st_t *st = p->state;
    if (st->ops_in_flight > 0)
        PP_WARN(COMP, "closing with %u operations in flight", st->ops_in_flight);
    pp_http_free(st->http);
    st->http = NULL;
    pp__aws_creds_clear(&st->creds);
    pp__aws_config_free(&st->cfg);
    free(st->specs);
    while (st->images != NULL) {
        pp__aws_image_entry_t *n = st->images->next;
        free(st->images);
        st->images = n;
    }
}

const struct pp_provider_ops pp_provider_aws_ops = {
    .name = "aws",
    .state_size = sizeof(pp__aws_state_t),
    .user_data_max = PP_AWS_USER_DATA_MAX,
    .settings = &pp__aws_settings,
    .init = aws_init,
    .create_instance = aws_create,
    .delete_instance = aws_delete,
    .list_instances = aws_list,
    .fini = aws_fini,
};

_Static_assert(offsetof(pp__aws_state_t, cfg) == 0, "the settings' offsets are into the config");
