"""
A long history is read from the store a page at a time and answered in
pieces no larger than the host's budget (truncated responses, wave protocol
1.5): a request for the whole history of a long wavelet is never held in
memory whole, and the requester still catches up.
"""

from tests.test_federation import A, ALICE, FederationTestCase
from wavebox.federation import host
from wavebox.federation import stanzas as S
from wavebox.server.waveserver import WaveServer

class HistoryPagesTests(FederationTestCase):

    def test_a_long_history_is_read_in_pages_and_sent_in_pieces_of_the_budget(self):
        self.patch(host, "HISTORY_RESPONSE_BYTES", 4000)
        self.patch(WaveServer, "HISTORY_PAGE", 50)
        name = self.run_(self.a.new_wave(ALICE))
        for i in range(300):
            self.run_(self.a.say(ALICE, name, "line %d" % i, document="b+%d" % i))
        self.a.federation.host._early.clear()
        reads = []
        real = self.a.store.deltas

        def deltas(uri, start_version=0, end_version=None, limit=None):
            d = real(uri, start_version, end_version, limit)
            d.addCallback(lambda found: reads.append((limit, len(found))) or found)
            return d
        self.patch(self.a.store, "deltas", deltas)
        self.run_(self.a.add(ALICE, name, "bob@b.test"))
        # b.test caught up, over several truncated responses.
        self.assertEqual(self.b.version(name), self.a.version(name))
        self.assertEqual(len(self.b.texts(name)), 300)
        asked = {e.getAttribute("id") for e in self.history_requests()}
        responses = [e for f, t, e in self.net.log if f == A and e.name == "iq"
                     and e.getAttribute("type") == "result" and e.getAttribute("id") in asked]
        self.assertGreater(len(responses), 5)
        for response in responses:
            history = S.parse_history_response(response)
            self.assertLessEqual(sum(len(d) for d in history.applied_deltas), 4000)
        truncated = [S.parse_history_response(r).truncated_version for r in responses]
        self.assertIsNone(truncated[-1])
        self.assertTrue(all(v is not None for v in truncated[:-1]))
        # Every read of the host's store was a page.
        history_reads = [r for r in reads if r[0] is not None]
        self.assertTrue(history_reads)
        self.assertTrue(all(limit == 50 and found <= 50 for limit, found in history_reads))
