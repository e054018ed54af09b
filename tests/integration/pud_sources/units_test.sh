#!/usr/bin/env bash
# The pod VM systemd units: `systemd-analyze verify` (any warning fails),
# the ordering the forwarder depends on, and the netns@ unit's commands
# run for real on a namespace name of this test's own.
#
# Usage: units_test.sh PODVM_SYSTEMD_DIR
set -euo pipefail

UNITS=$1
command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze missing (systemd)"; exit 77; }

work=$(mktemp -d)
ns=pudunit-$$
cleanup() {
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=../../common/check.sh
. "$(dirname "$0")/../../common/check.sh"

# verify resolves the binaries and every unit named in a dependency: give it
# stand-in executables and the template as the instance the forwarder uses.
mkdir -p "$work/bin" "$work/units"
for b in process-user-data agent-protocol-forwarder attestation-agent confidential-data-hub \
    api-server-rest; do
    printf '#!/bin/sh\nexit 0\n' >"$work/bin/$b"
    chmod +x "$work/bin/$b"
done
for f in "$UNITS"/*.service; do
    n=$(basename "$f")
    [ "$n" = "netns@.service" ] && n=netns@podns.service
    sed "s|/usr/local/bin/|$work/bin/|g" "$f" >"$work/units/$n"
done
if ! systemd-analyze verify --man=no "$work"/units/*.service >"$work/verify.log" 2>&1 ||
    [ -s "$work/verify.log" ]; then
    cat "$work/verify.log" >&2
    fail "systemd-analyze verify"
fi
ok "systemd-analyze verify: $(ls "$UNITS" | paste -sd' ') clean"

key() { # UNIT KEY: the values of KEY, one per line
    sed -n "s/^$2=//p" "$UNITS/$1"
}
[ "$(key process-user-data.service Type)" = oneshot ] || fail "process-user-data: not oneshot"
key process-user-data.service ExecStart | grep -q '/process-user-data provision-files' ||
    fail "process-user-data: does not run provision-files"
key process-user-data.service Before | grep -qw agent-protocol-forwarder.service ||
    fail "process-user-data: not ordered before the forwarder"
for dep in process-user-data.service netns@podns.service; do
    key agent-protocol-forwarder.service Requires | grep -qw "$dep" ||
        fail "forwarder does not require $dep"
    key agent-protocol-forwarder.service After | grep -qw "$dep" ||
        fail "forwarder not ordered after $dep"
done
key agent-protocol-forwarder.service ExecStart | grep -q -- '-pod-namespace /run/netns/podns' ||
    fail "forwarder not given the pod namespace"
ok "process-user-data runs first (oneshot); the forwarder requires it and netns@podns"

for pair in attestation-agent:aa confidential-data-hub:cdh; do
    u=${pair%:*}
    key process-user-data.service Before | grep -qw $u.service ||
        fail "process-user-data: not ordered before $u"
    key $u.service After | grep -qw process-user-data.service ||
        fail "$u not ordered after process-user-data"
    key $u.service ConditionPathExists | grep -qx "/run/peerpod/${pair#*:}.toml" ||
        fail "$u does not wait for its configuration from initdata"
done
key confidential-data-hub.service After | grep -qw attestation-agent.service ||
    fail "the data hub not ordered after the attestation agent"
key api-server-rest.service NetworkNamespacePath | grep -qx /run/netns/podns ||
    fail "the REST API does not serve in the pod namespace"
ok "attestation agent and data hub follow process-user-data and need their initdata files; the REST API serves in the pod namespace"

# netns@: run its commands with %I = a name of ours.
[ "$(id -u)" = 0 ] || { echo "note: not root; netns@ commands not run"; echo "all $pass checks passed"; exit 0; }
while read -r cmd; do
    eval "${cmd//%I/$ns}"
done < <(key netns@.service ExecStart)
[ -e "/run/netns/$ns" ] || fail "netns@: /run/netns/$ns not created"
ip -n "$ns" link show lo | grep -q '<LOOPBACK,UP' || fail "netns@: lo not up"
while read -r cmd; do
    eval "${cmd//%I/$ns}"
done < <(key netns@.service ExecStop)
[ ! -e "/run/netns/$ns" ] || fail "netns@: ExecStop left /run/netns/$ns"
ok "netns@: creates /run/netns/<name> with lo up, and removes it"

echo "all $pass checks passed"
