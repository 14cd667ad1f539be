"""
The login guard (issue 9, finding 5), driven with ``task.Clock``: an unknown
user costs the same work as a wrong password (counted in scrypt calls,
never timed), and guessing backs off per account and per client address.
"""

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import quick_hash
from wavebox.server import login
from wavebox.server.login import LoginGuard, TooManyFailures, WrongCredentials
from wavebox.server.waveserver import WaveServer
from wavebox.store import accounts
from wavebox.store.memory import MemoryStore

#: The parameters of tests.helpers.quick_hash: the dummy must cost the same.
QUICK = dict(n=2 ** 4, r=8, p=1)


class LoginGuardTestCase(SynchronousTestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.store = MemoryStore()
        self.successResultOf(self.store.add_account("alice@a.test", quick_hash("right")))
        self.successResultOf(self.store.add_account("bob@a.test", quick_hash("bobs")))
        self.server = WaveServer(self.store, ["a.test", "b.test"], clock=self.clock)
        self.scrypts = []
        real = accounts._scrypt

        def counted(password, salt, n, r, p, length):
            self.scrypts.append((n, r, p))
            return real(password, salt, n, r, p, length)
        self.patch(accounts, "_scrypt", counted)

    def guard(self, **options):
        options.setdefault("dummy", accounts.dummy_hash(**QUICK))
        return LoginGuard(self.server, clock=self.clock,
                          verify=lambda p, h: defer.succeed(accounts.verify_password(p, h)),
                          **options)

    def refused(self, guard, name, password, client="192.0.2.1", kind=WrongCredentials):
        failure = self.failureResultOf(guard.login(name, password, client))
        failure.trap(kind)
        return failure.value

    def logs_in(self, guard, name, password, client="192.0.2.1"):
        return self.successResultOf(guard.login(name, password, client))


class TimingTests(LoginGuardTestCase):

    def test_an_unknown_user_costs_one_scrypt_as_a_wrong_password_does(self):
        guard = self.guard()
        answers = {}
        for name in ("alice", "nobody", "nobody@a.test", "carol@elsewhere.test",
                     "<not an address>", "@a.test"):
            del self.scrypts[:]
            answers[name] = str(self.refused(guard, name, "wrong"))
            self.assertEqual(self.scrypts, [(QUICK["n"], QUICK["r"], QUICK["p"])], name)
        self.assertEqual(set(answers.values()), {"wrong user or password"})

    def test_the_dummy_hash_has_the_parameters_adduser_uses(self):
        guard = LoginGuard(self.server, clock=self.clock)
        made = accounts.hash_password.__defaults__          # (n, r, p) of adduser's hashes
        self.assertEqual(accounts._parse(guard.dummy)[:3], made)
        self.assertEqual(made, (accounts.DEFAULT_N, accounts.DEFAULT_R, accounts.DEFAULT_P))

    def test_no_password_matches_the_dummy(self):
        dummy = accounts.dummy_hash(**QUICK)
        self.assertFalse(accounts.verify_password("", dummy))
        self.assertFalse(accounts.verify_password("anything", dummy))
        self.assertNotEqual(dummy, accounts.dummy_hash(**QUICK))

    def test_the_right_password_logs_in(self):
        self.assertEqual(str(self.logs_in(self.guard(), "alice", "right")), "alice@a.test")


class BackOffTests(LoginGuardTestCase):

    def test_failures_of_an_account_back_off_and_the_back_off_ends(self):
        guard = self.guard(account_failures=3)
        for _ in range(3):
            self.assertEqual(self.refused(guard, "alice", "guess").retry_after, 0)
        e = self.refused(guard, "alice", "guess")
        self.assertEqual(str(e), "wrong user or password; the next try must wait 1 s")
        del self.scrypts[:]
        # The right password during the back-off does not log in, and costs nothing.
        e = self.refused(guard, "alice", "right", kind=TooManyFailures)
        self.assertEqual(str(e), "too many failed logins; try again in 1 s")
        self.assertEqual(e.retry_after, 1)
        self.assertEqual(self.scrypts, [])
        self.clock.advance(1)
        self.assertEqual(str(self.logs_in(guard, "alice", "right")), "alice@a.test")

    def test_each_further_failure_doubles_the_wait_up_to_the_maximum(self):
        guard = self.guard(account_failures=1, backoff_max=10)
        self.refused(guard, "alice", "guess")
        waits = []
        for _ in range(6):
            waits.append(self.refused(guard, "alice", "guess").retry_after)
            self.clock.advance(waits[-1])
        self.assertEqual(waits, [1, 2, 4, 8, 10, 10])

    def test_a_success_forgives_the_accounts_failures(self):
        guard = self.guard(account_failures=2)
        self.refused(guard, "alice", "guess")
        self.refused(guard, "alice", "guess")
        self.logs_in(guard, "alice", "right")
        self.refused(guard, "alice", "guess")
        self.assertEqual(self.refused(guard, "alice", "guess").retry_after, 0)

    def test_unknown_accounts_back_off_exactly_as_known_ones(self):
        guard = self.guard(account_failures=2)
        known = [self.refused(guard, "alice", "x").retry_after for _ in range(3)]
        unknown = [self.refused(guard, "zed", "x", client="192.0.2.9").retry_after
                   for _ in range(3)]
        self.assertEqual(known, unknown)
        self.assertEqual(str(self.refused(guard, "zed", "x", client="192.0.2.9",
                                          kind=TooManyFailures)),
                         str(self.refused(guard, "alice", "x", kind=TooManyFailures)))

    def test_attempts_in_flight_count_before_their_answer(self):
        """A thousand guesses at once are not a thousand free guesses."""
        pending = []

        def slow(password, stored):
            pending.append(defer.Deferred())
            return pending[-1]
        guard = LoginGuard(self.server, clock=self.clock, verify=slow, account_failures=3,
                           dummy=accounts.dummy_hash(**QUICK))
        attempts = [guard.login("alice", "guess %d" % i, "192.0.2.1") for i in range(10)]
        self.assertEqual(len(pending), 4)       # 3 free, the 4th started the wait
        for d in attempts[4:]:
            self.failureResultOf(d).trap(TooManyFailures)
        for d in pending:
            d.callback(False)
        for d in attempts[:4]:
            self.failureResultOf(d).trap(WrongCredentials)

    def test_guessing_many_accounts_from_one_address_backs_off(self):
        guard = self.guard(account_failures=100, ip_failures=4)
        for i in range(4):
            self.refused(guard, "user%d" % i, "x")
        self.assertEqual(self.refused(guard, "user9", "x").retry_after, 1)
        # Even a right password, from that address; another address is not held up.
        self.refused(guard, "alice", "right", kind=TooManyFailures)
        self.assertEqual(str(self.logs_in(guard, "alice", "right", client="192.0.2.2")),
                         "alice@a.test")

    def test_a_success_takes_back_only_its_own_count_from_the_address(self):
        guard = self.guard(account_failures=100, ip_failures=3)
        self.refused(guard, "user1", "x")
        self.refused(guard, "user2", "x")
        self.logs_in(guard, "bob", "bobs")          # an attacker's own account
        self.refused(guard, "user3", "x")
        self.assertEqual(self.refused(guard, "user4", "x").retry_after, 1)

    def test_an_ipv6_client_is_counted_by_its_slash_64(self):
        guard = self.guard(account_failures=100, ip_failures=2)
        for i in range(3):
            self.refused(guard, "user%d" % i, "x", client="2001:db8:1:2::%x" % (i + 1))
        self.refused(guard, "alice", "right", client="2001:db8:1:2:ffff::1",
                     kind=TooManyFailures)
        self.logs_in(guard, "alice", "right", client="2001:db8:1:3::1")
        self.assertEqual(login.client_key("::ffff:192.0.2.7"), "192.0.2.7")

    def test_failures_are_forgotten_after_an_hour_without_any(self):
        guard = self.guard(account_failures=1)
        self.refused(guard, "alice", "x")
        self.refused(guard, "alice", "x")
        self.clock.advance(login.FORGET_AFTER)
        self.refused(guard, "bob", "x")             # any failure sweeps the old ones
        self.assertNotIn("alice@a.test", guard.accounts.entries)
        self.assertEqual(self.refused(guard, "alice", "x").retry_after, 0)

    def test_the_tables_are_bounded(self):
        guard = self.guard(max_entries=50, ip_failures=10 ** 6)
        for i in range(500):
            self.refused(guard, "name%d" % i, "x", client="10.0.%d.%d" % (i // 250, i % 250))
        self.assertEqual(len(guard.accounts.entries), 50)
        self.assertEqual(len(guard.addresses.entries), 50)
