"""
The ejabberd fixture itself (tests/ejabberd.py): a node of the tests' own
that listens only on its loopback address, runs no epmd, asks only the
tests' DNS server, and leaves no process behind when stopped.
"""

import os
import socket
import struct

from twisted.internet import defer
from twisted.trial import unittest
from twisted.words.protocols.jabber import error

from tests.dnsserver import ZoneServer
from tests.ejabberd import EjabberdPeer, EjabberdUnavailable, srv_to
from tests.processes import accepts_connections, free_port


def listening_sockets(pid):
    """``{(address, port)}`` of the TCP sockets process ``pid`` listens on."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open("/proc/%d/net/%s" % (pid, table)) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state != "0A" or inode not in inodes:       # 0A: LISTEN
                    continue
                address, port = local.split(":")
                raw = bytes.fromhex(address)
                # /proc prints the address as host-order 32-bit words.
                raw = b"".join(struct.pack("<I", struct.unpack(">I", raw[i:i + 4])[0])
                               for i in range(0, len(raw), 4))
                found.add((socket.inet_ntop(family, raw), int(port, 16)))
    return found


class EjabberdPeerTests(unittest.TestCase):

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.unused_port = free_port("127.0.0.9")
        self.zone = yield ZoneServer.start(records={
            "_xmpp-server._tcp.nobody.test": [srv_to("127.0.0.9", self.unused_port)]})
        self.addCleanup(self.zone.stop)
        self.peer = EjabberdPeer(self.mktemp(), nameserver=self.zone.nameserver)
        self.addCleanup(self.peer.stop)

    @defer.inlineCallbacks
    def test_listens_only_on_its_address_without_epmd_and_stops_leaving_nothing(self):
        peer = self.peer
        yield peer.start()
        status = yield peer.ctl("status")
        self.assertIn("The node '%s' is started" % (peer.node,), status)
        # S2S, c2s and the Erlang distribution port, all on 127.0.0.36; the
        # ctl command above reached the node on the distribution port
        # directly: no epmd (port 4369) was started or needed.
        self.assertEqual(listening_sockets(peer.beam_pid),
                         {(peer.ip, peer.s2s_port), (peer.ip, peer.c2s_port),
                          (peer.ip, peer.dist_port)})
        running = peer.processes_left()
        self.assertIn(peer.beam_pid, running)
        self.assertFalse([c for c in running.values() if "epmd" in c.split()[0]], running)
        run_directory = peer.run_directory

        yield peer.stop()
        self.assertEqual(peer.processes_left(), {})
        for port in (peer.s2s_port, peer.c2s_port, peer.dist_port):
            self.assertFalse(accepts_connections(peer.ip, port))
        self.assertFalse(os.path.exists(run_directory))
        self.assertIn(peer.node, peer.log_text())       # kept in the test's directory

    @defer.inlineCallbacks
    def test_erlangs_resolver_asks_the_tests_dns_server(self):
        # A user's stanza to nobody.test makes ejabberd look the domain up:
        # the SRV query reaches our server, and the target it names (an IP
        # literal on a port where nothing listens) is what ejabberd dials.
        yield self.peer.start()
        user = yield self.peer.user("tester")
        failure = yield self.assertFailure(user.ping("nobody.test"), error.StanzaError)
        self.assertEqual(failure.condition, "remote-server-timeout")     # connection refused
        self.assertIn(("_xmpp-server._tcp.nobody.test", "SRV"), self.zone.queries)
        # Refused, not "nxdomain": ejabberd used the answer (Erlang's resolver
        # drops Twisted's answers unless recursion is off) and dialled the
        # target without asking the system's resolver about nobody.test.
        yield self.peer.wait_for_log("Failed to establish outbound s2s connection "
                                     "ejabberd.test -> nobody.test: Connection failed: "
                                     "connection refused")

    @defer.inlineCallbacks
    def test_missing_ejabberd_fails_naming_the_package(self):
        peer = EjabberdPeer(self.mktemp(), nameserver=self.zone.nameserver,
                            ejabberdctl="/nonexistent/ejabberdctl")
        failure = yield self.assertFailure(peer.start(), EjabberdUnavailable)
        self.assertIn("apt-get install -y ejabberd", str(failure))
        self.assertIn("/nonexistent/ejabberdctl", str(failure))
