"""The one retry policy (wavebox/retry.py) that the outbox, routes, pings and component share."""

from twisted.trial import unittest

from wavebox.retry import RetryPolicy


class RetryPolicyTests(unittest.SynchronousTestCase):

    def test_delays_double_up_to_the_cap(self):
        policy = RetryPolicy(initial=1.0, factor=2.0, maximum=10.0, jitter=0.0)
        self.assertEqual([policy.delay(n) for n in range(1, 7)],
                         [1.0, 2.0, 4.0, 8.0, 10.0, 10.0])

    def test_no_failure_is_no_wait(self):
        self.assertEqual(RetryPolicy(2, 60).delay(0), 0.0)

    def test_jitter_only_shortens_and_delays_still_grow(self):
        low = RetryPolicy(initial=1.0, factor=2.0, maximum=100.0, jitter=0.3, random=lambda: 1.0)
        high = RetryPolicy(initial=1.0, factor=2.0, maximum=100.0, jitter=0.3, random=lambda: 0.0)
        lows = [low.delay(n) for n in range(1, 6)]
        highs = [high.delay(n) for n in range(1, 6)]
        self.assertEqual(highs, [1.0, 2.0, 4.0, 8.0, 16.0])
        self.assertEqual([round(d, 6) for d in lows], [0.7, 1.4, 2.8, 5.6, 11.2])
        # The shortest next delay is longer than the longest current one.
        for longest, shortest_next in zip(highs, lows[1:]):
            self.assertLess(longest, shortest_next)

    def test_the_caller_counts_so_a_new_run_of_failures_starts_from_the_initial_delay(self):
        policy = RetryPolicy(initial=1.0, maximum=10.0)
        policy.delay(1), policy.delay(2)
        self.assertEqual(policy.delay(1), 1.0)

    def test_attempts_say_when_to_stop(self):
        policy = RetryPolicy(10, 600, attempts=3)
        self.assertEqual([policy.exhausted(n) for n in (1, 2, 3, 4)], [False, False, True, True])
        self.assertFalse(RetryPolicy(10, 600).exhausted(10 ** 6))

    def test_it_is_a_retry_policy_for_client_service(self):
        # ClientService calls retryPolicy(failedAttempts) for the delay.
        self.assertEqual(RetryPolicy(2, 60)(3), 8.0)

    def test_rejects_a_factor_that_would_not_grow(self):
        self.assertRaises(ValueError, RetryPolicy, 1.0, 10.0, factor=1.0)
        self.assertRaises(ValueError, RetryPolicy, 1.0, 10.0, factor=1.2, jitter=0.5)

    def test_rejects_a_cap_below_the_first_wait(self):
        self.assertRaises(ValueError, RetryPolicy, 10.0, 1.0)


class OneWaitBetweenAttemptsTests(unittest.SynchronousTestCase):
    """
    Issue 13 saw "retrying in 8s" logged and a real gap of 16 s: the outbox
    waited, then the S2S route to the peer waited out a back-off of its own.
    Here the federation outbox of a.test sends over the S2S service (as the
    server wires them: S2STransport and FederationHandler) to a peer whose
    connections are refused, on one fake clock; the routes' own first wait
    (2 s) is longer than the outbox's (1 s), so a second wait would show.
    """

    def setUp(self):
        from twisted.internet import defer

        from tests import pki
        from tests import xmpp_fakes as fx
        from tests.helpers import LogWatch
        from wavebox.federation.service import FederationService
        from wavebox.federation.signers import SignerInfos
        from wavebox.federation.xmppglue import FederationHandler, S2STransport
        from wavebox.server.waveserver import WaveServer
        from wavebox.store.memory import MemoryStore

        self.log = LogWatch(self)
        self.s2s, self.network, _, self.clock = fx.make_service(
            domains=("a.test", "wave.a.test"), retry=RetryPolicy(2, 60))
        self.addCleanup(self.s2s.stopService)

        class Found:
            jid = "wave.b.test"
            endpoints = [fx.Endpoint("127.0.0.3", 5269, "wave.b.test")]

        class Discovery:
            def discover(self, domain):
                return defer.succeed(Found())

            def forget(self, domain):
                pass

        store = MemoryStore()
        signer = pki.signer("a.test")
        self.server = WaveServer(store, ["a.test"], signers={"a.test": signer},
                                 clock=self.clock)
        federation = FederationService(
            self.server, S2STransport(self.s2s, Discovery()), lambda d: "wave." + d,
            SignerInfos(store, own=[signer.signer_info], trusted_roots=[pki.ca()[1]]),
            clock=self.clock, outbox_options={"retry": RetryPolicy(1, 8)})
        self.s2s.add_handler(FederationHandler(federation))
        federation.startService()
        self.addCleanup(federation.stopService)

    def share_a_wave_with_bob(self):
        from wavebox.model.delta import HashedVersion, WaveletDelta
        from wavebox.model.ids import IdGenerator, ParticipantId
        from wavebox.model.operations import AddParticipant
        name = IdGenerator("a.test", seed="r").new_conversation_root()
        alice, bob = ParticipantId("alice@a.test"), ParticipantId("bob@b.test")
        self.successResultOf(self.server.submit(name, WaveletDelta(
            alice, HashedVersion.zero(name), [AddParticipant(alice), AddParticipant(bob)])))

    def logged_waits(self):
        import re
        return [float(m.group(1)) for m in
                (re.search(r"outbox to b\.test: .* retrying in ([\d.]+)s", line)
                 for line in self.log.lines) if m]

    def test_the_logged_wait_is_the_whole_gap_between_two_attempts(self):
        self.share_a_wave_with_bob()
        for failure in range(1, 4):
            self.assertEqual(len(self.network.attempts), failure)
            self.network.refuse(self.network.attempts[-1])
            wait = self.logged_waits()[-1]
            self.assertEqual(wait, RetryPolicy(1, 8).delay(failure))
            self.clock.advance(wait - 0.01)
            self.assertEqual(len(self.network.attempts), failure, "tried before the wait")
            self.clock.advance(0.01)
            self.assertEqual(len(self.network.attempts), failure + 1,
                             "not tried when the logged wait was over")
        self.assertEqual(self.logged_waits(), [1.0, 2.0, 4.0])
