/* tc: an ingress qdisc and a filter that redirects every frame to the
 * egress of another device (mirred), the wire between a pod's interface and
 * its tunnel. */
#include <errno.h>
#include <string.h>

#include <linux/if_ether.h>
#include <linux/pkt_sched.h>
#include <linux/tc_act/tc_mirred.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/act/mirred.h>
#include <netlink/route/action.h>
#include <netlink/route/classifier.h>
#include <netlink/route/cls/matchall.h>
#include <netlink/route/cls/u32.h>
#include <netlink/route/qdisc.h>
#include <netlink/route/tc.h>

#include "net/net_int.h"
#include "util/cleanup.h"

#define INGRESS_PARENT 0xffff0000u /* ffff:, the ingress qdisc */

/* Adds (1 if made, 0 if it was there) or deletes the ingress qdisc. */
static int ingress_qdisc(pp__nl_t *nl, int ifindex, bool add, const char *name, const char *where,
                         pp_error_t *err)
{
    struct rtnl_qdisc *q = rtnl_qdisc_alloc();
    cleanup_nlmsg struct nl_msg *msg = NULL;
    if (q == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    rtnl_tc_set_ifindex(TC_CAST(q), ifindex);
    rtnl_tc_set_parent(TC_CAST(q), TC_H_INGRESS);
    rtnl_tc_set_handle(TC_CAST(q), INGRESS_PARENT);
    int rc = rtnl_tc_set_kind(TC_CAST(q), "ingress");
    if (rc == 0)
        rc = add ? rtnl_qdisc_build_add_request(q, NLM_F_CREATE | NLM_F_EXCL, &msg)
                 : rtnl_qdisc_build_delete_request(q, &msg);
    rtnl_qdisc_put(q);
    const char *verb = add ? "add" : "delete";
    if (rc < 0)
        return pp__nl_fail(err, rc, "%s ingress qdisc on `%s` in %s", verb, name, where);
    rc = pp__nl_talk(nl, msg, err, "%s ingress qdisc on `%s` in %s", verb, name, where);
    if (add && rc == 0)
        return 1;
    if (add && rc == -EEXIST)
        return 0;
    /* Deleting what is not there: ENOENT, or EINVAL from older kernels. */
    if (!add && (rc == -ENOENT || rc == -EINVAL))
        return 0;
    return rc;
}

/* Deletes the filters at our priority (protocol all) on the ingress of
 * `ifindex`, whatever their kind. */
static int filter_del(pp__nl_t *nl, int ifindex, const char *name, const char *where,
                      pp_error_t *err)
{
    struct rtnl_cls *f = rtnl_cls_alloc();
    cleanup_nlmsg struct nl_msg *msg = NULL;
    if (f == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    rtnl_tc_set_ifindex(TC_CAST(f), ifindex);
    rtnl_tc_set_parent(TC_CAST(f), INGRESS_PARENT);
    rtnl_cls_set_prio(f, PP_TC_PRIO);
    rtnl_cls_set_protocol(f, ETH_P_ALL);
    int rc = rtnl_cls_build_delete_request(f, 0, &msg);
    rtnl_cls_put(f);
    if (rc < 0)
        return pp__nl_fail(err, rc, "delete tc filter on `%s` in %s", name, where);
    rc = pp__nl_talk(nl, msg, err, "delete tc filter on `%s` in %s", name, where);
    if (rc == -ENOENT || rc == -EINVAL || rc == -ENODEV)
        return 0;
    return rc;
}

static int filter_add(pp__nl_t *nl, int src, const char *src_name, int dst, bool matchall,
                      const char *where, pp_error_t *err)
{
    struct rtnl_cls *f = rtnl_cls_alloc();
    struct rtnl_act *a = rtnl_act_alloc();
    cleanup_nlmsg struct nl_msg *msg = NULL;
    int rc = -NLE_NOMEM;
    if (f != NULL && a != NULL) {
        rtnl_tc_set_ifindex(TC_CAST(f), src);
        rtnl_tc_set_parent(TC_CAST(f), INGRESS_PARENT);
        rtnl_cls_set_prio(f, PP_TC_PRIO);
        rtnl_cls_set_protocol(f, ETH_P_ALL);
        rc = rtnl_tc_set_kind(TC_CAST(f), matchall ? "matchall" : "u32");
        if (rc == 0)
            rc = rtnl_tc_set_kind(TC_CAST(a), "mirred");
        if (rc == 0) {
            rtnl_mirred_set_action(a, TCA_EGRESS_REDIR);
            rtnl_mirred_set_policy(a, TC_ACT_STOLEN);
            rtnl_mirred_set_ifindex(a, (uint32_t)dst);
            if (matchall) {
                rc = rtnl_mall_append_action(f, a);
            } else {
                /* One key that matches every packet: 32 bits at offset 0
                 * under a zero mask. */
                rc = rtnl_u32_add_key_uint32(f, 0, 0, 0, 0);
                if (rc == 0)
                    rc = rtnl_u32_set_cls_terminal(f);
                if (rc == 0)
                    rc = rtnl_u32_add_action(f, a);
            }
        }
        if (rc == 0)
            rc = rtnl_cls_build_add_request(f, NLM_F_CREATE | NLM_F_EXCL, &msg);
    }
    /* The classifier holds its own reference to the action. */
    if (a != NULL)
        rtnl_act_put(a);
    if (f != NULL)
        rtnl_cls_put(f);
    const char *kind = matchall ? "matchall" : "u32";
    if (rc < 0)
        return pp__nl_fail(err, rc, "add %s redirect filter on `%s` in %s", kind, src_name, where);
    return pp__nl_talk(nl, msg, err, "add %s redirect filter on `%s` in %s", kind, src_name, where);
}

int pp__tc_redirect_add(pp__nl_t *nl, int src, const char *src_name, int dst, int *classifier,
                        const char *where, pp_error_t *err)
{
    int rc = ingress_qdisc(nl, src, true, src_name, where, err);
    /* A qdisc that was there may hold our filter from an earlier setup. */
    if (rc == 0)
        rc = filter_del(nl, src, src_name, where, err);
    if (rc < 0)
        return rc;
    int kind = __atomic_load_n(classifier, __ATOMIC_RELAXED);
    if (kind == PP_TC_U32)
        return filter_add(nl, src, src_name, dst, false, where, err);
    rc = filter_add(nl, src, src_name, dst, true, where, err);
    if (kind == PP_TC_AUTO) {
        /* A kernel without cls_matchall answers ENOENT ("TC classifier not
         * found"); u32 with an all-zero mask does the same job. */
        if (rc == -ENOENT || rc == -EOPNOTSUPP) {
            rc = filter_add(nl, src, src_name, dst, false, where, err);
            if (rc == 0)
                __atomic_store_n(classifier, PP_TC_U32, __ATOMIC_RELAXED);
        } else if (rc == 0) {
            __atomic_store_n(classifier, PP_TC_MATCHALL, __ATOMIC_RELAXED);
        }
    }
    return rc;
}

int pp__tc_redirect_del(pp__nl_t *nl, int ifindex, const char *name, const char *where,
                        pp_error_t *err)
{
    int rc = filter_del(nl, ifindex, name, where, err);
    if (rc < 0)
        return rc;
    /* The qdisc goes only when nothing else hangs on it. */
    struct nl_cache *cache = NULL;
    rc = rtnl_cls_alloc_cache(nl->sk, ifindex, INGRESS_PARENT, &cache);
    if (rc < 0) {
        /* No ingress qdisc (EINVAL) or no device: nothing to remove. */
        if (rc == -NLE_INVAL || rc == -NLE_NODEV || rc == -NLE_OBJ_NOTFOUND)
            return 0;
        return pp__nl_fail(err, rc, "list tc filters on `%s` in %s", name, where);
    }
    int left = nl_cache_nitems(cache);
    nl_cache_free(cache);
    if (left > 0)
        return 0;
    return ingress_qdisc(nl, ifindex, false, name, where, err);
}
