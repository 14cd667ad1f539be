"""
``wavebox status``: the federation outbox backlog per destination domain,
read from the store (SQLite allows a reader beside the running server), so
it works whether or not the server runs.
"""

import argparse
import os
import sys

from twisted.internet import defer, task

from wavebox.cli.common import fail, load_config, server_options
from wavebox.config import ConfigError
from wavebox.federation.outbox import backlog_report
from wavebox.store import StoreError, open_store, store_path
from wavebox.store.lock import holder


def parser():
    return argparse.ArgumentParser(
        prog="wavebox status",
        parents=[server_options("config", "data-dir", "store")],
        description="Print the federation outbox backlog per destination domain: how "
                    "many updates wait for the peer's receipt, and whether the peer is "
                    "being retried.  It reads the store directly, so it works whether "
                    "or not the server runs; the server logs the same backlog when "
                    "delivery fails or resumes.")


def main(argv, out=None):
    out = out or sys.stdout
    args = parser().parse_args(argv)
    try:
        config = load_config(args)
    except ConfigError as e:
        return fail("status", e)
    path = store_path(config.store, config.data_dir)
    if path is not None and not os.path.isfile(path):
        # Opening it would make an empty store, and an empty store says
        # "every update has been received": not what a wrong path means.
        return fail("status", "no store at %s (give the server's --config, or --data-dir "
                              "and --store)" % (path,), 1)
    result = []

    @defer.inlineCallbacks
    def run(reactor):
        try:
            store = open_store(config.store, data_dir=config.data_dir, reactor=reactor)
        except StoreError as e:
            result.append(fail("status", e, 1))
            return
        try:
            lines = yield backlog_report(store, reactor.seconds() * 1000)
        finally:
            yield store.close()
        pid = holder(config.store, config.data_dir)
        out.write("server: %s\n" % ("running (PID %d)" % (pid,) if pid and pid > 0 else
                                    "running" if pid else "not running"))
        if lines:
            out.write("federation outbox (destination, queued updates, state):\n")
            for line in lines:
                out.write("  %s\n" % (line,))
        else:
            out.write("federation outbox: empty, every update has been received\n")
        result.append(0)

    try:
        task.react(run)
    except SystemExit as e:
        if e.code:
            return e.code
    return result[0] if result else 1
