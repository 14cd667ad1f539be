"""
The wave server core: which wavelets we host, the containers that hold them,
the submit pipeline and the subscriptions (wave protocol section 7(a), (b),
(c), (f) and (g), seen from inside the server).

A wavelet is *hosted here* when its wavelet id's domain is one of our
domains; we are then the single writer of its history.  Any other wavelet we
know of is a copy of a wavelet hosted elsewhere, changed only by its host's
applied deltas.

A local user's delta is serialized once, signed once with the domain key
(SHA1withRSA over exactly those bytes, section 5), and then either applied
here (hosted) or handed to the federation layer's submitter (hosted
elsewhere).  Every delta that changes a wavelet here is on disk before its
submitter hears back and before any listener is told.
"""

import itertools
import queue
import threading
import time
from collections import OrderedDict

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from wavebox.model.delta import HashedVersion, SignedDelta, WaveletDelta
from wavebox.model.errors import InvalidDelta, InvalidHashedVersion, ModelError
from wavebox.model.ids import ParticipantId, WaveletName
from wavebox.model.operations import AddParticipant, RemoveParticipant
from wavebox.server import errors
from wavebox.server.container import LocalWaveletContainer, RemoteWaveletContainer
from wavebox.server.modelbridge import (
    parse_applied_delta, parse_signed_delta, serialize_delta, sign, signed_delta_bytes)

log = Logger()


class WaveServer:
    """
    The registry of wavelet containers and the entry point of every change.

    ``store`` is an :class:`wavebox.store.interface.IWaveletStore`;
    ``domains`` the hosted domains; ``signers`` maps a hosted domain to the
    :class:`wavebox.crypto.Signer` of its users' deltas (a domain without
    one leaves them unsigned, as WIAB does without federation); ``clock``
    gives the application timestamps (IReactorTime).  ``signing_pool`` (a
    :class:`SigningPool`) signs local deltas in threads, overlapping the
    work on the deltas before them; without one they are signed at once.

    Containers stay in memory while they are used: whenever a wavelet is
    used, the least recently used idle ones beyond ``max_loaded`` and those
    idle for ``idle_time`` seconds are dropped (idle: nothing being written,
    nobody waiting for it).  A dropped wavelet is loaded again from its
    snapshot on its next use.
    """

    #: How many candidates one use looks at for eviction, at most.
    EVICTION_SCAN = 8

    def __init__(self, store, domains, signers=None, clock=None, snapshot_interval=100,
                 signing_pool=None, max_loaded=None, idle_time=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self._store = None
        self.store = store
        self.domains = tuple(d.lower() for d in domains)
        self.signers = dict(signers or {})
        self.clock = clock
        self.snapshot_interval = snapshot_interval
        self._containers = OrderedDict()   # WaveletName -> container, least recently used first
        self._last_used = {}               # WaveletName -> clock seconds
        self.max_loaded = max_loaded
        self.idle_time = idle_time
        self.evicted = 0
        self._wavelet_listeners = {}       # WaveletName -> [listener]
        self._participant_listeners = {}   # ParticipantId -> [listener]
        self._listeners = []               # every wavelet (federation)
        self._outbox_source = None
        self.remote_submitter = None
        self.delivery = None               # IDeliveryStatus, from the federation layer
        self.submit_observers = []         # f(seconds) per local submit that succeeded
        self.signing_pool = signing_pool
        self._remote_order = {}            # WaveletName -> DeferredLock: submits leave in order

    # -- the store --------------------------------------------------------------

    @property
    def store(self):
        return self._store

    @store.setter
    def store(self, store):
        """The store; its ``change_observers`` tell us of other processes' deltas."""
        old = getattr(self._store, "change_observers", None)
        if old is not None and self.changed_elsewhere in old:
            old.remove(self.changed_elsewhere)
        self._store = store
        new = getattr(store, "change_observers", None)
        if new is not None:
            new.append(self.changed_elsewhere)

    def changed_elsewhere(self, uri, version):
        """
        A delta of the wavelet ``uri`` up to ``version`` is in the store,
        perhaps stored by another process on the same database: a loaded
        container that is behind catches up and tells its listeners.  (None,
        None): anything may have changed.
        """
        if uri is None:
            containers = list(self._containers.values())
        else:
            try:
                name = WaveletName.from_uri(uri)
            except ModelError:
                return
            if name not in self._containers:
                if self._participant_listeners and version is not None:
                    self._open_if_listened(name, version).addErrback(
                        lambda f: log.failure("{uri}: cannot follow the store", f, uri=uri))
                return
            containers = [self._containers[name]]
        for container in containers:
            container.changed_elsewhere(version)

    @defer.inlineCallbacks
    def _open_if_listened(self, name, version):
        """
        A wavelet not loaded here changed elsewhere: if one of its
        participants listens here (a console session), load it as it was
        before that delta and catch up, so that they hear of the delta.
        """
        info = yield self.store.wavelet_info(name.uri)
        if info is None or not any(ParticipantId(p) in self._participant_listeners
                                   for p in info.participants):
            return
        stored = yield self.store.delta_ending_at(name.uri, version)
        if stored is None:
            return
        self.container(name).open_before(stored.applied_at_version)

    # -- what is ours -----------------------------------------------------------

    def is_local(self, name):
        """True when we host the wavelet: its wavelet id's domain is ours."""
        return name.wavelet_id.domain in self.domains

    def is_local_participant(self, participant):
        return ParticipantId(participant).domain in self.domains

    def container(self, name):
        """The wavelet's container, made (not yet loaded) on first use."""
        c = self._containers.get(name)
        if c is None:
            cls = LocalWaveletContainer if self.is_local(name) else RemoteWaveletContainer
            c = self._containers[name] = cls(self, name)
        self.touch(c)
        self._evict(keep=c)
        return c

    def touch(self, container):
        """The container is in use: the last to be evicted."""
        name = container.name
        if self._containers.get(name) is container:
            self._containers.move_to_end(name)
            self._last_used[name] = self.clock.seconds()

    def _evict(self, keep):
        """Drop idle containers beyond the cap or past the idle time; never ``keep``."""
        if self.max_loaded is None and self.idle_time is None:
            return
        now = self.clock.seconds()
        for name in list(itertools.islice(self._containers, self.EVICTION_SCAN)):
            over = self.max_loaded is not None and len(self._containers) > self.max_loaded
            stale = (self.idle_time is not None
                     and now - self._last_used.get(name, now) >= self.idle_time)
            if not over and not stale:
                break          # the rest were used more recently
            c = self._containers[name]
            if c is not keep and c.idle:
                del self._containers[name]
                self._last_used.pop(name, None)
                self.evicted += 1

    def now_ms(self):
        return int(self.clock.seconds() * 1000)

    # -- reading ----------------------------------------------------------------

    def wavelet(self, name):
        """Fires with the loaded wavelet state (read it, do not change it)."""
        return self.container(name).read()

    def current_state(self, name):
        """
        The wavelet state as it is now, if loaded, else None.  Listeners read
        it while being told of an update: it is then the state that update
        made.
        """
        c = self._containers.get(name)
        return c.state if c is not None else None

    def hashed_version(self, name):
        """Fires with the wavelet's current hashed version (version 0 if unknown)."""
        return self.wavelet(name).addCallback(lambda state: state.hashed_version)

    #: Deltas read from the store at a time for a history request.
    HISTORY_PAGE = 500

    @defer.inlineCallbacks
    def history(self, name, start, end, max_bytes=None):
        """
        The applied-delta bytes of a hosted wavelet from hashed version
        ``start`` to ``end`` (exclusive), both delta boundaries with our
        hashes: what a history request is answered with (1.5, 7(g)).  Read
        from the store a page at a time; with ``max_bytes``, it stops before
        the delta that would pass that many bytes (after one delta at least),
        so a long history is answered in pieces the size of the budget.
        """
        if not self.is_local(name):
            raise errors.NotHostedHere("%s is not hosted here" % (name.uri,))
        state = yield self.wavelet(name)
        current = state.hashed_version
        if current.version == 0:
            raise errors.UnknownWavelet("%s has no history" % (name.uri,))
        if end.version > current.version:
            raise errors.FutureVersion(end.version, current.version)
        if start.version > end.version:
            raise InvalidHashedVersion("history from version %d to %d is backwards"
                                       % (start.version, end.version))
        yield self._check_boundary(name, start)
        yield self._check_boundary(name, end)
        out, total, version = [], 0, start.version
        while version < end.version:
            page = yield self.store.deltas(name.uri, version, end.version,
                                           limit=self.HISTORY_PAGE)
            if not page:
                break
            for stored in page:
                if max_bytes is not None and out and total + len(stored.applied_delta) > max_bytes:
                    return out
                out.append(stored.applied_delta)
                total += len(stored.applied_delta)
            version = page[-1].resulting_version
        return out

    @defer.inlineCallbacks
    def _check_boundary(self, name, hashed_version):
        if hashed_version.version == 0:
            ok = hashed_version == HashedVersion.zero(name)
        else:
            stored = yield self.store.delta_ending_at(name.uri, hashed_version.version)
            if stored is None:
                raise errors.NotADeltaBoundary(hashed_version.version)
            ok = stored.resulting_hash == hashed_version.history_hash
        if not ok:
            raise errors.HashMismatch(hashed_version.version)

    # -- submitting -------------------------------------------------------------

    def submit(self, name, delta):
        """
        A local user's delta (a WaveletDelta).  Fires with a SubmitResult
        once the delta is durable here, or once the host has answered when
        the wavelet is hosted elsewhere.  Fails with a specific
        :mod:`wavebox.server.errors` / model exception, nothing stored.
        """
        try:
            if not isinstance(delta, WaveletDelta):
                raise InvalidDelta("expected a WaveletDelta, not %s" % (type(delta).__name__,))
            if not self.is_local_participant(delta.author):
                raise InvalidDelta("%s is not a user of this server" % (delta.author,))
            if not delta.operations:
                raise errors.EmptyDelta("empty delta from %s" % (delta.author,))
            if not self.is_local(name) and self.remote_submitter is None:
                raise errors.NoFederation("%s is hosted at %s and federation is not running"
                                          % (name.uri, name.hosting_domain))
            data = serialize_delta(delta)
            signer = self.signers.get(delta.author.domain)
            if signer is None or self.signing_pool is None:
                signed = sign(signer, delta, data)
            else:
                signed = self.signing_pool.run(sign, signer, delta, data)
        except Exception:
            return defer.fail()
        started = time.monotonic()
        if self.is_local(name):
            # The container takes the delta's place in the wavelet's order
            # now, and waits for the signature only when its turn comes.
            d = self.container(name).submit(delta, signed)
        else:
            d = self._submit_remote(name, signed)
        if self.submit_observers:
            d.addCallback(self._submitted, started)
        return d

    def _submitted(self, result, started):
        seconds = time.monotonic() - started
        for observe in self.submit_observers:
            observe(seconds)
        return result

    def _submit_remote(self, name, signed):
        """
        Hand a signed delta to the remote submitter, in the order the
        submits came for that wavelet even when a later one is signed first.
        """
        if not isinstance(signed, defer.Deferred):
            return defer.maybeDeferred(self.remote_submitter.submit, name,
                                       signed_delta_bytes(signed))
        order = self._remote_order.get(name)
        if order is None:
            order = self._remote_order[name] = defer.DeferredLock()

        def send(signed_delta):
            # Called with the lock held, so the next one is sent after this.
            return [defer.maybeDeferred(self.remote_submitter.submit, name,
                                        signed_delta_bytes(signed_delta))]

        def sent(result):
            if not order.locked and not order.waiting:
                self._remote_order.pop(name, None)
            return result[0] if isinstance(result, list) else result
        return order.run(lambda: signed.addCallback(send)).addBoth(sent)

    def submit_signed(self, name, signed_delta, remote_domain=None):
        """
        A signed delta (ProtocolSignedDelta bytes, or a SignedDelta) for a
        wavelet we host, from a remote server when ``remote_domain`` is given
        (whose signatures the federation layer has verified).  Remote users
        may not create wavelets, and act only for their own domain (7(b)3).
        """
        try:
            if not self.is_local(name):
                raise errors.NotHostedHere("Non-local wavelet update: %s" % (name.uri,))
            signed = signed_delta
            if not isinstance(signed, SignedDelta):
                signed = parse_signed_delta(signed_delta)
            delta = signed.delta
            if delta is None:
                raise InvalidDelta("signed delta has no parsed delta")
            if remote_domain is not None:
                if delta.hashed_version.version == 0:
                    raise InvalidDelta("Remote users may not create wavelets")
                if delta.author.domain != remote_domain.lower():
                    raise InvalidDelta("%s may not submit for %s"
                                       % (remote_domain, delta.author))
        except Exception:
            return defer.fail()
        return self.container(name).submit(delta, signed)

    def apply_remote_deltas(self, name, applied_deltas):
        """
        The host's applied deltas (bytes, as received, or parsed model
        AppliedDeltas) of a wavelet hosted elsewhere, their signatures
        verified by the federation layer.  Fires with a
        :class:`wavebox.server.container.RemoteApplyResult`; its ``missing``
        says which history to fetch when some came ahead of a gap.
        """
        try:
            if self.is_local(name):
                raise errors.HostedHere("Received update to local wavelet %s" % (name.uri,))
            parsed = [parse_applied_delta(a) if isinstance(a, (bytes, bytearray)) else a
                      for a in applied_deltas]
        except Exception:
            return defer.fail()
        return self.container(name).apply_applied_deltas(parsed)

    # -- listening --------------------------------------------------------------

    def subscribe(self, name, listener):
        """Tell ``listener`` (IWaveletListener) of every durable delta of one wavelet."""
        self._wavelet_listeners.setdefault(name, []).append(listener)

    def unsubscribe(self, name, listener):
        _remove(self._wavelet_listeners, name, listener)

    def subscribe_participant(self, participant, listener):
        """
        Tell ``listener`` of every durable delta of any wavelet that has
        ``participant`` before or after the delta: a wave one was just added
        to, or removed from, reaches them at once.
        """
        self._participant_listeners.setdefault(ParticipantId(participant), []).append(listener)

    def unsubscribe_participant(self, participant, listener):
        _remove(self._participant_listeners, ParticipantId(participant), listener)

    def add_listener(self, listener):
        """Tell ``listener`` of every durable delta of every wavelet (federation)."""
        self._listeners.append(listener)

    def remove_listener(self, listener):
        if listener in self._listeners:
            self._listeners.remove(listener)

    def set_outbox_source(self, source):
        """The IOutboxSource whose payloads are stored with each delta (federation)."""
        self._outbox_source = source

    def outbox_for(self, update):
        if self._outbox_source is None:
            return ()
        return tuple(self._outbox_source.outbox_for(update))

    def notify(self, update):
        """Tell everyone who listens; a failing listener is logged, never fatal."""
        targets = list(self._listeners)
        targets += self._wavelet_listeners.get(update.wavelet_name, [])
        seen = set(map(id, targets))
        for p in update.participants_before | update.participants_after:
            for listener in self._participant_listeners.get(p, []):
                if id(listener) not in seen:
                    seen.add(id(listener))
                    targets.append(listener)
        for listener in targets:
            try:
                listener.wavelet_updated(update)
            except Exception:
                log.failure("listener {listener!r} failed on {uri} version {v}",
                            listener=listener, uri=update.wavelet_name.uri,
                            v=update.resulting_version.version)

    # -- the inbox --------------------------------------------------------------

    @defer.inlineCallbacks
    def check_local_participant(self, participant):
        """
        Before adding ``participant``: one of our domains' addresses must
        have an account (raises :class:`NoSuchAccount`); any other passes.
        """
        if participant.domain in self.domains:
            account = yield self.store.get_account(participant.address)
            if account is None:
                raise errors.NoSuchAccount("%s has no account on this server" % (participant,))

    @defer.inlineCallbacks
    def remote_participant_warning(self, participant):
        """
        After adding a participant of a remote domain: a warning to show
        when that domain has no wave service we can find now (its people
        see nothing until it does), else None.
        """
        if participant.domain in self.domains or self.delivery is None:
            return None
        reason = yield self.delivery.probe(participant.domain)
        if reason is None:
            return None
        return ("%s has no wave service we can reach now (%s); %s sees nothing of this wave "
                "until it does, and what they miss waits in our outbox"
                % (participant.domain, reason, participant))

    @defer.inlineCallbacks
    def change_participant(self, name, author, verb, address):
        """
        ``author`` adds (``verb`` "add") or removes ("remove") the participant
        ``address`` on the wavelet ``name``: the one path of every front end,
        so the console and the web client check and word it the same way.
        Only a person can be added; a stray domain participant (WIAB's
        @domain) can still be removed.  Raises InvalidParticipantId,
        :class:`ParticipantChangeRefused` (in the person's terms, not the
        model's, which would name an operation of a delta they never saw),
        NoSuchAccount, or what the submit raises.  Fires with the warning to
        show after an add of a remote participant whose domain we cannot
        reach now, else None.
        """
        if verb not in ("add", "remove"):
            raise ValueError("verb must be add or remove, not %r" % (verb,))
        participant = (ParticipantId.user if verb == "add" else ParticipantId)(address)
        state = self.current_state(name)
        if state is None:
            state = yield self.wavelet(name)
        present = participant in state.participants
        if verb == "add" and present:
            raise errors.ParticipantChangeRefused("%s is already a participant" % (participant,))
        if verb == "remove" and not present:
            raise errors.ParticipantChangeRefused(
                "%s is not a participant of this wave" % (participant,))
        if verb == "add":
            yield self.check_local_participant(participant)
        operation = (AddParticipant if verb == "add" else RemoveParticipant)(participant)
        target = yield self.hashed_version(name)
        yield self.submit(name, WaveletDelta(ParticipantId(author), target, [operation]))
        if verb == "add":
            warning = yield self.remote_participant_warning(participant)
            return warning
        return None

    def delivery_problems(self, participants):
        """
        ``{participant: DeliveryProblem}`` for the participants of remote
        domains that what we send does not reach (front ends mark them
        "pending").  Empty without federation.
        """
        if self.delivery is None:
            return {}
        problems = {}
        for participant in participants:
            domain = participant.domain
            if domain in self.domains:
                continue
            problem = self.delivery.problem(domain)
            if problem is not None:
                problems[participant] = problem
        return problems

    def inbox(self, participant):
        """Fires with the WaveletInfos of the participant's wavelets, newest first."""
        return self.store.wavelets_of(ParticipantId(participant).address)

    @defer.inlineCallbacks
    def mark_read(self, participant, name):
        """Record that ``participant`` has read the wavelet up to its current version."""
        version = yield self.hashed_version(name)
        yield self.store.mark_read(ParticipantId(participant).address, name.uri, version.version)
        return version


class SigningPool:
    """
    A few threads that sign deltas (SHA1withRSA).  The RSA work releases the
    GIL, so a delta is signed while the reactor thread works on the deltas
    before it and on everything else.  Results reach the reactor in batches:
    one wake-up carries every signature finished since the last one.  Start
    it before use, stop it at the end.
    """

    def __init__(self, threads=2, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.size = threads
        self._jobs = queue.SimpleQueue()
        self._done = []
        self._done_lock = threading.Lock()
        self._delivering = False
        self._threads = []

    def start(self):
        for i in range(self.size):
            t = threading.Thread(target=self._work, name="wavebox-sign-%d" % (i,), daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self):
        """Let the threads finish what is queued, then end them."""
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join()
        self._threads = []

    def run(self, f, *args):
        """Fires, in the reactor thread, with ``f(*args)`` called in one of the threads."""
        d = defer.Deferred()
        self._jobs.put((d, f, args))
        return d

    def _work(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            d, f, args = job
            try:
                outcome = (True, f(*args))
            except BaseException:
                outcome = (False, Failure())
            with self._done_lock:
                self._done.append((d, outcome))
                wake, self._delivering = not self._delivering, True
            if wake:
                self.reactor.callFromThread(self._deliver)

    def _deliver(self):
        with self._done_lock:
            done, self._done, self._delivering = self._done, [], False
        for d, (ok, value) in done:
            if ok:
                d.callback(value)
            else:
                d.errback(value)


def _remove(table, key, listener):
    listeners = table.get(key)
    if listeners and listener in listeners:
        listeners.remove(listener)
        if not listeners:
            del table[key]
