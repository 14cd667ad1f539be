"""
The admin commands as an operator meets them (issue 13, items 3 and 5):
``wavebox status``, ``users``, ``waves`` and ``outbox`` against a running
``twistd -n wavebox`` (through its admin socket) and against a stopped one
(on the store, under the store lock).
"""

import os
import re

from twisted.internet import defer, threads
from twisted.trial import unittest

from tests.helpers import console_login, quick_hash
from tests.test_operator import Servers, wavebox_command
from wavebox import admin
from wavebox.store import open_store


@defer.inlineCallbacks
def add_account(data, address, password):
    store = open_store("sqlite:wavebox.sqlite3", data)
    try:
        yield store.add_account(address, quick_hash(password))
    finally:
        yield store.close()


class RunningServerTests(unittest.TestCase):

    @defer.inlineCallbacks
    def setUp(self):
        self.servers = Servers(self)
        yield add_account(self.servers.data, "alice@a.test", "secret")
        # Nothing answers DNS there: a remote destination stays unreachable.
        self.proc = yield self.servers.spawn("--nameserver", "127.0.0.1:9",
                                             "--dns-timeout", "0.5")
        self.client = yield console_login(self, self.proc.console_port, "alice", "secret",
                                          "alice@a.test")

    def wavebox(self, *args, stdin=b""):
        return wavebox_command(*(args + ("--data-dir", self.servers.data)), stdin=stdin)

    @defer.inlineCallbacks
    def test_status_names_the_console_session_and_the_unreachable_destination(self):
        self.client.send("/new")
        yield self.client.expect("^created wave")
        self.client.send("/add x@nowhere.test")
        yield self.client.expect("x@nowhere.test")
        out = b""
        for _ in range(100):        # until the outbox has failed once
            out, err, code = yield self.wavebox("status")
            if b"unreachable" in out:
                break
        self.assertEqual((code, err), (0, b""))
        self.assertIn(b"console sessions: 1\n", out)
        self.assertRegex(out.decode(), r"nowhere\.test +\d+ queued  unreachable since "
                                       r"\d{4}-\d\d-\d\d \d\d:\d\d UTC, \d+ "
                                       r"failure\(s\), next try (in \d+s|due now): ")

    @defer.inlineCallbacks
    def test_a_remote_participant_nobody_can_reach_is_added_with_a_warning_then_pending(self):
        self.client.send("/new")
        yield self.client.expect("^created wave")
        self.client.send("/add ghost@a.test")
        yield self.client.expect("^error: ghost@a.test has no account on this server$")
        self.client.send("/add x@nowhere.test")
        warning = yield self.client.expect("^warning: nowhere.test has no wave service we "
                                           "can reach now ")
        self.assertIn("x@nowhere.test sees nothing of this wave until it does",
                      warning.string)
        for _ in range(100):
            self.client.send("/open 0")
            header = yield self.client.expect("^--- wave ")
            if "pending" in header.string:
                break
        self.assertRegex(header.string, r"x@nowhere\.test \(pending since \d{4}-\d\d-\d\d "
                                        r"\d\d:\d\d UTC: ")

    @defer.inlineCallbacks
    def test_users_are_listed_and_a_deleted_users_session_ends_at_once(self):
        out, err, code = yield self.wavebox("users")
        self.assertEqual((out, err, code), (b"alice@a.test\n", b"", 0))
        out, err, code = yield self.wavebox("users", "delete", "alice")
        self.assertEqual((out, err, code),
                         (b"deleted account alice@a.test (1 console session(s) ended)\n",
                          b"", 0))
        yield self.client.expect("your account was deleted")
        yield self.client.closed
        out, err, code = yield self.wavebox("users")
        self.assertEqual((out, code), (b"", 0))
        out, err, code = yield self.wavebox("users", "delete", "alice")
        self.assertEqual((code, err), (1, b"wavebox users: alice@a.test has no account\n"))

    @defer.inlineCallbacks
    def test_a_new_password_works_at_once_and_the_old_one_no_more(self):
        out, err, code = yield self.wavebox("users", "password", "alice", stdin=b"n3w\n")
        self.assertEqual((out, err, code), (b"new password for alice@a.test\n", b"", 0))
        yield console_login(self, self.proc.console_port, "alice", "n3w", "alice@a.test")

    @defer.inlineCallbacks
    def test_waves_lists_the_wave_made_in_the_console(self):
        self.client.send("/new")
        created = yield self.client.expect(r"^created wave (\S+)")
        out, err, code = yield self.wavebox("waves")
        self.assertEqual((err, code), (b"", 0))
        [line] = out.decode().splitlines()
        self.assertRegex(line, r"^wave://a\.test/\S+  version \d+  hosted  alice@a\.test$")
        name = line.split()[0]
        out, err, code = yield self.wavebox("waves", "show", name)
        self.assertEqual((err, code), (b"", 0))
        self.assertIn(b"wavelet: %s\nhosted here: yes\n" % name.encode(), out)
        self.assertIn(b"participants:\n  alice@a.test\n", out)
        self.assertTrue(created)

    @defer.inlineCallbacks
    def test_dropping_a_destination_empties_its_queue_live(self):
        self.client.send("/new")
        yield self.client.expect("^created wave")
        self.client.send("/add x@nowhere.test")
        yield self.client.expect("x@nowhere.test")
        out, err, code = yield self.wavebox("outbox")
        self.assertRegex(out.decode(), r"^nowhere\.test +1 queued  ")
        out, err, code = yield self.wavebox("outbox", "drop", "nowhere.test")
        self.assertEqual((out, err, code),
                         (b"dropped 1 queued update(s) for nowhere.test\n", b"", 0))
        out, err, code = yield self.wavebox("outbox")
        self.assertEqual((out.decode(), code), (
            "%-30s %6d queued  GIVEN UP (dropped by an operator (wavebox outbox drop))\n"
            % ("nowhere.test", 0), 0))
        self.assertIn(b"outbox to nowhere.test: dropped 1 queued update(s) by an "
                      b"operator's command", self.proc.output)

    @defer.inlineCallbacks
    def test_the_admin_socket_is_the_servers_alone(self):
        path = os.path.join(self.servers.data, "admin.sock")
        self.assertGreater(len(path), admin.ShortPath.LIMIT, "the long-path case is tested")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        answer = yield threads.deferToThread(admin.ask, path, "version")
        self.assertEqual(answer["pid"], self.proc.transport.pid)
        e = yield self.assertFailure(threads.deferToThread(admin.ask, path, "frobnicate"),
                                     admin.AdminError)
        self.assertIn("not a command this server knows", str(e))


class StoppedServerTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_commands_work_on_the_store_of_a_stopped_server(self):
        servers = Servers(self)
        yield add_account(servers.data, "alice@a.test", "secret")
        out, err, code = yield wavebox_command("users", "--data-dir", servers.data)
        self.assertEqual((out, err, code), (b"alice@a.test\n", b"", 0))
        out, err, code = yield wavebox_command("users", "delete", "alice@a.test",
                                               "--data-dir", servers.data)
        self.assertEqual((out, err, code), (b"deleted account alice@a.test\n", b"", 0))
        out, err, code = yield wavebox_command("users", "--data-dir", servers.data)
        self.assertEqual((out, code), (b"", 0))

    @defer.inlineCallbacks
    def test_a_server_without_admin_socket_keeps_the_commands_off_its_store(self):
        servers = Servers(self)
        yield add_account(servers.data, "alice@a.test", "secret")
        proc = yield servers.spawn("--admin-socket", "off")
        out, err, code = yield wavebox_command("users", "--data-dir", servers.data)
        self.assertEqual(code, 1)
        self.assertRegex(err.decode(), r"^wavebox users: the store \S+ is in use by another "
                                       r"wavebox \(PID %d\), but its admin socket \S+ "
                                       r"does not answer" % (proc.transport.pid,))

    @defer.inlineCallbacks
    def test_commands_never_make_a_store(self):
        data = os.path.abspath(self.mktemp())
        out, err, code = yield wavebox_command("waves", "--data-dir", data)
        self.assertEqual(code, 1)
        self.assertTrue(re.match(rb"wavebox waves: no store at ", err), err)
        self.assertFalse(os.path.exists(data))
