"""
The web client's HTTP side (twisted.web): the login page, the page of the
app, its static files (all shipped in the package: no CDN), log in and log
out, and the WebSocket of :mod:`wavebox.web.live` at ``/ws``.

- ``GET /``: the app when the session cookie names a live session, else
  the login form.
- ``POST /login`` (``user``, ``password``): the console's accounts, through
  the server's :class:`wavebox.server.login.LoginGuard` (equal cost for
  unknown users, back-off per account and address).  Success sets the
  session cookie (HttpOnly, SameSite=Strict) and goes to ``/``; a failure
  shows the form again with the guard's one line.
- ``POST /logout``: ends the session and every WebSocket it opened.
- ``/static/...``: the page's modules, style and the browser's OT.

A POST whose ``Origin`` is another site's is refused (a login or logout
made by someone else's page); pages may not be framed by other sites.
"""

import os

from twisted.logger import Logger
from twisted.web import pages, resource, server, static
from twisted.web.util import redirectTo

from autobahn.twisted.resource import WebSocketResource

from wavebox.server.login import LoginRefused
from wavebox.web.live import LiveFactory, expected_origins, session_token
from wavebox.web.sessions import COOKIE, Sessions, TooManySessions

log = Logger()

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
#: Longest user name or password read from the login form.
MAX_FIELD = 1024

_HEADERS = {
    b"Content-Security-Policy": b"default-src 'self'; connect-src 'self'; img-src 'self' data:; "
                                b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    b"X-Frame-Options": b"DENY",
    b"X-Content-Type-Options": b"nosniff",
    # "same-origin": a form POST still carries our Origin (with no-referrer it is "null").
    b"Referrer-Policy": b"same-origin",
}


def _read(name):
    with open(os.path.join(STATIC, name), encoding="utf-8") as f:
        return f.read()


def _escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _secure_headers(request, cache=False):
    for k, v in _HEADERS.items():
        request.setHeader(k, v)
    if not cache:
        request.setHeader(b"Cache-Control", b"no-store")


def _same_origin(request):
    """A request without an Origin (not from a page), or from a page of ours."""
    origin = request.getHeader("origin")
    if origin is None:
        return True
    return origin.lower() in expected_origins(request.getHeader("host"))


def _cookie(token, max_age=None):
    value = "%s=%s; Path=/; HttpOnly; SameSite=Strict" % (COOKIE, token)
    if max_age is not None:
        value += "; Max-Age=%d" % (max_age,)
    return value.encode("ascii")


class _Static(static.File):
    """The package's static files; no directory listings."""

    childNotFound = pages.notFound("Not found", "No such file.")
    forbidden = pages.forbidden("Forbidden", "Not yours to read.")

    def directoryListing(self):
        return pages.notFound("Not found", "No listing.")

    def render_GET(self, request):
        _secure_headers(request, cache=True)
        request.setHeader(b"Cache-Control", b"no-cache")
        return static.File.render_GET(self, request)


_Static.contentTypes = dict(static.File.contentTypes, **{".js": "text/javascript",
                                                        ".mjs": "text/javascript",
                                                        ".css": "text/css",
                                                        ".png": "image/png"})


class WebRoot(resource.Resource):
    """``/``: the app, or the login form."""

    def __init__(self, web):
        resource.Resource.__init__(self)
        self.web = web
        self.putChild(b"login", _Login(web))
        self.putChild(b"logout", _Logout(web))
        self.putChild(b"static", _Static(STATIC))
        self.putChild(b"ws", WebSocketResource(web.live))

    def getChild(self, path, request):
        if path == b"":
            return self
        return pages.notFound("Not found", "No such page.")

    def render_GET(self, request):
        _secure_headers(request)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        session = self.web.session_of(request)
        if session is None:
            return self.web.login_page().encode("utf-8")
        return self.web.app_page.encode("utf-8")


class _Login(resource.Resource):
    isLeaf = True

    def __init__(self, web):
        resource.Resource.__init__(self)
        self.web = web

    def render_GET(self, request):
        return redirectTo(b"/", request)

    def render_POST(self, request):
        _secure_headers(request)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        if not _same_origin(request):
            request.setResponseCode(403)
            return self.web.login_page("refused: the form came from another site").encode()
        user = (request.args.get(b"user") or [b""])[0][:MAX_FIELD].decode("utf-8", "replace")
        password = (request.args.get(b"password") or [b""])[0][:MAX_FIELD]
        password = password.decode("utf-8", "replace")
        if not user.strip() or not password:
            request.setResponseCode(400)
            return self.web.login_page("give a user name and a password", user).encode()
        client = request.getClientAddress()
        d = self.web.login_guard.login(user.strip(), password, getattr(client, "host", "unknown"))
        d.addCallbacks(self._logged_in, self._refused, callbackArgs=(request,),
                       errbackArgs=(request, user))
        d.addErrback(self._crashed, request)
        return server.NOT_DONE_YET

    def _logged_in(self, participant, request):
        try:
            session = self.web.sessions.create(participant)
        except TooManySessions as e:
            request.setResponseCode(503)
            return self._finish(request, self.web.login_page(str(e), participant.address))
        log.info("web login of {user}", user=participant)
        request.responseHeaders.addRawHeader(b"Set-Cookie", _cookie(session.token))
        request.setResponseCode(303)
        request.setHeader(b"Location", b"/")
        self._finish(request, "")

    def _refused(self, failure, request, user):
        failure.trap(LoginRefused)
        request.setResponseCode(401)
        self._finish(request, self.web.login_page("login failed: %s" % (failure.value,), user))

    def _crashed(self, failure, request):
        log.failure("web login failed", failure)
        request.setResponseCode(500)
        self._finish(request, self.web.login_page("internal error; see the server log"))

    def _finish(self, request, text):
        if request.finished or request._disconnected:
            return
        request.write(text.encode("utf-8"))
        request.finish()


class _Logout(resource.Resource):
    isLeaf = True

    def __init__(self, web):
        resource.Resource.__init__(self)
        self.web = web

    def render_POST(self, request):
        _secure_headers(request)
        if not _same_origin(request):
            request.setResponseCode(403)
            return b"refused: the request came from another site"
        session = self.web.session_of(request)
        if session is not None:
            log.info("web logout of {user}", user=session.user)
            self.web.sessions.end(session)
        request.responseHeaders.addRawHeader(b"Set-Cookie", _cookie("", max_age=0))
        return redirectTo(b"/", request)


class WebClient:
    """The web client's parts: sessions, the WebSocket factory, the pages."""

    def __init__(self, wave_server, login_guard, clock=None, max_sessions=1000,
                 session_idle=7 * 86400.0, queue_limit=1000, output_limit=4 * 1024 * 1024):
        if clock is None:
            from twisted.internet import reactor as clock
        self.wave_server = wave_server
        self.login_guard = login_guard
        self.sessions = Sessions(clock, max_sessions=max_sessions, idle=session_idle)
        self.live = LiveFactory(wave_server, self.sessions, clock=clock,
                                queue_limit=queue_limit, output_limit=output_limit)
        self.app_page = _read("app.html")
        self._login_template = _read("login.html")
        self.root = WebRoot(self)
        self.site = server.Site(self.root)
        self.site.noisy = False
        self.site.displayTracebacks = False
        # No access log line per request (every static file of every page):
        # logins, logouts and refusals are logged where they happen.
        self.site.log = lambda request: None

    @classmethod
    def from_config(cls, wave_server, login_guard, config):
        return cls(wave_server, login_guard, max_sessions=config.web_max_sessions,
                   session_idle=config.web_session_idle, queue_limit=config.web_queue_limit,
                   output_limit=config.web_output_limit)

    def session_of(self, request):
        return self.sessions.get(session_token(request.getHeader("cookie")))

    def login_page(self, message="", user=""):
        domains = ", ".join(self.wave_server.domains)
        alert = ('<p class="error" id="login-error" role="alert">%s</p>' % (_escape(message),)
                 if message else "")
        return (self._login_template.replace("{{domains}}", _escape(domains))
                .replace("{{message}}", alert).replace("{{user}}", _escape(str(user))))
