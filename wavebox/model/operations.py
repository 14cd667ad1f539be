"""
Wavelet operations and their transform (wave protocol notes 6.6; WIAB
``CoreTransform``/``Transform``, ``WaveletContainerImpl.transformSubmittedDelta``
and ``transformOps``).

Every server that receives an applied delta re-runs this transform against
its own copy of the history, and the history hashes do not cover the
result, so the rules here copy the Java servers' behaviour exactly,
including two of its simplifications:

* a client op that meets ``RemoveParticipant(client author)`` fails with
  RemovedAuthorError whatever the client op is;
* within one server delta, each client op is transformed against the
  server ops as they are in the history, not against server ops advanced
  past the client's earlier ops (``transformOps``).
"""

from dataclasses import dataclass

from wavebox.model import docop
from wavebox.model.delta import HashedVersion, TransformedDelta, WaveletDelta
from wavebox.model.errors import (
    InvalidDelta, InvalidHashedVersion, InvalidOperation, ModelError, RemovedAuthorError,
    TransformError)
from wavebox.model.ids import ParticipantId


class WaveletOperation:
    """Base of the four wavelet operations; each occupies one version."""

    __slots__ = ()

    def apply(self, wavelet, author):
        """Change ``wavelet`` (a scratch copy the caller may throw away) in place."""
        raise NotImplementedError


@dataclass(frozen=True)
class AddParticipant(WaveletOperation):
    participant: ParticipantId

    def __post_init__(self):
        if not isinstance(self.participant, ParticipantId):
            object.__setattr__(self, "participant", ParticipantId(self.participant))

    def apply(self, wavelet, author):
        if self.participant in wavelet.participants:
            raise InvalidOperation(f"add participant: {self.participant} is already a participant")
        wavelet.participants.append(self.participant)

    def __str__(self):
        return f"add_participant {self.participant}"


@dataclass(frozen=True)
class RemoveParticipant(WaveletOperation):
    participant: ParticipantId

    def __post_init__(self):
        if not isinstance(self.participant, ParticipantId):
            object.__setattr__(self, "participant", ParticipantId(self.participant))

    def apply(self, wavelet, author):
        if self.participant not in wavelet.participants:
            raise InvalidOperation(f"remove participant: {self.participant} is not a participant")
        wavelet.participants.remove(self.participant)

    def __str__(self):
        return f"remove_participant {self.participant}"


@dataclass(frozen=True)
class NoOp(WaveletOperation):
    """Changes nothing but the version; what concurrent identical add/removes become."""

    def apply(self, wavelet, author):
        pass

    def __str__(self):
        return "no_op"


@dataclass(frozen=True)
class MutateDocument(WaveletOperation):
    """A document operation on one document of the wavelet (the protocol's ``mutate_document``)."""

    document_id: str
    operation: object  # docop.DocOp

    def __post_init__(self):
        if not isinstance(self.document_id, str) or not self.document_id:
            raise InvalidOperation(f"mutate_document needs a non-empty document id, "
                                   f"got {self.document_id!r}")
        if not isinstance(self.operation, docop.DocOp):
            raise InvalidOperation(f"mutate_document {self.document_id}: operation must be a "
                                   f"DocOp, not {type(self.operation).__name__}")

    def apply(self, wavelet, author):
        document = wavelet.documents.get(self.document_id)
        if document is None:
            document = docop.Document()
        try:
            wavelet.documents[self.document_id] = document.apply(self.operation)
        except InvalidOperation as e:
            e.args = (f"document {self.document_id}: {e}",)
            raise
        contributors = wavelet.contributors.get(self.document_id, ())
        if author not in contributors:
            # A new tuple: the wavelet's copies share the old one.
            wavelet.contributors[self.document_id] = contributors + (author,)

    def __str__(self):
        return f"mutate_document {self.document_id} ({len(self.operation.components)} components)"


#: WIAB's name for the same thing.
WaveletBlipOperation = MutateDocument


def transform(client_op, client_author, server_op, server_author=None):
    """
    Transform a client op against a concurrent server op: returns
    ``(client_op', server_op')`` such that applying server_op then
    client_op' equals applying client_op then server_op'.
    """
    if isinstance(client_op, MutateDocument) and isinstance(server_op, MutateDocument):
        if client_op.document_id != server_op.document_id:
            return client_op, server_op
        try:
            client_t, server_t = docop.transform(client_op.operation, server_op.operation)
        except TransformError as e:
            raise TransformError(f"document {client_op.document_id}: {e}") from e
        except ModelError as e:
            raise TransformError(f"document {client_op.document_id}: {e}") from e
        return (MutateDocument(client_op.document_id, client_t),
                MutateDocument(server_op.document_id, server_t))

    if isinstance(server_op, RemoveParticipant):
        if server_op.participant == client_author:
            raise RemovedAuthorError(
                f"{client_author} was removed by a concurrent operation; "
                f"their {client_op} cannot be applied")
        if isinstance(client_op, RemoveParticipant):
            if client_op.participant == server_op.participant:
                return NoOp(), NoOp()
        elif isinstance(client_op, AddParticipant):
            _check_not_added_and_removed(server_op, client_op)
    elif isinstance(server_op, AddParticipant):
        if isinstance(client_op, AddParticipant):
            if client_op.participant == server_op.participant:
                return NoOp(), NoOp()
        elif isinstance(client_op, RemoveParticipant):
            _check_not_added_and_removed(client_op, server_op)
    return client_op, server_op


def _check_not_added_and_removed(remove, add):
    if remove.participant == add.participant:
        raise TransformError(
            f"participant {remove.participant} is added and removed concurrently")


def transform_ops(client_ops, client_author, server_ops, server_author=None):
    """
    Transform a client delta's ops against one server delta's ops, as WIAB's
    ``transformOps`` does: each client op meets every server op in order,
    the server ops themselves are not advanced.
    """
    result = []
    for c in client_ops:
        for s in server_ops:
            c, _ = transform(c, client_author, s, server_author)
        result.append(c)
    return result


@dataclass(frozen=True)
class DeltaTransform:
    """
    The outcome of transforming a submitted delta against the history.
    ``operations`` are to be applied at ``applied_at``; when ``duplicate_of``
    is set the delta was applied before and must not be applied again:
    ``duplicate_of`` is that earlier delta, the one to answer with.
    """

    operations: tuple
    applied_at: HashedVersion
    duplicate_of: TransformedDelta = None

    @property
    def is_duplicate(self):
        return self.duplicate_of is not None


def transform_delta(delta, history, current):
    """
    Transform ``delta`` (a WaveletDelta) to apply at ``current``, the
    wavelet's current hashed version.  ``history`` are the TransformedDeltas
    from the delta's target version up to ``current``, in order (empty when
    the delta targets ``current``).  The target must be a delta boundary
    whose hash matches our record, and not beyond ``current``.
    """
    if not isinstance(delta, WaveletDelta):
        raise InvalidDelta(f"expected a WaveletDelta, not {type(delta).__name__}")
    if not delta.operations:
        raise InvalidDelta(f"empty delta from {delta.author} at version "
                           f"{delta.hashed_version.version}")
    target = delta.hashed_version
    if target == current:
        return DeltaTransform(delta.operations, current)
    if target.version == current.version:
        raise InvalidHashedVersion(
            f"delta targets the current version {current.version} with a different hash")
    if target.version > current.version:
        raise InvalidHashedVersion(
            f"delta targets version {target.version}, beyond the current version "
            f"{current.version}")
    history = list(history)
    if not history or history[0].applied_at.version != target.version:
        raise InvalidHashedVersion(
            f"delta targets version {target.version}, which is not a delta boundary")
    if history[0].applied_at != target:
        raise InvalidHashedVersion(
            f"delta targets version {target.version} with a hash that does not match the history")
    for earlier, later in zip(history, history[1:]):
        if earlier.resulting_version != later.applied_at:
            raise InvalidHashedVersion(
                f"history given for the transform has a gap at version "
                f"{earlier.resulting_version.version}")
    if history[-1].resulting_version != current:
        raise InvalidHashedVersion(
            f"history given for the transform ends at version "
            f"{history[-1].resulting_version.version}, not at the current {current.version}")

    client_ops = list(delta.operations)
    for server_delta in history:
        if server_delta.author == delta.author and tuple(client_ops) == server_delta.operations:
            return DeltaTransform(server_delta.operations, server_delta.applied_at, server_delta)
        client_ops = transform_ops(client_ops, delta.author,
                                   server_delta.operations, server_delta.author)
    return DeltaTransform(tuple(client_ops), current)
