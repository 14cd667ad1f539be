"""
Console accounts as ``wavebox adduser USER`` (:mod:`wavebox.cli.adduser`)
makes them.

The password is asked twice on a terminal (getpass) or read as one line from
stdin (for scripts), hashed with scrypt (:mod:`wavebox.store.accounts`) and
stored in the same store the server uses, found from ``--config`` or from
``--data-dir``/``--store``/``--domain``.  ``USER`` may leave out ``@domain``:
the first hosted domain is meant.  It works while the server runs; the new
account can log in at once.
"""

import getpass
import sys

from wavebox.model.errors import InvalidParticipantId
from wavebox.model.ids import ParticipantId


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


def store_account(config, address, password, replace):
    """Store the account (run under its own reactor); None, or why it failed."""
    from twisted.internet import defer, task
    from wavebox.store import AccountExists, StoreError, UnknownAccount, open_store
    from wavebox.store.accounts import hash_password

    outcome = {}

    @defer.inlineCallbacks
    def run(reactor):
        store = None
        try:
            store = open_store(config.store, config.data_dir, reactor=reactor)
            hashed = hash_password(password)
            if replace:
                yield store.set_password(address, hashed)
            else:
                yield store.add_account(address, hashed)
        except AccountExists:
            outcome["error"] = ("%s already has an account "
                                "(--replace sets a new password)" % (address,))
        except UnknownAccount:
            outcome["error"] = "%s has no account to replace" % (address,)
        except StoreError as e:
            outcome["error"] = str(e)
        finally:
            if store is not None:
                yield store.close()

    try:
        task.react(run, [])
    except SystemExit as e:
        if e.code:
            return outcome.get("error", "exit status %s" % (e.code,))
    return outcome.get("error")
