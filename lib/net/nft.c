/* Connection tracking exemption for the tunnels' UDP, with nftables over
 * netlink (libnftnl + libmnl): no program is run.
 *
 *   table inet peerpod {
 *     set tunnels { type ipv4_addr . inet_service . mark; }  (peer . port . VNI)
 *     chain prerouting { type filter hook prerouting priority raw;
 *       meta nfproto ipv4 meta l4proto udp
 *       ip saddr . udp dport . @th,96,24 @tunnels notrack }
 *     chain output { type filter hook output priority raw;
 *       ... ip daddr . udp dport . @th,96,24 @tunnels notrack }
 *   }
 *
 * One element per tunnel (its peer, UDP port and VNI, the VNI read from the
 * VXLAN header), commented "peerpod vni:<VNI>": a packet costs one hash
 * lookup however many tunnels there are, and adding or removing a tunnel is
 * one element, with no listing. (Before, each tunnel had two rules of its
 * own, so every packet of the namespace walked all of them, and every
 * change listed them all.) Rules of that older form, commented "peerpod
 * vni:<VNI>", are still removed with their tunnel.
 *
 * The table goes with its last element. Whether it was the last is known
 * from the number of elements this socket has seen (counted once from the
 * kernel, then kept as elements come and go); when it reaches zero the set
 * is listed again, and the table deleted in a transaction guarded by the
 * ruleset generation read before that listing: if anyone changed the
 * ruleset in between, the kernel refuses the batch (ERESTART) and we look
 * again. So a tunnel added meanwhile is never deleted with the table. */
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
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include "net/net_int.h"
#include "util/cleanup.h"

#define CHAIN_PRE     "prerouting"
#define CHAIN_OUT     "output"
#define SET_NAME      "tunnels"
#define SET_ID        1
#define PRIO_RAW      (-300)
#define MAX_ATTEMPTS  16
#define BATCH_SIZE    (16 * 1024)
#define COMMENT_FMT   "peerpod vni:%u"
#define RULES_COMMENT "peerpod tunnels"
/* nftables' datatypes for the set's key, so that `nft list` shows it:
 * ipv4_addr . inet_service . mark (the VNI's 3 bytes, then a zero). */
#define TYPE_IPADDR       7
#define TYPE_INET_SERVICE 13
#define TYPE_MARK         19
#define CONCAT_TYPE_BITS  6

/* The element: what the rules load into three 32-bit registers. */
typedef struct key_s {
    uint32_t peer; /* network order */
    uint16_t port; /* network order, then two zero bytes */
    uint16_t zero1;
    uint8_t vni[3]; /* as in the VXLAN header, then a zero byte */
    uint8_t zero2;
} elem_key_t;

typedef struct pp__nft_s {
    struct mnl_socket *nl;
    uint32_t portid;
    uint32_t seq;
    long count;          /* elements in the set, as this socket knows them; -1: unknown */
    char buf[32 * 1024]; /* the most a netlink dump sends at once */
    char batch[BATCH_SIZE];
} nft_t;

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
    n->count = -1;
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

static void make_key(elem_key_t *k, struct in_addr peer, uint16_t port, uint32_t vni)
{
    memset(k, 0, sizeof(*k));
    k->peer = peer.s_addr;
    k->port = htons(port);
    k->vni[0] = (uint8_t)(vni >> 16);
    k->vni[1] = (uint8_t)(vni >> 8);
    k->vni[2] = (uint8_t)vni;
}

static uint32_t key_vni(const elem_key_t *k)
{
    return (uint32_t)k->vni[0] << 16 | (uint32_t)k->vni[1] << 8 | k->vni[2];
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

/* ---- listing ---- */

/* What the table holds: the set's elements (with those of one VNI), and
 * rules other than our two. */
typedef struct listing_s {
    uint32_t vni;        /* elements and old-style rules of this VNI are "mine" */
    const char *comment; /* "peerpod vni:<vni>" */
    elem_key_t mine[4];
    size_t n_mine;
    size_t n_elems;
    uint64_t rule_handles[8]; /* old-style rules of the VNI */
    char rule_chains[8][16];
    size_t n_rules_mine;
    size_t n_rules_other; /* neither ours nor of the VNI */
    uint32_t genid;
} listing_t;

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

static int elem_cb(struct nftnl_set_elem *e, void *data)
{
    listing_t *l = data;
    uint32_t len = 0;
    const void *k = nftnl_set_elem_get(e, NFTNL_SET_ELEM_KEY, &len);
    l->n_elems++;
    if (k != NULL && len == sizeof(elem_key_t) && l->n_mine < PP_ARRAY_SIZE(l->mine)) {
        elem_key_t key;
        memcpy(&key, k, sizeof(key));
        if (key_vni(&key) == l->vni)
            l->mine[l->n_mine++] = key;
    }
    return 0;
}

static int elems_cb(const struct nlmsghdr *nlh, void *data)
{
    struct nftnl_set *s = nftnl_set_alloc();
    if (s == NULL)
        return MNL_CB_ERROR;
    if (nftnl_set_elems_nlmsg_parse(nlh, s) == 0)
        nftnl_set_elem_foreach(s, elem_cb, data);
    nftnl_set_free(s);
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
    if (comment != NULL && strcmp(comment, RULES_COMMENT) == 0) {
        /* ours, the set's */
    } else if (comment != NULL && strcmp(comment, l->comment) == 0 && chain != NULL &&
               strlen(chain) < sizeof(l->rule_chains[0]) &&
               l->n_rules_mine < PP_ARRAY_SIZE(l->rule_handles)) {
        snprintf(l->rule_chains[l->n_rules_mine], sizeof(l->rule_chains[0]), "%s", chain);
        l->rule_handles[l->n_rules_mine++] = nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE);
    } else {
        l->n_rules_other++;
    }
    nftnl_rule_free(r);
    return MNL_CB_OK;
}

static int list_gen(nft_t *n, listing_t *l)
{
    struct nlmsghdr *nlh =
        nftnl_nlmsg_build_hdr(n->buf, NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK, ++n->seq);
    return nft_query(n, nlh, gen_cb, l);
}

/* The set's elements; a missing table or set holds none. */
static int list_elems(nft_t *n, listing_t *l)
{
    l->n_elems = 0;
    l->n_mine = 0;
    struct nftnl_set *s = nftnl_set_alloc();
    if (s == NULL)
        return -ENOMEM;
    struct nlmsghdr *nlh =
        nftnl_nlmsg_build_hdr(n->buf, NFT_MSG_GETSETELEM, NFPROTO_INET, NLM_F_DUMP, ++n->seq);
    nftnl_set_set_str(s, NFTNL_SET_TABLE, PP_NFT_TABLE);
    nftnl_set_set_str(s, NFTNL_SET_NAME, SET_NAME);
    nftnl_set_elems_nlmsg_build_payload(nlh, s);
    nftnl_set_free(s);
    int rc = nft_query(n, nlh, elems_cb, l);
    return rc == -ENOENT ? 0 : rc;
}

/* The table's rules: the VNI's old-style ones, and how many others. */
static int list_rules(nft_t *n, listing_t *l)
{
    l->n_rules_mine = 0;
    l->n_rules_other = 0;
    struct nftnl_rule *r = nftnl_rule_alloc();
    if (r == NULL)
        return -ENOMEM;
    struct nlmsghdr *nlh =
        nftnl_nlmsg_build_hdr(n->buf, NFT_MSG_GETRULE, NFPROTO_INET, NLM_F_DUMP, ++n->seq);
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, PP_NFT_TABLE);
    nftnl_rule_nlmsg_build_payload(nlh, r);
    nftnl_rule_free(r);
    int rc = nft_query(n, nlh, rule_cb, l);
    return rc == -ENOENT ? 0 : rc;
}

/* ---- batch building ---- */

typedef struct batch_s {
    struct mnl_nlmsg_batch *b;
    uint32_t first_seq; /* the batch-begin message */
    uint32_t last_seq;  /* the last message that asks for an ack */
    int n;              /* messages between begin and end */
    uint16_t types[16]; /* of each message, for error messages */
} batch_t;

/* genid 0: not guarded. */
static int batch_begin(nft_t *n, batch_t *bt, uint32_t genid)
{
    bt->b = mnl_nlmsg_batch_start(n->batch, BATCH_SIZE);
    if (bt->b == NULL)
        return -ENOMEM;
    bt->first_seq = ++n->seq;
    struct nlmsghdr *nlh = nftnl_batch_begin(mnl_nlmsg_batch_current(bt->b), bt->first_seq);
    if (genid != 0)
        mnl_attr_put_u32(nlh, NFNL_BATCH_GENID, htonl(genid));
    mnl_nlmsg_batch_next(bt->b);
    bt->n = 0;
    return 0;
}

static struct nlmsghdr *batch_msg(nft_t *n, batch_t *bt, uint16_t type, uint16_t flags)
{
    bt->last_seq = ++n->seq;
    if ((size_t)bt->n < PP_ARRAY_SIZE(bt->types))
        bt->types[bt->n] = type;
    bt->n++;
    return nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(bt->b), type, NFPROTO_INET,
                                 flags | NLM_F_ACK, bt->last_seq);
}

/* Ends the batch, sends it and reads acks until the last one, or an error
 * on the batch itself. Returns 0 or the first error (-errno), with in
 * *failed_type the message type that failed. */
static int batch_send(nft_t *n, batch_t *bt, uint16_t *failed_type)
{
    nftnl_batch_end(mnl_nlmsg_batch_current(bt->b), ++n->seq);
    mnl_nlmsg_batch_next(bt->b);
    int rc = 0;
    if (mnl_socket_sendto(n->nl, mnl_nlmsg_batch_head(bt->b), mnl_nlmsg_batch_size(bt->b)) < 0)
        rc = -errno;
    int first_err = 0;
    while (rc == 0) {
        ssize_t len = mnl_socket_recvfrom(n->nl, n->buf, sizeof(n->buf));
        if (len < 0) {
            rc = -errno;
            break;
        }
        int left = (int)len, done = 0;
        for (const struct nlmsghdr *h = (const struct nlmsghdr *)n->buf; mnl_nlmsg_ok(h, left);
             h = mnl_nlmsg_next(h, &left)) {
            if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_pid != n->portid ||
                h->nlmsg_seq < bt->first_seq || h->nlmsg_seq > bt->last_seq)
                continue;
            const struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
            if (e->error != 0 && first_err == 0) {
                first_err = e->error;
                uint32_t i = h->nlmsg_seq - bt->first_seq - 1;
                *failed_type = (h->nlmsg_seq > bt->first_seq && i < (uint32_t)bt->n &&
                                i < PP_ARRAY_SIZE(bt->types))
                                   ? bt->types[i]
                                   : 0;
            }
            if ((h->nlmsg_seq == bt->first_seq && e->error != 0) || h->nlmsg_seq == bt->last_seq)
                done = 1;
        }
        if (done) {
            rc = first_err;
            break;
        }
    }
    mnl_nlmsg_batch_stop(bt->b);
    return rc;
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

/* The set, exclusively: if it exists, someone else made the rules too. */
static int put_set(nft_t *n, batch_t *bt)
{
    struct nftnl_set *s = nftnl_set_alloc();
    if (s == NULL)
        return -ENOMEM;
    struct nlmsghdr *nlh = batch_msg(n, bt, NFT_MSG_NEWSET, NLM_F_CREATE | NLM_F_EXCL);
    nftnl_set_set_str(s, NFTNL_SET_TABLE, PP_NFT_TABLE);
    nftnl_set_set_str(s, NFTNL_SET_NAME, SET_NAME);
    nftnl_set_set_u32(s, NFTNL_SET_ID, SET_ID);
    nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, sizeof(elem_key_t));
    nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE,
                      TYPE_IPADDR << (2 * CONCAT_TYPE_BITS) |
                          TYPE_INET_SERVICE << CONCAT_TYPE_BITS | TYPE_MARK);
    nftnl_set_set_u32(s, NFTNL_SET_FLAGS, 0);
    nftnl_set_nlmsg_build_payload(nlh, s);
    nftnl_set_free(s);
    mnl_nlmsg_batch_next(bt->b);
    return 0;
}

/* One element of the set: add (exclusively) or delete. */
static int put_elem(nft_t *n, batch_t *bt, uint16_t type, uint16_t flags, const elem_key_t *key)
{
    struct nftnl_set *s = nftnl_set_alloc();
    struct nftnl_set_elem *e = nftnl_set_elem_alloc();
    struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(64);
    int rc = s != NULL && e != NULL && ud != NULL ? 0 : -ENOMEM;
    if (rc == 0) {
        char comment[32];
        snprintf(comment, sizeof(comment), COMMENT_FMT, key_vni(key));
        nftnl_set_set_str(s, NFTNL_SET_TABLE, PP_NFT_TABLE);
        nftnl_set_set_str(s, NFTNL_SET_NAME, SET_NAME);
        nftnl_set_set_u32(s, NFTNL_SET_ID, SET_ID);
        nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, sizeof(*key));
        if (type == NFT_MSG_NEWSETELEM) {
            if (!nftnl_udata_put_strz(ud, NFTNL_UDATA_SET_ELEM_COMMENT, comment))
                rc = -ENOMEM;
            else
                nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, nftnl_udata_buf_data(ud),
                                   nftnl_udata_buf_len(ud));
        }
    }
    if (rc == 0) {
        nftnl_set_elem_add(s, e);
        e = NULL; /* the set's now */
        struct nlmsghdr *nlh = batch_msg(n, bt, type, flags);
        nftnl_set_elems_nlmsg_build_payload(nlh, s);
        mnl_nlmsg_batch_next(bt->b);
    }
    if (ud != NULL)
        nftnl_udata_buf_free(ud);
    if (e != NULL)
        nftnl_set_elem_free(e);
    if (s != NULL)
        nftnl_set_free(s);
    return rc;
}

static int put_rule_del(nft_t *n, batch_t *bt, const char *chain, uint64_t handle)
{
    struct nftnl_rule *r = nftnl_rule_alloc();
    if (r == NULL)
        return -ENOMEM;
    struct nlmsghdr *nlh = batch_msg(n, bt, NFT_MSG_DELRULE, 0);
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, PP_NFT_TABLE);
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
    nftnl_rule_set_u64(r, NFTNL_RULE_HANDLE, handle);
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

static int add_payload(struct nftnl_rule *r, uint32_t dreg, uint32_t base, uint32_t offset,
                       uint32_t len)
{
    struct nftnl_expr *e = nftnl_expr_alloc("payload");
    if (e != NULL) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
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

static int add_lookup(struct nftnl_rule *r)
{
    struct nftnl_expr *e = nftnl_expr_alloc("lookup");
    if (e != NULL) {
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG32_00);
        nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, SET_NAME);
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, SET_ID);
    }
    return add_expr(r, e);
}

/* `meta nfproto ipv4 meta l4proto udp ip {s,d}addr . udp dport . @th,96,24
 * @tunnels notrack comment "peerpod tunnels"` */
static int put_rule_add(nft_t *n, batch_t *bt, const char *chain, bool match_saddr)
{
    struct nftnl_rule *r = nftnl_rule_alloc();
    struct nftnl_udata_buf *ud = nftnl_udata_buf_alloc(64);
    int rc = r != NULL && ud != NULL ? 0 : -ENOMEM;
    uint8_t nfproto = NFPROTO_IPV4, l4 = IPPROTO_UDP;
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
    /* IPv4 header: saddr at 12, daddr at 16; UDP: dport at 2; VXLAN after
     * the 8 bytes of UDP: flags, 3 reserved bytes, then the VNI. Each field
     * fills one 32-bit register, zero-padded, as elem_key_t lays them out. */
    if (rc == 0)
        rc = add_payload(r, NFT_REG32_00, NFT_PAYLOAD_NETWORK_HEADER, match_saddr ? 12 : 16, 4);
    if (rc == 0)
        rc = add_payload(r, NFT_REG32_01, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
    if (rc == 0)
        rc = add_payload(r, NFT_REG32_02, NFT_PAYLOAD_TRANSPORT_HEADER, 12, 3);
    if (rc == 0)
        rc = add_lookup(r);
    if (rc == 0)
        rc = add_expr(r, nftnl_expr_alloc("notrack"));
    if (rc == 0 && !nftnl_udata_put_strz(ud, NFTNL_UDATA_RULE_COMMENT, RULES_COMMENT))
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
    case NFT_MSG_NEWSET:
        return "create set";
    case NFT_MSG_NEWRULE:
        return "add rule";
    case NFT_MSG_DELRULE:
        return "delete rule";
    case NFT_MSG_NEWSETELEM:
        return "add element";
    case NFT_MSG_DELSETELEM:
        return "delete element";
    default:
        return "batch";
    }
}

/* ---- add ---- */

/* The element alone: the table, set and rules exist. */
static int add_elem(nft_t *n, const elem_key_t *key, uint16_t *failed)
{
    batch_t bt;
    int rc = batch_begin(n, &bt, 0);
    if (rc == 0)
        rc = put_elem(n, &bt, NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL, key);
    if (rc == 0)
        return batch_send(n, &bt, failed);
    mnl_nlmsg_batch_stop(bt.b);
    return rc;
}

/* The table (kept if it exists), its chains, the set (exclusively: -EEXIST
 * when another made it meanwhile) with the two rules, and the element. */
static int add_all(nft_t *n, const elem_key_t *key, uint16_t *failed)
{
    batch_t bt;
    int rc = batch_begin(n, &bt, 0);
    if (rc < 0)
        return rc;
    rc = put_table(n, &bt, NFT_MSG_NEWTABLE, NLM_F_CREATE);
    if (rc == 0)
        rc = put_chain(n, &bt, CHAIN_PRE, NF_INET_PRE_ROUTING);
    if (rc == 0)
        rc = put_chain(n, &bt, CHAIN_OUT, NF_INET_LOCAL_OUT);
    if (rc == 0)
        rc = put_set(n, &bt);
    if (rc == 0)
        rc = put_rule_add(n, &bt, CHAIN_PRE, true);
    if (rc == 0)
        rc = put_rule_add(n, &bt, CHAIN_OUT, false);
    if (rc == 0)
        rc = put_elem(n, &bt, NFT_MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL, key);
    if (rc == 0)
        return batch_send(n, &bt, failed);
    mnl_nlmsg_batch_stop(bt.b);
    return rc;
}

int pp__nft_notrack_add(pp__nft_t *n, struct in_addr peer, uint16_t port, uint32_t vni,
                        pp_error_t *err)
{
    elem_key_t key;
    make_key(&key, peer, port, vni);
    uint16_t failed = 0;
    int rc = 0;
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        failed = 0;
        rc = add_elem(n, &key, &failed);
        if (rc == 0 && n->count >= 0)
            n->count++;
        if (rc == -EEXIST)
            rc = 0; /* the same peer, port and VNI: this tunnel's already */
        if (rc != -ENOENT)
            break;
        /* No table or set yet (or the table went with its last element). */
        failed = 0;
        rc = add_all(n, &key, &failed);
        if (rc == 0)
            n->count = 1; /* a set of our making, with this one element */
        if (rc != -EEXIST)
            break;
    }
    if (rc == 0)
        return 0;
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &peer, ip, sizeof(ip));
    return pp_error_set(err, rc,
                        "nftables: %s in table `inet %s` (notrack for %s udp %u, vni %u): %s",
                        msg_name(failed), PP_NFT_TABLE, ip, (unsigned)port, vni, strerror(-rc));
}

/* ---- delete ---- */

/* Deletes the VNI's element(s): `known`, or those found in `l`. */
static int del_elems(nft_t *n, const listing_t *l, const elem_key_t *known, uint16_t *failed)
{
    batch_t bt;
    int rc = batch_begin(n, &bt, 0), k = 0;
    if (known != NULL && rc == 0) {
        rc = put_elem(n, &bt, NFT_MSG_DELSETELEM, 0, known);
        k++;
    }
    for (size_t i = 0; known == NULL && rc == 0 && i < l->n_mine; i++, k++)
        rc = put_elem(n, &bt, NFT_MSG_DELSETELEM, 0, &l->mine[i]);
    if (rc == 0 && k > 0)
        return batch_send(n, &bt, failed);
    mnl_nlmsg_batch_stop(bt.b);
    return rc;
}

/* Deletes the VNI's rules of the older form found in `l`. */
static int del_old_rules(nft_t *n, const listing_t *l, uint16_t *failed)
{
    if (l->n_rules_mine == 0)
        return 0;
    batch_t bt;
    int rc = batch_begin(n, &bt, 0);
    for (size_t i = 0; rc == 0 && i < l->n_rules_mine; i++)
        rc = put_rule_del(n, &bt, l->rule_chains[i], l->rule_handles[i]);
    if (rc == 0)
        rc = batch_send(n, &bt, failed);
    else
        mnl_nlmsg_batch_stop(bt.b);
    return rc == -ENOENT ? 0 : rc;
}

/* With no element left, the table goes, unless it holds rules of another
 * kind; guarded by the generation read before the listing. */
static int drop_table_if_empty(nft_t *n, listing_t *l, uint16_t *failed)
{
    for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        int rc = list_gen(n, l);
        if (rc == 0)
            rc = list_elems(n, l);
        if (rc == 0)
            rc = list_rules(n, l);
        if (rc < 0)
            return rc;
        n->count = (long)l->n_elems;
        if (l->n_elems > 0 || l->n_rules_other > 0 || l->n_rules_mine > 0)
            return 0;
        batch_t bt;
        rc = batch_begin(n, &bt, l->genid);
        if (rc < 0)
            return rc;
        rc = put_table(n, &bt, NFT_MSG_DELTABLE, 0);
        if (rc == 0)
            rc = batch_send(n, &bt, failed);
        else
            mnl_nlmsg_batch_stop(bt.b);
        if (rc == -ENOENT)
            rc = 0; /* already gone */
        if (rc == 0)
            n->count = -1; /* no set: the next add makes one */
        /* ERESTART: the ruleset changed since we listed it; EINTR: the
         * listing was interrupted by a change. */
        if (rc != -ERESTART && rc != -EINTR)
            return rc;
    }
    return -ERESTART;
}

int pp__nft_notrack_del(pp__nft_t *n, uint32_t vni, const struct in_addr *peer, uint16_t port,
                        pp_error_t *err)
{
    char comment[32];
    snprintf(comment, sizeof(comment), COMMENT_FMT, vni);
    listing_t l = {.vni = vni, .comment = comment};
    uint16_t failed = 0;
    elem_key_t key;
    const elem_key_t *known = NULL;
    if (peer != NULL) {
        make_key(&key, *peer, port, vni);
        known = &key;
    }
    /* Rules of the older form for this VNI: listing the rules is cheap,
     * there being two of ours. */
    int rc = list_rules(n, &l);
    if (rc == 0)
        rc = del_old_rules(n, &l, &failed);
    /* Without the peer, the element is found by its VNI. */
    if (rc == 0 && known == NULL)
        rc = list_elems(n, &l);
    if (rc == 0)
        rc = del_elems(n, &l, known, &failed);
    if (rc == 0 && n->count >= 0) {
        n->count -= known != NULL ? 1 : (long)l.n_mine;
        if (n->count < 0)
            n->count = -1;
    }
    if (rc == -ENOENT) {
        /* Gone already (or never made): the count can no longer be trusted. */
        n->count = -1;
        rc = 0;
    }
    if (rc == 0 && n->count <= 0)
        rc = drop_table_if_empty(n, &l, &failed);
    if (rc == 0)
        return 0;
    return pp_error_set(err, rc, "nftables: %s in table `inet %s` (vni %u): %s", msg_name(failed),
                        PP_NFT_TABLE, vni, strerror(-rc));
}
