/* Fuzzes the forwarder's interceptor. The first byte picks the method
 * (0 CreateContainer, 1 CreateSandbox, else one passed through), the rest is
 * the request payload.
 *
 * Beyond "no crash, no leak", it checks what must hold for any input: the
 * output is bounded; the rewrite is idempotent; a method not intercepted is
 * copied; and whenever the interceptor accepts an input that protobuf-c
 * decodes as the request message, the output decodes too and is the decoded
 * input with exactly the promised change. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.pb-c.h"
#include "interceptor.h"
#include "oci.pb-c.h"
#include "util/pb.h"

#define PODNS "/run/netns/podns"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is_network(const Grpc__LinuxNamespace *ns)
{
    return strcmp(ns->type, "network") == 0;
}

/* The merged namespace list, as any decoder of the message sees it. */
static size_t namespaces(const Grpc__CreateContainerRequest *m, Grpc__LinuxNamespace ***out)
{
    if (m->oci == NULL || m->oci->linux_ == NULL) {
        *out = NULL;
        return 0;
    }
    *out = m->oci->linux_->namespaces;
    return m->oci->linux_->n_namespaces;
}

static void check_create_container(const uint8_t *in, size_t n, const pp_buf_t *out,
                                   const apf_intercept_stats_t *st)
{
    CHECK(st->appended + st->replaced >= 1);
    CHECK(st->appended <= 1);
    Grpc__CreateContainerRequest *a = grpc__create_container_request__unpack(NULL, n, in);
    if (a == NULL)
        return;
    Grpc__CreateContainerRequest *b =
        grpc__create_container_request__unpack(NULL, out->len, out->data);
    CHECK(b != NULL);
    CHECK(strcmp(a->container_id, b->container_id) == 0);
    CHECK(strcmp(a->exec_id, b->exec_id) == 0);
    CHECK(a->sandbox_pidns == b->sandbox_pidns);
    CHECK(a->base.n_unknown_fields == b->base.n_unknown_fields);

    Grpc__LinuxNamespace **na, **nb;
    size_t ca = namespaces(a, &na), cb = namespaces(b, &nb);
    size_t networks = 0;
    for (size_t i = 0; i < ca; i++)
        networks += is_network(na[i]);
    CHECK(cb == ca + (networks == 0));
    CHECK(st->appended == (networks == 0));
    for (size_t i = 0; i < ca; i++) {
        CHECK(strcmp(na[i]->type, nb[i]->type) == 0);
        CHECK(na[i]->base.n_unknown_fields == nb[i]->base.n_unknown_fields);
        if (is_network(na[i]))
            CHECK(strcmp(nb[i]->path, PODNS) == 0);
        else
            CHECK(strcmp(na[i]->path, nb[i]->path) == 0);
    }
    if (networks == 0) {
        CHECK(is_network(nb[ca]));
        CHECK(strcmp(nb[ca]->path, PODNS) == 0);
    }
    if (a->oci != NULL) {
        CHECK(strcmp(a->oci->version, b->oci->version) == 0);
        CHECK(strcmp(a->oci->hostname, b->oci->hostname) == 0);
        CHECK(a->oci->n_annotations == b->oci->n_annotations);
        CHECK(a->oci->base.n_unknown_fields == b->oci->base.n_unknown_fields);
        if (a->oci->linux_ != NULL) {
            CHECK(a->oci->linux_->n_maskedpaths == b->oci->linux_->n_maskedpaths);
            CHECK(a->oci->linux_->base.n_unknown_fields == b->oci->linux_->base.n_unknown_fields);
        }
    }
    grpc__create_container_request__free_unpacked(a, NULL);
    grpc__create_container_request__free_unpacked(b, NULL);
}

static void check_create_sandbox(const uint8_t *in, size_t n, const pp_buf_t *out)
{
    pp_pb_reader_t r;
    pp_pb_field_t f;
    int rc;
    pp_pb_reader_init(&r, out->data ? out->data : (const uint8_t *)"", out->len);
    while ((rc = pp_pb_next(&r, &f)) > 0)
        CHECK(f.number != 2);
    CHECK(rc == 0);

    Grpc__CreateSandboxRequest *a = grpc__create_sandbox_request__unpack(NULL, n, in);
    if (a == NULL)
        return;
    Grpc__CreateSandboxRequest *b = grpc__create_sandbox_request__unpack(NULL, out->len, out->data);
    CHECK(b != NULL);
    CHECK(b->n_dns == 0);
    CHECK(strcmp(a->hostname, b->hostname) == 0);
    CHECK(strcmp(a->sandbox_id, b->sandbox_id) == 0);
    CHECK(strcmp(a->guest_hook_path, b->guest_hook_path) == 0);
    CHECK(a->sandbox_pidns == b->sandbox_pidns && a->guest_userns == b->guest_userns);
    CHECK(a->base.n_unknown_fields == b->base.n_unknown_fields);
    grpc__create_sandbox_request__free_unpacked(a, NULL);
    grpc__create_sandbox_request__free_unpacked(b, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static const enum apf_intercept_kind kinds[] = {APF_INTERCEPT_CREATE_CONTAINER,
                                                    APF_INTERCEPT_CREATE_SANDBOX};
    enum apf_intercept_kind kind = data[0] < 2 ? kinds[data[0]] : APF_INTERCEPT_NONE;
    const uint8_t *in = data + 1;
    size_t n = size - 1;

    pp_buf_t out;
    apf_intercept_stats_t st;
    int r = apf_intercept(kind, in, n, PODNS, &out, &st);
    if (r < 0) {
        CHECK(r == -EBADMSG || r == -EMSGSIZE);
        CHECK(out.data == NULL && out.len == 0);
        CHECK(kind != APF_INTERCEPT_NONE);
        /* No check against protobuf-c here: it accepts some input that is
         * not protobuf (tags past 32 bits are silently truncated), which
         * the interceptor rightly refuses. */
        return 0;
    }
    CHECK(out.len <= APF_INTERCEPT_MAX);

    switch (kind) {
    case APF_INTERCEPT_NONE:
        CHECK(out.len == n && (n == 0 || memcmp(out.data, in, n) == 0));
        break;
    case APF_INTERCEPT_CREATE_CONTAINER:
        check_create_container(in, n, &out, &st);
        break;
    case APF_INTERCEPT_CREATE_SANDBOX:
        CHECK(out.len <= n);
        check_create_sandbox(in, n, &out);
        break;
    }

    /* Once rewritten, a second rewrite changes nothing. */
    pp_buf_t again;
    apf_intercept_stats_t st2;
    CHECK(apf_intercept(kind, out.data, out.len, PODNS, &again, &st2) == 0);
    CHECK(again.len == out.len && (out.len == 0 || memcmp(again.data, out.data, out.len) == 0));
    CHECK(st2.appended == 0 && st2.dns_removed == 0);
    pp_buf_free(&again);
    pp_buf_free(&out);
    return 0;
}
