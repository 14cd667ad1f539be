"""
The ``wavebox`` command.  Each sub-command lives in the module that owns its
subject; this table only names them, so ``wavebox --help`` stays fast.
"""

import importlib
import sys

# name: (module, function, one-line help).  function(argv) -> exit status.
SUBCOMMANDS = {
    "check": ("wavebox.xmpp.check", "main",
              "find a peer's wave service (DNS, disco, wave. guess) step by step"),
    "adduser": ("wavebox.console.adduser", "main",
                "create a console account: adduser USER [--config FILE]"),
    "console": ("wavebox.console.client", "main",
                "chat on a wavebox console: console USER [--host H --port P]"),
    "status": ("wavebox.federation.outbox", "status_command",
               "show the federation outbox backlog per destination (reads the store)"),
    "backup": ("wavebox.store.backup", "main",
               "copy the SQLite store to a new file, safely while the server runs"),
    "gencert": ("wavebox.xmpp.certs", "main",
                "make a key and certificate for DOMAIN (or a test CA)"),
}


def usage(out):
    out.write("usage: wavebox COMMAND [ARGS...]\n\ncommands:\n")
    for name, (_, _, text) in sorted(SUBCOMMANDS.items()):
        out.write("  %-10s %s\n" % (name, text))
    out.write("\n'wavebox COMMAND --help' tells more.  The server itself runs as "
              "'twistd -n wavebox'.\n")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        usage(sys.stdout)
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        sys.stderr.write("wavebox: unknown command %r\n" % (name,))
        usage(sys.stderr)
        return 2
    module, function, _ = SUBCOMMANDS[name]
    return getattr(importlib.import_module(module), function)(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
