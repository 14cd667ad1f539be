"""
Web sessions: who a browser is logged in as.

A successful login makes a session with a random token (256 bits from
``secrets``), which the browser keeps in a cookie that scripts cannot read
(HttpOnly) and that no other site's page can make it send (SameSite=Strict).
The token is the only thing the cookie holds; the server keeps the rest.

The table is bounded (``max_sessions``): a login beyond the bound is
refused rather than pushing someone else out, so a stranger who logs in a
thousand times cannot end other people's sessions.  A session unused for
``idle`` seconds ends on its own; logging out ends it at once, and with it
every WebSocket it opened.
"""

import secrets

from twisted.logger import Logger

log = Logger()

#: The cookie's name.
COOKIE = "wavebox_session"


class TooManySessions(Exception):
    """The table is full; ``str()`` is the line to show."""


class Session:
    """One logged-in browser: its user, its token, its open WebSockets."""

    def __init__(self, token, user, now):
        self.token = token
        self.user = user
        self.created = now
        self.last_used = now
        self.sockets = set()       # live connections (wavebox.web.live.LiveProtocol)

    def __repr__(self):
        return "<web session of %s>" % (self.user,)


class Sessions:
    """The table of web sessions; ``clock`` is an IReactorTime."""

    def __init__(self, clock, max_sessions=1000, idle=7 * 86400.0):
        self.clock = clock
        self.max_sessions = max_sessions
        self.idle = idle
        self._by_token = {}

    def __len__(self):
        return len(self._by_token)

    def create(self, user):
        """A new session of ``user``; raises TooManySessions when the table is full."""
        self._expire()
        if len(self._by_token) >= self.max_sessions:
            log.warn("web login of {user} refused: {n} sessions open (--web-max-sessions)",
                     user=user, n=len(self._by_token))
            raise TooManySessions("the server has too many web sessions open; try again later")
        token = secrets.token_urlsafe(32)
        session = self._by_token[token] = Session(token, user, self.clock.seconds())
        return session

    def get(self, token):
        """The live session of ``token`` (touched: it counts as used), or None."""
        if not token:
            return None
        session = self._by_token.get(token)
        if session is None:
            return None
        now = self.clock.seconds()
        if now - session.last_used >= self.idle and not session.sockets:
            self.end(session, "expired")
            return None
        session.last_used = now
        return session

    def end(self, session, why="logged out"):
        """End ``session``: its token stops working, its WebSockets close."""
        if self._by_token.get(session.token) is session:
            del self._by_token[session.token]
        for socket in list(session.sockets):
            socket.end_session(why)
        session.sockets.clear()

    def end_all(self):
        for session in list(self._by_token.values()):
            self.end(session, "the server is stopping")

    def _expire(self):
        now = self.clock.seconds()
        for session in list(self._by_token.values()):
            if now - session.last_used >= self.idle and not session.sockets:
                self.end(session, "expired")
