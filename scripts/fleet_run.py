#!/usr/bin/env python3
"""Three gateway processes sharing fleet state through one redis-server.

Builds the gateway example with the `redis` feature, starts a redis-server
on a unix socket in a temporary directory and a scripted upstream on
127.0.0.1 (it notes which replica sent each request, fails on command and
keeps its own rate), then starts three gateway binaries and drives them
round-robin. It prints:

- leak after trip: requests replicas B and C still send after A's breaker
  opened, without and with `--redis`;
- the fleet's probe: requests during the first half-open probe, and how
  soon every replica serves again;
- outage: redis frozen (SIGSTOP), killed, started again, while calls go on:
  every call's status, the latency of each phase, the lines each gateway
  wrote on stderr;
- hold obedience: after the upstream answers one call 429 with
  `retry-after: 10`, the requests any replica still sends more than 1 s
  later and before the reset, and the 429s, without and with `--redis`;
- fleet rate: `rpm = 60` for the upstream (a config file), the fleet offered
  180 calls in a minute against an upstream that keeps to 60 a minute: its
  429s and the calls it served in the minute, without and with `--redis`.

Everything is bounded: each phase runs for at most about a minute, the whole
run for at most --limit seconds (default 600, the build included), and every
process it started is stopped when it ends. `--phases trip,hold` runs some.

    python3 scripts/fleet_run.py            # release build
    python3 scripts/fleet_run.py --debug    # faster to build, slower to run
"""

import argparse
import concurrent.futures
import http.client
import http.server
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "gpt-4o-mini"
BREAKER = ["--breaker-min-calls", "10", "--breaker-failure-ratio", "0.5",
           "--breaker-window", "30s", "--breaker-open", "5s", "--max-retries", "0"]


def build(debug):
    cmd = ["cargo", "build", "--quiet", "--example", "gateway", "--features", "redis"]
    if not debug:
        cmd.append("--release")
    subprocess.run(cmd, cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "debug" if debug else "release", "examples", "gateway")


class Upstream(http.server.ThreadingHTTPServer):
    """The scripted upstream: healthy, dead (503), slow, rate limited until
    an instant (429 with `retry-after`) on command, and keeping to `limit`
    calls in any 60 s (429 past it); notes (arrival, replica, status) of
    every request."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.reset()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def reset(self):
        """Healthy, and nothing seen: a phase starts afresh."""
        with self.lock:
            self.seen = []
            self.dead, self.delay, self.limited_until, self.limit = False, 0.0, 0.0, None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]

    def answer(self, replica):
        """The status, the wait before answering, and `retry-after`."""
        with self.lock:
            now = time.monotonic()
            status, retry = 200, None
            if self.dead:
                status = 503
            elif now < self.limited_until:
                status, retry = 429, math.ceil(self.limited_until - now)
            elif self.limit is not None:
                served = [t for t, _, st in self.seen if st == 200 and t > now - 60]
                if len(served) >= self.limit:
                    status, retry = 429, math.ceil(served[0] + 60 - now)
            self.seen.append((now, replica, status))
            return status, self.delay, retry

    def since(self, t):
        with self.lock:
            return [s for s in self.seen if s[0] > t]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", "0")))
        status, delay, retry = self.server.answer(self.headers.get("x-replica", "?"))
        if delay:
            time.sleep(delay)
        if status == 200:
            body = {"id": "chatcmpl-1", "object": "chat.completion", "model": MODEL,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "hi"}}]}
        elif status == 429:
            body = {"error": {"message": "Rate limit reached", "type": "requests",
                              "code": "rate_limit_exceeded"}}
        else:
            body = {"error": {"message": "down", "type": "server_error", "code": None}}
        data = json.dumps(body).encode()
        self.send_response(status)
        if retry is not None:
            self.send_header("retry-after", str(retry))
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Redis:
    def __init__(self, tmp):
        self.dir = tmp
        self.socket = os.path.join(tmp, "redis.sock")
        self.proc = None
        self.start()

    @property
    def url(self):
        return "redis+unix://" + self.socket

    def start(self):
        if os.path.exists(self.socket):
            os.remove(self.socket)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
             "--dir", self.dir, "--save", "", "--appendonly", "no", "--logfile",
             os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.01)

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Gateway:
    """One gateway process; its stdout and stderr lines, with the time each
    was read."""

    def __init__(self, binary, name, upstream, redis_url, extra=()):
        args = [binary, "--listen", "127.0.0.1:0"] + list(extra) + BREAKER
        if upstream:
            args += ["--upstream", upstream]
        if redis_url:
            args += ["--redis", redis_url]
        self.name = name
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().strip()
        if not first.startswith("listening on http://"):
            raise SystemExit("gateway %s did not start: %r %s" % (name, first, self.proc.stderr.read()))
        self.addr = first[len("listening on http://"):]
        self.out, self.err = [], []
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self.read, args=(stream, lines), daemon=True).start()

    @staticmethod
    def read(stream, lines):
        for line in stream:
            lines.append((time.monotonic(), line.rstrip("\n")))

    def opened_at(self):
        """When this gateway said its breaker opened, if it did."""
        for t, line in list(self.out):
            if line.startswith("breaker ") and "-> open" in line:
                return t
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


LOCAL = threading.local()


def call(gateway, replica):
    """One chat completion through `gateway`: (status, seconds)."""
    conns = getattr(LOCAL, "conns", None)
    if conns is None:
        conns = LOCAL.conns = {}
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode()
    start = time.monotonic()
    for attempt in range(2):
        conn = conns.get(gateway.addr)
        if conn is None:
            conn = conns[gateway.addr] = http.client.HTTPConnection(gateway.addr, timeout=10)
            conn.connect()
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn.request("POST", "/v1/chat/completions", body,
                         {"content-type": "application/json", "x-replica": replica})
            res = conn.getresponse()
            res.read()
            return res.status, time.monotonic() - start
        except (OSError, http.client.HTTPException):
            conn.close()
            conns.pop(gateway.addr, None)
    return 0, time.monotonic() - start


def drive(gateways, names, every, count, pool):
    """`count` calls, one every `every` seconds, to the gateways in turn.
    Returns (sent at, replica, status, seconds) for each."""
    start = time.monotonic()
    futures = []
    for i in range(count):
        g = i % len(gateways)
        at = time.monotonic()
        futures.append((at, names[g], pool.submit(call, gateways[g], names[g])))
        pause = start + every * (i + 1) - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    return [(at, name, *f.result()) for at, name, f in futures]


def percentile(values, q):
    values = sorted(values)
    return values[round((len(values) - 1) * q)] if values else float("nan")


def gateways(binary, upstream, redis, extra=()):
    """Three gateways in front of `upstream` (or as `extra` says), sharing
    through `redis` when given."""
    url = redis.url if redis else None
    return [Gateway(binary, n, upstream, url, extra) for n in "abc"]


def leak_after_trip(binary, upstream, redis, pool):
    """A's breaker opens first (B and C served 20 calls each before); the
    requests B and C send after it opened."""
    upstream.reset()
    gws = gateways(binary, upstream.url, redis)
    try:
        time.sleep(0.3)
        drive(gws[1:], "bc", 0.05, 40, pool)
        upstream.dead = True
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(g.opened_at() for g in gws):
            drive(gws, "abc", 0.1, 3, pool)
        opened = gws[0].opened_at()
        if opened is None:
            raise SystemExit("a's breaker never opened")
        later = upstream.since(opened)
        leak = {n: sum(1 for _, r, _ in later if r == n) for n in "bc"}
        return leak, gws
    except BaseException:
        for g in gws:
            g.stop()
        raise


def fleet_probe(gws, upstream, pool):
    """After the open time, with a slow upstream: the requests that reach it
    while the first probe is under way."""
    opened = gws[0].opened_at()
    time.sleep(max(0.0, opened + 5.2 - time.monotonic()))
    upstream.reset()
    upstream.delay = 0.5
    begin = time.monotonic()
    calls = drive(gws, "abc", 0.05, 60, pool)
    got = upstream.since(begin)
    first, prober = got[0][0], got[0][1]
    during = [s for s in got if s[0] < first + 0.5]
    back = {}
    for at, name, status, took in calls:
        if status == 200 and name not in back:
            back[name] = at + took - first
    return len(during), prober, max(back.values()) if len(back) == 3 else None


def hold_obedience(binary, upstream, redis, pool):
    """The upstream refuses calls for 10 s; a call every 600 ms: the
    requests sent after the first 429 plus 1 s and before the reset, and
    the 429s."""
    upstream.reset()
    gws = gateways(binary, upstream.url, redis)
    try:
        time.sleep(0.3)
        drive(gws, "abc", 0.1, 6, pool)
        start = time.monotonic()
        upstream.limited_until = start + 10
        drive(gws, "abc", 0.6, 20, pool)
        got = upstream.since(start)
        refused = [t for t, _, st in got if st == 429]
        within = sum(1 for t, _, _ in got if refused[0] + 1 < t < start + 10)
        return within, len(refused)
    finally:
        for g in gws:
            g.stop()


def fleet_rate(binary, upstream, redis, pool, tmp):
    """`rpm = 60` for the upstream, 180 calls offered in a minute, the
    upstream keeping to 60 a minute: its 429s, and the calls it served in
    the minute."""
    upstream.reset()
    upstream.limit = 60
    config = os.path.join(tmp, "gateway.toml")
    with open(config, "w") as f:
        f.write('[[upstream]]\nname = "up"\nurl = "%s"\nrpm = 60\n' % upstream.url)
    gws = gateways(binary, None, redis, ["--config", config, "--max-retry-after", "5s"])
    try:
        time.sleep(0.3)
        start = time.monotonic()
        drive(gws, "abc", 1 / 3, 180, pool)
        got = upstream.since(start)
        refused = sum(1 for _, _, st in got if st == 429)
        served = sum(1 for t, _, st in got if st == 200 and t < start + 60)
        return refused, served
    finally:
        for g in gws:
            g.stop()


def outage(gws, upstream, redis, pool):
    """Calls every 10 ms for 6 s: redis frozen at 1.5 s, killed at 3 s,
    started again at 4 s."""
    upstream.reset()
    time.sleep(0.5)
    marks = {}

    def faults():
        t0 = time.monotonic()
        for at, what in ((1.5, redis.freeze), (3.0, redis.kill), (4.0, redis.start)):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            marks[what.__name__] = time.monotonic()
            what()

    t = threading.Thread(target=faults)
    start = time.monotonic()
    t.start()
    calls = drive(gws, "abc", 0.01, 600, pool)
    t.join()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(
            any("fleet state restored" in l for _, l in g.err) for g in gws):
        time.sleep(0.05)
    phases = [("redis up", start, marks["freeze"]), ("frozen", marks["freeze"], marks["kill"]),
              ("killed", marks["kill"], marks["start"]), ("restarted", marks["start"], start + 7)]
    rows = []
    for name, a, b in phases:
        part = [c for c in calls if a <= c[0] < b]
        ms = [c[3] * 1000 for c in part]
        bad = sum(1 for c in part if c[2] != 200)
        rows.append((name, len(part), bad, percentile(ms, 0.5), percentile(ms, 0.99)))
    lines = {g.name: [l for _, l in g.err if l.startswith("fleet state")] for g in gws}
    return rows, lines


def show_trip(binary, upstream, redis, pool, tmp):
    off, gws = leak_after_trip(binary, upstream, None, pool)
    for g in gws:
        g.stop()
    on, gws = leak_after_trip(binary, upstream, redis, pool)
    try:
        print("leak after trip (requests of b, c after a's breaker opened):")
        print("  without --redis: b %(b)d, c %(c)d" % off)
        print("  with --redis:    b %(b)d, c %(c)d" % on)
        during, prober, back = fleet_probe(gws, upstream, pool)
        print("the fleet's probe (a slow upstream, 500 ms a call, is back after the open time):")
        print("  %d request(s) reached it while the first probe (by %s) was under way;"
              % (during, prober))
        print("  every replica served again %s" % (
            "%.2f s after that probe started" % back if back is not None else "NOT within 3 s"))
    finally:
        for g in gws:
            g.stop()


def show_outage(binary, upstream, redis, pool, tmp):
    gws = gateways(binary, upstream.url, redis)
    try:
        rows, lines = outage(gws, upstream, redis, pool)
    finally:
        for g in gws:
            g.stop()
    print("outage (a call every 10 ms, round-robin over the three gateways):")
    for name, n, bad, p50, p99 in rows:
        print("  %-9s %4d calls, %d not 200, p50 %.2f ms, p99 %.2f ms" % (name, n, bad, p50, p99))
    for name, ls in lines.items():
        print("  gateway %s stderr: %s" % (name, " | ".join(ls)))


def show_hold(binary, upstream, redis, pool, tmp):
    holds = [hold_obedience(binary, upstream, r, pool) for r in (None, redis)]
    print("hold obedience (retry-after: 10, a call every 600 ms): requests sent from 1 s")
    print("  after the first 429 to the reset, and 429s the upstream sent:")
    print("  without --redis: %d sent, %d 429s" % holds[0])
    print("  with --redis:    %d sent, %d 429s" % holds[1])


def show_rate(binary, upstream, redis, pool, tmp):
    rates = [fleet_rate(binary, upstream, r, pool, tmp) for r in (None, redis)]
    print("fleet rate (rpm = 60, 180 calls offered in a minute, the upstream keeping to 60):")
    print("  without --redis: %d 429s from the upstream, %d served in the minute" % rates[0])
    print("  with --redis:    %d 429s from the upstream, %d served in the minute" % rates[1])


PHASES = {"trip": show_trip, "outage": show_outage, "hold": show_hold, "rate": show_rate}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="a debug build of the gateway")
    parser.add_argument("--limit", type=int, default=600, help="seconds the whole run may take")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help="which figures, comma-separated (default: all)")
    args = parser.parse_args()
    phases = args.phases.split(",")
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise SystemExit("unknown phase %s; phases: %s" % (", ".join(unknown), ", ".join(PHASES)))
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(SystemExit("over --limit")))
    signal.alarm(args.limit)
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server not found (apt-get install redis-server)")
    binary = build(args.debug)
    tmp = tempfile.mkdtemp(prefix="thr-fleet-")
    upstream, redis = Upstream(), None
    pool = concurrent.futures.ThreadPoolExecutor(32)
    try:
        redis = Redis(tmp)
        for phase in phases:
            PHASES[phase](binary, upstream, redis, pool, tmp)
            sys.stdout.flush()
    finally:
        if redis:
            redis.stop()
        upstream.shutdown()
        pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
