"""
XEP-0114 (Jabber Component Protocol): wavebox as an external component of
an XMPP server such as Prosody.

In component mode the XMPP server does S2S (DNS, TLS, dialback) for us.  We
connect to its component port, open a ``jabber:component:accept`` stream to
our component JID (``wave.DOMAIN``), and prove the shared secret with
``<handshake>`` holding hex(SHA-1(stream id + secret)) (XEP-0114 §3).  The
server answers with an empty ``<handshake/>``, or with a stream error:
``not-authorized`` for a wrong secret, ``host-unknown`` or ``conflict`` when
the name is not configured or already taken.  From then on the stream carries
every stanza to or from the component's JIDs, and the same XMPP handlers that
serve S2S streams (disco, ping, federation) are attached to it.

:class:`ExternalComponent` offers the API of
:class:`wavebox.xmpp.server.S2SService`, so that the layers above do not
know which mode they run in: ``send(stanza)``, ``request(iq, timeout) ->
Deferred``, ``add_handler(handler)``, ``disco`` (the
:class:`~wavebox.xmpp.disco.DiscoResponder`), ``find_wave_service(domain)``.
Finding a remote server (DNS, dialback) is the XMPP server's work;
:meth:`ExternalComponent.locate_wave_service` only asks disco, through it,
and falls back to the ``wave.`` guess.

The server may restart or refuse us.  :class:`ExternalComponent` then
reconnects through Twisted's ``ClientService``, which waits as the house's
one :class:`~wavebox.retry.RetryPolicy` says (capped, jittered, exponential).
The failures are counted from the last successful handshake, not from the
last TCP connection, so that a server that accepts the TCP connection and
refuses the handshake is never retried in a fast loop.  A refused handshake
is logged as one line that says what to fix, and the next attempt waits at
least ``refused_delay`` seconds.
"""

import hashlib

from twisted.application import service
from twisted.application.internet import ClientService
from twisted.internet import defer, endpoints, error as net_error, protocol
from twisted.logger import Logger
from twisted.python import failure
from twisted.words.protocols.jabber import xmlstream
from twisted.words.xish import domish
from twisted.words.xish.xmlstream import XmlStreamFactoryMixin
from tx_xmpp.subprotocols import StreamManager

from wavebox.retry import RetryPolicy
from wavebox.xmpp.disco import DiscoResponder, find_wave_service
from wavebox.xmpp.requests import RequestTracker
from wavebox.xmpp.stanza import NS_COMPONENT, to_stream_namespace
from wavebox.xmpp.elementstream import RestrictedXmlStream
from wavebox.xmpp.limits import error_reply

UNHANDLED_REQUEST = "/iq[@type='get' or @type='set']"

# Stream error conditions that mean "this server will not take this component
# as configured": retrying soon cannot help, the operator must act.
_REFUSALS = {
    "not-authorized": "wrong component secret (--component-secret must match the "
                      "component_secret the XMPP server has for this component)",
    "host-unknown": "the XMPP server has no component of this name (configure it there, "
                    "or fix --component-jid)",
    "conflict": "another component with this name is already connected",
}


def handshake_digest(stream_id, secret):
    """The XEP-0114 handshake: lowercase hex SHA-1 of stream id + secret (UTF-8)."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


#: Reconnection: 1 s, then twice as long each time up to 2 minutes, each wait
#: shortened by up to a fifth so that many components do not retry in step.
DEFAULT_RETRY = RetryPolicy(initial=1.0, maximum=120.0, jitter=0.2)


def to_component_namespace(element):
    """A stanza (and children that inherited it) in ``jabber:component:accept``."""
    return to_stream_namespace(element, NS_COMPONENT)


class HandshakeRefused(Exception):
    """The XMPP server refused the component handshake (a stream error)."""

    def __init__(self, condition, text=None):
        Exception.__init__(self, condition, text)
        self.condition = condition
        self.text = text

    def __str__(self):
        return self.condition + (": " + self.text if self.text else "")


class HandshakeInitializer:
    """
    Sends ``<handshake>`` and waits for the server's empty ``<handshake/>``.
    Fails with :class:`HandshakeRefused` on a stream error, and with the
    connection's reason if the stream ends first, so that a refused or broken
    attempt always reaches the component's failure path.
    """

    def __init__(self, xs, secret):
        self.xmlstream = xs
        self.secret = secret
        self._deferred = None

    def initialize(self):
        xs = self.xmlstream
        self._deferred = defer.Deferred()
        xs.addOnetimeObserver("/handshake", self._accepted)
        xs.addOnetimeObserver(xmlstream.STREAM_ERROR_EVENT, self._refused)
        xs.addOnetimeObserver(xmlstream.STREAM_END_EVENT, self._ended)
        handshake = domish.Element((NS_COMPONENT, "handshake"))
        handshake.addContent(handshake_digest(xs.sid or "", self.secret))
        xs.send(handshake)
        return self._deferred

    def _done(self):
        xs = self.xmlstream
        xs.removeObserver("/handshake", self._accepted)
        xs.removeObserver(xmlstream.STREAM_ERROR_EVENT, self._refused)
        xs.removeObserver(xmlstream.STREAM_END_EVENT, self._ended)
        d, self._deferred = self._deferred, None
        return d

    def _accepted(self, element):
        d = self._done()
        if d is not None:
            # The server now routes the component JID to us.
            self.xmlstream.thisEntity = self.xmlstream.otherEntity
            d.callback(None)

    def _refused(self, reason):
        d = self._done()
        if d is not None:
            stream_error = reason.value
            condition = getattr(stream_error, "condition", None) or "undefined-condition"
            d.errback(HandshakeRefused(condition, getattr(stream_error, "text", None)))

    def _ended(self, reason):
        d = self._done()
        if d is not None:
            if not isinstance(reason, failure.Failure):
                reason = failure.Failure(net_error.ConnectionDone())
            d.errback(reason)


class ComponentAuthenticator(xmlstream.ConnectAuthenticator):
    """Opens a version-less ``jabber:component:accept`` stream to the component JID."""

    namespace = NS_COMPONENT

    def __init__(self, jid, secret):
        xmlstream.ConnectAuthenticator.__init__(self, jid)
        self.secret = secret

    def associateWithStream(self, xs):
        # XEP-0114 predates XMPP 1.0: no version attribute, no stream features.
        xs.version = (0, 0)
        xmlstream.ConnectAuthenticator.associateWithStream(self, xs)
        xs.initializers = [HandshakeInitializer(xs, self.secret)]


class ComponentStreamFactory(XmlStreamFactoryMixin, protocol.Factory):
    """Builds component streams; ``ClientService`` connects them, again and again."""

    # No DTD, entities or oversized stanzas from the XMPP server either (RFC 6120 11.1).
    protocol = RestrictedXmlStream

    def __init__(self, authenticator):
        XmlStreamFactoryMixin.__init__(self, authenticator)
        self.authenticator = authenticator


class _AttemptEndpoint:
    """
    The XMPP server's component port, as ``ClientService`` connects to it:
    each attempt is announced to the component, and the reason of one that
    fails is kept, so that the line that says when we retry also says why.
    """

    def __init__(self, endpoint, component):
        self._endpoint = endpoint
        self._component = component

    def connect(self, factory):
        self._component._attempt_started()
        d = self._endpoint.connect(factory)

        def failed(reason):
            self._component._connect_failure = reason
            return reason
        return d.addErrback(failed)


class ExternalComponent(StreamManager, service.Service):
    """
    wavebox connected to an XMPP server's component port as ``jid``.

    Handlers (``XMPPHandler``) added with :meth:`addHandler` get the stream
    when it connects and ``connectionInitialized`` after the handshake, on
    every reconnection.  :meth:`send` queues stanzas while disconnected;
    :meth:`request` tracks iq responses.  Stanzas without ``from`` are sent
    from the component JID.

    :ivar authenticated: whether the current stream has completed the handshake.
    """

    name = "xmpp-component"
    log = Logger()
    connect_timeout = 10

    def __init__(self, host, port, jid, secret, handlers=(), reactor=None,
                 retry=DEFAULT_RETRY, refused_delay=60.0, request_timeout=30.0):
        if reactor is None:
            from twisted.internet import reactor
        self.host = host
        self.port = port
        self.jid = jid
        self.domains = [jid]
        self.request_timeout = request_timeout
        self.retry = retry
        self.refused_delay = refused_delay
        self.authenticated = False
        #: Attempts that ended without a handshake since the last one that had one.
        self.failures = 0
        self.next_delay = None
        self._was_connected = False
        self._connect_failure = None
        self._lost_reason = None
        self._refusal = None
        self._stream_error = None
        factory = ComponentStreamFactory(ComponentAuthenticator(jid, secret))
        StreamManager.__init__(self, factory, reactor)
        self._requests = RequestTracker(reactor, request_timeout)
        self._client = ClientService(
            _AttemptEndpoint(endpoints.TCP4ClientEndpoint(
                reactor, host, port, timeout=self.connect_timeout), self),
            factory, retryPolicy=self._next_attempt_delay, clock=reactor)
        self.disco = DiscoResponder()
        self.add_handler(self.disco)
        for handler in handlers:
            self.add_handler(handler)

    @property
    def where(self):
        return "%s:%d" % (self.host, self.port)

    # --- the API shared with S2SService ------------------------------------------

    def is_local(self, domain):
        return bool(domain) and domain.lower() == self.jid

    def add_handler(self, handler):
        handler.setHandlerParent(self)

    def send(self, stanza):
        """
        Send a stanza (``from`` defaults to the component JID); it waits
        while the component is disconnected and goes out after the next
        handshake.
        """
        if domish.IElement.providedBy(stanza):
            to_component_namespace(stanza)
            if not stanza.getAttribute("from"):
                stanza["from"] = self.jid
        StreamManager.send(self, stanza)

    def request(self, iq, timeout=None):
        """
        Send an iq get/set (a ``domish.Element``, or a tx_xmpp ``Request`` as
        handlers pass) and fire with the answer; errback with the
        ``StanzaError`` of an error answer, ``remote-server-timeout`` when
        none came within ``timeout`` seconds, or the connection's reason
        when the stream closes first.
        """
        if domish.IElement.providedBy(iq):
            element = iq
        else:
            element = iq.toElement()
            if timeout is None:
                timeout = getattr(iq, "timeout", None)
        if element.name != "iq" or element.getAttribute("type") not in ("get", "set"):
            return defer.fail(ValueError("not an iq request"))
        if not element.getAttribute("from"):
            element["from"] = self.jid
        if not element.getAttribute("id"):
            element.addUniqueId()
        try:
            # The XMPP server checks the answers' addresses for its components.
            d = self._requests.track(element, self.request_timeout if timeout is None
                                     else timeout, check_addresses=False)
        except ValueError:
            return defer.fail()
        self.send(element)
        return d

    def _onIQResponse(self, iq):
        """StreamManager's observer of iq results and errors: the tracker answers them."""
        self._requests.answer(iq)

    def find_wave_service(self, domain, endpoints=None, sender=None):
        """Which JID of ``domain`` is a wave service (XEP-0030, through the XMPP server)."""
        return find_wave_service(self.request, domain, sender or self.jid)

    def set_endpoints(self, domain, endpoints):
        """Where peers are is the XMPP server's business in component mode."""

    def locate_wave_service(self, domain, prefix="wave"):
        """
        The wave service JID of ``domain``: its disco item with the wave
        identity, else the ``wave.`` guess (the seed's step 9).
        """
        def guess(result):
            if isinstance(result, failure.Failure):
                self.log.info("disco of {domain} failed ({why}); guessing {prefix}.{domain}",
                              domain=domain, why=result.getErrorMessage(), prefix=prefix)
                result = None
            return result or "%s.%s" % (prefix, domain)
        return self.find_wave_service(domain).addBoth(guess)

    def _unhandled_request(self, iq):
        """RFC 6120 8.4: an iq get/set nobody answered gets service-unavailable."""
        if getattr(iq, "handled", False) or self.xmlstream is None:
            return
        iq.handled = True
        self.send(error_reply(iq, "service-unavailable"))

    # --- service ---------------------------------------------------------------

    def startService(self):
        service.Service.startService(self)
        self._client.startService()

    def stopService(self):
        """Stop reconnecting and close the stream; fires once it is closed."""
        service.Service.stopService(self)
        if self.xmlstream is not None and self.authenticated:
            self.xmlstream.sendFooter()
        return self._client.stopService()

    def retry_now(self, domain):
        """Reaching other servers, and when to retry them, is the XMPP server's business."""

    # --- connection attempts ---------------------------------------------------

    def _attempt_started(self):
        self._was_connected = False
        self._connect_failure = None
        self._lost_reason = None
        self.log.debug("connecting to XMPP server {where} as component {jid}",
                       where=self.where, jid=self.jid)

    def _next_attempt_delay(self, failed_attempts):
        """
        ``ClientService``'s retry policy: an attempt (or a connection) is
        over; the wait before the next one, logged with what ended this one.
        ``ClientService`` counts from the last TCP connection; the count that
        matters here, :attr:`failures`, runs from the last handshake.
        """
        self.failures += 1
        delay = self.retry.delay(self.failures)
        refusal, self._refusal = self._refusal, None
        stream_error, self._stream_error = self._stream_error, None
        if refusal is not None:
            delay = max(delay, self.refused_delay)
            explanation = _REFUSALS.get(refusal.condition, "handshake refused")
            self.log.error(
                "XMPP server {where} refused component {jid}: {explanation} "
                "(stream error {refusal}); retrying in {delay:.0f} s",
                where=self.where, jid=self.jid, explanation=explanation,
                refusal=str(refusal), delay=delay)
        elif self._was_connected:
            lost = self._lost_reason
            why = ("stream error %s" % (stream_error,) if stream_error
                   else lost.getErrorMessage() if lost is not None else "connection closed")
            self.log.warn("lost the connection to XMPP server {where} ({why}); "
                          "reconnecting in {delay:.1f} s", where=self.where,
                          why=why, delay=delay)
        else:
            reason = self._connect_failure
            self.log.warn("cannot connect to XMPP server {where} as component {jid} "
                          "({reason}); retrying in {delay:.1f} s", where=self.where,
                          jid=self.jid, delay=delay,
                          reason=reason.getErrorMessage() if reason is not None else "?")
        self.next_delay = delay
        return delay

    # --- StreamManager events --------------------------------------------------

    def _connected(self, xs):
        self.authenticated = False
        self._was_connected = True
        xs.addObserver(xmlstream.STREAM_ERROR_EVENT, self._onStreamError)
        StreamManager._connected(self, xs)

    def _onStreamError(self, reason):
        condition = getattr(reason.value, "condition", None)
        if condition:
            self._stream_error = condition

    def _authd(self, xs):
        self.authenticated = True
        self.failures = 0
        original_send = xs.send

        def send(obj):
            if domish.IElement.providedBy(obj) and not obj.getAttribute("from"):
                obj["from"] = self.jid
            original_send(obj)

        xs.send = send
        # After every handler's observers (they are added in connectionInitialized).
        xs.addObserver(UNHANDLED_REQUEST, self._unhandled_request, priority=-100)
        self.log.info("connected to XMPP server {where} as component {jid}",
                      where=self.where, jid=self.jid)
        StreamManager._authd(self, xs)

    def initializationFailed(self, reason):
        if reason.check(HandshakeRefused):
            # Logged once, with the retry delay, when the connection closes.
            self._refusal = reason.value
            if self.xmlstream is not None and self.xmlstream.transport is not None:
                self.xmlstream.transport.loseConnection()
        elif not reason.check(net_error.ConnectionDone, net_error.ConnectionLost):
            self.log.failure("component stream initialization failed", reason)
            if self.xmlstream is not None and self.xmlstream.transport is not None:
                self.xmlstream.transport.loseConnection()

    def _disconnected(self, reason):
        self.authenticated = False
        self._lost_reason = reason if isinstance(reason, failure.Failure) else None
        StreamManager._disconnected(self, reason)
        self._requests.fail_all(self._lost_reason or failure.Failure(net_error.ConnectionDone()))
