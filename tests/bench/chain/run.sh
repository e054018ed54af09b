#!/usr/bin/env bash
# The agent path: one agent call through client -> cloud-api-adaptor ->
# agent-protocol-forwarder -> agent, against client -> agent directly, and
# the same for a reference chain of two Go ttrpc proxies (containerd's ttrpc
# v1.1.1, a ttrpc server forwarding with a ttrpc client at each hop, as the
# upstream Go components have) in front of a second test agent. In one run:
#
#   direct A   load -> pp-test-agent A                (the pod VM's agent.sock)
#   ours       load -> CAA (pods/<sid>/agent.ttrpc) -> TCP over a veth ->
#              forwarder in the pod VM namespace -> agent A
#   direct B   load -> pp-test-agent B
#   Go chain   load -> Go proxy (unix) -> TCP over a veth -> Go proxy in a
#              namespace of its own -> agent B
#
# Ours runs with the local provider in a network namespace made here (the
# "node"); the provider puts the forwarder and agent A in the pod VM's
# namespace behind a veth. The Go chain's second hop runs in a namespace
# joined to the same node namespace by a veth made the same way, so both
# chains cross one veth pair over TCP. TLS is off on both (the local
# provider runs the forwarder with -disable-tls).
#
# The load is grpc.Health/Check with a 64-byte request on one connection, at
# 1 and 64 calls in flight: a warm-up that is discarded, then a measured
# window. Added latency = chain minus its own direct row (p50, p99).
#
# Environment: PP_BENCH_BUILD (build tree; default build-bench/, configured
# Release here when missing), PP_BENCH_WARMUP_MS (1000), PP_BENCH_DURATION_MS
# (3000), PP_BENCH_SIZE (64), PP_BENCH_SKIP_BUILD (set: use the binaries
# already in the tree). Needs root (network namespaces).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=${PP_BENCH_BUILD:-$root/build-bench}
warmup=${PP_BENCH_WARMUP_MS:-1000}
duration=${PP_BENCH_DURATION_MS:-3000}
size=${PP_BENCH_SIZE:-64}

die() {
    echo "chain bench: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"

# ---- build ------------------------------------------------------------------

if [ -z "${PP_BENCH_SKIP_BUILD:-}" ]; then
    if [ ! -f "$build/CMakeCache.txt" ]; then
        cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    fi
    if ! log=$(cmake --build "$build" -j"$(nproc)" --target cloud-api-adaptor \
        agent-protocol-forwarder process-user-data pp-test-agent pp-shim 2>&1); then
        echo "$log"
        die "build failed"
    fi
fi
bin=$build/bin
go_bin=$build/tests/bench/chain/chain-bench
mkdir -p "$(dirname "$go_bin")"
if [ ! -x "$go_bin" ] || [ -n "$(find "$here/go" -name '*.go' -newer "$go_bin")" ]; then
    (cd "$here/go" && GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE="$build/gocache" GOFLAGS= \
        go build -o "$go_bin" .) || die "go build failed"
fi

# ---- setup, and teardown on any exit ------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/pp-bench-chain.XXXXXX")
node=ppbc-node-$$
gvm=ppbc-gvm-$$
sid=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
pids=()
caa_pid=
started=

# Kills the processes a pidfile of the local provider names ("<pid> <start
# time>"), if that pid still has that start time.
kill_pidfile() {
    local pid start
    read -r pid start <"$1" 2>/dev/null || return 0
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 0
    [ "$(awk '{ print $22 }' "/proc/$pid/stat" 2>/dev/null)" = "$start" ] || return 0
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    set +e
    trap - EXIT INT TERM
    if [ -n "$started" ] && [ -n "$caa_pid" ] && kill -0 "$caa_pid" 2>/dev/null; then
        timeout 20 ip netns exec "$node" "$bin/pp-shim" -socket "$work/hv.sock" -timeout 15 \
            stop "$sid" >/dev/null 2>&1
    fi
    if [ -n "$caa_pid" ]; then
        kill -TERM "$caa_pid" 2>/dev/null
        wait "$caa_pid" 2>/dev/null
    fi
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    # Whatever a failed StopVM left of the pod VM.
    for f in "$work"/vms/*/agent.pid "$work"/vms/*/forwarder.pid; do
        [ -f "$f" ] && kill_pidfile "$f"
    done
    ip netns del "$gvm" 2>/dev/null
    ip netns del "$node" 2>/dev/null
    if [ -d "$work/netns" ]; then
        for m in "$work"/netns/*; do
            [ -e "$m" ] && umount -l "$m" 2>/dev/null
        done
        umount -l "$work/netns" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for() { # path what pid
    for _ in $(seq 200); do
        [ -e "$1" ] && return 0
        kill -0 "$3" 2>/dev/null || break
        sleep 0.05
    done
    die "$2 did not start"
}

ip netns add "$node"
ip -n "$node" link set lo up

# Ours: cloud-api-adaptor with the local provider; its pod VM holds agent A.
ip netns exec "$node" env -u PP_AGENT_RECORD -u PP_AGENT_DELAY_MS -u PP_AGENT_FAIL_METHOD \
    CLOUD_PROVIDER=local \
    REMOTE_HYPERVISOR_ENDPOINT="$work/hv.sock" \
    PODS_DIR="$work/pods" \
    LOCAL_STATE_DIR="$work/vms" \
    LOCAL_NETNS_DIR="$work/netns" \
    PROXY_TIMEOUT=30s \
    "$bin/cloud-api-adaptor" >"$work/caa.log" 2>&1 &
caa_pid=$!
wait_for "$work/hv.sock" cloud-api-adaptor "$caa_pid"

shim() {
    ip netns exec "$node" "$bin/pp-shim" -socket "$work/hv.sock" -timeout 60 "$@"
}
started=1
if ! agent_ttrpc=$(shim create "$sid" -pod bench-chain -namespace default) ||
    ! shim start "$sid"; then
    cat "$work/caa.log" >&2
    die "CreateVM/StartVM failed"
fi
vm_dir=$(dirname "$(ls "$work"/vms/*/agent.sock)")
agent_a=$vm_dir/agent.sock
[ -S "$agent_ttrpc" ] || die "no agent socket at $agent_ttrpc"

# The Go chain: its second hop and agent B in a namespace of their own,
# joined to the node namespace by a veth, as the local provider joins a pod
# VM (198.19.0.0/30 here, 198.18.0.0/16 for the provider).
ip netns add "$gvm"
ip -n "$gvm" link set lo up
ip -n "$node" link add ppbcg0 type veth peer name eth0 netns "$gvm"
ip -n "$node" addr add 198.19.0.1/30 dev ppbcg0
ip -n "$gvm" addr add 198.19.0.2/30 dev eth0
ip -n "$node" link set ppbcg0 up
ip -n "$gvm" link set eth0 up
mkdir -p "$work/go"
agent_b=$work/go/agent.sock
ip netns exec "$gvm" "$bin/pp-test-agent" -socket "$agent_b" >"$work/go/agent.log" 2>&1 &
pids+=($!)
wait_for "$agent_b" "agent B" "$!"
ip netns exec "$gvm" "$go_bin" proxy -listen tcp:198.19.0.2:15150 -upstream "unix:$agent_b" \
    -ready "$work/go/apf.ready" >"$work/go/apf.log" 2>&1 &
pids+=($!)
wait_for "$work/go/apf.ready" "Go APF-like proxy" "$!"
go_ttrpc=$work/go/agent.ttrpc
ip netns exec "$node" "$go_bin" proxy -listen "unix:$go_ttrpc" -upstream tcp:198.19.0.2:15150 \
    >"$work/go/caa.log" 2>&1 &
pids+=($!)
wait_for "$go_ttrpc" "Go CAA-like proxy" "$!"

# ---- measure --------------------------------------------------------------------

# load SOCKET CONC: prints "cps p50 p99".
load() {
    local out
    if ! out=$("$go_bin" load -socket "$1" -conc "$2" -size "$size" -warmup "$warmup" \
        -duration "$duration"); then
        echo "--- cloud-api-adaptor log:" >&2
        tail -n 20 "$work/caa.log" >&2
        die "load on $1 at $2 streams failed"
    fi
    echo "$out" | awk '/^RESULT/ {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        print v["cps"], v["p50_us"], v["p99_us"] }'
}

declare -A r
for conc in 1 64; do
    r[da_$conc]=$(load "$agent_a" "$conc")
    r[ours_$conc]=$(load "$agent_ttrpc" "$conc")
    r[db_$conc]=$(load "$agent_b" "$conc")
    r[go_$conc]=$(load "$go_ttrpc" "$conc")
done

# The pod still answers through the whole chain after the load.
shim health "$agent_ttrpc" >/dev/null || die "health check after the load failed"

# ---- report ------------------------------------------------------------------------

echo "agent path: grpc.Health/Check, ${size} B request, one connection; warm-up ${warmup} ms,"
echo "then ${duration} ms measured per row; latency in microseconds. Added = chain - its direct row."
echo "ours: CAA (unix) -> TCP over a veth -> forwarder in the pod VM netns -> agent A"
echo "Go:   Go ttrpc proxy (unix) -> TCP over a veth -> Go ttrpc proxy in a netns -> agent B"
printf '  %-30s %7s %10s %9s %9s %9s %9s\n' "" streams calls/s p50 p99 "added p50" "added p99"
row() { # label conc "cps p50 p99" "direct cps p50 p99"
    awk -v l="$1" -v c="$2" -v a="$3" -v d="$4" 'BEGIN {
        split(a, x, " ")
        if (d == "") {
            printf "  %-30s %7s %10.0f %9.1f %9.1f\n", l, c, x[1], x[2], x[3]
        } else {
            split(d, y, " ")
            printf "  %-30s %7s %10.0f %9.1f %9.1f %9.1f %9.1f\n", l, c, x[1], x[2], x[3],
                x[2] - y[2], x[3] - y[3]
        }
    }'
}
verdicts=()
for conc in 1 64; do
    row "client -> agent A (direct)" "$conc" "${r[da_$conc]}" ""
    row "client -> CAA -> APF -> A" "$conc" "${r[ours_$conc]}" "${r[da_$conc]}"
    row "client -> agent B (direct)" "$conc" "${r[db_$conc]}" ""
    row "client -> Go -> Go -> B" "$conc" "${r[go_$conc]}" "${r[db_$conc]}"
    v=$(awk -v c="$conc" -v o="${r[ours_$conc]}" -v g="${r[go_$conc]}" -v da="${r[da_$conc]}" \
        -v db="${r[db_$conc]}" 'BEGIN {
        split(o, x, " "); split(g, y, " "); split(da, a, " "); split(db, b, " ")
        ao50 = x[2] - a[2]; ao99 = x[3] - a[3]; ag50 = y[2] - b[2]; ag99 = y[3] - b[3]
        r50 = ag50 > 0 ? ao50 / ag50 : 0; r99 = ag99 > 0 ? ao99 / ag99 : 0
        rc = x[1] / y[1]
        printf "  %-30s %7s %10.2f %9.2f %9.2f %9.2f %9.2f\n", "ours/Go", c, rc, x[2] / y[2],
            x[3] / y[3], r50, r99
        printf "|%d streams: added p50 ours/Go %.2f (goal <= 0.50: %s), added p99 %.2f (%s), calls/s %.2f (goal >= 2.00: %s)\n",
            c, r50, (r50 <= 0.5 ? "met" : "MISSED"), r99, (r99 <= 0.5 ? "met" : "MISSED"),
            rc, (rc >= 2 ? "met" : "MISSED")
    }')
    echo "$v" | grep -v '^|'
    verdicts+=("$(echo "$v" | grep '^|' | cut -c2-)")
done
echo "Ratios ours/Go: calls/s above 1 is better, latency below 1 is better."
for v in "${verdicts[@]}"; do
    echo "$v"
done
