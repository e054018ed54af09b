#!/usr/bin/python3
"""A strict fake of the parts of Azure the Azure provider talks to, on
127.0.0.1.

Azure AD (Microsoft Entra ID) v2.0 token endpoint,
POST /{tenant}/oauth2/v2.0/token: client credentials with a client secret
or with a federated assertion (workload identity); the managed identity
endpoint of the instance metadata service,
GET /metadata/identity/oauth2/token (with `Metadata: true`). Resource
Manager under /subscriptions/{subscription}: virtual machines, network
interfaces, public IP addresses and disks of one resource group, VM sizes,
and the async operations that follow each PUT and DELETE.

Strict: every ARM request needs a bearer token this fake issued, unexpired
(an expired one is answered ExpiredAuthenticationToken), and an
`api-version` it knows for the resource provider; bodies are checked as ARM
checks them: required fields, no unknown field at any depth, name rules,
the location, references to what exists (subnet, NSG, image, NIC, public
IP) in the same region, a NIC or address used by one VM only, user data in
base64 within 64 KiB, confidential VM settings only on confidential sizes.
Long operations run asynchronously: a PUT answers 201 with
Azure-AsyncOperation, the operation is InProgress for `op_polls` polls,
then Succeeded (or Failed); as in Azure, it also ends when nobody polls it,
`op_time_s` after it began (a client whose connection dropped finds the
resource done later). Deleting a VM deletes its NIC and OS disk when
their deleteOption says so, and a NIC's public IP likewise.

Faults and control are the conformance suite's (tests/conformance/README.md,
fakelib.py), plus for PUT of a VM: create_error (the VM and its disk are
made and the operation ends Failed) and capacity (likewise, with
AllocationFailed). Its own settings: op_polls, op_time_s, page_size, and
federated_assertions (the assertions it accepts; the newest by default).

Run: fake_azure.py [--port-file F] [-- command args...].
"""
import base64
import collections
import json
import os
import re
import secrets
import sys
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "conformance"))
import fakelib  # noqa: E402

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "0b7d5e3c-1a2b-4c3d-8e9f-a0b1c2d3e4f5"
CLIENT_SECRET = "fake~Client.Secret_0123456789abcdefEXAMPLE"
MI_CLIENT_ID = "5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f"
SUB = "11111111-2222-3333-4444-555555555555"
RG = "peerpods-rg"
REGION = "eastus"
SCOPE = "https://management.azure.com/.default"
RESOURCE = "https://management.azure.com/"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
VNET = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/virtualNetworks/vnet"
SUBNET = VNET + "/subnets/default"
NSG = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/nsg"
IMAGE = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/images/podvm"
GALLERY_IMAGE = "/CommunityGalleries/cocopodvm-1234/Images/podvm/Versions/0.1.0"
API_VERSIONS = {
    "Microsoft.Compute": {"2023-03-01", "2023-09-01", "2024-03-01", "2024-07-01"},
    "Microsoft.Network": {"2023-05-01", "2023-09-01", "2024-01-01", "2024-05-01"},
}
# name: vCPUs, MiB, confidential (SEV-SNP or TDX)
SIZES = {
    "Standard_DC2as_v5": (2, 8192, True),
    "Standard_DC4as_v5": (4, 16384, True),
    "Standard_DC8as_v5": (8, 32768, True),
    "Standard_EC4as_v5": (4, 32768, True),
    "Standard_DC2es_v5": (2, 8192, True),
    "Standard_DC4es_v5": (4, 16384, True),
    "Standard_D2as_v5": (2, 8192, False),
    "Standard_D4as_v5": (4, 16384, False),
    "Standard_B2s": (2, 4096, False),
}
CREATE_ONLY = ("create_error", "capacity")
NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?")
VM_NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62}[A-Za-z0-9])?")


class ArmError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def err_body(code, message):
    return json.dumps({"error": {"code": code, "message": message}})


def new_federated():
    # A JWT in shape: the fake only compares it.
    part = base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{part}.{secrets.token_urlsafe(32)}"


FIRST_ASSERTION = new_federated()

# --- the shape of bodies: {key: sub-schema}; "*" a leaf; [schema] a list ----------

VM_SCHEMA = {
    "location": "*", "tags": "*",
    "properties": {
        "hardwareProfile": {"vmSize": "*"},
        "storageProfile": {
            "imageReference": {"id": "*", "communityGalleryImageId": "*"},
            "osDisk": {"name": "*", "createOption": "*", "caching": "*", "deleteOption": "*",
                       "diskSizeGB": "*",
                       "managedDisk": {"storageAccountType": "*",
                                       "securityProfile": {"securityEncryptionType": "*"}}},
        },
        "osProfile": {"adminUsername": "*", "computerName": "*",
                      "linuxConfiguration": {"disablePasswordAuthentication": "*",
                                             "ssh": {"publicKeys": [{"path": "*",
                                                                     "keyData": "*"}]}}},
        "networkProfile": {"networkInterfaces": [{"id": "*",
                                                  "properties": {"deleteOption": "*",
                                                                 "primary": "*"}}]},
        "securityProfile": {"securityType": "*",
                            "uefiSettings": {"secureBootEnabled": "*", "vTpmEnabled": "*"}},
        "diagnosticsProfile": {"bootDiagnostics": {"enabled": "*"}},
        "userData": "*",
    },
}
NIC_SCHEMA = {
    "location": "*", "tags": "*",
    "properties": {
        "ipConfigurations": [{"name": "*", "properties": {
            "privateIPAllocationMethod": "*", "subnet": {"id": "*"},
            "publicIPAddress": {"id": "*"}, "primary": "*"}}],
        "networkSecurityGroup": {"id": "*"},
    },
}
PIP_SCHEMA = {
    "location": "*", "tags": "*", "sku": {"name": "*", "tier": "*"},
    "properties": {"publicIPAllocationMethod": "*", "publicIPAddressVersion": "*",
                   "deleteOption": "*"},
}


def ssh_key_ok(text):
    """An OpenSSH public key Azure takes: RSA of 2048 bits or more, or
    Ed25519; the blob's own type must match the text's."""
    parts = text.split() if isinstance(text, str) else []
    if len(parts) < 2 or parts[0] not in ("ssh-rsa", "ssh-ed25519"):
        return False
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return False
    fields, off = [], 0
    while off + 4 <= len(blob):
        n = int.from_bytes(blob[off:off + 4], "big")
        fields.append(blob[off + 4:off + 4 + n])
        off += 4 + n
    if off != len(blob) or not fields or fields[0] != parts[0].encode():
        return False
    if parts[0] == "ssh-ed25519":
        return len(fields) == 2 and len(fields[1]) == 32
    return len(fields) == 3 and len(fields[2].lstrip(b"\0")) * 8 >= 2048


def check_shape(obj, schema, where):
    if schema == "*":
        return
    if isinstance(schema, list):
        if not isinstance(obj, list):
            raise ArmError(400, "InvalidRequestContent", f"`{where}` must be an array")
        for i, item in enumerate(obj):
            check_shape(item, schema[0], f"{where}[{i}]")
        return
    if not isinstance(obj, dict):
        raise ArmError(400, "InvalidRequestContent", f"`{where}` must be an object")
    for k, v in obj.items():
        if k not in schema:
            raise ArmError(400, "InvalidRequestContent",
                           f"Could not find member '{k}' on object at `{where}`")
        check_shape(v, schema[k], f"{where}.{k}" if where else k)


def get(obj, *path):
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            return None
        obj = obj[p]
    return obj


def check_tags(tags):
    if tags is None:
        return {}
    if not isinstance(tags, dict) or len(tags) > 50:
        raise ArmError(400, "InvalidTagNameCharacters", "tags must be at most 50 pairs")
    for k, v in tags.items():
        if not isinstance(v, str) or not 1 <= len(k) <= 512 or len(v) > 256 or \
                any(c in k for c in "<>%&\\?/"):
            raise ArmError(400, "InvalidTagNameCharacters",
                           f"The tag names '{k}' have reserved characters '<,>,%,&,\\,?,/' "
                           f"or control characters.")
    return tags


class State(fakelib.FakeState):
    DEFAULTS = {
        "fault_kinds": {"throttle": 1, "throttle_retry_after": 0, "internal": 1,
                        "unavailable": 1, "drop": 1, "drop_after": 1, "timeout": 1,
                        "create_error": 1, "capacity": 1},
        "op_polls": 1,             # polls an operation answers InProgress
        "op_time_s": 0.5,          # when an operation nobody polls ends
        "page_size": 50,           # items in a page of a list
        "federated_assertions": None,   # None: the first one only
    }

    def reset(self):
        super().reset()
        self.tokens = {}          # access token -> expiry (epoch)
        self.issued_secrets = []
        self.vms, self.nics, self.pips, self.disks = {}, {}, {}, {}
        self.ops = {}             # id -> dict(polls, result, error, then, at)
        self.pending_ops = collections.deque()  # ids of ops not yet ended, oldest first
        self.sandboxes = {}       # sandbox tag -> set of vmIds
        self.created = 0
        self.ip_n = 0
        self.writes, self.reads = 1199, 11999

    def fault_applies(self, kind, action):
        return action == "PUT virtualMachines" or kind not in CREATE_ONLY

    def expire_all(self):
        now = time.time()
        for t in self.tokens:
            self.tokens[t] = min(self.tokens[t], now - 1)

    def missing_id(self):
        return vm_id(f"podvm-missing-{secrets.token_hex(4)}")

    def user_data(self, sb):
        for vm in reversed(list(self.vms.values())):
            if vm["tags"].get("peerpod-sandbox-id") == sb and vm["state"] != "Deleting":
                return base64.b64decode(vm["body"]["properties"].get("userData", ""))
        return None

    def report(self):
        rep = super().report()
        dup = {s: sorted(ids) for s, ids in self.sandboxes.items() if len(ids) > 1}
        rep.update({
            "created": self.created,
            "alive_resources": {"vms": len(self.vms), "nics": len(self.nics),
                                "disks": len(self.disks), "public_ips": len(self.pips)},
            "alive": {"vms": sorted(self.vms), "nics": sorted(self.nics),
                      "disks": sorted(self.disks), "public_ips": sorted(self.pips)},
            "duplicates": dup,
            "secrets": [CLIENT_SECRET, *self.issued_secrets[-200:]],
            "vm_bodies": {n: v["body"] for n, v in list(self.vms.items())[-10:]},
            "nic_bodies": {n: v["body"] for n, v in list(self.nics.items())[-10:]},
            "pip_bodies": {n: v["body"] for n, v in list(self.pips.items())[-10:]},
            "last_vm_body": getattr(self, "last_vm_body", None),
        })
        return rep

    def next_ip(self):
        self.ip_n += 1
        n = self.ip_n
        return self.cfg["private_ip"] or f"10.1.{(n >> 8) & 255}.{n & 255}"

    def new_op(self, provider, result="Succeeded", error=None, then=None):
        oid = str(uuid.uuid4())
        self.ops[oid] = {"polls": 0, "result": result, "error": error, "then": then,
                         "provider": provider, "at": time.monotonic(), "ended": False}
        self.pending_ops.append(oid)
        return oid

    def settle(self):
        """Ends the operations nobody polled to their end in op_time_s."""
        limit = time.monotonic() - self.cfg["op_time_s"]
        while self.pending_ops:
            op = self.ops[self.pending_ops[0]]
            if not op["ended"] and op["at"] > limit:
                break
            self.pending_ops.popleft()
            end_op(op)


STATE = State()


def rg_prefix():
    return f"/subscriptions/{SUB}/resourceGroups/{RG}/providers"


def vm_id(name):
    return f"{rg_prefix()}/Microsoft.Compute/virtualMachines/{name}"


def nic_id(name):
    return f"{rg_prefix()}/Microsoft.Network/networkInterfaces/{name}"


def pip_id(name):
    return f"{rg_prefix()}/Microsoft.Network/publicIPAddresses/{name}"


def disk_id(name):
    return f"{rg_prefix()}/Microsoft.Compute/disks/{name}"


def op_url(host, provider, oid):
    return (f"http://{host}/subscriptions/{SUB}/providers/{provider}/locations/{REGION}/"
            f"operations/{oid}?api-version="
            f"{'2024-03-01' if provider == 'Microsoft.Compute' else '2024-01-01'}")


# --- resources -----------------------------------------------------------------------


def vm_view(vm, expand_user_data=False):
    body = json.loads(json.dumps(vm["body"]))
    props = body.setdefault("properties", {})
    if not expand_user_data:
        props.pop("userData", None)
    props["provisioningState"] = vm["state"]
    props["vmId"] = vm["vmId"]
    return dict(body, id=vm_id(vm["name"]), name=vm["name"],
                type="Microsoft.Compute/virtualMachines")


def nic_view(nic):
    body = json.loads(json.dumps(nic["body"]))
    props = body.setdefault("properties", {})
    props["provisioningState"] = nic["state"]
    for ipc in props.get("ipConfigurations", []):
        ipp = ipc.setdefault("properties", {})
        ipp["privateIPAddress"] = nic["ip"]
        ipp["provisioningState"] = nic["state"]
        ipc["id"] = nic_id(nic["name"]) + "/ipConfigurations/" + ipc.get("name", "")
    if nic["vm"]:
        props["virtualMachine"] = {"id": vm_id(nic["vm"])}
    return dict(body, id=nic_id(nic["name"]), name=nic["name"],
                type="Microsoft.Network/networkInterfaces")


def pip_view(pip):
    body = json.loads(json.dumps(pip["body"]))
    props = body.setdefault("properties", {})
    props["provisioningState"] = pip["state"]
    if pip["state"] == "Succeeded":
        props["ipAddress"] = pip["ip"]
    if pip["nic"]:
        props["ipConfiguration"] = {"id": nic_id(pip["nic"]) + "/ipConfigurations/x"}
    return dict(body, id=pip_id(pip["name"]), name=pip["name"],
                type="Microsoft.Network/publicIPAddresses")


def check_name(name, rx, kind):
    if not rx.fullmatch(name):
        raise ArmError(400, "InvalidResourceName",
                       f"Resource name {name} is invalid for a {kind}.")


def check_location(body):
    loc = body.get("location")
    if not isinstance(loc, str) or not loc:
        raise ArmError(400, "LocationRequired", "The location property is required for this "
                                                "definition.")
    if loc.lower().replace(" ", "") != REGION:
        raise ArmError(400, "LocationNotAvailableForResourceType",
                       f"The provided location '{loc}' is not available for this resource "
                       f"here; the resource group is in '{REGION}'.")


def ref_name(ref, kind_path):
    """The name in an ARM id of this resource group of the given type, or None."""
    prefix = f"{rg_prefix()}/{kind_path}/"
    if isinstance(ref, str) and ref.lower().startswith(prefix.lower()):
        rest = ref[len(prefix):]
        if rest and "/" not in rest:
            return rest
    return None


def put_pip(name, body, host):
    check_name(name, NAME_RE, "public IP address")
    fakelib_check = check_shape
    fakelib_check(body, PIP_SCHEMA, "")
    check_location(body)
    tags = check_tags(body.get("tags"))
    sku = get(body, "sku", "name")
    if sku not in (None, "Basic", "Standard"):
        raise ArmError(400, "InvalidParameter", f"sku `{sku}`")
    method = get(body, "properties", "publicIPAllocationMethod")
    if method not in (None, "Static", "Dynamic"):
        raise ArmError(400, "InvalidParameter", f"publicIPAllocationMethod `{method}`")
    if sku == "Standard" and method != "Static":
        raise ArmError(400, "StandardSkuPublicIPAddressesMustBeStatic",
                       "Standard sku publicIp must have AllocationMethod set to Static.")
    if get(body, "properties", "deleteOption") not in (None, "Delete", "Detach"):
        raise ArmError(400, "InvalidParameter", "deleteOption")
    st = STATE
    old = st.pips.get(name)
    if old is not None:
        old["body"], old["tags"] = body, tags
        return 200, {}, json.dumps(pip_view(old))
    st.ip_n += 1
    n = st.ip_n
    pip = {"name": name, "body": body, "tags": tags, "state": "Updating", "nic": None,
           "ip": f"20.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"}
    st.pips[name] = pip
    oid = st.new_op("Microsoft.Network", then=("pip_ready", name, pip))
    return 201, {"Azure-AsyncOperation": op_url(host, "Microsoft.Network", oid),
                 "Retry-After": "0"}, json.dumps(pip_view(pip))


def put_nic(name, body, host):
    check_name(name, NAME_RE, "network interface")
    check_shape(body, NIC_SCHEMA, "")
    check_location(body)
    tags = check_tags(body.get("tags"))
    ipcs = get(body, "properties", "ipConfigurations")
    if not isinstance(ipcs, list) or len(ipcs) != 1:
        raise ArmError(400, "InvalidRequestFormat", "exactly one IP configuration here")
    ipc = ipcs[0]
    if not isinstance(ipc.get("name"), str) or not NAME_RE.fullmatch(ipc["name"]):
        raise ArmError(400, "InvalidResourceName", "IP configuration name")
    if get(ipc, "properties", "privateIPAllocationMethod") not in ("Dynamic", "Static"):
        raise ArmError(400, "InvalidRequestFormat", "privateIPAllocationMethod")
    subnet = get(ipc, "properties", "subnet", "id")
    if subnet is None:
        raise ArmError(400, "InvalidRequestFormat", "subnet is required")
    if subnet.lower() != SUBNET.lower():
        raise ArmError(400, "InvalidResourceReference",
                       f"Resource {subnet} referenced by resource {nic_id(name)} was not found.")
    nsg = get(body, "properties", "networkSecurityGroup", "id")
    if nsg is not None and nsg.lower() != NSG.lower():
        raise ArmError(400, "InvalidResourceReference",
                       f"Resource {nsg} referenced by resource {nic_id(name)} was not found.")
    st = STATE
    pipref = get(ipc, "properties", "publicIPAddress", "id")
    pip = None
    if pipref is not None:
        pn = ref_name(pipref, "Microsoft.Network/publicIPAddresses")
        pip = st.pips.get(pn) if pn else None
        if pip is None:
            raise ArmError(400, "InvalidResourceReference",
                           f"Resource {pipref} referenced by resource {nic_id(name)} was not "
                           f"found.")
        if pip["nic"] not in (None, name):
            raise ArmError(400, "PublicIPAddressInUse",
                           f"Public IP address {pipref} is in use by another interface.")
    old = st.nics.get(name)
    if old is not None:
        if pip is not None:
            pip["nic"] = name
        old["body"], old["tags"] = body, tags
        return 200, {}, json.dumps(nic_view(old))
    nic = {"name": name, "body": body, "tags": tags, "state": "Updating", "vm": None,
           "ip": st.next_ip(), "pip": pip["name"] if pip else None}
    if pip is not None:
        pip["nic"] = name
    st.nics[name] = nic
    oid = st.new_op("Microsoft.Network", then=("nic_ready", name, nic))
    return 201, {"Azure-AsyncOperation": op_url(host, "Microsoft.Network", oid),
                 "Retry-After": "0"}, json.dumps(nic_view(nic))


def put_vm(name, body, host, fault):
    check_name(name, VM_NAME_RE, "virtual machine")
    check_shape(body, VM_SCHEMA, "")
    check_location(body)
    tags = check_tags(body.get("tags"))
    p = body.get("properties") or {}
    size = get(p, "hardwareProfile", "vmSize")
    if size is None:
        raise ArmError(400, "InvalidParameter", "Required parameter 'vmSize' is missing.")
    if size not in SIZES:
        raise ArmError(400, "InvalidParameter",
                       f"The value {size} provided for the VM size is not valid.")
    img = get(p, "storageProfile", "imageReference") or {}
    if set(img) not in ({"id"}, {"communityGalleryImageId"}):
        raise ArmError(400, "InvalidParameter", "imageReference needs one of id or "
                                                "communityGalleryImageId")
    if img.get("id", img.get("communityGalleryImageId")).lower() not in (IMAGE.lower(),
                                                                         GALLERY_IMAGE.lower()):
        raise ArmError(404, "ImageNotFound",
                       f"The platform image '{img}' is not available.")
    osd = get(p, "storageProfile", "osDisk") or {}
    if osd.get("createOption") != "FromImage":
        raise ArmError(400, "InvalidParameter", "osDisk.createOption must be FromImage")
    if osd.get("deleteOption") not in (None, "Delete", "Detach"):
        raise ArmError(400, "InvalidParameter", "osDisk.deleteOption")
    if osd.get("caching") not in (None, "None", "ReadOnly", "ReadWrite"):
        raise ArmError(400, "InvalidParameter", "osDisk.caching")
    dname = osd.get("name") or f"{name}_OsDisk_1_{uuid.uuid4().hex}"
    check_name(dname, NAME_RE, "disk")
    gib = osd.get("diskSizeGB")
    if gib is not None and (not isinstance(gib, int) or not 30 <= gib <= 4095):
        raise ArmError(400, "InvalidParameter", "diskSizeGB must be from 30 to 4095 here")
    md = osd.get("managedDisk") or {}
    if md.get("storageAccountType") not in (None, "Standard_LRS", "Premium_LRS",
                                            "StandardSSD_LRS"):
        raise ArmError(400, "InvalidParameter", "storageAccountType")
    osp = p.get("osProfile") or {}
    user, computer = osp.get("adminUsername"), osp.get("computerName")
    if not isinstance(user, str) or not re.fullmatch(r"[a-z_][a-z0-9_-]{0,63}", user) or \
            user in ("root", "admin", "administrator"):
        raise ArmError(400, "InvalidParameter", f"adminUsername `{user}` is not allowed")
    if not isinstance(computer, str) or not VM_NAME_RE.fullmatch(computer):
        raise ArmError(400, "InvalidParameter", "computerName")
    lc = osp.get("linuxConfiguration") or {}
    keys = get(lc, "ssh", "publicKeys") or []
    if lc.get("disablePasswordAuthentication") is True:
        if not keys:
            raise ArmError(400, "InvalidParameter",
                           "Authentication using either SSH or by user name and password "
                           "must be enabled in Linux profile.")
        for k in keys:
            if k.get("path") != f"/home/{user}/.ssh/authorized_keys" or \
                    not ssh_key_ok(k.get("keyData")):
                raise ArmError(400, "InvalidParameter", "ssh public key path or data")
    sec = p.get("securityProfile")
    if sec is not None:
        if sec.get("securityType") != "ConfidentialVM":
            raise ArmError(400, "InvalidParameter", "securityType")
        if not SIZES[size][2]:
            raise ArmError(400, "BadRequest",
                           f"The VM size '{size}' is not supported for creation of VMs and "
                           f"Virtual Machine Scale Set with 'ConfidentialVM' security type.")
        if get(sec, "uefiSettings", "vTpmEnabled") is not True:
            raise ArmError(400, "BadRequest", "ConfidentialVM needs vTpmEnabled")
        enc = get(md, "securityProfile", "securityEncryptionType")
        if enc not in ("VMGuestStateOnly", "DiskWithVMGuestState"):
            raise ArmError(400, "BadRequest", "ConfidentialVM needs securityEncryptionType")
    elif get(md, "securityProfile") is not None:
        raise ArmError(400, "BadRequest", "securityEncryptionType needs a ConfidentialVM")
    ud = p.get("userData")
    if ud is not None:
        if not isinstance(ud, str) or len(ud) > 65536:
            raise ArmError(400, "InvalidParameter", "The value of parameter userData is "
                                                    "invalid: at most 64 KB of base64")
        try:
            base64.b64decode(ud, validate=True)
        except ValueError:
            raise ArmError(400, "InvalidParameter", "userData is not base64")
    nics = get(p, "networkProfile", "networkInterfaces") or []
    if len(nics) != 1:
        raise ArmError(400, "InvalidParameter", "one network interface here")
    nn = ref_name(nics[0].get("id"), "Microsoft.Network/networkInterfaces")
    st = STATE
    nic = st.nics.get(nn) if nn else None
    if nic is None:
        raise ArmError(400, "InvalidResourceReference",
                       f"Resource {nics[0].get('id')} referenced by resource {vm_id(name)} "
                       f"was not found.")
    if nic["body"]["location"].lower() != body["location"].lower():
        raise ArmError(400, "InvalidParameter", "The network interface is in another region "
                                                "than the virtual machine.")
    if nic["vm"] not in (None, name):
        raise ArmError(400, "NicInUse",
                       f"Network Interface {nic_id(nn)} is used by existing resource "
                       f"{vm_id(nic['vm'])}.")
    if get(nics[0], "properties", "deleteOption") not in (None, "Delete", "Detach"):
        raise ArmError(400, "InvalidParameter", "networkInterfaces.deleteOption")
    st.last_vm_body = body
    old = st.vms.get(name)
    if old is not None:
        if old["state"] in ("Creating", "Updating", "Deleting"):
            raise ArmError(409, "RetryableError",
                           f"A retryable error occurred: another operation on "
                           f"'{name}' is in progress.")
        if get(old["body"], "properties", "storageProfile", "osDisk", "name") != osd.get("name"):
            raise ArmError(409, "PropertyChangeNotAllowed",
                           "Changing property 'osDisk.name' is not allowed.")
        old["body"], old["tags"] = body, tags
        if old["state"] == "Succeeded":
            return 200, {}, json.dumps(vm_view(old))
    vm = old or {"name": name, "vmId": str(uuid.uuid4())}
    vm.update({"body": body, "tags": tags, "state": "Creating", "nic": nn, "disk": dname})
    if old is None:
        st.vms[name] = vm
        st.created += 1
        sb = tags.get("peerpod-sandbox-id")
        if sb is not None:
            st.sandboxes.setdefault(sb, set()).add(vm["vmId"])
    nic["vm"] = name
    if dname not in st.disks:
        st.disks[dname] = {"name": dname, "vm": name}
    st.disks[dname]["vm"] = name
    if fault == "create_error":
        oid = st.new_op("Microsoft.Compute", "Failed",
                        {"code": "OSProvisioningInternalError",
                         "message": "OS Provisioning failed for VM due to an internal error."},
                        then=("vm_failed", name, vm))
    elif fault == "capacity":
        oid = st.new_op("Microsoft.Compute", "Failed",
                        {"code": "AllocationFailed",
                         "message": "Allocation failed. We do not have sufficient capacity for "
                                    "the requested VM size in this region."},
                        then=("vm_failed", name, vm))
    else:
        oid = st.new_op("Microsoft.Compute", then=("vm_ready", name, vm))
    return 201, {"Azure-AsyncOperation": op_url(host, "Microsoft.Compute", oid),
                 "Retry-After": "0"}, json.dumps(vm_view(vm))


def cascade_delete_vm(name):
    st = STATE
    vm = st.vms.pop(name, None)
    if vm is None:
        return
    p = vm["body"].get("properties", {})
    osd = get(p, "storageProfile", "osDisk") or {}
    disk = st.disks.get(vm["disk"])
    if disk is not None:
        disk["vm"] = None
        if osd.get("deleteOption") == "Delete":
            st.disks.pop(vm["disk"], None)
    nicref = (get(p, "networkProfile", "networkInterfaces") or [{}])[0]
    nic = st.nics.get(vm["nic"])
    if nic is not None:
        nic["vm"] = None
        if get(nicref, "properties", "deleteOption") == "Delete":
            st.nics.pop(vm["nic"], None)
            pip = st.pips.get(nic["pip"]) if nic["pip"] else None
            if pip is not None:
                pip["nic"] = None
                if get(pip["body"], "properties", "deleteOption") == "Delete":
                    st.pips.pop(pip["name"], None)


def delete_resource(kind, name, host):
    st = STATE
    if kind == "virtualMachines":
        vm = st.vms.get(name)
        if vm is None:
            return 204, {}, ""
        vm["state"] = "Deleting"
        oid = st.new_op("Microsoft.Compute", then=("vm_deleted", name, vm))
        prov = "Microsoft.Compute"
    elif kind == "networkInterfaces":
        nic = st.nics.get(name)
        if nic is None:
            return 204, {}, ""
        if nic["vm"]:
            raise ArmError(400, "NicInUse", f"Network Interface {nic_id(name)} is used by "
                                            f"existing resource {vm_id(nic['vm'])}.")
        st.nics.pop(name)
        if nic["pip"] and nic["pip"] in st.pips:
            st.pips[nic["pip"]]["nic"] = None
        oid = st.new_op("Microsoft.Network")
        prov = "Microsoft.Network"
    elif kind == "publicIPAddresses":
        pip = st.pips.get(name)
        if pip is None:
            return 204, {}, ""
        if pip["nic"]:
            raise ArmError(400, "PublicIPAddressCannotBeDeleted",
                           f"Public IP address {pip_id(name)} can not be deleted since it is "
                           f"still allocated to resource {nic_id(pip['nic'])}.")
        st.pips.pop(name)
        oid = st.new_op("Microsoft.Network")
        prov = "Microsoft.Network"
    else:
        disk = st.disks.get(name)
        if disk is None:
            return 204, {}, ""
        if disk["vm"]:
            raise ArmError(409, "OperationNotAllowed",
                           f"Disk {name} is attached to VM {vm_id(disk['vm'])}.")
        st.disks.pop(name)
        oid = st.new_op("Microsoft.Compute")
        prov = "Microsoft.Compute"
    url = op_url(host, prov, oid)
    return 202, {"Azure-AsyncOperation": url, "Location": url, "Retry-After": "0"}, ""


def end_op(op):
    """What an operation does when it ends, once: the resource it made is
    ready (or failed), the VM it deletes is gone, with what goes with it.
    Only the object it began with: a resource made again since is not its."""
    st = STATE
    if op["ended"]:
        return
    op["ended"] = True
    if op["then"] is None:
        return
    what, name, obj = op["then"]
    op["then"] = None
    if what == "vm_ready" and st.vms.get(name) is obj:
        obj["state"] = "Succeeded"
    elif what == "vm_failed" and st.vms.get(name) is obj:
        obj["state"] = "Failed"
    elif what == "vm_deleted" and st.vms.get(name) is obj:
        cascade_delete_vm(name)
    elif what == "nic_ready" and st.nics.get(name) is obj:
        obj["state"] = "Succeeded"
    elif what == "pip_ready" and st.pips.get(name) is obj:
        obj["state"] = "Succeeded"


def poll_op(oid):
    st = STATE
    op = st.ops.get(oid)
    if op is None:
        raise ArmError(404, "NotFound", f"operation {oid} not found")
    op["polls"] += 1
    if not op["ended"] and op["polls"] <= st.cfg["op_polls"]:
        return 200, {"Retry-After": "0"}, json.dumps({"name": oid, "status": "InProgress"})
    end_op(op)
    out = {"name": oid, "status": op["result"]}
    if op["error"]:
        out["error"] = op["error"]
    return 200, {}, json.dumps(out)


def list_of(items, view, path, query, host):
    page = STATE.cfg["page_size"]
    start = 0
    if "$skiptoken" in query:
        try:
            start = int(query["$skiptoken"])
        except ValueError:
            raise ArmError(400, "InvalidSkipToken", "bad $skiptoken")
    chunk = items[start:start + page]
    out = {"value": [view(i) for i in chunk]}
    if start + page < len(items):
        q = dict(query, **{"$skiptoken": str(start + page)})
        out["nextLink"] = f"http://{host}{path}?{urllib.parse.urlencode(q)}"
    return 200, {}, json.dumps(out)


# --- the server ----------------------------------------------------------------------


class Handler(fakelib.ControlHandler):
    server_version = "FakeAzure/1.0"
    STATE = STATE
    APPLIED_KINDS = CREATE_ONLY

    def fault_answer(self, kind):
        j = "application/json; charset=utf-8"
        if kind == "throttle":
            return 429, {}, err_body("TooManyRequests", "The request is being throttled."), j
        if kind == "throttle_retry_after":
            return (429, {"Retry-After": str(STATE.cfg["retry_after_s"])},
                    err_body("TooManyRequests", "The request is being throttled."), j)
        if kind == "unavailable":
            return 503, {}, err_body("ServiceUnavailable", "The service is unavailable."), j
        if kind == "reject":
            return (403, {}, err_body("AuthorizationFailed",
                                      f"The client '{CLIENT_ID}' does not have authorization "
                                      f"to perform this action."), j)
        return 500, {}, err_body("InternalServerError", "Encountered internal server error."), j

    def do_GET(self):
        if not self.control():
            self.route()

    def do_POST(self):
        if not self.control():
            self.route()

    def do_PUT(self):
        self.route()

    def do_DELETE(self):
        self.route()

    def route(self):
        raw = self.read_body()
        if raw is None:
            self.reply(413, err_body("RequestEntityTooLarge", "too large"))
            return
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        m = re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", path)
        if self.command == "POST" and m:
            self.api("token", raw, lambda fault: self.aad(m.group(1), raw))
            return
        if path == "/metadata/identity/oauth2/token" and self.command == "GET":
            self.api("imds", raw, lambda fault: self.imds(url.query))
            return
        if path.startswith("/subscriptions/"):
            action, fn = self.arm_route(path, url.query, raw)
            self.api(action, raw, fn)
            return
        self.reply(404, err_body("NotFound", "no such endpoint"))

    def api(self, action, raw, fn):
        key = (self.command, self.path, raw)
        with STATE.lock:
            fault = STATE.arrive(action, key)

        def apply():
            with STATE.lock:
                STATE.settle()
                try:
                    status, headers, body = fn(fault)
                except ArmError as e:
                    status, headers, body = e.status, {}, err_body(e.code, e.message)
                    if e.code in ("InvalidRequestContent", "InvalidApiVersionParameter",
                                  "InvalidAuthenticationToken", "InvalidResourceName",
                                  "InvalidParameter", "InvalidRequestFormat",
                                  "InvalidResourceReference", "LocationNotAvailableForResourceType",
                                  "BadRequest", "MissingApiVersionParameter", "NicInUse",
                                  "PublicIPAddressInUse", "PropertyChangeNotAllowed",
                                  "InvalidTagNameCharacters", "LocationRequired",
                                  "ImageNotFound", "invalid_request", "invalid_client",
                                  "unauthorized_client"):
                        STATE.refuse(f"{self.command} {self.path.split('?')[0]}: {e.code}: "
                                     f"{e.message}")
                headers = dict(headers)
                headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
                if action.startswith(("PUT", "DELETE")):
                    STATE.writes = max(0, STATE.writes - 1)
                    headers["x-ms-ratelimit-remaining-subscription-writes"] = str(STATE.writes)
                    if action == "PUT virtualMachines":
                        headers["x-ms-ratelimit-remaining-resource"] = (
                            "Microsoft.Compute/PutVM3Min;239,Microsoft.Compute/PutVM30Min;1199")
                elif action != "token" and action != "imds":
                    STATE.reads = max(0, STATE.reads - 1)
                    headers["x-ms-ratelimit-remaining-subscription-reads"] = str(STATE.reads)
                ctype = "application/json; charset=utf-8"
                return status, headers, body, ctype
        self.serve_api(fault, key, apply)

    # --- identity ----------------------------------------------------------------

    def issue(self, ttl):
        tok = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(48) + "." + secrets.token_urlsafe(16)
        STATE.tokens[tok] = time.time() + ttl
        STATE.tokens_issued += 1
        STATE.issued_secrets.append(tok)
        return tok

    def aad(self, tenant, raw):
        def bad(code, desc, status=400):
            raise ArmError(status, code, desc)
        if self.headers.get("Content-Type", "").split(";")[0].strip() != \
                "application/x-www-form-urlencoded":
            bad("invalid_request", "AADSTS900144: The request body must contain a form.")
        try:
            f = dict(urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True,
                                            strict_parsing=True))
        except (ValueError, UnicodeDecodeError):
            bad("invalid_request", "AADSTS90014: malformed body")
        if tenant != TENANT:
            bad("invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.")
        if f.get("grant_type") != "client_credentials":
            bad("unsupported_grant_type", "AADSTS70003: grant_type")
        if f.get("scope") != SCOPE:
            bad("invalid_scope", f"AADSTS70011: The provided value for scope "
                                 f"{f.get('scope')} is not valid.")
        if f.get("client_id") != CLIENT_ID:
            bad("unauthorized_client", f"AADSTS700016: Application with identifier "
                                       f"'{f.get('client_id')}' was not found.")
        allowed = {"grant_type", "scope", "client_id"}
        if "client_secret" in f:
            allowed.add("client_secret")
            if f["client_secret"] != CLIENT_SECRET:
                bad("invalid_client", "AADSTS7000215: Invalid client secret provided.", 401)
        elif f.get("client_assertion_type") == ASSERTION_TYPE:
            allowed |= {"client_assertion_type", "client_assertion"}
            ok = STATE.cfg["federated_assertions"] or [FIRST_ASSERTION]
            if f.get("client_assertion") not in ok:
                # Not a refusal of a correct client: a rotated-out token.
                raise ArmError(401, "invalid_client_assertion",
                               "AADSTS700024: Client assertion is not within its valid "
                               "time range.")
        else:
            bad("invalid_client", "AADSTS7000218: The request body must contain "
                                  "'client_assertion' or 'client_secret'.", 401)
        if set(f) != allowed:
            bad("invalid_request", f"AADSTS900144: unexpected {sorted(set(f) - allowed)}")
        ttl = int(STATE.cfg["token_ttl"])
        return 200, {}, json.dumps({"token_type": "Bearer", "expires_in": ttl,
                                    "ext_expires_in": ttl, "access_token": self.issue(ttl)})

    def imds(self, query):
        if self.headers.get("Metadata") != "true":
            raise ArmError(400, "invalid_request", "Required metadata header not specified")
        q = dict(urllib.parse.parse_qsl(query))
        if q.get("api-version") not in ("2018-02-01", "2019-08-01") or \
                q.get("resource") != RESOURCE or \
                q.get("client_id", MI_CLIENT_ID) != MI_CLIENT_ID or \
                set(q) - {"api-version", "resource", "client_id"}:
            raise ArmError(400, "invalid_request", f"bad query {sorted(q)}")
        ttl = int(STATE.cfg["token_ttl"])
        now = int(time.time())
        return 200, {}, json.dumps({
            "access_token": self.issue(ttl), "client_id": MI_CLIENT_ID,
            "expires_in": str(ttl), "expires_on": str(now + ttl), "ext_expires_in": str(ttl),
            "not_before": str(now), "resource": RESOURCE, "token_type": "Bearer"})

    # --- Resource Manager --------------------------------------------------------

    def arm_route(self, path, query, raw):
        """(action name for counts and faults, fn(fault) -> answer)."""
        parts = path.strip("/").split("/")
        q = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        host = self.headers.get("Host", "")
        cmd = self.command
        action = f"{cmd} {'/'.join(p for i, p in enumerate(parts) if i % 2 == 0)}"
        name = parts[-1]
        kind = None
        prov = None
        if len(parts) == 8 and parts[2].lower() == "resourcegroups" and parts[4] == "providers":
            kind, prov = parts[6], parts[5]
            action = f"{cmd} {kind}"
        elif len(parts) == 7 and parts[2].lower() == "resourcegroups" and parts[4] == "providers":
            prov = parts[5]
            action = f"{cmd} list {parts[6]}"
        elif len(parts) == 8 and parts[2] == "providers" and parts[4] == "locations" and \
                parts[6] == "operations":
            prov = parts[3]
            action = "GET operation"
        elif len(parts) == 7 and parts[2] == "providers" and parts[4] == "locations" and \
                parts[6] == "vmSizes":
            prov = parts[3]
            action = "GET vmSizes"

        def fn(fault):
            self.check_auth()
            if parts[1] != SUB:
                raise ArmError(404, "SubscriptionNotFound",
                               f"The subscription '{parts[1]}' could not be found.")
            if prov is None:
                raise ArmError(404, "InvalidResourceType", "no such resource path")
            ver = q.get("api-version")
            if ver is None:
                raise ArmError(400, "MissingApiVersionParameter",
                               "The api-version query parameter (?api-version=) is required "
                               "for all requests.")
            if ver not in API_VERSIONS.get(prov, ()):
                raise ArmError(400, "InvalidApiVersionParameter",
                               f"The api-version '{ver}' is invalid for {prov}.")
            if kind is not None or action.startswith(f"{cmd} list"):
                if parts[3] != RG:
                    raise ArmError(404, "ResourceGroupNotFound",
                                   f"Resource group '{parts[3]}' could not be found.")
            extra = set(q) - {"api-version", "$expand", "$skiptoken"}
            if extra:
                raise ArmError(400, "InvalidRequestFormat", f"unknown query {sorted(extra)}")
            return self.arm(cmd, action, kind, name, parts, q, raw, host, fault, path)
        return action, fn

    def check_auth(self):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            raise ArmError(401, "AuthenticationFailed",
                           "Authentication failed. The 'Authorization' header is missing.")
        exp = STATE.tokens.get(auth[7:])
        if exp is None:
            raise ArmError(401, "InvalidAuthenticationToken",
                           "The access token is invalid.")
        if exp < time.time():
            STATE.expired_rejections += 1
            raise ArmError(401, "ExpiredAuthenticationToken",
                           "The access token expiry UTC time is earlier than current UTC "
                           "time.")

    def arm(self, cmd, action, kind, name, parts, q, raw, host, fault, path):
        st = STATE
        if action == "GET operation":
            return poll_op(name)
        if action == "GET vmSizes":
            if parts[3] != "Microsoft.Compute" or parts[5] != REGION:
                raise ArmError(404, "NotFound", "no such location")
            return 200, {}, json.dumps({"value": [
                {"name": n, "numberOfCores": c, "memoryInMB": m, "maxDataDiskCount": 4,
                 "osDiskSizeInMB": 1047552, "resourceDiskSizeInMB": 0}
                for n, (c, m, _) in SIZES.items()]})
        if action.startswith(f"{cmd} list"):
            if cmd != "GET":
                raise ArmError(405, "MethodNotAllowed", "")
            what = parts[6]
            items = {"virtualMachines": (st.vms, vm_view), "networkInterfaces": (st.nics, nic_view),
                     "publicIPAddresses": (st.pips, pip_view)}.get(what)
            if items is None:
                raise ArmError(404, "NotFound", "no such collection")
            return list_of(list(items[0].values()), items[1], path, q, host)
        if kind not in ("virtualMachines", "networkInterfaces", "publicIPAddresses", "disks"):
            raise ArmError(404, "InvalidResourceType", f"unknown resource type {kind}")
        body = None
        if cmd == "PUT":
            if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                raise ArmError(415, "UnsupportedMediaType", "application/json only")
            try:
                body = json.loads(raw)
            except ValueError:
                raise ArmError(400, "InvalidRequestContent", "The request content was invalid "
                                                             "and could not be deserialized.")
            if not isinstance(body, dict):
                raise ArmError(400, "InvalidRequestContent", "an object")
        elif raw:
            raise ArmError(400, "InvalidRequestContent", f"{cmd} has no body")
        if cmd == "PUT":
            if kind == "virtualMachines":
                return put_vm(name, body, host, fault)
            if kind == "networkInterfaces":
                return put_nic(name, body, host)
            if kind == "publicIPAddresses":
                return put_pip(name, body, host)
            raise ArmError(405, "MethodNotAllowed", "disks are made with their VM here")
        if cmd == "DELETE":
            return delete_resource(kind, name, host)
        if cmd == "GET":
            if kind == "virtualMachines" and name in st.vms:
                return 200, {}, json.dumps(vm_view(st.vms[name], q.get("$expand") == "userData"))
            if kind == "networkInterfaces" and name in st.nics:
                return 200, {}, json.dumps(nic_view(st.nics[name]))
            if kind == "publicIPAddresses" and name in st.pips:
                return 200, {}, json.dumps(pip_view(st.pips[name]))
            if kind == "disks" and name in st.disks:
                return 200, {}, json.dumps({"name": name, "id": disk_id(name)})
            raise ArmError(404, "ResourceNotFound",
                           f"The Resource '{kind}/{name}' under resource group '{RG}' was not "
                           f"found.")
        raise ArmError(405, "MethodNotAllowed", f"{cmd}")


RATE, BURST = 200, 40


def provider_env(url):
    """The Azure provider's settings against this fake, for the conformance
    suite (None: unset): a client secret, whose tokens expire; short
    backoffs and polls; the rate limit above."""
    env = {k: None for k in (
        "AZURE_FEDERATED_TOKEN_FILE", "AZURE_INSTANCE_SIZES", "USE_PUBLIC_IP", "DISABLECVM",
        "ENABLE_SECURE_BOOT", "ROOT_VOLUME_SIZE", "AZURE_NSG_ID", "SSH_USERNAME")}
    env.update({
        "FAKE_AZURE_TENANT": TENANT, "FAKE_AZURE_CLIENT_ID": CLIENT_ID,
        "FAKE_AZURE_CLIENT_SECRET": CLIENT_SECRET, "FAKE_AZURE_MI_CLIENT_ID": MI_CLIENT_ID,
        "FAKE_AZURE_ASSERTION": FIRST_ASSERTION,
        "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_CLIENT_SECRET": CLIENT_SECRET,
        "AZURE_TENANT_ID": TENANT, "AZURE_SUBSCRIPTION_ID": SUB, "AZURE_REGION": REGION,
        "AZURE_RESOURCE_GROUP": RG, "AZURE_SUBNET_ID": SUBNET, "AZURE_IMAGE_ID": IMAGE,
        "AZURE_AUTHORITY_HOST": url, "AZURE_RESOURCE_MANAGER_ENDPOINT": url,
        "AZURE_POD_IDENTITY_AUTHORITY_HOST": url, "TAGS": "team=peer-pods,env=ci",
        "AZURE_RETRY_BASE_DELAY_MS": "5", "AZURE_RETRY_MAX_DELAY_MS": "40",
        "AZURE_MAX_ATTEMPTS": "8", "AZURE_API_ATTEMPT_TIMEOUT_MS": "400",
        "AZURE_API_TIMEOUT_MS": "15000", "AZURE_POLL_INTERVAL_MS": "10",
        "AZURE_API_RATE_LIMIT": str(RATE), "AZURE_API_BURST": str(BURST)})
    return env


def main():
    return fakelib.main(STATE, Handler, provider_env, RATE, BURST)


if __name__ == "__main__":
    sys.exit(main())
