"""
The federation service on XMPP server-to-server (:mod:`wavebox.xmpp.server`)
and the seed's peer discovery (:mod:`wavebox.xmpp.discovery`): the
:class:`~wavebox.federation.service.ITransport` the federation layer needs,
and the tx_xmpp handler that hands it the stanzas for our wave service JIDs.

The XMPP layer knows nothing of waves; this module is where the two meet,
through its public API only (``send``, ``request``, ``retry_now``,
``add_handler``; for S2S also ``set_endpoints`` and discovery's
``discover``/``forget``; for the XEP-0114 component, ``locate_wave_service``).
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.protocols.jabber import jid
from tx_xmpp.disco import DiscoFeature, DiscoIdentity, DiscoItem, IDisco
from tx_xmpp.subprotocols import XMPPHandler
from zope.interface import implementer

from wavebox.federation import stanzas
from wavebox.federation.service import ITransport
from wavebox.federation.trust import jid_domain
from wavebox.xmpp.disco import WAVE_IDENTITY

log = Logger()

# What the federation takes: pubsub iq requests, and messages that carry an
# update, a receipt or an error (FedOne pings are the XMPP layer's ping
# responder's).
IQ_REQUEST = "/iq/pubsub[@xmlns='%s']" % (stanzas.NS_PUBSUB,)
MESSAGE = "/message"


@implementer(ITransport)
class XMPPTransport:
    """
    ``send``/``request`` through the XMPP layer (the S2S service, or the
    XEP-0114 component: they have the same API); ``discover`` through
    ``locate(domain)``, which fires with the peer's wave service JID.
    """

    def __init__(self, xmpp, locate, forget=None):
        self.xmpp = xmpp
        self._locate = locate
        self._forget = forget

    def send(self, element):
        self.xmpp.send(element)

    def request(self, iq, timeout):
        return self.xmpp.request(iq, timeout)

    def discover(self, domain):
        return defer.maybeDeferred(self._locate, domain).addCallback(str)

    def forget(self, domain):
        """A peer that failed us is looked up again next time, not from the cache."""
        if self._forget is not None:
            self._forget(domain)

    def retry_now(self, domain):
        """The outbox waited for ``domain`` and tries it now: so does the XMPP layer."""
        self.xmpp.retry_now(domain)


def S2STransport(s2s, discovery):
    """The transport over our own S2S service and the seed's discovery steps."""
    def locate(domain):
        def found(result):
            s2s.set_endpoints(result.jid, result.endpoints)
            return result.jid
        return discovery.discover(domain).addCallback(found)
    return XMPPTransport(s2s, locate, discovery.forget)


#: The name in our disco identities.
IDENTITY_NAME = "wavebox"


@implementer(IDisco)
class FederationHandler(XMPPHandler):
    """
    Gives the federation service every stanza of ours it speaks for, and
    declares in disco what it serves: each hosted domain is a server with
    its wave service as an item; each wave service JID has the wave
    identity, receipts (XEP-0184, which updates ask for) and the wave
    federation feature (wave protocol notes 8.2).
    """

    def __init__(self, federation, name=IDENTITY_NAME):
        XMPPHandler.__init__(self)
        self.federation = federation
        self.name = name

    def _hosted(self, target):
        """The hosted domain ``target`` is (a bare domain JID), or None."""
        if target.user or target.resource:
            return None
        for domain in self.federation.server.domains:
            if domain == target.host and domain not in self.federation.jids:
                return domain
        return None

    def getDiscoInfo(self, requestor, target, nodeIdentifier=""):
        if nodeIdentifier or target.user or target.resource:
            return []
        if target.host in self.federation.jids:
            return [DiscoIdentity(WAVE_IDENTITY[0], WAVE_IDENTITY[1], self.name),
                    DiscoFeature(stanzas.NS_RECEIPTS), DiscoFeature(stanzas.NS_WAVE)]
        if self._hosted(target):
            return [DiscoIdentity("server", "im", self.name)]
        return []

    def getDiscoItems(self, requestor, target, nodeIdentifier=""):
        domain = None if nodeIdentifier else self._hosted(target)
        if domain is None:
            return []
        return [DiscoItem(jid.internJID(self.federation.service_jid(domain)))]

    def connectionInitialized(self):
        self.xmlstream.addObserver(IQ_REQUEST, self.on_iq)
        self.xmlstream.addObserver(MESSAGE, self.on_message)

    def connectionLost(self, reason):
        if self.xmlstream is not None:
            self.xmlstream.removeObserver(IQ_REQUEST, self.on_iq)
            self.xmlstream.removeObserver(MESSAGE, self.on_message)
        XMPPHandler.connectionLost(self, reason)

    def _ours(self, stanza):
        return jid_domain(stanza.getAttribute("to")) in self.federation.jids

    def on_iq(self, iq):
        if getattr(iq, "handled", False) or not self._ours(iq):
            return
        if iq.getAttribute("type") not in ("get", "set"):
            return
        iq.handled = True
        self.federation.stanza_received(iq)

    def on_message(self, message):
        if getattr(message, "handled", False) or not self._ours(message):
            return
        try:
            kind = stanzas.classify_message(message)
        except stanzas.FederationError:
            return       # not ours to answer (another handler, or nobody)
        if kind == stanzas.PING:
            return       # the XMPP layer's ping responder answers those
        if kind in (stanzas.RECEIPT, stanzas.ERROR):
            ident = message.getAttribute("id") or ""
            if not ident.startswith("wbx"):
                return   # answers another handler's message (a ping's receipt)
        message.handled = True
        self.federation.stanza_received(message)
