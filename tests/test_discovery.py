"""The seed's 13 connection-establishment steps, one test per branch, on in-memory DNS."""

from twisted.internet import defer, task
from twisted.internet.error import ConnectionRefusedError, TimeoutError as ConnectTimeoutError
from twisted.trial import unittest

from tests.helpers import LogWatch
from wavebox.xmpp.discovery import (DiscoUnavailable, DiscoveryFailed, DiscoveryResult,
                                    WaveServiceDiscovery)
from wavebox.xmpp.resolver import (DNSQueryError, DNSTimeoutError, Endpoint, FakeResolver,
                                   SRVRecord)


def srv(domain, *records):
    return {"_xmpp-server._tcp." + domain: [SRVRecord(*r) for r in records]}


class FakeDisco:
    """The S2S layer's disco, scripted per domain: a JID, None, an exception or a Deferred."""

    def __init__(self, answers=None):
        self.answers = dict(answers or {})
        self.calls = []

    def __call__(self, domain, endpoints):
        self.calls.append((domain, list(endpoints)))
        answer = self.answers.get(domain)
        if isinstance(answer, Exception):
            return defer.fail(answer)
        if isinstance(answer, defer.Deferred):
            return answer
        return defer.succeed(answer)


class DiscoveryTestCase(unittest.SynchronousTestCase):

    def make(self, srv_records=None, addresses=None, failures=None, disco=None, **kw):
        self.clock = task.Clock()
        self.resolver = FakeResolver(srv=srv_records, addresses=addresses, failures=failures)
        self.disco = disco if disco is not None else FakeDisco()
        self.discovery = WaveServiceDiscovery(self.resolver, self.disco, clock=self.clock, **kw)
        return self.discovery

    def found(self, domain="b.test"):
        result = self.successResultOf(self.discovery.discover(domain))
        self.assertIsInstance(result, DiscoveryResult)
        return result

    def failed(self, domain="b.test"):
        return self.failureResultOf(self.discovery.discover(domain), DiscoveryFailed).value


class StepsTests(DiscoveryTestCase):

    def test_srv_found_and_disco_item_is_the_domain_reuses_step_5(self):
        # Steps 1, 2, 5, 6, 7 (same host), 8, 12.
        self.make(srv("b.test", (10, 0, 5270, "xmpp.b.test")),
                  {"xmpp.b.test": ["127.0.0.3"]}, disco=FakeDisco({"b.test": "b.test"}))
        result = self.found()
        self.assertEqual(result.jid, "b.test")
        self.assertEqual(result.endpoints, (Endpoint("127.0.0.3", 5270, "xmpp.b.test"),))
        self.assertEqual(self.disco.calls, [("b.test", [Endpoint("127.0.0.3", 5270, "xmpp.b.test")])])
        self.assertEqual(self.resolver.queries, [("SRV", "_xmpp-server._tcp.b.test"),
                                                 ("SRV", "_xmpps-server._tcp.b.test"),
                                                 ("A/AAAA", "xmpp.b.test")])
        self.assertIn("step 7: b.test is the domain itself: keep the step-5 connection",
                      result.trace)

    def test_disco_item_on_another_host_is_resolved_by_srv(self):
        # Step 7 through SRV.
        self.make(dict(srv("b.test", (10, 0, 5269, "b.test")),
                       **srv("waveservice.b.test", (10, 0, 5271, "host2.b.test"))),
                  {"b.test": ["127.0.0.3"], "host2.b.test": ["127.0.0.4"]},
                  disco=FakeDisco({"b.test": "waveservice.b.test"}))
        result = self.found()
        self.assertEqual(result.jid, "waveservice.b.test")
        self.assertEqual(result.endpoints, (Endpoint("127.0.0.4", 5271, "host2.b.test"),))
        self.assertIn("step 7: SRV _xmpp-server._tcp.waveservice.b.test -> "
                      "10 0 5271 host2.b.test.", result.trace)
        self.assertEqual(result.trace[-1], "step 12: use waveservice.b.test at 127.0.0.4:5271")

    def test_disco_item_on_another_host_is_resolved_by_a(self):
        # Step 7 through the A fallback.
        self.make(srv("b.test", (10, 0, 5269, "b.test")),
                  {"b.test": ["127.0.0.3"], "waveservice.b.test": ["127.0.0.5"]},
                  disco=FakeDisco({"b.test": "waveservice.b.test"}))
        result = self.found()
        self.assertEqual(result.jid, "waveservice.b.test")
        self.assertEqual(result.endpoints, (Endpoint("127.0.0.5", 5269, "waveservice.b.test"),))
        self.assertIn("step 7: A/AAAA waveservice.b.test -> 127.0.0.5", result.trace)

    def test_no_srv_falls_back_to_a_and_asks_disco_on_5269(self):
        # Steps 1, 3, 4, 5.
        self.make(addresses={"b.test": ["127.0.0.3"]}, disco=FakeDisco({"b.test": "b.test"}))
        result = self.found()
        self.assertEqual(self.disco.calls, [("b.test", [Endpoint("127.0.0.3", 5269, "b.test")])])
        self.assertEqual(result.endpoints, (Endpoint("127.0.0.3", 5269, "b.test"),))
        self.assertEqual(list(result.trace[:2]), ["step 1: SRV _xmpp-server._tcp.b.test -> none",
                                                  "step 3: A/AAAA b.test -> 127.0.0.3"])

    def test_disco_item_missing_guesses_wave_prefix(self):
        # Step 6 finds nothing: steps 9, 10.
        self.make(srv("b.test", (10, 0, 5269, "b.test")),
                  {"b.test": ["127.0.0.3"], "wave.b.test": ["127.0.0.4"]},
                  disco=FakeDisco({"b.test": None}))
        result = self.found()
        self.assertEqual(result.jid, "wave.b.test")
        self.assertEqual(result.endpoints, (Endpoint("127.0.0.4", 5269, "wave.b.test"),))
        self.assertIn("step 6: disco#items b.test -> no collaboration/google-wave item",
                      result.trace)
        self.assertIn("step 9: guess the wave service JID: wave.b.test", result.trace)

    def test_disco_jid_unresolvable_guesses_wave_prefix(self):
        # Step 8 -> step 9.
        self.make(dict(srv("b.test", (10, 0, 5269, "b.test")),
                       **srv("wave.b.test", (10, 0, 5272, "wave.b.test"))),
                  {"b.test": ["127.0.0.3"], "wave.b.test": ["127.0.0.4"]},
                  disco=FakeDisco({"b.test": "gone.b.test"}))
        result = self.found()
        self.assertEqual(result.jid, "wave.b.test")
        self.assertEqual(result.endpoints, (Endpoint("127.0.0.4", 5272, "wave.b.test"),))
        self.assertIn("step 8: gone.b.test did not resolve: go to step 9", result.trace)

    def test_disco_jid_that_is_the_failed_guess_is_not_asked_twice(self):
        self.make(srv("b.test", (10, 0, 5269, "b.test")), {"b.test": ["127.0.0.3"]},
                  disco=FakeDisco({"b.test": "wave.b.test"}))
        failure = self.failed()
        self.assertEqual(self.resolver.queries.count(("SRV", "_xmpp-server._tcp.wave.b.test")), 1)
        self.assertIn("step 10: wave.b.test already failed to resolve in step 7", failure.trace)

    def test_disco_connection_failure_guesses_wave_prefix(self):
        # "If OS does not support XMPP discovery": cannot even ask.
        self.make(addresses={"b.test": ["127.0.0.3"], "wave.b.test": ["127.0.0.4"]},
                  disco=FakeDisco({"b.test": ConnectionRefusedError("127.0.0.3")}))
        result = self.found()
        self.assertEqual(result.jid, "wave.b.test")
        self.assertTrue(any(line.startswith("step 5: disco with b.test failed: ")
                            for line in result.trace), result.trace)

    def test_disco_not_available_guesses_wave_prefix(self):
        self.make(addresses={"b.test": ["127.0.0.3"], "wave.b.test": ["127.0.0.4"]},
                  disco=FakeDisco({"b.test": DiscoUnavailable("not available (no S2S layer)")}))
        result = self.found()
        self.assertEqual(result.jid, "wave.b.test")
        self.assertIn("step 5: disco: not available (no S2S layer)", result.trace)

    def test_disco_that_never_answers_gives_up_after_the_disco_timeout(self):
        cancelled = []
        pending = defer.Deferred(lambda d: cancelled.append(d))
        self.make(addresses={"b.test": ["127.0.0.3"], "wave.b.test": ["127.0.0.4"]},
                  disco=FakeDisco({"b.test": pending}), disco_timeout=30)
        d = self.discovery.discover("b.test")
        self.clock.advance(29)
        self.assertNoResult(d)
        self.clock.advance(1)
        result = self.successResultOf(d)
        self.assertEqual(result.jid, "wave.b.test")
        self.assertIn("step 5: disco with b.test: no answer within 30s", result.trace)
        # The S2S layer was told to stop trying.
        self.assertEqual(cancelled, [pending])

    def test_disco_answer_that_is_not_a_server_jid_is_ignored(self):
        self.make(addresses={"b.test": ["127.0.0.3"], "wave.b.test": ["127.0.0.4"]},
                  disco=FakeDisco({"b.test": "bot@b.test"}))
        result = self.found()
        self.assertEqual(result.jid, "wave.b.test")

    def test_guess_at_the_step_5_address_reuses_that_endpoint(self):
        # Step 11: same IP and port as step 5: that endpoint comes first.
        self.make(srv("b.test", (10, 0, 5269, "h1.b.test"), (20, 0, 5269, "h2.b.test")),
                  {"h1.b.test": ["127.0.0.3"], "h2.b.test": ["127.0.0.4"],
                   "wave.b.test": ["127.0.0.9", "127.0.0.4"]},
                  disco=FakeDisco({"b.test": None}))
        result = self.found()
        self.assertEqual(result.jid, "wave.b.test")
        self.assertEqual([(e.host, e.port) for e in result.endpoints],
                         [("127.0.0.4", 5269), ("127.0.0.9", 5269)])
        self.assertIn("step 11: wave.b.test is at 127.0.0.4:5269, where step 5 connected: reuse it",
                      result.trace)

    def test_guess_where_step_5_could_not_connect_does_not_claim_a_connection(self):
        self.make(dict(srv("b.test", (10, 0, 5269, "b.test")),
                       **srv("wave.b.test", (10, 0, 5269, "b.test"))),
                  {"b.test": ["127.0.0.3"]},
                  disco=FakeDisco({"b.test": ConnectionRefusedError()}))
        result = self.found()
        self.assertEqual(result.endpoints, (Endpoint("127.0.0.3", 5269, "b.test"),))
        self.assertIn("step 11: wave.b.test is at 127.0.0.3:5269, the address of step 5",
                      result.trace)
        self.assertNotIn("reuse", str(result.trace))

    def test_disco_stanza_error_is_shown_as_condition_and_text(self):
        from twisted.words.protocols.jabber.error import StanzaError
        self.make(srv("b.test", (10, 0, 5269, "b.test")), {"b.test": ["127.0.0.3"]},
                  disco=FakeDisco({"b.test": StanzaError(
                      "remote-server-timeout", text="cannot connect to 127.0.0.3:5269: "
                      "connection refused")}))
        failure = self.failed()
        self.assertIn("step 5: disco with b.test failed: remote-server-timeout: cannot connect "
                      "to 127.0.0.3:5269: connection refused", failure.trace)

    def test_guess_elsewhere_connects_to_the_new_address(self):
        # Step 11: a different port is a different connection.
        self.make(dict(srv("b.test", (10, 0, 5269, "b.test")),
                       **srv("wave.b.test", (10, 0, 5270, "b.test"))),
                  {"b.test": ["127.0.0.3"]}, disco=FakeDisco({"b.test": None}))
        result = self.found()
        self.assertEqual(result.endpoints, (Endpoint("127.0.0.3", 5270, "b.test"),))
        self.assertIn("step 11: wave.b.test is not where step 5 connected: "
                      "connect to 127.0.0.3:5270", result.trace)

    def test_domain_that_does_not_resolve_still_guesses_wave_prefix(self):
        # The seed's overview: "or the hostname resolution on the domain name
        # fails, a guess is made"; and its DNS advice item 4.
        self.make(srv("wave.b.test", (10, 0, 5269, "wave.b.test")),
                  {"wave.b.test": ["127.0.0.3"]})
        result = self.found()
        self.assertEqual(result.jid, "wave.b.test")
        self.assertEqual(self.disco.calls, [])
        self.assertTrue(any(line.startswith("step 4: b.test: it does not resolve")
                            for line in result.trace), result.trace)

    def test_srv_target_dot_skips_disco_and_guesses_wave_prefix(self):
        self.make(srv("b.test", (0, 0, 0, ".")), {"b.test": ["127.0.0.3"],
                                                  "wave.b.test": ["127.0.0.4"]})
        result = self.found()
        self.assertEqual(result.jid, "wave.b.test")
        self.assertEqual(self.disco.calls, [])
        self.assertNotIn(("A/AAAA", "b.test"), self.resolver.queries)

    def test_nothing_found_is_remote_server_not_found(self):
        # Step 13, nothing timed out.
        self.make()
        failure = self.failed()
        self.assertEqual(failure.condition, "remote-server-not-found")
        self.assertFalse(failure.timed_out)
        self.assertEqual(failure.trace[-1], "step 13: failed: neither b.test nor "
                         "wave.b.test resolves (remote-server-not-found)")

    def test_failure_after_disco_says_what_disco_gave(self):
        self.make(addresses={"b.test": ["127.0.0.3"]}, disco=FakeDisco({"b.test": None}))
        self.assertEqual(self.failed().reason, "b.test: no google-wave disco item; "
                         "wave.b.test does not resolve")

    def test_dns_timeout_then_nothing_is_remote_server_timeout(self):
        self.make(failures={"_xmpp-server._tcp.b.test": DNSTimeoutError("b.test", "t"),
                            "b.test": DNSTimeoutError("b.test", "t")})
        failure = self.failed()
        self.assertEqual(failure.condition, "remote-server-timeout")
        self.assertTrue(failure.timed_out)

    def test_servfail_then_nothing_is_remote_server_not_found(self):
        self.make(failures={"b.test": DNSQueryError("b.test", "SERVFAIL")})
        self.assertEqual(self.failed().condition, "remote-server-not-found")

    def test_disco_connect_timeout_then_no_guess_is_remote_server_timeout(self):
        self.make(addresses={"b.test": ["127.0.0.3"]},
                  disco=FakeDisco({"b.test": ConnectTimeoutError()}))
        self.assertEqual(self.failed().condition, "remote-server-timeout")

    def test_trace_reads_as_the_seed_steps(self):
        self.make(dict(srv("b.test", (10, 0, 5269, "wave.b.test")),
                       **srv("wave.b.test", (10, 0, 5269, "wave.b.test"))),
                  {"wave.b.test": ["127.0.0.3"]}, disco=FakeDisco({"b.test": "wave.b.test"}))
        self.assertEqual(list(self.found().trace), [
            "step 1: SRV _xmpp-server._tcp.b.test -> 10 0 5269 wave.b.test.",
            "step 2: A/AAAA wave.b.test -> 127.0.0.3",
            "step 5: connect to b.test at 127.0.0.3:5269 and ask disco",
            "step 6: disco#items b.test -> wave.b.test (collaboration/google-wave)",
            "step 7: wave.b.test is not b.test: resolve it",
            "step 7: SRV _xmpp-server._tcp.wave.b.test -> 10 0 5269 wave.b.test.",
            "step 7: A/AAAA wave.b.test -> 127.0.0.3",
            "step 8: wave.b.test resolved: go to step 12",
            "step 12: use wave.b.test at 127.0.0.3:5269",
        ])

    def test_trace_is_logged_at_debug_as_it_grows(self):
        events = LogWatch(self).events
        self.make(addresses={"b.test": ["127.0.0.3"]}, disco=FakeDisco({"b.test": "b.test"}))
        result = self.found()
        logged = [e["line"] for e in events if e.get("log_namespace", "").endswith("Trace")
                  and e["log_level"].name == "debug"]
        self.assertEqual(logged, list(result.trace))

    def test_service_prefix_is_configurable(self):
        self.make(addresses={"federation.b.test": ["127.0.0.4"]}, service_prefix="federation")
        self.assertEqual(self.found().jid, "federation.b.test")

    def test_domain_is_case_and_dot_insensitive(self):
        self.make(addresses={"b.test": ["127.0.0.3"]}, disco=FakeDisco({"b.test": "B.Test."}))
        result = self.found("B.TEST.")
        self.assertEqual((result.domain, result.jid), ("b.test", "b.test"))

    def test_broken_resolver_fails_the_discovery_and_is_logged(self):
        self.make(failures={"_xmpp-server._tcp.b.test": ZeroDivisionError("bug")})
        failure = self.failed()
        self.assertEqual(failure.condition, "remote-server-not-found")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        # Not left pending: the next call answers at once, from the cache.
        self.failed()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 0)


class CacheTests(DiscoveryTestCase):

    def test_success_is_cached_until_the_success_ttl(self):
        self.make(addresses={"b.test": ["127.0.0.3"]}, disco=FakeDisco({"b.test": "b.test"}),
                  success_ttl=7200)
        first = self.found()
        asked = len(self.resolver.queries)
        self.clock.advance(7199)
        self.assertIs(self.found(), first)
        self.assertEqual(len(self.resolver.queries), asked)
        self.assertEqual(len(self.disco.calls), 1)
        self.clock.advance(1)
        self.found()
        self.assertEqual(len(self.resolver.queries), 2 * asked)
        self.assertEqual(len(self.disco.calls), 2)

    def test_failure_is_cached_until_the_failure_ttl(self):
        self.make(failure_ttl=300, disco=FakeDisco({"b.test": "b.test"}))
        first = self.failed()
        asked = len(self.resolver.queries)
        self.clock.advance(299)
        self.assertIs(self.failed(), first)
        self.assertEqual(len(self.resolver.queries), asked)
        # The peer fixed its DNS; after the failure TTL we see it.
        self.resolver.addresses["b.test"] = ["127.0.0.3"]
        self.clock.advance(1)
        self.assertEqual(self.found().endpoints[0].host, "127.0.0.3")

    def test_default_ttls_are_two_hours_and_five_minutes(self):
        d = self.make()
        self.assertEqual((d.success_ttl, d.failure_ttl), (7200, 300))

    def test_concurrent_discoveries_of_a_domain_share_one_run(self):
        pending = defer.Deferred()
        self.make(addresses={"b.test": ["127.0.0.3"]}, disco=FakeDisco({"b.test": pending}))
        first = self.discovery.discover("b.test")
        second = self.discovery.discover("b.test")
        self.assertNoResult(first)
        self.assertNoResult(second)
        pending.callback("b.test")
        self.assertIs(self.successResultOf(first), self.successResultOf(second))
        self.assertEqual(len(self.disco.calls), 1)

    def test_finding_the_same_service_again_is_not_logged_again_at_info(self):
        from twisted.logger import LogLevel
        events = LogWatch(self).events
        self.make(addresses={"b.test": ["127.0.0.3"]}, disco=FakeDisco({"b.test": "b.test"}))
        for _ in range(3):
            self.found()
            self.discovery.forget("b.test")
        self.resolver.addresses["b.test"] = ["127.0.0.4"]
        self.found()
        infos = [e["endpoints"] for e in events if e.get("log_level") == LogLevel.info
                 and e.get("log_format", "").startswith("wave service of")]
        self.assertEqual(infos, ["127.0.0.3:5269", "127.0.0.4:5269"])

    def test_forget_drops_the_cached_answer(self):
        self.make(addresses={"b.test": ["127.0.0.3"]}, disco=FakeDisco({"b.test": "b.test"}))
        self.found()
        self.discovery.forget("B.test")
        self.found()
        self.assertEqual(len(self.disco.calls), 2)
