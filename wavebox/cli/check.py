"""``wavebox check DOMAIN``: a peer's wave service found step by step, as the server finds it."""

import argparse
import sys

from twisted.internet import task, threads

from wavebox import admin
from wavebox import config as wconfig
from wavebox.cli.common import load_config, server_options
from wavebox.xmpp.check import run_check, run_self_check
from wavebox.xmpp.discovery import DiscoveryFailed, DiscoveryResult
from wavebox.xmpp.resolver import Endpoint


def parser():
    p = argparse.ArgumentParser(
        prog="wavebox check",
        parents=[server_options("config", "data-dir", "domain", "nameserver", "dns-timeout",
                                "trusted-ca", "admin-socket",
                                spelling={"dns-timeout": "timeout"})],
        description="Find the wave service of DOMAIN as wavebox does before it sends "
                    "to it (DNS SRV, A/AAAA, disco, the wave. guess) and print each "
                    "step, then open an XMPP stream there through STARTTLS and check "
                    "its certificate against our trust roots (--trusted-ca, else the "
                    "config's, else the system's), saying which step fails.  While our "
                    "server runs, it does the discovery (through its admin socket).  "
                    "Exit status 0 when found and usable, 1 when not, 2 for bad "
                    "arguments.")
    p.add_argument("target", metavar="DOMAIN", nargs="?",
                   help="the remote domain, e.g. example.com")
    p.add_argument("--self", dest="self_check", action="store_true",
                   help="check our own domains instead (as 'prosodyctl check' does): the "
                        "config, the DNS records the Wave federation guide recommends and "
                        "which are missing, the certificate's names, chain and expiry, and "
                        "whether the addresses DNS gives accept XMPP with STARTTLS")
    return p


def through_the_server(config):
    """
    When our server runs, discovery must be its own: a peer answers disco on
    its own stream to our domain, which reaches the server's listener, not
    ours.  The ``discover`` callable that asks it over the admin socket, or
    None when no server answers there.
    """
    path = admin.socket_path(config)
    if not path:
        return None
    try:
        admin.ask(path, "version", timeout=5)
    except (admin.NotRunning, admin.AdminError):
        return None

    def discover(domain):
        d = threads.deferToThread(admin.ask, path, "discover", timeout=120, domain=domain)
        return d.addCallback(_outcome)
    discover.by = "the running server (through %s)" % (path,)
    return discover


def _outcome(answer):
    if not answer["found"]:
        raise DiscoveryFailed(answer["domain"], answer["condition"], answer["reason"],
                              answer["trace"])
    return DiscoveryResult(answer["domain"], answer["jid"],
                           tuple(Endpoint(*e) for e in answer["endpoints"]),
                           tuple(answer["trace"]))


def _exit(status):
    # task.react takes its exit status from a SystemExit, not from the result.
    raise SystemExit(status)


def main(argv):
    p = parser()
    try:
        # argparse prints its own message and exits 2 (0 for --help).
        args = p.parse_args(argv)
        if args.self_check == bool(args.target):
            p.error("give DOMAIN, or --self")
        try:
            domain = None if args.self_check else \
                wconfig.options_by_key()["domain"].parse(args.target)
            config = load_config(args)
        except ValueError as e:
            p.error("DOMAIN: %s" % (e,))
        except wconfig.ConfigError as e:
            p.error(str(e))
    except SystemExit as e:
        return e.code
    if args.self_check:
        try:
            task.react(lambda reactor: run_self_check(reactor, config, sys.stdout)
                       .addCallback(_exit))
        except SystemExit as e:
            return e.code
        return 0
    discover = through_the_server(config)
    try:
        task.react(lambda reactor: run_check(reactor, domain, config, sys.stdout,
                                             discover=discover).addCallback(_exit))
    except SystemExit as e:
        return e.code
    return 0
