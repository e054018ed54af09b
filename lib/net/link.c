/* Links, addresses, routes and neighbours through libnl, one request each,
 * acknowledged, with the kernel's errno. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <string.h>

#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/link/vxlan.h>
#include <netlink/route/neighbour.h>
#include <netlink/route/route.h>

#include "net/net_int.h"
#include "util/cleanup.h"

int pp__link_get(pp__nl_t *nl, const char *name, pp__link_t *out, const char *where,
                 pp_error_t *err)
{
    memset(out, 0, sizeof(*out));
    cleanup_link struct rtnl_link *link = NULL;
    int rc = rtnl_link_get_kernel(nl->sk, 0, name, &link);
    if (rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV)
        return 0;
    if (rc < 0)
        return pp__nl_fail(err, rc, "look up `%s` in %s", name, where);
    out->ifindex = rtnl_link_get_ifindex(link);
    const char *type = rtnl_link_get_type(link);
    if (type == NULL || strcmp(type, "vxlan") != 0)
        return 0;
    out->is_vxlan = true;
    uint32_t v = 0;
    if (rtnl_link_vxlan_get_id(link, &v) == 0)
        out->vni = v;
    if (rtnl_link_vxlan_get_port(link, &v) == 0)
        out->port = (uint16_t)v;
    out->learning = rtnl_link_vxlan_get_learning(link) > 0;
    cleanup_nladdr struct nl_addr *group = NULL;
    if (rtnl_link_vxlan_get_group(link, &group) == 0 && group != NULL &&
        nl_addr_get_family(group) == AF_INET && nl_addr_get_len(group) == 4)
        memcpy(&out->remote, nl_addr_get_binary_addr(group), 4);
    return 0;
}

bool pp__vxlan_matches(const pp__link_t *l, uint32_t vni, uint16_t port, struct in_addr remote)
{
    return l->ifindex > 0 && l->is_vxlan && l->vni == vni && l->port == port &&
           l->remote.s_addr == remote.s_addr && !l->learning;
}

int pp__link_del(pp__nl_t *nl, int ifindex, const char *name, const char *where, pp_error_t *err)
{
    cleanup_link struct rtnl_link *link = rtnl_link_alloc();
    cleanup_nlmsg struct nl_msg *msg = NULL;
    if (link == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    rtnl_link_set_ifindex(link, ifindex);
    int rc = rtnl_link_build_delete_request(link, &msg);
    if (rc < 0)
        return pp__nl_fail(err, rc, "delete `%s` in %s", name, where);
    rc = pp__nl_talk(nl, msg, err, "delete `%s` in %s", name, where);
    return rc == -ENODEV ? 0 : rc;
}

int pp__link_set_up(pp__nl_t *nl, int ifindex, const char *name, const char *where, pp_error_t *err)
{
    cleanup_nlmsg struct nl_msg *msg = nlmsg_alloc_simple(RTM_NEWLINK, 0);
    struct ifinfomsg ifi = {
        .ifi_family = AF_UNSPEC,
        .ifi_index = ifindex,
        .ifi_flags = IFF_UP,
        .ifi_change = IFF_UP,
    };
    if (msg == NULL || nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0)
        return pp_error_set(err, -ENOMEM, "out of memory");
    return pp__nl_talk(nl, msg, err, "bring `%s` up in %s", name, where);
}

int pp__link_make_wire(pp__nl_t *nl, int ifindex, const char *name, const char *where,
                       pp_error_t *err)
{
    cleanup_nlmsg struct nl_msg *msg = nlmsg_alloc_simple(RTM_NEWLINK, 0);
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex};
    struct nlattr *spec, *inet6;
    if (msg == NULL || nlmsg_append(msg, &ifi, sizeof(ifi), NLMSG_ALIGNTO) < 0 ||
        (spec = nla_nest_start(msg, IFLA_AF_SPEC)) == NULL ||
        (inet6 = nla_nest_start(msg, AF_INET6)) == NULL ||
        nla_put_u8(msg, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE) < 0)
        return pp_error_set(err, -ENOMEM, "out of memory");
    nla_nest_end(msg, inet6);
    nla_nest_end(msg, spec);
    int rc = pp__nl_talk(nl, msg, err, "turn IPv6 addresses off on `%s` in %s", name, where);
    return rc < 0 ? rc : pp__link_set_up(nl, ifindex, name, where, err);
}

int pp__vxlan_create(pp__nl_t *nl, const pp__vxlan_spec_t *v, const char *where, pp_error_t *err)
{
    cleanup_link struct rtnl_link *link = rtnl_link_vxlan_alloc();
    cleanup_nladdr struct nl_addr *remote = nl_addr_build(AF_INET, &v->remote, 4);
    cleanup_nladdr struct nl_addr *hw = v->hw_addr ? nl_addr_build(AF_LLC, v->hw_addr, 6) : NULL;
    cleanup_nlmsg struct nl_msg *msg = NULL;
    if (link == NULL || remote == NULL || (v->hw_addr != NULL && hw == NULL))
        return pp_error_set(err, -ENOMEM, "out of memory");
    rtnl_link_set_name(link, v->name);
    /* Created by a socket of the underlay namespace, the device keeps its
     * UDP socket there while IFLA_NET_NS_FD places it in the pod's. */
    rtnl_link_set_ns_fd(link, v->target_ns_fd);
    if (!v->down)
        rtnl_link_set_flags(link, IFF_UP);
    if (hw != NULL)
        rtnl_link_set_addr(link, hw);
    if (v->mtu != 0)
        rtnl_link_set_mtu(link, v->mtu);
    int rc = rtnl_link_vxlan_set_id(link, v->vni);
    if (rc == 0)
        rc = rtnl_link_vxlan_set_group(link, remote);
    if (rc == 0)
        rc = rtnl_link_vxlan_set_port(link, v->port);
    if (rc == 0)
        rc = rtnl_link_vxlan_set_learning(link, 0);
    if (rc == 0)
        rc = rtnl_link_build_add_request(link, NLM_F_CREATE | NLM_F_EXCL, &msg);
    if (rc < 0)
        return pp__nl_fail(err, rc, "create vxlan `%s` (vni %u)", v->name, v->vni);
    return pp__nl_talk(nl, msg, err, "create vxlan `%s` (vni %u, port %u) in %s", v->name, v->vni,
                       (unsigned)v->port, where);
}

int pp__veth_create(pp__nl_t *nl, const char *name, const char *peer, int peer_ns_fd,
                    const char *where, pp_error_t *err)
{
    struct rtnl_link *veth = rtnl_link_veth_alloc();
    if (veth == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    struct rtnl_link *p = rtnl_link_veth_get_peer(veth);
    rtnl_link_set_name(veth, name);
    rtnl_link_set_name(p, peer);
    rtnl_link_set_ns_fd(p, peer_ns_fd); /* IFLA_NET_NS_FD in the peer's info */
    rtnl_link_put(p);                   /* get_peer took a reference */
    cleanup_nlmsg struct nl_msg *msg = NULL;
    int rc = rtnl_link_build_add_request(veth, NLM_F_CREATE | NLM_F_EXCL, &msg);
    rtnl_link_veth_release(veth);
    if (rc < 0)
        return pp__nl_fail(err, rc, "create veth `%s` in %s", name, where);
    return pp__nl_talk(nl, msg, err, "create veth `%s` (peer `%s`) in %s", name, peer, where);
}

int pp__addr_add(pp__nl_t *nl, int ifindex, const pp_ipv4_prefix_t *p, const char *where,
                 pp_error_t *err)
{
    char buf[32];
    struct rtnl_addr *a = rtnl_addr_alloc();
    cleanup_nladdr struct nl_addr *local = nl_addr_build(AF_INET, &p->addr, 4);
    cleanup_nlmsg struct nl_msg *msg = NULL;
    int rc = -NLE_NOMEM;
    if (a != NULL && local != NULL) {
        nl_addr_set_prefixlen(local, p->len);
        rtnl_addr_set_ifindex(a, ifindex);
        rtnl_addr_set_family(a, AF_INET);
        rc = rtnl_addr_set_local(a, local);
        if (rc == 0)
            rtnl_addr_set_prefixlen(a, p->len);
        if (rc == 0)
            rc = rtnl_addr_build_add_request(a, NLM_F_CREATE | NLM_F_REPLACE, &msg);
    }
    if (a != NULL)
        rtnl_addr_put(a);
    pp_ipv4_prefix_format(p, buf, sizeof(buf));
    if (rc < 0)
        return pp__nl_fail(err, rc, "add address %s in %s", buf, where);
    return pp__nl_talk(nl, msg, err, "add address %s in %s", buf, where);
}

int pp__route_add(pp__nl_t *nl, int ifindex, const pp_route_t *r, const char *where,
                  pp_error_t *err)
{
    char dst[32], gw[INET_ADDRSTRLEN] = "";
    pp_ipv4_prefix_format(&r->dst, dst, sizeof(dst));
    if (r->has_gw)
        inet_ntop(AF_INET, &r->gw, gw, sizeof(gw));

    struct rtnl_route *rt = rtnl_route_alloc();
    struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
    cleanup_nladdr struct nl_addr *d = nl_addr_build(AF_INET, &r->dst.addr, 4);
    cleanup_nladdr struct nl_addr *g = r->has_gw ? nl_addr_build(AF_INET, &r->gw, 4) : NULL;
    cleanup_nlmsg struct nl_msg *msg = NULL;
    int rc = -NLE_NOMEM;
    if (rt != NULL && nh != NULL && d != NULL && (!r->has_gw || g != NULL)) {
        nl_addr_set_prefixlen(d, r->dst.len);
        rtnl_route_set_family(rt, AF_INET);
        rtnl_route_set_table(rt, RT_TABLE_MAIN);
        rtnl_route_set_type(rt, RTN_UNICAST);
        rtnl_route_set_protocol(rt, r->protocol ? r->protocol : RTPROT_BOOT);
        /* As upstream: a route without a gateway is on-link. */
        rtnl_route_set_scope(rt, r->has_gw ? r->scope : RT_SCOPE_LINK);
        rc = rtnl_route_set_dst(rt, d);
        rtnl_route_nh_set_ifindex(nh, ifindex);
        if (g != NULL)
            rtnl_route_nh_set_gateway(nh, g);
        rtnl_route_add_nexthop(rt, nh);
        nh = NULL; /* the route owns it now */
        if (rc == 0)
            rc = rtnl_route_build_add_request(rt, NLM_F_CREATE | NLM_F_REPLACE, &msg);
    }
    if (nh != NULL)
        rtnl_route_nh_free(nh);
    if (rt != NULL)
        rtnl_route_put(rt);
    if (rc < 0)
        return pp__nl_fail(err, rc, "add route %s%s%s in %s", dst, gw[0] ? " via " : "", gw, where);
    return pp__nl_talk(nl, msg, err, "add route %s%s%s in %s", dst, gw[0] ? " via " : "", gw,
                       where);
}

int pp__neigh_add(pp__nl_t *nl, int ifindex, const pp_neighbor_t *n, const char *where,
                  pp_error_t *err)
{
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &n->ip, ip, sizeof(ip));
    struct rtnl_neigh *ne = rtnl_neigh_alloc();
    cleanup_nladdr struct nl_addr *dst = nl_addr_build(AF_INET, &n->ip, 4);
    cleanup_nladdr struct nl_addr *ll = nl_addr_build(AF_LLC, n->hw_addr, 6);
    cleanup_nlmsg struct nl_msg *msg = NULL;
    int rc = -NLE_NOMEM;
    if (ne != NULL && dst != NULL && ll != NULL) {
        rtnl_neigh_set_ifindex(ne, ifindex);
        rtnl_neigh_set_family(ne, AF_INET);
        rc = rtnl_neigh_set_dst(ne, dst);
        rtnl_neigh_set_lladdr(ne, ll);
        rtnl_neigh_set_state(ne, n->state);
        if (rc == 0)
            rc = rtnl_neigh_build_add_request(ne, NLM_F_CREATE | NLM_F_REPLACE, &msg);
    }
    if (ne != NULL)
        rtnl_neigh_put(ne);
    if (rc < 0)
        return pp__nl_fail(err, rc, "add neighbor %s in %s", ip, where);
    return pp__nl_talk(nl, msg, err, "add neighbor %s in %s", ip, where);
}
