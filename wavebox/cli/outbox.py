"""``wavebox outbox``: the federation outbox per destination, or drop one destination's queue."""

import argparse
import sys
import time

from wavebox.admin import AdminError
from wavebox.cli.common import fail, load_config, server_or_store, server_options
from wavebox.config import ConfigError, options_by_key


def parser():
    p = argparse.ArgumentParser(
        prog="wavebox outbox",
        parents=[server_options("config", "data-dir", "store", "admin-socket")],
        description="The updates waiting for each remote domain's receipt; 'drop "
                    "DOMAIN' gives up on one destination: its queued updates are "
                    "forgotten (they are not sent, now or later) and delivery to it "
                    "stops until something new is queued for it.")
    p.add_argument("action", nargs="?", choices=("list", "drop"), default="list")
    p.add_argument("destination", nargs="?", metavar="DOMAIN")
    return p


def _when(ms):
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000.0))


def describe(row, now_ms):
    """One destination's line, as ``wavebox status`` and ``outbox`` print it."""
    if row.get("given_up"):
        state = "GIVEN UP (%s)" % (row["given_up"],)
    elif row["failures"]:
        wait = ((row["next_attempt_ms"] or 0) - now_ms) / 1000.0
        state = "unreachable%s, %d failure(s), %s" % (
            " since %s" % (_when(row["since_ms"]),) if row.get("since_ms") else "",
            row["failures"], "next try in %.0fs" % (wait,) if wait >= 0.5
            else "next try due now")
        if row.get("last_error"):
            state += ": " + row["last_error"]
    else:
        state = "delivering"
    return "%-30s %6d queued  %s" % (row["destination"], row["queued"], state)


def main(argv, out=None):
    out = out or sys.stdout
    p = parser()
    args = p.parse_args(argv)
    try:
        if args.action == "drop":
            if not args.destination:
                p.error("drop needs DOMAIN")
            domain = options_by_key()["domain"].parse(args.destination)
        config = load_config(args)
        if args.action == "drop":
            result = server_or_store(config, "outbox-drop", destination=domain)
            out.write("dropped %d queued update(s) for %s\n" % (result["dropped"], domain))
            return 0
        rows = server_or_store(config, "outbox")
    except ValueError as e:
        return fail("outbox", "DOMAIN: %s" % (e,))
    except ConfigError as e:
        return fail("outbox", e)
    except AdminError as e:
        return fail("outbox", e, 1)
    if not rows:
        out.write("federation outbox: empty, every update has been received\n")
    for row in rows:
        out.write(describe(row, time.time() * 1000) + "\n")
    return 0
