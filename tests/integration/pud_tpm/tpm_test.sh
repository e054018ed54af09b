#!/usr/bin/env bash
# Initdata bound to the TEE by process-user-data:
#  - PCR8 (sha256) of a software TPM (swtpm, reached through the swtpm TCTI
#    inside a network namespace of the test's own) read back with
#    tpm2_pcrread equals sha256(PCR8 before || digest[0:32]), for sha384 and
#    sha256 initdata; `show` prints the same value;
#  - a launch-bound value in a fake configfs-tsm tree: SNP HOST_DATA and TDX
#    MRCONFIGID (quote v4 and v5) that match provision, that differ are
#    refused with nothing written and PCR8 untouched, all-zero or an
#    unknown provider are skipped with a log line, a set value without
#    initdata is refused;
#  - TEE detection for `show` (SNP, TDX, vTPM, none; by device or provider);
#  - a TPM that cannot be reached refuses provisioning.
# Without swtpm or tpm2-tools the TPM half is skipped with the reason and
# the test reports itself skipped (77) after running the rest.
#
# Usage: tpm_test.sh PROCESS_USER_DATA [PYTHON]
set -euo pipefail

PUD=$1
PY=${2:-/usr/bin/python3}
for tool in openssl gzip base64; do
    command -v $tool >/dev/null || { echo "SKIP: $tool missing"; exit 77; }
done

work=$(mktemp -d)
NS=pudtpm-$$
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

pass=0
fail() {
    echo "FAIL: $*" >&2
    [ -s err.log ] && { echo "--- err.log" >&2; tail -n 30 err.log >&2; }
    exit 1
}
ok() {
    pass=$((pass + 1))
    echo "ok: $*"
}

# ---- inputs ----------------------------------------------------------------------

make_ud() { # ALG OUT: user data with initdata of ALG; prints the hex digest
    printf 'algorithm = "%s"\nversion = "0.1.0"\n\n[data]\n"cdh.toml" = """\n[kbc]\nname = "cc_kbc"\n"""\n' \
        "$1" >"$2.toml"
    {
        printf '#cloud-config\nwrite_files:\n- path: /run/peerpod/apf.json\n  content: "{}"\n'
        printf -- '- path: /run/peerpod/initdata\n  content: %s\n' "$(gzip -c "$2.toml" | base64 -w0)"
    } >"$2"
    openssl dgst -"$1" -r "$2.toml" | cut -d' ' -f1
}
d384=$(make_ud sha384 ud384.yaml)
d256=$(make_ud sha256 ud256.yaml)
printf '#cloud-config\nwrite_files:\n- path: /run/peerpod/apf.json\n  content: "{}"\n' >ud-none.yaml

# blob KIND HEX OUT: a report with HEX at the launch-bound field.
blob() {
    "$PY" - "$1" "$2" "$3" <<'EOF'
import struct, sys
kind, value, out = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3]
if kind == "snp":                       # attestation report, HOST_DATA at 0xC0
    b = bytearray(0x4A0)
    struct.pack_into("<I", b, 0, 3)
    b[0xC0:0xC0 + 32] = value[:32].ljust(32, b"\0")
elif kind in ("tdx4", "tdx5"):          # TD quote; MRCONFIGID at body + 184
    body = 48 if kind == "tdx4" else 54
    b = bytearray(body + 584 + 4 + 64)
    struct.pack_into("<HHI", b, 0, 4 if kind == "tdx4" else 5, 2, 0x81)
    if kind == "tdx5":
        struct.pack_into("<HI", b, 48, 2, 584)
    b[body + 184:body + 184 + 48] = value[:48].ljust(48, b"\0")
else:
    b = bytearray(value)
open(out, "wb").write(b)
EOF
}

# tsm DIR PROVIDER KIND HEX: a configfs tree with our report entry made, as
# the kernel would fill it.
tsm() {
    local e=$1/tsm/report/process-user-data
    mkdir -p "$e"
    printf '%s\n' "$2" >"$e/provider"
    printf '1\n' >"$e/generation"
    : >"$e/inblob"
    blob "$3" "$4" "$e/outblob"
}

run() { # ROOT args...: sets rc
    local root=$1
    shift
    set +e
    "$PUD" provision-files --root "$root" --wait 0 "$@" >out.log 2>err.log
    rc=$?
    set -e
}
provisioned() {
    [ $rc = 0 ] || fail "process-user-data failed (rc $rc)"
    [ -f "$1/run/peerpod/apf.json" ] || fail "apf.json not written"
}
refused() { # ROOT WANT
    [ $rc != 0 ] || fail "process-user-data succeeded, expected a refusal ($2)"
    grep -qF -- "$2" err.log || fail "log lacks '$2'"
    [ -z "$(find "$1/run/peerpod" -type f 2>/dev/null)" ] || fail "wrote files despite '$2'"
}
new_root() { mktemp -d "$work/root.XXXXXX"; }

# ---- launch-bound values ----------------------------------------------------------------

other=$(printf 'a5%.0s' $(seq 48))
cases=(
    # name provider kind value ud expect
    "snp-match sev_guest snp $d384 ud384.yaml HOST_DATA matches (sev_guest)"
    "snp-match256 sev_guest snp $d256 ud256.yaml HOST_DATA matches (sev_guest)"
    "tdx4-match tdx_guest tdx4 $d384 ud384.yaml MRCONFIGID matches (tdx_guest)"
    "tdx5-match tdx_guest tdx5 $d384 ud384.yaml MRCONFIGID matches (tdx_guest)"
    "tdx-match256 tdx_guest tdx4 ${d256}00000000000000000000000000000000 ud256.yaml MRCONFIGID matches (tdx_guest)"
    "snp-zero sev_guest snp 00 ud384.yaml skipped: HOST_DATA unset (sev_guest)"
    "unknown arm_cca_guest snp $d384 ud384.yaml has no launch-bound value known here"
)
for c in "${cases[@]}"; do
    read -r name provider kind value ud want <<<"$c"
    tsm "$work/cfg-$name" "$provider" "$kind" "$value"
    root=$(new_root)
    run "$root" --from "$ud" --configfs "$work/cfg-$name"
    provisioned "$root"
    grep -qF -- "$want" err.log || fail "$name: log lacks '$want'"
    grep -qF -- "$want" "$root/run/peerpod/provision.json" || fail "$name: record lacks '$want'"
    [ "$(stat -c %s "$work/cfg-$name/tsm/report/process-user-data/inblob")" = 64 ] ||
        fail "$name: inblob not written"
done
ok "matching launch-bound values provision (SNP HOST_DATA; TDX MRCONFIGID, quote v4 and v5, sha256 zero-padded); unset and unknown are skipped and logged"

refusals=(
    "snp-differ sev_guest snp $other ud384.yaml does not match the initdata digest"
    "tdx-differ tdx_guest tdx4 $other ud384.yaml does not match the initdata digest"
    "tdx-256-unpadded tdx_guest tdx4 ${d256}ff ud256.yaml does not match the initdata digest"
    "snp-no-initdata sev_guest snp $d384 ud-none.yaml but the user data carries no initdata"
)
for c in "${refusals[@]}"; do
    read -r name provider kind value ud want <<<"$c"
    tsm "$work/cfg-$name" "$provider" "$kind" "$value"
    root=$(new_root)
    run "$root" --from "$ud" --configfs "$work/cfg-$name"
    refused "$root" "$want"
done
ok "mismatching launch-bound values refuse to provision, nothing written"

root=$(new_root)
run "$root" --from ud384.yaml
provisioned "$root"
grep -q "launch-bound initdata: skipped: no configfs-tsm" err.log || fail "no-TSM skip not logged"
grep -q "PCR8: no TPM" err.log || fail "no TPM not logged"
ok "no configfs-tsm and no TPM: provisioned, both logged"

# ---- TEE detection ----------------------------------------------------------------------

tee_case() { # WANT setup...: `show` on a tree
    local want=$1 d
    shift
    d=$(mktemp -d "$work/tee.XXXXXX")
    mkdir -p "$d/dev" "$d/sys"
    (cd "$d" && eval "$@")
    "$PUD" show --root "$d" >show.out 2>/dev/null || fail "show failed ($want)"
    grep -q "^tee: $want " show.out || { cat show.out >&2; fail "show: want tee $want"; }
}
tee_case snp ": >dev/sev-guest"
tee_case tdx ": >dev/tdx_guest"
tee_case vtpm ": >dev/tpmrm0"
tee_case none "true"
tee_case snp "mkdir -p sys/kernel/config/tsm/report/process-user-data && echo sev_guest >sys/kernel/config/tsm/report/process-user-data/provider"
tee_case tdx "mkdir -p sys/kernel/config/tsm/report/process-user-data && echo tdx_guest >sys/kernel/config/tsm/report/process-user-data/provider"
ok "show detects SNP, TDX (device or configfs-tsm provider), vTPM, none"

# ---- PCR8 on swtpm --------------------------------------------------------------------------

missing=
for tool in swtpm tpm2_pcrread ip; do
    command -v $tool >/dev/null || missing="$missing $tool"
done
[ "$(id -u)" = 0 ] || missing="$missing (root, for the namespace)"
if [ -n "$missing" ]; then
    echo "SKIP: PCR8 checks need$missing (scripts/setup.sh installs swtpm and tpm2-tools)"
    echo "$pass checks passed before the skip"
    exit 77
fi

ip netns add "$NS"
ip -n "$NS" link set lo up
mkdir tpmstate
ip netns exec "$NS" swtpm socket --tpm2 --tpmstate dir="$work/tpmstate" \
    --server type=tcp,port=2321,bindaddr=127.0.0.1 --ctrl type=tcp,port=2322,bindaddr=127.0.0.1 \
    --flags not-need-init,startup-clear --log file="$work/swtpm.log" &
pids+=($!)
TCTI=swtpm:host=127.0.0.1,port=2321
pcr8() {
    ip netns exec "$NS" tpm2_pcrread -T "$TCTI" sha256:8 -o "$work/pcr.bin" >/dev/null 2>&1 ||
        return 1
    od -An -tx1 -v "$work/pcr.bin" | tr -d ' \n'
}
for _ in $(seq 100); do
    pcr8 >/dev/null && break
    sleep 0.05
done
before=$(pcr8) || fail "swtpm did not come up"
[ "$before" = "$(printf '%064d' 0)" ] || fail "PCR8 of a fresh swtpm is $before"

extended() { # OLD DIGEST: sha256(OLD || DIGEST[0:32])
    "$PY" -c 'import hashlib, sys; print(hashlib.sha256(bytes.fromhex(sys.argv[1]) + bytes.fromhex(sys.argv[2])[:32]).hexdigest())' "$1" "$2"
}

for alg in 384 256; do
    eval "digest=\$d$alg"
    root=$(new_root)
    set +e
    ip netns exec "$NS" "$PUD" provision-files --root "$root" --from ud$alg.yaml --tcti "$TCTI" \
        >out.log 2>err.log
    rc=$?
    set -e
    provisioned "$root"
    after=$(pcr8)
    want=$(extended "$before" "$digest")
    [ "$after" = "$want" ] || fail "sha$alg: PCR8 $after, want $want"
    grep -q "extended PCR8 (sha256)" err.log || fail "sha$alg: extension not logged"
    ip netns exec "$NS" "$PUD" show --root "$root" --tcti "$TCTI" >show.out 2>/dev/null ||
        fail "show"
    grep -q "PCR8 sha256 $after" show.out || fail "show does not print PCR8 $after"
    before=$after
done
ok "PCR8 read back with tpm2_pcrread = sha256(PCR8 || digest[0:32]) for sha384 and sha256 initdata; show prints it"

# A refusal leaves PCR8 alone.
tsm "$work/cfg-tpm-differ" sev_guest snp "$other"
root=$(new_root)
set +e
ip netns exec "$NS" "$PUD" provision-files --root "$root" --from ud384.yaml --tcti "$TCTI" \
    --configfs "$work/cfg-tpm-differ" >out.log 2>err.log
rc=$?
set -e
refused "$root" "does not match the initdata digest"
[ "$(pcr8)" = "$before" ] || fail "PCR8 changed although provisioning was refused"
ok "a launch-bound mismatch leaves PCR8 untouched"

# A TPM that does not answer: nothing written.
root=$(new_root)
set +e
ip netns exec "$NS" "$PUD" provision-files --root "$root" --from ud384.yaml \
    --tcti swtpm:host=127.0.0.1,port=2999 >out.log 2>err.log
rc=$?
set -e
refused "$root" "TPM"
ok "an unreachable TPM refuses provisioning, nothing written"

echo "all $pass checks passed"
