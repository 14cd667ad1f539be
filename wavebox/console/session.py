"""
The console: a UTF-8 line protocol for people, the server side of FedOne's
console client (wave protocol notes section 10.2), usable with plain telnet
or nc.

One :class:`ConsoleSession` per connection.  Nothing but ``/login``,
``/help`` and ``/quit`` works before a login.  Then a session has an inbox
(the waves its user takes part in) and at most one open wave.  A line not
starting with ``/`` becomes a new blip on the open wave; every change to the
open wave, by anyone, is shown at once as ``AUTHOR: TEXT`` lines (participant
changes as ``*`` notice lines), and a wave the user was just added to is
announced with a one-line notice.

Lines are handled one at a time, in order: a command that waits for the
store holds back the lines typed after it, so their output never overtakes it.
How many may wait, how fast they are taken, what a session that does not
read may cost, and how many sessions there are, is :mod:`wavebox.console.limits`.
"""

import collections

from twisted.internet import defer, interfaces, protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from wavebox.console import view
from wavebox.console.limits import CLOSE_GRACE, ConsoleLimits, LineQueue, SessionRefusal
from wavebox.model.delta import HashedVersion, WaveletDelta
from wavebox.model.errors import InvalidParticipantId, ModelError
from wavebox.model.ids import IdGenerator, ParticipantId
from wavebox.server.errors import RemoteHostError, WaveServerError
from wavebox.server.interfaces import IWaveletListener
from wavebox.server.login import LoginGuard, LoginRefused, TooManyFailures, client_key
from wavebox.store.accounts import verify_password_in_thread

log = Logger()

HELP = """\
commands:
  /login USER PASSWORD    log in (USER may leave out @DOMAIN)
  /new                    create a wave and open it
  /list                   your inbox: number, unread mark (*), participants
  /open N                 open wave N of the inbox
  /add USER@DOMAIN        add a participant to the open wave
  /remove USER@DOMAIN     remove a participant from the open wave
  /read                   mark every wave read
  /view normal|xml        show the open wave as text or as XML
  /help                   this text
  /quit                   leave
  any other line          a new message (blip) on the open wave"""

#: A session is closed after this many failed logins in a row.
MAX_LOGIN_FAILURES = 3


class UsageError(Exception):
    """A command was given wrong arguments, or cannot be used now; the text says why."""


class ConsoleFactory(protocol.ServerFactory):
    """Makes a session per connection; holds what sessions share."""

    noisy = False

    def __init__(self, wave_server, domains, verify_password=verify_password_in_thread,
                 login_guard=None, clock=None, limits=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.wave_server = wave_server
        self.domains = list(domains)
        self.clock = clock
        self.limits = limits or ConsoleLimits()
        # The login policy (timing, rate limits) is the server's, shared
        # with every other front end that logs people in.
        self.login_guard = login_guard or LoginGuard(wave_server, clock=clock,
                                                     verify=verify_password)
        self.id_generators = {d: IdGenerator(d) for d in self.domains}
        self.sessions = set()
        self.per_client = collections.Counter()     # client_key -> sessions open
        self._refusing = set()      # what is refused now ("all" or a client), logged once
        self._rendering = None      # the UpdateRendering of the update being told
        self.renderings = 0         # UpdateRenderings made (one per update, however many watch)

    def rendering(self, state, update):
        """
        The one :class:`~wavebox.console.view.UpdateRendering` of ``update``
        for every session that has its wave open: the listeners are told of
        one update after the other, so the last one made is the one asked for
        until the next update comes.
        """
        r = self._rendering
        if r is None or r.update is not update:
            r = self._rendering = view.UpdateRendering(state, update)
            self.renderings += 1
        return r

    def buildProtocol(self, addr):
        client = client_key(getattr(addr, "host", "unknown"))
        if len(self.sessions) >= self.limits.max_sessions:
            return self._refuse("all", "the console is full (%d sessions); try again later"
                                % (self.limits.max_sessions,))
        if self.per_client[client] >= self.limits.max_sessions_per_ip:
            return self._refuse(client, "too many console sessions from your address (%d); "
                                "try again later" % (self.limits.max_sessions_per_ip,))
        session = ConsoleSession()
        session.factory = self
        return session

    def end_sessions_of(self, address, reason):
        """Close every session logged in as ``address``, saying why; how many."""
        ended = [s for s in self.sessions if s.user is not None and s.user.address == address]
        for session in ended:
            session.close("error: " + reason)
        return len(ended)

    def _refuse(self, what, reason):
        if what not in self._refusing:
            self._refusing.add(what)
            log.warn("console session refused ({who}): {reason}",
                     who="the console is full" if what == "all" else what, reason=reason)
        return SessionRefusal(reason)

    def session_opened(self, session):
        self.sessions.add(session)
        self.per_client[session.client_key] += 1

    def session_closed(self, session):
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        self.per_client[session.client_key] -= 1
        if self.per_client[session.client_key] <= 0:
            del self.per_client[session.client_key]
        self._refusing.discard("all")
        self._refusing.discard(session.client_key)


@implementer(IWaveletListener)
class _WaveWatcher:
    """The open wave's listener: shows every change as it becomes durable."""

    def __init__(self, session):
        self.session = session

    def wavelet_updated(self, update):
        self.session.wave_changed(update)


@implementer(IWaveletListener)
class _InboxWatcher:
    """The user's listener: announces waves they were added to or removed from."""

    def __init__(self, session):
        self.session = session

    def wavelet_updated(self, update):
        self.session.inbox_changed(update)


@implementer(interfaces.IPushProducer)
class ConsoleSession(protocol.Protocol, TimeoutMixin):
    #: Longest line accepted, in bytes; longer ones are refused whole.
    MAX_LENGTH = 16384

    def __init__(self):
        self.user = None               # ParticipantId once logged in
        self.open_name = None          # WaveletName of the open wave
        self.mode = "normal"
        self.inbox_names = []          # WaveletNames of the last /list, in its order
        self.seen = view.OpenWave()    # what of the open wave is listed and shown
        self._told = None              # the update that closed the open wave, announced
        self.login_failures = 0
        self._buffer = b""
        self._discarding = False
        self._lines = None             # the LineQueue, made when connected
        self._unsent = 0               # bytes said while the client did not read
        self._abort_call = None        # aborts a closing session that does not go
        self._wave_watcher = _WaveWatcher(self)
        self._inbox_watcher = _InboxWatcher(self)
        self.closing = False           # on its way out: nothing more is handled or said
        self.closed = False

    @property
    def server(self):
        return self.factory.wave_server

    @property
    def client(self):
        """The client's address, as the login guard counts it."""
        return getattr(self.transport.getPeer(), "host", "unknown")

    @property
    def client_key(self):
        return client_key(self.client)

    @property
    def limits(self):
        return self.factory.limits

    # -- connection -------------------------------------------------------------

    def connectionMade(self):
        self.factory.session_opened(self)
        self.callLater = self.factory.clock.callLater       # TimeoutMixin's clock
        self._lines = LineQueue(self._handle, self.factory.clock, self.limits,
                                self._slow_down, self._flooded)
        self.transport.registerProducer(self, True)
        # The login timeout runs from the connection, whatever is typed.
        self.setTimeout(self.limits.login_timeout)
        self.say("wavebox console for %s.  /login USER PASSWORD to begin; /help lists "
                 "the commands." % (", ".join(self.factory.domains),))

    def connectionLost(self, reason):
        self.closed = self.closing = True
        self.setTimeout(None)
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        # What a closed session had queued is dropped with it.
        self._lines.close()
        self._buffer = b""
        self.factory.session_closed(self)
        self._close_wave()
        if self.user is not None:
            self.server.unsubscribe_participant(self.user, self._inbox_watcher)

    def say(self, text):
        """Send lines of text, CRLF-terminated as telnet expects."""
        if self.closing or self.transport is None:
            return
        self.send(view.terminal_bytes(text))

    def send(self, data):
        """Send lines already encoded (CRLF-terminated), counted as ``say`` counts them."""
        if self.closing or self.transport is None:
            return
        self.transport.write(data)
        if self._lines.paused:
            self._unsent += len(data)
            if self._unsent > self.limits.output_limit:
                self._not_reading()

    def error(self, text):
        self.say("error: " + text)

    def close(self, last_line):
        """
        Say ``last_line``, handle nothing more, hang up; abort the connection
        if the client does not take the last words in time.
        """
        if self.closing:
            return
        self.say(last_line)
        self.closing = True
        self._lines.close()
        # A registered producer would keep a paused transport open.
        self.transport.unregisterProducer()
        # Half-close: the last line goes out, and what the client still sends
        # is read and dropped (dataReceived) until it hangs up -- closing with
        # unread input would send a reset, and the client could lose the line.
        half_close = getattr(self.transport, "loseWriteConnection", None)
        if half_close is not None:
            half_close()
        else:
            self.transport.loseConnection()
        self._abort_call = self.factory.clock.callLater(CLOSE_GRACE, self._abort)

    def _abort(self):
        self._abort_call = None
        if not self.closed:
            self.transport.abortConnection()

    # -- limits -------------------------------------------------------------------

    def pauseProducing(self):
        """The client does not read: handle no more lines, count what is said."""
        self._lines.pause()

    def resumeProducing(self):
        self._unsent = 0
        self._lines.resume()

    def stopProducing(self):
        pass            # connectionLost follows, and does the work

    def _not_reading(self):
        log.info("console session of {who} from {client} closed: over {limit} bytes unsent "
                 "(the client does not read)", who=self.user or "nobody", client=self.client,
                 limit=self.limits.output_limit)
        self.closing = True
        self._lines.close()
        self.transport.abortConnection()

    def _slow_down(self):
        self.error("slow down: over %g lines a second; your lines wait their turn"
                   % (self.limits.line_rate,))

    def _flooded(self):
        log.info("console session of {who} from {client} closed: over {limit} bytes of "
                 "lines waiting", who=self.user or "nobody", client=self.client,
                 limit=self.limits.input_limit)
        self.close("error: too much input waiting (over %d KiB); slow down -- goodbye"
                   % (self.limits.input_limit // 1024,))

    def timeoutConnection(self):
        if self.user is None:
            self.close("error: no login in %g s; goodbye" % (self.limits.login_timeout,))
        else:
            self.close("error: idle for %g s; goodbye" % (self.limits.idle_timeout,))

    # -- lines in ---------------------------------------------------------------

    def dataReceived(self, data):
        """
        Split into lines at LF (a CR before it is dropped); skip over-long
        lines.  Each byte is looked at once, however the data is cut.
        """
        if self.closing:
            return
        if self.user is not None:
            self.resetTimeout()
        buffer = self._buffer + data if self._buffer else data
        start = 0
        while not self.closing:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line, start = buffer[start:end], end + 1
            if self._discarding:
                self._discarding = False
            elif len(line) > self.MAX_LENGTH:
                self._too_long()
            else:
                self.lineReceived(line)
        rest = buffer[start:] if not self.closing else b""
        if self._discarding:
            rest = b""
        elif len(rest) > self.MAX_LENGTH:
            self._too_long()
            rest = b""
            self._discarding = True
        self._buffer = rest

    def _too_long(self):
        self.error("line too long (over %d bytes); ignored" % (self.MAX_LENGTH,))

    def lineReceived(self, raw):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.error("the line is not valid UTF-8; ignored")
            return
        self._lines.put(line, len(raw))

    def _handle(self, line):
        d = defer.maybeDeferred(self.dispatch, line)
        d.addErrback(self._failed, line)
        return d

    def _failed(self, failure, line):
        if failure.check(RemoteHostError):
            # The wave's host did not take it: say so, and that nothing was
            # done here either, so the user knows to type it again later.
            command = line.strip().partition(" ")[0]
            undone = ("%s was not done" % (command,) if command.startswith("/")
                      else "your line was not sent")
            self.error("%s; %s" % (failure.value, undone))
        elif failure.check(UsageError, ModelError, WaveServerError):
            self.error(str(failure.value))
        else:
            log.failure("console command {line!r} failed", failure, line=line[:80])
            self.error("internal error; see the server log")

    def dispatch(self, line):
        stripped = line.strip()
        if not stripped.startswith("/"):
            if self.user is None:
                raise UsageError("log in first: /login USER PASSWORD")
            if not stripped:
                return None
            return self.do_text(line)
        command, _, rest = stripped[1:].partition(" ")
        command = command.lower()
        handler = getattr(self, "cmd_" + command, None)
        if handler is None:
            raise UsageError("unknown command /%s; /help lists the commands" % (command,))
        if self.user is None and command not in ("login", "help", "quit"):
            raise UsageError("log in first: /login USER PASSWORD")
        return handler(rest.strip())

    # -- commands -----------------------------------------------------------------

    def cmd_help(self, rest):
        self.say(HELP)

    def cmd_quit(self, rest):
        self.close("bye")

    @defer.inlineCallbacks
    def cmd_login(self, rest):
        if self.user is not None:
            raise UsageError("already logged in as %s" % (self.user,))
        name, _, password = rest.partition(" ")
        if not name or not password:
            raise UsageError("usage: /login USER PASSWORD")
        try:
            user = yield self.factory.login_guard.login(name, password, self.client)
        except LoginRefused as e:
            self.login_failures += 1
            why = "login %s: %s" % ("refused" if isinstance(e, TooManyFailures) else "failed", e)
            if self.login_failures >= MAX_LOGIN_FAILURES:
                if e.retry_after:
                    self.error(why)
                self.close("error: login failed; too many tries, goodbye")
                return
            raise UsageError(why)
        if self.closing:
            return
        self.user = user
        self.setTimeout(self.limits.idle_timeout)
        self.server.subscribe_participant(user, self._inbox_watcher)
        inbox = yield self.server.inbox(user)
        unread = sum(1 for info in inbox if info.unread)
        self.say("logged in as %s: %d wave(s), %d unread.  /list shows them." % (
            user, len(inbox), unread))

    @defer.inlineCallbacks
    def cmd_new(self, rest):
        if rest:
            raise UsageError("usage: /new")
        generator = self.factory.id_generators[self.user.domain]
        name = generator.new_conversation_root()
        delta = WaveletDelta(self.user, HashedVersion.zero(name),
                             view.new_wave_operations(self.user))
        yield self.server.submit(name, delta)
        self.say("created wave %s" % (view.wave_label(name),))
        yield self._open(name)

    @defer.inlineCallbacks
    def cmd_list(self, rest):
        if rest:
            raise UsageError("usage: /list")
        inbox = yield self.server.inbox(self.user)
        self.inbox_names = [view.name_from_uri(info.name) for info in inbox]
        if not inbox:
            self.say("your inbox is empty; /new creates a wave")
            return
        for i, info in enumerate(inbox):
            name = self.inbox_names[i]
            digest = ""
            try:
                state = yield self.server.wavelet(name)
                digest = view.digest(state)
            except Exception:
                log.failure("cannot load {uri} for the inbox", uri=info.name)
            problems = self.server.delivery_problems(
                [ParticipantId(p) for p in info.participants])
            self.say(view.inbox_line(i, info, name, digest, opened=(name == self.open_name),
                                     pending=problems))

    @defer.inlineCallbacks
    def cmd_open(self, rest):
        if not rest:
            raise UsageError("usage: /open N  (N from /list)")
        try:
            n = int(rest)
        except ValueError:
            raise UsageError("/open needs a wave number from /list, not %r" % (rest,))
        names = self.inbox_names
        if not names:
            inbox = yield self.server.inbox(self.user)
            names = self.inbox_names = [view.name_from_uri(info.name) for info in inbox]
        if not 0 <= n < len(names):
            raise UsageError("no wave %d in your inbox (%s)" % (
                n, "0 to %d" % (len(names) - 1) if names else "it is empty"))
        yield self._open(names[n])

    def cmd_add(self, rest):
        return self._participant_change(rest, "add")

    def cmd_remove(self, rest):
        return self._participant_change(rest, "remove")

    @defer.inlineCallbacks
    def _participant_change(self, rest, verb):
        if not rest or " " in rest:
            raise UsageError("usage: /%s USER@DOMAIN" % (verb,))
        self._need_open_wave()
        # The checks and their words are the server's, shared with the web client.
        try:
            warning = yield self.server.change_participant(self.open_name, self.user, verb, rest)
        except InvalidParticipantId as e:
            raise UsageError("/%s: %s" % (verb, e))
        if warning is not None:
            self.say("warning: " + warning)

    @defer.inlineCallbacks
    def cmd_read(self, rest):
        if rest:
            raise UsageError("usage: /read")
        inbox = yield self.server.inbox(self.user)
        count = 0
        for info in inbox:
            if info.unread:
                yield self.server.mark_read(self.user, view.name_from_uri(info.name))
                count += 1
        self.say("marked %d wave(s) read" % (count,))

    @defer.inlineCallbacks
    def cmd_view(self, rest):
        if rest not in ("normal", "xml"):
            raise UsageError("usage: /view normal  or  /view xml")
        self.mode = rest
        if self.open_name is not None:
            state = yield self.server.wavelet(self.open_name)
            self._show_all(state)
        else:
            self.say("view: %s (no wave open)" % (rest,))

    @defer.inlineCallbacks
    def do_text(self, line):
        self._need_open_wave()
        # What the user saw when they typed: the state as it is now, without
        # queueing behind submits in flight (the core transforms if needed).
        state = self.server.current_state(self.open_name)
        if state is None:
            state = yield self.server.wavelet(self.open_name)
        generator = self.factory.id_generators[self.user.domain]
        operations = view.append_blip_operations(state, self.user, generator.new_blip_id(), line)
        yield self._submit(operations, state.hashed_version)

    # -- the open wave ------------------------------------------------------------

    def _need_open_wave(self):
        if self.open_name is None:
            raise UsageError("no wave is open: /list, then /open N (or /new)")

    @defer.inlineCallbacks
    def _submit(self, operations, target=None):
        name = self.open_name
        if target is None:
            state = yield self.server.wavelet(name)
            target = state.hashed_version
        yield self.server.submit(name, WaveletDelta(self.user, target, operations))

    @defer.inlineCallbacks
    def _open(self, name):
        state = yield self.server.wavelet(name)
        if self.user not in view.participants(state):
            raise UsageError("you are not a participant of %s" % (view.wave_label(name),))
        if self.closing:
            return      # gone while the wave was read: nothing to subscribe for
        self._close_wave()
        self.open_name = name
        self.server.subscribe(name, self._wave_watcher)
        self._show_all(state)

    def _close_wave(self):
        if self.open_name is not None:
            self.server.unsubscribe(self.open_name, self._wave_watcher)
        self.open_name = None
        self.seen = view.OpenWave()

    def _show_all(self, state):
        self.say(view.header(self.open_name, state,
                             self.server.delivery_problems(view.participants(state))))
        rendered = self.seen.show_all(state)
        if self.mode == "xml":
            self.say(view.wave_xml(state))
        else:
            for _, author, text in rendered:
                self.say(view.blip_line(author, text))

    # -- listeners ----------------------------------------------------------------

    def wave_changed(self, update):
        """A durable delta of the open wave: show what it did."""
        if update.wavelet_name != self.open_name:
            return
        for line in view.participant_notices(update, self.user):
            self.say(line)
        if self.user not in update.participants_after:
            # Removed: what happens next on this wave is none of our business.
            self._close_wave()
            self._told = update
            self.say("(you are no longer a participant; the wave is closed)")
            return
        state = self.server.current_state(update.wavelet_name)
        if state is not None:
            self._show_new(state, update)

    def _show_new(self, state, update):
        if update.wavelet_name != self.open_name:
            return
        rendering = self.factory.rendering(state, update)
        if self.mode == "xml":
            self.send(rendering.xml_bytes())
            return
        for blip_id in self.seen.show_new(rendering):
            self.send(rendering.blip_bytes(blip_id))

    def inbox_changed(self, update):
        """A durable delta of any wave of ours: announce being added or removed."""
        if update.wavelet_name == self.open_name or update is self._told:
            return   # the open wave shows its own notices (the last one, too)
        if update.author == self.user:
            return   # the user did it here, and was told
        if self.user in update.added:
            self.say("* %s added you to wave %s; /list shows it"
                     % (update.author, view.wave_label(update.wavelet_name)))
        elif self.user in update.removed:
            self.say("* %s removed you from wave %s"
                     % (update.author, view.wave_label(update.wavelet_name)))
