/* The sandbox object and the daemon's list of sandboxes (sandbox.h). */
#define _XOPEN_SOURCE 700
#include "sandbox.h"

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/log.h"

int caa_sandbox_new(caa_daemon_t *d, const char *id, caa_sandbox_t **out, pp_error_t *err)
{
    caa_sandbox_t *sb = calloc(1, sizeof(*sb));
    if (sb == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    if (strlen(id) >= sizeof(sb->id)) {
        free(sb);
        return pp_error_set(err, -EINVAL, "`%.64s...` is not a sandbox id", id);
    }
    memcpy(sb->id, id, strlen(id) + 1);
    sb->d = d;
    sb->pod_index = -1;
    *out = sb;
    return 0;
}

int caa_sandbox_paths(caa_daemon_t *d, caa_sandbox_t *sb, pp_error_t *err)
{
    int n = snprintf(sb->dir, sizeof(sb->dir), "%s/%s", d->cfg.pods_dir, sb->id);
    if (n < 0 || (size_t)n >= sizeof(sb->dir) ||
        (size_t)n + sizeof("/agent.ttrpc") > sizeof(sb->socket_path))
        return pp_error_set(err, -EINVAL,
                            "agent socket path for sandbox `%s` would pass the unix socket "
                            "limit of %zu bytes; use a shorter `PODS_DIR`",
                            sb->id, sizeof(sb->socket_path) - 1);
    memcpy(sb->socket_path, sb->dir, (size_t)n);
    memcpy(sb->socket_path + n, "/agent.ttrpc", sizeof("/agent.ttrpc"));
    return 0;
}

void caa_sandbox_forget_user_data(caa_sandbox_t *sb)
{
    if (sb->user_data != NULL)
        explicit_bzero(sb->user_data, sb->user_data_len);
    free(sb->user_data);
    sb->user_data = NULL;
    sb->user_data_len = 0;
}

void caa_sandbox_free(caa_sandbox_t *sb)
{
    caa_sandbox_forget_user_data(sb);
    free(sb->initdata_b64);
    free(sb->podnet);
    free(sb);
}

caa_sandbox_t *caa_sandbox_find(caa_daemon_t *d, const char *id)
{
    for (caa_sandbox_t *sb = d->sandboxes; sb != NULL; sb = sb->next)
        if (strcmp(sb->id, id) == 0)
            return sb;
    return NULL;
}

void caa_sandbox_link(caa_daemon_t *d, caa_sandbox_t *sb)
{
    sb->next = d->sandboxes;
    if (d->sandboxes)
        d->sandboxes->prev = sb;
    d->sandboxes = sb;
    d->nsandboxes++;
}

void caa_sandbox_unlink_free(caa_sandbox_t *sb)
{
    caa_daemon_t *d = sb->d;
    if (sb->prev)
        sb->prev->next = sb->next;
    else
        d->sandboxes = sb->next;
    if (sb->next)
        sb->next->prev = sb->prev;
    d->nsandboxes--;
    caa_sandbox_free(sb);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) < 0 && errno != ENOENT)
        PP_WARN("caa", "remove `%s`: %s", path, strerror(errno));
    return 0;
}

void caa_remove_dir(const char *dir)
{
    if (dir[0] == '\0')
        return;
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

void caa_instance_name(const char *pod, const char *sid, char out[64])
{
    char sid8[9];
    size_t n = strnlen(sid, 8);
    memcpy(sid8, sid, n);
    sid8[n] = '\0';
    /* "podvm-" + pod + "-" + sid8 <= 63 */
    size_t room = 63 - 6 - 1 - n;
    size_t plen = strlen(pod);
    if (plen > room)
        plen = room;
    snprintf(out, 64, "podvm-%.*s-%s", (int)plen, pod, sid8);
    for (char *p = out; *p; p++) {
        *p = (char)tolower((unsigned char)*p);
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            *p = '-';
    }
}
