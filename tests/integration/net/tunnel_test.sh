#!/usr/bin/env bash
# The pod tunnel end to end, in network namespaces this script makes and
# removes (names `ppn<pid>-*`; addresses 198.18.0.0/16 and 10.244.1.0/24 only
# inside them; nothing touches the machine's own network).
#
#   node ns:  ul0 bridge 198.18.0.1/16 (underlay)   cni0 bridge 10.244.1.1/24
#   pod i:    eth0 10.244.1.(10+i)/24, default via 10.244.1.1 (a CNI's work)
#   VM i:     ens1 198.18.0.(10+i)/16 on ul0; its pod namespace vmpod i
#
# 1. bad pod namespaces fail clearly and leave nothing behind;
# 2. one pod: inspection -> JSON -> node and VM setup; ping both ways, pod to
#    pod, TCP transfers both ways, DF ping at the MTU and one byte over,
#    the tunnel's UDP untracked by conntrack, setup idempotent, a VNI change
#    recreates the device;
# 3. PP_NET_TEST_PODS pods (50) at once, set up concurrently (parallel
#    processes, and threads sharing one context): distinct indexes and VNIs,
#    each pod answers from its own VM;
# 4. teardown: no vxlan, qdisc, filter, nft rule or VM pod namespace left,
#    foreign nftables tables untouched; teardown again succeeds.
#
# usage: tunnel_test.sh PP_NET_TOOL PP_NET_PROBE      (exit 77: skipped)
set -uo pipefail

tool=${1:?pp-net-tool}
probe=${2:?pp-net-probe}
pods=${PP_NET_TEST_PODS:-50}

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: needs root for network namespaces"
    exit 77
fi
for c in ip tc ping nft python3; do
    if ! command -v "$c" >/dev/null; then
        echo "SKIP: \`$c\` is not installed (scripts/setup.sh installs it)"
        exit 77
    fi
done
if ! ip netns add "ppn$$-probe" 2>/dev/null; then
    echo "SKIP: cannot create network namespaces here"
    exit 77
fi
ip netns del "ppn$$-probe"

P=ppn$$
NODE=$P-node
work=$(mktemp -d "${TMPDIR:-/tmp}/pp-net-test.XXXXXX")
idx=$work/indexes
servers=()

cleanup() {
    for pid in "${servers[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    for ns in $(ip netns list | awk '{print $1}' | grep "^$P-"); do
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

# Output is checked with `grep -q PAT <<<"$(cmd)"`, never `cmd | grep -q`:
# with pipefail, grep exiting at the first match can fail the pipeline.
failures=0
pass() { echo "ok   $*"; }
fail() {
    echo "FAIL $*"
    failures=$((failures + 1))
}
die() {
    echo "FAIL $*"
    exit 1
}
# expect DESCRIPTION COMMAND...: the command succeeds.
expect() {
    local what=$1
    shift
    local out
    if out=$("$@" 2>&1); then pass "$what"; else
        fail "$what: $out"
    fi
}
# expect_fail DESCRIPTION PATTERN COMMAND...: fails, stderr matches.
expect_fail() {
    local what=$1 pattern=$2
    shift 2
    local out
    if out=$("$@" 2>&1); then
        fail "$what: succeeded, expected an error matching '$pattern'"
    elif grep -q -- "$pattern" <<<"$out"; then
        pass "$what: $out"
    else
        fail "$what: error '$out' does not match '$pattern'"
    fi
}
json() { # FILE EXPR: prints a field of a JSON file
    python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print($2)" "$1"
}
link_json() { # NS DEV EXPR: a field of `ip -d -j link show` (l = the link)
    ip -n "$1" -d -j link show "$2" |
        python3 -c "import json,sys; l=json.load(sys.stdin)[0]; print($3)"
}
mac_of() { link_json "$1" "$2" 'l["address"]'; }
vni_of() { link_json "$1" "$2" 'l["linkinfo"]["info_data"]["id"]'; }
nsx() { ip netns exec "$@"; }

# ---- topology ----------------------------------------------------------------

ip netns add "$NODE" || die "create node namespace"
N="ip -n $NODE"
$N link set lo up
$N link add ul0 type bridge
$N addr add 198.18.0.1/16 dev ul0
$N link set ul0 up
# The node's primary interface is the one of its default route.
$N route add default via 198.18.255.254 dev ul0 onlink
$N link add cni0 type bridge
$N addr add 10.244.1.1/24 dev cni0
$N link set cni0 mtu 1450 up
# A foreign table that turns conntrack on here, so the exemption can be
# seen, and that teardown must leave alone.
nsx "$NODE" nft add table inet pptest
nsx "$NODE" nft add chain inet pptest input '{ type filter hook input priority 0; }'
nsx "$NODE" nft add rule inet pptest input ct state established,related accept

add_vm() { # i
    local i=$1 vm=$P-vm$1
    ip netns add "$vm"
    $N link add "vmu$i" type veth peer name ens1 netns "$vm"
    $N link set "vmu$i" master ul0 up
    ip -n "$vm" link set lo up
    ip -n "$vm" addr add "198.18.0.$((10 + i))/16" dev ens1
    ip -n "$vm" link set ens1 up
}

add_pod() { # i: what a CNI plugin would have made
    local i=$1 pod=$P-pod$1
    ip netns add "$pod"
    $N link add "vp$i" mtu 1450 type veth peer name eth0 mtu 1450 netns "$pod"
    $N link set "vp$i" master cni0 up
    ip -n "$pod" link set lo up
    ip -n "$pod" addr add "10.244.1.$((10 + i))/24" dev eth0
    ip -n "$pod" link set eth0 up
    ip -n "$pod" route add default via 10.244.1.1 dev eth0
}

for i in $(seq 1 "$pods"); do
    add_vm "$i" || die "make VM namespace $i"
    add_pod "$i" || die "make pod namespace $i"
done
# Pod 1 also has a static route and a permanent neighbour to carry over.
cni_mac=$(mac_of "$NODE" cni0)
ip -n "$P-pod1" route add 10.96.0.0/12 via 10.244.1.1 dev eth0 proto static
ip -n "$P-pod1" neigh add 10.244.1.1 lladdr "$cni_mac" dev eth0 nud permanent
pass "topology: node, $pods pods, $pods VMs"

inspect() { # i -> $work/pod$i.json
    "$tool" inspect --pod-netns "/run/netns/$P-pod$1" --host-netns "/run/netns/$NODE" \
        --index-dir "$idx" --owner "pod-$1" >"$work/pod$1.json"
}
node_setup() {
    "$tool" node-setup --pod-netns "/run/netns/$P-pod$1" --host-netns "/run/netns/$NODE" \
        --remote "198.18.0.$((10 + $1))" --config "${2:-$work/pod$1.json}"
}
node_teardown() {
    "$tool" node-teardown --pod-netns "/run/netns/$P-pod$1" --host-netns "/run/netns/$NODE" \
        --config "$work/pod$1.json"
}
vm_setup() {
    "$tool" vm-setup --host-netns "/run/netns/$P-vm$1" --pod-ns-name "$P-vmpod$1" \
        --config "$work/pod$1.json"
}
vm_teardown() {
    "$tool" vm-teardown --host-netns "/run/netns/$P-vm$1" --pod-ns-name "$P-vmpod$1" \
        --config "$work/pod$1.json" --delete-netns
}

# Nothing of ours in the node namespace or in pod namespace $1.
nothing_left() { # what pod-ns...
    local what=$1 left=""
    shift
    [ -n "$($N -d link show type vxlan)" ] && left+=" vxlan-in-node"
    nsx "$NODE" nft list table inet peerpod >/dev/null 2>&1 && left+=" nft-table"
    for ns in "$@"; do
        [ -n "$(ip -n "$ns" link show type vxlan)" ] && left+=" vxlan-in-$ns"
        grep -q ingress <<<"$(tc -n "$ns" qdisc show dev eth0)" && left+=" qdisc-in-$ns"
        [ -n "$(tc -n "$ns" filter show dev eth0 ingress)" ] && left+=" filter-in-$ns"
    done
    [ -n "$(ls -A "$idx" 2>/dev/null)" ] && left+=" index-files($(ls "$idx" | tr '\n' ' '))"
    if [ -z "$left" ]; then pass "$what: nothing left"; else fail "$what: left:$left"; fi
}

# ---- 1. bad pod namespaces -----------------------------------------------------

mkdir -p "$idx"
ip netns add "$P-noroute"
ip -n "$P-noroute" link add eth0 type veth peer name peer0
ip -n "$P-noroute" addr add 10.244.2.5/24 dev eth0
ip -n "$P-noroute" link set eth0 up
ip netns add "$P-two"
ip -n "$P-two" link add eth0 type veth peer name peer0
ip -n "$P-two" addr add 10.244.2.5/24 dev eth0
ip -n "$P-two" addr add 10.244.2.6/24 dev eth0
ip -n "$P-two" link set eth0 up
ip -n "$P-two" route add default via 10.244.2.1 dev eth0
ip netns add "$P-noip"
ip -n "$P-noip" link add eth0 type veth peer name peer0
ip -n "$P-noip" link set eth0 up
ip -n "$P-noip" route add default dev eth0

bad() { # name -> inspect output
    "$tool" inspect --pod-netns "/run/netns/$1" --host-netns "/run/netns/$NODE" \
        --index-dir "$idx" --owner "bad-$1"
}
expect_fail "bad pod netns: missing" "network namespace \`/run/netns/$P-missing\` does not exist" \
    bad "$P-missing"
expect_fail "bad pod netns: no default route" "no default route in network namespace" \
    bad "$P-noroute"
expect_fail "bad pod netns: two IPv4 addresses" "has 2 IPv4 addresses, expected one" bad "$P-two"
expect_fail "bad pod netns: no IPv4 address" "has no IPv4 address" bad "$P-noip"
expect_fail "bad pod netns: not a namespace" "is not a network namespace" \
    "$tool" inspect --pod-netns /etc/hostname --index 0
config() { # MTU
    echo '{"podip":"10.244.1.11/24","pod-hw-addr":"02:00:00:00:00:01","interface":"eth0",' \
        '"worker-node-ip":"198.18.0.1/16","tunnel-type":"vxlan","mtu":'"$1"',"index":0,' \
        '"vxlan-port":4789,"vxlan-id":555000}'
}
expect_fail "node setup into a missing pod netns" "does not exist" \
    "$tool" node-setup --pod-netns "/run/netns/$P-missing" --host-netns "/run/netns/$NODE" \
    --remote 198.18.0.11 --config <(config 1450)
expect_fail "vm setup from a bad config" "pod-network: \`mtu\`: 0 is not from 68 to 65535" \
    "$tool" vm-setup --host-netns "/run/netns/$P-vm1" --pod-ns-name "$P-vmpod1" \
    --config <(config 0)
[ -e "/run/netns/$P-vmpod1" ] && fail "bad config left the VM pod namespace" ||
    pass "bad config made no VM pod namespace"
nothing_left "after bad pod namespaces" "$P-noroute" "$P-two" "$P-noip"

# ---- 2. one pod ------------------------------------------------------------------

inspect 1 || die "inspect pod 1"
cfg=$work/pod1.json
echo "     pod-network: $(cat "$cfg")"
mac1=$(mac_of "$P-pod1" eth0)
[ "$(json "$cfg" 'c["podip"], c["interface"], c["worker-node-ip"], c["mtu"], c["tunnel-type"]')" = \
    "10.244.1.11/24 eth0 198.18.0.1/16 1450 vxlan" ] && pass "pod-network: addresses, interface, mtu" ||
    fail "pod-network fields: $(cat "$cfg")"
[ "$(json "$cfg" 'c["pod-hw-addr"]')" = "$mac1" ] && pass "pod-network: pod MAC $mac1" ||
    fail "pod-network MAC is not $mac1"
[ "$(json "$cfg" 'c["index"], c["vxlan-id"] - c["index"], c["vxlan-port"]')" = "0 555000 4789" ] &&
    pass "pod-network: index 0, vni 555000, port 4789" || fail "pod-network index/vni: $(cat "$cfg")"
routes=$(json "$cfg" 'json.dumps(c["routes"], separators=(",", ":"))')
grep -qF '{"dst":"0.0.0.0/0","gw":"10.244.1.1","dev":"eth0","protocol":"boot"}' <<<"$routes" &&
    grep -qF '{"dst":"10.96.0.0/12","gw":"10.244.1.1","dev":"eth0","protocol":"static"}' \
        <<<"$routes" && pass "pod-network: default and static routes" ||
    fail "pod-network routes: $routes"
neighbors=$(json "$cfg" 'json.dumps(c["neighbors"], separators=(",", ":"))')
grep -qF "{\"ip\":\"10.244.1.1\",\"hw-addr\":\"$cni_mac\",\"dev\":\"eth0\",\"state\":\"permanent\"}" \
    <<<"$neighbors" && pass "pod-network: permanent neighbour" ||
    fail "pod-network neighbours: $neighbors"

expect "node setup pod 1" node_setup 1
expect "vm setup pod 1" vm_setup 1
VP1=$P-vmpod1
vm_link=$(ip -n "$VP1" -d -j link show eth0)
python3 -c '
import json, sys
l = json.loads(sys.argv[2])[0]
d = l["linkinfo"]["info_data"]
ok = (l["address"] == sys.argv[1] and l["mtu"] == 1450 and l["linkinfo"]["info_kind"] == "vxlan"
      and d["id"] == 555000 and d["remote"] == "198.18.0.1" and d["port"] == 4789
      and not d.get("learning", False))
sys.exit(0 if ok else 1)' "$mac1" "$vm_link" &&
    pass "VM side: eth0 vxlan, pod MAC, mtu 1450, vni 555000, nolearning" ||
    fail "VM side link: $vm_link"
grep -q "^default via 10.244.1.1 dev eth0" <<<"$(ip -n "$VP1" route show)" &&
    grep -q "^10.96.0.0/12 via 10.244.1.1 dev eth0 proto static" <<<"$(ip -n "$VP1" route show)" &&
    pass "VM side: routes" || fail "VM side routes: $(ip -n "$VP1" route show | tr '\n' ';')"
grep -q "lladdr $cni_mac PERMANENT" <<<"$(ip -n "$VP1" neigh show 10.244.1.1)" &&
    pass "VM side: permanent neighbour" || fail "VM side neighbour: $(ip -n "$VP1" neigh show)"
vx1=$(ip -n "$P-pod1" -d link show vxlan1)
grep -q "vxlan id 555000 remote 198.18.0.11 .*dstport 4789 nolearning" <<<"$vx1" &&
    pass "node side: vxlan1 vni 555000 remote 198.18.0.11 nolearning" ||
    fail "node side vxlan1: $(ip -n "$P-pod1" -d link show vxlan1)"

expect "ping node -> VM pod" nsx "$NODE" ping -c 2 -i 0.2 -W 2 10.244.1.11
expect "ping VM pod -> node (gateway)" nsx "$VP1" ping -c 2 -i 0.2 -W 2 10.244.1.1
expect "ping pod 2 (plain CNI pod) -> VM pod 1" nsx "$P-pod2" ping -c 2 -i 0.2 -W 2 10.244.1.11

# `ip netns exec` execs the server, so $! is the server itself; its output
# goes to a file so that nothing outlives the test holding our stdout.
ip netns exec "$VP1" "$probe" serve 5001 vm-1 "$work/ready-vm1" >"$work/server-vm1.log" 2>&1 &
servers+=($!)
ip netns exec "$NODE" "$probe" serve 5002 node "$work/ready-node" >"$work/server-node.log" 2>&1 &
servers+=($!)
for _ in $(seq 50); do [ -e "$work/ready-vm1" ] && [ -e "$work/ready-node" ] && break; sleep 0.1; done
expect "tcp 8 MiB node -> VM pod" nsx "$NODE" "$probe" xfer 10.244.1.11 5001 8388608
expect "tcp 8 MiB VM pod -> node" nsx "$VP1" "$probe" xfer 10.244.1.1 5002 8388608

# 1450 MTU: 1422 bytes of ICMP payload + 8 + 20 fill it; one more cannot go
# with DF set.
expect "DF ping 1422 node -> VM pod" nsx "$NODE" ping -M do -s 1422 -c 2 -i 0.2 -W 2 10.244.1.11
expect_fail "DF ping 1423 node -> VM pod" "message too long" \
    nsx "$NODE" ping -M do -s 1423 -c 1 -W 1 10.244.1.11
expect "DF ping 1422 VM pod -> node" nsx "$VP1" ping -M do -s 1422 -c 2 -i 0.2 -W 2 10.244.1.1
expect_fail "DF ping 1423 VM pod -> node" "message too long" \
    nsx "$VP1" ping -M do -s 1423 -c 1 -W 1 10.244.1.1

# Conntrack is on in the node namespace (the foreign table uses it): the
# pings made entries, the tunnel's UDP made none.
ct=$(nsx "$NODE" cat /proc/net/nf_conntrack 2>/dev/null)
if grep -q "icmp" <<<"$ct" && ! grep -q "dport=4789" <<<"$ct"; then
    pass "conntrack: tracked icmp, untracked vxlan udp"
else
    fail "conntrack table: $(head -5 <<<"$ct")"
fi

expect "node setup again (idempotent)" node_setup 1
expect "vm setup again (idempotent)" vm_setup 1
n_filters=$(tc -n "$P-pod1" filter show dev eth0 ingress | grep -c mirred)
[ "$n_filters" = 1 ] && pass "one redirect filter on eth0 after setting up twice" ||
    fail "$n_filters redirect filters on eth0"
expect "ping after setting up twice" nsx "$NODE" ping -c 2 -i 0.2 -W 2 10.244.1.11
# Another VNI cannot be set on a live device: setup deletes and recreates.
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["vxlan-id"]+=1000; json.dump(c,open(sys.argv[2],"w"))' \
    "$cfg" "$work/pod1-vni.json"
expect "node setup with another vni" node_setup 1 "$work/pod1-vni.json"
grep -q "vxlan id 556000 " <<<"$(ip -n "$P-pod1" -d link show vxlan1)" &&
    pass "vxlan1 recreated with vni 556000" || fail "vxlan1: $(ip -n "$P-pod1" -d link show vxlan1)"
expect "node setup back to vni 555000" node_setup 1
expect "ping after the vni round trip" nsx "$NODE" ping -c 2 -i 0.2 -W 2 10.244.1.11

# A Calico-like pod: a /32 address, an on-link route to a link-local
# gateway, the default route through it, a permanent neighbour for it, MTU
# 1500. The VM side must add the gateway-less route first, and cap the MTU.
ip netns add "$P-calico"
ip -n "$P-calico" link add eth0 mtu 1500 type veth peer name peer0
ip -n "$P-calico" link set lo up
ip -n "$P-calico" link set eth0 up
ip -n "$P-calico" addr add 10.244.7.9/32 dev eth0
ip -n "$P-calico" route add 169.254.1.1 dev eth0 scope link
ip -n "$P-calico" route add default via 169.254.1.1 dev eth0
ip -n "$P-calico" neigh add 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent
ip netns add "$P-vmc"
"$tool" inspect --pod-netns "/run/netns/$P-calico" --host-netns "/run/netns/$NODE" --index 4000 \
    >"$work/calico.json" || die "inspect the calico-like pod"
echo "     pod-network: $(cat "$work/calico.json")"
expect "vm setup of the calico-like pod" "$tool" vm-setup --host-netns "/run/netns/$P-vmc" \
    --pod-ns-name "$P-vmcpod" --config "$work/calico.json"
routes=$(ip -n "$P-vmcpod" route show | tr '\n' ';')
[[ "$routes" == *"default via 169.254.1.1 dev eth0"* && "$routes" == *"169.254.1.1 dev eth0 scope link"* ]] &&
    pass "calico-like VM side: on-link gateway route and default route" ||
    fail "calico-like VM side routes: $routes"
grep -q "inet 10.244.7.9/32" <<<"$(ip -n "$P-vmcpod" addr show eth0)" &&
    pass "calico-like VM side: /32 address" ||
    fail "calico-like VM side address: $(ip -n "$P-vmcpod" addr show eth0)"
grep -q "mtu 1450 " <<<"$(ip -n "$P-vmcpod" link show eth0)" && pass "VM side MTU min(1500, 1450)" ||
    fail "VM side MTU: $(ip -n "$P-vmcpod" link show eth0)"
vmc_neigh=$(ip -n "$P-vmcpod" neigh show)
grep -q "169.254.1.1 dev eth0 lladdr ee:ee:ee:ee:ee:ee PERMANENT" <<<"$vmc_neigh" &&
    pass "calico-like VM side: permanent neighbour" || fail "neighbours: $(ip -n "$P-vmcpod" neigh show)"
expect "vm teardown of the calico-like pod" "$tool" vm-teardown --host-netns "/run/netns/$P-vmc" \
    --pod-ns-name "$P-vmcpod" --config "$work/calico.json" --delete-netns
[ -e "/run/netns/$P-vmcpod" ] && fail "VM pod namespace left" || pass "VM pod namespace deleted"

# ---- 3. many pods ------------------------------------------------------------------

# Inspections in parallel processes (the index files arbitrate), node
# setups from 8 threads sharing one context, VM setups in parallel.
t0=$(date +%s%N)
pids=()
for i in $(seq 2 "$pods"); do
    inspect "$i" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || die "inspect in parallel"; done
specs=()
for i in $(seq 2 "$pods"); do
    specs+=("/run/netns/$P-pod$i,198.18.0.$((10 + i)),$work/pod$i.json")
done
"$tool" node-many setup --host-netns "/run/netns/$NODE" --threads 8 "${specs[@]}" ||
    die "node setup of pods 2..$pods from 8 threads"
pids=()
for i in $(seq 2 "$pods"); do
    vm_setup "$i" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || die "vm setup in parallel"; done
t1=$(date +%s%N)
pass "$((pods - 1)) more pods set up concurrently ($(((t1 - t0) / 1000000)) ms, tool fork/exec included)"

for i in $(seq 2 "$pods"); do
    ip netns exec "$P-vmpod$i" "$probe" serve 5001 "vm-$i" "$work/ready-vm$i" \
        >"$work/server-vm$i.log" 2>&1 &
    servers+=($!)
done
for _ in $(seq 100); do
    n=$(ls "$work" | grep -c '^ready-vm')
    [ "$n" -ge "$pods" ] && break
    sleep 0.1
done

declare -A seen_index seen_vni
dup=0
for i in $(seq 1 "$pods"); do
    read -r index vni <<<"$(json "$work/pod$i.json" 'c["index"], c["vxlan-id"]')"
    node_vni=$(vni_of "$P-pod$i" vxlan1)
    vm_vni=$(vni_of "$P-vmpod$i" eth0)
    if [ -n "${seen_index[$index]:-}" ] || [ -n "${seen_vni[$vni]:-}" ] ||
        [ "$node_vni" != "$vni" ] || [ "$vm_vni" != "$vni" ] || [ "$vni" != $((555000 + index)) ]; then
        fail "pod $i: index $index vni $vni node $node_vni vm $vm_vni"
        dup=1
    fi
    seen_index[$index]=1
    seen_vni[$vni]=1
done
[ "$dup" = 0 ] && pass "$pods pods: distinct indexes 0..$((pods - 1)) and VNIs, same VNI at both ends"
[ "$(ls "$idx" | sort -n | tr '\n' ' ')" = "$(seq 0 $((pods - 1)) | tr '\n' ' ')" ] &&
    pass "index files 0..$((pods - 1))" || fail "index files: $(ls "$idx" | sort -n | tr '\n' ' ')"

wrong=0
for i in $(seq 1 "$pods"); do
    got=$(nsx "$NODE" "$probe" ident "10.244.1.$((10 + i))" 5001 2>&1)
    if [ "$got" != "vm-$i" ]; then
        fail "pod $i (10.244.1.$((10 + i))) answered from '$got', expected vm-$i"
        wrong=1
    fi
done
[ "$wrong" = 0 ] && pass "$pods pods: each answers from its own VM"
lost=0
for i in $(seq 1 "$pods"); do
    nsx "$NODE" ping -c 1 -W 2 "10.244.1.$((10 + i))" >/dev/null || {
        fail "ping pod $i"
        lost=1
    }
done
[ "$lost" = 0 ] && pass "$pods pods: ping"
# One element per tunnel in the set that two rules look up, however many
# pods there are.
elems=$(nsx "$NODE" nft list set inet peerpod tunnels | grep -o 'comment "peerpod vni:[0-9]*"' | sort -u | wc -l)
rules=$(nsx "$NODE" nft -a list table inet peerpod | grep -c 'notrack')
[ "$elems" = "$pods" ] && [ "$rules" = 2 ] && pass "node: $elems tunnels in the notrack set, $rules rules" ||
    fail "node: $elems tunnels in the notrack set and $rules rules, expected $pods and 2"

# ---- 4. teardown ---------------------------------------------------------------------

for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null; done
for pid in "${servers[@]}"; do wait "$pid" 2>/dev/null; done
servers=()
tfail=0
specs=()
for i in $(seq 1 "$pods"); do
    specs+=("/run/netns/$P-pod$i,198.18.0.$((10 + i)),$work/pod$i.json")
done
"$tool" node-many teardown --host-netns "/run/netns/$NODE" --threads 8 "${specs[@]}" || tfail=1
pids=()
for i in $(seq 1 "$pods"); do
    vm_teardown "$i" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || tfail=1; done
for i in $(seq 1 "$pods"); do
    index=$(json "$work/pod$i.json" 'c["index"]')
    "$tool" index-release --index-dir "$idx" --index "$index" --owner "pod-$i" || tfail=1
done
[ "$tfail" = 0 ] && pass "teardown of $pods pods (8 threads node side, parallel VM side)" ||
    fail "teardown reported errors"

pod_list=()
for i in $(seq 1 "$pods"); do pod_list+=("$P-pod$i"); done
nothing_left "after teardown" "${pod_list[@]}"
left_vm=""
for i in $(seq 1 "$pods"); do
    [ -e "/run/netns/$P-vmpod$i" ] && left_vm+=" vmpod$i"
    nsx "$P-vm$i" nft list table inet peerpod >/dev/null 2>&1 && left_vm+=" nft-vm$i"
    [ -n "$(ip -n "$P-vm$i" link show type vxlan)" ] && left_vm+=" vxlan-vm$i"
done
[ -z "$left_vm" ] && pass "VM side: no pod namespace, vxlan or nft table left" ||
    fail "VM side left:$left_vm"
nsx "$NODE" nft list table inet pptest >/dev/null 2>&1 && pass "foreign nft table untouched" ||
    fail "foreign nft table inet pptest is gone"
[ "$(mac_of "$P-pod1" eth0)" = "$mac1" ] &&
    grep -q "10.244.1.11/24" <<<"$(ip -n "$P-pod1" addr show eth0)" &&
    pass "pod 1 keeps its eth0 address and MAC" || fail "pod 1 eth0 changed"
expect "ping the node-side pod again (plain CNI pod)" nsx "$NODE" ping -c 2 -i 0.2 -W 2 10.244.1.11
expect "node teardown again (idempotent)" node_teardown 1
expect "vm teardown again (idempotent)" vm_teardown 1
ip netns del "$P-pod2"
expect "node teardown with the pod namespace gone" node_teardown 2

if [ "$failures" -gt 0 ]; then
    echo "net_tunnel: $failures failure(s)"
    exit 1
fi
echo "net_tunnel: all passed"
