"""
Appends per second through the store, with every acknowledgement durable.

Two workloads, each on the SQLite engine (WAL, synchronous=FULL: one fsync
per transaction) and on the memory engine as the baseline, in the same run:

sequential   one wavelet; each append waits for the previous one's
             acknowledgement, as the submits to one wavelet do.  One
             transaction (one sync) per append.
concurrent   100 wavelets, each a sequential chain, all in flight at once.
             Appends that wait while a commit syncs share the next
             transaction (group commit), so a sync carries many deltas.

Usage: python benchmarks/bench_store.py [--sequential N] [--per-wavelet N]
       [--wavelets N] [--dir DIRECTORY]
The database is made in a fresh temporary directory (under --dir if given:
put it on the disk you want to measure) and removed afterwards.
"""

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from wavebox.store.interface import StoredDelta  # noqa: E402
from wavebox.store.memory import MemoryStore  # noqa: E402
from wavebox.store.sqlite import SqliteStore  # noqa: E402

PAYLOAD_BYTES = 400     # about the size of a small applied delta with its signature


def make_delta(wavelet, version):
    seed = hashlib.sha256(b"%d:%d" % (wavelet, version)).digest()
    body = (seed * (PAYLOAD_BYTES // len(seed) + 1))[:PAYLOAD_BYTES]
    return StoredDelta(version, version + 1, seed[:20], body, "bench@a.test",
                       1700000000000 + version)


def name(wavelet):
    return "wave://a.test/w+bench%d/conv+root" % (wavelet,)


async def chain(store, wavelet, count):
    for version in range(count):
        await store.append_delta(name(wavelet), make_delta(wavelet, version),
                                 participants=["bench@a.test"])


async def sequential(store, count):
    start = time.perf_counter()
    await chain(store, 0, count)
    return count, time.perf_counter() - start


async def concurrent(store, wavelets, per_wavelet):
    start = time.perf_counter()
    await defer.gatherResults(
        [defer.ensureDeferred(chain(store, 1000 + w, per_wavelet)) for w in range(wavelets)])
    return wavelets * per_wavelet, time.perf_counter() - start


def report(label, engine, appends, seconds, commits):
    print("%-34s %-7s %7d appends  %7.3f s  %10.0f appends/s  %6d commits  %6.1f appends/commit"
          % (label, engine, appends, seconds, appends / seconds, commits,
             appends / commits if commits else 0))


async def main(reactor, options):
    directory = tempfile.mkdtemp(prefix="bench-store-", dir=options.dir)
    try:
        print("SQLite %s, database in %s" % (__import__("sqlite3").sqlite_version, directory))
        for engine in ("sqlite", "memory"):
            if engine == "sqlite":
                store = SqliteStore(os.path.join(directory, "bench.sqlite3"), reactor=reactor)
            else:
                store = MemoryStore()
            before = store.commit_count
            appends, seconds = await sequential(store, options.sequential)
            report("sequential (1 wavelet)", engine, appends, seconds,
                   store.commit_count - before)
            before = store.commit_count
            appends, seconds = await concurrent(store, options.wavelets, options.per_wavelet)
            report("concurrent (%d wavelets)" % (options.wavelets,), engine, appends, seconds,
                   store.commit_count - before)
            await store.close()
    finally:
        shutil.rmtree(directory)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sequential", type=int, default=1000,
                   help="appends in the sequential run (default 1000)")
    p.add_argument("--wavelets", type=int, default=100,
                   help="wavelets in the concurrent run (default 100)")
    p.add_argument("--per-wavelet", type=int, default=50,
                   help="appends per wavelet in the concurrent run (default 50)")
    p.add_argument("--dir", default=None, help="where to make the temporary database")
    return p.parse_args(argv)


if __name__ == "__main__":
    options = parse(sys.argv[1:])
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, options)))
