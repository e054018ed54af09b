#!/usr/bin/env bash
# Resident memory of cloud-api-adaptor: idle after start, then with 100
# running sandboxes (local provider: each a pod VM namespace with its own
# forwarder and test agent), started with pp-shim CreateVM + StartVM in
# parallel batches, then with one open shim connection per sandbox (as the
# kata shim keeps one to its pod's agent socket), and after stopping them
# all. Prints VmRSS and Pss (smaps_rollup), the growth per sandbox, and the
# goals: at most 4 MiB idle, at most 128 KiB more per running sandbox. Then
# checks that StopVM left nothing behind (files, namespaces, links,
# processes) and that the daemon exits 0 on SIGTERM.
#
# Only cloud-api-adaptor is measured; the pod VMs' processes are the
# provider's, not the daemon's.
#
# Environment: PP_BENCH_BUILD (build tree; default build-bench/, configured
# Release here when missing), PP_BENCH_SANDBOXES (100), PP_BENCH_BATCH (10
# calls in parallel), PP_BENCH_SKIP_BUILD (set: use the binaries already in
# the tree), PP_BENCH_CAA_WRAP (a command line to run the daemon under, for
# looking into it: "strace -f -o FILE"; the figures then include the wrapper's
# memory only when it shares the process, as valgrind does). Needs root.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=${PP_BENCH_BUILD:-$root/build-bench}
count=${PP_BENCH_SANDBOXES:-100}
batch=${PP_BENCH_BATCH:-10}
goal_idle_kib=4096
goal_per_kib=128

die() {
    echo "memory bench: $*" >&2
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
if ! grep -q '^CMAKE_BUILD_TYPE:[A-Z]*=Release$' "$build/CMakeCache.txt"; then
    echo "memory bench: warning: $build is not a Release build" >&2
fi
bin=$build/bin
# The shim connections are held by the Go helper of the chain benchmark.
go_bin=$build/tests/bench/chain/chain-bench
go_src=$here/../chain/go
mkdir -p "$(dirname "$go_bin")"
if [ ! -x "$go_bin" ] || [ -n "$(find "$go_src" -name '*.go' -newer "$go_bin")" ]; then
    (cd "$go_src" && GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE="$build/gocache" GOFLAGS= \
        go build -o "$go_bin" .) || die "go build failed"
fi

# ---- setup, and teardown on any exit ------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/pp-bench-memory.XXXXXX")
node=ppbm-node-$$
caa_pid=
hold_pid=
ids=()
stopped=

kill_pidfile() { # pidfile "<pid> <start time>": kill it if it is still that process
    local pid start
    read -r pid start <"$1" 2>/dev/null || return 0
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 0
    [ "$(awk '{ print $22 }' "/proc/$pid/stat" 2>/dev/null)" = "$start" ] || return 0
    kill -KILL "$pid" 2>/dev/null || true
}

shim() {
    "$bin/pp-shim" -socket "$work/hv.sock" -timeout 120 "$@"
}

# stop_all: StopVM for every sandbox, $batch at a time; failures counted.
stop_all() {
    local n=0 fails=0 pids=() id
    for id in "${ids[@]}"; do
        shim stop "$id" >>"$work/shim.log" 2>&1 &
        pids+=($!)
        n=$((n + 1))
        if [ $((n % batch)) -eq 0 ] || [ "$n" -eq "${#ids[@]}" ]; then
            for p in "${pids[@]}"; do
                wait "$p" || fails=$((fails + 1))
            done
            pids=()
        fi
    done
    return "$fails"
}

cleanup() {
    set +e
    trap - EXIT INT TERM
    if [ -n "$hold_pid" ]; then
        kill -TERM "$hold_pid" 2>/dev/null
        wait "$hold_pid" 2>/dev/null
    fi
    if [ -z "$stopped" ] && [ -n "$caa_pid" ] && kill -0 "$caa_pid" 2>/dev/null &&
        [ ${#ids[@]} -gt 0 ]; then
        echo "memory bench: stopping ${#ids[@]} sandboxes" >&2
        stop_all >/dev/null 2>&1
    fi
    if [ -n "$caa_pid" ]; then
        kill -TERM "$caa_pid" 2>/dev/null
        wait "$caa_pid" 2>/dev/null
    fi
    for f in "$work"/vms/*/agent.pid "$work"/vms/*/forwarder.pid; do
        [ -f "$f" ] && kill_pidfile "$f"
    done
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

# rss: "VmRSS_kib Pss_kib" of cloud-api-adaptor.
rss() {
    local v p
    v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$caa_pid/status")
    p=$(awk '/^Pss:/ { print $2 }' "/proc/$caa_pid/smaps_rollup")
    echo "$v $p"
}

count_entries() {
    find "$1" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}

ip netns add "$node"
ip -n "$node" link set lo up

ip netns exec "$node" env -u PP_AGENT_RECORD -u PP_AGENT_DELAY_MS -u PP_AGENT_FAIL_METHOD \
    CLOUD_PROVIDER=local \
    REMOTE_HYPERVISOR_ENDPOINT="$work/hv.sock" \
    PODS_DIR="$work/pods" \
    LOCAL_STATE_DIR="$work/vms" \
    LOCAL_NETNS_DIR="$work/netns" \
    PROXY_TIMEOUT=120s \
    ${PP_BENCH_CAA_WRAP:-} "$bin/cloud-api-adaptor" >"$work/caa.log" 2>&1 &
caa_pid=$!
for _ in $(seq 200); do
    [ -S "$work/hv.sock" ] && break
    kill -0 "$caa_pid" 2>/dev/null || break
    sleep 0.05
done
[ -S "$work/hv.sock" ] || { cat "$work/caa.log" >&2; die "cloud-api-adaptor did not start"; }

# Idle: after start and one Version call (a health probe would make one).
shim version >/dev/null || die "Version failed"
sleep 1
read -r idle_rss idle_pss <<<"$(rss)"

# ---- 100 sandboxes ----------------------------------------------------------------

curve=("0 $idle_rss $idle_pss")
t0=$(date +%s.%N)
pids=()
n=0
for i in $(seq "$count"); do
    id=$(printf 'be%06d%08x%016x' "$i" "$$" "$(date +%s%N)")
    ids+=("$id")
    (shim create "$id" -pod "mem-$i" -namespace bench >/dev/null && shim start "$id") \
        >>"$work/shim.log" 2>&1 &
    pids+=($!)
    n=$((n + 1))
    if [ $((n % batch)) -eq 0 ] || [ "$n" -eq "$count" ]; then
        for p in "${pids[@]}"; do
            if ! wait "$p"; then
                tail -n 20 "$work/shim.log" >&2
                cat "$work/caa.log" >&2
                die "CreateVM/StartVM failed in the batch ending at sandbox $n"
            fi
        done
        pids=()
        curve+=("$n $(rss)")
    fi
done
start_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
sleep 1
read -r full_rss full_pss <<<"$(rss)"

# One shim connection per sandbox, each having made one agent call.
# The helper also ends when its stdin (the coprocess pipe) closes.
coproc HOLD { "$go_bin" hold "$work"/pods/*/agent.ttrpc 2>&1; }
hold_pid=$HOLD_PID
held=
read -r -t 60 held <&"${HOLD[0]}" || true
[ "$held" = "HELD $count" ] || die "holding shim connections failed: $held"
sleep 1
read -r conn_rss conn_pss <<<"$(rss)"
kill -TERM "$hold_pid" 2>/dev/null || true
wait "$hold_pid" 2>/dev/null || true
hold_pid=
sleep 0.5
read -r closed_rss closed_pss <<<"$(rss)"

# ---- stop everything, check nothing is left --------------------------------------

fwd_pids=$(cat "$work"/vms/*/forwarder.pid "$work"/vms/*/agent.pid 2>/dev/null | awk '{ print $1 }')
t0=$(date +%s.%N)
stop_fails=0
stop_all || stop_fails=$?
stopped=1
stop_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
sleep 1
read -r after_rss after_pss <<<"$(rss)"
left_pods=$(count_entries "$work/pods")
left_vms=$(count_entries "$work/vms")
left_ns=$(count_entries "$work/netns")
left_links=$(ip -n "$node" -o link show | grep -vc ': lo:' || true)
left_procs=0
for p in $fwd_pids; do
    [ -d "/proc/$p" ] && left_procs=$((left_procs + 1))
done
kill -TERM "$caa_pid"
caa_status=0
wait "$caa_pid" || caa_status=$?
caa_pid=

# ---- report ------------------------------------------------------------------------

echo "cloud-api-adaptor resident memory, local provider, $count sandboxes started $batch at a time"
echo "(CreateVM + StartVM: ${start_s} s; StopVM of all: ${stop_s} s). KiB; Pss from smaps_rollup."
printf '  %-44s %9s %9s\n' "" VmRSS Pss
printf '  %-44s %9d %9d\n' "idle, after start" "$idle_rss" "$idle_pss"
printf '  %-44s %9d %9d\n' "$count sandboxes running" "$full_rss" "$full_pss"
printf '  %-44s %9d %9d\n' "... and one shim connection to each" "$conn_rss" "$conn_pss"
printf '  %-44s %9d %9d\n' "... shim connections closed" "$closed_rss" "$closed_pss"
printf '  %-44s %9d %9d\n' "all stopped" "$after_rss" "$after_pss"
per=$(awk -v a="$full_rss" -v b="$idle_rss" -v n="$count" 'BEGIN { printf "%.1f", (a - b) / n }')
per_conn=$(awk -v a="$conn_rss" -v b="$idle_rss" -v n="$count" 'BEGIN { printf "%.1f", (a - b) / n }')
per_pss=$(awk -v a="$conn_pss" -v b="$idle_pss" -v n="$count" 'BEGIN { printf "%.1f", (a - b) / n }')
echo "VmRSS (KiB) after each batch, sandboxes:KiB:"
printf '%s\n' "${curve[@]}" | awk '{ printf "%s%d:%d", (NR % 8 == 1) ? "  " : " ", $1, $2
    if (NR % 8 == 0) print "" } END { if (NR % 8) print "" }'
marg=$(printf '%s\n' "${curve[@]}" | awk -v n="$count" '
    { k[NR] = $1; v[NR] = $2 } END {
        # Growth per sandbox over the second half: one-off costs of the first
        # start (threadpool, allocator arenas) are out of it.
        h = 1; for (i = 1; i <= NR; i++) if (k[i] <= n / 2) h = i
        if (k[NR] > k[h]) printf "%.1f", (v[NR] - v[h]) / (k[NR] - k[h]); else print "n/a" }')
echo "per sandbox: ${per} KiB VmRSS running, ${per_conn} KiB with its shim connection" \
    "(Pss ${per_pss} KiB); over the second half alone: ${marg} KiB"
awk -v i="$idle_rss" -v gi="$goal_idle_kib" -v p="$per_conn" -v gp="$goal_per_kib" 'BEGIN {
    printf "goal idle <= %d KiB: %d KiB, %s\n", gi, i, i <= gi ? "met" : "MISSED"
    printf "goal per sandbox <= %d KiB: %.1f KiB, %s\n", gp, p, p <= gp ? "met" : "MISSED" }'
echo "after StopVM: $left_pods pod dirs, $left_vms VM dirs, $left_ns namespaces," \
    "$left_links links, $left_procs agent/forwarder processes left;" \
    "$stop_fails StopVM failures; cloud-api-adaptor exit status $caa_status"
[ "$left_pods" -eq 0 ] && [ "$left_vms" -eq 0 ] && [ "$left_ns" -eq 0 ] &&
    [ "$left_links" -eq 0 ] && [ "$left_procs" -eq 0 ] && [ "$stop_fails" -eq 0 ] &&
    [ "$caa_status" -eq 0 ] || die "something was left behind or failed"
