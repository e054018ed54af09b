#!/usr/bin/env bash
# The SEV-SNP and TDX attesters against a configfs-tsm in FUSE whose
# provider builds and signs reports to the specifications (faketsm.py),
# and the strict test KBS verifying them:
#  - detection by the configfs-tsm provider; GetTeeType;
#  - GetEvidence: the JSON Trustee's verifiers read (SNP: the sev crate's
#    fields, re-encoded by the KBS into the report whose VCEK signature it
#    checks; TDX: the quote, whose attestation key signature it checks),
#    binding the runtime data; the extended report's VCEK in cert_chain;
#  - GetToken: the KBS attests it, with HOST_DATA / MRCONFIGID = the
#    initdata digest, and refuses a launch bound to other initdata;
#  - a provider answering garbage, or a report for other report data: a
#    clear error, and the agent keeps serving;
#  - no TEE at all: GetTeeType and GetEvidence say what is missing.
# Skips (77) saying why without /dev/fuse, python3-fusepy, the KBS's Python
# modules, or root.
#
# Usage: tee_test.sh BIN_DIR GUEST_CALL PYTHON
set -euo pipefail

BIN=$(cd "$1" && pwd)
CALL=$(realpath "$2")
PY=${3:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)

missing=
[ -c /dev/fuse ] || missing="$missing /dev/fuse"
command -v fusermount >/dev/null || command -v fusermount3 >/dev/null || missing="$missing fusermount"
"$PY" -c 'import fusepy, cryptography, jwt' 2>/dev/null || missing="$missing python3-fusepy/python3-cryptography/python3-jwt"
[ "$(id -u)" = 0 ] || missing="$missing (root)"
if [ -n "$missing" ]; then
    echo "SKIP: needs$missing (scripts/setup.sh installs them)"
    exit 77
fi
UMOUNT=$(command -v fusermount || command -v fusermount3)

work=$(mktemp -d)
pids=()
mounts=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for m in "${mounts[@]}"; do "$UMOUNT" -u "$m" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

pass=0
fail() {
    echo "FAIL: $*" >&2
    for f in *.log; do
        [ -s "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
    done
    exit 1
}
ok() {
    pass=$((pass + 1))
    echo "ok: $*"
}
call() { # WANT SOCK SERVICE METHOD ARGS: WANT a status, or `fail` for any failure
    local want=$1
    shift
    set +e
    "$CALL" "$@" >out.bin 2>err.txt
    rc=$?
    set -e
    if [ "$want" = fail ]; then
        [ "$rc" -ge 10 ] || fail "$3: exit $rc, want a failure ($(cat err.txt))"
    else
        [ "$rc" = "$want" ] || fail "$3: exit $rc, want $want ($(cat err.txt))"
    fi
}
AA=attestation_agent.AttestationAgentService

printf 'algorithm = "sha384"\nversion = "0.1.0"\n\n[data]\n"policy.rego" = "x"\n' >initdata.toml
printf 'algorithm = "sha384"\nversion = "0.1.0"\n\n[data]\n"policy.rego" = "y"\n' >other.toml
digest=$(openssl dgst -sha384 -r initdata.toml | cut -d' ' -f1)
mkdir -p res/default/key keys
printf 'tee-secret' >res/default/key/k1

port=8460
kbs() { # INITDATA LOG: starts a KBS on the next port, sets kbs_port
    port=$((port + 1))
    kbs_port=$port
    "$PY" "$HERE/kbs.py" --port "$port" --resources res --expect-initdata "$1" \
        --trusted-vcek "$work/keys/vcek.der" >"$2" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        "$PY" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/test/stats')" \
            2>/dev/null && return
        sleep 0.1
    done
    fail "KBS did not start"
}
tsm() { # PROVIDER DIR ARGS...: mounts a fake configfs-tsm report directory
    local provider=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    "$PY" "$HERE/faketsm.py" "$dir" --provider "$provider" --key-dir "$work/keys" \
        --log "$work/tsm.count" "$@" >"$work/tsm-$(basename "$dir").log" 2>&1 &
    pids+=($!)
    mounts+=("$dir")
    for _ in $(seq 100); do mountpoint -q "$dir" && return; sleep 0.05; done
    fail "fake configfs-tsm did not mount"
}
aa() { # NAME PORT ARGS...: starts an agent on socket NAME.sock
    local name=$1 p=$2
    shift 2
    printf '[token_configs.kbs]\nurl = "http://127.0.0.1:%s"\n' "$p" >"$name.toml"
    "$BIN/attestation-agent" -c "$name.toml" --attestation_sock "unix://$work/$name.sock" \
        --initdata /nonexistent --root "$work/empty" "$@" >"$name.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do [ -S "$name.sock" ] && return; sleep 0.05; done
    fail "agent $name did not start"
}
mkdir -p empty

for tee in snp tdx; do
    provider=$([ $tee = snp ] && echo sev_guest || echo tdx_guest)
    bound=$([ $tee = snp ] && echo --host-data "${digest:0:64}" || echo --mrconfigid "$digest")
    tsm $provider "$work/tsm-$tee" $bound
    kbs initdata.toml kbs-$tee.log
    good=$kbs_port
    kbs other.toml kbs-$tee-other.log
    other=$kbs_port
    # Detection by the provider: no --tee.
    aa $tee $good --tsm-dir "$work/tsm-$tee"
    call 0 $tee.sock $AA GetTeeType
    [ "$(cat out.bin)" = $tee ] || fail "$tee: GetTeeType says $(cat out.bin)"
    call 0 $tee.sock $AA GetEvidence "runtime-$tee"
    "$PY" - "$tee" "$HERE" <<'EOF' || fail "$tee: the KBS's verifier refuses GetEvidence"
import json, sys
sys.path.insert(0, sys.argv[2])
import kbs
ev = json.load(open("out.bin"))
rd = ("runtime-" + sys.argv[1]).encode()
if sys.argv[1] == "snp":
    kbs.verify_snp(ev, rd, None, open("keys/vcek.der", "rb").read())
    assert ev["attestation_report"]["cpuid_fam_id"] == 0x19
    assert ev["attestation_report"]["current_tcb"] == {"fmc": None, "bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}
    assert [c["cert_type"] for c in ev["cert_chain"]] == ["VCEK"]
else:
    kbs.verify_tdx(ev, rd, None)
    assert ev["cc_eventlog"] is None
EOF
    ok "$tee: detected by configfs-tsm; GetEvidence in Trustee's form, verified, binding the runtime data"

    call 0 $tee.sock $AA GetToken kbs
    "$PY" -c "import urllib.request as u, json; s = json.load(u.urlopen('http://127.0.0.1:$good/test/stats')); assert s['attested'] == 1, s" ||
        fail "$tee: the KBS did not record the attestation"
    aa $tee-other $other --tsm-dir "$work/tsm-$tee" --tee $tee
    call 17 $tee-other.sock $AA GetToken kbs
    grep -q "does not hold the expected initdata digest" err.txt || fail "$tee other initdata: $(cat err.txt)"
    ok "$tee: GetToken attested by the KBS; a KBS expecting other initdata refuses ($(cut -c1-60 err.txt))"
done

tsm sev_guest "$work/tsm-garbage" --garbage
aa garbage $good --tsm-dir "$work/tsm-garbage" --tee snp
call fail garbage.sock $AA GetEvidence x
grep -q "SNP report" err.txt || fail "garbage report: $(cat err.txt)"
said=$(cut -c1-50 err.txt)
tsm sev_guest "$work/tsm-mismatch" --mismatch
aa mismatch $good --tsm-dir "$work/tsm-mismatch" --tee snp
call fail mismatch.sock $AA GetEvidence x
grep -q "does not carry our report data" err.txt || fail "mismatched report: $(cat err.txt)"
call 0 garbage.sock $AA GetTeeType
ok "a provider answering garbage or another report data: clear errors ($said...); the agent keeps serving"

aa none $good --tsm-dir "$work/no-tsm"
call 19 none.sock $AA GetTeeType
grep -q "no TEE found" err.txt || fail "no TEE: $(cat err.txt)"
aa nosnp $good --tsm-dir "$work/no-tsm" --tee snp
call fail nosnp.sock $AA GetEvidence x
grep -q "no configfs-tsm and no" err.txt || fail "no SNP device: $(cat err.txt)"
aa notdx $good --tsm-dir "$work/no-tsm" --tee tdx
call fail notdx.sock $AA GetEvidence x
grep -q "needs configfs-tsm" err.txt || fail "no TDX: $(cat err.txt)"
ok "no TEE: GetTeeType FAILED_PRECONDITION; SNP and TDX name what is missing"
echo "$pass checks passed"
