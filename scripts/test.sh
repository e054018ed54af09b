#!/usr/bin/env bash
# Installs what is needed, builds, and runs the whole suite:
#   1. the suite (unit, interop, integration, e2e, fuzz corpus replay),
#   2. the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer
#      (leak checking on),
#   3. every libFuzzer target for FUZZ_SECONDS (default 30) each;
# and before them a lint (clang-format, banned calls).
# Ends with one line "total: N passed, N failed, N skipped".
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-30}
phases=${PP_TEST_PHASES:-"suite asan fuzz"}

passed=0
failed=0
skipped=0
failures=()

bash scripts/setup.sh || { echo "setup failed"; exit 1; }

# Runs ctest in a build dir and adds its counts to the totals.
run_ctest() {
    local name=$1 dir=$2
    shift 2
    local log="$dir/ctest.log"
    (cd "$dir" && ctest --output-on-failure --timeout 600 "$@") 2>&1 | tee "$log"
    local total fail skip
    total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
    fail=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed.*/\1/p' "$log" | tail -1)
    skip=$(grep -c '\*\*\*Skipped\| Skipped ' "$log" || true)
    total=${total:-0}
    fail=${fail:-1}
    [ "$total" -eq 0 ] && { fail=1; echo "$name: no tests ran"; }
    passed=$((passed + total - fail - skip))
    failed=$((failed + fail))
    skipped=$((skipped + skip))
    [ "$fail" -eq 0 ] || failures+=("$name")
}

# build DIR [TARGET] -- CMAKE_ARGS...
build() {
    local dir=$1 target=$2
    shift 2
    cmake -S . -B "$dir" "$@" >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; return 1; }
    cmake --build "$dir" -j"$jobs" ${target:+--target "$target"} >"$dir.build.log" 2>&1
    local rc=$?
    [ $rc -eq 0 ] || tail -n 40 "$dir.build.log"
    return $rc
}

for phase in $phases; do
    case $phase in
    suite)
        echo "== lint: clang-format and banned calls"
        if bash scripts/lint.sh; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1)); failures+=("lint")
        fi
        echo "== build and run the suite"
        if build build "" -DCMAKE_BUILD_TYPE=RelWithDebInfo; then
            run_ctest suite build
        else
            failed=$((failed + 1)); failures+=("build")
        fi
        ;;
    asan)
        echo "== ASan + UBSan build of the suite"
        echo "   (label podvm runs in the suite phase only: the pod VM image carries the"
        echo "   suite's binaries, and a sanitized build's would need the sanitizer runtime in"
        echo "   the image)"
        if build build-asan "" -DCMAKE_BUILD_TYPE=Debug -DPP_SANITIZE=ON; then
            ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
                run_ctest asan build-asan -LE 'bench|nosan|podvm'
        else
            failed=$((failed + 1)); failures+=("asan build")
        fi
        ;;
    fuzz)
        echo "== libFuzzer targets, ${fuzz_seconds}s each"
        if CC=clang build build-fuzz fuzz_all -DCMAKE_BUILD_TYPE=Debug -DPP_FUZZ=ON; then
            for target in build-fuzz/fuzz/*; do
                [ -x "$target" ] || continue
                name=$(basename "$target")
                corpus="build-fuzz/corpus-run/$name"
                mkdir -p "$corpus"
                [ -d "tests/fuzz/corpus/$name" ] && cp -n tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null
                echo "-- $name"
                if ASAN_OPTIONS=detect_leaks=1 "$target" -max_total_time="$fuzz_seconds" \
                    -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 "$corpus" \
                    >"build-fuzz/$name.log" 2>&1; then
                    grep -E 'stat::number_of_executed_units|stat::peak_rss' "build-fuzz/$name.log"
                    passed=$((passed + 1))
                else
                    tail -n 40 "build-fuzz/$name.log"
                    failed=$((failed + 1)); failures+=("fuzz $name")
                fi
            done
        else
            failed=$((failed + 1)); failures+=("fuzz build")
        fi
        ;;
    *)
        echo "unknown phase $phase"; exit 2 ;;
    esac
done

[ ${#failures[@]} -eq 0 ] || echo "failed: ${failures[*]}"
echo "total: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
