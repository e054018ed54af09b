#!/usr/bin/python3
"""N pod lifecycles through cloud-api-adaptor against a fake cloud with 20%
of the cloud's requests faulted (tests/conformance/README.md).

Run under a fake (which sets FAKE_URL and the provider's settings):
    caa_lifecycles.py PROVIDER N BINDIR

BINDIR holds cloud-api-adaptor, pp-shim, agent-protocol-forwarder and
pp-test-agent. Every VM the fake makes gets 127.0.0.1, where one forwarder
(plaintext: the adaptor runs with DISABLE_TLS, since one forwarder stands
in for every pod VM and a pod's TLS identity is its own) bridges to one
test agent. 16 shims at a time each drive CreateVM, StartVM (a check of
the agent's health through the adaptor on every tenth), StopVM, with the
StopVM repeated until it succeeds, as the kata shim and the adaptor's
restart would. At the end: nothing alive in the fake (VMs and whatever
else it keeps), no sandbox that ever had two VMs, no request refused, the
requests never above the configured rate, and no secret in the adaptor's
log.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def ctl(url, path, body=None):
    req = urllib.request.Request(url + path, data=body.encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=60).read().decode())


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(path, proc, what, secs=20):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            raise SystemExit(f"FAIL: {what} exited with {proc.returncode}")
        time.sleep(0.05)
    raise SystemExit(f"FAIL: {what}: no {path}")


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    provider, total, bindir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    url = os.environ.get("FAKE_URL")
    if not url:
        print("run me under a fake cloud", file=sys.stderr)
        return 77
    rate, burst = float(os.environ["FAKE_RATE"]), int(os.environ["FAKE_BURST"])
    shim = os.path.join(bindir, "pp-shim")
    work = tempfile.mkdtemp(prefix="pp-caa-lifecycles-")
    procs = []
    logs = []

    def start(args, log, env=None):
        f = open(os.path.join(work, log), "wb")
        logs.append(f)
        p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env)
        procs.append(p)
        return p

    try:
        ctl(url, "/_fake/reset", "{}")
        ctl(url, "/_fake/config", json.dumps({"private_ip": "127.0.0.1", "expect_rate": rate,
                                              "expect_burst": burst}))
        agent_sock = os.path.join(work, "agent.sock")
        agent = start([os.path.join(bindir, "pp-test-agent"), "-socket", agent_sock], "agent.log")
        wait_for(agent_sock, agent, "pp-test-agent")
        port = free_port()
        start([os.path.join(bindir, "agent-protocol-forwarder"), "-disable-tls",
               "-listen", f"127.0.0.1:{port}", "-kata-agent-socket", agent_sock,
               "-pod-namespace", "/nonexistent"], "apf.log")
        hv = os.path.join(work, "hv.sock")
        env = dict(os.environ, CLOUD_PROVIDER=provider, REMOTE_HYPERVISOR_ENDPOINT=hv,
                   PODS_DIR=os.path.join(work, "pods"), NODE_NAME="node-caa",
                   FORWARDER_PORT=str(port), DISABLE_TLS="true", PROXY_TIMEOUT="10s",
                   PEERPODS_LIMIT_PER_NODE="0",
                   PP_LOG_LEVEL="info")
        for k in ("HTTPS_PROXY", "https_proxy", "http_proxy"):
            env.pop(k, None)
        caa = start([os.path.join(bindir, "cloud-api-adaptor")], "caa.log", env)
        wait_for(hv, caa, "cloud-api-adaptor")
        ctl(url, "/_fake/config", json.dumps({"fault_rate": 0.2, "seed": 1234,
                                              "timeout_s": 0.6}))

        lock = threading.Lock()
        counts = {"started": 0, "start_failed": 0, "health_ok": 0, "stop_retries": 0, "done": 0}
        first_error = []
        failed_by_code = {}  # gRPC code -> [count, first message]
        next_idx = [0]

        def shim_call(*args, timeout=120):
            r = subprocess.run([shim, "-socket", hv, "-timeout", "90", *args],
                               capture_output=True, text=True, timeout=timeout)
            return r.returncode, r.stdout.strip(), r.stderr.strip()

        def worker():
            while True:
                with lock:
                    if next_idx[0] >= total:
                        return
                    i = next_idx[0]
                    next_idx[0] += 1
                sid = f"{i * 2654435761 % (1 << 32):08x}{i:024d}"
                rc, sock, err = shim_call("create", sid, "-pod", f"pod{i}", "-namespace",
                                          "default")
                if rc != 0:
                    raise SystemExit(f"FAIL: CreateVM {sid}: {rc} {err}")
                rc, _, err = shim_call("start", sid)
                with lock:
                    if rc == 0:
                        counts["started"] += 1
                    else:
                        counts["start_failed"] += 1
                        if not first_error:
                            first_error.append(err)
                        code = err.split("StartVM: ", 1)[-1].split(":", 1)[0]
                        by = failed_by_code.setdefault(code, [0, err])
                        by[0] += 1
                if rc == 0 and i % 10 == 0:
                    hrc, out, herr = shim_call("health", sock)
                    if hrc != 0 or out != "health SERVING":
                        raise SystemExit(f"FAIL: health through {sock}: {hrc} {out} {herr}")
                    with lock:
                        counts["health_ok"] += 1
                for attempt in range(20):
                    rc, _, err = shim_call("stop", sid)
                    if rc == 0:
                        break
                    with lock:
                        counts["stop_retries"] += 1
                else:
                    raise SystemExit(f"FAIL: StopVM {sid} never succeeded: {err}")
                with lock:
                    counts["done"] += 1
                    if counts["done"] % 100 == 0:
                        print(f"  {counts['done']}/{total} pod lifecycles", flush=True)

        errors = []

        def run():
            try:
                worker()
            except BaseException as e:  # noqa: B902 - reported below
                errors.append(str(e))

        t0 = time.monotonic()
        threads = [threading.Thread(target=run) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        secs = time.monotonic() - t0
        if errors:
            status = caa.poll()
            print("--- cloud-api-adaptor " + ("running" if status is None else
                                             f"exited with {status}") + ", its log (tail)")
            print(open(os.path.join(work, "caa.log"), errors="replace").read()[-6000:])
            raise SystemExit(errors[0])
        ctl(url, "/_fake/config", json.dumps({"fault_rate": 0}))
        caa.send_signal(signal.SIGTERM)
        caa.wait(timeout=30)
        rep = ctl(url, "/_fake/report")
        alive = rep["alive_resources"]
        print(f"{provider}: {total} pod lifecycles through cloud-api-adaptor in {secs:.1f} s: "
              f"{counts['started']} started, {counts['start_failed']} StartVM failed (first: "
              f"{first_error[0] if first_error else 'none'}), {counts['health_ok']} health "
              f"checks through the adaptor, {counts['stop_retries']} StopVM retries")
        for code, (n, msg) in sorted(failed_by_code.items()):
            print(f"  StartVM failed with {code}: {n} (first: {msg[:200]})")
        print(f"fake: {rep['requests']} requests, {rep['faults_total']} faults "
              f"{json.dumps(rep['faults'])}, {rep['created']} VMs made, left {json.dumps(alive)}, "
              f"{len(rep['duplicates'])} sandboxes with two VMs, {rep['refused_count']} refused; "
              f"max {rep['max_rate_1s']} requests in any second (limit {rate}/s, burst {burst}; "
              f"excess {rep['rate_excess']:.2f}; the fake's longest stall "
              f"{rep['max_stall_s'] * 1000:.0f} ms)")
        bad = []
        if sum(alive.values()) != 0:
            bad.append(f"resources left: {alive}")
        if rep["duplicates"]:
            bad.append(f"sandboxes with two VMs: {rep['duplicates']}")
        if rep["refused_count"]:
            bad.append(f"requests refused: {rep['refused']}")
        if rep["rate_excess"] > 0:
            bad.append("requests above the configured rate")
        if rep["faults_total"] * 100 < rep["requests"] * 15:
            bad.append("fewer than 15% of the requests were faulted")
        if counts["started"] < total * 8 // 10:
            bad.append("fewer than 80% of the pods started")
        log = open(os.path.join(work, "caa.log"), errors="replace").read()
        for s in rep.get("secrets", []):
            if s in log:
                bad.append("a secret is in the adaptor's log")
                break
        if bad:
            print("--- cloud-api-adaptor log (tail)")
            print(log[-6000:])
            for b in bad:
                print(f"FAIL: {b}")
            return 1
        print("ok: nothing left, one VM per sandbox, within the rate, no secret logged")
        return 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for f in logs:
            f.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
