"""
SASL EXTERNAL on S2S streams (XEP-0178, RFC 6120 section 6) and the
``s2s_auth`` policy, both roles, against in-memory streams
(tests/xmpp_fakes.py).  The real peers (ejabberd, Prosody, another
wavebox) are in test_ejabberd_s2s.py, test_prosody_s2s.py and
test_s2s_auth_e2e.py.
"""

import base64

from twisted.internet import defer
from twisted.trial import unittest
from twisted.words.protocols.jabber import error
from twisted.words.xish import domish

from tests import xmpp_fakes as fx
from tests.helpers import LogWatch
from wavebox.xmpp import sasl

NS_SASL = sasl.NS_SASL
EXTERNAL_OFFER = ("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                  "<mechanism>EXTERNAL</mechanism></mechanisms>")
DIALBACK_OFFER = "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>"


def b64(text):
    return base64.b64encode(text.encode()).decode()


def auth(response=None, mechanism="EXTERNAL"):
    return "<auth xmlns='%s' mechanism='%s'>%s</auth>" % (NS_SASL, mechanism, response or "")


def named(elements, uri, name):
    return [e for e in elements if e.uri == uri and e.name == name]


def sasl_answer(elements):
    """(name, condition) of the SASL answer among ``elements``."""
    [answer] = [e for e in elements if e.uri == NS_SASL]
    conditions = [c.name for c in answer.elements()]
    return answer.name, (conditions[0] if conditions else None)


def mechanisms(features):
    return [str(m) for offer in features.elements(NS_SASL, "mechanisms")
            for m in offer.elements(NS_SASL, "mechanism")]


def offers_dialback(features):
    return bool(list(features.elements("urn:xmpp:features:dialback", "dialback")))


def ping(sender="a.test", to="b.test"):
    iq = domish.Element((None, "iq"))
    iq["type"], iq["from"], iq["to"] = "get", sender, to
    iq.addElement(("urn:xmpp:ping", "ping"))
    return iq


class ReceivingTests(unittest.SynchronousTestCase):
    """The peer (b.test) opened the stream to us (a.test)."""

    policy = "any"

    def setUp(self):
        self.log = LogWatch(self)
        self.service, self.network, _, self.clock = fx.make_service(
            table={"b.test": [("127.0.0.3", 5269)]}, s2s_auth=self.policy)
        self.addCleanup(self.service.stopService)
        self.delivered = []
        self.service.incoming_stanza = lambda session, stanza: self.delivered.append(stanza)

    def open(self, proves=("b.test",)):
        """A stream from b.test through STARTTLS; the features we sent after it."""
        self.service.tls.proves.update(proves)
        peer = fx.incoming(self.service)
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        peer.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        peer.take()
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        _, elements = peer.take()
        [features] = [e for e in elements if e.name == "features"]
        return peer, features

    def test_external_is_offered_when_the_certificate_names_the_streams_from(self):
        _, features = self.open()
        self.assertEqual(mechanisms(features), ["EXTERNAL"])
        self.assertTrue(offers_dialback(features))

    def test_no_external_for_a_certificate_that_does_not_name_the_from(self):
        _, features = self.open(proves=("c.test",))
        self.assertEqual(mechanisms(features), [])
        self.assertTrue(offers_dialback(features))

    def test_empty_authzid_succeeds_and_the_restarted_stream_carries_stanzas(self):
        peer, _ = self.open()
        peer.feed(auth("="))
        _, elements = peer.take()
        self.assertEqual(sasl_answer(elements), ("success", None))
        self.assertIn(("b.test", "a.test"), peer.session.authenticated)
        self.assertEqual(peer.session.auth_methods, {("b.test", "a.test"): "SASL EXTERNAL"})
        # RFC 6120 6.4.6: a new stream over the same TLS; no SASL offered again.
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        header, elements = peer.take()
        self.assertIsNotNone(header)
        [features] = [e for e in elements if e.name == "features"]
        self.assertEqual(mechanisms(features), [])
        peer.feed("<message from='bob@b.test' to='alice@a.test'/>")
        self.assertEqual(len(self.delivered), 1)
        self.assertEqual(self.log.count(
            "b.test -> a.test authenticated by SASL EXTERNAL over STARTTLS"), 1)

    def test_authzid_equal_to_the_from_domain_succeeds(self):
        peer, _ = self.open()
        peer.feed(auth(b64("b.test")))
        self.assertEqual(sasl_answer(peer.take()[1]), ("success", None))

    def test_another_authzid_is_invalid_authzid(self):
        peer, _ = self.open()
        peer.feed(auth(b64("c.test")))
        self.assertEqual(sasl_answer(peer.take()[1]), ("failure", "invalid-authzid"))
        self.assertFalse(peer.session.authenticated)
        peer.feed("<message from='bob@b.test' to='alice@a.test'/>")
        self.assertEqual(fx.stream_error(peer.take()[1]), "not-authorized")
        self.assertEqual(self.delivered, [])

    def test_response_that_is_not_base64_is_incorrect_encoding(self):
        peer, _ = self.open()
        peer.feed(auth("!!!"))
        self.assertEqual(sasl_answer(peer.take()[1]), ("failure", "incorrect-encoding"))

    def test_auth_without_a_proving_certificate_is_not_authorized(self):
        peer, _ = self.open(proves=())
        peer.feed(auth("="))
        self.assertEqual(sasl_answer(peer.take()[1]), ("failure", "not-authorized"))
        self.assertFalse(peer.session.authenticated)

    def test_other_mechanism_is_invalid_mechanism(self):
        peer, _ = self.open()
        peer.feed(auth("=", mechanism="PLAIN"))
        self.assertEqual(sasl_answer(peer.take()[1]), ("failure", "invalid-mechanism"))

    def test_auth_before_starttls_is_encryption_required(self):
        self.service.tls.proves.add("b.test")
        peer = fx.incoming(self.service)
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        peer.take()
        peer.feed(auth("="))
        self.assertEqual(sasl_answer(peer.take()[1]), ("failure", "encryption-required"))

    def test_a_second_auth_after_success_is_a_policy_violation(self):
        peer, _ = self.open()
        peer.feed(auth("="))
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        peer.take()
        peer.feed(auth("="))
        self.assertEqual(fx.stream_error(peer.take()[1]), "policy-violation")


class CertificatePolicyReceivingTests(ReceivingTests):
    policy = "certificate"

    def test_external_is_offered_when_the_certificate_names_the_streams_from(self):
        _, features = self.open()
        self.assertEqual(mechanisms(features), ["EXTERNAL"])
        self.assertFalse(offers_dialback(features))

    def test_no_external_for_a_certificate_that_does_not_name_the_from(self):
        _, features = self.open(proves=("c.test",))
        self.assertEqual(mechanisms(features), [])
        self.assertFalse(offers_dialback(features))

    def test_dialback_is_refused_with_policy_violation(self):
        peer, _ = self.open()
        peer.feed("<db:result from='b.test' to='a.test'>key</db:result>")
        self.assertEqual(fx.stream_error(peer.take()[1]), "policy-violation")
        self.assertFalse(peer.session.authenticated)
        self.assertEqual(self.log.count("dialback is not accepted here (s2s_auth certificate)"),
                         1)


class DialbackPolicyReceivingTests(unittest.SynchronousTestCase):

    def test_no_external_is_offered_even_for_a_good_certificate(self):
        service, _, _, _ = fx.make_service(s2s_auth="dialback")
        self.addCleanup(service.stopService)
        service.tls.proves.add("b.test")
        peer = fx.incoming(service)
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        peer.feed("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        peer.take()
        peer.feed(fx.HEADER % "from='b.test' to='a.test'")
        [features] = [e for e in peer.take()[1] if e.name == "features"]
        self.assertEqual(mechanisms(features), [])
        self.assertTrue(offers_dialback(features))
        peer.feed(auth("="))
        self.assertEqual(sasl_answer(peer.take()[1]), ("failure", "not-authorized"))


class OriginatingTests(unittest.SynchronousTestCase):
    """We (a.test) open a stream to b.test, which offers what each test says."""

    policy = "any"

    def setUp(self):
        self.log = LogWatch(self)
        self.service, self.network, _, self.clock = fx.make_service(
            table={"b.test": [("127.0.0.3", 5269)]}, s2s_auth=self.policy)
        self.addCleanup(self.service.stopService)

    def connect(self, offer):
        """Send a ping; play b.test through STARTTLS and features ``offer``."""
        self.answer = self.service.request(ping())
        # Tests that only look at what we sent leave the ping unanswered:
        # stopping the service cancels it, which is no error of theirs.
        self.addCleanup(self.answer.addErrback, lambda f: f.trap(defer.CancelledError))
        peer = self.network.accept(self.network.attempts[-1])
        peer.feed(fx.HEADER % "from='b.test' id='pre-tls'")
        peer.feed("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
                  "<required/></starttls></stream:features>")
        peer.feed("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        peer.take()
        peer.feed(fx.HEADER % "from='b.test' id='post-tls'")
        peer.feed("<stream:features>%s</stream:features>" % (offer,))
        return peer

    def test_external_is_used_when_offered_and_the_stream_restarts(self):
        peer = self.connect(EXTERNAL_OFFER + DIALBACK_OFFER)
        _, sent = peer.take()
        [request] = named(sent, NS_SASL, "auth")
        self.assertEqual(request["mechanism"], "EXTERNAL")
        # XEP-0178: our domain as authorization identity.
        self.assertEqual(base64.b64decode(str(request)).decode(), "a.test")
        self.assertFalse(named(sent, fx.NS_DB, "result"))
        peer.feed("<success xmlns='%s'/>" % (NS_SASL,))
        header, sent = peer.take()
        self.assertEqual((header["from"], header["to"]), ("a.test", "b.test"))
        self.assertFalse([e for e in sent if e.name == "iq"])     # not yet: no features
        peer.feed(fx.HEADER % "from='b.test' id='post-sasl'")
        peer.feed("<stream:features/>")
        _, sent = peer.take()
        [iq] = [e for e in sent if e.name == "iq"]
        self.assertEqual(iq["to"], "b.test")
        self.assertEqual(peer.session.auth_methods, {("a.test", "b.test"): "SASL EXTERNAL"})
        self.assertEqual(self.log.count(
            "a.test -> b.test authenticated by SASL EXTERNAL over STARTTLS"), 1)

    def test_failed_external_falls_back_to_dialback_on_the_same_stream(self):
        peer = self.connect(EXTERNAL_OFFER + DIALBACK_OFFER)
        peer.take()
        peer.feed("<failure xmlns='%s'><not-authorized/></failure>" % (NS_SASL,))
        _, sent = peer.take()
        [result] = named(sent, fx.NS_DB, "result")
        self.assertEqual((result["from"], result["to"]), ("a.test", "b.test"))
        peer.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        _, sent = peer.take()
        self.assertEqual(len([e for e in sent if e.name == "iq"]), 1)
        self.assertEqual(peer.session.auth_methods, {("a.test", "b.test"): "dialback"})

    def test_without_external_dialback_is_used(self):
        peer = self.connect(DIALBACK_OFFER)
        _, sent = peer.take()
        self.assertFalse(named(sent, NS_SASL, "auth"))
        self.assertEqual(len(named(sent, fx.NS_DB, "result")), 1)

    def test_external_not_used_when_our_certificate_does_not_name_us(self):
        self.service.tls.ours.clear()
        peer = self.connect(EXTERNAL_OFFER + DIALBACK_OFFER)
        _, sent = peer.take()
        self.assertFalse(named(sent, NS_SASL, "auth"))
        self.assertEqual(len(named(sent, fx.NS_DB, "result")), 1)

    def test_a_peer_refusing_external_with_no_dialback_is_said_and_bounces(self):
        peer = self.connect(EXTERNAL_OFFER)
        peer.take()
        peer.feed("<failure xmlns='%s'><not-authorized/></failure>" % (NS_SASL,))
        _, sent = peer.take()
        self.assertFalse(named(sent, fx.NS_DB, "result"))     # nothing it has no module for
        failure = self.failureResultOf(self.answer, error.StanzaError)
        self.assertEqual(failure.value.condition, "remote-server-timeout")
        self.assertIn("SASL EXTERNAL failed (not-authorized); b.test does not offer dialback",
                      failure.value.text)
        self.assertEqual(self.log.count(
            "b.test accepted neither SASL EXTERNAL nor dialback from a.test"), 1)

    def test_a_stream_error_answering_dialback_is_a_refusal_too(self):
        # ejabberd without mod_s2s_dialback, when it does not offer EXTERNAL.
        peer = self.connect("")
        peer.take()
        peer.feed("<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                  "</stream:error>")
        peer.lose()
        failure = self.failureResultOf(self.answer, error.StanzaError)
        self.assertIn("b.test sent the stream error <not-authorized/>", failure.value.text)
        self.assertEqual(self.log.count("b.test accepted neither SASL EXTERNAL nor dialback"),
                         1)


class CertificatePolicyOriginatingTests(OriginatingTests):
    policy = "certificate"

    def test_failed_external_falls_back_to_dialback_on_the_same_stream(self):
        peer = self.connect(EXTERNAL_OFFER + DIALBACK_OFFER)
        peer.take()
        peer.feed("<failure xmlns='%s'><not-authorized/></failure>" % (NS_SASL,))
        _, sent = peer.take()
        self.assertFalse(named(sent, fx.NS_DB, "result"))
        failure = self.failureResultOf(self.answer, error.StanzaError)
        self.assertIn("no dialback: s2s_auth is certificate", failure.value.text)

    def test_without_external_dialback_is_used(self):
        peer = self.connect(DIALBACK_OFFER)
        _, sent = peer.take()
        self.assertFalse(named(sent, NS_SASL, "auth"))
        self.assertFalse(named(sent, fx.NS_DB, "result"))
        failure = self.failureResultOf(self.answer, error.StanzaError)
        self.assertIn("b.test does not offer SASL EXTERNAL", failure.value.text)

    test_external_not_used_when_our_certificate_does_not_name_us = None

    def test_a_peer_refusing_external_with_no_dialback_is_said_and_bounces(self):
        peer = self.connect(EXTERNAL_OFFER)
        peer.take()
        peer.feed("<failure xmlns='%s'><not-authorized/></failure>" % (NS_SASL,))
        failure = self.failureResultOf(self.answer, error.StanzaError)
        self.assertIn("SASL EXTERNAL failed (not-authorized); no dialback: s2s_auth is "
                      "certificate", failure.value.text)
        self.assertEqual(self.log.count("b.test accepted neither SASL EXTERNAL nor dialback"),
                         1)

    def test_a_stream_error_answering_dialback_is_a_refusal_too(self):
        peer = self.connect("")
        _, sent = peer.take()
        self.assertFalse(named(sent, fx.NS_DB, "result"))
        self.failureResultOf(self.answer, error.StanzaError)


class DialbackPolicyOriginatingTests(unittest.SynchronousTestCase):

    def test_external_offered_is_not_used(self):
        service, network, _, _ = fx.make_service(
            table={"b.test": [("127.0.0.3", 5269)]}, s2s_auth="dialback")
        self.addCleanup(service.stopService)
        service.request(ping()).addErrback(lambda f: None)
        peer = fx.answer_outgoing(network)
        peer.feed("<stream:features>%s%s</stream:features>" % (EXTERNAL_OFFER, DIALBACK_OFFER))
        _, sent = peer.take()
        self.assertFalse(named(sent, NS_SASL, "auth"))
        self.assertTrue(named(sent, fx.NS_DB, "result"))


class PolicyValueTests(unittest.TestCase):

    def test_unknown_policy_is_refused(self):
        self.assertRaises(ValueError, sasl.S2SAuthentication, None, "sometimes")

    def test_the_option_names_itself_on_a_bad_value(self):
        from wavebox.config import ConfigError, load
        with self.assertRaises(ConfigError) as caught:
            load({"domain": ["a.test"], "s2s_auth": "sometimes"})
        self.assertIn("--s2s-auth", str(caught.exception))
        self.assertIn("certificate", str(caught.exception))
