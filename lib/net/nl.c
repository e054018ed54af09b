/* Netlink sockets and the one translation of libnl errors to errno. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <netlink/errno.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

#include "net/net_int.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

/* libnl error -> errno. libnl folds the kernel's errno into these codes
 * (nl_syserr2nlerr), so kernel errors on requests are taken from the ack
 * itself instead (pp__nl_talk); this table serves libnl's own failures and
 * dumps. */
static const struct {
    int nle;
    int errnum;
} nle_map[] = {
    {NLE_FAILURE, EIO},
    {NLE_INTR, EINTR},
    {NLE_BAD_SOCK, EBADF},
    {NLE_AGAIN, EAGAIN},
    {NLE_NOMEM, ENOMEM},
    {NLE_EXIST, EEXIST},
    {NLE_INVAL, EINVAL},
    {NLE_RANGE, ERANGE},
    {NLE_MSGSIZE, EMSGSIZE},
    {NLE_OPNOTSUPP, EOPNOTSUPP},
    {NLE_AF_NOSUPPORT, EAFNOSUPPORT},
    {NLE_OBJ_NOTFOUND, ENOENT},
    {NLE_NOATTR, ENODATA},
    {NLE_MISSING_ATTR, EINVAL},
    {NLE_AF_MISMATCH, EAFNOSUPPORT},
    {NLE_SEQ_MISMATCH, EPROTO},
    {NLE_MSG_OVERFLOW, EMSGSIZE},
    {NLE_MSG_TRUNC, EMSGSIZE},
    {NLE_NOADDR, EADDRNOTAVAIL},
    {NLE_SRCRT_NOSUPPORT, EOPNOTSUPP},
    {NLE_MSG_TOOSHORT, EPROTO},
    {NLE_MSGTYPE_NOSUPPORT, EOPNOTSUPP},
    {NLE_OBJ_MISMATCH, EINVAL},
    {NLE_NOCACHE, ENOENT},
    {NLE_BUSY, EBUSY},
    {NLE_PROTO_MISMATCH, EPROTONOSUPPORT},
    {NLE_NOACCESS, EACCES},
    {NLE_PERM, EPERM},
    {NLE_PKTLOC_FILE, ENOENT},
    {NLE_PARSE_ERR, EINVAL},
    {NLE_NODEV, ENODEV},
    {NLE_IMMUTABLE, EPERM},
    {NLE_DUMP_INTR, EINTR},
    {NLE_ATTRSIZE, ERANGE},
};

int pp_net_nlerr_to_errno(int nlerr)
{
    if (nlerr < 0)
        nlerr = -nlerr;
    if (nlerr == NLE_SUCCESS)
        return 0;
    for (size_t i = 0; i < sizeof(nle_map) / sizeof(nle_map[0]); i++)
        if (nle_map[i].nle == nlerr)
            return -nle_map[i].errnum;
    return -EIO;
}

int pp__nl_fail(pp_error_t *err, int nlerr, const char *fmt, ...)
{
    int code = pp_net_nlerr_to_errno(nlerr);
    if (err == NULL)
        return code;
    char ctx[PP_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof(ctx), fmt, ap);
    va_end(ap);
    return pp_error_set(err, code, "%s: netlink: %s", ctx, nl_geterror(nlerr));
}

/* The kernel's error ack: keep its errno and extended-ack message. */
static int on_error(struct sockaddr_nl *nla, struct nlmsgerr *e, void *arg)
{
    (void)nla;
    pp__nl_t *nl = arg;
    nl->kerr = e->error < 0 ? -e->error : e->error;
    nl->ext[0] = '\0';
    nl->done = 1;
    /* The ack header sits right before the nlmsgerr payload. */
    const struct nlmsghdr *h = (const struct nlmsghdr *)((const char *)e - NLMSG_HDRLEN);
    if (!(h->nlmsg_flags & NLM_F_ACK_TLVS))
        return NL_STOP;
    size_t off = NLMSG_HDRLEN + sizeof(*e);
    if (!(h->nlmsg_flags & NLM_F_CAPPED))
        off += e->msg.nlmsg_len - NLMSG_HDRLEN;
    while (off + NLA_HDRLEN <= h->nlmsg_len) {
        const struct nlattr *a = (const struct nlattr *)((const char *)h + off);
        if (a->nla_len < NLA_HDRLEN || off + a->nla_len > h->nlmsg_len)
            break;
        if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
            size_t n = a->nla_len - NLA_HDRLEN;
            const char *s = (const char *)a + NLA_HDRLEN;
            n = strnlen(s, n);
            if (n >= sizeof(nl->ext))
                n = sizeof(nl->ext) - 1;
            memcpy(nl->ext, s, n);
            nl->ext[n] = '\0';
            /* The kernel's messages end without a period, mostly. */
            while (n > 0 && (nl->ext[n - 1] == '\n' || nl->ext[n - 1] == '.'))
                nl->ext[--n] = '\0';
        }
        off += NLA_ALIGN(a->nla_len);
    }
    return NL_STOP;
}

static int on_ack(struct nl_msg *msg, void *arg)
{
    (void)msg;
    pp__nl_t *nl = arg;
    nl->done = 1;
    return NL_STOP;
}

/* A socket with our callbacks, connected (fd < 0) or on `fd`, which it
 * then owns whatever happens. */
static int nl_init(pp__nl_t *nl, int fd, pp_error_t *err)
{
    memset(nl, 0, sizeof(*nl));
    nl->sk = nl_socket_alloc();
    nl->cb = nl_cb_alloc(NL_CB_DEFAULT);
    if (nl->sk == NULL || nl->cb == NULL) {
        pp__nl_close(nl);
        if (fd >= 0)
            close(fd);
        return pp_error_set(err, -ENOMEM, "out of memory");
    }
    int rc =
        fd < 0 ? nl_connect(nl->sk, NETLINK_ROUTE) : nl_socket_set_fd(nl->sk, NETLINK_ROUTE, fd);
    if (rc < 0) {
        rc = pp__nl_fail(err, rc, fd < 0 ? "open netlink socket" : "adopt netlink socket");
        pp__nl_close(nl);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    int one = 1;
    int sfd = nl_socket_get_fd(nl->sk);
    /* Older kernels lack these; the messages are then plainer, no more. */
    (void)setsockopt(sfd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    (void)setsockopt(sfd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one));
    /* A kernel that never answers must not hang a pod forever. */
    struct timeval tv = {.tv_sec = 10};
    (void)setsockopt(sfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    nl_cb_err(nl->cb, NL_CB_CUSTOM, on_error, nl);
    nl_cb_set(nl->cb, NL_CB_ACK, NL_CB_CUSTOM, on_ack, nl);
    return 0;
}

int pp__nl_open(pp__nl_t *nl, pp_error_t *err)
{
    return nl_init(nl, -1, err);
}

int pp__nl_adopt(pp__nl_t *nl, int fd, pp_error_t *err)
{
    return nl_init(nl, fd, err);
}

void pp__nl_close(pp__nl_t *nl)
{
    if (nl->sk != NULL)
        nl_socket_free(nl->sk);
    if (nl->cb != NULL)
        nl_cb_put(nl->cb);
    nl->sk = NULL;
    nl->cb = NULL;
}

int pp__nl_talk(pp__nl_t *nl, struct nl_msg *msg, pp_error_t *err, const char *fmt, ...)
{
    nl->kerr = 0;
    nl->ext[0] = '\0';
    nl->done = 0;
    int rc = nl_send_auto(nl->sk, msg);
    while (rc >= 0 && !nl->done)
        rc = nl_recvmsgs(nl->sk, nl->cb);
    if (nl->kerr == 0 && rc >= 0)
        return 0;

    int code = nl->kerr != 0 ? -nl->kerr : pp_net_nlerr_to_errno(rc);
    if (err == NULL)
        return code;
    char ctx[PP_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof(ctx), fmt, ap);
    va_end(ap);
    if (nl->kerr == 0)
        return pp_error_set(err, code, "%s: netlink: %s", ctx, nl_geterror(rc));
    if (nl->ext[0] != '\0')
        return pp_error_set(err, code, "%s: %s (%s)", ctx, strerror(nl->kerr), nl->ext);
    return pp_error_set(err, code, "%s: %s", ctx, strerror(nl->kerr));
}
