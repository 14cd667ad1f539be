"""
One domain, several processes, one PostgreSQL (issue 12): two wave server
cores on one database (each with a store of its own, as two processes
have), the database deciding the writer of each version, and every core
hearing of the other's deltas; the ``wavebox`` commands on a PostgreSQL store.
"""

import os

from twisted.internet import defer, threads
from twisted.trial import unittest
from zope.interface import implementer

from tests.helpers import console_login, insert, quick_hash, start_twistd_wavebox
from tests.postgres import fresh_database
from tests.test_operator import wavebox_command
from wavebox.model.delta import HashedVersion, WaveletDelta
from wavebox.model.ids import ParticipantId, WaveletName
from wavebox.model.operations import AddParticipant, MutateDocument
from wavebox.server.interfaces import IWaveletListener
from wavebox.server.waveserver import WaveServer
from wavebox.store.postgresql import PostgresStore

ALICE = ParticipantId("alice@a.test")
BOB = ParticipantId("bob@a.test")
NAME = WaveletName.of("a.test", "w+shared", "a.test", "conv+root")


@implementer(IWaveletListener)
class Recorder:
    def __init__(self):
        self.updates = []
        self.waiters = []

    def wavelet_updated(self, update):
        self.updates.append(update)
        for version, d in list(self.waiters):
            if update.resulting_version.version >= version:
                self.waiters.remove((version, d))
                d.callback(update)

    def until(self, version):
        """Fires once an update reaches ``version``."""
        if self.updates and self.updates[-1].resulting_version.version >= version:
            return defer.succeed(self.updates[-1])
        d = defer.Deferred()
        self.waiters.append((version, d))
        return d


def listening(store):
    return threads.deferToThread(store._listener.listening.wait, 30)


class TwoCoresOnOneDatabaseTests(unittest.TestCase):

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        url = fresh_database(self)
        self.cores = []
        self.heard = []
        for _ in range(2):
            store = PostgresStore(url)
            self.addCleanup(store.close)
            core = WaveServer(store, ["a.test"])
            recorder = Recorder()
            core.subscribe(NAME, recorder)
            self.cores.append(core)
            self.heard.append(recorder)
            yield listening(store)

    def line(self, core, author, text):
        """A submit of ``text`` at the start of the document, at the core's current version."""
        state = core.current_state(NAME)
        size = len(state.documents["b+1"].text())
        return core.submit(NAME, WaveletDelta(author, state.hashed_version,
                                              [MutateDocument("b+1", insert(text, 0, size))]))

    @defer.inlineCallbacks
    def test_concurrent_submits_to_one_wavelet_make_one_history_both_cores_see(self):
        one, two = self.cores
        yield one.submit(NAME, WaveletDelta(ALICE, HashedVersion.zero(NAME), [
            AddParticipant(ALICE), AddParticipant(BOB),
            MutateDocument("b+1", insert("|", 0, 0))]))
        yield two.wavelet(NAME)       # loaded on the second core too
        rounds = 15
        results = []
        for i in range(rounds):
            # Both cores accept a submit at the same version at the same moment.
            pair = yield defer.gatherResults([self.line(one, ALICE, "a%d " % i),
                                              self.line(two, BOB, "b%d " % i)])
            results += pair
        versions = [r.hashed_version_after for r in results]
        self.assertEqual(len(set(versions)), 2 * rounds, "two submits acknowledged at one "
                                                          "version")
        last = max(versions, key=lambda v: v.version)
        self.assertEqual(last.version, 3 + 2 * rounds)
        for recorder in self.heard:
            yield recorder.until(last.version)
        states = []
        for core, recorder in zip(self.cores, self.heard):
            state = core.current_state(NAME)
            states.append((state.hashed_version, state.documents["b+1"].text()))
            # Every delta told, once, in version order, each extending the last.
            chain = [(u.applied.applied_at.version, u.resulting_version.version)
                     for u in recorder.updates]
            # (The second core loaded the wavelet after its first delta.)
            self.assertEqual(chain[0][0], 0 if core is one else 3)
            self.assertEqual([a for a, _ in chain[1:]], [r for _, r in chain[:-1]])
            self.assertEqual(chain[-1][1], last.version)
        self.assertEqual(states[0], states[1])
        self.assertEqual(states[0][0], last)
        text = states[0][1]
        for i in range(rounds):
            self.assertEqual(text.count("a%d " % i), 1, text)
            self.assertEqual(text.count("b%d " % i), 1, text)
        stored = yield one.store.deltas(NAME.uri)
        self.assertEqual([d.applied_at_version for d in stored],
                         [0] + [d.resulting_version for d in stored[:-1]])
        self.assertEqual(stored[-1].resulting_hash, last.history_hash)
        # Each core's updates carry the very bytes the store holds.
        for recorder, skip in zip(self.heard, (0, 1)):
            self.assertEqual([u.applied.applied_delta_bytes for u in recorder.updates],
                             [d.applied_delta for d in stored[skip:]])

    @defer.inlineCallbacks
    def test_a_line_typed_on_one_core_reaches_the_others_listener_live(self):
        one, two = self.cores
        yield one.submit(NAME, WaveletDelta(ALICE, HashedVersion.zero(NAME), [
            AddParticipant(ALICE), AddParticipant(BOB),
            MutateDocument("b+1", insert("hi", 0, 0))]))
        yield two.wavelet(NAME)
        heard_before = len(self.heard[1].updates)
        result = yield self.line(one, ALICE, "from one ")
        # Nothing asks the second core: the database's notice brings it.
        update = yield self.heard[1].until(result.hashed_version_after.version)
        self.assertEqual(len(self.heard[1].updates), heard_before + 1)
        self.assertEqual(update.author, ALICE)
        self.assertEqual(update.resulting_version, result.hashed_version_after)
        self.assertEqual(two.current_state(NAME).documents["b+1"].text(), "from one hi")


class CommandsOnAPostgresStoreTests(unittest.TestCase):

    timeout = 120

    def setUp(self):
        self.url = fresh_database(self)
        self.data = os.path.abspath(self.mktemp())

    def wavebox(self, *args, stdin=b""):
        return wavebox_command(*(args + ("--store", self.url, "--data-dir", self.data)),
                               stdin=stdin)

    @defer.inlineCallbacks
    def test_accounts_and_waves_through_the_commands(self):
        out, err, code = yield self.wavebox("adduser", "--domain", "a.test", "alice",
                                            stdin=b"a good password\n")
        self.assertEqual((code, err), (0, b""), out)
        out, err, code = yield self.wavebox("users")
        self.assertEqual((out, err, code), (b"alice@a.test\n", b"", 0))
        store = PostgresStore(self.url)
        self.addCleanup(store.close)
        account = yield store.get_account("alice@a.test")
        self.assertTrue(account.password_hash.startswith("scrypt$"))
        core = WaveServer(store, ["a.test"])
        yield core.submit(NAME, WaveletDelta(ALICE, HashedVersion.zero(NAME), [
            AddParticipant(ALICE), MutateDocument("b+1", insert("hello", 0, 0))]))
        out, err, code = yield self.wavebox("waves")
        self.assertEqual((err, code), (b"", 0))
        self.assertIn(NAME.uri.encode(), out)
        yield store.outbox_enqueue("b.test", b"queued")
        out, err, code = yield self.wavebox("outbox")
        self.assertEqual((err, code), (b"", 0))
        self.assertIn(b"b.test", out)
        self.assertFalse(os.path.exists(os.path.join(self.data, "wavebox.sqlite3")))

    @defer.inlineCallbacks
    def test_backup_says_pg_dump_is_the_tool(self):
        destination = os.path.abspath(self.mktemp())
        out, err, code = yield self.wavebox("backup", destination)
        self.assertEqual(code, 1)
        self.assertIn(b"pg_dump", err)
        self.assertFalse(os.path.exists(destination))

    @defer.inlineCallbacks
    def test_a_bad_postgresql_url_names_the_option(self):
        out, err, code = yield wavebox_command("users", "--store", "postgresql://nobody/db")
        self.assertEqual(code, 2)
        self.assertIn(b"--store", err)
        self.assertIn(b"USER@HOST", err)




class TwoProcessesForOneDomainTests(unittest.TestCase):
    """``twistd wavebox`` twice for a.test on one database: console users on each."""

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.url = fresh_database(self)
        store = PostgresStore(self.url)
        try:
            for user in ("alice@a.test", "bob@a.test"):
                yield store.add_account(user, quick_hash("secret"))
        finally:
            yield store.close()
        self.ports = []
        for n in (1, 2):
            directory = os.path.abspath(self.mktemp())
            os.makedirs(directory)
            proc, port = yield start_twistd_wavebox(self, directory, [
                "--domain", "a.test", "--store", self.url,
                "--data-dir", os.path.join(directory, "data"),
                "--console-interface", "127.0.0.1", "--console-port", "0",
                "--s2s-interface", "127.0.0.1", "--s2s-port", "0"])
            self.ports.append(port)

    @defer.inlineCallbacks
    def test_a_console_user_sees_live_the_lines_typed_on_the_other_process(self):
        alice = yield console_login(self, self.ports[0], "alice", "secret", "alice@a.test")
        bob = yield console_login(self, self.ports[1], "bob", "secret", "bob@a.test")
        alice.send("/new")
        yield alice.expect("^created wave a.test/w\\+")
        alice.send("/add bob@a.test")
        # Bob is on the other process: the database's notice brings him the wave.
        yield bob.expect("^\\* alice@a.test added you to wave a.test/w\\+")
        alice.send("hello from process one")
        yield alice.expect("^alice@a.test: hello from process one")
        bob.send("/open 0")
        yield bob.expect("^alice@a.test: hello from process one")
        bob.send("and hello from process two")
        yield bob.expect("^bob@a.test: and hello from process two")
        yield alice.expect("^bob@a.test: and hello from process two")
        alice.send("seen it")
        yield bob.expect("^alice@a.test: seen it")
