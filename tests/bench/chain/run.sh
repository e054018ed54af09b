#!/usr/bin/env bash
# The agent path: one agent call through client -> cloud-api-adaptor ->
# agent-protocol-forwarder -> agent, against client -> agent directly, and
# the same through a reference chain of two Go ttrpc proxies (containerd's
# ttrpc v1.1.1: a ttrpc server forwarding with a ttrpc client at each hop, as
# the upstream Go components have) in front of a second test agent. In one
# run:
#
#   direct A    load -> pp-test-agent A            (the pod VM's agent.sock)
#   ours, mTLS  load -> CAA (pods/<sid>/agent.ttrpc) -> mutual TLS over TCP
#               across a veth -> forwarder in the pod VM namespace -> agent A
#   ours, plain the same with DISABLE_TLS=true (a second CAA, own pod, agent)
#   ours, mTLS, busy polling: the first with BUSY_POLL_US=200 (a third CAA)
#   direct B    load -> pp-test-agent B
#   Go, mTLS    load -> Go proxy (unix) -> mutual TLS over TCP across a veth
#               -> Go proxy in a namespace of its own -> agent B
#   Go, plain   the same over plain TCP
#
# Ours runs with the local provider in network namespaces made here (the
# "nodes"); the provider puts the forwarder and agent in the pod VM's
# namespace behind a veth. The Go chain's second hop runs in a namespace
# joined to the first node namespace by a veth made the same way, so every
# chain crosses one veth pair over TCP. mTLS is the default deployment (CAA
# and forwarder with the per-node CA; Go with ECDSA P-256 certificates from
# one CA, TLS 1.2 or later as negotiated); plaintext shows the proxies alone.
#
# The load is grpc.Health/Check with a 64-byte request and a 30 s deadline
# (the shim's calls carry deadlines, so each hop runs its deadline timer) on
# one connection, at 1 and 64 calls in flight: a warm-up that is discarded, then a measured window. Every row
# runs once per round, rounds interleave the rows, and the table shows the
# median of the rounds, so that load from elsewhere on the machine hits all
# rows alike. Added latency = chain minus its own direct row (p50, p99).
# CPU/call is the CPU time (all threads, from /proc/<pid>/task/*/schedstat)
# the chain's two proxies spent per call answered, warm-up included: the
# cost of the path, less sensitive than latency to other work on the machine.
#
# Environment: PP_BENCH_BUILD (build tree; default build-bench/, configured
# Release here when missing), PP_BENCH_WARMUP_MS (500), PP_BENCH_DURATION_MS
# (2000), PP_BENCH_ROUNDS (3), PP_BENCH_SIZE (64), PP_BENCH_SKIP_BUILD (set:
# use the binaries already in the tree). Needs root (network namespaces).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
build=${PP_BENCH_BUILD:-$root/build-bench}
warmup=${PP_BENCH_WARMUP_MS:-500}
duration=${PP_BENCH_DURATION_MS:-2000}
rounds=${PP_BENCH_ROUNDS:-3}
size=${PP_BENCH_SIZE:-64}
deadline_ms=30000

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
        agent-protocol-forwarder process-user-data pp-test-agent pp-shim pp_bench_pingpong 2>&1); then
        echo "$log"
        die "build failed"
    fi
fi
if ! grep -q '^CMAKE_BUILD_TYPE:[A-Z]*=Release$' "$build/CMakeCache.txt"; then
    echo "chain bench: warning: $build is not a Release build" >&2
fi
bin=$build/bin
go_bin=$build/tests/bench/chain/chain-bench
mkdir -p "$(dirname "$go_bin")"
if [ ! -x "$go_bin" ] || [ -n "$(find "$here/go" -name '*.go' -newer "$go_bin")" ]; then
    (cd "$here/go" && GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE="$build/gocache" GOFLAGS='' \
        go build -o "$go_bin" .) || die "go build failed"
fi

# ---- setup, and teardown on any exit ------------------------------------------

# Short: the pod VM dirs below must leave room for a unix socket path.
work=$(mktemp -d "${TMPDIR:-/tmp}/ppbc.XXXXXX")
gvm=ppbc-gvm-$$
pids=()      # Go proxies and agent B
caa_pids=()  # one per mode
caa_nodes=() # their namespaces
caa_dirs=()  # their state, short paths: a unix socket path holds at most 107 bytes
sids=()      # their sandboxes

kill_pidfile() { # pidfile "<pid> <start time>": kill it if it is still that process
    local pid start
    read -r pid start <"$1" 2>/dev/null || return 0
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 0
    [ "$(awk '{ print $22 }' "/proc/$pid/stat" 2>/dev/null)" = "$start" ] || return 0
    kill -KILL "$pid" 2>/dev/null || true
}

# Kills whatever still runs in or names the work directory: a pod VM's agent
# (its cwd is the VM dir) or forwarder whose pidfile was not written yet.
kill_leftovers() {
    local f pid
    for f in $(grep -laF "$work/" /proc/[0-9]*/cmdline 2>/dev/null) \
        $(find /proc -mindepth 2 -maxdepth 2 -name cwd -lname "$work/*" 2>/dev/null); do
        pid=${f#/proc/}
        pid=${pid%%/*}
        [ "$pid" != "$$" ] && [ "$pid" != "$BASHPID" ] && kill -KILL "$pid" 2>/dev/null
    done
    return 0
}

# Stops a daemon: SIGTERM, then SIGKILL when it has not exited in 10 s.
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "chain bench: pid $pid did not exit 10 s after SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    set +e
    trap - EXIT INT TERM
    local i d
    for i in "${!caa_pids[@]}"; do
        d=${caa_dirs[$i]}
        if [ -n "${sids[$i]:-}" ] && kill -0 "${caa_pids[$i]}" 2>/dev/null; then
            timeout 20 "$bin/pp-shim" -socket "$d/hv.sock" -timeout 15 stop "${sids[$i]}" \
                >/dev/null 2>&1
        fi
        stop_pid "${caa_pids[$i]}"
    done
    for p in "${pids[@]}"; do
        stop_pid "$p"
    done
    # Whatever a failed StopVM left of the pod VMs.
    for f in "$work"/*/vms/*/agent.pid "$work"/*/vms/*/forwarder.pid; do
        [ -f "$f" ] && kill_pidfile "$f"
    done
    kill_leftovers
    ip netns del "$gvm" 2>/dev/null
    for i in "${!caa_nodes[@]}"; do
        ip netns del "${caa_nodes[$i]}" 2>/dev/null
        d=${caa_dirs[$i]}
        if [ -d "$d/netns" ]; then
            for m in "$d"/netns/*; do
                [ -e "$m" ] && umount -l "$m" 2>/dev/null
            done
            umount -l "$d/netns" 2>/dev/null
        fi
    done
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
    echo "chain bench: $2 did not start" >&2
    return 1
}

# start_caa MODE EXTRA_ENV...: a node namespace with cloud-api-adaptor and
# one running pod; sets caa_sock_MODE (the pod's agent.ttrpc) and
# agent_MODE (the pod VM's agent socket).
start_caa() {
    local mode=$1 node=ppbc-$1-$$
    shift
    local d=$work/$mode
    mkdir -p "$d"
    caa_dirs+=("$d")
    caa_nodes+=("$node")
    ip netns add "$node"
    ip -n "$node" link set lo up
    ip netns exec "$node" env -u PP_AGENT_RECORD -u PP_AGENT_DELAY_MS -u PP_AGENT_FAIL_METHOD \
        CLOUD_PROVIDER=local \
        PEERPODS_LIMIT_PER_NODE=0 \
        REMOTE_HYPERVISOR_ENDPOINT="$d/hv.sock" \
        PODS_DIR="$d/pods" \
        LOCAL_STATE_DIR="$d/vms" \
        LOCAL_NETNS_DIR="$d/netns" \
        PROXY_TIMEOUT=30s \
        "$@" \
        "$bin/cloud-api-adaptor" >"$d/caa.log" 2>&1 &
    caa_pids+=($!)
    if ! wait_for "$d/hv.sock" "cloud-api-adaptor ($mode)" "$!"; then
        cat "$d/caa.log" >&2
        exit 1
    fi
    local sid sock
    sid=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    sids+=("$sid")
    if ! sock=$("$bin/pp-shim" -socket "$d/hv.sock" -timeout 60 create "$sid" \
        -pod "bench-$mode" -namespace default) ||
        ! "$bin/pp-shim" -socket "$d/hv.sock" -timeout 60 start "$sid"; then
        cat "$d/caa.log" >&2
        die "CreateVM/StartVM failed ($mode)"
    fi
    [ -S "$sock" ] || die "no agent socket at $sock"
    printf -v "caa_sock_$mode" '%s' "$sock"
    printf -v "agent_$mode" '%s' "$(ls "$d"/vms/*/agent.sock)"
    # The processes on the path, for their CPU time: CAA and the forwarder.
    printf -v "procs_$mode" '%s %s' "${caa_pids[-1]}" "$(cut -d' ' -f1 "$d"/vms/*/forwarder.pid)"
}

start_caa tls
start_caa plain DISABLE_TLS=true
# The default deployment with busy polling on in both daemons (the
# forwarder the local provider starts takes BUSY_POLL_US from the adaptor's
# environment).
start_caa tlsp BUSY_POLL_US=200
grep -q "TLS DISABLED" "$work/plain/caa.log" || die "DISABLE_TLS was not taken"

# The Go chains: their second hops and agent B in a namespace of their own,
# joined to the first node namespace by a veth, as the local provider joins a
# pod VM (198.19.0.0/30 here, 198.18.0.0/16 for the provider).
node=ppbc-tls-$$
ip netns add "$gvm"
ip -n "$gvm" link set lo up
ip -n "$node" link add ppbcg0 type veth peer name eth0 netns "$gvm"
ip -n "$node" addr add 198.19.0.1/30 dev ppbcg0
ip -n "$gvm" addr add 198.19.0.2/30 dev eth0
ip -n "$node" link set ppbcg0 up
ip -n "$gvm" link set eth0 up
g=$work/go
mkdir -p "$g"
"$go_bin" certs -dir "$g" || die "go certs failed"
agent_b=$g/agent.sock
ip netns exec "$gvm" "$bin/pp-test-agent" -socket "$agent_b" >"$g/agent.log" 2>&1 &
pids+=($!)
wait_for "$agent_b" "agent B" "$!" || exit 1
# go_chain MODE LISTEN_SCHEME PORT: sets go_sock_MODE.
go_chain() {
    local apf
    ip netns exec "$gvm" "$go_bin" proxy -listen "$2:198.19.0.2:$3" -upstream "unix:$agent_b" \
        -certs "$g" -ready "$g/apf-$1.ready" >"$g/apf-$1.log" 2>&1 &
    pids+=($!)
    apf=$!
    wait_for "$g/apf-$1.ready" "Go APF-like proxy ($1)" "$!" || { cat "$g/apf-$1.log" >&2; exit 1; }
    ip netns exec "$node" "$go_bin" proxy -listen "unix:$g/$1.ttrpc" \
        -upstream "$2:198.19.0.2:$3" -certs "$g" >"$g/caa-$1.log" 2>&1 &
    pids+=($!)
    wait_for "$g/$1.ttrpc" "Go CAA-like proxy ($1)" "$!" || { cat "$g/caa-$1.log" >&2; exit 1; }
    printf -v "go_sock_$1" '%s' "$g/$1.ttrpc"
    printf -v "go_procs_$1" '%s %s' "$!" "$apf"
}
go_chain tls tls 15150
go_chain plain tcp 15151

# ---- measure --------------------------------------------------------------------

# cpu_ns PID...: CPU time of these processes (all their threads), in ns.
cpu_ns() {
    local p t=0 ns
    for p in "$@"; do
        for f in /proc/"$p"/task/*/schedstat; do
            read -r ns _ <"$f" 2>/dev/null || continue
            t=$((t + ns))
        done
    done
    echo "$t"
}

# load SOCKET CONC PID...: prints "cps p50 p99 cpu", cpu being the CPU time
# the listed processes (the proxies on the path) spent per call answered, in
# microseconds, warm-up included.
load() {
    local out sock=$1 conc=$2 c0 c1
    shift 2
    c0=$(cpu_ns "$@")
    if ! out=$("$go_bin" load -socket "$sock" -conc "$conc" -size "$size" -warmup "$warmup" \
        -duration "$duration" -timeout "$deadline_ms"); then
        for f in "$work"/*/caa.log "$g"/*.log; do
            echo "--- $f:" >&2
            tail -n 5 "$f" >&2
        done
        die "load on $sock at $conc streams failed"
    fi
    c1=$(cpu_ns "$@")
    echo "$out" | awk -v c="$((c1 - c0))" '/^RESULT/ {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        print v["cps"], v["p50_us"], v["p99_us"], (v["total"] > 0 ? c / 1000 / v["total"] : 0) }'
}

rows=(da ours_tls ours_plain ours_tlsp db go_tls go_plain)
declare -A sock=([da]=$agent_tls [ours_tls]=$caa_sock_tls [ours_plain]=$caa_sock_plain
    [ours_tlsp]=$caa_sock_tlsp [db]=$agent_b [go_tls]=$go_sock_tls [go_plain]=$go_sock_plain)
declare -A procs=([da]="" [ours_tls]=$procs_tls [ours_plain]=$procs_plain
    [ours_tlsp]=$procs_tlsp [db]="" [go_tls]=$go_procs_tls [go_plain]=$go_procs_plain)
results=$work/results
: >"$results"
start=$(date +%s)
load_before=$(cut -d' ' -f1 /proc/loadavg)
floor=$("$build/tests/bench/ttrpc/pp_bench_pingpong" | awk '/^RESULT/ {
    split($2, a, "="); split($3, b, "="); print a[2] " us sleeping, " b[2] " us polling" }')
for _ in $(seq "$rounds"); do
    for conc in 1 64; do
        for row in "${rows[@]}"; do
            # shellcheck disable=SC2086 # a list of pids
            echo "$row $conc $(load "${sock[$row]}" "$conc" ${procs[$row]})" >>"$results"
        done
    done
done
elapsed=$(($(date +%s) - start))
load_after=$(cut -d' ' -f1 /proc/loadavg)

# Every pod still answers through its whole chain after the load.
for s in "$caa_sock_tls" "$caa_sock_plain" "$caa_sock_tlsp"; do
    "$bin/pp-shim" -timeout 10 health "$s" >/dev/null || die "health check on $s after the load failed"
done

# ---- report ------------------------------------------------------------------------

# The median over the rounds of each figure: "row conc cps p50 p99 cpu" lines.
medians=$(bench_medians "$results")
get() { # row conc
    echo "$medians" | awk -v r="$1" -v c="$2" '$1 == r && $2 == c { print $3, $4, $5, $6 }'
}

echo "agent path: grpc.Health/Check, ${size} B request, ${deadline_ms} ms deadline, one connection;"
echo "per row and round: ${warmup} ms warm-up, ${duration} ms measured; median of ${rounds} rounds" \
    "(${elapsed} s); latency in microseconds. Added = chain - its direct row. CPU/call: CPU time"
echo "of the two proxies of the chain (CAA + forwarder, or the two Go proxies) per call, in us."
echo "machine: $(nproc) CPUs, load average ${load_before} before the load, ${load_after} after;" \
    "other work on the machine shows in every row, the ratios suffer less."
echo "machine floor, one round trip between two processes over a socketpair: $floor"
echo "(a chain crosses three such hops each way where the direct call crosses one)"
echo "ours: CAA (unix) -> TCP over a veth -> forwarder in the pod VM netns -> agent A; the mTLS"
echo "      chain once more with busy polling in both daemons (BUSY_POLL_US=200)"
echo "Go:   Go ttrpc proxy (unix) -> TCP over a veth -> Go ttrpc proxy in a netns -> agent B"
echo "mTLS: Go negotiated $(grep -m1 -o 'TLSv[0-9.]* [A-Z0-9_]*' "$g/caa-tls.log" || echo '?');" \
    "ours OpenSSL's default (PP_LOG_LEVEL=debug logs it)"
printf '  %-34s %7s %9s %8s %8s %9s %9s %8s\n' "" streams calls/s p50 p99 "added p50" "added p99" \
    CPU/call
row() { # label conc "cps p50 p99 cpu" ["direct cps p50 p99 cpu"]
    awk -v l="$1" -v c="$2" -v a="$3" -v d="${4:-}" 'BEGIN {
        split(a, x, " ")
        if (d == "") {
            printf "  %-34s %7s %9.0f %8.1f %8.1f\n", l, c, x[1], x[2], x[3]
        } else {
            split(d, y, " ")
            printf "  %-34s %7s %9.0f %8.1f %8.1f %9.1f %9.1f %8.1f\n", l, c, x[1], x[2], x[3],
                x[2] - y[2], x[3] - y[3], x[4]
        }
    }'
}
# ratio LABEL CONC OURS GO DIRECT_OURS DIRECT_GO: prints the ratios row and,
# after a '|', the verdict line.
ratio() {
    awk -v l="$1" -v c="$2" -v o="$3" -v g="$4" -v da="$5" -v db="$6" 'BEGIN {
        split(o, x, " "); split(g, y, " "); split(da, a, " "); split(db, b, " ")
        ao50 = x[2] - a[2]; ao99 = x[3] - a[3]; ag50 = y[2] - b[2]; ag99 = y[3] - b[3]
        r50 = ag50 > 0 ? ao50 / ag50 : 0; r99 = ag99 > 0 ? ao99 / ag99 : 0
        rc = x[1] / y[1]
        printf "  %-34s %7s %9.2f %8.2f %8.2f %9.2f %9.2f %8.2f\n", l, c, rc, x[2] / y[2],
            x[3] / y[3], r50, r99, (y[4] > 0 ? x[4] / y[4] : 0)
        printf "|%s, %d streams: added p50 ours/Go %.2f (goal <= 0.50: %s), added p99 %.2f (%s), calls/s %.2f (goal >= 2.00: %s)\n",
            l, c, r50, (r50 <= 0.5 ? "met" : "MISSED"), r99, (r99 <= 0.5 ? "met" : "MISSED"),
            rc, (rc >= 2 ? "met" : "MISSED")
    }'
}
verdicts=()
for conc in 1 64; do
    da=$(get da "$conc")
    db=$(get db "$conc")
    row "client -> agent A (direct)" "$conc" "$da"
    row "ours mTLS:  CAA -> APF -> agent A" "$conc" "$(get ours_tls "$conc")" "$da"
    row "ours plain: CAA -> APF -> agent A'" "$conc" "$(get ours_plain "$conc")" "$da"
    row "ours mTLS, busy polling" "$conc" "$(get ours_tlsp "$conc")" "$da"
    row "client -> agent B (direct)" "$conc" "$db"
    row "Go mTLS:  proxy -> proxy -> B" "$conc" "$(get go_tls "$conc")" "$db"
    row "Go plain: proxy -> proxy -> B" "$conc" "$(get go_plain "$conc")" "$db"
    for mode in tls plain tlsp; do
        case $mode in
        tls) label="ours/Go mTLS" ;;
        plain) label="ours/Go plain" ;;
        tlsp) label="ours/Go mTLS, busy polling" ;;
        esac
        v=$(ratio "$label" "$conc" "$(get "ours_$mode" "$conc")" "$(get "go_${mode%p}" "$conc")" \
            "$da" "$db")
        echo "$v" | grep -v '^|'
        verdicts+=("$(echo "$v" | grep '^|' | cut -c2-)")
    done
done
echo "Ratios ours/Go: calls/s above 1 is better; latency and CPU/call below 1 are better."
for v in "${verdicts[@]}"; do
    echo "$v"
done
