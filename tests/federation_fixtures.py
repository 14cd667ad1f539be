"""
Test fixtures for the federation layer: an in-memory "network" joining
the federation services of several WaveServers by their wave service JIDs.

Every stanza crosses the network as XML text and is parsed again, so what
the peer sees is what the wire carries.  Delivery runs on a task.Clock:
``network.pump()`` lets everything in flight arrive.
"""

from twisted.internet import defer

from tests import pki
from tests.helpers import insert, service_jid
from wavebox.federation import stanzas
from wavebox.federation.service import FederationService
from wavebox.federation.signers import SignerInfos
from wavebox.model.delta import HashedVersion, WaveletDelta
from wavebox.model.ids import IdGenerator, ParticipantId
from wavebox.model.operations import AddParticipant, MutateDocument, RemoveParticipant
from wavebox.retry import RetryPolicy
from wavebox.server.waveserver import WaveServer
from wavebox.store.memory import MemoryStore


class MemoryNetwork:
    """Wave service JIDs to federation services; stanzas go as XML text."""

    def __init__(self, clock):
        self.clock = clock
        self.nodes = {}            # jid -> MemoryTransport
        self.down = set()          # jids that are unreachable
        self.log = []              # (from, to, stanza XML) of everything sent
        self.drop = None           # predicate(element) -> True to lose a stanza

    def transport(self, jids):
        t = MemoryTransport(self, jids)
        for jid in jids:
            self.nodes[jid] = t
        return t

    def pump(self, rounds=200):
        """Let every stanza in flight (and every answer it causes) arrive."""
        for _ in range(rounds):
            if not self.clock.getDelayedCalls():
                return
            pending = [c for c in self.clock.getDelayedCalls()
                       if c.getTime() <= self.clock.seconds()]
            if not pending:
                return
            self.clock.advance(0)

    def deliver(self, sender, xml):
        element = stanzas.element_from_xml(xml)
        to = element.getAttribute("to")
        self.log.append((element.getAttribute("from"), to, element))
        if self.drop is not None and self.drop(element):
            return
        target = self.nodes.get(to)
        if target is None or to in self.down or element.getAttribute("from") in self.down:
            if element.name == "message" and element.getAttribute("type") != "error":
                bounce = stanzas.build_error_reply(element, stanzas.FederationError(
                    "remote-server-not-found"))
                self.clock.callLater(0, sender.receive, bounce)
            elif element.name == "iq" and element.getAttribute("type") in ("get", "set"):
                bounce = stanzas.build_error_reply(element, stanzas.FederationError(
                    "remote-server-not-found"))
                self.clock.callLater(0, sender.receive, bounce)
            return
        target.receive(element)


class MemoryTransport:
    """The ITransport of one server on the MemoryNetwork."""

    def __init__(self, network, jids):
        self.network = network
        self.jids = set(jids)
        self.service = None
        self.pending = {}          # iq id -> (Deferred, timeout call)
        self.sent = []

    def send(self, element):
        xml = element.toXml()
        self.sent.append(element)
        self.network.clock.callLater(0, self.network.deliver, self, xml)

    def request(self, iq, timeout):
        d = defer.Deferred()
        call = self.network.clock.callLater(timeout, self._timed_out, iq["id"])
        self.pending[iq["id"]] = (d, call)
        self.send(iq)
        return d

    def _timed_out(self, stanza_id):
        d, _ = self.pending.pop(stanza_id)
        d.errback(defer.TimeoutError("no answer to %s" % (stanza_id,)))

    def discover(self, domain):
        jid = service_jid(domain)
        if jid in self.network.nodes and jid not in self.network.down:
            return defer.succeed(jid)
        return defer.fail(RuntimeError("no wave service for %s" % (domain,)))

    def receive(self, element):
        if element.name == "iq" and element.getAttribute("type") in ("result", "error"):
            entry = self.pending.pop(element.getAttribute("id"), None)
            if entry is not None:
                d, call = entry
                if call.active():
                    call.cancel()
                d.callback(element)
            return
        if self.service is not None:
            self.service.stanza_received(element)


class WaveNode:
    """One wave server with its memory store and federation, on a MemoryNetwork."""

    def __init__(self, network, domain, store=None, verify=True, trusted=None, **options):
        self.domain = domain
        self.network = network
        self.clock = network.clock
        self.store = store or MemoryStore()
        self.signer = pki.signer(domain)
        self.server = WaveServer(self.store, [domain], signers={domain: self.signer},
                                 clock=self.clock)
        self.signers = SignerInfos(
            self.store, own=[self.signer.signer_info],
            trusted_roots=[pki.ca()[1]] if trusted is None else trusted,
            verify_signatures=verify)
        self.transport = network.transport([service_jid(domain)])
        options.setdefault("outbox_options", {"retry": RetryPolicy(1, 8)})
        self.federation = FederationService(self.server, self.transport, service_jid,
                                            self.signers, clock=self.clock, **options)
        self.transport.service = self.federation
        self.federation.startService()
        self.ids = IdGenerator(domain, seed=domain.split(".")[0])

    def stop(self):
        self.federation.stopService()

    # -- what a console user does, in plain operations ------------------------

    def new_wave(self, user):
        """A new wavelet whose first delta adds its creator."""
        name = self.ids.new_conversation_root()
        author = ParticipantId(user)
        return self.server.submit(name, WaveletDelta(
            author, HashedVersion.zero(name), [AddParticipant(author)])
        ).addCallback(lambda _: name)

    @defer.inlineCallbacks
    def submit(self, user, name, operations, target=None):
        if target is None:
            state = yield self.server.wavelet(name)
            target = state.hashed_version
        result = yield self.server.submit(name, WaveletDelta(
            ParticipantId(user), target, operations))
        return result

    def add(self, user, name, participant, target=None):
        return self.submit(user, name, [AddParticipant(ParticipantId(participant))], target)

    def remove(self, user, name, participant, target=None):
        return self.submit(user, name, [RemoveParticipant(ParticipantId(participant))], target)

    def say(self, user, name, text, target=None, document=None):
        """A new document (a blip, as a console line makes) holding ``text``."""
        document = document or self.ids.new_blip_id()
        return self.submit(user, name, [MutateDocument(document, insert(text))], target)

    def texts(self, name):
        """``{document id: text}`` of the wavelet as this server holds it."""
        state = self.server.current_state(name)
        if state is None:
            return None
        return {doc_id: doc.text() for doc_id, doc in state.documents.items()}

    def participants(self, name):
        state = self.server.current_state(name)
        return None if state is None else sorted(p.address for p in state.participants)

    def version(self, name):
        state = self.server.current_state(name)
        return None if state is None else state.hashed_version


def element(xml):
    return stanzas.element_from_xml(xml)

