"""
Durable per-destination delivery of wavelet updates (wave protocol §1.3, §7(a)
step 6: the SPEC's "reliable queue with exponential backoff", which FedOne and
WIAB never built).

Every update for a remote domain is first written to that domain's queue in
the store (``outbox_enqueue``, or together with the delta by
``append_delta(..., outbox=...)``), then sent as a ``<message>`` that requests
a ``urn:xmpp:receipts`` receipt.  An item leaves the queue (``outbox_ack``)
only when the peer's ``<received/>`` with the same id arrives: an update is
acknowledged only once the peer has it.  While the peer is unreachable (no
wave service found, an error bounced, no receipt in time) the queue backs off
exponentially; the retry state is stored, so after a restart of either server
delivery resumes where it stopped, in order.

A message id names the items it carries (``wbx.<first>.<last>``), so a receipt
that arrives late, even after a restart, still acks exactly those items.

Several processes serving one domain on one database (a PostgreSQL store)
share every queue, and each queue is delivered by one of them at a time:
a queue sends nothing until the store grants this process the destination
(``outbox_claim``, an advisory lock there, always granted by a store of one
process).  A queue that is refused asks again every ``claim_interval``
seconds, and so takes the queue over when its holder dies; a process also
looks at the stored backlog that often, for destinations that only others
queued for.  A holder whose queue is empty lets it go, so the next update is
delivered by whichever process queued it, and reads the queue afresh from
the store (picking up items another process committed out of id order).
A receipt that reaches a process that is not delivering that queue is
broadcast (``broadcast("receipt", ...)``) to the one that is.

A stored payload is the update ``<message>`` without ``id`` and ``to`` (UTF-8
XML): the peer's JID is found again at delivery time, since its service may
have moved while it was down.
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from wavebox.federation import stanzas

log = Logger()

DEFAULT_RECEIPT_TIMEOUT = 30.0   # the Java senders' 30 s (§1.2)
DEFAULT_INITIAL_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 300.0
DEFAULT_WINDOW = 8               # messages in flight per destination
DEFAULT_BATCH = 16               # queued items per message when catching up
DEFAULT_GIVE_UP = 7 * 24 * 3600.0  # seconds unreachable before a destination is dropped
DEFAULT_CLAIM_INTERVAL = 2.0     # seconds between asks for a queue another process delivers
PAGE = 200                       # items read from the store at a time
MAX_CACHED = 2000                # unacknowledged items kept in memory per destination

_ID_PREFIX = "wbx."

#: Error conditions that say the update itself is refused: sending it again
#: cannot help (the same set as wavebox.federation.errors, kept here so that
#: ``wavebox status`` imports nothing of the server).
PERMANENT_CONDITIONS = frozenset([
    "bad-request", "not-acceptable", "not-authorized", "forbidden", "item-not-found",
    "unexpected-request", "feature-not-implemented", "jid-malformed", "not-allowed",
])


def message_id(items):
    return "%s%d.%d" % (_ID_PREFIX, items[0].item_id, items[-1].item_id)


def item_range(stanza_id):
    """(first, last) item ids named by one of our message ids, or None."""
    if not stanza_id or not stanza_id.startswith(_ID_PREFIX):
        return None
    try:
        first, last = stanza_id[len(_ID_PREFIX):].split(".")
        return int(first), int(last)
    except ValueError:
        return None


def backoff_delay(attempts, initial=DEFAULT_INITIAL_BACKOFF, maximum=DEFAULT_MAX_BACKOFF):
    """Seconds to wait after ``attempts`` failures in a row: initial·2^(n-1), capped."""
    if attempts <= 0:
        return 0.0
    return min(maximum, initial * (2 ** min(attempts - 1, 62)))


def encode_payload(from_jid, updates):
    """What the store keeps for one item: the update message without id and to."""
    msg = stanzas.build_update_message(from_jid, "", "", updates)
    del msg.attributes["to"]
    del msg.attributes["id"]
    return msg.toXml().encode("utf-8")


def decode_payload(payload):
    """(our JID, [<wavelet-update> elements]) of a stored payload."""
    msg = stanzas.element_from_xml(payload)
    return (msg.getAttribute("from"),
            [wu for item in msg.event.items.elements() for wu in item.elements()])


class _Item:
    __slots__ = ("item_id", "payload", "_parsed", "seen")

    def __init__(self, item_id, payload, seen=0.0):
        self.item_id = item_id
        self.payload = payload
        self._parsed = None
        self.seen = seen            # clock seconds when this process queued or read it

    def parsed(self):
        if self._parsed is None:
            self._parsed = decode_payload(self.payload)
        return self._parsed


class DestinationQueue:
    """
    Delivery to one remote domain: in store order, a window of messages in
    flight, each waiting for its receipt; any failure backs the whole queue
    off, and everything unacknowledged is sent again, in order, afterwards.
    """

    def __init__(self, outbox, destination):
        self.outbox = outbox
        self.destination = destination
        self.jid = None
        self.items = []            # unacknowledged items in memory, in id order
        self.next_index = 0        # items[:next_index] are in flight
        self.in_flight = {}        # message id -> (items, timeout call)
        self.read_upto = 0         # highest item id read from (or put in) memory
        self.exhausted = False     # memory holds every pending item of the store
        self.reading = False       # a read of the store is under way
        self.late = []             # items added while reading
        self.discovering = False
        self.attempts = 0
        self.since_ms = None       # when the failures in a row began
        self.retry_call = None
        self.last_error = None
        self.stopped = False       # dropped by an operator, or the outbox stopped
        self.claimed = False       # the store lets this process deliver the queue
        self.claiming = False
        self.claim_call = None     # the next ask, while another process delivers it
        # Several processes fill the queue: what is in the store is read again
        # from its start (an item committed late may have a lower id).
        self.shared = getattr(outbox.store, "shared", False)
        self.acked = set()         # ids acknowledged whose delete may not be read yet

    @property
    def busy(self):
        return self.reading or self.discovering or self.claiming

    @property
    def backing_off(self):
        return self.retry_call is not None and self.retry_call.active()

    def status(self):
        return {"destination": self.destination, "queued": len(self.items),
                "more_in_store": not self.exhausted,
                "in_flight": sum(len(i) for i, _ in self.in_flight.values()),
                "failures": self.attempts, "last_error": self.last_error,
                "since_ms": self.since_ms,
                "oldest_seconds": (self.outbox.clock.seconds() - self.items[0].seen
                                   if self.items else None),
                "jid": self.jid}

    # -- feeding the queue ---------------------------------------------------

    def add(self, item_id, payload):
        """A new item was made durable for this destination."""
        if self.shared:
            self.exhausted = False
            if not self.claimed and not self.claiming:
                # Tell the process that delivers the queue, if another one does.
                self.outbox.store_call("broadcast", "queued", self.destination)
        elif self.reading:
            self.late.append((item_id, payload))
        elif item_id > self.read_upto:
            if self.exhausted and len(self.items) < MAX_CACHED:
                self.items.append(_Item(item_id, payload, self.outbox.clock.seconds()))
                self.read_upto = item_id
            else:
                self.exhausted = False
        self.kick()

    def _read_more(self):
        self.reading = True
        limit = PAGE
        if self.shared:
            limit += len(self.items) + len(self.acked)
        d = self.outbox.store_call("outbox_pending", self.destination, limit=limit,
                                   after=0 if self.shared else self.read_upto)
        d.addBoth(self._read, limit)

    def _read(self, rows, limit=PAGE):
        self.reading = False
        late, self.late = self.late, []
        if isinstance(rows, Failure):
            log.failure("outbox to {dest}: cannot read the queue", rows, dest=self.destination)
            self._failed("store: %s" % (rows.getErrorMessage(),))
            return
        if self.shared:
            known = {i.item_id for i in self.items}
            self.acked &= {row.id for row in rows}     # the rest are gone for good
            for row in rows:
                if row.id not in known and row.id not in self.acked:
                    self.items.append(_Item(row.id, row.payload, self.outbox.clock.seconds()))
                    self.read_upto = max(self.read_upto, row.id)
        for row in rows:
            if not self.shared and row.id > self.read_upto:
                self.items.append(_Item(row.id, row.payload, self.outbox.clock.seconds()))
                self.read_upto = row.id
        if len(rows) < limit:
            self.exhausted = True
            for item_id, payload in sorted(late):
                self.add(item_id, payload)
        self.kick()

    # -- sending -------------------------------------------------------------

    def kick(self):
        """Send what the window allows, unless waiting to retry or busy."""
        if self.backing_off or self.busy or self.stopped or self.outbox.stopped:
            return
        if not self.claimed:
            self._claim()
            return
        unsent = len(self.items) - self.next_index
        if not self.exhausted and unsent < self.outbox.batch and len(self.items) < MAX_CACHED:
            self._read_more()
            return
        if unsent <= 0:
            return
        if self.jid is None:
            self.discovering = True
            d = defer.maybeDeferred(self.outbox.discover, self.destination)
            d.addCallbacks(self._discovered, self._discovery_failed)
            return
        while (self.next_index < len(self.items) and self.jid is not None
               and len(self.in_flight) < self.outbox.window and not self.backing_off):
            self._send_next()

    def _claim(self):
        if self.claim_call is not None and self.claim_call.active():
            return
        self.claim_call = None
        self.claiming = True
        d = self.outbox.store_call("outbox_claim", self.destination)
        d.addBoth(self._claimed)

    def _claimed(self, granted):
        self.claiming = False
        if self.stopped or self.outbox.stopped:
            return
        if granted is True:
            # Ours now: read the queue afresh from the store, which is the
            # truth (another process may have delivered part of it).
            self.claimed = True
            self._drop_in_flight()
            self.items, self.read_upto, self.exhausted, self.late = [], 0, False, []
            self.acked = set()
            self.kick()
            return
        self.claim_call = self.outbox.clock.callLater(self.outbox.claim_interval, self.kick)

    def confirm_claim(self):
        """Ask the store whether the queue is still ours; stop sending if not."""
        if not self.claimed or self.claiming:
            return
        self.claiming = True

        def answered(granted):
            self.claiming = False
            if granted is not True and self.claimed:
                log.warn("outbox to {dest}: another process delivers this queue now",
                         dest=self.destination)
                self.claimed = False
                self._drop_in_flight()
            self.kick()
        self.outbox.store_call("outbox_claim", self.destination).addBoth(answered)

    def _release_if_done(self):
        """Nothing left to deliver: let another process take the next update."""
        if self.claimed and not self.items and self.exhausted and not self.in_flight \
                and not self.busy:
            self.claimed = False
            self.outbox.store_call("outbox_release", self.destination)

    def _discovered(self, jid):
        self.discovering = False
        self.jid = str(jid)
        self.outbox._by_jid[self.jid] = self
        self.kick()

    def _discovery_failed(self, failure):
        self.discovering = False
        self._failed("no wave service found: %s" % (failure.getErrorMessage(),))

    def _send_next(self):
        first = self.items[self.next_index]
        from_jid, updates = first.parsed()
        batch, updates = [first], list(updates)
        i = self.next_index + 1
        while i < len(self.items) and len(batch) < self.outbox.batch:
            f, u = self.items[i].parsed()
            if f != from_jid:
                break
            batch.append(self.items[i])
            updates.extend(u)
            i += 1
        self.next_index = i
        mid = message_id(batch)
        msg = stanzas.build_update_message(from_jid, self.jid, mid, updates)
        timeout = self.outbox.clock.callLater(
            self.outbox.receipt_timeout, self._timed_out, mid)
        self.in_flight[mid] = (batch, timeout)
        try:
            result = self.outbox.send(msg)
        except Exception as e:
            self._failed("send failed: %s" % (e,))
            return
        if isinstance(result, defer.Deferred):
            result.addErrback(lambda f: self._failed(
                "send failed: %s" % (f.getErrorMessage(),)))

    # -- answers -------------------------------------------------------------

    def received(self, stanza_id):
        """The peer's receipt for one of our messages: those items are delivered."""
        flight = self.in_flight.pop(stanza_id, None)
        if flight is not None:
            batch, timeout = flight
            if timeout.active():
                timeout.cancel()
            acked = {i.item_id for i in batch}
        else:
            span = item_range(stanza_id)
            if span is None:
                return
            acked = {i.item_id for i in self.items if span[0] <= i.item_id <= span[1]}
        if not acked:
            return
        sent_acked = sum(1 for i in self.items[:self.next_index] if i.item_id in acked)
        self.items = [i for i in self.items if i.item_id not in acked]
        self.next_index -= sent_acked
        if self.attempts:
            log.info("outbox to {dest}: peer is back; {n} update(s) still queued",
                     dest=self.destination, n=len(self.items))
            self.attempts = 0
            self.since_ms = None
            self.last_error = None
            self.outbox.store_call("outbox_set_retry", self.destination, 0, 0)
        if self.backing_off:
            self.retry_call.cancel()
            self.retry_call = None
        for item_id in sorted(acked):
            self.outbox.store_call("outbox_ack", self.destination, item_id)
        if self.shared:
            self.acked |= acked
        self.kick()
        self._release_if_done()

    def bounced(self, stanza_id, error):
        """
        An error came back instead of a receipt.  One that says the update
        itself is wrong (``bad-request``...) will be the same next time: those
        items are dropped, loudly.  Any other (no route, timeout, ``wait``)
        backs off and retries.
        """
        if stanza_id not in self.in_flight:
            return
        reason = "%s%s" % (error.condition, ": " + error.text if error.text else "")
        if error.condition in PERMANENT_CONDITIONS:
            batch, timeout = self.in_flight[stanza_id]
            log.error("outbox to {dest}: the peer refused {n} update(s) for good ({reason}); "
                      "dropping them", dest=self.destination, n=len(batch), reason=reason)
            self.received(stanza_id)
            return
        self._failed(reason)

    def _timed_out(self, stanza_id):
        if stanza_id in self.in_flight:
            self._failed("no receipt within %gs" % (self.outbox.receipt_timeout,))

    def peer_seen(self):
        """The peer just spoke to us: if we were waiting to retry, retry now."""
        if self.backing_off:
            self.retry_call.cancel()
            self.retry_call = None
            self.kick()

    def _failed(self, reason):
        """Back off, then send everything unacknowledged again."""
        if self.backing_off or self.stopped or self.outbox.stopped:
            return
        self._drop_in_flight()
        self.forget_jid()
        if self.outbox.forget is not None:
            self.outbox.forget(self.destination)
        now_ms = int(self.outbox.clock.seconds() * 1000)
        self.attempts += 1
        self.last_error = reason
        if self.since_ms is None:
            self.since_ms = now_ms
        give_up = self.outbox.give_up
        if give_up is not None and now_ms - self.since_ms >= give_up * 1000:
            self.outbox.give_up_on(self, reason)
            return
        delay = backoff_delay(self.attempts, self.outbox.initial_backoff,
                              self.outbox.max_backoff)
        next_ms = now_ms + int(delay * 1000)
        log.warn("outbox to {dest}: {reason}; {n}{more} update(s) queued, failure {a}, "
                 "retrying in {delay:g}s", dest=self.destination, reason=reason,
                 n=len(self.items), more="" if self.exhausted else "+", a=self.attempts,
                 delay=delay)
        self.outbox.store_call("outbox_set_retry", self.destination, self.attempts, next_ms,
                               self.since_ms)
        self.retry_call = self.outbox.clock.callLater(delay, self._retry)

    def _drop_in_flight(self):
        for batch, timeout in self.in_flight.values():
            if timeout.active():
                timeout.cancel()
        self.in_flight.clear()
        self.next_index = 0

    def forget_jid(self):
        """
        Discover the peer again on the next attempt: its service may have
        moved.  Its old JID still maps here, so that a late receipt counts.
        """
        self.jid = None

    def _retry(self):
        self.retry_call = None
        self.kick()

    def stop(self):
        self.stopped = True
        self._drop_in_flight()
        if self.backing_off:
            self.retry_call.cancel()
        self.retry_call = None
        if self.claim_call is not None and self.claim_call.active():
            self.claim_call.cancel()
        self.claim_call = None


class Outbox:
    """
    Every destination queue of one server.

    ``store`` is an :class:`~wavebox.store.interface.IWaveletStore`;
    ``send(element)`` hands a stanza to XMPP (it may return a Deferred that
    fails when the stanza cannot be delivered); ``discover(domain)`` gives the
    peer's wave service JID (a Deferred); ``forget(domain)``, if given, drops
    what discovery cached about a peer that just failed us.
    """

    def __init__(self, store, send, discover, clock=None, forget=None,
                 receipt_timeout=DEFAULT_RECEIPT_TIMEOUT,
                 initial_backoff=DEFAULT_INITIAL_BACKOFF,
                 max_backoff=DEFAULT_MAX_BACKOFF,
                 window=DEFAULT_WINDOW, batch=DEFAULT_BATCH, give_up=DEFAULT_GIVE_UP,
                 claim_interval=DEFAULT_CLAIM_INTERVAL):
        if clock is None:
            from twisted.internet import reactor as clock
        self.store = store
        self.send = send
        self.discover = discover
        self.forget = forget
        self.clock = clock
        self.receipt_timeout = receipt_timeout
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.window = window
        self.batch = batch
        self.give_up = give_up      # seconds of failures in a row before dropping; None: never
        self.claim_interval = claim_interval
        self._watch = None          # looks at the stored backlog (several processes)
        self.given_up = {}          # destination -> DeliveryProblem (given_up=True)
        self.queues = {}
        self._by_jid = {}
        self.stopped = False

    def store_call(self, method, *args, **kwargs):
        """Call the store; a failure is logged here (the queue state stays in memory)."""
        d = defer.maybeDeferred(getattr(self.store, method), *args, **kwargs)
        d.addErrback(lambda f: log.failure("outbox: store {method} failed", f, method=method))
        return d

    def queue(self, destination):
        q = self.queues.get(destination)
        if q is None:
            q = self.queues[destination] = DestinationQueue(self, destination)
            self.given_up.pop(destination, None)   # something new: try again
        return q

    def problem(self, destination):
        """
        A :class:`~wavebox.server.interfaces.DeliveryProblem` while delivery to
        ``destination`` fails (or was given up), else None.
        """
        from wavebox.server.interfaces import DeliveryProblem
        q = self.queues.get(destination)
        if q is not None and q.attempts and q.since_ms is not None:
            return DeliveryProblem(destination, q.last_error or "failing", q.since_ms)
        return self.given_up.get(destination)

    def give_up_on(self, q, reason):
        """
        ``q``'s destination failed for longer than :attr:`give_up`: stop, drop
        what waits for it (one log line), and remember it for status.
        """
        days = (self.clock.seconds() * 1000 - q.since_ms) / 86400000.0
        self.drop(q.destination, "given up after %.1f day(s) unreachable: %s" % (days, reason))

        def dropped(count):
            log.error("outbox to {dest}: unreachable for {days:.1f} day(s) (--federation-"
                      "give-up {limit:g}s): dropped {n} queued update(s); the last error was: "
                      "{reason}", dest=q.destination, days=days, limit=self.give_up,
                      n=count, reason=reason)
        self.store_call("outbox_drop", q.destination).addCallback(dropped)

    # -- API -----------------------------------------------------------------

    @defer.inlineCallbacks
    def enqueue(self, destination, from_jid, updates):
        """
        Make ``updates`` (:class:`~wavebox.federation.stanzas.WaveletUpdate`)
        durable for ``destination``, then deliver them.  Fires with the item
        id once it is in the store.
        """
        payload = encode_payload(from_jid, updates)
        item_id = yield defer.maybeDeferred(self.store.outbox_enqueue, destination, payload)
        self.queued(destination, item_id, payload)
        return item_id

    def queued(self, destination, item_id, payload):
        """An item was made durable elsewhere (``append_delta(outbox=...)``): deliver it."""
        if not self.stopped:
            self.queue(destination).add(item_id, payload)

    @defer.inlineCallbacks
    def resume(self, quiet=False):
        """
        At start-up: pick up every queue that still has items and try it at
        once.  A wait left from before the restart is not honoured: the
        peer may well have come back meanwhile (or restarted with us), and
        one attempt costs little.  The failure count is kept, so a peer
        still down is waited for as long as before.
        """
        backlog = yield defer.maybeDeferred(self.store.outbox_backlog)
        for destination, pending in sorted(backlog.items()):
            if not pending or self.stopped:
                continue
            if quiet and destination in self.queues:
                self.queues[destination].kick()
                continue
            q = self.queue(destination)
            retry = yield defer.maybeDeferred(self.store.outbox_get_retry, destination)
            if retry is not None and retry.failures:
                q.attempts = retry.failures
                q.since_ms = retry.since_ms or int(self.clock.seconds() * 1000)
                q.last_error = "failing before the restart"
            if not quiet:
                log.info("outbox to {dest}: {n} update(s) waiting from before the restart; "
                         "sending them now", dest=destination, n=pending)
            q.kick()

    def on_receipt(self, from_jid, stanza_id, relayed=False):
        """
        A receipt; one for a queue this process is not delivering goes to
        the process that is (through the store), unless it came from there.
        """
        q = self._by_jid.get(from_jid)
        if q is not None and q.claimed:
            q.received(stanza_id)
        elif not relayed and item_range(stanza_id) is not None:
            self.store_call("broadcast", "receipt", "%s %s" % (from_jid, stanza_id))

    def heard(self, topic, text):
        """A store broadcast from another process sharing the database."""
        if topic == "receipt":
            from_jid, _, stanza_id = text.partition(" ")
            self.on_receipt(from_jid, stanza_id, relayed=True)
        elif topic == "queued" and not self.stopped:
            q = self.queues.get(text)
            if q is not None and q.claimed:
                q.exhausted = False     # read what the other process queued
                q.kick()

    def watch(self):
        """
        Several processes on one store: every ``claim_interval`` seconds, pick
        up the destinations that have items in the store (queued by another
        process that may have died) and confirm the queues we deliver are
        still ours.  Listens to the store's broadcasts, too.
        """
        from twisted.internet import task
        observers = getattr(self.store, "broadcast_observers", None)
        if observers is not None and self.heard not in observers:
            observers.append(self.heard)
        if self._watch is None:
            self._watch = task.LoopingCall(self._look)
            self._watch.clock = self.clock
            self._watch.start(self.claim_interval, now=False)

    def _look(self):
        for q in list(self.queues.values()):
            q.confirm_claim()
        d = self.resume(quiet=True)
        d.addErrback(lambda f: log.failure("outbox: cannot read the backlog", f))
        return None

    def on_error(self, from_jid, stanza_id, error):
        """
        An error answered one of our messages.  It may come from the peer, or
        from our own XMPP layer (no route): find the queue by the message id.
        """
        for q in ([self._by_jid[from_jid]] if from_jid in self._by_jid else []) + list(
                self.queues.values()):
            if stanza_id in q.in_flight:
                q.bounced(stanza_id, error)
                return

    def peer_seen(self, domain):
        q = self.queues.get(domain)
        if q is not None:
            q.peer_seen()

    def peer_seen_jid(self, jid_domain):
        """A stanza came from ``jid_domain``: end the backoff of the queue it serves."""
        q = self._by_jid.get(jid_domain) or self.queues.get(jid_domain)
        if q is None:
            for destination, queue in self.queues.items():
                if jid_domain.endswith("." + destination):
                    q = queue
                    break
        if q is not None:
            q.peer_seen()

    def drop(self, destination, reason=None):
        """
        Stop delivering to ``destination`` and forget its queue in memory
        (the caller drops the stored items): we, or an operator, gave up on
        it.  With a ``reason``, :meth:`problem` says so until something new
        is queued for it.
        """
        from wavebox.server.interfaces import DeliveryProblem
        q = self.queues.pop(destination, None)
        if reason is not None:
            since = q.since_ms if q is not None and q.since_ms else \
                int(self.clock.seconds() * 1000)
            self.given_up[destination] = DeliveryProblem(destination, reason, since,
                                                         given_up=True)
        if q is None:
            return
        q.stop()
        for jid in [j for j, queue in self._by_jid.items() if queue is q]:
            del self._by_jid[jid]

    def status(self):
        """One dict per destination this process is delivering to."""
        return [q.status() for _, q in sorted(self.queues.items())]

    def stop(self):
        self.stopped = True
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        self._watch = None
        observers = getattr(self.store, "broadcast_observers", None)
        if observers is not None and self.heard in observers:
            observers.remove(self.heard)
        for q in self.queues.values():
            q.stop()
