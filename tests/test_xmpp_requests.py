"""The one iq request tracker (wavebox/xmpp/requests.py) of the S2S service and the component."""

from twisted.internet import task
from twisted.trial import unittest
from twisted.words.protocols.jabber import error
from twisted.words.xish import domish

from wavebox.xmpp.requests import RequestTracker


def iq(kind, sender, to, ident="q1"):
    element = domish.Element((None, "iq"))
    element["type"], element["from"], element["to"], element["id"] = kind, sender, to, ident
    return element


class RequestTrackerTests(unittest.SynchronousTestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.tracker = RequestTracker(self.clock, 30)

    def test_the_answer_from_the_addressee_fires_the_request(self):
        d = self.tracker.track(iq("get", "a.test", "b.test"))
        answer = iq("result", "b.test", "a.test")
        self.assertTrue(self.tracker.answer(answer))
        self.assertIs(self.successResultOf(d), answer)
        self.assertTrue(answer.handled)
        self.assertEqual(len(self.tracker), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_an_answer_from_anyone_else_is_not_taken(self):
        d = self.tracker.track(iq("get", "a.test", "b.test"))
        self.assertFalse(self.tracker.answer(iq("result", "mallory.test", "a.test")))
        self.assertFalse(self.tracker.answer(iq("result", "b.test", "c.test")))
        self.assertNoResult(d)

    def test_without_address_checks_the_id_is_enough(self):
        d = self.tracker.track(iq("get", "wave.a.test", "b.test"), check_addresses=False)
        self.assertTrue(self.tracker.answer(iq("result", "b.test", "wave.a.test/x")))
        self.successResultOf(d)

    def test_an_error_answer_is_a_stanza_error(self):
        d = self.tracker.track(iq("get", "a.test", "b.test"))
        answer = iq("error", "b.test", "a.test")
        answer.addElement("error")["type"] = "cancel"
        answer.error.addElement((error.NS_XMPP_STANZAS, "item-not-found"))
        self.tracker.answer(answer)
        self.assertEqual(self.failureResultOf(d, error.StanzaError).value.condition,
                         "item-not-found")

    def test_no_answer_in_time_is_remote_server_timeout(self):
        d = self.tracker.track(iq("get", "a.test", "b.test"), timeout=5)
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertEqual(self.failureResultOf(d, error.StanzaError).value.condition,
                         "remote-server-timeout")

    def test_a_cancelled_request_is_forgotten(self):
        d = self.tracker.track(iq("get", "a.test", "b.test"))
        d.cancel()
        self.failureResultOf(d)
        self.assertNotIn("q1", self.tracker)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_an_id_already_waiting_is_refused(self):
        self.tracker.track(iq("get", "a.test", "b.test"))
        self.assertRaises(ValueError, self.tracker.track, iq("get", "a.test", "c.test"))

    def test_every_request_fails_when_the_stream_goes(self):
        first = self.tracker.track(iq("get", "a.test", "b.test", "1"))
        second = self.tracker.track(iq("get", "a.test", "b.test", "2"))
        self.tracker.fail_all(ConnectionError("gone"))
        for d in (first, second):
            self.failureResultOf(d, ConnectionError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
