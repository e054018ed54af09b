/* Probes and metrics over HTTP (probe.h). */
#include "probe.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "context.h"
#include "httpd/httpd.h"
#include "metrics.h"
#include "util/log.h"

/* Bounds of the probe server: a probe or a scrape is one short GET. */
#define PROBE_MAX_HEADER 4096u
#define PROBE_TIMEOUT_MS 5000u
#define PROBE_MAX_CONNS  16u
/* The largest exposition sent; far above what the daemon's series take. */
#define PROBE_MAX_METRICS ((size_t)8 << 20)

static void text(pp_httpd_req_t *r, unsigned status, const char *msg)
{
    pp_httpd_respond(r, status, "text/plain; charset=utf-8", msg, strlen(msg));
}

/* The socket the kata shim calls is there and is ours to serve. */
static int socket_served(const caa_daemon_t *d)
{
    struct stat st;
    return d->hv != NULL && !d->stopping && stat(d->cfg.socket, &st) == 0 && S_ISSOCK(st.st_mode);
}

static void handler(pp_httpd_req_t *r, void *data)
{
    caa_daemon_t *d = data;
    const char *method = pp_httpd_method(r), *path = pp_httpd_path(r);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        text(r, 405, "method not allowed\n");
        return;
    }
    if (strcmp(path, "/startup") == 0) {
        if (!socket_served(d))
            text(r, 500, "the hypervisor socket is not served\n");
        else if (d->recovering)
            text(r, 500, "recovering the sandboxes found at start-up\n");
        else
            text(r, 200, "ok\n");
    } else if (strcmp(path, "/healthz") == 0) {
        text(r, 200, "ok\n");
    } else if (strcmp(path, "/metrics") == 0) {
        pp_buf_t b;
        pp_buf_init(&b, PROBE_MAX_METRICS);
        int rc = pp_metrics_render(d->metrics.registry, &b);
        if (rc < 0) {
            pp_buf_free(&b);
            PP_WARN("probe", "metrics: %s", strerror(-rc));
            text(r, 500, "metrics unavailable\n");
            return;
        }
        pp_httpd_respond_buf(r, 200, PP_METRICS_CONTENT_TYPE, &b);
        pp_buf_free(&b);
    } else {
        text(r, 404, "not found: /startup, /healthz, /metrics\n");
    }
}

int caa_probe_start(caa_daemon_t *d, pp_error_t *err)
{
    if (d->cfg.probe_port == 0)
        return 0;
    pp_httpd_opts_t o = {
        .name = "probe",
        .address = d->cfg.probe_address,
        .port = d->cfg.probe_port,
        .max_header = PROBE_MAX_HEADER,
        .timeout_ms = PROBE_TIMEOUT_MS,
        .max_conns = PROBE_MAX_CONNS,
        .handler = handler,
        .data = d,
    };
    int r = pp_httpd_start(d->loop, &o, &d->probe, err);
    if (r < 0)
        return pp_error_wrap(err, "`PROBE_PORT`");
    PP_INFO("caa", "probes and metrics on http://%s:%d/ (/startup, /healthz, /metrics)",
            d->cfg.probe_address, pp_httpd_port(d->probe));
    return 0;
}

void caa_probe_stop(caa_daemon_t *d)
{
    if (d->probe != NULL)
        pp_httpd_close(d->probe, NULL, NULL);
    d->probe = NULL;
}
