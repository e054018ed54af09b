#!/usr/bin/env bash
# Runs the benchmarks: every tests/bench/<area>/run.sh, or only the areas
# named on the command line. Configures one Release tree (build-bench/, or
# PP_BENCH_BUILD) and passes it to each area in PP_BENCH_BUILD; an area
# builds the targets it needs. Exits non-zero if any area failed.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export PP_BENCH_BUILD=${PP_BENCH_BUILD:-$root/build-bench}

if ! cmake -S "$root" -B "$PP_BENCH_BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null; then
    echo "bench: cmake configure failed" >&2
    exit 1
fi

if [ $# -gt 0 ]; then
    areas=("$@")
else
    areas=()
    for s in "$here"/*/run.sh; do
        [ -x "$s" ] && areas+=("$(basename "$(dirname "$s")")")
    done
fi

failed=()
for a in "${areas[@]}"; do
    script=$here/$a/run.sh
    echo "=== bench: $a"
    if [ ! -x "$script" ]; then
        echo "bench: no executable $script" >&2
        failed+=("$a")
        continue
    fi
    start=$(date +%s)
    if ! "$script"; then
        failed+=("$a")
    fi
    echo "=== bench: $a done in $(($(date +%s) - start)) s"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "bench: failed: ${failed[*]}" >&2
    exit 1
fi
