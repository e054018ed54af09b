/* What the ibmcloud provider loads once: the catalog (the allowed profiles'
 * sizes and architectures, the images', the zone's dedicated host and group),
 * and the images pods name in annotations. */
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
    pp__ibm_lazy_done(&cat->lazy, status, err);
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
            pp__ibm_unreadable(&e, "vpc `instance_profiles.get`");
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
                pp__ibm_unreadable(&e, "vpc `images.get`");
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
            pp__ibm_unreadable(&e, what);
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
        pp__ibm_lazy_done(&cat->lazy, 0, NULL);
        return 0;
    }
    int r = pp__ibm_vpc_url(st, path, NULL, url, sizeof(url));
    if (r < 0)
        return r;
    return pp__ibm_call(st, "GET", url, NULL, what, catalog_answered, op);
}

int pp__ibm_load_catalog(op_t *op)
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
        pp__ibm_lazy_done(&a->lazy, status, &e);
        return;
    }
    char id[PP_IBM_ID_MAX];
    snprintf(id, sizeof(id), "%s", a->img.id);
    if (pp__ibm_parse_image(body, len, &a->img) < 0) {
        snprintf(a->img.id, sizeof(a->img.id), "%s", id);
        pp__ibm_unreadable(&e, "vpc `images.get`");
        pp__ibm_lazy_done(&a->lazy, -EBADMSG, &e);
        return;
    }
    pp__ibm_lazy_done(&a->lazy, 0, NULL);
}

int pp__ibm_load_ann(op_t *op)
{
    char url[2048], path[256];
    snprintf(path, sizeof(path), "/images/%s", op->ann->img.id);
    int r = pp__ibm_vpc_url(op->st, path, NULL, url, sizeof(url));
    if (r < 0)
        return r;
    return pp__ibm_call(op->st, "GET", url, NULL, "vpc `images.get`", ann_answered, op);
}

pp__ibm_image_entry_t *pp__ibm_ann_entry(st_t *st, const char *id)
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
