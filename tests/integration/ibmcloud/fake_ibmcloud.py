#!/usr/bin/python3
"""A strict fake of the parts of IBM Cloud the ibmcloud provider talks to, on
127.0.0.1 (tests/conformance/README.md says what every fake provides).

IAM (POST /identity/token: the API key grant and the trusted profile grant
with a compute resource token), the VPC API (instances create/get/list/
delete and their network interfaces, instance profiles, images, volumes,
floating IPs, dedicated hosts and groups) and the Global Tagging API
(POST /v3/tags/attach).

Strict: every VPC call needs `version` (a date from 2019-01-01 to today)
and `generation=2`, and an access token this fake issued that has not
expired; the trusted profile grant needs the compute resource token that
is in the token file now (the fake rotates it at every grant and accepts
only the newest two, so a client must read the file at every refresh); an
instance prototype is checked field by field (required fields, known
subnet, security groups, keys, image and profile, the profile's and the
image's architecture, Secure Execution images only on Secure Execution
profiles and the other way round, the confidential compute mode and secure
boot the profile allows, the boot volume's user tags, the placement
target); instance names are unique in the VPC; an instance cannot be
deleted while it is pending or starting (409 instance_delete_conflict), and
its deletion takes a while (`delete_delay_s`); a floating IP bound to an
instance that is deleted stays behind (a leak the report shows).

Fault kinds beyond the common ones: failed (the instance goes to `failed`
with status reason cannot_start_capacity), quota (400 over_quota on
create), tag_error (the tag attachment answers is_error after the instance
exists).

The credentials the provider gets: a trusted profile and a token file, or
with FAKE_IBMCLOUD_AUTH=apikey an API key.

Run: fake_ibmcloud.py [--port-file F] [-- command args...]
"""
import datetime
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

REGION = "us-south"
ZONE = "us-south-1"
ACCOUNT = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
VPC = "r006-4727d842-f94f-4a2d-824a-9bc9b02c523b"
SUBNET = "0717-7931845c-65c4-4b0a-80cd-7d9c1a6d7930"
SUBNET2 = "0717-9a3b8c7d-1e2f-4a5b-9c8d-7e6f5a4b3c2d"
SGS = {"r006-5b2e1e4c-1a2b-4c3d-8e9f-0a1b2c3d4e5f", "r006-6c3f2f5d-2b3c-4d4e-9f0a-1b2c3d4e5f60",
       "r006-7d404060-3c4d-4e5f-a0b1-2c3d4e5f6071"}
KEYS = {"r006-82091c89-68e4-4b87-a1a8-0a1b2c3d4e5f"}
RESOURCE_GROUPS = {"f1e2d3c4b5a60718293a4b5c6d7e8f90"}
PROFILE_ID = "Profile-9fd84246-7df4-4667-94e4-8cecd5a2d5f3"
API_KEY = "fake-apikey-" + secrets.token_urlsafe(30)
RATE, BURST = 150, 30

# name: (vCPUs, GiB, architecture, GPUs, confidential compute modes, secure boot, SE)
PROFILES = {
    "bx2-2x8": (2, 8, "amd64", 0, ("disabled",), True, False),
    "bx2-4x16": (4, 16, "amd64", 0, ("disabled",), True, False),
    "cx2-2x4": (2, 4, "amd64", 0, ("disabled",), True, False),
    "bx3dc-2x10": (2, 10, "amd64", 0, ("disabled", "sgx", "tdx"), True, False),
    "bx3dc-4x20": (4, 20, "amd64", 0, ("disabled", "sgx", "tdx"), True, False),
    "cx3dc-2x5": (2, 5, "amd64", 0, ("disabled", "sgx", "tdx"), True, False),
    "cx3dc-8x20": (8, 20, "amd64", 0, ("disabled", "sgx", "tdx"), True, False),
    "gx3-16x80x1l4": (16, 80, "amd64", 1, ("disabled",), True, False),
    "bz2-2x8": (2, 8, "s390x", 0, (), False, False),
    "bz2e-2x8": (2, 8, "s390x", 0, (), False, True),
    "bz2e-4x16": (4, 16, "s390x", 0, (), False, True),
    "cz2e-2x4": (2, 4, "s390x", 0, (), False, True),
}
# id: (name, operating system, architecture, GiB)
IMAGES = {
    "r006-0f9b6a56-aaaa-4e1c-9d2a-1a2b3c4d5e6f": ("podvm-amd64", "ubuntu-24-04-amd64", "amd64", 10),
    "r006-1a0c7b67-bbbb-4f2d-8e3b-2b3c4d5e6f70": ("podvm-s390x", "ubuntu-24-04-s390x", "s390x", 10),
    "r006-2b1d8c78-cccc-4a3e-9f4c-3c4d5e6f7081": ("podvm-se-s390x", "hyper-protect-1-0-s390x",
                                                  "s390x", 10),
}
DEDICATED_HOSTS = {"0717-d1a2b3c4-0000-4000-8000-000000000001": ZONE,
                   "0727-d1a2b3c4-0000-4000-8000-000000000002": "us-south-2"}
DEDICATED_HOST_GROUPS = {"0717-e1a2b3c4-0000-4000-8000-000000000001": ZONE,
                         "0727-e1a2b3c4-0000-4000-8000-000000000002": "us-south-2"}
VOLUME_PROFILES = {"general-purpose", "5iops-tier", "10iops-tier", "custom"}

DEFAULTS = {
    "fault_kinds": {"throttle": 1, "internal": 1, "unavailable": 1, "drop": 1, "drop_after": 1,
                    "timeout": 1, "failed": 1, "quota": 1, "tag_error": 1},
    "ip_delay_s": 0.02,        # how long a new instance has no address (0.0.0.0)
    "start_delay_s": 0.05,     # pending/starting before running (no delete meanwhile)
    "delete_delay_s": 0.03,    # how long `deleting` lasts
    "list_limit_max": 100,
}
CREATE_ONLY = {"failed": "instances.create", "quota": "instances.create",
               "tag_error": "tags.attach"}
NAME_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
TAG_RE = re.compile(r"[A-Za-z0-9 _.:-]{1,128}")


class Fault(Exception):
    def __init__(self, status, code, message, refuse=False, target=None):
        super().__init__(message)
        self.status, self.code, self.message, self.refuse = status, code, message, refuse
        self.target = target


def error_json(status, code, message, target=None):
    e = {"code": code, "message": message,
         "more_info": f"https://cloud.ibm.com/docs/vpc?topic=vpc-rias-error-messages#{code}"}
    if target:
        e["target"] = target
    return json.dumps({"errors": [e], "trace": str(uuid.uuid4()), "status_code": status})


def bad(message, code="bad_field", target=None):
    """A request a correct client never sends."""
    return Fault(400, code, message, refuse=True, target=target)


def need(cond, message, code="bad_field"):
    if not cond:
        raise bad(message, code)


def only(obj, allowed, where):
    need(isinstance(obj, dict), f"{where}: not an object", "validation_failure")
    for k in obj:
        need(k in allowed, f"{where}: unknown field `{k}`", "invalid_request_field")


def ident(obj, where, known):
    only(obj, {"id"}, where)
    need(obj.get("id") in known, f"{where}.id: `{obj.get('id')}` not found")
    return obj["id"]


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class State(fakelib.FakeState):
    DEFAULTS = DEFAULTS

    def reset(self):
        super().reset()
        self.instances = {}     # id -> dict
        self.volumes = {}       # id -> dict
        self.fips = {}          # id -> dict
        self.tokens = {}        # access token -> expiry
        self.refresh_tokens = []
        self.sandboxes = {}     # sandbox -> [instance ids]
        self.created = 0
        self.next_ip = 2
        self.apikey_grants = 0
        self.profile_grants = 0
        self.cr_tokens = [secrets.token_urlsafe(48)]
        self.tags = {}          # crn -> [tag names]
        self.prototypes = []
        if CR_FILE:
            self.write_cr()

    def write_cr(self):
        tmp = CR_FILE + ".tmp"
        with open(tmp, "w") as f:
            f.write(self.cr_tokens[-1] + "\n")
        os.rename(tmp, CR_FILE)

    def rotate_cr(self):
        self.cr_tokens = self.cr_tokens[-1:] + [secrets.token_urlsafe(48)]
        self.write_cr()

    def fault_applies(self, kind, action):
        return CREATE_ONLY.get(kind, action) == action

    def expire_all(self):
        t = time.time()
        for k in self.tokens:
            self.tokens[k] = min(self.tokens[k], t - 1)
        self.cr_tokens = self.cr_tokens[-1:]

    def missing_id(self):
        return "0717_" + str(uuid.uuid4())

    def user_data(self, sb):
        found = [i for i in self.instances.values()
                 if i["sandbox"] == sb and i["status"] != "deleting"]
        return found[-1]["user_data"].encode() if found else None

    def issue_token(self):
        tok = "eyJraWQiOiJmYWtlIn0." + secrets.token_urlsafe(60)
        self.tokens[tok] = time.time() + self.cfg["token_ttl"]
        self.tokens_issued += 1
        rt = secrets.token_urlsafe(40)
        self.refresh_tokens.append(rt)
        return tok, rt

    # --- time moves on -------------------------------------------------------------------

    def advance(self):
        now = time.monotonic()
        for i in list(self.instances.values()):
            age = now - i["created_at"]
            if i["status"] == "deleting":
                if now >= i["deleted_at"] + self.cfg["delete_delay_s"]:
                    self.remove(i)
                continue
            if age >= self.cfg["ip_delay_s"] and i["status"] in ("pending", "starting"):
                for n in i["nics"]:
                    if n["address"] == "0.0.0.0":
                        self.next_ip += 1
                        n["address"] = self.cfg["private_ip"] or \
                            f"10.240.{self.next_ip // 250}.{self.next_ip % 250 + 4}"
            if i["fail"] and age >= self.cfg["ip_delay_s"] and i["status"] != "failed":
                i["status"] = "failed"
                i["status_reasons"] = [{
                    "code": "cannot_start_capacity",
                    "message": "The instance cannot start because there is not enough capacity "
                               f"for profile {i['profile']} in zone {ZONE}.",
                    "more_info": "https://cloud.ibm.com/docs/vpc?topic=vpc-instance-status-messages"}]
            elif not i["fail"] and i["status"] == "pending" and age >= self.cfg["ip_delay_s"]:
                i["status"] = "starting"
            elif not i["fail"] and i["status"] == "starting" and age >= self.cfg["start_delay_s"]:
                i["status"] = "running"

    def remove(self, i):
        del self.instances[i["id"]]
        vol = self.volumes.get(i["volume"])
        if vol is not None and vol["delete_with_instance"]:
            del self.volumes[i["volume"]]
        for f in self.fips.values():
            if f["target"] in [n["id"] for n in i["nics"]]:
                f["target"] = None  # unbound, and still reserved: a leak

    def report(self):
        rep = super().report()
        self.advance()
        dup = {s: ids for s, ids in self.sandboxes.items() if len(set(ids)) > 1}
        rep.update({
            "created": self.created,
            "alive_resources": {"vms": len(self.instances), "volumes": len(self.volumes),
                                "floating_ips": len(self.fips)},
            "alive": [{"id": i["id"], "name": i["name"], "status": i["status"],
                       "sandbox": i["sandbox"]} for i in self.instances.values()],
            "duplicates": dup,
            "secrets": list(self.tokens) + self.refresh_tokens + self.cr_tokens + [API_KEY],
            "apikey_grants": self.apikey_grants,
            "profile_grants": self.profile_grants,
            "prototypes": self.prototypes[-10:],
            "tags": {self.instances[k]["name"]: v for k, v in
                     ((i["id"], self.tags.get(i["crn"], [])) for i in self.instances.values())},
        })
        return rep


CR_FILE = None
STATE = None


def crn(kind, rid):
    return f"crn:v1:bluemix:public:is:{ZONE}:a/{ACCOUNT}::{kind}:{rid}"


def instance_json(i):
    def nic(n):
        return {"id": n["id"], "name": n["name"], "resource_type": "network_interface",
                "href": f"https://{REGION}.iaas.cloud.ibm.com/v1/instances/{i['id']}/"
                        f"network_interfaces/{n['id']}",
                "primary_ip": {"address": n["address"], "resource_type": "subnet_reserved_ip"},
                "subnet": {"id": n["subnet"]}}
    p = PROFILES[i["profile"]]
    out = {"id": i["id"], "crn": i["crn"], "name": i["name"], "status": i["status"],
           "status_reasons": i["status_reasons"], "created_at": i["created_iso"],
           "profile": {"name": i["profile"]}, "image": {"id": i["image"]},
           "zone": {"name": ZONE}, "vpc": {"id": VPC},
           "resource_group": {"id": i["rg"] or next(iter(RESOURCE_GROUPS))},
           "vcpu": {"architecture": p[2], "count": p[0]}, "memory": p[1],
           "primary_network_interface": nic(i["nics"][0]),
           "network_interfaces": [nic(n) for n in i["nics"]],
           "boot_volume_attachment": {"id": "0717-" + i["id"][5:13] + "-attach",
                                      "volume": {"id": i["volume"], "crn": crn("volume",
                                                                                 i["volume"])}},
           "enable_secure_boot": i["secure_boot"], "resource_type": "instance"}
    if p[2] == "amd64":
        out["confidential_compute_mode"] = i["ccm"]
    return out


def profile_json(name):
    p = PROFILES[name]
    out = {"name": name, "family": "balanced", "resource_type": "instance_profile",
           "vcpu_count": {"type": "fixed", "value": p[0]},
           "memory": {"type": "fixed", "value": p[1]},
           "vcpu_architecture": {"type": "fixed", "value": p[2]},
           "secure_boot_modes": {"type": "enum", "default": False,
                                 "values": [False, True] if p[5] else [False]}}
    if p[3]:
        out["gpu_count"] = {"type": "fixed", "value": p[3]}
    if p[2] == "amd64":
        out["confidential_compute_modes"] = {"type": "enum", "default": "disabled",
                                             "values": list(p[4])}
    else:
        # IBM's known issue: s390x profiles leave out `values`.
        out["confidential_compute_modes"] = {"type": "enum", "default": "disabled"}
    return out


def check_prototype(b):
    only(b, {"name", "image", "user_data", "profile", "zone", "keys", "vpc",
             "primary_network_interface", "network_interfaces", "metadata_service",
             "confidential_compute_mode", "enable_secure_boot", "resource_group",
             "placement_target", "boot_volume_attachment"}, "instance_prototype")
    for f in ("name", "image", "profile", "zone", "vpc", "primary_network_interface"):
        need(f in b, f"missing required field `{f}`", "missing_field")
    name = b["name"]
    need(isinstance(name, str) and NAME_RE.fullmatch(name) is not None,
         f"name `{name}`: must match ^([a-z]|[a-z][-a-z0-9]*[a-z0-9])$, at most 63",
         "validation_invalid_name")
    only(b["profile"], {"name"}, "profile")
    prof = b["profile"].get("name")
    need(prof in PROFILES, f"profile `{prof}` not found", "not_found")
    p = PROFILES[prof]
    image = ident(b["image"], "image", IMAGES)
    img = IMAGES[image]
    if img[2] != p[2]:
        raise Fault(400, "bad_field", f"image architecture `{img[2]}` does not match the "
                    f"profile architecture `{p[2]}`", refuse=True)
    se_image = img[1].startswith("hyper-protect")
    if se_image != p[6]:
        raise Fault(400, "bad_field", "Secure Execution images run only on Secure Execution "
                    "profiles, and those run only them" if se_image else
                    f"profile `{prof}` runs only Secure Execution images", refuse=True)
    only(b["zone"], {"name"}, "zone")
    need(b["zone"].get("name") == ZONE, f"zone `{b['zone'].get('name')}` not found")
    ident(b["vpc"], "vpc", {VPC})
    ud = b.get("user_data", "")
    need(isinstance(ud, str) and len(ud.encode()) <= 65535, "user_data: a string of at most "
         "64 KiB", "validation_failure")
    keys = b.get("keys", [])
    need(isinstance(keys, list), "keys: not a list", "validation_failure")
    for k in keys:
        ident(k, "keys[]", KEYS)
    nics = []
    pni = b["primary_network_interface"]
    only(pni, {"subnet", "security_groups", "name", "allow_ip_spoofing"}, "primary_network_interface")
    need("subnet" in pni, "primary_network_interface.subnet is required", "missing_field")
    nics.append((ident(pni["subnet"], "primary_network_interface.subnet", {SUBNET}),
                 pni.get("security_groups", [])))
    sec = b.get("network_interfaces", [])
    need(isinstance(sec, list) and len(sec) <= 4, "network_interfaces: a list of at most 4",
         "validation_failure")
    for n in sec:
        only(n, {"subnet", "security_groups", "name", "allow_ip_spoofing"}, "network_interfaces[]")
        need("subnet" in n, "network_interfaces[].subnet is required", "missing_field")
        need(isinstance(n.get("allow_ip_spoofing", False), bool), "allow_ip_spoofing: a boolean")
        nics.append((ident(n["subnet"], "network_interfaces[].subnet", {SUBNET2}),
                     n.get("security_groups", [])))
    for _, sgs in nics:
        need(isinstance(sgs, list) and len(sgs) <= 5, "security_groups: a list of at most 5",
             "validation_failure")
        for sg in sgs:
            ident(sg, "security_groups[]", SGS)
    md = b.get("metadata_service", {"enabled": False})
    only(md, {"enabled", "protocol", "response_hop_limit"}, "metadata_service")
    need(isinstance(md.get("enabled"), bool) and md.get("protocol", "http") in ("http", "https"),
         "metadata_service: enabled (boolean) and protocol http or https", "validation_enum")
    ccm = b.get("confidential_compute_mode")
    if ccm is not None:
        need(ccm in ("disabled", "sgx", "tdx"), f"confidential_compute_mode `{ccm}`",
             "validation_enum")
        if p[2] != "amd64":
            need(ccm == "disabled", f"profile `{prof}` has no confidential compute mode `{ccm}`")
        else:
            need(ccm in p[4], f"profile `{prof}` does not support confidential compute mode "
                 f"`{ccm}`")
    sb = b.get("enable_secure_boot", False)
    need(isinstance(sb, bool), "enable_secure_boot: a boolean", "validation_failure")
    need(not sb or p[5], f"profile `{prof}` does not support secure boot")
    rg = None
    if "resource_group" in b:
        rg = ident(b["resource_group"], "resource_group", RESOURCE_GROUPS)
    if "placement_target" in b:
        pt = b["placement_target"]
        only(pt, {"id"}, "placement_target")
        zone = DEDICATED_HOSTS.get(pt.get("id")) or DEDICATED_HOST_GROUPS.get(pt.get("id"))
        need(zone is not None, f"placement_target `{pt.get('id')}` not found")
        need(zone == ZONE, f"placement_target `{pt['id']}` is in zone `{zone}`, not `{ZONE}`")
    bva = b.get("boot_volume_attachment", {"volume": {"profile": {"name": "general-purpose"}}})
    only(bva, {"delete_volume_on_instance_delete", "volume", "name"}, "boot_volume_attachment")
    vol = bva.get("volume")
    only(vol, {"profile", "user_tags", "name", "capacity", "encryption_key"},
         "boot_volume_attachment.volume")
    need("profile" in vol, "boot_volume_attachment.volume.profile is required", "missing_field")
    only(vol["profile"], {"name"}, "boot_volume_attachment.volume.profile")
    need(vol["profile"].get("name") in VOLUME_PROFILES, "volume profile not found")
    tags = vol.get("user_tags", [])
    need(isinstance(tags, list) and len(tags) <= 100, "user_tags: a list", "validation_failure")
    for t in tags:
        need(isinstance(t, str) and TAG_RE.fullmatch(t) is not None,
             f"user tag `{t}`: at most 128 of A-Z, a-z, 0-9, space, _ . : -")
    sandbox = next((t[len("peerpod-sandbox:"):] for t in tags
                    if t.startswith("peerpod-sandbox:")), "")
    return {"name": name, "profile": prof, "image": image, "user_data": ud, "rg": rg,
            "nics": nics, "ccm": ccm or "disabled", "secure_boot": sb, "tags": tags,
            "sandbox": sandbox, "delete_volume": bva.get("delete_volume_on_instance_delete", True)}


class Handler(fakelib.ControlHandler):
    server_version = "FakeIBMCloud/1.0"

    def fault_answer(self, kind):
        j = "application/json"
        if kind == "throttle":
            return 429, {}, error_json(429, "rate_limit_exceeded",
                                       "Too many requests within a short time."), j
        if kind == "throttle_retry_after":
            return (429, {"Retry-After": str(STATE.cfg["retry_after_s"])},
                    error_json(429, "rate_limit_exceeded", "Too many requests within a short "
                               "time."), j)
        if kind == "unavailable":
            return 503, {}, error_json(503, "backend_service_unavailable",
                                       "The back-end service is unavailable."), j
        if kind == "reject":
            return 403, {}, error_json(403, "not_authorized", "The request is not authorized "
                                       "to perform this action."), j
        return 500, {}, error_json(500, "internal_error", "An internal error occurred."), j

    def api_error(self, f):
        if f.refuse:
            with STATE.lock:
                STATE.refuse(f"{self.command} {urllib.parse.urlsplit(self.path).path}: "
                             f"{f.message}")
        self.reply(f.status, error_json(f.status, f.code, f.message, f.target),
                   "application/json")

    def do_GET(self):
        if not self.control():
            self.api("GET")

    def do_POST(self):
        if not self.control():
            self.api("POST")

    def do_DELETE(self):
        self.api("DELETE")

    ROUTES = [
        ("POST", r"/identity/token", "iam.token"),
        ("POST", r"/v1/instances", "instances.create"),
        ("GET", r"/v1/instances", "instances.list"),
        ("GET", r"/v1/instances/([^/]+)", "instances.get"),
        ("DELETE", r"/v1/instances/([^/]+)", "instances.delete"),
        ("GET", r"/v1/instances/([^/]+)/network_interfaces", "network_interfaces.list"),
        ("GET", r"/v1/instance/profiles/([^/]+)", "profiles.get"),
        ("GET", r"/v1/images/([^/]+)", "images.get"),
        ("GET", r"/v1/volumes/([^/]+)", "volumes.get"),
        ("POST", r"/v1/floating_ips", "floating_ips.create"),
        ("DELETE", r"/v1/floating_ips/([^/]+)", "floating_ips.delete"),
        ("GET", r"/v1/dedicated_hosts/([^/]+)", "dedicated_hosts.get"),
        ("GET", r"/v1/dedicated_host/groups/([^/]+)", "dedicated_host_groups.get"),
        ("POST", r"/v3/tags/attach", "tags.attach"),
    ]

    def api(self, method):
        url = urllib.parse.urlsplit(self.path)
        raw = self.read_body() or b""
        for m, pattern, action in self.ROUTES:
            mm = re.fullmatch(pattern, url.path)
            if m == method and mm:
                break
        else:
            self.api_error(Fault(404, "invalid_route", f"{method} {url.path}: no such route",
                                 refuse=True))
            return
        key = (method, self.path, raw)
        with STATE.lock:
            fault = STATE.arrive(action, key)
        try:
            query = urllib.parse.parse_qs(url.query, keep_blank_values=True, strict_parsing=False)
            if action.startswith("tags."):
                self.check_token()
            elif action != "iam.token":
                self.check_version(query)
                self.check_token()
        except Fault as f:
            self.api_error(f)
            return
        args = (mm.groups(), query, raw)

        def apply():
            try:
                status, body = getattr(self, "do_" + action.replace(".", "_"))(*args, fault=fault)
            except Fault as f:
                if f.refuse:
                    with STATE.lock:
                        STATE.refuse(f"{action}: {f.message}")
                return f.status, {}, error_json(f.status, f.code, f.message, f.target), \
                    "application/json"
            if status == 204:
                return 204, {}, "", "application/json"
            return status, {}, json.dumps(body), "application/json"
        self.serve_api(None if fault in CREATE_ONLY else fault, key, apply)

    def check_version(self, query):
        v = query.get("version", [])
        if len(v) != 1:
            raise bad("The `version` parameter is required", "invalid_version")
        try:
            d = datetime.date.fromisoformat(v[0])
        except ValueError:
            raise bad(f"version `{v[0]}` is not of the form YYYY-MM-DD", "invalid_version")
        if not datetime.date(2019, 1, 1) <= d <= datetime.date.today():
            raise bad(f"version `{v[0]}` is before 2019-01-01 or in the future",
                      "invalid_version_range")
        if query.get("generation") != ["2"]:
            raise bad("The generation query parameter must be 2", "invalid_generation_parameter")

    def check_token(self):
        auth = self.headers.get("Authorization", "")
        m = re.fullmatch(r"Bearer (\S+)", auth)
        with STATE.lock:
            exp = STATE.tokens.get(m.group(1)) if m else None
            if exp is None:
                raise Fault(401, "not_authorized", "The request is not authorized: the token is "
                            "missing or invalid", refuse=True)
            if exp < time.time():
                STATE.expired_rejections += 1
                raise Fault(401, "not_authorized", "The request is not authorized: the token "
                            "has expired")

    def read_json(self, raw):
        need(self.headers.get("Content-Type", "").split(";")[0] == "application/json",
             "Content-Type must be application/json", "validation_failure")
        try:
            return json.loads(raw)
        except ValueError:
            raise bad("The JSON provided did not match the expected structure",
                      "validation_failure")

    # --- IAM ---------------------------------------------------------------------------------

    def do_iam_token(self, groups, query, raw, fault=None):
        def iam_error(status, code, message, refuse=True):
            if refuse:
                with STATE.lock:
                    STATE.refuse(f"iam: {message}")
            return status, {"errorCode": code, "errorMessage": message,
                            "context": {"requestId": str(uuid.uuid4())}}
        if self.headers.get("Content-Type", "").split(";")[0] != \
                "application/x-www-form-urlencoded":
            return iam_error(400, "BXNIM0109E", "Property missing or empty: Content-Type")
        if self.headers.get("Accept", "") != "application/json":
            return iam_error(400, "BXNIM0109E", "Accept must be application/json")
        try:
            form = dict(urllib.parse.parse_qsl(raw.decode(), strict_parsing=True))
        except ValueError:
            return iam_error(400, "BXNIM0109E", "bad form")
        gt = form.get("grant_type")
        with STATE.lock:
            if gt == "urn:ibm:params:oauth:grant-type:apikey":
                if set(form) != {"grant_type", "apikey"}:
                    return iam_error(400, "BXNIM0109E", f"unexpected properties {sorted(form)}")
                if form["apikey"] != API_KEY:
                    return iam_error(400, "BXNIM0415E", "Provided API key could not be found.")
                STATE.apikey_grants += 1
            elif gt == "urn:ibm:params:oauth:grant-type:cr-token":
                if set(form) != {"grant_type", "cr_token", "profile_id"}:
                    return iam_error(400, "BXNIM0109E", f"unexpected properties {sorted(form)}")
                if form["profile_id"] != PROFILE_ID:
                    return iam_error(400, "BXNIM0468E", "Profile not found.")
                if form["cr_token"] not in STATE.cr_tokens:
                    # A token the file no longer holds: the client kept an old one.
                    return iam_error(400, "BXNIM0465E", "Compute resource token is not valid "
                                     "(stale: not what the token file holds)")
                STATE.profile_grants += 1
                STATE.rotate_cr()
            else:
                return iam_error(400, "BXNIM0109E", f"grant_type `{gt}` is not supported")
            tok, rt = STATE.issue_token()
            ttl = STATE.cfg["token_ttl"]
        return 200, {"access_token": tok, "refresh_token": rt, "token_type": "Bearer",
                     "expires_in": ttl, "expiration": int(time.time()) + ttl,
                     "scope": "ibm openid"}

    # --- VPC ---------------------------------------------------------------------------------

    def do_instances_create(self, groups, query, raw, fault=None):
        b = self.read_json(raw)
        v = check_prototype(b)
        with STATE.lock:
            STATE.advance()
            STATE.prototypes.append({k: b[k] for k in b if k != "user_data"})
            if fault == "quota":
                raise Fault(400, "over_quota", "The request would exceed the quota for "
                            "instances: the account has reached its vCPU quota in the region.")
            if any(i["name"] == v["name"] for i in STATE.instances.values()):
                raise Fault(400, "validation_unique_failed",
                            f"Provided Name ({v['name']}) is not unique",
                            target={"name": "name", "type": "field", "value": v["name"]})
            iid = "0717_" + str(uuid.uuid4())
            vid = "r006-" + str(uuid.uuid4())
            STATE.volumes[vid] = {"id": vid, "name": f"{v['name']}-boot-{vid[5:13]}",
                                  "user_tags": [t.lower() for t in v["tags"]],
                                  "delete_with_instance": v["delete_volume"],
                                  "profile": b["boot_volume_attachment"]["volume"]["profile"]
                                  ["name"] if "boot_volume_attachment" in b else
                                  "general-purpose"}
            inst = {"id": iid, "crn": crn("instance", iid), "name": v["name"],
                    "status": "pending", "status_reasons": [], "created_at": time.monotonic(),
                    "created_iso": now_iso(), "profile": v["profile"], "image": v["image"],
                    "rg": v["rg"], "user_data": v["user_data"], "sandbox": v["sandbox"],
                    "volume": vid, "ccm": v["ccm"], "secure_boot": v["secure_boot"],
                    "fail": fault == "failed",
                    "nics": [{"id": "0717-" + str(uuid.uuid4()), "name": f"eth{k}",
                              "subnet": s, "address": "0.0.0.0"}
                             for k, (s, _) in enumerate(v["nics"])]}
            STATE.instances[iid] = inst
            STATE.created += 1
            STATE.sandboxes.setdefault(v["sandbox"], []).append(iid)
            return 201, instance_json(inst)

    def instance(self, iid):
        STATE.advance()
        inst = STATE.instances.get(iid)
        if inst is None:
            raise Fault(404, "not_found", f"Instance not found: {iid}")
        return inst

    def do_instances_get(self, groups, query, raw, fault=None):
        with STATE.lock:
            return 200, instance_json(self.instance(groups[0]))

    def do_instances_delete(self, groups, query, raw, fault=None):
        with STATE.lock:
            inst = self.instance(groups[0])
            if inst["status"] in ("pending", "starting", "deleting"):
                raise Fault(409, "instance_delete_conflict", "The instance cannot be deleted in "
                            f"the current status: {inst['status']}")
            inst["status"] = "deleting"
            inst["deleted_at"] = time.monotonic()
            return 204, None

    def do_instances_list(self, groups, query, raw, fault=None):
        for k in query:
            need(k in ("version", "generation", "limit", "start", "name", "vpc.id",
                       "resource_group.id"), f"unknown parameter `{k}`", "invalid_request_field")
        limit = query.get("limit", ["50"])[0]
        need(re.fullmatch(r"\d+", limit) is not None and
             1 <= int(limit) <= STATE.cfg["list_limit_max"], "limit: 1 to 100")
        with STATE.lock:
            STATE.advance()
            shown = sorted(STATE.instances.values(), key=lambda i: i["id"])
            if "name" in query:
                shown = [i for i in shown if i["name"] == query["name"][0]]
            if "vpc.id" in query:
                need(query["vpc.id"][0] == VPC, "vpc.id: not found")
            if "resource_group.id" in query:
                shown = [i for i in shown if (i["rg"] or next(iter(RESOURCE_GROUPS))) ==
                         query["resource_group.id"][0]]
            start = 0
            if "start" in query:
                tok = query["start"][0]
                need(re.fullmatch(r"s\d+", tok) is not None, "start: bad page token",
                     "invalid_id_format")
                start = int(tok[1:])
            n = int(limit)
            page = shown[start:start + n]
            base = f"https://{REGION}.iaas.cloud.ibm.com/v1/instances?limit={n}"
            out = {"instances": [instance_json(i) for i in page], "limit": n,
                   "total_count": len(shown), "first": {"href": base}}
            if start + n < len(shown):
                out["next"] = {"href": f"{base}&start=s{start + n}"}
            return 200, out

    def do_network_interfaces_list(self, groups, query, raw, fault=None):
        with STATE.lock:
            inst = self.instance(groups[0])
            out = []
            for n in inst["nics"]:
                fips = [{"id": f["id"], "address": f["address"], "name": f["name"],
                         "crn": crn("floating-ip", f["id"])}
                        for f in STATE.fips.values() if f["target"] == n["id"]]
                out.append({"id": n["id"], "name": n["name"], "subnet": {"id": n["subnet"]},
                            "primary_ip": {"address": n["address"]}, "floating_ips": fips,
                            "resource_type": "network_interface"})
            return 200, {"network_interfaces": out}

    def do_profiles_get(self, groups, query, raw, fault=None):
        if groups[0] not in PROFILES:
            raise Fault(404, "not_found", f"Instance profile not found: {groups[0]}")
        return 200, profile_json(groups[0])

    def do_images_get(self, groups, query, raw, fault=None):
        img = IMAGES.get(groups[0])
        if img is None:
            raise Fault(404, "not_found", f"Image not found: {groups[0]}")
        return 200, {"id": groups[0], "crn": crn("image", groups[0]), "name": img[0],
                     "status": "available", "visibility": "private",
                     "minimum_provisioned_size": img[3],
                     "operating_system": {"name": img[1], "architecture": img[2],
                                          "family": "Hyper Protect" if
                                          img[1].startswith("hyper-protect") else "Ubuntu Linux"}}

    def do_volumes_get(self, groups, query, raw, fault=None):
        with STATE.lock:
            STATE.advance()
            vol = STATE.volumes.get(groups[0])
            if vol is None:
                raise Fault(404, "not_found", f"Volume not found: {groups[0]}")
            return 200, {"id": vol["id"], "name": vol["name"], "crn": crn("volume", vol["id"]),
                         "status": "available", "user_tags": vol["user_tags"],
                         "profile": {"name": vol["profile"]}, "capacity": 100}

    def do_floating_ips_create(self, groups, query, raw, fault=None):
        b = self.read_json(raw)
        only(b, {"name", "target", "resource_group", "zone"}, "floating_ip_prototype")
        need("target" in b, "target is required", "missing_field")
        only(b["target"], {"id"}, "target")
        name = b.get("name")
        need(name is None or (isinstance(name, str) and NAME_RE.fullmatch(name) is not None),
             f"name `{name}`", "validation_invalid_name")
        if "resource_group" in b:
            ident(b["resource_group"], "resource_group", RESOURCE_GROUPS)
        with STATE.lock:
            STATE.advance()
            nic = None
            for i in STATE.instances.values():
                for n in i["nics"]:
                    if n["id"] == b["target"]["id"] and i["status"] != "deleting":
                        nic = n
            if nic is None:
                raise Fault(404, "not_found", f"network interface `{b['target']['id']}` not "
                            "found")
            if name is not None and any(f["name"] == name for f in STATE.fips.values()):
                raise Fault(400, "validation_unique_failed", f"Provided Name ({name}) is not "
                            "unique", target={"name": "name", "type": "field", "value": name})
            if any(f["target"] == nic["id"] for f in STATE.fips.values()):
                raise Fault(409, "target_in_use", "The target already has a floating IP "
                            "attached.")
            fid = "r006-" + str(uuid.uuid4())
            STATE.next_ip += 1
            f = {"id": fid, "name": name or f"fip-{fid[5:13]}", "target": nic["id"],
                 "address": f"169.63.{STATE.next_ip // 250}.{STATE.next_ip % 250 + 2}"}
            STATE.fips[fid] = f
            return 201, {"id": fid, "name": f["name"], "address": f["address"],
                         "crn": crn("floating-ip", fid), "status": "available",
                         "target": {"id": nic["id"], "resource_type": "network_interface"},
                         "zone": {"name": ZONE}}

    def do_floating_ips_delete(self, groups, query, raw, fault=None):
        with STATE.lock:
            if STATE.fips.pop(groups[0], None) is None:
                raise Fault(404, "not_found", f"Floating IP not found: {groups[0]}")
            return 204, None

    def do_dedicated_hosts_get(self, groups, query, raw, fault=None):
        zone = DEDICATED_HOSTS.get(groups[0])
        if zone is None:
            raise Fault(404, "not_found", f"Dedicated host not found: {groups[0]}")
        return 200, {"id": groups[0], "zone": {"name": zone}, "state": "available"}

    def do_dedicated_host_groups_get(self, groups, query, raw, fault=None):
        zone = DEDICATED_HOST_GROUPS.get(groups[0])
        if zone is None:
            raise Fault(404, "not_found", f"Dedicated host group not found: {groups[0]}")
        return 200, {"id": groups[0], "zone": {"name": zone}}

    # --- Global Tagging ----------------------------------------------------------------------

    def do_tags_attach(self, groups, query, raw, fault=None):
        need(query.get("tag_type", ["user"]) == ["user"], "tag_type must be user")
        b = self.read_json(raw)
        only(b, {"resources", "tag_names", "tag_name"}, "attach")
        res = b.get("resources")
        need(isinstance(res, list) and len(res) == 1, "resources: one resource")
        only(res[0], {"resource_id", "resource_type"}, "resources[]")
        names = b.get("tag_names", [])
        need(isinstance(names, list) and 1 <= len(names) <= 100, "tag_names: 1 to 100 names")
        for t in names:
            need(isinstance(t, str) and TAG_RE.fullmatch(t) is not None, f"tag `{t}`")
        rid = res[0].get("resource_id")
        with STATE.lock:
            STATE.advance()
            known = [i for i in STATE.instances.values() if i["crn"] == rid]
            if not known or fault == "tag_error":
                why = "the resource is not found" if not known else "internal error"
                return 200, {"results": [{"resource_id": rid, "is_error": True,
                                          "message": f"Tagging failed: {why}"}]}
            cur = STATE.tags.setdefault(rid, [])
            for t in names:
                if t.lower() not in cur:
                    cur.append(t.lower())
            return 200, {"results": [{"resource_id": rid, "is_error": False}]}


def provider_env(url):
    """The ibmcloud provider's settings against this fake (None: unset):
    a trusted profile with a compute resource token file (or, with
    FAKE_IBMCLOUD_AUTH=apikey, an API key), short backoffs and polls, the
    rate limit above."""
    env = {k: None for k in ("IBMCLOUD_PODVM_INSTANCE_PROFILE_LIST", "IBMCLOUD_SSH_KEY_ID",
                             "IBMCLOUD_DEDICATED_HOST_IDS", "IBMCLOUD_DEDICATED_HOST_GROUP_IDS",
                             "IBMCLOUD_CA_BUNDLE", "USE_PUBLIC_IP")}
    apikey = os.environ.get("FAKE_IBMCLOUD_AUTH") == "apikey"
    env.update({
        "IBMCLOUD_API_KEY": API_KEY if apikey else None,
        "IBMCLOUD_IAM_PROFILE_ID": None if apikey else PROFILE_ID,
        "IBMCLOUD_CR_TOKEN_FILENAME": None if apikey else CR_FILE,
        "IBMCLOUD_IAM_ENDPOINT": url + "/identity/token",
        "IBMCLOUD_VPC_ENDPOINT": url + "/v1",
        "IBMCLOUD_TAGGING_ENDPOINT": url,
        "IBMCLOUD_RESOURCE_GROUP_ID": next(iter(RESOURCE_GROUPS)),
        "IBMCLOUD_ZONE": ZONE, "IBMCLOUD_VPC_ID": VPC, "IBMCLOUD_VPC_SUBNET_ID": SUBNET,
        "IBMCLOUD_SECURITY_GROUP_IDS": ",".join(sorted(SGS)[:2]),
        "IBMCLOUD_VPC_SECONDARY_SUBNET_ID": SUBNET2,
        "IBMCLOUD_SECONDARY_SECURITY_GROUP_ID": sorted(SGS)[2],
        "IBMCLOUD_PODVM_IMAGE_ID": ",".join(IMAGES),
        "IBMCLOUD_PODVM_INSTANCE_PROFILE_NAME": "bx3dc-2x10",
        "IBMCLOUD_CLUSTER_ID": "cq0fake0cluster0id0ci",
        "DISABLECVM": "false", "TAGS": "team:peer-pods,env:ci",
        "IBMCLOUD_RETRY_BASE_DELAY": "5ms", "IBMCLOUD_RETRY_MAX_DELAY": "40ms",
        "IBMCLOUD_MAX_ATTEMPTS": "8", "IBMCLOUD_API_ATTEMPT_TIMEOUT": "400ms",
        "IBMCLOUD_API_TIMEOUT": "15s", "IBMCLOUD_POLL_INTERVAL": "20ms",
        "IBMCLOUD_CREATE_TIMEOUT": "10s", "IBMCLOUD_DELETE_TIMEOUT": "10s",
        "IBMCLOUD_API_RATE_LIMIT": str(RATE), "IBMCLOUD_API_BURST": str(BURST)})
    return env


def main():
    global CR_FILE, STATE
    d = tempfile.mkdtemp(prefix="fake-ibmcloud-")
    CR_FILE = os.path.join(d, "vault-token")
    STATE = State()
    Handler.STATE = STATE
    try:
        return fakelib.main(STATE, Handler, provider_env, RATE, BURST)
    finally:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


if __name__ == "__main__":
    threading.stack_size(512 * 1024)
    sys.exit(main())
