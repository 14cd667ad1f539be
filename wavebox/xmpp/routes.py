"""
The routes of S2S (RFC 6120 8.3, 10.4): stanzas from one of our domains to one
remote domain wait here, in order, until a stream authenticated for that
pair is ready; when none comes up they go back to their senders as stanza
errors, and the next attempt waits the retry policy's back-off.

The stream itself comes from :mod:`wavebox.xmpp.s2sout` (through the
service, :class:`wavebox.xmpp.server.S2SService`, which owns the routes).
"""

from twisted.logger import Logger
from twisted.words.protocols.jabber import error

from wavebox.xmpp.streams import describe_reason

log = Logger()


def _same_family(a, b):
    """Whether one domain is the other or a subdomain of it (a domain and its wave service)."""
    a, b = a.lower(), b.lower()
    return a == b or a.endswith("." + b) or b.endswith("." + a)


class _Route:
    """Stanzas from one of our domains to one remote domain, and their stream."""

    def __init__(self, local, remote):
        self.local = local
        self.remote = remote
        self.queue = []
        self.stream = None
        self.establishing = False
        self.failures = 0
        self.retry_at = 0
        self.retry_call = None

    @property
    def ready(self):
        stream = self.stream
        return (stream is not None and stream.usable
                and (self.local, self.remote) in stream.authenticated)


class Routes:
    """Every (local, remote) route of one S2S service, in ``table``."""

    def __init__(self, server):
        self.server = server
        self.table = {}

    def send(self, stanza, local, remote):
        """Send at once on a ready stream, else queue and see that a stream comes."""
        route = self.table.get((local, remote))
        if route is None:
            route = self.table[(local, remote)] = _Route(local, remote)
        if route.ready and not route.queue:
            route.stream.send(stanza)
            return
        route.queue.append(stanza)
        self._start(route)

    def _start(self, route):
        if route.establishing or route.retry_call is not None or self.server.stopping:
            return
        delay = route.retry_at - self.server.clock.seconds()
        if delay > 0:
            route.retry_call = self.server.clock.callLater(delay, self._establish, route)
        else:
            self._establish(route)

    def _establish(self, route):
        route.retry_call = None
        route.establishing = True
        d = self.server.outbound.stream_to(route.local, route.remote, authenticate=True)
        d.addCallbacks(self._route_ready, self._route_failed,
                       callbackArgs=(route,), errbackArgs=(route,))
        d.addErrback(self._route_broken, route)

    def _route_ready(self, stream, route):
        route.establishing = False
        if route.failures:
            log.info("S2S: stream from {local} to {remote} is up, after {failures} failed "
                     "attempt(s)", local=route.local, remote=route.remote,
                     failures=route.failures)
        route.failures = 0
        route.retry_at = 0
        route.stream = stream
        # Each stanza leaves the queue only once it is sent or returned to
        # its sender: what the stream could not take stays queued, in order.
        queue, done = route.queue, 0
        try:
            while done < len(queue) and route.ready:
                stanza = queue[done]
                done += 1
                try:
                    stream.send(stanza)
                except Exception:
                    log.failure("S2S: cannot send a <{name}/> from {local} to {remote}; "
                                "returned to its sender", name=stanza.name,
                                local=route.local, remote=route.remote)
                    self._bounce_safely(stanza, "internal-server-error", "could not be sent")
        finally:
            del queue[:done]
        if route.queue:             # the stream went away while sending
            self._start(route)

    def _route_broken(self, reason, route):
        """A bug of ours while a route was set up: what waits goes back, with an error."""
        log.failure("S2S: route from {local} to {remote} failed", reason,
                    local=route.local, remote=route.remote)
        route.establishing = False
        queue, route.queue = route.queue, []
        for stanza in queue:
            self._bounce_safely(stanza, "internal-server-error", "could not be sent")

    def _bounce_safely(self, stanza, condition, text):
        try:
            self._bounce(stanza, condition, text)
        except Exception:
            log.failure("S2S: cannot return a <{name}/> to its sender", name=stanza.name)

    def _route_failed(self, reason, route):
        route.establishing = False
        if self.server.stopping:
            route.queue = []
            return
        value = reason.value
        condition = getattr(value, "condition", None)
        if condition not in ("remote-server-not-found", "remote-server-timeout"):
            condition = "remote-server-timeout"
        route.failures += 1
        delay = self.server.retry.delay(route.failures)
        route.retry_at = self.server.clock.seconds() + delay
        queue, route.queue = route.queue, []
        # A peer that is down fails again at every retry, and whoever sent
        # the stanzas (the federation outbox) logs its own backlog: warn
        # once per outage, then only at debug level until a stream is up.
        emit = log.warn if route.failures == 1 else log.debug
        emit("S2S: no stream from {local} to {remote}: {reason}; returning "
             "{count} stanza(s) with <{condition}/>; next attempt in {delay:.0f}s{more}",
             local=route.local, remote=route.remote, reason=describe_reason(reason),
             count=len(queue), condition=condition, delay=delay,
             more=" (until it works, further failures are logged at debug level)"
             if route.failures == 1 else "")
        for stanza in queue:
            self._bounce(stanza, condition, describe_reason(reason))

    def _bounce(self, stanza, condition, text):
        """Return an undeliverable stanza to its (local) sender, RFC 6120 8.3."""
        if stanza.getAttribute("type") in ("error", "result"):
            return
        kind = "cancel" if condition == "remote-server-not-found" else "wait"
        self.server.deliver_local(
            error.StanzaError(condition, type=kind, text=text).toResponse(stanza))

    def end_back_off(self, domains, why):
        for route in list(self.table.values()):
            if not route.retry_at or route.establishing or self.server.stopping:
                continue
            if not any(_same_family(route.remote, d) for d in domains):
                continue
            log.debug("S2S: {remote} {why}: ending the back-off of our route from {local}",
                      remote=route.remote, why=why, local=route.local)
            route.retry_at = 0
            if route.retry_call is not None and route.retry_call.active():
                route.retry_call.cancel()
            route.retry_call = None
            if route.queue:
                self._establish(route)

    def stream_lost(self, session):
        for route in self.table.values():
            if route.stream is session:
                route.stream = None

    def stop(self):
        for route in self.table.values():
            if route.retry_call is not None and route.retry_call.active():
                route.retry_call.cancel()
            route.retry_call = None
            route.queue = []

    def describe(self):
        """Every (local, remote) route with stanzas waiting or a back-off, as plain values."""
        now = self.server.clock.seconds()
        return [{"local": r.local, "remote": r.remote, "queued": len(r.queue),
                 "ready": r.ready, "failures": r.failures,
                 "retry_in": max(0.0, r.retry_at - now) if r.retry_at else None}
                for (_, _), r in sorted(self.table.items())
                if r.queue or r.failures or not r.ready]
