"""
In-memory doubles for the XMPP tests: a StringTransport that can "start TLS",
a TLS policy that says what the test wants, a connector that records
connection attempts, a dict resolver, and helpers to speak to a stream.
"""

import collections

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from twisted.words.xish import domish
from zope.interface import alsoProvides

from wavebox.xmpp import limits, server, streams

Endpoint = collections.namedtuple("Endpoint", "host port target")

NS_DB = "jabber:server:dialback"
HEADER = ("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
          "xmlns:db='jabber:server:dialback' %s version='1.0'>")


class TLSTransport(StringTransport):
    """A StringTransport on which STARTTLS "succeeds" at once."""

    def __init__(self, host="127.0.0.9", port=5269):
        StringTransport.__init__(self, peerAddress=IPv4Address("TCP", host, port))
        self.tls_creator = None

    def startTLS(self, creator):
        self.tls_creator = creator
        alsoProvides(self, ISSLTransport)

    def getPeerCertificate(self):
        return None

    def abortConnection(self):
        self.loseConnection()


class FakeTLS:
    """A TLS policy; ``proves`` are the domains a peer certificate names."""

    def __init__(self, required=True, proves=(), certifies=("a.test", "wave.a.test")):
        self.required = required
        self.proves = set(proves)
        self.ours = set(certifies)

    def certifies(self, domain):
        return domain in self.ours

    def receiving(self, verdict, direct=False):
        return ("receiving", verdict)

    def originating(self, hostname, verdict, direct=False):
        return ("originating", hostname)

    def peer_proves(self, transport, verdict, domain):
        return domain in self.proves


class Connector:
    def __init__(self, host, port, factory):
        self.host, self.port, self.factory = host, port, factory
        self.stopped = False

    def stopConnecting(self):
        self.stopped = True
        self.factory.clientConnectionFailed(self, None)


class Network:
    """Records ``connect`` calls; the test decides what each one does."""

    def __init__(self):
        self.attempts = []

    def connect(self, host, port, factory, timeout=None, bindAddress=None):
        connector = Connector(host, port, factory)
        self.attempts.append(connector)
        return connector

    def accept(self, connector):
        """The TCP connection succeeds: a Peer speaking for the far end."""
        protocol = connector.factory.buildProtocol(None)
        transport = TLSTransport(connector.host, connector.port)
        protocol.makeConnection(transport)
        return Peer(protocol, transport)

    def refuse(self, connector):
        from twisted.internet.error import ConnectionRefusedError
        from twisted.python.failure import Failure
        connector.factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))


class Resolver:
    def __init__(self, table):
        self.table = dict(table)
        self.queries = []

    def __call__(self, domain):
        self.queries.append(domain)
        if domain in self.table:
            return defer.succeed([Endpoint(h, p, domain) for h, p in self.table[domain]])
        return defer.fail(LookupError("NXDOMAIN %s" % (domain,)))


def parse(data, header=None):
    """
    The top-level elements in ``data`` and the last stream header in it (or
    None).  A stream restart (after STARTTLS) starts a new document.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    pieces = text.split("<stream:stream")
    documents = [pieces[0]] if pieces[0].strip() else []
    documents += ["<stream:stream" + p for p in pieces[1:]]
    root, elements = [], []
    for document in documents:
        if not document.startswith("<stream:stream"):
            document = (header or HEADER % "") + document
        parser = domish.elementStream()
        parser.DocumentStartEvent = root.append
        parser.ElementEvent = elements.append
        parser.DocumentEndEvent = lambda: None
        parser.parse(document.encode("utf-8"))
    return (root[-1] if pieces[1:] else None), elements


class Peer:
    """The far end of one stream, over a :class:`TLSTransport`."""

    def __init__(self, protocol, transport):
        self.protocol = protocol
        self.transport = transport
        self.session = protocol.authenticator

    def feed(self, text):
        self.protocol.dataReceived(text.encode("utf-8") if isinstance(text, str) else text)

    def take(self):
        """What our side wrote since the last take: (header or None, elements)."""
        data = self.transport.value()
        self.transport.clear()
        return parse(data)

    def lose(self):
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure
        self.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def sid(self):
        return self.session.sid


def stream_error(elements):
    """The condition of the stream error among ``elements``, or None."""
    for element in elements:
        if element.name == "error" and element.uri == streams.NS_STREAMS:
            for child in element.elements():
                if child.name != "text":
                    return child.name
    return None


def make_service(domains=("a.test", "wave.a.test"), tls=None, table=None, clock=None,
                 secret="s3cret", **kw):
    clock = clock or task.Clock()
    network = Network()
    resolver = Resolver(table or {})
    # The tests advance the clock by hours; the idle timeout (tests of its
    # own give it) would close their streams on the way.
    kw.setdefault("limits", limits.StreamLimits(idle_timeout=None))
    service = server.S2SService(
        list(domains), secret, tls if tls is not None else FakeTLS(), resolver,
        port=None, clock=clock, connect=network.connect, **kw)
    service.startService()
    return service, network, resolver, clock


def incoming(service, host="127.0.0.9"):
    """A peer connects to ``service``: the receiving side of a new stream."""
    protocol = streams.IncomingFactory(service).buildProtocol(None)
    transport = TLSTransport(host, 40000)
    protocol.makeConnection(transport)
    return Peer(protocol, transport)


def open_incoming(service, sender="b.test", to="a.test", tls=True):
    """A peer connects, and (when ``tls``) STARTTLS is done: ready for dialback."""
    peer = incoming(service)
    peer.feed(HEADER % ("from='%s' to='%s'" % (sender, to)))
    if tls:
        peer.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        peer.feed(HEADER % ("from='%s' to='%s'" % (sender, to)))
    peer.take()
    return peer


def answer_outgoing(network, index=-1, sender="b.test", tls=True, dialback_errors=True):
    """
    Play the receiving server for our latest outgoing connection, up to
    dialback.  ``dialback_errors``: offer ``<dialback><errors/></dialback>``
    as wavebox does (False: a bare ``<dialback/>``, as Prosody 0.12 does).
    """
    peer = network.accept(network.attempts[index])
    peer.feed(HEADER % ("from='%s' id='pre-tls'" % (sender,)))
    if tls:
        peer.feed("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                  "<required/></starttls></stream:features>")
        peer.feed("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        peer.feed(HEADER % ("from='%s' id='post-tls-%d'" % (sender, len(network.attempts))))
    peer.feed("<stream:features><dialback xmlns='urn:xmpp:features:dialback'>%s</dialback>"
              "</stream:features>" % ("<errors/>" if dialback_errors else ""))
    return peer
