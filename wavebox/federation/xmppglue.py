"""
The federation service on XMPP server-to-server (:mod:`wavebox.xmpp.streams`)
and the seed's peer discovery (:mod:`wavebox.xmpp.discovery`): the
:class:`~wavebox.federation.component.ITransport` the federation layer needs,
and the tx_xmpp handler that hands it the stanzas for our wave service JIDs.

The XMPP layer knows nothing of waves; this module is where the two meet,
through the S2S service's public API only (``send``, ``request``,
``add_handler``, ``set_endpoints``) and discovery's ``discover``/``forget``.
"""

from twisted.internet import defer
from twisted.logger import Logger
from tx_xmpp.subprotocols import XMPPHandler
from zope.interface import implementer

from wavebox.federation import stanzas
from wavebox.federation.component import ITransport
from wavebox.federation.trust import jid_domain

log = Logger()

# What the federation takes: pubsub iq requests, and messages that carry an
# update, a receipt or an error (FedOne pings are the XMPP layer's ping
# responder's).
IQ_REQUEST = "/iq/pubsub[@xmlns='%s']" % (stanzas.NS_PUBSUB,)
MESSAGE = "/message"


@implementer(ITransport)
class S2STransport:
    """``send``/``request`` through the S2S service; ``discover`` through discovery."""

    def __init__(self, s2s, discovery):
        self.s2s = s2s
        self.discovery = discovery

    def send(self, element):
        self.s2s.send(element)

    def request(self, iq, timeout):
        return self.s2s.request(iq, timeout)

    @defer.inlineCallbacks
    def discover(self, domain):
        """The JID of ``domain``'s wave service; the S2S layer learns where it is."""
        result = yield self.discovery.discover(domain)
        self.s2s.set_endpoints(result.jid, result.endpoints)
        return result.jid

    def forget(self, domain):
        """A peer that failed us is looked up again next time, not from the cache."""
        forget = getattr(self.discovery, "forget", None)
        if forget is not None:
            forget(domain)


class FederationHandler(XMPPHandler):
    """Gives the federation service every stanza of ours it speaks for."""

    def __init__(self, federation):
        XMPPHandler.__init__(self)
        self.federation = federation

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
