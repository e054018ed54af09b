#!/usr/bin/env bash
# One peer pod's whole lifecycle on the local provider: installs what is
# needed, builds, starts cloud-api-adaptor (inside a network namespace of
# its own, so the machine's network is left alone) with the test agent,
# drives Version, CreateVM, StartVM, agent calls and StopVM like the kata
# shim does, shows each step's duration, checks nothing is left, and exits 0.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target cloud-api-adaptor agent-protocol-forwarder \
    process-user-data pp-test-agent pp-shim >/dev/null

bin=$top/build/bin
work=$(mktemp -d /tmp/pp-demo.XXXXXX)
node=ppdemo$$
caa_pid=
cleanup() {
    set +e
    [ -n "$caa_pid" ] && kill "$caa_pid" 2>/dev/null && wait "$caa_pid" 2>/dev/null
    ip netns del "$node" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$node"
ip -n "$node" link set lo up

echo "== cloud-api-adaptor (provider: local, agent: pp-test-agent)"
# Only the network namespace is entered: `ip netns exec` would also give the
# daemon a mount namespace of its own, which ends with it and takes the pod
# VMs' namespace mounts along (the restarted daemon would find them gone).
nsenter --net="/run/netns/$node" env \
    CLOUD_PROVIDER=local \
    REMOTE_HYPERVISOR_ENDPOINT="$work/hypervisor.sock" \
    PODS_DIR="$work/pods" \
    LOCAL_STATE_DIR="$work/vms" \
    PROXY_TIMEOUT=60s \
    "$bin/cloud-api-adaptor" >"$work/caa.log" 2>&1 &
caa_pid=$!
for _ in $(seq 100); do
    [ -S "$work/hypervisor.sock" ] && break
    sleep 0.05
done

echo "== one pod's lifecycle, as the kata shim drives it"
sid=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
if ! ip netns exec "$node" "$bin/pp-shim" -socket "$work/hypervisor.sock" \
    lifecycle "$sid" -pod demo-pod -namespace default; then
    echo "== lifecycle failed; cloud-api-adaptor said:"
    cat "$work/caa.log"
    exit 1
fi

echo "== after StopVM"
# The node's CA and the pod index directory (dot entries) stay by design.
left=$(find "$work/pods" "$work/vms" -mindepth 1 -maxdepth 1 ! -name '.*' 2>/dev/null | wc -l)
links=$(ip -n "$node" -o link show | grep -vc ': lo:' || true)
echo "files left: $left, links left in the node namespace: $links"
kill "$caa_pid"
wait "$caa_pid" || true
caa_pid=
if [ "$left" -ne 0 ] || [ "$links" -ne 0 ]; then
    echo "demo: something was left behind"
    exit 1
fi
echo "demo: ok"
