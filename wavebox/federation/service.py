"""
The wave federation service of one server: it plugs the host, the remote and
the outbox into the wave server core, and dispatches every stanza addressed
to our wave service JIDs (wave protocol §1.2, WIAB ``XmppManager``).

It meets XMPP through a small transport (see :class:`ITransport`):
``send(element)``, ``request(iq, timeout)`` and ``discover(domain)`` out, and
:meth:`FederationService.stanza_received` in.  The S2S layer guarantees that
a stanza's ``from`` domain was authenticated on its stream; everything the
wave protocol adds on top (who may act for which domain) is checked here and
in the host and remote.
"""

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import Interface, implementer

from wavebox.federation import stanzas
from wavebox.federation.catchup import StartupCatchUp
from wavebox.federation.errors import as_federation_error
from wavebox.federation.host import FederationHost
from wavebox.federation.outbox import Outbox
from wavebox.federation.remote import DEFAULT_REQUEST_TIMEOUT, FederationRemote
from wavebox.federation.stanzas import FederationError
from wavebox.federation.trust import jid_domain
from wavebox.server.interfaces import IDeliveryStatus

log = Logger()


class ITransport(Interface):
    """What the federation layer needs from XMPP."""

    def send(element):
        """Send a stanza (its ``from`` is one of our JIDs).  May return a Deferred
        that fails when the stanza cannot be delivered."""

    def request(iq, timeout):
        """Send an iq get/set; fires with the response (a result, or an error
        stanza), or fails (StanzaError, TimeoutError)."""

    def discover(domain):
        """Fires with the JID of ``domain``'s wave service (§8.2)."""


@implementer(IDeliveryStatus)
class FederationService(service.Service):
    """
    ``server`` is the WaveServer, ``transport`` an :class:`ITransport`,
    ``service_jid(domain)`` our wave service JID for a hosted domain,
    ``signers`` the :class:`~wavebox.federation.signers.SignerInfos`.
    """

    name = "federation"

    def __init__(self, server, transport, service_jid, signers, clock=None,
                 request_timeout=DEFAULT_REQUEST_TIMEOUT, outbox_options=None,
                 history_limit=None, catch_up_options=None):
        self.server = server
        self.transport = transport
        self.service_jid = service_jid
        self.signers = signers
        self.outbox = Outbox(server.store, transport.send, transport.discover, clock=clock,
                             forget=getattr(transport, "forget", None),
                             **(outbox_options or {}))
        self.host = FederationHost(server, self.outbox, signers, service_jid,
                                   transport.discover, transport=transport,
                                   request_timeout=request_timeout)
        self.remote = FederationRemote(server, signers, transport, service_jid,
                                       request_timeout=request_timeout,
                                       history_limit=history_limit)
        self.catch_up = StartupCatchUp(server, self.remote, clock=clock,
                                       **(catch_up_options or {}))
        self.jids = {service_jid(d).lower() for d in server.domains}
        self._attached = False

    # -- life cycle ----------------------------------------------------------

    def attach(self):
        """Plug into the core: hear its deltas, feed its outbox, carry its remote submits."""
        if not self._attached:
            self.server.add_listener(self.host)
            self.server.set_outbox_source(self.host)
            self.server.remote_submitter = self.remote
            self.server.delivery = self
            self._attached = True

    # -- IDeliveryStatus: what front ends show of delivery ---------------------

    def problem(self, domain):
        return self.outbox.problem(domain)

    @defer.inlineCallbacks
    def probe(self, domain):
        """Why ``domain`` has no wave service we can find now, or None."""
        try:
            yield self.transport.discover(domain)
        except Exception as e:
            return str(getattr(e, "reason", None) or e)
        return None

    def detach(self):
        if self._attached:
            self.server.remove_listener(self.host)
            self.server.set_outbox_source(None)
            self.server.remote_submitter = None
            self.server.delivery = None
            self._attached = False

    def startService(self):
        service.Service.startService(self)
        # The store is opened when the wave server's service starts (after
        # twistd forks), so it is taken here, not in the constructor.
        self.outbox.store = self.server.store
        self.signers.store = self.server.store
        self.outbox.stopped = False
        self.attach()
        d = self.outbox.resume().addErrback(
            lambda f: log.failure("cannot resume the federation outbox", f))
        if getattr(self.server.store, "shared", False):
            self.outbox.watch()     # other processes serve this domain from the same store
        # Not waited for: it runs in the background, for seconds or more.
        self.catch_up.start()
        return d

    def stopService(self):
        self.detach()
        self.catch_up.stop()
        self.outbox.stop()
        return service.Service.stopService(self)

    # -- inbound -------------------------------------------------------------

    def stanza_received(self, element):
        """
        A stanza addressed to one of our wave service JIDs.  Never raises:
        a bad one is answered with an error and logged once.
        """
        if not self.running:
            # Not started yet (the store is not open), or stopping: a request
            # is told to come back; an update's sender retries without a receipt.
            if element.name == "iq" and element.getAttribute("type") in ("get", "set"):
                self._reply_error(element, FederationError(
                    "internal-server-error", "the wave service is not running yet"))
            return
        try:
            if element.name == "iq":
                self._iq(element)
            elif element.name == "message":
                self._message(element)
        except Exception:
            log.failure("federation could not handle a {name} from {sender}",
                        name=element.name, sender=element.getAttribute("from"))

    def _reply_error(self, stanza, error):
        if stanza.getAttribute("type") == "error":
            return      # never answer an error with an error
        self.transport.send(stanzas.build_error_reply(stanza, error))

    def _iq(self, iq):
        if iq.getAttribute("type") not in ("get", "set"):
            return      # a response: the transport matched it to our request already
        sender = iq.getAttribute("from")
        self.outbox.peer_seen_jid(jid_domain(sender))
        try:
            kind = stanzas.classify_iq(iq)
        except FederationError as e:
            log.info("bad federation request from {sender}: {text}", sender=sender, text=e.text)
            self._reply_error(iq, e)
            return
        handler = {stanzas.SUBMIT: self.host.handle_submit,
                   stanzas.HISTORY: self.host.handle_history,
                   stanzas.SIGNER_GET: self.host.handle_signer_get,
                   stanzas.SIGNER_POST: self.host.handle_signer_post}[kind]
        d = defer.maybeDeferred(handler, iq)
        d.addErrback(lambda f: stanzas.build_error_reply(iq, _refusal(f, kind, sender)))
        d.addCallback(self.transport.send)
        d.addErrback(lambda f: log.failure("cannot answer {kind} from {sender}", f,
                                           kind=kind, sender=sender))

    def _message(self, message):
        sender = message.getAttribute("from")
        try:
            kind = stanzas.classify_message(message)
        except FederationError as e:
            log.info("bad federation message from {sender}: {text}", sender=sender, text=e.text)
            self._reply_error(message, e)
            return
        if kind == stanzas.RECEIPT:
            self.outbox.on_receipt(sender, message.getAttribute("id"))
            return
        if kind == stanzas.ERROR:
            self.outbox.on_error(sender, message.getAttribute("id"), stanzas.parse_error(message))
            return
        self.outbox.peer_seen_jid(jid_domain(sender))
        if kind == stanzas.PING:
            self.transport.send(stanzas.build_receipt(message))
            return
        d = defer.maybeDeferred(self.remote.handle_update, message)

        def stored(_):
            if stanzas.wants_receipt(message):
                self.transport.send(stanzas.build_receipt(message))

        def failed(failure):
            self._reply_error(message, _refusal(failure, "wavelet update", sender))

        d.addCallbacks(stored, failed)
        d.addErrback(lambda f: log.failure("cannot answer the update from {sender}", f,
                                           sender=sender))

    # -- status --------------------------------------------------------------

    def status(self):
        """The outbox queues this process is delivering (``wavebox status`` reads the store)."""
        return self.outbox.status()


def _refusal(failure, kind, sender):
    """
    The FederationError that answers a failed request or update, logged once:
    a fault of ours with its traceback, a refusal of the peer's stanza in a line.
    """
    error = as_federation_error(failure)
    if error.condition == "internal-server-error" and not isinstance(
            failure.value, FederationError):
        log.failure("{kind} from {sender} failed", failure, kind=kind, sender=sender)
    else:
        log.info("{kind} from {sender} refused: {condition} {text}", kind=kind,
                 sender=sender, condition=error.condition, text=error.text or "")
    return error
