"""
``twistd wavebox`` wiring of federation: the services exist, in an order
that opens the store before federation starts, and the options reach them.
"""

from twisted.trial.unittest import SynchronousTestCase

from wavebox import config, service
from wavebox.federation.service import FederationService


def make(*extra):
    options = config.Options()
    options.parseOptions(["--domain", "a.test", "--data-dir", "wbx-data", "--store", "memory:",
                          "--s2s-port", "0", "--console-port", "0"] + list(extra))
    return service.makeService(options.config())


class WiringTests(SynchronousTestCase):

    def test_federation_starts_after_the_store_opens_and_stops_before_it_closes(self):
        names = [s.name for s in make()]
        self.assertLess(names.index("wave-server"), names.index("federation"))
        self.assertLess(names.index("s2s"), names.index("federation"))

    def test_federation_serves_the_wave_service_jid(self):
        federation = make().getServiceNamed("federation")
        self.assertIsInstance(federation, FederationService)
        self.assertEqual(federation.jids, {"wave.a.test"})
        self.assertTrue(federation.signers.verify_signatures)

    def test_verify_signatures_no_reaches_the_signer_infos(self):
        federation = make("--verify-signatures", "no").getServiceNamed("federation")
        self.assertFalse(federation.signers.verify_signatures)

    def test_retry_cap_reaches_the_outbox(self):
        federation = make("--federation-retry-max", "42").getServiceNamed("federation")
        self.assertEqual(federation.outbox.retry.maximum, 42.0)

    def test_disco_names_the_wave_service(self):
        s2s = make().getServiceNamed("s2s")
        self.assertIn("http://waveprotocol.org/protocol/0.2/waveserver",
                      s2s.disco._entity("wave.a.test").features)
        self.assertIn(("collaboration", "google-wave", "wavebox"),
                      s2s.disco._entity("wave.a.test").identities)

    def test_each_handler_declares_its_own_disco(self):
        # The hosted domain: a server (the federation says so), with pings (the
        # ping responder's) and the wave service as its item (the federation's).
        s2s = make().getServiceNamed("s2s")
        domain = s2s.disco._entity("a.test")
        self.assertEqual(domain.identities, [("server", "im", "wavebox")])
        self.assertEqual(domain.features, ["http://jabber.org/protocol/disco#info",
                                           "http://jabber.org/protocol/disco#items",
                                           "urn:xmpp:ping"])
        self.assertEqual(domain.items, [("wave.a.test", None)])
        service = s2s.disco._entity("wave.a.test")
        self.assertEqual(service.features[2:], [
            "urn:xmpp:ping", "urn:xmpp:receipts",
            "http://waveprotocol.org/protocol/0.2/waveserver"])
        self.assertEqual(service.items, [])
        self.assertIsNone(s2s.disco._entity("nobody@a.test"))
        self.assertIsNone(s2s.disco._entity("b.test"))

    def test_the_component_declares_the_same_for_its_jid(self):
        top = make("--component", "127.0.0.1:5347", "--component-secret", "s",
                   "--component-jid", "waves.a.test")
        entity = top.xmpp.disco._entity("waves.a.test")
        self.assertEqual(entity.identities, [("collaboration", "google-wave", "wavebox")])
        self.assertEqual(entity.features[2:], [
            "urn:xmpp:ping", "urn:xmpp:receipts",
            "http://waveprotocol.org/protocol/0.2/waveserver"])

    def test_stanzas_before_federation_starts_are_not_taken(self):
        from tests.federation_fixtures import element
        federation = make().getServiceNamed("federation")
        sent = []
        federation.transport.send = sent.append
        iq = element('<iq type="get" id="early" from="wave.b.test" to="wave.a.test">'
                     '<pubsub xmlns="http://jabber.org/protocol/pubsub"><items node="wavelet"/>'
                     '</pubsub></iq>')
        federation.stanza_received(iq)
        [reply] = sent
        self.assertEqual(reply.getAttribute("type"), "error")
        self.assertEqual(reply.error.firstChildElement().name, "internal-server-error")

    def test_component_mode_federates_as_the_component_jid(self):
        from wavebox.federation.xmppglue import XMPPTransport
        federation = make("--component", "127.0.0.1:5347", "--component-secret", "s",
                          "--component-jid", "waves.a.test").getServiceNamed("federation")
        self.assertEqual(federation.jids, {"waves.a.test"})
        self.assertIsInstance(federation.transport, XMPPTransport)
        self.assertEqual(federation.service_jid("a.test"), "waves.a.test")
