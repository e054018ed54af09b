/* Address pool of the local provider: LOCAL_SUBNET cut into /30 blocks, one
 * per pod VM, tracked in a bitmap. */
#include "providers/local/local.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SLOT_SIZE (1u << (32 - PP_LOCAL_SLOT_PREFIX))

int pp__local_pool_init(pp__local_pool_t *pool, const char *cidr)
{
    memset(pool, 0, sizeof(*pool));
    if (cidr == NULL)
        return -EINVAL;
    const char *slash = strchr(cidr, '/');
    if (slash == NULL || slash == cidr || (size_t)(slash - cidr) >= INET_ADDRSTRLEN)
        return -EINVAL;
    char host[INET_ADDRSTRLEN];
    memcpy(host, cidr, (size_t)(slash - cidr));
    host[slash - cidr] = '\0';
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1)
        return -EINVAL;

    /* strtoul accepts signs and blanks; the prefix is one or two digits. */
    const char *p = slash + 1;
    size_t nd = strspn(p, "0123456789");
    if (nd == 0 || nd > 2 || p[nd] != '\0')
        return -EINVAL;
    unsigned prefix = (unsigned)strtoul(p, NULL, 10);
    if (prefix < 8 || prefix > PP_LOCAL_SLOT_PREFIX)
        return -EINVAL;

    uint32_t base = ntohl(a.s_addr);
    uint32_t hostmask = (uint32_t)((1ull << (32 - prefix)) - 1);
    if (base & hostmask)
        return -EINVAL;

    uint32_t nslots = 1u << (PP_LOCAL_SLOT_PREFIX - prefix);
    uint8_t *used = calloc((nslots + 7) / 8, 1);
    if (used == NULL)
        return -ENOMEM;
    pool->base = base;
    pool->prefix = prefix;
    pool->nslots = nslots;
    pool->used = used;
    return 0;
}

void pp__local_pool_free(pp__local_pool_t *pool)
{
    free(pool->used);
    memset(pool, 0, sizeof(*pool));
}

int pp__local_pool_is_used(const pp__local_pool_t *pool, uint32_t slot)
{
    if (slot >= pool->nslots)
        return 1;
    return (pool->used[slot / 8] >> (slot % 8)) & 1;
}

int pp__local_pool_mark(pp__local_pool_t *pool, uint32_t slot)
{
    if (slot >= pool->nslots)
        return -ERANGE;
    if (pp__local_pool_is_used(pool, slot))
        return -EEXIST;
    pool->used[slot / 8] |= (uint8_t)(1u << (slot % 8));
    return 0;
}

void pp__local_pool_release(pp__local_pool_t *pool, uint32_t slot)
{
    if (slot < pool->nslots)
        pool->used[slot / 8] &= (uint8_t) ~(1u << (slot % 8));
}

int pp__local_pool_take(pp__local_pool_t *pool, int (*busy)(uint32_t slot, void *arg), void *arg,
                        uint32_t *slot)
{
    for (uint32_t s = 0; s < pool->nslots; s++) {
        if (pool->used[s / 8] == 0xff) {
            s |= 7; /* the whole byte is taken; the loop steps to the next one */
            continue;
        }
        if (pp__local_pool_is_used(pool, s))
            continue;
        if (busy != NULL && busy(s, arg))
            continue;
        pool->used[s / 8] |= (uint8_t)(1u << (s % 8));
        *slot = s;
        return 0;
    }
    return -ENOSPC;
}

int pp__local_pool_slot_of(const pp__local_pool_t *pool, uint32_t addr, uint32_t *slot)
{
    if (pool->nslots == 0 || addr < pool->base)
        return -ERANGE;
    uint64_t off = (uint64_t)addr - pool->base;
    if (off / SLOT_SIZE >= pool->nslots)
        return -ERANGE;
    *slot = (uint32_t)(off / SLOT_SIZE);
    return 0;
}

uint32_t pp__local_slot_node_addr(const pp__local_pool_t *pool, uint32_t slot)
{
    return pool->base + slot * SLOT_SIZE + 1;
}

uint32_t pp__local_slot_vm_addr(const pp__local_pool_t *pool, uint32_t slot)
{
    return pool->base + slot * SLOT_SIZE + 2;
}
