"""
Hashed versions and deltas (wave protocol notes sections 2 and 4; WIAB
``HashedVersionZeroFactoryImpl``, ``HashedVersionFactoryImpl``,
``AppliedDeltaUtil``, ``TransformedWaveletDelta``).

The history hash chains over the *bytes* of each applied delta as they were
first serialised, never over a re-serialisation, so the model keeps those
bytes beside the parsed values and hashes what it is handed.  Producing the
bytes is the wire layer's job (``wavebox.wire.convert``).
"""

import hashlib
from dataclasses import dataclass, field

from wavebox.model.errors import InvalidDelta, InvalidHashedVersion
from wavebox.model.ids import ParticipantId, WaveletName

#: Every hash after version zero is this long: SHA-256 cut to 160 bits.
HASH_LENGTH = 20


def next_hash(prev_hash, applied_delta_bytes):
    """H(v + k) = the first 20 bytes of SHA-256(H(v) || applied delta bytes)."""
    return hashlib.sha256(bytes(prev_hash) + bytes(applied_delta_bytes)).digest()[:HASH_LENGTH]


@dataclass(frozen=True, order=True)
class HashedVersion:
    """A version number (count of operations) and the history hash at it."""

    version: int
    history_hash: bytes

    def __post_init__(self):
        if isinstance(self.version, bool) or not isinstance(self.version, int):
            raise InvalidHashedVersion(
                f"version must be an int, not {type(self.version).__name__}")
        if not 0 <= self.version < 2 ** 63:
            raise InvalidHashedVersion(f"version {self.version} is out of range")
        if not isinstance(self.history_hash, (bytes, bytearray, memoryview)):
            raise InvalidHashedVersion(
                f"history hash must be bytes, not {type(self.history_hash).__name__}")
        object.__setattr__(self, "history_hash", bytes(self.history_hash))

    @classmethod
    def zero(cls, wavelet_name):
        """Version zero: the hash *is* the wavelet name URI's UTF-8 bytes, unhashed."""
        if not isinstance(wavelet_name, WaveletName):
            raise InvalidHashedVersion(
                f"version zero needs a WaveletName, not {type(wavelet_name).__name__}")
        return cls(0, wavelet_name.uri.encode("utf-8"))

    @classmethod
    def unsigned(cls, version):
        """A version with an empty hash (WIAB ``HashedVersion.unsigned``), e.g. for lookups."""
        return cls(version, b"")

    def next(self, applied_delta_bytes, operations_applied):
        """The hashed version after an applied delta of ``operations_applied`` ops at this one."""
        if operations_applied < 0:
            raise InvalidHashedVersion(
                f"operations applied must not be negative, got {operations_applied}")
        return HashedVersion(self.version + operations_applied,
                             next_hash(self.history_hash, applied_delta_bytes))

    def __repr__(self):
        return f"HashedVersion({self.version}, {self.history_hash.hex() or '-'})"


@dataclass(frozen=True)
class WaveletDelta:
    """
    What an author submits: the operations, and the hashed version of the
    wavelet they were made against.  ``address_path`` is carried for
    completeness; it is empty in practice and WIAB refuses to sign otherwise.
    """

    author: ParticipantId
    hashed_version: HashedVersion
    operations: tuple
    address_path: tuple = ()

    def __post_init__(self):
        if not isinstance(self.author, ParticipantId):
            object.__setattr__(self, "author", ParticipantId(self.author))
        if not isinstance(self.hashed_version, HashedVersion):
            raise InvalidDelta(
                f"delta target must be a HashedVersion, not {type(self.hashed_version).__name__}")
        object.__setattr__(self, "operations", tuple(self.operations))
        object.__setattr__(self, "address_path", tuple(self.address_path))

    @property
    def target_version(self):
        return self.hashed_version

    def __len__(self):
        return len(self.operations)


#: The only signature algorithm of the protocol (JCE ``SHA1withRSA``).
SHA1_RSA = "SHA1_RSA"


@dataclass(frozen=True)
class Signature:
    """One signature over a signed delta's ``delta`` bytes."""

    signature_bytes: bytes
    signer_id: bytes
    algorithm: str = SHA1_RSA


@dataclass(frozen=True)
class SignedDelta:
    """
    The serialised ProtocolWaveletDelta exactly as signed, and its
    signatures.  ``delta`` is the parsed form of ``delta_bytes`` when known;
    it is never used to recreate them.
    """

    delta_bytes: bytes
    signatures: tuple = ()
    delta: WaveletDelta = field(default=None, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "delta_bytes", bytes(self.delta_bytes))
        object.__setattr__(self, "signatures", tuple(self.signatures))


@dataclass(frozen=True)
class AppliedDelta:
    """
    A delta as the host applied it: the original signed delta (untransformed),
    the hashed version it was applied at (after transform), how many
    operations that was, and when.  ``applied_delta_bytes`` are the exact
    serialised ProtocolAppliedWaveletDelta bytes the history hash covers.

    ``applied_at`` is always the effective value: when the wire message left
    it out, the wire layer fills in the inner delta's target version, as the
    protocol says a receiver must.
    """

    signed_delta: SignedDelta
    applied_at: HashedVersion
    operations_applied: int
    application_timestamp: int
    applied_delta_bytes: bytes

    def __post_init__(self):
        object.__setattr__(self, "applied_delta_bytes", bytes(self.applied_delta_bytes))
        if self.operations_applied < 0:
            raise InvalidDelta(
                f"operations applied must not be negative, got {self.operations_applied}")

    @property
    def delta(self):
        """The parsed original delta (None if the wire layer did not parse it)."""
        return self.signed_delta.delta

    @property
    def delta_bytes(self):
        return self.signed_delta.delta_bytes

    @property
    def resulting_version(self):
        """The hashed version after this delta: chains over the bytes as received."""
        return self.applied_at.next(self.applied_delta_bytes, self.operations_applied)


@dataclass(frozen=True)
class TransformedDelta:
    """
    A delta as it changed the wavelet: the author, the operations after
    transform, the hashed versions it was applied at and resulted in, and
    the application timestamp.  This is what a wavelet state applies and what
    later submissions are transformed against (WIAB ``TransformedWaveletDelta``).
    """

    author: ParticipantId
    applied_at: HashedVersion
    resulting_version: HashedVersion
    operations: tuple
    application_timestamp: int

    def __post_init__(self):
        if not isinstance(self.author, ParticipantId):
            object.__setattr__(self, "author", ParticipantId(self.author))
        object.__setattr__(self, "operations", tuple(self.operations))
        if self.resulting_version.version != self.applied_at.version + len(self.operations):
            raise InvalidDelta(
                f"delta of {len(self.operations)} operation(s) applied at version "
                f"{self.applied_at.version} cannot result in version "
                f"{self.resulting_version.version}")

    @classmethod
    def from_applied(cls, applied, operations):
        """The transformed delta of an applied delta whose (transformed) ops are ``operations``."""
        operations = tuple(operations)
        if len(operations) != applied.operations_applied:
            raise InvalidDelta(
                f"applied delta says {applied.operations_applied} operation(s) applied "
                f"but {len(operations)} were given")
        author = applied.delta.author if applied.delta is not None else None
        if author is None:
            raise InvalidDelta("applied delta has no parsed inner delta to take the author from")
        return cls(author, applied.applied_at, applied.resulting_version, operations,
                   applied.application_timestamp)

    def __len__(self):
        return len(self.operations)
