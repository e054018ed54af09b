/* The pod-network configuration (design.md §4) as JSON, and the netlink
 * names it uses. Keys, order and omissions follow upstream's Go encoding so
 * either side can read the other's. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/neighbour.h>
#include <linux/rtnetlink.h>

#include "net/net.h"
#include "util/cleanup.h"
#include "util/hex.h"

/* ---- names ---------------------------------------------------------------- */

typedef struct {
    unsigned value;
    const char *name;
} name_t;

/* Upstream's tables: the protocols a pod's routes carry, all scopes, all
 * neighbour states. */
static const name_t protocols[] = {
    {RTPROT_STATIC, "static"},
    {RTPROT_BOOT, "boot"},
    {RTPROT_DHCP, "dhcp"},
    {RTPROT_KERNEL, "kernel"},
};

static const name_t scopes[] = {
    {RT_SCOPE_UNIVERSE, "universe"}, {RT_SCOPE_SITE, "site"},       {RT_SCOPE_LINK, "link"},
    {RT_SCOPE_HOST, "host"},         {RT_SCOPE_NOWHERE, "nowhere"},
};

static const name_t states[] = {
    {NUD_NONE, "none"},     {NUD_INCOMPLETE, "incomplete"}, {NUD_REACHABLE, "reachable"},
    {NUD_STALE, "stale"},   {NUD_DELAY, "delay"},           {NUD_PROBE, "probe"},
    {NUD_FAILED, "failed"}, {NUD_NOARP, "noarp"},           {NUD_PERMANENT, "permanent"},
};

static const char *name_of(const name_t *t, size_t n, unsigned v)
{
    for (size_t i = 0; i < n; i++)
        if (t[i].value == v)
            return t[i].name;
    return NULL;
}

static int value_of(const name_t *t, size_t n, const char *name, unsigned *v)
{
    for (size_t i = 0; name != NULL && i < n; i++)
        if (strcmp(t[i].name, name) == 0) {
            *v = t[i].value;
            return 0;
        }
    return -EINVAL;
}

const char *pp_route_protocol_name(uint8_t protocol)
{
    return name_of(protocols, PP_ARRAY_SIZE(protocols), protocol);
}

const char *pp_route_scope_name(uint8_t scope)
{
    return name_of(scopes, PP_ARRAY_SIZE(scopes), scope);
}

const char *pp_neigh_state_name(uint16_t state)
{
    return name_of(states, PP_ARRAY_SIZE(states), state);
}

int pp_route_protocol_parse(const char *name, uint8_t *out)
{
    unsigned v;
    int rc = value_of(protocols, PP_ARRAY_SIZE(protocols), name, &v);
    if (rc == 0)
        *out = (uint8_t)v;
    return rc;
}

int pp_route_scope_parse(const char *name, uint8_t *out)
{
    unsigned v;
    int rc = value_of(scopes, PP_ARRAY_SIZE(scopes), name, &v);
    if (rc == 0)
        *out = (uint8_t)v;
    return rc;
}

int pp_neigh_state_parse(const char *name, uint16_t *out)
{
    unsigned v;
    int rc = value_of(states, PP_ARRAY_SIZE(states), name, &v);
    if (rc == 0)
        *out = (uint16_t)v;
    return rc;
}

/* ---- addresses and names ------------------------------------------------- */

static int parse_ipv4(const char *s, struct in_addr *out)
{
    /* inet_pton takes exactly four decimal octets without leading zeros. */
    return inet_pton(AF_INET, s, out) == 1 ? 0 : -EINVAL;
}

int pp_ipv4_prefix_parse(const char *s, pp_ipv4_prefix_t *out)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    if (slash == NULL || slash == s || (size_t)(slash - s) >= INET_ADDRSTRLEN)
        return -EINVAL;
    char ip[INET_ADDRSTRLEN];
    memcpy(ip, s, (size_t)(slash - s));
    ip[slash - s] = '\0';
    const char *p = slash + 1;
    size_t n = strlen(p);
    if (n == 0 || n > 2 || !isdigit((unsigned char)p[0]) ||
        (n == 2 && (!isdigit((unsigned char)p[1]) || p[0] == '0')))
        return -EINVAL;
    unsigned len = (unsigned)(p[0] - '0');
    if (n == 2)
        len = len * 10 + (unsigned)(p[1] - '0');
    if (len > 32 || parse_ipv4(ip, &out->addr) < 0)
        return -EINVAL;
    out->len = (uint8_t)len;
    return 0;
}

const char *pp_ipv4_prefix_format(const pp_ipv4_prefix_t *p, char *buf, size_t len)
{
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &p->addr, ip, sizeof(ip));
    snprintf(buf, len, "%s/%u", ip, (unsigned)p->len);
    return buf;
}

int pp_mac_parse(const char *s, uint8_t mac[6])
{
    if (s == NULL || strlen(s) != 17)
        return -EINVAL;
    for (int i = 0; i < 6; i++)
        if (pp_hex_decode(s + i * 3, 1, &mac[i]) < 0 || (i < 5 && s[i * 3 + 2] != ':'))
            return -EINVAL;
    return 0;
}

const char *pp_mac_format(const uint8_t mac[6], char *buf, size_t len)
{
    snprintf(buf, len, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
             mac[5]);
    return buf;
}

bool pp_ifname_valid(const char *name)
{
    /* The kernel's dev_valid_name(), minus nothing. */
    if (name == NULL || name[0] == '\0' || strlen(name) >= PP_IFNAMSIZ || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0)
        return false;
    for (const char *p = name; *p; p++)
        if (*p == '/' || *p == ':' || isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return false;
    return true;
}

static const char *ipv4_str(struct in_addr a, char *buf)
{
    return inet_ntop(AF_INET, &a, buf, INET_ADDRSTRLEN);
}

/* ---- encoding ------------------------------------------------------------ */

static int put(json_t *o, const char *key, json_t *v)
{
    return v != NULL && json_object_set_new(o, key, v) == 0 ? 0 : -ENOMEM;
}

static int encode_route(const pp_route_t *r, size_t i, json_t *arr, pp_error_t *err)
{
    char buf[32];
    cleanup_json json_t *o = json_object();
    if (o == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    int rc = put(o, "dst", json_string(pp_ipv4_prefix_format(&r->dst, buf, sizeof(buf))));
    /* Go writes an absent address as "" (omitempty skips no struct). */
    if (rc == 0)
        rc = put(o, "gw", json_string(r->has_gw ? ipv4_str(r->gw, buf) : ""));
    if (rc == 0 && r->dev[0] != '\0')
        rc = put(o, "dev", json_string(r->dev));
    if (rc == 0 && r->protocol != 0) {
        const char *name = pp_route_protocol_name(r->protocol);
        if (name == NULL)
            return pp_error_set(err, -EINVAL, "`routes[%zu].protocol`: %u has no name", i,
                                (unsigned)r->protocol);
        rc = put(o, "protocol", json_string(name));
    }
    if (rc == 0 && r->scope != RT_SCOPE_UNIVERSE) {
        const char *name = pp_route_scope_name(r->scope);
        if (name == NULL)
            return pp_error_set(err, -EINVAL, "`routes[%zu].scope`: %u has no name", i,
                                (unsigned)r->scope);
        rc = put(o, "scope", json_string(name));
    }
    if (rc == 0 && json_array_append(arr, o) != 0)
        rc = -ENOMEM;
    return rc < 0 ? pp_error_set(err, rc, "out of memory") : 0;
}

static int encode_neighbor(const pp_neighbor_t *n, size_t i, json_t *arr, pp_error_t *err)
{
    char buf[32];
    cleanup_json json_t *o = json_object();
    if (o == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    int rc = put(o, "ip", json_string(ipv4_str(n->ip, buf)));
    if (rc == 0)
        rc = put(o, "hw-addr", json_string(pp_mac_format(n->hw_addr, buf, sizeof(buf))));
    if (rc == 0 && n->dev[0] != '\0')
        rc = put(o, "dev", json_string(n->dev));
    if (rc == 0 && n->state != NUD_NONE) {
        const char *name = pp_neigh_state_name(n->state);
        if (name == NULL)
            return pp_error_set(err, -EINVAL, "`neighbors[%zu].state`: 0x%x has no name", i,
                                (unsigned)n->state);
        rc = put(o, "state", json_string(name));
    }
    if (rc == 0 && json_array_append(arr, o) != 0)
        rc = -ENOMEM;
    return rc < 0 ? pp_error_set(err, rc, "out of memory") : 0;
}

int pp_podnet_to_json(const pp_podnet_t *c, json_t **out, pp_error_t *err)
{
    char buf[32];
    *out = NULL;
    if (c->n_routes > PP_PODNET_MAX_ROUTES || c->n_neighbors > PP_PODNET_MAX_NEIGHBORS)
        return pp_error_set(err, -EINVAL, "too many routes or neighbors");
    if (c->vxlan_port == 0)
        return pp_error_set(err, -EINVAL, "`vxlan-port` is 0");
    cleanup_json json_t *o = json_object();
    cleanup_json json_t *routes = json_array();
    cleanup_json json_t *neighbors = json_array();
    if (o == NULL || routes == NULL || neighbors == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < c->n_routes; i++) {
        int rc = encode_route(&c->routes[i], i, routes, err);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < c->n_neighbors; i++) {
        int rc = encode_neighbor(&c->neighbors[i], i, neighbors, err);
        if (rc < 0)
            return rc;
    }
    int rc = put(o, "podip", json_string(pp_ipv4_prefix_format(&c->pod_ip, buf, sizeof(buf))));
    if (rc == 0)
        rc = put(o, "pod-hw-addr", json_string(pp_mac_format(c->pod_hw_addr, buf, sizeof(buf))));
    if (rc == 0)
        rc = put(o, "interface", json_string(c->interface));
    if (rc == 0)
        rc = put(o, "worker-node-ip",
                 json_string(pp_ipv4_prefix_format(&c->worker_node_ip, buf, sizeof(buf))));
    if (rc == 0)
        rc = put(o, "tunnel-type", json_string("vxlan"));
    /* An empty list is Go's nil slice: null. */
    if (rc == 0)
        rc = put(o, "routes", c->n_routes ? PP_STEAL(routes) : json_null());
    if (rc == 0)
        rc = put(o, "neighbors", c->n_neighbors ? PP_STEAL(neighbors) : json_null());
    if (rc == 0)
        rc = put(o, "mtu", json_integer(c->mtu));
    if (rc == 0)
        rc = put(o, "index", json_integer(c->index));
    if (rc == 0)
        rc = put(o, "vxlan-port", json_integer(c->vxlan_port));
    if (rc == 0 && c->vxlan_id != 0)
        rc = put(o, "vxlan-id", json_integer(c->vxlan_id));
    if (rc == 0)
        rc = put(o, "dedicated", json_boolean(c->dedicated));
    if (rc == 0)
        rc = put(o, "external-net-via-pod-vm", json_boolean(c->external_net_via_pod_vm));
    if (rc < 0)
        return pp_error_set(err, rc, "out of memory");
    *out = PP_STEAL(o);
    return 0;
}

int pp_podnet_encode(const pp_podnet_t *c, char **out, pp_error_t *err)
{
    cleanup_json json_t *o = NULL;
    *out = NULL;
    int rc = pp_podnet_to_json(c, &o, err);
    if (rc < 0)
        return rc;
    *out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (*out == NULL)
        return pp_error_set(err, -ENOMEM, "out of memory");
    return 0;
}

/* ---- decoding ------------------------------------------------------------ */

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* Errors say "pod-network: `<path>`: ..."; the path is built per key. */
static int bad(pp_error_t *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(pp_error_t *err, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pp_error_setv(err, -EINVAL, fmt, ap);
    va_end(ap);
    pp_error_wrap(err, "pod-network: `%s`", path);
    return -EINVAL;
}

static int get_string(const json_t *v, const char *path, const char **out, pp_error_t *err)
{
    if (!json_is_string(v))
        return bad(err, path, "expected a string, got %s", type_name(v));
    *out = json_string_value(v);
    if (strlen(*out) != json_string_length(v))
        return bad(err, path, "contains a NUL byte");
    return 0;
}

static int get_uint(const json_t *v, const char *path, uint64_t min, uint64_t max, uint64_t *out,
                    pp_error_t *err)
{
    if (!json_is_integer(v))
        return bad(err, path, "expected a whole number, got %s", type_name(v));
    json_int_t i = json_integer_value(v);
    if (i < 0 || (uint64_t)i < min || (uint64_t)i > max)
        return bad(err, path, "%lld is not from %llu to %llu", (long long)i,
                   (unsigned long long)min, (unsigned long long)max);
    *out = (uint64_t)i;
    return 0;
}

static int get_bool(const json_t *v, const char *path, bool *out, pp_error_t *err)
{
    if (!json_is_boolean(v))
        return bad(err, path, "expected a boolean, got %s", type_name(v));
    *out = json_is_true(v);
    return 0;
}

static int get_ipv4(const json_t *v, const char *path, struct in_addr *out, pp_error_t *err)
{
    const char *s;
    int rc = get_string(v, path, &s, err);
    if (rc < 0)
        return rc;
    if (parse_ipv4(s, out) < 0)
        return bad(err, path, "`%.64s` is not an IPv4 address", s);
    return 0;
}

static int get_prefix(const json_t *v, const char *path, pp_ipv4_prefix_t *out, pp_error_t *err)
{
    const char *s;
    int rc = get_string(v, path, &s, err);
    if (rc < 0)
        return rc;
    if (pp_ipv4_prefix_parse(s, out) < 0)
        return bad(err, path, "`%.64s` is not an IPv4 address with a prefix length (a.b.c.d/n)", s);
    return 0;
}

static int get_mac(const json_t *v, const char *path, uint8_t mac[6], pp_error_t *err)
{
    const char *s;
    int rc = get_string(v, path, &s, err);
    if (rc < 0)
        return rc;
    if (pp_mac_parse(s, mac) < 0)
        return bad(err, path, "`%.64s` is not a MAC address (xx:xx:xx:xx:xx:xx)", s);
    return 0;
}

static int get_ifname(const json_t *v, const char *path, char out[PP_IFNAMSIZ], pp_error_t *err)
{
    const char *s;
    int rc = get_string(v, path, &s, err);
    if (rc < 0)
        return rc;
    if (!pp_ifname_valid(s))
        return bad(err, path, "`%.64s` is not a valid interface name", s);
    snprintf(out, PP_IFNAMSIZ, "%s", s);
    return 0;
}

static int decode_route(const json_t *o, const char *at, pp_route_t *r, pp_error_t *err)
{
    char path[64];
    if (!json_is_object(o))
        return bad(err, at, "expected an object, got %s", type_name(o));
    memset(r, 0, sizeof(*r));
    bool have_dst = false;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v)
    {
        snprintf(path, sizeof(path), "%s.%.16s", at, key);
        int rc = 0;
        const char *s;
        if (strcmp(key, "dst") == 0) {
            rc = get_prefix(v, path, &r->dst, err);
            have_dst = rc == 0;
            uint32_t mask = r->dst.len ? htonl(~0u << (32 - r->dst.len)) : 0;
            if (rc == 0 && (r->dst.addr.s_addr & ~mask) != 0)
                rc = bad(err, path, "has host bits set beyond the prefix length");
        } else if (strcmp(key, "gw") == 0) {
            /* Upstream writes an absent gateway as "". */
            if (json_is_string(v) && json_string_length(v) == 0)
                continue;
            rc = get_ipv4(v, path, &r->gw, err);
            r->has_gw = rc == 0;
        } else if (strcmp(key, "dev") == 0) {
            rc = get_ifname(v, path, r->dev, err);
        } else if (strcmp(key, "protocol") == 0) {
            rc = get_string(v, path, &s, err);
            if (rc == 0 && pp_route_protocol_parse(s, &r->protocol) < 0)
                rc = bad(err, path, "unknown route protocol `%.32s` (static, boot, dhcp, kernel)",
                         s);
        } else if (strcmp(key, "scope") == 0) {
            rc = get_string(v, path, &s, err);
            if (rc == 0 && pp_route_scope_parse(s, &r->scope) < 0)
                rc = bad(err, path,
                         "unknown route scope `%.32s` (universe, site, link, host, nowhere)", s);
        } else {
            rc = bad(err, path, "unknown key");
        }
        if (rc < 0)
            return rc;
    }
    if (!have_dst) {
        snprintf(path, sizeof(path), "%s.dst", at);
        return bad(err, path, "missing");
    }
    return 0;
}

static int decode_neighbor(const json_t *o, const char *at, pp_neighbor_t *n, pp_error_t *err)
{
    char path[64];
    if (!json_is_object(o))
        return bad(err, at, "expected an object, got %s", type_name(o));
    memset(n, 0, sizeof(*n));
    n->state = NUD_PERMANENT;
    bool have_ip = false, have_mac = false;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v)
    {
        snprintf(path, sizeof(path), "%s.%.16s", at, key);
        int rc = 0;
        const char *s;
        if (strcmp(key, "ip") == 0) {
            rc = get_ipv4(v, path, &n->ip, err);
            have_ip = rc == 0;
        } else if (strcmp(key, "hw-addr") == 0) {
            rc = get_mac(v, path, n->hw_addr, err);
            have_mac = rc == 0;
        } else if (strcmp(key, "dev") == 0) {
            rc = get_ifname(v, path, n->dev, err);
        } else if (strcmp(key, "state") == 0) {
            rc = get_string(v, path, &s, err);
            if (rc == 0 && pp_neigh_state_parse(s, &n->state) < 0)
                rc = bad(err, path, "unknown neighbor state `%.32s`", s);
        } else {
            rc = bad(err, path, "unknown key");
        }
        if (rc < 0)
            return rc;
    }
    if (!have_ip || !have_mac) {
        snprintf(path, sizeof(path), "%s.%s", at, have_ip ? "hw-addr" : "ip");
        return bad(err, path, "missing");
    }
    return 0;
}

enum {
    K_PODIP,
    K_HWADDR,
    K_INTERFACE,
    K_NODEIP,
    K_TUNNEL,
    K_ROUTES,
    K_NEIGHBORS,
    K_MTU,
    K_INDEX,
    K_PORT,
    K_VNI,
    K_DEDICATED,
    K_EXTNET,
};

static const struct {
    const char *name;
    bool required;
} top_keys[] = {
    [K_PODIP] = {"podip", true},
    [K_HWADDR] = {"pod-hw-addr", true},
    [K_INTERFACE] = {"interface", true},
    [K_NODEIP] = {"worker-node-ip", true},
    [K_TUNNEL] = {"tunnel-type", true},
    [K_ROUTES] = {"routes", false},
    [K_NEIGHBORS] = {"neighbors", false},
    [K_MTU] = {"mtu", true},
    [K_INDEX] = {"index", true},
    [K_PORT] = {"vxlan-port", true},
    [K_VNI] = {"vxlan-id", false},
    [K_DEDICATED] = {"dedicated", false},
    [K_EXTNET] = {"external-net-via-pod-vm", false},
};

static int decode_array(const json_t *v, int which, pp_podnet_t *c, pp_error_t *err)
{
    const char *name = top_keys[which].name;
    if (json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return bad(err, name, "expected an array, got %s", type_name(v));
    size_t max = which == K_ROUTES ? PP_PODNET_MAX_ROUTES : PP_PODNET_MAX_NEIGHBORS;
    if (json_array_size(v) > max)
        return bad(err, name, "%zu entries, at most %zu allowed", json_array_size(v), max);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        char at[32];
        snprintf(at, sizeof(at), "%s[%zu]", name, i);
        int rc = which == K_ROUTES ? decode_route(e, at, &c->routes[i], err)
                                   : decode_neighbor(e, at, &c->neighbors[i], err);
        if (rc < 0)
            return rc;
    }
    if (which == K_ROUTES)
        c->n_routes = json_array_size(v);
    else
        c->n_neighbors = json_array_size(v);
    return 0;
}

static int decode_key(int k, const json_t *v, pp_podnet_t *c, pp_error_t *err)
{
    const char *name = top_keys[k].name;
    const char *s;
    uint64_t u;
    int rc;
    switch (k) {
    case K_PODIP:
        return get_prefix(v, name, &c->pod_ip, err);
    case K_HWADDR:
        return get_mac(v, name, c->pod_hw_addr, err);
    case K_INTERFACE:
        return get_ifname(v, name, c->interface, err);
    case K_NODEIP:
        return get_prefix(v, name, &c->worker_node_ip, err);
    case K_TUNNEL:
        rc = get_string(v, name, &s, err);
        if (rc == 0 && strcmp(s, "vxlan") != 0)
            rc = bad(err, name, "unsupported tunnel type `%.32s` (only `vxlan`)", s);
        return rc;
    case K_ROUTES:
    case K_NEIGHBORS:
        return decode_array(v, k, c, err);
    case K_MTU:
        rc = get_uint(v, name, 68, 65535, &u, err);
        c->mtu = (uint32_t)u;
        return rc;
    case K_INDEX:
        rc = get_uint(v, name, 0, PP_VXLAN_ID_MAX, &u, err);
        c->index = (uint32_t)u;
        return rc;
    case K_PORT:
        rc = get_uint(v, name, 1, 65535, &u, err);
        c->vxlan_port = (uint16_t)u;
        return rc;
    case K_VNI:
        rc = get_uint(v, name, 0, PP_VXLAN_ID_MAX, &u, err);
        c->vxlan_id = (uint32_t)u;
        return rc;
    case K_DEDICATED:
        return get_bool(v, name, &c->dedicated, err);
    case K_EXTNET:
        return get_bool(v, name, &c->external_net_via_pod_vm, err);
    }
    return -EINVAL;
}

int pp_podnet_from_json(const json_t *obj, pp_podnet_t *out, pp_error_t *err)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(obj))
        return pp_error_set(err, -EINVAL, "pod-network: expected an object, got %s",
                            obj ? type_name(obj) : "nothing");
    bool seen[PP_ARRAY_SIZE(top_keys)] = {0};
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t k = 0;
        while (k < PP_ARRAY_SIZE(top_keys) && strcmp(top_keys[k].name, key) != 0)
            k++;
        if (k == PP_ARRAY_SIZE(top_keys)) {
            char path[40];
            snprintf(path, sizeof(path), "%.32s", key);
            int rc = bad(err, path, "unknown key");
            memset(out, 0, sizeof(*out));
            return rc;
        }
        int rc = decode_key((int)k, v, out, err);
        if (rc < 0) {
            memset(out, 0, sizeof(*out));
            return rc;
        }
        seen[k] = true;
    }
    for (size_t k = 0; k < PP_ARRAY_SIZE(top_keys); k++)
        if (top_keys[k].required && !seen[k]) {
            memset(out, 0, sizeof(*out));
            return bad(err, top_keys[k].name, "missing");
        }
    return 0;
}

int pp_podnet_decode(const char *text, size_t len, pp_podnet_t *out, pp_error_t *err)
{
    json_error_t jerr;
    memset(out, 0, sizeof(*out));
    cleanup_json json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (o == NULL)
        return pp_error_set(err, -EINVAL, "pod-network: line %d column %d: %s", jerr.line,
                            jerr.column, jerr.text);
    return pp_podnet_from_json(o, out, err);
}
