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
  ``got ping response from DOMAIN`` when the receipt comes back, and pings
  a peer that does not answer again, less and less often, until it does.
"""

import uuid

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.protocols.jabber.xmlstream import toResponse
from twisted.words.xish import domish
from tx_xmpp.disco import DiscoFeature, IDisco
from tx_xmpp.subprotocols import XMPPHandler
from zope.interface import implementer

from wavebox.clock import default_clock
from wavebox.retry import RetryPolicy
from wavebox.xmpp.disco import NS_WAVE_SERVER

NS_PING = "urn:xmpp:ping"
NS_RECEIPTS = "urn:xmpp:receipts"

XMPP_PING = "/iq[@type='get']/ping[@xmlns='%s']" % (NS_PING,)
WAVE_PING = "/message/ping[@xmlns='%s']" % (NS_WAVE_SERVER,)
RECEIPT = "/message/received[@xmlns='%s']" % (NS_RECEIPTS,)

#: The start-up pings of a peer that does not answer: 10 s, then twice as
#: long each time up to 10 minutes, 12 pings in all.
DEFAULT_RETRY = RetryPolicy(initial=10.0, maximum=600.0, attempts=12)

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


@implementer(IDisco)
class PingResponder(XMPPHandler):
    """
    Answers XEP-0199 pings and FedOne server pings sent to our JIDs, and
    says so in disco: every domain of the stream (``parent.is_local``) has
    the ping feature.
    """

    def getDiscoInfo(self, requestor, target, nodeIdentifier=""):
        if (nodeIdentifier or target.user or target.resource
                or not self.parent.is_local(target.host)):
            return []
        return [DiscoFeature(NS_PING)]

    def getDiscoItems(self, requestor, target, nodeIdentifier=""):
        return []

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
    to the wave service of each domain in ``domains``; a peer that does not
    answer is pinged again as the :class:`~wavebox.retry.RetryPolicy`
    ``retry`` says (10 s, then twice as long each time up to 10 minutes, 12
    times in all), or until it answers.  The first failure is a warning that says so; the ones after
    it are logged at debug level, so an outage is one line, not one per try.

    ``locate(domain)`` fires with that domain's wave service JID (the wiring
    passes :class:`wavebox.xmpp.discovery.WaveServiceDiscovery`; without it,
    the ``wave.DOMAIN`` guess is used); ``forget(domain)``, if given, drops
    what discovery cached about a peer that failed, so that the next try
    looks again.
    """

    def __init__(self, s2s, sender, domains, locate=None, clock=None, timeout=60.0,
                 prefix="wave", forget=None, retry=DEFAULT_RETRY):
        clock = default_clock(clock)
        self.s2s = s2s
        self.sender = sender
        self.domains = list(domains)
        self.locate = locate or (lambda domain: defer.succeed("%s.%s" % (prefix, domain)))
        self.forget = forget
        self.clock = clock
        self.timeout = timeout
        self.retry = retry
        self._waiting = {}      # ping id -> (domain, service jid, Deferred, timeout call)
        self._start_call = None
        self._retry_calls = {}  # domain -> the delayed call of its next start-up ping
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
        for call in self._retry_calls.values():
            if call.active():
                call.cancel()
        self._retry_calls.clear()
        for ping_id in list(self._waiting):
            self._finish(ping_id).callback((False, None))

    def _ping_all(self):
        self._start_call = None
        for domain in self.domains:
            self._keep_pinging(domain, 1)

    # -- the start-up pings, retried -------------------------------------------

    def _keep_pinging(self, domain, attempt):
        self._retry_calls.pop(domain, None)
        if not self.running:
            return
        d = self._attempt(domain, attempt)
        d.addCallback(self._answered, domain, attempt)
        d.addErrback(lambda f: log.failure("pinging {domain} broke", f, domain=domain))

    def _answered(self, result, domain, attempt):
        answered, why = result
        if answered or why is None or not self.running:
            return
        if self.retry.exhausted(attempt):
            if attempt == 1:
                log.warn("{why}", why=why)
            else:
                log.info("{why}; no answer from {domain} in {n} attempts: not pinging it "
                         "again", why=why, domain=domain, n=attempt)
            return
        delay = self.retry.delay(attempt)
        if attempt == 1:
            log.warn("{why}; pinging it again in {delay:.0f}s, then less and less often (up "
                     "to every {most:.0f}s, {n} attempts in all) until it answers; until then "
                     "further failures are logged at debug level", why=why, delay=delay,
                     most=self.retry.maximum, n=self.retry.attempts)
        else:
            log.debug("{why}; attempt {attempt}, next in {delay:.0f}s", why=why,
                      attempt=attempt, delay=delay)
        if self.forget is not None:
            self.forget(domain)
        self._retry_calls[domain] = self.clock.callLater(
            delay, self._keep_pinging, domain, attempt + 1)

    # -- one ping ------------------------------------------------------------------

    def ping(self, domain):
        """Fires with True when the receipt came, False when it did not in time."""
        def logged(result):
            answered, why = result
            if why is not None:
                log.warn("{why}", why=why)
            return answered
        return self._attempt(domain, 1).addCallback(logged)

    def _attempt(self, domain, attempt):
        """
        One ping; fires with ``(True, None)`` when the receipt came, else
        ``(False, why)``, the line to log (None when we are stopping).
        """
        done = defer.Deferred()

        def located(target):
            if not self.running:
                return done.callback((False, None))
            ping_id = "ping-" + uuid.uuid4().hex[:12]
            call = self.clock.callLater(self.timeout, self._timed_out, ping_id)
            self._waiting[ping_id] = (domain, target, done, call)
            if attempt == 1:
                log.info("sending ping to {domain} ({target})", domain=domain, target=target)
            else:
                log.debug("pinging {domain} ({target}) again, attempt {attempt}",
                          domain=domain, target=target, attempt=attempt)
            try:
                self.s2s.send(wave_ping(self.sender, target, ping_id))
            except Exception as e:
                self._finish(ping_id)
                done.callback((False, "cannot ping %s: %s" % (domain, e)))

        def not_located(reason):
            done.callback((False, "cannot ping %s: %s" % (domain, reason.getErrorMessage())))

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
        done.callback((True, None))

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
        done.callback((False, "ping to %s failed: %s%s" % (
            entry[0], condition, " (%s)" % (text,) if text else "")))

    def _timed_out(self, ping_id):
        entry = self._waiting.get(ping_id)
        if entry is not None:
            done = self._finish(ping_id)
            done.callback((False, "no ping response from %s in %.0fs" % (entry[0], self.timeout)))

    def _finish(self, ping_id):
        """Forget a ping (before logging: a log observer may stop us); its Deferred."""
        domain, target, done, call = self._waiting.pop(ping_id)
        if call.active():
            call.cancel()
        return done
