"""
The clock of everything that waits: the reactor in the server, a
``task.Clock`` in the tests that pass one.  Neutral, like ``retry``: every
layer above the model may import it.
"""


def default_clock(clock=None):
    """``clock``, or the reactor when none is given."""
    if clock is None:
        from twisted.internet import reactor as clock
    return clock
