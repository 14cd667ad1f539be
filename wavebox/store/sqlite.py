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

Every write runs on the writer thread of :mod:`wavebox.store.engine` (group
commit) with one connection; reads run on a second thread with its own
connection (WAL lets a reader work while the writer commits), each in its own
read transaction, so a read sees every write whose Deferred fired before the
read was asked for.

The schema is the files under ``schema/sqlite/``; the version reached is
kept in ``PRAGMA user_version``, set in the same transaction as the script.
"""

import os
import sqlite3

from twisted.logger import Logger

from wavebox.store.engine import Connection, DatabaseThread, schema_scripts
from wavebox.store.interface import StoreError
from wavebox.store.sqlstore import SqlStore

log = Logger()

ENGINE = "sqlite"

SCHEMA_VERSION = len(schema_scripts(ENGINE))


class SqliteConnection(Connection):

    BEGIN_WRITE = "BEGIN IMMEDIATE"

    @property
    def in_transaction(self):
        return self.raw.in_transaction


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
    return SqliteConnection(conn)


def migrate(conn, path, upto=None):
    """Apply the schema scripts after the database's ``user_version`` (up to ``upto``)."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise StoreError(
            "%s has store schema version %d, but this wavebox knows only up to %d: "
            "it was written by a newer wavebox" % (path, found, SCHEMA_VERSION))
    for version, name, script in schema_scripts(ENGINE):
        if version <= found or (upto is not None and version > upto):
            continue
        # One transaction per file: the script and the version it reaches
        # commit together, or neither does.
        try:
            conn.executescript("BEGIN IMMEDIATE;\n%s\n;PRAGMA user_version=%d;\nCOMMIT;"
                               % (script, version))
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("store {path}: schema version {version} ({name})", path=path,
                 version=version, name=name)


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
        conn = _connect(path, writer=True).raw
    except sqlite3.Error as e:
        raise StoreError("cannot open the store %s: %s" % (path, e))
    try:
        migrate(conn, path)
    except sqlite3.Error as e:
        raise StoreError("cannot use the store %s: %s" % (path, e))
    finally:
        conn.close()


class SqliteStore(SqlStore):
    """
    The default engine.  Opening creates the file and its schema if needed
    and starts the two database threads; :meth:`close` stops them.
    """

    def __init__(self, path, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        SqlStore.__init__(self)
        self.path = self.where = path
        prepare_database(path)
        self._writer = DatabaseThread(lambda: _connect(path, True), reactor, writer=True,
                                      where=path, errors=(sqlite3.Error,),
                                      on_commit=self._committed)
        self._reader = DatabaseThread(lambda: _connect(path, False), reactor, writer=False,
                                      where=path, errors=(sqlite3.Error,))
        self._writer.start()
        self._reader.start()

    def __repr__(self):
        return "<SqliteStore %s>" % (self.path,)

    def _released(self):
        # Each thread's last act was to schedule the close; joining is immediate.
        self._writer.join()
        self._reader.join()
