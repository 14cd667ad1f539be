"""
Issue 9's hostile cases against a real ``twistd wavebox`` (a.test on
127.0.0.2, default options) while b.test, an authenticated peer, pings it
over its own stream (tests/hostile.py).  For each case: the worst round
trip of b.test's pings while it ran, the server's RSS before and after, and
what the attacker got.  Loopback only; every case is bounded in
connections, bytes and time.

    python benchmarks/bench_hostile.py [--quick]

``--quick`` runs 200 hostile and 100 idle connections instead of 2,000 and
1,000.  Goals (docs/performance.rst, "Hostile input"): no case delays the
other stream's pings by more than 100 ms; 2,000 hostile connections hold
the server's RSS under 300 MB.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, reactor  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from tests import hostile  # noqa: E402

MiB = 1024 * 1024
#: Seconds any one case may take before it is reported as unfinished.
CASE_GUARD = 90
PING_GOAL = 0.100
RSS_GOAL = 300 * MiB


def sleep(seconds):
    return deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def one_stranger(target, payloads):
    stranger = yield target.stranger(payloads)
    try:
        yield stranger.done.addTimeout(CASE_GUARD, reactor)
    except defer.TimeoutError:
        stranger.close()
        return "no answer in %d s" % (CASE_GUARD,)
    return "stream error <%s/>" % (stranger.condition,) if stranger.condition else \
        "closed without a stream error"


def entities(depth):
    return lambda target: one_stranger(target, [hostile.entity_bomb(depth)])


def newlines(target):
    return one_stranger(target, [hostile.HEADER, "<message><body>", "\n" * MiB])


def spaces(target):
    return one_stranger(target, [hostile.HEADER, "<message>", " " * (9 * MiB)])


@defer.inlineCallbacks
def nested(target):
    condition = yield target.authenticated_raw(hostile.nested_iq(2000))
    # c.test's route reopens on demand, outside the measurement.
    return "stream error <%s/>" % (condition,) if condition else "no stream error"


@defer.inlineCallbacks
def connect_all(target, sources, payloads, batch=50):
    strangers = []
    for start in range(0, len(sources), batch):
        results = yield defer.DeferredList(
            [target.stranger(payloads, source) for source in sources[start:start + batch]],
            consumeErrors=True)
        strangers += [value for ok, value in results if ok]
    return strangers


def hostile_connections(count):
    @defer.inlineCallbacks
    def attack(target):
        # 10 per address, the default cap of unauthenticated streams per address;
        # each holds 8 KB of an unfinished stanza, under the 10 KB limit.
        sources = hostile.source_addresses(count // 10, 10)
        strangers = yield connect_all(
            target, sources, [hostile.HEADER, "<message><body>", " " * 8000])
        yield sleep(2)                  # the server has read what they sent
        held = target.rss()
        outcome = hostile.tally(strangers)
        outcome["connect failed"] = len(sources) - len(strangers)
        for s in strangers:
            s.close()
        return "%s; RSS while held %.0f MB" % (_describe(outcome), held / MiB), held
    return attack


def idle_connections(count):
    @defer.inlineCallbacks
    def attack(target):
        sources = hostile.source_addresses(count // 10, 10, base=20)
        strangers = yield connect_all(target, sources, [])
        deadline = time.monotonic() + CASE_GUARD
        while any(s.closed_at is None for s in strangers) and time.monotonic() < deadline:
            yield sleep(0.5)
        lifetimes = sorted(s.closed_at - s.connected_at for s in strangers
                           if s.closed_at is not None)
        outcome = hostile.tally(strangers)
        for s in strangers:
            s.close()
        held = ("held %.0f-%.0f s" % (lifetimes[0], lifetimes[-1])) if lifetimes else ""
        return "%s; %s" % (_describe(outcome), held)
    return attack


def _describe(outcome):
    return ", ".join("%s: %d" % (k, v) for k, v in sorted(outcome.items()) if v)


@defer.inlineCallbacks
def main(quick):
    cleanups = hostile._Cleanups()
    many, idle = (200, 100) if quick else (2000, 1000)
    cases = [
        ("entity expansion, depth 6", entities(6)),
        ("entity expansion, depth 9", entities(9)),
        ("1 MiB of newlines in an element", newlines),
        ("a stanza of 9 MiB of spaces", spaces),
        ("2,000-level iq from an authenticated peer", nested),
        ("%d hostile connections holding data" % (many,), hostile_connections(many)),
        ("%d idle connections" % (idle,), idle_connections(idle)),
    ]
    failures = []
    try:
        target = yield hostile.Target.start(cleanups, cleanups.mktemp())
        target.pinger.start()
        lag = hostile.Lag()
        lag.start()
        yield sleep(1)
        print("twistd wavebox pid %d, RSS %.0f MB at rest; b.test pings every 20 ms"
              % (target.pid, target.rss() / MiB))
        print("%-44s %10s %9s %9s %9s  %s" % ("case", "worst ping", "our lag", "RSS before",
                                               "RSS after", "the attacker got"))
        for name, attack in cases:
            before = target.rss()
            target.pinger.reset()
            lag.reset()
            result = yield attack(target)
            peak = None
            if isinstance(result, tuple):
                result, peak = result
            yield sleep(1)              # pings after the case count too
            worst = target.pinger.worst
            after = target.rss()
            print("%-44s %8.1f ms %6.1f ms %6.0f MB %6.0f MB  %s"
                  % (name, worst * 1000, lag.worst * 1000, before / MiB, after / MiB, result))
            if worst > PING_GOAL:
                failures.append("%s: worst ping %.0f ms" % (name, worst * 1000))
            if target.pinger.failures:
                failures.append("%s: pings failed: %s" % (name, target.pinger.failures[:3]))
            if peak is not None and many >= 2000 and peak > RSS_GOAL:
                failures.append("%s: RSS %.0f MB" % (name, peak / MiB))
            if not target.alive:
                failures.append("the server died in %s" % (name,))
                break
            if name.startswith("2,000-level"):
                yield target.peers["c.test"].request(hostile.ping_iq("c.test", "a.test"),
                                                     timeout=hostile.GUARD)
        yield target.pinger.stop()
        lag.stop()
        print("unhandled errors in the server's log: %d, tracebacks: %d"
              % (target.log_count("Unhandled error"), target.log_count("Traceback")))
    finally:
        yield cleanups.run()
    print("goals met" if not failures else "goals missed: " + "; ".join(failures))


if __name__ == "__main__":
    quick = "--quick" in sys.argv[1:]
    outcome = []

    def run():
        d = main(quick)
        d.addErrback(lambda f: (f.printTraceback(), outcome.append(1)))
        d.addBoth(lambda _: reactor.stop())
    reactor.callWhenRunning(run)
    reactor.run()
    sys.exit(1 if outcome else 0)
