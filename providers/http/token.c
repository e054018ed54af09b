/* The credential cache of providers/http/token.h. */
#include "providers/http/token.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/cleanup.h"
#include "util/file.h"

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

/* --- credential files ---------------------------------------------------------- */

typedef struct file_read_s {
    uv_work_t work;
    size_t max;
    char *text;
    int status;
    pp_token_file_cb cb;
    void *data;
    char path[PATH_MAX];
} file_read_t;

static void file_read_work(uv_work_t *w)
{
    file_read_t *t = container_of(w, file_read_t, work);
    char *buf = NULL;
    size_t len = 0;
    /* `max` bytes or more: the file may hold more than a credential. */
    t->status = pp_file_read(t->path, t->max - 1, PP_FILE_SECRET, &buf, &len, NULL);
    if (t->status < 0)
        return;
    size_t size = len;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        len--;
    if (len == 0) {
        t->status = -ENODATA;
        explicit_bzero(buf, size);
        free(buf);
        return;
    }
    buf[len] = '\0';
    t->text = buf;
}

static void file_read_after(uv_work_t *w, int status)
{
    file_read_t *t = container_of(w, file_read_t, work);
    if (status < 0 && t->text != NULL) {
        explicit_bzero(t->text, strlen(t->text));
        free(t->text);
        t->text = NULL;
    }
    if (status < 0)
        t->status = status;
    t->cb(t->status, t->text, t->data);
    free(t);
}

int pp_token_file_read(uv_loop_t *loop, const char *path, size_t max, pp_token_file_cb cb,
                       void *data)
{
    if (path == NULL || path[0] == '\0' || strlen(path) >= PATH_MAX || max == 0 || cb == NULL)
        return -EINVAL;
    file_read_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->max = max;
    t->cb = cb;
    t->data = data;
    snprintf(t->path, sizeof(t->path), "%s", path);
    int r = uv_queue_work(loop, &t->work, file_read_work, file_read_after);
    if (r < 0)
        free(t);
    return r;
}
