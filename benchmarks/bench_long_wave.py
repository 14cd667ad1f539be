"""
What a typed line costs in a long wave against a short one, in one process
and without the network: the WaveServer (memory store, unsigned) and
--sessions console sessions that have the wave open, one line at a time,
--lines lines into the wave once it holds 100 blips and again once it
holds --blips.  Prints the
milliseconds per line (CPU of this process per line, and wall time), the
ratio, and the renderings the console made per line.

Usage: python benchmarks/bench_long_wave.py [--blips 10000] [--lines 3000]
       [--sessions 20]
"""

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from tests.helpers import quick_hash  # noqa: E402
from wavebox.console.session import ConsoleFactory  # noqa: E402
from wavebox.model import conversation  # noqa: E402
from wavebox.model.delta import HashedVersion, WaveletDelta  # noqa: E402
from wavebox.model.ids import IdGenerator, ParticipantId  # noqa: E402
from wavebox.server.waveserver import WaveServer  # noqa: E402
from wavebox.store.accounts import verify_password  # noqa: E402
from wavebox.store.memory import MemoryStore  # noqa: E402

ALICE = ParticipantId("alice@a.test")


def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blips", type=int, default=10000)
    p.add_argument("--lines", type=int, default=3000)
    p.add_argument("--sessions", type=int, default=20)
    args = p.parse_args()
    store = MemoryStore()
    clock = task.Clock()
    store.add_account("alice@a.test", quick_hash("pw"))
    server = WaveServer(store, ["a.test"], clock=clock)
    factory = ConsoleFactory(server, ["a.test"], clock=clock, verify_password=lambda pw, h:
                             defer.succeed(verify_password(pw, h)))
    ids = IdGenerator("a.test", seed="long")
    name = ids.new_conversation_root()
    server.submit(name, WaveletDelta(ALICE, HashedVersion.zero(name),
                                     conversation.create_wave_ops(ALICE)))

    def line(text):
        state = server.current_state(name)
        ops = conversation.append_blip_ops(state, ids.new_blip_id(), text)
        d = server.submit(name, WaveletDelta(ALICE, state.hashed_version, ops))
        assert d.called

    print("one process, memory store, unsigned; %d console sessions with the wave open; "
          "%d lines each; load average %s" % (args.sessions, args.lines,
                                              " ".join("%.2f" % x for x in os.getloadavg())))
    figures = []
    sessions = []
    blips = 0
    for start in (100, args.blips):
        while blips < start:
            line("filler")
            blips += 1
        for session, _ in sessions:
            session.connectionLost(None)
        sessions = []
        for _ in range(args.sessions):
            session, transport = factory.buildProtocol(None), StringTransport()
            session.makeConnection(transport)
            session.dataReceived(b"/login alice pw\r\n/open 0\r\n")
            sessions.append((session, transport))
        renderings = factory.renderings
        wall, used = time.perf_counter(), cpu()
        for i in range(args.lines):
            line("measured %d" % (i,))
        blips += args.lines
        wall, used = time.perf_counter() - wall, cpu() - used
        figures.append(1000.0 * used / args.lines)
        print("  from %6d blips: %.3f ms CPU a line (%.3f ms wall), %.2f renderings a line"
              % (start, figures[-1], 1000.0 * wall / args.lines,
                 (factory.renderings - renderings) / args.lines))
    print("  CPU a line from %d blips / from 100 blips: %.2f" % (args.blips,
                                                                     figures[1] / figures[0]))


if __name__ == "__main__":
    main()
