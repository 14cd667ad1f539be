"""Service Discovery (XEP-0030): our answers, and finding a remote wave service."""

from twisted.internet import defer
from twisted.trial import unittest
from twisted.words.protocols.jabber import error
from twisted.words.xish import domish

from tests import xmpp_fakes as fx
from wavebox.xmpp import disco
from wavebox.xmpp.disco import NS_DISCO_INFO, NS_DISCO_ITEMS, NS_WAVE_SERVER


def query(kind, to, node=None):
    iq = domish.Element((None, "iq"))
    iq["type"], iq["from"], iq["to"] = "get", "wave.a.test", to
    q = iq.addElement((kind, "query"))
    if node:
        q["node"] = node
    return iq


class ResponderTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.service, _, _, _ = fx.make_service()
        self.addCleanup(self.service.stopService)
        d = self.service.disco
        d.add_identity("a.test", "server", "im", "wavebox")
        d.add_item("a.test", "wave.a.test")
        d.add_identity("wave.a.test", "collaboration", "google-wave", "wavebox")
        for feature in ("urn:xmpp:ping", "urn:xmpp:receipts", NS_WAVE_SERVER):
            d.add_feature("wave.a.test", feature)

    def ask(self, kind, to, node=None):
        return self.service.request(query(kind, to, node))

    def test_wave_service_has_the_collaboration_identity_and_features(self):
        answer = self.successResultOf(self.ask(NS_DISCO_INFO, "wave.a.test"))
        q = answer.query
        self.assertEqual(q.uri, NS_DISCO_INFO)
        identities = [(i["category"], i["type"], i["name"]) for i in q.elements()
                      if i.name == "identity"]
        self.assertEqual(identities, [("collaboration", "google-wave", "wavebox")])
        features = [f["var"] for f in q.elements() if f.name == "feature"]
        self.assertEqual(sorted(features), sorted([
            NS_DISCO_INFO, NS_DISCO_ITEMS, "urn:xmpp:ping", "urn:xmpp:receipts",
            NS_WAVE_SERVER]))
        self.assertTrue(disco.is_wave_service(q))

    def test_domain_lists_its_wave_service_as_an_item(self):
        answer = self.successResultOf(self.ask(NS_DISCO_ITEMS, "a.test"))
        self.assertEqual([i["jid"] for i in answer.query.elements()], ["wave.a.test"])

    def test_domain_is_a_server_and_not_a_wave_service(self):
        answer = self.successResultOf(self.ask(NS_DISCO_INFO, "a.test"))
        identities = [(i["category"], i["type"]) for i in answer.query.elements()
                      if i.name == "identity"]
        self.assertEqual(identities, [("server", "im")])
        self.assertFalse(disco.is_wave_service(answer.query))

    def test_unknown_jid_of_ours_is_service_unavailable(self):
        f = self.failureResultOf(self.ask(NS_DISCO_INFO, "nobody@a.test"), error.StanzaError)
        self.assertEqual(f.value.condition, "service-unavailable")

    def test_node_is_item_not_found(self):
        f = self.failureResultOf(self.ask(NS_DISCO_INFO, "wave.a.test", "x"), error.StanzaError)
        self.assertEqual(f.value.condition, "item-not-found")


def info(*children):
    iq = domish.Element((None, "iq"))
    q = iq.addElement((NS_DISCO_INFO, "query"))
    for name, attrs in children:
        child = q.addElement(name)
        for k, v in attrs.items():
            child[k] = v
    return iq


def items(*jids):
    iq = domish.Element((None, "iq"))
    q = iq.addElement((NS_DISCO_ITEMS, "query"))
    for j in jids:
        q.addElement("item")["jid"] = j
    return iq


class FindWaveServiceTests(unittest.SynchronousTestCase):
    """The question wavebox asks a remote domain, against canned answers."""

    def setUp(self):
        self.answers = {}
        self.asked = []

    def request(self, iq):
        kind = iq.query.uri
        self.asked.append((kind, iq["to"], iq["from"]))
        answer = self.answers.get((kind, iq["to"]))
        if isinstance(answer, Exception):
            return defer.fail(answer)
        if answer is None:
            return defer.fail(error.StanzaError("service-unavailable"))
        return defer.succeed(answer)

    def find(self):
        return disco.find_wave_service(self.request, "b.test", "a.test")

    def test_item_with_the_wave_identity_is_the_service(self):
        self.answers[(NS_DISCO_ITEMS, "b.test")] = items("conf.b.test", "wave.b.test")
        self.answers[(NS_DISCO_INFO, "conf.b.test")] = info(
            ("identity", {"category": "conference", "type": "text"}))
        self.answers[(NS_DISCO_INFO, "wave.b.test")] = info(
            ("identity", {"category": "collaboration", "type": "google-wave"}))
        self.assertEqual(self.successResultOf(self.find()), "wave.b.test")
        self.assertEqual({a[2] for a in self.asked}, {"a.test"})

    def test_waveserver_feature_alone_is_enough(self):
        self.answers[(NS_DISCO_ITEMS, "b.test")] = items("w.b.test")
        self.answers[(NS_DISCO_INFO, "w.b.test")] = info(("feature", {"var": NS_WAVE_SERVER}))
        self.assertEqual(self.successResultOf(self.find()), "w.b.test")

    def test_domain_itself_is_asked_when_it_has_no_items(self):
        self.answers[(NS_DISCO_INFO, "b.test")] = info(("feature", {"var": NS_WAVE_SERVER}))
        self.assertEqual(self.successResultOf(self.find()), "b.test")

    def test_no_wave_service_is_none(self):
        self.answers[(NS_DISCO_ITEMS, "b.test")] = items("conf.b.test")
        self.assertIsNone(self.successResultOf(self.find()))

    def test_unreachable_domain_fails(self):
        self.answers[(NS_DISCO_ITEMS, "b.test")] = error.StanzaError("remote-server-not-found")
        f = self.failureResultOf(self.find(), error.StanzaError)
        self.assertEqual(f.value.condition, "remote-server-not-found")

    def test_items_are_reported_for_routing(self):
        self.answers[(NS_DISCO_ITEMS, "b.test")] = items("wave.b.test")
        seen = []
        disco.find_wave_service(self.request, "b.test", "a.test", seen.extend)
        self.assertEqual(seen, ["wave.b.test", "b.test"])


class ServiceDiscoCallableTests(unittest.SynchronousTestCase):
    """S2SService.find_wave_service: the disco callable of the discovery module."""

    def test_endpoints_given_are_used_instead_of_dns_for_the_domain_and_its_items(self):
        service, network, resolver, _ = fx.make_service()
        self.addCleanup(service.stopService)
        service.tls.proves.update(["b.test", "wave.b.test"])
        d = service.find_wave_service("b.test", [fx.Endpoint("127.0.0.3", 5999, "b.test")])
        self.assertEqual([(c.host, c.port) for c in network.attempts], [("127.0.0.3", 5999)])
        peer = fx.answer_outgoing(network)
        peer.feed("<db:result from='b.test' to='a.test' type='valid'/>")
        _, sent = peer.take()
        items_iq = [e for e in sent if e.name == "iq"][0]
        incoming = fx.open_incoming(service)
        incoming.feed("<db:result from='b.test' to='a.test'>k</db:result>")
        incoming.feed("<iq type='result' id='%s' from='b.test' to='a.test'>"
                      "<query xmlns='%s'><item jid='wave.b.test'/></query></iq>"
                      % (items_iq["id"], NS_DISCO_ITEMS))
        # disco#info to b.test goes on its stream; wave.b.test (another
        # domain pair, found without DNS at the same address) is
        # authenticated on that same stream: one connection (seed step 11).
        _, sent = peer.take()
        self.assertEqual(sorted((e.name, e.getAttribute("to")) for e in sent),
                         [("iq", "b.test"), ("result", "wave.b.test")])
        peer.feed("<db:result from='wave.b.test' to='a.test' type='valid'/>")
        incoming.feed("<db:result from='wave.b.test' to='a.test'>k</db:result>")
        _, more = peer.take()
        infos = {e["to"]: e["id"] for e in sent + more if e.name == "iq"}
        self.assertEqual(sorted(infos), ["b.test", "wave.b.test"])
        incoming.feed("<iq type='result' id='%s' from='b.test' to='a.test'>"
                      "<query xmlns='%s'/></iq>" % (infos["b.test"], NS_DISCO_INFO))
        incoming.feed("<iq type='result' id='%s' from='wave.b.test' to='a.test'>"
                      "<query xmlns='%s'><feature var='%s'/></query></iq>"
                      % (infos["wave.b.test"], NS_DISCO_INFO, NS_WAVE_SERVER))
        self.assertEqual(self.successResultOf(d), "wave.b.test")
        self.assertEqual(resolver.queries, [])
        self.assertEqual(len(network.attempts), 1)
