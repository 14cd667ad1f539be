"""
XMPP server-to-server sessions (RFC 6120): the streams, either direction.

This module owns the sessions; :mod:`wavebox.xmpp.server` is the service
that routes over them, :mod:`wavebox.xmpp.dialback` says what
dialback means and :mod:`wavebox.xmpp.tls` what a certificate proves.

Streams
    :class:`IncomingStream` is the receiving side of a stream a peer opened
    to us (RFC 6120 section 4): it answers the header with a fresh stream id,
    offers ``<starttls><required/></starttls>`` until TLS is up (section 5)
    and then ``<dialback><errors/></dialback>`` (XEP-0220 section 2.4.2), and
    accepts a stanza when its ``from`` domain was authenticated on that
    stream, by dialback or by the TLS certificate (XEP-0344), and its ``to``
    is any domain of ours (RFC 6120 8.1.1.2 and 8.1.2.2; see
    :meth:`IncomingStream._stanza` for why the pair itself is not required).
    :class:`OutgoingStream` is the originating side: header, STARTTLS,
    restart, features; after that it carries ``db:verify`` questions at once
    and stanzas for every domain pair authenticated on it.

    Stream errors (RFC 6120 4.9.3), each logged once, after which the stream
    closes and every other stream carries on:

    ======================  =================================================
    ``not-well-formed``     the peer's XML does not parse
    ``invalid-namespace``   the stream header is not ``http://etherx.jabber.org/
                            streams`` / ``jabber:server``
    ``policy-violation``    a stanza over :data:`MAX_STANZA_SIZE` bytes (4.9.3.17
                            names size limits as its example); dialback before
                            STARTTLS when TLS is required
    ``host-unknown``        a header or stanza ``to`` we do not serve
    ``not-authorized``      a stanza before any domain pair is authenticated
    ``improper-addressing`` a stanza without a valid ``to`` or ``from``
    ``invalid-from``        a stanza whose ``from`` domain is not authenticated
                            on the stream (RFC 6120 4.9.3.9)
    ``unsupported-stanza-type``  a top-level element we do not know
    ``connection-timeout``  no authentication within the negotiation timeout
    ======================  =================================================
"""

import uuid

from twisted.internet import defer, protocol
from twisted.internet import error as ierror
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.python import failure
from twisted.words.protocols.jabber import error, jid, xmlstream
from twisted.words.xish import domish

from wavebox.xmpp import dialback as db
from wavebox.xmpp import limits as xlimits
from wavebox.xmpp import sasl
from wavebox.xmpp.elementstream import (
    MAX_STANZA_SIZE, MAX_UNAUTHENTICATED_STANZA_SIZE, RestrictedXmlStream, XMLRefused)
from wavebox.xmpp.stanza import NS_SERVER, parse_jid, to_stream_namespace
from wavebox.xmpp.tls import TLSVerdict

NS_STREAMS = xmlstream.NS_STREAMS
NS_TLS = xmlstream.NS_XMPP_TLS

STANZA_KINDS = ("message", "presence", "iq")

log = Logger()


class RouteFailed(Exception):
    """No authenticated stream to a remote domain; ``condition`` is the stanza error."""

    def __init__(self, condition, reason):
        Exception.__init__(self, condition, reason)
        self.condition = condition
        self.reason = reason

    def __str__(self):
        return self.reason


class TLSUnavailable(Exception):
    """The peer would not (or could not) negotiate the TLS we require."""


def describe_reason(reason):
    value = reason.value if isinstance(reason, failure.Failure) else reason
    if isinstance(value, defer.TimeoutError):
        return "timed out"
    if isinstance(value, (RouteFailed, TLSUnavailable, db.DialbackFailed,
                          sasl.AuthenticationRefused, sasl.SASLFailed)):
        return str(value)
    if isinstance(value, ierror.ConnectError):
        # Twisted's own wording repeats itself ("Connection was refused by
        # other side: 111: Connection refused."); the OS's words suffice.
        if isinstance(value, ierror.ConnectionRefusedError):
            return "connection refused"
        if isinstance(value, (ierror.TimeoutError, ierror.TCPTimedOutError)):
            return "connection timed out"
        os_error = value.osError or (value.args[-1] if value.args else None)
        if isinstance(os_error, OSError) and os_error.strerror:
            return os_error.strerror[:1].lower() + os_error.strerror[1:]
    text = str(value)
    return "%s: %s" % (type(value).__name__, text) if text else type(value).__name__


def to_server_namespace(element):
    """A stanza (and children that inherited it) in ``jabber:server``, as S2S sends it."""
    return to_stream_namespace(element, NS_SERVER)


# --- one TCP connection ------------------------------------------------------

class S2SStream(RestrictedXmlStream):
    """
    The byte side of a stream, either direction: the XML limits (RFC 6120
    11.1 and the stanza size: :mod:`wavebox.xmpp.elementstream`, the smaller
    size until a domain is authenticated), the XML errors, what is written
    to a peer that does not read (:class:`wavebox.xmpp.limits.OutputBudget`).
    Everything else is the session's (the Twisted "authenticator", here
    :class:`IncomingStream` or :class:`OutgoingStream`).
    """

    def __init__(self, session, max_stanza_size=MAX_STANZA_SIZE):
        xmlstream.XmlStream.__init__(self, session)
        self.max_stanza_size = max_stanza_size
        self.max_unauthenticated_stanza_size = min(MAX_UNAUTHENTICATED_STANZA_SIZE,
                                                   max_stanza_size)
        self.closing = False
        self.output = None
        self.budget = None      # a TurnBudget: strangers' input waits its turn
        self._held = []

    def connectionMade(self):
        # Stanzas are small and often answer one another: Nagle's algorithm
        # would hold one back until the peer's delayed ACK (up to 40 ms).
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        xmlstream.XmlStream.connectionMade(self)

    def watch_output(self, limit):
        """Count what we write while the peer does not read; over ``limit``, drop it."""
        self.output = xlimits.OutputBudget(limit, self._output_overflow)
        self.transport.registerProducer(self.output, True)

    def _output_overflow(self, unsent):
        if self.closing:
            return
        self.closing = True
        log.warn("S2S stream {peer}: dropped: {unsent} bytes wait for a peer that does "
                 "not read (--s2s-max-pending-bytes)", peer=self.authenticator.peer,
                 unsent=unsent)
        self.transport.abortConnection()

    def sendStreamError(self, streamError):
        """
        Twisted's, but half-closing a plain TCP stream: a peer still sending
        (a stanza past the limit) would get a reset for the unread bytes, and
        with it lose our stream error unread.  What it sends meanwhile is
        discarded; the session aborts the connection after its grace period.
        """
        if not self._headerSent and not self.initiating:
            self.sendHeader()
        if self._headerSent:
            self.send(streamError.getElement())
            self.sendFooter()
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is not None and not ISSLTransport.providedBy(self.transport):
            half_close()
        else:
            self.transport.loseConnection()

    def send(self, obj):
        if domish.IElement.providedBy(obj):
            obj = obj.toXml(prefixes=self.prefixes, defaultUri=self.namespace,
                            prefixesInScope=list(self.prefixes.values()))
        if isinstance(obj, str):
            obj = obj.encode("utf-8")
        self.authenticator.active()
        if self.output is not None and not self.output.spend(len(obj)):
            return
        xmlstream.XmlStream.send(self, obj)

    def dataReceived(self, data):
        if self.closing:
            return
        self.authenticator.active()
        budget = self.budget
        if budget is None or self.authenticator.authenticated:
            self._parse(data)
        elif self._held or not budget.available:
            if not self._held:
                self.transport.pauseProducing()
                budget.later(self.resume)
            self._held.append(data)
        else:
            started = budget.timer()
            self._parse(data)
            budget.charge(budget.timer() - started)

    def resume(self):
        """The budget has time for what this stranger sent: parse it, read again."""
        budget = self.budget
        while self._held and not self.closing and self.authenticator.connected:
            started = budget.timer()
            self._parse(self._held.pop(0))
            budget.charge(budget.timer() - started)
            if self._held and not budget.available:
                budget.later(self.resume)
                return
        self._held = []
        if not self.closing and self.authenticator.connected:
            self.transport.resumeProducing()

    def _parse(self, data):
        stream = self.stream
        stream.max_stanza_size = (self.max_stanza_size if self.authenticator.authenticated
                                  else self.max_unauthenticated_stanza_size)
        stream.max_depth = self.max_depth
        if self.rawDataInFn:
            self.rawDataInFn(data)
        try:
            stream.parse(data)
        except XMLRefused as e:
            self.authenticator.fail(e.condition, str(e))
        except domish.ParserError as e:
            self.authenticator.fail("not-well-formed", str(e) or None)

    def onDocumentStart(self, rootElement):
        if self.closing:
            return
        self._guard(self.authenticator.streamStarted, rootElement)

    def onElement(self, element):
        if self.closing:
            return
        self._guard(self.authenticator.elementReceived, element)

    def onDocumentEnd(self):
        self.authenticator.streamEnded()

    def _guard(self, handler, element):
        """A bug of ours answers ``internal-server-error``, logged; never an unhandled error."""
        try:
            handler(element)
        except Exception:
            log.failure("S2S stream {peer}: error handling <{name}/>",
                        peer=self.authenticator.peer, name=element.name)
            self.authenticator.fail("internal-server-error")

    def connectionLost(self, reason):
        parser = self.stream
        xmlstream.XmlStream.connectionLost(self, reason)
        session = self.authenticator
        session.connectionLost(reason)
        # Break the cycles (parser <-> its handlers, stream <-> session,
        # stream <-> output budget), so that reference counting frees a
        # closed stream now: left to the collector, the streams of a
        # thousand strangers were freed in one collection that held the
        # reactor for over 100 ms.
        if parser is not None:
            parser.close()
        if self.output is not None:
            self.output.overflow = None
        self.output = None
        self._held = []
        session.xmlstream = None


class _Session(xmlstream.Authenticator):
    """What both directions share: addressing, TLS state, closing, stream errors."""

    direction = None

    def __init__(self, server):
        xmlstream.Authenticator.__init__(self)
        self.server = server
        self.address = None             # (host, port) of the peer
        self.tls_verdict = None
        self.authenticated = set()      # (originating, receiving) domain pairs
        self.verifying = set()          # pairs whose key the Authoritative Server is checking
        self.pending_results = {}       # pair -> Waiters (we are the Originating Server)
        self.pending_verifies = {}      # (authoritative, receiving, id) -> Waiters
        self.answered_verifies = 0      # db:verify questions we answered here
        self.closed = db.Waiters()
        self.peer_error = None          # stream error condition the peer sent us
        self.connected = False
        self._abort_call = None
        self._idle = None

    @property
    def peer(self):
        host, port = self.address or ("?", 0)
        return "%s:%s" % (host, port)

    @property
    def sid(self):
        return self.xmlstream.sid if self.xmlstream else None

    @property
    def tls_active(self):
        xs = self.xmlstream
        return bool(xs and xs.transport and ISSLTransport.providedBy(xs.transport))

    @property
    def usable(self):
        return self.connected and not self.xmlstream.closing

    def peer_proves(self, domain):
        """Whether the peer's TLS certificate proves ``domain`` (for XEP-0344)."""
        if not self.tls_active or self.server.tls is None:
            return False
        return self.server.tls.peer_proves(self.xmlstream.transport, self.tls_verdict, domain)

    def connectionMade(self):
        self.connected = True
        peer = self.xmlstream.transport.getPeer()
        self.address = (getattr(peer, "host", "?"), getattr(peer, "port", 0))
        xs = self.xmlstream
        xs.max_stanza_size = self.server.max_stanza_size
        xs.max_unauthenticated_stanza_size = min(self.server.max_unauthenticated_stanza_size,
                                                 self.server.max_stanza_size)
        xs.max_depth = self.server.max_depth
        xs.namespace = NS_SERVER
        xs.prefixes = {NS_STREAMS: "stream", db.NS_DIALBACK: "db"}
        limits = self.server.limits
        xs.watch_output(limits.max_pending_bytes)
        xs.budget = self.server.stranger_budget
        if limits.idle_timeout:
            self._idle = xlimits.IdleTimer(self.server.clock, limits.idle_timeout, self._idle_out)

    def active(self):
        """The stream carried something (either way): it is not idle."""
        if self._idle is not None:
            self._idle.touch()

    def _idle_out(self):
        """Nothing for the idle timeout: close politely; a route reopens one on demand."""
        self._idle = None
        if self.usable:
            log.info("{direction} S2S stream {peer}: closing it, idle for {seconds:.0f}s",
                     direction=self.direction, peer=self.peer,
                     seconds=self.server.limits.idle_timeout)
            self.close()

    def send(self, element):
        if self.usable:
            self.xmlstream.send(element)

    # authentication: dialback and SASL decide, the session records -----------

    def mark_authenticated(self, pair):
        """``pair`` (originating, receiving) is authenticated on this stream."""
        self.authenticated.add(pair)

    def answered_a_verify(self):
        """We answered a ``db:verify`` on this stream (a verify-only stream closes quietly)."""
        self.answered_verifies += 1

    def authenticated_changed(self):
        """Hook: a domain pair was authenticated on this stream."""

    # closing ---------------------------------------------------------------

    def fail(self, condition, text=None, logged=True):
        """Send a stream error and close (RFC 6120 4.9): logged once, here (unless not ``logged``)."""
        xs = self.xmlstream
        if xs is None or xs.closing or not self.connected:
            return
        xs.closing = True
        throttle = self.server.stranger_log
        if logged and (self.authenticated or throttle.allow()):
            left_out = 0 if self.authenticated else throttle.take_suppressed()
            log.warn("{direction} S2S stream {peer}: stream error <{condition}/>{text}{more}",
                     direction=self.direction, peer=self.peer, condition=condition,
                     text=(": " + text) if text else "",
                     more=" (and %d more streams not yet authenticated, not logged)"
                     % (left_out,) if left_out else "")
        xs.sendStreamError(error.StreamError(condition, text=text))
        self._abort_later()

    def close(self):
        """End the stream politely; fires when the connection is gone."""
        xs = self.xmlstream
        if self.connected and not xs.closing:
            xs.closing = True
            if xs._headerSent:
                xs.sendFooter()
            xs.transport.loseConnection()
            self._abort_later()
        return self.closed.wait()

    def _abort_later(self):
        """A TLS close waits for the peer's close_notify: do not wait forever."""
        if self._abort_call is None and self.connected:
            self._abort_call = self.server.clock.callLater(
                self.server.close_grace, self._abort)

    def _abort(self):
        self._abort_call = None
        if self.connected:
            self.xmlstream.transport.abortConnection()

    def streamEnded(self):
        """The peer sent ``</stream:stream>``: answer it and close (RFC 6120 4.4)."""
        self.close()

    def connectionLost(self, reason):
        self.connected = False
        if self._idle is not None:
            self._idle.stop()
            self._idle = None
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._abort_call = None
        lost = RouteFailed("remote-server-timeout", "stream to %s closed: %s"
                           % (self.peer, describe_reason(reason)))
        for waiters in list(self.pending_results.values()) + list(self.pending_verifies.values()):
            waiters.fail(lost)
        self.pending_results.clear()
        self.pending_verifies.clear()
        self.server.authentication.lost(self, lost)
        self.server.stream_lost(self)
        self.closed.fire(None)

    # elements --------------------------------------------------------------

    def elementReceived(self, element):
        if element.uri == NS_STREAMS and element.name == "error":
            self._peer_stream_error(element)
        elif element.uri == db.NS_DIALBACK and element.name in ("result", "verify"):
            self._dialback(element)
        else:
            self._element(element)

    def _peer_stream_error(self, element):
        condition = None
        text = None
        for child in element.elements():
            if child.name == "text":
                text = str(child)
            elif condition is None:
                condition = child.name
        self.peer_error = condition
        log.warn("{direction} S2S stream {peer}: the peer sent stream error "
                 "<{condition}/>{text}", direction=self.direction, peer=self.peer,
                 condition=condition, text=(": " + text) if text else "")
        self.xmlstream.closing = True
        self.xmlstream.transport.loseConnection()
        self._abort_later()

    def _dialback(self, element):
        """
        Requests (no ``type``) come on streams the peer opened; answers (with
        ``type``) on streams we opened.
        """
        answer = element.hasAttribute("type")
        dialback = self.server.dialback
        if element.name == "result":
            if answer:
                dialback.result_answered(self, element)
            elif self.server.authentication.dialback_request_allowed(self, element):
                dialback.receive_result(self, element)
        else:
            if answer:
                dialback.verify_answered(self, element)
            else:
                dialback.answer_verify(self, element)

    def _element(self, element):
        raise NotImplementedError

    def _check_header(self, root):
        """RFC 6120 4.8: the stream namespace and the content namespace."""
        if root.uri != NS_STREAMS or root.name != "stream":
            self.fail("invalid-namespace", "the stream must be <stream xmlns='%s'>"
                      % (NS_STREAMS,))
            return False
        if root.defaultUri != NS_SERVER:
            self.fail("invalid-namespace", "the content namespace must be %s" % (NS_SERVER,))
            return False
        return True


class IncomingStream(_Session):
    """The receiving side of a stream a peer opened to us."""

    direction = "incoming"

    def __init__(self, server, direct_tls=False):
        _Session.__init__(self, server)
        self._timeout_call = None
        self.direct_tls = direct_tls

    def associateWithStream(self, xs):
        _Session.associateWithStream(self, xs)
        xs.initiating = False

    def connectionMade(self):
        _Session.connectionMade(self)
        self.xmlstream.thisEntity = jid.internJID(self.server.default_domain)
        refused = self.server.gate.admit(self, self.address[0])
        if refused is not None:
            self.fail("resource-constraint", refused, logged=False)     # the gate logs
            return
        if self.direct_tls:
            # XEP-0368: TLS from the first byte, no STARTTLS.
            self.tls_verdict = TLSVerdict()
            self.xmlstream.transport.startTLS(
                self.server.tls.receiving(self.tls_verdict, direct=True))
        self.server.incoming_opened(self)
        self._timeout_call = self.server.clock.callLater(
            self.server.negotiation_timeout, self._timed_out)

    def _timed_out(self):
        """
        Nothing authenticated in time.  A peer's verify-only stream (it asked
        us db:verify questions) is closed politely; any other gets
        ``connection-timeout`` (RFC 6120 4.9.3.4).
        """
        self._timeout_call = None
        budget = self.server.stranger_budget
        if budget is None:
            self._time_out()
        else:
            # A thousand strangers that connected together time out together.
            budget.run(self._time_out)

    def _time_out(self):
        if self.authenticated or not self.connected:
            return
        if self.answered_verifies:
            log.info("incoming S2S stream {peer}: closing an idle verify stream", peer=self.peer)
            self.close()
        else:
            self.fail("connection-timeout", "no domain authenticated in %d seconds"
                      % (self.server.negotiation_timeout,))

    def authenticated_changed(self):
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        self._timeout_call = None
        self.server.gate.authenticated(self)
        if self.connected:
            self.server.peer_authenticated({originating for originating, _ in self.authenticated})

    def connectionLost(self, reason):
        self.authenticated_changed()
        self.server.gate.closed(self)
        _Session.connectionLost(self, reason)

    def streamStarted(self, root):
        """Answer the header (RFC 6120 4.2): new id every time, so also after TLS."""
        xs = self.xmlstream
        xmlstream.Authenticator.streamStarted(self, root)
        if not self._check_header(root):
            return
        to = root.getAttribute("to")
        if to:
            target = parse_jid(to)
            if target is None or not self.server.is_local(target.host):
                self.fail("host-unknown", "we do not serve %r" % (to,))
                return
            xs.thisEntity = jid.internJID(target.host)
        sender = parse_jid(root.getAttribute("from"))
        xs.otherEntity = jid.internJID(sender.host) if sender else None
        xs.sid = uuid.uuid4().hex
        verdict = self.tls_verdict
        if self.tls_active and verdict is not None and verdict.chain_ok is False:
            # The one header after TLS: say once why the certificate is no proof.
            log.info("incoming S2S stream {peer}: its TLS certificate proves no domain: "
                     "{why}; dialback decides", peer=self.peer, why=verdict.error)
        xs.sendHeader()
        if xs.version >= (1, 0):
            xs.send(self._features())

    def _features(self):
        features = domish.Element((NS_STREAMS, "features"))
        required = self.server.tls_required
        if not self.tls_active and self.server.tls is not None:
            starttls = features.addElement((NS_TLS, "starttls"))
            if required:
                starttls.addElement("required")
        if self.tls_active or not required:
            self.server.authentication.add_features(self, features)
        return features

    def _element(self, element):
        if element.uri == NS_TLS and element.name == "starttls":
            self._starttls()
        elif element.uri == NS_SERVER and element.name in STANZA_KINDS:
            self._stanza(element)
        elif element.uri == sasl.NS_SASL:
            self.server.authentication.receive(self, element)
        else:
            self.fail("unsupported-stanza-type", "<%s xmlns='%s'/>" % (element.name, element.uri))

    def _starttls(self):
        """RFC 6120 5.4.2: proceed, switch to TLS, wait for the new header."""
        xs = self.xmlstream
        if self.tls_active:
            self.fail("policy-violation", "STARTTLS on a TLS stream")
            return
        if self.server.tls is None:
            xs.send(domish.Element((NS_TLS, "failure")))
            self.close()
            return
        xs.send(domish.Element((NS_TLS, "proceed")))
        self.tls_verdict = TLSVerdict()
        xs.transport.startTLS(self.server.tls.receiving(self.tls_verdict))
        xs.reset()

    def _stanza(self, stanza):
        """
        Accept a stanza whose ``from`` domain is authenticated on this stream
        and whose ``to`` is any domain of ours.

        That is RFC 6120's rule for server-to-server stanzas: the ``from``
        domainpart must be a domain validated for the sending server on this
        stream (8.1.2.2, else ``invalid-from``), the ``to`` domainpart one we
        serve (8.1.1.2, else ``host-unknown``).  Dialback authenticates a
        domain *pair*, but what it protects is the sender's identity; the
        target half only says that we accept stanzas for that domain, and we
        accept them for all of ours.  Requiring the exact pair breaks Prosody
        0.12: it answers a stanza that came from our second domain over its
        stream authenticated for our first one (its incoming session routes
        replies by the stream's first pair), and Prosody itself checks only
        the sender's domain and that the target is one of its hosts.
        """
        if not self.authenticated:
            self.fail("not-authorized", "<%s/> before dialback" % (stanza.name,))
            return
        sender = parse_jid(stanza.getAttribute("from"))
        recipient = parse_jid(stanza.getAttribute("to"))
        if sender is None or recipient is None:
            self.fail("improper-addressing", "<%s/> needs a valid 'from' and 'to'"
                      % (stanza.name,))
            return
        if not self.server.is_local(recipient.host):
            self.fail("host-unknown", "we do not serve %s" % (recipient.host,))
            return
        if sender.host not in self.authenticated_senders:
            self.fail("invalid-from", "%s is not authenticated on this stream"
                      % (sender.host,))
            return
        self.server.incoming_stanza(self, stanza)

    @property
    def authenticated_senders(self):
        """The peer's domains authenticated on this stream, for any of ours."""
        return {originating for originating, _ in self.authenticated}


class OutgoingStream(_Session):
    """The originating side of a stream we opened to ``remote`` at ``address``."""

    direction = "outgoing"

    def __init__(self, server, local, remote, address, direct_tls=False):
        _Session.__init__(self, server)
        self.local = local
        self.remote = remote
        self.address = address
        self.direct_tls = direct_tls
        self.negotiated = db.Waiters()  # fires when TLS (if any) and features are done
        self.connector = None
        # The peer offered <dialback><errors/></dialback> (XEP-0220 2.4.2):
        # it may be sent db:result for further target domains (2.6.2).
        self.dialback_errors = False

    def connectionMade(self):
        address = self.address
        _Session.connectionMade(self)
        self.address = address
        xs = self.xmlstream
        xs.thisEntity = jid.internJID(self.local)
        xs.otherEntity = jid.internJID(self.remote)
        if self.direct_tls:
            # XEP-0368: TLS from the first byte (ALPN xmpp-server), no STARTTLS.
            self.tls_verdict = TLSVerdict()
            xs.transport.startTLS(self.server.tls.originating(
                self.remote, self.tls_verdict, direct=True))
        xs.sendHeader()

    def connect_failed(self, reason):
        self.negotiated.fail(RouteFailed("remote-server-timeout", "cannot connect to %s: %s"
                                         % (self.peer, describe_reason(reason))))
        self.server.stream_lost(self)
        self.closed.fire(None)

    def close(self):
        if not self.connected and self.connector is not None and not self.closed.done:
            try:
                self.connector.stopConnecting()
            except Exception:       # no longer connecting: connectionMade or failed
                pass
        return _Session.close(self)

    def connectionLost(self, reason):
        verdict = self.tls_verdict
        why = describe_reason(reason)
        if self.peer_error:
            why = "it sent the stream error <%s/>" % (self.peer_error,)
        if verdict is not None and verdict.error and not self.negotiated.done:
            self.server.count_failure("tls")
            why = "TLS certificate of %s refused: %s" % (self.remote, verdict.error)
            log.warn("outgoing S2S stream {peer}: {why}", peer=self.peer, why=why)
        self.negotiated.fail(RouteFailed("remote-server-timeout", "stream to %s (%s) closed: %s"
                                         % (self.remote, self.peer, why)))
        _Session.connectionLost(self, reason)

    def covers(self, domain):
        """May pairs for ``domain`` use this stream (its certificate names it)?"""
        if not self.tls_active:
            return not self.server.tls_required
        if not self.server.tls_required or domain == self.remote:
            return True     # the handshake already checked the name we dialled
        return self.peer_proves(domain)

    def streamStarted(self, root):
        xs = self.xmlstream
        xmlstream.Authenticator.streamStarted(self, root)
        if not self._check_header(root):
            return
        xs.sid = root.getAttribute("id") or ""
        if xs.version < (1, 0):
            self._features({})      # pre-1.0 peers send no features (RFC 6120 4.7.5)

    def _element(self, element):
        if element.uri == NS_STREAMS and element.name == "features":
            self._features({(c.uri, c.name): c for c in element.elements()})
        elif element.uri == NS_TLS and element.name == "proceed":
            self._proceed()
        elif element.uri == NS_TLS and element.name == "failure":
            self._tls_refused("the peer answered STARTTLS with <failure/>")
        elif element.uri == sasl.NS_SASL:
            self.server.authentication.answered(self, element)
        elif element.uri == NS_SERVER and element.name in STANZA_KINDS:
            # RFC 6120 streams are one-way; a peer answers on its own stream.
            log.debug("outgoing S2S stream {peer}: ignoring a <{name}/> sent to us",
                      peer=self.peer, name=element.name)
        else:
            log.debug("outgoing S2S stream {peer}: ignoring <{name} xmlns='{uri}'/>",
                      peer=self.peer, name=element.name, uri=element.uri)

    def _features(self, features):
        """RFC 6120 5.3.1: STARTTLS first when offered, else the stream is ready."""
        self.offered = features
        offer = features.get((db.NS_DIALBACK_FEATURE, "dialback"))
        self.dialback_errors = offer is not None and any(
            child.name == "errors" for child in offer.elements())
        if self.server.authentication.features_after_restart(self, features):
            return
        if self.tls_active or self.negotiated.done:
            self.negotiated.fire(self)
            return
        if (NS_TLS, "starttls") in features and self.server.tls is not None:
            self.xmlstream.send(domish.Element((NS_TLS, "starttls")))
        elif self.server.tls_required:
            self._tls_refused("the peer does not offer STARTTLS")
        else:
            self.negotiated.fire(self)

    def _proceed(self):
        """RFC 6120 5.4.3.3: TLS, then a new header over it (the stream restarts)."""
        xs = self.xmlstream
        self.tls_verdict = TLSVerdict()
        xs.transport.startTLS(self.server.tls.originating(self.remote, self.tls_verdict))
        xs.reset()
        xs.sendHeader()

    def _tls_refused(self, why):
        self.server.count_failure("tls")
        log.warn("outgoing S2S stream {peer}: {why}; TLS is required", peer=self.peer, why=why)
        self.negotiated.fail(TLSUnavailable(why))
        self.close()


# --- factories ---------------------------------------------------------------

class IncomingFactory(protocol.ServerFactory):
    noisy = False

    def __init__(self, server, direct_tls=False):
        self.server = server
        self.direct_tls = direct_tls

    def buildProtocol(self, addr):
        session = IncomingStream(self.server, direct_tls=self.direct_tls)
        xs = S2SStream(session, self.server.max_stanza_size)
        xs.factory = self
        return xs


class OutgoingFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, session):
        self.session = session

    def buildProtocol(self, addr):
        xs = S2SStream(self.session, self.session.server.max_stanza_size)
        xs.factory = self
        return xs

    def clientConnectionFailed(self, connector, reason):
        self.session.connect_failed(reason)
