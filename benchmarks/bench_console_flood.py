"""
One console user floods ``twistd wavebox`` (issue 9, finding 6) while
another keeps typing: the other user's echo latency with and without the
flood, the server's RSS before, during and after, and what the flooder got.

Loopback only; bounded in count (--flood-lines lines of --line-bytes) and
time (--seconds for the flood phase).  The baseline is the same user typing
on an idle server, in the same run.  ``--checkout DIR`` runs the server
from another checkout (e.g. main before issue 9) to compare.

    python benchmarks/bench_console_flood.py [--flood-lines 20000] [--line-bytes 16384]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from tests.helpers import CHECKOUT, console_login, quick_hash, start_twistd_wavebox  # noqa
from wavebox.store import open_store  # noqa: E402


class Cleanups:
    """What start_twistd_wavebox and console_login need of a test case."""

    def __init__(self):
        self.calls = []

    def addCleanup(self, f, *args):
        self.calls.append((f, args))

    @defer.inlineCallbacks
    def run(self):
        for f, args in reversed(self.calls):
            try:
                yield f(*args)
            except Exception:
                pass


def rss_mib(pid):
    with open("/proc/%d/status" % (pid,)) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


@defer.inlineCallbacks
def type_lines(client, n, tag):
    """Type n lines one after the other; the echo latency of each, in ms."""
    latencies = []
    for i in range(n):
        text = "%s %d" % (tag, i)
        start = time.perf_counter()
        client.send(text)
        yield client.expect("^bob@a.test: %s$" % (text,))
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def describe(latencies):
    return "median %.1f ms, max %.1f ms (%d lines)" % (
        statistics.median(latencies), max(latencies), len(latencies))


@defer.inlineCallbacks
def flood(client, lines, size, deadline):
    """Write the flood as fast as the connection takes it; lines written."""
    line = b"x" * (size - 2) + b"\r\n"
    written = 0
    while written < lines and time.perf_counter() < deadline and client.transport.connected:
        client.transport.write(line * 64)
        written += 64
        yield task.deferLater(client.clock, 0, lambda: None)
    return written


@defer.inlineCallbacks
def main(reactor, args):
    tmp = tempfile.mkdtemp(prefix="wavebox-flood-")
    data = os.path.join(tmp, "data")
    store = open_store("sqlite:wavebox.sqlite3", data)
    for user in ("bob@a.test", "mallory@a.test"):
        yield store.add_account(user, quick_hash("pw"))
    yield store.close()
    cleanups = Cleanups()
    try:
        proc, port = yield start_twistd_wavebox(cleanups, tmp, [
            "--domain", "a.test", "--data-dir", data, "--console-port", "0",
            "--console-interface", "127.0.0.1", "--s2s-interface", "127.0.0.1",
            "--s2s-port", "0"], checkout=args.checkout)
        pid = proc.transport.pid
        bob = yield console_login(cleanups, port, "bob@a.test", "pw", "bob@a.test")
        bob.send("/new")
        yield bob.expect("^created wave")
        baseline = yield type_lines(bob, args.typed, "alone")
        rss_before = rss_mib(pid)

        mallory = yield console_login(cleanups, port, "mallory@a.test", "pw")
        mallory.clock = reactor
        mallory.send("/new")
        yield mallory.expect("^created wave")
        deadline = time.perf_counter() + args.seconds
        flooding = flood(mallory, args.flood_lines, args.line_bytes, deadline)
        during = yield type_lines(bob, args.typed, "flooded")
        rss_during = rss_mib(pid)
        written = yield flooding
        closed = not mallory.transport.connected
        if mallory.transport.connected:
            mallory.transport.loseConnection()
        yield mallory.closed
        rss_after = rss_mib(pid)
        yield task.deferLater(reactor, args.settle, lambda: None)
        after = yield type_lines(bob, args.typed, "after")
        rss_later = rss_mib(pid)
        echoed = sum(1 for l in mallory.lines if l.startswith("mallory@a.test: xxx"))
        last = [l for l in mallory.lines if l.startswith("error:")][-1:] or ["(no error)"]

        print("server: %s" % (args.checkout,))
        print("flood: %d lines of %d bytes written by mallory (%.0f MiB)" % (
            written, args.line_bytes, written * args.line_bytes / 2 ** 20))
        print("bob's echo latency, server idle (baseline): %s" % (describe(baseline),))
        print("bob's echo latency, during the flood:       %s" % (describe(during),))
        print("bob's echo latency, after mallory left:     %s" % (describe(after),))
        print("server RSS: before flood %.0f MiB, during %.0f MiB, mallory gone %.0f MiB, "
              "%.0f s later %.0f MiB" % (rss_before, rss_during, rss_after, args.settle,
                                         rss_later))
        print("mallory: %d of its lines echoed; closed by the server: %s; last error: %s" % (
            echoed, "yes" if closed else "no", last[0]))
    finally:
        yield cleanups.run()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood-lines", type=int, default=20000)
    parser.add_argument("--line-bytes", type=int, default=16384)
    parser.add_argument("--typed", type=int, default=50, help="lines bob types in each phase")
    parser.add_argument("--seconds", type=float, default=60.0, help="longest flood")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds to wait after the flooder left before measuring again")
    parser.add_argument("--checkout", default=CHECKOUT,
                        help="the checkout whose wavebox the server runs")
    args = parser.parse_args()
    task.react(main, [args])
