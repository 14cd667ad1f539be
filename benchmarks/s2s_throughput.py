"""
S2S figures on loopback: time to set up a stream (TCP, STARTTLS both ways,
dialback or the certificate shortcut) and stanzas per second from a.test
(127.0.0.2) to b.test (127.0.0.3) over one authenticated TLS stream.

    python benchmarks/s2s_throughput.py [MESSAGES] [--dialback]
    python benchmarks/s2s_throughput.py --versus-prosody [--setups N] [--pings N]

``--dialback`` turns the certificate shortcut off, so the set-up includes the
Receiving Server's verify round trip to the Authoritative Server.

``--versus-prosody`` measures, in one run, a.test (this process) against
three peers on loopback, each a separate process: ``twistd wavebox`` for
b.test that trusts a.test's CA (it may take the certificate as proof),
``twistd wavebox`` for b.test that does not (``--tls-required no`` and
another CA: it verifies a.test with dialback, connecting back to a.test,
found through the tests' DNS server), and the Prosody 0.12 that
``tests/prosody.py`` starts (self-signed, ``s2s_secure_auth = false``: it
too verifies with dialback and connects back).  For each: the set-up of a
fresh stream pair (TCP, STARTTLS, dialback, the first ping's pong), as the
median and the spread of --setups tries (a.test's S2S service is made anew
for each, on the same port, so nothing is reused on either side), then
--pings pings over the stream, 20 in flight, and how many the peer answers
per CPU-second of its process.
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, reactor  # noqa: E402
from twisted.words.xish import domish  # noqa: E402
from tx_xmpp.subprotocols import XMPPHandler  # noqa: E402

from tests import pki  # noqa: E402
from wavebox.xmpp import ping, server, tls  # noqa: E402
from wavebox.xmpp.resolver import Endpoint  # noqa: E402

HOSTS = {"a.test": "127.0.0.2", "b.test": "127.0.0.3"}


class Counter(XMPPHandler):
    def __init__(self, expected):
        XMPPHandler.__init__(self)
        self.expected = expected
        self.count = 0
        self.done = defer.Deferred()

    def connectionInitialized(self):
        self.xmlstream.addObserver("/message", self.on_message)

    def on_message(self, message):
        message.handled = True
        self.count += 1
        if self.count == self.expected:
            self.done.callback(time.perf_counter())


@defer.inlineCallbacks
def main(messages, dialback):
    directory = tempfile.mkdtemp(prefix="wavebox-bench-")
    ca_cert = pki.write_ca_file(directory)
    ports = {}

    def resolve(domain):
        base = domain[len("wave."):] if domain.startswith("wave.") else domain
        return defer.succeed([Endpoint(HOSTS[base], ports[base], domain)])

    servers = {}
    for domain, host in HOSTS.items():
        cert, key = pki.write_certificate_files(domain, directory)
        s2s = server.S2SService([domain, "wave." + domain], "secret-" + domain,
                                 tls.TLSPolicy(cert, key, ca_cert), resolve,
                                 interface=host, port=0, trust_certificates=not dialback)
        s2s.add_handler(ping.PingResponder())
        s2s.startService()
        ports[domain] = s2s.listening_address()[1]
        servers[domain] = s2s
    counter = Counter(messages)
    servers["b.test"].add_handler(counter)

    iq = domish.Element((None, "iq"))
    iq["type"], iq["from"], iq["to"] = "get", "a.test", "b.test"
    iq.addElement(("urn:xmpp:ping", "ping"))
    start = time.perf_counter()
    yield servers["a.test"].request(iq)
    setup = time.perf_counter() - start

    body = "x" * 200
    start = time.perf_counter()
    for i in range(messages):
        m = domish.Element((None, "message"))
        m["from"], m["to"], m["id"] = "alice@a.test", "bob@b.test", str(i)
        m.addElement("body", content=body)
        servers["a.test"].send(m)
    end = yield counter.done
    elapsed = end - start
    print("set-up (TCP, STARTTLS both ways, %s) and one ping round trip: %.1f ms"
          % ("dialback with verify" if dialback else "certificate shortcut", setup * 1000))
    print("%d messages of ~300 bytes a.test -> b.test over TLS: %.2f s, %.0f messages/s"
          % (messages, elapsed, messages / elapsed))
    for s2s in servers.values():
        yield s2s.stopService()


# --- side by side with Prosody -----------------------------------------------------

def process_cpu(pid):
    """User + system CPU seconds of a process."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ping_iq(to):
    iq = domish.Element((None, "iq"))
    iq["type"], iq["from"], iq["to"] = "get", "a.test", to
    iq.addElement(("urn:xmpp:ping", "ping"))
    return iq


@defer.inlineCallbacks
def measure_peer(label, peer_domain, peer_address, pid, policy, resolve, port, setups, pings):
    """Set-up times over fresh streams, then pings per CPU-second of the peer."""
    times = []
    s2s = None
    for i in range(setups):
        s2s = server.S2SService(["a.test"], "secret-a.test", policy, resolve,
                                 interface=HOSTS["a.test"], port=port, trust_certificates=False)
        s2s.add_handler(ping.PingResponder())
        s2s.startService()
        start = time.perf_counter()
        yield s2s.request(ping_iq(peer_domain), timeout=30)
        times.append(time.perf_counter() - start)
        if i < setups - 1:
            yield s2s.stopService()
    # Pings over the last stream: 20 in flight, the peer's CPU around them.
    cpu = process_cpu(pid)
    start = time.perf_counter()
    sent = [0]

    @defer.inlineCallbacks
    def pinger():
        while sent[0] < pings:
            sent[0] += 1
            yield s2s.request(ping_iq(peer_domain), timeout=30)
    yield defer.gatherResults([pinger() for _ in range(20)], consumeErrors=True)
    elapsed = time.perf_counter() - start
    cpu = process_cpu(pid) - cpu
    yield s2s.stopService()
    times.sort()
    print("  %-44s set-up median %6.1f ms (min %5.1f, max %6.1f, %d tries);  "
          "%5d pings in %.2f s: %6.0f/s, peer CPU %.2f s = %6.0f pings per CPU-second"
          % (label, 1000 * times[len(times) // 2], 1000 * times[0], 1000 * times[-1],
             len(times), pings, elapsed, pings / elapsed, cpu,
             pings / cpu if cpu else float("inf")))
    sys.stdout.flush()
    return times


@defer.inlineCallbacks
def versus_prosody(setups, pings):
    from tests.dnsserver import ZoneServer, standard_records
    from tests.pki import write_domain_files
    from tests.processes import free_port
    from tests.prosody import ProsodyPeer
    from tests.helpers import start_twistd_wavebox

    directory = tempfile.mkdtemp(prefix="wavebox-bench-s2s-")
    os.makedirs(os.path.join(directory, "a"))
    cert, key, ca = write_domain_files("a.test", os.path.join(directory, "a"))
    prosody = ProsodyPeer(os.path.join(directory, "prosody"), domain="prosody.test",
                          ip="127.0.0.5")
    prosody.write_files()
    # a.test trusts the test CA (the wavebox peers) and Prosody's self-signed certificate.
    bundle = os.path.join(directory, "a", "trusted.pem")
    with open(bundle, "wb") as out:
        for path in (ca, prosody.certificate_path):
            with open(path, "rb") as f:
                out.write(f.read())
    policy = tls.TLSPolicy(cert, key, bundle)
    port = free_port(HOSTS["a.test"])
    peers = {"b.test": None, "prosody.test": (prosody.ip, prosody.s2s_port)}

    def resolve(domain):
        base = domain[len("wave."):] if domain.startswith("wave.") else domain
        host, p = peers[base]
        return defer.succeed([Endpoint(host, p, domain)])

    records = standard_records({"a.test": port})
    zone = yield ZoneServer.start(records=records)
    print("a.test in this process (%s:%d), STARTTLS required, dialback; load average %s"
          % (HOSTS["a.test"], port, " ".join("%.2f" % x for x in os.getloadavg())))
    try:
        for label, trusts_a in (("wavebox b.test, certificate shortcut", True),
                                ("wavebox b.test, dialback with connect-back", False)):
            home = os.path.join(directory, "b-%s" % ("cert" if trusts_a else "dialback"))
            os.makedirs(os.path.join(home, "pki"))
            b_cert, b_key, b_ca = write_domain_files("b.test", os.path.join(home, "pki"))
            options = ["--domain", "b.test", "--data-dir", os.path.join(home, "data"),
                       "--s2s-interface", HOSTS["b.test"], "--s2s-port", "0",
                       "--certificate", b_cert, "--private-key", b_key,
                       "--trusted-ca", b_ca if trusts_a else prosody.certificate_path,
                       "--nameserver", "%s:%d" % zone.nameserver,
                       "--console-interface", "127.0.0.1", "--console-port", "0",
                       "--log-level", "info"]
            if not trusts_a:
                options += ["--tls-required", "no"]
            proc, _ = yield start_twistd_wavebox(None, home, options, wants_s2s=True)
            try:
                peers["b.test"] = proc.s2s_address
                yield measure_peer(label, "b.test", proc.s2s_address, proc.pid, policy,
                                   resolve, port, setups, pings)
            finally:
                proc.transport.signalProcess("TERM")
                yield proc.ended
        prosody.peers = {"a.test": (HOSTS["a.test"], port)}
        yield prosody.start()
        try:
            yield measure_peer("Prosody 0.12 prosody.test, dialback", "prosody.test",
                               (prosody.ip, prosody.s2s_port), prosody.pid, policy, resolve,
                               port, setups, pings)
        finally:
            yield prosody.stop()
    finally:
        yield zone.stop()
        import shutil
        shutil.rmtree(directory, ignore_errors=True)


def run_versus(argv):
    def value(flag, default):
        return int(argv[argv.index(flag) + 1]) if flag in argv else default
    failures = []
    d = versus_prosody(value("--setups", 21), value("--pings", 5000))
    d.addErrback(failures.append)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if failures:
        failures[0].printTraceback()
        sys.exit(1)


if __name__ == "__main__" and "--versus-prosody" in sys.argv:
    run_versus(sys.argv[1:])
elif __name__ == "__main__":
    count = int(next((a for a in sys.argv[1:] if a.isdigit()), "20000"))
    failures = []
    d = main(count, "--dialback" in sys.argv)
    d.addErrback(failures.append)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if failures:
        failures[0].printTraceback()
        sys.exit(1)
