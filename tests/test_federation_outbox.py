"""
The durable per-destination outbox: in-order delivery, receipts before acks,
exponential backoff while the peer is unreachable, resumption after a restart.
"""

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from wavebox.cli import status as status_command
from wavebox.federation import outbox as O
from wavebox.federation import stanzas as S
from wavebox.store.memory import MemoryStore

A_JID, B_JID = "wave.a.test", "wave.b.test"
NAME = "wave://a.test/w+1/conv+root"


def update(n):
    return S.WaveletUpdate(NAME, (b"delta %d" % n,), S.CommitNotice(n, b"h" * 20))


class FakePeer:
    """Records what the outbox sends; answers discovery as told."""

    def __init__(self):
        self.sent = []
        self.reachable = True
        self.discoveries = 0

    def send(self, element):
        self.sent.append(S.element_from_xml(element.toXml()))

    def discover(self, domain):
        self.discoveries += 1
        if not self.reachable:
            return defer.fail(RuntimeError("no route to %s" % domain))
        return defer.succeed("wave." + domain)

    def deltas(self, msg):
        return [d for u in S.parse_update_message(msg) for d in u.applied_deltas]

    def all_deltas(self):
        return [d for m in self.sent for d in self.deltas(m)]


class OutboxTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.store = MemoryStore()
        self.peer = FakePeer()
        self.outbox = self.make()

    def make(self, **kw):
        kw.setdefault("receipt_timeout", 30)
        kw.setdefault("initial_backoff", 2)
        kw.setdefault("max_backoff", 60)
        return O.Outbox(self.store, self.peer.send, self.peer.discover, clock=self.clock, **kw)

    def backlog(self):
        return self.successResultOf(self.store.outbox_backlog())

    def receipt(self, msg, outbox=None):
        (outbox or self.outbox).on_receipt(msg["to"], msg["id"])

    def test_update_is_stored_before_it_is_sent(self):
        self.peer.reachable = False
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        self.assertEqual(self.backlog(), {"b.test": 1})
        self.assertEqual(self.peer.sent, [])

    def test_message_requests_a_receipt_and_goes_to_the_discovered_jid(self):
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        [msg] = self.peer.sent
        self.assertEqual((msg["from"], msg["to"], msg["type"]), (A_JID, B_JID, "normal"))
        self.assertTrue(S.wants_receipt(msg))
        self.assertEqual(S.parse_update_message(msg), [update(1)])

    def test_item_is_acked_only_when_the_receipt_arrives(self):
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        self.assertEqual(self.backlog(), {"b.test": 1})
        self.receipt(self.peer.sent[0])
        self.assertEqual(self.backlog(), {})

    def test_receipt_from_another_jid_acks_nothing(self):
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        self.outbox.on_receipt("wave.evil.test", self.peer.sent[0]["id"])
        self.assertEqual(self.backlog(), {"b.test": 1})

    def test_updates_are_delivered_in_order(self):
        for n in range(1, 6):
            self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(n)]))
        self.assertEqual(self.peer.all_deltas(), [b"delta %d" % n for n in range(1, 6)])

    def test_each_destination_has_its_own_queue(self):
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        self.successResultOf(self.outbox.enqueue("c.test", A_JID, [update(2)]))
        self.assertEqual(sorted(m["to"] for m in self.peer.sent), ["wave.b.test", "wave.c.test"])
        self.receipt(self.peer.sent[0])
        self.assertEqual(len(self.backlog()), 1)

    def test_unreachable_peer_backs_off_exponentially(self):
        self.peer.reachable = False
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        self.assertEqual(self.peer.discoveries, 1)
        waits = []
        for _ in range(5):
            before = self.peer.discoveries
            step = 0
            while self.peer.discoveries == before:
                self.clock.advance(1)
                step += 1
            waits.append(step)
        self.assertEqual(waits, [2, 4, 8, 16, 32])
        retry = self.successResultOf(self.store.outbox_get_retry("b.test"))
        self.assertEqual(retry.failures, 6)

    def test_backoff_is_capped(self):
        self.assertEqual([O.backoff_delay(n, 2, 60) for n in range(0, 8)],
                         [0, 2, 4, 8, 16, 32, 60, 60])

    def test_no_receipt_in_time_means_resend_after_backoff(self):
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        self.clock.advance(30)
        self.assertEqual(len(self.peer.sent), 1)
        self.clock.advance(2)
        self.assertEqual(len(self.peer.sent), 2)
        self.assertEqual(self.peer.sent[0]["id"], self.peer.sent[1]["id"])
        self.receipt(self.peer.sent[1])
        self.assertEqual(self.backlog(), {})
        self.assertIsNone(self.successResultOf(self.store.outbox_get_retry("b.test")))

    def test_bounced_error_backs_off(self):
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        msg = self.peer.sent[0]
        self.outbox.on_error("b.test", msg["id"], S.FederationError("remote-server-not-found"))
        self.assertTrue(self.outbox.queue("b.test").backing_off)
        self.assertIn("remote-server-not-found", self.outbox.status()[0]["last_error"])

    def test_update_refused_for_good_is_dropped_and_the_queue_goes_on(self):
        outbox = self.make(window=1, batch=1)
        for n in (1, 2):
            self.successResultOf(outbox.enqueue("b.test", A_JID, [update(n)]))
        first = self.peer.sent[0]
        outbox.on_error(B_JID, first["id"], S.FederationError("bad-request", "no"))
        self.assertEqual(self.backlog(), {"b.test": 1})
        self.assertEqual(self.peer.deltas(self.peer.sent[-1]), [b"delta 2"])
        self.assertFalse(outbox.queue("b.test").backing_off)

    def test_peer_seen_by_its_service_jid_ends_the_backoff(self):
        self.peer.reachable = False
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        self.peer.reachable = True
        self.outbox.peer_seen_jid("wave.b.test")
        self.assertEqual(len(self.peer.sent), 1)

    def test_queued_updates_go_out_in_order_when_the_peer_returns(self):
        self.peer.reachable = False
        for n in range(1, 40):
            self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(n)]))
        self.clock.advance(2)
        self.clock.advance(4)
        self.peer.reachable = True
        self.clock.advance(8)
        while self.peer.sent:
            msgs, self.peer.sent = self.peer.sent, []
            for m in msgs:
                self.peer.sent_log = getattr(self.peer, "sent_log", []) + [m]
                self.receipt(m)
        got = [d for m in self.peer.sent_log for d in self.peer.deltas(m)]
        self.assertEqual(got, [b"delta %d" % n for n in range(1, 40)])
        self.assertEqual(self.backlog(), {})

    def test_catching_up_batches_several_updates_in_one_message(self):
        self.peer.reachable = False
        for n in range(1, 11):
            self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(n)]))
        self.peer.reachable = True
        self.clock.advance(2)
        [msg] = self.peer.sent
        self.assertEqual(len(list(msg.event.items.elements())), 10)
        self.receipt(msg)
        self.assertEqual(self.backlog(), {})

    def test_window_limits_messages_in_flight(self):
        outbox = self.make(window=2, batch=1)
        for n in range(1, 6):
            self.successResultOf(outbox.enqueue("b.test", A_JID, [update(n)]))
        self.assertEqual(len(self.peer.sent), 2)
        self.receipt(self.peer.sent[0], outbox)
        self.assertEqual(len(self.peer.sent), 3)

    def test_late_receipt_after_timeout_still_acks(self):
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        msg = self.peer.sent[0]
        self.clock.advance(30)
        self.receipt(msg)
        self.assertEqual(self.backlog(), {})
        self.assertFalse(self.outbox.queue("b.test").backing_off)

    def test_restart_resumes_the_queue(self):
        self.peer.reachable = False
        for n in range(1, 4):
            self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(n)]))
        self.outbox.stop()
        self.peer.reachable = True
        outbox = self.make()
        self.successResultOf(outbox.resume())
        self.assertEqual(self.peer.all_deltas(), [b"delta 1", b"delta 2", b"delta 3"])
        self.receipt(self.peer.sent[0], outbox)
        self.assertEqual(self.backlog(), {})

    def test_restart_sends_at_once_not_after_the_wait_left_from_before(self):
        outbox = self.make(max_backoff=300)
        self.peer.reachable = False
        self.successResultOf(outbox.enqueue("b.test", A_JID, [update(1)]))
        for _ in range(10):               # failures until the wait is 300 s
            outbox.peer_seen("b.test")
        retry = self.successResultOf(self.store.outbox_get_retry("b.test"))
        self.assertEqual((retry.failures, retry.next_attempt_ms),
                         (11, (self.clock.seconds() + 300) * 1000))
        outbox.stop()
        self.peer.reachable = True
        restarted = self.make(max_backoff=300)
        self.successResultOf(restarted.resume())
        self.assertEqual(self.peer.all_deltas(), [b"delta 1"])    # the clock did not move
        self.receipt(self.peer.sent[0], restarted)
        self.assertEqual(self.backlog(), {})

    def test_restart_keeps_the_failure_count_for_a_peer_still_down(self):
        self.peer.reachable = False
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        self.outbox.peer_seen("b.test")
        self.outbox.peer_seen("b.test")       # three failures: the next wait is 8 s
        self.outbox.stop()
        restarted = self.make()
        self.successResultOf(restarted.resume())
        q = restarted.queue("b.test")
        self.assertEqual(q.attempts, 4)       # tried at once, failed again
        self.assertEqual(q.retry_call.getTime() - self.clock.seconds(), 16)

    def test_receipt_for_a_message_sent_before_the_restart_acks_it(self):
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        msg = self.peer.sent[0]
        self.outbox.stop()
        outbox = self.make()
        self.successResultOf(outbox.resume())
        self.receipt(msg, outbox)
        self.assertEqual(self.backlog(), {})

    def test_peer_speaking_to_us_ends_the_backoff(self):
        self.peer.reachable = False
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        self.peer.reachable = True
        self.outbox.peer_seen("b.test")
        self.assertEqual(len(self.peer.sent), 1)

    def test_more_items_than_memory_holds_are_read_from_the_store_in_order(self):
        self.patch(O, "MAX_CACHED", 5)
        self.patch(O, "PAGE", 3)
        self.peer.reachable = False
        for n in range(1, 13):
            self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(n)]))
        self.outbox.stop()
        outbox = self.make(batch=2, window=1)
        self.peer.reachable = True
        self.successResultOf(outbox.resume())
        self.clock.advance(2)
        log = []
        while self.peer.sent:
            m = self.peer.sent.pop(0)
            log.append(m)
            self.receipt(m, outbox)
        self.assertEqual([d for m in log for d in self.peer.deltas(m)],
                         [b"delta %d" % n for n in range(1, 13)])

    def test_backlog_report_names_unreachable_destinations(self):
        from wavebox.admin import StoreCommands
        from wavebox.cli.outbox import describe
        self.peer.reachable = False
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        commands = StoreCommands(self.store, None)
        commands._live_outbox = lambda: {q["destination"]: q for q in self.outbox.status()}
        [row] = self.successResultOf(commands.outbox())
        line = describe(row, self.clock.seconds() * 1000)
        self.assertIn("b.test", line)
        self.assertIn("1 queued", line)
        self.assertIn("unreachable, 1 failure(s), next try in 2s", line)
        self.assertIn(row["last_error"], line)
        line = describe(row, (self.clock.seconds() + 5) * 1000)
        self.assertIn("unreachable, 1 failure(s), next try due now", line)


@defer.inlineCallbacks
def wait_until(predicate, tries=500):
    """Let the real reactor (the SQLite store's thread) run until predicate holds."""
    from twisted.internet import reactor
    for _ in range(tries):
        if predicate():
            return
        yield task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("condition never held")


class SqliteOutboxTests(TestCase):
    """The same promise with the durable engine: a restarted process still delivers."""

    def test_restart_with_sqlite_store_delivers_everything(self):
        from wavebox.store import open_store
        path = self.mktemp()
        clock = task.Clock()
        peer = FakePeer()
        peer.reachable = False

        @defer.inlineCallbacks
        def run():
            store = open_store("sqlite:db.sqlite3", data_dir=path)
            outbox = O.Outbox(store, peer.send, peer.discover, clock=clock, initial_backoff=1)
            for n in range(1, 4):
                yield outbox.enqueue("b.test", A_JID, [update(n)])
            outbox.stop()
            yield store.close()
            store = open_store("sqlite:db.sqlite3", data_dir=path)
            peer.reachable = True
            outbox = O.Outbox(store, peer.send, peer.discover, clock=clock, initial_backoff=1)
            yield outbox.resume()
            clock.advance(1)
            yield wait_until(lambda: len(peer.sent) == 1)
            self.assertEqual(peer.all_deltas(), [b"delta 1", b"delta 2", b"delta 3"])
            for m in peer.sent:
                outbox.on_receipt(m["to"], m["id"])
            yield wait_until(lambda: not outbox.queue("b.test").items)
            yield store.close()      # waits for the acks already asked for
            store = open_store("sqlite:db.sqlite3", data_dir=path)
            backlog = yield store.outbox_backlog()
            self.assertEqual(backlog, {})
            outbox.stop()
            yield store.close()
        return run()


class StatusCommandTests(TestCase):
    """``wavebox status`` reads the backlog from the store, server running or not."""

    @defer.inlineCallbacks
    def test_status_prints_the_backlog_of_a_sqlite_store(self):
        import os
        import sys
        from twisted.internet import utils
        from wavebox.store import open_store
        data_dir = os.path.abspath(self.mktemp())
        store = open_store("sqlite:wavebox.sqlite3", data_dir=data_dir)
        yield store.outbox_enqueue("b.test", b"<message/>")
        yield store.outbox_enqueue("b.test", b"<message/>")
        yield store.outbox_set_retry("b.test", 3, 10 ** 13)
        yield store.close()
        root = os.path.dirname(os.path.dirname(os.path.abspath(O.__file__)))
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-m", "wavebox.cli", "status", "--data-dir", data_dir],
            env=dict(os.environ, PYTHONPATH=os.path.dirname(root)), path=data_dir)
        self.assertEqual((code, err), (3, b""))      # 3: the server does not run
        self.assertIn(b"server: not running\n", out)
        self.assertIn(b"b.test", out)
        self.assertIn(b"2 queued  unreachable, 3 failure(s)", out)

    def test_status_without_a_store_says_so_and_creates_nothing(self):
        import io
        import os
        import sys
        data_dir = os.path.abspath(self.mktemp())
        err, out = io.StringIO(), io.StringIO()
        self.patch(sys, "stderr", err)
        self.assertEqual(status_command.main(["--data-dir", data_dir], out=out), 1)
        self.assertEqual(out.getvalue(), "")
        self.assertIn("no store at %s" % (os.path.join(data_dir, "wavebox.sqlite3"),),
                      err.getvalue())
        self.assertFalse(os.path.exists(data_dir))



class GiveUpTests(SynchronousTestCase):
    """Issue 13 item 3: failing delivery is visible, and it ends."""

    def setUp(self):
        from tests.xmpp_fakes import LogCapture
        self.logs = LogCapture(self)
        self.clock = task.Clock()
        self.clock.advance(1700000000)
        self.store = MemoryStore()
        self.peer = FakePeer()
        self.peer.reachable = False
        self.outbox = O.Outbox(self.store, self.peer.send, self.peer.discover, clock=self.clock,
                               initial_backoff=60, max_backoff=3600, give_up=86400)

    def test_a_failing_destination_is_a_problem_since_its_first_failure(self):
        self.assertIsNone(self.outbox.problem("b.test"))
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        problem = self.outbox.problem("b.test")
        self.assertEqual((problem.domain, problem.since_ms, problem.given_up),
                         ("b.test", 1700000000 * 1000, False))
        self.assertIn("no route to b.test", problem.reason)
        self.clock.advance(60)
        self.assertEqual(self.outbox.problem("b.test").since_ms, 1700000000 * 1000)
        retry = self.successResultOf(self.store.outbox_get_retry("b.test"))
        self.assertEqual((retry.failures, retry.since_ms), (2, 1700000000 * 1000))

    def test_unreachable_longer_than_give_up_is_dropped_with_one_log_line(self):
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(2)]))
        for _ in range(40):
            self.clock.advance(3600)
        self.assertEqual(self.successResultOf(self.store.outbox_backlog()), {})
        self.assertNotIn("b.test", self.outbox.queues)
        problem = self.outbox.problem("b.test")
        self.assertTrue(problem.given_up)
        self.assertIn("given up after 1.0 day(s) unreachable", problem.reason)
        self.assertEqual(self.logs.count("outbox to b.test: unreachable for 1.0 day(s) "
                                         "(--federation-give-up 86400s): dropped 2 queued "
                                         "update(s)"), 1)
        attempts = self.peer.discoveries
        self.clock.advance(86400)
        self.assertEqual(self.peer.discoveries, attempts)      # it stopped trying
        # Something new for it: try again, and no longer "given up".
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(3)]))
        self.assertFalse(self.outbox.problem("b.test").given_up)

    def test_the_failing_since_survives_a_restart(self):
        self.successResultOf(self.outbox.enqueue("b.test", A_JID, [update(1)]))
        self.clock.advance(7200)
        self.outbox.stop()
        again = O.Outbox(self.store, self.peer.send, self.peer.discover, clock=self.clock,
                         initial_backoff=60, max_backoff=3600, give_up=86400)
        self.successResultOf(again.resume())
        self.assertEqual(again.problem("b.test").since_ms, 1700000000 * 1000)

    def test_never_gives_up_when_told_so(self):
        outbox = O.Outbox(self.store, self.peer.send, self.peer.discover, clock=self.clock,
                          initial_backoff=60, max_backoff=3600, give_up=None)
        self.successResultOf(outbox.enqueue("b.test", A_JID, [update(1)]))
        for _ in range(24 * 30):
            self.clock.advance(3600)
        self.assertEqual(self.successResultOf(self.store.outbox_backlog()), {"b.test": 1})
        self.assertFalse(outbox.problem("b.test").given_up)


class _SharedMemory:
    """One memory store as several processes share a database: claims and broadcasts."""

    def __init__(self):
        self.store = MemoryStore()
        self.holders = {}
        self.views = []

    def view(self):
        v = _ProcessView(self)
        self.views.append(v)
        return v


class _ProcessView:
    """One process's store over the shared one."""

    shared = True

    def __init__(self, shared):
        self._shared = shared
        self.broadcast_observers = []

    def __getattr__(self, name):
        return getattr(self._shared.store, name)

    def outbox_claim(self, destination):
        return defer.succeed(self._shared.holders.setdefault(destination, self) is self)

    def outbox_release(self, destination):
        if self._shared.holders.get(destination) is self:
            del self._shared.holders[destination]
        return defer.succeed(None)

    def broadcast(self, topic, text):
        for view in self._shared.views:
            if view is not self:
                for observe in list(view.broadcast_observers):
                    observe(topic, text)
        return defer.succeed(None)

    def die(self):
        """The process ends: its session's locks go with it."""
        for destination in [d for d, v in self._shared.holders.items() if v is self]:
            del self._shared.holders[destination]


class SharedOutboxTests(SynchronousTestCase):
    """Several processes for one domain: one delivers each queue; receipts find it."""

    def setUp(self):
        self.clock = task.Clock()
        self.shared = _SharedMemory()
        self.peer = FakePeer()
        self.views = [self.shared.view(), self.shared.view()]
        self.outboxes = [O.Outbox(v, self.peer.send, self.peer.discover, clock=self.clock,
                                  receipt_timeout=30, claim_interval=2) for v in self.views]
        for outbox in self.outboxes:
            outbox.watch()
        self.addCleanup(lambda: [o.stop() for o in self.outboxes])

    def backlog(self):
        return self.successResultOf(self.shared.store.outbox_backlog())

    def test_one_process_delivers_a_queue_that_both_fill_in_order(self):
        one, two = self.outboxes
        self.successResultOf(one.enqueue("b.test", A_JID, [update(1)]))
        self.successResultOf(two.enqueue("b.test", A_JID, [update(2)]))
        self.successResultOf(one.enqueue("b.test", A_JID, [update(3)]))
        self.clock.advance(2)       # the first process's look at the backlog finds item 2
        self.assertEqual(self.peer.all_deltas(), [b"delta 1", b"delta 2", b"delta 3"])
        self.assertFalse(two.queues["b.test"].claimed)

    def test_a_receipt_on_the_other_process_ends_the_wait(self):
        one, two = self.outboxes
        self.successResultOf(one.enqueue("b.test", A_JID, [update(1)]))
        [msg] = self.peer.sent
        two.on_receipt(msg["to"], msg["id"])       # the peer answered the other process
        self.assertEqual(self.backlog(), {})
        self.assertEqual(one.queues["b.test"].in_flight, {})
        self.clock.advance(60)                     # and nothing is sent again
        self.assertEqual(len(self.peer.sent), 1)

    def test_a_dead_processs_queue_is_taken_over_and_delivered_in_order(self):
        one, two = self.outboxes
        for n in (1, 2, 3):
            self.successResultOf(one.enqueue("b.test", A_JID, [update(n)]))
        first = self.peer.sent[0]
        one.on_receipt(first["to"], first["id"])
        # The first process dies with two updates unacknowledged; the other
        # knew nothing of this destination.
        one.stop()
        self.views[0].die()
        self.assertNotIn("b.test", two.queues)
        self.peer.sent = []
        self.clock.advance(2)
        self.assertEqual(self.peer.all_deltas(), [b"delta 2", b"delta 3"])
        for msg in list(self.peer.sent):
            two.on_receipt(msg["to"], msg["id"])
        self.assertEqual(self.backlog(), {})
        # Its queue empty, the process lets it go for whoever queues next.
        self.assertNotIn("b.test", self.shared.holders)
