"""The conversation manifest and blips as the FedOne console client writes them."""

from twisted.trial.unittest import SynchronousTestCase

from wavebox.model.conversation import (
    append_blip_ops, blip_ids, create_wave, create_wave_ops, render, render_text, render_xml)
from wavebox.model.delta import HashedVersion, TransformedDelta
from wavebox.model.docop import DocOpBuilder
from wavebox.model.errors import IllFormedOperation, InvalidOperation, NotAParticipant
from wavebox.model.ids import IdGenerator, ParticipantId
from wavebox.model.operations import AddParticipant, MutateDocument
from wavebox.model.wavelet import WaveletState

ALICE = ParticipantId("alice@a.test")
BOB = ParticipantId("bob@b.test")


class Wave:

    def __init__(self):
        self.ids = IdGenerator("a.test", seed="s")
        self.name, ops = create_wave(self.ids, ALICE)
        self.state = WaveletState(self.name)
        self.submit(ALICE, ops)

    def submit(self, author, ops):
        start = self.state.hashed_version
        end = HashedVersion(start.version + len(ops), b"%d" % (start.version + len(ops)))
        self.state.apply_delta(TransformedDelta(author, start, end, ops, start.version))

    def say(self, author, text):
        blip_id = self.ids.new_blip_id()
        self.submit(author, append_blip_ops(self.state, blip_id, text))
        return blip_id


class CreateWaveTests(SynchronousTestCase):

    def test_new_wave_is_root_conversation_of_creators_domain(self):
        wave = Wave()
        self.assertEqual(wave.name.uri, "wave://a.test/w+sA/conv+root")

    def test_creation_adds_creator_and_empty_manifest(self):
        wave = Wave()
        self.assertEqual(wave.state.participants, [ALICE])
        self.assertEqual(wave.state.document("conversation").to_xml(),
                         "<conversation></conversation>")
        self.assertEqual(wave.state.version, 2)
        self.assertEqual(render(wave.state), [])

    def test_creation_ops_are_add_then_manifest(self):
        ops = create_wave_ops("alice@a.test")
        self.assertEqual(ops[0], AddParticipant(ALICE))
        self.assertEqual(ops[1].document_id, "conversation")


class AppendBlipTests(SynchronousTestCase):

    def setUp(self):
        self.wave = Wave()

    def test_blip_is_body_line_text(self):
        blip = self.wave.say(ALICE, "hello")
        self.assertEqual(self.wave.state.document(blip).to_xml(),
                         "<body><line></line>hello</body>")

    def test_manifest_gets_blip_before_closing_tag(self):
        first = self.wave.say(ALICE, "one")
        second = self.wave.say(ALICE, "two")
        self.assertEqual(self.wave.state.document("conversation").to_xml(),
                         f'<conversation><blip id="{first}"></blip>'
                         f'<blip id="{second}"></blip></conversation>')

    def test_two_authors_render_in_conversation_order(self):
        self.wave.submit(ALICE, [AddParticipant(BOB)])
        self.wave.say(ALICE, "hi bob")
        self.wave.say(BOB, "hi alice")
        self.wave.say(ALICE, "bye")
        self.assertEqual(render(self.wave.state),
                         [(ALICE, "hi bob"), (BOB, "hi alice"), (ALICE, "bye")])
        self.assertEqual(render_text(self.wave.state),
                         "alice@a.test: hi bob\nbob@b.test: hi alice\nalice@a.test: bye")

    def test_blip_author_is_its_creator_not_a_later_editor(self):
        self.wave.submit(ALICE, [AddParticipant(BOB)])
        blip = self.wave.say(BOB, "mine")
        size = self.wave.state.document(blip).size
        self.wave.submit(ALICE, [MutateDocument(
            blip, DocOpBuilder().retain(size - 1).characters("!").retain(1).build())])
        self.assertEqual(render(self.wave.state), [(BOB, "mine!")])

    def test_lines_become_line_elements(self):
        blip = self.wave.say(ALICE, "one\ntwo")
        self.assertEqual(self.wave.state.document(blip).to_xml(),
                         "<body><line></line>one<line></line>two</body>")
        self.assertEqual(render(self.wave.state), [(ALICE, "one\ntwo")])
        self.assertEqual(render_text(self.wave.state), "alice@a.test: one\n              two")

    def test_empty_text_is_an_empty_line(self):
        blip = self.wave.say(ALICE, "")
        self.assertEqual(self.wave.state.document(blip).to_xml(), "<body><line></line></body>")
        self.assertEqual(render(self.wave.state), [(ALICE, "")])

    def test_non_participant_cannot_append(self):
        self.assertRaises(NotAParticipant, self.wave.say, BOB, "let me in")
        self.assertEqual(render(self.wave.state), [])

    def test_control_characters_are_refused(self):
        e = self.assertRaises(InvalidOperation, append_blip_ops, self.wave.state, "b+x",
                              "ok\nbell\x07")
        self.assertIn("U+0007 at line 2, column 5", str(e))

    def test_text_outside_the_bmp_is_refused(self):
        self.assertRaises(IllFormedOperation, append_blip_ops, self.wave.state, "b+x",
                          "smile \U0001F600")

    def test_existing_blip_id_is_refused(self):
        blip = self.wave.say(ALICE, "once")
        self.assertRaises(InvalidOperation, append_blip_ops, self.wave.state, blip, "twice")

    def test_append_needs_a_created_wave(self):
        state = WaveletState(self.wave.name)
        e = self.assertRaises(InvalidOperation, append_blip_ops, state, "b+1", "x")
        self.assertIn("manifest is empty", str(e))

    def test_xml_view_lists_participants_manifest_and_blips(self):
        blip = self.wave.say(ALICE, "a < b")
        self.assertEqual(render_xml(self.wave.state).splitlines(), [
            "participants: alice@a.test",
            f'conversation: <conversation><blip id="{blip}"></blip></conversation>',
            f"{blip} (alice@a.test): <body><line></line>a &lt; b</body>",
        ])

    def test_blip_ids_in_manifest_order(self):
        ids = [self.wave.say(ALICE, str(i)) for i in range(3)]
        self.assertEqual(blip_ids(self.wave.state), ids)
