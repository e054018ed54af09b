#!/usr/bin/env bash
# cloud-api-adaptor with CLOUD_PROVIDER=aws against the fake EC2, driven by
# pp-shim as the kata shim would. Every instance gets 127.0.0.1, and at
# first nobody listens on the forwarder port, so StartVM fails after the
# instance is made: the instance must be gone afterwards (no VM outlives a
# failed StartVM). Then a capacity error reaches the shim as
# RESOURCE_EXHAUSTED with EC2's code in the message. Then one whole pod
# lifecycle: this script plays the pod VM of the instance the fake made
# (process-user-data on its user data, pp-test-agent, the forwarder with the
# TLS material from it on the forwarder port), StartVM succeeds, the agent
# answers a health check through the adaptor's TLS tunnel, and StopVM
# terminates the instance. Nothing leaves 127.0.0.1.
# Run under fake_ec2.py: caa_aws.sh CAA_BINARY PP_SHIM_BINARY; the forwarder,
# process-user-data and pp-test-agent are taken from CAA_BINARY's directory.
set -euo pipefail

caa=$1
shim=$2
: "${FAKE_EC2_URL:?run me under fake_ec2.py}"
py=/usr/bin/python3
work=$(mktemp -d /tmp/pp-caa-aws-XXXXXX)
bindir=$(dirname "$caa")
pud=$bindir/process-user-data
agent=$bindir/pp-test-agent
apf=$bindir/agent-protocol-forwarder
caa_pid= start_pid= agent_pid= apf_pid=
stop_pid() { # stop_pid PID: end a process this script started
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    stop_pid "$start_pid"
    stop_pid "$apf_pid"
    stop_pid "$agent_pid"
    stop_pid "$caa_pid"
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=../../common/check.sh
. "$(dirname "$0")/../../common/check.sh"
fail() {
    echo "FAIL: $*"
    echo "--- cloud-api-adaptor log"
    cat "$work/caa.log" || true
    for f in pud.log agent.log apf.log; do
        [ -f "$work/vm/$f" ] || continue
        echo "--- pod VM stand-in: $f"
        cat "$work/vm/$f"
    done
    exit 1
}

for b in "$pud" "$agent" "$apf"; do
    [ -x "$b" ] || fail "no $b (build all targets)"
done

ctl() { # ctl PATH [JSON]: the fake's control API (POST with a body)
    $py -c '
import sys, urllib.request
url, body = sys.argv[1], sys.argv[2]
req = urllib.request.Request(url, data=body.encode() if body else None,
                             headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=30).read().decode())
' "$FAKE_EC2_URL$1" "${2-}"
}

field() { # field JSON KEY
    $py -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# Nobody listens on it until the lifecycle below starts the forwarder there.
fwd_port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
ctl /_fake/reset '{}' >/dev/null
ctl /_fake/config '{"private_ip": "127.0.0.1"}' >/dev/null

export CLOUD_PROVIDER=aws AWS_REGION=us-east-1 AWS_ENDPOINT_URL="$FAKE_EC2_URL" \
    AWS_EC2_METADATA_SERVICE_ENDPOINT="$FAKE_EC2_URL" \
    AWS_ACCESS_KEY_ID="$FAKE_EC2_ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$FAKE_EC2_SECRET_KEY" \
    PODVM_AMI_ID=ami-0123456789abcdef0 PODVM_INSTANCE_TYPES=m6a.large,m6a.xlarge \
    REMOTE_HYPERVISOR_ENDPOINT="$work/hv.sock" PODS_DIR="$work/pods" NODE_NAME=node-caa \
    FORWARDER_PORT="$fwd_port" PROXY_TIMEOUT=3s PP_LOG_LEVEL=debug \
    AWS_RETRY_BASE_DELAY_MS=5 AWS_RETRY_MAX_DELAY_MS=20
unset AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL_EC2 \
    AWS_ENDPOINT_URL_STS HTTPS_PROXY https_proxy http_proxy

"$caa" >"$work/caa.log" 2>&1 &
caa_pid=$!
wait_socket "$work/hv.sock" "$caa_pid" cloud-api-adaptor

# 1. The instance is made, the forwarder never answers, StartVM fails.
sid=0123456789abcdef0123456789abcdef
"$shim" -socket "$work/hv.sock" create "$sid" -pod nginx -namespace default >/dev/null ||
    fail "CreateVM"
rc=0
"$shim" -socket "$work/hv.sock" -timeout 60 start "$sid" 2>"$work/start.err" || rc=$?
[ "$rc" -ne 0 ] || fail "StartVM succeeded without a forwarder"
echo "StartVM failed as it must (status $rc): $(cat "$work/start.err")"
"$shim" -socket "$work/hv.sock" stop "$sid" || fail "StopVM"
rep=$(ctl /_fake/report)
created=$(field "$rep" created)
alive=$(field "$rep" alive_count)
sigfail=$(field "$rep" signature_failures)
echo "fake: $created instance(s) made, $alive left, $sigfail signature failures"
[ "$created" -eq 1 ] || fail "expected one instance, got $created"
[ "$alive" -eq 0 ] || fail "an instance outlived the failed StartVM"
[ "$sigfail" -eq 0 ] || fail "signature failures"

# 2. A capacity error: RESOURCE_EXHAUSTED (8) with EC2's code.
ctl /_fake/config '{"capacity_types": ["m6a.xlarge"]}' >/dev/null
sid2=fedcba9876543210fedcba9876543210
"$shim" -socket "$work/hv.sock" create "$sid2" -pod big -namespace default \
    -a io.katacontainers.config.hypervisor.machine_type=m6a.xlarge >/dev/null || fail "CreateVM 2"
rc=0
"$shim" -socket "$work/hv.sock" -timeout 60 start "$sid2" 2>"$work/start2.err" || rc=$?
echo "StartVM with no capacity: status $rc: $(cat "$work/start2.err")"
[ "$rc" -eq 8 ] || fail "expected RESOURCE_EXHAUSTED (8), got $rc"
grep -q InsufficientInstanceCapacity "$work/start2.err" || fail "EC2's code is not in the message"
"$shim" -socket "$work/hv.sock" stop "$sid2" || fail "StopVM 2"

# 3. A whole lifecycle, this script being the pod VM: once the fake has the
# instance, its user data is provisioned as the VM would, and the forwarder
# comes up with the TLS material the adaptor put there (StartVM keeps
# dialling for PROXY_TIMEOUT from the instance's creation).
sid3=00112233445566778899aabbccddeeff
vm=$work/vm
mkdir -p "$vm/root"
"$agent" -socket "$vm/agent.sock" >"$vm/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 100); do
    [ -S "$vm/agent.sock" ] && break
    kill -0 "$agent_pid" 2>/dev/null || fail "pp-test-agent exited"
    sleep 0.05
done
[ -S "$vm/agent.sock" ] || fail "no agent socket"
sock=$("$shim" -socket "$work/hv.sock" create "$sid3" -pod web -namespace default) ||
    fail "CreateVM 3"
"$shim" -socket "$work/hv.sock" -timeout 30 start "$sid3" 2>"$work/start3.err" &
start_pid=$!
$py - "$FAKE_EC2_URL/_fake/user-data?sandbox=$sid3" "$vm/user-data" <<'PY' ||
import sys, time, urllib.error, urllib.request
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    try:
        data = urllib.request.urlopen(sys.argv[1], timeout=5).read()
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
        time.sleep(0.02)
        continue
    with open(sys.argv[2], "wb") as f:
        f.write(data)
    sys.exit(0)
sys.exit(1)
PY
    fail "no instance made for the sandbox"
"$pud" provision-files --from "$vm/user-data" --root "$vm/root" >"$vm/pud.log" 2>&1 ||
    fail "process-user-data provision-files"
[ -s "$vm/root/run/peerpod/apf.json" ] || fail "no run/peerpod/apf.json from the user data"
"$apf" -listen "127.0.0.1:$fwd_port" -kata-agent-socket "$vm/agent.sock" \
    -config "$vm/root/run/peerpod/apf.json" -pod-namespace /nonexistent >"$vm/apf.log" 2>&1 &
apf_pid=$!
rc=0
wait "$start_pid" || rc=$?
start_pid=
[ "$rc" -eq 0 ] || fail "StartVM with the pod VM up: status $rc: $(cat "$work/start3.err")"
echo "StartVM with the pod VM up: ok"
health=$("$shim" -timeout 10 health "$sock") || fail "health check through $sock"
echo "agent through the adaptor, TLS and the forwarder: $health"
[ "$health" = "health SERVING" ] || fail "the agent answered \`$health\`"
! grep -q "NO TLS" "$vm/apf.log" || fail "the forwarder ran without TLS"
"$shim" -socket "$work/hv.sock" stop "$sid3" || fail "StopVM 3"
rep=$(ctl /_fake/report)
$py - "$rep" "$sid3" <<'PY' || fail "the lifecycle's instance is not terminated"
import json, sys
rep, sb = json.loads(sys.argv[1]), sys.argv[2]
mine = [i for i in rep["instances"].values() if i["tags"].get("peerpod/sandbox-id") == sb]
print(f"fake: the sandbox's instance(s): {[i['state'] for i in mine]}; "
      f"{rep['alive_count']} alive in all")
sys.exit(0 if len(mine) == 1 and mine[0]["state"] in ("shutting-down", "terminated")
         and rep["alive_count"] == 0 else 1)
PY
stop_pid "$apf_pid"
apf_pid=
stop_pid "$agent_pid"
agent_pid=

# User data over EC2's 16 KiB limit fails at CreateVM, before any VM.
big=$(head -c 30000 /dev/urandom | base64 -w 76)
toml=$(printf 'algorithm = "sha256"\nversion = "0.1.0"\n[data]\n"policy.rego" = \x27\x27\x27\n%s\n\x27\x27\x27\n' "$big")
set +e
"$shim" -socket "$work/hv.sock" create "${sid}big" -pod huge -namespace default \
    -a "io.katacontainers.config.hypervisor.cc_init_data=$toml" >/dev/null 2>"$work/create3.err"
rc=$?
set -e
echo "CreateVM with oversize user data: status $rc: $(cat "$work/create3.err")"
[ "$rc" -eq 3 ] || fail "expected INVALID_ARGUMENT (3), got $rc"
grep -q "limit of 16384 bytes" "$work/create3.err" || fail "the limit is not in the message"

kill "$caa_pid"
wait "$caa_pid" || true
caa_pid=
rep=$(ctl /_fake/report)
[ "$(field "$rep" alive_count)" -eq 0 ] || fail "instances left"
# The adaptor's log (at debug level) holds none of the credentials.
$py - "$work/caa.log" "$rep" <<'EOF' || fail "a secret is in the log"
import json, sys
log = open(sys.argv[1]).read()
for s in json.loads(sys.argv[2])["secrets"] + ["Signature="]:
    if s in log:
        sys.exit(1)
EOF
echo "ok: no instance left, no secret logged"
