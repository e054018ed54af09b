#!/usr/bin/env bash
# Resident memory of cloud-api-adaptor (VmRSS, and Pss from smaps_rollup):
#
#   - idle after start (and, for comparison, idle with DISABLE_TLS=true),
#     with VmRSS split into anonymous and file pages and OpenSSL's share;
#   - with 100 running sandboxes (local provider: each a pod VM namespace
#     with its own forwarder and test agent), started with pp-shim CreateVM +
#     StartVM in parallel batches, VmRSS after each batch;
#   - with one open shim connection per sandbox that made one agent call (as
#     the kata shim keeps one to its pod's agent socket), then after 64 more
#     calls at once on each;
#   - after StopVM of all of them, and again after a second cycle of 100
#     starts and stops (what a cycle leaves behind shows as growth).
#
# Prints the growth per sandbox and the goals: at most 4 MiB idle, at most
# 128 KiB more per running sandbox. Checks that StopVM left nothing behind
# (files, namespaces, links, processes) and that the daemon exits 0 on
# SIGTERM. Only cloud-api-adaptor is measured; the pod VMs' processes are
# the provider's, not the daemon's.
#
# Environment: PP_BENCH_BUILD (build tree; default build-bench/, configured
# Release here when missing), PP_BENCH_SANDBOXES (100), PP_BENCH_BATCH (10
# calls in parallel), PP_BENCH_SKIP_BUILD (set: use the binaries already in
# the tree), PP_BENCH_SNAPSHOTS (a directory: the daemon's smaps at each
# measurement, numbered), PP_BENCH_CAA_WRAP (a command line to run the daemon under, such
# as "valgrind --tool=massif"; it must exec the daemon in its own process, or
# the figures are the wrapper's). Needs root (network namespaces).
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
    (cd "$go_src" && GOPATH=/usr/share/gocode GO111MODULE=off GOCACHE="$build/gocache" GOFLAGS='' \
        go build -o "$go_bin" .) || die "go build failed"
fi

# ---- setup, and teardown on any exit ------------------------------------------

# Short: the pod VM dirs below must leave room for a unix socket path.
work=$(mktemp -d "${TMPDIR:-/tmp}/ppbm.XXXXXX")
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
# Sets `stop_status` to its exit status.
stop_pid() {
    local pid=$1
    stop_status=0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "memory bench: pid $pid did not exit 10 s after SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || stop_status=$?
}

shim() {
    "$bin/pp-shim" -socket "$work/hv.sock" -timeout 60 "$@"
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
    [ -n "$caa_pid" ] && stop_pid "$caa_pid"
    for f in "$work"/vms/*/agent.pid "$work"/vms/*/forwarder.pid; do
        [ -f "$f" ] && kill_pidfile "$f"
    done
    kill_leftovers
    ip netns del "$node" 2>/dev/null
    ip netns del "$node-notls" 2>/dev/null
    for d in "$work" "$work/notls"; do
        [ -d "$d/netns" ] || continue
        for m in "$d"/netns/*; do
            [ -e "$m" ] && umount -l "$m" 2>/dev/null
        done
        umount -l "$d/netns" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# rss: "VmRSS_kib Pss_kib" of cloud-api-adaptor; with PP_BENCH_SNAPSHOTS set
# (a directory), also keeps its smaps there as <n>.smaps, numbered in order.
rss() {
    local v p n
    if [ -n "${PP_BENCH_SNAPSHOTS:-}" ]; then
        # Called in subshells: the count lives in the directory.
        mkdir -p "$PP_BENCH_SNAPSHOTS"
        n=$(find "$PP_BENCH_SNAPSHOTS" -name '*.smaps' | wc -l)
        cp "/proc/$caa_pid/smaps" "$PP_BENCH_SNAPSHOTS/$(printf %03d $((n + 1))).smaps"
    fi
    v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$caa_pid/status")
    p=$(awk '/^Pss:/ { print $2 }' "/proc/$caa_pid/smaps_rollup")
    echo "$v $p"
}

# Entries of a directory, but the daemon's own state (dot names: the node's
# CA, the pod index record).
count_entries() {
    find "$1" -mindepth 1 -maxdepth 1 -not -name '.*' 2>/dev/null | wc -l
}

# breakdown PID: "RssAnon RssFile Rss-of-OpenSSL" in KiB (OpenSSL: the
# libcrypto and libssl mappings).
breakdown() {
    local a f o
    a=$(awk '/^RssAnon:/ { print $2 }' "/proc/$1/status")
    f=$(awk '/^RssFile:/ { print $2 }' "/proc/$1/status")
    o=$(awk '/^[0-9a-f]+-[0-9a-f]+ / { ssl = ($6 ~ /lib(crypto|ssl)\.so/) }
        /^Rss:/ && ssl { n += $2 } END { print n + 0 }' "/proc/$1/smaps")
    echo "$a $f $o"
}

# start_daemon DIR NODE [NAME=VALUE...]: cloud-api-adaptor in namespace NODE
# with its state under DIR; sets caa_pid.
start_daemon() {
    local d=$1 ns=$2
    shift 2
    mkdir -p "$d"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # shellcheck disable=SC2086 # PP_BENCH_CAA_WRAP is a command line
    ip netns exec "$ns" env -u PP_AGENT_RECORD -u PP_AGENT_DELAY_MS -u PP_AGENT_FAIL_METHOD \
        CLOUD_PROVIDER=local \
        PEERPODS_LIMIT_PER_NODE=0 \
        REMOTE_HYPERVISOR_ENDPOINT="$d/hv.sock" \
        PODS_DIR="$d/pods" \
        LOCAL_STATE_DIR="$d/vms" \
        LOCAL_NETNS_DIR="$d/netns" \
        PROXY_TIMEOUT=60s \
        "$@" \
        ${PP_BENCH_CAA_WRAP:-} "$bin/cloud-api-adaptor" >"$d/caa.log" 2>&1 &
    caa_pid=$!
    for _ in $(seq 200); do
        [ -S "$d/hv.sock" ] && break
        kill -0 "$caa_pid" 2>/dev/null || break
        sleep 0.05
    done
    [ -S "$d/hv.sock" ] || { cat "$d/caa.log" >&2; die "cloud-api-adaptor did not start"; }
    # Idle means after start and one Version call (the shim's first call).
    "$bin/pp-shim" -socket "$d/hv.sock" -timeout 10 version >/dev/null || die "Version failed"
    sleep 1
}

# For comparison: the idle daemon without TLS (no CA, no OpenSSL in use).
start_daemon "$work/notls" "$node-notls" DISABLE_TLS=true
read -r notls_rss notls_pss <<<"$(rss)"
read -r notls_anon notls_file notls_ssl <<<"$(breakdown "$caa_pid")"
stop_pid "$caa_pid"
caa_pid=
ip netns del "$node-notls"

start_daemon "$work" "$node"
read -r idle_rss idle_pss <<<"$(rss)"
read -r idle_anon idle_file idle_ssl <<<"$(breakdown "$caa_pid")"

# ---- 100 sandboxes ----------------------------------------------------------------

# start_all CYCLE: CreateVM + StartVM for $count sandboxes, $batch at a time;
# their ids go to `ids`, VmRSS after each batch to `curve`.
start_all() {
    local i id n=0 pids=() p
    ids=()
    curve=("0 $(rss)")
    for i in $(seq "$count"); do
        id=$(printf 'be%02d%04d%08x%016x' "$1" "$i" "$$" "$(date +%s%N)")
        ids+=("$id")
        (shim create "$id" -pod "mem-$i" -namespace bench >/dev/null && shim start "$id") \
            >>"$work/shim.log" 2>&1 &
        pids+=($!)
        n=$((n + 1))
        if [ $((n % batch)) -eq 0 ] || [ "$n" -eq "$count" ]; then
            for p in "${pids[@]}"; do
                if ! wait "$p"; then
                    tail -n 20 "$work/shim.log" >&2
                    tail -n 40 "$work/caa.log" >&2
                    die "CreateVM/StartVM failed in the batch ending at sandbox $n"
                fi
            done
            pids=()
            curve+=("$n $(rss)")
        fi
    done
}

t0=$(date +%s.%N)
start_all 1
start_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
sleep 1
read -r full_rss full_pss <<<"$(rss)"
read -r full_anon full_file full_ssl <<<"$(breakdown "$caa_pid")"

# hold_measure BURST: one shim connection per sandbox, each having made one
# agent call and then BURST more at once; sets held_rss and held_pss while
# they are open. The helper also ends when its stdin (the coprocess pipe)
# closes.
hold_measure() {
    local held=
    coproc HOLD { "$go_bin" hold -burst "$1" "$work"/pods/*/agent.ttrpc 2>&1; }
    # shellcheck disable=SC2153 # set by coproc
    hold_pid=$HOLD_PID
    read -r -t 60 held <&"${HOLD[0]}" || true
    [ "$held" = "HELD $count" ] || die "holding shim connections failed: $held"
    sleep 1
    read -r held_rss held_pss <<<"$(rss)"
    kill -TERM "$hold_pid" 2>/dev/null || true
    wait "$hold_pid" 2>/dev/null || true
    hold_pid=
}
hold_measure 0
conn_rss=$held_rss conn_pss=$held_pss
hold_measure 64
burst_rss=$held_rss burst_pss=$held_pss
sleep 0.5
read -r closed_rss closed_pss <<<"$(rss)"

# ---- stop everything, check nothing is left --------------------------------------

# The pod VMs' processes, as "<pid> <start time>" lines.
vm_procs=$(cat "$work"/vms/*/forwarder.pid "$work"/vms/*/agent.pid 2>/dev/null || true)
t0=$(date +%s.%N)
stop_fails=0
stop_all || stop_fails=$?
stopped=1
stop_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
sleep 1
read -r after_rss after_pss <<<"$(rss)"

# What is left: entries, links, and pod VM processes still alive (same pid
# and start time, not a zombie).
left_procs() {
    local pid start n=0
    while read -r pid start; do
        if [ -z "$pid" ] || [ ! -r "/proc/$pid/stat" ]; then
            continue
        fi
        awk -v s="$start" '{ sub(/^.*\) /, ""); exit !($1 != "Z" && $20 == s) }' \
            "/proc/$pid/stat" 2>/dev/null && n=$((n + 1))
    done <<<"$vm_procs"
    echo "$n"
}
leftovers() {
    echo "$(count_entries "$work/pods") $(count_entries "$work/vms") $(count_entries "$work/netns")" \
        "$(ip -n "$node" -o link show | grep -vc ': lo:' || true) $(left_procs)"
}
read -r left_pods left_vms left_ns left_links left_procs <<<"$(leftovers)"
if [ "$left_pods$left_vms$left_ns$left_links$left_procs" != 00000 ]; then
    echo "memory bench: 1 s after StopVM: $left_pods pod dirs, $left_vms VM dirs," \
        "$left_ns namespaces, $left_links links, $left_procs processes; waiting up to 10 s" >&2
    for _ in $(seq 20); do
        sleep 0.5
        read -r left_pods left_vms left_ns left_links left_procs <<<"$(leftovers)"
        [ "$left_pods$left_vms$left_ns$left_links$left_procs" = 00000 ] && break
    done
    if [ "$left_pods$left_vms$left_ns$left_links$left_procs" != 00000 ]; then
        find "$work/pods" "$work/vms" "$work/netns" -mindepth 1 -maxdepth 1 -not -name '.*' \
            2>/dev/null | head -n 10 | sed 's/^/  left: /' >&2 || true
        while read -r pid start; do
            if [ -r "/proc/$pid/cmdline" ]; then
                echo "  left: pid $pid $(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-100)" >&2
            fi
        done <<<"$vm_procs"
    fi
fi
cycle1_curve=("${curve[@]}")

# A second cycle: what the first left behind in the daemon shows as growth.
if [ "$left_pods$left_vms$left_ns$left_links$left_procs" = 00000 ] && [ "$stop_fails" -eq 0 ]; then
    stopped=
    start_all 2
    sleep 1
    read -r full2_rss full2_pss <<<"$(rss)"
    vm_procs=$(cat "$work"/vms/*/forwarder.pid "$work"/vms/*/agent.pid 2>/dev/null || true)
    stop_all || stop_fails=$?
    stopped=1
    sleep 1
    read -r after2_rss after2_pss <<<"$(rss)"
    read -r left_pods left_vms left_ns left_links left_procs <<<"$(leftovers)"
else
    full2_rss=0 full2_pss=0 after2_rss=0 after2_pss=0
fi

stop_pid "$caa_pid"
caa_status=$stop_status
caa_pid=

# ---- report ------------------------------------------------------------------------

echo "cloud-api-adaptor resident memory, local provider, $count sandboxes started $batch at a time"
echo "(CreateVM + StartVM: ${start_s} s; StopVM of all: ${stop_s} s). KiB; Pss from smaps_rollup."
printf '  %-44s %9s %9s\n' "" VmRSS Pss
printf '  %-44s %9d %9d\n' "idle, after start" "$idle_rss" "$idle_pss"
printf '  %-44s %9d %9d\n' "idle, after start, DISABLE_TLS=true" "$notls_rss" "$notls_pss"
printf '  %-44s %9d %9d\n' "$count sandboxes running" "$full_rss" "$full_pss"
printf '  %-44s %9d %9d\n' "... and one shim connection to each" "$conn_rss" "$conn_pss"
printf '  %-44s %9d %9d\n' "... which then made 64 calls at once" "$burst_rss" "$burst_pss"
printf '  %-44s %9d %9d\n' "... shim connections closed" "$closed_rss" "$closed_pss"
printf '  %-44s %9d %9d\n' "all stopped" "$after_rss" "$after_pss"
printf '  %-44s %9d %9d\n' "$count running again (second cycle)" "$full2_rss" "$full2_pss"
printf '  %-44s %9d %9d\n' "all stopped again" "$after2_rss" "$after2_pss"
echo "idle VmRSS = RssAnon + RssFile: $idle_anon + $idle_file KiB, of which $idle_ssl KiB" \
    "libcrypto/libssl pages; without TLS: $notls_anon + $notls_file KiB, $notls_ssl KiB OpenSSL"
per=$(awk -v a="$full_rss" -v b="$idle_rss" -v n="$count" 'BEGIN { printf "%.1f", (a - b) / n }')
per_conn=$(awk -v a="$conn_rss" -v b="$idle_rss" -v n="$count" 'BEGIN { printf "%.1f", (a - b) / n }')
per_pss=$(awk -v a="$conn_pss" -v b="$idle_pss" -v n="$count" 'BEGIN { printf "%.1f", (a - b) / n }')
per_burst=$(awk -v a="$burst_rss" -v b="$idle_rss" -v n="$count" 'BEGIN { printf "%.1f", (a - b) / n }')
echo "with $count running: $full_anon + $full_file KiB, of which $full_ssl KiB libcrypto/libssl" \
    "pages (mapped at the first CreateVM when idle has none)"
echo "VmRSS (KiB) after each batch, sandboxes:KiB:"
printf '%s\n' "${cycle1_curve[@]}" | awk '{ printf "%s%d:%d", (NR % 8 == 1) ? "  " : " ", $1, $2
    if (NR % 8 == 0) print "" } END { if (NR % 8) print "" }'
marg=$(printf '%s\n' "${cycle1_curve[@]}" | awk -v n="$count" '
    { k[NR] = $1; v[NR] = $2 } END {
        # Growth per sandbox over the second half: one-off costs of the first
        # start (threadpool, allocator arenas) are out of it.
        h = 1; for (i = 1; i <= NR; i++) if (k[i] <= n / 2) h = i
        if (k[NR] > k[h]) printf "%.1f", (v[NR] - v[h]) / (k[NR] - k[h]); else print "n/a" }')
echo "per sandbox: ${per} KiB VmRSS running, ${per_conn} KiB with its shim connection" \
    "(Pss ${per_pss} KiB), ${per_burst} KiB after the burst; over the second half of the" \
    "starts alone: ${marg} KiB"
if [ "$after2_rss" -gt 0 ]; then
    printf 'second cycle against the first: VmRSS %+d KiB with %d running, %+d KiB when all are stopped\n' \
        "$((full2_rss - full_rss))" "$count" "$((after2_rss - after_rss))"
fi
# Judged on the larger of "with its shim connection" and "after the burst".
awk -v i="$idle_rss" -v gi="$goal_idle_kib" -v a="$per_conn" -v b="$per_burst" \
    -v gp="$goal_per_kib" 'BEGIN {
    p = a > b ? a : b
    printf "goal idle <= %d KiB: %d KiB, %s\n", gi, i, (i <= gi ? "met" : "MISSED")
    printf "goal per running sandbox <= %d KiB: %.1f KiB, %s\n", gp, p, (p <= gp ? "met" : "MISSED") }'
echo "after StopVM: $left_pods pod dirs, $left_vms VM dirs, $left_ns namespaces," \
    "$left_links links, $left_procs agent/forwarder processes left;" \
    "$stop_fails StopVM failures; cloud-api-adaptor exit status $caa_status"
if [ "$left_pods$left_vms$left_ns$left_links$left_procs" != 00000 ] || [ "$stop_fails" -ne 0 ] ||
    [ "$caa_status" -ne 0 ]; then
    die "something was left behind or failed"
fi
