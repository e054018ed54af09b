/* c_client: the interop cases, run with our ttrpc client against a server of
 * the test service (peer.h), ours or containerd's Go one.
 *
 *     c_client SOCKET go|c
 *
 * The second argument names the server's implementation, for the few places
 * where Go's v1.1.1 server is known to answer differently (printed as
 * "note"). Prints one line per check; exits 1 if any failed.
 *
 * Calls go through the library; framing and byte-exact checks use a plain
 * blocking socket with an encoder and decoder of their own, so that a bug in
 * the library's codec cannot hide itself. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "peer.h"
#include "ttrpc/ttrpc.h"
#include "util/cleanup.h"

#define MAX_FRAME    PP_TTRPC_MAX_MESSAGE
#define NS_PER_MS    1000000LL
#define N_CONCURRENT 256
#define CALL_TIMEOUT 30000 /* ms a check waits for any one answer */

typedef struct tctx_s {
    uv_loop_t *loop;
    const char *sock;
    int peer_is_go;
    pp_ttrpc_client_t *cl;
    uv_timer_t ticker; /* wakes the loop so waits can time out */
    size_t pending;    /* callbacks still expected */
    int passed;
    int failed;
} tctx_t;

static void report(tctx_t *t, int ok, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report(tctx_t *t, int ok, const char *name, const char *fmt, ...)
{
    va_list ap;
    if (ok)
        t->passed++;
    else
        t->failed++;
    printf("%s %-44s ", ok ? "ok  " : "FAIL", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static void note(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(const char *name, const char *fmt, ...)
{
    va_list ap;
    printf("note %-44s ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static const char *code_name(int code)
{
    return pp_grpc_code_name(code);
}

/* ---- calls through the library ----------------------------------------- */

typedef struct outcome_s {
    tctx_t *t;
    int done;
    int code;
    char *message; /* NUL-terminated copy */
    uint8_t *payload;
    size_t payload_len;
    int from_server; /* a response frame arrived (not a local status) */
    uint64_t started;
    uint64_t elapsed; /* ms */
} outcome_t;

static void outcome_reset(outcome_t *o, tctx_t *t)
{
    free(o->message);
    free(o->payload);
    memset(o, 0, sizeof(*o));
    o->t = t;
    o->code = -1;
    o->started = now_ms();
}

static void outcome_cb(pp_ttrpc_result_t *res, void *data)
{
    outcome_t *o = data;
    o->done = 1;
    o->code = res->code;
    o->elapsed = now_ms() - o->started;
    o->from_server = res->frame != NULL;
    /* The message is a view, not a C string: copy exactly its bytes. */
    o->message = malloc(res->message.n + 1);
    if (o->message != NULL) {
        if (res->message.n > 0)
            memcpy(o->message, res->message.p, res->message.n);
        o->message[res->message.n] = '\0';
    }
    if (res->payload_len > 0) {
        o->payload = malloc(res->payload_len);
        if (o->payload != NULL)
            memcpy(o->payload, res->payload, res->payload_len);
    }
    o->payload_len = res->payload_len;
    o->t->pending--;
}

static void ticker_cb(uv_timer_t *h)
{
    (void)h;
}

/* Runs the loop until every expected callback came. A callback that never
 * comes is a hang: the rest of the run could not be trusted (and outcomes
 * on the stack would be written late), so give up. */
static int wait_pending(tctx_t *t, uint64_t ms)
{
    uint64_t end = now_ms() + ms;
    while (t->pending > 0 && now_ms() < end)
        uv_run(t->loop, UV_RUN_ONCE);
    if (t->pending > 0) {
        report(t, 0, "answers", "%zu callbacks missing after %llu ms; giving up", t->pending,
               (unsigned long long)ms);
        printf("c client: %d passed, %d failed\n", t->passed, t->failed);
        exit(1);
    }
    return 0;
}

/* Starts a call; on a synchronous failure records it as the outcome. */
static int start_call(tctx_t *t, pp_ttrpc_client_t *cl, const char *service, const char *method,
                      const void *payload, size_t len, int64_t timeout_nano,
                      const pp_ttrpc_kv_t *md, size_t nmd, outcome_t *o)
{
    pp_ttrpc_call_opts_t opts = {
        .service = service,
        .method = method,
        .payload = payload,
        .payload_len = len,
        .timeout_nano = timeout_nano,
        .metadata = md,
        .metadata_count = nmd,
    };
    outcome_reset(o, t);
    int r = pp_ttrpc_client_call(cl, &opts, outcome_cb, o);
    if (r == 0)
        t->pending++;
    return r;
}

/* One call, waited for. Returns the synchronous error, or -ETIMEDOUT. */
static int call(tctx_t *t, const char *method, const void *payload, size_t len,
                int64_t timeout_nano, outcome_t *o)
{
    int r = start_call(t, t->cl, PEER_SERVICE, method, payload, len, timeout_nano, NULL, 0, o);
    if (r < 0)
        return r;
    return wait_pending(t, CALL_TIMEOUT);
}

static const char *describe(const outcome_t *o)
{
    static char buf[256];
    if (!o->done)
        return "no answer";
    snprintf(buf, sizeof(buf), "%s \"%.160s\"%s", code_name(o->code), o->message,
             o->from_server ? "" : " (local)");
    return buf;
}

static void check_alive(tctx_t *t, const char *name)
{
    outcome_t o = {0};
    int r = call(t, "Echo", "still alive", 11, 0, &o);
    int ok =
        r == 0 && o.code == 0 && o.payload_len == 11 && memcmp(o.payload, "still alive", 11) == 0;
    if (ok)
        report(t, 1, name, "connection still serves calls");
    else
        report(t, 0, name, "connection unusable afterwards: %s (r=%d)", describe(&o), r);
    outcome_reset(&o, t);
}

/* ---- raw frames on a blocking socket ------------------------------------ */

typedef struct raw_frame_s {
    uint32_t length;
    uint32_t stream_id;
    uint8_t type;
    uint8_t flags;
    uint8_t *payload; /* NULL when over the maximum (discarded) */
} raw_frame_t;

static int raw_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static int raw_write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads exactly `n` bytes (into `p`, or dropped when `p` is NULL) within
 * `ms` overall. */
static int raw_read_all(int fd, uint8_t *p, size_t n, int ms)
{
    uint8_t sink[65536];
    uint64_t end = now_ms() + (uint64_t)ms;
    while (n > 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        uint64_t now = now_ms();
        if (now >= end)
            return -ETIMEDOUT;
        int pr = poll(&pfd, 1, (int)(end - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return pr < 0 ? -errno : -ETIMEDOUT;
        size_t want = p ? n : (n < sizeof(sink) ? n : sizeof(sink));
        ssize_t r = read(fd, p ? p : sink, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EPIPE;
        if (p)
            p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int raw_send(int fd, uint32_t stream_id, uint8_t type, const uint8_t *body, size_t n)
{
    uint8_t h[PP_TTRPC_HEADER_SIZE] = {
        (uint8_t)(n >> 24),
        (uint8_t)(n >> 16),
        (uint8_t)(n >> 8),
        (uint8_t)n,
        (uint8_t)(stream_id >> 24),
        (uint8_t)(stream_id >> 16),
        (uint8_t)(stream_id >> 8),
        (uint8_t)stream_id,
        type,
        0,
    };
    int r = raw_write_all(fd, h, sizeof(h));
    return r < 0 ? r : raw_write_all(fd, body, n);
}

static int raw_recv(int fd, raw_frame_t *f, int ms)
{
    uint8_t h[PP_TTRPC_HEADER_SIZE];
    memset(f, 0, sizeof(*f));
    int r = raw_read_all(fd, h, sizeof(h), ms);
    if (r < 0)
        return r;
    f->length = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    f->stream_id = (uint32_t)h[4] << 24 | (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
    f->type = h[8];
    f->flags = h[9];
    if (f->length > MAX_FRAME)
        return raw_read_all(fd, NULL, f->length, ms);
    f->payload = malloc(f->length ? f->length : 1);
    if (f->payload == NULL)
        return -ENOMEM;
    r = raw_read_all(fd, f->payload, f->length, ms);
    if (r < 0) {
        free(f->payload);
        f->payload = NULL;
    }
    return r;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_bytes(uint8_t *p, uint8_t tag, const void *b, size_t n)
{
    *p++ = tag;
    p = put_varint(p, n);
    if (n)
        memcpy(p, b, n);
    return p + n;
}

/* A ttrpc.Request, encoded here rather than by the library. */
static uint8_t *raw_request(const char *method, const void *payload, size_t n, size_t *len)
{
    uint8_t *buf = malloc(n + 128);
    if (buf == NULL)
        return NULL;
    uint8_t *p = put_bytes(buf, 0x0a, PEER_SERVICE, strlen(PEER_SERVICE));
    p = put_bytes(p, 0x12, method, strlen(method));
    if (n)
        p = put_bytes(p, 0x1a, payload, n);
    *len = (size_t)(p - buf);
    return buf;
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            return -EBADMSG;
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -EBADMSG;
}

typedef struct raw_response_s {
    int has_status;
    int code;
    pp_str_t message;
    pp_str_t payload;
} raw_response_t;

/* Walks fields; for each length-delimited one calls back, skips the rest. */
static int walk(const uint8_t *p, size_t n,
                int (*on_len)(void *, uint64_t, const uint8_t *, size_t),
                int (*on_varint)(void *, uint64_t, uint64_t), void *ctx)
{
    const uint8_t *end = p + n;
    while (p < end) {
        uint64_t key, v;
        if (get_varint(&p, end, &key) < 0)
            return -EBADMSG;
        switch (key & 7) {
        case 0:
            if (get_varint(&p, end, &v) < 0)
                return -EBADMSG;
            if (on_varint && on_varint(ctx, key >> 3, v) < 0)
                return -EBADMSG;
            break;
        case 1:
            if (end - p < 8)
                return -EBADMSG;
            p += 8;
            break;
        case 2:
            if (get_varint(&p, end, &v) < 0 || v > (uint64_t)(end - p))
                return -EBADMSG;
            if (on_len && on_len(ctx, key >> 3, p, (size_t)v) < 0)
                return -EBADMSG;
            p += v;
            break;
        case 5:
            if (end - p < 4)
                return -EBADMSG;
            p += 4;
            break;
        default:
            return -EBADMSG;
        }
    }
    return 0;
}

static int status_len(void *ctx, uint64_t field, const uint8_t *p, size_t n)
{
    raw_response_t *r = ctx;
    if (field == 2)
        r->message = (pp_str_t){(const char *)p, n};
    return 0;
}

static int status_varint(void *ctx, uint64_t field, uint64_t v)
{
    raw_response_t *r = ctx;
    if (field == 1)
        r->code = (int)(int32_t)v;
    return 0;
}

static int response_len(void *ctx, uint64_t field, const uint8_t *p, size_t n)
{
    raw_response_t *r = ctx;
    if (field == 1) {
        r->has_status = 1;
        return walk(p, n, status_len, status_varint, r);
    }
    if (field == 2)
        r->payload = (pp_str_t){(const char *)p, n};
    return 0;
}

static int raw_decode_response(const raw_frame_t *f, raw_response_t *out)
{
    memset(out, 0, sizeof(*out));
    if (f->type != PP_TTRPC_RESPONSE || f->payload == NULL)
        return -EBADMSG;
    return walk(f->payload, f->length, response_len, NULL, out);
}

static void hex(char *out, size_t cap, const uint8_t *p, size_t n)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && o + 4 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%02x", i ? " " : "", p[i]);
}

/* ---- wire checks -------------------------------------------------------- */

static void expect_frame(tctx_t *t, int fd, const char *name, uint32_t stream, const uint8_t *want,
                         size_t want_len, int check_bytes)
{
    raw_frame_t f;
    char got[128], exp[128];
    int r = raw_recv(fd, &f, 10000);
    if (r < 0) {
        report(t, 0, name, "recv: %s", strerror(-r));
        return;
    }
    hex(got, sizeof(got), f.payload, f.payload ? f.length : 0);
    hex(exp, sizeof(exp), want, want_len);
    if (f.stream_id != stream || f.type != PP_TTRPC_RESPONSE || f.flags != 0)
        report(t, 0, name, "header stream %u type %u flags %u, want %u 2 0", f.stream_id, f.type,
               f.flags, stream);
    else if (check_bytes && (f.length != want_len || memcmp(f.payload, want, want_len) != 0))
        report(t, 0, name, "payload %s, want %s", got, exp);
    else
        report(t, 1, name, "frame %s", got);
    free(f.payload);
}

static void send_req(int fd, uint32_t stream, const char *method, const char *payload)
{
    size_t len;
    cleanup_free uint8_t *req = raw_request(method, payload, strlen(payload), &len);
    if (req != NULL)
        raw_send(fd, stream, PP_TTRPC_REQUEST, req, len);
}

/* An OK answer as the server is expected to encode it. design.md: the
 * status is always present (0a 00); Go's v1.1.1 server leaves it out. */
static size_t ok_response(const tctx_t *t, const char *payload, uint8_t *out)
{
    uint8_t *p = out;
    if (!t->peer_is_go) {
        *p++ = 0x0a;
        *p++ = 0x00;
    }
    if (*payload)
        p = put_bytes(p, 0x12, payload, strlen(payload));
    return (size_t)(p - out);
}

static void check_wire(tctx_t *t)
{
    uint8_t want[64];
    size_t n;
    cleanup_close int fd = raw_connect(t->sock);
    if (fd < 0) {
        report(t, 0, "wire", "connect: %s", strerror(-fd));
        return;
    }
    if (t->peer_is_go)
        note("wire: OK response bytes", "Go's server omits the status on success");
    send_req(fd, 1, "Echo", "hi");
    n = ok_response(t, "hi", want);
    expect_frame(t, fd, "wire: OK response bytes", 1, want, n, 1);
    send_req(fd, 3, "Echo", "");
    n = ok_response(t, "", want);
    expect_frame(t, fd, "wire: OK response, empty payload", 3, want, n, 1);

    send_req(fd, 101, "Echo", "a");
    expect_frame(t, fd, "wire: non-consecutive stream id", 101, NULL, 0, 0);
    send_req(fd, 5, "Echo", "b");
    expect_frame(t, fd, "wire: lower stream id afterwards", 5, NULL, 0, 0);

    raw_send(fd, 7, PP_TTRPC_DATA, (const uint8_t *)"data", 4);
    send_req(fd, 9, "Echo", "c");
    expect_frame(t, fd, "wire: data frame ignored", 9, NULL, 0, 0);

    /* Go's server answers a request on an even stream id with
     * INVALID_ARGUMENT on that id. */
    raw_frame_t f;
    raw_response_t resp;
    send_req(fd, 10, "Echo", "even");
    int r = raw_recv(fd, &f, 10000);
    if (r < 0)
        report(t, 0, "wire: even stream id", "recv: %s", strerror(-r));
    else if (raw_decode_response(&f, &resp) < 0 || f.stream_id != 10 ||
             resp.code != PP_GRPC_INVALID_ARGUMENT)
        report(t, 0, "wire: even stream id", "stream %u code %d; want INVALID_ARGUMENT on 10",
               f.stream_id, resp.code);
    else
        report(t, 1, "wire: even stream id", "INVALID_ARGUMENT \"%.*s\"", (int)resp.message.n,
               resp.message.p);
    free(f.payload);

    /* A request that does not decode: Go answers INVALID_ARGUMENT and goes
     * on; ours drops the connection. */
    raw_send(fd, 11, PP_TTRPC_REQUEST, (const uint8_t *)"\x0a\xff", 2);
    r = raw_recv(fd, &f, 10000);
    if (r < 0 && !t->peer_is_go) {
        note("wire: undecodable request",
             "the server closed the connection (%s); Go's answers "
             "INVALID_ARGUMENT and keeps it",
             strerror(-r));
        return;
    }
    if (r < 0)
        report(t, 0, "wire: undecodable request", "recv: %s", strerror(-r));
    else if (raw_decode_response(&f, &resp) < 0 || f.stream_id != 11 ||
             resp.code != PP_GRPC_INVALID_ARGUMENT)
        report(t, 0, "wire: undecodable request", "stream %u code %d; want INVALID_ARGUMENT on 11",
               f.stream_id, resp.code);
    else
        report(t, 1, "wire: undecodable request", "INVALID_ARGUMENT \"%.*s\"", (int)resp.message.n,
               resp.message.p);
    free(f.payload);
    send_req(fd, 13, "Echo", "d");
    n = ok_response(t, "d", want);
    expect_frame(t, fd, "wire: afterwards", 13, want, n, 1);
}

/* ---- payload sizes and the frame limit ---------------------------------- */

/* The Echo payload size whose request, as our client encodes it (no
 * deadline, no metadata), is a frame body of exactly `body` bytes. */
static size_t request_payload_for(size_t body)
{
    size_t probe = body - 64, len;
    cleanup_free uint8_t *payload = calloc(1, probe);
    pp_ttrpc_request_t req = {
        .service = {PEER_SERVICE, strlen(PEER_SERVICE)},
        .method = {"Echo", 4},
        .payload = payload,
        .payload_len = probe,
    };
    uint8_t *frame;
    if (payload == NULL || pp_ttrpc_request_frame(&req, &frame, &len) < 0)
        return 0;
    free(frame);
    return probe + body - (len - PP_TTRPC_HEADER_SIZE);
}

static void check_sizes(tctx_t *t)
{
    size_t exact = request_payload_for(MAX_FRAME);
    const size_t sizes[] = {0, 1, 2, 127, 128, 1000, 4096, 65535, 65536, 1u << 20, 3u << 20, exact};
    uint32_t seed = 1;
    for (size_t i = 0; i < PP_ARRAY_SIZE(sizes); i++) {
        size_t n = sizes[i];
        char name[64];
        cleanup_free uint8_t *in = malloc(n ? n : 1);
        outcome_t o = {0};
        for (size_t j = 0; j < n; j++) {
            seed = seed * 1103515245u + 12345u;
            in[j] = (uint8_t)(seed >> 16);
        }
        snprintf(name, sizeof(name), "echo %zu B", n);
        int r = call(t, "Echo", in, n, 0, &o);
        if (r < 0 || o.code != 0)
            report(t, 0, name, "got %s (r=%d)", describe(&o), r);
        else if (o.payload_len != n || (n && memcmp(o.payload, in, n) != 0))
            report(t, 0, name, "payload differs: sent %zu B, got %zu B", n, o.payload_len);
        else
            report(t, 1, name, "round trip intact");
        outcome_reset(&o, t);
    }
}

static void check_request_limit(tctx_t *t)
{
    size_t exact = request_payload_for(MAX_FRAME);
    char name[96];
    outcome_t o = {0};
    cleanup_free uint8_t *in = calloc(1, exact + 1);
    if (in == NULL)
        return;

    /* Our client refuses to send a frame over the limit (Go's sends it). */
    snprintf(name, sizeof(name), "request frame 4 MiB + 1: client refuses");
    int r = start_call(t, t->cl, PEER_SERVICE, "Echo", in, exact + 1, 0, NULL, 0, &o);
    if (r == 0) {
        wait_pending(t, CALL_TIMEOUT);
        if (o.code == PP_GRPC_RESOURCE_EXHAUSTED)
            report(t, 1, name, "sent and rejected: %s", describe(&o));
        else
            report(t, 0, name, "got %s, want RESOURCE_EXHAUSTED or -EMSGSIZE", describe(&o));
    } else if (r == -EMSGSIZE) {
        report(t, 1, name, "pp_ttrpc_client_call: -EMSGSIZE");
    } else {
        report(t, 0, name, "pp_ttrpc_client_call: %s, want -EMSGSIZE", strerror(-r));
    }
    outcome_reset(&o, t);
    check_alive(t, "request frame 4 MiB + 1: client afterwards");

    /* The server's side, on a plain socket: exactly 4 MiB is served, one
     * byte more is discarded and answered RESOURCE_EXHAUSTED on its stream,
     * and the connection goes on. */
    cleanup_close int fd = raw_connect(t->sock);
    if (fd < 0) {
        report(t, 0, "request frame 4 MiB + 1 (wire)", "connect: %s", strerror(-fd));
        return;
    }
    for (size_t extra = 0; extra <= 1; extra++) {
        size_t len;
        cleanup_free uint8_t *req = raw_request("Echo", in, exact + extra, &len);
        raw_frame_t f;
        raw_response_t resp;
        snprintf(name, sizeof(name), "request frame %zu B (wire)", len);
        if (req == NULL || len != MAX_FRAME + extra) {
            report(t, 0, name, "encoded %zu B, want %zu", len, (size_t)MAX_FRAME + extra);
            return;
        }
        raw_send(fd, 21 + 2 * (uint32_t)extra, PP_TTRPC_REQUEST, req, len);
        r = raw_recv(fd, &f, CALL_TIMEOUT);
        if (r < 0) {
            report(t, 0, name, "recv: %s", strerror(-r));
            return;
        }
        r = raw_decode_response(&f, &resp);
        int want = extra ? PP_GRPC_RESOURCE_EXHAUSTED : 0;
        if (r < 0 || f.stream_id != 21 + 2 * extra || resp.code != want ||
            (!extra && resp.payload.n != exact))
            report(t, 0, name, "stream %u code %s payload %zu B; want %s on %u", f.stream_id,
                   code_name(resp.code), resp.payload.n, code_name(want), 21 + 2 * (unsigned)extra);
        else
            report(t, 1, name, "%s \"%.*s\"", code_name(resp.code), (int)resp.message.n,
                   resp.message.p);
        free(f.payload);
    }
    uint8_t want[32];
    send_req(fd, 25, "Echo", "alive");
    size_t n = ok_response(t, "alive", want);
    expect_frame(t, fd, "request frame 4 MiB + 1 (wire): afterwards", 25, want, n, 1);
}

/* How many bytes an OK Big answer adds to its payload, measured on the wire
 * (whether the server emits an empty status on success changes it). */
static long response_overhead(tctx_t *t, size_t probe)
{
    char num[32];
    raw_frame_t f;
    cleanup_close int fd = raw_connect(t->sock);
    if (fd < 0)
        return -1;
    snprintf(num, sizeof(num), "%zu", probe);
    send_req(fd, 1, "Big", num);
    if (raw_recv(fd, &f, CALL_TIMEOUT) < 0)
        return -1;
    free(f.payload);
    return (long)f.length - (long)probe;
}

static int is_pattern(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != peer_pattern_byte(i))
            return 0;
    return 1;
}

static void check_response_limit(tctx_t *t)
{
    long overhead = response_overhead(t, MAX_FRAME - 64);
    char name[96], num[32];
    outcome_t o = {0};
    if (overhead < 0) {
        report(t, 0, "response frame size", "probe failed");
        return;
    }
    size_t exact = MAX_FRAME - (size_t)overhead;

    snprintf(name, sizeof(name), "response frame 4 MiB (payload %zu B)", exact);
    snprintf(num, sizeof(num), "%zu", exact);
    int r = call(t, "Big", num, strlen(num), 0, &o);
    if (r < 0 || o.code != 0)
        report(t, 0, name, "got %s (r=%d)", describe(&o), r);
    else if (o.payload_len != exact || !is_pattern(o.payload, o.payload_len))
        report(t, 0, name, "payload differs: got %zu B", o.payload_len);
    else
        report(t, 1, name, "accepted, payload intact");

    /* Go's server sends the oversize frame; ours answers
     * RESOURCE_EXHAUSTED instead. Either way the caller must see
     * RESOURCE_EXHAUSTED and the connection must survive. */
    snprintf(name, sizeof(name), "response frame 4 MiB + 1 (payload %zu B)", exact + 1);
    snprintf(num, sizeof(num), "%zu", exact + 1);
    r = call(t, "Big", num, strlen(num), 0, &o);
    if (r < 0 || o.code != PP_GRPC_RESOURCE_EXHAUSTED)
        report(t, 0, name, "got %s (r=%d), want RESOURCE_EXHAUSTED", describe(&o), r);
    else
        report(t, 1, name, "rejected: %s", describe(&o));
    outcome_reset(&o, t);
    check_alive(t, "response frame 4 MiB + 1: afterwards");
}

/* ---- concurrency ------------------------------------------------------- */

static void check_concurrent(tctx_t *t)
{
    outcome_t *o = calloc(N_CONCURRENT, sizeof(*o));
    char **in = calloc(N_CONCURRENT, sizeof(*in));
    size_t *len = calloc(N_CONCURRENT, sizeof(*len));
    int bad = 0;
    if (o == NULL || in == NULL || len == NULL)
        goto out;
    for (size_t i = 0; i < N_CONCURRENT; i++) {
        char unit[32];
        int u = snprintf(unit, sizeof(unit), "call-%zu;", i);
        len[i] = (size_t)u * i * 5;
        in[i] = malloc(len[i] + 1);
        for (size_t j = 0; j < i * 5; j++)
            memcpy(in[i] + j * (size_t)u, unit, (size_t)u);
        if (start_call(t, t->cl, PEER_SERVICE, "Echo", in[i], len[i], 0, NULL, 0, &o[i]) < 0)
            o[i].code = -2;
    }
    wait_pending(t, CALL_TIMEOUT);
    for (size_t i = 0; i < N_CONCURRENT; i++) {
        const char *why = NULL;
        if (!o[i].done || o[i].code != 0)
            why = describe(&o[i]);
        else if (o[i].payload_len != len[i] || (len[i] && memcmp(o[i].payload, in[i], len[i])))
            why = "payload differs";
        if (why != NULL && bad++ < 5)
            report(t, 0, "256 concurrent echoes", "call %zu: %s", i, why);
        outcome_reset(&o[i], t);
    }
    if (bad == 0)
        report(t, 1, "256 concurrent echoes", "all answered, each with its own payload");

    /* 256 calls of 300 ms each finish in about 300 ms only if the server
     * runs them at the same time. */
    uint64_t start = now_ms();
    for (size_t i = 0; i < N_CONCURRENT; i++)
        if (start_call(t, t->cl, PEER_SERVICE, "Sleep", "300", 3, 0, NULL, 0, &o[i]) < 0)
            o[i].code = -2;
    wait_pending(t, CALL_TIMEOUT);
    uint64_t el = now_ms() - start;
    bad = 0;
    for (size_t i = 0; i < N_CONCURRENT; i++) {
        if (!o[i].done || o[i].code != 0 || o[i].payload_len != 5)
            bad++;
        outcome_reset(&o[i], t);
    }
    if (bad)
        report(t, 0, "256 concurrent sleeps", "%d calls failed", bad);
    else if (el > 3000)
        report(t, 0, "256 concurrent sleeps", "took %llu ms: not served concurrently",
               (unsigned long long)el);
    else
        report(t, 1, "256 concurrent sleeps", "256 x 300 ms in %llu ms", (unsigned long long)el);
out:
    for (size_t i = 0; in != NULL && i < N_CONCURRENT; i++)
        free(in[i]);
    free(in);
    free(len);
    free(o);
}

/* ---- statuses, metadata, unknown methods -------------------------------- */

static void check_statuses(tctx_t *t)
{
    static const char *long_unit = "long message ";
    char msg[4096], payload[4200], name[96];
    for (int i = 0; i <= 17; i++) {
        int code = i < 16 ? i + 1 : (i == 16 ? PP_GRPC_INTERNAL : PP_GRPC_NOT_FOUND);
        outcome_t o = {0};
        if (i < 16) {
            snprintf(msg, sizeof(msg), "status %d: ünïcødé ✓ \"quoted\" \\ 100%%s", code);
        } else if (i == 16) {
            msg[0] = '\0';
        } else {
            size_t u = strlen(long_unit);
            for (size_t j = 0; j < 300; j++)
                memcpy(msg + j * u, long_unit, u);
            msg[300 * u] = '\0';
        }
        int n = snprintf(payload, sizeof(payload), "%d:%s", code, msg);
        snprintf(name, sizeof(name), "status %s (%zu B message)", code_name(code), strlen(msg));
        int r = call(t, "Fail", payload, (size_t)n, 0, &o);
        if (r < 0 || !o.done)
            report(t, 0, name, "no answer (r=%d)", r);
        else if (o.code != code || strcmp(o.message, msg) != 0)
            report(t, 0, name, "got %s (%zu B message), want %s with the %zu B message",
                   describe(&o), strlen(o.message), code_name(code), strlen(msg));
        else
            report(t, 1, name, "code and message round trip");
        outcome_reset(&o, t);
    }
}

static void check_metadata(tctx_t *t)
{
#define KV(k, v)                                                                                   \
    {                                                                                              \
        {k, sizeof(k) - 1},                                                                        \
        {                                                                                          \
            v, sizeof(v) - 1                                                                       \
        }                                                                                          \
    }
    /* Wire order interleaves keys; the answer groups them, keys sorted,
     * values of a key in the order sent. */
    static const pp_ttrpc_kv_t md[] = {
        KV("pp-multi", "a"),      KV("pp-key", "v1"), KV("pp-multi", "b"),
        KV("pp-sym", "x=y z\t€"), KV("pp-empty", ""), KV("pp-multi", "c"),
    };
#undef KV
    static const char want[] =
        "pp-empty=\npp-key=v1\npp-multi=a\npp-multi=b\npp-multi=c\npp-sym=x=y z\t€\n";
    outcome_t o = {0};
    int r = start_call(t, t->cl, PEER_SERVICE, "Metadata", NULL, 0, 0, md, PP_ARRAY_SIZE(md), &o);
    if (r == 0)
        r = wait_pending(t, CALL_TIMEOUT);
    if (r < 0 || o.code != 0 || o.payload_len != sizeof(want) - 1 ||
        memcmp(o.payload, want, sizeof(want) - 1) != 0)
        report(t, 0, "metadata round trip", "got %s \"%.*s\"", describe(&o), (int)o.payload_len,
               o.payload ? (const char *)o.payload : "");
    else
        report(t, 1, "metadata round trip", "4 keys, 6 values, order within a key kept");

    r = call(t, "Metadata", NULL, 0, 0, &o);
    if (r < 0 || o.code != 0 || o.payload_len != 0)
        report(t, 0, "metadata: none", "got %s, %zu B", describe(&o), o.payload_len);
    else
        report(t, 1, "metadata: none", "server sees none");
    outcome_reset(&o, t);
}

static void check_unknown(tctx_t *t)
{
    static const char *cases[][2] = {
        {"pp.test.Nope", "Echo"},
        {PEER_SERVICE, "Nope"},
        {"", ""},
    };
    for (size_t i = 0; i < PP_ARRAY_SIZE(cases); i++) {
        char name[96];
        outcome_t o = {0};
        snprintf(name, sizeof(name), "unknown %s/%s", cases[i][0], cases[i][1]);
        int r = start_call(t, t->cl, cases[i][0], cases[i][1], "x", 1, 0, NULL, 0, &o);
        if (r == 0)
            r = wait_pending(t, CALL_TIMEOUT);
        if (r < 0 || o.code != PP_GRPC_UNIMPLEMENTED)
            report(t, 0, name, "got %s (r=%d), want UNIMPLEMENTED", describe(&o), r);
        else
            report(t, 1, name, "%s", describe(&o));
        outcome_reset(&o, t);
    }
    check_alive(t, "unknown method: afterwards");
}

/* ---- deadlines --------------------------------------------------------- */

/* Sends Sleep with `sent_ns` in the frame while the client enforces
 * `local_ns`, so the two ends can be tested apart. */
static int call_split_deadline(tctx_t *t, const char *ms, int64_t sent_ns, int64_t local_ns,
                               outcome_t *o)
{
    pp_ttrpc_request_t req = {
        .service = {PEER_SERVICE, strlen(PEER_SERVICE)},
        .method = {"Sleep", 5},
        .payload = (const uint8_t *)ms,
        .payload_len = strlen(ms),
        .timeout_nano = sent_ns,
    };
    uint8_t *frame;
    size_t len;
    int r = pp_ttrpc_request_frame(&req, &frame, &len);
    if (r < 0)
        return r;
    outcome_reset(o, t);
    r = pp_ttrpc_client_call_frame(t->cl, frame, len, local_ns, outcome_cb, o);
    if (r < 0)
        return r;
    t->pending++;
    return wait_pending(t, CALL_TIMEOUT);
}

static void check_deadlines(tctx_t *t)
{
    outcome_t o = {0};
    char buf[32] = "";
    int r = call(t, "Deadline", NULL, 0, 5000 * NS_PER_MS, &o);
    long left = -1;
    if (o.done && o.payload_len > 0 && o.payload_len < sizeof(buf)) {
        memcpy(buf, o.payload, o.payload_len);
        left = strtol(buf, NULL, 10);
    }
    if (r < 0 || o.code != 0)
        report(t, 0, "deadline: timeout_nano reaches server", "got %s", describe(&o));
    else if (left <= 3000 || left > 5000)
        report(t, 0, "deadline: timeout_nano reaches server",
               "server sees \"%s\" ms left, want (3000, 5000]", buf);
    else
        report(t, 1, "deadline: timeout_nano reaches server", "5 s sent, server sees %ld ms left",
               left);

    r = call(t, "Deadline", NULL, 0, 0, &o);
    if (r < 0 || o.code != 0 || o.payload_len != 4 || memcmp(o.payload, "none", 4) != 0)
        report(t, 0, "deadline: none sent", "got %s, want \"none\"", describe(&o));
    else
        report(t, 1, "deadline: none sent", "server sees no deadline");

    r = call(t, "Sleep", "20", 2, 2000 * NS_PER_MS, &o);
    if (r < 0 || o.code != 0 || o.payload_len != 5)
        report(t, 0, "deadline: call within deadline", "got %s", describe(&o));
    else
        report(t, 1, "deadline: call within deadline", "20 ms call under a 2 s deadline answered");

    /* The server enforces timeout_nano: 300 ms sent, nothing enforced here. */
    r = call_split_deadline(t, "3000", 300 * NS_PER_MS, 0, &o);
    if (r < 0 || o.code != PP_GRPC_DEADLINE_EXCEEDED || !o.from_server)
        report(t, 0, "deadline: server enforces timeout_nano",
               "got %s after %llu ms, want DEADLINE_EXCEEDED from the server", describe(&o),
               (unsigned long long)o.elapsed);
    else if (o.elapsed < 250 || o.elapsed > 2000)
        report(t, 0, "deadline: server enforces timeout_nano",
               "answered after %llu ms, want about 300", (unsigned long long)o.elapsed);
    else
        report(t, 1, "deadline: server enforces timeout_nano", "%s after %llu ms", describe(&o),
               (unsigned long long)o.elapsed);

    /* The client enforces its own: 300 ms here, 10 s told to the server. */
    r = call_split_deadline(t, "1500", 10000 * NS_PER_MS, 300 * NS_PER_MS, &o);
    if (r < 0 || o.code != PP_GRPC_DEADLINE_EXCEEDED || o.from_server)
        report(t, 0, "deadline: client enforces its own",
               "got %s after %llu ms, want a local DEADLINE_EXCEEDED", describe(&o),
               (unsigned long long)o.elapsed);
    else if (o.elapsed > 1200)
        report(t, 0, "deadline: client enforces its own", "returned after %llu ms, want about 300",
               (unsigned long long)o.elapsed);
    else
        report(t, 1, "deadline: client enforces its own", "%s after %llu ms", describe(&o),
               (unsigned long long)o.elapsed);
    outcome_reset(&o, t);
    check_alive(t, "deadline: client enforces its own: afterwards");

    /* Let the late answer arrive for the call given up on. */
    uint64_t end = now_ms() + 1500;
    while (now_ms() < end)
        uv_run(t->loop, UV_RUN_ONCE);
    check_alive(t, "deadline: late answer ignored");
}

/* ---- a client that goes away with calls in flight ----------------------- */

static void connect_cb(pp_ttrpc_client_t *c, int status, void *data)
{
    int *st = data;
    (void)c;
    *st = status;
}

static int connect_client(tctx_t *t, pp_ttrpc_client_t **out)
{
    pp_ttrpc_client_t *c;
    int status = 1;
    int r = pp_ttrpc_client_new(t->loop, &c);
    if (r < 0)
        return r;
    r = pp_ttrpc_client_connect_unix(c, t->sock, connect_cb, &status);
    if (r < 0) {
        pp_ttrpc_client_close(c, NULL, NULL);
        return r;
    }
    uint64_t end = now_ms() + 10000;
    while (status == 1 && now_ms() < end)
        uv_run(t->loop, UV_RUN_ONCE);
    if (status != 0) {
        pp_ttrpc_client_close(c, NULL, NULL);
        return status == 1 ? -ETIMEDOUT : status;
    }
    *out = c;
    return 0;
}

static void client_closed_cb(pp_ttrpc_client_t *c, void *data)
{
    int *closed = data;
    (void)c;
    *closed = 1;
}

static void check_disconnect(tctx_t *t)
{
    pp_ttrpc_client_t *c;
    outcome_t o[4];
    int closed = 0, bad = 0;
    memset(o, 0, sizeof(o));
    int r = connect_client(t, &c);
    if (r < 0) {
        report(t, 0, "disconnect with calls in flight", "connect: %s", strerror(-r));
        return;
    }
    for (size_t i = 0; i < 4; i++)
        if (start_call(t, c, PEER_SERVICE, "Sleep", "2000", 4, 0, NULL, 0, &o[i]) < 0)
            bad++;
    uint64_t end = now_ms() + 100;
    while (now_ms() < end)
        uv_run(t->loop, UV_RUN_ONCE);
    pp_ttrpc_client_close(c, client_closed_cb, &closed);
    wait_pending(t, 1000);
    end = now_ms() + 5000;
    while (!closed && now_ms() < end)
        uv_run(t->loop, UV_RUN_ONCE);
    for (size_t i = 0; i < 4; i++) {
        if (!o[i].done || o[i].code != PP_GRPC_CANCELLED)
            bad++;
        outcome_reset(&o[i], t);
    }
    if (bad || !closed)
        report(t, 0, "disconnect with calls in flight", "%d calls not CANCELLED, closed=%d", bad,
               closed);
    else
        report(t, 1, "disconnect with calls in flight", "4 calls CANCELLED locally");
    /* The server must have dropped those calls and still serve others. */
    check_alive(t, "disconnect with calls in flight: server");
}

/* ---- main -------------------------------------------------------------- */

int main(int argc, char **argv)
{
    tctx_t t = {.loop = uv_default_loop()};
    int closed = 0;

    if (argc != 3 || (strcmp(argv[2], "go") != 0 && strcmp(argv[2], "c") != 0)) {
        fprintf(stderr, "usage: c_client SOCKET go|c\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    t.sock = argv[1];
    t.peer_is_go = strcmp(argv[2], "go") == 0;
    printf("c client: server at %s (%s implementation)\n", t.sock, argv[2]);
    uv_timer_init(t.loop, &t.ticker);
    uv_timer_start(&t.ticker, ticker_cb, 50, 50);

    int r = connect_client(&t, &t.cl);
    if (r < 0) {
        report(&t, 0, "connect", "%s", strerror(-r));
        return 1;
    }
    check_wire(&t);
    check_sizes(&t);
    check_request_limit(&t);
    check_response_limit(&t);
    check_concurrent(&t);
    check_statuses(&t);
    check_metadata(&t);
    check_unknown(&t);
    check_deadlines(&t);
    check_disconnect(&t);

    pp_ttrpc_client_close(t.cl, client_closed_cb, &closed);
    uv_close((uv_handle_t *)&t.ticker, NULL);
    uv_run(t.loop, UV_RUN_DEFAULT);
    if (!closed)
        report(&t, 0, "close", "close callback did not fire");
    uv_loop_close(t.loop);
    printf("c client: %d passed, %d failed\n", t.passed, t.failed);
    return t.failed ? 1 : 0;
}
