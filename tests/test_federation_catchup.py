"""
A server that comes back catches up at once: at start-up the remote asks the
host of every wavelet it replicates (with one of its participants) for the
history from the version it holds, and that request ends the host's outbox
wait; a host that restarts tries its queues at once.  In-memory network,
task.Clock: the host's wait of up to 300 s is never let run out.
"""

from twisted.internet import defer
from twisted.logger import LogLevel

from tests.federation_fixtures import WaveNode
from tests.helpers import LogWatch
from tests.test_federation import FederationTestCase
from wavebox.federation import stanzas as S
from wavebox.retry import RetryPolicy

ALICE, BOB = "alice@a.test", "bob@b.test"
A, B = "wave.a.test", "wave.b.test"
LONG_WAIT = {"retry": RetryPolicy(1, 300)}


class CatchUpTestCase(FederationTestCase):
    def setUp(self):
        FederationTestCase.setUp(self)
        self.events = LogWatch(self).events

    def node(self, domain, **kwargs):
        kwargs.setdefault("outbox_options", dict(LONG_WAIT))
        return FederationTestCase.node(self, domain, **kwargs)

    def settle(self, seconds):
        """Let ``seconds`` pass in small steps, delivering everything on the way."""
        for _ in range(int(seconds * 10)):
            self.clock.advance(0.1)
            self.net.pump()

    def wave_with_bob(self, first_line=None):
        name = self.run_(self.a.new_wave(ALICE))
        self.run_(self.a.add(ALICE, name, BOB))
        return name

    def history_requests(self, frm=B, to=A, since=0):
        return [e for f, t, e in self.net.log[since:] if f == frm and t == to
                and e.name == "iq" and e.getAttribute("type") == "get"
                and S.classify_iq(e) == S.HISTORY]

    def a_wait(self):
        """Seconds until a.test's outbox tries b.test again."""
        q = self.a.federation.outbox.queues["b.test"]
        self.assertTrue(q.backing_off)
        return q.retry_call.getTime() - self.clock.seconds()

    def take_b_down(self):
        self.b.stop()
        self.net.down.add(B)

    def long_outage(self, name, lines=3):
        """b.test is down while alice types; a.test's wait grows to 300 s."""
        self.take_b_down()
        for i in range(lines):
            self.run_(self.a.say(ALICE, name, "line %d" % i, document="b+%d" % i))
        while self.a_wait() < 300:
            self.clock.advance(self.a_wait())
            self.net.pump()
        self.assertEqual(self.successResultOf(self.a.store.outbox_backlog()),
                         {"b.test": lines})

    def bring_b_back(self):
        self.net.down.discard(B)
        return self.node("b.test", store=self.b.store)

    def loud(self, namespace):
        return [e for e in self.events if e.get("log_namespace", "").startswith(namespace)
                and e.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical)]


class RemoteComesBackTests(CatchUpTestCase):

    def test_restarted_remote_catches_up_at_once_not_at_the_hosts_next_retry(self):
        name = self.wave_with_bob()
        self.long_outage(name)
        wait = self.a_wait()
        b2 = self.bring_b_back()
        self.settle(3)
        self.assertGreater(wait - 3, 290)           # a.test's retry is still far away
        state = self.successResultOf(b2.server.wavelet(name))
        self.assertEqual(state.hashed_version, self.a.version(name))
        self.assertEqual({d: doc.text() for d, doc in state.documents.items()},
                         {"b+0": "line 0", "b+1": "line 1", "b+2": "line 2"})
        self.assertEqual(self.successResultOf(self.a.store.outbox_backlog()), {})
        self.assertFalse(self.a.federation.outbox.queues["b.test"].backing_off)

    def test_without_the_start_up_request_the_remote_waits_for_the_host(self):
        # The same outage with the start-up request switched off: a.test's
        # wait is what b.test waits for.  (What the test above relies on.)
        name = self.wave_with_bob()
        self.long_outage(name)
        self.net.down.discard(B)
        b2 = WaveNode(self.net, "b.test", store=self.b.store, outbox_options=dict(LONG_WAIT),
                      catch_up_options={"delay": 10 ** 6})
        self.addCleanup(b2.stop)
        self.settle(3)
        state = self.successResultOf(b2.server.wavelet(name))
        self.assertLess(state.hashed_version.version, self.a.version(name).version)
        self.assertEqual(self.successResultOf(self.a.store.outbox_backlog()), {"b.test": 3})

    def test_start_up_request_is_an_empty_history_range_at_our_version(self):
        name = self.wave_with_bob()
        self.run_(self.a.say(ALICE, name, "seen", document="b+0"))
        ours = self.b.version(name)
        self.take_b_down()
        self.net.down.discard(B)
        mark = len(self.net.log)
        self.bring_b_back()
        self.settle(2)
        [request] = self.history_requests(since=mark)
        history = S.parse_history_request(request)
        self.assertEqual((history.wavelet_name, history.start_version, history.start_hash,
                          history.end_version, history.end_hash),
                         (name.uri, ours.version, ours.history_hash,
                          ours.version, ours.history_hash))
        [answer] = [e for f, t, e in self.net.log[mark:] if f == A and t == B
                    and e.getAttribute("id") == request["id"]]
        self.assertEqual(answer["type"], "result")

    def test_one_request_per_replicated_wavelet_that_has_our_participant(self):
        with_bob = [self.wave_with_bob() for _ in range(3)]
        without_bob = self.wave_with_bob()
        self.run_(self.a.remove(ALICE, without_bob, BOB))
        hosted_by_b = self.run_(self.b.new_wave(BOB))
        self.run_(self.b.add(BOB, hosted_by_b, ALICE))
        self.take_b_down()
        self.net.down.discard(B)
        mark = len(self.net.log)
        self.bring_b_back()
        self.settle(3)
        asked = sorted(S.parse_history_request(e).wavelet_name
                       for e in self.history_requests(since=mark))
        self.assertEqual(asked, sorted(n.uri for n in with_bob))
        self.assertEqual([e for f, t, e in self.net.log[mark:] if f == A and t == B
                          and e.name == "iq" and e.getAttribute("type") == "error"], [])

    def test_one_hosts_wavelets_are_asked_one_at_a_time(self):
        for _ in range(4):
            self.wave_with_bob()
        self.take_b_down()
        self.net.down.discard(B)
        a_node = self.net.nodes[A]
        in_flight, most = [0], [0]
        original = a_node.receive

        def receive(element):
            if element.name == "iq" and element.getAttribute("type") == "get":
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
                # Answer a moment later, so that requests could overlap.
                self.clock.callLater(0.05, answer, element)
            else:
                original(element)

        def answer(element):
            in_flight[0] -= 1
            original(element)
        a_node.receive = receive
        mark = len(self.net.log)
        self.bring_b_back()
        self.settle(3)
        self.assertEqual(len(self.history_requests(since=mark)), 4)
        self.assertEqual(most[0], 1)

    def host_down_and_b_back(self):
        names = [self.wave_with_bob() for _ in range(3)]
        self.take_b_down()
        self.a.stop()
        self.net.down.update([A])
        self.net.down.discard(B)
        return names, self.bring_b_back()

    def test_host_whose_service_is_not_found_is_tried_once_and_quietly(self):
        mark = len(self.net.log)
        _, b2 = self.host_down_and_b_back()
        self.settle(5)
        self.assertEqual(b2.federation.catch_up.asked, {"a.test": 1})
        self.assertEqual(self.history_requests(since=mark), [])
        self.assertEqual(self.loud("wavebox.federation"), [])

    def test_host_down_at_our_start_up_is_asked_once_and_quietly(self):
        mark = len(self.net.log)
        names, b2 = self.host_down_and_b_back()
        # Discovery answers from what it knew: the request goes out and bounces.
        b2.transport.discover = lambda domain: defer.succeed("wave." + domain)
        self.settle(5)
        self.assertEqual(len(self.history_requests(since=mark)), 1)
        self.assertEqual(b2.federation.catch_up.asked, {"a.test": 1})
        self.assertEqual(self.loud("wavebox.federation"), [])
        # The normal paths take over: a.test comes back and types again.
        self.net.down.discard(A)
        a2 = self.node("a.test", store=self.a.store)
        self.run_(a2.say(ALICE, names[0], "back", document="b+9"))
        self.settle(1)
        self.assertEqual(self.successResultOf(b2.server.wavelet(names[0])).hashed_version,
                         a2.version(names[0]))

    def test_stopping_ends_the_requests_still_to_come(self):
        for _ in range(3):
            self.wave_with_bob()
        self.take_b_down()
        self.net.down.discard(B)
        mark = len(self.net.log)
        b2 = self.bring_b_back()
        self.clock.advance(1)
        self.net.pump()
        self.assertEqual(len(self.history_requests(since=mark)), 1)
        b2.stop()
        self.settle(5)
        self.assertEqual(len(self.history_requests(since=mark)), 1)
        self.assertEqual(b2.federation.catch_up._sleeping, {})
        self.assertEqual(self.loud("wavebox.federation"), [])


class HostComesBackTests(CatchUpTestCase):

    def test_restarted_host_delivers_at_once_not_after_its_stored_wait(self):
        name = self.wave_with_bob()
        self.net.down.add(B)
        for i in range(2):
            self.run_(self.a.say(ALICE, name, "line %d" % i, document="b+%d" % i))
        while self.a_wait() < 300:
            self.clock.advance(self.a_wait())
            self.net.pump()
        self.a.stop()
        self.net.down.discard(B)
        a2 = self.node("a.test", store=self.a.store)
        self.net.pump()                             # no time passes
        self.assertEqual(self.b.texts(name), {"b+0": "line 0", "b+1": "line 1"})
        self.assertEqual(self.successResultOf(a2.store.outbox_backlog()), {})
