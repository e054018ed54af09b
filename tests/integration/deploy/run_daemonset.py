"""Runs the adaptor's image the way the `local` overlay's DaemonSet says,
with podman, on a node this test makes, and drives a pod through it:

  1. builds the image (overlays/image/build.sh, cached by content) and
     loads it under the name the overlay gives;
  2. renders overlays/local with `kubectl kustomize` and turns the
     DaemonSet's pod template into a `podman run`: image, command, the
     environment from peer-pods-cm and peer-pods-secret and the env
     entries, host paths with their mount propagation, capabilities,
     privileges, read-only root, host network and host PID;
  3. the node: a network namespace of its own (host network means this
     one), and its /run/peerpod and /run/netns under a directory of the
     test, so the machine's are never touched;
  4. waits for the startup probe as the kubelet would, checks the liveness
     probe, drives CreateVM, StartVM and an agent call with pp-shim
     through the host-path socket, scrapes /metrics;
  5. replaces the container with a new one from the same image, as a
     rolling update does (the old one stopped first: maxSurge 0), waits for
     the startup probe again, and checks the running pod still answers its
     agent calls and was adopted; then StopVM, and nothing is left.

Usage: run_daemonset.py SOURCE_DIR BUILD_DIR
Prints one line per check and "N passed, N failed" last; exit 77 (skip)
without root, podman, buildah or kubectl."""
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import yaml

NODE_NAME = "deploy-node"
passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print("ok   %s" % what, flush=True)
    else:
        failed += 1
        print("FAIL %s" % what, flush=True)
    return ok


def run(args, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run(args, **kw)


def must(args, **kw):
    r = run(args, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), r.returncode, (r.stderr or "").strip()[-2000:]))
    return r


def skip(why):
    print("skip: %s" % why)
    sys.exit(77)


class Node:
    """The node: a directory standing in for its file system under /run,
    and a network namespace for its network."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="pp-deploy-node-")
        self.netns = "ppdeploy-%d" % os.getpid()
        must(["ip", "netns", "add", self.netns])
        must(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        self.mounts = []

    def path(self, host_path):
        """Where a hostPath of the node is on this machine: the node's state
        (/run) under the test's directory, its kernel's file systems (/sys)
        as they are."""
        if host_path.startswith("/sys/"):
            return host_path
        return os.path.join(self.root, host_path.lstrip("/"))

    def make_shared(self, path):
        # Bidirectional propagation needs a shared mount at the source.
        must(["mount", "--bind", path, path])
        must(["mount", "--make-shared", path])
        self.mounts.append(path)

    def http(self, port, path, host="127.0.0.1"):
        """GET on the node's network: (status, body)."""
        code = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            "    r = urllib.request.urlopen(sys.argv[1], timeout=5); print(r.status); sys.stdout.write(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code); sys.stdout.write(e.read().decode())\n"
            "except Exception as e:\n"
            "    print(0); print(e)\n"
        )
        r = run(["ip", "netns", "exec", self.netns, "/usr/bin/python3", "-c", code,
                 "http://%s:%s%s" % (host, port, path)], timeout=30)
        out = r.stdout
        first, _, body = out.partition("\n")
        try:
            return int(first), body
        except ValueError:
            return 0, out

    def shim(self, bindir, *args):
        """pp-shim as the kata shim runs on the node: with the node's
        /run/peerpod at /run/peerpod (a private mount namespace)."""
        script = (
            "mount --make-rprivate / && mount -t tmpfs pp-run /run && mkdir /run/peerpod && "
            "mount --bind %s /run/peerpod && exec %s/pp-shim -timeout 120 %s"
            % (self.path("/run/peerpod"), bindir, " ".join(args))
        )
        return run(["unshare", "--mount", "sh", "-c", script], timeout=300)

    def cleanup(self):
        for p in reversed(self.mounts):
            for entry in os.listdir(p) if os.path.isdir(p) else []:
                run(["umount", os.path.join(p, entry)])
            run(["umount", p])
        run(["ip", "netns", "del", self.netns])
        shutil.rmtree(self.root, ignore_errors=True)


def podman_env():
    conf = os.path.join(tempfile.gettempdir(), "pp-deploy-containers.conf")
    with open(conf, "w") as f:
        # Setting rlimits is refused here; runc, since crun refuses this
        # machine's cgroup layout.
        f.write("[containers]\ndefault_ulimits = []\n")
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = conf
    return env


def render(src):
    r = must(["kubectl", "kustomize", os.path.join(src, "overlays", "local")])
    objs = [o for o in yaml.safe_load_all(r.stdout) if o]
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    return (by[("DaemonSet", "cloud-api-adaptor-daemonset")], by[("ConfigMap", "peer-pods-cm")],
            by[("Secret", "peer-pods-secret")])


def podman_args(ds, cm, secret, node, name, env_file):
    """`podman run` arguments for the DaemonSet's pod template."""
    spec = ds["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    args = ["run", "-d", "--name", name, "--runtime", "runc"]
    if spec.get("hostNetwork"):
        args += ["--network", "ns:/run/netns/%s" % node.netns]
    if spec.get("hostPID"):
        args += ["--pid", "host"]
    sc = c.get("securityContext", {})
    if sc.get("privileged"):
        args.append("--privileged")
    for cap in sc.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    for cap in sc.get("capabilities", {}).get("add", []):
        args += ["--cap-add", cap]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    # The environment: envFrom in order, then env (which wins).
    env = {}
    for ref in c.get("envFrom", []):
        if "configMapRef" in ref:
            env.update(cm.get("data", {}))
        if "secretRef" in ref:
            env.update({k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()})
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
            env[e["name"]] = NODE_NAME
        else:
            raise RuntimeError("env `%s`: unsupported source %r" % (e["name"], e))
    with open(env_file, "w") as f:
        for k, v in env.items():
            f.write("%s=%s\n" % (k, v))
    args += ["--env-file", env_file]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    propagation = {None: "", "None": "", "HostToContainer": ":rslave", "Bidirectional": ":rshared"}
    for m in c.get("volumeMounts", []):
        v = volumes[m["name"]]
        if "hostPath" not in v:
            raise RuntimeError("volume `%s`: only host paths here" % m["name"])
        src = node.path(v["hostPath"]["path"])
        if v["hostPath"].get("type") == "DirectoryOrCreate":
            os.makedirs(src, exist_ok=True)
        prop = propagation[m.get("mountPropagation")]
        if prop == ":rshared" and src not in node.mounts:
            node.make_shared(src)
        args += ["-v", "%s:%s%s%s" % (src, m["mountPath"], ":ro" if m.get("readOnly") else "", prop)]
    cmd = c.get("command", [])
    if cmd:
        args += ["--entrypoint", cmd[0]]
    args.append(c["image"])
    args += cmd[1:] + c.get("args", [])
    return args, env


def probe_wait(node, c, kind, deadline_s):
    """Polls a probe as the kubelet does, at most `deadline_s`; the status
    last seen and how long it took."""
    p = c[kind]["httpGet"]
    period = min(c[kind].get("periodSeconds", 10), 1)
    t0 = time.time()
    status = 0
    while time.time() - t0 < deadline_s:
        status, _ = node.http(p["port"], p["path"], p.get("host", "127.0.0.1"))
        if 200 <= status < 400:
            break
        time.sleep(period)
    return status, time.time() - t0


def sample(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def main():
    src, build = sys.argv[1], sys.argv[2]
    bindir = os.path.join(build, "bin")
    if os.geteuid() != 0:
        skip("needs root (network namespaces, mounts, podman)")
    for tool in ("podman", "buildah", "kubectl", "runc"):
        if shutil.which(tool) is None:
            skip("no `%s` (scripts/setup.sh installs podman, buildah and runc; kubectl comes with the machine)" % tool)
    penv = podman_env()

    t0 = time.time()
    r = must(["bash", os.path.join(src, "overlays", "image", "build.sh"), "--build-dir", build], timeout=600)
    archive = r.stdout.strip().splitlines()[-1]
    size = re.search(r"image size: (\d+) bytes", r.stderr)
    check(size is not None and int(size.group(1)) <= 64 << 20,
          "image built in %.1f s, %s bytes uncompressed" % (time.time() - t0, size.group(1) if size else "?"))
    ds, cm, secret = render(src)
    c = ds["spec"]["template"]["spec"]["containers"][0]
    before = run(["podman", "image", "inspect", "--format", "{{.Id}}", c["image"]], env=penv).stdout.strip()
    loaded = must(["podman", "load", "-q", "-i", archive], env=penv).stdout
    ref = re.search(r"Loaded image(?:\(s\))?: (\S+)", loaded).group(1)
    must(["podman", "tag", ref, c["image"]], env=penv)
    # One image of ours in the store: the name the overlay gives.
    run(["podman", "untag", c["image"], ref], env=penv)
    after = run(["podman", "image", "inspect", "--format", "{{.Id}}", c["image"]], env=penv).stdout.strip()
    if before and before != after:
        run(["podman", "rmi", "-f", before], env=penv)
    check(True, "image %s loaded as %s" % (ref, c["image"]))

    node = Node()
    names = ["pp-deploy-%d-a" % os.getpid(), "pp-deploy-%d-b" % os.getpid()]
    started = []
    try:
        args, env = podman_args(ds, cm, secret, node, names[0], os.path.join(node.root, "env"))
        print("podman %s" % " ".join(args), flush=True)
        must(["podman"] + args, env=penv)
        started.append(names[0])
        port = c["startupProbe"]["httpGet"]["port"]
        status, took = probe_wait(node, c, "startupProbe", 60)
        check(status == 200, "startup probe %d after %.1f s" % (status, took))
        status, body = node.http(port, c["livenessProbe"]["httpGet"]["path"])
        check(status == 200, "liveness probe %d" % status)
        # Nothing but the node's loopback.
        status, _ = node.http(port, "/healthz", host="127.0.0.2")
        check(status == 0, "not served beyond 127.0.0.1")

        sid = "deploy-sandbox-1"
        r = node.shim(bindir, "create", sid, "-pod", "deploy-pod", "-namespace", "default")
        check(r.returncode == 0, "CreateVM through the host-path socket %s" % r.stderr.strip()[-300:])
        agent_sock = r.stdout.strip().splitlines()[-1] if r.returncode == 0 else ""
        r = node.shim(bindir, "start", sid)
        check(r.returncode == 0, "StartVM %s" % r.stderr.strip()[-300:])
        r = node.shim(bindir, "health", agent_sock)
        check(r.returncode == 0 and "SERVING" in r.stdout, "agent call through the pod's socket: %s" % r.stdout.strip())
        status, text = node.http(port, "/metrics")
        check(status == 200, "metrics scraped")
        check(sample(text, 'caa_sandboxes{state="running"}') == 1, "metrics: one sandbox running")
        check(sample(text, 'caa_startvm_duration_seconds_count{stage="total"}') == 1, "metrics: one StartVM timed")
        check(sample(text, "caa_agent_proxy_calls_total") == 1, "metrics: one agent call")
        rss = sample(text, "process_resident_memory_bytes")
        check(rss is not None and rss > 0, "metrics: resident memory %s" % rss)

        # The rolling update: the old pod goes first (maxSurge 0), with the
        # DaemonSet's grace period, then the new one comes up.
        grace = ds["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
        t1 = time.time()
        must(["podman", "stop", "-t", str(grace), names[0]], env=penv)
        logs = run(["podman", "logs", names[0]], env=penv)
        must(["podman", "rm", names[0]], env=penv)
        started.remove(names[0])
        check("1 pod VMs running, kept for the next start" in (logs.stdout + logs.stderr), "the old adaptor stopped, leaving the pod VM (%.1f s)" % (time.time() - t1))
        args, _ = podman_args(ds, cm, secret, node, names[1], os.path.join(node.root, "env"))
        must(["podman"] + args, env=penv)
        started.append(names[1])
        status, took = probe_wait(node, c, "startupProbe", 60)
        check(status == 200, "new container: startup probe %d after %.1f s" % (status, took))
        r = node.shim(bindir, "health", agent_sock)
        check(r.returncode == 0 and "SERVING" in r.stdout,
              "the running pod answers its agent calls after the update: %s %s" % (r.stdout.strip(), r.stderr.strip()[-300:]))
        status, text = node.http(port, "/metrics")
        check(sample(text, 'caa_recovery_sandboxes_total{outcome="adopted"}') == 1, "metrics: the pod was adopted")
        check(sample(text, 'caa_sandboxes{state="running"}') == 1, "metrics: still one sandbox running")

        r = node.shim(bindir, "stop", sid)
        check(r.returncode == 0, "StopVM %s" % r.stderr.strip()[-300:])
        status, text = node.http(port, "/metrics")
        check(sample(text, 'caa_sandboxes{state="running"}') == 0, "metrics: nothing running")
        netns_left = [e for e in os.listdir(node.path("/run/netns"))]
        check(netns_left == [], "no pod VM namespace left: %s" % netns_left)
    except Exception as e:  # report, then clean up
        check(False, "unexpected: %s" % e)
    finally:
        for n in started:
            logs = run(["podman", "logs", n], env=penv)
            if failed:
                print("--- log of %s\n%s%s" % (n, logs.stdout, logs.stderr[-6000:]))
            run(["podman", "rm", "-f", "-t", "10", n], env=penv)
        # Pod VM processes this test's adaptor left behind, if a check failed.
        vms = node.path("/run/peerpod/local")
        for dirpath, _, files in os.walk(vms) if os.path.isdir(vms) else []:
            for f in files:
                if f.endswith(".pid"):
                    try:
                        pid = int(open(os.path.join(dirpath, f)).read().split()[0])
                        os.kill(pid, 9)
                    except (OSError, ValueError):
                        pass
        node.cleanup()
        # The pod VMs' cgroup, when it is empty again.
        for h in os.listdir("/sys/fs/cgroup") if os.path.isdir("/sys/fs/cgroup") else []:
            g = os.path.join("/sys/fs/cgroup", h, "peerpod-local")
            if os.path.isdir(g) and not os.path.islink(os.path.join("/sys/fs/cgroup", h)):
                try:
                    os.rmdir(g)
                except OSError:
                    pass
        if os.path.isdir("/sys/fs/cgroup/peerpod-local"):
            try:
                os.rmdir("/sys/fs/cgroup/peerpod-local")
            except OSError:
                pass
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
