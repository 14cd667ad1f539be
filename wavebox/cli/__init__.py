"""
The ``wavebox`` command: one module per sub-command in this package, each a
thin layer of arguments over the module that owns its subject.  The table
only names them, so ``wavebox --help`` stays fast; the flags every command
that reads the server's configuration shares come from :mod:`.common`.
"""

import importlib
import sys

# name: (module in wavebox.cli, one-line help).  module.main(argv) -> exit status.
SUBCOMMANDS = {
    "check": ("check", "find a peer's wave service (DNS, disco, wave. guess) step by step"),
    "adduser": ("adduser", "create a console account: adduser USER [--config FILE]"),
    "console": ("console", "chat on a wavebox console: console USER [--host H --port P]"),
    "status": ("status", "is the server running, and what is it doing (streams, outbox)"),
    "users": ("users", "console accounts: list, delete USER, password USER"),
    "waves": ("waves", "the wavelets kept: list, show WAVELET"),
    "outbox": ("outbox", "the federation outbox: list, drop DOMAIN"),
    "backup": ("backup", "copy the store, keys, certificates and secret, while the server runs"),
    "restore": ("restore", "put a backup back into a data directory (server stopped)"),
    "gencert": ("gencert", "make a key and certificate for DOMAIN (or a test CA)"),
    "cert": ("cert", "cert import DOMAIN [DIR]: take an ACME client's certificate and key"),
}


def usage(out):
    out.write("usage: wavebox COMMAND [ARGS...] | wavebox --version\n\ncommands:\n")
    for name, (_, text) in sorted(SUBCOMMANDS.items()):
        out.write("  %-10s %s\n" % (name, text))
    out.write("\n'wavebox COMMAND --help' tells more.  The server itself runs as "
              "'twistd -n wavebox'.\n")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        usage(sys.stdout)
        return 0
    if argv[0] in ("--version", "version"):
        from wavebox import __version__
        sys.stdout.write("wavebox %s\n" % (__version__,))
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        sys.stderr.write("wavebox: unknown command %r\n" % (name,))
        usage(sys.stderr)
        return 2
    module = importlib.import_module("wavebox.cli." + SUBCOMMANDS[name][0])
    return module.main(argv[1:]) or 0
