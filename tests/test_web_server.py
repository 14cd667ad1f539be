"""
The web client's server side, in this process over real loopback sockets:
its login and cookie, the bounds of issue 9 (sessions, messages waiting,
what a socket may send), the WebSocket's checks of Origin and session, and
the page's editor functions under Node.  The whole client in a browser is
tests/test_web_browser.py.
"""

import json
import os
import shutil
import subprocess
import urllib.parse

from autobahn.twisted.websocket import (
    WebSocketClientFactory, WebSocketClientProtocol, connectWS)
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from tests.helpers import quick_hash
from wavebox.model.delta import HashedVersion, WaveletDelta
from wavebox.model.ids import IdGenerator, ParticipantId
from wavebox.model.conversation import create_wave_ops
from wavebox.server.login import LoginGuard
from wavebox.server.waveserver import WaveServer
from wavebox.store import accounts
from wavebox.store.memory import MemoryStore
from wavebox.web import live
from wavebox.web.site import WebClient

PASSWORD = "secret"
ALICE = ParticipantId("alice@a.test")


@implementer(IBodyProducer)
class _Body:
    """A request body for twisted.web.client.Agent."""

    def __init__(self, data):
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer):
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self):
        pass

    def stopProducing(self):
        pass


class Socket(WebSocketClientProtocol):
    def onOpen(self):
        self.messages = []
        self.waiters = []
        self.factory.opened.callback(self)

    def onMessage(self, payload, is_binary):
        message = json.loads(payload)
        self.messages.append(message)
        for kind, d in list(self.waiters):
            if message.get("type") == kind:
                self.waiters.remove((kind, d))
                d.callback(message)

    def onClose(self, clean, code, reason):
        self.factory.closed_with = (code, reason)
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionRefusedError(reason))
        self.factory.closed.callback((code, reason))

    def ask(self, message):
        self.sendMessage(json.dumps(message).encode())

    def wait_for(self, kind):
        for m in self.messages:
            if m.get("type") == kind:
                return defer.succeed(m)
        d = defer.Deferred()
        self.waiters.append((kind, d))
        return d.addTimeout(10, reactor)


class WebServerTests(unittest.TestCase):

    timeout = 30

    @defer.inlineCallbacks
    def setUp(self):
        self.store = MemoryStore()
        yield self.store.add_account("alice@a.test", quick_hash(PASSWORD))
        self.server = WaveServer(self.store, ["a.test"])
        guard = LoginGuard(self.server,
                           verify=lambda p, h: defer.succeed(accounts.verify_password(p, h)))
        self.web = WebClient(self.server, guard, max_sessions=3, queue_limit=5)
        self.port = reactor.listenTCP(0, self.web.site, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.base = "http://127.0.0.1:%d" % (self.port.getHost().port,)
        self.agent = Agent(reactor)

    @defer.inlineCallbacks
    def post(self, path, fields, origin=None):
        headers = {b"Content-Type": [b"application/x-www-form-urlencoded"]}
        if origin is not None:
            headers[b"Origin"] = [origin.encode()]
        response = yield self.agent.request(
            b"POST", (self.base + path).encode(), Headers(headers),
            _Body(urllib.parse.urlencode(fields).encode()))
        body = yield readBody(response)
        return response, body.decode("utf-8")

    @defer.inlineCallbacks
    def login(self, password=PASSWORD):
        response, body = yield self.post("/login", {"user": "alice", "password": password},
                                         origin=self.base)
        cookies = response.headers.getRawHeaders(b"set-cookie") or []
        return response, body, cookies

    @defer.inlineCallbacks
    def socket(self, cookie, origin=None):
        factory = WebSocketClientFactory(
            "ws://127.0.0.1:%d/ws" % (self.port.getHost().port,),
            origin=origin if origin is not None else self.base,
            headers={"Cookie": cookie} if cookie else {})
        factory.protocol = Socket
        factory.opened, factory.closed = defer.Deferred(), defer.Deferred()
        connector = connectWS(factory)
        self.addCleanup(connector.disconnect)
        s = yield factory.opened.addTimeout(10, reactor)
        yield s.wait_for("hello")
        return s

    @defer.inlineCallbacks
    def session_cookie(self):
        response, _, [cookie] = yield self.login()
        self.assertEqual(response.code, 303)
        return cookie.decode().split(";")[0]

    @defer.inlineCallbacks
    def test_login_sets_an_http_only_same_site_strict_cookie(self):
        response, _, [cookie] = yield self.login()
        self.assertEqual(response.code, 303)
        self.assertEqual(response.headers.getRawHeaders(b"location"), [b"/"])
        self.assertRegex(cookie.decode(), r"^wavebox_session=[\w-]{43}; Path=/; HttpOnly; "
                                          r"SameSite=Strict$")

    @defer.inlineCallbacks
    def test_a_wrong_password_shows_the_form_with_the_guards_line_and_no_cookie(self):
        response, body, cookies = yield self.login("wrong")
        self.assertEqual((response.code, cookies), (401, []))
        self.assertIn('role="alert">login failed: wrong user or password</p>', body)

    @defer.inlineCallbacks
    def test_a_login_posted_by_another_sites_page_is_refused(self):
        response, body = yield self.post("/login", {"user": "alice", "password": PASSWORD},
                                         origin="http://evil.test")
        self.assertEqual(response.code, 403)
        self.assertEqual(len(self.web.sessions), 0)

    @defer.inlineCallbacks
    def test_sessions_are_capped_and_a_login_beyond_is_told_so(self):
        for _ in range(3):
            yield self.session_cookie()
        response, body, cookies = yield self.login()
        self.assertEqual((response.code, cookies), (503, []))
        self.assertIn("too many web sessions open; try again later", body)
        self.assertEqual(len(self.web.sessions), 3)

    @defer.inlineCallbacks
    def test_the_websocket_needs_a_session_and_our_origin(self):
        cookie = yield self.session_cookie()
        with self.assertRaises(ConnectionRefusedError):
            yield self.socket(None)
        with self.assertRaises(ConnectionRefusedError):
            yield self.socket(cookie, origin="http://evil.test")
        with self.assertRaises(ConnectionRefusedError):
            yield self.socket("wavebox_session=forged")
        s = yield self.socket(cookie)
        hello = yield s.wait_for("hello")
        self.assertEqual(hello["user"], "alice@a.test")

    @defer.inlineCallbacks
    def test_logging_out_closes_the_sessions_sockets_and_its_cookie_stops_working(self):
        cookie = yield self.session_cookie()
        s = yield self.socket(cookie)
        agent_headers = Headers({b"Cookie": [cookie.encode()], b"Origin": [self.base.encode()]})
        response = yield self.agent.request(b"POST", (self.base + "/logout").encode(),
                                            agent_headers, _Body(b""))
        yield readBody(response)
        code, _ = yield s.factory.closed
        self.assertEqual(code, live.CLOSE_LOGGED_OUT)
        self.assertEqual([m["type"] for m in s.messages][-1], "logged_out")
        with self.assertRaises(ConnectionRefusedError):
            yield self.socket(cookie)

    @defer.inlineCallbacks
    def test_a_socket_with_too_many_messages_waiting_is_closed(self):
        cookie = yield self.session_cookie()
        s = yield self.socket(cookie)
        yield s.wait_for("inbox")
        # The store stalls: every inbox request waits behind the first.
        stalled = defer.Deferred()
        self.server.inbox = lambda user: stalled
        for _ in range(10):
            s.ask({"type": "inbox"})
        code, _ = yield s.factory.closed
        self.assertEqual(code, live.CLOSE_POLICY)
        error = [m for m in s.messages if m["type"] == "error"][-1]
        self.assertEqual(error["message"], "too many messages waiting (over 5); slow down")

    @defer.inlineCallbacks
    def test_a_message_that_is_not_json_closes_the_socket_and_nothing_else(self):
        cookie = yield self.session_cookie()
        bad = yield self.socket(cookie)
        good = yield self.socket(cookie)
        bad.sendMessage(b"{not json")
        code, _ = yield bad.factory.closed
        self.assertEqual(code, live.CLOSE_POLICY)
        good.ask({"type": "new", "id": 1})
        created = yield good.wait_for("created")
        self.assertTrue(created["wave"].startswith("wave://a.test/w+"))

    @defer.inlineCallbacks
    def test_a_delta_is_refused_unless_its_author_is_the_sessions_user(self):
        cookie = yield self.session_cookie()
        name = IdGenerator("a.test").new_conversation_root()
        yield self.server.submit(name, WaveletDelta(ALICE, HashedVersion.zero(name),
                                                    create_wave_ops(ALICE)))
        s = yield self.socket(cookie)
        s.ask({"type": "open", "wave": name.uri})
        snapshot = yield s.wait_for("snapshot")
        version = snapshot["wavelet"]["hashed_version"]
        s.ask({"type": "submit", "wave": name.uri, "id": 7, "delta": {
            "author": "mallory@a.test", "hashed_version": version,
            "operations": [{"add_participant": "mallory@a.test"}]}})
        refused = yield s.wait_for("refused")
        self.assertEqual(refused["message"],
                         "a delta must be authored by alice@a.test, not mallory@a.test")
        state = yield self.server.wavelet(name)
        self.assertEqual([p.address for p in state.participants], ["alice@a.test"])

    @defer.inlineCallbacks
    def test_a_browser_that_does_not_read_is_cut_off_past_the_output_limit(self):
        from wavebox.model.conversation import append_blip_ops
        cookie = yield self.session_cookie()
        name = IdGenerator("a.test").new_conversation_root()
        yield self.server.submit(name, WaveletDelta(ALICE, HashedVersion.zero(name),
                                                    create_wave_ops(ALICE)))
        state = yield self.server.wavelet(name)
        yield self.server.submit(name, WaveletDelta(ALICE, state.hashed_version, append_blip_ops(
            state, "b+big", "x" * 200000)))
        self.web.live.output_limit = 64 * 1024
        self.web.live.queue_limit = 100
        s = yield self.socket(cookie)
        yield s.wait_for("inbox")
        s.transport.pauseProducing()           # the browser stops reading
        server_side = [p for p in self.web.live.sockets][0]
        for _ in range(60):                     # 60 snapshots of 200 KB: 12 MB
            s.ask({"type": "open", "wave": name.uri})
        s.transport.resumeProducing()
        yield s.factory.closed
        self.assertTrue(server_side.ended)
        self.assertNotIn(server_side, self.web.live.sockets)
        self.assertLess(len(s.messages), 60)

    @defer.inlineCallbacks
    def test_a_wave_one_is_not_in_cannot_be_opened(self):
        cookie = yield self.session_cookie()
        bob = ParticipantId("bob@a.test")
        name = IdGenerator("a.test").new_conversation_root()
        yield self.server.submit(name, WaveletDelta(bob, HashedVersion.zero(name),
                                                    create_wave_ops(bob)))
        s = yield self.socket(cookie)
        s.ask({"type": "open", "wave": name.uri, "id": 3})
        error = yield s.wait_for("error")
        self.assertEqual(error["message"], "you are not a participant of %s" % (name.wave_id,))


class EditorTests(unittest.TestCase):
    """static/editor.js under Node: typing becomes operations that make the typed text."""

    def test_random_edits_make_the_text_and_carets_keep_their_place(self):
        node = shutil.which("node")
        if node is None:
            self.fail("node is not installed: the page's editor is tested under Node "
                      "(Debian's nodejs, which .ci/run installs)")
        script = os.path.join(os.path.dirname(__file__), "web", "editor_cases.mjs")
        done = subprocess.run([node, script, "11"], capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stdout[-2000:] + done.stderr[-2000:])
        self.assertRegex(done.stdout.splitlines()[-1], r"^\d{4,} passed, 0 failed$")
