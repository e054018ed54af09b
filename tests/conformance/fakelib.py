"""What every fake cloud of the conformance suite shares (README.md here).

A fake is a ThreadingHTTPServer on 127.0.0.1. This module gives it:

  - FakeState: configuration merged from POST /_fake/config, the request
    log (arrival times, counts per action), fault selection (a share of
    requests, or the n-th request exactly), the rate check against the
    client's configured limit, Retry-After bookkeeping, and the common part
    of the report;
  - ControlHandler: the control API (/_fake/reset, /_fake/config,
    /_fake/expire, /_fake/report, /_fake/missing-id, /_fake/user-data) and
    the answer to each injected fault;
  - main(): serve, run the command given after `--` with FAKE_URL, FAKE_RATE,
    FAKE_BURST and the provider's settings in its environment, exit with its
    status.

A fake subclasses both and supplies its cloud's answers (error bodies,
throttling, rejections) and state (what is alive, what was made twice).
"""
import argparse
import json
import os
import random
import subprocess
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Fault kinds every fake knows. A fake may add its own (capacity,
# create_error) and restrict some to the actions that create.
KINDS = ("throttle", "throttle_retry_after", "internal", "unavailable", "drop", "drop_after",
         "timeout", "reject")

COMMON_DEFAULTS = {
    "fault_rate": 0.0,         # share of API requests faulted
    "fault_kinds": {k: 1 for k in KINDS if k not in ("reject", "throttle_retry_after")},
    "fault_actions": None,     # None = every API action
    "fault_at": None,          # {"n": K, "kind": KIND}: the K-th API request from now
    "timeout_s": 1.0,          # how late a "timeout" answer comes
    "retry_after_s": 1,        # the Retry-After of throttle_retry_after
    "seed": 1,
    "token_ttl": 3600,         # lifetime of the credentials the fake issues
    "private_ip": "",          # one address for every VM (a test's loopback)
    "expect_rate": 0.0,        # the client's limit, for the report's rate check
    "expect_burst": 0,
    # Arrival is stamped when a handler thread has read the request: a stall
    # of the fake (the GIL, a loaded machine) delays the stamps of requests
    # that came in meanwhile and packs them closer. The check allows a stall
    # this long, and more where the fake measured that it stalled longer
    # (StallMonitor); a client without a limit still overshoots by far.
    "expect_lag_s": 0.05,
}


class StallMonitor:
    """Measures the fake's own stalls: a thread that asks to sleep 2 ms and
    records each wake-up that came much later. What delayed it (the GIL, a
    loaded machine) delayed the handler threads that stamp arrivals too."""

    TICK_S = 0.002
    LATE_S = 0.02

    def __init__(self):
        self.stalls = []  # (end, length) of every late wake-up
        self.lock = threading.Lock()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            t0 = time.monotonic()
            time.sleep(self.TICK_S)
            late = time.monotonic() - t0 - self.TICK_S
            if late > self.LATE_S:
                with self.lock:
                    self.stalls.append((t0 + self.TICK_S + late, late))

    def worst(self, start, end):
        """The longest stall that ended between start and end."""
        with self.lock:
            return max((length for t, length in self.stalls if start <= t <= end), default=0.0)


class FakeState:
    """Subclasses add their cloud's state in reset() and report()."""

    DEFAULTS = {}

    def __init__(self):
        self.lock = threading.Lock()
        self.stall_monitor = StallMonitor()
        self.reset()

    def defaults(self):
        d = json.loads(json.dumps(COMMON_DEFAULTS))
        d.update(json.loads(json.dumps(self.DEFAULTS)))
        return d

    def reset(self):
        self.cfg = self.defaults()
        self.rng = random.Random(self.cfg["seed"])
        self.times = []            # arrival of every API request (monotonic)
        self.counts = {}
        self.faults = {}
        self.refused = []          # requests a correct client never makes
        self.seen = 0              # API requests since the last config
        self.retry_after = {}      # request key -> (answered at, seconds)
        self.retry_after_gaps = []
        self.tokens_issued = 0
        self.expired_rejections = 0

    def configure(self, upd):
        for k, v in upd.items():
            if k not in self.cfg:
                raise ValueError(f"unknown setting {k}")
            self.cfg[k] = v
        if "seed" in upd:
            self.rng = random.Random(upd["seed"])
        self.seen = 0

    def refuse(self, why):
        """A request refused for something a correct client never does."""
        self.refused.append(why)

    def arrive(self, action, key):
        """Records an API request; returns the fault to inject, or None.
        Called with the lock held."""
        now = time.monotonic()
        self.times.append(now)
        self.counts[action] = self.counts.get(action, 0) + 1
        self.seen += 1
        ra = self.retry_after.pop(key, None)
        if ra is not None:
            self.retry_after_gaps.append({"gap": now - ra[0], "want": ra[1]})
        cfg = self.cfg
        at = cfg["fault_at"]
        fault = None
        if at is not None:
            if self.seen == at["n"]:
                fault = at["kind"]
        elif cfg["fault_rate"] > 0:
            acts = cfg["fault_actions"]
            if (acts is None or action in acts) and self.rng.random() < cfg["fault_rate"]:
                kinds = {k: w for k, w in cfg["fault_kinds"].items()
                         if self.fault_applies(k, action)}
                if kinds:
                    fault = self.rng.choices(list(kinds), weights=list(kinds.values()))[0]
        if fault is not None:
            self.faults[fault] = self.faults.get(fault, 0) + 1
        return fault

    def fault_applies(self, kind, action):
        """Whether a fault kind makes sense for an action (subclasses
        restrict creation faults to the actions that create)."""
        return True

    def rate_report(self):
        times = self.times
        max1s, j = 0, 0
        for i in range(len(times)):
            while times[i] - times[j] >= 1.0:
                j += 1
            max1s = max(max1s, i - j + 1)
        excess = 0.0
        rate, burst = self.cfg["expect_rate"], self.cfg["expect_burst"]
        lag = self.cfg["expect_lag_s"]
        if rate > 0:
            # Any stretch a..b may hold at most burst + rate * (span + lag)
            # (+1 for the jitter between the client's clock and ours).
            # A stall of the fake that ended shortly before or within the
            # stretch packed its stamps; it is allowed on top of `lag`.
            n = len(times)
            for a in range(n):
                b_end = min(n, a + int(burst + rate * 2) + 50)
                stall = self.stall_monitor.worst(times[a] - 1.0, times[b_end - 1])
                for b in range(a + 1, b_end):
                    over = (b - a + 1) - (burst + rate * (times[b] - times[a] + lag + stall) + 1)
                    excess = max(excess, over)
        return max1s, excess

    def report(self):
        max1s, excess = self.rate_report()
        return {
            "requests": len(self.times),
            "counts": self.counts,
            "faults": self.faults,
            "faults_total": sum(self.faults.values()),
            "refused": self.refused[:10],
            "refused_count": len(self.refused),
            "max_rate_1s": max1s,
            "max_stall_s": self.stall_monitor.worst(0.0, time.monotonic()),
            "rate_excess": excess,
            "retry_after_gaps": self.retry_after_gaps[-50:],
            "tokens_issued": self.tokens_issued,
            "expired_rejections": self.expired_rejections,
        }

    # --- what each fake supplies -------------------------------------------------

    def expire_all(self):
        """Every credential issued so far is expired from now on."""
        raise NotImplementedError

    def missing_id(self):
        """An instance id of the cloud's form that names nothing."""
        raise NotImplementedError

    def user_data(self, sandbox):
        """The raw user data of the sandbox's newest live VM, or None."""
        raise NotImplementedError


class ControlHandler(BaseHTTPRequestHandler):
    """The control API and the answers to faults. Subclasses set STATE and
    implement fault_answer()."""

    protocol_version = "HTTP/1.1"
    # An answer goes out in two writes (headers, then body): with Nagle's
    # algorithm the second waits for the client's delayed ACK of the first,
    # 40 ms on every request.
    disable_nagle_algorithm = True
    STATE = None
    # The fake's own kinds that are applied (and fail later, as a create
    # that ends Failed) rather than answered at once by fault_answer().
    APPLIED_KINDS = ("create_error",)

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, ctype="application/json", headers=None):
        data = body.encode() if isinstance(body, str) else body
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def read_body(self, limit=1 << 20):
        n = int(self.headers.get("Content-Length", "0"))
        if n > limit:
            return None
        return self.rfile.read(n)

    def control(self):
        """Serves /_fake/...; returns False for any other path."""
        if not self.path.startswith("/_fake/"):
            return False
        st = self.STATE
        url = urllib.parse.urlsplit(self.path)
        if self.command == "GET" and url.path == "/_fake/report":
            with st.lock:
                self.reply(200, json.dumps(st.report()))
            return True
        if self.command == "GET" and url.path == "/_fake/missing-id":
            with st.lock:
                self.reply(200, json.dumps({"id": st.missing_id()}))
            return True
        if self.command == "GET" and url.path == "/_fake/user-data":
            sb = urllib.parse.parse_qs(url.query).get("sandbox", [""])[0]
            with st.lock:
                ud = st.user_data(sb)
            if ud is None:
                self.reply(404, "")
            else:
                self.reply(200, ud, "application/octet-stream")
            return True
        if self.command == "POST":
            raw = self.read_body() or b""
            with st.lock:
                try:
                    if url.path == "/_fake/reset":
                        st.reset()
                    elif url.path == "/_fake/config":
                        st.configure(json.loads(raw or b"{}"))
                    elif url.path == "/_fake/expire":
                        st.expire_all()
                    else:
                        self.reply(404, "")
                        return True
                except ValueError as e:
                    self.reply(400, json.dumps({"error": str(e)}))
                    return True
            self.reply(200, "{}")
            return True
        self.reply(404, "")
        return True

    def fault_answer(self, kind):
        """(status, headers, body, content type) of the cloud for a fault
        answered without doing anything: throttle, throttle_retry_after,
        internal, unavailable, reject, and the fake's own kinds."""
        raise NotImplementedError

    def serve_api(self, fault, key, apply):
        """Runs `apply()` -> (status, headers, body, ctype) under the fault:
        faults that answer at once do not apply anything; drop closes
        without applying; drop_after and timeout apply first. Returns
        whether a normal answer went out."""
        st = self.STATE
        if fault == "drop":
            self.close_connection = True
            return False
        if fault in ("drop_after", "timeout"):
            apply()
            if fault == "timeout":
                time.sleep(st.cfg["timeout_s"])
            self.close_connection = True
            return False
        if fault is not None and fault not in self.APPLIED_KINDS:
            status, headers, body, ctype = self.fault_answer(fault)
            if fault == "throttle_retry_after":
                with st.lock:
                    st.retry_after[key] = (time.monotonic(), st.cfg["retry_after_s"])
            self.reply(status, body, ctype, headers)
            return False
        status, headers, body, ctype = apply()
        self.reply(status, body, ctype, headers)
        return True


def main(state, handler, provider_env, rate, burst):
    """Serves until the command after `--` exits (or forever without one).
    `provider_env(url)` gives the provider's settings that point it at this
    fake (None: unset); `rate` and `burst` are the limit those settings configure."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    srv.request_queue_size = 256
    port = srv.server_address[1]
    url = f"http://127.0.0.1:{port}"
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(port))
        os.rename(a.port_file + ".tmp", a.port_file)
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        srv.serve_forever()
        return 0
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    env = dict(os.environ)
    for k, v in provider_env(url).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    env.update(FAKE_URL=url, FAKE_RATE=str(rate), FAKE_BURST=str(burst))
    rc = subprocess.call(cmd, env=env)
    srv.shutdown()
    return rc
