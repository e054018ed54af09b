#!/usr/bin/env bash
# The packer templates of podvm/packer: each validates (both variants) with
# its required variables set, offline and without cloud credentials; broken
# ones fail; all are formatted; every template installs through
# install-files.sh; and the runtime package list covers the libraries the
# binaries link.
#
# Usage: packer_test.sh PACKER_DIR BIN_DIR
set -euo pipefail

packer_dir=$(cd "$1" && pwd)
bin_dir=$(cd "$2" && pwd)
command -v packer >/dev/null || { echo "SKIP: packer missing (Debian packer)"; exit 77; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# shellcheck source=../common/check.sh
. "$(dirname "$0")/../common/check.sh"

# No credentials, no packer state of the user's, no version check call home.
# The qemu-based templates would fetch the checksum list of the base image:
# a fixed checksum keeps validation offline.
clean_env=(env -i PATH="$PATH" HOME="$work/home" CHECKPOINT_DISABLE=1 TMPDIR="$work")
mkdir -p "$work/home"
offline_checksum=sha512:$(printf '0%.0s' $(seq 128))
declare -A required=(
    [qemu]="-var base_image_checksum=$offline_checksum"
    [ibmcloud]="-var base_image_checksum=$offline_checksum"
    [aws]=""
    [azure]="-var subscription_id=00000000-0000-0000-0000-000000000000 -var resource_group=podvm"
    [gcp]="-var project_id=podvm-test"
)

validate() { # DIR ARGS...: packer validate's output in $work/out
    local dir=$1
    shift
    (cd "$dir" && "${clean_env[@]}" timeout 60 packer validate -var "bin_dir=$bin_dir" "$@" .) \
        >"$work/out" 2>&1
}

for cloud in qemu aws azure gcp ibmcloud; do
    dir=$packer_dir/$cloud
    [ -d "$dir" ] || fail "no template directory $dir"
    for variant in default test; do
        # shellcheck disable=SC2086 # the variables are words on purpose
        validate "$dir" -var "variant=$variant" ${required[$cloud]} ||
            { cat "$work/out" >&2; fail "$cloud ($variant): packer validate"; }
    done
    grep -q 'inline = local.install_commands' "$dir/$cloud.pkr.hcl" ||
        fail "$cloud does not run the shared install commands"
    grep -q 'local.bin_files' "$dir/$cloud.pkr.hcl" || fail "$cloud does not upload the binaries"
    ok "$cloud: valid (default and test), installs through install-files.sh"
done
grep -q 'install-files.sh / ' "$packer_dir/podvm.pkr.hcl" ||
    fail "the shared install commands do not run install-files.sh on /"

# Validation must be able to fail: a required variable missing, an unknown
# setting, a missing binary.
validate "$packer_dir/gcp" && fail "gcp without project_id validated"
grep -q 'project_id' "$work/out" || { cat "$work/out" >&2; fail "gcp: no word of project_id"; }
mkdir -p "$work/broken"
cp -L "$packer_dir"/aws/*.pkr.hcl "$work/broken/"
sed -i 's/^  instance_type = var.instance_type$/&\n  no_such_setting = 1/' "$work/broken/aws.pkr.hcl"
grep -q no_such_setting "$work/broken/aws.pkr.hcl" || fail "could not break the aws template"
validate "$work/broken" && fail "aws with an unknown setting validated"
grep -q 'no_such_setting' "$work/out" || { cat "$work/out" >&2; fail "aws: no word of the unknown setting"; }
mkdir -p "$work/nobin"
(cd "$packer_dir/aws" && "${clean_env[@]}" packer validate -var "bin_dir=$work/nobin" .) \
    >"$work/out" 2>&1 && fail "aws without binaries validated"
ok "broken templates fail: missing variable, unknown setting, missing binaries"

for d in "$packer_dir"/*/; do
    "${clean_env[@]}" packer fmt -check "$d" >"$work/out" 2>&1 ||
        { cat "$work/out" >&2; fail "$d is not packer fmt clean"; }
done
"${clean_env[@]}" packer fmt -check "$packer_dir/podvm.pkr.hcl" >/dev/null ||
    fail "podvm.pkr.hcl is not packer fmt clean"
ok "all templates packer fmt clean"

# The default runtime_packages must hold every library package the binaries
# link directly (apt brings the rest).
mapfile -t needed < <("$packer_dir/../runtime-packages.sh" --direct \
    "$bin_dir/agent-protocol-forwarder" "$bin_dir/process-user-data" "$bin_dir/pp-test-agent" \
    "$bin_dir/attestation-agent" "$bin_dir/confidential-data-hub" "$bin_dir/api-server-rest")
[ ${#needed[@]} -gt 0 ] || fail "runtime-packages.sh derived nothing"
listed=$(sed -n '/variable "runtime_packages"/,/^}/p' "$packer_dir/podvm.pkr.hcl" | grep -o '"[^"]*"' | tr -d '"')
for p in "${needed[@]}"; do
    grep -qx "$p" <<<"$listed" || fail "runtime_packages lacks $p (podvm/runtime-packages.sh --direct prints it)"
done
ok "runtime_packages covers ${needed[*]}"

echo "all $pass checks passed"
