/* The HTTP server on the loop (lib/httpd) fed arbitrary bytes from a
 * client over loopback TCP: whatever arrives, the server answers or closes
 * the connection, frees what it took, and serves the next client. The
 * handler reads every accessor and answers some requests later, from a
 * timer, as the daemons' handlers may. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "httpd/httpd.h"

typedef struct {
    uv_loop_t loop;
    pp_httpd_t *h;
    uv_timer_t later;
    pp_httpd_req_t *deferred;
} fz_t;

static void later_cb(uv_timer_t *t)
{
    fz_t *f = t->data;
    if (f->deferred != NULL)
        pp_httpd_respond(f->deferred, 202, "text/plain", "later", 5);
    f->deferred = NULL;
}

static void handler(pp_httpd_req_t *r, void *data)
{
    fz_t *f = data;
    size_t blen;
    const uint8_t *body = pp_httpd_body(r, &blen);
    const char *q = pp_httpd_query(r, "q"), *x = pp_httpd_header(r, "x");
    char out[256];
    int n = snprintf(out, sizeof(out), "%s %s %s %s %zu", pp_httpd_method(r), pp_httpd_path(r),
                     q ? q : "-", x ? x : "-", blen);
    if (blen > 0 && body[0] == 'L' && f->deferred == NULL) {
        f->deferred = r;
        uv_timer_start(&f->later, later_cb, 0, 0);
        return;
    }
    pp_httpd_respond(r, 200, "text/plain", out, (size_t)n);
}

static fz_t *server(void)
{
    static fz_t *f;
    if (f != NULL)
        return f;
    f = calloc(1, sizeof(*f));
    uv_loop_init(&f->loop);
    uv_timer_init(&f->loop, &f->later);
    f->later.data = f;
    /* A request cut short with its FIN is only closed by the deadline
     * (httpd.h): keep it short, or each such input costs the default. */
    pp_httpd_opts_t o = {
        .handler = handler, .data = f, .max_body = 256, .max_header = 2048, .timeout_ms = 20};
    pp_error_t err = {0};
    if (pp_httpd_start(&f->loop, &o, &f->h, &err) < 0) {
        fprintf(stderr, "fuzz_httpd: %s\n", err.message);
        abort();
    }
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t *f = server();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)pp_httpd_port(f->h)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        abort();
    /* Loopback takes this much without a reader. */
    if (size > 65536)
        size = 65536;
    if (size > 0 && send(fd, data, size, MSG_NOSIGNAL) < 0)
        abort();
    /* Closing at once, rather than half-closing and reading the answers,
     * lets the server see the hang-up as an event of its own: a FIN that
     * comes with the request is missed by libmicrohttpd (httpd.h). */
    close(fd);
    pp_httpd_stats_t st;
    do {
        uv_run(&f->loop, UV_RUN_ONCE);
        pp_httpd_stats(f->h, &st);
    } while (st.open > 0 || f->deferred != NULL);
    if (st.waiting != 0)
        abort();
    return 0;
}
