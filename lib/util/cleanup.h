/* Cleanup attributes for locals. Steal on success: `*out = x; x = NULL;`.
 *
 * Every cleanup type lives here. Those of the base library's own
 * dependencies (libc, protobuf-c) always; those of a foreign library
 * (jansson, libnl, OpenSSL) are defined when that library's header was included
 * before this one: the sections below stand outside the include guard, so
 * a file that includes the library's header and then this one has them,
 * and the base library, which includes this header everywhere, never needs
 * the foreign headers nor links the libraries. */
#ifndef PP_UTIL_CLEANUP_H
#define PP_UTIL_CLEANUP_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <protobuf-c/protobuf-c.h>

#include "util/buf.h"

static inline void pp__freep(void *p)
{
    free(*(void **)p);
}

static inline void pp__closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

/* Frees a NUL-terminated secret (a key, a token), cleared first. */
static inline void pp_secret_free(char *secret)
{
    if (secret == NULL)
        return;
    explicit_bzero(secret, strlen(secret));
    free(secret);
}

static inline void pp__secret_freep(char **s)
{
    pp_secret_free(*s);
}

static inline void pp__closedirp(DIR **d)
{
    if (*d != NULL)
        closedir(*d);
}

static inline void pp__fclosep(FILE **f)
{
    if (*f != NULL)
        fclose(*f);
}

static inline void pp__bufp(pp_buf_t *b)
{
    pp_buf_free(b);
}

/* Any unpacked protobuf-c message (they all start with ProtobufCMessage). */
static inline void pp__pbp(void *p)
{
    ProtobufCMessage *m = *(ProtobufCMessage **)p;
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
}

#define cleanup_free   __attribute__((cleanup(pp__freep)))
#define cleanup_close  __attribute__((cleanup(pp__closep)))
#define cleanup_secret __attribute__((cleanup(pp__secret_freep)))
#define cleanup_dir    __attribute__((cleanup(pp__closedirp)))
#define cleanup_file   __attribute__((cleanup(pp__fclosep)))
/* For a pp_buf_t that pp_buf_init() set up at once. */
#define cleanup_buf __attribute__((cleanup(pp__bufp)))
#define cleanup_pb  __attribute__((cleanup(pp__pbp)))

/* Returns the pointer and clears the variable, so cleanup does nothing. */
#define PP_STEAL(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) pp__tmp = (p);                                                               \
        (p) = NULL;                                                                                \
        pp__tmp;                                                                                   \
    })

#define PP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#endif /* PP_UTIL_CLEANUP_H */

/* ---- jansson (<jansson.h>) ---- */
#if defined(JANSSON_H) && !defined(PP_UTIL_CLEANUP_JSON)
#define PP_UTIL_CLEANUP_JSON
static inline void pp__json_decrefp(json_t **j)
{
    if (*j != NULL)
        json_decref(*j);
}
#define cleanup_json __attribute__((cleanup(pp__json_decrefp)))
#endif

/* ---- libnl (<netlink/msg.h>, <netlink/addr.h>, <netlink/cache.h>,
 * <netlink/route/link.h>) ---- */
#if defined(NETLINK_MSG_H_) && !defined(PP_UTIL_CLEANUP_NLMSG)
#define PP_UTIL_CLEANUP_NLMSG
static inline void pp__nlmsg_freep(struct nl_msg **m)
{
    if (*m != NULL)
        nlmsg_free(*m);
}
#define cleanup_nlmsg __attribute__((cleanup(pp__nlmsg_freep)))
#endif

#if defined(NETLINK_ADDR_H_) && !defined(PP_UTIL_CLEANUP_NLADDR)
#define PP_UTIL_CLEANUP_NLADDR
static inline void pp__nl_addr_putp(struct nl_addr **a)
{
    if (*a != NULL)
        nl_addr_put(*a);
}
#define cleanup_nladdr __attribute__((cleanup(pp__nl_addr_putp)))
#endif

#if defined(NETLINK_CACHE_H_) && !defined(PP_UTIL_CLEANUP_NLCACHE)
#define PP_UTIL_CLEANUP_NLCACHE
static inline void pp__nl_cache_freep(struct nl_cache **c)
{
    if (*c != NULL)
        nl_cache_free(*c);
}
#define cleanup_nlcache __attribute__((cleanup(pp__nl_cache_freep)))
#endif

#if defined(NETLINK_LINK_H_) && !defined(PP_UTIL_CLEANUP_RTNL_LINK)
#define PP_UTIL_CLEANUP_RTNL_LINK
static inline void pp__rtnl_link_putp(struct rtnl_link **l)
{
    if (*l != NULL)
        rtnl_link_put(*l);
}
#define cleanup_link __attribute__((cleanup(pp__rtnl_link_putp)))
#endif

/* ---- OpenSSL (<openssl/x509.h>, <openssl/evp.h>, <openssl/bio.h>) ---- */
#if defined(OPENSSL_X509_H) && !defined(PP_UTIL_CLEANUP_X509)
#define PP_UTIL_CLEANUP_X509
static inline void pp__x509_freep(X509 **x)
{
    X509_free(*x);
}
#define cleanup_x509 __attribute__((cleanup(pp__x509_freep)))
#endif

#if defined(OPENSSL_EVP_H) && !defined(PP_UTIL_CLEANUP_PKEY)
#define PP_UTIL_CLEANUP_PKEY
static inline void pp__pkey_freep(EVP_PKEY **k)
{
    EVP_PKEY_free(*k);
}
#define cleanup_pkey __attribute__((cleanup(pp__pkey_freep)))
#endif

#if defined(OPENSSL_BIO_H) && !defined(PP_UTIL_CLEANUP_BIO)
#define PP_UTIL_CLEANUP_BIO
static inline void pp__bio_freep(BIO **b)
{
    BIO_free(*b);
}
#define cleanup_bio __attribute__((cleanup(pp__bio_freep)))
#endif
