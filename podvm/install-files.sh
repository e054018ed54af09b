#!/usr/bin/env bash
# Installs the pod VM's own files into a root: the binaries into
# /usr/local/bin, the units of podvm/systemd into /etc/systemd/system, enabled
# with the symlinks `systemctl enable` would make (so that it works on a tree
# that is not booted), and netns@podns. With --test, also the stand-in agent
# as kata-agent.service and the journal on the serial console.
#
# The local image build runs it on its root tree; the packer templates upload
# the binaries and podvm/ and run it with DESTROOT=/ in the builder VM, so
# every image gets the same files the same way.
#
# Usage: install-files.sh DESTROOT BINDIR [--test]
set -euo pipefail

usage() {
    echo "usage: install-files.sh DESTROOT BINDIR [--test]" >&2
    exit 2
}
[ $# -ge 2 ] && [ $# -le 3 ] || usage
dest=${1%/}
bindir=$2
test_variant=0
if [ $# -eq 3 ]; then
    [ "$3" = --test ] || usage
    test_variant=1
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() {
    echo "install-files: $*" >&2
    exit 1
}
[ -d "$dest/" ] || die "\`$1\` is not a directory"

bins=(agent-protocol-forwarder process-user-data attestation-agent confidential-data-hub
    api-server-rest)
units=("$here"/systemd/*.service)
if [ $test_variant = 1 ]; then
    bins+=(pp-test-agent)
    units+=("$here"/test/*.service)
fi
for b in "${bins[@]}"; do
    [ -x "$bindir/$b" ] || die "\`$bindir/$b\` is missing or not executable"
done

install -d -m 0755 "$dest/usr/local/bin" "$dest/etc/systemd/system"
for b in "${bins[@]}"; do
    install -m 0755 "$bindir/$b" "$dest/usr/local/bin/$b"
done

# link DIR NAME TARGET: /etc/systemd/system/DIR/NAME -> TARGET, the symlink
# `systemctl enable` makes for each WantedBy= (DIR *.wants) or RequiredBy=
# (DIR *.requires) of a unit's [Install] section.
link() {
    install -d -m 0755 "$dest/etc/systemd/system/$1"
    ln -sfn "$3" "$dest/etc/systemd/system/$1/$2"
}
for u in "${units[@]}"; do
    name=$(basename "$u")
    install -m 0644 "$u" "$dest/etc/systemd/system/$name"
    case $name in *@.service) continue ;; esac # templates: by instance below
    while read -r kind target; do
        for t in $target; do
            link "$t.$kind" "$name" "/etc/systemd/system/$name"
        done
    done < <(sed -n 's/^WantedBy=/wants /p; s/^RequiredBy=/requires /p' "$u")
done
# The pod network namespace: the forwarder requires it, and it is enabled
# too so that it exists even when the forwarder does not start.
link multi-user.target.wants netns@podns.service /etc/systemd/system/netns@.service

if [ $test_variant = 1 ]; then
    # Everything the services log also on the serial console, where the
    # tests read it.
    install -d -m 0755 "$dest/etc/systemd/journald.conf.d"
    printf '[Journal]\nForwardToConsole=yes\nTTYPath=/dev/ttyS0\nMaxLevelConsole=info\n' \
        >"$dest/etc/systemd/journald.conf.d/50-podvm-test-console.conf"
fi

echo "install-files: ${bins[*]} and $(printf '%s\n' "${units[@]}" | xargs -n1 basename | paste -sd' ') into ${dest:-/}" >&2
