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

from tests.helpers import PROSODY_GUARD as GUARD
from tests.helpers import insert, wavebox_behind_prosody, wavebox_beside_prosody
from tests.prosody import ProsodyPeer
from wavebox.model.delta import HashedVersion, WaveletDelta
from wavebox.model.ids import IdGenerator, ParticipantId
from wavebox.model.operations import AddParticipant, MutateDocument


class FederationThroughProsodyTests(unittest.TestCase):

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        directory = os.path.abspath(self.mktemp())
        self.peer = ProsodyPeer(directory + "/prosody", component_secret="s3cret")
        self.addCleanup(self.peer.stop)
        # The host does not check the component's self-signed chain (it is
        # not in its trusted CA file); the component checks the host's.
        self.standalone, self.zone = yield wavebox_beside_prosody(
            self, self.peer, directory + "/standalone", component=True,
            store="memory:", verify_signatures="no")
        host_certificate = os.path.join(directory, "standalone", "tls", "self-signed.crt")
        self.component = yield wavebox_behind_prosody(
            self, self.peer, directory + "/component", store="memory:",
            trusted_ca=host_certificate)

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
