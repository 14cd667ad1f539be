"""
The seed's SRV redundancy seen from the sending side (issue 12, item 5):
b.test is served by wave1.b.test and wave2.b.test at priority 10 and
backup-wave.b.test at priority 20.  wave1 refuses connections, wave2
accepts them and never says a word; our S2S service tries both (priority
first) and then reaches the backup, and ``wavebox check`` shows all three.
"""

import io
import os

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest
from twisted.words.xish import domish

from tests import pki
from tests.dnsserver import A, SRV, ZoneServer
from tests.processes import free_port
from tests.test_check import make_config, no_disco
from wavebox.xmpp import check

HOSTS = {"wave1.b.test": "127.0.0.31", "wave2.b.test": "127.0.0.32",
         "backup-wave.b.test": "127.0.0.33"}


class _Silent(protocol.Protocol):
    """Accepts the connection and says nothing: a target that times out."""

    def connectionMade(self):
        self.factory.connections.append(self.transport.getPeer())


def wavebox_s2s(testcase, domain, host, nameserver):
    """An in-process wavebox (S2S only) for ``domain`` on ``host``; stopped at the end."""
    from wavebox import service as wservice
    from wavebox.config import load
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    cert, key, ca = pki.write_domain_files(domain, directory)
    top = wservice.makeService(load({
        "domain": [domain], "data_dir": os.path.join(directory, "data"),
        "s2s_interface": host, "s2s_port": "0", "certificate": cert, "private_key": key,
        "trusted_ca": ca, "nameserver": nameserver, "dns_timeout": "2",
        "console_port": "0", "web_port": "0", "store": "memory:"}))
    top.startService()
    testcase.addCleanup(top.stopService)
    return top, ca


class SendingSideFailoverTests(unittest.TestCase):

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.zone = yield ZoneServer.start(records={"a.test": [A("127.0.0.2")]})
        self.addCleanup(self.zone.stop)
        nameserver = "%s:%d" % self.zone.nameserver
        backup, self.ca = wavebox_s2s(self, "b.test", HOSTS["backup-wave.b.test"], nameserver)
        silent = protocol.Factory.forProtocol(_Silent)
        silent.connections = []
        self.silent = silent
        listening = reactor.listenTCP(0, silent, interface=HOSTS["wave2.b.test"])
        self.addCleanup(listening.stopListening)
        self.ports = {"wave1.b.test": free_port(HOSTS["wave1.b.test"]),   # nobody listens
                      "wave2.b.test": listening.getHost().port,
                      "backup-wave.b.test": backup.s2s.listening_address()[1]}
        srv = [SRV(10, 50, self.ports["wave1.b.test"], "wave1.b.test"),
               SRV(10, 50, self.ports["wave2.b.test"], "wave2.b.test"),
               SRV(20, 0, self.ports["backup-wave.b.test"], "backup-wave.b.test")]
        records = {host: [A(address)] for host, address in HOSTS.items()}
        records.update({"a.test": [A("127.0.0.2")], "b.test": [A(HOSTS["wave1.b.test"])],
                        "_xmpp-server._tcp.b.test": srv, "_xmpp-server._tcp.wave.b.test": srv})
        self.sender, _ = wavebox_s2s(self, "a.test", "127.0.0.2", nameserver)
        # b.test answers over a stream of its own to a.test.
        back = [SRV(10, 0, self.sender.s2s.listening_address()[1], "a.test")]
        records.update({"_xmpp-server._tcp.a.test": back,
                        "_xmpp-server._tcp.wave.a.test": back, "wave.a.test": [A("127.0.0.2")]})
        self.zone.set_records(records)
        s2s = self.sender.s2s
        s2s.connect_timeout = 2.0       # wave2's silence ends the try after this
        self.tried = []
        connect = s2s.outbound._connect

        def recorded(address, local, remote, *how):
            self.tried.append(address)
            return connect(address, local, remote, *how)
        s2s.outbound._connect = recorded

    @defer.inlineCallbacks
    def test_a_refusing_and_a_silent_target_are_passed_for_the_backup(self):
        iq = domish.Element((None, "iq"))
        iq["type"], iq["from"], iq["to"] = "get", "a.test", "b.test"
        iq.addElement(("http://jabber.org/protocol/disco#info", "query"))
        answer = yield self.sender.s2s.request(iq, timeout=30)
        self.assertEqual(answer["type"], "result")
        self.assertEqual(answer["from"], "b.test")
        first_two = {(HOSTS[h], self.ports[h]) for h in ("wave1.b.test", "wave2.b.test")}
        # Priority 10's two targets, in the order their weights drew, then the backup.
        self.assertEqual(set(self.tried[:2]), first_two)
        self.assertEqual(self.tried[2], (HOSTS["backup-wave.b.test"],
                                         self.ports["backup-wave.b.test"]))
        self.assertEqual(len(self.silent.connections), 1)

    @defer.inlineCallbacks
    def test_wavebox_check_shows_every_target(self):
        config = make_config(nameserver=self.zone.nameserver, dns_timeout=2.0,
                             trusted_ca=self.ca, data_dir=self.mktemp())
        out = io.StringIO()
        yield check.run_check(reactor, "b.test", config, out, disco=no_disco)
        [step1] = [l for l in out.getvalue().splitlines()
                   if l.startswith("  step 1: SRV _xmpp-server._tcp.b.test -> ")]
        for host in HOSTS:
            priority, weight = (20, 0) if host.startswith("backup") else (10, 50)
            self.assertIn("%d %d %d %s." % (priority, weight, self.ports[host], host), step1)
