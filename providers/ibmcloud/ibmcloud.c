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
    pp__ibm_op_end(op, op->status);
}

/* Fails the create; what it may have made is deleted first. */
void pp__ibm_create_fail(op_t *op, int status, const pp_error_t *err)
{
    if (err != &op->err)
        op->err = *err;
    op->status = status;
    if (!op->may_exist) {
        pp__ibm_op_end(op, status);
        return;
    }
    op->may_exist = 0;
    if (op->inst.id[0] != '\0') {
        PP_INFO(COMP, "deleting instance `%s` of sandbox `%s` after a failed create", op->name,
                op->sandbox_id);
        pp__ibm_del_start(op, op->inst.id, cleanup_done);
        return;
    }
    cleanup_lookup(op);
}

static void create_start(op_t *op)
{
    if (pp__ibm_lazy_wait(op, &op->st->cat.lazy, pp__ibm_load_catalog, create_select))
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
        pp__ibm_create_fail(op, r, &e);
        return;
    }
    const pp__ibm_profile_t *pr = NULL;
    for (size_t i = 0; i < cat->nprofiles; i++)
        if (strcmp(cat->profiles[i].spec.name, type) == 0)
            pr = &cat->profiles[i];
    if (pr == NULL) {
        pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -ENOENT, "profile `%s` is unknown",
                            type);
        pp__ibm_create_fail(op, -ENOENT, &e);
        return;
    }
    op->prof = *pr;
    op->mode = pp__ibm_mode_for(&st->d, pr->arch);
    /* The name's rule, and what the cloud says the profile runs. */
    if ((r = pp__ibm_profile_fits("the pod's profile", type, op->mode, &e)) < 0) {
        pp__ibm_create_fail(op, r, &e);
        return;
    }
    if (op->mode == PP_IBM_TDX && pr->modes_listed && !pr->tdx) {
        pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -EINVAL,
                            "profile `%s` does not offer the confidential compute mode `tdx`",
                            type);
        pp__ibm_create_fail(op, -EINVAL, &e);
        return;
    }
    if (op->image_ann[0] != '\0') {
        if ((op->ann = pp__ibm_ann_entry(st, op->image_ann)) == NULL) {
            pp_error_set(&e, -ENOMEM, "out of memory");
            pp__ibm_create_fail(op, -ENOMEM, &e);
            return;
        }
        if (pp__ibm_lazy_wait(op, &op->ann->lazy, pp__ibm_load_ann, create_image))
            create_image(op);
        return;
    }
    const pp__ibm_image_t *img = pp__ibm_select_image(cat, pr, op->mode, &e);
    if (img == NULL) {
        pp__ibm_create_fail(op, -ENOENT, &e);
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
        pp__ibm_create_fail(op, r, &e);
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
    pp__ibm_op_vpc(op, "GET", "/instances", q, NULL, "vpc `instances.list`", adopt_listed,
                   pp__ibm_create_fail);
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
        pp__ibm_create_fail(op, status, err);
        return;
    }
    pp_error_t e;
    if (pp__ibm_parse_instance(body, len, &op->inst) < 0) {
        pp__ibm_unreadable(&e, "vpc `instances.create`");
        pp__ibm_create_fail(op, -EBADMSG, &e);
        return;
    }
    op->deadline = pp__ibm_now_ms(op) + st->cfg.create_timeout_ms;
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
        pp__ibm_create_fail(op, -ENOMEM, &e);
        return;
    }
    PP_INFO(COMP, "creating instance `%s` (%s, %s) for sandbox `%s`", op->name, op->prof.spec.name,
            pp__ibm_mode_name(op->mode), op->sandbox_id);
    op->may_exist = 1;
    pp__ibm_op_vpc(op, "POST", "/instances", NULL, body, "vpc `instances.create`", posted,
                   pp__ibm_create_fail);
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
        pp__ibm_create_fail(op, status, err);
        return;
    }
    pp__ibm_owner_t o;
    if (pp__ibm_parse_volume_owner(body, len, &o) < 0) {
        pp__ibm_unreadable(&e, "vpc `volumes.get`");
        pp__ibm_create_fail(op, -EBADMSG, &e);
        return;
    }
    if (strcasecmp(o.sandbox, op->sandbox_id) != 0) {
        pp_error_set_status(&e, PP_GRPC_ALREADY_EXISTS, -EEXIST,
                            "instance name `%s` is taken by %s%s%s", op->name,
                            o.sandbox[0] ? "sandbox `" : "an instance that is no pod VM", o.sandbox,
                            o.sandbox[0] ? "`" : "");
        op->may_exist = 0; /* not ours: never deleted here */
        op->inst.id[0] = '\0';
        pp__ibm_create_fail(op, -EEXIST, &e);
        return;
    }
    if (strcmp(op->inst.status, "deleting") == 0) {
        pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -ESTALE,
                            "instance `%s` made for sandbox `%s` earlier is being deleted; a "
                            "sandbox is started once",
                            op->name, op->sandbox_id);
        op->may_exist = 0;
        pp__ibm_create_fail(op, -ESTALE, &e);
        return;
    }
    PP_INFO(COMP, "instance `%s` of sandbox `%s` exists already: taken", op->name, op->sandbox_id);
    op->may_exist = 1;
    if (op->deadline == 0)
        op->deadline = pp__ibm_now_ms(op) + op->st->cfg.create_timeout_ms;
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
        pp__ibm_create_fail(op, status, err);
        return;
    }
    pp__ibm_instances_t l;
    if (pp__ibm_parse_instances(body, len, &l) < 0) {
        pp__ibm_unreadable(&e, "vpc `instances.list`");
        pp__ibm_create_fail(op, -EBADMSG, &e);
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
        pp__ibm_create_fail(op, -EAGAIN, &e);
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
        pp__ibm_create_fail(op, -EEXIST, &e);
        return;
    }
    char path[160];
    snprintf(path, sizeof(path), "/volumes/%s", op->inst.volume_id);
    pp__ibm_op_vpc(op, "GET", path, NULL, NULL, "vpc `volumes.get`", adopt_owner,
                   pp__ibm_create_fail);
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
        pp__ibm_create_fail(op, cls.err, &e);
        return;
    }
    if (strcmp(in->status, "deleting") == 0 || strcmp(in->status, "stopping") == 0 ||
        strcmp(in->status, "stopped") == 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -ECANCELED,
                            "instance `%s` is %s before it got its addresses", op->name,
                            in->status);
        pp__ibm_create_fail(op, -ECANCELED, &e);
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
    uint64_t now = pp__ibm_now_ms(op);
    if (now >= op->deadline) {
        pp_error_set_status(&e, PP_GRPC_DEADLINE_EXCEEDED, -ETIMEDOUT,
                            "instance `%s` got no address in %" PRIu64 " ms (%s)", op->name,
                            op->st->cfg.create_timeout_ms, in->status);
        pp__ibm_create_fail(op, -ETIMEDOUT, &e);
        return;
    }
    uint64_t wait = op->st->cfg.poll_ms;
    if (now + wait > op->deadline)
        wait = op->deadline - now;
    pp__ibm_after(op, wait, create_get);
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
        pp__ibm_create_fail(op, -ECANCELED, &e);
        return;
    }
    if (status < 0) {
        pp__ibm_create_fail(op, status, err);
        return;
    }
    char id[PP_IBM_ID_MAX];
    snprintf(id, sizeof(id), "%s", op->inst.id);
    if (pp__ibm_parse_instance(body, len, &op->inst) < 0 || strcmp(op->inst.id, id) != 0) {
        snprintf(op->inst.id, sizeof(op->inst.id), "%s", id);
        pp__ibm_unreadable(&e, "vpc `instances.get`");
        pp__ibm_create_fail(op, -EBADMSG, &e);
        return;
    }
    create_check(op);
}

static void create_get(op_t *op)
{
    char path[160];
    snprintf(path, sizeof(path), "/instances/%s", op->inst.id);
    pp__ibm_op_vpc(op, "GET", path, NULL, NULL, "vpc `instances.get`", create_got,
                   pp__ibm_create_fail);
}

/* --- the floating IP ------------------------------------------------------------------- */

static void fip_listed(int status, long http, const char *body, size_t len, const char *code,
                       const pp_error_t *err, void *data);

static void fip_look(op_t *op)
{
    char path[160];
    snprintf(path, sizeof(path), "/instances/%s/network_interfaces", op->inst.id);
    pp__ibm_op_vpc(op, "GET", path, NULL, NULL, "vpc `instance_network_interfaces.list`",
                   fip_listed, pp__ibm_create_fail);
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
        pp__ibm_create_fail(op, status, err);
        return;
    }
    char id[PP_IBM_ID_MAX];
    if (pp__ibm_parse_fip(body, len, id, op->fip_address) < 0) {
        pp__ibm_unreadable(&e, "vpc `floating_ips.create`");
        pp__ibm_create_fail(op, -EBADMSG, &e);
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
        pp__ibm_create_fail(op, status, err);
        return;
    }
    pp__ibm_instance_t nics;
    if (pp__ibm_parse_nics(body, len, &nics) < 0 || nics.nnics == 0) {
        pp__ibm_unreadable(&e, "vpc `instance_network_interfaces.list`");
        pp__ibm_create_fail(op, -EBADMSG, &e);
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
        pp__ibm_create_fail(op, -ENOMEM, &e);
        return;
    }
    pp__ibm_op_vpc(op, "POST", "/floating_ips", NULL, s, "vpc `floating_ips.create`", fip_made,
                   pp__ibm_create_fail);
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
        pp__ibm_create_fail(op, status, err);
        return;
    }
    char msg[256];
    int r = pp__ibm_parse_tag_results(body, len, msg, sizeof(msg));
    if (r == -EIO) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EIO,
                            "global tagging: the tags of instance `%s` were not attached: %s",
                            op->name, msg);
        pp__ibm_create_fail(op, -EIO, &e);
        return;
    }
    if (r < 0) {
        pp__ibm_unreadable(&e, "global tagging `attach`");
        pp__ibm_create_fail(op, r, &e);
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
    pp__ibm_op_end(op, 0);
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
            pp__ibm_unreadable(&e, "vpc `instances.get` (no crn)");
        else
            pp_error_set(&e, -ENOMEM, "out of memory");
        pp__ibm_create_fail(op, e.code, &e);
        return;
    }
    snprintf(url, sizeof(url), "%s/v3/tags/attach?tag_type=user", d->tagging);
    pp__ibm_op_call(op, "POST", url, s, "global tagging `attach`", tagged, pp__ibm_create_fail);
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
        pp__ibm_op_end(op, op->status);
        return;
    }
    if (status < 0) {
        cleanup_done(op, status, err);
        return;
    }
    pp__ibm_owner_t o;
    if (pp__ibm_parse_volume_owner(body, len, &o) < 0) {
        pp_error_t e;
        pp__ibm_unreadable(&e, "vpc `volumes.get`");
        cleanup_done(op, -EBADMSG, &e);
        return;
    }
    if (strcasecmp(o.sandbox, op->sandbox_id) != 0) {
        pp__ibm_op_end(op, op->status);
        return;
    }
    PP_INFO(COMP, "deleting instance `%s` of sandbox `%s` after a failed create", op->name,
            op->sandbox_id);
    pp__ibm_del_start(op, op->inst.id, cleanup_done);
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
        pp__ibm_unreadable(&e, "vpc `instances.list`");
        cleanup_done(op, -EBADMSG, &e);
        return;
    }
    if (l.n == 0 || l.items[0].volume_id[0] == '\0') {
        pp__ibm_instances_free(&l);
        pp__ibm_op_end(op, op->status);
        return;
    }
    op->inst = l.items[0];
    pp__ibm_instances_free(&l);
    char path[160];
    snprintf(path, sizeof(path), "/volumes/%s", op->inst.volume_id);
    pp__ibm_op_vpc(op, "GET", path, NULL, NULL, "vpc `volumes.get`", cleanup_owner, cleanup_done);
}

static void cleanup_lookup(op_t *op)
{
    char q[512];
    snprintf(q, sizeof(q), "name=%s&vpc.id=%s", op->name, op->st->cfg.vpc_id);
    pp__ibm_op_vpc(op, "GET", "/instances", q, NULL, "vpc `instances.list`", cleanup_listed,
                   cleanup_done);
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
    op_t *op = ud ? pp__ibm_op_new(st, OP_CREATE) : NULL;
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
    .delete_instance = pp__ibm_delete,
    .list_instances = pp__ibm_list,
    .fini = ibm_fini,
};
