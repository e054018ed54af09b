#!/usr/bin/python3
"""A strict fake of the parts of Google Cloud the GCP provider talks to, on
127.0.0.1 (tests/conformance/README.md says what every fake provides).

Compute Engine v1 (zone instances insert/get/list/delete, zone operations
get/wait, machineTypes.get, images.get), Resource Manager v3 (tagKeys.list,
tagValues.list), the OAuth 2.0 token endpoint (JWT bearer grant, RFC 7523)
and the metadata server's token.

Strict: the JWT assertion's RS256 signature is verified (python3-cryptography)
against the key this fake issued, with its claims (issuer, audience, scope,
lifetime); every API call needs an access token the fake issued and that has
not expired; an insert body is checked field by field as Compute Engine
checks it (names, labels, metadata, the boot disk and its image and size,
the network, the machine type and the confidential type it can run,
onHostMaintenance, tags); requestId must be a UUID and an insert with a
requestId seen before returns that insert's operation. Operations run
asynchronously (op_delay_s), their wait holds until done (at most
wait_hold_s), instances are kept with their boot disks (deleted with the
instance when autoDelete), and list can lag behind (list_lag_s).

Fault kinds beyond the common ones: capacity (the insert's operation ends in
ZONE_RESOURCE_POOL_EXHAUSTED, nothing made), create_error (the insert's
operation ends in error after the instance exists), quota (403
QUOTA_EXCEEDED on insert).

The credentials the provider gets: the service-account key itself in
GCP_CREDENTIALS, or with FAKE_GCE_AUTH=keyfile the same key in a file that
GOOGLE_APPLICATION_CREDENTIALS names (the metadata server then refuses to
serve a token: the key was given).

Run: fake_gce.py [--port-file F] [-- command args...]
"""
import base64
import json
import os
import re
import secrets
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "conformance"))
import fakelib  # noqa: E402

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
except ImportError:
    print("fake_gce: python3-cryptography is missing; skipping", file=sys.stderr)
    sys.exit(77)

PROJECT = "peerpod-ci"
ZONE = "us-central1-a"
REGION = "us-central1"
SA_EMAIL = "caa@peerpod-ci.iam.gserviceaccount.com"
KEY_ID = "0123456789abcdef0123456789abcdef01234567"
SCOPE = "https://www.googleapis.com/auth/compute"
SCOPE_ALL = "https://www.googleapis.com/auth/cloud-platform"
NETWORKS = {"default", "peerpod-net"}
SUBNETS = {"default", "peerpod-subnet"}
DISK_TYPES = {"pd-standard", "pd-balanced", "pd-ssd", "pd-extreme", "hyperdisk-balanced"}
RATE, BURST = 150, 30

# name: (vCPUs, MiB, GPUs, confidential types it runs)
CATALOG = {
    "e2-medium": (2, 4096, 0, ()),
    "n2d-standard-2": (2, 8192, 0, ("SEV", "SEV_SNP")),
    "n2d-standard-4": (4, 16384, 0, ("SEV", "SEV_SNP")),
    "n2d-standard-8": (8, 32768, 0, ("SEV", "SEV_SNP")),
    "n2d-highmem-2": (2, 16384, 0, ("SEV", "SEV_SNP")),
    "c2d-standard-2": (2, 8192, 0, ("SEV",)),
    "c3d-standard-4": (4, 16384, 0, ("SEV",)),
    "c3-standard-4": (4, 16384, 0, ("TDX",)),
    "c3-standard-8": (8, 32768, 0, ("TDX",)),
    "a3-highgpu-1g": (26, 239616, 1, ("TDX",)),
    "g2-standard-4": (4, 16384, 1, ()),
}
# image path -> size GiB
IMAGES = {f"projects/{PROJECT}/global/images/podvm-ci": 10,
          f"projects/{PROJECT}/global/images/podvm-big": 30,
          "projects/peerpod-images/global/images/podvm-shared": 12}
# key short name -> (id, {value short name: id})
TAGS = {"team": ("tagKeys/281474976710001", {"peer-pods": "tagValues/281474976720001",
                                              "other": "tagValues/281474976720002"}),
        "env": ("tagKeys/281474976710002", {"ci": "tagValues/281474976720003"})}

DEFAULTS = {
    "fault_kinds": {"throttle": 1, "internal": 1, "unavailable": 1, "drop": 1, "drop_after": 1,
                    "timeout": 1, "create_error": 1, "capacity": 1},
    "op_delay_s": 0.02,        # how long an insert or delete runs
    "wait_hold_s": 0.5,        # longest a wait holds before answering (GCE: 2 min)
    "list_lag_s": 0.0,         # list misses new instances and shows deleted ones this long
    "ip_delay_s": 0.0,         # how long after creation the external address shows
}
CREATE_ONLY = ("create_error", "capacity", "quota")
NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
LABEL_KEY_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE_RE = re.compile(r"[a-z0-9_-]{0,63}")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KEY_PEM = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()


class Fault(Exception):
    def __init__(self, status, reason, message, canonical=None):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.canonical = canonical or {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED",
                                       403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                                       409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED",
                                       500: "INTERNAL", 503: "UNAVAILABLE"}.get(status, "UNKNOWN")


def error_json(status, reason, message, canonical):
    return json.dumps({"error": {"code": status, "message": message,
                                 "errors": [{"message": message, "domain": "global",
                                             "reason": reason}],
                                 "status": canonical}})


def b64url_decode(s):
    if not re.fullmatch(r"[A-Za-z0-9_-]*", s):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class State(fakelib.FakeState):
    DEFAULTS = DEFAULTS

    def reset(self):
        super().reset()
        self.instances = {}     # name -> dict
        self.disks = {}         # name -> dict
        self.ops = {}           # name -> dict
        self.request_ids = {}   # requestId -> operation name
        self.tokens = {}        # access token -> expiry (time.time())
        self.sandboxes = {}     # sandbox id -> [instance ids]
        self.gone = []          # (name, sandbox, deleted at) for the list's lag
        self.inserts = []       # insert bodies, as received
        self.created = 0
        self.next_id = 4000000000000000000
        self.next_ip = 2
        self.jwt_grants = 0
        self.metadata_grants = 0

    def fault_applies(self, kind, action):
        return action == "instances.insert" or kind not in CREATE_ONLY

    def expire_all(self):
        now = time.time()
        for t in self.tokens:
            self.tokens[t] = min(self.tokens[t], now - 1)

    def missing_id(self):
        while True:
            n = "podvm-missing-" + secrets.token_hex(4)
            if n not in self.instances:
                return n

    def user_data(self, sb):
        found = [i for i in self.instances.values()
                 if i["sandbox"] == sb and i["status"] not in ("STOPPING", "TERMINATED")]
        return found[-1]["user_data_raw"] if found else None

    def issue_token(self):
        tok = "ya29.fake-" + secrets.token_urlsafe(40)
        self.tokens[tok] = time.time() + self.cfg["token_ttl"]
        self.tokens_issued += 1
        return tok

    # --- time moves on ---------------------------------------------------------------

    def advance(self):
        now = time.monotonic()
        for op in self.ops.values():
            if op["status"] == "DONE" or now < op["done_at"]:
                if op["status"] == "PENDING" and now >= op["start_at"]:
                    op["status"] = "RUNNING"
                continue
            op["status"] = "DONE"
            inst = self.instances.get(op["target"])
            if op["kind"] == "insert":
                if op.get("error") is None and inst is not None and inst["uid"] == op["uid"]:
                    inst["status"] = "RUNNING"
            elif op["kind"] == "delete" and inst is not None and inst["uid"] == op["uid"]:
                del self.instances[op["target"]]
                for d in inst["disks"]:
                    if self.disks.get(d, {}).get("auto_delete"):
                        del self.disks[d]
                self.gone.append((inst, time.monotonic()))

    def new_op(self, kind, target, uid, error=None):
        name = f"operation-{int(time.time() * 1000)}-{secrets.token_hex(6)}"
        now = time.monotonic()
        op = {"name": name, "kind": kind, "target": target, "uid": uid, "status": "PENDING",
              "start_at": now, "done_at": now + self.cfg["op_delay_s"], "error": error,
              "insert_time": time.time()}
        self.ops[name] = op
        return op

    def op_json(self, op):
        o = {"kind": "compute#operation", "id": str(abs(hash(op["name"])) % (10 ** 18)),
             "name": op["name"], "zone": zone_url(),
             "operationType": op["kind"], "status": op["status"], "progress": 100 if
             op["status"] == "DONE" else 0,
             "targetLink": f"{zone_url()}/instances/{op['target']}",
             "targetId": str(op["uid"]),
             "selfLink": f"{zone_url()}/operations/{op['name']}"}
        if op["status"] == "DONE" and op["error"] is not None:
            code, msg, http = op["error"]
            o["error"] = {"errors": [{"code": code, "message": msg}]}
            o["httpErrorStatusCode"] = http
        return o

    def report(self):
        rep = super().report()
        alive = list(self.instances.values())
        dup = {s: ids for s, ids in self.sandboxes.items() if len(set(ids)) > 1}
        rep.update({
            "created": self.created,
            "alive_resources": {"vms": len(alive), "disks": len(self.disks)},
            "alive": [{"name": i["name"], "status": i["status"], "sandbox": i["sandbox"]}
                      for i in alive],
            "duplicates": dup,
            "secrets": list(self.tokens) + [KEY_PEM.splitlines()[2]],
            "jwt_grants": self.jwt_grants,
            "metadata_grants": self.metadata_grants,
            "inserts": self.inserts[-10:],
            "instances": {i["name"]: {"status": i["status"], "machine_type": i["machine_type"],
                                      "labels": i["labels"], "sandbox": i["sandbox"],
                                      "disk_gb": i["disk_gb"]}
                          for i in alive[-50:]},
        })
        return rep


STATE = State()
KEY_FILE = None  # FAKE_GCE_AUTH=keyfile: the key's file


def zone_url():
    return f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{ZONE}"


def instance_json(i):
    nic = {"kind": "compute#networkInterface", "name": "nic0",
           "network": f"https://www.googleapis.com/compute/v1/{i['network']}",
           "networkIP": i["ip"], "stackType": "IPV4_ONLY"}
    if i["public"]:
        ac = {"kind": "compute#accessConfig", "name": "External NAT", "type": "ONE_TO_ONE_NAT",
              "networkTier": "STANDARD"}
        if time.monotonic() >= i["created_at"] + STATE.cfg["ip_delay_s"]:
            ac["natIP"] = i["public"]
        nic["accessConfigs"] = [ac]
    return {"kind": "compute#instance", "id": str(i["uid"]), "name": i["name"],
            "status": i["status"], "zone": zone_url(),
            "machineType": f"{zone_url()}/machineTypes/{i['machine_type']}",
            "labels": i["labels"], "labelFingerprint": "42WmSpB8rSM=",
            "metadata": {"kind": "compute#metadata", "fingerprint": "x", "items": i["metadata"]},
            "networkInterfaces": [nic],
            "disks": [{"boot": True, "autoDelete": True, "deviceName": "persistent-disk-0",
                       "source": f"{zone_url()}/disks/{d}"} for d in i["disks"]],
            "selfLink": f"{zone_url()}/instances/{i['name']}"}


def need(cond, message, reason="invalid"):
    if not cond:
        raise Fault(400, reason, message)


def check_only(obj, allowed, where):
    need(isinstance(obj, dict), f"{where}: not an object")
    for k in obj:
        need(k in allowed, f"Invalid JSON payload received. Unknown name \"{k}\" at '{where}'")


def resolve(path, kind, known, regional=False):
    """A resource path (full URL, projects/..., or the short global/regional form)
    to the name it names in this project, or Fault."""
    p = re.sub(r"^https://(www|compute)\.googleapis\.com/compute/v1/", "", path)
    if regional:
        m = re.fullmatch(rf"(?:projects/{PROJECT}/)?regions/{REGION}/{kind}/([a-z0-9-]+)", p)
    else:
        m = re.fullmatch(rf"(?:projects/{PROJECT}/)?global/{kind}/([a-z0-9-]+)", p)
    need(m is not None and m.group(1) in known, f"The resource '{path}' was not found",
         "notFound")
    return m.group(1)


def check_insert(b):
    check_only(b, {"name", "machineType", "description", "labels", "metadata", "disks",
                   "networkInterfaces", "confidentialInstanceConfig", "scheduling",
                   "minCpuPlatform", "params"}, "instance")
    name = b.get("name")
    need(isinstance(name, str) and NAME_RE.fullmatch(name),
         f"Invalid value for field 'resource.name': '{name}'. Must be a match of regex "
         "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
    mt = b.get("machineType", "")
    m = re.fullmatch(rf"(?:(?:https://www\.googleapis\.com/compute/v1/)?projects/{PROJECT}/)?"
                     rf"zones/{ZONE}/machineTypes/([a-z0-9-]+)", str(mt))
    need(m is not None, f"Invalid value for field 'resource.machineType': '{mt}'")
    mtype = m.group(1)
    need(mtype in CATALOG, f"Invalid value for field 'resource.machineType': '{mt}'. "
         "Machine type does not exist.")
    labels = b.get("labels", {})
    need(isinstance(labels, dict) and len(labels) <= 64, "labels: at most 64")
    for k, v in labels.items():
        need(LABEL_KEY_RE.fullmatch(k) is not None, f"Invalid label key '{k}'")
        need(isinstance(v, str) and LABEL_VALUE_RE.fullmatch(v) is not None,
             f"Invalid value for label '{k}': '{v}'")
    md = b.get("metadata", {})
    check_only(md, {"items"}, "instance.metadata")
    items = md.get("items", [])
    need(isinstance(items, list), "metadata.items: not a list")
    seen, total = {}, 0
    for it in items:
        check_only(it, {"key", "value"}, "metadata.items")
        k, v = it.get("key"), it.get("value")
        need(isinstance(k, str) and re.fullmatch(r"[a-zA-Z0-9_-]{1,128}", k) is not None,
             f"Invalid metadata key '{k}'")
        need(k not in seen, f"Duplicate metadata key '{k}'")
        need(isinstance(v, str) and len(v.encode()) <= 256 * 1024,
             f"Metadata value of '{k}' is too large")
        seen[k] = v
        total += len(k) + len(v.encode())
    need(total <= 512 * 1024, "Metadata is too large", "metadataTooLarge")
    ud_raw = None
    if "user-data" in seen:
        if seen.get("user-data-encoding") == "base64":
            try:
                ud_raw = base64.b64decode(seen["user-data"], validate=True)
            except ValueError:
                need(False, "user-data is not base64")
        else:
            ud_raw = seen["user-data"].encode()
    disks = b.get("disks")
    need(isinstance(disks, list) and len(disks) == 1, "exactly one disk, the boot disk")
    d = disks[0]
    check_only(d, {"boot", "autoDelete", "type", "initializeParams", "deviceName"}, "disks[0]")
    need(d.get("boot") is True, "disks[0].boot must be true")
    need(isinstance(d.get("autoDelete"), bool), "disks[0].autoDelete must be a boolean")
    need(d.get("type", "PERSISTENT") == "PERSISTENT", "disks[0].type")
    ip = d.get("initializeParams")
    check_only(ip, {"sourceImage", "diskSizeGb", "diskType"}, "disks[0].initializeParams")
    img = re.sub(r"^https://(www|compute)\.googleapis\.com/compute/v1/", "",
                 str(ip.get("sourceImage", "")))
    need(img in IMAGES, f"The resource '{ip.get('sourceImage')}' was not found", "notFound")
    size = ip.get("diskSizeGb", str(IMAGES[img]))
    need(isinstance(size, (str, int)) and re.fullmatch(r"\d+", str(size)) is not None,
         "diskSizeGb: not an int64")
    need(int(size) >= IMAGES[img],
         f"Requested disk size cannot be smaller than the image size ({IMAGES[img]} GB)")
    need(int(size) <= 65536, "diskSizeGb too large")
    dt = ip.get("diskType", f"zones/{ZONE}/diskTypes/pd-standard")
    m = re.fullmatch(rf"(?:projects/{PROJECT}/)?zones/{ZONE}/diskTypes/([a-z0-9-]+)", str(dt))
    need(m is not None and m.group(1) in DISK_TYPES, f"Invalid disk type '{dt}'", "notFound")
    nics = b.get("networkInterfaces")
    need(isinstance(nics, list) and len(nics) == 1, "exactly one network interface")
    nic = nics[0]
    check_only(nic, {"network", "subnetwork", "stackType", "accessConfigs", "name"},
               "networkInterfaces[0]")
    net = resolve(nic.get("network", "global/networks/default"), "networks", NETWORKS)
    if "subnetwork" in nic:
        resolve(nic["subnetwork"], "subnetworks", SUBNETS, regional=True)
    need(nic.get("stackType", "IPV4_ONLY") in ("IPV4_ONLY", "IPV4_IPV6"),
         f"Invalid value for field 'stackType': '{nic.get('stackType')}'")
    public = False
    if "accessConfigs" in nic:
        acs = nic["accessConfigs"]
        need(isinstance(acs, list) and len(acs) == 1, "at most one access config")
        check_only(acs[0], {"name", "type", "networkTier"}, "accessConfigs[0]")
        need(acs[0].get("type", "ONE_TO_ONE_NAT") == "ONE_TO_ONE_NAT", "accessConfigs[0].type")
        need(acs[0].get("networkTier", "PREMIUM") in ("STANDARD", "PREMIUM"),
             "accessConfigs[0].networkTier")
        public = True
    cic = b.get("confidentialInstanceConfig")
    sched = b.get("scheduling", {})
    check_only(sched, {"onHostMaintenance", "automaticRestart"}, "scheduling")
    need(sched.get("onHostMaintenance", "MIGRATE") in ("MIGRATE", "TERMINATE"),
         "scheduling.onHostMaintenance")
    ctype = None
    if cic is not None:
        check_only(cic, {"enableConfidentialCompute", "confidentialInstanceType"},
                   "confidentialInstanceConfig")
        ctype = cic.get("confidentialInstanceType")
        need(ctype in ("SEV", "SEV_SNP", "TDX"),
             f"Invalid value for field 'confidentialInstanceType': '{ctype}'")
        need(cic.get("enableConfidentialCompute", True) is True,
             "enableConfidentialCompute must be true with a confidential type")
        need(ctype in CATALOG[mtype][3],
             f"Confidential instance type {ctype} is not supported for machine type {mtype}",
             "badRequest")
        need(sched.get("onHostMaintenance") == "TERMINATE",
             "Confidential VMs need onHostMaintenance TERMINATE", "badRequest")
        if ctype == "SEV_SNP":
            need(b.get("minCpuPlatform") == "AMD Milan",
                 "SEV_SNP needs minCpuPlatform 'AMD Milan'", "badRequest")
    if CATALOG[mtype][2] > 0:
        need(sched.get("onHostMaintenance") == "TERMINATE",
             "Instances with guest accelerators do not support live migration", "badRequest")
    if "minCpuPlatform" in b:
        need(b["minCpuPlatform"] in ("AMD Milan", "AMD Rome", "AMD Genoa", "Intel Sapphire Rapids"),
             f"Invalid minCpuPlatform '{b['minCpuPlatform']}'")
    params = b.get("params", {})
    check_only(params, {"resourceManagerTags"}, "params")
    rmt = params.get("resourceManagerTags", {})
    need(isinstance(rmt, dict), "resourceManagerTags: not a map")
    for k, v in rmt.items():
        key = [t for t in TAGS.values() if t[0] == k]
        need(key != [], f"Tag key '{k}' does not exist", "notFound")
        need(v in key[0][1].values(), f"Tag value '{v}' is not a value of '{k}'", "notFound")
    return {"name": name, "machine_type": mtype, "labels": labels, "items": items,
            "ud_raw": ud_raw, "sandbox": seen.get("peerpod-sandbox-id", ""),
            "disk_gb": int(size), "auto_delete": d["autoDelete"], "network":
            f"projects/{PROJECT}/global/networks/{net}", "public": public, "ctype": ctype,
            "tags": rmt}


class Handler(fakelib.ControlHandler):
    server_version = "FakeGCE/1.0"
    STATE = STATE

    def fault_answer(self, kind):
        j = "application/json; charset=UTF-8"
        if kind == "throttle":
            return 403, {}, error_json(403, "rateLimitExceeded", "Rate Limit Exceeded",
                                       "PERMISSION_DENIED"), j
        if kind == "throttle_retry_after":
            return (429, {"Retry-After": str(STATE.cfg["retry_after_s"])},
                    error_json(429, "rateLimitExceeded", "Rate Limit Exceeded",
                               "RESOURCE_EXHAUSTED"), j)
        if kind == "unavailable":
            return 503, {}, error_json(503, "backendError", "Backend Error", "UNAVAILABLE"), j
        if kind == "reject":
            return 403, {}, error_json(403, "forbidden", "Required 'compute.instances.create' "
                                       "permission", "PERMISSION_DENIED"), j
        if kind == "quota":
            return 403, {}, error_json(403, "QUOTA_EXCEEDED", "Quota 'CPUS' exceeded. Limit: "
                                       "24.0 in region us-central1.", "PERMISSION_DENIED"), j
        return 500, {}, error_json(500, "backendError", "Internal Error", "INTERNAL"), j

    def api_error(self, f):
        self.reply(f.status, error_json(f.status, f.reason, f.message, f.canonical),
                   "application/json; charset=UTF-8")

    def do_GET(self):
        if not self.control():
            self.api("GET")

    def do_POST(self):
        if not self.control():
            self.api("POST")

    def do_DELETE(self):
        self.api("DELETE")

    # --- routing ------------------------------------------------------------------------

    ROUTES = [
        ("POST", r"/token", "oauth.token"),
        ("GET", r"/computeMetadata/v1/instance/service-accounts/default/token", "metadata.token"),
        ("POST", rf"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances", "instances.insert"),
        ("GET", rf"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances", "instances.list"),
        ("GET", rf"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/([^/]+)", "instances.get"),
        ("DELETE", rf"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/([^/]+)",
         "instances.delete"),
        ("POST", rf"/compute/v1/projects/{PROJECT}/zones/{ZONE}/operations/([^/]+)/wait",
         "zoneOperations.wait"),
        ("GET", rf"/compute/v1/projects/{PROJECT}/zones/{ZONE}/operations/([^/]+)",
         "zoneOperations.get"),
        ("GET", rf"/compute/v1/projects/{PROJECT}/zones/{ZONE}/machineTypes/([^/]+)",
         "machineTypes.get"),
        ("GET", r"/compute/v1/(projects/[^/]+/global/images/[^/]+)", "images.get"),
        ("GET", r"/v3/tagKeys", "tagKeys.list"),
        ("GET", r"/v3/tagValues", "tagValues.list"),
    ]

    def api(self, method):
        url = urllib.parse.urlsplit(self.path)
        raw = self.read_body() or b""
        for m, pattern, action in self.ROUTES:
            mm = re.fullmatch(pattern, url.path)
            if m == method and mm:
                break
        else:
            with STATE.lock:
                STATE.refuse(f"no such API: {method} {url.path}")
            self.api_error(Fault(404, "notFound", f"{method} {url.path}: not found"))
            return
        key = (method, self.path, raw)
        with STATE.lock:
            fault = STATE.arrive(action, key)
        try:
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True, strict_parsing=False)
            if action not in ("oauth.token", "metadata.token"):
                self.check_token()
            args = (mm.groups(), query, raw)
        except Fault as f:
            self.api_error(f)
            return

        def apply():
            try:
                status, body = getattr(self, "do_" + action.replace(".", "_"))(*args, fault=fault)
            except Fault as f:
                if f.reason in ("invalid", "required", "unknown") or f.status == 404 and \
                        action not in ("instances.get", "instances.delete"):
                    with STATE.lock:
                        STATE.refuse(f"{action}: {f.message}")
                return (f.status, {}, error_json(f.status, f.reason, f.message, f.canonical),
                        "application/json; charset=UTF-8")
            return status, {}, json.dumps(body), "application/json; charset=UTF-8"
        # Faults the cloud answers through the operation (or its own
        # refusal) are done inside apply().
        self.serve_api(None if fault in CREATE_ONLY else fault, key, apply)

    def check_token(self):
        auth = self.headers.get("Authorization", "")
        m = re.fullmatch(r"Bearer (\S+)", auth)
        with STATE.lock:
            exp = STATE.tokens.get(m.group(1)) if m else None
            if exp is None:
                STATE.refuse("a request without an access token this fake issued")
                raise Fault(401, "authError", "Request had invalid authentication credentials.")
            if exp < time.time():
                STATE.expired_rejections += 1
                raise Fault(401, "authError", "Request had invalid authentication credentials. "
                            "Expected OAuth 2 access token.")

    # --- credentials --------------------------------------------------------------------

    def do_oauth_token(self, groups, query, raw, fault=None):
        def bad(why):
            with STATE.lock:
                STATE.refuse(f"token: {why}")
            return 400, {"error": "invalid_grant", "error_description": why}
        if self.headers.get("Content-Type", "").split(";")[0] != \
                "application/x-www-form-urlencoded":
            return bad("bad Content-Type")
        try:
            form = dict(urllib.parse.parse_qsl(raw.decode(), strict_parsing=True))
        except ValueError:
            return bad("bad form")
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or \
                set(form) != {"grant_type", "assertion"}:
            return bad("grant_type must be the JWT bearer grant, with an assertion")
        parts = form["assertion"].split(".")
        if len(parts) != 3:
            return bad("the assertion is not a JWS")
        try:
            hdr = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except ValueError:
            return bad("the assertion does not decode")
        if hdr.get("alg") != "RS256" or hdr.get("typ", "JWT") != "JWT" or \
                hdr.get("kid") != KEY_ID:
            return bad(f"bad JWT header {hdr}")
        try:
            KEY.public_key().verify(sig, (parts[0] + "." + parts[1]).encode(),
                                    padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return bad("Invalid JWT Signature.")
        now = time.time()
        want_aud = f"http://{self.headers.get('Host')}/token"
        iat, exp = claims.get("iat"), claims.get("exp")
        if claims.get("iss") != SA_EMAIL or claims.get("aud") != want_aud or \
                not isinstance(iat, int) or not isinstance(exp, int) or \
                abs(iat - now) > 300 or not 0 < exp - iat <= 3600:
            return bad(f"bad JWT claims {claims}")
        scopes = str(claims.get("scope", "")).split(" ")
        if SCOPE not in scopes and SCOPE_ALL not in scopes:
            return bad("the scope does not cover Compute Engine")
        with STATE.lock:
            tok = STATE.issue_token()
            STATE.jwt_grants += 1
        return 200, {"access_token": tok, "expires_in": STATE.cfg["token_ttl"],
                     "token_type": "Bearer"}

    def do_metadata_token(self, groups, query, raw, fault=None):
        if KEY_FILE is not None:
            with STATE.lock:
                STATE.refuse("metadata: a token asked for with a key file given")
            raise Fault(404, "notFound", "no service account on this instance")
        if self.headers.get("Metadata-Flavor") != "Google":
            with STATE.lock:
                STATE.refuse("metadata: no Metadata-Flavor: Google")
            raise Fault(403, "forbidden", "Missing Metadata-Flavor:Google header.")
        with STATE.lock:
            tok = STATE.issue_token()
            STATE.metadata_grants += 1
        return 200, {"access_token": tok, "expires_in": STATE.cfg["token_ttl"],
                     "token_type": "Bearer"}

    # --- Compute Engine -----------------------------------------------------------------------

    def do_instances_insert(self, groups, query, raw, fault=None):
        rid = query.get("requestId", [""])
        need(len(rid) == 1 and UUID_RE.fullmatch(rid[0]) is not None and
             rid[0] != "00000000-0000-0000-0000-000000000000",
             f"Invalid value for field 'requestId': '{rid}'")
        need(self.headers.get("Content-Type", "").split(";")[0] == "application/json",
             "Content-Type must be application/json")
        try:
            body = json.loads(raw)
        except ValueError:
            need(False, "Invalid JSON payload received.")
        v = check_insert(body)
        with STATE.lock:
            STATE.advance()
            prev = STATE.request_ids.get(rid[0])
            if prev is not None:
                return 200, STATE.op_json(STATE.ops[prev])
            STATE.inserts.append({k: body[k] for k in body if k != "metadata"})
            if fault == "quota":
                raise Fault(403, "QUOTA_EXCEEDED", "Quota 'CPUS' exceeded.")
            if v["name"] in STATE.instances:
                raise Fault(409, "alreadyExists",
                            f"The resource 'projects/{PROJECT}/zones/{ZONE}/instances/"
                            f"{v['name']}' already exists")
            if fault == "capacity":
                op = STATE.new_op("insert", v["name"], 0, (
                    "ZONE_RESOURCE_POOL_EXHAUSTED",
                    f"The zone 'projects/{PROJECT}/zones/{ZONE}' does not have enough resources "
                    "available to fulfill the request.", 503))
                STATE.request_ids[rid[0]] = op["name"]
                return 200, STATE.op_json(op)
            STATE.next_id += 1
            uid = STATE.next_id
            STATE.next_ip += 1
            ip = STATE.cfg["private_ip"] or f"10.128.{STATE.next_ip // 250}.{STATE.next_ip % 250 + 2}"
            inst = {"name": v["name"], "uid": uid, "status": "PROVISIONING",
                    "machine_type": v["machine_type"], "labels": v["labels"],
                    "metadata": v["items"], "user_data_raw": v["ud_raw"], "sandbox": v["sandbox"],
                    "disks": [v["name"]], "disk_gb": v["disk_gb"], "ip": ip,
                    "public": f"34.1.{STATE.next_ip // 250}.{STATE.next_ip % 250 + 2}"
                    if v["public"] else "", "network": v["network"],
                    "created_at": time.monotonic(), "ctype": v["ctype"]}
            STATE.instances[v["name"]] = inst
            STATE.disks[v["name"]] = {"size": v["disk_gb"], "auto_delete": v["auto_delete"]}
            STATE.created += 1
            STATE.sandboxes.setdefault(v["sandbox"], []).append(uid)
            err = None
            if fault == "create_error":
                err = ("INTERNAL_ERROR", "Internal error. Please try again.", 500)
                inst["status"] = "RUNNING"
            op = STATE.new_op("insert", v["name"], uid, err)
            STATE.request_ids[rid[0]] = op["name"]
            return 200, STATE.op_json(op)

    def do_instances_get(self, groups, query, raw, fault=None):
        with STATE.lock:
            STATE.advance()
            inst = STATE.instances.get(groups[0])
            if inst is None:
                raise Fault(404, "notFound", f"The resource 'projects/{PROJECT}/zones/{ZONE}/"
                            f"instances/{groups[0]}' was not found")
            return 200, instance_json(inst)

    def do_instances_delete(self, groups, query, raw, fault=None):
        rid = query.get("requestId")
        need(rid is None or (len(rid) == 1 and UUID_RE.fullmatch(rid[0]) is not None),
             f"Invalid value for field 'requestId': '{rid}'")
        with STATE.lock:
            STATE.advance()
            if rid and rid[0] in STATE.request_ids:
                return 200, STATE.op_json(STATE.ops[STATE.request_ids[rid[0]]])
            inst = STATE.instances.get(groups[0])
            if inst is None:
                raise Fault(404, "notFound", f"The resource 'projects/{PROJECT}/zones/{ZONE}/"
                            f"instances/{groups[0]}' was not found")
            inst["status"] = "STOPPING"
            op = STATE.new_op("delete", inst["name"], inst["uid"])
            if rid:
                STATE.request_ids[rid[0]] = op["name"]
            return 200, STATE.op_json(op)

    def do_instances_list(self, groups, query, raw, fault=None):
        for k in query:
            need(k in ("filter", "maxResults", "pageToken", "orderBy"), f"unknown parameter {k}")
        flt = query.get("filter", [""])[0]
        mr = query.get("maxResults", ["500"])[0]
        need(re.fullmatch(r"\d+", mr) is not None and 0 < int(mr) <= 500,
             "maxResults must be 1..500")
        m1 = re.fullmatch(r'labels\.([a-z][a-z0-9_-]*) = "([a-z0-9_-]*)"', flt)
        m2 = re.fullmatch(r"labels\.([a-z][a-z0-9_-]*):\*", flt)
        need(flt == "" or m1 or m2, f"Invalid list filter expression '{flt}'")
        with STATE.lock:
            STATE.advance()
            now = time.monotonic()
            lag = STATE.cfg["list_lag_s"]
            shown = [i for i in STATE.instances.values() if now - i["created_at"] >= lag]
            shown += [i for i, t in STATE.gone if now - t < lag]
            if m1:
                shown = [i for i in shown if i["labels"].get(m1.group(1)) == m1.group(2)]
            elif m2:
                shown = [i for i in shown if m2.group(1) in i["labels"]]
            shown.sort(key=lambda i: i["name"])
            start = 0
            if "pageToken" in query:
                tok = query["pageToken"][0]
                need(re.fullmatch(r"p\d+", tok) is not None, "Invalid page token")
                start = int(tok[1:])
            page = shown[start:start + int(mr)]
            out = {"kind": "compute#instanceList", "id": f"projects/{PROJECT}/zones/{ZONE}/"
                   "instances", "items": [instance_json(i) for i in page]}
            if start + int(mr) < len(shown):
                out["nextPageToken"] = f"p{start + int(mr)}"
            return 200, out

    def do_zoneOperations_get(self, groups, query, raw, fault=None):
        with STATE.lock:
            STATE.advance()
            op = STATE.ops.get(groups[0])
            if op is None:
                raise Fault(404, "notFound", f"operation {groups[0]} was not found")
            return 200, STATE.op_json(op)

    def do_zoneOperations_wait(self, groups, query, raw, fault=None):
        need(raw == b"", "wait takes no body")
        end = time.monotonic() + STATE.cfg["wait_hold_s"]
        while True:
            with STATE.lock:
                STATE.advance()
                op = STATE.ops.get(groups[0])
                if op is None:
                    raise Fault(404, "notFound", f"operation {groups[0]} was not found")
                if op["status"] == "DONE" or time.monotonic() >= end:
                    return 200, STATE.op_json(op)
                left = op["done_at"] - time.monotonic()
            time.sleep(min(max(left, 0.002), 0.05))

    def do_machineTypes_get(self, groups, query, raw, fault=None):
        t = CATALOG.get(groups[0])
        if t is None:
            raise Fault(404, "notFound", f"The resource 'projects/{PROJECT}/zones/{ZONE}/"
                        f"machineTypes/{groups[0]}' was not found")
        out = {"kind": "compute#machineType", "name": groups[0], "guestCpus": t[0],
               "memoryMb": t[1], "zone": ZONE, "isSharedCpu": False}
        if t[2]:
            out["accelerators"] = [{"guestAcceleratorType": "nvidia-h100-80gb",
                                    "guestAcceleratorCount": t[2]}]
        return 200, out

    def do_images_get(self, groups, query, raw, fault=None):
        size = IMAGES.get(groups[0])
        if size is None:
            raise Fault(404, "notFound", f"The resource '{groups[0]}' was not found")
        return 200, {"kind": "compute#image", "name": groups[0].rsplit("/", 1)[1],
                     "diskSizeGb": str(size), "status": "READY"}

    # --- Resource Manager ----------------------------------------------------------------------

    def do_tagKeys_list(self, groups, query, raw, fault=None):
        need(query.get("parent") == [f"projects/{PROJECT}"], f"bad parent {query.get('parent')}")
        return 200, {"tagKeys": [{"name": kid, "shortName": k, "parent": f"projects/{PROJECT}",
                                  "namespacedName": f"{PROJECT}/{k}"}
                                 for k, (kid, _) in TAGS.items()]}

    def do_tagValues_list(self, groups, query, raw, fault=None):
        parent = query.get("parent", [""])[0]
        for k, (kid, vals) in TAGS.items():
            if kid == parent:
                return 200, {"tagValues": [{"name": vid, "shortName": v, "parent": kid}
                                           for v, vid in vals.items()]}
        raise Fault(400, "invalid", f"bad parent {parent}")


def provider_env(url):
    """The GCP provider's settings against this fake, for the conformance
    suite (None: unset): a service-account key whose token_uri is this fake,
    so that access tokens expire and are refreshed; short backoffs; the rate
    limit above."""
    key = {"type": "service_account", "project_id": PROJECT, "private_key_id": KEY_ID,
           "private_key": KEY_PEM, "client_email": SA_EMAIL, "client_id": "1234567890",
           "token_uri": url + "/token"}
    env = {k: None for k in ("GCP_SUBNETWORK", "USE_PUBLIC_IP", "GCP_INSTANCE_TYPES",
                             "GCP_CA_BUNDLE")}
    if KEY_FILE is not None:
        with open(KEY_FILE, "w") as f:
            json.dump(key, f, indent=2)
    env.update({
        "GCP_CREDENTIALS": None if KEY_FILE else json.dumps(key),
        "GOOGLE_APPLICATION_CREDENTIALS": KEY_FILE,
        "GCP_PROJECT_ID": PROJECT, "GCP_ZONE": ZONE,
        "GCP_NETWORK": "default", "PODVM_IMAGE_NAME": "podvm-ci",
        "GCP_MACHINE_TYPE": "n2d-standard-2", "GCP_CONFIDENTIAL_TYPE": "SEV_SNP",
        "DISABLECVM": "false", "TAGS": "team=peer-pods,env=ci",
        "GCP_COMPUTE_ENDPOINT": url + "/compute/v1/",
        "GCP_RESOURCE_MANAGER_ENDPOINT": url + "/v3/",
        "GCE_METADATA_HOST": url[len("http://"):],
        "GCP_RETRY_BASE_DELAY": "5ms", "GCP_RETRY_MAX_DELAY": "40ms", "GCP_MAX_ATTEMPTS": "8",
        "GCP_API_ATTEMPT_TIMEOUT": "400ms", "GCP_API_TIMEOUT": "15s",
        "GCP_OPERATION_TIMEOUT": "10s", "GCP_POLL_INTERVAL": "20ms",
        "GCP_IP_WAIT_TIMEOUT": "5s",
        "GCP_API_RATE_LIMIT": str(RATE), "GCP_API_BURST": str(BURST)})
    return env


def main():
    global KEY_FILE
    if os.environ.get("FAKE_GCE_AUTH") != "keyfile":
        return fakelib.main(STATE, Handler, provider_env, RATE, BURST)
    d = tempfile.mkdtemp(prefix="fake-gce-")
    KEY_FILE = os.path.join(d, "key.json")
    try:
        return fakelib.main(STATE, Handler, provider_env, RATE, BURST)
    finally:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


if __name__ == "__main__":
    threading.stack_size(512 * 1024)
    sys.exit(main())
