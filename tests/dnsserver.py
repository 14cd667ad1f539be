"""
A real DNS server for tests: twisted.names, authoritative only, on 127.0.0.1
with UDP and TCP on one ephemeral port.

Zones come from Python data (``records``) or from BIND zone-file text
(``zones``).  Python data is turned into zone-file text and goes through the
same parser, so both paths serve the same way.  What twisted.names'
``BindAuthority`` needs (twisted-notes section 4.1), this module writes for
you from data: an ``$ORIGIN`` and an SOA.
Zone text you write yourself needs an ``$ORIGIN`` (or absolute names) and
an SOA; the SOA's ``( ... )`` may be on one line or span several.

In a trial test::

    server = yield ZoneServer.start(records=standard_records(ports))
    self.addCleanup(server.stop)
    resolver = DnspythonResolver(nameserver=server.nameserver)

From a shell or a subprocess fixture::

    python -m tests.dnsserver ZONEFILE [ZONEFILE...]

prints ``PORT`` on the first line of stdout, then serves until SIGTERM/SIGINT.
A zone file it cannot read is one line on stderr and exit status 2.
"""

import sys

from twisted.internet import defer, error as ierror
from twisted.names import authority, common, dns, server
from twisted.names import error as nerror

# The test hosts of the design (docs/design.md, "Test hosts are loopback
# addresses").
TEST_HOSTS = {
    "a.test": "127.0.0.2",
    "wave.a.test": "127.0.0.2",
    "b.test": "127.0.0.3",
    "wave.b.test": "127.0.0.3",
}


def A(address):
    return ("A", address)


def AAAA(address):
    return ("AAAA", address)


def SRV(priority, weight, port, target):
    """``target`` "." means "no service here" (RFC 2782)."""
    return ("SRV", priority, weight, port, target)


def standard_records(ports=None, hosts=TEST_HOSTS, tls_ports=None):
    """
    The test hosts' addresses and, for each domain in ``ports``
    (``{"b.test": 40123}``), the records the seed recommends for a wave
    server without disco, both pointing at ``wave.DOMAIN`` on that port::

        _xmpp-server._tcp.DOMAIN.      SRV 10 0 PORT wave.DOMAIN.
        _xmpp-server._tcp.wave.DOMAIN. SRV 10 0 PORT wave.DOMAIN.

    and for each domain in ``tls_ports`` its direct TLS port (XEP-0368),
    at a more preferred priority::

        _xmpps-server._tcp.DOMAIN.      SRV 5 0 TLSPORT wave.DOMAIN.
        _xmpps-server._tcp.wave.DOMAIN. SRV 5 0 TLSPORT wave.DOMAIN.
    """
    records = {name: [A(address)] for name, address in hosts.items()}
    for service, priority, table in (("_xmpp-server._tcp.", 10, ports),
                                     ("_xmpps-server._tcp.", 5, tls_ports)):
        for domain, port in (table or {}).items():
            for owner in (domain, "wave." + domain):
                records.setdefault(service + owner, []).append(
                    SRV(priority, 0, port, "wave." + domain))
    return records


def _absolute(name):
    name = str(name).strip().lower()
    return name if name.endswith(".") else name + "."


def _zone_of(name):
    """The zone a name is served from: its top-level label ("test.")."""
    labels = _absolute(name).rstrip(".").split(".")
    return labels[-1] + "."


def zone_texts(records):
    """BIND zone-file texts (one per top-level domain) for ``{name: [record]}``."""
    by_zone = {}
    for name, rrs in records.items():
        by_zone.setdefault(_zone_of(name), []).append((_absolute(name), rrs))
    texts = []
    for origin, names in sorted(by_zone.items()):
        lines = [
            "$ORIGIN %s" % (origin,),
            "$TTL 60",
            "@ IN SOA ns.%s hostmaster.%s (" % (origin, origin),
            "    1 3600 600 86400 60 )",
            "@ IN NS ns.%s" % (origin,),
        ]
        if not any(n == "ns." + origin for n, _ in names):
            lines.append("ns.%s IN A 127.0.0.1" % (origin,))
        for name, rrs in names:
            for rr in rrs:
                kind, rdata = rr[0].upper(), rr[1:]
                if kind == "SRV":
                    priority, weight, port, target = rdata
                    target = "." if target in (".", "") else _absolute(target)
                    rdata = (priority, weight, port, target)
                elif kind not in ("A", "AAAA"):
                    raise ValueError("record type %r: only SRV, A and AAAA" % (kind,))
                lines.append("%s IN %s %s" % (name, kind, " ".join(str(x) for x in rdata)))
        texts.append("\n".join(lines) + "\n")
    return texts


class _TextAuthority(authority.BindAuthority):
    """A BindAuthority read from text rather than from a file."""

    def collapseContinuations(self, lines):
        # twisted.names' own version takes a "( ... )" closed on the same
        # line for an open one and swallows the rest of the zone into it;
        # an SOA on one line is how most people write it.
        statements, inside = [], False
        for line in lines:
            tokens = line.replace(b"(", b" ( ").replace(b")", b" ) ").split()
            if not inside:
                statements.append([])
            for token in tokens:
                if token == b"(":
                    inside = True
                elif token == b")":
                    inside = False
                else:
                    statements[-1].append(token)
        return [s for s in statements if s]

    def loadFile(self, text):
        self.origin = b"."
        lines = text.encode("ascii").splitlines(True)
        self.parseLines(self.collapseContinuations(self.stripComments(lines)))
        if self.soa is None:
            raise ValueError("zone text without an SOA record")
        # twisted.names turns an SRV target "." into a label named "."; the
        # root name is the empty name.
        for rrs in self.records.values():
            for rr in rrs:
                if isinstance(rr, dns.Record_SRV) and rr.target.name == b".":
                    rr.target = dns.Name(b"")


class _ServerFailure(Exception):
    """Raised for the names told to fail: the server answers SERVFAIL."""


class _Gate(common.ResolverBase):
    """
    First in the server's chain: records every question and answers the
    names told to fail (SERVFAIL) or to stay silent (no answer ever, so the
    client times out).  Every other name goes on to the zones.
    """

    def __init__(self, servfail, silent):
        common.ResolverBase.__init__(self)
        self.servfail = {_absolute(n) for n in servfail}
        self.silent = {_absolute(n) for n in silent}
        self.queries = []

    def _lookup(self, name, cls, type, timeout):
        text = _absolute(name.decode("ascii") if isinstance(name, bytes) else name)
        self.queries.append((text.rstrip("."), dns.QUERY_TYPES.get(type, str(type))))
        if text in self.silent:
            return defer.Deferred()
        if text in self.servfail:
            return defer.fail(_ServerFailure(text))
        return defer.fail(nerror.DomainError(name))


class _Factory(server.DNSServerFactory):
    noisy = False

    def __init__(self, resolvers):
        server.DNSServerFactory.__init__(self, authorities=resolvers)
        self._lost = []

    def gotResolverError(self, failure, protocol, message, address):
        if failure.check(_ServerFailure):
            # The parent would log.err it, which trial reports as an error.
            response = self._responseFromMessage(message=message, rCode=dns.ESERVER)
            self.sendReply(protocol, response, address)
            return
        return server.DNSServerFactory.gotResolverError(
            self, failure, protocol, message, address)

    def connectionLost(self, protocol):
        server.DNSServerFactory.connectionLost(self, protocol)
        if not self.connections:
            lost, self._lost = self._lost, []
            for d in lost:
                d.callback(None)

    def close_connections(self):
        if not self.connections:
            return defer.succeed(None)
        d = defer.Deferred()
        self._lost.append(d)
        for protocol in list(self.connections):
            protocol.transport.abortConnection()
        return d


def _authorities(records, zones):
    texts = list(zones) + (zone_texts(records) if records else [])
    if not texts:
        raise ValueError("no zone: give records or zones")
    return [_TextAuthority(t) for t in texts]


class ZoneServer:
    """An authoritative DNS server on 127.0.0.1 (UDP and TCP, one port)."""

    def __init__(self, records=None, zones=(), servfail=(), silent=(),
                 interface="127.0.0.1", reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.interface = interface
        self.gate = _Gate(servfail, silent)
        self.authorities = _authorities(records, zones)
        self.factory = _Factory([self.gate] + self.authorities)
        self.port = None
        self._udp = self._tcp = None

    def serve(self, records=None, zones=()):
        """
        Answer from these zones from now on, instead of the ones given so
        far: for peers whose ports are known only after they have been told
        where this server is.
        """
        self.authorities = _authorities(records, zones)
        self.factory.resolver.resolvers[1:] = self.authorities

    @classmethod
    def start(cls, records=None, zones=(), servfail=(), silent=(), reactor=None):
        """Deferred[ZoneServer], listening."""
        try:
            zone_server = cls(records, zones, servfail, silent, reactor=reactor)
            zone_server.listen()
        except Exception:
            return defer.fail()
        return defer.succeed(zone_server)

    def listen(self, port=0):
        """
        Serve on ``port`` (UDP and TCP), or on a free port when it is 0: UDP
        picks the ephemeral port and TCP must get the same number, which
        another test may hold, so that is tried a few times.
        """
        for attempt in range(20 if port == 0 else 1):
            udp = self.reactor.listenUDP(port, dns.DNSDatagramProtocol(self.factory),
                                         interface=self.interface)
            got = udp.getHost().port
            try:
                tcp = self.reactor.listenTCP(got, self.factory, interface=self.interface)
            except ierror.CannotListenError:
                udp.stopListening()
                continue
            self._udp, self._tcp, self.port = udp, tcp, got
            return self
        raise ierror.CannotListenError(self.interface, 0, "no port free for both UDP and TCP")

    def set_records(self, records=None, zones=()):
        """
        Serve these zones from now on instead of the ones given before: a
        server whose address its clients must know before the records do
        (the S2S ports of ``twistd`` children that pick their own).
        """
        texts = list(zones) + (zone_texts(records) if records else [])
        if not texts:
            raise ValueError("no zone: give records or zones")
        self.authorities = [_TextAuthority(t) for t in texts]
        self.factory.resolver.resolvers[:] = [self.gate] + self.authorities

    @property
    def nameserver(self):
        """``(host, port)``, as :class:`wavebox.xmpp.resolver.DnspythonResolver` takes it."""
        return (self.interface, self.port)

    @property
    def queries(self):
        """Every question asked so far: ``[(name, type)]``, e.g. ``("b.test", "A")``."""
        return list(self.gate.queries)

    def stop(self):
        """Deferred that fires when both ports and every TCP connection are closed."""
        ds = []
        if self._udp is not None:
            ds.append(defer.maybeDeferred(self._udp.stopListening))
        if self._tcp is not None:
            ds.append(defer.maybeDeferred(self._tcp.stopListening))
        ds.append(self.factory.close_connections())
        self._udp = self._tcp = None
        return defer.gatherResults(ds).addCallback(lambda _: None)


def main(argv=None):
    """
    ``python -m tests.dnsserver [--port N] ZONEFILE...``: print the port,
    serve until stopped.  A fixed ``--port`` lets a walkthrough's config
    files name the server before it starts (docs/tutorial.rst).
    """
    from twisted.internet import reactor
    argv = list(sys.argv[1:] if argv is None else argv)
    port = 0
    if argv[:1] == ["--port"] and len(argv) >= 2:
        try:
            port = int(argv[1])
        except ValueError:
            port = -1
        if not 0 < port < 65536:
            sys.stderr.write("dnsserver: --port: not a port number: %r\n" % (argv[1],))
            return 2
        del argv[:2]
    if not argv:
        sys.stderr.write("usage: python -m tests.dnsserver [--port N] ZONEFILE [ZONEFILE...]\n")
        return 2
    texts = []
    for path in argv:
        try:
            with open(path, encoding="ascii") as f:
                text = f.read()
            _TextAuthority(text)
        except (OSError, UnicodeError, ValueError, TypeError, IndexError, KeyError) as e:
            sys.stderr.write("dnsserver: %s: not a zone file we can serve: %s\n" % (path, e))
            return 2
        texts.append(text)
    try:
        zone_server = ZoneServer(zones=texts).listen(port)
    except ierror.CannotListenError as e:
        sys.stderr.write("dnsserver: cannot listen on 127.0.0.1:%d: %s\n" % (port, e.socketError))
        return 2
    sys.stdout.write("%d\n" % (zone_server.port,))
    sys.stdout.flush()
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
