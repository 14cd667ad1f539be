"""
The console of the real program under a hostile user (issue 9, findings 5
and 6): ``twistd -n wavebox`` in a child process, driven over TCP on
loopback.  Work is counted (scrypt calls, reported by the child), never
timed.
"""

import os
import re

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from tests import scrypt_counter
from tests.helpers import connect_console, start_twistd_wavebox
from wavebox.store import open_store
from wavebox.store.accounts import DEFAULT_N, DEFAULT_P, DEFAULT_R, hash_password

#: What one scrypt with the parameters of 'wavebox adduser' looks like in the child's output.
ADDUSER_SCRYPT = b"scrypt n=%d r=%d p=%d\n" % (DEFAULT_N, DEFAULT_R, DEFAULT_P)


class ConsoleProcessTestCase(unittest.TestCase):

    timeout = 120
    #: Extra command-line options of the server.
    options = []

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

    options = ["--login-account-failures", "1"]

    @defer.inlineCallbacks
    def test_guesses_back_off_the_right_password_waits_and_the_back_off_ends(self):
        yield self.start()
        # Four guesses at once, on four connections: each counts from its start,
        # so the waits they cause add up (1 s, 2 s, 4 s) before any is answered.
        guessers = yield defer.gatherResults([self.connect() for _ in range(4)])
        for c in guessers:
            c.send("/login alice guess")
        answers = yield defer.gatherResults([c.expect("^error: login") for c in guessers])
        for a in answers:
            self.assertRegex(a.string, r"^error: login failed: wrong user or password; "
                                       r"the next try must wait \d+ s$|^error: login refused")
        client = yield self.connect()
        refused, spent = yield self.login(client, "alice", "secret", "^error: login refused")
        match = re.match(r"^error: login refused: too many failed logins; "
                         r"try again in (\d+) s$", refused)
        self.assertTrue(match, refused)
        self.assertEqual(spent, 0)          # refused without looking at the password
        # Waiting as long as it says is enough.
        yield task.deferLater(reactor, int(match.group(1)), lambda: None)
        answer, spent = yield self.login(client, "alice", "secret", "^logged in as|^error")
        self.assertTrue(answer.startswith("logged in as alice@a.test"), answer)
