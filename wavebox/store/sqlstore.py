"""
The store's SQL, once for every SQL engine, grouped by concern: deltas,
snapshots, wavelet metadata and the inbox, accounts, signer infos, the
federation outbox.

Every statement is in the subset SQLite and PostgreSQL share: ``?``
placeholders (an engine translates them, :class:`wavebox.store.engine.Connection`),
``INSERT ... ON CONFLICT`` instead of ``INSERT OR REPLACE``, ``RETURNING``
for new ids, ``CASE`` instead of a scalar ``max()``, and no ``LIMIT -1``
(a query without a limit has no LIMIT clause).  Unique keys are met with
``ON CONFLICT DO NOTHING`` and a row count rather than a caught
IntegrityError, because PostgreSQL aborts the transaction on an error.

:class:`SqlStore` implements :class:`IWaveletStore` on top of two request
runners an engine gives it: ``_writer`` (group commit, in order) and
``_reader``; each takes ``job(connection) -> result`` and returns a Deferred.
"""

from twisted.internet import defer
from zope.interface import implementer

from wavebox.store.interface import (
    Account, AccountExists, IWaveletStore, OutboxItem, RetryState, SignerInfo,
    StoreClosed, StoreConflict, StoredDelta, UnknownAccount, UnknownVersion, WaveletInfo)


def _participants(participants):
    if isinstance(participants, str):
        raise TypeError("participants must be a list of addresses, not one string")
    return list(dict.fromkeys(participants))


def _payload(payload):
    if not isinstance(payload, bytes):
        raise TypeError("an outbox payload is bytes, not %s" % (type(payload).__name__,))
    return payload


def _limit(sql, limit):
    """``sql`` with a LIMIT clause when there is a limit (never ``LIMIT -1``)."""
    return sql if limit is None else "%s LIMIT %d" % (sql, int(limit))


def _bytes(value):
    return value if value is None or isinstance(value, bytes) else bytes(value)


# --- deltas ------------------------------------------------------------------

_DELTA_COLUMNS = ("applied_at_version, resulting_version, resulting_hash, applied_delta, "
                  "author, timestamp_ms")


def _delta(row):
    return StoredDelta(row[0], row[1], _bytes(row[2]), _bytes(row[3]), row[4], row[5])


def _wavelet_id(conn, name):
    """The wavelet's row id, its row made (at version 0) if there is none."""
    row = conn.execute("INSERT INTO wavelet (name) VALUES (?) ON CONFLICT (name) DO NOTHING "
                       "RETURNING id", (name,)).fetchone()
    if row is None:
        row = conn.execute("SELECT id FROM wavelet WHERE name = ?", (name,)).fetchone()
    return row[0]


def append_delta(conn, wavelet_name, delta, participants, hosted, outbox, applied_at_hash):
    row = conn.execute("SELECT id, version, hash FROM wavelet WHERE name = ?",
                       (wavelet_name,)).fetchone()
    current = row[1] if row else 0
    if delta.applied_at_version != current or (
            applied_at_hash is not None and current and _bytes(row[2]) != applied_at_hash):
        raise StoreConflict(wavelet_name, delta.applied_at_version, current)
    wavelet_id = row[0] if row else _wavelet_id(conn, wavelet_name)
    # Compare-and-set on the version: of several processes on one database,
    # only the one whose version still matches moves it (PostgreSQL makes the
    # others wait for the row and then sees the version they did not expect).
    moved = conn.execute(
        "UPDATE wavelet SET version = ?, hash = ?, "
        "last_modified_ms = CASE WHEN last_modified_ms > ? THEN last_modified_ms ELSE ? END, "
        "hosted = coalesce(?, hosted) WHERE id = ? AND version = ?",
        (delta.resulting_version, delta.resulting_hash, delta.timestamp_ms, delta.timestamp_ms,
         None if hosted is None else int(bool(hosted)), wavelet_id,
         delta.applied_at_version)).rowcount
    if moved != 1:
        found = conn.execute("SELECT version FROM wavelet WHERE id = ?",
                             (wavelet_id,)).fetchone()
        raise StoreConflict(wavelet_name, delta.applied_at_version, found[0] if found else 0)
    inserted = conn.execute(
        "INSERT INTO delta (wavelet_id, %s) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING" % (_DELTA_COLUMNS,),
        (wavelet_id, delta.applied_at_version, delta.resulting_version,
         delta.resulting_hash, delta.applied_delta, delta.author,
         delta.timestamp_ms)).rowcount
    if inserted != 1:
        raise StoreConflict(wavelet_name, delta.applied_at_version, current)
    if participants is not None:
        _replace_participants(conn, wavelet_id, participants)
    conn.announce_delta(wavelet_name, delta.resulting_version)
    return tuple(_enqueue(conn, destination, payload) for destination, payload in outbox)


def deltas(conn, wavelet_name, start_version, end_version, limit):
    sql = ("SELECT %s FROM delta WHERE wavelet_id = (SELECT id FROM wavelet WHERE name = ?) "
           "AND applied_at_version >= ?" % (_DELTA_COLUMNS,))
    params = [wavelet_name, start_version]
    if end_version is not None:
        sql += " AND applied_at_version < ?"
        params.append(end_version)
    rows = conn.execute(_limit(sql + " ORDER BY applied_at_version", limit), params)
    return [_delta(r) for r in rows]


def one_delta(conn, wavelet_name, column, version):
    row = conn.execute(
        "SELECT %s FROM delta WHERE wavelet_id = (SELECT id FROM wavelet WHERE name = ?) "
        "AND %s = ?" % (_DELTA_COLUMNS, column), (wavelet_name, version)).fetchone()
    return _delta(row) if row else None


def current_version(conn, wavelet_name):
    row = conn.execute("SELECT version, hash FROM wavelet WHERE name = ?",
                       (wavelet_name,)).fetchone()
    if row is None or row[0] == 0:
        return None
    return (row[0], _bytes(row[1]))


# --- snapshots ---------------------------------------------------------------

def put_snapshot(conn, wavelet_name, version, blob):
    row = conn.execute(
        "SELECT d.wavelet_id FROM delta d JOIN wavelet w ON w.id = d.wavelet_id "
        "WHERE w.name = ? AND d.resulting_version = ?", (wavelet_name, version)).fetchone()
    if row is None:
        raise UnknownVersion("%s: no delta ends at version %r, so no snapshot "
                             "can be taken there" % (wavelet_name, version))
    conn.execute(
        "INSERT INTO snapshot (wavelet_id, version, blob) VALUES (?, ?, ?) "
        "ON CONFLICT (wavelet_id) DO UPDATE SET version = excluded.version, "
        "blob = excluded.blob WHERE excluded.version > snapshot.version",
        (row[0], version, blob))


def latest_snapshot(conn, wavelet_name):
    row = conn.execute(
        "SELECT s.version, s.blob FROM snapshot s JOIN wavelet w ON w.id = s.wavelet_id "
        "WHERE w.name = ?", (wavelet_name,)).fetchone()
    return (row[0], _bytes(row[1])) if row else None


# --- wavelet metadata and the inbox -------------------------------------------

def _replace_participants(conn, wavelet_id, participants):
    conn.execute("DELETE FROM participant WHERE wavelet_id = ?", (wavelet_id,))
    if participants:
        conn.executemany(
            "INSERT INTO participant (address, wavelet_id, position) VALUES (?, ?, ?)",
            [(a, wavelet_id, i) for i, a in enumerate(participants)])


def _participants_by_wavelet(rows):
    found = {}
    for wavelet_id, address in rows:
        found.setdefault(wavelet_id, []).append(address)
    return found


def set_wavelet_info(conn, wavelet_name, participants, last_modified_ms, hosted):
    row = conn.execute(
        "INSERT INTO wavelet (name, last_modified_ms, hosted) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET last_modified_ms = excluded.last_modified_ms, "
        "hosted = excluded.hosted RETURNING id",
        (wavelet_name, last_modified_ms, int(bool(hosted)))).fetchone()
    _replace_participants(conn, row[0], participants)


def wavelet_info(conn, wavelet_name):
    row = conn.execute(
        "SELECT id, version, last_modified_ms, hosted FROM wavelet WHERE name = ?",
        (wavelet_name,)).fetchone()
    if row is None:
        return None
    participants = [a for (a,) in conn.execute(
        "SELECT address FROM participant WHERE wavelet_id = ? ORDER BY position", (row[0],))]
    return WaveletInfo(wavelet_name, tuple(participants), row[2], row[1], bool(row[3]))


def wavelets_of(conn, participant, limit):
    rows = conn.execute(_limit(
        "SELECT w.id, w.name, w.version, w.last_modified_ms, w.hosted, r.version "
        "FROM participant p JOIN wavelet w ON w.id = p.wavelet_id "
        "LEFT JOIN read_mark r ON r.address = p.address AND r.wavelet_name = w.name "
        "WHERE p.address = ? ORDER BY w.last_modified_ms DESC, w.name", limit),
        (participant,)).fetchall()
    everyone = _participants_by_wavelet(conn.execute(
        "SELECT q.wavelet_id, q.address FROM participant p "
        "JOIN participant q ON q.wavelet_id = p.wavelet_id "
        "WHERE p.address = ? ORDER BY q.wavelet_id, q.position", (participant,)))
    return [WaveletInfo(name, tuple(everyone.get(wid, ())), modified, version,
                        bool(hosted), read_version)
            for wid, name, version, modified, hosted, read_version in rows]


def all_wavelets(conn, hosted):
    sql = "SELECT id, name, version, last_modified_ms, hosted FROM wavelet"
    if hosted is None:
        rows = conn.execute(sql + " ORDER BY name").fetchall()
    else:
        rows = conn.execute(sql + " WHERE hosted = ? ORDER BY name",
                            (int(bool(hosted)),)).fetchall()
    everyone = _participants_by_wavelet(conn.execute(
        "SELECT wavelet_id, address FROM participant ORDER BY wavelet_id, position"))
    return [WaveletInfo(name, tuple(everyone.get(wid, ())), modified, version, bool(is_hosted))
            for wid, name, version, modified, is_hosted in rows]


def mark_read(conn, participant, wavelet_name, version):
    conn.execute("INSERT INTO read_mark (address, wavelet_name, version) VALUES (?, ?, ?) "
                 "ON CONFLICT (address, wavelet_name) DO UPDATE SET version = excluded.version",
                 (participant, wavelet_name, version))


# --- accounts ------------------------------------------------------------------

def add_account(conn, address, password_hash):
    if conn.execute("INSERT INTO account (address, password_hash) VALUES (?, ?) "
                    "ON CONFLICT (address) DO NOTHING", (address, password_hash)).rowcount != 1:
        raise AccountExists("there is already an account %s" % (address,))


def set_password(conn, address, password_hash):
    if conn.execute("UPDATE account SET password_hash = ? WHERE address = ?",
                    (password_hash, address)).rowcount != 1:
        raise UnknownAccount("there is no account %s" % (address,))


def get_account(conn, address):
    row = conn.execute("SELECT address, password_hash FROM account WHERE address = ?",
                       (address,)).fetchone()
    return Account(row[0], row[1]) if row else None


def accounts(conn):
    return [a for (a,) in conn.execute("SELECT address FROM account ORDER BY address")]


def delete_account(conn, address):
    if conn.execute("DELETE FROM account WHERE address = ?", (address,)).rowcount != 1:
        raise UnknownAccount("there is no account %s" % (address,))


# --- signer infos --------------------------------------------------------------

def put_signer_info(conn, signer_id, domain, blob):
    conn.execute("INSERT INTO signer_info (signer_id, domain, blob) VALUES (?, ?, ?) "
                 "ON CONFLICT (signer_id) DO UPDATE SET domain = excluded.domain, "
                 "blob = excluded.blob", (signer_id, domain, blob))


def get_signer_info(conn, signer_id):
    row = conn.execute("SELECT signer_id, domain, blob FROM signer_info WHERE signer_id = ?",
                       (signer_id,)).fetchone()
    return SignerInfo(_bytes(row[0]), row[1], _bytes(row[2])) if row else None


# --- the federation outbox -----------------------------------------------------

def _enqueue(conn, destination, payload):
    return conn.execute("INSERT INTO outbox (destination, payload) VALUES (?, ?) RETURNING id",
                        (destination, payload)).fetchone()[0]


def outbox_pending(conn, destination, limit, after):
    rows = conn.execute(_limit("SELECT id, payload FROM outbox WHERE destination = ? "
                               "AND id > ? ORDER BY id", limit), (destination, after))
    return [OutboxItem(i, destination, _bytes(p)) for i, p in rows]


def outbox_ack(conn, destination, item_id):
    conn.execute("DELETE FROM outbox WHERE destination = ? AND id = ?", (destination, item_id))


def outbox_destinations(conn):
    return [d for (d,) in conn.execute(
        "SELECT DISTINCT destination FROM outbox ORDER BY destination")]


def outbox_backlog(conn):
    return {d: n for d, n in conn.execute(
        "SELECT destination, count(*) FROM outbox GROUP BY destination")}


def outbox_set_retry(conn, destination, failures, next_attempt_ms, since_ms):
    if failures == 0:
        conn.execute("DELETE FROM outbox_retry WHERE destination = ?", (destination,))
    else:
        conn.execute("INSERT INTO outbox_retry (destination, failures, next_attempt_ms, "
                     "since_ms) VALUES (?, ?, ?, ?) ON CONFLICT (destination) DO UPDATE SET "
                     "failures = excluded.failures, next_attempt_ms = excluded.next_attempt_ms, "
                     "since_ms = excluded.since_ms",
                     (destination, failures, next_attempt_ms, since_ms))


def outbox_get_retry(conn, destination):
    row = conn.execute("SELECT failures, next_attempt_ms, since_ms FROM outbox_retry "
                       "WHERE destination = ?", (destination,)).fetchone()
    return RetryState(row[0], row[1], row[2]) if row else None


def outbox_drop(conn, destination):
    dropped = conn.execute("DELETE FROM outbox WHERE destination = ?", (destination,)).rowcount
    conn.execute("DELETE FROM outbox_retry WHERE destination = ?", (destination,))
    return dropped


# --- the store -----------------------------------------------------------------

@implementer(IWaveletStore)
class SqlStore:
    """
    :class:`IWaveletStore` over the SQL above.  An engine's subclass sets
    ``_writer`` and ``_reader`` (each with ``submit(job)`` and ``stop()``)
    and ``where`` (how its messages name the database), and calls
    :meth:`_committed` for each transaction it commits.
    """

    where = "?"

    def __init__(self):
        self.commit_count = 0
        self.commit_observers = []      # f(seconds) per transaction committed (metrics)
        self.change_observers = []      # f(wavelet_name, version): another process's delta
        self.broadcast_observers = []   # f(topic, text): another process's broadcast
        self._closed = False
        self._close_waiters = None
        self._writer = self._reader = None

    def _committed(self, seconds):
        self.commit_count += 1
        for observe in self.commit_observers:
            observe(seconds)

    def _write(self, job, *args):
        if self._closed:
            return defer.fail(StoreClosed("the store %s is closed" % (self.where,)))
        return self._writer.submit(lambda conn: job(conn, *args))

    def _read(self, job, *args):
        if self._closed:
            return defer.fail(StoreClosed("the store %s is closed" % (self.where,)))
        return self._reader.submit(lambda conn: job(conn, *args))

    # -- deltas --

    def append_delta(self, wavelet_name, delta, participants=None, hosted=None, outbox=(),
                     applied_at_hash=None):
        try:
            if not isinstance(delta, StoredDelta):
                raise TypeError("append_delta takes a StoredDelta, not %r" % (delta,))
            if participants is not None:
                participants = _participants(participants)
            outbox = [(dest, _payload(p)) for dest, p in outbox]
        except Exception:
            return defer.fail()
        return self._write(append_delta, wavelet_name, delta, participants, hosted, outbox,
                           applied_at_hash)

    def deltas(self, wavelet_name, start_version=0, end_version=None, limit=None):
        return self._read(deltas, wavelet_name, start_version, end_version, limit)

    def delta_ending_at(self, wavelet_name, version):
        return self._read(one_delta, wavelet_name, "resulting_version", version)

    def delta_starting_at(self, wavelet_name, version):
        return self._read(one_delta, wavelet_name, "applied_at_version", version)

    def is_delta_boundary(self, wavelet_name, version):
        d = self.delta_ending_at(wavelet_name, version)
        d.addCallback(lambda found: version == 0 or found is not None)
        return d

    def current_version(self, wavelet_name):
        return self._read(current_version, wavelet_name)

    # -- snapshots --

    def put_snapshot(self, wavelet_name, version, blob):
        if not isinstance(blob, bytes):
            return defer.fail(TypeError("a snapshot is bytes, not %s" % (type(blob).__name__,)))
        return self._write(put_snapshot, wavelet_name, version, blob)

    def latest_snapshot(self, wavelet_name):
        return self._read(latest_snapshot, wavelet_name)

    # -- wavelet metadata and the inbox --

    def set_wavelet_info(self, wavelet_name, participants, last_modified_ms, hosted):
        try:
            participants = _participants(participants)
        except Exception:
            return defer.fail()
        return self._write(set_wavelet_info, wavelet_name, participants, last_modified_ms,
                           hosted)

    def wavelet_info(self, wavelet_name):
        return self._read(wavelet_info, wavelet_name)

    def wavelets_of(self, participant, limit=None):
        return self._read(wavelets_of, participant, limit)

    def all_wavelets(self, hosted=None):
        return self._read(all_wavelets, hosted)

    def mark_read(self, participant, wavelet_name, version):
        return self._write(mark_read, participant, wavelet_name, version)

    # -- accounts --

    def add_account(self, address, password_hash):
        return self._write(add_account, address, password_hash)

    def set_password(self, address, password_hash):
        return self._write(set_password, address, password_hash)

    def get_account(self, address):
        return self._read(get_account, address)

    def accounts(self):
        return self._read(accounts)

    def delete_account(self, address):
        return self._write(delete_account, address)

    # -- signer infos --

    def put_signer_info(self, signer_id, domain, blob):
        if not isinstance(signer_id, bytes) or not isinstance(blob, bytes):
            return defer.fail(TypeError("a signer id and its info are bytes"))
        return self._write(put_signer_info, signer_id, domain, blob)

    def get_signer_info(self, signer_id):
        return self._read(get_signer_info, signer_id)

    # -- the federation outbox --

    def outbox_enqueue(self, destination, payload):
        try:
            _payload(payload)
        except TypeError:
            return defer.fail()
        return self._write(_enqueue, destination, payload)

    def outbox_pending(self, destination, limit=100, after=0):
        return self._read(outbox_pending, destination, limit, after)

    def outbox_ack(self, destination, item_id):
        return self._write(outbox_ack, destination, item_id)

    def outbox_destinations(self):
        return self._read(outbox_destinations)

    def outbox_backlog(self):
        return self._read(outbox_backlog)

    def outbox_set_retry(self, destination, failures, next_attempt_ms, since_ms=0):
        return self._write(outbox_set_retry, destination, failures, next_attempt_ms, since_ms)

    def outbox_get_retry(self, destination):
        return self._read(outbox_get_retry, destination)

    def outbox_drop(self, destination):
        return self._write(outbox_drop, destination)

    def outbox_claim(self, destination):
        if self._closed:
            return defer.fail(StoreClosed("the store %s is closed" % (self.where,)))
        return defer.succeed(True)      # one process: every queue is ours

    def outbox_release(self, destination):
        return defer.succeed(None)

    def broadcast(self, topic, text):
        return defer.succeed(None)      # one process: nobody else to tell

    # -- life cycle --

    def close(self):
        if self._close_waiters is None:
            self._closed = True
            self._close_waiters = []
            d = defer.gatherResults([r.stop() for r in self._runners()], consumeErrors=True)
            d.addBoth(self._stopped)
        if self._close_waiters is True:
            return defer.succeed(None)
        d = defer.Deferred()
        self._close_waiters.append(d)
        return d

    def _stopped(self, _):
        self._released()
        waiters, self._close_waiters = self._close_waiters, True
        for d in waiters:
            d.callback(None)

    def _runners(self):
        """What runs requests: stopped, in this order, by :meth:`close`."""
        return [self._writer, self._reader]

    def _released(self):
        """The writer and the readers have ended: let go of what else the engine holds."""
