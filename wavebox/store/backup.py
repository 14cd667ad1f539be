"""
A copy of the SQLite store in one self-contained file, safely while the
server runs (``wavebox backup DEST``, :mod:`wavebox.cli.backup`).

Copying ``wavebox.sqlite3`` with ``cp`` while wavebox runs is not a backup:
the latest commits live in ``wavebox.sqlite3-wal`` until a checkpoint, and
the two files change under the copy.  SQLite's online backup API copies a
consistent snapshot instead (the server's writer goes on meanwhile), and the
result is switched out of WAL mode so that it is a single file.
"""

import os
import sqlite3


def backup(source, destination):
    """
    Copy the database at ``source`` to the new file ``destination`` (which
    must not exist) and sync it.  Returns the destination's schema version.
    """
    if not os.path.isfile(source):
        raise OSError("no store at %s" % (source,))
    if os.path.exists(destination):
        raise OSError("%s already exists; give a new file name" % (destination,))
    partial = destination + ".partial"
    # The copy holds every wave and the accounts' password hashes: readable
    # by us alone, whatever the umask (sqlite would make it 0644).
    if os.path.exists(partial):
        os.unlink(partial)          # left by a copy that was interrupted
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    src = sqlite3.connect(source)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            version = dst.execute("PRAGMA user_version").fetchone()[0]
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError("the copy fails its check: %s" % (check,))
        finally:
            dst.close()
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    finally:
        src.close()
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(partial, destination)
    return version
