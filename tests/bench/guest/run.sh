#!/usr/bin/env bash
# Guest components: from a GetResource call on the data hub to the resource
# in memory, against the test KBS over HTTPS with swtpm as the vTPM.
#   cold  fresh attestation agent and data hub: no token; the KBS sees auth,
#         attest and the resource request (at most 3 round trips)
#   warm  the data hub holds a valid token: the resource request alone (at
#         most 1 round trip)
# Baselines measured in the same run: one HTTPS GET to the same KBS by curl
# (a new process and TLS connection each time; the data hub keeps its
# connection), and one TPM2 quote over the 24 PCRs by the same key
# (tpm2_quote). Each of our rows includes starting guest-call and its ttrpc
# connection. Each figure is the median of
# ROUNDS (default 7 cold, 21 warm).
#
# Usage: run.sh   (PP_BENCH_BUILD: a Release tree; tests/bench/run.sh sets it)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
B=${PP_BENCH_BUILD:-$root/build-bench}
PY=/usr/bin/python3
KBS=$root/tests/integration/guest/kbs.py
COLD=${COLD_ROUNDS:-7}
WARM=${WARM_ROUNDS:-21}

for tool in swtpm tpm2_quote curl openssl ip; do
    command -v $tool >/dev/null || { echo "bench guest: $tool missing (scripts/setup.sh)"; exit 1; }
done
cmake --build "$B" -j2 --target attestation-agent confidential-data-hub guest-call >/dev/null

work=$(mktemp -d)
NS=guestbench-$$
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
in_ns() { ip netns exec "$NS" "$@"; }
ip netns add "$NS"
ip -n "$NS" link set lo up

mkdir tpmstate
ip netns exec "$NS" swtpm socket --tpm2 --tpmstate dir="$work/tpmstate" \
    --server type=tcp,port=2321,bindaddr=127.0.0.1 --ctrl type=tcp,port=2322,bindaddr=127.0.0.1 \
    --flags not-need-init,startup-clear &
pids+=($!)
TCTI=swtpm:host=127.0.0.1,port=2321
for _ in $(seq 100); do in_ns tpm2_pcrread -T "$TCTI" sha256:0 >/dev/null 2>&1 && break; sleep 0.05; done

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ca \
    -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=kbs -keyout kbs.key \
    -out kbs.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >san.ext
openssl x509 -req -in kbs.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext \
    -out kbs.pem 2>/dev/null
mkdir -p res/default/key
head -c 4096 /dev/urandom >res/default/key/k1
printf '[token_configs.kbs]\nurl = "https://127.0.0.1:8443"\ncert = """\n%s\n"""\n' "$(cat ca.pem)" \
    >aa.toml
printf 'socket = "unix://%s/cdh.sock"\n[kbc]\nname = "cc_kbc"\nurl = "https://127.0.0.1:8443"\nkbs_cert = """\n%s\n"""\n[aa]\naa_socket = "unix://%s/aa.sock"\n' \
    "$work" "$(cat ca.pem)" "$work" >cdh.toml
ip netns exec "$NS" "$PY" "$KBS" --port 8443 --cert kbs.pem --key kbs.key --resources res \
    --trust-any-ak >kbs.log 2>&1 &
pids+=($!)
requests() {
    in_ns curl -s --cacert ca.pem https://127.0.0.1:8443/test/stats |
        "$PY" -c 'import json,sys; print(json.load(sys.stdin)["requests"])'
}
for _ in $(seq 100); do requests >/dev/null 2>&1 && break; sleep 0.1; done

now_us() { date +%s%6N; }
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

start_daemons() {
    rm -f aa.sock cdh.sock
    ip netns exec "$NS" "$B/bin/attestation-agent" -c aa.toml --attestation_sock "unix://$work/aa.sock" \
        --tcti "$TCTI" --initdata /nonexistent >>aa.log 2>&1 &
    aa=$!
    ip netns exec "$NS" "$B/bin/confidential-data-hub" -c cdh.toml >>cdh.log 2>&1 &
    cdh=$!
    for _ in $(seq 200); do [ -S aa.sock ] && [ -S cdh.sock ] && return; sleep 0.01; done
    echo "bench guest: daemons did not start" >&2
    exit 1
}
stop_daemons() {
    kill "$aa" "$cdh"
    wait "$aa" "$cdh" 2>/dev/null || true
}
get() { # prints microseconds of one GetResource
    local t0 t1
    t0=$(now_us)
    in_ns "$B/tests/guest-call" "$work/cdh.sock" api.GetResourceService GetResource \
        kbs:///default/key/k1 >got.bin || { echo "bench guest: GetResource failed" >&2; exit 1; }
    t1=$(now_us)
    cmp -s got.bin res/default/key/k1 || { echo "bench guest: wrong resource" >&2; exit 1; }
    echo $((t1 - t0))
}

# The AK is made on first use: once, outside the measurements.
start_daemons
get >/dev/null
stop_daemons

: >cold.us
: >cold.rt
: >warm.us
: >warm.rt
for _ in $(seq "$COLD"); do
    start_daemons
    r0=$(requests)
    get >>cold.us
    r1=$(requests)
    echo $((r1 - r0)) >>cold.rt
    for _ in $(seq $((WARM / COLD + 1))); do
        r0=$(requests)
        get >>warm.us
        r1=$(requests)
        echo $((r1 - r0)) >>warm.rt
    done
    stop_daemons
done

: >https.us
: >quote.us
for _ in $(seq "$WARM"); do
    t0=$(now_us)
    in_ns curl -s -o /dev/null --cacert ca.pem https://127.0.0.1:8443/test/stats
    t1=$(now_us)
    echo $((t1 - t0)) >>https.us
done
for _ in $(seq "$COLD"); do
    t0=$(now_us)
    in_ns tpm2_quote -T "$TCTI" -c 0x81010002 -l sha256:all -q 00112233445566778899aabbccddeeff \
        -m q.msg -s q.sig -o q.pcrs >/dev/null 2>&1 || { echo "bench guest: tpm2_quote failed" >&2; exit 1; }
    t1=$(now_us)
    echo $((t1 - t0)) >>quote.us
done

cold_ms=$(median <cold.us | awk '{printf "%.1f", $1 / 1000}')
warm_ms=$(median <warm.us | awk '{printf "%.1f", $1 / 1000}')
https_ms=$(median <https.us | awk '{printf "%.1f", $1 / 1000}')
quote_ms=$(median <quote.us | awk '{printf "%.1f", $1 / 1000}')
cold_rt=$(sort -n cold.rt | tail -1)
warm_rt=$(sort -n warm.rt | tail -1)
printf '%-44s %8s %8s %14s\n' row "KBS RTs" ms "ratio"
printf '%-44s %8s %8s %14s\n' "baseline: one HTTPS GET (curl)" 1 "$https_ms" 1.00
printf '%-44s %8s %8s %14s\n' "baseline: one TPM2 quote (tpm2_quote)" 0 "$quote_ms" "-"
printf '%-44s %8s %8s %14s\n' "warm: GetResource, token held" "$warm_rt" "$warm_ms" \
    "$(awk -v a="$warm_ms" -v b="$https_ms" 'BEGIN {printf "%.2f x HTTPS", a / b}')"
printf '%-44s %8s %8s %14s\n' "cold: GetResource, attestation first" "$cold_rt" "$cold_ms" \
    "$(awk -v a="$cold_ms" -v b="$https_ms" -v q="$quote_ms" 'BEGIN {printf "%.2f x (3 HTTPS + quote)", a / (3 * b + q)}')"
status=0
[ "$warm_rt" -le 1 ] || { echo "bench guest: warm took $warm_rt round trips (at most 1)"; status=1; }
[ "$cold_rt" -le 3 ] || { echo "bench guest: cold took $cold_rt round trips (at most 3)"; status=1; }
exit $status
