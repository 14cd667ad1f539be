"""
Federation speed: two wave servers in this process (a.test hosts the
wavelet, b.test has its participants), each with a durable SQLite store,
talking over S2S with STARTTLS (certificates from a test CA) and dialback,
found through a DNS server on loopback -- the stack of the end-to-end tests.

latency      one user of b.test types a line into a wavelet hosted on
             a.test and waits for it to come back: submit (signer check,
             transform, sign, store on a.test) -> submit response -> the
             host's update -> signature and hash chain checks -> stored on
             b.test.  Measured per line, one at a time; p50 and p99.
throughput   several users of b.test type into the same wavelet at once,
             each keeping one line in flight; deltas per second that come
             back stored on b.test.

Usage: python benchmarks/bench_federation.py [--lines N] [--users N]
       [--per-user N] [--dir DIRECTORY]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402
from zope.interface import implementer  # noqa: E402

from tests.federation_fixtures import insert  # noqa: E402
from tests.federation_stack import Federation, WaveStack  # noqa: E402
from wavebox.model.delta import HashedVersion, WaveletDelta  # noqa: E402
from wavebox.model.ids import IdGenerator, ParticipantId  # noqa: E402
from wavebox.model.operations import AddParticipant, MutateDocument  # noqa: E402
from wavebox.server.interfaces import IWaveletListener  # noqa: E402


@implementer(IWaveletListener)
class Arrivals:
    """Fires the Deferred waiting for a version once b.test has stored it."""

    def __init__(self):
        self.waiting = {}
        self.version = 0

    def until(self, version):
        if self.version >= version:
            return defer.succeed(None)
        d = defer.Deferred()
        self.waiting.setdefault(version, []).append(d)
        return d

    def wavelet_updated(self, update):
        self.version = max(self.version, update.resulting_version.version)
        for v in sorted(v for v in self.waiting if v <= self.version):
            for d in self.waiting.pop(v):
                d.callback(None)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


async def run(reactor, args):
    directory = tempfile.mkdtemp(prefix="bench-federation-", dir=args.dir)
    users = ["u%d@b.test" % i for i in range(args.users)]
    federation = Federation([
        WaveStack("a.test", os.path.join(directory, "a"), store_url=args.store),
        WaveStack("b.test", os.path.join(directory, "b"), store_url=args.store),
    ])
    try:
        await federation.start()
        a, b = federation["a.test"], federation["b.test"]
        alice = ParticipantId("alice@a.test")
        name = IdGenerator("a.test").new_conversation_root()
        await a.server.submit(name, WaveletDelta(alice, HashedVersion.zero(name),
                                                 [AddParticipant(alice)]))
        version = await a.server.hashed_version(name)
        await a.server.submit(name, WaveletDelta(
            alice, version, [AddParticipant(ParticipantId(u)) for u in users]))
        arrivals = Arrivals()
        b.server.subscribe(name, arrivals)
        await arrivals.until(1 + len(users))
        ids = IdGenerator("b.test")

        async def line(user, text):
            state = b.server.current_state(name)
            result = await b.server.submit(name, WaveletDelta(
                ParticipantId(user), state.hashed_version,
                [MutateDocument(ids.new_blip_id(), insert(text))]))
            await arrivals.until(result.hashed_version_after.version)

        # Warm up: streams, TLS, dialback, signer post and fetch.
        for i in range(5):
            await line(users[0], "warm-up %d" % i)
        # What is being measured, read from the running stack.
        streams = [s for stack in (a, b) for s in list(stack.s2s.incoming)
                   + list(stack.s2s.outgoing) if s.authenticated]
        print("stack: store %s on both servers; %d authenticated S2S stream(s), "
              "STARTTLS on all: %s, peer certificates verified by a test CA: %s"
              % (args.store, len(streams), all(s.tls_active for s in streams),
                 all(s.tls_verdict is not None and s.tls_verdict.chain_ok
                     for s in streams if s in a.s2s.outgoing or s in b.s2s.outgoing)))

        latencies = []
        for i in range(args.lines):
            start = time.perf_counter()
            await line(users[0], "line %d" % i)
            latencies.append(time.perf_counter() - start)
        print("latency: %d lines from b.test into a wavelet on a.test, one at a time"
              % (args.lines,))
        print("  p50 %.1f ms   p99 %.1f ms   min %.1f ms   max %.1f ms" % (
            1000 * percentile(latencies, 50), 1000 * percentile(latencies, 99),
            1000 * min(latencies), 1000 * max(latencies)))

        async def typist(user):
            for i in range(args.per_user):
                await line(user, "%s says %d" % (user, i))

        start = time.perf_counter()
        await defer.gatherResults([defer.ensureDeferred(typist(u)) for u in users])
        elapsed = time.perf_counter() - start
        total = args.users * args.per_user
        print("throughput: %d users of b.test, %d lines each, one in flight per user"
              % (args.users, args.per_user))
        print("  %d deltas in %.2f s = %.0f deltas/s (stored on a.test and back on b.test)"
              % (total, elapsed, total / elapsed))
        va = await a.store.current_version(name.uri)
        vb = await b.store.current_version(name.uri)
        print("  both servers at version %d, same hash: %s" % (va[0], va == vb))
    finally:
        await federation.stop()
        shutil.rmtree(directory, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--per-user", type=int, default=50)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--store", default="sqlite:wave.db",
                        help="store URL of both servers (memory: for a baseline)")
    args = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
