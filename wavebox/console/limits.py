"""
What one console user may cost the others (issue 9, finding 6): the limits
of a session's input, output, idleness, and of how many sessions there are.

- **Input**: a session's lines are handled one at a time, in order, at most
  ``line_rate`` a second after a burst of ``line_burst`` (a paste); faster
  lines wait their turn, and the user is told once to slow down.  The lines
  waiting may hold at most ``input_limit`` bytes: a session that sends more
  is closed, and what it had sent is dropped with it.
- **Output**: the session is a push producer of its transport.  While the
  client does not read (the transport has paused us), no further line is
  handled, and what the session still has to say -- other people's lines
  in the open wave -- is counted; past ``output_limit`` bytes the
  connection is aborted, its buffers freed.
- **Idleness**: ``login_timeout`` seconds to log in, then ``idle_timeout``
  without a line typed.
- **Sessions**: ``max_sessions`` in all, ``max_sessions_per_ip`` from one
  client address (an IPv6 client by its /64); one more is told so in one
  line and closed.

The defaults are the options' (``--console-...`` in :mod:`wavebox.config`).
"""

import collections
from dataclasses import dataclass, fields

from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.python import failure

from wavebox.config import options_by_key

log = Logger()

#: What a waiting line costs besides its bytes (the objects that hold it).
LINE_OVERHEAD = 100
#: Seconds a closing session may take to flush its last words before it is aborted.
CLOSE_GRACE = 10.0


def _default(key):
    return options_by_key()["console_" + key].default


@dataclass(frozen=True)
class ConsoleLimits:
    max_sessions: int = _default("max_sessions")
    max_sessions_per_ip: int = _default("max_sessions_per_ip")
    login_timeout: float = _default("login_timeout")
    idle_timeout: float = _default("idle_timeout")
    line_rate: float = _default("line_rate")
    line_burst: int = _default("line_burst")
    input_limit: int = _default("input_limit")
    output_limit: int = _default("output_limit")

    @classmethod
    def from_config(cls, config):
        return cls(**{f.name: getattr(config, "console_" + f.name) for f in fields(cls)})


class LineQueue:
    """
    A session's typed lines, waiting to be handled.  ``handle(line)`` is
    called for one line at a time, in order, and may return a Deferred; the
    next line waits for it.  ``throttled()`` is called when lines start
    waiting for the rate; ``overflowed()`` when a line would take the bytes
    waiting past ``limits.input_limit`` (the line is not kept).
    """

    def __init__(self, handle, clock, limits, throttled, overflowed):
        self.handle = handle
        self.clock = clock
        self.rate = limits.line_rate
        self.burst = limits.line_burst
        self.limit = limits.input_limit
        self.throttled = throttled
        self.overflowed = overflowed
        self.lines = collections.deque()
        self.waiting_bytes = 0
        self.tokens = float(self.burst)
        self.filled_at = clock.seconds()
        self.busy = False               # a line is being handled
        self.paused = False             # the client does not read what we say
        self.closed = False
        self._timer = None              # waiting for the rate
        self._told = False              # told to slow down since the queue was last empty
        self._pumping = False

    def __len__(self):
        return len(self.lines)

    def put(self, line, size):
        """Queue ``line`` (``size`` bytes as typed); False if it overflowed."""
        if self.closed:
            return False
        cost = size + LINE_OVERHEAD
        if self.waiting_bytes + cost > self.limit:
            self.overflowed()
            return False
        self.lines.append((line, cost))
        self.waiting_bytes += cost
        self._pump()
        return True

    def pause(self):
        self.paused = True

    def resume(self):
        self.paused = False
        self._pump()

    def close(self):
        """Drop every waiting line; nothing more is handled."""
        self.closed = True
        self.lines.clear()
        self.waiting_bytes = 0
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _take_token(self):
        now = self.clock.seconds()
        self.tokens = min(float(self.burst), self.tokens + (now - self.filled_at) * self.rate)
        self.filled_at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def _pump(self):
        # Lines whose handling ends at once are taken in this loop, not by
        # recursion, however many there are.
        if self._pumping:
            return
        self._pumping = True
        try:
            while (self.lines and not self.busy and not self.paused and not self.closed
                   and self._timer is None):
                if not self._take_token():
                    self._timer = self.clock.callLater((1 - self.tokens) / self.rate,
                                                       self._rate_allows)
                    if not self._told:
                        self._told = True
                        self.throttled()
                    return
                line, cost = self.lines.popleft()
                self.waiting_bytes -= cost
                if not self.lines:
                    self._told = False
                self.busy = True
                d = defer.maybeDeferred(self.handle, line)
                d.addBoth(self._handled)
        finally:
            self._pumping = False

    def _rate_allows(self):
        self._timer = None
        self._pump()

    def _handled(self, result):
        self.busy = False
        if isinstance(result, failure.Failure):
            log.failure("handling a console line broke", result)
        self._pump()


class SessionRefusal(protocol.Protocol):
    """Says in one line why there is no session, and hangs up."""

    def __init__(self, reason):
        self.reason = reason

    def connectionMade(self):
        self.transport.write(("error: %s; goodbye\r\n" % (self.reason,)).encode("utf-8"))
        self.transport.loseConnection()
