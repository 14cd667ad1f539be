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
    return WaveletState.from_bytes(blob)


def state_snapshot(state):
    return state.to_bytes()


def participants_of(state):
    return list(state.participants)


def serialize_delta(delta):
    """The ProtocolWaveletDelta bytes of a delta, made once: these are signed and hashed."""
    return convert.delta_to_bytes(delta)


def sign(signer, delta, delta_bytes):
    """A SignedDelta of ``delta_bytes``, signed by ``signer`` (none when it is None)."""
    if signer is None:
        return SignedDelta(delta_bytes, (), delta)
    return signer.sign_delta(delta_bytes, delta)


def signed_delta_bytes(signed):
    return convert.signed_delta_to_bytes(signed)


def parse_signed_delta(data):
    return convert.signed_delta_from_bytes(data)


def applied_delta_bytes(signed_delta, applied_at, operations_applied, timestamp_ms):
    """The ProtocolAppliedWaveletDelta bytes: applied-at always set (section 2)."""
    return convert.applied_delta_to_bytes(signed_delta, applied_at, operations_applied,
                                          timestamp_ms)


def parse_applied_delta(data):
    return convert.applied_delta_from_bytes(data)
