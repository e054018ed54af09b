/* The pod-network JSON: upstream's keys and order, strict decoding with
 * errors that name the key, the netlink name tables. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>

#include "net/net.h"

/* What upstream's Go encoder writes for this pod (keys in struct order, a
 * gateway-less route with "gw":"", universe scope left out). */
static const char golden[] =
    "{\"podip\":\"10.244.1.5/24\",\"pod-hw-addr\":\"0a:58:0a:f4:01:05\",\"interface\":\"eth0\","
    "\"worker-node-ip\":\"198.18.0.1/16\",\"tunnel-type\":\"vxlan\",\"routes\":["
    "{\"dst\":\"0.0.0.0/0\",\"gw\":\"10.244.1.1\",\"dev\":\"eth0\",\"protocol\":\"boot\"},"
    "{\"dst\":\"169.254.1.1/32\",\"gw\":\"\",\"dev\":\"eth0\",\"protocol\":\"static\","
    "\"scope\":\"link\"}],"
    "\"neighbors\":[{\"ip\":\"169.254.1.1\",\"hw-addr\":\"ee:ee:ee:ee:ee:ee\",\"dev\":\"eth0\","
    "\"state\":\"permanent\"}],\"mtu\":1450,\"index\":3,\"vxlan-port\":4789,\"vxlan-id\":555003,"
    "\"dedicated\":false,\"external-net-via-pod-vm\":true}";

static void sample(pp_podnet_t *c)
{
    memset(c, 0, sizeof(*c));
    inet_pton(AF_INET, "10.244.1.5", &c->pod_ip.addr);
    c->pod_ip.len = 24;
    uint8_t mac[6] = {0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05};
    memcpy(c->pod_hw_addr, mac, 6);
    snprintf(c->interface, PP_IFNAMSIZ, "eth0");
    inet_pton(AF_INET, "198.18.0.1", &c->worker_node_ip.addr);
    c->worker_node_ip.len = 16;
    c->n_routes = 2;
    c->routes[0].has_gw = true;
    inet_pton(AF_INET, "10.244.1.1", &c->routes[0].gw);
    snprintf(c->routes[0].dev, PP_IFNAMSIZ, "eth0");
    c->routes[0].protocol = RTPROT_BOOT;
    inet_pton(AF_INET, "169.254.1.1", &c->routes[1].dst.addr);
    c->routes[1].dst.len = 32;
    snprintf(c->routes[1].dev, PP_IFNAMSIZ, "eth0");
    c->routes[1].protocol = RTPROT_STATIC;
    c->routes[1].scope = RT_SCOPE_LINK;
    c->n_neighbors = 1;
    inet_pton(AF_INET, "169.254.1.1", &c->neighbors[0].ip);
    memset(c->neighbors[0].hw_addr, 0xee, 6);
    snprintf(c->neighbors[0].dev, PP_IFNAMSIZ, "eth0");
    c->neighbors[0].state = NUD_PERMANENT;
    c->mtu = 1450;
    c->index = 3;
    c->vxlan_port = 4789;
    c->vxlan_id = 555003;
    c->external_net_via_pod_vm = true;
}

static void test_encode_golden(void **state)
{
    (void)state;
    pp_podnet_t c;
    sample(&c);
    char *text = NULL;
    pp_error_t err = {0};
    assert_int_equal(pp_podnet_encode(&c, &text, &err), 0);
    assert_string_equal(text, golden);
    free(text);
}

static void test_roundtrip(void **state)
{
    (void)state;
    pp_podnet_t c, d;
    sample(&c);
    pp_error_t err = {0};
    assert_int_equal(pp_podnet_decode(golden, strlen(golden), &d, &err), 0);
    assert_memory_equal(&c, &d, sizeof(c));
    char *text = NULL;
    assert_int_equal(pp_podnet_encode(&d, &text, &err), 0);
    assert_string_equal(text, golden);
    free(text);
}

/* Upstream writes a nil slice as null and an absent gateway as "". */
static void test_decode_upstream_forms(void **state)
{
    (void)state;
    const char *in = "{\"podip\":\"10.0.0.2/8\",\"pod-hw-addr\":\"AA:BB:CC:DD:EE:FF\","
                     "\"interface\":\"eth0\",\"worker-node-ip\":\"192.0.2.1/24\","
                     "\"tunnel-type\":\"vxlan\",\"routes\":[{\"dst\":\"10.0.0.0/8\",\"gw\":\"\"}],"
                     "\"neighbors\":null,\"mtu\":9000,\"index\":0,\"vxlan-port\":4789,"
                     "\"dedicated\":true}";
    pp_podnet_t c;
    pp_error_t err = {0};
    assert_int_equal(pp_podnet_decode(in, strlen(in), &c, &err), 0);
    assert_int_equal(c.pod_hw_addr[0], 0xaa);
    assert_int_equal(c.n_routes, 1);
    assert_false(c.routes[0].has_gw);
    assert_int_equal(c.n_neighbors, 0);
    assert_int_equal(c.vxlan_id, 0);
    assert_true(c.dedicated);
    assert_false(c.external_net_via_pod_vm);
    assert_int_equal(c.mtu, 9000);
}

/* Replaces the text of `key`'s value in the golden document. */
static char *with(const char *key, const char *value)
{
    static char buf[4096];
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(golden, pat);
    assert_non_null(p);
    p += strlen(pat);
    /* The value ends at the comma or brace at nesting depth 0. */
    const char *e = p;
    int depth = 0, str = 0;
    for (; *e; e++) {
        if (*e == '"' && e[-1] != '\\')
            str = !str;
        if (str)
            continue;
        if (*e == '[' || *e == '{')
            depth++;
        else if ((*e == ']' || *e == '}') && depth > 0)
            depth--;
        else if ((*e == ',' || *e == '}') && depth == 0)
            break;
    }
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(p - golden), golden, value, e);
    return buf;
}

static void test_decode_errors(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value, *message;
    } cases[] = {
        {"podip", "\"10.244.1.5\"", "`podip`: `10.244.1.5` is not an IPv4 address with a prefix"},
        {"podip", "\"10.244.1.5/33\"", "`podip`: `10.244.1.5/33` is not an IPv4"},
        {"podip", "\"010.244.1.5/24\"", "`podip`: `010.244.1.5/24` is not"},
        {"podip", "5", "`podip`: expected a string, got a number"},
        {"pod-hw-addr", "\"0a:58:0a:f4:01\"", "`pod-hw-addr`: `0a:58:0a:f4:01` is not a MAC"},
        {"pod-hw-addr", "\"0a-58-0a-f4-01-05\"", "is not a MAC"},
        {"interface", "\"eth0;reboot now\"", "`interface`: `eth0;reboot now` is not a valid"},
        {"interface", "\"averyveryverylongname\"", "is not a valid interface name"},
        {"interface", "\"a/b\"", "is not a valid interface name"},
        {"worker-node-ip", "\"metadata.invalid\"", "`worker-node-ip`: `metadata.invalid`"},
        {"tunnel-type", "\"geneve\"", "`tunnel-type`: unsupported tunnel type `geneve`"},
        {"mtu", "0", "`mtu`: 0 is not from 68 to 65535"},
        {"mtu", "1450.5", "`mtu`: expected a whole number, got a number"},
        {"mtu", "\"1450\"", "`mtu`: expected a whole number, got a string"},
        {"index", "-1", "`index`: -1 is not from 0 to 16777215"},
        {"index", "16777216", "`index`: 16777216 is not from 0 to 16777215"},
        {"vxlan-id", "16777216", "`vxlan-id`: 16777216 is not from 0"},
        {"vxlan-port", "0", "`vxlan-port`: 0 is not from 1 to 65535"},
        {"dedicated", "\"yes\"", "`dedicated`: expected a boolean, got a string"},
        {"external-net-via-pod-vm", "1", "`external-net-via-pod-vm`: expected a boolean"},
        {"routes", "{}", "`routes`: expected an array, got an object"},
        {"routes", "[5]", "`routes[0]`: expected an object, got a number"},
        {"routes", "[{\"gw\":\"10.0.0.1\"}]", "`routes[0].dst`: missing"},
        {"routes", "[{\"dst\":\"10.0.0.5/24\"}]", "`routes[0].dst`: has host bits set"},
        {"routes", "[{\"dst\":\"0.0.0.0/0\",\"gw\":\"10.0.0.300\"}]",
         "`routes[0].gw`: `10.0.0.300` is not an IPv4 address"},
        {"routes", "[{\"dst\":\"0.0.0.0/0\",\"protocol\":\"ospf\"}]",
         "`routes[0].protocol`: unknown route protocol `ospf`"},
        {"routes", "[{\"dst\":\"0.0.0.0/0\",\"scope\":\"galaxy\"}]",
         "`routes[0].scope`: unknown route scope `galaxy`"},
        {"routes", "[{\"dst\":\"0.0.0.0/0\",\"command\":\"exec\"}]",
         "`routes[0].command`: unknown key"},
        {"neighbors", "[{\"ip\":\"10.0.0.1\"}]", "`neighbors[0].hw-addr`: missing"},
        {"neighbors", "[{\"ip\":\"10.0.0.1\",\"hw-addr\":\"ee:ee:ee:ee:ee:ee\",\"state\":\"x\"}]",
         "`neighbors[0].state`: unknown neighbor state `x`"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *doc = with(cases[i].key, cases[i].value);
        pp_podnet_t c;
        pp_error_t err = {0};
        int rc = pp_podnet_decode(doc, strlen(doc), &c, &err);
        if (rc != -EINVAL || strstr(err.message, cases[i].message) == NULL)
            fail_msg("case %zu (%s=%s): rc %d, message `%s`, expected `%s`", i, cases[i].key,
                     cases[i].value, rc, err.message, cases[i].message);
        assert_int_equal(c.mtu, 0); /* nothing half-filled */
    }
}

static void test_decode_structure_errors(void **state)
{
    (void)state;
    pp_podnet_t c;
    pp_error_t err = {0};
    const char *s = "[1]";
    assert_int_equal(pp_podnet_decode(s, strlen(s), &c, &err), -EINVAL);
    assert_string_equal(err.message, "pod-network: expected an object, got an array");
    s = "{\"podip\":";
    assert_int_equal(pp_podnet_decode(s, strlen(s), &c, &err), -EINVAL);
    assert_non_null(strstr(err.message, "pod-network: line 1"));
    s = "{\"podip\":\"1.2.3.4/8\",\"podip\":\"1.2.3.4/8\"}";
    assert_int_equal(pp_podnet_decode(s, strlen(s), &c, &err), -EINVAL);
    assert_non_null(strstr(err.message, "duplicate"));
    /* A key we do not know is an error, not silently dropped. */
    char doc[4096];
    snprintf(doc, sizeof(doc), "%.*s,\"policy\":\"allow-all\"}", (int)strlen(golden) - 1, golden);
    assert_int_equal(pp_podnet_decode(doc, strlen(doc), &c, &err), -EINVAL);
    assert_string_equal(err.message, "pod-network: `policy`: unknown key");
    /* Required keys. */
    s = "{\"podip\":\"10.0.0.2/8\"}";
    assert_int_equal(pp_podnet_decode(s, strlen(s), &c, &err), -EINVAL);
    assert_string_equal(err.message, "pod-network: `pod-hw-addr`: missing");
    /* Too many routes. */
    char routes[4096];
    size_t n = 0;
    for (int i = 0; i <= PP_PODNET_MAX_ROUTES; i++)
        n += (size_t)snprintf(routes + n, sizeof(routes) - n, "%s{\"dst\":\"0.0.0.0/0\"}",
                              i ? "," : "[");
    snprintf(routes + n, sizeof(routes) - n, "]");
    const char *big = with("routes", routes);
    assert_int_equal(pp_podnet_decode(big, strlen(big), &c, &err), -EINVAL);
    assert_non_null(strstr(err.message, "`routes`: 65 entries, at most 64 allowed"));
}

static void test_encode_errors(void **state)
{
    (void)state;
    pp_podnet_t c;
    sample(&c);
    char *text = NULL;
    pp_error_t err = {0};
    c.routes[0].protocol = 99;
    assert_int_equal(pp_podnet_encode(&c, &text, &err), -EINVAL);
    assert_string_equal(err.message, "`routes[0].protocol`: 99 has no name");
    sample(&c);
    c.vxlan_port = 0;
    assert_int_equal(pp_podnet_encode(&c, &text, &err), -EINVAL);
    assert_null(text);
    /* vxlan-id 0 is left out, as upstream's omitempty does; empty lists
     * are Go's nil slices; a neighbour state of none is left out. */
    sample(&c);
    c.vxlan_id = 0;
    c.n_routes = 0;
    c.neighbors[0].state = NUD_NONE;
    assert_int_equal(pp_podnet_encode(&c, &text, &err), 0);
    assert_null(strstr(text, "vxlan-id"));
    assert_non_null(strstr(text, "\"routes\":null,"));
    assert_null(strstr(text, "state"));
    free(text);
    c.n_neighbors = 0;
    assert_int_equal(pp_podnet_encode(&c, &text, &err), 0);
    assert_non_null(strstr(text, "\"neighbors\":null,"));
    pp_podnet_t d;
    assert_int_equal(pp_podnet_decode(text, strlen(text), &d, &err), 0);
    assert_int_equal(d.n_routes, 0);
    assert_int_equal(d.n_neighbors, 0);
    free(text);
}

static void test_names(void **state)
{
    (void)state;
    uint8_t u8;
    uint16_t u16;
    assert_string_equal(pp_route_protocol_name(RTPROT_BOOT), "boot");
    assert_string_equal(pp_route_scope_name(RT_SCOPE_LINK), "link");
    assert_string_equal(pp_neigh_state_name(NUD_PERMANENT), "permanent");
    assert_null(pp_route_protocol_name(RTPROT_REDIRECT));
    assert_int_equal(pp_route_protocol_parse("dhcp", &u8), 0);
    assert_int_equal(u8, RTPROT_DHCP);
    assert_int_equal(pp_route_scope_parse("host", &u8), 0);
    assert_int_equal(u8, RT_SCOPE_HOST);
    assert_int_equal(pp_neigh_state_parse("noarp", &u16), 0);
    assert_int_equal(u16, NUD_NOARP);
    assert_int_equal(pp_neigh_state_parse("Permanent", &u16), -EINVAL);
    assert_int_equal(pp_route_scope_parse(NULL, &u8), -EINVAL);

    pp_ipv4_prefix_t p;
    char buf[32];
    assert_int_equal(pp_ipv4_prefix_parse("0.0.0.0/0", &p), 0);
    assert_string_equal(pp_ipv4_prefix_format(&p, buf, sizeof(buf)), "0.0.0.0/0");
    assert_int_equal(pp_ipv4_prefix_parse("255.255.255.255/32", &p), 0);
    assert_int_equal(pp_ipv4_prefix_parse("1.2.3.4/08", &p), -EINVAL);
    assert_int_equal(pp_ipv4_prefix_parse("1.2.3.4/", &p), -EINVAL);
    assert_int_equal(pp_ipv4_prefix_parse("/24", &p), -EINVAL);
    assert_int_equal(pp_ipv4_prefix_parse("1.2.3/24", &p), -EINVAL);
    assert_int_equal(pp_ipv4_prefix_parse("1.2.3.4/24 ", &p), -EINVAL);
    uint8_t mac[6];
    assert_int_equal(pp_mac_parse("00:11:22:aa:BB:ff", mac), 0);
    assert_string_equal(pp_mac_format(mac, buf, sizeof(buf)), "00:11:22:aa:bb:ff");
    assert_int_equal(pp_mac_parse("00:11:22:aa:BB:fg", mac), -EINVAL);
    assert_int_equal(pp_mac_parse("00:11:22:aa:BB:ff:", mac), -EINVAL);
    assert_true(pp_ifname_valid("eth0"));
    assert_true(pp_ifname_valid("123456789012345"));
    assert_false(pp_ifname_valid("1234567890123456"));
    assert_false(pp_ifname_valid(".."));
    assert_false(pp_ifname_valid("a:b"));
    assert_false(pp_ifname_valid(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_golden),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_decode_upstream_forms),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_decode_structure_errors),
        cmocka_unit_test(test_encode_errors),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
