"""
``wavebox backup DEST`` and ``wavebox restore DEST``: everything a server
needs to come back as itself, while it runs.

A backup is a new directory (mode 0700):

``data/``
    what lives in the data directory: a consistent copy of the SQLite store
    (SQLite's online backup, taken while the server writes), the dialback
    secret (keys handed out before the backup still verify after a
    restore), and ``tls/`` (the self-signed or imported certificate and key);
``files/``
    the files the configuration names outside the data directory: the
    config file itself, ``certificate``, ``private_key``, ``trusted_ca``;
``MANIFEST.json``
    where each file came from, so that ``restore`` can put it back.

The keys are in it: keep backups as safe as the server's key.
"""

import argparse
import json
import os
import shutil
import sqlite3
import sys

from wavebox.cli.common import fail, load_config, server_options
from wavebox.config import ConfigError
from wavebox.store import parse_store_url, store_path
from wavebox.store.backup import backup
from wavebox.xmpp.certs import SELF_SIGNED_DIR
from wavebox.xmpp.dialback import SECRET_FILE

MANIFEST = "MANIFEST.json"


def parser():
    p = argparse.ArgumentParser(
        prog="wavebox backup",
        parents=[server_options("config", "data-dir", "store")],
        description="Copy everything the server needs to come back as itself into DEST, "
                    "a new directory, while the server runs: the SQLite store (a "
                    "consistent copy), the dialback secret, the certificates and keys, "
                    "and the config file.  'wavebox restore DEST' puts them back.")
    p.add_argument("destination", metavar="DEST", help="a new directory (mode 0700)")
    return p


def _copy(source, target):
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    shutil.copy2(source, target)
    os.chmod(target, 0o600)


def make_backup(config, destination):
    """Write the backup; the manifest (a dict)."""
    engine, _ = parse_store_url(config.store)
    if engine == "postgresql":
        from wavebox.store.postgresql import describe
        raise ValueError(
            "--store: %s is a PostgreSQL database: back it up with PostgreSQL's own tool, "
            "pg_dump (pg_dump -Fc -f wavebox.dump %s; pg_restore puts it back), and keep "
            "the dialback secret, certificates and config file beside it"
            % (describe(config.store), describe(config.store)))
    if engine != "sqlite":
        raise ValueError("--store: %s is not an sqlite: store; back it up with its own "
                         "tools" % (config.store,))
    data_dir = os.path.abspath(config.data_dir)
    source = os.path.abspath(store_path(config.store, config.data_dir))
    if os.path.exists(destination):
        raise OSError("%s already exists; give a new directory" % (destination,))
    os.makedirs(destination, mode=0o700)
    manifest = {"data_dir": data_dir, "store": config.store, "data": [], "files": [],
                "notes": []}
    if os.path.commonpath([source, data_dir]) == data_dir:
        store_name = os.path.relpath(source, data_dir)
    else:
        store_name = os.path.basename(source)
        manifest["notes"].append("the store %s is outside the data directory" % (source,))
    store_copy = os.path.join(destination, "data", store_name)
    os.makedirs(os.path.dirname(store_copy), mode=0o700, exist_ok=True)
    manifest["schema_version"] = backup(source, store_copy)
    manifest["data"].append(store_name)
    secret = os.path.join(data_dir, SECRET_FILE)
    if os.path.isfile(secret):
        _copy(secret, os.path.join(destination, "data", SECRET_FILE))
        manifest["data"].append(SECRET_FILE)
    elif config.dialback_secret:
        manifest["notes"].append("the dialback secret is set in the config file")
    tls = os.path.join(data_dir, SELF_SIGNED_DIR)
    if os.path.isdir(tls):
        for name in sorted(os.listdir(tls)):
            path = os.path.join(tls, name)
            if os.path.isfile(path) and not name.endswith(".tmp"):
                _copy(path, os.path.join(destination, "data", SELF_SIGNED_DIR, name))
                manifest["data"].append(os.path.join(SELF_SIGNED_DIR, name))
    for key in ("config", "certificate", "private_key", "trusted_ca"):
        path = getattr(config, key)
        if not path:
            continue
        path = os.path.abspath(path)
        if os.path.commonpath([path, data_dir]) == data_dir:
            relative = os.path.relpath(path, data_dir)
            if relative not in manifest["data"]:
                _copy(path, os.path.join(destination, "data", relative))
                manifest["data"].append(relative)
            continue
        stored = "%s-%s" % (key, os.path.basename(path))
        _copy(path, os.path.join(destination, "files", stored))
        manifest["files"].append({"option": key, "path": path, "stored": stored})
    fd = os.open(os.path.join(destination, MANIFEST), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    return manifest


def main(argv):
    args = parser().parse_args(argv)
    try:
        config = load_config(args)
        manifest = make_backup(config, args.destination)
    except ConfigError as e:
        return fail("backup", e)
    except (ValueError, OSError, sqlite3.Error) as e:
        return fail("backup", e, 1)
    out = sys.stdout
    out.write("backed up %s (schema version %d) to %s:\n" % (
        config.data_dir, manifest["schema_version"], args.destination))
    for name in manifest["data"]:
        out.write("  data/%s\n" % (name,))
    for entry in manifest["files"]:
        out.write("  files/%s  (%s = %s)\n" % (entry["stored"], entry["option"],
                                             entry["path"]))
    for note in manifest["notes"]:
        out.write("note: %s\n" % (note,))
    out.write("it holds the private keys: keep it as safe as the server's key\n")
    return 0
