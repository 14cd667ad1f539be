"""
Memory as wavebox runs it, in this one process (SQLite, WAL, synchronous=FULL):

wavelets   --wavelets wavelets touched (created, then one line typed each),
           --writers at a time, by a WaveServer with the eviction twistd
           gives it by default (--max-loaded-wavelets 10000,
           --wavelet-idle-time 600): the resident set size (RSS, and its
           peak) as they are touched, and how many containers stay loaded.
history    one wavelet of --history deltas, then its whole history read
           the way the federation host answers a history request
           (WaveServer.history in pieces of at most 1 MiB, each made into
           the <iq> of a history response and serialised, the requester
           asking again from where a piece was truncated): the peak RSS
           growth while streaming it, beside reading it in one piece.

Deltas are not signed here (signing costs time, not memory): the figures
are about what is kept, and for how long.  With --reuse DIR the history
wavelet of an earlier run in DIR is read again instead of typed anew.

Usage: python benchmarks/bench_memory.py [--cases wavelets,history]
       [--wavelets 100000] [--writers 200] [--history 100000] [--dir DIR]
       [--reuse DIR]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402

from wavebox.federation import stanzas  # noqa: E402
from wavebox.federation.host import HISTORY_RESPONSE_BYTES  # noqa: E402
from wavebox.model import conversation  # noqa: E402
from wavebox.model.delta import HashedVersion, WaveletDelta  # noqa: E402
from wavebox.model.ids import IdGenerator, ParticipantId  # noqa: E402
from wavebox.server.waveserver import WaveServer  # noqa: E402
from wavebox.store import open_store  # noqa: E402
from wavebox.wire import convert  # noqa: E402

DOMAIN = "bench.test"
AUTHOR = ParticipantId("alice@" + DOMAIN)
STORE = "sqlite:bench.sqlite3"


def status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak():
    """Start VmHWM again from the current RSS (Linux: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@defer.inlineCallbacks
def line(server, name, generator, text):
    state = yield server.wavelet(name)
    ops = conversation.append_blip_ops(state, generator.new_blip_id(), text)
    yield server.submit(name, WaveletDelta(AUTHOR, state.hashed_version, ops))


@defer.inlineCallbacks
def touch_wavelets(reactor, directory, count, writers):
    store = open_store(STORE, directory, reactor=reactor)
    server = WaveServer(store, [DOMAIN], clock=reactor, max_loaded=10000, idle_time=600.0)
    generator = IdGenerator(DOMAIN)
    done = [0]
    started = time.perf_counter()
    print("wavelets: %d touched (made, then a line typed), %d at a time; "
          "--max-loaded-wavelets 10000, --wavelet-idle-time 600" % (count, writers))
    print("  %9s %9s %9s %10s %8s" % ("touched", "RSS MB", "peak MB", "loaded", "s"))
    print("  %9d %9.0f %9.0f %10d %8.1f" % (0, status_mb("VmRSS"), status_mb("VmHWM"), 0, 0))
    step = max(1, count // 10)

    @defer.inlineCallbacks
    def writer():
        while done[0] < count:
            done[0] += 1
            n = done[0]
            name = generator.new_conversation_root()
            yield server.submit(name, WaveletDelta(AUTHOR, HashedVersion.zero(name),
                                                   conversation.create_wave_ops(AUTHOR)))
            yield line(server, name, generator, "line of wavelet %d" % (n,))
            if n % step == 0:
                print("  %9d %9.0f %9.0f %10d %8.1f" % (
                    n, status_mb("VmRSS"), status_mb("VmHWM"), len(server._containers),
                    time.perf_counter() - started))
                sys.stdout.flush()
    try:
        yield defer.gatherResults([writer() for _ in range(writers)], consumeErrors=True)
    finally:
        yield store.close()
    print("  peak RSS after %d wavelets touched: %.0f MB (evicted %d containers)"
          % (count, status_mb("VmHWM"), server.evicted))


@defer.inlineCallbacks
def fill_history(reactor, directory, deltas):
    store = open_store(STORE, directory, reactor=reactor)
    server = WaveServer(store, [DOMAIN], clock=reactor)
    generator = IdGenerator(DOMAIN)
    name = generator.new_conversation_root()
    yield server.submit(name, WaveletDelta(AUTHOR, HashedVersion.zero(name),
                                           conversation.create_wave_ops(AUTHOR)))
    started = time.perf_counter()
    typed = [1]

    @defer.inlineCallbacks
    def writer():
        # Four writers at once: their syncs are shared (group commit).
        while typed[0] < deltas:
            typed[0] += 1
            yield line(server, name, generator, "line %d" % (typed[0],))
    yield defer.gatherResults([writer() for _ in range(4)], consumeErrors=True)
    state = yield server.wavelet(name)
    yield store.close()
    print("history: %d deltas typed into one wavelet in %.0f s (version %d)"
          % (typed[0], time.perf_counter() - started, state.hashed_version.version))
    with open(os.path.join(directory, "history-wavelet"), "w") as f:
        f.write(name.uri)


@defer.inlineCallbacks
def stream_history(reactor, directory):
    from wavebox.model.ids import WaveletName
    with open(os.path.join(directory, "history-wavelet")) as f:
        name = WaveletName.from_uri(f.read().strip())
    store = open_store(STORE, directory, reactor=reactor)
    server = WaveServer(store, [DOMAIN], clock=reactor)
    try:
        state = yield server.wavelet(name)
        end = state.hashed_version
        request = stanzas.build_history_request("wave.b.test", "wave." + DOMAIN, "h1",
                                                stanzas.HistoryRequest(
                                                    name.uri, 0, b"", end.version,
                                                    end.history_hash, None))
        request["from"], request["to"] = "wave.b.test", "wave." + DOMAIN
        for label, budget in (("in pieces of at most 1 MiB (as the host answers)",
                               HISTORY_RESPONSE_BYTES), ("in one piece", None)):
            before = status_mb("VmRSS")
            peak_reset = reset_peak()
            started = time.perf_counter()
            start, pieces, deltas, sent = HashedVersion.zero(name), 0, 0, 0
            while start.version < end.version:
                piece = yield server.history(name, start, end, max_bytes=budget)
                last = convert.parse_applied_delta(piece[-1]).resulting_version
                iq = stanzas.build_history_response(request, stanzas.HistoryResponse(
                    tuple(piece), commit_notice_version=end.version,
                    truncated_version=last.version if last.version < end.version else None))
                sent += len(iq.toXml().encode("utf-8"))
                pieces += 1
                deltas += len(piece)
                start = last
                del piece, iq
            print("  history of %d deltas (%.0f MB of XML) %s: %d piece(s) in %.1f s; "
                  "peak RSS growth %.1f MB%s" % (
                      deltas, sent / 1e6, label, pieces, time.perf_counter() - started,
                      status_mb("VmHWM") - before,
                      "" if peak_reset else " (peak not reset: an upper bound)"))
            sys.stdout.flush()
    finally:
        yield store.close()


@defer.inlineCallbacks
def main(reactor, args):
    print("machine: %d CPUs, load average %s" % (
        os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg())))
    if "wavelets" in args.cases:
        directory = tempfile.mkdtemp(prefix="wavebox-bench-mem-", dir=args.dir)
        try:
            yield touch_wavelets(reactor, directory, args.wavelets, args.writers)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    if "history" in args.cases:
        directory = args.reuse or tempfile.mkdtemp(prefix="wavebox-bench-hist-", dir=args.dir)
        if not os.path.exists(os.path.join(directory, "history-wavelet")):
            yield fill_history(reactor, directory, args.history)
        print("  (kept in %s: --reuse %s reads it again)" % (directory, directory))
        yield stream_history(reactor, directory)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="wavelets,history")
    p.add_argument("--wavelets", type=int, default=100000)
    p.add_argument("--writers", type=int, default=200)
    p.add_argument("--history", type=int, default=100000)
    p.add_argument("--dir", default=None)
    p.add_argument("--reuse", default=None, help="a directory an earlier run kept")
    args = p.parse_args(argv)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    return args


if __name__ == "__main__":
    task.react(main, [parse(sys.argv[1:])])
