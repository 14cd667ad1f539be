"""
How the console shows waves, and how it turns what people type into wavelet
operations.  The conversation model itself (the manifest, blips, their XML)
is :mod:`wavebox.model.conversation`'s; this module only words it for a
terminal, one line per thing.
"""

import time

from wavebox.model import conversation
from wavebox.model.ids import WaveletName
from wavebox.model.operations import AddParticipant, MutateDocument, RemoveParticipant

#: Longest digest of a wave's first message in /list.
DIGEST_LENGTH = 40


def name_from_uri(uri):
    return WaveletName.from_uri(uri)


def wave_label(name):
    """How a wave is named to people: its wave id, ``domain/w+abc``."""
    return str(name.wave_id)


def participants(state):
    return list(state.participants)


# -- operations ------------------------------------------------------------------

def new_wave_operations(author):
    """The first delta of a new wave: add the creator, make the manifest."""
    return conversation.create_wave_ops(author)


def append_blip_operations(state, author, blip_id, text):
    """A new blip holding ``text`` at the end of the conversation."""
    return conversation.append_blip_ops(state, blip_id, text)


# -- rendering -------------------------------------------------------------------

def blips(state):
    """``[(blip id, author, text)]`` in conversation order, the blips that have content."""
    out = []
    for blip_id in conversation.blip_ids(state):
        document = state.documents.get(blip_id)
        if document is None:
            continue
        author = conversation.blip_author(state, blip_id)
        out.append((blip_id, author.address if author else "?",
                    conversation.blip_text(document)))
    return out


class OpenWave:
    """
    What one console has shown of its open wave: the blips the manifest
    lists and those already shown.  Kept up to date from each update's
    operations, so showing a change costs the change's size, not the wave's.
    """

    def __init__(self):
        self.listed = set()
        self.shown = set()

    def show_all(self, state):
        """``[(blip id, author, text)]`` of every blip, in conversation order."""
        rendered = blips(state)
        self.listed = set(conversation.blip_ids(state))
        self.shown = {blip_id for blip_id, _, _ in rendered}
        return rendered

    def show_new(self, rendering):
        """
        The blip ids, in the order to show them, that the update of
        ``rendering`` (an :class:`UpdateRendering`) made showable: listed in
        the manifest, with a document, not shown before.  New entries of the
        manifest come in its order, after blips it already listed whose
        document appeared only now.
        """
        added = rendering.added
        self.listed.difference_update(rendering.removed)
        self.listed.update(added)
        new = set(added)
        candidates = [d for d in rendering.touched if d in self.listed and d not in new] + added
        out = []
        for blip_id in candidates:
            if blip_id in self.shown or blip_id not in self.listed \
                    or not rendering.has_document(blip_id):
                continue
            self.shown.add(blip_id)
            out.append(blip_id)
        return out


class UpdateRendering:
    """
    What one durable update of a wave looks like on a terminal, worked out
    once and shared by every console session that has the wave open: which
    blips it lists, unlists and touches, and each blip's line as the bytes
    sent.  Each session only decides which of them it has not shown yet, so
    twenty sessions watching a wave cost one rendering per update, not
    twenty.  ``state`` is the state the update made (the listeners read it
    while being told).
    """

    def __init__(self, state, update):
        self.state = state
        self.update = update
        self.added, self.removed = conversation.manifest_changes(update.operations)
        self.touched = touched_documents(update)
        self._lines = {}
        self._xml = None

    def has_document(self, blip_id):
        return blip_id in self.state.documents

    def blip_bytes(self, blip_id):
        """The blip's ``author: text`` line(s), CRLF-terminated, encoded once."""
        data = self._lines.get(blip_id)
        if data is None:
            author = conversation.blip_author(self.state, blip_id)
            text = conversation.blip_text(self.state.documents[blip_id])
            data = self._lines[blip_id] = terminal_bytes(
                blip_line(author.address if author else "?", text))
        return data

    def xml_bytes(self):
        """The ``/view xml`` lines of the documents the update touched, encoded once."""
        if self._xml is None:
            self._xml = b"".join(
                terminal_bytes("%s: %s" % (document_id, document_xml(self.state, document_id)))
                for document_id in self.touched)
        return self._xml


def terminal_bytes(text):
    """``text`` as a terminal gets it: UTF-8, each line CRLF-terminated."""
    return b"".join(line.encode("utf-8") + b"\r\n" for line in text.split("\n"))


def blip_line(author, text):
    """``author: text``, further lines of a multi-line blip indented under the first."""
    prefix = "%s: " % (author,)
    parts = text.split("\n")
    return "\n".join([prefix + parts[0]] + [" " * len(prefix) + p for p in parts[1:]])


def wave_xml(state):
    return conversation.render_xml(state)


def document_xml(state, document_id):
    document = state.documents.get(document_id)
    return document.to_xml() if document is not None else ""


def digest(state):
    """The start of the wave's first message, for /list."""
    for blip_id in conversation.blip_ids(state):
        document = state.documents.get(blip_id)
        if document is None:
            continue
        text = " ".join(conversation.blip_text(document).split())
        if text:
            return text if len(text) <= DIGEST_LENGTH else text[:DIGEST_LENGTH - 1] + "…"
    return ""


def participant_label(participant, problem=None):
    """
    ``bob@b.test``, or with a delivery problem ``bob@b.test (pending since
    12:03 UTC: REASON)``: what we send there does not arrive.
    """
    if problem is None:
        return str(participant)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(problem.since_ms / 1000.0))
    state = "not delivered, given up" if problem.given_up else "pending since " + when
    return "%s (%s: %s)" % (participant, state, problem.reason)


def participant_list(participants_, problems=None):
    problems = problems or {}
    return ", ".join(participant_label(p, problems.get(p)) for p in participants_)


def header(name, state, problems=None):
    return "--- wave %s, version %d (hash %s); participants: %s ---" % (
        wave_label(name), state.hashed_version.version,
        state.hashed_version.history_hash[:8].hex(),
        participant_list(participants(state), problems) or "none")


def inbox_line(index, info, name, digest_text, opened=False, pending=None):
    """``N * wave  participants  "digest"`` -- ``*`` marks unread, ``>`` the open wave."""
    mark = ("*" if info.unread else " ") + (">" if opened else " ")
    by_address = {str(p): problem for p, problem in (pending or {}).items()}
    line = "%3d %s %s  %s" % (index, mark, wave_label(name), ", ".join(
        participant_label(p, by_address.get(p)) for p in info.participants))
    if digest_text:
        line += '  "%s"' % (digest_text,)
    return line


def participant_notices(update, viewer):
    """One ``*`` line per participant added or removed by ``update``."""
    lines = []
    for op in update.operations:
        if isinstance(op, AddParticipant):
            who = "you" if op.participant == viewer else str(op.participant)
            lines.append("* %s added %s" % (update.author, who))
        elif isinstance(op, RemoveParticipant):
            who = "you" if op.participant == viewer else str(op.participant)
            lines.append("* %s removed %s" % (update.author, who))
    return lines


def touched_documents(update):
    seen = []
    for op in update.operations:
        if isinstance(op, MutateDocument) and op.document_id not in seen:
            seen.append(op.document_id)
    return seen
