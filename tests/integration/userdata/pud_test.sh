#!/usr/bin/env bash
# process-user-data against a temporary root: files, contents, modes, the
# initdata digest against the openssl CLI, gzip from the gzip CLI, refusals
# (planted symlinks, hostile user data, gzip bombs) that leave nothing
# written, the config drive source, and `show`.
#
# Usage: pud_test.sh PROCESS_USER_DATA UD_TOOL
set -euo pipefail
# shellcheck source=../../common/check.sh
. "$(dirname "$0")/../../common/check.sh"

PUD=$1
TOOL=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

# Runs process-user-data, which must fail; its log must mention $1.
expect_refusal() {
    local want=$1
    shift
    if "$PUD" "$@" >out.log 2>err.log; then
        cat err.log >&2
        fail "process-user-data $* succeeded, expected a refusal ($want)"
    fi
    grep -qF -- "$want" err.log || { cat err.log >&2; fail "log lacks '$want'"; }
}

mode_of() { stat -c %a "$1"; }

# No file was written under root $1 (directories may exist, nothing in them).
nothing_written() {
    local left
    left=$(find "$1/run/peerpod" -mindepth 1 ! -type l -print -quit 2>/dev/null || true)
    if [ -n "$left" ]; then
        find "$1/run/peerpod" -ls >&2
        fail "files written under $1 despite the refusal"
    fi
}

# ---- inputs ---------------------------------------------------------------

cat >key.pem <<'EOF'
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIDq0Xh1qgqRk4b0p8Qm0p8Qm0p8Qm0p8Qm0p8Qm0p8QmoAoGCCqGSM49
AwEHoUQDQgAE2x0ZxbP0p8Qm0p8Qm0p8Qm0p8Qm0p8Qm0p8Qm0p8Qm0p8Qm0p8Q
-----END EC PRIVATE KEY-----
EOF
printf '{"pod-name":"nginx","pod-namespace":"default","tls-server-key":"%s"}\n' \
    "$(sed ':a;N;$!ba;s/\n/\\n/g' key.pem)" >apf.json
printf '{"auths":{"registry.example":{"auth":"dXNlcjpwYXNz"}}}' >auth.json
: >empty
printf 'from user data  \n' >cdh-ud.toml

cat >aa.expected <<'EOF'
[token_configs]
[token_configs.kbs]
url = 'http://10.0.0.1:8080'
EOF
cat >cdh.expected <<'EOF'
socket = 'unix:///run/confidential-containers/cdh.sock'
[kbc]
name = 'cc_kbc'
EOF
printf 'package agent_policy\n\ndefault ExecProcessRequest := false\n' >policy.expected

make_initdata() { # $1 algorithm
    printf 'algorithm = "%s"\nversion = "0.1.0"\n\n[data]\n' "$1"
    printf '"aa.toml" = '"'''"'\n%s'"'''"'\n' "$(cat aa.expected)
"
    printf '"cdh.toml" = """\n%s"""\n' "$(cat cdh.expected)
"
    printf '"policy.rego" = '"'''"'\n%s'"'''"'\n' "$(cat policy.expected)
"
}
for alg in sha256 sha384 sha512; do
    make_initdata $alg >initdata-$alg.toml
done

# ---- digests: ours against the openssl CLI ---------------------------------

for alg in sha256 sha384 sha512; do
    want=$(openssl dgst -$alg -r initdata-$alg.toml | cut -d' ' -f1)
    got=$("$TOOL" initdata initdata-$alg.toml)
    [ "$got" = "$alg $want" ] || fail "digest $alg: got '$got', openssl says '$want'"
done
ok "initdata digests match openssl dgst (sha256, sha384, sha512)"

# ---- full provisioning from builder output ---------------------------------

"$TOOL" encode-initdata initdata-sha384.toml >initdata.b64
"$TOOL" build /run/peerpod/apf.json=apf.json /run/peerpod/auth.json=auth.json \
    /run/peerpod/initdata=initdata.b64 /run/peerpod/scratch-space.marker=empty \
    /run/peerpod/cdh.toml=cdh-ud.toml >ud.yaml
root=$work/root1
mkdir "$root"
"$PUD" provision-files --from ud.yaml --root "$root" 2>pud.log ||
    { cat pud.log >&2; fail "provision"; }
p=$root/run/peerpod
cmp apf.json "$p/apf.json" || fail "apf.json differs"
cmp auth.json "$p/auth.json" || fail "auth.json differs"
cmp initdata.b64 "$p/initdata" || fail "initdata differs"
cmp empty "$p/scratch-space.marker" || fail "scratch-space.marker differs"
cmp aa.expected "$p/aa.toml" || fail "aa.toml differs"
cmp cdh.expected "$p/cdh.toml" || fail "cdh.toml (initdata must win over user data) differs"
cmp policy.expected "$p/policy.rego" || fail "policy.rego differs"
want=$(openssl dgst -sha384 -r initdata-sha384.toml | cut -d' ' -f1)
[ "$(cat "$p/initdata.digest")" = "$want" ] || fail "initdata.digest is not openssl's sha384"
[ "$(stat -c %s "$p/initdata.digest")" = 96 ] || fail "initdata.digest has extra bytes"
for f in apf.json auth.json initdata; do
    [ "$(mode_of "$p/$f")" = 600 ] || fail "$f mode $(mode_of "$p/$f"), want 600"
done
for f in scratch-space.marker aa.toml cdh.toml policy.rego initdata.digest; do
    [ "$(mode_of "$p/$f")" = 644 ] || fail "$f mode $(mode_of "$p/$f"), want 644"
done
[ "$(mode_of "$root/run")" = 755 ] && [ "$(mode_of "$p")" = 755 ] || fail "directory modes"
[ -z "$(find "$p" -name '.*' -print -quit)" ] || fail "temporary files left behind"
grep -q "replaces the one in user data" pud.log || fail "no warning about cdh.toml replaced"
if grep -q "MHcCAQ\|dXNlcjpwYXNz" pud.log; then fail "secrets in the log"; fi
ok "provision-files writes contents, modes, digest; initdata wins; no secrets logged"

# Again over the same root: files replaced, modes restored.
chmod 666 "$p/auth.json"
"$PUD" provision-files --from ud.yaml --root "$root" 2>/dev/null || fail "re-provision"
[ "$(mode_of "$p/auth.json")" = 600 ] || fail "mode not restored on re-provision"
ok "re-provisioning replaces files and restores modes"

# show: lists files and verifies the digest.
"$PUD" show --root "$root" >show.out || fail "show"
grep -q "initdata digest: $want" show.out || fail "show lacks the digest"
grep -q "algorithm sha384, digest verified" show.out || fail "show did not verify"
grep -q "/run/peerpod/auth.json .* 0600" show.out || fail "show lacks auth.json"
printf '%s' "$want" | tr '0-9a-f' '1-9a-f0' >"$p/initdata.digest"
if "$PUD" show --root "$root" >show.out 2>show.err; then fail "show accepted a wrong digest"; fi
grep -q MISMATCH show.out || fail "show did not report the mismatch"
"$PUD" show --root "$work/none" | grep -q "nothing provisioned" || fail "show on empty root"
ok "show prints files and verifies the digest"

# ---- initdata from the gzip and base64 CLIs, hand-written YAML -------------

for alg in sha256 sha512; do
    root=$work/root-$alg
    mkdir "$root"
    b64=$(gzip -9 -c initdata-$alg.toml | base64 -w0)
    cat >ud-$alg.yaml <<EOF
#cloud-config
write_files:
  - path: "/run/peerpod/initdata"
    content: $b64
  - path: /run/peerpod/aa.toml
    content: |
      [overridden]
EOF
    "$PUD" provision-files --from ud-$alg.yaml --root "$root" 2>/dev/null || fail "gzip CLI $alg"
    want=$(openssl dgst -$alg -r initdata-$alg.toml | cut -d' ' -f1)
    [ "$(cat "$root/run/peerpod/initdata.digest")" = "$want" ] || fail "$alg digest"
    cmp aa.expected "$root/run/peerpod/aa.toml" || fail "$alg aa.toml"
done
ok "initdata made by gzip | base64 decodes; sha256 and sha512 digests match openssl"

# ---- config drive source ----------------------------------------------------

root=$work/root-cd
mkdir -p "$root/media/cidata"
expect_refusal "no user data found (tried: config-drive)" provision-files --root "$root" --wait 0
cp ud.yaml "$root/media/cidata/user-data"
"$PUD" provision-files --root "$root" 2>pud.log || { cat pud.log >&2; fail "config drive"; }
grep -q "user data from \`config-drive\`" pud.log || fail "source not logged"
cmp apf.json "$root/run/peerpod/apf.json" || fail "config drive apf.json"
ok "config drive source"

# ---- refusals: nothing written ----------------------------------------------

# A symlink planted at a target.
root=$work/root-link
mkdir -p "$root/run/peerpod"
echo original >victim
ln -s "$work/victim" "$root/run/peerpod/auth.json"
expect_refusal "is a symlink; refusing to replace it" provision-files --from ud.yaml --root "$root"
[ "$(cat victim)" = original ] || fail "symlink target written"
[ -L "$root/run/peerpod/auth.json" ] || fail "symlink replaced"
nothing_written "$root"
ok "symlink at a target: refused, nothing written"

# A symlink as /run/peerpod, and as /run.
root=$work/root-dirlink
mkdir -p "$root/run" elsewhere
ln -s "$work/elsewhere" "$root/run/peerpod"
expect_refusal "\`/run/peerpod\` is a symlink" provision-files --from ud.yaml --root "$root"
[ -z "$(ls -A elsewhere)" ] || fail "wrote through the /run/peerpod symlink"
root=$work/root-runlink
mkdir -p "$root"
ln -s "$work/elsewhere" "$root/run"
expect_refusal "\`/run\` is a symlink" provision-files --from ud.yaml --root "$root"
[ -z "$(ls -A elsewhere)" ] || fail "wrote through the /run symlink"
ok "symlinked /run or /run/peerpod: refused, nothing written"

# A directory where a file goes.
root=$work/root-dir
mkdir -p "$root/run/peerpod/apf.json"
expect_refusal "is not a regular file" provision-files --from ud.yaml --root "$root"
ok "directory at a target: refused"

# Hostile or broken user data: refused before anything is created.
hostile() { # $1 expected message; the YAML on stdin
    local f root
    f=$(mktemp -p "$work" hostile.XXXX)
    cat >"$f"
    root=$(mktemp -d -p "$work" root.XXXX)
    expect_refusal "$1" provision-files --from "$f" --root "$root"
    [ ! -e "$root/run" ] || fail "created $root/run for hostile input ($1)"
}
hostile "unknown key \`owner\`" <<'EOF'
#cloud-config
write_files:
- path: /run/peerpod/apf.json
  owner: root
  content: x
EOF
hostile "contains \`..\`" <<'EOF'
#cloud-config
write_files:
- path: /run/peerpod/../../etc/cron.d/x
  content: x
EOF
hostile "is outside /run/peerpod/" <<'EOF'
#cloud-config
write_files:
- path: /etc/passwd
  content: x
EOF
hostile "unknown top-level key \`runcmd\`" <<'EOF'
#cloud-config
runcmd:
- [sh, -c, reboot]
EOF
hostile "duplicate path" <<'EOF'
#cloud-config
write_files:
- path: /run/peerpod/apf.json
  content: a
- path: /run/peerpod/apf.json
  content: b
EOF
hostile "invalid base64" <<'EOF'
#cloud-config
write_files:
- path: /run/peerpod/apf.json
  content: "{}"
- path: /run/peerpod/initdata
  content: H4sIAAAAAAAAA+3BMQEAAA
EOF
hostile "unknown key \`extra\`" < <(
    printf '#cloud-config\nwrite_files:\n- path: /run/peerpod/initdata\n  content: %s\n' \
        "$(printf 'algorithm = "sha256"\nversion = "0.1.0"\nextra = "x"\n' | gzip | base64 -w0)"
)
# 64 MiB of zeros: small on the wire, refused at the decompression limit.
hostile "exceeds the limit of 1048576 bytes" < <(
    printf '#cloud-config\nwrite_files:\n- path: /run/peerpod/apf.json\n  content: x1\n'
    printf -- '- path: /run/peerpod/initdata\n  content: %s\n' \
        "$(head -c 64M /dev/zero | gzip -9 | base64 -w0)"
)
ok "hostile user data and initdata: refused, nothing created"

root=$work/root-big
mkdir "$root"
expect_refusal "larger than the limit of 100 bytes" \
    provision-files --from ud.yaml --root "$root" --max-size 100
ok "--max-size limit"

# Usage errors exit 2.
set +e
"$PUD" >/dev/null 2>&1; [ $? = 2 ] || fail "no command: want exit 2"
"$PUD" bogus >/dev/null 2>&1; [ $? = 2 ] || fail "unknown command: want exit 2"
"$PUD" provision-files --max-size x >/dev/null 2>&1; [ $? = 2 ] || fail "bad size: want exit 2"
"$PUD" show extra >/dev/null 2>&1; [ $? = 2 ] || fail "extra argument: want exit 2"
set -e
ok "usage errors"

# Upstream's command line: --version (-v), and --user-data-fetch-timeout
# (-t, seconds), the time given to find the user data.
"$PUD" --version | grep -q '^process-user-data ' || fail "--version"
"$PUD" -v | grep -q '^process-user-data ' || fail "-v"
root=$work/root-empty
mkdir -p "$root/media/cidata"
expect_refusal "no user data found" provision-files --root "$root" --user-data-fetch-timeout 0
t0=$(date +%s%N)
expect_refusal "no user data found" provision-files --root "$root" -t 1
elapsed=$((($(date +%s%N) - t0) / 1000000))
[ $elapsed -ge 900 ] || fail "-t 1 gave up after $elapsed ms"
ok "upstream's --version, -v, --user-data-fetch-timeout and -t"

# User data as upstream's daemon writes it (tests/compat/data: its
# template's layout, the scratch space marker without `content`).
root=$work/root-upstream
mkdir "$root"
"$PUD" provision-files --from "$PP_COMPAT_DATA/upstream-userdata.yaml" --root "$root" \
    2>pud.log || { cat pud.log >&2; fail "upstream's user data"; }
for f in apf.json auth.json initdata initdata.digest aa.toml cdh.toml policy.rego \
    scratch-space.marker; do
    [ -f "$root/run/peerpod/$f" ] || fail "upstream's user data: no $f"
done
[ ! -s "$root/run/peerpod/scratch-space.marker" ] || fail "the marker is not empty"
grep -q '"tls-cipher-suites": \[' "$root/run/peerpod/apf.json" || fail "apf.json changed"
grep -q 'url = "http://10.0.0.10:8080"' "$root/run/peerpod/aa.toml" || fail "aa.toml"
ok "user data as upstream's daemon writes it"

echo "all $pass checks passed"
