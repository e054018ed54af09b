#!/usr/bin/env bash
# Builds a pod VM disk image (qcow2) from Debian 12 packages, without mounting
# a disk image or using loop devices:
#   base:  debootstrap (minbase) + kernel, systemd, udev, iproute2 and the
#          libraries our binaries load, cached as a tarball keyed by the
#          package list and the functions that make it;
#   image: the base + install-files.sh (binaries, units), an ext4 root made
#          with mkfs.ext4 -d, a FAT boot partition with syslinux, an MBR
#          partition table written by sfdisk on a plain file, then qcow2;
#          cached keyed by the base, the binaries, the units and the variant.
# An unchanged image is not rebuilt. Progress goes to stderr; the last line
# of stdout is the image path.
#
# Usage: build.sh [--variant default|test] [--build-dir DIR] [--output DIR]
#                 [--cache DIR]
# Environment: PODVM_KERNEL (default linux-image-cloud-amd64), PODVM_MIRROR
# and PODVM_SECURITY_MIRROR (default: this machine's apt sources),
# PODVM_ROOT_SIZE_MIB (virtual size of the root file system, default 2048),
# PODVM_NETNS (a network namespace to download in, e.g. /proc/1/ns/net when
# run in a private one without a route).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(dirname "$here")

usage() {
    cat >&2 <<'EOF'
usage: build.sh [--variant default|test] [--build-dir DIR] [--output DIR] [--cache DIR]
  --variant    default: forwarder + process-user-data; test: also pp-test-agent
               as kata-agent.service (default: default)
  --build-dir  CMake build tree with bin/ (default: <repo>/build)
  --output     copy the image to DIR/podvm-<variant>.qcow2 (default: print the
               path in the cache; never boot that file directly)
  --cache      cache directory (default: /var/cache/peerpod/podvm)
EOF
    exit "${1:-2}"
}

variant=default
build_dir=$top/build
output=
cache=/var/cache/peerpod/podvm
while [ $# -gt 0 ]; do
    case $1 in
    --variant | --build-dir | --output | --cache)
        [ $# -ge 2 ] || usage
        opt=${1#--}
        val=$2
        shift 2
        ;;
    --variant=* | --build-dir=* | --output=* | --cache=*)
        opt=${1%%=*}
        opt=${opt#--}
        val=${1#*=}
        shift
        ;;
    -h | --help) usage 0 ;;
    *) usage ;;
    esac
    case $opt in
    variant) variant=$val ;;
    build-dir) build_dir=$val ;;
    output) output=$val ;;
    cache) cache=$val ;;
    esac
done

log() { printf '[podvm %4ds] %s\n' "$SECONDS" "$*" >&2; }
die() {
    printf 'podvm build: error: %s\n' "$*" >&2
    exit 1
}

case $variant in default | test) ;; *) die "unknown variant \`$variant\` (default or test)" ;; esac
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, file ownership in the image)"

# Every mount made below (debootstrap mounts /proc in its target, and so do
# we for apt) lives in a private mount namespace, so that nothing is left
# mounted whatever happens to this script.
if [ -z "${PODVM_PRIVATE_MOUNTS:-}" ] && unshare --mount --propagation private true 2>/dev/null; then
    exec env PODVM_PRIVATE_MOUNTS=1 unshare --mount --propagation private -- "$0" \
        --variant "$variant" --build-dir "$build_dir" --cache "$cache" ${output:+--output "$output"}
fi

for tool in debootstrap mkfs.ext4 mkfs.fat mcopy syslinux sfdisk qemu-img zstd flock ldd dpkg-query; do
    command -v "$tool" >/dev/null || die "\`$tool\` not found (Debian packages: debootstrap e2fsprogs dosfstools mtools syslinux fdisk qemu-utils zstd)"
done
SYSLINUX_MBR=/usr/lib/syslinux/mbr/mbr.bin
[ -r "$SYSLINUX_MBR" ] || die "$SYSLINUX_MBR not found (Debian package syslinux-common)"

# ---- inputs --------------------------------------------------------------

SUITE=bookworm
KERNEL=${PODVM_KERNEL:-linux-image-cloud-amd64}
ROOT_SIZE_MIB=${PODVM_ROOT_SIZE_MIB:-2048}
BOOT_SIZE_MIB=64
# Pod VM user space besides our binaries' libraries. The cloud kernel flavour
# has the virtio, NVMe, ENA, gVNIC and Hyper-V drivers and a third of the
# generic one's modules.
PACKAGES=("$KERNEL" systemd systemd-sysv systemd-resolved udev iproute2 initramfs-tools kmod)

# apt_uri SUITE DEFAULT: the URI this machine's apt sources use for SUITE.
apt_uri() {
    local u
    u=$(apt-get indextargets --format '$(RELEASE) $(REPO_URI)' 2>/dev/null |
        awk -v s="$1" '$1 == s { print $2; exit }')
    echo "${u:-$2}"
}
MIRROR=${PODVM_MIRROR:-$(apt_uri "$SUITE" http://deb.debian.org/debian/)}
SECURITY_MIRROR=${PODVM_SECURITY_MIRROR:-$(apt_uri "$SUITE-security" http://deb.debian.org/debian-security/)}

bins=(agent-protocol-forwarder process-user-data attestation-agent confidential-data-hub
    api-server-rest)
[ "$variant" = test ] && bins+=(pp-test-agent)
bin_paths=()
for b in "${bins[@]}"; do
    [ -x "$build_dir/bin/$b" ] ||
        die "\`$build_dir/bin/$b\` not found: build first (cmake -S . -B build && cmake --build build -j2) or pass --build-dir"
    bin_paths+=("$build_dir/bin/$b")
done
# One base for both variants: the stand-in agent's libraries too, when built.
lib_bins=("${bin_paths[@]}")
[ "$variant" = default ] && [ -x "$build_dir/bin/pp-test-agent" ] && lib_bins+=("$build_dir/bin/pp-test-agent")
mapfile -t lib_packages < <("$here/runtime-packages.sh" "${lib_bins[@]}") ||
    die "cannot derive the runtime packages of ${bins[*]}"
[ ${#lib_packages[@]} -gt 0 ] || die "no runtime packages derived for ${bins[*]}"
mapfile -t packages < <(printf '%s\n' "${PACKAGES[@]}" "${lib_packages[@]}" | sort -u)

unit_files=("$here"/systemd/*.service)
[ "$variant" = test ] && unit_files+=("$here"/test/*.service)

# ---- work area and cleanup --------------------------------------------------

mkdir -p "$cache" || die "cannot create the cache directory \`$cache\`"
work=
cleanup() {
    local rc=$?
    [ $rc = 0 ] || echo "podvm build: failed (exit $rc)" >&2
    if [ -n "$work" ] && [ -d "$work" ]; then
        # Anything still mounted below the work tree first (only in this
        # mount namespace), then the tree, never crossing into a mount.
        findmnt -rn -o TARGET | grep -F "$work/" | sort -r | xargs -r umount -l 2>/dev/null || true
        rm -rf --one-file-system "$work"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One build at a time per cache: a second one waits, then finds the image.
exec 9>"$cache/.lock"
if ! flock -n 9; then
    log "waiting for another build using $cache"
    flock 9
fi

# Work trees of builds killed too hard to clean up (SIGKILL, power loss);
# holding the lock, nothing else uses them.
for stale in "$cache"/work.*; do
    [ -d "$stale" ] || continue
    log "removing $stale, left by an interrupted build"
    rm -rf --one-file-system "$stale"
done

# run NAME CMD...: runs CMD with its output in $work/NAME.log, shown on failure.
run() {
    local name=$1
    shift
    if ! "$@" >"$work/$name.log" 2>&1; then
        tail -n 40 "$work/$name.log" >&2
        die "$name failed (see above)"
    fi
}

# netrun CMD...: CMD in the network namespace that reaches the mirror.
netrun() {
    if [ -n "${PODVM_NETNS:-}" ]; then
        nsenter --net="$PODVM_NETNS" -- "$@"
    else
        "$@"
    fi
}

# ---- base layer ---------------------------------------------------------------

# configure_base ROOT: what must be in place before the packages go in.
configure_base() {
    local root=$1
    cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
    cat >"$root/etc/apt/apt.conf.d/90podvm" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
    cat >"$root/etc/dpkg/dpkg.cfg.d/90podvm-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
EOF
    # A small initramfs: the drivers for a root disk on virtio, SCSI or NVMe
    # and ext4, loaded early; no resume device to look for.
    mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/usr/share/initramfs-tools/modules.d"
    printf 'MODULES=list\nCOMPRESS=gzip\nRESUME=none\nFSTYPE=ext4\n' \
        >"$root/etc/initramfs-tools/conf.d/90-podvm"
    printf '%s\n' virtio_pci virtio_blk virtio_scsi sd_mod nvme ext4 crc32c_generic \
        >"$root/usr/share/initramfs-tools/modules.d/podvm"
    # Services installed by packages must not start in the chroot.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
}

# finish_base ROOT: the system settings of a pod VM, and no caches.
finish_base() {
    local root=$1
    rm -f "$root/usr/sbin/policy-rc.d"
    # Every physical NIC (no Kind: not a vxlan, veth or bridge the forwarder
    # makes) by DHCPv4; online as soon as one has an address. No IPv6: the
    # tunnel and the metadata services are IPv4, and waiting for IPv6
    # link-local addresses costs seconds at boot.
    mkdir -p "$root/etc/systemd/network" \
        "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
    cat >"$root/etc/systemd/network/80-podvm-dhcp.network" <<'EOF'
[Match]
Type=ether
Kind=!*

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[Link]
RequiredFamilyForOnline=ipv4
EOF
    cat >"$root/etc/systemd/system/systemd-networkd-wait-online.service.d/podvm.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30
EOF
    run enable-units chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service
    ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
    # No logins at all: no getty, root locked. No periodic jobs: a pod VM
    # lives as long as its pod.
    for u in getty@.service serial-getty@.service console-getty.service; do
        ln -sfn /dev/null "$root/etc/systemd/system/$u"
    done
    rm -rf "$root/etc/systemd/system/timers.target.wants" "$root/etc/systemd/system/getty.target.wants"
    rm -f "$root/etc/systemd/system/multi-user.target.wants/e2scrub_reap.service"
    chroot "$root" usermod -p '*' root
    echo podvm >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\tpodvm\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        >"$root/etc/hosts"
    # Each VM makes its own machine ID (and so its own DHCP client ID).
    : >"$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id"
    rm -rf "${root:?}"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/cache/debconf/*-old "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/*
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
}

build_base() {
    local out=$1 root=$work/base
    mkdir -p "$root"
    log "base: debootstrap $SUITE (minbase) from $MIRROR"
    run debootstrap netrun debootstrap --variant=minbase --arch=amd64 --components=main \
        "$SUITE" "$root" "$MIRROR"
    configure_base "$root"
    mount -t proc proc "$root/proc"
    log "base: apt: ${#packages[@]} packages and the security updates"
    export DEBIAN_FRONTEND=noninteractive
    run apt-update netrun chroot "$root" apt-get -q update
    run apt-upgrade netrun chroot "$root" apt-get -q -y -o Dpkg::Options::=--force-confold upgrade
    run apt-install netrun chroot "$root" apt-get -q -y -o Dpkg::Options::=--force-confold \
        install "${packages[@]}"
    umount "$root/proc"
    finish_base "$root"
    log "base: $(du -sm "$root" | cut -f1) MiB; archiving"
    tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -cf - . |
        zstd -q -T0 -3 -o "$out.tmp" || die "cannot archive the base"
    mv "$out.tmp" "$out"
    rm -rf --one-file-system "$root"
}

# ---- image --------------------------------------------------------------------

# A UUID (or a 32-bit id) derived from the image key: reproducible names.
key_uuid() { echo "${1:0:8}-${1:8:4}-4${1:13:3}-8${1:17:3}-${1:20:12}"; }

build_image() {
    local base=$1 out=$2 key=$3 root=$work/root
    local uuid kernel initrd used root_mib disk_mib
    uuid=$(key_uuid "$key")
    mkdir -p "$root"
    log "image: unpacking the base"
    zstd -q -dc "$base" | tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xpf - ||
        die "cannot unpack $base"
    local flags=()
    [ "$variant" = test ] && flags=(--test)
    "$here/install-files.sh" "$root" "$build_dir/bin" "${flags[@]}" 2>/dev/null ||
        die "install-files.sh failed"
    printf 'UUID=%s / ext4 rw,noatime 0 0\n' "$uuid" >"$root/etc/fstab"

    # The kernel and initramfs go to the boot partition only.
    kernel=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | sort | tail -n 1)
    [ -n "$kernel" ] || die "no kernel in the base"
    initrd=$root/boot/initrd.img-${kernel##*/vmlinuz-}
    [ -f "$initrd" ] || die "no initramfs for $kernel"
    mkdir -p "$work/boot"
    mv "$kernel" "$work/boot/vmlinuz"
    mv "$initrd" "$work/boot/initrd.img"
    rm -rf "${root:?}"/boot/* "$root"/vmlinuz* "$root"/initrd.img*
    cat >"$work/boot/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT podvm
PROMPT 0
TIMEOUT 0
LABEL podvm
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND root=UUID=$uuid rw console=tty0 console=ttyS0,115200n8 panic=10
EOF

    log "image: file systems"
    used=$(du -sm "$root" | cut -f1)
    root_mib=$((used * 5 / 4 + 256))
    [ "$root_mib" -ge "$ROOT_SIZE_MIB" ] || root_mib=$ROOT_SIZE_MIB
    run mkfs-root mkfs.ext4 -q -F -b 4096 -L podvm-root -U "$uuid" -E root_owner=0:0 \
        -d "$root" "$work/root.img" "${root_mib}M"
    rm -rf --one-file-system "$root"
    # The boot file system starts 1 MiB (2048 sectors) into the disk.
    run mkfs-boot mkfs.fat -C -h 2048 -n PODVM-BOOT "$work/boot.img" $((BOOT_SIZE_MIB * 1024))
    run mcopy mcopy -i "$work/boot.img" "$work/boot/vmlinuz" "$work/boot/initrd.img" \
        "$work/boot/syslinux.cfg" ::/

    log "image: disk (MBR, syslinux)"
    disk_mib=$((1 + BOOT_SIZE_MIB + root_mib))
    truncate -s "${disk_mib}M" "$work/disk.raw"
    run sfdisk sfdisk -q --no-reread --no-tell-kernel "$work/disk.raw" <<EOF
label: dos
label-id: 0x${key:0:8}
start=1MiB, size=${BOOT_SIZE_MIB}MiB, type=6, bootable
start=$((1 + BOOT_SIZE_MIB))MiB, type=83
EOF
    run dd-mbr dd if="$SYSLINUX_MBR" of="$work/disk.raw" bs=440 count=1 conv=notrunc
    run dd-boot dd if="$work/boot.img" of="$work/disk.raw" bs=1M seek=1 conv=notrunc,sparse
    run dd-root dd if="$work/root.img" of="$work/disk.raw" bs=1M seek=$((1 + BOOT_SIZE_MIB)) \
        conv=notrunc,sparse
    rm -f "$work/boot.img" "$work/root.img"
    run syslinux syslinux --install --offset $((1024 * 1024)) "$work/disk.raw"

    log "image: qcow2"
    run qemu-img qemu-img convert -c -O qcow2 "$work/disk.raw" "$out.tmp"
    mv "$out.tmp" "$out"
}

# ---- keys, cache, main ------------------------------------------------------------

# The base depends on the package list and the functions that make it; the
# image on the base, our files, the variant and the functions that make it.
base_key=$({
    echo "$SUITE"
    printf '%s\n' "${packages[@]}"
    declare -f configure_base finish_base build_base
} | sha256sum | cut -c1-16)
image_key=$({
    echo "$base_key $variant $ROOT_SIZE_MIB $BOOT_SIZE_MIB"
    for f in "${bin_paths[@]}" "${unit_files[@]}" "$here/install-files.sh"; do
        printf '%s %s\n' "$(basename "$f")" "$(sha256sum <"$f" | cut -d' ' -f1)"
    done
    declare -f key_uuid build_image
} | sha256sum | cut -c1-32)

base_file=$cache/base-$base_key.tar.zst
image_file=$cache/podvm-$variant-${image_key:0:16}.qcow2

if [ -f "$image_file" ]; then
    log "image: cached ($image_file)"
else
    work=$(mktemp -d "$cache/work.XXXXXX")
    if [ -f "$base_file" ]; then
        log "base: cached ($base_file)"
    else
        build_base "$base_file"
    fi
    touch "$base_file"
    build_image "$base_file" "$image_file" "$image_key"
    log "image: $image_file, $(du -m "$image_file" | cut -f1) MiB"
    # Keep the newest few of each kind.
    ls -t "$cache"/podvm-"$variant"-*.qcow2 | tail -n +4 | xargs -r rm -f || true
    ls -t "$cache"/base-*.tar.zst | tail -n +3 | xargs -r rm -f || true
fi
touch "$image_file"

if [ -n "$output" ]; then
    mkdir -p "$output" || die "cannot create \`$output\`"
    dest=$output/podvm-$variant.qcow2
    if ! cmp -s "$image_file" "$dest"; then
        cp --reflink=auto "$image_file" "$dest.tmp"
        mv "$dest.tmp" "$dest"
    fi
    image_file=$(cd "$output" && pwd)/podvm-$variant.qcow2
fi
log "done"
echo "$image_file"
