"""Renders every kustomize overlay under overlays/ with `kubectl kustomize`
and checks what a cluster would be handed:

  - every object deserializes into its Kubernetes API model (Debian's
    python3-kubernetes) with no field the model lacks, each value of the
    type the model declares, and the model's own validation passing;
  - the deployment's shape: namespace, DaemonSet, RuntimeClass, probes;
  - every key of peer-pods-cm and peer-pods-secret, and every key the
    overlay's env files show commented out, is a setting the daemon
    accepts for that overlay's provider, read from the daemon itself
    (`cloud-api-adaptor <provider> -list-settings`).

Usage: check_overlays.py [--no-settings] OVERLAYS_DIR CLOUD_API_ADAPTOR
(--no-settings leaves out the last check, for a daemon without
-list-settings.)
Prints one line per check and "N passed, N failed" last; exits non-zero on
any failure."""
import datetime
import os
import re
import subprocess
import sys

import yaml

try:
    import kubernetes.client as k8s
except ImportError:
    print("skip: /usr/bin/python3 lacks the kubernetes module (python3-kubernetes)")
    sys.exit(77)

passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print("ok   %s" % what)
    else:
        failed += 1
        print("FAIL %s" % what)
    return ok


# ---- strict deserialization ------------------------------------------------

PRIMITIVES = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "object": (object,),
    "date": (str, datetime.date),
    "datetime": (str, datetime.datetime),
}


def strict(value, typ, path, errors):
    """Walks `value` against the model type name `typ` as python-kubernetes
    declares it, collecting every unknown field and wrong type."""
    if value is None:
        return
    m = re.match(r"list\[(.*)\]$", typ)
    if m:
        if not isinstance(value, list):
            errors.append("%s: a list expected, got %r" % (path, value))
            return
        for i, v in enumerate(value):
            strict(v, m.group(1), "%s[%d]" % (path, i), errors)
        return
    m = re.match(r"dict\(([^,]*), (.*)\)$", typ)
    if m:
        if not isinstance(value, dict):
            errors.append("%s: a map expected, got %r" % (path, value))
            return
        for k, v in value.items():
            strict(v, m.group(2), "%s.%s" % (path, k), errors)
        return
    if typ in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[typ])
        if typ == "int" and isinstance(value, bool):
            ok = False
        if not ok:
            errors.append("%s: %s expected, got %r" % (path, typ, value))
        return
    cls = getattr(k8s, typ, None)
    if cls is None:
        errors.append("%s: no model %s" % (path, typ))
        return
    if not isinstance(value, dict):
        errors.append("%s: an object (%s) expected, got %r" % (path, typ, value))
        return
    by_json = {j: a for a, j in cls.attribute_map.items()}
    for key, v in value.items():
        if key not in by_json:
            errors.append("%s.%s: unknown field of %s" % (path, key, typ))
            continue
        strict(v, cls.openapi_types[by_json[key]], "%s.%s" % (path, key), errors)


def model_name(obj):
    version = obj["apiVersion"].split("/")[-1]
    return version[0].upper() + version[1:] + obj["kind"]


def deserialize(obj):
    """The model object, as the client builds it (its setters validate
    required fields and enumerations)."""
    api = k8s.ApiClient()
    return api._ApiClient__deserialize(obj, model_name(obj))


# ---- the daemon's settings -------------------------------------------------


def settings_of(caa, provider):
    out = subprocess.run(
        [caa, provider, "-list-settings"], capture_output=True, text=True, timeout=60
    )
    if out.returncode != 0:
        raise RuntimeError("%s %s -list-settings: %s" % (caa, provider, out.stderr.strip()))
    rows = {}
    for line in out.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) == 5 and cols[0] != "-":
            rows[cols[0]] = {"flag": cols[1], "kind": cols[2], "support": cols[3], "default": cols[4]}
    return rows


def env_file_keys(path):
    """Keys set, and keys shown commented out with their default
    (#KEY=value), in an env file: {key: (commented, value)}."""
    keys = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"(#?)([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
            if m:
                keys[m.group(2)] = (m.group(1) == "#", m.group(3))
    return keys


# ---- one overlay -----------------------------------------------------------


def find(objs, kind, name):
    for o in objs:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    return None


def check_overlay(overlays, name, caa, with_settings):
    d = os.path.join(overlays, name)
    r = subprocess.run(["kubectl", "kustomize", d], capture_output=True, text=True, timeout=120)
    if not check(r.returncode == 0, "%s: renders (%s)" % (name, r.stderr.strip()[:200])):
        return
    objs = [o for o in yaml.safe_load_all(r.stdout) if o]
    for o in objs:
        what = "%s: %s/%s" % (name, o.get("kind"), o.get("metadata", {}).get("name"))
        errors = []
        strict(o, model_name(o), o["kind"], errors)
        check(not errors, "%s deserializes with no unknown field %s" % (what, "; ".join(errors)))
        try:
            deserialize(o)
            check(True, "%s passes the model's validation" % what)
        except (ValueError, TypeError) as e:
            check(False, "%s passes the model's validation: %s" % (what, e))

    ns = "confidential-containers-system"
    check(find(objs, "Namespace", ns) is not None, "%s: namespace %s" % (name, ns))
    for o in objs:
        if o["kind"] not in ("Namespace", "RuntimeClass"):
            check(o["metadata"].get("namespace") == ns, "%s: %s/%s in %s" % (name, o["kind"], o["metadata"]["name"], ns))
    rc = find(objs, "RuntimeClass", "kata-remote")
    check(rc is not None and rc["handler"] == "kata-remote", "%s: RuntimeClass kata-remote, handler kata-remote" % name)
    check(rc is not None and "podFixed" in rc.get("overhead", {}), "%s: kata-remote has a pod overhead" % name)
    ds = find(objs, "DaemonSet", "cloud-api-adaptor-daemonset")
    if not check(ds is not None, "%s: DaemonSet cloud-api-adaptor-daemonset" % name):
        return
    spec = ds["spec"]["template"]["spec"]
    check(spec.get("hostNetwork") is True, "%s: host network" % name)
    upd = ds["spec"]["updateStrategy"]
    check(upd["type"] == "RollingUpdate" and upd["rollingUpdate"]["maxUnavailable"] == 1
          and upd["rollingUpdate"].get("maxSurge", 0) == 0, "%s: rolling update, one node at a time" % name)
    c = spec["containers"][0]
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    check("/run/peerpod" in mounts and "/run/netns" in mounts, "%s: /run/peerpod and /run/netns mounted" % name)
    check(mounts.get("/run/netns", {}).get("mountPropagation") in ("HostToContainer", "Bidirectional"),
          "%s: /run/netns sees the node's mounts" % name)
    cm = find(objs, "ConfigMap", "peer-pods-cm")
    secret = find(objs, "Secret", "peer-pods-secret")
    check(cm is not None and secret is not None, "%s: peer-pods-cm and peer-pods-secret" % name)
    refs = [e.get("configMapRef", e.get("secretRef", {})).get("name") for e in c.get("envFrom", [])]
    check(refs == ["peer-pods-cm", "peer-pods-secret"], "%s: the container's environment comes from both" % name)
    provider = (cm or {}).get("data", {}).get("CLOUD_PROVIDER")
    if name == "base":
        provider = "local"
    if not check(provider is not None, "%s: CLOUD_PROVIDER is set" % name):
        return

    if not with_settings:
        return
    try:
        known = settings_of(caa, provider)
    except (RuntimeError, subprocess.SubprocessError) as e:
        check(False, "%s: the daemon's settings for `%s`: %s" % (name, provider, e))
        return
    probe = known.get("PROBE_PORT", {}).get("default")
    for kind in ("startupProbe", "livenessProbe"):
        p = c.get(kind, {}).get("httpGet", {})
        check(p.get("host") == "127.0.0.1" and str(p.get("port")) == str(probe),
              "%s: %s on 127.0.0.1, port %s (PROBE_PORT's default)" % (name, kind, probe))

    keys = set((cm or {}).get("data", {})) | set((secret or {}).get("data", {}) or {}) | set((secret or {}).get("stringData", {}) or {})
    shown = {}
    for f in ("peer-pods-cm.env", "peer-pods-secret.env"):
        p = os.path.join(d, f)
        if os.path.exists(p):
            shown.update(env_file_keys(p))
    keys |= set(shown)
    for k in sorted(keys):
        row = known.get(k)
        check(row is not None and row["support"] == "supported",
              "%s: `%s` is a setting the daemon supports for `%s`%s"
              % (name, k, provider, "" if row is None else " (%s)" % row["support"]))
        # A line commented out shows the default: the daemon's, where it
        # has a fixed one.
        commented, value = shown.get(k, (False, None))
        if row is not None and commented and row["default"] != "-":
            check(value == row["default"], "%s: `#%s=%s` shows the default `%s`" % (name, k, value, row["default"]))


def main():
    args = sys.argv[1:]
    with_settings = "--no-settings" not in args
    overlays, caa = [a for a in args if a != "--no-settings"]
    if subprocess.run(["kubectl", "version", "--client"], capture_output=True).returncode != 0:
        print("skip: no kubectl on PATH")
        sys.exit(77)
    names = sorted(n for n in os.listdir(overlays) if os.path.exists(os.path.join(overlays, n, "kustomization.yaml")))
    check("base" in names and len(names) >= 4, "overlays found: %s" % ", ".join(names))
    for n in names:
        check_overlay(overlays, n, caa, with_settings)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
