#!/usr/bin/env bash
# ttrpc benchmark: our library against containerd's Go ttrpc, in one run.
#
#   (a) servers: our C server and Go's, under the same Go load client;
#   (b) clients: our C client and Go's, against the same Go server;
#
# each at 1 and 64 calls in flight on one unix-socket connection, Echo with
# a 64-byte payload, a warm-up that is discarded, then a measured window.
# Prints calls/s, p50 and p99 round-trip latency, and ours/Go ratios.
#
# Environment: PP_BENCH_BUILD (build tree; default build-bench/, configured
# Release here when missing), PP_BENCH_WARMUP_MS (1000),
# PP_BENCH_DURATION_MS (3000), PP_BENCH_SIZE (64).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=${PP_BENCH_BUILD:-$root/build-bench}
warmup=${PP_BENCH_WARMUP_MS:-1000}
duration=${PP_BENCH_DURATION_MS:-3000}
size=${PP_BENCH_SIZE:-64}

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
if ! log=$(cmake --build "$build" -j"$(nproc)" --target c_server ttrpc_bench_client ttrpc_bench_go 2>&1); then
    echo "$log"
    echo "ttrpc bench: build failed" >&2
    exit 1
fi

c_server=$build/tests/interop/c_server
c_load=$build/tests/bench/ttrpc/ttrpc_bench_client
go_bin=$build/tests/bench/ttrpc/ttrpc-bench

dir=$(mktemp -d "${TMPDIR:-/tmp}/pp-bench-ttrpc.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT

start_server() { # kind
    local sock=$dir/$1.sock
    case $1 in
    c) "$c_server" "$sock" >"$dir/$1.log" 2>&1 & ;;
    go) "$go_bin" server -socket "$sock" >"$dir/$1.log" 2>&1 & ;;
    esac
    pids+=($!)
    for _ in $(seq 100); do
        [ -S "$sock" ] && return 0
        sleep 0.1
    done
    echo "ttrpc bench: $1 server did not start" >&2
    cat "$dir/$1.log" >&2
    exit 1
}

# load CLIENT SERVER CONC: prints "cps p50 p99".
load() {
    local sock=$dir/$2.sock out
    case $1 in
    c) out=$("$c_load" "$sock" "$3" "$size" "$warmup" "$duration") ;;
    go) out=$("$go_bin" load -socket "$sock" -conc "$3" -size "$size" -warmup "$warmup" \
        -duration "$duration") ;;
    esac
    echo "$out" | awk '/^RESULT/ {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        print v["cps"], v["p50_us"], v["p99_us"] }'
}

start_server c
start_server go

declare -A r
for conc in 1 64; do
    r[a_c_$conc]=$(load go c "$conc")
    r[a_go_$conc]=$(load go go "$conc")
    r[b_c_$conc]=$(load c go "$conc")
done

row() { # label conc "cps p50 p99"
    read -r cps p50 p99 <<<"$3"
    printf '  %-28s %7s %12s %10s %10s\n' "$1" "$2" "$cps" "$p50" "$p99"
}
ratio() { # conc "ours" "go"
    awk -v c="$1" -v a="$2" -v b="$3" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        printf "  %-28s %7s %12.2f %10.2f %10.2f\n", "ours/Go", c, x[1] / y[1], x[2] / y[2], x[3] / y[3] }'
}

echo "ttrpc over a unix socket: Echo, ${size} B payload, one connection;"
echo "warm-up ${warmup} ms, then ${duration} ms measured per row; latency in microseconds."
echo "Ratios ours/Go: calls/s above 1 is better, latency below 1 is better."
printf '  %-28s %7s %12s %10s %10s\n' "" streams calls/s p50 p99
echo "(a) server under test, Go load client"
for conc in 1 64; do
    row "C server (ours)" "$conc" "${r[a_c_$conc]}"
    row "Go server" "$conc" "${r[a_go_$conc]}"
    ratio "$conc" "${r[a_c_$conc]}" "${r[a_go_$conc]}"
done
echo "(b) client under test, Go server"
for conc in 1 64; do
    row "C client (ours)" "$conc" "${r[b_c_$conc]}"
    row "Go client" "$conc" "${r[a_go_$conc]}"
    ratio "$conc" "${r[b_c_$conc]}" "${r[a_go_$conc]}"
done
