"""``wavebox waves``: every wavelet in the store, or one, with its participants and version."""

import argparse
import sys
import time

from wavebox.admin import AdminError
from wavebox.cli.common import fail, load_config, server_or_store, server_options
from wavebox.config import ConfigError


def parser():
    p = argparse.ArgumentParser(
        prog="wavebox waves",
        parents=[server_options("config", "data-dir", "store", "admin-socket")],
        description="List the wavelets the server keeps (hosted here, or copies of "
                    "wavelets hosted elsewhere), or show one: its version, participants "
                    "and last change.")
    p.add_argument("action", nargs="?", choices=("list", "show"), default="list")
    p.add_argument("wavelet", nargs="?", metavar="WAVELET",
                   help="a wavelet name as 'list' prints it, or a unique part of it (show)")
    return p


def _when(ms):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000.0)) if ms else "never"


def main(argv, out=None):
    out = out or sys.stdout
    p = parser()
    args = p.parse_args(argv)
    if args.action == "show" and not args.wavelet:
        p.error("show needs WAVELET")
    try:
        config = load_config(args)
        waves = server_or_store(config, "waves")
    except ConfigError as e:
        return fail("waves", e)
    except AdminError as e:
        return fail("waves", e, 1)
    if args.action == "list":
        for w in waves:
            out.write("%s  version %d  %s  %s\n" % (
                w["wavelet"], w["version"], "hosted" if w["hosted"] else "remote",
                ", ".join(w["participants"])))
        return 0
    matches = [w for w in waves if w["wavelet"] == args.wavelet] or \
        [w for w in waves if args.wavelet in w["wavelet"]]
    if len(matches) != 1:
        return fail("waves", "%s wavelet matches %r" % (
            "no" if not matches else "more than one", args.wavelet), 1)
    w = matches[0]
    out.write("wavelet: %s\nhosted here: %s\nversion: %d\nlast change: %s UTC\n"
              "participants:\n%s" % (
                  w["wavelet"], "yes" if w["hosted"] else "no", w["version"],
                  _when(w["last_modified_ms"]),
                  "".join("  %s\n" % p for p in w["participants"])))
    return 0
