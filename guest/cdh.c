#include "cdh.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "aa.h"
#include "kbs.h"
#include "pbmsg.h"
#include "sealed.h"
#include "ttrpc/ttrpc.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/log.h"

#define LOG "confidential-data-hub"

#define TOKEN_MARGIN_S 10
#define AA_TIMEOUT_NS  (60LL * 1000 * 1000 * 1000)

/* A token and the key it certifies, shared by the requests using it. */
typedef struct bundle_s {
    unsigned refs;
    char *token;
    guest_teekey_t *key;
    int64_t exp;
} bundle_t;

typedef struct req_s req_t;
typedef void (*req_step_cb)(req_t *rq, const uint8_t *plain, size_t len);

struct req_s {
    guest_cdh_t *c;
    pp_ttrpc_call_t *call; /* NULL: a credential provisioned at start */
    size_t cred;           /* which one */
    const char *what;      /* "GetResource", "UnsealSecret" */
    char path[512];        /* the resource being fetched */
    int retried;
    bundle_t *bundle;
    req_step_cb step; /* what to do with the fetched resource */
    guest_sealed_t *sealed;
    req_t *next;
};

struct guest_cdh_s {
    uv_loop_t *loop;
    guest_cdh_cfg_t cfg;
    char *keys_dir;
    pp_ttrpc_server_t *srv;
    guest_kbs_t *kbs;
    bundle_t *bundle;
    req_t *waiting;        /* for a token */
    pp_ttrpc_client_t *aa; /* a GetToken in flight */
    uv_timer_t retry;      /* credentials not provisioned yet */
    int retry_live;
    unsigned cred_round;
    size_t creds_left;
    size_t pending;
    unsigned closing : 1;
    void (*close_cb)(void *);
    void *close_data;
};

uint64_t guest_cdh_kbs_round_trips(const guest_cdh_t *c)
{
    return c->kbs ? guest_kbs_round_trips(c->kbs) : 0;
}

static void bundle_unref(bundle_t *b)
{
    if (b == NULL || --b->refs > 0)
        return;
    explicit_bzero(b->token, strlen(b->token));
    free(b->token);
    guest_teekey_free(b->key);
    free(b);
}

static int bundle_valid(const bundle_t *b)
{
    return b != NULL && (b->exp == 0 || b->exp > (int64_t)time(NULL) + TOKEN_MARGIN_S);
}

static void maybe_finish_close(guest_cdh_t *c);

static void req_free(req_t *rq)
{
    guest_cdh_t *c = rq->c;
    bundle_unref(rq->bundle);
    guest_sealed_free(rq->sealed);
    free(rq);
    c->pending--;
    maybe_finish_close(c);
}

static void cred_done(req_t *rq, const uint8_t *p, size_t n, const pp_error_t *err);

static void req_fail(req_t *rq, const pp_error_t *err)
{
    if (rq->call == NULL) {
        cred_done(rq, NULL, 0, err);
        return;
    }
    PP_WARN(LOG, "%s: %s", rq->what, err->message);
    pp_ttrpc_call_fail(rq->call, pp_error_grpc_status(err), "%s: %s", rq->what, err->message);
    req_free(rq);
}

static void req_failf(req_t *rq, int grpc, int code, const char *msg)
{
    pp_error_t e;
    pp_error_set_status(&e, grpc, code, "%s", msg);
    req_fail(rq, &e);
}

/* Answers with one bytes field and frees the request. */
static void req_reply(req_t *rq, const uint8_t *p, size_t n)
{
    if (rq->call == NULL) {
        cred_done(rq, p, n, NULL);
        return;
    }
    uint8_t *msg;
    size_t len;
    if (guest_pb_one_bytes(1, p, n, &msg, &len) < 0) {
        req_failf(rq, PP_GRPC_RESOURCE_EXHAUSTED, -ENOMEM, "out of memory");
        return;
    }
    pp_ttrpc_call_reply(rq->call, msg, len);
    explicit_bzero(msg, len);
    free(msg);
    req_free(rq);
}

/* ---- tokens from the attestation agent -------------------------------------- */

static void fetch(req_t *rq, int fresh);
static void need_token(req_t *rq);

static void serve_waiting(guest_cdh_t *c, const pp_error_t *err)
{
    req_t *w = c->waiting;
    c->waiting = NULL;
    while (w != NULL) {
        req_t *next = w->next;
        w->next = NULL;
        if (err != NULL)
            req_fail(w, err);
        else
            fetch(w, 1);
        w = next;
    }
}

static void on_aa_closed(pp_ttrpc_client_t *cl, void *data)
{
    guest_cdh_t *c = data;
    (void)cl;
    c->pending--;
    maybe_finish_close(c);
}

static void aa_done(guest_cdh_t *c, const pp_error_t *err)
{
    pp_ttrpc_client_t *cl = c->aa;
    c->aa = NULL;
    pp_ttrpc_client_close(cl, on_aa_closed, c);
    serve_waiting(c, err);
}

/* GetTokenResponse{Token=1}: {"token": JWT, "tee_keypair": PEM}. */
static int take_token(guest_cdh_t *c, const uint8_t *p, size_t n, pp_error_t *err)
{
    guest_pb_bytes_t tok;
    if (guest_pb_bytes(p, n, 1, &tok) < 0)
        return pp_error_set_status(err, PP_GRPC_INTERNAL, -EBADMSG,
                                   "the attestation agent's answer is malformed");
    json_t *j = json_loadb((const char *)tok.p, tok.n, 0, NULL);
    json_t *t = json_object_get(j, "token"), *k = json_object_get(j, "tee_keypair");
    bundle_t *b = calloc(1, sizeof(*b));
    int r = 0;
    if (!json_is_string(t) || !json_is_string(k))
        r = pp_error_set_status(err, PP_GRPC_INTERNAL, -EBADMSG,
                                "the attestation agent's token is not {token, tee_keypair}");
    else if (b == NULL || (b->token = strdup(json_string_value(t))) == NULL)
        r = pp_error_set(err, -ENOMEM, "out of memory");
    else if ((r = guest_teekey_from_pem(json_string_value(k), json_string_length(k), &b->key,
                                        err)) == 0 &&
             guest_jwt_exp(b->token, &b->exp) < 0)
        r = pp_error_set_status(err, PP_GRPC_INTERNAL, -EBADMSG,
                                "the attestation agent's token is not a JWT");
    if (json_is_string(t))
        explicit_bzero((char *)json_string_value(t), json_string_length(t));
    if (json_is_string(k))
        explicit_bzero((char *)json_string_value(k), json_string_length(k));
    json_decref(j);
    if (r < 0) {
        if (b != NULL) {
            b->refs = 1;
            if (b->token == NULL)
                b->token = strdup("");
            if (b->token != NULL)
                bundle_unref(b);
            else
                free(b);
        }
        return r;
    }
    b->refs = 1;
    bundle_unref(c->bundle);
    c->bundle = b;
    return 0;
}

static void on_aa_token(pp_ttrpc_result_t *res, void *data)
{
    guest_cdh_t *c = data;
    pp_error_t err = {0};
    if (res->code != 0)
        pp_error_set_status(
            &err, res->code == PP_GRPC_UNAVAILABLE ? PP_GRPC_UNAVAILABLE : res->code, -EIO,
            "token from the attestation agent: %.*s", (int)res->message.n, res->message.p);
    else if (take_token(c, res->payload, res->payload_len, &err) < 0)
        pp_error_wrap(&err, "token from the attestation agent");
    aa_done(c, err.code ? &err : NULL);
}

static void on_aa_connected(pp_ttrpc_client_t *cl, int status, void *data)
{
    guest_cdh_t *c = data;
    pp_error_t err;
    if (status < 0) {
        pp_error_set_status(&err, PP_GRPC_UNAVAILABLE, status,
                            "cannot reach the attestation agent at `%s`: %s", c->cfg.aa_socket,
                            uv_strerror(status));
        aa_done(c, &err);
        return;
    }
    static const uint8_t req[] = {0x0a, 3, 'k', 'b', 's'}; /* TokenType = "kbs" */
    pp_ttrpc_call_opts_t o = {.service = GUEST_AA_SERVICE,
                              .method = "GetToken",
                              .payload = req,
                              .payload_len = sizeof(req),
                              .timeout_nano = AA_TIMEOUT_NS};
    int r = pp_ttrpc_client_call(cl, &o, on_aa_token, c);
    if (r < 0) {
        pp_error_set_status(&err, PP_GRPC_UNAVAILABLE, r, "GetToken: %s", uv_strerror(r));
        aa_done(c, &err);
    }
}

static void need_token(req_t *rq)
{
    guest_cdh_t *c = rq->c;
    rq->next = c->waiting;
    c->waiting = rq;
    if (c->aa != NULL)
        return;
    pp_error_t err;
    int r = pp_ttrpc_client_new(c->loop, &c->aa);
    if (r == 0) {
        c->pending++; /* the client, until closed */
        r = pp_ttrpc_client_connect_unix(c->aa, c->cfg.aa_socket, on_aa_connected, c);
        if (r < 0) {
            pp_error_set_status(&err, PP_GRPC_UNAVAILABLE, r,
                                "cannot reach the attestation agent at `%s`: %s", c->cfg.aa_socket,
                                uv_strerror(r));
            aa_done(c, &err);
        }
        return;
    }
    c->aa = NULL;
    pp_error_set(&err, r, "out of memory");
    serve_waiting(c, &err);
}

/* ---- resources -------------------------------------------------------------- */

static void on_fetched(int status, long http_status, const uint8_t *plain, size_t len,
                       const pp_error_t *err, void *data)
{
    req_t *rq = data;
    guest_cdh_t *c = rq->c;
    if (status == 0) {
        rq->step(rq, plain, len);
        return;
    }
    if (http_status == 401 && !rq->retried && !c->closing) {
        /* The KBS no longer takes the token: ask for a fresh one, once. */
        rq->retried = 1;
        if (c->bundle == rq->bundle) {
            bundle_unref(c->bundle);
            c->bundle = NULL;
        }
        bundle_unref(rq->bundle);
        rq->bundle = NULL;
        need_token(rq);
        return;
    }
    pp_error_t e = *err;
    pp_error_wrap(&e, "`%s`", rq->path);
    req_fail(rq, &e);
}

/* `fresh`: the token just came from the attestation agent; it is used
 * even when close to its expiry (a KBS may hand out short tokens), as long
 * as it has not expired, so that no request asks for tokens forever. */
static void fetch(req_t *rq, int fresh)
{
    guest_cdh_t *c = rq->c;
    if (fresh && c->bundle != NULL && c->bundle->exp != 0 &&
        c->bundle->exp <= (int64_t)time(NULL)) {
        req_failf(rq, PP_GRPC_UNAVAILABLE, -ETIME,
                  "the attestation agent's token has expired already");
        return;
    }
    if (!(fresh && c->bundle != NULL) && !bundle_valid(c->bundle)) {
        need_token(rq);
        return;
    }
    bundle_unref(rq->bundle);
    rq->bundle = c->bundle;
    rq->bundle->refs++;
    int r =
        guest_kbs_resource(c->kbs, rq->path, rq->bundle->token, rq->bundle->key, on_fetched, rq);
    if (r < 0)
        req_failf(rq, PP_GRPC_UNAVAILABLE, r, "cannot ask the KBS");
}

static req_t *req_new(guest_cdh_t *c, pp_ttrpc_call_t *call, const char *what)
{
    req_t *rq = calloc(1, sizeof(*rq));
    if (rq == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "%s: out of memory", what);
        return NULL;
    }
    rq->c = c;
    rq->call = call;
    rq->what = what;
    c->pending++;
    return rq;
}

static void reply_resource(req_t *rq, const uint8_t *plain, size_t len)
{
    req_reply(rq, plain, len);
}

static int start_fetch(req_t *rq, const char *uri, size_t len, req_step_cb step)
{
    pp_error_t err;
    if (guest_resource_path(uri, len, rq->path, sizeof(rq->path), &err) < 0) {
        pp_error_set_status(&err, PP_GRPC_INVALID_ARGUMENT, err.code, "%s", err.message);
        req_fail(rq, &err);
        return -EINVAL;
    }
    if (rq->c->kbs == NULL) {
        req_failf(rq, PP_GRPC_FAILED_PRECONDITION, -ENODEV, "no KBS configured ([kbc] url)");
        return -ENODEV;
    }
    rq->step = step;
    fetch(rq, 0);
    return 0;
}

static void on_get_resource(pp_ttrpc_call_t *call, void *data)
{
    guest_cdh_t *c = data;
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    guest_pb_bytes_t path;
    if (guest_pb_bytes(req->payload, req->payload_len, 1, &path) < 0) {
        pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT, "GetResource: malformed request");
        return;
    }
    req_t *rq = req_new(c, call, "GetResource");
    if (rq != NULL)
        start_fetch(rq, (const char *)path.p, path.n, reply_resource);
}

/* ---- sealed secrets --------------------------------------------------------- */

static void unseal_with_secret(req_t *rq, const uint8_t *plain, size_t len)
{
    req_reply(rq, plain, len);
}

static void unseal_payload(req_t *rq)
{
    pp_error_t err;
    char uri[1024];
    if (guest_sealed_vault_uri(rq->sealed, uri, sizeof(uri), &err) < 0) {
        req_fail(rq, &err);
        return;
    }
    rq->retried = 0;
    start_fetch(rq, uri, strlen(uri), unseal_with_secret);
}

static void unseal_with_key(req_t *rq, const uint8_t *jwk, size_t len)
{
    pp_error_t err;
    if (guest_sealed_verify(rq->sealed, (const char *)jwk, len, &err) < 0) {
        req_fail(rq, &err);
        return;
    }
    unseal_payload(rq);
}

static void on_unseal(pp_ttrpc_call_t *call, void *data)
{
    guest_cdh_t *c = data;
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    guest_pb_bytes_t secret;
    if (guest_pb_bytes(req->payload, req->payload_len, 1, &secret) < 0) {
        pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT, "UnsealSecret: malformed request");
        return;
    }
    req_t *rq = req_new(c, call, "UnsealSecret");
    if (rq == NULL)
        return;
    pp_error_t err;
    if (guest_sealed_parse((const char *)secret.p, secret.n, &rq->sealed, &err) < 0) {
        req_fail(rq, &err);
        return;
    }
    if (c->cfg.skip_verification) {
        unseal_payload(rq);
        return;
    }
    const char *kid = guest_sealed_kid(rq->sealed);
    if (strncmp(kid, "kbs://", 6) == 0) {
        start_fetch(rq, kid, strlen(kid), unseal_with_key);
        return;
    }
    cleanup_free char *jwk = NULL;
    size_t len;
    if (guest_sealed_local_key(c->keys_dir, kid, &jwk, &len, &err) < 0) {
        req_fail(rq, &err);
        return;
    }
    unseal_with_key(rq, (const uint8_t *)jwk, len);
}

static void on_unimplemented(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    pp_ttrpc_call_fail(call, PP_GRPC_UNIMPLEMENTED, "%.*s is not served by this data hub",
                       (int)req->method.n, req->method.p);
}

static const struct {
    const char *service, *method;
    pp_ttrpc_handler_cb cb;
} methods[] = {
    {"api.GetResourceService", "GetResource", on_get_resource},
    {"api.SealedSecretService", "UnsealSecret", on_unseal},
    {"api.SecureMountService", "SecureMount", on_unimplemented},
    {"api.ImagePullService", "PullImage", on_unimplemented},
};

/* ---- credentials ------------------------------------------------------------ */

/* [[credentials]] of cdh.toml: resources the data hub writes to files at
 * start, as upstream's does (KMS credentials). Only under /run, a tmpfs:
 * nothing fetched reaches a disk in clear. Mode 0600, written whole or not
 * at all. A round fails as a whole and is tried again, 5 s later, up to 24
 * times. */
#define CRED_RETRY_MS 5000
#define CRED_ROUNDS   24

static void cred_round(guest_cdh_t *c);

static void on_cred_retry(uv_timer_t *t)
{
    cred_round(container_of(t, guest_cdh_t, retry));
}

static int write_secret(const char *path, const uint8_t *p, size_t n, pp_error_t *err)
{
    int r = pp_mkdir_parents(path, 0700, err);
    if (r < 0)
        return r;
    return pp_file_write_atomic(path, p, n, 0600, PP_FILE_DURABLE, err);
}

static void cred_done(req_t *rq, const uint8_t *p, size_t n, const pp_error_t *err)
{
    guest_cdh_t *c = rq->c;
    const guest_cred_t *cr = &c->cfg.creds[rq->cred];
    pp_error_t e;
    if (err == NULL && write_secret(cr->path, p, n, &e) < 0)
        err = &e;
    if (err != NULL)
        PP_WARN(LOG, "credential `%s`: %s", cr->resource_uri, err->message);
    else
        PP_INFO(LOG, "credential `%s` provisioned", cr->resource_uri);
    if (err != NULL)
        c->cred_round |= 1u << 31; /* this round failed */
    c->creds_left--;
    req_free(rq);
    if (c->creds_left > 0 || c->closing)
        return;
    if (c->cred_round & (1u << 31)) {
        c->cred_round &= ~(1u << 31);
        if (c->cred_round < CRED_ROUNDS)
            uv_timer_start(&c->retry, on_cred_retry, CRED_RETRY_MS, 0);
        else
            PP_ERR(LOG, "credentials: given up after %u rounds", CRED_ROUNDS);
    }
}

static void cred_round(guest_cdh_t *c)
{
    if (c->closing)
        return;
    c->cred_round++;
    c->creds_left = c->cfg.ncreds;
    for (size_t i = 0; i < c->cfg.ncreds; i++) {
        req_t *rq = calloc(1, sizeof(*rq));
        if (rq == NULL) {
            c->creds_left = 0;
            return;
        }
        rq->c = c;
        rq->cred = i;
        rq->what = "credential";
        c->pending++;
        const char *uri = c->cfg.creds[i].resource_uri;
        start_fetch(rq, uri, strlen(uri), unseal_with_secret);
    }
}

/* ---- life ------------------------------------------------------------------- */

static void free_cdh(guest_cdh_t *c)
{
    bundle_unref(c->bundle);
    guest_cdh_cfg_fini(&c->cfg);
    free(c->keys_dir);
    free(c);
}

static void maybe_finish_close(guest_cdh_t *c)
{
    if (!c->closing || c->pending > 0 || c->srv != NULL)
        return;
    void (*cb)(void *) = c->close_cb;
    void *data = c->close_data;
    free_cdh(c);
    if (cb != NULL)
        cb(data);
}

static void on_server_closed(pp_ttrpc_server_t *srv, void *data)
{
    guest_cdh_t *c = data;
    (void)srv;
    c->srv = NULL;
    maybe_finish_close(c);
}

static void on_retry_closed(uv_handle_t *h)
{
    guest_cdh_t *c = container_of((uv_timer_t *)h, guest_cdh_t, retry);
    c->pending--;
    maybe_finish_close(c);
}

void guest_cdh_close(guest_cdh_t *c, void (*cb)(void *data), void *data)
{
    c->closing = 1;
    c->close_cb = cb;
    c->close_data = data;
    if (c->retry_live) {
        c->retry_live = 0;
        c->pending++;
        uv_close((uv_handle_t *)&c->retry, on_retry_closed);
    }
    guest_kbs_free(c->kbs); /* requests in flight fail with -ECANCELED */
    c->kbs = NULL;
    if (c->srv != NULL)
        pp_ttrpc_server_close(c->srv, 1, on_server_closed, c);
    else
        maybe_finish_close(c);
}

static int copy_cfg(guest_cdh_cfg_t *d, const guest_cdh_cfg_t *s)
{
    guest_cdh_cfg_init(d);
    d->kbc = s->kbc;
    d->kbs.key_alg = s->kbs.key_alg;
    d->skip_verification = s->skip_verification;
    d->socket = strdup(s->socket ? s->socket : GUEST_CDH_SOCKET);
    d->aa_socket = strdup(s->aa_socket ? s->aa_socket : GUEST_AA_SOCKET);
    d->kbs.url = s->kbs.url ? strdup(s->kbs.url) : NULL;
    d->kbs.cert = s->kbs.cert ? strdup(s->kbs.cert) : NULL;
    if (s->ncreds > 0 && (d->creds = calloc(s->ncreds, sizeof(*d->creds))) == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < s->ncreds; i++) {
        d->ncreds++;
        d->creds[i].resource_uri = strdup(s->creds[i].resource_uri);
        d->creds[i].path = strdup(s->creds[i].path);
        if (d->creds[i].resource_uri == NULL || d->creds[i].path == NULL)
            return -ENOMEM;
    }
    return !d->socket || !d->aa_socket || (s->kbs.url && !d->kbs.url) ||
                   (s->kbs.cert && !d->kbs.cert)
               ? -ENOMEM
               : 0;
}

int guest_cdh_start(uv_loop_t *loop, const guest_cdh_opts_t *o, guest_cdh_t **out, pp_error_t *err)
{
    if (o->cfg->kbc == GUEST_KBC_OFFLINE_FS)
        return pp_error_set(err, -ENOTSUP,
                            "`kbc.name`: offline_fs_kbc is not served here; use "
                            "cc_kbc");
    guest_cdh_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    c->loop = loop;
    c->keys_dir = strdup(o->keys_dir ? o->keys_dir : GUEST_CDH_SEALED_KEYS);
    if (copy_cfg(&c->cfg, o->cfg) < 0 || c->keys_dir == NULL) {
        free_cdh(c);
        return pp_error_set(err, -ENOMEM, "out of memory");
    }
    int r = 0;
    if (c->cfg.kbs.url != NULL) {
        guest_kbs_opts_t ko = {.url = c->cfg.kbs.url, .ca_pem = c->cfg.kbs.cert};
        r = guest_kbs_new(loop, &ko, &c->kbs, err);
    }
    if (r == 0 && (r = pp_ttrpc_server_new(loop, &c->srv)) < 0)
        pp_error_set(err, r, "ttrpc server: %s", uv_strerror(r));
    if (r < 0) {
        guest_kbs_free(c->kbs);
        free_cdh(c);
        return r;
    }
    for (size_t i = 0; i < PP_ARRAY_SIZE(methods) && r == 0; i++)
        r = pp_ttrpc_server_register(c->srv, methods[i].service, methods[i].method, methods[i].cb,
                                     c);
    if (r < 0)
        pp_error_set(err, r, "register methods");
    else if ((r = pp_mkdir_parents(c->cfg.socket, 0755, err)) == 0)
        r = pp_ttrpc_server_listen_unix(c->srv, c->cfg.socket, err);
    if (r < 0) {
        guest_cdh_close(c, NULL, NULL);
        return r;
    }
    PP_INFO(LOG, "KBS at `%s`, attestation agent at `%s`",
            c->cfg.kbs.url ? c->cfg.kbs.url : "(none)", c->cfg.aa_socket);
    uv_timer_init(loop, &c->retry);
    c->retry_live = 1;
    if (c->cfg.ncreds > 0)
        cred_round(c);
    *out = c;
    return 0;
}
