"""DNS for S2S: RFC 2782 ordering, RFC 6120 3.2 resolution, dnspython off the reactor."""

import os
import sys

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.error import DNSLookupError
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from tests.dnsserver import A, AAAA, SRV, ZoneServer, standard_records, zone_texts
from wavebox.xmpp.resolver import (DNSQueryError, DNSTimeoutError, DnspythonResolver,
                                   DomainNotFound, Endpoint, FakeResolver, IResolver,
                                   NoServiceError, ResolutionTimeout, SRVRecord,
                                   order_srv, resolve_server)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class ListTrace:
    """The smallest trace: resolve_server only calls step()."""

    def __init__(self):
        self.lines = []

    def step(self, number, text):
        self.lines.append("step %d: %s" % (number, text))


class ScriptedRandom:
    """randint() answers from a script, and remembers the ranges it was asked."""

    def __init__(self, *draws):
        self.draws = list(draws)
        self.asked = []

    def randint(self, low, high):
        self.asked.append((low, high))
        draw = self.draws.pop(0)
        assert low <= draw <= high, (draw, low, high)
        return draw


class SRVRecordTests(unittest.SynchronousTestCase):

    def test_target_is_normalised_without_trailing_dot(self):
        self.assertEqual(SRVRecord(10, 0, 5269, "Wave.B.Test.").target, "wave.b.test")

    def test_root_target_stays_a_dot(self):
        record = SRVRecord(0, 0, 0, ".")
        self.assertTrue(record.is_root)
        self.assertEqual(str(record), "0 0 0 .")

    def test_str_is_the_zone_file_spelling(self):
        self.assertEqual(str(SRVRecord(10, 0, 5269, "wave.b.test")), "10 0 5269 wave.b.test.")

    def test_endpoint_str_brackets_ipv6(self):
        self.assertEqual(str(Endpoint("127.0.0.3", 5269, "b.test")), "127.0.0.3:5269")
        self.assertEqual(str(Endpoint("::1", 5269, "b.test")), "[::1]:5269")


class OrderSRVTests(unittest.SynchronousTestCase):

    def test_lower_priority_comes_first(self):
        backup = SRVRecord(20, 0, 5269, "backup-wave.example.com")
        main = SRVRecord(10, 0, 5269, "wave.example.com")
        self.assertEqual(order_srv([backup, main], ScriptedRandom(0, 0)), [main, backup])

    def test_weighted_draw_within_a_priority(self):
        # The seed's example: wave1 and wave2 share priority 10 at weight 50.
        wave1 = SRVRecord(10, 50, 5269, "wave1.example.com")
        wave2 = SRVRecord(10, 50, 5269, "wave2.example.com")
        backup = SRVRecord(20, 0, 5269, "backup-wave.example.com")
        # A draw above 50 passes wave1's running sum and lands on wave2.
        rnd = ScriptedRandom(51, 0, 0)
        self.assertEqual(order_srv([wave1, wave2, backup], rnd), [wave2, wave1, backup])
        self.assertEqual(rnd.asked, [(0, 100), (0, 50), (0, 0)])
        # A draw of 50 or less stops at wave1.
        self.assertEqual(order_srv([wave1, wave2, backup], ScriptedRandom(50, 0, 0)),
                         [wave1, wave2, backup])

    def test_weight_zero_is_picked_only_on_a_zero_draw(self):
        zero = SRVRecord(10, 0, 5269, "zero.test")
        heavy = SRVRecord(10, 10, 5269, "heavy.test")
        self.assertEqual(order_srv([heavy, zero], ScriptedRandom(0, 0)), [zero, heavy])
        self.assertEqual(order_srv([heavy, zero], ScriptedRandom(1, 0)), [heavy, zero])

    def test_every_record_appears_once_with_the_real_random(self):
        records = [SRVRecord(p, w, 5269, "h%d-%d.test" % (p, w))
                   for p in (10, 20) for w in (0, 1, 5, 60)]
        for _ in range(50):
            ordered = order_srv(records)
            self.assertEqual(sorted(ordered, key=str), sorted(records, key=str))
            self.assertEqual([r.priority for r in ordered], [10] * 4 + [20] * 4)


class FakeResolverTests(unittest.SynchronousTestCase):

    def test_provides_the_interface_and_records_queries(self):
        resolver = FakeResolver(srv={"_xmpp-server._tcp.b.test.": [SRVRecord(10, 0, 5269, "b.test")]},
                                addresses={"B.test": ["127.0.0.3"]},
                                failures={"c.test": DNSTimeoutError("c.test", "t")})
        verifyObject(IResolver, resolver)
        self.assertEqual(self.successResultOf(resolver.lookup_srv("_xmpp-server._tcp.b.test")),
                         [SRVRecord(10, 0, 5269, "b.test")])
        self.assertEqual(self.successResultOf(resolver.lookup_addresses("b.test")), ["127.0.0.3"])
        self.assertEqual(self.successResultOf(resolver.lookup_addresses("x.test")), [])
        self.failureResultOf(resolver.lookup_addresses("c.test"), DNSTimeoutError)
        self.assertEqual(resolver.queries, [("SRV", "_xmpp-server._tcp.b.test"),
                                            ("A/AAAA", "b.test"), ("A/AAAA", "x.test"),
                                            ("A/AAAA", "c.test")])


class ResolveServerTests(unittest.SynchronousTestCase):
    """Steps 1-4 for one domain, against the in-memory resolver."""

    def resolve(self, resolver, domain="b.test", random=None):
        self.trace = ListTrace()
        kw = {"random": random} if random is not None else {}
        return resolve_server(resolver, domain, self.trace, **kw)

    def test_srv_found_gives_each_target_address_on_its_port(self):
        resolver = FakeResolver(
            srv={"_xmpp-server._tcp.b.test": [SRVRecord(10, 0, 5270, "wave.b.test")]},
            addresses={"wave.b.test": ["127.0.0.3", "::3"], "b.test": ["127.0.0.9"]})
        endpoints = self.successResultOf(self.resolve(resolver))
        self.assertEqual(endpoints, [Endpoint("127.0.0.3", 5270, "wave.b.test"),
                                     Endpoint("::3", 5270, "wave.b.test")])
        self.assertEqual(self.trace.lines, [
            "step 1: SRV _xmpp-server._tcp.b.test -> 10 0 5270 wave.b.test.",
            "step 2: A/AAAA wave.b.test -> 127.0.0.3, ::3"])
        self.assertNotIn(("A/AAAA", "b.test"), resolver.queries)

    def test_no_srv_falls_back_to_the_domain_on_5269(self):
        resolver = FakeResolver(addresses={"b.test": ["127.0.0.3"]})
        endpoints = self.successResultOf(self.resolve(resolver))
        self.assertEqual(endpoints, [Endpoint("127.0.0.3", 5269, "b.test")])
        self.assertEqual(self.trace.lines, [
            "step 1: SRV _xmpp-server._tcp.b.test -> none",
            "step 3: A/AAAA b.test -> 127.0.0.3"])

    def test_srv_lookup_error_falls_back_to_the_domain(self):
        resolver = FakeResolver(
            addresses={"b.test": ["127.0.0.3"]},
            failures={"_xmpp-server._tcp.b.test": DNSQueryError("x", "SERVFAIL")})
        endpoints = self.successResultOf(self.resolve(resolver))
        self.assertEqual(endpoints, [Endpoint("127.0.0.3", 5269, "b.test")])
        self.assertEqual(self.trace.lines[0],
                         "step 1: SRV _xmpp-server._tcp.b.test -> failed (SERVFAIL)")

    def test_srv_target_dot_means_no_service(self):
        resolver = FakeResolver(
            srv={"_xmpp-server._tcp.b.test": [SRVRecord(0, 0, 0, ".")]},
            addresses={"b.test": ["127.0.0.3"]})
        self.failureResultOf(self.resolve(resolver), NoServiceError)
        # No fallback to the domain's own address.
        self.assertEqual(resolver.queries, [("SRV", "_xmpp-server._tcp.b.test")])

    def test_targets_in_priority_then_weight_order_with_every_address(self):
        resolver = FakeResolver(
            srv={"_xmpp-server._tcp.example.com": [
                SRVRecord(20, 0, 5269, "backup-wave.example.com"),
                SRVRecord(10, 50, 5269, "wave1.example.com"),
                SRVRecord(10, 50, 5270, "wave2.example.com")]},
            addresses={"wave1.example.com": ["127.0.0.11", "127.0.0.12"],
                       "wave2.example.com": ["127.0.0.21"],
                       "backup-wave.example.com": ["127.0.0.31"]})
        endpoints = self.successResultOf(
            self.resolve(resolver, "example.com", ScriptedRandom(100, 0, 0)))
        self.assertEqual([(e.host, e.port) for e in endpoints], [
            ("127.0.0.21", 5270), ("127.0.0.11", 5269), ("127.0.0.12", 5269),
            ("127.0.0.31", 5269)])

    def test_target_without_address_is_skipped_for_the_next(self):
        resolver = FakeResolver(
            srv={"_xmpp-server._tcp.b.test": [SRVRecord(10, 0, 5269, "gone.b.test"),
                                              SRVRecord(20, 0, 5269, "wave.b.test")]},
            addresses={"wave.b.test": ["127.0.0.3"]},
            failures={"gone.b.test": DNSTimeoutError("gone.b.test", "t")})
        endpoints = self.successResultOf(self.resolve(resolver))
        self.assertEqual(endpoints, [Endpoint("127.0.0.3", 5269, "wave.b.test")])
        self.assertIn("step 2: A/AAAA gone.b.test -> timeout", self.trace.lines)

    def test_dot_among_other_targets_is_ignored(self):
        resolver = FakeResolver(
            srv={"_xmpp-server._tcp.b.test": [SRVRecord(0, 0, 0, "."),
                                              SRVRecord(10, 0, 5269, "wave.b.test")]},
            addresses={"wave.b.test": ["127.0.0.3"]})
        self.assertEqual(self.successResultOf(self.resolve(resolver)),
                         [Endpoint("127.0.0.3", 5269, "wave.b.test")])

    def test_srv_targets_without_addresses_do_not_fall_back_to_the_domain(self):
        resolver = FakeResolver(
            srv={"_xmpp-server._tcp.b.test": [SRVRecord(10, 0, 5269, "gone.b.test")]},
            addresses={"b.test": ["127.0.0.3"]})
        failure = self.failureResultOf(self.resolve(resolver), DomainNotFound)
        self.assertEqual(failure.value.domain, "b.test")
        self.assertNotIn(("A/AAAA", "b.test"), resolver.queries)

    def test_nothing_at_all_is_domain_not_found(self):
        failure = self.failureResultOf(self.resolve(FakeResolver()), DomainNotFound)
        self.assertIn("no SRV record and no address", failure.value.reason)
        self.assertIsInstance(failure.value, DNSLookupError)

    def test_a_timeout_and_nothing_else_is_resolution_timeout(self):
        resolver = FakeResolver(failures={"b.test": DNSTimeoutError("b.test", "t")})
        failure = self.failureResultOf(self.resolve(resolver), ResolutionTimeout)
        self.assertIn("address query timed out", failure.value.reason)

    def test_servfail_and_nothing_else_is_not_a_timeout(self):
        resolver = FakeResolver(failures={"b.test": DNSQueryError("b.test", "SERVFAIL")})
        failure = self.failureResultOf(self.resolve(resolver), DomainNotFound)
        self.assertNotIsInstance(failure.value, ResolutionTimeout)


class ZoneServerMixin:

    @defer.inlineCallbacks
    def start_zone(self, records, **kw):
        server = yield ZoneServer.start(records=records, **kw)
        self.addCleanup(server.stop)
        return server


class DnspythonResolverTests(ZoneServerMixin, unittest.TestCase):
    """dnspython against a real twisted.names zone on 127.0.0.1."""

    @defer.inlineCallbacks
    def setUp(self):
        records = standard_records({"b.test": 5270})
        records["_xmpp-server._tcp.c.test"] = [SRV(0, 0, 0, ".")]
        records["six.test"] = [AAAA("::1"), A("127.0.0.6")]
        self.zone = yield self.start_zone(records, servfail=["broken.test"])
        self.resolver = DnspythonResolver(nameserver=self.zone.nameserver, timeout=2.0)

    def test_provides_the_interface(self):
        verifyObject(IResolver, self.resolver)

    @defer.inlineCallbacks
    def test_srv_then_a_from_the_zone(self):
        records = yield self.resolver.lookup_srv("_xmpp-server._tcp.b.test")
        self.assertEqual(records, [SRVRecord(10, 0, 5270, "wave.b.test")])
        addresses = yield self.resolver.lookup_addresses(records[0].target)
        self.assertEqual(addresses, ["127.0.0.3"])
        # A and AAAA are asked at once: in either order.
        self.assertEqual(self.zone.queries[0], ("_xmpp-server._tcp.b.test", "SRV"))
        self.assertEqual(sorted(self.zone.queries[1:]), [("wave.b.test", "A"),
                                                         ("wave.b.test", "AAAA")])

    @defer.inlineCallbacks
    def test_a_and_aaaa_are_asked_at_once(self):
        # Each query waits, in its worker thread, until the other one is
        # under way too: asked one after the other, the first would wait in
        # vain and the barrier break (a guard, not a timing).
        import threading
        barrier = threading.Barrier(2, timeout=30)
        real_query = self.resolver._query

        def query(resolver, name, rdtype):
            barrier.wait()
            return real_query(resolver, name, rdtype)
        self.resolver._query = query
        self.assertEqual((yield self.resolver.lookup_addresses("six.test")),
                         ["127.0.0.6", "::1"])

    @defer.inlineCallbacks
    def test_a_then_aaaa(self):
        self.assertEqual((yield self.resolver.lookup_addresses("six.test")),
                         ["127.0.0.6", "::1"])

    @defer.inlineCallbacks
    def test_dot_target_from_the_zone(self):
        records = yield self.resolver.lookup_srv("_xmpp-server._tcp.c.test")
        self.assertEqual(records, [SRVRecord(0, 0, 0, ".")])
        self.assertTrue(records[0].is_root)

    @defer.inlineCallbacks
    def test_missing_names_are_empty_answers(self):
        self.assertEqual((yield self.resolver.lookup_srv("_xmpp-server._tcp.a.test")), [])
        self.assertEqual((yield self.resolver.lookup_addresses("nowhere.test")), [])

    @defer.inlineCallbacks
    def test_servfail_is_a_query_error_not_a_timeout(self):
        try:
            yield self.resolver.lookup_addresses("broken.test")
        except DNSQueryError as e:
            self.assertNotIsInstance(e, DNSTimeoutError)
        else:
            self.fail("no DNSQueryError")

    @defer.inlineCallbacks
    def test_resolve_server_against_the_zone(self):
        trace = ListTrace()
        endpoints = yield resolve_server(self.resolver, "b.test", trace)
        self.assertEqual(endpoints, [Endpoint("127.0.0.3", 5270, "wave.b.test")])
        trace = ListTrace()
        endpoints = yield resolve_server(self.resolver, "a.test", trace)
        self.assertEqual(endpoints, [Endpoint("127.0.0.2", 5269, "a.test")])
        self.assertEqual(trace.lines, ["step 1: SRV _xmpp-server._tcp.a.test -> none",
                                       "step 3: A/AAAA a.test -> 127.0.0.2"])

    @defer.inlineCallbacks
    def test_nameserver_may_be_a_host_name(self):
        resolver = DnspythonResolver(nameserver=("localhost", self.zone.port), timeout=2.0)
        self.assertEqual((yield resolver.lookup_addresses("a.test")), ["127.0.0.2"])


class SilentProtocol(protocol.DatagramProtocol):
    """A UDP port that reads DNS queries and never answers."""

    def __init__(self):
        self.received = 0

    def datagramReceived(self, data, address):
        self.received += 1


class NonBlockingTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_silent_server_times_out_while_the_reactor_keeps_running(self):
        silent = SilentProtocol()
        port = reactor.listenUDP(0, silent, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        resolver = DnspythonResolver(nameserver=("127.0.0.1", port.getHost().port), timeout=0.5)

        ticks = []
        ticker = task.LoopingCall(lambda: ticks.append(silent.received))
        ticker.start(0.01)
        self.addCleanup(ticker.stop)
        try:
            yield resolver.lookup_srv("_xmpp-server._tcp.b.test")
        except DNSTimeoutError:
            pass
        else:
            self.fail("a silent server gave an answer")
        # The reactor read the query off the silent port and ran the ticker
        # while the query was waiting: it was never blocked.  A blocked
        # reactor would have ticked once at start and once at most after.
        self.assertGreater(silent.received, 0)
        self.assertTrue(any(received > 0 for received in ticks[:-1]), ticks)
        self.assertGreater(len(ticks), 3)


class ZoneServerFixtureTests(ZoneServerMixin, unittest.TestCase):

    @defer.inlineCallbacks
    def test_zone_from_zone_file_text(self):
        text = ("$ORIGIN example.\n$TTL 60\n"
                "@ IN SOA ns.example. hostmaster.example. (\n 1 3600 600 86400 60 )\n"
                "@ IN NS ns.example.\n"
                "_xmpp-server._tcp IN SRV 10 0 5269 wave.example.\n"
                "wave IN A 127.0.0.7\n")
        zone = yield ZoneServer.start(zones=[text])
        self.addCleanup(zone.stop)
        resolver = DnspythonResolver(nameserver=zone.nameserver, timeout=2.0)
        endpoints = yield resolve_server(resolver, "example", ListTrace())
        self.assertEqual(endpoints, [Endpoint("127.0.0.7", 5269, "wave.example")])

    @defer.inlineCallbacks
    def test_serve_replaces_the_zones_on_the_same_port(self):
        # A peer told where the server is before its own port is known.
        zone = yield self.start_zone({"a.test": [A("127.0.0.2")]})
        port = zone.port
        zone.serve(standard_records({"b.test": 5270}))
        resolver = DnspythonResolver(nameserver=zone.nameserver, timeout=2.0)
        endpoints = yield resolve_server(resolver, "b.test", ListTrace())
        self.assertEqual(endpoints, [Endpoint("127.0.0.3", 5270, "wave.b.test")])
        zone.serve({"c.test": [A("127.0.0.4")]})
        self.assertEqual((yield resolver.lookup_addresses("c.test")), ["127.0.0.4"])
        self.assertEqual((yield resolver.lookup_addresses("wave.b.test")), [])
        self.assertEqual(zone.port, port)

    @defer.inlineCallbacks
    def test_soa_on_one_line_does_not_swallow_the_records_after_it(self):
        text = ("$ORIGIN example.\n$TTL 60\n"
                "@ IN SOA ns.example. hostmaster.example. ( 1 3600 600 86400 60 )\n"
                "_xmpp-server._tcp IN SRV 10 0 5269 wave.example.\n"
                "wave IN A 127.0.0.7\n")
        zone = yield ZoneServer.start(zones=[text])
        self.addCleanup(zone.stop)
        resolver = DnspythonResolver(nameserver=zone.nameserver, timeout=2.0)
        endpoints = yield resolve_server(resolver, "example", ListTrace())
        self.assertEqual(endpoints, [Endpoint("127.0.0.7", 5269, "wave.example")])

    @defer.inlineCallbacks
    def test_answers_over_tcp_on_the_same_port(self):
        import dns.message
        import dns.query
        zone = yield self.start_zone(standard_records())
        query = dns.message.make_query("wave.a.test.", "A")
        response = yield defer.Deferred.fromCoroutine(_in_thread(
            dns.query.tcp, query, "127.0.0.1", port=zone.port, timeout=2.0))
        self.assertEqual([rr.address for rrset in response.answer for rr in rrset],
                         ["127.0.0.2"])

    @defer.inlineCallbacks
    def test_runs_as_a_subprocess_printing_its_port(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("".join(zone_texts(
                standard_records({"a.test": 5269}))))
        child = _PortReader()
        env = dict(os.environ, PYTHONPATH=ROOT)
        process = reactor.spawnProcess(child, sys.executable,
                                       [sys.executable, "-m", "tests.dnsserver", path],
                                       env=env)
        try:
            port = yield child.port
            resolver = DnspythonResolver(nameserver=("127.0.0.1", port), timeout=2.0)
            endpoints = yield resolve_server(resolver, "a.test", ListTrace())
            self.assertEqual(endpoints, [Endpoint("127.0.0.2", 5269, "wave.a.test")])
        finally:
            process.signalProcess("TERM")
            yield child.ended


    @defer.inlineCallbacks
    def test_serves_on_the_port_it_is_given(self):
        # The tutorial's config files name the DNS server's port before it
        # starts: --port must be the port it serves on, over UDP and TCP.
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("".join(zone_texts(standard_records({"a.test": 5269}))))
        import socket
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            wanted = probe.getsockname()[1]
        child = _PortReader()
        env = dict(os.environ, PYTHONPATH=ROOT)
        process = reactor.spawnProcess(
            child, sys.executable,
            [sys.executable, "-m", "tests.dnsserver", "--port", str(wanted), path], env=env)
        try:
            port = yield child.port
            self.assertEqual(port, wanted)
            resolver = DnspythonResolver(nameserver=("127.0.0.1", wanted), timeout=2.0)
            endpoints = yield resolve_server(resolver, "a.test", ListTrace())
            self.assertEqual(endpoints, [Endpoint("127.0.0.2", 5269, "wave.a.test")])
        finally:
            process.signalProcess("TERM")
            yield child.ended

    def test_a_bad_port_is_one_line_and_status_2(self):
        import subprocess
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("".join(zone_texts(standard_records({"a.test": 5269}))))
        done = subprocess.run([sys.executable, "-m", "tests.dnsserver", "--port", "x", path],
                              env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(done.returncode, 2)
        self.assertEqual(done.stderr, "dnsserver: --port: not a port number: 'x'\n")


async def _in_thread(f, *args, **kw):
    from twisted.internet import threads
    return await threads.deferToThread(f, *args, **kw)


class _PortReader(protocol.ProcessProtocol):
    """Reads the first stdout line of ``python -m tests.dnsserver``."""

    def __init__(self):
        self.port = defer.Deferred()
        self.ended = defer.Deferred()
        self.out = b""
        self.err = b""

    def outReceived(self, data):
        self.out += data
        if b"\n" in self.out and not self.port.called:
            self.port.callback(int(self.out.split(b"\n")[0]))

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        if not self.port.called:
            self.port.errback(RuntimeError("dnsserver ended: %r" % (self.err,)))
        self.ended.callback(None)
