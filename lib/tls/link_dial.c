/* A ttrpc link dialer over TLS (tls.h, pp_tls_link_new()). It reaches TLS
 * only through the dial functions it is given, so it links no OpenSSL and is
 * part of libpeerpod: a program that loads TLS as a module passes the
 * module's functions. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls.h"
#include "ttrpc/link.h"

typedef struct tls_dialer_s {
    pp_tls_dial_fn dial_fn;
    pp_tls_dial_cancel_fn cancel_fn;
    pp_tls_ctx_t *ctx; /* borrowed */
    struct sockaddr_storage addr;
    char *server_name;
    pp_tls_dial_t *dial; /* in progress */
    pp_ttrpc_link_t *link;
} tls_dialer_t;

static void tls_dialed(pp_tls_dial_t *dl, int status, uv_stream_t *stream,
                       pp_stream_filter_t *filter, const char *err_msg, void *data)
{
    tls_dialer_t *d = data;
    (void)dl;
    d->dial = NULL;
    if (status < 0) {
        char why[300];
        snprintf(why, sizeof(why), "tls: %s", err_msg ? err_msg : uv_strerror(status));
        pp_ttrpc_link_dialed(d->link, status, NULL, NULL, why);
        return;
    }
    pp_ttrpc_link_dialed(d->link, 0, stream, filter, NULL);
}

static int tls_start(pp_ttrpc_link_t *l, uv_loop_t *loop, void *data)
{
    tls_dialer_t *d = data;
    d->link = l;
    return d->dial_fn(loop, d->ctx, (struct sockaddr *)&d->addr, d->server_name, tls_dialed, d,
                      &d->dial);
}

/* The dial calls back from inside its cancel. */
static void tls_cancel(pp_ttrpc_link_t *l, void *data)
{
    tls_dialer_t *d = data;
    (void)l;
    if (d->dial != NULL)
        d->cancel_fn(d->dial);
}

static void tls_free(void *data)
{
    tls_dialer_t *d = data;
    free(d->server_name);
    free(d);
}

static const pp_ttrpc_dialer_t tls_dialer = {
    .start = tls_start,
    .cancel = tls_cancel,
    .free = tls_free,
};

int pp_tls_link_new(uv_loop_t *loop, const pp_ttrpc_link_opts_t *o, pp_tls_dial_fn dial,
                    pp_tls_dial_cancel_fn cancel, pp_tls_ctx_t *ctx, const struct sockaddr *addr,
                    const char *server_name, pp_ttrpc_link_t **out)
{
    if (dial == NULL || cancel == NULL || ctx == NULL ||
        (addr->sa_family != AF_INET && addr->sa_family != AF_INET6))
        return -EINVAL;
    tls_dialer_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    d->dial_fn = dial;
    d->cancel_fn = cancel;
    d->ctx = ctx;
    memcpy(&d->addr, addr,
           addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    if (server_name != NULL && (d->server_name = strdup(server_name)) == NULL) {
        free(d);
        return -ENOMEM;
    }
    int r = pp_ttrpc_link_new(loop, o, &tls_dialer, d, out);
    if (r < 0)
        tls_free(d);
    return r;
}
