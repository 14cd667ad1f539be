"""``wavebox console USER``: log in to a wavebox console and chat."""

import argparse

from wavebox.cli.common import fail, load_config, server_options
from wavebox.config import ConfigError
from wavebox.console.client import run


def parser():
    p = argparse.ArgumentParser(
        prog="wavebox console", parents=[server_options("config")],
        description="Connect to a wavebox console, log in as USER and chat.")
    p.add_argument("user", metavar="USER",
                   help="user name, USER or USER@DOMAIN (the server's first "
                        "domain when left out)")
    p.add_argument("--host", default=None,
                   help="console address (default: console_interface of --config, "
                        "else 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="console port (default: console_port of --config, else 9876)")
    return p


def target(args, config):
    """Where the console listens: the flags, else the server's configuration."""
    host = config.console_interface
    if host in ("", "*", "0.0.0.0", "::"):
        host = "127.0.0.1"          # listening everywhere includes localhost
    return (args.host or host,
            args.port if args.port is not None else config.console_port)


def main(argv):
    args = parser().parse_args(argv)
    try:
        config = load_config(args)
    except ConfigError as e:
        return fail("console", e)
    host, port = target(args, config)
    return run(args.user, host, port)
