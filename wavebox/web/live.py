"""
The web client's live traffic: one WebSocket per open page (autobahn's
Twisted support), JSON text messages both ways (docs/web.rst, "The
WebSocket").

The handshake is refused unless the ``Origin`` is the page's own (the
``Host`` the browser asked for) and the session cookie names a live
session: a page of another site can neither open the socket with our
cookie (SameSite=Strict) nor with its own origin.  Logging out closes every
socket of the session.

What the browser sends is handled one message at a time, in order, except
submits: those are handed to the server core at once (the core keeps each
wavelet's order) and answered when they are durable, so that typing into one
wave never waits behind a slow command.  How much may wait is bounded
(``queue_limit`` messages, ``MAX_SUBMITS`` submits, ``output_limit`` bytes
unsent to a browser that does not read); past a bound the socket is closed
with a reason, as the console closes a session (issue 9).
"""

import collections
import json
from http.cookies import CookieError, SimpleCookie

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer, interfaces
from twisted.logger import Logger
from zope.interface import implementer

from wavebox.clock import default_clock
from wavebox.model import conversation
from wavebox.model.delta import HashedVersion, WaveletDelta
from wavebox.model.errors import InvalidParticipantId, ModelError
from wavebox.model.ids import IdGenerator, ParticipantId, WaveletName
from wavebox.server.errors import RemoteHostError, WaveServerError
from wavebox.server.interfaces import IWaveletListener
from wavebox.web import ops_json
from wavebox.web.sessions import COOKIE

log = Logger()

#: Longest message a browser may send, in bytes (a pasted page is far less).
MAX_MESSAGE = 1024 * 1024
#: Submits of one socket waiting for the core at once (a page has one per wavelet).
MAX_SUBMITS = 16
#: Wavelets one socket may have open at once (a page shows one).
MAX_OPEN = 16
#: WebSockets one session may have open at once (its tabs).
MAX_SOCKETS_PER_SESSION = 20
#: Longest inbox snippet, in characters; items of a blip read for it, at most.
SNIPPET_LENGTH = 80
SNIPPET_SCAN = 1000
#: Seconds between looks at the delivery state of the open waves' participants.
DELIVERY_POLL = 2.0
#: Seconds the inbox's changes are gathered before the browser is told (in one
#: message): a page with many busy waves is told a few times a second, not at
#: every keystroke of each.
INBOX_COALESCE = 0.25

#: Close codes, in the application range (RFC 6455 7.4.2): autobahn sends no
#: other but 1000.  4008 is 1008's "policy violation".
CLOSE_LOGGED_OUT = 4001
CLOSE_POLICY = 4008


class MessageError(Exception):
    """A message that cannot be served; ``str()`` is the line for the person."""


def expected_origins(host):
    """The origins a page of ``host`` (the Host header) has: ours, http or https."""
    host = (host or "").strip().lower()
    return {"http://" + host, "https://" + host} if host else set()


def session_token(cookie_header):
    """The session token in a Cookie header, or None."""
    if not cookie_header:
        return None
    jar = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def snippet(state):
    """
    The start of the wave's first blip with text, on one line.  It reads
    only as far as the snippet goes: entries are made as often as people
    type, and a blip may be long.
    """
    for blip_id in conversation.blip_ids(state):
        document = state.documents.get(blip_id)
        if document is None:
            continue
        chars = []
        for pos in range(min(document.size, SNIPPET_SCAN)):
            value = document.item(pos).value
            if isinstance(value, str):
                chars.append(value)
            elif getattr(value, "type", None) == conversation.LINE and chars:
                chars.append(" ")
            if len(chars) > SNIPPET_LENGTH:
                break
        text = " ".join("".join(chars).split())
        if text:
            return text if len(text) <= SNIPPET_LENGTH else text[:SNIPPET_LENGTH - 1] + "…"
    return ""


def problem_json(problem):
    """A delivery problem as the page shows it next to a participant ("pending")."""
    return {"reason": problem.reason, "since_ms": problem.since_ms,
            "given_up": problem.given_up}


def blip_authors(state):
    """``{document id: author address}``: each document's first contributor."""
    out = {}
    for document_id in state.documents:
        author = conversation.blip_author(state, document_id)
        if author is not None:
            out[document_id] = author.address
    return out


@implementer(IWaveletListener)
class _Listener:
    def __init__(self, callback):
        self.callback = callback

    def wavelet_updated(self, update):
        self.callback(update)


@implementer(interfaces.IPushProducer)
class LiveProtocol(WebSocketServerProtocol):
    """One page's WebSocket: the user's inbox, their open waves, their typing."""

    def __init__(self):
        WebSocketServerProtocol.__init__(self)
        self.session = None
        self.user = None
        self.open = {}                 # WaveletName -> listener
        self.read_versions = {}        # wavelet URI -> version marked read (or None)
        self.inbox_listener = _Listener(self._inbox_update)
        self._queue = collections.deque()
        self._busy = False
        self._submits = 0
        self._paused = False
        self._unsent = 0
        self._pending_entries = {}     # WaveletName -> None, entries to send
        self._entry_call = None
        self._delivery_call = None
        self._delivery_seen = {}       # WaveletName -> the pending map last sent
        self.ended = False

    @property
    def server(self):
        return self.factory.wave_server

    # -- the handshake ----------------------------------------------------------------

    def onConnect(self, request):
        origin = request.headers.get("origin")
        host = request.headers.get("host")
        if origin is None or origin.lower() not in expected_origins(host):
            self.factory.refused("origin", origin)
            raise ConnectionDeny(403, "cross-origin WebSocket refused")
        session = self.factory.sessions.get(session_token(request.headers.get("cookie")))
        if session is None:
            self.factory.refused("session", origin)
            raise ConnectionDeny(403, "not logged in")
        if len(self.factory.sockets) >= self.factory.max_sockets:
            self.factory.refused("full", origin)
            raise ConnectionDeny(503, "too many WebSockets open; try again later")
        if len(session.sockets) >= MAX_SOCKETS_PER_SESSION:
            self.factory.refused("session full", origin)
            raise ConnectionDeny(503, "too many pages open for this session")
        self.session = session
        self.user = session.user
        return None

    def onOpen(self):
        if self.session is None:
            return
        if self.factory.sessions.get(self.session.token) is not self.session:
            # Logged out during the handshake.
            self.ended = True
            self.sendClose(CLOSE_LOGGED_OUT, "logged out")
            return
        self.factory.sockets.add(self)
        self.session.sockets.add(self)
        # The raw TCP transport: count what a browser that does not read leaves unsent.
        try:
            self.transport.unregisterProducer()
        except Exception:
            pass
        self.transport.registerProducer(self, True)
        self.server.subscribe_participant(self.user, self.inbox_listener)
        self.send({"type": "hello", "user": self.user.address,
                   "domains": list(self.server.domains)})
        self._enqueue({"type": "inbox"})
        self._delivery_call = self.factory.clock.callLater(DELIVERY_POLL, self._delivery_poll)

    def onClose(self, wasClean, code, reason):
        self.ended = True
        self.factory.sockets.discard(self)
        if self.session is not None:
            self.session.sockets.discard(self)
            self.server.unsubscribe_participant(self.user, self.inbox_listener)
        for name, listener in list(self.open.items()):
            self.server.unsubscribe(name, listener)
        self.open.clear()
        self._queue.clear()
        for call in (self._entry_call, self._delivery_call):
            if call is not None and call.active():
                call.cancel()

    def end_session(self, why):
        """The session ended (log out): say so and close."""
        self.send({"type": "logged_out", "reason": why})
        self.ended = True
        self.sendClose(CLOSE_LOGGED_OUT, why[:120])

    # -- producing ----------------------------------------------------------------------

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        self._paused = False
        self._unsent = 0

    def stopProducing(self):
        pass

    def send(self, message):
        if self.ended and message.get("type") != "logged_out":
            return
        if self.state != self.STATE_OPEN:
            return
        data = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        self.sendMessage(data, isBinary=False)
        if self._paused:
            self._unsent += len(data)
            if self._unsent > self.factory.output_limit:
                log.info("web socket of {user} closed: over {limit} bytes unsent (the "
                         "browser does not read)", user=self.user,
                         limit=self.factory.output_limit)
                self.ended = True
                self.transport.abortConnection()

    def _close(self, code, reason):
        log.info("web socket of {user} closed: {reason}", user=self.user, reason=reason)
        self.send({"type": "error", "message": reason})
        self.ended = True
        self.sendClose(code, reason[:120])

    # -- messages in ----------------------------------------------------------------------

    def onMessage(self, payload, isBinary):
        if self.ended:
            return
        if isBinary:
            return self._close(CLOSE_POLICY, "binary messages are not understood")
        try:
            message = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return self._close(CLOSE_POLICY, "a message that is not JSON")
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return self._close(CLOSE_POLICY, "a message without a type")
        if message["type"] == "submit":
            return self._submit(message)
        if len(self._queue) >= self.factory.queue_limit:
            return self._close(CLOSE_POLICY, "too many messages waiting (over %d); slow down"
                               % (self.factory.queue_limit,))
        self._enqueue(message)

    def _enqueue(self, message):
        self._queue.append(message)
        if not self._busy:
            self._next()

    def _next(self):
        while self._queue and not self.ended:
            message = self._queue.popleft()
            self._busy = True
            d = defer.maybeDeferred(self._dispatch, message)
            d.addErrback(self._failed, message)
            if not d.called:
                d.addBoth(self._done)
                return
            self._busy = False
        self._busy = False

    def _done(self, _):
        self._busy = False
        self._next()

    def _failed(self, failure, message):
        if failure.check(MessageError, ModelError, WaveServerError):
            text = str(failure.value)
        else:
            log.failure("web message {type} of {user} failed", failure,
                        type=message.get("type"), user=self.user)
            text = "internal error; see the server log"
        self.send({"type": "error", "id": message.get("id"), "message": text})

    def _dispatch(self, message):
        handler = getattr(self, "do_" + message["type"], None)
        if handler is None:
            raise MessageError("unknown message type %r" % (message["type"][:40],))
        return handler(message)

    def _name(self, message):
        try:
            return WaveletName.from_uri(message.get("wave"))
        except ModelError as e:
            raise MessageError(str(e))

    # -- the inbox -------------------------------------------------------------------------

    @defer.inlineCallbacks
    def do_inbox(self, message):
        infos = yield self.server.inbox(self.user)
        entries = []
        for info in infos:
            self.read_versions[info.name] = info.read_version
            try:
                state = yield self.server.wavelet(WaveletName.from_uri(info.name))
            except Exception:
                log.failure("cannot load {uri} for the web inbox", uri=info.name)
                continue
            entries.append(self.entry(state))
        self.send({"type": "inbox", "waves": entries})

    def entry(self, state):
        """What the inbox shows of one wave."""
        uri = state.name.uri
        read = self.read_versions.get(uri)
        version = state.hashed_version.version
        problems = self.server.delivery_problems(state.participants)
        return {"wave": uri, "label": str(state.name.wave_id),
                "participants": [p.address for p in state.participants],
                "pending": {p.address: problem_json(x) for p, x in problems.items()},
                "snippet": snippet(state), "version": version,
                "unread": max(0, version - (read or 0)),
                "last_modified_ms": state.last_modified_time or 0}

    def _inbox_update(self, update):
        """A delta of a wave of ours: its inbox entry changes (gathered a moment)."""
        if self.ended:
            return
        name = update.wavelet_name
        if self.user not in update.participants_after:
            self._pending_entries.pop(name, None)
            self.send({"type": "wave_gone", "wave": name.uri,
                       "by": update.author.address})
            return
        if self.user in update.added and update.author != self.user:
            self.send({"type": "notice", "text": "%s added you to wave %s"
                       % (update.author, name.wave_id)})
        self._pending_entries[name] = None
        if self._entry_call is None:
            self._entry_call = self.factory.clock.callLater(INBOX_COALESCE, self._send_entries)

    def _send_entries(self):
        self._entry_call = None
        names, self._pending_entries = list(self._pending_entries), {}
        entries = []
        for name in names:
            state = self.server.current_state(name)
            if state is not None:
                entries.append(self.entry(state))
        if entries:
            self.send({"type": "wave_entries", "entries": entries})

    # -- waves -----------------------------------------------------------------------------

    @defer.inlineCallbacks
    def do_new(self, message):
        generator = self.factory.id_generators[self.user.domain]
        name = generator.new_conversation_root()
        delta = WaveletDelta(self.user, HashedVersion.zero(name),
                             conversation.create_wave_ops(self.user))
        yield self.server.submit(name, delta)
        self.send({"type": "created", "id": message.get("id"), "wave": name.uri})

    @defer.inlineCallbacks
    def do_open(self, message):
        name = self._name(message)
        if name not in self.open and len(self.open) >= MAX_OPEN:
            raise MessageError("too many waves open at once (%d)" % (MAX_OPEN,))
        yield self.server.wavelet(name)
        # Read and subscribe in one step: every delta after this snapshot is sent.
        state = self.server.current_state(name)
        if state is None:
            state = yield self.server.wavelet(name)
        if self.user not in state.participants:
            raise MessageError("you are not a participant of %s" % (name.wave_id,))
        if self.ended:
            return
        if name not in self.open:
            listener = self.open[name] = _Listener(self._wave_update)
            self.server.subscribe(name, listener)
        problems = self.server.delivery_problems(state.participants)
        self._delivery_seen[name] = {p.address: problem_json(x) for p, x in problems.items()}
        self.send({"type": "snapshot", "id": message.get("id"), "wave": name.uri,
                   "label": str(name.wave_id), "wavelet": ops_json.wavelet_to_json(state),
                   "authors": blip_authors(state), "pending": self._delivery_seen[name]})

    def do_close(self, message):
        name = self._name(message)
        listener = self.open.pop(name, None)
        self._delivery_seen.pop(name, None)
        if listener is not None:
            self.server.unsubscribe(name, listener)

    def _wave_update(self, update):
        name = update.wavelet_name
        if name not in self.open or self.ended:
            return
        if self.user not in update.participants_after:
            self.server.unsubscribe(name, self.open.pop(name))
            self.send({"type": "removed", "wave": name.uri, "by": update.author.address})
            return
        self.send({"type": "delta", "wave": name.uri,
                   "delta": ops_json.transformed_delta_to_json(update.transformed)})

    def _submit(self, message):
        """A delta typed in the page: to the core now, answered when durable."""
        ident = message.get("id")
        try:
            name = self._name(message)
            if name not in self.open:
                raise MessageError("open the wave before changing it")
            if self._submits >= MAX_SUBMITS:
                raise MessageError("too many changes waiting (over %d)" % (MAX_SUBMITS,))
            delta = ops_json.delta_from_json(message.get("delta"))
            if delta.author != self.user:
                raise MessageError("a delta must be authored by %s, not %s"
                                   % (self.user, delta.author))
        except (MessageError, ModelError) as e:
            self.send({"type": "refused", "id": ident, "wave": message.get("wave"),
                       "message": str(e)})
            return
        self._submits += 1
        d = self.server.submit(name, delta)

        def acked(result):
            self.send({"type": "ack", "id": ident, "wave": name.uri,
                       "result": ops_json.submit_result_to_json(result)})

        def refused(failure):
            if failure.check(ModelError, WaveServerError):
                text = str(failure.value)
                if failure.check(RemoteHostError):
                    text += "; your change was not sent"
            else:
                log.failure("web submit of {user} to {uri} failed", failure,
                            user=self.user, uri=name.uri)
                text = "internal error; see the server log"
            self.send({"type": "refused", "id": ident, "wave": name.uri, "message": text})

        def settled(_):
            self._submits -= 1
        d.addCallbacks(acked, refused).addBoth(settled)

    @defer.inlineCallbacks
    def _participant(self, message, verb):
        name = self._name(message)
        if name not in self.open:
            raise MessageError("open the wave first")
        address = message.get("participant")
        if not isinstance(address, str) or not address.strip() or " " in address.strip():
            raise MessageError("%s needs one address, USER@DOMAIN" % (verb,))
        try:
            warning = yield self.server.change_participant(name, self.user, verb,
                                                           address.strip())
        except InvalidParticipantId as e:
            raise MessageError("%s: %s" % (verb, e))
        self.send({"type": "done", "id": message.get("id"), "warning": warning})

    def do_add(self, message):
        return self._participant(message, "add")

    def do_remove(self, message):
        return self._participant(message, "remove")

    @defer.inlineCallbacks
    def do_read(self, message):
        name = self._name(message)
        version = yield self.server.mark_read(self.user, name)
        self.read_versions[name.uri] = version.version
        state = self.server.current_state(name)
        if state is not None and self.user in state.participants:
            self.send({"type": "wave_entries", "entries": [self.entry(state)]})

    # -- delivery --------------------------------------------------------------------------

    def _delivery_poll(self):
        """Tell the page when a participant of an open wave becomes pending, or no longer."""
        self._delivery_call = None
        if self.ended:
            return
        for name in list(self.open):
            state = self.server.current_state(name)
            if state is None:
                continue
            problems = self.server.delivery_problems(state.participants)
            now = {p.address: problem_json(x) for p, x in problems.items()}
            if now != self._delivery_seen.get(name):
                self._delivery_seen[name] = now
                self.send({"type": "pending", "wave": name.uri, "pending": now})
        self._delivery_call = self.factory.clock.callLater(DELIVERY_POLL, self._delivery_poll)


class LiveFactory(WebSocketServerFactory):
    """What the sockets share: the core, the sessions, the bounds."""

    protocol = LiveProtocol

    def __init__(self, wave_server, sessions, clock=None, queue_limit=1000,
                 output_limit=4 * 1024 * 1024, max_sockets=None):
        WebSocketServerFactory.__init__(self)
        clock = default_clock(clock)
        self.wave_server = wave_server
        self.sessions = sessions
        self.clock = clock
        self.queue_limit = queue_limit
        self.output_limit = output_limit
        # A session may have a few pages open; the sockets are bounded with the sessions.
        self.max_sockets = max_sockets or 4 * sessions.max_sessions
        self.sockets = set()
        self.id_generators = {d: IdGenerator(d) for d in wave_server.domains}
        self._refusals = collections.Counter()
        self.setProtocolOptions(maxMessagePayloadSize=MAX_MESSAGE,
                                maxFramePayloadSize=MAX_MESSAGE,
                                autoPingInterval=30, autoPingTimeout=30)

    def refused(self, why, origin):
        """Log a refused handshake once per reason, then every 100th: strangers can retry."""
        self._refusals[why] += 1
        n = self._refusals[why]
        if n == 1 or n % 100 == 0:
            log.info("web socket refused ({why}, origin {origin}); {n} so far",
                     why=why, origin=origin, n=n)
