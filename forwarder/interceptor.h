/* The forwarder's interceptor: rewrites the two kata agent requests the pod
 * VM must adjust before the agent sees them, on the encoded bytes.
 *
 * - grpc.AgentService/CreateContainer: the container joins the pod network
 *   namespace. Every entry of OCI(6).Linux(8).Namespaces(6) whose Type(1) is
 *   "network" gets its Path(2) replaced by the pod namespace path; when there
 *   is none, one LinuxNamespace{Type:"network", Path:<pod ns>} is appended at
 *   the end of the last Linux, so that it is last in the namespace list.
 *   Linux (and OCI) are created when absent.
 * - grpc.AgentService/CreateSandbox: every `dns`(2) entry is removed, so the
 *   agent does not rewrite the VM's /etc/resolv.conf with the worker node's.
 *
 * Upstream appends the network entry unconditionally. The kata shim strips
 * the network namespace from the spec it sends, so in practice there is
 * none and both behave the same; when one is present, rewriting it keeps the
 * spec valid (runtimes reject two namespaces of one type) instead of leaving
 * the container with two conflicting network namespaces.
 *
 * The messages are never decoded and re-encoded: every field the rewrite does
 * not touch, known or unknown, is copied byte for byte in its place. Only the
 * length prefixes of the submessages on the path to the change (and the
 * edited namespace entries) are re-encoded, minimally. The rewrite is
 * idempotent.
 *
 * Pure functions: no state, no I/O; every buffer besides the output is
 * freed before they return (all bounded by APF_INTERCEPT_MAX). Safe on any
 * thread. */
#ifndef APF_INTERCEPTOR_H
#define APF_INTERCEPTOR_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Largest input accepted and output produced: a ttrpc message. */
#define APF_INTERCEPT_MAX (4u << 20)

#define APF_AGENT_SERVICE     "grpc.AgentService"
#define APF_DEFAULT_POD_NETNS "/run/netns/podns"

enum apf_intercept_kind {
    APF_INTERCEPT_NONE = 0,
    APF_INTERCEPT_CREATE_CONTAINER,
    APF_INTERCEPT_CREATE_SANDBOX,
};

/* What a rewrite did, for the log. */
typedef struct apf_intercept_stats_s {
    unsigned replaced;    /* network entries whose path was replaced */
    unsigned appended;    /* network entries appended (0 or 1) */
    unsigned created;     /* OCI/Linux submessages created */
    unsigned dns_removed; /* dns entries removed */
} apf_intercept_stats_t;

/* Which rewrite applies to a method; APF_INTERCEPT_NONE for every method
 * that passes through untouched. */
enum apf_intercept_kind apf_intercept_lookup(const char *service, size_t service_len,
                                             const char *method, size_t method_len);

/* Rewrites a CreateContainerRequest. On success `out` (initialised here,
 * owned by the caller, to be freed with pp_buf_free()) holds the new payload
 * and 0 is returned. On failure `out` is empty and the return is -EBADMSG
 * for malformed input, -EMSGSIZE when input or output would pass
 * APF_INTERCEPT_MAX, -EINVAL for an empty `netns_path`, or -ENOMEM. `stats`
 * may be NULL. */
int apf_intercept_create_container(const uint8_t *in, size_t n, const char *netns_path,
                                   pp_buf_t *out, apf_intercept_stats_t *stats);

/* Rewrites a CreateSandboxRequest; same contract. */
int apf_intercept_create_sandbox(const uint8_t *in, size_t n, pp_buf_t *out,
                                 apf_intercept_stats_t *stats);

/* Dispatches on `kind`; with APF_INTERCEPT_NONE, copies the input. */
int apf_intercept(enum apf_intercept_kind kind, const uint8_t *in, size_t n, const char *netns_path,
                  pp_buf_t *out, apf_intercept_stats_t *stats);

#endif
