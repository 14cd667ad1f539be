"""
``wavebox restore BACKUP``: put a ``wavebox backup`` back, into the data
directory of the configuration given (a fresh one, or the old one after a
loss), with no server running there.
"""

import argparse
import json
import os
import shutil
import sys

from wavebox.cli.backup import MANIFEST
from wavebox.cli.common import fail, load_config, server_options
from wavebox.config import ConfigError
from wavebox.store import store_path
from wavebox.store.lock import StoreLocked, acquire


def parser():
    p = argparse.ArgumentParser(
        prog="wavebox restore",
        parents=[server_options("config", "data-dir", "store")],
        description="Put a backup made by 'wavebox backup' back: its data directory "
                    "files (store, dialback secret, tls/) into the data directory of "
                    "this configuration, which must hold no store yet, and the files "
                    "its config named elsewhere (certificate, key, trusted_ca, the "
                    "config file) where they were, when they are missing there.  The "
                    "server must be stopped.")
    p.add_argument("source", metavar="BACKUP", help="the directory 'wavebox backup' made")
    return p


def restore(config, source, out):
    with open(os.path.join(source, MANIFEST), encoding="utf-8") as f:
        manifest = json.load(f)
    data_dir = config.data_dir      # as given, so what is printed reads as typed
    target = store_path(config.store, config.data_dir)
    if target is None:
        raise ValueError("--store: %s is not an sqlite: store (a PostgreSQL store comes "
                         "back with pg_restore)" % (config.store,))
    if os.path.exists(target):
        raise OSError("%s already holds a store; restore into a data directory without "
                      "one (or move it away first)" % (target,))
    lock = acquire(config.store, config.data_dir)      # no server may start meanwhile
    try:
        stored_store = manifest["data"][0]
        for name in manifest["data"]:
            source_path = os.path.join(source, "data", name)
            destination = target if name == stored_store else os.path.join(data_dir, name)
            if os.path.exists(destination) and name != stored_store:
                out.write("kept %s (already there)\n" % (destination,))
                continue
            os.makedirs(os.path.dirname(destination), mode=0o700, exist_ok=True)
            shutil.copy2(source_path, destination)
            os.chmod(destination, 0o600)
            out.write("restored %s\n" % (destination,))
        for entry in manifest["files"]:
            path = entry["path"]
            if os.path.exists(path):
                out.write("kept %s (%s; already there)\n" % (path, entry["option"]))
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            shutil.copy2(os.path.join(source, "files", entry["stored"]), path)
            os.chmod(path, 0o600)
            out.write("restored %s (%s)\n" % (path, entry["option"]))
    finally:
        lock.release()
    for note in manifest.get("notes", ()):
        out.write("note: %s\n" % (note,))


def main(argv, out=None):
    out = out or sys.stdout
    args = parser().parse_args(argv)
    try:
        config = load_config(args)
        restore(config, args.source, out)
    except ConfigError as e:
        return fail("restore", e)
    except StoreLocked as e:
        return fail("restore", "%s: stop it first" % (e,), 1)
    except (ValueError, OSError, KeyError) as e:
        return fail("restore", e, 1)
    out.write("restored; start the server\n")
    return 0
