#!/usr/bin/env bash
# TLS benchmark, in one run:
#
#   per pod: issue the pod VM's certificate, build its server context, and a
#            mutual-TLS handshake on a new loopback connection (p50/p99);
#   echo:    ttrpc Echo over loopback TCP, plaintext and TLS 1.3, with 1 MiB
#            payloads (MB/s) and 64-byte payloads (calls/s), and TLS/plain.
#
# Environment: PP_BENCH_BUILD (build tree; default build-bench/, configured
# Release here when missing), PP_BENCH_PODS (200), PP_BENCH_WARMUP_MS (300),
# PP_BENCH_DURATION_MS (1500).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
build=${PP_BENCH_BUILD:-$root/build-bench}
pods=${PP_BENCH_PODS:-200}
warmup=${PP_BENCH_WARMUP_MS:-300}
duration=${PP_BENCH_DURATION_MS:-1500}

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
if ! log=$(cmake --build "$build" -j"$(nproc)" --target tls_bench 2>&1); then
    echo "$log"
    echo "tls bench: build failed" >&2
    exit 1
fi

PP_LOG_LEVEL=${PP_LOG_LEVEL:-warn} "$build/tests/bench/tls/tls_bench" "$pods" "$warmup" "$duration"
