"""
The whole two-server chat, for real: two wave servers in this process, each
with its console, S2S service (STARTTLS with certificates from a test CA,
dialback) and federation layer, finding each other through a DNS server on
loopback.  alice@a.test makes a wave, adds bob@b.test and types; bob finds
it in his inbox, opens it, replies; alice sees the reply.
"""

import re

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from tests.federation_stack import PASSWORD, Federation, WaveStack
from tests.helpers import LogWatch, console_login, insert, quick_hash
from wavebox.model.delta import HashedVersion, WaveletDelta
from wavebox.model.ids import IdGenerator, ParticipantId
from wavebox.model.operations import AddParticipant, MutateDocument
from wavebox.retry import RetryPolicy


class TwoServerChatTests(unittest.TestCase):

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        base = self.mktemp()
        # Certificates do not stand in for dialback here: each stream's
        # domains are verified with the Authoritative Server (XEP-0220).
        full_dialback = {"trust_certificates": False}
        self.federation = Federation([
            WaveStack("a.test", base + "/a", users=["alice@a.test"], s2s_options=full_dialback),
            WaveStack("b.test", base + "/b", users=["bob@b.test"], s2s_options=full_dialback),
        ])
        self.addCleanup(self.federation.stop)
        yield self.federation.start()
        self.verifications = []
        for stack in self.federation.stacks.values():
            self._count_verifications(stack.s2s)

    def _count_verifications(self, s2s):
        original = s2s.verify_with_authoritative

        def counted(receiving, originating, stream_id, key):
            self.verifications.append((receiving, originating))
            return original(receiving, originating, stream_id, key)
        s2s.verify_with_authoritative = counted

    def login(self, domain, user):
        port = self.federation[domain].console_port.getHost().port
        return console_login(self, port, user, PASSWORD, user)

    @defer.inlineCallbacks
    def test_alice_and_bob_chat_across_two_servers(self):
        alice = yield self.login("a.test", "alice@a.test")
        bob = yield self.login("b.test", "bob@b.test")

        alice.send("/new")
        yield alice.expect("^created wave a.test/w\\+")
        alice.send("/add bob@b.test")
        yield alice.expect("bob@b.test")
        yield bob.expect("^\\* alice@a.test added you to wave a.test/w\\+")
        alice.send("hello bob, from a.test")
        yield alice.expect("^alice@a.test: hello bob, from a.test")

        bob.send("/list")
        yield bob.expect("^  0 \\*  a.test/w\\+.*alice@a.test, bob@b.test  \"hello bob")
        bob.send("/open 0")
        yield bob.expect("^alice@a.test: hello bob, from a.test")
        bob.send("hi alice, b.test here")
        yield bob.expect("^bob@b.test: hi alice, b.test here")
        yield alice.expect("^bob@b.test: hi alice, b.test here")

        a, b = self.federation["a.test"], self.federation["b.test"]
        [info] = yield b.store.wavelets_of("bob@b.test")
        self.assertFalse(info.hosted)
        # b.test's receipt for the echo of bob's line may still be on its way.
        yield wait_until(lambda: a.store.outbox_backlog(), {})
        a_version = yield a.store.current_version(info.name)
        b_version = yield b.store.current_version(info.name)
        self.assertEqual(a_version, b_version)
        # Every stream ran over TLS, and each direction was verified by dialback.
        streams = list(a.s2s.incoming) + list(a.s2s.outgoing)
        self.assertTrue(streams)
        self.assertTrue(all(s.tls_active for s in streams))
        self.assertIn(("wave.b.test", "wave.a.test"), self.verifications)
        self.assertIn(("wave.a.test", "wave.b.test"), self.verifications)


@defer.inlineCallbacks
def wait_until(ask, expected, tries=200):
    """Ask (a Deferred-returning callable) until it answers ``expected``."""
    for _ in range(tries):
        answer = yield ask()
        if answer == expected:
            return
        yield task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("still %r, not %r" % (answer, expected))


class StackTestCase(unittest.TestCase):
    """a.test and b.test on the real stack with durable SQLite stores; a wave of both."""

    timeout = 60

    def options(self, domain):
        """(federation options, S2S options) of a domain's server: quick retries."""
        return ({"outbox_options": {"retry": RetryPolicy(0.2, 1.0)}},
                {"retry": RetryPolicy(0.1, 0.5)})

    @defer.inlineCallbacks
    def setUp(self):
        base = self.mktemp()
        stacks = []
        for domain in ("a.test", "b.test"):
            federation_options, s2s = self.options(domain)
            stacks.append(WaveStack(domain, base + "/" + domain[0], store_url="sqlite:wave.db",
                                    s2s_options=s2s, **federation_options))
        self.federation = Federation(stacks)
        self.addCleanup(self.federation.stop)
        yield self.federation.start()
        self.name = yield self.new_wave_with_bob()

    @defer.inlineCallbacks
    def new_wave_with_bob(self):
        a = self.federation["a.test"]
        name = IdGenerator("a.test").new_conversation_root()
        alice = ParticipantId("alice@a.test")
        yield a.server.submit(name, WaveletDelta(alice, HashedVersion.zero(name),
                                                 [AddParticipant(alice)]))
        result = yield a.server.submit(name, WaveletDelta(
            alice, (yield a.server.hashed_version(name)),
            [AddParticipant(ParticipantId("bob@b.test"))]))
        yield self.converged(name, result.hashed_version_after.version)
        return name

    @defer.inlineCallbacks
    def converged(self, name, version=None):
        """
        Wait until both servers hold the same hashed version (at least
        ``version``), in their stores and in memory.  (A store read may see a
        commit a moment before the writer's answer reaches the core.)
        """
        a, b = self.federation["a.test"], self.federation["b.test"]
        for _ in range(500):
            va = yield a.store.current_version(name.uri)
            vb = yield b.store.current_version(name.uri)
            sa, sb = a.server.current_state(name), b.server.current_state(name)
            if (va is not None and va == vb and (version is None or va[0] >= version)
                    and sa is not None and sb is not None
                    and sa.hashed_version == sb.hashed_version
                    and sa.hashed_version.version == va[0]):
                return va
            yield task.deferLater(reactor, 0.02, lambda: None)
        raise AssertionError("not converged: a %r, b %r" % (va, vb))

    def write(self, domain, user, document, text, target):
        stack = self.federation[domain]
        return stack.server.submit(self.name, WaveletDelta(
            ParticipantId(user), target, [MutateDocument(document, insert(text))]))

    def documents(self, domain):
        state = self.federation[domain].server.current_state(self.name)
        return {d: doc.text() for d, doc in state.documents.items()}



class FederationOverS2STests(StackTestCase):
    """Concurrency and an outage."""

    @defer.inlineCallbacks
    def test_both_sides_typing_at_the_same_version_converge(self):
        a = self.federation["a.test"]
        version = yield a.server.hashed_version(self.name)
        yield defer.gatherResults([
            self.write("a.test", "alice@a.test", "b+a", "from alice", version),
            self.write("b.test", "bob@b.test", "b+b", "from bob", version)])
        yield self.converged(self.name, version.version + 2)
        self.assertEqual(self.documents("a.test"), {"b+a": "from alice", "b+b": "from bob"})
        self.assertEqual(self.documents("b.test"), self.documents("a.test"))
        self.assertEqual(self.federation["b.test"].server.current_state(self.name).hashed_version,
                         a.server.current_state(self.name).hashed_version)

    @defer.inlineCallbacks
    def test_server_down_while_users_type_catches_up_when_it_returns(self):
        a = self.federation["a.test"]
        yield self.federation.down("b.test")
        for i in range(3):
            version = yield a.server.hashed_version(self.name)
            yield self.write("a.test", "alice@a.test", "b+%d" % i, "line %d" % i, version)
        # The updates wait, durable, while b.test cannot be reached.
        for _ in range(500):
            if a.federation.outbox.queue("b.test").attempts:
                break
            yield task.deferLater(reactor, 0.02, lambda: None)
        backlog = yield a.store.outbox_backlog()
        self.assertEqual(backlog, {"b.test": 3})
        yield self.federation.up("b.test")
        final = yield a.server.hashed_version(self.name)
        yield self.converged(self.name, final.version)
        self.assertEqual(self.documents("b.test"),
                         {"b+0": "line 0", "b+1": "line 1", "b+2": "line 2"})
        yield wait_until(lambda: a.store.outbox_backlog(), {})


class ComingBackOverS2STests(StackTestCase):
    """
    b.test comes back while a.test waits long to retry: the outbox (60 s, up
    to 300 s) and the S2S route to b.test (60 s, up to 300 s) alike.  b.test
    asks for what it missed as it starts, and that is what brings the lines.
    """

    timeout = 45
    LONG_WAIT = 60.0

    def options(self, domain):
        if domain == "a.test":
            return ({"outbox_options": {"retry": RetryPolicy(self.LONG_WAIT, 300)}},
                    {"retry": RetryPolicy(self.LONG_WAIT, 300)})
        return StackTestCase.options(self, domain)

    @defer.inlineCallbacks
    def test_server_coming_back_catches_up_at_once_not_at_the_next_retry(self):
        a = self.federation["a.test"]
        yield self.federation.down("b.test")
        for i in range(3):
            version = yield a.server.hashed_version(self.name)
            yield self.write("a.test", "alice@a.test", "b+%d" % i, "line %d" % i, version)
        queue = a.federation.outbox.queue("b.test")
        for _ in range(500):
            if queue.backing_off:
                break
            yield task.deferLater(reactor, 0.02, lambda: None)
        self.assertTrue(queue.backing_off)
        retry_at = queue.retry_call.getTime()
        self.assertGreater(retry_at - reactor.seconds(), self.LONG_WAIT - 5)
        backlog = yield a.store.outbox_backlog()
        self.assertEqual(backlog, {"b.test": 3})

        yield self.federation.up("b.test")
        final = yield a.server.hashed_version(self.name)
        yield self.converged(self.name, final.version)     # polls for 10 s at most
        self.assertEqual(self.documents("b.test"),
                         {"b+0": "line 0", "b+1": "line 1", "b+2": "line 2"})
        yield wait_until(lambda: a.store.outbox_backlog(), {})
        # Delivered before a.test's own retry was due: b.test's start-up did it.
        self.assertLess(reactor.seconds(), retry_at)


class HostDownTests(StackTestCase):
    """
    Issue 9, finding 8: bob@b.test types into a wave hosted at a.test while
    a.test is stopped.  The console refuses the line in one line that says
    so -- never "internal error", never a traceback in the log -- and the
    session goes on; once a.test is back, the same line goes through.
    """

    @defer.inlineCallbacks
    def test_a_line_for_a_host_that_is_down_is_refused_in_one_line(self):
        a, b = self.federation["a.test"], self.federation["b.test"]
        yield a.store.add_account("alice@a.test", quick_hash(PASSWORD))
        yield b.store.add_account("bob@b.test", quick_hash(PASSWORD))
        yield b.store.add_account("carol@b.test", quick_hash(PASSWORD))
        logs = LogWatch(self)
        alice = yield console_login(self, a.console_port.getHost().port, "alice@a.test",
                                    PASSWORD, "alice@a.test")
        bob = yield console_login(self, b.console_port.getHost().port, "bob@b.test",
                                  PASSWORD, "bob@b.test")
        alice.send("/new")
        created = yield alice.expect("^created wave (a.test/w\\S+)$")
        alice.send("/add bob@b.test")
        yield bob.expect("^\\* alice@a.test added you to wave " + re.escape(created.group(1)))
        bob.send("/list")
        line = yield bob.expect("^ +(\\d+) .*" + re.escape(created.group(1)))
        bob.send("/open " + line.group(1))
        yield bob.expect("^--- wave " + re.escape(created.group(1)))
        yield self.federation.down("a.test")

        bob.send("are you there?")
        refusal = yield bob.expect("^error: ")
        self.assertEqual(refusal.string,
                         "error: a.test cannot be reached; your line was not sent")
        bob.send("/add carol@b.test")
        refusal = yield bob.expect("^error: ")
        self.assertEqual(refusal.string, "error: a.test cannot be reached; /add was not done")
        bob.send("/view normal")
        yield bob.expect("^--- wave ")
        bob.send("/help")
        yield bob.expect("^commands:")
        self.assertNotIn("bob@b.test: are you there?", bob.lines)
        self.assertFalse([l for l in bob.lines if "internal error" in l], bob.lines)
        self.assertFalse([l for l in logs.lines if "Traceback" in l], logs.lines)
        self.assertEqual(logs.count("was not taken: a.test cannot be reached"), 2, logs.lines)

        yield self.federation.up("a.test")
        bob.send("are you there?")
        yield bob.expect("^bob@b.test: are you there\\?$")
