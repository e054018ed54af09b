#!/usr/bin/env bash
# The container image's size: overlays/image/build.sh on a Release build
# (PP_BENCH_BUILD, default build-bench/), uncompressed, against the 64 MiB
# it may take, and against what it would be with Debian's whole ICU data
# library instead of the converters kept (the baseline, measured here). The
# largest files show where the bytes go. Needs root (buildah).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=${PP_BENCH_BUILD:-$root/build-bench}
[ "$(id -u)" -eq 0 ] || { echo "image bench: needs root (buildah)" >&2; exit 1; }
if [ -z "${PP_BENCH_SKIP_BUILD:-}" ]; then
    [ -f "$build/CMakeCache.txt" ] || cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j"$(nproc)" --target cloud-api-adaptor agent-protocol-forwarder \
        process-user-data pp-test-agent pp_modules >/dev/null || { echo "image bench: build failed" >&2; exit 1; }
fi
log=$(mktemp)
trap 'rm -f "$log"; rm -rf "${x:-}"' EXIT
archive=$(bash "$root/overlays/image/build.sh" --build-dir "$build" 2>"$log" | tail -1)
cat "$log"
size=$(sed -n 's/.*image size: \([0-9]*\) bytes.*/\1/p' "$log")
# The layer, to see what is in it.
x=$(mktemp -d)
tar -xf "$archive" -C "$x"
layer=$(find "$x/blobs" -type f -size +1M | head -1)
full_icu=$(stat -c %s "$(readlink -f /usr/lib/x86_64-linux-gnu/libicudata.so.72)")
cut_icu=$(tar -tvf "$layer" | awk '/libicudata\.so\.[0-9.]*$/ && $1 !~ /^l/ { print $3; exit }')
echo "largest files:"
tar -tvf "$layer" | awk '$1 !~ /^[dl]/ { print $3, $6 }' | sort -rn | head -8 |
    awk '{ printf "  %8.1f KiB  %s\n", $1 / 1024, $2 }'
awk -v s="$size" -v f="$full_icu" -v c="$cut_icu" 'BEGIN {
    base = s - c + f
    printf "image: %.1f MiB uncompressed, %.2f of the 64 MiB limit (%s)\n", s / 1048576, s / 67108864,
        (s <= 67108864 ? "met" : "MISSED")
    printf "with the whole ICU data (baseline): %.1f MiB; the cut one is %.2f of it\n", base / 1048576, s / base
}'
