"""
The state of one wavelet: participants, documents, versions (wave protocol
notes 6.6 and 7(a); WIAB ``WaveletDataUtil``, ``WaveletContainerImpl.applyDelta``).

A delta is applied whole or not at all: the operations run against a
scratch copy, and only a delta whose every operation applied replaces the
state.  So a delta that fails half way leaves the wavelet exactly as it was,
which the server relies on to answer "rejected" without repair work.

The document and contributor maps are persistent (``immutables.Map``, a
hash array mapped trie): a scratch copy, and a copy of the whole state, cost
the same for a wavelet of ten documents as for one of a hundred thousand,
and a delta changes only the entries it touches (the documents themselves
are immutable too).
"""

import base64
import json

import immutables

from wavebox.model import docop
from wavebox.model.delta import HashedVersion, TransformedDelta
from wavebox.model.errors import (
    InvalidDelta, InvalidHashedVersion, InvalidSnapshot, ModelError, NotAParticipant)
from wavebox.model.ids import ParticipantId, WaveletName
from wavebox.model.operations import AddParticipant

SNAPSHOT_FORMAT = 1


class _Scratch:
    """What operations change, copied so a failed delta can be dropped."""

    __slots__ = ("participants", "documents", "contributors")

    def __init__(self, state):
        self.participants = list(state.participants)
        self.documents = state.documents.mutate()
        self.contributors = state.contributors.mutate()


class WaveletState:
    """
    One wavelet as of its current hashed version.  ``contributors`` maps each
    document id to a tuple of the participants who changed it, in order: the
    first is the author of the delta that created the document (a blip's
    author).
    """

    def __init__(self, name):
        if not isinstance(name, WaveletName):
            raise InvalidDelta(f"a wavelet needs a WaveletName, not {type(name).__name__}")
        self.name = name
        self.participants = []
        self.documents = immutables.Map()
        self.contributors = immutables.Map()
        self.hashed_version = HashedVersion.zero(name)
        self.creator = None
        self.creation_time = None
        self.last_modified_time = None

    @property
    def version(self):
        return self.hashed_version.version

    @property
    def exists(self):
        """A wavelet comes into being with its first delta."""
        return self.version > 0

    def document(self, document_id):
        """The document (an empty one if it was never written)."""
        return self.documents.get(document_id) or docop.Document()

    def __repr__(self):
        return (f"<WaveletState {self.name.uri} v{self.version} "
                f"participants={[p.address for p in self.participants]} "
                f"documents={sorted(self.documents)}>")

    # --- applying deltas ---------------------------------------------------------

    def check_author(self, author, operations):
        """The author must be a participant, unless this very delta adds them."""
        if author in self.participants:
            return
        if any(isinstance(op, AddParticipant) and op.participant == author for op in operations):
            return
        if not self.exists:
            raise NotAParticipant(
                f"the first delta of {self.name.uri} must add its author {author}")
        raise NotAParticipant(f"{author} is not a participant of {self.name.uri}")

    def apply_delta(self, delta):
        """
        Apply a TransformedDelta at the current version, all or nothing.
        Raises InvalidHashedVersion if it is not applied at our current
        hashed version, NotAParticipant, or the error of the first operation
        that fails (its message says which); the state is then unchanged.
        """
        if not isinstance(delta, TransformedDelta):
            raise InvalidDelta(f"expected a TransformedDelta, not {type(delta).__name__}")
        if delta.applied_at != self.hashed_version:
            raise InvalidHashedVersion(
                f"delta applied at version {delta.applied_at.version} does not fit "
                f"{self.name.uri} at version {self.version}"
                + (" (hash differs)" if delta.applied_at.version == self.version else ""))
        scratch = self._run(delta.author, delta.operations)
        self._commit(scratch, delta.author, delta.resulting_version, delta.application_timestamp)

    def check_delta(self, author, operations):
        """Raise what ``apply_delta`` would for these operations, changing nothing."""
        self._run(ParticipantId(author), tuple(operations))

    def _run(self, author, operations):
        if not operations:
            raise InvalidDelta(f"empty delta from {author} at version {self.version}")
        self.check_author(author, operations)
        scratch = _Scratch(self)
        for i, op in enumerate(operations):
            try:
                op.apply(scratch, author)
            except ModelError as e:
                e.args = (f"operation {i} of the delta by {author} at version "
                          f"{self.version}: {e}",)
                raise
        return scratch

    def _commit(self, scratch, author, resulting_version, timestamp):
        self.participants = scratch.participants
        self.documents = scratch.documents.finish()
        self.contributors = scratch.contributors.finish()
        if self.creator is None:
            self.creator = author
            self.creation_time = timestamp
        self.last_modified_time = timestamp
        self.hashed_version = resulting_version

    def copy(self):
        """An independent copy (the maps and documents are immutable: it costs nothing)."""
        other = WaveletState.__new__(WaveletState)
        other.name = self.name
        other.participants = list(self.participants)
        other.documents = self.documents
        other.contributors = self.contributors
        other.hashed_version = self.hashed_version
        other.creator = self.creator
        other.creation_time = self.creation_time
        other.last_modified_time = self.last_modified_time
        return other

    # --- snapshots ----------------------------------------------------------------

    def to_snapshot(self):
        """
        The whole state as JSON bytes: each document as the canonical
        insertion-only operation that builds it.  Reading it back gives an
        equal state; the store keeps these to avoid replaying all history.
        (:class:`SnapshotEncoder` makes the same bytes, re-encoding only the
        documents changed since its last snapshot.)
        """
        return SnapshotEncoder().encode(self)

    @classmethod
    def from_snapshot(cls, data):
        """Read ``to_snapshot`` output back; raises InvalidSnapshot saying what is wrong."""
        try:
            raw = json.loads(bytes(data).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, TypeError) as e:
            raise InvalidSnapshot(f"snapshot is not JSON: {e}") from None
        try:
            if raw.get("format") != SNAPSHOT_FORMAT:
                raise InvalidSnapshot(f"unknown snapshot format {raw.get('format')!r}")
            state = cls(WaveletName.from_uri(raw["name"]))
            history_hash = base64.b64decode(raw["history_hash"], validate=True)
            state.hashed_version = HashedVersion(raw["version"], history_hash)
            state.participants = [ParticipantId(p) for p in raw["participants"]]
            state.creator = ParticipantId(raw["creator"]) if raw["creator"] else None
            state.creation_time = raw["creation_time"]
            state.last_modified_time = raw["last_modified_time"]
            documents, contributors = {}, {}
            for doc_id, doc in raw["documents"].items():
                documents[doc_id] = docop.Document().apply(docop_from_json(doc["op"]))
                contributors[doc_id] = tuple(ParticipantId(p) for p in doc["contributors"])
            state.documents = immutables.Map(documents)
            state.contributors = immutables.Map(contributors)
        except InvalidSnapshot:
            raise
        except ModelError as e:
            raise InvalidSnapshot(f"snapshot of {raw.get('name')!r}: {e}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InvalidSnapshot(
                f"snapshot of {raw.get('name') if isinstance(raw, dict) else '?'!r} is "
                f"malformed: {type(e).__name__} {e}") from None
        return state

    def __eq__(self, other):
        if not isinstance(other, WaveletState):
            return NotImplemented
        return (self.name == other.name and self.hashed_version == other.hashed_version
                and self.participants == other.participants
                and self.documents == other.documents
                and self.contributors == other.contributors
                and self.creator == other.creator
                and self.creation_time == other.creation_time
                and self.last_modified_time == other.last_modified_time)

    __hash__ = None


def _json(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SnapshotEncoder:
    """
    Makes the snapshots of one wavelet, keeping each document's JSON for as
    long as the document (immutable) and its contributors stay the same: a
    snapshot encodes only what changed since the one before, and joins the
    rest.  ``encoded_bytes`` counts the bytes of JSON actually encoded.
    """

    def __init__(self):
        self._fragments = {}       # document id -> (document, contributors, JSON text)
        self.encoded_bytes = 0

    def encode(self, state):
        fragments = {}
        parts = []
        for doc_id in sorted(state.documents):
            document = state.documents[doc_id]
            contributors = state.contributors.get(doc_id, ())
            known = self._fragments.get(doc_id)
            if known is not None and known[0] is document and known[1] is contributors:
                text = known[2]
            else:
                text = _json({"op": docop_to_json(document.to_op()),
                              "contributors": [p.address for p in contributors]})
                self.encoded_bytes += len(text)
            fragments[doc_id] = (document, contributors, text)
            parts.append(_json(doc_id) + ":" + text)
        self._fragments = fragments
        head = _json({
            "format": SNAPSHOT_FORMAT,
            "name": state.name.uri,
            "version": state.version,
            "history_hash": base64.b64encode(state.hashed_version.history_hash).decode("ascii"),
            "participants": [p.address for p in state.participants],
            "creator": state.creator.address if state.creator else None,
            "creation_time": state.creation_time,
            "last_modified_time": state.last_modified_time,
        })
        self.encoded_bytes += len(head)
        return (head[:-1] + ',"documents":{' + ",".join(parts) + "}}").encode("utf-8")


# --- document operations as JSON (the notation of the protocol notes' vectors) -----

def docop_to_json(op):
    """Components as small JSON objects: r, c, es, ee, dc, des, dee, ra, ua, ab."""
    out = []
    for c in op.components:
        t = type(c)
        if t is docop.Retain:
            out.append({"r": c.count})
        elif t is docop.Characters:
            out.append({"c": c.text})
        elif t is docop.ElementStart:
            out.append({"es": [c.type, [list(p) for p in c.attributes]]})
        elif t is docop.ElementEnd:
            out.append({"ee": True})
        elif t is docop.DeleteCharacters:
            out.append({"dc": c.text})
        elif t is docop.DeleteElementStart:
            out.append({"des": [c.type, [list(p) for p in c.attributes]]})
        elif t is docop.DeleteElementEnd:
            out.append({"dee": True})
        elif t is docop.ReplaceAttributes:
            out.append({"ra": [[list(p) for p in c.old], [list(p) for p in c.new]]})
        elif t is docop.UpdateAttributes:
            out.append({"ua": [list(u) for u in c.updates]})
        elif t is docop.AnnotationBoundary:
            out.append({"ab": [list(c.ends), [list(u) for u in c.changes]]})
        else:
            raise InvalidSnapshot(f"not a document operation component: {c!r}")
    return out


def docop_from_json(components):
    builder = docop.DocOpBuilder()
    for c in components:
        ((kind, value),) = c.items()
        if kind == "r":
            builder.retain(value)
        elif kind == "c":
            builder.characters(value)
        elif kind == "es":
            builder.element_start(value[0], tuple(tuple(p) for p in value[1]))
        elif kind == "ee":
            builder.element_end()
        elif kind == "dc":
            builder.delete_characters(value)
        elif kind == "des":
            builder.delete_element_start(value[0], tuple(tuple(p) for p in value[1]))
        elif kind == "dee":
            builder.delete_element_end()
        elif kind == "ra":
            builder.replace_attributes(tuple(tuple(p) for p in value[0]),
                                       tuple(tuple(p) for p in value[1]))
        elif kind == "ua":
            builder.update_attributes(tuple(tuple(u) for u in value))
        elif kind == "ab":
            builder.annotation_boundary(tuple(value[0]), tuple(tuple(u) for u in value[1]))
        else:
            raise InvalidSnapshot(f"unknown document operation component {kind!r}")
    return builder.build()
