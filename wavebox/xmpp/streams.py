"""
XMPP server-to-server streams (RFC 6120) and the service that routes over them.

This module owns the sessions; :mod:`wavebox.xmpp.dialback` says what
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

The service: :class:`S2SService`
    The API for the layers above.  Every JID in ``domains`` is ours (each
    hosted domain and its wave service JID ``wave.DOMAIN``).

    ``send(stanza)``
        Send a stanza (a ``domish.Element`` with ``from`` one of our JIDs).
        To one of our own JIDs it is delivered locally; otherwise it waits
        in order, per (local, remote) domain pair, until an outgoing stream
        authenticated for that pair is ready.  Endpoints come from the
        ``resolve`` callable (SRV, then A: RFC 6120 3.2), tried in order.
        A stream already open to the same address (IP and port) is reused:
        the new pair is authenticated on it with another ``db:result``
        (XEP-0220 2.6, multiplexing), so a domain and its wave service share
        one connection.  A new target domain is multiplexed only when the
        peer advertised dialback errors (XEP-0220 2.6.2); when the peer
        answers a multiplexed ``db:result`` with anything but ``valid``, or
        closes, the pair gets a stream of its own and that address is not
        multiplexed again for a while.  ``db:verify`` questions go on any
        stream to the address.  If every endpoint fails, each waiting stanza
        returns to its sender as a stanza error (``remote-server-not-found``
        when the domain did not resolve, ``remote-server-timeout`` when it
        resolved but no authenticated stream came up: RFC 6120 8.3.3.15/16),
        and the next attempt for that pair waits a growing back-off (cut
        short when the peer authenticates a stream it opened to us: it is up).
    ``request(iq, timeout=30) -> Deferred``
        Send an ``iq`` get/set and fire with the response ``iq`` (same id,
        ``from``/``to`` swapped); errback with a ``StanzaError`` for
        ``type='error'`` (also for bounces) and with ``remote-server-timeout``
        when no answer came in time.
    ``add_handler(handler)``
        Attach a tx_xmpp ``XMPPHandler``.  Handlers see every stanza addressed
        to our JIDs, on an in-process pipe (:class:`LocalEntities`); what they
        ``send`` goes out through :meth:`S2SService.send`.  The same handlers
        could sit on an XEP-0114 component stream.  An ``iq`` get/set no
        handler marks ``handled`` is answered ``service-unavailable``.
    ``disco``
        The :class:`wavebox.xmpp.disco.DiscoResponder` (identities, features
        and items are told to it by the wiring).
    ``find_wave_service(domain, endpoints) -> Deferred[str | None]``
        The ``disco`` callable of :mod:`wavebox.xmpp.discovery`.
    ``set_endpoints(domain, endpoints)``
        Remember where a domain was found (tried before DNS for an hour).

    :func:`service_from_config` builds one from the configuration;
    :func:`make_check_disco` gives ``wavebox check`` its ``disco`` callable.
"""

import ipaddress
import uuid

from twisted.application import service
from twisted.internet import defer, protocol
from twisted.internet import error as ierror
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger
from twisted.python import failure
from twisted.words.protocols.jabber import error, jid, xmlstream
from twisted.words.protocols.jabber.xmlstream import XMPPHandlerCollection
from twisted.words.xish import domish
from twisted.words.xish.utility import XmlPipe

from wavebox.xmpp import dialback as db
from wavebox.xmpp import limits as xlimits
from wavebox.xmpp.disco import DiscoResponder, find_wave_service
from wavebox.xmpp.elementstream import (
    MAX_DEPTH, MAX_STANZA_SIZE, MAX_UNAUTHENTICATED_STANZA_SIZE, RestrictedXmlStream, XMLRefused)
from wavebox.xmpp.resolver import ResolutionTimeout
from wavebox.xmpp.tls import TLSVerdict

NS_STREAMS = xmlstream.NS_STREAMS
NS_SERVER = "jabber:server"
NS_CLIENT = "jabber:client"
NS_COMPONENT = "jabber:component:accept"
NS_TLS = xmlstream.NS_XMPP_TLS

STANZA_KINDS = ("message", "presence", "iq")

log = Logger()


class _NotShared(Exception):
    """This open stream may not carry a new domain pair; try the next one."""


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


def _describe(reason):
    value = reason.value if isinstance(reason, failure.Failure) else reason
    if isinstance(value, defer.TimeoutError):
        return "timed out"
    if isinstance(value, (RouteFailed, TLSUnavailable, db.DialbackFailed)):
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


def parse_jid(value):
    if not value:
        return None
    try:
        return jid.internJID(value)
    except (jid.InvalidFormat, UnicodeError):
        return None


def to_server_namespace(element):
    """
    Put a stanza (and children that inherited it) into ``jabber:server``:
    handlers often build ``jabber:client`` or namespace-less stanzas.
    """
    if element.uri in (None, "", NS_CLIENT, NS_COMPONENT):
        old = element.uri
        element.uri = NS_SERVER
        if element.defaultUri in (None, "", NS_CLIENT, NS_COMPONENT):
            element.defaultUri = NS_SERVER
        for child in element.elements():
            if child.uri == old:
                to_server_namespace(child)
    return element


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
                budget.wait(self)
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
                budget.wait(self)
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
        xmlstream.XmlStream.connectionLost(self, reason)
        self.authenticator.connectionLost(reason)


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

    def authenticated_changed(self):
        """Hook: a domain pair was authenticated on this stream."""

    # closing ---------------------------------------------------------------

    def fail(self, condition, text=None, logged=True):
        """Send a stream error and close (RFC 6120 4.9): logged once, here (unless not ``logged``)."""
        xs = self.xmlstream
        if xs is None or xs.closing or not self.connected:
            return
        xs.closing = True
        if logged:
            log.warn("{direction} S2S stream {peer}: stream error <{condition}/>{text}",
                     direction=self.direction, peer=self.peer, condition=condition,
                     text=(": " + text) if text else "")
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
                           % (self.peer, _describe(reason)))
        for waiters in list(self.pending_results.values()) + list(self.pending_verifies.values()):
            waiters.fail(lost)
        self.pending_results.clear()
        self.pending_verifies.clear()
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
            else:
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

    def __init__(self, server):
        _Session.__init__(self, server)
        self._timeout_call = None
        self.answered_verifies = 0

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
        if self.authenticated:
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
            dialback = features.addElement((db.NS_DIALBACK_FEATURE, "dialback"))
            dialback.addElement("errors")
        return features

    def _element(self, element):
        if element.uri == NS_TLS and element.name == "starttls":
            self._starttls()
        elif element.uri == NS_SERVER and element.name in STANZA_KINDS:
            self._stanza(element)
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

    def __init__(self, server, local, remote, address):
        _Session.__init__(self, server)
        self.local = local
        self.remote = remote
        self.address = address
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
        xs.sendHeader()

    def connect_failed(self, reason):
        self.negotiated.fail(RouteFailed("remote-server-timeout", "cannot connect to %s: %s"
                                         % (self.peer, _describe(reason))))
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
        why = _describe(reason)
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
        elif element.uri == NS_SERVER and element.name in STANZA_KINDS:
            # RFC 6120 streams are one-way; a peer answers on its own stream.
            log.debug("outgoing S2S stream {peer}: ignoring a <{name}/> sent to us",
                      peer=self.peer, name=element.name)
        else:
            log.debug("outgoing S2S stream {peer}: ignoring <{name} xmlns='{uri}'/>",
                      peer=self.peer, name=element.name, uri=element.uri)

    def _features(self, features):
        """RFC 6120 5.3.1: STARTTLS first when offered, else the stream is ready."""
        offer = features.get((db.NS_DIALBACK_FEATURE, "dialback"))
        self.dialback_errors = offer is not None and any(
            child.name == "errors" for child in offer.elements())
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

class _IncomingFactory(protocol.ServerFactory):
    noisy = False

    def __init__(self, server):
        self.server = server

    def buildProtocol(self, addr):
        xs = S2SStream(IncomingStream(self.server), self.server.max_stanza_size)
        xs.factory = self
        return xs


class _OutgoingFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, session):
        self.session = session

    def buildProtocol(self, addr):
        xs = S2SStream(self.session, self.session.server.max_stanza_size)
        xs.factory = self
        return xs

    def clientConnectionFailed(self, connector, reason):
        self.session.connect_failed(reason)


# --- local delivery ------------------------------------------------------------

class LocalEntities(XMPPHandlerCollection):
    """
    The handlers of our JIDs, attached to one end of an in-process pipe.

    Stanzas for us are dispatched on ``xmlstream`` (the pipe's source, what
    handlers observe); what handlers send arrives at the pipe's sink and goes
    to :meth:`S2SService.send`.  Handlers are tx_xmpp ``XMPPHandler``\\ s, so
    the same ones could be attached to a component stream (XEP-0114).
    """

    def __init__(self, server):
        XMPPHandlerCollection.__init__(self)
        self._server = server
        self._pipe = XmlPipe()
        self.xmlstream = self._pipe.source
        self._pipe.sink.addObserver("/*", server.send)

    def addHandler(self, handler):
        XMPPHandlerCollection.addHandler(self, handler)
        handler.makeConnection(self.xmlstream)
        handler.connectionInitialized()

    def removeHandler(self, handler):
        handler.connectionLost(None)
        XMPPHandlerCollection.removeHandler(self, handler)

    def send(self, obj):
        self.xmlstream.send(obj)

    def request(self, request):
        """tx_xmpp's ``StreamManager.request``: a ``generic.Request`` or an iq element."""
        if domish.IElement.providedBy(request):
            element = request
        else:
            element = request.toElement()
        return self._server.request(element, getattr(request, "timeout", None))

    def deliver(self, stanza):
        """Dispatch to the handlers; True when one of them handled it."""
        self._pipe.sink.send(stanza)
        # vars(): a child element named <handled/> must not count.
        return bool(vars(stanza).get("handled", False))


# --- the service -------------------------------------------------------------

def _same_family(a, b):
    """Whether one domain is the other or a subdomain of it (a domain and its wave service)."""
    a, b = a.lower(), b.lower()
    return a == b or a.endswith("." + b) or b.endswith("." + a)


class _Route:
    """Stanzas from one of our domains to one remote domain, and their stream."""

    def __init__(self, local, remote):
        self.local = local
        self.remote = remote
        self.queue = []
        self.stream = None
        self.establishing = False
        self.failures = 0
        self.retry_at = 0
        self.retry_call = None

    @property
    def ready(self):
        stream = self.stream
        return (stream is not None and stream.usable
                and (self.local, self.remote) in stream.authenticated)


class _Hint:
    def __init__(self, endpoints, expires):
        self.endpoints = list(endpoints)
        self.expires = expires


class S2SService(service.Service):
    """
    XMPP server-to-server for the JIDs in ``domains`` (see the module docstring).

    ``tls`` is a :class:`wavebox.xmpp.tls.TLSPolicy` (or None: no TLS at all,
    only allowed with ``tls_required=False``); ``resolve(domain)`` returns a
    Deferred list of endpoints (``.host``, ``.port``), SRV order first;
    ``connect(host, port, factory, timeout, bindAddress)`` defaults to
    ``reactor.connectTCP``.  ``port=None`` does not listen (``wavebox check``).
    """

    name = "s2s"

    def __init__(self, domains, secret, tls, resolve, *, tls_required=None,
                 interface="", port=5269, reactor=None, clock=None, connect=None,
                 trust_certificates=True, max_stanza_size=MAX_STANZA_SIZE,
                 max_unauthenticated_stanza_size=MAX_UNAUTHENTICATED_STANZA_SIZE,
                 max_depth=MAX_DEPTH, limits=None, stranger_share=None,
                 connect_timeout=30.0, dialback_timeout=30.0, negotiation_timeout=30.0,
                 request_timeout=30.0, backoff_initial=2.0, backoff_max=60.0,
                 hint_lifetime=3600.0, close_grace=2.0, no_multiplex_lifetime=3600.0):
        if reactor is None:
            from twisted.internet import reactor
        if not domains:
            raise ValueError("S2SService needs at least one local domain")
        self.domains = [d.lower() for d in domains]
        self.default_domain = self.domains[0]
        self.tls = tls
        self.tls_required = tls.required if tls_required is None and tls else bool(tls_required)
        if self.tls_required and tls is None:
            raise ValueError("TLS is required but no TLS policy is given")
        self.dialback = db.Dialback(secret, self, trust_certificates)
        self._resolve = resolve
        self.interface = interface
        self.port = port
        self._reactor = reactor
        self.clock = clock or reactor
        self._connect_tcp = connect or reactor.connectTCP
        self.max_stanza_size = max_stanza_size
        self.max_unauthenticated_stanza_size = max_unauthenticated_stanza_size
        self.max_depth = max_depth
        self.limits = limits or xlimits.StreamLimits()
        self.gate = xlimits.ConnectionGate(self.limits, self.clock)
        self.stranger_budget = (xlimits.TurnBudget(self.clock, stranger_share)
                                if stranger_share else None)
        self.connect_timeout = connect_timeout
        self.dialback_timeout = dialback_timeout
        self.negotiation_timeout = negotiation_timeout
        self.request_timeout = request_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.hint_lifetime = hint_lifetime
        self.close_grace = close_grace
        self.no_multiplex_lifetime = no_multiplex_lifetime

        self.local = LocalEntities(self)
        self.disco = DiscoResponder()
        self.add_handler(self.disco)
        self.incoming = set()
        self.outgoing = []
        self.routes = {}
        self._requests = {}
        self._hints = {}
        self._no_multiplex = {}     # peer (host, port) -> until when it gets a stream per pair
        self._listening = None
        self.stopping = False
        #: f(kind) for every stream that failed, kind "dialback" or "tls" (metrics).
        self.failure_observers = []

    # public API ---------------------------------------------------------------

    def is_local(self, domain):
        return bool(domain) and domain.lower() in self.domains

    def add_handler(self, handler):
        handler.setHandlerParent(self.local)

    def listening_address(self):
        """The (host, port) we listen on, or None."""
        if self._listening is None:
            return None
        address = self._listening.getHost()
        return address.host, address.port

    def set_endpoints(self, domain, endpoints):
        """Remember that ``domain`` was found at ``endpoints``; tried before DNS."""
        if endpoints:
            self._hints[domain.lower()] = _Hint(
                endpoints, self.clock.seconds() + self.hint_lifetime)

    def send(self, stanza):
        """Send a stanza from one of our JIDs to any JID (see the module docstring)."""
        to_server_namespace(stanza)
        recipient = parse_jid(stanza.getAttribute("to"))
        sender = parse_jid(stanza.getAttribute("from"))
        if sender is None or not self.is_local(sender.host):
            raise ValueError("a stanza sent through S2S needs a 'from' of ours, not %r"
                             % (stanza.getAttribute("from"),))
        if recipient is None:
            raise ValueError("a stanza needs a valid 'to', not %r" % (stanza.getAttribute("to"),))
        if self.is_local(recipient.host):
            self._deliver_local(stanza)
        else:
            self._send_remote(stanza, sender.host, recipient.host)

    def request(self, iq, timeout=None):
        """Send an iq get/set; fire with the answer iq (see the module docstring)."""
        if iq.name != "iq" or iq.getAttribute("type") not in ("get", "set"):
            return defer.fail(ValueError("not an iq request"))
        if not iq.getAttribute("from"):
            iq["from"] = self.default_domain
        if not iq.getAttribute("id"):
            iq.addUniqueId()
        key = iq["id"]
        if key in self._requests:
            return defer.fail(ValueError("an iq with id %r is already waiting" % (key,)))
        recipient, sender = parse_jid(iq.getAttribute("to")), parse_jid(iq["from"])
        if recipient is None or sender is None:
            return defer.fail(ValueError("an iq request needs a valid 'to' and 'from'"))

        def cancel(d):
            self._forget_request(key)

        d = defer.Deferred(cancel)
        timeout = self.request_timeout if timeout is None else timeout
        call = self.clock.callLater(timeout, self._request_timed_out, key)
        self._requests[key] = (d, recipient.full(), sender.full(), call)
        try:
            self.send(iq)
        except Exception:
            self._forget_request(key)
            return defer.fail()
        return d

    def find_wave_service(self, domain, endpoints=None, sender=None):
        """
        The ``disco`` callable of :mod:`wavebox.xmpp.discovery`: disco#items to
        ``domain`` at ``endpoints``, disco#info to each item and ``domain``;
        the JID that is a wave service, or None.  Fails when ``domain`` cannot
        be reached.
        """
        if endpoints:
            self.set_endpoints(domain, endpoints)

        def found_items(jids):
            # Items of a domain are usually served by the same server.
            for item in jids:
                if endpoints and item.lower() not in self._hints:
                    self.set_endpoints(item, endpoints)

        return find_wave_service(self.local.request, domain,
                                 sender or self.default_domain, found_items)

    # service -------------------------------------------------------------------

    def startService(self):
        service.Service.startService(self)
        self.stopping = False
        if self.port is not None:
            self._listening = self._reactor.listenTCP(
                self.port, _IncomingFactory(self), interface=self.interface)
            host, port = self.listening_address()
            log.info("S2S listening on {host}:{port} for {domains}",
                     host=host or "*", port=port, domains=", ".join(self.domains))

    def stopService(self):
        service.Service.stopService(self)
        self.stopping = True
        if self.stranger_budget is not None:
            self.stranger_budget.stop()
        for route in self.routes.values():
            if route.retry_call is not None and route.retry_call.active():
                route.retry_call.cancel()
            route.retry_call = None
            route.queue = []
        for d, _, _, call in list(self._requests.values()):
            d.cancel()
        waits = []
        if self._listening is not None:
            waits.append(defer.maybeDeferred(self._listening.stopListening))
            self._listening = None
        for session in list(self.incoming) + list(self.outgoing):
            waits.append(session.close())
        return defer.DeferredList(waits)

    # incoming ------------------------------------------------------------------

    def incoming_opened(self, session):
        self.incoming.add(session)

    def stream_lost(self, session):
        self.incoming.discard(session)
        if session in self.outgoing:
            self.outgoing.remove(session)
        for route in self.routes.values():
            if route.stream is session:
                route.stream = None

    def peer_authenticated(self, domains):
        """
        A peer proved ``domains`` on a stream it opened to us: it is up.  A
        route to it (or to a domain of the same family, ``b.test`` and
        ``wave.b.test``) that waits out a back-off tries again now, so that
        what waits for the peer, and our answers to it, go at once rather
        than at the next retry.
        """
        for route in list(self.routes.values()):
            if not route.retry_at or route.establishing or self.stopping:
                continue
            if not any(_same_family(route.remote, d) for d in domains):
                continue
            log.debug("S2S: {remote} opened a stream to us: ending the back-off of our "
                      "route from {local}", remote=route.remote, local=route.local)
            route.retry_at = 0
            if route.retry_call is not None and route.retry_call.active():
                route.retry_call.cancel()
            route.retry_call = None
            if route.queue:
                self._establish(route)

    def incoming_stanza(self, session, stanza):
        self._deliver_local(stanza)

    def _deliver_local(self, stanza):
        if stanza.name == "iq" and stanza.getAttribute("type") in ("result", "error"):
            if self._answer_request(stanza):
                return
        handled = self.local.deliver(stanza)
        if (not handled and stanza.name == "iq"
                and stanza.getAttribute("type") in ("get", "set")):
            self.send(xlimits.error_reply(stanza, "service-unavailable"))

    def _answer_request(self, iq):
        entry = self._requests.get(iq.getAttribute("id"))
        if entry is None:
            return False
        d, expected_from, expected_to, call = entry
        sender, recipient = parse_jid(iq.getAttribute("from")), parse_jid(iq.getAttribute("to"))
        if (sender is None or recipient is None or sender.full() != expected_from
                or recipient.full() != expected_to):
            return False
        self._forget_request(iq["id"])
        iq.handled = True
        if iq["type"] == "error":
            d.errback(error.exceptionFromStanza(iq))
        else:
            d.callback(iq)
        return True

    def _forget_request(self, key):
        entry = self._requests.pop(key, None)
        if entry is not None and entry[3].active():
            entry[3].cancel()

    def _request_timed_out(self, key):
        entry = self._requests.pop(key, None)
        if entry is not None:
            entry[0].errback(error.StanzaError(
                "remote-server-timeout", type="wait", text="no answer in time"))

    # outgoing ------------------------------------------------------------------

    def _send_remote(self, stanza, local, remote):
        route = self.routes.get((local, remote))
        if route is None:
            route = self.routes[(local, remote)] = _Route(local, remote)
        if route.ready and not route.queue:
            route.stream.send(stanza)
            return
        route.queue.append(stanza)
        self._start(route)

    def _start(self, route):
        if route.establishing or route.retry_call is not None or self.stopping:
            return
        delay = route.retry_at - self.clock.seconds()
        if delay > 0:
            route.retry_call = self.clock.callLater(delay, self._establish, route)
        else:
            self._establish(route)

    def _establish(self, route):
        route.retry_call = None
        route.establishing = True
        d = self._stream_to(route.local, route.remote, authenticate=True)
        d.addCallbacks(self._route_ready, self._route_failed,
                       callbackArgs=(route,), errbackArgs=(route,))
        d.addErrback(self._route_broken, route)

    def _route_ready(self, stream, route):
        route.establishing = False
        if route.failures:
            log.info("S2S: stream from {local} to {remote} is up, after {failures} failed "
                     "attempt(s)", local=route.local, remote=route.remote,
                     failures=route.failures)
        route.failures = 0
        route.retry_at = 0
        route.stream = stream
        # Each stanza leaves the queue only once it is sent or returned to
        # its sender: what the stream could not take stays queued, in order.
        queue, done = route.queue, 0
        try:
            while done < len(queue) and route.ready:
                stanza = queue[done]
                done += 1
                try:
                    stream.send(stanza)
                except Exception:
                    log.failure("S2S: cannot send a <{name}/> from {local} to {remote}; "
                                "returned to its sender", name=stanza.name,
                                local=route.local, remote=route.remote)
                    self._bounce_safely(stanza, "internal-server-error", "could not be sent")
        finally:
            del queue[:done]
        if route.queue:             # the stream went away while sending
            self._start(route)

    def _route_broken(self, reason, route):
        """A bug of ours while a route was set up: what waits goes back, with an error."""
        log.failure("S2S: route from {local} to {remote} failed", reason,
                    local=route.local, remote=route.remote)
        route.establishing = False
        queue, route.queue = route.queue, []
        for stanza in queue:
            self._bounce_safely(stanza, "internal-server-error", "could not be sent")

    def _bounce_safely(self, stanza, condition, text):
        try:
            self._bounce(stanza, condition, text)
        except Exception:
            log.failure("S2S: cannot return a <{name}/> to its sender", name=stanza.name)

    def _route_failed(self, reason, route):
        route.establishing = False
        if self.stopping:
            route.queue = []
            return
        value = reason.value
        condition = getattr(value, "condition", None)
        if condition not in ("remote-server-not-found", "remote-server-timeout"):
            condition = "remote-server-timeout"
        route.failures += 1
        delay = min(self.backoff_max, self.backoff_initial * 2 ** (route.failures - 1))
        route.retry_at = self.clock.seconds() + delay
        queue, route.queue = route.queue, []
        # A peer that is down fails again at every retry, and whoever sent
        # the stanzas (the federation outbox) logs its own backlog: warn
        # once per outage, then only at debug level until a stream is up.
        emit = log.warn if route.failures == 1 else log.debug
        emit("S2S: no stream from {local} to {remote}: {reason}; returning "
             "{count} stanza(s) with <{condition}/>; next attempt in {delay:.0f}s{more}",
             local=route.local, remote=route.remote, reason=_describe(reason),
             count=len(queue), condition=condition, delay=delay,
             more=" (until it works, further failures are logged at debug level)"
             if route.failures == 1 else "")
        for stanza in queue:
            self._bounce(stanza, condition, _describe(reason))

    def _bounce(self, stanza, condition, text):
        """Return an undeliverable stanza to its (local) sender, RFC 6120 8.3."""
        if stanza.getAttribute("type") in ("error", "result"):
            return
        kind = "cancel" if condition == "remote-server-not-found" else "wait"
        self._deliver_local(error.StanzaError(condition, type=kind, text=text).toResponse(stanza))

    @defer.inlineCallbacks
    def _stream_to(self, local, remote, authenticate):
        """
        A negotiated outgoing stream to ``remote`` (authenticated for
        (local, remote) when ``authenticate``): endpoints from the hint, then
        DNS; for each, an open stream to that address, else a new one.
        """
        reasons = []
        tried = set()
        hint = self._hints.get(remote)
        phases = []
        if hint is not None and hint.expires > self.clock.seconds():
            phases.append(hint.endpoints)
        resolved = False
        while True:
            if phases:
                endpoints = phases.pop(0)
            elif not resolved:
                resolved = True
                try:
                    endpoints = yield self._resolve(remote)
                except Exception as e:
                    if not reasons:
                        timed_out = isinstance(e, (ResolutionTimeout, defer.TimeoutError))
                        raise RouteFailed(
                            "remote-server-timeout" if timed_out else "remote-server-not-found",
                            "cannot resolve %s: %s" % (remote, _describe(e)))
                    break
                if not endpoints and not reasons:
                    raise RouteFailed("remote-server-not-found", "no address for %s" % (remote,))
            else:
                break
            for endpoint in endpoints:
                address = (endpoint.host, endpoint.port)
                if address in tried:
                    continue
                tried.add(address)
                for stream in self._reusable(address, local, remote, authenticate):
                    try:
                        yield self._prepared(stream, local, remote, authenticate)
                        return stream
                    except _NotShared:
                        continue
                    except Exception as e:
                        reasons.append(_describe(e))
                if self.stopping:
                    raise RouteFailed("remote-server-timeout", "shutting down")
                stream = self._connect(address, local, remote)
                try:
                    yield self._prepared(stream, local, remote, authenticate)
                    return stream
                except Exception as e:
                    reasons.append(_describe(e))
                    if not stream.negotiated.done:
                        stream.close()
        raise RouteFailed("remote-server-timeout", "; ".join(reasons) or
                          "no address for %s" % (remote,))

    def multiplexes(self, address):
        """May new domain pairs share our streams to ``address`` (host, port)?"""
        until = self._no_multiplex.get(address)
        if until is None:
            return True
        if until <= self.clock.seconds():
            del self._no_multiplex[address]
            return True
        return False

    def _reusable(self, address, local, remote, authenticate):
        """
        Open streams to ``address`` that may carry what we need, best first.

        A ``db:verify`` may go on any of them (the Authoritative Server
        answers on any stream, even one whose own dialback is pending: that
        is how we serve Prosody, which holds its verify until its stream to
        us is authenticated).  Stanzas go first on a stream opened for their
        own pair or already authenticated for it, then on any other stream
        to the same address: "if the hostname and port resolution results in
        the same IP address and port combination" the new pair may be
        multiplexed on it (XEP-0220 2.6.2), which is the seed's step 11 for
        a domain and its wave service.
        """
        streams = [s for s in self.outgoing if s.address == address]
        if not authenticate:
            return streams
        pair = (local, remote)
        own = [s for s in streams if pair in s.authenticated or (s.local, s.remote) == pair]
        if not self.multiplexes(address):
            return own
        shared = [s for s in streams if s not in own]
        # Streams that already carry stanzas before ones still negotiating.
        shared.sort(key=lambda s: not (s.usable and s.authenticated))
        return own + shared

    @defer.inlineCallbacks
    def _prepared(self, stream, local, remote, authenticate):
        yield stream.negotiated.wait().addTimeout(self.connect_timeout, self.clock)
        if not stream.usable:
            raise RouteFailed("remote-server-timeout", "stream to %s closed" % (stream.peer,))
        if not stream.covers(remote):
            raise RouteFailed("remote-server-timeout", "the certificate at %s does not name %s"
                              % (stream.peer, remote))
        if not authenticate:
            return
        pair = (local, remote)
        multiplexed = pair not in stream.authenticated and (stream.local, stream.remote) != pair
        if multiplexed and not self.multiplexes(stream.address):
            raise _NotShared()      # learnt while we waited for the negotiation
        if multiplexed and remote != stream.remote and not stream.dialback_errors:
            # XEP-0220 2.6.2: no new target domain on a stream whose peer
            # did not offer dialback errors (Prosody 0.12 does not).
            raise _NotShared()
        try:
            yield self.dialback.originate(stream, local, remote).addTimeout(
                self.dialback_timeout, self.clock)
        except Exception as e:
            if isinstance(e, db.DialbackFailed):
                self.count_failure("dialback")
            if multiplexed:
                self._multiplexing_refused(stream, pair, e)
            raise

    def _multiplexing_refused(self, stream, pair, reason):
        """
        The peer said no (or nothing, or closed) to a multiplexed
        ``db:result``: the pair falls back to a stream of its own, and new
        pairs for that address get theirs too for ``no_multiplex_lifetime``.
        """
        if self.stopping:
            return
        self._no_multiplex[stream.address] = self.clock.seconds() + self.no_multiplex_lifetime
        log.warn("S2S: {peer} did not accept {local} -> {remote} on a shared stream "
                 "({reason}); one stream per domain pair there for the next {lifetime:.0f}s",
                 peer=stream.peer, local=pair[0], remote=pair[1], reason=_describe(reason),
                 lifetime=self.no_multiplex_lifetime)

    def _connect(self, address, local, remote):
        session = OutgoingStream(self, local, remote, address)
        self.outgoing.append(session)
        host, port = address
        session.connector = self._connect_tcp(
            host, port, _OutgoingFactory(session), timeout=self.connect_timeout,
            bindAddress=self._bind_address(host))
        return session

    def _bind_address(self, host):
        """Leave from our own address when we listen on one (same family only)."""
        if not self.interface:
            return None
        try:
            ours, theirs = ipaddress.ip_address(self.interface), ipaddress.ip_address(host)
        except ValueError:
            return None
        if ours.version != theirs.version or ours.is_loopback != theirs.is_loopback:
            return None
        return (self.interface, 0)

    def negotiate(self, address, local, remote):
        """
        A new stream from ``local`` to ``remote`` at ``address`` (host, port),
        carried through STARTTLS and the check of ``remote``'s certificate
        exactly as for a route, but not authenticated: what ``wavebox check``
        tries.  Deferred[OutgoingStream]; close it when done.  Fails with the
        reason the stream did not get there.
        """
        stream = self._connect(tuple(address), local, remote)
        d = stream.negotiated.wait().addTimeout(self.connect_timeout, self.clock)

        def failed(reason):
            stream.close()
            return reason
        return d.addCallbacks(lambda _: stream, failed)

    def count_failure(self, kind):
        """A stream failed at ``kind`` ("dialback" or "tls"): tell whoever counts."""
        for observe in self.failure_observers:
            observe(kind)

    def describe_streams(self):
        """Every stream, as plain values (``wavebox status``)."""
        streams = []
        for session in list(self.incoming) + list(self.outgoing):
            streams.append({
                "direction": session.direction, "peer": session.peer,
                "tls": session.tls_active, "connected": session.connected,
                "authenticated": sorted("%s -> %s" % pair if session.direction == "outgoing"
                                        else "%s <- %s" % (pair[1], pair[0])
                                        for pair in session.authenticated)})
        return streams

    def describe_routes(self):
        """Every (local, remote) route with stanzas waiting or a back-off, as plain values."""
        now = self.clock.seconds()
        return [{"local": r.local, "remote": r.remote, "queued": len(r.queue),
                 "ready": r.ready, "failures": r.failures,
                 "retry_in": max(0.0, r.retry_at - now) if r.retry_at else None}
                for (_, _), r in sorted(self.routes.items())
                if r.queue or r.failures or not r.ready]

    def verify_with_authoritative(self, receiving, originating, stream_id, key):
        """For the Receiving Server: ask ``originating``'s Authoritative Server about a key."""
        d = self._stream_to(receiving, originating, authenticate=False)

        def ask(stream):
            return self.dialback.ask_authoritative(
                stream, receiving, originating, stream_id, key).addTimeout(
                    self.dialback_timeout, self.clock)
        return d.addCallback(ask)


def dns_resolve(resolver):
    """The ``resolve`` callable of :class:`S2SService` over an ``IResolver``: SRV, then A."""
    from wavebox.xmpp.discovery import Trace
    from wavebox.xmpp.resolver import resolve_server

    def resolve(domain):
        return resolve_server(resolver, domain, Trace(domain))
    return resolve


def service_from_config(config, resolver, port=None, reactor=None):
    """An :class:`S2SService` for our configured domains, certificate and secret."""
    from wavebox.xmpp import tls as tlsmodule
    names = local_names(config)
    return S2SService(
        names, db.secret_from_config(config), tlsmodule.policy_from_config(config, names),
        dns_resolve(resolver), interface=config.s2s_interface, port=port, reactor=reactor,
        **xlimits.options_from_config(config))


def make_check_disco(config, reactor=None):
    """
    The ``disco`` callable for ``wavebox check``: each call runs a short-lived
    S2S service with our configured identity (certificate, dialback secret),
    asks, and stops it again.

    It must listen on the configured S2S address while it asks: a peer
    answers on its *own* stream to our domain (RFC 6120 streams are one-way),
    which DNS sends to that address.  When the port is taken (the server is
    running), the answers would reach the server, not the check, so disco is
    reported unavailable and the check goes on without it.
    """
    from twisted.internet.error import CannotListenError

    from wavebox.xmpp.discovery import DiscoUnavailable
    from wavebox.xmpp.resolver import DnspythonResolver

    resolver = DnspythonResolver(config.nameserver, config.dns_timeout)

    def disco(domain, endpoints):
        if not config.domains:
            return defer.fail(DiscoUnavailable(
                "no hosted domain configured (give --config): disco needs our identity"))
        try:
            s2s = service_from_config(config, resolver, port=config.s2s_port, reactor=reactor)
        except Exception as e:
            return defer.fail(DiscoUnavailable("cannot set up S2S: %s" % (e,)))
        try:
            s2s.startService()
        except CannotListenError as e:
            s2s.stopService()
            return defer.fail(DiscoUnavailable(
                "cannot listen on %s:%d (%s): peers answer disco on their own stream to "
                "our domain, so only a check without the running server can ask"
                % (config.s2s_interface or "*", config.s2s_port, e.socketError)))
        d = s2s.find_wave_service(domain, endpoints)

        def done(result):
            return s2s.stopService().addCallback(lambda _: result)
        return d.addBoth(done)
    return disco


def local_names(config):
    """Every JID domain we answer for: each hosted domain, then its wave service JID."""
    names = []
    for domain in config.domains:
        names.append(domain)
        names.append(config.service_jid(domain))
    return names
