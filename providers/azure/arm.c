/* Resource Manager requests: the bearer token on each, the api-version,
 * JSON bodies, one translation of ARM's errors, the remaining-quota headers
 * at debug level, a token that the answer says expired or is invalid
 * fetched anew (and the request sent again, once), and long operations
 * followed through their Azure-AsyncOperation (or Location) URL until they
 * end. The token goes only to the ARM endpoint: a link in an answer that
 * points elsewhere is refused. */
#include "providers/azure/azure.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/log.h"

#define COMP          "azure"
#define POLL_MAX_MS   60000
#define QUOTA_HEADERS 3

/* --- errors ---------------------------------------------------------------------- */

/* Azure AD's and Resource Manager's codes; the rest by the HTTP status
 * (providers/http/errors.h). */
#define E(code, err, grpc, retry) PP_HTTP_ERROR(code, err, PP_GRPC_##grpc, PP_HTTP_ERR_##retry)
static const pp_http_error_map_t codes[] = {
    E("TooManyRequests", -EAGAIN, UNAVAILABLE, RETRY),
    E("RetryableError", -EAGAIN, UNAVAILABLE, RETRY),
    E("AnotherOperationInProgress", -EAGAIN, UNAVAILABLE, RETRY),
    E("InternalServerError", -EIO, UNAVAILABLE, RETRY),
    E("ServiceUnavailable", -EAGAIN, UNAVAILABLE, RETRY),
    E("GatewayTimeout", -ETIMEDOUT, UNAVAILABLE, RETRY),
    E("AllocationFailed", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("ZonalAllocationFailed", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("OverconstrainedAllocationRequest", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("SkuNotAvailable", -ENOSPC, RESOURCE_EXHAUSTED, FINAL),
    E("QuotaExceeded", -EDQUOT, RESOURCE_EXHAUSTED, FINAL),
    E("OperationNotAllowed", -EDQUOT, FAILED_PRECONDITION, FINAL),
    E("AuthorizationFailed", -EPERM, PERMISSION_DENIED, FINAL),
    E("LinkedAuthorizationFailed", -EPERM, PERMISSION_DENIED, FINAL),
    E("AuthenticationFailed", -EACCES, UNAUTHENTICATED, FINAL),
    E("InvalidAuthenticationToken", -EACCES, UNAUTHENTICATED, FINAL),
    E("ExpiredAuthenticationToken", -EACCES, UNAUTHENTICATED, FINAL),
    E("invalid_client", -EACCES, UNAUTHENTICATED, FINAL),
    E("invalid_client_assertion", -EACCES, UNAUTHENTICATED, FINAL),
    E("unauthorized_client", -EACCES, UNAUTHENTICATED, FINAL),
    E("invalid_request", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("invalid_scope", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("SubscriptionNotFound", -ENOENT, FAILED_PRECONDITION, FINAL),
    E("ResourceGroupNotFound", -ENOENT, FAILED_PRECONDITION, FINAL),
    E("ImageNotFound", -ENOENT, FAILED_PRECONDITION, FINAL),
    E("InvalidResourceReference", -ENOENT, FAILED_PRECONDITION, FINAL),
    E("LocationNotAvailableForResourceType", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("InvalidParameter", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("BadRequest", -EINVAL, FAILED_PRECONDITION, FINAL),
    E("ResourceNotFound", -ENOENT, NOT_FOUND, FINAL),
    E("NotFound", -ENOENT, NOT_FOUND, FINAL),
    E("OSProvisioningTimedOut", -ETIMEDOUT, UNAVAILABLE, FINAL),
    E("OSProvisioningInternalError", -EIO, UNAVAILABLE, FINAL),
};
#undef E

void pp__azure_error_classify(const char *code, long http_status, pp_http_error_class_t *out)
{
    pp_http_error_classify(codes, PP_ARRAY_SIZE(codes), code, http_status, out);
}

pp_http_verdict_t pp__azure_http_classify(const pp_http_response_t *resp, void *arg)
{
    (void)arg;
    if (resp->status < 400)
        return PP_HTTP_DEFAULT;
    pp__azure_error_info_t ei;
    if (pp__azure_parse_error(resp->body, resp->body_len, &ei) < 0 || ei.code[0] == '\0')
        return PP_HTTP_DEFAULT;
    pp_http_error_class_t cls;
    pp__azure_error_classify(ei.code, resp->status, &cls);
    return pp_http_error_verdict(&cls, resp->status);
}

int pp__azure_same_origin(const char *arm, const char *url)
{
    /* The origin is everything before the first '/' after "://". */
    const char *s = strstr(arm, "://");
    if (s == NULL)
        return 0;
    const char *slash = strchr(s + 3, '/');
    size_t n = slash ? (size_t)(slash - arm) : strlen(arm);
    return strncasecmp(arm, url, n) == 0 && (url[n] == '/' || url[n] == '\0');
}

/* --- one request ------------------------------------------------------------------- */

typedef struct call_s {
    pp__azure_state_t *st;
    pp_token_waiter_t w;
    char method[8];
    char operation[48]; /* for metrics: the REST API's operation id */
    char *url;
    char *body;
    size_t body_len;
    int auth_retried;
    pp__azure_call_cb cb;
    void *data;
} call_t;

static void call_free(call_t *c)
{
    free(c->url);
    free(c->body);
    free(c);
}

static void fail(call_t *c, int status, const char *code, const pp_error_t *err)
{
    c->cb(status, NULL, code, err, c->data);
    call_free(c);
}

static void log_quota(const call_t *c, const pp_http_response_t *resp)
{
    static const char *const names[QUOTA_HEADERS] = {"x-ms-ratelimit-remaining-subscription-reads",
                                                     "x-ms-ratelimit-remaining-subscription-writes",
                                                     "x-ms-ratelimit-remaining-resource"};
    for (size_t i = 0; i < QUOTA_HEADERS; i++) {
        char v[256];
        if (pp_http_response_header(resp, names[i], v, sizeof(v)) == 0)
            PP_DEBUG(COMP, "%s %s: %s: %s", c->method, c->url, names[i], v);
    }
}

static int send_call(call_t *c);

static void on_answer(int status, const pp_http_response_t *resp, const pp_error_t *herr,
                      void *data)
{
    call_t *c = data;
    pp_error_t e = {0};
    if (status < 0) {
        e = *herr;
        if (status == -ETIMEDOUT)
            e.status = PP_GRPC_DEADLINE_EXCEEDED;
        else if (status != -ECANCELED)
            e.status = PP_GRPC_UNAVAILABLE;
        pp_error_wrap(&e, "azure %s", c->method);
        fail(c, status, "", &e);
        return;
    }
    log_quota(c, resp);
    pp__azure_answer_t ans = {
        .status = resp->status, .body = resp->body, .len = resp->body_len, .resp = resp};
    if (resp->status >= 200 && resp->status < 300) {
        if (resp->status == 204 && strcmp(c->method, "GET") == 0) {
            pp_error_set_status(&e, PP_GRPC_NOT_FOUND, -ENOENT, "azure GET: no content");
            fail(c, -ENOENT, "", &e);
            return;
        }
        c->cb(0, &ans, "", NULL, c->data);
        call_free(c);
        return;
    }
    pp__azure_error_info_t ei;
    pp__azure_parse_error(resp->body, resp->body_len, &ei);
    if (resp->status == 401 && !c->auth_retried &&
        (strcmp(ei.code, "ExpiredAuthenticationToken") == 0 ||
         strcmp(ei.code, "InvalidAuthenticationToken") == 0)) {
        /* Refused as expired or revoked early: a new token, and again. */
        c->auth_retried = 1;
        pp__azure_creds_invalidate(c->st);
        PP_DEBUG(COMP, "%s %s: %s; fetching a new token", c->method, c->url, ei.code);
        int r = send_call(c);
        if (r < 0) {
            pp_error_set(&e, r, "azure %s: credentials: %s", c->method, uv_strerror(r));
            fail(c, r, ei.code, &e);
        }
        return;
    }
    pp_http_error_class_t cls;
    pp__azure_error_classify(ei.code[0] ? ei.code : NULL, resp->status, &cls);
    if (ei.code[0] != '\0')
        pp_error_set_status(&e, cls.grpc, cls.err, "azure %s: HTTP %ld: %s: %s", c->method,
                            resp->status, ei.code, ei.message);
    else
        pp_error_set_status(&e, cls.grpc, cls.err, "azure %s: HTTP %ld", c->method, resp->status);
    fail(c, cls.err, ei.code, &e);
}

static int sign(pp_http_req_t *req, void *arg, pp_error_t *err)
{
    call_t *c = arg;
    const char *tok = c->st->creds.token;
    if (tok == NULL)
        return pp_error_set(err, -EACCES, "no token");
    size_t n = strlen(tok) + sizeof("Bearer ");
    char *v = malloc(n);
    if (v == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    snprintf(v, n, "Bearer %s", tok);
    int r = pp_http_req_add_header(req, "Authorization", v);
    explicit_bzero(v, n);
    free(v);
    return r < 0 ? pp_error_set(err, r, "authorization header: %s", uv_strerror(r)) : 0;
}

/* The REST API's name of a call, for metrics ("VirtualMachines_CreateOrUpdate"):
 * by the resource type after the provider namespace in the path, and the
 * method; a path of a collection (a next page included) is a List. */
static void operation_of(const char *method, const char *url, char *out, size_t outlen)
{
    static const struct {
        const char *kind, *name;
    } kinds[] = {
        {"virtualMachines", "VirtualMachines"},
        {"networkInterfaces", "NetworkInterfaces"},
        {"publicIPAddresses", "PublicIPAddresses"},
        {"disks", "Disks"},
    };
    const char *q = strchr(url, '?');
    size_t len = q ? (size_t)(q - url) : strlen(url);
    if (memmem(url, len, "/operations/", 12) != NULL) {
        snprintf(out, outlen, "AsyncOperation_Get");
        return;
    }
    if (len >= 8 && memcmp(url + len - 8, "/vmSizes", 8) == 0) {
        snprintf(out, outlen, "VirtualMachineSizes_List");
        return;
    }
    const char *prov = NULL;
    for (const char *p = url; (p = memmem(p, len - (size_t)(p - url), "/providers/", 11)) != NULL;
         p += 11)
        prov = p + 11;
    const char *kind = prov ? memchr(prov, '/', len - (size_t)(prov - url)) : NULL;
    if (kind != NULL) {
        kind++;
        const char *end = memchr(kind, '/', len - (size_t)(kind - url));
        size_t klen = end ? (size_t)(end - kind) : len - (size_t)(kind - url);
        for (size_t i = 0; i < PP_ARRAY_SIZE(kinds); i++) {
            if (strlen(kinds[i].kind) == klen && memcmp(kinds[i].kind, kind, klen) == 0) {
                const char *verb = strcmp(method, "PUT") == 0      ? "CreateOrUpdate"
                                   : strcmp(method, "DELETE") == 0 ? "Delete"
                                   : end != NULL                   ? "Get"
                                                                   : "List";
                snprintf(out, outlen, "%s_%s", kinds[i].name, verb);
                return;
            }
        }
    }
    snprintf(out, outlen, "%s", method);
}

static int send_now(call_t *c)
{
    const char *json_hdrs[] = {"Content-Type: application/json", "Accept: application/json", NULL};
    const char *hdrs[] = {"Accept: application/json", NULL};
    pp_http_request_t r = {.method = c->method,
                           .operation = c->operation,
                           .url = c->url,
                           .headers = c->body ? json_hdrs : hdrs,
                           .body = c->body,
                           .body_len = c->body_len,
                           .sign = sign,
                           .sign_arg = c};
    return pp_http_send(c->st->http, &r, on_answer, c, NULL);
}

static void creds_ready(int status, const pp_error_t *err, void *data)
{
    call_t *c = data;
    if (status < 0) {
        fail(c, status, "", err);
        return;
    }
    int r = send_now(c);
    if (r < 0) {
        pp_error_t e;
        pp_error_set(&e, r, "azure %s: %s", c->method, uv_strerror(r));
        fail(c, r, "", &e);
    }
}

static int send_call(call_t *c)
{
    c->w.cb = creds_ready;
    c->w.data = c;
    int r = pp__azure_creds_ensure(c->st, &c->w);
    if (r < 0)
        return r;
    if (r == 0)
        return 0;
    return send_now(c);
}

int pp__azure_arm(pp__azure_state_t *st, const char *method, const char *path,
                  const char *api_version, json_t *body, pp__azure_call_cb cb, void *data)
{
    call_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        json_decref(body);
        return -ENOMEM;
    }
    c->st = st;
    c->cb = cb;
    c->data = data;
    snprintf(c->method, sizeof(c->method), "%s", method);
    int n;
    if (strncmp(path, "http://", 7) == 0 || strncmp(path, "https://", 8) == 0) {
        if (!pp__azure_same_origin(st->d.arm, path)) {
            json_decref(body);
            free(c);
            return -EPERM;
        }
        n = asprintf(&c->url, "%s", path);
    } else {
        n = asprintf(&c->url, "%s%s%sapi-version=%s", st->d.arm, path,
                     strchr(path, '?') ? "&" : "?", api_version);
    }
    if (n < 0) {
        c->url = NULL;
        json_decref(body);
        call_free(c);
        return -ENOMEM;
    }
    operation_of(method, c->url, c->operation, sizeof(c->operation));
    if (body != NULL) {
        c->body = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (c->body == NULL) {
            call_free(c);
            return -ENOMEM;
        }
        c->body_len = strlen(c->body);
    }
    int r = send_call(c);
    if (r < 0)
        call_free(c);
    return r;
}

/* --- long operations ---------------------------------------------------------------- */

typedef struct wait_s {
    pp__azure_state_t *st;
    uv_timer_t timer;
    char method[8];
    char *poll_url;
    int by_location; /* polling the Location URL: 202 means not yet */
    uint64_t deadline;
    int status;
    char code[128];
    pp_error_t err;
    pp__azure_done_cb cb;
    void *data;
} wait_t;

static void wait_closed(uv_handle_t *h)
{
    wait_t *w = container_of((uv_timer_t *)h, wait_t, timer);
    w->cb(w->status, w->code, w->status < 0 ? &w->err : NULL, w->data);
    free(w->poll_url);
    free(w);
}

static void wait_discard(uv_handle_t *h)
{
    free(container_of((uv_timer_t *)h, wait_t, timer));
}

static void wait_end(wait_t *w, int status, const char *code, const pp_error_t *err)
{
    w->status = status;
    snprintf(w->code, sizeof(w->code), "%s", code ? code : "");
    if (err != NULL && err != &w->err)
        w->err = *err;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, wait_closed);
}

static void poll_now(uv_timer_t *t);

/* The next poll after the answer's Retry-After, at least AZURE_POLL_INTERVAL_MS. */
static void poll_later(wait_t *w, const pp_http_response_t *resp)
{
    uint64_t ms = (uint64_t)w->st->cfg.poll_ms;
    char v[64];
    uint64_t ra;
    if (resp != NULL && pp_http_response_header(resp, "Retry-After", v, sizeof(v)) == 0 &&
        pp__http_retry_after(v, time(NULL), &ra) == 0 && ra > ms)
        ms = ra < POLL_MAX_MS ? ra : POLL_MAX_MS;
    uint64_t now = uv_now(w->st->p->loop);
    if (now + ms > w->deadline) {
        pp_error_t e;
        pp_error_set_status(&e, PP_GRPC_DEADLINE_EXCEEDED, -ETIMEDOUT,
                            "azure %s: the operation did not end in %" PRId64 " ms", w->method,
                            w->st->cfg.operation_timeout_ms);
        wait_end(w, -ETIMEDOUT, "", &e);
        return;
    }
    uv_timer_start(&w->timer, poll_now, ms, 0);
}

static void on_poll(int status, const pp__azure_answer_t *ans, const char *code,
                    const pp_error_t *err, void *data)
{
    wait_t *w = data;
    if (status < 0) {
        wait_end(w, status, code, err);
        return;
    }
    if (w->by_location) {
        if (ans->status == 202)
            poll_later(w, ans->resp);
        else
            wait_end(w, 0, "", NULL);
        return;
    }
    char st[32];
    pp__azure_error_info_t ei;
    pp_error_t e = {0};
    if (pp__azure_parse_operation(ans->body, ans->len, st, sizeof(st), &ei) < 0) {
        pp_error_set_status(&e, PP_GRPC_UNAVAILABLE, -EBADMSG,
                            "azure %s: the operation's status cannot be read", w->method);
        wait_end(w, -EBADMSG, "", &e);
        return;
    }
    if (strcmp(st, "Succeeded") == 0) {
        wait_end(w, 0, "", NULL);
        return;
    }
    if (strcmp(st, "Failed") == 0 || strcmp(st, "Canceled") == 0) {
        pp_http_error_class_t cls;
        pp__azure_error_classify(ei.code[0] ? ei.code : NULL, 500, &cls);
        if (cls.retry != PP_HTTP_ERR_FINAL && strcmp(ei.code, "AllocationFailed") != 0)
            cls.grpc = PP_GRPC_UNAVAILABLE;
        pp_error_set_status(&e, cls.grpc, cls.err, "azure %s: operation %s: %s: %s", w->method, st,
                            ei.code[0] ? ei.code : "(no code)", ei.message);
        wait_end(w, cls.err, ei.code, &e);
        return;
    }
    poll_later(w, ans->resp);
}

static void poll_now(uv_timer_t *t)
{
    wait_t *w = container_of(t, wait_t, timer);
    int r = pp__azure_arm(w->st, "GET", w->poll_url, NULL, NULL, on_poll, w);
    if (r < 0) {
        pp_error_t e;
        pp_error_set_status(&e, r == -EPERM ? PP_GRPC_FAILED_PRECONDITION : PP_GRPC_UNAVAILABLE, r,
                            "azure %s: polling the operation: %s", w->method,
                            r == -EPERM ? "its URL is not on the Resource Manager endpoint"
                                        : uv_strerror(r));
        wait_end(w, r, "", &e);
    }
}

static void on_started(int status, const pp__azure_answer_t *ans, const char *code,
                       const pp_error_t *err, void *data)
{
    wait_t *w = data;
    if (status < 0) {
        /* A DELETE of what is gone is done. */
        if (status == -ENOENT && strcmp(w->method, "DELETE") == 0) {
            wait_end(w, 0, "", NULL);
            return;
        }
        wait_end(w, status, code, err);
        return;
    }
    char url[2048];
    if (ans->status == 204 || ans->status == 200) {
        /* Done at once (a PUT that changed nothing, a DELETE of nothing),
         * unless an operation is named. */
        if (pp_http_response_header(ans->resp, "Azure-AsyncOperation", url, sizeof(url)) < 0) {
            wait_end(w, 0, "", NULL);
            return;
        }
    } else if (pp_http_response_header(ans->resp, "Azure-AsyncOperation", url, sizeof(url)) < 0) {
        if (pp_http_response_header(ans->resp, "Location", url, sizeof(url)) < 0) {
            /* 201 or 202 without a way to follow it: taken as done. */
            wait_end(w, 0, "", NULL);
            return;
        }
        w->by_location = 1;
    }
    w->poll_url = strdup(url);
    if (w->poll_url == NULL) {
        pp_error_t e;
        pp_error_set(&e, -ENOMEM, "out of memory");
        wait_end(w, -ENOMEM, "", &e);
        return;
    }
    poll_later(w, ans->resp);
}

int pp__azure_arm_wait(pp__azure_state_t *st, const char *method, const char *path,
                       const char *api_version, json_t *body, pp__azure_done_cb cb, void *data)
{
    wait_t *w = calloc(1, sizeof(*w));
    if (w == NULL || uv_timer_init(st->p->loop, &w->timer) < 0) {
        free(w);
        json_decref(body);
        return -ENOMEM;
    }
    w->st = st;
    w->cb = cb;
    w->data = data;
    snprintf(w->method, sizeof(w->method), "%s", method);
    w->deadline = uv_now(st->p->loop) + (uint64_t)st->cfg.operation_timeout_ms;
    int r = pp__azure_arm(st, method, path, api_version, body, on_started, w);
    if (r < 0) {
        /* Failed synchronously: no callback to the caller. */
        uv_close((uv_handle_t *)&w->timer, wait_discard);
        return r;
    }
    return 0;
}
