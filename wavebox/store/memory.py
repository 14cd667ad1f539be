"""
An :class:`~wavebox.store.interface.IWaveletStore` that keeps everything in
memory: for tests, and as the baseline of ``benchmarks/bench_store.py``.

It behaves like the SQLite engine in every way the interface promises
(contiguity checks, conflicts that store nothing, ordering, the outbox), so
the same contract tests run against both; it is merely not durable.  Its
Deferreds have already fired when they are returned.
"""

from twisted.internet import defer
from zope.interface import implementer

from wavebox.store.interface import (
    Account, AccountExists, IWaveletStore, OutboxItem, RetryState, SignerInfo,
    StoreClosed, StoreConflict, StoredDelta, UnknownAccount, UnknownVersion,
    WaveletInfo)


class _Wavelet:
    __slots__ = ("deltas", "by_end", "participants", "last_modified_ms", "hosted",
                 "snapshot")

    def __init__(self):
        self.deltas = []           # in version order
        self.by_end = {}           # resulting_version -> index into deltas
        self.participants = ()
        self.last_modified_ms = 0
        self.hosted = False
        self.snapshot = None

    @property
    def version(self):
        return self.deltas[-1].resulting_version if self.deltas else 0


def _answer(method):
    """Run a store method now and hand its result or exception back as a Deferred."""
    def wrapper(self, *args, **kwargs):
        if self._closed:
            return defer.fail(StoreClosed("the store is closed"))
        try:
            return defer.succeed(method(self, *args, **kwargs))
        except Exception:
            return defer.fail()
    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def _payload(payload):
    if not isinstance(payload, bytes):
        raise TypeError("an outbox payload is bytes, not %s" % (type(payload).__name__,))
    return payload


def _participants(participants):
    if isinstance(participants, str):
        raise TypeError("participants must be a list of addresses, not one string")
    return tuple(dict.fromkeys(participants))


@implementer(IWaveletStore)
class MemoryStore:
    """Everything in dicts; gone when the process ends."""

    def __init__(self):
        self._closed = False
        self._wavelets = {}
        self._read = {}            # (participant, wavelet name) -> version
        self._accounts = {}
        self._signers = {}
        self._outbox = {}          # destination -> {id: payload}, in id order
        self._retry = {}
        self._next_outbox_id = 1
        self.commit_count = 0
        self.change_observers = []      # one process only: never called
        self.broadcast_observers = []   # one process only: never called

    def _info(self, name, w, read_version=None):
        return WaveletInfo(name, w.participants, w.last_modified_ms, w.version,
                           w.hosted, read_version)

    # -- deltas --

    @_answer
    def append_delta(self, wavelet_name, delta, participants=None, hosted=None, outbox=(),
                     applied_at_hash=None):
        if not isinstance(delta, StoredDelta):
            raise TypeError("append_delta takes a StoredDelta, not %r" % (delta,))
        outbox = [(d, _payload(p)) for d, p in outbox]
        if participants is not None:
            participants = _participants(participants)
        w = self._wavelets.get(wavelet_name)
        current = w.version if w else 0
        if delta.applied_at_version != current or (
                applied_at_hash is not None and current
                and w.deltas[-1].resulting_hash != applied_at_hash):
            raise StoreConflict(wavelet_name, delta.applied_at_version, current)
        if w is None:
            w = self._wavelets[wavelet_name] = _Wavelet()
        w.by_end[delta.resulting_version] = len(w.deltas)
        w.deltas.append(delta)
        w.last_modified_ms = max(w.last_modified_ms, delta.timestamp_ms)
        if participants is not None:
            w.participants = participants
        if hosted is not None:
            w.hosted = bool(hosted)
        ids = tuple(self._enqueue(d, p) for d, p in outbox)
        self.commit_count += 1
        return ids

    def _first_at_or_after(self, w, version):
        lo, hi = 0, len(w.deltas)
        while lo < hi:
            mid = (lo + hi) // 2
            if w.deltas[mid].applied_at_version < version:
                lo = mid + 1
            else:
                hi = mid
        return lo

    @_answer
    def deltas(self, wavelet_name, start_version=0, end_version=None, limit=None):
        w = self._wavelets.get(wavelet_name)
        if w is None:
            return []
        result = []
        for d in w.deltas[self._first_at_or_after(w, start_version):]:
            if end_version is not None and d.applied_at_version >= end_version:
                break
            if limit is not None and len(result) >= limit:
                break
            result.append(d)
        return result

    @_answer
    def delta_ending_at(self, wavelet_name, version):
        w = self._wavelets.get(wavelet_name)
        if w is None or version not in w.by_end:
            return None
        return w.deltas[w.by_end[version]]

    @_answer
    def delta_starting_at(self, wavelet_name, version):
        w = self._wavelets.get(wavelet_name)
        if w is None:
            return None
        i = self._first_at_or_after(w, version)
        if i < len(w.deltas) and w.deltas[i].applied_at_version == version:
            return w.deltas[i]
        return None

    @_answer
    def is_delta_boundary(self, wavelet_name, version):
        w = self._wavelets.get(wavelet_name)
        return version == 0 or (w is not None and version in w.by_end)

    @_answer
    def current_version(self, wavelet_name):
        w = self._wavelets.get(wavelet_name)
        if w is None or not w.deltas:
            return None
        return (w.deltas[-1].resulting_version, w.deltas[-1].resulting_hash)

    # -- snapshots --

    @_answer
    def put_snapshot(self, wavelet_name, version, blob):
        if not isinstance(blob, bytes):
            raise TypeError("a snapshot is bytes, not %s" % (type(blob).__name__,))
        w = self._wavelets.get(wavelet_name)
        if w is None or version not in w.by_end:
            raise UnknownVersion("%s: no delta ends at version %r, so no snapshot "
                                 "can be taken there" % (wavelet_name, version))
        if w.snapshot is None or w.snapshot[0] < version:
            w.snapshot = (version, blob)
        self.commit_count += 1

    @_answer
    def latest_snapshot(self, wavelet_name):
        w = self._wavelets.get(wavelet_name)
        return w.snapshot if w is not None else None

    # -- wavelet metadata and the inbox --

    @_answer
    def set_wavelet_info(self, wavelet_name, participants, last_modified_ms, hosted):
        participants = _participants(participants)
        w = self._wavelets.get(wavelet_name)
        if w is None:
            w = self._wavelets[wavelet_name] = _Wavelet()
        w.participants = participants
        w.last_modified_ms = last_modified_ms
        w.hosted = bool(hosted)
        self.commit_count += 1

    @_answer
    def wavelet_info(self, wavelet_name):
        w = self._wavelets.get(wavelet_name)
        return self._info(wavelet_name, w) if w is not None else None

    @_answer
    def wavelets_of(self, participant, limit=None):
        found = [self._info(name, w, self._read.get((participant, name)))
                 for name, w in self._wavelets.items() if participant in w.participants]
        found.sort(key=lambda i: (-i.last_modified_ms, i.name))
        return found if limit is None else found[:limit]

    @_answer
    def all_wavelets(self, hosted=None):
        return [self._info(name, w) for name, w in sorted(self._wavelets.items())
                if hosted is None or w.hosted == bool(hosted)]

    @_answer
    def mark_read(self, participant, wavelet_name, version):
        self._read[(participant, wavelet_name)] = version
        self.commit_count += 1

    # -- accounts --

    @_answer
    def add_account(self, address, password_hash):
        if address in self._accounts:
            raise AccountExists("there is already an account %s" % (address,))
        self._accounts[address] = Account(address, password_hash)
        self.commit_count += 1

    @_answer
    def set_password(self, address, password_hash):
        if address not in self._accounts:
            raise UnknownAccount("there is no account %s" % (address,))
        self._accounts[address] = Account(address, password_hash)
        self.commit_count += 1

    @_answer
    def get_account(self, address):
        return self._accounts.get(address)

    @_answer
    def accounts(self):
        return sorted(self._accounts)

    @_answer
    def delete_account(self, address):
        if self._accounts.pop(address, None) is None:
            raise UnknownAccount("there is no account %s" % (address,))
        self.commit_count += 1

    # -- signer infos --

    @_answer
    def put_signer_info(self, signer_id, domain, blob):
        if not isinstance(signer_id, bytes) or not isinstance(blob, bytes):
            raise TypeError("a signer id and its info are bytes")
        self._signers[signer_id] = SignerInfo(signer_id, domain, blob)
        self.commit_count += 1

    @_answer
    def get_signer_info(self, signer_id):
        return self._signers.get(signer_id)

    # -- the federation outbox --

    def _enqueue(self, destination, payload):
        _payload(payload)
        item_id = self._next_outbox_id
        self._next_outbox_id += 1
        self._outbox.setdefault(destination, {})[item_id] = payload
        return item_id

    @_answer
    def outbox_enqueue(self, destination, payload):
        item_id = self._enqueue(destination, payload)
        self.commit_count += 1
        return item_id

    @_answer
    def outbox_pending(self, destination, limit=100, after=0):
        queue = self._outbox.get(destination, {})
        items = [OutboxItem(i, destination, p) for i, p in queue.items() if i > after]
        return items[:limit]

    @_answer
    def outbox_ack(self, destination, item_id):
        queue = self._outbox.get(destination)
        if queue is not None:
            queue.pop(item_id, None)
            if not queue:
                del self._outbox[destination]
        self.commit_count += 1

    @_answer
    def outbox_destinations(self):
        return sorted(self._outbox)

    @_answer
    def outbox_backlog(self):
        return {d: len(q) for d, q in self._outbox.items()}

    @_answer
    def outbox_set_retry(self, destination, failures, next_attempt_ms, since_ms=0):
        if failures == 0:
            self._retry.pop(destination, None)
        else:
            self._retry[destination] = RetryState(failures, next_attempt_ms, since_ms)
        self.commit_count += 1

    @_answer
    def outbox_get_retry(self, destination):
        return self._retry.get(destination)

    @_answer
    def outbox_drop(self, destination):
        dropped = len(self._outbox.pop(destination, {}))
        self._retry.pop(destination, None)
        self.commit_count += 1
        return dropped

    # -- life cycle --

    def outbox_claim(self, destination):
        if self._closed:
            return defer.fail(StoreClosed("the store is closed"))
        return defer.succeed(True)      # one process: every queue is ours

    def outbox_release(self, destination):
        return defer.succeed(None)

    def broadcast(self, topic, text):
        return defer.succeed(None)      # one process: nobody else to tell

    def close(self):
        self._closed = True
        return defer.succeed(None)
