"""
The whole two-server chat, for real: two wave servers in this process, each
with its console, S2S service (STARTTLS with certificates from a test CA,
dialback) and federation layer, finding each other through a DNS server on
loopback.  alice@a.test makes a wave, adds bob@b.test and types; bob finds
it in his inbox, opens it, replies; alice sees the reply.
"""

from twisted.internet import defer, protocol, reactor, task
from twisted.trial import unittest

from tests.federation_stack import PASSWORD, Federation, WaveStack
from tests.test_console import Client


class TwoServerChatTests(unittest.TestCase):

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        base = self.mktemp()
        self.federation = Federation([
            WaveStack("a.test", base + "/a", users=["alice@a.test"]),
            WaveStack("b.test", base + "/b", users=["bob@b.test"]),
        ])
        self.addCleanup(self.federation.stop)
        yield self.federation.start()

    @defer.inlineCallbacks
    def login(self, domain, user):
        port = self.federation[domain].console_port.getHost().port
        client = yield protocol.ClientCreator(reactor, Client).connectTCP("127.0.0.1", port)
        self.addCleanup(self._close, client)
        yield client.expect("^wavebox console")
        client.send("/login %s %s" % (user, PASSWORD))
        yield client.expect("^logged in as %s" % (user,))
        return client

    def _close(self, client):
        if client.transport.connected:
            client.transport.loseConnection()
            return client.closed

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
        # Every stream ran over TLS.
        streams = list(a.s2s.incoming) + list(a.s2s.outgoing)
        self.assertTrue(streams)
        self.assertTrue(all(s.tls_active for s in streams))


@defer.inlineCallbacks
def wait_until(ask, expected, tries=200):
    """Ask (a Deferred-returning callable) until it answers ``expected``."""
    for _ in range(tries):
        answer = yield ask()
        if answer == expected:
            return
        yield task.deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("still %r, not %r" % (answer, expected))
