/* The node's own settings from the instance metadata service (IMDSv2), as
 * upstream's provider takes them when they are unset: the region
 * (placement/region), the subnet and the security groups of the node's
 * first interface (network/interfaces/macs/<mac>/subnet-id and
 * security-group-ids), and its key pair (public-keys, `0=<name>`).
 *
 * Asked once, at init, on the loop; every operation waits for the answer.
 * Without a region nothing can be signed: when it cannot be had, each
 * operation fails naming AWS_REGION and why, and the next one asks again.
 * A subnet, security groups or key pair that cannot be had are left unset
 * with a warning (EC2 then uses the default subnet and group), as upstream
 * does. */
#include "providers/aws/aws.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "util/grpc_codes.h"
#include "util/log.h"

#define COMP "aws"
#define META "/latest/meta-data/"

enum step { S_TOKEN, S_MAC, S_REGION, S_SUBNET, S_SGS, S_KEY, S_DONE };

static const char *const step_names[] = {
    [S_TOKEN] = "session token",     [S_MAC] = "mac",
    [S_REGION] = "placement/region", [S_SUBNET] = "subnet-id",
    [S_SGS] = "security-group-ids",  [S_KEY] = "public-keys",
};

static int run(pp__aws_state_t *st);

/* Ends a round: every waiter gets its result. */
static void finish(pp__aws_state_t *st, int status, const pp_error_t *err)
{
    pp__aws_discovery_t *dv = &st->discovery;
    dv->state = status < 0 ? PP_AWS_DISCOVER_TODO : PP_AWS_DISCOVER_DONE;
    OPENSSL_cleanse(dv->token, sizeof(dv->token));
    pp__aws_waiter_t *w = dv->waiters;
    dv->waiters = NULL;
    while (w != NULL) {
        pp__aws_waiter_t *next = w->next;
        w->cb(status, err, w->data);
        w = next;
    }
}

/* The region is what matters: without it, the round fails. */
static void region_missing(pp__aws_state_t *st, const char *why)
{
    pp_error_t e;
    pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -EHOSTUNREACH,
                        "`AWS_REGION` is not set and the instance metadata service did not give "
                        "it: %s",
                        why);
    PP_WARN(COMP, "%s", e.message);
    finish(st, e.code, &e);
}

/* security-group-ids: the groups replace the (empty) setting's. */
static int take_groups(pp__aws_config_t *c, const char *body, size_t len)
{
    char(*ids)[64];
    size_t n;
    int r = pp__aws_imds_read_groups(body, len, &ids, &n);
    if (r < 0)
        return r;
    free(c->sg_ids);
    c->sg_ids = ids;
    c->nsg_ids = n;
    return 0;
}

static void answered(int status, const char *body, size_t len, const char *code,
                     const pp_error_t *err, void *data)
{
    pp__aws_state_t *st = data;
    pp__aws_discovery_t *dv = &st->discovery;
    pp__aws_config_t *c = &st->cfg;
    (void)code;
    enum step s = (enum step)dv->step;
    char why[PP_ERROR_MAX];
    if (status < 0) {
        snprintf(why, sizeof(why), "%s", err != NULL ? err->message : uv_strerror(status));
    } else {
        int r = 0;
        switch (s) {
        case S_TOKEN:
            r = pp__aws_imds_read(PP_AWS_IMDS_TOKEN, body, len, dv->token, sizeof(dv->token));
            if (r == 0 && strlen(dv->token) < sizeof(st->creds.imds_token)) {
                /* The instance role's credentials use it too. */
                memcpy(st->creds.imds_token, dv->token, strlen(dv->token) + 1);
                st->creds.imds_token_until_ms = uv_now(st->p->loop) + PP_AWS_IMDS_TOKEN_LIFE_MS;
            }
            break;
        case S_MAC:
            r = pp__aws_imds_read(PP_AWS_IMDS_MAC, body, len, dv->mac, sizeof(dv->mac));
            break;
        case S_REGION:
            r = pp__aws_imds_read(PP_AWS_IMDS_REGION, body, len, c->region, sizeof(c->region));
            if (r == 0)
                PP_INFO(COMP, "region `%s`, from the instance metadata service", c->region);
            break;
        case S_SUBNET:
            r = pp__aws_imds_read(PP_AWS_IMDS_ID, body, len, c->subnet_id, sizeof(c->subnet_id));
            if (r == 0)
                PP_INFO(COMP, "subnet `%s`, from the instance metadata service", c->subnet_id);
            break;
        case S_SGS:
            r = take_groups(c, body, len);
            if (r == 0)
                PP_INFO(COMP,
                        "%zu security groups (first `%s`), from the instance metadata "
                        "service",
                        c->nsg_ids, c->sg_ids[0]);
            break;
        case S_KEY:
            r = pp__aws_imds_read(PP_AWS_IMDS_KEY_NAME, body, len, c->key_name,
                                  sizeof(c->key_name));
            if (r == 0)
                PP_INFO(COMP, "key pair `%s`, from the instance metadata service", c->key_name);
            break;
        case S_DONE:
            break;
        }
        if (r == -ENOMEM) {
            pp_error_t e;
            pp_error_set(&e, r, "instance metadata: out of memory");
            finish(st, r, &e);
            return;
        }
        if (r < 0) {
            snprintf(why, sizeof(why), "imds `%s`: the answer is not one", step_names[s]);
            status = r;
        }
    }
    if (status < 0) {
        switch (s) {
        case S_TOKEN:
            if (dv->need & PP_AWS_NEED_REGION) {
                region_missing(st, why);
                return;
            }
            PP_WARN(COMP,
                    "instance metadata: %s; the subnet, security groups and key pair stay "
                    "unset",
                    why);
            dv->need = 0;
            break;
        case S_MAC:
            PP_WARN(COMP, "instance metadata: %s; the subnet and security groups stay unset", why);
            dv->need &= ~(unsigned)(PP_AWS_NEED_SUBNET | PP_AWS_NEED_SGS);
            break;
        case S_REGION:
            region_missing(st, why);
            return;
        case S_SUBNET:
        case S_SGS:
            PP_WARN(COMP, "instance metadata: %s; `%s` stays unset", why,
                    s == S_SUBNET ? "AWS_SUBNET_ID" : "AWS_SG_IDS");
            break;
        case S_KEY:
            PP_INFO(COMP, "no key pair from the instance metadata service (%s)", why);
            break;
        case S_DONE:
            break;
        }
    }
    if (s == S_REGION && status == 0) {
        pp_error_t e;
        int r = pp__aws_config_endpoints(c, &e);
        if (r < 0) {
            finish(st, r, &e);
            return;
        }
    }
    dv->step = s + 1;
    int r = run(st);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "instance metadata: %s", uv_strerror(r));
        finish(st, r, &e);
    }
}

/* The next question, or the end of the round. */
static int run(pp__aws_state_t *st)
{
    pp__aws_discovery_t *dv = &st->discovery;
    char path[256];
    for (;; dv->step++) {
        switch ((enum step)dv->step) {
        case S_TOKEN:
            /* One the credentials fetched is as good. */
            if (st->creds.imds_token[0] != '\0' &&
                st->creds.imds_token_until_ms > uv_now(st->p->loop)) {
                snprintf(dv->token, sizeof(dv->token), "%s", st->creds.imds_token);
                continue;
            }
            return pp__aws_imds_call(st, "/latest/api/token", NULL, answered, st);
        case S_MAC:
            if (!(dv->need & (PP_AWS_NEED_SUBNET | PP_AWS_NEED_SGS)))
                continue;
            return pp__aws_imds_call(st, META "mac", dv->token, answered, st);
        case S_REGION:
            if (!(dv->need & PP_AWS_NEED_REGION))
                continue;
            return pp__aws_imds_call(st, META "placement/region", dv->token, answered, st);
        case S_SUBNET:
        case S_SGS:
            if (!(dv->need & (dv->step == S_SUBNET ? PP_AWS_NEED_SUBNET : PP_AWS_NEED_SGS)))
                continue;
            snprintf(path, sizeof(path), META "network/interfaces/macs/%s/%s", dv->mac,
                     step_names[dv->step]);
            return pp__aws_imds_call(st, path, dv->token, answered, st);
        case S_KEY:
            if (!(dv->need & PP_AWS_NEED_KEY))
                continue;
            return pp__aws_imds_call(st, META "public-keys", dv->token, answered, st);
        case S_DONE:
            dv->need = 0;
            finish(st, 0, NULL);
            return 0;
        }
    }
}

void pp__aws_discover_init(pp__aws_state_t *st)
{
    const pp__aws_config_t *c = &st->cfg;
    pp__aws_discovery_t *dv = &st->discovery;
    dv->need = 0;
    if (c->region[0] == '\0')
        dv->need |= PP_AWS_NEED_REGION;
    if (c->subnet_id[0] == '\0')
        dv->need |= PP_AWS_NEED_SUBNET;
    if (c->nsg_ids == 0)
        dv->need |= PP_AWS_NEED_SGS;
    if (c->key_name[0] == '\0')
        dv->need |= PP_AWS_NEED_KEY;
    dv->state = dv->need ? PP_AWS_DISCOVER_TODO : PP_AWS_DISCOVER_DONE;
}

int pp__aws_discover_ensure(pp__aws_state_t *st, pp__aws_waiter_t *w)
{
    pp__aws_discovery_t *dv = &st->discovery;
    if (dv->state == PP_AWS_DISCOVER_DONE)
        return 1;
    if (w != NULL) {
        w->next = dv->waiters;
        dv->waiters = w;
    }
    if (dv->state == PP_AWS_DISCOVER_RUNNING)
        return 0;
    dv->state = PP_AWS_DISCOVER_RUNNING;
    dv->step = S_TOKEN;
    int r = run(st);
    if (r < 0) {
        if (w != NULL)
            dv->waiters = w->next;
        dv->state = PP_AWS_DISCOVER_TODO;
        return r;
    }
    return 0;
}
