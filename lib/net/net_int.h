/* Internals of lib/net shared between its files (pp__ prefix). Everything
 * here works in the network namespace of the calling thread, which is one
 * made by pp_netns_run(). */
#ifndef PP_NET_INT_H
#define PP_NET_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "net/net.h"

struct nl_sock;
struct nl_cb;
struct nl_msg;

/* A NETLINK_ROUTE socket with extended acks, bound to the namespace of the
 * thread that opened it. */
typedef struct pp__nl_s {
    struct nl_sock *sk;
    struct nl_cb *cb;
    int kerr;      /* errno of the last kernel error ack, 0 if none */
    char ext[200]; /* its extended-ack message, "" if none */
    int done;
} pp__nl_t;

int pp__nl_open(pp__nl_t *nl, pp_error_t *err);
/* The same on `fd`, a NETLINK_ROUTE socket opened in another namespace
 * (by a process that was there), which it owns from then on, also on
 * failure. */
int pp__nl_adopt(pp__nl_t *nl, int fd, pp_error_t *err);
void pp__nl_close(pp__nl_t *nl);

/* Sends `msg` (not consumed) and waits for its ack. On failure returns
 * -errno (the kernel's own) and sets `err` to "<context>: <strerror>
 * (<extack>)", the context formatted from fmt. */
int pp__nl_talk(pp__nl_t *nl, struct nl_msg *msg, pp_error_t *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sets `err` from a libnl return code: "<context>: <libnl message>". */
int pp__nl_fail(pp_error_t *err, int nlerr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- links (link.c) ---- */

typedef struct pp__link_s {
    int ifindex; /* 0: no such link */
    bool is_vxlan;
    uint32_t vni;
    uint16_t port;
    struct in_addr remote;
    bool learning;
} pp__link_t;

/* Looks `name` up; out->ifindex is 0 when there is none. */
int pp__link_get(pp__nl_t *nl, const char *name, pp__link_t *out, const char *where,
                 pp_error_t *err);
int pp__link_del(pp__nl_t *nl, int ifindex, const char *name, const char *where, pp_error_t *err);
int pp__link_set_up(pp__nl_t *nl, int ifindex, const char *name, const char *where,
                    pp_error_t *err);
/* Turns IPv6 address generation off on a down link, then brings it up: a
 * device that only carries frames gets no link-local address and no
 * duplicate address detection (whose work would take the rtnl lock again
 * shortly after). The kernel refuses this setting at creation. */
int pp__link_make_wire(pp__nl_t *nl, int ifindex, const char *name, const char *where,
                       pp_error_t *err);

typedef struct pp__vxlan_spec_s {
    const char *name; /* name in the target namespace */
    uint32_t vni;
    uint16_t port;
    struct in_addr remote;
    int target_ns_fd;       /* namespace to place the device in */
    const uint8_t *hw_addr; /* NULL: kernel's choice */
    uint32_t mtu;           /* 0: kernel's choice */
    bool down;              /* leave it down (pp__link_make_wire brings it up) */
} pp__vxlan_spec_t;

/* Creates the vxlan with its UDP socket in the namespace of `nl`, placed
 * in target_ns_fd, learning off and up, in one request. */
int pp__vxlan_create(pp__nl_t *nl, const pp__vxlan_spec_t *v, const char *where, pp_error_t *err);

/* Creates a veth pair: `name` in the namespace of `nl`, `peer` born in
 * peer_ns_fd (so no half-made pair is ever left here), both down. */
int pp__veth_create(pp__nl_t *nl, const char *name, const char *peer, int peer_ns_fd,
                    const char *where, pp_error_t *err);

/* True if `l` is a vxlan with these parameters and learning off. */
bool pp__vxlan_matches(const pp__link_t *l, uint32_t vni, uint16_t port, struct in_addr remote);

int pp__addr_add(pp__nl_t *nl, int ifindex, const pp_ipv4_prefix_t *p, const char *where,
                 pp_error_t *err);
int pp__route_add(pp__nl_t *nl, int ifindex, const pp_route_t *r, const char *where,
                  pp_error_t *err);
int pp__neigh_add(pp__nl_t *nl, int ifindex, const pp_neighbor_t *n, const char *where,
                  pp_error_t *err);

/* ---- tc (tc.c) ---- */

/* Ingress qdisc on `src` (kept if present) and a filter at PP_TC_PRIO
 * redirecting everything to the egress of `dst`, replacing ours if present.
 * *classifier is a pp_tc_classifier_t, resolved from PP_TC_AUTO. */
int pp__tc_redirect_add(pp__nl_t *nl, int src, const char *src_name, int dst, int *classifier,
                        const char *where, pp_error_t *err);
/* Deletes our filter on `ifindex`, then the ingress qdisc if no filter is
 * left on it. Absent ones are not errors. */
int pp__tc_redirect_del(pp__nl_t *nl, int ifindex, const char *name, const char *where,
                        pp_error_t *err);

/* ---- nftables (nft.c) ---- */

/* A NETLINK_NETFILTER socket, bound to the namespace it was opened in. */
typedef struct pp__nft_s pp__nft_t;
int pp__nft_open(pp__nft_t **out, pp_error_t *err);
void pp__nft_close(pp__nft_t *n);
/* Exempts the tunnel `vni` (VXLAN over UDP to and from `peer`:port) from
 * connection tracking: one element of the table's set, the table, set and
 * rules made first when missing. Idempotent. */
int pp__nft_notrack_add(pp__nft_t *n, struct in_addr peer, uint16_t port, uint32_t vni,
                        pp_error_t *err);
/* Ends the exemption of `vni` (and removes rules of the older form for it);
 * then the table if nothing else is left in it. With `peer` (and its
 * port) the element is deleted at once; without (NULL), it is looked for
 * by its VNI, which lists the set. Idempotent. */
int pp__nft_notrack_del(pp__nft_t *n, uint32_t vni, const struct in_addr *peer, uint16_t port,
                        pp_error_t *err);

/* ---- inspection (inspect.c) ---- */

int pp__podns_inspect_here(const char *where, pp_podnet_t *out, pp_error_t *err);
int pp__node_primary_here(const char *where, const char *ifname, pp_node_if_t *out,
                          pp_error_t *err);

/* A label for messages: the path, or "the current namespace". */
const char *pp__ns_label(const char *path);

#endif
