#!/usr/bin/env bash
# The cost of /metrics, on cloud-api-adaptor with the local provider in a
# network namespace made here, holding 1,000 sandboxes (CreateVM'd) and one
# running pod:
#
#   scrape    PP_BENCH_SCRAPES (300) scrapes of /metrics one after another
#             on one keep-alive connection: the client's time per scrape
#             (median, p99), and the daemon's CPU time per scrape (all its
#             threads, from /proc/<pid>/task/*/schedstat), which bounds the
#             loop's time spent on it. Goal: under 1 ms.
#   chain     the chain benchmark's load (tests/bench/chain: Go ttrpc client,
#             grpc.Health/Check, 64 B, 64 calls in flight) on the running
#             pod's agent socket, through CAA and the forwarder with mutual
#             TLS, with and without a scrape every 100 ms; rows interleaved,
#             PP_BENCH_ROUNDS (5) rounds, medians. Goal: calls/s with
#             scraping at least 0.98 of calls/s without.
#
# Environment: PP_BENCH_BUILD (build tree; default build-bench/, configured
# Release when missing), PP_BENCH_SANDBOXES (1000), PP_BENCH_SCRAPES (300),
# PP_BENCH_ROUNDS (5), PP_BENCH_DURATION_MS (2000), PP_BENCH_WARMUP_MS (500),
# PP_BENCH_SKIP_BUILD. Needs root (network namespaces).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
build=${PP_BENCH_BUILD:-$root/build-bench}
nsb=${PP_BENCH_SANDBOXES:-1000}
scrapes=${PP_BENCH_SCRAPES:-300}
rounds=${PP_BENCH_ROUNDS:-5}
duration=${PP_BENCH_DURATION_MS:-2000}
warmup=${PP_BENCH_WARMUP_MS:-500}
port=18080

die() {
    echo "metrics bench: $*" >&2
    exit 1
}
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"

if [ -z "${PP_BENCH_SKIP_BUILD:-}" ]; then
    [ -f "$build/CMakeCache.txt" ] || cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    if ! log=$(cmake --build "$build" -j"$(nproc)" --target cloud-api-adaptor \
        agent-protocol-forwarder process-user-data pp-test-agent pp-shim 2>&1); then
        echo "$log"
        die "build failed"
    fi
fi
bin=$build/bin
go_bin=$build/tests/bench/chain/chain-bench
mkdir -p "$(dirname "$go_bin")"
if [ ! -x "$go_bin" ] || [ -n "$(find "$root/tests/bench/chain/go" -name '*.go' -newer "$go_bin")" ]; then
    (cd "$root/tests/bench/chain/go" && GOPATH=/usr/share/gocode GO111MODULE=off \
        GOCACHE="$build/gocache" GOFLAGS='' go build -o "$go_bin" .) || die "go build failed"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ppbm.XXXXXX")
node=ppbm-$$
caa_pid=
sid=
cleanup() {
    set +e
    trap - EXIT INT TERM
    if [ -n "$caa_pid" ] && kill -0 "$caa_pid" 2>/dev/null; then
        [ -n "$sid" ] && timeout 20 "$bin/pp-shim" -socket "$work/hv.sock" -timeout 15 stop "$sid" \
            >/dev/null 2>&1
        kill -TERM "$caa_pid"
        for _ in $(seq 100); do
            kill -0 "$caa_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$caa_pid" 2>/dev/null
    fi
    for f in "$work"/vms/*/agent.pid "$work"/vms/*/forwarder.pid; do
        [ -f "$f" ] && kill -KILL "$(cut -d' ' -f1 "$f")" 2>/dev/null
    done
    ip netns del "$node" 2>/dev/null
    for m in "$work"/netns/*; do
        [ -e "$m" ] && umount -l "$m" 2>/dev/null
    done
    umount -l "$work/netns" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$node"
ip -n "$node" link set lo up
ip netns exec "$node" env CLOUD_PROVIDER=local PEERPODS_LIMIT_PER_NODE=0 \
    REMOTE_HYPERVISOR_ENDPOINT="$work/hv.sock" PODS_DIR="$work/pods" LOCAL_STATE_DIR="$work/vms" \
    LOCAL_NETNS_DIR="$work/netns" PROXY_TIMEOUT=30s PROBE_PORT=$port NODE_NAME=bench-node \
    "$bin/cloud-api-adaptor" >"$work/caa.log" 2>&1 &
caa_pid=$!
for _ in $(seq 200); do
    [ -S "$work/hv.sock" ] && break
    kill -0 "$caa_pid" 2>/dev/null || break
    sleep 0.05
done
[ -S "$work/hv.sock" ] || { cat "$work/caa.log" >&2; die "cloud-api-adaptor did not start"; }

# One running pod, then the rest CreateVM'd.
sid=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
sock=$("$bin/pp-shim" -socket "$work/hv.sock" -timeout 60 create "$sid" -pod bench-running \
    -namespace default) || die "CreateVM failed"
"$bin/pp-shim" -socket "$work/hv.sock" -timeout 60 start "$sid" >/dev/null || die "StartVM failed"
t0=$(date +%s)
seq 2 "$nsb" | xargs -P 4 -I{} "$bin/pp-shim" -socket "$work/hv.sock" -timeout 60 create \
    "bench-sandbox-{}" -pod "bench-{}" -namespace default >/dev/null ||
    die "CreateVM of the $nsb sandboxes failed"
echo "made $nsb sandboxes (1 running) in $(($(date +%s) - t0)) s"

cpu_ns() {
    local t=0 ns
    for f in /proc/"$caa_pid"/task/*/schedstat; do
        read -r ns _ <"$f" 2>/dev/null || continue
        t=$((t + ns))
    done
    echo "$t"
}

# ---- scrape ---------------------------------------------------------------------
scrape_py=$work/scrape.py
cat >"$scrape_py" <<'EOF'
import http.client, sys, time
port, n, every = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
times, size, end = [], 0, time.time() + (n * every if every > 0 else 1e9)
i = 0
while (every == 0 and i < n) or (every > 0 and time.time() < end):
    t = time.perf_counter()
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read()
    times.append((time.perf_counter() - t) * 1e6)
    assert r.status == 200, r.status
    size = len(body)
    i += 1
    if every > 0:
        time.sleep(max(0, every - (time.perf_counter() - t)))
times.sort()
print("RESULT n=%d p50_us=%.0f p99_us=%.0f bytes=%d" % (len(times), times[len(times) // 2],
      times[min(len(times) - 1, int(len(times) * 0.99))], size))
if every == 0 and "sandboxes" in sys.argv[4:]:
    sys.stdout.write(body.decode())
EOF
ip netns exec "$node" /usr/bin/python3 "$scrape_py" "$port" 20 0 >/dev/null # warm-up
c0=$(cpu_ns)
res=$(ip netns exec "$node" /usr/bin/python3 "$scrape_py" "$port" "$scrapes" 0 sandboxes)
c1=$(cpu_ns)
echo "$res" | grep -q "caa_sandboxes{state=\"created\"} $((nsb - 1))" ||
    die "the scrape does not show $((nsb - 1)) created sandboxes"
line=$(echo "$res" | grep '^RESULT')
cpu_us=$(awk -v a="$c0" -v b="$c1" -v n="$scrapes" 'BEGIN { printf "%.0f", (b - a) / 1000 / n }')
p50=$(echo "$line" | sed 's/.*p50_us=\([0-9]*\).*/\1/')
p99=$(echo "$line" | sed 's/.*p99_us=\([0-9]*\).*/\1/')
bytes=$(echo "$line" | sed 's/.*bytes=\([0-9]*\).*/\1/')
echo "/metrics with $nsb sandboxes ($bytes bytes), $scrapes scrapes on one connection:"
printf '  daemon CPU per scrape %6s us  (goal < 1000: %s)\n' "$cpu_us" \
    "$([ "$cpu_us" -lt 1000 ] && echo met || echo MISSED)"
printf '  client time per scrape: p50 %s us, p99 %s us (loopback, Python client)\n' "$p50" "$p99"

# ---- chain with and without scraping ----------------------------------------------
results=$work/results
: >"$results"
load() {
    "$go_bin" load -socket "$sock" -conc 64 -size 64 -warmup "$warmup" -duration "$duration" \
        -timeout 30000 | awk '/^RESULT/ { for (i = 2; i <= NF; i++) { split($i, kv, "=");
        v[kv[1]] = kv[2] } print v["cps"], v["p50_us"], v["p99_us"] }'
}
scraped_row() {
    local secs
    secs=$(awk -v d="$duration" -v w="$warmup" 'BEGIN { print (d + w) / 1000 + 1 }')
    ip netns exec "$node" /usr/bin/python3 "$scrape_py" "$port" \
        "$(awk -v s="$secs" 'BEGIN { print int(s * 10) }')" 0.1 >"$work/scraper.out" &
    local scraper=$!
    echo "scraped 64 $(load)" >>"$results"
    wait "$scraper" || die "the scraper failed"
}
# The order alternates: the row that follows a pause finds a heap the
# daemon trimmed while quiet (caa/heap.c), which a scrape every 100 ms
# never lets happen.
for r in $(seq "$rounds"); do
    if [ $((r % 2)) -eq 1 ]; then
        echo "plain 64 $(load)" >>"$results"
        scraped_row
    else
        scraped_row
        echo "plain 64 $(load)" >>"$results"
    fi
done
"$bin/pp-shim" -timeout 10 health "$sock" >/dev/null || die "the pod does not answer after the load"
medians=$(bench_medians "$results")
plain=$(echo "$medians" | awk '$1 == "plain" { print $3, $4, $5 }')
scraped=$(echo "$medians" | awk '$1 == "scraped" { print $3, $4, $5 }')
echo "chain (CAA mTLS -> forwarder -> agent), 64 streams, median of $rounds interleaved rounds:"
echo "$plain" | awk '{ printf "  without scraping     %8.0f calls/s  p50 %6.0f us  p99 %6.0f us\n", $1, $2, $3 }'
echo "$scraped" | awk '{ printf "  scraped every 100 ms %8.0f calls/s  p50 %6.0f us  p99 %6.0f us\n", $1, $2, $3 }'
awk -v a="$scraped" -v b="$plain" 'BEGIN { split(a, x, " "); split(b, y, " "); r = x[1] / y[1]
    printf "  ratio scraped/plain %.3f (goal >= 0.98: %s)\n", r, (r >= 0.98 ? "met" : "MISSED") }'
