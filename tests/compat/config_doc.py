#!/usr/bin/python3
"""docs/configuration.md against the programs, so that the two cannot drift.

1. Every table of the document is compared with the program's own
   -list-settings, both ways: each row is a setting of the program, each
   setting is a row, with the same support (supported, no effect, warned,
   refused) and the same default. The daemon's rows are those every
   provider's listing shares; a provider's are the rest of its listing.
   Every provider built has a table: local and each module found beside
   the programs.
2. cloud-api-adaptor is started (local provider, in a network namespace of
   its own) with every warned value: each is warned about once, by name,
   the daemon serves, and the settings that have no effect are named in no
   warning. With each refused value (as a variable, and as a flag where
   there is one) it stops at start-up naming the setting and serves
   nothing.

3. upstream's peer-pods-cm (and peer-pods-secret) for aws, azure, gcp and libvirt, as
   its chart renders them (tests/compat/data): every key is a setting of the
   daemon or its provider, and the daemon starts and serves with the whole
   map as its environment (only what would reach a cloud or a host pointed
   at nothing, and the paths a chart leaves empty kept to the test's).

Usage: config_doc.py DOC BIN_DIR DATA_DIR. Needs root (the local provider).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

DOC, BIN, DATA = sys.argv[1], sys.argv[2], sys.argv[3]
CAA = os.path.join(BIN, "cloud-api-adaptor")
APF = os.path.join(BIN, "agent-protocol-forwarder")
PUD = os.path.join(BIN, "process-user-data")
# Every provider built: the daemon's own (local) and each module beside
# the programs (`<bin>/../lib/peerpod/pp-provider-<name>.so`, where the
# daemon looks by default), so that a provider added without a table fails.
MODULE_DIR = os.path.join(BIN, "..", "lib", "peerpod")
PROVIDERS = ("local",) + tuple(sorted(
    m.group(1) for m in (re.match(r"^pp-provider-([a-z0-9_-]+)\.so$", f)
                         for f in os.listdir(MODULE_DIR)) if m))
SUPPORT = {"supported": "supported", "no effect": "noop", "warned": "warn", "refused": "refuse"}

# What a provider needs to get as far as its settings at start-up, without
# reaching anything.
PROVIDER_ENV = {
    "local": {},
    "aws": {"AWS_REGION": "us-east-1", "PODVM_AMI_ID": "ami-0123456789abcdef0",
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
    "azure": {"AZURE_SUBSCRIPTION_ID": "11111111-2222-3333-4444-555555555555",
              "AZURE_REGION": "eastus", "AZURE_RESOURCE_GROUP": "rg",
              "AZURE_SUBNET_ID": "/subscriptions/11111111-2222-3333-4444-555555555555/"
                                 "resourceGroups/rg/providers/Microsoft.Network/"
                                 "virtualNetworks/v/subnets/s",
              "AZURE_IMAGE_ID": "/CommunityGalleries/g/Images/podvm/Versions/0.1.0",
              "AZURE_AUTHORITY_HOST": "http://127.0.0.1:9",
              "AZURE_RESOURCE_MANAGER_ENDPOINT": "http://127.0.0.1:9",
              "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:9"},
    "libvirt": {"LIBVIRT_URI": "test:///default", "LIBVIRT_POOL": "default-pool",
                "DISABLECVM": "false"},
    "gcp": {"GCP_PROJECT_ID": "doc-project", "GCP_ZONE": "us-central1-a",
            "GCP_NETWORK": "default", "GCP_CONFIDENTIAL_TYPE": "SEV",
            "GCP_MACHINE_TYPE": "n2d-standard-2", "GCE_METADATA_HOST": "127.0.0.1:9",
            "GCP_COMPUTE_ENDPOINT": "http://127.0.0.1:9/compute/v1/"},
    "ibmcloud": {"IBMCLOUD_API_KEY": "key", "IBMCLOUD_ZONE": "us-south-1",
                 "IBMCLOUD_VPC_ID": "r006-vpc", "IBMCLOUD_VPC_SUBNET_ID": "0717-subnet",
                 "IBMCLOUD_PODVM_IMAGE_ID": "r006-image",
                 "IBMCLOUD_PODVM_INSTANCE_PROFILE_NAME": "bx2-2x8",
                 "IBMCLOUD_VPC_ENDPOINT": "http://127.0.0.1:9/v1"},
}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def parse_doc(path):
    """{section: [row dict]} from the `## name` tables."""
    sections, cur = {}, None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        m = re.match(r"^## (.+)$", line)
        if m:
            cur = m.group(1).strip()
            continue
        if cur is None or not line.startswith("|") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "variable":
            sections.setdefault(cur, [])
            continue
        if len(cells) != 6:
            fail(f"{cur}: a row without 6 cells: {line}")
            continue
        var, flag, upstream, here, default, meaning = cells
        unq = lambda s: None if s == "-" else s.strip("`")  # noqa: E731
        row = {"env": unq(var), "flag": unq(flag), "upstream": upstream, "here": here,
               "default": default.strip("`"), "meaning": meaning, "line": line}
        if row["flag"] is not None:
            row["flag"] = row["flag"].lstrip("-")
        m = re.match(r"^(supported|no effect|warned|refused)", here)
        if m is None:
            fail(f"{cur}: `{here}` is not supported, no effect, warned or refused")
            continue
        row["support"] = SUPPORT[m.group(1)]
        row["warned"] = re.findall(r"warned \(`([^`]*)`\)", here)
        row["refused"] = re.findall(r"refused \(`([^`]*)`\)", here)
        sections[cur].append(row)
    return sections


def listing(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)}: exit {out.returncode}: {out.stderr}")
    rows = {}
    for line in out.stdout.splitlines():
        env, flag, kind, support, default = line.split("\t")
        key = (None if env == "-" else env, None if flag == "-" else flag)
        rows[key] = {"kind": kind, "support": support, "default": default}
    return rows


def compare(section, doc_rows, prog_rows):
    doc = {(r["env"], r["flag"]): r for r in doc_rows}
    for key in prog_rows.keys() - doc.keys():
        fail(f"{section}: setting {key} is not in the document")
    for key in doc.keys() - prog_rows.keys():
        fail(f"{section}: the document's {key} is no setting of the program")
    for key in doc.keys() & prog_rows.keys():
        d, p = doc[key], prog_rows[key]
        if d["support"] != p["support"]:
            fail(f"{section}: {key}: the document says {d['support']}, the program {p['support']}")
        if d["default"] != p["default"]:
            fail(f"{section}: {key}: the document's default `{d['default']}`, "
                 f"the program's `{p['default']}`")
    print(f"{section}: {len(doc)} rows, {len(prog_rows)} settings compared")


class Daemon:
    """cloud-api-adaptor in a network namespace and a directory of its own."""

    def __init__(self, provider, env, flags):
        self.dir = tempfile.mkdtemp(prefix="pp-config-doc-")
        self.sock = os.path.join(self.dir, "hv.sock")
        e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NODE_NAME": "doc-node",
             "REMOTE_HYPERVISOR_ENDPOINT": self.sock, "PODS_DIR": os.path.join(self.dir, "pods"),
             "LOCAL_STATE_DIR": os.path.join(self.dir, "vms"),
             "LOCAL_NETNS_DIR": os.path.join(self.dir, "netns"), "PROXY_TIMEOUT": "5s"}
        e.update(PROVIDER_ENV.get(provider, {}))
        e.update(env)
        self.log = open(os.path.join(self.dir, "caa.log"), "w+")
        self.proc = subprocess.Popen(["unshare", "--net", CAA, provider] + flags, env=e,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_serving(self, seconds=30):
        """Until its log says it serves (its signal handlers are in place by
        then: the socket alone comes a little earlier)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.log.flush()
            with open(self.log.name) as f:
                if f"serving `{self.sock}`" in f.read():
                    return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def finish(self, seconds=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.seek(0)
        text = self.log.read()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return code, text


def warnings_of(text):
    return [l for l in text.splitlines() if "which has no effect here" in l]


def check_warned(section, provider, rows):
    """One start with every warned value as a variable, one with the flags."""
    warned = [r for r in rows if r["warned"]]
    noop = [r for r in rows if r["support"] == "noop"]
    for form in ("variable", "flag"):
        env, flags, expect = {}, [], []
        for r in warned:
            if form == "variable" and r["env"]:
                env[r["env"]] = r["warned"][0]
                expect.append(f"environment variable `{r['env']}` is set to `{r['warned'][0]}`")
            elif form == "flag" and r["flag"]:
                flags += [f"-{r['flag']}", r["warned"][0]]
                expect.append(f"flag `-{r['flag']}` is set to `{r['warned'][0]}`")
        for r in noop:
            value = "true" if "cloud-config-verify" == r["flag"] else "10.244.0.0/16"
            if form == "variable" and r["env"]:
                env[r["env"]] = value
            elif form == "flag" and r["flag"]:
                flags += [f"-{r['flag']}={value}"]
        if not expect:
            continue
        d = Daemon(provider, env, flags)
        serving = d.wait_serving()
        code, text = d.finish()
        if not serving or code != 0:
            fail(f"{section}: with warned {form}s the daemon did not serve and stop cleanly "
                 f"(exit {code}):\n{text}")
            continue
        got = warnings_of(text)
        for want in expect:
            n = sum(want in l for l in got)
            if n != 1:
                fail(f"{section}: `{want}` warned {n} times:\n" + "\n".join(got))
        for r in noop:
            name = r["env"] if form == "variable" else f"-{r['flag']}"
            if name and any(f"`{name}`" in l for l in got):
                fail(f"{section}: {name}, which has no effect, was warned about")
        print(f"{section}: {len(expect)} warned {form}s warned once each, "
              f"{len(noop)} without effect not warned; the daemon served")


def check_refused(section, provider, rows):
    for r in rows:
        for value in r["refused"]:
            forms = []
            if r["env"]:
                forms.append(({r["env"]: value}, [], f"`{r['env']}`"))
            if r["flag"]:
                forms.append(({}, [f"-{r['flag']}", value], f"`-{r['flag']}`"))
            for env, flags, name in forms:
                d = Daemon(provider, env, flags)
                serving = d.wait_serving(20)
                code, text = d.finish()
                if serving or code == 0 or name not in text:
                    fail(f"{section}: {name}={value} was not refused by name "
                         f"(exit {code}, serving {serving}):\n{text}")
                else:
                    line = [l for l in text.splitlines() if name in l][0]
                    print(f"{section}: {name}={value} refused, exit {code}: "
                          f"{line.split(': ', 1)[-1]}")


def config_map(path):
    """The `data` and `stringData` keys of the documents in `path`."""
    out, inside = {}, False
    for line in open(path, encoding="utf-8"):
        if re.match(r"^(data|stringData):\s*$", line):
            inside = True
            continue
        if not line.startswith("  "):
            inside = False
            continue
        m = re.match(r'^  ([A-Z0-9_]+): "(.*)"\s*$', line)
        if inside and m:
            out[m.group(1)] = m.group(2)
    return out


# What points the daemon at nothing instead of a cloud or a host.
CM_OVERRIDES = {
    "aws": {"AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9/"},
    "azure": {"AZURE_AUTHORITY_HOST": "http://127.0.0.1:9",
              "AZURE_RESOURCE_MANAGER_ENDPOINT": "http://127.0.0.1:9",
              "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:9"},
    "libvirt": {"LIBVIRT_URI": "test:///default", "LIBVIRT_POOL": "default-pool"},
    "gcp": {"GCE_METADATA_HOST": "127.0.0.1:9",
            "GCP_COMPUTE_ENDPOINT": "http://127.0.0.1:9/compute/v1/",
            "GCP_RESOURCE_MANAGER_ENDPOINT": "http://127.0.0.1:9/v3/"},
}


def check_config_maps(lists):
    for provider in sorted(CM_OVERRIDES):
        path = os.path.join(DATA, f"peer-pods-cm-{provider}.yaml")
        if provider not in PROVIDERS:
            print(f"peer-pods-cm ({provider}): the provider is not built; not checked")
            continue
        cm = config_map(path)
        known = {k[0] for k in lists[provider] if k[0]}
        unknown = sorted(set(cm) - known)
        if unknown:
            fail(f"peer-pods-cm ({provider}): keys no setting reads: {unknown}")
        env = dict(cm)
        for k in ("PODS_DIR", "REMOTE_HYPERVISOR_ENDPOINT"):
            if env.get(k) == "":
                del env[k]  # unset: the test's own paths stand in for the defaults
        env.update(CM_OVERRIDES[provider])
        PROVIDER_ENV_SAVED = PROVIDER_ENV[provider]
        PROVIDER_ENV[provider] = {}
        d = Daemon(provider, env, [])
        PROVIDER_ENV[provider] = PROVIDER_ENV_SAVED
        serving = d.wait_serving()
        code, text = d.finish()
        if not serving or code != 0:
            fail(f"peer-pods-cm ({provider}): the daemon did not serve with it (exit {code}):\n"
                 f"{text}")
            continue
        if warnings_of(text):
            fail(f"peer-pods-cm ({provider}): warned: {warnings_of(text)}")
        print(f"peer-pods-cm ({provider}): {len(cm)} keys, all settings; the daemon served "
              f"with them and stopped")


def main():
    if os.geteuid() != 0:
        print("config_doc: needs root (the local provider); skipping")
        return 77
    sections = parse_doc(DOC)
    lists = {p: listing([CAA, p, "-list-settings"]) for p in PROVIDERS}
    daemon = {k: v for k, v in lists["local"].items()
              if all(k in lists[p] for p in PROVIDERS)}
    expected = {"cloud-api-adaptor": daemon}
    for p in PROVIDERS:
        expected[f"{p} provider"] = {k: v for k, v in lists[p].items() if k not in daemon}
    expected["agent-protocol-forwarder"] = listing([APF, "-list-settings"])
    expected["process-user-data"] = listing([PUD, "-list-settings"])
    for name in sections:
        if name.endswith(" provider") and name[:-len(" provider")] not in PROVIDERS:
            print(f"{name}: no such module built in {MODULE_DIR}; not compared")
    for name, rows in expected.items():
        if name not in sections:
            fail(f"the document has no table `## {name}`")
            continue
        compare(name, sections[name], rows)
    # Behaviour: the daemon's with the local provider, each provider's own.
    check_warned("cloud-api-adaptor", "local", sections.get("cloud-api-adaptor", []))
    check_refused("cloud-api-adaptor", "local", sections.get("cloud-api-adaptor", []))
    for p in PROVIDERS:
        rows = sections.get(f"{p} provider", [])
        check_warned(f"{p} provider", p, rows)
        check_refused(f"{p} provider", p, rows)
    check_config_maps(lists)
    if failures:
        print(f"{len(failures)} failures")
        return 1
    print("docs/configuration.md agrees with the programs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
