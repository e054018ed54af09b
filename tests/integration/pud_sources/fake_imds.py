#!/usr/bin/python3
"""Strict fake cloud metadata services for process-user-data tests.

One server hosts the user data endpoints of one or more clouds (their paths
do not overlap) and checks every request the way the cloud does: method,
path, query, the headers each cloud requires (and refuses X-Forwarded-For,
as they do), session tokens. Anything else is refused with the status the
cloud would give. Faults: a cloud can be slow (--slow), answer a fixed
status (--status), or serve exact bytes (--raw-body) instead of the encoded
user data.

    fake_imds.py --clouds aws,gcp --user-data ud.yaml --bind 169.254.169.254 \
        --port 80 --ready FILE [--log FILE] [--slow azure --delay 5]
        [--aws-mode optional|required|v1] [--raw-body FILE] [--status N]
        [--stall-unknown SECONDS]

Each request is logged to --log as one JSON line.
"""
import argparse
import base64
import datetime
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

AZURE_PATH = "/metadata/instance/compute/userData"
AZURE_VERSIONS = {"2021-01-01", "2021-02-01", "2021-03-01", "2021-05-01", "2021-10-01",
                  "2021-11-01", "2021-12-13", "2023-07-01", "2023-11-15"}
AWS_TOKEN = "/latest/api/token"
AWS_USER_DATA = "/latest/user-data"
GCP_PATH = "/computeMetadata/v1/instance/attributes/user-data"
IBM_TOKEN = "/instance_identity/v1/token"
IBM_INIT = "/metadata/v1/instance/initialization"
IBM_FIRST_VERSION = "2022-03-01"


class State:
    def __init__(self, args):
        self.args = args
        self.clouds = set(args.clouds.split(","))
        self.user_data = open(args.user_data, "rb").read() if args.user_data else None
        self.raw_body = open(args.raw_body, "rb").read() if args.raw_body else None
        self.tokens = {}  # token -> (cloud, expiry)
        self.lock = threading.Lock()

    def issue(self, cloud, ttl):
        tok = base64.b64encode(secrets.token_bytes(36)).decode()
        with self.lock:
            self.tokens[tok] = (cloud, time.monotonic() + ttl)
        return tok

    def valid(self, cloud, tok):
        with self.lock:
            entry = self.tokens.get(tok)
        return entry is not None and entry[0] == cloud and entry[1] > time.monotonic()

    def log(self, rec):
        if not self.args.log:
            return
        with self.lock, open(self.args.log, "a") as f:
            f.write(json.dumps(rec) + "\n")


def version_ok(v):
    try:
        d = datetime.date.fromisoformat(v)
    except (TypeError, ValueError):
        return False
    return IBM_FIRST_VERSION <= v and d <= datetime.date.today() + datetime.timedelta(days=1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-imds"

    def log_message(self, fmt, *args):  # quiet; the JSON log says what happened
        pass

    # ---- plumbing -------------------------------------------------------------

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def answer(self, cloud, status, body=b"", ctype="text/plain", extra=None):
        st = self.server.state
        if cloud in st.args.slow.split(","):
            time.sleep(st.args.delay)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        st.log({"cloud": cloud, "method": self.command, "path": self.path, "status": status,
                "headers": {k: v for k, v in self.headers.items()
                            if k.lower() in ("metadata", "metadata-flavor",
                                             "x-aws-ec2-metadata-token-ttl-seconds")},
                "token": bool(self.headers.get("X-aws-ec2-metadata-token")
                              or self.headers.get("Authorization"))})

    def user_data_body(self, encode):
        st = self.server.state
        if st.raw_body is not None:
            return st.raw_body
        return encode(st.user_data or b"")

    def fixed_status(self):
        return self.server.state.args.status

    def route(self):
        url = urlsplit(self.path)
        q = parse_qs(url.query, keep_blank_values=True)
        st = self.server.state
        for cloud, match in (("azure", lambda: url.path == AZURE_PATH),
                             ("aws", lambda: url.path in (AWS_TOKEN, AWS_USER_DATA)),
                             ("gcp", lambda: url.path == GCP_PATH),
                             ("ibmcloud", lambda: url.path in (IBM_TOKEN, IBM_INIT))):
            if cloud in st.clouds and match():
                getattr(self, "do_" + cloud)(url, q)
                return
        if st.args.stall_unknown:
            time.sleep(st.args.stall_unknown)
        self.answer("none", 404, b"not found\n")

    do_GET = do_PUT = do_POST = do_DELETE = route

    # ---- Azure IMDS --------------------------------------------------------------

    def do_azure(self, url, q):
        def bad(msg):
            self.answer("azure", 400, json.dumps({"error": msg}).encode(), "application/json")
        if self.headers.get("X-Forwarded-For") is not None:
            return bad("Bad request. X-Forwarded-For header is not allowed")
        if self.headers.get("Metadata") != "true":
            return bad("Bad request. Required metadata header not specified")
        if self.command != "GET":
            return self.answer("azure", 405, b"")
        if q.get("api-version", [None])[0] not in AZURE_VERSIONS or len(q.get("api-version")) != 1:
            return bad("Bad request. api-version is invalid or was not specified")
        if q.get("format") != ["text"] or set(q) != {"api-version", "format"}:
            return bad("Bad request. Query parameters are invalid")
        if self.fixed_status():
            return self.answer("azure", self.fixed_status(), b"failure injected\n")
        self.answer("azure", 200, self.user_data_body(base64.b64encode))

    # ---- AWS IMDS (v2 sessions, v1 when allowed) ------------------------------------

    def do_aws(self, url, q):
        mode = self.server.state.args.aws_mode
        if self.headers.get("X-Forwarded-For") is not None:
            return self.answer("aws", 403, b"")
        if url.path == AWS_TOKEN:
            if self.command != "PUT":
                return self.answer("aws", 405, b"")
            if mode == "v1":  # IMDS without session support
                return self.answer("aws", 403, b"")
            self.body()
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
            if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return self.answer("aws", 400, b"")
            if self.server.state.args.aws_bad_token:
                return self.answer("aws", 200, b"bad token\r\nX-Injected: 1")
            return self.answer("aws", 200, self.server.state.issue("aws", int(ttl)).encode(),
                               extra={"X-aws-ec2-metadata-token-ttl-seconds": ttl})
        if self.command != "GET":
            return self.answer("aws", 405, b"")
        tok = self.headers.get("X-aws-ec2-metadata-token")
        if tok is not None:
            if mode == "v1" or not self.server.state.valid("aws", tok):
                return self.answer("aws", 401, b"")
        elif mode == "required":
            return self.answer("aws", 401, b"")
        if self.fixed_status():
            return self.answer("aws", self.fixed_status(), b"failure injected\n")
        st = self.server.state
        if st.raw_body is None and not st.user_data:
            return self.answer("aws", 404, b"")
        self.answer("aws", 200, self.user_data_body(lambda b: b), "application/octet-stream")

    # ---- GCP metadata ------------------------------------------------------------

    def do_gcp(self, url, q):
        flavor = {"Metadata-Flavor": "Google"}
        if self.headers.get("X-Forwarded-For") is not None:
            return self.answer("gcp", 403, b"", extra=flavor)
        if self.headers.get("Metadata-Flavor") != "Google":
            return self.answer("gcp", 403, b"Missing required header Metadata-Flavor\n",
                               extra=flavor)
        if self.command != "GET":
            return self.answer("gcp", 405, b"", extra=flavor)
        if set(q) - {"alt"} or q.get("alt", ["text"]) != ["text"]:
            return self.answer("gcp", 400, b"", extra=flavor)
        if self.fixed_status():
            return self.answer("gcp", self.fixed_status(), b"failure injected\n", extra=flavor)
        self.answer("gcp", 200, self.user_data_body(base64.b64encode), "application/text",
                    extra=flavor)

    # ---- IBM Cloud VPC metadata ------------------------------------------------------

    def do_ibmcloud(self, url, q):
        def err(status, msg):
            self.answer("ibmcloud", status,
                        json.dumps({"errors": [{"message": msg}]}).encode(), "application/json")
        version = q.get("version", [None])
        if len(version) != 1 or not version_ok(version[0]):
            return err(400, "missing or invalid version")
        if url.path == IBM_TOKEN:
            if self.command != "PUT":
                return err(405, "method not allowed")
            if self.headers.get("Metadata-Flavor") != "ibm":
                return err(400, "Metadata-Flavor: ibm required")
            raw = self.body()
            try:
                req = json.loads(raw) if raw else {}
            except ValueError:
                return err(400, "bad JSON")
            ttl = req.get("expires_in", 300) if isinstance(req, dict) else None
            if not isinstance(ttl, int) or not 5 <= ttl <= 3600:
                return err(400, "expires_in out of range")
            tok = self.server.state.issue("ibmcloud", ttl)
            now = datetime.datetime.now(datetime.timezone.utc)
            self.answer("ibmcloud", 200, json.dumps({
                "access_token": tok,
                "created_at": now.isoformat(),
                "expires_at": (now + datetime.timedelta(seconds=ttl)).isoformat(),
                "expires_in": ttl}).encode(), "application/json")
            return
        if self.command != "GET":
            return err(405, "method not allowed")
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not self.server.state.valid("ibmcloud", auth[7:]):
            return err(401, "invalid or missing token")
        if self.fixed_status():
            return err(self.fixed_status(), "failure injected")
        st = self.server.state
        if st.raw_body is not None:
            return self.answer("ibmcloud", 200, st.raw_body, "application/json")
        self.answer("ibmcloud", 200, json.dumps({
            "keys": [{"id": "r006-0000", "name": "key"}],
            "user_data": (st.user_data or b"").decode(),
        }).encode(), "application/json")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up on a slow answer closes the connection
        # under the handler: expected here, not worth a traceback.
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--clouds", required=True)
    p.add_argument("--bind", default="169.254.169.254")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--user-data")
    p.add_argument("--raw-body")
    p.add_argument("--status", type=int, default=0)
    p.add_argument("--slow", default="")
    p.add_argument("--delay", type=float, default=5.0)
    p.add_argument("--stall-unknown", type=float, default=0.0)
    p.add_argument("--aws-mode", choices=("optional", "required", "v1"), default="optional")
    p.add_argument("--aws-bad-token", action="store_true")
    p.add_argument("--log")
    p.add_argument("--ready")
    args = p.parse_args()
    srv = Server((args.bind, args.port), Handler)
    srv.state = State(args)
    if args.ready:
        with open(args.ready, "w") as f:
            f.write("ready\n")
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
