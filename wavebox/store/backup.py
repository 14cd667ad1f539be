"""
``wavebox backup DEST``: copy the SQLite store into one self-contained file,
safely while the server runs.

Copying ``wavebox.sqlite3`` with ``cp`` while wavebox runs is not a backup:
the latest commits live in ``wavebox.sqlite3-wal`` until a checkpoint, and
the two files change under the copy.  SQLite's online backup API copies a
consistent snapshot instead (the server's writer goes on meanwhile), and the
result is switched out of WAL mode so that it is a single file.
"""

import argparse
import os
import sqlite3
import sys

from wavebox.store import DEFAULT_URL, StoreURLError, parse_store_url, store_path


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


def _settings(args):
    """data_dir and store from the config file, overridden by the command line."""
    data_dir, url = "wavebox-data", DEFAULT_URL
    if args.config:
        from wavebox.config import ConfigError, read_config_file
        try:
            values = read_config_file(args.config)
        except ConfigError as e:
            raise ValueError(str(e))
        data_dir = values.get("data_dir", data_dir).strip()
        url = values.get("store", url).strip()
    return (args.data_dir or data_dir), (args.store or url)


def main(argv):
    parser = argparse.ArgumentParser(
        prog="wavebox backup",
        description="Copy the SQLite store to DEST, a new single file, while the "
                    "server runs.  Restore by stopping wavebox and putting the copy "
                    "in place of the store file (removing its -wal and -shm files).")
    parser.add_argument("destination", metavar="DEST",
                        help="the file to write; it must not exist (mode 0600)")
    parser.add_argument("-c", "--config", help="wavebox config file to read data_dir and "
                        "store from")
    parser.add_argument("--data-dir", help="the server's --data-dir")
    parser.add_argument("--store", help="the server's --store URL")
    args = parser.parse_args(argv)
    try:
        data_dir, url = _settings(args)
        engine, _ = parse_store_url(url)
        if engine != "sqlite":
            raise StoreURLError("--store: only an sqlite: store can be backed up, not %s" % (url,))
        source = store_path(url, data_dir)
        version = backup(source, args.destination)
    except (ValueError, OSError, sqlite3.Error) as e:
        sys.stderr.write("wavebox backup: %s\n" % (e,))
        return 1
    sys.stdout.write("backed up %s to %s (schema version %d)\n"
                     % (source, args.destination, version))
    return 0
