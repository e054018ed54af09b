#!/usr/bin/env bash
# Runs one interop pairing: starts a server on a fresh unix socket, runs a
# client against it, then stops the server. The client's report is always
# printed; on failure the server's output follows.
#
#   run_pair.sh SERVER_CMD... -- CLIENT_CMD...
#
# Every argument `@SOCK@` is replaced by the socket path. Fails if the client
# fails, if the server does not come up, or if the server does not exit
# cleanly on SIGTERM (a crash or sanitizer report during the run).
set -u

server=()
client=()
seen_sep=0
for a in "$@"; do
    if [ "$a" = "--" ] && [ $seen_sep -eq 0 ]; then
        seen_sep=1
        continue
    fi
    if [ $seen_sep -eq 0 ]; then server+=("$a"); else client+=("$a"); fi
done
if [ ${#server[@]} -eq 0 ] || [ ${#client[@]} -eq 0 ]; then
    echo "usage: run_pair.sh SERVER_CMD... -- CLIENT_CMD..." >&2
    exit 2
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/pp-interop.XXXXXX")
sock="$dir/ttrpc.sock"
server=("${server[@]//@SOCK@/$sock}")
client=("${client[@]//@SOCK@/$sock}")
spid=""

show_server() {
    echo "---- server: ${server[*]}"
    cat "$dir/server.log"
    echo "---- end of server output"
}

stop_server() {
    [ -n "$spid" ] || return 0
    kill -TERM "$spid" 2>/dev/null
    for _ in $(seq 50); do
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$spid" 2>/dev/null; then
        echo "FAIL server did not exit within 5 s of SIGTERM"
        kill -KILL "$spid" 2>/dev/null
        wait "$spid" 2>/dev/null
        spid=""
        return 1
    fi
    wait "$spid"
    local rc=$?
    spid=""
    if [ $rc -ne 0 ]; then
        echo "FAIL server exited with status $rc"
        return 1
    fi
    return 0
}

trap 'stop_server >/dev/null 2>&1; rm -rf "$dir"' EXIT

"${server[@]}" >"$dir/server.log" 2>&1 &
spid=$!

for _ in $(seq 100); do
    [ -S "$sock" ] && break
    if ! kill -0 "$spid" 2>/dev/null; then
        echo "FAIL server exited before listening"
        show_server
        exit 1
    fi
    sleep 0.1
done
if [ ! -S "$sock" ]; then
    echo "FAIL server not listening on $sock after 10 s"
    show_server
    exit 1
fi

"${client[@]}"
crc=$?

stop_server
src=$?

if [ $crc -ne 0 ] || [ $src -ne 0 ]; then
    [ $crc -ne 0 ] && echo "FAIL client exited with status $crc"
    show_server
    exit 1
fi
echo "pass: ${client[0]##*/} against ${server[0]##*/}"
exit 0
