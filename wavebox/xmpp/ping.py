"""
Pings between servers.

- XEP-0199: an ``<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>`` to any of
  our JIDs is answered with an empty result.
- The FedOne server ping (wave-protocol notes section 8.3): a
  ``<message type='normal'>`` carrying ``<ping
  xmlns='http://waveprotocol.org/protocol/0.2/waveserver'/>`` and an XEP-0184
  ``<request xmlns='urn:xmpp:receipts'/>``.  The answer is a message with the
  same id, ``from``/``to`` swapped, and ``<received xmlns='urn:xmpp:receipts'/>``.
  :class:`PingResponder` answers it; :class:`ServerPinger` sends it at
  start-up to each ``--xmpp_server_ping`` domain and logs
  ``got ping response from DOMAIN`` when the receipt comes back.
"""

import uuid

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from tx_xmpp.subprotocols import XMPPHandler

from wavebox.xmpp.disco import NS_WAVE_SERVER

NS_PING = "urn:xmpp:ping"
NS_RECEIPTS = "urn:xmpp:receipts"

XMPP_PING = "/iq[@type='get']/ping[@xmlns='%s']" % (NS_PING,)
WAVE_PING = "/message/ping[@xmlns='%s']" % (NS_WAVE_SERVER,)
RECEIPT = "/message/received[@xmlns='%s']" % (NS_RECEIPTS,)

log = Logger()


def wave_ping(sender, recipient, ping_id):
    """The FedOne server ping message."""
    message = domish.Element((None, "message"))
    message["type"] = "normal"
    message["id"] = ping_id
    message["from"] = sender
    message["to"] = recipient
    message.addElement((NS_WAVE_SERVER, "ping"))
    message.addElement((NS_RECEIPTS, "request"))
    return message


class PingResponder(XMPPHandler):
    """Answers XEP-0199 pings and FedOne server pings sent to our JIDs."""

    def connectionInitialized(self):
        self.xmlstream.addObserver(XMPP_PING, self.on_xmpp_ping)
        self.xmlstream.addObserver(WAVE_PING, self.on_wave_ping)

    def on_xmpp_ping(self, iq):
        iq.handled = True
        self.send(toResponse(iq, "result"))

    def on_wave_ping(self, message):
        """Same id, swapped addresses, and the XEP-0184 receipt."""
        message.handled = True
        if message.getAttribute("type") == "error" or not message.getAttribute("from"):
            return
        receipt = domish.Element((None, "message"))
        receipt["from"] = message["to"]
        receipt["to"] = message["from"]
        if message.getAttribute("id"):
            receipt["id"] = message["id"]
        received = receipt.addElement((NS_RECEIPTS, "received"))
        if message.getAttribute("id"):
            received["id"] = message["id"]
        self.send(receipt)
        # The pinging operator looks for "got ping response"; this is the
        # other half, once per peer start-up (XEP-0199 pings stay quiet).
        log.info("answered the wave ping from {sender}", sender=message["from"])


class _ReceiptWatcher(XMPPHandler):
    def __init__(self, pinger):
        XMPPHandler.__init__(self)
        self._pinger = pinger

    def connectionInitialized(self):
        self.xmlstream.addObserver(RECEIPT, self._pinger._receipt)
        self.xmlstream.addObserver("/message[@type='error']", self._pinger._error)


class ServerPinger(service.Service):
    """
    At start-up, send the FedOne ping from ``sender`` (our wave service JID)
    to the wave service of each domain in ``domains``.

    ``locate(domain)`` fires with that domain's wave service JID (the wiring
    passes :class:`wavebox.xmpp.discovery.WaveServiceDiscovery`; without it,
    the ``wave.DOMAIN`` guess is used).
    """

    def __init__(self, s2s, sender, domains, locate=None, clock=None, timeout=60.0,
                 prefix="wave"):
        if clock is None:
            from twisted.internet import reactor as clock
        self.s2s = s2s
        self.sender = sender
        self.domains = list(domains)
        self.locate = locate or (lambda domain: defer.succeed("%s.%s" % (prefix, domain)))
        self.clock = clock
        self.timeout = timeout
        self._waiting = {}      # ping id -> (domain, service jid, Deferred, timeout call)
        self._start_call = None
        self._watcher = _ReceiptWatcher(self)
        s2s.add_handler(self._watcher)

    def startService(self):
        service.Service.startService(self)
        if self.domains:
            self._start_call = self.clock.callLater(0, self._ping_all)

    def stopService(self):
        service.Service.stopService(self)
        if self._start_call is not None and self._start_call.active():
            self._start_call.cancel()
        self._start_call = None
        for ping_id in list(self._waiting):
            self._finish(ping_id).callback(False)

    def _ping_all(self):
        self._start_call = None
        for domain in self.domains:
            self.ping(domain)

    def ping(self, domain):
        """Fires with True when the receipt came, False when it did not in time."""
        done = defer.Deferred()

        def located(target):
            if not self.running:
                return done.callback(False)
            ping_id = "ping-" + uuid.uuid4().hex[:12]
            call = self.clock.callLater(self.timeout, self._timed_out, ping_id)
            self._waiting[ping_id] = (domain, target, done, call)
            log.info("sending ping to {domain} ({target})", domain=domain, target=target)
            try:
                self.s2s.send(wave_ping(self.sender, target, ping_id))
            except Exception as e:
                self._finish(ping_id)
                log.warn("cannot ping {domain}: {error}", domain=domain, error=e)
                done.callback(False)

        def not_located(reason):
            log.warn("cannot ping {domain}: {why}", domain=domain, why=reason.getErrorMessage())
            done.callback(False)

        defer.maybeDeferred(self.locate, domain).addCallbacks(located, not_located)
        return done

    def _receipt(self, message):
        entry = self._waiting.get(message.getAttribute("id"))
        if entry is None:
            return
        domain, target, _, _ = entry
        if message.getAttribute("from") != target:
            return
        message.handled = True
        done = self._finish(message["id"])
        log.info("got ping response from {domain}", domain=domain)
        done.callback(True)

    def _error(self, message):
        entry = self._waiting.get(message.getAttribute("id"))
        if entry is None or message.getAttribute("from") != entry[1]:
            return
        message.handled = True
        condition, text = "unknown error", None
        for child in message.elements():
            if child.name == "error":
                for c in child.elements():
                    if c.name == "text":
                        text = str(c)
                    elif condition == "unknown error":
                        condition = c.name
        done = self._finish(message["id"])
        log.warn("ping to {domain} failed: {condition}{why}", domain=entry[0],
                 condition=condition, why=" (%s)" % (text,) if text else "")
        done.callback(False)

    def _timed_out(self, ping_id):
        entry = self._waiting.get(ping_id)
        if entry is not None:
            done = self._finish(ping_id)
            log.warn("no ping response from {domain} in {timeout:.0f}s",
                     domain=entry[0], timeout=self.timeout)
            done.callback(False)

    def _finish(self, ping_id):
        """Forget a ping (before logging: a log observer may stop us); its Deferred."""
        domain, target, done, call = self._waiting.pop(ping_id)
        if call.active():
            call.cancel()
        return done
