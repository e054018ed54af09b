/* The credential cache of providers/http/token.h. */
#include "providers/http/token.h"

#include <errno.h>
#include <string.h>

void pp_token_cache_init(pp_token_cache_t *c, pp_token_fetch_fn fetch, void *arg)
{
    memset(c, 0, sizeof(*c));
    c->fetch = fetch;
    c->arg = arg;
}

time_t pp__token_refresh_at(time_t now, time_t expiration)
{
    if (expiration == 0)
        return 0;
    time_t life = expiration > now ? expiration - now : 0;
    time_t margin = life / 2 < PP_TOKEN_REFRESH_MARGIN_S ? life / 2 : PP_TOKEN_REFRESH_MARGIN_S;
    return expiration - margin;
}

int pp_token_cache_ensure(pp_token_cache_t *c, pp_token_waiter_t *w)
{
    if (c->valid && (c->expiration == 0 || time(NULL) < c->refresh_at))
        return 1;
    w->next = c->waiters;
    c->waiters = w;
    if (c->fetching)
        return 0;
    int r = c->fetch != NULL ? c->fetch(c, c->arg) : -EACCES;
    if (r < 0) {
        c->waiters = w->next;
        return r;
    }
    c->fetching = 1;
    return 0;
}

void pp_token_cache_done(pp_token_cache_t *c, int status, time_t expiration, const pp_error_t *err)
{
    if (status == 0) {
        c->valid = 1;
        c->expiration = expiration;
        c->refresh_at = pp__token_refresh_at(time(NULL), expiration);
        c->fetches++;
    }
    pp_token_waiter_t *w = c->waiters;
    c->waiters = NULL;
    c->fetching = 0;
    while (w != NULL) {
        pp_token_waiter_t *next = w->next;
        w->cb(status, err, w->data);
        w = next;
    }
}

void pp_token_cache_invalidate(pp_token_cache_t *c)
{
    c->valid = 0;
    c->refresh_at = 0;
}
