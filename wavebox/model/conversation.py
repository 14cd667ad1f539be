"""
The conversation model as FedOne's console client writes it (wave protocol
notes 3 "Id conventions" and 10.2): a manifest document ``conversation``
listing the blips in reading order, ``<conversation><blip id="b+..">
</blip>...</conversation>``, and one document per blip holding
``<body><line></line>text</body>``.

A new wave's first delta adds the creator and writes an empty manifest; each
typed line becomes a new blip plus a manifest edit that inserts its
``<blip>`` element just before ``</conversation>``.  Rendering reads the
manifest in document order (so blips nested in threads come after their
parent) and names each blip by its author, the author of the delta that
created it (the first of the document's contributors).
"""

from wavebox.model import docop
from wavebox.model.errors import InvalidOperation
from wavebox.model.ids import (
    MANIFEST_DOCUMENT_ID, ParticipantId, WaveletName, conversation_root_wavelet_id, is_blip_id)
from wavebox.model.operations import AddParticipant, MutateDocument

CONVERSATION = "conversation"
BLIP = "blip"
BODY = "body"
LINE = "line"


def create_wave_ops(creator):
    """The first delta of a conversation wavelet: add the creator, write an empty manifest."""
    creator = ParticipantId(creator)
    manifest = docop.DocOpBuilder().element_start(CONVERSATION).element_end().build()
    return [AddParticipant(creator), MutateDocument(MANIFEST_DOCUMENT_ID, manifest)]


def create_wave(id_generator, creator):
    """A new wave's root conversation wavelet name and its first delta's operations."""
    wave_id = id_generator.new_wave_id()
    name = WaveletName(wave_id, conversation_root_wavelet_id(wave_id.domain))
    return name, create_wave_ops(creator)


def blip_content_op(text):
    """
    ``<body><line></line>text</body>``; each further line of ``text`` starts a
    new ``<line>``.  Control characters (other than tab) are refused: the
    text comes from a terminal, and they mean nothing in a wave.  Text outside
    the BMP is refused by the document-operation rules (IllFormedOperation).
    """
    lines = text.splitlines() or [""]
    for n, line in enumerate(lines):
        for i, ch in enumerate(line):
            if (ch < " " and ch != "\t") or ch == "\x7f":
                raise InvalidOperation(
                    f"blip text has control character U+{ord(ch):04X} at line {n + 1}, "
                    f"column {i + 1}")
    builder = docop.DocOpBuilder().element_start(BODY)
    for line in lines:
        builder.element_start(LINE).element_end()
        if line:
            builder.characters(line)
    op = builder.element_end().build()
    docop.check_well_formed(op)
    return op


def manifest_insert_op(manifest, blip_id):
    """Insert ``<blip id=...></blip>`` just before the manifest's closing ``</conversation>``."""
    size = manifest.size
    if size < 2:
        raise InvalidOperation("the conversation manifest is empty: the wave was not created")
    last = manifest.item(size - 1)
    if not last.is_element_end:
        raise InvalidOperation("the conversation manifest does not end with </conversation>")
    return (docop.DocOpBuilder()
            .retain(size - 1)
            .element_start(BLIP, ((("id", blip_id),)))
            .element_end()
            .retain(1)
            .build())


def append_blip_ops(state, blip_id, text):
    """The operations that add a blip with ``text`` at the end of the conversation."""
    if not is_blip_id(blip_id):
        raise InvalidOperation(f"{blip_id!r} is not a blip id (b+...)")
    if blip_id in state.documents:
        raise InvalidOperation(f"blip {blip_id} already exists")
    manifest = state.document(MANIFEST_DOCUMENT_ID)
    return [MutateDocument(blip_id, blip_content_op(text)),
            MutateDocument(MANIFEST_DOCUMENT_ID, manifest_insert_op(manifest, blip_id))]


def blip_ids(state):
    """The blip ids of the manifest in reading (document) order."""
    ids = []
    for item in state.document(MANIFEST_DOCUMENT_ID).items():
        value = item.value
        if isinstance(value, docop.ElementStart) and value.type == BLIP:
            blip_id = dict(value.attributes).get("id")
            if blip_id:
                ids.append(blip_id)
    return ids


def manifest_changes(operations):
    """
    ``(added, removed)``: the blip ids whose ``<blip>`` elements ``operations``
    insert into the manifest, in document order, and those they delete.  Read
    from the operations alone, so it costs the delta's size, not the wave's.
    """
    added, removed = [], []
    for op in operations:
        if not isinstance(op, MutateDocument) or op.document_id != MANIFEST_DOCUMENT_ID:
            continue
        for c in op.operation.components:
            t = type(c)
            if (t is docop.ElementStart or t is docop.DeleteElementStart) and c.type == BLIP:
                blip_id = dict(c.attributes).get("id")
                if blip_id:
                    (added if t is docop.ElementStart else removed).append(blip_id)
    return added, removed


def blip_text(document):
    """The text of a blip, one line per ``<line>`` element."""
    lines = []
    current = None
    for item in document.items():
        value = item.value
        if isinstance(value, str):
            if current is None:
                current = []
            current.append(value)
        elif isinstance(value, docop.ElementStart) and value.type == LINE:
            if current is not None:
                lines.append("".join(current))
            current = []
    if current is not None:
        lines.append("".join(current))
    return "\n".join(lines)


def blip_author(state, blip_id):
    contributors = state.contributors.get(blip_id)
    return contributors[0] if contributors else None


def render(state):
    """``[(author, text)]`` for each blip of the conversation, in reading order."""
    out = []
    for blip_id in blip_ids(state):
        document = state.documents.get(blip_id)
        if document is None:
            continue
        out.append((blip_author(state, blip_id), blip_text(document)))
    return out


def render_text(state):
    """Plain text, one ``author: text`` line per blip (continuation lines indented)."""
    lines = []
    for author, text in render(state):
        prefix = f"{author.address if author else '?'}: "
        parts = text.split("\n")
        lines.append(prefix + parts[0])
        lines.extend(" " * len(prefix) + part for part in parts[1:])
    return "\n".join(lines)


def render_xml(state):
    """The raw view: participants, the manifest, then each document as XML."""
    lines = ["participants: " + ", ".join(p.address for p in state.participants)]
    order = [MANIFEST_DOCUMENT_ID] + blip_ids(state)
    order += sorted(d for d in state.documents if d not in order)
    for doc_id in order:
        document = state.documents.get(doc_id)
        if document is None:
            continue
        author = blip_author(state, doc_id)
        by = f" ({author.address})" if author and doc_id != MANIFEST_DOCUMENT_ID else ""
        lines.append(f"{doc_id}{by}: {document.to_xml()}")
    return "\n".join(lines)
