"""
The admin channel: how ``wavebox status``, ``users``, ``waves`` and
``outbox`` talk to the running server (what ``prosodyctl`` does through
Prosody's admin socket).

A UNIX stream socket, ``admin.sock`` in the data directory by default
(``--admin-socket``), mode 0600 in a 0700 directory: only the server's own
user (and root) can connect, so connecting is the authentication.  One JSON
object per line each way: ``{"command": NAME, ...arguments}`` is answered
with ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": TEXT}``.

Why through the server rather than the store: the server holds live state
the store does not (streams, routes, uptime, the console sessions of a user),
and a change such as dropping a destination's outbox must reach the running
delivery queue, not only the table under it.  When no server runs, the
commands use the store directly, under the store lock
(:mod:`wavebox.store.lock`), so that a server cannot start in the middle.

This module is wiring, like :mod:`wavebox.service`: it reads every layer
and is read by none.
"""

import json
import os
import socket

from twisted.application import service
from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from wavebox import __version__

log = Logger()

#: A request or an answer longer than this is refused (a status of thousands of
#: streams is well below it).
MAX_LINE = 16 * 1024 * 1024


class AdminError(Exception):
    """A command was refused; the text says why, for the operator."""


# --- the socket path ------------------------------------------------------------

def socket_path(config):
    """The admin socket ``config`` names (relative to the data dir), or None when off."""
    if not config.admin_socket:
        return None
    return os.path.join(config.data_dir, config.admin_socket)


class ShortPath:
    """
    A UNIX socket path short enough for ``sockaddr_un`` (108 bytes): long
    ones are reached through ``/proc/self/fd/N/NAME``, N an open descriptor
    of the socket's directory.  Keep it open while the path is in use.
    """

    LIMIT = 100

    def __init__(self, path):
        self.path = path
        self._fd = None
        if len(os.fsencode(path)) < self.LIMIT:
            self.usable = path
        else:
            directory, name = os.path.split(os.path.abspath(path))
            self._fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            self.usable = "/proc/self/fd/%d/%s" % (self._fd, name)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# --- the client side (the wavebox commands) ------------------------------------

class NotRunning(Exception):
    """No server answers on the admin socket."""


def ask(path, command, timeout=30.0, **arguments):
    """
    Send one command to the server listening on ``path``; its result.
    Raises :class:`NotRunning` when nobody answers there, :class:`AdminError`
    when the server refuses the command.  Plain sockets: the commands run
    without a reactor.
    """
    try:
        short = ShortPath(path)
    except FileNotFoundError:
        raise NotRunning("no server answers on %s (no such directory)" % (path,)) from None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            try:
                s.connect(short.usable)
            except (FileNotFoundError, ConnectionRefusedError) as e:
                raise NotRunning("no server answers on %s (%s)" % (path, e.strerror)) from None
            request = dict(arguments, command=command)
            s.sendall(json.dumps(request).encode("utf-8") + b"\n")
            buffer = b""
            while not buffer.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    raise AdminError("the server closed the admin connection without an "
                                     "answer")
                buffer += chunk
                if len(buffer) > MAX_LINE:
                    raise AdminError("the server's answer is too long")
    except socket.timeout:
        raise AdminError("the server did not answer within %gs" % (timeout,)) from None
    finally:
        short.close()
    answer = json.loads(buffer.decode("utf-8"))
    if not answer.get("ok"):
        raise AdminError(answer.get("error") or "refused")
    return answer.get("result")


# --- the server side ------------------------------------------------------------

class _AdminConnection(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE

    def lineReceived(self, line):
        try:
            request = json.loads(line.decode("utf-8"))
            command = request.pop("command")
            handler = self.factory.commands[command]
        except (ValueError, KeyError, TypeError, AttributeError):
            self._answer({"ok": False, "error": "not a command this server knows: %r"
                                                % (line[:80],)})
            return
        d = defer.maybeDeferred(handler, **request)
        d.addCallbacks(lambda result: {"ok": True, "result": result}, self._refused,
                       errbackArgs=(command,))
        d.addCallback(self._answer)

    def _refused(self, failure, command):
        if failure.check(AdminError, TypeError):
            return {"ok": False, "error": str(failure.value)}
        log.failure("admin command {command} failed", failure, command=command)
        return {"ok": False, "error": "%s failed: %s" % (command, failure.getErrorMessage())}

    def _answer(self, answer):
        if self.transport is not None:
            self.sendLine(json.dumps(answer).encode("utf-8"))
            self.transport.loseConnection()

    def lineLengthExceeded(self, line):
        self.transport.loseConnection()


class AdminService(service.Service):
    """
    Listens on the admin socket; ``commands`` maps each command name to a
    callable of its JSON arguments that returns (or fires with) a JSON value.
    """

    name = "admin"

    def __init__(self, path, commands, reactor=None):
        self.path = path
        self.commands = commands
        self._reactor = reactor
        self._port = None
        self._short = None

    def startService(self):
        from twisted.internet.error import CannotListenError

        from wavebox.config import ConfigError
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        service.Service.startService(self)
        self._short = ShortPath(self.path)
        if os.path.exists(self.path):
            try:
                ask(self.path, "version", timeout=5)
            except (NotRunning, AdminError, OSError, ValueError):
                os.unlink(self.path)        # left by a server that was killed
            else:
                raise ConfigError("--admin-socket: another wavebox answers on %s"
                                  % (self.path,))
        factory = protocol.Factory.forProtocol(_AdminConnection)
        factory.commands = self.commands
        factory.noisy = False
        try:
            self._port = reactor.listenUNIX(self._short.usable, factory, mode=0o600)
        except CannotListenError as e:
            raise ConfigError("--admin-socket: cannot listen on %s: %s"
                              % (self.path, e.socketError))
        log.info("admin socket listening on {path}", path=self.path)

    def stopService(self):
        service.Service.stopService(self)
        port, self._port = self._port, None
        d = defer.maybeDeferred(port.stopListening) if port is not None else defer.succeed(None)

        def closed(result):
            if self._short is not None:
                self._short.close()
                self._short = None
            return result
        return d.addBoth(closed)


# --- the commands ----------------------------------------------------------------

class StoreCommands:
    """
    The commands that need only the store: what the channel answers from the
    running server, and what the ``wavebox`` commands do themselves (under
    the store lock) when no server runs.  Both give the same answers.
    """

    def __init__(self, store, config):
        self._store = store
        self.config = config

    @property
    def store(self):
        return self._store

    def table(self):
        return {
            "users": self.users,
            "user-add": self.user_add,
            "user-delete": self.user_delete,
            "user-password": self.user_password,
            "waves": self.waves,
            "outbox": self.outbox,
            "outbox-drop": self.outbox_drop,
        }

    # hooks for the live server
    def _live_outbox(self):
        return {}

    def _drop_live_queue(self, destination):
        pass

    def _given_up(self):
        return {}

    def _end_sessions(self, address):
        return 0

    @defer.inlineCallbacks
    def outbox(self):
        """Every destination with queued updates: the store's count, the live queue's state."""
        backlog = yield self.store.outbox_backlog()
        live = self._live_outbox()
        given_up = self._given_up()
        rows = []
        for destination in sorted(set(backlog) | set(live) | set(given_up)):
            retry = yield self.store.outbox_get_retry(destination)
            queue = live.get(destination, {})
            problem = given_up.get(destination)
            rows.append({"destination": destination, "queued": backlog.get(destination, 0),
                         "failures": retry.failures if retry else 0,
                         "next_attempt_ms": retry.next_attempt_ms if retry else None,
                         "since_ms": (retry.since_ms if retry else None) or
                         queue.get("since_ms") or (problem.since_ms if problem else None),
                         "last_error": queue.get("last_error"),
                         "in_flight": queue.get("in_flight", 0),
                         "given_up": problem.reason if problem else None})
        return rows

    @defer.inlineCallbacks
    def outbox_drop(self, destination):
        self._drop_live_queue(destination)
        dropped = yield self.store.outbox_drop(destination)
        log.warn("outbox to {dest}: dropped {n} queued update(s) by an operator's command",
                 dest=destination, n=dropped)
        return {"destination": destination, "dropped": dropped}

    def users(self):
        return self.store.accounts()

    def _local(self, address):
        domain = address.rpartition("@")[2]
        if "@" not in address or (self.config.domains and domain not in self.config.domains):
            raise AdminError("%s is not an account of a hosted domain (%s)"
                             % (address, ", ".join(self.config.domains)))
        return address

    @defer.inlineCallbacks
    def user_add(self, address, password_hash):
        from wavebox.store import AccountExists
        try:
            yield self.store.add_account(self._local(address), password_hash)
        except AccountExists:
            raise AdminError("%s already has an account (--replace sets a new password)"
                             % (address,))
        return address

    @defer.inlineCallbacks
    def user_password(self, address, password_hash):
        from wavebox.store import UnknownAccount
        try:
            yield self.store.set_password(self._local(address), password_hash)
        except UnknownAccount:
            raise AdminError("%s has no account to replace" % (address,))
        return address

    @defer.inlineCallbacks
    def user_delete(self, address):
        from wavebox.store import UnknownAccount
        try:
            yield self.store.delete_account(self._local(address))
        except UnknownAccount:
            raise AdminError("%s has no account" % (address,))
        ended = self._end_sessions(address)
        log.info("account {address} deleted by an operator's command; {n} console "
                 "session(s) ended", address=address, n=ended)
        return {"address": address, "sessions_ended": ended}

    @defer.inlineCallbacks
    def waves(self):
        wavelets = yield self.store.all_wavelets()
        return [{"wavelet": w.name, "version": w.version, "participants": list(w.participants),
                 "hosted": w.hosted, "last_modified_ms": w.last_modified_ms}
                for w in wavelets]


class ServerCommands(StoreCommands):
    """The running server's commands: the store's, with live effects, and its status."""

    def __init__(self, top, config, reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        StoreCommands.__init__(self, None, config)
        self.top = top
        self.reactor = reactor

    @property
    def store(self):
        return self.top.wave_server.store

    def table(self):
        return dict(StoreCommands.table(self), version=self.version, status=self.status,
                    discover=self.discover)

    def _console(self):
        return self.top.getServiceNamed("console").factory

    def _live_outbox(self):
        federation = getattr(self.top, "federation", None)
        return {q["destination"]: q for q in federation.outbox.status()} if federation else {}

    def _given_up(self):
        federation = getattr(self.top, "federation", None)
        return dict(federation.outbox.given_up) if federation else {}

    def _drop_live_queue(self, destination):
        federation = getattr(self.top, "federation", None)
        if federation is not None:
            federation.outbox.drop(destination, "dropped by an operator (wavebox outbox drop)")

    def _end_sessions(self, address):
        return self._console().end_sessions_of(address, "your account was deleted")

    def version(self):
        return {"version": __version__, "pid": os.getpid(),
                "domains": list(self.config.domains)}

    @defer.inlineCallbacks
    def status(self):
        top = self.top
        s2s = getattr(top, "s2s", None)
        outbox = yield self.outbox()
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime": self.reactor.seconds() - top.started_at if top.started_at else 0,
            "domains": list(self.config.domains),
            "config": self.config.config,
            "store": self.config.store,
            "mode": "component" if self.config.component else "s2s",
            "streams": s2s.describe_streams() if s2s is not None else [],
            "routes": s2s.describe_routes() if s2s is not None else [],
            "outbox": outbox,
            "console_sessions": len(self._console().sessions),
        }

    @defer.inlineCallbacks
    def discover(self, domain):
        """
        The server's own discovery of ``domain``, afresh (``wavebox check``
        while the server runs: disco answers come back on the peer's stream
        to our listener, which only the server has).
        """
        from wavebox.xmpp.discovery import DiscoveryFailed
        discovery = getattr(self.top, "discovery", None)
        if discovery is None:
            raise AdminError("in component mode the XMPP server finds peers, not wavebox")
        discovery.forget(domain)
        try:
            result = yield discovery.discover(domain)
        except DiscoveryFailed as e:
            return {"found": False, "domain": e.domain, "condition": e.condition,
                    "reason": e.reason, "trace": list(e.trace)}
        return {"found": True, "domain": result.domain, "jid": result.jid,
                "endpoints": [[e.host, e.port, e.target, e.direct_tls]
                              for e in result.endpoints],
                "trace": list(result.trace)}
