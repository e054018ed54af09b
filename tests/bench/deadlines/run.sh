#!/usr/bin/env bash
# Deadlines on one ttrpc connection: CPU time per call for N calls held by
# the server, each expiring at its own deadline, at N = 100 to 30,000; the
# ratio is to N = 100 in the same run. A flat ratio is O(log N) per call
# (the connection's heap of deadlines); a rescan of every call each time
# the timer fires shows as a ratio that grows with N.
#
# Environment: PP_BENCH_BUILD (build tree; default build-bench/, configured
# Release here when missing).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=${PP_BENCH_BUILD:-$root/build-bench}

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
if ! log=$(cmake --build "$build" -j2 --target pp_bench_deadlines 2>&1); then
    echo "$log"
    echo "deadlines bench: build failed" >&2
    exit 1
fi
for side in server client; do
    "$build/tests/bench/ttrpc/pp_bench_deadlines" "$side" 100 1000 10000 30000 | grep -v '^RESULT'
done
