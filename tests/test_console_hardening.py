"""
The console of the real program under a hostile user (issue 9, findings 5
and 6): ``twistd -n wavebox`` in a child process, driven over TCP on
loopback.  Work is counted (scrypt calls, reported by the child), never
timed.
"""

import os
import re

from twisted.internet import defer, protocol, reactor, task
from twisted.trial import unittest

from tests import scrypt_counter
from tests.helpers import Client, connect_console, console_login, quick_hash, \
    start_twistd_wavebox
from wavebox.store import open_store
from wavebox.store.accounts import DEFAULT_N, DEFAULT_P, DEFAULT_R, hash_password

#: What one scrypt with the parameters of 'wavebox adduser' looks like in the child's output.
ADDUSER_SCRYPT = b"scrypt n=%d r=%d p=%d\n" % (DEFAULT_N, DEFAULT_R, DEFAULT_P)


class ConsoleProcessTestCase(unittest.TestCase):

    timeout = 120
    #: Extra command-line options of the server.
    options = ["--console-max-sessions-per-ip", "3"]

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.data = os.path.join(self.dir, "data")
        return self._add_accounts()

    @defer.inlineCallbacks
    def _add_accounts(self):
        store = open_store("sqlite:wavebox.sqlite3", self.data)
        try:
            # As 'wavebox adduser' makes them: the parameters a login must cost.
            yield store.add_account("alice@a.test", hash_password("secret"))
            for user in ("bob@a.test", "mallory@a.test"):
                yield store.add_account(user, quick_hash("pw"))
        finally:
            yield store.close()

    @defer.inlineCallbacks
    def start(self):
        self.proc, self.port = yield start_twistd_wavebox(self, self.dir, [
            "--domain", "a.test", "--data-dir", self.data,
            "--console-interface", "127.0.0.1", "--console-port", "0",
            "--s2s-interface", "127.0.0.1", "--s2s-port", "0"] + self.options,
            main=scrypt_counter.MAIN)

    def connect(self):
        return connect_console(self, self.port)

    @defer.inlineCallbacks
    def login(self, client, user, password, answer):
        """Send a /login; fires with (the answer line, scrypt calls it cost)."""
        before = self.proc.count(ADDUSER_SCRYPT)
        others = self.proc.count(b"scrypt ")
        client.send("/login %s %s" % (user, password))
        line = yield client.expect(answer)
        # The answer comes after the scrypt line was written: a round trip
        # makes sure the child's stderr has reached us.
        client.send("/help")
        yield client.expect("^commands:|^  /login")
        spent = self.proc.count(ADDUSER_SCRYPT) - before
        self.assertEqual(self.proc.count(b"scrypt ") - others, spent,
                         "a scrypt with other parameters")
        return line.string, spent


class LoginTimingTests(ConsoleProcessTestCase):

    @defer.inlineCallbacks
    def test_unknown_user_costs_the_scrypt_a_wrong_password_costs(self):
        yield self.start()
        client = yield self.connect()
        wrong = yield self.login(client, "alice", "guess", "^error: login")
        unknown = yield self.login(client, "nobody", "guess", "^error: login")
        self.assertEqual(wrong, ("error: login failed: wrong user or password", 1))
        self.assertEqual(unknown, wrong)
        client = yield self.connect()
        right = yield self.login(client, "alice", "secret", "^logged in as|^error")
        self.assertEqual(right, ("logged in as alice@a.test: 0 wave(s), 0 unread.  "
                                 "/list shows them.", 1))


class LoginBackOffTests(ConsoleProcessTestCase):

    options = ["--login-account-failures", "1", "--login-backoff-max", "4"]

    @defer.inlineCallbacks
    def test_guesses_back_off_the_right_password_waits_and_the_back_off_ends(self):
        yield self.start()
        # Four guesses at once, on four connections: each counts from its start,
        # so the waits they cause add up (1 s, 2 s, 4 s) before any is answered.
        guessers = yield defer.gatherResults([self.connect() for _ in range(4)])
        for c in guessers:
            c.send("/login alice guess")
        answers = yield defer.gatherResults([c.expect("^error: login") for c in guessers])
        # Each is a failure; whether it also names a wait depends on how long
        # its scrypt took (on a loaded machine, longer than the wait it caused).
        for a in answers:
            self.assertRegex(a.string, r"^error: login failed: wrong user or password"
                                       r"(; the next try must wait \d+ s)?$|^error: login refused")
        # A further guess finds a wait or starts one (up to --login-backoff-max);
        # the right password just after such an answer must wait too.  On a
        # loaded machine a guess's scrypt can outlast the wait it started, so
        # guess until an answer says so.
        for _ in range(6):
            client = yield self.connect()
            guess, _ = yield self.login(client, "alice", "guess", "^error: login")
            if re.match(r"^error: login failed: wrong user or password; the next try must "
                        r"wait \d+ s$|^error: login refused", guess):
                break
        else:
            self.fail("no guess met or started a wait: %r" % (guess,))
        refused, spent = yield self.login(client, "alice", "secret", "^error: login refused")
        match = re.match(r"^error: login refused: too many failed logins; "
                         r"try again in (\d+) s$", refused)
        self.assertTrue(match, refused)
        self.assertEqual(spent, 0)          # refused without looking at the password
        # Waiting as long as it says is enough.
        yield task.deferLater(reactor, int(match.group(1)), lambda: None)
        answer, spent = yield self.login(client, "alice", "secret", "^logged in as|^error")
        self.assertTrue(answer.startswith("logged in as alice@a.test"), answer)


class FloodTests(ConsoleProcessTestCase):
    """One user floods the console; another keeps typing."""

    options = ["--console-max-sessions-per-ip", "3"]

    def login_as(self, user):
        return console_login(self, self.port, user, "pw", user)

    @defer.inlineCallbacks
    def version_of(self, client):
        """The open wave's version, as the server shows it now."""
        client.send("/view normal")
        header = yield client.expect(r"^--- wave \S+, version (\d+) ")
        return int(header.group(1))

    @defer.inlineCallbacks
    def test_a_flooder_is_closed_while_another_users_lines_get_through(self):
        yield self.start()
        mallory = yield self.login_as("mallory@a.test")
        mallory.send("/new")
        flood_wave = (yield mallory.expect(r"^created wave (\S+)$")).group(1)
        bob = yield self.login_as("bob@a.test")
        bob.send("/new")
        yield bob.expect("^created wave ")
        # 2,000 lines of 1,000 bytes at once: far past the 256 KiB that may wait.
        mallory.transport.write((b"x" * 1000 + b"\r\n") * 2000)
        for i in range(5):
            bob.send("bob's line %d" % i)
            yield bob.expect("^bob@a.test: bob's line %d$" % i)
        yield mallory.expect("^error: too much input waiting \\(over 256 KiB\\); "
                             "slow down -- goodbye$")
        yield mallory.closed
        handled = sum(1 for l in mallory.lines if l.startswith("mallory@a.test: xxx"))
        self.assertLess(handled, 2000)

        # What the flooder left is gone with it: its wave no longer grows.
        watcher = yield self.login_as("mallory@a.test")
        watcher.send("/list")
        row = yield watcher.expect(r"^ +(\d+) .*" + re.escape(flood_wave))
        watcher.send("/open " + row.group(1))
        yield watcher.expect("^--- wave ")
        before = yield self.version_of(watcher)
        for i in range(5, 10):
            bob.send("bob's line %d" % i)
            yield bob.expect("^bob@a.test: bob's line %d$" % i)
        after = yield self.version_of(watcher)
        self.assertEqual(after, before)

    @defer.inlineCallbacks
    def test_sessions_from_one_address_are_capped(self):
        yield self.start()
        for _ in range(3):
            yield self.connect()
        extra = yield protocol.ClientCreator(reactor, Client).connectTCP("127.0.0.1", self.port)
        line = yield extra.expect("^error: ")
        self.assertEqual(line.string, "error: too many console sessions from your address "
                                      "(3); try again later; goodbye")
        yield extra.closed
        self.assertIn(b"console session refused (127.0.0.1)", self.proc.output)
