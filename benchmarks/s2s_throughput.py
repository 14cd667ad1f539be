"""
S2S figures on loopback: time to set up a stream (TCP, STARTTLS both ways,
dialback or the certificate shortcut) and stanzas per second from a.test
(127.0.0.2) to b.test (127.0.0.3) over one authenticated TLS stream.

    python benchmarks/s2s_throughput.py [MESSAGES] [--dialback]

``--dialback`` turns the certificate shortcut off, so the set-up includes the
Receiving Server's verify round trip to the Authoritative Server.
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
from wavebox.xmpp import ping, streams, tls  # noqa: E402
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
        s2s = streams.S2SService([domain, "wave." + domain], "secret-" + domain,
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


if __name__ == "__main__":
    count = int(next((a for a in sys.argv[1:] if a.isdigit()), "20000"))
    failures = []
    d = main(count, "--dialback" in sys.argv)
    d.addErrback(failures.append)
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    if failures:
        failures[0].printTraceback()
        sys.exit(1)
