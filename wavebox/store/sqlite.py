"""
The embedded store: one SQLite file, written by one thread, with group commit.

Durability.  The database runs in WAL mode with ``synchronous=FULL``.  In WAL
mode a commit appends the transaction's pages to the ``-wal`` file; with
``FULL`` SQLite fsyncs the WAL at every commit, before the commit returns, so
a transaction whose commit returned is on stable storage and survives both a
killed process and a power cut.  (``NORMAL`` in WAL mode syncs only at
checkpoints: a commit then survives SIGKILL, because the bytes sit in the
kernel's page cache, but the last transactions may be lost in a power cut;
``EXTRA`` differs from ``FULL`` only for rollback journals.)  An append's
Deferred fires only after its transaction's commit returned.

Group commit.  Every write runs on one writer thread with one connection.
The thread takes the first waiting request, then every other request that
queued up meanwhile (typically while the previous commit was syncing), and
runs them all in one transaction, each inside its own SAVEPOINT: a request
that fails (a :class:`StoreConflict`, say) is rolled back alone and the rest
commit together, at the price of one sync.  Then the Deferreds of the batch
fire, in order, in the reactor thread.

Reads run on a second thread with its own connection (WAL lets a reader work
while the writer commits), each in its own read transaction, so a read sees
every write whose Deferred fired before the read was asked for.

The reactor thread never touches a connection.  The schema is versioned with
``PRAGMA user_version`` and created on first open.
"""

import os
import queue
import sqlite3
import threading
import time

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from wavebox.store.interface import (
    Account, AccountExists, IWaveletStore, OutboxItem, RetryState, SignerInfo,
    StoreClosed, StoreConflict, StoredDelta, StoreError, UnknownAccount,
    UnknownVersion, WaveletInfo)

log = Logger()

SCHEMA_VERSION = 2

# Each entry upgrades the schema from version i to version i + 1.
_MIGRATIONS = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE wavelet (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        version INTEGER NOT NULL DEFAULT 0,
        hash BLOB,
        last_modified_ms INTEGER NOT NULL DEFAULT 0,
        hosted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE delta (
        wavelet_id INTEGER NOT NULL REFERENCES wavelet (id),
        applied_at_version INTEGER NOT NULL,
        resulting_version INTEGER NOT NULL,
        resulting_hash BLOB NOT NULL,
        author TEXT NOT NULL,
        timestamp_ms INTEGER NOT NULL,
        applied_delta BLOB NOT NULL,
        PRIMARY KEY (wavelet_id, applied_at_version),
        CHECK (resulting_version > applied_at_version)
    );
    CREATE UNIQUE INDEX delta_by_end ON delta (wavelet_id, resulting_version);
    CREATE TABLE snapshot (
        wavelet_id INTEGER PRIMARY KEY REFERENCES wavelet (id),
        version INTEGER NOT NULL,
        blob BLOB NOT NULL
    );
    CREATE TABLE participant (
        address TEXT NOT NULL,
        wavelet_id INTEGER NOT NULL REFERENCES wavelet (id),
        position INTEGER NOT NULL,
        PRIMARY KEY (address, wavelet_id)
    );
    CREATE INDEX participant_by_wavelet ON participant (wavelet_id, position);
    CREATE TABLE read_mark (
        address TEXT NOT NULL,
        wavelet_name TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (address, wavelet_name)
    ) WITHOUT ROWID;
    CREATE TABLE account (
        address TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL
    );
    CREATE TABLE signer_info (
        signer_id BLOB PRIMARY KEY,
        domain TEXT NOT NULL,
        blob BLOB NOT NULL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        destination TEXT NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE INDEX outbox_by_destination ON outbox (destination, id);
    CREATE TABLE outbox_retry (
        destination TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,
        next_attempt_ms INTEGER NOT NULL
    );
    """,
    # 1 -> 2: since when a destination fails (issue 13: give up after --federation-give-up).
    """
    ALTER TABLE outbox_retry ADD COLUMN since_ms INTEGER NOT NULL DEFAULT 0;
    """,
]

assert len(_MIGRATIONS) == SCHEMA_VERSION

# How many requests one transaction takes at most; the rest wait for the next.
MAX_BATCH = 1000

_NO_LIMIT = -1              # SQLite's LIMIT -1
_MAX_VERSION = 2 ** 63 - 1


def _connect(path, writer):
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    if writer:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            conn.close()
            raise StoreError("%s: SQLite could not switch to WAL mode (got %r)" % (path, mode))
        conn.execute("PRAGMA synchronous=FULL")
    else:
        conn.execute("PRAGMA query_only=1")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def prepare_database(path):
    """
    Create or upgrade the schema of the database at ``path``.  Raises
    :class:`StoreError` if the file is not a wavebox database this code can use.
    """
    try:
        # The store holds every wave and the accounts' password hashes: a new
        # one is ours alone (SQLite gives its -wal and -shm files the same
        # mode), even in a data dir the operator made world-readable.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as e:
        raise StoreError("cannot open the store %s: %s" % (path, e.strerror or e))
    try:
        conn = _connect(path, writer=True)
    except sqlite3.Error as e:
        raise StoreError("cannot open the store %s: %s" % (path, e))
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise StoreError(
                "%s has store schema version %d, but this wavebox knows only up to %d: "
                "it was written by a newer wavebox" % (path, found, SCHEMA_VERSION))
        for version in range(found, SCHEMA_VERSION):
            conn.execute("BEGIN IMMEDIATE")
            for statement in _MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("PRAGMA user_version=%d" % (version + 1,))
            conn.execute("COMMIT")
            log.info("store {path}: schema version {version}", path=path,
                     version=version + 1)
    except sqlite3.Error as e:
        raise StoreError("cannot use the store %s: %s" % (path, e))
    finally:
        conn.close()


class _BatchLost(Exception):
    """The transaction of a batch is gone (the database rolled it back)."""


class _DatabaseThread(threading.Thread):
    """
    One connection and the thread that owns it.  Requests are functions
    ``f(connection) -> result``; each comes back as a Deferred fired in the
    reactor thread.  A writer thread runs every request that is waiting in
    one transaction (group commit); a reader runs them one by one.
    """

    def __init__(self, path, reactor, writer, on_commit=None):
        threading.Thread.__init__(
            self, name="wavebox-store-%s" % ("writer" if writer else "reader",), daemon=True)
        self._path = path
        self._reactor = reactor
        self._writer = writer
        self._on_commit = on_commit
        self._queue = queue.SimpleQueue()
        self._stopped = defer.Deferred()

    def submit(self, job):
        d = defer.Deferred()
        self._queue.put((job, d))
        return d

    def stop(self):
        """Finish what is queued, close the connection; fires once the thread ends."""
        self._queue.put((None, None))
        return self._stopped

    def run(self):
        try:
            conn = _connect(self._path, self._writer)
        except Exception as e:
            conn, broken = None, StoreError("cannot open the store %s: %s" % (self._path, e))
        while True:
            batch = [self._queue.get()]
            if self._writer:
                while batch[-1][0] is not None and len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
            stopping = batch[-1][0] is None
            if stopping:
                batch.pop()
            if batch:
                if conn is None:
                    self._deliver([(d, False, broken) for _, d in batch], committed=False)
                elif self._writer:
                    self._write(conn, batch)
                else:
                    self._read(conn, batch[0])
            if stopping:
                break
        if conn is not None:
            conn.close()
        self._reactor.callFromThread(self._stopped.callback, None)

    def _deliver(self, results, committed, seconds=0.0):
        self._reactor.callFromThread(self._fire, results, committed, seconds)

    def _fire(self, results, committed, seconds=0.0):
        if committed and self._on_commit is not None:
            self._on_commit(seconds)
        for d, ok, value in results:
            if ok:
                d.callback(value)
            else:
                if isinstance(value, sqlite3.Error):
                    value = StoreError("store %s: %s" % (self._path, value))
                d.errback(value)

    def _read(self, conn, request):
        job, d = request
        try:
            conn.execute("BEGIN")
            try:
                result = job(conn)
            finally:
                conn.execute("COMMIT")
        except Exception as e:
            self._deliver([(d, False, e)], committed=False)
        else:
            self._deliver([(d, True, result)], committed=False)

    def _write(self, conn, batch):
        results = []
        started = time.monotonic()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, d in batch:
                results.append(self._write_one(conn, job, d))
            conn.execute("COMMIT")
        except Exception as e:
            # The transaction as a whole failed (disk full, I/O error, the
            # database locked by another process...): nothing of the batch
            # is stored, so every request of it fails.
            if isinstance(e, _BatchLost):
                e = e.args[0]
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            log.error("store {path}: a transaction of {n} requests failed: {error}",
                      path=self._path, n=len(batch), error=e)
            self._deliver([(d, False, e) for _, d in batch], committed=False)
        else:
            self._deliver(results, committed=True, seconds=time.monotonic() - started)

    def _write_one(self, conn, job, d):
        conn.execute("SAVEPOINT request")
        try:
            result = job(conn)
        except Exception as e:
            if not conn.in_transaction:
                raise _BatchLost(e)
            conn.execute("ROLLBACK TO request")
            conn.execute("RELEASE request")
            return (d, False, e)
        conn.execute("RELEASE request")
        return (d, True, result)


def _participants(participants):
    if isinstance(participants, str):
        raise TypeError("participants must be a list of addresses, not one string")
    return list(dict.fromkeys(participants))


def _payload(payload):
    if not isinstance(payload, bytes):
        raise TypeError("an outbox payload is bytes, not %s" % (type(payload).__name__,))
    return payload


def _delta(row):
    return StoredDelta(row[0], row[1], row[2], row[3], row[4], row[5])


_DELTA_COLUMNS = ("applied_at_version, resulting_version, resulting_hash, applied_delta, "
                  "author, timestamp_ms")


def _replace_participants(conn, wavelet_id, participants):
    conn.execute("DELETE FROM participant WHERE wavelet_id = ?", (wavelet_id,))
    conn.executemany(
        "INSERT INTO participant (address, wavelet_id, position) VALUES (?, ?, ?)",
        [(a, wavelet_id, i) for i, a in enumerate(participants)])


def _participants_by_wavelet(rows):
    found = {}
    for wavelet_id, address in rows:
        found.setdefault(wavelet_id, []).append(address)
    return found


@implementer(IWaveletStore)
class SqliteStore:
    """
    The default engine.  Opening creates the file and its schema if needed
    and starts the two database threads; :meth:`close` stops them.
    """

    def __init__(self, path, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.path = path
        self.commit_count = 0
        self.commit_observers = []      # f(seconds) per transaction committed (metrics)
        prepare_database(path)
        self._closed = False
        self._close_waiters = None
        self._writer = _DatabaseThread(path, reactor, writer=True, on_commit=self._committed)
        self._reader = _DatabaseThread(path, reactor, writer=False)
        self._writer.start()
        self._reader.start()

    def __repr__(self):
        return "<SqliteStore %s>" % (self.path,)

    def _committed(self, seconds):
        self.commit_count += 1
        for observe in self.commit_observers:
            observe(seconds)

    def _write(self, job):
        if self._closed:
            return defer.fail(StoreClosed("the store %s is closed" % (self.path,)))
        return self._writer.submit(job)

    def _read(self, job):
        if self._closed:
            return defer.fail(StoreClosed("the store %s is closed" % (self.path,)))
        return self._reader.submit(job)

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

        def append(conn):
            row = conn.execute("SELECT id, version, hash FROM wavelet WHERE name = ?",
                               (wavelet_name,)).fetchone()
            current = row[1] if row else 0
            if delta.applied_at_version != current or (
                    applied_at_hash is not None and current and row[2] != applied_at_hash):
                raise StoreConflict(wavelet_name, delta.applied_at_version, current)
            if row is None:
                wavelet_id = conn.execute("INSERT INTO wavelet (name) VALUES (?)",
                                          (wavelet_name,)).lastrowid
            else:
                wavelet_id = row[0]
            # Compare-and-set on the version: with several processes on one
            # database, only the one whose version still matches moves it.
            moved = conn.execute(
                "UPDATE wavelet SET version = ?, hash = ?, "
                "last_modified_ms = max(last_modified_ms, ?), hosted = coalesce(?, hosted) "
                "WHERE id = ? AND version = ?",
                (delta.resulting_version, delta.resulting_hash, delta.timestamp_ms,
                 None if hosted is None else int(bool(hosted)), wavelet_id,
                 delta.applied_at_version)).rowcount
            if moved != 1:
                raise StoreConflict(wavelet_name, delta.applied_at_version, current)
            try:
                conn.execute(
                    "INSERT INTO delta (wavelet_id, %s) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    % (_DELTA_COLUMNS,),
                    (wavelet_id, delta.applied_at_version, delta.resulting_version,
                     delta.resulting_hash, delta.applied_delta, delta.author,
                     delta.timestamp_ms))
            except sqlite3.IntegrityError:
                raise StoreConflict(wavelet_name, delta.applied_at_version, current)
            if participants is not None:
                _replace_participants(conn, wavelet_id, participants)
            return tuple(
                conn.execute("INSERT INTO outbox (destination, payload) VALUES (?, ?)",
                             item).lastrowid
                for item in outbox)
        return self._write(append)

    def deltas(self, wavelet_name, start_version=0, end_version=None, limit=None):
        def read(conn):
            rows = conn.execute(
                "SELECT %s FROM delta WHERE wavelet_id = "
                "(SELECT id FROM wavelet WHERE name = ?) "
                "AND applied_at_version >= ? AND applied_at_version < ? "
                "ORDER BY applied_at_version LIMIT ?" % (_DELTA_COLUMNS,),
                (wavelet_name, start_version,
                 _MAX_VERSION if end_version is None else end_version,
                 _NO_LIMIT if limit is None else limit))
            return [_delta(r) for r in rows]
        return self._read(read)

    def _one_delta(self, wavelet_name, column, version):
        def read(conn):
            row = conn.execute(
                "SELECT %s FROM delta WHERE wavelet_id = "
                "(SELECT id FROM wavelet WHERE name = ?) AND %s = ?" % (_DELTA_COLUMNS, column),
                (wavelet_name, version)).fetchone()
            return _delta(row) if row else None
        return self._read(read)

    def delta_ending_at(self, wavelet_name, version):
        return self._one_delta(wavelet_name, "resulting_version", version)

    def delta_starting_at(self, wavelet_name, version):
        return self._one_delta(wavelet_name, "applied_at_version", version)

    def is_delta_boundary(self, wavelet_name, version):
        d = self.delta_ending_at(wavelet_name, version)
        d.addCallback(lambda found: version == 0 or found is not None)
        return d

    def current_version(self, wavelet_name):
        def read(conn):
            row = conn.execute("SELECT version, hash FROM wavelet WHERE name = ?",
                               (wavelet_name,)).fetchone()
            if row is None or row[0] == 0:
                return None
            return (row[0], row[1])
        return self._read(read)

    # -- snapshots --

    def put_snapshot(self, wavelet_name, version, blob):
        if not isinstance(blob, bytes):
            return defer.fail(TypeError("a snapshot is bytes, not %s" % (type(blob).__name__,)))

        def write(conn):
            row = conn.execute(
                "SELECT d.wavelet_id FROM delta d JOIN wavelet w ON w.id = d.wavelet_id "
                "WHERE w.name = ? AND d.resulting_version = ?",
                (wavelet_name, version)).fetchone()
            if row is None:
                raise UnknownVersion("%s: no delta ends at version %r, so no snapshot "
                                     "can be taken there" % (wavelet_name, version))
            conn.execute(
                "INSERT INTO snapshot (wavelet_id, version, blob) VALUES (?, ?, ?) "
                "ON CONFLICT (wavelet_id) DO UPDATE SET version = excluded.version, "
                "blob = excluded.blob WHERE excluded.version > snapshot.version",
                (row[0], version, blob))
        return self._write(write)

    def latest_snapshot(self, wavelet_name):
        def read(conn):
            row = conn.execute(
                "SELECT s.version, s.blob FROM snapshot s JOIN wavelet w "
                "ON w.id = s.wavelet_id WHERE w.name = ?", (wavelet_name,)).fetchone()
            return (row[0], row[1]) if row else None
        return self._read(read)

    # -- wavelet metadata and the inbox --

    def set_wavelet_info(self, wavelet_name, participants, last_modified_ms, hosted):
        try:
            participants = _participants(participants)
        except Exception:
            return defer.fail()

        def write(conn):
            conn.execute(
                "INSERT INTO wavelet (name, last_modified_ms, hosted) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET last_modified_ms = excluded.last_modified_ms, "
                "hosted = excluded.hosted",
                (wavelet_name, last_modified_ms, int(bool(hosted))))
            wavelet_id = conn.execute("SELECT id FROM wavelet WHERE name = ?",
                                      (wavelet_name,)).fetchone()[0]
            _replace_participants(conn, wavelet_id, participants)
        return self._write(write)

    def wavelet_info(self, wavelet_name):
        def read(conn):
            row = conn.execute(
                "SELECT id, version, last_modified_ms, hosted FROM wavelet WHERE name = ?",
                (wavelet_name,)).fetchone()
            if row is None:
                return None
            participants = [a for (a,) in conn.execute(
                "SELECT address FROM participant WHERE wavelet_id = ? ORDER BY position",
                (row[0],))]
            return WaveletInfo(wavelet_name, tuple(participants), row[2], row[1], bool(row[3]))
        return self._read(read)

    def wavelets_of(self, participant, limit=None):
        def read(conn):
            rows = conn.execute(
                "SELECT w.id, w.name, w.version, w.last_modified_ms, w.hosted, r.version "
                "FROM participant p JOIN wavelet w ON w.id = p.wavelet_id "
                "LEFT JOIN read_mark r ON r.address = p.address AND r.wavelet_name = w.name "
                "WHERE p.address = ? ORDER BY w.last_modified_ms DESC, w.name LIMIT ?",
                (participant, _NO_LIMIT if limit is None else limit)).fetchall()
            everyone = _participants_by_wavelet(conn.execute(
                "SELECT q.wavelet_id, q.address FROM participant p "
                "JOIN participant q ON q.wavelet_id = p.wavelet_id "
                "WHERE p.address = ? ORDER BY q.wavelet_id, q.position", (participant,)))
            return [WaveletInfo(name, tuple(everyone.get(wid, ())), modified, version,
                                bool(hosted), read_version)
                    for wid, name, version, modified, hosted, read_version in rows]
        return self._read(read)

    def all_wavelets(self, hosted=None):
        def read(conn):
            if hosted is None:
                rows = conn.execute("SELECT id, name, version, last_modified_ms, hosted "
                                    "FROM wavelet ORDER BY name").fetchall()
            else:
                rows = conn.execute("SELECT id, name, version, last_modified_ms, hosted "
                                    "FROM wavelet WHERE hosted = ? ORDER BY name",
                                    (int(bool(hosted)),)).fetchall()
            everyone = _participants_by_wavelet(conn.execute(
                "SELECT wavelet_id, address FROM participant ORDER BY wavelet_id, position"))
            return [WaveletInfo(name, tuple(everyone.get(wid, ())), modified, version,
                                bool(is_hosted))
                    for wid, name, version, modified, is_hosted in rows]
        return self._read(read)

    def mark_read(self, participant, wavelet_name, version):
        def write(conn):
            conn.execute("INSERT OR REPLACE INTO read_mark (address, wavelet_name, version) "
                         "VALUES (?, ?, ?)", (participant, wavelet_name, version))
        return self._write(write)

    # -- accounts --

    def add_account(self, address, password_hash):
        def write(conn):
            try:
                conn.execute("INSERT INTO account (address, password_hash) VALUES (?, ?)",
                             (address, password_hash))
            except sqlite3.IntegrityError:
                raise AccountExists("there is already an account %s" % (address,))
        return self._write(write)

    def set_password(self, address, password_hash):
        def write(conn):
            if conn.execute("UPDATE account SET password_hash = ? WHERE address = ?",
                            (password_hash, address)).rowcount != 1:
                raise UnknownAccount("there is no account %s" % (address,))
        return self._write(write)

    def get_account(self, address):
        def read(conn):
            row = conn.execute("SELECT address, password_hash FROM account WHERE address = ?",
                               (address,)).fetchone()
            return Account(row[0], row[1]) if row else None
        return self._read(read)

    def accounts(self):
        def read(conn):
            return [a for (a,) in conn.execute("SELECT address FROM account ORDER BY address")]
        return self._read(read)

    def delete_account(self, address):
        def write(conn):
            if conn.execute("DELETE FROM account WHERE address = ?", (address,)).rowcount != 1:
                raise UnknownAccount("there is no account %s" % (address,))
        return self._write(write)

    # -- signer infos --

    def put_signer_info(self, signer_id, domain, blob):
        if not isinstance(signer_id, bytes) or not isinstance(blob, bytes):
            return defer.fail(TypeError("a signer id and its info are bytes"))

        def write(conn):
            conn.execute("INSERT OR REPLACE INTO signer_info (signer_id, domain, blob) "
                         "VALUES (?, ?, ?)", (signer_id, domain, blob))
        return self._write(write)

    def get_signer_info(self, signer_id):
        def read(conn):
            row = conn.execute("SELECT signer_id, domain, blob FROM signer_info "
                               "WHERE signer_id = ?", (signer_id,)).fetchone()
            return SignerInfo(row[0], row[1], row[2]) if row else None
        return self._read(read)

    # -- the federation outbox --

    def outbox_enqueue(self, destination, payload):
        try:
            _payload(payload)
        except TypeError:
            return defer.fail()

        def write(conn):
            return conn.execute("INSERT INTO outbox (destination, payload) VALUES (?, ?)",
                                (destination, payload)).lastrowid
        return self._write(write)

    def outbox_pending(self, destination, limit=100, after=0):
        def read(conn):
            rows = conn.execute(
                "SELECT id, payload FROM outbox WHERE destination = ? AND id > ? "
                "ORDER BY id LIMIT ?", (destination, after, limit))
            return [OutboxItem(i, destination, p) for i, p in rows]
        return self._read(read)

    def outbox_ack(self, destination, item_id):
        def write(conn):
            conn.execute("DELETE FROM outbox WHERE destination = ? AND id = ?",
                         (destination, item_id))
        return self._write(write)

    def outbox_destinations(self):
        def read(conn):
            return [d for (d,) in conn.execute(
                "SELECT DISTINCT destination FROM outbox ORDER BY destination")]
        return self._read(read)

    def outbox_backlog(self):
        def read(conn):
            return dict(conn.execute(
                "SELECT destination, count(*) FROM outbox GROUP BY destination"))
        return self._read(read)

    def outbox_set_retry(self, destination, failures, next_attempt_ms, since_ms=0):
        def write(conn):
            if failures == 0:
                conn.execute("DELETE FROM outbox_retry WHERE destination = ?", (destination,))
            else:
                conn.execute("INSERT INTO outbox_retry "
                             "(destination, failures, next_attempt_ms, since_ms) "
                             "VALUES (?, ?, ?, ?) ON CONFLICT (destination) DO UPDATE SET "
                             "failures = excluded.failures, "
                             "next_attempt_ms = excluded.next_attempt_ms, "
                             "since_ms = excluded.since_ms",
                             (destination, failures, next_attempt_ms, since_ms))
        return self._write(write)

    def outbox_get_retry(self, destination):
        def read(conn):
            row = conn.execute("SELECT failures, next_attempt_ms, since_ms FROM outbox_retry "
                               "WHERE destination = ?", (destination,)).fetchone()
            return RetryState(row[0], row[1], row[2]) if row else None
        return self._read(read)

    def outbox_drop(self, destination):
        def write(conn):
            dropped = conn.execute("DELETE FROM outbox WHERE destination = ?",
                                   (destination,)).rowcount
            conn.execute("DELETE FROM outbox_retry WHERE destination = ?", (destination,))
            return dropped
        return self._write(write)

    # -- life cycle --

    def close(self):
        if self._close_waiters is None:
            self._closed = True
            self._close_waiters = []
            d = defer.gatherResults([self._writer.stop(), self._reader.stop()],
                                    consumeErrors=True)
            d.addCallback(self._threads_ended)
        if self._close_waiters is True:
            return defer.succeed(None)
        d = defer.Deferred()
        self._close_waiters.append(d)
        return d

    def _threads_ended(self, _):
        # Each thread's last act was to schedule this; joining is immediate.
        self._writer.join()
        self._reader.join()
        waiters, self._close_waiters = self._close_waiters, True
        for d in waiters:
            d.callback(None)

