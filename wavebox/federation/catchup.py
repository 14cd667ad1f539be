"""
Catching up after our own restart (wave protocol §7(d), §1.5).

While we were down, the hosts of the wavelets we replicate kept our updates
in their outboxes and retried with a growing wait (ours waits up to
``--federation-retry-max``, 300 s by default).  Nothing in the protocol
tells a host that a remote is back, but any stanza from us ends its wait
(our outbox does this; so does any sender that retries on incoming traffic).
So at start-up we ask each host about each wavelet we replicate from it and
that has one of our participants: one history request from the hashed
version we hold (:meth:`FederationRemote.catch_up`).  What the host then
sends goes through the usual update path, which fetches any gap until we
have caught up.

The work is bounded: one request per wavelet; one host's wavelets one after
another with a short pause between them; at most a few requests in flight
in all; every host's first request early.  A host that cannot be reached is
left alone after its first failure, at debug level: its own outbox resumes
at once when it starts, and our next update to it goes the usual way.

Wavelets we host need nothing here: our outbox tries every queue that still
holds items at once when we start (:meth:`Outbox.resume`).
"""

from twisted.internet import defer
from twisted.logger import Logger

from wavebox.clock import default_clock
from wavebox.federation.errors import UNREACHABLE, as_federation_error
from wavebox.federation.stanzas import FederationError
from wavebox.model.errors import ModelError
from wavebox.model.ids import ParticipantId, WaveletName

log = Logger()

#: Seconds after start-up before the first request: the S2S listener (or the
#: component stream) is coming up, and our outbox resumes first.
DEFAULT_DELAY = 1.0
#: Seconds between two requests to the same host.
DEFAULT_PAUSE = 0.1
#: Requests in flight at once, all hosts together.
DEFAULT_CONCURRENCY = 4

# UNREACHABLE (wavebox.federation.errors): the host is not there, so its other
# wavelets are not asked.


class StartupCatchUp:
    """
    ``server`` is the WaveServer (its store and domains), ``remote`` the
    :class:`~wavebox.federation.remote.FederationRemote`, ``clock`` an
    IReactorTime.
    """

    def __init__(self, server, remote, clock=None, delay=DEFAULT_DELAY, pause=DEFAULT_PAUSE,
                 concurrency=DEFAULT_CONCURRENCY):
        clock = default_clock(clock)
        self.server = server
        self.remote = remote
        self.clock = clock
        self.delay = delay
        self.pause = pause
        self.concurrency = concurrency
        self.stopped = True
        self._sleeping = {}        # delayed call -> the Deferred it fires
        self.asked = {}            # host -> wavelets asked about (this start-up)

    def start(self):
        """Begin after ``delay``; fires when every host is done (or we stopped)."""
        self.stopped = False
        self.asked = {}

        def failed(f):
            if not self.stopped:        # stopping closes the store under us: not news
                log.failure("catching up after the restart failed", f)
        return self._sleep(self.delay).addCallback(lambda _: self._run()).addErrback(failed)

    def stop(self):
        self.stopped = True
        sleeping, self._sleeping = self._sleeping, {}
        for call, d in sleeping.items():
            call.cancel()
            d.callback(None)

    def _sleep(self, seconds):
        d = defer.Deferred()

        def wake():
            del self._sleeping[call]
            d.callback(None)
        call = self.clock.callLater(seconds, wake)
        self._sleeping[call] = d
        return d

    @defer.inlineCallbacks
    def _run(self):
        if self.stopped:
            return
        by_host = yield self.replicated()
        if not by_host or self.stopped:
            return
        log.info("start-up: asking {hosts} host(s) what we missed in the {n} wavelet(s) we "
                 "replicate from them", hosts=len(by_host),
                 n=sum(len(w) for w in by_host.values()))
        gate = defer.DeferredSemaphore(self.concurrency)
        yield defer.DeferredList([self._host(host, wavelets, gate)
                                  for host, wavelets in sorted(by_host.items())])

    @defer.inlineCallbacks
    def replicated(self):
        """``{host domain: [(WaveletName, our domain)]}`` of what we should ask about."""
        infos = yield defer.maybeDeferred(self.server.store.all_wavelets, hosted=False)
        by_host = {}
        for info in infos:
            try:
                name = WaveletName.from_uri(info.name)
                ours = [ParticipantId(p) for p in info.participants
                        if self.server.is_local_participant(p)]
            except ModelError:
                continue
            if not ours or self.server.is_local(name):
                continue
            by_host.setdefault(name.wavelet_id.domain, []).append((name, ours[0].domain))
        return by_host

    @defer.inlineCallbacks
    def _host(self, host, wavelets, gate):
        """One host's wavelets, one at a time; the first unreachable answer ends it."""
        refused, first_refusal, received = 0, None, 0
        for i, (name, our_domain) in enumerate(wavelets):
            if self.stopped:
                return
            if i:
                yield self._sleep(self.pause)
                if self.stopped:
                    return
            yield gate.acquire()
            try:
                if self.stopped:
                    return
                self.asked[host] = self.asked.get(host, 0) + 1
                received += yield self.remote.catch_up(name, our_domain)
            except Exception as e:
                if self.stopped:
                    return          # the store may be closed under it: not news
                error = as_federation_error(e)
                if not isinstance(e, FederationError) and error.condition == \
                        "internal-server-error":
                    log.failure("catching up {uri} with {host} broke", uri=name.uri, host=host)
                if error.condition in UNREACHABLE:
                    log.debug("catching up with {host}: {condition} {text}; its outbox and "
                              "ours will deliver when it is back", host=host,
                              condition=error.condition, text=error.text or "")
                    return
                refused += 1
                if first_refusal is None:
                    first_refusal = "%s: %s %s" % (name.uri, error.condition, error.text or "")
                log.debug("catching up {uri} with {host}: {condition} {text}", uri=name.uri,
                          host=host, condition=error.condition, text=error.text or "")
            finally:
                gate.release()
        if refused:
            log.info("catching up with {host}: {refused} of {n} history request(s) refused "
                     "(first: {first})", host=host, refused=refused, n=len(wavelets),
                     first=first_refusal)
        else:
            log.debug("catching up with {host}: asked about {n} wavelet(s), {d} delta(s) "
                      "in the answers", host=host, n=len(wavelets), d=received)
