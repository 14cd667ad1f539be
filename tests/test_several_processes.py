"""
The seed's domain served by several machines (issue 12, item 7), as
deployed: a.test is ``wave1.a.test`` (127.0.0.21) and ``wave2.a.test``
(127.0.0.22) at SRV priority 10 and ``backup-wave.a.test`` (127.0.0.23) at
priority 20, three ``twistd wavebox`` processes on one PostgreSQL; b.test
is a plain SQLite wavebox.  Users on wave1, wave2 and b.test chat in one
wave; wave1 is SIGKILLed in the middle of a burst, b.test's traffic moves
to wave2, then to the backup when wave2 is down too; every acknowledged
line is there afterwards, in order, on every process left and on b.test,
at the same hashed version.
"""

import os
import re

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from tests import helpers
from tests.dnsserver import SRV, A, ZoneServer
from tests.helpers import console_login, quick_hash, start_twistd_wavebox
from tests.pki import write_domain_files
from tests.postgres import fresh_database
from wavebox.store import open_store

PASSWORD = "secret"
A_HOSTS = {"wave1.a.test": "127.0.0.21", "wave2.a.test": "127.0.0.22",
           "backup-wave.a.test": "127.0.0.23"}
B_HOST = ("wave.b.test", "127.0.0.3")
PRIORITY = {"wave1.a.test": (10, 50), "wave2.a.test": (10, 50), "backup-wave.a.test": (20, 0)}


def records(ports):
    """The zone: the seed's three SRV records for a.test (and its wave service), b.test's."""
    zone = {host: [A(address)] for host, address in A_HOSTS.items()}
    zone.update({"a.test": [A(A_HOSTS["wave1.a.test"])], "b.test": [A(B_HOST[1])],
                 B_HOST[0]: [A(B_HOST[1])]})
    for owner in ("a.test", "wave.a.test"):
        srv = [SRV(PRIORITY[h][0], PRIORITY[h][1], ports[h], h) for h in A_HOSTS if h in ports]
        if srv:
            zone["_xmpp-server._tcp." + owner] = srv
    for owner in ("b.test", "wave.b.test"):
        if B_HOST[0] in ports:
            zone["_xmpp-server._tcp." + owner] = [SRV(10, 0, ports[B_HOST[0]], B_HOST[0])]
    return zone


class SeveralProcessesForOneDomainTests(unittest.TestCase):

    timeout = 300

    @defer.inlineCallbacks
    def setUp(self):
        # Fail-over waits for DNS, connections and the outbox's takeover.
        self.patch(helpers, "TIMEOUT", 60)
        self.base = os.path.abspath(self.mktemp())
        self.url = fresh_database(self)
        self.dns = yield ZoneServer.start(records=records({}))
        self.addCleanup(self.dns.stop)
        self.procs = {}
        store = open_store(self.url)
        try:
            for user in ("alice@a.test", "carol@a.test"):
                yield store.add_account(user, quick_hash(PASSWORD))
        finally:
            yield store.close()
        for host, address in A_HOSTS.items():
            yield self.start(host, "a.test", address, ["--store", self.url,
                                                       "--dialback-secret", "one for a.test"])
        data = os.path.join(self.base, "b.test", "data")
        store = open_store("sqlite:wavebox.sqlite3", data)
        try:
            yield store.add_account("bob@b.test", quick_hash(PASSWORD))
        finally:
            yield store.close()
        yield self.start(B_HOST[0], "b.test", B_HOST[1], ["--store", "sqlite:wavebox.sqlite3"])
        self.dns.set_records(records({h: p.s2s_address[1] for h, p in self.procs.items()}))

    @defer.inlineCallbacks
    def start(self, host, domain, address, options):
        home = os.path.join(self.base, host)
        pki = os.path.join(home, "pki")
        os.makedirs(pki, exist_ok=True)
        cert, key, ca = write_domain_files(domain, pki)
        proc, _ = yield start_twistd_wavebox(self, home, [
             "--domain", domain, "--data-dir", os.path.join(self.base, domain if
                                                            domain == "b.test" else host,
                                                            "data"),
             "--s2s-interface", address, "--s2s-port", "0",
             "--certificate", cert, "--private-key", key, "--trusted-ca", ca,
             "--nameserver", "%s:%d" % self.dns.nameserver, "--dns-timeout", "2",
             "--console-interface", "127.0.0.1", "--console-port", "0",
             "--log-level", "info"] + options, wants_s2s=True)
        self.procs[host] = proc

    def login(self, host, user):
        return console_login(self, self.procs[host].console_port, user.partition("@")[0],
                             PASSWORD, user)

    @defer.inlineCallbacks
    def view(self, client):
        """(version/hash header, blip lines) of the open wave as that server shows it."""
        client.send("/view normal")
        header = yield client.expect(r"^--- wave \S+, version \d+ \(hash \w+\)")
        mark = client.cursor
        client.send("/help")
        yield client.expect("^commands:")
        lines = [l for l in client.lines[mark:client.cursor - 1]
                 if re.match(r"^(alice|bob|carol)@", l)]
        return header.group(0), lines

    @defer.inlineCallbacks
    def say(self, client, author, line):
        """Type a line; acknowledged once the console shows it applied."""
        client.send(line)
        yield client.expect("^%s: %s$" % (re.escape(author), re.escape(line)))
        return "%s: %s" % (author, line)

    @defer.inlineCallbacks
    def kill(self, host):
        proc = self.procs[host]
        yield proc.kill()

    @defer.inlineCallbacks
    def test_one_wave_survives_its_servers_dying_one_after_the_other(self):
        alice = yield self.login("wave1.a.test", "alice@a.test")
        carol = yield self.login("wave2.a.test", "carol@a.test")
        bob = yield self.login(B_HOST[0], "bob@b.test")
        alice.send("/new")
        yield alice.expect("^created wave a.test/w\\+")
        alice.send("/add carol@a.test")
        yield carol.expect("^\\* alice@a.test added you to wave a.test/w\\+")
        alice.send("/add bob@b.test")
        yield bob.expect("^\\* alice@a.test added you to wave a.test/w\\+")
        for client in (carol, bob):
            client.send("/open 0")
            yield client.expect("^--- wave ")
        acknowledged = []
        acknowledged.append((yield self.say(alice, "alice@a.test", "hello from wave1")))
        yield carol.expect("^alice@a.test: hello from wave1$")
        yield bob.expect("^alice@a.test: hello from wave1$")
        acknowledged.append((yield self.say(carol, "carol@a.test", "carol on wave2")))
        acknowledged.append((yield self.say(bob, "bob@b.test", "bob on b.test")))

        # A burst on wave1, killed in the middle of it.
        burst = ["burst %d" % i for i in range(200)]
        alice.transport.write("".join(line + "\r\n" for line in burst).encode("utf-8"))
        yield alice.expect("^alice@a.test: burst 9$")
        yield self.kill("wave1.a.test")
        yield alice.closed
        acknowledged += [l for l in alice.lines if l.startswith("alice@a.test: burst ")]

        # b.test's traffic moves to wave2 (wave1 refuses connections now).
        acknowledged.append((yield self.say(bob, "bob@b.test", "bob after wave1 died")))
        acknowledged.append((yield self.say(carol, "carol@a.test", "carol still here")))
        yield bob.expect("^carol@a.test: carol still here$")

        # Then wave2 dies too: the backup at priority 20 takes over.
        yield self.kill("wave2.a.test")
        acknowledged.append((yield self.say(bob, "bob@b.test", "bob on the backup")))
        dave = yield self.login("backup-wave.a.test", "alice@a.test")
        dave.send("/open 0")
        yield dave.expect("^--- wave ")
        acknowledged.append((yield self.say(dave, "alice@a.test", "alice back, on the backup")))
        yield bob.expect("^alice@a.test: alice back, on the backup$")

        on_backup = yield self.view(dave)
        on_b = yield self.view(bob)
        # The same wave at the same hashed version on the host that is left
        # and on b.test; every acknowledged line in it, in the order each
        # author's lines were acknowledged.
        self.assertEqual(on_backup, on_b)
        lines = on_backup[1]
        for author in ("alice@a.test", "bob@b.test", "carol@a.test"):
            mine = [l for l in acknowledged if l.startswith(author + ": ")]
            shown = [l for l in lines if l.startswith(author + ": ")]
            self.assertEqual([l for l in shown if l in mine], mine)
        self.assertGreaterEqual(len([l for l in lines if "burst" in l]), 10)
        # And the stores agree byte for byte on the history they both hold.
        wave = on_backup[0].split()[2]
        name = "wave://%s/conv+root" % (wave,)
        a_store = open_store(self.url)
        self.addCleanup(a_store.close)
        b_store = open_store("sqlite:" + os.path.join(self.base, "b.test", "data",
                                                      "wavebox.sqlite3"))
        self.addCleanup(b_store.close)
        yield self._wait_for_same(a_store, b_store, name)

    @defer.inlineCallbacks
    def _wait_for_same(self, a_store, b_store, name, tries=100):
        for _ in range(tries):
            a = yield a_store.deltas(name)
            b = yield b_store.deltas(name)
            if a and [d.applied_delta for d in a] == [d.applied_delta for d in b]:
                self.assertEqual(a[-1].resulting_hash, b[-1].resulting_hash)
                return
            yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual([d.resulting_version for d in a], [d.resulting_version for d in b])
