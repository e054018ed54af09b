/* Pod indexes: one file per index held, `<dir>/<index>` containing the
 * owner, created with O_EXCL so the file system arbitrates between threads,
 * processes and restarts. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/net.h"
#include "util/cleanup.h"

/* What the object knows: a bit per index held, and the owners of those it
 * holds or saw, by name (open addressing, linear probing). */
typedef struct pp__podindex_mem_s {
    uint64_t *used;
    struct owner_s {
        char *name; /* NULL: empty */
        uint32_t index;
    } * tab;
    size_t cap, n; /* cap: a power of two */
} mem_t;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static size_t slot_of(const mem_t *m, const char *owner)
{
    size_t i = (size_t)hash_str(owner) & (m->cap - 1);
    while (m->tab[i].name != NULL && strcmp(m->tab[i].name, owner) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

/* The index `owner` holds as far as this object knows; -ENOENT. */
static int mem_find(const mem_t *m, const char *owner, uint32_t *index)
{
    const struct owner_s *e = &m->tab[slot_of(m, owner)];
    if (e->name == NULL)
        return -ENOENT;
    *index = e->index;
    return 0;
}

static int mem_put(mem_t *m, const char *owner, uint32_t index)
{
    if ((m->n + 1) * 2 > m->cap) {
        mem_t bigger = {.used = m->used, .cap = m->cap * 2};
        bigger.tab = calloc(bigger.cap, sizeof(*bigger.tab));
        if (bigger.tab == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < m->cap; i++)
            if (m->tab[i].name != NULL)
                bigger.tab[slot_of(&bigger, m->tab[i].name)] = m->tab[i];
        bigger.n = m->n;
        free(m->tab);
        *m = bigger;
    }
    struct owner_s *e = &m->tab[slot_of(m, owner)];
    if (e->name != NULL) {
        e->index = index;
        return 0;
    }
    e->name = strdup(owner);
    if (e->name == NULL)
        return -ENOMEM;
    e->index = index;
    m->n++;
    return 0;
}

/* Drops `owner` if it is known to hold `index`; moves later entries of
 * its run back so that lookups need no tombstones. */
static void mem_drop(mem_t *m, const char *owner, uint32_t index)
{
    size_t i = slot_of(m, owner);
    if (m->tab[i].name == NULL || m->tab[i].index != index)
        return;
    free(m->tab[i].name);
    m->tab[i].name = NULL;
    m->n--;
    for (size_t j = (i + 1) & (m->cap - 1); m->tab[j].name != NULL; j = (j + 1) & (m->cap - 1)) {
        size_t home = (size_t)hash_str(m->tab[j].name) & (m->cap - 1);
        /* Does j's entry belong between i (exclusive) and j? Then it stays. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            m->tab[i] = m->tab[j];
            m->tab[j].name = NULL;
            i = j;
        }
    }
}

static void mem_free(mem_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->tab[i].name);
    free(m->tab);
    free(m->used);
    free(m);
}

static void bit_set(mem_t *m, uint32_t i, bool on)
{
    if (on)
        m->used[i / 64] |= 1ULL << (i % 64);
    else
        m->used[i / 64] &= ~(1ULL << (i % 64));
}

/* The lowest index not known to be held at or after `from`; `limit` when none. */
static uint32_t first_free(const mem_t *m, uint32_t from, uint32_t limit)
{
    for (uint32_t w = from / 64; w * 64 < limit; w++) {
        uint64_t free_bits = ~m->used[w];
        if (w == from / 64)
            free_bits &= ~0ULL << (from % 64);
        if (free_bits != 0) {
            uint32_t i = w * 64 + (uint32_t)__builtin_ctzll(free_bits);
            return i < limit ? i : limit;
        }
    }
    return limit;
}

static int parse_index(const char *name, uint32_t limit, uint32_t *out);
static int read_owner(int dirfd, uint32_t index, char *buf, size_t len);

#define OWNER_MAX 255

/* Reads the directory into `m`: every index held, with its owner. */
static int mem_load(mem_t *m, int dirfd, uint32_t limit)
{
    int dfd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return -errno;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        uint32_t i, have;
        char who[OWNER_MAX + 2];
        if (parse_index(de->d_name, limit, &i) < 0)
            continue;
        bit_set(m, i, true);
        if (read_owner(dirfd, i, who, sizeof(who)) == 0 && mem_find(m, who, &have) < 0)
            rc = mem_put(m, who, i);
    }
    closedir(d);
    return rc;
}

int pp_podindex_open(pp_podindex_t *ix, const char *dir, uint32_t limit, pp_error_t *err)
{
    ix->dirfd = -1;
    ix->limit = 0;
    ix->mem = NULL;
    if (limit == 0 || limit > PP_VXLAN_ID_MAX + 1)
        return pp_error_set(err, -EINVAL, "pod index limit %u is not from 1 to %u", limit,
                            PP_VXLAN_ID_MAX + 1);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return pp_error_set(err, -errno, "create pod index directory `%s`: %s", dir,
                            strerror(errno));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return pp_error_set(err, -errno, "open pod index directory `%s`: %s", dir, strerror(errno));
    mem_t *m = calloc(1, sizeof(*m));
    int rc = m != NULL ? 0 : -ENOMEM;
    if (rc == 0) {
        m->cap = 64;
        m->tab = calloc(m->cap, sizeof(*m->tab));
        m->used = calloc((limit + 63) / 64, sizeof(uint64_t));
        rc = m->tab != NULL && m->used != NULL ? mem_load(m, fd, limit) : -ENOMEM;
    }
    if (rc < 0) {
        mem_free(m);
        close(fd);
        return pp_error_set(err, rc, "read pod index directory `%s`: %s", dir, strerror(-rc));
    }
    pthread_mutex_init(&ix->lock, NULL);
    ix->dirfd = fd;
    ix->limit = limit;
    ix->mem = m;
    return 0;
}

void pp_podindex_close(pp_podindex_t *ix)
{
    if (ix->dirfd >= 0) {
        close(ix->dirfd);
        pthread_mutex_destroy(&ix->lock);
    }
    mem_free(ix->mem);
    ix->mem = NULL;
    ix->dirfd = -1;
}

static bool owner_valid(const char *owner)
{
    size_t n = owner ? strlen(owner) : 0;
    return n > 0 && n <= OWNER_MAX && strchr(owner, '/') == NULL && strchr(owner, '\n') == NULL;
}

/* A file name that is an index: decimal, no leading zero, below limit. */
static int parse_index(const char *name, uint32_t limit, uint32_t *out)
{
    if (name[0] < '0' || name[0] > '9' || (name[0] == '0' && name[1] != '\0'))
        return -EINVAL;
    uint64_t v = 0;
    for (const char *p = name; *p; p++) {
        if (*p < '0' || *p > '9' || p - name > 8)
            return -EINVAL;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v >= limit)
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

static int read_owner(int dirfd, uint32_t index, char *buf, size_t len)
{
    char name[16];
    snprintf(name, sizeof(name), "%u", index);
    cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    ssize_t n;
    do
        n = read(fd, buf, len - 1);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return 0;
}

int pp_podindex_owner(pp_podindex_t *ix, uint32_t index, char *buf, size_t len)
{
    if (index >= ix->limit || len == 0)
        return -EINVAL;
    return read_owner(ix->dirfd, index, buf, len);
}

/* The directory, to read. A fresh open file description: a dup() would
 * share the read offset with concurrent callers. */
static int open_dir(pp_podindex_t *ix, DIR **out, pp_error_t *err)
{
    int dfd = openat(ix->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return pp_error_set(err, -errno, "pod index directory: %s", strerror(errno));
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        int e = errno;
        close(dfd);
        return pp_error_set(err, -e, "pod index directory: %s", strerror(e));
    }
    *out = d;
    return 0;
}

int pp_podindex_foreach(pp_podindex_t *ix, pp_podindex_cb cb, void *data, pp_error_t *err)
{
    cleanup_dir DIR *d = NULL;
    int r = open_dir(ix, &d, err);
    if (r < 0)
        return r;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint32_t i;
        char who[OWNER_MAX + 2];
        if (parse_index(de->d_name, ix->limit, &i) < 0 ||
            read_owner(ix->dirfd, i, who, sizeof(who)) < 0)
            continue;
        if ((r = cb(i, who, data)) != 0)
            return r;
    }
    return 0;
}

/* Takes `i` for `owner` with an O_EXCL file: 0, -EEXIST when another
 * has it (as the file system says), or another -errno with `err`. */
static int take(pp_podindex_t *ix, uint32_t i, const char *owner, pp_error_t *err)
{
    char name[16];
    snprintf(name, sizeof(name), "%u", i);
    cleanup_close int fd =
        openat(ix->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == EEXIST)
        return -EEXIST;
    if (fd < 0)
        return pp_error_set(err, -errno, "create pod index file `%s`: %s", name, strerror(errno));
    size_t len = strlen(owner);
    ssize_t w;
    do
        w = write(fd, owner, len);
    while (w < 0 && errno == EINTR);
    if (w != (ssize_t)len) {
        int e = w < 0 ? errno : EIO;
        unlinkat(ix->dirfd, name, 0);
        return pp_error_set(err, -e, "write pod index file `%s`: %s", name, strerror(e));
    }
    return 0;
}

static int acquire_locked(pp_podindex_t *ix, const char *owner, uint32_t *index, pp_error_t *err)
{
    mem_t *m = ix->mem;
    char who[OWNER_MAX + 2];
    uint32_t i;
    /* What it holds, if the file still says so (another process may have
     * released it since). */
    if (mem_find(m, owner, &i) == 0) {
        if (read_owner(ix->dirfd, i, who, sizeof(who)) == 0 && strcmp(who, owner) == 0) {
            *index = i;
            return 0;
        }
        mem_drop(m, owner, i);
        bit_set(m, i, false);
    }
    /* Lowest free first; an index made meanwhile by someone else is learnt
     * (and, were it this owner's, taken as its). */
    for (i = first_free(m, 0, ix->limit); i < ix->limit; i = first_free(m, i + 1, ix->limit)) {
        int rc = take(ix, i, owner, err);
        if (rc == -EEXIST) {
            bit_set(m, i, true);
            if (read_owner(ix->dirfd, i, who, sizeof(who)) == 0) {
                if (mem_put(m, who, i) < 0)
                    return pp_error_set(err, -ENOMEM, "out of memory");
                if (strcmp(who, owner) == 0) {
                    *index = i;
                    return 0;
                }
            }
            continue;
        }
        if (rc < 0)
            return rc;
        bit_set(m, i, true);
        if (mem_put(m, owner, i) < 0) {
            char name[16];
            snprintf(name, sizeof(name), "%u", i);
            unlinkat(ix->dirfd, name, 0);
            bit_set(m, i, false);
            return pp_error_set(err, -ENOMEM, "out of memory");
        }
        *index = i;
        return 0;
    }
    return pp_error_set(err, -ENOSPC, "all %u pod indexes are in use", ix->limit);
}

int pp_podindex_acquire(pp_podindex_t *ix, const char *owner, uint32_t *index, pp_error_t *err)
{
    if (!owner_valid(owner))
        return pp_error_set(err, -EINVAL, "pod index owner `%.64s` is not valid",
                            owner ? owner : "");
    pthread_mutex_lock(&ix->lock);
    int rc = acquire_locked(ix, owner, index, err);
    pthread_mutex_unlock(&ix->lock);
    return rc;
}

int pp_podindex_release(pp_podindex_t *ix, uint32_t index, const char *owner, pp_error_t *err)
{
    if (index >= ix->limit)
        return pp_error_set(err, -EINVAL, "pod index %u is not below %u", index, ix->limit);
    char who[OWNER_MAX + 2];
    pthread_mutex_lock(&ix->lock);
    int rc = read_owner(ix->dirfd, index, who, sizeof(who));
    if (rc == -ENOENT) {
        bit_set(ix->mem, index, false);
        pthread_mutex_unlock(&ix->lock);
        return 0;
    }
    if (rc < 0 && owner != NULL) {
        pthread_mutex_unlock(&ix->lock);
        return pp_error_set(err, rc, "read pod index %u: %s", index, strerror(-rc));
    }
    if (rc == 0 && owner != NULL && strcmp(who, owner) != 0) {
        pthread_mutex_unlock(&ix->lock);
        return pp_error_set(err, -EBUSY, "pod index %u is held by `%.64s`, not `%.64s`", index, who,
                            owner);
    }
    char name[16];
    snprintf(name, sizeof(name), "%u", index);
    if (unlinkat(ix->dirfd, name, 0) < 0 && errno != ENOENT) {
        int e = errno;
        pthread_mutex_unlock(&ix->lock);
        return pp_error_set(err, -e, "remove pod index %u: %s", index, strerror(e));
    }
    if (rc == 0)
        mem_drop(ix->mem, who, index);
    bit_set(ix->mem, index, false);
    pthread_mutex_unlock(&ix->lock);
    return 0;
}
