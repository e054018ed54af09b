# Shell helpers for the test scripts; sourced, not run. A script that wants
# more from `fail` (a log to show) defines its own after sourcing this.

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

pass=0
ok() {
    pass=$((pass + 1))
    echo "ok: $*"
}

# wait_socket PATH PID WHAT: waits up to 10 s for the unix socket PATH of
# process PID; fails naming WHAT when the process exits or the time is up.
wait_socket() {
    for _ in $(seq 100); do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || fail "$3 exited"
        sleep 0.1
    done
    fail "$3: no socket at $1"
}
