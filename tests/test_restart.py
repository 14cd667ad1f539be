"""
Durability across restarts of the real program: ``twistd -n wavebox`` in a
subprocess with an SQLite store, driven through its console over TCP.  Every
line the console echoed back (acknowledged, so durable) is still there after
a clean stop and after SIGKILL, and the wave reopens at the same hashed
version.
"""

import os
import re
import signal

from twisted.internet import defer
from twisted.trial import unittest

from tests.helpers import console_login, quick_hash, start_twistd_wavebox
from wavebox.store import open_store


class RestartTests(unittest.TestCase):

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.data = os.path.join(self.dir, "data")
        return self._add_account()

    @defer.inlineCallbacks
    def _add_account(self):
        store = open_store("sqlite:wavebox.sqlite3", self.data)
        try:
            yield store.add_account("alice@a.test", quick_hash("secret"))
        finally:
            yield store.close()

    def start(self):
        return start_twistd_wavebox(self, self.dir, [
            "--domain", "a.test", "--data-dir", self.data,
            "--console-interface", "127.0.0.1", "--console-port", "0",
            "--s2s-interface", "127.0.0.1", "--s2s-port", "0",
            "--snapshot-interval", "4"])

    def console(self, port):
        return console_login(self, port, "alice", "secret", "alice@a.test")

    @defer.inlineCallbacks
    def write_lines(self, client, lines):
        """Type lines; each is acknowledged when the console echoes it."""
        for line in lines:
            client.send(line)
            yield client.expect("^alice@a.test: %s$" % (re.escape(line),))

    @defer.inlineCallbacks
    def view(self, client):
        """(version/hash header, blip lines) of the open wave as the server shows it."""
        client.send("/view normal")
        header = yield client.expect(r"^--- wave \S+, version \d+ \(hash \w+\)")
        mark = client.cursor
        client.send("/help")
        yield client.expect("^commands:")
        lines = [l for l in client.lines[mark:client.cursor - 1] if l.startswith("alice@")]
        return header.group(0), lines

    @defer.inlineCallbacks
    def reopen(self, port):
        client = yield self.console(port)
        client.send("/list")
        yield client.expect(r"^  0 ")
        client.send("/open 0")
        yield client.expect("^--- wave ")
        result = yield self.view(client)
        return client, result

    @defer.inlineCallbacks
    def test_acknowledged_lines_survive_sigkill(self):
        proc, port = yield self.start()
        client = yield self.console(port)
        client.send("/new")
        yield client.expect("^created wave")
        typed = ["line %d" % i for i in range(12)]
        yield self.write_lines(client, typed)
        before = yield self.view(client)
        proc.transport.signalProcess("KILL")
        ended = yield proc.ended
        self.assertEqual(ended, (None, signal.SIGKILL))

        proc, port = yield self.start()
        client, after = yield self.reopen(port)
        self.assertEqual(after, before)
        self.assertEqual(after[1], ["alice@a.test: " + t for t in typed])
        # And the wave goes on from there.
        yield self.write_lines(client, ["after the crash"])

    @defer.inlineCallbacks
    def test_lines_acknowledged_while_typing_survive_sigkill_mid_stream(self):
        proc, port = yield self.start()
        client = yield self.console(port)
        client.send("/new")
        yield client.expect("^created wave")
        typed = ["burst %d" % i for i in range(300)]
        client.transport.write("".join(line + "\r\n" for line in typed).encode("utf-8"))
        # Killed while lines are still being written: once the tenth is acknowledged.
        yield client.expect("^alice@a.test: burst 9$")
        proc.transport.signalProcess("KILL")
        ended = yield proc.ended
        self.assertEqual(ended, (None, signal.SIGKILL))
        yield client.closed
        acknowledged = [line for line in client.lines if line.startswith("alice@a.test: burst ")]

        proc, port = yield self.start()
        _, (header, after) = yield self.reopen(port)
        # Every acknowledged line is there, in the order typed; lines the
        # server had not acknowledged may or may not have been written.
        self.assertEqual(after[:len(acknowledged)], acknowledged)
        self.assertEqual(after, ["alice@a.test: " + t for t in typed[:len(after)]])

    @defer.inlineCallbacks
    def test_clean_stop_and_start_keeps_everything(self):
        proc, port = yield self.start()
        client = yield self.console(port)
        client.send("/new")
        yield client.expect("^created wave")
        yield self.write_lines(client, ["one", "two", "three"])
        before = yield self.view(client)
        proc.transport.signalProcess("TERM")
        ended = yield proc.ended
        # A clean stop on SIGTERM is a success: exit status 0, as an init
        # system expects (twistd alone would end by the signal it got).
        self.assertEqual(ended, (0, None))
        self.assertIn(b"Server Shut Down.", proc.output)

        proc, port = yield self.start()
        _, after = yield self.reopen(port)
        self.assertEqual(after, before)
