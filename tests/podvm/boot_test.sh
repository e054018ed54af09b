#!/usr/bin/env bash
# Boots the test pod VM image with qemu, a config drive (cidata) carrying an
# apf.json, user-mode networking and a forward to the forwarder's port 15150;
# checks from the serial log that process-user-data provisioned and the
# forwarder listens, then makes agent API calls through the forwarder, over
# mutual TLS with certificates the test makes, to the stand-in agent.
#
# Usage: boot_test.sh PATH_FILE PODVM_CALL
#   PATH_FILE   holds the image path (written by the podvm_image fixture)
#   PODVM_CALL  the podvm-call binary
# Environment: PODVM_ACCEL=kvm|tcg overrides the accelerator choice.
set -euo pipefail

path_file=$1 podvm_call=$2

# shellcheck source=../common/check.sh
. "$(dirname "$0")/../common/check.sh"
skip() {
    echo "SKIP: $*"
    exit 77
}

command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 missing (Debian qemu-system-x86)"
command -v genisoimage >/dev/null || skip "genisoimage missing"
[ -s "$path_file" ] || fail "no image: $path_file is missing (the podvm_image_build fixture failed?)"
image=$(cat "$path_file")
[ -f "$image" ] || fail "image $image is missing"
# Opening /dev/kvm needs more than the file existing.
( : <>/dev/kvm ) 2>/dev/null || skip "/dev/kvm cannot be opened"

# KVM on a PVM host (kvm_pvm: shadow paging, no hardware virtualization for
# the guest) cannot run an unmodified kernel usefully: it stalls for minutes
# and fails on instructions it cannot emulate. There the test runs under TCG,
# slower but the same image, boot and checks.
accel=${PODVM_ACCEL:-kvm}
if [ -z "${PODVM_ACCEL:-}" ] && [ -d /sys/module/kvm_pvm ]; then
    echo "note: /dev/kvm is PVM (kvm_pvm), which cannot boot a stock kernel; using TCG"
    accel=tcg
fi
case $accel in
kvm) boot_limit=60 cpu=(-cpu host) ;;
tcg) boot_limit=240 cpu=(-cpu qemu64) ;;
*) fail "PODVM_ACCEL must be kvm or tcg, not \`$accel\`" ;;
esac

work=$(mktemp -d)
qemu_pid=
socat_pid=
cleanup() {
    [ -n "$socat_pid" ] && kill "$socat_pid" 2>/dev/null || true
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_log() {
    echo "---- serial log (last 60 lines) ----" >&2
    tail -n 60 "$work/serial.log" 2>/dev/null | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g' >&2 || true
}

# TLS material as cloud-api-adaptor makes it: a CA, a server certificate for
# the instance name in apf.json, and a client certificate the forwarder must
# require.
tls=$work/tls
mkdir -p "$tls"
(
    cd "$tls"
    ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
    ec ca.key && ec server.key && ec client.key
    openssl req -x509 -new -key ca.key -subj /CN=podvm-boot-test-ca -days 2 -out ca.crt \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
    for who in server client; do
        openssl req -new -key "$who.key" -subj "/CN=podvm-boot-test-$who" -out "$who.csr"
        printf 'subjectAltName=DNS:podvm-boot-test\nextendedKeyUsage=%sAuth\n' "$who" >"$who.ext"
        openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile "$who.ext" -out "$who.crt" 2>/dev/null
    done
) || fail "making the test's TLS material with openssl"

# The config drive, as a cloud or libvirt gives it: user-data is the
# #cloud-config CAA writes, with apf.json carrying the forwarder's TLS
# material (without it the forwarder refuses to serve).
mkdir -p "$work/cidata"
/usr/bin/python3 - "$tls" >"$work/cidata/user-data" <<'PY' || fail "writing user-data"
import json, sys
d = sys.argv[1]
read = lambda n: open(f"{d}/{n}").read()
apf = {"pod-namespace": "default", "pod-name": "podvm-boot-test",
       "tls-server-key": read("server.key"), "tls-server-cert": read("server.crt"),
       "tls-client-ca": read("ca.crt")}
body = json.dumps(apf, indent=2)
print("#cloud-config\nwrite_files:\n- path: /run/peerpod/apf.json\n  content: |")
for line in body.splitlines():
    print("    " + line)
PY
printf 'instance-id: podvm-boot-test\nlocal-hostname: podvm-boot-test\n' >"$work/cidata/meta-data"
genisoimage -quiet -J -r -V cidata -o "$work/cidata.iso" "$work/cidata/user-data" \
    "$work/cidata/meta-data" || fail "genisoimage"

# The cached image stays untouched: the VM writes to an overlay.
qemu-img create -q -f qcow2 -b "$image" -F qcow2 "$work/disk.qcow2" || fail "qemu-img create"

# A free local port for the forward (other tests may run beside us).
port=
for _ in $(seq 20); do
    p=$((20000 + RANDOM % 30000))
    if ! ss -Hltn "sport = :$p" | grep -q .; then
        port=$p
        break
    fi
done
[ -n "$port" ] || fail "no free local port"

start=$(date +%s%N)
qemu-system-x86_64 -accel "$accel" "${cpu[@]}" -m 1024 -smp 2 \
    -nodefaults -nographic -monitor none -no-reboot \
    -serial "file:$work/serial.log" \
    -drive "file=$work/disk.qcow2,if=virtio,format=qcow2" \
    -drive "file=$work/cidata.iso,if=virtio,format=raw,readonly=on" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:15150" \
    -device virtio-net-pci,netdev=n0 \
    >"$work/qemu.log" 2>&1 &
qemu_pid=$!
echo "booting $image ($accel), forwarder at 127.0.0.1:$port"

listening=0
deadline=$(($(date +%s) + boot_limit))
while [ "$(date +%s)" -lt "$deadline" ]; do
    if grep -q 'serving the kata agent API on' "$work/serial.log" 2>/dev/null; then
        listening=1
        break
    fi
    if ! kill -0 "$qemu_pid" 2>/dev/null; then
        cat "$work/qemu.log" >&2
        show_log
        fail "qemu exited before the forwarder listened"
    fi
    sleep 0.2
done
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
if [ $listening = 0 ]; then
    show_log
    fail "the forwarder did not listen within ${boot_limit}s"
fi
ok "forwarder listening $((elapsed_ms / 1000)).$((elapsed_ms % 1000 / 100)) s after qemu started ($accel)"

grep -q 'Booting from Hard Disk' "$work/serial.log" && grep -q 'SYSLINUX' "$work/serial.log" ||
    { show_log; fail "did not boot from the disk with its own boot loader"; }
grep -q 'Command line: .*console=ttyS0' "$work/serial.log" ||
    { show_log; fail "no kernel output on ttyS0"; }
ok "booted from the virtio disk through its own boot loader, kernel on ttyS0"

grep -q 'process-user-data.*read `user-data` from the iso9660 volume' "$work/serial.log" ||
    { show_log; fail "process-user-data did not read the config drive"; }
grep -q 'process-user-data.*wrote `/run/peerpod/apf.json`' "$work/serial.log" ||
    { show_log; fail "process-user-data did not write apf.json"; }
grep -q 'Finished .*process-user-data' "$work/serial.log" ||
    { show_log; fail "process-user-data.service did not finish"; }
ok "process-user-data provisioned /run/peerpod/apf.json from the config drive"

grep -q "DHCPv4 address" "$work/serial.log" || { show_log; fail "no DHCP lease on the NIC"; }
ok "the NIC came up by DHCP"

# A client without a certificate is refused: the forwarder requires mutual
# TLS, and plaintext ttrpc gets no answer.
if "$podvm_call" 127.0.0.1 "$port" 5 >"$work/plain.out" 2>&1; then
    cat "$work/plain.out" >&2
    fail "a plaintext call through the forwarder was answered"
fi
ok "a plaintext client gets no answer"

# Calls go through socat as the TLS client with the client certificate,
# checking the forwarder's certificate against the CA and the instance name.
lport=
for _ in $(seq 20); do
    p=$((20000 + RANDOM % 30000))
    if [ "$p" != "$port" ] && ! ss -Hltn "sport = :$p" | grep -q .; then
        lport=$p
        break
    fi
done
[ -n "$lport" ] || fail "no free local port for the TLS bridge"
socat "TCP-LISTEN:$lport,bind=127.0.0.1,reuseaddr,fork" \
    "OPENSSL:127.0.0.1:$port,cert=$tls/client.crt,key=$tls/client.key,cafile=$tls/ca.crt,verify=1,commonname=podvm-boot-test" \
    2>"$work/socat.log" &
socat_pid=$!
for _ in $(seq 50); do ss -Hltn "sport = :$lport" | grep -q . && break; sleep 0.1; done
if ! out=$("$podvm_call" 127.0.0.1 "$lport" 30 2>&1); then
    echo "$out" >&2
    cat "$work/socat.log" >&2
    show_log
    fail "agent API calls through the forwarder over mutual TLS failed"
fi
kill "$socat_pid" 2>/dev/null || true
echo "$out"
grep -q "agent version \`pp-test-agent" <<<"$out" || fail "the call did not reach the stand-in agent"
ok "grpc.Health/Check and GetGuestDetails reach the stand-in agent through the forwarder over mutual TLS"

echo "all $pass checks passed"
