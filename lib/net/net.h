/* Pod networking: network namespaces, the pod-network configuration
 * (design.md §4), the pod index that picks the VNI, and the VXLAN tunnel
 * that joins a pod's namespace on the worker node to the pod namespace in
 * its VM.
 *
 *   node: pod netns `eth0` <-tc ingress, mirred redirect-> `vxlan1`
 *         (VNI = min id + index, remote = pod VM IP, UDP port 4789)
 *   VM:   vxlan to the worker node IP, moved into /run/netns/podns as the
 *         pod's interface, with the pod's MAC, IP, MTU, routes, neighbours
 *
 * Both ends exempt the tunnel's UDP from connection tracking with two rules
 * (raw prerouting and output, `notrack`) in our own nftables table
 * `inet peerpod`, commented `peerpod vni:<VNI>`; no other table is read or
 * written. The table is deleted with its last rule.
 *
 * Threads. setns() only ever happens on a thread made for it
 * (pp_netns_run), never on the caller's. Every function that touches a
 * namespace runs its work there and joins before returning, so any thread
 * may call it and the caller's namespace never changes. They block for a few
 * kernel round trips (tests/bench/net measures them); no function forks or
 * executes a program. Functions on distinct pods may run concurrently. The
 * one exception to "done when it returns": node teardown leaves deleting
 * the vxlan device to a thread of its own (see pp_node_tunnel_teardown).
 *
 * Errors: 0 or -errno, with `err` (may be NULL) filled with a message that
 * names the namespace and device. Kernel errors keep the kernel's errno and
 * its extended-ack text; libnl's own -NLE_* codes are mapped in one table
 * (pp_net_nlerr_to_errno). Setup failures undo what the call created. */
#ifndef PP_NET_NET_H
#define PP_NET_NET_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "util/error.h"

#define PP_IFNAMSIZ             16 /* IFNAMSIZ, with the terminating NUL */
#define PP_NETNS_DIR            "/run/netns"
#define PP_VXLAN_PORT_DEFAULT   4789
#define PP_VXLAN_MIN_ID_DEFAULT 555000u
#define PP_VXLAN_ID_MAX         0xffffffu
/* The node-side end of the tunnel, inside the pod's namespace. */
#define PP_POD_TUNNEL_IFNAME "vxlan1"
/* The VM-side interface MTU is min(mtu, this): room for 50 bytes of VXLAN
 * over IPv4 on a 1500-byte underlay. */
#define PP_VM_MTU_MAX 1450
#define PP_NFT_TABLE  "peerpod"
/* The tc filter priority of our redirects; teardown deletes this priority. */
#define PP_TC_PRIO 0x5050
/* Bounds of the pod-network arrays; larger inputs are errors. */
#define PP_PODNET_MAX_ROUTES    64
#define PP_PODNET_MAX_NEIGHBORS 64

/* ---- Namespaces ---------------------------------------------------------- */

/* Runs fn(arg) on a new thread that first setns()'d into the network
 * namespace at `netns_path` (NULL: stays in the caller's), and joins it.
 * Netlink sockets fn opens stay bound to that namespace. Returns fn's
 * result, or -errno when the namespace cannot be opened or entered (then fn
 * does not run): -ENOENT missing, -EINVAL not a network namespace. fn may
 * call pp_netns_enter() to move its thread on. */
int pp_netns_run(const char *netns_path, int (*fn)(void *), void *arg);

/* The same with an open namespace file descriptor (-1: the caller's). */
int pp_netns_run_fd(int netns_fd, int (*fn)(void *), void *arg);

/* Only on a thread started by pp_netns_run(): moves it into the namespace
 * `netns_fd`. -EPERM on any other thread. */
int pp_netns_enter(int netns_fd);

/* Opens a network namespace file (O_RDONLY|O_CLOEXEC) and checks that it is
 * one. Returns the fd, or -ENOENT ("network namespace `p` does not exist"),
 * -EINVAL (not a network namespace) or another -errno. */
int pp_netns_open(const char *netns_path, pp_error_t *err);

/* "/run/netns/<name>". -EINVAL for a bad name (empty, `/`, `.`, `..`, too
 * long), -ENAMETOOLONG if `len` is too small. */
int pp_netns_path(const char *name, char *buf, size_t len);
/* The reverse, for functions that take a name or a path (the VM-side
 * tunnel): a path directly under /run/netns gives the namespace's name
 * (`/run/netns/podns` -> `podns`), which they make when it is missing; any
 * other path comes back as it is, naming one that someone else made. */
const char *pp_netns_name_or_path(const char *path);

/* Creates the named namespace like `ip netns add`: /run/netns made a shared
 * mount point, a new namespace bind-mounted on /run/netns/<name>. With
 * `exist_ok` an existing one is kept (`*created` tells which; may be NULL);
 * otherwise -EEXIST. */
int pp_netns_create(const char *name, bool exist_ok, bool *created, pp_error_t *err);

/* Unmounts and removes /run/netns/<name>; 0 if it does not exist. */
int pp_netns_delete(const char *name, pp_error_t *err);

/* ---- Pod-network configuration -------------------------------------------- */

typedef struct pp_ipv4_prefix_s {
    struct in_addr addr; /* network byte order */
    uint8_t len;         /* 0..32 */
} pp_ipv4_prefix_t;

typedef struct pp_route_s {
    pp_ipv4_prefix_t dst; /* 0.0.0.0/0 for the default route */
    bool has_gw;
    struct in_addr gw;
    char dev[PP_IFNAMSIZ]; /* "" when absent */
    uint8_t protocol;      /* RTPROT_*; 0 when absent */
    uint8_t scope;         /* RT_SCOPE_* */
} pp_route_t;

typedef struct pp_neighbor_s {
    struct in_addr ip;
    uint8_t hw_addr[6];
    char dev[PP_IFNAMSIZ]; /* "" when absent */
    uint16_t state;        /* NUD_* */
} pp_neighbor_t;

/* design.md §4 `pod-network`; tunnel-type is always "vxlan". */
typedef struct pp_podnet_s {
    pp_ipv4_prefix_t pod_ip;
    uint8_t pod_hw_addr[6];
    char interface[PP_IFNAMSIZ];
    pp_ipv4_prefix_t worker_node_ip;
    size_t n_routes;
    pp_route_t routes[PP_PODNET_MAX_ROUTES];
    size_t n_neighbors;
    pp_neighbor_t neighbors[PP_PODNET_MAX_NEIGHBORS];
    uint32_t mtu;
    uint32_t index;
    uint16_t vxlan_port;
    uint32_t vxlan_id;
    bool dedicated;
    bool external_net_via_pod_vm;
} pp_podnet_t;

/* Encodes as upstream's Go does: keys in its struct order; a route's `dev`,
 * `protocol` (when 0) and `scope` (when universe) left out and an absent
 * `gw` written "", a neighbour's `dev` and `state` (when none) left out,
 * `vxlan-id` left out when 0, an empty list written null. *out is a new
 * reference. -EINVAL for values with no JSON form (an unknown protocol
 * number, port 0). */
int pp_podnet_to_json(const pp_podnet_t *c, json_t **out, pp_error_t *err);

/* The same as compact text; *out is malloc'd and NUL-terminated. */
int pp_podnet_encode(const pp_podnet_t *c, char **out, pp_error_t *err);

/* Strict decoding: every key known and of the right JSON type, addresses
 * and prefixes canonical dotted quads (route destinations without host
 * bits), MACs `xx:xx:xx:xx:xx:xx`, interface names valid, names from the
 * netlink tables, numbers in range (mtu 68..65535, vxlan-port 1..65535,
 * vxlan-id and index below 2^24). Required: podip, pod-hw-addr, interface,
 * worker-node-ip, tunnel-type ("vxlan"), mtu, index, vxlan-port. `routes`
 * and `neighbors` may be null or absent; `vxlan-id` defaults to 0,
 * `dedicated` and `external-net-via-pod-vm` to false, a neighbour's `state`
 * to "permanent". Errors name the key: "pod-network: `routes[1].gw`: `x`
 * is not an IPv4 address". */
int pp_podnet_from_json(const json_t *obj, pp_podnet_t *out, pp_error_t *err);
int pp_podnet_decode(const char *text, size_t len, pp_podnet_t *out, pp_error_t *err);

/* Netlink names ("boot", "link", "permanent") and back; NULL / -EINVAL when
 * unknown. Route protocols: static, boot, dhcp, kernel; scopes: universe,
 * site, link, host, nowhere; neighbour states: none, incomplete, reachable,
 * stale, delay, probe, failed, noarp, permanent. */
const char *pp_route_protocol_name(uint8_t protocol);
const char *pp_route_scope_name(uint8_t scope);
const char *pp_neigh_state_name(uint16_t state);
int pp_route_protocol_parse(const char *name, uint8_t *out);
int pp_route_scope_parse(const char *name, uint8_t *out);
int pp_neigh_state_parse(const char *name, uint16_t *out);

/* "a.b.c.d/n" (host bits allowed, as for an interface address). */
int pp_ipv4_prefix_parse(const char *s, pp_ipv4_prefix_t *out);
/* Writes "a.b.c.d/n"; buf needs 19 bytes. */
const char *pp_ipv4_prefix_format(const pp_ipv4_prefix_t *p, char *buf, size_t len);
/* "xx:xx:xx:xx:xx:xx", lower or upper case hex. */
int pp_mac_parse(const char *s, uint8_t mac[6]);
/* Writes lower-case "xx:xx:xx:xx:xx:xx"; buf needs 18 bytes. */
const char *pp_mac_format(const uint8_t mac[6], char *buf, size_t len);
/* A name the kernel accepts for an interface. */
bool pp_ifname_valid(const char *name);

/* ---- Inspection -------------------------------------------------------- */

/* Inspects the pod namespace a CNI made: the interface of the default route
 * (lowest metric in the main table), its one IPv4 address with prefix, MAC
 * and MTU; the main table's IPv4 unicast routes of protocol boot, static or
 * dhcp through that interface, in kernel order; its permanent IPv4
 * neighbours. Fills pod_ip, pod_hw_addr, interface, mtu, routes, neighbors
 * of `out` (the rest is zeroed). Errors: -ENOENT the namespace is missing,
 * -ENETUNREACH no default route, -EADDRNOTAVAIL no IPv4 address, -EINVAL
 * more than one IPv4 address (or too many routes / neighbours). */
int pp_podns_inspect(const char *pod_netns, pp_podnet_t *out, pp_error_t *err);

typedef struct pp_node_if_s {
    char name[PP_IFNAMSIZ];
    pp_ipv4_prefix_t ip; /* its first IPv4 address */
    bool dedicated;      /* an override named another interface than the primary */
} pp_node_if_t;

/* The node's primary interface (that of the default route) in `host_netns`
 * (NULL: the caller's), or the interface named `ifname` when not NULL. */
int pp_node_primary(const char *host_netns, const char *ifname, pp_node_if_t *out, pp_error_t *err);

/* ---- Pod index ---------------------------------------------------------- */

/* Indexes 0..limit-1, each held by one owner (a sandbox id), persisted as
 * one file per index in a directory (`<dir>/<index>` holding the owner,
 * created with O_EXCL), so a restarted daemon never hands out an index in
 * use and two processes never hand out the same one. The object keeps what
 * it read at open and what it did since in memory, so acquiring costs a
 * file or two, not a read of every index held; the files still arbitrate
 * (an index another process took is found taken at its O_EXCL and skipped).
 * Not bound to a loop; calls on one object from several threads are safe. */
typedef struct pp_podindex_s {
    int dirfd;
    uint32_t limit;
    pthread_mutex_t lock;
    struct pp__podindex_mem_s *mem; /* private */
} pp_podindex_t;

/* Opens (creating, mode 0700, one level) the directory, and reads the
 * indexes held. */
int pp_podindex_open(pp_podindex_t *ix, const char *dir, uint32_t limit, pp_error_t *err);
void pp_podindex_close(pp_podindex_t *ix);
/* The index `owner` holds, else the lowest free one, now held by `owner`.
 * -ENOSPC when all are taken. Owner: 1..255 bytes, no `/`, NUL or newline. */
int pp_podindex_acquire(pp_podindex_t *ix, const char *owner, uint32_t *index, pp_error_t *err);
/* Frees `index` if `owner` holds it (or if owner is NULL). 0 when already
 * free; -EBUSY when another owner holds it. */
int pp_podindex_release(pp_podindex_t *ix, uint32_t index, const char *owner, pp_error_t *err);
/* Copies the owner of `index` into buf. -ENOENT when free. */
int pp_podindex_owner(pp_podindex_t *ix, uint32_t index, char *buf, size_t len);
/* Called with each index held and its owner; a non-zero return stops the
 * walk. It may release the index it is given. */
typedef int (*pp_podindex_cb)(uint32_t index, const char *owner, void *data);
/* Walks the indexes held, in no particular order: 0 when all were seen,
 * what `cb` returned when it stopped the walk, or a negative errno (with
 * `err`) when the directory cannot be read. */
int pp_podindex_foreach(pp_podindex_t *ix, pp_podindex_cb cb, void *data, pp_error_t *err);

/* ---- Node-side tunnel ---------------------------------------------------- */

typedef enum pp_tc_classifier_e {
    PP_TC_AUTO = 0, /* matchall, else u32 where the kernel lacks it */
    PP_TC_MATCHALL,
    PP_TC_U32,
} pp_tc_classifier_t;

/* The node side's context, one per daemon: settings (set after
 * pp_node_net_init, before the first call, then only read) and the
 * deletions of tunnel devices still running in the background. */
typedef struct pp_node_net_s {
    const char *host_netns;  /* NULL: the caller's namespace */
    const char *host_ifname; /* NULL: the default route's interface */
    uint16_t vxlan_port;     /* VXLAN_PORT */
    uint32_t vxlan_min_id;
    bool external_net_via_pod_vm;
    /* PP_TC_AUTO is resolved by the first setup and the result stored here
     * (atomically), so later setups skip the probe. */
    int classifier;
    /* Private: background deletions, and the nftables socket, kept open in
     * the host namespace because closing one right after a change waits
     * for an RCU grace period (the kernel flushes its destroy work). */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct pp__reap_s *reaping;
    pthread_mutex_t nft_lock;
    struct pp__nft_s *nft;
} pp_node_net_t;

/* Defaults: port 4789, min id 555000, PP_TC_AUTO, the caller's namespace. */
void pp_node_net_init(pp_node_net_t *n);
/* Waits for the background deletions to finish: at most timeout_ms (0: no
 * limit). 0 or -ETIMEDOUT. */
int pp_node_net_drain(pp_node_net_t *n, unsigned timeout_ms);
/* Drains without limit and frees what init made; `n` may then go. */
void pp_node_net_fini(pp_node_net_t *n);

/* Inspection -> configuration: pp_podns_inspect() of `pod_netns`, plus
 * worker-node-ip and dedicated from pp_node_primary(), tunnel settings from
 * `n`, `index`, vxlan-id = min id + index (-ERANGE past 2^24-1). */
int pp_node_inspect(const pp_node_net_t *n, const char *pod_netns, uint32_t index, pp_podnet_t *out,
                    pp_error_t *err);

/* Builds the node end for `cfg` (interface, vxlan-id, vxlan-port) toward
 * `pod_vm_ip`: `vxlan1` (learning off) created with its UDP socket in the
 * host namespace and placed in the pod namespace in the same request
 * (IFLA_NET_NS_FD); on it, still down, an ingress qdisc and a filter
 * (PP_TC_PRIO, protocol all) redirecting to the egress of the pod
 * interface; then up, with IPv6 address generation off (it is a wire, not
 * an endpoint); NOTRACK rules in the host namespace; last the same qdisc
 * and redirect on the pod interface toward `vxlan1`. First waits for a
 * background deletion of the same VNI or in the same pod namespace.
 * Idempotent: an existing `vxlan1` with other VNI, port or remote is deleted
 * (with the rules of its VNI) and made again; one that matches is kept. On
 * failure, what was made is removed. */
int pp_node_tunnel_setup(pp_node_net_t *n, const char *pod_netns, const pp_podnet_t *cfg,
                         struct in_addr pod_vm_ip, pp_error_t *err);

/* Removes exactly what setup added: our NOTRACK rules for cfg->vxlan_id
 * (and the table when no rule is left), our filter on the pod interface and
 * the ingress qdisc there if no filter is left on it, and `vxlan1` if its
 * VNI is cfg->vxlan_id. The kernel takes tens of milliseconds to delete a
 * running vxlan device (RCU grace periods), so that deletion is started on
 * a thread of its own and finishes in the background: it is registered in
 * `n` before this returns, a later setup of the same VNI or pod namespace
 * waits for it, and pp_node_net_drain() waits for all. A missing pod
 * namespace is not an error (the rules are still removed). Idempotent. */
int pp_node_tunnel_teardown(pp_node_net_t *n, const char *pod_netns, const pp_podnet_t *cfg,
                            pp_error_t *err);

/* ---- VM-side tunnel ------------------------------------------------------ */

/* Builds the VM end from `cfg` in the VM namespace `host_netns` (NULL: the
 * caller's): creates /run/netns/<pod_netns_name> when missing (an absolute
 * path instead names an existing namespace, never created or deleted); NOTRACK rules
 * toward worker-node-ip; a vxlan (same VNI and port, remote worker-node-ip,
 * learning off) with its socket in the VM namespace, placed in the pod
 * namespace as `interface` with MAC pod-hw-addr, MTU min(mtu, 1450); there
 * `lo` up, address podip, the routes (those without a gateway first, with
 * link scope), the neighbours. Routes and neighbours must name no device or
 * `interface`. Idempotent like the node side. */
int pp_vm_tunnel_setup(const char *host_netns, const char *pod_netns_name, const pp_podnet_t *cfg,
                       pp_error_t *err);

/* Removes the interface (if it is our VNI) and the NOTRACK rules; with
 * `delete_netns` also the pod namespace. Idempotent. */
int pp_vm_tunnel_teardown(const char *host_netns, const char *pod_netns_name,
                          const pp_podnet_t *cfg, bool delete_netns, pp_error_t *err);

/* ---- A veth pair into another namespace ----------------------------------- */

/* A namespace reached by a veth pair, routed through the end here (the
 * local provider's pod VMs). */
typedef struct pp_veth_spec_s {
    const char *name;           /* the end here */
    const char *peer;           /* the end there */
    int peer_ns_fd;             /* the other namespace */
    int peer_nl_fd;             /* a NETLINK_ROUTE socket opened there; consumed */
    pp_ipv4_prefix_t addr;      /* of `name` */
    pp_ipv4_prefix_t peer_addr; /* of `peer`, whose default route goes via `addr` */
} pp_veth_spec_t;

/* Creates the pair (the peer born in its namespace), addresses both ends,
 * brings them and the other namespace's `lo` up and routes its default
 * traffic to this end. `*created` says whether the pair was made (and so is
 * the caller's to delete, also when a later step failed). */
int pp_veth_setup(const pp_veth_spec_t *v, bool *created, pp_error_t *err);

/* Deletes the link `name` of this namespace (a veth's end takes its peer
 * with it); none by that name is fine. */
int pp_link_delete(const char *name, pp_error_t *err);

/* ---- Errors -------------------------------------------------------------- */

/* libnl's -NLE_* (or NLE_*) as -errno: the one translation table. */
int pp_net_nlerr_to_errno(int nlerr);

#endif
