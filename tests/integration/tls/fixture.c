#include "fixture.h"

#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/* ---- loop -------------------------------------------------------------- */

static void watchdog_cb(uv_timer_t *t)
{
    int *expired = t->data;
    *expired = 1;
}

static void run_while(fx_t *fx, int (*pending)(const void *), const void *arg, uint64_t ms)
{
    int expired = 0;
    uv_timer_t wd;
    uv_timer_init(&fx->loop, &wd);
    wd.data = &expired;
    uv_timer_start(&wd, watchdog_cb, ms, 0);
    while (pending(arg) && !expired)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    if (expired)
        fail_msg("timed out after %llu ms waiting on the loop", (unsigned long long)ms);
}

static int flag_unset(const void *p)
{
    return *(const int *)p == 0;
}

void fx_run_until(fx_t *fx, const int *flag, uint64_t ms)
{
    run_while(fx, flag_unset, flag, ms);
}

typedef struct count_s {
    const int *counter;
    int want;
} count_t;

static int count_short(const void *p)
{
    const count_t *c = p;
    return *c->counter < c->want;
}

void fx_run_until_count(fx_t *fx, const int *counter, int want, uint64_t ms)
{
    count_t c = {counter, want};
    run_while(fx, count_short, &c, ms);
}

static void for_cb(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

void fx_run_for(fx_t *fx, uint64_t ms)
{
    int done = 0;
    uv_timer_t t;
    uv_timer_init(&fx->loop, &t);
    t.data = &done;
    uv_timer_start(&t, for_cb, ms, 0);
    while (!done)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
}

int fx_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* ---- credentials ------------------------------------------------------- */

static void write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(data, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void make_cred(fx_t *fx, fx_cred_t *c, pp_ca_t *ca, const char *tag, pp_ca_kind_t kind,
                      const char *name, int expired)
{
    pp_ca_issue_t req = {.kind = kind, .name = name};
    if (expired) {
        req.not_before = -2 * 86400;
        req.not_after = -86400;
    }
    pp_error_t err = {0};
    assert_int_equal(pp_ca_issue(ca, &req, &c->cert, &c->key, &err), 0);
    snprintf(c->cert_file, sizeof(c->cert_file), "%s/%s.crt", fx->dir, tag);
    snprintf(c->key_file, sizeof(c->key_file), "%s/%s.key", fx->dir, tag);
    write_file(c->cert_file, c->cert);
    write_file(c->key_file, c->key);
}

static void free_cred(fx_cred_t *c)
{
    free(c->cert);
    pp_ca_secret_free(c->key);
}

int fx_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/pp-test-tls.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    char d[128];
    pp_error_t err = {0};
    snprintf(d, sizeof(d), "%s/ca", fx->dir);
    pp_ca_opts_t o = {.dir = d, .name = "test-node-ca"};
    assert_int_equal(pp_ca_load_or_create(&o, &fx->ca, &err), 0);
    snprintf(d, sizeof(d), "%s/other", fx->dir);
    pp_ca_opts_t o2 = {.dir = d, .name = "other-node-ca"};
    assert_int_equal(pp_ca_load_or_create(&o2, &fx->other_ca, &err), 0);
    snprintf(fx->ca_file, sizeof(fx->ca_file), "%s/ca/%s", fx->dir, PP_CA_CERT_FILE);
    snprintf(fx->other_ca_file, sizeof(fx->other_ca_file), "%s/other/%s", fx->dir, PP_CA_CERT_FILE);
    make_cred(fx, &fx->server, fx->ca, "server", PP_CA_SERVER, FX_NAME, 0);
    make_cred(fx, &fx->client, fx->ca, "client", PP_CA_CLIENT, "cloud-api-adaptor", 0);
    make_cred(fx, &fx->server_expired, fx->ca, "server-expired", PP_CA_SERVER, FX_NAME, 1);
    make_cred(fx, &fx->client_expired, fx->ca, "client-expired", PP_CA_CLIENT, "cloud-api-adaptor",
              1);
    make_cred(fx, &fx->server_other, fx->other_ca, "server-other", PP_CA_SERVER, FX_NAME, 0);
    make_cred(fx, &fx->client_other, fx->other_ca, "client-other", PP_CA_CLIENT,
              "cloud-api-adaptor", 0);
    *state = fx;
    return 0;
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int fx_teardown(void **state)
{
    fx_t *fx = *state;
    for (int i = 0; i < FX_MAX_PROCS; i++)
        if (fx->procs[i].used)
            fx_proc_kill(fx, &fx->procs[i]);
    if (fx->tls.srv != NULL && !fx->tls.closed)
        fx_server_stop(fx, &fx->tls);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    /* A failed test may leave handles behind: close what is left. */
    uv_walk(&fx->loop, close_walk_cb, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    for (int i = 0; i < FX_MAX_PROCS; i++) {
        pp_buf_free(&fx->procs[i].outb);
        pp_buf_free(&fx->procs[i].errb);
    }
    free_cred(&fx->server);
    free_cred(&fx->client);
    free_cred(&fx->server_expired);
    free_cred(&fx->client_expired);
    free_cred(&fx->server_other);
    free_cred(&fx->client_other);
    pp_ca_free(fx->ca);
    pp_ca_free(fx->other_ca);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

pp_tls_config_t fx_server_config(fx_t *fx, const fx_cred_t *cred)
{
    pp_tls_config_t c = {
        .cert_pem = cred->cert, .key_pem = cred->key, .ca_pem = pp_ca_cert_pem(fx->ca)};
    return c;
}

pp_tls_config_t fx_client_config(fx_t *fx, const fx_cred_t *cred, const char *ca_pem)
{
    pp_tls_config_t c = {.cert_pem = cred ? cred->cert : NULL,
                         .key_pem = cred ? cred->key : NULL,
                         .ca_pem = ca_pem ? ca_pem : pp_ca_cert_pem(fx->ca)};
    return c;
}

pp_tls_ctx_t *fx_ctx(pp_tls_role_t role, const pp_tls_config_t *cfg)
{
    pp_tls_ctx_t *ctx = NULL;
    pp_error_t err = {0};
    int r = pp_tls_ctx_new(role, cfg, &ctx, &err);
    if (r < 0)
        fail_msg("pp_tls_ctx_new: %s", err.message);
    return ctx;
}

/* ---- server ------------------------------------------------------------ */

static void h_echo(pp_ttrpc_call_t *call, void *data)
{
    (void)data;
    const pp_ttrpc_request_t *r = pp_ttrpc_call_request(call);
    pp_ttrpc_call_reply(call, r->payload, r->payload_len);
}

static void event_cb(pp_tls_acceptor_t *a, int status, const char *peer, const char *err_msg,
                     void *data)
{
    fx_t *fx = data;
    (void)a;
    (void)peer;
    if (fx->nevents == FX_MAX_EVENTS) {
        memmove(fx->events, fx->events + 1, sizeof(fx->events) - sizeof(fx->events[0]));
        fx->nevents--;
    }
    fx_event_t *e = &fx->events[fx->nevents++];
    e->status = status;
    snprintf(e->msg, sizeof(e->msg), "%s", err_msg ? err_msg : "ok");
}

void fx_server_start(fx_t *fx, fx_server_t *s, pp_tls_ctx_t *ctx)
{
    memset(s, 0, sizeof(*s));
    assert_int_equal(pp_ttrpc_server_new(&fx->loop, &s->srv), 0);
    assert_int_equal(pp_ttrpc_server_register(s->srv, FX_SERVICE, "Echo", h_echo, NULL), 0);
    pp_error_t err = {0};
    int r = -1;
    for (int i = 0; i < 20 && r < 0; i++) {
        s->port = fx_free_port();
        char hp[64];
        snprintf(hp, sizeof(hp), "127.0.0.1:%d", s->port);
        r = pp_ttrpc_server_listen_tcp(s->srv, hp, &err);
    }
    if (r < 0)
        fail_msg("listen: %s", err.message);
    if (ctx != NULL) {
        assert_int_equal(pp_tls_acceptor_new(s->srv, ctx, &s->acc, &err), 0);
        pp_tls_acceptor_on_event(s->acc, event_cb, fx);
    }
}

static void server_closed_cb(pp_ttrpc_server_t *srv, void *data)
{
    (void)srv;
    *(int *)data = 1;
}

void fx_server_stop(fx_t *fx, fx_server_t *s)
{
    if (s->acc != NULL)
        pp_tls_acceptor_free(s->acc);
    s->acc = NULL;
    pp_ttrpc_server_close(s->srv, 0, server_closed_cb, &s->closed);
    fx_run_until(fx, &s->closed, 10000);
    s->srv = NULL;
}

/* ---- client ------------------------------------------------------------ */

static void dial_cb(pp_tls_dial_t *d, int status, uv_stream_t *stream, pp_stream_filter_t *filter,
                    const char *err_msg, void *data)
{
    fx_client_t *c = data;
    (void)d;
    assert_false(c->done);
    c->status = status;
    if (status == 0) {
        assert_non_null(stream);
        assert_non_null(filter);
        assert_int_equal(pp_ttrpc_client_new(&c->fx->loop, &c->cli), 0);
        assert_int_equal(pp_ttrpc_client_open_filtered(c->cli, stream, filter), 0);
        c->filter = filter;
        snprintf(c->msg, sizeof(c->msg), "ok");
    } else {
        assert_null(stream);
        assert_null(filter);
        snprintf(c->msg, sizeof(c->msg), "%s", err_msg);
    }
    c->done = 1;
}

int fx_client_connect(fx_t *fx, fx_client_t *c, pp_tls_ctx_t *ctx, int port, const char *name)
{
    memset(c, 0, sizeof(*c));
    c->fx = fx;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    assert_int_equal(pp_tls_dial(&fx->loop, ctx, (struct sockaddr *)&sa, name, dial_cb, c, NULL),
                     0);
    fx_run_until(fx, &c->done, 15000);
    return c->status;
}

static void client_closed_cb(pp_ttrpc_client_t *cli, void *data)
{
    (void)cli;
    *(int *)data = 1;
}

void fx_client_close(fx_t *fx, fx_client_t *c)
{
    if (c->cli == NULL)
        return;
    int closed = 0;
    pp_ttrpc_client_close(c->cli, client_closed_cb, &closed);
    fx_run_until(fx, &closed, 10000);
    c->cli = NULL;
    c->filter = NULL;
}

/* ---- calls ------------------------------------------------------------- */

uint8_t *fx_pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
    return p;
}

typedef struct call_s {
    fx_batch_t *b;
    uint8_t *want;
    size_t size;
    char *msg;
    size_t msgn;
    int *code;
} call_t;

static void call_cb(pp_ttrpc_result_t *res, void *data)
{
    call_t *c = data;
    fx_batch_t *b = c->b;
    if (res->code == 0 && res->payload_len == c->size &&
        (c->size == 0 || memcmp(res->payload, c->want, c->size) == 0)) {
        b->ok++;
    } else if (b->failed_code == 0) {
        b->failed_code = res->code ? res->code : -1;
        snprintf(b->failed_msg, sizeof(b->failed_msg), "%.*s", (int)res->message.n, res->message.p);
    }
    if (c->code != NULL)
        *c->code = res->code;
    if (c->msg != NULL)
        snprintf(c->msg, c->msgn, "%.*s", (int)res->message.n, res->message.p);
    b->done++;
    free(c->want);
    free(c);
}

static void start_call(pp_ttrpc_client_t *cli, size_t size, unsigned seed, fx_batch_t *b, int *code,
                       char *msg, size_t msgn)
{
    call_t *c = calloc(1, sizeof(*c));
    c->b = b;
    c->size = size;
    c->want = fx_pattern(size, seed);
    c->code = code;
    c->msg = msg;
    c->msgn = msgn;
    pp_ttrpc_call_opts_t o = {.service = FX_SERVICE,
                              .method = "Echo",
                              .payload = c->want,
                              .payload_len = size,
                              .timeout_nano = 30000000000LL};
    int r = pp_ttrpc_client_call(cli, &o, call_cb, c);
    if (r < 0) {
        /* Failed synchronously: count it as answered. */
        b->done++;
        if (b->failed_code == 0) {
            b->failed_code = r;
            snprintf(b->failed_msg, sizeof(b->failed_msg), "call: %s", uv_strerror(r));
        }
        if (code != NULL)
            *code = r == -EMSGSIZE ? PP_GRPC_RESOURCE_EXHAUSTED : PP_GRPC_UNAVAILABLE;
        if (msg != NULL)
            snprintf(msg, msgn, "call: %s", uv_strerror(r));
        free(c->want);
        free(c);
    }
}

int fx_echo(fx_t *fx, pp_ttrpc_client_t *cli, size_t size, unsigned seed, char *msg, size_t msgn)
{
    fx_batch_t b = {0};
    int code = -1;
    start_call(cli, size, seed, &b, &code, msg, msgn);
    fx_run_until_count(fx, &b.done, 1, 30000);
    if (code == 0 && b.ok != 1)
        fail_msg("echo of %zu bytes came back different", size);
    return code;
}

void fx_echo_batch(fx_t *fx, pp_ttrpc_client_t *cli, const size_t *sizes, int n, fx_batch_t *b)
{
    (void)fx;
    for (int i = 0; i < n; i++)
        start_call(cli, sizes[i], (unsigned)i + 7, b, NULL, NULL, 0);
}

/* ---- processes --------------------------------------------------------- */

static void proc_handle_closed(uv_handle_t *h)
{
    fx_proc_t *p = h->data;
    p->closes--;
}

static void proc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = suggested;
}

static void proc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    fx_proc_t *p = s->data;
    pp_buf_t *b = s == (uv_stream_t *)&p->out ? &p->outb : &p->errb;
    if (n > 0)
        pp_buf_append(b, buf->base, (size_t)n);
    free(buf->base);
    if (n < 0 && !uv_is_closing((uv_handle_t *)s))
        uv_close((uv_handle_t *)s, proc_handle_closed);
}

static void proc_exit(uv_process_t *proc, int64_t status, int term_signal)
{
    fx_proc_t *p = proc->data;
    p->exited = 1;
    p->exit_status = status;
    p->term_signal = term_signal;
    uv_close((uv_handle_t *)proc, proc_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&p->in))
        uv_close((uv_handle_t *)&p->in, proc_handle_closed);
}

fx_proc_t *fx_spawn(fx_t *fx, char *const argv[])
{
    fx_proc_t *p = NULL;
    for (int i = 0; i < FX_MAX_PROCS && p == NULL; i++)
        if (!fx->procs[i].used)
            p = &fx->procs[i];
    assert_non_null(p);
    pp_buf_free(&p->outb);
    pp_buf_free(&p->errb);
    memset(p, 0, sizeof(*p));
    p->fx = fx;
    p->used = 1;
    pp_buf_init(&p->outb, 0);
    pp_buf_init(&p->errb, 0);
    uv_pipe_init(&fx->loop, &p->in, 0);
    uv_pipe_init(&fx->loop, &p->out, 0);
    uv_pipe_init(&fx->loop, &p->err, 0);
    p->in.data = p->out.data = p->err.data = p->proc.data = p;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&p->in},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->out},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&p->err},
    };
    uv_process_options_t o = {.exit_cb = proc_exit,
                              .file = argv[0],
                              .args = (char **)argv,
                              .stdio_count = 3,
                              .stdio = stdio};
    int r = uv_spawn(&fx->loop, &p->proc, &o);
    if (r < 0) {
        uv_close((uv_handle_t *)&p->in, NULL);
        uv_close((uv_handle_t *)&p->out, NULL);
        uv_close((uv_handle_t *)&p->err, NULL);
        uv_close((uv_handle_t *)&p->proc, NULL);
        p->used = 0;
        fail_msg("spawn `%s`: %s", argv[0], uv_strerror(r));
    }
    p->closes = 4;
    uv_read_start((uv_stream_t *)&p->out, proc_alloc, proc_read);
    uv_read_start((uv_stream_t *)&p->err, proc_alloc, proc_read);
    return p;
}

typedef struct wreq_s {
    uv_write_t req;
    char data[];
} wreq_t;

static void proc_write_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

void fx_proc_write(fx_proc_t *p, const void *data, size_t len)
{
    wreq_t *w = malloc(sizeof(*w) + len);
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&p->in, &b, 1, proc_write_cb) < 0)
        free(w);
}

static int has(const pp_buf_t *b, const char *needle)
{
    return b->len > 0 && memmem(b->data, b->len, needle, strlen(needle)) != NULL;
}

int fx_proc_has(const fx_proc_t *p, const char *needle)
{
    return has(&p->outb, needle) || has(&p->errb, needle);
}

typedef struct waitfor_s {
    const fx_proc_t *p;
    const char *needle;
    int *expired;
} waitfor_t;

int fx_proc_wait_for(fx_t *fx, fx_proc_t *p, const char *needle, uint64_t ms)
{
    int expired = 0;
    uv_timer_t wd;
    uv_timer_init(&fx->loop, &wd);
    wd.data = &expired;
    uv_timer_start(&wd, watchdog_cb, ms, 0);
    while (!fx_proc_has(p, needle) && !expired && !(p->exited && p->closes == 0))
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    return fx_proc_has(p, needle);
}

int64_t fx_proc_wait_exit(fx_t *fx, fx_proc_t *p, uint64_t ms)
{
    int expired = 0;
    uv_timer_t wd;
    uv_timer_init(&fx->loop, &wd);
    wd.data = &expired;
    uv_timer_start(&wd, watchdog_cb, ms, 0);
    while (!(p->exited && p->closes == 0) && !expired)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wd, NULL);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    if (!p->exited)
        fx_proc_kill(fx, p);
    return p->exited && p->term_signal == 0 ? p->exit_status : -1;
}

void fx_proc_kill(fx_t *fx, fx_proc_t *p)
{
    if (!p->used)
        return;
    if (!p->exited)
        uv_process_kill(&p->proc, SIGKILL);
    while (!(p->exited && p->closes == 0))
        uv_run(&fx->loop, UV_RUN_ONCE);
    p->used = 0;
}

void fx_proc_dump(const fx_proc_t *p, const char *label)
{
    fprintf(stderr, "---- %s stdout (%zu bytes):\n%.*s\n---- %s stderr:\n%.*s\n----\n", label,
            p->outb.len, (int)(p->outb.len > 4000 ? 4000 : p->outb.len), (const char *)p->outb.data,
            label, (int)(p->errb.len > 4000 ? 4000 : p->errb.len), (const char *)p->errb.data);
}

/* ---- events ------------------------------------------------------------ */

const fx_event_t *fx_find_event(fx_t *fx, int from, const char *needle)
{
    for (int i = fx->nevents - 1; i >= from && i >= 0; i--)
        if (strstr(fx->events[i].msg, needle) != NULL)
            return &fx->events[i];
    return NULL;
}

const fx_event_t *fx_wait_event(fx_t *fx, int from, uint64_t ms)
{
    fx_run_until_count(fx, &fx->nevents, from + 1, ms);
    return &fx->events[from];
}
