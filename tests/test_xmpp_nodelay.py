"""
S2S streams switch Nagle's algorithm off: federation traffic is small
stanzas that answer one another, and Nagle plus the peer's delayed ACK held
them back by up to 40 ms each (benchmarks/bench_federation.py: 110 -> 370
deltas/s).
"""

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from wavebox.xmpp.streams import S2SStream


class RecordingTransport(StringTransport):
    no_delay = None

    def setTcpNoDelay(self, enabled):
        self.no_delay = enabled


class Session:
    def __init__(self):
        self.made = False

    def associateWithStream(self, xs):
        self.xmlstream = xs

    def connectionMade(self):
        self.made = True


class NoDelayTests(SynchronousTestCase):

    def test_a_new_stream_sets_tcp_no_delay_and_goes_on(self):
        session = Session()
        stream = S2SStream(session)
        transport = RecordingTransport()
        stream.makeConnection(transport)
        self.assertIs(transport.no_delay, True)
        self.assertTrue(session.made)

    def test_a_transport_without_tcp_options_is_fine(self):
        session = Session()
        stream = S2SStream(session)
        stream.makeConnection(StringTransport())
        self.assertTrue(session.made)
