"""
The one retry policy: how long to wait after a failure before trying again.

The federation outbox, the S2S routes, the start-up pings and the XEP-0114
component all retry something that failed (a peer, a stream, a server), and
all of them wait by the same rule, written here once: ``initial`` seconds
after the first failure in a row, ``factor`` times longer after each
further one, never more than ``maximum``; each wait shortened by up to
``jitter`` (a fraction), so that many retriers that failed together do not
come back in step; and, with ``attempts``, a point where trying stops.

A :class:`RetryPolicy` keeps no state: the caller counts its failures in a
row (and stores them, as the outbox does, to go on after a restart).  It is
also a ``retryPolicy`` for Twisted's ``ClientService`` (a callable from the
number of failed attempts to a delay).

Like ``certgen`` and ``certpath``, this module is neutral: the federation
layer and the XMPP layer both import it, and it imports nothing of theirs.
"""

import random as _random


class RetryPolicy:
    """
    Waits of ``initial``·``factor``^(n-1) seconds after the n-th failure in a
    row, capped at ``maximum``, shortened by up to ``jitter`` (a fraction in
    [0, 1)); ``attempts`` tries in all (None: for ever).  The shortening is
    kept below the growth (``factor``·(1 - ``jitter``) > 1), so that waits
    still grow until the cap.
    """

    def __init__(self, initial, maximum, factor=2.0, jitter=0.0, attempts=None,
                 random=_random.random):
        if not (initial > 0 and factor > 1 and maximum >= initial and 0 <= jitter < 1
                and factor * (1 - jitter) > 1 and (attempts is None or attempts >= 1)):
            raise ValueError("bad retry policy: initial=%r maximum=%r factor=%r jitter=%r "
                             "attempts=%r" % (initial, maximum, factor, jitter, attempts))
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.factor = float(factor)
        self.jitter = float(jitter)
        self.attempts = attempts
        self._random = random

    def delay(self, failures):
        """Seconds to wait after ``failures`` failures in a row (none: no wait)."""
        if failures <= 0:
            return 0.0
        # The exponent is bounded: past the cap the power no longer matters.
        base = min(self.maximum, self.initial * self.factor ** min(failures - 1, 64))
        if self.jitter:
            base *= 1.0 - self.jitter * self._random()
        return base

    __call__ = delay        # ClientService's retryPolicy(failedAttempts)

    def exhausted(self, failures):
        """Whether ``failures`` tries are all the policy allows."""
        return self.attempts is not None and failures >= self.attempts

    def __repr__(self):
        return ("RetryPolicy(initial=%g, maximum=%g, factor=%g, jitter=%g, attempts=%r)"
                % (self.initial, self.maximum, self.factor, self.jitter, self.attempts))
