/* The forwarder's interceptor: CreateContainer gains the pod network
 * namespace, CreateSandbox loses its dns, everything else is untouched, and
 * every byte the rewrite does not own survives in place.
 *
 * Inputs are built field by field on the wire (so they can carry unknown
 * fields and odd encodings); outputs are checked both byte for byte against
 * an independently built expectation and by decoding them with the
 * protobuf-c messages of lib/proto. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent.pb-c.h"
#include "interceptor.h"
#include "oci.pb-c.h"
#include "util/pb.h"

#define PODNS APF_DEFAULT_POD_NETNS

/* ---- wire builders ------------------------------------------------------ */

static void put_str(pp_buf_t *b, uint32_t number, const char *s)
{
    assert_int_equal(pp_pb_put_string(b, number, s), 0);
}

static void put_uint(pp_buf_t *b, uint32_t number, uint64_t v)
{
    assert_int_equal(pp_pb_put_uint(b, number, v), 0);
}

static void put_raw(pp_buf_t *b, const void *p, size_t n)
{
    assert_int_equal(pp_buf_append(b, p, n), 0);
}

/* Appends `sub` as a length-delimited field and frees it. */
static void put_msg(pp_buf_t *b, uint32_t number, pp_buf_t *sub)
{
    assert_int_equal(pp_pb_put_bytes(b, number, sub->data, sub->len), 0);
    pp_buf_free(sub);
}

static void put_fixed32(pp_buf_t *b, uint32_t number, uint32_t v)
{
    assert_int_equal(pp_pb_put_tag(b, number, PP_PB_I32), 0);
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put_raw(b, le, 4);
}

/* A LinuxNamespace entry; `extra` adds an unknown field after the known
 * ones. */
static void put_ns(pp_buf_t *linux_buf, const char *type, const char *path, int extra)
{
    pp_buf_t ns;
    pp_buf_init(&ns, 0);
    put_str(&ns, 1, type);
    if (path != NULL)
        put_str(&ns, 2, path);
    if (extra)
        put_uint(&ns, 9, 77);
    put_msg(linux_buf, 6, &ns);
}

enum { WITH_UNKNOWN = 1, APPEND_NETWORK = 2 };

/* A CreateContainerRequest with a full spec. With WITH_UNKNOWN it carries
 * unknown fields at every level, including a tag encoded in more bytes than
 * needed; with APPEND_NETWORK it is what the interceptor must produce. */
static void build_cc(pp_buf_t *out, unsigned flags, const char *netns)
{
    pp_buf_t linux_buf, spec;
    pp_buf_init(out, 0);
    pp_buf_init(&linux_buf, 0);
    pp_buf_init(&spec, 0);

    if (flags & WITH_UNKNOWN) {
        pp_buf_t resources;
        pp_buf_init(&resources, 0);
        put_uint(&resources, 1, 1024); /* an opaque LinuxResources */
        put_msg(&linux_buf, 4, &resources);
    }
    put_str(&linux_buf, 5, "/kubepods/pod1/ctr1");
    put_ns(&linux_buf, "pid", NULL, 0);
    put_ns(&linux_buf, "ipc", "/proc/1/ns/ipc", flags & WITH_UNKNOWN);
    if (flags & WITH_UNKNOWN)
        put_fixed32(&linux_buf, 99, 0xdeadbeef);
    put_ns(&linux_buf, "uts", "", 0);
    put_ns(&linux_buf, "mount", NULL, 0);
    put_str(&linux_buf, 10, "/proc/kcore");
    put_str(&linux_buf, 10, "/proc/keys");
    if (flags & APPEND_NETWORK)
        put_ns(&linux_buf, "network", netns, 0);

    put_str(&spec, 1, "1.1.0");
    if (flags & WITH_UNKNOWN) {
        pp_buf_t process;
        pp_buf_init(&process, 0);
        put_str(&process, 4, "/pause"); /* Process.Args, unknown here */
        put_msg(&spec, 2, &process);
        /* Field 100, varint, tag written in three bytes instead of two. */
        static const uint8_t long_tag[] = {0xa0, 0x86, 0x00, 0x05};
        put_raw(&spec, long_tag, sizeof(long_tag));
    }
    put_str(&spec, 4, "pod-hostname");
    put_msg(&spec, 8, &linux_buf);
    {
        pp_buf_t entry;
        pp_buf_init(&entry, 0);
        put_str(&entry, 1, "io.kubernetes.cri.container-type");
        put_str(&entry, 2, "sandbox");
        put_msg(&spec, 7, &entry);
    }

    put_str(out, 1, "ctr1");
    put_str(out, 2, "exec1");
    if (flags & WITH_UNKNOWN) {
        pp_buf_t storage;
        pp_buf_init(&storage, 0);
        put_str(&storage, 1, "overlayfs"); /* Storage, unknown here */
        put_msg(out, 5, &storage);
    }
    put_msg(out, 6, &spec);
    put_uint(out, 7, 1);
    if (flags & WITH_UNKNOWN) {
        put_uint(out, 99, 42);
        put_str(out, 8, "shared-mount"); /* SharedMount, unknown here */
    }
}

static Grpc__CreateContainerRequest *decode_cc(const pp_buf_t *b)
{
    Grpc__CreateContainerRequest *m = grpc__create_container_request__unpack(NULL, b->len, b->data);
    assert_non_null(m);
    return m;
}

static void assert_ns(const Grpc__LinuxNamespace *ns, const char *type, const char *path)
{
    assert_string_equal(ns->type, type);
    assert_string_equal(ns->path, path);
}

static void assert_buf_equal(const pp_buf_t *got, const pp_buf_t *want)
{
    assert_int_equal(got->len, want->len);
    if (want->len > 0)
        assert_memory_equal(got->data, want->data, want->len);
}

/* ---- lookup ------------------------------------------------------------- */

static enum apf_intercept_kind lookup(const char *service, const char *method)
{
    return apf_intercept_lookup(service, strlen(service), method, strlen(method));
}

static void test_lookup(void **state)
{
    (void)state;
    assert_int_equal(lookup("grpc.AgentService", "CreateContainer"),
                     APF_INTERCEPT_CREATE_CONTAINER);
    assert_int_equal(lookup("grpc.AgentService", "CreateSandbox"), APF_INTERCEPT_CREATE_SANDBOX);
    static const char *const others[][2] = {
        {"grpc.AgentService", "StartContainer"},
        {"grpc.AgentService", "CreateContainerX"},
        {"grpc.AgentService", "CreateContaine"},
        {"grpc.AgentService", "createcontainer"},
        {"grpc.Health", "CreateContainer"},
        {"grpc.AgentServic", "CreateSandbox"},
        {"", ""},
        {"grpc.Health", "Check"},
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        assert_int_equal(lookup(others[i][0], others[i][1]), APF_INTERCEPT_NONE);
}

/* ---- CreateContainer ---------------------------------------------------- */

static void test_cc_appends_network(void **state)
{
    (void)state;
    pp_buf_t in, out;
    apf_intercept_stats_t st;
    build_cc(&in, 0, NULL);
    assert_int_equal(apf_intercept_create_container(in.data, in.len, PODNS, &out, &st), 0);
    assert_int_equal(st.appended, 1);
    assert_int_equal(st.replaced, 0);
    assert_int_equal(st.created, 0);

    Grpc__CreateContainerRequest *m = decode_cc(&out);
    assert_string_equal(m->container_id, "ctr1");
    assert_string_equal(m->exec_id, "exec1");
    assert_true(m->sandbox_pidns);
    assert_non_null(m->oci);
    assert_string_equal(m->oci->version, "1.1.0");
    assert_string_equal(m->oci->hostname, "pod-hostname");
    assert_int_equal(m->oci->n_annotations, 1);
    assert_string_equal(m->oci->annotations[0]->value, "sandbox");
    Grpc__Linux *lx = m->oci->linux_;
    assert_non_null(lx);
    assert_string_equal(lx->cgroupspath, "/kubepods/pod1/ctr1");
    assert_int_equal(lx->n_maskedpaths, 2);
    assert_int_equal(lx->n_namespaces, 5);
    assert_ns(lx->namespaces[0], "pid", "");
    assert_ns(lx->namespaces[1], "ipc", "/proc/1/ns/ipc");
    assert_ns(lx->namespaces[2], "uts", "");
    assert_ns(lx->namespaces[3], "mount", "");
    assert_ns(lx->namespaces[4], "network", PODNS);
    grpc__create_container_request__free_unpacked(m, NULL);

    pp_buf_t want;
    build_cc(&want, APPEND_NETWORK, PODNS);
    assert_buf_equal(&out, &want);
    pp_buf_free(&want);
    pp_buf_free(&in);
    pp_buf_free(&out);
}

static void test_cc_unknown_fields_survive(void **state)
{
    (void)state;
    pp_buf_t in, out, want;
    build_cc(&in, WITH_UNKNOWN, NULL);
    build_cc(&want, WITH_UNKNOWN | APPEND_NETWORK, "/run/netns/other");
    assert_int_equal(
        apf_intercept_create_container(in.data, in.len, "/run/netns/other", &out, NULL), 0);
    /* Byte for byte: unknown fields at every level, in their places, the
     * over-long tag kept as it was. */
    assert_buf_equal(&out, &want);

    /* And as a decoder sees them. */
    Grpc__CreateContainerRequest *m = decode_cc(&out);
    assert_int_equal(m->base.n_unknown_fields, 3);      /* storages, 99, shared_mounts */
    assert_int_equal(m->oci->base.n_unknown_fields, 2); /* process, 100 */
    Grpc__Linux *lx = m->oci->linux_;
    assert_int_equal(lx->base.n_unknown_fields, 2); /* resources, 99 */
    assert_int_equal(lx->n_namespaces, 5);
    assert_int_equal(lx->namespaces[1]->base.n_unknown_fields, 1);
    assert_ns(lx->namespaces[4], "network", "/run/netns/other");
    grpc__create_container_request__free_unpacked(m, NULL);
    pp_buf_free(&in);
    pp_buf_free(&out);
    pp_buf_free(&want);
}

static void test_cc_replaces_existing_network(void **state)
{
    (void)state;
    pp_buf_t in, out, want, linux_buf, spec;
    apf_intercept_stats_t st;

    /* network with a host path, an unknown field after it; then pid. */
    pp_buf_init(&linux_buf, 0);
    put_ns(&linux_buf, "network", "/var/run/netns/cni-1234", 1);
    put_ns(&linux_buf, "pid", NULL, 0);
    pp_buf_init(&spec, 0);
    put_msg(&spec, 8, &linux_buf);
    pp_buf_init(&in, 0);
    put_str(&in, 1, "ctr");
    put_msg(&in, 6, &spec);

    pp_buf_init(&linux_buf, 0);
    put_ns(&linux_buf, "network", PODNS, 1);
    put_ns(&linux_buf, "pid", NULL, 0);
    pp_buf_init(&spec, 0);
    put_msg(&spec, 8, &linux_buf);
    pp_buf_init(&want, 0);
    put_str(&want, 1, "ctr");
    put_msg(&want, 6, &spec);

    assert_int_equal(apf_intercept_create_container(in.data, in.len, PODNS, &out, &st), 0);
    assert_int_equal(st.replaced, 1);
    assert_int_equal(st.appended, 0);
    assert_buf_equal(&out, &want);

    Grpc__CreateContainerRequest *m = decode_cc(&out);
    assert_int_equal(m->oci->linux_->n_namespaces, 2);
    assert_ns(m->oci->linux_->namespaces[0], "network", PODNS);
    assert_ns(m->oci->linux_->namespaces[1], "pid", "");
    grpc__create_container_request__free_unpacked(m, NULL);
    pp_buf_free(&in);
    pp_buf_free(&out);
    pp_buf_free(&want);
}

/* A network entry without a path gets one; one with several paths (a
 * decoder keeps the last) ends with exactly ours, where the first was. Two
 * network entries are both pointed at the pod namespace. */
static void test_cc_network_path_variants(void **state)
{
    (void)state;
    pp_buf_t in, out, linux_buf, spec, ns;
    apf_intercept_stats_t st;

    pp_buf_init(&linux_buf, 0);
    put_ns(&linux_buf, "network", NULL, 0);
    pp_buf_init(&ns, 0);
    put_str(&ns, 2, "/first");
    put_str(&ns, 1, "network");
    put_str(&ns, 2, "/second");
    put_uint(&ns, 3, 5);
    put_msg(&linux_buf, 6, &ns);
    pp_buf_init(&spec, 0);
    put_msg(&spec, 8, &linux_buf);
    pp_buf_init(&in, 0);
    put_msg(&in, 6, &spec);

    assert_int_equal(apf_intercept_create_container(in.data, in.len, PODNS, &out, &st), 0);
    assert_int_equal(st.replaced, 2);
    assert_int_equal(st.appended, 0);

    Grpc__CreateContainerRequest *m = decode_cc(&out);
    assert_int_equal(m->oci->linux_->n_namespaces, 2);
    assert_ns(m->oci->linux_->namespaces[0], "network", PODNS);
    assert_ns(m->oci->linux_->namespaces[1], "network", PODNS);
    assert_int_equal(m->oci->linux_->namespaces[1]->base.n_unknown_fields, 1);
    grpc__create_container_request__free_unpacked(m, NULL);

    /* The second entry on the wire: path, type, unknown 3. */
    pp_buf_t want_ns;
    pp_buf_init(&want_ns, 0);
    put_str(&want_ns, 2, PODNS);
    put_str(&want_ns, 1, "network");
    put_uint(&want_ns, 3, 5);
    assert_non_null(memmem(out.data, out.len, want_ns.data, want_ns.len));
    pp_buf_free(&want_ns);
    pp_buf_free(&in);
    pp_buf_free(&out);
}

static void test_cc_creates_linux(void **state)
{
    (void)state;
    pp_buf_t in, out, spec;
    apf_intercept_stats_t st;
    pp_buf_init(&spec, 0);
    put_str(&spec, 1, "1.0.2");
    put_uint(&spec, 77, 1);
    pp_buf_init(&in, 0);
    put_str(&in, 1, "ctr");
    put_msg(&in, 6, &spec);

    assert_int_equal(apf_intercept_create_container(in.data, in.len, PODNS, &out, &st), 0);
    assert_int_equal(st.created, 1);
    assert_int_equal(st.appended, 1);
    Grpc__CreateContainerRequest *m = decode_cc(&out);
    assert_string_equal(m->container_id, "ctr");
    assert_string_equal(m->oci->version, "1.0.2");
    assert_int_equal(m->oci->base.n_unknown_fields, 1);
    assert_non_null(m->oci->linux_);
    assert_int_equal(m->oci->linux_->n_namespaces, 1);
    assert_ns(m->oci->linux_->namespaces[0], "network", PODNS);
    grpc__create_container_request__free_unpacked(m, NULL);

    /* The spec's own bytes come first, unchanged, then the new Linux. */
    pp_buf_t want, linux_buf;
    pp_buf_init(&spec, 0);
    put_str(&spec, 1, "1.0.2");
    put_uint(&spec, 77, 1);
    pp_buf_init(&linux_buf, 0);
    put_ns(&linux_buf, "network", PODNS, 0);
    put_msg(&spec, 8, &linux_buf);
    pp_buf_init(&want, 0);
    put_str(&want, 1, "ctr");
    put_msg(&want, 6, &spec);
    assert_buf_equal(&out, &want);
    pp_buf_free(&want);
    pp_buf_free(&in);
    pp_buf_free(&out);
}

static void test_cc_creates_oci(void **state)
{
    (void)state;
    pp_buf_t in, out;
    apf_intercept_stats_t st;
    pp_buf_init(&in, 0);
    put_str(&in, 1, "ctr");
    put_uint(&in, 7, 1);

    assert_int_equal(apf_intercept_create_container(in.data, in.len, PODNS, &out, &st), 0);
    assert_int_equal(st.created, 2);
    assert_int_equal(st.appended, 1);
    assert_true(out.len > in.len);
    assert_memory_equal(out.data, in.data, in.len); /* original bytes first */
    Grpc__CreateContainerRequest *m = decode_cc(&out);
    assert_string_equal(m->container_id, "ctr");
    assert_true(m->sandbox_pidns);
    assert_int_equal(m->oci->linux_->n_namespaces, 1);
    assert_ns(m->oci->linux_->namespaces[0], "network", PODNS);
    grpc__create_container_request__free_unpacked(m, NULL);
    pp_buf_free(&in);
    pp_buf_free(&out);

    /* An empty request too. */
    assert_int_equal(apf_intercept_create_container(NULL, 0, PODNS, &out, &st), 0);
    m = decode_cc(&out);
    assert_int_equal(m->oci->linux_->n_namespaces, 1);
    assert_ns(m->oci->linux_->namespaces[0], "network", PODNS);
    grpc__create_container_request__free_unpacked(m, NULL);
    pp_buf_free(&out);
}

/* OCI given twice merges on decode; the entry goes into the last one, so it
 * is last in the merged list. */
static void test_cc_repeated_oci(void **state)
{
    (void)state;
    pp_buf_t in, out, spec, linux_buf;
    pp_buf_init(&in, 0);
    for (int i = 0; i < 2; i++) {
        pp_buf_init(&linux_buf, 0);
        put_ns(&linux_buf, i == 0 ? "pid" : "ipc", NULL, 0);
        pp_buf_init(&spec, 0);
        put_msg(&spec, 8, &linux_buf);
        put_msg(&in, 6, &spec);
    }
    assert_int_equal(apf_intercept_create_container(in.data, in.len, PODNS, &out, NULL), 0);
    Grpc__CreateContainerRequest *m = decode_cc(&out);
    assert_int_equal(m->oci->linux_->n_namespaces, 3);
    assert_ns(m->oci->linux_->namespaces[0], "pid", "");
    assert_ns(m->oci->linux_->namespaces[1], "ipc", "");
    assert_ns(m->oci->linux_->namespaces[2], "network", PODNS);
    grpc__create_container_request__free_unpacked(m, NULL);
    pp_buf_free(&in);
    pp_buf_free(&out);
}

/* The only Linux is in the first of two OCIs: the entry is appended there
 * (last in the merged list), and the second OCI is left as it was rather
 * than given a Linux of its own. */
static void test_cc_linux_in_earlier_oci(void **state)
{
    (void)state;
    pp_buf_t in, out, want, spec, linux_buf;
    apf_intercept_stats_t st;
    for (int pass = 0; pass < 2; pass++) {
        pp_buf_t *b = pass == 0 ? &in : &want;
        pp_buf_init(b, 0);
        pp_buf_init(&linux_buf, 0);
        put_ns(&linux_buf, "pid", NULL, 0);
        if (pass == 1)
            put_ns(&linux_buf, "network", PODNS, 0);
        pp_buf_init(&spec, 0);
        put_msg(&spec, 8, &linux_buf);
        put_msg(b, 6, &spec);
        pp_buf_init(&spec, 0);
        put_str(&spec, 4, "second");
        put_msg(b, 6, &spec);
    }
    assert_int_equal(apf_intercept_create_container(in.data, in.len, PODNS, &out, &st), 0);
    assert_int_equal(st.created, 0);
    assert_int_equal(st.appended, 1);
    assert_buf_equal(&out, &want);
    pp_buf_free(&in);
    pp_buf_free(&out);
    pp_buf_free(&want);
}

static void test_cc_idempotent(void **state)
{
    (void)state;
    pp_buf_t in, once, twice;
    build_cc(&in, WITH_UNKNOWN, NULL);
    assert_int_equal(apf_intercept_create_container(in.data, in.len, PODNS, &once, NULL), 0);
    apf_intercept_stats_t st;
    assert_int_equal(apf_intercept_create_container(once.data, once.len, PODNS, &twice, &st), 0);
    assert_int_equal(st.replaced, 1);
    assert_int_equal(st.appended, 0);
    assert_buf_equal(&twice, &once);
    pp_buf_free(&in);
    pp_buf_free(&once);
    pp_buf_free(&twice);
}

static void assert_cc_rejects(const uint8_t *p, size_t n, int code)
{
    pp_buf_t out;
    apf_intercept_stats_t st;
    memset(&st, 0xff, sizeof(st));
    assert_int_equal(apf_intercept_create_container(p, n, PODNS, &out, &st), code);
    assert_int_equal(out.len, 0);
    assert_null(out.data);
    assert_int_equal(st.appended, 0);
}

static void test_cc_malformed(void **state)
{
    (void)state;
    /* Truncated tag varint; length past the end; OCI as a varint; Linux as
     * a fixed32; a namespace entry that does not parse; Type as a varint;
     * group wire types; field number 0; a truncated fixed64. */
    static const struct {
        const char *what;
        uint8_t bytes[16];
        size_t n;
    } cases[] = {
        {"truncated tag", {0x80}, 1},
        {"length past end", {0x32, 0x05, 0x42, 0x00}, 4},
        {"OCI as varint", {0x30, 0x01}, 2},
        {"Linux as fixed32", {0x32, 0x05, 0x45, 0x01, 0x02, 0x03, 0x04}, 7},
        {"namespace garbage", {0x32, 0x05, 0x42, 0x03, 0x32, 0x01, 0xff}, 7},
        {"type as varint", {0x32, 0x06, 0x42, 0x04, 0x32, 0x02, 0x08, 0x01}, 8},
        {"path as fixed64", {0x32, 0x06, 0x42, 0x04, 0x32, 0x02, 0x11, 0x00}, 8},
        {"start group", {0x0b, 0x0c}, 2},
        {"group in spec", {0x32, 0x02, 0x0b, 0x0c}, 4},
        {"field 0", {0x02, 0x00}, 2},
        {"truncated fixed64", {0x09, 0x01, 0x02}, 3},
        {"bad varint in linux",
         {0x32, 0x0c, 0x42, 0x0a, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
         14},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("case: %s\n", cases[i].what);
        assert_cc_rejects(cases[i].bytes, cases[i].n, -EBADMSG);
    }

    /* A good request cut short at every length either parses (a prefix
     * that ends on a field boundary) or is rejected, never more. */
    pp_buf_t in;
    build_cc(&in, WITH_UNKNOWN, NULL);
    for (size_t n = 0; n < in.len; n++) {
        pp_buf_t out;
        int r = apf_intercept_create_container(in.data, n, PODNS, &out, NULL);
        assert_true(r == 0 || r == -EBADMSG);
        pp_buf_free(&out);
    }
    pp_buf_free(&in);
}

static void test_cc_limits(void **state)
{
    (void)state;
    pp_buf_t in, out;

    assert_int_equal(apf_intercept_create_container(NULL, 0, "", &out, NULL), -EINVAL);
    assert_int_equal(apf_intercept_create_container(NULL, 0, NULL, &out, NULL), -EINVAL);

    /* Over the maximum on input. */
    size_t big = APF_INTERCEPT_MAX + 1;
    uint8_t *p = calloc(1, big);
    assert_non_null(p);
    assert_cc_rejects(p, big, -EMSGSIZE);
    free(p);

    /* Just under the maximum, with less room than the new entry needs. One
     * unknown bytes field fills the message. */
    pp_buf_init(&in, 0);
    size_t body = APF_INTERCEPT_MAX - 16;
    uint8_t *filler = calloc(1, body);
    assert_non_null(filler);
    assert_int_equal(pp_pb_put_bytes(&in, 15, filler, body), 0);
    free(filler);
    assert_true(in.len <= APF_INTERCEPT_MAX);
    assert_cc_rejects(in.data, in.len, -EMSGSIZE);

    /* The same through CreateSandbox, which only shrinks: accepted. */
    assert_int_equal(apf_intercept_create_sandbox(in.data, in.len, &out, NULL), 0);
    assert_int_equal(out.len, in.len);
    pp_buf_free(&out);
    pp_buf_free(&in);
}

/* ---- CreateSandbox ------------------------------------------------------ */

static void build_cs(pp_buf_t *out, int with_dns)
{
    pp_buf_init(out, 0);
    put_str(out, 1, "pod-hostname");
    if (with_dns)
        put_str(out, 2, "nameserver 10.96.0.10");
    pp_buf_t storage;
    pp_buf_init(&storage, 0);
    put_str(&storage, 1, "local");
    put_msg(out, 3, &storage); /* storages: unknown here */
    if (with_dns) {
        put_str(out, 2, "search default.svc.cluster.local");
        put_str(out, 2, "");
    }
    put_uint(out, 4, 1);
    put_str(out, 5, "sandbox-id");
    put_fixed32(out, 99, 7);
    if (with_dns)
        put_str(out, 2, "options ndots:5");
    put_uint(out, 8, 1);
}

static void test_cs_clears_dns(void **state)
{
    (void)state;
    pp_buf_t in, out, want;
    apf_intercept_stats_t st;
    build_cs(&in, 1);
    build_cs(&want, 0);
    assert_int_equal(apf_intercept_create_sandbox(in.data, in.len, &out, &st), 0);
    assert_int_equal(st.dns_removed, 4);
    assert_buf_equal(&out, &want);

    Grpc__CreateSandboxRequest *m = grpc__create_sandbox_request__unpack(NULL, out.len, out.data);
    assert_non_null(m);
    assert_int_equal(m->n_dns, 0);
    assert_string_equal(m->hostname, "pod-hostname");
    assert_string_equal(m->sandbox_id, "sandbox-id");
    assert_true(m->sandbox_pidns);
    assert_true(m->guest_userns);
    assert_int_equal(m->base.n_unknown_fields, 2);
    grpc__create_sandbox_request__free_unpacked(m, NULL);

    /* Through the dispatcher, the same. */
    pp_buf_free(&out);
    assert_int_equal(apf_intercept(APF_INTERCEPT_CREATE_SANDBOX, in.data, in.len, PODNS, &out, &st),
                     0);
    assert_buf_equal(&out, &want);
    pp_buf_free(&in);
    pp_buf_free(&out);
    pp_buf_free(&want);
}

static void test_cs_without_dns_unchanged(void **state)
{
    (void)state;
    pp_buf_t in, out;
    apf_intercept_stats_t st;
    build_cs(&in, 0);
    assert_int_equal(apf_intercept_create_sandbox(in.data, in.len, &out, &st), 0);
    assert_int_equal(st.dns_removed, 0);
    assert_buf_equal(&out, &in);
    pp_buf_free(&in);
    pp_buf_free(&out);

    /* Only dns: the result is empty. */
    pp_buf_init(&in, 0);
    put_str(&in, 2, "nameserver 1.1.1.1");
    assert_int_equal(apf_intercept_create_sandbox(in.data, in.len, &out, &st), 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(st.dns_removed, 1);
    pp_buf_free(&in);
    pp_buf_free(&out);
}

static void test_cs_malformed(void **state)
{
    (void)state;
    static const uint8_t dns_varint[] = {0x0a, 0x01, 'h', 0x10, 0x01};
    static const uint8_t truncated[] = {0x0a, 0x05, 'h'};
    static const uint8_t group[] = {0x13, 0x14};
    pp_buf_t out;
    assert_int_equal(apf_intercept_create_sandbox(dns_varint, sizeof(dns_varint), &out, NULL),
                     -EBADMSG);
    assert_int_equal(out.len, 0);
    assert_int_equal(apf_intercept_create_sandbox(truncated, sizeof(truncated), &out, NULL),
                     -EBADMSG);
    assert_int_equal(apf_intercept_create_sandbox(group, sizeof(group), &out, NULL), -EBADMSG);
}

/* ---- other methods ------------------------------------------------------ */

static void test_other_methods_untouched(void **state)
{
    (void)state;
    /* Whatever the payload, even one that is not protobuf at all, a method
     * that is not intercepted passes unchanged. */
    static const uint8_t junk[] = {0xff, 0xfe, 0x00, 0x32, 0x7f, 0x0b};
    pp_buf_t in, out;
    build_cc(&in, WITH_UNKNOWN, NULL);
    static const char *const methods[] = {"StartContainer", "ExecProcess", "UpdateContainer",
                                          "DestroySandbox", "SetPolicy"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        enum apf_intercept_kind k =
            apf_intercept_lookup("grpc.AgentService", 17, methods[i], strlen(methods[i]));
        assert_int_equal(k, APF_INTERCEPT_NONE);
        assert_int_equal(apf_intercept(k, in.data, in.len, PODNS, &out, NULL), 0);
        assert_buf_equal(&out, &in);
        pp_buf_free(&out);
        assert_int_equal(apf_intercept(k, junk, sizeof(junk), PODNS, &out, NULL), 0);
        assert_int_equal(out.len, sizeof(junk));
        assert_memory_equal(out.data, junk, sizeof(junk));
        pp_buf_free(&out);
    }
    pp_buf_free(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_cc_appends_network),
        cmocka_unit_test(test_cc_unknown_fields_survive),
        cmocka_unit_test(test_cc_replaces_existing_network),
        cmocka_unit_test(test_cc_network_path_variants),
        cmocka_unit_test(test_cc_creates_linux),
        cmocka_unit_test(test_cc_creates_oci),
        cmocka_unit_test(test_cc_repeated_oci),
        cmocka_unit_test(test_cc_linux_in_earlier_oci),
        cmocka_unit_test(test_cc_idempotent),
        cmocka_unit_test(test_cc_malformed),
        cmocka_unit_test(test_cc_limits),
        cmocka_unit_test(test_cs_clears_dns),
        cmocka_unit_test(test_cs_without_dns_unchanged),
        cmocka_unit_test(test_cs_malformed),
        cmocka_unit_test(test_other_methods_untouched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
