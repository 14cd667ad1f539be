"""
S2S streams (RFC 6120) and the routing service, over in-memory transports
with a task.Clock.
"""

from twisted.internet import defer
from twisted.trial import unittest
from twisted.words.protocols.jabber import error
from twisted.words.xish import domish

from tests import xmpp_fakes as fx
from tests.helpers import LogWatch
from wavebox.xmpp import dialback, streams


def message(sender, to, body="hi"):
    m = domish.Element((None, "message"))
    m["from"], m["to"] = sender, to
    m.addElement("body", content=body)
    return m


def iq(sender, to, kind="get", payload=("urn:xmpp:ping", "ping")):
    element = domish.Element((None, "iq"))
    element["type"], element["from"], element["to"] = kind, sender, to
    element.addElement(payload)
    return element


def condition_of(stanza):
    return stanza.error.firstChildElement().name


class ReceivingStreamTests(unittest.SynchronousTestCase):
    """What a peer sees when it opens a stream to us."""

    def setUp(self):
        self.service, self.network, self.resolver, self.clock = fx.make_service()
        self.addCleanup(self.service.stopService)
        self.log = LogWatch(self)
        self.delivered = []
        self.service.local.xmlstream.addObserver("/message", self.delivered.append)

    def test_header_is_answered_with_an_id_and_starttls_required(self):
        peer = fx.incoming(self.service)
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        header, elements = peer.take()
        self.assertEqual((header["from"], header["to"], header["version"]),
                         ("a.test", "b.test", "1.0"))
        self.assertTrue(header["id"])
        self.assertEqual(header.localPrefixes.get("db"), dialback.NS_DIALBACK)
        features = elements[0]
        self.assertEqual([(c.uri, c.name) for c in features.elements()],
                         [(streams.NS_TLS, "starttls")])
        self.assertEqual([c.name for c in features.starttls.elements()], ["required"])

    def test_starttls_restarts_the_stream_with_a_new_id_and_offers_dialback(self):
        peer = fx.incoming(self.service)
        peer.feed(fx.HEADER % "from='b.test' to='wave.a.test'")
        first, _ = peer.take()
        peer.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        _, proceed = peer.take()
        self.assertEqual([e.name for e in proceed], ["proceed"])
        self.assertEqual(peer.transport.tls_creator[0], "receiving")
        peer.feed(fx.HEADER % "from='b.test' to='wave.a.test'")
        second, elements = peer.take()
        self.assertNotEqual(first["id"], second["id"])
        self.assertEqual(second["from"], "wave.a.test")
        offered = [(c.uri, c.name) for c in elements[0].elements()]
        self.assertEqual(offered, [(dialback.NS_DIALBACK_FEATURE, "dialback")])
        self.assertEqual([c.name for c in elements[0].dialback.elements()], ["errors"])

    def test_without_tls_required_both_features_are_offered(self):
        self.service.tls_required = False
        peer = fx.incoming(self.service)
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        _, elements = peer.take()
        self.assertEqual(sorted(c.name for c in elements[0].elements()),
                         ["dialback", "starttls"])
        self.assertEqual(list(elements[0].starttls.elements()), [])

    def test_header_for_a_domain_we_do_not_serve_is_host_unknown(self):
        peer = fx.incoming(self.service)
        peer.feed(fx.HEADER % "from='b.test' to='c.test'")
        _, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "host-unknown")
        self.assertTrue(peer.transport.disconnecting)

    def test_unknown_stream_namespace_is_invalid_namespace(self):
        peer = fx.incoming(self.service)
        peer.feed("<stream:stream xmlns='jabber:server' xmlns:stream='urn:bogus' to='a.test'>")
        header, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "invalid-namespace")
        self.assertEqual(header["from"], "a.test")

    def test_client_content_namespace_is_invalid_namespace(self):
        peer = fx.incoming(self.service)
        peer.feed(fx.HEADER.replace("jabber:server", "jabber:client") % "to='a.test'")
        _, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "invalid-namespace")

    def test_malformed_xml_is_not_well_formed_and_logged_once(self):
        peer = fx.open_incoming(self.service)
        peer.feed("<message><body></message>")
        peer.feed("<more/>")
        _, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "not-well-formed")
        self.assertTrue(peer.transport.disconnecting)
        self.assertEqual(self.log.count("stream error <not-well-formed/>"), 1)

    def test_oversized_stanza_is_a_policy_violation(self):
        self.service.max_stanza_size = 10000
        peer = fx.open_incoming(self.service)
        peer.feed("<message from='bob@b.test' to='alice@a.test'><body>")
        for _ in range(20):
            peer.feed("x" * 1000)
        _, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "policy-violation")
        self.assertEqual(self.log.count("stream error <policy-violation/>"), 1)

    def test_many_small_stanzas_are_not_counted_together(self):
        self.service.max_stanza_size = 10000
        self.service.tls.proves.add("b.test")
        peer = fx.open_incoming(self.service)
        peer.feed("<db:result from='b.test' to='a.test'>k</db:result>")
        for i in range(50):
            peer.feed("<message from='bob@b.test' to='alice@a.test'><body>%s</body></message>"
                      % ("x" * 500,))
        self.assertEqual(len(self.delivered), 50)

    def test_stanza_before_dialback_is_not_authorized(self):
        peer = fx.open_incoming(self.service)
        peer.feed("<message from='bob@b.test' to='alice@a.test'/>")
        _, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "not-authorized")
        self.assertEqual(self.delivered, [])

    def authenticated_peer(self):
        self.service.tls.proves.add("b.test")
        peer = fx.open_incoming(self.service)
        peer.feed("<db:result from='b.test' to='a.test'>k</db:result>")
        peer.take()
        return peer

    def test_spoofed_from_is_invalid_from_and_not_delivered(self):
        peer = self.authenticated_peer()
        peer.feed("<message from='mallory@evil.test' to='alice@a.test'><body>x</body></message>")
        _, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "invalid-from")
        self.assertEqual(self.delivered, [])

    def test_authenticated_sender_may_address_any_of_our_domains(self):
        # Only (b.test, a.test) was authenticated; Prosody sends the answer
        # for wave.a.test over such a stream (RFC 6120 8.1.1.2 / 8.1.2.2).
        peer = self.authenticated_peer()
        peer.feed("<message from='bob@b.test' to='wave.a.test'><body>x</body></message>")
        _, elements = peer.take()
        self.assertIsNone(fx.stream_error(elements))
        self.assertEqual([(m["from"], m["to"]) for m in self.delivered],
                         [("bob@b.test", "wave.a.test")])

    def test_sender_authenticated_only_on_another_stream_is_invalid_from(self):
        peer = self.authenticated_peer()
        self.service.tls.proves.add("wave.b.test")
        other = fx.open_incoming(self.service, sender="wave.b.test")
        other.feed("<db:result from='wave.b.test' to='a.test'>k</db:result>")
        peer.feed("<message from='wave.b.test' to='alice@a.test'/>")
        _, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "invalid-from")
        self.assertEqual(self.delivered, [])

    def test_sender_whose_dialback_is_still_pending_is_invalid_from(self):
        self.resolver.table["wave.b.test"] = [("127.0.0.3", 5269)]
        peer = self.authenticated_peer()
        peer.feed("<db:result from='wave.b.test' to='a.test'>k</db:result>")
        self.assertEqual(peer.session.verifying, {("wave.b.test", "a.test")})
        peer.feed("<message from='wave.b.test' to='alice@a.test'/>")
        _, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "invalid-from")
        self.assertEqual(self.delivered, [])

    def test_stanza_without_to_is_improper_addressing(self):
        peer = self.authenticated_peer()
        peer.feed("<message from='bob@b.test'/>")
        _, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "improper-addressing")

    def test_stanza_to_a_domain_we_do_not_serve_is_host_unknown(self):
        peer = self.authenticated_peer()
        peer.feed("<message from='bob@b.test' to='carol@c.test'/>")
        _, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "host-unknown")

    def test_authenticated_stanza_is_delivered_in_the_server_namespace(self):
        peer = self.authenticated_peer()
        peer.feed("<message from='bob@b.test' to='alice@a.test'><body>x</body></message>")
        self.assertEqual(len(self.delivered), 1)
        self.assertEqual(self.delivered[0].uri, streams.NS_SERVER)

    def test_unknown_top_level_element_is_unsupported_stanza_type(self):
        peer = self.authenticated_peer()
        peer.feed("<foo xmlns='urn:example'/>")
        _, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "unsupported-stanza-type")

    def test_stream_that_never_authenticates_times_out(self):
        peer = fx.open_incoming(self.service)
        self.clock.advance(self.service.negotiation_timeout + 1)
        _, elements = peer.take()
        self.assertEqual(fx.stream_error(elements), "connection-timeout")

    def test_authenticated_stream_does_not_time_out(self):
        peer = self.authenticated_peer()
        self.clock.advance(self.service.negotiation_timeout + 1)
        _, elements = peer.take()
        self.assertIsNone(fx.stream_error(elements))

    def test_peer_closing_its_stream_is_answered_and_forgotten(self):
        peer = self.authenticated_peer()
        peer.feed("</stream:stream>")
        self.assertTrue(peer.transport.value().endswith(b"</stream:stream>"))
        peer.lose()
        self.assertEqual(self.service.incoming, set())

    def test_one_bad_stream_leaves_the_others_working(self):
        good = self.authenticated_peer()
        bad = fx.incoming(self.service)
        bad.feed("<<<")
        good.feed("<message from='bob@b.test' to='alice@a.test'/>")
        self.assertEqual(len(self.delivered), 1)


class LocalDeliveryTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.service, self.network, _, self.clock = fx.make_service(
            table={"b.test": [("127.0.0.3", 5269)]})
        self.addCleanup(self.service.stopService)
        self.service.tls.proves.add("b.test")
        self.peer = fx.open_incoming(self.service)
        self.peer.feed("<db:result from='b.test' to='a.test'>k</db:result>")

    def test_unknown_iq_get_is_service_unavailable(self):
        self.peer.feed("<iq type='get' id='q1' from='b.test' to='a.test'>"
                       "<query xmlns='urn:example'/></iq>")
        # The answer goes out on our own (new) stream to b.test.
        out = fx.answer_outgoing(self.network)
        out.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        _, sent = out.take()
        answer = [e for e in sent if e.name == "iq"][0]
        self.assertEqual((answer["type"], answer["id"], answer["to"], answer["from"]),
                         ("error", "q1", "b.test", "a.test"))
        self.assertEqual(condition_of(answer), "service-unavailable")

    def test_stanza_to_our_own_jid_is_delivered_without_a_stream(self):
        seen = []
        self.service.local.xmlstream.addObserver("/message", seen.append)
        self.service.send(message("wave.a.test", "a.test"))
        self.assertEqual(len(seen), 1)
        self.assertEqual(len(self.network.attempts), 0)

    def test_stanza_from_a_foreign_jid_is_refused(self):
        self.assertRaises(ValueError, self.service.send, message("x@b.test", "y@c.test"))


class RoutingTests(unittest.SynchronousTestCase):
    """Outgoing stanzas: queues, endpoints in order, reuse, bounces, back-off."""

    def setUp(self):
        self.service, self.network, self.resolver, self.clock = fx.make_service(
            table={"b.test": [("127.0.0.3", 5269), ("127.0.0.4", 5270)],
                   "wave.b.test": [("127.0.0.3", 5269)]})
        self.addCleanup(self.service.stopService)
        self.bounced = []
        self.service.local.xmlstream.addObserver("/message[@type='error']", self.bounced.append)

    def test_endpoints_are_tried_in_order(self):
        self.service.send(message("a.test", "bob@b.test"))
        self.assertEqual([(c.host, c.port) for c in self.network.attempts],
                         [("127.0.0.3", 5269)])
        self.network.refuse(self.network.attempts[0])
        self.assertEqual([(c.host, c.port) for c in self.network.attempts],
                         [("127.0.0.3", 5269), ("127.0.0.4", 5270)])
        peer = fx.answer_outgoing(self.network)
        peer.take()
        peer.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        _, sent = peer.take()
        self.assertEqual([e.name for e in sent], ["message"])
        self.assertEqual(self.bounced, [])

    def test_every_endpoint_failing_bounces_each_stanza_in_order(self):
        self.service.send(message("alice@a.test", "bob@b.test", "one"))
        self.service.send(message("alice@a.test", "bob@b.test", "two"))
        self.network.refuse(self.network.attempts[0])
        self.network.refuse(self.network.attempts[1])
        self.assertEqual([str(b.body) for b in self.bounced], ["one", "two"])
        self.assertEqual([(b["from"], b["to"]) for b in self.bounced],
                         [("bob@b.test", "alice@a.test")] * 2)
        self.assertEqual({condition_of(b) for b in self.bounced}, {"remote-server-timeout"})

    def test_unresolvable_domain_is_remote_server_not_found(self):
        self.service.send(message("a.test", "bob@nowhere.test"))
        self.assertEqual([condition_of(b) for b in self.bounced], ["remote-server-not-found"])
        self.assertEqual(self.network.attempts, [])

    def test_silent_peer_times_out(self):
        self.service.send(message("a.test", "bob@b.test"))
        self.network.accept(self.network.attempts[0])
        self.clock.advance(self.service.connect_timeout + 1)
        fx.answer_outgoing(self.network)        # second endpoint: no dialback answer
        self.clock.advance(self.service.dialback_timeout + 1)
        self.assertEqual([condition_of(b) for b in self.bounced], ["remote-server-timeout"])

    def test_next_attempt_waits_for_the_back_off(self):
        self.service.send(message("a.test", "bob@b.test"))
        for attempt in list(self.network.attempts):
            self.network.refuse(attempt)
        self.network.refuse(self.network.attempts[-1])
        tried = len(self.network.attempts)
        self.service.send(message("a.test", "bob@b.test", "later"))
        self.assertEqual(len(self.network.attempts), tried)
        self.clock.advance(self.service.retry.initial + 0.1)
        self.assertEqual(len(self.network.attempts), tried + 1)
        peer = fx.answer_outgoing(self.network)
        peer.take()
        peer.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        _, sent = peer.take()
        self.assertEqual([str(e.body) for e in sent if e.name == "message"], ["later"])

    def test_peer_authenticating_a_stream_to_us_ends_the_back_off(self):
        self.service.send(message("wave.a.test", "wave.b.test", "first"))
        self.network.refuse(self.network.attempts[0])
        tried = len(self.network.attempts)
        route = self.service.routes.table[("wave.a.test", "wave.b.test")]
        self.assertGreater(route.retry_at, self.clock.seconds())
        self.service.send(message("wave.a.test", "wave.b.test", "waiting"))
        self.assertEqual(len(self.network.attempts), tried)
        # b.test is back: it opens a stream to us and proves its wave service.
        self.service.tls.proves.add("wave.b.test")
        incoming = fx.open_incoming(self.service, sender="wave.b.test", to="wave.a.test")
        incoming.feed("<db:result from='wave.b.test' to='wave.a.test'>k</db:result>")
        self.assertEqual(len(self.network.attempts), tried + 1)   # no waiting for the clock
        peer = fx.answer_outgoing(self.network, sender="wave.b.test")
        peer.take()
        peer.feed("<db:result from='wave.b.test' to='wave.a.test' type='valid'/>")
        _, sent = peer.take()
        self.assertEqual([str(e.body) for e in sent if e.name == "message"], ["waiting"])

    def test_peer_of_another_domain_does_not_end_the_back_off(self):
        self.service.send(message("a.test", "bob@b.test"))
        for attempt in list(self.network.attempts):
            self.network.refuse(attempt)
        tried = len(self.network.attempts)
        self.service.send(message("a.test", "bob@b.test", "waiting"))
        self.service.tls.proves.add("c.test")
        incoming = fx.open_incoming(self.service, sender="c.test", to="a.test")
        incoming.feed("<db:result from='c.test' to='a.test'>k</db:result>")
        self.assertEqual(len(self.network.attempts), tried)

    def test_back_off_grows_with_each_failure(self):
        delays = []
        for _ in range(3):
            self.service.send(message("a.test", "bob@b.test"))
            before = self.clock.seconds()
            self.clock.advance(0)
            while self.service.routes.table[("a.test", "b.test")].retry_call is not None:
                self.clock.advance(0.5)
            delays.append(self.clock.seconds() - before)
            for attempt in self.network.attempts:
                if not attempt.stopped and attempt.factory.session.negotiated.done is False:
                    self.network.refuse(attempt)
        self.assertEqual(delays, [0, 2.0, 4.0])

    def established(self, sender="b.test", dialback_errors=True):
        """(a.test, b.test) authenticated on our first stream; the peer's end of it."""
        self.service.send(message("a.test", "bob@b.test"))
        peer = fx.answer_outgoing(self.network, sender=sender, dialback_errors=dialback_errors)
        peer.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        peer.take()
        return peer

    def test_second_domain_pair_is_multiplexed_on_the_stream_to_the_same_address(self):
        peer = self.established()
        self.service.tls.proves.add("wave.b.test")
        self.service.send(message("wave.a.test", "wave.b.test", "second"))
        self.assertEqual(len(self.network.attempts), 1)
        _, sent = peer.take()
        self.assertEqual([(e.name, e["from"], e["to"]) for e in sent],
                         [("result", "wave.a.test", "wave.b.test")])
        self.assertEqual(str(sent[0]), dialback.dialback_key(
            "s3cret", "wave.b.test", "wave.a.test", peer.sid))
        # The first pair keeps flowing while the second waits for its verdict.
        self.service.send(message("a.test", "bob@b.test", "first"))
        _, sent = peer.take()
        self.assertEqual([str(e.body) for e in sent], ["first"])
        peer.feed("<db:result from='wave.b.test' to='wave.a.test' type='valid'/>")
        _, sent = peer.take()
        self.assertEqual([(e.name, str(e.body)) for e in sent], [("message", "second")])
        self.assertEqual(peer.session.authenticated,
                         {("a.test", "b.test"), ("wave.a.test", "wave.b.test")})
        self.assertEqual(len(self.network.attempts), 1)
        self.assertEqual(self.bounced, [])

    def test_new_sender_domain_is_multiplexed_without_the_dialback_errors_offer(self):
        # XEP-0220 2.6.1: sender multiplexing needs no negotiation.  This is
        # what we do with Prosody, which offers a bare <dialback/>.
        peer = self.established(dialback_errors=False)
        self.service.send(message("wave.a.test", "bob@b.test"))
        self.assertEqual(len(self.network.attempts), 1)
        _, sent = peer.take()
        self.assertEqual([(e.name, e["from"], e["to"]) for e in sent],
                         [("result", "wave.a.test", "b.test")])

    def test_new_target_domain_needs_the_dialback_errors_offer(self):
        # XEP-0220 2.6.2: target multiplexing only when the peer offered
        # <dialback><errors/></dialback>; otherwise a stream of its own.
        peer = self.established(dialback_errors=False)
        self.service.tls.proves.add("wave.b.test")
        self.service.send(message("a.test", "wave.b.test"))
        self.assertEqual(peer.take()[1], [])
        self.assertEqual([(c.host, c.port) for c in self.network.attempts],
                         [("127.0.0.3", 5269)] * 2)
        second = fx.answer_outgoing(self.network, sender="wave.b.test")
        _, sent = second.take()
        self.assertEqual([(e.name, e["from"], e["to"]) for e in sent if e.name == "result"],
                         [("result", "a.test", "wave.b.test")])

    def test_refused_multiplexed_db_result_falls_back_to_a_stream_of_its_own(self):
        peer = self.established()
        self.service.tls.proves.add("wave.b.test")
        self.service.send(message("wave.a.test", "wave.b.test", "second"))
        self.assertEqual([e.name for e in peer.take()[1]], ["result"])
        peer.feed("<db:result from='wave.b.test' to='wave.a.test' type='error'>"
                  "<error type='cancel'><item-not-found "
                  "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></db:result>")
        self.assertEqual([(c.host, c.port) for c in self.network.attempts],
                         [("127.0.0.3", 5269)] * 2)
        own = fx.answer_outgoing(self.network, sender="wave.b.test")
        _, sent = own.take()
        self.assertEqual([(e.name, e["from"], e["to"]) for e in sent if e.name == "result"],
                         [("result", "wave.a.test", "wave.b.test")])
        own.feed("<db:result from='wave.b.test' to='wave.a.test' type='valid'/>")
        _, sent = own.take()
        self.assertEqual([(e.name, str(e.body)) for e in sent], [("message", "second")])
        self.assertEqual(self.bounced, [])
        # The old stream still carries its pair; nothing new is multiplexed
        # at that address while it is remembered, then it is tried again.
        self.service.send(message("a.test", "bob@b.test", "first"))
        self.assertEqual([str(e.body) for e in peer.take()[1]], ["first"])
        self.service.send(message("a.test", "wave.b.test"))
        self.assertEqual(len(self.network.attempts), 3)
        self.assertEqual(peer.take()[1] + own.take()[1], [])
        self.clock.advance(self.service.no_multiplex_lifetime)
        self.service.send(message("wave.a.test", "bob@b.test"))
        self.assertEqual(len(self.network.attempts), 3)
        sent = peer.take()[1] + own.take()[1]
        self.assertEqual([(e.name, e["from"], e["to"]) for e in sent],
                         [("result", "wave.a.test", "b.test")])

    def test_peer_closing_on_a_multiplexed_db_result_falls_back_to_a_stream_of_its_own(self):
        peer = self.established()
        self.service.tls.proves.add("wave.b.test")
        self.service.send(message("wave.a.test", "wave.b.test", "second"))
        peer.feed("</stream:stream>")
        peer.lose()
        self.assertEqual(len(self.network.attempts), 2)
        self.assertFalse(self.service.outbound.multiplexes(("127.0.0.3", 5269)))
        own = fx.answer_outgoing(self.network, sender="wave.b.test")
        own.feed("<db:result from='wave.b.test' to='wave.a.test' type='valid'/>")
        _, sent = own.take()
        self.assertEqual([(e.name, str(e.body)) for e in sent if e.name == "message"],
                         [("message", "second")])
        # The first pair lost its stream with it: it gets a stream of its own.
        self.service.send(message("a.test", "bob@b.test", "again"))
        self.assertEqual(len(self.network.attempts), 3)
        self.assertEqual(self.bounced, [])

    def test_stream_whose_certificate_does_not_name_the_domain_is_not_reused(self):
        self.service.send(message("a.test", "bob@b.test"))
        peer = fx.answer_outgoing(self.network)
        peer.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        self.service.send(message("wave.a.test", "wave.b.test"))
        self.assertEqual(len(self.network.attempts), 2)

    def test_lost_stream_is_replaced_for_the_next_stanza(self):
        self.service.send(message("a.test", "bob@b.test"))
        peer = fx.answer_outgoing(self.network)
        peer.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        peer.lose()
        self.service.send(message("a.test", "bob@b.test"))
        self.assertEqual(len(self.network.attempts), 2)

    def test_peer_without_starttls_is_refused_when_tls_is_required(self):
        self.service.send(message("a.test", "bob@b.test"))
        for _ in range(2):
            peer = self.network.accept(self.network.attempts[-1])
            peer.feed(fx.HEADER % "from='b.test' id='x'")
            peer.feed("<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                      "</stream:features>")
            _, sent = peer.take()
            self.assertNotIn("result", [e.name for e in sent])
            peer.lose()
        self.assertEqual([condition_of(b) for b in self.bounced], ["remote-server-timeout"])

    def test_stop_drops_waiting_stanzas_without_bouncing(self):
        self.service.send(message("a.test", "bob@b.test"))
        self.service.stopService()
        self.assertEqual(self.bounced, [])
        self.assertTrue(self.network.attempts[0].stopped)


class RequestTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.service, self.network, _, self.clock = fx.make_service(
            table={"b.test": [("127.0.0.3", 5269)]})
        self.addCleanup(self.service.stopService)
        self.service.tls.proves.add("b.test")

    def connected(self):
        out = fx.answer_outgoing(self.network)
        out.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        out.take()
        peer = fx.open_incoming(self.service)
        peer.feed("<db:result from='b.test' to='a.test'>k</db:result>")
        return peer

    def test_result_with_same_id_and_swapped_addresses_fires(self):
        results = []
        self.service.request(iq("a.test", "b.test")).addCallback(results.append)
        peer = self.connected()
        sent_id = self.service._requests and list(self.service._requests)[0]
        peer.feed("<iq type='result' id='%s' from='b.test' to='a.test'/>" % (sent_id,))
        self.assertEqual([r["id"] for r in results], [sent_id])

    def test_answer_from_another_jid_does_not_match(self):
        d = self.service.request(iq("a.test", "b.test"))
        peer = self.connected()
        sent_id = list(self.service._requests)[0]
        peer.feed("<iq type='result' id='%s' from='bob@b.test' to='a.test'/>" % (sent_id,))
        self.assertNoResult(d)
        d.addErrback(lambda f: f.trap(defer.CancelledError))

    def test_error_answer_is_a_stanza_error(self):
        d = self.service.request(iq("a.test", "b.test"))
        peer = self.connected()
        sent_id = list(self.service._requests)[0]
        peer.feed("<iq type='error' id='%s' from='b.test' to='a.test'><error type='cancel'>"
                  "<feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                  "</error></iq>" % (sent_id,))
        f = self.failureResultOf(d, error.StanzaError)
        self.assertEqual(f.value.condition, "feature-not-implemented")

    def test_no_answer_in_time_is_remote_server_timeout(self):
        d = self.service.request(iq("a.test", "b.test"), timeout=5)
        self.connected()
        self.clock.advance(5)
        f = self.failureResultOf(d, error.StanzaError)
        self.assertEqual(f.value.condition, "remote-server-timeout")
        self.assertEqual(list(self.service._requests), [])

    def test_unreachable_peer_fails_the_request_with_the_bounce(self):
        d = self.service.request(iq("a.test", "b.test"))
        self.network.refuse(self.network.attempts[0])
        f = self.failureResultOf(d, error.StanzaError)
        self.assertEqual(f.value.condition, "remote-server-timeout")

    def test_local_request_is_answered_by_local_handlers(self):
        from wavebox.xmpp.ping import PingResponder
        self.service.add_handler(PingResponder())
        d = self.service.request(iq("a.test", "wave.a.test"))
        self.assertEqual(self.successResultOf(d)["type"], "result")

    def test_stop_cancels_waiting_requests(self):
        d = self.service.request(iq("a.test", "b.test"))
        self.service.stopService()
        self.failureResultOf(d, defer.CancelledError)
        self.assertFalse(self.clock.getDelayedCalls())


class NamespaceTests(unittest.SynchronousTestCase):

    def test_client_namespace_stanzas_are_moved_to_the_server_namespace(self):
        m = domish.Element(("jabber:client", "message"))
        m.addElement("body", content="x")
        streams.to_server_namespace(m)
        self.assertEqual((m.uri, m.body.uri), (streams.NS_SERVER, streams.NS_SERVER))
        self.assertEqual(m.toXml(defaultUri=streams.NS_SERVER), "<message><body>x</body></message>")


class IdleStreamTests(unittest.SynchronousTestCase):

    def test_idle_verify_stream_is_closed_without_an_error(self):
        service, _, _, clock = fx.make_service()
        self.addCleanup(service.stopService)
        peer = fx.open_incoming(service)
        key = dialback.dialback_key("s3cret", "b.test", "a.test", "s1")
        peer.feed("<db:verify from='b.test' to='a.test' id='s1'>%s</db:verify>" % (key,))
        peer.take()
        clock.advance(service.negotiation_timeout + 1)
        self.assertEqual(peer.transport.value(), b"</stream:stream>")
        self.assertTrue(peer.transport.disconnecting)

    def test_stanza_child_named_handled_does_not_hide_an_unanswered_iq(self):
        service, _, _, _ = fx.make_service()
        self.addCleanup(service.stopService)
        request = iq("a.test", "wave.a.test", payload=("urn:example", "handled"))
        f = self.failureResultOf(service.request(request), error.StanzaError)
        self.assertEqual(f.value.condition, "service-unavailable")


class DescribeTests(unittest.SynchronousTestCase):
    """The reasons in 'no stream from X to Y: cannot connect to ...' log lines."""

    def test_refused_connection_is_said_once(self):
        from twisted.internet import error as ierror
        from wavebox.xmpp.streams import describe_reason
        self.assertEqual(describe_reason(ierror.ConnectionRefusedError()), "connection refused")

    def test_other_connect_errors_give_the_os_words(self):
        import errno
        from twisted.internet import error as ierror
        from wavebox.xmpp.streams import describe_reason
        e = ierror.ConnectError(osError=OSError(errno.EHOSTUNREACH, "No route to host"))
        self.assertEqual(describe_reason(e), "no route to host")
        self.assertEqual(describe_reason(ierror.TCPTimedOutError()), "connection timed out")


class OutageLogTests(unittest.SynchronousTestCase):
    """A peer that stays down is one warning, not one per retry; its return is one line."""

    def setUp(self):
        self.service, self.network, _, self.clock = fx.make_service(
            table={"b.test": [("127.0.0.3", 5269)]})
        self.addCleanup(self.service.stopService)
        self.log = LogWatch(self)

    def fail_once(self):
        self.service.send(message("a.test", "bob@b.test"))
        for attempt in list(self.network.attempts):
            if not attempt.stopped:
                self.network.refuse(attempt)
        route = self.service.routes.table[("a.test", "b.test")]
        self.clock.advance(max(0, route.retry_at - self.clock.seconds()) + 0.1)

    def warnings(self):
        from twisted.logger import LogLevel
        return [e for e in self.log.events
                if e.get("log_level") == LogLevel.warn and "no stream from" in e["log_format"]]

    def test_repeated_failures_warn_once_and_recovery_is_logged(self):
        for _ in range(3):
            self.fail_once()
        self.assertEqual(len(self.warnings()), 1)
        self.assertEqual(self.log.count("no stream from a.test to b.test"), 3)
        self.service.send(message("a.test", "bob@b.test"))
        peer = fx.answer_outgoing(self.network)
        peer.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        self.assertEqual(self.log.count(
            "S2S: stream from a.test to b.test is up, after 3 failed attempt(s)"), 1)
        self.assertEqual(self.service.routes.table[("a.test", "b.test")].failures, 0)
