"""
A probe in a ``twistd wavebox`` child (``start_twistd_wavebox(main=MAIN)``):
a 10 ms timer that keeps the longest stretch between two of its runs, in
wall time and in the main thread's CPU time.  The CPU figure is the work
the reactor did without a turn for timers, which a loaded machine does not
inflate (a process that waits for a CPU uses none); the wall figure is what
a timer, or a ping, saw.

On SIGUSR1 the probe writes ``WALL_MS CPU_MS`` (the worst since the last
signal) to the file named by ``WAVEBOX_PROBE_FILE`` and starts afresh.
"""

import os
import signal
import time

INTERVAL = 0.01
MAIN = "import tests.reactor_probe as p; p.install(); from twisted.scripts.twistd import run; run()"


def install():
    from twisted.internet import reactor

    path = os.environ["WAVEBOX_PROBE_FILE"]
    state = {"wall": 0.0, "cpu": 0.0, "at": None}

    def tick():
        wall, cpu = time.monotonic(), time.thread_time()
        if state["at"] is not None:
            last_wall, last_cpu = state["at"]
            state["wall"] = max(state["wall"], wall - last_wall - INTERVAL)
            state["cpu"] = max(state["cpu"], cpu - last_cpu)
        state["at"] = (wall, cpu)
        reactor.callLater(INTERVAL, tick)

    def report(signum, frame):
        with open(path + ".tmp", "w") as f:
            f.write("%.1f %.1f\n" % (state["wall"] * 1000, state["cpu"] * 1000))
        os.replace(path + ".tmp", path)
        state["wall"] = state["cpu"] = 0.0

    signal.signal(signal.SIGUSR1, report)
    reactor.callWhenRunning(tick)
