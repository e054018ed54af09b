#!/usr/bin/env bash
# A node with 1,000 peer pods: cloud-api-adaptor (the production binary,
# default settings but PEERPODS_LIMIT_PER_NODE raised) with the local
# provider (a pod VM is a network namespace with the forwarder, mutual TLS,
# and the C test agent), each pod with a CNI-like network namespace on the
# node and its VXLAN tunnel. The pods are started in steps (PP_SCALE_STEPS,
# default 10 100 500 1000) the way the kata shim starts them (a connection
# per call: CreateVM with the pod's namespace, StartVM; agent calls on the
# pod's socket), and at each step every figure of the goals is printed
# against its goal, with the machine's floor beside it:
#
#   resident memory           VmRSS, with a shim connection held to every pod
#   CPU at rest               schedstat of every thread over PP_SCALE_REST_MS,
#                             no calls; and the wake-ups (context switches)
#   descriptors per pod       (held - idle) / pods, with a shim connection each
#   StartVM, own share, p99   StartVM less its waits for the provider
#                             (startq.h), from the daemon's log line, over
#                             PP_SCALE_CYCLES pods started and stopped one
#                             after another with the step's pods running
#                             (and, for information, over the step's own
#                             pods, started PP_SCALE_CONC at once)
#   tunnel setup+teardown p99 the library's calls in the node's namespace,
#                             with the step's tunnels (and nftables rules,
#                             links) present
#   agent call p99            64 streams of grpc.Health/Check, round robin
#                             over every pod, one connection per pod
#   SIGKILL + restart         until every pod's agent socket answers again
#
# and after the last step, StopVM of all, then a burst: every pod's
# CreateVM, then all their StartVM at once; all must succeed with the
# provider never holding more than PROVIDER_CONCURRENCY calls (the daemon's
# peak, and the creates seen in progress in the local provider's state
# directory). Then StopVM of all, and a check that nothing is left: pod
# directories, pod VM directories and namespaces, links and tunnels in the
# pod namespaces, nftables tables, processes.
#
# Floors, measured in the same run: memory and CPU of the same daemon idle
# with no pod; 2 descriptors (a pod's agent socket and its forwarder link
# are the least a pod can hold); a Version call on a connection of its own
# (the shim's cheapest round trip to the daemon, at the same step); the
# same tunnel setup+teardown in a namespace of its own with no other tunnel;
# the same agent load on the agents' sockets directly (no adaptor, no
# forwarder); the daemon's restart with no pods until Version answers.
#
# PP_SCALE_CHECK=1 is the reduced run of CI (tests/bench/scale.cmake): the
# same steps up to 100 pods by default, every check, no goal judged and no
# timing asserted.
#
# Environment: PP_BENCH_BUILD (build tree; default build-bench/, configured
# Release here), PP_BENCH_SKIP_BUILD (use the binaries as they are),
# PP_SCALE_STEPS, PP_SCALE_CONC (pods started at once during the ramp, 16),
# PP_SCALE_CYCLES (StartVMs one at a time at each step for the own share, 30),
# PP_SCALE_REST_MS (10000), PP_SCALE_LOAD_MS (5000), PP_SCALE_TUNNELS (200
# setup+teardown rounds), PP_SCALE_BOUND (PROVIDER_CONCURRENCY: unset, the
# default), PP_SCALE_KEEP (keep the work directory). Needs root.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=${PP_BENCH_BUILD:-$root/build-bench}
check=${PP_SCALE_CHECK:-}
if [ -n "$check" ]; then
    steps=${PP_SCALE_STEPS:-"10 100"}
    rest_ms=${PP_SCALE_REST_MS:-2000}
    load_ms=${PP_SCALE_LOAD_MS:-1000}
    tunnels=${PP_SCALE_TUNNELS:-20}
else
    steps=${PP_SCALE_STEPS:-"10 100 500 1000"}
    rest_ms=${PP_SCALE_REST_MS:-10000}
    load_ms=${PP_SCALE_LOAD_MS:-5000}
    tunnels=${PP_SCALE_TUNNELS:-200}
fi
conc=${PP_SCALE_CONC:-16}
bound=${PP_SCALE_BOUND:-}
top=0
for s in $steps; do
    [ "$s" -gt "$top" ] && top=$s
done

say() { echo "scale: $*" >&2; }
die() {
    say "$*"
    exit 1
}

[ "$(id -u)" -eq 0 ] || {
    echo "scale bench: skipped (needs root for network namespaces)"
    exit 77
}

# ---- build ------------------------------------------------------------------

if [ -z "${PP_BENCH_SKIP_BUILD:-}" ]; then
    if [ ! -f "$build/CMakeCache.txt" ]; then
        cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    fi
    if ! log=$(cmake --build "$build" -j2 --target cloud-api-adaptor agent-protocol-forwarder \
        process-user-data pp-test-agent pp-scale 2>&1); then
        echo "$log"
        die "build failed"
    fi
fi
bin=$build/bin
drv=$build/tests/bench/scale/pp-scale
for b in "$bin/cloud-api-adaptor" "$bin/agent-protocol-forwarder" "$bin/process-user-data" \
    "$bin/pp-test-agent" "$drv"; do
    [ -x "$b" ] || die "$b is missing; build it first"
done

# ---- what this run makes, and its removal on any exit --------------------------

P=ppsc$$
node=$P-n     # the node: the daemon's network namespace
bare=$P-b     # a node with nothing on it, for the tunnel floor
work=$(mktemp -d "${TMPDIR:-/tmp}/ppsc.XXXXXX") # short: unix socket paths live under it
# A tmpfs, as /run is where the daemon keeps its pods: a record's fsync is
# then no disk write, as on a node.
mount -t tmpfs -o mode=0700,size=4g "ppsc$$" "$work"
mounted=1
caa_pid=
watch_pid=
made=0 # pod namespaces made: $P-p1 .. $P-p$made
ids=()

kill_pidfile() { # "<pid> <start time>": killed if it is still that process
    local pid start
    read -r pid start <"$1" 2>/dev/null || return 0
    [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 0
    [ "$(awk '{ print $22 }' "/proc/$pid/stat" 2>/dev/null)" = "$start" ] || return 0
    kill -KILL "$pid" 2>/dev/null || true
}

# Whatever runs in or names the work directory (pod VM processes whose
# pidfile was not written yet).
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

# SIGTERM, then SIGKILL after 30 s; sets stop_status.
stop_pid() {
    local pid=$1
    stop_status=0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid did not exit 30 s after SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || stop_status=$?
}

del_namespaces() {
    ip netns list 2>/dev/null | awk '{ print $1 }' | grep "^$P-" | sed 's/^/netns del /' \
        >"$work/del.batch" || true
    [ -s "$work/del.batch" ] && ip -force -b "$work/del.batch" 2>/dev/null
    return 0
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    perf_stop
    if [ -n "$watch_pid" ]; then
        exec 8>&-
        wait "$watch_pid" 2>/dev/null
    fi
    if [ -n "$caa_pid" ] && kill -0 "$caa_pid" 2>/dev/null && [ -s "$work/all.list" ]; then
        say "stopping the pods left running"
        timeout 300 "$drv" stop -socket "$work/hv.sock" -list "$work/all.list" -conc 32 \
            >/dev/null 2>&1
    fi
    [ -n "$caa_pid" ] && stop_pid "$caa_pid"
    for f in "$work"/vms/*/agent.pid "$work"/vms/*/forwarder.pid; do
        [ -f "$f" ] && kill_pidfile "$f"
    done
    kill_leftovers
    if [ -d "$work/netns" ]; then
        for m in "$work"/netns/*; do
            [ -e "$m" ] && umount -l "$m" 2>/dev/null
        done
        umount -l "$work/netns" 2>/dev/null
    fi
    del_namespaces
    restore_neigh
    if [ -n "${PP_SCALE_KEEP:-}" ]; then
        say "kept $work (a tmpfs: umount it after)"
    else
        [ -n "${mounted:-}" ] && umount -l "$work"
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- the kernel's neighbour tables ------------------------------------------------

# The kernel's ARP and NDP tables are one for all namespaces, and refuse
# entries past gc_thresh3 (1,024 by default): "neighbor table overflow",
# and packets to a new neighbour are dropped. Each pod here holds about
# four (its gateway in its namespace, its address on the node, and both
# ends of its pod VM's link), so 1,000 pods need about 4,000, as a node
# running that many pods raises its thresholds. Raised for the run (never
# lowered) and put back at the end; the entries are counted at each step.
neigh_saved=()
raise_neigh() {
    local want=$((8 * top + 2048)) f cur k v
    for f in /proc/sys/net/ipv4/neigh/default /proc/sys/net/ipv6/neigh/default; do
        [ -w "$f/gc_thresh3" ] || continue
        for k in gc_thresh3:$want gc_thresh2:$((want / 2)); do
            v=${k#*:}
            k=${k%%:*}
            cur=$(cat "$f/$k")
            [ "$cur" -lt "$v" ] || continue
            neigh_saved+=("$f/$k:$cur")
            echo "$v" >"$f/$k"
        done
    done
}
restore_neigh() {
    local e
    # In the reverse order: gc_thresh2 goes back before gc_thresh3.
    for ((e = ${#neigh_saved[@]} - 1; e >= 0; e--)); do
        echo "${neigh_saved[$e]##*:}" >"${neigh_saved[$e]%:*}" 2>/dev/null
    done
    neigh_saved=()
}
neigh_entries() { # the ARP table's entries, all namespaces
    local e
    e=$(awk 'NR == 2 { print $1 }' /proc/net/stat/arp_cache)
    echo $((16#$e))
}

# ---- the node and the pods' namespaces ---------------------------------------

# A node: an uplink with the node's IP and a default route, as a worker
# node has.
make_node() {
    ip netns add "$1"
    ip -n "$1" -b - <<EOF
link set lo up
link add uplink type veth peer name uplink-peer
addr add 198.19.0.1/24 dev uplink
link set uplink up
link set uplink-peer up
route add default via 198.19.0.254 dev uplink
EOF
}

# pod_ip I: the pod's address; its gateway is .1 of the same /24.
pod_net() {
    echo "10.$((100 + $1 / 250)).$(($1 % 250))"
}

# make_pods FROM TO: CNI-like pod namespaces $P-p<i>, each with `eth0`
# (a veth whose other end, c<i>, is on the node), the pod IP, a gateway.
make_pods() {
    local i net
    for i in $(seq "$1" "$2"); do echo "netns add $P-p$i"; done >"$work/b1"
    ip -b "$work/b1"
    made=$2
    for i in $(seq "$1" "$2"); do
        echo "link add c$i netns $node type veth peer name eth0 netns $P-p$i"
    done >"$work/b2"
    ip -b "$work/b2"
    for i in $(seq "$1" "$2"); do
        net=$(pod_net "$i")
        printf 'link set lo up\naddr add %s.5/24 dev eth0\nlink set eth0 up\nroute add default via %s.1\n' \
            "$net" "$net" | ip -n "$P-p$i" -b -
        printf 'addr add %s.1/24 dev c%d\nlink set c%d up\n' "$net" "$i" "$i"
    done >"$work/b3"
    ip -n "$node" -b "$work/b3"
}

# pod_list FROM TO: "<id> <pod> <netns>" lines.
pod_list() {
    local i
    for i in $(seq "$1" "$2"); do
        printf '%s p%d /run/netns/%s-p%d\n' "${ids[$i]}" "$i" "$P" "$i"
    done
}

# ---- the daemon -----------------------------------------------------------------

start_daemon() {
    local -a env=(
        PEERPODS_LIMIT_PER_NODE=$((top + 10))
        REMOTE_HYPERVISOR_ENDPOINT="$work/hv.sock"
        PODS_DIR="$work/pods"
        LOCAL_STATE_DIR="$work/vms"
        LOCAL_NETNS_DIR="$work/netns"
    )
    [ -n "$bound" ] && env+=(PROVIDER_CONCURRENCY="$bound")
    # Only the network namespace: the pod VMs' namespaces are mounted in
    # the host's mount namespace, so they outlive a killed daemon.
    nsenter --net="/run/netns/$node" env -u PP_AGENT_RECORD -u PP_AGENT_DELAY_MS \
        -u PP_AGENT_FAIL_METHOD "${env[@]}" "$bin/cloud-api-adaptor" >>"$work/caa.log" 2>&1 &
    caa_pid=$!
}

serving() { # extra arguments for pp-scale serving
    "$drv" serving -hv "$work/hv.sock" -timeout 300000 "$@"
}

metric() { # NAME: its value from /metrics
    nsenter --net="/run/netns/$node" curl -s --max-time 10 http://127.0.0.1:8000/metrics |
        awk -v n="$1" '$1 == n { print $2 }'
}

# ---- measuring ----------------------------------------------------------------

# With PP_SCALE_PERF (a directory), each phase of each step is profiled:
# `perf record -g` of the daemon into <dir>/<phase>.<pods>.data.
perf_pid=
perf_start() { # phase
    [ -n "${PP_SCALE_PERF:-}" ] || return 0
    mkdir -p "$PP_SCALE_PERF"
    perf record -q -g -p "$caa_pid" -o "$PP_SCALE_PERF/$1.data" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5
}
perf_stop() {
    [ -n "$perf_pid" ] || return 0
    kill -INT "$perf_pid" 2>/dev/null
    wait "$perf_pid" 2>/dev/null || true
    perf_pid=
}

val() { # FILE KEY
    awk -v k="$2" '$1 == k { print $2; exit }' "$1"
}

# own_of LIST: the daemon's own share (ms) of the StartVM of each sandbox of
# LIST, from its log line, sorted.
own_of() {
    cut -d' ' -f1 "$1" >"$work/ids.tmp"
    grep -F -f "$work/ids.tmp" "$work/caa.log" |
        sed -n 's/.*: running, .*, \([0-9.]*\) ms the daemon.s own).*/\1/p' | sort -n
}
p99() { # FILE of sorted numbers
    awk '{ v[NR] = $1 } END { k = int(NR * 0.99 + 0.999999); if (k < 1) k = 1; print v[k] }' "$1"
}

# Agent sockets of the pods 1..N, and the agents' own sockets in the pod VMs.
sockets() {
    local i
    for i in $(seq 1 "$1"); do echo "$work/pods/${ids[$i]}/agent.ttrpc"; done
}
agent_sockets() { # the VM dir is the instance's name, podvm-<pod>-<first 8 of the id>
    local i
    for i in $(seq 1 "$1"); do echo "$work/vms/podvm-p$i-${ids[$i]:0:8}/agent.sock"; done
}

# ---- start ---------------------------------------------------------------------

raise_neigh
make_node "$node"
make_node "$bare"
ip netns add "$P-bp"
ip -n "$P-bp" -b - <<EOF
link set lo up
EOF
ip link add "$P-x" netns "$bare" type veth peer name eth0 netns "$P-bp"
ip -n "$P-bp" -b - <<EOF
addr add 10.99.0.5/24 dev eth0
link set eth0 up
route add default via 10.99.0.1
EOF
ip -n "$bare" -b - <<EOF
addr add 10.99.0.1/24 dev $P-x
link set $P-x up
EOF
ip netns add "$P-xp" # the tunnel probe's pod on the loaded node
ip link add xprobe netns "$node" type veth peer name eth0 netns "$P-xp"
ip -n "$P-xp" -b - <<EOF
link set lo up
addr add 10.98.0.5/24 dev eth0
link set eth0 up
route add default via 10.98.0.1
EOF
ip -n "$node" -b - <<EOF
addr add 10.98.0.1/24 dev xprobe
link set xprobe up
EOF

# Probe pods: started and stopped one after another at each step, for
# the daemon's own share of a StartVM with the step's pods running.
probes=4
cycles=${PP_SCALE_CYCLES:-$([ -n "$check" ] && echo 5 || echo 30)}
for k in $(seq 1 "$probes"); do
    net="10.97.$k"
    ip netns add "$P-q$k"
    ip link add "q$k" netns "$node" type veth peer name eth0 netns "$P-q$k"
    printf 'link set lo up\naddr add %s.5/24 dev eth0\nlink set eth0 up\nroute add default via %s.1\n' \
        "$net" "$net" | ip -n "$P-q$k" -b -
    printf 'addr add %s.1/24 dev q%d\nlink set q%d up\n' "$net" "$k" "$k" | ip -n "$node" -b -
done

for i in $(seq 1 "$top"); do
    ids[$i]=$(printf '%08x%04x%020d' "$$" "$i" "$i")
done
pod_list 1 "$top" >"$work/all.list"

load=$(cut -d' ' -f1-3 /proc/loadavg)
say "work directory $work; load average $load; $(nproc) CPUs"

# The restart floor: the daemon with no pod, until Version answers.
start_daemon
serving >"$work/floor.serve" || die "the daemon did not start: $(tail -n 5 "$work/caa.log")"
sleep 1
"$drv" rest -pid "$caa_pid" -ms "$rest_ms" >"$work/idle.rest"
t=$(date +%s%N)
kill -KILL "$caa_pid"
wait "$caa_pid" 2>/dev/null || true
start_daemon
serving -since "$t" >"$work/floor.restart" || die "the daemon did not restart"
sleep 1
idle_rss=$(val "$work/idle.rest" rss_kib)
idle_fds=$(val "$work/idle.rest" fds)
idle_cpu=$(val "$work/idle.rest" rest_cpu_pct)
idle_wake=$(val "$work/idle.rest" rest_wakeups_per_s)
floor_restart=$(val "$work/floor.restart" hv_serving_ms)
nofile=$(awk '/^Max open files/ { print $4 }' "/proc/$caa_pid/limits")
say "idle: VmRSS $idle_rss KiB, $idle_fds descriptors (soft limit $nofile), CPU $idle_cpu %," \
    "$idle_wake wake-ups/s; restart with no pod: $floor_restart ms"

# ---- the ramp --------------------------------------------------------------------

declare -A R # R[step,key]
prev=0
prev_fds=$idle_fds
for n in $steps; do
    [ "$n" -gt "$prev" ] || continue
    say "=== $n pods (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    make_pods $((prev + 1)) "$n"
    pod_list $((prev + 1)) "$n" >"$work/step.list"
    t0=$(date +%s.%N)
    perf_start "up.$n"
    if ! "$drv" up -socket "$work/hv.sock" -list "$work/step.list" -conc "$conc" \
        >"$work/up.$n" 2>"$work/up.$n.err"; then
        cat "$work/up.$n.err" >&2
        tail -n 30 "$work/caa.log" >&2
        die "starting pods $((prev + 1)) to $n failed"
    fi
    perf_stop
    say "started $((n - prev)) pods in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
    # The daemon's own share of each StartVM of the ramp (16 at once), and
    # of StartVMs one at a time with the step's pods running.
    own_of "$work/step.list" >"$work/ramp.$n"
    [ "$(wc -l <"$work/ramp.$n")" -eq $((n - prev)) ] ||
        die "found the own share of $(wc -l <"$work/ramp.$n") of $((n - prev)) StartVM calls in the log"
    R[$n,own_ramp]=$(p99 "$work/ramp.$n")
    for c in $(seq 1 "$cycles"); do
        k=$(((c - 1) % probes + 1))
        printf '%08x%04x%08x%012d q%d /run/netns/%s-q%d\n' "$$" "$n" "$c" 0 "$k" "$P" "$k"
    done >"$work/cycle.list"
    if ! "$drv" cycle -socket "$work/hv.sock" -list "$work/cycle.list" >"$work/cycle.$n" \
        2>"$work/cycle.$n.err"; then
        cat "$work/cycle.$n.err" >&2
        die "StartVM one at a time failed at $n pods"
    fi
    own_of "$work/cycle.list" >"$work/own.$n"
    R[$n,own]=$(p99 "$work/own.$n")
    R[$n,own50]=$(awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }' "$work/own.$n")
    "$drv" version -socket "$work/hv.sock" -count 200 >"$work/version.$n"
    R[$n,version]=$(val "$work/version.$n" version_p99_ms)
    sleep 2

    if [ -n "${PP_SCALE_HOOK:-}" ]; then
        SCALE_PID=$caa_pid SCALE_WORK=$work SCALE_NODE=$node SCALE_PODS=$n \
            sh -c "$PP_SCALE_HOOK" >&2 || say "the hook failed"
    fi
    # Agent calls: a connection to every pod (the shims'), then 64 streams;
    # then the same on the agents directly.
    sockets "$n" >"$work/socks.$n"
    agent_sockets "$n" >"$work/agents.$n"
    perf_start "load.$n"
    if ! "$drv" load -list "$work/socks.$n" -conc 64 -warmup 1000 -duration "$load_ms" \
        -pid "$caa_pid" >"$work/load.$n" 2>"$work/load.$n.err"; then
        cat "$work/load.$n.err" >&2
        die "agent calls through the adaptor failed at $n pods"
    fi
    perf_stop
    "$drv" load -list "$work/agents.$n" -conc 64 -warmup 1000 -duration "$load_ms" \
        >"$work/direct.$n" 2>"$work/direct.$n.err" || die "agent calls to the agents failed"
    R[$n,rss]=$(val "$work/load.$n" held_rss_kib)
    R[$n,fds]=$(val "$work/load.$n" held_fds)
    R[$n,fdstep]=$(awk -v a="${R[$n,fds]}" -v b="$prev_fds" -v k=$((n - prev)) 'BEGIN { printf "%.2f", (a - b) / k }')
    prev_fds=${R[$n,fds]}
    R[$n,agent]=$(val "$work/load.$n" agent_p99_ms)
    R[$n,agent_rate]=$(val "$work/load.$n" agent_calls_per_s)
    R[$n,agent_cpu]=$(val "$work/load.$n" daemon_cpu_us_per_call)
    R[$n,direct]=$(val "$work/direct.$n" agent_p99_ms)

    # Tunnels: setup + teardown beside the step's, and on an empty node.
    nsenter --net="/run/netns/$node" "$drv" tunnel -netns "/run/netns/$P-xp" -remote 198.51.100.7 \
        -count "$tunnels" >"$work/tunnel.$n" 2>&1 || die "tunnel probe: $(cat "$work/tunnel.$n")"
    nsenter --net="/run/netns/$bare" "$drv" tunnel -netns "/run/netns/$P-bp" -remote 198.51.100.7 \
        -count "$tunnels" >"$work/tunnel0.$n" 2>&1 || die "tunnel floor: $(cat "$work/tunnel0.$n")"
    R[$n,tunnel]=$(val "$work/tunnel.$n" tunnel_p99_ms)
    R[$n,tunnel0]=$(val "$work/tunnel0.$n" tunnel_p99_ms)
    R[$n,neigh]=$(neigh_entries)
    R[$n,rules]=$(nsenter --net="/run/netns/$node" nft -a list table inet peerpod 2>/dev/null |
        grep -c 'notrack' || true)

    # SIGKILL and restart: until every pod's agent socket answers again.
    t=$(date +%s%N)
    kill -KILL "$caa_pid"
    wait "$caa_pid" 2>/dev/null || true
    start_daemon
    perf_start "restart.$n"
    if ! serving -since "$t" -list "$work/socks.$n" >"$work/restart.$n" 2>&1; then
        cat "$work/restart.$n" >&2
        die "not every pod served again after the restart at $n pods"
    fi
    perf_stop
    R[$n,restart]=$(val "$work/restart.$n" pods_serving_ms)
    R[$n,restart_hv]=$(val "$work/restart.$n" hv_serving_ms)

    # At rest, once the restart's work is done: no calls at all.
    sleep 3
    "$drv" rest -pid "$caa_pid" -ms "$rest_ms" >"$work/rest.$n"
    R[$n,cpu]=$(val "$work/rest.$n" rest_cpu_pct)
    R[$n,wake]=$(val "$work/rest.$n" rest_wakeups_per_s)
    say "$n pods: rss ${R[$n,rss]} KiB, fds ${R[$n,fds]}, cpu ${R[$n,cpu]} %," \
        "own p99 ${R[$n,own]} ms, tunnel p99 ${R[$n,tunnel]} ms, agent p99 ${R[$n,agent]} ms," \
        "restart ${R[$n,restart]} ms"
    prev=$n
done

# ---- every pod stopped, then a burst from nothing ----------------------------------

stop_all() { # the pods of all.list up to $top
    "$drv" stop -socket "$work/hv.sock" -list "$work/all.list" -conc 32 >"$work/stop.$1" \
        2>"$work/stop.$1.err" || {
        cat "$work/stop.$1.err" >&2
        die "StopVM failed ($1)"
    }
}
stop_all ramp
"$drv" create -socket "$work/hv.sock" -list "$work/all.list" -conc 32 >"$work/burst.create" \
    2>"$work/burst.create.err" || die "CreateVM for the burst failed: $(head -n 5 "$work/burst.create.err")"
# The daemon's peak counts from its start: restart it so the peak is the burst's.
stop_pid "$caa_pid"
start_daemon
serving >/dev/null || die "the daemon did not start again"
exec 8> >(exec "$drv" watch -dir "$work/vms" >"$work/burst.watch")
watch_pid=$!
perf_start burst
if ! "$drv" start -socket "$work/hv.sock" -list "$work/all.list" -conc 0 >"$work/burst" \
    2>"$work/burst.err"; then
    head -n 20 "$work/burst.err" >&2
    die "the burst of $top StartVM calls failed"
fi
perf_stop
exec 8>&-
wait "$watch_pid" 2>/dev/null || true
watch_pid=
burst_ok=$(grep -c '^POD ' "$work/burst" || true)
burst_wall=$(val "$work/burst" wall_ms)
peak=$(metric caa_provider_calls_in_flight_peak)
seen=$(val "$work/burst.watch" creates_in_progress_max)
effective_bound=${bound:-$("$bin/cloud-api-adaptor" -list-settings 2>/dev/null | awk '$1 == "PROVIDER_CONCURRENCY" { print $NF }')}
grep -h 'running, ' "$work/caa.log" | tail -n "$top" |
    sed -n 's/.*StartVM \([0-9.]*\) ms, \([0-9.]*\) ms of it waiting.*, \([0-9.]*\) ms the daemon.s own).*/\3/p' |
    sort -n >"$work/own.burst"
burst_own=$(p99 "$work/own.burst")
stop_all burst

# ---- nothing left ----------------------------------------------------------------------

left=()
sleep 1
n=$(find "$work/pods" -mindepth 1 -maxdepth 1 -not -name '.*' | wc -l)
[ "$n" -eq 0 ] || left+=("$n pod directories")
n=$(find "$work/pods/.indexes" -mindepth 1 | wc -l)
[ "$n" -eq 0 ] || left+=("$n pod indexes")
n=$(find "$work/vms" -mindepth 1 -maxdepth 1 | wc -l)
[ "$n" -eq 0 ] || left+=("$n pod VM directories")
n=$(find "$work/netns" -mindepth 1 -maxdepth 1 | wc -l)
[ "$n" -eq 0 ] || left+=("$n pod VM namespaces")
n=$(ip -n "$node" -o link show | grep -c 'pplv' || true)
[ "$n" -eq 0 ] || left+=("$n pod VM links")
n=0
for i in $(seq 1 "$top"); do
    ip -n "$P-p$i" -o link show | grep -q vxlan1 && n=$((n + 1))
    tc -n "$P-p$i" qdisc show dev eth0 | grep -q ingress && n=$((n + 1))
done
[ "$n" -eq 0 ] || left+=("$n tunnels or qdiscs in pod namespaces")
nsenter --net="/run/netns/$node" nft list table inet peerpod >/dev/null 2>&1 &&
    left+=("the nftables table")
n=$(pgrep -f -- "$work/" | grep -vcx "$caa_pid" || true)
[ "$n" -eq 0 ] || left+=("$n processes")
stop_pid "$caa_pid"
caa_status=$stop_status
caa_pid=
sanitizer=$(grep -c -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$work/caa.log" || true)

# ---- report ---------------------------------------------------------------------------

echo
echo "cloud-api-adaptor with N running pods (local provider, mutual TLS, VXLAN tunnels);"
echo "load average at the start $load, at the end $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs"
printf '%-46s' "figure \\ pods"
for n in $steps; do printf ' %10s' "$n"; done
printf '   %-14s %s\n' "goal" "floor"
row() { # label key goal floor [format]
    printf '%-46s' "$1"
    for n in $steps; do printf ' %10s' "${R[$n,$2]:-}"; done
    printf '   %-14s %s\n' "$3" "$4"
}
derive() { # key expr(n, step values) -> R[n,key]
    local n
    for n in $steps; do
        R[$n,$1]=$(awk -v n="$n" -v a="${R[$n,$2]:-0}" -v b="${R[$n,$3]:-0}" -v i="$4" "BEGIN { $5 }")
    done
}
derive rss_mib rss rss "$idle_rss" 'printf "%.1f", a / 1024'
derive fdpp fds fds "$idle_fds" 'printf "%.2f", (a - i) / n'
derive cpu_f cpu cpu 0 'printf "%.3f", a'
derive wake_f wake wake 0 'printf "%.1f", a'
first=${steps%% *}
derive own_r own own "${R[$first,own]}" 'printf "%.2f", a / (i > 0 ? i : 1)'
derive agent_r agent agent "${R[$first,agent]}" 'printf "%.2f", a / (i > 0 ? i : 1)'
row "resident memory, MiB (shim connections held)" rss_mib "<= 128" \
    "$(awk -v a="$idle_rss" 'BEGIN { printf "%.1f idle, no pod", a / 1024 }')"
row "CPU at rest, % of one core" cpu_f "< 1" "$idle_cpu idle, no pod"
row "  wake-ups at rest, per s" wake_f "-" "$idle_wake idle, no pod"
row "descriptors per running pod, over the step" fdstep "<= 3" "3: listener, forwarder link, the shim's"
row "  ... all the daemon's over the pods" fdpp "-" "-"
row "StartVM own share p99, ms (one at a time)" own "<= 10" "Version p99 below"
row "  ... against its value at $first pods" own_r "<= 2" "-"
row "  ... p50, ms" own50 "-" "-"
row "  ... p99 during the ramp, $conc at once, ms" own_ramp "-" "-"
row "  Version p99 on a new connection, ms" version "-" "-"
row "tunnel setup+teardown p99, ms" tunnel "<= 5" "no other tunnel below"
row "  the same on an empty node, ms" tunnel0 "-" "-"
row "  nftables notrack rules on the node" rules "-" "-"
row "  ARP entries of the machine (all namespaces)" neigh "-" \
    "gc_thresh3 $(cat /proc/sys/net/ipv4/neigh/default/gc_thresh3)"
row "agent call p99, 64 streams, ms" agent "-" "the agents directly below"
row "  ... against its value at $first pods" agent_r "<= 2" "-"
row "  the agents directly, p99, ms" direct "-" "-"
row "  calls/s through the adaptor" agent_rate "-" "-"
row "  the daemon's CPU per call, us" agent_cpu "-" "-"
row "SIGKILL + restart: all pods serving, ms" restart "<= 5000" "$floor_restart (no pod, Version)"
row "  ... the hypervisor socket answering, ms" restart_hv "-" "-"
echo
echo "burst: $top StartVM at once from nothing: $burst_ok of $top succeeded in $burst_wall ms;" \
    "the provider held at most $peak calls (daemon's peak), $seen creates seen in progress," \
    "bound PROVIDER_CONCURRENCY=$effective_bound; own share p99 $burst_own ms"
echo "after StopVM: ${left[*]:-nothing left}; cloud-api-adaptor exit status $caa_status;" \
    "$sanitizer sanitizer reports"

fail=0
[ "$burst_ok" -eq "$top" ] || fail=1
awk -v p="$peak" -v b="$effective_bound" -v s="$seen" 'BEGIN { exit !(b == 0 || (p <= b && s <= b)) }' || {
    say "the provider held more calls than the bound"
    fail=1
}
[ ${#left[@]} -eq 0 ] || fail=1
[ "$caa_status" -eq 0 ] || fail=1
[ "$sanitizer" -eq 0 ] || fail=1
if [ -n "$check" ]; then
    # The burst must have been one: the bound reached, not just respected.
    awk -v p="$peak" -v b="$effective_bound" -v t="$top" 'BEGIN { exit !(b == 0 || b >= t || p == b) }' || {
        say "the burst never filled the bound ($peak of $effective_bound)"
        fail=1
    }
fi
if [ "$fail" -ne 0 ]; then
    [ "$sanitizer" -eq 0 ] || grep -m 20 -A 20 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$work/caa.log" >&2
    die "failed"
fi
