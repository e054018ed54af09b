/* Network of the local provider: the namespace directory, the veth pair
 * between the node and a pod VM, and their addresses, all with libnl. The
 * node side uses the provider's socket; the VM side a socket opened inside
 * the VM namespace by the child that made it. */
#include "providers/local/local.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/magic.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>

#include "util/cleanup.h"
#include "util/file.h"

/* libnl errors -> errno, in this one place. */
static const struct {
    int nle;
    int err;
} nl_errors[] = {
    {NLE_INTR, EINTR},           {NLE_BAD_SOCK, EBADF},
    {NLE_AGAIN, EAGAIN},         {NLE_NOMEM, ENOMEM},
    {NLE_EXIST, EEXIST},         {NLE_INVAL, EINVAL},
    {NLE_RANGE, ERANGE},         {NLE_MSGSIZE, EMSGSIZE},
    {NLE_OPNOTSUPP, EOPNOTSUPP}, {NLE_AF_NOSUPPORT, EAFNOSUPPORT},
    {NLE_OBJ_NOTFOUND, ENOENT},  {NLE_NOADDR, EADDRNOTAVAIL},
    {NLE_BUSY, EBUSY},           {NLE_NOACCESS, EACCES},
    {NLE_PERM, EPERM},           {NLE_NODEV, ENODEV},
    {NLE_MSG_TRUNC, EMSGSIZE},   {NLE_DUMP_INTR, EINTR},
};

int pp__local_nl_errno(int nlerr)
{
    if (nlerr < 0)
        nlerr = -nlerr;
    if (nlerr == 0)
        return 0;
    for (size_t i = 0; i < PP_ARRAY_SIZE(nl_errors); i++)
        if (nl_errors[i].nle == nlerr)
            return -nl_errors[i].err;
    return -EIO;
}

static int nl_fail(pp_error_t *err, int nlerr, const char *what, const char *name)
{
    return pp_error_set(err, pp__local_nl_errno(nlerr), "%s `%s`: netlink: %s", what, name,
                        nl_geterror(nlerr));
}

int pp__local_netns_dir_prepare(const char *dir, pp_error_t *err)
{
    int rc = pp_mkdir_p(dir, 0755, NULL);
    if (rc < 0)
        return pp_error_set(err, rc, "create `%s`: %s", dir, strerror(-rc));
    /* The namespaces mounted here must reach other mount namespaces (a
     * containerized daemon's host): make the directory a shared mount point,
     * bind-mounting it on itself first when it is not one yet. */
    for (int bound = 0;; bound = 1) {
        if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) == 0)
            return 0;
        if (errno != EINVAL || bound)
            return pp_error_set(err, -errno, "make `%s` a shared mount: %s", dir, strerror(errno));
        if (mount(dir, dir, "none", MS_BIND | MS_REC, NULL) < 0)
            return pp_error_set(err, -errno, "bind-mount `%s` on itself: %s", dir, strerror(errno));
    }
}

int pp__local_netns_mounted(const char *path, dev_t *dev, ino_t *ino)
{
    struct statfs sfs;
    struct stat st;
    if (statfs(path, &sfs) < 0 || (unsigned long)sfs.f_type != (unsigned long)NSFS_MAGIC)
        return 0;
    if (stat(path, &st) < 0)
        return 0;
    if (dev != NULL)
        *dev = st.st_dev;
    if (ino != NULL)
        *ino = st.st_ino;
    return 1;
}

int pp__local_netns_remove(const char *path, pp_error_t *err)
{
    /* Lazily, like `ip netns delete`: a process still holding the mount
     * point open must not make this fail; the namespace goes with its last
     * user. */
    while (pp__local_netns_mounted(path, NULL, NULL)) {
        if (umount2(path, MNT_DETACH) < 0) {
            if (errno == EINVAL)
                break;
            return pp_error_set(err, -errno, "unmount `%s`: %s", path, strerror(errno));
        }
    }
    if (unlink(path) < 0 && errno != ENOENT)
        return pp_error_set(err, -errno, "remove `%s`: %s", path, strerror(errno));
    return 0;
}

static struct nl_addr *v4(uint32_t host_order, unsigned prefix)
{
    uint32_t be = htonl(host_order);
    struct nl_addr *a = nl_addr_build(AF_INET, &be, sizeof(be));
    if (a != NULL)
        nl_addr_set_prefixlen(a, (int)prefix);
    return a;
}

static int link_up(struct nl_sock *sk, const char *name, int *ifindex, pp_error_t *err)
{
    struct rtnl_link *link = NULL, *change = NULL;
    int rc = rtnl_link_get_kernel(sk, 0, name, &link);
    if (rc < 0)
        return nl_fail(err, rc, "find link", name);
    change = rtnl_link_alloc();
    if (change == NULL) {
        rtnl_link_put(link);
        return pp_error_set(err, -ENOMEM, "bring `%s` up: out of memory", name);
    }
    rtnl_link_set_flags(change, IFF_UP);
    rc = rtnl_link_change(sk, link, change, 0);
    if (ifindex != NULL)
        *ifindex = rtnl_link_get_ifindex(link);
    rtnl_link_put(change);
    rtnl_link_put(link);
    if (rc < 0)
        return nl_fail(err, rc, "bring up", name);
    return 0;
}

static int addr_add(struct nl_sock *sk, int ifindex, const char *ifname, uint32_t a,
                    unsigned prefix, pp_error_t *err)
{
    struct rtnl_addr *addr = rtnl_addr_alloc();
    struct nl_addr *local = v4(a, prefix);
    int rc = -NLE_NOMEM;
    if (addr != NULL && local != NULL) {
        rtnl_addr_set_ifindex(addr, ifindex);
        rtnl_addr_set_family(addr, AF_INET);
        rc = rtnl_addr_set_local(addr, local);
        if (rc == 0) {
            rtnl_addr_set_prefixlen(addr, (int)prefix);
            rc = rtnl_addr_add(sk, addr, 0);
        }
    }
    nl_addr_put(local);
    rtnl_addr_put(addr);
    if (rc < 0)
        return nl_fail(err, rc, "add address to", ifname);
    return 0;
}

static int default_route(struct nl_sock *sk, int ifindex, uint32_t gw, pp_error_t *err)
{
    struct rtnl_route *route = rtnl_route_alloc();
    struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
    struct nl_addr *dst = v4(0, 0), *via = v4(gw, 32);
    int rc = -NLE_NOMEM;
    if (route != NULL && nh != NULL && dst != NULL && via != NULL) {
        rtnl_route_set_family(route, AF_INET);
        rtnl_route_set_table(route, RT_TABLE_MAIN);
        rtnl_route_set_scope(route, RT_SCOPE_UNIVERSE);
        rtnl_route_set_protocol(route, RTPROT_BOOT);
        rc = rtnl_route_set_dst(route, dst);
        if (rc == 0) {
            rtnl_route_nh_set_ifindex(nh, ifindex);
            rtnl_route_nh_set_gateway(nh, via);
            rtnl_route_add_nexthop(route, nh);
            nh = NULL; /* the route owns it now */
            rc = rtnl_route_add(sk, route, NLM_F_CREATE | NLM_F_EXCL);
        }
    }
    if (nh != NULL)
        rtnl_route_nh_free(nh);
    nl_addr_put(dst);
    nl_addr_put(via);
    rtnl_route_put(route);
    if (rc < 0)
        return nl_fail(err, rc, "add default route in the VM via", PP_LOCAL_VM_IFNAME);
    return 0;
}

int pp__local_net_setup(struct nl_sock *node, pp__local_net_t *n, pp_error_t *err)
{
    struct nl_sock *vm = nl_socket_alloc();
    if (vm == NULL) {
        close(n->vm_nl_fd);
        n->vm_nl_fd = -1;
        return pp_error_set(err, -ENOMEM, "netlink socket: out of memory");
    }
    int rc = nl_socket_set_fd(vm, NETLINK_ROUTE, n->vm_nl_fd);
    if (rc < 0) {
        close(n->vm_nl_fd);
        n->vm_nl_fd = -1;
        nl_socket_free(vm);
        return nl_fail(err, rc, "adopt the netlink socket of the VM namespace for", n->link);
    }
    n->vm_nl_fd = -1; /* nl_socket_free closes it */

    /* The peer is born inside the VM namespace (IFLA_NET_NS_FD in its info),
     * so no half-made pair is ever left in the node's namespace. */
    struct rtnl_link *veth = rtnl_link_veth_alloc();
    if (veth == NULL) {
        nl_socket_free(vm);
        return pp_error_set(err, -ENOMEM, "veth: out of memory");
    }
    struct rtnl_link *peer = rtnl_link_veth_get_peer(veth);
    rtnl_link_set_name(veth, n->link);
    rtnl_link_set_name(peer, PP_LOCAL_VM_IFNAME);
    rtnl_link_set_ns_fd(peer, n->vm_ns_fd);
    rtnl_link_put(peer); /* get_peer took a reference */
    rc = rtnl_link_add(node, veth, NLM_F_CREATE | NLM_F_EXCL);
    rtnl_link_veth_release(veth);
    if (rc < 0) {
        nl_socket_free(vm);
        return nl_fail(err, rc, "create veth", n->link);
    }
    n->created = 1;

    int node_if = 0, vm_if = 0;
    rc = link_up(node, n->link, &node_if, err);
    if (rc == 0)
        rc = addr_add(node, node_if, n->link, n->node_addr, n->prefix, err);
    if (rc == 0)
        rc = link_up(vm, "lo", NULL, err);
    if (rc == 0) {
        struct rtnl_link *l = NULL;
        int r = rtnl_link_get_kernel(vm, 0, PP_LOCAL_VM_IFNAME, &l);
        if (r < 0)
            rc = nl_fail(err, r, "find link in the VM", PP_LOCAL_VM_IFNAME);
        else
            vm_if = rtnl_link_get_ifindex(l);
        rtnl_link_put(l);
    }
    if (rc == 0)
        rc = addr_add(vm, vm_if, PP_LOCAL_VM_IFNAME, n->vm_addr, n->prefix, err);
    if (rc == 0)
        rc = link_up(vm, PP_LOCAL_VM_IFNAME, NULL, err);
    if (rc == 0)
        rc = default_route(vm, vm_if, n->node_addr, err);
    nl_socket_free(vm);
    return rc;
}

int pp__local_net_remove(struct nl_sock *node, const char *link, pp_error_t *err)
{
    struct rtnl_link *l = NULL;
    int rc = rtnl_link_get_kernel(node, 0, link, &l);
    if (rc == -NLE_OBJ_NOTFOUND || rc == -NLE_NODEV)
        return 0;
    if (rc < 0)
        return nl_fail(err, rc, "find link", link);
    rc = rtnl_link_delete(node, l);
    rtnl_link_put(l);
    if (rc < 0 && rc != -NLE_OBJ_NOTFOUND && rc != -NLE_NODEV)
        return nl_fail(err, rc, "delete link", link);
    return 0;
}
