/* Credentials for EC2 calls: static keys from the environment; STS
 * AssumeRoleWithWebIdentity with the projected token file; or the instance
 * role over IMDSv2. Fetched credentials are refreshed before they expire
 * (five minutes before, or halfway for short lifetimes), one refresh at a
 * time, with every caller that needs them waiting on it. Never logged. */
#include "providers/aws/aws.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

typedef struct token_read_s {
    uv_work_t work;
    pp__aws_state_t *st;
    char *token;
    int status;
    char path[PATH_MAX];
} token_read_t;

/* On the threadpool: the token file may sit on any file system. */
static void token_read_work(uv_work_t *w)
{
    token_read_t *t = container_of(w, token_read_t, work);
    int fd = open(t->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        t->status = -errno;
        return;
    }
    char *buf = malloc(TOKEN_FILE_MAX + 1);
    size_t len = 0;
    ssize_t n = 0;
    while (buf != NULL && len < TOKEN_FILE_MAX &&
           (n = read(fd, buf + len, TOKEN_FILE_MAX - len)) > 0)
        len += (size_t)n;
    close(fd);
    if (buf == NULL) {
        t->status = -ENOMEM;
        return;
    }
    if (n < 0 || len == TOKEN_FILE_MAX) {
        t->status = n < 0 ? -EIO : -EFBIG;
        OPENSSL_cleanse(buf, len);
        free(buf);
        return;
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        len--;
    buf[len] = '\0';
    if (len == 0) {
        t->status = -ENODATA;
        free(buf);
        return;
    }
    t->token = buf;
}

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

static void token_read_after(uv_work_t *w, int status)
{
    token_read_t *t = container_of(w, token_read_t, work);
    pp__aws_state_t *st = t->st;
    pp_error_t e = {0};
    if (status < 0)
        t->status = status;
    if (t->status < 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, t->status,
                            "web identity credentials: `AWS_WEB_IDENTITY_TOKEN_FILE` `%s`: %s",
                            t->path, uv_strerror(t->status));
        int s = t->status;
        free(t);
        finish(st, s, &e);
        return;
    }
    pp__aws_query_t q;
    pp__aws_query_init(&q, "AssumeRoleWithWebIdentity", PP_AWS_STS_VERSION);
    pp__aws_query_add(&q, "RoleArn", st->cfg.role_arn);
    pp__aws_query_add(&q, "RoleSessionName", st->cfg.session_name);
    pp__aws_query_add(&q, "WebIdentityToken", t->token);
    OPENSSL_cleanse(t->token, strlen(t->token));
    free(t->token);
    free(t);
    int r = pp__aws_sts_call(st, &q, "AssumeRoleWithWebIdentity", sts_answered, st);
    if (r < 0) {
        pp_error_set(&e, r, "web identity credentials: %s", uv_strerror(r));
        finish(st, r, &e);
    }
}

static int refresh_web_identity(pp__aws_state_t *st)
{
    token_read_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->st = st;
    snprintf(t->path, sizeof(t->path), "%s", st->cfg.token_file);
    int r = uv_queue_work(st->p->loop, &t->work, token_read_work, token_read_after);
    if (r < 0)
        free(t);
    return r;
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
    size_t l = strcspn(body, "\r\n");
    static const char role_chars[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+=,.@-_";
    if (l == 0 || l >= sizeof(st->creds.imds_role) || l > len || strspn(body, role_chars) != l) {
        pp_error_t e;
        pp_error_set_status(&e, PP_GRPC_FAILED_PRECONDITION, -ENOENT,
                            "instance role credentials: this instance has no IAM role");
        finish(st, -ENOENT, &e);
        return;
    }
    memcpy(st->creds.imds_role, body, l);
    st->creds.imds_role[l] = '\0';
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
    if (len == 0 || len >= sizeof(st->creds.imds_token) || strpbrk(body, "\r\n") != NULL) {
        pp_error_t e;
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EBADMSG,
                            "instance role credentials: imds: bad session token");
        finish(st, -EBADMSG, &e);
        return;
    }
    memcpy(st->creds.imds_token, body, len);
    st->creds.imds_token[len] = '\0';
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
