"""
The durable wavelet store: applied-delta bytes per wavelet, snapshots, the
inbox, accounts, signer infos and the federation outbox.

:func:`open_store` turns the ``--store`` URL into an engine; everything above
the store talks to it only through :class:`~wavebox.store.interface.IWaveletStore`.

URLs:

``sqlite:PATH``
    The embedded SQLite engine (the default, ``sqlite:wavebox.sqlite3``).  A
    relative PATH is taken under the data directory.
``postgresql://USER@HOST[:PORT]/DB``
    A PostgreSQL database, which several wavebox processes serving one
    domain share (libpq's URL: a password, ``?sslmode=...`` may follow).
``memory:``
    Everything in memory, lost at exit: for tests.

An engine is one module (``sqlite.py``, ``postgresql.py``) over the shared
SQL of ``sqlstore.py`` and the threads of ``engine.py``, with its schema as
numbered files under ``schema/<engine>/``.
"""

import os

from wavebox.store.interface import (  # noqa: F401  (the store's public names)
    Account, AccountExists, IWaveletStore, OutboxItem, RetryState, SignerInfo,
    StoreClosed, StoreConflict, StoredDelta, StoreError, UnknownAccount,
    UnknownVersion, WaveletInfo)

DEFAULT_URL = "sqlite:wavebox.sqlite3"

ENGINES = ("sqlite", "postgresql", "memory")

_USE = "use sqlite:PATH, postgresql://USER@HOST/DB or memory:"


class StoreURLError(StoreError, ValueError):
    """The ``--store`` URL does not name a store this wavebox can open."""


def parse_store_url(url):
    """
    Split a store URL into ``(engine, argument)``, checking only its form.
    Raises ValueError with a short reason (the caller names the option).
    """
    if not isinstance(url, str) or ":" not in url:
        raise ValueError("not a store URL: %r (%s)" % (url, _USE))
    engine, _, argument = url.partition(":")
    engine = engine.strip().lower()
    if engine == "postgres":
        engine = "postgresql"
    if engine not in ENGINES:
        raise ValueError("unknown store engine %r in %r (%s)" % (engine, url, _USE))
    if engine == "postgresql":
        from wavebox.store.postgresql import check_url
        return engine, check_url(url.strip())
    if engine == "sqlite" and not argument.strip():
        raise ValueError("sqlite: needs a file name, as in sqlite:wavebox.sqlite3")
    if engine == "memory" and argument.strip():
        raise ValueError("memory: takes no argument, not %r" % (argument,))
    return engine, argument.strip()


def store_path(url, data_dir):
    """The file an ``sqlite:`` URL names: relative paths live under ``data_dir``."""
    engine, argument = parse_store_url(url)
    if engine != "sqlite":
        return None
    return os.path.join(data_dir, os.path.expanduser(argument))


def open_store(url=DEFAULT_URL, data_dir=".", reactor=None):
    """
    Open the store ``url`` names (creating the database and the directory
    that holds it if needed) and return its :class:`IWaveletStore`.  A bad URL
    raises :class:`StoreURLError` naming ``--store``; a database that cannot
    be used raises :class:`StoreError`.
    """
    try:
        engine, _ = parse_store_url(url)
    except ValueError as e:
        raise StoreURLError("--store: %s" % (e,))
    if engine == "memory":
        from wavebox.store.memory import MemoryStore
        return MemoryStore()
    if engine == "postgresql":
        from wavebox.store.postgresql import PostgresStore
        return PostgresStore(url.strip(), reactor=reactor)
    from wavebox.store.sqlite import SqliteStore
    path = store_path(url, data_dir)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    except OSError as e:
        raise StoreError("--store: cannot create the directory for %s: %s" % (path, e.strerror))
    return SqliteStore(path, reactor=reactor)
