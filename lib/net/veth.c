/* A veth pair between the caller's namespace and another, addressed and
 * routed: a pod VM of the local provider, which is a network namespace. */
#include "net/net.h"

#include <errno.h>
#include <string.h>

#include <linux/rtnetlink.h>

#include "net/net_int.h"

#define HERE  "the node's namespace"
#define THERE "the VM's namespace"

static int peer_setup(pp__nl_t *vm, const pp_veth_spec_t *v, pp_error_t *err)
{
    pp__link_t lo, peer;
    int rc = pp__link_get(vm, "lo", &lo, THERE, err);
    if (rc == 0 && lo.ifindex > 0)
        rc = pp__link_set_up(vm, lo.ifindex, "lo", THERE, err);
    if (rc == 0)
        rc = pp__link_get(vm, v->peer, &peer, THERE, err);
    if (rc == 0 && peer.ifindex == 0)
        rc = pp_error_set(err, -ENODEV, "`%s` is missing in %s", v->peer, THERE);
    if (rc == 0)
        rc = pp__addr_add(vm, peer.ifindex, &v->peer_addr, THERE, err);
    if (rc == 0)
        rc = pp__link_set_up(vm, peer.ifindex, v->peer, THERE, err);
    if (rc == 0) {
        pp_route_t def = {
            .has_gw = true,
            .gw = v->addr.addr,
            .protocol = RTPROT_BOOT,
            .scope = RT_SCOPE_UNIVERSE,
        };
        rc = pp__route_add(vm, peer.ifindex, &def, THERE, err);
    }
    return rc;
}

int pp_veth_setup(const pp_veth_spec_t *v, bool *created, pp_error_t *err)
{
    *created = false;
    pp__nl_t node, vm;
    int rc = pp__nl_adopt(&vm, v->peer_nl_fd, err);
    if (rc < 0)
        return rc;
    rc = pp__nl_open(&node, err);
    if (rc < 0) {
        pp__nl_close(&vm);
        return rc;
    }
    rc = pp__veth_create(&node, v->name, v->peer, v->peer_ns_fd, HERE, err);
    if (rc == 0) {
        *created = true;
        pp__link_t l;
        rc = pp__link_get(&node, v->name, &l, HERE, err);
        if (rc == 0 && l.ifindex == 0)
            rc = pp_error_set(err, -ENODEV, "`%s` is missing in %s", v->name, HERE);
        if (rc == 0)
            rc = pp__addr_add(&node, l.ifindex, &v->addr, HERE, err);
        if (rc == 0)
            rc = pp__link_set_up(&node, l.ifindex, v->name, HERE, err);
    }
    if (rc == 0)
        rc = peer_setup(&vm, v, err);
    pp__nl_close(&node);
    pp__nl_close(&vm);
    return rc;
}

int pp_link_delete(const char *name, pp_error_t *err)
{
    pp__nl_t nl;
    int rc = pp__nl_open(&nl, err);
    if (rc < 0)
        return rc;
    pp__link_t l;
    rc = pp__link_get(&nl, name, &l, HERE, err);
    if (rc == 0 && l.ifindex > 0)
        rc = pp__link_del(&nl, l.ifindex, name, HERE, err);
    pp__nl_close(&nl);
    return rc;
}
