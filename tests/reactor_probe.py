"""
A probe in a ``twistd wavebox`` child (``start_twistd_wavebox(main=MAIN)``):
a 10 ms timer that keeps the longest stretch between two of its runs, in
wall time and in the main thread's CPU time.  The CPU figure is the work
the reactor did without a turn for timers, which a loaded machine does not
inflate (a process that waits for a CPU uses none); the wall figure is what
a timer, or a ping, saw.

It also times Python's garbage collections (``gc.callbacks``): a full
collection walks every object, and a thousand streams are many objects.

On SIGUSR1 the probe writes ``WALL_MS CPU_MS GC_MS GENERATION COLLECTED
OBJECTS`` (the worst since the last signal, the generation of that
collection and what it freed, and the objects the collector tracks now) to the file named by ``WAVEBOX_PROBE_FILE`` and starts afresh.
"""

import gc
import os
import signal
import time

INTERVAL = 0.01
MAIN = "import tests.reactor_probe as p; p.install(); from twisted.scripts.twistd import run; run()"


def install():
    from twisted.internet import reactor

    path = os.environ["WAVEBOX_PROBE_FILE"]
    state = {"wall": 0.0, "cpu": 0.0, "at": None, "gc": 0.0, "gc_start": None,
             "gc_what": (0, 0)}

    def collecting(phase, info):
        if phase == "start":
            state["gc_start"] = time.thread_time()
        elif state["gc_start"] is not None:
            took = time.thread_time() - state["gc_start"]
            if took > state["gc"]:
                state["gc"] = took
                state["gc_what"] = (info["generation"], info["collected"])
            state["gc_start"] = None

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
            f.write("%.1f %.1f %.1f %d %d %d\n" % (
                state["wall"] * 1000, state["cpu"] * 1000, state["gc"] * 1000,
                state["gc_what"][0], state["gc_what"][1], len(gc.get_objects())))
        os.replace(path + ".tmp", path)
        state["wall"] = state["cpu"] = state["gc"] = 0.0

    signal.signal(signal.SIGUSR1, report)
    gc.callbacks.append(collecting)
    reactor.callWhenRunning(tick)
