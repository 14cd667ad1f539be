"""
A ``twistd wavebox`` for a.test (127.0.0.2) under attack, and what it is
measured by: used by tests/test_hostile_e2e.py (behaviour) and
benchmarks/bench_hostile.py (figures).  Loopback only; every attack is
bounded in count and bytes.

- b.test (127.0.0.3) is an authenticated peer in this process that pings
  a.test (XEP-0199) over its own stream: :class:`Pinger` keeps the worst
  round trip, the other stream's view of a stall.
- c.test (127.0.0.4) is an authenticated peer too, for what only an
  authenticated peer can send (:meth:`Target.authenticated_raw`).
- Strangers are raw TCP connections (:class:`Stranger`), from any
  127.x.y.z (all of 127/8 is loopback on Linux), so that caps per address
  can be met or avoided on purpose.
"""

import collections
import os
import re
import time

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.python import failure
from twisted.words.xish import domish

from tests import pki
from tests.dnsserver import A, SRV, ZoneServer, standard_records
from tests.helpers import TWISTD, start_twistd_wavebox
from wavebox.xmpp import ping, server, tls
from wavebox.xmpp.resolver import Endpoint

HOSTS = {"a.test": "127.0.0.2", "b.test": "127.0.0.3", "c.test": "127.0.0.4"}
S2S_LISTENING = re.compile(rb"S2S listening on ([\d.]+):(\d+)")
#: Seconds: a guard against hanging, never an assertion about speed.
GUARD = 30

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
          "xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' "
          "from='mallory.test' to='a.test' version='1.0'>")
_CONDITION = re.compile(r"<([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")


def entity_bomb(depth):
    """A DOCTYPE of nested internal entities (each holds ten of the one below)."""
    lines = ["<!ENTITY e0 'xxxxxxxxxx'>"]
    for level in range(1, depth + 1):
        lines.append("<!ENTITY e%d '%s'>" % (level, ("&e%d;" % (level - 1,)) * 10))
    return ("<?xml version='1.0'?><!DOCTYPE stream:stream [%s]>" % ("".join(lines),)
            + HEADER[len("<?xml version='1.0'?>"):] + "<message>&e%d;</message>" % (depth,))


def nested_iq(levels, sender="c.test"):
    return ("<iq type='get' id='deep' from='%s' to='a.test'>%s%s</iq>"
            % (sender, "<a>" * levels, "</a>" * levels))


def ping_iq(sender, to):
    iq = domish.Element((None, "iq"))
    iq["type"], iq["from"], iq["to"] = "get", sender, to
    iq.addElement((ping.NS_PING, "ping"))
    return iq


def rss_bytes(pid):
    """Resident set size of process ``pid`` (Linux)."""
    with open("/proc/%d/status" % (pid,)) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS for %d" % (pid,))


def cpu_seconds(pid):
    """User and system CPU time process ``pid`` has used (Linux)."""
    with open("/proc/%d/stat" % (pid,)) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stream_condition(received):
    """The stream error condition in what a stranger received, or None."""
    for condition in _CONDITION.findall(received):
        if condition != "text":
            return condition
    return None


class Stranger(protocol.Protocol):
    """A raw connection: writes ``payloads`` (in chunks, so the reactor turns), keeps what it gets."""

    def __init__(self, payloads=(), chunk=64 * 1024):
        self.payloads = [p.encode("utf-8") if isinstance(p, str) else p for p in payloads]
        self.chunk = chunk
        self.received = b""
        self.connected_at = None
        self.closed_at = None
        self.done = defer.Deferred()

    def connectionMade(self):
        self.connected_at = time.monotonic()
        data = b"".join(self.payloads)
        self.payloads = [data[i:i + self.chunk] for i in range(0, len(data), self.chunk)]
        self._write_some()

    def _write_some(self):
        if self.payloads and self.closed_at is None:
            self.transport.write(self.payloads.pop(0))
            reactor.callLater(0, self._write_some)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closed_at = time.monotonic()
        self.done.callback(self.text)

    @property
    def text(self):
        return self.received.decode("utf-8", "replace")

    @property
    def condition(self):
        return stream_condition(self.text)

    def close(self):
        if self.closed_at is None:
            self.transport.abortConnection()
        return self.done


class Pinger:
    """b.test pings a.test one ping at a time; the worst round trip since :meth:`reset`."""

    def __init__(self, s2s, interval=0.02):
        self.s2s = s2s
        self.interval = interval
        self.worst = 0.0
        self.count = 0
        self.failures = []
        self._running = False
        self._stopped = None

    def start(self):
        self._running = True
        self._stopped = defer.Deferred()
        self._next()

    def _next(self):
        if not self._running:
            self._stopped.callback(None)
            return
        started = time.monotonic()

        def answered(result):
            elapsed = time.monotonic() - started
            self.worst = max(self.worst, elapsed)
            self.count += 1
            if isinstance(result, failure.Failure):
                self.failures.append(result.getErrorMessage())
            reactor.callLater(self.interval, self._next)
        self.s2s.request(ping_iq("b.test", "a.test"), timeout=GUARD).addBoth(answered)

    def reset(self):
        self.worst, self.count, self.failures = 0.0, 0, []

    def stop(self):
        self._running = False
        return self._stopped


class Lag:
    """How late this process's own reactor runs a 10 ms timer: the share of a ping delay that is ours."""

    def __init__(self, interval=0.01):
        self.interval = interval
        self.worst = 0.0
        self._expected = None
        self._call = None

    def start(self):
        self._expected = time.monotonic() + self.interval
        self._call = reactor.callLater(self.interval, self._tick)

    def _tick(self):
        now = time.monotonic()
        self.worst = max(self.worst, now - self._expected)
        self._expected = now + self.interval
        self._call = reactor.callLater(self.interval, self._tick)

    def reset(self):
        self.worst = 0.0

    def stop(self):
        if self._call is not None and self._call.active():
            self._call.cancel()


class _Cleanups:
    """``addCleanup`` for a benchmark, which is no test case."""

    def __init__(self):
        self.calls = []

    def addCleanup(self, f, *args):
        self.calls.append((f, args))

    @defer.inlineCallbacks
    def run(self):
        while self.calls:
            f, args = self.calls.pop()
            yield defer.maybeDeferred(f, *args)

    def mktemp(self):
        import tempfile
        return tempfile.mkdtemp(prefix="wavebox-hostile-")


class Target:
    """The twistd process of a.test, its peers b.test and c.test, and the DNS that joins them."""

    @classmethod
    @defer.inlineCallbacks
    def start(cls, testcase, directory, args=(), probe=False):
        """``probe``: run tests/reactor_probe.py in the server (:meth:`probe`)."""
        self = cls()
        self.testcase = testcase
        zone = yield ZoneServer.start(records=standard_records())
        testcase.addCleanup(zone.stop)
        self.zone = zone
        self.peers = {}
        for domain in ("b.test", "c.test"):
            where = os.path.join(directory, domain)
            os.makedirs(where, exist_ok=True)
            cert, key, ca = pki.write_domain_files(domain, where)
            s2s = server.S2SService(
                [domain, "wave." + domain], "secret-" + domain, tls.TLSPolicy(cert, key, ca),
                self._resolve, interface=HOSTS[domain], port=0)
            s2s.add_handler(ping.PingResponder())
            s2s.startService()
            testcase.addCleanup(s2s.stopService)
            self.peers[domain] = s2s
        where = os.path.join(directory, "a.test")
        os.makedirs(where, exist_ok=True)
        cert, key, ca = pki.write_domain_files("a.test", where)
        main = TWISTD
        self.probe_file = None
        if probe:
            from tests import reactor_probe
            main = reactor_probe.MAIN
            self.probe_file = os.path.join(directory, "probe")
            os.environ["WAVEBOX_PROBE_FILE"] = self.probe_file
        self.proc, _ = yield start_twistd_wavebox(testcase, where, main=main, args=[
            "--domain", "a.test", "--data-dir", os.path.join(where, "data"),
            "--store", "memory:", "--certificate", cert, "--private-key", key,
            "--trusted-ca", ca, "--s2s-interface", HOSTS["a.test"], "--s2s-port", "0",
            "--console-interface", "127.0.0.1", "--console-port", "0",
            "--nameserver", "127.0.0.1:%d" % (zone.port,), "--dns-timeout", "2"] + list(args))
        os.environ.pop("WAVEBOX_PROBE_FILE", None)
        for _ in range(400):
            if S2S_LISTENING.search(self.proc.output):
                break
            yield deferLater(reactor, 0.05, lambda: None)
        self.port = int(S2S_LISTENING.search(self.proc.output).group(2))
        records = standard_records({"a.test": self.port,
                                    "b.test": self.peers["b.test"].listening_address()[1]})
        c_port = self.peers["c.test"].listening_address()[1]
        records["c.test"] = [A(HOSTS["c.test"])]
        records["_xmpp-server._tcp.c.test"] = [SRV(10, 0, c_port, "c.test")]
        zone.serve(records)
        self.pinger = Pinger(self.peers["b.test"])
        yield self.peers["b.test"].request(ping_iq("b.test", "a.test"), timeout=GUARD)
        yield self.peers["c.test"].request(ping_iq("c.test", "a.test"), timeout=GUARD)
        return self

    def _resolve(self, domain):
        return defer.succeed([Endpoint(HOSTS["a.test"], self.port, domain)])

    @property
    def pid(self):
        return self.proc.transport.pid

    def rss(self):
        return rss_bytes(self.pid)

    def cpu(self):
        return cpu_seconds(self.pid)

    @defer.inlineCallbacks
    def probe(self):
        """
        (wall ms, CPU ms, GC ms): the server's longest stretch without a
        timer turn, and its longest garbage collection, since the last call.
        """
        import signal
        before = os.stat(self.probe_file).st_mtime_ns if os.path.exists(self.probe_file) else 0
        os.kill(self.pid, signal.SIGUSR1)
        for _ in range(200):
            if os.path.exists(self.probe_file) and os.stat(self.probe_file).st_mtime_ns != before:
                break
            yield deferLater(reactor, 0.01, lambda: None)
        with open(self.probe_file) as f:
            return tuple(float(x) for x in f.read().split())

    @property
    def alive(self):
        return self.proc.running

    def stranger(self, payloads=(), source="127.0.0.1"):
        """A raw connection to a.test's S2S port from ``source``; fires with the Stranger."""
        endpoint = TCP4ClientEndpoint(reactor, HOSTS["a.test"], self.port, timeout=GUARD,
                                      bindAddress=(source, 0))
        return connectProtocol(endpoint, Stranger(payloads))

    @defer.inlineCallbacks
    def authenticated_raw(self, data, domain="c.test"):
        """
        Write ``data`` on ``domain``'s authenticated stream to a.test; fires
        with the stream error a.test answered (or None) once it closes.
        """
        s2s = self.peers[domain]
        [session] = [s for s in s2s.outgoing if (domain, "a.test") in s.authenticated]
        session.xmlstream.transport.write(data.encode("utf-8"))
        yield session.closed.wait().addTimeout(GUARD, reactor)
        return session.peer_error

    def ping(self):
        """One ping from b.test, answered (fires with the answer) or failed."""
        return self.peers["b.test"].request(ping_iq("b.test", "a.test"), timeout=GUARD)

    def log_count(self, text):
        return self.proc.count(text.encode("utf-8"))

    @defer.inlineCallbacks
    def wait_for_log(self, text, count=1):
        """Fires with the count once ``text`` is in the output ``count`` times (or the guard)."""
        deadline = time.monotonic() + GUARD
        while self.log_count(text) < count and time.monotonic() < deadline:
            yield deferLater(reactor, 0.05, lambda: None)
        return self.log_count(text)


def tally(strangers):
    """What a set of strangers got: stream error conditions, or 'held' while open."""
    outcome = collections.Counter()
    for s in strangers:
        if s.closed_at is None:
            outcome["held open"] += 1
        else:
            outcome[s.condition or "closed without a stream error"] += 1
    return dict(outcome)


def source_addresses(count, per_address, base=10):
    """``count`` loopback source addresses (127.BASE.x.y), ``per_address`` times each."""
    addresses = []
    for i in range(count):
        addresses += ["127.%d.%d.%d" % (base, i // 250, i % 250 + 2)] * per_address
    return addresses
