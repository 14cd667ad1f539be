"""
What the server core asks of a durable store, and the plain values it gets back.

The store keeps, per wavelet (keyed by its wavelet name URI string,
``wave://domain/w+abc/conv+root``), the applied deltas exactly as they were
made or received: *bytes are the truth*, so the hash chain of the history
(wave protocol section 4) is always checked against the very bytes that were
hashed, never against a re-serialisation.  Around that it keeps what the core
needs to answer without replaying everything: the latest snapshot, the wavelet
metadata that makes up each participant's inbox, read marks, console
accounts, signer infos (certificate chains, wave protocol section 5) and the
federation outbox, one durable queue per destination domain.

Engines (SQLite, memory and PostgreSQL) implement
:class:`IWaveletStore`; nothing above the store knows which one it talks to.
Every method returns a Deferred, fired in the reactor thread.  A write's
Deferred fires only once the write is durable, and a read started after a
write's Deferred fired sees that write.

The store deals in plain values only: it never parses a delta or a wavelet
name, so it does not depend on the wave model.
"""

from dataclasses import dataclass

from zope.interface import Attribute, Interface


# --- errors ------------------------------------------------------------------

class StoreError(Exception):
    """The store could not do what was asked (see the message)."""


class StoreConflict(StoreError):
    """
    A delta does not extend the wavelet's stored history: its
    ``applied_at_version`` is not the wavelet's current version (someone else
    appended first, or the delta is a duplicate).  Nothing was stored.

    The core answers this as a version mismatch; ``current_version`` is the
    version the store holds, so that it can transform and retry.
    """

    def __init__(self, wavelet_name, applied_at_version, current_version):
        StoreError.__init__(
            self, "%s: delta applied at version %d does not extend the history, "
            "which ends at version %d" % (wavelet_name, applied_at_version, current_version))
        self.wavelet_name = wavelet_name
        self.applied_at_version = applied_at_version
        self.current_version = current_version


class UnknownVersion(StoreError):
    """A version is not a delta boundary of the wavelet's stored history."""


class AccountExists(StoreError):
    """An account with that address is already there."""


class UnknownAccount(StoreError):
    """No account has that address."""


class StoreClosed(StoreError):
    """The store was closed; it takes no more requests."""


# --- values ------------------------------------------------------------------

def _check_int(name, value, least=0):
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ValueError("%s must be an integer >= %d, not %r" % (name, least, value))


def _check_bytes(name, value):
    if not isinstance(value, bytes):
        raise TypeError("%s must be bytes, not %s" % (name, type(value).__name__))


@dataclass(frozen=True, slots=True)
class StoredDelta:
    """
    One applied delta as stored.  ``applied_delta`` is the serialized
    ``ProtocolAppliedWaveletDelta`` (bytes, exactly as hashed and signed);
    ``resulting_hash`` is the history hash at ``resulting_version``.  The
    other fields repeat facts that are inside those bytes so that the store
    can order, check and index deltas without parsing them.
    """

    applied_at_version: int
    resulting_version: int
    resulting_hash: bytes
    applied_delta: bytes
    author: str
    timestamp_ms: int

    def __post_init__(self):
        _check_int("applied_at_version", self.applied_at_version)
        _check_int("resulting_version", self.resulting_version,
                   least=self.applied_at_version + 1)
        _check_bytes("resulting_hash", self.resulting_hash)
        _check_bytes("applied_delta", self.applied_delta)
        if not isinstance(self.author, str):
            raise TypeError("author must be str, not %s" % (type(self.author).__name__,))
        _check_int("timestamp_ms", self.timestamp_ms)


@dataclass(frozen=True, slots=True)
class WaveletInfo:
    """
    What an inbox line needs about a wavelet.  ``version`` is the current
    version (0 before the first delta); ``read_version`` is the version the
    asking participant last marked read, or None if never (only
    :meth:`IWaveletStore.wavelets_of` fills it in).
    """

    name: str
    participants: tuple
    last_modified_ms: int
    version: int
    hosted: bool
    read_version: int = None

    @property
    def unread(self):
        """True when the participant has not read up to the current version."""
        return self.read_version is None or self.read_version < self.version


@dataclass(frozen=True, slots=True)
class Account:
    """A console login.  ``password_hash`` is made by :mod:`wavebox.store.accounts`."""

    address: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class SignerInfo:
    """
    A signer's certificate chain (wave protocol section 5), as the serialized
    ``ProtocolSignerInfo`` bytes, under its signer id (the hash of the chain).
    """

    signer_id: bytes
    domain: str
    blob: bytes


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One queued payload for a destination domain; ``id`` grows in enqueue order."""

    id: int
    destination: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class RetryState:
    """
    How often delivery to a destination failed in a row, when to try again,
    and since when it fails (the first failure of the run, for giving up).
    """

    failures: int
    next_attempt_ms: int
    since_ms: int = 0


# --- the interface -----------------------------------------------------------

class IWaveletStore(Interface):
    """
    Durable storage for wavelet histories and everything the server keeps
    beside them.  Every method returns a Deferred.  Write Deferreds fire once
    the write is durable (for SQLite: committed and synced to disk).
    """

    commit_count = Attribute(
        "Instrumentation: how many transactions this store has committed "
        "since it was opened (engines without transactions count writes).")

    change_observers = Attribute(
        "A list of f(wavelet_name, version), called in the reactor thread for each "
        "delta committed to the database, by this process or another one sharing it "
        "(PostgreSQL), so that cached wavelets can catch up; f(None, None) when "
        "deltas may have been missed (every wavelet may have changed).  Engines "
        "used by one process only never call them.")

    broadcast_observers = Attribute(
        "A list of f(topic, text), called in the reactor thread for each "
        ":meth:`broadcast` of another process sharing the database.")

    # -- deltas --

    def append_delta(wavelet_name, delta, participants=None, hosted=None, outbox=(),
                     applied_at_hash=None):
        """
        Store ``delta`` (a :class:`StoredDelta`) as the next delta of the
        wavelet.  Its ``applied_at_version`` must equal the version the
        previous delta resulted in (0 for the first), and when
        ``applied_at_hash`` is given (for a delta after the first) the
        history hash stored with that previous delta must be it; otherwise
        the Deferred fails with :class:`StoreConflict` and nothing is stored.
        The database, not a lock in this process, decides: two writers
        racing on one wavelet get one success and one conflict, even when
        one of them has written on top of a delta that was refused.

        Appends are made durable, and their Deferreds fire, in the order
        they were asked for: the core asks for the next delta of a wavelet
        before the previous one is durable (a delta whose predecessor is
        refused is then refused too, by the check above).

        In the same transaction, and so durable together with the delta:
        the wavelet's ``last_modified_ms`` becomes the delta's timestamp (if
        later); if ``participants`` is given (an iterable of addresses) it
        replaces the wavelet's participant set; if ``hosted`` is given it
        records whether this server hosts the wavelet; each
        ``(destination, payload)`` in ``outbox`` is queued, as by
        :meth:`outbox_enqueue`, so an update can never be lost between the
        store and the federation queue.

        Fires with the tuple of the new outbox item ids (empty if none) once
        the delta is durable.
        """

    def deltas(wavelet_name, start_version=0, end_version=None, limit=None):
        """
        The stored deltas whose ``applied_at_version`` lies in
        ``[start_version, end_version)`` (to the end if ``end_version`` is
        None), in version order, at most ``limit`` of them.  Deltas come back
        whole, exactly as stored; callers that need exact boundaries check
        them with :meth:`delta_ending_at` first.  An unknown wavelet has no
        deltas (an empty list).
        """

    def delta_ending_at(wavelet_name, version):
        """The :class:`StoredDelta` whose ``resulting_version`` is ``version``, or None."""

    def delta_starting_at(wavelet_name, version):
        """The :class:`StoredDelta` whose ``applied_at_version`` is ``version``, or None."""

    def is_delta_boundary(wavelet_name, version):
        """
        True if ``version`` is 0 or the resulting version of a stored delta
        of the wavelet: the only versions a history request may start or end at.
        """

    def current_version(wavelet_name):
        """
        ``(version, resulting_hash)`` of the wavelet's last stored delta, or
        None if no delta is stored (the core derives the version-0 hash from
        the wavelet name).
        """

    # -- snapshots --

    def put_snapshot(wavelet_name, version, blob):
        """
        Keep ``blob`` (the core's serialized wavelet state at ``version``) so
        that opening the wavelet replays only the deltas after it.  ``version``
        must be a delta boundary (:class:`UnknownVersion` otherwise).  Only the
        latest snapshot is kept: an older one than the one stored is ignored.
        """

    def latest_snapshot(wavelet_name):
        """``(version, blob)`` of the latest snapshot, or None."""

    # -- wavelet metadata and the inbox --

    def set_wavelet_info(wavelet_name, participants, last_modified_ms, hosted):
        """Record the wavelet's participants (replacing them), last activity and hosting."""

    def wavelet_info(wavelet_name):
        """The :class:`WaveletInfo` of one wavelet (``read_version`` None), or None."""

    def wavelets_of(participant, limit=None):
        """
        The inbox: :class:`WaveletInfo` of every wavelet ``participant`` is on,
        newest activity first (then by name), with ``read_version`` filled in.
        """

    def all_wavelets(hosted=None):
        """Every known wavelet's :class:`WaveletInfo`, by name; only hosted (or
        only remote) ones if ``hosted`` is True (False)."""

    def mark_read(participant, wavelet_name, version):
        """Record that ``participant`` has read the wavelet up to ``version`` (last call wins)."""

    # -- accounts --

    def add_account(address, password_hash):
        """Create a console account; :class:`AccountExists` if there is one.
        Addresses are stored as given: callers normalise them first."""

    def set_password(address, password_hash):
        """Replace an account's password hash; :class:`UnknownAccount` if none."""

    def get_account(address):
        """The :class:`Account`, or None."""

    def accounts():
        """Every account's address, sorted."""

    def delete_account(address):
        """Remove an account (its waves stay); :class:`UnknownAccount` if none."""

    # -- signer infos --

    def put_signer_info(signer_id, domain, blob):
        """Keep a signer's certificate chain under its id (replacing any)."""

    def get_signer_info(signer_id):
        """The :class:`SignerInfo`, or None."""

    # -- the federation outbox --

    def outbox_enqueue(destination, payload):
        """Queue ``payload`` (bytes) for ``destination``; fires with its id once durable."""

    def outbox_pending(destination, limit=100, after=0):
        """Up to ``limit`` :class:`OutboxItem` for ``destination`` with id >
        ``after``, oldest first."""

    def outbox_ack(destination, item_id):
        """Forget a delivered item.  Acknowledging an unknown id does nothing."""

    def outbox_destinations():
        """The destinations that have pending items, sorted."""

    def outbox_backlog():
        """``{destination: number of pending items}`` for every destination with any."""

    def outbox_set_retry(destination, failures, next_attempt_ms, since_ms=0):
        """Remember the backoff state of a destination (``since_ms``: its first
        failure in a row); ``failures=0`` clears it."""

    def outbox_get_retry(destination):
        """The destination's :class:`RetryState`, or None when it is not backing off."""

    def outbox_claim(destination):
        """
        Fires with True when this process may deliver ``destination``'s
        queue, and holds that right until :meth:`outbox_release` or its end
        (however it ends); False while another process sharing the database
        holds it.  Asking again while holding it is True, unless the right
        was lost meanwhile (the connection that held it broke).  Engines used
        by one process only always say True.
        """

    def outbox_release(destination):
        """Let another process deliver ``destination``'s queue."""

    def broadcast(topic, text):
        """
        Tell the other processes sharing the database ``topic`` and ``text``
        (short strings; a topic has no space): they call their
        ``broadcast_observers``.  Nobody to tell for one-process engines.
        """

    def outbox_drop(destination):
        """Forget every pending item of ``destination`` and its retry state (an
        operator gave up on it); fires with the number of items dropped."""

    # -- life cycle --

    def close():
        """
        Finish the requests already made, then release the database; fires
        when done.  Later requests fail with :class:`StoreClosed`.  Closing
        twice is harmless.
        """
