"""``wavebox users``: list, delete, or set the password of console accounts."""

import argparse
import sys

from wavebox.admin import AdminError
from wavebox.cli.common import fail, load_config, server_or_store, server_options
from wavebox.config import ConfigError
from wavebox.console import adduser
from wavebox.model.errors import InvalidParticipantId


def parser():
    p = argparse.ArgumentParser(
        prog="wavebox users",
        parents=[server_options("config", "data-dir", "store", "admin-socket")],
        description="Console accounts: list them, delete one (its console sessions end "
                    "at once; its waves stay), or set a new password.  Through the "
                    "running server when it runs, else on the store.")
    p.add_argument("action", nargs="?", choices=("list", "delete", "password"),
                   default="list")
    p.add_argument("user", nargs="?", metavar="USER",
                   help="USER or USER@DOMAIN (for delete and password)")
    return p


def account(user, config):
    """
    USER@DOMAIN as given; USER alone in the first hosted domain, from the
    config or, without one, from the running server.
    """
    if "@" in user:
        return adduser.account_address(user, config) if config.domains else user
    if not config.domains:
        from wavebox import admin
        path = admin.socket_path(config)
        try:
            config.domain = admin.ask(path, "version")["domains"] if path else []
        except admin.NotRunning:
            pass
        if not config.domain:
            raise ValueError("%s: give USER@DOMAIN (no hosted domain is known here: give "
                             "the server's --config)" % (user,))
    return adduser.account_address(user, config)


def main(argv, out=None):
    out = out or sys.stdout
    p = parser()
    args = p.parse_args(argv)
    if args.action != "list" and not args.user:
        p.error("%s needs USER" % (args.action,))
    try:
        config = load_config(args)
        if args.action == "list":
            for address in server_or_store(config, "users"):
                out.write(address + "\n")
            return 0
        address = account(args.user, config)
        if args.action == "delete":
            result = server_or_store(config, "user-delete", address=address)
            out.write("deleted account %s%s\n" % (address, (
                " (%d console session(s) ended)" % result["sessions_ended"])
                if result["sessions_ended"] else ""))
            return 0
        password = adduser.read_new_password()
        from wavebox.store.accounts import hash_password
        server_or_store(config, "user-password", address=address,
                        password_hash=hash_password(password))
        out.write("new password for %s\n" % (address,))
        return 0
    except (ConfigError, InvalidParticipantId, ValueError) as e:
        return fail("users", e)
    except AdminError as e:
        return fail("users", e, 1)
    except (EOFError, KeyboardInterrupt):
        return fail("users", "cancelled", 1)
