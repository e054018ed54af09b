/* Authorised calls to Google's REST APIs: the shared bearer-token calls
 * (providers/http/bearer.h: the access token first, a new one and once more
 * after a 401) with Google's error answers read and translated here. */
#include "providers/gcp/gcp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cleanup.h"

typedef struct relay_s {
    pp__gcp_call_cb cb;
    void *data;
} relay_t;

static void relayed(int status, long http, const char *body, size_t len, const char *code,
                    const pp_error_t *err, void *data)
{
    relay_t r = *(relay_t *)data;
    (void)http;
    free(data);
    r.cb(status, body, len, code, err, r.data);
}

/* Google's code: the first error's reason, else the canonical status. */
static void error_info(const pp_http_response_t *resp, char *code, size_t codelen, char *msg,
                       size_t msglen)
{
    pp__gcp_error_info_t ei;
    pp__gcp_parse_error(resp->body, resp->body_len, &ei);
    snprintf(code, codelen, "%s", ei.reason[0] ? ei.reason : ei.status);
    snprintf(msg, msglen, "%s", ei.message);
}

int pp__gcp_call(pp__gcp_state_t *st, const char *method, const char *url, const char *body,
                 const char *what, uint64_t attempt_timeout_ms, pp__gcp_call_cb cb, void *data)
{
    pp__gcp_auth_prepare(st);
    if (st->bearer.http == NULL) {
        st->bearer.http = st->http;
        st->bearer.tok = &st->tok;
        st->bearer.token = &st->access_token;
        st->bearer.error_info = error_info;
        st->bearer.classify = pp__gcp_error_classify;
    }
    relay_t *r = malloc(sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->cb = cb;
    r->data = data;
    pp_bearer_request_t req = {.method = method,
                               .url = url,
                               .body = body,
                               .what = what,
                               .attempt_timeout_ms = attempt_timeout_ms};
    int rc = pp_bearer_call(&st->bearer, &req, relayed, r);
    if (rc < 0)
        free(r);
    return rc;
}
