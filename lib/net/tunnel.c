/* The pod tunnel: inspection wrappers, node side, VM side. Each public call
 * runs on one thread of its own (pp_netns_run_fd): it starts in the host
 * namespace, opens the sockets it needs there, then enters the pod
 * namespace for the rest; sockets keep the namespace they were opened in. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/neighbour.h>

#include "net/net_int.h"
#include "util/log.h"

/* "network namespace `/run/netns/x`" for messages. */
static void ns_where(char *buf, size_t len, const char *path)
{
    if (path != NULL)
        snprintf(buf, len, "network namespace `%s`", path);
    else
        snprintf(buf, len, "the current network namespace");
}

static int open_ns_or_self(const char *path, pp_error_t *err)
{
    return path != NULL ? pp_netns_open(path, err) : -1;
}

/* When the thread could not even start, `err` is still empty. */
static int thread_failed(pp_error_t *err, int rc, const char *where)
{
    return pp_error_set(err, rc, "enter %s: %s", where, strerror(-rc));
}

/* ---- inspection ------------------------------------------------------------ */

typedef struct inspect_job_s {
    const char *ifname; /* node interface override */
    const char *host_where;
    int pod_fd; /* -1: node only */
    const char *pod_where;
    pp_node_if_t *node; /* NULL: pod only */
    pp_podnet_t *pod;
    pp_error_t *err;
    int ran;
} inspect_job_t;

static int inspect_main(void *p)
{
    inspect_job_t *j = p;
    j->ran = 1;
    if (j->node != NULL) {
        int rc = pp__node_primary_here(j->host_where, j->ifname, j->node, j->err);
        if (rc < 0 || j->pod == NULL)
            return rc;
    }
    if (j->pod_fd >= 0) {
        int rc = pp_netns_enter(j->pod_fd);
        if (rc < 0)
            return pp_error_set(j->err, rc, "enter %s: %s", j->pod_where, strerror(-rc));
    }
    return pp__podns_inspect_here(j->pod_where, j->pod, j->err);
}

int pp_podns_inspect(const char *pod_netns, pp_podnet_t *out, pp_error_t *err)
{
    memset(out, 0, sizeof(*out));
    char where[300];
    ns_where(where, sizeof(where), pod_netns);
    int fd = pp_netns_open(pod_netns, err);
    if (fd < 0)
        return fd;
    inspect_job_t j = {.pod_fd = -1, .pod_where = where, .pod = out, .err = err};
    int rc = pp_netns_run_fd(fd, inspect_main, &j);
    close(fd);
    if (rc < 0 && !j.ran)
        return thread_failed(err, rc, where);
    return rc;
}

int pp_node_primary(const char *host_netns, const char *ifname, pp_node_if_t *out, pp_error_t *err)
{
    memset(out, 0, sizeof(*out));
    char where[300];
    ns_where(where, sizeof(where), host_netns);
    int fd = open_ns_or_self(host_netns, err);
    if (host_netns != NULL && fd < 0)
        return fd;
    inspect_job_t j = {
        .ifname = ifname, .host_where = where, .pod_fd = -1, .node = out, .err = err};
    int rc = pp_netns_run_fd(fd, inspect_main, &j);
    if (fd >= 0)
        close(fd);
    if (rc < 0 && !j.ran)
        return thread_failed(err, rc, where);
    return rc;
}

/* ---- background deletion of tunnel devices ---------------------------------- */

/* A vxlan1 being deleted by a thread of its own. */
typedef struct pp__reap_s {
    struct pp__reap_s *next;
    pp_node_net_t *n;
    uint32_t vni;
    dev_t ns_dev; /* the pod namespace */
    ino_t ns_ino;
    int ifindex;
    char where[300];
} reap_t;

void pp_node_net_init(pp_node_net_t *n)
{
    memset(n, 0, sizeof(*n));
    n->vxlan_port = PP_VXLAN_PORT_DEFAULT;
    n->vxlan_min_id = PP_VXLAN_MIN_ID_DEFAULT;
    n->classifier = PP_TC_AUTO;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&n->lock, NULL);
    pthread_mutex_init(&n->nft_lock, NULL);
}

static bool reaping(const pp_node_net_t *n, bool all, uint32_t vni, const struct stat *ns)
{
    for (const reap_t *r = n->reaping; r != NULL; r = r->next)
        if (all || r->vni == vni || (r->ns_dev == ns->st_dev && r->ns_ino == ns->st_ino))
            return true;
    return false;
}

/* Waits while a deletion matches (any, with `all`). timeout 0: no limit. */
static int reap_wait(pp_node_net_t *n, bool all, uint32_t vni, const struct stat *ns,
                     unsigned timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    pthread_mutex_lock(&n->lock);
    while (rc == 0 && reaping(n, all, vni, ns))
        rc = timeout_ms ? pthread_cond_timedwait(&n->cond, &n->lock, &deadline)
                        : pthread_cond_wait(&n->cond, &n->lock);
    pthread_mutex_unlock(&n->lock);
    return rc == 0 ? 0 : -rc;
}

int pp_node_net_drain(pp_node_net_t *n, unsigned timeout_ms)
{
    struct stat none = {0};
    return reap_wait(n, true, 0, &none, timeout_ms);
}

void pp_node_net_fini(pp_node_net_t *n)
{
    struct stat none = {0};
    reap_wait(n, true, 0, &none, 0);
    pp__nft_close(n->nft);
    n->nft = NULL;
    pthread_cond_destroy(&n->cond);
    pthread_mutex_destroy(&n->lock);
    pthread_mutex_destroy(&n->nft_lock);
}

/* The context's nftables socket, opened on first use by a thread that is
 * in the host namespace; returned with nft_lock held. */
static int nft_get(pp_node_net_t *n, pp__nft_t **out, pp_error_t *err)
{
    pthread_mutex_lock(&n->nft_lock);
    int rc = n->nft == NULL ? pp__nft_open(&n->nft, err) : 0;
    if (rc < 0) {
        pthread_mutex_unlock(&n->nft_lock);
        return rc;
    }
    *out = n->nft;
    return 0;
}

static void nft_put(pp_node_net_t *n)
{
    pthread_mutex_unlock(&n->nft_lock);
}

static void *reap_main(void *p)
{
    reap_t *r = p;
    pp__nl_t nl;
    pp_error_t err = {0};
    /* The thread was made in the pod namespace, so its socket is there. */
    int rc = pp__nl_open(&nl, &err);
    if (rc == 0) {
        rc = pp__link_del(&nl, r->ifindex, PP_POD_TUNNEL_IFNAME, r->where, &err);
        pp__nl_close(&nl);
    }
    if (rc < 0)
        PP_WARN("net", "vni %u: %s", r->vni, err.message);
    pp_node_net_t *n = r->n;
    pthread_mutex_lock(&n->lock);
    for (reap_t **pp = &n->reaping; *pp != NULL; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    pthread_cond_broadcast(&n->cond);
    pthread_mutex_unlock(&n->lock);
    free(r);
    return NULL;
}

/* Starts deleting `ifindex` (this thread's namespace) in the background;
 * registered before return. -errno if no thread could be made. */
static int reap_start(pp_node_net_t *n, int ifindex, uint32_t vni, const struct stat *ns,
                      const char *where)
{
    reap_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->n = n;
    r->vni = vni;
    r->ns_dev = ns->st_dev;
    r->ns_ino = ns->st_ino;
    r->ifindex = ifindex;
    snprintf(r->where, sizeof(r->where), "%s", where);
    pthread_mutex_lock(&n->lock);
    r->next = n->reaping;
    n->reaping = r;
    pthread_mutex_unlock(&n->lock);

    pthread_attr_t attr;
    pthread_t t;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, reap_main, r);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        return 0;
    pthread_mutex_lock(&n->lock);
    for (reap_t **pp = &n->reaping; *pp != NULL; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    pthread_mutex_unlock(&n->lock);
    free(r);
    return -rc;
}

int pp_node_inspect(const pp_node_net_t *n, const char *pod_netns, uint32_t index, pp_podnet_t *out,
                    pp_error_t *err)
{
    memset(out, 0, sizeof(*out));
    if (n->vxlan_min_id > PP_VXLAN_ID_MAX || index > PP_VXLAN_ID_MAX - n->vxlan_min_id)
        return pp_error_set(
            err, -ERANGE, "pod index %u is not from 0 to %u for vxlan min id %u", index,
            n->vxlan_min_id > PP_VXLAN_ID_MAX ? 0 : PP_VXLAN_ID_MAX - n->vxlan_min_id,
            n->vxlan_min_id);
    if (n->vxlan_port == 0)
        return pp_error_set(err, -EINVAL, "vxlan port is 0");
    char host_where[300], pod_where[300];
    ns_where(host_where, sizeof(host_where), n->host_netns);
    ns_where(pod_where, sizeof(pod_where), pod_netns);
    int host_fd = open_ns_or_self(n->host_netns, err);
    if (n->host_netns != NULL && host_fd < 0)
        return host_fd;
    int pod_fd = pp_netns_open(pod_netns, err);
    if (pod_fd < 0) {
        if (host_fd >= 0)
            close(host_fd);
        return pod_fd;
    }
    pp_node_if_t node;
    inspect_job_t j = {.ifname = n->host_ifname,
                       .host_where = host_where,
                       .pod_fd = pod_fd,
                       .pod_where = pod_where,
                       .node = &node,
                       .pod = out,
                       .err = err};
    int rc = pp_netns_run_fd(host_fd, inspect_main, &j);
    if (host_fd >= 0)
        close(host_fd);
    close(pod_fd);
    if (rc < 0 && !j.ran)
        return thread_failed(err, rc, host_where);
    if (rc < 0)
        return rc;
    out->worker_node_ip = node.ip;
    out->dedicated = node.dedicated;
    out->index = index;
    out->vxlan_port = n->vxlan_port;
    out->vxlan_id = n->vxlan_min_id + index;
    out->external_net_via_pod_vm = n->external_net_via_pod_vm;
    return 0;
}

/* ---- node side ----------------------------------------------------------------- */

typedef struct node_job_s {
    pp_node_net_t *n;
    const pp_podnet_t *cfg;
    struct in_addr remote;
    int pod_fd; /* -1 on teardown when the namespace is gone */
    struct stat pod_ns;
    const char *where;
    pp_error_t *err;
    int ran;
} node_job_t;

/* Removes what setup makes, in the pod namespace (the thread is in it);
 * with `n`, the device is deleted in the background. */
static int node_undo_pod(pp__nl_t *pod, pp_node_net_t *n, const struct stat *ns,
                         const pp_podnet_t *cfg, const char *where, pp_error_t *err)
{
    int rc = 0;
    unsigned eth = if_nametoindex(cfg->interface);
    if (eth > 0)
        rc = pp__tc_redirect_del(pod, (int)eth, cfg->interface, where, err);
    pp__link_t vx;
    int rc2 = pp__link_get(pod, PP_POD_TUNNEL_IFNAME, &vx, where, rc < 0 ? NULL : err);
    /* Only our own: a vxlan1 of another VNI is not this pod's. */
    if (rc2 < 0 || vx.ifindex == 0 || !vx.is_vxlan || vx.vni != cfg->vxlan_id)
        return rc < 0 ? rc : rc2;
    if (n != NULL && reap_start(n, vx.ifindex, vx.vni, ns, where) == 0)
        return rc;
    rc2 = pp__link_del(pod, vx.ifindex, PP_POD_TUNNEL_IFNAME, where, rc < 0 ? NULL : err);
    return rc < 0 ? rc : rc2;
}

static int node_setup_main(void *p)
{
    node_job_t *j = p;
    const pp_podnet_t *cfg = j->cfg;
    j->ran = 1;
    pp__nl_t host = {0}, pod = {0};
    pp__nft_t *nft = NULL;
    bool nft_added = false;
    int rc = pp__nl_open(&host, j->err);
    /* Opened here, in the host namespace, if this is the first use. */
    if (rc == 0 && (rc = nft_get(j->n, &nft, j->err)) == 0)
        nft_put(j->n);
    if (rc < 0)
        goto out;
    rc = pp_netns_enter(j->pod_fd);
    if (rc < 0) {
        pp_error_set(j->err, rc, "enter %s: %s", j->where, strerror(-rc));
        goto out;
    }
    rc = pp__nl_open(&pod, j->err);
    if (rc < 0)
        goto out;

    /* VNI, port and remote cannot change on a live device: keep a match,
     * replace anything else. */
    pp__link_t cur;
    rc = pp__link_get(&pod, PP_POD_TUNNEL_IFNAME, &cur, j->where, j->err);
    if (rc < 0)
        goto out;
    bool keep = pp__vxlan_matches(&cur, cfg->vxlan_id, cfg->vxlan_port, j->remote);
    if (cur.ifindex > 0 && !keep) {
        rc = pp__link_del(&pod, cur.ifindex, PP_POD_TUNNEL_IFNAME, j->where, j->err);
        /* The old device's rules go with it when they were for another VNI. */
        if (rc == 0 && cur.is_vxlan && cur.vni != cfg->vxlan_id) {
            nft_get(j->n, &nft, NULL);
            rc = pp__nft_notrack_del(nft, cur.vni, &cur.remote, cur.port, j->err);
            nft_put(j->n);
        }
        if (rc < 0)
            goto out;
    }
    unsigned eth = if_nametoindex(cfg->interface);
    if (eth == 0) {
        rc = pp_error_set(j->err, -ENODEV, "interface `%s` does not exist in %s", cfg->interface,
                          j->where);
        goto out;
    }
    if (!keep) {
        pp__vxlan_spec_t spec = {
            .name = PP_POD_TUNNEL_IFNAME,
            .vni = cfg->vxlan_id,
            .port = cfg->vxlan_port,
            .remote = j->remote,
            .target_ns_fd = j->pod_fd,
            .down = true,
        };
        rc = pp__vxlan_create(&host, &spec, j->where, j->err);
        if (rc < 0)
            goto out;
        cur.ifindex = (int)if_nametoindex(PP_POD_TUNNEL_IFNAME);
        if (cur.ifindex == 0) {
            rc = pp_error_set(j->err, -ENODEV, "interface `%s` does not exist in %s",
                              PP_POD_TUNNEL_IFNAME, j->where);
            goto undo;
        }
    }
    int vx = cur.ifindex;
    /* Its qdisc and filter go on while vxlan1 is still down: a qdisc
     * change on a running device waits for an RCU grace period. */
    rc = pp__tc_redirect_add(&pod, vx, PP_POD_TUNNEL_IFNAME, (int)eth, &j->n->classifier, j->where,
                             j->err);
    /* vxlan1 is a wire between eth0 and the VM: no address of its own. */
    if (rc == 0)
        rc = pp__link_make_wire(&pod, vx, PP_POD_TUNNEL_IFNAME, j->where, j->err);
    if (rc < 0)
        goto undo;
    /* The rules go in after the device: a VNI already taken fails the
     * create above before another pod's rules of that VNI are touched. */
    nft_get(j->n, &nft, NULL);
    rc = pp__nft_notrack_add(nft, j->remote, cfg->vxlan_port, cfg->vxlan_id, j->err);
    nft_put(j->n);
    if (rc < 0)
        goto undo;
    nft_added = true;
    /* Last, the pod's traffic starts to flow into the tunnel. */
    rc = pp__tc_redirect_add(&pod, (int)eth, cfg->interface, vx, &j->n->classifier, j->where,
                             j->err);
    if (rc == 0)
        goto out;
undo:
    node_undo_pod(&pod, NULL, NULL, cfg, j->where, NULL);
    if (nft_added) {
        nft_get(j->n, &nft, NULL);
        pp__nft_notrack_del(nft, cfg->vxlan_id, &j->remote, cfg->vxlan_port, NULL);
        nft_put(j->n);
    }
out:
    pp__nl_close(&pod);
    pp__nl_close(&host);
    return rc;
}

static int node_teardown_main(void *p)
{
    node_job_t *j = p;
    j->ran = 1;
    pp__nft_t *nft = NULL;
    pp__nl_t pod = {0};
    /* Opened here, in the host namespace, if this is the first use. */
    int rc = nft_get(j->n, &nft, j->err);
    if (rc < 0)
        return rc;
    nft_put(j->n);
    /* vxlan1's remote is the tunnel's peer: with it, the exemption goes
     * without listing the others. */
    pp__link_t vx = {0};
    int erc = 0;
    bool in_pod = false;
    if (j->pod_fd >= 0) {
        erc = pp_netns_enter(j->pod_fd);
        if (erc < 0)
            pp_error_set(j->err, erc, "enter %s: %s", j->where, strerror(-erc));
        else if ((erc = pp__nl_open(&pod, j->err)) == 0)
            in_pod = true;
        if (in_pod && pp__link_get(&pod, PP_POD_TUNNEL_IFNAME, &vx, j->where, NULL) < 0)
            vx.ifindex = 0;
    }
    bool have_peer = vx.ifindex > 0 && vx.is_vxlan && vx.vni == j->cfg->vxlan_id;
    nft_get(j->n, &nft, NULL);
    rc = pp__nft_notrack_del(nft, j->cfg->vxlan_id, have_peer ? &vx.remote : NULL, vx.port,
                             erc < 0 ? NULL : j->err);
    nft_put(j->n);
    if (erc < 0)
        rc = erc;
    else if (rc == 0 && in_pod)
        rc = node_undo_pod(&pod, j->n, &j->pod_ns, j->cfg, j->where, j->err);
    pp__nl_close(&pod);
    return rc;
}

static int check_tunnel_cfg(const pp_podnet_t *cfg, pp_error_t *err)
{
    if (!pp_ifname_valid(cfg->interface))
        return pp_error_set(err, -EINVAL, "pod interface `%s` is not a valid name", cfg->interface);
    if (cfg->vxlan_id > PP_VXLAN_ID_MAX || cfg->vxlan_port == 0)
        return pp_error_set(err, -EINVAL, "vni %u or port %u out of range", cfg->vxlan_id,
                            (unsigned)cfg->vxlan_port);
    return 0;
}

int pp_node_tunnel_setup(pp_node_net_t *n, const char *pod_netns, const pp_podnet_t *cfg,
                         struct in_addr pod_vm_ip, pp_error_t *err)
{
    int rc = check_tunnel_cfg(cfg, err);
    if (rc < 0)
        return rc;
    char where[300], host_where[300];
    ns_where(where, sizeof(where), pod_netns);
    ns_where(host_where, sizeof(host_where), n->host_netns);
    int host_fd = open_ns_or_self(n->host_netns, err);
    if (n->host_netns != NULL && host_fd < 0)
        return host_fd;
    int pod_fd = pp_netns_open(pod_netns, err);
    if (pod_fd < 0) {
        if (host_fd >= 0)
            close(host_fd);
        return pod_fd;
    }
    node_job_t j = {
        .n = n, .cfg = cfg, .remote = pod_vm_ip, .pod_fd = pod_fd, .where = where, .err = err};
    /* A device of this VNI or in this namespace may still be going away. */
    fstat(pod_fd, &j.pod_ns);
    rc = reap_wait(n, false, cfg->vxlan_id, &j.pod_ns, 10000);
    if (rc < 0) {
        if (host_fd >= 0)
            close(host_fd);
        close(pod_fd);
        return pp_error_set(err, rc, "vni %u in %s: the previous device is still being deleted",
                            cfg->vxlan_id, where);
    }
    rc = pp_netns_run_fd(host_fd, node_setup_main, &j);
    if (host_fd >= 0)
        close(host_fd);
    close(pod_fd);
    if (rc < 0 && !j.ran)
        return thread_failed(err, rc, host_where);
    return rc;
}

int pp_node_tunnel_teardown(pp_node_net_t *n, const char *pod_netns, const pp_podnet_t *cfg,
                            pp_error_t *err)
{
    int rc = check_tunnel_cfg(cfg, err);
    if (rc < 0)
        return rc;
    char where[300], host_where[300];
    ns_where(where, sizeof(where), pod_netns);
    ns_where(host_where, sizeof(host_where), n->host_netns);
    int host_fd = open_ns_or_self(n->host_netns, err);
    if (n->host_netns != NULL && host_fd < 0)
        return host_fd;
    /* A pod namespace already gone took vxlan1 and the filters with it. */
    int pod_fd = pod_netns != NULL ? pp_netns_open(pod_netns, err) : -ENOENT;
    if (pod_fd < 0 && pod_fd != -ENOENT) {
        if (host_fd >= 0)
            close(host_fd);
        return pod_fd;
    }
    pp_error_clear(err);
    node_job_t j = {.n = n, .cfg = cfg, .pod_fd = pod_fd, .where = where, .err = err};
    if (pod_fd >= 0)
        fstat(pod_fd, &j.pod_ns);
    rc = pp_netns_run_fd(host_fd, node_teardown_main, &j);
    if (host_fd >= 0)
        close(host_fd);
    if (pod_fd >= 0)
        close(pod_fd);
    if (rc < 0 && !j.ran)
        return thread_failed(err, rc, host_where);
    return rc;
}

/* ---- VM side ----------------------------------------------------------------- */

typedef struct vm_job_s {
    const pp_podnet_t *cfg;
    int pod_fd;
    const char *where;
    pp_error_t *err;
    int ran;
} vm_job_t;

static bool dev_ok(const char *dev, const char *ifname)
{
    return dev[0] == '\0' || strcmp(dev, ifname) == 0;
}

static int check_vm_cfg(const pp_podnet_t *cfg, pp_error_t *err)
{
    int rc = check_tunnel_cfg(cfg, err);
    if (rc < 0)
        return rc;
    if (cfg->worker_node_ip.addr.s_addr == 0)
        return pp_error_set(err, -EINVAL, "worker-node-ip is not set");
    if (cfg->n_routes > PP_PODNET_MAX_ROUTES || cfg->n_neighbors > PP_PODNET_MAX_NEIGHBORS)
        return pp_error_set(err, -EINVAL, "too many routes or neighbors");
    for (size_t i = 0; i < cfg->n_routes; i++)
        if (!dev_ok(cfg->routes[i].dev, cfg->interface))
            return pp_error_set(err, -EINVAL, "route %zu uses device `%s`, not `%s`", i,
                                cfg->routes[i].dev, cfg->interface);
    for (size_t i = 0; i < cfg->n_neighbors; i++) {
        if (!dev_ok(cfg->neighbors[i].dev, cfg->interface))
            return pp_error_set(err, -EINVAL, "neighbor %zu uses device `%s`, not `%s`", i,
                                cfg->neighbors[i].dev, cfg->interface);
        if (cfg->neighbors[i].state == NUD_NONE)
            return pp_error_set(err, -EINVAL, "neighbor %zu has state `none`", i);
    }
    return 0;
}

static int vm_setup_main(void *p)
{
    vm_job_t *j = p;
    const pp_podnet_t *cfg = j->cfg;
    j->ran = 1;
    pp__nl_t host = {0}, pod = {0};
    pp__nft_t *nft = NULL;
    bool nft_added = false, created = false;
    struct in_addr node = cfg->worker_node_ip.addr;
    int rc = pp__nl_open(&host, j->err);
    if (rc == 0)
        rc = pp__nft_open(&nft, j->err);
    if (rc == 0)
        rc = pp__nft_notrack_add(nft, node, cfg->vxlan_port, cfg->vxlan_id, j->err);
    if (rc < 0)
        goto out;
    nft_added = true;
    rc = pp_netns_enter(j->pod_fd);
    if (rc < 0) {
        pp_error_set(j->err, rc, "enter %s: %s", j->where, strerror(-rc));
        goto undo;
    }
    rc = pp__nl_open(&pod, j->err);
    if (rc < 0)
        goto undo;

    pp__link_t cur;
    rc = pp__link_get(&pod, cfg->interface, &cur, j->where, j->err);
    if (rc < 0)
        goto undo;
    bool keep = pp__vxlan_matches(&cur, cfg->vxlan_id, cfg->vxlan_port, node);
    if (cur.ifindex > 0 && !keep) {
        rc = pp__link_del(&pod, cur.ifindex, cfg->interface, j->where, j->err);
        if (rc == 0 && cur.is_vxlan && cur.vni != cfg->vxlan_id)
            rc = pp__nft_notrack_del(nft, cur.vni, &cur.remote, cur.port, j->err);
        if (rc < 0)
            goto undo;
    }
    if (!keep) {
        pp__vxlan_spec_t spec = {
            .name = cfg->interface,
            .vni = cfg->vxlan_id,
            .port = cfg->vxlan_port,
            .remote = node,
            .target_ns_fd = j->pod_fd,
            .hw_addr = cfg->pod_hw_addr,
            .mtu = cfg->mtu < PP_VM_MTU_MAX ? cfg->mtu : PP_VM_MTU_MAX,
        };
        rc = pp__vxlan_create(&host, &spec, j->where, j->err);
        if (rc < 0)
            goto undo;
        created = true;
    } else {
        rc = pp__link_set_up(&pod, cur.ifindex, cfg->interface, j->where, j->err);
        if (rc < 0)
            goto undo;
    }
    unsigned ifindex = if_nametoindex(cfg->interface);
    unsigned lo = if_nametoindex("lo");
    if (ifindex == 0) {
        rc = pp_error_set(j->err, -ENODEV, "interface `%s` does not exist in %s", cfg->interface,
                          j->where);
        goto undo;
    }
    if (lo > 0) {
        rc = pp__link_set_up(&pod, (int)lo, "lo", j->where, j->err);
        if (rc < 0)
            goto undo;
    }
    rc = pp__addr_add(&pod, (int)ifindex, &cfg->pod_ip, j->where, j->err);
    /* Routes without a gateway first: the gateway routes may need them to
     * reach their gateway. */
    for (int pass = 0; rc == 0 && pass < 2; pass++)
        for (size_t i = 0; rc == 0 && i < cfg->n_routes; i++)
            if (cfg->routes[i].has_gw == (pass == 1))
                rc = pp__route_add(&pod, (int)ifindex, &cfg->routes[i], j->where, j->err);
    for (size_t i = 0; rc == 0 && i < cfg->n_neighbors; i++)
        rc = pp__neigh_add(&pod, (int)ifindex, &cfg->neighbors[i], j->where, j->err);
    if (rc == 0)
        goto out;
undo:
    if (created) {
        pp__link_t l;
        if (pp__link_get(&pod, cfg->interface, &l, j->where, NULL) == 0 && l.ifindex > 0)
            pp__link_del(&pod, l.ifindex, cfg->interface, j->where, NULL);
    }
    if (nft_added)
        pp__nft_notrack_del(nft, cfg->vxlan_id, &node, cfg->vxlan_port, NULL);
out:
    pp__nft_close(nft);
    pp__nl_close(&pod);
    pp__nl_close(&host);
    return rc;
}

static int vm_teardown_main(void *p)
{
    vm_job_t *j = p;
    j->ran = 1;
    pp__nft_t *nft = NULL;
    pp__nl_t pod = {0};
    int rc = pp__nft_open(&nft, j->err);
    if (rc == 0)
        rc = pp__nft_notrack_del(nft, j->cfg->vxlan_id, &j->cfg->worker_node_ip.addr,
                                 j->cfg->vxlan_port, j->err);
    pp__nft_close(nft);
    if (rc < 0 || j->pod_fd < 0)
        return rc;
    rc = pp_netns_enter(j->pod_fd);
    if (rc < 0)
        return pp_error_set(j->err, rc, "enter %s: %s", j->where, strerror(-rc));
    rc = pp__nl_open(&pod, j->err);
    if (rc < 0)
        return rc;
    pp__link_t l;
    rc = pp__link_get(&pod, j->cfg->interface, &l, j->where, j->err);
    if (rc == 0 && l.ifindex > 0 && l.is_vxlan && l.vni == j->cfg->vxlan_id)
        rc = pp__link_del(&pod, l.ifindex, j->cfg->interface, j->where, j->err);
    pp__nl_close(&pod);
    return rc;
}

int pp_vm_tunnel_setup(const char *host_netns, const char *pod_netns_name, const pp_podnet_t *cfg,
                       pp_error_t *err)
{
    int rc = check_vm_cfg(cfg, err);
    if (rc < 0)
        return rc;
    char path[256], where[300], host_where[300];
    bool is_path = pod_netns_name != NULL && pod_netns_name[0] == '/';
    if (is_path ? snprintf(path, sizeof(path), "%s", pod_netns_name) >= (int)sizeof(path)
                : pp_netns_path(pod_netns_name, path, sizeof(path)) < 0)
        return pp_error_set(err, -EINVAL, "`%s` is not a valid network namespace name",
                            pod_netns_name ? pod_netns_name : "");
    ns_where(where, sizeof(where), path);
    ns_where(host_where, sizeof(host_where), host_netns);
    int host_fd = open_ns_or_self(host_netns, err);
    if (host_netns != NULL && host_fd < 0)
        return host_fd;
    bool made = false;
    /* A path names a namespace someone else made; a name is ours to make. */
    rc = is_path ? 0 : pp_netns_create(pod_netns_name, true, &made, err);
    int pod_fd = rc < 0 ? rc : pp_netns_open(path, err);
    if (pod_fd < 0) {
        if (host_fd >= 0)
            close(host_fd);
        return pod_fd;
    }
    vm_job_t j = {.cfg = cfg, .pod_fd = pod_fd, .where = where, .err = err};
    rc = pp_netns_run_fd(host_fd, vm_setup_main, &j);
    if (host_fd >= 0)
        close(host_fd);
    close(pod_fd);
    if (rc < 0 && !j.ran)
        thread_failed(err, rc, host_where);
    if (rc < 0 && made)
        pp_netns_delete(pod_netns_name, NULL);
    return rc;
}

int pp_vm_tunnel_teardown(const char *host_netns, const char *pod_netns_name,
                          const pp_podnet_t *cfg, bool delete_netns, pp_error_t *err)
{
    int rc = check_tunnel_cfg(cfg, err);
    if (rc < 0)
        return rc;
    char path[256], where[300], host_where[300];
    bool is_path = pod_netns_name != NULL && pod_netns_name[0] == '/';
    if (is_path ? snprintf(path, sizeof(path), "%s", pod_netns_name) >= (int)sizeof(path)
                : pp_netns_path(pod_netns_name, path, sizeof(path)) < 0)
        return pp_error_set(err, -EINVAL, "`%s` is not a valid network namespace name",
                            pod_netns_name ? pod_netns_name : "");
    if (is_path)
        delete_netns = false;
    ns_where(where, sizeof(where), path);
    ns_where(host_where, sizeof(host_where), host_netns);
    int host_fd = open_ns_or_self(host_netns, err);
    if (host_netns != NULL && host_fd < 0)
        return host_fd;
    int pod_fd = pp_netns_open(path, err);
    if (pod_fd < 0 && pod_fd != -ENOENT) {
        if (host_fd >= 0)
            close(host_fd);
        return pod_fd;
    }
    pp_error_clear(err);
    vm_job_t j = {.cfg = cfg, .pod_fd = pod_fd, .where = where, .err = err};
    rc = pp_netns_run_fd(host_fd, vm_teardown_main, &j);
    if (host_fd >= 0)
        close(host_fd);
    if (pod_fd >= 0)
        close(pod_fd);
    if (rc < 0 && !j.ran)
        return thread_failed(err, rc, host_where);
    if (rc == 0 && delete_netns)
        rc = pp_netns_delete(pod_netns_name, err);
    return rc;
}
