#!/usr/bin/env bash
# The attestation agent and the confidential data hub against the strict
# test KBS (kbs.py) over HTTPS, with swtpm as the vTPM, all in a network
# namespace of the test's own:
#  - process-user-data binds the initdata into PCR8, as at boot;
#  - GetTeeType, GetEvidence (a quote the KBS's verifier accepts, binding
#    the runtime data), BindInitData (the digest in PCR8, and another not),
#    ExtendRuntimeMeasurement (not enabled);
#  - GetToken refused while the KBS does not trust the AK, then issued; a
#    resource released through the data hub to the attested key; a sealed
#    secret verified and unsealed; a tampered one refused;
#  - a KBS expecting other initdata refuses (PCR8);
#  - faults: a changed nonce, a JWE that does not decrypt, 503s, garbage,
#    an oversized answer, an expired token (a fresh one is fetched); the
#    daemons keep serving, and no secret reaches their logs.
# Skips (77) saying why when swtpm, tpm2-tools or the Python modules are
# missing, or when not root.
#
# Usage: attest_test.sh BIN_DIR GUEST_CALL PYTHON
set -euo pipefail

BIN=$(cd "$1" && pwd)
CALL=$(realpath "$2")
PY=${3:-/usr/bin/python3}
HERE=$(cd "$(dirname "$0")" && pwd)

missing=
for tool in swtpm tpm2_pcrread ip openssl; do
    command -v $tool >/dev/null || missing="$missing $tool"
done
"$PY" -c 'import cryptography, jwt' 2>/dev/null || missing="$missing python3-cryptography/python3-jwt"
[ "$(id -u)" = 0 ] || missing="$missing (root, for the namespace)"
if [ -n "$missing" ]; then
    echo "SKIP: needs$missing (scripts/setup.sh installs them)"
    exit 77
fi

work=$(mktemp -d)
NS=guestaa-$$
CRED=/run/guest-attest-test-$$
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$CRED"
    [ -n "${KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

pass=0
fail() {
    echo "FAIL: $*" >&2
    for f in aa.log cdh.log kbs.log; do
        [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}
ok() {
    pass=$((pass + 1))
    echo "ok: $*"
}
in_ns() { ip netns exec "$NS" "$@"; }

ip netns add "$NS"
ip -n "$NS" link set lo up

# ---- the vTPM, and initdata bound into PCR8 as at boot ------------------------------

mkdir tpmstate
ip netns exec "$NS" swtpm socket --tpm2 --tpmstate dir="$work/tpmstate" \
    --server type=tcp,port=2321,bindaddr=127.0.0.1 --ctrl type=tcp,port=2322,bindaddr=127.0.0.1 \
    --flags not-need-init,startup-clear --log file="$work/swtpm.log" &
pids+=($!)
TCTI=swtpm:host=127.0.0.1,port=2321
for _ in $(seq 100); do
    in_ns tpm2_pcrread -T "$TCTI" sha256:8 >/dev/null 2>&1 && break
    sleep 0.05
done

# TLS for the KBS: a CA and a server certificate for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=test-ca \
    -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=kbs \
    -keyout kbs.key -out kbs.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >san.ext
openssl x509 -req -in kbs.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext \
    -out kbs.pem 2>/dev/null
CA=$(cat ca.pem)

cat >aa.toml <<EOF
[token_configs.kbs]
url = "https://127.0.0.1:8443"
cert = """
$CA
"""
EOF
cat >cdh.toml <<EOF
socket = "unix://$work/cdh.sock"

[kbc]
name = "cc_kbc"
url = "https://127.0.0.1:8443"
kbs_cert = """
$CA
"""

[aa]
aa_socket = "unix://$work/aa.sock"

[[credentials]]
resource_uri = "kbs:///default/key/k1"
path = "$CRED/k1"
EOF
printf 'algorithm = "sha256"\nversion = "0.1.0"\n\n[data]\n"aa.toml" = \x27\x27\x27\n%s\n\x27\x27\x27\n' \
    "$(cat aa.toml)" >initdata.toml
printf 'algorithm = "sha256"\nversion = "0.1.0"\n\n[data]\n"policy.rego" = "other"\n' \
    >other-initdata.toml
{
    printf '#cloud-config\nwrite_files:\n- path: /run/peerpod/apf.json\n  content: "{}"\n'
    printf -- '- path: /run/peerpod/initdata\n  content: %s\n' "$(gzip -c initdata.toml | base64 -w0)"
} >ud.yaml
mkdir root
in_ns "$BIN/process-user-data" provision-files --root "$work/root" --from ud.yaml --tcti "$TCTI" \
    >pud.log 2>&1 || { cat pud.log; fail "process-user-data"; }
digest=$(openssl dgst -sha256 -r initdata.toml | cut -d' ' -f1)
ok "process-user-data extended PCR8 with the initdata digest"

# ---- resources and the KBS ----------------------------------------------------------

mkdir -p res/default/key
printf 'the-secret-value' >res/default/key/k1
printf 'vault-secret' >res/default/key/vaulted
# A sealed secret: a vault pointer to default/key/vaulted, signed with a key
# whose public JWK the KBS serves as default/key/sealkey.
"$PY" - <<'EOF'
import base64, json
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
k = ec.generate_private_key(ec.SECP256R1())
n = k.public_key().public_numbers()
open("res/default/key/sealkey", "w").write(json.dumps(
    {"kty": "EC", "crv": "P-256", "x": b(n.x.to_bytes(32, "big")), "y": b(n.y.to_bytes(32, "big"))}))
hdr = b(json.dumps({"alg": "ES256", "kid": "kbs:///default/key/sealkey"}).encode())
body = b(json.dumps({"version": "0.1.0", "type": "vault", "provider": "kbs",
                     "name": "kbs:///default/key/vaulted", "provider_settings": {},
                     "annotations": {}}).encode())
r, s = decode_dss_signature(k.sign((hdr + "." + body).encode(), ec.ECDSA(hashes.SHA256())))
sig = b(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
open("sealed.txt", "w").write("sealed.%s.%s.%s" % (hdr, body, sig))
bad = bytearray(r.to_bytes(32, "big") + s.to_bytes(32, "big")); bad[5] ^= 1
open("sealed-bad.txt", "w").write("sealed.%s.%s.%s" % (hdr, body, b(bytes(bad))))
EOF
: >trusted-aks
kbs() { # PORT INITDATA LOG
    ip netns exec "$NS" "$PY" "$HERE/kbs.py" --port "$1" --cert kbs.pem --key kbs.key --resources res \
        --expect-initdata "$2" --trusted-aks "$work/trusted-aks" >"$3" 2>&1 &
    pids+=($!)
}
kbs 8443 initdata.toml kbs.log
kbs 8444 other-initdata.toml kbs-other.log
stats() { in_ns "$PY" -c "import json,ssl,urllib.request as u; c=ssl.create_default_context(cafile='ca.pem'); print(json.dumps(json.load(u.urlopen('https://127.0.0.1:$1/test/stats', context=c))))"; }
fault() { in_ns "$PY" -c "import json,ssl,urllib.request as u; c=ssl.create_default_context(cafile='ca.pem'); u.urlopen(u.Request('https://127.0.0.1:8443/test/fault', data=json.dumps({'name':'$1','count':${2:-1}}).encode()), context=c)"; }
for _ in $(seq 100); do stats 8443 >/dev/null 2>&1 && stats 8444 >/dev/null 2>&1 && break; sleep 0.1; done

# ---- the attestation agent ----------------------------------------------------------

AAS=$work/aa.sock
start_aa() { # CONFIG SOCKET LOG
    ip netns exec "$NS" "$BIN/attestation-agent" -c "$1" --attestation_sock "unix://$2" --tcti "$TCTI" \
        --initdata_toml initdata.toml --eventlog "$work/eventlog" >"$3" 2>&1 &
    pids+=($!)
    aa_pid=$!
    for _ in $(seq 100); do [ -S "$2" ] && return; sleep 0.05; done
    fail "attestation agent did not start"
}
start_aa aa.toml "$AAS" aa.log
first_aa=$aa_pid
AA=attestation_agent.AttestationAgentService
call() { # expects: status SOCK SERVICE METHOD ARGS...
    local want=$1
    shift
    set +e
    in_ns "$CALL" "$@" >out.bin 2>err.txt
    rc=$?
    set -e
    [ "$rc" = "$want" ] || fail "$3: exit $rc, want $want ($(cat err.txt))"
}

call 0 "$AAS" $AA GetTeeType
[ "$(cat out.bin)" = tpm ] || fail "GetTeeType: $(cat out.bin)"
call 0 "$AAS" $AA GetEvidence "runtime-data-abc"
"$PY" -c "
import sys, json, hashlib, base64
sys.path.insert(0, '$HERE')
import kbs
ev = json.load(open('out.bin'))
want8 = hashlib.sha256(b'\0' * 32 + bytes.fromhex('$digest')[:32]).digest()
c = kbs.verify_tpm(ev, b'runtime-data-abc', want8, None)
open('trusted-aks.new', 'w').write(ev['ak_public'] + '\n')
" || fail "the KBS's verifier refuses GetEvidence's quote"
ok "GetTeeType tpm; GetEvidence: a quote the KBS's verifier accepts, binding the runtime data, PCR8 = the initdata"

call 0 "$AAS" $AA BindInitData "0x$digest"
call 19 "$AAS" $AA BindInitData "0x$(printf '%064d' 0)"
grep -q "PCR8 does not hold" err.txt || fail "BindInitData refusal says $(cat err.txt)"
call 0 "$AAS" $AA ExtendRuntimeMeasurement domain op content
[ "$(cat out.bin)" = 2 ] || fail "ExtendRuntimeMeasurement: want NOT_ENABLED (2), got $(cat out.bin)"
ok "BindInitData takes the digest PCR8 holds and refuses another; a digest PCR8 does not hold; ExtendRuntimeMeasurement NOT_ENABLED"

call 17 "$AAS" $AA GetToken kbs
grep -q "attestation key is not trusted" err.txt || fail "untrusted AK: $(cat err.txt)"
mv trusted-aks.new trusted-aks
call 0 "$AAS" $AA GetToken kbs
"$PY" -c "import json; t = json.load(open('out.bin')); assert t['token'].count('.') == 2 and 'PRIVATE KEY' in t['tee_keypair']" ||
    fail "GetToken answer is not {token, tee_keypair}"
ok "GetToken refused (PERMISSION_DENIED) while the AK is not trusted, then issued"

# ---- the data hub -------------------------------------------------------------------

CDHS=$work/cdh.sock
start_cdh() { # LOG
    ip netns exec "$NS" "$BIN/confidential-data-hub" -c cdh.toml >"$1" 2>&1 &
    pids+=($!)
    cdh_pid=$!
    for _ in $(seq 100); do [ -S "$CDHS" ] && return; sleep 0.05; done
    fail "data hub did not start"
}
start_cdh cdh.log
call 0 "$CDHS" api.GetResourceService GetResource kbs:///default/key/k1
[ "$(cat out.bin)" = the-secret-value ] || fail "GetResource gave $(cat out.bin)"
stats 8443 | grep -q '"resource": "default/key/k1"' || fail "the KBS did not record the release"
call 0 "$CDHS" api.SealedSecretService UnsealSecret "$(cat sealed.txt)"
[ "$(cat out.bin)" = vault-secret ] || fail "UnsealSecret gave $(cat out.bin)"
call 17 "$CDHS" api.SealedSecretService UnsealSecret "$(cat sealed-bad.txt)"
grep -q "does not verify" err.txt || fail "tampered sealed secret: $(cat err.txt)"
call 15 "$CDHS" api.GetResourceService GetResource kbs:///default/key/none
call 13 "$CDHS" api.GetResourceService GetResource "kbs:///../key/k1"
for _ in $(seq 100); do [ -f "$CRED/k1" ] && break; sleep 0.05; done
[ "$(cat "$CRED/k1" 2>/dev/null)" = the-secret-value ] || fail "credential not provisioned at start"
[ "$(stat -c %a "$CRED/k1")" = 600 ] || fail "credential mode $(stat -c %a "$CRED/k1")"
ok "GetResource released by the KBS to the attested key; a credential provisioned at start (0600, under /run); sealed secret verified and unsealed; tampered refused; unknown NOT_FOUND"

# ---- the REST API -------------------------------------------------------------------

start_rest() { # FEATURES PORT LOG
    ip netns exec "$NS" "$BIN/api-server-rest" --features "$1" --bind "127.0.0.1:$2" \
        --aa-socket "unix://$AAS" --cdh-socket "unix://$CDHS" >"$3" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do in_ns "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $2))" 2>/dev/null && return; sleep 0.05; done
    fail "api-server-rest did not start"
}
start_rest all 8006 rest.log
start_rest resource 8007 rest2.log
rest() { # WANT_STATUS METHOD PORT PATH [BODY]: the body in out.bin
    in_ns "$PY" - "$@" <<'PYEOF' || fail "REST $2 $4"
import sys, urllib.request as u, urllib.error
want, method, port, path = sys.argv[1:5]
data = sys.argv[5].encode() if len(sys.argv) > 5 else None
req = u.Request("http://127.0.0.1:%s%s" % (port, path), data=data, method=method)
try:
    r = u.urlopen(req, timeout=60)
    status, body = r.status, r.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
open("out.bin", "wb").write(body)
if str(status) != want:
    sys.exit("status %d, want %s: %r" % (status, want, body[:200]))
PYEOF
}
rest 200 GET 8006 /info
"$PY" -c "import json; i = json.load(open('out.bin')); assert i['tee'] == 'tpm' and i['feature'] == 'all' and 'version' in i, i" ||
    fail "/info: $(cat out.bin)"
rest 200 GET 8006 "/aa/token?token_type=kbs"
"$PY" -c "import json; t = json.load(open('out.bin')); assert t['token'].count('.') == 2" || fail "/aa/token"
for q in "runtime_data=rest-data" "runtime_data=cmVzdC1kYXRh&encoding=base64"; do
    rest 200 GET 8006 "/aa/evidence?$q"
    "$PY" -c "
import sys, json
sys.path.insert(0, '$HERE')
import kbs
kbs.verify_tpm(json.load(open('out.bin')), b'rest-data', None, None)" || fail "/aa/evidence?$q does not bind rest-data"
done
rest 400 GET 8006 /aa/evidence
[ "$(cat out.bin)" = "BAD REQUEST" ] || fail "/aa/evidence without runtime_data: $(cat out.bin)"
rest 200 POST 8006 /aa/aael '{"domain":"d","operation":"o","content":"c"}'
grep -q '"success":"false"' out.bin || fail "/aa/aael: $(cat out.bin)"
rest 200 GET 8006 /cdh/resource/default/key/k1
[ "$(cat out.bin)" = the-secret-value ] || fail "/cdh/resource: $(cat out.bin)"
rest 500 GET 8006 /cdh/resource/default/key/none
rest 404 GET 8006 /nope
[ "$(cat out.bin)" = "URL NOT FOUND" ] || fail "/nope: $(cat out.bin)"
rest 405 POST 8006 /info x
rest 404 GET 8007 "/aa/token?token_type=kbs"
[ "$(cat out.bin)" = "Attestation Feature Not Enabled" ] || fail "features: $(cat out.bin)"
rest 200 GET 8007 /cdh/resource/default/key/k1
ok "REST on 127.0.0.1:8006: /info, /aa/token, /aa/evidence (plain and base64), /aa/aael, /cdh/resource, 400, 404, 405, features"

# ---- other initdata -----------------------------------------------------------------

sed 's/8443/8444/' aa.toml >aa-other.toml
start_aa aa-other.toml "$work/aa-other.sock" aa-other.log
call 17 "$work/aa-other.sock" $AA GetToken kbs
grep -q "PCR8 does not hold the expected initdata" err.txt || fail "other initdata: $(cat err.txt)"
stats 8444 | grep -q '"released": \[\]' || fail "the other KBS released something"
ok "a KBS expecting other initdata refuses: PCR8 does not hold it"

# ---- faults -------------------------------------------------------------------------

fault bad-jwe
call 23 "$CDHS" api.GetResourceService GetResource kbs:///default/key/k1
grep -q "does not decrypt" err.txt || fail "bad JWE: $(cat err.txt)"
fault 503 5
call 24 "$CDHS" api.GetResourceService GetResource kbs:///default/key/k1
fault garbage
call 23 "$CDHS" api.GetResourceService GetResource kbs:///default/key/k1
fault oversize
call 24 "$CDHS" api.GetResourceService GetResource kbs:///default/key/k1
call 0 "$CDHS" api.GetResourceService GetResource kbs:///default/key/k1
[ "$(cat out.bin)" = the-secret-value ] || fail "after faults: $(cat out.bin)"
ok "bad JWE, 503s, garbage, an oversized answer: clear errors; the data hub keeps serving"

kill "$first_aa"
wait "$first_aa" 2>/dev/null || true
start_aa aa.toml "$AAS" aa2.log
fault nonce
call 17 "$AAS" $AA GetToken kbs
grep -q "nonce" err.txt || fail "changed nonce: $(cat err.txt)"
attested() { stats 8443 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["attested"])'; }
fault expire
fault unauthorized
before=$(attested)
call 0 "$CDHS" api.GetResourceService GetResource kbs:///default/key/k1
[ "$(cat out.bin)" = the-secret-value ] || fail "after a 401: $(cat out.bin)"
[ "$(attested)" = $((before + 1)) ] || fail "a 401 did not get one fresh attestation"
sleep 3
call 0 "$CDHS" api.GetResourceService GetResource kbs:///default/key/k1
[ "$(cat out.bin)" = the-secret-value ] || fail "after expiry: $(cat out.bin)"
[ "$(attested)" = $((before + 2)) ] || fail "an expired token was not replaced by one attestation"
ok "a nonce the session no longer holds is refused; a 401 gets a token again; an expiring token is replaced by a new attestation"

call 0 "$AAS" $AA GetTeeType
for f in aa.log aa2.log cdh.log cdh2.log rest.log rest2.log; do
    if grep -q -e the-secret-value -e vault-secret -e 'eyJ' -e 'PRIVATE KEY' "$f"; then
        fail "$f holds a secret"
    fi
done
ok "no secret, token or key in the daemons' logs"
echo "$pass checks passed"
