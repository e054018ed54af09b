/* One fetched credential of a cloud provider (an access token, a set of
 * temporary keys), shared by everything that signs requests with it:
 * fetched when first needed, refreshed before it expires, one fetch at a
 * time with every caller that needs it waiting on that fetch.
 *
 * The cache keeps only the timing; the secret itself stays in the
 * provider's state, written by its fetch before pp_token_cache_done().
 *
 * Refresh: five minutes before expiry, or halfway through a shorter life.
 * A credential that never expires (expiration 0) is never refreshed unless
 * invalidated.
 *
 * Loop thread only. A waiter's callback fires exactly once, from
 * pp_token_cache_done(), unless pp_token_cache_ensure() returned 1 or a
 * negative errno for it. */
#ifndef PP_PROVIDERS_HTTP_TOKEN_H
#define PP_PROVIDERS_HTTP_TOKEN_H

#include <stddef.h>
#include <time.h>
#include <uv.h>

#include "util/error.h"

#define PP_TOKEN_REFRESH_MARGIN_S 300

typedef struct pp_token_cache_s pp_token_cache_t;

typedef void (*pp_token_ready_cb)(int status, const pp_error_t *err, void *data);

/* The caller's, linked into the cache while it waits. */
typedef struct pp_token_waiter_s {
    struct pp_token_waiter_s *next;
    pp_token_ready_cb cb;
    void *data;
} pp_token_waiter_t;

/* Starts a fetch that ends with pp_token_cache_done(), never from inside
 * this call; or fails synchronously with a negative errno. */
typedef int (*pp_token_fetch_fn)(pp_token_cache_t *c, void *arg);

struct pp_token_cache_s {
    pp_token_fetch_fn fetch;
    void *arg;
    int valid;         /* a credential is held */
    time_t expiration; /* 0 = never */
    time_t refresh_at; /* when to fetch a new one */
    int fetching;
    pp_token_waiter_t *waiters;
    unsigned fetches; /* successful fetches, for tests and logs */
};

void pp_token_cache_init(pp_token_cache_t *c, pp_token_fetch_fn fetch, void *arg);

/* 1: the credential is fresh and `w` is not used. 0: a fetch runs and
 * `w->cb` fires with its result. Negative: the fetch could not start. */
int pp_token_cache_ensure(pp_token_cache_t *c, pp_token_waiter_t *w);

/* Ends a fetch: on success (status 0) the credential, which expires at
 * `expiration` (0: never), is held; every waiter is called with the result. */
void pp_token_cache_done(pp_token_cache_t *c, int status, time_t expiration, const pp_error_t *err);

/* After an answer that says the credential expired or was revoked: the
 * next ensure fetches a new one. */
void pp_token_cache_invalidate(pp_token_cache_t *c);

/* A credential file read afresh for each fetch (a projected service
 * account token, which the kubelet rotates), on the threadpool, since the
 * file may sit on any file system. `cb` runs on the loop with the text
 * without its trailing whitespace, NUL-terminated (the callee's: clear it
 * and free it), or with NULL and a negative errno: the open's or read's,
 * -ENODATA when empty, -EFBIG at `max` bytes or more. Fails synchronously
 * (no callback) with a negative errno. */
typedef void (*pp_token_file_cb)(int status, char *text, void *data);
int pp_token_file_read(uv_loop_t *loop, const char *path, size_t max, pp_token_file_cb cb,
                       void *data);

/* The refresh time for a credential that expires at `expiration`, fetched
 * at `now`. */
time_t pp__token_refresh_at(time_t now, time_t expiration);

#endif
