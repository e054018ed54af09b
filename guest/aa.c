#include "aa.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "aa_int.h"
#include "pbmsg.h"
#include "ttrpc/ttrpc.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/log.h"

#define LOG "attestation-agent"

/* ---- jobs on the thread pool ---------------------------------------------- */

enum job_kind { JOB_EVIDENCE, JOB_EXTEND, JOB_BIND };

typedef struct job_s {
    uv_work_t work;
    guest_aa_t *aa;
    enum job_kind kind;
    uint8_t data[GUEST_REPORT_DATA_MAX];
    size_t len;
    unsigned index;
    char *text; /* JOB_EXTEND: the event line */
    char *json; /* JOB_EVIDENCE: the result */
    size_t json_len;
    int rc;
    pp_error_t err;
    /* Who waits: a ttrpc call, or an internal callback. */
    pp_ttrpc_call_t *call;
    guest_aa_evidence_cb cb;
    void *cb_data;
} job_t;

static void job_free(job_t *j)
{
    free(j->text);
    free(j->json);
    free(j);
}

/* Appends an event line to the log, then extends the register with its
 * sha256, so the log always covers what the register holds. */
static int do_extend(guest_aa_t *aa, job_t *j)
{
    guest_attester_t *a = &aa->attester;
    int fd = open(aa->eventlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        return pp_error_set(&j->err, -errno, "open the event log `%s`: %s", aa->eventlog,
                            strerror(errno));
    size_t n = strlen(j->text);
    ssize_t w = write(fd, j->text, n);
    int e = errno;
    close(fd);
    if (w != (ssize_t)n)
        return pp_error_set(&j->err, w < 0 ? -e : -EIO, "write the event log `%s`", aa->eventlog);
    uint8_t digest[32];
    /* The line without its newline is what is measured. */
    SHA256((const uint8_t *)j->text, n - 1, digest);
    return a->ops->extend(a, j->index, digest, &j->err);
}

static int do_bind(guest_aa_t *aa, job_t *j)
{
    guest_attester_t *a = &aa->attester;
    return a->ops->bind(a, j->data, j->len, &j->err);
}

static void job_run(uv_work_t *w)
{
    job_t *j = container_of(w, job_t, work);
    guest_aa_t *aa = j->aa;
    uv_mutex_lock(&aa->tee_lock);
    switch (j->kind) {
    case JOB_EVIDENCE:
        j->rc = guest_attester_evidence(&aa->attester, j->data, j->len, &j->json, &j->json_len,
                                        &j->err);
        break;
    case JOB_EXTEND:
        j->rc = do_extend(aa, j);
        break;
    case JOB_BIND:
        j->rc = do_bind(aa, j);
        break;
    }
    uv_mutex_unlock(&aa->tee_lock);
}

static void maybe_finish_close(guest_aa_t *aa);

static void job_done(uv_work_t *w, int status)
{
    job_t *j = container_of(w, job_t, work);
    guest_aa_t *aa = j->aa;
    aa->jobs--;
    if (status < 0 && j->rc == 0)
        j->rc = pp_error_set(&j->err, status, "cancelled");
    if (j->cb != NULL) {
        j->cb(j->rc, j->json, j->json_len, &j->err, j->cb_data);
    } else if (j->rc < 0) {
        PP_WARN(LOG, "%s", j->err.message);
        pp_ttrpc_call_fail(j->call, pp_error_grpc_status(&j->err), "%s", j->err.message);
    } else if (j->kind == JOB_EVIDENCE) {
        uint8_t *msg;
        size_t len;
        if (guest_pb_one_bytes(1, j->json, j->json_len, &msg, &len) < 0) {
            pp_ttrpc_call_fail(j->call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        } else {
            pp_ttrpc_call_reply(j->call, msg, len);
            free(msg);
        }
    } else if (j->kind == JOB_EXTEND) {
        static const uint8_t ok[] = {0}; /* Result OK: the default, empty */
        pp_ttrpc_call_reply(j->call, ok, 0);
    } else {
        pp_ttrpc_call_reply(j->call, "", 0);
    }
    job_free(j);
    maybe_finish_close(aa);
}

static int job_queue(guest_aa_t *aa, job_t *j)
{
    j->aa = aa;
    int r = uv_queue_work(aa->loop, &j->work, job_run, job_done);
    if (r == 0)
        aa->jobs++;
    return r;
}

int guest_aa_evidence(guest_aa_t *aa, const uint8_t *rd, size_t len, guest_aa_evidence_cb cb,
                      void *data)
{
    if (len > GUEST_REPORT_DATA_MAX)
        return -EINVAL;
    if (aa->closing)
        return -ECANCELED;
    job_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return -ENOMEM;
    j->kind = JOB_EVIDENCE;
    memcpy(j->data, rd, len);
    j->len = len;
    j->cb = cb;
    j->cb_data = data;
    int r = job_queue(aa, j);
    if (r < 0)
        free(j);
    return r;
}

/* ---- handlers --------------------------------------------------------------- */

static int bad_request(pp_ttrpc_call_t *call, const char *method)
{
    return pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT, "%s: malformed request", method);
}

static void queue_call(guest_aa_t *aa, pp_ttrpc_call_t *call, job_t *j)
{
    j->call = call;
    int r = job_queue(aa, j);
    if (r < 0) {
        job_free(j);
        pp_ttrpc_call_fail(call, PP_GRPC_UNAVAILABLE, "cannot queue the work: %s", uv_strerror(r));
    }
}

static void on_get_evidence(pp_ttrpc_call_t *call, void *data)
{
    guest_aa_t *aa = data;
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    guest_pb_bytes_t rd;
    if (guest_pb_bytes(req->payload, req->payload_len, 1, &rd) < 0) {
        bad_request(call, "GetEvidence");
        return;
    }
    if (aa->attester.ops == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_FAILED_PRECONDITION, "GetEvidence: %s", aa->attester.why);
        return;
    }
    if (rd.n > GUEST_REPORT_DATA_MAX) {
        pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT,
                           "GetEvidence: RuntimeData of %zu bytes: the TEE binds at most %d", rd.n,
                           GUEST_REPORT_DATA_MAX);
        return;
    }
    job_t *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->kind = JOB_EVIDENCE;
    if (rd.n > 0)
        memcpy(j->data, rd.p, rd.n);
    j->len = rd.n;
    queue_call(aa, call, j);
}

static void on_get_additional_evidence(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    /* No device attesters: upstream answers an empty Evidence. */
    pp_ttrpc_call_reply(call, "", 0);
}

static void on_get_tee_type(pp_ttrpc_call_t *call, void *data)
{
    guest_aa_t *aa = data;
    if (aa->attester.ops == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_FAILED_PRECONDITION, "GetTeeType: %s", aa->attester.why);
        return;
    }
    uint8_t *msg;
    size_t len;
    const char *name = aa->attester.ops->name;
    if (guest_pb_one_bytes(1, name, strlen(name), &msg, &len) < 0) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    pp_ttrpc_call_reply(call, msg, len);
    free(msg);
}

static void on_get_additional_tees(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    pp_ttrpc_call_reply(call, "", 0);
}

/* Event text: printable, one line. */
static int event_text_ok(const guest_pb_bytes_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->p[i] < 0x20 || b->p[i] == 0x7f)
            return 0;
    return 1;
}

static void on_extend(pp_ttrpc_call_t *call, void *data)
{
    guest_aa_t *aa = data;
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    guest_pb_bytes_t domain, op, content;
    uint64_t index = aa->cfg.init_pcr;
    int have_index;
    if (guest_pb_bytes(req->payload, req->payload_len, 1, &domain) < 0 ||
        guest_pb_bytes(req->payload, req->payload_len, 2, &op) < 0 ||
        guest_pb_bytes(req->payload, req->payload_len, 3, &content) < 0 ||
        guest_pb_varint(req->payload, req->payload_len, 4, &index, &have_index) < 0) {
        bad_request(call, "ExtendRuntimeMeasurement");
        return;
    }
    if (!have_index)
        index = aa->cfg.init_pcr;
    if (!aa->cfg.eventlog || aa->attester.ops == NULL || !aa->attester.ops->can_extend) {
        /* Result NOT_ENABLED (2) or NOT_SUPPORTED (1), as upstream answers. */
        uint8_t msg[2] = {0x08, aa->cfg.eventlog ? 1 : 2};
        pp_ttrpc_call_reply(call, msg, sizeof(msg));
        return;
    }
    if (index > GUEST_PCR_MAX || !event_text_ok(&domain) || !event_text_ok(&op) ||
        !event_text_ok(&content) || domain.n == 0 || op.n == 0) {
        pp_ttrpc_call_fail(call, PP_GRPC_INVALID_ARGUMENT,
                           "ExtendRuntimeMeasurement: a PCR from 0 to %d, a domain and an "
                           "operation, and text without control characters",
                           GUEST_PCR_MAX);
        return;
    }
    job_t *j = calloc(1, sizeof(*j));
    size_t n = domain.n + op.n + content.n + 4;
    if (j == NULL || (j->text = malloc(n)) == NULL) {
        free(j);
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    snprintf(j->text, n, "%.*s %.*s %.*s\n", (int)domain.n, (const char *)domain.p, (int)op.n,
             (const char *)op.p, (int)content.n, (const char *)content.p);
    j->kind = JOB_EXTEND;
    j->index = (unsigned)index;
    queue_call(aa, call, j);
}

static void on_bind_init_data(pp_ttrpc_call_t *call, void *data)
{
    guest_aa_t *aa = data;
    const pp_ttrpc_request_t *req = pp_ttrpc_call_request(call);
    guest_pb_bytes_t d;
    if (guest_pb_bytes(req->payload, req->payload_len, 1, &d) < 0 || d.n == 0 || d.n > 64) {
        bad_request(call, "BindInitData");
        return;
    }
    if (aa->attester.ops == NULL || aa->attester.ops->bind == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_UNIMPLEMENTED, "BindInitData: not supported on `%s`",
                           aa->attester.ops ? aa->attester.ops->name : "no TEE");
        return;
    }
    job_t *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        pp_ttrpc_call_fail(call, PP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->kind = JOB_BIND;
    memcpy(j->data, d.p, d.n);
    j->len = d.n;
    queue_call(aa, call, j);
}

static const struct {
    const char *method;
    pp_ttrpc_handler_cb cb;
} methods[] = {
    {"GetEvidence", on_get_evidence},
    {"GetAdditionalEvidence", on_get_additional_evidence},
    {"GetToken", guest__aa_on_get_token},
    {"ExtendRuntimeMeasurement", on_extend},
    {"BindInitData", on_bind_init_data},
    {"GetTeeType", on_get_tee_type},
    {"GetAdditionalTees", on_get_additional_tees},
};

/* ---- life ------------------------------------------------------------------- */

const guest_attester_t *guest_aa_attester(const guest_aa_t *aa)
{
    return &aa->attester;
}

static void free_aa(guest_aa_t *aa)
{
    guest__aa_token_fini(aa);
    uv_mutex_destroy(&aa->tee_lock);
    guest_aa_cfg_fini(&aa->cfg);
    free(aa->initdata);
    free(aa->eventlog);
    free(aa);
}

static void maybe_finish_close(guest_aa_t *aa)
{
    if (!aa->closing || aa->jobs > 0 || aa->srv != NULL || !guest__aa_token_idle(aa))
        return;
    void (*cb)(void *) = aa->close_cb;
    void *data = aa->close_data;
    free_aa(aa);
    if (cb != NULL)
        cb(data);
}

void guest__aa_maybe_finish_close(guest_aa_t *aa)
{
    maybe_finish_close(aa);
}

static void on_server_closed(pp_ttrpc_server_t *srv, void *data)
{
    guest_aa_t *aa = data;
    (void)srv;
    aa->srv = NULL;
    maybe_finish_close(aa);
}

void guest_aa_close(guest_aa_t *aa, void (*cb)(void *data), void *data)
{
    aa->closing = 1;
    aa->close_cb = cb;
    aa->close_data = data;
    guest__aa_token_close(aa);
    if (aa->srv != NULL)
        pp_ttrpc_server_close(aa->srv, 1, on_server_closed, aa);
    else
        maybe_finish_close(aa);
}

static int copy_cfg(guest_aa_cfg_t *dst, const guest_aa_cfg_t *src)
{
    *dst = *src;
    dst->kbs.url = src->kbs.url ? strdup(src->kbs.url) : NULL;
    dst->kbs.cert = src->kbs.cert ? strdup(src->kbs.cert) : NULL;
    return (src->kbs.url && !dst->kbs.url) || (src->kbs.cert && !dst->kbs.cert) ? -ENOMEM : 0;
}

int guest_aa_start(uv_loop_t *loop, const guest_aa_opts_t *o, guest_aa_t **out, pp_error_t *err)
{
    guest_aa_t *aa = calloc(1, sizeof(*aa));
    if (aa == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    aa->loop = loop;
    if (uv_mutex_init(&aa->tee_lock) < 0) {
        free(aa);
        return pp_error_set(err, -ENOMEM, "mutex");
    }
    int r = copy_cfg(&aa->cfg, o->cfg);
    aa->eventlog = strdup(o->eventlog ? o->eventlog : "/run/attestation-agent/eventlog");
    if (o->initdata != NULL && (aa->initdata = malloc(o->initdata_len + 1)) != NULL) {
        memcpy(aa->initdata, o->initdata, o->initdata_len);
        aa->initdata[o->initdata_len] = 0;
    }
    if (r < 0 || aa->eventlog == NULL || (o->initdata != NULL && aa->initdata == NULL)) {
        free_aa(aa);
        return pp_error_set(err, -ENOMEM, "out of memory");
    }
    if (o->tee_forced) {
        r = guest_attester_for(&aa->attester, o->tee_kind, &o->tee, err);
        if (r < 0) {
            free_aa(aa);
            return r;
        }
    } else {
        guest_attester_detect(&aa->attester, &o->tee);
    }
    if (aa->attester.ops != NULL)
        PP_INFO(LOG, "TEE `%s`: %s", aa->attester.ops->name, aa->attester.why);
    else
        PP_WARN(LOG, "%s: evidence and tokens will be refused", aa->attester.why);
    if ((r = guest__aa_token_init(aa, err)) < 0) {
        free_aa(aa);
        return r;
    }
    if ((r = pp_ttrpc_server_new(loop, &aa->srv)) < 0) {
        free_aa(aa);
        return pp_error_set(err, r, "ttrpc server: %s", uv_strerror(r));
    }
    for (size_t i = 0; i < PP_ARRAY_SIZE(methods) && r == 0; i++)
        r = pp_ttrpc_server_register(aa->srv, GUEST_AA_SERVICE, methods[i].method, methods[i].cb,
                                     aa);
    if (r < 0)
        pp_error_set(err, r, "register methods");
    else if ((r = pp_mkdir_parents(o->socket, 0755, err)) == 0)
        r = pp_ttrpc_server_listen_unix(aa->srv, o->socket, err);
    if (r < 0) {
        guest_aa_close(aa, NULL, NULL);
        return r;
    }
    *out = aa;
    return 0;
}
