"""
What one console user may cost the others (issue 9, finding 6), with
``StringTransport`` and ``task.Clock``: bounded lines waiting, a line rate,
a session that does not read, timeouts, and the session caps.  Work is
counted (lines handled, deltas stored, bytes held), never timed.
"""

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python import failure
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import LogWatch, quick_hash
from tests.test_waveserver import ControlledStore
from wavebox import service
from wavebox.config import load
from wavebox.console.limits import ConsoleLimits
from wavebox.console.session import ConsoleFactory
from wavebox.server.waveserver import WaveServer
from wavebox.store.accounts import verify_password

LIMITS = ConsoleLimits(max_sessions=3, max_sessions_per_ip=2, login_timeout=60,
                       idle_timeout=600, line_rate=2, line_burst=5, input_limit=10 * 1024,
                       output_limit=4 * 1024)


class Client:
    """One session on a StringTransport, as a client at ``ip`` sees it."""

    def __init__(self, factory, ip):
        address = IPv4Address("TCP", ip, 40000)
        self.session = factory.buildProtocol(address)
        self.transport = StringTransport(peerAddress=address)
        self.session.makeConnection(self.transport)

    def send(self, *lines):
        self.session.dataReceived(b"".join(l.encode("utf-8") + b"\r\n" for l in lines))

    def lines(self):
        return self.transport.value().decode("utf-8").split("\r\n")[:-1]

    def count(self, text):
        return sum(1 for line in self.lines() if line.startswith(text))

    def hang_up(self):
        if self.session.transport is not None and not self.session.closed:
            self.session.connectionLost(failure.Failure(ConnectionError("gone")))


class LimitsTestCase(SynchronousTestCase):

    limits = LIMITS

    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.store = ControlledStore()
        self.store.hold = False
        for user in ("alice@a.test", "bob@a.test"):
            self.successResultOf(self.store.add_account(user, quick_hash("pw")))
        self.server = WaveServer(self.store, ["a.test"], clock=self.clock)
        self.factory = ConsoleFactory(
            self.server, ["a.test"], clock=self.clock, limits=self.limits,
            verify_password=lambda p, h: defer.succeed(verify_password(p, h)))
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.hang_up()

    def connect(self, ip="10.0.0.1"):
        c = Client(self.factory, ip)
        self.clients.append(c)
        return c

    def login(self, user, ip="10.0.0.1"):
        c = self.connect(ip)
        c.send("/login %s pw" % (user,))
        self.assertEqual(c.count("logged in as " + user), 1, c.lines())
        return c


class InputTests(LimitsTestCase):

    def test_a_flooder_is_closed_and_what_it_queued_is_dropped(self):
        alice = self.login("alice@a.test")
        alice.send("/new")
        self.assertEqual(alice.count("created wave"), 1)
        self.store.hold = True
        alice.send("the line being written")
        self.assertEqual(len(self.store.waiting), 1)
        line = "x" * 1000
        for _ in range(30):
            alice.send(line)
        self.assertEqual(alice.lines()[-1], "error: too much input waiting (over 10 KiB); "
                                            "slow down -- goodbye")
        self.assertTrue(alice.transport.disconnecting)
        lines = alice.session._lines
        self.assertEqual((len(lines), lines.waiting_bytes), (0, 0))
        alice.hang_up()
        # The write in flight ends; nothing the flooder left is handled after it.
        self.store.hold = False
        self.store.release()
        self.assertEqual(self.store.waiting, [])
        self.assertEqual(self.factory.sessions, set())
        self.assertEqual(self.server._participant_listeners, {})

    def test_a_wave_created_after_its_session_is_gone_is_not_watched(self):
        alice = self.login("alice@a.test")
        self.store.hold = True
        alice.send("/new")
        alice.hang_up()
        self.store.hold = False
        self.store.release()
        self.assertEqual(self.server._wavelet_listeners, {})
        self.assertEqual(self.server._participant_listeners, {})

    def test_a_login_that_ends_after_its_session_is_gone_subscribes_nothing(self):
        verifying = []

        def verify(password, stored):
            verifying.append(defer.Deferred())
            return verifying[-1]
        self.factory.login_guard.verify = verify
        c = self.connect()
        c.send("/login alice pw")
        c.hang_up()
        verifying[0].callback(True)
        self.assertIsNone(c.session.user)
        self.assertEqual(self.server._participant_listeners, {})

    def test_lines_over_the_rate_wait_their_turn_and_are_all_handled(self):
        c = self.login("alice@a.test")          # one of the burst of 5
        c.send(*["/help"] * 10)
        self.assertEqual(c.count("commands:"), 4)
        self.assertEqual(c.count("error: slow down: over 2 lines a second; "
                                 "your lines wait their turn"), 1)
        self.clock.advance(0.5)
        self.assertEqual(c.count("commands:"), 5)
        self.clock.advance(2.5)
        self.assertEqual(c.count("commands:"), 10)
        self.assertEqual(c.count("error: slow down"), 1)
        self.assertFalse(c.transport.disconnecting)

    def test_lines_cut_anywhere_are_put_together(self):
        c = self.connect()
        for byte in b"/login alice pw\r\n/he":
            c.session.dataReceived(bytes([byte]))
        c.session.dataReceived(b"lp\n")
        self.assertEqual(c.count("logged in as alice@a.test"), 1)
        self.assertEqual(c.count("commands:"), 1)


class OutputTests(LimitsTestCase):

    def test_a_session_that_does_not_read_is_closed_and_freed(self):
        alice = self.login("alice@a.test")
        bob = self.login("bob@a.test", ip="10.0.0.2")
        alice.send("/new", "/add bob@a.test")
        bob.send("/open 0")
        self.assertEqual(bob.count("--- wave"), 1)
        logs = LogWatch(self)
        # Bob's client stops reading: the transport pauses its producer.
        bob.session.pauseProducing()
        bob.send("/help")
        self.assertEqual(bob.count("commands:"), 0)          # not handled meanwhile
        for i in range(5):
            alice.send("line %d %s" % (i, "y" * 500))
            self.clock.advance(1)
        self.assertFalse(bob.transport.disconnecting)
        for i in range(5, 12):
            alice.send("line %d %s" % (i, "y" * 500))
            self.clock.advance(1)
        self.assertTrue(bob.transport.disconnected)            # aborted, not flushed
        self.assertEqual(logs.count("closed: over 4096 bytes unsent"), 1)
        bob.hang_up()
        self.assertNotIn(bob.session, self.factory.sessions)
        [name] = self.server._wavelet_listeners
        self.assertEqual(len(self.server._wavelet_listeners[name]), 1)     # alice's only
        alice.send("still here")
        self.assertEqual(alice.count("alice@a.test: still here"), 1)

    def test_a_client_that_reads_again_is_served_again(self):
        c = self.login("alice@a.test")
        c.session.pauseProducing()
        c.send("/help")
        self.assertEqual(c.count("commands:"), 0)
        c.session.resumeProducing()
        self.assertEqual(c.count("commands:"), 1)


class TimeoutTests(LimitsTestCase):

    def test_no_login_in_time_closes_the_session_whatever_is_typed(self):
        c = self.connect()
        for _ in range(5):
            self.clock.advance(11)
            c.send("/help")
        self.assertFalse(c.transport.disconnecting)
        self.clock.advance(5)
        self.assertEqual(c.lines()[-1], "error: no login in 60 s; goodbye")
        self.assertTrue(c.transport.disconnecting)

    def test_an_idle_session_is_closed_and_a_line_keeps_it_open(self):
        c = self.login("alice@a.test")
        self.clock.advance(599)
        c.send("/help")
        self.clock.advance(599)
        self.assertFalse(c.transport.disconnecting)
        self.clock.advance(1)
        self.assertEqual(c.lines()[-1], "error: idle for 600 s; goodbye")
        self.assertTrue(c.transport.disconnecting)

    def test_a_closing_client_that_does_not_take_its_last_words_is_aborted(self):
        c = self.connect()
        c.send("/quit")
        self.assertTrue(c.transport.disconnecting)
        self.assertFalse(c.transport.disconnected)
        self.clock.advance(10)
        self.assertTrue(c.transport.disconnected)


class SessionCapTests(LimitsTestCase):

    def refused(self, ip):
        c = Client(self.factory, ip)
        self.assertFalse(hasattr(c.session, "user"))
        return c.transport.value().decode("utf-8")

    def test_sessions_are_capped_per_address_and_in_all(self):
        logs = LogWatch(self)
        a1, a2 = self.connect("10.0.0.1"), self.connect("10.0.0.1")
        self.assertEqual(self.refused("10.0.0.1"),
                         "error: too many console sessions from your address (2); "
                         "try again later; goodbye\r\n")
        self.refused("10.0.0.1")
        self.connect("10.0.0.2")
        self.assertEqual(self.refused("10.0.0.3"),
                         "error: the console is full (3 sessions); try again later; goodbye\r\n")
        self.assertEqual(logs.count("console session refused"), 2)     # once for each
        a1.hang_up()
        self.assertEqual(self.connect("10.0.0.3").count("wavebox console for"), 1)
        a2.hang_up()
        self.assertEqual(self.connect("10.0.0.1").count("wavebox console for"), 1)


class ConfigTests(SynchronousTestCase):

    def test_the_options_set_the_limits_of_the_console_twistd_runs(self):
        config = load({"domain": ["a.test"], "data_dir": self.mktemp(), "console_port": "0",
                       "console_max_sessions": "7", "console_max_sessions_per_ip": "2",
                       "console_idle_timeout": "30", "console_login_timeout": "5",
                       "console_line_rate": "3.5", "console_line_burst": "9",
                       "console_input_limit": "64K", "console_output_limit": "1M",
                       "store": "memory:"})
        top = service.makeService(config)
        factory = top.getServiceNamed("console").factory
        self.assertEqual(factory.limits, ConsoleLimits(
            max_sessions=7, max_sessions_per_ip=2, login_timeout=5, idle_timeout=30,
            line_rate=3.5, line_burst=9, input_limit=64 * 1024, output_limit=1024 * 1024))
        self.assertIs(factory.login_guard, top.login_guard)

    def test_a_size_that_is_no_size_names_the_option(self):
        from wavebox.config import ConfigError
        e = self.assertRaises(ConfigError, load, {"domain": ["a.test"],
                                                  "console_input_limit": "lots"})
        self.assertIn("--console-input-limit: not a size in bytes", str(e))
