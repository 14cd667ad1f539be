"""
Who may log in, and how often one may try: the login policy of every front
end that takes a user name and a password (the console now, the web client
of issue 14 later), so that they share the same accounts and the same
limits.

Two things are guarded (issue 9, finding 5):

- **Which users exist is not told by timing.**  An unknown user, a user of a
  domain we do not host or a name that is no address costs one scrypt
  against a dummy hash with the parameters ``wavebox adduser`` uses, as a
  wrong password costs one against the stored hash; the answer is the same
  line.
- **Guessing is slow.**  Every attempt counts as a failure from the moment
  it starts (so a thousand parallel attempts count a thousand), per account
  and per client address (an IPv6 client by its /64).  After
  ``account_failures`` failures of one account, or ``ip_failures`` from
  one address, each further attempt must wait: 1 s, then 2, 4, ... up to
  ``backoff_max``.  An attempt during the wait is refused without looking
  at the password, so even the right one does not log in; the refusal says
  when to try again.  A success forgives the account's failures and takes
  back its own count from the address; failures are forgotten after an hour
  without any.  Unknown accounts are counted exactly as known ones, or the
  limits would tell them apart.

The tables are bounded (``max_entries`` each, the oldest forgotten first),
so that a stranger trying millions of names cannot grow them without end.
"""

import ipaddress
import math
from collections import OrderedDict

from twisted.internet import defer
from twisted.logger import Logger

from wavebox.clock import default_clock
from wavebox.model.errors import InvalidParticipantId
from wavebox.model.ids import ParticipantId
from wavebox.store import accounts

log = Logger()

# The defaults of --login-account-failures, --login-ip-failures and
# --login-backoff-max: said here, where they mean something, and read by the
# option table (wavebox.config), which sits above the server core.
DEFAULT_ACCOUNT_FAILURES = 5
DEFAULT_IP_FAILURES = 20
DEFAULT_BACKOFF_MAX = 300.0
#: The first wait, in seconds; each further failure doubles it.
BACKOFF_BASE = 1.0
#: Seconds without a failure after which an account or address starts afresh.
FORGET_AFTER = 3600.0
#: Entries of each table; the least recently failed are forgotten first.
DEFAULT_MAX_ENTRIES = 10000
#: The prefix an IPv6 client is counted by: one site usually has a /64.
IPV6_PREFIX = 64


class LoginRefused(Exception):
    """
    A login did not succeed; ``str()`` is the one line to show the user.
    ``retry_after`` is the number of seconds before the next attempt may
    succeed (0: at once).
    """

    def __init__(self, message, retry_after=0):
        Exception.__init__(self, message)
        self.retry_after = retry_after


class WrongCredentials(LoginRefused):
    """The user name or the password is wrong (which one is not said)."""


class TooManyFailures(LoginRefused):
    """The account or the client address is waiting out its back-off."""


def client_key(host):
    """The address a client is counted by: IPv4 as it is, IPv6 by its /64."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return str(host)
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network("%s/%d" % (address, IPV6_PREFIX), strict=False))
    return str(address)


class _Failures:
    """Failure counts and waits of one kind of key (accounts, or addresses)."""

    def __init__(self, free, backoff_max, max_entries):
        self.free = free
        self.backoff_max = backoff_max
        self.max_entries = max_entries
        self.entries = OrderedDict()      # key -> [failures, wait until, last failure]

    def wait(self, key, now):
        """Seconds ``key`` must still wait (0: it may try)."""
        entry = self.entries.get(key)
        return max(0.0, entry[1] - now) if entry is not None else 0.0

    def charge(self, key, now):
        """Count an attempt as a failure; past ``free`` failures, it starts a wait."""
        self._forget_old(now)
        entry = self.entries.pop(key, None) or [0, 0.0, now]
        entry[0] += 1
        entry[2] = now
        beyond = entry[0] - self.free
        if beyond > 0:
            delay = min(self.backoff_max, BACKOFF_BASE * 2 ** min(beyond - 1, 32))
            entry[1] = max(entry[1], now + delay)
        self.entries[key] = entry
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return entry

    def take_back(self, key):
        """An attempt charged to ``key`` succeeded: it was no failure."""
        entry = self.entries.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] <= self.free:
            entry[1] = 0.0
        if entry[0] <= 0:
            del self.entries[key]

    def forgive(self, key):
        self.entries.pop(key, None)

    def _forget_old(self, now):
        while self.entries:
            key, entry = next(iter(self.entries.items()))
            if now - entry[2] < FORGET_AFTER or entry[1] > now:
                return
            del self.entries[key]


class LoginGuard:
    """
    ``server`` is the WaveServer: its hosted domains, and its store's
    accounts (looked up when a login is tried, so the store may be opened
    after the guard is made).  ``verify(password, stored)`` checks a
    password off the reactor thread (a Deferred of a bool); ``clock`` an
    IReactorTime (``task.Clock`` in tests).
    """

    def __init__(self, server, clock=None, verify=accounts.verify_password_in_thread,
                 account_failures=DEFAULT_ACCOUNT_FAILURES, ip_failures=DEFAULT_IP_FAILURES,
                 backoff_max=DEFAULT_BACKOFF_MAX, max_entries=DEFAULT_MAX_ENTRIES,
                 dummy=None):
        clock = default_clock(clock)
        self.server = server
        self.clock = clock
        self.verify = verify
        self.accounts = _Failures(account_failures, backoff_max, max_entries)
        self.addresses = _Failures(ip_failures, backoff_max, max_entries)
        self.dummy = dummy or accounts.dummy_hash()

    @classmethod
    def from_config(cls, server, config, clock=None):
        """The guard ``config``'s login options describe."""
        return cls(server, clock=clock, account_failures=config.login_account_failures,
                   ip_failures=config.login_ip_failures, backoff_max=config.login_backoff_max)

    @property
    def default_domain(self):
        return self.server.domains[0]

    def participant(self, name):
        """``USER`` or ``USER@DOMAIN`` as a participant (USER alone: the first domain)."""
        if "@" not in name:
            name = "%s@%s" % (name, self.default_domain)
        return ParticipantId.user(name)

    @defer.inlineCallbacks
    def login(self, name, password, client):
        """
        Fires with the ParticipantId that ``name`` and ``password`` log in
        as, from the client address ``client``; fails with
        :class:`LoginRefused` (its text is for the user).
        """
        now = self.clock.seconds()
        try:
            user = self.participant(name)
        except InvalidParticipantId:
            user = None
        account_key = user.address if user is not None else name.lower()[:320]
        address_key = client_key(client)
        wait = max(self.accounts.wait(account_key, now), self.addresses.wait(address_key, now))
        if wait > 0:
            seconds = int(math.ceil(wait))
            raise TooManyFailures("too many failed logins; try again in %d s" % (seconds,),
                                  seconds)
        self.accounts.charge(account_key, now)
        self.addresses.charge(address_key, now)
        account = None
        if user is not None and user.domain in self.server.domains:
            account = yield self.server.store.get_account(user.address)
        stored = account.password_hash if account is not None else self.dummy
        ok = yield self.verify(password, stored)
        if ok and account is not None:
            self.accounts.forgive(account_key)
            self.addresses.take_back(address_key)
            return user
        later = self.clock.seconds()
        wait = max(self.accounts.wait(account_key, later),
                   self.addresses.wait(address_key, later))
        if wait > 0:
            seconds = int(math.ceil(wait))
            log.info("failed logins for {account} from {client}: waiting {seconds} s",
                     account=account_key, client=address_key, seconds=seconds)
            raise WrongCredentials("wrong user or password; the next try must wait %d s"
                                   % (seconds,), seconds)
        raise WrongCredentials("wrong user or password")
