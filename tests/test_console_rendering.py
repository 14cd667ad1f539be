"""
How the console shows a change of the open wave: only what the change made
showable, found from the change's operations, so the work per update is the
size of the update and not of the wave (every session that has the wave
open does it for every delta).
"""

from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from tests.helpers import quick_hash
from wavebox.console.session import ConsoleFactory
from wavebox.model import conversation, docop
from wavebox.model.delta import WaveletDelta
from wavebox.model.ids import MANIFEST_DOCUMENT_ID, IdGenerator, ParticipantId
from wavebox.model.operations import MutateDocument
from wavebox.server.waveserver import WaveServer
from wavebox.store.accounts import verify_password
from wavebox.store.memory import MemoryStore

ALICE = ParticipantId("alice@a.test")


class CountingItems:
    """Counts the items every ``Document.items()`` call hands out."""

    def __init__(self, testcase):
        self.count = 0
        original = docop.Document.items

        def items(document):
            result = original(document)
            self.count += len(result)
            return result
        testcase.patch(docop.Document, "items", items)


class RenderingTests(unittest.TestCase):

    def setUp(self):
        self.store = MemoryStore()
        self.successResultOf(self.store.add_account("alice@a.test", quick_hash("pw")))
        clock = task.Clock()
        self.server = WaveServer(self.store, ["a.test"], clock=clock)
        self.factory = ConsoleFactory(self.server, ["a.test"], verify_password=lambda p, h:
                                      defer.succeed(verify_password(p, h)), clock=clock)
        self.ids = IdGenerator("a.test", seed="render")
        self.name = self.ids.new_conversation_root()
        self.submit(conversation.create_wave_ops(ALICE))

    def submit(self, operations):
        state = self.server.current_state(self.name)
        version = state.hashed_version if state is not None else None
        if version is None:
            from wavebox.model.delta import HashedVersion
            version = HashedVersion.zero(self.name)
        self.successResultOf(self.server.submit(self.name, WaveletDelta(ALICE, version,
                                                                         operations)))

    def line(self, text):
        state = self.server.current_state(self.name)
        self.submit(conversation.append_blip_ops(state, self.ids.new_blip_id(), text))

    def session(self):
        session = self.factory.buildProtocol(None)
        transport = StringTransport()
        session.makeConnection(transport)
        session.dataReceived(b"/login alice pw\r\n/open 0\r\n")
        self.assertIn(b"--- wave ", transport.value())
        transport.clear()
        return session, transport

    def test_a_new_line_is_shown_once_to_a_session_that_has_the_wave_open(self):
        self.line("first")
        session, transport = self.session()
        self.line("second")
        self.line("third")
        self.assertEqual(transport.value(),
                         b"alice@a.test: second\r\nalice@a.test: third\r\n")

    def test_showing_a_line_reads_the_new_blip_only_however_long_the_wave(self):
        work = []
        for blips in (100, 1000):
            while len(conversation.blip_ids(self.server.current_state(self.name))) < blips:
                self.line("filler")
            session, transport = self.session()
            counter = CountingItems(self)
            self.line("measured")
            self.assertEqual(transport.value(), b"alice@a.test: measured\r\n")
            work.append(counter.count)
            session.connectionLost(None)
        # The new blip's <body><line></line>measured</body>: 12 items, at
        # 100 blips as at 1,000 (rendering every blip read 10 times more).
        self.assertEqual(work, [12, 12])

    def test_a_blip_listed_before_its_document_exists_is_shown_when_it_appears(self):
        session, transport = self.session()
        blip = self.ids.new_blip_id()
        manifest = self.server.current_state(self.name).document(MANIFEST_DOCUMENT_ID)
        self.submit([MutateDocument(MANIFEST_DOCUMENT_ID,
                                    conversation.manifest_insert_op(manifest, blip))])
        self.assertEqual(transport.value(), b"")
        self.submit([MutateDocument(blip, conversation.blip_content_op("late body"))])
        self.assertEqual(transport.value(), b"alice@a.test: late body\r\n")

    def test_a_document_listed_later_is_shown_when_the_manifest_lists_it(self):
        session, transport = self.session()
        blip = self.ids.new_blip_id()
        self.submit([MutateDocument(blip, conversation.blip_content_op("early body"))])
        self.assertEqual(transport.value(), b"")
        manifest = self.server.current_state(self.name).document(MANIFEST_DOCUMENT_ID)
        self.submit([MutateDocument(MANIFEST_DOCUMENT_ID,
                                    conversation.manifest_insert_op(manifest, blip))])
        self.assertEqual(transport.value(), b"alice@a.test: early body\r\n")

    def test_an_edit_of_a_blip_already_shown_is_not_shown_again(self):
        self.line("once")
        session, transport = self.session()
        state = self.server.current_state(self.name)
        blip = conversation.blip_ids(state)[-1]
        size = state.documents[blip].size
        edit = docop.DocOpBuilder().retain(size - 1).characters("!").retain(1).build()
        self.submit([MutateDocument(blip, edit)])
        self.assertEqual(transport.value(), b"")


class SharedRenderingTests(RenderingTests):
    """Every session that has the wave open is sent the one rendering of each update."""

    def test_an_update_is_rendered_once_for_one_session_as_for_twenty(self):
        self.line("first")
        texts = []
        real_blip_text = conversation.blip_text

        def blip_text(document):
            texts.append(document)
            return real_blip_text(document)
        self.patch(conversation, "blip_text", blip_text)
        counter = CountingItems(self)
        work = {}
        for watching in (1, 20):
            sessions = [self.session() for _ in range(watching)]
            renderings, items = self.factory.renderings, counter.count
            del texts[:]
            self.line("measured %02d" % (watching,))
            for _, transport in sessions:
                self.assertEqual(transport.value(),
                                 b"alice@a.test: measured %02d\r\n" % (watching,))
            work[watching] = (self.factory.renderings - renderings, len(texts),
                              counter.count - items)
            for session, _ in sessions:
                session.connectionLost(None)
        # One rendering, one blip's text read, the blip's 15 items (<body>,
        # <line>, </line>, 11 characters, </body>) per update, however many
        # sessions watch: rendering per session read the text 20 times.
        self.assertEqual(work, {1: (1, 1, 15), 20: (1, 1, 15)})

    def test_sessions_share_the_bytes_sent_and_xml_sessions_get_the_xml(self):
        normal, normal_transport = self.session()
        xml, xml_transport = self.session()
        xml.dataReceived(b"/view xml\r\n")
        xml_transport.clear()
        self.line("shared")
        self.assertEqual(normal_transport.value(), b"alice@a.test: shared\r\n")
        self.assertIn(b"<body><line></line>shared</body>", xml_transport.value())
        self.assertIn(b"conversation: <conversation>", xml_transport.value())
