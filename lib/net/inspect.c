/* Inspection of a pod namespace made by a CNI plugin, and of the node. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>

#include "net/net_int.h"
#include "util/cleanup.h"

/* The single-nexthop route's device and gateway. */
static int route_nh(struct rtnl_route *r, struct in_addr *gw, bool *has_gw)
{
    if (rtnl_route_get_nnexthops(r) != 1)
        return 0;
    struct rtnl_nexthop *nh = rtnl_route_nexthop_n(r, 0);
    struct nl_addr *g = rtnl_route_nh_get_gateway(nh);
    *has_gw = false;
    if (g != NULL && nl_addr_get_family(g) == AF_INET && nl_addr_get_len(g) == 4) {
        memcpy(gw, nl_addr_get_binary_addr(g), 4);
        *has_gw = true;
    }
    return rtnl_route_nh_get_ifindex(nh);
}

static bool is_main_unicast(struct rtnl_route *r)
{
    return rtnl_route_get_family(r) == AF_INET && rtnl_route_get_table(r) == RT_TABLE_MAIN &&
           rtnl_route_get_type(r) == RTN_UNICAST;
}

/* The interface of the default route with the lowest metric; 0 if none. */
static int default_route_ifindex(struct nl_cache *routes)
{
    int best = 0;
    uint32_t best_prio = 0;
    for (struct nl_object *o = nl_cache_get_first(routes); o; o = nl_cache_get_next(o)) {
        struct rtnl_route *r = (struct rtnl_route *)o;
        struct nl_addr *dst = rtnl_route_get_dst(r);
        if (!is_main_unicast(r) || (dst != NULL && nl_addr_get_prefixlen(dst) != 0))
            continue;
        struct in_addr gw;
        bool has_gw;
        int ifindex = route_nh(r, &gw, &has_gw);
        uint32_t prio = rtnl_route_get_priority(r);
        if (ifindex > 0 && (best == 0 || prio < best_prio)) {
            best = ifindex;
            best_prio = prio;
        }
    }
    return best;
}

/* The IPv4 addresses of `ifindex`: count, and the first. */
static int ipv4_addrs(struct nl_cache *addrs, int ifindex, pp_ipv4_prefix_t *first)
{
    int n = 0;
    for (struct nl_object *o = nl_cache_get_first(addrs); o; o = nl_cache_get_next(o)) {
        struct rtnl_addr *a = (struct rtnl_addr *)o;
        struct nl_addr *local = rtnl_addr_get_local(a);
        if (rtnl_addr_get_ifindex(a) != ifindex || rtnl_addr_get_family(a) != AF_INET ||
            local == NULL || nl_addr_get_len(local) != 4)
            continue;
        if (n++ == 0) {
            memcpy(&first->addr, nl_addr_get_binary_addr(local), 4);
            first->len = (uint8_t)rtnl_addr_get_prefixlen(a);
        }
    }
    return n;
}

static int collect_routes(struct nl_cache *routes, int ifindex, const char *ifname,
                          pp_podnet_t *out, const char *where, pp_error_t *err)
{
    for (struct nl_object *o = nl_cache_get_first(routes); o; o = nl_cache_get_next(o)) {
        struct rtnl_route *r = (struct rtnl_route *)o;
        uint8_t proto = rtnl_route_get_protocol(r);
        if (!is_main_unicast(r) ||
            (proto != RTPROT_BOOT && proto != RTPROT_STATIC && proto != RTPROT_DHCP))
            continue;
        pp_route_t rt = {0};
        if (route_nh(r, &rt.gw, &rt.has_gw) != ifindex)
            continue; /* Only the tunnelled interface's routes can follow the pod. */
        struct nl_addr *dst = rtnl_route_get_dst(r);
        if (dst != NULL && nl_addr_get_len(dst) == 4)
            memcpy(&rt.dst.addr, nl_addr_get_binary_addr(dst), 4);
        rt.dst.len = dst != NULL ? (uint8_t)nl_addr_get_prefixlen(dst) : 0;
        snprintf(rt.dev, sizeof(rt.dev), "%s", ifname);
        rt.protocol = proto;
        rt.scope = rtnl_route_get_scope(r);
        if (out->n_routes == PP_PODNET_MAX_ROUTES)
            return pp_error_set(err, -EINVAL, "%s has more than %d routes on `%s`", where,
                                PP_PODNET_MAX_ROUTES, ifname);
        out->routes[out->n_routes++] = rt;
    }
    return 0;
}

static int collect_neighbors(struct nl_cache *neighs, int ifindex, const char *ifname,
                             pp_podnet_t *out, const char *where, pp_error_t *err)
{
    for (struct nl_object *o = nl_cache_get_first(neighs); o; o = nl_cache_get_next(o)) {
        struct rtnl_neigh *n = (struct rtnl_neigh *)o;
        struct nl_addr *dst = rtnl_neigh_get_dst(n);
        struct nl_addr *ll = rtnl_neigh_get_lladdr(n);
        if (rtnl_neigh_get_ifindex(n) != ifindex || rtnl_neigh_get_family(n) != AF_INET ||
            !(rtnl_neigh_get_state(n) & NUD_PERMANENT) || dst == NULL ||
            nl_addr_get_len(dst) != 4 || ll == NULL || nl_addr_get_len(ll) != 6)
            continue;
        if (out->n_neighbors == PP_PODNET_MAX_NEIGHBORS)
            return pp_error_set(err, -EINVAL, "%s has more than %d permanent neighbors on `%s`",
                                where, PP_PODNET_MAX_NEIGHBORS, ifname);
        pp_neighbor_t *e = &out->neighbors[out->n_neighbors++];
        memcpy(&e->ip, nl_addr_get_binary_addr(dst), 4);
        memcpy(e->hw_addr, nl_addr_get_binary_addr(ll), 6);
        snprintf(e->dev, sizeof(e->dev), "%s", ifname);
        e->state = NUD_PERMANENT;
    }
    return 0;
}

int pp__podns_inspect_here(const char *where, pp_podnet_t *out, pp_error_t *err)
{
    memset(out, 0, sizeof(*out));
    pp__nl_t nl;
    int rc = pp__nl_open(&nl, err);
    if (rc < 0)
        return rc;
    cleanup_nlcache struct nl_cache *routes = NULL;
    cleanup_nlcache struct nl_cache *addrs = NULL;
    cleanup_nlcache struct nl_cache *neighs = NULL;
    cleanup_link struct rtnl_link *link = NULL;

    rc = rtnl_route_alloc_cache(nl.sk, AF_INET, 0, &routes);
    if (rc < 0) {
        rc = pp__nl_fail(err, rc, "list routes in %s", where);
        goto out;
    }
    int ifindex = default_route_ifindex(routes);
    if (ifindex == 0) {
        rc = pp_error_set(err, -ENETUNREACH, "no default route in %s", where);
        goto out;
    }
    rc = rtnl_link_get_kernel(nl.sk, ifindex, NULL, &link);
    if (rc < 0) {
        rc = pp__nl_fail(err, rc, "look up interface %d in %s", ifindex, where);
        goto out;
    }
    const char *name = rtnl_link_get_name(link);
    struct nl_addr *hw = rtnl_link_get_addr(link);
    if (name == NULL || hw == NULL || nl_addr_get_len(hw) != 6) {
        rc = pp_error_set(err, -EINVAL, "the default route's interface in %s is not ethernet",
                          where);
        goto out;
    }
    snprintf(out->interface, sizeof(out->interface), "%s", name);
    memcpy(out->pod_hw_addr, nl_addr_get_binary_addr(hw), 6);
    out->mtu = rtnl_link_get_mtu(link);

    rc = rtnl_addr_alloc_cache(nl.sk, &addrs);
    if (rc < 0) {
        rc = pp__nl_fail(err, rc, "list addresses in %s", where);
        goto out;
    }
    int n = ipv4_addrs(addrs, ifindex, &out->pod_ip);
    if (n == 0) {
        rc = pp_error_set(err, -EADDRNOTAVAIL, "interface `%s` in %s has no IPv4 address", name,
                          where);
        goto out;
    }
    if (n > 1) {
        rc = pp_error_set(err, -EINVAL, "interface `%s` in %s has %d IPv4 addresses, expected one",
                          name, where, n);
        goto out;
    }
    rc = collect_routes(routes, ifindex, name, out, where, err);
    if (rc < 0)
        goto out;
    rc = rtnl_neigh_alloc_cache(nl.sk, &neighs);
    if (rc < 0) {
        rc = pp__nl_fail(err, rc, "list neighbors in %s", where);
        goto out;
    }
    rc = collect_neighbors(neighs, ifindex, name, out, where, err);
out:
    pp__nl_close(&nl);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int pp__node_primary_here(const char *where, const char *ifname, pp_node_if_t *out, pp_error_t *err)
{
    memset(out, 0, sizeof(*out));
    pp__nl_t nl;
    int rc = pp__nl_open(&nl, err);
    if (rc < 0)
        return rc;
    cleanup_nlcache struct nl_cache *routes = NULL;
    cleanup_nlcache struct nl_cache *addrs = NULL;
    cleanup_nlcache struct nl_cache *links = NULL;

    rc = rtnl_route_alloc_cache(nl.sk, AF_INET, 0, &routes);
    if (rc == 0)
        rc = rtnl_link_alloc_cache(nl.sk, AF_UNSPEC, &links);
    if (rc == 0)
        rc = rtnl_addr_alloc_cache(nl.sk, &addrs);
    if (rc < 0) {
        rc = pp__nl_fail(err, rc, "inspect %s", where);
        goto out;
    }
    int primary = default_route_ifindex(routes);
    int ifindex = primary;
    if (ifname != NULL) {
        ifindex = rtnl_link_name2i(links, ifname);
        if (ifindex == 0) {
            rc = pp_error_set(err, -ENODEV, "node interface `%s` does not exist in %s", ifname,
                              where);
            goto out;
        }
    } else if (primary == 0) {
        rc = pp_error_set(err, -ENETUNREACH,
                          "no default route in %s to find the node's primary interface", where);
        goto out;
    }
    if (rtnl_link_i2name(links, ifindex, out->name, sizeof(out->name)) == NULL) {
        rc = pp_error_set(err, -ENODEV, "interface %d vanished from %s", ifindex, where);
        goto out;
    }
    out->dedicated = ifname != NULL && ifindex != primary;
    if (ipv4_addrs(addrs, ifindex, &out->ip) == 0) {
        rc = pp_error_set(err, -EADDRNOTAVAIL, "node interface `%s` in %s has no IPv4 address",
                          out->name, where);
        goto out;
    }
    rc = 0;
out:
    pp__nl_close(&nl);
    return rc;
}
