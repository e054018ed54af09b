#include "interceptor.h"

#include <errno.h>
#include <string.h>

#include "util/pb.h"

/* Field numbers, kata's agent.proto and oci.proto. */
enum {
    CC_OCI = 6,           /* CreateContainerRequest.OCI (Spec) */
    SPEC_LINUX = 8,       /* Spec.Linux */
    LINUX_NAMESPACES = 6, /* Linux.Namespaces (repeated LinuxNamespace) */
    NS_TYPE = 1,          /* LinuxNamespace.Type */
    NS_PATH = 2,          /* LinuxNamespace.Path */
    CS_DNS = 2,           /* CreateSandboxRequest.dns (repeated string) */
};

static const char network_type[] = "network";

/* Stands in for a NULL input of length 0, so no arithmetic is done on NULL. */
static const uint8_t no_bytes[1];

static const struct {
    const char *service;
    const char *method;
    enum apf_intercept_kind kind;
} intercepted[] = {
    {APF_AGENT_SERVICE, "CreateContainer", APF_INTERCEPT_CREATE_CONTAINER},
    {APF_AGENT_SERVICE, "CreateSandbox", APF_INTERCEPT_CREATE_SANDBOX},
};

typedef struct rewrite_s {
    const char *netns;
    size_t netns_len;
    unsigned networks;    /* network entries in the whole request */
    unsigned oci_total;   /* occurrences of OCI in the request */
    unsigned linux_total; /* occurrences of OCI.Linux, all OCIs together */
    unsigned linux_seen;
    apf_intercept_stats_t *st;
} rewrite_t;

static int view_eq(const uint8_t *p, size_t n, const char *s, size_t sn)
{
    return n == sn && (n == 0 || memcmp(p, s, n) == 0);
}

enum apf_intercept_kind apf_intercept_lookup(const char *service, size_t service_len,
                                             const char *method, size_t method_len)
{
    for (size_t i = 0; i < sizeof(intercepted) / sizeof(intercepted[0]); i++)
        if (view_eq((const uint8_t *)service, service_len, intercepted[i].service,
                    strlen(intercepted[i].service)) &&
            view_eq((const uint8_t *)method, method_len, intercepted[i].method,
                    strlen(intercepted[i].method)))
            return intercepted[i].kind;
    return APF_INTERCEPT_NONE;
}

/* ---- reading ------------------------------------------------------------ */

/* Fields the rewrite walks into must be length-delimited; anything else is
 * not the message the method promises. */
static int want_len(const pp_pb_field_t *f)
{
    return f->wire == PP_PB_LEN ? 0 : -EBADMSG;
}

/* Whether a LinuxNamespace entry is of type "network". Type is a proto3
 * scalar, so its last occurrence wins. */
static int ns_is_network(const uint8_t *p, size_t n, int *is_network)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    const uint8_t *type = NULL;
    size_t type_len = 0;
    int rc;

    pp_pb_reader_init(&r, p, n);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        if (f.number != NS_TYPE && f.number != NS_PATH)
            continue;
        if (want_len(&f) < 0)
            return -EBADMSG;
        if (f.number == NS_TYPE) {
            type = f.data;
            type_len = f.len;
        }
    }
    if (rc < 0)
        return rc;
    *is_network = type != NULL && view_eq(type, type_len, network_type, sizeof(network_type) - 1);
    return 0;
}

static int scan_linux(const uint8_t *p, size_t n, rewrite_t *rw)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    int rc;

    pp_pb_reader_init(&r, p, n);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        if (f.number != LINUX_NAMESPACES)
            continue;
        int net;
        if (want_len(&f) < 0 || ns_is_network(f.data, f.len, &net) < 0)
            return -EBADMSG;
        rw->networks += (unsigned)net;
    }
    return rc;
}

static int scan_spec(const uint8_t *p, size_t n, rewrite_t *rw)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    int rc;

    pp_pb_reader_init(&r, p, n);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        if (f.number != SPEC_LINUX)
            continue;
        if (want_len(&f) < 0 || scan_linux(f.data, f.len, rw) < 0)
            return -EBADMSG;
        rw->linux_total++;
    }
    return rc;
}

/* First pass: validates the part of the request the rewrite walks, counts
 * the network entries (to choose between replacing and appending) and the
 * OCI and Linux occurrences. A singular message field given more than once
 * is merged by decoders, repeated fields concatenated in wire order, so the
 * entry goes at the end of the last Linux, wherever it is, to land last in
 * the merged list; a Linux is created (in the last OCI) only when there is
 * none at all. */
static int scan_request(const uint8_t *p, size_t n, rewrite_t *rw)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    int rc;

    pp_pb_reader_init(&r, p, n);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        if (f.number != CC_OCI)
            continue;
        if (want_len(&f) < 0 || scan_spec(f.data, f.len, rw) < 0)
            return -EBADMSG;
        rw->oci_total++;
    }
    return rc;
}

/* ---- writing ------------------------------------------------------------ */

/* Appends a field's tag exactly as it was encoded. */
static int copy_tag(pp_buf_t *out, const pp_pb_field_t *f)
{
    const uint8_t *q = f->start;
    uint64_t tag;
    if (pp_pb_read_varint(&q, f->start + f->total, &tag) < 0)
        return -EBADMSG;
    return pp_buf_append(out, f->start, (size_t)(q - f->start));
}

static int copy_field(pp_buf_t *out, const pp_pb_field_t *f)
{
    return pp_buf_append(out, f->start, f->total);
}

/* Appends field `f` (its original tag) with `body` as its new contents. */
static int put_rewritten(pp_buf_t *out, const pp_pb_field_t *f, const pp_buf_t *body)
{
    int rc = copy_tag(out, f);
    if (rc == 0)
        rc = pp_pb_put_varint(out, body->len);
    if (rc == 0)
        rc = pp_buf_append(out, body->data, body->len);
    return rc;
}

/* Appends a new length-delimited field with `body` as contents. */
static int put_sub(pp_buf_t *out, uint32_t number, const pp_buf_t *body)
{
    return pp_pb_put_bytes(out, number, body->data, body->len);
}

/* A new LinuxNamespace{Type:"network", Path:<netns>} as field `number`. */
static int put_network_ns(pp_buf_t *out, const rewrite_t *rw)
{
    pp_buf_t ns;
    pp_buf_init(&ns, APF_INTERCEPT_MAX);
    int rc = pp_pb_put_bytes(&ns, NS_TYPE, network_type, sizeof(network_type) - 1);
    if (rc == 0)
        rc = pp_pb_put_bytes(&ns, NS_PATH, rw->netns, rw->netns_len);
    if (rc == 0)
        rc = put_sub(out, LINUX_NAMESPACES, &ns);
    pp_buf_free(&ns);
    if (rc == 0)
        rw->st->appended++;
    return rc;
}

/* A new Linux holding only the network entry, as Spec.Linux. */
static int put_new_linux(pp_buf_t *out, rewrite_t *rw)
{
    pp_buf_t linux_buf;
    pp_buf_init(&linux_buf, APF_INTERCEPT_MAX);
    int rc = put_network_ns(&linux_buf, rw);
    if (rc == 0)
        rc = put_sub(out, SPEC_LINUX, &linux_buf);
    pp_buf_free(&linux_buf);
    if (rc == 0)
        rw->st->created++;
    return rc;
}

/* A network entry: the first Path is replaced by the pod namespace, later
 * ones (which a decoder would let override it) are dropped, and a Path is
 * appended when there was none. */
static int rewrite_network_ns(const uint8_t *p, size_t n, rewrite_t *rw, pp_buf_t *out)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    int rc, wrote_path = 0;

    pp_pb_reader_init(&r, p, n);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        if (f.number != NS_PATH) {
            rc = copy_field(out, &f);
        } else if (!wrote_path) {
            rc = pp_pb_put_bytes(out, NS_PATH, rw->netns, rw->netns_len);
            wrote_path = 1;
        }
        if (rc < 0)
            return rc;
    }
    if (rc == 0 && !wrote_path)
        rc = pp_pb_put_bytes(out, NS_PATH, rw->netns, rw->netns_len);
    if (rc == 0)
        rw->st->replaced++;
    return rc;
}

static int rewrite_linux(const uint8_t *p, size_t n, int append_here, rewrite_t *rw, pp_buf_t *out)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    int rc;

    pp_pb_reader_init(&r, p, n);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        int net = 0;
        if (f.number == LINUX_NAMESPACES && (rc = ns_is_network(f.data, f.len, &net)) < 0)
            return rc;
        if (!net) {
            rc = copy_field(out, &f);
        } else {
            pp_buf_t ns;
            pp_buf_init(&ns, APF_INTERCEPT_MAX);
            rc = rewrite_network_ns(f.data, f.len, rw, &ns);
            if (rc == 0)
                rc = put_rewritten(out, &f, &ns);
            pp_buf_free(&ns);
        }
        if (rc < 0)
            return rc;
    }
    if (rc == 0 && append_here)
        rc = put_network_ns(out, rw);
    return rc;
}

/* `create_linux`: this is the last OCI and there is no Linux anywhere. */
static int rewrite_spec(const uint8_t *p, size_t n, int create_linux, rewrite_t *rw, pp_buf_t *out)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    int append = rw->networks == 0;
    int rc;

    pp_pb_reader_init(&r, p, n);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        if (f.number != SPEC_LINUX) {
            rc = copy_field(out, &f);
        } else {
            pp_buf_t linux_buf;
            pp_buf_init(&linux_buf, APF_INTERCEPT_MAX);
            rw->linux_seen++;
            rc = rewrite_linux(f.data, f.len, append && rw->linux_seen == rw->linux_total, rw,
                               &linux_buf);
            if (rc == 0)
                rc = put_rewritten(out, &f, &linux_buf);
            pp_buf_free(&linux_buf);
        }
        if (rc < 0)
            return rc;
    }
    if (rc == 0 && create_linux)
        rc = put_new_linux(out, rw);
    return rc;
}

static int rewrite_request(const uint8_t *p, size_t n, rewrite_t *rw, pp_buf_t *out)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    unsigned oci_seen = 0;
    int append = rw->networks == 0;
    int rc;

    pp_pb_reader_init(&r, p, n);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        if (f.number != CC_OCI) {
            rc = copy_field(out, &f);
        } else {
            pp_buf_t spec;
            pp_buf_init(&spec, APF_INTERCEPT_MAX);
            oci_seen++;
            rc = rewrite_spec(f.data, f.len,
                              append && rw->linux_total == 0 && oci_seen == rw->oci_total, rw,
                              &spec);
            if (rc == 0)
                rc = put_rewritten(out, &f, &spec);
            pp_buf_free(&spec);
        }
        if (rc < 0)
            return rc;
    }
    if (rc == 0 && append && rw->oci_total == 0) {
        pp_buf_t spec;
        pp_buf_init(&spec, APF_INTERCEPT_MAX);
        rc = put_new_linux(&spec, rw);
        if (rc == 0)
            rc = put_sub(out, CC_OCI, &spec);
        pp_buf_free(&spec);
        if (rc == 0)
            rw->st->created++;
    }
    return rc;
}

/* ---- entry points ------------------------------------------------------- */

int apf_intercept_create_container(const uint8_t *in, size_t n, const char *netns_path,
                                   pp_buf_t *out, apf_intercept_stats_t *stats)
{
    apf_intercept_stats_t local;
    rewrite_t rw = {.netns = netns_path, .st = stats != NULL ? stats : &local};
    int rc;

    pp_buf_init(out, APF_INTERCEPT_MAX);
    memset(rw.st, 0, sizeof(*rw.st));
    if (in == NULL)
        in = no_bytes;
    if (netns_path == NULL || netns_path[0] == '\0')
        return -EINVAL;
    if (n > APF_INTERCEPT_MAX)
        return -EMSGSIZE;
    rw.netns_len = strlen(netns_path);
    rc = scan_request(in, n, &rw);
    if (rc == 0)
        rc = rewrite_request(in, n, &rw, out);
    if (rc < 0) {
        pp_buf_free(out);
        memset(rw.st, 0, sizeof(*rw.st));
    }
    return rc;
}

int apf_intercept_create_sandbox(const uint8_t *in, size_t n, pp_buf_t *out,
                                 apf_intercept_stats_t *stats)
{
    apf_intercept_stats_t local;
    apf_intercept_stats_t *st = stats != NULL ? stats : &local;
    pp_pb_reader_t r;
    pp_pb_field_t f;
    int rc;

    pp_buf_init(out, APF_INTERCEPT_MAX);
    memset(st, 0, sizeof(*st));
    if (in == NULL)
        in = no_bytes;
    if (n > APF_INTERCEPT_MAX)
        return -EMSGSIZE;
    pp_pb_reader_init(&r, in, n);
    while ((rc = pp_pb_next(&r, &f)) > 0) {
        if (f.number == CS_DNS) {
            if ((rc = want_len(&f)) < 0)
                break;
            st->dns_removed++;
            continue;
        }
        if ((rc = copy_field(out, &f)) < 0)
            break;
    }
    if (rc < 0) {
        pp_buf_free(out);
        memset(st, 0, sizeof(*st));
    }
    return rc;
}

int apf_intercept(enum apf_intercept_kind kind, const uint8_t *in, size_t n, const char *netns_path,
                  pp_buf_t *out, apf_intercept_stats_t *stats)
{
    switch (kind) {
    case APF_INTERCEPT_CREATE_CONTAINER:
        return apf_intercept_create_container(in, n, netns_path, out, stats);
    case APF_INTERCEPT_CREATE_SANDBOX:
        return apf_intercept_create_sandbox(in, n, out, stats);
    case APF_INTERCEPT_NONE:
        break;
    }
    if (stats != NULL)
        memset(stats, 0, sizeof(*stats));
    pp_buf_init(out, APF_INTERCEPT_MAX);
    if (n > APF_INTERCEPT_MAX)
        return -EMSGSIZE;
    int rc = pp_buf_append(out, in, n);
    if (rc < 0)
        pp_buf_free(out);
    return rc;
}
