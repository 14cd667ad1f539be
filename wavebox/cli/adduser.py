"""``wavebox adduser USER``: a console account, in the store the server uses."""

import argparse
import os
import sys

from wavebox.admin import AdminError
from wavebox.cli.common import fail, load_config, server_or_store, server_options
from wavebox.config import ConfigError
from wavebox.console import adduser
from wavebox.model.errors import InvalidParticipantId
from wavebox.store import store_path


def parser():
    p = argparse.ArgumentParser(
        prog="wavebox adduser",
        parents=[server_options("config", "data-dir", "store", "domain", "admin-socket")],
        description="Create a console account (or, with --replace, set a new password) "
                    "in the server's store: through the running server when it runs, "
                    "else in the store itself.  On a terminal the password "
                    "is asked twice; otherwise one line of stdin is read.")
    p.add_argument("user", metavar="USER",
                   help="USER or USER@DOMAIN (USER alone: the first hosted domain)")
    p.add_argument("--replace", action="store_true",
                   help="set a new password for an existing account")
    p.add_argument("--create", action="store_true",
                   help="make the store if there is none yet (the server makes it at its "
                        "first start; without --create a missing store is an error, so "
                        "that a wrong --config or --data-dir is not a new, empty store)")
    return p


def config_for(args):
    """Without --config or --domain, USER@DOMAIN names the domain."""
    given = {}
    if not args.config and not args.domain and "@" in args.user:
        given["domain"] = [args.user.rpartition("@")[2]]
    return load_config(args, need_domain=True, **given)


def missing_store(config):
    """The path of the SQLite store ``config`` names when it does not exist yet, else None."""
    path = store_path(config.store, config.data_dir)
    return path if path is not None and not os.path.exists(path) else None


def main(argv):
    args = parser().parse_args(argv)
    try:
        config = config_for(args)
        address = adduser.account_address(args.user, config)
        missing = missing_store(config)
        if missing and not args.create:
            return fail("adduser", "no store at %s: give the server's --config (or "
                                   "--data-dir and --store), or --create to make a new "
                                   "store there" % (missing,), 1)
        password = adduser.read_new_password()
    except (ConfigError, InvalidParticipantId, ValueError) as e:
        return fail("adduser", e)
    except (EOFError, KeyboardInterrupt):
        sys.stderr.write("\n")
        return fail("adduser", "cancelled", 1)
    from wavebox.store.accounts import hash_password
    try:
        server_or_store(config, "user-password" if args.replace else "user-add",
                        create=args.create, address=address,
                        password_hash=hash_password(password))
    except AdminError as e:
        return fail("adduser", e, 1)
    sys.stdout.write("%s %s\n" % ("new password for" if args.replace else "created account",
                                  address))
    return 0
