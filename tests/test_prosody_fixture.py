"""
The Prosody fixture itself (tests/prosody.py): it starts a real Prosody that
answers its admin shell, and stopping it leaves no process behind.
"""

import os

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from tests.processes import accepts_connections
from tests.prosody import ProsodyPeer, ProsodyUnavailable


def _process_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class ProsodyPeerTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_started_prosody_answers_shell_and_stop_leaves_no_process(self):
        peer = ProsodyPeer(self.mktemp())
        self.addCleanup(peer.stop)
        yield peer.start()
        self.assertTrue(_process_exists(peer.pid))
        self.assertTrue(accepts_connections(peer.ip, peer.s2s_port))
        self.assertTrue(accepts_connections(peer.ip, peer.component_port))

        version = yield peer.shell("server:version()")
        self.assertIn("0.12", version)
        hosts = yield peer.shell("host:list()")
        self.assertIn("prosody.test", hosts)
        self.assertIn("wave.prosody.test", hosts)

        yield peer.stop()
        self.assertFalse(_process_exists(peer.pid))
        self.assertFalse(accepts_connections(peer.ip, peer.s2s_port))

    @defer.inlineCallbacks
    def test_restart_listens_again_on_the_same_ports(self):
        peer = ProsodyPeer(self.mktemp())
        self.addCleanup(peer.stop)
        yield peer.start()
        first_pid = peer.pid
        yield peer.restart()
        self.assertNotEqual(peer.pid, first_pid)
        self.assertFalse(_process_exists(first_pid))
        self.assertTrue(accepts_connections(peer.ip, peer.s2s_port))
        self.assertTrue(accepts_connections(peer.ip, peer.component_port))

    @defer.inlineCallbacks
    def test_disco_command_reports_a_local_query(self):
        # Our module's shell command, on Prosody's own host: the same code
        # path that later asks wavebox over S2S.
        peer = ProsodyPeer(self.mktemp())
        self.addCleanup(peer.stop)
        yield peer.start()
        items = yield peer.disco("prosody.test", "items")
        self.assertIn("item wave.prosody.test", items)

    @defer.inlineCallbacks
    def test_port_taken_before_prosody_binds_it_is_replaced(self):
        peer = ProsodyPeer(self.mktemp())
        self.addCleanup(peer.stop)
        taken = peer.component_port
        squatter = reactor.listenTCP(taken, protocol.Factory.forProtocol(protocol.Protocol),
                                     interface=peer.ip)
        self.addCleanup(squatter.stopListening)
        yield peer.start()
        self.assertNotEqual(peer.component_port, taken)
        self.assertIn("Failed to open server port %d" % (taken,), peer.log_text())
        hosts = yield peer.shell("host:list()")
        self.assertIn("wave.prosody.test", hosts)

    def test_missing_prosody_fails_with_a_message_naming_it(self):
        self.patch(os, "environ", dict(os.environ, PATH="/nonexistent"))
        peer = ProsodyPeer(self.mktemp())
        failure = self.failureResultOf(peer.start(), ProsodyUnavailable)
        self.assertIn("'prosody' is not installed", str(failure.value))
        self.assertIn("apt-get install -y prosody", str(failure.value))
