"""
What a stranger may hold of an XMPP server's resources, and for how long
(issue 9).  :mod:`wavebox.xmpp.elementstream` limits what one stanza may
cost; this module limits the rest:

:class:`StreamLimits`
    The figures, with defaults that keep 2,000 hostile connections under
    300 MB (docs/performance.rst, "Hostile input"): incoming streams open at
    once (``max_streams``), unauthenticated incoming streams per client
    address (``max_unauthenticated_per_ip``; an IPv6 client by its /64),
    bytes we may have queued for a peer that does not read
    (``max_pending_bytes``), seconds an authenticated stream may stay silent
    (``idle_timeout``).  How long an unauthenticated one may take is the S2S
    service's ``negotiation_timeout``.
:class:`ConnectionGate`
    Admits or refuses a new incoming stream by those counts; a refusal is
    the stream error ``resource-constraint`` (RFC 6120 4.9.3.15), logged
    once a minute with how many were refused, so a flood does not flood
    the log too.
:class:`IdleTimer`
    Calls back when a stream has carried nothing for its timeout; activity
    only records a time, so a busy stream costs no timer work per chunk.
:class:`OutputBudget`
    A push producer on the transport: Twisted pauses it when the peer stops
    reading; what we write while it is paused counts against
    ``max_pending_bytes``, and over it the connection is dropped.
:class:`TurnBudget`
    How much of one reactor turn strangers' input (streams that have not
    authenticated a domain) may take: past ``share`` seconds, a stranger's
    next chunk is held and its socket paused until a later turn, in arrival
    order.  Two thousand strangers sending at once then cost the other
    streams a few milliseconds a turn, not the sum of their parsing.
:class:`LogThrottle`
    Strangers' stream errors are each logged once, but a thousand strangers
    must not write a thousand lines at once (a log that is slow to take
    them holds the reactor): past ``STRANGER_LOG_BURST`` lines in
    ``STRANGER_LOG_WINDOW`` seconds they are counted, and the next line
    says how many were left out.
(The S2S ports accept a few connections a turn, with a long backlog, as
every port of wavebox does: :mod:`wavebox.ports`.)
:func:`error_reply`
    A stanza error answer that does not echo the payload (RFC 6120 8.3.1
    allows it and we never need it): nothing we send back grows with what a
    peer sent.
"""

import collections
import time

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.words.protocols.jabber import error
from twisted.words.protocols.jabber.xmlstream import toResponse
from zope.interface import implementer

# Strangers are counted by address as logins are: one rule for both.
from wavebox.server.login import client_key

#: Incoming S2S streams open at once.
MAX_STREAMS = 1000
#: Unauthenticated incoming streams from one client address.
MAX_UNAUTHENTICATED_PER_IP = 10
#: Bytes written to a peer that is not reading, beyond the transport's buffer.
MAX_PENDING_BYTES = 4 * 1024 * 1024
#: Seconds an authenticated stream may carry nothing before we close it.
IDLE_TIMEOUT = 600.0
#: Seconds between two log lines about refused connections.
REFUSAL_LOG_INTERVAL = 60.0
#: Seconds of one reactor turn strangers' input may take before it waits a turn.
STRANGER_SHARE = 0.005
#: Strangers' stream errors logged per window before they are only counted.
STRANGER_LOG_BURST = 20
STRANGER_LOG_WINDOW = 10.0

log = Logger()


class StreamLimits:
    """The caps of one S2S service (see the module docstring)."""

    def __init__(self, max_streams=MAX_STREAMS,
                 max_unauthenticated_per_ip=MAX_UNAUTHENTICATED_PER_IP,
                 max_pending_bytes=MAX_PENDING_BYTES, idle_timeout=IDLE_TIMEOUT):
        self.max_streams = max_streams
        self.max_unauthenticated_per_ip = max_unauthenticated_per_ip
        self.max_pending_bytes = max_pending_bytes
        self.idle_timeout = idle_timeout


def options_from_config(config):
    """The S2S service's keyword arguments for the options of docs/xmpp.rst, "Limits"."""
    return dict(
        max_stanza_size=config.xmpp_max_stanza_size,
        max_unauthenticated_stanza_size=config.xmpp_max_unauthenticated_stanza_size,
        max_depth=config.xmpp_max_depth,
        negotiation_timeout=config.s2s_unauthenticated_timeout,
        limits=StreamLimits(
            max_streams=config.s2s_max_streams,
            max_unauthenticated_per_ip=config.s2s_max_unauthenticated_per_ip,
            max_pending_bytes=config.s2s_max_pending_bytes,
            idle_timeout=config.s2s_idle_timeout),
        stranger_share=STRANGER_SHARE)



class ConnectionGate:
    """Counts incoming streams, and which of them are not yet authenticated, per address."""

    def __init__(self, limits, clock):
        self.limits = limits
        self.clock = clock
        self.open = set()
        self.unauthenticated = {}       # client key -> set of streams
        self.refused = 0                # since the last log line
        self._logged_at = None

    def admit(self, stream, host):
        """None when ``stream`` (from ``host``) may open, else the reason it may not."""
        limits = self.limits
        key = client_key(host)
        waiting = self.unauthenticated.get(key, ())
        if len(self.open) >= limits.max_streams:
            why = "%d incoming streams are open (--s2s-max-streams)" % (len(self.open),)
        elif len(waiting) >= limits.max_unauthenticated_per_ip:
            why = ("%d unauthenticated streams from %s are open "
                   "(--s2s-max-unauthenticated-per-ip)" % (len(waiting), key))
        else:
            self.open.add(stream)
            self.unauthenticated.setdefault(key, set()).add(stream)
            stream.client_key = key
            return None
        self._refusal(why)
        return why

    def authenticated(self, stream):
        """``stream`` authenticated a domain: it no longer counts as a stranger's."""
        key = getattr(stream, "client_key", None)
        waiting = self.unauthenticated.get(key)
        if waiting is not None:
            waiting.discard(stream)
            if not waiting:
                del self.unauthenticated[key]

    def closed(self, stream):
        self.authenticated(stream)
        self.open.discard(stream)

    def _refusal(self, why):
        self.refused += 1
        now = self.clock.seconds()
        if self._logged_at is None or now - self._logged_at >= REFUSAL_LOG_INTERVAL:
            log.warn("incoming S2S: refused {count} stream(s) with <resource-constraint/> "
                     "(last: {why}); the next refusals are counted for {interval:.0f}s",
                     count=self.refused, why=why, interval=REFUSAL_LOG_INTERVAL)
            self.refused = 0
            self._logged_at = now


class IdleTimer:
    """Calls ``expired()`` once nothing was ``touch``\\ ed for ``timeout`` seconds."""

    def __init__(self, clock, timeout, expired):
        self.clock = clock
        self.timeout = timeout
        self.expired = expired
        self.last = clock.seconds()
        self._call = clock.callLater(timeout, self._check)

    def touch(self):
        self.last = self.clock.seconds()

    def _check(self):
        idle = self.clock.seconds() - self.last
        if idle >= self.timeout:
            self._call = None
            self.expired()
        else:
            self._call = self.clock.callLater(self.timeout - idle, self._check)

    def stop(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


@implementer(IPushProducer)
class OutputBudget:
    """Counts what is written while the transport says its peer is not reading."""

    def __init__(self, limit, overflow):
        self.limit = limit
        self.overflow = overflow
        self.paused = False
        self.unsent = 0

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        self.unsent = 0

    def stopProducing(self):
        self.paused = False

    def spend(self, size):
        """``size`` bytes are being written; False (and ``overflow()``) when over the limit."""
        if not self.paused:
            return True
        self.unsent += size
        if self.unsent > self.limit:
            self.overflow(self.unsent)
            return False
        return True


class TurnBudget:
    """Time strangers' input may take per reactor turn (see the module docstring)."""

    def __init__(self, clock, share=STRANGER_SHARE, timer=time.perf_counter):
        self.clock = clock
        self.share = share
        self.timer = timer
        self.used = 0.0
        self.waiting = collections.deque()
        self._turn = None

    @property
    def available(self):
        return self.used < self.share

    def charge(self, seconds):
        self.used += seconds
        self._next_turn_later()

    def run(self, work):
        """Do ``work()`` now if this turn has time for it, else in a later turn; timed."""
        if self.available:
            self._timed(work)
        else:
            self.later(work)

    def later(self, work):
        """``work()`` is called in a later turn, when there is time for it (not timed)."""
        self.waiting.append(work)
        self._next_turn_later()

    def _timed(self, work):
        started = self.timer()
        try:
            work()
        finally:
            self.charge(self.timer() - started)

    def _next_turn_later(self):
        if self._turn is None:
            # callLater(0) runs at the start of the next turn, after the
            # reactor has polled every socket once more.
            self._turn = self.clock.callLater(0, self._next_turn)

    def _next_turn(self):
        self._turn = None
        self.used = 0.0
        while self.waiting and self.available:
            self.waiting.popleft()()
        if self.waiting or self.used:
            self._next_turn_later()

    def stop(self):
        if self._turn is not None and self._turn.active():
            self._turn.cancel()
        self._turn = None


class LogThrottle:
    """At most ``burst`` lines a ``window``; ``allow()`` says whether to log this one."""

    def __init__(self, clock, burst=STRANGER_LOG_BURST, window=STRANGER_LOG_WINDOW):
        self.clock = clock
        self.burst = burst
        self.window = window
        self.started = None
        self.logged = 0
        self.suppressed = 0

    def allow(self):
        now = self.clock.seconds()
        if self.started is None or now - self.started >= self.window:
            self.started, self.logged = now, 0
        if self.logged < self.burst:
            self.logged += 1
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self):
        """How many lines were left out since the last call."""
        count, self.suppressed = self.suppressed, 0
        return count


def error_reply(stanza, condition, kind=None, text=None):
    """The error answer to ``stanza`` without its payload (RFC 6120 8.3.1)."""
    response = toResponse(stanza, "error")
    response.addChild(error.StanzaError(condition, type=kind, text=text).getElement())
    return response
