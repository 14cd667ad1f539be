"""
Service Discovery (XEP-0030): the responder for our JIDs, and the question
:mod:`wavebox.xmpp.discovery` asks a remote domain ("which of your JIDs is a
wave service?").

The responder knows only what the handlers on the stream declare (tx_xmpp's
``IDisco``): the ping responder its ping feature, the federation (for a
hosted domain) a ``server``/``im`` identity and the wave service JID as an
item and (for the wave service) the ``collaboration``/``google-wave``
identity, receipts and the wave federation feature, wave-protocol notes
section 8.2.  Any other JID of ours gets ``service-unavailable`` (RFC 6120
8.3.3.19: do not reveal which accounts exist).

A remote domain hosts a wave service when disco#info of one of its items (or
of the domain itself) shows the ``collaboration``/``google-wave`` identity or
the ``http://waveprotocol.org/protocol/0.2/waveserver`` feature; Wave in a
Box only checks the feature, FedOne the identity, so either is enough.
"""

import collections

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


class DiscoUnavailable(Exception):
    """The disco callable cannot ask at all (e.g. no S2S layer); go on without disco."""


#: What a JID of ours is (category, type, name), offers, and lists.
Entity = collections.namedtuple("Entity", "identities features items")


class DiscoResponder(XMPPHandler):
    """
    Answers disco#info and disco#items for our JIDs.  What a JID is and
    offers is declared by the handlers beside this one on the stream: each
    that provides tx_xmpp's ``IDisco`` is asked (``getDiscoInfo``,
    ``getDiscoItems``) for the JID a query is sent to, so a handler says
    what it serves where it is written (the ping responder its pings, the
    federation its wave service).  ``add_identity``/``add_feature``/
    ``add_item`` declare more by hand.  A JID for which nothing is declared
    is not answered (the stream says ``service-unavailable``).
    """

    def __init__(self):
        XMPPHandler.__init__(self)
        self._declared = {}         # JID -> (identities, features, items), declared by hand

    def _entry(self, entity):
        return self._declared.setdefault(jid.internJID(entity).full(), ([], [], []))

    def add_identity(self, entity, category, kind, name=None):
        identities = self._entry(entity)[0]
        if (category, kind, name) not in identities:
            identities.append((category, kind, name))

    def add_feature(self, entity, feature):
        features = self._entry(entity)[1]
        if feature not in features:
            features.append(feature)

    def add_item(self, entity, item, name=None):
        items = self._entry(entity)[2]
        if (item, name) not in items:
            items.append((item, name))

    def connectionInitialized(self):
        self.xmlstream.addObserver(DISCO_INFO_GET, self.on_info)
        self.xmlstream.addObserver(DISCO_ITEMS_GET, self.on_items)

    def _declarers(self):
        return [h for h in (self.parent or ()) if h is not self and txdisco.IDisco.providedBy(h)]

    def _entity(self, entity):
        """
        (identities, features, items) of ``entity`` (a JID string), from the
        handlers and by hand; None when nothing is declared for it.  The
        handlers' answers must be ready at once (they are, here).
        """
        try:
            target = jid.internJID(entity)
        except (jid.InvalidFormat, TypeError, UnicodeError):
            return None
        identities, features, items = (list(x) for x in self._declared.get(target.full(),
                                                                            ([], [], [])))
        known = target.full() in self._declared
        for handler in self._declarers():
            for element in handler.getDiscoInfo(None, target, ""):
                known = True
                if isinstance(element, txdisco.DiscoIdentity):
                    if (element.category, element.type, element.name) not in identities:
                        identities.append((element.category, element.type, element.name))
                elif isinstance(element, txdisco.DiscoFeature) and element not in features:
                    features.append(str(element))
            for element in handler.getDiscoItems(None, target, ""):
                known = True
                if (element.entity.full(), element.name) not in items:
                    items.append((element.entity.full(), element.name))
        if not known:
            return None
        return Entity(identities, [NS_DISCO_INFO, NS_DISCO_ITEMS]
                      + [f for f in features if f not in (NS_DISCO_INFO, NS_DISCO_ITEMS)], items)

    def _known(self, iq):
        return self._entity(iq.getAttribute("to"))

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
