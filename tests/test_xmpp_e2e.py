"""
Two (or three) wavebox servers in one process, on the real reactor: real TCP
on loopback (a.test on 127.0.0.2, b.test on 127.0.0.3, each on an ephemeral
port), real STARTTLS with certificates from the tests' CA (tests/pki.py), dialback,
and a real DNS server on loopback (tests/dnsserver.py) with SRV and A
records that carry the real ports.  The servers are built by
``wavebox.service.makeService`` from a configuration, as twistd builds them.
"""

import os

from twisted.internet import defer, endpoints, protocol, reactor
from twisted.trial import unittest
from twisted.words.protocols.jabber import error
from twisted.words.xish import domish

from tests import pki
from tests.dnsserver import A, SRV, ZoneServer, standard_records
from tests.helpers import LogWatch
from wavebox import service as wservice
from wavebox.config import load

GUARD = 20      # seconds: a guard against hanging, never an assertion about speed

HOSTS = {"a.test": "127.0.0.2", "b.test": "127.0.0.3", "c.test": "127.0.0.4"}


def ping_iq(sender, to):
    iq = domish.Element((None, "iq"))
    iq["type"], iq["from"], iq["to"] = "get", sender, to
    iq.addElement(("urn:xmpp:ping", "ping"))
    return iq


class RawClient(protocol.Protocol):
    """A peer that sends bytes and keeps what it gets until the connection ends."""

    def __init__(self, payloads):
        self.payloads = payloads
        self.received = b""
        self.done = defer.Deferred()

    def connectionMade(self):
        for payload in self.payloads:
            self.transport.write(payload)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.done.callback(self.received.decode("utf-8", "replace"))


HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
          "xmlns:stream='http://etherx.jabber.org/streams' "
          "xmlns:db='jabber:server:dialback' from='mallory.test' to='b.test' version='1.0'>")


class TwoServers(unittest.TestCase):
    """a.test and b.test, running; ``PING`` is a.test's ``--xmpp_server_ping``."""

    PING = []

    @defer.inlineCallbacks
    def setUp(self):
        self.log = LogWatch(self)
        self.dir = self.mktemp()
        self.ca_cert = pki.write_ca_file(self.dir)
        self.servers = {}
        self.values = {}
        self.zone = None
        self.addCleanup(self._stop)
        self.start("a.test", ping=self.PING)
        self.start("b.test")
        # Before the reactor turns (the start-up ping is the next thing it does).
        yield self.publish_dns()

    @defer.inlineCallbacks
    def _stop(self):
        for top in self.servers.values():
            yield top.stopService()
        if self.zone is not None:
            yield self.zone.stop()

    def start(self, domain, ping=(), certificate_for=None, ca=None, chain=()):
        """
        Start a server for ``domain``; :meth:`publish_dns` makes it known.
        ``chain``: PEM files whose certificates it sends after its own.
        """
        cert, key = pki.write_certificate_files(certificate_for or domain, self.dir,
                                                **({"ca_name": ca} if ca else {}))
        for path in chain:
            with open(path, "rb") as extra, open(cert, "ab") as f:
                f.write(extra.read())
        values = {
            "domain": [domain], "data_dir": "%s/%s-data" % (self.dir, domain),
            "s2s_interface": HOSTS[domain], "s2s_port": "0", "certificate": cert,
            "private_key": key, "trusted_ca": self.ca_cert, "xmpp_server_ping": list(ping),
            "nameserver": "127.0.0.1:1", "dns_timeout": "2", "console_port": "0",
            "web_port": "0"}
        self.adjust(values)
        top = wservice.makeService(load(values))
        self.values[domain] = values
        self.servers[domain] = top
        top.startService()

    def adjust(self, values):
        """Change a server's configuration before it is built."""

    @defer.inlineCallbacks
    def publish_dns(self):
        """(Re)start the zone server with every server's real port; point resolvers at it."""
        if self.zone is not None:
            yield self.zone.stop()
        ports = {d: top.s2s.listening_address()[1] for d, top in self.servers.items()}
        records = standard_records({d: p for d, p in ports.items() if d in ("a.test", "b.test")})
        if "c.test" in ports:
            records["wave.c.test"] = [A(HOSTS["c.test"])]
            for owner in ("c.test", "wave.c.test"):
                records["_xmpp-server._tcp." + owner] = [SRV(10, 0, ports["c.test"], "wave.c.test")]
        self.zone = yield ZoneServer.start(records=records)
        for top in self.servers.values():
            top.resolver.nameserver = self.zone.nameserver

    def s2s(self, domain):
        return self.servers[domain].s2s



class PingAtStartUpTests(TwoServers):

    PING = ["b.test"]

    @defer.inlineCallbacks
    def test_fedone_ping_at_start_up_gets_its_receipt(self):
        line = yield self.log.wait_for("got ping response from b.test")
        self.assertEqual(line, "got ping response from b.test")
        # It went from our wave service to the one disco found, over TLS with
        # verified certificates both ways.
        self.assertEqual(self.log.count("sending ping to b.test (wave.b.test)"), 1)
        for stream in self.s2s("a.test").outgoing + self.s2s("b.test").outgoing:
            self.assertTrue(stream.tls_active)
            self.assertTrue(stream.tls_verdict.chain_ok)


class RoutingTests(TwoServers):
    """What routes and connections do that only a deployment shows (issue 11's mutations)."""

    PING = ["b.test"]

    @defer.inlineCallbacks
    def test_streams_leave_from_the_address_we_listen_on(self):
        yield self.log.wait_for("got ping response from b.test")
        peers = [s.peer for s in self.s2s("b.test").incoming if s.authenticated]
        self.assertTrue(peers)
        self.assertEqual({p.rpartition(":")[0] for p in peers}, {HOSTS["a.test"]})


class DiscoveryToRouteTests(TwoServers):
    """No start-up ping: nothing is known of b.test before the test asks."""

    @defer.inlineCallbacks
    def test_the_wave_service_found_is_where_s2s_goes_without_asking_dns_again(self):
        from wavebox.xmpp.discovery import DiscoUnavailable
        a = self.servers["a.test"]
        # Found by the wave. guess (no disco: disco's own answer would also
        # leave a hint), wave.b.test is resolved once, by discovery.
        a.discovery.disco = lambda domain, endpoints: defer.fail(DiscoUnavailable("off"))
        before = len(self.zone.queries)
        jid = yield a.federation.transport.discover("b.test")
        self.assertEqual(jid, "wave.b.test")
        answer = yield self.s2s("a.test").request(ping_iq("a.test", jid)).addTimeout(
            GUARD, reactor)
        self.assertEqual(answer["type"], "result")
        # The S2S route took the endpoints discovery found (service.py's
        # locate: set_endpoints) and asked DNS nothing more.
        asked = [q for q in self.zone.queries[before:]
                 if q == ("_xmpp-server._tcp.wave.b.test", "SRV")]
        self.assertEqual(len(asked), 1, self.zone.queries[before:])


class FederationTests(TwoServers):

    @defer.inlineCallbacks
    def test_xep_0199_ping_is_answered_across_servers(self):
        answer = yield self.s2s("a.test").request(ping_iq("a.test", "b.test")).addTimeout(
            GUARD, reactor)
        self.assertEqual((answer["type"], answer["from"], answer["to"]),
                         ("result", "b.test", "a.test"))
        answer = yield self.s2s("b.test").request(ping_iq("wave.b.test", "wave.a.test"))
        self.assertEqual(answer["type"], "result")

    @defer.inlineCallbacks
    def test_dialback_verifies_keys_when_certificates_are_not_used(self):
        for domain in ("a.test", "b.test"):
            self.s2s(domain).dialback.trust_certificates = False
        answer = yield self.s2s("a.test").request(ping_iq("a.test", "b.test")).addTimeout(
            GUARD, reactor)
        self.assertEqual(answer["type"], "result")
        self.assertEqual(self.log.count("a.test -> b.test verified by its Authoritative Server"), 1)
        self.assertEqual(self.log.count("b.test -> a.test verified by its Authoritative Server"), 1)

    @defer.inlineCallbacks
    def test_wave_service_is_found_by_disco(self):
        found = yield self.servers["a.test"].discovery.discover("b.test")
        self.assertEqual(found.jid, "wave.b.test")

    @defer.inlineCallbacks
    def test_wavebox_check_asks_disco_while_the_server_is_stopped(self):
        from wavebox.xmpp.discovery import DiscoUnavailable
        from wavebox.xmpp.resolver import Endpoint
        from wavebox.xmpp.server import make_check_disco
        b_port = self.s2s("b.test").listening_address()[1]
        where = [Endpoint("127.0.0.3", b_port, "wave.b.test")]
        a_port = self.s2s("a.test").listening_address()[1]
        values = dict(self.values["a.test"], s2s_port=str(a_port))
        # While a.test's server runs, answers would go to it: no disco.
        yield self.assertFailure(make_check_disco(load(values))("b.test", where),
                                 DiscoUnavailable)
        # Stopped, the check takes its place (its address is in DNS) and asks.
        yield self.servers.pop("a.test").stopService()
        found = yield make_check_disco(load(values))("b.test", where).addTimeout(GUARD, reactor)
        self.assertEqual(found, "wave.b.test")

    @defer.inlineCallbacks
    def test_peer_whose_certificate_names_another_domain_is_refused(self):
        self.start("c.test", certificate_for="evil.test")
        yield self.publish_dns()
        d = self.s2s("a.test").request(ping_iq("a.test", "c.test"))
        failure = yield self.assertFailure(d.addTimeout(GUARD, reactor), error.StanzaError)
        self.assertEqual(failure.condition, "remote-server-timeout")
        self.assertTrue(self.log.count("TLS certificate of c.test refused"))
        self.assertFalse([s for s in self.s2s("c.test").incoming if s.authenticated])

    @defer.inlineCallbacks
    def test_peer_signed_by_a_ca_we_do_not_trust_is_told_in_plain_words(self):
        self.start("c.test", ca="another CA")
        yield self.publish_dns()
        d = self.s2s("a.test").request(ping_iq("a.test", "c.test"))
        yield self.assertFailure(d.addTimeout(GUARD, reactor), error.StanzaError)
        self.assertTrue(self.log.count(
            "TLS certificate of c.test refused: its CA is not in trusted_ca"), self.log.lines)

    @defer.inlineCallbacks
    def test_stanza_with_a_spoofed_from_is_refused(self):
        yield self.s2s("a.test").request(ping_iq("a.test", "b.test"))
        delivered = []
        self.s2s("b.test").local.xmlstream.addObserver("/message", delivered.append)
        [stream] = [s for s in self.s2s("a.test").outgoing
                    if ("a.test", "b.test") in s.authenticated]
        spoofed = domish.Element((None, "message"))
        spoofed["from"], spoofed["to"] = "mallory@evil.test", "bob@b.test"
        stream.xmlstream.send(spoofed)
        yield stream.closed.wait().addTimeout(GUARD, reactor)
        self.assertEqual(stream.peer_error, "invalid-from")
        self.assertEqual(delivered, [])
        yield self.log.wait_for("stream error <invalid-from/>")

    @defer.inlineCallbacks
    def raw(self, *payloads):
        host, port = self.s2s("b.test").listening_address()
        client = RawClient([p.encode("utf-8") if isinstance(p, str) else p for p in payloads])
        yield endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, host, port), client)
        received = yield client.done.addTimeout(GUARD, reactor)
        return received

    @defer.inlineCallbacks
    def test_bad_input_gets_stream_errors_while_other_streams_keep_working(self):
        yield self.s2s("a.test").request(ping_iq("a.test", "b.test"))
        malformed = yield self.raw(HEADER, "<message><body></message>")
        self.assertIn("<not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", malformed)
        wrong_namespace = yield self.raw(HEADER.replace("http://etherx.jabber.org/streams",
                                                        "urn:example:bogus"))
        self.assertIn("<invalid-namespace xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>",
                      wrong_namespace)
        huge = yield self.raw(HEADER, "<message to='bob@b.test'><body>",
                              "x" * (1024 * 1024), "</body></message>")
        self.assertIn("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", huge)
        for condition in ("not-well-formed", "invalid-namespace", "policy-violation"):
            self.assertEqual(self.log.count("stream error <%s/>" % (condition,)), 1)
        # The stream a.test -> b.test still carries stanzas.
        answer = yield self.s2s("a.test").request(ping_iq("a.test", "b.test")).addTimeout(
            GUARD, reactor)
        self.assertEqual(answer["type"], "result")
        self.assertEqual(len(self.s2s("a.test").outgoing), 1)


class WholeChainTests(TwoServers):
    """
    Issue 9, finding 9: the chain a peer sends must itself be one path to a
    CA we trust.  c.test sends its certificate, the test CA that issued it
    (trusted), then another root (trusted too): OpenSSL builds the path
    c.test -> test CA and ignores the rest, so only our own check refuses it.
    """

    def setUp(self):
        directory = self.mktemp()
        os.makedirs(directory)
        self.other_root = pki.write_ca_file(directory, "another trusted root")
        return TwoServers.setUp(self)

    def adjust(self, values):
        both = os.path.join(self.dir, "trusted.pem")
        with open(both, "wb") as f:
            for path in (self.ca_cert, self.other_root):
                with open(path, "rb") as pem:
                    f.write(pem.read())
        values["trusted_ca"] = both

    @defer.inlineCallbacks
    def start_c_with_a_root_after_its_root(self):
        self.start("c.test", chain=[self.ca_cert, self.other_root])
        yield self.publish_dns()

    @defer.inlineCallbacks
    def test_peer_that_sends_another_root_after_its_root_is_refused(self):
        yield self.start_c_with_a_root_after_its_root()
        d = self.s2s("a.test").request(ping_iq("a.test", "c.test"))
        failure = yield self.assertFailure(d.addTimeout(GUARD, reactor), error.StanzaError)
        self.assertEqual(failure.condition, "remote-server-timeout")
        [line] = [line for line in self.log.lines
                  if line.startswith("outgoing S2S stream") and "c.test refused" in line]
        self.assertIn("refused: the chain it sent is not one path to trusted_ca: "
                      "CN=Wavebox Federation Test CA is issued by CN=Wavebox Federation "
                      "Test CA, not by the certificate after it, CN=another trusted root", line)
        self.assertNotIn("\n", line)
        self.assertFalse([s for s in self.s2s("c.test").incoming if s.authenticated])

    @defer.inlineCallbacks
    def test_peer_that_sends_such_a_chain_to_us_proves_nothing_by_it(self):
        # c.test connects to a.test: its certificate is no proof of c.test, so
        # dialback asks c.test's Authoritative Server, which a.test reaches
        # only over TLS, where the same chain is refused.
        yield self.start_c_with_a_root_after_its_root()
        d = self.s2s("c.test").request(ping_iq("c.test", "a.test"))
        yield self.assertFailure(d.addTimeout(GUARD, reactor), error.StanzaError)
        self.assertEqual(self.log.count(
            "its TLS certificate proves no domain: the chain it sent is not one path to "
            "trusted_ca: CN=Wavebox Federation Test CA is issued by "
            "CN=Wavebox Federation Test CA"), 1,
            self.log.lines)
        self.assertFalse(self.log.count("c.test -> a.test accepted: its certificate proves"))
        self.assertFalse(self.log.count("c.test -> a.test authenticated by SASL EXTERNAL"))
        self.assertFalse([s for s in self.s2s("a.test").incoming if s.authenticated])

    @defer.inlineCallbacks
    def test_the_same_servers_federate_with_a_chain_that_is_one_path(self):
        self.start("c.test", chain=[self.ca_cert])
        yield self.publish_dns()
        answer = yield self.s2s("a.test").request(ping_iq("a.test", "c.test")).addTimeout(
            GUARD, reactor)
        self.assertEqual(answer["type"], "result")
        answer = yield self.s2s("c.test").request(ping_iq("c.test", "a.test")).addTimeout(
            GUARD, reactor)
        self.assertEqual(answer["type"], "result")
        # c.test's certificate authenticates its stream to a.test: SASL EXTERNAL.
        self.assertEqual(self.log.count(
            "c.test -> a.test authenticated by SASL EXTERNAL over STARTTLS (its certificate "
            "names c.test)"),
            1, self.log.lines)


class SystemTrustStoreTests(TwoServers):
    """
    Without ``trusted_ca``, peers' certificates are checked against the
    system's trust store.  OpenSSL's default verify paths honour
    ``SSL_CERT_FILE``, so here the "system store" is a file we choose.
    """

    def setUp(self):
        self.system_store = None
        old = os.environ.get("SSL_CERT_FILE")
        self.addCleanup(self._restore, old)
        return TwoServers.setUp(self)

    def _restore(self, old):
        if old is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = old

    def adjust(self, values):
        del values["trusted_ca"]
        os.environ["SSL_CERT_FILE"] = self.system_store or self.ca_cert

    @defer.inlineCallbacks
    def test_peer_certificate_from_a_ca_in_the_system_store_is_verified(self):
        answer = yield self.s2s("a.test").request(ping_iq("a.test", "b.test")).addTimeout(
            GUARD, reactor)
        self.assertEqual(answer["type"], "result")
        streams = self.s2s("a.test").outgoing + self.s2s("b.test").outgoing
        self.assertTrue(streams)
        for stream in streams:
            self.assertTrue(stream.tls_active)
            self.assertTrue(stream.tls_verdict.chain_ok, stream.tls_verdict.error)

    @defer.inlineCallbacks
    def test_peer_certificate_from_a_ca_not_in_the_system_store_is_refused(self):
        self.system_store = pki.write_ca_file(self.mktemp(), "a CA nobody trusts")
        self.start("c.test")
        yield self.publish_dns()
        d = self.s2s("c.test").request(ping_iq("c.test", "a.test"))
        yield self.assertFailure(d.addTimeout(GUARD, reactor), error.StanzaError)
        self.assertTrue(self.log.count("TLS certificate of a.test refused: its CA is not in "
                                       "the system trust store (no trusted_ca)"), self.log.lines)


class StreamReuseTests(TwoServers):
    """
    Issue 3, "Reuse an existing stream when it goes to the same address":
    disco with b.test (the seed's step 5) and the wave service wave.b.test
    resolve to the same IP and port, so everything a.test sends to b.test's
    server goes over one TCP connection, each domain pair authenticated on
    it with its own db:result (XEP-0220 multiplexing); the same holds for
    b.test's answers.
    """

    def setUp(self):
        self.accepted = {}
        return TwoServers.setUp(self)

    def start(self, domain, ping=(), certificate_for=None):
        TwoServers.start(self, domain, ping, certificate_for)
        s2s = self.s2s(domain)
        opened = s2s.incoming_opened
        accepted = self.accepted[domain] = []

        def counted(session):
            # Every TCP connection the listener accepts, whatever becomes of it.
            accepted.append(session.address)
            return opened(session)
        s2s.incoming_opened = counted

    @defer.inlineCallbacks
    def ping_the_wave_service_of_b(self):
        # Discovery (disco#items/#info with b.test and wave.b.test), then the
        # FedOne ping from wave.a.test to wave.b.test and its receipt.
        answered = yield self.servers["a.test"].getServiceNamed("ping").ping("b.test")
        self.assertTrue(answered)
        self.assertEqual(self.log.count("sending ping to b.test (wave.b.test)"), 1)

    def assert_one_connection_each_way(self):
        self.assertEqual(len(self.accepted["b.test"]), 1, self.accepted)
        self.assertEqual(len(self.accepted["a.test"]), 1, self.accepted)
        [stream] = self.s2s("a.test").outgoing
        self.assertEqual(stream.authenticated, {("a.test", "b.test"), ("a.test", "wave.b.test"),
                                                ("wave.a.test", "wave.b.test")})
        [answers] = self.s2s("b.test").outgoing
        self.assertTrue({("b.test", "a.test"), ("wave.b.test", "a.test"),
                         ("wave.b.test", "wave.a.test")} <= answers.authenticated,
                        answers.authenticated)

    @defer.inlineCallbacks
    def test_disco_and_the_wave_service_share_one_connection(self):
        yield self.ping_the_wave_service_of_b()
        self.assert_one_connection_each_way()

    @defer.inlineCallbacks
    def test_multiplexed_pairs_are_verified_by_dialback_too(self):
        # Without the certificate shortcut every pair on the shared stream is
        # verified with its Authoritative Server, over the stream the other
        # way: still no further connection.
        for domain in ("a.test", "b.test"):
            self.s2s(domain).dialback.trust_certificates = False
        yield self.ping_the_wave_service_of_b()
        self.assertEqual(self.log.count(
            "wave.a.test -> wave.b.test verified by its Authoritative Server"), 1)
        self.assert_one_connection_each_way()
