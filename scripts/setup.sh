#!/usr/bin/env bash
# Installs every build and test dependency from Debian packages. Idempotent:
# when everything is present it only checks and returns.
set -euo pipefail

pkgs=(
    build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
    libuv1-dev libjansson-dev libprotobuf-c-dev protobuf-c-compiler
    libnl-3-dev libnl-route-3-dev libcmocka-dev libcurl4-openssl-dev libssl-dev
    libnftnl-dev libmnl-dev nftables iputils-ping socat
    golang-go golang-github-containerd-ttrpc-dev
    zlib1g-dev openssl python3-yaml golang-gopkg-yaml.v2-dev
    iproute2 procps valgrind
    libxml2-dev python3-botocore python3-cryptography python3-jwt python3-fusepy
    libtss2-dev swtpm swtpm-tools tpm2-tools genisoimage xorriso systemd
    libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libarchive-dev
    libmicrohttpd-dev python3-prometheus-client python3-kubernetes
    buildah podman runc icu-devtools ca-certificates binutils
    qemu-system-x86 qemu-utils dnsmasq-base iptables debootstrap e2fsprogs fdisk
    dosfstools mtools syslinux syslinux-common extlinux packer zstd
)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all ${#pkgs[@]} packages present"
    exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
