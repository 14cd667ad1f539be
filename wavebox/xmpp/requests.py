"""
Our iq requests that wait for their answers: one tracker for the S2S
service (:mod:`wavebox.xmpp.server`) and the XEP-0114 component
(:mod:`wavebox.xmpp.component`), so that both answer, time out, cancel and
fail in the same way.

A request is known by its id.  Over S2S anyone may send us an iq result
with a guessed id, so there the answer must also come from the JID the
request went to and be addressed to the JID it came from (RFC 6120 8.2.3:
the ``from`` of a response is the ``to`` of the request); the component's
XMPP server does that check for us.
"""

from twisted.internet import defer
from twisted.words.protocols.jabber import error

from wavebox.xmpp.stanza import parse_jid


class RequestTracker:
    """
    Requests in flight, by id, each with a timer of ``timeout`` seconds on
    ``clock``.  An answer that does not come in time fails the request with
    ``remote-server-timeout``; cancelling the request's Deferred forgets it.
    """

    def __init__(self, clock, timeout):
        self.clock = clock
        self.timeout = timeout
        self._waiting = {}      # id -> (Deferred, answer's from, answer's to, timer)

    def __contains__(self, key):
        return key in self._waiting

    def __len__(self):
        return len(self._waiting)

    def __iter__(self):
        """The ids of the requests waiting."""
        return iter(list(self._waiting))

    def track(self, iq, timeout=None, check_addresses=True):
        """
        A Deferred for the answer to ``iq`` (an iq get/set with an ``id``,
        which the caller then sends).  With ``check_addresses``, only an
        answer from the request's ``to`` to its ``from`` counts.  Raises
        ValueError for an id that is waiting already or, when addresses are
        checked, an invalid ``to`` or ``from``.
        """
        key = iq["id"]
        if key in self._waiting:
            raise ValueError("an iq with id %r is already waiting" % (key,))
        answer_from = answer_to = None
        if check_addresses:
            recipient, sender = parse_jid(iq.getAttribute("to")), parse_jid(iq.getAttribute("from"))
            if recipient is None or sender is None:
                raise ValueError("an iq request needs a valid 'to' and 'from'")
            answer_from, answer_to = recipient.full(), sender.full()
        d = defer.Deferred(lambda _: self.forget(key))
        call = self.clock.callLater(self.timeout if timeout is None else timeout,
                                    self._timed_out, key)
        self._waiting[key] = (d, answer_from, answer_to, call)
        return d

    def answer(self, iq):
        """
        An iq result or error came: fire the request it answers and mark it
        handled.  False when it answers none of ours (unknown id, or from or
        to the wrong address).
        """
        entry = self._waiting.get(iq.getAttribute("id"))
        if entry is None:
            return False
        d, answer_from, answer_to, _ = entry
        if answer_from is not None:
            sender, recipient = parse_jid(iq.getAttribute("from")), parse_jid(iq.getAttribute("to"))
            if (sender is None or recipient is None or sender.full() != answer_from
                    or recipient.full() != answer_to):
                return False
        self.forget(iq["id"])
        iq.handled = True
        if iq["type"] == "error":
            d.errback(error.exceptionFromStanza(iq))
        else:
            d.callback(iq)
        return True

    def forget(self, key):
        """Stop waiting for the answer to ``key`` (it was cancelled, or could not be sent)."""
        entry = self._waiting.pop(key, None)
        if entry is not None and entry[3].active():
            entry[3].cancel()

    def _timed_out(self, key):
        entry = self._waiting.pop(key, None)
        if entry is not None:
            entry[0].errback(error.StanzaError(
                "remote-server-timeout", type="wait", text="no answer in time"))

    def fail_all(self, reason):
        """The stream they went out on is gone: every request fails with ``reason``."""
        waiting, self._waiting = self._waiting, {}
        for d, _, _, call in waiting.values():
            if call.active():
                call.cancel()
            d.errback(reason)

    def cancel_all(self):
        """We are stopping: cancel every request."""
        for d, _, _, _ in list(self._waiting.values()):
            d.cancel()
