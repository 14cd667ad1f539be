"""
Service Discovery (XEP-0030): the responder for our JIDs, and the question
:mod:`wavebox.xmpp.discovery` asks a remote domain ("which of your JIDs is a
wave service?").

The responder knows only what it is told: the wiring registers each JID we
answer for with its identities, features and items (for a hosted domain, a
``server``/``im`` identity and the wave service JID as an item; for the wave
service, the ``collaboration``/``google-wave`` identity and the wave
federation feature, wave-protocol notes section 8.2).  Any other JID of ours
gets ``service-unavailable`` (RFC 6120 8.3.3.19: do not reveal which
accounts exist).

A remote domain hosts a wave service when disco#info of one of its items (or
of the domain itself) shows the ``collaboration``/``google-wave`` identity or
the ``http://waveprotocol.org/protocol/0.2/waveserver`` feature; Wave in a
Box only checks the feature, FedOne the identity, so either is enough.
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.protocols.jabber import error, jid
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from tx_xmpp import disco as txdisco
from tx_xmpp.subprotocols import XMPPHandler

from wavebox.xmpp.limits import error_reply

NS_DISCO_INFO = txdisco.NS_DISCO_INFO
NS_DISCO_ITEMS = txdisco.NS_DISCO_ITEMS
NS_WAVE_SERVER = "http://waveprotocol.org/protocol/0.2/waveserver"
WAVE_IDENTITY = ("collaboration", "google-wave")

DISCO_INFO_GET = "/iq[@type='get']/query[@xmlns='%s']" % (NS_DISCO_INFO,)
DISCO_ITEMS_GET = "/iq[@type='get']/query[@xmlns='%s']" % (NS_DISCO_ITEMS,)

log = Logger()


class _Entity:
    def __init__(self):
        self.identities = []
        self.features = [NS_DISCO_INFO, NS_DISCO_ITEMS]
        self.items = []


class DiscoResponder(XMPPHandler):
    """Answers disco#info and disco#items for the JIDs it was told about."""

    def __init__(self):
        XMPPHandler.__init__(self)
        self._entities = {}

    def _entity(self, entity):
        return self._entities.setdefault(jid.internJID(entity).full(), _Entity())

    def add_identity(self, entity, category, kind, name=None):
        identities = self._entity(entity).identities
        if (category, kind, name) not in identities:
            identities.append((category, kind, name))

    def add_feature(self, entity, feature):
        features = self._entity(entity).features
        if feature not in features:
            features.append(feature)

    def add_item(self, entity, item, name=None):
        items = self._entity(entity).items
        if (item, name) not in items:
            items.append((item, name))

    def connectionInitialized(self):
        self.xmlstream.addObserver(DISCO_INFO_GET, self.on_info)
        self.xmlstream.addObserver(DISCO_ITEMS_GET, self.on_items)

    def _known(self, iq):
        target = iq.getAttribute("to")
        try:
            return self._entities.get(jid.internJID(target).full())
        except (jid.InvalidFormat, TypeError):
            return None

    def _answer(self, iq, query):
        iq.handled = True
        if query.getAttribute("node"):
            response = error_reply(iq, "item-not-found")
        else:
            response = toResponse(iq, "result")
        return response

    def on_info(self, iq):
        entity = self._known(iq)
        if entity is None:
            return
        response = self._answer(iq, iq.query)
        if response.getAttribute("type") == "result":
            info = txdisco.DiscoInfo()
            for category, kind, name in entity.identities:
                info.append(txdisco.DiscoIdentity(category, kind, name))
            for feature in entity.features:
                info.append(txdisco.DiscoFeature(feature))
            response.addChild(info.toElement())
        self.send(response)

    def on_items(self, iq):
        entity = self._known(iq)
        if entity is None:
            return
        response = self._answer(iq, iq.query)
        if response.getAttribute("type") == "result":
            items = txdisco.DiscoItems()
            for item, name in entity.items:
                items.append(txdisco.DiscoItem(jid.internJID(item), name=name))
            response.addChild(items.toElement())
        self.send(response)


def _query(kind, target, sender):
    iq = domish.Element((None, "iq"))
    iq["type"] = "get"
    iq["to"] = target
    iq["from"] = sender
    iq.addElement((kind, "query"))
    return iq


def is_wave_service(info_query):
    """Does a disco#info ``<query/>`` describe a wave service?"""
    for child in info_query.elements():
        if child.name == "identity" and (
                child.getAttribute("category"), child.getAttribute("type")) == WAVE_IDENTITY:
            return True
        if child.name == "feature" and child.getAttribute("var") == NS_WAVE_SERVER:
            return True
    return False


UNREACHABLE = ("remote-server-not-found", "remote-server-timeout")


@defer.inlineCallbacks
def find_wave_service(request, domain, sender, found_items=None):
    """
    disco#items to ``domain``, then disco#info to each item and to ``domain``
    (in parallel); the first of them, in that order, that is a wave service.
    ``request(iq)`` sends an iq and fires with the answer.  Fails with the
    ``StanzaError`` when ``domain`` itself cannot be reached; None when it
    can but hosts no wave service.
    """
    try:
        answer = yield request(_query(NS_DISCO_ITEMS, domain, sender))
    except error.StanzaError as e:
        if e.condition in UNREACHABLE:
            raise
        log.info("disco#items of {domain}: {condition}", domain=domain, condition=e.condition)
        items = []
    else:
        items = []
        for query in answer.elements(NS_DISCO_ITEMS, "query"):
            for item in query.elements(NS_DISCO_ITEMS, "item"):
                if item.getAttribute("jid") and not item.getAttribute("node"):
                    items.append(item["jid"])
    candidates = []
    for candidate in items + [domain]:
        if candidate not in candidates:
            candidates.append(candidate)
    if found_items is not None:
        found_items(candidates)

    def asked(answer):
        return any(is_wave_service(q) for q in answer.elements(NS_DISCO_INFO, "query"))

    def failed(reason, candidate):
        log.info("disco#info of {candidate}: {why}", candidate=candidate,
                 why=reason.getErrorMessage() or reason.type.__name__)
        return False

    questions = [request(_query(NS_DISCO_INFO, c, sender)).addCallbacks(
        asked, failed, errbackArgs=(c,)) for c in candidates]
    verdicts = yield defer.gatherResults(questions)
    for candidate, verdict in zip(candidates, verdicts):
        if verdict:
            return candidate
    return None
