"""
The shared store: PostgreSQL, for several wavebox processes serving one
domain (issue 12).  ``--store postgresql://USER@HOST[:PORT]/DB``.

Driver.  psycopg 3 (the maintained PostgreSQL driver), blocking, called from
threads so that the reactor thread never waits on the database: writes on
the group-commit writer thread of :mod:`wavebox.store.engine` (one
connection; appends become durable in the order asked for, many per
commit), reads from a Twisted thread pool (``deferToThreadPool``) over a
psycopg-pool connection pool, each read in one REPEATABLE READ READ ONLY
transaction (one snapshot).  A connection that breaks (the database
restarted) is replaced on the next request; the requests it was running
fail with :class:`StoreError`.

Durability.  PostgreSQL's defaults (``fsync=on``, ``synchronous_commit=on``):
a COMMIT returns once the WAL is flushed, and only then does an append's
Deferred fire.

One writer per wavelet, decided by the database.  An append reads the
wavelet's row, then moves its version with a compare-and-set UPDATE (``WHERE
version = applied_at_version``); PostgreSQL makes a second process's UPDATE
of the same row wait for the first's transaction, then finds the version
changed and updates nothing, which is a :class:`StoreConflict`; the unique
(wavelet, version) key of ``delta`` backs it.  A batch PostgreSQL aborts as
a deadlock (two processes' batches taking the same rows in another order)
is run again.

Every process hears of every delta.  An append also runs ``pg_notify`` on
the channel ``wavebox_delta`` with ``VERSION WAVELET-NAME``; PostgreSQL
delivers it to every listening session when (and only if) the transaction
commits.  A listener thread per store LISTENs and calls the store's
``change_observers`` in the reactor thread.  After a lost connection it
listens again and reports every wavelet as possibly changed (version None).

One deliverer per destination.  :meth:`PostgresStore.outbox_claim` takes a
session-level advisory lock (``pg_try_advisory_lock``) named after the
destination on a connection of its own: held until released or until the
process's session ends, which it does when the process dies, however it
dies, so another process takes the queue over on its next try.

Schema.  The files under ``schema/postgresql/``; the version reached is the
one row of ``schema_version``, written in the same transaction as the file
(PostgreSQL's DDL is transactional).  Processes that start together take an
advisory lock first, so one migrates and the others find it done.
"""

import os
import threading
import time
from urllib.parse import urlsplit

import psycopg
import psycopg.errors
import psycopg_pool
from psycopg.pq import TransactionStatus
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from wavebox.store.engine import Connection, DatabaseThread, format_placeholders, schema_scripts
from wavebox.store.interface import StoreClosed, StoreError
from wavebox.store.sqlstore import SqlStore

log = Logger()

ENGINE = "postgresql"

SCHEMA_VERSION = len(schema_scripts(ENGINE))

#: The notification channel of committed deltas.
CHANNEL = "wavebox_delta"

#: The notification channel of :meth:`PostgresStore.broadcast`.
BROADCAST = "wavebox_broadcast"

#: The first key of the advisory locks that say which process delivers a
#: destination's outbox (the second is the hash of the destination).
OUTBOX_LOCKS = 0x6f757462

#: pg_advisory_xact_lock key taken while the schema is created or migrated ("wave").
MIGRATION_LOCK = 0x77617665

#: Reader threads (and pooled connections) per store.
READERS = 4

CONNECT_TIMEOUT = 15


def check_url(url):
    """
    Refuse a ``postgresql://`` URL without USER, HOST or DB; ValueError with
    a short reason.  (libpq reads the rest: port, password, ``?sslmode=``.)
    """
    try:
        parts = urlsplit(url)
        parts.port
    except ValueError as e:
        raise ValueError("%r is not a PostgreSQL URL: %s" % (url, e))
    if parts.scheme not in ("postgresql", "postgres") or not parts.netloc:
        raise ValueError("%r: use postgresql://USER@HOST[:PORT]/DB" % (url,))
    if not parts.username or not parts.hostname or parts.path.strip("/") == "":
        raise ValueError("%r needs a user, a host and a database: "
                         "postgresql://USER@HOST[:PORT]/DB" % (url,))
    return url


def describe(url):
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = "%s@%s" % (parts.username, parts.hostname)
    if parts.port:
        netloc += ":%d" % (parts.port,)
    return parts._replace(netloc=netloc).geturl()


class PostgresConnection(Connection):

    BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

    def execute(self, sql, params=()):
        return self.raw.execute(format_placeholders(sql), params)

    def executemany(self, sql, rows):
        cursor = self.raw.cursor()
        cursor.executemany(format_placeholders(sql), rows)
        return cursor

    @property
    def in_transaction(self):
        return self.raw.info.transaction_status in (TransactionStatus.INTRANS,
                                                    TransactionStatus.INERROR)

    @property
    def usable(self):
        return not (self.raw.closed or self.raw.broken)

    def announce_delta(self, wavelet_name, version):
        self.raw.execute("SELECT pg_notify(%s, %s)", (CHANNEL, "%d %s" % (version, wavelet_name)))


def _retryable(e):
    return isinstance(e, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure))


def _connect(url):
    return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)


def prepare_database(url, upto=None):
    """
    Create or upgrade the schema of the database ``url`` names (up to
    ``upto``); its schema version.  Raises :class:`StoreError`.
    """
    where = describe(url)
    try:
        conn = _connect(url)
    except psycopg.Error as e:
        raise StoreError("cannot connect to the store %s: %s" % (where, str(e).strip()))
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            found = row[0] if row else 0
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            if found > SCHEMA_VERSION:
                raise StoreError(
                    "%s has store schema version %d, but this wavebox knows only up to %d: "
                    "it was written by a newer wavebox" % (where, found, SCHEMA_VERSION))
            for version, name, script in schema_scripts(ENGINE):
                if version <= found or (upto is not None and version > upto):
                    continue
                with conn.transaction():
                    conn.execute(script)      # the whole file, parsed by PostgreSQL
                    conn.execute("UPDATE schema_version SET version = %s", (version,))
                found = version
                log.info("store {where}: schema version {version} ({name})", where=where,
                         version=version, name=name)
        return found
    except psycopg.Error as e:
        raise StoreError("cannot use the store %s: %s" % (where, str(e).strip()))
    finally:
        conn.close()


class _PooledReaders:
    """Reads on a thread pool, each on a pooled connection in its own read transaction."""

    def __init__(self, url, reactor, size):
        self._reactor = reactor
        self._where = describe(url)
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=size, open=False, name="wavebox-store",
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT})
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except psycopg_pool.PoolTimeout:
            self._pool.close()
            raise StoreError("cannot connect to the store %s" % (self._where,))
        self._threads = ThreadPool(minthreads=0, maxthreads=size, name="wavebox-store-reader")
        self._threads.start()
        self._running = set()

    def _run(self, job):
        with self._pool.connection() as raw:
            conn = PostgresConnection(raw)
            conn.execute(conn.BEGIN_READ)
            try:
                return job(conn)
            finally:
                if conn.usable and conn.in_transaction:
                    conn.execute("COMMIT")

    def _wrap(self, failure):
        if failure.check(psycopg.Error):
            raise StoreError("store %s: %s" % (self._where, str(failure.value).strip()))
        return failure

    def submit(self, job):
        d = deferToThreadPool(self._reactor, self._threads, self._run, job)
        d.addErrback(self._wrap)
        self._running.add(d)
        d.addBoth(self._done, d)
        return d

    def _done(self, result, d):
        self._running.discard(d)
        return result

    def stop(self):
        """Fires once the reads already asked for are done and the pool is closed."""
        done = defer.DeferredList(list(self._running))

        def close(_):
            self._threads.stop()
            self._pool.close()
        done.addCallback(close)
        return done


class _Listener(threading.Thread):
    """LISTENs on :data:`CHANNEL`; calls ``changed(wavelet_name, version)`` in the reactor."""

    def __init__(self, url, reactor, changed, told):
        threading.Thread.__init__(self, name="wavebox-store-listener", daemon=True)
        self._url = url
        self._reactor = reactor
        self._changed = changed
        self._told = told
        self._stopping = threading.Event()
        self.listening = threading.Event()

    def stop(self):
        self._stopping.set()

    def run(self):
        lost = False
        while not self._stopping.is_set():
            try:
                conn = _connect(self._url)
            except psycopg.Error as e:
                log.warn("store {where}: cannot listen for other processes' deltas: {e}",
                         where=describe(self._url), e=str(e).strip())
                self._stopping.wait(1.0)
                continue
            try:
                conn.execute("LISTEN %s" % (CHANNEL,))
                conn.execute("LISTEN %s" % (BROADCAST,))
                self.listening.set()
                if lost:
                    # What was said while we were away is lost: anything may have changed.
                    self._reactor.callFromThread(self._changed, None, None)
                while not self._stopping.is_set():
                    for notify in conn.notifies(timeout=0.5):
                        first, _, rest = notify.payload.partition(" ")
                        if notify.channel == CHANNEL:
                            self._reactor.callFromThread(self._changed, rest, int(first))
                        else:
                            self._reactor.callFromThread(self._told, first, rest)
            except psycopg.Error as e:
                if not self._stopping.is_set():
                    log.warn("store {where}: lost the connection that listens for other "
                             "processes' deltas ({e}); listening again",
                             where=describe(self._url), e=str(e).strip())
                    lost = True
                    time.sleep(0.2)
            finally:
                conn.close()


class PostgresStore(SqlStore):
    """
    The shared engine.  Opening connects, creates or migrates the schema,
    and starts the writer, the readers and the listener; :meth:`close` stops them.
    """

    #: Other processes may use the same database (the federation outbox
    #: then watches for queues they leave behind).
    shared = True

    def __init__(self, url, reactor=None, readers=READERS):
        if reactor is None:
            from twisted.internet import reactor
        SqlStore.__init__(self)
        self.url = check_url(url)
        self.where = describe(url)
        self._token = os.urandom(8).hex()    # tells our own broadcasts from the others'
        prepare_database(url)
        self._reader = _PooledReaders(url, reactor, readers)
        self._writer = DatabaseThread(lambda: PostgresConnection(_connect(url)), reactor,
                                      writer=True, where=self.where, errors=(psycopg.Error,),
                                      retryable=_retryable, on_commit=self._committed)
        self._writer.start()
        self._claims = DatabaseThread(lambda: PostgresConnection(_connect(url)), reactor,
                                      writer=False, where=self.where, errors=(psycopg.Error,))
        self._claims.start()
        self._claimed = (None, set())       # (connection, destinations): the claims thread's
        self._listener = _Listener(url, reactor, self._changed, self._told)
        self._listener.start()

    def __repr__(self):
        return "<PostgresStore %s>" % (self.where,)

    def _changed(self, wavelet_name, version):
        if self._closed:
            return
        for observe in list(self.change_observers):
            try:
                observe(wavelet_name, version)
            except Exception:
                log.failure("a change observer of the store failed")

    def _told(self, token, message):
        topic, _, text = message.partition(" ")
        if self._closed or token == self._token:
            return
        for observe in list(self.broadcast_observers):
            try:
                observe(topic, text)
            except Exception:
                log.failure("a broadcast observer of the store failed")

    def broadcast(self, topic, text):
        if not topic or " " in topic:
            return defer.fail(ValueError("a broadcast topic is one word, not %r" % (topic,)))
        message = "%s %s %s" % (self._token, topic, text)
        return self._write(lambda conn: conn.execute("SELECT pg_notify(?, ?)",
                                                     (BROADCAST, message)) and None)

    # -- one deliverer per destination --

    def _held(self, conn):
        held_on, destinations = self._claimed
        if held_on is not conn:
            # A new connection (the last one broke): whatever it held is gone.
            destinations = set()
            self._claimed = (conn, destinations)
        return destinations

    def outbox_claim(self, destination):
        if self._closed:
            return defer.fail(StoreClosed("the store %s is closed" % (self.where,)))

        def claim(conn):
            held = self._held(conn)
            if destination not in held and conn.execute(
                    "SELECT pg_try_advisory_lock(?::integer, hashtext(?))",
                    (OUTBOX_LOCKS, destination)).fetchone()[0]:
                held.add(destination)
            return destination in held
        return self._claims.submit(claim)

    def outbox_release(self, destination):
        if self._closed:
            return defer.succeed(None)

        def release(conn):
            held = self._held(conn)
            if destination in held:
                held.discard(destination)
                conn.execute("SELECT pg_advisory_unlock(?::integer, hashtext(?))",
                             (OUTBOX_LOCKS, destination))
        return self._claims.submit(release)

    def _runners(self):
        return [self._writer, self._reader, self._claims]

    def _released(self):
        self._listener.stop()
        self._writer.join()
        self._claims.join()
