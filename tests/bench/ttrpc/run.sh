#!/usr/bin/env bash
# ttrpc benchmark: our library against containerd's Go ttrpc, in one run.
#
#   (a) servers: our C server and Go's, under the same Go load client;
#   (b) clients: our C client and Go's, against the same Go server;
#
# each at 1 and 64 calls in flight on one unix-socket connection, Echo with
# a 64-byte payload, a warm-up that is discarded, then a measured window.
# Our side runs as the daemons do by default, and once more with busy
# polling (lib/util/loop.h). Every row runs once per round, the rounds
# interleave the rows, and the table shows the median of the rounds.
# Prints calls/s, p50 and p99 round-trip latency, ours/Go ratios, and the
# machine's floor: a round trip over a socketpair with nothing on it.
#
# Environment: PP_BENCH_BUILD (build tree; default build-bench/, configured
# Release here when missing), PP_BENCH_WARMUP_MS (500),
# PP_BENCH_DURATION_MS (2000), PP_BENCH_ROUNDS (3), PP_BENCH_SIZE (64).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
build=${PP_BENCH_BUILD:-$root/build-bench}
warmup=${PP_BENCH_WARMUP_MS:-500}
duration=${PP_BENCH_DURATION_MS:-2000}
rounds=${PP_BENCH_ROUNDS:-3}
size=${PP_BENCH_SIZE:-64}

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
if ! log=$(cmake --build "$build" -j"$(nproc)" --target c_server ttrpc_bench_client ttrpc_bench_go \
    pp_bench_pingpong 2>&1); then
    echo "$log"
    echo "ttrpc bench: build failed" >&2
    exit 1
fi

c_server=$build/tests/interop/c_server
c_load=$build/tests/bench/ttrpc/ttrpc_bench_client
go_bin=$build/tests/bench/ttrpc/ttrpc-bench
pingpong=$build/tests/bench/ttrpc/pp_bench_pingpong

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
    cp) BUSY_POLL_US=200 "$c_server" "$sock" >"$dir/$1.log" 2>&1 & ;;
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
    cp) out=$(BUSY_POLL_US=200 "$c_load" "$sock" "$3" "$size" "$warmup" "$duration") ;;
    go) out=$("$go_bin" load -socket "$sock" -conc "$3" -size "$size" -warmup "$warmup" \
        -duration "$duration") ;;
    esac
    echo "$out" | awk '/^RESULT/ {
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        print v["cps"], v["p50_us"], v["p99_us"] }'
}

start_server c
start_server cp
start_server go

# Rows: "<client> <server>" pairs, each measured at both concurrencies.
pairs=("go c" "go cp" "go go" "c go" "cp go")
results=$dir/results
: >"$results"
floors=()
for _ in $(seq "$rounds"); do
    floors+=("$("$pingpong" | awk '/^RESULT/ { split($2, a, "="); split($3, b, "="); print a[2], b[2] }')")
    for conc in 1 64; do
        for p in "${pairs[@]}"; do
            read -r cl sv <<<"$p"
            echo "${cl}_$sv $conc $(load "$cl" "$sv" "$conc")" >>"$results"
        done
    done
done

# Medians over the rounds: r[<client>_<server>_<conc>]="cps p50 p99".
declare -A r
while read -r key conc cps p50 p99; do
    r[${key}_$conc]="$cps $p50 $p99"
done < <(bench_medians "$results")
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
floor_sleep=$(printf '%s\n' "${floors[@]}" | cut -d' ' -f1 | median)
floor_poll=$(printf '%s\n' "${floors[@]}" | cut -d' ' -f2 | median)

row() { # label conc "cps p50 p99"
    read -r cps p50 p99 <<<"$3"
    printf '  %-28s %7s %12s %10s %10s\n' "$1" "$2" "$cps" "$p50" "$p99"
}
ratio() { # conc "ours" "go" [label]
    awk -v c="$1" -v a="$2" -v b="$3" -v l="${4:-ours/Go}" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        printf "  %-28s %7s %12.2f %10.2f %10.2f\n", l, c, x[1] / y[1], x[2] / y[2], x[3] / y[3] }'
}

echo "ttrpc over a unix socket: Echo, ${size} B payload, one connection;"
echo "warm-up ${warmup} ms, then ${duration} ms measured per row and round; median of ${rounds} rounds;"
echo "latency in microseconds. Ours runs as the daemons do by default, and once more with busy"
echo "polling (BUSY_POLL_US=200, lib/util/loop.h)."
echo "machine floor: one round trip between two processes over a socketpair, nothing on it:"
echo "  ${floor_sleep} us when the peer sleeps between messages, ${floor_poll} us when it polls."
echo "Ratios ours/Go: calls/s above 1 is better, latency below 1 is better."
printf '  %-28s %7s %12s %10s %10s\n' "" streams calls/s p50 p99
echo "(a) server under test, Go load client"
for conc in 1 64; do
    row "C server (ours)" "$conc" "${r[go_c_$conc]}"
    row "C server, busy polling" "$conc" "${r[go_cp_$conc]}"
    row "Go server" "$conc" "${r[go_go_$conc]}"
    ratio "$conc" "${r[go_c_$conc]}" "${r[go_go_$conc]}"
    ratio "$conc" "${r[go_cp_$conc]}" "${r[go_go_$conc]}" "ours/Go, busy polling"
done
echo "(b) client under test, Go server"
for conc in 1 64; do
    row "C client (ours)" "$conc" "${r[c_go_$conc]}"
    row "C client, busy polling" "$conc" "${r[cp_go_$conc]}"
    row "Go client" "$conc" "${r[go_go_$conc]}"
    ratio "$conc" "${r[c_go_$conc]}" "${r[go_go_$conc]}"
    ratio "$conc" "${r[cp_go_$conc]}" "${r[go_go_$conc]}" "ours/Go, busy polling"
done
# goal LABEL CONC "ours" "go": the issue's goals for one pairing.
goal() {
    awk -v l="$1" -v c="$2" -v a="$3" -v b="$4" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        p50 = x[2] / y[2]; p99 = x[3] / y[3]; cps = x[1] / y[1]
        s = sprintf("%s, %s streams: p50 ours/Go %.2f (goal <= 0.50: %s), p99 %.2f (%s)", l, c,
            p50, p50 <= 0.5 ? "met" : "MISSED", p99, p99 <= 0.5 ? "met" : "MISSED")
        if (c == 64) s = s sprintf(", calls/s %.2f (goal >= 2.00: %s)", cps, cps >= 2 ? "met" : "MISSED")
        print s }'
}
for conc in 1 64; do
    goal "(a) server" "$conc" "${r[go_c_$conc]}" "${r[go_go_$conc]}"
    goal "(b) client" "$conc" "${r[c_go_$conc]}" "${r[go_go_$conc]}"
    goal "(a) server, busy polling" "$conc" "${r[go_cp_$conc]}" "${r[go_go_$conc]}"
    goal "(b) client, busy polling" "$conc" "${r[cp_go_$conc]}" "${r[go_go_$conc]}"
done
