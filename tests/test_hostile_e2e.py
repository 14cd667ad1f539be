"""
Issue 9 against a real ``twistd wavebox`` (tests/hostile.py): hostile input
from strangers and from an authenticated peer gets its stream error, while
b.test's own stream keeps answering pings and the process stays up.
Bounded: a few connections, a few MiB, loopback only.  The figures (how
long, how much memory) are benchmarks/bench_hostile.py's; no test asserts
on time.
"""

import os

from twisted.internet import defer, reactor
from twisted.trial import unittest

from tests import hostile

#: Small caps, so that a few connections meet them.
ARGS = ["--s2s-max-unauthenticated-per-ip", "3", "--s2s-unauthenticated-timeout", "2"]


class HostileInputTests(unittest.TestCase):

    timeout = 240

    @defer.inlineCallbacks
    def setUp(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        self.target = yield hostile.Target.start(self, directory, ARGS)

    @defer.inlineCallbacks
    def attack(self, *payloads, source="127.0.0.1"):
        stranger = yield self.target.stranger(payloads, source)
        yield stranger.done.addTimeout(hostile.GUARD, reactor)
        return stranger

    @defer.inlineCallbacks
    def assert_still_serving(self):
        answer = yield self.target.ping()
        self.assertEqual(answer["type"], "result")
        self.assertTrue(self.target.alive)
        self.assertEqual(self.target.log_count("Unhandled error"), 0)
        self.assertEqual(self.target.log_count("Traceback"), 0)

    @defer.inlineCallbacks
    def test_entity_expansion_is_restricted_xml_and_the_other_stream_goes_on(self):
        self.target.pinger.start()
        for depth in (6, 9):
            stranger = yield self.attack(hostile.entity_bomb(depth))
            self.assertEqual(stranger.condition, "restricted-xml")
            self.assertNotIn("xxxxxxxxxx", stranger.text)
        yield self.target.pinger.stop()
        self.assertEqual(self.target.pinger.failures, [])
        self.assertGreater(self.target.pinger.count, 0)
        yield self.assert_still_serving()

    @defer.inlineCallbacks
    def test_whitespace_inside_an_element_counts_toward_the_limit(self):
        newlines = yield self.attack(hostile.HEADER, "<message><body>", "\n" * (1024 * 1024))
        self.assertEqual(newlines.condition, "policy-violation")
        spaces = yield self.attack(hostile.HEADER, "<message>", " " * (9 * 1024 * 1024))
        self.assertEqual(spaces.condition, "policy-violation")
        logged = yield self.target.wait_for_log("stream error <policy-violation/>", 2)
        self.assertEqual(logged, 2)
        yield self.assert_still_serving()

    @defer.inlineCallbacks
    def test_deep_nesting_from_an_authenticated_peer_is_a_policy_violation(self):
        condition = yield self.target.authenticated_raw(hostile.nested_iq(2000))
        self.assertEqual(condition, "policy-violation")
        self.assertEqual(self.target.log_count("internal-server-error"), 0)
        yield self.assert_still_serving()
        # c.test's route reopens on demand.
        answer = yield self.target.peers["c.test"].request(
            hostile.ping_iq("c.test", "a.test"), timeout=hostile.GUARD)
        self.assertEqual(answer["type"], "result")

    @defer.inlineCallbacks
    def test_unauthenticated_streams_from_one_address_are_capped_and_time_out(self):
        held = []
        for _ in range(3):
            held.append((yield self.target.stranger([hostile.HEADER], "127.0.0.9")))
        refused = yield self.attack(hostile.HEADER, source="127.0.0.9")
        self.assertEqual(refused.condition, "resource-constraint")
        elsewhere = yield self.target.stranger([hostile.HEADER], "127.0.0.10")
        # The three held ones (and the one from elsewhere) time out unauthenticated.
        for stranger in held + [elsewhere]:
            yield stranger.done.addTimeout(hostile.GUARD, reactor)
            self.assertEqual(stranger.condition, "connection-timeout")
        yield self.assert_still_serving()
