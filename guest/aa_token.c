/* GetToken: the KBS protocol's token, kept and reused until it expires. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "aa_int.h"
#include "pbmsg.h"
#include "util/cleanup.h"
#include "util/log.h"

#define LOG "attestation-agent"

/* A token this close to its expiry is not handed out any more. */
#define TOKEN_MARGIN_S 10

struct guest__token_wait_s {
    pp_ttrpc_call_t *call;
    guest__token_wait_t *next;
};

typedef struct token_cache_s {
    char *token;
    char *pem;
    int64_t exp;
} token_cache_t;

typedef struct token_state_s {
    token_cache_t cache;
} token_state_t;

static token_state_t *state_of(guest_aa_t *aa)
{
    return (token_state_t *)aa->token_state;
}

static token_cache_t *cache_of(guest_aa_t *aa)
{
    return &state_of(aa)->cache;
}

static void cache_clear(token_cache_t *c)
{
    if (c->token != NULL) {
        explicit_bzero(c->token, strlen(c->token));
        free(c->token);
    }
    if (c->pem != NULL) {
        explicit_bzero(c->pem, strlen(c->pem));
        free(c->pem);
    }
    c->token = c->pem = NULL;
    c->exp = 0;
}

static int cache_valid(const token_cache_t *c)
{
    return c->token != NULL && (c->exp == 0 || c->exp > (int64_t)time(NULL) + TOKEN_MARGIN_S);
}

static int aa_evidence(void *ctx, const uint8_t *rd, size_t len, guest_kbs_evidence_done_cb done,
                       void *data)
{
    return guest_aa_evidence(ctx, rd, len, done, data);
}

int guest__aa_token_init(guest_aa_t *aa, pp_error_t *err)
{
    aa->token_state = calloc(1, sizeof(token_state_t));
    if (aa->token_state == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    if (aa->cfg.kbs.url == NULL || aa->attester.ops == NULL)
        return 0;
    guest_kbs_opts_t ko = {
        .url = aa->cfg.kbs.url,
        .ca_pem = aa->cfg.kbs.cert,
        .key_alg = aa->cfg.kbs.key_alg,
        .tee = aa->attester.ops->name,
        .initdata = aa->initdata,
        .evidence = aa_evidence,
        .evidence_ctx = aa,
    };
    int r = guest_kbs_new(aa->loop, &ko, &aa->kbs, err);
    if (r == 0)
        PP_INFO(LOG, "KBS at `%s`", aa->cfg.kbs.url);
    return r;
}

void guest__aa_token_close(guest_aa_t *aa)
{
    guest_kbs_t *k = aa->kbs;
    aa->kbs = NULL;
    guest_kbs_free(k); /* an attestation in flight calls back with -ECANCELED */
}

int guest__aa_token_idle(const guest_aa_t *aa)
{
    return !aa->attesting;
}

void guest__aa_token_fini(guest_aa_t *aa)
{
    if (aa->token_state != NULL)
        cache_clear(cache_of(aa));
    free(aa->token_state);
    aa->token_state = NULL;
}

static void reply_token(pp_ttrpc_call_t *call, const token_cache_t *c)
{
    json_t *j = json_pack("{s:s,s:s}", "token", c->token, "tee_keypair", c->pem);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (j != NULL) {
        /* jansson's copies hold the key: clear them. */
        explicit_bzero((char *)json_string_value(json_object_get(j, "tee_keypair")),
                       strlen(c->pem));
        explicit_bzero((char *)json_string_value(json_object_get(j, "token")), strlen(c->token));
        json_decref(j);
    }
    uint8_t *msg = NULL;
    size_t len = 0;
    if (text == NULL || guest_pb_one_bytes(1, text, strlen(text), &msg, &len) < 0) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "GetToken: out of memory");
    } else {
        pp_ttrpc_call_reply(call, msg, len);
    }
    if (text != NULL) {
        explicit_bzero(text, strlen(text));
        free(text);
    }
    if (msg != NULL) {
        explicit_bzero(msg, len);
        free(msg);
    }
}

static void on_attested(int status, char *token, guest_teekey_t *key, const pp_error_t *err,
                        void *data)
{
    guest_aa_t *aa = data;
    token_cache_t *c = cache_of(aa);
    aa->attesting = 0;
    pp_error_t e = {0};
    if (status == 0) {
        cache_clear(c);
        c->token = token;
        c->pem = guest_teekey_pem(key);
        guest_teekey_free(key);
        if (c->pem == NULL || guest_jwt_exp(token, &c->exp) < 0) {
            cache_clear(c);
            status = pp_error_set(&e, -ENOMEM, "GetToken: cannot keep the token");
            err = &e;
        } else {
            PP_INFO(LOG, "attested to the KBS; token valid %s%lld s",
                    c->exp ? "for " : "without expiry",
                    c->exp ? (long long)(c->exp - time(NULL)) : 0);
        }
    } else {
        PP_WARN(LOG, "attestation failed: %s", err->message);
    }
    guest__token_wait_t *w = aa->waiters;
    aa->waiters = NULL;
    while (w != NULL) {
        guest__token_wait_t *next = w->next;
        if (status == 0)
            reply_token(w->call, c);
        else
            pp_ttrpc_call_fail(w->call, pp_error_grpc_status(err), "GetToken: %s", err->message);
        free(w);
        w = next;
    }
    guest__aa_maybe_finish_close(aa);
}

void guest__aa_on_get_token(pp_ttrpc_call_t *call, void *data)
{
    guest_aa_t *aa = data;
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    guest_pb_bytes_t type;
    if (guest_pb_bytes(req->payload, req->payload_len, 1, &type) < 0) {
        pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT, "GetToken: malformed request");
        return;
    }
    if (type.n == 7 && memcmp(type.p, "coco_as", 7) == 0) {
        pp_ttrpc_call_fail(call, PP_GRPC_UNIMPLEMENTED,
                           "GetToken: token type `coco_as` is not served here");
        return;
    }
    if (type.n != 3 || memcmp(type.p, "kbs", 3) != 0) {
        pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT,
                           "GetToken: unsupported token type (expected `kbs`)");
        return;
    }
    if (aa->kbs == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_FAILED_PRECONDITION, "GetToken: %s",
                           aa->attester.ops == NULL ? aa->attester.why
                                                    : "no [token_configs.kbs] in aa.toml");
        return;
    }
    if (cache_valid(cache_of(aa))) {
        reply_token(call, cache_of(aa));
        return;
    }
    guest__token_wait_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "GetToken: out of memory");
        return;
    }
    w->call = call;
    w->next = aa->waiters;
    aa->waiters = w;
    if (aa->attesting)
        return;
    int r = guest_kbs_attest(aa->kbs, on_attested, aa);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "cannot start the attestation: %s", strerror(-r));
        aa->attesting = 1;
        on_attested(r, NULL, NULL, &e, aa);
        return;
    }
    aa->attesting = 1;
}
