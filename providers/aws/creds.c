/* Credentials for EC2 calls: static keys from the environment; STS
 * AssumeRoleWithWebIdentity with the projected token file; or the instance
 * role over IMDSv2. Fetched credentials are refreshed before they expire
 * (five minutes before, or halfway for short lifetimes), one refresh at a
 * time, with every caller that needs them waiting on it. Never logged. */
#include "providers/aws/aws.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/log.h"

#define COMP            "aws"
#define TOKEN_FILE_MAX  16384
#define IMDS_CREDS_PATH "/latest/meta-data/iam/security-credentials/"

static void wipe(char **s)
{
    if (*s != NULL) {
        OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

void pp__aws_creds_clear(pp__aws_creds_t *c)
{
    wipe(&c->access_key);
    wipe(&c->secret_key);
    wipe(&c->session_token);
    OPENSSL_cleanse(c->imds_token, sizeof(c->imds_token));
    c->imds_token_until_ms = 0;
}

void pp__aws_creds_invalidate(pp__aws_state_t *st)
{
    pp_token_cache_invalidate(&st->creds.cache);
}

/* Wakes every waiter with the refresh's result. */
static void finish(pp__aws_state_t *st, int status, const pp_error_t *err)
{
    pp_token_cache_done(&st->creds.cache, status, st->creds.expiration, err);
}

static void install(pp__aws_state_t *st, pp__aws_sts_creds_t *n)
{
    pp__aws_creds_t *c = &st->creds;
    wipe(&c->access_key);
    wipe(&c->secret_key);
    wipe(&c->session_token);
    c->access_key = n->access_key;
    c->secret_key = n->secret_key;
    c->session_token = n->session_token;
    c->expiration = n->expiration;
    n->access_key = n->secret_key = n->session_token = NULL;
    time_t now = time(NULL);
    PP_DEBUG(COMP, "credentials refreshed; valid for %lld s",
             (long long)(c->expiration > now ? c->expiration - now : 0));
}

static void fail(pp__aws_state_t *st, int status, pp_error_t *e, const char *what)
{
    pp_error_wrap(e, "%s", what);
    if (e->status == 0)
        e->status = PP_GRPC_UNAVAILABLE;
    finish(st, status, e);
}

/* --- web identity -------------------------------------------------------------- */

static void sts_answered(int status, const char *body, size_t len, const char *code,
                         const pp_error_t *err, void *data)
{
    pp__aws_state_t *st = data;
    (void)code;
    pp_error_t e = {0};
    if (status < 0) {
        e = *err;
        fail(st, status, &e, "web identity credentials");
        return;
    }
    pp__aws_sts_creds_t n;
    int r = pp__aws_parse_sts(body, len, &n);
    if (r < 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, r,
                            "web identity credentials: sts `AssumeRoleWithWebIdentity`: the "
                            "answer is not a credentials document");
        finish(st, r, &e);
        return;
    }
    install(st, &n);
    finish(st, 0, NULL);
}

static void token_read(int status, char *token, void *data)
{
    pp__aws_state_t *st = data;
    pp_error_t e = {0};
    if (status < 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, status,
                            "web identity credentials: `AWS_WEB_IDENTITY_TOKEN_FILE` `%s`: %s",
                            st->cfg.token_file, uv_strerror(status));
        finish(st, status, &e);
        return;
    }
    pp__aws_query_t q;
    pp__aws_query_init(&q, "AssumeRoleWithWebIdentity", PP_AWS_STS_VERSION);
    pp__aws_query_add(&q, "RoleArn", st->cfg.role_arn);
    pp__aws_query_add(&q, "RoleSessionName", st->cfg.session_name);
    pp__aws_query_add(&q, "WebIdentityToken", token);
    OPENSSL_cleanse(token, strlen(token));
    free(token);
    int r = pp__aws_sts_call(st, &q, "AssumeRoleWithWebIdentity", sts_answered, st);
    if (r < 0) {
        pp_error_set(&e, r, "web identity credentials: %s", uv_strerror(r));
        finish(st, r, &e);
    }
}

static int refresh_web_identity(pp__aws_state_t *st)
{
    return pp_token_file_read(st->p->loop, st->cfg.token_file, TOKEN_FILE_MAX, token_read, st);
}

/* --- IMDSv2 ---------------------------------------------------------------------- */

static int imds_step(pp__aws_state_t *st);

static void imds_failed(pp__aws_state_t *st, int status, const pp_error_t *err)
{
    pp_error_t e = *err;
    fail(st, status, &e, "instance role credentials");
}

static void imds_creds(int status, const char *body, size_t len, const char *code,
                       const pp_error_t *err, void *data)
{
    pp__aws_state_t *st = data;
    (void)code;
    if (status < 0) {
        if (status == -EACCES)
            st->creds.imds_token_until_ms = 0; /* the session token expired */
        imds_failed(st, status, err);
        return;
    }
    pp__aws_sts_creds_t n;
    if (pp__aws_parse_imds_creds(body, len, &n) < 0) {
        pp_error_t e;
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EBADMSG,
                            "instance role credentials: imds: the answer is not a credentials "
                            "document");
        finish(st, -EBADMSG, &e);
        return;
    }
    install(st, &n);
    finish(st, 0, NULL);
}

static void imds_role(int status, const char *body, size_t len, const char *code,
                      const pp_error_t *err, void *data)
{
    pp__aws_state_t *st = data;
    (void)code;
    if (status < 0) {
        if (status == -EACCES)
            st->creds.imds_token_until_ms = 0;
        imds_failed(st, status, err);
        return;
    }
    /* The first line names the role. */
    if (pp__aws_imds_read(PP_AWS_IMDS_ROLE, body, len, st->creds.imds_role,
                          sizeof(st->creds.imds_role)) < 0) {
        pp_error_t e;
        pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -ENOENT,
                            "instance role credentials: this instance has no IAM role");
        finish(st, -ENOENT, &e);
        return;
    }
    int r = imds_step(st);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "instance role credentials: %s", uv_strerror(r));
        finish(st, r, &e);
    }
}

static void imds_token(int status, const char *body, size_t len, const char *code,
                       const pp_error_t *err, void *data)
{
    pp__aws_state_t *st = data;
    (void)code;
    if (status < 0) {
        imds_failed(st, status, err);
        return;
    }
    if (pp__aws_imds_read(PP_AWS_IMDS_TOKEN, body, len, st->creds.imds_token,
                          sizeof(st->creds.imds_token)) < 0) {
        pp_error_t e;
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EBADMSG,
                            "instance role credentials: imds: bad session token");
        finish(st, -EBADMSG, &e);
        return;
    }
    st->creds.imds_token_until_ms = uv_now(st->p->loop) + PP_AWS_IMDS_TOKEN_LIFE_MS;
    int r = imds_step(st);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "instance role credentials: %s", uv_strerror(r));
        finish(st, r, &e);
    }
}

/* The next IMDS call: a session token, the role's name, the credentials. */
static int imds_step(pp__aws_state_t *st)
{
    pp__aws_creds_t *c = &st->creds;
    if (c->imds_token_until_ms <= uv_now(st->p->loop))
        return pp__aws_imds_call(st, "/latest/api/token", NULL, imds_token, st);
    if (c->imds_role[0] == '\0')
        return pp__aws_imds_call(st, IMDS_CREDS_PATH, c->imds_token, imds_role, st);
    char path[512];
    snprintf(path, sizeof(path), IMDS_CREDS_PATH "%s", c->imds_role);
    return pp__aws_imds_call(st, path, c->imds_token, imds_creds, st);
}

/* --- entry point ------------------------------------------------------------------ */

static int creds_fetch(pp_token_cache_t *cache, void *arg)
{
    pp__aws_state_t *st = arg;
    (void)cache;
    return st->creds.mode == PP_AWS_CREDS_WEB_IDENTITY ? refresh_web_identity(st) : imds_step(st);
}

int pp__aws_creds_ensure(pp__aws_state_t *st, pp_token_waiter_t *w)
{
    pp__aws_creds_t *c = &st->creds;
    if (c->mode == PP_AWS_CREDS_STATIC)
        return c->access_key != NULL ? 1 : -EACCES;
    if (c->cache.fetch == NULL)
        pp_token_cache_init(&c->cache, creds_fetch, st);
    return pp_token_cache_ensure(&c->cache, w);
}
