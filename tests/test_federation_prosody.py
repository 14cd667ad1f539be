"""
Federation through a real Prosody: ``wave.test`` runs wavebox with its own
S2S; ``prosody.test`` runs wavebox as an XEP-0114 component behind Prosody,
which does the S2S for it.  alice@wave.test makes a wave and adds
bob@prosody.test: the update crosses Prosody to the component, which checks
the host's signature (it trusts wave.test's certificate) and stores it;
bob's reply goes back as a submit through Prosody and returns as an update.

Built from ``wavebox.service.makeService`` as twistd builds it, with the
Prosody peer of ``tests/prosody.py`` (the set-up of test_prosody_s2s).
"""

import os

from twisted.internet import defer, task, reactor
from twisted.trial import unittest

from tests.dnsserver import A, SRV, ZoneServer
from tests.federation_fixtures import insert
from tests.prosody import ProsodyPeer, poll_until
from wavebox import service as wservice
from wavebox.config import load
from wavebox.model.delta import HashedVersion, WaveletDelta
from wavebox.model.ids import IdGenerator, ParticipantId
from wavebox.model.operations import AddParticipant, MutateDocument

GUARD = 30      # seconds: a guard against hanging, never an assertion about speed
WAVE_IP = "127.0.0.2"


class FederationThroughProsodyTests(unittest.TestCase):

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        directory = os.path.abspath(self.mktemp())
        self.peer = ProsodyPeer(directory + "/prosody", component_secret="s3cret")
        self.addCleanup(self.peer.stop)
        self.peer.write_files()
        # The host does not check the component's self-signed chain (it is
        # not in its trusted CA file); the component checks the host's.
        self.standalone = wservice.makeService(load({
            "domain": ["wave.test"], "data_dir": directory + "/standalone",
            "s2s_interface": WAVE_IP, "s2s_port": "0", "tls_required": "yes",
            "trusted_ca": self.peer.certificate_path, "store": "memory:",
            "nameserver": "127.0.0.1:1", "dns_timeout": "2", "console_port": "0",
            "verify_signatures": "no"}))
        self.standalone.startService()
        self.addCleanup(self.standalone.stopService)
        port = self.standalone.s2s.listening_address()[1]
        prosody = [SRV(0, 0, self.peer.s2s_port, "prosody.test")]
        self.zone = yield ZoneServer.start(records={
            "prosody.test": [A(self.peer.ip)],
            "_xmpp-server._tcp.prosody.test": prosody,
            "_xmpp-server._tcp.wave.prosody.test": prosody,
        })
        self.addCleanup(self.zone.stop)
        self.standalone.resolver.nameserver = self.zone.nameserver
        self.peer.peers = {"wave.test": (WAVE_IP, port), "wave.wave.test": (WAVE_IP, port)}
        yield self.peer.start()
        host_certificate = os.path.join(directory, "standalone", "tls", "self-signed.crt")
        self.component = wservice.makeService(load({
            "domain": ["prosody.test"], "data_dir": directory + "/component",
            "component": "%s:%d" % (self.peer.ip, self.peer.component_port),
            "component_secret": "s3cret", "console_port": "0", "store": "memory:",
            "trusted_ca": host_certificate}))
        self.component.startService()
        self.addCleanup(self.component.stopService)
        yield poll_until(lambda: self.component.xmpp.authenticated, timeout=GUARD,
                         what="the component handshake", diagnostics=self.peer.log_text)

    @defer.inlineCallbacks
    def until(self, predicate, what):
        for _ in range(int(GUARD / 0.05)):
            if predicate():
                return
            yield task.deferLater(reactor, 0.05, lambda: None)
        raise AssertionError("%s never happened; prosody said:\n%s"
                             % (what, self.peer.log_text()[-3000:]))

    @defer.inlineCallbacks
    def test_a_wave_is_shared_with_a_component_behind_prosody_and_answered(self):
        host = self.standalone.wave_server
        remote = self.component.wave_server
        alice, bob = ParticipantId("alice@wave.test"), ParticipantId("bob@prosody.test")
        name = IdGenerator("wave.test").new_conversation_root()
        yield host.submit(name, WaveletDelta(alice, HashedVersion.zero(name),
                                             [AddParticipant(alice)]))
        version = yield host.hashed_version(name)
        yield host.submit(name, WaveletDelta(alice, version, [AddParticipant(bob)]))
        version = yield host.hashed_version(name)
        yield host.submit(name, WaveletDelta(alice, version,
                                             [MutateDocument("b+1", insert("hello bob"))]))

        def remote_has(text):
            state = remote.current_state(name)
            return state is not None and any(
                d.text() == text for d in state.documents.values())
        yield self.until(lambda: remote_has("hello bob"), "the update at the component")

        state = remote.current_state(name)
        yield remote.submit(name, WaveletDelta(bob, state.hashed_version,
                                               [MutateDocument("b+2", insert("hi alice"))]))
        yield self.until(lambda: remote_has("hi alice"), "bob's line coming back")
        self.assertEqual(host.current_state(name).hashed_version,
                         remote.current_state(name).hashed_version)
        self.assertEqual(
            {d: doc.text() for d, doc in host.current_state(name).documents.items()},
            {"b+1": "hello bob", "b+2": "hi alice"})
