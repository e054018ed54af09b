#include "guest_main.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "aa.h"
#include "cdh.h"
#include "rest.h"
#include "util/log.h"

int guest_socket_arg(const char *arg, const char *name, char *out, size_t size, pp_error_t *err)
{
    const char *p = strncmp(arg, "unix://", 7) == 0 ? arg + 7 : arg;
    if (p[0] != '/')
        return pp_error_set(err, -EINVAL, "`%s`: `%.64s` is not unix:///path or /path", name, arg);
    int r = snprintf(out, size, "%s", p);
    return r < 0 || (size_t)r >= size ? pp_error_set(err, -ENAMETOOLONG, "`%s`: too long", name)
                                      : 0;
}

int guest_tee_parse(const char *name, guest_tee_t *out, pp_error_t *err)
{
    for (int t = GUEST_TEE_TPM; t < GUEST_TEE_COUNT; t++)
        if (strcmp(name, guest_tee_name((guest_tee_t)t)) == 0) {
            *out = (guest_tee_t)t;
            return 0;
        }
    return pp_error_set(err, -EINVAL,
                        "`%.32s` is not one of tpm, snp, tdx, az-snp-vtpm, "
                        "az-tdx-vtpm",
                        name);
}

typedef struct run_s {
    uv_signal_t term, intr;
    enum guest_run_kind kind;
    void *svc;
    const char *log;
} run_t;

static void on_closed(void *data)
{
    run_t *run = data;
    run->svc = NULL;
    uv_close((uv_handle_t *)&run->term, NULL);
    uv_close((uv_handle_t *)&run->intr, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
    run_t *run = s->data;
    if (run->svc == NULL)
        return;
    PP_INFO(run->log, "signal %d: shutting down", signum);
    void *svc = run->svc;
    run->svc = (void *)1; /* closing */
    if (run->kind == GUEST_RUN_AA)
        guest_aa_close(svc, on_closed, run);
    else if (run->kind == GUEST_RUN_CDH)
        guest_cdh_close(svc, on_closed, run);
    else
        guest_rest_close(svc, on_closed, run);
    uv_signal_stop(&run->term);
    uv_signal_stop(&run->intr);
}

int guest_run(const char *log, const void *opts, enum guest_run_kind kind, pp_error_t *err)
{
    uv_loop_t loop;
    int r = uv_loop_init(&loop);
    if (r < 0)
        return pp_error_set(err, r, "loop: %s", uv_strerror(r));
    run_t run = {.kind = kind, .log = log};
    uv_signal_init(&loop, &run.term);
    uv_signal_init(&loop, &run.intr);
    run.term.data = run.intr.data = &run;
    if (kind == GUEST_RUN_AA)
        r = guest_aa_start(&loop, opts, (guest_aa_t **)&run.svc, err);
    else if (kind == GUEST_RUN_CDH)
        r = guest_cdh_start(&loop, opts, (guest_cdh_t **)&run.svc, err);
    else
        r = guest_rest_start(&loop, opts, (guest_rest_t **)&run.svc, err);
    if (r < 0) {
        uv_close((uv_handle_t *)&run.term, NULL);
        uv_close((uv_handle_t *)&run.intr, NULL);
    } else {
        uv_signal_start(&run.term, on_signal, SIGTERM);
        uv_signal_start(&run.intr, on_signal, SIGINT);
        PP_INFO(log, "serving");
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return r;
}
