#!/usr/bin/env bash
# process-user-data finding its user data: strict fake metadata services
# for Azure, AWS, GCP and IBM Cloud (fake_imds.py) on 169.254.169.254:80
# inside a network namespace this test makes, and real ISO9660 config
# drives built with genisoimage (and xorriso when installed).
#
# Checks: each cloud provisions (AWS with a session token, and IMDSv1 when
# the token request is refused); DMI strings pick the first cloud probed
# (log order and timing); absent, black-holed and slow services are skipped
# within the per-probe bound; --wait rides out a late service; hostile
# answers (bad base64, oversize, bad JSON, bad YAML, a token that would
# inject a header) are refused with nothing written and end the search;
# config drives in their forms; the config drive comes before the clouds.
#
# Usage: sources_test.sh PROCESS_USER_DATA [PYTHON]
set -euo pipefail

PUD=$1
PY=${2:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: needs root for network namespaces"
    exit 77
fi
for tool in ip openssl gzip base64; do
    command -v $tool >/dev/null || { echo "SKIP: $tool missing"; exit 77; }
done

work=$(mktemp -d)
NS=pudsrc-$$
HOLE=pudhole-$$
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    ip netns del "$HOLE" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

pass=0
fail() {
    echo "FAIL: $*" >&2
    for f in err.log server.err; do
        [ -s "$f" ] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }
    done
    exit 1
}
ok() {
    pass=$((pass + 1))
    echo "ok: $*"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# The namespace with the metadata address, and one where it is a black hole
# (an nftables rule there drops every packet to it).
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 169.254.169.254/32 dev lo
ip netns add "$HOLE"
ip -n "$HOLE" link set lo up
ip -n "$HOLE" addr add 169.254.169.254/32 dev lo
have_hole=0
if command -v nft >/dev/null && ip netns exec "$HOLE" nft -f - 2>/dev/null <<'EOF'
table inet pudhole {
    chain out { type filter hook output priority 0; ip daddr 169.254.169.254 drop; }
}
EOF
then
    have_hole=1
fi

# ---- inputs ------------------------------------------------------------------

printf '{"pod-name":"nginx","pod-namespace":"default"}\n' >apf.expected
cat >initdata.toml <<'EOF'
algorithm = "sha384"
version = "0.1.0"

[data]
"aa.toml" = '''
[token_configs.kbs]
url = 'http://10.0.0.1:8080'
'''
EOF
digest=$(openssl dgst -sha384 -r initdata.toml | cut -d' ' -f1)
{
    printf '#cloud-config\nwrite_files:\n- path: /run/peerpod/apf.json\n  content: |\n'
    printf '    %s\n' "$(cat apf.expected)"
    printf -- '- path: /run/peerpod/initdata\n  content: %s\n' "$(gzip -9 -c initdata.toml | base64 -w0)"
} >ud.yaml

mkdir -p empty-sys empty-dev
dmi() { # dmi NAME sys_vendor product_name chassis_asset_tag -> a sysfs tree
    local d=$work/sys-$1
    mkdir -p "$d/class/dmi/id"
    printf '%s\n' "$2" >"$d/class/dmi/id/sys_vendor"
    printf '%s\n' "$3" >"$d/class/dmi/id/product_name"
    printf '%s\n' "$4" >"$d/class/dmi/id/chassis_asset_tag"
    echo "$d"
}

# ---- helpers ------------------------------------------------------------------

server=
start_server() { # fake_imds.py arguments
    local ready=$work/ready.$RANDOM
    : >imds.log
    ip netns exec "$NS" "$PY" "$HERE/fake_imds.py" --bind 169.254.169.254 --port 80 \
        --ready "$ready" --log "$work/imds.log" "$@" >>server.err 2>&1 &
    server=$!
    pids+=("$server")
    for _ in $(seq 100); do
        [ -e "$ready" ] && return 0
        kill -0 "$server" 2>/dev/null || fail "fake_imds.py $* did not start"
        sleep 0.05
    done
    fail "fake_imds.py $* not ready"
}
stop_server() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
}

PT=800 # ms per probe
new_root() { mktemp -d "$work/root.XXXXXX"; }

# run NS ROOT SYSFS [args]: process-user-data in a namespace; sets $rc, $elapsed.
run() {
    local ns=$1 root=$2 sys=$3
    shift 3
    local t0
    t0=$(now_ms)
    set +e
    ip netns exec "$ns" "$PUD" provision-files --root "$root" --sysfs "$sys" --dev empty-dev \
        --metadata-url http://169.254.169.254 --probe-timeout $PT --wait 0 "$@" >out.log 2>err.log
    rc=$?
    set -e
    elapsed=$(($(now_ms) - t0))
}

provisioned() { # ROOT SOURCE
    local p=$1/run/peerpod
    [ $rc = 0 ] || fail "process-user-data failed (rc $rc), expected provisioning from $2"
    cmp -s apf.expected "$p/apf.json" || fail "$2: apf.json differs"
    [ "$(cat "$p/initdata.digest")" = "$digest" ] || fail "$2: digest differs"
    grep -q "\"source\": \"$2\"" "$p/provision.json" || fail "$2: record lacks the source"
    grep -q "user data from \`$2\`" err.log || fail "$2: source not logged"
}

refused() { # ROOT WANT: failed, logged WANT, wrote nothing
    [ $rc != 0 ] || fail "process-user-data succeeded, expected a refusal ($2)"
    grep -qF -- "$2" err.log || fail "log lacks '$2'"
    [ ! -e "$1/run" ] || fail "wrote under $1 despite the refusal ($2)"
    ! grep -q "wrote \`" err.log || fail "a file was written ($2)"
}

probe_order() { grep -o 'probing `[a-z-]*`' err.log | tr -d '`' | cut -d' ' -f2 | paste -sd, -; }

# ---- each cloud -------------------------------------------------------------------

for cloud in azure aws gcp ibmcloud; do
    extra=()
    [ $cloud = aws ] && extra=(--aws-mode required)
    start_server --clouds $cloud --user-data ud.yaml "${extra[@]}"
    root=$(new_root)
    run "$NS" "$root" empty-sys
    provisioned "$root" $cloud
    stop_server
    case $cloud in
    azure) grep -q '"Metadata": "true"' imds.log || fail "azure: no Metadata header" ;;
    aws)
        grep -q '"method": "PUT", "path": "/latest/api/token", "status": 200' imds.log ||
            fail "aws: no token"
        grep -q '"path": "/latest/user-data", "status": 200.*"token": true' imds.log ||
            fail "aws: user data not read with the token"
        ;;
    gcp) grep -q '"Metadata-Flavor": "Google"' imds.log || fail "gcp: no Metadata-Flavor" ;;
    ibmcloud)
        grep -q '"path": "/metadata/v1/instance/initialization?version=2022-03-01", "status": 200.*"token": true' \
            imds.log || fail "ibmcloud: initialization not read with the token"
        ;;
    esac
    grep -qi "token\": \"\|AQAE\|Bearer [A-Za-z0-9]" err.log && fail "$cloud: token in the log"
    ok "$cloud: provisioned from its metadata service, files and digest right ($elapsed ms)"
done

start_server --clouds aws --user-data ud.yaml --aws-mode v1
root=$(new_root)
run "$NS" "$root" empty-sys
provisioned "$root" aws
grep -q "trying IMDSv1" err.log || fail "aws: IMDSv1 fallback not logged"
grep -q '"path": "/latest/user-data", "status": 200.*"token": false' imds.log ||
    fail "aws: IMDSv1 read not seen"
stop_server
ok "aws: token request refused, IMDSv1 fallback provisions"

# ---- DMI hints ---------------------------------------------------------------------

while read -r cloud vendor product tag; do
    sys=$(dmi "$cloud-$RANDOM" "${vendor//_/ }" "${product//_/ }" "${tag//_/ }")
    start_server --clouds $cloud --user-data ud.yaml
    root=$(new_root)
    run "$NS" "$root" "$sys"
    provisioned "$root" $cloud
    stop_server
    [ "$(probe_order)" = "config-drive,$cloud" ] ||
        fail "DMI $vendor/$product/$tag: probed $(probe_order), want config-drive,$cloud"
    grep -q "trying \`$cloud\` first among the clouds" err.log || fail "hint not logged"
done <<'EOF'
azure Microsoft_Corporation Virtual_Machine 7783-7084-3265-9085-8269-3286-77
aws Amazon_EC2 m6a.large Amazon_EC2
gcp Google Google_Compute_Engine -
ibmcloud IBM:Cloud Standard_PC ibmcloud
EOF
ok "DMI strings put the right cloud first (azure, aws, gcp, ibmcloud)"

# Timing: requests for other clouds hang; the hint avoids waiting on them.
start_server --clouds aws --user-data ud.yaml --stall-unknown 10
root=$(new_root)
run "$NS" "$root" empty-sys
provisioned "$root" aws
[ "$(probe_order)" = "config-drive,azure,aws" ] || fail "no hint: probed $(probe_order)"
[ $elapsed -ge $PT ] || fail "no hint: $elapsed ms, expected the azure probe to time out ($PT ms)"
[ $elapsed -lt $((PT + 1500)) ] || fail "no hint: $elapsed ms, azure probe not bounded"
slow=$elapsed
root=$(new_root)
run "$NS" "$root" "$(dmi ec2 "Amazon EC2" "m6a.large" "")"
provisioned "$root" aws
[ $elapsed -lt $PT ] || fail "with the hint: $elapsed ms, expected well under $PT ms"
stop_server
ok "DMI hint skips a stalling probe: $elapsed ms with it, $slow ms without"

# ---- absent, black-holed, slow, failing, late ------------------------------------------

root=$(new_root)
run "$NS" "$root" empty-sys
refused "$root" "no user data found (tried: config-drive, azure, aws, gcp, ibmcloud)"
[ $elapsed -lt 2000 ] || fail "no service listening: took $elapsed ms"
ok "no service listening: every probe refused at once ($elapsed ms), nothing written"

if [ $have_hole = 1 ]; then
    root=$(new_root)
    run "$HOLE" "$root" empty-sys
    refused "$root" "no user data found (tried: config-drive, azure, aws, gcp, ibmcloud)"
    [ $elapsed -ge $((4 * PT - 200)) ] || fail "black hole: $elapsed ms, probes did not wait"
    [ $elapsed -lt $((4 * PT + 1500)) ] || fail "black hole: took $elapsed ms for 4 probes of $PT"
    for ms in $(grep -o 'has no user data ([0-9]* ms)' err.log | grep -o '[0-9]*'); do
        [ "$ms" -le $((PT + 300)) ] || fail "black hole: a probe took $ms ms (bound $PT)"
    done
    ok "black-holed metadata address: each probe bounded by $PT ms ($elapsed ms in all)"
else
    echo "note: nftables unavailable in a namespace; black-hole case not run"
fi

start_server --clouds azure,aws --slow azure --delay 10 --user-data ud.yaml
root=$(new_root)
run "$NS" "$root" empty-sys
provisioned "$root" aws
grep -q '`azure` has no user data' err.log || fail "slow azure not skipped"
[ $elapsed -lt $((PT + 1500)) ] || fail "slow azure: took $elapsed ms"
stop_server
ok "slow azure skipped within $PT ms, aws provisions ($elapsed ms)"

start_server --clouds azure --status 500 --user-data ud.yaml
root=$(new_root)
run "$NS" "$root" empty-sys
refused "$root" "no user data found"
grep -q "answered HTTP 500" err.log || fail "HTTP 500 not logged"
stop_server
ok "azure answering HTTP 500: skipped, logged, nothing written"

root=$(new_root)
t0=$(now_ms)
ip netns exec "$NS" "$PUD" provision-files --root "$root" --sysfs empty-sys --dev empty-dev \
    --metadata-url http://169.254.169.254 --probe-timeout 300 --wait 20 >out.log 2>err.log &
late=$!
pids+=("$late")
sleep 1.5
start_server --clouds gcp --user-data ud.yaml
set +e
wait $late
rc=$?
set -e
elapsed=$(($(now_ms) - t0))
provisioned "$root" gcp
grep -q "no user data yet (round 1)" err.log || fail "--wait: no retry logged"
[ $elapsed -lt 9000 ] || fail "--wait: took $elapsed ms"
stop_server
ok "--wait: a metadata service that comes up late is found ($elapsed ms)"

# ---- hostile answers -------------------------------------------------------------------

hostile() { # WANT cloud fake_imds.py-args...
    local want=$1
    shift
    start_server "$@"
    root=$(new_root)
    run "$NS" "$root" empty-sys
    stop_server
    refused "$root" "$want"
}
printf 'I2Nsb3VkLWNvbmZpZwp3cml0ZV9maWxlczo' >trunc.b64
hostile "answer is not valid base64" --clouds azure,aws --raw-body trunc.b64
[ "$(probe_order)" = "config-drive,azure" ] || fail "search went on after a hostile answer"
head -c 300000 /dev/zero | tr '\0' a >big
hostile "user data larger than the limit of 262144 bytes" --clouds aws --raw-body big
base64 -w0 big >big.b64
hostile "user data larger than the limit of 262144 bytes" --clouds gcp --raw-body big.b64
printf '#cloud-config\nwrite_files: [\n' >bad.yaml
hostile "flow" --clouds gcp --user-data bad.yaml
printf '{"user_data": "a", "user_data": "b"}' >dup.json
hostile "answer is not JSON" --clouds ibmcloud --raw-body dup.json
printf '{"user_data": 5}' >num.json
hostile "\`user_data\` is not a string" --clouds ibmcloud --raw-body num.json
hostile "token holds a byte a header cannot carry" --clouds aws --aws-bad-token --user-data ud.yaml
printf '#cloud-config\nwrite_files:\n- path: /etc/shadow\n  content: x\n' >evil.yaml
hostile "is outside /run/peerpod/" --clouds azure --user-data evil.yaml
ok "hostile answers (truncated base64, oversize raw and base64, bad YAML, bad JSON, wrong types, header injection, paths off the list) refused, nothing written"

# ---- config drive -----------------------------------------------------------------------

command -v genisoimage >/dev/null || fail "genisoimage missing (scripts/setup.sh installs it)"
mkdir -p src
cp ud.yaml src/user-data
echo "instance-id: pod" >src/meta-data

drive() { # NAME LABEL maker-args...: an image as <name>/dev/vdb, listed in <name>/sys
    local d=$work/$1 label=$2
    shift 2
    mkdir -p "$d/dev" "$d/sys/class/block/vdb" "$d/sys/class/block/vda" "$d/root"
    head -c 65536 /dev/zero >"$d/dev/vda" # another disk, not iso9660
    "$@" -V "$label" -o "$d/dev/vdb" src/user-data src/meta-data 2>/dev/null
}
drive_run() { # NAME [args]
    local d=$work/$1
    shift
    set +e
    "$PUD" provision-files --root "$d/root" --sysfs "$d/sys" --dev "$d/dev" --wait 0 "$@" \
        >out.log 2>err.log
    rc=$?
    set -e
}

for form in "rr+joliet:-J -r" "joliet:-J" "rockridge:-r"; do
    name=${form%%:*}
    drive "$name" cidata genisoimage -quiet ${form#*:}
    drive_run "$name"
    provisioned "$work/$name/root" config-drive
    grep -q "iso9660 volume on \`$work/$name/dev/vdb\`" err.log || fail "$name: device not logged"
done
ok "config drive: genisoimage images (rock ridge + joliet, joliet, rock ridge) read without mounting"

if command -v xorriso >/dev/null; then
    drive xorriso cidata xorriso -as mkisofs -quiet -J -r
    drive_run xorriso
    provisioned "$work/xorriso/root" config-drive
    ok "config drive: xorriso image"
else
    echo "note: xorriso not installed; its image form not tried"
fi

d=$work/bylabel
mkdir -p "$d/dev/disk/by-label" "$d/sys" "$d/root"
genisoimage -quiet -J -r -V CIDATA -o "$d/dev/sr0" src/user-data src/meta-data
ln -s ../../sr0 "$d/dev/disk/by-label/CIDATA"
drive_run bylabel
provisioned "$d/root" config-drive
ok "config drive found by label (/dev/disk/by-label/CIDATA), no block device scan"

drive other CONFIG-2 genisoimage -quiet -J -r
drive_run other
refused "$work/other/root" "no iso9660 volume labelled \`cidata\`"
drive plain cidata genisoimage -quiet
drive_run plain
refused "$work/plain/root" "has no \`user-data\` in its root directory"
ok "volumes not labelled cidata, and 8.3-only names, are not taken"

drive oversize cidata genisoimage -quiet -J -r
drive_run oversize --max-size 100
refused "$work/oversize/root" "larger than the limit of 100 bytes"
cp bad.yaml src/user-data
drive badyaml cidata genisoimage -quiet -J -r
drive_run badyaml
refused "$work/badyaml/root" "flow"
cp ud.yaml src/user-data
ok "config drive with oversized or invalid user data: refused, nothing written"

# The config drive comes first, even with a metadata service answering.
drive first cidata genisoimage -quiet -J -r
start_server --clouds aws --user-data bad.yaml
set +e
ip netns exec "$NS" "$PUD" provision-files --root "$work/first/root" --sysfs "$work/first/sys" \
    --dev "$work/first/dev" --metadata-url http://169.254.169.254 --wait 0 >out.log 2>err.log
rc=$?
set -e
stop_server
provisioned "$work/first/root" config-drive
[ "$(probe_order)" = "config-drive" ] || fail "probed $(probe_order) after the config drive"
ok "config drive before the metadata services"

echo "all $pass checks passed"
