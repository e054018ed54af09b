#!/usr/bin/env bash
# Runs the conformance suite and the pod lifecycles through cloud-api-adaptor
# for one provider against its fake, with N lifecycles (default 1000):
#     tests/conformance/run.sh PROVIDER [N] [BUILD_DIR]
# The fake of each provider is the one tests/conformance/CMakeLists.txt
# registers. Prints both runs' figures; exits non-zero if either fails.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
provider=${1:?usage: run.sh PROVIDER [N] [BUILD_DIR]}
n=${2:-1000}
build=$(cd "${3:-$top/build}" && pwd)
fake=$(sed -n "s|^ *pp_conformance(${provider} \\\${PROJECT_SOURCE_DIR}/\\([^ ]*\\) .*|\\1|p" \
    "$top/tests/conformance/CMakeLists.txt")
[ -n "$fake" ] || { echo "run.sh: no fake registered for \`$provider\`" >&2; exit 2; }
rc=0
start=$(date +%s)
PP_MODULE_DIR=$build/lib/peerpod /usr/bin/python3 "$top/$fake" -- \
    "$build/tests/test_conformance" "$provider" "$n" || rc=1
mid=$(date +%s)
/usr/bin/python3 "$top/$fake" -- /usr/bin/python3 "$top/tests/conformance/caa_lifecycles.py" \
    "$provider" "$n" "$build/bin" || rc=1
end=$(date +%s)
echo "$provider: suite with $n lifecycles $((mid - start)) s, $n pod lifecycles through" \
    "cloud-api-adaptor $((end - mid)) s"
exit $rc
