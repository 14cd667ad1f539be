"""
``wavebox status``: whether the server runs, and what it is doing: its
version and uptime, its S2S streams and waiting routes, console sessions,
and the federation outbox per destination.  From the running server's admin
socket; when no server answers there, from the lock and the store (SQLite
allows a reader beside a server).  Exit status 0 when the server runs, 3
when it does not (as ``systemctl status``), 1 or 2 for errors.
"""

import argparse
import os
import sys
import time

from twisted.internet import defer, task

from wavebox import admin
from wavebox.cli.common import fail, load_config, server_options
from wavebox.cli.outbox import describe
from wavebox.config import ConfigError
from wavebox.store import StoreError, open_store, store_path
from wavebox.store.lock import holder

NOT_RUNNING = 3


def parser():
    return argparse.ArgumentParser(
        prog="wavebox status",
        parents=[server_options("config", "data-dir", "store", "admin-socket")],
        description="Say whether the server runs and what it is doing (version, uptime, "
                    "S2S streams, routes waiting for a stream, console sessions) and "
                    "print the federation outbox backlog per destination.  Exit status 0 "
                    "when the server runs, 3 when it does not.")


def duration(seconds):
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")]
    shown = [("%d%s" % (n, unit)) for n, unit in parts if n][:2]
    return " ".join(shown) or "0s"


def print_live(status, out):
    out.write("server: running (PID %d), wavebox %s, up %s, %s mode for %s\n" % (
        status["pid"], status["version"], duration(status["uptime"]), status["mode"],
        ", ".join(status["domains"])))
    out.write("config: %s; store: %s\n" % (status["config"] or "none (defaults)",
                                          status["store"]))
    streams = status["streams"]
    out.write("S2S streams: %d\n" % (len(streams),))
    for s in streams:
        out.write("  %-8s %-22s %-6s %s\n" % (
            s["direction"], s["peer"], "TLS" if s["tls"] else "plain",
            ", ".join(s["authenticated"]) or "(not authenticated yet)"))
    waiting = [r for r in status["routes"] if r["queued"] or r["failures"]]
    if waiting:
        out.write("routes waiting for a stream:\n")
        for r in waiting:
            out.write("  %s -> %s  %d stanza(s) queued%s\n" % (
                r["local"], r["remote"], r["queued"],
                ", %d failure(s), next attempt in %.0fs" % (r["failures"], r["retry_in"] or 0)
                if r["failures"] else ""))
    out.write("console sessions: %d\n" % (status["console_sessions"],))
    print_outbox(status["outbox"], out)


def print_outbox(rows, out):
    if not rows:
        out.write("federation outbox: empty, every update has been received\n")
        return
    out.write("federation outbox (destination, queued updates, state):\n")
    now_ms = time.time() * 1000
    for row in rows:
        out.write("  %s\n" % (describe(row, now_ms),))


def _stored_outbox(config):
    """The outbox rows read from the store directly (no lock: SQLite allows a reader)."""
    result = []

    @defer.inlineCallbacks
    def run(reactor):
        try:
            store = open_store(config.store, data_dir=config.data_dir, reactor=reactor)
        except StoreError as e:
            result.append(e)
            return
        try:
            result.append((yield admin.StoreCommands(store, config).outbox()))
        finally:
            yield store.close()

    try:
        task.react(run)
    except SystemExit:
        pass
    if not result or isinstance(result[0], Exception):
        raise StoreError(str(result[0]) if result else "the store could not be read")
    return result[0]


def main(argv, out=None):
    out = out or sys.stdout
    args = parser().parse_args(argv)
    try:
        config = load_config(args)
    except ConfigError as e:
        return fail("status", e)
    path = admin.socket_path(config)
    if path:
        try:
            print_live(admin.ask(path, "status"), out)
            return 0
        except admin.NotRunning:
            pass
        except admin.AdminError as e:
            return fail("status", "the server's admin socket %s: %s" % (path, e), 1)
    store = store_path(config.store, config.data_dir)
    if store is not None and not os.path.isfile(store):
        # Opening it would make an empty store, and an empty store says
        # "every update has been received": not what a wrong path means.
        return fail("status", "no store at %s (give the server's --config, or --data-dir "
                              "and --store)" % (store,), 1)
    pid = holder(config.store, config.data_dir)
    if pid:
        out.write("server: running%s, but its admin socket %s does not answer\n"
                  % (" (PID %d)" % (pid,) if pid > 0 else "", path or "(off)"))
    else:
        out.write("server: not running\n")
    try:
        print_outbox(_stored_outbox(config), out)
    except StoreError as e:
        return fail("status", e, 1)
    return 0 if pid else NOT_RUNNING
