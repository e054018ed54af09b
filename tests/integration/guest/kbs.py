#!/usr/bin/python3
"""A strict, stateful Key Broker Service for the tests, written from Trustee's
kbs_attestation_protocol.md (protocol 0.4.0).

It issues nonces with session cookies, checks that the evidence binds its
nonce and the TEE key (report data = sha384 of the canonical JSON of the
runtime data), verifies a TPM quote's signature with the attestation key,
its PCR digest, and compares PCR8 with sha256(0^32 || initdata digest[:32])
for the initdata it expects; re-encodes an SNP report from its JSON and
verifies it with the VCEK it trusts (HOST_DATA = the initdata digest); checks
a TD quote's signature by its attestation key (MRCONFIGID = the digest; the
QE report and PCK chain are not checked: no Intel collateral here); issues an ES256 JWT; releases a resource only
to a token (or session) that passed, as a JWE to that token's TEE key.

Faults, set at start (--fault NAME[:COUNT]) or at run time (POST
/test/fault {"name": NAME, "count": N}), each for the next N requests it
applies to: nonce (the session's nonce changes before attest), bad-jwe (the
tag is flipped), 503 (any request), slow (answers after 3 s), garbage (a
200 with a body that is not JSON), oversize (a 200 with 20 MiB), expire
(the next token lives 2 s), unauthorized (a resource request is refused
with 401).

GET /test/stats answers counts and the log of releases; /test/* is not
part of the protocol and is counted apart.
"""
import argparse
import base64
import hashlib
import json
import os
import secrets
import ssl
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from cryptography.exceptions import InvalidSignature

PROTOCOL = "0.4.0"
TEES = {"tpm", "snp", "tdx", "az-snp-vtpm", "az-tdx-vtpm"}


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s):
    if not isinstance(s, str) or "=" in s:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def canon(o):
    return json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Refuse(Exception):
    def __init__(self, status, kind, detail):
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


# ---- TPM ----------------------------------------------------------------------

def tpm2b(buf, off):
    (n,) = struct.unpack_from(">H", buf, off)
    if off + 2 + n > len(buf):
        raise ValueError("TPM2B past the end")
    return buf[off + 2:off + 2 + n], off + 2 + n


def parse_attest(m):
    magic, typ = struct.unpack_from(">IH", m, 0)
    if magic != 0xFF544347 or typ != 0x8018:
        raise ValueError("not a TPM quote (magic %x type %x)" % (magic, typ))
    off = 6
    _, off = tpm2b(m, off)  # qualifiedSigner
    extra, off = tpm2b(m, off)
    off += 8 + 4 + 4 + 1 + 8  # clockInfo, firmwareVersion
    (count,) = struct.unpack_from(">I", m, off)
    off += 4
    sel = []
    for _ in range(count):
        alg, size = struct.unpack_from(">HB", m, off)
        off += 3
        sel.append((alg, m[off:off + size]))
        off += size
    digest, off = tpm2b(m, off)
    if off != len(m):
        raise ValueError("trailing bytes in the quote")
    return extra, sel, digest


def verify_tpm(ev, report_data, want_pcr8, trusted):
    try:
        ak_der = base64.b64decode(ev["ak_public"], validate=True)
        q = ev["tpm_quote"]
        msg = base64.b64decode(q["message"], validate=True)
        sig = base64.b64decode(q["signature"], validate=True)
        pcrs = [bytes.fromhex(p) for p in q["pcrs"]]
    except (KeyError, TypeError, ValueError) as e:
        raise Refuse(401, "AttestationError", "malformed tpm evidence: %s" % e)
    if len(pcrs) != 24 or any(len(p) != 32 for p in pcrs):
        raise Refuse(401, "AttestationError", "tpm evidence needs 24 sha256 PCRs")
    if trusted is not None and ak_der not in trusted:
        raise Refuse(401, "AttestationError", "the attestation key is not trusted")
    ak = serialization.load_der_public_key(ak_der)
    salg, shash = struct.unpack_from(">HH", sig, 0)
    sbytes, end = tpm2b(sig, 4)
    if salg != 0x0014 or shash != 0x000B or end != len(sig):
        raise Refuse(401, "AttestationError", "the quote is not signed RSASSA-SHA256")
    try:
        ak.verify(sbytes, msg, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise Refuse(401, "AttestationError", "the quote's signature does not verify")
    extra, sel, digest = parse_attest(msg)
    if sel != [(0x000B, b"\xff\xff\xff")]:
        raise Refuse(401, "AttestationError", "the quote does not cover sha256 PCRs 0-23")
    if hashlib.sha256(b"".join(pcrs)).digest() != digest:
        raise Refuse(401, "AttestationError", "the PCRs do not match the quote's digest")
    if extra != report_data[:32].ljust(32, b"\0"):
        raise Refuse(401, "AttestationError", "the quote does not bind the nonce and TEE key")
    if want_pcr8 is not None and pcrs[8] != want_pcr8:
        raise Refuse(401, "PolicyDeny", "PCR8 does not hold the expected initdata digest")
    return {"pcr08": pcrs[8].hex(), "ak": hashlib.sha256(ak_der).hexdigest()}


# ---- SEV-SNP: the report re-encoded from the sev crate's JSON, as Trustee does -----

SNP_FIELDS = ["version", "guest_svn", "policy", "family_id", "image_id", "vmpl", "sig_algo",
              "current_tcb", "plat_info", "key_info", "report_data", "measurement", "host_data",
              "id_key_digest", "author_key_digest", "report_id", "report_id_ma", "reported_tcb",
              "cpuid_fam_id", "cpuid_mod_id", "cpuid_step", "chip_id", "committed_tcb", "current",
              "committed", "launch_tcb", "launch_mit_vector", "current_mit_vector", "signature"]


def snp_encode(j):
    if sorted(j) != sorted(SNP_FIELDS):
        raise ValueError("attestation_report fields differ from the sev crate's")
    r = bytearray(0x4A0)
    turin = j["cpuid_fam_id"] == 0x1A

    def tcb(off, t):
        if turin:
            r[off:off + 8] = bytes([t["fmc"], t["bootloader"], t["tee"], t["snp"], 0, 0, 0,
                                    t["microcode"]])
        else:
            if t["fmc"] is not None:
                raise ValueError("fmc set on a non-Turin report")
            r[off:off + 8] = bytes([t["bootloader"], t["tee"], 0, 0, 0, 0, t["snp"],
                                    t["microcode"]])

    def arr(off, a, n):
        if len(a) != n:
            raise ValueError("array of %d, want %d" % (len(a), n))
        r[off:off + n] = bytes(a)

    struct.pack_into("<IIQ", r, 0, j["version"], j["guest_svn"], j["policy"])
    arr(0x10, j["family_id"], 16)
    arr(0x20, j["image_id"], 16)
    struct.pack_into("<II", r, 0x30, j["vmpl"], j["sig_algo"])
    tcb(0x38, j["current_tcb"])
    struct.pack_into("<QI", r, 0x40, j["plat_info"], j["key_info"])
    for name, off, n in (("report_data", 0x50, 64), ("measurement", 0x90, 48),
                         ("host_data", 0xC0, 32), ("id_key_digest", 0xE0, 48),
                         ("author_key_digest", 0x110, 48), ("report_id", 0x140, 32),
                         ("report_id_ma", 0x160, 32), ("chip_id", 0x1A0, 64)):
        arr(off, j[name], n)
    tcb(0x180, j["reported_tcb"])
    if j["version"] >= 3:
        r[0x188], r[0x189], r[0x18A] = j["cpuid_fam_id"], j["cpuid_mod_id"], j["cpuid_step"]
    tcb(0x1E0, j["committed_tcb"])
    for off, v in ((0x1E8, j["current"]), (0x1EC, j["committed"])):
        r[off:off + 3] = bytes([v["build"], v["minor"], v["major"]])
    tcb(0x1F0, j["launch_tcb"])
    if j["version"] >= 5:
        struct.pack_into("<QQ", r, 0x1F8, j["launch_mit_vector"], j["current_mit_vector"])
    arr(0x2A0, j["signature"]["r"], 72)
    arr(0x2E8, j["signature"]["s"], 72)
    return bytes(r)


def verify_snp(ev, report_data, want_host_data, trusted_vcek):
    try:
        if set(ev) != {"attestation_report", "cert_chain"}:
            raise ValueError("evidence members")
        rep = snp_encode(ev["attestation_report"])
        vcek = [bytes(c["data"]) for c in ev["cert_chain"] or [] if c["cert_type"] == "VCEK"]
    except (KeyError, TypeError, ValueError) as e:
        raise Refuse(401, "AttestationError", "malformed snp evidence: %s" % e)
    if not vcek or (trusted_vcek is not None and vcek[0] != trusted_vcek):
        raise Refuse(401, "AttestationError", "no trusted VCEK in the evidence")
    cert = x509.load_der_x509_certificate(vcek[0])
    R = int.from_bytes(rep[0x2A0:0x2A0 + 72], "little")
    S = int.from_bytes(rep[0x2E8:0x2E8 + 72], "little")
    try:
        cert.public_key().verify(utils.encode_dss_signature(R, S), rep[:0x2A0],
                                 ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise Refuse(401, "AttestationError", "the SNP report's signature does not verify")
    if rep[0x50:0x90] != report_data.ljust(64, b"\0"):
        raise Refuse(401, "AttestationError", "the report does not bind the nonce and TEE key")
    if want_host_data is not None and rep[0xC0:0xE0] != want_host_data[:32].ljust(32, b"\0"):
        raise Refuse(401, "PolicyDeny", "HOST_DATA does not hold the expected initdata digest")
    return {"measurement": rep[0x90:0xC0].hex()}


# ---- TDX: the quote's signature by its attestation key -------------------------------
# The QE report and the PCK chain are not checked here: no Intel collateral.

def verify_tdx(ev, report_data, want_mrconfigid):
    try:
        if set(ev) != {"cc_eventlog", "quote"}:
            raise ValueError("evidence members")
        q = base64.b64decode(ev["quote"], validate=True)
        if ev["cc_eventlog"] is not None:
            base64.b64decode(ev["cc_eventlog"], validate=True)
        ver, _, tee = struct.unpack_from("<HHI", q, 0)
        if ver != 4 or tee != 0x81:
            raise ValueError("quote version %d tee 0x%x" % (ver, tee))
        body = q[48:48 + 584]
        (n,) = struct.unpack_from("<I", q, 48 + 584)
        sig = q[48 + 584 + 4:48 + 584 + 4 + n]
        if len(body) != 584 or len(sig) != n or n < 128:
            raise ValueError("truncated quote")
    except (KeyError, TypeError, ValueError, struct.error) as e:
        raise Refuse(401, "AttestationError", "malformed tdx evidence: %s" % e)
    ak = ec.EllipticCurvePublicNumbers(int.from_bytes(sig[64:96], "big"),
                                       int.from_bytes(sig[96:128], "big"),
                                       ec.SECP256R1()).public_key()
    try:
        ak.verify(utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                             int.from_bytes(sig[32:64], "big")),
                  q[:48 + 584], ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Refuse(401, "AttestationError", "the TD quote's signature does not verify")
    if body[520:584] != report_data.ljust(64, b"\0"):
        raise Refuse(401, "AttestationError", "the quote does not bind the nonce and TEE key")
    if want_mrconfigid is not None and body[184:232] != want_mrconfigid[:48].ljust(48, b"\0"):
        raise Refuse(401, "PolicyDeny", "MRCONFIGID does not hold the expected initdata digest")
    return {"mrtd": body[136:184].hex()}


# ---- JWE ----------------------------------------------------------------------

CURVES = {"P-256": (ec.SECP256R1(), 32), "P-521": (ec.SECP521R1(), 66)}


def concat_kdf(z, alg="ECDH-ES+A256KW", bits=256):
    h = hashlib.sha256()
    h.update(struct.pack(">I", 1) + z + struct.pack(">I", len(alg)) + alg.encode())
    h.update(struct.pack(">III", 0, 0, bits))
    return h.digest()[:bits // 8]


def jwe(jwk, plain, tamper=False):
    cek = secrets.token_bytes(32)
    if jwk.get("kty") == "EC":
        curve, size = CURVES[jwk["crv"]]
        x, y = unb64u(jwk["x"]), unb64u(jwk["y"])
        if len(x) != size or len(y) != size:
            raise Refuse(401, "JweError", "bad EC coordinates")
        peer = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                             curve).public_key()
        eph = ec.generate_private_key(curve)
        z = eph.exchange(ec.ECDH(), peer)
        ek = aes_key_wrap(concat_kdf(z), cek)
        n = eph.public_key().public_numbers()
        hdr = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM",
               "epk": {"crv": jwk["crv"], "kty": "EC", "x": b64u(n.x.to_bytes(size, "big")),
                       "y": b64u(n.y.to_bytes(size, "big"))}}
    elif jwk.get("kty") == "RSA" and jwk.get("alg") == "RSA-OAEP-256":
        pub = rsa.RSAPublicNumbers(int.from_bytes(unb64u(jwk["e"]), "big"),
                                   int.from_bytes(unb64u(jwk["n"]), "big")).public_key()
        ek = pub.encrypt(cek, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
        hdr = {"alg": "RSA-OAEP-256", "enc": "A256GCM"}
    else:
        raise Refuse(401, "JweError", "unsupported tee-pubkey")
    prot = b64u(json.dumps(hdr, separators=(",", ":")).encode())
    iv = secrets.token_bytes(12)
    ct = AESGCM(cek).encrypt(iv, plain, prot.encode())
    body, tag = ct[:-16], bytearray(ct[-16:])
    if tamper:
        tag[0] ^= 1
    return {"protected": prot, "encrypted_key": b64u(ek), "iv": b64u(iv),
            "ciphertext": b64u(body), "tag": b64u(bytes(tag))}


# ---- the service ----------------------------------------------------------------

class KBS:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.sessions = {}
        self.faults = {}
        for f in args.fault or []:
            name, _, count = f.partition(":")
            self.faults[name] = int(count or 1)
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.stats = {"requests": 0, "auth": 0, "attest": 0, "resource": 0, "released": [],
                      "refused": [], "attested": 0}
        self.want_pcr8 = None
        self.initdata_digest = None
        if args.expect_initdata:
            toml = open(args.expect_initdata, "rb").read()
            alg = "sha256"
            for line in toml.decode().splitlines():
                if line.replace(" ", "").startswith("algorithm="):
                    alg = line.split("=", 1)[1].strip().strip("\"'")
            self.initdata_digest = hashlib.new(alg, toml).digest()
            self.want_pcr8 = hashlib.sha256(b"\0" * 32 + self.initdata_digest[:32]).digest()

    def fault(self, name):
        with self.lock:
            n = self.faults.get(name, 0)
            if n > 0:
                self.faults[name] = n - 1
                return True
        return False

    def trusted(self):
        if self.args.trust_any_ak:
            return None
        try:
            with open(self.args.trusted_aks) as f:
                return {base64.b64decode(line.strip()) for line in f if line.strip()}
        except OSError:
            return set()

    def trusted_vcek(self):
        if not self.args.trusted_vcek:
            return None
        return open(self.args.trusted_vcek, "rb").read()

    def resource(self, path):
        parts = path.split("/")
        if len(parts) != 3 or any(p in ("", ".", "..") for p in parts):
            raise Refuse(404, "InvalidRequestPath", "bad resource path")
        f = os.path.join(self.args.resources, *parts)
        if not os.path.isfile(f):
            raise Refuse(404, "InvalidRequestPath", "no resource %s" % path)
        return open(f, "rb").read()


def make_handler(kbs):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            if kbs.args.verbose:
                sys.stderr.write("kbs: " + fmt % a + "\n")

        def answer(self, status, body=b"", ctype="application/json", headers=()):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(body)
            except (OSError, ssl.SSLError):
                pass  # the client gave up (an oversized answer): nothing to tell

        def refuse(self, e):
            with kbs.lock:
                kbs.stats["refused"].append({"path": self.path, "status": e.status,
                                             "detail": e.detail})
            body = json.dumps({"type": "https://github.com/confidential-containers/kbs/errors/"
                               + e.kind, "detail": e.detail}).encode()
            self.answer(e.status, body)

        def body(self):
            n = int(self.headers.get("Content-Length", "0"))
            if n > 1 << 20:
                raise Refuse(413, "SerdeError", "request too large")
            data = self.rfile.read(n)
            if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                raise Refuse(401, "SerdeError", "Content-Type is not application/json")
            try:
                return json.loads(data)
            except ValueError:
                raise Refuse(401, "SerdeError", "the body is not JSON")

        def session(self):
            for part in self.headers.get("Cookie", "").split(";"):
                k, _, v = part.strip().partition("=")
                if k == "kbs-session-id":
                    with kbs.lock:
                        s = kbs.sessions.get(v)
                    if s is None or s["expires"] < time.time():
                        raise Refuse(401, "AttestationError", "session not found")
                    return v, s
            raise Refuse(401, "AttestationError", "cookie not found")

        def common_faults(self):
            if kbs.fault("503"):
                self.answer(503, b'{"type":"x","detail":"injected unavailability"}')
                return True
            if kbs.fault("slow"):
                time.sleep(3)
            if kbs.fault("garbage"):
                self.answer(200, b"<html>not json")
                return True
            if kbs.fault("oversize"):
                self.answer(200, b" " * (20 << 20))
                return True
            return False

        def do_POST(self):
            try:
                if self.path == "/test/fault":
                    f = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    with kbs.lock:
                        kbs.faults[f["name"]] = int(f.get("count", 1))
                    return self.answer(200, b"{}")
                with kbs.lock:
                    kbs.stats["requests"] += 1
                if self.common_faults():
                    return
                if self.path == "/kbs/v0/auth":
                    return self.auth()
                if self.path == "/kbs/v0/attest":
                    return self.attest()
                raise Refuse(404, "InvalidRequestPath", "no such endpoint")
            except Refuse as e:
                self.refuse(e)

        def auth(self):
            with kbs.lock:
                kbs.stats["auth"] += 1
            req = self.body()
            if set(req) != {"version", "tee", "extra-params"}:
                raise Refuse(401, "SerdeError", "Request needs version, tee, extra-params")
            if req["version"] != PROTOCOL:
                raise Refuse(401, "AttestationError", "KBS Client Protocol Version Mismatch")
            if req["tee"] not in TEES:
                raise Refuse(401, "AttestationError", "unknown tee %r" % req["tee"])
            sid = uuid.uuid4().hex
            nonce = base64.b64encode(secrets.token_bytes(32)).decode()
            with kbs.lock:
                kbs.sessions[sid] = {"tee": req["tee"], "nonce": nonce, "state": "authed",
                                     "expires": time.time() + 300}
            self.answer(200, json.dumps({"nonce": nonce, "extra-params": ""}).encode(),
                        headers=[("Set-Cookie", "kbs-session-id=%s; Path=/kbs" % sid)])

        def attest(self):
            with kbs.lock:
                kbs.stats["attest"] += 1
            sid, s = self.session()
            if kbs.fault("nonce"):
                s["nonce"] = base64.b64encode(secrets.token_bytes(32)).decode()
            a = self.body()
            if not {"runtime-data", "tee-evidence"} <= set(a) or \
                    not set(a) <= {"runtime-data", "tee-evidence", "init-data"}:
                raise Refuse(401, "SerdeError", "Attestation has unexpected members")
            rt, te = a["runtime-data"], a["tee-evidence"]
            if set(rt) != {"nonce", "tee-pubkey"} or \
                    set(te) != {"primary_evidence", "additional_evidence"}:
                raise Refuse(401, "SerdeError", "malformed runtime-data or tee-evidence")
            if rt["nonce"] != s["nonce"]:
                raise Refuse(401, "AttestationError", "the nonce in the handshake session is "
                             "different from the client side")
            key = rt["tee-pubkey"]
            if key.get("kty") == "EC":
                ok = set(key) == {"kty", "crv", "alg", "x", "y"} and key["crv"] in CURVES
            else:
                ok = set(key) == {"kty", "alg", "n", "e"} and key.get("kty") == "RSA"
            if not ok:
                raise Refuse(401, "SerdeError", "malformed tee-pubkey")
            primary = {"tee-pubkey": key, "nonce": s["nonce"],
                       "additional-evidence": te["additional_evidence"]}
            rd = hashlib.sha384(canon(primary)).digest()
            if "init-data" in a:
                idata = a["init-data"]
                if idata.get("format") != "toml" or not isinstance(idata.get("body"), str):
                    raise Refuse(401, "SerdeError", "init-data must be toml")
            if s["tee"] == "tpm":
                claims = verify_tpm(te["primary_evidence"], rd, kbs.want_pcr8, kbs.trusted())
            elif s["tee"] == "snp":
                claims = verify_snp(te["primary_evidence"], rd, kbs.initdata_digest,
                                    kbs.trusted_vcek())
            elif s["tee"] == "tdx":
                claims = verify_tdx(te["primary_evidence"], rd, kbs.initdata_digest)
            else:
                raise Refuse(401, "AttestationError", "no verifier for %s here" % s["tee"])
            if "init-data" in a and kbs.initdata_digest is not None:
                body = a["init-data"]["body"].encode()
                if hashlib.new({32: "sha256", 48: "sha384", 64: "sha512"}[
                        len(kbs.initdata_digest)], body).digest() != kbs.initdata_digest:
                    raise Refuse(401, "PolicyDeny", "the init-data is not the expected one")
            ttl = 2 if kbs.fault("expire") else kbs.args.token_ttl
            now = int(time.time())
            token = jwt.encode({"iss": "test-kbs", "iat": now, "exp": now + ttl,
                                "tee-pubkey": key, "tcb-status": claims,
                                "evaluation-report": "allow"}, kbs.key, algorithm="ES256")
            with kbs.lock:
                s["state"] = "attested"
                s["token"] = token
                s["key"] = key
                kbs.stats["attested"] += 1
            self.answer(200, json.dumps({"token": token}).encode(),
                        headers=[("Set-Cookie", "kbs-session-id=%s; Path=/kbs" % sid)])

        def do_GET(self):
            try:
                if self.path == "/test/stats":
                    with kbs.lock:
                        return self.answer(200, json.dumps(kbs.stats).encode())
                with kbs.lock:
                    kbs.stats["requests"] += 1
                if self.common_faults():
                    return
                prefix = "/kbs/v0/resource/"
                if not self.path.startswith(prefix):
                    raise Refuse(404, "InvalidRequestPath", "no such endpoint")
                with kbs.lock:
                    kbs.stats["resource"] += 1
                if kbs.fault("unauthorized"):
                    raise Refuse(401, "TokenVerifierError", "injected: token refused")
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Bearer "):
                    try:
                        claims = jwt.decode(auth[7:], kbs.key.public_key(), algorithms=["ES256"])
                    except jwt.ExpiredSignatureError:
                        raise Refuse(401, "TokenVerifierError", "token expired")
                    except jwt.InvalidTokenError as e:
                        raise Refuse(401, "TokenVerifierError", "token invalid: %s" % e)
                    key, who = claims["tee-pubkey"], claims["tcb-status"]
                else:
                    _, s = self.session()
                    if s["state"] != "attested":
                        raise Refuse(401, "TokenNotFound", "session not attested")
                    key, who = s["key"], {}
                path = self.path[len(prefix):]
                plain = kbs.resource(path)
                body = json.dumps(jwe(key, plain, kbs.fault("bad-jwe"))).encode()
                with kbs.lock:
                    kbs.stats["released"].append({"resource": path, "to": who})
                self.answer(200, body)
            except Refuse as e:
                self.refuse(e)

    return H


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--resources", required=True)
    p.add_argument("--expect-initdata")
    p.add_argument("--trusted-aks", default="/nonexistent")
    p.add_argument("--trust-any-ak", action="store_true")
    p.add_argument("--trusted-vcek", help="the DER VCEK that SNP evidence must carry")
    p.add_argument("--token-ttl", type=int, default=300)
    p.add_argument("--fault", action="append")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    kbs = KBS(args)
    srv = ThreadingHTTPServer((args.bind, args.port), make_handler(kbs))
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("kbs: listening on %d" % args.port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
