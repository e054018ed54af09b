#!/usr/bin/env bash
# A peer pod's whole lifecycle on a real VM: cloud-api-adaptor with the
# libvirt provider, a libvirtd this script starts, and the pod VM image from
# podvm/build.sh (test variant) booted under KVM. Checked: the VM boots,
# process-user-data provisions it from the config drive, the forwarder
# answers over mutual TLS, agent calls pass through the adaptor, the pod's IP
# on the node reaches the pod namespace in the VM through VXLAN, and StopVM
# removes the domain and every volume it made.
#
# Attestation, with a vTPM (LIBVIRT_VTPM, libvirt's swtpm back end): the
# pod's initdata annotation names the test KBS on the node's side of the
# network; process-user-data extends PCR8 with its digest, the data hub
# fetches its credential at start, the attestation agent attests to the KBS
# with a quote, and the KBS records that it released the secret to that
# VM's PCR8. A second pod with other initdata in its annotation is refused
# (PCR8 differs) and gets nothing.
#
# Everything runs in mount and network namespaces of the script's own:
# libvirtd's state, config and sockets are on tmpfs there, its network and
# the VM's taps live in that network namespace, so neither a libvirtd of the
# machine nor the machine's network is touched, and nothing outlives the run.
#
# libvirt_kvm.sh CAA PP_SHIM IMAGE_PATH_FILE [PYTHON]
# Exit 77 (skipped, with the reason printed) when /dev/kvm cannot be opened.
set -euo pipefail

caa=$1
shim=$2
image_file=$3
PY=${4:-/usr/bin/python3}
kbs_py=$(cd "$(dirname "$0")/../integration/guest" && pwd)/kbs.py

if ! (exec 3<>/dev/kvm) 2>/dev/null; then
    echo "skipped: /dev/kvm cannot be opened here: no KVM, so no pod VM to boot"
    exit 77
fi
# A pid namespace too: when the test ends, however it ends (a failed check,
# ctest's timeout), the kernel ends libvirtd and every qemu it started, so
# no emulated guest outlives the test.
if [ -z "${PP_KVM_INNER:-}" ]; then
    exec env PP_KVM_INNER=1 unshare --mount --net --pid --fork --kill-child --mount-proc \
        --propagation private -- "$0" "$@"
fi

# Some hosts' /dev/kvm is a paravirtual hypervisor (kvm_pvm) that cannot run
# an ordinary guest kernel: there the VM is emulated (libvirt domain type
# qemu), slower but the same VM. PODVM_ACCEL=kvm|tcg chooses.
accel=${PODVM_ACCEL:-}
if [ -z "$accel" ]; then
    accel=kvm
    [ -d /sys/module/kvm_pvm ] && accel=tcg
fi
if [ "$accel" = tcg ]; then
    echo "note: /dev/kvm here is kvm_pvm (or PODVM_ACCEL=tcg): the pod VM runs emulated"
    domain_type=qemu cpu_mode=default
else
    domain_type=kvm cpu_mode=${PP_KVM_CPU_MODE:-host-model}
fi

image=$(cat "$image_file")
[ -f "$image" ] || { echo "FAIL: no pod VM image at \`$image\` (from $image_file)"; exit 1; }

t0=$(date +%s.%N)
since() { # seconds since t0, or since $1
    echo "$(date +%s.%N) ${1:-$t0}" | awk '{printf "%.2f", $1 - $2}'
}
work=$(mktemp -d /tmp/pp-kvm-XXXXXX)
uri=qemu:///system
net=ppkvm
pool=ppkvm
podns=pp-kvm-pod
sid=c0ffee00c0ffee00c0ffee00c0ffee00
caa_pid=
kbs_pid=
virsh() { command virsh -q -c "$uri" "$@"; }

cleanup() {
    set +e
    [ -n "$caa_pid" ] && kill "$caa_pid" 2>/dev/null && wait "$caa_pid" 2>/dev/null
    [ -n "$kbs_pid" ] && kill "$kbs_pid" 2>/dev/null && wait "$kbs_pid" 2>/dev/null
    if [ -S /run/libvirt/libvirt-sock ]; then
        for d in $(virsh list --all --name 2>/dev/null); do
            virsh destroy "$d" >/dev/null 2>&1
            virsh undefine "$d" >/dev/null 2>&1
        done
        virsh net-destroy "$net" >/dev/null 2>&1
        virsh pool-destroy "$pool" >/dev/null 2>&1
    fi
    [ -f /run/libvirt/libvirtd.pid ] && kill "$(cat /run/libvirt/libvirtd.pid)" 2>/dev/null
    for _ in $(seq 50); do pgrep -F /run/libvirt/libvirtd.pid >/dev/null 2>&1 || break; sleep 0.1; done
    ip netns del "$podns" 2>/dev/null
    [ -n "${PP_KVM_KEEP:-}" ] && cp "$work/libvirtd.log" /tmp/pp-kvm-libvirtd.log 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' TERM INT

# shellcheck source=../common/check.sh
. "$(dirname "$0")/../common/check.sh"
fail() {
    echo "FAIL: $*"
    echo "--- cloud-api-adaptor log (last 60 lines)"
    tail -n 60 "$work/caa.log" 2>/dev/null
    for f in "$work"/console/*.log; do
        [ -f "$f" ] || continue
        echo "--- pod VM console: $(basename "$f") (last 80 lines)"
        tail -n 80 "$f"
    done
    echo "--- test KBS log (last 20 lines)"
    tail -n 20 "$work/kbs.log" 2>/dev/null
    echo "--- libvirtd log (last 30 lines)"
    tail -n 30 "$work/libvirtd.log" 2>/dev/null
    exit 1
}

# ---- a libvirtd of our own ----
for d in /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /run/netns; do
    mkdir -p "$d"
    mount -t tmpfs tmpfs "$d"
done
mkdir -p "$work/etc"
cp -a /etc/libvirt/. "$work/etc/"
# VMs run as root with no security driver or cgroups: this is a throwaway
# libvirtd in a container-like namespace, not a host's. No per-domain mount
# namespace either: inside ours, moving its /dev/kvm mount fails on some
# hosts ("Unable to move ... mount to /dev/kvm: Invalid argument"), which
# providers/libvirt/README.md describes for nodes.
cat >"$work/etc/qemu.conf" <<'EOF'
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
stdio_handler = "file"
namespaces = [ ]
EOF
cat >"$work/etc/libvirtd.conf" <<EOF
log_outputs = "3:file:$work/libvirtd.log"
EOF
mount --bind "$work/etc" /etc/libvirt
# libvirtd looks up the user its packaging would have made before it reads
# qemu.conf; a passwd of our own namespace has it.
if ! getent passwd libvirt-qemu >/dev/null; then
    cp /etc/passwd "$work/passwd"
    echo "libvirt-qemu:x:64055:64055::/var/lib/libvirt:/usr/sbin/nologin" >>"$work/passwd"
    mount --bind "$work/passwd" /etc/passwd
fi
if ! getent group libvirt-qemu >/dev/null; then
    cp /etc/group "$work/group"
    echo "libvirt-qemu:x:64055:" >>"$work/group"
    mount --bind "$work/group" /etc/group
fi
ip link set lo up
libvirtd --daemon --pid-file /run/libvirt/libvirtd.pid
for _ in $(seq 100); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.1; done
[ -S /run/libvirt/libvirt-sock ] || fail "libvirtd did not start"

# An isolated network with DHCP: the node's side of it is the bridge.
virsh net-create /dev/stdin >/dev/null <<EOF || fail "network"
<network><name>$net</name><bridge name='ppkvm0'/>
  <ip address='192.168.150.1' netmask='255.255.255.0'>
    <dhcp><range start='192.168.150.10' end='192.168.150.99'/></dhcp></ip></network>
EOF
mkdir -p "$work/pool" "$work/console" "$work/pods"
cp --sparse=always "$image" "$work/pool/podvm-base.qcow2"
virsh pool-create-as "$pool" dir --target "$work/pool" >/dev/null || fail "pool"
echo "libvirtd, network and pool ready in $(since) s"

# ---- the KBS, on the node's side of the network ----
# The pod's initdata: the agent and the data hub talk to it; the data hub's
# credential makes it attest at start.
mkdir -p "$work/res/default/key"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/res/default/key/k1"
initdata() { # POLICY: an initdata document
    printf 'algorithm = "sha256"\nversion = "0.1.0"\n\n[data]\n'
    printf '"aa.toml" = \x27\x27\x27\n[token_configs.kbs]\nurl = "http://192.168.150.1:8080"\n\x27\x27\x27\n'
    printf '"cdh.toml" = \x27\x27\x27\n[kbc]\nname = "cc_kbc"\nurl = "http://192.168.150.1:8080"\n'
    printf '[[credentials]]\nresource_uri = "kbs:///default/key/k1"\n'
    printf 'path = "/run/confidential-containers/cdh/kms-credential/k1"\n\x27\x27\x27\n'
    printf '"policy.rego" = "%s"\n' "$1"
}
# As the annotation will carry them: $(...) drops the last newline.
printf '%s' "$(initdata good)" >"$work/initdata.toml"
printf '%s' "$(initdata other)" >"$work/other-initdata.toml"
want_pcr8=$("$PY" -c 'import hashlib,sys; d = hashlib.sha256(open(sys.argv[1], "rb").read()).digest(); print(hashlib.sha256(bytes(32) + d).hexdigest())' "$work/initdata.toml")
"$PY" "$kbs_py" --port 8080 --bind 192.168.150.1 --resources "$work/res" \
    --expect-initdata "$work/initdata.toml" --trust-any-ak >"$work/kbs.log" 2>&1 &
kbs_pid=$!
kbs_stats() { "$PY" -c 'import json,urllib.request as u; print(json.dumps(json.load(u.urlopen("http://192.168.150.1:8080/test/stats"))))'; }
for _ in $(seq 100); do kbs_stats >/dev/null 2>&1 && break; sleep 0.1; done
kbs_stats >/dev/null || fail "the test KBS did not start"

# The pod's network namespace on the node, made as a CNI plugin would.
ip netns add "$podns"
ip link add cnipod type veth peer name eth0 netns "$podns"
ip addr add 10.244.1.1/24 dev cnipod
ip link set cnipod up
ip -n "$podns" addr add 10.244.1.5/24 dev eth0
ip -n "$podns" link set eth0 up
ip -n "$podns" link set lo up
ip -n "$podns" route add default via 10.244.1.1

# ---- the adaptor ----
export CLOUD_PROVIDER=libvirt LIBVIRT_URI=$uri LIBVIRT_POOL=$pool LIBVIRT_NET=$net \
    LIBVIRT_VOL_NAME=podvm-base.qcow2 LIBVIRT_CPU=1 LIBVIRT_MEMORY=1024 \
    LIBVIRT_CONSOLE_LOG_DIR="$work/console" LIBVIRT_IP_TIMEOUT_MS=180000 \
    REMOTE_HYPERVISOR_ENDPOINT="$work/hv.sock" PODS_DIR="$work/pods" NODE_NAME=kvm-node \
    LIBVIRT_DOMAIN_TYPE=$domain_type LIBVIRT_CPU_MODE=$cpu_mode HOST_INTERFACE=ppkvm0 \
    LIBVIRT_VTPM=true \
    PROXY_TIMEOUT=240s \
    PP_LOG_LEVEL=debug
"$caa" >"$work/caa.log" 2>&1 &
caa_pid=$!
wait_socket "$work/hv.sock" "$caa_pid" cloud-api-adaptor

# A pod whose image annotation names a volume the pool lacks: StartVM fails
# at once, naming it, and leaves nothing in libvirt.
bad=badbad00badbad00badbad00badbad00
"$shim" -socket "$work/hv.sock" create "$bad" -pod bad -namespace default \
    -a io.katacontainers.config.hypervisor.image=no-such-image.qcow2 >/dev/null || fail "CreateVM"
rc=0
"$shim" -socket "$work/hv.sock" -timeout 60 start "$bad" 2>"$work/bad.err" || rc=$?
[ "$rc" -ne 0 ] || fail "StartVM with a missing base volume succeeded"
grep -q "no-such-image.qcow2" "$work/bad.err" || fail "StartVM's error: $(cat "$work/bad.err")"
"$shim" -socket "$work/hv.sock" stop "$bad" || fail "StopVM of the failed pod"
[ -z "$(virsh list --all --name)" ] || fail "a domain outlived the failed StartVM"
[ -z "$(virsh vol-list "$pool" | awk '{print $1}' | grep -v '^podvm-base.qcow2$')" ] ||
    fail "volumes outlived the failed StartVM"
echo "StartVM with a missing base volume: status $rc, nothing left: $(cat "$work/bad.err")"

sock=$("$shim" -socket "$work/hv.sock" create "$sid" -pod web -namespace default \
    -netns "/run/netns/$podns" \
    -a "io.katacontainers.config.hypervisor.cc_init_data=$(cat "$work/initdata.toml")") ||
    fail "CreateVM"
ts=$(date +%s.%N)
"$shim" -socket "$work/hv.sock" -timeout 300 start "$sid" 2>"$work/start.err" ||
    fail "StartVM: $(cat "$work/start.err")"
start_s=$(since "$ts")
echo "StartVM answered in $start_s s"

# ---- what the pod sees ----
console=$work/console/podvm-web-c0ffee00-console.log
grep -q "config drive: read .user-data." "$console" ||
    fail "process-user-data did not provision from the config drive"
echo "process-user-data: $(grep -o "config drive: read .user-data. from [^\r]*" "$console" | head -n 1)"
health=$("$shim" -timeout 30 health "$sock") || fail "health check through $sock"
[ "$health" = "health SERVING" ] || fail "the agent answered \`$health\`"
echo "agent through the adaptor and the forwarder: $health"
# The forwarder in the VM serves TLS with a certificate from this node's CA
# for the instance's name, and refuses a client without a certificate.
vm_ip=$(grep -o "created at [0-9.]*" "$work/caa.log" | head -n 1 | awk '{print $3}')
[ -n "$vm_ip" ] || fail "no instance address in the adaptor's log"
tls=$(sleep 3 | timeout 20 openssl s_client -connect "$vm_ip:15150" -CAfile "$work/pods/.ca/ca.crt" \
    -verify_return_error -verify_hostname podvm-web-c0ffee00 2>&1 || true)
echo "$tls" | grep -q "Verification: OK" || fail "forwarder's certificate: $tls"
echo "$tls" | grep -Eqi "certificate required|alert.*certificate" ||
    fail "the forwarder accepted a client without a certificate: $tls"
echo "forwarder at $vm_ip: TLS, certificate for podvm-web-c0ffee00 from the node's CA, client certificate required"

vx=$(ip -n "$podns" -d link show vxlan1) || fail "no vxlan1 in the pod namespace"
echo "$vx" | grep -q "vxlan id 555000 remote 192.168.150" || fail "vxlan1: $vx"
rx0=$(ip -n "$podns" -s -j link show vxlan1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["packets"])')
ping -c 3 -W 3 -q 10.244.1.5 >"$work/ping.out" || fail "ping of the pod IP: $(cat "$work/ping.out")"
rx1=$(ip -n "$podns" -s -j link show vxlan1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["rx"]["packets"])')
[ $((rx1 - rx0)) -ge 3 ] || fail "the answers did not come through the tunnel ($rx0 -> $rx1 packets)"
echo "pod IP answered from the VM through VXLAN: $(tail -n 1 "$work/ping.out")"

# ---- attestation ----
# The data hub fetches its credential at start: the attestation agent
# attests with the vTPM's quote, and the KBS releases the secret to a PCR8
# that holds this pod's initdata.
released=
for _ in $(seq 180); do
    released=$(kbs_stats | "$PY" -c 'import json,sys; r = json.load(sys.stdin)["released"]; print(r[0]["to"]["pcr08"] if r else "")')
    [ -n "$released" ] && break
    sleep 1
done
[ -n "$released" ] || fail "the KBS released nothing to the pod VM: $(kbs_stats | cut -c1-600); the VM said: $(grep -a -E 'PCR8|initdata' "$console" | head -n 5)"
[ "$released" = "$want_pcr8" ] || fail "released to PCR8 $released, want $want_pcr8"
grep -q "extended PCR8" "$console" || fail "process-user-data did not extend PCR8"
echo "KBS released default/key/k1 to the VM whose vTPM PCR8 is $released (the initdata's)"

# ---- where the time went ----
# The adaptor's log: StartVM taken, domain started, lease seen, forwarder up.
stamp() { grep -m1 "$1" "$work/caa.log" | cut -d' ' -f1; }
secs() { date -d "$1" +%s.%N; }
t_start=$(stamp "creating instance")
t_dom=$(stamp "started; waiting for its address")
t_ip=$(stamp "has address")
if [ -n "$t_start" ] && [ -n "$t_dom" ] && [ -n "$t_ip" ]; then
    a=$(secs "$t_start") b=$(secs "$t_dom") c=$(secs "$t_ip")
    awk -v a="$a" -v b="$b" -v c="$c" -v s="$start_s" 'BEGIN {
        printf "StartVM %.2f s: libvirt create (volumes, config drive, define, start) %.2f s, ", s, b - a
        printf "boot to DHCP lease %.2f s, lease to agent ready %.2f s\n", c - b, s - (c - a)
    }'
fi

# ---- StopVM leaves nothing ----
"$shim" -socket "$work/hv.sock" stop "$sid" || fail "StopVM"
left=$(virsh list --all --name | grep -c . || true)
[ "$left" -eq 0 ] || fail "$left domain(s) left: $(virsh list --all --name)"
vols=$(virsh vol-list "$pool" | awk '{print $1}' | grep -v '^podvm-base.qcow2$' || true)
[ -z "$vols" ] || fail "volumes left: $vols"
ip -n "$podns" link show vxlan1 >/dev/null 2>&1 && fail "vxlan1 left in the pod namespace"
tc -n "$podns" qdisc show dev eth0 | grep -q ingress && fail "ingress qdisc left on eth0"
[ -z "$(ls -A "$work/pods" | grep -v '^\.')" ] || fail "pod directory left"
kill "$caa_pid"
rc=0
wait "$caa_pid" || rc=$?
caa_pid=
[ "$rc" -eq 0 ] || fail "cloud-api-adaptor exit status $rc"
echo "StopVM removed the domain and its volumes; total $(since) s"

# ---- other initdata: refused ----
"$caa" >>"$work/caa.log" 2>&1 &
caa_pid=$!
wait_socket "$work/hv.sock" "$caa_pid" cloud-api-adaptor
sid2=d00dfeedd00dfeedd00dfeedd00dfeed
"$shim" -socket "$work/hv.sock" create "$sid2" -pod other -namespace default \
    -a "io.katacontainers.config.hypervisor.cc_init_data=$(cat "$work/other-initdata.toml")" \
    >/dev/null || fail "CreateVM with other initdata"
"$shim" -socket "$work/hv.sock" -timeout 300 start "$sid2" 2>"$work/start2.err" ||
    fail "StartVM with other initdata: $(cat "$work/start2.err")"
refused=
for _ in $(seq 180); do
    refused=$(kbs_stats | "$PY" -c 'import json,sys; r = [x["detail"] for x in json.load(sys.stdin)["refused"] if x["path"] == "/kbs/v0/attest"]; print(r[-1] if r else "")')
    [ -n "$refused" ] && break
    sleep 1
done
[ -n "$refused" ] || fail "the KBS saw no attestation from the pod with other initdata"
echo "$refused" | grep -q "PCR8 does not hold the expected initdata digest" ||
    fail "refused for another reason: $refused"
[ "$(kbs_stats | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["released"]))')" = 1 ] ||
    fail "the KBS released something to the pod with other initdata"
echo "a pod with other initdata: the KBS refused it ($refused) and released nothing"
"$shim" -socket "$work/hv.sock" stop "$sid2" || fail "StopVM of the other pod"
kill "$caa_pid"
wait "$caa_pid" || true
caa_pid=
echo "total $(since) s"
