"""
Deltas per second through the whole submit pipeline -- validate, transform,
apply, hash, sign (SHA1withRSA), store, acknowledge -- for:

* one wavelet, one writer that waits for each acknowledgement (the latency
  of a single chat line);
* 100 wavelets, one such writer on each, all at once (how far group commit
  in the store carries concurrent wavelets);

with the SQLite store (WAL, synchronous=FULL: every acknowledged delta is
synced) and the memory store as a baseline, in the same run.  Deltas are
signed in the signing pool twistd runs (two threads beside the reactor).
The machine's limits are measured in the same run (benchmarks/limits.py):
the rates are printed as ratios of the 2-thread sign rate and of the fsync
rate of the store's directory.

    python benchmarks/bench_submit.py [--seconds S] [--wavelets N] [--no-sign] [--no-pool]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from wavebox.crypto import Signer  # noqa: E402
from wavebox.model import conversation  # noqa: E402
from wavebox.model.delta import HashedVersion, WaveletDelta  # noqa: E402
from wavebox.model.ids import IdGenerator, ParticipantId  # noqa: E402
from benchmarks.limits import Limits  # noqa: E402
from wavebox.server.waveserver import SigningPool, WaveServer  # noqa: E402
from wavebox.store import open_store  # noqa: E402
from wavebox.xmpp.certs import cert_pem, key_pem, make_server_certificate  # noqa: E402

DOMAIN = "bench.test"
AUTHOR = ParticipantId("alice@" + DOMAIN)


@defer.inlineCallbacks
def writer(server, name, generator, deadline, counter):
    """Create a wave, then append blips one at a time until the deadline."""
    delta = WaveletDelta(AUTHOR, HashedVersion.zero(name),
                         conversation.create_wave_ops(AUTHOR))
    yield server.submit(name, delta)
    n = 0
    while time.perf_counter() < deadline:
        state = server.current_state(name)
        ops = conversation.append_blip_ops(state, generator.new_blip_id(), "line %d" % n)
        yield server.submit(name, WaveletDelta(AUTHOR, state.hashed_version, ops))
        counter[0] += 1
        n += 1


@defer.inlineCallbacks
def run_case(reactor, store_url, wavelets, seconds, signers, pool):
    tmp = tempfile.mkdtemp(prefix="wavebox-bench-")
    store = open_store(store_url, tmp, reactor=reactor)
    try:
        server = WaveServer(store, [DOMAIN], signers=signers, clock=reactor,
                            snapshot_interval=100, signing_pool=pool)
        generator = IdGenerator(DOMAIN)
        names = [generator.new_conversation_root() for _ in range(wavelets)]
        counter = [0]
        commits_before = store.commit_count
        start = time.perf_counter()
        deadline = start + seconds
        yield defer.gatherResults([writer(server, n, generator, deadline, counter)
                                   for n in names], consumeErrors=True)
        elapsed = time.perf_counter() - start
        commits = store.commit_count - commits_before
        return counter[0], elapsed, commits
    finally:
        yield store.close()
        shutil.rmtree(tmp, ignore_errors=True)


@defer.inlineCallbacks
def main(reactor, args):
    signers = {}
    if not args.no_sign:
        key, cert = make_server_certificate([DOMAIN])
        signers = {DOMAIN: Signer(key_pem(key), cert_pem(cert), DOMAIN)}
    tmp = tempfile.mkdtemp(prefix="wavebox-limits-")
    try:
        limits = Limits(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("limits (same run, machine possibly shared): %s" % (limits,))
    print("submit -> store -> acknowledge, %.0f s per case, deltas signed: %s"
          % (args.seconds, ("yes (RSA 2048, on the reactor thread)" if args.no_pool else
                            "yes (RSA 2048, in a 2-thread signing pool)") if signers else "no"))
    print("%-8s %9s %10s %11s %10s %12s %7s %7s" % (
        "store", "wavelets", "deltas", "deltas/s", "commits", "deltas/commit",
        "/sign2", "/fsync"))
    pool = None if args.no_pool else SigningPool(2, reactor=reactor)
    pool and pool.start()
    try:
        for url, label in (("memory:", "memory"), ("sqlite:bench.sqlite3", "sqlite")):
            for wavelets in (1, args.wavelets):
                done, elapsed, commits = yield run_case(reactor, url, wavelets,
                                                        args.seconds, signers, pool)
                rate = done / elapsed
                print("%-8s %9d %10d %11.0f %10d %12.1f %7.3f %7.3f" % (
                    label, wavelets, done, rate, commits,
                    (done + wavelets) / commits if commits else float("nan"),
                    rate / limits.sign2, rate / limits.fsync))
                sys.stdout.flush()
    finally:
        pool and pool.stop()


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each case")
    p.add_argument("--wavelets", type=int, default=100, help="wavelets in the concurrent case")
    p.add_argument("--no-sign", action="store_true", help="leave deltas unsigned")
    p.add_argument("--no-pool", action="store_true",
                   help="sign on the reactor thread (the baseline before the signing pool)")
    return p.parse_args(argv)


if __name__ == "__main__":
    task.react(main, [parse(sys.argv[1:])])
