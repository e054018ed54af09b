/* Connection tracking exemption for the tunnel's UDP, with nftables over
 * netlink (libnftnl + libmnl): no program is run.
 *
 *   table inet peerpod {
 *     chain prerouting { type filter hook prerouting priority raw; }
 *     chain output     { type filter hook output priority raw; }
 *   }
 *   prerouting: meta nfproto ipv4 udp, ip saddr PEER, udp dport PORT, notrack
 *   output:     meta nfproto ipv4 udp, ip daddr PEER, udp dport PORT, notrack
 *
 * both commented "peerpod vni:<VNI>", which is how teardown finds them.
 * Each change is one transaction guarded by the ruleset generation read
 * before the rules were listed: if anyone changed the ruleset in between,
 * the kernel refuses the batch (ERESTART) and we list again. So concurrent
 * setups and teardowns never delete a table another just put a rule in. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/gen.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "net/net_int.h"
#include "util/cleanup.h"

#define CHAIN_PRE    "prerouting"
#define CHAIN_OUT    "output"
#define PRIO_RAW     (-300)
#define MAX_RULES    4096
#define MAX_ATTEMPTS 16
#define BATCH_SIZE   (16 * 1024)
#define COMMENT_FMT  "peerpod vni:%u"

typedef struct pp__nft_s {
    struct mnl_socket *nl;
    uint32_t portid;
    uint32_t seq;
    char buf[32 * 1024]; /* the most a netlink dump sends at once */
    char batch[BATCH_SIZE];
} nft_t;

typedef struct rule_s {
    char chain[16]; /* only ours: prerouting or output */
    uint64_t handle;
} rule_t;

/* What the table holds: our VNI's rules, and how many others. */
typedef struct listing_s {
    const char *comment;
    rule_t mine[8];
    size_t n_mine;
    size_t n_other;
    uint32_t genid;
} listing_t;

int pp__nft_open(pp__nft_t **out, pp_error_t *err)
{
    *out = NULL;
    cleanup_free nft_t *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    n->nl = mnl_socket_open(NETLINK_NETFILTER);
    if (n->nl == NULL)
        return pp_error_set(err, -errno, "nftables: open netlink socket: %s", strerror(errno));
    if (mnl_socket_bind(n->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int e = errno;
        mnl_socket_close(n->nl);
        n->nl = NULL;
        return pp_error_set(err, -e, "nftables: bind netlink socket: %s", strerror(e));
    }
    /* A kernel that never answers must not hang a pod forever. */
    struct timeval tv = {.tv_sec = 10};
    setsockopt(mnl_socket_get_fd(n->nl), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    n->portid = mnl_socket_get_portid(n->nl);
    n->seq = (uint32_t)time(NULL);
    *out = PP_STEAL(n);
    return 0;
}

void pp__nft_close(pp__nft_t *n)
{
    if (n == NULL)
        return;
    if (n->nl != NULL)
        mnl_socket_close(n->nl);
    free(n);
}

/* The socket lives across operations: whatever an earlier one left unread
 * (after a timeout, say) is dropped before the next request. */
static void drain(nft_t *n)
{
    char buf[256];
    while (recv(mnl_socket_get_fd(n->nl), buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC) > 0)
        ;
}

/* Sends one request and feeds the answers to cb until the end (ack or
 * NLMSG_DONE). 0 or -errno. */
static int nft_query(nft_t *n, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
    uint32_t seq = nlh->nlmsg_seq;
    drain(n);
    if (mnl_socket_sendto(n->nl, nlh, nlh->nlmsg_len) < 0)
        return -errno;
    for (;;) {
        ssize_t len = mnl_socket_recvfrom(n->nl, n->buf, sizeof(n->buf));
        if (len < 0)
            return -errno;
        int rc = mnl_cb_run(n->buf, (size_t)len, seq, n->portid, cb, data);
        if (rc < 0)
            return -errno;
        if (rc == MNL_CB_STOP)
            return 0;
    }
}

static int gen_cb(const struct nlmsghdr *nlh, void *data)
{
    listing_t *l = data;
    struct nftnl_gen *g = nftnl_gen_alloc();
    if (g == NULL)
        return MNL_CB_ERROR;
    if (nftnl_gen_nlmsg_parse(nlh, g) == 0)
        l->genid = nftnl_gen_get_u32(g, NFTNL_GEN_ID);
    nftnl_gen_free(g);
    return MNL_CB_OK;
}

static int comment_cb(const struct nftnl_udata *attr, void *data)
{
    const char **out = data;
    if (nftnl_udata_type(attr) == NFTNL_UDATA_RULE_COMMENT) {
        const char *s = nftnl_udata_get(attr);
        uint8_t len = nftnl_udata_len(attr);
        if (len > 0 && s[len - 1] == '\0')
            *out = s;
    }
    return 0;
}

static int rule_cb(const struct nlmsghdr *nlh, void *data)
{
    listing_t *l = data;
    struct nftnl_rule *r = nftnl_rule_alloc();
    if (r == NULL)
        return MNL_CB_ERROR;
    if (nftnl_rule_nlmsg_parse(nlh, r) < 0) {
        nftnl_rule_free(r);
        return MNL_CB_OK;
    }
    const char *comment = NULL;
    uint32_t len = 0;
    const void *ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &len);
    if (ud != NULL)
        nftnl_udata_parse(ud, len, comment_cb, &comment);
    const char *chain = nftnl_rule_get_str(r, NFTNL_RULE_CHAIN);
    if (comment != NULL && strcmp(comment, l->comment) == 0 && chain != NULL &&
        strlen(chain) < sizeof(l->mine[0].chain) && l->n_mine < PP_ARRAY_SIZE(l->mine)) {
        rule_t *m = &l->mine[l->n_mine++];
        snprintf(m->chain, sizeof(m->chain), "%s", chain);
        m->handle = nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE);
    } else {
        l->n_other++;
    }
    nftnl_rule_free(r);
    return MNL_CB_OK;
}

/* Reads the generation, then the rules of our table. */
static int nft_list(nft_t *n, listing_t *l)
{
    l->n_mine = 0;
    l->n_other = 0;
    struct nlmsghdr *nlh =
        nftnl_nlmsg_build_hdr(n->buf, NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK, ++n->seq);
    int rc = nft_query(n, nlh, gen_cb, l);
    if (rc < 0)
        return rc;

    struct nftnl_rule *r = nftnl_rule_alloc();
    if (r == NULL)
        return -ENOMEM;
    nlh = nftnl_nlmsg_build_hdr(n->buf, NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, ++n->seq);
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, PP_NFT_TABLE);
    nftnl_rule_nlmsg_build_payload(nlh, r);
    nftnl_rule_free(r);
    rc = nft_query(n, nlh, rule_cb, l);
    /* No table yet: nothing of ours. */
    return rc == -ENOENT ? 0 : rc;
}

/* ---- batch building ---- */

typedef struct batch_s {
    struct mnl_nlmsg_batch *b;
    uint32_t first_seq; /* the batch-begin message */
    uint32_t last_seq;  /* the last message that asks for an ack */
    int n;              /* messages between begin and end */
} batch_t;

static int batch_begin(nft_t *n, batch_t *bt, char *buf, uint32_t genid)
{
    bt->b = mnl_nlmsg_batch_start(buf, BATCH_SIZE);
    if (bt->b == NULL)
        return -ENOMEM;
    bt->first_seq = ++n->seq;
    struct nlmsghdr *nlh = nftnl_batch_begin(mnl_nlmsg_batch_current(bt->b), bt->first_seq);
    mnl_attr_put_u32(nlh, NFNL_BATCH_GENID, htonl(genid));
    mnl_nlmsg_batch_next(bt->b);
    bt->n = 0;
    return 0;
}

static struct nlmsghdr *batch_msg(nft_t *n, batch_t *bt, uint16_t type, uint16_t flags)
{
    bt->last_seq = ++n->seq;
    bt->n++;
    return nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(bt->b), type, NFPROTO_INET,
                                 flags | NLM_F_ACK, bt->last_seq);
}

static void batch_end(nft_t *n, batch_t *bt)
{
    nftnl_batch_end(mnl_nlmsg_batch_current(bt->b), ++n->seq);
    mnl_nlmsg_batch_next(bt->b);
}

/* Sends the batch and reads acks until the last one, or an error on the
 * batch itself. Returns 0, the first error (-errno), and in *failed_type
 * the message type that failed. */
static int batch_send(nft_t *n, batch_t *bt, const uint16_t *types, uint16_t *failed_type)
{
    if (mnl_socket_sendto(n->nl, mnl_nlmsg_batch_head(bt->b), mnl_nlmsg_batch_size(bt->b)) < 0)
        return -errno;
    int first_err = 0;
    for (;;) {
        ssize_t len = mnl_socket_recvfrom(n->nl, n->buf, sizeof(n->buf));
        if (len < 0)
            return -errno;
        int left = (int)len;
        for (const struct nlmsghdr *h = (const struct nlmsghdr *)n->buf; mnl_nlmsg_ok(h, left);
             h = mnl_nlmsg_next(h, &left)) {
            if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_pid != n->portid ||
                h->nlmsg_seq < bt->first_seq || h->nlmsg_seq > bt->last_seq)
                continue;
            const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
            if (e->error != 0 && first_err == 0) {
                first_err = e->error;
                uint32_t i = h->nlmsg_seq - bt->first_seq - 1;
                *failed_type = (h->nlmsg_seq > bt->first_seq && i < (uint32_t)bt->n) ? types[i] : 0;
            }
            if (h->nlmsg_seq == bt->first_seq && e->error != 0)
                return first_err;
            if (h->nlmsg_seq == bt->last_seq)
                return first_err;
        }
    }
}

static int put_table(nft_t *n, batch_t *bt, uint16_t type, uint16_t flags)
{
    struct nftnl_table *t = nftnl_table_alloc();
    if (t == NULL)
        return -ENOMEM;
    struct nlmsghdr *nlh = batch_msg(n, bt, type, flags);
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, PP_NFT_TABLE);
    nftnl_table_nlmsg_build_payload(nlh, t);
    nftnl_table_free(t);
    mnl_nlmsg_batch_next(bt->b);
    return 0;
}

static int put_chain(nft_t *n, batch_t *bt, const char *name, uint32_t hook)
{
    struct nftnl_chain *c = nftnl_chain_alloc();
    if (c == NULL)
        return -ENOMEM;
    struct nlmsghdr *nlh = batch_msg(n, bt, NFT_MSG_NEWCHAIN, NLM_F_CREATE);
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, PP_NFT_TABLE);
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
    nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, hook);
    nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, PRIO_RAW);
    nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "filter");
    nftnl_chain_nlmsg_build_payload(nlh, c);
    nftnl_chain_free(c);
    mnl_nlmsg_batch_next(bt->b);
    return 0;
}

static int put_rule_del(nft_t *n, batch_t *bt, const rule_t *m)
{
    struct nftnl_rule *r = nftnl_rule_alloc();
    if (r == NULL)
        return -ENOMEM;
    struct nlmsghdr *nlh = batch_msg(n, bt, NFT_MSG_DELRULE, 0);
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, PP_NFT_TABLE);
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, m->chain);
    nftnl_rule_set_u64(r, NFTNL_RULE_HANDLE, m->handle);
    nftnl_rule_nlmsg_build_payload(nlh, r);
    nftnl_rule_free(r);
    mnl_nlmsg_batch_next(bt->b);
    return 0;
}

static int add_expr(struct nftnl_rule *r, struct nftnl_expr *e)
{
    if (e == NULL)
        return -ENOMEM;
    nftnl_rule_add_expr(r, e);
    return 0;
}

static int add_meta(struct nftnl_rule *r, uint32_t key)
{
    struct nftnl_expr *e = nftnl_expr_alloc("meta");
    if (e != NULL) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, NFT_REG_1);
    }
    return add_expr(r, e);
}

static int add_payload(struct nftnl_rule *r, uint32_t base, uint32_t offset, uint32_t len)
{
    struct nftnl_expr *e = nftnl_expr_alloc("payload");
    if (e != NULL) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
    }
    return add_expr(r, e);
}

static int add_cmp_eq(struct nftnl_rule *r, const void *data, uint32_t len)
{
    struct nftnl_expr *e = nftnl_expr_alloc("cmp");
    if (e != NULL) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, NFT_CMP_EQ);
        nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
    }
    return add_expr(r, e);
}

/* `meta nfproto ipv4 meta l4proto udp ip {s,d}addr PEER udp dport PORT
 * notrack comment "peerpod vni:N"` */
static int put_rule_add(nft_t *n, batch_t *bt, const char *chain, bool match_saddr,
                        struct in_addr peer, uint16_t port, const char *comment)
{
    struct nftnl_rule *r = nftnl_rule_alloc();
    struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(64);
    int rc = r != NULL && ud != NULL ? 0 : -ENOMEM;
    uint8_t nfproto = NFPROTO_IPV4, l4 = IPPROTO_UDP;
    uint16_t dport = htons(port);
    if (rc == 0) {
        nftnl_rule_set_str(r, NFTNL_RULE_TABLE, PP_NFT_TABLE);
        nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
        rc = add_meta(r, NFT_META_NFPROTO);
    }
    if (rc == 0)
        rc = add_cmp_eq(r, &nfproto, 1);
    if (rc == 0)
        rc = add_meta(r, NFT_META_L4PROTO);
    if (rc == 0)
        rc = add_cmp_eq(r, &l4, 1);
    /* IPv4 header: saddr at 12, daddr at 16; UDP header: dport at 2. */
    if (rc == 0)
        rc = add_payload(r, NFT_PAYLOAD_NETWORK_HEADER, match_saddr ? 12 : 16, 4);
    if (rc == 0)
        rc = add_cmp_eq(r, &peer.s_addr, 4);
    if (rc == 0)
        rc = add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
    if (rc == 0)
        rc = add_cmp_eq(r, &dport, 2);
    if (rc == 0)
        rc = add_expr(r, nftnl_expr_alloc("notrack"));
    if (rc == 0 && !nftnl_udata_put_strz(ud, NFTNL_UDATA_RULE_COMMENT, comment))
        rc = -ENOMEM;
    if (rc == 0) {
        nftnl_rule_set_data(r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(ud),
                            nftnl_udata_buf_len(ud));
        struct nlmsghdr *nlh = batch_msg(n, bt, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
        nftnl_rule_nlmsg_build_payload(nlh, r);
        mnl_nlmsg_batch_next(bt->b);
    }
    if (ud != NULL)
        nftnl_udata_buf_free(ud);
    if (r != NULL)
        nftnl_rule_free(r);
    return rc;
}

static const char *msg_name(uint16_t type)
{
    switch (type) {
    case NFT_MSG_NEWTABLE:
        return "create table";
    case NFT_MSG_DELTABLE:
        return "delete table";
    case NFT_MSG_NEWCHAIN:
        return "create chain";
    case NFT_MSG_NEWRULE:
        return "add rule";
    case NFT_MSG_DELRULE:
        return "delete rule";
    default:
        return "batch";
    }
}

/* Fills the transaction: for `add` the table, chains and our two rules
 * replacing any of our VNI; else the deletion of ours, and of the table if
 * nothing else is in it. */
/* Records the type of the message just put, for error messages. */
static int typed(int rc, const batch_t *bt, uint16_t *types, uint16_t type)
{
    if (rc == 0)
        types[bt->n - 1] = type;
    return rc;
}

static int fill_batch(nft_t *n, batch_t *bt, bool add, struct in_addr peer, uint16_t port,
                      const listing_t *l, uint16_t *types)
{
    int rc = 0;
    if (add) {
        rc = typed(put_table(n, bt, NFT_MSG_NEWTABLE, NLM_F_CREATE), bt, types, NFT_MSG_NEWTABLE);
        if (rc == 0)
            rc = typed(put_chain(n, bt, CHAIN_PRE, NF_INET_PRE_ROUTING), bt, types,
                       NFT_MSG_NEWCHAIN);
        if (rc == 0)
            rc = typed(put_chain(n, bt, CHAIN_OUT, NF_INET_LOCAL_OUT), bt, types, NFT_MSG_NEWCHAIN);
    }
    for (size_t i = 0; rc == 0 && i < l->n_mine; i++)
        rc = typed(put_rule_del(n, bt, &l->mine[i]), bt, types, NFT_MSG_DELRULE);
    if (add) {
        if (rc == 0)
            rc = typed(put_rule_add(n, bt, CHAIN_PRE, true, peer, port, l->comment), bt, types,
                       NFT_MSG_NEWRULE);
        if (rc == 0)
            rc = typed(put_rule_add(n, bt, CHAIN_OUT, false, peer, port, l->comment), bt, types,
                       NFT_MSG_NEWRULE);
    } else if (rc == 0 && l->n_other == 0) {
        /* Our last rules go: so does the table (and its chains). */
        rc = typed(put_table(n, bt, NFT_MSG_DELTABLE, 0), bt, types, NFT_MSG_DELTABLE);
    }
    return rc;
}

/* One attempt: list, then the transaction. ERESTART means try again. */
static int notrack_once(nft_t *n, bool add, struct in_addr peer, uint16_t port, listing_t *l,
                        uint16_t *failed_type)
{
    int rc = nft_list(n, l);
    if (rc < 0)
        return rc;
    batch_t bt;
    uint16_t types[16];
    rc = batch_begin(n, &bt, n->batch, l->genid);
    if (rc < 0)
        return rc;
    rc = fill_batch(n, &bt, add, peer, port, l, types);
    if (rc == 0 && bt.n > 0) {
        batch_end(n, &bt);
        rc = batch_send(n, &bt, types, failed_type);
    }
    mnl_nlmsg_batch_stop(bt.b);
    /* Deleting a table that is not there: already done. */
    if (!add && rc == -ENOENT && *failed_type == NFT_MSG_DELTABLE && l->n_mine == 0)
        return 0;
    return rc;
}

static int notrack(nft_t *n, bool add, struct in_addr peer, uint16_t port, uint32_t vni,
                   pp_error_t *err)
{
    char comment[32];
    snprintf(comment, sizeof(comment), COMMENT_FMT, vni);
    listing_t l = {.comment = comment};
    uint16_t failed = 0;
    int rc = 0;
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        failed = 0;
        rc = notrack_once(n, add, peer, port, &l, &failed);
        /* ERESTART: the ruleset changed since we listed it; EINTR: the
         * listing was interrupted by a change. */
        if (rc != -ERESTART && rc != -EINTR)
            break;
    }
    if (rc == 0)
        return 0;
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &peer, ip, sizeof(ip));
    if (add)
        return pp_error_set(err, rc,
                            "nftables: %s in table `inet %s` (notrack for %s udp %u, vni %u): %s",
                            msg_name(failed), PP_NFT_TABLE, ip, (unsigned)port, vni, strerror(-rc));
    return pp_error_set(err, rc, "nftables: %s in table `inet %s` (vni %u): %s", msg_name(failed),
                        PP_NFT_TABLE, vni, strerror(-rc));
}

int pp__nft_notrack_add(pp__nft_t *n, struct in_addr peer, uint16_t port, uint32_t vni,
                        pp_error_t *err)
{
    return notrack(n, true, peer, port, vni, err);
}

int pp__nft_notrack_del(pp__nft_t *n, uint32_t vni, pp_error_t *err)
{
    struct in_addr none = {0};
    return notrack(n, false, none, 0, vni, err);
}
