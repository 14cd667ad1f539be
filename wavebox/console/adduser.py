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
