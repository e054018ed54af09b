#!/usr/bin/env bash
# Builds the cloud-api-adaptor container image from this tree's build and
# the Debian packages installed here; nothing is pulled from a registry.
#
# The image is one layer holding:
#   /usr/local/bin/    cloud-api-adaptor (and entrypoint.sh, a link to it,
#                      the path upstream's DaemonSet runs), and what the
#                      built-in `local` provider starts for each pod VM:
#                      agent-protocol-forwarder, process-user-data and
#                      pp-test-agent; all stripped
#   /usr/local/lib/peerpod/   the provider and TLS modules
#   /usr/lib/x86_64-linux-gnu/   every shared library those link, as
#                      Debian ships it, with one exception: ICU's data
#                      library (libxml2 links ICU) keeps only the character
#                      set converters and their aliases, all that libxml2
#                      asks ICU for, which takes it from 30 MiB to 5 MiB;
#                      it is rebuilt here with Debian's icu-devtools
#   /etc               passwd, group, nsswitch.conf, ld.so.cache, the CA
#                      bundle of ca-certificates (for the clouds' APIs)
#   /usr/share/doc/peerpod-image/packages.txt   the Debian package and
#                      version of every file taken from the system, and the
#                      packages' copyright files
# No shell and no package manager: nothing a node does not need.
#
# The entrypoint is the daemon itself, which reads CLOUD_PROVIDER and every
# other setting from the environment (a first argument names the provider,
# as upstream's entrypoint takes it).
#
# Output: an OCI archive (`podman load -i`, `skopeo copy
# oci-archive:FILE docker://REGISTRY/...`), named
# localhost/cloud-api-adaptor:<key>, cached by content: an
# unchanged build is not repacked. Progress and the image's size go to
# stderr; the last line of stdout is the archive's path.
#
# Usage: overlays/image/build.sh [--build-dir DIR] [--cache DIR] [--output FILE]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)

build_dir=$top/build
cache=/var/cache/peerpod/image
output=
max_mib=64

usage() {
    echo "usage: overlays/image/build.sh [--build-dir DIR] [--cache DIR] [--output FILE]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case $1 in
    --build-dir) build_dir=$2; shift 2 ;;
    --cache) cache=$2; shift 2 ;;
    --output) output=$2; shift 2 ;;
    -h | --help) usage ;;
    *) usage ;;
    esac
done

log() { echo "image: $*" >&2; }
die() { echo "image: $*" >&2; exit 1; }

for tool in buildah ldd ldconfig strip dpkg-query icupkg genccode gcc tar sha256sum flock; do
    command -v "$tool" >/dev/null || die "\`$tool\` is missing (scripts/setup.sh installs it)"
done

bins=(cloud-api-adaptor agent-protocol-forwarder process-user-data pp-test-agent)
for b in "${bins[@]}"; do
    [ -x "$build_dir/bin/$b" ] || die "no \`$build_dir/bin/$b\`: build first (cmake --build build)"
done
shopt -s nullglob
modules=("$build_dir"/lib/peerpod/*.so)
shopt -u nullglob
[ ${#modules[@]} -gt 0 ] || die "no modules in \`$build_dir/lib/peerpod\`"

mkdir -p "$cache" || die "cannot create the cache directory \`$cache\`"
exec 9>"$cache/.lock"
flock 9

work=$(mktemp -d "$cache/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
libdir=usr/lib/x86_64-linux-gnu

# ---- ICU data: the converters only -------------------------------------------
# libicudata carries its data as one symbol, icudt<N>_dat, in .rodata: take
# it out, keep the converter tables and the alias table, and build a library
# of the same name around the smaller package.
small_icudata() {
    local src=$1 soname=$2 out=$3
    local ver=${soname#libicudata.so.}
    local sym=icudt${ver}_dat
    local t=$work/icu
    mkdir -p "$t/items" "$t/full" "$t/pkg" "$t/asm"
    local off size
    read -r off size < <(readelf -sW "$src" | awk -v s="$sym" '$8 == s { print $2, $3; exit }')
    [ -n "${off:-}" ] || die "no \`$sym\` in \`$src\`"
    local sec_addr sec_off
    read -r sec_addr sec_off < <(readelf -SW "$src" | awk '$2 == ".rodata" { print $4, $5; exit }')
    local skip=$((0x$off - 0x$sec_addr + 0x$sec_off))
    [ "${size#0x}" != "$size" ] && size=$((size)) || size=$((10#$size))
    # The package's name is the prefix of every item in it: icudt<N>l.
    local full=$t/full/icudt${ver}l.dat
    dd if="$src" of="$full" bs=65536 iflag=skip_bytes,count_bytes skip="$skip" count="$size" \
        status=none
    icupkg -l "$full" >"$t/all.txt"
    grep -E '\.cnv$|^cnvalias\.icu$' "$t/all.txt" >"$t/keep.txt"
    icupkg -d "$t/items" -x "$t/keep.txt" "$full"
    icupkg -tl -s "$t/items" -a "$t/keep.txt" new "$t/pkg/icudt${ver}l.dat"
    genccode -q -a gcc -e "icudt${ver}" -d "$t/asm" "$t/pkg/icudt${ver}l.dat"
    gcc -shared -nostdlib -Wl,-soname,"$soname" -o "$out" "$t"/asm/*.S
    strip --strip-unneeded "$out"
}

# ---- the root file system --------------------------------------------------
mkdir -p "$root/usr/local/bin" "$root/usr/local/lib/peerpod" "$root/$libdir" "$root/etc" \
    "$root/tmp" "$root/run" "$root/usr/share/doc/peerpod-image" "$root/etc/ssl/certs"
chmod 1777 "$root/tmp"
ln -s usr/lib "$root/lib"
ln -s usr/lib64 "$root/lib64"
mkdir -p "$root/usr/lib64"

for b in "${bins[@]}"; do
    strip --strip-unneeded -o "$root/usr/local/bin/$b" "$build_dir/bin/$b"
done
ln -s cloud-api-adaptor "$root/usr/local/bin/entrypoint.sh"
for m in "${modules[@]}"; do
    strip --strip-unneeded -o "$root/usr/local/lib/peerpod/$(basename "$m")" "$m"
done

# Every library the programs and modules load, by the name they ask for.
declare -A lib_of=()
for f in "${bins[@]/#/$build_dir/bin/}" "${modules[@]}"; do
    while read -r name path; do
        lib_of[$name]=$path
    done < <(ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }')
done
interp=$(readelf -lW "$build_dir/bin/cloud-api-adaptor" | sed -n 's/.*interpreter: \(.*\)]/\1/p')
[ -n "$interp" ] || die "no ELF interpreter in cloud-api-adaptor"

: >"$work/sources"
for name in "${!lib_of[@]}"; do
    real=$(readlink -f "${lib_of[$name]}")
    base=$(basename "$real")
    if [ ! -e "$root/$libdir/$base" ]; then
        if [[ $name == libicudata.so.* ]]; then
            log "ICU data: keeping the converters of \`$real\`"
            small_icudata "$real" "$name" "$root/$libdir/$base"
        else
            cp "$real" "$root/$libdir/$base"
        fi
        echo "$real" >>"$work/sources"
    fi
    [ "$name" = "$base" ] || ln -sf "$base" "$root/$libdir/$name"
done
ireal=$(readlink -f "$interp")
cp "$ireal" "$root/$libdir/$(basename "$ireal")"
echo "$ireal" >>"$work/sources"
ln -s "../lib/x86_64-linux-gnu/$(basename "$ireal")" "$root/usr/lib64/$(basename "$interp")"

cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
echo /etc/ssl/certs/ca-certificates.crt >>"$work/sources"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
printf '/usr/lib/x86_64-linux-gnu\n/usr/local/lib\n' >"$root/etc/ld.so.conf"
ldconfig -r "$root"

# Where each file came from, and the licences that come with it.
{
    echo "# Files of this image taken from Debian packages: path, package, version."
    sort -u "$work/sources" | while read -r f; do
        pkg=$(dpkg-query -S "$f" 2>/dev/null | head -1 | cut -d: -f1 || true)
        # The bundle is made from that package's certificates at install.
        [ "$f" = /etc/ssl/certs/ca-certificates.crt ] && pkg=ca-certificates
        if [ -z "$pkg" ]; then
            # Merged /usr: the package may list the /lib spelling.
            pkg=$(dpkg-query -S "${f#/usr}" 2>/dev/null | head -1 | cut -d: -f1 || true)
        fi
        [ -n "$pkg" ] || die "\`$f\` belongs to no Debian package"
        ver=$(dpkg-query -W -f='${Version}' "$pkg")
        echo "$f $pkg $ver"
        if [ -f "/usr/share/doc/$pkg/copyright" ]; then
            mkdir -p "$root/usr/share/doc/$pkg"
            cp "/usr/share/doc/$pkg/copyright" "$root/usr/share/doc/$pkg/copyright"
        fi
    done
} >"$root/usr/share/doc/peerpod-image/packages.txt"

# ---- the layer, and its size -----------------------------------------------
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$root" -cf "$work/layer.tar" .
files_bytes=$(find "$root" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
layer_bytes=$(stat -c %s "$work/layer.tar")
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
log "image size: $layer_bytes bytes uncompressed ($(mib "$layer_bytes") MiB; files $(mib "$files_bytes") MiB; limit $max_mib MiB)"
[ "$layer_bytes" -le $((max_mib * 1048576)) ] ||
    die "the image is $(mib "$layer_bytes") MiB, over the $max_mib MiB it may take"

key=$({
    sha256sum <"$work/layer.tar" | cut -d' ' -f1
    sha256sum <"$here/build.sh" | cut -d' ' -f1
} | sha256sum | cut -c1-16)
archive=$cache/cloud-api-adaptor-$key.oci.tar
if [ -s "$archive" ]; then
    log "unchanged: $archive"
else
    log "packing $archive"
    ctr=$(buildah from scratch)
    cleanup_ctr() { buildah rm "$ctr" >/dev/null 2>&1 || true; }
    trap 'cleanup_ctr; rm -rf "$work"' EXIT
    buildah add --quiet "$ctr" "$work/layer.tar" / >/dev/null
    buildah config --entrypoint '["/usr/local/bin/cloud-api-adaptor"]' --cmd '' \
        --env PATH=/usr/local/bin --workingdir / \
        --label org.opencontainers.image.title=cloud-api-adaptor \
        --label org.opencontainers.image.source=peerpod --label "peerpod.image.key=$key" "$ctr"
    buildah commit --quiet --format oci --rm "$ctr" \
        "oci-archive:$work/image.tar:localhost/cloud-api-adaptor:$key" >/dev/null
    trap 'rm -rf "$work"' EXIT
    mv "$work/image.tar" "$archive"
    # Keep the three newest.
    ls -1t "$cache"/cloud-api-adaptor-*.oci.tar 2>/dev/null | tail -n +4 | xargs -r rm -f
fi
log "archive $(mib "$(stat -c %s "$archive")") MiB: $archive"
if [ -n "$output" ]; then
    cp "$archive" "$output"
    archive=$output
fi
echo "$archive"
