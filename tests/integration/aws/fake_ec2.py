#!/usr/bin/python3
"""A strict fake of the parts of AWS the AWS provider talks to, on 127.0.0.1.

EC2 Query API (2016-11-15): RunInstances, DescribeInstances,
TerminateInstances, DescribeInstanceTypes, DescribeImages. STS
AssumeRoleWithWebIdentity. IMDSv2 (token, role, credentials, and the node's
metadata: mac, region, subnet, security groups, key pair), with its faults:
the token refused, a path missing (404), slow answers.

Strict: every EC2 request must carry a SigV4 signature that botocore's
SigV4Auth recomputes from the request as received (credentials known to the
fake: the static pair, or ones it issued through STS or IMDS, unexpired);
every parameter must exist in botocore's EC2 model for the action and pass
its validator; values are checked as EC2 would (ids, types, images, user
data size, tag rules, filters). State is kept like EC2 keeps it: instances
go pending -> running, shutting-down -> terminated; RunInstances'
ClientToken returns the instance the token made, whatever its state, and a
token reused with other parameters is IdempotentParameterMismatch.

Faults and control are the conformance suite's (tests/conformance/README.md,
fakelib.py): a share of requests, or the n-th, answered with throttling
(RequestLimitExceeded; with Retry-After as a 429), 500s, 503s, dropped
connections before or after the action is done, timeouts (done, the answer
comes too late), a rejection (UnauthorizedOperation), and for RunInstances
an instance made with a 500 answer (create_error) or capacity errors. EC2's
own report keys: signature and credential failures, refused parameters,
live and created instances, the last RunInstances parameters.

Run: fake_ec2.py [--port-file F] [-- command args...]; with a command, the
fake serves while it runs, with FAKE_URL (and FAKE_EC2_URL), the static
keys, and the provider's settings for the conformance suite in its
environment, and exits with its status.
"""
import base64
import datetime
import json
import os
import re
import secrets
import sys
import time
import urllib.parse
import uuid
from xml.sax.saxutils import escape

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "conformance"))
import fakelib  # noqa: E402

try:
    import botocore.exceptions
    import botocore.session
    import botocore.validate
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError:
    print("fake_ec2: botocore is missing (Debian: python3-botocore); skipping", file=sys.stderr)
    sys.exit(77)

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
STATIC_AK = "AKIDFAKEEC2EXAMPLE01"
STATIC_SK = "fake/Secret+Key/0123456789abcdefEXAMPLE"
WEB_IDENTITY_TOKEN = "fake-web-identity-token-0123456789"
ROLE = "peerpod-node-role"
NODE_MAC = "0e:2a:4c:11:22:33"

# What DescribeInstanceTypes knows: vCPUs, MiB, GPUs, SEV-SNP.
CATALOG = {
    "t3.small": (2, 2048, 0, False),
    "t3.medium": (2, 4096, 0, False),
    "m6a.large": (2, 8192, 0, True),
    "m6a.xlarge": (4, 16384, 0, True),
    "m6a.2xlarge": (8, 32768, 0, True),
    "c6a.xlarge": (4, 8192, 0, True),
    "r6a.large": (2, 16384, 0, True),
    "g5.xlarge": (4, 16384, 1, False),
    "g5.12xlarge": (48, 196608, 4, False),
}
IMAGES = {"ami-0123456789abcdef0": ("/dev/xvda", 8), "ami-0fedcba9876543210": ("/dev/sda1", 40)}
LAUNCH_TEMPLATES = {"kata": ("ami-0123456789abcdef0", "m6a.large")}
FILTERS = {"tag-key", "instance-state-name", "client-token", "instance-id"}

DEFAULTS = {
    "fault_kinds": {"throttle": 1, "internal": 1, "unavailable": 1, "drop": 1, "drop_after": 1,
                    "timeout": 1, "create_error": 1, "capacity": 1},
    "ip_delay": 0,             # describes before the private address shows
    "consistency_delay": 0,    # describes of a new id answered NotFound
    "capacity_types": [],      # types that always lack capacity
    "instance_limit": 0,       # live instances allowed, 0 = no limit
    "sts_ttl": None,           # lifetimes of issued credentials (None: token_ttl)
    "imds_ttl": None,
    # The node as IMDS describes it: paths under /latest/meta-data/ (a path
    # left out is 404, as a key pair that was never given is).
    "imds_metadata": {
        "mac": NODE_MAC,
        "placement/region": "us-east-1",
        f"network/interfaces/macs/{NODE_MAC}/subnet-id": "subnet-0c0ffee0c0ffee000",
        f"network/interfaces/macs/{NODE_MAC}/security-group-ids":
            "sg-0c0ffee0c0ffee001\nsg-0c0ffee0c0ffee002\n",
    },
    "imds_no_token": False,    # the token request is refused (403), as with IMDSv2 off
    "imds_delay_ms": 0,        # every IMDS answer this late
}
CREATE_ONLY = ("create_error", "capacity")

MODEL = botocore.session.get_session().get_service_model("ec2")


class Fault(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def now_iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def serialized_name(shape, default):
    ser = shape.serialization
    if "queryName" in ser:
        return ser["queryName"]
    if "name" in ser:
        return ser["name"][0].upper() + ser["name"][1:]
    return default


def unflatten(params, shape):
    """Flattened EC2 query parameters back to botocore's input structure,
    refusing any name the model does not have."""
    out = {}
    for key, value in params.items():
        parts = key.split(".")
        cur_shape = shape
        target = out
        i = 0
        while i < len(parts):
            p = parts[i]
            if cur_shape.type_name == "structure":
                names = {serialized_name(m, n): (n, m) for n, m in cur_shape.members.items()}
                if p not in names:
                    raise Fault(400, "UnknownParameter",
                                f"The parameter {key} is not recognized")
                name, member = names[p]
                if i == len(parts) - 1 or member.type_name not in ("structure", "list"):
                    if i != len(parts) - 1:
                        raise Fault(400, "UnknownParameter",
                                    f"The parameter {key} is not recognized")
                    target[name] = convert(key, value, member)
                    break
                if member.type_name == "structure":
                    target = target.setdefault(name, {})
                    cur_shape = member
                else:
                    lst = target.setdefault(name, {})
                    cur_shape, target = member, lst
                i += 1
                continue
            if cur_shape.type_name == "list":
                if not p.isdigit() or p == "0":
                    raise Fault(400, "InvalidParameterValue", f"bad index in {key}")
                member = cur_shape.member
                if member.type_name == "structure":
                    target = target.setdefault(int(p), {})
                    cur_shape = member
                    i += 1
                    continue
                if i != len(parts) - 1:
                    raise Fault(400, "UnknownParameter", f"The parameter {key} is not recognized")
                target[int(p)] = convert(key, value, member)
                break
            raise Fault(400, "UnknownParameter", f"The parameter {key} is not recognized")
    return listify(out, shape)


def listify(obj, shape):
    """Index dicts of lists to lists, in index order, with no gaps."""
    if shape.type_name == "structure":
        return {k: listify(v, shape.members[k]) for k, v in obj.items()}
    if shape.type_name == "list":
        idx = sorted(obj)
        if idx != list(range(1, len(idx) + 1)):
            raise Fault(400, "InvalidParameterValue", "list indexes must run 1, 2, ...")
        return [listify(obj[i], shape.member) for i in idx]
    return obj


def convert(key, value, shape):
    t = shape.type_name
    if t == "integer" or t == "long":
        if not re.fullmatch(r"-?\d+", value):
            raise Fault(400, "InvalidParameterValue", f"{key}: `{value}` is not a number")
        return int(value)
    if t == "boolean":
        if value not in ("true", "false"):
            raise Fault(400, "InvalidParameterValue", f"{key}: `{value}` is not true or false")
        return value == "true"
    if t == "string":
        if shape.enum and value not in shape.enum:
            raise Fault(400, "InvalidParameterValue", f"{key}: `{value}` is not allowed")
        return value
    raise Fault(400, "UnknownParameter", f"The parameter {key} is not recognized")


class State(fakelib.FakeState):
    DEFAULTS = DEFAULTS

    def reset(self):
        super().reset()
        self.instances = {}       # id -> dict
        self.tokens = {}          # client token -> (id, fingerprint)
        self.sandboxes = {}       # sandbox tag -> [ids]
        self.creds = {STATIC_AK: (STATIC_SK, None, None)}
        self.imds_tokens = {}
        self.sig_failures = []
        self.auth_failures = 0
        self.param_failures = []
        self.runs = []            # RunInstances parameters, as received
        self.sts_calls = 0
        self.imds_calls = 0
        self.created = 0

    def fault_applies(self, kind, action):
        return action == "RunInstances" or kind not in CREATE_ONLY

    def ttl(self, key):
        v = self.cfg[key]
        return self.cfg["token_ttl"] if v is None else v

    def expire_all(self):
        now = time.time()
        for ak, (sk, tok, exp) in list(self.creds.items()):
            if exp is not None:
                self.creds[ak] = (sk, tok, now - 1)

    def missing_id(self):
        while True:
            iid = new_id()
            if iid not in self.instances:
                return iid

    def user_data(self, sb):
        found = [i for i in self.instances.values()
                 if i["tags"].get("peerpod/sandbox-id") == sb
                 and i["state"] in ("pending", "running")]
        return found[-1]["user_data_raw"] if found else None

    def report(self):
        rep = super().report()
        alive = [i for i in self.instances.values()
                 if i["state"] not in ("terminated", "shutting-down")]
        dup = {s: ids for s, ids in self.sandboxes.items() if len(set(ids)) > 1}
        rep.update({
            "signature_failures": len(self.sig_failures),
            "signature_failure_reasons": self.sig_failures[:5],
            "auth_failures": self.auth_failures,
            "param_failures": self.param_failures[:10],
            "created": self.created,
            # EC2 deletes an instance's network interface and root volume
            # with it: instances are the resources that can leak here.
            "alive_resources": {"vms": len(alive)},
            "alive": [{"id": i["id"], "state": i["state"], "tags": i["tags"]} for i in alive],
            "alive_count": len(alive),
            "duplicates": dup,
            "sts_calls": self.sts_calls,
            # The fake's own secrets, so that a test can look for them in logs.
            "secrets": [v for sk, tok, _ in self.creds.values() for v in (sk, tok) if v],
            "imds_calls": self.imds_calls,
            "runs": self.runs[-20:],
            "instances": {i["id"]: {"state": i["state"], "type": i["type"],
                                    "image": i["image"], "tags": i["tags"],
                                    "public_ip": i["public_ip"], "client_token": i["token"],
                                    "volume": i["volume"]}
                          for i in list(self.instances.values())[-50:]},
        })
        return rep


STATE = State()


def error_xml(code, message):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{escape(code)}'
            f'</Code><Message>{escape(message)}</Message></Error></Errors><RequestID>{uuid.uuid4()}'
            f'</RequestID></Response>')


def instance_xml(i):
    tags = "".join(f"<item><key>{escape(k)}</key><value>{escape(v)}</value></item>"
                   for k, v in i["tags"].items())
    ip = f"<privateIpAddress>{i['private_ip']}</privateIpAddress>" if i["ip_shown"] else ""
    pub = f"<ipAddress>{i['public_ip']}</ipAddress>" if i["ip_shown"] and i["public_ip"] else ""
    code = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64,
            "stopped": 80}[i["state"]]
    return (f"<item><instanceId>{i['id']}</instanceId><imageId>{i['image']}</imageId>"
            f"<instanceState><code>{code}</code><name>{i['state']}</name></instanceState>"
            f"<instanceType>{i['type']}</instanceType>{ip}{pub}"
            f"<clientToken>{escape(i['token'])}</clientToken><tagSet>{tags}</tagSet>"
            f"<networkInterfaceSet><item><networkInterfaceId>eni-{i['id'][2:]}</networkInterfaceId>"
            f"{ip}</item></networkInterfaceSet></item>")


def describe_step(i):
    """Instances move on each time they are looked at."""
    i["describes"] += 1
    if i["describes"] >= STATE.cfg["ip_delay"]:
        i["ip_shown"] = True
    if i["state"] == "pending" and i["describes"] >= 1:
        i["state"] = "running"
    elif i["state"] == "shutting-down":
        i["state"] = "terminated"


class Handler(fakelib.ControlHandler):
    server_version = "FakeEC2/1.0"
    STATE = STATE

    def reply(self, status, body, ctype="text/xml;charset=UTF-8", headers=None):
        super().reply(status, body, ctype, headers)

    def body(self):
        raw = self.read_body()
        if raw is None:
            raise Fault(413, "RequestEntityTooLarge", "too large")
        return raw

    def fault_answer(self, kind):
        xml = "text/xml;charset=UTF-8"
        if kind == "throttle":
            return 503, {}, error_xml("RequestLimitExceeded", "Request limit exceeded."), xml
        if kind == "throttle_retry_after":
            return (429, {"Retry-After": str(STATE.cfg["retry_after_s"])},
                    error_xml("RequestLimitExceeded", "Request limit exceeded."), xml)
        if kind == "unavailable":
            return 503, {}, error_xml("Unavailable", "The server is overloaded"), xml
        if kind == "reject":
            return (403, {}, error_xml("UnauthorizedOperation",
                                       "You are not authorized to perform this operation."), xml)
        if kind == "capacity":
            return (500, {}, error_xml("InsufficientInstanceCapacity",
                                       "We currently do not have sufficient capacity in the "
                                       "Availability Zone you requested."), xml)
        return 500, {}, error_xml("InternalError", "An internal error has occurred"), xml

    # --- control and IMDS ------------------------------------------------------

    def do_GET(self):
        if not self.control():
            self.imds("GET")

    def do_PUT(self):
        self.imds("PUT")

    def imds(self, method):
        raw = self.read_body() or b""
        with STATE.lock:
            fault = STATE.arrive("IMDS", ("IMDS", method, self.path))
            STATE.imds_calls += 1
        self.serve_api(fault, ("IMDS", method, self.path), lambda: self.imds_answer(method, raw))

    def imds_answer(self, method, raw):
        text = "text/plain"
        delay = STATE.cfg["imds_delay_ms"]
        if delay:
            time.sleep(delay / 1000)
        with STATE.lock:
            if method == "PUT" and self.path == "/latest/api/token" and STATE.cfg["imds_no_token"]:
                return 403, {}, "", text
            if method == "PUT" and self.path == "/latest/api/token":
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return 400, {}, "", text
                tok = secrets.token_urlsafe(32)
                STATE.imds_tokens[tok] = time.time() + int(ttl)
                return 200, {}, tok, text
            tok = self.headers.get("X-aws-ec2-metadata-token", "")
            if STATE.imds_tokens.get(tok, 0) < time.time():
                return 401, {}, "", text
            base = "/latest/meta-data/iam/security-credentials/"
            if self.path == base:
                return 200, {}, ROLE + "\n", text
            if self.path == base + ROLE:
                ak = "ASIAIMDS" + secrets.token_hex(6).upper()
                sk, st = secrets.token_urlsafe(30), secrets.token_urlsafe(60)
                exp = time.time() + STATE.ttl("imds_ttl")
                STATE.creds[ak] = (sk, st, exp)
                STATE.tokens_issued += 1
                return 200, {}, json.dumps({"Code": "Success",
                                            "LastUpdated": now_iso(time.time()),
                                            "Type": "AWS-HMAC", "AccessKeyId": ak,
                                            "SecretAccessKey": sk, "Token": st,
                                            "Expiration": now_iso(exp)}), text
            meta = STATE.cfg["imds_metadata"]
            path = self.path[len("/latest/meta-data/"):]
            if method == "GET" and self.path.startswith("/latest/meta-data/") and path in meta:
                return 200, {}, meta[path], text
            return 404, {}, "", text

    # --- the API -----------------------------------------------------------------

    def do_POST(self):
        if self.control():
            return
        try:
            raw = self.body()
        except Fault as f:
            self.reply(f.status, error_xml(f.code, f.message))
            return
        if self.headers.get("Content-Type", "").split(";")[0].strip() != \
                "application/x-www-form-urlencoded":
            self.reply(400, error_xml("InvalidParameterValue", "bad Content-Type"))
            return
        try:
            params = dict(urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True,
                                                 strict_parsing=True))
        except (ValueError, UnicodeDecodeError):
            self.reply(400, error_xml("MalformedQueryString", "bad body"))
            return
        action = params.pop("Action", "")
        version = params.pop("Version", "")
        with STATE.lock:
            fault = STATE.arrive(action, raw)
        if action == "AssumeRoleWithWebIdentity":
            self.serve_api(fault, raw, lambda: self.sts(params, version))
            return
        try:
            self.check_signature(raw)
            if version != "2016-11-15":
                raise Fault(400, "InvalidParameterValue", f"bad Version `{version}`")
            handler = ACTIONS.get(action)
            if handler is None:
                raise Fault(400, "InvalidAction", f"The action {action} is not valid")
            snp = params.pop("CpuOptions.AmdSevSnp", None)
            try:
                shaped = unflatten(params, MODEL.operation_model(action).input_shape)
                botocore.validate.validate_parameters(
                    shaped, MODEL.operation_model(action).input_shape)
            except botocore.exceptions.ParamValidationError as e:
                raise Fault(400, "InvalidParameterValue", str(e).replace("\n", " "))
            if snp is not None:
                if action != "RunInstances" or snp not in ("enabled", "disabled"):
                    raise Fault(400, "InvalidParameterValue", "CpuOptions.AmdSevSnp")
                shaped.setdefault("CpuOptions", {})["AmdSevSnp"] = snp
        except Fault as f:
            with STATE.lock:
                if f.code in ("UnknownParameter", "InvalidParameterValue", "InvalidAction",
                              "MissingParameter"):
                    STATE.param_failures.append(f"{action}: {f.message}")
                    STATE.refuse(f"{action}: {f.message}")
            self.reply(f.status, error_xml(f.code, f.message))
            return

        def apply():
            try:
                with STATE.lock:
                    body = handler(shaped)
                status = 200
            except Fault as f:
                status, body = f.status, error_xml(f.code, f.message)
            if fault == "create_error":
                status, body = 500, error_xml("InternalError", "An internal error has occurred")
            return status, {}, body, "text/xml;charset=UTF-8"
        self.serve_api(fault, raw, apply)

    def check_signature(self, raw):
        auth = self.headers.get("Authorization", "")
        m = re.fullmatch(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([a-z0-9-]+)/ec2/aws4_request,"
                         r" SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})", auth)
        date = self.headers.get("X-Amz-Date", "")

        def bad(why, code="SignatureDoesNotMatch", status=403):
            with STATE.lock:
                if code == "SignatureDoesNotMatch" or code == "IncompleteSignature":
                    STATE.sig_failures.append(why)
                    STATE.refuse(why)
                elif code == "ExpiredToken":
                    STATE.expired_rejections += 1
                else:
                    STATE.auth_failures += 1
                    STATE.refuse(why)
            raise Fault(status, code, why)

        if not m:
            bad("no or malformed Authorization header", "IncompleteSignature", 400)
        ak, day, region, signed, sig = m.groups()
        if not re.fullmatch(r"\d{8}T\d{6}Z", date) or date[:8] != day:
            bad("X-Amz-Date is missing or does not match the credential scope")
        t = datetime.datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        if abs(time.time() - t) > 300:
            bad("Request has expired", "RequestExpired", 400)
        with STATE.lock:
            cred = STATE.creds.get(ak)
        if cred is None:
            bad("AWS was not able to validate the provided access credentials", "AuthFailure", 401)
        sk, token, exp = cred
        if exp is not None and exp < time.time():
            bad("The security token included in the request is expired", "ExpiredToken", 400)
        names = signed.split(";")
        for need in ("host", "x-amz-date", "content-type"):
            if need not in names:
                bad(f"`{need}` is not signed")
        if token is not None:
            if self.headers.get("X-Amz-Security-Token") != token:
                bad("the security token is missing or wrong", "AuthFailure", 401)
            if "x-amz-security-token" not in names:
                bad("the security token is not signed")
        if names != sorted(names):
            bad("SignedHeaders are not sorted")
        headers = {}
        for n in names:
            vals = self.headers.get_all(n)
            if vals is None:
                bad(f"signed header `{n}` is not in the request")
            headers[n] = ",".join(vals)
        req = AWSRequest(method=self.command, url=f"http://{headers['host']}{self.path}",
                         data=raw, headers=headers)
        req.context["timestamp"] = date
        signer = SigV4Auth(Credentials(ak, sk, token), "ec2", region)
        creq = signer.canonical_request(req)
        want = signer.signature(signer.string_to_sign(req, creq), req)
        if want != sig:
            bad("The request signature we calculated does not match the signature you provided")

    def sts(self, params, version):
        with STATE.lock:
            STATE.sts_calls += 1
        if (version != "2011-06-15" or params.get("WebIdentityToken") != WEB_IDENTITY_TOKEN or
                not params.get("RoleArn", "").startswith("arn:aws:iam::") or
                not re.fullmatch(r"[\w+=,.@-]{2,64}", params.get("RoleSessionName", "")) or
                set(params) != {"RoleArn", "RoleSessionName", "WebIdentityToken"}):
            return (400, {}, f'<ErrorResponse xmlns="{STS_NS}"><Error><Type>Sender</Type>'
                            f'<Code>InvalidIdentityToken</Code><Message>bad request</Message>'
                            f'</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>',
                    "text/xml")
        ak = "ASIASTS" + secrets.token_hex(6).upper()
        sk, tok = secrets.token_urlsafe(30), secrets.token_urlsafe(80)
        exp = time.time() + STATE.ttl("sts_ttl")
        with STATE.lock:
            STATE.creds[ak] = (sk, tok, exp)
            STATE.tokens_issued += 1
        return (200, {}, f'<AssumeRoleWithWebIdentityResponse xmlns="{STS_NS}">'
                        f'<AssumeRoleWithWebIdentityResult><Credentials>'
                        f'<AccessKeyId>{ak}</AccessKeyId><SecretAccessKey>{sk}</SecretAccessKey>'
                        f'<SessionToken>{tok}</SessionToken><Expiration>{now_iso(exp)}'
                        f'</Expiration></Credentials><SubjectFromWebIdentityToken>system:sa'
                        f'</SubjectFromWebIdentityToken></AssumeRoleWithWebIdentityResult>'
                        f'<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>'
                        f'</ResponseMetadata></AssumeRoleWithWebIdentityResponse>', "text/xml")



def new_id():
    return "i-" + secrets.token_hex(9)[:17]


def check_ids(ids):
    for i in ids:
        if not re.fullmatch(r"i-[0-9a-f]{8}([0-9a-f]{9})?", i):
            raise Fault(400, "InvalidInstanceID.Malformed", f'Invalid id: "{i}"')


def run_instances(p):
    cfg = STATE.cfg
    if p["MinCount"] != 1 or p["MaxCount"] != 1:
        raise Fault(400, "InvalidParameterValue", "MinCount and MaxCount must be 1 here")
    token = p.get("ClientToken", "")
    if len(token) > 64:
        raise Fault(400, "InvalidParameterValue", "ClientToken is longer than 64")
    fingerprint = json.dumps(p, sort_keys=True)
    if token and token in STATE.tokens:
        iid, fp = STATE.tokens[token]
        if fp != fingerprint:
            raise Fault(400, "IdempotentParameterMismatch",
                        "Arguments on this idempotent request are inconsistent with arguments "
                        "used in previous request(s).")
        return run_response(STATE.instances[iid])
    image, itype = p.get("ImageId"), p.get("InstanceType")
    if "LaunchTemplate" in p:
        lt = LAUNCH_TEMPLATES.get(p["LaunchTemplate"].get("LaunchTemplateName"))
        if lt is None:
            raise Fault(400, "InvalidLaunchTemplateName.NotFoundException",
                        "The specified launch template does not exist")
        image, itype = image or lt[0], itype or lt[1]
    if image not in IMAGES:
        raise Fault(400, "InvalidAMIID.NotFound", f"The image id '[{image}]' does not exist")
    if itype not in CATALOG:
        raise Fault(400, "InvalidParameterValue", f"Invalid value '{itype}' for InstanceType.")
    snp = p.get("CpuOptions", {}).get("AmdSevSnp") == "enabled"
    if snp and not CATALOG[itype][3]:
        raise Fault(400, "Unsupported",
                    f"The instance type '{itype}' does not support AMD SEV-SNP.")
    ud = p.get("UserData", "")
    try:
        raw = base64.b64decode(ud, validate=True)
    except ValueError:
        raise Fault(400, "InvalidParameterValue", "Invalid BASE64 encoding of user data.")
    if len(raw) > 16384:
        raise Fault(400, "InvalidParameterValue", "User data is limited to 16384 bytes")
    md = p.get("MetadataOptions", {})
    tags = {}
    for spec in p.get("TagSpecifications", []):
        if spec.get("ResourceType") != "instance":
            raise Fault(400, "InvalidParameterValue", "tags only for instances here")
        for t in spec.get("Tags", []):
            k, v = t.get("Key", ""), t.get("Value", "")
            if k in tags or k.startswith("aws:") or not 1 <= len(k) <= 128 or len(v) > 256:
                raise Fault(400, "InvalidParameterValue", f"bad tag `{k}`")
            tags[k] = v
    if len(tags) > 50:
        raise Fault(400, "TagLimitExceeded", "too many tags")
    nis = p.get("NetworkInterfaces", [])
    if nis and ("SubnetId" in p or "SecurityGroupIds" in p):
        raise Fault(400, "InvalidParameterCombination",
                    "Network interfaces and an instance-level subnet ID may not be specified on "
                    "the same request")
    if itype in cfg["capacity_types"]:
        raise Fault(500, "InsufficientInstanceCapacity",
                    f"We currently do not have sufficient {itype} capacity in the Availability "
                    f"Zone you requested.")
    alive = sum(1 for i in STATE.instances.values() if i["state"] != "terminated")
    if cfg["instance_limit"] and alive >= cfg["instance_limit"]:
        raise Fault(400, "InstanceLimitExceeded",
                    "You have requested more instances than your current instance limit allows")
    bdm = p.get("BlockDeviceMappings", [])
    volume = IMAGES[image][1]
    for b in bdm:
        if b.get("DeviceName") != IMAGES[image][0]:
            raise Fault(400, "InvalidBlockDeviceMapping", "not the root device")
        size = b.get("Ebs", {}).get("VolumeSize", volume)
        if size < IMAGES[image][1]:
            raise Fault(400, "InvalidBlockDeviceMapping",
                        f"Volume of size {size}GB is smaller than snapshot")
        volume = size
    iid = new_id()
    n = len(STATE.instances) + 1
    inst = {"id": iid, "state": "pending", "type": itype, "image": image, "token": token,
            "tags": tags,
            "private_ip": cfg["private_ip"] or f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}",
            "public_ip": f"198.51.{(n >> 8) & 255}.{n & 255}" if any(
                ni.get("AssociatePublicIpAddress") for ni in nis) else "",
            "ip_shown": cfg["ip_delay"] == 0, "describes": 0, "volume": volume,
            "user_data": raw.decode("utf-8", "replace"), "user_data_raw": raw, "snp": snp,
            "imds_v2": md.get("HttpTokens") == "required"}
    STATE.instances[iid] = inst
    STATE.created += 1
    if token:
        STATE.tokens[token] = (iid, fingerprint)
    sb = tags.get("peerpod/sandbox-id")
    if sb is not None:
        STATE.sandboxes.setdefault(sb, []).append(iid)
    STATE.runs.append(dict(p, UserData=inst["user_data"]))
    return run_response(inst)


def run_response(i):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<RunInstancesResponse xmlns="{EC2_NS}">'
            f'<requestId>{uuid.uuid4()}</requestId><reservationId>r-{i["id"][2:]}</reservationId>'
            f'<ownerId>123456789012</ownerId><groupSet/><instancesSet>{instance_xml(i)}'
            f'</instancesSet></RunInstancesResponse>')


def describe_instances(p):
    ids = p.get("InstanceIds", [])
    check_ids(ids)
    if ids and "MaxResults" in p:
        raise Fault(400, "InvalidParameterCombination",
                    "The parameter instancesSet cannot be used with the parameter maxResults")
    maxr = p.get("MaxResults", 1000)
    if not 5 <= maxr <= 1000:
        raise Fault(400, "InvalidParameterValue", "MaxResults must be from 5 to 1000")
    sel = []
    for iid in ids:
        i = STATE.instances.get(iid)
        # A new instance stays invisible to lookups by id for a while.
        hidden = i is not None and i.get("hidden", 0) < STATE.cfg["consistency_delay"]
        if hidden:
            i["hidden"] = i.get("hidden", 0) + 1
        if i is None or hidden:
            raise Fault(400, "InvalidInstanceID.NotFound",
                        f"The instance ID '{iid}' does not exist")
        sel.append(i)
    if not ids:
        sel = list(STATE.instances.values())
    for f in p.get("Filters", []):
        name, values = f.get("Name", ""), f.get("Values", [])
        if name.startswith("tag:"):
            key = name[4:]
            sel = [i for i in sel if i["tags"].get(key) in values]
        elif name == "tag-key":
            sel = [i for i in sel if any(v in i["tags"] for v in values)]
        elif name == "instance-state-name":
            sel = [i for i in sel if i["state"] in values]
        elif name == "client-token":
            sel = [i for i in sel if i["token"] in values]
        elif name == "instance-id":
            sel = [i for i in sel if i["id"] in values]
        else:
            raise Fault(400, "InvalidParameterValue", f"The filter '{name}' is invalid")
    start = 0
    if "NextToken" in p:
        try:
            start = int(base64.b64decode(p["NextToken"]).decode())
        except ValueError:
            raise Fault(400, "InvalidParameterValue", "bad NextToken")
    page = sel[start:start + maxr]
    nxt = ""
    if start + maxr < len(sel):
        nxt = f"<nextToken>{base64.b64encode(str(start + maxr).encode()).decode()}</nextToken>"
    items = []
    for i in page:
        describe_step(i)
        items.append(f"<item><reservationId>r-{i['id'][2:]}</reservationId><ownerId>123456789012"
                     f"</ownerId><groupSet/><instancesSet>{instance_xml(i)}</instancesSet></item>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<DescribeInstancesResponse xmlns="{EC2_NS}">'
            f'<requestId>{uuid.uuid4()}</requestId><reservationSet>{"".join(items)}'
            f'</reservationSet>{nxt}</DescribeInstancesResponse>')


def terminate_instances(p):
    ids = p["InstanceIds"]
    check_ids(ids)
    for iid in ids:
        if iid not in STATE.instances:
            raise Fault(400, "InvalidInstanceID.NotFound",
                        f"The instance ID '{iid}' does not exist")
    items = []
    for iid in ids:
        i = STATE.instances[iid]
        prev = i["state"]
        if prev != "terminated":
            i["state"] = "shutting-down"
        items.append(f"<item><instanceId>{iid}</instanceId><currentState><code>32</code><name>"
                     f"{i['state']}</name></currentState><previousState><code>16</code><name>"
                     f"{prev}</name></previousState></item>")
        if prev == "shutting-down":
            i["state"] = "terminated"
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<TerminateInstancesResponse xmlns="{EC2_NS}">'
            f'<requestId>{uuid.uuid4()}</requestId><instancesSet>{"".join(items)}</instancesSet>'
            f'</TerminateInstancesResponse>')


def describe_instance_types(p):
    types = p.get("InstanceTypes", [])
    if len(types) > 100:
        raise Fault(400, "InvalidParameterValue", "at most 100 instance types")
    items = []
    for t in types:
        if t not in CATALOG:
            raise Fault(400, "InvalidInstanceType", f"The following supplied instance types do "
                                                    f"not exist: [{t}]")
        v, m, g, snp = CATALOG[t]
        gpu = (f"<gpuInfo><gpus><item><name>A10G</name><manufacturer>NVIDIA</manufacturer>"
               f"<count>{g}</count></item></gpus></gpuInfo>") if g else ""
        feats = "<item>amd-sev-snp</item>" if snp else ""
        items.append(f"<item><instanceType>{t}</instanceType><vCpuInfo><defaultVCpus>{v}"
                     f"</defaultVCpus></vCpuInfo><memoryInfo><sizeInMiB>{m}</sizeInMiB>"
                     f"</memoryInfo>{gpu}<processorInfo><supportedFeatures>{feats}"
                     f"</supportedFeatures></processorInfo></item>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<DescribeInstanceTypesResponse '
            f'xmlns="{EC2_NS}"><requestId>{uuid.uuid4()}</requestId><instanceTypeSet>'
            f'{"".join(items)}</instanceTypeSet></DescribeInstanceTypesResponse>')


def describe_images(p):
    items = []
    for img in p.get("ImageIds", []):
        if img not in IMAGES:
            raise Fault(400, "InvalidAMIID.NotFound", f"The image id '[{img}]' does not exist")
        dev, size = IMAGES[img]
        items.append(f"<item><imageId>{img}</imageId><rootDeviceName>{dev}</rootDeviceName>"
                     f"<rootDeviceType>ebs</rootDeviceType><blockDeviceMapping><item><deviceName>"
                     f"{dev}</deviceName><ebs><volumeSize>{size}</volumeSize></ebs></item>"
                     f"</blockDeviceMapping></item>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<DescribeImagesResponse xmlns="{EC2_NS}">'
            f'<requestId>{uuid.uuid4()}</requestId><imagesSet>{"".join(items)}</imagesSet>'
            f'</DescribeImagesResponse>')


ACTIONS = {
    "RunInstances": run_instances,
    "DescribeInstances": describe_instances,
    "TerminateInstances": terminate_instances,
    "DescribeInstanceTypes": describe_instance_types,
    "DescribeImages": describe_images,
}


RATE, BURST = 150, 30


def provider_env(url):
    """The AWS provider's settings against this fake, for the conformance
    suite (None: unset): credentials from the instance role (IMDS), so that
    they expire and are refreshed; short backoffs; the rate limit above.
    Tests of their own (test_aws_provider.c, caa_aws.sh) set theirs."""
    env = {k: None for k in (
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_STS",
        "AWS_DEFAULT_REGION", "AWS_CA_BUNDLE", "PODVM_INSTANCE_TYPES", "USE_PUBLIC_IP",
        "DISABLECVM", "SSH_KP_NAME", "USE_PODVM_LAUNCHTEMPLATE", "PODVM_LAUNCHTEMPLATE_NAME")}
    env.update({
        "FAKE_EC2_URL": url, "FAKE_EC2_ACCESS_KEY": STATIC_AK, "FAKE_EC2_SECRET_KEY": STATIC_SK,
        "FAKE_EC2_WEB_IDENTITY_TOKEN": WEB_IDENTITY_TOKEN,
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": url,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": url,
        "PODVM_AMI_ID": "ami-0123456789abcdef0", "PODVM_INSTANCE_TYPE": "m6a.large",
        "AWS_SUBNET_ID": "subnet-0123456789abcdef0", "TAGS": "team=peer-pods,env=ci",
        "AWS_RETRY_BASE_DELAY_MS": "5", "AWS_RETRY_MAX_DELAY_MS": "40", "AWS_MAX_ATTEMPTS": "8",
        "AWS_API_ATTEMPT_TIMEOUT_MS": "400", "AWS_API_TIMEOUT_MS": "15000",
        "AWS_IP_POLL_INTERVAL_MS": "20", "AWS_IP_WAIT_TIMEOUT_MS": "5000",
        "AWS_API_RATE_LIMIT": str(RATE), "AWS_API_BURST": str(BURST)})
    return env


def main():
    return fakelib.main(STATE, Handler, provider_env, RATE, BURST)


if __name__ == "__main__":
    sys.exit(main())
