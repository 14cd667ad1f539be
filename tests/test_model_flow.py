"""
The model, wire and crypto layers together, as a host and a remote use them
(wave protocol notes 7(a)-(c)): sign, transform, build the applied delta,
hash, apply; on the remote, parse the bytes, verify, re-transform, apply, and
end with the same state and the same history hash.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests import pki
from wavebox import crypto
from wavebox.model.conversation import append_blip_ops, create_wave, render
from wavebox.model.delta import TransformedDelta, WaveletDelta
from wavebox.model.ids import IdGenerator, ParticipantId
from wavebox.model.operations import AddParticipant, transform_delta
from wavebox.model.wavelet import WaveletState
from wavebox.wire import convert

ALICE = ParticipantId("alice@a.test")
BOB = ParticipantId("bob@b.test")


class Pki:
    """The signers of a.test and b.test and the root they chain to: the tests' one CA."""

    def __init__(self):
        self.root = pki.ca()[1]
        self.signers = {domain: pki.signer(domain) for domain in ("a.test", "b.test")}


class Server:
    """Just enough of a wave server to exercise the layers' public API."""

    def __init__(self, name, pki):
        self.state = WaveletState(name)
        self.history = []          # TransformedDelta, in order
        self.applied = []          # the exact applied-delta bytes, in order
        self.pki = pki
        self.signer_infos = {s.signer_id: s.signer_info for s in pki.signers.values()}

    def history_from(self, version):
        for i, d in enumerate(self.history):
            if d.applied_at.version == version.version:
                return self.history[i:]
        return []

    def sign(self, delta):
        data = convert.serialize_wavelet_delta(delta)
        return self.pki.signers[delta.author.domain].sign_delta(data, delta)

    def submit(self, signed, timestamp):
        """Host side: verify, transform, build the applied delta, hash, apply."""
        delta = convert.parse_wavelet_delta(signed.delta_bytes)
        crypto.verify_signed_delta(signed.delta_bytes, signed.signatures, self.signer_infos,
                                   [self.pki.root], delta=delta)
        current = self.state.hashed_version
        result = transform_delta(delta, self.history_from(delta.hashed_version), current)
        if result.is_duplicate:
            return result.duplicate_of.resulting_version
        applied = convert.build_applied_delta(signed, result.applied_at,
                                              len(result.operations), timestamp)
        self._apply(applied, result.operations)
        return applied.resulting_version

    def receive(self, applied_delta_bytes):
        """Remote side: parse the bytes, verify, re-run the transform, apply."""
        applied = convert.parse_applied_delta(applied_delta_bytes)
        crypto.verify_signed_delta(applied.delta_bytes, applied.signed_delta.signatures,
                                   self.signer_infos, [self.pki.root], delta=applied.delta)
        assert applied.applied_at == self.state.hashed_version
        result = transform_delta(applied.delta, self.history_from(applied.delta.hashed_version),
                                 self.state.hashed_version)
        assert result.applied_at == applied.applied_at
        assert len(result.operations) == applied.operations_applied
        self._apply(applied, result.operations)

    def _apply(self, applied, operations):
        transformed = TransformedDelta.from_applied(applied, operations)
        self.state.apply_delta(transformed)
        self.history.append(transformed)
        self.applied.append(applied.applied_delta_bytes)


class HostAndRemoteTests(SynchronousTestCase):

    def setUp(self):
        pki = Pki()
        self.ids = IdGenerator("a.test", seed="T")
        name, ops = create_wave(self.ids, ALICE)
        self.host = Server(name, pki)
        self.remote = Server(name, pki)
        self.time = 0
        self.local(ALICE, ops)
        self.local(ALICE, [AddParticipant(BOB)])

    def local(self, author, ops, state=None):
        """A delta made against ``state`` (default: the host's current one) and submitted."""
        state = state or self.host.state
        self.time += 1
        delta = WaveletDelta(author, state.hashed_version, ops)
        return self.host.submit(self.host.sign(delta), self.time)

    def sync_remote(self):
        for data in self.host.applied[len(self.remote.applied):]:
            self.remote.receive(data)

    def test_remote_replays_to_same_state_and_hash(self):
        self.local(ALICE, append_blip_ops(self.host.state, self.ids.new_blip_id(), "hello bob"))
        self.sync_remote()
        self.assertEqual(self.remote.state.hashed_version, self.host.state.hashed_version)
        self.assertEqual(self.remote.state.to_snapshot(), self.host.state.to_snapshot())
        self.assertEqual(render(self.remote.state), [(ALICE, "hello bob")])

    def test_concurrent_blips_are_transformed_identically_everywhere(self):
        base = self.host.state.copy()
        self.local(ALICE, append_blip_ops(base, self.ids.new_blip_id(), "from alice"))
        # Bob's server built this against the older version.
        self.local(BOB, append_blip_ops(base, "b+bob1", "from bob"), state=base)
        self.sync_remote()
        # Both manifest edits insert at the same place; the transformed
        # (submitted, "client") one goes first at a tie.
        self.assertEqual(render(self.host.state),
                         [(BOB, "from bob"), (ALICE, "from alice")])
        self.assertEqual(self.remote.state.to_snapshot(), self.host.state.to_snapshot())
        self.assertEqual(self.remote.state.hashed_version, self.host.state.hashed_version)

    def test_resubmission_is_idempotent(self):
        ops = append_blip_ops(self.host.state, self.ids.new_blip_id(), "once")
        delta = WaveletDelta(ALICE, self.host.state.hashed_version, ops)
        signed = self.host.sign(delta)
        first = self.host.submit(signed, 10)
        again = self.host.submit(signed, 11)
        self.assertEqual(first, again)
        self.assertEqual(render(self.host.state), [(ALICE, "once")])

    def test_hash_chain_covers_the_applied_bytes(self):
        version = self.remote.state.hashed_version
        self.sync_remote()
        for data, delta in zip(self.host.applied, self.host.history):
            version = version.next(data, len(delta))
        self.assertEqual(version, self.host.state.hashed_version)

    def test_tampered_applied_delta_is_refused_by_the_remote(self):
        data = bytearray(self.host.applied[0])
        index = data.find(b"alice@a.test")
        data[index] = ord("A")
        self.assertRaises(crypto.SignatureError, self.remote.receive, bytes(data))
        self.assertEqual(self.remote.state.version, 0)
