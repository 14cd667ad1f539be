"""
Every TCP port wavebox listens on (S2S, direct TLS, the console, the web
client, the metrics page) is made here, so that all of them meet a crowd
the same way:

- **A long backlog.**  Twisted's default of 50 is what the kernel holds for
  us between two accepts.  Past it Linux drops the client's last handshake
  packet while the client already counts itself connected: two hundred
  people reconnecting to the console after a restart then waited minutes
  for a banner (``bench_capacity.py`` at N = 200 saw 110 of 210 sessions
  never greeted, and ``nstat``'s ``TcpExtListenOverflows`` counting).  The
  kernel caps ``BACKLOG`` at ``net.core.somaxconn``.
- **A few accepts a turn.**  Twisted's port accepts up to a hundred and more
  connections each time it is readable, each one costing a protocol's set-up
  in that same turn; ``ACCEPTS_PER_TURN`` keeps a flood of strangers'
  connections waiting in the kernel, not in the turn the other streams need.
"""

from twisted.internet import tcp

#: New connections accepted each time the reactor turns (Twisted's own grows to hundreds).
ACCEPTS_PER_TURN = 10
#: Connections the kernel may hold for us meanwhile (it caps this at somaxconn).
BACKLOG = 511


class _Port(tcp.Port):
    """A TCP port that accepts at most ``ACCEPTS_PER_TURN`` connections a turn."""

    _accepts = ACCEPTS_PER_TURN

    @property
    def numberAccepts(self):
        return self._accepts

    @numberAccepts.setter
    def numberAccepts(self, value):
        self._accepts = max(1, min(value, ACCEPTS_PER_TURN))


def listen_tcp(reactor, port, factory, interface=""):
    """``reactor.listenTCP`` with the backlog and the accepts of the module docstring."""
    listening = _Port(port, factory, BACKLOG, interface, reactor)
    listening.startListening()
    return listening
