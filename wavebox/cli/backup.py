"""``wavebox backup DEST``: a consistent copy of the SQLite store while the server runs."""

import argparse
import sqlite3
import sys

from wavebox.cli.common import fail, load_config, server_options
from wavebox.config import ConfigError
from wavebox.store import parse_store_url, store_path
from wavebox.store.backup import backup


def parser():
    p = argparse.ArgumentParser(
        prog="wavebox backup",
        parents=[server_options("config", "data-dir", "store")],
        description="Copy the SQLite store to DEST, a new single file, while the "
                    "server runs.  Restore by stopping wavebox and putting the copy "
                    "in place of the store file (removing its -wal and -shm files).")
    p.add_argument("destination", metavar="DEST",
                   help="the file to write; it must not exist (mode 0600)")
    return p


def main(argv):
    args = parser().parse_args(argv)
    try:
        config = load_config(args)
        engine, _ = parse_store_url(config.store)
        if engine != "sqlite":
            return fail("backup", "--store: only an sqlite: store can be backed up, not %s"
                        % (config.store,), 1)
        source = store_path(config.store, config.data_dir)
        version = backup(source, args.destination)
    except ConfigError as e:
        return fail("backup", e)
    except (ValueError, OSError, sqlite3.Error) as e:
        return fail("backup", e, 1)
    sys.stdout.write("backed up %s to %s (schema version %d)\n"
                     % (source, args.destination, version))
    return 0
