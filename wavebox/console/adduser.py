"""
``wavebox adduser USER``: make a console account.

The password is asked twice on a terminal (getpass) or read as one line from
stdin (for scripts), hashed with scrypt (:mod:`wavebox.store.accounts`) and
stored in the same store the server uses, found from ``--config`` or from
``--data-dir``/``--store``/``--domain``.  ``USER`` may leave out ``@domain``:
the first hosted domain is meant.  It works while the server runs; the new
account can log in at once.
"""

import argparse
import getpass
import sys

from wavebox.config import ConfigError, load
from wavebox.model.errors import InvalidParticipantId
from wavebox.model.ids import ParticipantId


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="wavebox adduser",
        description="Create a console account (or, with --replace, set a new password) "
                    "in the server's store, running or not.  On a terminal the password "
                    "is asked twice; otherwise one line of stdin is read.")
    p.add_argument("user", metavar="USER", help="USER or USER@DOMAIN")
    p.add_argument("--config", "-c", help="the server's config file")
    p.add_argument("--data-dir", help="the server's data directory")
    p.add_argument("--store", help="the server's store URL (e.g. sqlite:wavebox.sqlite3)")
    p.add_argument("--domain", "-d", action="append",
                   help="a hosted domain (repeatable; the first is the default for USER)")
    p.add_argument("--replace", action="store_true",
                   help="set a new password for an existing account")
    return p.parse_args(argv)


def load_config(args):
    """The server's configuration as far as this command needs it."""
    given = {}
    if args.config:
        given["config"] = args.config
    if args.data_dir:
        given["data_dir"] = args.data_dir
    if args.store:
        given["store"] = args.store
    if args.domain:
        given["domain"] = list(args.domain)
    elif not args.config and "@" in args.user:
        given["domain"] = [args.user.rpartition("@")[2]]
    return load(given)


def account_address(user, config):
    """``USER`` -> ``user@first-domain``; an address must be in a hosted domain."""
    if "@" not in user:
        user = "%s@%s" % (user, config.domains[0])
    participant = ParticipantId(user)
    if participant.domain not in config.domains:
        raise InvalidParticipantId("%s is not in a hosted domain (%s)"
                                   % (participant, ", ".join(config.domains)))
    if not participant.name:
        raise InvalidParticipantId("%r has no user name" % (user,))
    return participant.address


def read_new_password(stdin=None, ask=getpass.getpass):
    """Twice on a terminal, once from a pipe; refuses an empty password."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = ask("Password: ")
        if first != ask("Password again: "):
            raise ValueError("the passwords differ")
    else:
        line = stdin.readline()
        first = line.rstrip("\r\n")
    if not first:
        raise ValueError("the password is empty")
    return first


def _store_account(reactor, config, address, password, replace):
    from twisted.internet import defer
    from wavebox.store import open_store
    from wavebox.store.accounts import hash_password

    store = open_store(config.store, config.data_dir, reactor=reactor)

    @defer.inlineCallbacks
    def work():
        try:
            hashed = hash_password(password)
            if replace:
                yield store.set_password(address, hashed)
            else:
                yield store.add_account(address, hashed)
        finally:
            yield store.close()

    return work()


def main(argv):
    """``wavebox adduser``: the sub-command entry point; returns the exit status."""
    args = parse_args(argv)
    try:
        config = load_config(args)
        address = account_address(args.user, config)
        password = read_new_password()
    except (ConfigError, InvalidParticipantId, ValueError) as e:
        sys.stderr.write("wavebox adduser: %s\n" % (e,))
        return 2
    except (EOFError, KeyboardInterrupt):
        sys.stderr.write("\nwavebox adduser: cancelled\n")
        return 1

    from twisted.internet import task
    from wavebox.store import AccountExists, StoreError, UnknownAccount

    outcome = {}

    def run(reactor):
        d = _store_account(reactor, config, address, password, args.replace)

        def failed(f):
            f.trap(AccountExists, UnknownAccount, StoreError)
            if f.check(AccountExists):
                outcome["error"] = ("%s already has an account "
                                    "(--replace sets a new password)" % (address,))
            elif f.check(UnknownAccount):
                outcome["error"] = "%s has no account to replace" % (address,)
            else:
                outcome["error"] = str(f.value)
        return d.addErrback(failed)

    try:
        task.react(run, [])
    except SystemExit as e:
        if e.code:
            return e.code
    if "error" in outcome:
        sys.stderr.write("wavebox adduser: %s\n" % (outcome["error"],))
        return 1
    sys.stdout.write("%s %s\n" % ("new password for" if args.replace else "created account",
                                  address))
    return 0
