#!/usr/bin/env bash
# Pod tunnel benchmark, in network namespaces made here and removed after
# (names `ppbn<pid>-*`, addresses 198.18.0.0/16 and 10.244.0.0/16 inside
# them only):
#
#   (a) tunnel setup + teardown per pod, node side and VM side, in process
#       through the library with fork/exec forbidden (pp-net-bench): p50,
#       p99, mean; goal node setup+teardown p99 < 5 ms;
#   (b) single-stream TCP throughput and 64-byte TCP round trips, node ->
#       pod in its VM through the tunnel (bridge, veth, tc redirect, VXLAN
#       over a veth underlay), against a plain veth pair between two
#       namespaces with the same MTU (1450), in the same run; ratios.
#       The goal row is node -> pod with the node's address on a bridge
#       (ul0) that the VM's veth is a port of. Two more rows say where the
#       cost is: the same tunnel the other way (pod in VM -> node), and
#       node -> pod over a second node whose VM link is a routed veth with
#       no bridge. A Linux bridge cannot pass VXLAN-encapsulated GSO
#       packets on (it has no encapsulation offload), so on the goal path
#       every 64 KiB send is cut into MTU-sized frames in software on the
#       node, and each frame then crosses the bridge, the veth, the VM's
#       IP/UDP receive, decapsulation and GRO on its own; the other two
#       paths carry whole GSO packets end to end.
#
# Environment: PP_BENCH_BUILD (build tree; default build-bench/, configured
# Release here when missing), PP_BENCH_NET_ITERATIONS (300),
# PP_BENCH_DURATION_MS (3000, per throughput run), PP_BENCH_NET_RR (20000).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=${PP_BENCH_BUILD:-$root/build-bench}
iterations=${PP_BENCH_NET_ITERATIONS:-300}
duration_ms=${PP_BENCH_DURATION_MS:-3000}
rr_count=${PP_BENCH_NET_RR:-20000}

if [ "$(id -u)" -ne 0 ]; then
    echo "net bench: skipped (needs root for network namespaces)"
    exit 0
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
if ! log=$(cmake --build "$build" -j"$(nproc)" --target pp-net-bench pp-net-probe pp-net-tool 2>&1); then
    echo "$log"
    echo "net bench: build failed" >&2
    exit 1
fi
bench=$build/tests/bench/net/pp-net-bench
probe=$build/tests/pp-net-probe
tool=$build/tests/pp-net-tool

P=ppbn$$
work=$(mktemp -d "${TMPDIR:-/tmp}/pp-bench-net.XXXXXX")
servers=()
cleanup() {
    for pid in "${servers[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# cni_pod NODE POD: a pod bridge in NODE and a pod namespace POD on it, as
# a CNI plugin makes them (10.244.1.11/24, gateway 10.244.1.1, MTU 1450).
cni_pod() {
    local n="ip -n $1"
    $n link add cni0 type bridge
    $n addr add 10.244.1.1/24 dev cni0
    $n link set cni0 mtu 1450 up
    ip netns add "$2"
    $n link add vp mtu 1450 type veth peer name eth0 mtu 1450 netns "$2"
    $n link set vp master cni0 up
    ip -n "$2" link set lo up
    ip -n "$2" addr add 10.244.1.11/24 dev eth0
    ip -n "$2" link set eth0 up
    ip -n "$2" route add default via 10.244.1.1 dev eth0
}

# Node with an underlay bridge and a pod bridge; one pod; one VM.
ip netns add "$P-node"
N="ip -n $P-node"
$N link set lo up
$N link add ul0 type bridge
$N addr add 198.18.0.1/16 dev ul0
$N link set ul0 up
$N route add default via 198.18.255.254 dev ul0 onlink
ip netns add "$P-vm"
$N link add vmu type veth peer name ens1 netns "$P-vm"
$N link set vmu master ul0 up
ip -n "$P-vm" link set lo up
ip -n "$P-vm" addr add 198.18.0.11/16 dev ens1
ip -n "$P-vm" link set ens1 up
cni_pod "$P-node" "$P-pod"
# A second node whose VM link is routed, with no bridge under the tunnel.
ip netns add "$P-node2"
N2="ip -n $P-node2"
$N2 link set lo up
ip netns add "$P-vm2"
$N2 link add vmu type veth peer name ens1 netns "$P-vm2"
$N2 addr add 198.19.0.1/16 dev vmu
$N2 link set vmu up
$N2 route add default via 198.19.255.254 dev vmu onlink
ip -n "$P-vm2" link set lo up
ip -n "$P-vm2" addr add 198.19.0.11/16 dev ens1
ip -n "$P-vm2" link set ens1 up
cni_pod "$P-node2" "$P-pod2"
# The baseline: a plain veth pair.
ip netns add "$P-a"
ip netns add "$P-b"
ip -n "$P-a" link add v mtu 1450 type veth peer name v mtu 1450 netns "$P-b"
ip -n "$P-a" addr add 10.244.200.1/24 dev v
ip -n "$P-b" addr add 10.244.200.2/24 dev v
ip -n "$P-a" link set v up
ip -n "$P-b" link set v up
ip -n "$P-a" link set lo up
ip -n "$P-b" link set lo up

echo "--- (a) setup/teardown"
"$bench" "/run/netns/$P-node" "/run/netns/$P-pod" "/run/netns/$P-vm" "$P-vmpod" 198.18.0.11 \
    "$iterations"

echo "--- (b) data path: tunnel vs plain veth pair"
"$tool" inspect --pod-netns "/run/netns/$P-pod" --host-netns "/run/netns/$P-node" --index 0 \
    >"$work/pod.json"
"$tool" node-setup --pod-netns "/run/netns/$P-pod" --host-netns "/run/netns/$P-node" \
    --remote 198.18.0.11 --config "$work/pod.json"
"$tool" vm-setup --host-netns "/run/netns/$P-vm" --pod-ns-name "$P-vmpod" --config "$work/pod.json"

# `ip netns exec` execs the server, so $! is the server itself.
"$tool" inspect --pod-netns "/run/netns/$P-pod2" --host-netns "/run/netns/$P-node2" --index 1 \
    >"$work/pod2.json"
"$tool" node-setup --pod-netns "/run/netns/$P-pod2" --host-netns "/run/netns/$P-node2" \
    --remote 198.19.0.11 --config "$work/pod2.json"
"$tool" vm-setup --host-netns "/run/netns/$P-vm2" --pod-ns-name "$P-vmpod2" --config "$work/pod2.json"

readies=()
# Servers: `ip netns exec` execs them, so $! is the server itself.
for s in vmpod node vmpod2 a b; do
    ip netns exec "$P-$s" "$probe" serve 5001 "$s" "$work/ready-$s" >"$work/$s.log" 2>&1 &
    servers+=($!)
    readies+=("$work/ready-$s")
done
for _ in $(seq 50); do
    all=1
    for f in "${readies[@]}"; do [ -e "$f" ] || all=0; done
    [ "$all" = 1 ] && break
    sleep 0.1
done
ip netns exec "$P-node" ping -c 1 -W 2 10.244.1.11 >/dev/null
ip netns exec "$P-node2" ping -c 1 -W 2 10.244.1.11 >/dev/null

seconds=$(((duration_ms + 999) / 1000))
field() { awk -v k="$1" '{for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}'; }
# A short warm-up of each path, discarded.
ip netns exec "$P-node" "$probe" stream 10.244.1.11 5001 1 >/dev/null
ip netns exec "$P-a" "$probe" stream 10.244.200.2 5001 1 >/dev/null
tun_gbps=$(ip netns exec "$P-node" "$probe" stream 10.244.1.11 5001 "$seconds" | field gbps)
veth_gbps=$(ip netns exec "$P-a" "$probe" stream 10.244.200.2 5001 "$seconds" | field gbps)
rev_gbps=$(ip netns exec "$P-vmpod" "$probe" stream 10.244.1.1 5001 "$seconds" | field gbps)
vethrev_gbps=$(ip netns exec "$P-b" "$probe" stream 10.244.200.1 5001 "$seconds" | field gbps)
routed_gbps=$(ip netns exec "$P-node2" "$probe" stream 10.244.1.11 5001 "$seconds" | field gbps)
tun_rr=$(ip netns exec "$P-node" "$probe" rr 10.244.1.11 5001 "$rr_count")
veth_rr=$(ip netns exec "$P-a" "$probe" rr 10.244.200.2 5001 "$rr_count")

printf "  %-24s %10s %10s %8s\n" "" tunnel veth ratio
row() {
    printf "  %-24s %10.2f %10.2f %8.2f\n" "$1" "$2" "$3" \
        "$(awk -v a="$2" -v b="$3" 'BEGIN { print a / b }')"
}
row "tcp stream Gbit/s" "$tun_gbps" "$veth_gbps"
for k in p50 p99 mean; do
    t=$(field "$k" <<<"$tun_rr")
    v=$(field "$k" <<<"$veth_rr")
    printf "  %-24s %10.1f %10.1f %8.2f\n" "64 B round trip $k us" "$t" "$v" \
        "$(awk -v a="$t" -v b="$v" 'BEGIN { print a / b }')"
done
echo "  (ratio = tunnel / veth: below 1 for throughput and above 1 for latency is the tunnel's cost)"
echo "  where the cost is (not the goal; veth is the same pair, each way):"
row "  pod in VM -> node" "$rev_gbps" "$vethrev_gbps"
row "  node -> pod, no bridge" "$routed_gbps" "$veth_gbps"

"$tool" node-teardown --pod-netns "/run/netns/$P-pod" --host-netns "/run/netns/$P-node" \
    --config "$work/pod.json"
"$tool" vm-teardown --host-netns "/run/netns/$P-vm" --pod-ns-name "$P-vmpod" \
    --config "$work/pod.json" --delete-netns
"$tool" node-teardown --pod-netns "/run/netns/$P-pod2" --host-netns "/run/netns/$P-node2" \
    --config "$work/pod2.json"
"$tool" vm-teardown --host-netns "/run/netns/$P-vm2" --pod-ns-name "$P-vmpod2" \
    --config "$work/pod2.json" --delete-netns
