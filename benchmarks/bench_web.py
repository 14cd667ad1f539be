"""
Live typing as people see it (issue 14): a keystroke in one browser on
a.test, shown in a second browser on the federated server b.test.

Deployed as for the tests (tests/web_deployment.py): a.test and b.test as
``twistd wavebox`` children, S2S with STARTTLS and dialback, the tests' DNS
server on loopback, SQLite with synchronous=FULL.  alice (Chromium, on
a.test) types into a blip of a wave hosted on a.test, one key every 1/RATE
seconds through WebDriver's real key events; bob (Chromium, on b.test) has
the wave open.  Each key's time is taken in alice's page at its keydown,
and the time it is in bob's blip in bob's page, right after his page
applied the delta (both pages read the one system clock:
``performance.timeOrigin + performance.now()``).

Two runs:
  quiet   only alice types
  load    meanwhile N simulated WebSocket clients (--clients, 50) on a.test
          type at RATE keys a second each, every one into its own wave
          (--sim-waves local: on a.test alone; federated: with bob@b.test
          in each, so every delta goes to b.test too), with the browser's
          rule: one delta in flight, what is typed meanwhile gathered into
          the next

Printed: p50, p99 and max of keystroke -> shown in the other browser, and
for the load run the simulated clients' keystroke -> acknowledged.

Usage: python benchmarks/bench_web.py [--keystrokes 1000] [--rate 10]
       [--clients 50] [--runs quiet,load] [--sim-waves local|federated]
       [--dir DIR] [--keep]
"""

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketClientFactory, WebSocketClientProtocol, connectWS)
from twisted.internet import defer, reactor, task, threads  # noqa: E402

from tests.browser import Browser  # noqa: E402
from tests.web_deployment import ADDRESSES, PASSWORD, WebDeployment  # noqa: E402

ALICE, BOB = "alice@a.test", "bob@b.test"
#: Seconds any one step of the set-up may take: a guard against hanging.
GUARD = 120


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(p / 100.0 * (len(ordered) - 1)))))
    return ordered[k]


def progress(text):
    sys.stderr.write("[bench_web] %s\n" % (text,))
    sys.stderr.flush()


class Cleanups:
    """What WebDeployment.start asks of a test case: somewhere to put its clean-ups."""

    def __init__(self):
        self.calls = []

    def addCleanup(self, f, *args):
        self.calls.append((f, args))

    @defer.inlineCallbacks
    def run(self):
        for f, args in reversed(self.calls):
            try:
                yield defer.maybeDeferred(f, *args)
            except Exception as e:      # a clean-up that fails must not hide the figures
                progress("clean-up %r failed: %s" % (f, e))


# --- the simulated clients ---------------------------------------------------------------

def login_cookie(host, port, user):
    """POST /login as a browser does; the session cookie's value."""
    conn = http.client.HTTPConnection(host, port, timeout=GUARD)
    body = urllib.parse.urlencode({"user": user, "password": PASSWORD})
    conn.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded",
                                          "Origin": "http://%s:%d" % (host, port)})
    answer = conn.getresponse()
    answer.read()
    cookie = answer.getheader("Set-Cookie") or ""
    conn.close()
    if answer.status != 303 or "wavebox_session=" not in cookie:
        raise RuntimeError("login of %s: %s %s" % (user, answer.status, cookie))
    return cookie.split(";")[0].split("=", 1)[1]


class Typist(WebSocketClientProtocol):
    """
    One simulated page: makes a wave with bob in it, opens it, adds a blip,
    then types ``rate`` keys a second into it, one delta in flight.
    """

    def onOpen(self):
        self.t = self.factory.typist
        self.t.protocol = self
        self.ask({"type": "new", "id": "new"})

    def ask(self, message):
        self.sendMessage(json.dumps(message).encode())

    def onMessage(self, payload, is_binary):
        m = json.loads(payload)
        t = self.t
        kind = m.get("type")
        if kind == "created":
            t.wave = m["wave"]
            self.ask({"type": "open", "wave": t.wave, "id": "open"})
        elif kind == "snapshot" and t.version is None:
            t.version = m["wavelet"]["hashed_version"]
            if t.federated:
                self.ask({"type": "add", "wave": t.wave, "participant": BOB, "id": "add"})
            else:
                t.ready_for_blip()
        elif kind == "done" and m.get("id") == "add":
            t.ready_for_blip()
        elif kind == "delta":
            t.delta(m["delta"])
        elif kind == "ack":
            t.acked(m["result"])
        elif kind in ("error", "refused"):
            t.failed("%s: %s" % (kind, m.get("message")))


class SimulatedClient:
    def __init__(self, index, user, host, port, cookie, rate, federated):
        self.index = index
        self.federated = federated
        self.user = user
        self.rate = rate
        self.wave = None
        self.version = None          # the hashed version our next delta is made against
        self.protocol = None
        self.blip = "b+sim%04d" % (index,)
        self.size = 0                # items in our blip
        self.in_flight = None        # (keys' times) of the delta sent
        self.typed = []              # times of keys not yet sent
        self.latencies = []
        self.ready = defer.Deferred()
        self.error = None
        self.counter = 0
        origin = "http://%s:%d" % (host, port)
        factory = WebSocketClientFactory("ws://%s:%d/ws" % (host, port), origin=origin,
                                         headers={"Cookie": "wavebox_session=" + cookie})
        factory.protocol = Typist
        factory.typist = self
        connectWS(factory)

    def ready_for_blip(self):
        # Made against the version we know; if the add's delta is still on its
        # way, the server transforms ours past it, as it does any late delta.
        self._make_blip()

    def _make_blip(self):
        if self.size:
            return
        self.size = 4
        ops = [{"mutate_document": {"document_id": self.blip, "operation": [
                   {"es": ["body", {}]}, {"es": ["line", {}]}, {"ee": True}, {"ee": True}]}},
               {"mutate_document": {"document_id": "conversation", "operation": [
                   {"r": 1}, {"es": ["blip", {"id": self.blip}]}, {"ee": True}, {"r": 1}]}}]
        self.in_flight = ("blip", [])
        self.submit(ops)

    def submit(self, ops):
        if self.protocol.state != self.protocol.STATE_OPEN:
            return          # closed at the end of the run
        self.protocol.ask({"type": "submit", "wave": self.wave, "delta": {
            "author": self.user, "hashed_version": self.version, "operations": ops}})

    def delta(self, delta):
        # Nobody else types in our wave; the add's delta moves our version on.
        if delta["applied_at"]["version"] == self.version["version"]:
            self.version = delta["resulting_version"]

    def acked(self, result):
        now = time.time()
        after = result["hashed_version_after"]
        if after["version"] > self.version["version"]:
            self.version = after
        kind, times = self.in_flight
        self.in_flight = None
        if kind == "blip" and not self.ready.called:
            self.ready.callback(self)
        for t0 in times:
            self.latencies.append((now - t0) * 1000.0)
        self.flush()

    def failed(self, text):
        if self.error is None:
            self.error = text
            progress("simulated client %d: %s" % (self.index, text))
            if not self.ready.called:
                self.ready.errback(RuntimeError(text))

    def key(self, measuring):
        if self.size == 0:
            return
        self.typed.append(time.time() if measuring else None)
        self.flush()

    def flush(self):
        if self.in_flight is not None or not self.typed:
            return
        keys, self.typed = self.typed, []
        text = "".join("abcdefghij"[(self.counter + i) % 10] for i in range(len(keys)))
        self.counter += len(keys)
        pos = self.size - 1
        op = [{"r": pos}, {"c": text}, {"r": 1}]
        self.size += len(keys)
        self.in_flight = ("keys", [t for t in keys if t is not None])
        self.submit([{"mutate_document": {"document_id": self.blip, "operation": op}}])


# --- the browsers -----------------------------------------------------------------------

#: Injected in alice's page: the time of each keydown in her blip (installed once).
RECORD_KEYS = """
window.__keys = [];
if (!window.__keysInstalled) {
  window.__keysInstalled = true;
  document.querySelector('#blips textarea').addEventListener('keydown',
    () => window.__keys.push(performance.timeOrigin + performance.now()));
}
"""
#: Injected in bob's page: when each character (by position) is first in his blip.
RECORD_SHOWN = """
window.__shown = [];
window.__start = arguments[0];
if (!window.__shownInstalled) {
  window.__shownInstalled = true;
  const socket = window.wavebox.socket, handler = socket.onmessage;
  socket.onmessage = (event) => {
    handler(event);
    const box = document.querySelector('#blips textarea');
    const now = performance.timeOrigin + performance.now();
    for (let i = window.__start + window.__shown.length; i < box.value.length; i++) {
      window.__shown.push(now);
    }
  };
}
"""


def bob_opens(deployment, uri):
    bob = Browser()
    bob.log_in(deployment["b.test"].base, "bob", PASSWORD)
    bob.js("location.hash = arguments[0]", "#wave=" + uri)
    bob.wait_js("return document.querySelector('#blips textarea') !== null", "the blip",
                guard=GUARD)
    return bob


def type_and_measure(alice, bob, keys, rate):
    """Type ``keys`` keys in alice's page at ``rate`` a second; the latencies in ms."""
    box = alice.find("#blips textarea")
    alice.js("arguments[0].focus(); arguments[0].setSelectionRange(1e9, 1e9)", box)
    start = len(bob.js("return document.querySelector('#blips textarea').value"))
    base = len(alice.js("return document.querySelector('#blips textarea').value"))
    if start != base:
        raise RuntimeError("the two pages differ before typing: %d and %d" % (base, start))
    alice.js(RECORD_KEYS)
    bob.js(RECORD_SHOWN, start)
    began = time.monotonic()
    for i in range(keys):
        due = began + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        box.send_keys("0123456789"[i % 10])
    try:
        bob.wait(lambda: bob.js("return window.__shown.length") >= keys,
                 "all %d keys in bob's page" % (keys,), guard=GUARD)
    except AssertionError:
        for who, page in (("alice", alice), ("bob", bob)):
            progress("%s's page: %s" % (who, page.js(
                "const w = window.wavebox.wave; return {socket: document.body.dataset.socket, "
                "notice: document.querySelector('#notice').textContent, "
                "failed: w && w.client.failed, version: w && w.client.version.version, "
                "inFlight: w && w.client.inFlight !== null, gathered: w && w.client.gathered.length, "
                "waiting: w && w.client.waiting.length, "
                "shown: window.__shown && window.__shown.length}")))
        raise
    typed = alice.js("return window.__keys")
    shown = bob.js("return window.__shown")[:keys]
    if len(typed) != keys:
        raise RuntimeError("alice's page saw %d keydowns of %d" % (len(typed), keys))
    a_text = alice.js("return document.querySelector('#blips textarea').value")
    bob.wait(lambda: bob.js("return document.querySelector('#blips textarea').value") == a_text,
             "the two pages agreeing", guard=GUARD)
    return [s - t for t, s in zip(typed, shown)], time.monotonic() - began


def report(label, latencies, seconds, keys):
    print("%-7s keystroke -> other browser (b.test): p50 %6.1f ms  p99 %6.1f ms  max %6.1f ms"
          "  (%d keys in %.1f s)" % (label, percentile(latencies, 50), percentile(latencies, 99),
                                     max(latencies), keys, seconds))
    sys.stdout.flush()


@defer.inlineCallbacks
def main_async(args):
    directory = args.dir or tempfile.mkdtemp(prefix="bench-web-")
    sims = ["sim%02d@a.test" % (i,) for i in range(args.clients)]
    deployment = WebDeployment(directory, {"a.test": [ALICE] + sims, "b.test": [BOB]},
                               extra_args=["--web-max-sessions", str(args.clients + 10)])
    cleanups = Cleanups()
    browsers = []
    try:
        yield deployment.start(cleanups)
        progress("a.test and b.test running under %s" % (directory,))
        # alice's wave, with bob, made in her browser.
        a = deployment["a.test"]
        alice = yield threads.deferToThread(Browser)

        def make_wave():
            alice.log_in(a.base, "alice", PASSWORD)
            alice.find("#new-wave").click()
            alice.wait_js("return document.querySelector('#blips textarea') !== null",
                          "the new blip", guard=GUARD)
            alice.find("#add-address").send_keys(BOB)
            alice.find("#add-button").click()
            alice.wait(lambda: len(alice.find_all("#participants .participant")) == 2,
                       "bob added", guard=GUARD)
            return alice.js("return window.wavebox.wave.uri")
        browsers.append(alice)
        uri = yield threads.deferToThread(make_wave)
        bob = yield threads.deferToThread(bob_opens, deployment, uri)
        browsers.append(bob)
        progress("both browsers have wave %s open" % (uri,))

        for run in args.runs:
            clients, ticker = [], None
            if run == "load":
                host, port = ADDRESSES["a.test"], a.web_port
                cookies = yield threads.deferToThread(
                    lambda: [login_cookie(host, port, s.split("@")[0]) for s in sims])
                clients = [SimulatedClient(i, s, host, port, c, args.rate,
                                           args.sim_waves == "federated")
                           for i, (s, c) in enumerate(zip(sims, cookies))]
                yield defer.gatherResults([c.ready for c in clients]).addTimeout(GUARD, reactor)
                progress("%d simulated clients typing" % (len(clients),))
                state = {"measuring": False}

                def tick():
                    for c in clients:
                        c.key(state["measuring"])
                # The clients type at RATE each, spread over the interval.
                ticker = task.LoopingCall(tick)
                ticker.start(1.0 / args.rate)
                yield task.deferLater(reactor, 2.0, lambda: None)     # warm up
                state["measuring"] = True
            progress("%s: typing %d keys at %g a second" % (run, args.keystrokes, args.rate))
            latencies, seconds = yield threads.deferToThread(
                type_and_measure, alice, bob, args.keystrokes, args.rate)
            if ticker is not None:
                ticker.stop()
            report(run, latencies, seconds, args.keystrokes)
            if clients:
                acked = [x for c in clients for x in c.latencies]
                errors = [c.error for c in clients if c.error]
                print("        %d simulated clients, keystroke -> acknowledged: p50 %6.1f ms  "
                      "p99 %6.1f ms  (%d keys, %d errors)" % (
                          len(clients), percentile(acked, 50), percentile(acked, 99),
                          len(acked), len(errors)))
                # What the federation outbox of a.test still holds for b.test: the
                # backlog behind the keys bob saw late, if any.
                from wavebox import admin
                rows = yield threads.deferToThread(
                    admin.ask, os.path.join(a.data, "admin.sock"), "outbox")
                queued = sum(r["queued"] for r in rows if r["destination"] == "b.test")
                print("        a.test's outbox to b.test at the end: %d update(s) queued"
                      % (queued,))
                for c in clients:
                    c.protocol.sendClose()
    finally:
        for b in browsers:
            yield threads.deferToThread(b.quit)
        yield deployment.stop()
        yield cleanups.run()
        if not args.dir and not args.keep:
            shutil.rmtree(directory, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keystrokes", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="keys a second")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--runs", default="quiet,load")
    parser.add_argument("--sim-waves", choices=("local", "federated"), default="local",
                        help="the simulated clients' waves: on a.test alone, or each with "
                             "bob@b.test in it (every delta then goes to b.test too)")
    parser.add_argument("--dir", help="keep the servers' directories here")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    args.runs = [r for r in args.runs.split(",") if r]
    failure = []

    def run():
        d = main_async(args)
        d.addErrback(lambda f: failure.append(f))
        d.addBoth(lambda _: reactor.stop())
    reactor.callWhenRunning(run)
    reactor.suggestThreadPoolSize(4)
    reactor.run()
    if failure:
        sys.stderr.write(failure[0].getTraceback())
        sys.exit(1)


if __name__ == "__main__":
    main()
