"""
/metrics and /health (issue 13, item 4), scraped over HTTP as Prometheus
would: after a federated chat between two ``twistd -n wavebox`` processes
(TLS, dialback, DNS on loopback), the counters moved by exactly what
happened.
"""

import json
import os
import re

from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from tests import pki
from tests.dnsserver import ZoneServer, standard_records
from tests.helpers import console_login, quick_hash, start_twistd_wavebox, start_wavebox
from tests.processes import free_port
from wavebox.store import open_store

METRICS = re.compile(rb"metrics and health listening on http://127\.0\.0\.1:(\d+)/metrics")
S2S = re.compile(rb"S2S listening on ([\d.]+):(\d+)")
HOSTS = {"a.test": "127.0.0.2", "b.test": "127.0.0.3"}


@defer.inlineCallbacks
def get(port, path):
    response = yield Agent(reactor).request(b"GET", b"http://127.0.0.1:%d%s" % (port, path))
    body = yield readBody(response)
    return response.code, response.headers, body


def sample(text, name, **labels):
    """The value of one sample of the exposition ``text``, or None."""
    wanted = name + ("{%s}" % ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
                     if labels else "")
    for line in text.decode().splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if key == wanted:
            return float(value)
    return None


class OneServerTests(unittest.TestCase):

    def test_off_unless_a_port_is_given(self):
        top = start_wavebox(self, {"domain": ["a.test"], "data_dir": self.mktemp(),
                                   "s2s_port": "0", "s2s_interface": "127.0.0.2",
                                   "console_port": "0", "store": "memory:"})
        self.assertRaises(KeyError, top.getServiceNamed, "metrics")

    @defer.inlineCallbacks
    def test_health_and_metrics_of_a_running_server(self):
        top = start_wavebox(self, {"domain": ["a.test"], "data_dir": self.mktemp(),
                                   "s2s_port": "0", "s2s_interface": "127.0.0.2",
                                   "console_port": "0", "metrics_port": "0"})
        port = top.getServiceNamed("metrics").listening.getHost().port
        self.assertEqual(top.getServiceNamed("metrics").listening.getHost().host, "127.0.0.1")
        code, headers, body = yield get(port, b"/health")
        health = json.loads(body)
        self.assertEqual((code, health["status"], health["problems"]), (200, "ok", []))
        code, headers, body = yield get(port, b"/metrics")
        self.assertEqual(code, 200)
        self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        self.assertEqual(sample(body, "wavebox_sessions", frontend="console"), 0)
        self.assertEqual(sample(body, "wavebox_deltas_applied_total", origin="local"), 0)
        self.assertIsNotNone(sample(body, "wavebox_uptime_seconds"))

    @defer.inlineCallbacks
    def test_web_sessions_are_counted_beside_the_consoles(self):
        import urllib.parse
        from twisted.web.client import FileBodyProducer
        from twisted.web.http_headers import Headers
        from io import BytesIO
        web_port = free_port("127.0.0.1")
        top = start_wavebox(self, {"domain": ["a.test"], "data_dir": self.mktemp(),
                                   "s2s_port": "0", "s2s_interface": "127.0.0.2",
                                   "console_port": "0", "metrics_port": "0",
                                   "web_port": str(web_port), "store": "memory:"})
        yield top.wave_server.store.add_account("alice@a.test", quick_hash("secret"))
        port = top.getServiceNamed("metrics").listening.getHost().port
        _, _, before = yield get(port, b"/metrics")
        base = "http://127.0.0.1:%d" % (web_port,)
        response = yield Agent(reactor).request(
            b"POST", (base + "/login").encode(),
            Headers({b"Content-Type": [b"application/x-www-form-urlencoded"],
                     b"Origin": [base.encode()]}),
            FileBodyProducer(BytesIO(urllib.parse.urlencode(
                {"user": "alice", "password": "secret"}).encode())))
        yield readBody(response)
        self.assertEqual(response.code, 303)
        _, _, after = yield get(port, b"/metrics")
        self.assertEqual([(sample(body, "wavebox_sessions", frontend="web"),
                           sample(body, "wavebox_sessions", frontend="console"))
                          for body in (before, after)], [(0, 0), (1, 0)])

    @defer.inlineCallbacks
    def test_health_is_503_naming_what_is_wrong(self):
        top = start_wavebox(self, {"domain": ["a.test"], "data_dir": self.mktemp(),
                                   "s2s_port": "0", "s2s_interface": "127.0.0.2",
                                   "console_port": "0", "metrics_port": "0"})
        port = top.getServiceNamed("metrics").listening.getHost().port
        yield top.getServiceNamed("console").stopService()
        code, headers, body = yield get(port, b"/health")
        self.assertEqual((code, json.loads(body)["problems"]), (503, ["console is not running"]))


class FailureTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_a_peer_certificate_we_do_not_trust_counts_as_a_tls_failure(self):
        from twisted.words.protocols.jabber import error, xmlstream
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        cert, key, ca = pki.write_domain_files("a.test", directory)
        # b.test runs on its own self-signed certificate, which a.test does not trust.
        b = start_wavebox(self, {"domain": ["b.test"], "data_dir": self.mktemp(),
                                 "s2s_port": "0", "s2s_interface": "127.0.0.3",
                                 "console_port": "0", "store": "memory:"})
        zone = yield ZoneServer.start(records=standard_records(
            {"b.test": b.s2s.listening_address()[1]}))
        self.addCleanup(zone.stop)
        a = start_wavebox(self, {"domain": ["a.test"], "data_dir": self.mktemp(),
                                 "s2s_port": "0", "s2s_interface": "127.0.0.2",
                                 "certificate": cert, "private_key": key, "trusted_ca": ca,
                                 "console_port": "0", "store": "memory:",
                                 "nameserver": "127.0.0.1:%d" % (zone.port,),
                                 "metrics_port": "0"})
        port = a.getServiceNamed("metrics").listening.getHost().port
        iq = xmlstream.IQ(None, "get")
        iq["from"], iq["to"] = "a.test", "b.test"
        iq.addElement(("urn:xmpp:ping", "ping"))
        yield self.assertFailure(a.s2s.request(iq, timeout=20), error.StanzaError)
        _, _, body = yield get(port, b"/metrics")
        self.assertEqual(sample(body, "wavebox_s2s_failures_total", kind="tls"), 1)
        self.assertEqual(sample(body, "wavebox_s2s_failures_total", kind="dialback"), 0)


class FederatedChatTests(unittest.TestCase):

    @defer.inlineCallbacks
    def start(self, domain, zone):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        data = os.path.join(directory, "data")
        cert, key, ca = pki.write_domain_files(domain, directory)
        store = open_store("sqlite:wavebox.sqlite3", data)
        user = "alice@a.test" if domain == "a.test" else "bob@b.test"
        yield store.add_account(user, quick_hash("secret"))
        yield store.close()
        proc, console = yield start_twistd_wavebox(self, directory, [
            "--domain", domain, "--data-dir", data, "--certificate", cert,
            "--private-key", key, "--trusted-ca", ca, "--s2s-interface", HOSTS[domain],
            "--s2s-port", "0", "--console-interface", "127.0.0.1", "--console-port", "0",
            "--nameserver", "127.0.0.1:%d" % (zone.port,), "--dns-timeout", "2",
            "--metrics-port", "0"])
        for _ in range(200):
            if METRICS.search(proc.output) and S2S.search(proc.output):
                break
            yield deferLater(0.05)
        return (proc, console, int(METRICS.search(proc.output).group(1)),
                int(S2S.search(proc.output).group(2)))

    @defer.inlineCallbacks
    def test_counters_move_by_what_the_chat_did(self):
        zone = yield ZoneServer.start(records=standard_records())
        self.addCleanup(zone.stop)
        a, a_console, a_metrics, a_s2s = yield self.start("a.test", zone)
        b, b_console, b_metrics, b_s2s = yield self.start("b.test", zone)
        zone.serve(standard_records({"a.test": a_s2s, "b.test": b_s2s}))
        _, _, before_a = yield get(a_metrics, b"/metrics")
        _, _, before_b = yield get(b_metrics, b"/metrics")

        alice = yield console_login(self, a_console, "alice", "secret", "alice@a.test")
        bob = yield console_login(self, b_console, "bob", "secret", "bob@b.test")
        alice.send("/new")
        created = yield alice.expect(r"^created wave (\S+)")
        alice.send("/add bob@b.test")
        yield alice.expect("added bob@b.test")
        yield bob.expect("added you to wave " + re.escape(created.group(1)))
        for line in ("one", "two", "three"):
            alice.send(line)
            yield alice.expect("^alice@a.test: %s$" % (line,))
        bob.send("/list")
        yield bob.expect(r"^  0 ")
        bob.send("/open 0")
        yield bob.expect("^alice@a.test: three$")

        _, _, after_a = yield get(a_metrics, b"/metrics")
        _, _, after_b = yield get(b_metrics, b"/metrics")

        def moved(before, after, name, **labels):
            return sample(after, name, **labels) - (sample(before, name, **labels) or 0)
        # /new, /add and three lines: five deltas made on a.test, by a user of ours...
        self.assertEqual(moved(before_a, after_a, "wavebox_deltas_applied_total",
                               origin="local"), 5)
        self.assertEqual(moved(before_a, after_a, "wavebox_submit_seconds_count"), 5)
        # ... and the same five on b.test, by a user of another server.
        self.assertEqual(moved(before_b, after_b, "wavebox_deltas_applied_total",
                               origin="remote"), 5)
        self.assertEqual(moved(before_b, after_b, "wavebox_deltas_applied_total",
                               origin="local"), 0)
        self.assertGreaterEqual(sample(after_a, "wavebox_s2s_streams", direction="outgoing",
                                       state="authenticated"), 1)
        self.assertGreaterEqual(sample(after_b, "wavebox_s2s_streams", direction="incoming",
                                       state="authenticated"), 1)
        self.assertEqual(sample(after_a, "wavebox_sessions", frontend="console"), 1)
        # Each durable delta took a store commit (group commit may carry several).
        commits = moved(before_a, after_a, "wavebox_store_commit_seconds_count")
        self.assertTrue(1 <= commits <= 5 + 5, commits)
        self.assertEqual(moved(before_a, after_a, "wavebox_s2s_failures_total", kind="tls"), 0)
        # Every update reached b.test: nothing waits for it in a.test's outbox.
        self.assertIn(sample(after_a, "wavebox_outbox_queued", destination="b.test"), (0, None))


def deferLater(seconds):
    from twisted.internet import task
    return task.deferLater(reactor, seconds, lambda: None)
