"""
The XMPP server-to-server service: what the layers above call.

It owns the sessions (:mod:`wavebox.xmpp.streams`), the routes that queue
stanzas for them, and the way out to a remote domain.


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

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.words.protocols.jabber.xmlstream import XMPPHandlerCollection
from twisted.words.xish import domish
from twisted.words.xish.utility import XmlPipe

from wavebox import ports
from wavebox.retry import RetryPolicy
from wavebox.xmpp import dialback as db
from wavebox.xmpp import limits as xlimits
from wavebox.xmpp import sasl
from wavebox.xmpp.disco import DiscoResponder, find_wave_service
from wavebox.xmpp.elementstream import MAX_DEPTH, MAX_STANZA_SIZE, MAX_UNAUTHENTICATED_STANZA_SIZE
from wavebox.xmpp.requests import RequestTracker
from wavebox.xmpp.routes import Routes
from wavebox.xmpp.s2sout import OutboundStreams
from wavebox.xmpp.stanza import parse_jid
from wavebox.xmpp.streams import IncomingFactory, to_server_namespace

log = Logger()


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

    def is_local(self, domain):
        """Whether ``domain`` is one of ours (handlers declare what they serve for those)."""
        return self._server.is_local(domain)

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
                 request_timeout=30.0, retry=RetryPolicy(initial=2.0, maximum=60.0),
                 hint_lifetime=3600.0, close_grace=2.0, no_multiplex_lifetime=3600.0,
                 s2s_auth="any", tls_port=None):
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
        self.authentication = sasl.S2SAuthentication(self, s2s_auth)
        if tls_port is not None and tls is None:
            raise ValueError("direct TLS needs a TLS policy")
        self.tls_port = tls_port
        self._listening_tls = None
        self.interface = interface
        self.port = port
        self._reactor = reactor
        self.clock = clock or reactor
        self.max_stanza_size = max_stanza_size
        self.max_unauthenticated_stanza_size = max_unauthenticated_stanza_size
        self.max_depth = max_depth
        self.limits = limits or xlimits.StreamLimits()
        self.gate = xlimits.ConnectionGate(self.limits, self.clock)
        self.stranger_log = xlimits.LogThrottle(self.clock)
        self.stranger_budget = (xlimits.TurnBudget(self.clock, stranger_share)
                                if stranger_share else None)
        self.connect_timeout = connect_timeout
        self.dialback_timeout = dialback_timeout
        self.negotiation_timeout = negotiation_timeout
        self.request_timeout = request_timeout
        self.retry = retry
        self.hint_lifetime = hint_lifetime
        self.close_grace = close_grace
        self.no_multiplex_lifetime = no_multiplex_lifetime

        self.local = LocalEntities(self)
        self.disco = DiscoResponder()
        self.add_handler(self.disco)
        self.incoming = set()
        self.outgoing = []
        self.routes = Routes(self)
        self.outbound = OutboundStreams(self, resolve, connect or reactor.connectTCP)
        self._requests = RequestTracker(self.clock, request_timeout)
        # f(iq) -> True when it took an answer no request of ours waits for
        # (several processes for one domain: it may be another's).
        self.unmatched_answer = None
        self._listening = None
        self.stopping = False
        #: f(kind) for every stream that failed, kind "dialback" or "tls" (metrics).
        self.failure_observers = []

    # public API ---------------------------------------------------------------

    def is_local(self, domain):
        return bool(domain) and domain.lower() in self.domains

    def add_handler(self, handler):
        handler.setHandlerParent(self.local)

    def listening_address(self, direct_tls=False):
        """The (host, port) we listen on (for direct TLS: XEP-0368), or None."""
        port = self._listening_tls if direct_tls else self._listening
        if port is None:
            return None
        address = port.getHost()
        return address.host, address.port

    def set_endpoints(self, domain, endpoints):
        """Remember that ``domain`` was found at ``endpoints``; tried before DNS."""
        self.outbound.set_endpoints(domain, endpoints)

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
            self.deliver_local(stanza)
        else:
            self.routes.send(stanza, sender.host, recipient.host)

    def request(self, iq, timeout=None):
        """Send an iq get/set; fire with the answer iq (see the module docstring)."""
        if iq.name != "iq" or iq.getAttribute("type") not in ("get", "set"):
            return defer.fail(ValueError("not an iq request"))
        if not iq.getAttribute("from"):
            iq["from"] = self.default_domain
        if not iq.getAttribute("id"):
            iq.addUniqueId()
        try:
            d = self._requests.track(iq, self.request_timeout if timeout is None else timeout)
        except ValueError:
            return defer.fail()
        try:
            self.send(iq)
        except Exception:
            self._requests.forget(iq["id"])
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
                if endpoints and item.lower() not in self.outbound.hints:
                    self.set_endpoints(item, endpoints)

        return find_wave_service(self.local.request, domain,
                                 sender or self.default_domain, found_items)

    # service -------------------------------------------------------------------

    def startService(self):
        service.Service.startService(self)
        self.stopping = False
        if self.port is not None:
            self._listening = ports.listen_tcp(
                self._reactor, self.port, IncomingFactory(self), interface=self.interface)
            host, port = self.listening_address()
            log.info("S2S listening on {host}:{port} for {domains}",
                     host=host or "*", port=port, domains=", ".join(self.domains))
        if self.tls_port is not None:
            try:
                self._listening_tls = ports.listen_tcp(
                    self._reactor, self.tls_port, IncomingFactory(self, direct_tls=True),
                    interface=self.interface)
            except Exception as e:
                e.wavebox_option = "s2s-tls"    # named in the start-up error
                raise
            host, port = self.listening_address(direct_tls=True)
            log.info("S2S listening for direct TLS (XEP-0368) on {host}:{port}",
                     host=host or "*", port=port)

    def stopService(self):
        service.Service.stopService(self)
        self.stopping = True
        if self.stranger_budget is not None:
            self.stranger_budget.stop()
        self.routes.stop()
        self._requests.cancel_all()
        waits = []
        for listening in (self._listening, self._listening_tls):
            if listening is not None:
                waits.append(defer.maybeDeferred(listening.stopListening))
        self._listening = self._listening_tls = None
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
        self.routes.stream_lost(session)

    def peer_authenticated(self, domains):
        """
        A peer proved ``domains`` on a stream it opened to us: it is up.  A
        route to it (or to a domain of the same family, ``b.test`` and
        ``wave.b.test``) that waits out a back-off tries again now, so that
        what waits for the peer, and our answers to it, go at once rather
        than at the next retry.
        """
        self.routes.end_back_off(domains, "opened a stream to us")

    def retry_now(self, domain):
        """
        A sender with a retry policy of its own (the federation outbox) has
        waited and tries ``domain`` again now: our routes to it (and to its
        family) try at once too, rather than wait out a back-off of their own
        on top, so the gap between two attempts is the one the sender logged.
        """
        self.routes.end_back_off([domain], "is being retried")

    def incoming_stanza(self, session, stanza):
        self.deliver_local(stanza)

    def deliver_local(self, stanza):
        if stanza.name == "iq" and stanza.getAttribute("type") in ("result", "error"):
            if self._requests.answer(stanza):
                return
            if self.unmatched_answer is not None and self.unmatched_answer(stanza):
                return
        handled = self.local.deliver(stanza)
        if (not handled and stanza.name == "iq"
                and stanza.getAttribute("type") in ("get", "set")):
            self.send(xlimits.error_reply(stanza, "service-unavailable"))

    def answer_request(self, iq):
        """
        An answer another process of ours received (authenticated there) for
        a request this one may have made; True when it was ours.
        """
        return self._requests.answer(iq)

    def negotiate(self, address, local, remote, direct_tls=False):
        """What ``wavebox check`` tries (see :meth:`OutboundStreams.negotiate`)."""
        return self.outbound.negotiate(address, local, remote, direct_tls)

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
        return self.routes.describe()

    def verify_with_authoritative(self, receiving, originating, stream_id, key):
        """For the Receiving Server: ask ``originating``'s Authoritative Server about a key."""
        d = self.outbound.stream_to(receiving, originating, authenticate=False)

        def ask(stream):
            return self.dialback.ask_authoritative(
                stream, receiving, originating, stream_id, key).addTimeout(
                    self.dialback_timeout, self.clock)
        return d.addCallback(ask)


def dns_resolve(resolver):
    """The ``resolve`` callable of :class:`S2SService` over an ``IResolver``: SRV, then A."""
    from wavebox.xmpp.resolver import Trace, resolve_server

    def resolve(domain):
        return resolve_server(resolver, domain, Trace(domain))
    return resolve


def service_from_config(config, resolver, port=None, reactor=None, tls_port=None):
    """
    An :class:`S2SService` for our configured domains, certificate, secret and
    authentication policy; listening on ``port`` (and ``tls_port`` for
    direct TLS) unless None.
    """
    from wavebox.xmpp import tls as tlsmodule
    names = local_names(config)
    return S2SService(
        names, db.secret_from_config(config), tlsmodule.policy_from_config(config, names),
        dns_resolve(resolver), interface=config.s2s_interface, port=port, reactor=reactor,
        s2s_auth=config.s2s_auth, tls_port=tls_port, **xlimits.options_from_config(config))


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

    from wavebox.xmpp.disco import DiscoUnavailable
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
