"""``wavebox check DOMAIN``: a peer's wave service found step by step, as the server finds it."""

import argparse
import sys

from twisted.internet import task

from wavebox import config as wconfig
from wavebox.cli.common import load_config, server_options
from wavebox.xmpp.check import run_check


def parser():
    p = argparse.ArgumentParser(
        prog="wavebox check",
        parents=[server_options("config", "nameserver", "dns-timeout",
                                spelling={"dns-timeout": "timeout"})],
        description="Find the wave service of DOMAIN as wavebox does before it sends "
                    "to it (DNS SRV, A/AAAA, disco, the wave. guess) and print each "
                    "step, then try to connect there.  Exit status 0 when found and "
                    "accepting connections, 1 when not, 2 for bad arguments.")
    p.add_argument("target", metavar="DOMAIN", help="the remote domain, e.g. example.com")
    return p


def _exit(status):
    # task.react takes its exit status from a SystemExit, not from the result.
    raise SystemExit(status)


def main(argv):
    p = parser()
    try:
        # argparse prints its own message and exits 2 (0 for --help).
        args = p.parse_args(argv)
        try:
            domain = wconfig.options_by_key()["domain"].parse(args.target)
            config = load_config(args)
        except ValueError as e:
            p.error("DOMAIN: %s" % (e,))
        except wconfig.ConfigError as e:
            p.error(str(e))
    except SystemExit as e:
        return e.code
    try:
        task.react(lambda reactor: run_check(reactor, domain, config, sys.stdout)
                   .addCallback(_exit))
    except SystemExit as e:
        return e.code
    return 0
