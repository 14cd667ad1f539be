"""
The few calls the core makes into the wave model's state, the wire codec
and the signer, gathered in one place so that the rest of the core reads in
the protocol's words and only this module knows their exact signatures.
"""

from wavebox.model.delta import SignedDelta
from wavebox.model.wavelet import WaveletState
from wavebox.wire import convert


def empty_state(name):
    """A wavelet at version zero (hash = the name's URI bytes)."""
    return WaveletState(name)


def state_from_snapshot(name, blob):
    state = WaveletState.from_snapshot(blob)
    if state.name != name:
        from wavebox.model.errors import InvalidSnapshot
        raise InvalidSnapshot("snapshot of %s stored for %s" % (state.name.uri, name.uri))
    return state


def state_snapshot(state):
    return state.to_snapshot()


def snapshot_encoder():
    """Encodes one wavelet's snapshots, re-encoding only the documents that changed."""
    from wavebox.model.wavelet import SnapshotEncoder
    return SnapshotEncoder()


def participants_of(state):
    return list(state.participants)


def serialize_delta(delta):
    """The ProtocolWaveletDelta bytes of a delta, made once: these are signed and hashed."""
    return convert.serialize_wavelet_delta(delta)


def sign(signer, delta, delta_bytes):
    """A SignedDelta of ``delta_bytes``, signed by ``signer`` (none when it is None)."""
    if signer is None:
        return SignedDelta(delta_bytes, (), delta)
    return signer.sign_delta(delta_bytes, delta)


def signed_delta_bytes(signed):
    return convert.serialize_signed_delta(signed)


def parse_signed_delta(data):
    return convert.parse_signed_delta(data)


def build_applied_delta(signed_delta, applied_at, operations_applied, timestamp_ms):
    """A new AppliedDelta and its ProtocolAppliedWaveletDelta bytes (applied-at always set)."""
    return convert.build_applied_delta(signed_delta, applied_at, operations_applied,
                                       timestamp_ms)


def parse_applied_delta(data):
    return convert.parse_applied_delta(data)
