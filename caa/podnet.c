/* A pod's network: its index (VNI), the inspection of its namespace, and
 * the node end of its VXLAN tunnel. The tunnel calls run on the threadpool:
 * the library does its namespace work in threads of its own, and a
 * teardown may wait for the kernel. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "podnet.h"
#include "util/cleanup.h"
#include "util/log.h"

void caa_podnet_start(caa_daemon_t *d)
{
    pp_node_net_init(&d->net);
    d->net_inited = 1;
    d->net.vxlan_port = (uint16_t)d->cfg.vxlan_port;
    d->net.vxlan_min_id = (uint32_t)d->cfg.vxlan_min_id;
    d->net.host_ifname = d->cfg.host_interface[0] ? d->cfg.host_interface : NULL;
    char dir[300];
    snprintf(dir, sizeof(dir), "%s/.indexes", d->cfg.pods_dir);
    pp_error_t err = {0};
    /* Indexes past 2^24 - min id would make VNIs out of range. */
    uint32_t limit = 0xffffffu - (uint32_t)d->cfg.vxlan_min_id;
    if (limit > 65536)
        limit = 65536;
    if (pp_podindex_open(&d->index, dir, limit, &err) < 0) {
        PP_ERR("caa", "pod indexes in `%s`: %s; pod networks will fail", dir, err.message);
        return;
    }
    d->net_ready = 1;
}

void caa_podnet_stop(caa_daemon_t *d)
{
    /* Tunnel deletions still running in the background finish first. */
    if (d->net_ready)
        pp_podindex_close(&d->index);
    if (d->net_inited)
        pp_node_net_fini(&d->net);
    d->net_ready = d->net_inited = 0;
}

int caa_podnet_check_netns(const char *path, pp_error_t *err)
{
    static const struct {
        const char *path;
        const char *whose;
    } own[] = {
        {"/proc/self/ns/net", "this daemon's own (the node's)"},
        {"/proc/1/ns/net", "the host's (that of process 1)"},
    };
    struct stat st;
    if (stat(path, &st) < 0)
        return pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, -errno,
                                   "pod network namespace `%s`: %s", path, strerror(errno));
    for (size_t i = 0; i < PP_ARRAY_SIZE(own); i++) {
        struct stat o;
        if (stat(own[i].path, &o) == 0 && o.st_dev == st.st_dev && o.st_ino == st.st_ino)
            return pp_error_set_status(err, PP_GRPC_INVALID_ARGUMENT, -EPERM,
                                       "pod network namespace `%s` is %s network namespace: "
                                       "refusing to join it to a pod VM",
                                       path, own[i].whose);
    }
    return 0;
}

int caa_podnet_prepare(caa_sandbox_t *sb, pp_error_t *err)
{
    caa_daemon_t *d = sb->d;
    if (!d->net_ready)
        return pp_error_set(err, -ENOTSUP, "pod networking is not available");
    int r = caa_podnet_check_netns(sb->netns_path, err);
    if (r < 0) {
        if (r == -EPERM)
            d->counters.netns_refused++;
        return r;
    }
    uint32_t index;
    r = pp_podindex_acquire(&d->index, sb->id, &index, err);
    if (r < 0)
        return pp_error_wrap(err, "pod index");
    sb->pod_index = (int)index;
    if (sb->podnet == NULL && (sb->podnet = calloc(1, sizeof(*sb->podnet))) == NULL) {
        caa_podnet_release(sb);
        return pp_error_set(err, -ENOMEM, "out of memory");
    }
    r = pp_node_inspect(&d->net, sb->netns_path, index, sb->podnet, err);
    if (r < 0) {
        caa_podnet_release(sb);
        free(sb->podnet);
        sb->podnet = NULL;
        /* The library's message names the namespace and what is wrong. */
        if (err != NULL)
            err->status = PP_GRPC_FAILED_PRECONDITION;
        return r;
    }
    return 0;
}

void caa_podnet_release(caa_sandbox_t *sb)
{
    if (sb->pod_index < 0)
        return;
    pp_error_t err = {0};
    if (pp_podindex_release(&sb->d->index, (uint32_t)sb->pod_index, sb->id, &err) < 0)
        PP_WARN("caa", "sandbox `%s`: release pod index %d: %s", sb->id, sb->pod_index,
                err.message);
    sb->pod_index = -1;
}

typedef struct net_job_s {
    uv_work_t work;
    caa_sandbox_t *sb;
    int up;
    int status;
    struct in_addr vm_ip;
    pp_error_t err;
    caa_podnet_cb cb;
} net_job_t;

static void net_work(uv_work_t *w)
{
    net_job_t *j = container_of(w, net_job_t, work);
    caa_sandbox_t *sb = j->sb;
    /* Only this job touches the sandbox's network fields until it ends.
     * The namespace is checked again right before the redirect is made:
     * the path may name another namespace by now. */
    if (j->up && (j->status = caa_podnet_check_netns(sb->netns_path, &j->err)) < 0)
        return;
    if (j->up)
        j->status =
            pp_node_tunnel_setup(&sb->d->net, sb->netns_path, sb->podnet, j->vm_ip, &j->err);
    else
        j->status = pp_node_tunnel_teardown(&sb->d->net, sb->netns_path, sb->podnet, &j->err);
}

static void net_done(uv_work_t *w, int status)
{
    net_job_t *j = container_of(w, net_job_t, work);
    caa_sandbox_t *sb = j->sb;
    sb->net_busy = 0;
    if (status < 0 && j->status == 0) {
        j->status = status;
        pp_error_set(&j->err, status, "%s", uv_strerror(status));
    }
    j->cb(sb, j->status, j->status < 0 ? &j->err : NULL);
    free(j);
}

static int queue(caa_sandbox_t *sb, int up, caa_podnet_cb cb)
{
    net_job_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return -ENOMEM;
    j->sb = sb;
    j->up = up;
    j->cb = cb;
    if (up && inet_pton(AF_INET, sb->instance.ip, &j->vm_ip) != 1) {
        free(j);
        return -EINVAL;
    }
    int r = uv_queue_work(sb->d->loop, &j->work, net_work, net_done);
    if (r < 0) {
        free(j);
        return r;
    }
    sb->net_busy = 1;
    return 0;
}

int caa_podnet_up(caa_sandbox_t *sb, caa_podnet_cb cb)
{
    return queue(sb, 1, cb);
}

int caa_podnet_down(caa_sandbox_t *sb, caa_podnet_cb cb)
{
    return queue(sb, 0, cb);
}
