"""
The web client in a real browser (issue 14): Debian's headless Chromium,
driven by selenium, against ``twistd wavebox`` processes on loopback --
a.test and b.test federated over S2S with STARTTLS and dialback, each with
its web client on its own test host.

Selenium blocks, so every browser step runs in a thread (``deferToThread``);
the reactor of the test keeps serving the DNS server the servers ask and
the console clients of the tests.

With WAVEBOX_SCREENSHOTS=DIR the console test saves the screenshots of the
documentation (the inbox, and a wave with two authors) in DIR:
``WAVEBOX_SCREENSHOTS=docs python -m pytest tests/test_web_browser.py -k console``.
"""

import base64
import os
import socket

from twisted.internet import defer, reactor, threads
from twisted.trial import unittest
from twisted.web import resource, server

from tests.browser import Browser
from tests.helpers import console_login
from tests.processes import free_port
from tests.web_deployment import ADDRESSES, PASSWORD, WebDeployment, stored_wavelet

ALICE, BOB, CAROL = "alice@a.test", "bob@b.test", "carol@a.test"

# What the page holds, read by the tests through window.wavebox (static/app.js).
BLIP_TEXTS = "return [...document.querySelectorAll('#blips textarea')].map(t => t.value)"
AUTHORS = "return [...document.querySelectorAll('#blips .author')].map(a => a.textContent)"
IDLE = ("const w = window.wavebox.wave; return w !== null && w.client.idle "
        "&& w.client.failed === null")
VERSION = "const v = window.wavebox.wave.client.version; return [v.version, v.history_hash]"
WAVE_URI = "return window.wavebox.wave && window.wavebox.wave.uri"
INBOX = ("return [...document.querySelectorAll('#inbox-list .wave-entry')].map(e => "
         "[e.dataset.wave, e.querySelector('.entry-people').textContent, "
         "e.querySelector('.snippet').textContent, e.querySelector('.unread').textContent])")


def in_thread(f, *args):
    return threads.deferToThread(f, *args)


class BrowserTestCase(unittest.TestCase):
    """A deployment of ``ACCOUNTS``; browsers made with ``browser()`` end with the test."""

    timeout = 180
    ACCOUNTS = {"a.test": [ALICE, CAROL]}

    @defer.inlineCallbacks
    def setUp(self):
        self.deployment = WebDeployment(os.path.abspath(self.mktemp()), self.ACCOUNTS)
        yield self.deployment.start(self)

    @defer.inlineCallbacks
    def browser(self):
        b = yield in_thread(Browser)
        self.addCleanup(in_thread, b.quit)
        return b

    @defer.inlineCallbacks
    def logged_in(self, domain, user):
        b = yield self.browser()
        yield in_thread(b.log_in, self.deployment[domain].base, user, PASSWORD)
        return b


def new_wave_with_text(b, text):
    """In the page: New wave, then type ``text`` into its first blip; the wave's URI."""
    b.find("#new-wave").click()
    b.wait_js("return document.querySelector('#blips textarea') !== null", "the new wave's blip")
    b.find("#blips textarea").send_keys(text)
    b.wait_js(IDLE, "its typing acknowledged")
    return b.js(WAVE_URI)


def add_participant(b, address):
    b.find("#add-address").send_keys(address)
    b.find("#add-button").click()


def wait_text(b, wanted, what=None):
    def shown():
        texts = b.js(BLIP_TEXTS)
        return texts if wanted in texts else None
    return b.wait(shown, what or "a blip %r" % (wanted,))


def type_keys(element, text):
    """One key at a time, as a person types."""
    for ch in text:
        element.send_keys(ch)


def handshake(host, port, cookie, origin):
    """A raw WebSocket handshake (RFC 6455 4.1); the status line of the answer."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = ("GET /ws HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nOrigin: %s\r\n"
               "Cookie: wavebox_session=%s\r\n\r\n" % (host, port, key, origin, cookie))
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(request.encode())
        answer = b""
        while b"\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n")[0].decode()


class LocalTests(BrowserTestCase):
    """One server, a.test: the browser beside the console."""

    @defer.inlineCallbacks
    def test_console_line_shows_in_the_browser_and_typing_in_the_console(self):
        a = self.deployment["a.test"]
        alice = yield self.logged_in("a.test", "alice")
        carol = yield console_login(self, a.console_port, "carol", PASSWORD, CAROL)
        uri = yield in_thread(new_wave_with_text, alice, "typed in the browser")
        yield in_thread(add_participant, alice, CAROL)
        yield carol.expect(r"^\* alice@a.test added you to wave a.test/w\+")
        carol.send("/open 0")
        # The browser's characters, typed before carol opened the wave.
        yield carol.expect(r"^alice@a.test: typed in the browser$")
        carol.send("a line from the console")
        yield carol.expect(r"^carol@a.test: a line from the console$")
        texts = yield in_thread(wait_text, alice, "a line from the console")
        self.assertEqual(texts, ["typed in the browser", "a line from the console"])
        authors = yield in_thread(alice.js, AUTHORS)
        self.assertEqual(authors, [ALICE, CAROL])

        # Typing goes on in the browser, into carol's blip: the console sees it.
        def type_more():
            box = alice.find_all("#blips textarea")[1]
            alice.js("arguments[0].focus(); arguments[0].setSelectionRange(1e9, 1e9)", box)
            type_keys(box, ", and more from the browser")
            alice.wait_js(IDLE, "the typing acknowledged")
        yield in_thread(type_more)
        carol.send("/open 0")
        yield carol.expect(r"^carol@a.test: a line from the console, and more from the browser$")
        self.assertEqual((yield in_thread(alice.js, WAVE_URI)), uri)

        directory = os.environ.get("WAVEBOX_SCREENSHOTS")
        if directory:
            # A second wave, carol's, so that the inbox shows an unread one.
            carol.send("/new")
            yield carol.expect(r"^created wave")
            carol.send("Lunch on Friday? The usual place, at noon.")
            yield carol.expect(r"^carol@a.test: Lunch")
            carol.send("/add alice@a.test")
            yield carol.expect(r"^\* carol@a.test added alice@a.test")
            yield in_thread(alice.wait, lambda: len(alice.js(INBOX)) == 2, "two waves")
            yield in_thread(self.screenshots, alice, directory)

    def screenshots(self, b, directory):
        b.driver.set_window_size(1100, 560)
        b.js("document.querySelector('#notice').textContent = ''")
        b.screenshot(os.path.join(directory, "web-wave.png"))
        b.js("location.hash = ''")
        b.wait_js("return document.querySelector('#wave').hidden", "the inbox alone")
        b.screenshot(os.path.join(directory, "web-inbox.png"))

    @defer.inlineCallbacks
    def test_inbox_updates_live_when_another_user_adds_this_one(self):
        a = self.deployment["a.test"]
        carol_page = yield self.logged_in("a.test", "carol")
        self.assertEqual((yield in_thread(carol_page.js, INBOX)), [])
        alice = yield console_login(self, a.console_port, "alice", PASSWORD, ALICE)
        alice.send("/new")
        yield alice.expect(r"^created wave a.test/w\+")
        alice.send("first line by alice")
        yield alice.expect(r"^alice@a.test: first line by alice$")
        alice.send("/add carol@a.test")
        yield alice.expect(r"^\* alice@a.test added carol@a.test")

        def entry_shows(snippet):
            entries = carol_page.js(INBOX)
            return entries if entries and entries[0][2] == snippet else None
        [entry] = yield in_thread(carol_page.wait, lambda: entry_shows("first line by alice"),
                                  "the wave carol was added to, in her inbox")
        _, participants, _, unread = entry
        self.assertEqual(participants, "alice@a.test, carol@a.test")
        self.assertGreater(int(unread), 0)
        notice = yield in_thread(carol_page.find, "#notice")
        self.assertIn("alice@a.test added you to wave a.test/w+", (yield in_thread(
            lambda: notice.text)))
        # A later change shows too, with more unread.
        alice.send("second line")
        yield alice.expect(r"^alice@a.test: second line$")
        [entry2] = yield in_thread(
            carol_page.wait, lambda: [e for e in carol_page.js(INBOX) if int(e[3]) > int(unread)],
            "the unread count going up")
        self.assertEqual(entry2[0], entry[0])

    @defer.inlineCallbacks
    def test_reload_keeps_everything(self):
        alice = yield self.logged_in("a.test", "alice")
        uri = yield in_thread(new_wave_with_text, alice, "before the reload")
        yield in_thread(add_participant, alice, CAROL)

        def reply_and_reload():
            alice.wait(lambda: len(alice.find_all("#participants .participant")) == 2,
                       "carol among the participants")
            alice.find("#reply").click()
            alice.wait(lambda: len(alice.find_all("#blips textarea")) == 2, "the reply")
            type_keys(alice.find_all("#blips textarea")[1], "a reply")
            alice.wait_js(IDLE, "the reply acknowledged")
            before = (alice.js(BLIP_TEXTS), alice.js(AUTHORS), alice.js(VERSION))
            alice.driver.refresh()
            alice.wait_connected()
            alice.wait(lambda: alice.js(BLIP_TEXTS) == before[0], "the blips after the reload")
            participants = [p.get_attribute("data-address")
                            for p in alice.find_all("#participants .participant")]
            return before, (alice.js(BLIP_TEXTS), alice.js(AUTHORS), alice.js(VERSION)), \
                participants, alice.js(WAVE_URI)
        before, after, participants, reopened = yield in_thread(reply_and_reload)
        self.assertEqual(after, before)
        self.assertEqual(before[0], ["before the reload", "a reply"])
        self.assertEqual(participants, [ALICE, CAROL])
        self.assertEqual(reopened, uri)

    @defer.inlineCallbacks
    def test_wrong_password_and_unknown_user_get_the_same_clear_message(self):
        page = yield self.browser()
        base = self.deployment["a.test"].base

        def try_login(user, password):
            page.get(base + "/")
            page.find("#login-user").send_keys(user)
            page.find("#login-password").send_keys(password)
            page.find("#login-button").click()
            return page.wait(lambda: page.find("#login-error").text, "the login's answer")
        wrong = yield in_thread(try_login, "alice", "not the password")
        unknown = yield in_thread(try_login, "nobody", "not the password")
        self.assertEqual(wrong, "login failed: wrong user or password")
        self.assertEqual(unknown, wrong)
        cookies = yield in_thread(page.driver.get_cookies)
        self.assertEqual(cookies, [])

    @defer.inlineCallbacks
    def test_the_session_cookie_is_http_only_and_same_site_strict(self):
        alice = yield self.logged_in("a.test", "alice")
        [cookie] = yield in_thread(alice.driver.get_cookies)
        self.assertEqual((cookie["name"], cookie["httpOnly"], cookie["sameSite"]),
                         ("wavebox_session", True, "Strict"))
        # Scripts of the page cannot read it.
        self.assertEqual((yield in_thread(alice.js, "return document.cookie")), "")

    @defer.inlineCallbacks
    def test_logging_out_ends_the_websocket_of_every_page_of_the_session(self):
        a = self.deployment["a.test"]
        alice = yield self.logged_in("a.test", "alice")
        [cookie] = yield in_thread(alice.driver.get_cookies)

        def two_tabs_then_log_out():
            first = alice.driver.current_window_handle
            alice.driver.switch_to.new_window("tab")
            alice.get(a.base + "/")
            alice.wait_connected()
            second = alice.driver.current_window_handle
            alice.driver.switch_to.window(first)
            alice.find("#logout").click()
            alice.wait(lambda: alice.find("#login-form"), "the login form after logging out")
            alice.driver.switch_to.window(second)
            return alice.wait_js("return document.body.dataset.socket === 'logged out'",
                                 "the other tab's socket closed")
        yield in_thread(two_tabs_then_log_out)
        host, port = ADDRESSES["a.test"], a.web_port
        status = yield in_thread(handshake, host, port, cookie["value"], a.base)
        self.assertIn(" 403 ", status)

    @defer.inlineCallbacks
    def test_a_cross_origin_websocket_is_refused(self):
        a = self.deployment["a.test"]
        alice = yield self.logged_in("a.test", "alice")
        [cookie] = yield in_thread(alice.driver.get_cookies)
        host, port = ADDRESSES["a.test"], a.web_port
        # A page of another site, in the browser that is logged in, opens our socket.
        ws_url = "ws://%s:%d/ws" % (host, port)
        page = ("<!DOCTYPE html><title>other site</title><script>"
                "const s = new WebSocket(%r);"
                "s.onopen = () => { document.title = 'opened'; };"
                "s.onclose = () => { if (document.title !== 'opened') document.title = 'refused'; };"
                "</script>" % (ws_url,))
        other = _Page(page.encode())
        other_port = free_port("127.0.0.1")
        listening = reactor.listenTCP(other_port, server.Site(other), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)

        def visit():
            alice.get("http://127.0.0.1:%d/" % (other_port,))
            return alice.wait(lambda: alice.driver.title in ("opened", "refused") and
                              alice.driver.title, "the other site's socket settled")
        self.assertEqual((yield in_thread(visit)), "refused")
        self.assertIn(b"web socket refused (origin, origin http://127.0.0.1:%d)" % (other_port,),
                      a.proc.output)

        # The session itself is good: from our own origin its handshake succeeds,
        # and with the same cookie from another origin it is refused.
        ok = yield in_thread(handshake, host, port, cookie["value"], a.base)
        self.assertIn(" 101 ", ok)
        refused = yield in_thread(handshake, host, port, cookie["value"], "http://evil.test")
        self.assertIn(" 403 ", refused)

    @defer.inlineCallbacks
    def test_participants_are_added_and_removed_with_the_consoles_checks(self):
        alice = yield self.logged_in("a.test", "alice")
        carol = yield self.logged_in("a.test", "carol")
        uri = yield in_thread(new_wave_with_text, alice, "who is here")

        def notice_after(address):
            alice.js("document.querySelector('#notice').textContent = ''")
            add_participant(alice, address)
            return alice.wait(lambda: alice.find("#notice").text, "the answer to adding "
                              + address)
        self.assertEqual((yield in_thread(notice_after, "ghost@a.test")),
                         "ghost@a.test has no account on this server")
        self.assertEqual((yield in_thread(notice_after, "alice@a.test")),
                         "alice@a.test is already a participant")
        self.assertRegex((yield in_thread(notice_after, "not an address")),
                         "^add needs one address")
        self.assertEqual((yield in_thread(notice_after, CAROL)), "added carol@a.test")

        def carol_opens():
            carol.js("location.hash = arguments[0]", "#wave=" + uri)
            return wait_text(carol, "who is here")
        yield in_thread(carol_opens)

        def alice_removes_carol():
            chip = alice.wait(lambda: alice.find(
                "#participants .participant[data-address='carol@a.test'] .remove"), "carol")
            chip.click()
            alice.wait(lambda: not alice.find_all(
                "#participants .participant[data-address='carol@a.test']"), "carol gone")
            return carol.wait(lambda: "removed you" in carol.find("#notice").text and
                              carol.find("#notice").text, "carol told she was removed")
        told = yield in_thread(alice_removes_carol)
        self.assertEqual(told, "alice@a.test removed you from this wave")

    @defer.inlineCallbacks
    def test_a_participant_we_cannot_reach_is_pending_with_the_reason(self):
        alice = yield self.logged_in("a.test", "alice")
        yield in_thread(new_wave_with_text, alice, "anyone there?")

        def add_unreachable():
            add_participant(alice, "x@nowhere.test")
            warning = alice.wait(lambda: "warning" in alice.find("#notice").text
                                 and alice.find("#notice").text, "the warning")
            pending = alice.wait(lambda: alice.find(
                "#participants .participant[data-address='x@nowhere.test'] .pending").text,
                "x@nowhere.test pending", guard=60)
            return warning, pending
        warning, pending = yield in_thread(add_unreachable)
        self.assertRegex(warning, r"^warning: nowhere.test has no wave service we can reach "
                                  r"now \(.+\); x@nowhere.test sees nothing of this wave")
        self.assertRegex(pending, r"^pending since \d{4}-\d\d-\d\d \d\d:\d\d UTC: .+")


class _Page(resource.Resource):
    isLeaf = True

    def __init__(self, body):
        resource.Resource.__init__(self)
        self.body = body

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"text/html")
        return self.body


class FederatedTests(BrowserTestCase):
    """a.test and b.test, two browsers, one wave hosted on a.test."""

    ACCOUNTS = {"a.test": [ALICE], "b.test": [BOB]}

    @defer.inlineCallbacks
    def test_two_browsers_on_two_servers_type_into_one_blip_at_once(self):
        alice = yield self.logged_in("a.test", "alice")
        bob = yield self.logged_in("b.test", "bob")
        uri = yield in_thread(new_wave_with_text, alice, "|")
        yield in_thread(add_participant, alice, BOB)

        # bob's inbox gets the wave while he looks at it; he opens it from there.
        def bob_opens():
            entry = bob.wait(lambda: bob.find("#inbox-list .wave-entry[data-wave='%s']" % uri),
                             "the wave in bob's inbox")
            entry.click()
            wait_text(bob, "|")
        yield in_thread(bob_opens)

        a_text, b_text = "alice types at the end", "BOB TYPES FIRST "

        def type_at(page, text, where):
            box = page.find("#blips textarea")
            page.js("arguments[0].focus(); arguments[0].setSelectionRange(%s, %s)"
                    % (where, where), box)
            type_keys(box, text)
        # At the same time: alice at the end of the blip, bob at its start.
        yield defer.gatherResults([in_thread(type_at, alice, a_text, "1e9"),
                                   in_thread(type_at, bob, b_text, "0")])
        expected = b_text + "|" + a_text

        def settled(page):
            page.wait(lambda: page.js(IDLE) and page.js(BLIP_TEXTS) == [expected],
                      "both people's characters, each where its typist put it")
            return page.js(VERSION)
        a_version = yield in_thread(settled, alice)
        b_version = yield in_thread(settled, bob)

        def same_version():
            return alice.wait(lambda: alice.js(VERSION) == bob.js(VERSION) and alice.js(VERSION),
                              "the two pages at one hashed version")
        version = yield in_thread(same_version)
        self.assertGreater(version[0], 3)
        self.assertTrue(a_version and b_version)
        authors = yield in_thread(bob.js, AUTHORS)
        self.assertEqual(authors, [ALICE])

        # Both servers' stores hold the same wavelet at the same hashed version.
        yield self.deployment.stop()
        states = []
        for domain in ("a.test", "b.test"):
            states.append((yield stored_wavelet(self.deployment[domain].data, [domain], uri)))
        a_state, b_state = states
        self.assertEqual(a_state.hashed_version, b_state.hashed_version)
        self.assertEqual(a_state.hashed_version.version, version[0])
        self.assertEqual(base64.b64encode(a_state.hashed_version.history_hash).decode(),
                         version[1])
        from wavebox.model.conversation import render
        self.assertEqual(render(a_state), render(b_state))
        self.assertEqual([text for _, text in render(a_state)], [expected])
