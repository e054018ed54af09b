/* pp-net-tool: the lib/net API from the command line, for the integration
 * tests and for looking at a node by hand.
 *
 *   inspect      --pod-netns P [--host-netns H] [--host-if IF] [--port N] [--min-id N]
 *                (--index N | --index-dir D --owner O)        prints pod-network JSON
 *   node-setup   --pod-netns P [--host-netns H] --remote IP --config F
 *   node-teardown --pod-netns P [--host-netns H] --config F
 *   vm-setup     [--host-netns H] --pod-ns-name N --config F
 *   vm-teardown  [--host-netns H] --pod-ns-name N --config F [--delete-netns]
 *   node-many    setup|teardown [--host-netns H] --threads N POD_NETNS,REMOTE,CONFIG...
 *                many pods at once from N threads sharing one node context
 *   index-acquire --index-dir D --owner O [--limit N]          prints the index
 *   index-release --index-dir D --index N [--owner O]
 *   netns-add N | netns-del N
 *
 * `--config -` reads standard input. Errors go to stderr as one line;
 * exit status 1. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

typedef struct opts_s {
    const char *pod_netns, *host_netns, *host_if, *remote, *config, *pod_ns_name, *index_dir,
        *owner;
    long index, port, min_id, limit;
    int delete_netns;
} opts_t;

static int usage(void)
{
    fprintf(stderr, "usage: pp-net-tool COMMAND [options]; see the source header\n");
    return 2;
}

static int parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0)
        return -1;
    *out = v;
    return 0;
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->index = o->port = o->min_id = o->limit = -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long *num = NULL;
        const char **str = NULL;
        if (strcmp(a, "--delete-netns") == 0) {
            o->delete_netns = 1;
            continue;
        }
        if (strcmp(a, "--pod-netns") == 0)
            str = &o->pod_netns;
        else if (strcmp(a, "--host-netns") == 0)
            str = &o->host_netns;
        else if (strcmp(a, "--host-if") == 0)
            str = &o->host_if;
        else if (strcmp(a, "--remote") == 0)
            str = &o->remote;
        else if (strcmp(a, "--config") == 0)
            str = &o->config;
        else if (strcmp(a, "--pod-ns-name") == 0)
            str = &o->pod_ns_name;
        else if (strcmp(a, "--index-dir") == 0)
            str = &o->index_dir;
        else if (strcmp(a, "--owner") == 0)
            str = &o->owner;
        else if (strcmp(a, "--index") == 0)
            num = &o->index;
        else if (strcmp(a, "--port") == 0)
            num = &o->port;
        else if (strcmp(a, "--min-id") == 0)
            num = &o->min_id;
        else if (strcmp(a, "--limit") == 0)
            num = &o->limit;
        else {
            fprintf(stderr, "pp-net-tool: unknown option `%s`\n", a);
            return -1;
        }
        if (v == NULL) {
            fprintf(stderr, "pp-net-tool: option `%s` needs a value\n", a);
            return -1;
        }
        if (str != NULL)
            *str = v;
        else if (parse_long(v, num) < 0) {
            fprintf(stderr, "pp-net-tool: option `%s`: `%s` is not a number\n", a, v);
            return -1;
        }
        i++;
    }
    return 0;
}

static int need(const char *v, const char *name)
{
    if (v == NULL) {
        fprintf(stderr, "pp-net-tool: option `%s` is required\n", name);
        return -1;
    }
    return 0;
}

static int fail(const pp_error_t *err, int rc)
{
    fprintf(stderr, "pp-net-tool: %s (%s)\n", err->message[0] ? err->message : strerror(-rc),
            strerror(-rc));
    return 1;
}

static int read_config(const char *path, pp_podnet_t *cfg, pp_error_t *err)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL)
        return pp_error_set(err, -errno, "open `%s`: %s", path, strerror(errno));
    enum { MAX = 1 << 20 };
    char *text = malloc(MAX);
    size_t n = text ? fread(text, 1, MAX, f) : 0;
    if (f != stdin)
        fclose(f);
    int rc =
        text ? pp_podnet_decode(text, n, cfg, err) : pp_error_set(err, -ENOMEM, "out of memory");
    free(text);
    return rc;
}

static int cmd_inspect(const opts_t *o)
{
    pp_error_t err = {0};
    if (need(o->pod_netns, "--pod-netns") < 0)
        return 2;
    /* Inspection only reads the settings: no fini needed. */
    pp_node_net_t n;
    pp_node_net_init(&n);
    n.host_netns = o->host_netns;
    n.host_ifname = o->host_if;
    if (o->port >= 0)
        n.vxlan_port = (uint16_t)o->port;
    if (o->min_id >= 0)
        n.vxlan_min_id = (uint32_t)o->min_id;
    uint32_t index = 0;
    pp_podindex_t ix = {.dirfd = -1};
    if (o->index >= 0) {
        index = (uint32_t)o->index;
    } else {
        if (need(o->index_dir, "--index-dir") < 0 || need(o->owner, "--owner") < 0)
            return 2;
        int rc = pp_podindex_open(&ix, o->index_dir, PP_VXLAN_ID_MAX + 1 - n.vxlan_min_id, &err);
        if (rc == 0)
            rc = pp_podindex_acquire(&ix, o->owner, &index, &err);
        if (rc < 0) {
            pp_podindex_close(&ix);
            return fail(&err, rc);
        }
    }
    static pp_podnet_t cfg;
    int rc = pp_node_inspect(&n, o->pod_netns, index, &cfg, &err);
    if (rc < 0) {
        /* Nothing is left behind: the index goes back. */
        if (ix.dirfd >= 0)
            pp_podindex_release(&ix, index, o->owner, NULL);
        pp_podindex_close(&ix);
        return fail(&err, rc);
    }
    pp_podindex_close(&ix);
    char *json = NULL;
    rc = pp_podnet_encode(&cfg, &json, &err);
    if (rc < 0)
        return fail(&err, rc);
    printf("%s\n", json);
    free(json);
    return 0;
}

static int cmd_tunnel(const char *cmd, const opts_t *o)
{
    pp_error_t err = {0};
    static pp_podnet_t cfg;
    if (need(o->config, "--config") < 0)
        return 2;
    int rc = read_config(o->config, &cfg, &err);
    if (rc < 0)
        return fail(&err, rc);
    pp_node_net_t n;
    pp_node_net_init(&n);
    n.host_netns = o->host_netns;
    if (strcmp(cmd, "node-setup") == 0) {
        struct in_addr remote;
        if (need(o->pod_netns, "--pod-netns") < 0 || need(o->remote, "--remote") < 0)
            return 2;
        if (inet_pton(AF_INET, o->remote, &remote) != 1) {
            fprintf(stderr, "pp-net-tool: `%s` is not an IPv4 address\n", o->remote);
            return 2;
        }
        rc = pp_node_tunnel_setup(&n, o->pod_netns, &cfg, remote, &err);
    } else if (strcmp(cmd, "node-teardown") == 0) {
        if (need(o->pod_netns, "--pod-netns") < 0)
            return 2;
        rc = pp_node_tunnel_teardown(&n, o->pod_netns, &cfg, &err);
        /* The device deletion finishes in the background: wait for it. */
        pp_node_net_fini(&n);
        return rc < 0 ? fail(&err, rc) : 0;
    } else if (strcmp(cmd, "vm-setup") == 0) {
        if (need(o->pod_ns_name, "--pod-ns-name") < 0)
            return 2;
        rc = pp_vm_tunnel_setup(o->host_netns, o->pod_ns_name, &cfg, &err);
    } else {
        if (need(o->pod_ns_name, "--pod-ns-name") < 0)
            return 2;
        rc = pp_vm_tunnel_teardown(o->host_netns, o->pod_ns_name, &cfg, o->delete_netns, &err);
    }
    pp_node_net_fini(&n);
    return rc < 0 ? fail(&err, rc) : 0;
}

static int cmd_index(const char *cmd, const opts_t *o)
{
    pp_error_t err = {0};
    pp_podindex_t ix;
    if (need(o->index_dir, "--index-dir") < 0)
        return 2;
    int rc = pp_podindex_open(&ix, o->index_dir, o->limit > 0 ? (uint32_t)o->limit : 1000, &err);
    if (rc < 0)
        return fail(&err, rc);
    if (strcmp(cmd, "index-acquire") == 0) {
        uint32_t index;
        if (need(o->owner, "--owner") < 0)
            rc = -EINVAL;
        else
            rc = pp_podindex_acquire(&ix, o->owner, &index, &err);
        if (rc == 0)
            printf("%u\n", index);
    } else {
        if (o->index < 0) {
            fprintf(stderr, "pp-net-tool: option `--index` is required\n");
            rc = -EINVAL;
        } else {
            rc = pp_podindex_release(&ix, (uint32_t)o->index, o->owner, &err);
        }
    }
    pp_podindex_close(&ix);
    return rc < 0 ? fail(&err, rc) : 0;
}

/* node-many: pods handed out to threads from a shared counter. */
typedef struct many_s {
    pp_node_net_t n;
    bool setup;
    char **specs;
    int count;
    int next; /* atomic */
    int failed;
} many_t;

static void *many_main(void *p)
{
    many_t *m = p;
    static __thread pp_podnet_t cfg;
    for (;;) {
        int i = __atomic_fetch_add(&m->next, 1, __ATOMIC_RELAXED);
        if (i >= m->count)
            return NULL;
        char spec[1024];
        snprintf(spec, sizeof(spec), "%s", m->specs[i]);
        char *remote = strchr(spec, ',');
        char *config = remote ? strchr(remote + 1, ',') : NULL;
        pp_error_t err = {0};
        int rc = -EINVAL;
        struct in_addr ip;
        if (config != NULL) {
            *remote++ = '\0';
            *config++ = '\0';
            rc = inet_pton(AF_INET, remote, &ip) == 1 ? read_config(config, &cfg, &err) : -EINVAL;
        }
        if (rc == 0)
            rc = m->setup ? pp_node_tunnel_setup(&m->n, spec, &cfg, ip, &err)
                          : pp_node_tunnel_teardown(&m->n, spec, &cfg, &err);
        if (rc < 0) {
            fprintf(stderr, "pp-net-tool: `%s`: %s\n", m->specs[i],
                    err.message[0] ? err.message : strerror(-rc));
            __atomic_store_n(&m->failed, 1, __ATOMIC_RELAXED);
        }
    }
}

static int cmd_many(int argc, char **argv)
{
    /* node-many setup|teardown [--host-netns H] --threads N SPEC... */
    if (argc < 5)
        return usage();
    static many_t m;
    pp_node_net_init(&m.n);
    m.setup = strcmp(argv[2], "setup") == 0;
    long threads = 4;
    int i = 3;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--host-netns") == 0)
            m.n.host_netns = argv[i + 1];
        else if (strcmp(argv[i], "--threads") != 0 || parse_long(argv[i + 1], &threads) < 0 ||
                 threads < 1 || threads > 64)
            return usage();
    }
    m.specs = argv + i;
    m.count = argc - i;
    pthread_t t[64];
    for (long k = 0; k < threads; k++)
        pthread_create(&t[k], NULL, many_main, &m);
    for (long k = 0; k < threads; k++)
        pthread_join(t[k], NULL);
    pp_node_net_fini(&m.n);
    return m.failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    pp_error_t err = {0};
    if (strcmp(cmd, "netns-add") == 0 || strcmp(cmd, "netns-del") == 0) {
        if (argc != 3)
            return usage();
        int rc = cmd[6] == 'a' ? pp_netns_create(argv[2], false, NULL, &err)
                               : pp_netns_delete(argv[2], &err);
        return rc < 0 ? fail(&err, rc) : 0;
    }
    if (strcmp(cmd, "node-many") == 0)
        return cmd_many(argc, argv);
    opts_t o;
    if (parse_opts(argc, argv, &o) < 0)
        return 2;
    if (strcmp(cmd, "inspect") == 0)
        return cmd_inspect(&o);
    if (strcmp(cmd, "node-setup") == 0 || strcmp(cmd, "node-teardown") == 0 ||
        strcmp(cmd, "vm-setup") == 0 || strcmp(cmd, "vm-teardown") == 0)
        return cmd_tunnel(cmd, &o);
    if (strcmp(cmd, "index-acquire") == 0 || strcmp(cmd, "index-release") == 0)
        return cmd_index(cmd, &o);
    return usage();
}
