#include "rest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aa.h"
#include "httpd/httpd.h"
#include "pbmsg.h"
#include "ttrpc/ttrpc.h"
#include "util/base64.h"
#include "util/buf.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/log.h"
#include "util/pb.h"

#define LOG "api-server-rest"

#define CALL_TIMEOUT_NS (50LL * 1000 * 1000 * 1000) /* upstream's */
#define FEATURE_AA      1u
#define FEATURE_CDH     2u

struct guest_rest_s {
    uv_loop_t *loop;
    pp_httpd_t *httpd;
    unsigned features;
    char *feature;
    char *aa_socket;
    char *cdh_socket;
    char *version;
    size_t pending;
    unsigned closing : 1;
    void (*close_cb)(void *);
    void *close_data;
};

/* One HTTP request answered by one or two ttrpc calls. */
typedef struct call_s call_t;
typedef void (*call_done_cb)(call_t *c, const pp_ttrpc_result_t *res);

struct call_s {
    guest_rest_t *rest;
    pp_httpd_req_t *req;
    pp_ttrpc_client_t *client;
    const char *socket;
    const char *service, *method;
    uint8_t *payload;
    size_t payload_len;
    call_done_cb done;
    int step;  /* /info: 0 tee type, 1 additional tees */
    char *tee; /* /info */
    int answered;
};

static void maybe_finish_close(guest_rest_t *r);

static void call_free(call_t *c)
{
    guest_rest_t *r = c->rest;
    free(c->payload);
    free(c->tee);
    free(c);
    r->pending--;
    maybe_finish_close(r);
}

static void on_client_closed(pp_ttrpc_client_t *cl, void *data)
{
    (void)cl;
    call_free(data);
}

static void call_finish(call_t *c)
{
    pp_ttrpc_client_t *cl = c->client;
    c->client = NULL;
    if (cl != NULL)
        pp_ttrpc_client_close(cl, on_client_closed, c);
    else
        call_free(c);
}

static void answer(call_t *c, unsigned status, const char *type, const void *body, size_t len)
{
    if (!c->answered)
        pp_httpd_respond(c->req, status, type, body, len);
    c->answered = 1;
}

static void answer_text(call_t *c, unsigned status, const char *text)
{
    answer(c, status, "text/plain", text, strlen(text));
}

static void on_result(pp_ttrpc_result_t *res, void *data)
{
    call_t *c = data;
    c->done(c, res);
}

static void on_connected(pp_ttrpc_client_t *cl, int status, void *data)
{
    call_t *c = data;
    (void)cl;
    if (status < 0) {
        char msg[300];
        snprintf(msg, sizeof(msg), "cannot reach `%s`: %s", c->socket, uv_strerror(status));
        answer_text(c, 500, msg);
        call_finish(c);
        return;
    }
    pp_ttrpc_call_opts_t o = {.service = c->service,
                              .method = c->method,
                              .payload = c->payload,
                              .payload_len = c->payload_len,
                              .timeout_nano = CALL_TIMEOUT_NS};
    int r = pp_ttrpc_client_call(c->client, &o, on_result, c);
    if (r < 0) {
        answer_text(c, 500, uv_strerror(r));
        call_finish(c);
    }
}

/* Starts a call; on failure answers 500 and frees. */
static void call_start(call_t *c, const char *socket, const char *service, const char *method)
{
    c->socket = socket;
    c->service = service;
    c->method = method;
    int r = pp_ttrpc_client_new(c->rest->loop, &c->client);
    if (r < 0)
        c->client = NULL;
    else
        r = pp_ttrpc_client_connect_unix(c->client, socket, on_connected, c);
    if (r < 0) {
        answer_text(c, 500, uv_strerror(r));
        call_finish(c);
    }
}

/* The answer of a call whose response's field 1 is the body. */
static void done_octets(call_t *c, const pp_ttrpc_result_t *res)
{
    if (res->code != 0) {
        char msg[1100];
        snprintf(msg, sizeof(msg), "%.*s", (int)res->message.n, res->message.p);
        answer_text(c, 500, msg);
    } else {
        guest_pb_bytes_t b;
        if (guest_pb_bytes(res->payload, res->payload_len, 1, &b) < 0)
            answer_text(c, 500, "malformed answer");
        else
            answer(c, 200, "application/octet-stream", b.p, b.n);
    }
    call_finish(c);
}

static void done_aael(call_t *c, const pp_ttrpc_result_t *res)
{
    if (res->code != 0) {
        char msg[1100];
        snprintf(msg, sizeof(msg), "%.*s", (int)res->message.n, res->message.p);
        answer_text(c, 500, msg);
        call_finish(c);
        return;
    }
    uint64_t v = 0;
    int present;
    const char *body;
    if (guest_pb_varint(res->payload, res->payload_len, 1, &v, &present) < 0)
        body = NULL;
    else if (v == 0)
        body = "{\"success\":\"true\"}";
    else if (v == 1)
        body = "{\"success\":\"false\",\"message\": \"The platform does not support runtime "
               "measurement\"}";
    else if (v == 2)
        body = "{\"success\":\"false\",\"message\": \"Attestation Agent does not enable eventlog "
               "recording\"}";
    else
        body = "{\"success\":\"false\",\"message\": \"Unknown runtime measurement result\"}";
    if (body == NULL)
        answer_text(c, 500, "malformed answer");
    else
        answer(c, 200, "application/json", body, strlen(body));
    call_finish(c);
}

static void info_reply(call_t *c, json_t *tees)
{
    guest_rest_t *r = c->rest;
    json_t *j = json_pack("{s:s}", "version", r->version);
    if (j != NULL && c->tee != NULL)
        json_object_set_new(j, "tee", json_string(c->tee));
    if (j != NULL && tees != NULL && json_array_size(tees) > 0)
        json_object_set(j, "additional_tees", tees);
    if (j != NULL)
        json_object_set_new(j, "feature", json_string(r->feature));
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (text == NULL)
        answer_text(c, 500, "out of memory");
    else
        answer(c, 200, "application/json", text, strlen(text));
    free(text);
    json_decref(j);
}

static void done_info(call_t *c, const pp_ttrpc_result_t *res)
{
    if (res->code != 0) {
        char msg[1100];
        snprintf(msg, sizeof(msg), "%.*s", (int)res->message.n, res->message.p);
        answer_text(c, 500, msg);
        call_finish(c);
        return;
    }
    if (c->step == 0) {
        guest_pb_bytes_t b;
        /* The field's bytes are not NUL-terminated: copy exactly b.n. */
        if (guest_pb_bytes(res->payload, res->payload_len, 1, &b) < 0 ||
            (c->tee = malloc(b.n + 1)) == NULL) {
            answer_text(c, 500, "malformed answer");
            call_finish(c);
            return;
        }
        memcpy(c->tee, b.p, b.n);
        c->tee[b.n] = '\0';
        c->step = 1;
        pp_ttrpc_call_opts_t o = {.service = GUEST_AA_SERVICE,
                                  .method = "GetAdditionalTees",
                                  .timeout_nano = CALL_TIMEOUT_NS};
        int r = pp_ttrpc_client_call(c->client, &o, on_result, c);
        if (r < 0) {
            answer_text(c, 500, uv_strerror(r));
            call_finish(c);
        }
        return;
    }
    json_t *tees = json_array();
    pp_pb_reader_t rd;
    pp_pb_field_t f;
    pp_pb_reader_init(&rd, res->payload, res->payload_len);
    while (tees != NULL && pp_pb_next(&rd, &f) > 0)
        if (f.number == 1 && f.wire == PP_PB_LEN)
            json_array_append_new(tees, json_stringn((const char *)f.data, f.len));
    info_reply(c, tees);
    json_decref(tees);
    call_finish(c);
}

/* ---- routing ---------------------------------------------------------------- */

static call_t *call_new(guest_rest_t *r, pp_httpd_req_t *req)
{
    call_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        pp_httpd_respond(req, 500, "text/plain", "out of memory", 13);
        return NULL;
    }
    c->rest = r;
    c->req = req;
    r->pending++;
    return c;
}

static void reply_now(call_t *c, unsigned status, const char *text)
{
    answer_text(c, status, text);
    call_free(c);
}

/* The runtime data of /aa/evidence: as given, or base64url. */
static int runtime_data(pp_httpd_req_t *req, pp_buf_t *out)
{
    const char *rd = pp_httpd_query(req, "runtime_data");
    const char *enc = pp_httpd_query(req, "encoding");
    if (rd == NULL)
        return -EINVAL;
    if (enc == NULL)
        return pp_buf_append(out, rd, strlen(rd));
    if (strcmp(enc, "base64") != 0)
        return -EINVAL;
    return pp_base64url_decode(rd, strlen(rd), out) < 0 ? -EINVAL : 0;
}

static void route_aa(call_t *c, const char *sub, const char *method)
{
    guest_rest_t *r = c->rest;
    pp_httpd_req_t *req = c->req;
    if (!(r->features & FEATURE_AA)) {
        reply_now(c, 404, "Attestation Feature Not Enabled");
        return;
    }
    int get = strcmp(method, "GET") == 0;
    if (get && strcmp(sub, "/token") == 0) {
        const char *type = pp_httpd_query(req, "token_type");
        if (type == NULL ||
            guest_pb_one_bytes(1, type, strlen(type), &c->payload, &c->payload_len) < 0) {
            reply_now(c, 400, "BAD REQUEST");
            return;
        }
        c->done = done_octets;
        call_start(c, r->aa_socket, GUEST_AA_SERVICE, "GetToken");
        return;
    }
    int additional = strcmp(sub, "/additional-evidence") == 0;
    if (get && (strcmp(sub, "/evidence") == 0 || additional)) {
        pp_buf_t rd;
        pp_buf_init(&rd, 4096);
        int e = runtime_data(req, &rd);
        if (e == 0)
            e = guest_pb_one_bytes(1, rd.data, rd.len, &c->payload, &c->payload_len);
        pp_buf_free(&rd);
        if (e < 0) {
            reply_now(c, 400, "BAD REQUEST");
            return;
        }
        c->done = done_octets;
        call_start(c, r->aa_socket, GUEST_AA_SERVICE,
                   additional ? "GetAdditionalEvidence" : "GetEvidence");
        return;
    }
    if (strcmp(method, "POST") == 0 && strcmp(sub, "/aael") == 0) {
        size_t len;
        const uint8_t *body = pp_httpd_body(req, &len);
        json_t *j = json_loadb((const char *)body, len, 0, NULL);
        const char *d = json_string_value(json_object_get(j, "domain"));
        const char *o = json_string_value(json_object_get(j, "operation"));
        const char *ct = json_string_value(json_object_get(j, "content"));
        pp_buf_t b;
        pp_buf_init(&b, 0);
        int e = d && o && ct ? 0 : -EINVAL;
        if (e == 0 &&
            ((e = pp_pb_put_string(&b, 1, d)) < 0 || (e = pp_pb_put_string(&b, 2, o)) < 0 ||
             (e = pp_pb_put_string(&b, 3, ct)) < 0))
            e = -ENOMEM;
        json_decref(j);
        if (e < 0) {
            pp_buf_free(&b);
            reply_now(c, 500, e == -EINVAL ? "Illegal AAEL eventry format" : "out of memory");
            return;
        }
        c->payload = pp_buf_steal(&b, &c->payload_len);
        c->done = done_aael;
        call_start(c, r->aa_socket, GUEST_AA_SERVICE, "ExtendRuntimeMeasurement");
        return;
    }
    reply_now(c, 404, "URL NOT FOUND");
}

static void route_cdh(call_t *c, const char *sub)
{
    guest_rest_t *r = c->rest;
    if (!(r->features & FEATURE_CDH)) {
        reply_now(c, 404, "Resource Feature Not Enabled");
        return;
    }
    const char *prefix = "/resource/";
    if (strncmp(sub, prefix, strlen(prefix)) != 0) {
        reply_now(c, 404, "URL NOT FOUND");
        return;
    }
    /* Upstream prefixes the rest with kbs:// : kbs:///repo/type/tag. */
    char uri[1024];
    if (snprintf(uri, sizeof(uri), "kbs://%s", sub + strlen("/resource")) >= (int)sizeof(uri) ||
        guest_pb_one_bytes(1, uri, strlen(uri), &c->payload, &c->payload_len) < 0) {
        reply_now(c, 400, "BAD REQUEST");
        return;
    }
    c->done = done_octets;
    call_start(c, r->cdh_socket, "api.GetResourceService", "GetResource");
}

static void on_request(pp_httpd_req_t *req, void *data)
{
    guest_rest_t *r = data;
    call_t *c = call_new(r, req);
    if (c == NULL)
        return;
    const char *path = pp_httpd_path(req), *method = pp_httpd_method(req);
    if (strcmp(path, "/info") == 0) {
        if (strcmp(method, "GET") != 0) {
            reply_now(c, 405, "Method Not Allowed");
        } else if (!(r->features & FEATURE_AA)) {
            info_reply(c, NULL);
            call_free(c);
        } else {
            c->done = done_info;
            call_start(c, r->aa_socket, GUEST_AA_SERVICE, "GetTeeType");
        }
        return;
    }
    if (strncmp(path, "/aa/", 4) == 0) {
        route_aa(c, path + 3, method);
        return;
    }
    if (strncmp(path, "/cdh/", 5) == 0) {
        route_cdh(c, path + 4);
        return;
    }
    reply_now(c, 404, "URL NOT FOUND");
}

/* ---- life ------------------------------------------------------------------- */

int guest_rest_port(const guest_rest_t *r)
{
    return pp_httpd_port(r->httpd);
}

static void free_rest(guest_rest_t *r)
{
    free(r->feature);
    free(r->aa_socket);
    free(r->cdh_socket);
    free(r->version);
    free(r);
}

static void maybe_finish_close(guest_rest_t *r)
{
    if (!r->closing || r->pending > 0 || r->httpd != NULL)
        return;
    void (*cb)(void *) = r->close_cb;
    void *data = r->close_data;
    free_rest(r);
    if (cb != NULL)
        cb(data);
}

static void on_httpd_closed(pp_httpd_t *h, void *data)
{
    guest_rest_t *r = data;
    (void)h;
    r->httpd = NULL;
    maybe_finish_close(r);
}

void guest_rest_close(guest_rest_t *r, void (*cb)(void *data), void *data)
{
    r->closing = 1;
    r->close_cb = cb;
    r->close_data = data;
    if (r->httpd != NULL)
        pp_httpd_close(r->httpd, on_httpd_closed, r);
    else
        maybe_finish_close(r);
}

/* "host:port" with a loopback IPv4 or [IPv6] literal. */
static int parse_bind(const char *bind, char *host, size_t size, int *port, pp_error_t *err)
{
    const char *colon = strrchr(bind, ':');
    const char *h = bind;
    size_t hl = colon ? (size_t)(colon - bind) : 0;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']')
        h++, hl -= 2;
    char *end;
    long p = colon ? strtol(colon + 1, &end, 10) : -1;
    if (colon == NULL || hl == 0 || hl >= size || *end != 0 || p < 0 || p > 65535)
        return pp_error_set(err, -EINVAL, "`bind`: `%.64s` is not host:port", bind);
    memcpy(host, h, hl);
    host[hl] = 0;
    if (strncmp(host, "127.", 4) != 0 && strcmp(host, "::1") != 0)
        return pp_error_set(err, -EINVAL,
                            "`bind`: `%.64s` is not a loopback address; the API "
                            "serves only the pod itself",
                            bind);
    *port = (int)p;
    return 0;
}

int guest_rest_start(uv_loop_t *loop, const guest_rest_opts_t *o, guest_rest_t **out,
                     pp_error_t *err)
{
    unsigned features;
    const char *f = o->features ? o->features : "resource";
    if (strcmp(f, "resource") == 0)
        features = FEATURE_CDH;
    else if (strcmp(f, "attestation") == 0)
        features = FEATURE_AA;
    else if (strcmp(f, "all") == 0)
        features = FEATURE_AA | FEATURE_CDH;
    else
        return pp_error_set(err, -EINVAL,
                            "`features`: `%.32s` is not one of resource, "
                            "attestation, all",
                            f);
    char host[64];
    int port = 0;
    int rc = parse_bind(o->bind ? o->bind : GUEST_REST_BIND, host, sizeof(host), &port, err);
    if (rc < 0)
        return rc;
    guest_rest_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    r->loop = loop;
    r->features = features;
    r->feature = strdup(f);
    r->aa_socket = strdup(o->aa_socket ? o->aa_socket : GUEST_AA_SOCKET);
    r->cdh_socket = strdup(o->cdh_socket ? o->cdh_socket : "/run/confidential-containers/cdh.sock");
    r->version = strdup(o->version ? o->version : "dev");
    if (!r->feature || !r->aa_socket || !r->cdh_socket || !r->version) {
        free_rest(r);
        return pp_error_set(err, -ENOMEM, "out of memory");
    }
    pp_httpd_opts_t ho = {.name = "api-server-rest",
                          .address = host,
                          .port = port,
                          .max_body = 64 * 1024,
                          .handler = on_request,
                          .data = r};
    rc = pp_httpd_start(loop, &ho, &r->httpd, err);
    if (rc < 0) {
        free_rest(r);
        return rc;
    }
    PP_INFO(LOG, "serving on %s:%d with features %s", host, pp_httpd_port(r->httpd), f);
    *out = r;
    return 0;
}
