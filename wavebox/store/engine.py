"""
What the SQL engines of the store share: the schema scripts, the connection
as the store's SQL sees it, and the threads that run that SQL off the reactor.

Schema.  Each engine's schema is a numbered series of ``.sql`` files under
``wavebox/store/schema/<engine>/`` (``001_initial.sql``, ``002_...``): file N
upgrades a database from schema version N - 1 to N, so the schema version of
a database is the number of the last file applied to it.  A script is handed
whole to the database (SQLite's ``executescript``, PostgreSQL's simple query
protocol), which parses it: no splitting on ``;`` here, so a ``;`` inside a
string or a trigger body is no trap.  Each engine keeps the version it
reached in its own way (``PRAGMA user_version``, a ``schema_version`` table).

SQL.  :mod:`wavebox.store.sqlstore` writes every query once, with ``?``
placeholders, in the subset SQLite and PostgreSQL share (``ON CONFLICT``,
``RETURNING``, ``CASE`` for a scalar maximum, no ``LIMIT -1``).  A
:class:`Connection` adapts one DB-API connection to it; an engine that spells
placeholders otherwise translates them there.

Threads.  The reactor thread never touches a connection.  Writes go to one
:class:`DatabaseThread` per store in writer mode: it takes the first waiting
request and every other one that queued up meanwhile (typically while the
previous commit was syncing) and runs them in one transaction, each inside
its own SAVEPOINT, so that a request that fails (a
:class:`~wavebox.store.interface.StoreConflict`, say) is rolled back alone
and the rest commit together at the price of one sync: *group commit*.  Its
Deferreds then fire, in order, in the reactor thread.  One writer thread per
store also keeps the interface's promise that appends become durable in the
order they were asked for.  A batch the database aborts as a whole because
of another process (a deadlock, a serialization failure) is run again; any
other failure of the transaction fails every request of the batch.
"""

import functools
import importlib.resources
import queue
import re
import threading
import time

from twisted.internet import defer
from twisted.logger import Logger

from wavebox.store.interface import StoreError

log = Logger()

# How many requests one transaction takes at most; the rest wait for the next.
MAX_BATCH = 1000

# How often a batch aborted by the database for another process's sake is run again.
BATCH_RETRIES = 5

_SCRIPT = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def schema_scripts(engine):
    """
    ``[(version, file name, text)]`` of an engine's schema, in order; the
    files must be numbered 1, 2, 3... without a gap.
    """
    directory = importlib.resources.files("wavebox.store").joinpath("schema", engine)
    found = []
    for entry in directory.iterdir():
        match = _SCRIPT.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    if [v for v, _, _ in found] != list(range(1, len(found) + 1)):
        raise StoreError("the %s schema files are not numbered 001, 002, ...: %s"
                         % (engine, [name for _, name, _ in found]))
    return found


class Connection:
    """
    One DB-API connection in autocommit mode (transactions are begun and
    ended by explicit statements), as :mod:`wavebox.store.sqlstore` uses it.
    Engines subclass it for what differs.
    """

    #: The statement that begins a write transaction.
    BEGIN_WRITE = "BEGIN"
    #: The statement that begins a read transaction (one snapshot for the whole read).
    BEGIN_READ = "BEGIN"

    def __init__(self, raw):
        self.raw = raw

    def execute(self, sql, params=()):
        return self.raw.execute(sql, params)

    def executemany(self, sql, rows):
        return self.raw.executemany(sql, rows)

    @property
    def in_transaction(self):
        raise NotImplementedError

    @property
    def usable(self):
        """False once the connection is broken (the database went away)."""
        return True

    def announce_delta(self, wavelet_name, version):
        """
        Tell the store's other processes, when this transaction commits, that
        the wavelet reached ``version``.  An engine that serves one process
        has nobody to tell.
        """

    def close(self):
        self.raw.close()


@functools.lru_cache(maxsize=512)
def format_placeholders(sql):
    """``?`` placeholders as ``%s`` (psycopg's), for SQL that has no other ``?`` or ``%``."""
    return sql.replace("?", "%s")


class _BatchLost(Exception):
    """The transaction of a batch is gone (the database rolled it back)."""


class DatabaseThread(threading.Thread):
    """
    One connection and the thread that owns it.  Requests are functions
    ``f(connection) -> result``; each comes back as a Deferred fired in the
    reactor thread.  A writer runs every request that is waiting in one
    transaction (group commit); a reader runs them one by one, each in a
    read transaction of its own.

    ``connect()`` makes the :class:`Connection` (in this thread; made again
    when it broke); ``errors`` are the engine's exception classes that
    become :class:`StoreError` naming ``where``; ``retryable(e)`` says
    whether a batch the database aborted may simply be run again.
    """

    def __init__(self, connect, reactor, writer, where, errors=(), retryable=None,
                 on_commit=None):
        threading.Thread.__init__(
            self, name="wavebox-store-%s" % ("writer" if writer else "reader",), daemon=True)
        self._connect = connect
        self._reactor = reactor
        self._writer = writer
        self._where = where
        self._errors = tuple(errors)
        self._retryable = retryable or (lambda e: False)
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

    def _connection(self, conn):
        if conn is not None and conn.usable:
            return conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass
        try:
            return self._connect(), None
        except Exception as e:
            return None, StoreError("cannot open the store %s: %s" % (self._where, e))

    def run(self):
        conn = None
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
                conn, broken = self._connection(conn)
                if conn is None:
                    self._deliver([(d, False, broken) for _, d in batch], committed=False)
                elif self._writer:
                    self._write(conn, batch)
                else:
                    self._read(conn, batch[0])
            if stopping:
                break
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass
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
                if isinstance(value, self._errors):
                    value = StoreError("store %s: %s" % (self._where, value))
                d.errback(value)

    def _read(self, conn, request):
        job, d = request
        try:
            conn.execute(conn.BEGIN_READ)
            try:
                result = job(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        except Exception as e:
            self._deliver([(d, False, e)], committed=False)
        else:
            self._deliver([(d, True, result)], committed=False)

    def _write(self, conn, batch):
        started = time.monotonic()
        for attempt in range(BATCH_RETRIES + 1):
            results = []
            try:
                conn.execute(conn.BEGIN_WRITE)
                for job, d in batch:
                    results.append(self._write_one(conn, job, d))
                conn.execute("COMMIT")
            except Exception as e:
                # The transaction as a whole failed (disk full, I/O error, the
                # database gone, or aborted for another process's sake):
                # nothing of the batch is stored.
                if isinstance(e, _BatchLost):
                    e = e.args[0]
                if conn.usable and conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except Exception:
                        pass
                if attempt < BATCH_RETRIES and conn.usable and self._retryable(e):
                    log.info("store {where}: a transaction of {n} requests was aborted "
                             "({error}); running it again", where=self._where, n=len(batch),
                             error=e)
                    continue
                log.error("store {where}: a transaction of {n} requests failed: {error}",
                          where=self._where, n=len(batch), error=e)
                self._deliver([(d, False, e) for _, d in batch], committed=False)
                return
            self._deliver(results, committed=True, seconds=time.monotonic() - started)
            return

    def _write_one(self, conn, job, d):
        conn.execute("SAVEPOINT request")
        try:
            result = job(conn)
        except Exception as e:
            if not conn.usable or not conn.in_transaction:
                raise _BatchLost(e)
            try:
                conn.execute("ROLLBACK TO SAVEPOINT request")
                conn.execute("RELEASE SAVEPOINT request")
            except Exception as lost:
                raise _BatchLost(lost)
            if self._retryable(e):
                raise _BatchLost(e)   # the database aborted us for another's sake: all again
            return (d, False, e)
        conn.execute("RELEASE SAVEPOINT request")
        return (d, True, result)
