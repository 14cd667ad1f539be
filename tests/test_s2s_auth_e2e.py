"""
Two ``twistd wavebox`` processes federating by certificate alone (issue 15):
``--s2s-auth certificate`` (SASL EXTERNAL, no dialback at all), and direct
TLS (XEP-0368) found through ``_xmpps-server._tcp`` SRV records served by
the tests' DNS server.  Each server has a certificate from the tests' one
CA (tests/pki.py) and trusts that CA; a wave chat between alice@a.test and
bob@b.test is what has to work, and the servers' own log lines say how each
stream was authenticated.
"""

import os
import re

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from tests import pki
from tests.dnsserver import ZoneServer, standard_records
from tests.helpers import console_login, quick_hash, start_twistd_wavebox
from wavebox.store import open_store

HOSTS = {"a.test": "127.0.0.2", "b.test": "127.0.0.3"}
USERS = {"a.test": "alice", "b.test": "bob"}
S2S = re.compile(rb"S2S listening on ([0-9.]+):(\d+)")
DIRECT_TLS = re.compile(rb"S2S listening for direct TLS \(XEP-0368\) on ([0-9.]+):(\d+)")


def wait(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


class TwoProcesses(unittest.TestCase):

    timeout = 120
    #: Extra command-line options of both servers.
    options = []

    @defer.inlineCallbacks
    def setUp(self):
        self.zone = yield ZoneServer.start(records=standard_records())
        self.addCleanup(self.zone.stop)
        self.procs, self.consoles, self.ports, self.tls_ports = {}, {}, {}, {}
        for domain in HOSTS:
            yield self.start(domain)
        self.zone.serve(standard_records(self.ports, tls_ports=self.tls_ports))

    @defer.inlineCallbacks
    def start(self, domain):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        data = os.path.join(directory, "data")
        cert, key, ca = pki.write_domain_files(domain, directory)
        store = open_store("sqlite:wavebox.sqlite3", data)
        yield store.add_account("%s@%s" % (USERS[domain], domain), quick_hash("secret"))
        yield store.close()
        proc, console = yield start_twistd_wavebox(self, directory, [
            "--domain", domain, "--data-dir", data, "--certificate", cert,
            "--private-key", key, "--trusted-ca", ca, "--s2s-interface", HOSTS[domain],
            "--s2s-port", "0", "--console-interface", "127.0.0.1", "--console-port", "0",
            "--nameserver", "127.0.0.1:%d" % (self.zone.port,), "--dns-timeout", "2"]
            + self.options)
        wanted = [S2S] + ([DIRECT_TLS] if "--s2s-tls-port" in self.options else [])
        for _ in range(200):
            if all(r.search(proc.output) for r in wanted):
                break
            yield wait(0.05)
        self.procs[domain], self.consoles[domain] = proc, console
        self.ports[domain] = int(S2S.search(proc.output).group(2))
        if DIRECT_TLS in wanted:
            self.tls_ports[domain] = int(DIRECT_TLS.search(proc.output).group(2))

    def output(self, domain):
        return self.procs[domain].output.decode("utf-8", "replace")

    @defer.inlineCallbacks
    def chat(self):
        """alice@a.test makes a wave, adds bob@b.test, writes; bob reads it on b.test."""
        alice = yield console_login(self, self.consoles["a.test"], "alice", "secret",
                                    "alice@a.test")
        bob = yield console_login(self, self.consoles["b.test"], "bob", "secret", "bob@b.test")
        alice.send("/new")
        created = yield alice.expect(r"^created wave (\S+)")
        alice.send("/add bob@b.test")
        yield alice.expect("added bob@b.test")
        yield bob.expect("added you to wave " + re.escape(created.group(1)))
        alice.send("hello over certificates")
        yield alice.expect("^alice@a.test: hello over certificates$")
        bob.send("/list")
        yield bob.expect(r"^  0 ")
        bob.send("/open 0")
        yield bob.expect("^alice@a.test: hello over certificates$")
        # And bob answers: b.test's stream to a.test carries it.
        bob.send("hello back")
        yield alice.expect("^bob@b.test: hello back$")


class CertificatePolicyTests(TwoProcesses):
    """Both servers run with ``--s2s-auth certificate``, as Prosody's s2s_secure_auth."""

    options = ["--s2s-auth", "certificate"]

    @defer.inlineCallbacks
    def test_two_servers_chat_authenticated_by_sasl_external_only(self):
        yield self.chat()
        a, b = self.output("a.test"), self.output("b.test")
        # Each direction: the originating side used EXTERNAL, the receiving
        # side accepted it (a.test's streams to b.test and back).
        self.assertIn("a.test -> b.test authenticated by SASL EXTERNAL over STARTTLS", a)
        self.assertIn("a.test -> b.test authenticated by SASL EXTERNAL over STARTTLS "
                      "(its certificate names a.test)", b)
        self.assertIn("b.test -> a.test authenticated by SASL EXTERNAL over STARTTLS", b)
        self.assertIn("b.test -> a.test authenticated by SASL EXTERNAL over STARTTLS "
                      "(its certificate names b.test)", a)
        # No dialback at all: none offered, sent, verified or answered.
        for text in (a, b):
            self.assertNotIn("dialback:", text)
            self.assertNotIn("authenticated by dialback", text)
            self.assertNotIn("accepted neither", text)


class DirectTLSTests(TwoProcesses):
    """
    Both servers also listen for direct TLS, published as
    ``_xmpps-server._tcp`` records of a more preferred priority than the
    ``_xmpp-server._tcp`` ones: streams go there, TLS from the first byte.
    """

    options = ["--s2s-tls-port", "0"]

    @defer.inlineCallbacks
    def test_two_servers_chat_over_direct_tls_found_by_xmpps_server_records(self):
        self.assertEqual(set(self.tls_ports), {"a.test", "b.test"})
        self.assertNotEqual(self.tls_ports["b.test"], self.ports["b.test"])
        yield self.chat()
        a, b = self.output("a.test"), self.output("b.test")
        # Discovery ordered the direct TLS endpoint first.
        self.assertIn("wave service of b.test: wave.b.test at 127.0.0.3:%d, 127.0.0.3:%d"
                      % (self.tls_ports["b.test"], self.ports["b.test"]), a)
        self.assertIn("outgoing S2S stream 127.0.0.3:%d: a.test -> b.test authenticated by "
                      "SASL EXTERNAL over direct TLS" % (self.tls_ports["b.test"],), a)
        self.assertIn("a.test -> b.test authenticated by SASL EXTERNAL over direct TLS "
                      "(its certificate names a.test)", b)
        self.assertIn("outgoing S2S stream 127.0.0.2:%d: b.test -> a.test authenticated by "
                      "SASL EXTERNAL over direct TLS" % (self.tls_ports["a.test"],), b)
        # Nothing went to the STARTTLS ports.
        self.assertNotIn("over STARTTLS", a + b)
