"""
Metrics and a health check for operators (issue 13, item 4): Prometheus's
text format on ``/metrics`` (prometheus-client) and ``/health``, on an HTTP
listener of their own (``--metrics-interface``/``--metrics-port``, localhost,
off unless a port is given), so that scraping never shares a port with
anything a stranger can reach.

Two kinds of figures, as Synapse and Prosody's mod_prometheus have them:

- **State**, read when scraped (a collector): S2S streams by direction and
  state, each remote destination's outbox (queued updates, age of the oldest,
  failures in a row), console sessions, uptime.  Nothing is kept in step
  with the server: the figures are the server's own at that moment.
- **Events**, counted as they happen: deltas applied (by origin: a user of
  ours, or of another server), S2S failures (dialback, TLS), and histograms
  of submit latency (submit to durable) and store commit latency (one
  group commit).  The layers below report them through small hooks
  (``WaveServer.submit_observers``, the store's ``commit_observers``, the S2S
  service's ``failure_observers``), so none of them imports this module.

This module is wiring, like :mod:`wavebox.service`: it reads every layer.
"""

import json
import os

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.application import service
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.web import resource, server
from zope.interface import implementer

from wavebox import __version__, ports
from wavebox.clock import default_clock
from wavebox.server.interfaces import IWaveletListener

log = Logger()

#: Submit and commit latencies: from a millisecond (a batch in memory) to the
#: seconds a slow disk or a remote host can take.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


@implementer(IWaveletListener)
class _DeltaCounter:
    """Counts every durable delta, by the origin of its author."""

    def __init__(self, counter, domains):
        self.counter = counter
        self.domains = set(domains)

    def wavelet_updated(self, update):
        origin = "local" if update.author.domain in self.domains else "remote"
        self.counter.labels(origin=origin).inc()


class _StateCollector:
    """The server's state, read at each scrape."""

    def __init__(self, top, clock):
        self.top = top
        self.clock = clock

    def collect(self):
        top = self.top
        uptime = GaugeMetricFamily("wavebox_uptime_seconds", "seconds since the server started")
        if top.started_at is not None:
            uptime.add_metric([], self.clock.seconds() - top.started_at)
        yield uptime

        streams = GaugeMetricFamily("wavebox_s2s_streams", "S2S streams, by direction and "
                                    "state", labels=["direction", "state"])
        counts = {(d, s): 0 for d in ("incoming", "outgoing")
                  for s in ("authenticated", "negotiating")}
        s2s = getattr(top, "s2s", None)
        for stream in (s2s.describe_streams() if s2s is not None else ()):
            state = "authenticated" if stream["authenticated"] else "negotiating"
            counts[(stream["direction"], state)] += 1
        for (direction, state), n in sorted(counts.items()):
            streams.add_metric([direction, state], n)
        yield streams

        queued = GaugeMetricFamily("wavebox_outbox_queued", "updates waiting for the peer's "
                                   "receipt, by destination", labels=["destination"])
        oldest = GaugeMetricFamily("wavebox_outbox_oldest_seconds", "age of the oldest update "
                                   "waiting, by destination (since this process queued or "
                                   "read it)", labels=["destination"])
        failing = GaugeMetricFamily("wavebox_outbox_failures", "failed deliveries in a row, "
                                    "by destination", labels=["destination"])
        federation = getattr(top, "federation", None)
        for q in (federation.outbox.status() if federation is not None else ()):
            queued.add_metric([q["destination"]], q["queued"])
            oldest.add_metric([q["destination"]], q.get("oldest_seconds") or 0.0)
            failing.add_metric([q["destination"]], q["failures"])
        yield queued
        yield oldest
        yield failing

        sessions = GaugeMetricFamily("wavebox_sessions", "people's sessions, by front end",
                                     labels=["frontend"])
        for name in ("console", "web"):
            try:
                front_end = top.getServiceNamed(name)
            except KeyError:
                continue
            sessions.add_metric([name], len(front_end.sessions))
        yield sessions


class Metrics:
    """The registry and its instruments, hooked to the running server ``top``."""

    def __init__(self, top, domains, clock=None):
        clock = default_clock(clock)
        self.registry = CollectorRegistry(auto_describe=True)
        self.deltas = Counter("wavebox_deltas_applied", "durable deltas, by the origin of "
                              "their author", ["origin"], registry=self.registry)
        self.submit_seconds = Histogram("wavebox_submit_seconds", "local submits, from the "
                                        "submit to durable (or the host's answer)",
                                        buckets=LATENCY_BUCKETS, registry=self.registry)
        self.commit_seconds = Histogram("wavebox_store_commit_seconds", "one store commit "
                                        "(a group of writes and its sync)",
                                        buckets=LATENCY_BUCKETS, registry=self.registry)
        self.s2s_failures = Counter("wavebox_s2s_failures", "S2S streams that failed, by "
                                    "why (dialback, sasl, tls)", ["kind"], registry=self.registry)
        for origin in ("local", "remote"):
            self.deltas.labels(origin=origin)
        for kind in ("dialback", "sasl", "tls"):
            self.s2s_failures.labels(kind=kind)
        self.registry.register(_StateCollector(top, clock))
        self.listener = _DeltaCounter(self.deltas, domains)

    def attach(self, wave_server, s2s=None):
        """Hook the instruments to the layers that report events."""
        wave_server.add_listener(self.listener)
        wave_server.submit_observers.append(self.submit_seconds.observe)
        observers = getattr(s2s, "failure_observers", None)
        if observers is not None:
            observers.append(lambda kind: self.s2s_failures.labels(kind=kind).inc())

    def attach_store(self, store):
        observers = getattr(store, "commit_observers", None)
        if observers is not None:
            observers.append(self.commit_seconds.observe)

    def exposition(self):
        return generate_latest(self.registry)


class _MetricsPage(resource.Resource):
    isLeaf = True

    def __init__(self, metrics):
        resource.Resource.__init__(self)
        self.metrics = metrics

    def render_GET(self, request):
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return self.metrics.exposition()


class _HealthPage(resource.Resource):
    """200 when the store is open and every service runs, else 503, with why."""

    isLeaf = True

    def __init__(self, top, clock):
        resource.Resource.__init__(self)
        self.top = top
        self.clock = clock

    def render_GET(self, request):
        problems = []
        store = getattr(self.top.wave_server, "store", None)
        if store is None or getattr(store, "closed", False):
            problems.append("the store is not open")
        for child in self.top:
            if not child.running:
                problems.append("%s is not running" % (child.name,))
        body = {"status": "ok" if not problems else "unhealthy", "problems": problems,
                "version": __version__, "pid": os.getpid(),
                "uptime": (self.clock.seconds() - self.top.started_at
                           if self.top.started_at else 0)}
        request.setResponseCode(200 if not problems else 503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(body).encode("utf-8") + b"\n"


class MetricsService(service.Service):
    """The HTTP listener of /metrics and /health."""

    name = "metrics"

    def __init__(self, metrics, top, port, interface, reactor=None):
        self.metrics = metrics
        self.top = top
        self.port = port
        self.interface = interface
        self._reactor = reactor
        self.listening = None

    def startService(self):
        from wavebox.config import ConfigError
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        service.Service.startService(self)
        root = resource.Resource()
        root.putChild(b"metrics", _MetricsPage(self.metrics))
        root.putChild(b"health", _HealthPage(self.top, reactor))
        site = server.Site(root)
        site.displayTracebacks = False
        site.noisy = False
        self.metrics.attach_store(self.top.wave_server.store)
        try:
            self.listening = ports.listen_tcp(reactor, self.port, site, interface=self.interface)
        except CannotListenError as e:
            raise ConfigError("--metrics-port: cannot listen on %s:%s: %s" % (
                e.interface or "*", e.port, getattr(e.socketError, "strerror", None)
                or e.socketError))
        host = self.listening.getHost()
        log.info("metrics and health listening on http://{host}:{port}/metrics",
                 host=host.host, port=host.port)

    def stopService(self):
        service.Service.stopService(self)
        listening, self.listening = self.listening, None
        if listening is not None:
            return listening.stopListening()

