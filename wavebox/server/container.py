"""
Wavelet containers: the in-memory copy of one wavelet and the only code that
changes it (wave protocol sections 4, 6.6 and 7).

A container is made at once and loaded lazily, on its first use, from the
store: the latest snapshot, then the stored deltas after it replayed through
the same transform the submit path uses.  Every use -- a submit, a remote
update, a read -- runs under the container's :class:`DeferredLock`, so one
wavelet changes one delta at a time while different wavelets go their own way.

:class:`LocalWaveletContainer` holds a wavelet we host and is the one writer
of its history: it validates, transforms, applies, hashes, stores and only
then answers and tells the listeners.  :class:`RemoteWaveletContainer` holds
our copy of a wavelet hosted elsewhere: it accepts the host's applied deltas
in order, checks that each one extends our hash chain, re-runs the transform
(the applied delta carries the *original* operations, 6.6) and stores them.

In memory each container keeps the transformed history from its snapshot on
(:class:`TransformedDelta`, the operations as they changed the wavelet), which
is what later submissions are transformed against.  Older history is read
back from the store only when a delta targets a version before it.

The lock covers the work on the wavelet in memory -- transform, apply, hash,
ask the store to append -- but not the wait for the disk: the next delta is
transformed against the ones still being written (``head``), and the store
writes them in order, many in one sync (group commit).  Readers, listeners
and submitters see a delta only once it is durable (``state``), in version
order; a delta whose write fails takes the ones written after it down too
(the store refuses them: they do not extend its history), and the in-memory
copy is dropped, to be loaded again from the store.

Several processes on one database (PostgreSQL).  The database decides the
writer of each version (:meth:`IWaveletStore.append_delta` is a
compare-and-set): a delta refused because another process appended first
rewinds the container to its durable state, which then *catches up* -- reads
the other process's deltas from the store, applies them and tells the
listeners, as if they had been made here -- and the submit is transformed
again against them and retried.  The store's ``change_observers`` tell the
server of every delta committed anywhere; a loaded container that is behind
catches up at once, so that console sessions here see lines typed there.
"""

from twisted.internet import defer
from twisted.logger import Logger

from wavebox.model.delta import TransformedDelta
from wavebox.model.errors import InvalidDelta, InvalidHashedVersion, ModelError, NotAParticipant
from wavebox.model.operations import AddParticipant, transform_delta
from wavebox.server import errors
from wavebox.server.interfaces import SubmitResult, WaveletUpdate
from wavebox.server.modelbridge import (
    build_applied_delta, empty_state, parse_applied_delta, participants_of,
    snapshot_encoder, state_from_snapshot)
from wavebox.store.interface import StoreClosed, StoreConflict, StoredDelta

log = Logger()


class WaveletContainer:
    """
    What local and remote wavelets share: lazy loading, the lock, the
    in-memory history and the write-then-tell step.
    """

    hosted = None  # set by the subclasses

    def __init__(self, server, name):
        self.server = server
        self.name = name
        self.uri = name.uri
        self.lock = defer.DeferredLock()
        self.state = None          # the durable wavelet state once loaded (readers see this)
        self.head = None           # the state with the deltas still being written, too
        self.corrupted = None      # the reason, once the history is found broken
        self._generation = 0       # moves on each time the in-memory copy is dropped
        self._settled = None       # fires once the last delta asked of the store is settled
        self._history = []         # TransformedDelta from self._base on, in order
        self._index = {}           # applied_at version -> index in self._history
        self._base = None          # HashedVersion where self._history starts
        self._since_snapshot = 0   # deltas since the latest snapshot...
        self._bytes_since = 0      # ...and their applied-delta bytes
        self._snapshot_size = 0    # bytes of the latest snapshot
        self._encoder = None       # keeps the documents' JSON between snapshots
        self._last_timestamp = 0
        self.behind = False        # another process stored deltas we have not read yet
        self._load_end = None      # load only the history before this version, then catch up

    # -- life cycle ---------------------------------------------------------

    @property
    def loaded(self):
        return self.head is not None

    @property
    def writing(self):
        """True while some delta asked of the store is not yet durable."""
        return self.head is not self.state

    @property
    def idle(self):
        """Nothing being written, nobody using or waiting for it: it may be dropped."""
        return not (self.lock.locked or self.lock.waiting or self.writing
                    or self._settled is not None)

    @property
    def hashed_version(self):
        return self.state.hashed_version

    def run(self, f, *args, **kwargs):
        """Run ``f`` under the lock, with the wavelet loaded first."""
        return self.lock.run(self._loaded_then, f, *args, **kwargs)

    @defer.inlineCallbacks
    def _loaded_then(self, f, *args, **kwargs):
        if self.corrupted:
            raise errors.WaveletCorrupted("%s: %s" % (self.uri, self.corrupted))
        if not self.loaded or (self.behind and not self.writing):
            try:
                if not self.loaded:
                    end, self._load_end = self._load_end, None
                    self.behind = end is not None
                    yield self._load(end)
                if self.behind:
                    yield self._catch_up()
            except errors.WaveletCorrupted as e:
                self.corrupted = str(e)
                self._forget()
                log.error("wavelet {uri} is corrupted: {why}", uri=self.uri, why=e)
                raise
            except BaseException:
                self._forget()
                raise
        result = yield f(*args, **kwargs)
        return result

    def _rewind(self):
        """
        Another process appended first: drop what is still being written (the
        store refuses it all) and catch up with the store on the next use.
        """
        self._generation += 1
        self.head = self.state
        version = self.state.hashed_version.version
        while self._history and self._history[-1].resulting_version.version > version:
            del self._index[self._history.pop().applied_at.version]
        self.behind = True

    @defer.inlineCallbacks
    def _catch_up(self):
        """
        Read the deltas other processes stored after our durable state, apply
        them and tell the listeners (under the lock, nothing being written).
        """
        self.behind = False
        stored = yield self.server.store.deltas(self.uri, self.state.hashed_version.version)
        for s in stored:
            applied = self._parse_stored(s)
            if applied.applied_at != self.state.hashed_version:
                raise errors.WaveletCorrupted(
                    "stored delta at version %d does not extend version %d"
                    % (applied.applied_at.version, self.state.hashed_version.version))
            transformed = yield self._retransform(applied)
            before = frozenset(participants_of(self.state))
            state = self.state.copy()
            state.apply_delta(transformed)
            self.state = self.head = state
            self._record(transformed)
            self._since_snapshot += 1
            self._bytes_since += len(applied.applied_delta_bytes)
            self.server.notify(WaveletUpdate(self.name, applied, transformed, before,
                                             frozenset(participants_of(state)), self.hosted))

    def changed_elsewhere(self, version):
        """
        A delta up to ``version`` (None: unknown) was stored by another
        process: catch up now if we are behind it, and nothing is being
        written (a write in flight is refused and catches up itself).
        """
        if not self.loaded or self.corrupted:
            return
        if version is not None and version <= self.head.hashed_version.version:
            return
        self.behind = True
        if not self.writing:
            self.run(lambda: None).addErrback(self._catch_up_failed)

    def open_before(self, version):
        """
        Load the wavelet as it was at ``version`` (a delta boundary), then
        catch up, telling the listeners of every delta after it: another
        process just stored them, and someone here listens.
        """
        if self.loaded or self.corrupted:
            self.changed_elsewhere(None)
            return
        self._load_end = version
        self.run(lambda: None).addErrback(self._catch_up_failed)

    def _catch_up_failed(self, failure):
        if not failure.check(StoreClosed):      # shutting down: nothing to catch up for
            log.failure("{uri}: catching up with the store failed", failure, uri=self.uri)

    def _forget(self):
        """Drop the in-memory copy; the next use loads it again from the store."""
        self._generation += 1
        self.state = self.head = None
        self._encoder = None
        self._history = []
        self._index = {}
        self._base = None

    @defer.inlineCallbacks
    def _load(self, end=None):
        self._forget()
        store = self.server.store
        snapshot = yield store.latest_snapshot(self.uri)
        state = None
        self._snapshot_size = 0
        if snapshot is not None and end is not None and snapshot[0] > end:
            snapshot = None         # after the version asked for: replay from the start
        if snapshot is not None:
            version, blob = snapshot
            self._snapshot_size = len(blob)
            try:
                state = state_from_snapshot(self.name, blob)
                if state.hashed_version.version != version:
                    raise ModelError("it holds version %d, not %d"
                                     % (state.hashed_version.version, version))
            except ModelError as e:
                # A snapshot only saves time: replay the whole history instead.
                log.warn("ignoring the snapshot of {uri} at version {v}: {why}",
                         uri=self.uri, v=version, why=e)
                state = None
        if state is None:
            state = empty_state(self.name)
        self.state = self.head = state
        self._base = state.hashed_version
        self._last_timestamp = state.last_modified_time or 0
        tail = yield store.deltas(self.uri, state.hashed_version.version, end)
        for stored in tail:
            applied = self._parse_stored(stored)
            if applied.applied_at != self.head.hashed_version:
                raise errors.WaveletCorrupted(
                    "stored delta at version %d does not extend version %d"
                    % (applied.applied_at.version, self.head.hashed_version.version))
            transformed = yield self._retransform(applied)
            self._apply(transformed)
        self._since_snapshot = len(tail)
        self._bytes_since = sum(len(s.applied_delta) for s in tail)

    def _parse_stored(self, stored):
        """A StoredDelta as the model's AppliedDelta, its hash chain checked."""
        try:
            applied = parse_applied_delta(stored.applied_delta)
        except ModelError as e:
            raise errors.WaveletCorrupted(
                "stored delta at version %d does not parse: %s"
                % (stored.applied_at_version, e))
        resulting = applied.resulting_version
        if (applied.applied_at.version != stored.applied_at_version
                or resulting.version != stored.resulting_version
                or resulting.history_hash != stored.resulting_hash):
            raise errors.WaveletCorrupted(
                "stored delta at version %d does not hash to the stored resulting version"
                % (stored.applied_at_version,))
        return applied

    # -- history ------------------------------------------------------------

    def _apply(self, transformed):
        """Apply a stored, transformed delta to the state and remember it in the history."""
        self.head.apply_delta(transformed)
        self.state = self.head
        self._record(transformed)

    def _record(self, transformed):
        self._index[transformed.applied_at.version] = len(self._history)
        self._history.append(transformed)
        self._last_timestamp = max(self._last_timestamp, transformed.application_timestamp)

    @defer.inlineCallbacks
    def history_since(self, version):
        """
        The TransformedDeltas from ``version`` (a delta boundary) to the
        head (with the deltas still being written).  Reads older history
        back from the store when ``version`` is before what is in memory.
        """
        current = self.head.hashed_version
        if version == current.version:
            return []
        if version > current.version:
            raise errors.FutureVersion(version, current.version)
        if version < self._base.version:
            yield self._extend_back(version)
        i = self._index.get(version)
        if i is None:
            raise errors.NotADeltaBoundary(version)
        return self._history[i:]

    @defer.inlineCallbacks
    def _extend_back(self, version):
        """
        Load the stored deltas from ``version`` up to the in-memory history
        and work out how each changed the wavelet.  A delta that was made
        against an even older version needs the history from there, so the
        range grows until every delta's target is inside it.
        """
        store = self.server.store
        end = self._base.version
        start = version
        loaded = []          # AppliedDelta, oldest first, from `start` to `end`
        while True:
            stored = yield store.deltas(self.uri, start, loaded[0].applied_at.version
                                        if loaded else end)
            if not stored or stored[0].applied_at_version != start:
                raise errors.NotADeltaBoundary(start)
            chunk = [self._parse_stored(s) for s in stored]
            loaded = chunk + loaded
            lowest = min(a.delta.hashed_version.version for a in loaded)
            if lowest >= start:
                break
            start = lowest
        for earlier, later in zip(loaded, loaded[1:]):
            if earlier.resulting_version != later.applied_at:
                raise errors.WaveletCorrupted(
                    "stored history has a gap at version %d" % (earlier.resulting_version.version,))
        if loaded[-1].resulting_version != self._base:
            raise errors.WaveletCorrupted(
                "stored history does not lead to version %d" % (self._base.version,))
        older, index = [], {}
        for applied in loaded:
            target = applied.delta.hashed_version.version
            since = older[index[target]:] if target in index else None
            if since is None and target != applied.applied_at.version:
                raise errors.WaveletCorrupted(
                    "stored delta at version %d targets version %d, not a boundary"
                    % (applied.applied_at.version, target))
            transformed = self._transform_applied(applied, since or [])
            index[applied.applied_at.version] = len(older)
            older.append(transformed)
        self._history = older + self._history
        self._index = {t.applied_at.version: i for i, t in enumerate(self._history)}
        self._base = self._history[0].applied_at

    @defer.inlineCallbacks
    def _retransform(self, applied):
        """
        How an applied delta at our current version (original operations plus
        applied-at) changes the wavelet here: its transform against our
        history from its target version (6.6, 7(c)3).
        """
        target = applied.delta.hashed_version
        if target.version > applied.applied_at.version:
            raise InvalidDelta("delta targets version %d, after the version %d it was applied at"
                               % (target.version, applied.applied_at.version))
        try:
            history = yield self.history_since(target.version)
        except errors.NotADeltaBoundary:
            raise InvalidHashedVersion(
                "delta targets version %d, not a delta boundary here" % (target.version,))
        return self._transform_applied(applied, history)

    @staticmethod
    def _transform_applied(applied, history):
        """Re-run the transform of an applied delta against ``history`` (6.6, 7(c)3)."""
        result = transform_delta(applied.delta, history, applied.applied_at)
        if result.is_duplicate:
            raise errors.OperationCountMismatch(
                "delta applied at version %d repeats an earlier delta"
                % (applied.applied_at.version,))
        if len(result.operations) != applied.operations_applied:
            raise errors.OperationCountMismatch(
                "delta applied at version %d: transformed to %d operation(s), "
                "its host applied %d" % (applied.applied_at.version, len(result.operations),
                                         applied.operations_applied))
        return TransformedDelta.from_applied(applied, result.operations)

    # -- write, then tell ---------------------------------------------------

    def _commit(self, applied, transformed):
        """
        Apply to the head and ask the store to append; called under the lock.
        Returns a :class:`_Written` whose ``durable`` Deferred fires with the
        WaveletUpdate once the store has the delta on disk and everyone was
        told -- wait for it *outside* the lock, so that the next delta's work
        overlaps this one's write.  If the store fails, the in-memory copy is
        dropped (the next use reloads it from the store), nobody hears of the
        delta, and ``durable`` fails.
        """
        listed = participants_of(self.head)
        # Apply to a copy: readers see only durable states, and a delta the
        # store refuses leaves no trace.  (Documents are immutable, so the
        # copy costs a dict of references.)
        state = self.head.copy()
        state.apply_delta(transformed)    # raises if it does not fit
        listed_after = participants_of(state)
        before, after = frozenset(listed), frozenset(listed_after)
        update = WaveletUpdate(self.name, applied, transformed, before, after, self.hosted)
        outbox = self.server.outbox_for(update)
        stored = StoredDelta(
            applied_at_version=applied.applied_at.version,
            resulting_version=transformed.resulting_version.version,
            resulting_hash=transformed.resulting_version.history_hash,
            applied_delta=applied.applied_delta_bytes,
            author=transformed.author.address,
            timestamp_ms=transformed.application_timestamp)
        # The store's participant rows change only with the participants: a
        # line typed into a wave of twenty rewrote twenty rows per delta.
        written = self.server.store.append_delta(
            self.uri, stored, participants=None if listed_after == listed
            else [p.address for p in listed_after],
            hosted=self.hosted, outbox=outbox,
            applied_at_hash=applied.applied_at.history_hash if applied.applied_at.version
            else None)
        self.head = state
        self._record(transformed)
        previous, self._settled = self._settled, defer.Deferred()
        durable = self._settle(previous, written, self._settled, self._generation, state,
                               update)
        return _Written(durable)

    @defer.inlineCallbacks
    def _settle(self, previous, written, settled, generation, state, update):
        """
        Once the deltas asked for before this one are settled and this one is
        durable: it becomes the state readers see, and everyone is told.
        """
        try:
            if previous is not None:
                yield previous
            try:
                outbox_ids = yield written
            except BaseException as e:
                # Whether the write reached the disk is unknown: believe the
                # store.  The deltas after this one are refused by it too.
                if generation == self._generation:
                    if isinstance(e, StoreConflict):
                        self._rewind()      # another process wrote first
                    else:
                        self._forget()
                raise
            if generation != self._generation:
                # Stored after all, behind a delta whose write failed: durable,
                # so its submitter hears so; the copy in memory reloads it.
                log.warn("{uri}: delta at version {v} was stored after an earlier write "
                         "failed; the wavelet is reloaded", uri=self.uri,
                         v=update.applied.applied_at.version)
                return update
            self.state = state
            self.server.touch(self)     # what listeners read stays loaded while they read it
            self._since_snapshot += 1
            self._bytes_since += len(update.applied.applied_delta_bytes)
            if self._snapshot_due():
                self._snapshot(state)
            update = WaveletUpdate(self.name, update.applied, update.transformed,
                                   update.participants_before, update.participants_after,
                                   self.hosted, tuple(outbox_ids or ()))
            self.server.notify(update)
            return update
        finally:
            if self._settled is settled:
                self._settled = None
            settled.callback(None)

    #: A snapshot is due once the deltas since the last one add up to this
    #: fraction of its size (and number at least ``snapshot_interval``): a
    #: snapshot's cost, paid once per that many delta bytes, is then a
    #: constant times the bytes of each delta however long the wavelet, and
    #: opening the wavelet replays at most that fraction of its size.
    SNAPSHOT_FRACTION = 0.25

    def _snapshot_due(self):
        return (self._since_snapshot >= self.server.snapshot_interval
                and self._bytes_since >= self.SNAPSHOT_FRACTION * self._snapshot_size)

    def _snapshot(self, state):
        """Keep a snapshot of ``state`` (durable); its write is not waited for."""
        if self._encoder is None:
            self._encoder = snapshot_encoder()
        blob = self._encoder.encode(state)
        self._since_snapshot = self._bytes_since = 0
        self._snapshot_size = len(blob)
        d = self.server.store.put_snapshot(self.uri, state.hashed_version.version, blob)
        d.addErrback(lambda f: log.failure("snapshot of {uri} at version {v} failed", f,
                                           uri=self.uri, v=state.hashed_version.version))

    def read(self):
        """Fires with the loaded wavelet state (do not change it)."""
        return self.run(lambda: defer.succeed(self.state))


class LocalWaveletContainer(WaveletContainer):
    """A wavelet we host: the single writer of its history."""

    hosted = True

    def submit(self, delta, signed_delta):
        """
        Submit ``delta`` (the parsed WaveletDelta) whose serialized, signed
        form is ``signed_delta`` (a SignedDelta, or a Deferred of one still
        being signed: its bytes go into the applied delta unchanged).  Its
        place in the wavelet's order is taken now.  Fires with a
        :class:`SubmitResult` once durable.
        """
        return self._submit(delta, signed_delta)

    #: How often a submit is transformed again after another process appended
    #: to the same wavelet first (a shared PostgreSQL store decides the writer).
    #: Each retry first catches up, so each one loses only to newer deltas.
    CONFLICT_RETRIES = 20

    @defer.inlineCallbacks
    def _submit(self, delta, signed_delta):
        signed = [signed_delta]     # signed once, however often it is retried
        for attempt in range(self.CONFLICT_RETRIES + 1):
            try:
                outcome = yield self.run(self._submit_once, delta, signed)
                if isinstance(outcome, SubmitResult):
                    return outcome       # a duplicate: nothing written
                update = yield outcome.durable
                transformed = update.transformed
                return SubmitResult(len(transformed.operations), transformed.resulting_version,
                                    transformed.application_timestamp)
            except StoreConflict:
                if attempt == self.CONFLICT_RETRIES:
                    raise
                # The next run catches up with the store first.
                log.debug("{uri}: another writer appended first; catching up and "
                          "transforming again", uri=self.uri)

    @defer.inlineCallbacks
    def _submit_once(self, delta, signed):
        if not delta.operations:
            raise errors.EmptyDelta("empty delta from %s at version %d"
                                    % (delta.author, delta.hashed_version.version))
        if isinstance(signed[0], defer.Deferred):
            # Signed in a thread while the deltas before it were worked on.
            signed[0] = yield signed[0]
        signed_delta = signed[0]
        current = self.head.hashed_version
        target = delta.hashed_version
        if target.version > current.version:
            raise errors.FutureVersion(target.version, current.version)
        history = yield self.history_since(target.version)
        start = history[0].applied_at if history else current
        if start != target:
            raise errors.HashMismatch(target.version)
        result = transform_delta(delta, history, current)
        if result.is_duplicate:
            done = result.duplicate_of
            return SubmitResult(len(done.operations), done.resulting_version,
                                done.application_timestamp, duplicate=True)
        check_author(self.head, delta.author, result.operations)
        timestamp = max(self.server.now_ms(), self._last_timestamp)
        applied = build_applied_delta(signed_delta, current, len(result.operations), timestamp)
        transformed = TransformedDelta(delta.author, current, applied.resulting_version,
                                       result.operations, timestamp)
        return self._commit(applied, transformed)


class RemoteWaveletContainer(WaveletContainer):
    """
    Our copy of a wavelet hosted elsewhere.  It changes only through the
    host's applied deltas, in version order; deltas that arrive ahead of a
    gap wait in ``pending`` until the history before them is fed in.
    """

    hosted = False

    def __init__(self, server, name):
        WaveletContainer.__init__(self, server, name)
        self.pending = {}          # applied_at version -> AppliedDelta, ahead of us

    @property
    def idle(self):
        return WaveletContainer.idle.fget(self) and not self.pending

    @defer.inlineCallbacks
    def apply_applied_deltas(self, applied_deltas):
        """
        Take the host's applied deltas (model AppliedDeltas, their signatures
        already verified by the caller).  Fires with a :class:`RemoteApplyResult`
        once those it applied are durable.
        """
        accepted = yield self.accept_applied_deltas(applied_deltas)
        result = yield accepted.durable()
        return result

    def accept_applied_deltas(self, applied_deltas, retry=True):
        """
        As :meth:`apply_applied_deltas`, but fires as soon as the deltas
        have their place in the wavelet's order (applied to the head, asked
        of the store), with :class:`AcceptedDeltas`: its ``current`` and
        ``missing`` are known then, and ``durable()`` fires with the
        RemoteApplyResult once the disk has them.  The caller that orders
        the host's updates can take the next one meanwhile, and its deltas
        share the sync of these (group commit).  When another process of
        ours stored the host's delta first (StoreConflict), ``durable()``
        catches up with the store and applies what is new, once.
        """
        deltas = list(applied_deltas)
        again = (lambda: self.accept_applied_deltas(deltas, retry=False)) if retry else None
        return self.run(self._apply_applied, deltas).addCallback(AcceptedDeltas, again)

    @defer.inlineCallbacks
    def _apply_applied(self, applied_deltas):
        applied_now = []
        for a in applied_deltas:
            if a.applied_at.version >= self.head.hashed_version.version:
                self.pending.setdefault(a.applied_at.version, a)
        while True:
            current = self.head.hashed_version
            for v in [v for v in self.pending if v < current.version]:
                del self.pending[v]     # an old duplicate (7(c)3)
            applied = self.pending.pop(current.version, None)
            if applied is None:
                break
            if applied.applied_at != current:
                self.corrupted = ("the host's delta at version %d does not extend our hash"
                                  % (current.version,))
                self.pending.clear()
                raise errors.WaveletCorrupted("%s: %s" % (self.uri, self.corrupted))
            # The host decided who may write; the state still refuses
            # operations that do not fit.
            transformed = yield self._retransform(applied)
            applied_now.append(self._commit(applied, transformed))
        missing = None
        if self.pending:
            missing = (self.head.hashed_version, min(self.pending))
        return RemoteApplyResult(tuple(applied_now), self.head.hashed_version, missing)


class _Written:
    """A delta asked of the store; ``durable`` fires with its WaveletUpdate (not a Deferred
    result itself, so that the lock is let go before the write is waited for)."""

    __slots__ = ("durable",)

    def __init__(self, durable):
        self.durable = durable


class AcceptedDeltas:
    """Remote deltas in the wavelet's order, not yet known to be durable."""

    def __init__(self, outcome, again=None):
        self.current = outcome.current
        self.missing = outcome.missing
        self._written = outcome.updates
        self._again = again

    @defer.inlineCallbacks
    def durable(self):
        """Fires with the :class:`RemoteApplyResult` once every accepted delta is durable."""
        updates = []
        try:
            for written in self._written:
                update = yield written.durable
                updates.append(update)
        except StoreConflict:
            if self._again is None:
                raise
            # Another process of ours stored the host's delta first: the next
            # run catches up with the store, and applies what is new.
            accepted = yield self._again()
            result = yield accepted.durable()
            return result
        return RemoteApplyResult(tuple(updates), self.current, self.missing)


class RemoteApplyResult:
    """
    What feeding applied deltas to a remote wavelet did.  ``missing`` is None
    when nothing waits; otherwise ``(our hashed version, version of the
    earliest waiting delta)``: the history range to ask the host for (7(c)3).
    """

    def __init__(self, updates, current, missing):
        self.updates = updates
        self.current = current
        self.missing = missing

    def __repr__(self):
        return "RemoteApplyResult(%d applied, now %r, missing %r)" % (
            len(self.updates), self.current, self.missing)


def check_author(state, author, operations):
    """
    The author must be a participant -- except for the delta that creates
    the wavelet, which adds its author (7(a)2).
    """
    participants = participants_of(state)
    if author in participants:
        return
    if (state.hashed_version.version == 0 and operations
            and isinstance(operations[0], AddParticipant) and operations[0].participant == author):
        return
    raise NotAParticipant("%s is not a participant of the wavelet" % (author,))
