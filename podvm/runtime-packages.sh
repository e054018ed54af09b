#!/usr/bin/env bash
# Prints the Debian packages that hold the shared libraries the given
# binaries load (ldd, then dpkg -S on this machine), one per line, sorted.
# The pod VM image gets these, so the list follows the binaries instead of
# being written down by hand.
#
# With --direct, only the libraries the binaries name themselves (DT_NEEDED),
# the list a package manager completes with their dependencies.
#
# Usage: runtime-packages.sh [--direct] BINARY...
set -euo pipefail

direct=0
if [ "${1:-}" = --direct ]; then
    direct=1
    shift
fi
[ $# -gt 0 ] || { echo "usage: runtime-packages.sh [--direct] BINARY..." >&2; exit 2; }

libs=()
for bin in "$@"; do
    [ -x "$bin" ] || { echo "runtime-packages: \`$bin\` is not an executable" >&2; exit 1; }
    out=$(ldd "$bin") || { echo "runtime-packages: ldd \`$bin\` failed" >&2; exit 1; }
    if grep -q 'not found' <<<"$out"; then
        echo "runtime-packages: \`$bin\` has unresolved libraries:" >&2
        grep 'not found' <<<"$out" >&2
        exit 1
    fi
    # "libx.so.1 => /path (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)";
    # the vDSO has no file.
    needed=
    [ $direct = 1 ] && needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | paste -sd' ')
    while read -r path; do
        libs+=("$path")
    done < <(awk -v needed=" $needed " '
        $2 == "=>" && $3 ~ /^\// && (needed == "  " || index(needed, " " $1 " ")) { print $3 }
        $1 ~ /^\// && needed == "  " { print $1 }' <<<"$out")
done

# One dpkg-query for every library, under both spellings: with the merged
# /usr, dpkg knows a library under either /lib or /usr/lib.
mapfile -t uniq < <(printf '%s\n' "${libs[@]}" | sort -u)
spellings=()
for lib in "${uniq[@]}"; do
    case $lib in
    /usr/*) spellings+=("$lib" "${lib#/usr}") ;;
    *) spellings+=("$lib" "/usr$lib") ;;
    esac
done
found=$(dpkg-query -S "${spellings[@]}" 2>/dev/null || true)
for lib in "${uniq[@]}"; do
    short=${lib#/usr}
    grep -qE ": (/usr)?${short//./\\.}\$" <<<"$found" || {
        echo "runtime-packages: no Debian package ships \`$lib\`" >&2
        exit 1
    }
done
# "libuv1:amd64: /usr/lib/x86_64-linux-gnu/libuv.so.1" -> libuv1
grep -v '^diversion ' <<<"$found" | sed -n 's/^\([^:,]*\)\(:[a-z0-9]*\)\?: .*/\1/p' | sort -u
