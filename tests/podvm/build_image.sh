#!/usr/bin/env bash
# The ctest fixture `podvm_image`: builds (or finds in the cache) the pod VM
# image of VARIANT from the binaries in BUILD_DIR/bin and writes its path to
# PATH_FILE, for the tests that boot it.
#
# Usage: build_image.sh SOURCE_DIR BUILD_DIR VARIANT PATH_FILE
# Skips (77) without root. The cache is podvm/build.sh's default unless
# PODVM_CACHE_DIR is set.
set -euo pipefail

src=$1 build=$2 variant=$3 path_file=$4
[ "$(id -u)" = 0 ] || { echo "SKIP: building the pod VM image needs root (debootstrap)"; exit 77; }
rm -f "$path_file"

# Run in a private network namespace without a route (scripts/isolated.sh):
# the downloads (only when the base layer is not cached) go through the
# namespace of the nearest ancestor process outside ours, the one the tests
# were started from. Nothing else is done there.
if [ -z "${PODVM_NETNS:-}" ] && ! ip route show default 2>/dev/null | grep -q .; then
    own=$(readlink /proc/self/ns/net)
    pid=$PPID
    while [ "$pid" -gt 1 ]; do
        ns=$(readlink "/proc/$pid/ns/net" 2>/dev/null) || break
        if [ "$ns" != "$own" ] && nsenter --net="/proc/$pid/ns/net" ip route show default 2>/dev/null | grep -q .; then
            echo "note: no route here; downloads go through the network namespace of pid $pid ($(cat "/proc/$pid/comm"))"
            export PODVM_NETNS=/proc/$pid/ns/net
            break
        fi
        pid=$(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null) || break
    done
    [ -n "${PODVM_NETNS:-}" ] ||
        echo "note: no route here and none found in an ancestor's namespace; a base layer not yet cached cannot be downloaded"
fi

args=(--variant "$variant" --build-dir "$build")
[ -n "${PODVM_CACHE_DIR:-}" ] && args+=(--cache "$PODVM_CACHE_DIR")
start=$(date +%s)
image=$("$src/podvm/build.sh" "${args[@]}" | tail -n 1)
[ -f "$image" ] || { echo "FAIL: build.sh printed \`$image\`, not an image"; exit 1; }
mkdir -p "$(dirname "$path_file")"
echo "$image" >"$path_file"
echo "ok: $variant image $image ($(du -m "$image" | cut -f1) MiB) in $(($(date +%s) - start)) s"
