"""
Issue 9, findings 1-4: what a hostile peer may send an XMPP stream of ours
(S2S or the XEP-0114 component) and what it costs, over in-memory
transports with a task.Clock.  The same cases against a real twistd
process are in tests/test_hostile_e2e.py; their figures in
benchmarks/bench_hostile.py.
"""

from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from twisted.words.xish import domish

from tests import xmpp_fakes as fx
from tests.helpers import LogWatch
from tests.test_xmpp_streams import condition_of, message
from wavebox import config as wconfig
from wavebox import ports
from wavebox.xmpp import component, elementstream, limits, streams

#: Nested internal entities: each level holds ten of the one below.
def entity_bomb(depth):
    lines = ["<!ENTITY e0 'xxxxxxxxxx'>"]
    for level in range(1, depth + 1):
        lines.append("<!ENTITY e%d '%s'>" % (level, ("&e%d;" % (level - 1,)) * 10))
    return ("<?xml version='1.0'?><!DOCTYPE stream:stream [%s]>" % ("".join(lines),)
            + fx.HEADER % "from='b.test' to='a.test'" + "<message>&e%d;</message>" % (depth,))


class Counted:
    """Counts the calls of ``domish.Element.addContent`` (the copying join) with ``text``."""

    def __init__(self, testcase, text=""):
        self.calls = 0
        original = domish.Element.addContent

        def addContent(element, added):
            if text in added:
                self.calls += 1
            return original(element, added)
        testcase.patch(domish.Element, "addContent", addContent)


class Base(unittest.SynchronousTestCase):

    def setUp(self):
        self.service, self.network, self.resolver, self.clock = fx.make_service(
            table={"b.test": [("127.0.0.3", 5269)]})
        self.addCleanup(self.service.stopService)
        self.log = LogWatch(self)
        self.delivered = []
        self.service.local.xmlstream.addObserver("/message", self.delivered.append)

    def authenticated_peer(self, host="127.0.0.9"):
        self.service.tls.proves.add("b.test")
        peer = fx.incoming(self.service, host)
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        peer.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        peer.feed("<db:result from='b.test' to='a.test'>k</db:result>")
        peer.take()
        self.assertTrue(peer.session.authenticated)
        return peer


class RestrictedXMLTests(Base):
    """Finding 1: no DTD, internal subset or entity declaration (RFC 6120 11.1)."""

    def test_entity_declarations_before_the_header_are_restricted_xml_at_once(self):
        counted = Counted(self, "x")
        peer = fx.incoming(self.service)
        peer.feed(entity_bomb(3))
        header, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "restricted-xml")
        self.assertEqual(header["from"], "a.test")     # RFC 6120 4.9.1.2: header, then error
        self.assertTrue(peer.transport.disconnecting)
        self.assertEqual(self.delivered, [])
        self.assertEqual(counted.calls, 0)              # nothing was expanded into text
        self.assertEqual(self.log.count("stream error <restricted-xml/>"), 1)

    def test_a_bare_doctype_is_restricted_xml(self):
        peer = fx.incoming(self.service)
        peer.feed("<!DOCTYPE stream:stream>" + fx.HEADER % "to='a.test'")
        self.assertEqual(fx.stream_error(peer.take()[1]), "restricted-xml")

    def test_processing_instruction_and_comment_in_a_stream_are_restricted_xml(self):
        for hostile in ("<?evil data?>", "<!-- a comment -->"):
            peer = self.authenticated_peer()
            peer.feed("<message from='bob@b.test' to='alice@a.test'>%s</message>" % (hostile,))
            self.assertEqual(fx.stream_error(peer.take()[1]), "restricted-xml", hostile)
        self.assertEqual(self.delivered, [])

    def test_undeclared_entity_is_not_well_formed(self):
        peer = self.authenticated_peer()
        peer.feed("<message from='bob@b.test' to='alice@a.test'>&e9;</message>")
        self.assertEqual(fx.stream_error(peer.take()[1]), "not-well-formed")

    def test_the_component_stream_refuses_a_dtd_too(self):
        factory = component.ComponentStreamFactory(
            component.ComponentAuthenticator("wave.a.test", "secret"))
        xs = factory.buildProtocol(None)
        transport = StringTransport()
        xs.makeConnection(transport)
        xs.dataReceived(entity_bomb(3).replace("jabber:server", "jabber:component:accept")
                        .encode("utf-8"))
        sent = transport.value().decode("utf-8")
        self.assertIn("<restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>", sent)
        self.assertTrue(transport.disconnecting)
        self.assertNotIn("xxxxxxxxxx", sent)


class StanzaSizeTests(Base):
    """Finding 2: text and whitespace count, are joined in linear time; limits before auth."""

    def test_a_stanza_of_spaces_is_over_the_limit(self):
        self.service.max_stanza_size = 10000
        peer = self.authenticated_peer()
        peer.feed("<message from='bob@b.test' to='alice@a.test'><body>")
        for _ in range(20):
            peer.feed(" " * 1000)
        self.assertEqual(fx.stream_error(peer.take()[1]), "policy-violation")
        self.assertEqual(self.log.count("stream error <policy-violation/>"), 1)

    def test_newlines_in_one_element_are_joined_once(self):
        counted = Counted(self, "\n")
        peer = self.authenticated_peer()
        peer.feed("<message from='bob@b.test' to='alice@a.test'><body>")
        for _ in range(100):
            peer.feed("\n" * 1000)
        peer.feed("</body></message>")
        [delivered] = self.delivered
        self.assertEqual(delivered.body.children, ["\n" * 100000])
        self.assertEqual(counted.calls, 0)

    def test_whitespace_between_stanzas_is_free(self):
        peer = self.authenticated_peer()
        for _ in range(100):
            peer.feed(" " * 10000)
        peer.feed("<message from='bob@b.test' to='alice@a.test'/>")
        self.assertEqual(len(self.delivered), 1)
        self.assertIsNone(fx.stream_error(peer.take()[1]))

    def test_before_starttls_an_element_may_have_10_kb(self):
        peer = fx.incoming(self.service)
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        peer.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>%s" % (" " * 11000,))
        self.assertEqual(fx.stream_error(peer.take()[1]), "policy-violation")

    def test_before_dialback_an_element_may_have_10_kb(self):
        peer = fx.open_incoming(self.service)
        peer.feed("<db:result from='b.test' to='a.test'>%s</db:result>" % ("k" * 11000,))
        self.assertEqual(fx.stream_error(peer.take()[1]), "policy-violation")

    def test_a_stream_header_may_have_10_kb(self):
        peer = fx.incoming(self.service)
        peer.feed("<stream:stream xmlns='jabber:server' ")
        for i in range(200):
            peer.feed("a%d='%s' " % (i, "v" * 100))
        self.assertEqual(fx.stream_error(peer.take()[1]), "policy-violation")

    def test_after_authentication_a_stanza_may_be_bigger(self):
        peer = self.authenticated_peer()
        body = "x" * 100000
        peer.feed("<message from='bob@b.test' to='alice@a.test'><body>%s</body></message>"
                  % (body,))
        self.assertEqual([str(m.body) for m in self.delivered], [body])

    def test_nesting_deeper_than_the_limit_is_a_policy_violation_not_an_internal_error(self):
        peer = self.authenticated_peer()
        peer.feed("<iq type='get' id='deep' from='b.test' to='a.test'>" + "<a>" * 2000)
        self.assertEqual(fx.stream_error(peer.take()[1]), "policy-violation")
        self.assertEqual(self.log.count("internal-server-error"), 0)
        self.assertEqual(self.service.routes.table, {})       # nothing was answered

    def test_the_error_reply_does_not_echo_the_payload(self):
        peer = self.authenticated_peer()
        peer.feed("<iq type='get' id='q1' from='b.test' to='a.test'>"
                  "<query xmlns='urn:example'>%s</query></iq>" % ("<x>y</x>" * 1000,))
        [reply] = self.service.routes.table[("a.test", "b.test")].queue
        self.assertEqual(condition_of(reply), "service-unavailable")
        self.assertEqual([c.name for c in reply.elements()], ["error"])
        self.assertLess(len(reply.toXml()), 300)

    def test_the_component_answers_without_the_payload_too(self):
        sent = []
        c = component.ExternalComponent("127.0.0.1", 5347, "wave.a.test", "s")
        c.send = sent.append
        c.xmlstream = object()
        iq = domish.Element((None, "iq"))
        iq["type"], iq["id"], iq["from"], iq["to"] = "get", "q", "b.test", "wave.a.test"
        iq.addElement(("urn:example", "query")).addContent("y" * 10000)
        c._unhandled_request(iq)
        [reply] = sent
        self.assertEqual([e.name for e in reply.elements()], ["error"])


class CapTests(Base):
    """Finding 3: connections, unauthenticated connections per address, output, idleness."""

    def limit(self, **kw):
        for key, value in kw.items():
            setattr(self.service.limits, key, value)

    def test_one_stream_over_the_total_is_resource_constraint(self):
        self.limit(max_streams=2, max_unauthenticated_per_ip=100)
        first, second = fx.incoming(self.service), fx.incoming(self.service)
        third = fx.incoming(self.service)
        self.assertEqual(fx.stream_error(third.take()[1]), "resource-constraint")
        self.assertTrue(third.transport.disconnecting)
        self.assertFalse(first.transport.disconnecting or second.transport.disconnecting)
        first.lose()
        fourth = fx.incoming(self.service)
        self.assertIsNone(fx.stream_error(fourth.take()[1]))
        self.assertEqual(self.log.count("refused 1 stream(s) with <resource-constraint/>"), 1)

    def test_unauthenticated_streams_per_address_are_capped(self):
        self.limit(max_unauthenticated_per_ip=2)
        peers = [fx.incoming(self.service, "127.0.0.9") for _ in range(2)]
        refused = fx.incoming(self.service, "127.0.0.9")
        self.assertEqual(fx.stream_error(refused.take()[1]), "resource-constraint")
        other = fx.incoming(self.service, "127.0.0.10")
        self.assertIsNone(fx.stream_error(other.take()[1]))
        # Once one of them authenticates it no longer counts against its address.
        self.service.tls.proves.add("b.test")
        peer = peers[0]
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        peer.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        peer.feed("<db:result from='b.test' to='a.test'>k</db:result>")
        admitted = fx.incoming(self.service, "127.0.0.9")
        self.assertIsNone(fx.stream_error(admitted.take()[1]))

    def test_refusals_are_logged_once_a_minute(self):
        self.limit(max_unauthenticated_per_ip=1)
        fx.incoming(self.service)
        for _ in range(50):
            fx.incoming(self.service)
        self.assertEqual(self.log.count("with <resource-constraint/>"), 1)
        self.clock.advance(limits.REFUSAL_LOG_INTERVAL)
        fx.incoming(self.service)
        self.assertEqual(self.log.count("refused 50 stream(s)"), 1)

    def test_strangers_stream_errors_are_logged_at_a_bounded_rate(self):
        self.limit(max_unauthenticated_per_ip=1000)
        for _ in range(limits.STRANGER_LOG_BURST + 30):
            fx.incoming(self.service).feed("<bogus/>")
        self.assertEqual(self.log.count("stream error <invalid-namespace/>"),
                         limits.STRANGER_LOG_BURST)
        self.clock.advance(limits.STRANGER_LOG_WINDOW)
        fx.incoming(self.service).feed("<bogus/>")
        self.assertEqual(self.log.count("(and 30 more streams not yet authenticated"), 1)
        # An authenticated peer's stream error is always logged.
        peer = self.authenticated_peer()
        peer.feed("<bogus xmlns='jabber:server'/>")
        self.assertEqual(self.log.count("stream error <unsupported-stanza-type/>"), 1)

    def test_a_peer_that_does_not_read_is_dropped_past_the_pending_bytes(self):
        self.limit(max_pending_bytes=10000)
        self.service.send(message("a.test", "bob@b.test"))
        out = fx.answer_outgoing(self.network)
        out.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        out.transport.producer.pauseProducing()      # its socket buffer is full
        for _ in range(30):
            self.service.send(message("a.test", "bob@b.test", "x" * 500))
        self.assertTrue(out.transport.disconnecting)
        self.assertEqual(self.log.count("bytes wait for a peer that does not read"), 1)

    def test_a_peer_that_reads_again_gets_a_fresh_budget(self):
        self.limit(max_pending_bytes=10000)
        self.service.send(message("a.test", "bob@b.test"))
        out = fx.answer_outgoing(self.network)
        out.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        for _ in range(3):
            out.transport.producer.pauseProducing()
            for _ in range(15):
                self.service.send(message("a.test", "bob@b.test", "x" * 500))
            out.transport.producer.resumeProducing()
        self.assertFalse(out.transport.disconnecting)

    def test_an_idle_authenticated_stream_is_closed_with_a_stream_close(self):
        self.limit(idle_timeout=600.0)
        peer = self.authenticated_peer()
        self.clock.advance(599)
        peer.feed(" ")                      # a keepalive is activity
        self.clock.advance(599)
        self.assertFalse(peer.transport.disconnecting)
        self.clock.advance(2)
        self.assertIn(b"</stream:stream>", peer.transport.value())
        self.assertTrue(peer.transport.disconnecting)
        self.assertEqual(self.log.count("closing it, idle for 600s"), 1)

    def test_an_idle_route_is_closed_and_reopened_on_demand(self):
        self.limit(idle_timeout=600.0)
        self.service.send(message("a.test", "bob@b.test", "one"))
        out = fx.answer_outgoing(self.network)
        out.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        self.clock.advance(601)
        self.assertIn(b"</stream:stream>", out.transport.value())
        out.lose()
        self.service.send(message("a.test", "bob@b.test", "two"))
        self.assertEqual(len(self.network.attempts), 2)
        again = fx.answer_outgoing(self.network)
        again.take()
        again.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        self.assertEqual([str(m.body) for m in again.take()[1] if m.name == "message"],
                         ["two"])

    def test_the_defaults_hold_the_figures_of_the_documentation(self):
        parsed = wconfig.Options()
        parsed.parseOptions(["--domain", "a.test"])
        options = limits.options_from_config(parsed.config())
        caps = options.pop("limits")
        self.assertEqual(options, dict(
            max_stanza_size=512 * 1024, max_unauthenticated_stanza_size=10 * 1024,
            max_depth=100, negotiation_timeout=30.0, stranger_share=0.005))
        self.assertEqual((caps.max_streams, caps.max_unauthenticated_per_ip,
                          caps.max_pending_bytes, caps.idle_timeout),
                         (1000, 10, 4 * 1024 * 1024, 600.0))


class TurnBudgetTests(Base):
    """Finding 3, the stall: strangers' input past its share of a turn waits for the next."""

    def setUp(self):
        Base.setUp(self)
        self.now = [0.0]
        self.service.stranger_budget = limits.TurnBudget(self.clock, 0.005, lambda: self.now[0])

    def slow_stranger(self, cost):
        """A stranger whose every chunk costs ``cost`` seconds to parse."""
        peer = fx.incoming(self.service)
        original = peer.protocol._parse

        def parse(data):
            self.now[0] += cost
            original(data)
        peer.protocol._parse = parse
        return peer

    def test_past_the_share_a_stranger_waits_a_turn_with_its_socket_paused(self):
        first, second = self.slow_stranger(0.005), self.slow_stranger(0.005)
        first.feed(fx.HEADER % "from='b.test' to='a.test'")
        second.feed(fx.HEADER % "from='b.test' to='a.test'")
        self.assertIsNotNone(first.take()[0])
        self.assertEqual(second.take(), (None, []))         # held: the turn was spent
        self.assertEqual(second.transport.producerState, "paused")
        self.clock.advance(0)                                # the next turn
        self.assertIsNotNone(second.take()[0])
        self.assertEqual(second.transport.producerState, "producing")

    def test_held_chunks_keep_their_order_over_several_turns(self):
        peer = self.slow_stranger(0.006)
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        peer.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        self.assertEqual(len(peer.take()[1]), 1)             # the features
        for _ in range(3):
            self.clock.advance(0)
        header, elements = peer.take()
        self.assertEqual([e.name for e in elements], ["proceed", "features"])
        self.assertEqual(peer.transport.producerState, "producing")

    def test_strangers_timing_out_together_take_their_turns(self):
        self.service.negotiation_timeout = 30
        # In the turn their timeouts fire, something else spends the budget first.
        self.clock.callLater(30, self.service.stranger_budget.charge, 0.01)
        peers = [fx.incoming(self.service) for _ in range(3)]
        seen = []

        def in_that_turn():     # after the timeouts, before the next turn
            seen.append((len(self.service.stranger_budget.waiting),
                         [fx.stream_error(p.take()[1]) for p in peers]))
        self.clock.callLater(30, in_that_turn)
        self.clock.advance(30)
        self.assertEqual(seen, [(3, [None, None, None])])
        errors = [fx.stream_error(p.take()[1]) for p in peers]
        self.assertEqual(errors, ["connection-timeout"] * 3)

    def test_the_listening_port_accepts_a_few_connections_a_turn(self):
        from twisted.internet import reactor
        port = ports.listen_tcp(reactor, 0, streams.IncomingFactory(self.service),
                                interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        port.numberAccepts += 20                            # what Twisted does when busy
        self.assertEqual(port.numberAccepts, ports.ACCEPTS_PER_TURN)

    def test_an_authenticated_stream_never_waits(self):
        peer = self.authenticated_peer()
        self.slow_stranger(0.01).feed(fx.HEADER % "from='b.test' to='a.test'")
        self.assertFalse(self.service.stranger_budget.available)
        peer.feed("<message from='bob@b.test' to='alice@a.test'/>")
        self.assertEqual(len(self.delivered), 1)


class RouteFlushTests(Base):
    """Finding 4: a stanza that cannot be sent is returned with an error; the rest go."""

    def test_a_stanza_that_cannot_be_serialised_is_bounced_and_the_queue_goes_on(self):
        bounced = []
        self.service.local.xmlstream.addObserver("/message[@type='error']", bounced.append)
        bad = message("alice@a.test", "bob@b.test", "bad")
        inner = bad
        for _ in range(5000):           # deeper than the serialiser can recurse
            inner = inner.addElement(("urn:example", "x"))
        self.service.send(message("alice@a.test", "bob@b.test", "before"))
        self.service.send(bad)
        self.service.send(message("alice@a.test", "bob@b.test", "after"))
        out = fx.answer_outgoing(self.network)
        out.take()
        out.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        sent = [str(m.body) for m in out.take()[1] if m.name == "message"]
        self.assertEqual(sent, ["before", "after"])
        self.assertEqual([(condition_of(b), b["to"]) for b in bounced],
                         [("internal-server-error", "alice@a.test")])
        self.assertEqual(self.service.routes.table[("a.test", "b.test")].queue, [])
        self.assertEqual(len(self.flushLoggedErrors(RecursionError)), 1)


class ElementStreamTests(unittest.SynchronousTestCase):
    """The parser on its own: the same trees as domish builds."""

    def parse(self, data, **kw):
        stream = elementstream.ElementStream(**kw)
        found = []
        stream.DocumentStartEvent = found.append
        stream.ElementEvent = found.append
        stream.DocumentEndEvent = lambda: found.append(None)
        stream.parse(data)
        return found

    def test_namespaces_prefixes_attributes_and_text_as_domish(self):
        data = (b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/"
                b"streams' xmlns:db='jabber:server:dialback'> <db:result from='b' x:y='1' "
                b"xmlns:x='urn:x'>k&amp;<i xmlns='urn:i'>in</i>tail</db:result></stream:stream>")
        ours = self.parse(data)
        theirs = []
        stream = domish.elementStream()
        stream.DocumentStartEvent = theirs.append
        stream.ElementEvent = theirs.append
        stream.DocumentEndEvent = lambda: theirs.append(None)
        stream.parse(data)
        self.assertEqual([e.toXml() if e is not None else None for e in ours],
                         [e.toXml() if e is not None else None for e in theirs])
        result = ours[1]
        self.assertEqual((result.uri, result.name, result.defaultUri),
                         ("jabber:server:dialback", "result", "jabber:server"))
        self.assertEqual(result.attributes[("urn:x", "y")], "1")
        self.assertEqual(result.children[0], "k&")
        self.assertIs(result.children[1].parent, result)

    def test_depth_limit_counts_from_the_stanza(self):
        header = b"<s:stream xmlns:s='http://etherx.jabber.org/streams'>"
        self.assertEqual(len(self.parse(header + b"<a>" * 3 + b"</a>" * 3, max_depth=3)), 2)
        self.assertRaises(elementstream.TooDeep, self.parse,
                          header + b"<a>" * 4, max_depth=3)
