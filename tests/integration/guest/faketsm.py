#!/usr/bin/python3
"""A configfs-tsm report directory (Documentation/ABI/testing/configfs-tsm)
in FUSE, with a provider that signs what it reports, for the tests of the
SEV-SNP and TDX attesters.

mkdir makes an entry holding `provider`, `generation`, `inblob`, `outblob`
and `auxblob` (SNP); each write of `inblob` bumps `generation`; reading
`outblob` gives a report for the last inblob:
  sev_guest  an SNP attestation report (ABI version 3, a Milan CPUID) with
             REPORT_DATA = inblob and HOST_DATA = --host-data, signed with
             ECDSA P-384 by a VCEK whose certificate `auxblob` carries in
             the extended report's certificate table;
  tdx_guest  a TD quote (version 4) with REPORTDATA = inblob and MRCONFIGID
             = --mrconfigid, signed with ECDSA P-256 by the attestation key
             it carries.
--garbage answers random bytes instead of a report; --mismatch a report
for other report data. Counts go to --log (one line a report).

Usage: faketsm.py MOUNTPOINT --provider sev_guest|tdx_guest --key-dir DIR
"""
import argparse
import datetime
import errno
import os
import secrets
import stat
import struct
import threading
import time

import fusepy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import NameOID

def guid_bytes(text):
    h = bytes.fromhex(text.replace("-", ""))
    return h[3::-1] + h[5:3:-1] + h[7:5:-1] + h[8:]


VCEK_GUID = guid_bytes("63da758d-e664-4564-adc5-f4b93be8accd")


def snp_report(rd, host_data, key):
    r = bytearray(0x4A0)
    struct.pack_into("<IIQ", r, 0, 3, 1, 0x30000)  # version, guest_svn, policy
    struct.pack_into("<II", r, 0x30, 0, 1)  # vmpl, sig_algo ECDSA P-384
    r[0x38:0x40] = bytes([3, 0, 0, 0, 0, 0, 8, 115])  # current TCB (Milan layout)
    struct.pack_into("<QI", r, 0x40, 1, 0)  # plat_info, key_info
    r[0x50:0x90] = rd
    r[0x90:0xC0] = secrets.token_bytes(48)  # measurement
    r[0xC0:0xE0] = host_data
    r[0x180:0x188] = bytes([3, 0, 0, 0, 0, 0, 8, 115])  # reported TCB
    r[0x188], r[0x189], r[0x18A] = 0x19, 0x01, 0x01  # Milan
    r[0x1A0:0x1E0] = secrets.token_bytes(64)  # chip id
    r[0x1E0:0x1E8] = bytes([3, 0, 0, 0, 0, 0, 8, 115])
    r[0x1E8:0x1EB] = bytes([21, 55, 1])  # build, minor, major
    r[0x1EC:0x1EF] = bytes([21, 55, 1])
    r[0x1F0:0x1F8] = bytes([3, 0, 0, 0, 0, 0, 8, 115])
    der = key.sign(bytes(r[:0x2A0]), ec.ECDSA(hashes.SHA384()))
    R, S = utils.decode_dss_signature(der)
    r[0x2A0:0x2A0 + 72] = R.to_bytes(72, "little")
    r[0x2E8:0x2E8 + 72] = S.to_bytes(72, "little")
    return bytes(r)


def cert_table(vcek_der):
    table = bytearray(VCEK_GUID + struct.pack("<II", 48, len(vcek_der)) + bytes(24))
    return bytes(table) + vcek_der


def td_quote(rd, mrconfigid, key):
    hdr = struct.pack("<HHIHH", 4, 2, 0x81, 0, 0) + bytes.fromhex(
        "939a7233f79c4ca9940a0db3957f0607") + bytes(20)
    body = bytearray(584)
    body[184:232] = mrconfigid
    body[520:584] = rd
    der = key.sign(hdr + bytes(body), ec.ECDSA(hashes.SHA256()))
    R, S = utils.decode_dss_signature(der)
    n = key.public_key().public_numbers()
    cert = b"-----BEGIN CERTIFICATE-----\nnot verified here\n-----END CERTIFICATE-----\n"
    sigdata = (R.to_bytes(32, "big") + S.to_bytes(32, "big") + n.x.to_bytes(32, "big") +
               n.y.to_bytes(32, "big") + struct.pack("<HI", 5, len(cert)) + cert)
    return hdr + bytes(body) + struct.pack("<I", len(sigdata)) + sigdata


def load_keys(d):
    """The VCEK (P-384, with a certificate) and the TD attestation key."""
    path = os.path.join(d, "vcek.pem")
    if not os.path.exists(path):
        k = ec.generate_private_key(ec.SECP384R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SEV-VCEK")])
        c = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(k.public_key()).serial_number(1)
             .not_valid_before(datetime.datetime(2020, 1, 1))
             .not_valid_after(datetime.datetime(2040, 1, 1))
             .sign(k, hashes.SHA384()))
        open(path, "wb").write(k.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        open(os.path.join(d, "vcek.der"), "wb").write(c.public_bytes(serialization.Encoding.DER))
        t = ec.generate_private_key(ec.SECP256R1())
        open(os.path.join(d, "tdx-ak.pem"), "wb").write(
            t.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()))
    vk = serialization.load_pem_private_key(open(path, "rb").read(), None)
    tk = serialization.load_pem_private_key(open(os.path.join(d, "tdx-ak.pem"), "rb").read(), None)
    return vk, open(os.path.join(d, "vcek.der"), "rb").read(), tk


class Tsm(fusepy.Operations):
    def __init__(self, args):
        self.args = args
        self.mu = threading.Lock()
        self.entries = {}
        self.vcek, self.vcek_der, self.tdkey = load_keys(args.key_dir)
        self.now = time.time()

    def _split(self, path):
        parts = [p for p in path.split("/") if p]
        return parts

    def getattr(self, path, fh=None):
        parts = self._split(path)
        base = {"st_uid": 0, "st_gid": 0, "st_atime": self.now, "st_mtime": self.now,
                "st_ctime": self.now, "st_nlink": 1}
        if not parts or (len(parts) == 1 and parts[0] in self.entries):
            return dict(base, st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        if len(parts) == 2 and parts[0] in self.entries and parts[1] in self._files():
            e = self.entries[parts[0]]
            # Reports are made when read (direct I/O ignores the size).
            size = 0 if parts[1] in ("outblob", "auxblob") else len(self._read(e, parts[1]))
            return dict(base, st_mode=stat.S_IFREG | 0o644, st_size=size)
        raise fusepy.FuseOSError(errno.ENOENT)

    def _files(self):
        names = ["provider", "generation", "inblob", "outblob", "privlevel"]
        if self.args.provider == "sev_guest":
            names.append("auxblob")
        return names

    def readdir(self, path, fh):
        parts = self._split(path)
        if not parts:
            return [".", ".."] + list(self.entries)
        return [".", ".."] + self._files()

    def mkdir(self, path, mode):
        parts = self._split(path)
        with self.mu:
            if len(parts) != 1 or parts[0] in self.entries:
                raise fusepy.FuseOSError(errno.EEXIST)
            self.entries[parts[0]] = {"generation": 0, "inblob": b"", "report": None}

    def rmdir(self, path):
        with self.mu:
            self.entries.pop(self._split(path)[0], None)

    def _read(self, e, name):
        if name == "provider":
            return (self.args.provider + "\n").encode()
        if name == "generation":
            return ("%d\n" % e["generation"]).encode()
        if name == "inblob":
            return e["inblob"]
        if name == "privlevel":
            return b"0\n"
        if name in ("outblob", "auxblob"):
            if e["report"] is None:
                e["report"] = self._report(e["inblob"])
            return e["report"][0 if name == "outblob" else 1]
        raise fusepy.FuseOSError(errno.ENOENT)

    def _report(self, inblob):
        if len(inblob) != 64:
            raise fusepy.FuseOSError(errno.EINVAL)
        rd = secrets.token_bytes(64) if self.args.mismatch else inblob
        with open(self.args.log, "a") as f:
            f.write("report %s\n" % self.args.provider)
        if self.args.garbage:
            return secrets.token_bytes(700), b""
        if self.args.provider == "sev_guest":
            return snp_report(rd, bytes.fromhex(self.args.host_data), self.vcek), \
                cert_table(self.vcek_der)
        return td_quote(rd, bytes.fromhex(self.args.mrconfigid), self.tdkey), b""

    def open(self, path, flags):
        return 0

    def truncate(self, path, length, fh=None):
        return 0

    def read(self, path, size, offset, fh):
        parts = self._split(path)
        with self.mu:
            e = self.entries.get(parts[0])
            if e is None:
                raise fusepy.FuseOSError(errno.ENOENT)
            data = self._read(e, parts[1])
        return data[offset:offset + size]

    def write(self, path, data, offset, fh):
        parts = self._split(path)
        with self.mu:
            e = self.entries.get(parts[0])
            if e is None or parts[1] not in ("inblob", "privlevel"):
                raise fusepy.FuseOSError(errno.EACCES)
            if parts[1] == "inblob":
                e["inblob"] = e["inblob"][:offset] + bytes(data) if offset else bytes(data)
                e["generation"] += 1
                e["report"] = None
        return len(data)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mountpoint")
    p.add_argument("--provider", choices=["sev_guest", "tdx_guest"], required=True)
    p.add_argument("--key-dir", required=True)
    p.add_argument("--host-data", default="00" * 32)
    p.add_argument("--mrconfigid", default="00" * 48)
    p.add_argument("--log", default="/dev/null")
    p.add_argument("--garbage", action="store_true")
    p.add_argument("--mismatch", action="store_true")
    args = p.parse_args()
    fusepy.FUSE(Tsm(args), args.mountpoint, foreground=True, nothreads=True, direct_io=True)


if __name__ == "__main__":
    main()
