"""
The console, driven over TCP on loopback as telnet would: login, commands,
errors that leave the session running, live updates between sessions, and
the notice of being added to a wave.
"""

import re

from twisted.internet import defer, protocol, reactor, task
from twisted.trial import unittest

from tests.helpers import connect_console, console_login, quick_hash
from zope.interface import implementer

from wavebox.console import view
from wavebox.console.session import ConsoleFactory
from wavebox.model.ids import ParticipantId
from wavebox.server.interfaces import DeliveryProblem, IDeliveryStatus
from wavebox.server.login import LoginGuard
from wavebox.server.modelbridge import parse_applied_delta
from wavebox.server.waveserver import WaveServer
from wavebox.store.accounts import verify_password
from wavebox.store.memory import MemoryStore


class ConsoleTestCase(unittest.TestCase):

    domains = ["a.test", "b.test"]

    def setUp(self):
        self.store = MemoryStore()
        for user in ("alice@a.test", "bob@a.test", "carol@b.test"):
            self.successResultOf(self.store.add_account(user, quick_hash("pw-" + user[:3])))
        # Application timestamps come from this clock (inbox order is by them).
        self.clock = task.Clock()
        self.server = WaveServer(self.store, self.domains, clock=self.clock)
        self.factory = ConsoleFactory(self.server, self.domains,
                                      verify_password=lambda p, h: defer.succeed(
                                          verify_password(p, h)))
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)

    def connect(self):
        return connect_console(self, self.port.getHost().port)

    def login(self, user="alice"):
        return console_login(self, self.port.getHost().port, user, "pw-" + user[:3])

    @defer.inlineCallbacks
    def command(self, client, line, pattern):
        client.send(line)
        match = yield client.expect(pattern)
        return match


class LoginTests(ConsoleTestCase):

    @defer.inlineCallbacks
    def test_nothing_but_login_works_before_login(self):
        c = yield self.connect()
        yield self.command(c, "/list", "^error: log in first")
        yield self.command(c, "hello there", "^error: log in first")
        yield self.command(c, "/new", "^error: log in first")
        yield self.command(c, "/help", "/login USER PASSWORD")

    @defer.inlineCallbacks
    def test_login_without_domain_means_the_first_domain(self):
        c = yield self.connect()
        yield self.command(c, "/login alice pw-ali", "^logged in as alice@a.test: 0 wave")

    @defer.inlineCallbacks
    def test_login_with_domain(self):
        c = yield self.connect()
        yield self.command(c, "/login carol@b.test pw-car", "^logged in as carol@b.test")

    @defer.inlineCallbacks
    def test_wrong_password_is_refused_and_the_session_goes_on(self):
        c = yield self.connect()
        yield self.command(c, "/login alice nope", "^error: login failed")
        yield self.command(c, "/login nobody pw", "^error: login failed")
        yield self.command(c, "/login alice pw-ali", "^logged in as alice@a.test")

    @defer.inlineCallbacks
    def test_three_failed_logins_close_the_session(self):
        c = yield self.connect()
        for _ in range(3):
            c.send("/login alice nope")
        yield c.closed
        self.assertIn("error: login failed; too many tries, goodbye", c.lines)

    @defer.inlineCallbacks
    def test_guessing_backs_off_and_the_back_off_ends(self):
        """Issue 9, finding 5: the console uses the server's login guard and says when."""
        self.factory.login_guard = LoginGuard(
            self.server, clock=self.clock, account_failures=2,
            verify=lambda p, h: defer.succeed(verify_password(p, h)))
        c = yield self.connect()
        for _ in range(2):
            yield self.command(c, "/login alice nope",
                               "^error: login failed: wrong user or password$")
        c.send("/login alice nope")
        yield c.expect("^error: login failed: wrong user or password; "
                       "the next try must wait 1 s$")
        yield c.closed                      # the third failure in a session ends it
        c = yield self.connect()
        yield self.command(c, "/login alice pw-ali",
                           "^error: login refused: too many failed logins; try again in 1 s$")
        self.clock.advance(1)
        yield self.command(c, "/login alice pw-ali", "^logged in as alice@a.test")

    @defer.inlineCallbacks
    def test_login_needs_user_and_password(self):
        c = yield self.connect()
        yield self.command(c, "/login alice", "^error: usage: /login USER PASSWORD")

    @defer.inlineCallbacks
    def test_quit_says_bye_and_closes(self):
        c = yield self.connect()
        c.send("/quit")
        yield c.closed
        self.assertEqual(c.lines[-1], "bye")


class CommandErrorTests(ConsoleTestCase):

    @defer.inlineCallbacks
    def test_unknown_command_is_one_error_line(self):
        c = yield self.login()
        mark = len(c.lines)
        yield self.command(c, "/frobnicate now", "^error: unknown command /frobnicate")
        yield self.command(c, "/help", "^commands:")
        self.assertEqual(c.since(mark)[0], "error: unknown command /frobnicate; "
                                           "/help lists the commands")

    @defer.inlineCallbacks
    def test_bad_arguments_are_error_lines(self):
        c = yield self.login()
        yield self.command(c, "/open", "^error: usage: /open N")
        yield self.command(c, "/open x", "^error: /open needs a wave number")
        yield self.command(c, "/open 3", "^error: no wave 3 in your inbox")
        yield self.command(c, "/add bob@a.test", "^error: no wave is open")
        yield self.command(c, "/view fancy", "^error: usage: /view normal")
        yield self.command(c, "/new now", "^error: usage: /new")
        yield self.command(c, "/new", "^created wave ")
        yield self.command(c, "/add not-an-address", "^error: /add: ")
        yield self.command(c, "/add a@b c@d", "^error: usage: /add USER@DOMAIN")
        yield self.command(c, "/remove", "^error: usage: /remove USER@DOMAIN")
        yield self.command(c, "/remove bob@a.test",
                           "^error: bob@a.test is not a participant of this wave$")
        yield self.command(c, "/add alice@a.test",
                           "^error: alice@a.test is already a participant$")
        yield self.command(c, "still here", "^alice@a.test: still here$")

    @defer.inlineCallbacks
    def test_add_refuses_addresses_that_are_not_valid_addresses(self):
        """Issue 9, finding 7: each is one error line saying why; nobody is added."""
        c = yield self.login()
        yield self.command(c, "/new", "^created wave ")
        cases = [("@b.test", "has no user name"),
                 ("<x>@a.test", "the user name has '<' at index 0"),
                 ("\u202ebob@a.test", "bidi control character U+202E"),
                 ("x" * 5000 + "@a.test", "the user name is longer than 64 bytes"),
                 ("bob@127.0.0.1", "an IP address is not a domain"),
                 ("bob@xn--zz.test", "'xn--zz' is not a valid A-label")]
        for address, reason in cases:
            match = yield self.command(c, "/add " + address, "^error: /add: ")
            self.assertIn(reason, match.string)
        c.send("/view normal")
        header = yield c.expect("^--- wave ")
        self.assertIn("participants: alice@a.test ---", header.string)

    @defer.inlineCallbacks
    def test_text_without_an_open_wave_is_an_error(self):
        c = yield self.login()
        yield self.command(c, "hello", "^error: no wave is open")

    @defer.inlineCallbacks
    def test_bad_utf8_is_an_error_line_not_a_crash(self):
        c = yield self.login()
        c.transport.write(b"caf\xe9 \xff\r\n")
        yield c.expect("^error: the line is not valid UTF-8")
        yield self.command(c, "/list", "^your inbox is empty")

    @defer.inlineCallbacks
    def test_over_long_line_is_an_error_and_the_next_line_works(self):
        c = yield self.login()
        c.transport.write(b"x" * 20000 + b"\r\n/list\r\n")
        yield c.expect("^error: line too long")
        yield c.expect("^your inbox is empty")

    @defer.inlineCallbacks
    def test_lf_only_lines_work(self):
        c = yield self.login()
        c.transport.write(b"/list\n")
        yield c.expect("^your inbox is empty")


class WaveTests(ConsoleTestCase):

    @defer.inlineCallbacks
    def test_new_wave_opens_and_lines_come_back_as_blips(self):
        c = yield self.login()
        yield self.command(c, "/new", r"^created wave a\.test/w\+")
        yield c.expect(r"^--- wave a\.test/w\+\S+, version 2 .*participants: alice@a.test ---")
        yield self.command(c, "hello, wave", "^alice@a.test: hello, wave$")
        yield self.command(c, "ünïcödé ✓", "^alice@a.test: ünïcödé ✓$")

    @defer.inlineCallbacks
    def test_list_shows_participants_unread_mark_and_newest_first(self):
        c = yield self.login()
        yield self.command(c, "/new", "^created wave (.*)")
        yield self.command(c, "first wave", "^alice@a.test: first wave")
        self.clock.advance(1)
        yield self.command(c, "/new", "^created wave (.*)")
        yield self.command(c, "second wave", "^alice@a.test: second wave")
        yield self.command(c, "/add bob@a.test", r"^\* alice@a.test added bob@a.test")
        c.send("/list")
        first = yield c.expect(r"^  0 \*> \S+  alice@a.test, bob@a.test  \"second wave\"$")
        second = yield c.expect(r"^  1 \*  \S+  alice@a.test  \"first wave\"$")
        self.assertTrue(first and second)
        yield self.command(c, "/read", "^marked 2 wave")
        yield self.command(c, "/list", r"^  0  > ")
        yield self.command(c, "/read", "^marked 0 wave")

    @defer.inlineCallbacks
    def test_open_shows_the_wave_and_view_xml_shows_the_documents(self):
        c = yield self.login()
        yield self.command(c, "/new", "^created wave")
        yield self.command(c, "one", "^alice@a.test: one")
        yield self.command(c, "two", "^alice@a.test: two")
        yield self.command(c, "/list", "^  0")
        c.send("/open 0")
        yield c.expect("^--- wave ")
        yield c.expect("^alice@a.test: one$")
        yield c.expect("^alice@a.test: two$")
        c.send("/view xml")
        yield c.expect("^--- wave ")
        yield c.expect(r"<conversation>.*<blip id=\"b\+\S+\">")
        yield c.expect("two")
        yield self.command(c, "three", "three")
        c.send("/view normal")
        yield c.expect("^--- wave ")
        yield c.expect("^alice@a.test: one$")

    @defer.inlineCallbacks
    def test_added_user_is_told_at_once_and_sees_live_changes(self):
        alice = yield self.login("alice")
        bob = yield self.login("bob")
        yield self.command(alice, "/new", "^created wave (.*)")
        yield self.command(alice, "hi bob", "^alice@a.test: hi bob")
        alice.send("/add bob@a.test")
        notice = yield bob.expect(r"^\* alice@a.test added you to wave (\S+); /list shows it")
        yield alice.expect(r"^\* alice@a.test added bob@a.test")
        bob.send("/list")
        yield bob.expect(r"^  0 \*  %s  alice@a.test, bob@a.test  \"hi bob\"$"
                         % re.escape(notice.group(1)))
        bob.send("/open 0")
        yield bob.expect("^alice@a.test: hi bob$")
        yield self.command(alice, "are you there?", "^alice@a.test: are you there")
        yield bob.expect("^alice@a.test: are you there\\?$")
        bob.send("yes")
        yield bob.expect("^bob@a.test: yes$")
        yield alice.expect("^bob@a.test: yes$")
        alice.send("/remove bob@a.test")
        mark = len(bob.lines)
        yield bob.expect(r"^\* alice@a.test removed you$")
        yield bob.expect(r"^\(you are no longer a participant; the wave is closed\)$")
        yield alice.expect(r"^\* alice@a.test removed bob@a.test$")
        yield self.command(bob, "one more", "^error: no wave is open")
        # Told once: not again as for a wave he was not looking at.
        self.assertEqual([line for line in bob.since(mark) if "removed you" in line],
                         ["* alice@a.test removed you"])
        mark = len(bob.lines)
        yield self.command(alice, "secret now", "^alice@a.test: secret now")
        yield self.command(bob, "/list", "^your inbox is empty")
        self.assertNotIn("alice@a.test: secret now", bob.since(mark))

    @defer.inlineCallbacks
    def test_removed_user_not_looking_at_the_wave_is_told(self):
        alice = yield self.login("alice")
        bob = yield self.login("bob")
        yield self.command(alice, "/new", "^created wave")
        alice.send("/add bob@a.test")
        yield bob.expect(r"added you to wave")
        alice.send("/remove bob@a.test")
        yield bob.expect(r"^\* alice@a.test removed you from wave ")

    @defer.inlineCallbacks
    def test_two_sessions_typing_at_the_same_version_converge(self):
        from tests.test_waveserver import ControlledStore
        store = ControlledStore()
        store.hold = False
        for user in ("alice@a.test", "bob@a.test"):
            self.successResultOf(store.add_account(user, quick_hash("pw-" + user[:3])))
        self.server.store = store
        alice = yield self.login("alice")
        bob = yield self.login("bob")
        yield self.command(alice, "/new", "^created wave")
        yield self.command(alice, "/add bob@a.test", "added bob")
        yield self.command(bob, "/open 0", "^--- wave .*version 3 ")
        [container] = self.server._containers.values()
        store.hold = True
        alice.send("from alice")
        yield _until(lambda: len(store.waiting) == 1)
        bob.send("from bob")
        # Bob's line reaches the server while alice's write is in flight, so
        # it is made against the same version as hers, and transformed
        # against hers while hers is still being written.
        yield _until(lambda: len(store.waiting) == 2)
        store.hold = False
        store.release()
        store.release()
        for client in (alice, bob):
            yield client.expect("^alice@a.test: from alice$")
            yield client.expect("^bob@a.test: from bob$")
        alice.send("/view normal")
        bob.send("/view normal")
        a = yield alice.expect("^--- wave .*version (\\d+) \\(hash (\\w+)\\)")
        b = yield bob.expect("^--- wave .*version (\\d+) \\(hash (\\w+)\\)")
        self.assertEqual(a.groups(), b.groups())
        a_lines = yield _collect(alice, 2)
        b_lines = yield _collect(bob, 2)
        self.assertEqual(a_lines, b_lines)
        self.assertEqual(sorted(a_lines), ["alice@a.test: from alice", "bob@a.test: from bob"])
        stored = self.successResultOf(store.deltas(container.uri))
        applied = [parse_applied_delta(s.applied_delta) for s in stored[-2:]]
        self.assertEqual([a.delta.hashed_version.version for a in applied], [3, 3])
        self.assertEqual([a.applied_at.version for a in applied], [3, 5])
        self.assertEqual(a.group(1), str(applied[-1].resulting_version.version))


def _tick():
    d = defer.Deferred()
    reactor.callLater(0.01, d.callback, None)
    return d


@defer.inlineCallbacks
def _until(predicate, tries=500):
    for _ in range(tries):
        if predicate():
            return
        yield _tick()
    raise AssertionError("condition never became true")


@defer.inlineCallbacks
def _collect(client, n):
    lines = []
    for _ in range(n):
        m = yield client.expect("^(alice|bob)@a.test: ")
        lines.append(m.string)
    return lines


class ClientProgramTests(ConsoleTestCase):
    """``wavebox console USER`` with its stdin piped, against this test's console."""

    @defer.inlineCallbacks
    def test_client_logs_in_and_relays_lines_both_ways(self):
        import os
        import sys

        import wavebox
        root = os.path.dirname(os.path.dirname(os.path.abspath(wavebox.__file__)))
        out = _Collect()
        args = [sys.executable, "-m", "wavebox.cli", "console", "alice",
                "--host", "127.0.0.1", "--port", str(self.port.getHost().port)]
        env = dict(os.environ, PYTHONPATH=root)
        proc = reactor.spawnProcess(out, sys.executable, args, env=env)
        self.addCleanup(lambda: out.running and proc.signalProcess("KILL") or out.ended)
        proc.write(b"pw-ali\n/new\nhello from the client\n/quit\n")
        code = yield out.ended
        text = out.data.decode("utf-8")
        self.assertEqual(code, 0, text)
        for expected in ("logged in as alice@a.test", "created wave a.test/w+",
                         "alice@a.test: hello from the client", "bye"):
            self.assertIn(expected, text)
        # It has logged in for us: no advice to type /login.
        self.assertIn("wavebox console for a.test, b.test.\n", text)
        self.assertNotIn("/login", text)

    @defer.inlineCallbacks
    def test_client_with_a_wrong_password_says_so_and_exits_1(self):
        code, text = yield self.run_client(b"wrong\n/list\n")
        self.assertEqual(code, 1, text)
        self.assertEqual(text.splitlines()[-1],
                         "wavebox console: login failed: wrong user or password")
        self.assertNotIn("log in first", text)

    @defer.inlineCallbacks
    def test_client_says_when_the_server_closes_the_connection(self):
        out, proc = self.spawn_client()
        proc.write(b"pw-ali\n")
        while b"logged in as" not in out.data:
            yield task.deferLater(reactor, 0.05, lambda: None)
        for session in list(self.factory.sessions):
            session.transport.loseConnection()
        while b"closed the connection" not in out.data:
            yield task.deferLater(reactor, 0.05, lambda: None)
        proc.closeStdin()
        code = yield out.ended
        text = out.data.decode("utf-8")
        self.assertEqual(text.splitlines()[-1],
                         "wavebox console: the server closed the connection")
        self.assertEqual(code, 1, text)

    @defer.inlineCallbacks
    def test_client_leaving_on_end_of_input_says_nothing_of_the_server(self):
        code, text = yield self.run_client(b"pw-ali\n/list\n")
        self.assertEqual(code, 0, text)
        self.assertNotIn("closed the connection", text)

    @defer.inlineCallbacks
    def test_ctrl_d_on_a_terminal_leaves_without_a_traceback(self):
        out, proc = self.spawn_client(usePTY=True)
        yield self.wait_for(out, b"Password:")
        proc.write(b"pw-ali\n")
        yield self.wait_for(out, b"logged in as")
        proc.write(b"\x04")                     # Ctrl-D at the prompt
        code = yield out.ended
        text = out.data.decode("utf-8", "replace")
        self.assertNotIn("Traceback", text)
        self.assertNotIn("closed the connection", text)
        self.assertEqual(code, 0, text)

    @defer.inlineCallbacks
    def test_quit_on_a_terminal_says_bye_without_a_prompt_after_it(self):
        out, proc = self.spawn_client(usePTY=True)
        yield self.wait_for(out, b"Password:")
        proc.write(b"pw-ali\n")
        yield self.wait_for(out, b"logged in as")
        proc.write(b"/quit\n")
        code = yield out.ended
        text = out.data.decode("utf-8", "replace")
        self.assertEqual(code, 0, text)
        self.assertNotIn("Traceback", text)
        self.assertTrue(text.rstrip("\r\n").endswith("bye"), repr(text[-40:]))

    @defer.inlineCallbacks
    def test_ctrl_c_at_the_password_prompt_cancels_without_a_traceback(self):
        out, proc = self.spawn_client(usePTY=True)
        yield self.wait_for(out, b"Password:")
        proc.write(b"\x03")                     # Ctrl-C
        code = yield out.ended
        text = out.data.decode("utf-8", "replace")
        self.assertNotIn("Traceback", text)
        self.assertEqual(text.splitlines()[-1], "wavebox console: cancelled")
        self.assertEqual(code, 1, text)

    @defer.inlineCallbacks
    def wait_for(self, out, marker):
        for _ in range(200):
            if marker in out.data:
                return
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.fail("no %r in %r" % (marker, out.data))

    def spawn_client(self, usePTY=False):
        import os
        import sys

        import wavebox
        root = os.path.dirname(os.path.dirname(os.path.abspath(wavebox.__file__)))
        out = _Collect()
        args = [sys.executable, "-m", "wavebox.cli", "console", "alice",
                "--host", "127.0.0.1", "--port", str(self.port.getHost().port)]
        env = dict(os.environ, PYTHONPATH=root)
        proc = reactor.spawnProcess(out, sys.executable, args, env=env, usePTY=usePTY)
        self.addCleanup(lambda: out.running and proc.signalProcess("KILL") or out.ended)
        return out, proc

    @defer.inlineCallbacks
    def run_client(self, stdin):
        import os
        import sys

        import wavebox
        root = os.path.dirname(os.path.dirname(os.path.abspath(wavebox.__file__)))
        out = _Collect()
        args = [sys.executable, "-m", "wavebox.cli", "console", "alice",
                "--host", "127.0.0.1", "--port", str(self.port.getHost().port)]
        env = dict(os.environ, PYTHONPATH=root)
        proc = reactor.spawnProcess(out, sys.executable, args, env=env)
        self.addCleanup(lambda: out.running and proc.signalProcess("KILL") or out.ended)
        proc.write(stdin)
        proc.closeStdin()
        code = yield out.ended
        return code, out.data.decode("utf-8")


class _Collect(protocol.ProcessProtocol):
    def __init__(self):
        self.data = b""
        self.ended = defer.Deferred()
        self.running = True

    def outReceived(self, data):
        self.data += data

    errReceived = outReceived

    def processEnded(self, reason):
        self.running = False
        self.ended.callback(reason.value.exitCode)


@implementer(IDeliveryStatus)
class FakeDelivery:
    """What the federation layer would say: told per domain by the test."""

    def __init__(self):
        self.problems = {}
        self.unresolvable = {}
        self.probed = []

    def problem(self, domain):
        return self.problems.get(domain)

    def probe(self, domain):
        self.probed.append(domain)
        return defer.succeed(self.unresolvable.get(domain))


class DeliveryTests(ConsoleTestCase):
    """Issue 13 item 3: people see what does not arrive, and are told before it happens."""

    def setUp(self):
        ConsoleTestCase.setUp(self)
        self.delivery = FakeDelivery()
        self.server.delivery = self.delivery

    @defer.inlineCallbacks
    def wave_with(self, client, *participants):
        yield self.command(client, "/new", "^created wave ")
        for p in participants:
            yield self.command(client, "/add " + p, re.escape(p))

    @defer.inlineCallbacks
    def test_a_participant_whose_server_cannot_be_reached_is_pending_in_open_and_list(self):
        c = yield self.login()
        yield self.wave_with(c, "dave@other.test")
        self.delivery.problems["other.test"] = DeliveryProblem(
            "other.test", "no wave service found: nothing at other.test", 1700000000000)
        label = ("dave@other.test (pending since 2023-11-14 22:13 UTC: no wave service "
                 "found: nothing at other.test)")
        yield self.command(c, "/list", re.escape(label))
        c.send("/open 0")
        header = yield c.expect("^--- wave ")
        self.assertIn("participants: alice@a.test, " + label + " ---", header.string)

    @defer.inlineCallbacks
    def test_a_given_up_destination_says_so(self):
        c = yield self.login()
        yield self.wave_with(c, "dave@other.test")
        self.delivery.problems["other.test"] = DeliveryProblem(
            "other.test", "given up after 7.0 day(s) unreachable: timeout", 1700000000000,
            given_up=True)
        yield self.command(c, "/list", re.escape(
            "dave@other.test (not delivered, given up: given up after 7.0 day(s) "
            "unreachable: timeout)"))

    @defer.inlineCallbacks
    def test_adding_a_local_user_without_an_account_is_refused(self):
        c = yield self.login()
        yield self.command(c, "/new", "^created wave ")
        yield self.command(c, "/add ghost@a.test",
                           "^error: ghost@a.test has no account on this server$")
        [info] = yield self.server.inbox(ParticipantId("alice@a.test"))
        state = self.server.current_state(view.name_from_uri(info.name))
        self.assertNotIn(ParticipantId("ghost@a.test"), state.participants)
        yield self.command(c, "/add bob@a.test", "bob@a.test")

    @defer.inlineCallbacks
    def test_adding_someone_on_a_domain_without_a_wave_service_is_done_with_a_warning(self):
        self.delivery.unresolvable["nonexistent.invalid"] = "neither nonexistent.invalid " \
            "nor wave.nonexistent.invalid resolves"
        c = yield self.login()
        yield self.command(c, "/new", "^created wave ")
        c.send("/add x@nonexistent.invalid")
        warning = yield c.expect("^warning: ")
        self.assertEqual(warning.string, "warning: nonexistent.invalid has no wave service we "
                         "can reach now (neither nonexistent.invalid nor "
                         "wave.nonexistent.invalid resolves); x@nonexistent.invalid sees "
                         "nothing of this wave until it does, and what they miss waits in "
                         "our outbox")
        self.assertIn("* alice@a.test added x@nonexistent.invalid", c.lines)
        self.assertEqual(self.delivery.probed, ["nonexistent.invalid"])
        # A domain that has one: no warning.
        yield self.command(c, "/add y@other.test", "y@other.test")
        yield self.command(c, "/help", "^commands:")
        self.assertEqual([l for l in c.lines if l.startswith("warning:")], [warning.string])
