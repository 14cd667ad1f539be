"""
Finding the wave service of a remote domain: the 13 steps of the seed's
"Connection Establishment" (federation.txt), built on XMPP hostname
resolution (RFC 6120 section 3.2, :mod:`wavebox.xmpp.resolver`) and service
discovery (XEP-0030, asked through the ``disco`` callable of the S2S layer).

The steps, as :meth:`WaveServiceDiscovery._discover` tells them:

1-4.  SRV ``_xmpp-server._tcp.DOMAIN``; without SRV, the A/AAAA records of
      DOMAIN on port 5269.
5-6.  Connect to DOMAIN and ask disco#items, then disco#info of the items,
      for the ``collaboration/google-wave`` item.
7-8.  If the item's JID is not DOMAIN, resolve it as in steps 1-4.
9-10. Otherwise (no disco, no item, the item does not resolve), guess
      ``wave.DOMAIN`` and resolve that.
11.   If the guess is where step 5 connected, keep that connection.
12.   Use the JID at the endpoints found.
13.   Give up: :class:`DiscoveryFailed`, saying "not found" or "timeout".

One decision the seed leaves open: step 4 sends a domain whose resolution
fails straight to step 13, but the seed's overview says that "where a XMPP
server does not offer XMPP service discovery, *or the hostname resolution on
the domain name fails*, a guess is made ... 'wave.' is prepended", and its
"Recommended DNS Configuration" (item 4) lets a domain publish only
``_xmpp-server._tcp.wave.DOMAIN``.  We follow the overview: when DOMAIN does
not resolve (no SRV and no address, an SRV target of ".", or DNS errors),
steps 5-8 are skipped and step 9 still guesses ``wave.DOMAIN``.  A domain
that publishes nothing at all still fails, at step 10, and costs two more
queries.

Every step writes a line to a :class:`Trace`; the trace is logged at debug
level as it grows, and ``wavebox check`` prints the same lines, so what the
operator sees is what the server did.
"""

import random as _random
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.logger import Logger

from wavebox.clock import default_clock
from wavebox.xmpp.disco import DiscoUnavailable
from wavebox.xmpp.resolver import (NoServiceError, ResolutionError, Trace,
                                   ResolutionTimeout, resolve_server)

# Defaults in the spirit of Wave in a Box's disco cache: a found peer is
# trusted for two hours, a failed one is asked again after five minutes.
SUCCESS_TTL = 2 * 60 * 60
FAILURE_TTL = 5 * 60
# The disco exchange includes connecting, STARTTLS and dialback.
DISCO_TIMEOUT = 30.0

REMOTE_SERVER_NOT_FOUND = "remote-server-not-found"
REMOTE_SERVER_TIMEOUT = "remote-server-timeout"


@dataclass(frozen=True)
class DiscoveryResult:
    """Where the wave service of ``domain`` is: address stanzas to ``jid``,
    connect to ``endpoints`` in order."""
    domain: str
    jid: str
    endpoints: tuple
    trace: tuple = field(compare=False)


class DiscoveryFailed(Exception):
    """
    Step 13.  ``condition`` is the XMPP stanza error for stanzas that were
    waiting for this peer: ``remote-server-timeout`` when something did not
    answer in time (it may work later), ``remote-server-not-found`` otherwise.
    """

    def __init__(self, domain, condition, reason, trace):
        Exception.__init__(self, domain, condition, reason)
        self.domain = domain
        self.condition = condition
        self.reason = reason
        self.trace = tuple(trace)

    @property
    def timed_out(self):
        return self.condition == REMOTE_SERVER_TIMEOUT

    def __str__(self):
        return "%s: %s (%s)" % (self.domain, self.reason, self.condition)


def _is_timeout(error):
    return isinstance(error, (ResolutionTimeout, ConnectTimeoutError, defer.TimeoutError))


def _error_text(e):
    """A stanza error as 'condition: text', not as its class's repr."""
    condition = getattr(e, "condition", None)
    if isinstance(condition, str):
        text = getattr(e, "text", None)
        return "%s: %s" % (condition, text) if text else condition
    return str(e) or type(e).__name__


def _endpoints_text(endpoints):
    return ", ".join(str(e) for e in endpoints)


def _is_server_jid(jid):
    """A wave service is addressed by a domain JID: no node, no resource."""
    return bool(jid) and "@" not in jid and "/" not in jid


class _Run:
    """What one discovery has learnt so far."""

    def __init__(self, domain):
        self.domain = domain
        self.trace = Trace(domain)
        self.step5_endpoints = []   # where disco was asked (steps 5-6)
        self.step5_connected = False  # and whether it got an answer there
        self.failed_jids = set()    # names whose resolution already failed
        self.timed_out = False      # some answer never came
        self.no_disco_item = None   # why disco gave no usable JID, for step 13


class WaveServiceDiscovery:
    """
    The seed's connection establishment, with a cache per domain.

    ``disco(domain, endpoints) -> Deferred[str | None]`` is given by the S2S
    layer: it connects to (or reuses a stream to) ``domain`` at
    ``endpoints`` and returns the JID of its google-wave disco item, or None;
    it fails if it cannot connect or authenticate.
    """

    log = Logger()

    def __init__(self, resolver, disco, clock=None, success_ttl=SUCCESS_TTL,
                 failure_ttl=FAILURE_TTL, disco_timeout=DISCO_TIMEOUT,
                 service_prefix="wave", random=_random):
        clock = default_clock(clock)
        self.resolver = resolver
        self.disco = disco
        self.clock = clock
        self.success_ttl = success_ttl
        self.failure_ttl = failure_ttl
        self.disco_timeout = disco_timeout
        self.service_prefix = service_prefix
        self.random = random
        self._cache = {}      # domain -> (expires, DiscoveryResult | DiscoveryFailed)
        self._pending = {}    # domain -> [Deferred] waiting for a running discovery
        self._found = {}      # domain -> (jid, endpoints) last logged

    # --- the cache ----------------------------------------------------------

    def discover(self, domain):
        """Deferred[DiscoveryResult]; fails with :class:`DiscoveryFailed`."""
        domain = domain.strip().lower().rstrip(".")
        cached = self._cache.get(domain)
        if cached is not None:
            expires, outcome = cached
            if self.clock.seconds() < expires:
                if isinstance(outcome, DiscoveryFailed):
                    return defer.fail(outcome)
                return defer.succeed(outcome)
            del self._cache[domain]
        waiter = defer.Deferred()
        if domain in self._pending:
            self._pending[domain].append(waiter)
            return waiter
        self._pending[domain] = [waiter]
        self._discover(domain).addBoth(self._finished, domain)
        return waiter

    def _finished(self, outcome, domain):
        if isinstance(outcome, DiscoveryResult):
            ttl = self.success_ttl
            # A peer that is down is found again at every retry: say where
            # it is when that is news.
            found = (outcome.jid, outcome.endpoints)
            emit = self.log.debug if self._found.get(domain) == found else self.log.info
            self._found[domain] = found
            emit("wave service of {domain}: {jid} at {endpoints}", domain=domain,
                 jid=outcome.jid, endpoints=_endpoints_text(outcome.endpoints))
        else:
            if not outcome.check(DiscoveryFailed):
                # A bug of ours or of the disco callable: still a failure to
                # the waiting stanzas, never an unhandled error.
                self.log.failure("discovery of {domain} broke", outcome, domain=domain)
                outcome = DiscoveryFailed(domain, REMOTE_SERVER_NOT_FOUND, "internal error: %s"
                                          % (outcome.getErrorMessage(),), [])
            else:
                outcome = outcome.value
            ttl = self.failure_ttl
            self.log.info("no wave service found for {domain}: {reason}", domain=domain,
                          reason=str(outcome))
        self._cache[domain] = (self.clock.seconds() + ttl, outcome)
        for waiter in self._pending.pop(domain):
            if isinstance(outcome, DiscoveryFailed):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    def forget(self, domain):
        """Drop what is known of ``domain`` (e.g. its endpoints stopped answering)."""
        self._cache.pop(domain.strip().lower().rstrip("."), None)

    # --- the story ------------------------------------------------------------

    @defer.inlineCallbacks
    def _discover(self, domain):
        run = _Run(domain)

        endpoints = yield self.steps_1_to_4_resolve_domain(run)
        if endpoints:
            jid = yield self.steps_5_and_6_ask_disco(run, endpoints)
            if jid is not None:
                jid_endpoints = yield self.step_7_resolve_disco_jid(run, jid, endpoints)
                if jid_endpoints:
                    run.trace.step(8, "%s resolved: go to step 12" % (jid,))
                    return self.step_12_use(run, jid, jid_endpoints)
                run.trace.step(8, "%s did not resolve: go to step 9" % (jid,))

        guess = self.step_9_guess_service_jid(run)
        guess_endpoints = yield self.step_10_resolve_guess(run, guess)
        if not guess_endpoints:
            self.step_13_fail(run, guess)
        return self.step_12_use(run, guess, self.step_11_reuse_step_5(run, guess, guess_endpoints))

    @defer.inlineCallbacks
    def steps_1_to_4_resolve_domain(self, run):
        """SRV, then A/AAAA of the domain; [] when it does not resolve."""
        try:
            endpoints = yield self._resolve(run, run.domain, srv_step=1, target_step=2, a_step=3)
        except ResolutionError as e:
            if isinstance(e, NoServiceError):
                why = 'its SRV target is ".": it offers no XMPP service'
            else:
                why = "it does not resolve (%s)" % (e.reason,)
            run.trace.step(4, "%s: %s; skip disco, guess the wave service (step 9)"
                           % (run.domain, why))
            return []
        return endpoints

    @defer.inlineCallbacks
    def steps_5_and_6_ask_disco(self, run, endpoints):
        """The JID of the domain's google-wave disco item, or None."""
        run.step5_endpoints = list(endpoints)
        run.trace.step(5, "connect to %s at %s and ask disco"
                       % (run.domain, _endpoints_text(endpoints)))
        try:
            d = defer.maybeDeferred(self.disco, run.domain, list(endpoints))
            d.addTimeout(self.disco_timeout, self.clock)
            jid = yield d
        except DiscoUnavailable as e:
            run.trace.step(5, "disco: %s" % (e,))
            run.no_disco_item = "disco %s" % (e,)
            return None
        except defer.TimeoutError:
            run.timed_out = True
            run.trace.step(5, "disco with %s: no answer within %gs" % (run.domain, self.disco_timeout))
            run.no_disco_item = "disco timed out"
            return None
        except Exception as e:
            run.timed_out = run.timed_out or _is_timeout(e)
            run.trace.step(5, "disco with %s failed: %s" % (run.domain, _error_text(e)))
            run.no_disco_item = "disco failed"
            return None
        run.step5_connected = True
        if jid is None:
            run.trace.step(6, "disco#items %s -> no collaboration/google-wave item" % (run.domain,))
            run.no_disco_item = "no google-wave disco item"
            return None
        jid = str(jid).strip().lower().rstrip(".")
        if not _is_server_jid(jid):
            run.trace.step(6, "disco#items %s -> %s, not a server JID: ignored" % (run.domain, jid))
            run.no_disco_item = "the google-wave disco item %s is not a server JID" % (jid,)
            return None
        run.trace.step(6, "disco#items %s -> %s (collaboration/google-wave)" % (run.domain, jid))
        return jid

    @defer.inlineCallbacks
    def step_7_resolve_disco_jid(self, run, jid, endpoints):
        """Endpoints of the disco item's JID: the step-5 ones when it is the domain."""
        if jid == run.domain:
            run.trace.step(7, "%s is the domain itself: keep the step-5 connection" % (jid,))
            return list(endpoints)
        run.trace.step(7, "%s is not %s: resolve it" % (jid, run.domain))
        try:
            return (yield self._resolve(run, jid, srv_step=7, target_step=7, a_step=7))
        except ResolutionError:
            run.failed_jids.add(jid)
            run.no_disco_item = "its google-wave disco item %s does not resolve" % (jid,)
            return []

    def step_9_guess_service_jid(self, run):
        guess = "%s.%s" % (self.service_prefix, run.domain)
        run.trace.step(9, "guess the wave service JID: %s" % (guess,))
        return guess

    @defer.inlineCallbacks
    def step_10_resolve_guess(self, run, guess):
        if guess in run.failed_jids:
            run.trace.step(10, "%s already failed to resolve in step 7" % (guess,))
            return []
        try:
            return (yield self._resolve(run, guess, srv_step=10, target_step=10, a_step=10))
        except ResolutionError as e:
            run.trace.step(11, "%s does not resolve (%s): go to step 13" % (guess, e.reason))
            return []

    def step_11_reuse_step_5(self, run, guess, endpoints):
        """
        "If the IP or port is different to the connection established in 5.
        above, connect to the new IP/port": so when it is the same, the step-5
        endpoint comes first and the S2S layer can keep its stream.
        """
        seen = {(e.host, e.port) for e in endpoints}
        same = [e for e in run.step5_endpoints if (e.host, e.port) in seen]
        if not same:
            if run.step5_endpoints:
                run.trace.step(11, "%s is not %s: connect to %s"
                               % (guess, "where step 5 connected" if run.step5_connected
                                  else "at the address of step 5", _endpoints_text(endpoints)))
            return endpoints
        if run.step5_connected:
            run.trace.step(11, "%s is at %s, where step 5 connected: reuse it"
                           % (guess, _endpoints_text(same)))
        else:
            # Step 5 did not get through there: saying "reuse it" would
            # claim a connection that never was.
            run.trace.step(11, "%s is at %s, the address of step 5"
                           % (guess, _endpoints_text(same)))
        first = [e for e in endpoints if (e.host, e.port) == (same[0].host, same[0].port)]
        return first + [e for e in endpoints if e not in first]

    def step_12_use(self, run, jid, endpoints):
        rest = endpoints[1:]
        run.trace.step(12, "use %s at %s%s" % (
            jid, endpoints[0], " (then %s)" % (_endpoints_text(rest),) if rest else ""))
        return DiscoveryResult(run.domain, jid, tuple(endpoints), tuple(run.trace))

    def step_13_fail(self, run, guess):
        if not run.step5_endpoints:
            reason = "neither %s nor %s resolves" % (run.domain, guess)
        else:
            reason = "%s: %s; %s does not resolve" % (run.domain, run.no_disco_item, guess)
        condition = REMOTE_SERVER_TIMEOUT if run.timed_out else REMOTE_SERVER_NOT_FOUND
        if run.timed_out:
            reason += "; something did not answer in time"
        run.trace.step(13, "failed: %s (%s)" % (reason, condition))
        raise DiscoveryFailed(run.domain, condition, reason, run.trace)

    # --- helpers ------------------------------------------------------------------

    @defer.inlineCallbacks
    def _resolve(self, run, name, srv_step, target_step, a_step):
        try:
            return (yield resolve_server(self.resolver, name, run.trace, srv_step=srv_step,
                                         target_step=target_step, a_step=a_step,
                                         random=self.random))
        except ResolutionTimeout:
            run.timed_out = True
            raise


# --- `wavebox check` glue --------------------------------------------------------
