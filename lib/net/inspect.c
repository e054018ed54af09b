/* Inspection of a pod namespace made by a CNI plugin, and of the node. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <sys/socket.h>

#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>

#include "net/net_int.h"
#include "util/cleanup.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

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

/* ---- the node: raw dumps the kernel filters, nothing allocated per object ----
 *
 * The node's namespace holds a link, an address and often a route for
 * every pod (the CNI's veths, the pod VMs' links), so reading all of them
 * at each StartVM grew with the pods: libnl's caches allocate an object per
 * entry, and a link dump costs the kernel a walk of the namespace ids for
 * each veth. Here the default route comes from a dump of the main table's
 * unicast routes read in place, the interface from a request for that one
 * link, and its addresses from a dump the kernel limits to it
 * (NETLINK_GET_STRICT_CHK; a kernel without it sends all, which are
 * filtered here as well). */

typedef struct scan_s {
    int best;           /* routes: the default route's interface */
    uint32_t best_prio; /* ... and its metric */
    int ifindex;        /* addresses: of this interface */
    int n;              /* ... how many IPv4 ones */
    pp_ipv4_prefix_t first;
} scan_t;

static int route_scan_cb(struct nl_msg *msg, void *arg)
{
    scan_t *s = arg;
    struct nlmsghdr *h = nlmsg_hdr(msg);
    if (h->nlmsg_type != RTM_NEWROUTE || !nlmsg_valid_hdr(h, sizeof(struct rtmsg)))
        return NL_OK;
    const struct rtmsg *rtm = nlmsg_data(h);
    struct nlattr *tb[RTA_MAX + 1];
    if (rtm->rtm_family != AF_INET || rtm->rtm_dst_len != 0 || rtm->rtm_type != RTN_UNICAST ||
        nlmsg_parse(h, sizeof(*rtm), tb, RTA_MAX, NULL) < 0)
        return NL_OK;
    uint32_t table = tb[RTA_TABLE] != NULL ? nla_get_u32(tb[RTA_TABLE]) : rtm->rtm_table;
    /* A multipath route has no RTA_OIF: like the cache's reading, it has
     * no single interface. */
    if (table != RT_TABLE_MAIN || tb[RTA_OIF] == NULL)
        return NL_OK;
    int oif = (int)nla_get_u32(tb[RTA_OIF]);
    uint32_t prio = tb[RTA_PRIORITY] != NULL ? nla_get_u32(tb[RTA_PRIORITY]) : 0;
    if (oif > 0 && (s->best == 0 || prio < s->best_prio)) {
        s->best = oif;
        s->best_prio = prio;
    }
    return NL_OK;
}

static int addr_scan_cb(struct nl_msg *msg, void *arg)
{
    scan_t *s = arg;
    struct nlmsghdr *h = nlmsg_hdr(msg);
    if (h->nlmsg_type != RTM_NEWADDR || !nlmsg_valid_hdr(h, sizeof(struct ifaddrmsg)))
        return NL_OK;
    const struct ifaddrmsg *ifa = nlmsg_data(h);
    struct nlattr *tb[IFA_MAX + 1];
    if (ifa->ifa_family != AF_INET || (int)ifa->ifa_index != s->ifindex ||
        nlmsg_parse(h, sizeof(*ifa), tb, IFA_MAX, NULL) < 0)
        return NL_OK;
    struct nlattr *local = tb[IFA_LOCAL] != NULL ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
    if (local == NULL || nla_len(local) != 4)
        return NL_OK;
    if (s->n++ == 0) {
        memcpy(&s->first.addr, nla_data(local), 4);
        s->first.len = ifa->ifa_prefixlen;
    }
    return NL_OK;
}

/* Sends a dump request with `hdr` and runs `fn` on each answer. */
static int raw_dump(pp__nl_t *nl, int type, const void *hdr, size_t len,
                    int (*fn)(struct nl_msg *, void *), scan_t *s)
{
    struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
    if (cb == NULL)
        return -NLE_NOMEM;
    nl_cb_set(cb, NL_CB_VALID, NL_CB_CUSTOM, fn, s);
    int rc = nl_send_simple(nl->sk, type, NLM_F_DUMP, (void *)hdr, len);
    if (rc >= 0)
        rc = nl_recvmsgs(nl->sk, cb);
    nl_cb_put(cb);
    return rc < 0 ? rc : 0;
}

int pp__node_primary_here(const char *where, const char *ifname, pp_node_if_t *out, pp_error_t *err)
{
    memset(out, 0, sizeof(*out));
    pp__nl_t nl;
    int rc = pp__nl_open(&nl, err);
    if (rc < 0)
        return rc;
    int one = 1;
    setsockopt(nl_socket_get_fd(nl.sk), SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof(one));
    cleanup_link struct rtnl_link *link = NULL;

    scan_t s = {0};
    struct rtmsg rtm = {.rtm_family = AF_INET, .rtm_table = RT_TABLE_MAIN, .rtm_type = RTN_UNICAST};
    rc = raw_dump(&nl, RTM_GETROUTE, &rtm, sizeof(rtm), route_scan_cb, &s);
    if (rc < 0) {
        rc = pp__nl_fail(err, rc, "inspect %s", where);
        goto out;
    }
    int primary = s.best;
    if (ifname == NULL && primary == 0) {
        rc = pp_error_set(err, -ENETUNREACH,
                          "no default route in %s to find the node's primary interface", where);
        goto out;
    }
    rc = rtnl_link_get_kernel(nl.sk, ifname != NULL ? 0 : primary, ifname, &link);
    if (rc < 0 || link == NULL) {
        if (ifname != NULL)
            rc = pp_error_set(err, -ENODEV, "node interface `%s` does not exist in %s", ifname,
                              where);
        else
            rc = pp_error_set(err, -ENODEV, "interface %d vanished from %s", primary, where);
        goto out;
    }
    int ifindex = rtnl_link_get_ifindex(link);
    snprintf(out->name, sizeof(out->name), "%s", rtnl_link_get_name(link));
    out->dedicated = ifname != NULL && ifindex != primary;
    struct ifaddrmsg ifa = {.ifa_family = AF_INET, .ifa_index = (unsigned)ifindex};
    s.ifindex = ifindex;
    rc = raw_dump(&nl, RTM_GETADDR, &ifa, sizeof(ifa), addr_scan_cb, &s);
    if (rc < 0) {
        rc = pp__nl_fail(err, rc, "inspect %s", where);
        goto out;
    }
    if (s.n == 0) {
        rc = pp_error_set(err, -EADDRNOTAVAIL, "node interface `%s` in %s has no IPv4 address",
                          out->name, where);
        goto out;
    }
    out->ip = s.first;
    rc = 0;
out:
    pp__nl_close(&nl);
    return rc;
}
